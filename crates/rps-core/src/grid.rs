//! The bar grid built one candle at a time (issue #17: batch transform).
//!
//! [`GridBuilder`] gives exactly the `(ts, grid, vol)` of [`crate::pipeline::bar_grid`] over the
//! same sorted, de-duplicated candles — bit for bit, the same floating-point operations in the
//! same order — but it folds each sub-bar into its bar as it arrives instead of holding every
//! sub-bar (`resample`'s `Vec<(Candle, Vec<Candle>)>`). Five years of one-minute candles become
//! 44 k hourly slots without 2.6 M candles ever being in memory at once: the raw dataset is
//! streamed into it partition by partition.
//!
//! What a bar keeps while it is open: its OHLCV so far (high = running max, low = running min,
//! close = the last sub-bar's, volume = running sum) and, for [`Estimator::Realized`], the
//! running `Σ r²` of its sub-bar log returns (the first return taken from the previous bar's
//! close when that bar is the adjacent slot) with the count of finite returns and the last
//! sub-bar close — everything `volatility::realized(prev_close, parts)` reads.

use crate::candle::{Candle, Interval};
use crate::volatility::{Estimator, garman_klass, log_return, parkinson};

/// A candle that does not come strictly after the previous one: the builder needs the sorted,
/// de-duplicated series that [`crate::candle::sort_dedup`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("candle at {ts} ms does not come after the previous one at {prev} ms")]
pub struct OutOfOrder {
    pub prev: i64,
    pub ts: i64,
}

/// The bar being filled.
#[derive(Debug, Clone, Copy)]
struct Open {
    agg: Candle,
    slot: usize,
    /// Running `Σ r²` over the finite sub-bar returns so far, and how many there were.
    sum: f64,
    n: usize,
    /// The last sub-bar's close (the base of the next sub-bar's return).
    last_close: f64,
}

/// Streams sorted candles of `interval` into the `bar` grid with each bar's volatility.
#[derive(Debug, Clone)]
pub struct GridBuilder {
    interval: Interval,
    bar: Interval,
    estimator: Estimator,
    last_ts: Option<i64>,
    /// The first bar's open time: slot `i` opens at `t0 + i · bar`.
    t0: Option<i64>,
    open: Option<Open>,
    /// The last closed bar's close and slot (a previous close only counts for the adjacent bar).
    prev: Option<(f64, usize)>,
    bars: Vec<Option<Candle>>,
    vol: Vec<f64>,
}

impl GridBuilder {
    /// A builder for candles of `interval` laid on the `bar` grid (`bar` a whole multiple of
    /// `interval`; equal for no resampling).
    pub fn new(interval: Interval, bar: Interval, estimator: Estimator) -> Self {
        Self {
            interval,
            bar,
            estimator,
            last_ts: None,
            t0: None,
            open: None,
            prev: None,
            bars: Vec::new(),
            vol: Vec::new(),
        }
    }

    /// Fold the next candle in.
    ///
    /// # Errors
    /// [`OutOfOrder`] when `c.ts` is not after the previous candle's; the builder is unchanged.
    pub fn push(&mut self, c: &Candle) -> Result<(), OutOfOrder> {
        // Off-grid candles are snapped to the slot they opened in (`candle::snap_to_grid`); one
        // landing where the previous candle already is comes out of order, as a collision should.
        let ts = self.interval.floor(c.ts);
        if let Some(prev) = self.last_ts
            && ts <= prev
        {
            return Err(OutOfOrder { prev, ts: c.ts });
        }
        self.last_ts = Some(ts);
        // `resample` floors to the bar; with bar == interval every candle is its own bar.
        let slot_ts = if self.bar == self.interval {
            ts
        } else {
            self.bar.floor(ts)
        };
        if let Some(open) = &mut self.open
            && open.agg.ts == slot_ts
        {
            let agg = &mut open.agg;
            agg.high = agg.high.max(c.high);
            agg.low = agg.low.min(c.low);
            agg.close = c.close;
            agg.volume += c.volume;
            agg.add_flow(c);
            if self.estimator == Estimator::Realized {
                let r = log_return(open.last_close, c.close);
                if r.is_finite() {
                    open.sum += r * r;
                    open.n += 1;
                }
                open.last_close = c.close;
            }
            return Ok(());
        }
        self.close_open();
        let t0 = *self.t0.get_or_insert(slot_ts);
        let Ok(slot) = usize::try_from((slot_ts - t0) / self.bar.ms()) else {
            // Unreachable for sorted input (slot_ts >= t0); bar_grid skips such a group too.
            return Ok(());
        };
        let mut open = Open {
            agg: Candle { ts: slot_ts, ..*c },
            slot,
            sum: 0.0,
            n: 0,
            last_close: c.close,
        };
        if self.estimator == Estimator::Realized {
            let prev_close = self
                .prev
                .filter(|&(_, p)| p + 1 == slot)
                .map_or(f64::NAN, |(close, _)| close);
            let r = log_return(prev_close, c.close);
            if r.is_finite() {
                open.sum += r * r;
                open.n += 1;
            }
        }
        self.open = Some(open);
        Ok(())
    }

    /// Close the bar being filled: its volatility, its slot on the grid.
    fn close_open(&mut self) {
        let Some(open) = self.open.take() else {
            return;
        };
        let vol = match self.estimator {
            Estimator::Parkinson => parkinson(open.agg.high, open.agg.low),
            Estimator::GarmanKlass => garman_klass(&open.agg),
            Estimator::Realized => {
                if open.n == 0 {
                    f64::NAN
                } else {
                    open.sum.sqrt()
                }
            }
        };
        let i = open.slot;
        if self.bars.len() <= i {
            self.bars.resize(i + 1, None);
            self.vol.resize(i + 1, f64::NAN);
        }
        self.bars[i] = Some(open.agg);
        self.vol[i] = vol;
        self.prev = Some((open.agg.close, i));
    }

    /// The grid: bar open times, the bars (`None` for an empty slot) and each bar's volatility
    /// (NaN where unknown) — [`crate::pipeline::bar_grid`]'s result.
    pub fn finish(mut self) -> (Vec<i64>, Vec<Option<Candle>>, Vec<f64>) {
        self.close_open();
        let t0 = self.t0.unwrap_or(0);
        let ms = self.bar.ms();
        let ts = (0..self.bars.len())
            .map(|i| t0 + i as i64 * ms)
            .collect::<Vec<_>>();
        (ts, self.bars, self.vol)
    }
}

/// One stretch of the sorted candle series — a raw partition — folded on its own, on any
/// thread, and then appended to the [`GridBuilder`] in series order ([`GridBuilder::append`]):
/// the grid is bit for bit the one pushing the same candles one by one gives.
///
/// Every bar of the stretch but its first is final once the stretch is folded: its OHLCV and
/// sub-bar returns lie inside the stretch, and its first return's base is the previous bar's
/// close, which is inside too. The first bar may continue the previous stretch's last bar and
/// its first return may start from that stretch's close, so its candles are kept as they are
/// and replayed into the builder by `append`.
#[derive(Debug, Clone)]
pub struct Segment {
    /// The candles of the stretch's first bar slot.
    head: Vec<Candle>,
    /// The whole stretch folded from its first candle (its slot 0 is the head's bar).
    local: GridBuilder,
}

impl Segment {
    /// An empty stretch of candles of `interval` for the `bar` grid (as [`GridBuilder::new`]).
    pub fn new(interval: Interval, bar: Interval, estimator: Estimator) -> Self {
        Self {
            head: Vec::new(),
            local: GridBuilder::new(interval, bar, estimator),
        }
    }

    /// Fold the next candle of the stretch in.
    ///
    /// # Errors
    /// [`OutOfOrder`] as [`GridBuilder::push`].
    pub fn push(&mut self, c: &Candle) -> Result<(), OutOfOrder> {
        self.local.push(c)?;
        if self.local.open.is_some_and(|o| o.slot == 0) {
            self.head.push(*c);
        }
        Ok(())
    }
}

impl GridBuilder {
    /// Append a stretch folded by [`Segment`]: the same grid as pushing its candles here one
    /// by one.
    ///
    /// # Errors
    /// [`OutOfOrder`] when the stretch does not start after the candles already pushed; the
    /// builder may then hold part of the stretch's first bar.
    pub fn append(&mut self, seg: Segment) -> Result<(), OutOfOrder> {
        for c in &seg.head {
            self.push(c)?;
        }
        let local = seg.local;
        let Some(local_open) = local.open else {
            return Ok(());
        };
        if local_open.slot == 0 {
            // The whole stretch is its first bar, replayed above.
            return Ok(());
        }
        // The head's bar is this builder's open bar now: close it (with the previous
        // stretch's return), then take the stretch's later bars as they are, shifted to this
        // grid's slots.
        let Some(g) = self.open.map(|o| o.slot) else {
            return Ok(());
        };
        self.close_open();
        let end = g + local.bars.len();
        if self.bars.len() < end {
            self.bars.resize(end, None);
            self.vol.resize(end, f64::NAN);
        }
        self.bars[g + 1..end].copy_from_slice(&local.bars[1..]);
        self.vol[g + 1..end].copy_from_slice(&local.vol[1..]);
        self.prev = local.prev.map(|(close, p)| (close, p + g));
        self.open = Some(Open {
            slot: local_open.slot + g,
            ..local_open
        });
        self.last_ts = local.last_ts;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::pipeline::bar_grid;
    use crate::synthetic::{SyntheticParams, simulate};

    type Grid = (Vec<i64>, Vec<Option<Candle>>, Vec<f64>);

    fn streamed(bars: &[Candle], interval: Interval, bar: Interval, e: Estimator) -> Grid {
        let mut g = GridBuilder::new(interval, bar, e);
        for c in bars {
            g.push(c).unwrap();
        }
        g.finish()
    }

    /// Bit-identical, NaN included.
    fn assert_same(a: &Grid, b: &Grid, what: &str) {
        assert_eq!(a.0, b.0, "{what}: timestamps");
        assert_eq!(a.1.len(), b.1.len(), "{what}: slots");
        let bits = |c: &Option<Candle>| {
            c.map(|c| {
                [c.open, c.high, c.low, c.close, c.volume]
                    .map(f64::to_bits)
                    .to_vec()
                    .into_iter()
                    .chain([c.ts as u64])
                    .collect::<Vec<u64>>()
            })
        };
        for (i, (x, y)) in a.1.iter().zip(&b.1).enumerate() {
            assert_eq!(bits(x), bits(y), "{what}: bar {i}");
        }
        for (i, (x, y)) in a.2.iter().zip(&b.2).enumerate() {
            assert_eq!(x.to_bits(), y.to_bits(), "{what}: vol {i}: {x} vs {y}");
        }
    }

    /// Synthetic minutes with holes: whole missing hours, partial hours, a NaN close, a
    /// zero price (non-finite returns), single-minute hours.
    fn holed_minutes() -> Vec<Candle> {
        let p = SyntheticParams {
            steps_per_bar: 1,
            ..SyntheticParams::default()
        };
        let day = 86_400_000;
        let mut bars = simulate(
            &p,
            Interval::M1,
            1_514_764_800_000,
            1_514_764_800_000 + 9 * day,
        );
        let h = 3_600_000;
        let t0 = bars[0].ts;
        bars.retain(|c| {
            let m = (c.ts - t0) / 60_000;
            let hour = (c.ts - t0) / h;
            // Hours 5..8 missing entirely (a gap of 3 bars); hour 30 holds one minute; every
            // 7th hour loses its first 20 minutes; minutes ≡ 13 (mod 97) dropped here and there.
            !((5..8).contains(&hour)
                || (hour == 30 && m % 60 != 42)
                || (hour % 7 == 3 && m % 60 < 20)
                || m % 97 == 13)
        });
        bars[1000].close = f64::NAN;
        bars[2000].close = 0.0;
        bars[3000].high = f64::NAN;
        bars[4000].volume = f64::NAN;
        bars
    }

    #[test]
    fn streamed_grid_equals_bar_grid_of_resample_bit_for_bit() {
        let bars = holed_minutes();
        for e in [
            Estimator::Realized,
            Estimator::Parkinson,
            Estimator::GarmanKlass,
        ] {
            for bar in [Interval::H1, "4h".parse().unwrap(), "15m".parse().unwrap()] {
                let want = bar_grid(&bars, Interval::M1, bar, e);
                let got = streamed(&bars, Interval::M1, bar, e);
                assert_same(&got, &want, &format!("{e:?} {bar}"));
            }
        }
        let (ts, grid, vol) = streamed(&bars, Interval::M1, Interval::H1, Estimator::Realized);
        assert_eq!(ts.len(), 9 * 24);
        assert!(grid[5..8].iter().all(Option::is_none) && vol[5..8].iter().all(|v| v.is_nan()));
        // Hour 30 holds one minute: its only return is from hour 29's close.
        let want = log_return(grid[29].unwrap().close, grid[30].unwrap().close).abs();
        assert_eq!(vol[30].to_bits(), want.to_bits(), "a one-minute hour");
    }

    /// Folded in stretches ([`Segment`], cut after every `k`-th candle, with empty stretches
    /// between) and appended in order.
    fn segmented(
        bars: &[Candle],
        k: usize,
        interval: Interval,
        bar: Interval,
        e: Estimator,
    ) -> Grid {
        let mut g = GridBuilder::new(interval, bar, e);
        for chunk in bars.chunks(k) {
            let mut seg = Segment::new(interval, bar, e);
            for c in chunk {
                seg.push(c).unwrap();
            }
            g.append(seg).unwrap();
            g.append(Segment::new(interval, bar, e)).unwrap();
        }
        g.finish()
    }

    #[test]
    fn segments_appended_in_order_equal_pushing_every_candle() {
        let mut bars = holed_minutes();
        // Order-flow values on some candles (summed per bar), absent on others.
        for (i, c) in bars.iter_mut().enumerate() {
            if i % 3 != 0 {
                c.quote_volume = Some(c.volume * 100.0);
                c.trades = Some(i as u64 % 50);
                c.taker_buy_volume = Some(c.volume * 0.4);
                c.taker_buy_quote_volume = Some(c.volume * 40.0);
            }
        }
        let hourly: Interval = "1h".parse().unwrap();
        for e in [
            Estimator::Realized,
            Estimator::Parkinson,
            Estimator::GarmanKlass,
        ] {
            for bar in [
                hourly,
                "4h".parse().unwrap(),
                "15m".parse().unwrap(),
                Interval::M1,
            ] {
                let want = streamed(&bars, Interval::M1, bar, e);
                for k in [1, 2, 7, 59, 60, 61, 997, 5000, bars.len()] {
                    let got = segmented(&bars, k, Interval::M1, bar, e);
                    let what = format!("{e:?} {bar} every {k}");
                    assert_same(&got, &want, &what);
                    assert_eq!(
                        format!("{:?}", got.1),
                        format!("{:?}", want.1),
                        "{what}: flow"
                    );
                }
            }
        }
        // A stretch that does not come after the builder's candles is refused.
        let mut g = GridBuilder::new(Interval::M1, hourly, Estimator::Realized);
        let mut seg = Segment::new(Interval::M1, hourly, Estimator::Realized);
        seg.push(&bars[10]).unwrap();
        g.push(&bars[20]).unwrap();
        assert!(g.append(seg).is_err());
    }

    #[test]
    fn bars_equal_to_the_interval_are_kept_as_they_are() {
        let h = 3_600_000;
        // Off-the-hour stamps (the Binance outage bars) and a gap.
        let c = |ts: i64, x: f64| Candle {
            ts,
            open: x,
            high: x * 1.01,
            low: x * 0.99,
            close: x,
            volume: 1.0,
            ..Default::default()
        };
        let bars = vec![
            c(0, 100.0),
            c(h + 1_694_000, 101.0),
            c(2 * h + 1_694_000, 99.0),
            c(5 * h, 100.5),
        ];
        for e in [
            Estimator::Parkinson,
            Estimator::GarmanKlass,
            Estimator::Realized,
        ] {
            let want = bar_grid(&bars, Interval::H1, Interval::H1, e);
            assert_same(
                &streamed(&bars, Interval::H1, Interval::H1, e),
                &want,
                &format!("{e:?}"),
            );
        }
    }

    #[test]
    fn real_eth_half_hours_with_gaps_match() {
        // A slice of ../shared/data's ETH 30-minute bars (real, with missing slots), when present.
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/data/eth_usd_30m_2017-10_2019-10.csv"
        );
        let Ok(text) = std::fs::read_to_string(path) else {
            return;
        };
        let bars: Vec<Candle> = text
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                let ts = chrono::NaiveDateTime::parse_from_str(f[0], "%Y-%m-%d %H:%M:%S")
                    .ok()?
                    .and_utc()
                    .timestamp_millis();
                let n = |i: usize| f[i].parse::<f64>().unwrap_or(f64::NAN);
                // Date, open, close, high, low, volume
                Some(Candle {
                    ts,
                    open: n(1),
                    high: n(3),
                    low: n(4),
                    close: n(2),
                    volume: n(5),
                    ..Default::default()
                })
            })
            .collect();
        assert!(bars.len() > 30_000);
        let mut sorted = bars;
        crate::candle::sort_dedup(&mut sorted);
        for e in [Estimator::Realized, Estimator::GarmanKlass] {
            let want = bar_grid(&sorted, Interval::M30, Interval::H1, e);
            assert!(want.1.iter().any(Option::is_none), "the slice has gaps");
            assert_same(
                &streamed(&sorted, Interval::M30, Interval::H1, e),
                &want,
                &format!("ETH {e:?}"),
            );
        }
    }

    #[test]
    fn out_of_order_candles_are_refused() {
        let c = |ts| Candle {
            ts,
            open: 1.0,
            high: 1.0,
            low: 1.0,
            close: 1.0,
            volume: 1.0,
            ..Default::default()
        };
        let mut g = GridBuilder::new(Interval::M1, Interval::H1, Estimator::Realized);
        g.push(&c(60_000)).unwrap();
        assert_eq!(
            g.push(&c(60_000)),
            Err(OutOfOrder {
                prev: 60_000,
                ts: 60_000
            })
        );
        assert!(g.push(&c(0)).is_err());
        g.push(&c(120_000)).unwrap();
        let (ts, grid, _) = g.finish();
        assert_eq!((ts, grid.len()), (vec![0], 1));
        let empty = GridBuilder::new(Interval::M1, Interval::H1, Estimator::Realized).finish();
        assert!(empty.0.is_empty() && empty.1.is_empty() && empty.2.is_empty());
    }
}
