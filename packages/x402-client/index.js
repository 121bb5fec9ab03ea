// Trickle's payer for Node: the Rust wallet (`trickle-node`, compiled to wasm) paying x402
// `batch-settlement` offers on Bitcoin over Bitcoin payment channels, for `@x402/fetch`'s `wrapFetchWithPayment`.
//
// Two parts work together. `agent.fetch` is the fetch that `wrapFetchWithPayment` wraps: it
// sends a site's pre-armed payment up front, hands every response to the wallet (receipts are
// applied there), and when the wallet pays a 402 it keeps the payment for the scheme client;
// a payee that counted less credit is paid the difference at once, once. `agent.scheme` is the
// `SchemeNetworkClient` registered with `x402Client`: it gives x402 the payment the wallet
// made for the offer. Every rule (caps, offer checks, what is paid when) is the wallet's.

import { createRequire } from "node:module";

import { FileStore } from "./store.js";

const require = createRequire(import.meta.url);
const { Agent } = require("./wasm/trickle_node.js");

export { FileStore, StoreLockedError } from "./store.js";

export const SCHEME = "batch-settlement";
const SIGNATURE = "payment-signature";
const AUTHORIZATION = "authorization";

/** A refusal of the wallet's: `code` says which (docs/wire.md lists them), `detail` more. */
export class TricklePaymentError extends Error {
  constructor(failure) {
    super(failure?.message ?? String(failure));
    this.name = "TricklePaymentError";
    this.code = failure?.code ?? "internal";
    this.detail = failure?.detail;
  }
}

async function wallet(call) {
  try {
    return await call();
  } catch (e) {
    throw e instanceof Error ? e : new TricklePaymentError(e);
  }
}

/** The `extra.nonce` each way to pay in a `PAYMENT-REQUIRED` header names. */
function offeredNonces(header) {
  try {
    const required = JSON.parse(Buffer.from(header, "base64").toString("utf8"));
    return (required.accepts ?? []).filter((a) => a.scheme === SCHEME).map((a) => a.extra?.nonce);
  } catch {
    return [];
  }
}

/** The `payload` of a `PAYMENT-SIGNATURE` header. */
function payloadOf(header) {
  return JSON.parse(Buffer.from(header, "base64").toString("utf8")).payload;
}

export class TrickleAgent {
  #agent;
  #store;
  #fetch;
  #maxPrice;
  /** Pays in MPP's framing. */
  #mpp;
  /** Payments the wallet made for an offer, by the offer's nonce, until x402 takes them. */
  #offered = new Map();
  /** What each header the wallet made carries (`paid` or `paidAgain`). */
  #sent = new Map();

  constructor(agent, store, fetchImpl, maxPrice, framing) {
    this.#agent = agent;
    this.#maxPrice = maxPrice;
    this.#mpp = framing === "mpp";
    this.#store = store;
    this.#fetch = fetchImpl;
    this.fetch = this.fetch.bind(this);
    this.scheme = new TrickleChannelClient(this.#offered);
  }

  /**
   * Creates a wallet in directory `dir`, sealed with `password`; resolves to its recovery
   * phrase, shown once.
   */
  static async create({ dir, network, password }) {
    const store = new FileStore(dir);
    try {
      return await wallet(() => Agent.create(store, network, password));
    } finally {
      await store.close();
    }
  }

  /**
   * Runs the wallet's store suite over a `FileStore` in the empty directory `dir`; resolves to
   * the number of checks that held.
   */
  static async checkStore(dir) {
    const store = new FileStore(dir);
    try {
      return await wallet(() => Agent.checkStore(store));
    } finally {
      await store.close();
    }
  }

  /** Restores the wallet of `phrase` into directory `dir`, sealed with `password`. */
  static async restore({ dir, network, phrase, password }) {
    const store = new FileStore(dir);
    try {
      await wallet(() => Agent.restore(store, network, phrase, password));
    } finally {
      await store.close();
    }
  }

  /**
   * Unlocks the wallet in directory `dir` for this process (another process opening it is
   * refused until `close()`), and syncs it with the chain at `esplora`. It pays at most
   * `maxPrice` sat per request and locks at most `budget` sat in a new channel with a site;
   * `feeRate` (sat/vB) fixes the contracts' rate, else the chain's estimate is paid;
   * `framing: "mpp"` pays sites' MPP challenges (`Authorization: Payment`) rather than their
   * x402 offers, in `agent.fetch` alone; `progress(text)` is told of openings. `fetch` is the
   * fetch it sends with.
   */
  static async open({ dir, network, esplora, password, maxPrice, budget, feeRate, framing, progress, fetch: fetchImpl }) {
    const store = new FileStore(dir);
    try {
      const options = { network, esplora, password, maxPrice, budget, progress };
      if (feeRate !== undefined) options.feeRate = feeRate;
      if (framing !== undefined) options.framing = framing;
      const agent = await wallet(() => Agent.open(store, options));
      return new TrickleAgent(agent, store, fetchImpl ?? globalThis.fetch, maxPrice, framing);
    } catch (e) {
      await store.close();
      throw e;
    }
  }

  /** The wallet's network as x402 names it (`bip122:...`): register `scheme` for it. */
  get network() {
    return this.#agent.network;
  }

  /**
   * x402's own spend controls for this wallet's asset, bitcoin on its network, capped at the
   * wallet's `maxPrice` per request: `x402Client.setSpendControls(agent.spendControls)` (x402
   * refuses assets it does not know of otherwise).
   */
  get spendControls() {
    const network = this.network;
    return {
      allowedAssets: [{ network, asset: `${network}/slip44:0`, maxAmountPerPayment: String(this.#maxPrice) }],
    };
  }

  /** A fresh receive address. */
  address() {
    return wallet(() => this.#agent.address());
  }

  /** Syncs, then `{ confirmed, pending, immature }` in sat. */
  balance() {
    return wallet(() => this.#agent.balance());
  }

  /** The wallet's channels, as `trickle channels` lists them. */
  channels() {
    return wallet(() => this.#agent.channels());
  }

  /** Asks the payee of `site` to close its channel; resolves to the settlement's txid. */
  closeChannel(site) {
    return wallet(() => this.#agent.close(site));
  }

  /** Every channel duty, as `trickle duties` runs them; run it now and then. */
  duties() {
    return wallet(() => this.#agent.duties());
  }

  /** Stores what is left of the receipts and releases the wallet for another process. */
  async close() {
    try {
      await wallet(() => this.#agent.flush());
    } finally {
      await this.#store.close();
    }
  }

  /**
   * The fetch for `wrapFetchWithPayment(agent.fetch, client)`: see the top of this file. A
   * refusal of the wallet's (over `maxPrice`, beyond `budget`, a bad offer) rejects with a
   * `TricklePaymentError`.
   */
  async fetch(input, init) {
    let request = new Request(input, init);
    const url = request.url;
    let name = SIGNATURE;
    let header = request.headers.get(SIGNATURE);
    let sent = "nothing";
    if (header) {
      // A header x402 took from the scheme client; any other is the caller's own.
      sent = this.#sent.get(header) ?? "paid";
      this.#sent.delete(header);
    } else {
      const armed = await wallet(() => this.#agent.armed(url));
      if (armed) {
        ({ name, header } = armed);
        request.headers.set(name, header);
        sent = "armed";
      }
    }
    for (;;) {
      // Kept for a second send: the payee may have counted less credit, or (MPP) ask.
      const copy = sent === "paid" || this.#mpp ? request.clone() : undefined;
      // While a paid request is in flight, the wallet signs and stores the top-up the next
      // requests to the site carry, so that they need no signing or disk write of their own.
      const [response] = await Promise.all([
        this.#fetch(request),
        sent === "nothing" ? undefined : wallet(() => this.#agent.prepare(url)),
      ]);
      const got = (h) => response.headers.get(h) ?? undefined;
      const next = await wallet(() =>
        this.#agent.onResponse(
          url,
          sent,
          header ? name : undefined,
          header ?? undefined,
          response.status,
          got("payment-required"),
          got("payment-response"),
          got("www-authenticate"),
          got("payment-receipt"),
        ),
      );
      if (next.next === "done") return response;
      if (copy && (next.sent === "paidAgain" || next.name === AUTHORIZATION)) {
        // Paid here: the difference, at once and once (the wallet refuses a third time), or an
        // MPP challenge, which x402's client does not read.
        await response.body?.cancel();
        request = copy;
        ({ name, header, sent } = next);
        request.headers.set(name, header);
        continue;
      }
      // A 402 the wallet paid: x402 asks the scheme client for the payment next.
      for (const nonce of offeredNonces(response.headers.get("payment-required"))) {
        this.#offered.set(nonce, next.header);
      }
      this.#sent.set(next.header, next.sent);
      return response;
    }
  }
}

/** The `SchemeNetworkClient` of Trickle's scheme (`batch-settlement` on `bip122:`): the wallet's payment for an offer. */
export class TrickleChannelClient {
  scheme = SCHEME;
  #offered;

  constructor(offered) {
    this.#offered = offered;
  }

  async createPaymentPayload(x402Version, requirements) {
    const nonce = requirements.extra?.nonce;
    const header = this.#offered.get(nonce);
    if (!header) {
      throw new Error(
        "no Trickle payment for this offer: pay through the TrickleAgent's fetch (wrapFetchWithPayment(agent.fetch, client))",
      );
    }
    this.#offered.delete(nonce);
    return { x402Version, payload: payloadOf(header) };
  }
}
