//! Online features: the stream's side of the one feature pipeline ([`rps_core::pipeline`]): the
//! feature row of each new bar, built by the batch code itself, from the feature spec a model was
//! trained with ([`FeatureSpec::from_schema`]: its `schema.json`), not from whatever params.yaml
//! says now.
//!
//! [`OnlineFeatures`] keeps the last `history_bars` candles of one symbol and, for every new
//! bar, lays them on the bar grid with [`rps_core::pipeline::bar_grid`] and runs
//! [`rps_core::features::build`] — exactly what `rps transform` does on the whole dataset — and
//! returns the last row. Every feature of row `t` reads bars `..=t` only (the batch code is
//! point-in-time), so the row equals the batch row for the same bar as long as the kept history
//! covers every lookback. All windows are finite (`seasonal_days` days is the longest), except
//! the EWMA volatilities, which start from the first kept bar: after `h` bars their start-up
//! error is λ^h of the variance (0.97^1400 < 1e-18), so with the default 2048 bars the online
//! row equals the batch row to far below the 1e-12 the tests allow.

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
    /// be sorted by time; only the newest `max_history` are kept.
    pub fn seed(&mut self, bars: impl IntoIterator<Item = Candle>) {
        self.0.seed(bars);
    }

    /// Add a closed bar and return its feature row. A bar that is not newer than the newest one
    /// held (a replay or a duplicate) changes nothing and gives `None`.
    pub fn push(&mut self, candle: Candle) -> Option<FeatureRow> {
        self.0.push(candle)
    }
}
