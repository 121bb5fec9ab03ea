// How a screen moves to another without importing it: the shell (shell.ts) knows every screen,
// and each screen knows only the `Nav` it is given, so no screen imports another.

import type { Approval, State } from "../shared/messages";

export type Mode = "popup" | "page";

/** A screen owns one element and may hold timers it stops on `dispose`. */
export interface Screen {
  name: string;
  el: HTMLElement;
  /** Runs once the element is in the document (focus, first load). */
  mounted?(): void;
  dispose?(): void;
}

/** Every screen a screen may open, by name, with what it is opened with. */
export interface Screens {
  home: { sync: boolean };
  approve: { approval: Approval };
  welcome: Record<string, never>;
  unlock: Record<string, never>;
  restore: { back: () => void; replacing?: boolean };
  settings: { back: () => void };
  receive: Record<string, never>;
  send: { available: number | null };
  sites: Record<string, never>;
}

/** What a screen may ask of the page it is shown in. */
export interface Nav {
  /** The wallet's state as last read (a screen that changes it says so). */
  state: State | null;
  readonly mode: Mode;
  /** Opens the named screen. */
  go<K extends keyof Screens>(name: K, arg: Screens[K]): void;
  /** Shows one of a screen's own steps (onboarding's phrase, confirm and password). */
  show(screen: Screen): void;
  /** The screen for a wallet state: welcome, unlock, a payment waiting for the user, or home. */
  route(state: State, opts?: { sync?: boolean }): void;
  /** After an error that may mean "the wallet locked itself meanwhile": re-routes if so. */
  recheck(): Promise<boolean>;
  /** Asks the worker where the wallet stands and shows the matching screen. */
  start(): Promise<void>;
}
