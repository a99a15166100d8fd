//! The point-in-time feature matrix and the prediction target.
//!
//! Input is a regular bar grid (`None` where the exchange has no bar) and each bar's volatility
//! estimate. Every feature of row `t` reads bars `..=t` only; the target of row `t` reads bars
//! `t+1..=t+horizon` only. `tests::point_in_time` proves the first half by perturbing the future.

use crate::candle::Candle;
use crate::time::{day_of_week, hour_of_day};
use crate::volatility::log_return;
use serde::{Deserialize, Serialize};

/// Knobs of the feature builder (`features:` in params.yaml).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeatureParams {
    /// Windows (in bars) of the price-change features `ret_{k}b_pct`.
    pub return_windows: Vec<usize>,
    /// Windows (in bars) of the HAR volatility components `har_{k}b` (log RMS bar volatility).
    pub har_windows: Vec<usize>,
    /// Window (in bars) of the volume moving average, the momentum and the return std.
    pub long_window: usize,
    /// Days of history behind the time-of-day volatility profile.
    pub seasonal_days: usize,
    /// Decays λ of the EWMA volatility features `ewma_vol_{100λ}` (RiskMetrics-style
    /// variance averages that react to spikes faster than the log HAR terms).
    pub ewma_lambdas: Vec<f64>,
}

impl Default for FeatureParams {
    fn default() -> Self {
        Self {
            return_windows: vec![1, 4, 24],
            har_windows: vec![1, 4, 24, 168],
            long_window: 24,
            seasonal_days: 28,
            ewma_lambdas: vec![0.8, 0.9, 0.97],
        }
    }
}

/// Target definition (`target:` in params.yaml).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetParams {
    /// Bar-volatility estimator behind the target and the HAR terms.
    pub estimator: crate::volatility::Estimator,
    /// Bars ahead: the target is the RMS volatility of bars `t+1 ..= t+horizon`.
    pub horizon: usize,
    /// Volatility floor applied to the target, to every model's and baseline's prediction and
    /// inside every log feature, so that zero-range bars (high == low) are treated identically
    /// everywhere instead of producing `ln 0`.
    pub floor: f64,
}

impl Default for TargetParams {
    fn default() -> Self {
        Self {
            estimator: crate::volatility::Estimator::Parkinson,
            horizon: 1,
            floor: 1e-4,
        }
    }
}

/// A feature matrix in column-major form, one row per grid bar.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureFrame {
    /// Bar open time (ms) of each row.
    pub ts: Vec<i64>,
    /// Feature names in model order.
    pub names: Vec<String>,
    /// One column per name.
    pub columns: Vec<Vec<f64>>,
    /// Floored volatility of the row's own bar (what persistence and EWMA forecast from).
    pub bar_vol: Vec<f64>,
    /// Floored target; NaN where the future is not (yet) known.
    pub target: Vec<f64>,
    /// Whether the row's own bar exists (rows for missing bars are never used).
    pub present: Vec<bool>,
}

impl FeatureFrame {
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&[f64]> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| self.columns[i].as_slice())
    }

    /// Row `i` in model order.
    pub fn row(&self, i: usize) -> Vec<f64> {
        self.columns.iter().map(|c| c[i]).collect()
    }

    /// Whether each row can be learned from or scored: its bar exists, its target is known and
    /// every HAR term (`har_*`) is finite — the rule the chronological split applies.
    pub fn usable(&self) -> Vec<bool> {
        let har: Vec<&Vec<f64>> = self
            .names
            .iter()
            .zip(&self.columns)
            .filter(|(n, _)| n.starts_with("har_"))
            .map(|(_, c)| c)
            .collect();
        (0..self.len())
            .map(|i| {
                self.present[i]
                    && self.target[i].is_finite()
                    && har.iter().all(|c| c[i].is_finite())
            })
            .collect()
    }
}

/// Mean of the finite values among the last `k` (ending at `t`), or NaN when fewer than
/// `ceil(k/2)` are finite.
fn trailing_mean(x: &[f64], t: usize, k: usize) -> f64 {
    let from = (t + 1).saturating_sub(k);
    if t + 1 < k {
        return f64::NAN;
    }
    let (mut sum, mut n) = (0.0, 0usize);
    for &v in &x[from..=t] {
        if v.is_finite() {
            sum += v;
            n += 1;
        }
    }
    if n * 2 >= k && n > 0 {
        sum / n as f64
    } else {
        f64::NAN
    }
}

/// Sample standard deviation of the finite values among the last `k`; NaN with fewer than
/// `max(2, ceil(k/2))` finite values.
fn trailing_std(x: &[f64], t: usize, k: usize) -> f64 {
    if t + 1 < k {
        return f64::NAN;
    }
    let vals: Vec<f64> = x[t + 1 - k..=t]
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let n = vals.len();
    if n < 2 || n * 2 < k {
        return f64::NAN;
    }
    let mean = vals.iter().sum::<f64>() / n as f64;
    (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
}

/// Names of the features built by [`build`] for these params, in model order.
pub fn feature_names(p: &FeatureParams) -> Vec<String> {
    let mut names = Vec::new();
    for k in &p.return_windows {
        names.push(format!("ret_{k}b_pct"));
    }
    let l = p.long_window;
    names.extend([
        format!("momentum_{l}b"),
        format!("logret_std_{l}b"),
        "hl_range_pct".to_owned(),
        "log_volume".to_owned(),
        format!("log_volume_ma_{l}b"),
        "volume_change".to_owned(),
        format!("volume_surprise_{l}b"),
    ]);
    for k in &p.har_windows {
        names.push(format!("har_{k}b"));
    }
    names.extend([
        format!("neg_ret_sq_{l}b"),
        "jump_1b".to_owned(),
        "seasonal_vol".to_owned(),
        "hour_sin".to_owned(),
        "hour_cos".to_owned(),
        "day_of_week".to_owned(),
        "is_weekend".to_owned(),
    ]);
    for lambda in &p.ewma_lambdas {
        names.push(ewma_name(*lambda));
    }
    names.extend([format!("max_vol_{l}b"), format!("stale_{l}b")]);
    // Level-free shape of the volatility term structure: each shorter HAR term and the
    // time-of-day profile relative to the longest HAR term.
    if let Some(longest) = p.har_windows.iter().max() {
        for k in p.har_windows.iter().filter(|k| *k != longest) {
            names.push(format!("har_{k}b_rel"));
        }
        names.push("seasonal_vol_rel".to_owned());
    }
    names
}

/// Name of the EWMA volatility feature with decay `lambda`, e.g. `ewma_vol_094` for 0.94.
pub fn ewma_name(lambda: f64) -> String {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let pct = (lambda * 100.0).round() as u32;
    format!("ewma_vol_{pct:03}")
}

/// Build the feature frame over a bar grid. `bars[i]` is the bar at grid slot `i` (consecutive
/// slots are one interval apart) and `ts[i]` its open time; `vol[i]` its volatility estimate
/// (unfloored; NaN when unknown). `bars_per_day` scales the time-of-day profile.
pub fn build(
    ts: &[i64],
    bars: &[Option<Candle>],
    vol: &[f64],
    fp: &FeatureParams,
    tp: &TargetParams,
    bars_per_day: usize,
) -> FeatureFrame {
    let n = bars.len();
    assert_eq!(ts.len(), n, "one timestamp per grid slot");
    assert_eq!(vol.len(), n, "one volatility per grid slot");
    let floor = tp.floor;
    let field = |f: fn(&Candle) -> f64| -> Vec<f64> {
        bars.iter()
            .map(|b| b.as_ref().map_or(f64::NAN, f))
            .collect()
    };
    let close = field(|c| c.close);
    let high = field(|c| c.high);
    let low = field(|c| c.low);
    let volume = field(|c| c.volume);
    let floored: Vec<f64> = vol
        .iter()
        .map(|v| {
            if v.is_finite() {
                v.max(floor)
            } else {
                f64::NAN
            }
        })
        .collect();
    let var: Vec<f64> = floored.iter().map(|v| v * v).collect();
    let ret: Vec<f64> = (0..n)
        .map(|i| {
            if i == 0 {
                f64::NAN
            } else {
                log_return(close[i - 1], close[i])
            }
        })
        .collect();
    let log_vol: Vec<f64> = volume
        .iter()
        .map(|v| if *v >= 0.0 { v.ln_1p() } else { f64::NAN })
        .collect();
    let neg_sq: Vec<f64> = ret
        .iter()
        .map(|r| {
            if r.is_nan() {
                f64::NAN
            } else {
                r.min(0.0).powi(2)
            }
        })
        .collect();

    let names = feature_names(fp);
    let mut columns: Vec<Vec<f64>> = vec![Vec::with_capacity(n); names.len()];
    let mut ewma_state = vec![f64::NAN; fp.ewma_lambdas.len()];
    let l = fp.long_window;
    for t in 0..n {
        let mut row: Vec<f64> = Vec::with_capacity(names.len());
        for &k in &fp.return_windows {
            row.push(if t >= k {
                (close[t] / close[t - k] - 1.0) * 100.0
            } else {
                f64::NAN
            });
        }
        let sma = trailing_mean(&close, t, l);
        row.push(close[t] / sma - 1.0);
        row.push(trailing_std(&ret, t, l));
        row.push((high[t] - low[t]) / close[t] * 100.0);
        row.push(log_vol[t]);
        let lv_ma = trailing_mean(&log_vol, t, l);
        row.push(lv_ma);
        row.push(if t >= 1 {
            log_vol[t] - log_vol[t - 1]
        } else {
            f64::NAN
        });
        row.push(log_vol[t] - lv_ma);
        for &k in &fp.har_windows {
            row.push(0.5 * trailing_mean(&var, t, k).ln());
        }
        row.push(trailing_mean(&neg_sq, t, l) * l as f64);
        // Jump: squared close-to-close return beyond what the bar's range explains.
        row.push(if ret[t].is_finite() && var[t].is_finite() {
            (ret[t] * ret[t] - var[t]).max(0.0).sqrt()
        } else {
            f64::NAN
        });
        // Time-of-day profile: RMS volatility of the same slot over the previous days.
        let mut seasonal = (0.0, 0usize);
        for d in 1..=fp.seasonal_days {
            if let Some(j) = t.checked_sub(d * bars_per_day)
                && var[j].is_finite()
            {
                seasonal.0 += var[j];
                seasonal.1 += 1;
            }
        }
        let seasonal_log = if seasonal.1 * 2 >= fp.seasonal_days && seasonal.1 > 0 {
            0.5 * (seasonal.0 / seasonal.1 as f64).ln()
        } else {
            f64::NAN
        };
        row.push(seasonal_log);
        let hour = f64::from(hour_of_day(ts[t]));
        let angle = 2.0 * std::f64::consts::PI * hour / 24.0;
        row.push(angle.sin());
        row.push(angle.cos());
        let dow = day_of_week(ts[t]);
        row.push(f64::from(dow));
        row.push(if dow >= 5 { 1.0 } else { 0.0 });
        for (state, lambda) in ewma_state.iter_mut().zip(&fp.ewma_lambdas) {
            if var[t].is_finite() {
                *state = if state.is_nan() {
                    var[t]
                } else {
                    lambda * *state + (1.0 - lambda) * var[t]
                };
            }
            row.push(0.5 * state.ln());
        }
        row.push(if t + 1 >= l {
            let w = &floored[t + 1 - l..=t];
            let n = w.iter().filter(|v| v.is_finite()).count();
            if n * 2 >= l {
                w.iter()
                    .copied()
                    .filter(|v| v.is_finite())
                    .fold(0.0, f64::max)
                    .ln()
            } else {
                f64::NAN
            }
        } else {
            f64::NAN
        });
        // Stale bars: the range is at the floor (no trading, or a flat bar filled in).
        row.push(if t + 1 >= l {
            floored[t + 1 - l..=t]
                .iter()
                .filter(|v| **v <= floor)
                .count() as f64
        } else {
            f64::NAN
        });
        if let Some(&longest) = fp.har_windows.iter().max() {
            let long = 0.5 * trailing_mean(&var, t, longest).ln();
            for &k in fp.har_windows.iter().filter(|k| **k != longest) {
                row.push(0.5 * trailing_mean(&var, t, k).ln() - long);
            }
            row.push(seasonal_log - long);
        }
        for (c, v) in columns.iter_mut().zip(row) {
            c.push(if v.is_finite() { v } else { f64::NAN });
        }
    }

    let h = tp.horizon.max(1);
    let target: Vec<f64> = (0..n)
        .map(|t| {
            if t + h >= n {
                return f64::NAN;
            }
            let window = &var[t + 1..=t + h];
            if window.iter().all(|v| v.is_finite()) {
                (window.iter().sum::<f64>() / h as f64).sqrt()
            } else {
                f64::NAN
            }
        })
        .collect();
    FeatureFrame {
        ts: ts.to_vec(),
        names,
        columns,
        bar_vol: floored,
        target,
        present: bars.iter().map(Option::is_some).collect(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::volatility::parkinson;

    const H: i64 = 3_600_000;

    fn grid(n: usize) -> (Vec<i64>, Vec<Option<Candle>>, Vec<f64>) {
        let ts: Vec<i64> = (0..n as i64).map(|i| 1_514_764_800_000 + i * H).collect(); // 2018-01-01 00:00 Monday
        let bars: Vec<Option<Candle>> = ts
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                let c = 100.0 + (i as f64 * 0.7).sin() * 5.0 + i as f64 * 0.01;
                Some(Candle {
                    ts: t,
                    open: c - 0.3,
                    high: c + 1.0 + (i % 3) as f64 * 0.2,
                    low: c - 1.0,
                    close: c,
                    volume: 10.0 + (i % 5) as f64,
                })
            })
            .collect();
        let vol = bars
            .iter()
            .map(|b| b.as_ref().map_or(f64::NAN, |c| parkinson(c.high, c.low)))
            .collect();
        (ts, bars, vol)
    }

    fn small_params() -> FeatureParams {
        FeatureParams {
            return_windows: vec![1, 4],
            har_windows: vec![1, 4],
            long_window: 4,
            seasonal_days: 2,
            ewma_lambdas: vec![0.5],
        }
    }

    fn close_to(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    #[test]
    fn features_by_hand() {
        let (ts, bars, vol) = grid(60);
        let fp = small_params();
        let tp = TargetParams::default();
        let f = build(&ts, &bars, &vol, &fp, &tp, 24);
        let c = |i: usize| bars[i].unwrap();
        let t = 55;
        close_to(
            f.column("ret_1b_pct").unwrap()[t],
            (c(t).close / c(t - 1).close - 1.0) * 100.0,
        );
        close_to(
            f.column("ret_4b_pct").unwrap()[t],
            (c(t).close / c(t - 4).close - 1.0) * 100.0,
        );
        let sma = (c(52).close + c(53).close + c(54).close + c(55).close) / 4.0;
        close_to(f.column("momentum_4b").unwrap()[t], c(t).close / sma - 1.0);
        let r: Vec<f64> = (52..=55)
            .map(|i| (c(i).close / c(i - 1).close).ln())
            .collect();
        let m = r.iter().sum::<f64>() / 4.0;
        let sd = (r.iter().map(|x| (x - m).powi(2)).sum::<f64>() / 3.0).sqrt();
        close_to(f.column("logret_std_4b").unwrap()[t], sd);
        let neg: f64 = r.iter().map(|x| x.min(0.0).powi(2)).sum();
        close_to(f.column("neg_ret_sq_4b").unwrap()[t], neg);
        close_to(
            f.column("hl_range_pct").unwrap()[t],
            (c(t).high - c(t).low) / c(t).close * 100.0,
        );
        close_to(f.column("log_volume").unwrap()[t], c(t).volume.ln_1p());
        close_to(
            f.column("volume_change").unwrap()[t],
            c(t).volume.ln_1p() - c(t - 1).volume.ln_1p(),
        );
        let lvma = (52..=55).map(|i| c(i).volume.ln_1p()).sum::<f64>() / 4.0;
        close_to(f.column("log_volume_ma_4b").unwrap()[t], lvma);
        close_to(
            f.column("volume_surprise_4b").unwrap()[t],
            c(t).volume.ln_1p() - lvma,
        );
        close_to(f.column("har_1b").unwrap()[t], vol[t].ln());
        let v4 = (52..=55).map(|i| vol[i] * vol[i]).sum::<f64>() / 4.0;
        close_to(f.column("har_4b").unwrap()[t], 0.5 * v4.ln());
        let seasonal = (vol[t - 24].powi(2) + vol[t - 48].powi(2)) / 2.0;
        close_to(f.column("seasonal_vol").unwrap()[t], 0.5 * seasonal.ln());
        close_to(
            f.column("jump_1b").unwrap()[t],
            (r[3] * r[3] - vol[t] * vol[t]).max(0.0).sqrt(),
        );
        // 55 h after Monday 00:00 is Wednesday 07:00.
        close_to(
            f.column("hour_sin").unwrap()[t],
            (2.0 * std::f64::consts::PI * 7.0 / 24.0).sin(),
        );
        close_to(
            f.column("hour_cos").unwrap()[t],
            (2.0 * std::f64::consts::PI * 7.0 / 24.0).cos(),
        );
        close_to(f.column("day_of_week").unwrap()[t], 2.0);
        close_to(f.column("is_weekend").unwrap()[t], 0.0);
        // EWMA variance seeded with the first bar, λ = 0.5.
        let mut e = vol[0] * vol[0];
        for v in &vol[1..=t] {
            e = 0.5 * e + 0.5 * v * v;
        }
        close_to(f.column("ewma_vol_050").unwrap()[t], 0.5 * e.ln());
        let max4 = (52..=55).map(|i| vol[i]).fold(0.0, f64::max);
        close_to(f.column("max_vol_4b").unwrap()[t], max4.ln());
        close_to(f.column("stale_4b").unwrap()[t], 0.0);
        close_to(
            f.column("har_1b_rel").unwrap()[t],
            vol[t].ln() - 0.5 * v4.ln(),
        );
        close_to(
            f.column("seasonal_vol_rel").unwrap()[t],
            0.5 * seasonal.ln() - 0.5 * v4.ln(),
        );
        assert_eq!(ewma_name(0.94), "ewma_vol_094");
        close_to(f.target[t], vol[t + 1]);
        assert!(f.target[59].is_nan(), "the last bar has no known future");
        assert!(
            f.column("ret_4b_pct").unwrap()[3].is_nan(),
            "not enough history"
        );
        assert_eq!(f.names, feature_names(&fp));
    }

    #[test]
    fn floor_and_horizon() {
        let (ts, mut bars, mut vol) = grid(30);
        // A zero-range bar at 10.
        let mut b = bars[10].unwrap();
        b.high = b.close;
        b.low = b.close;
        bars[10] = Some(b);
        vol[10] = 0.0;
        let tp = TargetParams {
            horizon: 2,
            floor: 1e-3,
            ..TargetParams::default()
        };
        let f = build(&ts, &bars, &vol, &small_params(), &tp, 24);
        assert_eq!(f.bar_vol[10], 1e-3);
        close_to(f.column("har_1b").unwrap()[10], (1e-3f64).ln());
        close_to(f.target[9], ((1e-6 + vol[11] * vol[11]) / 2.0).sqrt());
        assert!(f.target[28].is_nan());
        // The stale bar counts in the windows that hold it.
        let stale = f.column("stale_4b").unwrap();
        assert_eq!(&stale[9..15], &[0.0, 1.0, 1.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn missing_bars_are_missing_values_not_zeros() {
        let (ts, mut bars, mut vol) = grid(40);
        bars[20] = None;
        vol[20] = f64::NAN;
        let f = build(
            &ts,
            &bars,
            &vol,
            &small_params(),
            &TargetParams::default(),
            24,
        );
        assert!(!f.present[20]);
        assert!(f.column("ret_1b_pct").unwrap()[21].is_nan());
        assert!(f.target[19].is_nan());
        // Windows tolerate one missing value out of four.
        assert!(f.column("har_4b").unwrap()[22].is_finite());
    }

    /// Changing any future row changes no past feature.
    #[test]
    fn point_in_time() {
        let n = 120;
        let (ts, bars, vol) = grid(n);
        let fp = small_params();
        let tp = TargetParams::default();
        let base = build(&ts, &bars, &vol, &fp, &tp, 24);
        for cut in [30usize, 64, 100] {
            let mut b2 = bars.clone();
            let mut v2 = vol.clone();
            for i in cut..n {
                let mut c = b2[i].unwrap();
                c.close *= 3.0;
                c.high *= 3.5;
                c.low *= 0.5;
                c.volume *= 100.0;
                b2[i] = Some(c);
                v2[i] = parkinson(c.high, c.low);
            }
            b2[n - 1] = None;
            let f2 = build(&ts, &b2, &v2, &fp, &tp, 24);
            for (j, name) in base.names.iter().enumerate() {
                for t in 0..cut {
                    let (a, b) = (base.columns[j][t], f2.columns[j][t]);
                    assert!(
                        a == b || (a.is_nan() && b.is_nan()),
                        "{name} at row {t} changed when rows from {cut} changed"
                    );
                }
            }
            // Only the target of the last row before the cut may see the change.
            for t in 0..cut - 1 {
                assert_eq!(base.target[t].to_bits(), f2.target[t].to_bits());
            }
            assert_ne!(base.target[cut - 1], f2.target[cut - 1]);
        }
    }
}
