// First run: create a wallet (phrase shown once, three words confirmed, password) or restore one.

import { call } from "../../shared/messages";
import type { Nav, Screen } from "../nav";
import { Banner, busy, field, header, passwordInput, phraseGrid } from "../widgets";
import { h, icon, mark } from "../dom";
import { NETWORK_LABEL, toError } from "../format";

/** As the wallet checks (`vault::check_password`), which also refuses a short pattern repeated. */
export const MIN_PASSWORD = 12;

export function welcomeScreen(app: Nav): Screen {
  const network = app.state?.settings.network ?? "signet";
  const el = h(
    "div",
    { class: "screen welcome", testid: "screen-welcome" },
    h(
      "div",
      { class: "welcome-hero" },
      h("div", { class: "hero-mark" }, mark(56)),
      h("h1", { class: "display" }, "Trickle"),
      h("p", { class: "lead" }, "Pay websites a few sats at a time, from a Bitcoin wallet in your browser."),
    ),
    h(
      "div",
      { class: "stack" },
      h(
        "button",
        { class: "btn btn-primary btn-block", testid: "create-wallet", onclick: () => void createPhrase(app) },
        "Create a new wallet",
      ),
      h(
        "button",
        {
          class: "btn btn-secondary btn-block",
          testid: "restore-wallet",
          onclick: () => app.show(restoreScreen(app, { back: () => app.show(welcomeScreen(app)) })),
        },
        "I have a recovery phrase",
      ),
    ),
    h(
      "p",
      { class: "welcome-network muted" },
      "Network: ",
      h("strong", { testid: "welcome-network-name" }, NETWORK_LABEL[network]),
      " · ",
      h(
        "button",
        {
          class: "link",
          testid: "welcome-settings",
          onclick: () => app.go("settings", { back: () => app.go("welcome", {}) }),
        },
        "Change network",
      ),
    ),
  );
  return { name: "welcome", el };
}

function steps(n: number): HTMLElement {
  return h(
    "div",
    { class: "steps", "aria-label": `Step ${n} of 3` },
    [1, 2, 3].map((i) => h("span", { class: i <= n ? "step step-on" : "step" })),
    h("span", { class: "steps-text" }, `Step ${n} of 3`),
  );
}

async function createPhrase(app: Nav): Promise<void> {
  try {
    const { phrase } = await call("newPhrase", {});
    app.show(phraseScreen(app, phrase.trim().split(/\s+/)));
  } catch (e) {
    const screen = welcomeScreen(app);
    const banner = new Banner();
    banner.show(toError(e));
    screen.el.prepend(banner.el);
    app.show(screen);
  }
}

function phraseScreen(app: Nav, words: string[]): Screen {
  const saved = h("input", { type: "checkbox", testid: "phrase-saved" });
  const next = h(
    "button",
    {
      class: "btn btn-primary btn-block",
      testid: "phrase-continue",
      disabled: true,
      onclick: () => app.show(confirmScreen(app, words)),
    },
    "Continue",
  );
  saved.addEventListener("change", () => (next.disabled = !saved.checked));
  const el = h(
    "div",
    { class: "screen", testid: "screen-phrase" },
    header(app, { title: "Recovery phrase", back: () => app.show(welcomeScreen(app)) }),
    h(
      "div",
      { class: "content stack" },
      steps(1),
      h(
        "p",
        { class: "muted" },
        "These 12 words are your wallet. Write them down, in order, and keep them somewhere safe. ",
        h("strong", null, "They are shown only this once."),
      ),
      phraseGrid(words),
      h(
        "div",
        { class: "callout" },
        icon("alert", 18),
        h("span", null, "Anyone with these words can spend your bitcoin. Never type them into a website."),
      ),
      h("label", { class: "check" }, saved, h("span", null, "I have written down all 12 words, in order")),
      next,
    ),
  );
  return { name: "phrase", el };
}

/** Three distinct positions, in increasing order. */
function pickPositions(count: number, n = 3): number[] {
  const picked = new Set<number>();
  const rand = new Uint32Array(1);
  while (picked.size < Math.min(n, count)) {
    crypto.getRandomValues(rand);
    picked.add(rand[0]! % count);
  }
  return [...picked].sort((a, b) => a - b);
}

function confirmScreen(app: Nav, words: string[]): Screen {
  const positions = pickPositions(words.length);
  const banner = new Banner();
  const inputs = positions.map((p) =>
    h("input", {
      type: "text",
      class: "input input-mono",
      testid: "confirm-word",
      "data-word-index": p + 1,
      autocomplete: "off",
      autocapitalize: "off",
      spellcheck: "false",
    }),
  );
  const form = h(
    "form",
    {
      class: "content stack",
      novalidate: true,
      onsubmit: (ev: Event) => {
        ev.preventDefault();
        banner.hide();
        for (const [i, input] of inputs.entries()) {
          const pos = positions[i]!;
          if (input.value.trim().toLowerCase() !== words[pos]) {
            input.classList.add("invalid");
            input.focus();
            banner.show(`Word #${pos + 1} does not match. Check your written copy.`);
            return;
          }
          input.classList.remove("invalid");
        }
        app.show(passwordScreen(app, words));
      },
    },
    steps(2),
    h("p", { class: "muted" }, "Type these words from your recovery phrase to show you have it."),
    banner.el,
    inputs.map((input, i) => field(`Word #${positions[i]! + 1}`, input)),
    h("button", { class: "btn btn-primary btn-block", type: "submit", testid: "confirm-continue" }, "Continue"),
  );
  const el = h(
    "div",
    { class: "screen", testid: "screen-confirm" },
    header(app, { title: "Confirm phrase", back: () => app.show(phraseScreen(app, words)) }),
    form,
  );
  return { name: "confirm", el, mounted: () => inputs[0]?.focus() };
}

/** Password and repeat, min length, match; returns the password or shows why not. */
function passwordFields(): {
  nodes: HTMLElement[];
  check: (banner: Banner) => string | null;
  first: HTMLInputElement;
} {
  const pw = passwordInput("password", { autocomplete: "new-password" });
  const again = passwordInput("password-confirm", { autocomplete: "new-password" });
  for (const input of [pw.input, again.input]) {
    input.addEventListener("input", () => input.classList.remove("invalid"));
  }
  const check = (banner: Banner): string | null => {
    pw.input.classList.remove("invalid");
    again.input.classList.remove("invalid");
    if (pw.input.value.length < MIN_PASSWORD) {
      pw.input.classList.add("invalid");
      banner.show(`The password needs at least ${MIN_PASSWORD} characters.`);
      pw.input.focus();
      return null;
    }
    if (pw.input.value !== again.input.value) {
      again.input.classList.add("invalid");
      banner.show("The two passwords are not the same.");
      again.input.focus();
      return null;
    }
    return pw.input.value;
  };
  return {
    nodes: [
      field("Password", pw.wrap, `At least ${MIN_PASSWORD} characters. It unlocks Trickle on this device.`),
      field("Repeat password", again.wrap),
    ],
    check,
    first: pw.input,
  };
}

function passwordScreen(app: Nav, words: string[]): Screen {
  const banner = new Banner();
  const pw = passwordFields();
  const submit = h(
    "button",
    { class: "btn btn-primary btn-block", type: "submit", testid: "password-submit" },
    "Create wallet",
  );
  const form = h(
    "form",
    {
      class: "content stack",
      novalidate: true,
      onsubmit: (ev: Event) => {
        ev.preventDefault();
        banner.hide();
        const password = pw.check(banner);
        if (password === null) return;
        void busy(submit, "Creating wallet…", async () => {
          try {
            const state = await call("restore", { phrase: words.join(" "), password });
            words.fill("");
            finish(app, state);
          } catch (e) {
            banner.show(toError(e));
          }
        });
      },
    },
    steps(3),
    h(
      "p",
      { class: "muted" },
      "Choose a password. If you forget it, your recovery phrase restores the wallet.",
    ),
    banner.el,
    pw.nodes,
    submit,
  );
  const el = h(
    "div",
    { class: "screen", testid: "screen-password" },
    header(app, { title: "Set password", back: () => app.show(confirmScreen(app, words)) }),
    form,
  );
  return { name: "password", el, mounted: () => pw.first.focus() };
}

export function restoreScreen(app: Nav, opts: { back: () => void; replacing?: boolean }): Screen {
  const banner = new Banner();
  const phrase = h("textarea", {
    class: "input input-mono phrase-input",
    testid: "restore-phrase",
    rows: 4,
    autocomplete: "off",
    autocapitalize: "off",
    spellcheck: "false",
    placeholder: "word1 word2 word3 …",
  });
  const count = h("span", { testid: "restore-count" }, "0 words");
  const normalized = () => phrase.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
  phrase.addEventListener("input", () => {
    phrase.classList.remove("invalid");
    const n = normalized().length;
    count.textContent = `${n} word${n === 1 ? "" : "s"}`;
  });
  const pw = passwordFields();
  const submit = h(
    "button",
    { class: "btn btn-primary btn-block", type: "submit", testid: "restore-submit" },
    "Restore wallet",
  );
  const form = h(
    "form",
    {
      class: "content stack",
      novalidate: true,
      onsubmit: (ev: Event) => {
        ev.preventDefault();
        banner.hide();
        const words = normalized();
        if (![12, 15, 18, 21, 24].includes(words.length)) {
          phrase.classList.add("invalid");
          banner.show(`A recovery phrase has 12 or 24 words; this one has ${words.length}.`);
          return;
        }
        phrase.classList.remove("invalid");
        const password = pw.check(banner);
        if (password === null) return;
        void busy(submit, "Restoring…", async () => {
          try {
            const state = await call("restore", {
              phrase: words.join(" "),
              password,
              ...(opts.replacing ? { replace: true } : {}),
            });
            phrase.value = "";
            finish(app, state);
          } catch (e) {
            banner.show(toError(e));
          }
        });
      },
    },
    opts.replacing
      ? h(
          "div",
          { class: "callout" },
          icon("alert", 18),
          h("span", null, "Restoring replaces the wallet on this device with the one from your phrase."),
        )
      : h("p", { class: "muted" }, "Enter your recovery phrase, with a space between words."),
    banner.el,
    field("Recovery phrase", phrase, count),
    pw.nodes,
    submit,
  );
  const el = h(
    "div",
    { class: "screen", testid: "screen-restore" },
    header(app, { title: "Restore wallet", back: opts.back }),
    form,
  );
  return { name: "restore", el, mounted: () => phrase.focus() };
}

/** After create or restore: the page says where the wallet lives; the popup goes home. */
function finish(app: Nav, state: import("../../shared/messages").State): void {
  app.state = state;
  if (app.mode === "popup") {
    app.route(state);
    return;
  }
  const el = h(
    "div",
    { class: "screen center stack", testid: "screen-done" },
    h("div", { class: "empty-icon success" }, icon("check", 28)),
    h("h1", { class: "title" }, "Your wallet is ready"),
    h(
      "p",
      { class: "muted" },
      "Open Trickle from the browser's toolbar (pin it from the puzzle-piece menu) to fund it and see your balance.",
    ),
    h(
      "button",
      { class: "btn btn-primary", testid: "open-wallet", onclick: () => app.route(state) },
      "Open wallet",
    ),
  );
  app.show({ name: "done", el });
}
