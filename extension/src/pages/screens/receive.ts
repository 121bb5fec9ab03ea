// Receive: the wallet's next address, as a QR code and as text, with a copy button.

import qrcode from "qrcode-generator";
import { call } from "../../shared/messages";
import type { Nav, Screen } from "../nav";
import { Banner, header } from "../widgets";
import { h, icon, replace, spinner, svg } from "../dom";
import { NETWORK_LABEL, toError } from "../format";

/** The QR code as an SVG drawn from the module matrix (no markup strings). */
export function qrSvg(text: string): SVGElement {
  // Bech32 addresses in upper case fit QR's compact alphanumeric mode (BIP173).
  const upper = text.toUpperCase();
  const alnum = /^[0-9A-Z $%*+\-./:]*$/.test(upper) && /^(bc|tb|bcrt)1/i.test(text);
  const qr = qrcode(0, "M");
  qr.addData(alnum ? upper : text, alnum ? "Alphanumeric" : "Byte");
  qr.make();
  const n = qr.getModuleCount();
  const quiet = 2;
  let d = "";
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < n; c++) {
      if (qr.isDark(r, c)) d += `M${c + quiet} ${r + quiet}h1v1h-1z`;
    }
  }
  const size = n + quiet * 2;
  return svg(
    "svg",
    {
      viewBox: `0 0 ${size} ${size}`,
      class: "qr",
      role: "img",
      "aria-label": "QR code of the address",
      "shape-rendering": "crispEdges",
      "data-testid": "receive-qr",
    },
    svg("rect", { width: size, height: size, fill: "#fff" }),
    svg("path", { d, fill: "#0b1220" }),
  );
}

/** The address in groups of four for reading; its text content stays the plain address. */
function groupedAddress(address: string): HTMLElement {
  const groups: HTMLElement[] = [];
  for (let i = 0; i < address.length; i += 4) {
    groups.push(h("span", { class: "addr-group" }, address.slice(i, i + 4)));
  }
  return h("code", { class: "address", testid: "receive-address", "data-address": address }, groups);
}

export function receiveScreen(app: Nav): Screen {
  const banner = new Banner();
  const body = h("div", { class: "receive-body" }, h("div", { class: "qr-frame center" }, spinner()));
  const network = app.state?.settings.network ?? "signet";
  const el = h(
    "div",
    { class: "screen", testid: "screen-receive" },
    header(app, { title: "Receive", back: () => app.route(app.state!, { sync: false }) }),
    h("div", { class: "content stack" }, banner.el, body),
  );

  async function load() {
    try {
      const { address } = await call("receiveAddress", {});
      const copyLabel = h("span", null, "Copy address");
      const copy = h(
        "button",
        {
          class: "btn btn-primary btn-block",
          testid: "copy-address",
          onclick: async () => {
            try {
              await navigator.clipboard.writeText(address);
              replace(copyLabel, "Copied");
              copy.classList.add("btn-done");
            } catch {
              // Without clipboard access, select the text so the user can copy it.
              const range = document.createRange();
              range.selectNodeContents(addr);
              getSelection()?.removeAllRanges();
              getSelection()?.addRange(range);
              replace(copyLabel, "Press Ctrl+C to copy");
            }
            setTimeout(() => {
              replace(copyLabel, "Copy address");
              copy.classList.remove("btn-done");
            }, 1800);
          },
        },
        icon("copy", 18),
        copyLabel,
      );
      const addr = groupedAddress(address);
      replace(
        body,
        h("div", { class: "qr-frame" }, qrSvg(address)),
        h("div", { class: "card address-card" }, h("div", { class: "label" }, "Your address"), addr),
        copy,
        h(
          "p",
          { class: "muted small center-text" },
          `Send only ${network === "bitcoin" ? "bitcoin" : `${NETWORK_LABEL[network]} coins`} to this address. ` +
            "A payment shows as pending until it is mined.",
        ),
      );
    } catch (e) {
      if (await app.recheck()) return;
      replace(body);
      banner.show(toError(e));
    }
  }

  return { name: "receive", el, mounted: () => void load() };
}
