//! Order-flow features from the Binance klines' extra columns (issue #16): how busy the market
//! is (trade count), how large the trades are, and which side the takers are on.
//!
//! They read two of the optional [`Candle`] columns, `trades` and `taker_buy_volume` (with the
//! bar's `volume`), and are built only when `features.flow` resolves to on ([`Flow`]). With
//! `L = features.long_window`:
//!
//! | feature | definition | window | units |
//! |---|---|---|---|
//! | `trades_surprise_{L}b` | `ln n_t − mean(ln n)` over the last L bars, `n` = trades | L | log ratio |
//! | `trade_size_surprise_{L}b` | `ln(v_t / n_t) − mean(ln(v / n))` over the last L bars | L | log ratio |
//! | `taker_buy_imbalance` | `2 · taker_buy_volume_t / v_t − 1`, clamped to `[−1, 1]` | 1 bar | fraction |
//! | `taker_buy_imbalance_{L}b` | mean of `taker_buy_imbalance` over the last L bars | L | fraction |
//!
//! A bar without the column, with zero trades or zero volume has no value (NaN) for the features
//! that divide by or take the log of it; a window mean needs half of its L values, like every
//! windowed feature. Each feature of slot `t` reads slots `t − L + 1 ..= t` only, so online mode
//! keeps them with the rest of the per-bar series ([`crate::features`]), bit-identical to batch.

use crate::candle::Candle;
use crate::features::trailing_mean;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Whether the order-flow features are built (`features.flow` in params.yaml).
///
/// `auto` is resolved against the data by `rps transform` ([`Flow::resolve`]), and a model's
/// saved schema records the outcome (`on` or `off`), never `auto`. A schema written before the
/// knob existed has no `flow` key, reads as `auto`, and means `off`: those models have no flow
/// features ([`Flow::is_on`] is false for everything but `on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    /// On when at least half of the training split's bars carry `trades` and
    /// `taker_buy_volume` ([`Coverage::enough`]), else off.
    #[default]
    Auto,
    /// Always built; transform fails when no bar of the training split carries the columns.
    On,
    /// Never built.
    Off,
}

impl Flow {
    /// Whether the features are built: only a resolved `on`.
    pub fn is_on(self) -> bool {
        self == Self::On
    }

    /// `on` or `off` for data whose training split has this coverage: `auto` is on when
    /// [`Coverage::enough`], `on` needs at least one bar with the columns.
    ///
    /// # Errors
    /// [`FlowError::Missing`] for `on` when no bar carries the columns.
    pub fn resolve(self, coverage: Coverage) -> Result<Self, FlowError> {
        match self {
            Self::Off => Ok(Self::Off),
            Self::Auto if coverage.enough() => Ok(Self::On),
            Self::Auto => Ok(Self::Off),
            Self::On if coverage.with_flow > 0 => Ok(Self::On),
            Self::On => Err(FlowError::Missing {
                bars: coverage.bars,
            }),
        }
    }

    /// What a saved schema's value means: `auto` (a schema older than the knob) is `off`.
    pub fn saved(self) -> Self {
        if self.is_on() { Self::On } else { Self::Off }
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::On => "on",
            Self::Off => "off",
        })
    }
}

/// `features.flow: on` on data without the order-flow columns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    #[error(
        "features.flow is `on` but none of the {bars} bars of the training split carries the order-flow columns trades and taker_buy_volume (map them in data.file.columns, or use data.source: binance); set features.flow to auto or off to train without them"
    )]
    Missing { bars: usize },
    #[error(
        "features.flow is `on` but {what} never carries the order-flow columns trades and taker_buy_volume; set features.flow to auto or off"
    )]
    NoSource { what: String },
}

impl FlowError {
    /// Whether params.yaml alone is wrong (no data looked at).
    pub fn is_config(&self) -> bool {
        matches!(self, Self::NoSource { .. })
    }
}

/// The one check of `features.flow` against the rest of params.yaml: `on` needs a source that
/// can carry the columns — Binance, or a file with `trades` and `taker_buy_volume` mapped in
/// `data.file.columns` (CoinCap and synthetic bars never have them).
///
/// # Errors
/// [`FlowError::NoSource`] naming the source.
pub fn check_params(flow: Flow, data: &crate::params::DataParams) -> Result<(), FlowError> {
    use crate::params::SourceKind;
    if flow != Flow::On {
        return Ok(());
    }
    let what = match data.source {
        SourceKind::Binance => return Ok(()),
        SourceKind::File => {
            let c = &data.file.columns;
            if c.trades.is_some() && c.taker_buy_volume.is_some() {
                return Ok(());
            }
            "data.source: file without trades and taker_buy_volume in data.file.columns"
        }
        SourceKind::Coincap => "data.source: coincap",
        SourceKind::Synthetic => "data.source: synthetic",
    };
    Err(FlowError::NoSource {
        what: what.to_owned(),
    })
}

/// A raw candle column beyond OHLCV that a model's features read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowColumn {
    /// `Candle::trades`.
    Trades,
    /// `Candle::taker_buy_volume`.
    TakerBuyVolume,
}

impl FlowColumn {
    /// The columns the flow features read.
    pub const ALL: [Self; 2] = [Self::Trades, Self::TakerBuyVolume];

    /// The field's name in a candle (JSON, the stream's table, `data.file.columns`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Trades => "trades",
            Self::TakerBuyVolume => "taker_buy_volume",
        }
    }

    /// Whether `c` carries this column.
    pub fn present(self, c: &Candle) -> bool {
        match self {
            Self::Trades => c.trades.is_some(),
            Self::TakerBuyVolume => c.taker_buy_volume.is_some(),
        }
    }
}

impl fmt::Display for FlowColumn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How many bars carry every column the flow features read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Coverage {
    /// Bars looked at.
    pub bars: usize,
    /// Those with both `trades` and `taker_buy_volume`.
    pub with_flow: usize,
}

impl Coverage {
    /// The coverage of `bars`.
    pub fn of<'a>(bars: impl IntoIterator<Item = &'a Candle>) -> Self {
        let mut c = Self::default();
        for b in bars {
            c.bars += 1;
            if FlowColumn::ALL.iter().all(|col| col.present(b)) {
                c.with_flow += 1;
            }
        }
        c
    }

    /// At least half of the bars (and at least one) carry the columns: what `auto` builds on.
    pub fn enough(self) -> bool {
        self.with_flow > 0 && self.with_flow * 2 >= self.bars
    }
}

/// Names of the flow features for long window `l`, in row order.
pub fn names(l: usize) -> [String; 4] {
    [
        format!("trades_surprise_{l}b"),
        format!("trade_size_surprise_{l}b"),
        "taker_buy_imbalance".to_owned(),
        format!("taker_buy_imbalance_{l}b"),
    ]
}

/// Whether `name` is a flow feature's (for any window).
pub fn is_flow_feature(name: &str) -> bool {
    name.starts_with("trades_surprise_")
        || name.starts_with("trade_size_surprise_")
        || name.starts_with("taker_buy_imbalance")
}

/// `ln x` for a positive finite `x`, else NaN.
fn ln_pos(x: f64) -> f64 {
    if x > 0.0 && x.is_finite() {
        x.ln()
    } else {
        f64::NAN
    }
}

/// The per-bar order-flow series, one slot per grid bar (a slot depends on its own bar only).
#[derive(Debug, Clone, Default)]
pub(crate) struct FlowSeries {
    /// `ln trades` (NaN for none, zero trades or no bar).
    log_trades: Vec<f64>,
    /// `ln(volume / trades)`: log average trade size in the base asset.
    log_size: Vec<f64>,
    /// `2 · taker_buy_volume / volume − 1`, clamped to `[−1, 1]`.
    imbalance: Vec<f64>,
}

impl FlowSeries {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self {
            log_trades: Vec::with_capacity(n),
            log_size: Vec::with_capacity(n),
            imbalance: Vec::with_capacity(n),
        }
    }

    /// Append the next grid slot (`None` where the exchange has no bar).
    pub(crate) fn push(&mut self, bar: Option<&Candle>) {
        let volume = bar.map_or(f64::NAN, |c| c.volume);
        #[allow(clippy::cast_precision_loss)]
        let trades = bar.and_then(|c| c.trades).map_or(f64::NAN, |n| n as f64);
        let log_trades = ln_pos(trades);
        self.log_trades.push(log_trades);
        self.log_size.push(ln_pos(volume) - log_trades);
        let taker = bar.and_then(|c| c.taker_buy_volume).unwrap_or(f64::NAN);
        self.imbalance.push(if volume > 0.0 && taker >= 0.0 {
            (2.0 * taker / volume - 1.0).clamp(-1.0, 1.0)
        } else {
            f64::NAN
        });
    }

    /// Forget the oldest `n` slots.
    pub(crate) fn drop_front(&mut self, n: usize) {
        for v in [
            &mut self.log_trades,
            &mut self.log_size,
            &mut self.imbalance,
        ] {
            v.drain(..n.min(v.len()));
        }
    }

    /// The flow features of slot `t` with long window `l`, in the order of [`names`], appended
    /// to `out`. Reads slots `t + 1 − l ..= t` only.
    pub(crate) fn row_into(&self, t: usize, l: usize, out: &mut Vec<f64>) {
        out.push(self.log_trades[t] - trailing_mean(&self.log_trades, t, l));
        out.push(self.log_size[t] - trailing_mean(&self.log_size, t, l));
        out.push(self.imbalance[t]);
        out.push(trailing_mean(&self.imbalance, t, l));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn bar(volume: f64, trades: Option<u64>, taker: Option<f64>) -> Candle {
        Candle {
            trades,
            taker_buy_volume: taker,
            ..Candle::ohlcv(0, 100.0, 101.0, 99.0, 100.0, volume)
        }
    }

    fn close_to(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    /// Four bars by hand with L = 2 (a window needs one finite value of two).
    #[test]
    fn definitions_by_hand() {
        let bars = [
            bar(10.0, Some(100), Some(7.5)),
            bar(20.0, Some(400), Some(5.0)),
            bar(0.0, Some(0), Some(0.0)), // no trading: every per-bar value is missing
            bar(8.0, None, None),         // a bar without the columns
            bar(30.0, Some(50), Some(40.0)), // taker > volume (bad data): clamped to 1
        ];
        let mut s = FlowSeries::default();
        for b in &bars {
            s.push(Some(b));
        }
        s.push(None);
        let row = |t: usize| {
            let mut out = Vec::new();
            s.row_into(t, 2, &mut out);
            out
        };
        // Slot 0: the windows start before the data; the bar's own imbalance is known.
        let r = row(0);
        assert!(r[0].is_nan() && r[1].is_nan() && r[3].is_nan());
        close_to(r[2], 0.5);
        // Slot 1: trades 100 → 400, sizes 0.1 → 0.05, imbalances 0.5 → −0.5.
        let r = row(1);
        close_to(r[0], 400f64.ln() - (100f64.ln() + 400f64.ln()) / 2.0);
        close_to(r[1], 0.05f64.ln() - (0.1f64.ln() + 0.05f64.ln()) / 2.0);
        close_to(r[2], -0.5);
        close_to(r[3], 0.0);
        // Slot 2: zero volume and trades → the bar's values are missing; the means keep slot 1.
        let r = row(2);
        assert!(r[0].is_nan() && r[1].is_nan() && r[2].is_nan());
        close_to(r[3], -0.5);
        // Slot 3: no columns; the window (2, 3) has no finite value.
        assert!(row(3).iter().all(|v| v.is_nan()));
        // Slot 4: imbalance clamped; the means are the bar's own (one of two).
        let r = row(4);
        close_to(r[0], 0.0);
        close_to(r[1], 0.0);
        close_to(r[2], 1.0);
        close_to(r[3], 1.0);
        // A missing bar.
        let r = row(5);
        assert!(r[0].is_nan() && r[2].is_nan());
        close_to(r[3], 1.0);
        assert!((0..6).flat_map(row).all(|v| !v.is_infinite()), "never inf");
    }

    #[test]
    fn auto_on_off_resolve_by_coverage() {
        let with = bar(1.0, Some(1), Some(0.5));
        let without = bar(1.0, None, Some(0.5));
        let c = Coverage::of([&with, &without, &without]);
        assert_eq!(
            c,
            Coverage {
                bars: 3,
                with_flow: 1
            }
        );
        assert!(!c.enough());
        assert_eq!(Flow::Auto.resolve(c), Ok(Flow::Off));
        assert_eq!(Flow::On.resolve(c), Ok(Flow::On));
        assert_eq!(Flow::Off.resolve(c), Ok(Flow::Off));
        let half = Coverage::of([&with, &without]);
        assert_eq!(Flow::Auto.resolve(half), Ok(Flow::On));
        let none = Coverage::of([&without]);
        let err = Flow::On.resolve(none).unwrap_err();
        assert_eq!(err, FlowError::Missing { bars: 1 });
        assert!(err.to_string().contains("trades and taker_buy_volume"));
        assert_eq!(Flow::Auto.resolve(Coverage::default()), Ok(Flow::Off));
        assert_eq!(Flow::Auto.saved(), Flow::Off);
        assert!(!Flow::Auto.is_on());
    }

    #[test]
    fn on_needs_a_source_with_the_columns() {
        let mut p = crate::params::Params::default();
        assert!(check_params(Flow::Auto, &p.data).is_ok());
        let err = check_params(Flow::On, &p.data).unwrap_err();
        assert!(err.is_config());
        assert!(err.to_string().contains("data.file.columns"), "{err}");
        p.data.file.columns.trades = Some("number_of_trades".into());
        p.data.file.columns.taker_buy_volume = Some("taker_buy_base_asset_volume".into());
        assert!(check_params(Flow::On, &p.data).is_ok());
        p.data.source = crate::params::SourceKind::Synthetic;
        assert!(check_params(Flow::On, &p.data).is_err());
        p.data.source = crate::params::SourceKind::Binance;
        assert!(check_params(Flow::On, &p.data).is_ok());
        assert!(!FlowError::Missing { bars: 0 }.is_config());
    }

    /// `features.flow` in params.yaml: an enum with one default, typos refused.
    #[test]
    fn the_knob_parses_from_params_yaml() {
        let p: crate::params::Params = serde_yaml::from_str("{}").unwrap();
        assert_eq!(p.features.flow, Flow::Auto);
        let p: crate::params::Params = serde_yaml::from_str("features:\n  flow: on\n").unwrap();
        assert_eq!(p.features.flow, Flow::On);
        let p: crate::params::Params = serde_yaml::from_str("features:\n  flow: off\n").unwrap();
        assert_eq!(p.features.flow, Flow::Off);
        let err = serde_yaml::from_str::<crate::params::Params>("features:\n  flow: yes\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant"), "{err}");
        let text = include_str!("../../../params.yaml");
        let p: crate::params::Params = serde_yaml::from_str(text).unwrap();
        assert_eq!(p.features.flow, Flow::Auto, "the repository's params.yaml");
    }

    #[test]
    fn names_and_serde() {
        let n = names(24);
        assert_eq!(n[0], "trades_surprise_24b");
        assert!(n.iter().all(|s| is_flow_feature(s)));
        assert!(!is_flow_feature("volume_surprise_24b"));
        assert_eq!(serde_json::to_string(&Flow::On).unwrap(), "\"on\"");
        assert_eq!(
            serde_json::from_str::<FlowColumn>("\"taker_buy_volume\"").unwrap(),
            FlowColumn::TakerBuyVolume
        );
        assert!(serde_json::from_str::<Flow>("\"yes\"").is_err());
    }
}
