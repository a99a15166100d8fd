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
use rps_model::{META, XGB_JSON, XGB_UBJ};
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
        all.insert("rps.stage".to_owned(), stage.to_owned());
        all.insert("mlflow.source.name".to_owned(), format!("rps-{stage}"));
        all.insert("mlflow.source.type".to_owned(), "LOCAL".to_owned());
        if let Some(c) = tags.get("git_commit") {
            all.insert("mlflow.source.git.commit".to_owned(), c.clone());
        }
        let tags: Vec<(String, String)> = all.into_iter().collect();
        let info = self.client.create_run(&experiment_id, stage, &tags)?;
        Ok(Box::new(MlflowRun {
            client: self.client.clone(),
            info,
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
        Ok(self.client.update_run(&self.info.run_id, status)?)
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
        )?;
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
        put("schema.json", &json(&files.schema, "schema.json")?)?;
        put(META, &json(&files.meta, META)?)?;
        put(VERSION_JSON, &json(info, VERSION_JSON)?)?;
        Ok(())
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
                let files = ModelFiles {
                    xgb_json: get(XGB_JSON)?,
                    xgb_ubj: get(XGB_UBJ)?,
                    meta: parse(&uri(META), &get(META)?)?,
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
