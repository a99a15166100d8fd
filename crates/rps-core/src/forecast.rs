//! Forecasts from candles (issue #17): which candles a model needs, whether a stored history
//! can give a forecast (gapless, fresh), the model's input row, and the one answer shape that
//! `POST /forecast` and `rps forecast` both print.
//!
//! The features themselves come from [`crate::pipeline`] with the model's saved spec; this
//! module only decides *which* bars go in and what comes out. Pure: "now" is an argument.

use crate::candle::{Candle, Interval};
use crate::pipeline::{FeatureSpec, request_row};
use crate::schema::FeatureSchema;
use crate::signal::Signal;
use crate::volatility::Estimator;
use serde::Serialize;

/// Why no forecast is given. Each names what is wrong so that a client (or a cron job's log)
/// can act on it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForecastError {
    /// The model cannot forecast from candles (its schema is unusable here).
    #[error("{0}")]
    Unsupported(String),
    /// Fewer consecutive bars than the features look back.
    #[error(
        "{have} candles; this model needs the last {need} consecutive {bar} bars (GET /model: history_bars)"
    )]
    Short {
        have: usize,
        need: usize,
        bar: Interval,
    },
    /// Bars missing inside the window the features read.
    #[error(
        "{missing} missing {bar} bar(s) from {} (after {}, before {}): the features need a gapless history of {need} bars",
        rfc3339(*.first_missing),
        rfc3339(*.after),
        rfc3339(*.before)
    )]
    Gap {
        /// Open time of the first missing bar.
        first_missing: i64,
        /// How many bars are missing there.
        missing: i64,
        /// The bars either side of the hole.
        after: i64,
        before: i64,
        bar: Interval,
        need: usize,
    },
    /// The newest bar closed longer ago than the tolerance: the forecast would be for a bar
    /// that is already over.
    #[error(
        "the newest {bar} bar opened at {} and closed {}s ago; forecasts need a bar closed at most {}s ago (max age)",
        rfc3339(*.newest),
        .age_ms / 1000,
        .max_age_ms / 1000
    )]
    Stale {
        newest: i64,
        age_ms: i64,
        max_age_ms: i64,
        bar: Interval,
    },
    /// The model was trained with the order-flow features and a candle lacks a column they
    /// read ([`FeatureSpec::check_candles`]).
    #[error(
        "the model was trained with order-flow features (features.flow: on) and needs `{column}` on every candle; the candle at {} has none",
        rfc3339(*.at)
    )]
    MissingColumn {
        column: crate::flow::FlowColumn,
        /// Open time of the first candle without it.
        at: i64,
    },
}

/// RFC 3339 (UTC, seconds) of a time in ms since the epoch.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

/// The spec of a model whose saved schema is `schema`, for candles of its own bar; refused
/// when the features cannot be rebuilt from candles of that bar (the `realized` estimator
/// needs sub-bars, which a request does not carry).
///
/// # Errors
/// [`ForecastError::Unsupported`] naming the reason.
pub fn spec(schema: &FeatureSchema) -> Result<FeatureSpec, ForecastError> {
    let bar: Interval = schema.bar.parse().map_err(|_| {
        ForecastError::Unsupported(format!(
            "the model's schema has an unknown bar {:?}",
            schema.bar
        ))
    })?;
    let spec = FeatureSpec::from_schema(schema, bar)
        .map_err(|e| ForecastError::Unsupported(e.to_string()))?;
    if spec.target.estimator == Estimator::Realized {
        return Err(ForecastError::Unsupported(
            "the model's bar volatility is `realized` (from sub-bars); forecasts from candles need parkinson or garman_klass"
                .to_owned(),
        ));
    }
    Ok(spec)
}

/// Candles one forecast needs: the longest lookback of the model's features plus the bar
/// itself. `GET /model` states it as `history_bars`.
pub fn history_bars(spec: &FeatureSpec) -> usize {
    spec.lookback() + 1
}

/// The newest [`history_bars`] of a stored series (sorted by open time, one bar apart at most
/// where nothing is missing): the window a forecast is built from, refused when it is short or
/// has a hole. Bars before the window do not matter.
///
/// # Errors
/// [`ForecastError::Short`], [`ForecastError::Gap`] (the newest hole inside the window).
pub fn window<'a>(spec: &FeatureSpec, bars: &'a [Candle]) -> Result<&'a [Candle], ForecastError> {
    let need = history_bars(spec);
    let bar = spec.bar.ms();
    let Some(newest) = bars.last() else {
        return Err(ForecastError::Short {
            have: 0,
            need,
            bar: spec.bar,
        });
    };
    // The window's first bar on the grid; every bar from it to the newest must be there.
    let start = newest.ts - (need as i64 - 1) * bar;
    let from = bars.partition_point(|c| c.ts < start);
    let tail = &bars[from..];
    // The newest hole inside the window, scanning back from the newest bar.
    let mut next = newest.ts;
    for c in tail.iter().rev().skip(1) {
        if next - c.ts != bar {
            return Err(ForecastError::Gap {
                first_missing: c.ts + bar,
                missing: (next - c.ts) / bar - 1,
                after: c.ts,
                before: next,
                bar: spec.bar,
                need,
            });
        }
        next = c.ts;
    }
    if tail.len() < need {
        // Missing bars at the window's start: a hole when older bars exist, else too short.
        return Err(match bars[..from].last() {
            Some(before) => ForecastError::Gap {
                first_missing: before.ts + bar,
                missing: (next - before.ts) / bar - 1,
                after: before.ts,
                before: next,
                bar: spec.bar,
                need,
            },
            None => ForecastError::Short {
                have: tail.len(),
                need,
                bar: spec.bar,
            },
        });
    }
    Ok(tail)
}

/// Milliseconds since the bar opened at `newest` closed, refused past `max_age_ms`.
///
/// # Errors
/// [`ForecastError::Stale`].
pub fn freshness(
    newest: i64,
    bar: Interval,
    now_ms: i64,
    max_age_ms: i64,
) -> Result<i64, ForecastError> {
    let age_ms = now_ms - (newest + bar.ms());
    if age_ms > max_age_ms {
        return Err(ForecastError::Stale {
            newest,
            age_ms,
            max_age_ms,
            bar,
        });
    }
    Ok(age_ms)
}

/// A stored history ready to forecast from.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The newest [`history_bars`] bars, gapless, of the model's bar.
    pub window: Vec<Candle>,
    /// Milliseconds since the newest bar closed.
    pub age_ms: i64,
}

/// The window of a stored series of `interval` candles (a raw dataset, the stream's table)
/// at `now_ms`: resampled to the model's bar when the candles are finer (a last bar whose
/// sub-bars have not all closed is left out), bars not closed yet at `now_ms` and bars with a
/// bad price left out (missing, so a hole), then refused when the newest bar closed more than
/// `max_age_ms` ago ([`ForecastError::Stale`], checked first: the history stopped) or the window
/// is short or has a hole.
///
/// # Errors
/// [`ForecastError::Stale`], [`ForecastError::Short`], [`ForecastError::Gap`], and
/// [`ForecastError::Unsupported`] for candles that are not a divisor of the model's bar.
pub fn stored(
    spec: &FeatureSpec,
    bars: &[Candle],
    interval: Interval,
    now_ms: i64,
    max_age_ms: i64,
) -> Result<Stored, ForecastError> {
    let bar = spec.bar;
    let mut sorted = bars.to_vec();
    crate::candle::sort_dedup(&mut sorted);
    let ok = |c: &Candle| {
        [c.open, c.high, c.low, c.close]
            .iter()
            .all(|p| p.is_finite() && *p > 0.0)
            && c.low <= c.open.min(c.close)
            && c.high >= c.open.max(c.close)
    };
    let on_bar: Vec<Candle> = if interval == bar {
        sorted.into_iter().filter(ok).collect()
    } else if interval.ms() < bar.ms() && bar.ms() % interval.ms() == 0 {
        let mut groups =
            crate::candle::resample(&sorted.into_iter().filter(ok).collect::<Vec<_>>(), bar);
        // A bar whose last sub-bar is not in yet has not closed.
        if let Some((agg, parts)) = groups.last()
            && parts
                .last()
                .is_none_or(|p| p.ts + interval.ms() < agg.ts + bar.ms())
        {
            groups.pop();
        }
        groups.into_iter().map(|(agg, _)| agg).collect()
    } else {
        return Err(ForecastError::Unsupported(format!(
            "the stored candles are {interval} bars; the model works on {bar} bars"
        )));
    };
    let closed: Vec<Candle> = on_bar
        .into_iter()
        .filter(|c| c.ts + bar.ms() <= now_ms)
        .collect();
    let Some(newest) = closed.last() else {
        return Err(ForecastError::Short {
            have: 0,
            need: history_bars(spec),
            bar,
        });
    };
    let age_ms = freshness(newest.ts, bar, now_ms, max_age_ms)?;
    let window = window(spec, &closed)?.to_vec();
    Ok(Stored { window, age_ms })
}

/// The model's input row for the newest bar of `window` (from [`window`] or checked request
/// candles): its `features` by name from the row the spec builds, and for a model pooled over
/// `pooled` symbols (its schema's `symbols`; empty for one symbol) the one-hot of `symbol`
/// ([`crate::pooling::Inputs`]).
///
/// # Errors
/// [`ForecastError::Short`] for no bars, [`ForecastError::MissingColumn`] when a candle lacks a
/// column the spec's features read, [`ForecastError::Unsupported`] when the model needs a
/// feature its own spec does not build, or is pooled and `symbol` is not one of its symbols.
pub fn model_input(
    spec: &FeatureSpec,
    features: &[String],
    pooled: &[String],
    symbol: Option<&str>,
    window: &[Candle],
) -> Result<(i64, Vec<f32>), ForecastError> {
    let inputs = crate::pooling::Inputs::new(features, pooled, &spec.names(), symbol)
        .map_err(|e| ForecastError::Unsupported(e.to_string()))?;
    spec.check_candles(window).map_err(|e| match e {
        crate::pipeline::PipelineError::MissingColumn { column, at } => {
            ForecastError::MissingColumn { column, at }
        }
        other => ForecastError::Unsupported(other.to_string()),
    })?;
    let row = request_row(spec, window).ok_or(ForecastError::Short {
        have: 0,
        need: history_bars(spec),
        bar: spec.bar,
    })?;
    Ok((row.ts, inputs.row(&row.values)))
}

/// What the model said.
#[derive(Debug, Clone, PartialEq)]
pub enum Prediction {
    /// Next-bar volatility (standard deviation of the bar's log return, a fraction): the mean
    /// and, for a model with a distribution, its quantiles.
    Volatility(crate::distribution::VolatilityForecast),
    /// A Buy/Hold/Sell model's class and the probabilities of (sell, hold, buy).
    Signal {
        signal: Signal,
        probabilities: [f64; 3],
    },
}

/// The answer of `POST /forecast` and `rps forecast --json`. The point forecast is
/// `volatility` (per bar) and `volatility_annualised`; distribution fields (`median`,
/// `quantiles`, `interval_80`, issue #16) will sit beside them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PointForecast {
    pub model: String,
    pub version: u32,
    pub symbol: String,
    pub bar: String,
    /// Open time (RFC 3339, UTC) of the newest candle, whose features the forecast is made from.
    pub from_bar: String,
    /// Open time of the bar forecast (the one after `from_bar`).
    pub target_bar: String,
    /// Bars ahead the target averages over (params.yaml `target.horizon` of the model).
    pub horizon_bars: usize,
    /// Candles the features were built from (`history_bars`).
    pub candles_used: usize,
    /// Where the candles came from: `request`, `database` (the stream's PostgreSQL) or
    /// `raw_dataset` (the home's Parquet dataset).
    pub history: &'static str,
    /// Seconds since `from_bar` closed, for forecasts from stored candles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_secs: Option<i64>,
    #[serde(flatten)]
    pub value: Value,
}

/// The prediction in the answer, tagged by `task`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum Value {
    Volatility {
        units: String,
        /// Standard deviation of the bar's log return (a fraction: 0.006 = 0.6 %).
        volatility: f64,
        /// `volatility` times √(bars per year, 365 days).
        volatility_annualised: f64,
        #[serde(flatten)]
        distribution: Option<DistributionFields>,
    },
    Signal {
        signal: &'static str,
        probabilities: Probabilities,
    },
}

/// The distribution fields of a volatility forecast (models trained with `train.quantiles`):
/// the median of σ, its quantiles by level, and the central 80 % and 90 % intervals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DistributionFields {
    pub median: f64,
    /// Quantiles of σ keyed by level (`"0.05"` … `"0.95"`), non-decreasing in the level.
    pub quantiles: std::collections::BTreeMap<String, f64>,
    /// `[q0.1, q0.9]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_80: Option<[f64; 2]>,
    /// `[q0.05, q0.95]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_90: Option<[f64; 2]>,
}

impl DistributionFields {
    /// The fields of `f`, `None` for a point forecast (or one without a 0.5 level).
    pub fn of(f: &crate::distribution::VolatilityForecast) -> Option<Self> {
        let q = f.quantiles.as_ref()?;
        Some(Self {
            median: q.median()?,
            quantiles: q
                .levels
                .iter()
                .zip(&q.values)
                .map(|(l, v)| (crate::distribution::level_key(*l), *v))
                .collect(),
            interval_80: q.interval(0.8).map(|(a, b)| [a, b]),
            interval_90: q.interval(0.9).map(|(a, b)| [a, b]),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Probabilities {
    pub sell: f64,
    pub hold: f64,
    pub buy: f64,
}

/// √(bars in 365 days): per-bar volatility to annualised.
pub fn annualiser(bar: Interval) -> f64 {
    (365.0 * 86_400_000.0 / bar.ms() as f64).sqrt()
}

/// Who made the forecast, from which bar, how.
#[derive(Debug, Clone)]
pub struct Made<'a> {
    pub model: &'a str,
    pub version: u32,
    pub symbol: &'a str,
    pub from: i64,
    pub candles_used: usize,
    pub history: &'static str,
    pub age_ms: Option<i64>,
}

impl PointForecast {
    /// The answer for `prediction`, made as `made` says with `spec`.
    pub fn new(spec: &FeatureSpec, made: &Made<'_>, prediction: &Prediction) -> Self {
        let value = match prediction {
            Prediction::Volatility(v) => Value::Volatility {
                units: format!(
                    "standard deviation of the {} log return; annualised = times sqrt(bars per year)",
                    spec.bar
                ),
                volatility: v.mean,
                volatility_annualised: v.mean * annualiser(spec.bar),
                distribution: DistributionFields::of(v),
            },
            Prediction::Signal {
                signal,
                probabilities,
            } => Value::Signal {
                signal: signal.as_str(),
                probabilities: Probabilities {
                    sell: probabilities[Signal::Sell.index()],
                    hold: probabilities[Signal::Hold.index()],
                    buy: probabilities[Signal::Buy.index()],
                },
            },
        };
        Self {
            model: made.model.to_owned(),
            version: made.version,
            symbol: made.symbol.to_owned(),
            bar: spec.bar.to_string(),
            from_bar: rfc3339(made.from),
            target_bar: rfc3339(made.from + spec.bar.ms()),
            horizon_bars: spec.target.horizon,
            candles_used: made.candles_used,
            history: made.history,
            age_secs: made.age_ms.map(|ms| ms.div_euclid(1000)),
            value,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::features::{FeatureParams, TargetParams};

    const H: i64 = 3_600_000;

    fn spec_of(lookback: usize) -> FeatureSpec {
        FeatureSpec {
            bar: Interval::H1,
            features: FeatureParams {
                return_windows: vec![1],
                har_windows: vec![1, lookback],
                long_window: 2,
                seasonal_days: 0,
                ewma_lambdas: vec![],
                flow: crate::flow::Flow::Off,
            },
            target: TargetParams::default(),
        }
    }

    fn bars(hours: &[i64]) -> Vec<Candle> {
        hours
            .iter()
            .map(|&h| Candle {
                ts: h * H,
                open: 100.0,
                high: 101.0,
                low: 99.0,
                close: 100.0,
                volume: 1.0,
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn the_window_is_the_newest_history_bars_and_older_holes_do_not_matter() {
        let s = spec_of(4);
        assert_eq!(history_bars(&s), 5);
        let b = bars(&[0, 2, 3, 4, 5, 6, 7]);
        let w = window(&s, &b).unwrap();
        assert_eq!(
            w.iter().map(|c| c.ts / H).collect::<Vec<_>>(),
            [3, 4, 5, 6, 7]
        );
    }

    #[test]
    fn a_hole_in_the_window_is_named_with_its_first_bar_and_size() {
        let s = spec_of(4);
        let e = window(&s, &bars(&[0, 1, 2, 3, 6, 7])).unwrap_err();
        assert_eq!(
            e,
            ForecastError::Gap {
                first_missing: 4 * H,
                missing: 2,
                after: 3 * H,
                before: 6 * H,
                bar: Interval::H1,
                need: 5
            }
        );
        assert!(
            e.to_string()
                .starts_with("2 missing 1h bar(s) from 1970-01-01T04:00:00Z")
        );
        // A hole just before the window's first bar still leaves the window short of bars.
        let e = window(&s, &bars(&[0, 1, 4, 5, 6, 7])).unwrap_err();
        assert!(
            matches!(e, ForecastError::Gap { first_missing, missing: 2, .. } if first_missing == 2 * H)
        );
        let e = window(&s, &bars(&[4, 5, 6, 7])).unwrap_err();
        assert!(matches!(
            e,
            ForecastError::Short {
                have: 4,
                need: 5,
                ..
            }
        ));
        assert!(matches!(
            window(&s, &[]).unwrap_err(),
            ForecastError::Short { have: 0, .. }
        ));
    }

    #[test]
    fn a_bar_closed_more_than_max_age_ago_is_stale() {
        // Opened 10:00, closed 11:00; one bar of tolerance: fresh until 12:00.
        assert_eq!(
            freshness(10 * H, Interval::H1, 11 * H + 5_000, H),
            Ok(5_000)
        );
        assert_eq!(freshness(10 * H, Interval::H1, 12 * H, H), Ok(H));
        let e = freshness(10 * H, Interval::H1, 12 * H + 1, H).unwrap_err();
        assert!(matches!(e, ForecastError::Stale { newest, .. } if newest == 10 * H));
        assert!(e.to_string().contains("1970-01-01T10:00:00Z"), "{e}");
    }

    #[test]
    fn a_stored_history_is_checked_for_age_first_then_holes() {
        let s = spec_of(4);
        let now = 8 * H + 60_000;
        // Bars 0..=7 closed by 8:01; bar 8 (still open) is ignored.
        let st = stored(
            &s,
            &bars(&[0, 1, 2, 3, 4, 5, 6, 7, 8]),
            Interval::H1,
            now,
            H,
        )
        .unwrap();
        assert_eq!(st.window.last().unwrap().ts, 7 * H);
        assert_eq!(st.age_ms, 60_000);
        let e = stored(&s, &bars(&[0, 1, 2, 3, 4, 5]), Interval::H1, now, H).unwrap_err();
        assert!(
            matches!(e, ForecastError::Stale { newest, .. } if newest == 5 * H),
            "{e}"
        );
        let mut b = bars(&[0, 1, 2, 3, 4, 5, 6, 7]);
        b[5].close = f64::NAN;
        let e = stored(&s, &b, Interval::H1, now, H).unwrap_err();
        assert!(
            matches!(e, ForecastError::Gap { first_missing, missing: 1, .. } if first_missing == 5 * H),
            "{e}"
        );
    }

    #[test]
    fn finer_candles_are_resampled_and_an_unfinished_bar_left_out() {
        let s = spec_of(2);
        let q = H / 4;
        // Quarter-hours of hours 0..=3, and only two of hour 4.
        let quarters: Vec<Candle> = (0..18)
            .map(|i| Candle {
                ts: i * q,
                open: 100.0,
                high: 101.0 + i as f64,
                low: 99.0,
                close: 100.0,
                volume: 1.0,
                ..Default::default()
            })
            .collect();
        let st = stored(&s, &quarters, Interval::from_ms(q).unwrap(), 5 * H, 2 * H).unwrap();
        assert_eq!(
            st.window.iter().map(|c| c.ts / H).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(st.window[2].high, 101.0 + 15.0);
    }

    #[test]
    fn the_answer_has_the_point_forecast_under_volatility() {
        let s = spec_of(4);
        let made = Made {
            model: "m",
            version: 3,
            symbol: "BTC-USD",
            from: 10 * H,
            candles_used: 5,
            history: "raw_dataset",
            age_ms: Some(61_500),
        };
        let f = PointForecast::new(
            &s,
            &made,
            &Prediction::Volatility(crate::distribution::VolatilityForecast::point(0.01)),
        );
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["task"], "volatility");
        assert_eq!(v["volatility"], 0.01);
        assert_eq!(v["from_bar"], "1970-01-01T10:00:00Z");
        assert_eq!(v["target_bar"], "1970-01-01T11:00:00Z");
        assert_eq!(v["age_secs"], 61);
        let a = v["volatility_annualised"].as_f64().unwrap();
        assert!((a - 0.01 * (8760.0f64).sqrt()).abs() < 1e-12);
    }

    /// The check every forecast path goes through: a flow model refuses candles without the
    /// order-flow columns.
    #[test]
    fn a_flow_models_input_needs_the_order_flow_columns() {
        let mut s = spec_of(4);
        s.features.flow = crate::flow::Flow::On;
        let window = bars(&[0, 1, 2, 3, 4]);
        let err = model_input(&s, &s.names(), &[], None, &window).unwrap_err();
        assert_eq!(
            err,
            ForecastError::MissingColumn {
                column: crate::flow::FlowColumn::Trades,
                at: 0
            }
        );
        let with: Vec<Candle> = window
            .iter()
            .map(|c| Candle {
                trades: Some(10),
                taker_buy_volume: Some(c.volume / 2.0),
                ..*c
            })
            .collect();
        let (_, x) = model_input(&s, &s.names(), &[], None, &with).unwrap();
        assert_eq!(x.len(), s.names().len());
    }
}
