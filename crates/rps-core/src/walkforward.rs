//! Walk-forward folds: the out-of-sample protocol behind the evaluate stage's pooled table.
//!
//! The last `test_fraction` of the usable rows (in time order), or with `test_start` every usable
//! row from that time on, is cut into `folds` consecutive test blocks of (nearly) equal size. Fold `k` trains on history only: every usable row that
//! ends at least `gap` bars before its test block starts. The last `validation_fraction` of that
//! history is the fold's validation span (early stopping and calibration), purged from the rest
//! by another `gap` bars. With the expanding window each fold keeps all older history; with the
//! rolling window the training span keeps the length it has in the first fold, sliding forward.
//! Every model is retrained at every fold, so each test row is forecast by a model that has
//! seen nothing at or after it (nor the `gap` bars before it).

use serde::{Deserialize, Serialize};

/// How much history each fold trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// All history before the fold (minus the purge gaps).
    #[default]
    Expanding,
    /// The most recent history, as many training rows as the first fold has.
    Rolling,
}

/// The knobs of [`folds`].
#[derive(Debug, Clone, PartialEq)]
pub struct WalkForwardParams {
    /// Number of consecutive test blocks.
    pub folds: usize,
    /// Share of the usable rows, at the end, covered by the test blocks together.
    pub test_fraction: f64,
    /// Bar open time (ms) where the test blocks start: when set, they cover every usable row at
    /// or after it, and `test_fraction` is ignored. A fixed date keeps the test span the same
    /// when the feature warm-up or the data's start change.
    pub test_start: Option<i64>,
    /// Share of each fold's history, at its end, held out as the validation span.
    pub validation_fraction: f64,
    /// Bars purged between train and validation and between validation and test.
    pub gap: usize,
    pub window: Window,
}

impl WalkForwardParams {
    /// The walk-forward of params.yaml: `evaluate.walk_forward_*`, with each fold's validation
    /// share and purge taken from `split:`.
    pub fn from_params(params: &crate::params::Params) -> Self {
        let (ev, sp) = (&params.evaluate, &params.split);
        Self {
            folds: ev.walk_forward_folds,
            test_fraction: ev.walk_forward_test_fraction,
            test_start: ev.walk_forward_test_start_ms(),
            validation_fraction: sp.validation / (sp.train + sp.validation),
            gap: sp.gap,
            window: ev.walk_forward_window,
        }
    }
}

/// Row indices (into the frame, in time order) of one fold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fold {
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
    pub test: Vec<usize>,
}

/// Minimum rows in every train, validation and test span.
pub const MIN_ROWS: usize = 10;

/// Why folds could not be built.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WalkForwardError {
    #[error("walk-forward needs at least one fold")]
    NoFolds,
    #[error(
        "walk-forward fractions must lie strictly between 0 and 1 (test_fraction={test}, validation share of history={validation})"
    )]
    BadFractions { test: f64, validation: f64 },
    #[error(
        "split gap {gap} is shorter than the target horizon {horizon}: targets would leak into the next span"
    )]
    GapTooShort { gap: usize, horizon: usize },
    #[error(
        "walk-forward fold {fold} has {train} training, {validation} validation and {test} test rows; each needs at least {MIN_ROWS} (fewer folds, a smaller test fraction or more data)"
    )]
    TooFewRows {
        fold: usize,
        train: usize,
        validation: usize,
        test: usize,
    },
    #[error("row timestamps must increase strictly")]
    Unordered,
}

/// Build the folds. `ts[i]` is row `i`'s bar open time (ms, strictly increasing; rows may skip
/// missing bars), `usable[i]` whether the row has its features and a known target, `bar_ms` the
/// bar length and `horizon` the target horizon in bars.
pub fn folds(
    ts: &[i64],
    usable: &[bool],
    bar_ms: i64,
    horizon: usize,
    p: &WalkForwardParams,
) -> Result<Vec<Fold>, WalkForwardError> {
    assert_eq!(ts.len(), usable.len(), "one usable flag per row");
    if p.folds == 0 {
        return Err(WalkForwardError::NoFolds);
    }
    let ok = |f: f64| f > 0.0 && f < 1.0;
    if !ok(p.test_fraction) || !ok(p.validation_fraction) {
        return Err(WalkForwardError::BadFractions {
            test: p.test_fraction,
            validation: p.validation_fraction,
        });
    }
    if p.gap < horizon {
        return Err(WalkForwardError::GapTooShort {
            gap: p.gap,
            horizon,
        });
    }
    if ts.windows(2).any(|w| w[1] <= w[0]) {
        return Err(WalkForwardError::Unordered);
    }
    let idx: Vec<usize> = (0..ts.len()).filter(|&i| usable[i]).collect();
    let n = idx.len();
    let start = match p.test_start {
        Some(t) => idx.partition_point(|&i| ts[i] < t),
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        None => n - (((n as f64) * p.test_fraction).round() as usize).min(n),
    };
    let n_test = n - start;
    let gap_ms = i64::try_from(p.gap)
        .unwrap_or(i64::MAX)
        .saturating_mul(bar_ms);
    // Rows whose target window ends `gap` bars before `t0`.
    let before = |rows: &[usize], t0: i64| -> Vec<usize> {
        rows.iter()
            .copied()
            .filter(|&i| ts[i].saturating_add(gap_ms) < t0)
            .collect()
    };
    let mut out: Vec<Fold> = Vec::with_capacity(p.folds);
    let mut rolling_len: Option<usize> = None;
    for k in 0..p.folds {
        let (a, b) = (
            start + n_test * k / p.folds,
            start + n_test * (k + 1) / p.folds,
        );
        let test = idx[a..b].to_vec();
        let too_few = |train: usize, validation: usize| WalkForwardError::TooFewRows {
            fold: k,
            train,
            validation,
            test: test.len(),
        };
        let Some(&t0) = test.first().map(|&i| &ts[i]) else {
            return Err(too_few(0, 0));
        };
        let history = before(&idx[..a], t0);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let n_val = ((history.len() as f64) * p.validation_fraction).round() as usize;
        let validation = history[history.len() - n_val.min(history.len())..].to_vec();
        let Some(&v0) = validation.first().map(|&i| &ts[i]) else {
            return Err(too_few(0, 0));
        };
        let mut train = before(&history[..history.len() - validation.len()], v0);
        if p.window == Window::Rolling {
            let keep = *rolling_len.get_or_insert(train.len());
            train.drain(..train.len().saturating_sub(keep));
        }
        if train.len() < MIN_ROWS || validation.len() < MIN_ROWS || test.len() < MIN_ROWS {
            return Err(too_few(train.len(), validation.len()));
        }
        out.push(Fold {
            train,
            validation,
            test,
        });
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn params(folds: usize, window: Window) -> WalkForwardParams {
        WalkForwardParams {
            folds,
            test_fraction: 0.4,
            test_start: None,
            validation_fraction: 0.2,
            gap: 24,
            window,
        }
    }

    /// 1000 hourly rows, with bars 300..310 missing from the grid and rows 500..505 unusable.
    fn grid() -> (Vec<i64>, Vec<bool>) {
        let ts: Vec<i64> = (0..1010_i64)
            .filter(|i| !(300..310).contains(i))
            .map(|i| i * H)
            .collect();
        let usable = ts.iter().map(|t| !(500..505).contains(&(t / H))).collect();
        (ts, usable)
    }

    #[test]
    fn folds_are_ordered_purged_and_cover_the_test_span() {
        let (ts, usable) = grid();
        let n_usable = usable.iter().filter(|u| **u).count();
        let f = folds(&ts, &usable, H, 1, &params(4, Window::Expanding)).unwrap();
        assert_eq!(f.len(), 4);
        let all_test: Vec<usize> = f.iter().flat_map(|x| x.test.clone()).collect();
        assert_eq!(all_test.len(), 398, "40 % of {n_usable} usable rows");
        // The test blocks are consecutive usable rows ending with the last one.
        let usable_idx: Vec<usize> = (0..ts.len()).filter(|&i| usable[i]).collect();
        assert_eq!(all_test, usable_idx[n_usable - 398..]);
        for (k, fold) in f.iter().enumerate() {
            assert!((99..=100).contains(&fold.test.len()), "equal blocks");
            for span in [&fold.train, &fold.validation, &fold.test] {
                assert!(span.iter().all(|&i| usable[i]), "only usable rows");
                assert!(span.windows(2).all(|w| w[0] < w[1]), "time order");
            }
            let (tr_end, va0, va_end, te0) = (
                ts[*fold.train.last().unwrap()],
                ts[fold.validation[0]],
                ts[*fold.validation.last().unwrap()],
                ts[fold.test[0]],
            );
            // More than `gap` bars between the spans: no target window reaches the next span.
            assert!(va0 - tr_end > 24 * H, "fold {k}: train/validation purge");
            assert!(te0 - va_end > 24 * H, "fold {k}: validation/test purge");
            // ... and no more than needed: the rows right before each purge are used.
            assert_eq!(te0 - va_end, 25 * H, "fold {k}");
            let hist = fold.train.len() + fold.validation.len();
            assert!(
                (fold.validation.len() as f64 - 0.2 * (hist + 24) as f64).abs() < 6.0,
                "fold {k}: validation share"
            );
        }
        // Expanding: every fold's training span extends the previous one from the same start.
        for w in f.windows(2) {
            assert_eq!(w[0].train[0], w[1].train[0]);
            assert!(w[1].train.len() > w[0].train.len());
            assert!(w[1].train.starts_with(&w[0].train));
            // The previous fold's test rows are history for the next one (but the purged).
            let t0 = ts[w[1].test[0]];
            for &i in &w[0].test {
                let seen = w[1].train.contains(&i) || w[1].validation.contains(&i);
                assert_eq!(seen, ts[i] + 24 * H < t0);
            }
        }
    }

    #[test]
    fn test_rows_never_leak_into_any_fold_history() {
        let (ts, usable) = grid();
        for window in [Window::Expanding, Window::Rolling] {
            let f = folds(&ts, &usable, H, 1, &params(5, window)).unwrap();
            for fold in &f {
                let t0 = ts[fold.test[0]];
                for &i in fold.train.iter().chain(&fold.validation) {
                    assert!(ts[i] + 24 * H < t0);
                    assert!(!fold.test.contains(&i));
                }
                assert!(fold.train.iter().all(|i| !fold.validation.contains(i)));
            }
            // Test blocks never overlap each other.
            for w in f.windows(2) {
                assert!(w[0].test.last().unwrap() < &w[1].test[0]);
            }
        }
    }

    #[test]
    fn a_test_start_fixes_where_the_test_blocks_begin() {
        let (ts, usable) = grid();
        let usable_idx: Vec<usize> = (0..ts.len()).filter(|&i| usable[i]).collect();
        // Bar 700 opens the test span, whatever the fraction says.
        let p = WalkForwardParams {
            test_start: Some(700 * H),
            test_fraction: 0.9,
            ..params(3, Window::Expanding)
        };
        let f = folds(&ts, &usable, H, 1, &p).unwrap();
        let all_test: Vec<usize> = f.iter().flat_map(|x| x.test.clone()).collect();
        assert_eq!(ts[all_test[0]], 700 * H);
        assert_eq!(all_test, usable_idx[usable_idx.len() - all_test.len()..]);
        assert_eq!(all_test.len(), 1010 - 700);
        assert!(
            f[0].train
                .iter()
                .chain(&f[0].validation)
                .all(|&i| ts[i] + 24 * H < 700 * H)
        );
        // A start between rows (in the missing bars 300..310) begins at the next row.
        let p = WalkForwardParams {
            test_start: Some(305 * H),
            ..params(2, Window::Expanding)
        };
        assert_eq!(
            ts[folds(&ts, &usable, H, 1, &p).unwrap()[0].test[0]],
            310 * H
        );
        // A start after the last row leaves no test rows; one before the first, no history.
        for t in [2000 * H, -H] {
            let p = WalkForwardParams {
                test_start: Some(t),
                ..params(2, Window::Expanding)
            };
            assert!(matches!(
                folds(&ts, &usable, H, 1, &p),
                Err(WalkForwardError::TooFewRows { .. })
            ));
        }
    }

    #[test]
    fn rolling_window_keeps_its_length() {
        let (ts, usable) = grid();
        let f = folds(&ts, &usable, H, 1, &params(4, Window::Rolling)).unwrap();
        let len = f[0].train.len();
        assert!(f.iter().all(|x| x.train.len() == len));
        assert!(f[3].train[0] > f[0].train[0], "the window slides");
    }

    #[test]
    fn refuses_what_cannot_work() {
        let (ts, usable) = grid();
        let h = |p: WalkForwardParams| folds(&ts, &usable, H, 1, &p).unwrap_err();
        assert_eq!(h(params(0, Window::Expanding)), WalkForwardError::NoFolds);
        assert!(matches!(
            h(WalkForwardParams {
                test_fraction: 1.0,
                ..params(3, Window::Expanding)
            }),
            WalkForwardError::BadFractions { .. }
        ));
        assert!(matches!(
            folds(&ts, &usable, H, 48, &params(3, Window::Expanding)),
            Err(WalkForwardError::GapTooShort { .. })
        ));
        assert!(matches!(
            h(params(60, Window::Expanding)),
            WalkForwardError::TooFewRows { .. }
        ));
        assert!(matches!(
            h(WalkForwardParams {
                test_fraction: 0.99,
                ..params(2, Window::Expanding)
            }),
            WalkForwardError::TooFewRows { .. }
        ));
        assert_eq!(
            folds(&[2, 1], &[true, true], H, 1, &params(1, Window::Expanding)).unwrap_err(),
            WalkForwardError::Unordered
        );
    }
}
