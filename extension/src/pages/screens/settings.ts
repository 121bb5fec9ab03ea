// Settings: network and Esplora server, auto-lock, recovery phrase export, lock now.

import { call, type Network, type Settings } from "../../shared/messages";
import type { Nav, Screen } from "../nav";
import { Banner, busy, field, header, passwordInput, phraseGrid } from "../widgets";
import { h, icon, replace } from "../dom";
import { DEFAULT_ESPLORA, NETWORK_LABEL, errorContext, toError } from "../format";

const NETWORKS: Network[] = ["bitcoin", "signet", "testnet", "regtest"];

export function settingsScreen(app: Nav, opts: { back: () => void }): Screen {
  const current: Settings = app.state?.settings ?? {
    network: "signet",
    esploraUrl: DEFAULT_ESPLORA.signet,
    autoLockMinutes: 15,
  };
  const banner = new Banner();
  const saved = h("div", { class: "notice", testid: "settings-saved", hidden: true }, icon("check", 16), "Saved");

  const network = h(
    "select",
    { class: "input", testid: "settings-network" },
    NETWORKS.map((n) =>
      h("option", { value: n, selected: n === current.network }, n === "bitcoin" ? "Bitcoin (mainnet)" : NETWORK_LABEL[n]),
    ),
  );
  const esplora = h("input", {
    class: "input input-mono",
    testid: "settings-esplora",
    type: "url",
    value: current.esploraUrl,
    autocomplete: "off",
    spellcheck: "false",
  });
  const autoLock = h("input", {
    class: "input input-num",
    testid: "settings-autolock",
    type: "number",
    min: 1,
    max: 1440,
    step: 1,
    value: current.autoLockMinutes,
  });
  let lastNetwork = network.value as Network;
  network.addEventListener("change", () => {
    // Offer the new network's usual server unless the user typed their own.
    const url = esplora.value.trim();
    if (!url || url === DEFAULT_ESPLORA[lastNetwork] || url === current.esploraUrl) {
      esplora.value = DEFAULT_ESPLORA[network.value as Network];
    }
    lastNetwork = network.value as Network;
  });
  for (const input of [esplora, autoLock]) {
    input.addEventListener("input", () => {
      input.classList.remove("invalid");
      saved.hidden = true;
    });
  }

  const save = h("button", { class: "btn btn-primary btn-block", type: "submit", testid: "settings-save" }, "Save");
  const form = h(
    "form",
    {
      class: "card stack",
      novalidate: true,
      onsubmit: (ev: Event) => {
        ev.preventDefault();
        banner.hide();
        saved.hidden = true;
        const url = esplora.value.trim().replace(/\/+$/, "");
        try {
          const u = new URL(url);
          if (u.protocol !== "https:" && u.protocol !== "http:") throw new Error();
        } catch {
          esplora.classList.add("invalid");
          banner.show("The Esplora URL must start with https:// (or http:// for a local server).");
          return;
        }
        const minutes = Number(autoLock.value);
        if (!Number.isInteger(minutes) || minutes < 1 || minutes > 1440) {
          autoLock.classList.add("invalid");
          banner.show("Auto-lock takes a whole number of minutes between 1 and 1440.");
          return;
        }
        const next: Settings = { network: network.value as Network, esploraUrl: url, autoLockMinutes: minutes };
        void busy(save, "Saving…", async () => {
          try {
            if (!(await hostPermission(url))) {
              esplora.classList.add("invalid");
              banner.show(
                `Trickle needs your permission to reach ${new URL(url).origin}; without it the wallet cannot read the chain.`,
              );
              return;
            }
            const before = app.state;
            const state = await call("saveSettings", next);
            app.state = state;
            errorContext.esploraUrl = state.settings.esploraUrl;
            esplora.value = state.settings.esploraUrl;
            if (before?.settings.network !== state.settings.network || before?.wallet !== state.wallet) {
              app.route(state);
            } else {
              saved.hidden = false;
            }
          } catch (e) {
            banner.show(toError(e));
          }
        });
      },
    },
    h("h2", { class: "section-title" }, "Connection"),
    field("Network", network, "Each network has its own wallet."),
    field("Esplora server", esplora, "Where the wallet reads the chain and sends transactions."),
    field("Auto-lock after (minutes)", autoLock),
    banner.el,
    saved,
    save,
  );

  const unlocked = app.state?.wallet === "unlocked";
  const el = h(
    "div",
    { class: "screen", testid: "screen-settings" },
    header(app, { title: "Settings", back: opts.back }),
    h(
      "div",
      { class: "content stack" },
      form,
      unlocked ? exportSection() : null,
      unlocked
        ? h(
            "section",
            { class: "card stack" },
            h("h2", { class: "section-title" }, "Lock"),
            h("p", { class: "muted small" }, "Locking forgets the key until you enter your password again."),
            h(
              "button",
              {
                class: "btn btn-secondary btn-block",
                testid: "lock-now",
                onclick: async () => {
                  try {
                    app.route(await call("lock", {}));
                  } catch (e) {
                    banner.show(toError(e));
                  }
                },
              },
              icon("lock", 18),
              "Lock now",
            ),
          )
        : null,
    ),
  );
  return { name: "settings", el };
}

/**
 * The worker reaches the Esplora server only with a host permission for it; a page asks the user
 * (this runs within the Save click, as `permissions.request` requires).
 */
async function hostPermission(url: string): Promise<boolean> {
  const origins = [`${new URL(url).origin}/*`];
  try {
    if (await chrome.permissions.contains({ origins })) return true;
    return await chrome.permissions.request({ origins });
  } catch {
    // Not requestable (e.g. plain http to another machine).
    return false;
  }
}

function exportSection(): HTMLElement {
  const banner = new Banner("export-error");
  const pw = passwordInput("export-password", { autocomplete: "current-password", placeholder: "Password" });
  pw.input.setAttribute("aria-label", "Password");
  const out = h("div", { class: "stack" });
  const show = h(
    "button",
    { class: "btn btn-secondary btn-block", type: "submit", testid: "export-phrase" },
    "Show recovery phrase",
  );
  const form = h(
    "form",
    {
      class: "stack",
      novalidate: true,
      onsubmit: (ev: Event) => {
        ev.preventDefault();
        banner.hide();
        if (!pw.input.value) {
          banner.show("Enter your password to see the phrase.");
          return;
        }
        void busy(show, "Checking…", async () => {
          try {
            const { phrase } = await call("exportPhrase", { password: pw.input.value });
            pw.input.value = "";
            form.hidden = true;
            replace(
              out,
              h(
                "div",
                { class: "callout" },
                icon("alert", 18),
                h("span", null, "Anyone who sees these words can take your bitcoin."),
              ),
              phraseGrid(phrase.trim().split(/\s+/), "export-words"),
              h(
                "button",
                {
                  class: "btn btn-ghost btn-block",
                  testid: "export-hide",
                  onclick: () => {
                    replace(out);
                    form.hidden = false;
                  },
                },
                "Hide phrase",
              ),
            );
          } catch (e) {
            pw.input.classList.add("invalid");
            banner.show(toError(e));
          }
        });
      },
    },
    h("p", { class: "muted small" }, "Enter your password again to see your 12 words."),
    banner.el,
    pw.wrap,
    show,
  );
  return h("section", { class: "card stack" }, h("h2", { class: "section-title" }, "Recovery phrase"), form, out);
}
