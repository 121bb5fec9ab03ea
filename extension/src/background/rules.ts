// The rule book: which payment header goes on which request, as declarativeNetRequest session
// rules. Pure: each function takes the book (and the time) and returns the rules to add and the
// ids they replace; payer.ts installs them and keeps the book in storage.session.
//
// Two kinds of rule set PAYMENT-SIGNATURE:
// - a paid URL's rule: exactly that URL, in that tab, for that resource type, for the offer's
//   life (so a reload sends the same payment, which the payee serves without charging);
// - a site's pre-armed rule: its next page, for navigations the site's own pages start.
// Paid URLs' rules are bounded per site and in all, so one site cannot fill Chrome's quota.

export type ResourceType = chrome.declarativeNetRequest.ResourceType;
type Rule = chrome.declarativeNetRequest.Rule;

/** How long a paid URL's rule (and so a free reload) lasts: the payee's default offer life. */
export const RULE_LIFE_MS = 5 * 60_000;
export const PAY_PRIORITY = 2;
/** Pre-armed rules (a site's next page) yield to a paid URL's own rule. */
export const ARM_PRIORITY = 1;
/** The request header a rule sets. */
export const PAYMENT_SIGNATURE = "payment-signature";
/**
 * Paid URLs' rules kept per site and in all; the oldest go first. Chrome allows 5,000 session
 * rules, 1,000 of them regex ones, for every site and the pre-armed rules together.
 */
export const MAX_SITE_PAY_RULES = 64;
export const MAX_PAY_RULES = 4_000;
export const MAX_REGEX_PAY_RULES = 500;

export interface PayRule {
  id: number;
  url: string;
  tabId: number;
  expires: number;
  /** Matched by a regex filter (the URL has urlFilter wildcards): Chrome counts those apart. */
  regex?: boolean;
  /** Installed to pay again after the payee refused the first payment for lack of credit. */
  retried: boolean;
}

/** The session rules this worker installed, as kept in chrome.storage.session. */
export interface RuleBook {
  /** Paid URLs' rules, oldest first. */
  pay: PayRule[];
  /** Each site's pre-armed rule id. */
  armed: Record<string, number>;
  /** The next free rule id. */
  nextId: number;
}

/** A change to the session rules: rules to add, and the ids they replace. */
export interface RuleChange {
  add: Rule[];
  remove: number[];
}

export function originOf(url: string): string | undefined {
  try {
    return new URL(url).origin;
  } catch {
    return undefined;
  }
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** `*`, `^` and `|` are wildcards in urlFilter: a URL with one is matched by an escaped regex. */
function needsRegex(url: string): boolean {
  return /[*^|]/.test(url);
}

/** The rule action that sends `signature` as the request's PAYMENT-SIGNATURE. */
function setSignature(signature: string): chrome.declarativeNetRequest.RuleAction {
  return {
    type: "modifyHeaders",
    requestHeaders: [{ header: PAYMENT_SIGNATURE, operation: "set", value: signature }],
  };
}

/** A condition matching the URLs that start with `prefix`. */
export function prefixUrl(prefix: string): Pick<chrome.declarativeNetRequest.RuleCondition, "urlFilter" | "regexFilter"> {
  return needsRegex(prefix) ? { regexFilter: `^${escapeRegex(prefix)}` } : { urlFilter: `|${prefix}` };
}

/** A condition matching exactly `url` (no prefix, no longer URL). */
export function exactUrl(url: string): Pick<chrome.declarativeNetRequest.RuleCondition, "urlFilter" | "regexFilter"> {
  return needsRegex(url) ? { regexFilter: `^${escapeRegex(url)}$` } : { urlFilter: `|${url}|` };
}

/**
 * The paid URLs' rules that make room for one more of `origin`'s (`regex`: matched by a regex
 * filter): the oldest beyond the per-site, overall and regex bounds.
 */
function evictions(pay: PayRule[], origin: string, regex: boolean): number[] {
  const evict = new Set<number>();
  const oldestBeyond = (rules: PayRule[], max: number) => {
    const live = rules.filter((r) => !evict.has(r.id));
    for (const r of live.slice(0, Math.max(0, live.length - max + 1))) evict.add(r.id);
  };
  oldestBeyond(
    pay.filter((r) => originOf(r.url) === origin),
    MAX_SITE_PAY_RULES,
  );
  oldestBeyond(pay, MAX_PAY_RULES);
  if (regex) oldestBeyond(pay.filter((r) => r.regex), MAX_REGEX_PAY_RULES);
  return [...evict];
}

/** The live rule that pays exactly `url` in `tabId` at `now`, if any. */
export function liveRule(book: RuleBook, url: string, tabId: number, now: number): PayRule | undefined {
  return book.pay.find((r) => r.url === url && r.tabId === tabId && r.expires > now);
}

/**
 * The rule that sends `signature` with requests for exactly `url` from `tabId`, made at `now`;
 * it replaces that URL's and tab's earlier rule. `embedded`: a frame another site embeds (the
 * user approved it), else a frame is paid only when its own site loads it.
 */
export function payRule(
  book: RuleBook,
  now: number,
  url: string,
  tabId: number,
  type: ResourceType,
  signature: string,
  retried: boolean,
  embedded = false,
): RuleChange {
  const id = book.nextId++;
  const regex = needsRegex(url);
  const replaced = book.pay.filter((r) => r.url === url && r.tabId === tabId).map((r) => r.id);
  book.pay = book.pay.filter((r) => !replaced.includes(r.id));
  // Rules are kept oldest first: the oldest make room (their URLs' reloads are paid again).
  const remove = [...replaced, ...evictions(book.pay, originOf(url) ?? url, regex)];
  book.pay = book.pay.filter((r) => !remove.includes(r.id));
  book.pay.push({ id, url, tabId, expires: now + RULE_LIFE_MS, retried, regex });
  const firstParty = type === "sub_frame" && !embedded ? { domainType: "firstParty" as const } : {};
  const rule = {
    id,
    priority: PAY_PRIORITY,
    action: setSignature(signature),
    condition: { ...exactUrl(url), resourceTypes: [type], tabIds: [tabId], ...firstParty },
  };
  return { add: [rule], remove };
}

/** Moves the pre-armed rule of `origin` to `signature`, or removes it (`null`). */
export function armRule(book: RuleBook, origin: string, signature: string | null): RuleChange {
  const old = book.armed[origin];
  const remove = old === undefined ? [] : [old];
  delete book.armed[origin];
  if (!signature) return { add: [], remove };
  const id = book.nextId++;
  book.armed[origin] = id;
  const rule = {
    id,
    priority: ARM_PRIORITY,
    action: setSignature(signature),
    condition: {
      ...prefixUrl(`${origin}/`),
      resourceTypes: ["main_frame" as ResourceType],
      // Only navigations the site's own pages start (links, forms, reloads): not another
      // site's links, popups, redirects or prefetches, nor the browser's own prerender. (A
      // typed URL has no initiator either; it is paid through its 402.) Domains have no port.
      initiatorDomains: [new URL(origin).hostname.replace(/^\[|\]$/g, "")],
    },
  };
  return { add: [rule], remove };
}

/** Drops the paid URLs' rules expired at `now`, and any installed rule the book does not know. */
export function expired(book: RuleBook, installed: Rule[], now: number): RuleChange {
  book.pay = book.pay.filter((r) => r.expires > now);
  const live = new Set(book.pay.map((r) => r.id));
  const remove = installed.filter((r) => r.priority === PAY_PRIORITY && !live.has(r.id)).map((r) => r.id);
  return { add: [], remove };
}
