// What only Firefox needs checking (the shared scenarios run in it too: wallet.test.mjs and
// pay.test.mjs): the phrase restored in Firefox gives the address Chromium gives, and the event
// page Firefox stops when idle starts again for the next message with the wallet still unlocked,
// and the records an earlier version kept in storage.local move to IndexedDB, once.

import assert from "node:assert/strict";
import { after, before, describe, test as nodeTest } from "node:test";
import { PASSWORD, report, sleep, startChain, stats, steps } from "./harness.mjs";
import { launch } from "./browsers.mjs";
import { PHRASE, ask, backgroundStart, restartBackground, storedRecords } from "./fixtures.mjs";

const test = steps(nodeTest);
const RESTARTS = 3;

/** Restores the test phrase on regtest from `page`; returns the first receive address. */
async function restore(page, chain) {
  await ask(page, { type: "saveSettings", network: "regtest", esploraUrl: chain.url, autoLockMinutes: 60 });
  await ask(page, { type: "restore", phrase: PHRASE, password: PASSWORD });
  return (await ask(page, { type: "receiveAddress" })).address;
}

/**
 * In the extension's page: puts the profile back as an earlier version left it, the records in
 * storage.local and none in IndexedDB, not marked moved.
 */
async function asEarlierVersionLeftIt(records) {
  await chrome.storage.local.set(records);
  await new Promise((resolve, reject) => {
    const open = indexedDB.open("trickle");
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const tx = open.result.transaction(["records", "meta"], "readwrite");
      tx.objectStore("records").clear();
      tx.objectStore("meta").clear();
      tx.oncomplete = () => {
        open.result.close();
        resolve();
      };
      tx.onerror = () => reject(tx.error);
    };
  });
}

describe("Firefox", { timeout: 300_000 }, () => {
  let chain;

  before(async () => {
    chain = await startChain();
  });

  after(async () => {
    await chain?.stop();
  });

  test("the phrase restored in Firefox gives the address Chromium gives", async () => {
    const addresses = {};
    for (const kind of ["firefox", "chromium"]) {
      const browser = await launch(kind, "same-address");
      try {
        addresses[kind] = await restore(browser.onboarding, chain);
      } finally {
        await browser.close();
      }
    }
    assert.match(addresses.firefox, /^bcrt1q[0-9a-z]{38}$/, "a regtest P2WPKH address");
    assert.equal(addresses.firefox, addresses.chromium, "Firefox and Chromium derive the same first address");
  });

  test("the event page Firefox stops when idle starts again for the next message, still unlocked", async (t) => {
    const firefox = await launch("firefox", "idle", { idleMs: 1_000 });
    try {
      const page = firefox.onboarding;
      const address = await restore(page, chain);
      const restarts = [];
      for (let i = 0; i < RESTARTS; i++) {
        const first = await backgroundStart(page);
        await sleep(3_000);
        const t0 = performance.now();
        const state = await ask(page, { type: "state" });
        restarts.push(performance.now() - t0);
        assert.ok((await backgroundStart(page)) > first, "Firefox stopped the background, and started it again");
        assert.equal(state.wallet, "unlocked", "the key came back from storage.session");
        assert.equal((await ask(page, { type: "receiveAddress" })).address, address, "the same wallet");
      }
      const s = stats(restarts);
      report(
        t,
        `Firefox event page restart to its first state reply, ${s.runs} runs: ` +
          `median ${s.median.toFixed(0)} ms, max ${s.max.toFixed(0)}`,
      );
    } finally {
      await firefox.close();
    }
  });

  test("records an earlier version kept in storage.local move to IndexedDB once; storage.local is cleared at every start", async (t) => {
    const firefox = await launch("firefox", "moved");
    try {
      const page = firefox.onboarding;
      const address = await restore(page, chain);
      const fresh = await page.evaluate(storedRecords, false);
      assert.ok(fresh.moved, "a new profile is marked moved at its first start");
      assert.ok(Object.keys(fresh.records).includes("settings"), "the records are in IndexedDB");
      assert.deepEqual(await page.evaluate(() => chrome.storage.local.get(null)), {}, "nothing in storage.local");

      await page.evaluate(asEarlierVersionLeftIt, fresh.records);
      const state = await restartBackground(page);
      assert.equal(state.wallet, "unlocked");
      assert.equal((await ask(page, { type: "receiveAddress" })).address, address, "the same wallet");
      const moved = await page.evaluate(storedRecords, false);
      assert.ok(moved.moved, "marked moved");
      for (const key of Object.keys(fresh.records)) assert.ok(key in moved.records, `${key} moved`);
      assert.equal(moved.records.settings, fresh.records.settings);
      assert.deepEqual(await page.evaluate(() => chrome.storage.local.get(null)), {}, "storage.local cleared");

      // Once moved, storage.local is never read again: what lands there later is cleared unread.
      const other = btoa(JSON.stringify({ ...JSON.parse(atob(fresh.records.settings)), esploraUrl: "http://127.0.0.1:9" }));
      await page.evaluate((settings) => chrome.storage.local.set({ settings }), other);
      const again = await restartBackground(page);
      assert.deepEqual(again.settings, JSON.parse(atob(fresh.records.settings)), "what storage.local held was not read");
      assert.deepEqual(await page.evaluate(() => chrome.storage.local.get(null)), {}, "cleared again");
      report(t, `${Object.keys(fresh.records).length} records moved once; storage.local cleared at each start`);
    } finally {
      await firefox.close();
    }
  });
});
