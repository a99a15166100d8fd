//! A small blocking client for the MLflow tracking server's REST API, as RPS uses it.
//!
//! * **Configuration** from the standard variables ([`MlflowConfig::from_env`]):
//!   `MLFLOW_TRACKING_URI` (unset or empty → `None`: use the local store),
//!   `MLFLOW_TRACKING_USERNAME` + `MLFLOW_TRACKING_PASSWORD` (basic auth; DagHub's user + token),
//!   `MLFLOW_TRACKING_TOKEN` (bearer), `MLFLOW_EXPERIMENT_NAME`.
//! * **Resilience**: every request is retried on 5xx, 429 and connection errors with capped,
//!   jittered exponential back-off ([`RetryPolicy`], 5 tries by default). 401/403 become
//!   [`MlflowError::Unauthorized`], whose message names the variables to set; other failures
//!   carry MLflow's `error_code` and `message` ([`MlflowError::Api`]).
//! * **Tracking**: [`MlflowClient::get_or_create_experiment`], [`MlflowClient::create_run`],
//!   [`MlflowClient::log_batch`] (validated, then split to MLflow's limits: ≤ 1000 metrics,
//!   ≤ 100 params, ≤ 100 tags, ≤ 1000 entities, < 1 MB per request — nothing is truncated),
//!   [`MlflowClient::set_tag`], [`MlflowClient::update_run`], [`MlflowClient::get_run`],
//!   [`MlflowClient::search_runs`], [`MlflowClient::get_metric_history`].
//! * **Artifacts** through the server's proxy (`mlflow-artifacts:` URIs):
//!   [`MlflowClient::log_artifact_bytes`], [`MlflowClient::log_artifact_file`],
//!   [`MlflowClient::log_artifact_dir`], [`MlflowClient::list_artifacts`],
//!   [`MlflowClient::download_artifact`]. Other schemes need an [`ArtifactBackend`].
//! * **Models**: [`XgboostModel`] renders the MLflow model directory of an XGBoost JSON model
//!   (`MLmodel`, `model.json`, `python_env.yaml`, `requirements.txt`, `conda.yaml`) as
//!   `mlflow.xgboost.save_model` writes it; [`MlflowClient::log_xgboost_model`] uploads it and
//!   records it (`runs/log-model`, tolerant of old servers).
//! * **Registry**: [`MlflowClient::create_registered_model`],
//!   [`MlflowClient::create_model_version`], [`MlflowClient::set_alias`],
//!   [`MlflowClient::get_version_by_alias`], [`MlflowClient::delete_alias`]. Servers without a
//!   registry give [`MlflowError::RegistryUnsupported`] so callers can fall back.
//!
//! ```no_run
//! use rps_mlflow::{Metric, MlflowClient, RunStatus, XgboostModel};
//!
//! # fn main() -> Result<(), rps_mlflow::MlflowError> {
//! let Some(client) = MlflowClient::from_env()? else {
//!     return Ok(()); // MLFLOW_TRACKING_URI unset: track locally instead
//! };
//! let experiment = client.config().experiment_name.clone().unwrap_or_else(|| "rps".into());
//! let exp_id = client.get_or_create_experiment(&experiment)?;
//! let run = client.create_run(&exp_id, "train-btc", &[("stage".into(), "train".into())])?;
//! let metrics: Vec<Metric> = (0..3).map(|i| Metric::new("val/qlike", 0.5 / f64::from(i + 1), i.into())).collect();
//! client.log_batch(&run.run_id, &metrics, &[("max_depth".into(), "4".into())], &[])?;
//!
//! let model_json = std::fs::read("model.json").map_err(|e| rps_mlflow::MlflowError::InvalidArgument(e.to_string()))?;
//! let model = XgboostModel::new(model_json, vec!["rv_lag_1".into(), "ret_abs_1".into()], "rv_pred")?;
//! client.log_xgboost_model(&run, "model", &model)?;
//! match client.create_registered_model("rps-rv") {
//!     Ok(()) => {
//!         let version = client.create_model_version("rps-rv", &format!("{}/model", run.artifact_uri), &run.run_id)?;
//!         client.set_alias("rps-rv", "champion", &version)?;
//!     }
//!     Err(rps_mlflow::MlflowError::RegistryUnsupported { .. }) => {
//!         client.set_tag(&run.run_id, "rps.champion", "true")?; // fallback
//!     }
//!     Err(e) => return Err(e),
//! }
//! client.update_run(&run.run_id, RunStatus::Finished)?;
//! # Ok(())
//! # }
//! ```
//!
//! The client is blocking (reqwest's blocking client): do not call it from inside an async
//! runtime's worker thread.

mod artifacts;
pub mod batch;
mod client;
mod config;
mod error;
mod inputs;
mod model_dir;
mod registry;
mod types;

pub use artifacts::{ArtifactBackend, PROXY_SCHEME, proxy_root, validate_artifact_path};
pub use batch::{LogBatchRequest, plan_log_batch, validate_key};
pub use client::MlflowClient;
pub use config::{
    Auth, ENV_EXPERIMENT_NAME, ENV_PASSWORD, ENV_TOKEN, ENV_TRACKING_URI, ENV_USERNAME,
    MlflowConfig, RetryPolicy,
};
pub use error::{MlflowError, Result};
pub use inputs::{Dataset, DatasetInput, MAX_DIGEST_LEN};
pub use model_dir::{
    DEFAULT_PYTHON_VERSION, MODEL_DATA_FILE, ModelFile, PythonEnv, VERIFIED_MLFLOW_VERSION,
    VERIFIED_XGBOOST_VERSION, XgboostModel, new_model_uuid, utc_now_string,
    write_xgboost_model_dir,
};
pub use registry::validate_alias;
pub use types::{
    Experiment, FileInfo, LogModelOutcome, Metric, ModelVersion, ModelVersionTag, Run, RunInfo,
    RunStatus, now_millis,
};
