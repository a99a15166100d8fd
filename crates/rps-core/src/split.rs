//! Chronological train / validation / test splits with a purge gap.

use serde::{Deserialize, Serialize};

/// Split knobs (`split:` in params.yaml).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitParams {
    /// Fraction of usable rows in train.
    pub train: f64,
    /// Fraction of usable rows in validation; the rest is test.
    pub validation: f64,
    /// Rows dropped between consecutive splits, at least the target horizon, so that no target
    /// window of one split overlaps the next split's rows.
    pub gap: usize,
}

impl Default for SplitParams {
    fn default() -> Self {
        Self {
            train: 0.7,
            validation: 0.15,
            gap: 24,
        }
    }
}

/// Which split a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Validation,
    Test,
    /// Dropped: a purge gap between splits, a row with no target, or a row for a missing bar.
    Unused,
}

impl Split {
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
            Split::Unused => "unused",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Split::Train, Split::Validation, Split::Test, Split::Unused]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// The problem with split parameters.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SplitError {
    #[error(
        "split fractions must satisfy 0 < train, 0 < validation and train + validation < 1 (got train={train}, validation={validation})"
    )]
    BadFractions { train: f64, validation: f64 },
    #[error(
        "too few usable rows to split: {usable} rows with a known target, need at least {needed} (three splits plus two gaps of {gap})"
    )]
    TooFewRows {
        usable: usize,
        needed: usize,
        gap: usize,
    },
    #[error(
        "split gap {gap} is shorter than the target horizon {horizon}: targets would leak across splits"
    )]
    GapTooShort { gap: usize, horizon: usize },
}

/// Assign rows to splits. `usable[i]` says whether row `i` (in time order) has its bar, its
/// target and can be used at all. Train, validation and test are consecutive runs of usable
/// rows, separated by `gap` grid rows.
pub fn assign(usable: &[bool], p: &SplitParams, horizon: usize) -> Result<Vec<Split>, SplitError> {
    if !(p.train > 0.0 && p.validation > 0.0 && p.train + p.validation < 1.0) {
        return Err(SplitError::BadFractions {
            train: p.train,
            validation: p.validation,
        });
    }
    if p.gap < horizon {
        return Err(SplitError::GapTooShort {
            gap: p.gap,
            horizon,
        });
    }
    let idx: Vec<usize> = usable
        .iter()
        .enumerate()
        .filter_map(|(i, &u)| u.then_some(i))
        .collect();
    let needed = 3 * 10 + 2 * p.gap;
    if idx.len() < needed {
        return Err(SplitError::TooFewRows {
            usable: idx.len(),
            needed,
            gap: p.gap,
        });
    }
    let n = idx.len() as f64;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let (n_train, n_val) = (
        (n * p.train).round() as usize,
        (n * p.validation).round() as usize,
    );
    let mut out = vec![Split::Unused; usable.len()];
    let train_end = idx[n_train - 1];
    for &i in &idx[..n_train] {
        out[i] = Split::Train;
    }
    let val: Vec<usize> = idx
        .iter()
        .copied()
        .filter(|&i| i > train_end + p.gap)
        .take(n_val)
        .collect();
    let Some(&val_end) = val.last() else {
        return Err(SplitError::TooFewRows {
            usable: idx.len(),
            needed,
            gap: p.gap,
        });
    };
    for &i in &val {
        out[i] = Split::Validation;
    }
    let mut any_test = false;
    for &i in idx.iter().filter(|&&i| i > val_end + p.gap) {
        out[i] = Split::Test;
        any_test = true;
    }
    if !any_test {
        return Err(SplitError::TooFewRows {
            usable: idx.len(),
            needed,
            gap: p.gap,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_are_ordered_and_gapped() {
        let usable = vec![true; 1000];
        let p = SplitParams {
            train: 0.7,
            validation: 0.15,
            gap: 24,
        };
        let s = assign(&usable, &p, 1).unwrap();
        let pos = |k: Split| {
            s.iter()
                .enumerate()
                .filter(|(_, x)| **x == k)
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
        };
        let (tr, va, te) = (pos(Split::Train), pos(Split::Validation), pos(Split::Test));
        assert_eq!(tr.len(), 700);
        assert_eq!(va.len(), 150);
        assert_eq!(*tr.last().unwrap(), 699);
        assert_eq!(va[0], 699 + 25);
        assert_eq!(te[0], va.last().unwrap() + 25);
        assert_eq!(te.len(), 1000 - 700 - 150 - 48);
    }

    #[test]
    fn refuses_bad_params() {
        let usable = vec![true; 1000];
        assert!(matches!(
            assign(
                &usable,
                &SplitParams {
                    train: 0.9,
                    validation: 0.2,
                    gap: 1
                },
                1
            ),
            Err(SplitError::BadFractions { .. })
        ));
        assert!(matches!(
            assign(
                &usable,
                &SplitParams {
                    gap: 0,
                    ..SplitParams::default()
                },
                1
            ),
            Err(SplitError::GapTooShort { .. })
        ));
        assert!(matches!(
            assign(&usable[..50], &SplitParams::default(), 1),
            Err(SplitError::TooFewRows { .. })
        ));
    }
}
