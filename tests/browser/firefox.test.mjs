// What only Firefox needs checking (the shared scenarios run in it too: wallet.test.mjs and
// pay.test.mjs): the phrase restored in Firefox gives the address Chromium gives, and the event
// page Firefox stops when idle starts again for the next message with the wallet still unlocked.

import assert from "node:assert/strict";
import { after, before, describe, test as nodeTest } from "node:test";
import { PASSWORD, report, sleep, startChain, stats, steps } from "./harness.mjs";
import { launch } from "./browsers.mjs";
import { PHRASE, ask } from "./fixtures.mjs";

const test = steps(nodeTest);
const RESTARTS = 3;

/** Restores the test phrase on regtest from `page`; returns the first receive address. */
async function restore(page, chain) {
  await ask(page, { type: "saveSettings", network: "regtest", esploraUrl: chain.url, autoLockMinutes: 60 });
  await ask(page, { type: "restore", phrase: PHRASE, password: PASSWORD });
  return (await ask(page, { type: "receiveAddress" })).address;
}

/** When the running background page started (its `performance.timeOrigin`); starts it if stopped. */
function backgroundStart(page) {
  return page.evaluate(async () => (await chrome.runtime.getBackgroundPage()).performance.timeOrigin);
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
});
