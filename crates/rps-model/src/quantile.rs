//! The distribution half of a volatility model (issue #16): one multi-output booster
//! (`reg:quantileerror`, one output per level of `train.quantiles`) on ln σ over the same linear
//! base margin as the mean booster, calibrated level by level on the validation rows
//! (asymmetric conformalized quantile regression) and rearranged so quantiles never cross.
//!
//! Raw booster outputs are what XGBoost's `Booster.predict` returns for the feature row (an
//! `(n, levels)` array, no base margin) **sorted ascending within the row**: the engine's
//! quantile prediction rearranges a row's outputs, XGBoost's does not, so a row whose trees
//! cross differs from Python's until sorted (the interop test and the pyfunc sort them). The σ
//! quantile of level `τ` is
//! `exp(raw_τ + L + c_τ)`, sorted across levels, then floored, where `L` is the base margin
//! (`meta.margin`) and `c_τ` the level's correction (`meta.quantiles.corrections`).

use crate::*;
use rps_core::distribution::{Quantiles, conformal_correction};
use rps_core::params::{QuantileCalibration, TrainParams};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::num::NonZeroUsize;

/// File names of the quantile booster of a model version.
pub const QUANTILE_JSON: &str = "quantiles.json";
pub const QUANTILE_UBJ: &str = "quantiles.ubj";

/// What `meta.json` records of the quantile booster (`quantiles`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantileMeta {
    /// The levels, increasing; output `i` of the booster is level `levels[i]`.
    pub levels: Vec<f64>,
    /// Shift on ln σ added to each level's raw output (0 without calibration).
    pub corrections: Vec<f64>,
    pub calibration: QuantileCalibration,
    /// Validation rows the corrections were estimated on.
    pub n_calibration: usize,
    /// Observed share of validation outcomes at or below each level, before calibration.
    pub raw_validation_coverage: Vec<f64>,
    pub best_iteration: Option<usize>,
    pub num_trees: usize,
    /// The XGBoost parameters the quantile booster was trained with.
    pub xgboost_params: BTreeMap<String, serde_json::Value>,
}

/// The quantile booster with its metadata.
#[derive(Debug, Clone)]
pub struct QuantileBooster {
    pub(crate) booster: BoostedModel,
    pub meta: QuantileMeta,
}

/// Floored ln σ labels.
#[allow(clippy::cast_possible_truncation)]
fn log_labels(y: &[f64], floor: f64) -> Vec<f32> {
    y.iter()
        .map(|&v| v.max(floor).max(f64::MIN_POSITIVE).ln() as f32)
        .collect()
}

impl QuantileBooster {
    /// Train on `train` with early stopping on `valid` (the mean pinball loss over the levels),
    /// then calibrate on `valid`. `margin` evaluates the base margin `L` of a row.
    pub(crate) fn train(
        p: &TrainParams,
        floor: f64,
        margin: &dyn Fn(&[f32]) -> f64,
        has_margin: bool,
        train: (&Rows, &[f64]),
        valid: (&Rows, &[f64]),
    ) -> Result<Self, ModelError> {
        let levels = p.quantiles.clone();
        let k = levels.len();
        let (xt, yt) = train;
        let (xv, yv) = valid;
        let lt = log_labels(yt, floor);
        let lv = log_labels(yv, floor);
        let mut xgb = p.xgboost.clone();
        xgb.remove("eval_metric");
        xgb.extend(p.quantile_xgboost.clone());
        xgb.insert("objective".to_owned(), "reg:quantileerror".into());
        xgb.insert("quantile_alpha".to_owned(), serde_json::json!(levels));
        let base_score = if has_margin {
            0.0
        } else {
            lt.iter().map(|&v| f64::from(v)).sum::<f64>() / lt.len().max(1) as f64
        };
        xgb.insert("base_score".to_owned(), serde_json::json!(base_score));
        let params = TrainingParams::from_xgboost(xgb.clone()).map_err(ModelError::Params)?;
        // One margin per row and level, row-major, as XGBoost lays out a multi-output margin.
        #[allow(clippy::cast_possible_truncation)]
        let offsets = |x: &Rows| -> Vec<f32> {
            (0..x.n_rows)
                .flat_map(|r| {
                    let l = margin(&x.values[r * x.n_cols..(r + 1) * x.n_cols]) as f32;
                    std::iter::repeat_n(l, k)
                })
                .collect()
        };
        let dmatrix = |x: &Rows, labels: &[f32]| {
            let d = x.dmatrix().and_then(|d| d.with_labels(labels))?;
            if has_margin {
                d.with_base_margin(&offsets(x))
            } else {
                Ok(d)
            }
        };
        let dtrain = dmatrix(xt, &lt).map_err(ModelError::Train)?;
        let dvalid = dmatrix(xv, &lv).map_err(ModelError::Train)?;
        let mut trainer = Trainer::new(&params, &dtrain, p.num_boost_round.max(1))
            .eval(&dtrain, "train")
            .eval(&dvalid, "validation");
        if let Some(r) = NonZeroUsize::new(p.early_stopping_rounds) {
            trainer = trainer.early_stopping_rounds(r);
        }
        let booster = trainer.train().map_err(ModelError::Train)?.model;
        let mut model = Self {
            meta: QuantileMeta {
                levels: levels.clone(),
                corrections: vec![0.0; k],
                calibration: p.quantile_calibration,
                n_calibration: xv.n_rows,
                raw_validation_coverage: Vec::new(),
                best_iteration: booster.best_iteration(),
                num_trees: booster.num_boost_rounds(),
                xgboost_params: xgb,
            },
            booster,
        };
        // Validation scores y − q̂ on ln σ, per level.
        let raw = model.predict_raw(xv)?;
        let mut scores: Vec<Vec<f64>> = vec![Vec::with_capacity(xv.n_rows); k];
        for r in 0..xv.n_rows {
            let l = margin(&xv.values[r * xv.n_cols..(r + 1) * xv.n_cols]);
            for (j, s) in scores.iter_mut().enumerate() {
                s.push(f64::from(lv[r]) - (raw[r * k + j] + l));
            }
        }
        model.meta.raw_validation_coverage = scores
            .iter()
            .map(|s| s.iter().filter(|&&d| d <= 0.0).count() as f64 / s.len().max(1) as f64)
            .collect();
        if p.quantile_calibration == QuantileCalibration::Cqr {
            for (j, s) in scores.iter_mut().enumerate() {
                // Too few rows to certify a level: leave it as trained.
                model.meta.corrections[j] = conformal_correction(s, levels[j]).unwrap_or(0.0);
            }
        }
        Ok(model)
    }

    /// Raw outputs, row-major `(n_rows, levels)`: what XGBoost's `Booster.predict` returns.
    pub fn predict_raw(&self, x: &Rows) -> Result<Vec<f64>, ModelError> {
        let d = x.dmatrix().map_err(ModelError::Predict)?;
        let p = self
            .booster
            .predict(&d, Iterations::Best)
            .map_err(ModelError::Predict)?;
        Ok(p.as_slice().iter().map(|&v| f64::from(v)).collect())
    }

    /// The σ quantiles from one row's raw outputs and base margin `l`.
    pub(crate) fn to_quantiles(&self, raw: &[f64], l: f64, floor: f64) -> Quantiles {
        let values = raw
            .iter()
            .zip(&self.meta.corrections)
            .map(|(r, c)| {
                let v = (r + l + c).exp();
                if v.is_finite() { v.max(floor) } else { floor }
            })
            .collect();
        let mut q = Quantiles {
            levels: self.meta.levels.clone(),
            values,
        };
        q.rearrange();
        q
    }

    /// One row's raw outputs, allocation-free in the engine (the serving path).
    pub(crate) fn predict_row(&self, row: &[f32]) -> Result<Vec<f64>, ModelError> {
        let mut out = vec![0.0f32; self.meta.levels.len()];
        self.booster
            .predict_row_into(row, Iterations::Best, &mut out)
            .map_err(ModelError::Predict)?;
        Ok(out.into_iter().map(f64::from).collect())
    }

    pub fn to_xgboost_json(&self) -> Result<Vec<u8>, ModelError> {
        self.booster
            .encode(ModelFormat::XgboostJson)
            .map_err(ModelError::Format)
    }

    pub fn to_xgboost_ubj(&self) -> Result<Vec<u8>, ModelError> {
        self.booster
            .encode(ModelFormat::XgboostUbjson)
            .map_err(ModelError::Format)
    }

    /// Load from XGBoost-format bytes and the metadata `meta.json` recorded.
    pub fn from_parts(bytes: &[u8], meta: QuantileMeta) -> Result<Self, ModelError> {
        let booster = decode(bytes)?;
        if booster.n_outputs() != meta.levels.len() || meta.corrections.len() != meta.levels.len() {
            return Err(ModelError::QuantileShape {
                outputs: booster.n_outputs(),
                levels: meta.levels.len(),
            });
        }
        Ok(Self { booster, meta })
    }
}
