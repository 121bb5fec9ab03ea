// Send / withdraw: address, amount and fee rate; a preview of the fee; then the transaction id.

import { call, type FeeRates, type SendPreview } from "../../shared/messages";
import type { Nav, Screen } from "../nav";
import { Banner, busy, field, header } from "../widgets";
import { h, icon, replace } from "../dom";
import { formatSat, shortId, toError } from "../format";

type Speed = keyof FeeRates | "custom";

const SPEEDS: Array<{ key: keyof FeeRates; label: string; eta: string }> = [
  { key: "fast", label: "Fast", eta: "~10 min" },
  { key: "normal", label: "Normal", eta: "~1 hour" },
  { key: "slow", label: "Slow", eta: "~4 hours" },
];

export function sendScreen(app: Nav, available: number | null): Screen {
  const banner = new Banner();
  const address = h("input", {
    class: "input input-mono",
    testid: "send-address",
    autocomplete: "off",
    autocapitalize: "off",
    spellcheck: "false",
    placeholder: "bc1q…",
  });
  const amount = h("input", {
    class: "input input-num",
    testid: "send-amount",
    inputmode: "numeric",
    autocomplete: "off",
    placeholder: "0",
  });
  const custom = h("input", {
    class: "input input-num input-sm",
    testid: "fee-custom-rate",
    inputmode: "decimal",
    placeholder: "sat/vB",
    hidden: true,
  });
  let rates: FeeRates | null = null;
  let speed: Speed = "normal";
  const options = h("div", { class: "segmented", role: "radiogroup", testid: "fee-options" });

  const feeRate = (): number | null => {
    if (speed === "custom") {
      const v = Number(custom.value);
      return Number.isFinite(v) && v >= 1 ? v : null;
    }
    return rates ? rates[speed] : null;
  };

  function renderOptions() {
    const choices: Array<{ key: Speed; label: string; sub: string }> = SPEEDS.map((s) => ({
      key: s.key,
      label: s.label,
      sub: rates ? `${trimRate(rates[s.key])} sat/vB` : "…",
    }));
    choices.push({ key: "custom", label: "Custom", sub: "sat/vB" });
    replace(
      options,
      choices.map((c) =>
        h(
          "button",
          {
            type: "button",
            role: "radio",
            class: c.key === speed ? "seg seg-on" : "seg",
            "aria-checked": String(c.key === speed),
            testid: `fee-${c.key}`,
            onclick: () => {
              speed = c.key;
              custom.hidden = speed !== "custom";
              if (speed === "custom") custom.focus();
              renderOptions();
            },
          },
          h("span", { class: "seg-label" }, c.label),
          h("span", { class: "seg-sub" }, c.sub),
        ),
      ),
    );
  }
  renderOptions();

  const review = h("button", { class: "btn btn-primary btn-block", type: "submit", testid: "send-review" }, "Review");
  const body = h("div", { class: "content stack" });

  const form = h(
    "form",
    {
      class: "stack",
      novalidate: true,
      onsubmit: (ev: Event) => {
        ev.preventDefault();
        banner.hide();
        const to = address.value.trim();
        const sat = Number(amount.value.replace(/[,\s_]/g, ""));
        const rate = feeRate();
        if (!to) return fail(address, "Enter the address to send to.");
        if (!Number.isSafeInteger(sat) || sat <= 0) return fail(amount, "Enter an amount in whole sat.");
        if (rate === null) return fail(custom, "Choose a fee rate of at least 1 sat/vB.");
        void busy(review, "Checking…", async () => {
          try {
            const preview = await call("previewSend", { address: to, amountSat: sat, feeRate: rate });
            showReview(to, sat, preview);
          } catch (e) {
            if (await app.recheck()) return;
            banner.show(toError(e));
          }
        });
      },
    },
    field("Send to", address),
    field(
      "Amount (sat)",
      amount,
      available !== null
        ? h("span", null, "Available: ", h("span", { class: "num", testid: "send-available" }, formatSat(available)), " sat")
        : null,
    ),
    h("div", { class: "field" }, h("span", { class: "label" }, "Network fee"), options, custom),
    review,
  );

  function fail(input: HTMLElement, message: string) {
    input.classList.add("invalid");
    input.focus();
    banner.show(message);
  }
  for (const input of [address, amount, custom]) {
    input.addEventListener("input", () => input.classList.remove("invalid"));
  }

  function showForm() {
    replace(body, banner.el, form);
  }

  function showReview(to: string, sat: number, p: SendPreview) {
    banner.hide();
    const confirm = h("button", { class: "btn btn-primary btn-block", testid: "send-confirm" }, "Send now");
    confirm.addEventListener("click", () => {
      void busy(confirm, "Sending…", async () => {
        try {
          const { txid } = await call("send", { address: to, amountSat: sat, feeRate: p.feeRate });
          showSent(txid, sat);
        } catch (e) {
          if (await app.recheck()) return;
          banner.show(toError(e));
        }
      });
    });
    replace(
      body,
      banner.el,
      h(
        "div",
        { class: "card review", testid: "send-preview" },
        row("To", h("code", { class: "address address-sm" }, to)),
        row("Amount", h("span", { class: "num" }, `${formatSat(sat)} sat`)),
        row(
          "Network fee",
          h(
            "span",
            { class: "num", testid: "send-fee", "data-sat": p.feeSat },
            `${formatSat(p.feeSat)} sat`,
            h("span", { class: "muted small block" }, `${trimRate(p.feeRate)} sat/vB · ${formatSat(p.vsize)} vB`),
          ),
        ),
        h("div", { class: "divider" }),
        row(
          h("strong", null, "Total"),
          h("strong", { class: "num", testid: "send-total", "data-sat": p.totalSat }, `${formatSat(p.totalSat)} sat`),
        ),
      ),
      confirm,
      h("button", { class: "btn btn-ghost btn-block", testid: "send-edit", onclick: showForm }, "Edit"),
    );
  }

  function showSent(txid: string, sat: number) {
    const copyLabel = h("span", null, "Copy transaction id");
    replace(
      body,
      h(
        "div",
        { class: "center stack sent", testid: "send-done" },
        h("div", { class: "empty-icon success" }, icon("check", 28)),
        h("h2", { class: "title" }, `${formatSat(sat)} sat sent`),
        h("p", { class: "muted small" }, "It shows as pending until it is mined."),
        h(
          "div",
          { class: "card address-card txid-card" },
          h("div", { class: "label" }, "Transaction ID"),
          h("code", { class: "txid", testid: "send-txid", title: txid }, txid),
        ),
        h(
          "button",
          {
            class: "btn btn-secondary btn-block",
            onclick: async () => {
              try {
                await navigator.clipboard.writeText(txid);
                replace(copyLabel, "Copied");
              } catch {
                replace(copyLabel, shortId(txid));
              }
            },
          },
          icon("copy", 18),
          copyLabel,
        ),
        h(
          "button",
          { class: "btn btn-primary btn-block", testid: "send-finish", onclick: () => app.route(app.state!) },
          "Done",
        ),
      ),
    );
  }

  showForm();
  const el = h(
    "div",
    { class: "screen", testid: "screen-send" },
    header(app, { title: "Send", back: () => app.route(app.state!, { sync: false }) }),
    body,
  );

  return {
    name: "send",
    el,
    mounted: () => {
      address.focus();
      call("feeRates", {})
        .then((r) => {
          rates = r;
          renderOptions();
        })
        .catch((e) => {
          // Without estimates the user can still type a rate.
          speed = "custom";
          custom.hidden = false;
          custom.value = "1";
          renderOptions();
          banner.show(`Fee estimates unavailable (${toError(e).message}); enter a rate.`);
        });
    },
  };
}

function row(label: string | Node, value: Node): HTMLElement {
  return h("div", { class: "review-row" }, h("span", { class: "muted" }, label), value);
}

function trimRate(rate: number): string {
  return Number.isInteger(rate) ? String(rate) : rate.toFixed(1);
}
