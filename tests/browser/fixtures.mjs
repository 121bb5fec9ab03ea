// What the paying tests share (pay.test.mjs, and firefox.test.mjs for the phrase and restarts): the wallet's
// phrase and funds, the payee's prices and policy, and the checks of both sides.

import assert from "node:assert/strict";
import { T, send, sleep } from "./harness.mjs";

export const PHRASE = `${"abandon ".repeat(11)}about`;
export const FUNDED = 200_000;
export const PRICE = 10;
export const API_PRICE = 2;
/** A price high enough for a channel the payee can settle on its own (fee and dust). */
export const BIG = 500;
export const LIMIT = 50 * PRICE;
export const POLICY = {
  versions: [2, 1],
  min_channel_value: 1_000,
  max_channel_value: 100_000,
  min_payment: PRICE,
  min_expiry_blocks: 144,
  max_expiry_blocks: 144,
  close_margin_blocks: 6,
};

/** The extension's answer to `message`, unwrapped; fails the test on an error reply. */
export async function ask(page, message) {
  const reply = await send(page, message);
  assert.ok(reply?.ok, `${message.type}: ${JSON.stringify(reply)}`);
  return reply.payload;
}

/**
 * Polls `check` until it returns truthy; returns that. `check` may return `[ok, seen]` to have
 * what it saw reported if it never gets there.
 */
export async function eventually(what, check, timeoutMs = T.ui) {
  const deadline = performance.now() + timeoutMs;
  let last;
  while (performance.now() < deadline) {
    try {
      const v = await check();
      if (Array.isArray(v) && v.length === 2 && typeof v[0] === "boolean") {
        if (v[0]) return v[1];
        last = v[1];
      } else if (v) {
        return v;
      }
    } catch (e) {
      last = e.message;
    }
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}; last seen: ${JSON.stringify(last)}`);
}

export async function esplora(chain, route) {
  const res = await fetch(`${chain.url}${route}`, { signal: AbortSignal.timeout(10_000) });
  assert.equal(res.status, 200, `GET ${route}`);
  return res.json();
}

/** Whether both sides agree: what was signed is what the payee holds, or reserved (pre-armed). */
export function settled(sides) {
  return sides.ours.paidSat === sides.theirs.paid + sides.sites[0].reservedSat;
}

/** The payee's one channel, the extension's channel with the same contract, and its budget. */
export async function bothSides(ext, payee) {
  const status = await payee.status();
  assert.equal(status.channels.length, 1, "the payee has one channel");
  const theirs = status.channels[0];
  const { channels, sites } = await ask(ext, { type: "sites" });
  const ours = channels.find((c) => c.contractTxid === theirs.channel);
  assert.ok(ours, "the extension has the payee's channel");
  return { theirs, ours, sites: sites.filter((x) => x.origin === payee.url) };
}

/** A page with `count` hidden frames of `${paid}/articles/${n}?r=…`, each loaded again after 1 s. */
export function embeddingPage(paid, n, count) {
  const frames = Array.from({ length: count }, (_, i) => `<iframe hidden src="${paid}/articles/${n}?r=${i + 1}"></iframe>`);
  const reload = "setTimeout(() => { for (const f of document.querySelectorAll('iframe')) f.src = f.src; }, 1000);";
  return `<h1>Embedder</h1>${frames.join("")}<script>${reload}</script>`;
}

/**
 * Posts a page-API request for `url` from `page`, as a page script can; resolves with the
 * extension's reply, or null when none comes within `ms`.
 */
export function probePageApi(page, url, ms = T.short) {
  return page.evaluate(
    ({ url, ms }) =>
      new Promise((resolve) => {
        const id = `probe-${Math.random()}`;
        window.addEventListener("message", (e) => {
          if (e.data?.channel === "trickle-page-api" && e.data.id === id && e.data.reply) resolve(e.data.reply);
        });
        const offer = btoa(JSON.stringify({ x402Version: 2, accepts: [{ network: "bip122:000000000019d6689c085ae165831e93" }] }));
        window.postMessage({ channel: "trickle-page-api", id, url, header: offer }, location.origin);
        setTimeout(() => resolve(null), ms);
      }),
    { url, ms },
  );
}

/** Firefox: when the running background page started (its `performance.timeOrigin`); starts it if stopped. */
export function backgroundStart(page) {
  return page.evaluate(async () => (await chrome.runtime.getBackgroundPage()).performance.timeOrigin);
}

/** Firefox: starts the background page again; resolves once it answers, with its state. */
export async function restartBackground(page) {
  const first = await backgroundStart(page);
  await page.evaluate(async () => (await chrome.runtime.getBackgroundPage()).location.reload());
  return eventually("the background started again", async () => {
    // Asked only once the new page runs: the old one may still answer until it is gone.
    if ((await backgroundStart(page)) <= first) return [false, "the old background page"];
    const state = await ask(page, { type: "state" }).catch((e) => e.message);
    return [typeof state === "object", state];
  });
}

/**
 * In the extension's page: the wallet's records as the background keeps them (Chrome's
 * storage.local when `inStorageLocal`, else Firefox's IndexedDB "trickle"), and, in IndexedDB,
 * its marker of the move from storage.local.
 */
export async function storedRecords(inStorageLocal) {
  if (inStorageLocal) return { records: await chrome.storage.local.get(null), moved: undefined };
  return new Promise((resolve, reject) => {
    const open = indexedDB.open("trickle");
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const tx = open.result.transaction(["records", "meta"]);
      const keys = tx.objectStore("records").getAllKeys();
      const values = tx.objectStore("records").getAll();
      const moved = tx.objectStore("meta").get("movedFromStorageLocal");
      tx.oncomplete = () => {
        open.result.close();
        resolve({ records: Object.fromEntries(keys.result.map((k, i) => [k, values.result[i]])), moved: moved.result });
      };
      tx.onerror = () => reject(tx.error);
    };
  });
}
