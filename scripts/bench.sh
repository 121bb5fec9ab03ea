#!/usr/bin/env bash
# Every benchmark, then one Markdown table: | figure | value | baseline | ratio |. Each figure's
# baseline is measured in the same run (or is a computed lower bound, said in its cell); timings
# are medians. `make bench` runs this.
#
# Each part appends its rows, already in the table's format, to the file named by $BENCH_ROWS;
# adding a part is one `part NAME COMMAND...` line below. Parts:
#   payments  payer signs / payee verifies a payment, native, against a bare secp256k1 verify
#             (crates/channel/benches/payments.rs, criterion)
#   vbytes    on-chain virtual bytes of v1 and v2 channels against the minimum of their script
#             templates (crates/channel/benches/vbytes.rs, which defines the minimum)
#   throughput the payee under load: payments per server CPU-second through the full server path
#             (HTTP, state, signature check, SQLite group commit) against a bare verify loop;
#             latency percentiles and requests per second against a free page through the same
#             server (crates/payee/benches/throughput.rs; PostgreSQL too when
#             TRICKLE_TEST_POSTGRES_URL is set), and what authorisation and single-use tickets
#             (MAC check, reload nonce, ticket rows) add to the paid path's CPU per request
#   fetch     `trickle fetch` of 100 paid against 100 unpaid pages through the payee proxy on the
#             local chain, release builds (scripts/bench-fetch.sh)
#   agent     the Node payer (@trickle/x402-client) under @x402/fetch's wrapFetchWithPayment, in
#             one process with the wallet unlocked once: 100 paid against 100 unpaid requests
#             through the payee proxy, and through an unmodified @x402/express app paid via the
#             payee's facilitator, release payee (tests/x402/bench.mjs; builds the Node payer)
#   fees      what the payee paid to close a channel under a fee spike (the local chain's blocks
#             at 40 sat/vB, its mempool refusing under 10) against the same close at the quiet
#             rate, in one run of the regtest test that replaces the settlement
#             (crates/payee/tests/regtest.rs, a_settlement_under_a_fee_spike_...)
#   browser   the payer in the browser: signing in the worker's wasm, in Chromium and in Firefox,
#             against the same call native (from `payments` of this run), Chromium's worker cold
#             start against an empty MV3 worker, wasm size (tests/browser/bench.mjs; builds the
#             extension first)
#
# Profiles, to redo (signing in the worker's wasm, issue 17). Each libsecp256k1 build of the
# extension, measured by `BENCH_PARTS="payments browser" BENCH_QUICK=1 BENCH_SIGN_ROUNDS=9
# bash scripts/bench.sh` after `bash scripts/build-extension.sh` with the flags below put in
# .cargo/config.toml's CFLAGS_wasm32_unknown_unknown (and secp256k1-sys's opt-level in
# Cargo.toml's wasm-release profile); µs a payment in Chromium / Firefox, wasm gzip -9:
#   lowmemory as it is (2-bit generator tables, 5x52 field over clang's 128-bit helper), -Oz
#                                                          571 / 390 µs   966 KiB
#   the same at -O3                                        428 / 390 µs  1029 KiB
#   -O3, 4-bit generator tables                            218 / 215 µs  1061 KiB
#   -O3, 10x26 field (USE_FORCE_WIDEMUL_INT64), 2-bit      160 / 175 µs   986 KiB
#   -Oz, 10x26 field, 4-bit                                115 / 135 µs   998 KiB
#   -O3, 10x26 field, 4-bit (the build kept)               100 / 130 µs  1018 KiB
# Where the extension's bytes go (issue 17's size goal): `cargo install twiggy`, then
# `twiggy top -n 100000 --format csv` on target/wasm32-unknown-unknown/wasm-release/
# trickle_wasm.wasm (before wasm-bindgen and wasm-opt, names kept), shallow bytes summed by the
# crate each symbol names. Of 5210 KiB: the names section 1650 and wasm-bindgen's section 291
# (both stripped from what ships), alloc 478 (collections instantiated once per element type),
# .rodata 450, miniscript 348 (BDK's descriptors), core 347 (formatting, panics), serde_json 236
# (one deserializer per type), trickle_wallet 143, trickle_wasm 110, bitcoin 95, libsecp256k1's
# C 93, bdk_wallet 83, trickle_channel 52, serde 98, hashbrown 48, js_sys 44, bdk_chain 36,
# esplora_client 29, url 28, bip39 15. The shipped wasm is 2504 KiB raw, 1004 KiB gzip -9.
# The Rust crates of the signing path (bitcoin, bitcoin_hashes, secp256k1, trickle-channel) at
# -O3 instead of -Oz changed nothing (427 µs against 428), so they stay small.
#
# Knobs (environment):
#   BENCH_PARTS="payments vbytes throughput fetch agent fees browser"  the parts to run, in order
#   BENCH_QUICK=1         a quick run: short criterion times, fewer channels, rounds and restarts
#   BENCH_CRITERION_ARGS  arguments for the criterion bench (default: criterion's own defaults)
#   BENCH_VBYTES_CHANNELS channels per version (101); BENCH_COLD_RUNS (9), BENCH_SIGN_ROUNDS (15),
#   BENCH_SIGN_COUNT (200): see tests/browser/bench.mjs
#   BENCH_SKIP_BUILD=1    use dist/extension as it is (it must have been built from this tree)
#   BENCH_ROWS=FILE       keep the rows in FILE (appended to) instead of a temporary file
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
target="${CARGO_TARGET_DIR:-$PWD/target}"
parts="${BENCH_PARTS:-payments vbytes throughput fetch agent fees browser}"

if [ "${BENCH_QUICK:-}" = 1 ]; then
  : "${BENCH_CRITERION_ARGS:=--warm-up-time 1 --measurement-time 2}"
  export BENCH_VBYTES_CHANNELS="${BENCH_VBYTES_CHANNELS:-11}"
  export BENCH_COLD_RUNS="${BENCH_COLD_RUNS:-3}" BENCH_SIGN_ROUNDS="${BENCH_SIGN_ROUNDS:-5}"
  export CHANNELS="${CHANNELS:-100}" PAYMENTS="${PAYMENTS:-10000}" ROUNDS="${ROUNDS:-3}"
  export BENCH_AGENT_ROUNDS="${BENCH_AGENT_ROUNDS:-3}"
fi
criterion_args=(${BENCH_CRITERION_ARGS:-})

if [ -z "${BENCH_ROWS:-}" ]; then
  BENCH_ROWS=$(mktemp /tmp/trickle-bench-rows.XXXXXX)
  trap 'rm -f "$BENCH_ROWS"' EXIT
fi
export BENCH_ROWS
# For the browser part: the native signing median must come from this run's criterion output.
export BENCH_CRITERION_DIR="$target/criterion" BENCH_STARTED_MS=$((started * 1000))

failed=()
part() {
  local name=$1
  shift
  case " $parts " in *" $name "*) ;; *) return 0 ;; esac
  echo "bench: $name" >&2
  local t0=$SECONDS
  # A part's own report goes to stderr; only the table is on stdout.
  if "$@" >&2; then
    echo "bench: $name done in $((SECONDS - t0)) s" >&2
  else
    echo "bench: $name FAILED" >&2
    failed+=("$name")
  fi
}

fees() {
  local out line
  out=$(cargo test -q -p trickle-payee --test regtest a_settlement_under_a_fee_spike -- --nocapture 2>&1) ||
    { echo "$out"; return 1; }
  # "settlement fee: quiet 342 sat (2 sat/vB), under the spike 8550 sat (50 sat/vB)"
  line=$(grep -o 'settlement fee: quiet .*' <<< "$out") || { echo "$out"; return 1; }
  echo "$line"
  python3 - "$line" >> "$BENCH_ROWS" <<'PY'
import re, sys
q, qr, s, sr = re.search(r"quiet (\d+) sat \((\d+) sat/vB\), under the spike (\d+) sat \((\d+) sat/vB\)", sys.argv[1]).groups()
print(f"| payee's close fee under a fee spike (blocks at 40 sat/vB) | {s} sat ({sr} sat/vB) "
      f"| the same close at the quiet rate {q} sat ({qr} sat/vB) | {int(s) / int(q):.1f} |")
PY
}

agent() {
  cargo build -q -p trickle-regtest
  cargo build -q --release -p trickle-payee
  bash scripts/build-node.sh
  TRICKLE_PAYEE_BIN="$target/release/trickle-payee" node tests/x402/bench.mjs
}

browser() {
  [ "${BENCH_SKIP_BUILD:-}" = 1 ] || bash scripts/build-extension.sh
  node tests/browser/bench.mjs
}

part payments cargo bench -q -p trickle-channel --bench payments -- "${criterion_args[@]}"
part vbytes cargo bench -q -p trickle-channel --bench vbytes
part throughput cargo bench -q -p trickle-payee --bench throughput
part fetch env PROFILE=release bash scripts/bench-fetch.sh
part agent agent
part fees fees
part browser browser

echo
echo "| figure | value | baseline | ratio |"
echo "| --- | --- | --- | --- |"
cat "$BENCH_ROWS"
echo
echo "bench: $(($(date +%s) - started)) s on $(nproc) cores$([ ${#failed[@]} = 0 ] || echo "; FAILED: ${failed[*]}")" >&2
[ ${#failed[@]} = 0 ]
