#!/usr/bin/env bash
# Benchmark rps-serve against the reference FastAPI + Python XGBoost app (the seed design) on
# loopback with the same load generator (wrk), and print requests/s and p50 / p99 latency side by
# side, then `ratio: N` (rps-serve requests/s over FastAPI's).
#
# Usage: VENV=/path/to/venv bench/serve/run.sh [REGISTRY_DIR]
#   REGISTRY_DIR  registry with a `champion` of btc-volatility; without it a demo model is trained
#                 on simulated bars into a temporary registry (crates/rps-serve/examples/demo_registry.rs).
#   VENV          virtualenv with bench/serve/requirements.txt installed, e.g.
#                   pip install uv && uv venv /tmp/venv && VIRTUAL_ENV=/tmp/venv uv pip install -r bench/serve/requirements.txt
# Knobs (env): DURATION (10s), CONNECTIONS (16), THREADS (1, wrk threads), WORKERS (rps-serve
#   workers, 2), PY_WORKERS (uvicorn workers, 1 as in the seed), RUST_PORT (18080), PY_PORT (18081).
# Needs: cargo, wrk (Debian: apt-get install -y wrk), curl.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$ROOT/bench/serve"
: "${VENV:?set VENV to a virtualenv with bench/serve/requirements.txt installed}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-16}"
THREADS="${THREADS:-1}"
WORKERS="${WORKERS:-2}"
PY_WORKERS="${PY_WORKERS:-1}"
RUST_PORT="${RUST_PORT:-18080}"
PY_PORT="${PY_PORT:-18081}"
command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 2; }

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cd "$ROOT"
cargo build --release -q -p rps-serve --bin rps-serve --example demo_registry
REGISTRY="${1:-}"
if [[ -z "$REGISTRY" ]]; then
  REGISTRY="$WORK/registry"
  echo "training a demo model into $REGISTRY ..." >&2
  "${CARGO_TARGET_DIR:-target}/release/examples/demo_registry" "$REGISTRY" >&2
fi
BODY="$WORK/request.json"
if [[ -f "$REGISTRY/request.json" ]]; then
  cp "$REGISTRY/request.json" "$BODY"
else
  # A request at the reference medians of the champion's schema.
  "$VENV/bin/python" - "$REGISTRY" "$BODY" <<'PY'
import json, sys, pathlib
reg, out = pathlib.Path(sys.argv[1]), sys.argv[2]
v = json.loads((reg / "btc-volatility" / "aliases.json").read_text())["champion"]
schema = json.loads((reg / "btc-volatility" / "versions" / str(v) / "schema.json").read_text())
json.dump({"features": {r["name"]: r["quantiles"][3] for r in schema["reference"]}}, open(out, "w"))
PY
fi

wait_for() { # url
  for _ in $(seq 1 300); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for $1" >&2; return 1
}

RUST_LOG=warn "${CARGO_TARGET_DIR:-target}/release/rps-serve" --registry "$REGISTRY" --bind "127.0.0.1:$RUST_PORT" \
  --workers "$WORKERS" --drift-window 1000 >"$WORK/rust.log" 2>&1 &
PIDS+=($!)
RPS_REGISTRY="$REGISTRY" "$VENV/bin/python" -m uvicorn fastapi_app:app --app-dir "$HERE" \
  --host 127.0.0.1 --port "$PY_PORT" --workers "$PY_WORKERS" --log-level warning --no-access-log >"$WORK/py.log" 2>&1 &
PIDS+=($!)
wait_for "http://127.0.0.1:$RUST_PORT/ready"
wait_for "http://127.0.0.1:$PY_PORT/health"

echo "rps-serve answer: $(curl -fs -H 'content-type: application/json' --data @"$BODY" "http://127.0.0.1:$RUST_PORT/predict")"
echo "fastapi answer:   $(curl -fs -H 'content-type: application/json' --data @"$BODY" "http://127.0.0.1:$PY_PORT/predict")"

run_wrk() { # name url
  BODY_FILE="$BODY" wrk -t1 -c"$CONNECTIONS" -d2s -s "$HERE/post.lua" "$2" >/dev/null 2>&1 || true # warm-up
  BODY_FILE="$BODY" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$HERE/post.lua" "$2" >"$WORK/$1.wrk" 2>&1
}
run_wrk rust "http://127.0.0.1:$RUST_PORT/predict"
run_wrk python "http://127.0.0.1:$PY_PORT/predict"

# wrk prints latencies as 123.45us / 1.23ms / 1.02s: convert to ms.
summary() { # file -> "rps p50_ms p99_ms errors"
  awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /Requests\/sec:/ { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Non-2xx/ { err += $NF }
    /Socket errors/ { err += 1 }
    END { printf "%s %.3f %.3f %d\n", rps, p50, p99, err }
  ' "$1"
}
read -r R_RPS R_P50 R_P99 R_ERR < <(summary "$WORK/rust.wrk")
read -r P_RPS P_P50 P_P99 P_ERR < <(summary "$WORK/python.wrk")

echo
echo "wrk: $THREADS thread(s), $CONNECTIONS connections, $DURATION, single-row POST /predict on loopback ($(nproc) cores shared by server and load generator)"
printf '%-34s %12s %10s %10s %8s\n' "service" "requests/s" "p50 ms" "p99 ms" "errors"
printf '%-34s %12s %10s %10s %8s\n' "rps-serve ($WORKERS workers)" "$R_RPS" "$R_P50" "$R_P99" "$R_ERR"
printf '%-34s %12s %10s %10s %8s\n' "fastapi+xgboost ($PY_WORKERS uvicorn worker)" "$P_RPS" "$P_P50" "$P_P99" "$P_ERR"
echo "ratio: $(awk -v a="$R_RPS" -v b="$P_RPS" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "inf" }')"
