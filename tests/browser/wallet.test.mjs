// A new wallet through the onboarding page, funded from the local chain, spent from, and restored
// from its phrase in a fresh profile: same address, same balance, same transactions.

import assert from "node:assert/strict";
import { after, before, describe, test as nodeTest } from "node:test";
import {
  PASSWORD,
  T,
  assertNoPageErrors,
  bannerText,
  chooseRegtest,
  fillPasswords,
  launchBrowser,
  onboardingTab,
  openPage,
  readBalance,
  readReceiveAddress,
  readTransactions,
  report,
  steps,
  restoreFromWelcome,
  send,
  shot,
  startChain,
  waitForBalance,
  waitReady,
  waitScreen,
} from "./harness.mjs";

const FUNDED = 150_000;
const PENDING = 25_000;
const SPEND = 40_000;

const test = steps(nodeTest);

describe("a new wallet, funded and restored", { timeout: 600_000 }, () => {
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
    browser = await launchBrowser("create");
    const page = await onboardingTab(browser);
    report(t, `worker target up ${browser.workerMs.toFixed(0)} ms after launch`);
    const ready = await waitReady(page);
    report(t, `cold start (launch → first state reply): ${(performance.now() - browser.t0).toFixed(0)} ms`);
    assert.equal(ready.state.wallet, "none", "a fresh profile has no wallet");

    await waitScreen(page, "welcome");
    await shot(page, "onboarding-01-welcome");
    await chooseRegtest(page, chain.url, "onboarding-02-network");
    const state = await send(page, { type: "state" });
    assert.equal(state.ok, true);
    assert.equal(state.payload.settings.network, "regtest");
    assert.equal(state.payload.settings.esploraUrl, chain.url);

    await page.getByTestId("create-wallet").click();
    await waitScreen(page, "phrase");
    const words = await page.locator('[data-testid^="phrase-word-"]').allInnerTexts();
    assert.equal(words.length, 12, "twelve words are shown");
    for (const w of words) assert.match(w, /^[a-z]{3,8}$/);
    assert.ok(new Set(words).size >= 8, "the words look random");
    first.words = words;
    assert.equal(await page.getByTestId("phrase-continue").isDisabled(), true, "continue waits for the checkbox");
    await shot(page, "onboarding-03-phrase");
    await page.getByTestId("phrase-saved").check();
    await page.getByTestId("phrase-continue").click();

    await waitScreen(page, "confirm");
    const inputs = page.getByTestId("confirm-word");
    assert.equal(await inputs.count(), 3, "three words to confirm");
    const positions = [];
    for (let i = 0; i < 3; i++) positions.push(Number(await inputs.nth(i).getAttribute("data-word-index")));
    assert.equal(new Set(positions).size, 3);
    // A wrong word is refused and named.
    await inputs.nth(0).fill(words[positions[0] - 1] === "zoo" ? "abandon" : "zoo");
    await inputs.nth(1).fill(words[positions[1] - 1]);
    await inputs.nth(2).fill(words[positions[2] - 1]);
    await page.getByTestId("confirm-continue").click();
    assert.match(await bannerText(page), new RegExp(`Word #${positions[0]} does not match`));
    await shot(page, "onboarding-04-confirm-error");
    await inputs.nth(0).fill(` ${words[positions[0] - 1].toUpperCase()} `);
    await shot(page, "onboarding-05-confirm");
    await page.getByTestId("confirm-continue").click();

    await waitScreen(page, "password");
    await fillPasswords(page, "short");
    await page.getByTestId("password-submit").click();
    assert.match(await bannerText(page), /at least 12 characters/);
    await fillPasswords(page, PASSWORD, `${PASSWORD}!`);
    await page.getByTestId("password-submit").click();
    assert.match(await bannerText(page), /not the same/);
    await shot(page, "onboarding-06-password-error");
    await fillPasswords(page, PASSWORD);
    await shot(page, "onboarding-07-password");
    await page.getByTestId("password-submit").click();
    await waitScreen(page, "done", T.sync);
    await shot(page, "onboarding-08-done");

    const after = await send(page, { type: "state" });
    assert.equal(after.payload.wallet, "unlocked", "the new wallet is unlocked");
    assertNoPageErrors(browser);
  });

  test("the popup shows the receive address; the chain funds it; the balance appears", { timeout: 180_000 }, async () => {
    popup = await openPage(browser, "popup.html");
    await waitScreen(popup, "home");
    assert.equal(await popup.getByTestId("network-badge").textContent(), "Regtest");
    // A new wallet: zero, synced, and the empty state.
    await waitForBalance(popup, { confirmed: 0, pending: 0 });
    await popup.locator('[data-testid="sync-status"][data-state="synced"]').waitFor({ timeout: T.sync });
    const info = await chain.info();
    assert.equal(Number(await popup.getByTestId("sync-status").getAttribute("data-height")), info.height);
    assert.match(await popup.getByTestId("sync-status").innerText(), new RegExp(`Synced at height ${info.height.toLocaleString("en-US")}`));
    assert.equal(await popup.getByTestId("tx-empty").isVisible(), true, "no transactions: the empty state");
    await shot(popup, "popup-01-home-empty");

    first.address = await readReceiveAddress(popup, "popup-02-receive");
    assert.match(first.address, /^bcrt1q[0-9a-z]{38}$/, "a regtest P2WPKH address");

    const fundTxid = await chain.faucet(first.address, FUNDED);
    await waitForBalance(popup, { confirmed: FUNDED, pending: 0 });
    assert.equal(await popup.getByTestId("balance-confirmed").innerText(), "150,000", "thousands separators");

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
    assert.equal(await popup.getByTestId("tx-amount").first().innerText(), "+25,000 sat");
    await shot(popup, "popup-03-home-pending");

    await chain.mine(1);
    await waitForBalance(popup, { confirmed: FUNDED + PENDING, pending: 0 });
    await shot(popup, "popup-04-home-funded");
    assertNoPageErrors(browser);
  });

  test("send: fee preview, then the transaction id, then the new balance", { timeout: 180_000 }, async () => {
    const { faucet_address: to } = await chain.info();
    await popup.getByTestId("nav-send").click();
    await waitScreen(popup, "send");
    assert.equal(await popup.getByTestId("send-available").innerText(), "175,000");
    // Refused before asking the wallet: no amount.
    await popup.getByTestId("send-address").fill(to);
    await popup.getByTestId("send-review").click();
    assert.match(await bannerText(popup), /amount/i);
    // Refused by the wallet: more than it has.
    await popup.getByTestId("send-amount").fill("1000000");
    await popup.getByTestId("send-review").click();
    const tooMuch = await bannerText(popup);
    assert.ok(tooMuch.length > 10, `a sentence explains the refusal: ${tooMuch}`);
    await shot(popup, "popup-05-send-error");

    await popup.getByTestId("send-amount").fill(String(SPEND));
    await popup.locator('[data-testid="fee-normal"]').click();
    await shot(popup, "popup-06-send");
    await popup.getByTestId("send-review").click();
    const preview = popup.getByTestId("send-preview");
    await preview.waitFor({ timeout: T.ui });
    const fee = Number(await popup.getByTestId("send-fee").getAttribute("data-sat"));
    const total = Number(await popup.getByTestId("send-total").getAttribute("data-sat"));
    assert.ok(fee > 100 && fee < 5_000, `a plausible fee: ${fee}`);
    assert.equal(total, SPEND + fee, "total = amount + fee");
    await shot(popup, "popup-07-send-review");

    await popup.getByTestId("send-confirm").click();
    const txidEl = popup.getByTestId("send-txid");
    await txidEl.waitFor({ timeout: T.sync });
    const txid = (await txidEl.innerText()).trim();
    assert.match(txid, /^[0-9a-f]{64}$/);
    await shot(popup, "popup-08-send-done");
    await popup.getByTestId("send-finish").click();
    await waitScreen(popup, "home");

    // Pending in the list until mined; then the balance is what was left.
    await popup.waitForFunction(
      (id) => document.querySelector(`[data-testid="tx-row"][data-txid="${id}"] [data-testid="tx-pending"]`),
      txid,
      { timeout: T.sync },
    );
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
    assert.match(await popup.locator(`[data-testid="tx-row"][data-txid="${txid}"] [data-testid="tx-amount"]`).innerText(), /^\u2212/);
    await shot(popup, "popup-09-home-after-send");

    first.balance = await readBalance(popup);
    first.txids = txs.map((tx) => tx.txid).sort();
    first.nextAddress = await readReceiveAddress(popup);
    assertNoPageErrors(browser);
  });

  test("settings: export needs the password again", { timeout: 120_000 }, async () => {
    await popup.getByTestId("nav-settings").click();
    await waitScreen(popup, "settings");
    assert.equal(await popup.getByTestId("settings-network").inputValue(), "regtest");
    assert.equal(await popup.getByTestId("settings-esplora").inputValue(), chain.url);
    await shot(popup, "popup-10-settings");
    await popup.getByTestId("export-password").fill("not the password");
    await popup.getByTestId("export-phrase").click();
    const refused = await bannerText(popup, "export-error");
    assert.ok(refused.length > 5, "a wrong password is refused with a message");
    assert.equal(await popup.getByTestId("export-words").count(), 0, "no words without the password");
    await popup.getByTestId("export-password").fill(PASSWORD);
    await popup.getByTestId("export-phrase").click();
    await popup.getByTestId("export-words").waitFor({ timeout: T.ui });
    const exported = await popup.getByTestId("export-words").locator('[data-testid^="phrase-word-"]').allInnerTexts();
    assert.deepEqual(exported, first.words, "the exported phrase is the one shown at creation");
    await popup.getByTestId("export-hide").click();
    assert.equal(await popup.getByTestId("export-words").count(), 0);
    await popup.getByTestId("back").click();
    await waitScreen(popup, "home");
    assertNoPageErrors(browser);
  });

  test("the phrase restores the same wallet in a fresh profile", { timeout: 240_000 }, async () => {
    await browser.close();
    browser = await launchBrowser("restore");
    const page = await onboardingTab(browser);
    await chooseRegtest(page, chain.url);
    // A phrase with a word missing is refused before it leaves the page.
    await restoreFromWelcome(page, first.words.slice(0, 11).join(" "));
    assert.match(await bannerText(page), /12 or 24 words; this one has 11/);
    await page.getByTestId("restore-phrase").fill(first.words.join("  ").toUpperCase());
    await shot(page, "onboarding-09-restore");
    await page.getByTestId("restore-submit").click();
    await waitScreen(page, "done", T.sync);

    const restored = await openPage(browser, "popup.html");
    await waitForBalance(restored, first.balance);
    const txs = await readTransactions(restored);
    assert.deepEqual(txs.map((tx) => tx.txid).sort(), first.txids, "the same transactions");
    const address = await readReceiveAddress(restored);
    assert.equal(address, first.nextAddress, "the same receive address");
    await shot(restored, "popup-11-home-restored");
    assertNoPageErrors(browser);
  });
});
