//! The reports: evaluation.md, metrics JSON, the walk-forward CSV and MLflow metrics.

use crate::*;
use rps_core::distribution::IntervalScores;
use rps_core::metrics::Scores;
use rps_core::params::Params;
use rps_tracking::{MetricPoint, VersionInfo};

pub(crate) fn scores_json(s: &Scores) -> serde_json::Value {
    let num = |v: f64| {
        if v.is_finite() {
            serde_json::json!(v)
        } else {
            serde_json::Value::Null
        }
    };
    serde_json::json!({"rmse": num(s.rmse), "mae": num(s.mae), "r2": num(s.r2), "r2_log": num(s.r2_log), "qlike": num(s.qlike), "mse_var": num(s.mse_var), "mz_r2_log": num(s.mz_r2_log), "n": s.n})
}

/// The report, in Markdown.
pub fn markdown(
    e: &Evaluation,
    d: &Decision,
    info: &VersionInfo,
    symbol: &str,
    walk_forward: Option<&str>,
) -> String {
    let rows: Vec<rps_report::Row> = e
        .scores
        .iter()
        .map(|(n, s)| rps_report::Row {
            name: n.clone(),
            scores: *s,
        })
        .collect();
    let span = |t: Option<&i64>| {
        t.and_then(|t| chrono::DateTime::from_timestamp_millis(*t))
            .map_or_else(
                || "-".to_owned(),
                |d| d.format("%Y-%m-%d %H:%M").to_string(),
            )
    };
    let verdict = if d.promoted {
        "**promoted to champion**"
    } else {
        "**kept out** (champion unchanged)"
    };
    format!(
        "# Model evaluation: {name} v{v} ({symbol})\n\n## Test split: the candidate from rps-train\n\n\
{n} hourly test rows, {from} to {to} UTC. Lower QLIKE, RMSE and MAE are better; R² is on \
volatility, R² (log) on log volatility. Every forecast is floored identically.\n\n{table}\n\
Diebold–Mariano, model vs HAR-RV on QLIKE: mean loss difference {dm:.5}, statistic {st:.2}, p-value {p:.4} \
(negative favours the model).\n\n\
HAR-RV: ln σ = {coef} (smearing {sm:.4}), fitted on the training and validation splits.\n\n\
![predicted vs realized](predictions.png)\n\n{wf}\
## Decision\n\nChallenger v{v} was {verdict}: {reason}.\n",
        wf = walk_forward.unwrap_or_default(),
        name = info.name,
        v = info.version,
        n = e.ts.len(),
        from = span(e.ts.first()),
        to = span(e.ts.last()),
        table = rps_report::metrics_table(&rows),
        dm = e.dm_vs_har.mean_diff,
        st = e.dm_vs_har.statistic,
        p = e.dm_vs_har.p_value,
        coef = std::iter::once(format!("{:.4}", e.har.coefficients[0]))
            .chain(
                e.har
                    .terms
                    .iter()
                    .zip(&e.har.coefficients[1..])
                    .map(|(t, c)| format!("{c:+.4}·{t}"))
            )
            .collect::<Vec<_>>()
            .join(" "),
        sm = e.har.smearing,
        reason = d.reason,
    )
}

pub(crate) fn utc(t: Option<&i64>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp_millis(*t))
        .map_or_else(
            || "-".to_owned(),
            |d| d.format("%Y-%m-%d %H:%M").to_string(),
        )
}

/// File name of fold `k`'s (0-based) plot.
pub fn fold_png(k: usize) -> String {
    format!("walkforward_fold{}.png", k + 1)
}

/// The rows of the scores table of a walk-forward's pooled out-of-sample scores.
pub fn pooled_score_rows(wf: &WalkForward) -> Vec<rps_report::Row> {
    wf.pooled
        .iter()
        .map(|(n, s)| rps_report::Row {
            name: n.clone(),
            scores: *s,
        })
        .collect()
}

/// The walk-forward section of the report, in Markdown.
pub fn walk_forward_markdown(wf: &WalkForward, params: &Params) -> String {
    let rows = pooled_score_rows(wf);
    let n: usize = wf.folds.iter().map(|f| f.realized.len()).sum();
    let first = wf.folds.first().and_then(|f| f.ts.first());
    let last = wf.folds.last().and_then(|f| f.ts.last());
    let window = match wf.window {
        rps_core::walkforward::Window::Expanding => "expanding window: all earlier history",
        rps_core::walkforward::Window::Rolling => "rolling window: the most recent history",
    };
    let verdict = wf
        .verdict(&params.evaluate.acceptance)
        .map_or_else(String::new, |v| verdict_markdown(&v));
    let dm_log = wf.dm_log_vs_har.map_or_else(String::new, |d| {
        format!(
            "Diebold–Mariano, the model's median vs HAR-RV's log-scale forecast on pooled squared log errors: mean loss difference {:.5}, statistic {:.2}, p-value {:.4}.\n\n",
            d.mean_diff, d.statistic, d.p_value
        )
    });
    let dist = distribution_markdown(&wf.distribution);
    let mut fold_rows = Vec::new();
    for (k, f) in wf.folds.iter().enumerate() {
        let span = format!("{} – {}", utc(f.ts.first()), utc(f.ts.last()));
        for (name, sc) in &f.scores {
            fold_rows.push(rps_report::FoldRow {
                fold: k + 1,
                span: span.clone(),
                train_rows: f.train_rows,
                name: name.clone(),
                scores: *sc,
                dm: (name == "model").then_some(f.dm_vs_har.statistic),
            });
        }
    }
    let mut plots: String = (0..wf.folds.len())
        .map(|k| format!("![fold {}]({})\n", k + 1, fold_png(k)))
        .collect();
    if !wf.distribution.is_empty() {
        use crate::plots::{IMPORTANCE_PNG, RELIABILITY_PNG, TERCILE_PNG, band_png};
        plots.push_str(&format!(
            "\n### Plots of the distribution\n\nRealized σ against the 80 % interval, a panel per month (the first three here, the rest in the next `walkforward_band_<k>.png`):\n\n![80 % interval]({})\n![reliability]({RELIABILITY_PNG})\n![coverage by tercile]({TERCILE_PNG})\n![feature importance]({IMPORTANCE_PNG})\n",
            band_png(0)
        ));
    }
    format!(
        "## Walk-forward: {folds} folds, pooled out of sample\n\n{n} hourly test rows, {from} to {to} UTC, in {folds} consecutive blocks. At every fold the model is retrained ({window}; the last {vshare:.0} % of it for early stopping and calibration, purged by {gap} bars on each side) and HAR-RV is refitted on the same rows; EWMA and persistence need no fitting.\n\n{table}\nDiebold–Mariano, model vs HAR-RV on pooled QLIKE: mean loss difference {dm:.5}, statistic {st:.2}, p-value {p:.4} (negative favours the model).\n\n{dm_log}{dist}{verdict}### Per fold\n\n{folds_table}\n{plots}",
        folds = wf.folds.len(),
        from = utc(first),
        to = utc(last),
        vshare = 100.0 * params.split.validation / (params.split.train + params.split.validation),
        gap = params.split.gap,
        table = rps_report::metrics_table(&rows),
        dm = wf.dm_vs_har.mean_diff,
        st = wf.dm_vs_har.statistic,
        p = wf.dm_vs_har.p_value,
        folds_table = rps_report::fold_table(&fold_rows),
    )
}

/// The distribution section: coverage and interval scores of the model's intervals beside the
/// baselines', reliability per level, and coverage by tercile of predicted volatility.
fn distribution_markdown(d: &[(String, DistributionSummary)]) -> String {
    let Some((_, model)) = d.iter().find(|(n, _)| n == "model") else {
        return String::new();
    };
    let pct = |v: f64| format!("{:.1} %", v * 100.0);
    let at = |s: &DistributionSummary, c: f64| {
        s.intervals
            .iter()
            .find(|i| (i.nominal - c).abs() < 1e-9)
            .copied()
    };
    let rows: String = d
        .iter()
        .map(|(n, s)| {
            let cell = |c: f64, f: &dyn Fn(&IntervalScores) -> String| {
                at(s, c).map_or_else(|| "–".to_owned(), |i| f(&i))
            };
            format!(
                "| {n} | {} | {} | {} | {} | {} | {} |\n",
                cell(0.8, &|i| pct(i.coverage)),
                cell(0.9, &|i| pct(i.coverage)),
                cell(0.8, &|i| format!("{:.6}", i.interval_score)),
                cell(0.9, &|i| format!("{:.6}", i.interval_score)),
                cell(0.8, &|i| format!("{:.6}", i.width)),
                s.tercile_coverage_80
                    .iter()
                    .map(|c| pct(*c))
                    .collect::<Vec<_>>()
                    .join(" / "),
            )
        })
        .collect();
    let vs_har = d
        .iter()
        .find(|(n, _)| n == "har_rv")
        .and_then(|(_, h)| Some((at(model, 0.8)?, at(h, 0.8)?)))
        .map_or_else(String::new, |(m, h)| {
            format!(
                "The model's 80 % interval score is {:.1} % {} than HAR-RV's residual-quantile interval's.\n\n",
                (1.0 - m.interval_score / h.interval_score).abs() * 100.0,
                if m.interval_score <= h.interval_score { "lower" } else { "higher" }
            )
        });
    let rel: Vec<String> = model
        .reliability
        .iter()
        .map(|(l, o)| format!("{:.0} % → {:.1} %", l * 100.0, o * 100.0))
        .collect();
    format!(
        "### The forecast distribution\n\nThe model's quantiles beside two baseline distributions fitted on the same rows as each fold's model: HAR-RV's log-scale forecast times the empirical quantiles of its training errors (`har_rv`), and EWMA with log-normal (Gaussian on ln σ) quantiles from its training errors (`ewma`). Interval score: Gneiting & Raftery (2007), lower is better. Terciles: of the model's predicted volatility (calm / normal / turbulent).\n\n| forecaster | 80 % coverage | 90 % coverage | 80 % interval score | 90 % interval score | 80 % mean width | 80 % coverage by tercile |\n|---|---:|---:|---:|---:|---:|---|\n{rows}\n{vs_har}Reliability of the model (level → share of outcomes at or below it): {}.\n\n",
        rel.join(", ")
    )
}

/// The walk-forward results as JSON (for metrics.json).
pub(crate) fn walk_forward_json(
    wf: &WalkForward,
    verdict: Option<&Verdict>,
) -> Result<serde_json::Value, serde_json::Error> {
    let table = |scores: &[(String, Scores)]| {
        scores
            .iter()
            .map(|(n, s)| (n.clone(), scores_json(s)))
            .collect::<serde_json::Map<_, _>>()
    };
    let folds: Vec<serde_json::Value> = wf
        .folds
        .iter()
        .map(|f| {
            serde_json::json!({
                "from": utc(f.ts.first()),
                "to": utc(f.ts.last()),
                "train_rows": f.train_rows,
                "validation_rows": f.validation_rows,
                "best_iteration": f.best_iteration,
                "smearing": f.smearing,
                "power": f.power,
                "scores": table(&f.scores),
                "diebold_mariano_vs_har_rv": f.dm_vs_har,
            })
        })
        .collect();
    Ok(serde_json::json!({
        "folds": folds,
        "pooled": table(&wf.pooled),
        "diebold_mariano_vs_har_rv": wf.dm_vs_har,
        "diebold_mariano_log_vs_har_rv_log": wf.dm_log_vs_har,
        "verdict": serde_json::to_value(verdict)?,
        "distribution": wf
            .distribution
            .iter()
            .map(|(n, d)| Ok((n.clone(), serde_json::to_value(d)?)))
            .collect::<Result<serde_json::Map<_, _>, serde_json::Error>>()?,
    }))
}

/// The columns of a forecasts CSV in their order: the model's mean and median, its quantiles,
/// the baselines, then the baselines' quantiles.
fn csv_columns<'a>(
    forecasts: &'a [(String, Vec<f64>)],
    quantiles: &'a [(String, Vec<f64>)],
    baseline_quantiles: &'a [(String, Vec<f64>)],
) -> Vec<&'a (String, Vec<f64>)> {
    let head = forecasts
        .len()
        .min(if quantiles.is_empty() { 1 } else { 2 });
    forecasts[..head]
        .iter()
        .chain(quantiles)
        .chain(&forecasts[head..])
        .chain(baseline_quantiles)
        .collect()
}

fn csv_time(t: i64) -> String {
    chrono::DateTime::from_timestamp_millis(t)
        .map_or_else(String::new, |d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

fn csv_header(cols: &[&(String, Vec<f64>)]) -> String {
    cols.iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn csv_values(cols: &[&(String, Vec<f64>)], i: usize) -> String {
    cols.iter()
        .map(|(_, p)| format!("{:.8}", p[i]))
        .collect::<Vec<_>>()
        .join(",")
}

/// The test split's forecasts as CSV (`predictions.csv`, DVC's plot): `ts, realized, model`,
/// `model_median` and the model's quantiles when it has a distribution, then the baselines.
pub fn predictions_csv(e: &Evaluation) -> String {
    let cols = csv_columns(&e.forecasts, &e.quantiles, &[]);
    let mut csv = format!("ts,realized,{}\n", csv_header(&cols));
    for (i, t) in e.ts.iter().enumerate() {
        csv.push_str(&format!(
            "{},{:.8},{}\n",
            csv_time(*t),
            e.realized[i],
            csv_values(&cols, i)
        ));
    }
    csv
}

/// Every fold's test forecasts as CSV.
pub fn walk_forward_csv(wf: &WalkForward) -> String {
    let header = wf.folds.first().map_or_else(String::new, |f| {
        csv_header(&csv_columns(
            &f.forecasts,
            &f.quantiles,
            &f.baseline_quantiles,
        ))
    });
    let mut csv = format!("fold,ts,realized,{header}\n");
    for (k, f) in wf.folds.iter().enumerate() {
        let cols = csv_columns(&f.forecasts, &f.quantiles, &f.baseline_quantiles);
        for (i, t) in f.ts.iter().enumerate() {
            csv.push_str(&format!(
                "{},{},{:.8},{}\n",
                k + 1,
                csv_time(*t),
                f.realized[i],
                csv_values(&cols, i)
            ));
        }
    }
    csv
}

/// Walk-forward metrics for the tracker: pooled values, and one point per fold (step = fold).
pub(crate) fn walk_forward_metrics(
    wf: &WalkForward,
    verdict: Option<&Verdict>,
) -> (Vec<(String, f64)>, Vec<MetricPoint>) {
    let metric_values = |s: &Scores| {
        [
            ("qlike", s.qlike),
            ("rmse", s.rmse),
            ("mae", s.mae),
            ("r2", s.r2),
            ("r2_log", s.r2_log),
            ("mse_var", s.mse_var),
            ("mz_r2_log", s.mz_r2_log),
        ]
    };
    let mut values = Vec::new();
    for (n, s) in &wf.pooled {
        for (m, v) in metric_values(s) {
            values.push((format!("wf_{n}_{m}"), v));
        }
    }
    values.push(("wf_dm_stat_vs_har_rv".to_owned(), wf.dm_vs_har.statistic));
    values.push(("wf_dm_p_value_vs_har_rv".to_owned(), wf.dm_vs_har.p_value));
    if let Some(d) = wf.dm_log_vs_har {
        values.push(("wf_dm_log_stat_vs_har_rv_log".to_owned(), d.statistic));
    }
    if let Some(v) = verdict {
        values.push(("wf_qlike_gain_vs_best_baseline".to_owned(), v.qlike_gain));
        values.push((
            "wf_median_r2_log_vs_har_rv".to_owned(),
            v.median_r2_log_vs_har,
        ));
        for c in &v.checks {
            values.push((
                format!("wf_accept_{}", c.criterion.key()),
                f64::from(u8::from(c.passed)),
            ));
        }
        values.push((
            "wf_beats_baselines".to_owned(),
            f64::from(u8::from(v.passed)),
        ));
    }
    let now = chrono::Utc::now().timestamp_millis();
    let mut points = Vec::new();
    for (k, f) in wf.folds.iter().enumerate() {
        let step = i64::try_from(k + 1).unwrap_or(i64::MAX);
        for (n, s) in &f.scores {
            for (m, v) in metric_values(s) {
                points.push(MetricPoint {
                    key: format!("wf_fold_{n}_{m}"),
                    value: v,
                    step,
                    timestamp_ms: now,
                });
            }
        }
        points.push(MetricPoint {
            key: "wf_fold_dm_stat_vs_har_rv".to_owned(),
            value: f.dm_vs_har.statistic,
            step,
            timestamp_ms: now,
        });
    }
    (values, points)
}

#[allow(clippy::print_stdout)]
pub(crate) fn print_table(md: &str) {
    // The comparison table is the stage's result: it goes to stdout, logs go to stderr.
    for line in md.lines().filter(|l| {
        l.starts_with('|')
            || l.starts_with('#')
            || l.starts_with("Diebold")
            || l.starts_with("Verdict")
            || l.starts_with("Challenger")
    }) {
        println!("{line}");
    }
}
