// The extension in Firefox (dist/firefox, the same wasm and pages as Chrome's), against the same
// local chain and payee proxy as the Chromium tests: onboarding restores the phrase to the
// address Chromium shows; a wrong password is refused; a priced page is paid once the user
// approves a budget in the popup (402 offer → approval → budget → channel → receipt); the next
// pages go out pre-armed; a reload is free; another site's iframe is never paid; a page script
// pays through the page API; a paid page's redirect to another site carries no payment header;
// closing from the popup settles what the receipts say; the event page Firefox stops when idle
// starts again with the wallet still unlocked. Writes artifacts/firefox-timings.json.

import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, test as nodeTest } from "node:test";
import {
  PASSWORD,
  T,
  launchBrowser,
  onboardingTab as chromiumOnboardingTab,
  report,
  sleep,
  startChain,
  startPayee,
  startSite,
  stats,
  steps,
  waitReady,
  workDir,
  writeArtifact,
} from "./harness.mjs";
import { BIG, FUNDED, PHRASE, POLICY, ask, bothSides, embeddingPage, esplora, eventually, probePageApi, settled } from "./fixtures.mjs";
import {
  backgroundStart,
  click,
  fill,
  launchFirefox,
  openPage,
  reloadPage,
  testIdAttribute,
  waitHeading,
  waitScreen,
} from "./firefox.mjs";

const test = steps(nodeTest);

/** Few pages, each priced so that the payee's share pays its own close fee (see BIG). */
const PAGE_PRICE = BIG;
const PAGE_LIMIT = 20 * PAGE_PRICE;

/** The pre-armed payment header for the site's next page, from the rules browser.ts keeps. */
async function armedHeader(ext) {
  const rules = await ext.evaluate(async () => (await chrome.storage.session.get("headerRules")).headerRules ?? []);
  const armed = rules.filter((r) => r.priority === 1);
  assert.ok(armed.length <= 1, "at most one pre-armed rule per site");
  return armed[0]?.action.requestHeaders[0].value ?? null;
}

/** Opens `url` in `tab`; returns the first response's status and the ms until `h1` says `text`. */
async function visit(tab, url, text) {
  const t0 = performance.now();
  const res = await tab.goto(url, { waitUntil: "domcontentloaded", timeout: T.ui });
  await waitHeading(tab, text);
  return { status: res?.status(), ms: performance.now() - t0 };
}

/**
 * Follows a link to `url` from the page `tab` shows (a navigation the page starts, as a reader's
 * click does: only those carry a site's pre-armed payment); returns the statuses the tab got for
 * `url` and the ms until `h1` says `text`.
 */
async function follow(tab, url, text) {
  const statuses = [];
  const onResponse = (r) => r.url() === url && statuses.push(r.status());
  tab.on("response", onResponse);
  try {
    const t0 = performance.now();
    await tab.evaluate((u) => {
      location.href = u;
    }, url);
    await waitHeading(tab, text);
    return { statuses, ms: performance.now() - t0 };
  } finally {
    tab.off("response", onResponse);
  }
}

/** The page's own load time, navigation start to load event end (Navigation Timing). */
async function pageLoad(tab) {
  await tab.waitForFunction(() => performance.getEntriesByType("navigation")[0]?.loadEventEnd > 0, { timeout: T.ui });
  return tab.evaluate(() => {
    const [nav] = performance.getEntriesByType("navigation");
    return nav.loadEventEnd - nav.startTime;
  });
}

describe("Firefox", { timeout: 600_000 }, () => {
  let chain;
  let site;
  let payee;
  let firefox;
  let ext; // the popup
  let tab; // the tab browsing the site
  let work;
  const timings = { unpaid: [], repeatPaid: [], unpaidLoad: [], repeatPaidLoad: [] };
  /** The request headers of each visit to the other site's landing page. */
  const landings = [];

  before(async () => {
    work = await workDir("firefox-servers");
    chain = await startChain();
    site = await startSite([
      [/^\/$/, () => ["text/html", "<h1>Home</h1><p>Free.</p>"]],
      [/^\/articles\/(\d+)$/, (m) => ["text/html", `<h1>Article ${m[1]}</h1><p>${"words ".repeat(200)}</p>`]],
      [/^\/api\/quote\/(\d+)$/, (m) => ["application/json", JSON.stringify({ quote: Number(m[1]) })]],
      // Another site's page (served as localhost) that embeds paid pages, each loaded twice.
      [/^\/embed$/, () => ["text/html", embeddingPage(payee.url, 70, 5)]],
      // A paid page that sends the reader on to another site (which records what it gets).
      [/^\/articles\/onward$/, () => ({ redirect: `http://localhost:${new URL(site.url).port}/landing` })],
      [
        /^\/landing$/,
        (_, req) => {
          landings.push(req.headers);
          return ["text/html", "<h1>Landing</h1>"];
        },
      ],
    ]);
    const dir = path.join(work.dir, "payee");
    await mkdir(dir, { recursive: true });
    payee = await startPayee({
      esplora: chain.url,
      upstream: site.url,
      dir,
      policy: POLICY,
      prices: [
        { path: "/articles", sat: PAGE_PRICE },
        { path: "/api", sat: PAGE_PRICE },
      ],
    });
    firefox = await launchFirefox("pay");
  });

  after(async () => {
    if (timings.repeatPaid.length) await writeArtifact("firefox-timings.json", timings).catch(() => {});
    await firefox?.close();
    await payee?.stop();
    await chain?.stop();
    await site?.stop();
    await work?.dispose();
  });

  test("onboarding: the phrase restores the wallet with the first address Chromium shows", async (t) => {
    timings.backgroundStartMs = firefox.workerMs;
    report(t, `Firefox launch and install to the background's first state reply: ${firefox.workerMs.toFixed(0)} ms`);
    const page = firefox.onboarding;
    await waitScreen(page, "welcome");
    await click(page, "welcome-settings");
    await waitScreen(page, "settings");
    await page.select('[data-testid="settings-network"]', "regtest");
    await fill(page, "settings-esplora", chain.url);
    await click(page, "settings-save");
    await waitScreen(page, "welcome");
    await click(page, "restore-wallet");
    await waitScreen(page, "restore");
    await fill(page, "restore-phrase", PHRASE);
    await fill(page, "password", PASSWORD);
    await fill(page, "password-confirm", PASSWORD);
    await click(page, "restore-submit");
    await waitScreen(page, "done", T.sync);

    ext = await openPage(firefox, "popup.html");
    await waitScreen(ext, "home");
    await click(ext, "nav-receive");
    await waitScreen(ext, "receive");
    const address = await testIdAttribute(ext, "receive-address", "data-address");
    assert.match(address, /^bcrt1q[0-9a-z]{38}$/, "a regtest P2WPKH address");

    // The same phrase in Chromium, in the same run.
    const chromium = await launchBrowser("firefox-compare");
    try {
      const other = await chromiumOnboardingTab(chromium);
      await waitReady(other);
      await ask(other, { type: "saveSettings", network: "regtest", esploraUrl: chain.url, autoLockMinutes: 60 });
      await ask(other, { type: "restore", phrase: PHRASE, password: PASSWORD });
      const { address: chromiumAddress } = await ask(other, { type: "receiveAddress" });
      assert.equal(address, chromiumAddress, "Firefox and Chromium derive the same first address");
    } finally {
      await chromium.close();
    }

    await chain.faucet(address, FUNDED);
    await eventually("the funds", async () => (await ask(ext, { type: "sync" })).balance.confirmed === FUNDED, T.sync);
    await click(ext, "back");
    await waitScreen(ext, "home");
    assert.equal(await testIdAttribute(ext, "balance-confirmed", "data-sat"), String(FUNDED), "home shows the funds");
  });

  test("a wrong password is refused with a clear message; the right one unlocks", async () => {
    await click(ext, "lock");
    await waitScreen(ext, "unlock");
    assert.equal((await ask(ext, { type: "state" })).wallet, "locked");
    await fill(ext, "unlock-password", "wrong password");
    await click(ext, "unlock-submit");
    await ext.waitForSelector('[data-testid="error-banner"]', { visible: true, timeout: T.ui });
    const message = await ext.evaluate(() => document.querySelector('[data-testid="error-banner"]').textContent);
    assert.match(message, /password/i, `the message names the password: "${message}"`);
    assert.equal((await ask(ext, { type: "state" })).wallet, "locked", "still locked");
    await fill(ext, "unlock-password", PASSWORD);
    await click(ext, "unlock-submit");
    await waitScreen(ext, "home");
    assert.equal((await ask(ext, { type: "state" })).wallet, "unlocked");
    assert.equal(await testIdAttribute(ext, "balance-confirmed", "data-sat"), String(FUNDED), "the same wallet");
  });

  test("a priced page is paid once the user approves a budget in the popup; both sides agree", async () => {
    tab = await firefox.browser.newPage();
    const res = await tab.goto(`${payee.url}/articles/1`, { timeout: T.ui });
    assert.equal(res.status(), 402);
    const [approval] = await eventually("the approval request", async () => {
      const list = await ask(ext, { type: "approvals" });
      return list.length === 1 && list;
    });
    assert.equal(approval.ask.reason.kind, "noBudget");
    assert.equal(approval.ask.price, PAGE_PRICE);
    assert.equal((await payee.status()).channels.length, 0, "no channel before the user approves");

    await reloadPage(ext);
    await waitScreen(ext, "approve");
    assert.equal(await testIdAttribute(ext, "approve-price", "data-sat"), String(PAGE_PRICE));
    await fill(ext, "approve-limit", String(PAGE_LIMIT));
    await ext.select('[data-testid="approve-period"]', "day");
    await fill(ext, "approve-max-price", String(PAGE_PRICE));
    await fill(ext, "approve-auto", String(PAGE_PRICE));
    const t0 = performance.now();
    await click(ext, "approve-submit");
    await waitHeading(tab, "Article 1", T.sync);
    timings.openingVisitMs = performance.now() - t0;

    const { theirs, ours, sites } = await eventually("the receipt and the pre-armed payment", async () => {
      const sides = await bothSides(ext, payee);
      return [sides.sites[0]?.spentSat === PAGE_PRICE && sides.sites[0].reservedSat === PAGE_PRICE, sides];
    });
    assert.ok(await armedHeader(ext), "the next page's payment is armed");
    assert.equal(theirs.state, "ready");
    assert.equal(theirs.paid, PAGE_PRICE, "the first payment paid the first page");
    assert.equal(theirs.consumed, PAGE_PRICE);
    assert.equal(ours.acknowledgedSat, theirs.paid, "both sides agree on what the payee holds");
    assert.equal(ours.paidSat, theirs.paid + PAGE_PRICE, "plus the pre-armed increment, not yet sent");
    assert.equal(sites[0].spentSat, PAGE_PRICE);
  });

  test("the next pages go out pre-armed (no 402); a reload is free", async (t) => {
    let consumed = PAGE_PRICE;
    for (let n = 2; n <= 11; n++) {
      const armed = await armedHeader(ext);
      assert.ok(armed, `page ${n}'s payment is armed before it is asked for`);
      const { statuses, ms } = await follow(tab, `${payee.url}/articles/${n}`, `Article ${n}`);
      assert.deepEqual(statuses, [200], `page ${n} is served at once, paid by its pre-armed payment`);
      consumed += PAGE_PRICE;
      if (n === 2) {
        timings.firstPaidOnChannelMs = ms;
      } else {
        timings.repeatPaid.push(ms);
        timings.repeatPaidLoad.push(await pageLoad(tab));
      }
      // The reader's pause: the receipt is applied and the next payment armed.
      await eventually("the receipt and the next armed payment", async () => {
        const now = await armedHeader(ext);
        const sides = await bothSides(ext, payee);
        return [now !== armed && sides.sites[0].spentSat === consumed, { now, spent: sides.sites[0].spentSat }];
      });
      // The same page unpaid, straight from the site, after each paid one: both see the same machine.
      timings.unpaid.push((await follow(tab, `${site.url}/articles/${n}`, `Article ${n}`)).ms);
      timings.unpaidLoad.push(await pageLoad(tab));
    }
    assert.equal((await payee.status()).channels[0].consumed, consumed, "each page was charged once");

    // A reload of the last paid page sends the same payment: served, not charged again.
    await follow(tab, `${payee.url}/articles/11`, "Article 11");
    const reload = await tab.reload({ waitUntil: "domcontentloaded", timeout: T.ui });
    assert.equal(reload.status(), 200);
    await waitHeading(tab, "Article 11");
    await sleep(300);
    const sides = await bothSides(ext, payee);
    assert.equal(sides.theirs.consumed, consumed, "the reload was not charged");
    assert.equal(sides.sites[0].spentSat, consumed, "nor taken from the budget");

    const u = stats(timings.unpaid);
    const p = stats(timings.repeatPaid);
    const lu = stats(timings.unpaidLoad);
    const lp = stats(timings.repeatPaidLoad);
    timings.summary = {
      unpaidLoadMs: lu.median,
      repeatPaidLoadMs: lp.median,
      loadRatio: lp.median / lu.median,
      unpaidMedianMs: u.median,
      repeatPaidMedianMs: p.median,
      ratio: p.median / u.median,
      firstPaidOnChannelMs: timings.firstPaidOnChannelMs,
      openingVisitMs: timings.openingVisitMs,
      backgroundStartMs: timings.backgroundStartMs,
    };
    report(
      t,
      `Firefox page loads: unpaid median ${u.median.toFixed(1)} ms from the site; repeat paid median ` +
        `${p.median.toFixed(1)} ms (ratio ${(p.median / u.median).toFixed(2)}); first paid on an open channel ` +
        `${timings.firstPaidOnChannelMs.toFixed(1)} ms; first visit opening a channel ${timings.openingVisitMs.toFixed(1)} ms`,
    );
    report(
      t,
      `Firefox page load per Navigation Timing: unpaid ${lu.median.toFixed(1)} ms, repeat paid ` +
        `${lp.median.toFixed(1)} ms (ratio ${(lp.median / lu.median).toFixed(2)})`,
    );
  });

  test("hostile: another site's iframe is never paid", async () => {
    const before = await bothSides(ext, payee);
    const embedder = `http://localhost:${new URL(site.url).port}`;
    const loads = [];
    const onRequest = (r) => r.url().startsWith(`${payee.url}/articles/70`) && loads.push(r.url());
    tab.on("request", onRequest);
    try {
      await visit(tab, `${embedder}/embed`, "Embedder");
      await eventually("both loads of the 5 frames", async () => [loads.length >= 10, loads.length]);
      await sleep(1_000);
    } finally {
      tab.off("request", onRequest);
    }
    const after = await bothSides(ext, payee);
    assert.equal(after.theirs.consumed, before.theirs.consumed, "the payee charged nothing");
    assert.equal(after.ours.paidSat, before.ours.paidSat, "nothing more was signed");
    assert.equal(after.sites[0].spentSat, before.sites[0].spentSat, "the budget spent nothing");
    const approvals = await ask(ext, { type: "approvals" });
    assert.equal(approvals.length, 1, JSON.stringify(approvals));
    assert.equal(approvals[0].embedder, embedder, "the request names the embedding site");
    assert.equal(approvals[0].ask, null, "nothing was asked of the wallet");
    await ask(ext, { type: "decide", id: approvals[0].id, decision: "deny" });
  });

  test("a page script pays through window.trickle.fetch, for its own site only", async () => {
    const before = await bothSides(ext, payee);
    await visit(tab, `${payee.url}/`, "Home");
    const results = await tab.evaluate(() =>
      Promise.all(
        [1, 2, 3].map((i) =>
          window.trickle.fetch(`/api/quote/${i}`).then(
            async (r) => ({ status: r.status, body: await r.text() }),
            (e) => ({ error: e.code }),
          ),
        ),
      ),
    );
    assert.deepEqual(
      results,
      [1, 2, 3].map((i) => ({ status: 200, body: `{"quote":${i}}` })),
      "each call paid once and answered",
    );
    // The page API only pays for the page's own site (the sender's origin, as Firefox gives it).
    const other = await probePageApi(tab, `${site.url}/articles/60`);
    assert.equal(other?.ok, false, JSON.stringify(other));
    assert.equal(other.error.code, "other_origin");
    const after = await eventually("the receipts", async () => {
      const sides = await bothSides(ext, payee);
      return [sides.sites[0].spentSat === before.sites[0].spentSat + 3 * PAGE_PRICE, sides];
    });
    assert.equal(after.theirs.consumed - before.theirs.consumed, 3 * PAGE_PRICE, "the payee charged 3 calls");
    assert.equal(after.ours.acknowledgedSat, after.theirs.paid, "both sides agree");
  });

  test("a paid page redirecting to another site: the payment header does not follow", async () => {
    const start = await bothSides(ext, payee);
    await visit(tab, `${payee.url}/`, "Home");
    await follow(tab, `${payee.url}/articles/onward`, "Landing");
    await eventually("the landing", async () => [landings.length >= 1, landings]);
    for (const headers of landings) {
      assert.equal(headers["payment-signature"], undefined, "no payment header reached the other site");
    }
    // A redirect is not the page: it consumes nothing, and what was paid stays as credit.
    await sleep(500);
    const after = await eventually("the receipt", async () => {
      const sides = await bothSides(ext, payee);
      return [settled(sides), sides];
    });
    assert.equal(after.theirs.consumed, start.theirs.consumed, "the redirect was not charged");
    // What was paid is the payee's credit now: the budget counts it as spent.
    assert.ok(after.theirs.credit >= start.theirs.credit, "the payment stays as credit");
  });

  test("closing from the popup: the settlement pays each side what the receipts say", async () => {
    const { ours, theirs: held } = await bothSides(ext, payee);
    // The channel's contract in a block first, as in Chromium's close test.
    await chain.mine(1);
    await eventually("a settled balance", async () => (await ask(ext, { type: "sync" })).balance.pending === 0, T.sync);
    await reloadPage(ext);
    await waitScreen(ext, "home");
    await click(ext, "nav-sites");
    await waitScreen(ext, "sites");
    const row = `[data-testid="channel-row"][data-site="${payee.url}"]`;
    await click(ext, `${row} [data-testid="channel-close"]`);
    await click(ext, `${row} [data-testid="channel-close-confirm"]`);
    const txid = await testIdAttribute(ext, "channel-closed-txid", "data-txid").catch(async (e) => {
      const banner = await ext.evaluate(() => document.querySelector('[data-testid="error-banner"]')?.textContent);
      throw new Error(`no settlement txid (${e.message}); the page says: ${banner}`);
    });
    await chain.mine(1);
    const tx = await eventually("the settlement on the chain", async () => {
      const found = await esplora(chain, `/tx/${txid}`);
      return found.status.confirmed && found;
    });
    const outputs = tx.vout.map((o) => o.value);
    assert.equal(ours.acknowledgedSat, held.paid, "the receipts say what the payee holds");
    assert.ok(outputs.includes(ours.valueSat - held.paid), `the client gets value − paid: ${outputs}`);
    const payeeShare = outputs.filter((v) => v !== ours.valueSat - held.paid);
    assert.equal(payeeShare.length, 1);
    assert.equal(payeeShare[0] + tx.fee, held.paid, "the payee gets what it was paid, less the fee it pays");
    const budget = (await ask(ext, { type: "sites" })).sites.find((x) => x.origin === payee.url);
    assert.equal(budget.spentSat, held.paid, "the budget spent what the payee was paid");
  });
  test("the event page Firefox stops when idle starts again for the next message, still unlocked", async (t) => {
    const idle = await launchFirefox("idle", { idleMs: 1_000 });
    try {
      const page = idle.onboarding;
      await ask(page, { type: "saveSettings", network: "regtest", esploraUrl: chain.url, autoLockMinutes: 60 });
      await ask(page, { type: "restore", phrase: PHRASE, password: PASSWORD });
      const { address } = await ask(page, { type: "receiveAddress" });
      const first = await backgroundStart(page);
      await sleep(3_000);
      const t0 = performance.now();
      const state = await ask(page, { type: "state" });
      timings.backgroundRestartMs = performance.now() - t0;
      assert.ok((await backgroundStart(page)) > first, "Firefox stopped the background, and started it again");
      assert.equal(state.wallet, "unlocked", "the key came back from storage.session");
      assert.equal((await ask(page, { type: "receiveAddress" })).address, address, "the same wallet");
      report(t, `Firefox event page restart to its first state reply: ${timings.backgroundRestartMs.toFixed(0)} ms`);
    } finally {
      await idle.close();
    }
  });
});
