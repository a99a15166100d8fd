//! Pure domain code for RPS.
//!
//! Nothing in this crate touches the network, the file system or the clock: every function takes
//! its inputs as values and returns values, so each one is tested against hand-computed numbers.
//! IO (market APIs, object stores, Parquet, MLflow) lives in other crates.
//!
//! - [`candle`]: OHLCV bars, intervals, merging and resampling.
//! - [`volatility`]: log returns and volatility estimators (Parkinson, realized, Garman–Klass).
//! - [`grid`]: the bar grid built one candle at a time (streamed resampling).
//! - [`features`]: the point-in-time feature matrix and the prediction target.
//! - [`flow`]: the order-flow features (trade counts, taker-buy imbalance) and `features.flow`.
//! - [`split`]: chronological train/validation/test splits with a purge gap.
//! - [`walkforward`]: walk-forward (expanding or rolling window) folds with purge gaps.
//! - [`baselines`]: persistence, EWMA and HAR-RV forecasts.
//! - [`metrics`]: RMSE, MAE, R², QLIKE, Diebold–Mariano.
//! - [`quality`]: the data-quality checks behind the quality gate.
//! - [`synthetic`]: a seeded GARCH simulator with regime switches.
//! - [`params`]: the typed form of `params.yaml`.
//! - [`signal`]: Buy/Hold/Sell labels, the majority and momentum baselines, classification
//!   metrics.
//! - [`forecast`]: forecasts from candles — the history a model needs, gaps, staleness, the
//!   answer shape of `POST /forecast` and `rps forecast`.
//! - [`schema`]: the feature schema shared by transform, train, evaluate and serve.
//! - [`stats`]: reference statistics of features (for drift detection).
//! - [`pooling`]: the symbol one-hot of a model pooled over several symbols.

pub mod baselines;
pub mod candle;
pub mod distribution;
pub mod features;
pub mod flow;
pub mod forecast;
pub mod grid;
pub mod linalg;
pub mod metrics;
pub mod params;
pub mod pipeline;
pub mod pooling;
pub mod quality;
pub mod schema;
pub mod signal;
pub mod split;
pub mod stats;
pub mod synthetic;
pub mod time;
pub mod validate;
pub mod volatility;
pub mod walkforward;

pub use candle::{Candle, Interval};
