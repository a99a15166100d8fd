#!/usr/bin/env bash
# The production pooled mode (train.pooling: pooled, issue #20) on real data, by one command: the
# Binance BTCUSDT klines and the ETH file over the span both cover (2017-10 .. 2019-10), each
# symbol's extract → quality → transform, then one `rps train` and one `rps evaluate` over both
# symbols, which runs the pooled walk-forward and its acceptance verdicts (all symbols together
# and each symbol). Unlike scripts/pooled.sh (the rps-pooled experiment: pooled vs per-symbol on
# the same folds), this is what a user's `train.pooling: pooled` does. params.yaml is used as it
# is but for the data section, the span, features.flow: off (the ETH file has no order flow) and
# the pooling settings.
#
# Usage: pooled-stages.sh BIN_DIR WORK_DIR [SHARED_DATA_DIR]
# Writes the report to WORK_DIR/home/reports/pooled/{evaluation.md,metrics.json}.
set -euo pipefail
bin=$1 work=$2 shared=${3:-../shared/data}
shared=$(cd "$shared" && pwd)
cd "$(dirname "$0")/.."
kline_cols='{timestamp: date, open: open, high: high, low: low, close: close, volume: volume, quote_volume: quote_asset_volume, trades: number_of_trades, taker_buy_volume: taker_buy_base_asset_volume, taker_buy_quote_volume: taker_buy_quote_asset_volume}'
# An entry's columns merge into data.file.columns key by key: the order-flow keys are unset.
eth_cols='{timestamp: Date, open: ETH.open, high: ETH.high, low: ETH.low, close: ETH.close, volume: ETH.volume, quote_volume: null, trades: null, taker_buy_volume: null, taker_buy_quote_volume: null}'
symbols="{BTC-USDT: {interval: 1h, file: {path: $shared/btc_usdt_1h_binance_2017-08_2021-12.csv, columns: $kline_cols}}, ETH-USD: {interval: 30m, file: {path: $shared/eth_usd_30m_2017-10_2019-10.csv, columns: $eth_cols}}}"
args=(--home "$work/home" --set "data.symbols=$symbols"
  --set 'data.start="2017-10-01T00:00:00Z"' --set 'data.end="2019-10-01T00:00:00Z"'
  --set features.flow=off --set train.pooling=pooled
  --set train.model_name=crypto-volatility --set train.signal_model_name=crypto-signal)
rm -rf "$work/home"
mkdir -p "$work"
for s in BTC-USDT ETH-USD; do
  "$bin/rps" extract "${args[@]}" --symbol "$s" --full-refresh
  "$bin/rps" quality "${args[@]}" --symbol "$s"
  "$bin/rps" transform "${args[@]}" --symbol "$s"
done
t=$SECONDS
"$bin/rps" train "${args[@]}"
echo "train: $((SECONDS - t)) s" >&2
t=$SECONDS
# Exit 9 would mean "not promoted"; the first version is always promoted.
"$bin/rps" evaluate "${args[@]}"
echo "evaluate (with the pooled walk-forward): $((SECONDS - t)) s" >&2
echo "Report: $work/home/reports/pooled/evaluation.md" >&2
