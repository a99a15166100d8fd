//! The walk-forward acceptance rule (`evaluate.acceptance`): whether the model's forecast
//! distribution beats the baselines practitioners use, criterion by criterion, on the pooled
//! out-of-sample rows.
//!
//! - the **mean** (`model`) on the variance scale: QLIKE at least `qlike_gain` below the best
//!   baseline's, and MSE of σ² no worse than the best baseline's on that loss;
//! - the **median** (`model_median`) on the log scale: R² (log) at least `median_r2_log_gain`
//!   above HAR-RV's best (the better of its level and log-scale forecasts);
//! - the **intervals**: pooled coverage of the 80 % and 90 % intervals within
//!   `coverage_tolerance` of nominal, the 80 % interval's coverage within
//!   `tercile_coverage_tolerance` in each tercile of predicted volatility, and its interval
//!   score at least `interval_score_gain` below HAR-RV's residual-quantile interval's.
//!
//! A criterion that cannot be measured (a model without quantiles, a baseline missing) fails:
//! an unmeasured claim is not a met one.

use crate::*;
use rps_core::params::AcceptanceParams;
use serde::{Deserialize, Serialize};

/// One criterion of the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Criterion {
    /// QLIKE of the mean against the best baseline's.
    MeanQlike,
    /// MSE of σ² of the mean against the best baseline's on that loss.
    MeanMseVar,
    /// R² (log) of the median against HAR-RV's best.
    MedianR2Log,
    /// Pooled coverage of the 80 % interval.
    Coverage80,
    /// Pooled coverage of the 90 % interval.
    Coverage90,
    /// Coverage of the 80 % interval in the calm, normal and turbulent terciles.
    TercileCoverage80,
    /// Interval score of the 80 % interval against HAR-RV's.
    IntervalScore80,
}

impl Criterion {
    /// The criterion's name in JSON and in metric keys (`wf_accept_<key>`).
    pub fn key(self) -> &'static str {
        match self {
            Self::MeanQlike => "mean_qlike",
            Self::MeanMseVar => "mean_mse_var",
            Self::MedianR2Log => "median_r2_log",
            Self::Coverage80 => "coverage80",
            Self::Coverage90 => "coverage90",
            Self::TercileCoverage80 => "tercile_coverage80",
            Self::IntervalScore80 => "interval_score80",
        }
    }

    /// What the criterion compares, for the report.
    pub fn describe(self) -> &'static str {
        match self {
            Self::MeanQlike => "QLIKE of the mean vs the best baseline",
            Self::MeanMseVar => "MSE of σ² of the mean vs the best baseline",
            Self::MedianR2Log => "R² (log) of the median vs HAR-RV's best",
            Self::Coverage80 => "coverage of the 80 % interval",
            Self::Coverage90 => "coverage of the 90 % interval",
            Self::TercileCoverage80 => "80 % coverage in each volatility tercile",
            Self::IntervalScore80 => "80 % interval score vs HAR-RV's",
        }
    }
}

/// One criterion's outcome: the measured value, the bar, both also in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub criterion: Criterion,
    /// The measured value in the criterion's units (a share, an R² difference, a coverage, the
    /// worst tercile's distance from nominal); NaN (`null` in JSON) when it could not be measured.
    pub value: f64,
    /// The bar `value` is held to.
    pub threshold: f64,
    /// `value` in words, with what it was compared with.
    pub observed: String,
    /// The bar in words.
    pub required: String,
    pub passed: bool,
}

/// The rule's outcome on a walk-forward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The baseline with the lowest pooled QLIKE.
    pub best_baseline: String,
    /// `1 − QLIKE(model) / QLIKE(best baseline)`: the share by which the mean's QLIKE is lower.
    pub qlike_gain: f64,
    /// `R²log(median) − R²log(HAR-RV's best)`.
    pub median_r2_log_vs_har: f64,
    /// Every criterion, in the order of [`Criterion`].
    pub checks: Vec<Check>,
    /// Every criterion passed.
    pub passed: bool,
}

/// A verdict in brief, as `metrics.json` gives it: whether it passed, and the failed criteria.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub passed: bool,
    pub failed: Vec<Criterion>,
}

impl Verdict {
    /// The verdict in brief.
    pub fn outcome(&self) -> Outcome {
        Outcome {
            passed: self.passed,
            failed: self
                .checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| c.criterion)
                .collect(),
        }
    }

    /// The criteria that failed, in words.
    pub fn failed(&self) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.criterion.describe())
            .collect()
    }
}

fn pct(v: f64) -> String {
    format!("{:.1} %", v * 100.0)
}

/// `share` as "x % lower" / "x % higher".
fn lower_by(share: f64) -> String {
    if share.is_nan() {
        "not measured".to_owned()
    } else {
        format!(
            "{:.1} % {}",
            share.abs() * 100.0,
            if share >= 0.0 { "lower" } else { "higher" }
        )
    }
}

fn check(
    criterion: Criterion,
    value: f64,
    threshold: f64,
    observed: String,
    required: String,
) -> Check {
    // A ceiling for the MSE ratio and the distances from nominal coverage, a floor for gains.
    let passed = match criterion {
        Criterion::MeanMseVar
        | Criterion::Coverage80
        | Criterion::Coverage90
        | Criterion::TercileCoverage80 => value <= threshold,
        Criterion::MeanQlike | Criterion::MedianR2Log | Criterion::IntervalScore80 => {
            value >= threshold
        }
    };
    Check {
        criterion,
        value,
        threshold,
        observed,
        required,
        passed: passed && value.is_finite(),
    }
}

/// Judge `wf` by `rule`. `None` when the walk-forward scored no model or no baseline.
pub fn judge(wf: &WalkForward, rule: &AcceptanceParams) -> Option<Verdict> {
    let model = wf.pooled_score("model")?;
    let baselines: Vec<&(String, rps_core::metrics::Scores)> = wf
        .pooled
        .iter()
        .filter(|(n, _)| !n.starts_with("model"))
        .collect();
    let (best_name, best) = baselines
        .iter()
        .min_by(|a, b| a.1.qlike.total_cmp(&b.1.qlike))
        .map(|(n, s)| (n, s))?;
    let mut checks = Vec::with_capacity(7);

    let qlike_gain = 1.0 - model.qlike / best.qlike;
    checks.push(check(
        Criterion::MeanQlike,
        qlike_gain,
        rule.qlike_gain,
        format!(
            "{} than {best_name}'s ({:.4} vs {:.4})",
            lower_by(qlike_gain),
            model.qlike,
            best.qlike
        ),
        format!("at least {:.0} % lower", rule.qlike_gain * 100.0),
    ));

    let (mse_name, mse_best) = baselines
        .iter()
        .min_by(|a, b| a.1.mse_var.total_cmp(&b.1.mse_var))
        .map(|(n, s)| (n, s.mse_var))?;
    let ratio = model.mse_var / mse_best;
    checks.push(check(
        Criterion::MeanMseVar,
        ratio,
        1.0 + rule.mse_var_tolerance,
        format!(
            "{:.3} × {mse_name}'s ({:.4e} vs {:.4e})",
            ratio, model.mse_var, mse_best
        ),
        format!("at most {:.3} ×", 1.0 + rule.mse_var_tolerance),
    ));

    let median = wf.pooled_score("model_median");
    let har_best = ["har_rv", HAR_LOG]
        .iter()
        .filter_map(|n| wf.pooled_score(n).map(|s| (*n, s.r2_log)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let median_r2_log_vs_har = match (median, har_best) {
        (Some(m), Some((_, h))) => m.r2_log - h,
        _ => f64::NAN,
    };
    checks.push(check(
        Criterion::MedianR2Log,
        median_r2_log_vs_har,
        rule.median_r2_log_gain,
        match (median, har_best) {
            (Some(m), Some((hn, h))) => format!(
                "{median_r2_log_vs_har:+.4} ({:.4} vs {hn} {h:.4})",
                m.r2_log
            ),
            _ => "not measured: no median or no HAR-RV forecast".to_owned(),
        },
        format!("at least {:+.4}", rule.median_r2_log_gain),
    ));

    let dist = |name: &str| {
        wf.distribution
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d)
    };
    let interval = |name: &str, c: f64| {
        dist(name)?
            .intervals
            .iter()
            .find(|i| (i.nominal - c).abs() < 1e-9)
            .copied()
    };
    for (criterion, nominal) in [(Criterion::Coverage80, 0.8), (Criterion::Coverage90, 0.9)] {
        let cov = interval("model", nominal).map_or(f64::NAN, |i| i.coverage);
        checks.push(check(
            criterion,
            (cov - nominal).abs(),
            rule.coverage_tolerance,
            if cov.is_nan() {
                "not measured: the model has no such interval".to_owned()
            } else {
                format!("{} ({:+.1} points)", pct(cov), (cov - nominal) * 100.0)
            },
            format!(
                "{} ± {:.0} points",
                pct(nominal),
                rule.coverage_tolerance * 100.0
            ),
        ));
    }

    let terciles = dist("model").map_or_else(Vec::new, |d| d.tercile_coverage_80.clone());
    let worst = if terciles.len() == 3 {
        terciles.iter().map(|c| (c - 0.8).abs()).fold(0.0, f64::max)
    } else {
        f64::NAN
    };
    checks.push(check(
        Criterion::TercileCoverage80,
        worst,
        rule.tercile_coverage_tolerance,
        if terciles.len() == 3 {
            terciles
                .iter()
                .map(|c| pct(*c))
                .collect::<Vec<_>>()
                .join(" / ")
        } else {
            "not measured".to_owned()
        },
        format!(
            "80.0 % ± {:.0} points in each",
            rule.tercile_coverage_tolerance * 100.0
        ),
    ));

    let (m80, h80) = (interval("model", 0.8), interval("har_rv", 0.8));
    let gain = match (m80, h80) {
        (Some(m), Some(h)) => 1.0 - m.interval_score / h.interval_score,
        _ => f64::NAN,
    };
    checks.push(check(
        Criterion::IntervalScore80,
        gain,
        rule.interval_score_gain,
        match (m80, h80) {
            (Some(m), Some(h)) => format!(
                "{} ({:.6} vs {:.6})",
                lower_by(gain),
                m.interval_score,
                h.interval_score
            ),
            _ => "not measured: no 80 % interval of the model or of HAR-RV".to_owned(),
        },
        format!("at least {:.0} % lower", rule.interval_score_gain * 100.0),
    ));

    let passed = checks.iter().all(|c| c.passed);
    Some(Verdict {
        best_baseline: best_name.clone(),
        qlike_gain,
        median_r2_log_vs_har,
        checks,
        passed,
    })
}

/// The verdict as a Markdown table and a closing line.
pub fn verdict_markdown(v: &Verdict) -> String {
    format!(
        "### Verdict\n\nThe acceptance rule (`evaluate.acceptance` in params.yaml) on the pooled rows above.\n\n{}",
        verdict_table(v)
    )
}

/// The verdict's criteria as a Markdown table, and its closing line.
pub fn verdict_table(v: &Verdict) -> String {
    let mut s = String::from("| criterion | observed | required | |\n|---|---|---|---|\n");
    for c in &v.checks {
        s.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            c.criterion.describe(),
            c.observed,
            c.required,
            if c.passed { "pass" } else { "**fail**" }
        ));
    }
    s.push('\n');
    if v.passed {
        s.push_str("Verdict: **passes every criterion**.\n\n");
    } else {
        s.push_str(&format!(
            "Verdict: **fails** {} of {}: {}.\n\n",
            v.checks.iter().filter(|c| !c.passed).count(),
            v.checks.len(),
            v.failed().join("; ")
        ));
    }
    s
}

/// The decision with the rule applied: with `enforce`, a failed verdict keeps the challenger
/// out whatever the champion comparison said; either way the reason says how the rule went.
/// The per-symbol stage's one walk-forward; [`gate_scopes`] is the same rule over several.
pub fn gate(d: Decision, verdict: Option<&Verdict>, enforce: bool) -> Decision {
    match verdict {
        Some(v) => gate_scopes(d, Some(&[(None, v)]), enforce),
        None => gate_scopes(d, None, enforce),
    }
}

/// One verdict and the rows it judged: `None` for the per-symbol stage's one walk-forward, a
/// name for each judgement of the pooled one ("all symbols together", then each symbol).
pub type Scoped<'a> = (Option<&'a str>, &'a Verdict);

/// [`gate`] over every verdict of a walk-forward (`None`: none ran). The rule passes only when
/// every verdict passes; with `enforce`, a failure anywhere keeps the challenger out. The
/// reason names each failing scope and its failed criteria.
pub fn gate_scopes(mut d: Decision, verdicts: Option<&[Scoped<'_>]>, enforce: bool) -> Decision {
    let Some(verdicts) = verdicts.filter(|v| !v.is_empty()) else {
        d.reason = format!(
            "{}; no walk-forward ran (evaluate.walk_forward_folds: 0), so the acceptance rule was not checked",
            d.reason
        );
        return d;
    };
    let failures: Vec<String> = verdicts
        .iter()
        .filter(|(_, v)| !v.passed)
        .map(|(scope, v)| match scope {
            None => format!("({})", v.failed().join("; ")),
            Some(s) => format!("on {s} ({})", v.failed().join("; ")),
        })
        .collect();
    let failures = failures.join(", ");
    let scoped = verdicts.iter().any(|(s, _)| s.is_some());
    if failures.is_empty() {
        d.reason = format!(
            "{}; the walk-forward passes every acceptance criterion{}",
            d.reason,
            if scoped {
                " on all symbols together and on each symbol"
            } else {
                ""
            }
        );
    } else if enforce && d.promoted {
        d.promoted = false;
        d.reason = format!(
            "{}, but the walk-forward fails the acceptance rule {failures} and evaluate.acceptance.enforce is on, so it is kept out",
            d.reason,
        );
    } else {
        d.reason = format!(
            "{}; note that the walk-forward fails the acceptance rule {failures}{}",
            d.reason,
            if enforce {
                String::new()
            } else {
                ", which is reported, not enforced (evaluate.acceptance.enforce: false): promotion compares the challenger with the champion only".to_owned()
            }
        );
    }
    d
}
