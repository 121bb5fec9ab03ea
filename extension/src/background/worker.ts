// The extension's background: Chrome's service worker, Firefox's event page (browser.ts). Either
// may be stopped at any moment and started again for the next event, so: listeners are
// registered synchronously at the top, the wasm wallet is loaded once per start (state comes
// back from storage every time), and every answer waits for it.

import init, { Trickle } from "../../pkg/trickle_wasm.js";
import { SEND_HEADERS_EXTRA, applyHeaderRules, pagesOf, senderOrigin } from "./browser.js";
import { toError, type Duties, type Reply, type Request } from "../shared/messages.js";
import { Payer } from "./payer.js";
import { openWalletStore } from "./storage.js";

const SYNC_ALARM = "sync";
const LOCK_ALARM = "auto-lock";
const started = performance.now();

const ready: Promise<Trickle> = (async () => {
  await init({ module_or_path: chrome.runtime.getURL("trickle_wasm_bg.wasm") });
  const trickle = await Trickle.load(await openWalletStore());
  console.info(`trickle: worker ready in ${Math.round(performance.now() - started)} ms`);
  return trickle;
})();

/** Settles payments a previous worker signed but saw no receipt for (it was stopped meanwhile). */
function reconcile(trickle: Trickle): Promise<unknown> {
  if (!trickle.isUnlocked()) return Promise.resolve();
  return trickle.handle({ type: "reconcile" }).catch((e) => console.warn("trickle: reconcile failed", e));
}
void ready.then(reconcile);

/** The page API's two content scripts; registered for the approved origins only. */
const PAGE_API: chrome.scripting.RegisteredContentScript[] = [
  { id: "page-api-messenger", js: ["content.js"], runAt: "document_start" },
  { id: "page-api", js: ["page-api.js"], runAt: "document_start", world: "MAIN" },
];

/**
 * Gives the page API (`window.trickle`) to the pages of the sites with a budget, and to no
 * other: a page must not learn that Trickle is there, nor anything about the wallet, before the
 * user approved its site. Runs after every change of budgets (and at start).
 */
let pageApiTurn: Promise<unknown> = Promise.resolve();
function showPageApi(): Promise<unknown> {
  const run = pageApiTurn.then(async () => {
    const trickle = await ready;
    const origins = ((await trickle.handle({ type: "approvedOrigins" })) as string[]).filter(isWebOrigin);
    const ids = PAGE_API.map((s) => s.id);
    const registered = await chrome.scripting.getRegisteredContentScripts({ ids });
    if (registered.length) await chrome.scripting.unregisterContentScripts({ ids });
    if (origins.length) {
      const matches = [...new Set(origins.map(pagesOf))];
      await chrome.scripting.registerContentScripts(PAGE_API.map((s) => ({ ...s, matches })));
    }
  });
  pageApiTurn = run.catch((e) => console.warn("trickle: page API registration failed", e));
  return pageApiTurn;
}
void showPageApi();

/** Whether `origin` is an http(s) origin as URL writes it (a match pattern can be made of it). */
function isWebOrigin(origin: string): boolean {
  try {
    const url = new URL(origin);
    return url.origin === origin && (url.protocol === "http:" || url.protocol === "https:");
  } catch {
    return false;
  }
}

const payer = new Payer(async (request) => (await ready).handle(request));

async function answer(request: Request): Promise<Reply<unknown>> {
  try {
    const trickle = await ready;
    if (request.type === "saveSettings") {
      // The Esplora server must be reachable from the worker: its origin needs a host
      // permission, which only a page can ask the user for.
      const origin = `${new URL(request.esploraUrl).origin}/*`;
      if (!(await chrome.permissions.contains({ origins: [origin] }))) {
        return {
          ok: false,
          error: {
            code: "permission_needed",
            message: `Trickle needs permission to reach ${new URL(request.esploraUrl).origin}`,
            detail: null,
          },
        };
      }
    }
    // The user's own pages: this is the only activity that postpones the auto-lock.
    await trickle.userActivity();
    switch (request.type) {
      case "approvals":
        return { ok: true, payload: await payer.approvals() };
      case "notices":
        return { ok: true, payload: await payer.notices() };
      case "decide": {
        const payload = await payer.decide(request.id, request.decision, request.terms);
        await showPageApi();
        return { ok: true, payload };
      }
      case "offer":
      case "receipt":
      case "preArm":
        // Only the worker itself hands these to the wallet.
        return { ok: false, error: { code: "bad_request", message: `${request.type} is internal`, detail: null } };
      case "approve":
      case "revoke": {
        const payload = await trickle.handle(request);
        // The site's pre-armed payment follows its budget (removed when revoked or used up).
        await payer.arm(new URL(request.origin).origin).catch((e) => console.warn("trickle: arming failed", e));
        await showPageApi();
        return { ok: true, payload };
      }
      case "saveSettings": {
        // Another network has other budgets.
        const payload = await trickle.handle(request);
        await showPageApi();
        return { ok: true, payload };
      }
      default:
        return { ok: true, payload: await trickle.handle(request) };
    }
  } catch (e) {
    return { ok: false, error: toError(e) };
  }
}

/** The page API (content script): a page pays a 402 it got for a resource of its own site. */
async function pagePay(message: { url?: unknown; header?: unknown }, sender: chrome.runtime.MessageSender) {
  try {
    const origin = senderOrigin(sender);
    if (typeof message.url !== "string" || typeof message.header !== "string" || !sender.tab?.id || !origin) {
      throw { code: "bad_request", message: "pagePay needs a url and a header, from a tab" };
    }
    const trickle = await ready;
    // Only a site with a budget has the page API, but Firefox's match patterns cannot name a
    // port (`pagesOf`): another port of an approved host gets it too. Its requests get one
    // answer, locked or not, and ask the user nothing.
    const approved = (await trickle.handle({ type: "approvedOrigins" })) as string[];
    if (!approved.includes(origin)) {
      throw { code: "not_approved", message: "this site has no budget in Trickle" };
    }
    return { ok: true, payload: await payer.payForPage(message.url, message.header, sender.tab.id, origin) };
  } catch (e) {
    return { ok: false, error: toError(e) };
  }
}

chrome.runtime.onMessage.addListener((message, sender, sendResponse) => {
  if (sender.id !== chrome.runtime.id) return false;
  if (sender.url?.startsWith(chrome.runtime.getURL(""))) {
    // The extension's own pages talk to the wallet.
    answer(message as Request).then(sendResponse);
    return true; // the answer comes asynchronously
  }
  if (sender.tab && message?.type === "pagePay") {
    // Content scripts in web pages only ask to pay for their own page's site.
    pagePay(message, sender).then(sendResponse);
    return true;
  }
  return false;
});

// Observing only: navigations the browser makes ahead of the user (speculation-rules prefetch
// and prerender, which a page of any site can ask for) say so in `Sec-Purpose`.
chrome.webRequest.onSendHeaders.addListener(
  (details) => {
    const purpose = details.requestHeaders?.find((h) => h.name.toLowerCase() === "sec-purpose")?.value;
    if (purpose?.includes("prefetch") && details.type === "main_frame") payer.speculative(details.requestId);
  },
  { urls: ["http://*/*", "https://*/*"], types: ["main_frame"] },
  SEND_HEADERS_EXTRA,
);

// The payment headers the rule book (rules.ts) describes (Chrome applies them itself).
applyHeaderRules();

// Observing only (no blocking): 402 offers to answer and receipts to apply.
chrome.webRequest.onHeadersReceived.addListener(
  (details) => {
    void payer.onResponse(details).catch((e) => console.warn("trickle: payment handling failed", e));
    return undefined;
  },
  { urls: ["http://*/*", "https://*/*"] },
  ["responseHeaders"],
);

// Observing only: a paid navigation whose answer the network lost is sent again.
chrome.webRequest.onErrorOccurred.addListener(
  (details) => void payer.onError(details).catch((e) => console.warn("trickle: resending a paid page failed", e)),
  { urls: ["http://*/*", "https://*/*"], types: ["main_frame"] },
);

chrome.runtime.onInstalled.addListener((details) => {
  if (details.reason === "install") {
    chrome.tabs.create({ url: chrome.runtime.getURL("onboarding.html") });
  }
});

chrome.alarms.onAlarm.addListener(async (alarm) => {
  const trickle = await ready;
  if (alarm.name === LOCK_ALARM) {
    await trickle.lockIfIdle();
    await payer.expireRules();
  } else if (alarm.name === SYNC_ALARM && !(await trickle.lockIfIdle())) {
    // A failed sync is recorded in the wallet's sync status, which the popup shows.
    await trickle.handle({ type: "sync" }).catch(() => undefined);
    // Close near expiry, check settlements, refund what the payee never closed.
    try {
      const duties = (await trickle.handle({ type: "duties" })) as Duties;
      for (const { site, detail } of duties.failed) {
        await payer.notify({ url: site, code: "channel_duty", message: detail });
      }
    } catch (e) {
      console.warn("trickle: channel duties failed", e);
    }
  }
});

// Alarms survive worker restarts; creating them again just keeps their period.
chrome.alarms.create(SYNC_ALARM, { periodInMinutes: 1 });
chrome.alarms.create(LOCK_ALARM, { periodInMinutes: 1 });
