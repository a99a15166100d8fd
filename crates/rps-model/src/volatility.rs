//! The volatility model: training (transforms, power grid, margin, calibration), saving and
//! prediction.

use crate::*;
use rps_core::distribution::VolatilityForecast;
use rps_core::params::{Calibration, TargetTransform, Task, TrainParams};
use std::collections::BTreeMap;
use std::num::NonZeroUsize;

/// A trained volatility model.
#[derive(Debug, Clone)]
pub struct VolatilityModel {
    booster: BoostedModel,
    pub meta: ModelMeta,
    /// Positions of the margin terms among the features.
    margin_idx: Vec<usize>,
    /// The distribution (`train.quantiles`), if trained with one.
    quantiles: Option<Box<QuantileBooster>>,
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
    ///
    /// With `train.quantiles`, a quantile booster is then trained on ln σ over the chosen mean
    /// model's base margin and calibrated on `valid` ([`QuantileBooster`]).
    pub fn train(
        p: &TrainParams,
        features: &[String],
        floor: f64,
        train: (&Rows, &[f64]),
        valid: (&Rows, &[f64]),
    ) -> Result<(Self, History), ModelError> {
        let (mut model, history) = Self::train_mean(p, features, floor, train, valid)?;
        if !p.quantiles.is_empty() {
            let margin = |row: &[f32]| model.margin_of(row);
            let q = QuantileBooster::train(
                p,
                floor,
                &margin,
                model.meta.margin.is_some(),
                train,
                valid,
            )?;
            model.meta.quantiles = Some(q.meta.clone());
            model.quantiles = Some(Box::new(q));
        }
        Ok((model, history))
    }

    fn train_mean(
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
            quantiles: None,
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
            quantiles: None,
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

    /// HAR-RV's level forecast from the base margin, `exp(L) · smearing` floored as every
    /// forecast is (the `har_rv` baseline the stream scores online); `None` for a model without
    /// a margin or saved before the margin's smearing was recorded.
    pub fn har_rv_of(&self, row: &[f32]) -> Option<f64> {
        let m = self.meta.margin.as_ref()?;
        let s = m.smearing?;
        let v = (m.eval(&self.margin_idx, row).exp() * s).max(self.meta.floor);
        Some(if v.is_finite() { v } else { self.meta.floor })
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

    /// Forecasts with the distribution (when the model has one) for a block of rows.
    pub fn forecast(&self, x: &Rows) -> Result<Vec<VolatilityForecast>, ModelError> {
        let mean = self.predict(x)?;
        let Some(q) = &self.quantiles else {
            return Ok(mean.into_iter().map(VolatilityForecast::point).collect());
        };
        let raw = q.predict_raw(x)?;
        let k = q.meta.levels.len();
        Ok(mean
            .into_iter()
            .enumerate()
            .map(|(r, m)| {
                let row = &x.values[r * x.n_cols..(r + 1) * x.n_cols];
                VolatilityForecast {
                    mean: m,
                    quantiles: Some(q.to_quantiles(
                        &raw[r * k..(r + 1) * k],
                        self.margin_of(row),
                        self.meta.floor,
                    )),
                }
            })
            .collect())
    }

    /// One row's forecast with the distribution (the serving path).
    pub fn forecast_one(&self, row: &[f32]) -> Result<VolatilityForecast, ModelError> {
        let mean = self.predict_one(row)?;
        let quantiles = match &self.quantiles {
            Some(q) => {
                Some(q.to_quantiles(&q.predict_row(row)?, self.margin_of(row), self.meta.floor))
            }
            None => None,
        };
        Ok(VolatilityForecast { mean, quantiles })
    }

    /// The quantile booster, if the model has a distribution.
    pub fn quantile_booster(&self) -> Option<&QuantileBooster> {
        self.quantiles.as_deref()
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
    pub fn from_parts(
        booster_bytes: &[u8],
        quantile_bytes: Option<&[u8]>,
        meta: ModelMeta,
    ) -> Result<Self, ModelError> {
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
        let quantiles = match (&meta.quantiles, quantile_bytes) {
            (Some(q), Some(bytes)) => {
                Some(Box::new(QuantileBooster::from_parts(bytes, q.clone())?))
            }
            (Some(_), None) => return Err(ModelError::QuantileMissing(QUANTILE_UBJ)),
            (None, _) => None,
        };
        Ok(Self {
            booster,
            meta,
            margin_idx,
            quantiles,
        })
    }

    pub fn meta_json(&self) -> Result<Vec<u8>, ModelError> {
        Ok(serde_json::to_vec_pretty(&self.meta)?)
    }
}
