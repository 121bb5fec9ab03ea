// What differs between Chrome and Firefox, in one place; the worker and payer.ts are written
// against this module and the `chrome` APIs both browsers share. The build picks the browser
// (esbuild's `--define:TRICKLE_BROWSER`), so each bundle holds only its own half.
//
// - Background: Chrome runs worker.js as a module service worker, Firefox as an event page (a
//   classic script; the manifest says which, see extension/scripts/manifest.mjs). Both stop it
//   when idle and start it for the next event, so the worker registers its listeners at its top
//   and has no top-level await either way.
// - Payment headers: rules.ts describes each one as a declarativeNetRequest session rule (an exact
//   URL, a tab, a resource type). Chrome applies those rules itself. On Firefox the same rules
//   are kept here (in storage.session) and a blocking `webRequest.onBeforeSendHeaders` listener
//   puts the header on a request only when a rule matches it exactly: the URL compared as a
//   string (case and all), the tab, the type, the initiator's domain (from `originUrl`), and for
//   a frame the browser's own third-party flag. A condition this module does not know matches
//   nothing, so a rule never pays more widely here than in Chrome. Only payable request types
//   pass through the listener, and it answers from memory once the rules are read.
// - Content-script match patterns: Firefox's cannot name a port (`pagesOf`).
// - The wallet's records: Chrome's storage.local, Firefox's IndexedDB (storage.ts says why).
// - storage.session and chrome.action (badges) are the same in both (Firefox 115+).
// - webRequest: Chrome needs `extraHeaders` to show `Sec-Purpose`; Firefox shows every header and
//   refuses the option. The request's initiator is `initiator` in Chrome, `originUrl` in Firefox.

declare const TRICKLE_BROWSER: "chrome" | "firefox";

export const FIREFOX = TRICKLE_BROWSER === "firefox";

type Rule = chrome.declarativeNetRequest.Rule;
type RequestHeader = chrome.webRequest.HttpHeader;

/** The request details both browsers give a webRequest listener, and the fields only one has. */
export interface RequestDetails {
  url: string;
  tabId: number;
  type: string;
  /** Chrome: the origin that started the request. */
  initiator?: string;
  /** Firefox: the URL of the document or script that started the request. */
  originUrl?: string;
  /** Firefox: whether the request is third-party to its tab's top document. */
  thirdParty?: boolean;
}

/** The extra info Chrome needs for onSendHeaders to list every request header. */
export const SEND_HEADERS_EXTRA: `${chrome.webRequest.OnSendHeadersOptions}`[] = FIREFOX
  ? ["requestHeaders"]
  : ["requestHeaders", "extraHeaders"];

/** The origin that started a request, if the browser says. */
export function initiatorOf(details: RequestDetails): string | undefined {
  if (!FIREFOX) return details.initiator;
  try {
    return details.originUrl ? new URL(details.originUrl).origin : undefined;
  } catch {
    return undefined;
  }
}

/** The origin of a message's sender (Firefox may give only its URL, which the browser sets). */
export function senderOrigin(sender: chrome.runtime.MessageSender): string | undefined {
  if (sender.origin || !FIREFOX || !sender.url) return sender.origin;
  try {
    return new URL(sender.url).origin;
  } catch {
    return undefined;
  }
}

/**
 * The match pattern of `origin`'s pages, for registered content scripts. Firefox's match
 * patterns cannot hold a port (one with a port matches nothing), so there it names the host on
 * any port, as Chrome's pattern of a default-port origin does anyway. Paying stays per origin:
 * the worker checks the sender's origin, and budgets are kept per origin.
 */
export function pagesOf(origin: string): string {
  if (!FIREFOX) return `${origin}/*`;
  const url = new URL(origin);
  return `${url.protocol}//${url.hostname}/*`;
}

/** The header rules (declarativeNetRequest session rules, or this module's on Firefox). */
export interface HeaderRules {
  get(): Promise<Rule[]>;
  update(change: { removeRuleIds: number[]; addRules: Rule[] }): Promise<void>;
}

const RULES_KEY = "headerRules";
let firefoxRules: Promise<Rule[]> | undefined;
/** The same rules once read: the listener answers from them without waiting. */
let loadedRules: Rule[] | undefined;

function storedRules(): Promise<Rule[]> {
  firefoxRules ??= chrome.storage.session.get(RULES_KEY).then((items) => {
    loadedRules ??= (items[RULES_KEY] as Rule[] | undefined) ?? [];
    return loadedRules;
  });
  return firefoxRules;
}

export const headerRules: HeaderRules = FIREFOX
  ? {
      get: async () => [...(await storedRules())],
      async update({ removeRuleIds, addRules }) {
        const next = (await storedRules()).filter((r) => !removeRuleIds.includes(r.id)).concat(addRules);
        await chrome.storage.session.set({ [RULES_KEY]: next });
        firefoxRules = Promise.resolve(next);
        loadedRules = next;
      },
    }
  : {
      get: () => chrome.declarativeNetRequest.getSessionRules(),
      update: (change) => chrome.declarativeNetRequest.updateSessionRules(change),
    };

/**
 * Starts putting the rules' headers on requests. Call it at the worker's top, synchronously: on
 * Firefox the listener must be there when the browser starts the event page for a request.
 */
export function applyHeaderRules(): void {
  if (!FIREFOX) return; // Chrome applies session rules itself.
  const listener = (details: RequestDetails & { requestHeaders?: RequestHeader[] }) => {
    const withRules = (rules: Rule[]) => {
      const rule = matchingRule(rules, details);
      return rule ? { requestHeaders: withHeaders(details.requestHeaders ?? [], rule) } : {};
    };
    return loadedRules ? withRules(loadedRules) : storedRules().then(withRules);
  };
  chrome.webRequest.onBeforeSendHeaders.addListener(
    // Firefox waits for a blocking listener's promise (only until the rules are first read).
    listener as unknown as (d: chrome.webRequest.OnBeforeSendHeadersDetails) => chrome.webRequest.BlockingResponse,
    { urls: ["http://*/*", "https://*/*"], types: ["main_frame", "sub_frame", "xmlhttprequest"] },
    ["blocking", "requestHeaders"],
  );
}

const KNOWN_CONDITIONS = new Set(["urlFilter", "regexFilter", "resourceTypes", "tabIds", "domainType", "initiatorDomains"]);

/** Whether `rule`'s condition holds for the request, in the subset of conditions rules.ts uses. */
function matches(rule: Rule, details: RequestDetails): boolean {
  const c = rule.condition;
  if (Object.keys(c).some((k) => !KNOWN_CONDITIONS.has(k))) return false;
  if (c.urlFilter !== undefined && !urlFilterMatches(c.urlFilter, details.url)) return false;
  if (c.regexFilter !== undefined && !new RegExp(c.regexFilter).test(details.url)) return false;
  if (c.resourceTypes && !(c.resourceTypes as string[]).includes(details.type)) return false;
  if (c.tabIds && !c.tabIds.includes(details.tabId)) return false;
  if (c.domainType === "firstParty" && details.thirdParty !== false) return false;
  if (c.domainType === "thirdParty" && details.thirdParty !== true) return false;
  if (c.initiatorDomains && !onDomains(initiatorOf(details), c.initiatorDomains)) return false;
  return true;
}

/** Whether `origin`'s host is one of `domains` or under one, as Chrome matches them (no initiator: no). */
function onDomains(origin: string | undefined, domains: string[]): boolean {
  if (!origin || origin === "null") return false;
  const host = new URL(origin).hostname.replace(/^\[|\]$/g, "");
  return domains.some((d) => host === d || host.endsWith(`.${d}`));
}

/** `|url|` (exactly that URL) and `|prefix` (URLs starting with it); any other filter matches nothing. */
function urlFilterMatches(filter: string, url: string): boolean {
  if (!filter.startsWith("|") || filter.startsWith("||")) return false;
  const exact = filter.endsWith("|") && filter.length > 1;
  const body = filter.slice(1, exact ? -1 : undefined);
  if (/[*^|]/.test(body)) return false;
  return exact ? url === body : url.startsWith(body);
}

/** The highest-priority rule that sets headers on this request, as Chrome would pick it. */
export function matchingRule(rules: Rule[], details: RequestDetails): Rule | undefined {
  let best: Rule | undefined;
  for (const rule of rules) {
    if (rule.action.type !== "modifyHeaders" || !rule.action.requestHeaders?.length) continue;
    if (!matches(rule, details)) continue;
    if (!best || (rule.priority ?? 1) > (best.priority ?? 1)) best = rule;
  }
  return best;
}

/** The request's headers with the rule's changes (set or remove; any other makes no change). */
function withHeaders(headers: RequestHeader[], rule: Rule): RequestHeader[] {
  let out = headers;
  for (const change of rule.action.requestHeaders ?? []) {
    const name = change.header.toLowerCase();
    if (change.operation !== "set" && change.operation !== "remove") continue;
    out = out.filter((h) => h.name.toLowerCase() !== name);
    if (change.operation === "set" && change.value !== undefined) out.push({ name: change.header, value: change.value });
  }
  return out;
}
