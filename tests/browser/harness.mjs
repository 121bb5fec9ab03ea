// Shared pieces of the browser tests: the local regtest chain, Chromium with the built extension
// loaded, and the steps the tests take through the extension's pages.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import http from "node:http";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

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
 * policy (snake_case, as in the TOML file).
 */
export async function startPayee({ esplora, upstream, dir, prices, policy = {} }) {
  const toml = (v) => (typeof v === "string" ? JSON.stringify(v) : Array.isArray(v) ? `[${v.join(", ")}]` : String(v));
  const lines = [
    `listen = "127.0.0.1:0"`,
    `operator_listen = "127.0.0.1:0"`,
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
  const server = await spawnServer(PAYEE_BIN, ["--config", config], /on (http:\/\/127\.0\.0\.1:\d+)/, 2);
  const [url, operator] = server.urls;
  return {
    url,
    operator,
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
    stop: () => new Promise((resolve) => server.close(resolve)),
  };
}

// ---------------------------------------------------------------------------------------------
// The browser

/**
 * Launches Debian's Chromium headless with `dist/extension` loaded, in a fresh profile, and waits
 * for the extension's service worker. `launchMs` runs from the launch call to the worker's target.
 */
export async function launchBrowser(name) {
  assert.ok(
    existsSync(path.join(EXTENSION_DIR, "manifest.json")),
    `${EXTENSION_DIR} has no manifest.json: run \`bash scripts/build-extension.sh\` first`,
  );
  const work = await workDir(name);
  const tmp = path.join(work.dir, "tmp");
  await mkdir(tmp, { recursive: true });
  const t0 = performance.now();
  const context = await chromium.launchPersistentContext(path.join(work.dir, "profile"), {
    executablePath: CHROMIUM,
    headless: true,
    ignoreDefaultArgs: ["--disable-extensions"],
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      `--disable-extensions-except=${EXTENSION_DIR}`,
      `--load-extension=${EXTENSION_DIR}`,
    ],
    env: { ...process.env, TMPDIR: tmp },
    viewport: POPUP,
    timeout: T.launch,
  });
  context.setDefaultTimeout(T.ui);
  context.setDefaultNavigationTimeout(T.ui);
  const pageErrors = [];
  const workerLog = [];
  const watchPage = (page) => {
    page.on("pageerror", (err) => pageErrors.push(`${page.url()}: ${err.message}`));
  };
  context.on("page", watchPage);
  context.pages().forEach(watchPage);
  const watchWorker = (w) => {
    w.on("console", (msg) => workerLog.push(`[${msg.type()}] ${msg.text()}`));
  };
  context.on("serviceworker", watchWorker);

  const isOurs = (w) => w.url().startsWith("chrome-extension://");
  let worker = context.serviceWorkers().find(isOurs);
  if (!worker) {
    worker = await context.waitForEvent("serviceworker", { predicate: isOurs, timeout: T.launch });
  }
  const workerMs = performance.now() - t0;
  context.serviceWorkers().forEach(watchWorker);
  const extensionId = new URL(worker.url()).host;

  return {
    context,
    extensionId,
    t0,
    workerMs,
    pageErrors,
    workerLog,
    url: (file) => `chrome-extension://${extensionId}/${file}`,
    async close() {
      await within(20_000, "Chromium to close", context.close()).catch(() => {});
      await work.dispose().catch(() => {});
    },
  };
}

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

/** Opens an extension page at popup size (or page size) and waits for its first screen. */
export async function openPage(browser, file = "popup.html", viewport = POPUP) {
  const page = await browser.context.newPage();
  await page.setViewportSize(viewport);
  await page.goto(browser.url(file), { timeout: T.ui });
  await waitScreenNot(page, "loading");
  return page;
}

/** The page the worker opens on install, sized as a browser tab. */
export async function onboardingTab(browser) {
  const isOnboarding = (p) => p.url().endsWith("/onboarding.html") || p.url().includes("/onboarding.html#");
  let page = browser.context.pages().find(isOnboarding);
  if (!page) {
    page = await browser.context.waitForEvent("page", { predicate: isOnboarding, timeout: T.ui });
  }
  await page.setViewportSize(PAGE);
  await page.waitForLoadState("load", { timeout: T.ui });
  await waitScreenNot(page, "loading");
  return page;
}

export async function screen(page) {
  return page.locator("#app").getAttribute("data-screen", { timeout: T.short });
}

export async function waitScreen(page, name, timeout = T.ui) {
  await page.locator(`#app[data-screen="${name}"]`).waitFor({ state: "attached", timeout });
}

async function waitScreenNot(page, name) {
  await page.waitForFunction(
    (n) => {
      const s = document.getElementById("app")?.dataset.screen;
      return s && s !== n;
    },
    name,
    { timeout: T.ui },
  );
}

export async function shot(page, name) {
  await mkdir(ARTIFACTS, { recursive: true });
  // Let spinners and transitions settle so screenshots are stable.
  await sleep(150);
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), timeout: T.ui });
}

export async function writeArtifact(name, data) {
  await mkdir(ARTIFACTS, { recursive: true });
  await writeFile(path.join(ARTIFACTS, name), JSON.stringify(data, null, 2) + "\n");
}

/** The error banner's text, once it shows. */
export async function bannerText(page, testid = "error-banner") {
  const banner = page.locator(`[data-testid="${testid}"]:visible`).first();
  await banner.waitFor({ state: "visible", timeout: T.ui });
  return (await banner.innerText()).trim();
}

// ---------------------------------------------------------------------------------------------
// Steps through the UI

/** From the welcome screen: settings → regtest at `esploraUrl` → back on welcome. */
export async function chooseRegtest(page, esploraUrl, shotName) {
  await waitScreen(page, "welcome");
  await page.getByTestId("welcome-settings").click();
  await waitScreen(page, "settings");
  await page.getByTestId("settings-network").selectOption("regtest");
  await page.getByTestId("settings-esplora").fill(esploraUrl);
  if (shotName) await shot(page, shotName);
  await page.getByTestId("settings-save").click();
  await waitScreen(page, "welcome");
  assert.equal(await page.getByTestId("welcome-network-name").innerText(), "Regtest");
}

/** Fills both password fields and submits with `button`. */
export async function fillPasswords(page, password, again = password) {
  await page.getByTestId("password").fill(password);
  await page.getByTestId("password-confirm").fill(again);
}

/** Restores `phrase` from the welcome screen. */
export async function restoreFromWelcome(page, phrase, password = PASSWORD, shotName) {
  await waitScreen(page, "welcome");
  await page.getByTestId("restore-wallet").click();
  await waitScreen(page, "restore");
  await page.getByTestId("restore-phrase").fill(phrase);
  await fillPasswords(page, password);
  if (shotName) await shot(page, shotName);
  await page.getByTestId("restore-submit").click();
}

/** Home's balance as the page shows it, from the raw sat in `data-sat`. */
export async function readBalance(page) {
  const read = async (id) => {
    const v = await page.getByTestId(id).getAttribute("data-sat", { timeout: T.short });
    return v === null ? null : Number(v);
  };
  return {
    confirmed: await read("balance-confirmed"),
    pending: await read("balance-pending"),
    immature: await read("balance-immature"),
  };
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
    const status = page.getByTestId("sync-status");
    const state = await status.getAttribute("data-state", { timeout: T.short });
    if (state !== "syncing" && performance.now() - lastPress > 2_500) {
      const button = page.locator('[data-testid="sync-now"]:visible, [data-testid="sync-retry"]:visible').first();
      if (await button.count()) {
        await button.click({ timeout: T.short }).catch(() => {});
        lastPress = performance.now();
      }
    }
    await sleep(400);
  }
  const syncText = await page.getByTestId("sync-status").innerText().catch(() => "?");
  throw new Error(
    `balance did not reach ${JSON.stringify(want)} in ${timeoutMs} ms; ` +
      `page shows ${JSON.stringify(seen)}, sync: "${syncText}"`,
  );
}

/** Receive screen → the address (plain, from `data-address`) → back home. */
export async function readReceiveAddress(page, shotName) {
  await waitScreen(page, "home");
  await page.getByTestId("nav-receive").click();
  await waitScreen(page, "receive");
  const address = page.getByTestId("receive-address");
  await address.waitFor({ state: "visible", timeout: T.ui });
  const value = await address.getAttribute("data-address");
  assert.ok(value, "the receive screen shows an address");
  assert.equal((await address.innerText()).replace(/\s+/g, ""), value, "the shown text is the address");
  assert.ok(await page.getByTestId("receive-qr").isVisible(), "the receive screen shows a QR code");
  if (shotName) await shot(page, shotName);
  await page.getByTestId("back").click();
  await waitScreen(page, "home");
  return value;
}

/** The txids on home's transaction list, with their net amount and height. */
export async function readTransactions(page) {
  return page.getByTestId("tx-row").evaluateAll((rows) =>
    rows.map((r) => ({
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
// The service worker

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
  const cdp = await browser.context.newCDPSession(page);
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
  const cdp = await browser.context.newCDPSession(page);
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
