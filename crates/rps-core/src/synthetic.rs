//! A seeded market simulator for offline demos, tests and benchmarks: GARCH(1,1) volatility
//! clustering with a two-state Markov regime switch (calm / turbulent), Student-t shocks, and
//! intrabar paths for realistic high/low ranges. Same seed, same bars.

use crate::candle::{Candle, Interval};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal, StudentT};
use serde::{Deserialize, Serialize};

/// Simulator knobs (`data.synthetic:` in params.yaml).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticParams {
    pub seed: u64,
    /// Price of the first bar.
    pub start_price: f64,
    /// GARCH persistence of the squared shock.
    pub alpha: f64,
    /// GARCH persistence of the variance.
    pub beta: f64,
    /// Long-run volatility per hour in the calm regime (e.g. 0.006 = 0.6 %).
    pub hourly_vol: f64,
    /// Volatility multiplier of the turbulent regime.
    pub turbulent_multiplier: f64,
    /// Per-hour probability of entering / leaving the turbulent regime.
    pub p_enter: f64,
    pub p_leave: f64,
    /// Degrees of freedom of the Student-t shocks.
    pub dof: f64,
    /// Intrabar steps simulated per bar (for high/low).
    pub steps_per_bar: usize,
}

impl Default for SyntheticParams {
    fn default() -> Self {
        Self {
            seed: 42,
            start_price: 10_000.0,
            alpha: 0.08,
            beta: 0.9,
            hourly_vol: 0.006,
            turbulent_multiplier: 2.5,
            p_enter: 0.002,
            p_leave: 0.01,
            dof: 5.0,
            steps_per_bar: 8,
        }
    }
}

/// Simulate bars `[start_ms, end_ms)` on the `interval` grid. The GARCH runs per bar with the
/// hourly parameters rescaled to the bar length, so a 1-minute and a 1-hour simulation share the
/// same long-run hourly volatility.
pub fn simulate(
    p: &SyntheticParams,
    interval: Interval,
    start_ms: i64,
    end_ms: i64,
) -> Vec<Candle> {
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let bar_hours = interval.ms() as f64 / 3_600_000.0;
    let long_var = p.hourly_vol * p.hourly_vol * bar_hours;
    let omega = long_var * (1.0 - p.alpha - p.beta).max(1e-6);
    let t = StudentT::new(p.dof.max(2.1))
        .unwrap_or_else(|_| StudentT::new(5.0).unwrap_or_else(|_| unreachable!()));
    let t_scale = ((p.dof.max(2.1) - 2.0) / p.dof.max(2.1)).sqrt();
    let (p_enter, p_leave) = (
        1.0 - (1.0 - p.p_enter).powf(bar_hours),
        1.0 - (1.0 - p.p_leave).powf(bar_hours),
    );
    let steps = p.steps_per_bar.max(1);
    let mut var = long_var;
    let mut turbulent = false;
    let mut price = p.start_price;
    let mut out = Vec::new();
    let mut ts = interval.floor(start_ms);
    if ts < start_ms {
        ts += interval.ms();
    }
    while ts < end_ms {
        if turbulent {
            turbulent = !rng.random_bool(p_leave.clamp(0.0, 1.0))
        } else {
            turbulent = rng.random_bool(p_enter.clamp(0.0, 1.0))
        }
        let regime = if turbulent {
            p.turbulent_multiplier
        } else {
            1.0
        };
        let sigma = var.sqrt() * regime;
        let open = price;
        let (mut high, mut low) = (open, open);
        let mut total = 0.0;
        let step_sigma = sigma / (steps as f64).sqrt();
        for _ in 0..steps {
            let z: f64 = t.sample(&mut rng) * t_scale;
            let r = step_sigma * z - 0.5 * step_sigma * step_sigma;
            total += r;
            price *= r.exp();
            high = high.max(price);
            low = low.min(price);
        }
        let shock = total / regime;
        var = omega + p.alpha * shock * shock + p.beta * var;
        let noise: f64 = StandardNormal.sample(&mut rng);
        let volume = 50.0
            * bar_hours
            * (1.0 + 3.0 * (total.abs() / (long_var.sqrt() + 1e-12)))
            * (0.3 * noise).exp();
        out.push(Candle {
            ts,
            open,
            high,
            low,
            close: price,
            volume,
            ..Default::default()
        });
        ts += interval.ms();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volatility::parkinson;

    #[test]
    fn deterministic_valid_and_clustered() {
        let p = SyntheticParams::default();
        let a = simulate(&p, Interval::H1, 0, 5000 * 3_600_000);
        let b = simulate(&p, Interval::H1, 0, 5000 * 3_600_000);
        assert_eq!(a, b);
        assert_eq!(a.len(), 5000);
        for c in &a {
            assert!(
                c.low <= c.open
                    && c.low <= c.close
                    && c.high >= c.open
                    && c.high >= c.close
                    && c.low > 0.0
                    && c.volume >= 0.0
            );
        }
        // Volatility clustering: today's range predicts tomorrow's (positive autocorrelation).
        let v: Vec<f64> = a.iter().map(|c| parkinson(c.high, c.low).ln()).collect();
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let num: f64 = v.windows(2).map(|w| (w[0] - m) * (w[1] - m)).sum();
        let den: f64 = v.iter().map(|x| (x - m).powi(2)).sum();
        assert!(
            num / den > 0.2,
            "lag-1 autocorrelation of log range {}",
            num / den
        );
        let other = simulate(
            &SyntheticParams { seed: 7, ..p },
            Interval::H1,
            0,
            10 * 3_600_000,
        );
        assert_ne!(other[5], a[5]);
    }
}
