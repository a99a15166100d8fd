#!/usr/bin/env bash
# Start/stop the servers the ignored streaming tests of rps-stream need, on loopback:
#   - PostgreSQL 15 (initdb + pg_ctl, trust auth, a throw-away data dir, a free port)
#   - tansu 0.6, a Kafka-compatible broker, in memory (`--storage-engine memory://tansu/`)
#
#   servers.sh start VENV_PYTHON STATE_DIR   # prints `export RPS_TEST_…=…` lines on stdout
#   servers.sh stop STATE_DIR
#
# Exports RPS_TEST_DATABASE_URL (the `postgres` database; tests create their own databases) and
# RPS_TEST_KAFKA_BROKERS; also written to STATE_DIR/stream/env.sh. The tansu binary is taken from
# $RPS_TANSU, the PATH or ~/.cache/rps-tools/bin, and built there when missing (≈ 15 min, once):
#   cargo install tansu --locked --features dynostore --root ~/.cache/rps-tools
# PostgreSQL's server refuses to run as root: as root, initdb and pg_ctl run as user postgres.
set -euo pipefail
# Debian's postgresql package keeps initdb/pg_ctl in /usr/lib/postgresql/<major>/bin, off the PATH.
if ! command -v initdb >/dev/null; then
  for d in /usr/lib/postgresql/*/bin; do [[ -x "$d/initdb" ]] && PATH="$d:$PATH"; done
fi

READY_TIMEOUT="${RPS_STREAM_READY_TIMEOUT:-60}"
TOOLS="${RPS_TOOLS_ROOT:-$HOME/.cache/rps-tools}"
die() { echo "servers.sh (stream): $*" >&2; exit 1; }

as_pg() {
  if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop_all() {
  local pidfile="$STATE/stream/tansu.pid" pid i
  if [[ -f "$pidfile" ]]; then
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for i in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  fi
  if [[ -f "$STATE/stream/pgdata.path" ]]; then
    local pgdata
    pgdata="$(cat "$STATE/stream/pgdata.path")"
    if [[ -f "$pgdata/postmaster.pid" ]]; then
      as_pg pg_ctl -D "$pgdata" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$pgdata" "$STATE/stream/pgdata.path"
  fi
}

find_tansu() {
  if [[ -n "${RPS_TANSU:-}" && -x "${RPS_TANSU}" ]]; then echo "$RPS_TANSU"; return; fi
  if command -v tansu >/dev/null; then command -v tansu; return; fi
  if [[ ! -x "$TOOLS/bin/tansu" ]]; then
    echo "servers.sh (stream): building tansu into $TOOLS (once, ≈ 15 min)" >&2
    cargo install tansu --version '^0.6' --locked --features dynostore --root "$TOOLS" >&2
  fi
  echo "$TOOLS/bin/tansu"
}

case "${1:-}" in
  start)
    [[ $# -eq 3 ]] || die "usage: servers.sh start VENV_PYTHON STATE_DIR"
    PY="$2"
    [[ -x "$PY" ]] || PY="$(command -v python3)"
    mkdir -p "$3/stream"
    STATE="$(cd "$3" && pwd)"
    stop_all
    command -v initdb >/dev/null && command -v pg_ctl >/dev/null || die "PostgreSQL's initdb/pg_ctl not on the PATH"
    free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

    # PostgreSQL: its own data dir outside STATE (STATE may be private to this user).
    pgdata="$(mktemp -d "${TMPDIR:-/tmp}/rps-pg.XXXXXX")"
    echo "$pgdata" >"$STATE/stream/pgdata.path"
    [[ "$(id -u)" == 0 ]] && chown postgres: "$pgdata"
    chmod 700 "$pgdata"
    as_pg initdb -D "$pgdata" -A trust -U postgres >"$STATE/stream/initdb.log" 2>&1 \
      || { tail -n 20 "$STATE/stream/initdb.log" >&2; die "initdb failed"; }
    pg_port="$(free_port)"
    as_pg pg_ctl -D "$pgdata" -l "$pgdata/server.log" -w -t "$READY_TIMEOUT" \
      -o "-p $pg_port -k $pgdata -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null \
      || { tail -n 20 "$pgdata/server.log" >&2; stop_all; die "PostgreSQL did not start"; }

    # tansu, in its own process group.
    tansu="$(find_tansu)"
    [[ -x "$tansu" ]] || { stop_all; die "no tansu binary"; }
    k_port="$(free_port)"
    setsid "$tansu" broker --storage-engine memory://tansu/ \
      --listener-url "tcp://127.0.0.1:$k_port" --advertised-listener-url "tcp://127.0.0.1:$k_port" \
      </dev/null >"$STATE/stream/tansu.log" 2>&1 &
    echo $! >"$STATE/stream/tansu.pid"
    deadline=$((SECONDS + READY_TIMEOUT))
    until (exec 3<>"/dev/tcp/127.0.0.1/$k_port") 2>/dev/null; do
      kill -0 "$(cat "$STATE/stream/tansu.pid")" 2>/dev/null || { tail -n 30 "$STATE/stream/tansu.log" >&2; stop_all; die "tansu exited during start-up"; }
      ((SECONDS < deadline)) || { stop_all; die "tansu not listening on $k_port after ${READY_TIMEOUT}s"; }
      sleep 0.25
    done
    {
      echo "export RPS_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$pg_port/postgres"
      echo "export RPS_TEST_KAFKA_BROKERS=127.0.0.1:$k_port"
    } >"$STATE/stream/env.sh"
    echo "servers.sh (stream): PostgreSQL on :$pg_port, tansu on :$k_port" >&2
    cat "$STATE/stream/env.sh"
    ;;
  stop)
    [[ $# -eq 2 ]] || die "usage: servers.sh stop STATE_DIR"
    [[ -d "$2" ]] || exit 0
    STATE="$(cd "$2" && pwd)"
    stop_all
    ;;
  *) die "usage: servers.sh start VENV_PYTHON STATE_DIR | servers.sh stop STATE_DIR" ;;
esac
