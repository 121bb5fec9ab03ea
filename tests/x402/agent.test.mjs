// An x402 agent in Node: @x402/fetch's `wrapFetchWithPayment` with Trickle's scheme client
// (@trickle/x402-client, the Rust wallet in wasm) pays an unmodified @x402/express app through
// trickle-payee's facilitator on the local chain: a channel opens, 100 requests are paid, a
// reload is free, a handler's 500 is not charged, a payee that counted less credit (a receipt
// lost on the way) is paid the difference in one retry, and both sides' totals agree.

import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";

import { TricklePaymentError, StoreLockedError } from "@trickle/x402-client";

import { POLICY, PRICE } from "../browser/fixtures.mjs";
import { startChain, startPayee, startSite, workDir } from "../browser/harness.mjs";
import { fundedAgent, REGTEST, startFacilitatedShop } from "./fixtures.mjs";

/**
 * A fetch that counts what it sends, and can lose the `PAYMENT-RESPONSE` of answers to paid
 * requests: of the next `served` answers, and of the next `refused` refusals
 * (`lose({ served, refused })`).
 */
function countingFetch() {
  const counts = { requests: 0, paid: 0, refusedPaid: 0 };
  const losing = { served: 0, refused: 0 };
  const send = async (request) => {
    counts.requests += 1;
    const paid = request.headers.has("payment-signature");
    if (paid) counts.paid += 1;
    const response = await fetch(request);
    if (paid && response.status === 402) counts.refusedPaid += 1;
    const kind = response.ok ? "served" : "refused";
    if (paid && losing[kind] > 0 && response.headers.has("payment-response")) {
      losing[kind] -= 1;
      const headers = new Headers(response.headers);
      headers.delete("payment-response");
      return new Response(await response.arrayBuffer(), { status: response.status, headers });
    }
    return response;
  };
  return { send, counts, lose: ({ served = 0, refused = 0 }) => Object.assign(losing, { served, refused }) };
}

/**
 * The local chain and trickle-payee's proxy in front of a site of articles at `PRICE` each,
 * stopped after the test `t`.
 */
async function startPricedProxy(t, dir) {
  const chain = await startChain();
  t.after(chain.stop);
  const site = await startSite([[/^\/articles\/(\d+)$/, (m) => ["text/plain", `article ${m[1]}\n`]]]);
  t.after(site.stop);
  const payee = await startPayee({
    esplora: chain.url,
    upstream: site.url,
    dir,
    prices: [{ path: "/articles/", sat: PRICE }],
    policy: POLICY,
  });
  t.after(payee.stop);
  return { chain, payee };
}

/** Asserts that the payee's one channel and the agent's agree, `consumed` charged. */
async function agree(payee, agent, consumed) {
  const { channels } = await payee.status();
  assert.equal(channels.length, 1, "the payee stores one channel");
  const [mine] = await agent.channels();
  assert.equal(channels[0].consumed, consumed, "the payee charged each served request once");
  assert.equal(channels[0].paid, mine.acknowledgedSat, "the payee holds what the agent's receipts say");
  // The rest is signed ahead for the next requests, in the agent only until they carry it.
  assert.ok(mine.paidSat >= mine.acknowledgedSat, "nothing is held that the agent did not sign");
  assert.equal(channels[0].paid - channels[0].consumed, mine.creditSat, "both sides count the same credit");
}

test("an x402 agent pays an x402 Express app with @x402/fetch over a Trickle channel", { timeout: 300_000 }, async (t) => {
  const work = await workDir("x402-agent");
  t.after(work.dispose);
  const chain = await startChain();
  t.after(chain.stop);
  const { payee, shop, stop } = await startFacilitatedShop(chain, work.dir);
  t.after(stop);

  const dir = path.join(work.dir, "agent");
  const wire = countingFetch();
  const { agent, open, close, pay } = await fundedAgent(chain, dir, wire.send);
  t.after(close);
  assert.equal(agent.network, REGTEST);
  await assert.rejects(open(), StoreLockedError, "one process at a time opens a wallet");

  // The first request opens the channel; the other 99 carry their payment up front.
  for (let n = 1; n <= 100; n++) {
    const response = await pay(`${shop.url}/articles/${n}`);
    assert.equal(response.status, 200, `article ${n}`);
    assert.equal(await response.text(), `article ${n}\n`);
    const settled = JSON.parse(Buffer.from(response.headers.get("payment-response"), "base64").toString());
    assert.equal(settled.success, true);
  }
  let consumed = 100 * PRICE;
  await agree(payee, agent, consumed);
  assert.equal(wire.counts.requests, 101, "one 402, for the first request; then each request is sent once");

  // A URL paid in this process's life is sent again with the payment that paid it: free.
  const reload = await pay(`${shop.url}/articles/100`);
  assert.equal(reload.status, 200);
  assert.equal(await reload.text(), "article 100\n");
  await agree(payee, agent, consumed);

  // A handler's 500 is not settled, so not charged.
  const broken = await pay(`${shop.url}/broken`);
  assert.equal(broken.status, 500);
  assert.ok(shop.payments.some((p) => p.path === "/broken"), "the agent paid for /broken");
  assert.equal((await payee.status()).channels[0].consumed, consumed, "a failed handler is not charged");

  // Receipts lost on the way: the agent counts the credit of its last receipt while the payee
  // spends it. Once it is gone, the agent's pre-armed payment is short; the payee's corrective
  // 402 carries its account, and the difference is paid in one retry.
  wire.lose({ served: 12 });
  const before = { ...wire.counts };
  for (let n = 101; n <= 125; n++) {
    const response = await pay(`${shop.url}/articles/${n}`);
    assert.equal(response.status, 200);
    assert.equal(await response.text(), `article ${n}\n`);
    consumed += PRICE;
  }
  assert.equal(wire.counts.refusedPaid - before.refusedPaid, 1, "one corrective 402");
  assert.equal(wire.counts.requests - before.requests, 26, "recovered in one retry");
  await agree(payee, agent, consumed);

  // Over the agent's cap per request: refused by the wallet, nothing signed.
  const paidBefore = (await payee.status()).channels[0].paid;
  await assert.rejects(pay(`${shop.url}/premium`), (e) => e instanceof TricklePaymentError && e.code === "over_max_price");
  assert.equal((await payee.status()).channels[0].paid, paidBefore, "nothing more is held");
  // The pre-armed payment the refused request carried is covered by the next one.
  assert.equal((await pay(`${shop.url}/articles/104`)).status, 200);
  consumed += PRICE;
  await agree(payee, agent, consumed);

  // The receipts are stored; the wallet reopens with the same totals.
  await close();
  const again = await open();
  t.after(() => again.close());
  const [mine] = await again.channels();
  const { channels } = await payee.status();
  assert.equal(channels[0].paid, mine.acknowledgedSat, "the stored totals are the payee's");
});

test("the same agent pays trickle-payee's proxy, and pays the difference when the payee counted less", { timeout: 300_000 }, async (t) => {
  const work = await workDir("x402-agent-proxy");
  t.after(work.dispose);
  const { chain, payee } = await startPricedProxy(t, work.dir);
  const wire = countingFetch();
  const { agent, close, pay } = await fundedAgent(chain, path.join(work.dir, "agent"), wire.send);
  t.after(close);

  for (let n = 1; n <= 20; n++) {
    const response = await pay(`${payee.url}/articles/${n}`);
    assert.equal(response.status, 200, `article ${n}`);
    assert.equal(await response.text(), `article ${n}\n`);
  }
  let consumed = 20 * PRICE;
  await agree(payee, agent, consumed);
  assert.equal(wire.counts.requests, 21, "one 402, for the first request");
  assert.equal((await pay(`${payee.url}/articles/20`)).status, 200, "a reload");
  await agree(payee, agent, consumed);

  // Receipts lost, and the account that the refusal of the short payment carries too: the
  // agent answers the payee's offer from credit it no longer has; the payee's second refusal (for
  // lack of credit, with its account) is paid the difference, once, in one more request.
  wire.lose({ served: 12, refused: 1 });
  const before = { ...wire.counts };
  for (let n = 21; n <= 45; n++) {
    const response = await pay(`${payee.url}/articles/${n}`);
    assert.equal(response.status, 200);
    assert.equal(await response.text(), `article ${n}\n`);
    consumed += PRICE;
  }
  assert.equal(wire.counts.refusedPaid - before.refusedPaid, 2, "the pre-armed and the answering payment refused");
  assert.equal(wire.counts.requests - before.requests, 27, "then the difference, in one request");
  await agree(payee, agent, consumed);
});

test("in MPP's framing the agent pays trickle-payee's Payment challenges, with no x402 client", { timeout: 300_000 }, async (t) => {
  const work = await workDir("x402-agent-mpp");
  t.after(work.dispose);
  const { chain, payee } = await startPricedProxy(t, work.dir);
  const seen = [];
  const send = async (request) => {
    const response = await fetch(request);
    seen.push({
      mpp: request.headers.get("authorization")?.startsWith("Payment ") ?? false,
      x402: request.headers.has("payment-signature"),
      status: response.status,
      receipt: response.headers.get("payment-receipt"),
      x402Receipt: response.headers.has("payment-response"),
    });
    return response;
  };
  const { agent, close } = await fundedAgent(chain, path.join(work.dir, "agent"), send, { framing: "mpp" });
  t.after(close);

  for (let n = 1; n <= 5; n++) {
    const response = await agent.fetch(`${payee.url}/articles/${n}`);
    assert.equal(response.status, 200, `article ${n}`);
    assert.equal(await response.text(), `article ${n}\n`);
  }
  // Each page: asked (402 with a Payment challenge), then paid with a credential.
  assert.equal(seen.length, 10);
  assert.ok(seen.every((s) => !s.x402), "no x402 payment is sent");
  const paid = seen.filter((s) => s.mpp);
  assert.equal(paid.length, 5);
  for (const s of paid) {
    assert.equal(s.status, 200);
    assert.equal(s.x402Receipt, false, "an MPP payment is answered in MPP's framing");
    const receipt = JSON.parse(Buffer.from(s.receipt, "base64url").toString());
    assert.equal(receipt.status, "success");
    assert.equal(receipt.method, "trickle");
  }
  await agree(payee, agent, 5 * PRICE);

  // A page paid in this process's life is sent again with its credential: a free reload.
  assert.equal((await agent.fetch(`${payee.url}/articles/5`)).status, 200);
  assert.equal(seen.at(-1).mpp, true);
  assert.equal(JSON.parse(Buffer.from(seen.at(-1).receipt, "base64url").toString()).consumed, "0");
  await agree(payee, agent, 5 * PRICE);
});
