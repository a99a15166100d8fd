#!/usr/bin/env bash
# The RPS DAG in local mode: every task runs the rps binary as a local process (no Kubernetes).
# Airflow's state lives in .rps/airflow (AIRFLOW_HOME), the pipeline's in .rps/airflow-run
# (RPS_HOME) and its reports in .rps/airflow-run/reports, all in this clone.
#
# Usage: airflow/run-local.sh [test [LOGICAL_DATE] | standalone]
#   test (default)  one run of crypto_volatility_pipeline with `airflow dags test`; the default
#                   logical date 2022-01-01 makes the data interval the year 2021, the second year
#                   of the bundled sample (2020-2021)
#   standalone      the Airflow UI and scheduler on http://localhost:8080 (trigger the DAGs there;
#                   give a logical date of 2021-01-01 or 2022-01-01 for a year of the sample)
# Environment (defaults in brackets):
#   VENV            the Python venv holding Airflow [.venv, as `make setup-python` creates it]
#   RPS_BIN         the rps binary [$CARGO_TARGET_DIR/x86_64-unknown-linux-musl/release/rps]
#   RPS_AIRFLOW_*   any DAG setting (airflow/README.md); the schedule defaults to @yearly here
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mode=${1:-test}
venv=${VENV:-$root/.venv}
[[ -x "$venv/bin/airflow" ]] || { echo "error: no Airflow in $venv: run make setup-python (or set VENV)" >&2; exit 3; }
export RPS_BIN=${RPS_BIN:-${CARGO_TARGET_DIR:-$root/target}/x86_64-unknown-linux-musl/release/rps}
[[ -x "$RPS_BIN" ]] || { echo "error: $RPS_BIN not found: run make build (or set RPS_BIN)" >&2; exit 3; }

export AIRFLOW_HOME=${AIRFLOW_HOME:-$root/.rps/airflow}
export AIRFLOW__CORE__DAGS_FOLDER=$root/dags
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export RPS_AIRFLOW_EXECUTOR=local
export RPS_AIRFLOW_WORKDIR=${RPS_AIRFLOW_WORKDIR:-$root}
export RPS_HOME=${RPS_HOME:-$root/.rps/airflow-run}
export RPS_PARAMS=${RPS_PARAMS:-$root/params.yaml}
export RPS_AIRFLOW_REPORT_DIR=${RPS_AIRFLOW_REPORT_DIR:-$RPS_HOME/reports}
export RPS_AIRFLOW_PIPELINE_SCHEDULE=${RPS_AIRFLOW_PIPELINE_SCHEDULE:-@yearly}
export PYTHONDONTWRITEBYTECODE=1
mkdir -p "$AIRFLOW_HOME" "$RPS_HOME"

"$venv/bin/airflow" db migrate >/dev/null
case $mode in
  test)
    "$venv/bin/airflow" dags test crypto_volatility_pipeline "${2:-2022-01-01T00:00:00+00:00}"
    echo
    echo "model:   $RPS_HOME/models/candidate/"
    echo "reports: $RPS_AIRFLOW_REPORT_DIR/"
    ;;
  standalone) exec "$venv/bin/airflow" standalone ;;
  *) echo "error: unknown mode $mode (test or standalone)" >&2; exit 2 ;;
esac
