#!/usr/bin/env bash
# The model-quality tables, reproducible by one command (`make model-quality`): the whole pipeline
# (extract → quality → transform → train → evaluate with walk-forward) on each real dataset, each
# in its own home folder, with params.yaml as it is but for the data section (and the Binance
# run's test span, given by `--set`), then the pooled out-of-sample table and verdict of each.
# The protocol is in docs/model-quality.md.
#
# Usage: model-quality.sh [--dev] BIN_DIR WORK_DIR [SHARED_DATA_DIR]
#
#   binance  ../shared/data/btc_usdt_1h_binance_2017-08_2021-12.csv — the main dataset: 4.4 years of
#            BTCUSDT klines with their order-flow columns; the walk-forward's test blocks cover
#            2020-01-01 .. 2021-12-31 (evaluate.walk_forward_test_start), all earlier hours are
#            history only
#   btc      ../shared/data/btc_usd_1h_coinbase_2017-07_2018-12.csv (Coinbase; the last 40 %)
#   eth      ../shared/data/eth_usd_30m_2017-10_2019-10.csv (30-minute bars resampled to hours,
#            its own column names; the last 40 %)
#
# --dev runs the development walk-forward instead: the Binance file cut at 2020-01-01 (data.end,
# so no later bar is even read), its test blocks the last 40 % of those hours. Tune on this only.
set -euo pipefail
dev=false
if [[ ${1:-} == --dev ]]; then dev=true; shift; fi
bin=$1 work=$2 shared=${3:-../shared/data}
test_start=2020-01-01T00:00:00Z
mkdir -p "$work"

run() { # NAME DATA_FILE [--set KEY=VALUE]...: the five stages with these overrides
  local name=$1 file=$2 home="$work/$1" log="$work/$1.log" t=$SECONDS
  shift 2
  local args=(--home "$home" "$@")
  rm -rf "$home"
  {
    "$bin/rps-extract" "${args[@]}" --full-refresh
    "$bin/rps-quality" "${args[@]}" --report-dir "$home/reports"
    "$bin/rps-transform" "${args[@]}"
    "$bin/rps-train" "${args[@]}"
    "$bin/rps-evaluate" "${args[@]}" --report-dir "$home/reports"
  } >"$log" 2>&1 || { echo "error: the $name pipeline failed, see $log" >&2; tail -20 "$log" >&2; exit 1; }
  printf '\n\033[1m== %s\033[0m (%d s)\n' "$name: $file" $((SECONDS - t))
  sed -n '/^## Walk-forward/,/^### Per fold/p' "$home/reports/evaluation.md" | sed '$d'
}

# params.yaml's data: pointed at each file (symbol, interval, path, column mapping).
kline_cols='{timestamp: date, open: open, high: high, low: low, close: close, volume: volume, quote_volume: quote_asset_volume, trades: number_of_trades, taker_buy_volume: taker_buy_base_asset_volume, taker_buy_quote_volume: taker_buy_quote_asset_volume}'
btc_cols='{timestamp: timestamp_utc, open: open, high: high, low: low, close: close, volume: volume_btc}'
eth_cols='{timestamp: Date, open: ETH.open, high: ETH.high, low: ETH.low, close: ETH.close, volume: ETH.volume}'
binance_file=$shared/btc_usdt_1h_binance_2017-08_2021-12.csv
btc_file=$shared/btc_usd_1h_coinbase_2017-07_2018-12.csv
eth_file=$shared/eth_usd_30m_2017-10_2019-10.csv
binance=(--set "data.symbols={BTC-USDT: {}}" --set data.interval=1h
  --set "data.file.path=$binance_file" --set "data.file.columns=$kline_cols")
btc=(--set "data.symbols={BTC-USD: {}}" --set data.interval=1h
  --set "data.file.path=$btc_file" --set "data.file.columns=$btc_cols")
eth=(--set "data.symbols={ETH-USD: {}}" --set data.interval=30m
  --set "data.file.path=$eth_file" --set "data.file.columns=$eth_cols")

if [[ ! -d "$shared" ]]; then
  $dev && { echo "error: --dev needs $binance_file" >&2; exit 4; }
  echo "note: $shared not found; only the bundled sample is evaluated" >&2
  run sample "$(sed -n 's/^    path: *\([^ #]*\).*/\1/p' params.yaml)"
elif $dev; then
  run binance-dev "$binance_file (bars before $test_start)" "${binance[@]}" \
    --set "data.end=\"$test_start\"" --set evaluate.walk_forward_test_start=null
else
  run binance "$binance_file (test blocks from $test_start)" "${binance[@]}" \
    --set "evaluate.walk_forward_test_start=\"$test_start\""
  run btc "$btc_file" "${btc[@]}"
  run eth "$eth_file" "${eth[@]}"
fi
echo
echo "Per-fold tables and plots: $work/<name>/reports/evaluation.md, walkforward_fold*.png, walkforward_band_*.png (a panel per month), walkforward_reliability.png, walkforward_tercile_coverage.png, feature_importance.png"
