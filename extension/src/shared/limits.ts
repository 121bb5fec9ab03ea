// Bounds on what pages and sites hand the extension. What is kept (rules, approvals, notices)
// lives in chrome.storage.session, 10 MB for everything, unlocking included: a page must not
// be able to fill it. Longer strings are refused, not cut: a payment is for one exact URL.

/** The longest URL paid for: well above real pages' URLs (servers and CDNs cap at 8 KB). */
export const MAX_URL_CHARS = 8_192;
/** The longest PAYMENT-REQUIRED header answered: real offers are 1 to 2 KB. */
export const MAX_OFFER_CHARS = 16_384;

/** Why `url` and `offer` are refused, or null when they are within bounds. */
export function oversized(url: string, offer: string): { code: string; message: string } | null {
  if (url.length > MAX_URL_CHARS) {
    return { code: "too_long", message: `Trickle pays for URLs of at most ${MAX_URL_CHARS} characters` };
  }
  if (offer.length > MAX_OFFER_CHARS) {
    return { code: "too_long", message: `the site's offer is longer than ${MAX_OFFER_CHARS} characters` };
  }
  return null;
}

/** `text` cut to `max` characters, for what is only shown (notices). */
export function shortened(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
