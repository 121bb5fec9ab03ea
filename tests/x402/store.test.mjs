// The Node payer's store (packages/x402-client/store.js): the wallet's own store suite over it
// through the wasm wallet, its writes kept across a reopen, a write cut short by a crash
// ignored, one process at a time, and a log that compacts without losing a record.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { test } from "node:test";

import { FileStore, StoreLockedError, TrickleAgent } from "@trickle/x402-client";

import { workDir } from "../browser/harness.mjs";

test("the wallet's store suite holds over the Node payer's file store", async (t) => {
  const work = await workDir("x402-store-suite");
  t.after(work.dispose);
  const checks = await TrickleAgent.checkStore(path.join(work.dir, "suite"));
  assert.ok(checks >= 10, `${checks} checks`);
});

test("writes survive a reopen, a torn last write is ignored, one process at a time", async (t) => {
  const work = await workDir("x402-store");
  t.after(work.dispose);
  const dir = path.join(work.dir, "wallet");
  const store = new FileStore(dir);
  assert.throws(() => new FileStore(dir), StoreLockedError, "a second opening is refused");
  await store.write({ a: "1", b: "2" }, []);
  await store.write({ a: "one" }, ["b"]);
  await store.close();

  // A crash in the middle of a write leaves a line without its end.
  fs.appendFileSync(path.join(dir, "records.log"), '{"puts":{"c":"3"');
  const reopened = new FileStore(dir);
  assert.deepEqual(await reopened.keys(), ["a"]);
  assert.equal(await reopened.get("a"), "one");
  assert.equal(await reopened.get("c"), undefined, "the torn write did not happen");
  await reopened.write({ d: "4" }, []);
  await reopened.close();
  const again = new FileStore(dir);
  assert.deepEqual((await again.keys()).sort(), ["a", "d"]);
  await again.close();

  // A lock left by a process that is gone is taken over.
  const gone = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"]).stdout.toString();
  fs.writeFileSync(path.join(dir, "wallet.lock"), gone);
  const taken = new FileStore(dir);
  assert.equal(await taken.get("d"), "4");
  await taken.close();
});

test("the log compacts when it has grown, and keeps every record", async (t) => {
  const work = await workDir("x402-store-compact");
  t.after(work.dispose);
  const dir = path.join(work.dir, "wallet");
  const store = new FileStore(dir);
  const big = "x".repeat(10_000);
  for (let i = 0; i < 300; i++) await store.write({ channel: `${i}:${big}`, [`k${i % 3}`]: String(i) }, []);
  await store.close();
  const size = fs.statSync(path.join(dir, "records.log")).size;
  assert.ok(size < 1 << 20, `the log was compacted: ${size} bytes`);
  const reopened = new FileStore(dir);
  assert.equal(await reopened.get("channel"), `299:${big}`);
  assert.deepEqual([await reopened.get("k0"), await reopened.get("k1"), await reopened.get("k2")], ["297", "298", "299"]);
  await reopened.close();
});
