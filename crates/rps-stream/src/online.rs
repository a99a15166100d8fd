//! Online features: the feature row of each new bar, built by the batch code itself, from the
//! feature spec a model was trained with ([`FeatureSpec::from_schema`]: its `schema.json`), not
//! from whatever params.yaml says now.
//!
//! [`OnlineFeatures`] keeps the last `history_bars` candles of one symbol and, for every new
//! bar, lays them on the bar grid with [`rps_transform::bar_grid`] and runs
//! [`rps_core::features::build`] — exactly what `rps transform` does on the whole dataset — and
//! returns the last row. Every feature of row `t` reads bars `..=t` only (the batch code is
//! point-in-time), so the row equals the batch row for the same bar as long as the kept history
//! covers every lookback. All windows are finite (`seasonal_days` days is the longest), except
//! the EWMA volatilities, which start from the first kept bar: after `h` bars their start-up
//! error is λ^h of the variance (0.97^1400 < 1e-18), so with the default 2048 bars the online
//! row equals the batch row to far below the 1e-12 the tests allow.

use crate::StreamError;
use rps_core::Interval;
use rps_core::candle::Candle;
use rps_core::features::{FeatureParams, TargetParams};
use rps_core::params::Params;
use rps_core::schema::FeatureSchema;
use rps_core::volatility::Estimator;
use std::collections::VecDeque;

/// Everything that changes a feature value: the stream's bar, the `features:` knobs and the
/// `target:` definition (estimator, floor, …).
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSpec {
    /// Bar of the stream's candles and of the model's rows (streaming needs them equal).
    pub bar: Interval,
    pub features: FeatureParams,
    pub target: TargetParams,
}

impl FeatureSpec {
    /// The spec params.yaml describes now (`data.bar` must equal `data.interval`).
    pub fn from_params(params: &Params) -> Result<Self, StreamError> {
        let d = &params.data;
        if d.bar != d.interval {
            return Err(StreamError::Config(format!(
                "streaming needs data.bar == data.interval (got {} and {}): resampling sub-bars online is not supported yet",
                d.bar, d.interval
            )));
        }
        Ok(Self {
            bar: d.bar,
            features: params.features.clone(),
            target: params.target.clone(),
        })
    }

    /// The spec a model was trained with (its saved feature schema), for a stream of `interval`
    /// candles: refused when the model's bar is another one.
    pub fn from_schema(schema: &FeatureSchema, interval: Interval) -> Result<Self, StreamError> {
        let bar: Interval = schema.bar.parse().map_err(|_| {
            StreamError::Config(format!(
                "the model's schema has an unknown bar {:?}",
                schema.bar
            ))
        })?;
        if bar != interval {
            return Err(StreamError::Config(format!(
                "the model was trained on {bar} bars but the stream carries {interval} candles (data.interval)"
            )));
        }
        Ok(Self {
            bar,
            features: schema.feature_params.clone(),
            target: schema.target.clone(),
        })
    }

    /// A key equal for equal specs (models trained alike share one builder).
    pub fn key(&self) -> String {
        format!(
            "{}|{}|{}",
            self.bar,
            serde_json::to_string(&self.features).unwrap_or_default(),
            serde_json::to_string(&self.target).unwrap_or_default()
        )
    }
}

/// The features of one bar, in the order of [`OnlineFeatures::names`].
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureRow {
    /// Bar open time (ms since the epoch, UTC).
    pub ts: i64,
    pub values: Vec<f64>,
}

/// The online feature builder of one symbol and one [`FeatureSpec`].
#[derive(Debug, Clone)]
pub struct OnlineFeatures {
    spec: FeatureSpec,
    names: Vec<String>,
    history: VecDeque<Candle>,
    max_history: usize,
    bars_per_day: usize,
}

impl OnlineFeatures {
    /// A builder for what params.yaml says now (`features:`, `target:`, `data.interval`/`data.bar`)
    /// keeping `max_history` bars; see [`OnlineFeatures::with_spec`].
    pub fn new(params: &Params, max_history: usize) -> Result<Self, StreamError> {
        Self::with_spec(&FeatureSpec::from_params(params)?, max_history)
    }

    /// A builder for `spec` keeping `max_history` bars: at least the longest lookback of its
    /// features, and a range-based estimator (realized volatility needs sub-bars).
    pub fn with_spec(spec: &FeatureSpec, max_history: usize) -> Result<Self, StreamError> {
        if spec.target.estimator == Estimator::Realized {
            return Err(StreamError::Config(
                "streaming needs target.estimator parkinson or garman_klass (realized needs sub-bars)"
                    .to_owned(),
            ));
        }
        let bars_per_day = usize::try_from(86_400_000 / spec.bar.ms())
            .unwrap_or(1)
            .max(1);
        let need = Self::lookback(&spec.features, bars_per_day) + 1;
        if max_history < need {
            return Err(StreamError::Config(format!(
                "stream.history_bars is {max_history} but the features look back {need} bars"
            )));
        }
        Ok(Self {
            spec: spec.clone(),
            names: rps_core::features::feature_names(&spec.features),
            history: VecDeque::with_capacity(max_history + 1),
            max_history,
            bars_per_day,
        })
    }

    /// The longest lookback (in bars) of any non-recursive feature.
    pub fn lookback(f: &FeatureParams, bars_per_day: usize) -> usize {
        let windows = f
            .return_windows
            .iter()
            .chain(&f.har_windows)
            .copied()
            .chain([f.long_window, f.seasonal_days * bars_per_day]);
        windows.max().unwrap_or(0)
    }

    /// Feature names, in the order of every [`FeatureRow`].
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Open time of the newest bar held.
    pub fn last_ts(&self) -> Option<i64> {
        self.history.back().map(|c| c.ts)
    }

    /// Load history (e.g. from PostgreSQL after a restart) without producing rows. `bars` must
    /// be sorted by time; only the newest `max_history` are kept.
    pub fn seed(&mut self, bars: impl IntoIterator<Item = Candle>) {
        for c in bars {
            if self.last_ts().is_none_or(|t| c.ts > t) {
                self.history.push_back(c);
            }
        }
        while self.history.len() > self.max_history {
            self.history.pop_front();
        }
    }

    /// Add a closed bar and return its feature row. A bar that is not newer than the newest one
    /// held (a replay or a duplicate) changes nothing and gives `None`.
    pub fn push(&mut self, candle: Candle) -> Option<FeatureRow> {
        if self.last_ts().is_some_and(|t| candle.ts <= t) {
            return None;
        }
        self.history.push_back(candle);
        while self.history.len() > self.max_history {
            self.history.pop_front();
        }
        let bars: Vec<Candle> = self.history.iter().copied().collect();
        let spec = &self.spec;
        let (ts, grid, vol) =
            rps_transform::bar_grid(&bars, spec.bar, spec.bar, spec.target.estimator);
        let frame = rps_core::features::build(
            &ts,
            &grid,
            &vol,
            &spec.features,
            &spec.target,
            self.bars_per_day,
        );
        let last = frame.len().checked_sub(1)?;
        Some(FeatureRow {
            ts: frame.ts[last],
            values: frame.row(last),
        })
    }
}
