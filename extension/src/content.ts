// The page API's messenger, in the extension's isolated world: passes a page's "pay this 402"
// to the worker and the answer back. The worker checks the URL is the page's own site.

export {};
const CHANNEL = "trickle-page-api";

window.addEventListener("message", (event: MessageEvent) => {
  const data = event.data;
  if (event.source !== window || data?.channel !== CHANNEL || data.reply || typeof data.id !== "string") return;
  chrome.runtime
    .sendMessage({ type: "pagePay", url: String(data.url), header: String(data.header) })
    .catch((e: unknown) => ({ ok: false, error: { code: "no_worker", message: String(e) } }))
    .then((reply: unknown) => {
      window.postMessage({ channel: CHANNEL, id: data.id, reply }, window.location.origin);
    });
});
