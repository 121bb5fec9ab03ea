// Trickle's headers as x402's own code reads them (@x402/core 2.27, unmodified): every header in
// tests/vectors/http.json, and the headers a running payee answers with, decode with x402's
// header decoders and validate with its zod schemas — the offer with PaymentRequiredSchema, the
// payment with PaymentPayloadSchema, the receipt with the settlement-response schema its
// facilitator client applies (reached through HTTPFacilitatorClient.settle, the one public way
// to it, against a loopback facilitator answering with our receipt). Nothing may be stripped:
// what x402 keeps is what we sent.

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import http from "node:http";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import {
  HTTPFacilitatorClient,
  decodePaymentRequiredHeader,
  decodePaymentResponseHeader,
  decodePaymentSignatureHeader,
} from "@x402/core/http";
import { PaymentPayloadSchema, PaymentRequiredSchema } from "@x402/core/schemas";
import { x402ResourceServer } from "@x402/core/server";
import { ROOT, startChain, startPayee, startSite, stopServer, workDir } from "./harness.mjs";

const vectors = JSON.parse(await readFile(path.join(ROOT, "tests", "vectors", "http.json"), "utf8"));
const headersOf = (name) => vectors.headers.filter((h) => h.header === name);

/**
 * A facilitator on 127.0.0.1 whose `/settle` answers with whatever `next` holds, so that
 * HTTPFacilitatorClient parses it with x402's settlement-response schema.
 */
async function startFacilitator() {
  const state = { next: null };
  const server = http.createServer(async (req, res) => {
    for await (const _ of req);
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(state.next));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const client = new HTTPFacilitatorClient({ url: `http://127.0.0.1:${server.address().port}`, timeoutMs: 10_000 });
  return {
    /** The settlement response x402 reads from `response`, or the error it throws. */
    async settle(response, payment, requirements) {
      state.next = response;
      return client.settle(payment, requirements);
    },
    stop: () => stopServer(server),
  };
}

/** Checks an offer header as x402 reads it; returns the decoded offer. */
function checkOffer(value) {
  const decoded = decodePaymentRequiredHeader(value);
  const parsed = PaymentRequiredSchema.safeParse(decoded);
  assert.ok(parsed.success, `PAYMENT-REQUIRED fails x402's schema: ${parsed.error}`);
  assert.deepEqual(parsed.data, decoded, "x402 keeps the whole offer");
  return decoded;
}

/** Checks a payment header as x402 reads it; returns the decoded payment. */
function checkPayment(value) {
  const decoded = decodePaymentSignatureHeader(value);
  const parsed = PaymentPayloadSchema.safeParse(decoded);
  assert.ok(parsed.success, `PAYMENT-SIGNATURE fails x402's schema: ${parsed.error}`);
  assert.deepEqual(parsed.data, decoded, "x402 keeps the whole payment");
  return decoded;
}

/** Checks a receipt header as x402's facilitator client reads a settlement; returns it decoded. */
async function checkReceipt(facilitator, value, payment, requirements) {
  const decoded = decodePaymentResponseHeader(value);
  const read = await facilitator.settle(decoded, payment, requirements);
  assert.deepEqual(read, decoded, "x402 keeps the whole receipt (nothing outside its schema)");
  assert.equal(typeof read.transaction, "string");
  return decoded;
}

describe("x402's own schemas", { timeout: 120_000 }, () => {
  let facilitator;
  before(async () => {
    facilitator = await startFacilitator();
  });
  after(() => facilitator?.stop());

  test("every header of the vectors validates", async () => {
    const [required] = headersOf("PAYMENT-REQUIRED").map((h) => checkOffer(h.value));
    const offer = required.accepts[0];
    assert.equal(offer.asset, `${offer.network}/slip44:0`, "bitcoin on the offer's network, CAIP-19");
    const payments = headersOf("PAYMENT-SIGNATURE").map((h) => checkPayment(h.value));
    assert.equal(payments.length, 2, "a payment answering the offer and a pre-armed one");
    for (const payment of payments) assert.deepEqual(payment.accepted, offer);
    const receipts = headersOf("PAYMENT-RESPONSE");
    assert.equal(receipts.length, 2);
    for (const h of receipts) {
      const read = await checkReceipt(facilitator, h.value, payments[0], offer);
      assert.deepEqual(read, h.json);
      assert.ok(read.extra.receipt.channel, "the receipt is under extra");
    }
    assert.equal(decodePaymentResponseHeader(receipts[0].value).transaction, "", "paid off chain");
    assert.match(decodePaymentResponseHeader(receipts[1].value).transaction, /^[0-9a-f]{64}$/, "the settlement");
  });

  test("the receipt of before fails x402's schema, so the check can fail", async () => {
    const { transaction, extra, ...old } = headersOf("PAYMENT-RESPONSE")[0].json;
    assert.equal(transaction, "");
    const before = { ...old, receipt: extra.receipt };
    await assert.rejects(facilitator.settle(before, {}, {}), /invalid data/);
  });

  describe("a running payee", () => {
    let chain;
    let site;
    let payee;
    let work;
    let url;
    before(async () => {
      work = await workDir("x402-servers");
      chain = await startChain();
      site = await startSite([[/^\/articles\/(\d+)$/, (m) => ["text/html", `<h1>Article ${m[1]}</h1>`]]]);
      payee = await startPayee({ esplora: chain.url, upstream: site.url, dir: work.dir, prices: [{ path: "/articles", sat: 10 }] });
      url = `${payee.url}/articles/1`;
    });
    after(async () => {
      await payee?.stop();
      await site?.stop();
      await chain?.stop();
      await work?.dispose();
    });

    /** GETs `url` with an optional payment; the offer and the receipt, checked. */
    const get = async (payment) => {
      const res = await fetch(url, { headers: payment ? { "payment-signature": payment } : {} });
      assert.equal(res.status, 402);
      const offer = checkOffer(res.headers.get("payment-required"));
      const receipt = res.headers.get("payment-response");
      return { offer, receipt };
    };

    test("its offers and refusals validate, and x402's own payments get x402's codes", async () => {
      const { offer: required, receipt: none } = await get();
      assert.equal(none, null, "no receipt without a payment");
      const offer = required.accepts[0];
      assert.equal(offer.asset, `${offer.network}/slip44:0`);
      // The vector's payment, now answering this payee's offer (padded, as x402 encodes it):
      // a payment of no channel it knows, refused with a receipt.
      const vector = checkPayment(headersOf("PAYMENT-SIGNATURE")[0].value);
      const ours = { ...vector, resource: required.resource, accepted: offer, payload: { ...vector.payload, nonce: offer.extra.nonce } };
      // JSON allows trailing blanks: one or two make a length that base64 pads.
      let json = JSON.stringify(ours);
      while (Buffer.byteLength(json) % 3 === 0) json += " ";
      const header = Buffer.from(json).toString("base64");
      assert.ok(header.endsWith("="));
      const refused = await get(checkPaymentValue(header));
      const receipt = await checkReceipt(facilitator, refused.receipt, ours, offer);
      assert.deepEqual([receipt.success, receipt.errorReason, receipt.transaction], [false, "unknown_channel", ""]);
      // The same without its padding is read too.
      const unpadded = await get(header.replace(/=+$/, ""));
      assert.equal(decodePaymentResponseHeader(unpadded.receipt).errorReason, "unknown_channel");
      // x402's resource server matches `accepted` as the payee does, with `extra.nonce` as the
      // scheme's dynamic field: the payment answering the first offer matches the next one
      // (and the payee took it up to its channel, above), the same at another price matches
      // neither.
      const x402 = new x402ResourceServer(new HTTPFacilitatorClient({ url: "http://127.0.0.1:9" })).register(offer.network, {
        scheme: "batch-settlement",
        defaultAssetTransferMethod: "default",
        paymentFlows: {},
        dynamicExtraFields: ["nonce"],
      });
      const next = await get();
      assert.notEqual(next.offer.accepts[0].extra.nonce, offer.extra.nonce, "a fresh nonce");
      assert.deepEqual(x402.findMatchingRequirements(next.offer.accepts, ours), next.offer.accepts[0]);
      const repriced = { ...ours, accepted: { ...offer, amount: "11" } };
      assert.equal(x402.findMatchingRequirements(next.offer.accepts, repriced), undefined);
      const refusedRepriced = await get(Buffer.from(JSON.stringify(repriced)).toString("base64"));
      assert.equal(decodePaymentResponseHeader(refusedRepriced.receipt).errorReason, "invalid_payment_requirements");
      // What an x402 client of another scheme sends, and a payment of another x402 version.
      const exact = { x402Version: 2, resource: required.resource, accepted: { ...offer, scheme: "exact" }, payload: { signature: "0x00" } };
      const v3 = { ...ours, x402Version: 3 };
      for (const [payment, code] of [
        [exact, "unsupported_scheme"],
        [v3, "invalid_x402_version"],
      ]) {
        const answer = await get(Buffer.from(JSON.stringify(payment)).toString("base64"));
        const read = await checkReceipt(facilitator, answer.receipt, ours, offer);
        assert.equal(read.errorReason, code);
      }
    });
  });
});

/** A header value x402 accepts as a payment (its own decoder and schema). */
function checkPaymentValue(value) {
  checkPayment(value);
  return value;
}
