// The page's shell: which screen shows. It alone knows every screen (`SCREENS`); screens open
// each other through the `Nav` it gives them (nav.ts).

import { call, type Approval, type State, type WalletError } from "../shared/messages";
import { h, icon, replace, spinner } from "./dom";
import { errorContext, humanMessage, toError } from "./format";
import type { Mode, Nav, Screen, Screens } from "./nav";
import { approveScreen } from "./screens/approve";
import { homeScreen } from "./screens/home";
import { restoreScreen, welcomeScreen } from "./screens/onboarding";
import { receiveScreen } from "./screens/receive";
import { sendScreen } from "./screens/send";
import { settingsScreen } from "./screens/settings";
import { sitesScreen } from "./screens/sites";
import { unlockScreen } from "./screens/unlock";

const SCREENS: { [K in keyof Screens]: (nav: Nav, arg: Screens[K]) => Screen } = {
  home: homeScreen,
  approve: (nav, { approval }) => approveScreen(nav, approval),
  welcome: (nav) => welcomeScreen(nav),
  unlock: (nav) => unlockScreen(nav),
  restore: restoreScreen,
  settings: settingsScreen,
  receive: (nav) => receiveScreen(nav),
  send: (nav, { available }) => sendScreen(nav, available),
  sites: (nav) => sitesScreen(nav),
};

export class App implements Nav {
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

  go<K extends keyof Screens>(name: K, arg: Screens[K]): void {
    this.show(SCREENS[name](this, arg));
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

function fatalScreen(app: Nav, err: WalletError): Screen {
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
