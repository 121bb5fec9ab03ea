// The page API, in the page's own world: `window.trickle.fetch(input, init)` is `fetch` that pays
// a 402 from the page's site within the budget the user approved, then retries. The page never
// sees the payment header: the extension adds it to the retried request itself.

export {};
const CHANNEL = "trickle-page-api";
let next = 0;

function ask(url: string, header: string): Promise<{ ok: boolean; payload?: string; error?: { code: string; message: string } }> {
  const id = `${Date.now()}-${next++}`;
  return new Promise((resolve) => {
    const onMessage = (event: MessageEvent) => {
      const data = event.data;
      if (event.source !== window || data?.channel !== CHANNEL || data.id !== id || !data.reply) return;
      window.removeEventListener("message", onMessage);
      resolve(data.reply);
    };
    window.addEventListener("message", onMessage);
    window.postMessage({ channel: CHANNEL, id, url, header }, window.location.origin);
  });
}

/** Why a paid fetch did not pay: `code` is the wallet's reason ("ask": waiting for the user). */
class PaymentError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly response: Response,
  ) {
    super(message);
  }
}

async function paidFetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
  const first = await fetch(input, init);
  const offer = first.headers.get("payment-required");
  if (first.status !== 402 || !offer) return first;
  const reply = await ask(first.url, offer);
  if (!reply.ok) throw new PaymentError(reply.error?.code ?? "internal", reply.error?.message ?? "not paid", first);
  if (reply.payload !== "paid") {
    throw new PaymentError(reply.payload ?? "refused", `Trickle did not pay (${reply.payload}); see its popup`, first);
  }
  return fetch(input, init);
}

Object.defineProperty(window, "trickle", {
  value: Object.freeze({ fetch: paidFetch, PaymentError }),
  enumerable: false,
  configurable: false,
  writable: false,
});
