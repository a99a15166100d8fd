//! The volatility model behind a small seam of RPS's own ([`VolatilityModel`]), trained and
//! evaluated with [hessboost](https://docs.rs/hessboost) — a pure-Rust engine that takes
//! XGBoost's parameter names and reads and writes XGBoost's model files — so the saved
//! `model.json` / `model.ubj` load in Python's `xgboost` and `mlflow.xgboost` and predict the
//! same numbers.
//!
//! The booster predicts the target in a transformed space ([`TargetTransform`]); the
//! [`ModelMeta`] saved beside it says how to map a raw booster output (what XGBoost's
//! `Booster.predict` returns for the feature row) back to a volatility:
//! `log` → `exp(raw + L) · smearing`, `variance` → `sqrt(raw) / 100 · exp(L) · smearing`,
//! `power` (exponent `k` in `meta.power`) → `raw^(1/k) / 100 · exp(L) · smearing`,
//! `identity` → `raw · smearing`, then the floor. `L` is the optional linear base margin on log
//! volatility, `L = b0 + Σ b_k · x_k` over the feature columns named in `meta.margin` (0 without
//! one): the booster was trained on top of it (XGBoost's `base_margin`), so it learns only the
//! nonlinear correction while the linear part carries the volatility level — trees cannot
//! extrapolate to levels they never saw, a linear function can.
//!
//! [`SignalModel`] is the Buy/Hold/Sell model of `train.task: signal`: `multi:softprob` over 3
//! classes (0 sell, 1 hold, 2 buy), its `meta.json` marked `"task": "signal"` with the label rule.

use hessboost::prelude::*;
use rps_core::params::{Calibration, TargetTransform, Task, TrainParams};
use rps_core::signal::{Signal, SignalParams};
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
    #[error("model file is not a readable XGBoost model (JSON or UBJSON): {0}")]
    Load(#[source] HessboostError),
    #[error("bad model metadata: {0}")]
    Meta(#[from] serde_json::Error),
    #[error("no usable training rows: {0}")]
    NoData(String),
    #[error("row has {got} features, the model expects {expected}")]
    Width { got: usize, expected: usize },
    #[error("{param} names {name:?}, which is not a feature of the model")]
    UnknownFeature { param: &'static str, name: String },
    #[error("the base margin could not be fitted: {0}")]
    Margin(#[from] rps_core::linalg::OlsError),
    #[error("the identity transform takes no base margin (it is a log-volatility offset)")]
    MarginTransform,
    #[error("train.power must lie in (0, 2], got {0}")]
    Power(f64),
    #[error(
        "train.power_grid needs a train.base_margin: the benchmark the exponent is chosen against"
    )]
    GridWithoutMargin,
    #[error("{rows} rows but {labels} labels")]
    Labels { rows: usize, labels: usize },
    #[error("the model is a {found} model, expected a {expected} model")]
    Task {
        found: &'static str,
        expected: &'static str,
    },
    #[error(
        "the booster predicts {got} values per row, a signal model predicts 3 (sell, hold, buy)"
    )]
    Classes { got: usize },
}

impl ModelError {
    /// Whether a model file that was read is bad (undecodable booster, metadata that is not
    /// JSON, a booster of the wrong shape or task): bad input (exit 4), not a failed fit.
    pub fn is_load_error(&self) -> bool {
        matches!(
            self,
            Self::Load(_) | Self::Meta(_) | Self::Task { .. } | Self::Classes { .. }
        )
    }
}

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
}

impl LinearMargin {
    /// Fit on the rows of `x` (columns `idx` of it) against volatilities `y`.
    fn fit(terms: &[String], idx: &[usize], x: &Rows, y: &[f64]) -> Result<Self, ModelError> {
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
        Ok(Self {
            terms: terms.to_vec(),
            coefficients,
            means: sums.into_iter().map(|s| s / n).collect(),
        })
    }

    /// `L(row)` given the positions of the terms in the row.
    fn eval(&self, idx: &[usize], row: &[f32]) -> f64 {
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
    /// Positions of the margin terms among the features.
    margin_idx: Vec<usize>,
}

/// Positions of `terms` among `features`.
fn positions(
    features: &[String],
    terms: &[String],
    param: &'static str,
) -> Result<Vec<usize>, ModelError> {
    terms
        .iter()
        .map(|t| {
            features
                .iter()
                .position(|f| f == t)
                .ok_or_else(|| ModelError::UnknownFeature {
                    param,
                    name: t.clone(),
                })
        })
        .collect()
}

/// The exponent `k` of a transform that learns `(100 σ)^k` with a log link (variance: 2).
fn exponent(transform: TargetTransform, power: Option<f64>) -> Option<f64> {
    match transform {
        TargetTransform::Variance => Some(2.0),
        TargetTransform::Power => Some(power.unwrap_or(1.0)),
        TargetTransform::Log | TargetTransform::Identity => None,
    }
}

/// The booster's margin offset for a log-volatility margin `l`: what `base_margin` holds.
fn booster_offset(transform: TargetTransform, k: Option<f64>, l: f64) -> f64 {
    match (transform, k) {
        // The gamma model's margin is ln (100 σ)^k; its base_score (100^k) carries the percent.
        (_, Some(k)) => k * (l + PERCENT.ln()),
        (TargetTransform::Log, None) => l,
        (_, None) => 0.0,
    }
}

fn label(transform: TargetTransform, k: Option<f64>, vol: f64) -> f64 {
    match (transform, k) {
        (_, Some(k)) => (vol * PERCENT).powf(k),
        (TargetTransform::Log, None) => vol.ln(),
        (_, None) => vol,
    }
}

fn default_objective(transform: TargetTransform) -> &'static str {
    match transform {
        TargetTransform::Variance | TargetTransform::Power => "reg:gamma",
        TargetTransform::Log | TargetTransform::Identity => "reg:squarederror",
    }
}

impl VolatilityModel {
    /// Train on `train` rows with early stopping on `valid`. Targets are floored volatilities.
    /// `base_score` is set explicitly, so Python's XGBoost and hessboost agree on it: the mean
    /// training label (in output space) unless the parameters give one, or with a base margin
    /// the margin-free origin. The forecast scale (`smearing`) is then calibrated on `valid`.
    ///
    /// With the `power` transform and a `power_grid`, one model is trained per exponent and
    /// the most QLIKE-oriented one (the largest `k`) whose validation R² on log volatility is
    /// at least that of the linear base margin alone is kept (the smallest `k` if none is):
    /// the trees may trade log accuracy for QLIKE only while the model stays at least as
    /// log-accurate as its own HAR-type base.
    pub fn train(
        p: &TrainParams,
        features: &[String],
        floor: f64,
        train: (&Rows, &[f64]),
        valid: (&Rows, &[f64]),
    ) -> Result<(Self, History), ModelError> {
        if p.target_transform != TargetTransform::Power || p.power_grid.is_empty() {
            return Self::train_one(p, features, floor, train, valid);
        }
        if p.base_margin.is_empty() {
            return Err(ModelError::GridWithoutMargin);
        }
        let mut grid = p.power_grid.clone();
        grid.sort_by(f64::total_cmp);
        grid.dedup();
        let mut fits = Vec::with_capacity(grid.len());
        for &k in &grid {
            let q = TrainParams {
                power: k,
                ..p.clone()
            };
            fits.push(Self::train_one(&q, features, floor, train, valid)?);
        }
        // The benchmark: the linear margin alone, with Duan's smearing from the training rows.
        let m = &fits[0].0;
        let base = |x: &Rows| -> Vec<f64> {
            (0..x.n_rows)
                .map(|r| {
                    m.margin_of(&x.values[r * x.n_cols..(r + 1) * x.n_cols])
                        .exp()
                })
                .collect()
        };
        let (xt, yt) = train;
        let (xv, yv) = valid;
        let bt = base(xt);
        let smear = yt.iter().zip(&bt).map(|(y, b)| y / b).sum::<f64>() / bt.len() as f64;
        let bv: Vec<f64> = base(xv).iter().map(|b| (b * smear).max(floor)).collect();
        let benchmark = rps_core::metrics::score(yv, &bv).r2_log;
        let mut candidates = Vec::with_capacity(fits.len());
        for (model, _) in &fits {
            let s = rps_core::metrics::score(yv, &model.predict(xv)?);
            candidates.push(PowerCandidate {
                power: model.meta.power.unwrap_or(f64::NAN),
                validation_qlike: s.qlike,
                validation_r2_log: s.r2_log,
            });
        }
        let chosen = candidates
            .iter()
            .rposition(|c| c.validation_r2_log >= benchmark)
            .unwrap_or(0);
        let (mut model, history) = fits.swap_remove(chosen);
        model.meta.selection = Some(PowerSelection {
            benchmark_r2_log: benchmark,
            candidates,
        });
        Ok((model, history))
    }

    fn train_one(
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
        let power = (p.target_transform == TargetTransform::Power).then_some(p.power);
        if power.is_some_and(|k| !(k > 0.0 && k <= 2.0)) {
            return Err(ModelError::Power(p.power));
        }
        let k = exponent(p.target_transform, power);
        #[allow(clippy::cast_possible_truncation)]
        let lt: Vec<f32> = yt
            .iter()
            .map(|&v| label(p.target_transform, k, v) as f32)
            .collect();
        #[allow(clippy::cast_possible_truncation)]
        let lv: Vec<f32> = yv
            .iter()
            .map(|&v| label(p.target_transform, k, v) as f32)
            .collect();
        let mut xgb = p.xgboost.clone();
        xgb.entry("objective".to_owned())
            .or_insert_with(|| default_objective(p.target_transform).into());
        if k.is_some() {
            // Early-stop on the gamma likelihood (QLIKE's cousin), not on RMSE of variances.
            xgb.entry("eval_metric".to_owned())
                .or_insert_with(|| "gamma-nloglik".into());
        }
        let margin_idx = positions(features, &p.base_margin, "train.base_margin")?;
        let margin = if p.base_margin.is_empty() {
            None
        } else if p.target_transform == TargetTransform::Identity {
            return Err(ModelError::MarginTransform);
        } else {
            Some(LinearMargin::fit(&p.base_margin, &margin_idx, xt, yt)?)
        };
        // base_score is explicit so that Python's XGBoost and hessboost agree on it. With a
        // margin it is the margin-free origin (0 for log, 100^k for variance and power), so
        // that `Booster.predict` without a base_margin returns what `to_volatility` expects.
        let base_score = match (&margin, k) {
            (Some(_), Some(k)) => PERCENT.powf(k),
            (Some(_), None) => 0.0,
            (None, _) => lt.iter().map(|&v| f64::from(v)).sum::<f64>() / lt.len() as f64,
        };
        if margin.is_some() {
            xgb.insert("base_score".to_owned(), serde_json::json!(base_score));
        } else {
            xgb.entry("base_score".to_owned())
                .or_insert_with(|| serde_json::json!(base_score));
        }
        let params = TrainingParams::from_xgboost(xgb.clone()).map_err(ModelError::Params)?;
        #[allow(clippy::cast_possible_truncation)]
        let offsets = |x: &Rows| -> Option<Vec<f32>> {
            margin.as_ref().map(|m| {
                (0..x.n_rows)
                    .map(|r| {
                        let row = &x.values[r * x.n_cols..(r + 1) * x.n_cols];
                        booster_offset(p.target_transform, k, m.eval(&margin_idx, row)) as f32
                    })
                    .collect()
            })
        };
        let with_margin = |d: DMatrix, x: &Rows| match offsets(x) {
            Some(o) => d.with_base_margin(&o),
            None => Ok(d),
        };
        let dtrain = xt
            .dmatrix()
            .and_then(|d| d.with_labels(&lt))
            .and_then(|d| with_margin(d, xt))
            .map_err(ModelError::Train)?;
        let dvalid = xv
            .dmatrix()
            .and_then(|d| d.with_labels(&lv))
            .and_then(|d| with_margin(d, xv))
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
            task: Task::Volatility,
            signal: None,
            features: features.to_vec(),
            transform: p.target_transform,
            power,
            smearing: 1.0,
            margin,
            selection: None,
            floor,
            // In output space, as XGBoost's config reports it (the engine keeps the margin).
            base_score: xgb
                .get("base_score")
                .and_then(serde_json::Value::as_f64)
                .unwrap_or_else(|| f64::from(booster.base_score())),
            best_iteration: booster.best_iteration(),
            num_trees: booster.num_boost_rounds(),
            engine: ENGINE.to_owned(),
            xgboost_params: xgb,
        };
        let mut model = Self {
            booster,
            meta,
            margin_idx,
        };
        // The scale factor, from validation forecasts before the floor.
        let raw = model.predict_raw(xv)?;
        let unscaled: Vec<f64> = raw
            .iter()
            .enumerate()
            .map(|(r, &v)| model.unscaled(v, &xv.values[r * xv.n_cols..(r + 1) * xv.n_cols]))
            .collect();
        let pairs = || {
            unscaled
                .iter()
                .zip(yv)
                .filter(|(h, y)| **h > 0.0 && h.is_finite() && y.is_finite())
        };
        let n = pairs().count() as f64;
        let s = match p.calibration {
            Calibration::None => 1.0,
            Calibration::Duan => pairs().map(|(h, y)| y / h).sum::<f64>() / n,
            Calibration::Qlike => (pairs().map(|(h, y)| (y / h).powi(2)).sum::<f64>() / n).sqrt(),
        };
        model.meta.smearing = if s.is_finite() && s > 0.0 { s } else { 1.0 };
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

    /// The log-volatility base margin `L` of a feature row (0 without a margin).
    pub fn margin_of(&self, row: &[f32]) -> f64 {
        self.meta
            .margin
            .as_ref()
            .map_or(0.0, |m| m.eval(&self.margin_idx, row))
    }

    /// The volatility forecast of a raw output before the scale factor and the floor.
    fn unscaled(&self, raw: f64, row: &[f32]) -> f64 {
        let l = self.margin_of(row);
        match (
            self.meta.transform,
            exponent(self.meta.transform, self.meta.power),
        ) {
            (_, Some(k)) => raw.max(0.0).powf(1.0 / k) / PERCENT * l.exp(),
            (TargetTransform::Log, None) => (raw + l).exp(),
            (_, None) => raw,
        }
    }

    /// Map a raw output for the feature row `row` to a floored volatility.
    pub fn to_volatility(&self, raw: f64, row: &[f32]) -> f64 {
        let v = self.unscaled(raw, row) * self.meta.smearing;
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
            .enumerate()
            .map(|(r, v)| self.to_volatility(v, &x.values[r * x.n_cols..(r + 1) * x.n_cols]))
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
        Ok(self.to_volatility(f64::from(raw), row))
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

    /// Load from XGBoost-format bytes (JSON or UBJ, detected) and metadata; refuses a signal
    /// model's metadata (use [`Model::from_parts`] to load either).
    pub fn from_parts(booster_bytes: &[u8], meta: ModelMeta) -> Result<Self, ModelError> {
        if meta.task != Task::Volatility {
            return Err(ModelError::Task {
                found: meta.task.as_str(),
                expected: Task::Volatility.as_str(),
            });
        }
        let booster = decode(booster_bytes)?;
        let margin_idx = match &meta.margin {
            Some(m) => positions(&meta.features, &m.terms, "the model's margin")?,
            None => Vec::new(),
        };
        Ok(Self {
            booster,
            meta,
            margin_idx,
        })
    }

    pub fn meta_json(&self) -> Result<Vec<u8>, ModelError> {
        Ok(serde_json::to_vec_pretty(&self.meta)?)
    }
}

/// Decode XGBoost JSON or UBJSON bytes (detected).
fn decode(booster_bytes: &[u8]) -> Result<BoostedModel, ModelError> {
    let format = if booster_bytes.first() == Some(&b'{')
        && booster_bytes
            .get(1)
            .is_some_and(|b| b.is_ascii_whitespace() || *b == b'"')
    {
        ModelFormat::XgboostJson
    } else {
        ModelFormat::XgboostUbjson
    };
    BoostedModel::decode(booster_bytes, format).map_err(ModelError::Load)
}

/// The Buy/Hold/Sell model: XGBoost's `multi:softprob` over 3 classes in the order of
/// [`Signal::index`] (0 sell, 1 hold, 2 buy). `Booster.predict` in Python returns the same
/// `n × 3` probabilities as [`SignalModel::predict_proba`].
#[derive(Debug, Clone)]
pub struct SignalModel {
    booster: BoostedModel,
    pub meta: ModelMeta,
}

/// The booster's class count.
pub const NUM_CLASS: usize = 3;

impl SignalModel {
    /// Train on `train` rows and labels with early stopping on the validation `mlogloss`.
    /// `train.xgboost` is used as given except `objective` (`multi:softprob`), `num_class` (3)
    /// and `eval_metric` (`mlogloss`), which the task fixes.
    pub fn train(
        p: &TrainParams,
        sp: &SignalParams,
        features: &[String],
        train: (&Rows, &[Signal]),
        valid: (&Rows, &[Signal]),
    ) -> Result<(Self, History), ModelError> {
        let (xt, yt) = train;
        let (xv, yv) = valid;
        for (x, y) in [(xt, yt), (xv, yv)] {
            if x.n_rows != y.len() {
                return Err(ModelError::Labels {
                    rows: x.n_rows,
                    labels: y.len(),
                });
            }
        }
        if xt.n_rows == 0 || xv.n_rows == 0 {
            return Err(ModelError::NoData(format!(
                "{} training and {} validation rows with a signal label",
                xt.n_rows, xv.n_rows
            )));
        }
        #[allow(clippy::cast_precision_loss)]
        let codes = |y: &[Signal]| -> Vec<f32> { y.iter().map(|s| s.index() as f32).collect() };
        let mut xgb = p.xgboost.clone();
        xgb.insert("objective".to_owned(), "multi:softprob".into());
        xgb.insert("num_class".to_owned(), serde_json::json!(NUM_CLASS));
        xgb.insert("eval_metric".to_owned(), "mlogloss".into());
        let params = TrainingParams::from_xgboost(xgb.clone()).map_err(ModelError::Params)?;
        let dtrain = xt
            .dmatrix()
            .and_then(|d| d.with_labels(&codes(yt)))
            .map_err(ModelError::Train)?;
        let dvalid = xv
            .dmatrix()
            .and_then(|d| d.with_labels(&codes(yv)))
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
            task: Task::Signal,
            signal: Some(SignalMeta {
                classes: rps_core::signal::class_names(),
                horizon: sp.horizon,
                threshold: sp.threshold,
            }),
            features: features.to_vec(),
            // Not used by a signal model: no transform, scale, margin or floor.
            transform: TargetTransform::Identity,
            power: None,
            smearing: 1.0,
            margin: None,
            selection: None,
            floor: 0.0,
            // The first class's intercept (margin space); the booster file holds all three.
            base_score: f64::from(booster.base_score()),
            best_iteration: booster.best_iteration(),
            num_trees: booster.num_boost_rounds(),
            engine: ENGINE.to_owned(),
            xgboost_params: xgb,
        };
        let model = Self { booster, meta };
        model.check_width()?;
        Ok((model, history))
    }

    fn check_width(&self) -> Result<(), ModelError> {
        let got = self.booster.prediction_width();
        if got == NUM_CLASS {
            Ok(())
        } else {
            Err(ModelError::Classes { got })
        }
    }

    /// Class probabilities (sell, hold, buy) of each row; each row sums to 1.
    pub fn predict_proba(&self, x: &Rows) -> Result<Vec<[f64; NUM_CLASS]>, ModelError> {
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
        Ok(p.as_slice()
            .chunks_exact(NUM_CLASS)
            .map(|c| [f64::from(c[0]), f64::from(c[1]), f64::from(c[2])])
            .collect())
    }

    /// One row's probabilities, allocation-free in the engine (the serving path).
    pub fn predict_proba_one(&self, row: &[f32]) -> Result<[f64; NUM_CLASS], ModelError> {
        if row.len() != self.meta.features.len() {
            return Err(ModelError::Width {
                got: row.len(),
                expected: self.meta.features.len(),
            });
        }
        let mut out = [0.0f32; NUM_CLASS];
        self.booster
            .predict_row_into(row, Iterations::Best, &mut out)
            .map_err(ModelError::Predict)?;
        Ok(out.map(f64::from))
    }

    /// The most probable class of each row.
    pub fn predict(&self, x: &Rows) -> Result<Vec<Signal>, ModelError> {
        Ok(self
            .predict_proba(x)?
            .iter()
            .map(|p| rps_core::signal::argmax(p))
            .collect())
    }

    /// Gain-based feature importance by feature name (summed over the classes' trees).
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

    /// Load from XGBoost-format bytes (JSON or UBJ, detected) and metadata; refuses a
    /// volatility model's metadata and a booster without 3 class outputs.
    pub fn from_parts(booster_bytes: &[u8], meta: ModelMeta) -> Result<Self, ModelError> {
        if meta.task != Task::Signal {
            return Err(ModelError::Task {
                found: meta.task.as_str(),
                expected: Task::Signal.as_str(),
            });
        }
        let model = Self {
            booster: decode(booster_bytes)?,
            meta,
        };
        model.check_width()?;
        Ok(model)
    }

    pub fn meta_json(&self) -> Result<Vec<u8>, ModelError> {
        Ok(serde_json::to_vec_pretty(&self.meta)?)
    }
}

/// A registry version's model, whichever task it was trained for (`meta.json`'s `task`).
#[derive(Debug, Clone)]
pub enum Model {
    Volatility(VolatilityModel),
    Signal(SignalModel),
}

/// One row's forecast by a [`Model`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Forecast {
    /// Next-bar volatility (the target's units, floored).
    Volatility(f64),
    /// The most probable class and the probabilities of (sell, hold, buy).
    Signal {
        signal: Signal,
        probabilities: [f64; NUM_CLASS],
    },
}

impl From<Forecast> for rps_core::forecast::Prediction {
    fn from(f: Forecast) -> Self {
        match f {
            Forecast::Volatility(v) => Self::Volatility(v),
            Forecast::Signal {
                signal,
                probabilities,
            } => Self::Signal {
                signal,
                probabilities,
            },
        }
    }
}

impl Forecast {
    /// Whether every number in it is finite.
    pub fn is_finite(&self) -> bool {
        match self {
            Self::Volatility(v) => v.is_finite(),
            Self::Signal { probabilities, .. } => probabilities.iter().all(|p| p.is_finite()),
        }
    }
}

impl Model {
    /// Load from XGBoost-format bytes and metadata, as a volatility or a signal model according
    /// to `meta.task`.
    pub fn from_parts(booster_bytes: &[u8], meta: ModelMeta) -> Result<Self, ModelError> {
        Ok(match meta.task {
            Task::Volatility => Self::Volatility(VolatilityModel::from_parts(booster_bytes, meta)?),
            Task::Signal => Self::Signal(SignalModel::from_parts(booster_bytes, meta)?),
        })
    }

    pub fn meta(&self) -> &ModelMeta {
        match self {
            Self::Volatility(m) => &m.meta,
            Self::Signal(m) => &m.meta,
        }
    }

    pub fn task(&self) -> Task {
        self.meta().task
    }

    /// One row (values in `meta().features` order).
    pub fn predict_one(&self, row: &[f32]) -> Result<Forecast, ModelError> {
        Ok(match self {
            Self::Volatility(m) => Forecast::Volatility(m.predict_one(row)?),
            Self::Signal(m) => {
                let probabilities = m.predict_proba_one(row)?;
                Forecast::Signal {
                    signal: rps_core::signal::argmax(&probabilities),
                    probabilities,
                }
            }
        })
    }

    /// The volatility model, or [`ModelError::Task`] for a signal model.
    pub fn into_volatility(self) -> Result<VolatilityModel, ModelError> {
        match self {
            Self::Volatility(m) => Ok(m),
            Self::Signal(m) => Err(ModelError::Task {
                found: m.meta.task.as_str(),
                expected: Task::Volatility.as_str(),
            }),
        }
    }

    /// The signal model, or [`ModelError::Task`] for a volatility model.
    pub fn into_signal(self) -> Result<SignalModel, ModelError> {
        match self {
            Self::Signal(m) => Ok(m),
            Self::Volatility(m) => Err(ModelError::Task {
                found: m.meta.task.as_str(),
                expected: Task::Signal.as_str(),
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
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
            TargetTransform::Power,
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

    /// Rows whose log volatility is linear in column 0 (a log-volatility feature) plus a bump
    /// in column 1, with column 0 drawn from `[lo, hi]`.
    fn log_linear(n: usize, seed: u64, lo: f64, hi: f64) -> (Rows, Vec<f64>) {
        let (x, _) = data(n, seed);
        let mut values = x.values.clone();
        let mut y = Vec::new();
        for r in 0..n {
            // `data` draws from [-1, 0).
            let u = f64::from(values[r * 3]) + 1.0;
            let l = lo + (hi - lo) * u;
            #[allow(clippy::cast_possible_truncation)]
            {
                values[r * 3] = l as f32;
            }
            let bump = if values[r * 3 + 1] > -0.5 { 0.3 } else { 0.0 };
            y.push((0.9 * l - 0.4 + bump).exp());
        }
        (
            Rows {
                values,
                n_rows: n,
                n_cols: 3,
            },
            y,
        )
    }

    #[test]
    fn a_base_margin_extrapolates_and_round_trips() {
        let names: Vec<String> = ["lv", "b", "c"].map(str::to_owned).to_vec();
        // Training levels ln σ in [-6, -4]; the test level -8 was never seen.
        let (xt, yt) = log_linear(800, 1, -6.0, -4.0);
        let (xv, yv) = log_linear(200, 2, -6.0, -4.0);
        let (xs, ys) = log_linear(200, 3, -8.0, -7.5);
        for transform in [
            TargetTransform::Log,
            TargetTransform::Variance,
            TargetTransform::Power,
        ] {
            let mut p = TrainParams {
                target_transform: transform,
                num_boost_round: 300,
                early_stopping_rounds: 20,
                calibration: Calibration::None,
                ..TrainParams::default()
            };
            p.xgboost.insert("eta".to_owned(), serde_json::json!(0.1));
            let (plain, _) =
                VolatilityModel::train(&p, &names, 1e-6, (&xt, &yt), (&xv, &yv)).unwrap();
            p.base_margin = vec!["lv".to_owned()];
            let (m, _) = VolatilityModel::train(&p, &names, 1e-6, (&xt, &yt), (&xv, &yv)).unwrap();
            let coef = &m.meta.margin.as_ref().unwrap().coefficients;
            assert!(
                (coef[1] - 0.9).abs() < 0.05,
                "{transform:?}: slope {coef:?}"
            );
            let log_err = |pred: &[f64]| {
                pred.iter()
                    .zip(&ys)
                    .map(|(a, b)| (a.ln() - b.ln()).abs())
                    .sum::<f64>()
                    / ys.len() as f64
            };
            let (with, without) = (
                log_err(&m.predict(&xs).unwrap()),
                log_err(&plain.predict(&xs).unwrap()),
            );
            assert!(
                with < 0.1 && without > 1.0,
                "{transform:?}: mean |log error| {with} with the margin, {without} without"
            );
            // The documented mapping from the raw output (what XGBoost's predict returns).
            let raw = m.predict_raw(&xs).unwrap();
            let pred = m.predict(&xs).unwrap();
            for r in 0..5 {
                let l = coef[0] + coef[1] * f64::from(xs.values[r * 3]);
                let want = match transform {
                    TargetTransform::Log => (raw[r] + l).exp(),
                    TargetTransform::Power => raw[r] / 100.0 * l.exp(), // k = 1
                    _ => raw[r].sqrt() / 100.0 * l.exp(),
                } * m.meta.smearing;
                assert!((pred[r] - want).abs() < 1e-9 * want, "{transform:?}");
            }
            let meta: ModelMeta = serde_json::from_slice(&m.meta_json().unwrap()).unwrap();
            let back = VolatilityModel::from_parts(&m.to_xgboost_json().unwrap(), meta).unwrap();
            assert_eq!(back.predict(&xs).unwrap(), pred);
            let one = m.predict_one(&xs.values[..3]).unwrap();
            assert!((one - pred[0]).abs() < 1e-6 * pred[0]);
        }
    }

    #[test]
    fn the_power_grid_keeps_the_most_qlike_minded_exponent_that_holds_log_accuracy() {
        let names: Vec<String> = ["lv", "b", "c"].map(str::to_owned).to_vec();
        let (xt, yt) = log_linear(800, 1, -6.0, -4.0);
        let (xv, yv) = log_linear(200, 2, -6.0, -4.0);
        let mut p = TrainParams {
            target_transform: TargetTransform::Power,
            power_grid: vec![2.0, 0.5, 1.0],
            num_boost_round: 100,
            early_stopping_rounds: 20,
            calibration: Calibration::None,
            ..TrainParams::default()
        };
        assert!(matches!(
            VolatilityModel::train(&p, &names, 1e-6, (&xt, &yt), (&xv, &yv)),
            Err(ModelError::GridWithoutMargin)
        ));
        p.base_margin = vec!["lv".to_owned()];
        let (m, _) = VolatilityModel::train(&p, &names, 1e-6, (&xt, &yt), (&xv, &yv)).unwrap();
        let sel = m.meta.selection.clone().unwrap();
        let powers: Vec<f64> = sel.candidates.iter().map(|c| c.power).collect();
        assert_eq!(powers, [0.5, 1.0, 2.0], "tried in increasing order");
        let ok: Vec<f64> = sel
            .candidates
            .iter()
            .filter(|c| c.validation_r2_log >= sel.benchmark_r2_log)
            .map(|c| c.power)
            .collect();
        // Noise-free data: the trees add the bump, so every exponent beats the linear base.
        assert_eq!(ok.len(), 3, "{sel:?}");
        assert_eq!(m.meta.power, Some(2.0));
        let meta: ModelMeta = serde_json::from_slice(&m.meta_json().unwrap()).unwrap();
        assert_eq!(meta, m.meta);
        p.power = 3.0;
        p.power_grid.clear();
        assert!(matches!(
            VolatilityModel::train(&p, &names, 1e-6, (&xt, &yt), (&xv, &yv)),
            Err(ModelError::Power(_))
        ));
    }

    #[test]
    fn calibration_scales_to_validation() {
        let (xt, yt) = data(800, 1);
        let (xv, yv) = data(200, 2);
        let names: Vec<String> = ["a", "b", "c"].map(str::to_owned).to_vec();
        let mut p = TrainParams {
            num_boost_round: 50,
            ..TrainParams::default()
        };
        let mut fits = Vec::new();
        for c in [Calibration::None, Calibration::Duan, Calibration::Qlike] {
            p.calibration = c;
            let (m, _) = VolatilityModel::train(&p, &names, 1e-4, (&xt, &yt), (&xv, &yv)).unwrap();
            fits.push(m);
        }
        assert_eq!(fits[0].meta.smearing, 1.0);
        let base = fits[0].predict(&xv).unwrap();
        let duan = yv.iter().zip(&base).map(|(y, h)| y / h).sum::<f64>() / yv.len() as f64;
        let q = (yv
            .iter()
            .zip(&base)
            .map(|(y, h)| (y / h).powi(2))
            .sum::<f64>()
            / yv.len() as f64)
            .sqrt();
        assert!((fits[1].meta.smearing - duan).abs() < 1e-9);
        assert!((fits[2].meta.smearing - q).abs() < 1e-9);
        assert!(
            q >= duan,
            "Jensen: the variance scale is at least the volatility one"
        );
        // The QLIKE scale minimises validation QLIKE over scale factors.
        let qlike = |m: &VolatilityModel, k: f64| {
            let pred = m.predict(&xv).unwrap();
            yv.iter()
                .zip(&pred)
                .map(|(y, h)| rps_core::metrics::qlike_one(*y, h * k))
                .sum::<f64>()
        };
        for k in [0.9, 1.1] {
            assert!(qlike(&fits[2], 1.0) < qlike(&fits[2], k));
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

    #[test]
    fn a_signal_model_learns_three_classes_and_round_trips() {
        let names: Vec<String> = ["a", "b", "c"].map(str::to_owned).to_vec();
        let classes = |x: &Rows| -> Vec<Signal> {
            (0..x.n_rows)
                .map(|r| match x.values[r * 3] {
                    v if v > 0.3 => Signal::Buy,
                    v if v < -0.3 => Signal::Sell,
                    _ => Signal::Hold,
                })
                .collect()
        };
        let (xt, _) = data(900, 1);
        let (xv, _) = data(300, 2);
        let (yt, yv) = (classes(&xt), classes(&xv));
        let mut p = TrainParams {
            num_boost_round: 200,
            early_stopping_rounds: 20,
            ..TrainParams::default()
        };
        p.xgboost.insert("eta".to_owned(), serde_json::json!(0.3));
        let sp = SignalParams::default();
        let (m, h) = SignalModel::train(&p, &sp, &names, (&xt, &yt), (&xv, &yv)).unwrap();
        assert_eq!(h.metric, "mlogloss");
        assert!(h.validation.last().unwrap() < h.validation.first().unwrap());
        let proba = m.predict_proba(&xv).unwrap();
        assert_eq!(proba.len(), xv.n_rows);
        for row in &proba {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-5, "{row:?}");
        }
        let pred = m.predict(&xv).unwrap();
        let s = rps_core::signal::score(&yv, &pred);
        assert!(s.accuracy > 0.9, "{s:?}");
        assert_eq!(m.meta.task, Task::Signal);
        assert_eq!(
            m.meta.signal.as_ref().unwrap().classes,
            ["sell", "hold", "buy"]
        );
        let meta: ModelMeta = serde_json::from_slice(&m.meta_json().unwrap()).unwrap();
        assert_eq!(meta, m.meta);
        for bytes in [m.to_xgboost_json().unwrap(), m.to_xgboost_ubj().unwrap()] {
            let back = SignalModel::from_parts(&bytes, meta.clone()).unwrap();
            assert_eq!(back.predict_proba(&xv).unwrap(), proba);
        }
        let one = m.predict_proba_one(&xv.values[..3]).unwrap();
        assert_eq!(one, proba[0]);
        assert!(matches!(
            SignalModel::train(&p, &sp, &names, (&xt, &yt[1..]), (&xv, &yv)),
            Err(ModelError::Labels { .. })
        ));
        // A volatility model's files are refused, and its meta.json does not change.
        let (vm, _) = VolatilityModel::train(
            &TrainParams {
                num_boost_round: 5,
                ..TrainParams::default()
            },
            &names,
            1e-4,
            (&xt, &vec![0.01; xt.n_rows]),
            (&xv, &vec![0.01; xv.n_rows]),
        )
        .unwrap();
        assert!(matches!(
            SignalModel::from_parts(&vm.to_xgboost_json().unwrap(), vm.meta.clone()),
            Err(ModelError::Task { .. })
        ));
        let text = String::from_utf8(vm.meta_json().unwrap()).unwrap();
        assert!(
            !text.contains("\"task\"") && !text.contains("\"signal\""),
            "{text}"
        );
        // ... and the other way round; `Model` loads either by its meta.json.
        let sbytes = m.to_xgboost_ubj().unwrap();
        assert!(matches!(
            VolatilityModel::from_parts(&sbytes, m.meta.clone()),
            Err(ModelError::Task { .. })
        ));
        let any = Model::from_parts(&sbytes, m.meta.clone()).unwrap();
        assert_eq!(any.task(), Task::Signal);
        assert_eq!(
            any.predict_one(&xv.values[..3]).unwrap(),
            Forecast::Signal {
                signal: rps_core::signal::argmax(&proba[0]),
                probabilities: proba[0],
            }
        );
        assert!(any.clone().into_volatility().is_err());
        assert!(any.into_signal().is_ok());
        let any = Model::from_parts(&vm.to_xgboost_ubj().unwrap(), vm.meta.clone()).unwrap();
        assert_eq!(
            any.predict_one(&xv.values[..3]).unwrap(),
            Forecast::Volatility(vm.predict_one(&xv.values[..3]).unwrap())
        );
        assert!(any.into_signal().is_err());
    }
}
