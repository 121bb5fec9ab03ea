// The extension pays: a priced site behind the payee proxy, on the local chain, in Chromium.
// Nothing is paid before the user approves a budget; then pages are paid once each, reloads are
// free, the budget stops exactly at its limit, concurrent page-API payments never overspend,
// hostile offers are refused, a worker stopped between signing and receipt loses nothing, and
// closing and refunding put the money where the receipts say, to the sat.
// The same steps in Chromium and in Firefox (browsers.mjs); the few that need what only one
// browser has say so. Prints both browsers' figures side by side at the end and writes them to
// artifacts/pay-timings.json.

import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import http from "node:http";
import path from "node:path";
import { after, before, describe, test as nodeTest } from "node:test";
import {
  PASSWORD,
  T,
  assertNoPageErrors,
  bannerText,
  report,
  sleep,
  startChain,
  startPayee,
  startSite,
  stats,
  steps,
  stopServer,
  stopWorker,
  waitScreen,
  workDir,
  writeArtifact,
} from "./harness.mjs";
import { BROWSERS, launch } from "./browsers.mjs";
import {
  API_PRICE,
  BIG,
  FUNDED,
  LIMIT,
  PHRASE,
  POLICY,
  PRICE,
  ask,
  bothSides,
  embeddingPage,
  esplora,
  eventually,
  probePageApi,
  restartBackground,
  settled,
  storedRecords,
} from "./fixtures.mjs";

/**
 * The page's own load time, from the start of its navigation to the end of its load event
 * (Navigation Timing): what the browser spent on the page, without the test's round trips.
 */
async function pageLoad(page) {
  await page.waitFor(() => performance.getEntriesByType("navigation")[0]?.loadEventEnd > 0);
  return page.evaluate(() => {
    const [nav] = performance.getEntriesByType("navigation");
    return nav.loadEventEnd - nav.startTime;
  });
}

/** The page's wait for its server, from the request to the first byte (Navigation Timing). */
function serverWait(page) {
  return page.evaluate(() => {
    const [nav] = performance.getEntriesByType("navigation");
    return nav.responseStart - nav.requestStart;
  });
}

/** The pre-armed payment header the extension attaches to the site's next page, or null. */
async function armedHeader(browser, ext) {
  const rules = await browser.headerRules(ext);
  const armed = rules.filter((r) => r.priority === 1);
  assert.ok(armed.length <= 1, "at most one pre-armed rule per site");
  return armed[0]?.action.requestHeaders[0].value ?? null;
}

/**
 * What a content script would write if it could, made from the wallet's real `records`: every
 * budget raised and auto-approving anything, and another chain server.
 */
function forgeRecords(records) {
  const forged = {};
  const big = 1_000_000_000;
  for (const [key, value] of Object.entries(records)) {
    let record;
    try {
      record = JSON.parse(atob(value));
    } catch {
      continue; // not JSON (the sealed wallet)
    }
    if (key === "settings") forged[key] = btoa(JSON.stringify({ ...record, esploraUrl: "http://127.0.0.1:9" }));
    else if (record?.terms?.limit !== undefined) {
      const terms = { ...record.terms, limit: big, max_price: big, auto_approve: big };
      forged[key] = btoa(JSON.stringify({ ...record, terms }));
    }
  }
  return forged;
}

/** Waits until the extension has moved the site's pre-armed payment past `previous`. */
async function rearmed(browser, ext, previous) {
  return eventually("the next pre-armed payment", async () => {
    const now = await armedHeader(browser, ext);
    return [now !== previous, now];
  });
}

/**
 * A site in front of a payee proxy, forwarding everything (the payee sees the site's own host,
 * so offers and the channel endpoint are on the site's origin), until told to misbehave:
 * `mode.upstream` switches the payee behind it; `mode.takeAndAskAgain` forwards a paid request
 * and answers 402 with a fresh offer anyway; `mode.rewrite(offer)` answers every request with
 * 402 and an offer of its own making (made from its payee's); `mode.refuseClose` answers the
 * channel's CLOSE with a 500; `mode.dropPaidUntil` (ms since epoch) forwards paid requests and
 * closes their connections without an answer until then, counting them in `mode.dropped`.
 * `paidRequests` counts the paid requests seen.
 */
async function startHostileSite(upstream) {
  const mode = { upstream, takeAndAskAgain: false, rewrite: null, refuseClose: false, dropPaidUntil: 0, dropped: 0 };
  let paidRequests = 0;
  // node:http, not fetch: the payee must see the site's Host header.
  const forward = (req, body, headers) =>
    new Promise((resolve, reject) => {
      const out = http.request(`${mode.upstream}${req.url}`, { method: req.method, headers }, (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode, headers: { ...res.headers }, body: Buffer.concat(chunks) }));
        res.on("error", reject);
      });
      out.on("error", reject);
      out.end(body);
    });
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks);
    try {
      const { ["payment-signature"]: signature, ...unpaid } = req.headers;
      // Only a CLOSE carries the client's authorization to the channel endpoint.
      if (mode.refuseClose && req.url.includes("/.well-known/trickle/channel") && body.includes('"authorization"')) {
        res.writeHead(500);
        res.end("not closing today");
        return;
      }
      // A site making its own offers never lets a payment through to its payee.
      let answer = await forward(req, body, mode.rewrite ? unpaid : req.headers);
      if (signature !== undefined) paidRequests++;
      if (Date.now() < mode.dropPaidUntil && signature !== undefined) {
        // The payee has stored the payment; its answer is lost on the way.
        mode.dropped++;
        req.socket.destroy();
        return;
      }
      if (mode.takeAndAskAgain && signature !== undefined && answer.status === 200) {
        const again = await forward(req, body, unpaid);
        answer = { ...again, headers: { ...answer.headers, "payment-required": again.headers["payment-required"] } };
      } else if (mode.rewrite && answer.status === 402 && answer.headers["payment-required"]) {
        const offer = JSON.parse(Buffer.from(answer.headers["payment-required"], "base64").toString());
        answer.headers["payment-required"] = Buffer.from(JSON.stringify(mode.rewrite(offer))).toString("base64");
      }
      delete answer.headers["content-length"];
      delete answer.headers["transfer-encoding"];
      res.writeHead(answer.status, answer.headers);
      res.end(answer.body);
    } catch (e) {
      res.writeHead(502);
      res.end(String(e));
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    mode,
    paidRequests: () => paidRequests,
    stop: () => stopServer(server),
  };
}

/**
 * A page that opens a window on `${paid}/articles/${n}` and then, every 300 ms, navigates it to
 * the next paid page or posts a form to it, `count` times in all.
 */
function openerPage(paid, n, count) {
  const script = `
    const w = window.open("${paid}/articles/${n}", "victim");
    let i = 0;
    const timer = setInterval(() => {
      i += 1;
      const url = "${paid}/articles/" + (${n} + i);
      if (i % 2) {
        w.location = url;
      } else {
        const form = document.createElement("form");
        Object.assign(form, { method: "post", action: url, target: "victim" });
        document.body.append(form);
        form.submit();
      }
      if (i >= ${count}) clearInterval(timer);
    }, 300);`;
  return `<h1>Opener</h1><script>${script}</script>`;
}

/** A page whose speculation rules prefetch `${paid}/articles/${n}` … `n + count - 1` at once. */
function prefetchingPage(paid, n, count) {
  const urls = Array.from({ length: count }, (_, i) => `${paid}/articles/${n + i}`);
  const rules = JSON.stringify({ prefetch: [{ source: "list", urls, eagerness: "immediate" }] });
  return `<h1>Prefetcher</h1><script type="speculationrules">${rules}</script>`;
}

/** Each browser's figures, for the table the last test prints. */
const figures = {};

for (const kind of BROWSERS) describe(`paying sites (${kind})`, { timeout: 900_000 }, () => {
  const test = steps(nodeTest);
  let chain;
  let site;
  let payee;
  let browser;
  let ext; // an extension page, to talk to the worker
  let tab; // the tab browsing the site
  let work;
  const timings = {
    unpaid: [],
    unpaidProxy: [],
    repeatPaid: [],
    unpaidProxyWait: [],
    unpaidProxyLoad: [],
    repeatPaidWait: [],
    unpaidLoad: [],
    repeatPaidLoad: [],
  };

  /** The site again, as another origin (localhost, not 127.0.0.1). */
  const otherSite = () => `http://localhost:${new URL(site.url).port}`;
  /** The request headers of each visit to the other site's landing page. */
  const landings = [];

  /**
   * Gives the site a budget of `more` sat beyond what it spent (auto-approving one article),
   * then waits for its pre-armed payment unless `armed` is false; returns both sides before.
   */
  const budgetMore = async (more, armed = true) => {
    const start = await bothSides(ext, payee);
    await ask(ext, {
      type: "approve",
      origin: payee.url,
      terms: { limitSat: start.sites[0].spentSat + more, period: "day", maxPriceSat: PRICE, autoApproveSat: PRICE },
    });
    if (armed) await eventually("a pre-armed payment", () => armedHeader(browser, ext));
    return start;
  };

  before(async () => {
    work = await workDir("pay-servers");
    chain = await startChain();
    site = await startSite([
      [/^\/$/, () => ["text/html", "<h1>Home</h1><p>Free.</p>"]],
      [/^\/free\/(\d+)$/, (m) => ["text/html", `<h1>Free ${m[1]}</h1><p>${"words ".repeat(200)}</p>`]],
      [/^\/articles\/(\d+)$/, (m) => ["text/html", `<h1>Article ${m[1]}</h1><p>${"words ".repeat(200)}</p>`]],
      [/^\/api\/quote\/(\d+)$/, (m) => ["application/json", JSON.stringify({ quote: Number(m[1]) })]],
      [/^\/expensive$/, () => ["text/html", "<h1>Expensive</h1>"]],
      // Another site's page (served as localhost) that embeds paid pages, each loaded twice.
      [/^\/embed$/, () => ["text/html", embeddingPage(payee.url, 70, 5)]],
      // Another site's page that asks the browser to prefetch paid pages.
      [/^\/prefetch$/, () => ["text/html", prefetchingPage(payee.url, 80, 3)]],
      // A paid page that sends the reader on to another site (which records what it gets).
      [/^\/articles\/onward$/, () => ({ redirect: `${otherSite()}/landing` })],
      [/^\/landing$/, (_, req) => {
        landings.push(req.headers);
        return ["text/html", "<h1>Landing</h1>"];
      }],
      // Another site's page that keeps opening paid pages in a window of its own.
      [/^\/opener$/, () => ["text/html", openerPage(payee.url, 100, 12)]],
    ]);
    const dir = path.join(work.dir, "payee");
    await mkdir(dir, { recursive: true });
    payee = await startPayee({
      esplora: chain.url,
      upstream: site.url,
      dir,
      policy: POLICY,
      prices: [
        { path: "/articles", sat: PRICE },
        { path: "/api", sat: API_PRICE },
        { path: "/expensive", sat: 5_000 },
      ],
    });
    browser = await launch(kind, "pay");
    const onboarding = browser.onboarding;
    await ask(onboarding, {
      type: "saveSettings",
      network: "regtest",
      esploraUrl: chain.url,
      autoLockMinutes: 60,
    });
    await ask(onboarding, { type: "restore", phrase: PHRASE, password: PASSWORD });
    const { address } = await ask(onboarding, { type: "receiveAddress" });
    await chain.faucet(address, FUNDED);
    await eventually("the funds", async () => (await ask(onboarding, { type: "sync" })).balance.confirmed === FUNDED, T.sync);
    await onboarding.close();
    ext = await browser.openPage("popup.html");
    tab = await browser.newTab();
  });

  after(async () => {
    if (process.env.TRICKLE_TEST_VERBOSE) console.log(browser?.workerLog?.join("\n"));
    if (timings.summary) figures[kind] = { ...timings.summary, backgroundStartMs: browser.startMs, timings };
    await browser?.close();
    await payee?.stop();
    await chain?.stop();
    await site?.stop();
    await work?.dispose();
  });

  test("a priced page is not paid before the user approves a budget", async () => {
    // Baseline, before any payment rule exists: unpriced pages through the payee proxy.
    for (let n = 1; n <= 20; n++) {
      timings.unpaidProxy.push(await tab.visit(`${payee.url}/free/${n}`, `Free ${n}`));
      timings.unpaidProxyWait.push(await serverWait(tab));
      timings.unpaidProxyLoad.push(await pageLoad(tab));
    }
    assert.equal(await tab.goto(`${payee.url}/articles/1`), 402);
    const approvals = await eventually("the approval request", async () => {
      const list = await ask(ext, { type: "approvals" });
      return list.length === 1 && list;
    });
    assert.equal(approvals[0].url, `${payee.url}/articles/1`);
    assert.equal(approvals[0].ask.reason.kind, "noBudget");
    assert.equal(approvals[0].ask.price, PRICE);
    assert.equal(approvals[0].ask.hasChannel, false);
    assert.ok(approvals[0].ask.openFee > 0, "the prompt shows the fee to open a channel");
    await sleep(500);
    assert.equal((await payee.status()).channels.length, 0, "no channel was opened");
    assert.equal(await tab.hasText("Article 1"), false);
  });

  test("approving a budget in the popup pays, and both sides agree", async () => {
    await ext.reload();
    await waitScreen(ext, "approve");
    assert.equal(await ext.text("approve-origin"), payee.url);
    assert.equal(await ext.attr("approve-price", "data-sat"), String(PRICE));
    await ext.fill("approve-limit", String(LIMIT));
    await ext.select("approve-period", "day");
    await ext.fill("approve-max-price", String(PRICE));
    await ext.fill("approve-auto", String(PRICE));
    await ext.shot("pay-10-approve");
    const t0 = performance.now();
    await ext.click("approve-submit");
    await tab.waitText("Article 1", T.sync);
    timings.openingVisitMs = performance.now() - t0;

    // Then the next page's payment is pre-armed: signed, its increment reserved.
    const { theirs, ours, sites } = await eventually("the receipt and the pre-armed payment", async () => {
      const sides = await bothSides(ext, payee);
      return [sides.sites[0]?.spentSat === PRICE && sides.sites[0].reservedSat === PRICE, sides];
    });
    assert.ok(await armedHeader(browser, ext), "a pre-armed rule is in place");
    assert.equal(theirs.state, "ready");
    assert.equal(theirs.paid, PRICE, "the first payment paid the first page");
    assert.equal(theirs.consumed, PRICE);
    assert.equal(ours.acknowledgedSat, theirs.paid, "both sides agree on what the payee holds");
    assert.equal(ours.paidSat, theirs.paid + PRICE, "plus the pre-armed increment, not yet sent");
    assert.equal(ours.creditSat, theirs.credit);
    assert.equal(ours.valueSat, theirs.channelValue);
    assert.equal(ours.state, "Ready");
    assert.deepEqual(
      { origin: sites[0].origin, spent: sites[0].spentSat, reserved: sites[0].reservedSat, limit: sites[0].terms.limitSat },
      { origin: payee.url, spent: PRICE, reserved: PRICE, limit: LIMIT },
    );
  });

  test("hostile: another site's iframe is never paid", async () => {
    const before = await bothSides(ext, payee);
    const embedder = `http://localhost:${new URL(site.url).port}`;
    const loads = [];
    const stop = tab.onRequest((url) => url.startsWith(`${payee.url}/articles/70`) && loads.push(url));
    try {
      await tab.visit(`${embedder}/embed`, "Embedder");
      await eventually("both loads of the 5 frames", async () => [loads.length >= 10, loads.length]);
      await sleep(1_000);
    } finally {
      stop();
    }
    const after = await bothSides(ext, payee);
    assert.equal(after.theirs.consumed, before.theirs.consumed, "the payee charged nothing");
    assert.equal(after.theirs.paid, before.theirs.paid, "the payee holds nothing more");
    assert.equal(after.ours.paidSat, before.ours.paidSat, "nothing more was signed");
    assert.equal(after.sites[0].spentSat, before.sites[0].spentSat, "the budget spent nothing");
    assert.equal(after.sites[0].reservedSat, before.sites[0].reservedSat, "the budget reserved nothing");
    // At most one request waits for the user, and it names the site that embeds the frames.
    const approvals = await ask(ext, { type: "approvals" });
    assert.equal(approvals.length, 1, JSON.stringify(approvals));
    assert.equal(approvals[0].embedder, embedder);
    assert.equal(approvals[0].ask, null, "nothing was asked of the wallet");
    await ext.reload();
    await waitScreen(ext, "approve");
    assert.equal(await ext.attr("approve-embedder", "data-embedder"), embedder);
    await ext.shot("pay-12-approve-embedded");
    await ext.click("approve-deny");
    await eventually("the request denied", async () => (await ask(ext, { type: "approvals" })).length === 0);
  });

  test("50 paid pages: each paid once; a reload is free; the budget stops exactly at its limit", async (t) => {
    let armed = await armedHeader(browser, ext);
    timings.firstPaidOnChannelMs = await tab.follow(`${payee.url}/articles/2`, "Article 2");
    // Each paid page beside the same page unpaid, straight from the site (no proxy, no
    // payment: the stricter baseline), in alternating order, so that both see the same machine.
    // Both are followed from the page before, so both are timed the same way (a driver's own
    // navigation command costs it more than a page's, in Firefox's BiDi much more).
    const unpaid = async (n) => {
      timings.unpaid.push(await tab.follow(`${site.url}/articles/${n}`, `Article ${n}`));
      timings.unpaidLoad.push(await pageLoad(tab));
    };
    // The reader's pause after each paid page: the extension is done with its receipt (the
    // next payment is armed) before the next page of either kind, so that neither pays for it.
    armed = await rearmed(browser, ext, armed);
    for (let n = 3; n <= 50; n++) {
      if (n % 2) await unpaid(n);
      timings.repeatPaid.push(await tab.follow(`${payee.url}/articles/${n}`, `Article ${n}`));
      timings.repeatPaidWait.push(await serverWait(tab));
      timings.repeatPaidLoad.push(await pageLoad(tab));
      armed = await rearmed(browser, ext, armed);
      if (n % 2 === 0) await unpaid(n);
    }
    assert.equal(armed, null, "nothing is pre-armed once the budget is used");
    const { theirs, ours, sites } = await eventually("the last receipt", async () => {
      const sides = await bothSides(ext, payee);
      return sides.sites[0].reservedSat === 0 && sides.theirs.consumed === LIMIT && sides;
    });
    assert.equal(theirs.paid, LIMIT, "the payee holds exactly the budget");
    assert.equal(ours.paidSat, LIMIT, "nothing more was signed");
    assert.equal(sites[0].spentSat, LIMIT, "the budget is spent to the sat");
    assert.equal(sites[0].remainingSat, 0);
    const { history } = await ask(ext, { type: "sites" });
    assert.equal(history.filter((p) => p.consumedSat === PRICE).length, 50, "50 receipts of one price each");

    // A reload of a paid page sends the same payment: served, not charged again.
    await tab.visit(`${payee.url}/articles/50`, "Article 50");
    await sleep(300);
    assert.equal((await payee.status()).channels[0].consumed, LIMIT, "the reload was not charged");

    // The next page does not fit: the extension asks instead of paying.
    assert.equal(await tab.goto(`${payee.url}/articles/51`), 402);
    const approvals = await eventually("a new approval request", async () => {
      const list = await ask(ext, { type: "approvals" });
      return list.length === 1 && list;
    });
    assert.deepEqual(approvals[0].ask.reason, { kind: "budgetExhausted", remaining: 0, needed: PRICE });
    assert.equal((await payee.status()).channels[0].paid, LIMIT, "nothing beyond the budget was signed");

    const u = stats(timings.unpaid);
    const up = stats(timings.unpaidProxy);
    const p = stats(timings.repeatPaid);
    report(
      t,
      `page loads: unpaid median ${u.median.toFixed(1)} ms from the site, ${up.median.toFixed(1)} ms ` +
        `through the proxy; repeat paid median ${p.median.toFixed(1)} ms (ratio ${(p.median / u.median).toFixed(2)} ` +
        `to the site, ${(p.median / up.median).toFixed(2)} to the proxy); first paid on an open channel ` +
        `${timings.firstPaidOnChannelMs.toFixed(1)} ms, first visit opening a channel ${timings.openingVisitMs.toFixed(1)} ms`,
    );
    const wu = stats(timings.unpaidProxyWait);
    const wp = stats(timings.repeatPaidWait);
    report(
      t,
      `server wait (request to first byte): unpaid through the proxy ${wu.median.toFixed(1)} ms, ` +
        `repeat paid ${wp.median.toFixed(1)} ms`,
    );
    const lu = stats(timings.unpaidLoad);
    const lup = stats(timings.unpaidProxyLoad);
    const lp = stats(timings.repeatPaidLoad);
    report(
      t,
      `page load per Navigation Timing (navigation start to load event end): unpaid from the site ` +
        `${lu.median.toFixed(1)} ms, ${lup.median.toFixed(1)} ms through the proxy; repeat paid ` +
        `${lp.median.toFixed(1)} ms (ratio ${(lp.median / lu.median).toFixed(2)} to the site, ` +
        `${(lp.median / lup.median).toFixed(2)} to the proxy)`,
    );
    timings.summary = {
      unpaidLoadMs: lu.median,
      repeatPaidLoadMs: lp.median,
      loadRatio: lp.median / lu.median,
      unpaidProxyLoadMs: lup.median,
      loadRatioToProxy: lp.median / lup.median,
      unpaidProxyServerWaitMs: wu.median,
      repeatPaidServerWaitMs: wp.median,
      unpaidMedianMs: u.median,
      unpaidProxyMedianMs: up.median,
      repeatPaidMedianMs: p.median,
      ratio: p.median / u.median,
      ratioToProxy: p.median / up.median,
      firstPaidOnChannelMs: timings.firstPaidOnChannelMs,
      openingVisitMs: timings.openingVisitMs,
    };
  });

  test("raising the budget pays; a worker stopped between signing and receipt loses nothing", async (t) => {
    const [waiting] = await ask(ext, { type: "approvals" });
    const decided = await ask(ext, {
      type: "decide",
      id: waiting.id,
      decision: "approve",
      terms: { limitSat: LIMIT + PRICE, period: "day", maxPriceSat: PRICE, autoApproveSat: PRICE },
    });
    assert.equal(decided, "paid");
    // Signed, stored, and the rule is in place; the receipt has not been applied yet.
    // Only CDP stops a background at a chosen moment (firefox.test.mjs lets Firefox's stop when idle).
    if (browser.kind === "chromium") await stopWorker(browser, ext);
    else report(t, `${browser.name}: the background is not stopped here (no CDP)`);
    await tab.waitText("Article 51", T.ui);
    const { theirs, ours, sites } = await eventually("the receipt after the worker's restart", async () => {
      const sides = await bothSides(ext, payee);
      return [sides.sites[0].spentSat === LIMIT + PRICE, sides];
    });
    assert.equal(theirs.paid, LIMIT + PRICE);
    assert.equal(theirs.consumed, LIMIT + PRICE);
    assert.equal(ours.acknowledgedSat, theirs.paid, "no double payment");
    assert.equal(ours.paidSat, theirs.paid, "nothing signed beyond the budget");
    assert.equal(sites[0].reservedSat, 0);
  });

  test("10 concurrent page-API payments never overspend the budget", async () => {
    const before = (await payee.status()).channels[0];
    const spentBefore = (await bothSides(ext, payee)).sites[0].spentSat;
    // Room for exactly 5 of the 10 calls.
    const limit = spentBefore + 5 * API_PRICE;
    await ask(ext, {
      type: "approve",
      origin: payee.url,
      terms: { limitSat: limit, period: "day", maxPriceSat: PRICE, autoApproveSat: PRICE },
    });
    await tab.visit(`${payee.url}/`, "Home");
    const results = await tab.evaluate(() =>
      Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          window.trickle.fetch(`/api/quote/${i}`).then(
            async (r) => ({ status: r.status, body: await r.text() }),
            (e) => ({ error: e.code }),
          ),
        ),
      ),
    );
    const paid = results.filter((r) => r.status === 200);
    assert.equal(paid.length, 5, `5 calls paid: ${JSON.stringify(results)}`);
    for (const r of paid) assert.match(r.body, /^\{"quote":\d\}$/);
    assert.equal(results.filter((r) => r.error === "ask").length, 5, "the other 5 wait for the user");
    const after = await eventually("the receipts", async () => {
      const s = await bothSides(ext, payee);
      return s.sites[0].reservedSat === 0 && s;
    });
    assert.equal(after.sites[0].spentSat, limit, "spent exactly the limit");
    assert.equal(after.theirs.paid - before.paid, 5 * API_PRICE, "the payee holds 5 payments more");
    assert.equal(after.ours.acknowledgedSat, after.theirs.paid);
    assert.equal(after.ours.paidSat, after.theirs.paid, "nothing signed beyond the budget");
    for (const a of await ask(ext, { type: "approvals" })) {
      await ask(ext, { type: "decide", id: a.id, decision: "deny" });
    }
  });

  test("hostile: a page's 1 MB strings do not fill the session storage", async () => {
    await tab.visit(`${payee.url}/`, "Home");
    /** 30 page-API calls with a 1 MB URL of the page's own site and a 1 MB offer. */
    const flood = () =>
      tab.evaluate(async () => {
        const mb = "a".repeat(1 << 20);
        const calls = Array.from({ length: 30 }, (_, i) => {
          const id = `flood-${i}-${Math.random()}`;
          return new Promise((resolve) => {
            window.addEventListener("message", (e) => {
              if (e.data?.channel === "trickle-page-api" && e.data.id === id && e.data.reply) resolve(e.data.reply);
            });
            const url = `${location.origin}/articles/${i}?${mb}`;
            window.postMessage({ channel: "trickle-page-api", id, url, header: mb }, location.origin);
          });
        });
        return Promise.all(calls);
      });
    const used = () => ext.evaluate(async () => JSON.stringify(await chrome.storage.session.get(null)).length);
    assert.equal((await ask(ext, { type: "lock" })).wallet, "locked");
    const whileLocked = await flood();
    assert.ok(whileLocked.every((r) => r.ok === false && r.error.code === "too_long"), JSON.stringify(whileLocked[0]));
    assert.equal((await ask(ext, { type: "unlock", password: PASSWORD })).wallet, "unlocked", "unlocking still works");
    const whileUnlocked = await flood();
    assert.ok(whileUnlocked.every((r) => r.ok === false && r.error.code === "too_long"));
    const bytes = await used();
    assert.ok(bytes < 1 << 20, `the session storage holds ${bytes} bytes`);
    assert.equal((await ask(ext, { type: "approvals" })).length, 0, "nothing queued");

    // And a priced request still pays.
    const before = await bothSides(ext, payee);
    await ask(ext, {
      type: "approve",
      origin: payee.url,
      terms: { limitSat: before.sites[0].terms.limitSat + API_PRICE, period: "day", maxPriceSat: PRICE, autoApproveSat: PRICE },
    });
    // A URL no earlier step paid (a paid one's reload would be free).
    const quote = await tab.evaluate(() => window.trickle.fetch("/api/quote/77").then((r) => r.text()));
    assert.equal(quote, '{"quote":77}');
    const after = await eventually("the receipt", async () => {
      const s = await bothSides(ext, payee);
      return [s.sites[0].reservedSat === 0 && s.theirs.paid > before.theirs.paid, s];
    });
    assert.equal(after.theirs.paid - before.theirs.paid, API_PRICE, "paid once, the price");
    assert.equal(after.sites[0].spentSat - before.sites[0].spentSat, API_PRICE);
  });

  test("hostile: another site's prefetch of paid pages pays nothing", async (t) => {
    if (!(await tab.evaluate(() => HTMLScriptElement.supports?.("speculationrules") ?? false))) {
      t.skip(`${browser.name} does not implement speculation rules (HTMLScriptElement.supports says no): no prefetch to test`);
      return;
    }
    const before = await budgetMore(5 * PRICE);
    const armed = await bothSides(ext, payee);
    const prefetches = [];
    const stop = browser.onRequest((url) => url.startsWith(`${payee.url}/articles/8`) && prefetches.push(url));
    const page = `${otherSite()}/prefetch`;
    try {
      await tab.goto(page);
      await eventually("the prefetches", async () => [prefetches.length >= 2, prefetches]);
      await sleep(2_000);
    } finally {
      stop();
    }
    assert.equal(tab.url(), page, "the tab stays on the page the user opened");
    assert.equal(await tab.hasText("Prefetcher"), true);
    const after = await eventually("the bookkeeping", async () => {
      const sides = await bothSides(ext, payee);
      return [settled(sides), sides];
    });
    // Nothing was signed for the prefetched pages, and the pre-armed payment (signed and
    // reserved before) did not go with them: another site started them.
    assert.equal(after.theirs.consumed, armed.theirs.consumed, "nothing charged");
    assert.equal(after.sites[0].spentSat, armed.sites[0].spentSat);
    assert.equal(after.ours.paidSat, armed.ours.paidSat, "nothing more signed");
    assert.equal((await ask(ext, { type: "approvals" })).length, 0, "nothing asked");
  });

  test("hostile: another site opening paid pages in a loop pays at most 3 a minute", async () => {
    const start = await budgetMore(20 * PRICE);
    const before = await bothSides(ext, payee);
    const seen = [];
    const stop = browser.onRequest((url) => url.startsWith(`${payee.url}/articles/1`) && seen.push(url));
    const opener = `${otherSite()}/opener`;
    let popup;
    try {
      [popup] = await Promise.all([browser.nextTab(), tab.goto(opener)]);
      // 13 navigations in ~4 s; then the paid ones' receipts.
      await eventually("the window's last page", async () => [seen.some((u) => u.endsWith("/articles/112")), seen]);
      await sleep(2_000);
    } finally {
      stop();
    }
    const after = await eventually("the bookkeeping", async () => {
      const sides = await bothSides(ext, payee);
      // Settled: what was signed is what the payee holds, or the pre-armed payment (reserved).
      return [settled(sides), sides];
    });
    const charged = after.theirs.consumed - before.theirs.consumed;
    assert.ok(charged >= PRICE, `the first of them is paid (charged ${charged})`);
    assert.ok(charged <= 3 * PRICE, `at most 3 paid in the minute: charged ${charged}`);
    assert.equal(after.sites[0].spentSat - before.sites[0].spentSat, charged, "the budget counts what was charged");
    const approvals = await ask(ext, { type: "approvals" });
    assert.ok(approvals.length >= 1, "the rest wait for the user");
    for (const a of approvals) {
      assert.equal(a.embedder, otherSite(), "the approval names the site that opened the window");
      await ask(ext, { type: "decide", id: a.id, decision: "deny" });
    }
    await popup?.close();
  });

  test("a paid page redirecting to another site: the payment header does not follow", async () => {
    const start = await budgetMore(10 * PRICE);
    await tab.visit(`${payee.url}/`, "Home");
    landings.length = 0;
    // The reader follows a link: the pre-armed payment goes with the request.
    await tab.follow(`${payee.url}/articles/onward`, "Landing");
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

  test("two tabs opening the site's next pages at once: each page is charged once", async () => {
    await budgetMore(10 * PRICE);
    const second = await browser.newTab();
    try {
      await tab.visit(`${payee.url}/`, "Home");
      await second.visit(`${payee.url}/`, "Home");
      const before = await bothSides(ext, payee);
      // Both follow a link of the site at once: both go out with the one pre-armed payment.
      await Promise.all([
        tab.follow(`${payee.url}/articles/120`, "Article 120"),
        second.follow(`${payee.url}/articles/121`, "Article 121"),
      ]);
      const after = await eventually("both receipts", async () => {
        const sides = await bothSides(ext, payee);
        const charged = sides.theirs.consumed - before.theirs.consumed;
        return [settled(sides) && charged >= 2 * PRICE, { before, sides }];
      });
      await sleep(500);
      const final = await bothSides(ext, payee);
      assert.equal(final.theirs.consumed - before.theirs.consumed, 2 * PRICE, "two pages, two prices");
      // The budget counts what the payee was paid (credit left from before paid part of it).
      assert.equal(final.sites[0].spentSat - before.sites[0].spentSat, final.theirs.paid - before.theirs.paid);
      assert.ok(settled(final), JSON.stringify(after));
    } finally {
      await second.close();
    }
  });

  test("hostile: one site's many paid URLs stay within its share of the browser's rules", async () => {
    const start = await budgetMore(50 * API_PRICE, false);
    await tab.visit(`${payee.url}/`, "Home");
    const siteRules = async () => {
      const rules = await browser.headerRules(ext);
      return rules.filter((r) => r.priority === 2 && (r.condition.urlFilter ?? r.condition.regexFilter).includes(payee.url));
    };
    const held = (await siteRules()).length;
    const COUNT = 40;
    assert.ok(held + COUNT > 64, `the earlier steps' ${held} rules and ${COUNT} more pass the bound`);
    // 40 distinct URLs, one after another, each paid (its rule then kept for a free reload).
    const statuses = await tab.evaluate(async (count) => {
      const out = [];
      for (let i = 0; i < count; i++) {
        out.push(await window.trickle.fetch(`/api/quote/${i}?n=${i}`).then((r) => r.status, (e) => e.message));
      }
      return out;
    }, COUNT);
    assert.deepEqual([...new Set(statuses)], [200], `every call paid: ${JSON.stringify(statuses)}`);
    const ofSite = await siteRules();
    assert.equal(ofSite.length, 64, "the site keeps 64 paid URLs' rules");
    const fresh = ofSite.map((r) => Number(/\?n=(\d+)\|$/.exec(r.condition.urlFilter ?? "")?.[1] ?? -1)).filter((n) => n >= 0);
    assert.deepEqual(fresh.sort((a, b) => a - b), Array.from({ length: COUNT }, (_, i) => i), "the newest stay, the oldest made room");
    const after = await eventually("the receipts", async () => {
      const sides = await bothSides(ext, payee);
      return [settled(sides) && sides.theirs.consumed - start.theirs.consumed >= COUNT * API_PRICE, sides];
    });
    await sleep(300);
    assert.equal((await payee.status()).channels[0].consumed - start.theirs.consumed, COUNT * API_PRICE, "each call charged once");
    assert.equal(after.sites[0].spentSat - start.sites[0].spentSat, COUNT * API_PRICE);
  });

  test("hostile: a price above the budget's max, a page paying for another site", async () => {
    const paidBefore = (await payee.status()).channels[0].paid;
    assert.equal(await tab.goto(`${payee.url}/expensive`), 402);
    const notices = await eventually("a notice", async () => {
      const list = await ask(ext, { type: "notices" });
      return list.find((n) => n.code === "over_max_price") && list;
    });
    assert.match(notices[0].message, /above the max price/);
    assert.equal((await ask(ext, { type: "approvals" })).length, 0, "nothing to approve");

    // The page API only pays for the page's own site.
    await tab.visit(`${payee.url}/`, "Home");
    const reply = await probePageApi(tab, `${site.url}/articles/60`);
    assert.equal(reply.ok, false);
    assert.equal(reply.error.code, "other_origin");
    await sleep(300);
    assert.equal((await payee.status()).channels[0].paid, paidBefore, "nothing was paid");
  });

  test("a site without a budget sees no page API, and the same nothing locked or unlocked", async (t) => {
    // Firefox's content-script match patterns cannot name a port (browser.ts, pagesOf): there
    // the approved site's host has the page API on each of its ports. So Firefox is checked on
    // another host, and what another port of the approved host sees is reported.
    const unapproved = browser.kind === "firefox" ? otherSite() : site.url;
    const probe = async (origin) => {
      await tab.visit(`${origin}/`, "Home");
      return {
        api: await tab.evaluate(() => typeof window.trickle),
        // An offer for the wrong network: answered "ask" while locked, "refused" when unlocked.
        reply: await probePageApi(tab, `${origin}/articles/61`, 1_000),
      };
    };
    const unlocked = await probe(unapproved);
    const otherPort = { unlocked: browser.kind === "firefox" ? await probe(site.url) : null };
    assert.deepEqual(unlocked, { api: "undefined", reply: null }, "no page API, no answer");
    await ask(ext, { type: "lock" });
    const locked = await probe(unapproved);
    if (otherPort.unlocked) otherPort.locked = await probe(site.url);
    assert.equal((await ask(ext, { type: "unlock", password: PASSWORD })).wallet, "unlocked");
    assert.deepEqual(locked, unlocked, "the page cannot tell a locked wallet from an unlocked one");
    if (otherPort.unlocked) {
      // Another port of the approved host has the page API in Firefox, and one answer for it,
      // locked or not; nothing is asked of the user.
      report(t, `${browser.name}, another port of the approved site's host: ${JSON.stringify(otherPort)}`);
      assert.equal(otherPort.unlocked.reply?.error?.code, "not_approved", JSON.stringify(otherPort));
      assert.deepEqual(otherPort.locked, otherPort.unlocked, "the page cannot tell a locked wallet");
      assert.deepEqual(await ask(ext, { type: "approvals" }), [], "nothing asked of the user");
    }
    // The approved site's pages do have it.
    await tab.visit(`${payee.url}/`, "Home");
    assert.equal(await tab.evaluate(() => typeof window.trickle.fetch), "function");
  });

  test("hostile: a content script in a site's page cannot touch the wallet's storage", async (t) => {
    // A renderer an exploit took over runs as the extension's content script there: it must
    // not read or rewrite budgets, settings or the sealed wallet. The probe runs in that very
    // world (the extension's isolated world in the site's page).
    await tab.visit(`${payee.url}/`, "Home");
    const chrome_ = browser.kind === "chromium";
    const before = { settings: (await ask(ext, { type: "state" })).settings, sites: (await ask(ext, { type: "sites" })).sites };
    // What it would write if it could: the site's budget raised and auto-approving anything,
    // and another chain server. Made from the real records, as the open layout lets anyone.
    const forged = forgeRecords((await ext.evaluate(storedRecords, chrome_)).records);
    assert.ok(Object.keys(forged).some((k) => k.includes("budget/")), `a budget forged: ${Object.keys(forged)}`);
    assert.ok("settings" in forged, "the settings forged");
    const [{ result }] = await ext.evaluate(
      async ({ url, forged }) => {
        // All tabs, then by URL: Firefox's match patterns cannot name a port.
        const target = (await chrome.tabs.query({})).find((t) => t.url?.startsWith(`${url}/`));
        return chrome.scripting.executeScript({
          target: { tabId: target.id },
          args: [forged],
          func: async (forged) => {
            const tries = {};
            for (const [name, call] of [
              ["read", () => chrome.storage.local.get(null).then((items) => Object.keys(items))],
              ["write", () => chrome.storage.local.set(forged).then(() => "allowed")],
            ]) {
              tries[name] = await call().catch((e) => e.message);
            }
            return tries;
          },
        });
      },
      { url: payee.url, forged },
    );
    if (chrome_) {
      // Chrome keeps content scripts out of storage.local once the worker sets its access level.
      assert.match(result.write, /not allowed/, JSON.stringify(result));
      assert.match(result.read, /not allowed/, JSON.stringify(result));
      const stored = await ext.evaluate((keys) => chrome.storage.local.get(keys), Object.keys(forged));
      for (const [key, value] of Object.entries(stored)) assert.notEqual(value, forged[key], `${key} not rewritten`);
    } else {
      // Firefox lets content scripts into storage.local, so the wallet keeps nothing there:
      // what the probe read holds none of its records, and what it wrote is never read.
      assert.deepEqual(result.read, [], "storage.local holds nothing of the wallet");
      assert.equal(result.write, "allowed", "Firefox has no access level (measured)");
      assert.equal((await restartBackground(ext)).wallet, "unlocked");
      assert.deepEqual(await ext.evaluate(() => chrome.storage.local.get(null)), {}, "storage.local cleared at start");
    }
    const after = { settings: (await ask(ext, { type: "state" })).settings, sites: (await ask(ext, { type: "sites" })).sites };
    assert.deepEqual(after, before, "budgets and settings as the user left them");
    report(t, `${browser.name}: content script read ${JSON.stringify(result.read)}, wrote ${result.write}; nothing changed`);
  });

  test("hostile sites: taking a payment and asking again, a wrong network, an endpoint elsewhere, a new payee key", async () => {
    const dirs = [path.join(work.dir, "payee-h1"), path.join(work.dir, "payee-h2")];
    for (const d of dirs) await mkdir(d, { recursive: true });
    const prices = [{ path: "/articles", sat: PRICE }];
    const [first, second] = await Promise.all(
      dirs.map((dir) => startPayee({ esplora: chain.url, upstream: site.url, dir, policy: POLICY, prices })),
    );
    const hostile = await startHostileSite(first.url);
    const noticeFor = (url, code) =>
      eventually(`a ${code} notice`, async () => {
        const list = await ask(ext, { type: "notices" });
        return list.find((n) => n.url === url && n.code === code);
      });
    try {
      await ask(ext, {
        type: "approve",
        origin: hostile.url,
        // The channel the payee asks for is within the limit: it opens without asking.
        terms: { limitSat: POLICY.min_channel_value, period: "day", maxPriceSat: PRICE, autoApproveSat: PRICE },
      });
      await tab.visit(`${hostile.url}/articles/1`, "Article 1");
      await eventually("the pre-armed payment", async () => {
        const s = (await ask(ext, { type: "sites" })).sites.find((x) => x.origin === hostile.url);
        return s.reservedSat === PRICE;
      });
      const held = (await first.status()).channels[0].paid;

      // It takes the payment (pre-armed: the reader follows a link), then asks again: not
      // paid a second time.
      hostile.mode.takeAndAskAgain = true;
      const url2 = `${hostile.url}/articles/2`;
      const status = await tab.responseStatus(url2, () =>
        tab.evaluate((u) => {
          location.href = u;
        }, url2),
      );
      assert.equal(status, 402);
      await noticeFor(url2, "paid_again");
      await sleep(500);
      const taken = (await first.status()).channels[0].paid;
      assert.equal(taken - held, PRICE, "the payee got the one pre-armed increment, no more");
      hostile.mode.takeAndAskAgain = false;

      // Offers the wallet refuses before signing anything.
      const refused = async (n, code, rewrite) => {
        hostile.mode.rewrite = rewrite;
        const url = `${hostile.url}/articles/${n}`;
        await tab.goto(url);
        await noticeFor(url, code);
        hostile.mode.rewrite = null;
      };
      await refused(3, "wrong_network", (o) => ({
        ...o,
        // Mainnet's offer, as a real one names it: its network and its bitcoin.
        accepts: o.accepts.map((a) => {
          const network = "bip122:000000000019d6689c085ae165831e93";
          return { ...a, network, asset: `${network}/slip44:0` };
        }),
      }));
      await refused(4, "endpoint_elsewhere", (o) => ({
        ...o,
        accepts: o.accepts.map((a) => ({ ...a, extra: { ...a.extra, endpoint: `${first.url}/.well-known/trickle/channel` } })),
      }));
      // Another payee (another key) behind the same site.
      hostile.mode.upstream = second.url;
      await refused(5, "payee_key_changed", null);
      assert.equal((await second.status()).channels.length, 0, "no channel with the new key");
      assert.ok((await first.status()).channels[0].paid - held <= 2 * PRICE, "at most the reserved increments");
      await ext.shot("pay-15-notices");
    } finally {
      await hostile.stop();
      await first.stop();
      await second.stop();
    }
  });

  test("closing from the popup: the settlement pays each side what the receipts say, and survives a reorganisation", async (t) => {
    const { ours, theirs: held } = await bothSides(ext, payee);
    // Confirm what the earlier steps left pending (the hostile site's contract and its change).
    await chain.mine(1);
    const before = await eventually(
      "a settled balance",
      async () => {
        const { balance } = await ask(ext, { type: "sync" });
        return [balance.pending === 0, balance];
      },
      T.sync,
    );
    await ext.reload();
    await waitScreen(ext, "home");
    await ext.click("nav-sites");
    await waitScreen(ext, "sites");
    const row = `[data-testid="channel-row"][data-site="${payee.url}"]`;
    await ext.click(`${row} [data-testid="channel-close"]`);
    await ext.click(`${row} [data-testid="channel-close-confirm"]`);
    await ext.waitVisible("channel-closed-txid");
    const txid = await ext.attr("channel-closed-txid", "data-txid");
    await chain.mine(1);
    const inBlock = async () => (await esplora(chain, `/tx/${txid}`)).status.confirmed;
    await eventually("the settlement in a block", inBlock);

    // A reorganisation takes that block away, and the network forgets the settlement: the
    // wallet's duties broadcast it again, and the channel is not closed while it is out.
    await chain.reorg(1, [txid]);
    await ask(ext, { type: "duties" });
    const out = (await ask(ext, { type: "sites" })).channels.find((c) => c.contractTxid === ours.contractTxid);
    assert.equal(out.state, "Closing", "not closed while its settlement is out of the chain");
    await eventually("the settlement back in the mempool", async () => !(await inBlock()));
    await chain.mine(1);
    const tx = await eventually("the settlement on the chain again", async () => {
      const t = await esplora(chain, `/tx/${txid}`);
      return t.status.confirmed && t;
    });
    const outputs = tx.vout.map((o) => o.value);
    assert.equal(ours.acknowledgedSat, held.paid, "the receipts say what the payee holds");
    assert.ok(outputs.includes(ours.valueSat - held.paid), `the client gets value − paid: ${outputs}`);
    const theirs = outputs.filter((v) => v !== ours.valueSat - held.paid);
    assert.equal(theirs.length, 1);
    assert.equal(theirs[0] + tx.fee, held.paid, "the payee gets what it was paid, less the fee it pays");
    // The pre-armed payment never sent stays reserved until the wallet has seen the settlement
    // (its duties check the contract's spend), then it is released.
    await eventually("no reservation left", async () => {
      await ask(ext, { type: "duties" });
      const budget = (await ask(ext, { type: "sites" })).sites.find((x) => x.origin === payee.url);
      return [budget.reservedSat === 0, budget];
    });

    // The balance grows by the client's share of the settlement, to the sat.
    const expected = before.confirmed + (ours.valueSat - held.paid);
    const overview = await eventually("the settled balance", async () => {
      const o = await ask(ext, { type: "sync" });
      return o.balance.confirmed === expected && o;
    }, T.sync);
    assert.equal(overview.balance.pending, 0);
    report(t, `balance ${overview.balance.confirmed} = ${before.confirmed} + ${ours.valueSat} − ${held.paid} paid`);
    await ext.shot("pay-20-sites");
    assertNoPageErrors(browser);
  });

  test("a payee that closes before expiry: the wallet checks the settlement on the chain", async (t) => {
    const dir = path.join(work.dir, "payee-closing");
    await mkdir(dir, { recursive: true });
    const closing = await startPayee({
      esplora: chain.url,
      upstream: site.url,
      dir,
      // Enough paid for the payee's share to cover its settlement fee and stay above dust.
      // It closes 10 blocks before expiry: earlier than the wallet would ask (6).
      policy: { ...POLICY, min_payment: BIG, min_expiry_blocks: 20, max_expiry_blocks: 20, close_margin_blocks: 10 },
      prices: [{ path: "/articles", sat: BIG }],
    });
    try {
      await ask(ext, {
        type: "approve",
        origin: closing.url,
        terms: { limitSat: POLICY.min_channel_value, period: "day", maxPriceSat: BIG, autoApproveSat: BIG },
      });
      await tab.visit(`${closing.url}/articles/8`, "Article 8");
      const channel = await eventually("the channel", async () => {
        const c = (await ask(ext, { type: "sites" })).channels.find((x) => x.site === closing.url);
        return [c?.state === "Ready" && c.acknowledgedSat === BIG, c];
      });
      const height = await chain.mine(1);
      const before = await eventually(
        "a settled balance",
        async () => {
          const { balance } = await ask(ext, { type: "sync" });
          return [balance.pending === 0, balance];
        },
        T.sync,
      );
      // Within the payee's close margin, not yet the wallet's: the payee settles on its own.
      await chain.mine(Math.max(1, channel.expiry - 8 - height));
      await eventually("the payee's settlement", async () => {
        const s = await closing.status();
        return [s.channels[0].state !== "ready", s.channels[0]];
      }, T.sync);
      await chain.mine(1);
      const duties = await ask(ext, { type: "duties" });
      const settled = duties.settled.find((e) => e.site === closing.url);
      assert.ok(settled, `the settlement was seen and checked: ${JSON.stringify(duties)}`);
      const after = (await ask(ext, { type: "sites" })).channels.find((x) => x.site === closing.url);
      assert.equal(after.state, "Closed");
      const tx = await esplora(chain, `/tx/${settled.detail}`);
      assert.ok(tx.vout.some((o) => o.value === channel.valueSat - BIG), "the client gets value − paid");
      await eventually(
        "the settled balance",
        async () => {
          const { balance } = await ask(ext, { type: "sync" });
          return [balance.confirmed === before.confirmed + channel.valueSat - BIG, balance];
        },
        T.sync,
      );
      report(t, `settlement ${settled.detail} checked: ${channel.valueSat - BIG} sat back to the wallet`);
    } finally {
      await closing.stop();
    }
  });

  test("a payee that vanishes: after expiry the refund takes the channel's funds back", async (t) => {
    const dir = path.join(work.dir, "payee2");
    await mkdir(dir, { recursive: true });
    const short = await startPayee({
      esplora: chain.url,
      upstream: site.url,
      dir,
      policy: { ...POLICY, min_expiry_blocks: 20, max_expiry_blocks: 20, close_margin_blocks: 4 },
      prices: [{ path: "/articles", sat: PRICE }],
    });
    try {
      const before = (await ask(ext, { type: "sync" })).balance.confirmed;
      await ask(ext, {
        type: "approve",
        origin: short.url,
        terms: { limitSat: POLICY.min_channel_value, period: "day", maxPriceSat: PRICE, autoApproveSat: PRICE },
      });
      await tab.visit(`${short.url}/articles/7`, "Article 7");
      const channel = (await ask(ext, { type: "sites" })).channels.find((c) => c.site === short.url);
      assert.equal(channel?.state, "Ready");
      await short.stop();

      // The contract confirms, then the chain passes the channel's expiry.
      const height = await chain.mine(1);
      await chain.mine(Math.max(1, channel.expiry - height + 1));
      // The worker's alarm does this every minute; asking now does not wait for it.
      await ask(ext, { type: "duties" });
      const refunded = await eventually("the refund", async () => {
        const c = (await ask(ext, { type: "sites" })).channels.find((x) => x.site === short.url);
        return [c.state === "Refunded", c];
      });
      const contract = await esplora(chain, `/tx/${channel.contractTxid}`);
      const vout = contract.vout.findIndex((o) => o.value === channel.valueSat);
      const spend = await esplora(chain, `/tx/${channel.contractTxid}/outspend/${vout}`);
      assert.ok(spend.spent, "the contract output is spent");
      await chain.mine(1);
      const refund = await eventually("the refund on the chain", async () => {
        const tx = await esplora(chain, `/tx/${spend.txid}`);
        return tx.status.confirmed && tx;
      });
      assert.equal(refund.vout.length, 1);
      assert.equal(refund.vout[0].value, channel.valueSat - refund.fee, "the whole channel comes back, less the fee");
      const expected = before - contract.fee - refund.fee;
      await eventually(
        "the refunded balance",
        async () => {
          const o = await ask(ext, { type: "sync" });
          return [o.balance.confirmed === expected && o.balance.pending === 0, o.balance];
        },
        T.sync,
      );
      // The refund took the whole channel back: the budget keeps nothing reserved for it.
      await ask(ext, { type: "reconcile" });
      const budget = (await ask(ext, { type: "sites" })).sites.find((x) => x.origin === short.url);
      assert.equal(budget.reservedSat, 0, "nothing left reserved for the refunded channel");
      report(t, `refund ${refunded.contractTxid}: balance ${expected} = ${before} − ${contract.fee} − ${refund.fee} fees`);
    } finally {
      await short.stop();
    }
  });

  test("a close the payee refuses (Sites screen): the channel stays payable, a later close succeeds", async () => {
    const dir = path.join(work.dir, "payee-refusing");
    await mkdir(dir, { recursive: true });
    // The demo's first payment (1,000 sat, pages of PRICE): it covers the close's fee, and it is
    // above the budget's max price, within its limit.
    const policy = { ...POLICY, min_payment: 1_000 };
    const own = await startPayee({ esplora: chain.url, upstream: site.url, dir, policy, prices: [{ path: "/articles", sat: PRICE }] });
    const refusing = await startHostileSite(own.url);
    try {
      await ask(ext, {
        type: "approve",
        origin: refusing.url,
        terms: { limitSat: 2_000, period: "day", maxPriceSat: PRICE, autoApproveSat: PRICE },
      });
      await tab.visit(`${refusing.url}/articles/80`, "Article 80");
      const channelOf = async () =>
        (await ask(ext, { type: "sites" })).channels.find((c) => c.site === refusing.url);
      const opened = await eventually("the channel", async () => (await channelOf())?.state === "Ready" && channelOf());

      refusing.mode.refuseClose = true;
      await ext.reload();
      await waitScreen(ext, "home");
      await ext.click("nav-sites");
      await waitScreen(ext, "sites");
      const row = `[data-testid="channel-row"][data-site="${refusing.url}"]`;
      await ext.click(`${row} [data-testid="channel-close"]`);
      await ext.click(`${row} [data-testid="channel-close-confirm"]`);
      assert.match(await bannerText(ext), /did not close the channel/);
      const kept = await channelOf();
      assert.equal(kept.state, "Ready", "the channel stays open");
      assert.equal(kept.paidSat, opened.paidSat, "nothing more signed");

      // It still pays the site: the reader follows a link from the page it is on.
      await tab.follow(`${refusing.url}/articles/81`, "Article 81");
      await eventually("the next page paid", async () => {
        const held = (await own.status()).channels.find((c) => c.channel === kept.contractTxid);
        return held && held.consumed >= 2 * PRICE;
      });

      // The payee closes when asked again.
      refusing.mode.refuseClose = false;
      await ext.reload();
      await waitScreen(ext, "home");
      await ext.click("nav-sites");
      await waitScreen(ext, "sites");
      await ext.click(`${row} [data-testid="channel-close"]`);
      await ext.click(`${row} [data-testid="channel-close-confirm"]`);
      await ext.waitVisible("channel-closed-txid");
      await chain.mine(1);
      await eventually("the channel closed", async () => {
        await ask(ext, { type: "duties" });
        return (await channelOf())?.state === "Closed";
      });
    } finally {
      await refusing.stop();
      await own.stop();
    }
  });

  test("hostile: offers locking more than the budget's limit each wait for the user, so a page cannot search the balance", async (t) => {
    const hostile = await startHostileSite(payee.url);
    const limit = 1_500;
    try {
      await ask(ext, {
        type: "approve",
        origin: hostile.url,
        terms: { limitSat: limit, period: "day", maxPriceSat: PRICE, autoApproveSat: PRICE },
      });
      const before = (await ask(ext, { type: "sync" })).balance;
      const held = (await payee.status()).channels.length;
      // Decreasing channel values, as a page searching the balance would forge them: each within
      // what the wallet would lock, above the limit. Auto-approved, the first would open.
      const locks = [100_000, 20_000, 5_000, limit + 1];
      for (const [i, lock] of locks.entries()) {
        hostile.mode.rewrite = (o) => ({
          ...o,
          accepts: o.accepts.map((a) => ({ ...a, extra: { ...a.extra, minChannelValue: String(lock) } })),
        });
        const url = `${hostile.url}/articles/${90 + i}`;
        assert.equal(await tab.goto(url), 402);
        const approval = await eventually("the approval", async () =>
          (await ask(ext, { type: "approvals" })).find((a) => a.url === url),
        );
        assert.deepEqual(approval.ask.reason, { kind: "lockAboveLimit", lock, limit });
        assert.equal(approval.ask.channelValue, lock, "the approval shows what would be locked");
        if (i < locks.length - 1) await ask(ext, { type: "decide", id: approval.id, decision: "deny" });
      }
      hostile.mode.rewrite = null;

      // The user sees why, on the approval screen, and denies it.
      await ext.reload();
      await waitScreen(ext, "approve");
      assert.equal(await ext.attr("approve-reason", "data-kind"), "lockAboveLimit");
      assert.match(await ext.text("approve-reason"), /locks [\d,]+ sat, more than its budget's limit/);
      await ext.click("approve-deny");
      await eventually("nothing left to approve", async () => (await ask(ext, { type: "approvals" })).length === 0);

      assert.equal((await payee.status()).channels.length, held, "no channel opened");
      const site = (await ask(ext, { type: "sites" })).sites.find((x) => x.origin === hostile.url);
      assert.deepEqual([site.spentSat, site.reservedSat], [0, 0], "nothing spent or reserved");
      assert.deepEqual((await ask(ext, { type: "sync" })).balance, before, "no contract built");
      report(t, `${locks.length} forged offers (${locks.join(", ")} sat locked): each asked, none funded`);
    } finally {
      await hostile.stop();
    }
  });

  test("paid pages whose answers the connection lost: sent again with their payment, shown and charged once", async (t) => {
    const lossy = await startHostileSite(payee.url);
    try {
      await ask(ext, {
        type: "approve",
        origin: lossy.url,
        terms: { limitSat: POLICY.min_channel_value, period: "day", maxPriceSat: PRICE, autoApproveSat: PRICE },
      });
      await tab.visit(`${lossy.url}/articles/70`, "Article 70");
      const channelOf = async () => (await ask(ext, { type: "sites" })).channels.find((c) => c.site === lossy.url);
      const opened = await eventually("the channel", async () => (await channelOf())?.state === "Ready" && channelOf());
      const held = async () => (await payee.status()).channels.find((c) => c.channel === opened.contractTxid);
      const settled = (what) =>
        eventually(what, async () => {
          const h = await held();
          return [h && (await channelOf()).acknowledgedSat === h.paid, h];
        });
      let before = await settled("the first page's receipt");
      assert.equal(before.consumed, PRICE);

      // The payee stores each payment; every answer of the next LOST_MS is lost. The browser's
      // own resends (Firefox makes ten, Chromium none on a new connection) come at once and are
      // lost too; the extension's, after a pause, find the site answering. Each send carries the
      // same payment, which the payee serves as a reload.
      const LOST_MS = 1_000;
      const lines = [];
      for (const [how, n] of [
        ["typed, paid through its 402", 71],
        ["followed from the site's page, pre-armed", 72],
      ]) {
        const seen = lossy.paidRequests();
        lossy.mode.dropPaidUntil = Date.now() + LOST_MS;
        const url = `${lossy.url}/articles/${n}`;
        // The driver's own navigation may be cut short by the extension's: only the page counts.
        if (n === 71) void tab.goto(url).catch(() => undefined);
        else void tab.follow(url, `Article ${n}`).catch(() => undefined);
        await tab.waitText(`Article ${n}`, T.sync);
        assert.ok(lossy.mode.dropped > 0, `${how}: answers were lost`);
        const sends = lossy.paidRequests() - seen;
        assert.ok(sends >= 2, `${how}: sent again (${sends} sends)`);
        const after = await settled(`${how}: the receipt`);
        assert.equal(after.consumed - before.consumed, PRICE, `${how}: charged once for the page`);
        lines.push(`${how}: ${sends} sends, ${lossy.mode.dropped} answers lost, consumed +${after.consumed - before.consumed} sat`);
        lossy.mode.dropped = 0;
        before = after;
      }
      const budget = (await ask(ext, { type: "sites" })).sites.find((x) => x.origin === lossy.url);
      assert.equal(budget.spentSat, before.paid, "the budget counts what the payee holds");
      report(t, lines.join("; "));
    } finally {
      await lossy.stop();
    }
  });
});

nodeTest("both browsers' figures, from this run", async (t) => {
  const ran = Object.keys(figures);
  assert.deepEqual(ran, BROWSERS, "each browser ran its 50 paid pages");
  const ms = (v) => `${v.toFixed(1)} ms`;
  const rows = [
    ["repeat paid page (median)", (f) => ms(f.repeatPaidMedianMs)],
    ["the same page unpaid, from the site (median)", (f) => ms(f.unpaidMedianMs)],
    ["ratio (goal: within 1.1)", (f) => f.ratio.toFixed(2)],
    ["ratio per Navigation Timing (load event)", (f) => f.loadRatio.toFixed(2)],
    ["first paid page on an open channel", (f) => ms(f.firstPaidOnChannelMs)],
    ["first visit, opening a channel", (f) => ms(f.openingVisitMs)],
    ["launch to the background's first state reply", (f) => ms(f.backgroundStartMs)],
  ];
  report(t, `| figure | ${ran.join(" | ")} |`);
  for (const [name, cell] of rows) report(t, `| ${name} | ${ran.map((b) => cell(figures[b])).join(" | ")} |`);
  await writeArtifact("pay-timings.json", figures);
});
