#!/usr/bin/env bash
# The model-quality table, reproducible by one command (`make model-quality`): the whole pipeline
# (extract → quality → transform → train → evaluate with walk-forward) on every real dataset we
# have, each in its own home folder, with params.yaml as it is, then the pooled out-of-sample
# table and verdict of each. Usage: model-quality.sh BIN_DIR WORK_DIR [SHARED_DATA_DIR]
#
#   sample  data/sample/btc_usd_1h_coinbase_2018.csv           (bundled, 2018)
#   btc     ../shared/data/btc_usd_1h_coinbase_2017-07_2018-12.csv
#   eth     ../shared/data/eth_usd_30m_2017-10_2019-10.csv      (never used in development;
#           30-minute bars resampled to hours, its own column names)
set -euo pipefail
bin=$1 work=$2 shared=${3:-../shared/data}
mkdir -p "$work"

# params.yaml with the data section pointed at another file (everything else untouched).
params_for() { # NAME SYMBOL INTERVAL PATH COLUMNS
  local out="$work/$1.params.yaml"
  sed -e "s|^  symbol: .*|  symbol: $2|" \
      -e "s|^  interval: .*|  interval: $3|" \
      -e "s|^    path: .*|    path: $4|" \
      -e "s|^    columns: .*|    columns: $5|" params.yaml > "$out"
  echo "$out"
}

run() { # NAME PARAMS
  local home="$work/$1" log="$work/$1.log"
  rm -rf "$home"
  {
    "$bin/rps-extract" --params "$2" --home "$home" --full-refresh
    "$bin/rps-quality" --params "$2" --home "$home" --report-dir "$home/reports"
    "$bin/rps-transform" --params "$2" --home "$home"
    "$bin/rps-train" --params "$2" --home "$home"
    "$bin/rps-evaluate" --params "$2" --home "$home" --report-dir "$home/reports"
  } >"$log" 2>&1 || { echo "error: the $1 pipeline failed, see $log" >&2; tail -20 "$log" >&2; exit 1; }
  printf '\n\033[1m== %s\033[0m\n' "$1: $(grep -m1 -o 'path: .*' "$2" | cut -d' ' -f2)"
  sed -n '/^## Walk-forward/,/^### Per fold/p' "$home/reports/evaluation.md" | sed '$d'
}

btc_cols='{timestamp: timestamp_utc, open: open, high: high, low: low, close: close, volume: volume_btc}'
eth_cols='{timestamp: Date, open: ETH.open, high: ETH.high, low: ETH.low, close: ETH.close, volume: ETH.volume}'
run sample params.yaml
if [[ -d "$shared" ]]; then
  run btc "$(params_for btc BTC-USD 1h "$shared/btc_usd_1h_coinbase_2017-07_2018-12.csv" "$btc_cols")"
  run eth "$(params_for eth ETH-USD 30m "$shared/eth_usd_30m_2017-10_2019-10.csv" "$eth_cols")"
else
  echo "note: $shared not found; only the bundled sample was evaluated" >&2
fi
echo
echo "Per-fold tables and plots: $work/<name>/reports/evaluation.md, fold_*.png"
