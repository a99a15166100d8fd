//! The volatility model behind a small seam of RPS's own ([`VolatilityModel`]), trained and
//! evaluated with [hessboost](https://docs.rs/hessboost) — a pure-Rust engine that takes
//! XGBoost's parameter names and reads and writes XGBoost's model files — so the saved
//! `model.json` / `model.ubj` load in Python's `xgboost` and `mlflow.xgboost` and predict the
//! same numbers.
//!
//! The booster predicts the target in a transformed space ([`TargetTransform`]); the
//! [`ModelMeta`] saved beside it says how to map a raw booster output back to a volatility:
//! `log` → `exp(raw) · smearing`, `variance` → `sqrt(raw) / 100`, `identity` → `raw`, then the floor.

use hessboost::prelude::*;
use rps_core::params::{TargetTransform, TrainParams};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::num::NonZeroUsize;

/// The `variance` transform learns `(100 σ)²`, the variance of returns in percent: hourly
/// variances near 1e-5 sit too close to the engine's numerical floors for a gamma fit.
pub const PERCENT: f64 = 100.0;

/// The engine name and version recorded with every model.
pub const ENGINE: &str = "hessboost 0.4.6";

/// File names of a saved model.
pub const XGB_JSON: &str = "model.json";
pub const XGB_UBJ: &str = "model.ubj";
pub const META: &str = "meta.json";

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid XGBoost parameter: {0}")]
    Params(#[source] HessboostError),
    #[error("training failed: {0}")]
    Train(#[source] HessboostError),
    #[error("prediction failed: {0}")]
    Predict(#[source] HessboostError),
    #[error("model file could not be encoded or decoded: {0}")]
    Format(#[source] HessboostError),
    #[error("bad model metadata: {0}")]
    Meta(#[from] serde_json::Error),
    #[error("no usable training rows: {0}")]
    NoData(String),
    #[error("row has {got} features, the model expects {expected}")]
    Width { got: usize, expected: usize },
}

/// What is saved beside the booster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    pub features: Vec<String>,
    pub transform: TargetTransform,
    /// Multiplier applied after `exp` for the log transform (Duan's smearing, from validation).
    pub smearing: f64,
    /// Volatility floor applied to every prediction.
    pub floor: f64,
    pub base_score: f64,
    pub best_iteration: Option<usize>,
    pub num_trees: usize,
    pub engine: String,
    /// The XGBoost parameters the booster was trained with.
    pub xgboost_params: BTreeMap<String, serde_json::Value>,
}

/// A rectangular block of rows (row-major), NaN for missing.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    pub values: Vec<f32>,
    pub n_rows: usize,
    pub n_cols: usize,
}

impl Rows {
    /// Rows `idx` of column-major `columns`.
    pub fn gather(columns: &[Vec<f64>], idx: &[usize]) -> Self {
        let n_cols = columns.len();
        let mut values = Vec::with_capacity(idx.len() * n_cols);
        for &i in idx {
            #[allow(clippy::cast_possible_truncation)]
            values.extend(columns.iter().map(|c| c[i] as f32));
        }
        Self {
            values,
            n_rows: idx.len(),
            n_cols,
        }
    }

    fn dmatrix(&self) -> Result<DMatrix, HessboostError> {
        DMatrix::from_dense(&self.values, self.n_rows, self.n_cols)
    }
}

/// Per-round validation loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub metric: String,
    pub train: Vec<f64>,
    pub validation: Vec<f64>,
}

/// A trained volatility model.
#[derive(Debug, Clone)]
pub struct VolatilityModel {
    booster: BoostedModel,
    pub meta: ModelMeta,
}

fn label(transform: TargetTransform, vol: f64) -> f64 {
    match transform {
        TargetTransform::Log => vol.ln(),
        TargetTransform::Variance => (vol * PERCENT).powi(2),
        TargetTransform::Identity => vol,
    }
}

fn default_objective(transform: TargetTransform) -> &'static str {
    match transform {
        TargetTransform::Variance => "reg:gamma",
        TargetTransform::Log | TargetTransform::Identity => "reg:squarederror",
    }
}

impl VolatilityModel {
    /// Train on `train` rows with early stopping on `valid`. Targets are floored volatilities.
    /// `base_score` is set explicitly to the mean training label (in output space) unless the
    /// parameters give one, so Python's XGBoost and hessboost agree on it.
    pub fn train(
        p: &TrainParams,
        features: &[String],
        floor: f64,
        train: (&Rows, &[f64]),
        valid: (&Rows, &[f64]),
    ) -> Result<(Self, History), ModelError> {
        let (xt, yt) = train;
        let (xv, yv) = valid;
        if xt.n_rows == 0 || xv.n_rows == 0 {
            return Err(ModelError::NoData(format!(
                "{} training and {} validation rows",
                xt.n_rows, xv.n_rows
            )));
        }
        #[allow(clippy::cast_possible_truncation)]
        let lt: Vec<f32> = yt
            .iter()
            .map(|&v| label(p.target_transform, v) as f32)
            .collect();
        #[allow(clippy::cast_possible_truncation)]
        let lv: Vec<f32> = yv
            .iter()
            .map(|&v| label(p.target_transform, v) as f32)
            .collect();
        let mut xgb = p.xgboost.clone();
        xgb.entry("objective".to_owned())
            .or_insert_with(|| default_objective(p.target_transform).into());
        if p.target_transform == TargetTransform::Variance {
            // Early-stop on the gamma likelihood (QLIKE's cousin), not on RMSE of variances.
            xgb.entry("eval_metric".to_owned())
                .or_insert_with(|| "gamma-nloglik".into());
        }
        let base_score = lt.iter().map(|&v| f64::from(v)).sum::<f64>() / lt.len() as f64;
        xgb.entry("base_score".to_owned())
            .or_insert_with(|| serde_json::json!(base_score));
        let params = TrainingParams::from_xgboost(xgb.clone()).map_err(ModelError::Params)?;
        let dtrain = xt
            .dmatrix()
            .and_then(|d| d.with_labels(&lt))
            .map_err(ModelError::Train)?;
        let dvalid = xv
            .dmatrix()
            .and_then(|d| d.with_labels(&lv))
            .map_err(ModelError::Train)?;
        let mut trainer = Trainer::new(&params, &dtrain, p.num_boost_round.max(1))
            .eval(&dtrain, "train")
            .eval(&dvalid, "validation");
        if let Some(r) = NonZeroUsize::new(p.early_stopping_rounds) {
            trainer = trainer.early_stopping_rounds(r);
        }
        let result = trainer.train().map_err(ModelError::Train)?;
        let metric = result.history.metrics().last().cloned().unwrap_or_default();
        let series = |d: &str| {
            result
                .history
                .series(d, &metric)
                .map(Iterator::collect)
                .unwrap_or_default()
        };
        let history = History {
            train: series("train"),
            validation: series("validation"),
            metric,
        };
        let booster = result.model;
        let meta = ModelMeta {
            features: features.to_vec(),
            transform: p.target_transform,
            smearing: 1.0,
            floor,
            base_score: f64::from(booster.base_score()),
            best_iteration: booster.best_iteration(),
            num_trees: booster.num_boost_rounds(),
            engine: ENGINE.to_owned(),
            xgboost_params: xgb,
        };
        let mut model = Self { booster, meta };
        if p.target_transform == TargetTransform::Log {
            // Duan's smearing on validation residuals: exp of a log-scale fit is the median, the
            // factor turns it into the mean, which QLIKE and RMSE reward.
            let raw = model.predict_raw(xv)?;
            let s: f64 = raw
                .iter()
                .zip(yv)
                .map(|(r, y)| (y.ln() - r).exp())
                .sum::<f64>()
                / raw.len() as f64;
            model.meta.smearing = if s.is_finite() && s > 0.0 { s } else { 1.0 };
        }
        Ok((model, history))
    }

    /// Raw booster outputs (what XGBoost's `Booster.predict` returns).
    pub fn predict_raw(&self, x: &Rows) -> Result<Vec<f64>, ModelError> {
        if x.n_cols != self.meta.features.len() {
            return Err(ModelError::Width {
                got: x.n_cols,
                expected: self.meta.features.len(),
            });
        }
        let d = x.dmatrix().map_err(ModelError::Predict)?;
        let p = self
            .booster
            .predict(&d, Iterations::Best)
            .map_err(ModelError::Predict)?;
        Ok(p.as_slice().iter().map(|&v| f64::from(v)).collect())
    }

    /// Map a raw output to a floored volatility.
    pub fn to_volatility(&self, raw: f64) -> f64 {
        let v = match self.meta.transform {
            TargetTransform::Log => raw.exp() * self.meta.smearing,
            TargetTransform::Variance => raw.max(0.0).sqrt() / PERCENT,
            TargetTransform::Identity => raw,
        };
        if v.is_finite() {
            v.max(self.meta.floor)
        } else {
            self.meta.floor
        }
    }

    /// Volatility forecasts for a block of rows.
    pub fn predict(&self, x: &Rows) -> Result<Vec<f64>, ModelError> {
        Ok(self
            .predict_raw(x)?
            .into_iter()
            .map(|r| self.to_volatility(r))
            .collect())
    }

    /// One row, allocation-free in the engine (the serving path).
    pub fn predict_one(&self, row: &[f32]) -> Result<f64, ModelError> {
        if row.len() != self.meta.features.len() {
            return Err(ModelError::Width {
                got: row.len(),
                expected: self.meta.features.len(),
            });
        }
        let raw = self
            .booster
            .predict_row(row, Iterations::Best)
            .map_err(ModelError::Predict)?;
        Ok(self.to_volatility(f64::from(raw)))
    }

    /// Gain-based feature importance by feature name.
    pub fn importance(&self) -> BTreeMap<String, f64> {
        self.booster
            .feature_importance(ImportanceType::TotalGain)
            .into_iter()
            .filter_map(|(i, g)| self.meta.features.get(i).map(|n| (n.clone(), g)))
            .collect()
    }

    /// The booster in XGBoost's JSON format.
    pub fn to_xgboost_json(&self) -> Result<Vec<u8>, ModelError> {
        self.booster
            .encode(ModelFormat::XgboostJson)
            .map_err(ModelError::Format)
    }

    /// The booster in XGBoost's UBJSON format.
    pub fn to_xgboost_ubj(&self) -> Result<Vec<u8>, ModelError> {
        self.booster
            .encode(ModelFormat::XgboostUbjson)
            .map_err(ModelError::Format)
    }

    /// Load from XGBoost-format bytes (JSON or UBJ, detected) and metadata.
    pub fn from_parts(booster_bytes: &[u8], meta: ModelMeta) -> Result<Self, ModelError> {
        let format = if booster_bytes.first() == Some(&b'{')
            && booster_bytes
                .get(1)
                .is_some_and(|b| b.is_ascii_whitespace() || *b == b'"')
        {
            ModelFormat::XgboostJson
        } else {
            ModelFormat::XgboostUbjson
        };
        let booster = BoostedModel::decode(booster_bytes, format).map_err(ModelError::Format)?;
        Ok(Self { booster, meta })
    }

    pub fn meta_json(&self) -> Result<Vec<u8>, ModelError> {
        Ok(serde_json::to_vec_pretty(&self.meta)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u64) -> (Rows, Vec<f64>) {
        let mut x = Vec::new();
        let mut y = Vec::new();
        let mut s = seed;
        for _ in 0..n {
            let mut row = Vec::new();
            for _ in 0..3 {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                row.push(((s >> 33) as f64 / f64::from(u32::MAX)) * 2.0 - 1.0);
            }
            y.push((0.01 * (1.0 + row[0] * 0.5 + row[1] * row[1])).max(1e-4));
            #[allow(clippy::cast_possible_truncation)]
            x.extend(row.iter().map(|v| *v as f32));
        }
        (
            Rows {
                values: x,
                n_rows: n,
                n_cols: 3,
            },
            y,
        )
    }

    #[test]
    fn trains_predicts_and_round_trips_in_each_transform() {
        let (xt, yt) = data(800, 1);
        let (xv, yv) = data(200, 2);
        let names: Vec<String> = ["a", "b", "c"].map(str::to_owned).to_vec();
        for transform in [
            TargetTransform::Log,
            TargetTransform::Variance,
            TargetTransform::Identity,
        ] {
            let mut p = TrainParams {
                target_transform: transform,
                num_boost_round: 300,
                early_stopping_rounds: 20,
                ..TrainParams::default()
            };
            p.xgboost.insert("eta".to_owned(), serde_json::json!(0.1));
            let (m, h) = VolatilityModel::train(&p, &names, 1e-4, (&xt, &yt), (&xv, &yv)).unwrap();
            assert!(!h.validation.is_empty());
            assert!(
                h.validation.last().unwrap() < h.validation.first().unwrap(),
                "{transform:?} learns"
            );
            let pred = m.predict(&xv).unwrap();
            let mse: f64 = pred
                .iter()
                .zip(&yv)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f64>()
                / yv.len() as f64;
            let var: f64 = {
                let m = yv.iter().sum::<f64>() / yv.len() as f64;
                yv.iter().map(|v| (v - m).powi(2)).sum::<f64>() / yv.len() as f64
            };
            assert!(mse < 0.3 * var, "{transform:?}: mse {mse} vs var {var}");
            for bytes in [m.to_xgboost_json().unwrap(), m.to_xgboost_ubj().unwrap()] {
                let back = VolatilityModel::from_parts(&bytes, m.meta.clone()).unwrap();
                assert_eq!(back.predict_raw(&xv).unwrap(), m.predict_raw(&xv).unwrap());
            }
            let one = m.predict_one(&xv.values[..3]).unwrap();
            assert!((one - pred[0]).abs() < 1e-6 * pred[0].abs().max(1.0));
            assert!(matches!(
                m.predict_one(&[0.0]),
                Err(ModelError::Width {
                    got: 1,
                    expected: 3
                })
            ));
        }
    }

    #[test]
    fn bad_parameters_are_named() {
        let (xt, yt) = data(50, 1);
        let mut p = TrainParams::default();
        p.xgboost
            .insert("max_dept".to_owned(), serde_json::json!(3));
        let err = VolatilityModel::train(
            &p,
            &["a".into(), "b".into(), "c".into()],
            1e-4,
            (&xt, &yt),
            (&xt, &yt),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("max_dept"), "{err}");
    }
}
