#!/usr/bin/env bash
# The newcomer's walkthrough, end to end: starts `make run` (scripts/run.sh, state in a temporary
# directory, no browser), takes the CLI steps it prints, checks that README.md shows the same
# lines, runs each step literally and checks that each exits 0 and that the settlement of the
# close confirms. Then stops `make run` with Ctrl-C (SIGINT) and checks that it left no server
# behind, with a `python3` that forks the real one (as pyenv's shims may). Needs the ports of
# `make run` free.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d)
run=
fail() {
  echo "walkthrough: $*" >&2
  echo "walkthrough: the end of make run's output:" >&2
  tail -n 30 "$work/run.out" "$work/run.err" >&2 || true
  exit 1
}
# shellcheck disable=SC2317 # called by the trap
cleanup() {
  if [ -n "$run" ] && kill -0 "$run" 2>/dev/null; then kill -INT "$run" 2>/dev/null || true; wait "$run" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

mkdir "$work/shim"
real_python=$(command -v python3)
printf '#!/bin/sh\n# forks, as a shim may: its pid is not the server'"'"'s\n"%s" "$@"\n' "$real_python" > "$work/shim/python3"
chmod +x "$work/shim/python3"

# Job control: the background `make run` is a job of its own and takes SIGINT as from Ctrl-C.
set -m
# The extension is make test's browser step's; the walkthrough is the CLI's.
TRICKLE_RUN_DIR="$work/state" TRICKLE_RUN_SKIP_EXTENSION=1 PATH="$work/shim:$PATH" DISPLAY='' WAYLAND_DISPLAY='' \
  bash scripts/run.sh > "$work/run.out" 2> "$work/run.err" &
run=$!
set +m
for _ in $(seq 3600); do
  grep -q '^Ctrl-C stops everything.' "$work/run.out" && break
  kill -0 "$run" 2>/dev/null || fail "make run stopped before it was ready"
  sleep 0.5
done
grep -q '^Ctrl-C stops everything.' "$work/run.out" || fail "make run not ready after 30 minutes"

# The printed steps: the indented lines after "Pay with the CLI", a trailing `\` continuing a
# step on the next line.
steps() {
  awk '
    /^Pay with the CLI/ { on = 1; next }
    on && /^$/ { exit }
    on { sub(/^  /, ""); sub(/^ +/, " ", $0); line = line $0
         if (line ~ /\\$/) { sub(/\\$/, "", line); next }
         print line; line = "" }
  '
}
steps < "$work/run.out" > "$work/steps"
[ -s "$work/steps" ] || fail "no CLI steps in make run's output"
# README.md shows them with the state in .trickle/ and the binaries in target/debug/.
bin="${CARGO_TARGET_DIR:-$root/target}/debug"
sed -e "s|$work/state|.trickle|g" -e "s|${bin#"$root"/}|target/debug|g" "$work/steps" > "$work/steps.readme"
awk '/^<!-- walkthrough/ { on = 1; next } on && /^```sh/ { next } on && /^```/ { exit }
     on { sub(/^ +/, " "); line = line $0; if (line ~ /\\$/) { sub(/\\$/, "", line); next }
          print line; line = "" }' README.md > "$work/readme.steps"
diff -u "$work/readme.steps" "$work/steps.readme" || fail "README.md's walkthrough is not what make run prints"

shopt -s expand_aliases
n=0
while IFS= read -r step; do
  n=$((n + 1))
  echo "walkthrough: \$ $step"
  # shellcheck disable=SC2294 # the step is a command line, as typed
  if ! eval "$step" < /dev/null > "$work/step$n.out" 2> "$work/step$n.err"; then
    cat "$work/step$n.err" >&2
    fail "step $n exited non-zero: $step"
  fi
  cat "$work/step$n.out"
  [ -z "$(tail -c 1 "$work/step$n.out")" ] || echo
  case $step in
    "trickle close "*) settlement=$(tr -d '[:space:]' < "$work/step$n.out") ;;
  esac
done < "$work/steps"

[ -n "${settlement:-}" ] || fail "no settlement txid printed by the close step"
status=$(curl -sf "http://127.0.0.1:3002/tx/$settlement/status") || fail "settlement $settlement unknown to the chain"
case $status in
  *'"confirmed":true'*) ;;
  *) fail "settlement $settlement not confirmed: $status" ;;
esac
grep -Eq "^http://127\.0\.0\.1:[0-9]+ +Closed " "$work/step$n.out" || fail "the last channels step does not show the channel Closed"
echo "walkthrough: every step exited 0; settlement $settlement confirmed"

# Ctrl-C: make run stops, and with it every server, the forked site process included.
kill -INT "$run"
wait "$run" || true
run=
listening() {
  local port
  for port in 3000 3002 8080 9090; do
    if (exec 3<> "/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "127.0.0.1:$port"; fi
  done
}
for _ in $(seq 50); do
  [ -n "$(listening)" ] || break
  sleep 0.1
done
[ -z "$(listening)" ] || fail "after Ctrl-C something still listens on $(listening | tr '\n' ' ')"
echo "walkthrough: Ctrl-C left nothing running"
