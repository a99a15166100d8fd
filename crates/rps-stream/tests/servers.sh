#!/usr/bin/env bash
# Start/stop the servers the ignored streaming tests of rps-stream need, on loopback:
#   - PostgreSQL: the tests' shared server, tests/servers/postgres.sh (reused when another
#     crate's servers.sh started it in the same STATE_DIR, as `make test` does)
#   - tansu 0.6, a Kafka-compatible broker, in memory (`--storage-engine memory://tansu/`)
#
#   servers.sh start VENV_PYTHON STATE_DIR   # prints `export RPS_TEST_…=…` lines on stdout
#   servers.sh stop STATE_DIR
#
# Exports RPS_TEST_DATABASE_URL (the `postgres` database; tests create their own databases) and
# RPS_TEST_KAFKA_BROKERS, and RPS_TEST_TANSU (the binary: the outage tests start brokers of their
# own, stored in the S3 server so that a restart keeps the topic); also written to STATE_DIR/stream/env.sh. The tansu binary is taken from
# $RPS_TANSU, the PATH or ~/.cache/rps-tools/bin, and built there when missing (≈ 15 min, once):
#   cargo install tansu --locked --features dynostore --root ~/.cache/rps-tools
set -euo pipefail
PG="$(dirname "$0")/../../../tests/servers/postgres.sh"

READY_TIMEOUT="${RPS_STREAM_READY_TIMEOUT:-60}"
TOOLS="${RPS_TOOLS_ROOT:-$HOME/.cache/rps-tools}"
die() { echo "servers.sh (stream): $*" >&2; exit 1; }

stop_tansu() {
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
}

stop_all() {
  stop_tansu
  bash "$PG" stop "$STATE" >/dev/null 2>&1 || true
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
    stop_tansu
    free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
    pg_env="$(bash "$PG" start "$PY" "$STATE")" || die "PostgreSQL did not start"

    # tansu, in its own process group.
    tansu="$(find_tansu)"
    [[ -x "$tansu" ]] || { stop_tansu; die "no tansu binary"; }
    k_port="$(free_port)"
    setsid "$tansu" broker --storage-engine memory://tansu/ \
      --listener-url "tcp://127.0.0.1:$k_port" --advertised-listener-url "tcp://127.0.0.1:$k_port" \
      </dev/null >"$STATE/stream/tansu.log" 2>&1 &
    echo $! >"$STATE/stream/tansu.pid"
    deadline=$((SECONDS + READY_TIMEOUT))
    until (exec 3<>"/dev/tcp/127.0.0.1/$k_port") 2>/dev/null; do
      kill -0 "$(cat "$STATE/stream/tansu.pid")" 2>/dev/null || { tail -n 30 "$STATE/stream/tansu.log" >&2; stop_tansu; die "tansu exited during start-up"; }
      ((SECONDS < deadline)) || { stop_tansu; die "tansu not listening on $k_port after ${READY_TIMEOUT}s"; }
      sleep 0.25
    done
    {
      echo "$pg_env"
      echo "export RPS_TEST_KAFKA_BROKERS=127.0.0.1:$k_port"
      echo "export RPS_TEST_TANSU=$tansu"
    } >"$STATE/stream/env.sh"
    echo "servers.sh (stream): tansu on :$k_port" >&2
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
