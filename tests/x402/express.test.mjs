// An unmodified x402 Express app (`paymentMiddleware` of @x402/express) priced in sat on the
// local chain, pointed at trickle-payee's facilitator through @trickle/x402-server, paid by the
// native payer `trickle fetch`: a channel opens, several requests are paid, a reload of a paid
// header is not charged again, a handler's 500 is not charged, and the payee's stored totals are
// what the CLI says it paid.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";

import { API_PRICE, FUNDED, PRICE } from "../browser/fixtures.mjs";
import { ROOT, startChain, workDir } from "../browser/harness.mjs";
import { rawGet, startFacilitatedShop } from "./fixtures.mjs";

const CLI_BIN =
  process.env.TRICKLE_CLI_BIN ?? path.resolve(ROOT, process.env.CARGO_TARGET_DIR ?? "target", "debug", "trickle");

/** `trickle args` with the wallet in `dir` on the chain at `esplora`: { ok, stdout, stderr }. */
async function trickle(dir, esplora, ...args) {
  const env = {
    ...process.env,
    TRICKLE_DIR: dir,
    TRICKLE_PASSWORD: "x402 express regtest",
    TRICKLE_NETWORK: "regtest",
    TRICKLE_ESPLORA: esplora,
  };
  try {
    const { stdout, stderr } = await promisify(execFile)(CLI_BIN, args, { env, timeout: 120_000 });
    return { ok: true, stdout, stderr };
  } catch (e) {
    return { ok: false, stdout: e.stdout ?? "", stderr: e.stderr ?? e.message };
  }
}

test("trickle fetch pays an x402 Express app through the facilitator", { timeout: 300_000 }, async (t) => {
  const work = await workDir("x402-express");
  t.after(work.dispose);
  const chain = await startChain();
  t.after(chain.stop);
  const { payee, shop, stop } = await startFacilitatedShop(chain, work.dir);
  t.after(stop);

  const wallet = path.join(work.dir, "wallet");
  const cli = (...args) => trickle(wallet, chain.url, ...args);
  const created = await cli("wallet", "create");
  assert.ok(created.ok, created.stderr);
  const address = (await cli("wallet", "address")).stdout.trim();
  await chain.faucet(address, FUNDED);

  // Both sides' view of the one channel: the payee's stored row and the CLI's `channels` row.
  const sides = async () => {
    const { channels } = await payee.status();
    assert.equal(channels.length, 1, "the payee stores one channel");
    const table = (await cli("channels")).stdout;
    const row = table.split("\n").find((l) => l.startsWith(shop.url));
    assert.ok(row, `a CLI channel with ${shop.url}: ${table}`);
    const [, , , paid, credit] = row.split(/\s+/);
    return { payee: channels[0], cli: { paid: Number(paid), credit: Number(credit) } };
  };
  const agree = (s, consumed) => {
    assert.equal(s.payee.consumed, consumed, "the payee charged each served request once");
    assert.equal(s.payee.paid, s.cli.paid, "the payee holds what the CLI signed");
    assert.equal(s.payee.paid - s.payee.consumed, s.cli.credit, "both sides count the same credit");
  };

  // One run: the first request opens the channel, the rest pay over it.
  const urls = [1, 2, 3, 4, 5].map((n) => `${shop.url}/articles/${n}`);
  const run = await cli("fetch", ...urls, `${shop.url}/api/quote/7`);
  assert.ok(run.ok, run.stderr);
  assert.equal(run.stdout, `${[1, 2, 3, 4, 5].map((n) => `article ${n}\n`).join("")}{"quote":7}`);
  // Asked to pay twice: for the first article (no channel yet), and for the quote, whose price
  // differs from the offer the pre-armed payment names (x402 matches the amount). The other
  // articles were paid up front.
  assert.equal(run.stderr.match(/^paying for /gm)?.length, 2, run.stderr);
  let consumed = 5 * PRICE + API_PRICE;
  agree(await sides(), consumed);

  // The last article's header again, as a reload: served, charged nothing.
  const last = shop.payments.findLast((p) => p.path === "/articles/5");
  const reload = await fetch(`${shop.url}/articles/5`, { headers: { "payment-signature": last.header } });
  assert.equal(reload.status, 200);
  assert.equal(await reload.text(), "article 5\n");
  const receipt = JSON.parse(Buffer.from(reload.headers.get("payment-response"), "base64").toString());
  assert.equal(receipt.success, true);
  assert.equal(receipt.extra.receipt.consumed, "0");
  assert.equal((await payee.status()).channels[0].consumed, consumed, "a reload is not charged twice");

  // The forwarded channel endpoint reaches the channel routes only, whatever the path says.
  const escape = await rawGet(shop.url, "/.well-known/trickle/channel/%2e%2e/%2e%2e/%2e%2e/supported");
  assert.equal(escape.status, 404, escape.body);
  assert.equal((await rawGet(shop.url, "/.well-known/trickle/channel/../../../supported")).status, 404);

  // A handler that answers 500 is never settled.
  const broken = await cli("fetch", `${shop.url}/broken`);
  assert.equal(broken.ok, false);
  assert.match(broken.stderr, /HTTP 500/);
  assert.ok(shop.payments.some((p) => p.path === "/broken"), "the CLI paid for /broken");
  assert.equal((await payee.status()).channels[0].consumed, consumed, "a failed handler is not charged");

  // And the next paid request brings both sides together again.
  const after = await cli("fetch", `${shop.url}/articles/6`);
  assert.ok(after.ok, after.stderr);
  consumed += PRICE;
  agree(await sides(), consumed);
});
