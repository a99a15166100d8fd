//! The live set: the registry versions behind a list of aliases, ready to predict a feature row.

use crate::StreamError;
use crate::db::Prediction;
use chrono::{DateTime, Utc};
use rps_core::signal::Signal;
use rps_model::{Forecast, Model};
use rps_tracking::Registry;

/// One live model version (several aliases may point at it: it predicts once).
#[derive(Debug, Clone)]
pub struct LiveModel {
    pub name: String,
    pub version: u32,
    /// The aliases pointing at this version, comma-joined in the order asked (`champion,challenger`).
    pub alias: String,
    /// A volatility or a signal model (its `meta.json` says which).
    model: Model,
    /// For each model feature, its position in the online feature row.
    index: Vec<usize>,
}

impl LiveModel {
    /// The forecast for `row` (values in the order of the online builder's names).
    pub fn predict(&self, row: &[f64]) -> Result<Forecast, StreamError> {
        #[allow(clippy::cast_possible_truncation)]
        let x: Vec<f32> = self.index.iter().map(|&i| row[i] as f32).collect();
        Ok(self.model.predict_one(&x)?)
    }

    /// The prediction row for `symbol`'s bar at `bar_time`: `task` `volatility` with the
    /// forecast, or `signal` with the class and its three probabilities.
    pub fn prediction(
        &self,
        symbol: &str,
        bar_time: DateTime<Utc>,
        row: &[f64],
    ) -> Result<Prediction, StreamError> {
        let mut p = Prediction {
            model: self.name.clone(),
            version: self.version.to_string(),
            alias: Some(self.alias.clone()),
            symbol: symbol.to_owned(),
            bar_time,
            task: self.model.task().as_str(),
            volatility: None,
            signal: None,
            p_sell: None,
            p_hold: None,
            p_buy: None,
        };
        match self.predict(row)? {
            Forecast::Volatility(v) => p.volatility = Some(v),
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
        Ok(p)
    }
}

/// Resolve `aliases` of model `name` in the registry; aliases that do not exist are skipped
/// (logged). `features` are the online builder's names; a version needing a feature the
/// builder does not make is refused (the model was trained with other `features:` params).
pub fn load(
    registry: &dyn Registry,
    name: &str,
    aliases: &[String],
    features: &[String],
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
        let loaded = registry.load(name, version)?;
        let index = loaded
            .model
            .meta()
            .features
            .iter()
            .map(|f| {
                features
                    .iter()
                    .position(|n| n == f)
                    .ok_or_else(|| StreamError::FeatureMismatch {
                        model: format!("{name} v{version}"),
                        feature: f.clone(),
                    })
            })
            .collect::<Result<Vec<usize>, StreamError>>()?;
        live.push(LiveModel {
            name: name.to_owned(),
            version,
            alias: alias.clone(),
            model: loaded.model,
            index,
        });
    }
    Ok(live)
}

/// [`load`] for each model name (the volatility and the signal model), one list.
pub fn load_all(
    registry: &dyn Registry,
    names: &[String],
    aliases: &[String],
    features: &[String],
) -> Result<Vec<LiveModel>, StreamError> {
    let mut live = Vec::new();
    for name in names {
        live.extend(load(registry, name, aliases, features)?);
    }
    Ok(live)
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
        .map(|m| format!("{} v{} ({})", m.name, m.version, m.alias))
        .collect::<Vec<_>>()
        .join(", ")
}
