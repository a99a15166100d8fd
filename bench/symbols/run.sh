#!/usr/bin/env bash
# Issue #20, "Measure": the whole pipeline (extract → quality → transform → train → evaluate) for
# 1 symbol and for SYMBOLS (20) symbols, each in a fresh home, twice per set:
#   - Airflow in local mode: `airflow dags test crypto_volatility_pipeline 2022-01-01` with the
#     environment of airflow/run-local.sh (a local process per task, a @yearly schedule, so the
#     data interval and extract window is the year 2021), the symbols in RPS_AIRFLOW_SYMBOLS;
#   - plain: the same `rps <stage> --symbol S …` commands the DAG's tasks run, one after another
#     in a shell loop (symbol by symbol), so the difference is what Airflow adds.
# Prints wall times, the cost of each added symbol ((T_N - T_1) / (N - 1)), per-stage times of
# the plain loop, Airflow's per-task time from its metadata DB, and peak RSS.
#
# The symbols: the 1-symbol set is the shipped params.yaml as it is (BTC-USDT, the bundled
# Binance sample). The N-symbol set is params.yaml with only its data.symbols block replaced
# (checked: the rest of the file is byte for byte the shipped one): BTC-USDT's entry unchanged;
# ETH-USD, the real 30-minute ETH file of ../shared/data (no order-flow columns, resampled to 1h),
# its timestamps moved forward by 1,096 days so that its calendar year 2018 lands on the 2021
# window (the only real second coin here, and it ends in 2019-10); and N - 2 synthetic symbols
# SYN01-USD .. written by bench/symbols/synth.py (a log-normal stochastic-volatility model fitted
# to the BTC sample, with the sample's order-flow columns). Each entry names its own registered
# models (<SYMBOL>-volatility, <SYMBOL>-signal; BTC-USDT keeps train.model_name).
#
# Usage: BIN=DIR [VENV=.venv] [SYMBOLS=20] [PLAIN=1] [KEEP=1] bench/symbols/run.sh
#   (make bench-symbols; about 18 min on 2 quiet cores, of which the plain loops take half)
#   BIN      folder of the release rps binary      VENV  the venv with Airflow (make setup-python)
#   SYMBOLS  size of the large set (>= 2)          PLAIN 0 skips the plain loops
#   KEEP     1 keeps the work folder (homes, logs, generated data and params) and prints it
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="$(cd "${BIN:?set BIN to the folder of the release rps binary}" && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
AIRFLOW="$VENV/bin/airflow"
SHARED="${SHARED:-$ROOT/../shared/data}"
N="${SYMBOLS:-20}"
PLAIN="${PLAIN:-1}"
LOGICAL_DATE=2022-01-01T00:00:00+00:00
WINDOW=(--start 2021-01-01T00:00:00Z --end 2022-01-01T00:00:00Z) # its data interval under @yearly
[[ -x "$BIN/rps" ]] || { echo "error: no rps binary in $BIN (make build)" >&2; exit 2; }
[[ -x "$AIRFLOW" ]] || { echo "error: no Airflow in $VENV (make setup-python, or set VENV)" >&2; exit 2; }
(( N >= 2 )) || { echo "error: SYMBOLS must be at least 2" >&2; exit 2; }
WORK="$(mktemp -d "${TMPDIR:-/tmp}/rps-bench-symbols.XXXXXX")"
cleanup() { if [[ "${KEEP:-0}" == 1 ]]; then echo "work folder kept: $WORK" >&2; else rm -rf "$WORK"; fi; }
trap cleanup EXIT
cd "$ROOT"
export NO_COLOR=1 PYTHONDONTWRITEBYTECODE=1
now() { date +%s.%N; }
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# ---- data and parameters ------------------------------------------------------------------
sample=data/sample/btc_usdt_1h_binance_2020-2021.csv
eth_src="$SHARED/eth_usd_30m_2017-10_2019-10.csv"
mkdir -p "$WORK/data"
started=$(now)
if [[ -f "$eth_src" ]]; then
  synthetic=$(( N - 2 ))
  "$PY" - "$eth_src" "$WORK/data/eth_usd_30m_shifted.csv" <<'PY'
import csv, sys
from datetime import datetime, timedelta
# 2017-10-01 + 1096 days = 2020-10-01: calendar 2018 becomes calendar 2021, 2019-01-01 -> 2022-01-01.
shift = timedelta(days=1096)
with open(sys.argv[1], newline="") as src, open(sys.argv[2], "w", newline="") as dst:
    rows = csv.reader(src)
    out = csv.writer(dst, lineterminator="\n")
    out.writerow(next(rows))
    for row in rows:
        row[0] = (datetime.strptime(row[0], "%Y-%m-%d %H:%M:%S") + shift).strftime("%Y-%m-%d %H:%M:%S")
        out.writerow(row)
PY
else
  echo "note: $eth_src not found: the large set is BTC-USDT and $(( N - 1 )) synthetic symbols" >&2
  synthetic=$(( N - 1 ))
fi
calibration=$("$PY" bench/symbols/synth.py "$sample" "$WORK/data" "$synthetic")
gen_secs=$(secs "$started" "$(now)")

{ # the large set's data.symbols block (params.yaml's BTC-USDT entry, as shipped, first)
  awk '/^  symbols:$/ { on = 1; next } on && /^  [^ ]/ { exit } on' params.yaml
  if [[ -f "$eth_src" ]]; then
    cat <<YAML
    ETH-USD:                   # real ETH-USD 30-minute bars of 2018, moved to 2021 (bench/symbols/run.sh)
      interval: 30m
      file:
        path: $WORK/data/eth_usd_30m_shifted.csv
        columns: {timestamp: Date, open: ETH.open, high: ETH.high, low: ETH.low, close: ETH.close,
                  volume: ETH.volume, quote_volume: null, trades: null, taker_buy_volume: null,
                  taker_buy_quote_volume: null}
      model_name: ETH-USD-volatility
      signal_model_name: ETH-USD-signal
YAML
  fi
  for ((i = 1; i <= synthetic; i++)); do
    s=$(printf 'SYN%02d-USD' "$i")
    echo "    $s: {file: {path: $WORK/data/$s.csv}, model_name: $s-volatility, signal_model_name: $s-signal}"
  done
} >"$WORK/symbols-block.yaml"
# params.yaml with its data.symbols block replaced by the file $2 (empty: removed).
with_block() {
  awk -v block="$2" '
    /^  symbols:$/ { print; if (block != "") while ((getline line < block) > 0) print line; skip = 1; next }
    skip && /^  [^ ]/ { skip = 0 }
    !skip { print }' "$1"
}
with_block params.yaml "$WORK/symbols-block.yaml" >"$WORK/params-$N.yaml"
: >"$WORK/empty"
if ! diff <(with_block params.yaml "$WORK/empty") <(with_block "$WORK/params-$N.yaml" "$WORK/empty") >/dev/null; then
  echo "error: the generated params file differs from params.yaml outside data.symbols" >&2; exit 1
fi
mapfile -t all < <("$BIN/rps" symbols --lines --params "$WORK/params-$N.yaml")
mapfile -t one < <("$BIN/rps" symbols --lines --params params.yaml)
(( ${#all[@]} == N && ${#one[@]} == 1 )) || { echo "error: rps symbols lists ${#all[@]} and ${#one[@]} symbols" >&2; exit 1; }

# ---- the two ways to run it -----------------------------------------------------------------
# plain LABEL PARAMS SYMBOL...: the DAG's stage commands in a loop; writes $WORK/LABEL.{wall,stages}
plain() {
  local label=$1 params=$2; shift 2
  local home="$WORK/home-plain-$label" log="$WORK/plain-$label.log" s stage code t0
  mkdir -p "$home"
  : >"$WORK/plain-$label.stages"
  t0=$(now)
  for s in "$@"; do
    for stage in extract quality transform train evaluate; do
      local args=("$stage" --symbol "$s")
      case $stage in
        extract) args+=("${WINDOW[@]}") ;;
        quality) args+=(--report-dir "$home/reports/$s") ;;
        evaluate) args+=(--report-dir "$home/reports/$s" --require-promotion) ;;
      esac
      code=0
      RPS_HOME="$home" RPS_PARAMS="$params" RPS_PIPELINE_RUN="bench-plain-$label" \
        /usr/bin/time -f '%e %M' -o "$WORK/t" "$BIN/rps" "${args[@]}" >>"$log" 2>&1 || code=$?
      # exit 9: evaluate kept the champion (the DAG's task succeeds with promoted=false)
      if (( code != 0 )) && ! [[ $stage == evaluate && $code == 9 ]]; then
        tail -n 30 "$log" >&2; echo "error: rps $stage --symbol $s exited $code" >&2; exit 1
      fi
      echo "$stage $s $(tail -n 1 "$WORK/t")" >>"$WORK/plain-$label.stages"
    done
  done
  secs "$t0" "$(now)" >"$WORK/plain-$label.wall"
}

# Peak RSS of Airflow's own Python processes: each writes its VmHWM when it exits (GNU time's
# figure for `airflow dags test` does not reliably include the rps processes it starts).
mkdir -p "$WORK/py"
cat >"$WORK/py/sitecustomize.py" <<'PY'
import atexit, os
def _peak():
    with open("/proc/self/status") as f:
        hwm = next((line.split()[1] for line in f if line.startswith("VmHWM:")), "0")
    with open(os.environ["RPS_BENCH_PEAK_FILE"], "a") as out:
        out.write(f"{os.getpid()} {hwm}\n")
if os.environ.get("RPS_BENCH_PEAK_FILE"):
    atexit.register(_peak)
PY

# airflow LABEL PARAMS SYMBOLS_CSV: airflow dags test in local mode; writes $WORK/airflow-LABEL.*
airflow() {
  local label=$1 params=$2 symbols=$3
  local af="$WORK/airflow-$label" home="$WORK/home-airflow-$label" t0
  mkdir -p "$af" "$home"
  local env=(
    AIRFLOW_HOME="$af" AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags" AIRFLOW__CORE__LOAD_EXAMPLES=False
    RPS_AIRFLOW_EXECUTOR=local RPS_BIN="$BIN/rps" RPS_AIRFLOW_WORKDIR="$ROOT" RPS_HOME="$home"
    RPS_PARAMS="$params" RPS_AIRFLOW_REPORT_DIR="$home/reports" RPS_AIRFLOW_PIPELINE_SCHEDULE=@yearly
    RPS_AIRFLOW_SYMBOLS="$symbols" RPS_AIRFLOW_RETRIES=0
  )
  t0=$(now)
  env "${env[@]}" "$AIRFLOW" db migrate >"$af/migrate.log" 2>&1 || { tail -n 30 "$af/migrate.log" >&2; exit 1; }
  secs "$t0" "$(now)" >"$WORK/airflow-$label.migrate"
  t0=$(now)
  env "${env[@]}" PYTHONPATH="$WORK/py" RPS_BENCH_PEAK_FILE="$WORK/airflow-$label.peak" \
    "$AIRFLOW" dags test crypto_volatility_pipeline "$LOGICAL_DATE" >"$af/dags-test.log" 2>&1 || true
  secs "$t0" "$(now)" >"$WORK/airflow-$label.wall"
  # Per task: instances, summed duration; and the run's state (dags test may exit 0 on a failed run).
  "$PY" - "$af/airflow.db" >"$WORK/airflow-$label.tasks" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
(run_id, state), = db.execute("SELECT run_id, state FROM dag_run WHERE dag_id = 'crypto_volatility_pipeline'")
print("run", state)
for task, n, total, bad in db.execute(
    "SELECT task_id, count(*), sum(duration), sum(state != 'success') FROM task_instance"
    " WHERE run_id = ? GROUP BY task_id", (run_id,)):
    print(task, n, f"{total or 0:.2f}", bad)
PY
  if ! grep -qx 'run success' "$WORK/airflow-$label.tasks"; then
    grep -E 'ERROR|stopped at|failed' "$af/dags-test.log" | tail -n 30 >&2
    echo "error: the Airflow run of the $label-symbol set did not succeed ($WORK/airflow-$label.tasks)" >&2
    cat "$WORK/airflow-$label.tasks" >&2; exit 1
  fi
}

csv() { local IFS=,; echo "$*"; }
echo "data: $synthetic synthetic symbols generated in $gen_secs s; running 1 and $N symbols ..." >&2
if [[ "$PLAIN" == 1 ]]; then
  echo "  plain loop, 1 symbol ..." >&2; plain 1 params.yaml "${one[@]}"
fi
echo "  Airflow local mode, 1 symbol ..." >&2; airflow 1 "$ROOT/params.yaml" "$(csv "${one[@]}")"
if [[ "$PLAIN" == 1 ]]; then
  echo "  plain loop, $N symbols ..." >&2; plain "$N" "$WORK/params-$N.yaml" "${all[@]}"
fi
echo "  Airflow local mode, $N symbols ..." >&2; airflow "$N" "$WORK/params-$N.yaml" "$(csv "${all[@]}")"

# Every symbol of both Airflow runs has a champion in its home's registry.
for label in 1 "$N"; do
  champions=$(grep -l '"champion"' "$WORK"/home-airflow-"$label"/registry/*/aliases.json 2>/dev/null | wc -l)
  want=$([[ $label == 1 ]] && echo 1 || echo "$N")
  (( champions == want )) || { echo "error: $champions champions after the $label-symbol Airflow run, want $want" >&2; exit 1; }
done

# ---- report ----------------------------------------------------------------------------------
cost() { awk -v a="$1" -v b="$2" -v n="$N" 'BEGIN { printf "%.1f", (b - a) / (n - 1) }'; }
mb() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
af1=$(cat "$WORK/airflow-1.wall") afn=$(cat "$WORK/airflow-$N.wall")
echo
echo "rps pipeline for 1 and $N symbols, release build, $(nproc) cores; window 2021 (8,760 hourly bars per symbol)"
echo "$N symbols: BTC-USDT (bundled Binance sample)$([[ -f "$eth_src" ]] && echo ", ETH-USD (real 30-minute bars of 2018, shifted to 2021)"), $synthetic synthetic (bench/symbols/synth.py)"
printf '%-40s %10s %10s %18s\n' "wall time, s" "1 symbol" "$N symbols" "per added symbol"
printf '%-40s %10s %10s %18s\n' "Airflow local (airflow dags test)" "$af1" "$afn" "$(cost "$af1" "$afn")"
if [[ "$PLAIN" == 1 ]]; then
  p1=$(cat "$WORK/plain-1.wall") pn=$(cat "$WORK/plain-$N.wall")
  printf '%-40s %10s %10s %18s\n' "plain loop of rps stages" "$p1" "$pn" "$(cost "$p1" "$pn")"
  printf '%-40s %10s %10s %18s\n' "Airflow minus plain" "$(secs "$p1" "$af1")" "$(secs "$pn" "$afn")" "$(cost "$(secs "$p1" "$af1")" "$(secs "$pn" "$afn")")"
  printf '%-40s %10s %10s %18s\n' "  per added Airflow task (5 per symbol)" "" "" \
    "$(awk -v a="$(secs "$p1" "$af1")" -v b="$(secs "$pn" "$afn")" -v n="$N" 'BEGIN { printf "%.2f", (b - a) / (5 * (n - 1)) }')"
  echo
  echo "plain loop by stage: seconds summed over the symbols (max RSS of one process, MB)"
  printf '%-12s %18s %18s %14s\n' "stage" "1 symbol" "$N symbols" "mean per symbol"
  for stage in extract quality transform train evaluate; do
    read -r s1 r1 < <(awk -v s=$stage '$1 == s { t += $3; if ($4 > m) m = $4 } END { printf "%.1f %d\n", t, m }' "$WORK/plain-1.stages")
    read -r sn rn < <(awk -v s=$stage '$1 == s { t += $3; if ($4 > m) m = $4 } END { printf "%.1f %d\n", t, m }' "$WORK/plain-$N.stages")
    printf '%-12s %18s %18s %14s\n' "$stage" "$s1 ($(mb "$r1"))" "$sn ($(mb "$rn"))" "$(awk -v t="$sn" -v n="$N" 'BEGIN { printf "%.1f", t / n }')"
  done
fi
echo
echo "Airflow: summed task durations from its metadata DB (instances), s"
printf '%-16s %14s %14s\n' "task" "1 symbol" "$N symbols"
for task in symbols extract quality transform train evaluate summary; do
  printf '%-16s %14s %14s\n' "$task" \
    "$(awk -v t=$task '$1 == t { print $3 " (" $2 ")" }' "$WORK/airflow-1.tasks")" \
    "$(awk -v t=$task '$1 == t { print $3 " (" $2 ")" }' "$WORK/airflow-$N.tasks")"
done
peak() { [[ -s "$1" ]] || { printf 'n/a'; return; }; awk '$2 > m { m = $2 } END { printf "%.0f", m / 1024 }' "$1"; }
echo "peak RSS of Airflow's own Python processes under airflow dags test: $(peak "$WORK/airflow-1.peak") MB (1 symbol), $(peak "$WORK/airflow-$N.peak") MB ($N symbols)"
echo "airflow db migrate (a fresh AIRFLOW_HOME, not in the times above): $(cat "$WORK/airflow-1.migrate") s and $(cat "$WORK/airflow-$N.migrate") s"
"$PY" - "$calibration" "$synthetic" "$gen_secs" <<'PY'
import json, sys
v = json.loads(sys.argv[1])["volatility"]
print(f"synthetic data: {sys.argv[2]} symbols x 17,544 bars in {sys.argv[3]} s; log-volatility factors fitted to the"
      f" sample: weights {', '.join(f'{w:.2f}' for w in v['weights'])}, half-lives"
      f" {', '.join(f'{h:.1f}' for h in v['half_life_hours'])} h (autocorrelation RMSE {v['acf_rmse']:.4f})")
PY
echo "load average (1, 5, 15 min): $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
