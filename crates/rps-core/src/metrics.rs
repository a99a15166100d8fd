//! Forecast accuracy metrics for volatility.

use serde::{Deserialize, Serialize};

/// QLIKE loss of one forecast, on variances: `σ²/h − ln(σ²/h) − 1` (Patton 2011), zero for a
/// perfect forecast. `realized` and `forecast` are volatilities (already floored).
pub fn qlike_one(realized: f64, forecast: f64) -> f64 {
    let ratio = (realized * realized) / (forecast * forecast);
    ratio - ratio.ln() - 1.0
}

/// Squared log error of one forecast, `(ln σ − ln h)²`: the loss whose optimum is the
/// conditional median of ln σ, what R² (log) rewards.
pub fn log_loss_one(realized: f64, forecast: f64) -> f64 {
    (realized.ln() - forecast.ln()).powi(2)
}

/// Accuracy of one forecaster on one span.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Root mean squared error on volatility.
    pub rmse: f64,
    /// Mean absolute error on volatility.
    pub mae: f64,
    /// Coefficient of determination on volatility.
    pub r2: f64,
    /// Coefficient of determination on log volatility.
    pub r2_log: f64,
    /// Mean QLIKE on variances.
    pub qlike: f64,
    /// Mean squared error on variances, `mean((σ² − h²)²)`: with QLIKE, the loss that ranks
    /// variance forecasts consistently under a noisy proxy (Patton 2011).
    #[serde(default)]
    pub mse_var: f64,
    /// Mincer–Zarnowitz R² on the log scale: the R² of regressing ln σ on ln h with a free
    /// intercept and slope, i.e. the squared correlation. Unlike R² (log) it forgives bias and
    /// scale, so the gap between the two is how much a recalibration would win.
    #[serde(default)]
    pub mz_r2_log: f64,
    /// Rows scored.
    pub n: usize,
}

fn r2(y: &[f64], p: &[f64]) -> f64 {
    let n = y.len() as f64;
    let mean = y.iter().sum::<f64>() / n;
    let ss_tot: f64 = y.iter().map(|v| (v - mean).powi(2)).sum();
    let ss_res: f64 = y.iter().zip(p).map(|(a, b)| (a - b).powi(2)).sum();
    if ss_tot == 0.0 {
        f64::NAN
    } else {
        1.0 - ss_res / ss_tot
    }
}

/// Score `forecast` against `realized` (both volatilities, same length, floored by the caller).
///
/// # Panics
/// If the lengths differ.
pub fn score(realized: &[f64], forecast: &[f64]) -> Scores {
    assert_eq!(
        realized.len(),
        forecast.len(),
        "one forecast per realized value"
    );
    let n = realized.len();
    if n == 0 {
        return Scores {
            rmse: f64::NAN,
            mae: f64::NAN,
            r2: f64::NAN,
            r2_log: f64::NAN,
            qlike: f64::NAN,
            mse_var: f64::NAN,
            mz_r2_log: f64::NAN,
            n,
        };
    }
    let nf = n as f64;
    let rmse = (realized
        .iter()
        .zip(forecast)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f64>()
        / nf)
        .sqrt();
    let mae = realized
        .iter()
        .zip(forecast)
        .map(|(a, b)| (a - b).abs())
        .sum::<f64>()
        / nf;
    let ly: Vec<f64> = realized.iter().map(|v| v.ln()).collect();
    let lp: Vec<f64> = forecast.iter().map(|v| v.ln()).collect();
    let qlike = realized
        .iter()
        .zip(forecast)
        .map(|(a, b)| qlike_one(*a, *b))
        .sum::<f64>()
        / nf;
    let mse_var = realized
        .iter()
        .zip(forecast)
        .map(|(a, b)| (a * a - b * b).powi(2))
        .sum::<f64>()
        / nf;
    Scores {
        rmse,
        mae,
        r2: r2(realized, forecast),
        r2_log: r2(&ly, &lp),
        qlike,
        mse_var,
        mz_r2_log: squared_correlation(&ly, &lp),
        n,
    }
}

/// The squared Pearson correlation of `x` and `y`: the R² of a least-squares line through
/// them. NaN when either is constant.
fn squared_correlation(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    if sxx == 0.0 || syy == 0.0 {
        f64::NAN
    } else {
        sxy * sxy / (sxx * syy)
    }
}

/// Result of a Diebold–Mariano test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DieboldMariano {
    /// Mean loss differential `mean(loss_a − loss_b)`; negative favours `a`.
    pub mean_diff: f64,
    /// The DM statistic (asymptotically standard normal).
    pub statistic: f64,
    /// Two-sided p-value.
    pub p_value: f64,
}

/// Diebold–Mariano (1995) test of equal predictive accuracy from two loss series, with a
/// Newey–West long-run variance using `lags` autocovariances (Bartlett weights).
pub fn diebold_mariano(loss_a: &[f64], loss_b: &[f64], lags: usize) -> DieboldMariano {
    let d: Vec<f64> = loss_a.iter().zip(loss_b).map(|(a, b)| a - b).collect();
    let n = d.len() as f64;
    let mean = d.iter().sum::<f64>() / n;
    let gamma = |k: usize| {
        d[k..]
            .iter()
            .zip(&d)
            .map(|(x, y)| (x - mean) * (y - mean))
            .sum::<f64>()
            / n
    };
    let mut lrv = gamma(0);
    for k in 1..=lags.min(d.len().saturating_sub(1)) {
        lrv += 2.0 * (1.0 - k as f64 / (lags as f64 + 1.0)) * gamma(k);
    }
    let statistic = mean / (lrv.max(f64::MIN_POSITIVE) / n).sqrt();
    DieboldMariano {
        mean_diff: mean,
        statistic,
        p_value: 2.0 * (1.0 - normal_cdf(statistic.abs())),
    }
}

/// Standard normal CDF (Abramowitz–Stegun 7.1.26 via erf; |error| < 1.5e-7).
pub fn normal_cdf(x: f64) -> f64 {
    let z = x / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-z * z).exp();
    0.5 * (1.0 + if z >= 0.0 { erf } else { -erf })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_by_hand() {
        let y = [1.0, 2.0, 3.0];
        let p = [1.0, 2.5, 2.0];
        let s = score(&y, &p);
        assert!((s.rmse - (1.25f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((s.mae - 0.5).abs() < 1e-12);
        assert!((s.r2 - (1.0 - 1.25 / 2.0)).abs() < 1e-12);
        let q = |a: f64, b: f64| (a * a) / (b * b) - ((a * a) / (b * b)).ln() - 1.0;
        assert!((s.qlike - (0.0 + q(2.0, 2.5) + q(3.0, 2.0)) / 3.0).abs() < 1e-12);
        assert_eq!(s.n, 3);
        let perfect = score(&y, &y);
        assert_eq!(perfect.qlike, 0.0);
        assert_eq!(perfect.r2_log, 1.0);
        let mse_var =
            ((1.0f64 - 1.0).powi(2) + (4.0f64 - 6.25).powi(2) + (9.0f64 - 4.0).powi(2)) / 3.0;
        assert!((s.mse_var - mse_var).abs() < 1e-12);
    }

    #[test]
    fn mincer_zarnowitz_forgives_bias_and_scale_but_r2_log_does_not() {
        let y: Vec<f64> = (1..50).map(|i| 0.01 * (1.0 + f64::from(i % 7))).collect();
        // ln h = 0.5 + 2 ln y: perfectly correlated, badly biased and scaled.
        let h: Vec<f64> = y.iter().map(|v| (0.5 + 2.0 * v.ln()).exp()).collect();
        let s = score(&y, &h);
        assert!((s.mz_r2_log - 1.0).abs() < 1e-12);
        assert!(s.r2_log < 0.0);
        assert!(log_loss_one(2.0, 2.0).abs() < 1e-15);
        assert!((log_loss_one(std::f64::consts::E, 1.0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn qlike_penalises_under_forecasts_more() {
        assert!(qlike_one(2.0, 1.0) > qlike_one(1.0, 2.0));
        assert!(qlike_one(1.0, 1.0).abs() < 1e-15);
    }

    #[test]
    fn diebold_mariano_detects_a_better_forecast() {
        let a: Vec<f64> = (0..500)
            .map(|i| 1.0 + 0.1 * ((i * 7 % 11) as f64 / 11.0))
            .collect();
        let b: Vec<f64> = a
            .iter()
            .enumerate()
            .map(|(i, x)| x + 0.05 + 0.02 * ((i % 3) as f64))
            .collect();
        let dm = diebold_mariano(&a, &b, 5);
        assert!(dm.mean_diff < 0.0);
        assert!(dm.statistic < -5.0);
        assert!(dm.p_value < 1e-6);
        let same = diebold_mariano(&a, &a.iter().map(|x| x + 1e-9 * 0.0).collect::<Vec<_>>(), 5);
        assert_eq!(same.mean_diff, 0.0);
        assert!((normal_cdf(1.959_964) - 0.975).abs() < 1e-6);
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-9);
    }
}
