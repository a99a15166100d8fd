//! The typed form of `params.yaml`: every knob a stage reads. Unknown keys are refused (a typo
//! is an error, not a silent default). Reading the file is the caller's business.

use crate::candle::Interval;
use crate::features::{FeatureParams, TargetParams};
use crate::quality::QualityParams;
use crate::signal::SignalParams;
use crate::split::SplitParams;
use crate::synthetic::SyntheticParams;
use crate::walkforward::Window;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The whole parameter file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub data: DataParams,
    /// Validated as it is read: a nonsensical threshold names its key.
    #[serde(deserialize_with = "crate::quality::deserialize_checked")]
    pub quality: QualityParams,
    pub features: FeatureParams,
    pub target: TargetParams,
    pub split: SplitParams,
    pub train: TrainParams,
    pub evaluate: EvaluateParams,
    /// The retraining loop's receiver (`rps alert-hook`).
    pub retrain: RetrainParams,
    /// Buy/Hold/Sell labels of the `signal` task.
    pub signal: SignalParams,
    pub stream: StreamParams,
    /// Online accuracy monitoring: the thresholds rps-serve exports beside the scores.
    pub monitor: MonitorParams,
}

/// Where the market data comes from (`data:`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataParams {
    /// `file`, `binance`, `coincap` or `synthetic`.
    pub source: SourceKind,
    /// Dataset name used in storage keys, e.g. `BTC-USD`: the one symbol when `symbols` is
    /// empty; with `symbols`, the one this run is for (set by the reader, not in the file).
    pub symbol: String,
    /// Several symbols: each symbol's settings that differ from this section (its `source`,
    /// `interval`, `file`, `binance`, `coincap`, span ...) and its registry names
    /// (`model_name`, `signal_model_name`), as written in params.yaml. `rps_cli` merges the entry
    /// of the symbol a run is for into this section and empties this (the set it hands a stage
    /// is that one symbol's, as if the file named only it); empty: `symbol` is the only symbol.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub symbols: BTreeMap<String, serde_json::Value>,
    /// Every symbol the file lists, in its order (set by `rps_cli` when it resolves `symbols`;
    /// empty: `symbol` alone). Not a key of params.yaml.
    #[serde(skip)]
    pub listed: Vec<String>,
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

impl DataParams {
    /// Every symbol the parameters list, in the file's order (`symbol` alone for one).
    pub fn symbol_names(&self) -> Vec<String> {
        if self.listed.is_empty() {
            vec![self.symbol.clone()]
        } else {
            self.listed.clone()
        }
    }

    /// Whether the parameters list more than one symbol (their stages then keep their
    /// candidate models and reports apart).
    pub fn is_multi_symbol(&self) -> bool {
        self.listed.len() > 1
    }
}

impl Default for DataParams {
    fn default() -> Self {
        Self {
            source: SourceKind::File,
            symbol: "BTC-USD".to_owned(),
            symbols: BTreeMap::new(),
            listed: Vec::new(),
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

/// Column names in the imported file (`data.file.columns`): the six OHLCV fields, required, and
/// the Binance klines' order-flow columns, optional. An unset optional key leaves the candles
/// without that column (`None`, as for Coinbase, CoinCap and ETH files); a set key naming a
/// column the file lacks is an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ColumnMapping {
    pub timestamp: String,
    pub open: String,
    pub high: String,
    pub low: String,
    pub close: String,
    pub volume: String,
    /// Quote-asset volume (Binance's `quote_asset_volume`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quote_volume: Option<String>,
    /// Number of trades (`number_of_trades`): whole numbers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trades: Option<String>,
    /// Taker-buy base-asset volume (`taker_buy_base_asset_volume`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taker_buy_volume: Option<String>,
    /// Taker-buy quote-asset volume (`taker_buy_quote_asset_volume`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taker_buy_quote_volume: Option<String>,
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
            quote_volume: None,
            trades: None,
            taker_buy_volume: None,
            taker_buy_quote_volume: None,
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
    /// Fit `σ^k` (`k` = `train.power`) with a gamma objective; predict `ŷ^(1/k)`: the power
    /// mean `E[σ^k]^(1/k)`, which moves from the geometric mean (k → 0, the log-accuracy
    /// optimum) through the mean volatility (k = 1) to the root mean variance (k = 2, the
    /// QLIKE optimum).
    Power,
    /// Fit `σ` directly.
    Identity,
}

/// How the forecast scale is calibrated on the validation split: the model's volatility
/// forecasts are multiplied by one factor estimated there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Calibration {
    /// No factor.
    None,
    /// Duan's (1983) smearing `mean(σ / σ̂)`: an unbiased volatility forecast.
    Duan,
    /// `sqrt(mean(σ² / σ̂²))`: the variance scale that minimises QLIKE on validation.
    Qlike,
}

/// How the quantile booster's levels are calibrated on the validation split
/// (`train.quantile_calibration`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuantileCalibration {
    /// The booster's quantiles as trained.
    None,
    /// Conformalized quantile regression, asymmetric (Romano, Patterson & Candès 2019, Thm 2):
    /// each level is shifted on the log scale by the conformal quantile of its validation
    /// residuals, so every level is covered as often as it says on exchangeable data, with the
    /// per-row widths the booster learned (adaptive to the volatility regime).
    Cqr,
}

/// What the train and evaluate stages learn and judge (`train.task`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Next-bar volatility (regression; the default).
    #[default]
    Volatility,
    /// Buy/Hold/Sell over `signal.horizon` bars (3-class classification, `multi:softprob`).
    Signal,
}

impl Task {
    pub fn is_volatility(&self) -> bool {
        *self == Self::Volatility
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Volatility => "volatility",
            Self::Signal => "signal",
        }
    }
}

/// The folder name of a pooled model's outputs (`models/pooled/candidate`,
/// `reports/pooled/`), beside the per-symbol folders; no symbol may take it in pooled mode.
pub const POOLED: &str = "pooled";

/// One model per symbol, or one model over every symbol (`train.pooling`, issue #20).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Each symbol trains, evaluates and registers its own model (the default).
    #[default]
    PerSymbol,
    /// One model trained on every listed symbol's rows stacked, with the symbol as a one-hot
    /// input (`symbol_<SYMBOL>`, [`crate::pooling`]); every symbol registers under the same
    /// `train.model_name`. Needs at least two symbols and the volatility task.
    Pooled,
}

impl Pooling {
    pub fn is_pooled(self) -> bool {
        self == Self::Pooled
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PerSymbol => "per_symbol",
            Self::Pooled => "pooled",
        }
    }
}

/// Training knobs (`train:`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainParams {
    /// `volatility` (default) or `signal`.
    pub task: Task,
    /// `per_symbol` (default) or `pooled`: one model over every symbol of `data.symbols`.
    pub pooling: Pooling,
    /// Registered model name of the volatility task.
    pub model_name: String,
    /// Registered model name of the signal task (a separate registry entry, so a signal model
    /// never becomes the volatility champion).
    pub signal_model_name: String,
    pub target_transform: TargetTransform,
    /// The exponent `k` of the `power` transform (0 < k ≤ 2).
    pub power: f64,
    /// Exponents to choose `k` from on validation (empty: use `power`): the largest whose
    /// validation R² on log volatility is at least that of the linear base margin alone.
    pub power_grid: Vec<f64>,
    /// Feature columns (log volatilities, e.g. the HAR terms) of a linear base margin: an OLS
    /// fit of `ln σ` on them over the training rows, from which the booster learns the
    /// correction. Empty for none. Trees cannot extrapolate, the linear margin can: it keeps
    /// forecasts right when volatility leaves the range seen in training.
    pub base_margin: Vec<String>,
    /// Forecast scale calibrated on validation.
    pub calibration: Calibration,
    pub num_boost_round: usize,
    /// Stop when the validation loss has not improved for this many rounds.
    pub early_stopping_rounds: usize,
    /// XGBoost hyper-parameters by XGBoost's own names, passed through unchanged. Without an
    /// `objective` the transform picks it: `reg:squarederror` for log and identity,
    /// `reg:gamma` for variance and power (for variance the QLIKE-consistent deviance).
    pub xgboost: BTreeMap<String, serde_json::Value>,
    /// Levels of the forecast distribution of σ (empty: a point forecast only). A second
    /// booster of the same model version learns them (`reg:quantileerror` on ln σ over the same
    /// base margin); the served `median` is the 0.5 level, which must be among them.
    pub quantiles: Vec<f64>,
    /// How the quantile levels are calibrated on the validation rows.
    pub quantile_calibration: QuantileCalibration,
    /// Overrides of `xgboost` for the quantile booster (its objective is always
    /// `reg:quantileerror` with `quantile_alpha` = `quantiles`).
    pub quantile_xgboost: BTreeMap<String, serde_json::Value>,
}

/// The distribution levels every forecast reports by default.
pub const DEFAULT_QUANTILES: [f64; 7] = [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95];

impl Default for TrainParams {
    fn default() -> Self {
        let xgboost = [
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
            task: Task::Volatility,
            pooling: Pooling::PerSymbol,
            model_name: "btc-volatility".to_owned(),
            signal_model_name: "btc-signal".to_owned(),
            target_transform: TargetTransform::Log,
            power: 1.0,
            power_grid: Vec::new(),
            base_margin: Vec::new(),
            calibration: Calibration::Duan,
            num_boost_round: 2000,
            early_stopping_rounds: 100,
            xgboost,
            quantiles: DEFAULT_QUANTILES.to_vec(),
            quantile_calibration: QuantileCalibration::Cqr,
            quantile_xgboost: BTreeMap::new(),
        }
    }
}

impl TrainParams {
    /// The registry name of the model `task` trains.
    pub fn registered_name(&self) -> &str {
        match self.task {
            Task::Volatility => &self.model_name,
            Task::Signal => &self.signal_model_name,
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
    /// Walk-forward folds (0 turns walk-forward off): the model is retrained at every fold and
    /// the report gains per-fold and pooled out-of-sample tables.
    pub walk_forward_folds: usize,
    /// Share of the usable rows, at the end of the data, that the walk-forward test blocks
    /// cover together.
    pub walk_forward_test_fraction: f64,
    /// RFC 3339 time where the walk-forward test blocks start (they cover every usable row from
    /// it on); overrides `walk_forward_test_fraction`. `None`: the fraction decides.
    pub walk_forward_test_start: Option<String>,
    /// `expanding` (all history) or `rolling` (as much history as the first fold has).
    pub walk_forward_window: Window,
    /// Newey–West lags of the Diebold–Mariano test.
    pub dm_lags: usize,
    /// Registry retention: after each evaluation, active versions beyond the newest
    /// `keep_versions` are archived unless an alias points at them (0 keeps everything).
    pub keep_versions: usize,
    /// The walk-forward acceptance rule: what "the model beats the baselines" means.
    pub acceptance: AcceptanceParams,
}

/// The walk-forward acceptance rule (`evaluate.acceptance:`), judged on the pooled
/// out-of-sample rows: the mean forecast against the best baseline on variance-scale losses,
/// the median against HAR-RV on the log scale, and the intervals' calibration and sharpness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AcceptanceParams {
    /// QLIKE of the mean at least this share below the best baseline's (0.10 = 10 %).
    pub qlike_gain: f64,
    /// MSE of σ² at most `(1 + mse_var_tolerance)` × the best baseline's (0: no worse).
    pub mse_var_tolerance: f64,
    /// R² (log) of the median at least this much above HAR-RV's best (level or log forecast).
    pub median_r2_log_gain: f64,
    /// Pooled coverage of the 80 % and 90 % intervals within this many points of nominal
    /// (0.02 = ±2 points).
    pub coverage_tolerance: f64,
    /// Coverage of the 80 % interval within this many points of nominal in each tercile of
    /// predicted volatility (calm / normal / turbulent).
    pub tercile_coverage_tolerance: f64,
    /// Interval score of the 80 % interval at least this share below HAR-RV's
    /// residual-quantile interval's.
    pub interval_score_gain: f64,
    /// `true`: a challenger whose walk-forward fails the rule is not promoted, whatever the
    /// champion comparison says. `false` (default): the rule is reported beside the decision.
    pub enforce: bool,
}

impl Default for AcceptanceParams {
    fn default() -> Self {
        Self {
            qlike_gain: 0.10,
            mse_var_tolerance: 0.0,
            median_r2_log_gain: 0.01,
            coverage_tolerance: 0.02,
            tercile_coverage_tolerance: 0.05,
            interval_score_gain: 0.05,
            enforce: false,
        }
    }
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
            walk_forward_test_fraction: 0.5,
            walk_forward_test_start: None,
            walk_forward_window: Window::Expanding,
            dm_lags: 24,
            keep_versions: 0,
            acceptance: AcceptanceParams::default(),
        }
    }
}

impl EvaluateParams {
    /// `walk_forward_test_start` in ms since the epoch; `None` when unset or not RFC 3339 (the
    /// validation refuses that before any stage runs).
    pub fn walk_forward_test_start_ms(&self) -> Option<i64> {
        let s = self.walk_forward_test_start.as_deref()?;
        chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|d| d.timestamp_millis())
    }
}

/// The retraining loop (`retrain:`, read by `rps alert-hook`): an accuracy alert labelled
/// `action: retrain` creates a run of the training DAG, at most one per cooldown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrainParams {
    /// Minutes after a triggered run during which further retrain alerts (a flapping alert, a
    /// second alert on the same degradation) create no new run; 0 = none. A repeat notification
    /// of the same alert never creates a second run, cooldown or not.
    pub cooldown_minutes: u64,
}

impl Default for RetrainParams {
    fn default() -> Self {
        Self {
            cooldown_minutes: 360,
        }
    }
}

/// Streaming (`stream:`, read by `rps stream`): the Kafka topic of closed candles, the consumer
/// that predicts each new bar, and the live models it predicts with. Flags and environment
/// variables (`--brokers` / `RPS_KAFKA_BROKERS`, …) override these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamParams {
    /// Kafka bootstrap brokers, comma-separated `host:port`.
    pub brokers: String,
    /// Topic the candles are published to (one message per closed bar, keyed by symbol).
    pub topic: String,
    /// Partitions of the topic when `rps stream` creates it.
    pub partitions: i32,
    /// Consumer name: its next offset per topic partition is kept in PostgreSQL under it.
    pub consumer: String,
    /// Registry aliases predicted with, in order; aliases that do not exist are skipped.
    pub aliases: Vec<String>,
    /// Bars of history the online feature builder keeps per symbol (at least the longest
    /// feature lookback; the EWMA features need a few hundred more to forget their start).
    pub history_bars: usize,
    /// Most messages written to PostgreSQL in one transaction.
    pub batch_size: usize,
}

impl Default for StreamParams {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".to_owned(),
            topic: "rps-candles".to_owned(),
            partitions: 1,
            consumer: "rps-stream".to_owned(),
            aliases: vec!["champion".to_owned(), "challenger".to_owned()],
            history_bars: 2048,
            batch_size: 500,
        }
    }
}

/// Online accuracy monitoring (`monitor:`, read by `rps-serve --params`): how the scores
/// `rps stream` writes for every forecast once its bar has closed (the `scores` table) are
/// judged. rps-serve exports these thresholds as gauges (`rps_accuracy_*`), so the alert rules
/// take their margins from here. Checked by [`crate::validate::monitor`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorParams {
    /// A live version is worse than HAR-RV when its 7-day mean QLIKE exceeds HAR-RV's on the
    /// same bars by more than this share (0.05 = 5 %).
    pub qlike_margin: f64,
    /// The 80 % interval's 7-day coverage must stay within `[coverage_low, coverage_high]`.
    pub coverage_low: f64,
    pub coverage_high: f64,
    /// Scoring is stale when the newest scored bar closed more than `stale_bars + 1` bars ago.
    pub stale_bars: u32,
    /// Scored bars a 7-day window needs on both sides before a ratio to HAR-RV is exported.
    pub min_scores: u32,
    /// How often rps-serve re-reads the scores table, in seconds (1 to 3600).
    pub refresh_seconds: u64,
}

impl Default for MonitorParams {
    fn default() -> Self {
        Self {
            qlike_margin: 0.05,
            coverage_low: 0.74,
            coverage_high: 0.86,
            stale_bars: 2,
            min_scores: 24,
            refresh_seconds: 60,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_params_file_parses() {
        let text = include_str!("../../../params.yaml");
        let p: Params = serde_yaml::from_str(text).unwrap();
        assert!(p.evaluate.walk_forward_folds > 0);
        assert_eq!(p.train.task, Task::Volatility);
        assert!(p.signal.validate().is_ok());
        assert!(
            p.train
                .base_margin
                .iter()
                .all(|t| crate::features::feature_names(&p.features).contains(t)),
            "the base margin names features the transform builds"
        );
    }

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
        let p: Params = serde_yaml::from_str(
            "train:\n  target_transform: power\n  power_grid: [1.0, 2.0]\n  base_margin: [har_1b]\n  calibration: qlike\nevaluate:\n  walk_forward_folds: 4\n  walk_forward_window: rolling\n",
        )
        .unwrap();
        assert_eq!(p.train.target_transform, TargetTransform::Power);
        assert_eq!(p.train.power_grid, vec![1.0, 2.0]);
        assert_eq!(p.train.calibration, Calibration::Qlike);
        assert_eq!(p.evaluate.walk_forward_window, Window::Rolling);
        assert_eq!(p.evaluate.walk_forward_test_fraction, 0.5);
        assert_eq!(p.evaluate.walk_forward_test_start_ms(), None);
        let p: Params = serde_yaml::from_str(
            "evaluate:\n  walk_forward_test_start: \"2020-01-01T00:00:00Z\"\n",
        )
        .unwrap();
        assert_eq!(
            p.evaluate.walk_forward_test_start_ms(),
            Some(1_577_836_800_000)
        );
        assert_eq!(p.train.task, Task::Volatility);
        assert_eq!(p.train.registered_name(), "btc-volatility");
        let p: Params = serde_yaml::from_str(
            "train:\n  task: signal\nsignal:\n  horizon: 4\n  threshold: 0.005\n",
        )
        .unwrap();
        assert_eq!(p.train.task, Task::Signal);
        assert_eq!(p.train.registered_name(), "btc-signal");
        assert_eq!(p.signal.horizon, 4);
        let err = serde_yaml::from_str::<Params>("signal:\n  thresholds: [0.1, 0.2]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `thresholds`"), "{err}");
    }
}
