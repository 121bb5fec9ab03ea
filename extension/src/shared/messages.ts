// The typed message map between the extension's pages and its service worker. Every request is
// `{ type, ...params }`; every answer is `{ ok: true, payload }` or `{ ok: false, error }`.
//
// The answers and errors that come from the wallet (crates/wasm) are declared in ./generated/,
// generated from the Rust types (`make typescript`); `make test` fails while they are stale.

import type { Ask } from "./generated/Ask";
import type { BenchPayments } from "./generated/BenchPayments";
import type { ChannelView } from "./generated/ChannelView";
import type { Detail } from "./generated/Detail";
import type { Duties } from "./generated/Duties";
import type { OfferAnswer } from "./generated/OfferAnswer";
import type { Overview } from "./generated/Overview";
import type { Payment } from "./generated/Payment";
import type { ReceiptAnswer } from "./generated/ReceiptAnswer";
import type { Request as WalletRequest } from "./generated/Request";
import type { SendPreview } from "./generated/SendPreview";
import type { Settings } from "./generated/Settings";
import type { Sites } from "./generated/Sites";
import type { SiteView } from "./generated/SiteView";
import type { State } from "./generated/State";
import type { SyncStatus } from "./generated/SyncStatus";
import type { TermsView } from "./generated/TermsView";
import type { WalletError } from "./generated/WalletError";

export type { Ask, ChannelView, Duties, OfferAnswer, Overview, Payment, ReceiptAnswer, SendPreview };
export type { Detail, Settings, Sites, SiteView, State, SyncStatus, TermsView, WalletError };
export type { AskReason } from "./generated/AskReason";
export type { Balance } from "./generated/Balance";
export type { DutyEvent } from "./generated/DutyEvent";
export type { Period } from "./generated/Period";
export type { Shortfall } from "./generated/Shortfall";
export type { TxSummary } from "./generated/TxSummary";

/** The networks a wallet can be on. */
export type Network = Settings["network"];

export type Reply<T> = { ok: true; payload: T } | { ok: false; error: WalletError };

/** Anything thrown, as a `WalletError`: the wallet's own pass whole, the rest get a code. */
export function toError(e: unknown): WalletError {
  if (e && typeof e === "object" && "message" in e) {
    const o = e as { code?: unknown; message: unknown; detail?: Detail | null };
    return {
      code: typeof o.code === "string" ? o.code : "internal",
      message: String(o.message),
      detail: o.detail ?? null,
    };
  }
  return { code: "internal", message: String(e), detail: null };
}

export interface FeeRates {
  /** sat/vB for about 1, 6 and 24 blocks. */
  fast: number;
  normal: number;
  slow: number;
}

/** A request that waits for the user (kept by the worker in session storage). */
export interface Approval {
  id: number;
  url: string;
  tabId: number;
  type: string;
  /**
   * The other site behind the request (the user sees it before paying): the one a frame is
   * inside, or the one that kept opening the site's paid pages (a main frame).
   */
  embedder?: string;
  /** The PAYMENT-REQUIRED header. */
  offer: string;
  /** Null while the wallet is locked: unlock, then decide. */
  ask: Ask | null;
  at: number;
}

/** Something the user should know about a payment that did not happen. */
export interface Notice extends WalletError {
  at: number;
  url: string;
}

/** The payload each of the wallet's requests (crates/wasm's `Request`) answers with. */
interface WalletAnswers {
  /** Where the wallet stands; never fails once the worker runs. */
  state: State;
  /** A new 12-word phrase from the browser's CSPRNG; nothing is stored until `restore`. */
  newPhrase: { phrase: string };
  /**
   * Stores a wallet for this phrase sealed under the password, and unlocks it. A wallet already
   * stored for the network is refused (`already_exists`) unless `replace` is true ("forgot
   * password"): then the stored wallet is sealed under the new password, keeping its history
   * and channels, and the phrase must be that wallet's own (else `bad_phrase`).
   */
  restore: State;
  unlock: State;
  lock: State;
  /** Balance, sync status and transactions as last synced. */
  overview: Overview;
  /** Syncs with the chain now, then answers like `overview`. */
  sync: Overview;
  receiveAddress: { address: string };
  feeRates: FeeRates;
  previewSend: SendPreview;
  send: { txid: string };
  exportPhrase: { phrase: string };
  /** Saves settings; switching network switches to that network's wallet (if any). */
  saveSettings: State;
  /** A 402 offer seen by the worker (the worker's own use). */
  offer: OfferAnswer;
  /** A PAYMENT-RESPONSE seen by the worker (the worker's own use); null if not ours. */
  receipt: ReceiptAnswer | null;
  /** Creates or changes a site's budget (spending so far is kept). */
  approve: SiteView;
  revoke: SiteView;
  sites: Sites;
  /** The origins with a budget (not revoked), whose pages get the page API. */
  approvedOrigins: string[];
  closeChannel: { txid: string };
  /**
   * Channel duties (the worker runs them every minute): close channels near expiry, check
   * settlements seen on chain, refund expired channels, settle budgets.
   */
  duties: Duties;
  /** The pre-armed payment for the site's next page, if its budget allows (worker's own use). */
  preArm: { header: string | null };
  /**
   * Asks payees what they hold of payments whose receipt never came and commits that; releases
   * what closed or refunded channels never paid. The worker also runs it every minute.
   */
  reconcile: { committedSat: number };
  /** Signs payments on a throwaway channel and times it (tests/browser/bench.mjs). */
  benchPayments: BenchPayments;
  /** Runs the store suite over the browser's storage (tests/browser/wallet.test.mjs). */
  storeSuite: { checks: number };
}

/**
 * The wallet's requests: their parameters as the Rust enum declares them, their answers from
 * `WalletAnswers` (a request the wallet takes and `WalletAnswers` lacks does not compile).
 */
type WalletRequests = {
  [K in WalletRequest["type"]]: { req: Omit<Extract<WalletRequest, { type: K }>, "type">; res: WalletAnswers[K] };
};

/** Requests the worker answers itself. */
interface WorkerRequests {
  /** Payments waiting for the user. */
  approvals: { req: {}; res: Approval[] };
  /** Approve (with terms), deny, or never pay this site; answers what happened. */
  decide: {
    req: { id: number; decision: "approve" | "deny" | "never"; terms?: TermsView };
    res: string;
  };
  /** Payments that did not happen, and why (newest first). */
  notices: { req: {}; res: Notice[] };
}

/** Requests and the payload each one answers with. */
export type Requests = WalletRequests & WorkerRequests;

export type RequestType = keyof Requests;
/** One request; with no argument, the union of all of them (narrowed by `type`). */
export type Request<K extends RequestType = RequestType> = K extends RequestType
  ? { type: K } & Requests[K]["req"]
  : never;

/** Sends a request to the worker and unwraps its reply; throws the typed error on failure. */
export async function call<K extends RequestType>(
  type: K,
  params: Requests[K]["req"],
): Promise<Requests[K]["res"]> {
  const reply = (await chrome.runtime.sendMessage({ type, ...params })) as
    | Reply<Requests[K]["res"]>
    | undefined;
  if (!reply) {
    throw { code: "no_worker", message: "the wallet's background worker did not answer", detail: null };
  }
  if (!reply.ok) throw reply.error;
  return reply.payload;
}
