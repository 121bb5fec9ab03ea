#!/usr/bin/env bash
# Paid versus unpaid page loads through the payee proxy, on the local chain: each round runs
# `trickle fetch` on 100 free pages and on 100 paid pages (10 sat each, pre-armed after the
# first), in one process each, alternating which goes first. Prints the median of ROUNDS
# rounds and the paid/unpaid ratio. Both sides do the same HTTP work through the same proxy;
# the paid side adds unlocking the wallet, signing, durable stores on both ends and the
# signature check.
#
# Each round also times one-page runs, to split the paid run into what it pays once (starting
# the process, unlocking the wallet: Argon2id by design, the chain tip, the first page's 402
# round trip) and what each further page costs: (run of 100 - run of 1) / 99.
#
# With BENCH_ROWS=FILE (scripts/bench.sh), its two figures are appended to FILE as table rows.
#
# PROFILE=release measures optimised builds of `trickle` and `trickle-payee` (the default,
# PROFILE=dev, measures debug builds). The chain is not on the measured path and is always the
# debug build.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-5}"
PAGES="${PAGES:-100}"
PROFILE="${PROFILE:-dev}"
cargo build -q -p trickle-regtest
cargo build -q --profile "$PROFILE" -p trickle-payee -p trickle-cli
out_dir=debug; [ "$PROFILE" = dev ] || out_dir="$PROFILE"
target="${CARGO_TARGET_DIR:-$PWD/target}"
bin="$target/$out_dir"
work=$(mktemp -d /tmp/trickle-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

mkdir -p "$work/site/articles" "$work/site/free"
for n in $(seq 0 $((PAGES * (ROUNDS + 2)))); do
  echo "page $n" > "$work/site/articles/$n"
  echo "page $n" > "$work/site/free/$n"
done
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
first_line() { for _ in $(seq 200); do [ -s "$1" ] && break; sleep 0.05; done; head -n 1 "$1"; }

site_port=$(free_port)
python3 -m http.server "$site_port" --bind 127.0.0.1 --directory "$work/site" >/dev/null 2>&1 &
"$target/debug/trickle-regtest" --port 0 > "$work/regtest.out" 2>/dev/null &
esplora=$(first_line "$work/regtest.out" | grep -o 'http://[0-9.:]*')
cat > "$work/payee.toml" <<TOML
listen = "127.0.0.1:0"
upstream = "http://127.0.0.1:$site_port"
network = "regtest"
esplora = "$esplora"
database = "$work/payee.sqlite3"
key_file = "$work/payee.key"
confirmations = 0
[policy]
versions = [2]
min_channel_value = 10000
max_channel_value = 1000000
min_payment = 1000
min_expiry_blocks = 144
max_expiry_blocks = 1008
close_margin_blocks = 12
[[price]]
path = "/articles"
sat = 10
TOML
"$bin/trickle-payee" --config "$work/payee.toml" > "$work/payee.out" 2>/dev/null &
proxy=$(first_line "$work/payee.out" | grep -o 'http://[0-9.:]*')

export TRICKLE_DIR="$work/wallet" TRICKLE_PASSWORD=bench TRICKLE_NETWORK=regtest TRICKLE_ESPLORA="$esplora"
trickle="$bin/trickle"
"$trickle" wallet create > /dev/null 2>&1
curl -sf -X POST "$esplora/regtest/faucet" -H 'content-type: application/json' \
  -d "{\"address\":\"$("$trickle" wallet address)\",\"amount_sat\":1000000}" > /dev/null
# Open the channel once (the first visit), outside the measurement.
"$trickle" fetch "$proxy/articles/0" --budget 100000 > /dev/null 2>&1

free=(); paid=(); free1=(); paid1=()
for round in $(seq "$ROUNDS"); do
  one=$((PAGES * (ROUNDS + 1) + round))
  base=$((round * PAGES))
  urls_free=(); urls_paid=()
  for n in $(seq "$base" $((base + PAGES - 1))); do
    urls_free+=("$proxy/free/$n"); urls_paid+=("$proxy/articles/$n")
  done
  # Start and end times from bash itself: no process start inside the measured interval.
  run() {
    local t0="$EPOCHREALTIME"
    "$trickle" fetch "$@" > /dev/null 2> "$work/fetch.err" || { cat "$work/fetch.err" >&2; return 1; }
    echo "$t0-$EPOCHREALTIME"
  }
  if [ $((round % 2)) = 1 ]; then
    f=$(run "${urls_free[@]}"); p=$(run "${urls_paid[@]}")
    f1=$(run "$proxy/free/$one"); p1=$(run "$proxy/articles/$one")
  else
    p=$(run "${urls_paid[@]}"); f=$(run "${urls_free[@]}")
    p1=$(run "$proxy/articles/$one"); f1=$(run "$proxy/free/$one")
  fi
  free+=("$f"); paid+=("$p"); free1+=("$f1"); paid1+=("$p1")
done
python3 - "${free[*]}" "${paid[*]}" "${free1[*]}" "${paid1[*]}" "$PAGES" "$PROFILE" <<'PY'
import os, statistics, sys
def spans(arg):
    return [float(b) - float(a) for a, b in (x.split("-") for x in arg.split())]
free, paid, free1, paid1 = (spans(a) for a in sys.argv[1:5])
pages = int(sys.argv[5])
print(f"profile {sys.argv[6]}, {len(free)} rounds")
mf, mp = statistics.median(free), statistics.median(paid)
print(f"{pages} unpaid fetches: median {mf:.3f} s  ({mf / pages * 1e3:.2f} ms each)  rounds: {', '.join(f'{x:.3f}' for x in free)}")
print(f"{pages} paid fetches:   median {mp:.3f} s  ({mp / pages * 1e3:.2f} ms each)  rounds: {', '.join(f'{x:.3f}' for x in paid)}")
print(f"paid / unpaid: {mp / mf:.2f}x")
# Per further page, within each round, then the median over rounds.
ef = statistics.median((a - b) / (pages - 1) for a, b in zip(free, free1))
ep = statistics.median((a - b) / (pages - 1) for a, b in zip(paid, paid1))
m1f, m1p = statistics.median(free1), statistics.median(paid1)
print(f"once per run: unpaid {m1f * 1e3:.1f} ms, paid {m1p * 1e3:.1f} ms (1-page runs)")
print(f"each further page: unpaid {ef * 1e3:.2f} ms, paid {ep * 1e3:.2f} ms, paid / unpaid: {ep / ef:.2f}x")
rows = os.environ.get("BENCH_ROWS")
if rows:
    with open(rows, "a") as f:
        f.write(f"| trickle fetch: {pages} paid pages, pre-armed (whole run, median of {len(free)}) "
                f"| {mp * 1e3:.0f} ms | {pages} unpaid {mf * 1e3:.0f} ms | {mp / mf:.2f} |\n")
        f.write(f"| trickle fetch: each further paid page (run of {pages} minus run of 1) "
                f"| {ep * 1e3:.2f} ms | unpaid {ef * 1e3:.2f} ms | {ep / ef:.2f} |\n")
PY
