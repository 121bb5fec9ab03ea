// What the x402 tests share: their site, an unmodified Express app (`paymentMiddleware` of
// @x402/express) with priced routes paid through trickle-payee's facilitator by way of
// @trickle/x402-server; and their Node payer.

import assert from "node:assert/strict";
import http from "node:http";

import { TrickleAgent } from "@trickle/x402-client";
import { wrapFetchWithPayment, x402Client } from "@x402/fetch";

import { HTTPFacilitatorClient } from "@x402/core/server";
import { paymentMiddleware, x402ResourceServer } from "@x402/express";
import { TrickleChannelScheme, trickleChannelEndpoint } from "@trickle/x402-server";
import express from "express";

import { API_PRICE, FUNDED, POLICY, PRICE } from "../browser/fixtures.mjs";
import { startPayee } from "../browser/harness.mjs";

export const REGTEST = "bip122:0f9188f13cb7b2c71f2a335e3a4fc328";
const AGENT_PASSWORD = "x402 agent regtest";
/** The price of `/premium`, above the payers' usual caps. */
export const PREMIUM = 1_000;

/** GET `target` of `origin` sent as it is (fetch would resolve its dot segments first). */
export function rawGet(origin, target) {
  return new Promise((resolve, reject) => {
    const req = http.get(`${origin}/`, { path: target }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode, body }));
    });
    req.on("error", reject);
  });
}

/**
 * An Express app with two priced routes, one whose handler fails and a free one; it records each
 * payment header it is sent.
 */
export async function startShop(facilitator) {
  const server = new x402ResourceServer(new HTTPFacilitatorClient({ url: facilitator })).register(
    REGTEST,
    new TrickleChannelScheme(facilitator),
  );
  const price = (sat) => ({ accepts: { scheme: "batch-settlement", network: REGTEST, price: sat }, description: "priced" });
  const payments = [];
  const app = express();
  app.use((req, _res, next) => {
    if (req.headers["payment-signature"]) payments.push({ path: req.path, header: req.headers["payment-signature"] });
    next();
  });
  app.use(trickleChannelEndpoint(facilitator));
  app.use(
    paymentMiddleware(
      { "GET /articles/:n": price(PRICE), "GET /api/quote/:n": price(API_PRICE), "GET /broken": price(PRICE), "GET /premium": price(PREMIUM) },
      server,
    ),
  );
  app.get("/articles/:n", (req, res) => res.type("text/plain").send(`article ${req.params.n}\n`));
  app.get("/api/quote/:n", (req, res) => res.json({ quote: Number(req.params.n) }));
  // Not priced: the unpaid baseline of the benchmarks.
  app.get("/free/:n", (req, res) => res.type("text/plain").send(`free ${req.params.n}\n`));
  app.get("/premium", (_req, res) => res.type("text/plain").send("premium\n"));
  app.get("/broken", (_req, res) => res.status(500).send("the handler failed\n"));
  const listening = await new Promise((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  return {
    url: `http://127.0.0.1:${listening.address().port}`,
    payments,
    stop: () => new Promise((resolve) => listening.close(resolve)),
  };
}

/**
 * trickle-payee serving only its facilitator (its proxy's listener unused: the Express app is the
 * site), on `chain` with its records in `dir`, and the shop paid through it.
 */
export async function startFacilitatedShop(chain, dir) {
  const payee = await startPayee({
    esplora: chain.url,
    upstream: "http://127.0.0.1:9",
    dir,
    prices: [],
    policy: POLICY,
    facilitator: true,
  });
  const shop = await startShop(payee.facilitator);
  return {
    payee,
    shop,
    stop: async () => {
      await shop.stop();
      await payee.stop();
    },
  };
}

/**
 * A Node payer (@trickle/x402-client) with a new wallet in `dir`, funded with `FUNDED` sat on
 * `chain`, open for paying with caps of 100 sat a request and 50,000 a channel and `options`
 * (`TrickleAgent.open`'s), sending with `send` (fetch by default): `pay` is @x402/fetch's `wrapFetchWithPayment` over it, `open` opens
 * the wallet again (after `close`).
 */
export async function fundedAgent(chain, dir, send = fetch, options = {}) {
  const phrase = await TrickleAgent.create({ dir, network: "regtest", password: AGENT_PASSWORD });
  assert.equal(phrase.split(" ").length, 12, "a recovery phrase of 12 words");
  const open = () =>
    TrickleAgent.open({
      dir,
      network: "regtest",
      esplora: chain.url,
      password: AGENT_PASSWORD,
      maxPrice: 100,
      budget: 50_000,
      fetch: send,
      ...options,
    });
  const agent = await open();
  await chain.faucet(await agent.address(), FUNDED);
  assert.equal((await agent.balance()).confirmed, FUNDED);
  const client = new x402Client().register(agent.network, agent.scheme).setSpendControls(agent.spendControls);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await agent.close();
  };
  return { agent, open, close, pay: wrapFetchWithPayment(agent.fetch, client) };
}
