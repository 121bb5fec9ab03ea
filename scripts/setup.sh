#!/usr/bin/env bash
# Installs everything Trickle's build and tests need. Idempotent: re-running skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v make >/dev/null || need_apt+=(make)
command -v clang >/dev/null || need_apt+=(clang)          # secp256k1-sys for wasm32
command -v cmake >/dev/null || need_apt+=(cmake)          # bitcoinkernel (Bitcoin Core's C++)
dpkg -s libboost-dev >/dev/null 2>&1 || need_apt+=(libboost-dev)
# The server (initdb, postgres), not just the client that shares its directory.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql) # payee store tests
command -v chromium >/dev/null || need_apt+=(chromium)    # the extension's browser tests
command -v firefox-esr >/dev/null || need_apt+=(firefox-esr) # the same tests in Firefox
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
command -v python3 >/dev/null || need_apt+=(python3)      # scripts (free ports, zip)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  echo "setup: rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

# rust-toolchain.toml asks for rustfmt and clippy; make sure they are there before first use.
rustup component list --installed | grep -q '^clippy' || rustup component add clippy rustfmt

# cargo-fuzz for the fuzz smoke run (pinned; skipped when already installed at that version).
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz 0.13.2" ]; then
  echo "setup: cargo install cargo-fuzz 0.13.2"
  cargo install cargo-fuzz --version 0.13.2
fi

# wasm-bindgen's CLI must match the wasm-bindgen crate in Cargo.lock exactly.
wbg=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $wbg" ]; then
  echo "setup: cargo install wasm-bindgen-cli $wbg"
  cargo install wasm-bindgen-cli --version "$wbg"
fi

# The extension's build and test tools (esbuild, TypeScript, wasm-opt, playwright-core,
# puppeteer-core for Firefox, web-ext), pinned
# by package-lock.json; reinstalled only when the lock file changed.
if ! cmp -s package-lock.json node_modules/.trickle-installed-lock 2>/dev/null; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund
  cp package-lock.json node_modules/.trickle-installed-lock
fi
