#!/usr/bin/env bash
# Builds the extension: the wallet crate to wasm (release), its JS bindings, wasm-opt, the
# TypeScript bundles, then for each browser the unpacked extension and its store zip:
# Chrome in dist/extension/ and dist/trickle-extension.zip, Firefox in dist/firefox/ and
# dist/trickle-firefox.zip. Same wasm, same pages; the manifest and extension/src/background/browser.ts
# make the differences. Prints the wasm size raw and gzipped. Needs scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$PWD/target}"
pkg=extension/pkg

echo "build-extension: cargo (wasm32, release)" >&2
cargo build -q -p trickle-wasm --target wasm32-unknown-unknown --profile wasm-release
rm -rf "$pkg" dist/extension dist/firefox
mkdir -p "$pkg"
wasm-bindgen --target web --out-dir "$pkg" \
  "$target/wasm32-unknown-unknown/wasm-release/trickle_wasm.wasm"
raw_before=$(stat -c %s "$pkg/trickle_wasm_bg.wasm")
node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
  --enable-sign-ext --enable-mutable-globals --enable-reference-types \
  "$pkg/trickle_wasm_bg.wasm" -o "$pkg/trickle_wasm_bg.wasm"

echo "build-extension: typecheck and bundle" >&2
node_modules/.bin/tsc --noEmit -p extension

# bundle BROWSER OUT ZIP ESBUILD_TARGET WORKER_FORMAT
bundle() {
  local browser=$1 out=$2 zip=$3 es=$4 worker_format=$5
  mkdir -p "$out"
  local common=(--bundle --target="$es" --minify --log-level=warning "--define:TRICKLE_BROWSER=\"$browser\"")
  # Chrome's worker is a module service worker; Firefox's event page is a classic script (the
  # wasm bindings' default `import.meta.url` goes unused: the worker names the wasm file).
  node_modules/.bin/esbuild extension/src/background/worker.ts "${common[@]}" --format="$worker_format" \
    --log-override:empty-import-meta=silent --outfile="$out/worker.js"
  node_modules/.bin/esbuild extension/src/pages/main.ts "${common[@]}" --format=esm --outfile="$out/ui.js"
  # Content scripts are classic scripts, not modules.
  node_modules/.bin/esbuild extension/src/content/isolated.ts "${common[@]}" --format=iife --outfile="$out/content.js"
  node_modules/.bin/esbuild extension/src/content/main-world.ts "${common[@]}" --format=iife --outfile="$out/page-api.js"
  node extension/scripts/manifest.mjs "$browser" >"$out/manifest.json"
  cp -r extension/static/. "$out/"
  cp "$pkg/trickle_wasm_bg.wasm" "$out/"
  rm -f "$zip"
  local zip_path="$PWD/$zip"
  (cd "$out" && python3 -m zipfile -c "$zip_path" ./*)
}
bundle chrome dist/extension dist/trickle-extension.zip chrome130 esm
bundle firefox dist/firefox dist/trickle-firefox.zip firefox140 iife
out=dist/extension

raw=$(stat -c %s "$out/trickle_wasm_bg.wasm")
gz=$(gzip -9 -c "$out/trickle_wasm_bg.wasm" | wc -c)
js=$(cat "$out"/*.js | gzip -9 | wc -c)
printf 'build-extension: wasm %d KB raw (%d KB before wasm-opt), %d KB gzip; JS %d KB gzip\n' \
  $((raw / 1024)) $((raw_before / 1024)) $((gz / 1024)) $((js / 1024))
echo "build-extension: unpacked in dist/extension (Chrome) and dist/firefox, zips in dist/" >&2
