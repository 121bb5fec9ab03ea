// The wallet's records in one directory: a log of writes, each a line appended and synced to
// disk before the write resolves, replayed on open and compacted when it has grown. The keys
// in it are sealed by the wallet itself (its vault); this file keeps them durable, atomic per
// write, and to one process at a time.

import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";

const write = promisify(fs.write);
const fdatasync = promisify(fs.fdatasync);

const LOG = "records.log";
const LOCK = "wallet.lock";
/** Compact when the log holds this many times the bytes of what it describes, and more than this. */
const COMPACT_RATIO = 4;
const COMPACT_MIN_BYTES = 1 << 20;

export class StoreLockedError extends Error {
  constructor(dir, pid) {
    super(`the wallet in ${dir} is in use by process ${pid}`);
    this.name = "StoreLockedError";
    this.code = "wallet_in_use";
  }
}

/** Whether process `pid` is alive. */
function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === "EPERM";
  }
}

/** Takes `dir`'s lock file for this process: another live process holding it is refused. */
function lock(dir) {
  const file = path.join(dir, LOCK);
  for (;;) {
    try {
      const fd = fs.openSync(file, "wx");
      fs.writeSync(fd, String(process.pid));
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      return file;
    } catch (e) {
      if (e.code !== "EEXIST") throw e;
      const pid = Number(fs.readFileSync(file, "utf8"));
      if (Number.isInteger(pid) && pid > 0 && alive(pid)) throw new StoreLockedError(dir, pid);
      // Left by a process that is gone.
      fs.rmSync(file, { force: true });
    }
  }
}

function syncDir(dir) {
  const fd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** The records a log's text describes; a last line cut short by a crash is not a write. */
function replay(text) {
  const records = new Map();
  const lines = text.split("\n");
  // The text after the last newline was never completed.
  lines.pop();
  for (const line of lines) {
    const { puts, removes } = JSON.parse(line);
    for (const key of removes) records.delete(key);
    for (const [key, value] of Object.entries(puts)) records.set(key, value);
  }
  return records;
}

/**
 * The `WalletStore` of `trickle-node`'s wallet in directory `dir` (made if missing), locked to
 * this process until `close()`.
 */
export class FileStore {
  #dir;
  #lock;
  #records;
  #fd;
  #logBytes;
  #tail = Promise.resolve();

  constructor(dir) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.#dir = dir;
    this.#lock = lock(dir);
    const log = path.join(dir, LOG);
    let text = "";
    try {
      text = fs.readFileSync(log, "utf8");
    } catch (e) {
      if (e.code !== "ENOENT") throw e;
    }
    this.#records = replay(text);
    if (!text.endsWith("\n") && text !== "") {
      // Drop the torn tail so the next line starts clean.
      this.#compact();
    } else {
      this.#fd = fs.openSync(log, "a", 0o600);
      this.#logBytes = Buffer.byteLength(text);
    }
  }

  async get(key) {
    return this.#records.get(key);
  }

  async keys() {
    return [...this.#records.keys()];
  }

  /** Applies `puts` and `removes` as one line of the log; resolves once it is on disk. */
  write(puts, removes) {
    const line = `${JSON.stringify({ puts, removes })}\n`;
    const done = this.#tail.then(async () => {
      if (this.#fd === undefined) throw new Error("the wallet store is closed");
      // Off the event loop: requests in flight go on while the disk syncs.
      await write(this.#fd, line);
      await fdatasync(this.#fd);
      this.#logBytes += Buffer.byteLength(line);
      for (const key of removes) this.#records.delete(key);
      for (const [key, value] of Object.entries(puts)) this.#records.set(key, value);
      if (this.#logBytes > COMPACT_MIN_BYTES && this.#logBytes > COMPACT_RATIO * this.#liveBytes()) {
        this.#compact();
      }
    });
    // One write at a time, in order; a failed one does not stop the next.
    this.#tail = done.catch(() => {});
    return done;
  }

  #liveBytes() {
    let n = 0;
    for (const [k, v] of this.#records) n += k.length + v.length + 6;
    return n;
  }

  /** Rewrites the log as one line of what it describes: a new file synced, then renamed over. */
  #compact() {
    if (this.#fd !== undefined) fs.closeSync(this.#fd);
    const log = path.join(this.#dir, LOG);
    const fresh = `${log}.new`;
    const line = `${JSON.stringify({ puts: Object.fromEntries(this.#records), removes: [] })}\n`;
    const fd = fs.openSync(fresh, "w", 0o600);
    fs.writeSync(fd, line);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(fresh, log);
    syncDir(this.#dir);
    this.#fd = fs.openSync(log, "a", 0o600);
    this.#logBytes = Buffer.byteLength(line);
  }

  /** Waits for the writes under way, then lets another process open the wallet. */
  async close() {
    await this.#tail;
    if (this.#fd !== undefined) fs.closeSync(this.#fd);
    this.#fd = undefined;
    fs.rmSync(this.#lock, { force: true });
  }
}
