//! The typed form of `params.yaml`: every knob a stage reads. Unknown keys are refused (a typo
//! is an error, not a silent default). Reading the file is the caller's business.

use crate::candle::Interval;
use crate::features::{FeatureParams, TargetParams};
use crate::quality::QualityParams;
use crate::split::SplitParams;
use crate::synthetic::SyntheticParams;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The whole parameter file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub data: DataParams,
    pub quality: QualityParams,
    pub features: FeatureParams,
    pub target: TargetParams,
    pub split: SplitParams,
    pub train: TrainParams,
    pub evaluate: EvaluateParams,
}

/// Where the market data comes from (`data:`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataParams {
    /// `file`, `binance`, `coincap` or `synthetic`.
    pub source: SourceKind,
    /// Dataset name used in storage keys, e.g. `BTC-USD`.
    pub symbol: String,
    /// Bar interval fetched from the source.
    pub interval: Interval,
    /// Bar interval the model works on (≥ `interval`; finer sources are resampled and give
    /// realized volatility).
    pub bar: Interval,
    /// First bar wanted, RFC 3339 (inclusive). Required for API sources without existing data.
    pub start: Option<String>,
    /// End of the window, RFC 3339 (exclusive); `null` means now.
    pub end: Option<String>,
    pub file: FileSourceParams,
    pub binance: BinanceParams,
    pub coincap: CoinCapParams,
    pub synthetic: SyntheticParams,
}

impl Default for DataParams {
    fn default() -> Self {
        Self {
            source: SourceKind::File,
            symbol: "BTC-USD".to_owned(),
            interval: Interval::H1,
            bar: Interval::H1,
            start: None,
            end: None,
            file: FileSourceParams::default(),
            binance: BinanceParams::default(),
            coincap: CoinCapParams::default(),
            synthetic: SyntheticParams::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    File,
    Binance,
    Coincap,
    Synthetic,
}

/// CSV or Parquet import (`data.file:`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSourceParams {
    /// Path of the CSV or Parquet file.
    pub path: String,
    /// `csv`, `parquet`, or `auto` (by extension).
    pub format: String,
    /// Column names in the file for each OHLCV field.
    pub columns: ColumnMapping,
    /// `auto` (RFC 3339, `YYYY-MM-DD HH:MM[:SS]`, or epoch s/ms by magnitude), `rfc3339`,
    /// `unix_s`, `unix_ms`, or a chrono format string such as `%Y-%m-%d %H:%M:%S` (UTC).
    pub timestamp_format: String,
}

impl Default for FileSourceParams {
    fn default() -> Self {
        Self {
            path: "data/sample/btc_usd_1h_coinbase_2018.csv".to_owned(),
            format: "auto".to_owned(),
            columns: ColumnMapping::default(),
            timestamp_format: "auto".to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ColumnMapping {
    pub timestamp: String,
    pub open: String,
    pub high: String,
    pub low: String,
    pub close: String,
    pub volume: String,
}

impl Default for ColumnMapping {
    fn default() -> Self {
        Self {
            timestamp: "timestamp_utc".to_owned(),
            open: "open".to_owned(),
            high: "high".to_owned(),
            low: "low".to_owned(),
            close: "close".to_owned(),
            volume: "volume_btc".to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BinanceParams {
    pub base_url: String,
    /// Binance's symbol, e.g. `BTCUSDT`.
    pub symbol: String,
}

impl Default for BinanceParams {
    fn default() -> Self {
        Self {
            base_url: "https://api.binance.com".to_owned(),
            symbol: "BTCUSDT".to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoinCapParams {
    pub base_url: String,
    /// `candles` (OHLCV from one exchange) or `history` (close-only index price).
    pub mode: String,
    /// Asset slug, e.g. `bitcoin`.
    pub slug: String,
    pub exchange: String,
    pub quote_id: String,
}

impl Default for CoinCapParams {
    fn default() -> Self {
        Self {
            base_url: "https://rest.coincap.io/v3".to_owned(),
            mode: "candles".to_owned(),
            slug: "bitcoin".to_owned(),
            exchange: "binance".to_owned(),
            quote_id: "tether".to_owned(),
        }
    }
}

/// How the model learns the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetTransform {
    /// Fit `ln σ` with squared error; predict `exp(ŷ)` times a smearing factor from validation.
    Log,
    /// Fit `σ²` with a gamma objective (QLIKE-consistent); predict `sqrt(ŷ)`.
    Variance,
    /// Fit `σ` directly.
    Identity,
}

/// Training knobs (`train:`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainParams {
    /// Registered model name.
    pub model_name: String,
    pub target_transform: TargetTransform,
    pub num_boost_round: usize,
    /// Stop when the validation loss has not improved for this many rounds.
    pub early_stopping_rounds: usize,
    /// XGBoost hyper-parameters by XGBoost's own names, passed through unchanged.
    pub xgboost: BTreeMap<String, serde_json::Value>,
}

impl Default for TrainParams {
    fn default() -> Self {
        let xgboost = [
            ("objective", serde_json::json!("reg:squarederror")),
            ("eta", serde_json::json!(0.03)),
            ("max_depth", serde_json::json!(4)),
            ("min_child_weight", serde_json::json!(20)),
            ("subsample", serde_json::json!(0.8)),
            ("colsample_bytree", serde_json::json!(0.8)),
            ("lambda", serde_json::json!(1.0)),
            ("tree_method", serde_json::json!("hist")),
            ("seed", serde_json::json!(42)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Self {
            model_name: "btc-volatility".to_owned(),
            target_transform: TargetTransform::Log,
            num_boost_round: 2000,
            early_stopping_rounds: 100,
            xgboost,
        }
    }
}

/// Metrics a promotion can be decided on (lower is better for all but the R² ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrimaryMetric {
    Qlike,
    Rmse,
    Mae,
    R2Log,
}

/// Evaluation knobs (`evaluate:`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluateParams {
    /// EWMA decay (RiskMetrics uses 0.94).
    pub ewma_lambda: f64,
    /// HAR-RV regressors: feature columns (log RMS volatility over windows).
    pub har_terms: Vec<String>,
    /// Metric the champion/challenger decision uses.
    pub primary_metric: PrimaryMetric,
    /// Required relative improvement of the primary metric over the champion's, on the same
    /// test span, for the challenger to be promoted (0.01 = 1 %).
    pub promotion_margin: f64,
    /// Walk-forward folds (0 turns walk-forward off).
    pub walk_forward_folds: usize,
    /// Newey–West lags of the Diebold–Mariano test.
    pub dm_lags: usize,
}

impl Default for EvaluateParams {
    fn default() -> Self {
        Self {
            ewma_lambda: 0.94,
            har_terms: vec![
                "har_1b".to_owned(),
                "har_24b".to_owned(),
                "har_168b".to_owned(),
            ],
            primary_metric: PrimaryMetric::Qlike,
            promotion_margin: 0.0,
            walk_forward_folds: 0,
            dm_lags: 24,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults_and_typos_are_refused() {
        let p: Params = serde_yaml::from_str("{}").unwrap();
        assert_eq!(p, Params::default());
        let err = serde_yaml::from_str::<Params>("split:\n  trian: 0.5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `trian`"), "{err}");
        let p: Params =
            serde_yaml::from_str("data:\n  interval: 30m\ntrain:\n  xgboost:\n    max_depth: 3\n")
                .unwrap();
        assert_eq!(p.data.interval, Interval::M30);
        assert_eq!(p.train.xgboost["max_depth"], serde_json::json!(3));
    }
}
