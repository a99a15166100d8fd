//! OHLCV candles on a regular bar grid.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Milliseconds in one hour.
pub const HOUR_MS: i64 = 3_600_000;

/// One OHLCV bar. `ts` is the bar's **open** time in milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Candle {
    pub ts: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    /// Volume in the base asset (BTC for BTC-USD). May be zero.
    pub volume: f64,
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
            },
            Candle {
                ts: half,
                open: 11.0,
                high: 15.0,
                low: 10.0,
                close: 14.0,
                volume: 2.0,
            },
            Candle {
                ts: h,
                open: 14.0,
                high: 14.5,
                low: 13.0,
                close: 13.5,
                volume: 0.5,
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
                volume: 3.0
            }
        );
        assert_eq!(r[0].1.len(), 2);
        assert_eq!(r[1].0.ts, h);
        assert_eq!(
            infer_interval(&bars),
            Some(Interval::from_ms(half).unwrap())
        );
    }
}
