//! Drift over a sliding window of the last N request rows, against the reference statistics saved
//! with the model ([`FeatureSchema::reference`](rps_core::schema::FeatureSchema)):
//! - the out-of-distribution ratio: the share of feature values in the window for which
//!   [`ColumnStats::is_out_of_range`] holds, kept incrementally (O(features) per row);
//! - per-feature PSI ([`ColumnStats::psi`]) over the window, computed when `/metrics` is scraped.

use rps_core::stats::ColumnStats;

/// A ring buffer of the last `capacity` rows.
#[derive(Debug)]
pub struct DriftWindow {
    capacity: usize,
    n_features: usize,
    /// Row-major, `capacity * n_features`.
    values: Vec<f64>,
    /// Out-of-range values in each stored row.
    ood: Vec<u32>,
    next: usize,
    len: usize,
    ood_total: u64,
}

impl DriftWindow {
    pub fn new(capacity: usize, n_features: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            n_features,
            values: vec![f64::NAN; capacity * n_features],
            ood: vec![0; capacity],
            next: 0,
            len: 0,
            ood_total: 0,
        }
    }

    /// Count the out-of-range values of `row` (done outside any lock).
    pub fn count_ood(reference: &[ColumnStats], row: &[f32]) -> u32 {
        let n = row
            .iter()
            .zip(reference)
            .filter(|(v, s)| s.is_out_of_range(f64::from(**v)))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Add a row (with its out-of-range count), evicting the oldest when full.
    pub fn push(&mut self, row: &[f32], ood: u32) {
        if row.len() != self.n_features {
            return;
        }
        let at = self.next;
        if self.len == self.capacity {
            self.ood_total -= u64::from(self.ood[at]);
        } else {
            self.len += 1;
        }
        for (dst, src) in self.values[at * self.n_features..(at + 1) * self.n_features]
            .iter_mut()
            .zip(row)
        {
            *dst = f64::from(*src);
        }
        self.ood[at] = ood;
        self.ood_total += u64::from(ood);
        self.next = (at + 1) % self.capacity;
    }

    /// Rows currently in the window.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Share of out-of-range feature values in the window (0 when empty).
    pub fn ratio(&self) -> f64 {
        let cells = (self.len * self.n_features) as f64;
        if cells == 0.0 {
            0.0
        } else {
            self.ood_total as f64 / cells
        }
    }

    /// PSI of each feature over the window against its reference (0 when empty).
    pub fn psi(&self, reference: &[ColumnStats]) -> Vec<f64> {
        let mut column = Vec::with_capacity(self.len);
        reference
            .iter()
            .enumerate()
            .take(self.n_features)
            .map(|(j, stats)| {
                column.clear();
                column.extend((0..self.len).map(|i| self.values[i * self.n_features + j]));
                stats.psi(&column)
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ratio_slides_with_the_window() {
        let reference: Vec<f64> = (0..1000).map(f64::from).collect();
        let stats = vec![ColumnStats::compute("x", &reference, 10)];
        let mut w = DriftWindow::new(4, 1);
        assert_eq!(w.ratio(), 0.0);
        for _ in 0..4 {
            let row = [500.0_f32];
            w.push(&row, DriftWindow::count_ood(&stats, &row));
        }
        assert_eq!(w.ratio(), 0.0);
        let far = [1.0e6_f32];
        w.push(&far, DriftWindow::count_ood(&stats, &far));
        assert!((w.ratio() - 0.25).abs() < 1e-12);
        for _ in 0..4 {
            w.push(&far, 1);
        }
        assert!((w.ratio() - 1.0).abs() < 1e-12);
        assert_eq!(w.len(), 4);
        assert!(w.psi(&stats)[0] > 1.0);
    }
}
