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
