// Firefox's payment headers (extension/src/background/browser.ts): the rules rules.ts makes, applied by the
// blocking onBeforeSendHeaders listener, put a header on the one request each was made for and
// on no other. The module is bundled as for Firefox and run here against an in-memory
// storage.session; pay.test.mjs runs the same code in Firefox itself.

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { pathToFileURL } from "node:url";
import { build } from "esbuild";
import { ROOT } from "../browser/harness.mjs";

const PAID = "http://shop.test/articles/1?x=1";
let dir;
let rules; // the module's headerRules
let listener; // what it registered with onBeforeSendHeaders
let spec; // and how

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "trickle-header-rules-"));
  const out = path.join(dir, "browser.mjs");
  await build({
    entryPoints: [path.join(ROOT, "extension", "src", "background", "browser.ts")],
    bundle: true,
    format: "esm",
    outfile: out,
    define: { TRICKLE_BROWSER: '"firefox"' },
    logLevel: "error",
  });
  const session = {};
  globalThis.chrome = {
    storage: {
      session: {
        get: async (key) => (key in session ? { [key]: structuredClone(session[key]) } : {}),
        set: async (items) => Object.assign(session, structuredClone(items)),
      },
    },
    webRequest: {
      onBeforeSendHeaders: {
        addListener: (f, filter, extra) => {
          listener = f;
          spec = { filter, extra };
        },
      },
    },
  };
  const module = await import(pathToFileURL(out));
  module.applyHeaderRules();
  rules = module.headerRules;
});

after(() => rm(dir, { recursive: true, force: true }));

const rule = (id, condition, value = `sig-${id}`, priority = 2) => ({
  id,
  priority,
  action: { type: "modifyHeaders", requestHeaders: [{ header: "payment-signature", operation: "set", value }] },
  condition,
});

/** The payment-signature the listener puts on a request, or undefined. */
async function signatureFor(details) {
  const answer = await listener({ tabId: 7, type: "main_frame", requestHeaders: [{ name: "Accept", value: "*/*" }], ...details });
  const headers = answer.requestHeaders;
  if (!headers) return undefined;
  assert.ok(headers.some((h) => h.name === "Accept"), "the request's own headers stay");
  const found = headers.filter((h) => h.name.toLowerCase() === "payment-signature");
  assert.ok(found.length <= 1, "one payment header at most");
  return found[0]?.value;
}

test("the listener blocks only the request types a rule can pay", () => {
  assert.deepEqual(spec.extra, ["blocking", "requestHeaders"]);
  assert.deepEqual(spec.filter.types, ["main_frame", "sub_frame", "xmlhttprequest"]);
});

test("an exact-URL rule pays that URL, tab and type only, compared as a string", async () => {
  await rules.update({
    removeRuleIds: [],
    addRules: [rule(1, { urlFilter: `|${PAID}|`, resourceTypes: ["main_frame"], tabIds: [7] })],
  });
  assert.equal(await signatureFor({ url: PAID }), "sig-1");
  assert.equal(await signatureFor({ url: `${PAID}&more` }), undefined, "not a longer URL");
  assert.equal(await signatureFor({ url: PAID.toUpperCase() }), undefined, "not another case");
  assert.equal(await signatureFor({ url: PAID, tabId: 8 }), undefined, "not another tab");
  assert.equal(await signatureFor({ url: PAID, type: "sub_frame" }), undefined, "not another type");
  // A header the page set is replaced, not sent beside ours.
  const answer = await listener({
    url: PAID,
    tabId: 7,
    type: "main_frame",
    requestHeaders: [{ name: "Payment-Signature", value: "forged" }],
  });
  assert.deepEqual(answer.requestHeaders, [{ name: "payment-signature", value: "sig-1" }]);
});

test("a pre-armed prefix rule yields to a paid URL's own rule", async () => {
  await rules.update({
    removeRuleIds: [],
    addRules: [rule(2, { urlFilter: "|http://shop.test/", resourceTypes: ["main_frame"] }, "armed", 1)],
  });
  assert.equal(await signatureFor({ url: PAID }), "sig-1", "the higher priority wins");
  assert.equal(await signatureFor({ url: "http://shop.test/articles/2" }), "armed");
  assert.equal(await signatureFor({ url: "http://shop.test.evil/" }), undefined);
  assert.equal(await signatureFor({ url: "http://shop.test/x", type: "xmlhttprequest" }), undefined);
  await rules.update({ removeRuleIds: [1, 2], addRules: [] });
  assert.equal(await signatureFor({ url: PAID }), undefined, "removed rules pay nothing");
});

test("a frame's first-party rule needs Firefox's third-party flag to say first party", async () => {
  await rules.update({
    removeRuleIds: [],
    addRules: [rule(3, { urlFilter: `|${PAID}|`, resourceTypes: ["sub_frame"], tabIds: [7], domainType: "firstParty" })],
  });
  assert.equal(await signatureFor({ url: PAID, type: "sub_frame", thirdParty: false }), "sig-3");
  assert.equal(await signatureFor({ url: PAID, type: "sub_frame", thirdParty: true }), undefined);
  assert.equal(await signatureFor({ url: PAID, type: "sub_frame" }), undefined, "no flag, no payment");
  await rules.update({ removeRuleIds: [3], addRules: [] });
});

test("a rule for the site's own navigations needs them started from the site's domain", async () => {
  await rules.update({
    removeRuleIds: [],
    addRules: [rule(8, { urlFilter: "|http://shop.test/", resourceTypes: ["main_frame"], initiatorDomains: ["shop.test"] })],
  });
  const url = "http://shop.test/articles/3";
  assert.equal(await signatureFor({ url, originUrl: "http://shop.test/articles/2" }), "sig-8");
  assert.equal(await signatureFor({ url, originUrl: "https://www.shop.test:8443/" }), "sig-8", "a subdomain, as in Chrome");
  assert.equal(await signatureFor({ url, originUrl: "http://evil.test/" }), undefined, "not another site's link");
  assert.equal(await signatureFor({ url, originUrl: "http://shop.test.evil/" }), undefined);
  assert.equal(await signatureFor({ url }), undefined, "not a navigation nobody started (a typed URL)");
  await rules.update({ removeRuleIds: [8], addRules: [] });
});

test("a regex rule matches as written; a condition or filter the module does not know matches nothing", async () => {
  const escaped = "http://shop\\.test/a\\*b";
  await rules.update({
    removeRuleIds: [],
    addRules: [
      rule(4, { regexFilter: `^${escaped}$`, resourceTypes: ["main_frame"], tabIds: [7] }),
      rule(5, { urlFilter: `|${PAID}|`, tabIds: [7], excludedInitiatorDomains: ["evil.test"] }),
      rule(6, { urlFilter: "||shop.test^", tabIds: [7] }),
      rule(7, { urlFilter: "|http://shop.test/*|", tabIds: [7] }),
    ],
  });
  assert.equal(await signatureFor({ url: "http://shop.test/a*b" }), "sig-4");
  assert.equal(await signatureFor({ url: "http://shop.test/a*bc" }), undefined);
  assert.equal(await signatureFor({ url: PAID }), undefined, "unknown condition, domain anchor, wildcard: no match");
  assert.equal(await signatureFor({ url: "http://shop.test/anything" }), undefined);
});
