//! A forecast distribution of next-bar volatility: quantiles of σ at fixed levels (issue #16),
//! and the scores that judge one against realized values (coverage, interval and pinball
//! scores). Pure: no IO, no engine.

use serde::{Deserialize, Serialize};

/// Quantiles of σ at `levels` (increasing, in (0, 1)); `values[i]` is the `levels[i]` quantile,
/// monotone in the level (no crossing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    pub levels: Vec<f64>,
    pub values: Vec<f64>,
}

/// A volatility model's forecast for one bar: the variance-scale point forecast `mean`
/// (√E[σ²], what QLIKE and risk sizing want) and, for a model trained with
/// `train.quantiles`, the quantiles of σ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolatilityForecast {
    pub mean: f64,
    pub quantiles: Option<Quantiles>,
}

impl VolatilityForecast {
    /// A point forecast only.
    pub fn point(mean: f64) -> Self {
        Self {
            mean,
            quantiles: None,
        }
    }

    /// The median of σ, if the model has a distribution.
    pub fn median(&self) -> Option<f64> {
        self.quantiles.as_ref().and_then(Quantiles::median)
    }

    /// The central interval of `coverage`, if the model has one.
    pub fn interval(&self, coverage: f64) -> Option<(f64, f64)> {
        self.quantiles.as_ref().and_then(|q| q.interval(coverage))
    }

    /// Whether every number in it is finite.
    pub fn is_finite(&self) -> bool {
        self.mean.is_finite()
            && self
                .quantiles
                .as_ref()
                .is_none_or(|q| q.values.iter().all(|v| v.is_finite()))
    }
}

/// Level keys as they appear in JSON (`"0.05"`, `"0.1"`, `"0.5"`): the shortest decimal.
pub fn level_key(level: f64) -> String {
    let s = format!("{level}");
    if s.contains('.') {
        s
    } else {
        format!("{level:.1}")
    }
}

/// Column suffix of a level in tables and SQL (`q05`, `q10`, `q50`, `q975`).
pub fn level_suffix(level: f64) -> String {
    let s = format!("{level}");
    let digits = s.trim_start_matches("0.");
    if digits.len() == 1 {
        format!("q{digits}0")
    } else {
        format!("q{digits}")
    }
}

/// The level pair of the central `coverage` interval, e.g. 0.8 → (0.1, 0.9).
pub fn central_levels(coverage: f64) -> (f64, f64) {
    let a = (1.0 - coverage) / 2.0;
    (round_level(a), round_level(1.0 - a))
}

fn round_level(x: f64) -> f64 {
    (x * 1e9).round() / 1e9
}

impl Quantiles {
    /// The value at `level`, if it is one of the levels.
    pub fn at(&self, level: f64) -> Option<f64> {
        self.levels
            .iter()
            .position(|l| (l - level).abs() < 1e-9)
            .map(|i| self.values[i])
    }

    /// The 0.5 quantile.
    pub fn median(&self) -> Option<f64> {
        self.at(0.5)
    }

    /// The central interval with coverage `coverage` (0.8 → [q0.1, q0.9]), if both levels are
    /// among the levels.
    pub fn interval(&self, coverage: f64) -> Option<(f64, f64)> {
        let (lo, hi) = central_levels(coverage);
        Some((self.at(lo)?, self.at(hi)?))
    }

    /// Sort the values into non-decreasing order (the rearrangement of Chernozhukov,
    /// Fernández-Val & Galichon 2010: it never makes a quantile forecast's pinball loss worse).
    pub fn rearrange(&mut self) {
        self.values.sort_by(f64::total_cmp);
    }
}

/// The interval score of a central `(1 − α)` interval `[lo, hi]` for the outcome `y`
/// (Gneiting & Raftery 2007, eq. 43; Winkler 1972): width plus 2/α times the miss.
pub fn interval_score(lo: f64, hi: f64, y: f64, alpha: f64) -> f64 {
    let mut s = hi - lo;
    if y < lo {
        s += 2.0 / alpha * (lo - y);
    }
    if y > hi {
        s += 2.0 / alpha * (y - hi);
    }
    s
}

/// The pinball (quantile) loss of the `level` quantile forecast `q` for the outcome `y`.
pub fn pinball(q: f64, y: f64, level: f64) -> f64 {
    if y >= q {
        level * (y - q)
    } else {
        (1.0 - level) * (q - y)
    }
}

/// How a set of interval forecasts fared: observed coverage and the mean interval score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IntervalScores {
    pub nominal: f64,
    /// Share of outcomes inside `[lo, hi]`.
    pub coverage: f64,
    /// Mean interval score (lower is better), in the outcome's units.
    pub interval_score: f64,
    /// Mean width.
    pub width: f64,
    pub n: usize,
}

/// Score the central `nominal` intervals `bands` against `y`, skipping non-finite rows.
pub fn score_intervals(bands: &[(f64, f64)], y: &[f64], nominal: f64) -> IntervalScores {
    let alpha = 1.0 - nominal;
    let (mut n, mut inside, mut is, mut w) = (0usize, 0usize, 0.0, 0.0);
    for (&(lo, hi), &yv) in bands.iter().zip(y) {
        if !(lo.is_finite() && hi.is_finite() && yv.is_finite()) {
            continue;
        }
        n += 1;
        if yv >= lo && yv <= hi {
            inside += 1;
        }
        is += interval_score(lo, hi, yv, alpha);
        w += hi - lo;
    }
    let d = n.max(1) as f64;
    IntervalScores {
        nominal,
        coverage: inside as f64 / d,
        interval_score: is / d,
        width: w / d,
        n,
    }
}

/// Observed share of outcomes at or below each level's forecast (a reliability diagram's
/// points): `rows[r]` holds one forecast per level.
pub fn reliability(levels: &[f64], rows: &[Vec<f64>], y: &[f64]) -> Vec<(f64, f64)> {
    levels
        .iter()
        .enumerate()
        .map(|(j, &l)| {
            let (mut n, mut below) = (0usize, 0usize);
            for (q, &yv) in rows.iter().zip(y) {
                if q[j].is_finite() && yv.is_finite() {
                    n += 1;
                    if yv <= q[j] {
                        below += 1;
                    }
                }
            }
            (l, below as f64 / n.max(1) as f64)
        })
        .collect()
}

/// The standard normal quantile Φ⁻¹(p) (Acklam's rational approximation, relative error
/// below 1.2e-9), for `p` in (0, 1).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p <= 0.0 || p >= 1.0 {
        return if p <= 0.0 {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
    }
    if p < 0.024_25 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.024_25 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// The conformal correction of a `level` quantile from calibration scores `y − q̂` (any
/// scale): the ⌈(n + 1)·level⌉-th smallest score, so that `q̂ + c` is at or above the outcome
/// with probability at least `level` on exchangeable data (the one-sided split-conformal
/// bound; the asymmetric CQR of Romano, Patterson & Candès 2019 uses one per end). `None`
/// when there are too few scores to certify the level.
pub fn conformal_correction(scores: &mut [f64], level: f64) -> Option<f64> {
    let n = scores.len();
    if n == 0 {
        return None;
    }
    scores.sort_by(f64::total_cmp);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let k = ((n as f64 + 1.0) * level).ceil() as usize;
    // k = 0 cannot happen for level > 0; k > n: too few scores for this level.
    (k >= 1 && k <= n).then(|| scores[k - 1])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn normal_quantiles() {
        assert!(normal_quantile(0.5).abs() < 1e-12);
        assert!((normal_quantile(0.9) - 1.281_551_565_5).abs() < 1e-8);
        assert!((normal_quantile(0.05) + 1.644_853_626_9).abs() < 1e-8);
        assert!((normal_quantile(0.001) + 3.090_232_306_2).abs() < 1e-8);
    }

    #[test]
    fn keys_and_suffixes() {
        assert_eq!(level_key(0.05), "0.05");
        assert_eq!(level_key(0.5), "0.5");
        assert_eq!(level_suffix(0.05), "q05");
        assert_eq!(level_suffix(0.1), "q10");
        assert_eq!(level_suffix(0.5), "q50");
        assert_eq!(level_suffix(0.95), "q95");
        assert_eq!(level_suffix(0.975), "q975");
        assert_eq!(central_levels(0.8), (0.1, 0.9));
        assert_eq!(central_levels(0.9), (0.05, 0.95));
    }

    #[test]
    fn interval_and_median_lookup() {
        let q = Quantiles {
            levels: vec![0.05, 0.1, 0.5, 0.9, 0.95],
            values: vec![1.0, 2.0, 3.0, 4.0, 5.0],
        };
        assert_eq!(q.median(), Some(3.0));
        assert_eq!(q.interval(0.8), Some((2.0, 4.0)));
        assert_eq!(q.interval(0.9), Some((1.0, 5.0)));
        assert_eq!(q.interval(0.5), None);
    }

    #[test]
    fn interval_score_penalises_misses_by_two_over_alpha() {
        assert_eq!(interval_score(1.0, 2.0, 1.5, 0.2), 1.0);
        assert!((interval_score(1.0, 2.0, 3.0, 0.2) - 11.0).abs() < 1e-12);
        assert!((interval_score(1.0, 2.0, 0.5, 0.2) - 6.0).abs() < 1e-12);
        let s = score_intervals(&[(1.0, 2.0), (1.0, 2.0)], &[1.5, 3.0], 0.8);
        assert_eq!(s.coverage, 0.5);
        assert!((s.interval_score - 6.0).abs() < 1e-12);
    }

    #[test]
    fn conformal_correction_is_the_rank_quantile() {
        let mut s: Vec<f64> = (1..=9).map(f64::from).collect();
        // n = 9, level 0.9: k = ceil(10 · 0.9) = 9 → the largest score.
        assert_eq!(conformal_correction(&mut s.clone(), 0.9), Some(9.0));
        // level 0.5: k = 5.
        assert_eq!(conformal_correction(&mut s, 0.5), Some(5.0));
        // level 0.95 with 9 scores: k = 10 > 9, cannot certify.
        assert_eq!(conformal_correction(&mut [1.0; 9], 0.95), None);
    }

    #[test]
    fn rearrangement_sorts_and_pinball_is_asymmetric() {
        let mut q = Quantiles {
            levels: vec![0.1, 0.5, 0.9],
            values: vec![2.0, 1.0, 3.0],
        };
        q.rearrange();
        assert_eq!(q.values, vec![1.0, 2.0, 3.0]);
        assert!((pinball(1.0, 2.0, 0.9) - 0.9).abs() < 1e-12);
        assert!((pinball(3.0, 2.0, 0.9) - 0.1).abs() < 1e-12);
        let r = reliability(&[0.1, 0.9], &[vec![1.0, 3.0], vec![2.5, 4.0]], &[2.0, 2.0]);
        assert_eq!(r, vec![(0.1, 0.5), (0.9, 1.0)]);
    }
}
