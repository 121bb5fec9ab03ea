// Home: balance, sync indicator, payments waiting for the user, receive / send / sites, and the
// transaction list.

import { call, type Approval, type Overview, type SyncStatus, type TxSummary, type WalletError } from "../../shared/messages";
import type { Nav, Screen } from "../nav";
import { header } from "../widgets";
import { h, icon, replace, spinner } from "../dom";
import { ago, formatDay, formatSat, formatSignedSat, formatTime, humanMessage, plural, toError } from "../format";

/** How often the open popup re-reads the overview. */
const REFRESH_MS = 5000;

/** The last overview seen, so that going back home shows numbers at once. */
let lastOverview: Overview | null = null;

export function homeScreen(app: Nav, opts: { sync: boolean }): Screen {
  const confirmed = h("span", { class: "amount-big", testid: "balance-confirmed" }, "–");
  const pending = h("span", { class: "num", testid: "balance-pending" }, "–");
  const immature = h("span", { class: "num", testid: "balance-immature" }, "0");
  const immatureRow = h("span", { class: "sub-item", hidden: true }, "Immature ", immature, " sat");
  const syncRow = h("div", { class: "sync", testid: "sync-status", "data-state": "idle" });
  const txList = h("ul", { class: "tx-list", testid: "tx-list" });
  const txEmpty = h(
    "div",
    { class: "empty", testid: "tx-empty", hidden: true },
    h("div", { class: "empty-icon" }, icon("receive", 24)),
    h("p", { class: "empty-title" }, "No transactions yet"),
    h("p", { class: "muted small" }, "Receive bitcoin to fund your wallet. Payments show up here."),
  );
  const loadError = h("div", { class: "banner banner-error", role: "alert", testid: "error-banner", hidden: true });
  const approvalsText = h("span", { class: "banner-text" });
  let waiting: Approval[] = [];
  const approvalsBanner = h(
    "button",
    {
      class: "banner banner-warn",
      testid: "approvals-banner",
      hidden: true,
      onclick: () => {
        const first = waiting[0];
        if (first) app.go("approve", { approval: first });
      },
    },
    icon("alert", 18),
    approvalsText,
    h("span", { class: "banner-go" }, "Review"),
  );

  let syncing = false;
  let syncError: { error: WalletError; at: number } | null = null;
  let status: SyncStatus | null = null;
  let disposed = false;

  const lock = async () => {
    try {
      app.route(await call("lock", {}));
    } catch (e) {
      showLoadError(toError(e));
    }
  };

  const el = h(
    "div",
    { class: "screen", testid: "screen-home" },
    header(app, {
      actions: [
        h(
          "button",
          {
            class: "icon-btn",
            testid: "nav-settings",
            "aria-label": "Settings",
            title: "Settings",
            onclick: () => app.go("settings", { back: () => app.route(app.state!, { sync: false }) }),
          },
          icon("settings"),
        ),
        h(
          "button",
          { class: "icon-btn", testid: "lock", "aria-label": "Lock", title: "Lock", onclick: () => void lock() },
          icon("lock"),
        ),
      ],
    }),
    h(
      "div",
      { class: "content stack" },
      loadError,
      approvalsBanner,
      h(
        "section",
        { class: "card balance-card" },
        h("div", { class: "label" }, "Balance"),
        h("div", { class: "balance-main" }, confirmed, h("span", { class: "unit" }, "sat")),
        h(
          "div",
          { class: "balance-sub" },
          h("span", { class: "sub-item" }, "Pending ", pending, " sat"),
          immatureRow,
        ),
        syncRow,
      ),
      h(
        "div",
        { class: "actions" },
        h(
          "button",
          {
            class: "btn btn-primary action",
            testid: "nav-receive",
            onclick: () => app.go("receive", {}),
          },
          icon("receive", 18),
          "Receive",
        ),
        h(
          "button",
          {
            class: "btn btn-secondary action",
            testid: "nav-send",
            onclick: () => app.go("send", { available: lastOverview?.balance.confirmed ?? null }),
          },
          icon("send", 18),
          "Send",
        ),
        h(
          "button",
          { class: "btn btn-secondary action", testid: "nav-sites", onclick: () => app.go("sites", {}) },
          icon("globe", 18),
          "Sites",
        ),
      ),
      h("section", { class: "txs" }, h("h2", { class: "section-title" }, "Activity"), txList, txEmpty),
    ),
  );

  function showLoadError(err: WalletError | null) {
    if (!err) {
      loadError.hidden = true;
      return;
    }
    replace(loadError, icon("alert", 18), h("span", { class: "banner-text" }, humanMessage(err)));
    loadError.dataset.code = err.code;
    loadError.hidden = false;
  }

  function renderSync() {
    const s = status;
    const error = syncError && (!s?.at || s.at < syncError.at) ? syncError.error : (s?.error ?? null);
    if (syncing || s?.syncing) {
      syncRow.dataset.state = "syncing";
      replace(syncRow, spinner(), h("span", { class: "sync-text" }, "Syncing with the chain…"));
    } else if (error) {
      syncRow.dataset.state = "error";
      replace(
        syncRow,
        h("span", { class: "dot dot-error" }),
        h("span", { class: "sync-text error-text", title: error.message }, "Sync failed. ", humanMessage(error)),
        h("button", { class: "link", testid: "sync-retry", onclick: () => void sync() }, "Retry"),
      );
    } else if (s?.height !== null && s?.height !== undefined) {
      syncRow.dataset.state = "synced";
      syncRow.dataset.height = String(s.height);
      replace(
        syncRow,
        h("span", { class: "dot dot-ok" }),
        h(
          "span",
          { class: "sync-text" },
          `Synced at height ${formatSat(s.height)}`,
          s.at ? h("span", { class: "muted" }, ` · ${ago(s.at)}`) : null,
        ),
        h(
          "button",
          {
            class: "icon-btn icon-btn-sm",
            testid: "sync-now",
            "aria-label": "Sync now",
            title: "Sync now",
            onclick: () => void sync(),
          },
          icon("refresh", 16),
        ),
      );
    } else {
      syncRow.dataset.state = "idle";
      replace(
        syncRow,
        h("span", { class: "dot" }),
        h("span", { class: "sync-text muted" }, "Not synced yet"),
        h("button", { class: "link", testid: "sync-now", onclick: () => void sync() }, "Sync now"),
      );
    }
  }

  function render(o: Overview) {
    lastOverview = o;
    status = o.sync;
    confirmed.textContent = formatSat(o.balance.confirmed);
    confirmed.dataset.sat = String(o.balance.confirmed);
    pending.textContent = formatSat(o.balance.pending);
    pending.dataset.sat = String(o.balance.pending);
    immature.textContent = formatSat(o.balance.immature);
    immature.dataset.sat = String(o.balance.immature);
    immatureRow.hidden = o.balance.immature === 0;
    renderSync();
    const txs = [...o.transactions].sort(byRecency);
    txEmpty.hidden = txs.length > 0;
    txList.hidden = txs.length === 0;
    replace(txList, txs.map(txRow));
  }

  async function refresh() {
    try {
      const o = await call("overview", {});
      if (disposed) return;
      showLoadError(null);
      render(o);
    } catch (e) {
      if (disposed || (await app.recheck())) return;
      showLoadError(toError(e));
    }
  }

  async function refreshApprovals() {
    try {
      waiting = await call("approvals", {});
    } catch {
      // The overview shows the worker's errors.
      waiting = [];
    }
    if (disposed) return;
    approvalsBanner.hidden = waiting.length === 0;
    approvalsBanner.dataset.count = String(waiting.length);
    approvalsText.textContent = `${plural(waiting.length, "payment request")} waiting`;
  }

  async function sync() {
    if (syncing) return;
    syncing = true;
    renderSync();
    try {
      const o = await call("sync", {});
      if (disposed) return;
      syncing = false;
      syncError = null;
      showLoadError(null);
      render(o);
    } catch (e) {
      syncing = false;
      if (disposed || (await app.recheck())) return;
      syncError = { error: toError(e), at: Date.now() };
      renderSync();
    }
  }

  if (lastOverview) render(lastOverview);
  else renderSync();
  const timer = setInterval(() => {
    void refresh();
    void refreshApprovals();
  }, REFRESH_MS);

  return {
    name: "home",
    el,
    mounted: () => {
      void refresh();
      void refreshApprovals();
      if (opts.sync) void sync();
    },
    dispose: () => {
      disposed = true;
      clearInterval(timer);
    },
  };
}

/** Pending first, then newest block first. */
function byRecency(a: TxSummary, b: TxSummary): number {
  if (a.height === null && b.height === null) return (b.time ?? 0) - (a.time ?? 0);
  if (a.height === null) return -1;
  if (b.height === null) return 1;
  return b.height - a.height || (b.time ?? 0) - (a.time ?? 0);
}

function txRow(tx: TxSummary): HTMLElement {
  const incoming = tx.net >= 0;
  const when =
    tx.height !== null
      ? h(
          "span",
          { class: "tx-when", testid: "tx-height", "data-height": tx.height },
          `Block ${formatSat(tx.height)}`,
          tx.time ? ` · ${formatDay(tx.time)}` : "",
        )
      : h("span", { class: "badge badge-pending", testid: "tx-pending" }, icon("clock", 12), "Pending");
  return h(
    "li",
    {
      class: "tx-row",
      testid: "tx-row",
      "data-txid": tx.txid,
      "data-net": tx.net,
      title: `${tx.txid}${tx.time ? `\n${formatTime(tx.time)}` : ""}`,
    },
    h("span", { class: incoming ? "tx-icon tx-icon-in" : "tx-icon tx-icon-out" }, icon(incoming ? "receive" : "send", 16)),
    h(
      "span",
      { class: "tx-main" },
      h("span", { class: "tx-title" }, incoming ? "Received" : "Sent"),
      h("span", { class: "tx-sub" }, when),
    ),
    h(
      "span",
      { class: "tx-amounts" },
      h(
        "span",
        { class: incoming ? "tx-amount amount-in" : "tx-amount amount-out", testid: "tx-amount" },
        formatSignedSat(tx.net),
        h("span", { class: "unit-sm" }, " sat"),
      ),
      !incoming && tx.fee !== null ? h("span", { class: "tx-fee" }, `fee ${formatSat(tx.fee)}`) : null,
    ),
  );
}
