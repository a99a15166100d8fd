//! Returns and volatility estimators. All volatilities are per bar (not annualised).

use crate::candle::Candle;

/// `ln(b / a)`; NaN unless both are positive and finite.
pub fn log_return(a: f64, b: f64) -> f64 {
    if a > 0.0 && b > 0.0 && a.is_finite() && b.is_finite() {
        (b / a).ln()
    } else {
        f64::NAN
    }
}

/// Close-to-close log returns; element `i` is `ln(close[i] / close[i-1])`, element 0 is NaN.
pub fn log_returns(closes: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(closes.len());
    out.push(f64::NAN);
    out.extend(closes.windows(2).map(|w| log_return(w[0], w[1])));
    out.truncate(closes.len());
    out
}

/// Parkinson (1980) high-low volatility of one bar: `sqrt(ln(H/L)² / (4 ln 2))`.
/// Zero when `high == low`; NaN for non-positive prices or `high < low`.
pub fn parkinson(high: f64, low: f64) -> f64 {
    if !(low > 0.0 && high >= low && high.is_finite()) {
        return f64::NAN;
    }
    let hl = (high / low).ln();
    (hl * hl / (4.0 * std::f64::consts::LN_2)).sqrt()
}

/// Garman–Klass (1980) volatility of one bar:
/// `sqrt(0.5 ln(H/L)² − (2 ln 2 − 1) ln(C/O)²)`, clamped at zero.
pub fn garman_klass(c: &Candle) -> f64 {
    let hl = log_return(c.low, c.high);
    let co = log_return(c.open, c.close);
    if hl.is_nan() || co.is_nan() || hl < 0.0 {
        return f64::NAN;
    }
    (0.5 * hl * hl - (2.0 * std::f64::consts::LN_2 - 1.0) * co * co)
        .max(0.0)
        .sqrt()
}

/// Realized volatility of a bar from its sub-bars: `sqrt(Σ r²)` over the sub-bar log returns,
/// the first taken from `prev_close` (the previous bar's close) when it is known.
pub fn realized(prev_close: Option<f64>, parts: &[Candle]) -> f64 {
    let mut sum = 0.0;
    let mut prev = prev_close.unwrap_or(f64::NAN);
    let mut n = 0;
    for p in parts {
        let r = log_return(prev, p.close);
        if r.is_finite() {
            sum += r * r;
            n += 1;
        }
        prev = p.close;
    }
    if n == 0 { f64::NAN } else { sum.sqrt() }
}

/// The bar-volatility estimator used for the target and the HAR terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Estimator {
    /// Parkinson high-low range of the bar.
    Parkinson,
    /// Garman–Klass open-high-low-close.
    GarmanKlass,
    /// Realized volatility from sub-bar returns (needs a source finer than the bar); falls back to
    /// the absolute close-to-close return when a bar has a single sub-bar.
    Realized,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn returns_by_hand() {
        let r = log_returns(&[100.0, 110.0, 99.0]);
        assert!(r[0].is_nan());
        assert!(close(r[1], (1.1f64).ln()));
        assert!(close(r[2], (0.9f64).ln()));
        assert!(log_return(0.0, 1.0).is_nan());
        assert!(log_returns(&[]).is_empty());
    }

    #[test]
    fn parkinson_by_hand() {
        // ln(110/100) = 0.0953101798; squared 0.00908403; / (4 ln 2 = 2.7725887) = 0.00327637; sqrt = 0.0572396
        assert!((parkinson(110.0, 100.0) - 0.057_239_6).abs() < 1e-7);
        assert_eq!(parkinson(100.0, 100.0), 0.0);
        assert!(parkinson(90.0, 100.0).is_nan());
        assert!(parkinson(1.0, 0.0).is_nan());
    }

    #[test]
    fn garman_klass_by_hand() {
        let c = Candle {
            ts: 0,
            open: 100.0,
            high: 110.0,
            low: 100.0,
            close: 105.0,
            volume: 1.0,
            ..Default::default()
        };
        let hl = (1.1f64).ln();
        let co = (1.05f64).ln();
        let expect = (0.5 * hl * hl - (2.0 * 2f64.ln() - 1.0) * co * co).sqrt();
        assert!(close(garman_klass(&c), expect));
    }

    #[test]
    fn realized_by_hand() {
        let part = |close| Candle {
            ts: 0,
            open: close,
            high: close,
            low: close,
            close,
            volume: 0.0,
            ..Default::default()
        };
        let rv = realized(Some(100.0), &[part(101.0), part(100.0)]);
        let a = (1.01f64).ln();
        let b = (100.0f64 / 101.0).ln();
        assert!(close(rv, (a * a + b * b).sqrt()));
        // Without the previous close only the within-bar return counts.
        assert!(close(realized(None, &[part(101.0), part(100.0)]), b.abs()));
        assert!(realized(None, &[part(1.0)]).is_nan());
    }
}
