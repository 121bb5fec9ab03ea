// The service worker can be stopped at any moment: it comes back, reloads the wallet from storage
// and shows the same state. The password guards the wallet; a wrong one is refused clearly.
// Prints the worker's cold start to "ready" (first successful `state` reply).

import assert from "node:assert/strict";
import { after, before, describe, test as nodeTest } from "node:test";
import {
  PASSWORD,
  T,
  assertNoPageErrors,
  bannerText,
  chooseRegtest,
  fillPasswords,
  readBalance,
  readReceiveAddress,
  readTransactions,
  report,
  steps,
  restoreFromWelcome,
  send,
  sleep,
  startChain,
  startSite,
  stats,
  stopWorker,
  timeUntilOk,
  waitForBalance,
  waitReady,
  waitScreen,
  workerRunning,
  writeArtifact,
} from "./harness.mjs";
import { launch } from "./browsers.mjs";

// BIP39's all-"abandon" test phrase: fine for a throwaway regtest chain.
const PHRASE = `${"abandon ".repeat(11)}about`;
const FUNDED = 50_000;
const RESTARTS = 5;
const NEW_PASSWORD = "a new password, after forgetting";

const test = steps(nodeTest);

describe("worker restarts and the password", { timeout: 600_000 }, () => {
  let chain;
  let browser;
  let popup;
  let known;
  const timings = {};

  before(async () => {
    chain = await startChain();
    // Chromium only: the steps stop its service worker over CDP, which Firefox does not speak
    // (firefox.test.mjs lets Firefox stop its event page when idle instead).
    browser = await launch("chromium", "worker");
    const page = browser.onboarding;
    timings.launchToReadyMs = Math.round(browser.startMs);
    await chooseRegtest(page, chain.url);
    await restoreFromWelcome(page, PHRASE, PASSWORD, "onboarding-10-restore-filled");
    await waitScreen(page, "done", T.sync);
    await page.close();

    popup = await browser.openPage("popup.html");
    const address = await readReceiveAddress(popup);
    await chain.faucet(address, FUNDED);
    await waitForBalance(popup, { confirmed: FUNDED, pending: 0 });
    known = {
      balance: await readBalance(popup),
      txids: (await readTransactions(popup)).map((tx) => tx.txid),
      address: await readReceiveAddress(popup),
    };
    assert.equal(known.txids.length, 1);
  });

  after(async () => {
    if (Object.keys(timings).length) await writeArtifact("cold-start.json", timings).catch(() => {});
    await browser?.close();
    await chain?.stop();
  });

  test("cold start at launch: browser launch → first state reply", (t) => {
    report(t, `cold start (launch → first state reply): ${timings.launchToReadyMs} ms`);
    assert.ok(timings.launchToReadyMs > 0 && timings.launchToReadyMs < T.launch);
  });

  test("the stopped worker restarts on the next message, unlocks and shows the same state", { timeout: 240_000 }, async (t) => {
    // Measure from a screen that does not poll, so only our message wakes the worker.
    await popup.click("nav-settings");
    await waitScreen(popup, "settings");

    const toState = [];
    const toOverview = [];
    let wallet;
    for (let i = 0; i < RESTARTS; i++) {
      await stopWorker(browser, popup);
      assert.equal(await workerRunning(browser, popup), false, "the worker is stopped");
      toState.push(await timeUntilOk(popup, "state"));
      assert.equal(await workerRunning(browser, popup), true, "a message started it again");
      const state = await send(popup, { type: "state" });
      wallet = state.payload.wallet;
      assert.notEqual(wallet, "none", "the wallet survives the restart");
      assert.equal(state.payload.settings.network, "regtest", "settings survive the restart");
      assert.equal(state.payload.settings.esploraUrl, chain.url);
      if (wallet === "unlocked") {
        // Time to a wallet that answers from its loaded state, not only to `state`.
        await stopWorker(browser, popup);
        toOverview.push(await timeUntilOk(popup, "overview", T.sync));
      }
    }
    const s = stats(toState);
    timings.restartToStateMs = { ...s, values: toState.map(Math.round) };
    report(
      t,
      `cold start after stop (message → first state reply), ${s.runs} runs: ` +
        `median ${s.median.toFixed(0)} ms, min ${s.min.toFixed(0)}, max ${s.max.toFixed(0)}`,
    );
    if (toOverview.length) {
      const o = stats(toOverview);
      timings.restartToOverviewMs = { ...o, values: toOverview.map(Math.round) };
      report(t, `after stop to first overview reply (wallet loaded): median ${o.median.toFixed(0)} ms, max ${o.max.toFixed(0)}`);
    }
    timings.walletAfterRestart = wallet;
    report(t, `after a restart the wallet is ${wallet}`);

    // The popup, opened again, shows the same wallet (after the password if the worker forgot the key).
    await popup.reload();
    await popup.waitFor(() => ["home", "unlock"].includes(document.getElementById("app")?.dataset.screen));
    if ((await popup.attr("#app", "data-screen")) === "unlock") {
      await popup.fill("unlock-password", PASSWORD);
      await popup.click("unlock-submit");
    }
    await waitForBalance(popup, known.balance);
    assert.deepEqual((await readTransactions(popup)).map((tx) => tx.txid), known.txids);
    assert.equal(await readReceiveAddress(popup), known.address);

    // Locked, then stopped: it stays locked and unlocks with the password.
    await popup.click("lock");
    await waitScreen(popup, "unlock");
    await stopWorker(browser, popup);
    const state = await waitReady(popup);
    assert.equal(state.state.wallet, "locked", "a locked wallet is still locked after a restart");
    await popup.fill("unlock-password", PASSWORD);
    await popup.click("unlock-submit");
    await waitForBalance(popup, known.balance);
    assertNoPageErrors(browser);
  });

  test("a chain that cannot be reached shows a sync error with retry", { timeout: 120_000 }, async () => {
    const setUrl = async (url) => {
      await popup.click("nav-settings");
      await waitScreen(popup, "settings");
      await popup.fill("settings-esplora", url);
      await popup.click("settings-save");
      await popup.waitVisible("settings-saved");
      await popup.click("back");
      await waitScreen(popup, "home");
    };
    const syncButton = '[data-testid="sync-now"], [data-testid="sync-retry"]';
    await setUrl("http://127.0.0.1:1");
    await popup.click(syncButton);
    await popup.waitAttached('[data-testid="sync-status"][data-state="error"]', T.sync);
    assert.equal(await popup.visible("sync-retry"), true);
    assert.match(await popup.text("sync-status"), /Sync failed/);
    assert.equal((await readBalance(popup)).confirmed, known.balance.confirmed, "the last balance stays");
    await popup.shot("popup-15-sync-error");

    await setUrl(chain.url);
    await popup.click(syncButton);
    await popup.waitAttached('[data-testid="sync-status"][data-state="synced"]', T.sync);
    assertNoPageErrors(browser);
  });

  test("forgot password: the phrase restores the wallet under a new password", { timeout: 120_000 }, async () => {
    await waitScreen(popup, "home");
    await popup.click("lock");
    await waitScreen(popup, "unlock");
    await popup.click("forgot-password");
    await waitScreen(popup, "restore");

    // A phrase that is not valid BIP39 (bad checksum) is refused and the stored wallet stays.
    await popup.fill("restore-phrase", `${"abandon ".repeat(11)}abandon`);
    await fillPasswords(popup, NEW_PASSWORD);
    await popup.click("restore-submit");
    const refused = await bannerText(popup);
    assert.match(refused, /phrase/i, `the refusal names the phrase: "${refused}"`);
    assert.equal((await send(popup, { type: "state" })).payload.wallet, "locked", "the old wallet is kept");

    await popup.fill("restore-phrase", PHRASE);
    await popup.click("restore-submit");
    await waitForBalance(popup, known.balance);
    assert.deepEqual((await readTransactions(popup)).map((tx) => tx.txid), known.txids);

    // The new password unlocks it; the old one no longer does.
    await popup.click("lock");
    await waitScreen(popup, "unlock");
    await popup.fill("unlock-password", PASSWORD);
    await popup.click("unlock-submit");
    assert.match(await bannerText(popup), /Wrong password/);
    await popup.fill("unlock-password", NEW_PASSWORD);
    await popup.click("unlock-submit");
    await waitForBalance(popup, known.balance);
    assertNoPageErrors(browser);
  });

  test("a page's messages do not postpone the auto-lock", { timeout: 180_000 }, async () => {
    const site = await startSite([[/^\/$/, () => ["text/html", "<h1>Site</h1>"]]]);
    const tab = await browser.newTab();
    try {
      // An approved site (its pages have the page API), and a settings screen that does not poll.
      await waitScreen(popup, "home");
      await popup.click("nav-settings");
      await waitScreen(popup, "settings");
      const terms = { limitSat: 100, period: "day", maxPriceSat: 10, autoApproveSat: 10 };
      assert.equal((await send(popup, { type: "approve", origin: site.url, terms })).ok, true);
      const saved = await send(popup, { type: "saveSettings", network: "regtest", esploraUrl: chain.url, autoLockMinutes: 1 });
      assert.equal(saved.payload.wallet, "unlocked");
      const unlockedAt = performance.now();
      await tab.goto(`${site.url}/`);
      // The page asks to pay every 5 s, past the minute: each message reaches the wallet.
      const replies = await tab.evaluate(async () => {
        const asks = [];
        for (let i = 0; i < 14; i++) {
          asks.push(
            new Promise((resolve) => {
              const id = `probe-${i}`;
              window.addEventListener("message", (e) => {
                if (e.data?.channel === "trickle-page-api" && e.data.id === id && e.data.reply) resolve(e.data.reply);
              });
              window.postMessage({ channel: "trickle-page-api", id, url: location.href, header: "x" }, location.origin);
            }),
          );
          await new Promise((r) => setTimeout(r, 5_000));
        }
        return Promise.all(asks);
      });
      assert.ok(performance.now() - unlockedAt > 60_000, "the page kept asking past the auto-lock time");
      assert.equal(replies.length, 14);
      assert.ok(replies.every((r) => r.ok === false || r.payload !== "paid"), JSON.stringify(replies));
      assert.equal((await send(popup, { type: "state" })).payload.wallet, "locked", "locked a minute after the user's last action");
    } finally {
      await tab.close();
      await site.stop();
    }
    const unlocked = await send(popup, { type: "unlock", password: NEW_PASSWORD });
    assert.equal(unlocked.payload?.wallet, "unlocked", "the password unlocks it again");
    assertNoPageErrors(browser);
  });

  test("after three wrong passwords each try waits, even with the right one", async () => {
    assert.equal((await send(popup, { type: "lock" })).payload.wallet, "locked");
    for (let i = 0; i < 4; i++) {
      const reply = await send(popup, { type: "unlock", password: `wrong password ${i}` });
      assert.equal(reply.error?.code, "wrong_password", `try ${i + 1}: ${JSON.stringify(reply)}`);
    }
    const refused = await send(popup, { type: "unlock", password: NEW_PASSWORD });
    assert.equal(refused.error?.code, "too_many_attempts", JSON.stringify(refused));
    assert.match(refused.error.message, /try again in 1 s/);
    await sleep(1_100);
    assert.equal((await send(popup, { type: "unlock", password: "wrong password 5" })).error?.code, "wrong_password");
    // The next wait is twice as long, and a worker restart does not forget it.
    await stopWorker(browser, popup);
    await waitReady(popup);
    const again = await send(popup, { type: "unlock", password: NEW_PASSWORD });
    assert.equal(again.error?.code, "too_many_attempts", JSON.stringify(again));
    await sleep(2_100);
    const unlocked = await send(popup, { type: "unlock", password: NEW_PASSWORD });
    assert.equal(unlocked.payload?.wallet, "unlocked", JSON.stringify(unlocked));
    // Unlocked: the count starts again.
    await send(popup, { type: "lock" });
    const first = await send(popup, { type: "unlock", password: "wrong password again" });
    assert.equal(first.error?.code, "wrong_password");
    assert.equal((await send(popup, { type: "unlock", password: NEW_PASSWORD })).payload?.wallet, "unlocked");
  });
});
