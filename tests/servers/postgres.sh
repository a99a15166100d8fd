#!/usr/bin/env bash
# Start/stop the one throwaway PostgreSQL the tests share (the rps-serve history/dashboard tests,
# the rps-stream tests, the Airflow reconcile test): initdb + pg_ctl, trust auth, fsync off, a
# free loopback port, its data folder outside STATE_DIR (which may be private to this user).
#
#   postgres.sh start VENV_PYTHON STATE_DIR   # prints `export RPS_TEST_DATABASE_URL=…` on stdout
#   postgres.sh stop STATE_DIR
#   postgres.sh restart STATE_DIR [DOWN_SECS]  # fast shutdown, DOWN_SECS down, start on the same port
#
# RPS_TEST_DATABASE_URL points at the `postgres` database; each test creates databases of its
# own there. A second `start` with the same STATE_DIR reuses the running server, so several
# crates' servers.sh can ask for it and `make test` still runs one. Also written to
# STATE_DIR/pg/env.sh. initdb refuses to run as root: as root the cluster belongs to the user
# `postgres` (runuser). Debian's postgresql package keeps initdb/pg_ctl in
# /usr/lib/postgresql/<major>/bin, off the PATH: they are looked for there too.
set -euo pipefail
if ! command -v initdb >/dev/null; then
  for d in /usr/lib/postgresql/*/bin; do [[ -x "$d/initdb" ]] && PATH="$d:$PATH"; done
fi
READY_TIMEOUT="${RPS_PG_READY_TIMEOUT:-60}"
die() { echo "postgres.sh: $*" >&2; exit 1; }
as_owner() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}
running() { # DATA
  [[ -f "$1/postmaster.pid" ]] && as_owner pg_ctl -D "$1" status >/dev/null 2>&1
}
stop_pg() {
  local pgdata
  [[ -f "$STATE/pg/data.path" ]] || return 0
  pgdata="$(cat "$STATE/pg/data.path")"
  if [[ -f "$pgdata/postmaster.pid" ]]; then
    as_owner pg_ctl -D "$pgdata" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$pgdata" "$STATE/pg/data.path" "$STATE/pg/env.sh" "$STATE/pg/port"
}

case "${1:-}" in
  start)
    [[ $# -eq 3 ]] || die "usage: postgres.sh start VENV_PYTHON STATE_DIR"
    PY="$2"
    [[ -x "$PY" ]] || PY=$(command -v python3) || die "no python to pick a free port"
    command -v initdb >/dev/null && command -v pg_ctl >/dev/null \
      || die "initdb / pg_ctl not found (install Debian's postgresql; make setup-tools does)"
    mkdir -p "$3/pg"
    STATE="$(cd "$3" && pwd)"
    if [[ -f "$STATE/pg/env.sh" && -f "$STATE/pg/data.path" ]] && running "$(cat "$STATE/pg/data.path")"; then
      echo "postgres.sh: reusing the server of $STATE" >&2
      cat "$STATE/pg/env.sh"
      exit 0
    fi
    stop_pg
    pgdata="$(mktemp -d "${TMPDIR:-/tmp}/rps-pg.XXXXXX")"
    echo "$pgdata" >"$STATE/pg/data.path"
    [[ $(id -u) -eq 0 ]] && chown postgres: "$pgdata"
    chmod 700 "$pgdata"
    as_owner initdb -D "$pgdata" -A trust -U postgres >"$STATE/pg/initdb.log" 2>&1 \
      || { tail -n 20 "$STATE/pg/initdb.log" >&2; stop_pg; die "initdb failed"; }
    port="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
    as_owner pg_ctl -D "$pgdata" -l "$pgdata/server.log" -w -t "$READY_TIMEOUT" \
      -o "-p $port -k $pgdata -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null \
      || { tail -n 30 "$pgdata/server.log" >&2; stop_pg; die "PostgreSQL did not start"; }
    echo "$port" >"$STATE/pg/port"
    echo "export RPS_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$port/postgres" >"$STATE/pg/env.sh"
    echo "postgres.sh: ready on :$port" >&2
    cat "$STATE/pg/env.sh"
    ;;
  restart)
    # The outage tests: clients see an admin shutdown, then refused connections, then the
    # same server (same data, same port) again.
    [[ $# -ge 2 ]] || die "usage: postgres.sh restart STATE_DIR [DOWN_SECS]"
    STATE="$(cd "$2" && pwd)"
    pgdata="$(cat "$STATE/pg/data.path")" port="$(cat "$STATE/pg/port")"
    as_owner pg_ctl -D "$pgdata" -m fast -w stop >/dev/null
    sleep "${3:-0}"
    as_owner pg_ctl -D "$pgdata" -l "$pgdata/server.log" -w -t "$READY_TIMEOUT" \
      -o "-p $port -k $pgdata -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null \
      || { tail -n 30 "$pgdata/server.log" >&2; die "PostgreSQL did not come back"; }
    echo "postgres.sh: restarted on :$port" >&2
    ;;
  stop)
    [[ $# -eq 2 ]] || die "usage: postgres.sh stop STATE_DIR"
    [[ -d "$2" ]] || exit 0
    STATE="$(cd "$2" && pwd)"
    stop_pg
    ;;
  *) die "usage: postgres.sh start VENV_PYTHON STATE_DIR | postgres.sh stop STATE_DIR | postgres.sh restart STATE_DIR [DOWN_SECS]" ;;
esac
