#!/usr/bin/env bash
# Start/stop the S3-compatible server that the ignored S3 tests (rps-store, the pipeline's S3 and
# DVC tests) need: moto's server (MinIO is in no registry here; moto speaks the S3 HTTP API,
# multipart included, and keeps everything in memory).
#
#   servers.sh start VENV_PYTHON STATE_DIR   # prints `export RPS_TEST_S3_…=…` lines on stdout
#   servers.sh stop STATE_DIR
#
# VENV_PYTHON has `moto[server]` (tests/python/requirements-data.txt). The server listens on a
# free loopback port in its own process group; a bucket `rps-test` is created. moto accepts any
# credentials, so the exports carry dummy ones. Exports are also written to STATE_DIR/s3/env.sh.
set -euo pipefail

READY_TIMEOUT="${RPS_S3_READY_TIMEOUT:-60}"
die() { echo "servers.sh (s3): $*" >&2; exit 1; }

stop_moto() {
  local pidfile="$STATE/s3/moto.pid" pid i
  [[ -f "$pidfile" ]] || return 0
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

case "${1:-}" in
  start)
    [[ $# -eq 3 ]] || die "usage: servers.sh start VENV_PYTHON STATE_DIR"
    PY="$2"
    [[ -x "$PY" ]] || die "$PY is not an executable python"
    mkdir -p "$3/s3"
    STATE="$(cd "$3" && pwd)"
    moto_server="$(dirname "$PY")/moto_server"
    [[ -x "$moto_server" ]] || die "$moto_server missing; install tests/python/requirements-data.txt"
    stop_moto
    port="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
    setsid "$moto_server" -H 127.0.0.1 -p "$port" </dev/null >"$STATE/s3/moto.log" 2>&1 &
    echo $! >"$STATE/s3/moto.pid"
    deadline=$((SECONDS + READY_TIMEOUT))
    until curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/moto-api/" 2>/dev/null; do
      kill -0 "$(cat "$STATE/s3/moto.pid")" 2>/dev/null || { tail -n 30 "$STATE/s3/moto.log" >&2; die "moto exited during start-up"; }
      ((SECONDS < deadline)) || { stop_moto; die "moto not ready on port $port after ${READY_TIMEOUT}s"; }
      sleep 0.5
    done
    curl -fsS -o /dev/null -X PUT "http://127.0.0.1:$port/rps-test" || { stop_moto; die "could not create bucket rps-test"; }
    {
      echo "export RPS_TEST_S3_ENDPOINT=http://127.0.0.1:$port"
      echo "export RPS_TEST_S3_BUCKET=rps-test"
      echo "export RPS_TEST_MOTO_SERVER=$moto_server"
    } >"$STATE/s3/env.sh"
    echo "servers.sh (s3): moto ready on :$port, bucket rps-test" >&2
    cat "$STATE/s3/env.sh"
    ;;
  stop)
    [[ $# -eq 2 ]] || die "usage: servers.sh stop STATE_DIR"
    [[ -d "$2" ]] || exit 0
    STATE="$(cd "$2" && pwd)"
    stop_moto
    ;;
  *) die "usage: servers.sh start VENV_PYTHON STATE_DIR | servers.sh stop STATE_DIR" ;;
esac
