// Where the wallet's records live (budgets with their auto-approve, settings, the sealed wallet,
// channels): somewhere only the extension's own pages and its background reach, never a content
// script, which is the code a compromised renderer runs as.
//
// - Chrome: `storage.local`, closed to content scripts by its access level (set again at every
//   start; Chrome keeps it). A write is one `set` (all its items or none), then one `remove`.
// - Firefox has no access level: its content scripts read and write `storage.local`. So the
//   records live in an IndexedDB database of the extension's own origin (a content script's
//   IndexedDB is the page's). A write is one transaction with strict durability: all of it or
//   nothing, on disk when it resolves. Records an earlier version kept in `storage.local` are
//   moved once, in the transaction that marks them moved; `storage.local` is then cleared at
//   every start, so nothing anyone writes there is ever read.

import type { WalletStore } from "../../pkg/trickle_wasm.js";
import { FIREFOX } from "./browser.js";

/** The wallet's store for this browser. Call once per background start. */
export function openWalletStore(): Promise<WalletStore> {
  return FIREFOX ? openIndexedDb() : Promise.resolve(chromeLocal());
}

function chromeLocal(): WalletStore {
  void chrome.storage.local.setAccessLevel({ accessLevel: "TRUSTED_CONTEXTS" }).catch((e: unknown) => {
    console.warn("trickle: storage access level", e);
  });
  const local = chrome.storage.local;
  return {
    get: async (key) => (await local.get(key))[key] as string | undefined,
    keys: () => local.getKeys(),
    async write(puts, removes) {
      if (Object.keys(puts).length) await local.set(puts);
      if (removes.length) await local.remove(removes);
    },
  };
}

const DB_NAME = "trickle";
const RECORDS = "records";
const META = "meta";
/** In META once `storage.local`'s records were moved (or found empty). */
const MOVED = "movedFromStorageLocal";

function request<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error ?? new Error("IndexedDB request failed"));
  });
}

/** Resolves when `tx` has committed, rejects if it aborts (then none of its writes happened). */
function committed(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction aborted"));
  });
}

async function openIndexedDb(): Promise<WalletStore> {
  const open = indexedDB.open(DB_NAME, 1);
  open.onupgradeneeded = () => {
    open.result.createObjectStore(RECORDS);
    open.result.createObjectStore(META);
  };
  const db = await request(open);
  await moveFromStorageLocal(db);
  const read = () => db.transaction(RECORDS, "readonly").objectStore(RECORDS);
  return {
    get: async (key) => (await request(read().get(key))) as string | undefined,
    keys: async () => (await request(read().getAllKeys())) as string[],
    write(puts, removes) {
      const tx = db.transaction(RECORDS, "readwrite", { durability: "strict" });
      const records = tx.objectStore(RECORDS);
      for (const [key, value] of Object.entries(puts)) records.put(value, key);
      for (const key of removes) records.delete(key);
      return committed(tx);
    },
  };
}

/**
 * Moves what an earlier version kept in `storage.local` into `db`, once: the copy and its
 * marker are one transaction. Then clears `storage.local`, at every start.
 */
async function moveFromStorageLocal(db: IDBDatabase): Promise<void> {
  const old = await chrome.storage.local.get(null);
  const tx = db.transaction([RECORDS, META], "readwrite", { durability: "strict" });
  const meta = tx.objectStore(META);
  const marker = meta.get(MOVED);
  marker.onsuccess = () => {
    if (marker.result !== undefined) return;
    const records = tx.objectStore(RECORDS);
    for (const [key, value] of Object.entries(old)) if (typeof value === "string") records.put(value, key);
    meta.put(Date.now(), MOVED);
  };
  await committed(tx);
  await chrome.storage.local.clear();
}
