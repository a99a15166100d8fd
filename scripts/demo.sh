#!/usr/bin/env bash
# The demo: the whole pipeline on the bundled real sample (or a file given as $3), in its own
# home folder so it never mixes with other runs. Usage: demo.sh BIN_DIR HOME [DATA]
set -euo pipefail
bin=$1 home=$2 data=${3:-}
reports="$home/reports"
args=(--home "$home")
# With MLflow configured, the five stage runs nest under one parent run for this invocation.
export RPS_PIPELINE_RUN="${RPS_PIPELINE_RUN:-demo-$(date -u +%Y%m%dT%H%M%SZ)}"
extract=(--full-refresh)
if [[ -n "$data" ]]; then
  [[ -f "$data" ]] || { echo "error: DATA=$data: no such file" >&2; exit 4; }
  extract+=(--file "$data")
fi
# Bold headings on a terminal only (never in pipes, CI logs, or with NO_COLOR set).
if [[ -t 1 && -z "${NO_COLOR:-}" ]]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
# The symbol params.yaml lists (data.symbols; the demo reads that file) and its sample file.
symbol=$("$bin/rps" symbols --lines | head -n 1)
sample=$(sed -n 's/.*file: *{ *path: *\([^ ,}]*\).*/\1/p' params.yaml | head -n 1)
step "extract: ${data:-bundled sample $sample}"
"$bin/rps-extract" "${args[@]}" "${extract[@]}"
step "quality gate"
"$bin/rps-quality" "${args[@]}" --report-dir "$reports"
step "transform"
"$bin/rps-transform" "${args[@]}"
step "train"
"$bin/rps-train" "${args[@]}"
step "evaluate"
"$bin/rps-evaluate" "${args[@]}" --report-dir "$reports"
cat <<MSG

Artifacts:
  raw data (Parquet, monthly partitions)   $home/data/raw/$symbol/
  features + schema                        $home/data/features/$symbol/{features.parquet,schema.json}
  trained model (XGBoost JSON/UBJ)         $home/models/candidate/{model.json,model.ubj,meta.json}
  model registry (versions, champion)      $home/registry/
  run records                              $home/runs/
  quality report                           $reports/quality.{json,html}
  evaluation                               $reports/{metrics.json,metrics_detail.json,evaluation.md,predictions.csv,predictions.png}
  walk-forward                             $reports/{walkforward.csv,walkforward_fold*.png,walkforward_band_*.png}
  calibration, feature importance          $reports/{walkforward_reliability.png,walkforward_tercile_coverage.png,feature_importance.{csv,png}}
MSG
