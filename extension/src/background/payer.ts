// Paying sites from the worker. The browser tells us about responses (webRequest, observing
// only); the wallet (Rust) decides about offers and receipts; this file moves headers:
//
//   402 + PAYMENT-REQUIRED ─▶ wallet.offer ─▶ pay: a declarativeNetRequest session rule sets
//   PAYMENT-SIGNATURE on that exact URL, in that tab, for that resource type; the navigation is
//   re-requested ─▶ PAYMENT-RESPONSE ─▶ wallet.receipt commits the budget and signs the site's
//   next payment, which a pre-armed rule attaches to the site's next page.
//
// A paid page's receipt is applied once the page has loaded: the page does not wait for it, and
// the bookkeeping does not compete with it. A next page requested before that carries the
// previous payment; the payee answers 402 with its account, and the difference is paid once.
//
// The rule stays for the life of the offer's nonce, so a reload of the paid URL sends the same
// payment, which the payee serves again without charging. A 402 for a URL that has a live rule
// means the site took the payment and asks again: it is not paid twice.
//
// Other sites cannot spend a site's budget faster than a person clicking (docs/security.md):
// the pre-armed payment goes only with navigations the site's own pages start, and a 402 of a
// navigation another site started is paid without asking at most CROSS_SITE_PER_MINUTE times a
// minute per site. The rules themselves, and their bounds, are rules.ts's (pure).
//
// A paid navigation whose connection closes before its answer is sent again with the same
// payment (`onError`): the payee may have charged it, and serves the resend as a reload.
//
// State that must outlive the worker (rules, approvals waiting for the user, notices) lives in
// chrome.storage.session and in the session rules themselves. (Firefox applies the same rules
// from a blocking webRequest listener: see browser.ts.)

import { headerRules, initiatorOf, matchingRule } from "./browser.js";
import {
  PAYMENT_SIGNATURE,
  PAY_PRIORITY,
  armRule,
  expired,
  liveRule,
  originOf,
  payRule,
  type PayRule,
  type ResourceType,
  type RuleBook,
  type RuleChange,
} from "./rules.js";
import { MAX_URL_CHARS, oversized, shortened } from "../shared/limits.js";
import { toError, type Approval, type Ask, type Notice, type OfferAnswer, type ReceiptAnswer, type Request, type TermsView } from "../shared/messages.js";

type Handle = (request: Request) => Promise<unknown>;

const ARMED = "armedSites";
const APPROVALS = "approvals";
const NOTICES = "notices";
const RULES = "payRules";
const MAX_NOTICES = 20;
/** Approvals kept waiting; a new one pushes out the oldest. */
const MAX_APPROVALS = 20;
/** A notice's URL and message are only shown: longer ones are cut. */
const NOTICE_URL_CHARS = 512;
const NOTICE_MESSAGE_CHARS = 512;
const PAID_COLOUR = "#1a7f37";
/** Navigations of a site started by other sites, paid without asking per minute, per site. */
const CROSS_SITE_PER_MINUTE = 3;
const CROSS_SITE = "crossSitePayments";
interface Seen {
  url: string;
  tabId: number;
  type: string;
  /** The other site a frame is embedded in (or that loaded it), or that started a navigation. */
  embedder?: string;
}

function header(headers: chrome.webRequest.HttpHeader[] | undefined, name: string): string | undefined {
  return headers?.find((h) => h.name.toLowerCase() === name)?.value;
}

async function sessionList<T>(key: string): Promise<T[]> {
  const items = await chrome.storage.session.get(key);
  return (items[key] as T[] | undefined) ?? [];
}

async function setSessionList<T>(key: string, list: T[]): Promise<void> {
  await chrome.storage.session.set({ [key]: list });
}

// Session-list changes are read-modify-write: run them one at a time.
let queue: Promise<unknown> = Promise.resolve();
function serially<T>(f: () => Promise<T>): Promise<T> {
  const run = queue.then(f, f);
  queue = run.catch(() => undefined);
  return run;
}

/** How long a page's next payment to a site waits for the previous one's receipt. */
const RECEIPT_WAIT_MS = 10_000;

/** A paid navigation whose answer the network lost is sent again at most this many times. */
const MAX_RESENDS = 3;
/** The first resend waits this long, each next one twice as long. */
const RESEND_WAIT_MS = 400;

/**
 * Whether a request's error says its answer was lost after it may have reached the site (a
 * connection closed or reset), not that it never left (no connection) or was stopped.
 */
function answerLost(error: string): boolean {
  return /ERR_(EMPTY_RESPONSE|CONNECTION_(RESET|CLOSED|ABORTED)|INCOMPLETE_CHUNKED_ENCODING)|NS_ERROR_NET_(RESET|INTERRUPT|PARTIAL_TRANSFER)/.test(
    error,
  );
}

export class Payer {
  /** Per site: resolves once its last page-API payment has its receipt (or timed out). */
  private readonly siteTurns = new Map<string, Promise<void>>();
  /** Per `tabId url`: resolves the wait for that request's receipt. */
  private readonly receiptWaiters = new Map<string, () => void>();
  /** The rule book, read once per worker start; changed only inside `serially`. */
  private book: Promise<RuleBook> | undefined;
  /** Navigations the browser makes ahead of the user (by request id), until their response. */
  private readonly speculativeRequests = new Set<string>();
  /** Per `tabId url`: how often a paid navigation whose answer was lost has been sent again. */
  private readonly resends = new Map<string, number>();
  /** Tabs whose badge has a warning colour of their own. */
  private readonly warnedTabs = new Set<number>();
  private paidColourSet = false;

  constructor(private readonly handle: Handle) {}

  private rules(): Promise<RuleBook> {
    this.book ??= (async () => {
      const items = await chrome.storage.session.get([RULES, ARMED]);
      const pay = (items[RULES] as PayRule[] | undefined) ?? [];
      const armed = (items[ARMED] as Record<string, number> | undefined) ?? {};
      const installed = await headerRules.get();
      const ids = [...installed.map((r) => r.id), ...pay.map((r) => r.id), ...Object.values(armed)];
      return { pay, armed, nextId: Math.max(0, ...ids) + 1 };
    })().catch((e) => {
      this.book = undefined;
      throw e;
    });
    return this.book;
  }

  /**
   * Applies `edit` to a copy of the rule book, installs the rules it adds, removes those it
   * replaces, and keeps the new book: one rule update and one storage write, however many
   * rules change. On failure nothing changes.
   */
  private async changeRules(edit: (book: RuleBook) => RuleChange): Promise<void> {
    await serially(async () => {
      const book = await this.rules();
      const next: RuleBook = { pay: [...book.pay], armed: { ...book.armed }, nextId: book.nextId };
      const { add, remove } = edit(next);
      if (!add.length && !remove.length) return;
      await headerRules.update({ removeRuleIds: remove, addRules: add });
      await chrome.storage.session.set({ [RULES]: next.pay, [ARMED]: next.armed });
      this.book = Promise.resolve(next);
    });
  }

  /** Drops rules whose offer has expired (and any a previous browser session left). */
  async expireRules(): Promise<void> {
    const installed = await headerRules.get();
    await this.changeRules((book) => expired(book, installed, Date.now()));
  }

  private async liveRule(url: string, tabId: number): Promise<PayRule | undefined> {
    return liveRule(await this.rules(), url, tabId, Date.now());
  }

  /** The pre-armed payment of `origin`'s next page, signed by the wallet, or `null`. */
  private async preArm(origin: string): Promise<string | null> {
    return ((await this.handle({ type: "preArm", origin })) as { header: string | null }).header;
  }

  async notify(
    notice: Omit<Notice, "at" | "detail"> & Partial<Pick<Notice, "detail">>,
    tabId?: number,
  ): Promise<void> {
    await serially(async () => {
      const list = await sessionList<Notice>(NOTICES);
      list.unshift({
        url: shortened(notice.url, NOTICE_URL_CHARS),
        code: notice.code,
        message: shortened(notice.message, NOTICE_MESSAGE_CHARS),
        detail: notice.detail ?? null,
        at: Date.now(),
      });
      await setSessionList(NOTICES, list.slice(0, MAX_NOTICES));
    });
    if (tabId !== undefined && tabId >= 0) await this.badge(tabId, "!", "#b42318");
  }

  /** A warning on the tab's badge, in its own colour. */
  private async badge(tabId: number, text: string, color: string): Promise<void> {
    this.warnedTabs.add(tabId);
    await chrome.action.setBadgeBackgroundColor({ tabId, color }).catch(() => undefined);
    await chrome.action.setBadgeText({ tabId, text }).catch(() => undefined);
  }

  /**
   * "Paid" on the tab's badge. Paid is the badge's default colour, so a paid page costs one
   * call; only a tab that showed a warning gets its colour back.
   */
  private async paidBadge(tabId: number, text: string): Promise<void> {
    if (!this.paidColourSet) {
      this.paidColourSet = true;
      await chrome.action.setBadgeBackgroundColor({ color: PAID_COLOUR }).catch(() => undefined);
    }
    if (this.warnedTabs.delete(tabId)) {
      await chrome.action.setBadgeBackgroundColor({ tabId, color: PAID_COLOUR }).catch(() => undefined);
    }
    await chrome.action.setBadgeText({ tabId, text }).catch(() => undefined);
  }

  /**
   * Keeps the pre-armed payment of `origin` on its pages: the next page goes out with it and
   * needs no 402 round trip. The wallet reserves its increment in the budget; without an open
   * channel, or when the budget would not pay without asking, the rule is removed.
   */
  async arm(origin: string): Promise<void> {
    const signature = await this.preArm(origin);
    await this.changeRules((book) => armRule(book, origin, signature));
  }

  /** Marks a request as a prefetch or prerender: the user has not asked for its page. */
  speculative(requestId: string): void {
    // Bounded: a response that never comes leaves its id behind.
    if (this.speculativeRequests.size > 1_000) this.speculativeRequests.clear();
    this.speculativeRequests.add(requestId);
  }

  /**
   * A navigation that failed at the network level. If it carried a payment (its URL's rule, or
   * the site's pre-armed one), the payee may have charged it and its answer was lost: the page
   * is sent again with the same payment, which the payee serves without charging again, after
   * a pause, at most MAX_RESENDS times (browsers resend some such requests themselves, not all:
   * Chromium gives up at once on a new connection). A pre-armed payment is pinned to the URL
   * first, as the resend is not the site's own navigation.
   */
  async onError(details: chrome.webRequest.OnErrorOccurredDetails): Promise<void> {
    if (details.tabId < 0 || details.type !== "main_frame" || !answerLost(details.error)) return;
    const key = `${details.tabId} ${details.url}`;
    const sent = this.resends.get(key) ?? 0;
    const rule = matchingRule(await headerRules.get(), details);
    const payment = rule?.action.requestHeaders?.find((h) => h.header === PAYMENT_SIGNATURE)?.value;
    if (!payment) return;
    if (sent >= MAX_RESENDS) {
      this.resends.delete(key);
      return this.notify(
        { url: details.url, code: "answer_lost", message: "The site's answer to a paid page was lost; reload it to see it (it is not paid again)." },
        details.tabId,
      );
    }
    this.resends.set(key, sent + 1);
    if (rule!.priority !== PAY_PRIORITY) {
      await this.changeRules((book) =>
        payRule(book, Date.now(), details.url, details.tabId, "main_frame" as ResourceType, payment, false),
      );
    }
    await new Promise((resolve) => setTimeout(resolve, RESEND_WAIT_MS * 2 ** sent));
    await chrome.tabs.update(details.tabId, { url: details.url });
  }

  /** A response seen by webRequest: a receipt to apply, a 402 to answer. */
  async onResponse(details: chrome.webRequest.OnHeadersReceivedDetails): Promise<void> {
    if (details.tabId < 0) return; // the worker's own requests (chain, channel endpoint)
    if (details.type === "main_frame") this.resends.delete(`${details.tabId} ${details.url}`);
    const speculative = this.speculativeRequests.delete(details.requestId);
    const receipt = header(details.responseHeaders, "payment-response");
    const offer = header(details.responseHeaders, "payment-required");
    let payAgain = false;
    // A 402's offers may carry the payee's account instead of a receipt (an x402 resource
    // server's corrective 402): the wallet reads it there.
    const corrective = details.statusCode === 402 ? offer : undefined;
    if (receipt || corrective) {
      // A paid page loads first; its receipt is applied after (or after LOAD_WAIT_MS).
      if (details.type === "main_frame" && details.statusCode < 300) await loaded(details.tabId);
      payAgain = (await this.onReceipt(details, receipt, corrective))?.payAgain ?? false;
    }
    // Navigations are paid here; page scripts pay through the page API (`payForPage`).
    // A page fetched ahead of the user is never paid for (nor its tab sent to it): the user
    // may never open it, and any site can ask the browser to prefetch any page.
    if (speculative) return;
    if (details.statusCode === 402 && offer && (details.type === "main_frame" || details.type === "sub_frame")) {
      const seen: Seen = { url: details.url, tabId: details.tabId, type: details.type };
      const tooLong = oversized(seen.url, offer);
      if (tooLong) return this.notify({ url: seen.url, ...tooLong }, seen.tabId);
      if (details.type === "sub_frame") {
        // A frame is paid without asking only inside its own site: another site could embed
        // it hidden, as often as it likes. Else the user decides, seeing who embeds it.
        const embedder = await embeddingSite(details);
        if (embedder) return this.queueApproval({ ...seen, embedder }, offer, null);
      } else {
        // Another site can open and navigate windows to a site's pages, as often as it likes.
        const starter = startedElsewhere(details);
        if (starter && !(await this.crossSiteTurn(originOf(details.url) ?? details.url))) {
          return this.queueApproval({ ...seen, embedder: starter }, offer, null);
        }
      }
      await this.onOffer(seen, offer, false, payAgain);
    }
  }

  /** Applies a receipt; returns the wallet's answer (`null` for a receipt of no channel of ours). */
  private async onReceipt(
    details: chrome.webRequest.OnHeadersReceivedDetails,
    value: string | undefined,
    offer: string | undefined,
  ): Promise<ReceiptAnswer | null> {
    const key = `${details.tabId} ${details.url}`;
    try {
      const payment = (await this.handle({ type: "receipt", url: details.url, header: value, offer })) as ReceiptAnswer | null;
      if (!payment) return null;
      // Paid by the pre-armed payment: a reload of this URL sends the receipt's nonce. That
      // rule and the site's next pre-armed payment go in together. (No rule, so no stored copy,
      // for a URL longer than any paid for.)
      const reloadable = details.type === "main_frame" && details.url.length <= MAX_URL_CHARS;
      const reload = reloadable ? payment.reloadHeader : undefined;
      await this.changeRules((book) => {
        const armed = payment.nextError
          ? { add: [], remove: [] }
          : armRule(book, payment.origin, payment.nextHeader);
        if (!reload) return armed;
        const paid = payRule(book, Date.now(), details.url, details.tabId, "main_frame" as ResourceType, reload, false);
        return { add: [...paid.add, ...armed.add], remove: [...paid.remove, ...armed.remove] };
      });
      if (details.type === "main_frame") {
        await this.paidBadge(details.tabId, payment.consumedSat > 0 ? String(payment.consumedSat) : "✓");
      }
      if (payment.nextError) await this.notify({ url: details.url, ...payment.nextError }, details.tabId);
      return payment;
    } catch (e) {
      await this.notify({ url: details.url, ...toError(e) }, details.tabId);
      return null;
    } finally {
      this.receiptWaiters.get(key)?.();
      this.receiptWaiters.delete(key);
    }
  }

  /**
   * Answers the 402 of `seen.url`; returns what happened. `confirmed`: the user approved this
   * payment (else only a budget's auto-approve pays). `payAgain`: the wallet read the
   * receipt that came with the 402 as a refusal for lack of credit, with the payee's account
   * of the channel (already applied): the difference is paid, once.
   */
  async onOffer(
    seen: Seen,
    offer: string,
    confirmed: boolean,
    payAgain = false,
  ): Promise<"paid" | "ask" | "refused"> {
    const live = await this.liveRule(seen.url, seen.tabId);
    // What the request carried: the wallet refuses a site that asks twice (`paid_again`).
    const sent = live ? (live.retried ? "paidAgain" : "paid") : "nothing";
    let answer: OfferAnswer;
    try {
      answer = (await this.handle({ type: "offer", url: seen.url, header: offer, confirmed, sent, payAgain })) as OfferAnswer;
    } catch (e) {
      const error = toError(e);
      if (error.code === "locked") {
        await this.queueApproval(seen, offer, null);
        return "ask";
      }
      await this.notify({ url: seen.url, ...error }, seen.tabId);
      return "refused";
    }
    if (answer.action === "ask") {
      await this.queueApproval(seen, offer, answer.ask);
      return "ask";
    }
    const { header: signature } = answer;
    await this.changeRules((book) =>
      payRule(
        book,
        Date.now(),
        seen.url,
        seen.tabId,
        seen.type as ResourceType,
        signature,
        live !== undefined,
        seen.embedder !== undefined,
      ),
    );
    if (seen.type === "main_frame") {
      // Re-request the page; the rule adds the payment. (tabs.reload would reload the page
      // before the 402, when the 402 came from a navigation.)
      await chrome.tabs.update(seen.tabId, { url: seen.url });
    }
    return "paid";
  }

  /**
   * Whether a navigation of `origin` that another site started may be paid without asking:
   * yes for the first CROSS_SITE_PER_MINUTE of the last minute (and then it counts).
   */
  private async crossSiteTurn(origin: string): Promise<boolean> {
    return serially(async () => {
      const items = await chrome.storage.session.get(CROSS_SITE);
      const all = (items[CROSS_SITE] as Record<string, number[]> | undefined) ?? {};
      const now = Date.now();
      for (const [site, times] of Object.entries(all)) {
        all[site] = times.filter((t) => now - t < 60_000);
        if (!all[site].length) delete all[site];
      }
      const recent = all[origin] ?? [];
      const allowed = recent.length < CROSS_SITE_PER_MINUTE;
      if (allowed) all[origin] = [...recent, now];
      await chrome.storage.session.set({ [CROSS_SITE]: all });
      return allowed;
    });
  }

  private async queueApproval(seen: Seen, offer: string, ask: Ask | null): Promise<void> {
    await serially(async () => {
      const list = await sessionList<Approval>(APPROVALS);
      // One request per URL and tab; one per embedding site, paid site and tab.
      const same = (a: Approval) =>
        a.tabId === seen.tabId &&
        (a.url === seen.url ||
          (seen.embedder !== undefined && a.embedder === seen.embedder && originOf(a.url) === originOf(seen.url)));
      const kept = list.filter((a) => !same(a)).slice(-(MAX_APPROVALS - 1));
      const id = Math.max(0, ...list.map((a) => a.id)) + 1;
      const { embedder } = seen;
      kept.push({ id, url: seen.url, tabId: seen.tabId, type: seen.type, embedder, offer, ask, at: Date.now() });
      await setSessionList(APPROVALS, kept);
    });
    await this.badge(seen.tabId, "$", "#9a6700");
  }

  async approvals(): Promise<Approval[]> {
    return sessionList<Approval>(APPROVALS);
  }

  async notices(): Promise<Notice[]> {
    return sessionList<Notice>(NOTICES);
  }

  /**
   * The user's answer to a waiting approval: approve (with the budget's terms), deny (this
   * time), or never (revoke the site).
   */
  async decide(id: number, decision: "approve" | "deny" | "never", terms?: TermsView): Promise<string> {
    const approval = await serially(async () => {
      const list = await sessionList<Approval>(APPROVALS);
      await setSessionList(
        APPROVALS,
        list.filter((a) => a.id !== id),
      );
      return list.find((a) => a.id === id);
    });
    if (!approval) throw { code: "no_approval", message: "that request is no longer waiting" };
    await chrome.action.setBadgeText({ tabId: approval.tabId, text: "" }).catch(() => undefined);
    const origin = new URL(approval.url).origin;
    if (decision === "deny") return "denied";
    if (decision === "never") {
      const suggested = approval.ask?.suggested;
      if (!terms && !suggested) throw { code: "bad_request", message: "no terms to revoke with" };
      await this.handle({ type: "approve", origin, terms: (terms ?? suggested)! });
      await this.handle({ type: "revoke", origin });
      return "revoked";
    }
    if (terms) await this.handle({ type: "approve", origin, terms });
    // Asked while the wallet was locked: the user has not seen the price yet, so the offer is
    // answered afresh (paid only within the budget's auto-approve, else asked again).
    return this.onOffer(approval, approval.offer, approval.ask !== null);
  }

  /**
   * The page API: a page's script asks to pay the 402 it got for `url`, from its own tab.
   *
   * A site's payments are made one after another, each after the previous one's receipt (or
   * a timeout): every payment signs a larger total than the one before, and a payee refuses a
   * total below one it already holds, so a later payment must not overtake an earlier one.
   */
  async payForPage(url: string, offer: string, tabId: number, pageOrigin: string): Promise<string> {
    const tooLong = oversized(url, offer);
    if (tooLong) throw tooLong;
    const origin = new URL(url).origin;
    if (origin !== pageOrigin) {
      throw { code: "other_origin", message: "a page may only pay for its own site's resources" };
    }
    const previous = this.siteTurns.get(origin) ?? Promise.resolve();
    let done!: () => void;
    const turn = new Promise<void>((resolve) => (done = resolve));
    this.siteTurns.set(origin, previous.then(() => turn));
    await previous;
    let result: string;
    try {
      result = await this.onOffer({ url, tabId, type: "xmlhttprequest" }, offer, false);
    } catch (e) {
      done();
      throw e;
    }
    if (result !== "paid") {
      done();
      return result;
    }
    const key = `${tabId} ${url}`;
    const timer = setTimeout(() => {
      this.receiptWaiters.delete(key);
      done();
    }, RECEIPT_WAIT_MS);
    this.receiptWaiters.set(key, () => {
      clearTimeout(timer);
      done();
    });
    return result;
  }
}

/** The longest a paid page's receipt waits for the page to finish loading. */
const LOAD_WAIT_MS = 2_000;

/** Resolves once tab `tabId` has finished loading, or after `LOAD_WAIT_MS`. */
function loaded(tabId: number): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      chrome.tabs.onUpdated.removeListener(listener);
      resolve();
    };
    const listener = (id: number, change: chrome.tabs.OnUpdatedInfo) => {
      if (id === tabId && change.status === "complete") done();
    };
    const timer = setTimeout(done, LOAD_WAIT_MS);
    chrome.tabs.onUpdated.addListener(listener);
  });
}

/**
 * The other site that started a navigation (or an opaque "null" one), or `undefined` when the
 * site itself, the browser (a typed URL, a bookmark) or this extension started it.
 */
function startedElsewhere(details: chrome.webRequest.OnHeadersReceivedDetails): string | undefined {
  const starter = initiatorOf(details);
  if (starter === undefined || starter === originOf(details.url)) return undefined;
  if (starter === new URL(chrome.runtime.getURL("")).origin) return undefined;
  return starter === "null" ? "an unknown site" : starter;
}

/**
 * The other site a frame's request comes from: the site that started it, or the tab's top
 * page. `undefined` when both are the frame's own site.
 */
async function embeddingSite(details: chrome.webRequest.OnHeadersReceivedDetails): Promise<string | undefined> {
  const own = originOf(details.url);
  const tab = await chrome.tabs.get(details.tabId).catch(() => undefined);
  const top = tab?.url === undefined ? undefined : originOf(tab.url);
  for (const site of [initiatorOf(details), top]) {
    if (site !== own) return site ?? "an unknown site";
  }
  return undefined;
}
