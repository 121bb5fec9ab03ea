// Sites: payments that did not happen, each site's budget and spending, the payment channels, and
// the payment history with its export.

import { call, type ChannelView, type Notice, type Payment, type SiteView, type Sites } from "../../shared/messages";
import type { Nav, Screen } from "../nav";
import { Banner, busy, header } from "../widgets";
import { h, icon, replace, spinner, svg } from "../dom";
import { PERIOD_NOW, ago, formatDay, formatSat, formatTime, humanMessage, toError } from "../format";

/** How often the open screen re-reads sites and notices. */
const REFRESH_MS = 5000;
/** Payments listed on screen; the export has them all. */
const HISTORY_SHOWN = 50;
/** Days in a site's spending chart, today included. */
const CHART_DAYS = 7;

const CSV_COLUMNS = ["time", "origin", "url", "consumed_sat", "paid_sat", "credit_sat", "committed_sat"];

export function sitesScreen(app: Nav): Screen {
  const banner = new Banner();
  const body = h("div", { class: "stack" }, h("div", { class: "center sites-loading" }, spinner()));

  let sites: Sites | null = null;
  let notices: Notice[] = [];
  /** What the screen shows now, to leave the page alone (focus, selection) when nothing changed. */
  let shown = "";
  let loadFailed = false;
  /** Actions under way: a refresh meanwhile would replace their buttons. */
  let acting = 0;
  /** The channel (site) whose close waits for confirmation. */
  let confirming: string | null = null;
  /** Settlement txids of the channels closed here, by site. */
  const closed = new Map<string, string>();
  let disposed = false;

  async function load() {
    try {
      const [s, n] = await Promise.all([call("sites", {}), call("notices", {})]);
      if (disposed) return;
      if (loadFailed) banner.hide();
      loadFailed = false;
      sites = s;
      notices = n;
      render();
    } catch (e) {
      if (disposed || (await app.recheck())) return;
      loadFailed = true;
      banner.show(toError(e));
    }
  }

  /** Runs an action from `button`, shows its error in the banner, then reloads. */
  async function act(button: HTMLButtonElement, label: string, task: () => Promise<void>) {
    banner.hide();
    loadFailed = false;
    acting++;
    try {
      await busy(button, label, async () => {
        try {
          await task();
        } catch (e) {
          if (!(await app.recheck())) banner.show(toError(e));
        }
      });
    } finally {
      acting--;
    }
    if (!disposed) await load();
  }

  function render() {
    if (!sites) return;
    const minute = Math.floor(Date.now() / 60_000);
    const key = JSON.stringify([sites, notices, confirming, [...closed], minute]);
    if (key === shown) return;
    shown = key;
    const history = [...sites.history].sort((a, b) => b.at - a.at);
    replace(
      body,
      notices.length ? noticesSection(notices) : null,
      section(
        "Sites",
        "sites",
        sites.sites.length
          ? h("ul", { class: "list" }, sites.sites.map((s) => siteRow(s, history)))
          : empty("sites-empty", "globe", "No sites yet", "A site shows up here once you give it a budget."),
      ),
      section(
        "Channels",
        "channels",
        sites.channels.length
          ? h("ul", { class: "list" }, sites.channels.map(channelRow))
          : empty("channels-empty", "lock", "No channels", "Approving a site's first payment opens a channel with it."),
      ),
      section(
        "History",
        "history",
        history.length
          ? h("ul", { class: "list" }, history.slice(0, HISTORY_SHOWN).map(paymentRow))
          : empty("history-empty", "clock", "No payments yet", "Payments to sites show up here."),
        exportButtons(history.length > 0),
      ),
    );
  }

  function siteRow(site: SiteView, history: Payment[]): HTMLElement {
    const button = h(
      "button",
      {
        class: "btn btn-secondary btn-sm",
        testid: "site-revoke",
        "data-action": site.revoked ? "enable" : "revoke",
      },
      site.revoked ? "Enable" : "Revoke",
    );
    button.addEventListener("click", () =>
      void act(button, site.revoked ? "Enabling…" : "Revoking…", async () => {
        if (site.revoked) await call("approve", { origin: site.origin, terms: site.terms });
        else await call("revoke", { origin: site.origin });
      }),
    );
    const t = site.terms;
    return h(
      "li",
      {
        class: site.revoked ? "item site-row revoked" : "item site-row",
        testid: "site-row",
        "data-origin": site.origin,
        "data-spent": site.spentSat,
        "data-remaining": site.remainingSat,
        "data-revoked": String(site.revoked),
      },
      h(
        "div",
        { class: "item-head" },
        h("span", { class: "item-title", title: site.origin }, site.origin),
        site.revoked ? h("span", { class: "badge badge-muted", testid: "site-revoked" }, "Revoked") : null,
        button,
      ),
      h(
        "div",
        { class: "site-usage" },
        h(
          "span",
          { testid: "site-spent" },
          h("span", { class: "num strong" }, `${formatSat(site.spentSat)} / ${formatSat(t.limitSat)}`),
          ` sat ${PERIOD_NOW[t.period]}`,
        ),
        h("span", { class: "muted num" }, `${formatSat(site.remainingSat)} left`),
      ),
      meter(site),
      h(
        "div",
        { class: "site-foot" },
        spendChart(dailySpend(history, site.origin)),
        h(
          "span",
          { class: "muted small" },
          `Up to ${formatSat(t.maxPriceSat)} sat a request`,
          h("br"),
          t.autoApproveSat === null ? "Always asks" : `Auto-approves up to ${formatSat(t.autoApproveSat)} sat`,
        ),
      ),
    );
  }

  function channelRow(c: ChannelView): HTMLElement {
    const txid = closed.get(c.site);
    let action: HTMLElement | null = null;
    if (confirming === c.site && c.state === "Ready") {
      const confirm = h("button", { class: "btn btn-danger btn-sm", testid: "channel-close-confirm" }, "Close channel");
      confirm.addEventListener("click", () =>
        void act(confirm, "Closing…", async () => {
          const result = await call("closeChannel", { site: c.site });
          closed.set(c.site, result.txid);
          confirming = null;
        }),
      );
      action = h(
        "div",
        { class: "confirm" },
        h(
          "p",
          { class: "small" },
          `Close this channel? The site keeps the ${formatSat(c.paidSat)} sat paid; ` +
            "the rest comes back to your wallet.",
        ),
        h(
          "div",
          { class: "confirm-buttons" },
          h(
            "button",
            {
              class: "btn btn-ghost btn-sm",
              testid: "channel-close-cancel",
              onclick: () => {
                confirming = null;
                render();
              },
            },
            "Cancel",
          ),
          confirm,
        ),
      );
    } else if (c.state === "Ready" && !txid) {
      action = h(
        "button",
        {
          class: "btn btn-secondary btn-sm",
          testid: "channel-close",
          onclick: () => {
            banner.hide();
            confirming = c.site;
            render();
          },
        },
        "Close",
      );
    }
    return h(
      "li",
      {
        class: "item channel-row",
        testid: "channel-row",
        "data-site": c.site,
        "data-state": c.state,
        "data-paid": c.paidSat,
        "data-value": c.valueSat,
      },
      h(
        "div",
        { class: "item-head" },
        h("span", { class: "item-title", title: c.site }, c.site),
        h(
          "span",
          { class: c.state === "Ready" ? "badge badge-ok" : "badge badge-muted", testid: "channel-state" },
          c.state,
        ),
      ),
      h(
        "dl",
        { class: "facts" },
        fact("Value", `${formatSat(c.valueSat)} sat`),
        fact("Paid", `${formatSat(c.paidSat)} sat`),
        fact("Credit", `${formatSat(c.creditSat)} sat`),
        fact("Expires", c.expiry ? `block ${formatSat(c.expiry)}` : "–"),
      ),
      c.settlementOverdue
        ? h(
            "p",
            { class: "notice small", testid: "channel-overdue" },
            "The site has not settled this channel before its expiry: your refund goes out once it is valid.",
          )
        : null,
      action,
      txid
        ? h(
            "div",
            { class: "closed-tx" },
            h("span", { class: "notice" }, icon("check", 16), "Closed. Settlement transaction:"),
            h("code", { class: "txid", testid: "channel-closed-txid", "data-txid": txid }, txid),
          )
        : null,
    );
  }

  function exportButtons(enabled: boolean): HTMLElement {
    const all = () => [...(sites?.history ?? [])].sort((a, b) => a.at - b.at);
    return h(
      "div",
      { class: "export" },
      h(
        "button",
        {
          class: "btn btn-secondary btn-sm",
          testid: "export-csv",
          disabled: !enabled,
          onclick: () => download("trickle-payments.csv", "text/csv", toCsv(all())),
        },
        icon("download", 16),
        "Export CSV",
      ),
      h(
        "button",
        {
          class: "btn btn-secondary btn-sm",
          testid: "export-json",
          disabled: !enabled,
          onclick: () => download("trickle-payments.json", "application/json", `${JSON.stringify(all(), null, 2)}\n`),
        },
        icon("download", 16),
        "Export JSON",
      ),
    );
  }

  const timer = setInterval(() => {
    if (acting === 0) void load();
  }, REFRESH_MS);

  const el = h(
    "div",
    { class: "screen", testid: "screen-sites" },
    header(app, { title: "Sites", back: () => app.route(app.state!, { sync: false }) }),
    h("div", { class: "content stack" }, banner.el, body),
  );
  return {
    name: "sites",
    el,
    mounted: () => void load(),
    dispose: () => {
      disposed = true;
      clearInterval(timer);
    },
  };
}

function section(title: string, testid: string, content: HTMLElement, extra?: HTMLElement): HTMLElement {
  return h(
    "section",
    { class: "group", testid: `section-${testid}` },
    h("div", { class: "group-head" }, h("h2", { class: "section-title" }, title), extra ?? null),
    content,
  );
}

function empty(testid: string, iconName: string, title: string, text: string): HTMLElement {
  return h(
    "div",
    { class: "empty empty-sm", testid },
    h("div", { class: "empty-icon" }, icon(iconName, 20)),
    h("p", { class: "empty-title" }, title),
    h("p", { class: "muted small" }, text),
  );
}

function fact(label: string, value: string): HTMLElement {
  return h("div", { class: "fact" }, h("dt", null, label), h("dd", { class: "num" }, value));
}

function noticesSection(list: Notice[]): HTMLElement {
  const rows = [...list]
    .sort((a, b) => b.at - a.at)
    .map((n) =>
      h(
        "li",
        { class: "item notice-row", testid: "notice-row", "data-code": n.code },
        h(
          "div",
          { class: "notice-line" },
          icon("alert", 16),
          h("span", { class: "notice-message" }, humanMessage(n)),
        ),
        h(
          "div",
          { class: "item-sub" },
          h("span", { class: "item-url", title: n.url }, n.url),
          h("span", { class: "nowrap" }, ago(n.at)),
        ),
      ),
    );
  return section("Not paid", "notices", h("ul", { class: "list" }, rows));
}

/** Spent and reserved against the limit. */
function meter(site: SiteView): HTMLElement {
  const share = (sat: number) => `${Math.min(100, (sat / Math.max(1, site.terms.limitSat)) * 100)}%`;
  const spent = h("span", { class: "meter-spent" });
  const reserved = h("span", { class: "meter-reserved" });
  spent.style.width = share(site.spentSat);
  reserved.style.width = share(site.reservedSat);
  return h(
    "div",
    {
      class: "meter",
      role: "img",
      "aria-label":
        `${formatSat(site.spentSat)} sat spent and ${formatSat(site.reservedSat)} sat reserved ` +
        `of ${formatSat(site.terms.limitSat)} sat`,
    },
    spent,
    reserved,
  );
}

interface DaySpend {
  /** Local midnight. */
  day: Date;
  sat: number;
}

/** What `origin` consumed on each of the last days, oldest first. */
function dailySpend(history: Payment[], origin: string): DaySpend[] {
  const now = new Date();
  const days: DaySpend[] = [];
  for (let i = CHART_DAYS - 1; i >= 0; i--) {
    days.push({ day: new Date(now.getFullYear(), now.getMonth(), now.getDate() - i), sat: 0 });
  }
  const byDay = new Map(days.map((d) => [d.day.toDateString(), d]));
  for (const p of history) {
    if (p.origin !== origin) continue;
    const slot = byDay.get(new Date(p.at).toDateString());
    if (slot) slot.sat += p.consumedSat;
  }
  return days;
}

/** A small bar chart, one bar a day. */
function spendChart(days: DaySpend[]): SVGElement {
  const barWidth = 12;
  const gap = 4;
  const height = 28;
  const max = Math.max(...days.map((d) => d.sat));
  const total = days.reduce((sum, d) => sum + d.sat, 0);
  const bars = days.map((d, i) => {
    const barHeight = d.sat > 0 ? Math.max(2, Math.round((d.sat / max) * height)) : 1;
    const title = svg("title", {});
    title.textContent = `${formatDay(d.day.getTime() / 1000)}: ${formatSat(d.sat)} sat`;
    return svg(
      "rect",
      {
        class: d.sat > 0 ? "chart-bar" : "chart-bar chart-zero",
        x: i * (barWidth + gap),
        y: height - barHeight,
        width: barWidth,
        height: barHeight,
        rx: 1.5,
        "data-sat": d.sat,
      },
      title,
    );
  });
  const width = days.length * (barWidth + gap) - gap;
  return svg(
    "svg",
    {
      class: "chart",
      viewBox: `0 0 ${width} ${height}`,
      width,
      height,
      role: "img",
      "aria-label": `${formatSat(total)} sat over the last ${days.length} days`,
      "data-testid": "site-chart",
      "data-total": total,
    },
    ...bars,
  );
}

function paymentRow(p: Payment): HTMLElement {
  return h(
    "li",
    {
      class: "item payment-row",
      testid: "payment-row",
      "data-consumed": p.consumedSat,
      title: `${p.url}\npaid ${formatSat(p.paidSat)} sat, credit ${formatSat(p.creditSat)} sat`,
    },
    h(
      "div",
      { class: "payment-main" },
      h("span", { class: "item-url payment-path" }, pathOf(p.url)),
      h("span", { class: "item-sub" }, `${formatTime(p.at / 1000)} · ${hostOf(p.origin)}`),
    ),
    h(
      "span",
      { class: "tx-amount" },
      formatSat(p.consumedSat),
      h("span", { class: "unit-sm" }, " sat"),
    ),
  );
}

/** `https://a.example/x/y?z` → `/x/y?z`. */
function pathOf(url: string): string {
  try {
    const u = new URL(url);
    return `${u.pathname}${u.search}`;
  } catch {
    return url;
  }
}

function hostOf(origin: string): string {
  try {
    return new URL(origin).host;
  } catch {
    return origin;
  }
}

function toCsv(history: Payment[]): string {
  const rows = history.map((p) =>
    [new Date(p.at).toISOString(), p.origin, p.url, p.consumedSat, p.paidSat, p.creditSat, p.committedSat]
      .map(csvField)
      .join(","),
  );
  return `${[CSV_COLUMNS.join(","), ...rows].join("\n")}\n`;
}

/** A CSV field, quoted when it holds a comma, a quote or a line break. */
function csvField(value: string | number): string {
  const s = String(value);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** Saves `text` as a file through a temporary link. */
function download(name: string, type: string, text: string): void {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = h("a", { href: url, download: name, hidden: true });
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
