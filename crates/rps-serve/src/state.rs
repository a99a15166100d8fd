//! The served models and their atomic replacement.
//!
//! The live set — the served alias (`--alias`, default `champion`) plus every other live alias
//! that exists (`--live-aliases`: `challenger`, `baseline`) — lives in one [`ArcSwapOption`]: a
//! request takes its own `Arc<Served>` once and uses it to the end, so a swap never disturbs it
//! (an old model is freed when its last request finishes). A new set is loaded and checked
//! completely *before* the swap, all or nothing: if any of its models fails to load or is
//! inconsistent, the whole set is refused and the old one keeps serving.

use crate::config::Config;
use crate::drift::DriftWindow;
use crate::metrics::AtomicF64;
use crate::metrics::{Histogram, Metrics, WIDTH_BUCKETS};
use arc_swap::ArcSwapOption;
use axum::http::StatusCode;
use rps_core::schema::FeatureSchema;
use rps_model::Model;
use rps_tracking::{LoadedModel, Registry, TrackingError, VersionInfo};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Coverage of the interval whose width `model_interval_width` tracks (the band the stream
/// stores and the dashboard shades).
pub const INTERVAL_COVERAGE: f64 = 0.8;

/// A loaded, checked model version with its drift window.
#[derive(Debug)]
pub struct Served {
    pub info: VersionInfo,
    pub schema: FeatureSchema,
    /// A volatility or a signal model (the registered name's versions are one or the other).
    pub model: Model,
    /// The features a `/predict` row gives, in order: the model's inputs, without a pooled
    /// model's one-hot columns (those come from the slot's symbol).
    pub request_features: Vec<String>,
    /// Request feature name → position in `request_features`.
    pub index: HashMap<String, usize>,
    /// A pooled model's inputs for its slot's symbol: the request row, then the one-hot
    /// ([`rps_core::pooling::Inputs`]); `None` for a model of one symbol (the row is the input).
    pub pooled: Option<rps_core::pooling::Inputs>,
    pub drift: Mutex<DriftWindow>,
    /// Unix time it was loaded.
    pub loaded_at: f64,
    /// Rows predicted by this version (`model_version_predictions_total{version}`).
    pub predictions: AtomicU64,
    /// Time spent in its `/predict` requests (`model_version_prediction_latency_seconds`).
    pub latency_sum: AtomicF64,
    pub latency_count: AtomicU64,
    /// Widths of its 80 % intervals (`model_interval_width{version}`), for a volatility model
    /// with quantiles.
    pub interval_width: Histogram,
}

/// The live set: alias → model, the served alias first, then `--live-aliases` in order.
#[derive(Debug)]
pub struct LiveSet {
    pub models: Vec<(String, Arc<Served>)>,
}

impl LiveSet {
    /// The served alias's model (always present).
    pub fn primary(&self) -> Option<&Arc<Served>> {
        self.models.first().map(|(_, s)| s)
    }

    /// The model an alias of the set points at.
    pub fn get(&self, alias: &str) -> Option<&Arc<Served>> {
        self.models.iter().find(|(a, _)| a == alias).map(|(_, s)| s)
    }

    /// A version of the set, under whichever alias.
    pub fn version(&self, version: u32) -> Option<&Arc<Served>> {
        self.models
            .iter()
            .find(|(_, s)| s.info.version == version)
            .map(|(_, s)| s)
    }

    /// The aliases of the set pointing at `version`.
    pub fn aliases_of(&self, version: u32) -> Vec<&str> {
        self.models
            .iter()
            .filter(|(_, s)| s.info.version == version)
            .map(|(a, _)| a.as_str())
            .collect()
    }

    /// alias → version.
    pub fn versions(&self) -> BTreeMap<String, u32> {
        self.models
            .iter()
            .map(|(a, s)| (a.clone(), s.info.version))
            .collect()
    }
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
    /// Check a loaded version and wrap it. `previous` is the feature list it must keep, if any;
    /// `symbol` the slot's symbol, which a pooled model must have been trained on.
    pub fn check(
        loaded: LoadedModel,
        previous: Option<&[String]>,
        drift_window: usize,
        symbol: Option<&str>,
    ) -> Result<Self, LoadError> {
        let LoadedModel { info, files, model } = loaded;
        let trained_on = &model.meta().features;
        let schema = files.schema;
        let label = format!("{} version {}", info.name, info.version);
        if schema.features != *trained_on {
            let at = schema
                .features
                .iter()
                .zip(trained_on)
                .position(|(a, b)| a != b);
            return Err(LoadError::Rejected(match at {
                Some(i) => format!(
                    "{label}: schema.json and meta.json disagree at feature {i} (`{}` vs `{}`)",
                    schema.features[i], trained_on[i]
                ),
                None => format!(
                    "{label}: schema.json lists {} features but the model was trained on {}",
                    schema.features.len(),
                    trained_on.len()
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
                    "{label}: predicts {v:?} on the reference medians"
                )));
            }
            Err(e) => return Err(LoadError::Rejected(format!("{label}: cannot predict: {e}"))),
        }
        let request_features = schema.built_features();
        let pooled = if schema.is_pooled() {
            let Some(symbol) = symbol else {
                return Err(LoadError::Rejected(format!(
                    "{label} is pooled over {} and needs a slot per symbol: serve it with --params listing those symbols (data.symbols)",
                    schema.symbols.join(", ")
                )));
            };
            Some(
                rps_core::pooling::Inputs::new(
                    &schema.features,
                    &schema.symbols,
                    &request_features,
                    Some(symbol),
                )
                .map_err(|e| LoadError::Rejected(format!("{label}: {e}")))?,
            )
        } else {
            None
        };
        let index = request_features
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let drift = Mutex::new(DriftWindow::new(drift_window, schema.features.len()));
        Ok(Self {
            info,
            schema,
            model,
            request_features,
            index,
            pooled,
            drift,
            loaded_at: now_secs(),
            predictions: AtomicU64::new(0),
            latency_sum: AtomicF64::default(),
            latency_count: AtomicU64::new(0),
            interval_width: Histogram::new(WIDTH_BUCKETS),
        })
    }

    /// Record what a forecast says about this version's uncertainty: the width of its 80 %
    /// interval, when it has one (a volatility model with quantiles).
    pub fn observe_forecast(&self, forecast: &rps_model::Forecast) {
        if let rps_model::Forecast::Volatility(v) = forecast
            && let Some((lo, hi)) = v.interval(INTERVAL_COVERAGE)
        {
            self.interval_width.observe(hi - lo);
        }
    }

    /// The model's input rows for request rows (row-major in `request_features` order): the
    /// same rows for a model of one symbol, each with the slot's one-hot for a pooled one.
    pub fn inputs(&self, rows: Vec<f32>) -> Vec<f32> {
        let Some(p) = &self.pooled else {
            return rows;
        };
        let n = self.request_features.len().max(1);
        let mut out = Vec::with_capacity(rows.len() / n * p.len());
        for row in rows.chunks_exact(n) {
            p.fill(row, &mut out);
        }
        out
    }

    /// Feed predicted rows to the drift window; the number of out-of-range values.
    pub fn observe(&self, values: &[f32]) -> u32 {
        let n = self.schema.features.len();
        if n == 0 {
            return 0;
        }
        let counts: Vec<u32> = values
            .chunks_exact(n)
            .map(|row| DriftWindow::count_ood(&self.schema.reference, row))
            .collect();
        let total = counts.iter().sum();
        let mut w = self.drift.lock().unwrap_or_else(PoisonError::into_inner);
        for (row, ood) in values.chunks_exact(n).zip(counts) {
            w.push(row, ood);
        }
        total
    }
}

/// Outcome of a refresh. `from` / `to` / `version` are the served alias's versions; a swap can
/// also be a move of another live alias only (`from == Some(to)`).
#[derive(Debug, Clone, PartialEq)]
pub enum Refreshed {
    Swapped { from: Option<u32>, to: u32 },
    Unchanged { version: u32 },
}

/// How many `/predict` requests `/api/recent` keeps.
pub const RECENT_REQUESTS: usize = 50;

/// One answered `/predict`, for the dashboard (`GET /api/recent`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecentRequest {
    /// Unix time it was answered.
    pub at: f64,
    /// The symbol whose models answered it (with a slot per symbol).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    pub version: u32,
    pub rows: usize,
    /// The first row's forecast, as the response has it.
    pub forecast: serde_json::Value,
    /// Feature values of the request outside the training range (see [`DriftWindow`]).
    pub out_of_range: u32,
    pub latency_ms: f64,
}

/// One symbol's models: the registered name it serves and its live set. With several symbols
/// (params.yaml's `data.symbols`), each has its own slot, refreshed and swapped on its own;
/// with one, the one slot answers every symbol, as the stream's one model predicts them all.
pub struct Slot {
    /// The symbol, when params.yaml names it (`None`: no `--params`).
    pub symbol: Option<String>,
    /// The registered volatility (or signal) model name this slot serves.
    pub model_name: String,
    /// The Buy/Hold/Sell model whose streamed signals the dashboard shows beside it.
    pub signal_model_name: String,
    pub live: ArcSwapOption<LiveSet>,
    /// Side-by-side versions (`?model=`), most recently loaded last.
    pub cache: Mutex<Vec<Arc<Served>>>,
    refresh_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("symbol", &self.symbol)
            .field("model_name", &self.model_name)
            .finish_non_exhaustive()
    }
}

impl Slot {
    pub fn new(symbol: Option<String>, model_name: String, signal_model_name: String) -> Self {
        Self {
            symbol,
            model_name,
            signal_model_name,
            live: ArcSwapOption::empty(),
            cache: Mutex::new(Vec::new()),
            refresh_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The served alias's model, if loaded.
    pub fn current(&self) -> Option<Arc<Served>> {
        self.live.load().as_ref().and_then(|l| l.primary().cloned())
    }

    /// The symbol for metric labels and listings: params.yaml's, else the one the served model
    /// was trained on, else `""`.
    pub fn label(&self) -> String {
        self.symbol
            .clone()
            .or_else(|| self.current().map(|s| s.schema.symbol.clone()))
            .unwrap_or_default()
    }
}

/// Which slot a request asked for, or why none answers it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// Several symbols are served and the request named none.
    #[error("this service serves several symbols ({}): name one with `symbol` (?symbol= or a `symbol` field)", .0.join(", "))]
    Required(Vec<String>),
    /// The symbol is not served.
    #[error("symbol {symbol:?} is not served here; the served symbols are {}", .served.join(", "))]
    Unknown { symbol: String, served: Vec<String> },
}

/// Everything the handlers share.
pub struct AppState {
    pub config: Config,
    pub registry: Arc<dyn Registry>,
    /// One per served symbol, in params.yaml's order; never empty.
    pub slots: Vec<Arc<Slot>>,
    /// Whether each slot answers its own symbol only (params.yaml lists several symbols); else
    /// the one slot answers every symbol.
    pub per_symbol: bool,
    pub metrics: Metrics,
    /// The last [`RECENT_REQUESTS`] answered `/predict` requests, oldest first.
    pub recent: Mutex<std::collections::VecDeque<RecentRequest>>,
    /// The online accuracy read from the stream's `scores` table (module [`crate::scores`]).
    pub scores: crate::scores::ScoreCache,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("registry", &self.registry.describe())
            .field("slots", &self.slots)
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
    /// One slot serving `config.model_name` (default `btc-volatility`) for every symbol.
    pub fn new(config: Config, registry: Arc<dyn Registry>) -> Self {
        let slot = Slot::new(
            None,
            config
                .model_name
                .clone()
                .unwrap_or_else(|| crate::config::DEFAULT_MODEL_NAME.to_owned()),
            config
                .signal_model_name
                .clone()
                .unwrap_or_else(|| crate::config::DEFAULT_SIGNAL_MODEL_NAME.to_owned()),
        );
        Self::with_slots(config, registry, vec![slot], false)
    }

    /// The given slots (at least one); `per_symbol`: each answers its own symbol only.
    pub fn with_slots(
        config: Config,
        registry: Arc<dyn Registry>,
        slots: Vec<Slot>,
        per_symbol: bool,
    ) -> Self {
        Self {
            config,
            registry,
            slots: slots.into_iter().map(Arc::new).collect(),
            per_symbol,
            metrics: Metrics::new(now_secs()),
            recent: Mutex::new(std::collections::VecDeque::with_capacity(RECENT_REQUESTS)),
            scores: crate::scores::ScoreCache::default(),
        }
    }

    /// The served symbols, in slot order.
    pub fn served_symbols(&self) -> Vec<String> {
        self.slots.iter().map(|s| s.label()).collect()
    }

    /// The slot for a request's symbol: with one slot answering every symbol, that one;
    /// with a slot per symbol, the named symbol's (or the only one when it names none).
    pub fn slot(&self, symbol: Option<&str>) -> Result<&Arc<Slot>, SlotError> {
        let symbol = symbol.map(str::trim).filter(|s| !s.is_empty());
        if !self.per_symbol {
            return Ok(&self.slots[0]);
        }
        match symbol {
            Some(sym) => self
                .slots
                .iter()
                .find(|s| s.symbol.as_deref() == Some(sym))
                .ok_or_else(|| SlotError::Unknown {
                    symbol: sym.to_owned(),
                    served: self.served_symbols(),
                }),
            None if self.slots.len() == 1 => Ok(&self.slots[0]),
            None => Err(SlotError::Required(self.served_symbols())),
        }
    }

    /// The slot answering `symbol` if any, without an error (the scores reader).
    pub fn slot_of(&self, symbol: &str) -> Option<&Arc<Slot>> {
        if self.per_symbol {
            self.slots
                .iter()
                .find(|s| s.symbol.as_deref() == Some(symbol))
        } else {
            self.slots.first()
        }
    }

    /// The version `reference` (alias or number) of the slot's model points to now.
    async fn resolve_version(&self, slot: &Slot, reference: &str) -> Result<u32, LoadError> {
        if let Ok(v) = reference.trim_start_matches('v').parse::<u32>() {
            return Ok(v);
        }
        let (registry, name, alias) = (
            self.registry.clone(),
            slot.model_name.clone(),
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
        slot: &Slot,
        version: u32,
        previous: Option<Vec<String>>,
    ) -> Result<Served, LoadError> {
        let (registry, name, window, symbol) = (
            self.registry.clone(),
            slot.model_name.clone(),
            self.config.drift_window,
            slot.symbol.clone(),
        );
        blocking(move || {
            let loaded = registry.load(&name, version)?;
            Served::check(loaded, previous.as_deref(), window, symbol.as_deref())
        })
        .await
    }

    /// Reload every slot's alias and swap in each that moved (slot by slot: one symbol's
    /// failure leaves the others' swaps in place). The results in slot order.
    pub async fn refresh(&self) -> Vec<Result<Refreshed, LoadError>> {
        let mut out = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            out.push(self.refresh_slot(slot).await);
        }
        out
    }

    /// Reload one slot's alias and swap it in if it moved (or if nothing is served yet).
    pub async fn refresh_slot(&self, slot: &Slot) -> Result<Refreshed, LoadError> {
        let _guard = slot.refresh_lock.lock().await;
        let result = self.refresh_locked(slot).await;
        let symbol = slot.symbol.as_deref().unwrap_or("");
        match &result {
            Ok(Refreshed::Swapped { from, to }) => {
                self.metrics.reloads_ok.fetch_add(1, Ordering::Relaxed);
                tracing::info!(model = %slot.model_name, symbol, from = ?from, to, "model swapped in");
            }
            Ok(Refreshed::Unchanged { .. }) => {}
            Err(e @ LoadError::Rejected(_)) => {
                self.metrics
                    .reloads_rejected
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, model = %slot.model_name, symbol, "new model rejected; the old one keeps serving");
            }
            Err(e) => {
                self.metrics.reloads_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, model = %slot.model_name, symbol, "model refresh failed; the old one keeps serving");
            }
        }
        result
    }

    /// The aliases of the live set to look for: the served one first, then the others.
    fn wanted_aliases(&self) -> Vec<String> {
        let mut out = vec![self.config.alias.clone()];
        for a in &self.config.live_aliases {
            let a = a.trim();
            if !a.is_empty() && !out.iter().any(|o| o == a) {
                out.push(a.to_owned());
            }
        }
        out
    }

    async fn refresh_locked(&self, slot: &Slot) -> Result<Refreshed, LoadError> {
        let (registry, name) = (self.registry.clone(), slot.model_name.clone());
        let aliases = blocking(move || Ok(registry.aliases(&name)?)).await?;
        let mut wanted: Vec<(String, u32)> = Vec::new();
        for (i, alias) in self.wanted_aliases().into_iter().enumerate() {
            let version = match alias.trim_start_matches('v').parse::<u32>() {
                Ok(v) => Some(v),
                Err(_) => aliases.get(&alias).copied(),
            };
            match version {
                Some(v) => wanted.push((alias, v)),
                // The served alias must exist; the other live aliases are optional.
                None if i == 0 => {
                    return Err(LoadError::NotFound(format!(
                        "model {:?} has no alias {alias:?}",
                        slot.model_name
                    )));
                }
                None => {}
            }
        }
        let old = slot.live.load_full();
        let old_versions: Vec<(String, u32)> = old.as_ref().map_or_else(Vec::new, |l| {
            l.models
                .iter()
                .map(|(a, s)| (a.clone(), s.info.version))
                .collect()
        });
        let old_primary = old
            .as_ref()
            .and_then(|l| l.primary())
            .map(|s| s.info.version);
        let primary = wanted.first().map_or(0, |(_, v)| *v);
        if old.is_some() && old_versions == wanted {
            return Ok(Refreshed::Unchanged { version: primary });
        }
        let previous = if self.config.allow_schema_change {
            None
        } else {
            old.as_ref()
                .and_then(|l| l.primary())
                .map(|c| c.schema.features.clone())
        };
        // Load every new version first (reusing the loaded ones, which keeps their drift
        // windows and counters); any failure refuses the whole set.
        let mut models: Vec<(String, Arc<Served>)> = Vec::with_capacity(wanted.len());
        for (i, (alias, version)) in wanted.iter().enumerate() {
            let reuse = models
                .iter()
                .map(|(_, s)| s)
                .find(|s| s.info.version == *version)
                .cloned()
                .or_else(|| old.as_ref().and_then(|l| l.version(*version).cloned()));
            let served = match reuse {
                Some(s) => s,
                None => {
                    let prev = if i == 0 { previous.clone() } else { None };
                    Arc::new(self.load_checked(slot, *version, prev).await.map_err(|e| {
                        let ctx = |m: String| format!("alias {alias:?}: {m}");
                        match e {
                            LoadError::NotFound(m) => LoadError::NotFound(ctx(m)),
                            LoadError::Failed(m) => LoadError::Failed(ctx(m)),
                            LoadError::Rejected(m) => LoadError::Rejected(ctx(m)),
                        }
                    })?)
                }
            };
            if i == 0
                && let Some(p) = &previous
                && p != &served.schema.features
            {
                return Err(LoadError::Rejected(format!(
                    "alias {alias:?}: version {version}'s feature schema differs from the served \
                     model's; clients would break — restart with --allow-schema-change to accept it"
                )));
            }
            models.push((alias.clone(), served));
        }
        self.metrics.last_reload.set(now_secs());
        slot.live.store(Some(Arc::new(LiveSet { models })));
        Ok(Refreshed::Swapped {
            from: old_primary,
            to: primary,
        })
    }

    /// The model a request asks for: the served one, or another alias / version (`?model=`),
    /// loaded on demand and cached.
    pub async fn lookup(
        &self,
        slot: &Slot,
        reference: Option<&str>,
    ) -> Result<Arc<Served>, LoadError> {
        let live = slot.live.load_full();
        let current = live.as_ref().and_then(|l| l.primary().cloned());
        let reference = match reference.map(str::trim) {
            None | Some("") => None,
            Some(r) if r == self.config.alias => None,
            Some(r) => Some(r),
        };
        let Some(reference) = reference else {
            return current.ok_or_else(|| LoadError::NotFound("no model is loaded yet".to_owned()));
        };
        // A live alias answers from the set loaded at the last refresh.
        if let Some(hit) = live.as_ref().and_then(|l| l.get(reference)) {
            return Ok(hit.clone());
        }
        let version = self.resolve_version(slot, reference).await?;
        if let Some(hit) = live.as_ref().and_then(|l| l.version(version)) {
            return Ok(hit.clone());
        }
        if let Some(hit) = slot
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|s| s.info.version == version)
        {
            return Ok(hit.clone());
        }
        let served = Arc::new(self.load_checked(slot, version, None).await?);
        let mut cache = slot.cache.lock().unwrap_or_else(PoisonError::into_inner);
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
