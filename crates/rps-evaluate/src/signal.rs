//! The signal task's evaluation: the Buy/Hold/Sell model against the majority-class and
//! momentum baselines on the test split, scored by accuracy, macro F1, per-class F1 and the
//! confusion matrix; promotion on macro F1. Walk-forward stays volatility-only.

use crate::{Decision, EvaluateError, decide_by};
use rps_core::params::Params;
use rps_core::signal::{self, Signal, SignalColumns, SignalScores};
use rps_core::split::Split;
use rps_model::{NUM_CLASS, Rows, SignalModel};
use rps_store::frame::Dataset;
use rps_tracking::{Registry, VersionInfo};
use std::fmt::Write as _;

/// The metric the signal task promotes on.
pub const PRIMARY_METRIC: &str = "macro_f1";

/// Forecasts and scores of the signal task on the labelled test rows.
#[derive(Debug, Clone)]
pub struct SignalEvaluation {
    pub ts: Vec<i64>,
    pub truth: Vec<Signal>,
    /// The model's probabilities (sell, hold, buy) per row.
    pub probabilities: Vec<[f64; NUM_CLASS]>,
    /// model, majority, momentum.
    pub forecasts: Vec<(String, Vec<Signal>)>,
    pub scores: Vec<(String, SignalScores)>,
    /// The majority class of the labelled training rows.
    pub majority: Signal,
    /// Test rows where momentum had no past move (first bars, missing bars) and said Hold.
    pub momentum_fallbacks: usize,
}

impl SignalEvaluation {
    pub fn score(&self, name: &str) -> Option<&SignalScores> {
        self.scores.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }
}

/// Score `model` and the baselines on the test rows that have a label. The majority baseline
/// predicts the most frequent class of the labelled training rows; momentum predicts the label of
/// the last `h`-bar move (Hold where there is none).
pub fn evaluate_signal(
    ds: &Dataset,
    cols: &SignalColumns,
    model: &SignalModel,
) -> Result<SignalEvaluation, EvaluateError> {
    let f = &ds.frame;
    if model.meta.features != f.names {
        return Err(EvaluateError::FeatureMismatch {
            expected: model.meta.features.clone(),
            found: f.names.clone(),
        });
    }
    let labelled = |which: Split| -> (Vec<usize>, Vec<Signal>) {
        ds.rows(which)
            .into_iter()
            .filter_map(|i| cols.labels[i].map(|l| (i, l)))
            .unzip()
    };
    let (test, truth) = labelled(Split::Test);
    if test.is_empty() {
        return Err(EvaluateError::NoTestRows);
    }
    let (_, train_truth) = labelled(Split::Train);
    let majority = signal::majority(&train_truth);
    let probabilities = model.predict_proba(&Rows::gather(&f.columns, &test))?;
    let predicted: Vec<Signal> = probabilities.iter().map(|p| signal::argmax(p)).collect();
    let momentum: Vec<Signal> = test
        .iter()
        .map(|&i| cols.momentum[i].unwrap_or(Signal::Hold))
        .collect();
    let momentum_fallbacks = test.iter().filter(|&&i| cols.momentum[i].is_none()).count();
    let forecasts = vec![
        ("model".to_owned(), predicted),
        ("majority".to_owned(), vec![majority; test.len()]),
        ("momentum".to_owned(), momentum),
    ];
    let scores = forecasts
        .iter()
        .map(|(n, p)| (n.clone(), signal::score(&truth, p)))
        .collect();
    Ok(SignalEvaluation {
        ts: test.iter().map(|&i| f.ts[i]).collect(),
        truth,
        probabilities,
        forecasts,
        scores,
        majority,
        momentum_fallbacks,
    })
}

/// The current signal champion's macro F1 on the same rows, if it can score this dataset.
pub fn champion_macro_f1(
    registry: &dyn Registry,
    name: &str,
    ds: &Dataset,
    cols: &SignalColumns,
) -> Result<Option<(u32, f64)>, EvaluateError> {
    let Some(v) = registry.alias(name, "champion")? else {
        return Ok(None);
    };
    let champ = registry.load(name, v)?.model.into_signal()?;
    match evaluate_signal(ds, cols, &champ) {
        Ok(e) => Ok(e.score("model").map(|s| (v, s.macro_f1))),
        Err(EvaluateError::FeatureMismatch { .. }) => {
            tracing::warn!(
                "champion v{v} was trained on other features and cannot score this dataset; the challenger is judged alone"
            );
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Decide on macro F1 (higher is better), with `evaluate.promotion_margin`.
pub fn decide_signal(
    version: u32,
    macro_f1: f64,
    champion: Option<(u32, f64)>,
    margin: f64,
) -> Decision {
    decide_by(version, macro_f1, champion, PRIMARY_METRIC, true, margin)
}

fn num(v: f64) -> serde_json::Value {
    if v.is_finite() {
        serde_json::json!(v)
    } else {
        serde_json::Value::Null
    }
}

/// One forecaster's scores as JSON.
pub fn scores_json(s: &SignalScores) -> serde_json::Value {
    let per_class: serde_json::Map<String, serde_json::Value> = Signal::ALL
        .iter()
        .zip(&s.per_class)
        .map(|(c, cs)| {
            (
                c.as_str().to_owned(),
                serde_json::json!({
                    "precision": num(cs.precision),
                    "recall": num(cs.recall),
                    "f1": num(cs.f1),
                    "support": cs.support,
                }),
            )
        })
        .collect();
    serde_json::json!({
        "accuracy": num(s.accuracy),
        "macro_f1": num(s.macro_f1),
        "per_class": per_class,
        "confusion": s.confusion,
        "n": s.n,
    })
}

/// metrics.json of the signal task.
pub fn metrics_json(
    e: &SignalEvaluation,
    params: &Params,
    d: &Decision,
) -> Result<serde_json::Value, serde_json::Error> {
    let mut json = serde_json::Map::new();
    json.insert("task".to_owned(), "signal".into());
    json.insert("classes".to_owned(), signal::class_names().into());
    json.insert("horizon".to_owned(), params.signal.horizon.into());
    json.insert("threshold".to_owned(), params.signal.threshold.into());
    for (n, s) in &e.scores {
        json.insert(n.clone(), scores_json(s));
    }
    json.insert("majority_class".to_owned(), e.majority.as_str().into());
    json.insert("promotion".to_owned(), serde_json::to_value(d)?);
    Ok(serde_json::Value::Object(json))
}

/// The values logged to the run: `signal_<forecaster>_<metric>`.
pub fn logged_values(e: &SignalEvaluation) -> Vec<(String, f64)> {
    let mut values = Vec::new();
    for (n, s) in &e.scores {
        values.push((format!("signal_{n}_accuracy"), s.accuracy));
        values.push((format!("signal_{n}_macro_f1"), s.macro_f1));
        for (c, cs) in Signal::ALL.iter().zip(&s.per_class) {
            values.push((format!("signal_{n}_f1_{}", c.as_str()), cs.f1));
        }
    }
    values
}

/// predictions.csv: the truth, every forecaster's class and the model's probabilities.
pub fn predictions_csv(e: &SignalEvaluation) -> String {
    let mut csv = String::from("ts,truth,model,p_sell,p_hold,p_buy,majority,momentum\n");
    for (i, t) in e.ts.iter().enumerate() {
        let when = chrono::DateTime::from_timestamp_millis(*t)
            .map_or_else(String::new, |d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        let p = &e.probabilities[i];
        let _ = writeln!(
            csv,
            "{when},{},{},{:.6},{:.6},{:.6},{},{}",
            e.truth[i].as_str(),
            e.forecasts[0].1[i].as_str(),
            p[0],
            p[1],
            p[2],
            e.forecasts[1].1[i].as_str(),
            e.forecasts[2].1[i].as_str(),
        );
    }
    csv
}

/// Bars in the rolling window of the accuracy plot (three days of hours).
pub const ROLLING: usize = 72;

/// Each forecaster's accuracy over the last [`ROLLING`] labelled rows (fewer at the start).
pub fn rolling_accuracy(e: &SignalEvaluation) -> Vec<(String, Vec<f64>)> {
    e.forecasts
        .iter()
        .map(|(n, p)| {
            let hits: Vec<f64> = p
                .iter()
                .zip(&e.truth)
                .map(|(a, b)| f64::from(u8::from(a == b)))
                .collect();
            let mut sum = 0.0;
            let acc = (0..hits.len())
                .map(|i| {
                    sum += hits[i];
                    if i >= ROLLING {
                        sum -= hits[i - ROLLING];
                    }
                    sum / (i + 1).min(ROLLING) as f64
                })
                .collect();
            (n.clone(), acc)
        })
        .collect()
}

/// predictions.png: rolling accuracy of the model and momentum against the majority baseline.
pub fn accuracy_png(e: &SignalEvaluation, symbol: &str) -> Result<Vec<u8>, rps_report::PlotError> {
    let acc = rolling_accuracy(e);
    let get = |name: &str| {
        acc.iter()
            .find(|(n, _)| n == name)
            .map_or(&[][..], |(_, v)| v.as_slice())
    };
    rps_report::series_png(
        &e.ts,
        ("majority", get("majority")),
        &[("model", get("model")), ("momentum", get("momentum"))],
        &format!("{symbol} trading signals: accuracy over the last {ROLLING} test rows"),
        "accuracy",
        1200,
        500,
    )
}

/// A confusion matrix in Markdown: rows = truth, columns = predicted.
pub fn confusion_markdown(s: &SignalScores) -> String {
    let mut md = String::from(
        "| truth \\ predicted | sell | hold | buy | total |\n|---|---:|---:|---:|---:|\n",
    );
    for (c, row) in Signal::ALL.iter().zip(&s.confusion) {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            c.as_str(),
            row[0],
            row[1],
            row[2],
            row.iter().sum::<usize>()
        );
    }
    md
}

/// The report, in Markdown.
pub fn markdown(e: &SignalEvaluation, d: &Decision, info: &VersionInfo, params: &Params) -> String {
    let utc = |t: Option<&i64>| {
        t.and_then(|t| chrono::DateTime::from_timestamp_millis(*t))
            .map_or_else(
                || "-".to_owned(),
                |d| d.format("%Y-%m-%d %H:%M").to_string(),
            )
    };
    let mut table = String::from(
        "| forecaster | accuracy | macro F1 | F1 sell | F1 hold | F1 buy | rows |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for (n, s) in &e.scores {
        let _ = writeln!(
            table,
            "| {n} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {} |",
            s.accuracy, s.macro_f1, s.per_class[0].f1, s.per_class[1].f1, s.per_class[2].f1, s.n
        );
    }
    let mut confusions = String::new();
    for (n, s) in &e.scores {
        let _ = write!(confusions, "### {n}\n\n{}\n", confusion_markdown(s));
    }
    let truth = e
        .score("model")
        .map(|s| s.per_class.map(|c| c.support))
        .unwrap_or_default();
    let verdict = if d.promoted {
        "**promoted to champion**"
    } else {
        "**kept out** (champion unchanged)"
    };
    format!(
        "# Signal model evaluation: {name} v{v} ({symbol})\n\n## Test split: the candidate from rps-train\n\n\
{n} labelled hourly test rows, {from} to {to} UTC. Label of a bar: r = ln(close[t+{h}] / close[t]); \
buy if r > {th}, sell if r < -{th}, else hold. Truth: sell {ts}, hold {thold}, buy {tb}. \
Baselines: majority (always **{maj}**, the most frequent class of the training rows) and momentum \
(the label of the last {h}-bar move; hold on {fb} rows without one). Promotion on macro F1.\n\n{table}\n\
![rolling accuracy](predictions.png)\n\n## Confusion matrices (rows = truth, columns = predicted)\n\n{confusions}\
Walk-forward evaluation runs for the volatility task only.\n\n\
## Decision\n\nChallenger v{v} was {verdict}: {reason}.\n",
        name = info.name,
        v = info.version,
        symbol = params.data.symbol,
        n = e.ts.len(),
        from = utc(e.ts.first()),
        to = utc(e.ts.last()),
        h = params.signal.horizon,
        th = params.signal.threshold,
        ts = truth[0],
        thold = truth[1],
        tb = truth[2],
        maj = e.majority.as_str(),
        fb = e.momentum_fallbacks,
        reason = d.reason,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rps_core::Interval;
    use rps_core::synthetic::{SyntheticParams, simulate};

    const HOUR: i64 = 3_600_000;

    #[test]
    fn the_model_and_both_baselines_are_scored_on_the_same_labelled_rows() {
        let bars = simulate(&SyntheticParams::default(), Interval::H1, 0, 2000 * HOUR);
        let mut params = Params::default();
        params.train.num_boost_round = 30;
        params.train.early_stopping_rounds = 10;
        let (ds, schema) = rps_transform::transform(&params, &bars, "synthetic").unwrap();
        let cols = ds.signal_columns(&schema, &params.signal).unwrap();
        assert_eq!(
            cols,
            rps_transform::signal_columns(&params, &bars, &ds.frame.ts).unwrap(),
            "labels from the features' closes = labels from the raw bars"
        );
        let pick = |which: Split| -> (Rows, Vec<Signal>) {
            let (idx, y): (Vec<usize>, Vec<Signal>) = ds
                .rows(which)
                .into_iter()
                .filter_map(|i| cols.labels[i].map(|l| (i, l)))
                .unzip();
            (Rows::gather(&ds.frame.columns, &idx), y)
        };
        let (xt, yt) = pick(Split::Train);
        let (xv, yv) = pick(Split::Validation);
        let (model, _) = SignalModel::train(
            &params.train,
            &params.signal,
            &ds.frame.names,
            (&xt, &yt),
            (&xv, &yv),
        )
        .unwrap();
        let e = evaluate_signal(&ds, &cols, &model).unwrap();
        let names: Vec<&str> = e.scores.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["model", "majority", "momentum"]);
        for (_, s) in &e.scores {
            assert_eq!(s.n, e.truth.len());
            let total: usize = s.confusion.iter().flatten().sum();
            assert_eq!(
                total,
                e.truth.len(),
                "the confusion matrix counts every row"
            );
        }
        assert_eq!(e.majority, signal::majority(&yt));
        for p in &e.probabilities {
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-5);
        }
        // Momentum is the label rule on the past move: for consecutive labelled rows h = 1
        // apart, momentum at t+1 is the truth at t.
        let mom = &e.forecasts[2].1;
        for (i, w) in e.ts.windows(2).enumerate() {
            if w[1] - w[0] == HOUR {
                assert_eq!(mom[i + 1], e.truth[i]);
            }
        }
        let d = decide_signal(1, e.score("model").unwrap().macro_f1, None, 0.0);
        assert!(d.promoted);
        let info = VersionInfo {
            name: "btc-signal".into(),
            version: 1,
            created_at: String::new(),
            run_id: String::new(),
            data_hash: String::new(),
            git_commit: String::new(),
            metrics: Default::default(),
        };
        let md = markdown(&e, &d, &info, &params);
        assert!(
            md.contains("| truth \\ predicted | sell | hold | buy | total |"),
            "{md}"
        );
        assert!(md.contains("### momentum"));
        let json = metrics_json(&e, &params, &d).unwrap();
        assert_eq!(json["model"]["confusion"].as_array().unwrap().len(), 3);
        assert!(json["majority"]["macro_f1"].is_number());
        assert_eq!(predictions_csv(&e).lines().count(), e.ts.len() + 1);
        let acc = rolling_accuracy(&e);
        let model_hits = e.forecasts[0]
            .1
            .iter()
            .zip(&e.truth)
            .take(ROLLING)
            .filter(|(a, b)| a == b)
            .count();
        assert!((acc[0].1[ROLLING - 1] - model_hits as f64 / ROLLING as f64).abs() < 1e-12);
        assert!(accuracy_png(&e, "BTC-USD").unwrap().starts_with(b"\x89PNG"));
        assert!(
            logged_values(&e)
                .iter()
                .any(|(k, _)| k == "signal_momentum_f1_buy")
        );
    }

    #[test]
    fn promotion_on_macro_f1_is_higher_is_better() {
        let d = decide_signal(2, 0.40, Some((1, 0.38)), 0.01);
        assert!(d.promoted, "{}", d.reason);
        assert_eq!(d.challenger, 0.40);
        assert_eq!(d.metric, "macro_f1");
        assert!(!decide_signal(2, 0.381, Some((1, 0.38)), 0.01).promoted);
        assert!(!decide_signal(2, 0.30, Some((1, 0.38)), 0.0).promoted);
        assert!(!decide_signal(3, 0.5, Some((3, 0.5)), 0.0).promoted);
    }
}
