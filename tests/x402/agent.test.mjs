// An x402 agent in Node: @x402/fetch's `wrapFetchWithPayment` with Trickle's scheme client
// (@trickle/x402-client, the Rust wallet in wasm) pays an unmodified @x402/express app through
// trickle-payee's facilitator on the local chain: a channel opens, 100 requests are paid, a
// reload is free, a handler's 500 is not charged, a payee that counted less credit (a receipt
// lost on the way) is paid the difference in one retry, and both sides' totals agree.

import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";

import { TrickleAgent, TricklePaymentError, StoreLockedError } from "@trickle/x402-client";
import { wrapFetchWithPayment, x402Client } from "@x402/fetch";

import { FUNDED, POLICY, PRICE } from "../browser/fixtures.mjs";
import { startChain, startPayee, startSite, workDir } from "../browser/harness.mjs";
import { REGTEST, startShop } from "./shop.mjs";

const PASSWORD = "x402 agent regtest";

/**
 * A fetch that counts what it sends, and can lose the `PAYMENT-RESPONSE` of the next answers to
 * paid requests (`loseReceipts(n, { refusals })`: of served answers, or of refusals too).
 */
function countingFetch() {
  const counts = { requests: 0, paid: 0, refusedPaid: 0 };
  let lose = { n: 0, refusals: false };
  const send = async (request) => {
    counts.requests += 1;
    const paid = request.headers.has("payment-signature");
    if (paid) counts.paid += 1;
    const response = await fetch(request);
    if (paid && response.status === 402) counts.refusedPaid += 1;
    const losing = lose.n > 0 && paid && response.headers.has("payment-response");
    if (losing && (response.ok || lose.refusals)) {
      lose.n -= 1;
      const headers = new Headers(response.headers);
      headers.delete("payment-response");
      return new Response(await response.arrayBuffer(), { status: response.status, headers });
    }
    return response;
  };
  return { send, counts, loseReceipts: (n, { refusals = false } = {}) => (lose = { n, refusals }) };
}

/** A wallet in `dir` with `FUNDED` sat on `chain`, open for paying, with its wire counted. */
async function fundedAgent(t, chain, dir) {
  const phrase = await TrickleAgent.create({ dir, network: "regtest", password: PASSWORD });
  assert.equal(phrase.split(" ").length, 12, "a recovery phrase of 12 words");
  const wire = countingFetch();
  const open = () =>
    TrickleAgent.open({
      dir,
      network: "regtest",
      esplora: chain.url,
      password: PASSWORD,
      maxPrice: 100,
      budget: 50_000,
      fetch: wire.send,
    });
  const agent = await open();
  let closed = false;
  t.after(() => closed || agent.close());
  await chain.faucet(await agent.address(), FUNDED);
  assert.equal((await agent.balance()).confirmed, FUNDED);
  const client = new x402Client().register(agent.network, agent.scheme).setSpendControls(agent.spendControls);
  const close = async () => {
    closed = true;
    await agent.close();
  };
  return { agent, wire, open, close, pay: wrapFetchWithPayment(agent.fetch, client) };
}

/** Asserts that the payee's one channel and the agent's agree, `consumed` charged. */
async function agree(payee, agent, consumed) {
  const { channels } = await payee.status();
  assert.equal(channels.length, 1, "the payee stores one channel");
  const [mine] = await agent.channels();
  assert.equal(channels[0].consumed, consumed, "the payee charged each served request once");
  assert.equal(channels[0].paid, mine.paidSat, "the payee holds what the agent signed");
  assert.equal(channels[0].paid - channels[0].consumed, mine.creditSat, "both sides count the same credit");
}

test("an x402 agent pays an x402 Express app with @x402/fetch over a Trickle channel", { timeout: 300_000 }, async (t) => {
  const work = await workDir("x402-agent");
  t.after(work.dispose);
  const chain = await startChain();
  t.after(chain.stop);
  const payee = await startPayee({
    esplora: chain.url,
    upstream: "http://127.0.0.1:9",
    dir: work.dir,
    prices: [],
    policy: POLICY,
    facilitator: true,
  });
  t.after(payee.stop);
  const shop = await startShop(payee.facilitator);
  t.after(shop.stop);

  const dir = path.join(work.dir, "agent");
  const { agent, wire, open, close, pay } = await fundedAgent(t, chain, dir);
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

  // A receipt lost on the way: the agent counts more credit than the payee. Its next payment
  // is short; the payee's corrective 402 carries its account, and the difference is paid in one
  // retry.
  wire.loseReceipts(1);
  assert.equal((await pay(`${shop.url}/articles/101`)).status, 200);
  consumed += PRICE;
  const before = { ...wire.counts };
  for (const n of [102, 103]) {
    const response = await pay(`${shop.url}/articles/${n}`);
    assert.equal(response.status, 200);
    assert.equal(await response.text(), `article ${n}\n`);
    consumed += PRICE;
  }
  assert.equal(wire.counts.refusedPaid - before.refusedPaid, 1, "one corrective 402");
  assert.equal(wire.counts.requests - before.requests, 3, "recovered in one retry");
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
  assert.equal(channels[0].paid, mine.paidSat, "the stored totals are the payee's");
});

test("the same agent pays trickle-payee's proxy, and pays the difference when the payee counted less", { timeout: 300_000 }, async (t) => {
  const work = await workDir("x402-agent-proxy");
  t.after(work.dispose);
  const chain = await startChain();
  t.after(chain.stop);
  const site = await startSite([[/^\/articles\/(\d+)$/, (m) => ["text/plain", `article ${m[1]}\n`]]]);
  t.after(site.stop);
  const payee = await startPayee({
    esplora: chain.url,
    upstream: site.url,
    dir: work.dir,
    prices: [{ path: "/articles/", sat: PRICE }],
    policy: POLICY,
  });
  t.after(payee.stop);
  const { agent, wire, pay } = await fundedAgent(t, chain, path.join(work.dir, "agent"));

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

  // A receipt lost, and the account that the next refusal carries too: the agent answers the
  // payee's offer from credit it no longer has; the payee's second refusal (for lack of credit,
  // with its account) is paid the difference, once, in one more request.
  wire.loseReceipts(2, { refusals: true });
  assert.equal((await pay(`${payee.url}/articles/21`)).status, 200);
  const before = { ...wire.counts };
  const response = await pay(`${payee.url}/articles/22`);
  assert.equal(response.status, 200);
  assert.equal(await response.text(), "article 22\n");
  consumed += 2 * PRICE;
  assert.equal(wire.counts.refusedPaid - before.refusedPaid, 2, "the pre-armed and the answering payment refused");
  assert.equal(wire.counts.requests - before.requests, 3, "then the difference, in one request");
  await agree(payee, agent, consumed);
});
