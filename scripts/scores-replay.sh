#!/usr/bin/env bash
# Online scores over 2021, reproducible by one command (`make scores-replay`; issue #19): train the
# frozen configuration on the shared Binance BTCUSDT file up to 2020-12-31, replay the whole file
# through `rps stream` (tansu + PostgreSQL on loopback, as fast as they go), and write the rolling
# 24 h and 7 d mean QLIKE of the champion, `har_rv`, `har_rv_log` and `ewma` per scored hour of 2021, with a
# summary. docs/model-quality.md "Online scores over 2021" has the numbers and how to read them.
#
# Usage: scores-replay.sh [--keep-servers] BIN_DIR WORK_DIR [SHARED_DATA_DIR]
#
# Writes, under WORK_DIR:
#   home/                   the pipeline's home (registry: the champion trained on hours < 2021)
#   scores_2021.csv         per scored hour of 2021: the three QLIKEs, their rolling means over
#                           24 h and 7 d (time windows ending at that hour, 2021 hours only), the
#                           number of hours in each window, and the champion / har_rv and
#                           champion / har_rv_log 7 d ratios
#   summary.txt             wall times, bars/s, mean QLIKE over 2021, how often the 7 d ratio > 1.05
#   accuracy-2021.png       the dashboard's accuracy panel over 2021 (rolling 7-day QLIKE of the
#                           champion, HAR-RV and EWMA; the champion's 80 % coverage), drawn by
#                           `rps serve`'s /dashboard in headless Chromium (skipped without chromium)
#   scores-replay.pgdump    pg_dump -Fc of the stream's database (candles, predictions, scores):
#                           `pg_restore -d DB scores-replay.pgdump` into any PostgreSQL
# --keep-servers leaves PostgreSQL and tansu running and prints DATABASE_URL, e.g. for
# `rps serve --database-url …` and its /dashboard; stop them with
#   bash crates/rps-stream/tests/servers.sh stop WORK_DIR/servers
set -euo pipefail
keep=false
if [[ ${1:-} == --keep-servers ]]; then keep=true; shift; fi
[[ $# -ge 2 ]] || { echo "usage: scores-replay.sh [--keep-servers] BIN_DIR WORK_DIR [SHARED_DATA_DIR]" >&2; exit 2; }
bin=$(cd "$1" && pwd) work=$2 shared=${3:-../shared/data}
root=$(cd "$(dirname "$0")/.." && pwd)
file=$shared/btc_usdt_1h_binance_2017-08_2021-12.csv
[[ -f "$file" ]] || { echo "error: $file not found (the shared Binance BTCUSDT klines)" >&2; exit 4; }
file=$(cd "$(dirname "$file")" && pwd)/$(basename "$file")
command -v psql >/dev/null || { echo "error: psql not found (Debian: apt-get install postgresql-client)" >&2; exit 3; }
rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)
home=$work/home state=$work/servers log=$work/replay.log
: >"$log"

# The model-quality run's data section (scripts/model-quality.sh), cut at 2021-01-01 for training;
# the walk-forward is off (the replay needs only the registered champion). Everything else is
# params.yaml as committed: the configuration frozen at 182d614.
kline_cols='{timestamp: date, open: open, high: high, low: low, close: close, volume: volume, quote_volume: quote_asset_volume, trades: number_of_trades, taker_buy_volume: taker_buy_base_asset_volume, taker_buy_quote_volume: taker_buy_quote_asset_volume}'
common=(--params "$root/params.yaml" --home "$home"
  --set "data.symbols={BTC-USDT: {}}" --set data.interval=1h
  --set "data.file.path=$file" --set "data.file.columns=$kline_cols")
train_only=(--set 'data.end="2021-01-01T00:00:00Z"' --set evaluate.walk_forward_folds=0)

step() { printf '\n== %s\n' "$*"; }
t_all=$SECONDS
step "train on $file, hours before 2021-01-01"
t=$SECONDS
{
  "$bin/rps" extract "${common[@]}" "${train_only[@]}" --full-refresh
  "$bin/rps" quality "${common[@]}" "${train_only[@]}" --report-dir "$home/reports"
  "$bin/rps" transform "${common[@]}" "${train_only[@]}"
  "$bin/rps" train "${common[@]}" "${train_only[@]}"
  "$bin/rps" evaluate "${common[@]}" "${train_only[@]}" --report-dir "$home/reports"
} >>"$log" 2>&1 || { echo "error: the pipeline failed, see $log" >&2; tail -20 "$log" >&2; exit 1; }
t_train=$((SECONDS - t))
echo "pipeline: $t_train s (log: $log)"

step "PostgreSQL and tansu on loopback"
cleanup() { $keep || bash "$root/crates/rps-stream/tests/servers.sh" stop "$state" >/dev/null 2>&1 || true; }
trap cleanup EXIT
py=$(command -v python3)
eval "$(bash "$root/crates/rps-stream/tests/servers.sh" start "$py" "$state" 2>>"$log")"
base=${RPS_TEST_DATABASE_URL%/*}
db_url=$base/rps_replay
psql -q -X -v ON_ERROR_STOP=1 "$RPS_TEST_DATABASE_URL" -c 'DROP DATABASE IF EXISTS rps_replay' -c 'CREATE DATABASE rps_replay'
stream=("$bin/rps" stream "${common[@]}" --brokers "$RPS_TEST_KAFKA_BROKERS" --topic rps-replay
  --database-url "$db_url")

step "replay the whole file through rps stream (produce, then consume)"
t0=$(date +%s.%N)
"${stream[@]}" produce >>"$log" 2>&1
t1=$(date +%s.%N)
"${stream[@]}" consume --aliases champion --idle-exit 3 >>"$log" 2>&1
t2=$(date +%s.%N)
q() { psql -X -A -t -v ON_ERROR_STOP=1 "$db_url" -c "$1"; }
bars=$(q "SELECT count(*) FROM candles")
champ=$(q "SELECT model || ' v' || version FROM predictions WHERE alias = 'champion' LIMIT 1")
read -r produce_s consume_s produce_bps consume_bps < <(awk -v a="$t0" -v b="$t1" -v c="$t2" -v n="$bars" \
  'BEGIN { printf "%.1f %.1f %.0f %.0f\n", b - a, c - b, n / (b - a), n / (c - b) }')
# consume waited --idle-exit 3 s for more messages before it stopped: not work, taken out.
read -r consume_work consume_work_bps < <(awk -v s="$consume_s" -v n="$bars" \
  'BEGIN { w = s - 3; printf "%.1f %.0f\n", w, n / w }')
echo "$bars bars: produce $produce_s s ($produce_bps bars/s), consume $consume_work s of work ($consume_work_bps bars/s)"

cov_low=$(awk '/^monitor:/ {m = 1} m && $1 == "coverage_low:" {print $2; exit}' "$root/params.yaml")
cov_high=$(awk '/^monitor:/ {m = 1} m && $1 == "coverage_high:" {print $2; exit}' "$root/params.yaml")

step "rolling QLIKE over 2021"
# One row per scored hour of 2021 (the scores' bar_time: the hour whose close scored the forecast
# made an hour earlier); the champion, its har_rv (HAR-RV's smeared level forecast from the
# champion's base margin), har_rv_log (the same without smearing) and ewma side by side; time
# windows of the last 24 h / 7 d ending at that hour, over 2021 hours only (the model saw every
# earlier hour).
series="
  WITH s AS (
    SELECT bar_time,
           max(qlike) FILTER (WHERE alias = 'champion' AND model NOT IN ('har_rv', 'har_rv_log')) AS champion,
           max(qlike) FILTER (WHERE alias = 'champion' AND model = 'har_rv') AS har_rv,
           max(qlike) FILTER (WHERE alias = 'champion' AND model = 'har_rv_log') AS har_rv_log,
           max(qlike) FILTER (WHERE model = 'ewma') AS ewma
    FROM scores
    WHERE bar_time >= '2021-01-01T00:00:00Z' AND bar_time < '2022-01-01T00:00:00Z'
    GROUP BY bar_time)
  SELECT to_char(bar_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS bar_time,
         champion, har_rv, har_rv_log, ewma,
         avg(champion) OVER d AS champion_24h, avg(har_rv) OVER d AS har_rv_24h,
         avg(har_rv_log) OVER d AS har_rv_log_24h,
         avg(ewma) OVER d AS ewma_24h, count(*) OVER d AS hours_24h,
         avg(champion) OVER w AS champion_7d, avg(har_rv) OVER w AS har_rv_7d,
         avg(har_rv_log) OVER w AS har_rv_log_7d,
         avg(ewma) OVER w AS ewma_7d, count(*) OVER w AS hours_7d,
         avg(champion) OVER w / avg(har_rv) OVER w AS ratio_7d_vs_har_rv,
         avg(champion) OVER w / avg(har_rv_log) OVER w AS ratio_7d_vs_har_rv_log
  FROM s
  WINDOW d AS (ORDER BY bar_time RANGE BETWEEN interval '23 hours' PRECEDING AND CURRENT ROW),
         w AS (ORDER BY bar_time RANGE BETWEEN interval '167 hours' PRECEDING AND CURRENT ROW)
  ORDER BY s.bar_time"
psql -X -q -v ON_ERROR_STOP=1 "$db_url" -c "COPY ($series) TO STDOUT WITH (FORMAT csv, HEADER)" >"$work/scores_2021.csv"
# How often a 7-day ratio column exceeded 1.05 (RpsChampionWorseThanHarRv's condition with the
# default monitor.qlike_margin, without its `for:`) and 1, over the hours with a full window.
full="bar_time >= '2021-01-07T23:00:00Z'"
exceed() {
  echo "'7-day ratio champion / $1 > 1.05 in ' ||
           count(*) FILTER (WHERE ratio_7d_vs_$1 > 1.05 AND $full) ||
           ' of ' || count(*) FILTER (WHERE $full) ||
           ' hours with a full 7-day window of 2021 (' ||
           round(100.0 * count(*) FILTER (WHERE ratio_7d_vs_$1 > 1.05 AND $full)
             / count(*) FILTER (WHERE $full), 1) || ' %); > 1 in ' ||
           round(100.0 * count(*) FILTER (WHERE ratio_7d_vs_$1 > 1 AND $full)
             / count(*) FILTER (WHERE $full), 1) || ' %; max ' ||
           round(max(ratio_7d_vs_$1) FILTER (WHERE $full)::numeric, 3) ||
           ', min ' || round(min(ratio_7d_vs_$1) FILTER (WHERE $full)::numeric, 3)"
}
summary=$(q "
  WITH r AS ($series)
  SELECT count(*) || ' scored hours of 2021 (' || count(*) FILTER (WHERE champion IS NOT NULL
           AND har_rv IS NOT NULL AND har_rv_log IS NOT NULL AND ewma IS NOT NULL) ||
           ' with all four)' || chr(10) ||
         'mean QLIKE over 2021: champion ' || round(avg(champion)::numeric, 4) ||
           ', har_rv ' || round(avg(har_rv)::numeric, 4) ||
           ', har_rv_log ' || round(avg(har_rv_log)::numeric, 4) ||
           ', ewma ' || round(avg(ewma)::numeric, 4) || chr(10) ||
         'champion / har_rv: ' || round((avg(champion) / avg(har_rv))::numeric, 4) ||
           '; champion / har_rv_log: ' || round((avg(champion) / avg(har_rv_log))::numeric, 4) ||
           '; champion / ewma: ' || round((avg(champion) / avg(ewma))::numeric, 4) || chr(10) ||
         $(exceed har_rv) || chr(10) ||
         $(exceed har_rv_log)
  FROM r")
# The champion's rolling 7-day coverage of its 80 % interval against params.yaml's monitor band
# (RpsIntervalCoverageOff's condition, without its `for:`), over hours with a full window.
coverage=$(q "
  WITH c AS (
    SELECT bar_time, avg(CASE WHEN covered_80 THEN 1.0 ELSE 0.0 END) OVER w AS cov
    FROM scores
    WHERE alias = 'champion' AND model NOT IN ('har_rv', 'har_rv_log') AND covered_80 IS NOT NULL
      AND bar_time >= '2021-01-01T00:00:00Z' AND bar_time < '2022-01-01T00:00:00Z'
    WINDOW w AS (ORDER BY bar_time RANGE BETWEEN interval '167 hours' PRECEDING AND CURRENT ROW))
  SELECT 'champion 80 % coverage over 2021: ' || round(100.0 * avg(cov)::numeric, 1) ||
         ' % (rolling 7 d: min ' || round(100.0 * min(cov)::numeric, 1) || ' %, max ' ||
         round(100.0 * max(cov)::numeric, 1) || ' %); outside [' || $cov_low || ', ' || $cov_high ||
         '] in ' || count(*) FILTER (WHERE cov < $cov_low OR cov > $cov_high) || ' of ' || count(*) ||
         ' hours with a full 7-day window'
  FROM c WHERE bar_time >= '2021-01-07T23:00:00Z'")
pg_dump -Fc -f "$work/scores-replay.pgdump" "$db_url"

step "the dashboard's accuracy panel over 2021 (rps serve + headless Chromium)"
# The README's plot, drawn by the dashboard itself: `rps serve` on this home's registry and the
# replay's database, its /dashboard with panel=accuracy over the 8,760 hours to the newest
# scored bar (2021-12-31 23:00 UTC), screenshot by headless Chromium.
chromium=${RPS_CHROMIUM:-chromium}
if command -v "$chromium" >/dev/null; then
  port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$bin/rps" serve --registry "$home/registry" --params "$root/params.yaml" \
    --database-url "$db_url" --bind "127.0.0.1:$port" >>"$log" 2>&1 &
  serve_pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.1; done
  profile=$(mktemp -d)
  "$chromium" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
    --hide-scrollbars --virtual-time-budget=20000 --window-size=1250,560 \
    --user-data-dir="$profile" --screenshot="$work/accuracy-2021.png" \
    "http://127.0.0.1:$port/dashboard?symbol=BTC-USDT&hours=8760&panel=accuracy" >>"$log" 2>&1 ||
    echo "warning: chromium failed, see $log" >&2
  kill "$serve_pid" 2>/dev/null || true
  wait "$serve_pid" 2>/dev/null || true
  rm -rf "$profile"
  [[ -s $work/accuracy-2021.png ]] && echo "plot: $work/accuracy-2021.png (docs/img/accuracy-2021.png is a copy)"
else
  echo "skipped: $chromium not found (Debian: apt-get install chromium; or set RPS_CHROMIUM)"
fi
{
  echo "champion: $champ, trained on $file hours before 2021-01-01 (params.yaml as committed, $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'))"
  echo "pipeline (extract, quality, transform, train, evaluate without walk-forward): $t_train s"
  echo "replay of $bars bars: produce $produce_s s ($produce_bps bars/s), consume $consume_work s ($consume_work_bps bars/s; --idle-exit's 3 s taken out)"
  echo "$summary"
  echo "$coverage"
  echo "whole script: $((SECONDS - t_all)) s"
} | tee "$work/summary.txt"
echo
echo "CSV: $work/scores_2021.csv  summary: $work/summary.txt  dump: $work/scores-replay.pgdump"
if $keep; then
  echo "servers kept running: DATABASE_URL=$db_url"
  echo "  stop them with: bash crates/rps-stream/tests/servers.sh stop $state"
fi
