// The Node payer under @x402/fetch, for `scripts/bench.sh` (not a test: `npm run test:x402` runs
// only *.test.mjs). In one Node process, the wallet unlocked once and its channel open, each
// round sends 100 paid and 100 unpaid requests through `wrapFetchWithPayment(agent.fetch)`,
// alternating which go first, to two sites on the local chain:
//
// - trickle-payee's proxy: /articles/N at 10 sat against /free/N through the same proxy;
// - an unmodified @x402/express app paid through the payee's facilitator: /articles/N against
//   its unpriced /free/N.
//
// Medians of ROUNDS rounds, and the paid / unpaid ratio of the whole run (the goal is
// 1.1x). Prints the rows and appends them to the file named by $BENCH_ROWS, if set.
// Knobs: BENCH_AGENT_ROUNDS (5), BENCH_AGENT_REQUESTS (100). Release binaries when
// TRICKLE_PAYEE_BIN points at them (scripts/bench.sh does).

import assert from "node:assert/strict";
import { appendFile, mkdir } from "node:fs/promises";
import path from "node:path";

import { POLICY, PRICE } from "../browser/fixtures.mjs";
import { startChain, startPayee, startSite, stats, workDir } from "../browser/harness.mjs";
import { fundedAgent, startFacilitatedShop } from "./fixtures.mjs";

const ROUNDS = Number(process.env.BENCH_AGENT_ROUNDS ?? 5);
const REQUESTS = Number(process.env.BENCH_AGENT_REQUESTS ?? 100);

/** ms to GET `urls` one after another with `pay`, each answered 200 with its whole body read. */
async function timed(pay, urls) {
  const t0 = performance.now();
  for (const url of urls) {
    const response = await pay(url);
    assert.equal(response.status, 200, url);
    await response.arrayBuffer();
  }
  return performance.now() - t0;
}

/** Rounds of paid against unpaid runs on `origin`: { paid, unpaid } lists of ms. */
async function rounds(pay, origin) {
  const paid = [];
  const unpaid = [];
  // The channel opens on the first paid request, outside the measurement.
  assert.equal((await pay(`${origin}/articles/0`)).status, 200);
  for (let round = 0; round < ROUNDS; round++) {
    const urls = (kind) => Array.from({ length: REQUESTS }, (_, i) => `${origin}/${kind}/${1 + round * REQUESTS + i}`);
    if (round % 2 === 0) {
      paid.push(await timed(pay, urls("articles")));
      unpaid.push(await timed(pay, urls("free")));
    } else {
      unpaid.push(await timed(pay, urls("free")));
      paid.push(await timed(pay, urls("articles")));
    }
  }
  return { paid, unpaid };
}

function rows(label, { paid, unpaid }) {
  const p = stats(paid).median;
  const u = stats(unpaid).median;
  console.error(`${label}: paid ${paid.map((x) => x.toFixed(0)).join(", ")} ms; unpaid ${unpaid.map((x) => x.toFixed(0)).join(", ")} ms`);
  return (
    `| @x402/fetch + Node payer, ${label}: ${REQUESTS} paid requests (whole run, median of ${ROUNDS}) ` +
    `| ${p.toFixed(0)} ms | ${REQUESTS} unpaid ${u.toFixed(0)} ms | ${(p / u).toFixed(2)} |\n`
  );
}

const work = await workDir("x402-bench");
const stops = [work.dispose];
try {
  const chain = await startChain();
  stops.unshift(chain.stop);
  const site = await startSite([[/^\/(articles|free)\/(\d+)$/, (m) => ["text/plain", `page ${m[2]}\n`]]]);
  stops.unshift(site.stop);
  for (const dir of ["proxy", "facilitator"]) await mkdir(path.join(work.dir, dir));
  const proxy = await startPayee({
    esplora: chain.url,
    upstream: site.url,
    dir: path.join(work.dir, "proxy"),
    prices: [{ path: "/articles/", sat: PRICE }],
    policy: POLICY,
  });
  stops.unshift(proxy.stop);
  const { shop, stop } = await startFacilitatedShop(chain, path.join(work.dir, "facilitator"));
  stops.unshift(stop);

  const { close, pay } = await fundedAgent(chain, path.join(work.dir, "agent"));
  stops.unshift(close);
  const table = rows("trickle-payee proxy", await rounds(pay, proxy.url)) + rows("x402 Express app", await rounds(pay, shop.url));
  process.stdout.write(table);
  if (process.env.BENCH_ROWS) await appendFile(process.env.BENCH_ROWS, table);
} finally {
  for (const stop of stops) await stop();
}
