// A payment waiting for the user: the site, the price, why Trickle asks, the site's budget and
// what approving costs on-chain; then approve, deny, or never pay this site.

import { call, type Approval, type Ask, type AskReason, type Period, type TermsView } from "../../shared/messages";
import type { Nav, Screen } from "../nav";
import { Banner, busy, field, header } from "../widgets";
import { h, icon, replace } from "../dom";
import { PERIOD_LABEL, formatSat, humanMessage, shortfallMessage, toError } from "../format";

type Decision = "approve" | "deny" | "never";

const PERIODS: Period[] = ["day", "week", "month"];

/** 21 million BTC: the most a budget may hold, as the wallet checks. */
const MAX_MONEY_SAT = 2_100_000_000_000_000;

export function approveScreen(app: Nav, approval: Approval): Screen {
  const banner = new Banner();
  const foot = h("div", { class: "screen-foot" });
  let deciding = false;

  /** Sends the decision, then shows the next payment waiting, or home. */
  async function decide(button: HTMLButtonElement, label: string, decision: Decision, terms?: TermsView) {
    if (deciding) return;
    deciding = true;
    banner.hide();
    await busy(button, label, async () => {
      const { id } = approval;
      try {
        await call("decide", terms ? { id, decision, terms } : { id, decision });
      } catch (e) {
        const err = toError(e);
        // `no_approval`: decided meanwhile (in another window); go on to what waits next.
        if (err.code !== "no_approval") {
          if (await app.recheck()) return;
          // The worker drops a request as it decides it, even when deciding fails.
          banner.show(err);
          replace(foot, banner.el, continueButton());
          return;
        }
      }
      app.route(app.state!);
    });
    deciding = false;
  }

  function continueButton(): HTMLButtonElement {
    return h(
      "button",
      { class: "btn btn-primary btn-block", testid: "approve-continue", onclick: () => app.route(app.state!) },
      "Continue",
    );
  }

  const deny = h("button", { class: "btn btn-secondary", testid: "approve-deny" }, "Deny");
  deny.addEventListener("click", () => void decide(deny, "Denying…", "deny"));

  let body: HTMLElement;
  if (approval.ask) {
    const ask = approval.ask;
    const form = budgetForm(ask, banner);
    const approve = h("button", { class: "btn btn-primary btn-block", testid: "approve-submit" }, "Approve");
    const submit = () => {
      banner.hide();
      const terms = form.read(ask.price);
      if (terms) void decide(approve, "Approving…", "approve", terms);
    };
    approve.addEventListener("click", submit);
    form.el.addEventListener("submit", (ev: Event) => {
      ev.preventDefault();
      submit();
    });
    const never = h(
      "button",
      { class: "btn btn-ghost btn-ghost-danger", testid: "approve-never" },
      "Never for this site",
    );
    never.addEventListener("click", () => {
      banner.hide();
      const terms = form.read(null);
      if (terms) void decide(never, "Saving…", "never", terms);
    });
    body = h("div", { class: "content stack" }, askCard(ask, approval), form.el, costSection(ask));
    replace(foot, banner.el, approve, h("div", { class: "foot-row" }, deny, never));
  } else {
    const embedder = approval.embedder;
    const retry = h("button", { class: "btn btn-primary", testid: "approve-retry" }, embedder ? "Pay" : "Try again");
    retry.addEventListener("click", () => void decide(retry, "Checking…", "approve"));
    body = h(
      "div",
      { class: "content stack" },
      h(
        "section",
        { class: "card stack center-text" },
        h("div", { class: "empty-icon ask-locked" }, icon(embedder ? "alert" : "lock", 24)),
        h("h2", { class: "title" }, embedder ? startedTitle(approval) : "A site asked to be paid"),
        embedder
          ? embedderLine(embedder, approval)
          : h(
              "p",
              { class: "muted" },
              "The wallet was locked then. Try again to see the price; a site with a budget is paid within it.",
            ),
        h("p", { class: "ask-url", testid: "approve-url" }, approval.url),
      ),
    );
    replace(foot, banner.el, h("div", { class: "foot-row" }, retry, deny));
  }

  const el = h(
    "div",
    { class: "screen", testid: "screen-approve", "data-id": approval.id },
    header(app, { title: "Payment request", back: () => app.go("home", { sync: false }) }),
    body,
    foot,
  );
  return { name: "approve", el };
}

function startedTitle(approval: Approval): string {
  return approval.type === "main_frame" ? "Another site opened a paid page" : "A site inside another asked to be paid";
}

/**
 * The other site behind a request: the one that embeds a frame (the site the user is looking
 * at), or that opened or navigated a window to a paid page, more often than a person clicks.
 */
function embedderLine(embedder: string, approval: Approval): HTMLElement {
  const site = new URL(approval.url).origin;
  const where =
    approval.type === "main_frame"
      ? `Opened by ${embedder}, which has opened ${site}'s paid pages several times in the last minute.`
      : `Shown inside ${embedder}, not on ${site} itself.`;
  return h(
    "p",
    { class: "callout", testid: "approve-embedder", "data-embedder": embedder },
    icon("alert", 16),
    h("span", null, `${where} Pay only if you trust ${embedder} to ask for it; it is paid within the site's budget.`),
  );
}

/** The site, the page and its price, and why Trickle asks (and who embeds it). */
function askCard(ask: Ask, approval: Approval): HTMLElement {
  const embedder = approval.embedder;
  return h(
    "section",
    { class: "card stack ask-card" },
    h(
      "div",
      { class: "ask-site" },
      h("span", { class: "ask-site-icon" }, icon("globe", 18)),
      h("span", { class: "ask-origin", testid: "approve-origin" }, ask.origin),
    ),
    h("p", { class: "ask-url", testid: "approve-url" }, ask.url),
    embedder ? embedderLine(embedder, approval) : null,
    ask.description ? h("p", { class: "ask-description", testid: "approve-description" }, ask.description) : null,
    h(
      "div",
      { class: "ask-price-row" },
      h("span", { class: "label" }, "Price"),
      h(
        "span",
        { class: "ask-price", testid: "approve-price", "data-sat": ask.price },
        formatSat(ask.price),
        h("span", { class: "unit-sm" }, " sat"),
      ),
    ),
    h(
      "div",
      { class: "ask-reason", testid: "approve-reason", "data-kind": ask.reason.kind },
      icon("alert", 16),
      h("span", null, reasonText(ask.reason)),
    ),
  );
}

function reasonText(reason: AskReason): string {
  switch (reason.kind) {
    case "noBudget":
      return "This site has no budget yet.";
    case "confirm":
      return "Confirm this payment (above your auto-approve limit).";
    case "lockAboveLimit":
      return (
        `Opening a channel with this site locks ${formatSat(reason.lock)} sat, more than its ` +
        `budget's limit of ${formatSat(reason.limit)} sat. The sat stay yours: what is not paid ` +
        `comes back when the channel closes, or by refund at its expiry.`
      );
    case "budgetExhausted":
      return (
        `This site's budget is used up: ${formatSat(reason.remaining)} sat left, ` +
        `${formatSat(reason.needed)} needed.`
      );
  }
}

/** The budget the user grants the site, prefilled with what the wallet suggests. */
function budgetForm(ask: Ask, banner: Banner): { el: HTMLFormElement; read(price: number | null): TermsView | null } {
  const s = ask.suggested;
  const limit = satInput("approve-limit", s.limitSat);
  const period = h(
    "select",
    { class: "input", testid: "approve-period" },
    PERIODS.map((p) => h("option", { value: p, selected: p === s.period }, PERIOD_LABEL[p])),
  );
  const maxPrice = satInput("approve-max-price", s.maxPriceSat);
  const auto = satInput("approve-auto", s.autoApproveSat);
  auto.placeholder = "Always ask";
  const inputs = [limit, maxPrice, auto];
  for (const input of inputs) input.addEventListener("input", () => input.classList.remove("invalid"));

  const fail = (input: HTMLInputElement, message: string): null => {
    input.classList.add("invalid");
    input.focus();
    banner.show(message);
    return null;
  };

  /** The terms as typed, checked as the wallet checks them; `price`: also cover this price. */
  function read(price: number | null): TermsView | null {
    for (const input of inputs) input.classList.remove("invalid");
    const limitSat = wholeSat(limit);
    if (limitSat === null) return fail(limit, "Enter the limit in whole sat.");
    if (limitSat === 0) return fail(limit, "The limit must be above zero.");
    if (limitSat > MAX_MONEY_SAT) return fail(limit, "The limit is above 21 million BTC.");
    const maxPriceSat = wholeSat(maxPrice);
    if (maxPriceSat === null) return fail(maxPrice, "Enter the max price per request in whole sat.");
    if (maxPriceSat === 0) return fail(maxPrice, "The max price per request must be above zero.");
    if (maxPriceSat > limitSat) return fail(maxPrice, "The max price per request must be at most the limit.");
    if (price !== null && price > maxPriceSat) {
      return fail(maxPrice, `This request costs ${formatSat(price)} sat, more than the max price per request.`);
    }
    let autoApproveSat: number | null = null;
    if (auto.value.trim()) {
      autoApproveSat = wholeSat(auto);
      if (autoApproveSat === null) {
        return fail(auto, "Enter the auto-approve threshold in whole sat, or leave it empty to always be asked.");
      }
      if (autoApproveSat > maxPriceSat) {
        return fail(auto, "The auto-approve threshold must be at most the max price.");
      }
    }
    return { limitSat, period: period.value as Period, maxPriceSat, autoApproveSat };
  }

  const current = ask.current;
  const el = h(
    "form",
    { class: "card stack", novalidate: true },
    h("h2", { class: "section-title" }, "Budget for this site"),
    current
      ? h(
          "p",
          { class: "muted small", testid: "approve-current" },
          `Now: ${formatSat(current.limitSat)} sat a ${current.period}, ` +
            `up to ${formatSat(current.maxPriceSat)} sat a request.`,
        )
      : null,
    h("div", { class: "field-row" }, field("Limit (sat)", limit), field("Per", period)),
    h(
      "div",
      { class: "field-row" },
      field("Max price (sat)", maxPrice),
      field("Auto-approve (sat)", auto),
    ),
    h(
      "p",
      { class: "hint" },
      "Max price: the most one request may cost. Requests priced at or below the auto-approve " +
        "amount are paid without asking; leave it empty to always be asked.",
    ),
  );
  return { el, read };
}

function satInput(testid: string, value: number | null): HTMLInputElement {
  return h("input", {
    class: "input input-num",
    testid,
    type: "number",
    min: 0,
    step: 1,
    inputmode: "numeric",
    autocomplete: "off",
    value: value ?? "",
  });
}

/** A field's whole, non-negative number of sat, or null. */
function wholeSat(input: HTMLInputElement): number | null {
  const text = input.value.trim();
  const n = Number(text);
  return text && Number.isSafeInteger(n) && n >= 0 ? n : null;
}

/** What approving means on-chain: a new channel and its fee, or the channel already open. */
function costSection(ask: Ask): HTMLElement {
  if (ask.hasChannel) {
    return h(
      "p",
      { class: "ask-line muted", testid: "approve-has-channel" },
      icon("check", 16),
      "Paid through the channel already open with this site.",
    );
  }
  let fee: HTMLElement | null = null;
  if (ask.cannotFund !== null) {
    fee = h(
      "div",
      { class: "callout", testid: "approve-cannot-fund" },
      icon("alert", 18),
      h(
        "span",
        null,
        "The wallet cannot open the channel now. ",
        ask.shortfall
          ? shortfallMessage(ask.shortfall)
          : humanMessage({ code: "cannot_fund", message: ask.cannotFund, detail: null }),
      ),
    );
  } else if (ask.openFee !== null) {
    fee = h(
      "p",
      { class: "ask-line", testid: "approve-fee", "data-sat": ask.openFee },
      icon("clock", 16),
      `On-chain fee about ${formatSat(ask.openFee)} sat to open; closing is paid by the site.`,
    );
  }
  return h(
    "section",
    { class: "card stack" },
    h("h2", { class: "section-title" }, "Approving"),
    h(
      "p",
      { class: "ask-line", testid: "approve-channel", "data-sat": ask.channelValue },
      icon("lock", 16),
      `Opens a payment channel locking ${formatSat(ask.channelValue)} sat.`,
    ),
    fee,
  );
}
