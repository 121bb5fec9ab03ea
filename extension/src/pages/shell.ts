// The page's shell: which screen shows, the shared header, the error banner and busy buttons.

import { call, type Approval, type State, type WalletError } from "../messages";
import { approveScreen } from "./approve";
import { h, icon, mark, replace, spinner, type Child } from "./dom";
import { NETWORK_LABEL, errorContext, humanMessage, toError } from "./format";
import { homeScreen } from "./home";
import { welcomeScreen } from "./onboarding";
import { unlockScreen } from "./unlock";

export type Mode = "popup" | "page";

/** A screen owns one element and may hold timers it stops on `dispose`. */
export interface Screen {
  name: string;
  el: HTMLElement;
  /** Runs once the element is in the document (focus, first load). */
  mounted?(): void;
  dispose?(): void;
}

export class App {
  state: State | null = null;
  private screen: Screen | null = null;
  /** Counts screens shown, so that a slow look-up does not replace a newer screen. */
  private shown = 0;

  constructor(
    readonly root: HTMLElement,
    readonly mode: Mode,
  ) {}

  /** Asks the worker where the wallet stands and shows the matching screen. */
  async start(): Promise<void> {
    this.show(loadingScreen());
    try {
      this.route(await stateWithRetry());
    } catch (e) {
      this.show(fatalScreen(this, toError(e)));
    }
  }

  show(screen: Screen): void {
    this.screen?.dispose?.();
    this.screen = screen;
    this.shown++;
    this.root.dataset.screen = screen.name;
    replace(this.root, screen.el);
    this.root.scrollTop = 0;
    screen.mounted?.();
  }

  /** The screen for a wallet state: welcome, unlock, a payment waiting for the user, or home. */
  route(state: State, opts: { sync?: boolean } = {}): void {
    this.state = state;
    errorContext.esploraUrl = state.settings.esploraUrl;
    if (state.wallet === "none") {
      this.show(welcomeScreen(this));
    } else if (state.wallet === "locked") {
      this.show(unlockScreen(this));
    } else {
      void this.showUnlocked(opts.sync ?? true);
    }
  }

  /** The first payment waiting for the user, else home (also when the worker cannot say). */
  private async showUnlocked(sync: boolean): Promise<void> {
    const before = this.shown;
    let waiting: Approval[] = [];
    try {
      waiting = await call("approvals", {});
    } catch {
      // Home, then; it shows the worker's errors itself.
    }
    if (this.shown !== before) return;
    const first = waiting[0];
    this.show(first ? approveScreen(this, first) : homeScreen(this, { sync }));
  }

  /** After an error that may mean "the wallet locked itself meanwhile": re-route if so. */
  async recheck(): Promise<boolean> {
    try {
      const state = await call("state", {});
      if (state.wallet !== "unlocked") {
        this.route(state);
        return true;
      }
      this.state = state;
    } catch {
      // The worker is gone; the caller shows its own error.
    }
    return false;
  }
}

async function stateWithRetry(): Promise<State> {
  // A message wakes a stopped worker; while it starts, a send may find no listener yet.
  let last: unknown;
  for (let i = 0; i < 20; i++) {
    try {
      return await call("state", {});
    } catch (e) {
      last = e;
      if (toError(e).code !== "no_worker" && !String(toError(e).message).includes("Receiving end"))
        throw e;
      await new Promise((r) => setTimeout(r, 150));
    }
  }
  throw last;
}

function loadingScreen(): Screen {
  return {
    name: "loading",
    el: h("div", { class: "screen center", testid: "screen-loading" }, spinner()),
  };
}

function fatalScreen(app: App, err: WalletError): Screen {
  return {
    name: "fatal",
    el: h(
      "div",
      { class: "screen center stack" },
      h("div", { class: "empty-icon danger" }, icon("alert", 28)),
      h("h1", { class: "title" }, "Trickle could not start"),
      h("p", { class: "muted", testid: "error-banner" }, humanMessage(err)),
      h("button", { class: "btn btn-primary", onclick: () => void app.start() }, "Try again"),
    ),
  };
}

/** The top bar: a back button or the brand, a title, the network and actions. */
export function header(
  app: App,
  opts: { title?: string; back?: () => void; actions?: Child },
): HTMLElement {
  const network = app.state?.settings.network;
  return h(
    "header",
    { class: "topbar" },
    opts.back
      ? h(
          "button",
          { class: "icon-btn", testid: "back", "aria-label": "Back", title: "Back", onclick: opts.back },
          icon("back"),
        )
      : h("span", { class: "brand" }, mark(24), h("span", { class: "brand-name" }, "Trickle")),
    opts.title ? h("h1", { class: "topbar-title" }, opts.title) : h("span", { class: "spacer" }),
    network
      ? h(
          "span",
          { class: `pill pill-${network}`, testid: "network-badge", title: "Network" },
          NETWORK_LABEL[network],
        )
      : null,
    opts.actions ?? null,
  );
}

/** An error banner that stays hidden until `show`. */
export class Banner {
  readonly el: HTMLElement;
  private readonly text: HTMLElement;

  constructor(testid = "error-banner") {
    this.text = h("span", { class: "banner-text" });
    this.el = h(
      "div",
      { class: "banner banner-error", role: "alert", testid, hidden: true },
      icon("alert", 18),
      this.text,
    );
  }

  show(err: WalletError | string): void {
    const e = typeof err === "string" ? { code: "invalid_input", message: err, detail: null } : err;
    this.text.textContent = humanMessage(e);
    this.el.title = e.message;
    this.el.dataset.code = e.code;
    this.el.hidden = false;
  }

  hide(): void {
    this.el.hidden = true;
    delete this.el.dataset.code;
  }
}

/** Runs `task` with the button disabled and a spinner in it; re-enables it afterwards. */
export async function busy<T>(button: HTMLButtonElement, label: string, task: () => Promise<T>): Promise<T> {
  const before = Array.from(button.childNodes);
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  replace(button, spinner(), label);
  try {
    return await task();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
    replace(button, before);
  }
}

/** A labelled form field. */
export function field(label: string, control: HTMLElement, hint?: Child): HTMLElement {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  return h(
    "div",
    { class: "field" },
    h("label", { class: "label", for: id }, label),
    control,
    hint ? h("div", { class: "hint" }, hint) : null,
  );
}

/** A password input with a show/hide toggle. */
export function passwordInput(testid: string, opts: { autocomplete: string; placeholder?: string }): {
  wrap: HTMLElement;
  input: HTMLInputElement;
} {
  const input = h("input", {
    type: "password",
    class: "input",
    testid,
    autocomplete: opts.autocomplete,
    placeholder: opts.placeholder ?? "",
    spellcheck: "false",
  });
  const toggle = h(
    "button",
    {
      type: "button",
      class: "input-action",
      "aria-label": "Show password",
      title: "Show password",
      onclick: () => {
        const show = input.type === "password";
        input.type = show ? "text" : "password";
        toggle.setAttribute("aria-pressed", String(show));
      },
    },
    icon("eye", 18),
  );
  return { wrap: h("div", { class: "input-wrap" }, input, toggle), input };
}

/** The 12 (or 24) words in numbered cells. */
export function phraseGrid(words: string[], testid = "phrase-words"): HTMLElement {
  return h(
    "ol",
    { class: "phrase-grid", testid },
    words.map((w, i) =>
      h(
        "li",
        { class: "phrase-cell" },
        h("span", { class: "phrase-index" }, String(i + 1)),
        h("span", { class: "phrase-word", testid: `phrase-word-${i + 1}` }, w),
      ),
    ),
  );
}
