#!/usr/bin/env bash
# Pooled vs per-symbol models (issue #20), reproducible by one command (`make pooled`): build
# each symbol's feature dataset with the real stages (extract → quality → transform) over the
# span both files cover, then run rps-pooled, which retrains per-symbol and pooled models (with
# and without the other symbol's volatility as a market factor) on the same walk-forward folds
# and scores them with the baselines. params.yaml is used as it is but for the data section,
# the common span and features.flow: off (the ETH file has no order flow; both symbols must
# have the same columns). The protocol and the result are in docs/symbols.md.
#
# Usage: pooled.sh BIN_DIR WORK_DIR [SHARED_DATA_DIR]
#
#   BTC-USDT  ../shared/data/btc_usdt_1h_binance_2017-08_2021-12.csv (Binance klines, hourly)
#   ETH-USD   ../shared/data/eth_usd_30m_2017-10_2019-10.csv (30-minute bars resampled to hours)
#   span      2017-10-01T00:00Z .. 2019-10-01T00:00Z (data.start inclusive, data.end exclusive)
#
# Writes WORK_DIR/reports/pooled.md (the tables, also printed) and pooled_forecasts.csv (every
# test hour's forecasts); each symbol's home and stage log under WORK_DIR/<symbol>.
set -euo pipefail
bin=$1 work=$2 shared=${3:-../shared/data}
start=2017-10-01T00:00:00Z end=2019-10-01T00:00:00Z
mkdir -p "$work"

# params.yaml's data: pointed at each file (as scripts/model-quality.sh does), cut to the span.
kline_cols='{timestamp: date, open: open, high: high, low: low, close: close, volume: volume, quote_volume: quote_asset_volume, trades: number_of_trades, taker_buy_volume: taker_buy_base_asset_volume, taker_buy_quote_volume: taker_buy_quote_asset_volume}'
eth_cols='{timestamp: Date, open: ETH.open, high: ETH.high, low: ETH.low, close: ETH.close, volume: ETH.volume}'
common=(--set "data.start=\"$start\"" --set "data.end=\"$end\"" --set features.flow=off)
btc=(--set "data.symbols={BTC-USDT: {}}" --set data.interval=1h
  --set "data.file.path=$shared/btc_usdt_1h_binance_2017-08_2021-12.csv" --set "data.file.columns=$kline_cols")
eth=(--set "data.symbols={ETH-USD: {}}" --set data.interval=30m
  --set "data.file.path=$shared/eth_usd_30m_2017-10_2019-10.csv" --set "data.file.columns=$eth_cols")

features() { # SYMBOL [--set KEY=VALUE]...: extract → quality → transform into WORK_DIR/SYMBOL
  local name=$1 home="$work/$1" log="$work/$1.log" t=$SECONDS
  shift
  local args=(--home "$home" "$@" "${common[@]}")
  rm -rf "$home"
  {
    "$bin/rps-extract" "${args[@]}" --full-refresh
    "$bin/rps-quality" "${args[@]}" --report-dir "$home/reports"
    "$bin/rps-transform" "${args[@]}"
  } >"$log" 2>&1 || { echo "error: the $name stages failed, see $log" >&2; tail -20 "$log" >&2; exit 1; }
  echo "$name: features in $home/data/features/$name ($((SECONDS - t)) s)" >&2
}

features BTC-USDT "${btc[@]}"
features ETH-USD "${eth[@]}"
# --seeds: the same comparison with five more booster seeds, to see the training noise.
"$bin/rps-pooled" --params params.yaml --out "$work/reports" --seeds 1,2,3,4,5 \
  --features "BTC-USDT=$work/BTC-USDT/data/features/BTC-USDT" \
  --features "ETH-USD=$work/ETH-USD/data/features/ETH-USD"
echo "Report: $work/reports/pooled.md; every test hour's forecasts: $work/reports/pooled_forecasts.csv" >&2
