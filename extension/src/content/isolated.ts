// The page API's messenger, in the extension's isolated world: passes a page's "pay this 402"
// to the worker and the answer back. The worker checks the URL is the page's own site.

import { oversized } from "../shared/limits.js";

const CHANNEL = "trickle-page-api";

window.addEventListener("message", (event: MessageEvent) => {
  const data = event.data;
  if (event.source !== window || data?.channel !== CHANNEL || data.reply || typeof data.id !== "string") return;
  const url = String(data.url);
  const header = String(data.header);
  // Oversized strings are not even sent to the worker (which checks again).
  const tooLong = oversized(url, header);
  const reply: Promise<unknown> = tooLong
    ? Promise.resolve({ ok: false, error: tooLong })
    : chrome.runtime
        .sendMessage({ type: "pagePay", url, header })
        .catch((e: unknown) => ({ ok: false, error: { code: "no_worker", message: String(e) } }));
  void reply.then((answer) => {
    window.postMessage({ channel: CHANNEL, id: data.id, reply: answer }, window.location.origin);
  });
});
