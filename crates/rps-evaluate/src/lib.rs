//! `rps-evaluate`: judge the trained model on the test split against the baselines
//! practitioners use — persistence, EWMA (RiskMetrics) and HAR-RV (Corsi 2009, OLS on log
//! volatility fitted on the training split only) — then decide champion/challenger.
//!
//! Every forecast is floored at `target.floor`, identically for every forecaster, and scored on
//! the same rows. The decision compares the challenger with the current champion on the same
//! test rows by `evaluate.primary_metric`, promoting only for an improvement of at least
//! `evaluate.promotion_margin`; the first model becomes champion.

use clap::Parser;
use rps_cli::{CommonArgs, Home, StageError, exit};
use rps_core::baselines::{Har, ewma, persistence};
use rps_core::metrics::{self, DieboldMariano, Scores, qlike_one};
use rps_core::params::{Params, PrimaryMetric};
use rps_core::split::Split;
use rps_model::{Rows, VolatilityModel};
use rps_store::frame::Dataset;
use rps_tracking::{ModelFiles, Registry, VersionInfo};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Score the trained model and the baselines on the test split, write the report, and promote
/// the model to champion when it beats the current one.
///
/// Writes <report-dir>/metrics.json (also DVC's metrics file), evaluation.md (the comparison
/// report), predictions.csv (DVC plots) and predictions.png.
#[derive(Debug, Parser)]
#[command(name = "rps-evaluate", version, after_help = exit::HELP)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The feature dataset (default: <home>/data/features/<symbol>).
    #[arg(long)]
    pub features: Option<String>,
    /// The trained model folder written by rps-train (default: <home>/models/candidate).
    #[arg(long)]
    pub model: Option<String>,
    /// Folder for metrics.json, evaluation.md, predictions.csv and predictions.png.
    #[arg(long, default_value = "reports")]
    pub report_dir: String,
    /// Exit 9 when the challenger is not promoted (for CI checks).
    #[arg(long)]
    pub require_promotion: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    #[error(transparent)]
    Params(#[from] rps_cli::ParamsError),
    #[error(transparent)]
    Frame(#[from] rps_store::frame::FrameError),
    #[error(transparent)]
    Store(#[from] rps_store::StoreError),
    #[error(transparent)]
    Tracking(#[from] rps_tracking::TrackingError),
    #[error(transparent)]
    Model(#[from] rps_model::ModelError),
    #[error("HAR-RV baseline: {0}")]
    Har(#[from] rps_core::linalg::OlsError),
    #[error("could not encode JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Plot(#[from] rps_report::PlotError),
    #[error(
        "the model expects features {expected:?} but the dataset has {found:?}; rerun rps-train on this dataset"
    )]
    FeatureMismatch {
        expected: Vec<String>,
        found: Vec<String>,
    },
    #[error("the test split is empty")]
    NoTestRows,
    #[error("evaluate.har_terms names {0:?}, which is not a feature column")]
    UnknownHarTerm(String),
    #[error("challenger v{version} not promoted: {reason}")]
    NotPromoted { version: u32, reason: String },
}

impl StageError for EvaluateError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Params(_) | Self::UnknownHarTerm(_) => exit::CONFIG,
            Self::Frame(_) | Self::FeatureMismatch { .. } | Self::NoTestRows => exit::INPUT,
            Self::Model(_) | Self::Har(_) => exit::MODEL,
            Self::NotPromoted { .. } => exit::NOT_PROMOTED,
            Self::Tracking(e) if e.is_remote() => exit::REMOTE,
            Self::Store(_) | Self::Tracking(_) | Self::Json(_) | Self::Plot(_) => exit::STORAGE,
        }
    }
}

/// Forecasts and scores on the test split.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub ts: Vec<i64>,
    pub realized: Vec<f64>,
    /// Forecaster name → forecasts, in a fixed order: model, persistence, ewma, har_rv.
    pub forecasts: Vec<(String, Vec<f64>)>,
    pub scores: Vec<(String, Scores)>,
    /// Model vs HAR-RV on QLIKE losses (negative statistic favours the model).
    pub dm_vs_har: DieboldMariano,
    pub har: Har,
}

impl Evaluation {
    pub fn score(&self, name: &str) -> Option<&Scores> {
        self.scores.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }
}

/// Metric value by name, oriented so that lower is better.
pub fn loss(s: &Scores, m: PrimaryMetric) -> f64 {
    match m {
        PrimaryMetric::Qlike => s.qlike,
        PrimaryMetric::Rmse => s.rmse,
        PrimaryMetric::Mae => s.mae,
        PrimaryMetric::R2Log => -s.r2_log,
    }
}

/// Baseline forecasts for every row of the dataset (in time order): persistence, EWMA and
/// HAR-RV fitted on `fit_rows`.
pub fn baselines(
    params: &Params,
    ds: &Dataset,
    fit_rows: &[usize],
) -> Result<(Vec<(String, Vec<f64>)>, Har), EvaluateError> {
    let f = &ds.frame;
    let floor = params.target.floor;
    let cols: Vec<&[f64]> = params
        .evaluate
        .har_terms
        .iter()
        .map(|t| {
            f.column(t)
                .ok_or_else(|| EvaluateError::UnknownHarTerm(t.clone()))
        })
        .collect::<Result<_, _>>()?;
    let fit_cols: Vec<Vec<f64>> = cols
        .iter()
        .map(|c| fit_rows.iter().map(|&i| c[i]).collect())
        .collect();
    let fit_refs: Vec<&[f64]> = fit_cols.iter().map(Vec::as_slice).collect();
    let fit_y: Vec<f64> = fit_rows.iter().map(|&i| f.target[i]).collect();
    let har = Har::fit(&params.evaluate.har_terms, &fit_refs, &fit_y)?;
    let fl = |v: f64| if v.is_finite() { v.max(floor) } else { floor };
    let all = |v: Vec<f64>| v.into_iter().map(fl).collect::<Vec<_>>();
    Ok((
        vec![
            ("persistence".to_owned(), all(persistence(&f.bar_vol))),
            (
                "ewma".to_owned(),
                all(ewma(&f.bar_vol, params.evaluate.ewma_lambda)),
            ),
            (
                "har_rv".to_owned(),
                (0..f.len()).map(|i| fl(har.predict(&cols, i))).collect(),
            ),
        ],
        har,
    ))
}

/// Score `model` and the baselines on the test split.
pub fn evaluate(
    params: &Params,
    ds: &Dataset,
    model: &VolatilityModel,
) -> Result<Evaluation, EvaluateError> {
    let f = &ds.frame;
    if model.meta.features != f.names {
        return Err(EvaluateError::FeatureMismatch {
            expected: model.meta.features.clone(),
            found: f.names.clone(),
        });
    }
    let test = ds.rows(Split::Test);
    if test.is_empty() {
        return Err(EvaluateError::NoTestRows);
    }
    let (base, har) = baselines(params, ds, &ds.rows(Split::Train))?;
    let realized: Vec<f64> = test.iter().map(|&i| f.target[i]).collect();
    let mut forecasts = vec![(
        "model".to_owned(),
        model.predict(&Rows::gather(&f.columns, &test))?,
    )];
    forecasts.extend(
        base.into_iter()
            .map(|(n, v)| (n, test.iter().map(|&i| v[i]).collect::<Vec<_>>())),
    );
    let scores = forecasts
        .iter()
        .map(|(n, p)| (n.clone(), metrics::score(&realized, p)))
        .collect();
    let losses = |p: &[f64]| {
        realized
            .iter()
            .zip(p)
            .map(|(y, h)| qlike_one(*y, *h))
            .collect::<Vec<_>>()
    };
    let dm_vs_har = metrics::diebold_mariano(
        &losses(&forecasts[0].1),
        &losses(&forecasts[3].1),
        params.evaluate.dm_lags,
    );
    Ok(Evaluation {
        ts: test.iter().map(|&i| f.ts[i]).collect(),
        realized,
        forecasts,
        scores,
        dm_vs_har,
        har,
    })
}

/// The champion/challenger decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub promoted: bool,
    pub challenger_version: u32,
    pub champion_version: Option<u32>,
    pub metric: String,
    pub challenger: f64,
    pub champion: Option<f64>,
    pub margin: f64,
    pub reason: String,
}

/// Decide whether `challenger` (lower-is-better loss) replaces `champion`.
pub fn decide(
    challenger_version: u32,
    challenger: f64,
    champion: Option<(u32, f64)>,
    metric: PrimaryMetric,
    margin: f64,
) -> Decision {
    let metric_name = format!("{metric:?}").to_lowercase();
    let base = Decision {
        promoted: false,
        challenger_version,
        champion_version: champion.map(|c| c.0),
        metric: metric_name.clone(),
        challenger,
        champion: champion.map(|c| c.1),
        margin,
        reason: String::new(),
    };
    match champion {
        None => Decision {
            promoted: true,
            reason: "no champion yet: the first model becomes champion".to_owned(),
            ..base
        },
        Some((v, _)) if v == challenger_version => Decision {
            promoted: false,
            reason: format!("v{v} is already the champion"),
            ..base
        },
        Some((v, champ)) => {
            let improvement = (champ - challenger) / champ.abs().max(f64::MIN_POSITIVE);
            if improvement >= margin && challenger < champ {
                Decision {
                    promoted: true,
                    reason: format!(
                        "{metric_name} improves on champion v{v} by {:.2} % (margin {:.2} %)",
                        improvement * 100.0,
                        margin * 100.0
                    ),
                    ..base
                }
            } else {
                Decision {
                    promoted: false,
                    reason: format!(
                        "{metric_name} changes by {:.2} % against champion v{v}; the margin is {:.2} %",
                        improvement * 100.0,
                        margin * 100.0
                    ),
                    ..base
                }
            }
        }
    }
}

fn scores_json(s: &Scores) -> serde_json::Value {
    let num = |v: f64| {
        if v.is_finite() {
            serde_json::json!(v)
        } else {
            serde_json::Value::Null
        }
    };
    serde_json::json!({"rmse": num(s.rmse), "mae": num(s.mae), "r2": num(s.r2), "r2_log": num(s.r2_log), "qlike": num(s.qlike), "n": s.n})
}

/// The report, in Markdown.
pub fn markdown(e: &Evaluation, d: &Decision, info: &VersionInfo, symbol: &str) -> String {
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
        "# Model evaluation: {name} v{v} ({symbol})\n\n\
Test split: {n} hourly rows, {from} to {to} UTC. Lower QLIKE, RMSE and MAE are better; R² is on \
volatility, R² (log) on log volatility. Every forecast is floored identically.\n\n{table}\n\
Diebold–Mariano, model vs HAR-RV on QLIKE: mean loss difference {dm:.5}, statistic {st:.2}, p-value {p:.4} \
(negative favours the model).\n\n\
HAR-RV: ln σ = {coef} (smearing {sm:.4}), fitted on the training split.\n\n\
## Decision\n\nChallenger v{v} was {verdict}: {reason}.\n\n![predicted vs realized](predictions.png)\n",
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

/// Run the stage.
pub fn run(args: &Args) -> Result<(), EvaluateError> {
    let params = rps_cli::load_params(&args.common.params)?;
    let home = Home::new(&args.common.home);
    let features = args
        .features
        .clone()
        .unwrap_or_else(|| home.features(&params.data.symbol));
    let model_dir = rps_store::open(&args.model.clone().unwrap_or_else(|| home.candidate()))?;
    let tracker = home.tracker()?;
    let registry = home.registry()?;
    let (ds, schema) = rps_store::frame::read(rps_store::open(&features)?.as_ref())?;
    let files = ModelFiles::read(model_dir.as_ref(), "")?;
    let info: VersionInfo = serde_json::from_slice(&model_dir.get("version.json")?)?;
    let model = files.model()?;
    let tags = BTreeMap::from([
        ("git_commit".to_owned(), rps_cli::git_commit()),
        ("stage".to_owned(), "evaluate".to_owned()),
        ("data_hash".to_owned(), schema.data_hash.clone()),
        ("model_name".to_owned(), info.name.clone()),
        ("model_version".to_owned(), info.version.to_string()),
    ]);
    let decision = rps_tracking::with_run(tracker.as_ref(), "evaluate", &tags, |run| {
        let e = evaluate(&params, &ds, &model)?;
        let metric = params.evaluate.primary_metric;
        let challenger_loss = loss(e.score("model").unwrap_or_else(|| unreachable!()), metric);
        let champion = champion_loss(registry.as_ref(), &info.name, &params, &ds, metric)?;
        let decision = decide(
            info.version,
            challenger_loss,
            champion,
            metric,
            params.evaluate.promotion_margin,
        );
        registry.set_alias(&info.name, "challenger", info.version)?;
        if decision.promoted {
            registry.set_alias(&info.name, "champion", info.version)?;
        }
        let out = rps_store::open(&args.report_dir)?;
        let mut json = serde_json::Map::new();
        for (n, s) in &e.scores {
            json.insert(n.clone(), scores_json(s));
        }
        json.insert(
            "diebold_mariano_vs_har_rv".to_owned(),
            serde_json::to_value(e.dm_vs_har)?,
        );
        json.insert("promotion".to_owned(), serde_json::to_value(&decision)?);
        let metrics_json = serde_json::to_vec_pretty(&serde_json::Value::Object(json))?;
        let md = markdown(&e, &decision, &info, &params.data.symbol);
        let mut csv = String::from("ts,realized,model,persistence,ewma,har_rv\n");
        for (i, t) in e.ts.iter().enumerate() {
            let when = chrono::DateTime::from_timestamp_millis(*t)
                .map_or_else(String::new, |d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string());
            let vals: Vec<String> = e
                .forecasts
                .iter()
                .map(|(_, p)| format!("{:.8}", p[i]))
                .collect();
            csv.push_str(&format!("{when},{:.8},{}\n", e.realized[i], vals.join(",")));
        }
        let series: Vec<(&str, &[f64])> = e
            .forecasts
            .iter()
            .filter(|(n, _)| n == "model" || n == "har_rv")
            .map(|(n, p)| (n.as_str(), p.as_slice()))
            .collect();
        let png = rps_report::forecast_png(
            &e.ts,
            &e.realized,
            &series,
            &format!("{} hourly volatility: test split", params.data.symbol),
            1200,
            500,
        )?;
        out.put("metrics.json", &metrics_json)?;
        out.put("evaluation.md", md.as_bytes())?;
        out.put("predictions.csv", csv.as_bytes())?;
        out.put("predictions.png", &png)?;
        let mut values: Vec<(String, f64)> = Vec::new();
        for (n, s) in &e.scores {
            values.extend([
                (format!("{n}_qlike"), s.qlike),
                (format!("{n}_rmse"), s.rmse),
                (format!("{n}_mae"), s.mae),
                (format!("{n}_r2"), s.r2),
                (format!("{n}_r2_log"), s.r2_log),
            ]);
        }
        values.push(("dm_stat_vs_har_rv".to_owned(), e.dm_vs_har.statistic));
        values.push((
            "promoted".to_owned(),
            f64::from(u8::from(decision.promoted)),
        ));
        run.log_values(
            &values
                .iter()
                .map(|(k, v)| (k.as_str(), *v))
                .collect::<Vec<_>>(),
        )?;
        run.log_params(&[
            ("primary_metric".to_owned(), decision.metric.clone()),
            (
                "promotion_margin".to_owned(),
                params.evaluate.promotion_margin.to_string(),
            ),
            (
                "ewma_lambda".to_owned(),
                params.evaluate.ewma_lambda.to_string(),
            ),
        ])?;
        for (name, bytes) in [
            ("metrics.json", metrics_json.as_slice()),
            ("evaluation.md", md.as_bytes()),
            ("predictions.png", png.as_slice()),
        ] {
            run.log_artifact(name, bytes)?;
        }
        tracing::info!(
            "{}",
            if decision.promoted {
                "PROMOTED"
            } else {
                "KEPT"
            }
        );
        Ok::<_, EvaluateError>((decision, md, out.uri("")))
    })?;
    let (decision, md, where_) = decision;
    tracing::info!(
        "challenger v{}: {} — {}",
        decision.challenger_version,
        if decision.promoted {
            "promoted to champion"
        } else {
            "not promoted"
        },
        decision.reason
    );
    tracing::info!("reports in {where_}");
    print_table(&md);
    if args.require_promotion && !decision.promoted {
        return Err(EvaluateError::NotPromoted {
            version: decision.challenger_version,
            reason: decision.reason,
        });
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
fn print_table(md: &str) {
    // The comparison table is the stage's result: it goes to stdout, logs go to stderr.
    for line in md
        .lines()
        .filter(|l| l.starts_with('|') || l.starts_with("Diebold"))
    {
        println!("{line}");
    }
}

/// The current champion's loss on the same test rows, if there is a champion that can score
/// this dataset.
fn champion_loss(
    registry: &dyn Registry,
    name: &str,
    params: &Params,
    ds: &Dataset,
    metric: PrimaryMetric,
) -> Result<Option<(u32, f64)>, EvaluateError> {
    let Some(v) = registry.alias(name, "champion")? else {
        return Ok(None);
    };
    let champ = registry.load(name, v)?;
    match evaluate(params, ds, &champ.model) {
        Ok(e) => Ok(e.score("model").map(|s| (v, loss(s, metric)))),
        Err(EvaluateError::FeatureMismatch { .. }) => {
            tracing::warn!(
                "champion v{v} was trained on other features and cannot score this dataset; the challenger is judged alone"
            );
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        let m = PrimaryMetric::Qlike;
        assert!(decide(1, 0.3, None, m, 0.01).promoted);
        let d = decide(2, 0.29, Some((1, 0.3)), m, 0.01);
        assert!(d.promoted, "{}", d.reason);
        let d = decide(2, 0.299, Some((1, 0.3)), m, 0.01);
        assert!(!d.promoted);
        assert!(d.reason.contains("margin is 1.00 %"), "{}", d.reason);
        assert!(!decide(2, 0.31, Some((1, 0.3)), m, 0.0).promoted);
        assert!(
            !decide(3, 0.1, Some((3, 0.1)), m, 0.0).promoted,
            "rerunning evaluate on the champion changes nothing"
        );
        // R²(log) is higher-is-better: loss() flips it.
        let s = Scores {
            rmse: 1.0,
            mae: 1.0,
            r2: 0.5,
            r2_log: 0.6,
            qlike: 0.2,
            n: 1,
        };
        assert_eq!(loss(&s, PrimaryMetric::R2Log), -0.6);
    }
}
