#!/usr/bin/env bash
# Runs a command beside a throwaway PostgreSQL server on 127.0.0.1 (Debian's postgresql
# package), exposed as TRICKLE_TEST_POSTGRES_URL; the server and its data go when it ends.
set -euo pipefail
bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")
dir=$(mktemp -d /tmp/trickle-pg.XXXXXX)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# initdb refuses to run as root: run the server as the postgres user when we are root.
as_pg() { if [ "$(id -u)" -eq 0 ]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi; }
[ "$(id -u)" -eq 0 ] && chown postgres "$dir"
as_pg "$bin/initdb -D $dir/data -A trust -U postgres >/dev/null"
as_pg "$bin/pg_ctl -D $dir/data -l $dir/log -o '-p $port -k $dir -c listen_addresses=127.0.0.1' -w start >/dev/null"
trap 'as_pg "$bin/pg_ctl -D $dir/data -m fast -w stop >/dev/null" || true; rm -rf "$dir"' EXIT
export TRICKLE_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
echo "with-postgres: PostgreSQL on 127.0.0.1:$port"
"$@"
