//! Online features: the stream's side of the one feature pipeline ([`rps_core::pipeline`]): the
//! feature row of each new bar, from the feature spec a model was trained with
//! ([`FeatureSpec::from_schema`]: its `schema.json`), not from whatever params.yaml says now.
//!
//! [`OnlineFeatures`] wraps [`rps_core::pipeline::Online`]: an incremental state per symbol (the
//! per-bar series of the last lookback + 1 bars and the EWMA variances), whose row function is
//! the batch code's own, so each row is bit-identical to the row `rps transform` writes for the
//! same bar when both start from the same bar. After a restart the state is re-seeded from the
//! newest `stream.history_bars` stored candles: every windowed feature is exact again, and the
//! EWMA volatilities differ from an uninterrupted run by λ^h of the variance after `h` bars
//! (0.97^2048 ≈ 1e-27 with the default 2,048).

use crate::StreamError;
use rps_core::candle::Candle;
use rps_core::params::Params;
pub use rps_core::pipeline::{FeatureRow, FeatureSpec};
use rps_core::pipeline::{Online, PipelineError};

fn config(e: PipelineError) -> StreamError {
    StreamError::Config(e.to_string())
}

/// The online feature builder of one symbol and one [`FeatureSpec`].
#[derive(Debug, Clone)]
pub struct OnlineFeatures(Online);

impl OnlineFeatures {
    /// A builder for what params.yaml says now (`features:`, `target:`, `data.interval`/`data.bar`)
    /// keeping `max_history` bars; see [`OnlineFeatures::with_spec`].
    pub fn new(params: &Params, max_history: usize) -> Result<Self, StreamError> {
        Self::with_spec(
            &FeatureSpec::from_params(params).map_err(config)?,
            max_history,
        )
    }

    /// A builder for `spec` keeping `max_history` bars (`stream.history_bars`): at least the
    /// longest lookback of its features, and a range-based estimator.
    pub fn with_spec(spec: &FeatureSpec, max_history: usize) -> Result<Self, StreamError> {
        Online::new(spec, max_history)
            .map(Self)
            .map_err(|e| match e {
                PipelineError::ShortHistory { history, need } => StreamError::Config(format!(
                    "stream.history_bars is {history} but the features look back {need} bars"
                )),
                other => config(other),
            })
    }

    /// Feature names, in the order of every [`FeatureRow`].
    pub fn names(&self) -> &[String] {
        self.0.names()
    }

    /// Open time of the newest bar held.
    pub fn last_ts(&self) -> Option<i64> {
        self.0.last_ts()
    }

    /// Load history (e.g. from PostgreSQL after a restart) without producing rows. `bars` must
    /// be sorted by time.
    pub fn seed(&mut self, bars: impl IntoIterator<Item = Candle>) {
        self.0.seed(bars);
    }

    /// Add a closed bar and return its feature row. A bar that is not newer than the newest one
    /// held (a replay or a duplicate) changes nothing and gives `None`.
    pub fn push(&mut self, candle: Candle) -> Option<FeatureRow> {
        self.0.push(candle)
    }
}
