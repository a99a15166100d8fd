#!/usr/bin/env bash
# `make bench-transform` (also part of `make bench`): `rps transform` against the pandas peer
# (bench/transform/peer.py), both as whole processes on the same input, side by side.
#
# Input: 5 years of synthetic one-minute bars ([2019-01-01, 2023-12-31) UTC: 2,628,000 rows, 60
# monthly Parquet partitions) written by `rps extract --source synthetic` (seeded: the same bytes
# every time), kept in $WORK between runs. Work: minutes → hourly OHLCV and realized volatility
# (the peer also computes the semivariances and bipower variation), the hourly features, the
# next-hour target, the split, one Parquet file. Each side runs once to warm the page cache,
# then RUNS times; the table shows the median wall time and the largest peak RSS
# (/usr/bin/time -v, "Maximum resident set size").
#
# Usage: BIN=target/<triple>/release PY=.venv/bin/python bash bench/transform/run.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BIN=${BIN:-$root/target/release}
PY=${PY:-$root/.venv/bin/python}
WORK=${WORK:-$root/target/bench-transform}
RUNS=${RUNS:-5}
[[ -x /usr/bin/time ]] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
if [[ -x "$BIN/rps" ]]; then
  extract=("$BIN/rps" extract); transform=("$BIN/rps" transform)
else
  extract=("$BIN/rps-extract"); transform=("$BIN/rps-transform")
fi
"$PY" -c 'import pandas, pyarrow' 2>/dev/null || { echo "$PY lacks pandas/pyarrow (make setup-python)" >&2; exit 1; }

mkdir -p "$WORK"
home=$WORK/home
raw=$home/data/raw/SYN
sets=(--params "$root/params.yaml" --home "$home"
  --set data.source=synthetic --set "data.symbols={SYN: {}}" --set data.interval=1m --set data.bar=1h
  --set target.estimator=realized --set data.synthetic.steps_per_bar=1)
if [[ ! -f "$raw/_manifest.json" ]]; then
  echo "writing the input once: 5 years of synthetic one-minute bars → $raw"
  RPS_LOG_FORMAT=human "${extract[@]}" "${sets[@]}" --full-refresh \
    --start 2019-01-01T00:00:00Z --end 2023-12-31T00:00:00Z >/dev/null
fi
rows=$("$PY" -c 'import json,sys; m=json.load(open(sys.argv[1])); print(sum(p["rows"] for p in m["partitions"]), len(m["partitions"]))' "$raw/_manifest.json")
read -r nrows nparts <<<"$rows"
mb=$(du -sm "$raw" | cut -f1)

# measure NAME CMD...: one warm-up, then RUNS timed runs; appends "wall_s rss_kb" lines to $WORK/NAME.txt
measure() {
  local name=$1; shift
  "$@" >/dev/null 2>"$WORK/$name.err" || { cat "$WORK/$name.err" >&2; exit 1; }
  : >"$WORK/$name.txt"
  for _ in $(seq "$RUNS"); do
    /usr/bin/time -v "$@" >/dev/null 2>"$WORK/$name.err" || { cat "$WORK/$name.err" >&2; exit 1; }
    awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; wall = s }
                /Maximum resident set size/ { rss = $2 }
                END { print wall, rss }' "$WORK/$name.err" >>"$WORK/$name.txt"
  done
}
measure peer "$PY" "$here/peer.py" "$raw" "$WORK/peer.parquet"
measure rps env RPS_LOG_FORMAT=json "${transform[@]}" "${sets[@]}" --input "$raw" --out "$WORK/features"

# median wall, max RSS (MB)
summary() { sort -n "$WORK/$1.txt" | awk '{ w[NR] = $1; if ($2 > r) r = $2 } END { printf "%.3f %.0f\n", w[int((NR + 1) / 2)], r / 1024 }'; }
read -r pw pr <<<"$(summary peer)"
read -r rw rr <<<"$(summary rps)"
echo
echo "transform, whole processes: $nrows one-minute bars in $nparts Parquet partitions ($mb MB) → hourly features, one Parquet file"
echo "median of $RUNS runs after a warm-up; $(nproc) cores; $(uname -m)"
printf '%-28s %10s %14s\n' "" "wall s" "peak RSS MB"
printf '%-28s %10s %14s\n' "pandas peer (peer.py)" "$pw" "$pr"
printf '%-28s %10s %14s\n' "rps transform" "$rw" "$rr"
awk -v pw="$pw" -v pr="$pr" -v rw="$rw" -v rr="$rr" 'BEGIN {
  printf "%-28s %9.1fx %13.2fx   (peer wall / rps wall; rps peak / peer peak)\n", "rps vs peer", pw / rw, rr / pr }'
