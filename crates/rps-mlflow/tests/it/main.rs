//! Integration tests of rps-mlflow, in one target to keep link time down.
//!
//! * `model_dir`: the MLflow model directory, snapshot-tested (always run).
//! * `stub`: behaviour against a tiny_http stub — retries, auth errors, registry fallback,
//!   old-server `log-model` (always run).
//! * `server`: against real `mlflow server`s started by `tests/servers.sh` (ignored; run by
//!   `make test` with `--include-ignored`).

mod common;
mod model_dir;
mod server;
mod stub;
