//! The baselines every model is judged against: persistence, EWMA (RiskMetrics) and HAR-RV
//! (Corsi 2009) on log volatility.

use crate::linalg::{OlsError, ols};
use serde::{Deserialize, Serialize};

/// Persistence: next bar's volatility equals this bar's.
pub fn persistence(bar_vol: &[f64]) -> Vec<f64> {
    bar_vol.to_vec()
}

/// EWMA variance `s²_t = λ s²_{t-1} + (1 − λ) v_t²` over the bar volatilities in time order,
/// seeded with the first finite value; NaN bars leave the state unchanged. Returns `s_t`, the
/// forecast for bar `t + 1`.
pub fn ewma(bar_vol: &[f64], lambda: f64) -> Vec<f64> {
    let mut state = f64::NAN;
    bar_vol
        .iter()
        .map(|&v| {
            if v.is_finite() {
                state = if state.is_nan() {
                    v * v
                } else {
                    lambda * state + (1.0 - lambda) * v * v
                };
            }
            state.sqrt()
        })
        .collect()
}

/// A fitted HAR-RV regression: `ln σ_{t+1} = b0 + Σ b_k · har_k(t) + ε`, forecasting
/// `exp(fitted) · smearing`, where the smearing factor (Duan 1983) `mean(exp(ε))` on the training
/// residuals turns the log-scale fit into an unbiased volatility forecast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Har {
    /// Regressor names (the HAR feature columns), without the intercept.
    pub terms: Vec<String>,
    /// Intercept first, then one coefficient per term.
    pub coefficients: Vec<f64>,
    pub smearing: f64,
}

impl Har {
    /// Fit on rows where the target and every regressor are finite. `columns[k][i]` is regressor
    /// `k` at row `i` (already in logs), `target` the volatility (floored).
    pub fn fit(terms: &[String], columns: &[&[f64]], target: &[f64]) -> Result<Self, OlsError> {
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..target.len() {
            if target[i].is_finite() && target[i] > 0.0 && columns.iter().all(|c| c[i].is_finite())
            {
                let mut row = Vec::with_capacity(columns.len() + 1);
                row.push(1.0);
                row.extend(columns.iter().map(|c| c[i]));
                x.push(row);
                y.push(target[i].ln());
            }
        }
        let coefficients = ols(&x, &y)?;
        let residual_exp: f64 = x
            .iter()
            .zip(&y)
            .map(|(row, yi)| {
                (yi - row
                    .iter()
                    .zip(&coefficients)
                    .map(|(a, b)| a * b)
                    .sum::<f64>())
                .exp()
            })
            .sum();
        Ok(Self {
            terms: terms.to_vec(),
            coefficients,
            smearing: residual_exp / y.len() as f64,
        })
    }

    /// Forecast volatility for row `i`; NaN when a regressor is missing.
    pub fn predict(&self, columns: &[&[f64]], i: usize) -> f64 {
        self.predict_log_scale(columns, i) * self.smearing
    }

    /// `exp(fitted)` without the smearing: the log-scale forecast (the conditional median when
    /// the residuals are symmetric), HAR-RV's best on R² of log volatility; NaN when a regressor
    /// is missing.
    pub fn predict_log_scale(&self, columns: &[&[f64]], i: usize) -> f64 {
        let mut z = self.coefficients[0];
        for (c, b) in columns.iter().zip(&self.coefficients[1..]) {
            z += b * c[i];
        }
        z.exp()
    }
}

/// The name of HAR-RV's log-scale forecast, `exp(fitted)` without Duan's smearing: the same
/// regression as `har_rv`, which forecasts the volatility level (smeared) and so sits higher
/// than the R²(log)-optimal forecast.
pub const HAR_LOG: &str = "har_rv_log";

/// Named forecasts, one value per row.
pub type Named = Vec<(String, Vec<f64>)>;

/// Why the baselines could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("evaluate.har_terms names {0:?}, which is not a feature column")]
    UnknownHarTerm(String),
    #[error("HAR-RV baseline: {0}")]
    Har(#[from] OlsError),
}

/// Baseline forecasts for every row of `frame` (in time order), each floored at `floor` (a
/// missing value becomes the floor): `persistence`, `ewma` (λ = `ewma_lambda`), `har_rv` —
/// HAR-RV on the columns `har_terms`, fitted on the rows `fit_rows` only — and the same fit on
/// the log scale ([`HAR_LOG`]). What the evaluate stage scores the model against, on its test
/// split and refitted at every walk-forward fold.
///
/// # Errors
/// A HAR term that is not a column of `frame`, or a regression that cannot be fitted.
pub fn forecasts(
    frame: &crate::features::FeatureFrame,
    har_terms: &[String],
    ewma_lambda: f64,
    floor: f64,
    fit_rows: &[usize],
) -> Result<(Named, Har), BaselineError> {
    let f = frame;
    let cols: Vec<&[f64]> = har_terms
        .iter()
        .map(|t| {
            f.column(t)
                .ok_or_else(|| BaselineError::UnknownHarTerm(t.clone()))
        })
        .collect::<Result<_, _>>()?;
    let fit_cols: Vec<Vec<f64>> = cols
        .iter()
        .map(|c| fit_rows.iter().map(|&i| c[i]).collect())
        .collect();
    let fit_refs: Vec<&[f64]> = fit_cols.iter().map(Vec::as_slice).collect();
    let fit_y: Vec<f64> = fit_rows.iter().map(|&i| f.target[i]).collect();
    let har = Har::fit(har_terms, &fit_refs, &fit_y)?;
    let fl = |v: f64| if v.is_finite() { v.max(floor) } else { floor };
    let all = |v: Vec<f64>| v.into_iter().map(fl).collect::<Vec<_>>();
    Ok((
        vec![
            ("persistence".to_owned(), all(persistence(&f.bar_vol))),
            ("ewma".to_owned(), all(ewma(&f.bar_vol, ewma_lambda))),
            (
                "har_rv".to_owned(),
                (0..f.len()).map(|i| fl(har.predict(&cols, i))).collect(),
            ),
            (
                HAR_LOG.to_owned(),
                (0..f.len())
                    .map(|i| fl(har.predict_log_scale(&cols, i)))
                    .collect(),
            ),
        ],
        har,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ewma_by_hand() {
        let f = ewma(&[0.1, f64::NAN, 0.2], 0.9);
        assert!((f[0] - 0.1).abs() < 1e-15);
        assert!((f[1] - 0.1).abs() < 1e-15);
        let s2 = 0.9 * 0.01 + 0.1 * 0.04;
        assert!((f[2] - f64::sqrt(s2)).abs() < 1e-15);
        assert_eq!(persistence(&[0.3, 0.4]), vec![0.3, 0.4]);
    }

    #[test]
    fn har_recovers_a_log_linear_law() {
        // ln y = -1 + 0.5 a + 0.3 b exactly: smearing is 1.
        let a: Vec<f64> = (0..50).map(|i| -5.0 + (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..50).map(|i| -4.0 + (i as f64 * 0.11).cos()).collect();
        let y: Vec<f64> = a
            .iter()
            .zip(&b)
            .map(|(a, b)| (-1.0 + 0.5 * a + 0.3 * b).exp())
            .collect();
        let terms = vec!["a".to_owned(), "b".to_owned()];
        let har = Har::fit(&terms, &[&a, &b], &y).unwrap();
        for (got, want) in har.coefficients.iter().zip([-1.0, 0.5, 0.3]) {
            assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        }
        assert!((har.smearing - 1.0).abs() < 1e-9);
        assert!((har.predict(&[&a, &b], 7) - y[7]).abs() < 1e-9);
        assert!((har.predict_log_scale(&[&a, &b], 7) - y[7]).abs() < 1e-9);
    }

    #[test]
    fn forecasts_fit_har_on_the_given_rows_only_and_floor_every_value() {
        // ln y = -1 + 0.5 a on rows 0..40; rows 40..50 follow another law and are not fitted.
        let n = 50;
        let a: Vec<f64> = (0..n).map(|i| -5.0 + (f64::from(i) * 0.37).sin()).collect();
        let target: Vec<f64> = (0..n)
            .map(|i| {
                let k = if i < 40 { -1.0 } else { 3.0 };
                (k + 0.5 * a[i as usize]).exp()
            })
            .collect();
        let mut bar_vol = vec![0.02; n as usize];
        bar_vol[3] = 0.0;
        let frame = crate::features::FeatureFrame {
            ts: (0..i64::from(n)).collect(),
            names: vec!["har_1b".to_owned()],
            columns: vec![a.clone()],
            bar_vol,
            target,
            present: vec![true; n as usize],
        };
        let terms = vec!["har_1b".to_owned()];
        let fit: Vec<usize> = (0..40).collect();
        let (f, har) = forecasts(&frame, &terms, 0.9, 1e-3, &fit).unwrap();
        let names: Vec<&str> = f.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["persistence", "ewma", "har_rv", HAR_LOG]);
        assert!(
            (har.coefficients[0] + 1.0).abs() < 1e-9,
            "fitted on rows 0..40 only"
        );
        assert!((f[2].1[45] - (-1.0 + 0.5 * a[45]).exp()).abs() < 1e-12);
        assert_eq!(f[0].1[3], 1e-3, "persistence floored");
        assert!(matches!(
            forecasts(&frame, &["har_24b".to_owned()], 0.9, 1e-3, &fit),
            Err(BaselineError::UnknownHarTerm(t)) if t == "har_24b"
        ));
    }
}
