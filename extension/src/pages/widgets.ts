// The widgets every screen builds with: the top bar, the error banner, busy buttons, form
// fields. They know the page only through its `Nav`.

import type { WalletError } from "../shared/messages";
import { h, icon, mark, replace, spinner, type Child } from "./dom";
import { NETWORK_LABEL, humanMessage } from "./format";
import type { Nav } from "./nav";

/** The top bar: a back button or the brand, a title, the network and actions. */
export function header(
  nav: Nav,
  opts: { title?: string; back?: () => void; actions?: Child },
): HTMLElement {
  const network = nav.state?.settings.network;
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
