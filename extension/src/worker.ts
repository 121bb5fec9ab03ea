// The extension's service worker. Chrome may stop it at any moment and start it again for the
// next event, so: listeners are registered synchronously at the top, the wasm wallet is loaded
// once per start (state comes back from storage every time), and every answer waits for it.

import init, { Trickle } from "../pkg/trickle_wasm.js";
import type { Reply, Request, WalletError } from "./messages.js";

const SYNC_ALARM = "sync";
const LOCK_ALARM = "auto-lock";
const started = performance.now();

const ready: Promise<Trickle> = (async () => {
  await init({ module_or_path: chrome.runtime.getURL("trickle_wasm_bg.wasm") });
  const trickle = await Trickle.load();
  console.info(`trickle: worker ready in ${Math.round(performance.now() - started)} ms`);
  return trickle;
})();

function asError(e: unknown): WalletError {
  if (e && typeof e === "object" && "code" in e && "message" in e) {
    return { code: String(e.code), message: String(e.message) };
  }
  return { code: "internal", message: e instanceof Error ? e.message : String(e) };
}

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
          },
        };
      }
    }
    await trickle.lockIfIdle();
    return { ok: true, payload: await trickle.handle(request) };
  } catch (e) {
    return { ok: false, error: asError(e) };
  }
}

chrome.runtime.onMessage.addListener((message, sender, sendResponse) => {
  // Only the extension's own pages talk to the wallet.
  if (sender.id !== chrome.runtime.id || !sender.url?.startsWith(chrome.runtime.getURL(""))) {
    return false;
  }
  answer(message as Request).then(sendResponse);
  return true; // the answer comes asynchronously
});

chrome.runtime.onInstalled.addListener((details) => {
  if (details.reason === "install") {
    chrome.tabs.create({ url: chrome.runtime.getURL("onboarding.html") });
  }
});

chrome.alarms.onAlarm.addListener(async (alarm) => {
  const trickle = await ready;
  if (alarm.name === LOCK_ALARM) {
    await trickle.lockIfIdle();
  } else if (alarm.name === SYNC_ALARM && !(await trickle.lockIfIdle())) {
    // A failed sync is recorded in the wallet's sync status, which the popup shows.
    await trickle.handle({ type: "sync" }).catch(() => undefined);
  }
});

// Alarms survive worker restarts; creating them again just keeps their period.
chrome.alarms.create(SYNC_ALARM, { periodInMinutes: 1 });
chrome.alarms.create(LOCK_ALARM, { periodInMinutes: 1 });
