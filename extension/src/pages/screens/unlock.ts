import { call } from "../../shared/messages";
import type { Nav, Screen } from "../nav";
import { Banner, busy, passwordInput } from "../widgets";
import { h, mark } from "../dom";
import { NETWORK_LABEL, toError } from "../format";

export function unlockScreen(app: Nav): Screen {
  const banner = new Banner();
  const pw = passwordInput("unlock-password", { autocomplete: "current-password", placeholder: "Password" });
  pw.input.setAttribute("aria-label", "Password");
  const submit = h(
    "button",
    { class: "btn btn-primary btn-block", type: "submit", testid: "unlock-submit" },
    "Unlock",
  );
  const network = app.state?.settings.network ?? "signet";
  const form = h(
    "form",
    {
      class: "stack",
      novalidate: true,
      onsubmit: (ev: Event) => {
        ev.preventDefault();
        banner.hide();
        if (!pw.input.value) {
          banner.show("Enter your password.");
          pw.input.focus();
          return;
        }
        void busy(submit, "Unlocking…", async () => {
          try {
            const state = await call("unlock", { password: pw.input.value });
            pw.input.value = "";
            app.route(state);
          } catch (e) {
            pw.input.classList.add("invalid");
            banner.show(toError(e));
            pw.input.select();
            pw.input.focus();
          }
        });
      },
    },
    banner.el,
    pw.wrap,
    submit,
  );
  pw.input.addEventListener("input", () => pw.input.classList.remove("invalid"));
  const el = h(
    "div",
    { class: "screen unlock", testid: "screen-unlock" },
    h(
      "div",
      { class: "welcome-hero" },
      h("div", { class: "hero-mark" }, mark(48)),
      h("h1", { class: "title" }, "Welcome back"),
      h("p", { class: "muted" }, `Unlock your ${NETWORK_LABEL[network]} wallet.`),
    ),
    form,
    h(
      "div",
      { class: "unlock-foot" },
      h(
        "p",
        { class: "muted small" },
        "Forgot your password? ",
        h(
          "button",
          {
            class: "link",
            testid: "forgot-password",
            onclick: () =>
              app.go("restore", { back: () => app.go("unlock", {}), replacing: true }),
          },
          "Restore from your recovery phrase",
        ),
      ),
      h(
        "button",
        {
          class: "link small",
          testid: "unlock-settings",
          onclick: () => app.go("settings", { back: () => app.go("unlock", {}) }),
        },
        "Network settings",
      ),
    ),
  );
  return { name: "unlock", el, mounted: () => pw.input.focus() };
}
