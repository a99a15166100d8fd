#!/usr/bin/env bash
# Benchmark the streaming stage on the release binary: the bundled sample (8,760 hourly bars)
# through a real Kafka-protocol broker (tansu) into a real PostgreSQL, both on loopback (started
# by crates/rps-stream/tests/servers.sh). Prints bars/s of produce (one record per request, as
# tansu needs, and 500 per request as Apache Kafka allows), of consume with one live model and
# with a volatility and a signal model live, and the wall time of a full-history reconcile.
# Then the scale run: SYMBOLS (1000) synthetic coins (with order-flow columns derived from each
# bar, as the demo model trained on the Binance sample needs) x SCALE_BARS (8760, a year) hourly bars
# published in time order by the `load` example (crates/rps-stream/examples/load.rs), consumed
# with one live model: bars/s and peak memory (RSS) per symbol. SYMBOLS=0 skips it.
# SCALE_BATCH (20000) is the scale consumer's --batch-size: a transaction then holds one Kafka
# fetch (4 MB, ≈ 11,000 bars), and each live model predicts those bars at once.
# PER_SYMBOL=1 (#20) then consumes the scale topic a second time with every symbol listed in
# data.symbols and a registered model of its own (one trained model copied under SYMBOLS names):
# bars/s and peak RSS beside the one-model figures (make bench-stream-symbols: 100 symbols).
# There is no reference to put beside these figures: the seed design had no streaming path.
#
# Usage: BIN=DIR [PY=python3] [SYMBOLS=N SCALE_BARS=N] [PER_SYMBOL=1] bench/stream/run.sh   (make bench-stream)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${BIN:?set BIN to the folder of the release rps binary}"
PY="${PY:-python3}"
command -v psql >/dev/null || { echo "psql not found (PostgreSQL client)" >&2; exit 2; }
WORK="$(mktemp -d "${TMPDIR:-/tmp}/rps-bench-stream.XXXXXX")"
cleanup() {
  bash "$ROOT/crates/rps-stream/tests/servers.sh" stop "$WORK/servers" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$ROOT"
home="$WORK/home"
quiet() { "$@" >"$WORK/step.log" 2>&1 || { cat "$WORK/step.log" >&2; exit 1; }; }
export RUST_LOG=info NO_COLOR=1

echo "training the volatility model on the bundled sample (make demo's steps) ..." >&2
quiet bash scripts/demo.sh "$BIN" "$home"
eval "$(bash crates/rps-stream/tests/servers.sh start "$PY" "$WORK/servers")"
base="${RPS_TEST_DATABASE_URL%/*}"
psql "$base/postgres" -qAt -c "CREATE DATABASE bench_one" -c "CREATE DATABASE bench_two" >/dev/null
stream() { # db topic args...
  local db=$1 topic=$2; shift 2
  "$BIN/rps" stream --home "$home" --brokers "$RPS_TEST_KAFKA_BROKERS" --topic "$topic" \
    --database-url "$base/$db" "$@"
}
rate() { grep -oE '[0-9]+ (bars|messages)/s' "$1" | tail -n 1 | grep -oE '^[0-9]+'; }
bars() { grep -oE 'produced [0-9]+ bars' "$1" | grep -oE '[0-9]+'; }

stream bench_one bench-b1 produce --speed 0 --batch 1 2>"$WORK/p1.log"
stream bench_one bench-b500 produce --speed 0 --batch 500 2>"$WORK/p500.log"
n=$(bars "$WORK/p1.log")
stream bench_one bench-b1 consume --max-messages "$n" 2>"$WORK/c1.log"

echo "training the signal model (train.task: signal) ..." >&2
sed 's/^  task: volatility /  task: signal     /' params.yaml >"$WORK/signal.yaml"
grep -q '^  task: signal ' "$WORK/signal.yaml" || { echo "could not set train.task in a params copy" >&2; exit 1; }
quiet "$BIN/rps" train --home "$home" --params "$WORK/signal.yaml"
quiet "$BIN/rps" evaluate --home "$home" --params "$WORK/signal.yaml" --report-dir "$WORK/signal-reports"

stream bench_two bench-b1 consume --max-messages "$n" 2>"$WORK/c2.log"
start=$(date +%s.%N)
stream bench_one bench-b1 reconcile 2>"$WORK/r.log"
end=$(date +%s.%N)
inserted=$(grep -oE '[0-9]+ rows inserted' "$WORK/r.log" | grep -oE '^[0-9]+')

echo
echo "rps stream, release build, $n bars of the bundled sample; tansu + PostgreSQL on loopback ($(nproc) cores shared)"
printf '%-52s %12s\n' "step" "bars/s"
printf '%-52s %12s\n' "produce, 1 record per request (tansu-safe default)" "$(rate "$WORK/p1.log")"
printf '%-52s %12s\n' "produce, --batch 500 (Apache Kafka)" "$(rate "$WORK/p500.log")"
printf '%-52s %12s\n' "consume, 1 live model (volatility champion)" "$(rate "$WORK/c1.log")"
printf '%-52s %12s\n' "consume, 2 live models (+ signal champion)" "$(rate "$WORK/c2.log")"
printf 'reconcile of the full history after the signal model went live: %s rows in %.1f s\n' \
  "$inserted" "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')"

SYMBOLS="${SYMBOLS:-1000}"
SCALE_BARS="${SCALE_BARS:-8760}"
if (( SYMBOLS > 0 )); then
  total=$(( SYMBOLS * SCALE_BARS ))
  echo >&2
  echo "scale run: $SYMBOLS symbols x $SCALE_BARS hourly bars = $total bars ..." >&2
  psql "$base/postgres" -qAt -c "CREATE DATABASE bench_scale" >/dev/null
  "$BIN/examples/load" "$RPS_TEST_KAFKA_BROKERS" bench-scale "$SYMBOLS" "$SCALE_BARS" 1000 >"$WORK/load.log"
  # One live model, as the issue asks: the signal model trained above is live too (its own
  # champion), so the scale consumer is told the signal model's name is the volatility model's
  # (the stream then predicts with that one name only). Without this it measured two models
  # (two prediction rows per bar, one per model) while printing "1 live model".
  vol_model=$(sed -n 's/^  model_name: *\([^ #]*\).*/\1/p' params.yaml)
  /usr/bin/time -v "$BIN/rps" stream --home "$home" --brokers "$RPS_TEST_KAFKA_BROKERS" \
    --topic bench-scale --database-url "$base/bench_scale" \
    --set "train.signal_model_name=$vol_model" consume --max-messages "$total" \
    --batch-size "${SCALE_BATCH:-20000}" 2>"$WORK/cs.log"
  rss_kb=$(grep -oE 'Maximum resident set size \(kbytes\): [0-9]+' "$WORK/cs.log" | grep -oE '[0-9]+$')
  rows=$(psql "$base/bench_scale" -qAt -c "SELECT count(*) FROM predictions")
  # The live versions the consumer predicted with ("live models: name vN (aliases), ..."): a
  # version holding several aliases is one model and writes one row per bar.
  live_line=$(grep -oE 'live models: .*' "$WORK/cs.log" | head -n 1)
  n_live=$(grep -oE ' v[0-9]+ \(' <<<"$live_line" | wc -l)
  by_version=$(psql "$base/bench_scale" -qAt -F ' ' -c "SELECT model, 'v' || version, coalesce(alias, '-'), task, count(*) FROM predictions GROUP BY 1, 2, 3, 4 ORDER BY 1, 2" | paste -sd ';' -)
  echo
  echo "scale: $SYMBOLS symbols x $SCALE_BARS bars, 1 live model, --batch-size ${SCALE_BATCH:-20000}"
  printf '%-52s %12s\n' "produce (load example, 1000 records per request)" "$(grep -oE '[0-9]+ bars/s' "$WORK/load.log" | grep -oE '^[0-9]+')"
  printf '%-52s %12s\n' "consume, 1 live model" "$(rate "$WORK/cs.log")"
  printf 'prediction rows: %s of %s; consumer peak RSS %.0f MB = %.1f KB per symbol\n' \
    "$rows" "$total" "$(awk -v k="$rss_kb" 'BEGIN { print k / 1024 }')" \
    "$(awk -v k="$rss_kb" -v n="$SYMBOLS" 'BEGIN { print k / n }')"
  echo "prediction rows by model, version, alias, task: $by_version"
  echo "$live_line"
  grep -oE 'time: .*' "$WORK/cs.log" | sed 's/^/consumer /' || true
  if (( n_live != 1 || rows != total )); then
    echo "error: the scale run must predict each bar once with exactly one live version: $n_live live, $rows prediction rows for $total bars" >&2
    exit 1
  fi

  if [[ "${PER_SYMBOL:-0}" == 1 ]]; then
    # The same topic again, into a fresh database, with every one of the SYMBOLS symbols listed
    # in data.symbols, each with a model name of its own: the consumer then binds each symbol's
    # bars to that symbol's models only (live::bindings) and holds SYMBOLS models. They are one
    # trained model (the volatility champion above) registered under SYMBOLS names by copying
    # its registry folder: training SYMBOLS models would take SYMBOLS times the train and
    # evaluate stages, and prediction cost and memory depend on the trees, not on the data
    # they were fitted to. params.yaml is otherwise unchanged.
    echo >&2
    echo "per-symbol run: the same $total bars, $SYMBOLS symbols in data.symbols, one live model each ..." >&2
    registry="$home/registry"
    [[ -f "$registry/$vol_model/aliases.json" ]] || { echo "error: no $vol_model in $registry" >&2; exit 1; }
    sample_path=$(sed -n 's/^ *file: {path: \([^}]*\)}.*/\1/p' params.yaml | head -n 1)
    : >"$WORK/per-symbol-block.yaml"
    for ((i = 0; i < SYMBOLS; i++)); do
      s=$(printf 'SYM%04d-USD' "$i") # the load example's names
      rm -rf "$registry/$s-volatility"
      cp -r "$registry/$vol_model" "$registry/$s-volatility"
      sed -i "s/\"name\": \"$vol_model\"/\"name\": \"$s-volatility\"/" "$registry/$s-volatility"/versions/*/version.json
      echo "    $s: {file: {path: $sample_path}, model_name: $s-volatility, signal_model_name: $s-volatility}" >>"$WORK/per-symbol-block.yaml"
    done
    awk -v block="$WORK/per-symbol-block.yaml" '
      /^  symbols:$/ { print; while ((getline line < block) > 0) print line; skip = 1; next }
      skip && /^  [^ ]/ { skip = 0 }
      !skip { print }' params.yaml >"$WORK/per-symbol.yaml"
    psql "$base/postgres" -qAt -c "CREATE DATABASE bench_scale_per" >/dev/null
    /usr/bin/time -v "$BIN/rps" stream --home "$home" --params "$WORK/per-symbol.yaml" \
      --brokers "$RPS_TEST_KAFKA_BROKERS" --topic bench-scale --database-url "$base/bench_scale_per" \
      consume --max-messages "$total" --batch-size "${SCALE_BATCH:-20000}" 2>"$WORK/cp.log"
    rss_per=$(grep -oE 'Maximum resident set size \(kbytes\): [0-9]+' "$WORK/cp.log" | grep -oE '[0-9]+$')
    rows_per=$(psql "$base/bench_scale_per" -qAt -c "SELECT count(*) FROM predictions")
    models_per=$(psql "$base/bench_scale_per" -qAt -c "SELECT count(DISTINCT model) FROM predictions")
    # Each symbol predicted by its own model only: one model per symbol, one symbol per model.
    crossed=$(psql "$base/bench_scale_per" -qAt -c "SELECT count(*) FROM predictions WHERE model <> symbol || '-volatility'")
    live_per=$(grep -oE 'live models: .*' "$WORK/cp.log" | head -n 1)
    n_bound=$(grep -oE ' v[0-9]+ \([^)]*\) for ' <<<"$live_per" | wc -l)
    echo
    echo "per symbol: the same $SYMBOLS symbols x $SCALE_BARS bars, each symbol listed in data.symbols with its own registered model"
    echo "(one trained model registered under $SYMBOLS names, see above), --batch-size ${SCALE_BATCH:-20000}"
    printf '%-52s %12s %10s\n' "consume" "bars/s" "peak RSS"
    printf '%-52s %12s %7.0f MB\n' "1 live model for every symbol (above)" "$(rate "$WORK/cs.log")" "$(awk -v k="$rss_kb" 'BEGIN { print k / 1024 }')"
    printf '%-52s %12s %7.0f MB\n' "$SYMBOLS live models, one per symbol" "$(rate "$WORK/cp.log")" "$(awk -v k="$rss_per" 'BEGIN { print k / 1024 }')"
    printf 'prediction rows: %s of %s, from %s distinct models (%s rows by another symbol'"'"'s model); %s models bound\n' \
      "$rows_per" "$total" "$models_per" "$crossed" "$n_bound"
    grep -oE 'time: .*' "$WORK/cp.log" | sed 's/^/consumer /' || true
    if (( rows_per != total || models_per != SYMBOLS || crossed != 0 || n_bound != SYMBOLS )); then
      echo "error: the per-symbol run must predict each bar once with its symbol's own model" >&2
      exit 1
    fi
  fi
fi
