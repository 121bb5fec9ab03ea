// Prints the extension's manifest for one browser: `node manifest.mjs chrome|firefox`.
// manifest.json (the repository's root) is the one source, written for Chrome; Firefox's
// differences are made here, so the two cannot drift apart.

import { readFileSync } from "node:fs";

const FIREFOX_ID = "trickle-wallet@trickle";
/** Firefox 140 (ESR): the oldest that knows data_collection_permissions. */
const FIREFOX_MIN_VERSION = "140.0";

const manifest = JSON.parse(readFileSync(new URL("../../manifest.json", import.meta.url), "utf8"));
const target = process.argv[2];

if (target === "firefox") {
  delete manifest.minimum_chrome_version;
  // Firefox runs the background as an event page (a classic script), not a service worker.
  manifest.background = { scripts: ["worker.js"] };
  // Payment headers go on requests from a blocking webRequest listener there, not from
  // declarativeNetRequest session rules (extension/src/background/browser.ts says why).
  // The wallet's records are in the extension's IndexedDB there (extension/src/background/storage.ts):
  // unlimitedStorage makes Firefox keep that database persistent, never evicted for space.
  manifest.permissions = manifest.permissions
    .filter((p) => p !== "declarativeNetRequest")
    .concat("webRequestBlocking", "unlimitedStorage");
  manifest.browser_specific_settings = {
    gecko: {
      id: FIREFOX_ID,
      strict_min_version: FIREFOX_MIN_VERSION,
      // Nothing goes to Trickle's authors: the user picks the chain server and the sites paid.
      data_collection_permissions: { required: ["none"] },
    },
  };
} else if (target !== "chrome") {
  console.error("usage: node manifest.mjs chrome|firefox");
  process.exit(2);
}

process.stdout.write(JSON.stringify(manifest, null, 2) + "\n");
