//! Runs and the registry on an MLflow tracking server (`MLFLOW_TRACKING_URI`).
//!
//! - [`MlflowTracker`]: one MLflow run per stage run, in the experiment `MLFLOW_EXPERIMENT_NAME`
//!   (default [`DEFAULT_EXPERIMENT`]), named after the stage, tagged `rps.stage`; params, metrics
//!   and tags through `runs/log-batch`, artifacts through the server's artifact proxy, the final
//!   status through `runs/update`.
//! - [`MlflowRegistry`]: a version is an MLflow model directory logged under the training run's
//!   `model/` artifacts (`MLmodel` + XGBoost JSON, loadable with `mlflow.pyfunc.load_model`),
//!   with RPS's `model.ubj`, `meta.json`, `schema.json` and `version.json` beside it, registered
//!   with `registered-models/create` + `model-versions/create`; aliases are MLflow aliases.
//!   When the server has no model registry ([`rps_mlflow::MlflowError::RegistryUnsupported`],
//!   e.g. DagHub's old MLflow), versions and aliases fall back to a [`LocalRegistry`] (the model
//!   is still logged on the run) and the run is tagged `rps.registry = local`.

use crate::{
    LoadedModel, LocalRegistry, MetricPoint, ModelFiles, Registry, Run, RunStatus, Tracker,
    TrackingError, VersionInfo,
};
use rps_mlflow::{MlflowClient, MlflowError, RunInfo, XgboostModel};
use rps_model::{META, QUANTILE_JSON, QUANTILE_UBJ, XGB_JSON, XGB_UBJ};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// The experiment used when `MLFLOW_EXPERIMENT_NAME` is unset.
pub const DEFAULT_EXPERIMENT: &str = "rps";
/// Where a version's model directory lives in the training run's artifacts.
pub const MODEL_ARTIFACT_PATH: &str = "model";
/// The name of the model's output in its MLflow signature.
pub const OUTPUT_NAME: &str = "volatility";
/// RPS's record of a version, beside the model files.
const VERSION_JSON: &str = "version.json";
/// The model-version tag that marks a version archived by retention (value `true`).
pub const ARCHIVED_TAG: &str = "rps.archived";

impl From<MlflowError> for TrackingError {
    fn from(e: MlflowError) -> Self {
        Self::Remote(Box::new(e))
    }
}

/// Runs recorded on an MLflow server.
#[derive(Debug, Clone)]
pub struct MlflowTracker {
    client: Arc<MlflowClient>,
    experiment: String,
    experiment_id: Arc<OnceLock<String>>,
}

impl MlflowTracker {
    /// Runs go to the client's configured experiment, else [`DEFAULT_EXPERIMENT`].
    pub fn new(client: Arc<MlflowClient>) -> Self {
        let experiment = client
            .config()
            .experiment_name
            .clone()
            .unwrap_or_else(|| DEFAULT_EXPERIMENT.to_owned());
        Self {
            client,
            experiment,
            experiment_id: Arc::new(OnceLock::new()),
        }
    }

    /// The experiment's name.
    pub fn experiment(&self) -> &str {
        &self.experiment
    }

    fn experiment_id(&self) -> Result<String, TrackingError> {
        if let Some(id) = self.experiment_id.get() {
            return Ok(id.clone());
        }
        let id = self.client.get_or_create_experiment(&self.experiment)?;
        Ok(self.experiment_id.get_or_init(|| id).clone())
    }
}

impl Tracker for MlflowTracker {
    fn start_run(
        &self,
        stage: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<Box<dyn Run>, TrackingError> {
        let experiment_id = self.experiment_id()?;
        let mut all: BTreeMap<String, String> = tags.clone();
        let parent = match crate::pipeline::invocation() {
            Some(id) => {
                let run_id = crate::pipeline::parent_run(&self.client, &experiment_id, &id)?;
                all.insert(crate::pipeline::PARENT_TAG.to_owned(), run_id.clone());
                all.insert(crate::pipeline::PIPELINE_TAG.to_owned(), id);
                Some(crate::pipeline::Parent {
                    run_id,
                    closes: stage == crate::pipeline::LAST_STAGE,
                })
            }
            None => None,
        };
        all.insert("rps.stage".to_owned(), stage.to_owned());
        all.insert("mlflow.source.name".to_owned(), format!("rps-{stage}"));
        all.insert("mlflow.source.type".to_owned(), "LOCAL".to_owned());
        if let Some(c) = tags.get("git_commit") {
            let (commit, dirty) = split_dirty(c);
            all.insert("mlflow.source.git.commit".to_owned(), commit.to_owned());
            all.insert("git_dirty".to_owned(), dirty.to_string());
        }
        let tags: Vec<(String, String)> = all.into_iter().collect();
        let info = self.client.create_run(&experiment_id, stage, &tags)?;
        if let Some(input) = crate::pipeline::dataset_input(stage, &tags.iter().cloned().collect())
            && let Err(e) = self.client.log_inputs(&info.run_id, &[input])
        {
            // Lineage is for people reading the UI; a server that cannot take it is no reason
            // to stop the stage.
            tracing::warn!(run_id = %info.run_id, "could not log the run's dataset: {e}");
        }
        Ok(Box::new(MlflowRun {
            client: self.client.clone(),
            info,
            parent,
        }))
    }

    fn describe(&self) -> String {
        format!(
            "MLflow {} (experiment {:?})",
            self.client.tracking_uri(),
            self.experiment
        )
    }
}

/// An open MLflow run.
#[derive(Debug)]
pub struct MlflowRun {
    client: Arc<MlflowClient>,
    info: RunInfo,
    /// The pipeline invocation's parent run, when `RPS_PIPELINE_RUN` is set.
    parent: Option<crate::pipeline::Parent>,
}

impl MlflowRun {
    /// The run's identity and artifact location.
    pub fn info(&self) -> &RunInfo {
        &self.info
    }
}

impl Run for MlflowRun {
    fn id(&self) -> &str {
        &self.info.run_id
    }

    fn log_params(&mut self, params: &[(String, String)]) -> Result<(), TrackingError> {
        Ok(self.client.log_batch(&self.info.run_id, &[], params, &[])?)
    }

    fn log_metrics(&mut self, metrics: &[MetricPoint]) -> Result<(), TrackingError> {
        let metrics: Vec<rps_mlflow::Metric> = metrics
            .iter()
            .map(|m| rps_mlflow::Metric {
                key: m.key.clone(),
                value: m.value,
                timestamp: m.timestamp_ms,
                step: m.step,
            })
            .collect();
        Ok(self
            .client
            .log_batch(&self.info.run_id, &metrics, &[], &[])?)
    }

    fn set_tags(&mut self, tags: &[(String, String)]) -> Result<(), TrackingError> {
        Ok(self.client.log_batch(&self.info.run_id, &[], &[], tags)?)
    }

    fn log_artifact(&mut self, path: &str, bytes: &[u8]) -> Result<(), TrackingError> {
        Ok(self.client.log_artifact_bytes(&self.info, path, bytes)?)
    }

    fn finish(&mut self, status: RunStatus) -> Result<(), TrackingError> {
        let status = match status {
            RunStatus::Running => rps_mlflow::RunStatus::Running,
            RunStatus::Finished => rps_mlflow::RunStatus::Finished,
            RunStatus::Failed => rps_mlflow::RunStatus::Failed,
        };
        self.client.update_run(&self.info.run_id, status)?;
        if let Some(p) = &self.parent {
            p.stage_ended(&self.client, status);
        }
        Ok(())
    }
}

/// The model registry of an MLflow server, with a local fallback for servers without one.
#[derive(Debug, Clone)]
pub struct MlflowRegistry {
    client: Arc<MlflowClient>,
    fallback: LocalRegistry,
    unsupported: Arc<AtomicBool>,
}

impl MlflowRegistry {
    /// `fallback` keeps versions and aliases when the server has no registry.
    pub fn new(client: Arc<MlflowClient>, fallback: LocalRegistry) -> Self {
        Self {
            client,
            fallback,
            unsupported: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether the server turned out to have no registry (versions are kept locally).
    pub fn uses_fallback(&self) -> bool {
        self.unsupported.load(Ordering::Relaxed)
    }

    /// Run `remote`; on `RegistryUnsupported` switch to the fallback for good (warning once)
    /// and run `local` instead.
    fn either<T>(
        &self,
        remote: impl FnOnce() -> Result<T, TrackingError>,
        local: impl FnOnce(&LocalRegistry) -> Result<T, TrackingError>,
    ) -> Result<T, TrackingError> {
        if self.uses_fallback() {
            return local(&self.fallback);
        }
        match remote() {
            Err(TrackingError::Remote(e)) if is_unsupported(&e) => {
                if !self.unsupported.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "MLflow at {} has no model registry ({e}); keeping model versions and \
                         aliases in {} (the model is still logged on the training run)",
                        self.client.tracking_uri(),
                        self.fallback.describe()
                    );
                }
                local(&self.fallback)
            }
            other => other,
        }
    }

    fn log_model_dir(
        &self,
        run: &RunInfo,
        files: &ModelFiles,
        info: &VersionInfo,
    ) -> Result<(), TrackingError> {
        let model = XgboostModel::new(
            files.xgb_json.clone(),
            files.schema.features.clone(),
            OUTPUT_NAME,
        )?
        .with_rps_pyfunc(pyfunc_outputs(&files.meta))
        .with_input_example(vec![reference_row(&files.schema)]);
        self.client
            .log_xgboost_model(run, MODEL_ARTIFACT_PATH, &model)?;
        let json = |v: &dyn erased_json::Json, name: &str| {
            v.to_json().map_err(|source| TrackingError::Json {
                uri: format!("{}/{MODEL_ARTIFACT_PATH}/{name}", run.artifact_uri),
                source,
            })
        };
        let put = |name: &str, bytes: &[u8]| {
            self.client
                .log_artifact_bytes(run, &format!("{MODEL_ARTIFACT_PATH}/{name}"), bytes)
        };
        put(XGB_UBJ, &files.xgb_ubj)?;
        if let Some(q) = &files.quantile {
            put(QUANTILE_JSON, &q.json)?;
            put(QUANTILE_UBJ, &q.ubj)?;
        }
        put("schema.json", &json(&files.schema, "schema.json")?)?;
        put(META, &json(&files.meta, META)?)?;
        put(VERSION_JSON, &json(info, VERSION_JSON)?)?;
        Ok(())
    }

    /// Give the registered model and the new version a description and `rps.*` tags (data,
    /// span, headline metrics, code). Best effort: they are for people reading the UI, so a
    /// server that refuses them only costs a warning.
    fn annotate(&self, files: &ModelFiles, info: &VersionInfo, version: u32) {
        let v = version.to_string();
        let (description, tags) = describe_version(files, info);
        let task = if files.meta.task.as_str() == "signal" {
            "Buy/Hold/Sell signal"
        } else {
            "volatility (σ of log returns)"
        };
        let model_description = format!(
            "Next-bar {task} of {} from RPS ({} bars). Aliases: champion (served), challenger (latest runner-up), baseline (first champion). Each version's description and rps.* tags say what data, span, metrics and code it came from.",
            files.schema.symbol, files.schema.bar,
        );
        let result = (|| -> Result<(), MlflowError> {
            self.client
                .update_model_version_description(&info.name, &v, &description)?;
            for (k, value) in &tags {
                self.client
                    .set_model_version_tag(&info.name, &v, k, value)?;
            }
            self.client
                .update_registered_model_description(&info.name, &model_description)?;
            self.client
                .set_registered_model_tag(&info.name, "rps.symbol", &files.schema.symbol)
        })();
        if let Err(e) = result {
            tracing::warn!(model = %info.name, version, "could not describe the model version: {e}");
        }
    }

    /// The run that logged a version and the artifact path of its model directory.
    fn version_location(
        &self,
        name: &str,
        version: u32,
    ) -> Result<(RunInfo, String), TrackingError> {
        let mv = match self.client.get_model_version(name, &version.to_string()) {
            Ok(mv) => mv,
            Err(e) if e.is_not_found() => {
                return Err(TrackingError::NoVersion {
                    name: name.to_owned(),
                    version,
                });
            }
            Err(e) => return Err(e.into()),
        };
        let run_id = mv.run_id.filter(|r| !r.is_empty()).ok_or_else(|| {
            TrackingError::Backend(format!(
                "MLflow model {name:?} version {version} has no run; it was not registered by RPS"
            ))
        })?;
        let run = self.client.get_run(&run_id)?.info;
        let source = mv.source.unwrap_or_default();
        let root = run.artifact_uri.trim_end_matches('/');
        let path = source
            .strip_prefix(root)
            .or_else(|| source.strip_prefix(&format!("runs:/{run_id}")))
            .map(|p| p.trim_matches('/').to_owned())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| MODEL_ARTIFACT_PATH.to_owned());
        Ok((run, path))
    }
}

impl MlflowRegistry {
    /// The server's versions of `name`, ascending: the archived ones (tag [`ARCHIVED_TAG`]) or
    /// the others.
    /// Every version of `name` in full. MLflow's `model-versions/search` leaves out aliases
    /// (and is not guaranteed to carry tags), so each version is read back with
    /// `model-versions/get`; retention keeps the count small.
    fn full_versions(
        &self,
        name: &str,
    ) -> Result<Vec<(u32, rps_mlflow::ModelVersion)>, TrackingError> {
        let mut out = Vec::new();
        for mv in self.client.search_model_versions(name)? {
            let v = parse_version(name, &mv.version)?;
            out.push((v, self.client.get_model_version(name, &mv.version)?));
        }
        out.sort_by_key(|(v, _)| *v);
        Ok(out)
    }

    fn remote_versions(&self, name: &str, archived: bool) -> Result<Vec<u32>, TrackingError> {
        Ok(self
            .full_versions(name)?
            .into_iter()
            .filter(|(_, mv)| (mv.tag(ARCHIVED_TAG) == Some("true")) == archived)
            .map(|(v, _)| v)
            .collect())
    }
}

/// `abc123-dirty` → (`abc123`, true): the commit and whether the tree had uncommitted changes.
pub fn split_dirty(commit: &str) -> (&str, bool) {
    commit
        .strip_suffix("-dirty")
        .map_or((commit, false), |c| (c, true))
}

/// What the MLflow UI shows for a registered model and each version: a description and tags
/// with the data, span, headline metrics and code a version came from.
fn describe_version(files: &ModelFiles, info: &VersionInfo) -> (String, Vec<(String, String)>) {
    let s = &files.schema;
    let day = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map_or_else(|| ms.to_string(), |d| d.format("%Y-%m-%d").to_string())
    };
    let span = format!("{} .. {}", day(s.first_ts), day(s.last_ts));
    let (commit, dirty) = split_dirty(&info.git_commit);
    let task = files.meta.task.as_str();
    let headline: Vec<String> = info
        .metrics
        .iter()
        .filter(|(k, _)| k.starts_with("validation_"))
        .map(|(k, v)| format!("{} {v:.4}", k.trim_start_matches("validation_")))
        .collect();
    let description = format!(
        "RPS {task} model for {symbol} ({bar} bars), trained on {span} (data {hash}); validation: {metrics}; code {commit}{dirty}.",
        symbol = s.symbol,
        bar = s.bar,
        hash = info.data_hash.chars().take(12).collect::<String>(),
        metrics = if headline.is_empty() {
            "none".to_owned()
        } else {
            headline.join(", ")
        },
        dirty = if dirty {
            " (with uncommitted changes)"
        } else {
            ""
        },
    );
    let mut tags = vec![
        ("rps.task".to_owned(), task.to_owned()),
        ("rps.symbol".to_owned(), s.symbol.clone()),
        ("rps.bar".to_owned(), s.bar.clone()),
        ("rps.span".to_owned(), span),
        ("rps.data_hash".to_owned(), info.data_hash.clone()),
        ("rps.git_commit".to_owned(), commit.to_owned()),
        ("rps.git_dirty".to_owned(), dirty.to_string()),
    ];
    tags.extend(
        info.metrics
            .iter()
            .filter(|(k, v)| k.starts_with("validation_") && v.is_finite())
            .map(|(k, v)| (format!("rps.{k}"), format!("{v:.6}"))),
    );
    (description, tags)
}

fn is_unsupported(e: &MlflowError) -> bool {
    matches!(e, MlflowError::RegistryUnsupported { .. })
}

fn parse_version(name: &str, v: &str) -> Result<u32, TrackingError> {
    v.parse().map_err(|_| {
        TrackingError::Backend(format!(
            "MLflow model {name:?} has a version {v:?} that is not a number"
        ))
    })
}

impl Registry for MlflowRegistry {
    fn register(&self, files: &ModelFiles, info: VersionInfo) -> Result<u32, TrackingError> {
        let run = self.client.get_run(&info.run_id)?.info;
        // The model directory goes on the run whatever the registry: the run shows the model.
        self.log_model_dir(&run, files, &info)?;
        let source = format!(
            "{}/{MODEL_ARTIFACT_PATH}",
            run.artifact_uri.trim_end_matches('/')
        );
        let version = self.either(
            || {
                self.client.create_registered_model(&info.name)?;
                let v = self
                    .client
                    .create_model_version(&info.name, &source, &run.run_id)?;
                parse_version(&info.name, &v)
            },
            |local| local.register(files, info.clone()),
        )?;
        if !self.uses_fallback() {
            self.annotate(files, &info, version);
        }
        let mut tags = vec![("rps.model_version".to_owned(), version.to_string())];
        if self.uses_fallback() {
            tags.push(("rps.registry".to_owned(), "local".to_owned()));
        }
        self.client.log_batch(&run.run_id, &[], &[], &tags)?;
        Ok(version)
    }

    fn set_alias(&self, name: &str, alias: &str, version: u32) -> Result<(), TrackingError> {
        self.either(
            || Ok(self.client.set_alias(name, alias, &version.to_string())?),
            |local| {
                local.set_alias(name, alias, version)?;
                // Also visible on the server: tag the version's training run.
                let run_id = local.load(name, version)?.info.run_id;
                if let Err(e) = self.client.set_tag(
                    &run_id,
                    &format!("rps.alias.{alias}"),
                    &format!("{name} v{version}"),
                ) {
                    tracing::warn!("could not tag run {run_id} with alias {alias}: {e}");
                }
                Ok(())
            },
        )
    }

    fn alias(&self, name: &str, alias: &str) -> Result<Option<u32>, TrackingError> {
        self.either(
            || {
                self.client
                    .get_version_by_alias(name, alias)?
                    .map(|mv| parse_version(name, &mv.version))
                    .transpose()
            },
            |local| local.alias(name, alias),
        )
    }

    fn versions(&self, name: &str) -> Result<Vec<u32>, TrackingError> {
        self.either(
            || self.remote_versions(name, false),
            |local| local.versions(name),
        )
    }

    fn aliases(&self, name: &str) -> Result<BTreeMap<String, u32>, TrackingError> {
        self.either(
            || {
                let mut out = BTreeMap::new();
                for (v, mv) in self.full_versions(name)? {
                    for a in mv.aliases {
                        out.insert(a, v);
                    }
                }
                Ok(out)
            },
            |local| local.aliases(name),
        )
    }

    fn archive(&self, name: &str, version: u32) -> Result<(), TrackingError> {
        self.either(
            || {
                let v = version.to_string();
                match self.client.get_model_version(name, &v) {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {
                        return Err(TrackingError::NoVersion {
                            name: name.to_owned(),
                            version,
                        });
                    }
                    Err(e) => return Err(e.into()),
                }
                Ok(self
                    .client
                    .set_model_version_tag(name, &v, ARCHIVED_TAG, "true")?)
            },
            |local| local.archive(name, version),
        )
    }

    fn archived(&self, name: &str) -> Result<Vec<u32>, TrackingError> {
        self.either(
            || self.remote_versions(name, true),
            |local| local.archived(name),
        )
    }

    fn load(&self, name: &str, version: u32) -> Result<LoadedModel, TrackingError> {
        self.either(
            || {
                let (run, dir) = self.version_location(name, version)?;
                let get = |f: &str| self.client.download_artifact(&run, &format!("{dir}/{f}"));
                fn parse<T: serde::de::DeserializeOwned>(
                    uri: &str,
                    bytes: &[u8],
                ) -> Result<T, TrackingError> {
                    serde_json::from_slice(bytes).map_err(|source| TrackingError::Json {
                        uri: uri.to_owned(),
                        source,
                    })
                }
                let uri = |f: &str| format!("{}/{dir}/{f}", run.artifact_uri);
                let meta: rps_model::ModelMeta = parse(&uri(META), &get(META)?)?;
                let quantile = match meta.quantiles {
                    Some(_) => Some(crate::registry::QuantileFiles {
                        json: get(QUANTILE_JSON)?,
                        ubj: get(QUANTILE_UBJ)?,
                    }),
                    None => None,
                };
                let files = ModelFiles {
                    xgb_json: get(XGB_JSON)?,
                    xgb_ubj: get(XGB_UBJ)?,
                    quantile,
                    meta,
                    schema: parse(&uri("schema.json"), &get("schema.json")?)?,
                };
                let mut info: VersionInfo = parse(&uri(VERSION_JSON), &get(VERSION_JSON)?)?;
                info.name = name.to_owned();
                info.version = version;
                info.run_id.clone_from(&run.run_id);
                let model = files.model()?;
                Ok(LoadedModel { info, files, model })
            },
            |local| local.load(name, version),
        )
    }

    fn describe(&self) -> String {
        if self.uses_fallback() {
            format!(
                "{} (MLflow {} has no model registry)",
                self.fallback.describe(),
                self.client.tracking_uri()
            )
        } else {
            format!("MLflow model registry {}", self.client.tracking_uri())
        }
    }
}

mod erased_json {
    pub trait Json {
        fn to_json(&self) -> Result<Vec<u8>, serde_json::Error>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
            serde_json::to_vec_pretty(self)
        }
    }
}

/// Run artifacts whose URI is `s3://…` go straight to the bucket through the storage seam's S3
/// client (same `AWS_*` settings as the datasets; MLflow's own clients read
/// `MLFLOW_S3_ENDPOINT_URL`, which the seam honours too).
#[derive(Debug, Clone, Copy)]
pub struct S3Artifacts;

impl S3Artifacts {
    fn store(artifact_uri: &str) -> Result<rps_store::s3::S3Store, rps_mlflow::MlflowError> {
        rps_store::s3::S3Store::from_uri(artifact_uri.trim_end_matches('/')).map_err(|e| {
            rps_mlflow::MlflowError::ArtifactStore {
                uri: artifact_uri.to_owned(),
                message: e.to_string(),
            }
        })
    }
}

impl rps_mlflow::ArtifactBackend for S3Artifacts {
    fn handles(&self, artifact_uri: &str) -> bool {
        artifact_uri.starts_with("s3://")
    }

    fn upload(
        &self,
        artifact_uri: &str,
        artifact_path: &str,
        bytes: &[u8],
    ) -> Result<(), rps_mlflow::MlflowError> {
        use rps_store::ObjectStore as _;
        let store = Self::store(artifact_uri)?;
        store
            .put(artifact_path, bytes)
            .map_err(|e| rps_mlflow::MlflowError::ArtifactStore {
                uri: store.uri(artifact_path),
                message: e.to_string(),
            })
    }

    fn download(
        &self,
        artifact_uri: &str,
        artifact_path: &str,
    ) -> Result<Vec<u8>, rps_mlflow::MlflowError> {
        use rps_store::ObjectStore as _;
        let store = Self::store(artifact_uri)?;
        store
            .get(artifact_path)
            .map_err(|e| rps_mlflow::MlflowError::ArtifactStore {
                uri: store.uri(artifact_path),
                message: e.to_string(),
            })
    }
}

/// A typical input row: each feature's training median (its mean when the quantiles are
/// missing), from the schema's reference statistics.
fn reference_row(schema: &rps_core::schema::FeatureSchema) -> Vec<f64> {
    schema
        .features
        .iter()
        .map(|f| {
            schema
                .reference
                .iter()
                .find(|c| &c.name == f)
                .map_or(f64::NAN, |c| {
                    c.quantiles
                        .get(3)
                        .copied()
                        .filter(|q| q.is_finite())
                        .unwrap_or(c.mean)
                })
        })
        .collect()
}

/// The columns RPS's pyfunc `predict` returns for a model: `volatility` for the volatility task,
/// then `median` and one `q<level>` per quantile level when it has a forecast distribution;
/// `signal` and one `p_<class>` per class for the signal task.
fn pyfunc_outputs(meta: &rps_model::ModelMeta) -> Vec<(String, String)> {
    let double = |n: &str| ("double".to_owned(), n.to_owned());
    match meta.task {
        rps_core::params::Task::Volatility => {
            let mut cols = vec![double(OUTPUT_NAME)];
            if let Some(q) = &meta.quantiles {
                if q.levels.iter().any(|l| (l - 0.5).abs() < 1e-12) {
                    cols.push(double("median"));
                }
                cols.extend(
                    q.levels
                        .iter()
                        .map(|l| double(&rps_core::distribution::level_suffix(*l))),
                );
            }
            cols
        }
        rps_core::params::Task::Signal => {
            let mut cols = vec![("string".to_owned(), "signal".to_owned())];
            let classes = meta
                .signal
                .as_ref()
                .map_or_else(rps_core::signal::class_names, |s| s.classes.clone());
            cols.extend(classes.iter().map(|c| double(&format!("p_{c}"))));
            cols
        }
    }
}
