//! The live set: the registry versions behind a list of aliases, each with the feature spec it
//! was trained with, ready to predict a feature row built by that spec.

use crate::StreamError;
use crate::db::Prediction;
use crate::online::FeatureSpec;
use chrono::{DateTime, Utc};
use rps_core::signal::Signal;
use rps_model::{Forecast, Model};
use rps_tracking::Registry;
use std::collections::HashMap;
use std::sync::Arc;

/// Coverage of the central band stored beside the mean (`lower_80`, `upper_80`).
const BAND: f64 = 0.8;

/// One live model version (several aliases may point at it: it predicts once).
#[derive(Debug, Clone)]
pub struct LiveModel {
    pub name: String,
    /// The symbol whose bars it predicts (its registered name is that symbol's, with several
    /// symbols in params.yaml); `None`: every symbol on the topic.
    pub symbol: Option<String>,
    pub version: u32,
    /// The aliases pointing at this version, comma-joined in the order asked (`champion,challenger`).
    pub alias: String,
    /// A volatility or a signal model (its `meta.json` says which). Shared by every symbol's
    /// binding of the same version (a pooled model: one copy in memory, not one per symbol).
    model: Arc<Model>,
    /// What its features mean: from its saved schema, never from params.yaml.
    pub spec: FeatureSpec,
    /// [`FeatureSpec::key`] of `spec`: models with equal keys share a feature row.
    pub spec_key: String,
    /// Its inputs from the row its spec builds: each feature's position, and a pooled model's
    /// one-hot of the bound symbol ([`rps_core::pooling::Inputs`]).
    inputs: rps_core::pooling::Inputs,
}

impl LiveModel {
    /// Whether it predicts `symbol`'s bars.
    pub fn serves(&self, symbol: &str) -> bool {
        self.symbol.as_deref().is_none_or(|s| s == symbol)
    }

    /// The forecast for `row` (values in the order of the online builder's names).
    pub fn predict(&self, row: &[f64]) -> Result<Forecast, StreamError> {
        Ok(self.model.predict_one(&self.inputs.row(row))?)
    }

    /// Whether it forecasts volatility (its predictions are scored).
    pub fn is_volatility(&self) -> bool {
        matches!(self.model.as_ref(), Model::Volatility(_))
    }

    /// The HAR-type log-scale baseline of this version for `row`: `exp(L)`, floored like the
    /// model, where `L = b0 + Σ b_k · x_k` is its saved linear base margin (`meta.margin`: an
    /// OLS of ln σ on the `train.base_margin` terms — the HAR log components `har_*b` and, by
    /// default, `ewma_vol_090` — fitted on the version's training rows; missing terms take their
    /// training means). `None` for a version without a margin or not a volatility model.
    pub fn har_log(&self, row: &[f64]) -> Option<f64> {
        let (m, x) = self.margin_row(row)?;
        Some(crate::score::floored(m.margin_of(&x).exp(), m.meta.floor))
    }

    /// The version's `har_rv` baseline on a feature row: HAR-RV's level forecast,
    /// `exp(L) · smearing` with the margin's Duan smearing from its training rows, floored.
    /// `None` for a version without a margin, or saved before the smearing was recorded.
    pub fn har_rv(&self, row: &[f64]) -> Option<f64> {
        let (m, x) = self.margin_row(row)?;
        m.har_rv_of(&x)
    }

    /// The volatility model with a base margin, and `row` in its input order.
    fn margin_row(&self, row: &[f64]) -> Option<(&rps_model::VolatilityModel, Vec<f32>)> {
        let Model::Volatility(m) = self.model.as_ref() else {
            return None;
        };
        m.meta.margin.as_ref()?;
        let x = self.inputs.row(row);
        Some((m, x))
    }

    /// Whether its predictions carry a median and 80 % band (a volatility model with quantiles).
    pub fn has_band(&self) -> bool {
        self.model.meta().quantiles.is_some()
    }

    /// The prediction row for `symbol`'s bar at `bar_time`: `task` `volatility` with the
    /// forecast (and, for a model with quantiles, its median and 80 % band), or `signal` with the class and its three probabilities.
    pub fn prediction(
        &self,
        symbol: &str,
        bar_time: DateTime<Utc>,
        row: &[f64],
    ) -> Result<Prediction, StreamError> {
        Ok(self.row_of(symbol, bar_time, self.predict(row)?))
    }

    /// The prediction rows of many feature rows at once, `(symbol, bar time, row)` each, in
    /// their order: the engine's block path (every tree walks a block of rows held in cache,
    /// blocks on the thread pool), which gives each row the bits [`Self::prediction`] gives it
    /// alone (hessboost computes a row's predictions the same way in every batch; the batch
    /// evaluation of `rps evaluate` uses this path too).
    pub fn predictions(
        &self,
        rows: &[(&str, DateTime<Utc>, &[f64])],
    ) -> Result<Vec<Prediction>, StreamError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let n_cols = self.inputs.len();
        let mut values = Vec::with_capacity(rows.len() * n_cols);
        for (_, _, row) in rows {
            self.inputs.fill(row, &mut values);
        }
        let x = rps_model::Rows {
            values,
            n_rows: rows.len(),
            n_cols,
        };
        let forecasts: Vec<Forecast> = match self.model.as_ref() {
            Model::Volatility(m) => m
                .forecast(&x)?
                .into_iter()
                .map(Forecast::Volatility)
                .collect(),
            Model::Signal(m) => m
                .predict_proba(&x)?
                .into_iter()
                .map(|probabilities| Forecast::Signal {
                    signal: rps_core::signal::argmax(&probabilities),
                    probabilities,
                })
                .collect(),
        };
        Ok(rows
            .iter()
            .zip(forecasts)
            .map(|((symbol, at, _), f)| self.row_of(symbol, *at, f))
            .collect())
    }

    /// The prediction row of forecast `f` of `symbol`'s bar at `bar_time`.
    fn row_of(&self, symbol: &str, bar_time: DateTime<Utc>, f: Forecast) -> Prediction {
        let mut p = Prediction {
            model: self.name.clone(),
            version: self.version.to_string(),
            alias: Some(self.alias.clone()),
            symbol: symbol.to_owned(),
            bar_time,
            task: self.model.task().as_str(),
            volatility: None,
            median: None,
            lower_80: None,
            upper_80: None,
            signal: None,
            p_sell: None,
            p_hold: None,
            p_buy: None,
        };
        match f {
            Forecast::Volatility(v) => {
                p.volatility = Some(v.mean);
                // A model without a quantile booster (trained before #16 or with
                // `train.quantiles: []`) leaves the band NULL rather than inventing one.
                p.median = v.median();
                (p.lower_80, p.upper_80) = v.interval(BAND).unzip();
            }
            Forecast::Signal {
                signal,
                probabilities,
            } => {
                p.signal = Some(signal.as_str().to_owned());
                p.p_sell = Some(probabilities[Signal::Sell.index()]);
                p.p_hold = Some(probabilities[Signal::Hold.index()]);
                p.p_buy = Some(probabilities[Signal::Buy.index()]);
            }
        }
        p
    }
}

/// Resolve `aliases` of model `name` in the registry; aliases that do not exist are skipped
/// (logged). Each version's features are built from its own saved spec (its `schema.json`) on
/// the stream's `interval` candles; a version whose spec this code cannot honour (another bar,
/// a feature the spec does not build) is refused, and so is a pooled version (`train.pooling:
/// pooled`) for a `symbol` it was not trained on or for no symbol: it predicts `symbol`'s bars
/// with that symbol's one-hot.
pub fn load(
    registry: &dyn Registry,
    name: &str,
    aliases: &[String],
    interval: rps_core::Interval,
    symbol: Option<&str>,
) -> Result<Vec<LiveModel>, StreamError> {
    load_shared(
        registry,
        name,
        aliases,
        interval,
        symbol,
        &mut Loaded::default(),
    )
}

/// The versions one live-set load has read, by (name, version): a version bound to several
/// symbols (a pooled model) is read and kept once, each symbol's [`LiveModel`] holding the same
/// booster with its own one-hot.
#[derive(Default)]
pub struct Loaded(HashMap<(String, u32), (Arc<Model>, Arc<rps_core::schema::FeatureSchema>)>);

impl Loaded {
    /// The distinct versions read (each one booster in memory).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn get(
        &mut self,
        registry: &dyn Registry,
        name: &str,
        version: u32,
    ) -> Result<(Arc<Model>, Arc<rps_core::schema::FeatureSchema>), StreamError> {
        let key = (name.to_owned(), version);
        if let Some(hit) = self.0.get(&key) {
            return Ok(hit.clone());
        }
        let loaded = registry.load(name, version)?;
        let entry = (Arc::new(loaded.model), Arc::new(loaded.files.schema));
        self.0.insert(key, entry.clone());
        Ok(entry)
    }
}

/// [`load`] reading each version through `loaded`, so that bindings of the same version share it.
fn load_shared(
    registry: &dyn Registry,
    name: &str,
    aliases: &[String],
    interval: rps_core::Interval,
    symbol: Option<&str>,
    loaded: &mut Loaded,
) -> Result<Vec<LiveModel>, StreamError> {
    let mut live: Vec<LiveModel> = Vec::new();
    for alias in aliases {
        let Some(version) = registry.alias(name, alias)? else {
            tracing::info!(model = name, alias, "alias not set: skipped");
            continue;
        };
        if let Some(m) = live.iter_mut().find(|m| m.version == version) {
            m.alias = format!("{},{alias}", m.alias);
            continue;
        }
        let (model, schema) = loaded.get(registry, name, version)?;
        let spec = FeatureSpec::from_schema(&schema, interval)
            .map_err(|e| StreamError::Config(format!("{name} v{version}: {e}")))?;
        let features = rps_core::features::feature_names(&spec.features);
        let inputs = rps_core::pooling::Inputs::new(
            &model.meta().features,
            &schema.symbols,
            &features,
            symbol,
        )
        .map_err(|e| match e {
            rps_core::pooling::InputError::UnknownFeature(feature) => {
                StreamError::FeatureMismatch {
                    model: format!("{name} v{version}"),
                    feature,
                }
            }
            other => StreamError::Config(format!(
                "{name} v{version}{}: {other}",
                symbol.map(|s| format!(" for {s}")).unwrap_or_default()
            )),
        })?;
        live.push(LiveModel {
            name: name.to_owned(),
            symbol: None,
            version,
            alias: alias.clone(),
            model,
            spec_key: spec.key(),
            spec,
            inputs,
        });
    }
    Ok(live)
}

/// [`load`] for each model name (the volatility and the signal model), one list.
pub fn load_all(
    registry: &dyn Registry,
    names: &[String],
    aliases: &[String],
    interval: rps_core::Interval,
    symbol: Option<&str>,
) -> Result<Vec<LiveModel>, StreamError> {
    load_all_shared(
        registry,
        names,
        aliases,
        interval,
        symbol,
        &mut Loaded::default(),
    )
}

fn load_all_shared(
    registry: &dyn Registry,
    names: &[String],
    aliases: &[String],
    interval: rps_core::Interval,
    symbol: Option<&str>,
    loaded: &mut Loaded,
) -> Result<Vec<LiveModel>, StreamError> {
    let mut live = Vec::new();
    for name in names {
        live.extend(load_shared(
            registry, name, aliases, interval, symbol, loaded,
        )?);
    }
    Ok(live)
}

/// The registered models of one symbol (or of every symbol: `symbol` `None`) and the candle
/// interval of its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub symbol: Option<String>,
    pub names: Vec<String>,
    pub interval: rps_core::Interval,
}

/// What the consumer predicts with: with several symbols in params.yaml, each symbol's own
/// models for its bars only; with one, its models for every symbol on the topic.
pub fn bindings<'a>(sets: impl IntoIterator<Item = &'a rps_core::params::Params>) -> Vec<Binding> {
    let sets: Vec<&rps_core::params::Params> = sets.into_iter().collect();
    let multi = sets.len() > 1;
    sets.into_iter()
        .map(|p| Binding {
            symbol: multi.then(|| p.data.symbol.clone()),
            names: model_names(p),
            interval: p.data.interval,
        })
        .collect()
}

/// [`load_all`] for every binding, each model tagged with its binding's symbol. A version bound
/// to several symbols (the pooled model of `train.pooling: pooled`) is read once and its booster
/// shared: see [`load_bound_sharing`].
pub fn load_bound(
    registry: &dyn Registry,
    bindings: &[Binding],
    aliases: &[String],
) -> Result<Vec<LiveModel>, StreamError> {
    load_bound_sharing(registry, bindings, aliases, &mut Loaded::default())
}

/// [`load_bound`] through `loaded`, which afterwards holds the distinct versions read.
pub fn load_bound_sharing(
    registry: &dyn Registry,
    bindings: &[Binding],
    aliases: &[String],
    loaded: &mut Loaded,
) -> Result<Vec<LiveModel>, StreamError> {
    let mut live = Vec::new();
    for b in bindings {
        for mut m in load_all_shared(
            registry,
            &b.names,
            aliases,
            b.interval,
            b.symbol.as_deref(),
            loaded,
        )? {
            m.symbol.clone_from(&b.symbol);
            live.push(m);
        }
    }
    Ok(live)
}

/// The binding of a one-symbol command (`rps stream reconcile --symbol S`): the symbol's models
/// for its bars. With several symbols in params.yaml it names the symbol, which a pooled model
/// (`train.pooling: pooled`) needs for its one-hot; with one, none, as before.
pub fn binding(params: &rps_core::params::Params) -> Binding {
    Binding {
        symbol: params
            .data
            .is_multi_symbol()
            .then(|| params.data.symbol.clone()),
        names: model_names(params),
        interval: params.data.interval,
    }
}

/// Whether `a` and `b` predict with the same booster in memory (not a copy).
pub fn shares_model(a: &LiveModel, b: &LiveModel) -> bool {
    Arc::ptr_eq(&a.model, &b.model)
}

/// The distinct specs of `live` (key, spec), in first-seen order.
pub fn specs(live: &[LiveModel]) -> Vec<(String, FeatureSpec)> {
    let mut out: Vec<(String, FeatureSpec)> = Vec::new();
    for m in live {
        if !out.iter().any(|(k, _)| *k == m.spec_key) {
            out.push((m.spec_key.clone(), m.spec.clone()));
        }
    }
    out
}

/// The registered models the stream predicts with: `train.model_name` (volatility) and
/// `train.signal_model_name` (Buy/Hold/Sell); a name without live versions is skipped.
pub fn model_names(params: &rps_core::params::Params) -> Vec<String> {
    let mut names = vec![params.train.model_name.clone()];
    if params.train.signal_model_name != params.train.model_name {
        names.push(params.train.signal_model_name.clone());
    }
    names
}

/// `name v3 (champion), …` for logs.
pub fn describe(live: &[LiveModel]) -> String {
    live.iter()
        .map(|m| match &m.symbol {
            Some(s) => format!("{} v{} ({}) for {s}", m.name, m.version, m.alias),
            None => format!("{} v{} ({})", m.name, m.version, m.alias),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
