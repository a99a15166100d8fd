//! The one validation of a parameter set, run once by every stage before it does anything
//! (`rps_cli` calls [`params`] right after reading params.yaml and the `--set` overrides): a bad
//! value is a configuration error (exit 3) naming its key, never a failure halfway through a run.
//!
//! Parsing already refuses unknown keys and wrong types; this checks what types cannot say:
//! ranges, and fields that must agree with each other.

use crate::params::{MonitorParams, Params, TargetTransform};
use std::fmt;

/// One bad value: the params.yaml key and what is wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub key: &'static str,
    pub message: String,
}

/// Every problem found in a parameter set (at least one).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct InvalidParams {
    pub problems: Vec<Problem>,
}

impl fmt::Display for InvalidParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect();
        f.write_str(&parts.join("; "))
    }
}

/// Check a parameter set; `Err` lists every problem, each naming its key.
pub fn params(p: &Params) -> Result<(), InvalidParams> {
    let mut problems = Vec::new();
    let mut bad = |key: &'static str, message: String| problems.push(Problem { key, message });

    let s = &p.split;
    if !(s.train > 0.0 && s.train < 1.0) {
        bad(
            "split.train",
            format!("must lie in (0, 1), got {}", s.train),
        );
    }
    if !(s.validation > 0.0 && s.validation < 1.0) {
        bad(
            "split.validation",
            format!("must lie in (0, 1), got {}", s.validation),
        );
    }
    if s.train + s.validation >= 1.0 && s.train < 1.0 && s.validation < 1.0 {
        bad(
            "split.train",
            format!(
                "split.train + split.validation must be below 1 to leave a test split, got {} + {}",
                s.train, s.validation
            ),
        );
    }
    if s.gap < p.target.horizon {
        bad(
            "split.gap",
            format!(
                "must be at least target.horizon ({}) or targets leak across splits, got {}",
                p.target.horizon, s.gap
            ),
        );
    }
    if p.target.horizon == 0 {
        bad("target.horizon", "must be at least 1 bar".to_owned());
    }
    if !(p.target.floor.is_finite() && p.target.floor >= 0.0) {
        bad(
            "target.floor",
            format!("must be a finite number >= 0, got {}", p.target.floor),
        );
    }

    let t = &p.train;
    if t.target_transform == TargetTransform::Power && !(t.power > 0.0 && t.power <= 2.0) {
        bad(
            "train.power",
            format!("must lie in (0, 2], got {}", t.power),
        );
    }
    if let Some(k) = t.power_grid.iter().find(|k| !(**k > 0.0 && **k <= 2.0)) {
        bad(
            "train.power_grid",
            format!("every exponent must lie in (0, 2], got {k}"),
        );
    }
    if let Some(q) = t.quantiles.iter().find(|q| !(**q > 0.0 && **q < 1.0)) {
        bad(
            "train.quantiles",
            format!("every level must lie in (0, 1), got {q}"),
        );
    } else if t.quantiles.windows(2).any(|w| w[0] >= w[1]) {
        bad(
            "train.quantiles",
            "levels must be listed in increasing order, without repeats".to_owned(),
        );
    } else if !t.quantiles.is_empty() && !t.quantiles.contains(&0.5) {
        bad(
            "train.quantiles",
            "must include 0.5: the median every forecast reports".to_owned(),
        );
    }
    for k in ["objective", "quantile_alpha"] {
        if t.quantile_xgboost.contains_key(k) {
            bad(
                "train.quantile_xgboost",
                format!("{k} is set by train.quantiles and cannot be overridden"),
            );
        }
    }
    if t.num_boost_round == 0 {
        bad("train.num_boost_round", "must be at least 1".to_owned());
    }
    if t.model_name.trim().is_empty() {
        bad("train.model_name", "must not be empty".to_owned());
    }
    if t.pooling.is_pooled() && t.task == crate::params::Task::Signal {
        bad(
            "train.pooling",
            "pooled trains the volatility task only: set train.pooling: per_symbol to train \
             signal models"
                .to_owned(),
        );
    }

    let e = &p.evaluate;
    if !(e.ewma_lambda > 0.0 && e.ewma_lambda < 1.0) {
        bad(
            "evaluate.ewma_lambda",
            format!("must lie in (0, 1), got {}", e.ewma_lambda),
        );
    }
    if !(e.promotion_margin.is_finite() && e.promotion_margin >= 0.0) {
        bad(
            "evaluate.promotion_margin",
            format!("must be a finite number >= 0, got {}", e.promotion_margin),
        );
    }
    if !(e.walk_forward_test_fraction > 0.0 && e.walk_forward_test_fraction < 1.0) {
        bad(
            "evaluate.walk_forward_test_fraction",
            format!("must lie in (0, 1), got {}", e.walk_forward_test_fraction),
        );
    }
    if let Some(s) = &e.walk_forward_test_start
        && e.walk_forward_test_start_ms().is_none()
    {
        bad(
            "evaluate.walk_forward_test_start",
            format!("must be an RFC 3339 time such as 2020-01-01T00:00:00Z, got {s:?}"),
        );
    }
    let a = &e.acceptance;
    for (key, v, lo, hi) in [
        ("evaluate.acceptance.qlike_gain", a.qlike_gain, -1.0, 1.0),
        (
            "evaluate.acceptance.mse_var_tolerance",
            a.mse_var_tolerance,
            0.0,
            f64::INFINITY,
        ),
        (
            "evaluate.acceptance.median_r2_log_gain",
            a.median_r2_log_gain,
            -1.0,
            1.0,
        ),
        (
            "evaluate.acceptance.coverage_tolerance",
            a.coverage_tolerance,
            0.0,
            1.0,
        ),
        (
            "evaluate.acceptance.tercile_coverage_tolerance",
            a.tercile_coverage_tolerance,
            0.0,
            1.0,
        ),
        (
            "evaluate.acceptance.interval_score_gain",
            a.interval_score_gain,
            -1.0,
            1.0,
        ),
    ] {
        if !(v.is_finite() && v >= lo && v < hi) {
            bad(
                key,
                format!("must be a finite number in [{lo}, {hi}), got {v}"),
            );
        }
    }
    if let Err(err) = p.signal.validate() {
        let key = match err {
            crate::signal::SignalParamsError::Horizon => "signal.horizon",
            crate::signal::SignalParamsError::Threshold(_) => "signal.threshold",
        };
        bad(key, err.to_string());
    }

    if p.data.symbol.trim().is_empty() || p.data.symbol.contains(['/', '\\']) {
        bad(
            "data.symbol",
            format!(
                "must be a non-empty name without '/' (it names storage folders), got {:?}",
                p.data.symbol
            ),
        );
    }
    let when = |key: &'static str, v: &Option<String>| {
        v.as_deref().map(|s| {
            (
                key,
                s.to_owned(),
                chrono::DateTime::parse_from_rfc3339(s).map(|d| d.timestamp_millis()),
            )
        })
    };
    let start = when("data.start", &p.data.start);
    let end = when("data.end", &p.data.end);
    for (key, text, parsed) in [&start, &end].into_iter().flatten() {
        if parsed.is_err() {
            bad(key, format!("must be an RFC 3339 time, got {text:?}"));
        }
    }
    if let (Some((_, a, Ok(s))), Some((_, b, Ok(e)))) = (&start, &end)
        && e <= s
    {
        bad(
            "data.end",
            format!("must be after data.start ({a}), got {b}"),
        );
    }

    monitor_problems(&p.monitor, &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(InvalidParams { problems })
    }
}

/// Check what the symbols' parameter sets (one per symbol of `data.symbols`, each already
/// checked by [`params`]) must agree on; `Err` says what is wrong.
///
/// - `train.pooling: per_symbol`: no two symbols register under one model name (their versions
///   and champions would overwrite each other).
/// - `train.pooling: pooled`: at least two symbols, every one resolving to the same
///   `train.model_name` and `train.signal_model_name` (the one model is registered once), the
///   same `data.bar`, and none named `pooled` (the pooled model's own storage folder). The
///   features, target and split are shared sections of params.yaml, so they agree already; a
///   symbol whose data resolves `features.flow: auto` differently is refused by `rps train`.
pub fn symbol_sets(sets: &[Params]) -> Result<(), String> {
    let Some(first) = sets.first() else {
        return Ok(());
    };
    if first.train.pooling.is_pooled() {
        if sets.len() < 2 {
            return Err(format!(
                "train.pooling: pooled trains one model over several symbols, but only {} is \
                 listed: list at least two under data.symbols, or set train.pooling: per_symbol",
                first.data.symbol
            ));
        }
        for p in sets {
            if p.data.symbol == crate::params::POOLED {
                return Err(format!(
                    "data.symbols: a symbol may not be named {:?} with train.pooling: pooled \
                     (it names the pooled model's folders)",
                    crate::params::POOLED
                ));
            }
        }
        for p in &sets[1..] {
            for (key, x, y) in [
                ("model_name", &first.train.model_name, &p.train.model_name),
                (
                    "signal_model_name",
                    &first.train.signal_model_name,
                    &p.train.signal_model_name,
                ),
            ] {
                if x != y {
                    return Err(format!(
                        "train.pooling: pooled registers one model for every symbol, but {} \
                         resolves train.{key} to {x:?} and {} to {y:?}: give every symbol the \
                         same {key} (no {{symbol}} in it, no {key} in the entries)",
                        first.data.symbol, p.data.symbol
                    ));
                }
            }
            if p.data.bar != first.data.bar {
                return Err(format!(
                    "train.pooling: pooled needs the same data.bar for every symbol, but {} has \
                     {} and {} has {}",
                    first.data.symbol, first.data.bar, p.data.symbol, p.data.bar
                ));
            }
        }
        return Ok(());
    }
    for (i, a) in sets.iter().enumerate() {
        for b in &sets[i + 1..] {
            for (key, x, y) in [
                ("model_name", &a.train.model_name, &b.train.model_name),
                (
                    "signal_model_name",
                    &a.train.signal_model_name,
                    &b.train.signal_model_name,
                ),
            ] {
                if x == y {
                    return Err(format!(
                        "data.symbols: {} and {} would both register the model {x:?}: set \
                         {key} in each symbol's entry, or put {{symbol}} in train.{key} (or \
                         train.pooling: pooled for one model over every symbol)",
                        a.data.symbol, b.data.symbol
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Check the `monitor:` section alone (what rps-serve reads of params.yaml); [`params`] runs the
/// same checks on a whole parameter set.
pub fn monitor(m: &MonitorParams) -> Result<(), InvalidParams> {
    let mut problems = Vec::new();
    monitor_problems(m, &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(InvalidParams { problems })
    }
}

fn monitor_problems(m: &MonitorParams, problems: &mut Vec<Problem>) {
    let mut bad = |key: &'static str, message: String| problems.push(Problem { key, message });
    if !(m.qlike_margin.is_finite() && m.qlike_margin >= 0.0) {
        bad(
            "monitor.qlike_margin",
            format!("must be a finite number >= 0, got {}", m.qlike_margin),
        );
    }
    if !(m.coverage_low > 0.0 && m.coverage_low < 1.0) {
        bad(
            "monitor.coverage_low",
            format!("must lie in (0, 1), got {}", m.coverage_low),
        );
    }
    if !(m.coverage_high > 0.0 && m.coverage_high < 1.0) {
        bad(
            "monitor.coverage_high",
            format!("must lie in (0, 1), got {}", m.coverage_high),
        );
    } else if m.coverage_low.is_finite() && m.coverage_high <= m.coverage_low {
        bad(
            "monitor.coverage_high",
            format!(
                "must be above monitor.coverage_low ({}), got {}",
                m.coverage_low, m.coverage_high
            ),
        );
    }
    if m.stale_bars < 1 {
        bad("monitor.stale_bars", "must be at least 1, got 0".to_owned());
    }
    if m.min_scores < 1 {
        bad("monitor.min_scores", "must be at least 1, got 0".to_owned());
    }
    if !(1..=3600).contains(&m.refresh_seconds) {
        bad(
            "monitor.refresh_seconds",
            format!("must be 1 to 3600, got {}", m.refresh_seconds),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(p: &Params) -> Vec<&'static str> {
        params(p)
            .err()
            .map(|e| e.problems.iter().map(|x| x.key).collect())
            .unwrap_or_default()
    }

    #[test]
    fn the_defaults_and_the_shipped_file_are_valid() {
        assert_eq!(params(&Params::default()), Ok(()));
        let shipped: Params = serde_yaml::from_str(include_str!("../../../params.yaml")).unwrap();
        assert_eq!(params(&shipped), Ok(()));
    }

    #[test]
    fn each_bad_value_is_named_by_its_key() {
        let mut p = Params::default();
        p.split.train = 1.7;
        assert_eq!(keys(&p), vec!["split.train"]);
        let msg = params(&p).unwrap_err().to_string();
        assert!(
            msg.contains("split.train: must lie in (0, 1), got 1.7"),
            "{msg}"
        );

        let mut p = Params::default();
        p.split.train = 0.8;
        p.split.validation = 0.3;
        assert_eq!(keys(&p), vec!["split.train"]);

        let mut p = Params::default();
        p.split.gap = 0;
        assert_eq!(keys(&p), vec!["split.gap"]);

        let mut p = Params::default();
        p.target.floor = -1.0;
        p.evaluate.ewma_lambda = 1.0;
        p.signal.horizon = 0;
        assert_eq!(
            keys(&p),
            vec!["target.floor", "evaluate.ewma_lambda", "signal.horizon"]
        );

        let mut p = Params::default();
        p.data.start = Some("2021-01-02T00:00:00Z".into());
        p.data.end = Some("2021-01-01T00:00:00Z".into());
        assert_eq!(keys(&p), vec!["data.end"]);
        p.data.end = Some("yesterday".into());
        assert_eq!(keys(&p), vec!["data.end"]);

        let mut p = Params::default();
        p.train.target_transform = TargetTransform::Power;
        p.train.power = 3.0;
        assert_eq!(keys(&p), vec!["train.power"]);

        let mut p = Params::default();
        p.evaluate.acceptance.coverage_tolerance = 1.5;
        assert_eq!(keys(&p), vec!["evaluate.acceptance.coverage_tolerance"]);
        p.evaluate.acceptance.coverage_tolerance = 0.02;
        p.evaluate.walk_forward_test_start = Some("2020-01-01".into());
        assert_eq!(keys(&p), vec!["evaluate.walk_forward_test_start"]);
        p.evaluate.walk_forward_test_start = Some("2020-01-01T00:00:00Z".into());
        assert_eq!(keys(&p), Vec::<&str>::new());
    }

    #[test]
    fn the_monitor_section_is_checked_once_for_both_callers() {
        let mut p = Params::default();
        assert_eq!(monitor(&p.monitor), Ok(()));
        p.monitor.qlike_margin = -0.1;
        p.monitor.coverage_low = 0.9;
        p.monitor.coverage_high = 0.86;
        p.monitor.stale_bars = 0;
        p.monitor.min_scores = 0;
        p.monitor.refresh_seconds = 3601;
        let expected = vec![
            "monitor.qlike_margin",
            "monitor.coverage_high",
            "monitor.stale_bars",
            "monitor.min_scores",
            "monitor.refresh_seconds",
        ];
        assert_eq!(keys(&p), expected);
        let alone: Vec<&str> = monitor(&p.monitor)
            .unwrap_err()
            .problems
            .iter()
            .map(|x| x.key)
            .collect();
        assert_eq!(alone, expected);
        p.monitor = MonitorParams {
            coverage_low: 0.0,
            coverage_high: 1.0,
            refresh_seconds: 0,
            ..MonitorParams::default()
        };
        assert_eq!(
            keys(&p),
            vec![
                "monitor.coverage_low",
                "monitor.coverage_high",
                "monitor.refresh_seconds"
            ]
        );
        p.monitor = MonitorParams {
            qlike_margin: 0.0,
            stale_bars: 1,
            min_scores: 1,
            refresh_seconds: 3600,
            ..MonitorParams::default()
        };
        assert_eq!(
            keys(&p),
            Vec::<&str>::new(),
            "the bounds themselves are valid"
        );
    }
}
