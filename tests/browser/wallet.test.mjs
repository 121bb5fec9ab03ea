// A new wallet through the onboarding page, funded from the local chain, spent from, and restored
// from its phrase in a fresh profile: same address, same balance, same transactions; a wrong
// password is refused clearly. In Chromium and in Firefox, the same steps (browsers.mjs).

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
  startChain,
  waitForBalance,
  waitReady,
  waitScreen,
} from "./harness.mjs";
import { BROWSERS, launch } from "./browsers.mjs";
import { storedRecords } from "./fixtures.mjs";

const FUNDED = 150_000;
const PENDING = 25_000;
const SPEND = 40_000;

for (const kind of BROWSERS) describe(`a new wallet, funded and restored (${kind})`, { timeout: 600_000 }, () => {
  const test = steps(nodeTest);
  let chain;
  let browser;
  let popup;
  /** What the first profile learned, for the restored one to match. */
  const first = { words: [], address: null, balance: null, txids: [], nextAddress: null };

  before(async () => {
    chain = await startChain();
  });

  after(async () => {
    await browser?.close();
    await chain?.stop();
  });

  test("onboarding creates a wallet: phrase shown once, three words confirmed, password", { timeout: 180_000 }, async (t) => {
    browser = await launch(kind, "create");
    const page = browser.onboarding;
    report(t, `${browser.name} cold start (launch → first state reply): ${browser.startMs.toFixed(0)} ms`);
    const ready = await waitReady(page);
    assert.equal(ready.state.wallet, "none", "a fresh profile has no wallet");

    await waitScreen(page, "welcome");
    await page.shot("onboarding-01-welcome");
    await chooseRegtest(page, chain.url, "onboarding-02-network");
    const state = await send(page, { type: "state" });
    assert.equal(state.ok, true);
    assert.equal(state.payload.settings.network, "regtest");
    assert.equal(state.payload.settings.esploraUrl, chain.url);

    await page.click("create-wallet");
    await waitScreen(page, "phrase");
    const words = await page.texts('[data-testid^="phrase-word-"]');
    assert.equal(words.length, 12, "twelve words are shown");
    for (const w of words) assert.match(w, /^[a-z]{3,8}$/);
    assert.ok(new Set(words).size >= 8, "the words look random");
    first.words = words;
    assert.equal(await page.disabled("phrase-continue"), true, "continue waits for the checkbox");
    await page.shot("onboarding-03-phrase");
    await page.check("phrase-saved");
    await page.click("phrase-continue");

    await waitScreen(page, "confirm");
    assert.equal(await page.count("confirm-word"), 3, "three words to confirm");
    const positions = await page.evaluate(() =>
      [...document.querySelectorAll('[data-testid="confirm-word"]')].map((e) => Number(e.dataset.wordIndex)),
    );
    assert.equal(new Set(positions).size, 3);
    const input = (n) => `[data-testid="confirm-word"][data-word-index="${n}"]`;
    // A wrong word is refused and named.
    await page.fill(input(positions[0]), words[positions[0] - 1] === "zoo" ? "abandon" : "zoo");
    await page.fill(input(positions[1]), words[positions[1] - 1]);
    await page.fill(input(positions[2]), words[positions[2] - 1]);
    await page.click("confirm-continue");
    assert.match(await bannerText(page), new RegExp(`Word #${positions[0]} does not match`));
    await page.shot("onboarding-04-confirm-error");
    await page.fill(input(positions[0]), ` ${words[positions[0] - 1].toUpperCase()} `);
    await page.shot("onboarding-05-confirm");
    await page.click("confirm-continue");

    await waitScreen(page, "password");
    await fillPasswords(page, "short");
    await page.click("password-submit");
    assert.match(await bannerText(page), /at least 12 characters/);
    await fillPasswords(page, PASSWORD, `${PASSWORD}!`);
    await page.click("password-submit");
    assert.match(await bannerText(page), /not the same/);
    await page.shot("onboarding-06-password-error");
    await fillPasswords(page, PASSWORD);
    await page.shot("onboarding-07-password");
    await page.click("password-submit");
    await waitScreen(page, "done", T.sync);
    await page.shot("onboarding-08-done");

    const after = await send(page, { type: "state" });
    assert.equal(after.payload.wallet, "unlocked", "the new wallet is unlocked");
    assertNoPageErrors(browser);
  });

  test("the browser's own storage passes the store suite in the worker, beside the wallet's records", async () => {
    const page = browser.onboarding;
    const keys = async () => Object.keys((await page.evaluate(storedRecords, browser.kind === "chromium")).records).sort();
    const before = await keys();
    assert.ok(before.includes("layout") && before.some((k) => k.startsWith("regtest/wallet/")), `the wallet's records: ${before}`);
    const suite = await send(page, { type: "storeSuite" });
    assert.equal(suite.ok, true, JSON.stringify(suite));
    assert.ok(suite.payload.checks > 15, `${suite.payload.checks} checks ran`);
    assert.deepEqual(await keys(), before, "the wallet's records as they were, none of the suite's left");
    assert.equal((await send(page, { type: "state" })).payload.wallet, "unlocked");
  });

  test("the popup shows the receive address; the chain funds it; the balance appears", { timeout: 180_000 }, async () => {
    popup = await browser.openPage("popup.html");
    await waitScreen(popup, "home");
    // Its text, not its look (the badge shows it in capitals).
    assert.equal(await popup.evaluate(() => document.querySelector('[data-testid="network-badge"]').textContent), "Regtest");
    // A new wallet: zero, synced, and the empty state.
    await waitForBalance(popup, { confirmed: 0, pending: 0 });
    await popup.waitAttached('[data-testid="sync-status"][data-state="synced"]', T.sync);
    const info = await chain.info();
    assert.equal(Number(await popup.attr("sync-status", "data-height")), info.height);
    assert.match(await popup.text("sync-status"), new RegExp(`Synced at height ${info.height.toLocaleString("en-US")}`));
    assert.equal(await popup.visible("tx-empty"), true, "no transactions: the empty state");
    await popup.shot("popup-01-home-empty");

    first.address = await readReceiveAddress(popup, "popup-02-receive");
    assert.match(first.address, /^bcrt1q[0-9a-z]{38}$/, "a regtest P2WPKH address");

    const fundTxid = await chain.faucet(first.address, FUNDED);
    await waitForBalance(popup, { confirmed: FUNDED, pending: 0 });
    assert.equal(await popup.text("balance-confirmed"), "150,000", "thousands separators");

    const pendingTxid = await chain.faucet(first.address, PENDING, { mine: false });
    await waitForBalance(popup, { confirmed: FUNDED, pending: PENDING });
    const txs = await readTransactions(popup);
    assert.deepEqual(
      txs.map((tx) => [tx.txid, tx.net, tx.pending]),
      [
        [pendingTxid, PENDING, true],
        [fundTxid, FUNDED, false],
      ],
      "the pending payment first, then the confirmed one",
    );
    assert.equal(await popup.text("tx-amount"), "+25,000 sat");
    await popup.shot("popup-03-home-pending");

    await chain.mine(1);
    await waitForBalance(popup, { confirmed: FUNDED + PENDING, pending: 0 });
    await popup.shot("popup-04-home-funded");
    assertNoPageErrors(browser);
  });

  test("send: fee preview, then the transaction id, then the new balance", { timeout: 180_000 }, async () => {
    const { faucet_address: to } = await chain.info();
    await popup.click("nav-send");
    await waitScreen(popup, "send");
    assert.equal(await popup.text("send-available"), "175,000");
    // Refused before asking the wallet: no amount.
    await popup.fill("send-address", to);
    await popup.click("send-review");
    assert.match(await bannerText(popup), /amount/i);
    // Refused by the wallet: more than it has.
    await popup.fill("send-amount", "1000000");
    await popup.click("send-review");
    const tooMuch = await bannerText(popup);
    assert.ok(tooMuch.length > 10, `a sentence explains the refusal: ${tooMuch}`);
    await popup.shot("popup-05-send-error");

    await popup.fill("send-amount", String(SPEND));
    await popup.click("fee-normal");
    await popup.shot("popup-06-send");
    await popup.click("send-review");
    await popup.waitVisible("send-preview");
    const fee = Number(await popup.attr("send-fee", "data-sat"));
    const total = Number(await popup.attr("send-total", "data-sat"));
    assert.ok(fee > 100 && fee < 5_000, `a plausible fee: ${fee}`);
    assert.equal(total, SPEND + fee, "total = amount + fee");
    await popup.shot("popup-07-send-review");

    await popup.click("send-confirm");
    await popup.waitVisible("send-txid", T.sync);
    const txid = await popup.text("send-txid");
    assert.match(txid, /^[0-9a-f]{64}$/);
    await popup.shot("popup-08-send-done");
    await popup.click("send-finish");
    await waitScreen(popup, "home");

    // Pending in the list until mined; then the balance is what was left.
    await popup.waitAttached(`[data-testid="tx-row"][data-txid="${txid}"] [data-testid="tx-pending"]`, T.sync);
    await chain.mine(1);
    // Once mined, the change is no longer pending.
    const balance = await waitForBalance(popup, { pending: 0 });
    const txs = await readTransactions(popup);
    const sent = txs.find((tx) => tx.txid === txid);
    assert.ok(sent, "the spend is in the list");
    assert.equal(sent.pending, false, "the spend is confirmed");
    assert.equal(txs.length, 3);
    assert.equal(
      -sent.net - SPEND,
      fee,
      `the fee paid (${-sent.net - SPEND} sat) is the fee the preview showed (${fee} sat)`,
    );
    assert.equal(balance.confirmed, FUNDED + PENDING - total, "the balance is what the preview said would be left");
    assert.match(await popup.text(`[data-testid="tx-row"][data-txid="${txid}"] [data-testid="tx-amount"]`), /^\u2212/);
    await popup.shot("popup-09-home-after-send");

    first.balance = await readBalance(popup);
    first.txids = txs.map((tx) => tx.txid).sort();
    first.nextAddress = await readReceiveAddress(popup);
    assertNoPageErrors(browser);
  });

  test("settings: export needs the password again", { timeout: 120_000 }, async () => {
    await popup.click("nav-settings");
    await waitScreen(popup, "settings");
    assert.equal(await popup.value("settings-network"), "regtest");
    assert.equal(await popup.value("settings-esplora"), chain.url);
    await popup.shot("popup-10-settings");
    await popup.fill("export-password", "not the password");
    await popup.click("export-phrase");
    const refused = await bannerText(popup, "export-error");
    assert.ok(refused.length > 5, "a wrong password is refused with a message");
    assert.equal(await popup.count("export-words"), 0, "no words without the password");
    await popup.fill("export-password", PASSWORD);
    await popup.click("export-phrase");
    await popup.waitVisible("export-words");
    const exported = await popup.texts('[data-testid="export-words"] [data-testid^="phrase-word-"]');
    assert.deepEqual(exported, first.words, "the exported phrase is the one shown at creation");
    await popup.click("export-hide");
    assert.equal(await popup.count("export-words"), 0);
    await popup.click("back");
    await waitScreen(popup, "home");
    assertNoPageErrors(browser);
  });

  test("the phrase restores the same wallet in a fresh profile", { timeout: 240_000 }, async () => {
    await browser.close();
    browser = await launch(kind, "restore");
    const page = browser.onboarding;
    await chooseRegtest(page, chain.url);
    // A phrase with a word missing is refused before it leaves the page.
    await restoreFromWelcome(page, first.words.slice(0, 11).join(" "));
    assert.match(await bannerText(page), /12 or 24 words; this one has 11/);
    await page.fill("restore-phrase", first.words.join("  ").toUpperCase());
    await page.shot("onboarding-09-restore");
    await page.click("restore-submit");
    await waitScreen(page, "done", T.sync);

    popup = await browser.openPage("popup.html");
    await waitForBalance(popup, first.balance);
    const txs = await readTransactions(popup);
    assert.deepEqual(txs.map((tx) => tx.txid).sort(), first.txids, "the same transactions");
    const address = await readReceiveAddress(popup);
    assert.equal(address, first.nextAddress, "the same receive address");
    await popup.shot("popup-11-home-popup");
    assertNoPageErrors(browser);
  });

  test("a wrong password is refused with a clear message; the right one unlocks", { timeout: 120_000 }, async () => {
    await waitScreen(popup, "home");
    await popup.click("lock");
    await waitScreen(popup, "unlock");
    await popup.shot("popup-12-unlock");
    assert.equal((await send(popup, { type: "state" })).payload.wallet, "locked");

    // Empty: said on the page, nothing sent.
    await popup.click("unlock-submit");
    assert.match(await bannerText(popup), /Enter your password/);

    await popup.fill("unlock-password", "wrong password");
    await popup.click("unlock-submit");
    const message = await bannerText(popup);
    assert.match(message, /password/i, `the message names the password: "${message}"`);
    const code = await popup.attr("error-banner", "data-code");
    assert.ok(code && code !== "internal" && code !== "no_worker", `a typed error code: ${code}`);
    assert.match(await popup.attr("unlock-password", "class"), /invalid/);
    await popup.shot("popup-13-unlock-wrong-password");
    await waitScreen(popup, "unlock");
    assert.equal((await send(popup, { type: "state" })).payload.wallet, "locked", "still locked");

    // The same refusal straight from the worker, as a typed error.
    const direct = await send(popup, { type: "unlock", password: "another wrong one" });
    assert.equal(direct.ok, false);
    assert.equal(direct.error.code, code);
    assert.ok(direct.error.message.length > 5);

    // The hint leads to restoring from the phrase, and back.
    await popup.click("forgot-password");
    await waitScreen(popup, "restore");
    await popup.shot("popup-14-forgot-password");
    await popup.click("back");
    await waitScreen(popup, "unlock");

    await popup.fill("unlock-password", PASSWORD);
    await popup.click("unlock-submit");
    await waitForBalance(popup, first.balance);
    assertNoPageErrors(browser);
  });
});
