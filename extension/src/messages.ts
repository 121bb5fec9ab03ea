// The typed message map between the extension's pages and its service worker. Every request is
// `{ type, ...params }`; every answer is `{ ok: true, payload }` or `{ ok: false, error }`.

export type Network = "regtest" | "signet" | "testnet" | "bitcoin";

/** An error as it crosses from Rust: a stable snake_case code and a sentence for people. */
export interface WalletError {
  code: string;
  message: string;
}

export type Reply<T> = { ok: true; payload: T } | { ok: false; error: WalletError };

export interface Settings {
  network: Network;
  esploraUrl: string;
  /** Minutes of inactivity before the wallet locks itself. */
  autoLockMinutes: number;
}

export interface Balance {
  /** Confirmed and spendable, sat. */
  confirmed: number;
  /** Unconfirmed, incoming or own change, sat. */
  pending: number;
  /** Coinbase outputs not yet mature, sat. */
  immature: number;
}

export interface TxSummary {
  txid: string;
  /** Net effect on the wallet, sat (negative when spending). */
  net: number;
  /** Fee in sat when the wallet paid it and knows it. */
  fee: number | null;
  /** Block height when confirmed. */
  height: number | null;
  /** Block time (Unix seconds) when confirmed, else when first seen. */
  time: number | null;
}

export interface SyncStatus {
  /** A sync is running now. */
  syncing: boolean;
  /** Chain height at the last successful sync. */
  height: number | null;
  /** When the last sync finished (ms since epoch, browser time). */
  at: number | null;
  /** Why the last sync failed, if it did. */
  error: WalletError | null;
}

export interface State {
  wallet: "none" | "locked" | "unlocked";
  settings: Settings;
  sync: SyncStatus;
}

export interface Overview {
  balance: Balance;
  sync: SyncStatus;
  transactions: TxSummary[];
}

export interface SendPreview {
  feeSat: number;
  vsize: number;
  /** Amount plus fee, sat. */
  totalSat: number;
  feeRate: number;
}

export interface FeeRates {
  /** sat/vB for about 1, 6 and 24 blocks. */
  fast: number;
  normal: number;
  slow: number;
}

export type Period = "day" | "week" | "month";

/** A site's budget terms. */
export interface TermsView {
  limitSat: number;
  period: Period;
  maxPriceSat: number;
  /** Requests priced at or below this are paid without asking; null: always ask. */
  autoApproveSat: number | null;
}

export type AskReason =
  | { kind: "noBudget" }
  | { kind: "confirm" }
  | { kind: "budgetExhausted"; remaining: number; needed: number };

/** A payment waiting for the user, with what approving it means. */
export interface Ask {
  reason: AskReason;
  origin: string;
  url: string;
  description: string;
  price: number;
  current: TermsView | null;
  suggested: TermsView;
  hasChannel: boolean;
  /** What a new channel locks, sat. */
  channelValue: number;
  /** On-chain fee to open it, sat (closing is paid by the site). */
  openFee: number | null;
  /** Why the wallet cannot fund the channel now. */
  cannotFund: string | null;
}

export type OfferAnswer = { action: "pay"; header: string; signedSat: number } | { action: "ask"; ask: Ask };

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
export interface Notice {
  at: number;
  url: string;
  code: string;
  message: string;
}

export interface Payment {
  at: number;
  origin: string;
  url: string;
  consumedSat: number;
  paidSat: number;
  creditSat: number;
  committedSat: number;
  /** For a pre-armed payment: the header that reloads the URL without paying again. */
  reloadHeader?: string;
}

/** A receipt applied, with the site's next pre-armed payment signed in the same write. */
export interface ReceiptAnswer extends Payment {
  /** The next page's payment header; null when nothing is pre-armed. */
  nextHeader: string | null;
  /** Why the next payment could not be signed (the pre-armed rule is then left as it is). */
  nextError: WalletError | null;
  /** The payee refused for lack of credit: the 402 that comes with it is paid, once. */
  payAgain: boolean;
}

export interface SiteView {
  origin: string;
  revoked: boolean;
  terms: TermsView;
  spentSat: number;
  reservedSat: number;
  remainingSat: number;
  periodStart: number;
  periodEnd: number;
}

export interface ChannelView {
  site: string;
  state: string;
  valueSat: number;
  /** Signed to the payee in total (the last part may not have reached it yet). */
  paidSat: number;
  /** What the payee holds, per its last receipt. */
  acknowledgedSat: number;
  creditSat: number;
  /** Block height the channel expires at. */
  expiry: number;
  contractTxid: string | null;
  payee: string;
}

export interface DutyEvent {
  site: string;
  /** A txid, or what went wrong. */
  detail: string;
}

export interface Duties {
  closed: DutyEvent[];
  settled: DutyEvent[];
  refunds: string[];
  failed: DutyEvent[];
}

export interface Sites {
  sites: SiteView[];
  channels: ChannelView[];
  history: Payment[];
}

/** Requests and the payload each one answers with. */
export interface Requests {
  /** Where the wallet stands; never fails once the worker runs. */
  state: { req: {}; res: State };
  /** A new 12-word phrase from the browser's CSPRNG; nothing is stored until `restore`. */
  newPhrase: { req: {}; res: { phrase: string } };
  /**
   * Stores a wallet for this phrase sealed under the password, and unlocks it. A wallet already
   * stored for the network is refused (`already_exists`) unless `replace` is true ("forgot
   * password"): then the stored wallet is sealed under the new password, keeping its history
   * and channels, and the phrase must be that wallet's own (else `bad_phrase`).
   */
  restore: { req: { phrase: string; password: string; replace?: boolean }; res: State };
  unlock: { req: { password: string }; res: State };
  lock: { req: {}; res: State };
  /** Balance, sync status and transactions as last synced. */
  overview: { req: {}; res: Overview };
  /** Syncs with the chain now, then answers like `overview`. */
  sync: { req: {}; res: Overview };
  receiveAddress: { req: {}; res: { address: string } };
  feeRates: { req: {}; res: FeeRates };
  previewSend: { req: { address: string; amountSat: number; feeRate: number }; res: SendPreview };
  send: { req: { address: string; amountSat: number; feeRate: number }; res: { txid: string } };
  exportPhrase: { req: { password: string }; res: { phrase: string } };
  /** Saves settings; switching network switches to that network's wallet (if any). */
  saveSettings: { req: Settings; res: State };
  /** A 402 offer seen by the worker (the worker's own use). */
  offer: { req: { url: string; header: string; confirmed?: boolean }; res: OfferAnswer };
  /** A PAYMENT-RESPONSE seen by the worker (the worker's own use); null if not ours. */
  receipt: { req: { url: string; header: string }; res: ReceiptAnswer | null };
  /** Creates or changes a site's budget (spending so far is kept). */
  approve: { req: { origin: string; terms: TermsView }; res: SiteView };
  revoke: { req: { origin: string }; res: SiteView };
  sites: { req: {}; res: Sites };
  /** The origins with a budget (not revoked), whose pages get the page API. */
  approvedOrigins: { req: {}; res: string[] };
  closeChannel: { req: { site: string }; res: { txid: string } };
  /**
   * Channel duties (the worker runs them every minute): close channels near expiry, check
   * settlements seen on chain, refund expired channels, settle budgets.
   */
  duties: { req: {}; res: Duties };
  /** The pre-armed payment for the site's next page, if its budget allows (worker's own use). */
  preArm: { req: { origin: string }; res: { header: string | null } };
  /**
   * Asks payees what they hold of payments whose receipt never came and commits that; releases
   * what closed or refunded channels never paid. The worker also runs it every minute.
   */
  reconcile: { req: {}; res: { committedSat: number } };
  /** Payments waiting for the user (answered by the worker itself). */
  approvals: { req: {}; res: Approval[] };
  /** Approve (with terms), deny, or never pay this site; answers what happened. */
  decide: {
    req: { id: number; decision: "approve" | "deny" | "never"; terms?: TermsView };
    res: string;
  };
  /** Payments that did not happen, and why (newest first). */
  notices: { req: {}; res: Notice[] };
}

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
  if (!reply) throw { code: "no_worker", message: "the wallet's background worker did not answer" };
  if (!reply.ok) throw reply.error;
  return reply.payload;
}
