//! What is saved beside a booster (`meta.json`): the transform, calibration, margin, task.

use crate::*;
use rps_core::params::{TargetTransform, Task};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A linear base margin on log volatility, `L(x) = b0 + Σ b_k · x_k`, fitted by OLS of `ln σ`
/// on the training rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearMargin {
    /// Feature columns, in coefficient order.
    pub terms: Vec<String>,
    /// Intercept first, then one per term.
    pub coefficients: Vec<f64>,
    /// Training mean of each term, used in place of a missing (non-finite) value.
    pub means: Vec<f64>,
    /// Duan's smearing factor of the fit, `mean(exp(ln σ − L))` over its training rows: the
    /// HAR-RV level forecast is `exp(L) · smearing` (`exp(L)` alone is the conditional median
    /// of σ under log-normal errors and sits below its mean, which QLIKE punishes). Absent in
    /// models saved before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smearing: Option<f64>,
}

impl LinearMargin {
    /// Fit on the rows of `x` (columns `idx` of it) against volatilities `y`.
    pub(crate) fn fit(
        terms: &[String],
        idx: &[usize],
        x: &Rows,
        y: &[f64],
    ) -> Result<Self, ModelError> {
        let mut design = Vec::with_capacity(x.n_rows);
        let mut target = Vec::with_capacity(x.n_rows);
        let mut sums = vec![0.0; idx.len()];
        for (r, &yr) in y.iter().enumerate() {
            let row = &x.values[r * x.n_cols..(r + 1) * x.n_cols];
            let vals: Vec<f64> = idx.iter().map(|&j| f64::from(row[j])).collect();
            if yr > 0.0 && yr.is_finite() && vals.iter().all(|v| v.is_finite()) {
                for (s, v) in sums.iter_mut().zip(&vals) {
                    *s += v;
                }
                let mut d = Vec::with_capacity(idx.len() + 1);
                d.push(1.0);
                d.extend(vals);
                design.push(d);
                target.push(yr.ln());
            }
        }
        let coefficients = rps_core::linalg::ols(&design, &target)?;
        let n = design.len() as f64;
        let residual_exp: f64 = design
            .iter()
            .zip(&target)
            .map(|(d, t)| {
                let fit: f64 = d.iter().zip(&coefficients).map(|(x, b)| x * b).sum();
                (t - fit).exp()
            })
            .sum();
        let smearing = residual_exp / n;
        Ok(Self {
            terms: terms.to_vec(),
            coefficients,
            means: sums.into_iter().map(|s| s / n).collect(),
            smearing: (smearing.is_finite() && smearing > 0.0).then_some(smearing),
        })
    }

    /// `L(row)` given the positions of the terms in the row.
    pub(crate) fn eval(&self, idx: &[usize], row: &[f32]) -> f64 {
        let mut z = self.coefficients[0];
        for ((&j, b), m) in idx.iter().zip(&self.coefficients[1..]).zip(&self.means) {
            let v = f64::from(row[j]);
            z += b * if v.is_finite() { v } else { *m };
        }
        z
    }
}

/// What a signal model's labels mean, saved in `meta.json` (`signal`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalMeta {
    /// Class names in the booster's output order: `["sell", "hold", "buy"]`.
    pub classes: Vec<String>,
    /// Bars ahead of the labels' return.
    pub horizon: usize,
    /// The labels' log-return threshold.
    pub threshold: f64,
}

/// What is saved beside the booster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// What the booster predicts: `volatility` (absent from the file, as before the signal task
    /// existed) or `signal`.
    #[serde(default, skip_serializing_if = "Task::is_volatility")]
    pub task: Task,
    /// The signal task's classes and label rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<SignalMeta>,
    pub features: Vec<String>,
    pub transform: TargetTransform,
    /// The exponent `k` of the `power` transform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<f64>,
    /// Multiplier applied to every volatility forecast, estimated on validation
    /// (`train.calibration`: Duan's smearing, the QLIKE-optimal scale, or 1).
    pub smearing: f64,
    /// The linear base margin the booster was trained on top of, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin: Option<LinearMargin>,
    /// How the exponent of the power transform was chosen on validation, if from a grid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<PowerSelection>,
    /// Volatility floor applied to every prediction.
    pub floor: f64,
    /// The quantile booster (`quantiles.ubj`) of a model trained with `train.quantiles`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantiles: Option<QuantileMeta>,
    /// XGBoost's `base_score`, in output space.
    pub base_score: f64,
    pub best_iteration: Option<usize>,
    pub num_trees: usize,
    pub engine: String,
    /// The XGBoost parameters the booster was trained with.
    pub xgboost_params: BTreeMap<String, serde_json::Value>,
}

/// One exponent tried by [`VolatilityModel::train`] with a `power_grid`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerCandidate {
    pub power: f64,
    pub validation_qlike: f64,
    pub validation_r2_log: f64,
}

/// The exponents tried and the benchmark they were held to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerSelection {
    /// Validation R² on log volatility of the linear base margin alone (Duan-smeared).
    pub benchmark_r2_log: f64,
    pub candidates: Vec<PowerCandidate>,
}
