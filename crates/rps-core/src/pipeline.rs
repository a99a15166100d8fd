//! The one feature pipeline, driven by a model's saved feature spec (issue #17).
//!
//! [`FeatureSpec`] is everything that changes a feature value: the bar, the `features:` knobs and
//! the `target:` definition (estimator, floor, …). It comes from params.yaml when a model is
//! trained ([`FeatureSpec::from_params`]) and from the model's `schema.json` ever after
//! ([`FeatureSpec::from_schema`]), so what a live model sees never changes meaning when
//! params.yaml does. Three modes give the same rows:
//! - batch: [`bar_grid`] + [`crate::features::build`] over a whole candle series (transform);
//! - online: [`Online::push`] one closed bar at a time (the stream consumer);
//! - request: [`request_row`] — the last N candles → the next hour's row (forecasts).

use crate::candle::{Candle, Interval, resample};
use crate::features::{FeatureFrame, FeatureParams, TargetParams};
use crate::flow::FlowColumn;
use crate::params::Params;
use crate::schema::FeatureSchema;
use crate::volatility::{Estimator, garman_klass, parkinson, realized};

/// Why a spec cannot be honoured here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    #[error(
        "streaming needs data.bar == data.interval (got {bar} and {interval}): resampling sub-bars online is not supported yet"
    )]
    SubBars { bar: Interval, interval: Interval },
    #[error("the model's schema has an unknown bar {0:?}")]
    UnknownBar(String),
    #[error("the model was trained on {model} bars but the candles are {candles} bars")]
    OtherBar { model: Interval, candles: Interval },
    #[error(
        "online features need target.estimator parkinson or garman_klass (realized needs sub-bars)"
    )]
    Realized,
    #[error("{history} bars of history are kept but the features look back {need} bars")]
    ShortHistory { history: usize, need: usize },
    /// A model trained with the order-flow features got a candle without a column they read.
    #[error(
        "the model was trained with order-flow features (features.flow: on) and needs `{column}` on every candle; the candle at {} has none",
        crate::forecast::rfc3339(*.at)
    )]
    MissingColumn {
        column: crate::flow::FlowColumn,
        /// Open time of the first candle without it.
        at: i64,
    },
}

/// Lay `bars` (sorted, at `interval`) on the model's bar grid with each bar's volatility. A bar
/// off the `interval` grid takes the slot it opened in ([`crate::candle::snap_to_grid`]; run
/// [`crate::candle::align`] first to refuse collisions).
pub fn bar_grid(
    bars: &[Candle],
    interval: Interval,
    bar: Interval,
    estimator: Estimator,
) -> (Vec<i64>, Vec<Option<Candle>>, Vec<f64>) {
    let groups: Vec<(Candle, Vec<Candle>)> = if bar == interval {
        bars.iter()
            .map(|c| {
                let c = Candle {
                    ts: interval.floor(c.ts),
                    ..*c
                };
                (c, vec![c])
            })
            .collect()
    } else {
        resample(bars, bar)
    };
    let (Some(first), Some(last)) = (groups.first(), groups.last()) else {
        return (Vec::new(), Vec::new(), Vec::new());
    };
    let (t0, t1) = (first.0.ts, last.0.ts);
    let n = usize::try_from((t1 - t0) / bar.ms() + 1).unwrap_or(0);
    let ts: Vec<i64> = (0..n).map(|i| t0 + i as i64 * bar.ms()).collect();
    let mut grid: Vec<Option<Candle>> = vec![None; n];
    let mut vol = vec![f64::NAN; n];
    let mut prev_close: Option<f64> = None;
    let mut prev_slot: Option<usize> = None;
    for (agg, parts) in &groups {
        let Ok(i) = usize::try_from((agg.ts - t0) / bar.ms()) else {
            continue;
        };
        grid[i] = Some(*agg);
        // A previous close only counts when it is the adjacent bar's.
        let prev = prev_close.filter(|_| prev_slot.is_some_and(|p| p + 1 == i));
        vol[i] = match estimator {
            Estimator::Parkinson => parkinson(agg.high, agg.low),
            Estimator::GarmanKlass => garman_klass(agg),
            Estimator::Realized => realized(prev, parts),
        };
        prev_close = Some(agg.close);
        prev_slot = Some(i);
    }
    (ts, grid, vol)
}

/// Everything that changes a feature value: the bar of the rows, the `features:` knobs and the
/// `target:` definition.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSpec {
    pub bar: Interval,
    pub features: FeatureParams,
    pub target: TargetParams,
}

impl FeatureSpec {
    /// The spec params.yaml describes now, for candles that are the model's bars
    /// (`data.bar == data.interval`). `features.flow: auto` needs the data to be resolved
    /// (transform does it, [`crate::flow::Flow::resolve`]); without data it means `off` here, as
    /// in a saved schema.
    ///
    /// # Errors
    /// [`PipelineError::SubBars`] when the bars would be resampled from finer candles.
    pub fn from_params(params: &Params) -> Result<Self, PipelineError> {
        let d = &params.data;
        if d.bar != d.interval {
            return Err(PipelineError::SubBars {
                bar: d.bar,
                interval: d.interval,
            });
        }
        let mut features = params.features.clone();
        features.flow = features.flow.saved();
        Ok(Self {
            bar: d.bar,
            features,
            target: params.target.clone(),
        })
    }

    /// The spec a model was trained with (its saved schema), for candles of `interval`.
    ///
    /// # Errors
    /// An unknown bar, or a model trained on other bars than the candles'.
    pub fn from_schema(schema: &FeatureSchema, interval: Interval) -> Result<Self, PipelineError> {
        let bar: Interval = schema
            .bar
            .parse()
            .map_err(|_| PipelineError::UnknownBar(schema.bar.clone()))?;
        if bar != interval {
            return Err(PipelineError::OtherBar {
                model: bar,
                candles: interval,
            });
        }
        let mut features = schema.feature_params.clone();
        // A schema records `on` or `off`; one older than the knob reads as `auto`: `off`.
        features.flow = features.flow.saved();
        Ok(Self {
            bar,
            features,
            target: schema.target.clone(),
        })
    }

    /// The raw candle columns beyond OHLCV the features read: the order-flow columns when the
    /// spec builds the flow features, else none.
    pub fn needs(&self) -> &'static [FlowColumn] {
        if self.features.flow.is_on() {
            &FlowColumn::ALL
        } else {
            &[]
        }
    }

    /// Refuse candles that lack a column the features read ([`FeatureSpec::needs`]): every
    /// candle must carry it (a value the bar cannot give, e.g. zero trades, is fine; an absent
    /// column is a client or source that does not provide it). The forecast paths
    /// ([`crate::forecast::model_input`]) and the stream consumer call it before building a row.
    ///
    /// # Errors
    /// [`PipelineError::MissingColumn`] naming the column and the first candle without it.
    pub fn check_candles(&self, bars: &[Candle]) -> Result<(), PipelineError> {
        for &column in self.needs() {
            if let Some(c) = bars.iter().find(|c| !column.present(c)) {
                return Err(PipelineError::MissingColumn { column, at: c.ts });
            }
        }
        Ok(())
    }

    /// A key equal for equal specs (models trained alike share one row).
    pub fn key(&self) -> String {
        format!(
            "{}|{}|{}",
            self.bar,
            serde_json::to_string(&self.features).unwrap_or_default(),
            serde_json::to_string(&self.target).unwrap_or_default()
        )
    }

    /// Feature names, in row order.
    pub fn names(&self) -> Vec<String> {
        crate::features::feature_names(&self.features)
    }

    /// Bars in a day.
    pub fn bars_per_day(&self) -> usize {
        usize::try_from(86_400_000 / self.bar.ms().max(1))
            .unwrap_or(1)
            .max(1)
    }

    /// The longest lookback (in bars) of any non-recursive feature.
    pub fn lookback(&self) -> usize {
        let f = &self.features;
        f.return_windows
            .iter()
            .chain(&f.har_windows)
            .copied()
            .chain([f.long_window, f.seasonal_days * self.bars_per_day()])
            .max()
            .unwrap_or(0)
    }

    /// Batch mode: the feature frame of `bars` (sorted candles that are this spec's bars).
    pub fn frame(&self, bars: &[Candle]) -> FeatureFrame {
        let (ts, grid, vol) = bar_grid(bars, self.bar, self.bar, self.target.estimator);
        crate::features::build(
            &ts,
            &grid,
            &vol,
            &self.features,
            &self.target,
            self.bars_per_day(),
        )
    }
}

/// One bar's features, in the order of [`FeatureSpec::names`].
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureRow {
    /// Bar open time (ms since the epoch, UTC).
    pub ts: i64,
    pub values: Vec<f64>,
}

/// Request mode: the row of the newest of `bars` (sorted candles of the spec's bar), built by
/// the batch code. `None` for no bars.
pub fn request_row(spec: &FeatureSpec, bars: &[Candle]) -> Option<FeatureRow> {
    let frame = spec.frame(bars);
    let last = frame.len().checked_sub(1)?;
    Some(FeatureRow {
        ts: frame.ts[last],
        values: frame.row(last),
    })
}

/// Online mode for one symbol: each new closed bar's row from an incremental state — the
/// per-bar series of the last [`FeatureSpec::lookback`]` + 1` grid slots and the EWMA variances —
/// with work per bar bounded by the spec's windows, not by the history held.
///
/// The row is computed by the batch code's own row function over the same per-bar series, so it
/// is bit-identical to the batch row of the same bar when both start from the same first bar
/// (the tests check this for random specs and series). Starting later (a restart seeded from the
/// newest stored bars) changes only the EWMA features, by λ^h of the variance after `h` bars.
#[derive(Debug, Clone)]
pub struct Online {
    spec: FeatureSpec,
    names: Vec<String>,
    series: crate::features::Series,
    ewma: crate::features::EwmaState,
    /// Slots the rows read: the lookback and the bar itself.
    keep: usize,
    last_ts: Option<i64>,
    bars_per_day: usize,
    row: Vec<f64>,
}

impl Online {
    /// A builder for `spec`. `max_history` is the history the caller will seed with (e.g.
    /// `stream.history_bars`); it must cover the lookback.
    ///
    /// # Errors
    /// A realized-volatility spec (it needs sub-bars), or a history shorter than the lookback.
    pub fn new(spec: &FeatureSpec, max_history: usize) -> Result<Self, PipelineError> {
        if spec.target.estimator == Estimator::Realized {
            return Err(PipelineError::Realized);
        }
        let need = spec.lookback() + 1;
        if max_history < need {
            return Err(PipelineError::ShortHistory {
                history: max_history,
                need,
            });
        }
        let keep = need.max(2);
        let names = spec.names();
        Ok(Self {
            spec: spec.clone(),
            row: Vec::with_capacity(names.len()),
            names,
            series: crate::features::Series::with_capacity(keep + keep / 4 + 16, &spec.features),
            ewma: crate::features::EwmaState::new(&spec.features),
            keep,
            last_ts: None,
            bars_per_day: spec.bars_per_day(),
        })
    }

    /// Feature names, in row order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Open time of the newest bar held.
    pub fn last_ts(&self) -> Option<i64> {
        self.last_ts
    }

    /// Load history (e.g. stored candles after a restart) without producing rows; `bars` sorted.
    pub fn seed(&mut self, bars: impl IntoIterator<Item = Candle>) {
        for c in bars {
            self.advance(&c);
        }
    }

    /// Add a closed bar and return its row; a bar not newer than the newest held (a replay)
    /// changes nothing and gives `None`.
    pub fn push(&mut self, candle: Candle) -> Option<FeatureRow> {
        if !self.advance(&candle) {
            return None;
        }
        let t = self.series.len() - 1;
        let of = crate::features::RowOf {
            fp: &self.spec.features,
            floor: self.spec.target.floor,
            bars_per_day: self.bars_per_day,
        };
        of.row_into(&self.series, t, candle.ts, &self.ewma, &mut self.row);
        Some(FeatureRow {
            ts: candle.ts,
            values: self.row.clone(),
        })
    }

    /// Lay `c` on the grid after the newest bar (empty slots for the bars in between, as
    /// [`bar_grid`] does); `false` when it is not at least one bar newer.
    fn advance(&mut self, c: &Candle) -> bool {
        let ms = self.spec.bar.ms().max(1);
        if let Some(last) = self.last_ts {
            let slots = (c.ts - last).div_euclid(ms);
            if slots < 1 {
                return false;
            }
            // Slots older than `keep` are never read again: a longer gap is a full window of
            // empty slots.
            let missing = usize::try_from(slots - 1)
                .unwrap_or(usize::MAX)
                .min(self.keep);
            for _ in 0..missing {
                self.slot(None, f64::NAN);
            }
        }
        let vol = match self.spec.target.estimator {
            Estimator::GarmanKlass => garman_klass(c),
            // Realized is refused in `new`; a one-candle bar has no sub-bar returns.
            Estimator::Parkinson | Estimator::Realized => parkinson(c.high, c.low),
        };
        self.slot(Some(c), vol);
        self.last_ts = Some(c.ts);
        true
    }

    fn slot(&mut self, bar: Option<&Candle>, vol: f64) {
        let floor = self.spec.target.floor;
        self.series.push(bar, vol, floor);
        let t = self.series.len() - 1;
        self.ewma.update(&self.spec.features, self.series.var(t));
        // Amortised O(1): drop the slots no row reads once a quarter of `keep` has piled up.
        if self.series.len() >= self.keep + self.keep / 4 + 16 {
            self.series.drop_front(self.series.len() - self.keep);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::flow::Flow;

    fn bars(n: i64) -> Vec<Candle> {
        (0..n)
            .map(|i| {
                let p = 100.0 + (i as f64 * 0.3).sin() * 3.0 + i as f64 * 0.01;
                Candle {
                    ts: i * 3_600_000,
                    open: p,
                    high: p * (1.0 + 0.004 * (1.0 + (i as f64 * 0.7).cos().abs())),
                    low: p * (1.0 - 0.003 * (1.0 + (i as f64 * 0.5).sin().abs())),
                    close: p * (1.0 + 0.001 * (i as f64 * 1.3).sin()),
                    volume: 10.0 + (i % 7) as f64,
                    ..Default::default()
                }
            })
            .collect()
    }

    fn spec() -> FeatureSpec {
        let mut p = Params::default();
        p.features.seasonal_days = 2;
        FeatureSpec::from_params(&p).unwrap()
    }

    /// Online == request == batch for every bar while the history is whole.
    #[test]
    fn the_three_modes_give_the_same_rows() {
        let s = spec();
        let b = bars(400);
        let batch = s.frame(&b);
        let mut online = Online::new(&s, 1000).unwrap();
        for (i, c) in b.iter().enumerate() {
            let row = online.push(*c).unwrap();
            let req = request_row(&s, &b[..=i]).unwrap();
            let want = batch.row(i);
            for ((o, r), w) in row.values.iter().zip(&req.values).zip(&want) {
                assert!(
                    (o.is_nan() && r.is_nan() && w.is_nan()) || (o == r && r == w),
                    "bar {i}: online {o}, request {r}, batch {w}"
                );
            }
        }
        assert!(online.push(b[10]).is_none(), "a replay gives no row");
    }

    #[test]
    fn a_spec_survives_the_schema_and_refuses_other_bars() {
        let s = spec();
        let schema = FeatureSchema {
            version: FeatureSchema::VERSION,
            symbol: "X".into(),
            source: "file".into(),
            bar: s.bar.to_string(),
            features: s.names(),
            feature_params: s.features.clone(),
            target: s.target.clone(),
            reference: Vec::new(),
            rows: Default::default(),
            first_ts: 0,
            last_ts: 0,
            data_hash: String::new(),
            symbols: Vec::new(),
        };
        let back = FeatureSpec::from_schema(&schema, s.bar).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.key(), s.key());
        assert!(matches!(
            FeatureSpec::from_schema(&schema, Interval::M30),
            Err(PipelineError::OtherBar { .. })
        ));
        let mut r = s.clone();
        r.target.estimator = Estimator::Realized;
        assert_eq!(Online::new(&r, 5000).unwrap_err(), PipelineError::Realized);
        assert!(matches!(
            Online::new(&s, 3),
            Err(PipelineError::ShortHistory { .. })
        ));
    }

    fn schema_of(s: &FeatureSpec) -> FeatureSchema {
        FeatureSchema {
            version: FeatureSchema::VERSION,
            symbol: "X".into(),
            source: "file".into(),
            bar: s.bar.to_string(),
            features: s.names(),
            feature_params: s.features.clone(),
            target: s.target.clone(),
            reference: Vec::new(),
            rows: Default::default(),
            first_ts: 0,
            last_ts: 0,
            data_hash: String::new(),
            symbols: Vec::new(),
        }
    }

    /// A flow model's schema says so and its spec needs the columns; a schema written before
    /// `features.flow` existed loads as a model without flow features.
    #[test]
    fn the_schema_records_the_flow_columns_and_old_schemas_have_none() {
        let mut s = spec();
        s.features.flow = Flow::On;
        let schema = schema_of(&s);
        let json = serde_json::to_value(&schema).unwrap();
        assert_eq!(json["feature_params"]["flow"], "on");
        let back: FeatureSchema = serde_json::from_value(json.clone()).unwrap();
        let back = FeatureSpec::from_schema(&back, s.bar).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.needs(), &FlowColumn::ALL);
        assert!(back.names().iter().any(|n| n == "taker_buy_imbalance"));

        let mut old = json;
        old["feature_params"]
            .as_object_mut()
            .unwrap()
            .remove("flow");
        old["features"] = serde_json::to_value(spec().names()).unwrap();
        let old: FeatureSchema = serde_json::from_value(old).unwrap();
        let old = FeatureSpec::from_schema(&old, s.bar).unwrap();
        assert_eq!(old.features.flow, Flow::Off);
        assert!(old.needs().is_empty());
        assert_eq!(old.names(), spec().names());
        let mut off = spec();
        off.features.flow = Flow::Off;
        assert_eq!(
            old.key(),
            off.key(),
            "old and new flow-free models share rows"
        );
    }

    #[test]
    fn a_flow_spec_refuses_candles_without_the_columns() {
        let mut s = spec();
        let mut b = bars(30);
        assert!(s.check_candles(&b).is_ok(), "no flow: nothing needed");
        s.features.flow = Flow::On;
        let err = s.check_candles(&b).unwrap_err();
        assert_eq!(
            err,
            PipelineError::MissingColumn {
                column: FlowColumn::Trades,
                at: 0
            }
        );
        assert_eq!(
            err.to_string(),
            "the model was trained with order-flow features (features.flow: on) and needs `trades` on every candle; the candle at 1970-01-01T00:00:00Z has none"
        );
        for c in &mut b {
            c.trades = Some(0);
            c.taker_buy_volume = Some(0.0);
        }
        b[7].taker_buy_volume = None;
        assert_eq!(
            s.check_candles(&b),
            Err(PipelineError::MissingColumn {
                column: FlowColumn::TakerBuyVolume,
                at: 7 * 3_600_000
            })
        );
        b[7].taker_buy_volume = Some(1.0);
        assert!(s.check_candles(&b).is_ok(), "zero trades is a value");
        // No panic and no inf on zero trades and zero taker volume.
        let f = s.frame(&b);
        assert!(f.columns.iter().flatten().all(|v| !v.is_infinite()));
    }
}
