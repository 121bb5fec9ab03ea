// Firefox for the browser tests: Debian's firefox-esr, headless, driven by puppeteer-core over
// WebDriver BiDi, with dist/firefox installed as a temporary add-on. The chain, the payee and the
// sites come from harness.mjs, as for Chromium.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import puppeteer from "puppeteer-core";
import { ROOT, T, sleep, within, workDir } from "./harness.mjs";

export const FIREFOX_DIR = path.resolve(process.env.TRICKLE_FIREFOX_DIR ?? path.join(ROOT, "dist", "firefox"));
export const FIREFOX = process.env.FIREFOX_BIN ?? "/usr/bin/firefox-esr";
/** The add-on's id (extension/scripts/manifest.mjs) and the fixed UUID of its moz-extension:// origin. */
const ADDON_ID = "trickle-wallet@trickle";
const UUID = "0b6a7c1e-3f0d-4c52-9a7e-5d1f2e8b4c36";

/**
 * Launches Firefox with the extension installed; `workerMs` runs from the launch call to the
 * background's first `state` reply (it answers from the onboarding tab it opens on install).
 * `idleMs`: how long the background may idle before Firefox stops it (Firefox's default: 30 s).
 */
export async function launchFirefox(name, { idleMs } = {}) {
  assert.ok(existsSync(FIREFOX), `${FIREFOX} is missing: scripts/setup.sh installs firefox-esr`);
  assert.ok(
    existsSync(path.join(FIREFOX_DIR, "manifest.json")),
    `${FIREFOX_DIR} has no manifest.json: run \`bash scripts/build-extension.sh\` first`,
  );
  const work = await workDir(`firefox-${name}`);
  const tmp = path.join(work.dir, "tmp");
  await mkdir(tmp, { recursive: true });
  const t0 = performance.now();
  const browser = await puppeteer.launch({
    browser: "firefox",
    executablePath: FIREFOX,
    headless: true,
    userDataDir: path.join(work.dir, "profile"),
    // WebDriver BiDi refuses to navigate to moz-extension:// pages without it.
    args: ["--remote-allow-system-access"],
    env: { ...process.env, TMPDIR: tmp },
    timeout: T.launch,
    extraPrefsFirefox: {
      "extensions.webextensions.uuids": JSON.stringify({ [ADDON_ID]: UUID }),
      ...(idleMs === undefined ? {} : { "extensions.background.idle.timeout": idleMs }),
    },
  });
  const url = (file) => `moz-extension://${UUID}/${file}`;
  let onboarding;
  try {
    const id = await within(T.launch, "Firefox to install the add-on", browser.installExtension(FIREFOX_DIR));
    assert.equal(id, ADDON_ID);
    onboarding = await onboardingTab(browser, url("onboarding.html"));
    await waitApp(onboarding);
    // The first reply of the background, which has loaded the wasm wallet by then.
    for (;;) {
      const reply = await onboarding.evaluate(() => chrome.runtime.sendMessage({ type: "state" })).catch(() => null);
      if (reply?.ok) break;
      if (performance.now() - t0 > T.launch) throw new Error("the background never answered state");
      await sleep(25);
    }
  } catch (e) {
    await browser.close().catch(() => {});
    await work.dispose().catch(() => {});
    throw e;
  }
  const workerMs = performance.now() - t0;
  return {
    browser,
    onboarding,
    workerMs,
    url,
    async close() {
      await within(20_000, "Firefox to close", browser.close()).catch(() => {});
      await work.dispose().catch(() => {});
    },
  };
}

/** The tab the background opens on install (puppeteer may not know its URL yet: ask the page). */
async function onboardingTab(browser, want) {
  const deadline = performance.now() + T.ui;
  while (performance.now() < deadline) {
    for (const page of await browser.pages()) {
      if ((await page.evaluate(() => location.href).catch(() => "")) === want) return page;
    }
    await sleep(100);
  }
  throw new Error(`no tab shows ${want}`);
}

/**
 * Opens an extension page in a new tab and waits for its first screen. BiDi reports no load
 * events for moz-extension:// pages, so the page itself is asked.
 */
export async function openPage(firefox, file) {
  const page = await firefox.browser.newPage();
  void page.goto(firefox.url(file), { timeout: T.ui }).catch(() => {});
  await waitApp(page, firefox.url(file));
  return page;
}

/** Reloads an extension page (see openPage) and waits for its first screen. */
export async function reloadPage(page) {
  const href = await page.evaluate(() => location.href);
  await page.evaluate(() => {
    document.getElementById("app").dataset.screen = "loading";
    location.reload();
  });
  await waitApp(page, href);
}

/** Waits until the page at `href` (or any) shows a screen other than "loading". */
async function waitApp(page, href) {
  const deadline = performance.now() + T.ui;
  while (performance.now() < deadline) {
    const screen = await page
      .evaluate(
        (want) => (!want || location.href === want ? document.getElementById("app")?.dataset.screen : undefined),
        href ?? null,
      )
      .catch(() => undefined);
    if (screen && screen !== "loading") return;
    await sleep(25);
  }
  throw new Error(`${href ?? "the page"} showed no screen within ${T.ui} ms`);
}

/** Waits for screen `name` of the app. */
export async function waitScreen(page, name, timeout = T.ui) {
  await page.waitForSelector(`#app[data-screen="${name}"]`, { timeout });
}

/** Clicks the element `selector` picks once it is visible (a `data-testid` if it has no `[`). */
export async function click(page, selector) {
  const css = selector.includes("[") ? selector : `[data-testid="${selector}"]`;
  const deadline = performance.now() + T.ui;
  for (;;) {
    const el = await page.waitForSelector(css, { visible: true, timeout: T.ui });
    try {
      await el.evaluate((e) => e.scrollIntoView({ block: "center" }));
      await el.click();
      return;
    } catch (e) {
      // The screen drew itself again (fresh data) between finding the element and the click.
      if (!/detached/i.test(e.message) || performance.now() > deadline) throw e;
    }
  }
}

/** Types `value` into the field with `data-testid` `id`, replacing what it held. */
export async function fill(page, id, value) {
  const field = await page.waitForSelector(`[data-testid="${id}"]`, { visible: true, timeout: T.ui });
  await field.evaluate((el) => {
    el.scrollIntoView({ block: "center" });
    el.focus();
    el.select();
  });
  await page.keyboard.press("Backspace");
  await page.keyboard.type(value);
}

/** An attribute of the first element with `data-testid` `id`. */
export async function testIdAttribute(page, id, name) {
  const handle = await page.waitForSelector(`[data-testid="${id}"]`, { timeout: T.ui });
  return handle.evaluate((el, n) => el.getAttribute(n), name);
}

/** Waits until the page's `h1` says `text`. */
export async function waitHeading(page, text, timeout = T.ui) {
  await page.waitForFunction((t) => document.querySelector("h1")?.textContent === t, { timeout }, text);
}

/** When the running background page started (its `performance.timeOrigin`); starts it if stopped. */
export function backgroundStart(page) {
  return page.evaluate(async () => (await chrome.runtime.getBackgroundPage()).performance.timeOrigin);
}
