// The popup and onboarding pages: one UI, sized by the page (popup.html or onboarding.html).

import { App } from "./shell";

const root = document.getElementById("app");
if (root) {
  const mode = document.body.dataset.mode === "page" ? "page" : "popup";
  void new App(root, mode).start();
}
