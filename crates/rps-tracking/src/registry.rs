//! Model versions and aliases.

use crate::TrackingError;
use rps_core::schema::FeatureSchema;
use rps_model::{
    META, Model, ModelMeta, QUANTILE_JSON, QUANTILE_UBJ, SignalModel, VolatilityModel, XGB_JSON,
    XGB_UBJ,
};
use rps_store::ObjectStore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The feature schema's file name inside a model folder.
pub const SCHEMA: &str = "schema.json";

/// What is recorded about a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub name: String,
    pub version: u32,
    pub created_at: String,
    /// The training run that produced it.
    pub run_id: String,
    pub data_hash: String,
    pub git_commit: String,
    /// Validation metrics from training.
    pub metrics: BTreeMap<String, f64>,
}

/// The files of a model, as written by train.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub xgb_json: Vec<u8>,
    pub xgb_ubj: Vec<u8>,
    /// The quantile booster (`quantiles.json`, `quantiles.ubj`) of a model with a
    /// distribution (`meta.quantiles`).
    pub quantile: Option<QuantileFiles>,
    pub meta: ModelMeta,
    pub schema: FeatureSchema,
}

/// The quantile booster's two encodings.
#[derive(Debug, Clone)]
pub struct QuantileFiles {
    pub json: Vec<u8>,
    pub ubj: Vec<u8>,
}

impl ModelFiles {
    pub fn from_model(
        model: &VolatilityModel,
        schema: &FeatureSchema,
    ) -> Result<Self, TrackingError> {
        let (json, ubj) = (model.to_xgboost_json()?, model.to_xgboost_ubj()?);
        let mut files = Self::new(json, ubj, &model.meta, schema);
        if let Some(q) = model.quantile_booster() {
            files.quantile = Some(QuantileFiles {
                json: q.to_xgboost_json()?,
                ubj: q.to_xgboost_ubj()?,
            });
        }
        Ok(files)
    }

    /// The files of a Buy/Hold/Sell model (`train.task: signal`).
    pub fn from_signal_model(
        model: &SignalModel,
        schema: &FeatureSchema,
    ) -> Result<Self, TrackingError> {
        let (json, ubj) = (model.to_xgboost_json()?, model.to_xgboost_ubj()?);
        Ok(Self::new(json, ubj, &model.meta, schema))
    }

    fn new(xgb_json: Vec<u8>, xgb_ubj: Vec<u8>, meta: &ModelMeta, schema: &FeatureSchema) -> Self {
        Self {
            xgb_json,
            xgb_ubj,
            quantile: None,
            meta: meta.clone(),
            schema: schema.clone(),
        }
    }

    /// The four files and their bytes, in write order (metadata last).
    pub fn encoded(&self) -> Result<Vec<(&'static str, Vec<u8>)>, TrackingError> {
        let json = |v: &dyn erased::Json, k: &str| {
            v.to_json().map_err(|source| TrackingError::Json {
                uri: k.to_owned(),
                source,
            })
        };
        let mut files = vec![
            (XGB_JSON, self.xgb_json.clone()),
            (XGB_UBJ, self.xgb_ubj.clone()),
        ];
        if let Some(q) = &self.quantile {
            files.push((QUANTILE_JSON, q.json.clone()));
            files.push((QUANTILE_UBJ, q.ubj.clone()));
        }
        files.push((SCHEMA, json(&self.schema, SCHEMA)?));
        files.push((META, json(&self.meta, META)?));
        Ok(files)
    }

    /// Each file's SHA-256 (file name → hex), to tell whether two copies are the same model.
    pub fn hashes(&self) -> Result<BTreeMap<&'static str, String>, TrackingError> {
        Ok(self
            .encoded()?
            .into_iter()
            .map(|(k, b)| (k, rps_store::sha256_hex(&b)))
            .collect())
    }

    /// Write the four files under `prefix` (`prefix/model.json`, …), metadata last.
    pub fn write(&self, store: &dyn ObjectStore, prefix: &str) -> Result<(), TrackingError> {
        for (name, bytes) in self.encoded()? {
            let key = if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}/{name}")
            };
            store.put(&key, &bytes)?;
        }
        Ok(())
    }

    /// Read the four files of a committed model folder (`rps-train`'s output), refusing a torn
    /// one ([`rps_store::commit`]).
    pub fn read_committed(snap: &rps_store::commit::Snapshot<'_>) -> Result<Self, TrackingError> {
        let parse_err = |k: &str| {
            let uri = snap.uri(k);
            move |source| TrackingError::Json { uri, source }
        };
        let meta: ModelMeta = serde_json::from_slice(&snap.get(META)?).map_err(parse_err(META))?;
        let quantile = match meta.quantiles {
            Some(_) => Some(QuantileFiles {
                json: snap.get(QUANTILE_JSON)?,
                ubj: snap.get(QUANTILE_UBJ)?,
            }),
            None => None,
        };
        Ok(Self {
            xgb_json: snap.get(XGB_JSON)?,
            xgb_ubj: snap.get(XGB_UBJ)?,
            quantile,
            meta,
            schema: serde_json::from_slice(&snap.get(SCHEMA)?).map_err(parse_err(SCHEMA))?,
        })
    }

    /// Read the files under `prefix`.
    pub fn read(store: &dyn ObjectStore, prefix: &str) -> Result<Self, TrackingError> {
        let key = |f: &str| {
            if prefix.is_empty() {
                f.to_owned()
            } else {
                format!("{prefix}/{f}")
            }
        };
        let parse = |k: String| -> Result<Vec<u8>, TrackingError> { Ok(store.get(&k)?) };
        let meta_key = key(META);
        let schema_key = key("schema.json");
        let meta: ModelMeta =
            serde_json::from_slice(&parse(meta_key.clone())?).map_err(|source| {
                TrackingError::Json {
                    uri: store.uri(&meta_key),
                    source,
                }
            })?;
        let quantile = match meta.quantiles {
            Some(_) => Some(QuantileFiles {
                json: parse(key(QUANTILE_JSON))?,
                ubj: parse(key(QUANTILE_UBJ))?,
            }),
            None => None,
        };
        Ok(Self {
            xgb_json: parse(key(XGB_JSON))?,
            xgb_ubj: parse(key(XGB_UBJ))?,
            quantile,
            meta,
            schema: serde_json::from_slice(&parse(schema_key.clone())?).map_err(|source| {
                TrackingError::Json {
                    uri: store.uri(&schema_key),
                    source,
                }
            })?,
        })
    }

    /// Decode the model, a volatility or a signal model by `meta.task`.
    pub fn model(&self) -> Result<Model, TrackingError> {
        Ok(Model::from_parts(
            &self.xgb_ubj,
            self.quantile.as_ref().map(|q| q.ubj.as_slice()),
            self.meta.clone(),
        )?)
    }
}

mod erased {
    pub trait Json {
        fn to_json(&self) -> Result<Vec<u8>, serde_json::Error>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
            serde_json::to_vec_pretty(self)
        }
    }
}

/// A model resolved from the registry.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    pub info: VersionInfo,
    pub files: ModelFiles,
    /// Volatility or signal, by the version's `meta.json`.
    pub model: Model,
}

/// Numbered model versions with movable aliases.
pub trait Registry: Send + Sync {
    /// Store a new version; returns its number (one more than the highest so far).
    fn register(&self, files: &ModelFiles, info: VersionInfo) -> Result<u32, TrackingError>;
    fn set_alias(&self, name: &str, alias: &str, version: u32) -> Result<(), TrackingError>;
    /// Move several aliases; the local registry writes them in one atomic step (a killed
    /// evaluate never leaves the champion moved and the challenger not).
    fn set_aliases(&self, name: &str, moves: &[(&str, u32)]) -> Result<(), TrackingError> {
        for (alias, version) in moves {
            self.set_alias(name, alias, *version)?;
        }
        Ok(())
    }
    fn alias(&self, name: &str, alias: &str) -> Result<Option<u32>, TrackingError>;
    fn versions(&self, name: &str) -> Result<Vec<u32>, TrackingError>;
    fn load(&self, name: &str, version: u32) -> Result<LoadedModel, TrackingError>;
    fn describe(&self) -> String;
    /// Every alias of `name` and the version it points at.
    fn aliases(&self, name: &str) -> Result<BTreeMap<String, u32>, TrackingError>;
    /// Take `version` out of the active list ([`Registry::versions`]) without deleting it: it
    /// stays loadable by number and is listed by [`Registry::archived`].
    fn archive(&self, name: &str, version: u32) -> Result<(), TrackingError>;
    /// Archived versions, ascending.
    fn archived(&self, name: &str) -> Result<Vec<u32>, TrackingError>;

    /// Resolve `reference` — an alias (`champion`) or a version number — and load it.
    fn resolve(&self, name: &str, reference: &str) -> Result<LoadedModel, TrackingError> {
        let version = match reference.trim_start_matches('v').parse::<u32>() {
            Ok(v) => v,
            Err(_) => self
                .alias(name, reference)?
                .ok_or_else(|| TrackingError::NoAlias {
                    name: name.to_owned(),
                    alias: reference.to_owned(),
                })?,
        };
        self.load(name, version)
    }
}

/// The embedded registry in an object store (by default `.rps/registry`).
#[derive(Debug, Clone)]
pub struct LocalRegistry {
    store: Arc<dyn ObjectStore>,
}

impl LocalRegistry {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    fn read_aliases(&self, name: &str) -> Result<BTreeMap<String, u32>, TrackingError> {
        let key = format!("{name}/aliases.json");
        match self.store.get(&key) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| TrackingError::Json {
                uri: self.store.uri(&key),
                source,
            }),
            Err(rps_store::StoreError::NotFound { .. }) => Ok(BTreeMap::new()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Registry for LocalRegistry {
    fn register(&self, files: &ModelFiles, mut info: VersionInfo) -> Result<u32, TrackingError> {
        let highest = self
            .versions(&info.name)?
            .into_iter()
            .chain(self.archived(&info.name)?)
            .max();
        let version = highest.map_or(1, |v| v + 1);
        info.version = version;
        let prefix = format!("{}/{VERSIONS}/{version}", info.name);
        rps_store::commit::sweep_stale_temp(self.store.as_ref());
        files.write(self.store.as_ref(), &prefix)?;
        let key = format!("{prefix}/version.json");
        let json = serde_json::to_vec_pretty(&info).map_err(|source| TrackingError::Json {
            uri: self.store.uri(&key),
            source,
        })?;
        // version.json last: a version exists once it is complete.
        self.store.put(&key, &json)?;
        Ok(version)
    }

    fn set_alias(&self, name: &str, alias: &str, version: u32) -> Result<(), TrackingError> {
        self.set_aliases(name, &[(alias, version)])
    }

    fn set_aliases(&self, name: &str, moves: &[(&str, u32)]) -> Result<(), TrackingError> {
        if moves.is_empty() {
            return Ok(());
        }
        rps_store::commit::sweep_stale_temp(self.store.as_ref());
        let versions = self.versions(name)?;
        let archived = self.archived(name)?;
        let mut aliases = self.read_aliases(name)?;
        for (alias, version) in moves {
            if !versions.contains(version) && !archived.contains(version) {
                return Err(TrackingError::NoVersion {
                    name: name.to_owned(),
                    version: *version,
                });
            }
            aliases.insert((*alias).to_owned(), *version);
        }
        let key = format!("{name}/aliases.json");
        let json = serde_json::to_vec_pretty(&aliases).map_err(|source| TrackingError::Json {
            uri: self.store.uri(&key),
            source,
        })?;
        self.store.put(&key, &json)?;
        Ok(())
    }

    fn alias(&self, name: &str, alias: &str) -> Result<Option<u32>, TrackingError> {
        Ok(self.read_aliases(name)?.get(alias).copied())
    }

    fn versions(&self, name: &str) -> Result<Vec<u32>, TrackingError> {
        self.list_versions(name, VERSIONS)
    }

    fn load(&self, name: &str, version: u32) -> Result<LoadedModel, TrackingError> {
        self.load_version(name, version)
    }

    fn describe(&self) -> String {
        format!("local registry {}", self.store.uri(""))
    }

    fn aliases(&self, name: &str) -> Result<BTreeMap<String, u32>, TrackingError> {
        self.read_aliases(name)
    }

    fn archive(&self, name: &str, version: u32) -> Result<(), TrackingError> {
        let from = format!("{name}/{VERSIONS}/{version}/");
        let to = format!("{name}/{ARCHIVE}/{version}/");
        let keys = self.store.list(&from)?;
        if !keys.iter().any(|k| k.ends_with("/version.json")) {
            return Err(TrackingError::NoVersion {
                name: name.to_owned(),
                version,
            });
        }
        // Copy with version.json last (complete before it counts as archived), then delete
        // version.json first (the version leaves the active list in one step).
        let (record, files): (Vec<&String>, Vec<&String>) =
            keys.iter().partition(|k| k.ends_with("/version.json"));
        for k in files.iter().chain(&record) {
            let rel = k.strip_prefix(&from).unwrap_or(k);
            self.store.put(&format!("{to}{rel}"), &self.store.get(k)?)?;
        }
        for k in record.iter().chain(&files) {
            self.store.delete(k)?;
        }
        Ok(())
    }

    fn archived(&self, name: &str) -> Result<Vec<u32>, TrackingError> {
        self.list_versions(name, ARCHIVE)
    }
}

/// Active versions live under `<model>/versions/<n>/`, archived ones under `<model>/archive/<n>/`.
const VERSIONS: &str = "versions";
const ARCHIVE: &str = "archive";

impl LocalRegistry {
    fn list_versions(&self, name: &str, folder: &str) -> Result<Vec<u32>, TrackingError> {
        let prefix = format!("{name}/{folder}/");
        let mut v: Vec<u32> = self
            .store
            .list(&prefix)?
            .iter()
            .filter_map(|k| {
                k.strip_prefix(&prefix)?
                    .strip_suffix("/version.json")?
                    .parse()
                    .ok()
            })
            .collect();
        v.sort_unstable();
        Ok(v)
    }

    /// Where version `version` lives: the active folder, else the archive.
    fn version_prefix(&self, name: &str, version: u32) -> Result<String, TrackingError> {
        let active = format!("{name}/{VERSIONS}/{version}");
        if self.store.exists(&format!("{active}/version.json"))? {
            return Ok(active);
        }
        let archived = format!("{name}/{ARCHIVE}/{version}");
        if self.store.exists(&format!("{archived}/version.json"))? {
            return Ok(archived);
        }
        Ok(active)
    }
}

impl LocalRegistry {
    fn load_version(&self, name: &str, version: u32) -> Result<LoadedModel, TrackingError> {
        let prefix = self.version_prefix(name, version)?;
        let key = format!("{prefix}/version.json");
        let info: VersionInfo = match self.store.get(&key) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| TrackingError::Json {
                uri: self.store.uri(&key),
                source,
            })?,
            Err(rps_store::StoreError::NotFound { .. }) => {
                return Err(TrackingError::NoVersion {
                    name: name.to_owned(),
                    version,
                });
            }
            Err(e) => return Err(e.into()),
        };
        let files = ModelFiles::read(self.store.as_ref(), &prefix)?;
        let model = files.model()?;
        Ok(LoadedModel { info, files, model })
    }
}
