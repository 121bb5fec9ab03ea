#!/usr/bin/env bash
# Builds the extension: the wallet crate to wasm (release), its JS bindings, wasm-opt, the
# TypeScript bundles, then the unpacked extension in dist/extension/ and the store zip
# dist/trickle-extension.zip. Prints the wasm size raw and gzipped. Needs scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$PWD/target}"
out=dist/extension
pkg=extension/pkg

echo "build-extension: cargo (wasm32, release)" >&2
cargo build -q -p trickle-wasm --target wasm32-unknown-unknown --profile wasm-release
rm -rf "$pkg" "$out"
mkdir -p "$pkg" "$out"
wasm-bindgen --target web --out-dir "$pkg" \
  "$target/wasm32-unknown-unknown/wasm-release/trickle_wasm.wasm"
raw_before=$(stat -c %s "$pkg/trickle_wasm_bg.wasm")
node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
  --enable-sign-ext --enable-mutable-globals --enable-reference-types \
  "$pkg/trickle_wasm_bg.wasm" -o "$pkg/trickle_wasm_bg.wasm"

echo "build-extension: typecheck and bundle" >&2
node_modules/.bin/tsc --noEmit -p extension
for entry in worker ui; do
  node_modules/.bin/esbuild "extension/src/$entry.ts" --bundle --format=esm --target=chrome130 \
    --minify --log-level=warning --outfile="$out/$entry.js"
done
# Content scripts are classic scripts, not modules.
for entry in content page-api; do
  node_modules/.bin/esbuild "extension/src/$entry.ts" --bundle --format=iife --target=chrome130 \
    --minify --log-level=warning --outfile="$out/$entry.js"
done
cp manifest.json "$out/"
cp -r extension/static/. "$out/"
cp "$pkg/trickle_wasm_bg.wasm" "$out/"
rm -f dist/trickle-extension.zip
(cd "$out" && python3 -m zipfile -c ../trickle-extension.zip ./*)

raw=$(stat -c %s "$out/trickle_wasm_bg.wasm")
gz=$(gzip -9 -c "$out/trickle_wasm_bg.wasm" | wc -c)
js=$(cat "$out"/*.js | gzip -9 | wc -c)
printf 'build-extension: wasm %d KB raw (%d KB before wasm-opt), %d KB gzip; JS %d KB gzip\n' \
  $((raw / 1024)) $((raw_before / 1024)) $((gz / 1024)) $((js / 1024))
echo "build-extension: unpacked in $out, zip in dist/trickle-extension.zip" >&2
