#!/usr/bin/env bash
# Builds Trickle's payer for Node: the `trickle-node` crate to wasm (the extension's release
# profile), its Node bindings and wasm-opt, into packages/x402-client/wasm/. Needs scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$PWD/target}"
out=packages/x402-client/wasm

echo "build-node: cargo (wasm32, release)" >&2
cargo build -q -p trickle-node --target wasm32-unknown-unknown --profile wasm-release
rm -rf "$out"
mkdir -p "$out"
wasm-bindgen --target nodejs --out-dir "$out" \
  "$target/wasm32-unknown-unknown/wasm-release/trickle_node.wasm"
# wasm-bindgen's Node bindings are CommonJS, in a package that is not.
echo '{ "type": "commonjs" }' >"$out/package.json"
node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
  --enable-sign-ext --enable-mutable-globals --enable-reference-types \
  "$out/trickle_node_bg.wasm" -o "$out/trickle_node_bg.wasm"
printf 'build-node: wasm %d KB raw\n' $(($(stat -c %s "$out/trickle_node_bg.wasm") / 1024))
