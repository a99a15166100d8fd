//! The model crate's one error type.

use hessboost::prelude::*;

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
        "the quantile booster predicts {outputs} values per row, its metadata lists {levels} levels"
    )]
    QuantileShape { outputs: usize, levels: usize },
    #[error("meta.json lists quantile levels but the version has no quantile booster ({0})")]
    QuantileMissing(&'static str),
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
            Self::Load(_)
                | Self::Meta(_)
                | Self::Task { .. }
                | Self::Classes { .. }
                | Self::QuantileShape { .. }
                | Self::QuantileMissing(_)
        )
    }
}
