// Trickle's scheme, x402's `batch-settlement` on `bip122:` networks, for an x402 resource server (`x402ResourceServer` of @x402/core, as
// @x402/express uses it), and the route that forwards the payer's channel messages to the
// payee. Both talk to `trickle-payee`'s facilitator (docs/facilitator.md).

import { Router } from "express";

export const SCHEME = "batch-settlement";
/** The refusal of a payment short of the price: the payer pays the difference (docs/protocol.md). */
const INSUFFICIENT_CREDIT = "insufficient_credit";

/** The channel terms an offer repeats from the facilitator's `/supported` kind. */
const TERMS = ["versions", "minChannelValue", "maxChannelValue", "minPayment", "maxExpiryBlocks"];

/** Bodies of channel messages are at most 1 MiB (the payee's `MAX_BODY`). */
const MAX_MESSAGE = 1024 * 1024;

/**
 * The channel endpoint's routes below its path (docs/protocol.md section 3), and nothing else:
 * no dot segment may lead a forwarded request to the facilitator's own routes.
 */
const CHANNEL_ROUTE = /^\/(open|session\/[A-Za-z0-9_-]{1,64})$/;

/** Register with `x402ResourceServer.register(network, new TrickleChannelScheme(facilitatorUrl))`. */
export class TrickleChannelScheme {
  scheme = SCHEME;
  // One way to pay, the x402 `authorization` flow: verify before the handler, settle after it
  // succeeded, so a failed handler is never charged.
  defaultAssetTransferMethod = "default";
  paymentFlows = { default: { supported: ["authorization"], default: "authorization" } };
  // Set per request: a payment matches the offer whatever its nonce, and a pre-armed payment
  // (made before this request's offer) names the site's last offer, of another URL.
  // So is the payee's account of the channel in a corrective 402 (`channelState`).
  dynamicExtraFields = ["nonce", "resource", "channelState"];

  /** @param {string} facilitatorUrl `trickle-payee`'s `facilitator_listen` URL */
  constructor(facilitatorUrl) {
    this.facilitator = facilitatorUrl.replace(/\/+$/, "");
  }

  /** A price in sat: an integer, `"10"` or `"10 sat"`; the asset is bitcoin on `network`. */
  async parsePrice(price, network) {
    const sat = typeof price === "object" && price !== null ? price.amount : String(price).replace(/\s*sat$/, "");
    if (!/^[1-9][0-9]*$/.test(String(sat))) {
      throw new Error(`${JSON.stringify(price)} is not a whole number of sat above zero`);
    }
    return { amount: String(sat), asset: `${network}/slip44:0` };
  }

  /** The payee's key (when the route names none) and channel terms, from `/supported`. */
  async enhancePaymentRequirements(requirements, supportedKind) {
    const kind = supportedKind.extra ?? {};
    // Core builds a request's requirements (here) before its offer (below).
    this.endpointPath = kind.endpointPath;
    const extra = { ...requirements.extra };
    for (const term of TERMS) extra[term] = kind[term];
    return { ...requirements, payTo: requirements.payTo || kind.payTo, extra };
  }

  /**
   * Per request: the channel endpoint on the resource server's own origin (the payer opens
   * channels only there), a nonce the facilitator issues for this URL, and the URL itself,
   * which the facilitator decides the payment for (`resource`, as x402 v1 named it).
   */
  async enrichPaymentRequiredResponse({ requirements, resourceInfo, paymentPayload, error }) {
    const resource = resourceInfo.url;
    const endpoint = new URL(this.endpointPath, resource).href;
    const offers = await Promise.all(
      requirements.map(async (r) =>
        r.scheme !== SCHEME || r.extra.nonce
          ? r
          : { ...r, extra: { ...r.extra, endpoint, nonce: await this.#nonce(resource), resource } },
      ),
    );
    if (error !== INSUFFICIENT_CREDIT || paymentPayload?.accepted?.scheme !== SCHEME) return offers;
    // A corrective 402: the payee counted less credit than the payer did. The payer pays the
    // difference once it has the payee's account of the channel, which x402 leaves no header
    // for in a 402: it goes in the offers, as `batch-settlement` sends its channel state.
    const state = await this.#channelState(paymentPayload, offers.find((r) => r.scheme === SCHEME));
    return state ? offers.map((r) => (r.scheme === SCHEME ? { ...r, extra: { ...r.extra, channelState: state } } : r)) : offers;
  }

  /** The facilitator's account of the channel `payment` was refused on, asked again with `offer`. */
  async #channelState(payment, offer) {
    if (!offer) return undefined;
    const res = await fetch(`${this.facilitator}/verify`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ x402Version: 2, paymentPayload: payment, paymentRequirements: offer }),
      signal: AbortSignal.timeout(10_000),
    });
    if (!res.ok) return undefined;
    return (await res.json()).extra?.channelState;
  }

  /** A nonce of an offer for `resource`, from the facilitator's `POST /nonce`. */
  async #nonce(resource) {
    const res = await fetch(`${this.facilitator}/nonce`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ resource }),
      signal: AbortSignal.timeout(10_000),
    });
    if (!res.ok) throw new Error(`${this.facilitator}/nonce: HTTP ${res.status} ${await res.text()}`);
    return (await res.json()).nonce;
  }
}

/**
 * An Express router forwarding the channel endpoint (`endpointPath` of `/supported`, by default
 * `/.well-known/trickle/channel`) to the facilitator's listener, which serves it: mount it
 * before `paymentMiddleware`.
 */
export function trickleChannelEndpoint(facilitatorUrl, endpointPath = "/.well-known/trickle/channel") {
  const facilitator = facilitatorUrl.replace(/\/+$/, "");
  const router = Router();
  router.all(`${endpointPath}/*rest`, async (req, res) => {
    const route = req.path.slice(endpointPath.length);
    if (!CHANNEL_ROUTE.test(route)) return res.status(404).type("text/plain").send("not a channel route\n");
    const chunks = [];
    let size = 0;
    for await (const chunk of req) {
      size += chunk.length;
      if (size > MAX_MESSAGE) return res.status(413).end();
      chunks.push(chunk);
    }
    const body = req.method === "GET" || req.method === "HEAD" ? undefined : Buffer.concat(chunks);
    const type = req.headers["content-type"];
    try {
      const answer = await fetch(`${facilitator}${endpointPath}${route}`, {
        method: req.method,
        headers: type ? { "content-type": type } : {},
        body,
        signal: AbortSignal.timeout(30_000),
      });
      res.status(answer.status);
      const answerType = answer.headers.get("content-type");
      if (answerType) res.setHeader("content-type", answerType);
      res.send(Buffer.from(await answer.arrayBuffer()));
    } catch (e) {
      res.status(502).type("text/plain").send(`the payee is unavailable: ${e.message}\n`);
    }
  });
  return router;
}
