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
use rps_core::distribution::VolatilityForecast;
use rps_core::params::Task;
use rps_core::signal::Signal;

/// The `variance` transform learns `(100 σ)²`, the variance of returns in percent: hourly
/// variances near 1e-5 sit too close to the engine's numerical floors for a gamma fit.
pub const PERCENT: f64 = 100.0;

/// The engine name and version recorded with every model.
pub const ENGINE: &str = "hessboost 0.4.6";

/// File names of a saved model.
pub const XGB_JSON: &str = "model.json";
pub const XGB_UBJ: &str = "model.ubj";
pub const META: &str = "meta.json";

mod error;
mod meta;
mod quantile;
mod rows;
mod signal;
mod volatility;

pub use error::ModelError;
pub use meta::*;
pub use quantile::*;
pub use rows::*;
pub use signal::*;
pub use volatility::*;

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

/// A registry version's model, whichever task it was trained for (`meta.json`'s `task`).
#[derive(Debug, Clone)]
pub enum Model {
    Volatility(VolatilityModel),
    Signal(SignalModel),
}

/// One row's forecast by a [`Model`].
#[derive(Debug, Clone, PartialEq)]
pub enum Forecast {
    /// Next-bar volatility (the target's units, floored): the mean and, for a model with a
    /// quantile booster, the distribution.
    Volatility(VolatilityForecast),
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
    /// `quantile_bytes` is the quantile booster (`quantiles.ubj`) of a version that has one.
    pub fn from_parts(
        booster_bytes: &[u8],
        quantile_bytes: Option<&[u8]>,
        meta: ModelMeta,
    ) -> Result<Self, ModelError> {
        Ok(match meta.task {
            Task::Volatility => Self::Volatility(VolatilityModel::from_parts(
                booster_bytes,
                quantile_bytes,
                meta,
            )?),
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
            Self::Volatility(m) => Forecast::Volatility(m.forecast_one(row)?),
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
mod tests;
