//! The served model and its atomic replacement.
//!
//! The champion lives in an [`ArcSwapOption`]: a request takes its own `Arc<Served>` once and
//! uses it to the end, so a swap never disturbs it (the old model is freed when its last request
//! finishes). A candidate is loaded and checked completely *before* the swap; one that fails to
//! load or is inconsistent is rejected and the old one keeps serving.

use crate::config::Config;
use crate::drift::DriftWindow;
use crate::metrics::Metrics;
use arc_swap::ArcSwapOption;
use axum::http::StatusCode;
use rps_core::schema::FeatureSchema;
use rps_model::VolatilityModel;
use rps_tracking::{LoadedModel, Registry, TrackingError, VersionInfo};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

/// A loaded, checked model version with its drift window.
#[derive(Debug)]
pub struct Served {
    pub info: VersionInfo,
    pub schema: FeatureSchema,
    pub model: VolatilityModel,
    /// Feature name → input position.
    pub index: HashMap<String, usize>,
    pub drift: Mutex<DriftWindow>,
    /// Unix time it was loaded.
    pub loaded_at: f64,
}

/// Why a model could not be loaded or was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The alias or version does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Its files could not be read or decoded.
    #[error("model could not be loaded: {0}")]
    Failed(String),
    /// It loaded but is not fit to serve.
    #[error("model rejected: {0}")]
    Rejected(String),
}

impl LoadError {
    pub fn status(&self) -> (StatusCode, &'static str) {
        match self {
            LoadError::NotFound(_) => (StatusCode::NOT_FOUND, "model_not_found"),
            LoadError::Failed(_) => (StatusCode::BAD_GATEWAY, "model_load_failed"),
            LoadError::Rejected(_) => (StatusCode::UNPROCESSABLE_ENTITY, "model_rejected"),
        }
    }
}

impl From<TrackingError> for LoadError {
    fn from(e: TrackingError) -> Self {
        match e {
            TrackingError::NoAlias { .. } | TrackingError::NoVersion { .. } => {
                LoadError::NotFound(e.to_string())
            }
            other => LoadError::Failed(other.to_string()),
        }
    }
}

pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Served {
    /// Check a loaded version and wrap it. `previous` is the feature list it must keep, if any.
    pub fn check(
        loaded: LoadedModel,
        previous: Option<&[String]>,
        drift_window: usize,
    ) -> Result<Self, LoadError> {
        let LoadedModel { info, files, model } = loaded;
        let schema = files.schema;
        let label = format!("{} version {}", info.name, info.version);
        if schema.features != model.meta.features {
            let at = schema
                .features
                .iter()
                .zip(&model.meta.features)
                .position(|(a, b)| a != b);
            return Err(LoadError::Rejected(match at {
                Some(i) => format!(
                    "{label}: schema.json and meta.json disagree at feature {i} (`{}` vs `{}`)",
                    schema.features[i], model.meta.features[i]
                ),
                None => format!(
                    "{label}: schema.json lists {} features but the model was trained on {}",
                    schema.features.len(),
                    model.meta.features.len()
                ),
            }));
        }
        if schema.reference.len() != schema.features.len()
            || schema
                .reference
                .iter()
                .zip(&schema.features)
                .any(|(r, f)| &r.name != f)
        {
            return Err(LoadError::Rejected(format!(
                "{label}: the reference statistics in schema.json do not match its feature list"
            )));
        }
        if let Some(prev) = previous
            && prev != schema.features.as_slice()
        {
            let added: Vec<&str> = schema
                .features
                .iter()
                .filter(|f| !prev.contains(f))
                .map(String::as_str)
                .collect();
            let removed: Vec<&str> = prev
                .iter()
                .filter(|f| !schema.features.contains(f))
                .map(String::as_str)
                .collect();
            return Err(LoadError::Rejected(format!(
                "{label}: its feature schema differs from the served model's (added {added:?}, removed {removed:?}, or reordered); \
                     clients would break — restart with --allow-schema-change to accept it"
            )));
        }
        // Smoke test: the reference medians must give a finite forecast.
        #[allow(clippy::cast_possible_truncation)]
        let probe: Vec<f32> = schema
            .reference
            .iter()
            .map(|r| r.quantiles.get(3).copied().unwrap_or(0.0) as f32)
            .collect();
        match model.predict_one(&probe) {
            Ok(v) if v.is_finite() => {}
            Ok(v) => {
                return Err(LoadError::Rejected(format!(
                    "{label}: predicts {v} on the reference medians"
                )));
            }
            Err(e) => return Err(LoadError::Rejected(format!("{label}: cannot predict: {e}"))),
        }
        let index = schema
            .features
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let drift = Mutex::new(DriftWindow::new(drift_window, schema.features.len()));
        Ok(Self {
            info,
            schema,
            model,
            index,
            drift,
            loaded_at: now_secs(),
        })
    }

    /// Feed predicted rows to the drift window.
    pub fn observe(&self, values: &[f32]) {
        let n = self.schema.features.len();
        if n == 0 {
            return;
        }
        let counts: Vec<u32> = values
            .chunks_exact(n)
            .map(|row| DriftWindow::count_ood(&self.schema.reference, row))
            .collect();
        let mut w = self.drift.lock().unwrap_or_else(PoisonError::into_inner);
        for (row, ood) in values.chunks_exact(n).zip(counts) {
            w.push(row, ood);
        }
    }
}

/// Outcome of a refresh.
#[derive(Debug, Clone, PartialEq)]
pub enum Refreshed {
    Swapped { from: Option<u32>, to: u32 },
    Unchanged { version: u32 },
}

/// Everything the handlers share.
pub struct AppState {
    pub config: Config,
    pub registry: Arc<dyn Registry>,
    pub current: ArcSwapOption<Served>,
    /// Side-by-side versions (`?model=`), most recently loaded last.
    pub cache: Mutex<Vec<Arc<Served>>>,
    pub metrics: Metrics,
    refresh_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("registry", &self.registry.describe())
            .finish_non_exhaustive()
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LoadError> + Send + 'static,
) -> Result<T, LoadError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LoadError::Failed(format!("loader task failed: {e}")))?
}

impl AppState {
    pub fn new(config: Config, registry: Arc<dyn Registry>) -> Self {
        Self {
            config,
            registry,
            current: ArcSwapOption::empty(),
            cache: Mutex::new(Vec::new()),
            metrics: Metrics::new(now_secs()),
            refresh_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The version `reference` (alias or number) points to now.
    async fn resolve_version(&self, reference: &str) -> Result<u32, LoadError> {
        if let Ok(v) = reference.trim_start_matches('v').parse::<u32>() {
            return Ok(v);
        }
        let (registry, name, alias) = (
            self.registry.clone(),
            self.config.model_name.clone(),
            reference.to_owned(),
        );
        blocking(move || {
            registry.alias(&name, &alias)?.ok_or_else(|| {
                LoadError::NotFound(format!("model {name:?} has no alias {alias:?}"))
            })
        })
        .await
    }

    async fn load_checked(
        &self,
        version: u32,
        previous: Option<Vec<String>>,
    ) -> Result<Served, LoadError> {
        let (registry, name, window) = (
            self.registry.clone(),
            self.config.model_name.clone(),
            self.config.drift_window,
        );
        blocking(move || {
            let loaded = registry.load(&name, version)?;
            Served::check(loaded, previous.as_deref(), window)
        })
        .await
    }

    /// Reload the configured alias and swap it in if it moved (or if nothing is served yet).
    pub async fn refresh(&self) -> Result<Refreshed, LoadError> {
        let _guard = self.refresh_lock.lock().await;
        let result = self.refresh_locked().await;
        match &result {
            Ok(Refreshed::Swapped { from, to }) => {
                self.metrics.reloads_ok.fetch_add(1, Ordering::Relaxed);
                tracing::info!(model = %self.config.model_name, from = ?from, to, "model swapped in");
            }
            Ok(Refreshed::Unchanged { .. }) => {}
            Err(e @ LoadError::Rejected(_)) => {
                self.metrics
                    .reloads_rejected
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "new model rejected; the old one keeps serving");
            }
            Err(e) => {
                self.metrics.reloads_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "model refresh failed; the old one keeps serving");
            }
        }
        result
    }

    async fn refresh_locked(&self) -> Result<Refreshed, LoadError> {
        let version = self.resolve_version(&self.config.alias).await?;
        let current = self.current.load_full();
        if let Some(cur) = &current
            && cur.info.version == version
        {
            return Ok(Refreshed::Unchanged { version });
        }
        let previous = if self.config.allow_schema_change {
            None
        } else {
            current.as_ref().map(|c| c.schema.features.clone())
        };
        let served = self.load_checked(version, previous).await?;
        self.metrics.last_reload.set(served.loaded_at);
        self.current.store(Some(Arc::new(served)));
        Ok(Refreshed::Swapped {
            from: current.map(|c| c.info.version),
            to: version,
        })
    }

    /// The model a request asks for: the served one, or another alias / version (`?model=`),
    /// loaded on demand and cached.
    pub async fn lookup(&self, reference: Option<&str>) -> Result<Arc<Served>, LoadError> {
        let current = self.current.load_full();
        let reference = match reference.map(str::trim) {
            None | Some("") => None,
            Some(r) if r == self.config.alias => None,
            Some(r) => Some(r),
        };
        let Some(reference) = reference else {
            return current.ok_or_else(|| LoadError::NotFound("no model is loaded yet".to_owned()));
        };
        let version = self.resolve_version(reference).await?;
        if let Some(cur) = current.filter(|c| c.info.version == version) {
            return Ok(cur);
        }
        if let Some(hit) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|s| s.info.version == version)
        {
            return Ok(hit.clone());
        }
        let served = Arc::new(self.load_checked(version, None).await?);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if !cache.iter().any(|s| s.info.version == version) {
            cache.push(served.clone());
            let keep = self.config.model_cache.max(1);
            if cache.len() > keep {
                let drop = cache.len() - keep;
                cache.drain(..drop);
            }
        }
        Ok(served)
    }
}
