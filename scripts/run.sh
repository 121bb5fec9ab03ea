#!/usr/bin/env bash
# Brings up Trickle on the local chain: the regtest chain (Esplora API on :3002), a demo site
# (:3000) and the payee proxy pricing its articles (:8080), then shows how to pay with the
# `trickle` CLI. State is kept in .trickle/; Or with the extension: `make extension`, load dist/extension/ (chrome://extensions, Developer
mode, Load unpacked), choose network regtest on its welcome screen (Esplora
http://127.0.0.1:3002), and fund its receive address with the faucet call above.

Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
state="$PWD/.trickle"
mkdir -p "$state/site/articles"
cargo build -p trickle-regtest -p trickle-payee -p trickle-cli
bin="${CARGO_TARGET_DIR:-$PWD/target}/debug"

for n in 1 2 3; do
  echo "<h1>Article $n</h1><p>Paid for, 10 sat at a time.</p>" > "$state/site/articles/$n.html"
done
echo '<h1>Trickle demo site</h1><p>The home page is free; /articles/ cost 10 sat each.</p>' \
  > "$state/site/index.html"

cat > "$state/payee.toml" <<TOML
listen = "127.0.0.1:8080"
upstream = "http://127.0.0.1:3000"
network = "regtest"
esplora = "http://127.0.0.1:3002"
database = "$state/payee.sqlite3"
key_file = "$state/payee.key"
operator_listen = "127.0.0.1:9090"
poll_interval_secs = 10

[policy]
versions = [2, 1]
min_channel_value = 10000
max_channel_value = 1000000
min_payment = 1000
min_expiry_blocks = 144
max_expiry_blocks = 1008
close_margin_blocks = 12

[[price]]
path = "/articles"
sat = 10
description = "An article"
mime_type = "text/html"
TOML

trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
# Starts a server in the background and waits for its first line (its URL).
start() {
  local log="$state/$1.log"; shift
  : > "$log"
  "$@" > "$log" 2>&1 &
  for _ in $(seq 100); do [ -s "$log" ] && break; sleep 0.1; done
  head -n 1 "$log"
}
start regtest "$bin/trickle-regtest" --port 3002 --datadir "$state/regtest"
python3 -m http.server 3000 --bind 127.0.0.1 --directory "$state/site" >/dev/null 2>&1 &
start payee "$bin/trickle-payee" --config "$state/payee.toml"

cat <<HELP

Trickle is running on the local chain:
  chain (Esplora API)  http://127.0.0.1:3002   faucet: POST /regtest/faucet, mine: POST /regtest/mine
  demo site            http://127.0.0.1:3000
  payee proxy          http://127.0.0.1:8080   (operator view: http://127.0.0.1:9090/status.html)

Pay with the CLI, in another terminal:
  export TRICKLE_DIR=.trickle/wallet TRICKLE_PASSWORD=demo
  alias trickle=$bin/trickle
  trickle wallet create
  curl -s -X POST http://127.0.0.1:3002/regtest/faucet -H 'content-type: application/json' \\
       -d "{\"address\":\"\$(trickle wallet address)\",\"amount_sat\":200000}"
  trickle fetch http://127.0.0.1:8080/articles/1.html
  trickle channels
  trickle close 127.0.0.1

Or with the extension: `make extension`, load dist/extension/ (chrome://extensions, Developer
mode, Load unpacked), choose network regtest on its welcome screen (Esplora
http://127.0.0.1:3002), and fund its receive address with the faucet call above.

Ctrl-C stops everything.
HELP
wait
