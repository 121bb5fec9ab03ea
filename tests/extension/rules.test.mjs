// The extension's pure modules, bundled from their TypeScript and run in Node: the rule book
// (extension/src/background/rules.ts: which payment header goes on which request) and the
// pages' formatting of amounts and errors (extension/src/pages/format.ts). The browsers run the
// same code in tests/browser/.

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const SIGNATURE = "eyJ4NDAyVmVyc2lvbiI6Mn0";
const NOW = 1_800_000_000_000;
let dir;
let rules;
let format;

/** Bundles one module of extension/src as ESM and imports it. */
async function load(source) {
  const out = path.join(dir, `${path.basename(source, ".ts")}.mjs`);
  await build({ entryPoints: [path.join(ROOT, "extension", "src", source)], bundle: true, format: "esm", outfile: out, logLevel: "error" });
  return import(pathToFileURL(out).href);
}

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "trickle-extension-"));
  rules = await load("background/rules.ts");
  format = await load("pages/format.ts");
});

after(() => rm(dir, { recursive: true, force: true }));

const emptyBook = () => ({ pay: [], armed: {}, nextId: 1 });

test("a paid URL's rule: exactly that URL, tab and type, for the offer's life, replacing its own earlier rule", () => {
  const book = emptyBook();
  const url = "https://shop.test/articles/1?x=1";
  const first = rules.payRule(book, NOW, url, 7, "main_frame", SIGNATURE, false);
  assert.deepEqual(first.remove, []);
  assert.deepEqual(first.add, [
    {
      id: 1,
      priority: rules.PAY_PRIORITY,
      action: { type: "modifyHeaders", requestHeaders: [{ header: "payment-signature", operation: "set", value: SIGNATURE }] },
      condition: { urlFilter: `|${url}|`, resourceTypes: ["main_frame"], tabIds: [7] },
    },
  ]);
  assert.equal(rules.liveRule(book, url, 7, NOW + rules.RULE_LIFE_MS - 1)?.id, 1);
  assert.equal(rules.liveRule(book, url, 7, NOW + rules.RULE_LIFE_MS), undefined, "expired with the offer");
  assert.equal(rules.liveRule(book, url, 8, NOW), undefined, "another tab");

  const again = rules.payRule(book, NOW + 1, url, 7, "main_frame", "other", true);
  assert.deepEqual(again.remove, [1], "the URL's earlier rule goes");
  assert.deepEqual(book.pay.map((r) => [r.id, r.retried]), [[2, true]]);
  // Another tab's payment for the same URL is its own rule.
  rules.payRule(book, NOW + 2, url, 9, "main_frame", "third", false);
  assert.deepEqual(book.pay.map((r) => r.id), [2, 3]);
});

test("urlFilter wildcards in a URL are matched by an escaped regex, never as wildcards", () => {
  for (const url of ["https://shop.test/a*b", "https://shop.test/a|b", "https://shop.test/a^b?q=(1).[2]+$"]) {
    const { add } = rules.payRule(emptyBook(), NOW, url, 1, "main_frame", SIGNATURE, false);
    const { regexFilter, urlFilter } = add[0].condition;
    assert.equal(urlFilter, undefined, url);
    const re = new RegExp(regexFilter);
    assert.ok(re.test(url), `${regexFilter} matches ${url}`);
    assert.ok(!re.test(`${url}x`), "nothing longer");
    assert.ok(!re.test(url.replace(/[*|^]/, "X")), "the wildcard is literal");
  }
  assert.deepEqual(rules.prefixUrl("https://shop.test/"), { urlFilter: "|https://shop.test/" });
  assert.deepEqual(rules.exactUrl("https://shop.test/a"), { urlFilter: "|https://shop.test/a|" });
});

test("a frame is paid without asking only when its own site loads it", () => {
  const own = rules.payRule(emptyBook(), NOW, "https://shop.test/f", 1, "sub_frame", SIGNATURE, false);
  assert.equal(own.add[0].condition.domainType, "firstParty");
  const embedded = rules.payRule(emptyBook(), NOW, "https://shop.test/f", 1, "sub_frame", SIGNATURE, false, true);
  assert.equal(embedded.add[0].condition.domainType, undefined, "approved by the user where it is embedded");
});

test("paid URLs' rules stay within the per-site, overall and regex bounds, the oldest going first", () => {
  const book = emptyBook();
  for (let i = 0; i < rules.MAX_SITE_PAY_RULES + 3; i++) {
    rules.payRule(book, NOW + i, `https://a.test/${i}`, 1, "main_frame", SIGNATURE, false);
  }
  assert.equal(book.pay.length, rules.MAX_SITE_PAY_RULES);
  assert.equal(book.pay[0].url, "https://a.test/3", "the three oldest made room");
  // Another site's rules are not evicted by this one's.
  rules.payRule(book, NOW, "https://b.test/0", 1, "main_frame", SIGNATURE, false);
  assert.ok(book.pay.some((r) => r.url === "https://b.test/0"));
  assert.equal(book.pay.filter((r) => r.url.startsWith("https://a.test/")).length, rules.MAX_SITE_PAY_RULES);

  const regexes = emptyBook();
  for (let i = 0; i < rules.MAX_REGEX_PAY_RULES + 1; i++) {
    // Spread over sites so that only the regex bound applies.
    rules.payRule(regexes, NOW, `https://s${i}.test/*`, 1, "main_frame", SIGNATURE, false);
  }
  assert.equal(regexes.pay.filter((r) => r.regex).length, rules.MAX_REGEX_PAY_RULES);
});

test("a site's pre-armed rule: its next page, navigations its own pages start, moved or removed as a whole", () => {
  const book = emptyBook();
  const origin = "http://[::1]:8080";
  const armed = rules.armRule(book, origin, SIGNATURE);
  assert.deepEqual(armed.remove, []);
  assert.deepEqual(armed.add[0].condition, {
    urlFilter: `|${origin}/`,
    resourceTypes: ["main_frame"],
    initiatorDomains: ["::1"],
  });
  assert.equal(armed.add[0].priority, rules.ARM_PRIORITY);
  assert.ok(rules.ARM_PRIORITY < rules.PAY_PRIORITY, "a paid URL's own rule wins");
  const moved = rules.armRule(book, origin, "next");
  assert.deepEqual(moved.remove, [armed.add[0].id]);
  assert.equal(book.armed[origin], moved.add[0].id);
  const removed = rules.armRule(book, origin, null);
  assert.deepEqual(removed, { add: [], remove: [moved.add[0].id] });
  assert.deepEqual(book.armed, {});
});

test("expiry drops the paid URLs' rules past their life, and installed rules the book does not know", () => {
  const book = emptyBook();
  rules.payRule(book, NOW, "https://a.test/1", 1, "main_frame", SIGNATURE, false);
  rules.payRule(book, NOW + 60_000, "https://a.test/2", 1, "main_frame", SIGNATURE, false);
  rules.armRule(book, "https://a.test", SIGNATURE);
  const installed = [
    { id: 1, priority: rules.PAY_PRIORITY },
    { id: 2, priority: rules.PAY_PRIORITY },
    { id: 3, priority: rules.ARM_PRIORITY },
    { id: 99, priority: rules.PAY_PRIORITY },
  ];
  const change = rules.expired(book, installed, NOW + rules.RULE_LIFE_MS);
  assert.deepEqual(change, { add: [], remove: [1, 99] }, "the pre-armed rule stays");
  assert.deepEqual(book.pay.map((r) => r.id), [2]);
});

test("the pages' amounts and errors, in words", () => {
  assert.equal(format.formatSat(1234567), "1,234,567");
  assert.deepEqual([format.formatSignedSat(25_000), format.formatSignedSat(-1_200), format.formatSignedSat(0)], ["+25,000", "\u22121,200", "0"]);
  assert.equal(format.shortId("a".repeat(64)), `${"a".repeat(8)}…${"a".repeat(8)}`);
  assert.equal(format.plural(1, "request"), "1 request");
  assert.equal(format.plural(2_000, "request"), "2,000 requests");
  assert.deepEqual(
    [0, 44_000, 120_000, 3 * 3600_000, 72 * 3600_000].map((ms) => format.ago(NOW - ms, NOW)),
    ["just now", "just now", "2 min ago", "3 h ago", "3 days ago"],
  );
  const short = { code: "cannot_fund", message: "not enough funds: 10 sat", detail: { kind: "insufficientFunds", available: 1_000, needed: 25_500 } };
  assert.equal(format.humanMessage(short), "Not enough funds: 1,000 sat available, 25,500 sat needed with the fee.", "amounts from the detail, not the message");
  assert.equal(format.humanMessage({ code: "wrong_password", message: "x", detail: null }), "Wrong password. Check it and try again.");
  format.errorContext.esploraUrl = "http://127.0.0.1:3002";
  assert.equal(
    format.humanMessage({ code: "chain", message: "error sending request for url", detail: null }),
    "Cannot reach the Esplora server at http://127.0.0.1:3002. Check it in Settings.",
  );
  const dump = format.humanMessage({ code: "internal", message: `boom: ${"x".repeat(300)}\nstack`, detail: null });
  assert.ok(dump.startsWith("Boom: ") && dump.length === 218 && dump.endsWith("…"), dump);
  assert.equal(format.sentence("  "), "Something went wrong.");
});
