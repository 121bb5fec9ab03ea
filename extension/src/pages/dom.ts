// A tiny element builder: the pages run under a strict CSP, so everything is built with DOM calls
// (no innerHTML, no inline handlers).

export type Child = Node | string | number | null | undefined | false | Child[];

type AttrValue = string | number | boolean | null | undefined;
export type Attrs = {
  [name: string]: AttrValue | ((event: any) => void);
};

function append(parent: Node, child: Child): void {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    for (const c of child) append(parent, c);
  } else if (child instanceof Node) {
    parent.appendChild(child);
  } else {
    parent.appendChild(document.createTextNode(String(child)));
  }
}

function setAttrs(el: Element, attrs: Attrs | null | undefined): void {
  if (!attrs) return;
  for (const [name, value] of Object.entries(attrs)) {
    if (typeof value === "function") {
      el.addEventListener(name.slice(2).toLowerCase(), value as EventListener);
    } else if (value === true) {
      el.setAttribute(name === "testid" ? "data-testid" : name, "");
    } else if (value !== false && value !== null && value !== undefined) {
      el.setAttribute(name === "testid" ? "data-testid" : name, String(value));
    }
  }
}

/**
 * `h("button", { class: "btn", testid: "save", onclick: f }, "Save")`. Attributes named `on…`
 * with a function value become event listeners; `testid` becomes `data-testid`.
 */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs?: Attrs | null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** Replaces an element's children. */
export function replace(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

const SVG = "http://www.w3.org/2000/svg";

export function svg(tag: string, attrs: Record<string, string | number>, ...children: Element[]): SVGElement {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.appendChild(c);
  return el as SVGElement;
}

// Stroke icons on a 24×24 grid.
const ICONS: Record<string, Array<[string, Record<string, string | number>]>> = {
  back: [["path", { d: "M15 18l-6-6 6-6" }]],
  lock: [
    ["rect", { x: 5, y: 11, width: 14, height: 10, rx: 2 }],
    ["path", { d: "M8 11V7a4 4 0 0 1 8 0v4" }],
  ],
  settings: [
    ["path", { d: "M4 6h9M17 6h3M4 12h3M11 12h9M4 18h11M19 18h1" }],
    ["circle", { cx: 15, cy: 6, r: 2 }],
    ["circle", { cx: 9, cy: 12, r: 2 }],
    ["circle", { cx: 17, cy: 18, r: 2 }],
  ],
  copy: [
    ["rect", { x: 9, y: 9, width: 11, height: 11, rx: 2 }],
    ["path", { d: "M5 15V6a2 2 0 0 1 2-2h8" }],
  ],
  refresh: [["path", { d: "M20 12a8 8 0 1 1-2.34-5.66M20 4v5h-5" }]],
  receive: [["path", { d: "M12 4v15M6 13l6 6 6-6" }]],
  send: [["path", { d: "M12 20V5M6 11l6-6 6 6" }]],
  check: [["path", { d: "M5 12.5l4.5 4.5L19 7.5" }]],
  alert: [
    ["circle", { cx: 12, cy: 12, r: 9 }],
    ["path", { d: "M12 7.5v5.5M12 16.5v.01" }],
  ],
  eye: [
    ["path", { d: "M2 12s3.6-7 10-7 10 7 10 7-3.6 7-10 7S2 12 2 12z" }],
    ["circle", { cx: 12, cy: 12, r: 3 }],
  ],
  clock: [
    ["circle", { cx: 12, cy: 12, r: 9 }],
    ["path", { d: "M12 7v5l3 2" }],
  ],
  globe: [
    ["circle", { cx: 12, cy: 12, r: 9 }],
    ["path", { d: "M3 12h18M12 3c2.5 2.7 3.7 5.7 3.7 9s-1.2 6.3-3.7 9c-2.5-2.7-3.7-5.7-3.7-9s1.2-6.3 3.7-9z" }],
  ],
  download: [["path", { d: "M12 4v11M7 10l5 5 5-5M5 20h14" }]],
};

export function icon(name: keyof typeof ICONS | string, size = 20): SVGElement {
  const parts = (ICONS[name] ?? []).map(([tag, attrs]) => svg(tag, attrs));
  return svg(
    "svg",
    {
      viewBox: "0 0 24 24",
      width: size,
      height: size,
      fill: "none",
      stroke: "currentColor",
      "stroke-width": 2,
      "stroke-linecap": "round",
      "stroke-linejoin": "round",
      "aria-hidden": "true",
      class: "icon",
    },
    ...parts,
  );
}

/** The brand mark: a droplet, as in the toolbar icon. */
export function mark(size = 28): SVGElement {
  return svg(
    "svg",
    { viewBox: "0 0 32 32", width: size, height: size, "aria-hidden": "true", class: "mark" },
    svg("path", {
      d: "M16 2.5C16 2.5 6.5 13.2 6.5 19.5a9.5 9.5 0 0 0 19 0C25.5 13.2 16 2.5 16 2.5z",
      fill: "currentColor",
    }),
    svg("path", {
      d: "M11.2 19.8a4.9 4.9 0 0 0 4 4.6",
      fill: "none",
      stroke: "#fff",
      "stroke-width": 2,
      "stroke-linecap": "round",
      opacity: 0.9,
    }),
  );
}

export function spinner(): HTMLElement {
  return h("span", { class: "spinner", "aria-hidden": "true" });
}
