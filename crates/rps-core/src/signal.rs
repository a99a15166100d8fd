//! Buy/Hold/Sell trading signals: labels, baselines and classification metrics.
//!
//! A bar's label looks `horizon` bars ahead: with `r = ln(close[t+h] / close[t])`, it is
//! [`Signal::Buy`] when `r > threshold`, [`Signal::Sell`] when `r < -threshold`, else
//! [`Signal::Hold`]. One threshold, symmetric. [`label`] is the one place this rule lives:
//! training, evaluation, the momentum baseline and (later) serving and streaming all call it, so
//! a label can never mean two things.
//!
//! Class indices (the model's output order, XGBoost's `multi:softprob` columns) are fixed:
//! 0 = sell, 1 = hold, 2 = buy ([`Signal::index`]).

use serde::{Deserialize, Serialize};

/// Knobs of the signal labels (`signal:` in params.yaml).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignalParams {
    /// Bars ahead the future return is measured over.
    pub horizon: usize,
    /// Log-return threshold: Buy above it, Sell below its negative, Hold in between.
    pub threshold: f64,
}

impl Default for SignalParams {
    fn default() -> Self {
        Self {
            horizon: 1,
            threshold: 0.002,
        }
    }
}

/// Why signal parameters are unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SignalParamsError {
    #[error("signal.horizon must be at least 1 bar")]
    Horizon,
    #[error("signal.threshold must be a finite number >= 0, got {0}")]
    Threshold(f64),
}

impl SignalParams {
    /// Refuse a zero horizon and a negative or non-finite threshold.
    pub fn validate(&self) -> Result<(), SignalParamsError> {
        if self.horizon == 0 {
            return Err(SignalParamsError::Horizon);
        }
        if !(self.threshold.is_finite() && self.threshold >= 0.0) {
            return Err(SignalParamsError::Threshold(self.threshold));
        }
        Ok(())
    }
}

/// A trading signal, in the model's class order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    Sell = 0,
    Hold = 1,
    Buy = 2,
}

impl Signal {
    /// Every class, in index order.
    pub const ALL: [Self; 3] = [Self::Sell, Self::Hold, Self::Buy];

    /// The class index (0 sell, 1 hold, 2 buy).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The class of an index, `None` past 2.
    pub fn from_index(i: usize) -> Option<Self> {
        Self::ALL.get(i).copied()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sell => "sell",
            Self::Hold => "hold",
            Self::Buy => "buy",
        }
    }
}

/// The class names in index order (what `meta.json` records).
pub fn class_names() -> Vec<String> {
    Signal::ALL.iter().map(|s| s.as_str().to_owned()).collect()
}

/// The label of a log return against the threshold.
pub fn label_of_return(r: f64, threshold: f64) -> Option<Signal> {
    if !r.is_finite() {
        None
    } else if r > threshold {
        Some(Signal::Buy)
    } else if r < -threshold {
        Some(Signal::Sell)
    } else {
        Some(Signal::Hold)
    }
}

/// The label of a move from `prev_close` to `future_close` (`horizon` bars later): the one
/// entry point for every caller, serving and streaming included. `None` when either price is
/// missing, non-positive or not finite.
pub fn label(prev_close: f64, future_close: f64, p: &SignalParams) -> Option<Signal> {
    if !(prev_close > 0.0 && future_close > 0.0) {
        return None;
    }
    label_of_return((future_close / prev_close).ln(), p.threshold)
}

/// Labels of a close series on a regular bar grid (NaN for a missing bar): row `t` is
/// `label(close[t], close[t + h])`; the last `h` rows, and rows whose either price is missing,
/// have none.
pub fn labels(close: &[f64], p: &SignalParams) -> Vec<Option<Signal>> {
    let h = p.horizon;
    (0..close.len())
        .map(|t| close.get(t + h).and_then(|&f| label(close[t], f, p)))
        .collect()
}

/// The momentum baseline on a close grid: row `t` predicts the label of the last `h`-bar move,
/// `label(close[t - h], close[t], p)` — the same rule applied to the past. `None` for the first
/// `h` rows and around missing bars.
pub fn momentum(close: &[f64], p: &SignalParams) -> Vec<Option<Signal>> {
    let h = p.horizon;
    (0..close.len())
        .map(|t| t.checked_sub(h).and_then(|s| label(close[s], close[t], p)))
        .collect()
}

/// Buy/Hold/Sell labels and the momentum baseline for each row of a feature dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalColumns {
    /// `label(close[t], close[t + h])`; `None` for the last `h` bars and around missing bars.
    pub labels: Vec<Option<Signal>>,
    /// `label(close[t - h], close[t])`: the momentum baseline's prediction.
    pub momentum: Vec<Option<Signal>>,
}

/// Signal labels and momentum for rows at `ts` with closes `close` (a feature dataset's rows:
/// the bars that exist, sorted, on a grid of `bar_ms`). The rows are laid back on their regular
/// grid — a bar the dataset lacks is a missing close — so a label never spans a gap, then
/// [`labels`] and [`momentum`] apply the one label rule. A row off the grid gets none.
///
/// # Errors
/// Unusable signal parameters.
pub fn columns(
    ts: &[i64],
    close: &[f64],
    bar_ms: i64,
    p: &SignalParams,
) -> Result<SignalColumns, SignalParamsError> {
    p.validate()?;
    assert_eq!(ts.len(), close.len(), "one close per row");
    let (Some(&t0), Some(&t1)) = (ts.iter().min(), ts.iter().max()) else {
        return Ok(SignalColumns {
            labels: Vec::new(),
            momentum: Vec::new(),
        });
    };
    let bar_ms = bar_ms.max(1);
    let slot = |t: i64| -> Option<usize> {
        let offset = t - t0;
        (offset % bar_ms == 0)
            .then(|| usize::try_from(offset / bar_ms).ok())
            .flatten()
    };
    let n = usize::try_from((t1 - t0) / bar_ms + 1).unwrap_or(0);
    let mut grid = vec![f64::NAN; n];
    for (&t, &c) in ts.iter().zip(close) {
        if let Some(i) = slot(t) {
            grid[i] = c;
        }
    }
    let labels = labels(&grid, p);
    let momentum = momentum(&grid, p);
    let pick = |v: &[Option<Signal>]| -> Vec<Option<Signal>> {
        ts.iter().map(|&t| slot(t).and_then(|i| v[i])).collect()
    };
    Ok(SignalColumns {
        labels: pick(&labels),
        momentum: pick(&momentum),
    })
}

/// The most frequent class of `truth` (ties go to Hold, then to the lower index); Hold when
/// empty.
pub fn majority(truth: &[Signal]) -> Signal {
    let mut counts = [0usize; 3];
    for s in truth {
        counts[s.index()] += 1;
    }
    let best = counts.iter().copied().max().unwrap_or(0);
    if counts[Signal::Hold.index()] == best {
        Signal::Hold
    } else {
        Signal::ALL
            .into_iter()
            .find(|s| counts[s.index()] == best)
            .unwrap_or(Signal::Hold)
    }
}

/// The class of a probability row (argmax; the first of equal maxima, as XGBoost).
pub fn argmax(probabilities: &[f64]) -> Signal {
    let mut best = 0;
    for (i, p) in probabilities.iter().enumerate() {
        if *p > probabilities[best] {
            best = i;
        }
    }
    Signal::from_index(best).unwrap_or(Signal::Hold)
}

/// Precision, recall and F1 of one class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Rows whose truth is this class.
    pub support: usize,
}

/// Classification scores of one forecaster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalScores {
    pub accuracy: f64,
    /// Unweighted mean of the three classes' F1.
    pub macro_f1: f64,
    /// Sell, hold, buy.
    pub per_class: [ClassScores; 3],
    /// `confusion[truth][predicted]`, class order sell, hold, buy.
    pub confusion: [[usize; 3]; 3],
    pub n: usize,
}

/// Score predicted labels against the truth. A class never predicted has precision 0, a class
/// absent from the truth recall 0 (F1 0 in both cases), so a forecaster that never says Buy pays
/// for it in macro F1. Accuracy and macro F1 are NaN on no rows.
///
/// # Panics
/// If the lengths differ.
pub fn score(truth: &[Signal], predicted: &[Signal]) -> SignalScores {
    assert_eq!(truth.len(), predicted.len(), "one prediction per label");
    let mut confusion = [[0usize; 3]; 3];
    for (t, p) in truth.iter().zip(predicted) {
        confusion[t.index()][p.index()] += 1;
    }
    let n = truth.len();
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let per_class = [0, 1, 2].map(|c| {
        let tp = confusion[c][c];
        let predicted_c: usize = (0..3).map(|t| confusion[t][c]).sum();
        let support: usize = confusion[c].iter().sum();
        let precision = ratio(tp, predicted_c);
        let recall = ratio(tp, support);
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        ClassScores {
            precision,
            recall,
            f1,
            support,
        }
    });
    let (accuracy, macro_f1) = if n == 0 {
        (f64::NAN, f64::NAN)
    } else {
        let correct: usize = (0..3).map(|c| confusion[c][c]).sum();
        (
            correct as f64 / n as f64,
            per_class.iter().map(|c| c.f1).sum::<f64>() / 3.0,
        )
    };
    SignalScores {
        accuracy,
        macro_f1,
        per_class,
        confusion,
        n,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use Signal::{Buy, Hold, Sell};

    fn p(h: usize, threshold: f64) -> SignalParams {
        SignalParams {
            horizon: h,
            threshold,
        }
    }

    #[test]
    fn columns_lay_rows_back_on_their_grid() {
        let h = 3_600_000;
        let sp = SignalParams::default();
        // The bar at 2h is missing: no label across it; rows in any order.
        let ts = [h, 0, 3 * h, 4 * h];
        let close = [101.0, 100.0, 100.0, 100.1];
        let cols = columns(&ts, &close, h, &sp).unwrap();
        let l = |a: f64, b: f64| label(a, b, &sp);
        assert_eq!(cols.labels, [None, l(100.0, 101.0), l(100.0, 100.1), None]);
        assert_eq!(cols.labels[1], Some(Buy));
        assert_eq!(
            cols.momentum,
            [l(100.0, 101.0), None, None, l(100.0, 100.1)]
        );
        // A row off the grid gets nothing; bad params are refused; no rows, no labels.
        let off = columns(&[0, h / 2, h], &[100.0, 101.0, 102.0], h, &sp).unwrap();
        assert_eq!(off.labels[1], None);
        assert_eq!(off.labels[0], l(100.0, 102.0));
        assert_eq!(
            columns(&[0], &[1.0], h, &p(0, 0.0)),
            Err(SignalParamsError::Horizon)
        );
        assert!(columns(&[], &[], h, &sp).unwrap().labels.is_empty());
    }

    #[test]
    fn one_threshold_both_ways() {
        let q = p(1, 0.01);
        assert_eq!(label(100.0, 102.0, &q), Some(Buy));
        assert_eq!(label(100.0, 98.0, &q), Some(Sell));
        assert_eq!(label(100.0, 100.5, &q), Some(Hold));
        assert_eq!(label(100.0, 99.5, &q), Some(Hold));
        // Exactly at the threshold is Hold on both sides.
        assert_eq!(label_of_return(0.01, 0.01), Some(Hold));
        assert_eq!(label_of_return(-0.01, 0.01), Some(Hold));
        assert_eq!(label(f64::NAN, 100.0, &q), None);
        assert_eq!(label(100.0, 0.0, &q), None);
        assert_eq!(label_of_return(f64::INFINITY, 0.01), None);
    }

    #[test]
    fn labels_look_h_bars_ahead_and_the_last_h_have_none() {
        let close = [100.0, 101.0, 100.0, f64::NAN, 103.0, 103.1];
        assert_eq!(
            labels(&close, &p(1, 0.005)),
            [Some(Buy), Some(Sell), None, None, Some(Hold), None]
        );
        assert_eq!(
            labels(&close, &p(2, 0.005)),
            [Some(Hold), None, Some(Buy), None, None, None]
        );
        // Momentum is the same rule on the past move.
        assert_eq!(
            momentum(&close, &p(1, 0.005)),
            [None, Some(Buy), Some(Sell), None, None, Some(Hold)]
        );
    }

    #[test]
    fn labels_from_a_series_equal_the_serving_entry_point() {
        // A wiggly deterministic price path around 100 with moves near the threshold.
        let close: Vec<f64> = (0..500)
            .map(|i| 100.0 * (1.0 + 0.004 * (f64::from(i) * 0.7).sin() + 0.0001 * f64::from(i)))
            .collect();
        for h in [1, 3, 24] {
            let q = p(h, 0.002);
            let series = labels(&close, &q);
            let mut seen = [0; 3];
            for (t, l) in series.iter().enumerate() {
                let serving = close.get(t + h).and_then(|&f| label(close[t], f, &q));
                assert_eq!(*l, serving, "h {h}, row {t}");
                if let Some(s) = l {
                    seen[s.index()] += 1;
                }
                // Momentum at t+h is the label of row t: one rule, two uses.
                if t + h < close.len() {
                    assert_eq!(momentum(&close, &q)[t + h], *l);
                }
            }
            assert!(seen.iter().all(|&c| c > 0), "h {h}: every class occurs");
            assert!(series[close.len() - h..].iter().all(Option::is_none));
        }
    }

    #[test]
    fn scores_by_hand() {
        let truth = [Sell, Sell, Hold, Hold, Hold, Buy];
        let pred = [Sell, Hold, Hold, Hold, Buy, Hold];
        let s = score(&truth, &pred);
        assert_eq!(s.confusion, [[1, 1, 0], [0, 2, 1], [0, 1, 0]]);
        assert_eq!(s.n, 6);
        assert!((s.accuracy - 0.5).abs() < 1e-12);
        // Sell: P 1, R 1/2, F1 2/3. Hold: P 2/4, R 2/3, F1 4/7. Buy: P 0, R 0, F1 0.
        assert!((s.per_class[0].f1 - 2.0 / 3.0).abs() < 1e-12);
        assert!((s.per_class[1].precision - 0.5).abs() < 1e-12);
        assert!((s.per_class[1].f1 - 4.0 / 7.0).abs() < 1e-12);
        assert_eq!(s.per_class[2].f1, 0.0);
        assert_eq!(s.per_class[2].support, 1);
        assert!((s.macro_f1 - (2.0 / 3.0 + 4.0 / 7.0) / 3.0).abs() < 1e-12);
        let empty = score(&[], &[]);
        assert!(empty.accuracy.is_nan() && empty.macro_f1.is_nan());
    }

    #[test]
    fn majority_argmax_and_params() {
        assert_eq!(majority(&[Buy, Buy, Sell]), Buy);
        assert_eq!(majority(&[Buy, Sell, Hold]), Hold, "ties go to Hold");
        assert_eq!(majority(&[Buy, Sell]), Sell, "then to the lower index");
        assert_eq!(majority(&[]), Hold);
        assert_eq!(argmax(&[0.2, 0.3, 0.5]), Buy);
        assert_eq!(argmax(&[0.4, 0.4, 0.2]), Sell);
        assert_eq!(Signal::from_index(1), Some(Hold));
        assert_eq!(Signal::from_index(3), None);
        assert_eq!(class_names(), ["sell", "hold", "buy"]);
        assert!(SignalParams::default().validate().is_ok());
        assert_eq!(p(0, 0.1).validate(), Err(SignalParamsError::Horizon));
        assert!(matches!(
            p(1, -0.1).validate(),
            Err(SignalParamsError::Threshold(_))
        ));
    }
}
