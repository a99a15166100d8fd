//! Run tracking and the model registry.
//!
//! Two seams, each with the embedded local implementation used when no server is configured:
//! - [`Tracker`] / [`Run`]: parameters, metrics (with steps), tags, artifacts and a final status
//!   per stage run — MLflow's model. [`LocalTracker`] keeps them under `<root>/<run_id>/`.
//! - [`Registry`]: numbered model versions and aliases (`champion`, `challenger`, `baseline`:
//!   the live set, module [`live`]); old versions are archived, never deleted
//!   ([`live::retain`]).
//!   [`LocalRegistry`] keeps them in an object store:
//!   `<model>/versions/<n>/{model.json, model.ubj, meta.json, schema.json, version.json}` and
//!   `<model>/aliases.json`; archived versions move to `<model>/archive/<n>/`.
//!
//! With `MLFLOW_TRACKING_URI` set, [`MlflowTracker`] and [`MlflowRegistry`] put both on an
//! MLflow server instead (module [`mlflow`]).

pub mod live;
mod local;
pub mod mlflow;
pub mod pipeline;
mod registry;

pub use local::{LocalRun, LocalTracker, RunRecord};
pub use mlflow::{MlflowRegistry, MlflowRun, MlflowTracker, S3Artifacts};
pub use registry::{LoadedModel, LocalRegistry, ModelFiles, Registry, VersionInfo};

use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum TrackingError {
    #[error(transparent)]
    Store(#[from] rps_store::StoreError),
    #[error(transparent)]
    Model(#[from] rps_model::ModelError),
    #[error(transparent)]
    Commit(#[from] rps_store::commit::CommitError),
    #[error(
        "{uri} holds {name} v{version} by its version.json, but its {file} is not the registry's v{version} ({registry}); rerun rps-train"
    )]
    NotRegistered {
        uri: String,
        name: String,
        version: u32,
        file: String,
        registry: String,
    },
    #[error("bad record {uri}: {source}")]
    Json {
        uri: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("model {name:?} has no version {version}")]
    NoVersion { name: String, version: u32 },
    #[error("model {name:?} has no alias {alias:?}")]
    NoAlias { name: String, alias: String },
    #[error("{0}")]
    Backend(String),
    /// The MLflow server failed or refused (after retries).
    #[error(transparent)]
    Remote(Box<rps_mlflow::MlflowError>),
}

impl TrackingError {
    /// Whether a remote tracking server failed (stages exit with code 6, REMOTE).
    pub fn is_remote(&self) -> bool {
        matches!(self, Self::Remote(_))
    }

    /// Whether a file that was read is bad or torn — a record or model file that does not parse,
    /// a torn model folder, a candidate that is not the registered version (exit 4, input) —
    /// rather than the store or server failing.
    pub fn is_input(&self) -> bool {
        match self {
            Self::Json { .. } | Self::NotRegistered { .. } => true,
            Self::Commit(e) => e.is_input(),
            Self::Model(e) => e.is_load_error(),
            _ => false,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    Running,
    Finished,
    Failed,
}

/// One metric value.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetricPoint {
    pub key: String,
    pub value: f64,
    pub step: i64,
    pub timestamp_ms: i64,
}

/// A place that records runs.
pub trait Tracker: Send + Sync {
    /// Start a run of `stage` with tags (git commit, data hash, …).
    fn start_run(
        &self,
        stage: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<Box<dyn Run>, TrackingError>;
    /// Where runs go, for logs.
    fn describe(&self) -> String;
}

/// An open run. Dropping it without [`Run::finish`] leaves it RUNNING (as a killed process would).
pub trait Run: Send {
    fn id(&self) -> &str;
    fn log_params(&mut self, params: &[(String, String)]) -> Result<(), TrackingError>;
    fn log_metrics(&mut self, metrics: &[MetricPoint]) -> Result<(), TrackingError>;
    fn set_tags(&mut self, tags: &[(String, String)]) -> Result<(), TrackingError>;
    fn log_artifact(&mut self, path: &str, bytes: &[u8]) -> Result<(), TrackingError>;
    fn finish(&mut self, status: RunStatus) -> Result<(), TrackingError>;

    /// [`Run::log_values`] for metrics whose names were built at run time.
    fn log_owned_values(&mut self, values: &[(String, f64)]) -> Result<(), TrackingError> {
        let borrowed: Vec<(&str, f64)> = values.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        self.log_values(&borrowed)
    }

    /// Log plain `key = value` metrics at step 0.
    fn log_values(&mut self, values: &[(&str, f64)]) -> Result<(), TrackingError> {
        let now = chrono::Utc::now().timestamp_millis();
        let points: Vec<MetricPoint> = values
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(k, v)| MetricPoint {
                key: (*k).to_owned(),
                value: *v,
                step: 0,
                timestamp_ms: now,
            })
            .collect();
        self.log_metrics(&points)
    }
}

/// Run `f` inside a run of `stage`: FINISHED when it returns `Ok`, FAILED when it returns `Err`
/// (a failure to record the final status is logged, not raised over the stage's own result).
pub fn with_run<T, E: From<TrackingError>>(
    tracker: &dyn Tracker,
    stage: &str,
    tags: &BTreeMap<String, String>,
    f: impl FnOnce(&mut dyn Run) -> Result<T, E>,
) -> Result<T, E> {
    let mut run = tracker.start_run(stage, tags)?;
    tracing::info!(
        run_id = run.id(),
        "tracking {stage} in {}",
        tracker.describe()
    );
    let out = f(run.as_mut());
    let status = if out.is_ok() {
        RunStatus::Finished
    } else {
        RunStatus::Failed
    };
    if let Err(e) = run.finish(status) {
        tracing::warn!("could not mark run {} {status:?}: {e}", run.id());
    }
    out
}

/// A new run id: 32 hex characters, like MLflow's.
pub fn new_run_id() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..16)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}
