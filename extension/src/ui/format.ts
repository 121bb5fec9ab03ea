import type { Network, WalletError } from "../messages";

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

export const NETWORK_LABEL: Record<Network, string> = {
  regtest: "Regtest",
  signet: "Signet",
  testnet: "Testnet",
  bitcoin: "Bitcoin",
};

/** Esplora servers offered when the user switches network (any URL can be typed instead). */
export const DEFAULT_ESPLORA: Record<Network, string> = {
  regtest: "http://127.0.0.1:3002",
  signet: "https://mempool.space/signet/api",
  testnet: "https://mempool.space/testnet/api",
  bitcoin: "https://mempool.space/api",
};

/** Turns anything thrown into a `WalletError`: typed errors pass, the rest get a code. */
export function toError(e: unknown): WalletError {
  if (e && typeof e === "object" && "message" in e) {
    const o = e as { code?: unknown; message: unknown };
    return {
      code: typeof o.code === "string" ? o.code : "internal",
      message: String(o.message),
    };
  }
  return { code: "internal", message: String(e) };
}

/** Rust errors read in lowercase; a sentence on screen starts with a capital. */
export function sentence(s: string): string {
  const t = s.trim();
  if (!t) return "Something went wrong.";
  return t[0]!.toUpperCase() + t.slice(1);
}
