import type { Network, Period, Shortfall, WalletError } from "../shared/messages";

const sats = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

/** `1234567` → `"1,234,567"`. */
export function formatSat(n: number): string {
  return sats.format(n);
}

/** A signed amount with a real minus sign: `+25,000` / `−1,200`. */
export function formatSignedSat(n: number): string {
  if (n > 0) return `+${formatSat(n)}`;
  if (n < 0) return `\u2212${formatSat(-n)}`;
  return "0";
}

/** `abcdef…` → `abcdef12…89abcdef`. */
export function shortId(id: string, keep = 8): string {
  return id.length <= keep * 2 + 1 ? id : `${id.slice(0, keep)}…${id.slice(-keep)}`;
}

const dateFmt = new Intl.DateTimeFormat("en-US", {
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
});

/** Unix seconds → `Nov 26, 07:36`. */
export function formatTime(unixSeconds: number): string {
  return dateFmt.format(new Date(unixSeconds * 1000));
}

const dayFmt = new Intl.DateTimeFormat("en-US", { month: "short", day: "numeric" });

/** Unix seconds → `Nov 26`. */
export function formatDay(unixSeconds: number): string {
  return dayFmt.format(new Date(unixSeconds * 1000));
}

/** How long ago, for the sync line: `just now`, `3 min ago`, `2 h ago`. */
export function ago(ms: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 45) return "just now";
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const hours = Math.round(m / 60);
  if (hours < 48) return `${hours} h ago`;
  return `${Math.round(hours / 24)} days ago`;
}

/** `1, "request"` → `"1 request"`; `2, "request"` → `"2 requests"`. */
export function plural(n: number, noun: string): string {
  return `${formatSat(n)} ${noun}${n === 1 ? "" : "s"}`;
}

export const PERIOD_LABEL: Record<Period, string> = { day: "Day", week: "Week", month: "Month" };

/** The budget period under way, in words. */
export const PERIOD_NOW: Record<Period, string> = { day: "today", week: "this week", month: "this month" };

export const NETWORK_LABEL: Record<Network, string> = {
  regtest: "Regtest",
  signet: "Signet",
  testnet: "Testnet",
  testnet4: "Testnet4",
  bitcoin: "Bitcoin",
};

/** Esplora servers offered when the user switches network (any URL can be typed instead). */
export const DEFAULT_ESPLORA: Record<Network, string> = {
  regtest: "http://127.0.0.1:3002",
  signet: "https://mempool.space/signet/api",
  testnet: "https://mempool.space/testnet/api",
  testnet4: "https://mempool.space/testnet4/api",
  bitcoin: "https://mempool.space/api",
};

export { toError } from "../shared/messages";

/** What error messages may name: the chain server the wallet is set to. */
export const errorContext = { esploraUrl: "" };

/** Sentences for the errors people meet most; the rest show the wallet's own message. */
const FRIENDLY: Record<string, string> = {
  wrong_password: "Wrong password. Check it and try again.",
  no_worker: "Trickle's background worker did not answer. Close this window and open it again.",
  already_exists: "A wallet already exists for this network. Unlock it, or restore from its phrase.",
};

/** Coins short of a transaction, in words. */
export function shortfallMessage(s: Shortfall): string {
  return `Not enough funds: ${formatSat(s.available)} sat available, ${formatSat(s.needed)} sat needed with the fee.`;
}

/**
 * An error as a sentence for people: known codes get a plain sentence, the amounts of a
 * shortfall come from the error's detail, and a message that carries a debug dump is cut to its
 * first line.
 */
export function humanMessage(e: WalletError): string {
  const friendly = FRIENDLY[e.code];
  if (friendly) return friendly;
  const m = e.message;
  if (e.code === "chain" && /failed to fetch|networkerror|connection refused|timed out|error sending request/i.test(m)) {
    const where = errorContext.esploraUrl ? ` at ${errorContext.esploraUrl}` : "";
    return `Cannot reach the Esplora server${where}. Check it in Settings.`;
  }
  if (e.detail?.kind === "insufficientFunds") return shortfallMessage(e.detail);
  let first = m.split(/\n|\\n/)[0] ?? m;
  if (first.length > 220) first = `${first.slice(0, 217)}…`;
  return sentence(first);
}

/** Rust errors read in lowercase; a sentence on screen starts with a capital. */
export function sentence(s: string): string {
  const t = s.trim();
  if (!t) return "Something went wrong.";
  return t[0]!.toUpperCase() + t.slice(1);
}
