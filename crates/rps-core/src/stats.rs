//! Per-column summary statistics: the quality profile and the reference statistics saved with a
//! model, against which serving measures drift (out-of-range ratio and PSI).

use serde::{Deserialize, Serialize};

/// Summary of one numeric column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnStats {
    pub name: String,
    /// Finite values.
    pub count: usize,
    /// NaN / missing values.
    pub missing: usize,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
    /// Quantiles at [`QUANTILES`].
    pub quantiles: Vec<f64>,
    /// Inner edges of the PSI bins (deciles of the reference, deduplicated): bin `i` holds
    /// values in `(edges[i-1], edges[i]]`, with open ends.
    pub bin_edges: Vec<f64>,
    /// Share of the reference's finite values in each of the `bin_edges.len() + 1` bins.
    pub bin_shares: Vec<f64>,
    /// An equal-width histogram over `[min, max]` for display.
    pub histogram: Vec<usize>,
}

/// The quantile levels of [`ColumnStats::quantiles`].
pub const QUANTILES: [f64; 7] = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99];

/// Linear-interpolated quantile of sorted values.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Index of the PSI bin of `v` given the inner edges.
pub fn bin_of(edges: &[f64], v: f64) -> usize {
    edges.partition_point(|&e| e < v)
}

impl ColumnStats {
    /// Summarise `values` (NaN counts as missing) with `histogram_bins` display bins.
    pub fn compute(name: &str, values: &[f64], histogram_bins: usize) -> Self {
        let mut finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        finite.sort_by(f64::total_cmp);
        let count = finite.len();
        let missing = values.len() - count;
        let mean = finite.iter().sum::<f64>() / count.max(1) as f64;
        let std = if count > 1 {
            (finite.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (count - 1) as f64).sqrt()
        } else {
            0.0
        };
        let (min, max) = (
            finite.first().copied().unwrap_or(f64::NAN),
            finite.last().copied().unwrap_or(f64::NAN),
        );
        let mut bin_edges: Vec<f64> = (1..10)
            .map(|d| quantile_sorted(&finite, f64::from(d) / 10.0))
            .collect();
        bin_edges.dedup();
        bin_edges.retain(|e| e.is_finite());
        let mut shares = vec![0.0; bin_edges.len() + 1];
        for &v in &finite {
            shares[bin_of(&bin_edges, v)] += 1.0;
        }
        for s in &mut shares {
            *s /= count.max(1) as f64;
        }
        let mut histogram = vec![0usize; histogram_bins.max(1)];
        if count > 0 {
            let width = (max - min) / histogram.len() as f64;
            for &v in &finite {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let b = if width > 0.0 {
                    ((v - min) / width) as usize
                } else {
                    0
                };
                let last = histogram.len() - 1;
                histogram[b.min(last)] += 1;
            }
        }
        Self {
            name: name.to_owned(),
            count,
            missing,
            mean,
            std,
            min,
            max,
            quantiles: QUANTILES
                .iter()
                .map(|&q| quantile_sorted(&finite, q))
                .collect(),
            bin_edges,
            bin_shares: shares,
            histogram,
        }
    }

    /// Population stability index of `values` against this reference:
    /// `Σ (a − e) ln(a / e)` over the bins, with shares floored at 1e-4.
    pub fn psi(&self, values: &[f64]) -> f64 {
        let mut counts = vec![0.0_f64; self.bin_shares.len()];
        let mut n = 0.0_f64;
        for &v in values.iter().filter(|v| v.is_finite()) {
            counts[bin_of(&self.bin_edges, v)] += 1.0;
            n += 1.0;
        }
        if n == 0.0 {
            return 0.0;
        }
        counts
            .iter()
            .zip(&self.bin_shares)
            .map(|(&c, &e)| {
                let (a, e) = ((c / n).max(1e-4), e.max(1e-4));
                (a - e) * (a / e).ln()
            })
            .sum()
    }

    /// Whether `v` falls outside the reference's [1 %, 99 %] quantile range widened by half its
    /// span on each side — the out-of-distribution test behind the drift ratio.
    pub fn is_out_of_range(&self, v: f64) -> bool {
        let (lo, hi) = (self.quantiles[0], self.quantiles[QUANTILES.len() - 1]);
        let pad = 0.5 * (hi - lo);
        v.is_finite() && (v < lo - pad || v > hi + pad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_by_hand() {
        let s = ColumnStats::compute("x", &[1.0, 2.0, 3.0, 4.0, f64::NAN], 3);
        assert_eq!(s.count, 4);
        assert_eq!(s.missing, 1);
        assert!((s.mean - 2.5).abs() < 1e-12);
        assert!((s.std - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!((s.min, s.max), (1.0, 4.0));
        assert!((s.quantiles[3] - 2.5).abs() < 1e-12);
        assert_eq!(s.histogram, vec![1, 1, 2]);
        assert!((s.bin_shares.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn psi_is_zero_on_the_reference_and_large_on_a_shift() {
        let reference: Vec<f64> = (0..1000).map(|i| f64::from(i) / 10.0).collect();
        let s = ColumnStats::compute("x", &reference, 10);
        assert!(s.psi(&reference) < 1e-9);
        let shifted: Vec<f64> = reference.iter().map(|v| v + 50.0).collect();
        assert!(s.psi(&shifted) > 1.0);
        assert!(!s.is_out_of_range(50.0));
        assert!(s.is_out_of_range(1000.0));
        assert!(!s.is_out_of_range(f64::NAN));
    }
}
