//! Blocks of feature rows handed to the booster, and the training history.

use hessboost::prelude::*;
use serde::{Deserialize, Serialize};

/// One symbol's share of a pooled training set ([`Rows::stack_parts`]): its column-major model
/// inputs, its targets and the rows to take.
pub type Part<'a> = (&'a [Vec<f64>], &'a [f64], &'a [usize]);

/// A rectangular block of rows (row-major), NaN for missing.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    pub values: Vec<f32>,
    pub n_rows: usize,
    pub n_cols: usize,
}

impl Rows {
    /// Rows `idx` of column-major `columns`.
    pub fn gather(columns: &[Vec<f64>], idx: &[usize]) -> Self {
        let n_cols = columns.len();
        let mut values = Vec::with_capacity(idx.len() * n_cols);
        for &i in idx {
            #[allow(clippy::cast_possible_truncation)]
            values.extend(columns.iter().map(|c| c[i] as f32));
        }
        Self {
            values,
            n_rows: idx.len(),
            n_cols,
        }
    }

    /// Blocks with the same columns, one after the other (the rows of several symbols, stacked
    /// for a pooled model).
    ///
    /// # Panics
    /// When two blocks have a different number of columns.
    pub fn stack(blocks: impl IntoIterator<Item = Self>) -> Self {
        let mut out: Option<Self> = None;
        for b in blocks {
            match &mut out {
                None => out = Some(b),
                Some(o) => {
                    assert_eq!(o.n_cols, b.n_cols, "stacked blocks have the same columns");
                    o.values.extend(b.values);
                    o.n_rows += b.n_rows;
                }
            }
        }
        out.unwrap_or(Self {
            values: Vec::new(),
            n_rows: 0,
            n_cols: 0,
        })
    }

    /// The pooled training set: each part's rows `idx` of its column-major inputs `columns`
    /// (a symbol's features, then its one-hot), stacked in part order, and their targets
    /// (`target[i]` for each `i` of `idx`). `rps train` (pooled), the pooled walk-forward of
    /// `rps evaluate` and the `rps-pooled` experiment stack their rows through this.
    ///
    /// # Panics
    /// When two parts have a different number of columns.
    pub fn stack_parts(parts: &[Part<'_>]) -> (Self, Vec<f64>) {
        let rows = Self::stack(parts.iter().map(|(c, _, idx)| Self::gather(c, idx)));
        let y = parts
            .iter()
            .flat_map(|(_, t, idx)| idx.iter().map(|&i| t[i]))
            .collect();
        (rows, y)
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.n_cols..(i + 1) * self.n_cols]
    }

    pub(crate) fn dmatrix(&self) -> Result<DMatrix, HessboostError> {
        DMatrix::from_dense(&self.values, self.n_rows, self.n_cols)
    }
}

/// Per-round validation loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub metric: String,
    pub train: Vec<f64>,
    pub validation: Vec<f64>,
}
