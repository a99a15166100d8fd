//! OHLCV candles on a regular bar grid.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Milliseconds in one hour.
pub const HOUR_MS: i64 = 3_600_000;

/// One OHLCV bar. `ts` is the bar's **open** time in milliseconds since the Unix epoch (UTC).
///
/// Besides OHLCV a bar may carry the order-flow columns of Binance klines (issue #16):
/// quote-asset volume, number of trades, taker-buy base and quote volume. They are `None` where
/// the source has no such column (Coinbase and ETH files, CoinCap, synthetic data, raw datasets
/// written before the columns existed). Code without them builds a candle with
/// `..Candle::default()` (or [`Candle::ohlcv`]); `Default` is all zeros and no flow columns.
/// In JSON an absent column is omitted, so candles without them serialize as before.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Candle {
    pub ts: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    /// Volume in the base asset (BTC for BTC-USD). May be zero.
    pub volume: f64,
    /// Volume in the quote asset (USDT for BTCUSDT): klines field 7.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote_volume: Option<f64>,
    /// Number of trades in the bar: klines field 8. A count, so an integer (Parquet `UInt64`);
    /// features take it as `f64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trades: Option<u64>,
    /// Base-asset volume bought by takers (market buys): klines field 9.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taker_buy_volume: Option<f64>,
    /// Quote-asset volume bought by takers: klines field 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taker_buy_quote_volume: Option<f64>,
}

impl Candle {
    /// A bar with OHLCV only (no order-flow columns).
    pub fn ohlcv(ts: i64, open: f64, high: f64, low: f64, close: f64, volume: f64) -> Self {
        Self {
            ts,
            open,
            high,
            low,
            close,
            volume,
            ..Self::default()
        }
    }

    /// Whether any order-flow column is present.
    pub fn has_flow(&self) -> bool {
        self.quote_volume.is_some()
            || self.trades.is_some()
            || self.taker_buy_volume.is_some()
            || self.taker_buy_quote_volume.is_some()
    }

    /// Add a later sub-bar's order-flow columns to this bar's (resampling): each column is the
    /// sum over the sub-bars, and stays known only while every sub-bar has it.
    pub fn add_flow(&mut self, c: &Candle) {
        let add = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(x, y)| x + y);
        self.quote_volume = add(self.quote_volume, c.quote_volume);
        self.taker_buy_volume = add(self.taker_buy_volume, c.taker_buy_volume);
        self.taker_buy_quote_volume = add(self.taker_buy_quote_volume, c.taker_buy_quote_volume);
        self.trades = self.trades.zip(c.trades).map(|(x, y)| x.saturating_add(y));
    }
}

/// A bar length. Serialized the way exchanges write it (`1m`, `30m`, `1h`, `1d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Interval {
    ms: i64,
}

impl Interval {
    pub const M1: Self = Self { ms: 60_000 };
    pub const M30: Self = Self { ms: 1_800_000 };
    pub const H1: Self = Self { ms: HOUR_MS };

    /// An interval of `ms` milliseconds (must be a positive whole number of seconds).
    pub fn from_ms(ms: i64) -> Option<Self> {
        (ms > 0 && ms % 1000 == 0).then_some(Self { ms })
    }

    pub fn ms(self) -> i64 {
        self.ms
    }

    /// The bar that contains `ts`, as its open time.
    pub fn floor(self, ts: i64) -> i64 {
        ts.div_euclid(self.ms) * self.ms
    }
}

/// The interval string could not be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid interval {0:?}: expected a number and a unit such as 1m, 5m, 30m, 1h, 4h, 1d")]
pub struct IntervalParseError(String);

impl FromStr for Interval {
    type Err = IntervalParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || IntervalParseError(s.to_owned());
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        let (n, unit) = s.split_at(split);
        let n: i64 = n.parse().map_err(|_| err())?;
        let unit_ms = match unit {
            "s" => 1_000,
            "m" => 60_000,
            "h" => HOUR_MS,
            "d" => 24 * HOUR_MS,
            "w" => 7 * 24 * HOUR_MS,
            _ => return Err(err()),
        };
        n.checked_mul(unit_ms)
            .and_then(Self::from_ms)
            .ok_or_else(err)
    }
}

impl TryFrom<String> for Interval {
    type Error = IntervalParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Interval> for String {
    fn from(i: Interval) -> Self {
        i.to_string()
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [
            (7 * 24 * HOUR_MS, "w"),
            (24 * HOUR_MS, "d"),
            (HOUR_MS, "h"),
            (60_000, "m"),
            (1_000, "s"),
        ];
        for (unit, name) in units {
            if self.ms % unit == 0 {
                return write!(f, "{}{name}", self.ms / unit);
            }
        }
        write!(f, "{}ms", self.ms)
    }
}

/// Sort by time and drop duplicate timestamps; where two bars share a timestamp the one that
/// comes later in `bars` wins (so `merge(old ++ new)` prefers fresh data).
pub fn sort_dedup(bars: &mut Vec<Candle>) {
    // A stable sort keeps the input order among equal timestamps; reverse-dedup keeps the last.
    bars.sort_by_key(|c| c.ts);
    let mut out: Vec<Candle> = Vec::with_capacity(bars.len());
    for bar in bars.drain(..) {
        match out.last_mut() {
            Some(last) if last.ts == bar.ts => *last = bar,
            _ => out.push(bar),
        }
    }
    *bars = out;
}

/// Merge fresh bars into an existing sorted series: fresh bars replace existing ones at the same
/// timestamp. The result is sorted and free of duplicates.
pub fn merge(existing: &[Candle], fresh: &[Candle]) -> Vec<Candle> {
    let mut all = Vec::with_capacity(existing.len() + fresh.len());
    all.extend_from_slice(existing);
    all.extend_from_slice(fresh);
    sort_dedup(&mut all);
    all
}

/// Aggregate bars onto a coarser grid (e.g. 30m → 1h). Bars are assumed sorted. A coarse bar is
/// produced for every coarse slot that holds at least one fine bar. Returns the coarse bars and,
/// for each, the fine bars' closes in order (for realized volatility).
pub fn resample(bars: &[Candle], to: Interval) -> Vec<(Candle, Vec<Candle>)> {
    let mut out: Vec<(Candle, Vec<Candle>)> = Vec::new();
    for bar in bars {
        let slot = to.floor(bar.ts);
        match out.last_mut() {
            Some((agg, parts)) if agg.ts == slot => {
                agg.high = agg.high.max(bar.high);
                agg.low = agg.low.min(bar.low);
                agg.close = bar.close;
                agg.volume += bar.volume;
                agg.add_flow(bar);
                parts.push(*bar);
            }
            _ => out.push((Candle { ts: slot, ..*bar }, vec![*bar])),
        }
    }
    out
}

/// Guess the bar interval of a sorted series: the most common positive step.
pub fn infer_interval(bars: &[Candle]) -> Option<Interval> {
    let mut steps: Vec<i64> = bars
        .windows(2)
        .map(|w| w[1].ts - w[0].ts)
        .filter(|&d| d > 0)
        .collect();
    if steps.is_empty() {
        return None;
    }
    steps.sort_unstable();
    let mut best = (steps[0], 0usize);
    let mut run = (steps[0], 0usize);
    for &s in &steps {
        if s == run.0 {
            run.1 += 1;
        } else {
            run = (s, 1);
        }
        if run.1 > best.1 {
            best = run;
        }
    }
    Interval::from_ms(best.0)
}

/// Bars whose open time is off the `interval` grid, found by [`snap_to_grid`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffGrid {
    /// Each off-grid bar as `(its stamped open time, the slot it was moved to)`, in input order.
    pub snapped: Vec<(i64, i64)>,
    /// Slots where a snapped bar met another bar (on-grid or snapped), ascending, each once.
    pub collisions: Vec<i64>,
}

/// The off-grid policy, the one place the quality gate and the transform share (issue #16).
///
/// A bar whose open time is not a multiple of `interval` (Binance's 43 bars stamped `hh:28:14`
/// after the February 2018 outage) is **snapped** to the slot it opened in: its open time is
/// floored to the grid. That is the slot whose hour the bar mostly covers when it opened early
/// in it, and never a slot the bar had not started in. The snap is only sound when that slot
/// holds no other bar; a snapped bar that lands on an occupied slot is a **collision**, listed
/// here — the gate fails on any ([`crate::quality`]'s `off_grid` check) and [`align`] refuses
/// them, since picking one of two bars for an hour would invent data. Exact duplicate
/// timestamps are not collisions: they are the `duplicates` check's business, collapsed by
/// [`sort_dedup`] as before.
pub fn snap_to_grid(bars: &mut [Candle], interval: Interval) -> OffGrid {
    let mut out = OffGrid::default();
    let mut slots: Vec<(i64, bool)> = Vec::with_capacity(bars.len());
    for c in bars.iter_mut() {
        let slot = interval.floor(c.ts);
        let moved = slot != c.ts;
        if moved {
            out.snapped.push((c.ts, slot));
            c.ts = slot;
        }
        slots.push((slot, moved));
    }
    if out.snapped.is_empty() {
        return out;
    }
    slots.sort_unstable();
    for group in slots.chunk_by(|a, b| a.0 == b.0) {
        if group.len() > 1 && group.iter().any(|&(_, moved)| moved) {
            out.collisions.push(group[0].0);
        }
    }
    out
}

/// Snapped bars landed on slots that already held a bar (see [`snap_to_grid`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} bars off the {interval} grid would share a slot with another bar once snapped to the slot they opened in (at {}); fix or drop those rows in the source",
    .slots.len(),
    .slots.iter().take(5).map(|&t| crate::quality::rfc3339(t)).collect::<Vec<_>>().join(", ")
)]
pub struct OffGridCollision {
    pub interval: Interval,
    pub slots: Vec<i64>,
}

/// Snap off-grid bars to the grid ([`snap_to_grid`]), then sort and de-duplicate
/// ([`sort_dedup`]): the candles the bar grid is built from. Returns what was snapped.
///
/// # Errors
/// [`OffGridCollision`] when a snapped bar lands on a slot that holds another bar.
pub fn align(bars: &mut Vec<Candle>, interval: Interval) -> Result<OffGrid, OffGridCollision> {
    let off = snap_to_grid(bars, interval);
    if !off.collisions.is_empty() {
        return Err(OffGridCollision {
            interval,
            slots: off.collisions,
        });
    }
    sort_dedup(bars);
    Ok(off)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(ts: i64, close: f64) -> Candle {
        Candle {
            ts,
            open: close,
            high: close + 1.0,
            low: close - 1.0,
            close,
            volume: 1.0,
            ..Default::default()
        }
    }

    #[test]
    fn interval_parses_and_prints() {
        for (s, ms) in [
            ("1m", 60_000),
            ("30m", 1_800_000),
            ("1h", HOUR_MS),
            ("4h", 4 * HOUR_MS),
            ("1d", 86_400_000),
        ] {
            let i: Interval = s.parse().unwrap();
            assert_eq!(i.ms(), ms);
            assert_eq!(i.to_string(), s);
        }
        assert!("h".parse::<Interval>().is_err());
        assert!("0h".parse::<Interval>().is_err());
        assert!("3x".parse::<Interval>().is_err());
        assert_eq!("60m".parse::<Interval>().unwrap().to_string(), "1h");
    }

    #[test]
    fn merge_prefers_fresh_and_dedups() {
        let old = vec![bar(0, 1.0), bar(1, 2.0), bar(2, 3.0)];
        let fresh = vec![bar(2, 30.0), bar(3, 4.0), bar(3, 40.0)];
        let m = merge(&old, &fresh);
        assert_eq!(m.iter().map(|c| c.ts).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
        assert_eq!(m[2].close, 30.0);
        assert_eq!(m[3].close, 40.0);
        // Merging again is a no-op.
        assert_eq!(merge(&m, &fresh), m);
    }

    #[test]
    fn resample_aggregates_ohlcv() {
        let h = HOUR_MS;
        let half = h / 2;
        let bars = vec![
            Candle {
                ts: 0,
                open: 10.0,
                high: 12.0,
                low: 9.0,
                close: 11.0,
                volume: 1.0,
                ..Default::default()
            },
            Candle {
                ts: half,
                open: 11.0,
                high: 15.0,
                low: 10.0,
                close: 14.0,
                volume: 2.0,
                ..Default::default()
            },
            Candle {
                ts: h,
                open: 14.0,
                high: 14.5,
                low: 13.0,
                close: 13.5,
                volume: 0.5,
                ..Default::default()
            },
        ];
        let r = resample(&bars, Interval::H1);
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0].0,
            Candle {
                ts: 0,
                open: 10.0,
                high: 15.0,
                low: 9.0,
                close: 14.0,
                volume: 3.0,
                ..Default::default()
            }
        );
        assert_eq!(r[0].1.len(), 2);
        assert_eq!(r[1].0.ts, h);
        assert_eq!(
            infer_interval(&bars),
            Some(Interval::from_ms(half).unwrap())
        );
    }

    #[test]
    fn off_grid_bars_snap_to_the_slot_they_opened_in() {
        let h = HOUR_MS;
        let off = 28 * 60_000 + 14_000; // hh:28:14
        let mut bars = vec![
            bar(0, 1.0),
            bar(h + off, 2.0),
            bar(2 * h + off, 3.0),
            bar(3 * h, 4.0),
        ];
        let got = snap_to_grid(&mut bars, Interval::H1);
        assert_eq!(got.snapped, vec![(h + off, h), (2 * h + off, 2 * h)]);
        assert!(got.collisions.is_empty());
        assert_eq!(
            bars.iter().map(|c| c.ts).collect::<Vec<_>>(),
            vec![0, h, 2 * h, 3 * h]
        );
        // Snapping on-grid bars changes nothing.
        assert_eq!(snap_to_grid(&mut bars, Interval::H1), OffGrid::default());

        // A snapped bar meeting an on-grid one is a collision; align refuses it.
        let mut clash = vec![bar(0, 1.0), bar(h, 2.0), bar(h + off, 2.5)];
        assert_eq!(
            snap_to_grid(&mut clash.clone(), Interval::H1).collisions,
            vec![h]
        );
        let err = align(&mut clash, Interval::H1).unwrap_err();
        assert_eq!(err.slots, vec![h]);
        assert!(err.to_string().contains("1970-01-01T01:00:00Z"), "{err}");
        // Two snapped bars in one slot collide too.
        let mut two = vec![bar(off, 1.0), bar(off + 60_000, 2.0)];
        assert_eq!(snap_to_grid(&mut two, Interval::H1).collisions, vec![0]);
        // Exact duplicates are not collisions: align collapses them (the later wins).
        let mut dup = vec![bar(0, 1.0), bar(h, 2.0), bar(h, 3.0), bar(2 * h + off, 4.0)];
        let got = align(&mut dup, Interval::H1).unwrap();
        assert_eq!(got.snapped.len(), 1);
        assert_eq!(
            dup.iter().map(|c| c.close).collect::<Vec<_>>(),
            vec![1.0, 3.0, 4.0]
        );
    }

    #[test]
    fn flow_columns_sum_when_resampled_and_stay_out_of_json_when_absent() {
        let flow = |ts: i64, q: f64, n: u64| Candle {
            quote_volume: Some(q),
            trades: Some(n),
            taker_buy_volume: Some(q / 2.0),
            taker_buy_quote_volume: Some(q / 4.0),
            ..bar(ts, 1.0)
        };
        let half = HOUR_MS / 2;
        let r = resample(&[flow(0, 10.0, 3), flow(half, 20.0, 4)], Interval::H1);
        let agg = r[0].0;
        assert_eq!(
            (
                agg.quote_volume,
                agg.trades,
                agg.taker_buy_volume,
                agg.taker_buy_quote_volume
            ),
            (Some(30.0), Some(7), Some(15.0), Some(7.5))
        );
        // One sub-bar without the columns: the hour's totals are unknown.
        let r = resample(&[flow(0, 10.0, 3), bar(half, 1.0)], Interval::H1);
        assert!(!r[0].0.has_flow());

        let plain = serde_json::to_string(&bar(0, 1.0)).unwrap();
        assert!(!plain.contains("trades"), "{plain}");
        let back: Candle = serde_json::from_str(&plain).unwrap();
        assert_eq!(back, bar(0, 1.0));
        let full = flow(0, 10.0, 3);
        let json = serde_json::to_string(&full).unwrap();
        assert_eq!(serde_json::from_str::<Candle>(&json).unwrap(), full);
        assert_eq!(Candle::ohlcv(0, 1.0, 2.0, 0.5, 1.0, 1.0).trades, None);
    }
}
