// The payer in the browser, for `scripts/bench.sh` (not a test: `npm run test:browser` runs only
// *.test.mjs). Loads the built extension (dist/extension) into Debian's Chromium next to an empty
// MV3 extension written here, and measures, each figure next to a baseline from the same run:
//
// - signing a payment in the worker's wasm (`benchPayments`: PayerState::pay on a throwaway v2
//   channel, timed inside the worker with performance.now()), median of rounds, against the
//   same call natively: criterion's median of `payer_signs_payment` (crates/channel/benches/
//   payments.rs) from this run, read from $BENCH_CRITERION_DIR if written after $BENCH_STARTED_MS;
//   then the same in Firefox's event page (dist/firefox, browsers.mjs), against the same native;
// - the service worker's cold start: stopped (CDP closeTarget, as the browser stops an idle
//   worker), then a `state` message sent until it answers ok, median of runs; the baseline is
//   the same measurement on an empty module MV3 worker that answers every message at once;
// - the wasm's size, raw and gzip -9 (no baseline for raw; gzip against raw).
//
// Prints the rows and appends them to the file named by $BENCH_ROWS, if set.
// Knobs: BENCH_COLD_RUNS (9), BENCH_SIGN_ROUNDS (15), BENCH_SIGN_COUNT (payments a round, 200).

import assert from "node:assert/strict";
import { appendFile, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { chromium } from "playwright-core";
import { CHROMIUM, EXTENSION_DIR, T, sleep, stats, timeUntilOk, workDir, within } from "./harness.mjs";
import { chromiumArgs, launch as launchBrowser } from "./browsers.mjs";

const COLD_RUNS = Number(process.env.BENCH_COLD_RUNS ?? 9);
const SIGN_ROUNDS = Number(process.env.BENCH_SIGN_ROUNDS ?? 15);
const SIGN_COUNT = Number(process.env.BENCH_SIGN_COUNT ?? 200);
const WARMUP_ROUNDS = 5;

const EMPTY_MANIFEST = {
  manifest_version: 3,
  name: "Empty worker (Trickle benchmark baseline)",
  version: "0.0.1",
  background: { service_worker: "worker.js", type: "module" },
};
const EMPTY_WORKER = `chrome.runtime.onMessage.addListener((message, sender, sendResponse) => {
  sendResponse({ ok: true, payload: {} });
  return false;
});
console.info("worker ready");
`;

/** Chromium with both extensions; resolves with the context and each extension's id. */
async function launch(dir, emptyDir) {
  const exts = `${EXTENSION_DIR},${emptyDir}`;
  const context = await chromium.launchPersistentContext(path.join(dir, "profile"), {
    executablePath: CHROMIUM,
    headless: true,
    ignoreDefaultArgs: ["--disable-extensions"],
    args: chromiumArgs(exts),
    env: { ...process.env, TMPDIR: dir },
    timeout: T.launch,
  });
  context.setDefaultTimeout(T.ui);
  const ids = {};
  const deadline = performance.now() + T.launch;
  while (Object.keys(ids).length < 2) {
    for (const w of context.serviceWorkers()) {
      const url = new URL(w.url());
      if (url.protocol !== "chrome-extension:") continue;
      const name = (await w.evaluate(() => chrome.runtime.getManifest().name)) ?? "";
      ids[name.startsWith("Empty worker") ? "empty" : "trickle"] = url.host;
    }
    if (performance.now() > deadline) throw new Error(`extension workers did not start: ${JSON.stringify(ids)}`);
    if (Object.keys(ids).length < 2) await sleep(100);
  }
  return { context, ids };
}

/** The service worker targets of extension `id`, as CDP lists them. */
async function workerTargets(cdp, id) {
  const { targetInfos } = await cdp.send("Target.getTargets");
  return targetInfos.filter((t) => t.type === "service_worker" && t.url.startsWith(`chrome-extension://${id}/`));
}

/** Stops extension `id`'s worker as the browser stops an idle one; resolves once it is gone. */
async function stopWorker(context, page, id) {
  const cdp = await context.newCDPSession(page);
  try {
    const targets = await workerTargets(cdp, id);
    assert.equal(targets.length, 1, "the worker runs before it is stopped");
    await cdp.send("Target.closeTarget", { targetId: targets[0].targetId });
    const t0 = performance.now();
    let forced = false;
    while ((await workerTargets(cdp, id)).length > 0) {
      if (!forced && performance.now() - t0 > T.short / 2) {
        await cdp.send("ServiceWorker.enable");
        await cdp.send("ServiceWorker.stopAllWorkers");
        forced = true;
      }
      if (performance.now() - t0 > T.short) throw new Error(`the worker of ${id} still runs`);
      await sleep(20);
    }
  } finally {
    await cdp.detach().catch(() => {});
  }
  // Let the browser finish tearing it down before the next message.
  await sleep(200);
}

/** Median, in the criterion estimates of this run, of the native `payer_signs_payment` (ns). */
async function nativeSignNs() {
  const dir = process.env.BENCH_CRITERION_DIR;
  const since = Number(process.env.BENCH_STARTED_MS ?? 0);
  if (!dir) return null;
  const file = path.join(dir, "payment", "payer_signs_payment", "new", "estimates.json");
  try {
    if ((await stat(file)).mtimeMs < since) return null; // a previous run's
    return JSON.parse(await readFile(file, "utf8")).median.point_estimate;
  } catch {
    return null;
  }
}

const fmt = (x, digits = 1) => x.toFixed(digits);

/**
 * Signing in the extension's wasm, asked from `page` (an extension page): warm-up rounds (the
 * engine tiers the wasm up from its baseline compiler; the first rounds run slower), then
 * SIGN_ROUNDS rounds of SIGN_COUNT payments; returns each round's µs a payment.
 */
async function signRounds(page) {
  const sign = async () => {
    const reply = await within(
      60_000,
      "benchPayments",
      page.evaluate((m) => chrome.runtime.sendMessage(m), { type: "benchPayments", count: SIGN_COUNT }),
    );
    assert.ok(reply?.ok, `benchPayments answered: ${JSON.stringify(reply)}`);
    assert.equal(reply.payload.count, SIGN_COUNT);
    return (reply.payload.elapsedMs * 1e3) / SIGN_COUNT;
  };
  for (let i = 0; i < WARMUP_ROUNDS; i++) await sign();
  const rounds = [];
  for (let i = 0; i < SIGN_ROUNDS; i++) rounds.push(await sign());
  return rounds;
}

/** The table row of signing in `where`, against the native median when this run measured it. */
function signRow(where, rounds, nativeNs) {
  const wasmUs = stats(rounds).median;
  const figure = `| payer signs a payment, wasm in ${where} (median of ${SIGN_ROUNDS} rounds of ${SIGN_COUNT}) | ${fmt(wasmUs)} µs`;
  return nativeNs === null
    ? `${figure} | — (native not measured in this run) | — |`
    : `${figure} | ${fmt(nativeNs / 1e3)} µs (same call native, criterion median) | ${fmt(wasmUs / (nativeNs / 1e3), 2)}x |`;
}

async function main() {
  assert.ok(Number.isInteger(SIGN_COUNT) && SIGN_COUNT > 0, "BENCH_SIGN_COUNT is a positive integer");
  const work = await workDir("bench");
  const emptyDir = path.join(work.dir, "empty-extension");
  await mkdir(emptyDir, { recursive: true });
  await writeFile(path.join(emptyDir, "manifest.json"), JSON.stringify(EMPTY_MANIFEST));
  await writeFile(path.join(emptyDir, "worker.js"), EMPTY_WORKER);
  await writeFile(path.join(emptyDir, "blank.html"), "<!doctype html><title>blank</title>\n");

  const rows = [];
  const nativeNs = await nativeSignNs();
  /** µs a payment, each round's, in each browser. */
  const perPayment = {};
  const { context, ids } = await launch(work.dir, emptyDir);
  try {
    // Pages that send nothing on their own: Trickle's popup on its welcome screen (a fresh
    // profile has no wallet), and the empty extension's blank page.
    for (const p of context.pages()) await p.close();
    const trickle = await context.newPage();
    await trickle.goto(`chrome-extension://${ids.trickle}/popup.html`);
    await trickle.locator('#app[data-screen="welcome"]').waitFor({ state: "attached" });
    const empty = await context.newPage();
    await empty.goto(`chrome-extension://${ids.empty}/blank.html`);
    await timeUntilOk(trickle, "state");
    await timeUntilOk(empty, "state");

    perPayment.chromium = await signRounds(trickle);
    rows.push(signRow("Chromium's worker", perPayment.chromium, nativeNs));

    // Cold starts, alternating which worker goes first.
    const cold = { trickle: [], empty: [] };
    for (let i = 0; i < COLD_RUNS; i++) {
      const order = i % 2 === 0 ? ["trickle", "empty"] : ["empty", "trickle"];
      for (const which of order) {
        const page = which === "trickle" ? trickle : empty;
        await stopWorker(context, page, ids[which]);
        cold[which].push(await timeUntilOk(page, "state"));
      }
    }
    const ct = stats(cold.trickle).median;
    const ce = stats(cold.empty).median;
    rows.push(
      `| service worker cold start to first \`state\` reply (median of ${COLD_RUNS}) | ${fmt(ct)} ms | ${fmt(ce)} ms (empty MV3 module worker, same measurement) | ${fmt(ct / ce, 2)}x |`,
    );
    process.stderr.write(
      `bench.mjs: cold starts (ms) trickle ${cold.trickle.map((x) => fmt(x, 0)).join(", ")}; ` +
        `empty ${cold.empty.map((x) => fmt(x, 0)).join(", ")}\n` +
        `bench.mjs: wasm µs a payment in Chromium ${perPayment.chromium.map((x) => fmt(x)).join(", ")}\n`,
    );
  } finally {
    await within(20_000, "Chromium to close", context.close()).catch(() => {});
    await work.dispose().catch(() => {});
  }

  // The same wasm in Firefox's event page, from its popup (a fresh profile: the welcome screen).
  const firefox = await launchBrowser("firefox", "bench");
  try {
    perPayment.firefox = await signRounds(await firefox.openPage("popup.html"));
    rows.push(signRow("Firefox's event page", perPayment.firefox, nativeNs));
    process.stderr.write(`bench.mjs: wasm µs a payment in Firefox ${perPayment.firefox.map((x) => fmt(x)).join(", ")}\n`);
  } finally {
    await firefox.close();
  }

  const wasm = await readFile(path.join(EXTENSION_DIR, "trickle_wasm_bg.wasm"));
  const gz = gzipSync(wasm, { level: 9 }).length;
  const kb = (n) => `${fmt(n / 1024)} KiB`;
  rows.push(`| extension wasm, raw | ${kb(wasm.length)} | — | — |`);
  rows.push(`| extension wasm, gzip -9 | ${kb(gz)} | ${kb(wasm.length)} (raw) | ${fmt(gz / wasm.length, 2)}x |`);

  console.log(rows.join("\n"));
  if (process.env.BENCH_ROWS) await appendFile(process.env.BENCH_ROWS, rows.join("\n") + "\n");
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
