//! The live set: the registry versions behind a list of aliases, ready to predict a feature row.

use crate::StreamError;
use crate::db::Prediction;
use chrono::{DateTime, Utc};
use rps_model::VolatilityModel;
use rps_tracking::Registry;

/// One live model version (several aliases may point at it: it predicts once).
#[derive(Debug, Clone)]
pub struct LiveModel {
    pub name: String,
    pub version: u32,
    /// The aliases pointing at this version, comma-joined in the order asked (`champion,challenger`).
    pub alias: String,
    model: VolatilityModel,
    /// For each model feature, its position in the online feature row.
    index: Vec<usize>,
}

impl LiveModel {
    /// The volatility forecast for `row` (values in the order of the online builder's names).
    pub fn predict(&self, row: &[f64]) -> Result<f64, StreamError> {
        #[allow(clippy::cast_possible_truncation)]
        let x: Vec<f32> = self.index.iter().map(|&i| row[i] as f32).collect();
        Ok(self.model.predict_one(&x)?)
    }

    /// The prediction row for `symbol`'s bar at `bar_time`.
    pub fn prediction(
        &self,
        symbol: &str,
        bar_time: DateTime<Utc>,
        row: &[f64],
    ) -> Result<Prediction, StreamError> {
        Ok(Prediction {
            model: self.name.clone(),
            version: self.version.to_string(),
            alias: Some(self.alias.clone()),
            symbol: symbol.to_owned(),
            bar_time,
            task: "volatility",
            volatility: Some(self.predict(row)?),
            signal: None,
            p_sell: None,
            p_hold: None,
            p_buy: None,
        })
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
            .meta
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

/// `name v3 (champion), …` for logs.
pub fn describe(live: &[LiveModel]) -> String {
    live.iter()
        .map(|m| format!("{} v{} ({})", m.name, m.version, m.alias))
        .collect::<Vec<_>>()
        .join(", ")
}
