// The two browsers the tests run the extension in, behind the same few operations, so that each
// scenario is written once: Debian's Chromium through playwright-core (dist/extension loaded
// unpacked), and Debian's firefox-esr through puppeteer-core over WebDriver BiDi (dist/firefox
// installed as a temporary add-on). A scenario gets a `Browser` from `launch` and `Tab`s from it;
// a selector with no `[`, `#` or space is a `data-testid`.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { chromium as playwright } from "playwright-core";
import puppeteer from "puppeteer-core";
import { ARTIFACTS, CHROMIUM, EXTENSION_DIR, PAGE, POPUP, ROOT, T, sleep, within, workDir } from "./harness.mjs";

export const FIREFOX_DIR = path.resolve(process.env.TRICKLE_FIREFOX_DIR ?? path.join(ROOT, "dist", "firefox"));
export const FIREFOX = process.env.FIREFOX_BIN ?? "/usr/bin/firefox-esr";
/** The add-on's id (extension/scripts/manifest.mjs) and the fixed UUID of its moz-extension:// origin. */
const ADDON_ID = "trickle-wallet@trickle";
const UUID = "0b6a7c1e-3f0d-4c52-9a7e-5d1f2e8b4c36";

/** The browsers every shared scenario runs in; TRICKLE_BROWSERS=chromium (or firefox) picks one. */
export const BROWSERS = (process.env.TRICKLE_BROWSERS ?? "chromium,firefox").split(",").map((b) => b.trim());

const css = (selector) => (/[[#\s]/.test(selector) ? selector : `[data-testid="${selector}"]`);

/** The first `state` reply's wait, from an extension page; a message starts a stopped background. */
async function firstState(page, t0) {
  for (;;) {
    const reply = await page.evaluate(() => chrome.runtime.sendMessage({ type: "state" })).catch(() => null);
    if (reply?.ok) return performance.now() - t0;
    if (performance.now() - t0 > T.launch) throw new Error("the background never answered state");
    await sleep(25);
  }
}

/**
 * Launches `kind` ("chromium" or "firefox") with the extension in a fresh profile, and waits for
 * the onboarding tab it opens on install. `startMs`: launch to the background's first `state`
 * reply. Firefox only: `idleMs`, how long its event page may idle before it is stopped.
 */
export async function launch(kind, name, opts = {}) {
  const work = await workDir(`${kind}-${name}`);
  try {
    return await (kind === "firefox" ? launchFirefox : launchChromium)(work, opts);
  } catch (e) {
    await work.dispose().catch(() => {});
    throw e;
  }
}

/**
 * What a tab does the same way in both browsers; a subclass names how far a navigation waits
 * (`loaded`: the document has arrived, in its driver's words) and does the rest its own way.
 */
class Tab {
  constructor(page) {
    this.raw = page;
  }
  async goto(url) {
    return (await this.raw.goto(url, { timeout: T.ui }))?.status() ?? null;
  }
  /** Opens `url` and waits for `text`; returns the ms it took. */
  async visit(url, text) {
    const t0 = performance.now();
    await this.raw.goto(url, { waitUntil: this.loaded, timeout: T.ui });
    await this.waitText(text);
    return performance.now() - t0;
  }
  /** The page navigates itself to `url` (as a reader's click does), then `text`; returns the ms. */
  async follow(url, text) {
    const t0 = performance.now();
    await this.raw.evaluate((u) => {
      location.href = u;
    }, url);
    await this.waitText(text);
    return performance.now() - t0;
  }
  /** The status of the response for `url` that `action` (a promise-returning function) brings. */
  async responseStatus(url, action) {
    const answered = this.raw.waitForResponse((r) => r.url() === url, { timeout: T.ui });
    await action();
    return (await answered).status();
  }
  url() {
    return this.raw.url();
  }
  evaluate(fn, arg) {
    return this.raw.evaluate(fn, arg);
  }
  /** Calls `fn(url)` for each of this tab's requests; returns the function that stops it. */
  onRequest(fn) {
    const listener = (r) => fn(r.url());
    this.raw.on("request", listener);
    return () => this.raw.off("request", listener);
  }
  close() {
    return this.raw.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Chromium

/** Chromium's flags for the tests: quiet, and only `extensions` (comma-separated) loaded. */
export function chromiumArgs(extensions) {
  return [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    `--disable-extensions-except=${extensions}`,
    `--load-extension=${extensions}`,
  ];
}

async function launchChromium(work) {
  assert.ok(
    existsSync(path.join(EXTENSION_DIR, "manifest.json")),
    `${EXTENSION_DIR} has no manifest.json: run \`bash scripts/build-extension.sh\` first`,
  );
  const tmp = path.join(work.dir, "tmp");
  await mkdir(tmp, { recursive: true });
  const t0 = performance.now();
  const context = await playwright.launchPersistentContext(path.join(work.dir, "profile"), {
    executablePath: CHROMIUM,
    headless: true,
    ignoreDefaultArgs: ["--disable-extensions"],
    args: chromiumArgs(EXTENSION_DIR),
    env: { ...process.env, TMPDIR: tmp },
    viewport: POPUP,
    timeout: T.launch,
  });
  try {
    context.setDefaultTimeout(T.ui);
    context.setDefaultNavigationTimeout(T.ui);
    const pageErrors = [];
    const workerLog = [];
    const watchPage = (page) => page.on("pageerror", (err) => pageErrors.push(`${page.url()}: ${err.message}`));
    context.on("page", watchPage);
    context.pages().forEach(watchPage);
    const watchWorker = (w) => w.on("console", (msg) => workerLog.push(`[${msg.type()}] ${msg.text()}`));
    context.on("serviceworker", watchWorker);
    const isOurs = (w) => w.url().startsWith("chrome-extension://");
    const worker =
      context.serviceWorkers().find(isOurs) ??
      (await context.waitForEvent("serviceworker", { predicate: isOurs, timeout: T.launch }));
    context.serviceWorkers().forEach(watchWorker);
    const extensionId = new URL(worker.url()).host;

    const isOnboarding = (p) => new URL(p.url()).pathname === "/onboarding.html";
    const page =
      context.pages().find(isOnboarding) ?? (await context.waitForEvent("page", { predicate: isOnboarding, timeout: T.ui }));
    await page.setViewportSize(PAGE);
    await page.waitForLoadState("load", { timeout: T.ui });
    const onboarding = new ChromiumTab(page);
    await onboarding.waitApp();
    const startMs = await firstState(page, t0);

    return {
      kind: "chromium",
      name: "Chromium",
      context,
      extensionId,
      onboarding,
      startMs,
      pageErrors,
      workerLog,
      url: (file) => `chrome-extension://${extensionId}/${file}`,
      async openPage(file = "popup.html", viewport = POPUP) {
        const p = await context.newPage();
        await p.setViewportSize(viewport);
        await p.goto(this.url(file), { timeout: T.ui });
        const tab = new ChromiumTab(p);
        await tab.waitApp();
        return tab;
      },
      newTab: async () => new ChromiumTab(await context.newPage()),
      /** The next tab a page opens (a `window.open`). */
      nextTab: async () => new ChromiumTab(await context.waitForEvent("page")),
      /** Calls `fn(url)` for each request of any tab; returns the function that stops it. */
      onRequest(fn) {
        const listener = (r) => fn(r.url());
        context.on("request", listener);
        return () => context.off("request", listener);
      },
      /** The payment-header rules in force: declarativeNetRequest's session rules. */
      headerRules: (ext) => ext.evaluate(() => chrome.declarativeNetRequest.getSessionRules()),
      async close() {
        await within(20_000, "Chromium to close", context.close()).catch(() => {});
        await work.dispose().catch(() => {});
      },
    };
  } catch (e) {
    await context.close().catch(() => {});
    throw e;
  }
}

/** A Chromium tab (a playwright Page). */
class ChromiumTab extends Tab {
  loaded = "commit";
  /** Reloads the page: an extension page until its first screen; a site's, its status. */
  async reload() {
    const res = await this.raw.reload({ timeout: T.ui });
    if (this.raw.url().startsWith("chrome-extension://")) await this.waitApp();
    return res?.status() ?? null;
  }
  waitText(text, timeout = T.ui) {
    return this.raw.getByText(text, { exact: true }).waitFor({ timeout });
  }
  async hasText(text) {
    return (await this.raw.getByText(text, { exact: true }).count()) > 0;
  }
  waitFor(fn, arg, timeout = T.ui) {
    return this.raw.waitForFunction(fn, arg, { timeout });
  }
  click(selector) {
    return this.raw.locator(css(selector)).click();
  }
  fill(selector, value) {
    return this.raw.locator(css(selector)).fill(value);
  }
  select(selector, value) {
    return this.raw.locator(css(selector)).selectOption(value);
  }
  check(selector) {
    return this.raw.locator(css(selector)).check();
  }
  attr(selector, name) {
    return this.raw.locator(css(selector)).first().getAttribute(name, { timeout: T.ui });
  }
  async text(selector) {
    return (await this.raw.locator(css(selector)).first().innerText({ timeout: T.ui })).trim();
  }
  value(selector) {
    return this.raw.locator(css(selector)).inputValue();
  }
  texts(selector) {
    return this.raw.locator(css(selector)).allInnerTexts();
  }
  count(selector) {
    return this.raw.locator(css(selector)).count();
  }
  visible(selector) {
    return this.raw.locator(css(selector)).first().isVisible();
  }
  disabled(selector) {
    return this.raw.locator(css(selector)).isDisabled();
  }
  waitVisible(selector, timeout = T.ui) {
    return this.raw.locator(`${css(selector)} >> visible=true`).first().waitFor({ timeout });
  }
  waitAttached(selector, timeout = T.ui) {
    return this.raw.locator(css(selector)).first().waitFor({ state: "attached", timeout });
  }
  /** Waits until the app shows a screen other than "loading". */
  waitApp() {
    return this.raw.waitForFunction(
      () => {
        const s = document.getElementById("app")?.dataset.screen;
        return s && s !== "loading";
      },
      null,
      { timeout: T.ui },
    );
  }
  /** Saves a screenshot as artifacts/`name`.png. */
  async shot(name) {
    await settle();
    await this.raw.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), timeout: T.ui });
  }
}

// ---------------------------------------------------------------------------------------------
// Firefox

async function launchFirefox(work, { idleMs } = {}) {
  assert.ok(existsSync(FIREFOX), `${FIREFOX} is missing: scripts/setup.sh installs firefox-esr`);
  assert.ok(
    existsSync(path.join(FIREFOX_DIR, "manifest.json")),
    `${FIREFOX_DIR} has no manifest.json: run \`bash scripts/build-extension.sh\` first`,
  );
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
    defaultViewport: POPUP,
    extraPrefsFirefox: {
      "extensions.webextensions.uuids": JSON.stringify({ [ADDON_ID]: UUID }),
      ...(idleMs === undefined ? {} : { "extensions.background.idle.timeout": idleMs }),
    },
  });
  try {
    const url = (file) => `moz-extension://${UUID}/${file}`;
    const pageErrors = [];
    const wrap = (page) => {
      page.on("pageerror", (err) => pageErrors.push(`${page.url()}: ${err.message}`));
      return new FirefoxTab(page);
    };
    const id = await within(T.launch, "Firefox to install the add-on", browser.installExtension(FIREFOX_DIR));
    assert.equal(id, ADDON_ID);
    const onboarding = wrap(await tabShowing(browser, url("onboarding.html")));
    await onboarding.raw.setViewport(PAGE);
    await onboarding.waitApp(url("onboarding.html"));
    const startMs = await firstState(onboarding.raw, t0);
    /** Functions called with the URL of each request of any tab (see onRequest). */
    const requestWatchers = new Set();
    const watchRequests = (page) => page.on("request", (r) => requestWatchers.forEach((fn) => fn(r.url())));
    for (const p of await browser.pages()) watchRequests(p);
    browser.on("targetcreated", async (target) => {
      const page = await target.page().catch(() => null);
      if (page) watchRequests(page);
    });

    return {
      kind: "firefox",
      name: "Firefox",
      browser,
      onboarding,
      startMs,
      pageErrors,
      url,
      async openPage(file = "popup.html", viewport = POPUP) {
        const page = await browser.newPage();
        await page.setViewport(viewport);
        // BiDi reports no load events for moz-extension:// pages: the page itself is asked.
        void page.goto(url(file), { timeout: T.ui }).catch(() => {});
        const tab = wrap(page);
        await tab.waitApp(url(file));
        return tab;
      },
      newTab: async () => wrap(await browser.newPage()),
      nextTab: () =>
        within(
          T.ui,
          "a new tab",
          new Promise((resolve) => {
            const created = async (target) => {
              if (target.type() !== "page") return;
              browser.off("targetcreated", created);
              resolve(wrap(await target.page()));
            };
            browser.on("targetcreated", created);
          }),
        ),
      onRequest(fn) {
        requestWatchers.add(fn);
        return () => requestWatchers.delete(fn);
      },
      /** The payment-header rules in force: extension/src/background/browser.ts keeps them in storage.session. */
      headerRules: (ext) => ext.evaluate(async () => (await chrome.storage.session.get("headerRules")).headerRules ?? []),
      async close() {
        await within(20_000, "Firefox to close", browser.close()).catch(() => {});
        await work.dispose().catch(() => {});
      },
    };
  } catch (e) {
    await browser.close().catch(() => {});
    throw e;
  }
}

/** The tab showing `want` (puppeteer may not know a tab's URL yet: the page is asked). */
async function tabShowing(browser, want) {
  const deadline = performance.now() + T.ui;
  while (performance.now() < deadline) {
    for (const page of await browser.pages()) {
      if ((await page.evaluate(() => location.href).catch(() => "")) === want) return page;
    }
    await sleep(100);
  }
  throw new Error(`no tab shows ${want}`);
}

/** A Firefox tab (a puppeteer Page over BiDi). */
class FirefoxTab extends Tab {
  loaded = "domcontentloaded";
  async reload() {
    const href = await this.raw.evaluate(() => location.href);
    if (!href.startsWith("moz-extension://")) {
      return (await this.raw.reload({ waitUntil: "domcontentloaded", timeout: T.ui }))?.status() ?? null;
    }
    // No load events for extension pages (see openPage): the old screen is marked, then replaced.
    await this.raw.evaluate(() => {
      document.getElementById("app").dataset.screen = "loading";
      location.reload();
    });
    await this.waitApp(href);
    return null;
  }
  /** Waits until the page's `h1` (where every test page says what it is) says `text`. */
  waitText(text, timeout = T.ui) {
    return this.raw.waitForFunction(
      (t) => [...document.querySelectorAll("h1")].some((e) => e.textContent === t),
      { timeout },
      text,
    );
  }
  hasText(text) {
    return this.raw.evaluate((t) => [...document.querySelectorAll("h1")].some((e) => e.textContent === t), text);
  }
  waitFor(fn, arg, timeout = T.ui) {
    return this.raw.waitForFunction(fn, { timeout }, arg);
  }
  /** Clicks once the element is visible (again if the screen drew itself anew meanwhile). */
  async click(selector) {
    const deadline = performance.now() + T.ui;
    for (;;) {
      const el = await this.raw.waitForSelector(css(selector), { visible: true, timeout: T.ui });
      try {
        await el.evaluate((e) => e.scrollIntoView({ block: "center" }));
        await el.click();
        return;
      } catch (e) {
        if (!/detached/i.test(e.message) || performance.now() > deadline) throw e;
      }
    }
  }
  /** Types `value` into the field, replacing what it held. */
  async fill(selector, value) {
    const field = await this.raw.waitForSelector(css(selector), { visible: true, timeout: T.ui });
    await field.evaluate((el) => {
      el.scrollIntoView({ block: "center" });
      el.focus();
      el.select();
    });
    await this.raw.keyboard.press("Backspace");
    await this.raw.keyboard.type(value);
  }
  async select(selector, value) {
    await this.raw.waitForSelector(css(selector), { visible: true, timeout: T.ui });
    await this.raw.select(css(selector), value);
  }
  async check(selector) {
    if (!(await this.raw.$eval(css(selector), (e) => e.checked))) await this.click(selector);
  }
  async attr(selector, name) {
    const el = await this.raw.waitForSelector(css(selector), { timeout: T.ui });
    return el.evaluate((e, n) => e.getAttribute(n), name);
  }
  async text(selector) {
    const el = await this.raw.waitForSelector(css(selector), { timeout: T.ui });
    return (await el.evaluate((e) => e.innerText)).trim();
  }
  value(selector) {
    return this.raw.$eval(css(selector), (e) => e.value);
  }
  texts(selector) {
    return this.raw.$$eval(css(selector), (els) => els.map((e) => e.innerText));
  }
  count(selector) {
    return this.raw.$$eval(css(selector), (els) => els.length);
  }
  visible(selector) {
    return this.raw.evaluate((s) => document.querySelector(s)?.checkVisibility() ?? false, css(selector));
  }
  disabled(selector) {
    return this.raw.$eval(css(selector), (e) => e.disabled);
  }
  async waitVisible(selector, timeout = T.ui) {
    await this.raw.waitForFunction(
      (s) => [...document.querySelectorAll(s)].some((e) => e.checkVisibility()),
      { timeout },
      css(selector),
    );
  }
  async waitAttached(selector, timeout = T.ui) {
    await this.raw.waitForSelector(css(selector), { timeout });
  }
  /** Waits until the page at `href` (or any) shows a screen other than "loading". */
  async waitApp(href) {
    const deadline = performance.now() + T.ui;
    while (performance.now() < deadline) {
      const screen = await this.raw
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
  /** Saves a screenshot as artifacts/firefox-`name`.png. */
  async shot(name) {
    await settle();
    await this.raw.screenshot({ path: path.join(ARTIFACTS, `firefox-${name}.png`) });
  }
}

/** Before a screenshot: the artifacts' directory, and spinners and transitions settled. */
async function settle() {
  await mkdir(ARTIFACTS, { recursive: true });
  await sleep(150);
}
