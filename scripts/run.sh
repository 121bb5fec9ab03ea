#!/usr/bin/env bash
# Brings up Trickle on the local chain, to try it by hand: the regtest chain (Esplora API on
# :3002), the demo site of demo/site/ (:3000), the payee proxy pricing its articles and its JSON
# API (demo/payee.toml; :8080, operator view :9090), and the extension built into dist/extension/,
# opened in Chromium when there is a display. Prints where everything runs, how to fund a wallet
# and how to pay with the `trickle` CLI. State is kept in .trickle/ (or $TRICKLE_RUN_DIR). Ctrl-C
# stops everything. scripts/test-walkthrough.sh runs the CLI steps it prints (with
# TRICKLE_RUN_SKIP_EXTENSION=1, which starts everything but the extension).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
state="${TRICKLE_RUN_DIR:-$root/.trickle}"
ext="$root/dist/extension"
site=http://127.0.0.1:8080/

# The ports are fixed (the extension's regtest default and the printed commands name them):
# stop before building anything if one is taken.
taken=$(python3 - <<'PY'
import socket
for port, what in ((3002, "regtest chain"), (3000, "demo site"), (8080, "payee proxy"),
                   (9090, "payee operator view")):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        print(f"  127.0.0.1:{port} (for the {what})")
    s.close()
PY
)
if [ -n "$taken" ]; then
  echo "run: these ports are taken:" >&2
  echo "$taken" >&2
  echo "run: stop what listens there (\`ss -ltnp\` shows it; an earlier \`make run\`?) and retry" >&2
  exit 1
fi

cargo build -p trickle-regtest -p trickle-payee -p trickle-cli
bin="${CARGO_TARGET_DIR:-$root/target}/debug"
extension=yes
if [ "${TRICKLE_RUN_SKIP_EXTENSION:-}" = 1 ]; then
  extension=
elif ! bash scripts/build-extension.sh; then
  extension=
  echo "run: the extension build failed (above); starting the rest without it" >&2
fi

mkdir -p "$state"
cp demo/payee.toml "$state/payee.toml" # relative paths in it land in $state

pids=()
# shellcheck disable=SC2317 # called by the trap
cleanup() {
  trap - EXIT INT TERM
  if [ ${#pids[@]} -gt 0 ]; then
    local pid
    for pid in "${pids[@]}"; do kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; done
    wait "${pids[@]}" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME PORT COMMAND...: runs COMMAND in the background, logging to $state/NAME.log, and
# waits until it listens on PORT; stops everything, showing the log, if it exits or never does.
# Each command runs in a session of its own, so that stopping it stops what it forked too (a
# `python3` that is a shim starting the real one, as pyenv's may).
start() {
  local name=$1 port=$2 log="$state/$1.log"
  shift 2
  setsid "$@" > "$log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 600); do
    if (exec 3<> "/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "run: the $name stopped at start; the end of $log:" >&2
      tail -n 20 "$log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "run: the $name does not listen on :$port after a minute; see $log" >&2
  exit 1
}
start "regtest chain" 3002 "$bin/trickle-regtest" --port 3002 --datadir "$state/regtest"
start "demo site" 3000 python3 -m http.server 3000 --bind 127.0.0.1 --directory "$root/demo/site"
start "payee proxy" 8080 "$bin/trickle-payee" --config "$state/payee.toml"
servers=("${pids[@]}")

browser=
if [ -n "$extension" ] && [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && command -v chromium >/dev/null; then
  flags=(--user-data-dir="$state/chromium-profile" --no-first-run
    --disable-extensions-except="$ext" --load-extension="$ext")
  [ "$(id -u)" -ne 0 ] || flags+=(--no-sandbox) # Chromium refuses to run as root without it
  chromium "${flags[@]}" "$site" > "$state/chromium.log" 2>&1 &
  pids+=("$!")
  browser=yes
fi

# Paths as README.md shows them: relative to this directory when they are in it.
shown_state=${state#"$root"/}
shown_bin=${bin#"$root"/}
cat <<HELP

Trickle is running on the local chain (logs in $shown_state/*.log):
  chain (Esplora API)  http://127.0.0.1:3002   faucet: POST /regtest/faucet, mine: POST /regtest/mine
  demo site            http://127.0.0.1:3000   (demo/site/, unpriced)
  payee proxy          $site   /articles/ 10 sat a page, /api/ 2 sat a call
  operator view        http://127.0.0.1:9090/status.html

Fund any regtest address from the faucet (it mines the block too; mine more with
  curl -s -X POST http://127.0.0.1:3002/regtest/mine -H 'content-type: application/json' -d '{"blocks":1}'):
  curl -s -X POST http://127.0.0.1:3002/regtest/faucet -H 'content-type: application/json' \\
       -d '{"address":"ADDR","amount_sat":200000}'

HELP
if [ -n "$browser" ]; then
  echo "The extension: Chromium is open with dist/extension loaded (profile $shown_state/chromium-profile)."
else
  if [ "${TRICKLE_RUN_SKIP_EXTENSION:-}" = 1 ]; then
    echo "The extension was not built (TRICKLE_RUN_SKIP_EXTENSION=1); once \`make extension\` has:"
  elif [ -z "$extension" ]; then
    echo "The extension did not build (see above); once \`make extension\` does:"
  fi
  cat <<HELP
The extension: load it in Chrome or Chromium: open chrome://extensions, turn on Developer mode,
  choose Load unpacked and pick $ext
  then open $site
HELP
fi
cat <<HELP
  On its welcome screen: Change network -> Regtest, Esplora http://127.0.0.1:3002 (allow it),
  then Create a new wallet; Receive shows the address to put in the faucet call above.

HELP
# The walkthrough, as README.md shows it.
cat <<HELP
Pay with the CLI, in another terminal, from this directory:
  export TRICKLE_DIR=$shown_state/wallet TRICKLE_PASSWORD='regtest demo only'
  alias trickle=$shown_bin/trickle
  trickle wallet create
  curl -s -X POST http://127.0.0.1:3002/regtest/faucet -H 'content-type: application/json' \\
       -d "{\"address\":\"\$(trickle wallet address)\",\"amount_sat\":200000}"
  trickle fetch ${site}articles/1.html
  trickle fetch ${site}api/quote/1.json
  trickle channels
  trickle close 127.0.0.1
  curl -s -X POST http://127.0.0.1:3002/regtest/mine -H 'content-type: application/json' -d '{"blocks":1}'
  trickle channels

Ctrl-C stops everything.
HELP
# Until Ctrl-C, or until a server stops by itself (closing Chromium leaves them running).
set +e
wait -n "${servers[@]}"
echo "run: a server stopped; see $shown_state/*.log" >&2
exit 1
