//! The point-in-time feature matrix and the prediction target.
//!
//! Input is a regular bar grid (`None` where the exchange has no bar) and each bar's volatility
//! estimate. Every feature of row `t` reads bars `..=t` only; the target of row `t` reads bars
//! `t+1..=t+horizon` only. `tests::point_in_time` proves the first half by perturbing the future.

use crate::candle::Candle;
use crate::flow::{Flow, FlowSeries};
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
    /// Order-flow features from the klines' trade counts and taker-buy volume
    /// ([`crate::flow`]): `auto` (default), `on` or `off`. A model's schema records `on` or
    /// `off` (transform resolves `auto` against the data); `auto` builds none.
    pub flow: Flow,
}

impl Default for FeatureParams {
    fn default() -> Self {
        Self {
            return_windows: vec![1, 4, 24],
            har_windows: vec![1, 4, 24, 168],
            long_window: 24,
            seasonal_days: 28,
            ewma_lambdas: vec![0.8, 0.9, 0.97],
            flow: Flow::Auto,
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
pub(crate) fn trailing_mean(x: &[f64], t: usize, k: usize) -> f64 {
    if t + 1 < k {
        return f64::NAN;
    }
    let (mut sum, mut n) = (0.0, 0usize);
    for &v in &x[t + 1 - k..=t] {
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
    let w = &x[t + 1 - k..=t];
    let (mut sum, mut n) = (0.0, 0usize);
    for &v in w {
        if v.is_finite() {
            sum += v;
            n += 1;
        }
    }
    if n < 2 || n * 2 < k {
        return f64::NAN;
    }
    let mean = sum / n as f64;
    let mut ss = 0.0;
    for &v in w {
        if v.is_finite() {
            ss += (v - mean).powi(2);
        }
    }
    (ss / (n - 1) as f64).sqrt()
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
    if p.flow.is_on() {
        names.extend(crate::flow::names(l));
    }
    names
}

/// Name of the EWMA volatility feature with decay `lambda`, e.g. `ewma_vol_094` for 0.94.
pub fn ewma_name(lambda: f64) -> String {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let pct = (lambda * 100.0).round() as u32;
    format!("ewma_vol_{pct:03}")
}

/// The per-bar series the features read, one slot per grid bar. A slot's values depend on its
/// own bar and the one before it only, so batch mode fills the series for a whole grid and online
/// mode one slot at a time ([`Series::push`]); [`row_into`] reads them the same way in both,
/// which is why the two modes give bit-identical rows.
#[derive(Debug, Clone, Default)]
pub(crate) struct Series {
    close: Vec<f64>,
    /// `(high - low) / close`, in %.
    hl_pct: Vec<f64>,
    /// `ln(1 + volume)`.
    log_vol: Vec<f64>,
    /// Floored bar volatility (NaN when unknown).
    floored: Vec<f64>,
    /// Its square.
    var: Vec<f64>,
    /// Close-to-close log return from the previous slot (NaN after a missing bar).
    ret: Vec<f64>,
    /// `min(ret, 0)²`.
    neg_sq: Vec<f64>,
    /// The order-flow series, when the flow features are built.
    flow: Option<FlowSeries>,
}

impl Series {
    /// Room for `n` slots, with the order-flow series when `fp` builds the flow features.
    pub(crate) fn with_capacity(n: usize, fp: &FeatureParams) -> Self {
        let v = || Vec::with_capacity(n);
        Self {
            flow: fp.flow.is_on().then(|| FlowSeries::with_capacity(n)),
            close: v(),
            hl_pct: v(),
            log_vol: v(),
            floored: v(),
            var: v(),
            ret: v(),
            neg_sq: v(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.close.len()
    }

    /// The squared floored volatility of slot `t`.
    pub(crate) fn var(&self, t: usize) -> f64 {
        self.var[t]
    }

    /// Append the next grid slot: its bar (`None` where the exchange has none) and the bar's
    /// volatility estimate (unfloored; NaN when unknown).
    pub(crate) fn push(&mut self, bar: Option<&Candle>, vol: f64, floor: f64) {
        let field = |f: fn(&Candle) -> f64| bar.map_or(f64::NAN, f);
        let (close, high, low, volume) = (
            field(|c| c.close),
            field(|c| c.high),
            field(|c| c.low),
            field(|c| c.volume),
        );
        let ret = self
            .close
            .last()
            .map_or(f64::NAN, |prev| log_return(*prev, close));
        let floored = if vol.is_finite() {
            vol.max(floor)
        } else {
            f64::NAN
        };
        self.close.push(close);
        self.hl_pct.push((high - low) / close * 100.0);
        self.log_vol.push(if volume >= 0.0 {
            volume.ln_1p()
        } else {
            f64::NAN
        });
        self.floored.push(floored);
        self.var.push(floored * floored);
        self.ret.push(ret);
        self.neg_sq.push(if ret.is_nan() {
            f64::NAN
        } else {
            ret.min(0.0).powi(2)
        });
        if let Some(flow) = &mut self.flow {
            flow.push(bar);
        }
    }

    /// Forget the oldest `n` slots (online mode keeps only what the lookback reads).
    pub(crate) fn drop_front(&mut self, n: usize) {
        for v in [
            &mut self.close,
            &mut self.hl_pct,
            &mut self.log_vol,
            &mut self.floored,
            &mut self.var,
            &mut self.ret,
            &mut self.neg_sq,
        ] {
            v.drain(..n.min(v.len()));
        }
        if let Some(flow) = &mut self.flow {
            flow.drop_front(n);
        }
    }
}

/// The recursive part of the features: one EWMA variance per λ, updated once per grid slot in
/// order (a missing bar leaves it unchanged) and seeded by the first known variance.
#[derive(Debug, Clone)]
pub(crate) struct EwmaState(Vec<f64>);

impl EwmaState {
    pub(crate) fn new(fp: &FeatureParams) -> Self {
        Self(vec![f64::NAN; fp.ewma_lambdas.len()])
    }

    pub(crate) fn update(&mut self, fp: &FeatureParams, var: f64) {
        if !var.is_finite() {
            return;
        }
        for (state, lambda) in self.0.iter_mut().zip(&fp.ewma_lambdas) {
            *state = if state.is_nan() {
                var
            } else {
                lambda * *state + (1.0 - lambda) * var
            };
        }
    }
}

/// What a row depends on besides the series: the feature knobs, the volatility floor and the
/// bars in a day.
pub(crate) struct RowOf<'a> {
    pub fp: &'a FeatureParams,
    pub floor: f64,
    pub bars_per_day: usize,
}

impl RowOf<'_> {
    /// The feature row of slot `t` of `s` (bar open time `ts`), in the order of [`feature_names`],
    /// written into `out`; `ewma` must have seen slots `..=t`. Reads slots `t - lookback ..= t` only.
    pub(crate) fn row_into(
        &self,
        s: &Series,
        t: usize,
        ts: i64,
        ewma: &EwmaState,
        out: &mut Vec<f64>,
    ) {
        let (fp, floor, bars_per_day) = (self.fp, self.floor, self.bars_per_day);
        out.clear();
        let l = fp.long_window;
        let close = &s.close;
        for &k in &fp.return_windows {
            out.push(if t >= k {
                (close[t] / close[t - k] - 1.0) * 100.0
            } else {
                f64::NAN
            });
        }
        let sma = trailing_mean(close, t, l);
        out.push(close[t] / sma - 1.0);
        out.push(trailing_std(&s.ret, t, l));
        out.push(s.hl_pct[t]);
        let log_vol = &s.log_vol;
        out.push(log_vol[t]);
        let lv_ma = trailing_mean(log_vol, t, l);
        out.push(lv_ma);
        out.push(if t >= 1 {
            log_vol[t] - log_vol[t - 1]
        } else {
            f64::NAN
        });
        out.push(log_vol[t] - lv_ma);
        let var = &s.var;
        let har_at = out.len();
        for &k in &fp.har_windows {
            out.push(0.5 * trailing_mean(var, t, k).ln());
        }
        out.push(trailing_mean(&s.neg_sq, t, l) * l as f64);
        // Jump: squared close-to-close return beyond what the bar's range explains.
        let ret = s.ret[t];
        out.push(if ret.is_finite() && var[t].is_finite() {
            (ret * ret - var[t]).max(0.0).sqrt()
        } else {
            f64::NAN
        });
        // Time-of-day profile: RMS volatility of the same slot over the previous days.
        let (mut sum, mut n) = (0.0, 0usize);
        for d in 1..=fp.seasonal_days {
            if let Some(j) = t.checked_sub(d * bars_per_day)
                && var[j].is_finite()
            {
                sum += var[j];
                n += 1;
            }
        }
        let seasonal_log = if n * 2 >= fp.seasonal_days && n > 0 {
            0.5 * (sum / n as f64).ln()
        } else {
            f64::NAN
        };
        out.push(seasonal_log);
        let hour = f64::from(hour_of_day(ts));
        let angle = 2.0 * std::f64::consts::PI * hour / 24.0;
        out.push(angle.sin());
        out.push(angle.cos());
        let dow = day_of_week(ts);
        out.push(f64::from(dow));
        out.push(if dow >= 5 { 1.0 } else { 0.0 });
        for state in &ewma.0 {
            out.push(0.5 * state.ln());
        }
        let floored = &s.floored;
        out.push(if t + 1 >= l {
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
        out.push(if t + 1 >= l {
            floored[t + 1 - l..=t]
                .iter()
                .filter(|v| **v <= floor)
                .count() as f64
        } else {
            f64::NAN
        });
        if let Some(&longest) = fp.har_windows.iter().max() {
            let long = 0.5 * trailing_mean(var, t, longest).ln();
            for (i, &k) in fp.har_windows.iter().enumerate() {
                if k != longest {
                    out.push(out[har_at + i] - long);
                }
            }
            out.push(seasonal_log - long);
        }
        if let Some(flow) = &s.flow {
            flow.row_into(t, l, out);
        }
        for v in out.iter_mut() {
            if !v.is_finite() {
                *v = f64::NAN;
            }
        }
    }
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
    let mut s = Series::with_capacity(n, fp);
    for (b, v) in bars.iter().zip(vol) {
        s.push(b.as_ref(), *v, floor);
    }
    let names = feature_names(fp);
    let mut columns: Vec<Vec<f64>> = vec![Vec::with_capacity(n); names.len()];
    let mut ewma = EwmaState::new(fp);
    let mut row = Vec::with_capacity(names.len());
    let of = RowOf {
        fp,
        floor,
        bars_per_day,
    };
    for (t, &at) in ts.iter().enumerate().take(n) {
        ewma.update(fp, s.var[t]);
        of.row_into(&s, t, at, &ewma, &mut row);
        for (c, v) in columns.iter_mut().zip(&row) {
            c.push(*v);
        }
    }

    let h = tp.horizon.max(1);
    let var = &s.var;
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
        bar_vol: s.floored,
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
                    trades: Some(100 + (i as u64 * 37) % 90),
                    taker_buy_volume: Some((10.0 + (i % 5) as f64) * (0.3 + (i % 4) as f64 * 0.1)),
                    ..Default::default()
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
            flow: Flow::Off,
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

    /// The flow features by hand; they are appended after the others, which they leave alone.
    #[test]
    fn flow_features_by_hand() {
        let (ts, mut bars, mut vol) = grid(60);
        bars[50] = None;
        vol[50] = f64::NAN;
        let tp = TargetParams::default();
        let off = build(&ts, &bars, &vol, &small_params(), &tp, 24);
        let fp = FeatureParams {
            flow: Flow::On,
            ..small_params()
        };
        let on = build(&ts, &bars, &vol, &fp, &tp, 24);
        assert_eq!(on.names[..off.names.len()], off.names[..]);
        assert_eq!(
            on.names[off.names.len()..],
            crate::flow::names(4)[..],
            "appended, in order"
        );
        for (a, b) in off.columns.iter().zip(&on.columns) {
            assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()));
        }
        let c = |i: usize| bars[i].unwrap();
        let n = |i: usize| c(i).trades.unwrap() as f64;
        let t = 55;
        let lt = (52..=55).map(|i| n(i).ln()).sum::<f64>() / 4.0;
        close_to(on.column("trades_surprise_4b").unwrap()[t], n(t).ln() - lt);
        let size = |i: usize| (c(i).volume / n(i)).ln();
        let ls = (52..=55).map(size).sum::<f64>() / 4.0;
        close_to(
            on.column("trade_size_surprise_4b").unwrap()[t],
            size(t) - ls,
        );
        let imb = |i: usize| 2.0 * c(i).taker_buy_volume.unwrap() / c(i).volume - 1.0;
        close_to(on.column("taker_buy_imbalance").unwrap()[t], imb(t));
        close_to(
            on.column("taker_buy_imbalance_4b").unwrap()[t],
            (52..=55).map(imb).sum::<f64>() / 4.0,
        );
        // The window over the missing bar 50 averages the three bars it has.
        close_to(
            on.column("taker_buy_imbalance_4b").unwrap()[51],
            [48, 49, 51].into_iter().map(imb).sum::<f64>() / 3.0,
        );
        assert!(on.column("taker_buy_imbalance").unwrap()[50].is_nan());
        assert_eq!(feature_names(&fp), on.names);
    }

    /// Changing any future row changes no past feature.
    #[test]
    fn point_in_time() {
        let n = 120;
        let (ts, bars, vol) = grid(n);
        let fp = FeatureParams {
            flow: Flow::On,
            ..small_params()
        };
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
                c.trades = c.trades.map(|n| n * 7);
                c.taker_buy_volume = Some(c.volume);
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
