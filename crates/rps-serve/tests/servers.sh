#!/usr/bin/env bash
# Start/stop the PostgreSQL that the ignored rps-serve tests (GET /api/history, the dashboard
# in headless Chromium) need: PostgreSQL 15 (initdb, pg_ctl on PATH, e.g. /usr/local/bin), a
# throwaway cluster with trust auth on a free loopback port. RPS_TEST_DATABASE_URL points at its
# `postgres` database; each test creates a database of its own there, with the `candles` and
# `predictions` tables of crates/rps-stream/migrations/0001_init.sql.
#
#   servers.sh start VENV_PYTHON STATE_DIR   # prints `export RPS_TEST_DATABASE_URL=…` on stdout
#   servers.sh stop STATE_DIR
#
# initdb refuses to run as root: as root the cluster belongs to the user `postgres`
# (runuser), otherwise to the current user. Exports are also written to STATE_DIR/pg/env.sh.
set -euo pipefail
# Debian's postgresql package keeps initdb/pg_ctl in /usr/lib/postgresql/<major>/bin, off the PATH.
if ! command -v initdb >/dev/null; then
  for d in /usr/lib/postgresql/*/bin; do [[ -x "$d/initdb" ]] && PATH="$d:$PATH"; done
fi

die() { echo "servers.sh (postgres): $*" >&2; exit 1; }

as_owner() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop_pg() {
  local data="$STATE/pg/data"
  [[ -f "$data/postmaster.pid" ]] || return 0
  as_owner pg_ctl -D "$data" -m fast -w stop >/dev/null 2>&1 || true
}

case "${1:-}" in
  start)
    [[ $# -eq 3 ]] || die "usage: servers.sh start VENV_PYTHON STATE_DIR"
    PY="$2"
    [[ -x "$PY" ]] || PY=$(command -v python3) || die "no python to pick a free port"
    command -v initdb >/dev/null && command -v pg_ctl >/dev/null \
      || die "initdb / pg_ctl not found (PostgreSQL 15 server binaries on PATH)"
    mkdir -p "$3/pg"
    STATE="$(cd "$3" && pwd)"
    stop_pg
    rm -rf "$STATE/pg/data"
    mkdir -p "$STATE/pg/data"
    if [[ $(id -u) -eq 0 ]]; then
      # The cluster's owner must reach its folder: traverse-only on the parents.
      chmod o+x "$STATE" "$STATE/pg"
      chown postgres: "$STATE/pg/data"
    fi
    as_owner initdb -D "$STATE/pg/data" -A trust -U postgres >"$STATE/pg/initdb.log" 2>&1 \
      || { tail -n 20 "$STATE/pg/initdb.log" >&2; die "initdb failed"; }
    port="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
    as_owner pg_ctl -D "$STATE/pg/data" -l "$STATE/pg/data/server.log" -w -t 60 \
      -o "-p $port -k $STATE/pg/data -c listen_addresses=127.0.0.1" start >/dev/null \
      || { tail -n 30 "$STATE/pg/data/server.log" >&2; die "PostgreSQL did not start"; }
    echo "export RPS_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$port/postgres" >"$STATE/pg/env.sh"
    echo "servers.sh (postgres): ready on :$port" >&2
    cat "$STATE/pg/env.sh"
    ;;
  stop)
    [[ $# -eq 2 ]] || die "usage: servers.sh stop STATE_DIR"
    [[ -d "$2" ]] || exit 0
    STATE="$(cd "$2" && pwd)"
    stop_pg
    ;;
  *) die "usage: servers.sh start VENV_PYTHON STATE_DIR | servers.sh stop STATE_DIR" ;;
esac
