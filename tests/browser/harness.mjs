// Shared pieces of the browser tests: the local regtest chain, the payee proxy, small sites, and
// the steps the tests take through the extension's pages, in either browser (browsers.mjs).

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import http from "node:http";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const EXTENSION_DIR = path.resolve(process.env.TRICKLE_EXTENSION_DIR ?? path.join(ROOT, "dist", "extension"));
export const ARTIFACTS = path.join(ROOT, "tests", "browser", "artifacts");
export const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
export const REGTEST_BIN =
  process.env.TRICKLE_REGTEST_BIN ??
  path.resolve(ROOT, process.env.CARGO_TARGET_DIR ?? "target", "debug", "trickle-regtest");

export const PAYEE_BIN =
  process.env.TRICKLE_PAYEE_BIN ??
  path.resolve(ROOT, process.env.CARGO_TARGET_DIR ?? "target", "debug", "trickle-payee");

export const PASSWORD = "correct horse battery";
export const POPUP = { width: 360, height: 600 };
export const PAGE = { width: 960, height: 820 };

/** Every wait in these tests has a bound; these are the usual ones (ms). */
export const T = { short: 5_000, ui: 15_000, sync: 60_000, launch: 45_000 };

const children = new Set();
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

/** Fails the awaiting test with `what` instead of hanging when `promise` takes too long. */
export function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A directory for one test run's profile and temporary files; removed by `dispose`. */
export async function workDir(name) {
  const base = process.env.TRICKLE_TEST_TMP ?? os.tmpdir();
  await mkdir(base, { recursive: true });
  const dir = await mkdtemp(path.join(base, `trickle-browser-${name}-`));
  return { dir, dispose: () => rm(dir, { recursive: true, force: true, maxRetries: 3 }) };
}

// ---------------------------------------------------------------------------------------------
// The chain

/**
 * Spawns `bin args`, killed when the tests exit; resolves once it has printed `count` lines
 * matching `pattern` (their first capture groups, in order).
 */
async function spawnServer(bin, args, pattern, count = 1) {
  const name = path.basename(bin);
  if (!existsSync(bin)) {
    throw new Error(`${bin} is missing: build it with \`cargo build -p ${name}\` or point the env var at it`);
  }
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  const lines = createInterface({ input: child.stdout });
  const found = [];
  const printed = new Promise((resolve, reject) => {
    lines.on("line", (line) => {
      const m = pattern.exec(line);
      if (!m) return reject(new Error(`unexpected line from ${name}: ${line}`));
      found.push(m[1]);
      if (found.length === count) resolve(found);
    });
  });
  try {
    await within(
      60_000,
      `${name} to print its URL`,
      Promise.race([
        printed,
        exited.then(({ code, signal }) => {
          throw new Error(`${name} exited (${code ?? signal}): ${stderr}`);
        }),
      ]),
    );
  } catch (e) {
    child.kill("SIGKILL");
    children.delete(child);
    throw e;
  }
  return {
    urls: found,
    stderr: () => stderr,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const done = await Promise.race([exited, sleep(10_000).then(() => null)]);
      if (!done) child.kill("SIGKILL");
      children.delete(child);
    },
  };
}

/** Starts `trickle-regtest --port 0`; resolves once it prints its URL. */
export async function startChain() {
  const server = await spawnServer(REGTEST_BIN, ["--port", "0"], /listening on (http:\/\/127\.0\.0\.1:\d+)/);
  const url = server.urls[0];

  async function post(route, body) {
    const res = await fetch(`${url}${route}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body ?? {}),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`POST ${route}: ${res.status} ${text}`);
    return JSON.parse(text);
  }

  return {
    url,
    async info() {
      const res = await fetch(`${url}/regtest/info`, { signal: AbortSignal.timeout(10_000) });
      assert.equal(res.status, 200);
      return res.json();
    },
    /** Mines `blocks` to the faucet; returns the new height. */
    async mine(blocks = 1) {
      return (await post("/regtest/mine", { blocks })).height;
    },
    /**
     * Replaces the last `blocks` blocks with a heavier branch of empty ones; their transactions
     * go back to the mempool, except those in `forget`, which the network never sees again.
     */
    async reorg(blocks, forget = []) {
      return post("/regtest/reorg", { blocks, forget });
    },
    /** Pays `amountSat` to `address`; mined in a block unless `mine` is false. */
    async faucet(address, amountSat, { mine = true } = {}) {
      return (await post("/regtest/faucet", { address, amount_sat: amountSat, mine })).txid;
    },
    stop: server.stop,
  };
}

/**
 * The payee proxy (`trickle-payee`) in front of `upstream`, on the chain at `esplora`, with its
 * database and key in `dir`. `prices`: [{ path, sat }]; `policy`: overrides of the channel
 * policy (snake_case, as in the TOML file). `facilitator`: also serve the x402 facilitator (its
 * URL is `facilitator`).
 */
export async function startPayee({ esplora, upstream, dir, prices, policy = {}, facilitator = false }) {
  const toml = (v) => (typeof v === "string" ? JSON.stringify(v) : Array.isArray(v) ? `[${v.join(", ")}]` : String(v));
  const lines = [
    `listen = "127.0.0.1:0"`,
    `operator_listen = "127.0.0.1:0"`,
    ...(facilitator ? [`facilitator_listen = "127.0.0.1:0"`] : []),
    `upstream = ${toml(upstream)}`,
    `network = "regtest"`,
    `esplora = ${toml(esplora)}`,
    `database = ${toml(path.join(dir, "payee.sqlite3"))}`,
    `key_file = ${toml(path.join(dir, "payee.key"))}`,
    `poll_interval_secs = 1`,
    // Nobody mines between a channel's opening and its pages.
    `confirmations = 0`,
    // Small test channels: at 1 sat/vB the payee's share of a few hundred sat is not dust.
    `close_fee_rate_sat_vb = 1`,
    // Blocks come only when a test mines them: a settlement's fee is the estimate for the next.
    `close_target_blocks = 1`,
    "",
    "[policy]",
    // First payments of one page: such a channel closes once its pages pay the fee, or at its
    // close margin with all of its share.
    "allow_min_payment_below_close_cost = true",
    ...Object.entries(policy).map(([k, v]) => `${k} = ${toml(v)}`),
    ...prices.flatMap(({ path: p, sat }) => ["", "[[price]]", `path = ${toml(p)}`, `sat = ${sat}`]),
  ];
  const config = path.join(dir, "payee.toml");
  await writeFile(config, lines.join("\n") + "\n");
  const server = await spawnServer(PAYEE_BIN, ["--config", config], /on (http:\/\/127\.0\.0\.1:\d+)/, facilitator ? 3 : 2);
  const [url, operator] = server.urls;
  return {
    url,
    operator,
    facilitator: server.urls[2],
    /** The operator's `/status`: channels with paid, consumed and credit. */
    async status() {
      const res = await fetch(`${operator}/status`, { signal: AbortSignal.timeout(10_000) });
      assert.equal(res.status, 200);
      return res.json();
    },
    stop: server.stop,
    stderr: server.stderr,
  };
}

/**
 * A small site on 127.0.0.1 (a free port): `routes` maps a path regex to (match, request) =>
 * [type, body], or to `{ redirect: url }` for a 302.
 */
export async function startSite(routes) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    for (const [re, handler] of routes) {
      const m = re.exec(url.pathname);
      if (m) {
        const answer = handler(m, req);
        if (answer.redirect) {
          res.writeHead(302, { location: answer.redirect, "cache-control": "no-store" });
          res.end();
          return;
        }
        const [type, body] = answer;
        res.writeHead(200, { "content-type": type, "cache-control": "no-store" });
        res.end(body);
        return;
      }
    }
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found");
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    stop: () => stopServer(server),
  };
}

/**
 * Stops a test's HTTP server now: the connections a browser keeps open (or opened ahead of a
 * request) are closed too, rather than waited for until they time out.
 */
export function stopServer(server) {
  return new Promise((resolve) => {
    server.close(resolve);
    server.closeAllConnections();
  });
}

// ---------------------------------------------------------------------------------------------
// The extension's pages (a Tab of browsers.mjs, in either browser)

/** Sends one typed request to the worker from an extension page and returns its raw reply. */
export function send(page, message) {
  return within(
    T.ui,
    `reply to ${message.type}`,
    page.evaluate((m) => chrome.runtime.sendMessage(m), message),
  );
}

/**
 * Sends `state` until the worker answers `{ok: true}`; returns the ms it took and the state.
 * A message wakes a stopped worker, so this measures its start up to "ready".
 */
export async function waitReady(page, timeoutMs = T.ui) {
  const t0 = performance.now();
  const deadline = t0 + timeoutMs;
  let last;
  while (performance.now() < deadline) {
    try {
      last = await page.evaluate((m) => chrome.runtime.sendMessage(m), { type: "state" });
      if (last && last.ok) return { ms: performance.now() - t0, state: last.payload };
    } catch (e) {
      last = e.message;
    }
    await sleep(25);
  }
  throw new Error(`the worker did not answer state within ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
}

export async function screen(page) {
  return page.attr("#app", "data-screen");
}

export async function waitScreen(page, name, timeout = T.ui) {
  try {
    await page.waitAttached(`#app[data-screen="${name}"]`, timeout);
  } catch (e) {
    const shown = await screen(page).catch(() => "?");
    throw new Error(`the "${name}" screen did not show within ${timeout} ms; the page shows "${shown}"`, { cause: e });
  }
}

export async function writeArtifact(name, data) {
  await mkdir(ARTIFACTS, { recursive: true });
  await writeFile(path.join(ARTIFACTS, name), JSON.stringify(data, null, 2) + "\n");
}

/** The error banner's text, once it shows. */
export async function bannerText(page, testid = "error-banner") {
  await page.waitVisible(testid);
  return page.evaluate(
    (id) => [...document.querySelectorAll(`[data-testid="${id}"]`)].find((e) => e.checkVisibility()).innerText.trim(),
    testid,
  );
}

// ---------------------------------------------------------------------------------------------
// Steps through the UI

/** From the welcome screen: settings → regtest at `esploraUrl` → back on welcome. */
export async function chooseRegtest(page, esploraUrl, shotName) {
  await waitScreen(page, "welcome");
  await page.click("welcome-settings");
  await waitScreen(page, "settings");
  await page.select("settings-network", "regtest");
  await page.fill("settings-esplora", esploraUrl);
  if (shotName) await page.shot(shotName);
  await page.click("settings-save");
  await waitScreen(page, "welcome");
  assert.equal(await page.text("welcome-network-name"), "Regtest");
}

/** Fills both password fields. */
export async function fillPasswords(page, password, again = password) {
  await page.fill("password", password);
  await page.fill("password-confirm", again);
}

/** Restores `phrase` from the welcome screen. */
export async function restoreFromWelcome(page, phrase, password = PASSWORD, shotName) {
  await waitScreen(page, "welcome");
  await page.click("restore-wallet");
  await waitScreen(page, "restore");
  await page.fill("restore-phrase", phrase);
  await fillPasswords(page, password);
  if (shotName) await page.shot(shotName);
  await page.click("restore-submit");
}

/** Home's balance as the page shows it, from the raw sat in `data-sat`. */
export async function readBalance(page) {
  return page.evaluate(() => {
    const read = (id) => {
      const v = document.querySelector(`[data-testid="${id}"]`)?.getAttribute("data-sat");
      return v === null || v === undefined ? null : Number(v);
    };
    return { confirmed: read("balance-confirmed"), pending: read("balance-pending"), immature: read("balance-immature") };
  });
}

/**
 * Waits on home until the balance matches `want` (only the keys given), pressing "sync now" (or
 * "retry") now and then. Fails with what the page shows when it does not get there.
 */
export async function waitForBalance(page, want, timeoutMs = T.sync) {
  await waitScreen(page, "home");
  const deadline = performance.now() + timeoutMs;
  let seen;
  let lastPress = 0;
  while (performance.now() < deadline) {
    seen = await readBalance(page);
    if (Object.entries(want).every(([k, v]) => seen[k] === v)) return seen;
    const state = await page.attr("sync-status", "data-state");
    if (state !== "syncing" && performance.now() - lastPress > 2_500) {
      // The page's own click, on whichever of the two buttons shows.
      const pressed = await page.evaluate(() => {
        const button = [...document.querySelectorAll('[data-testid="sync-now"], [data-testid="sync-retry"]')].find((e) =>
          e.checkVisibility(),
        );
        button?.click();
        return Boolean(button);
      });
      if (pressed) lastPress = performance.now();
    }
    await sleep(400);
  }
  const syncText = await page.text("sync-status").catch(() => "?");
  throw new Error(
    `balance did not reach ${JSON.stringify(want)} in ${timeoutMs} ms; ` +
      `page shows ${JSON.stringify(seen)}, sync: "${syncText}"`,
  );
}

/** Receive screen → the address (plain, from `data-address`) → back home. */
export async function readReceiveAddress(page, shotName) {
  await waitScreen(page, "home");
  await page.click("nav-receive");
  await waitScreen(page, "receive");
  await page.waitVisible("receive-address");
  const value = await page.attr("receive-address", "data-address");
  assert.ok(value, "the receive screen shows an address");
  assert.equal((await page.text("receive-address")).replace(/\s+/g, ""), value, "the shown text is the address");
  assert.ok(await page.visible("receive-qr"), "the receive screen shows a QR code");
  if (shotName) await page.shot(shotName);
  await page.click("back");
  await waitScreen(page, "home");
  return value;
}

/** The txids on home's transaction list, with their net amount and height. */
export async function readTransactions(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll('[data-testid="tx-row"]')].map((r) => ({
      txid: r.dataset.txid,
      net: Number(r.dataset.net),
      height: r.querySelector('[data-testid="tx-height"]')?.getAttribute("data-height") ?? null,
      pending: r.querySelector('[data-testid="tx-pending"]') !== null,
    })),
  );
}

/** Asserts that no page threw an uncaught error. */
export function assertNoPageErrors(browser) {
  assert.deepEqual(browser.pageErrors, [], "the extension's pages threw no uncaught errors");
}

/** A line in the test output. */
export function report(t, line) {
  t.diagnostic(line);
}

/**
 * Tests that build on each other: once one fails, the later ones are skipped (with the reason)
 * instead of each waiting out its timeouts.
 */
export function steps(test) {
  let failed = null;
  return (name, opts, fn) => {
    if (typeof opts === "function") [opts, fn] = [{}, opts];
    return test(name, opts, async (t) => {
      if (failed) {
        t.skip(`an earlier step failed: ${failed}`);
        return;
      }
      try {
        await fn(t);
      } catch (e) {
        failed = name;
        throw e;
      }
    });
  };
}

// ---------------------------------------------------------------------------------------------
// Chromium's service worker (over CDP, which Firefox does not speak)

/** The extension's service worker targets, as CDP lists them. */
export async function workerTargets(browser, cdp) {
  const { targetInfos } = await cdp.send("Target.getTargets");
  return targetInfos.filter(
    (t) => t.type === "service_worker" && t.url.startsWith(`chrome-extension://${browser.extensionId}/`),
  );
}

/**
 * Stops the extension's service worker the way the browser does when it is idle: CDP
 * `Target.closeTarget` on its target. Resolves once the target is gone.
 */
export async function stopWorker(browser, page) {
  const cdp = await browser.context.newCDPSession(page.raw);
  try {
    const before = await workerTargets(browser, cdp);
    assert.equal(before.length, 1, "the worker runs before it is stopped");
    const started = browser.workerLog.filter((l) => l.includes("worker ready")).length;
    const { success } = await cdp.send("Target.closeTarget", { targetId: before[0].targetId });
    assert.equal(success, true, "CDP closed the worker's target");
    // Stopped: no worker runs, or a new one has started for an event that came meanwhile (its
    // target may keep the old id).
    const stopped = async () =>
      (await workerTargets(browser, cdp)).length === 0 ||
      browser.workerLog.filter((l) => l.includes("worker ready")).length > started;
    const t0 = performance.now();
    let forced = false;
    while (!(await stopped())) {
      if (!forced && performance.now() - t0 > T.short / 2) {
        // A worker busy with events may outlive closeTarget; stop it as DevTools does.
        await cdp.send("ServiceWorker.enable");
        await cdp.send("ServiceWorker.stopAllWorkers");
        forced = true;
      }
      if (performance.now() - t0 > T.short) throw new Error("the worker still runs after closeTarget");
      await sleep(20);
    }
    return before[0].targetId;
  } finally {
    await cdp.detach().catch(() => {});
  }
}

/** Whether the extension's worker runs now. */
export async function workerRunning(browser, page) {
  const cdp = await browser.context.newCDPSession(page.raw);
  try {
    return (await workerTargets(browser, cdp)).length === 1;
  } finally {
    await cdp.detach().catch(() => {});
  }
}

/** Sends `type` until it answers `{ok: true}`; returns how long that took (ms). */
export async function timeUntilOk(page, type, timeoutMs = T.ui) {
  const t0 = performance.now();
  let last;
  while (performance.now() - t0 < timeoutMs) {
    try {
      last = await page.evaluate((m) => chrome.runtime.sendMessage(m), { type });
      if (last && last.ok) return performance.now() - t0;
    } catch (e) {
      last = e.message;
    }
    await sleep(10);
  }
  throw new Error(`${type} did not succeed within ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
}

export function stats(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)];
  return { min: sorted[0], median, max: sorted[sorted.length - 1], runs: sorted.length };
}
