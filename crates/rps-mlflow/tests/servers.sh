#!/usr/bin/env bash
# Start/stop the real MLflow servers that the ignored integration tests of rps-mlflow need.
#
#   servers.sh start VENV_PYTHON STATE_DIR   # prints `export RPS_TEST_MLFLOW_…=…` lines on stdout
#   servers.sh stop STATE_DIR
#
# VENV_PYTHON is a python with `mlflow[auth]` installed (tests/python/requirements-mlflow.txt).
# Two servers are started on free loopback ports, each in its own process group:
#   plain      sqlite store + proxied artifacts (--serve-artifacts)
#   basic-auth the same with `--app-name basic-auth` and a generated admin password
# and RPS_TEST_MLFLOW_PYTHON is set to VENV_PYTHON (tests load logged models with it).
# Typical use:
#   eval "$(bash crates/rps-mlflow/tests/servers.sh start "$VENV/bin/python" target/mlflow-test)"
#   cargo test -p rps-mlflow -- --include-ignored
#   bash crates/rps-mlflow/tests/servers.sh stop target/mlflow-test
# Everything but the export lines goes to stderr or to log files in STATE_DIR; the export lines
# are also written to STATE_DIR/env.sh (`. target/mlflow-test/env.sh` in another shell).
set -euo pipefail

READY_TIMEOUT="${RPS_MLFLOW_READY_TIMEOUT:-120}"

die() { echo "servers.sh: $*" >&2; exit 1; }

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# stop_one NAME: TERM the process group recorded in NAME.pid, KILL it after 15 s.
stop_one() {
  local pidfile="$STATE/$1.pid" pid i
  [[ -f "$pidfile" ]] || return 0
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 30); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
}

# start_one NAME PORT EXTRA_ARGS...: start `mlflow server` in its own session (pgid == pid).
start_one() {
  local name="$1" port="$2"; shift 2
  local dir="$STATE/$name"
  mkdir -p "$dir/artifacts"
  setsid "$PY" -m mlflow server \
    --host 127.0.0.1 --port "$port" \
    --backend-store-uri "sqlite:///$dir/mlflow.db" \
    --artifacts-destination "$dir/artifacts" \
    --serve-artifacts --workers 1 "$@" \
    </dev/null >"$dir/server.log" 2>&1 &
  echo $! >"$STATE/$name.pid"
}

# wait_ready NAME PORT: poll /health until it answers 200, bounded by READY_TIMEOUT.
wait_ready() {
  local name="$1" port="$2" deadline=$((SECONDS + READY_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$(cat "$STATE/$name.pid")" 2>/dev/null; then
      tail -n 40 "$STATE/$name/server.log" >&2 || true
      die "$name server exited during start-up (log: $STATE/$name/server.log)"
    fi
    if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/health" 2>/dev/null; then
      return 0
    fi
    sleep 1
  done
  tail -n 40 "$STATE/$name/server.log" >&2 || true
  die "$name server not ready on port $port after ${READY_TIMEOUT}s (log: $STATE/$name/server.log)"
}

cmd="${1:-}"
case "$cmd" in
  start)
    [[ $# -eq 3 ]] || die "usage: servers.sh start VENV_PYTHON STATE_DIR"
    [[ -e "$2" ]] || die "$2 does not exist"
    PY="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
    mkdir -p "$3"
    STATE="$(cd "$3" && pwd)"
    [[ -x "$PY" ]] || die "$PY is not an executable python"
    "$PY" -c 'import mlflow.server.auth' 2>/dev/null || die "$PY has no mlflow[auth]; install tests/python/requirements-mlflow.txt"
    stop_one plain
    stop_one auth
    rm -rf "$STATE/plain" "$STATE/auth"
    trap 'stop_one plain; stop_one auth' ERR

    plain_port="$(free_port)"
    auth_port="$(free_port)"
    while [[ "$auth_port" == "$plain_port" ]]; do auth_port="$(free_port)"; done

    start_one plain "$plain_port"

    admin_user=admin
    admin_password="rps-admin-$("$PY" -c 'import secrets; print(secrets.token_hex(8))')"
    mkdir -p "$STATE/auth"
    cat >"$STATE/auth/basic_auth.ini" <<INI
[mlflow]
default_permission = READ
database_uri = sqlite:///$STATE/auth/basic_auth.db
admin_username = $admin_user
admin_password = $admin_password
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
    MLFLOW_AUTH_CONFIG_PATH="$STATE/auth/basic_auth.ini" \
    MLFLOW_FLASK_SERVER_SECRET_KEY="$("$PY" -c 'import secrets; print(secrets.token_hex(16))')" \
      start_one auth "$auth_port" --app-name basic-auth

    wait_ready plain "$plain_port"
    wait_ready auth "$auth_port"
    trap - ERR
    {
      echo "export RPS_TEST_MLFLOW_URI=http://127.0.0.1:$plain_port"
      echo "export RPS_TEST_MLFLOW_AUTH_URI=http://127.0.0.1:$auth_port"
      echo "export RPS_TEST_MLFLOW_ADMIN_USER=$admin_user"
      echo "export RPS_TEST_MLFLOW_ADMIN_PASSWORD=$admin_password"
      echo "export RPS_TEST_MLFLOW_PYTHON=$PY"
    } >"$STATE/env.sh"
    echo "servers.sh: MLflow ready: plain :$plain_port, basic-auth :$auth_port (state $STATE; exports also in $STATE/env.sh)" >&2
    cat "$STATE/env.sh"
    ;;
  stop)
    [[ $# -eq 2 ]] || die "usage: servers.sh stop STATE_DIR"
    [[ -d "$2" ]] || exit 0
    STATE="$(cd "$2" && pwd)"
    stop_one plain
    stop_one auth
    ;;
  *)
    die "usage: servers.sh start VENV_PYTHON STATE_DIR | servers.sh stop STATE_DIR"
    ;;
esac
