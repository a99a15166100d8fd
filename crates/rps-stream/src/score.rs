//! Scoring every volatility forecast once its hour has closed (issue #19).
//!
//! **Which bar a forecast is scored against.** `predictions.bar_time` is the open time of the bar
//! whose features the forecast was made from (migration 0001; the consumer predicts from the row
//! of the bar that just closed). Its target is the model's training target for that row
//! ([`rps_core::features::build`]): the RMS of the floored bar volatilities of the next
//! `target.horizon` grid slots, `sqrt(mean(σ²[t+1 ..= t+h]))`, with σ the spec's
//! `target.estimator` floored at `target.floor`, unknown when any of those bars is missing. So
//! the forecast made from bar `T` is scored when bar `T + h` closes (the next bar with the default
//! horizon 1); its score row's `bar_time` is `T + h` and `predicted_from` is `T`.
//!
//! [`Tracker`] keeps, per symbol and feature spec, what that needs of the last `h + 1` slots (and
//! the EWMA baseline); the batch side ([`rps_core::features::FeatureFrame::target`]) gives the
//! same values for `rps stream reconcile`.

use crate::db::Score;
use crate::live::LiveModel;
use crate::online::FeatureSpec;
use rps_core::candle::Candle;
use rps_core::metrics::{log_loss_one, qlike_one};
use rps_core::volatility::{Estimator, garman_klass, parkinson};
use std::collections::VecDeque;

/// The EWMA baseline's name in `scores.model` (version `0`).
pub const EWMA: &str = "ewma";
/// The log-scale HAR-type baseline's name in `scores.model`: `exp(L)` of a live version's saved
/// linear base margin `L` (its version in `scores.version`).
pub const HAR_LOG: &str = "har_rv_log";
/// HAR-RV's level forecast in `scores.model`: `exp(L) · smearing`, the same margin with Duan's
/// smearing from the version's training rows (versions saved before it was recorded have only
/// [`HAR_LOG`]).
pub const HAR: &str = "har_rv";

/// A forecaster floor as the evaluation applies it: non-finite → the floor.
pub fn floored(v: f64, floor: f64) -> f64 {
    if v.is_finite() { v.max(floor) } else { floor }
}

impl Score {
    /// The score of `forecast` (already floored) against `realized`, with the 80 % band when the
    /// forecast has one.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        model: &str,
        version: &str,
        alias: Option<&str>,
        symbol: &str,
        predicted_from: i64,
        bar_time: i64,
        realized: f64,
        forecast: f64,
        band: Option<(f64, f64)>,
    ) -> Result<Self, crate::StreamError> {
        Ok(Self {
            model: model.to_owned(),
            version: version.to_owned(),
            alias: alias.map(str::to_owned),
            symbol: symbol.to_owned(),
            bar_time: crate::db::to_time(bar_time)?,
            predicted_from: crate::db::to_time(predicted_from)?,
            realized,
            forecast,
            qlike: qlike_one(realized, forecast),
            log_error: log_loss_one(realized, forecast),
            covered_80: band.map(|(lo, hi)| lo <= realized && realized <= hi),
        })
    }
}

/// One grid slot the tracker holds.
#[derive(Debug, Clone)]
struct Slot {
    ts: i64,
    /// Whether the exchange had a bar there (predictions exist only for those).
    present: bool,
    /// Floored bar volatility (NaN for a missing bar).
    vol: f64,
    /// The EWMA baseline's forecast made at this slot (floored).
    ewma: f64,
    /// The feature row of this bar, when it was built (not for seeded bars).
    row: Option<Vec<f64>>,
}

/// A target completed by the newest bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Truth<'a> {
    /// Open time of the bar the forecasts were made from (`predictions.bar_time`).
    pub predicted_from: i64,
    /// Open time of the newest bar, the last of the target window.
    pub bar_time: i64,
    /// The training target of `predicted_from`'s row.
    pub realized: f64,
    /// The EWMA baseline's forecast made at `predicted_from`.
    pub ewma: f64,
    /// The feature row of `predicted_from`, when the tracker saw it built.
    pub row: Option<&'a [f64]>,
}

/// Per symbol and feature spec: the last `horizon + 1` grid slots and the EWMA variance of the
/// floored bar volatilities (`evaluate.ewma_lambda`), pushed bar by bar beside the online
/// features.
#[derive(Debug, Clone)]
pub struct Tracker {
    bar_ms: i64,
    horizon: usize,
    floor: f64,
    estimator: Estimator,
    lambda: f64,
    /// EWMA variance (NaN until the first bar), as [`rps_core::baselines::ewma`].
    ewma_var: f64,
    slots: VecDeque<Slot>,
}

impl Tracker {
    /// A tracker for the target of `spec` and the EWMA decay `lambda`.
    pub fn new(spec: &FeatureSpec, lambda: f64) -> Self {
        Self {
            bar_ms: spec.bar.ms().max(1),
            horizon: spec.target.horizon.max(1),
            floor: spec.target.floor,
            estimator: spec.target.estimator,
            lambda,
            ewma_var: f64::NAN,
            slots: VecDeque::new(),
        }
    }

    /// Bars ahead of the target.
    pub fn horizon(&self) -> usize {
        self.horizon
    }

    fn slot(&mut self, ts: i64, present: bool, vol: f64, row: Option<Vec<f64>>) {
        if vol.is_finite() {
            self.ewma_var = if self.ewma_var.is_nan() {
                vol * vol
            } else {
                self.lambda * self.ewma_var + (1.0 - self.lambda) * vol * vol
            };
        }
        self.slots.push_back(Slot {
            ts,
            present,
            vol,
            ewma: floored(self.ewma_var.sqrt(), self.floor),
            row,
        });
        while self.slots.len() > self.horizon + 1 {
            self.slots.pop_front();
        }
    }

    /// Add a closed bar (with its feature row when one was built), after empty slots for any
    /// bars missing in between. A bar not newer than the newest held changes nothing: `false`.
    pub fn push(&mut self, c: &Candle, row: Option<&[f64]>) -> bool {
        let ts = c.ts;
        if let Some(last) = self.slots.back().map(|s| s.ts) {
            let gap = (ts - last).div_euclid(self.bar_ms);
            if gap < 1 {
                return false;
            }
            // Slots older than the window are never read: a longer gap is a window of holes.
            let missing = (gap - 1).min(i64::try_from(self.horizon + 1).unwrap_or(i64::MAX));
            for k in (1..=missing).rev() {
                self.slot(ts - k * self.bar_ms, false, f64::NAN, None);
            }
        }
        let vol = match self.estimator {
            Estimator::GarmanKlass => garman_klass(c),
            // Realized needs sub-bars: the online features refuse it before a tracker exists.
            Estimator::Parkinson | Estimator::Realized => parkinson(c.high, c.low),
        };
        let vol = if vol.is_finite() {
            vol.max(self.floor)
        } else {
            f64::NAN
        };
        self.slot(ts, true, vol, row.map(<[f64]>::to_vec));
        true
    }

    /// The target the newest bar completed: that of the forecasts made `horizon` bars before it,
    /// when that bar and every bar of the window exist (computed as the batch target is).
    pub fn truth(&self) -> Option<Truth<'_>> {
        let h = self.horizon;
        if self.slots.len() < h + 1 {
            return None;
        }
        let from = &self.slots[self.slots.len() - 1 - h];
        let window = self.slots.range(self.slots.len() - h..);
        let newest = self.slots.back()?;
        if !from.present || !newest.present {
            return None;
        }
        let var: Vec<f64> = window.map(|s| s.vol * s.vol).collect();
        if !var.iter().all(|v| v.is_finite()) {
            return None;
        }
        #[allow(clippy::cast_precision_loss)]
        let realized = (var.iter().sum::<f64>() / h as f64).sqrt();
        Some(Truth {
            predicted_from: from.ts,
            bar_time: newest.ts,
            realized,
            ewma: from.ewma,
            row: from.row.as_deref(),
        })
    }
}

/// What a truth of `symbol` under the feature spec `key` scores: a [`crate::db::Target`] for the
/// stored forecasts of the live volatility versions built by that spec, the EWMA baseline when
/// `key` is `ewma_key` (the spec of the first live volatility version, so one EWMA row per
/// bar), and the `har_rv_log` and `har_rv` baselines of every such version with a saved base
/// margin (when the truth has its row).
pub fn collect(
    live: &[LiveModel],
    key: &str,
    ewma_key: Option<&str>,
    symbol: &str,
    truth: &Truth<'_>,
    targets: &mut Vec<crate::db::Target>,
    scores: &mut Vec<Score>,
) -> Result<(), crate::StreamError> {
    let versions: Vec<&LiveModel> = live
        .iter()
        .filter(|m| m.is_volatility() && m.spec_key == key && m.serves(symbol))
        .collect();
    let (from, at, realized) = (truth.predicted_from, truth.bar_time, truth.realized);
    if !versions.is_empty() {
        targets.push(crate::db::Target {
            symbol: symbol.to_owned(),
            predicted_from: crate::db::to_time(from)?,
            bar_time: crate::db::to_time(at)?,
            realized,
            versions: versions
                .iter()
                .map(|m| (m.name.clone(), m.version.to_string()))
                .collect(),
        });
    }
    if ewma_key == Some(key) {
        scores.push(Score::new(
            EWMA, "0", None, symbol, from, at, realized, truth.ewma, None,
        )?);
    }
    if let Some(row) = truth.row {
        for m in versions {
            let version = m.version.to_string();
            for (name, f) in [(HAR_LOG, m.har_log(row)), (HAR, m.har_rv(row))] {
                let Some(f) = f else { continue };
                scores.push(Score::new(
                    name,
                    &version,
                    Some(&m.alias),
                    symbol,
                    from,
                    at,
                    realized,
                    f,
                    None,
                )?);
            }
        }
    }
    Ok(())
}

/// The spec key the EWMA baseline follows: the first live volatility version's.
pub fn ewma_key<'a>(live: &'a [LiveModel], symbol: &str) -> Option<&'a str> {
    live.iter()
        .find(|m| m.is_volatility() && m.serves(symbol))
        .map(|m| m.spec_key.as_str())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::float_cmp)]
mod tests {
    use super::*;
    use rps_core::params::Params;

    const H: i64 = 3_600_000;

    fn bars(n: i64) -> Vec<Candle> {
        (0..n)
            .map(|i| {
                let p = 100.0 + (i as f64 * 0.3).sin() * 3.0;
                // Every 7th bar is flat: its range is under the floor.
                let w = if i % 7 == 3 {
                    0.0
                } else {
                    0.004 * (1.0 + (i as f64 * 0.7).cos().abs())
                };
                Candle {
                    ts: 1_514_764_800_000 + i * H,
                    open: p,
                    high: p * (1.0 + w),
                    low: p * (1.0 - w * 0.8),
                    close: p,
                    volume: 10.0,
                    ..Default::default()
                }
            })
            .collect()
    }

    fn spec(horizon: usize) -> FeatureSpec {
        let mut p = Params::default();
        p.target.horizon = horizon;
        FeatureSpec::from_params(&p).unwrap()
    }

    /// Online truths are the batch training targets, bit for bit, and the EWMA forecasts are
    /// the evaluation's `ewma` baseline; the forecast from bar T is scored at bar T + h.
    #[test]
    fn truths_are_the_batch_targets_of_the_bar_horizon_bars_earlier() {
        for h in [1, 3] {
            let s = spec(h);
            let mut b = bars(60);
            b.remove(20); // a missing bar: no truth reads across it
            let frame = s.frame(&b);
            let ewma: Vec<f64> = rps_core::baselines::ewma(&frame.bar_vol, 0.94)
                .into_iter()
                .map(|v| floored(v, s.target.floor))
                .collect();
            let mut t = Tracker::new(&s, 0.94);
            let mut seen = 0;
            for c in &b {
                assert!(t.push(c, Some(&[c.ts as f64][..])));
                assert!(!t.push(c, None), "a replay changes nothing");
                let Some(truth) = t.truth() else {
                    // No truth only where the batch target is unknown too.
                    let i = frame.ts.iter().position(|&x| x == c.ts).unwrap();
                    assert!(i < h || !frame.present[i - h] || frame.target[i - h].is_nan());
                    continue;
                };
                seen += 1;
                assert_eq!(truth.bar_time, c.ts);
                assert_eq!(truth.predicted_from, c.ts - h as i64 * H);
                let i = frame
                    .ts
                    .iter()
                    .position(|&x| x == truth.predicted_from)
                    .unwrap();
                assert_eq!(truth.realized.to_bits(), frame.target[i].to_bits());
                assert!(truth.realized >= s.target.floor);
                assert_eq!(truth.ewma.to_bits(), ewma[i].to_bits());
                assert_eq!(truth.row, Some(&[truth.predicted_from as f64][..]));
            }
            assert!(seen >= 60 - 2 * (h + 1) - 1, "h={h}: {seen} truths");
        }
    }

    #[test]
    fn seeded_bars_have_truths_but_no_rows() {
        let s = spec(1);
        let b = bars(5);
        let mut t = Tracker::new(&s, 0.94);
        for c in &b[..4] {
            t.push(c, None);
        }
        let truth = t.truth().unwrap();
        assert_eq!(truth.row, None);
        assert_eq!(truth.predicted_from, b[2].ts);
        assert_eq!(t.horizon(), 1);
        // A long gap: the first bar after it has no truth, the next one does.
        let mut late = b[4];
        late.ts += 100 * H;
        t.push(&late, None);
        assert!(t.truth().is_none());
        let mut next = late;
        next.ts += H;
        t.push(&next, Some(&[1.0][..]));
        assert_eq!(t.truth().unwrap().predicted_from, late.ts);
    }

    #[test]
    fn a_score_row_is_the_core_losses() {
        let s = Score::new(
            "m",
            "1",
            Some("champion"),
            "BTC",
            0,
            H,
            0.02,
            0.025,
            Some((0.01, 0.019)),
        )
        .unwrap();
        assert_eq!(s.qlike, qlike_one(0.02, 0.025));
        assert_eq!(s.log_error, log_loss_one(0.02, 0.025));
        assert_eq!(s.covered_80, Some(false));
        assert_eq!(s.bar_time.timestamp_millis(), H);
        let s = Score::new("ewma", "0", None, "BTC", 0, H, 0.02, 0.02, None).unwrap();
        assert_eq!(s.qlike, 0.0);
        assert_eq!(s.covered_80, None);
        assert_eq!(floored(f64::NAN, 1e-4), 1e-4);
        assert_eq!(floored(1e-6, 1e-4), 1e-4);
    }
}
