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
use rps_core::params::{Params, Task};
use rps_store::frame::Dataset;
use rps_tracking::{ModelFiles, Registry, VersionInfo};
use std::collections::BTreeMap;

mod acceptance;
mod decision;
mod headline;
mod plots;
mod pooled;
mod pooled_walk_forward;
mod report;
mod scoring;
pub mod signal;
mod walk_forward;

pub use acceptance::*;
pub use decision::*;
pub use pooled::{SymbolEvaluation, decide_pooled};
pub use pooled_walk_forward::*;
pub use report::*;
pub use scoring::*;
pub use walk_forward::*;

/// Score the trained model and the baselines on the test split, write the report, and promote
/// the model to champion when it beats the current one.
///
/// Writes <report-dir>/metrics.json (the headline numbers, DVC's metrics file),
/// metrics_detail.json (every score, the walk-forward folds), evaluation.md (the comparison
/// report), predictions.csv (DVC plots) and predictions.png.
#[derive(Debug, Parser)]
#[command(name = "rps-evaluate", version, after_help = exit::HELP)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The feature dataset (default: <home>/data/features/<symbol>).
    #[arg(long)]
    pub features: Option<String>,
    /// The trained model folder written by rps-train (default: <home>/models/candidate, or
    /// <home>/models/<symbol>/candidate when params.yaml lists several symbols).
    #[arg(long)]
    pub model: Option<String>,
    /// Folder for metrics.json, evaluation.md, predictions.csv and predictions.png (default: <home>/reports, or <home>/reports/<symbol>
    /// when params.yaml lists several symbols; DVC and CI pass their own).
    #[arg(long)]
    pub report_dir: Option<String>,
    /// Also write predictions.csv to this file (a path or URI), e.g. reports/plots/BTC-USDT.csv:
    /// dvc.yaml's realized-vs-forecast plot reads every symbol's from one folder.
    #[arg(long, value_name = "FILE")]
    pub plot_csv: Option<String>,
    /// Exit 9 when the challenger is not promoted (for CI checks).
    #[arg(long)]
    pub require_promotion: bool,
    /// Ignored, kept so existing invocations still parse: a signal model's labels now come from
    /// the `close` column of the features.
    #[arg(long, hide = true)]
    pub raw: Option<String>,
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
    #[error("walk-forward: {0}")]
    WalkForward(#[from] rps_core::walkforward::WalkForwardError),
    #[error("the dataset's bar {0:?} is not an interval")]
    Bar(String),
    #[error("evaluate.har_terms names {0:?}, which is not a feature column")]
    UnknownHarTerm(String),
    #[error("challenger v{version} not promoted: {reason}")]
    NotPromoted { version: u32, reason: String },
    #[error("signal labels: {0}")]
    Labels(#[from] rps_store::frame::LabelError),
    /// A pooled evaluate run that cannot go ahead (`train.pooling: pooled`).
    #[error("{0}")]
    Pooled(String),
}

impl StageError for EvaluateError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Labels(e) if e.is_input() => exit::INPUT,
            Self::Labels(_) => exit::CONFIG,
            Self::Params(_) | Self::UnknownHarTerm(_) | Self::Pooled(_) => exit::CONFIG,
            Self::Frame(e) if !e.is_input() => exit::STORAGE,
            Self::Tracking(e) if e.is_input() => exit::INPUT,
            Self::Tracking(rps_tracking::TrackingError::NoVersion { .. }) => exit::INPUT,
            Self::Model(e) if e.is_load_error() => exit::INPUT,
            Self::Frame(_)
            | Self::FeatureMismatch { .. }
            | Self::NoTestRows
            | Self::WalkForward(_)
            | Self::Bar(_) => exit::INPUT,
            Self::Model(_) | Self::Har(_) => exit::MODEL,
            Self::NotPromoted { .. } => exit::NOT_PROMOTED,
            Self::Tracking(e) if e.is_remote() => exit::REMOTE,
            Self::Store(_) | Self::Tracking(_) | Self::Json(_) | Self::Plot(_) => exit::STORAGE,
        }
    }
}

/// Move the live-set aliases after an evaluation (README "Serving predictions": champion,
/// challenger, baseline), then archive what retention lets go (`evaluate.keep_versions`).
/// Nothing moves inside a DVC experiment ([`in_experiment`]).
fn record_live_set(
    registry: &dyn rps_tracking::Registry,
    info: &VersionInfo,
    promoted: bool,
    params: &Params,
) -> Result<(), EvaluateError> {
    if let Some(name) = rps_cli::dvc_experiment() {
        tracing::warn!(
            experiment = %name,
            "DVC experiment: the registry's aliases are left as they are"
        );
        return Ok(());
    }
    let live = rps_tracking::live::record_evaluation(registry, &info.name, info.version, promoted)?;
    tracing::info!(model = %info.name, ?live, "live set");
    rps_tracking::live::retain(registry, &info.name, params.evaluate.keep_versions)?;
    Ok(())
}

/// Read the candidate folder rps-train committed, and check that it IS the registry's copy of
/// the version its `version.json` names (same files, same hashes): a torn folder, or one whose
/// model is not that registered version, is refused (exit 4) rather than scored under a
/// version number that is not its own.
pub fn read_candidate(
    model_dir: &dyn rps_store::ObjectStore,
    registry: &dyn Registry,
) -> Result<(ModelFiles, VersionInfo), EvaluateError> {
    let snap = rps_store::commit::Snapshot::open(model_dir, "rps-train")
        .map_err(rps_tracking::TrackingError::from)?;
    let files = ModelFiles::read_committed(&snap)?;
    let info: VersionInfo = serde_json::from_slice(
        &snap
            .get("version.json")
            .map_err(rps_tracking::TrackingError::from)?,
    )
    .map_err(|source| rps_tracking::TrackingError::Json {
        uri: model_dir.uri("version.json"),
        source,
    })?;
    let registered = registry.load(&info.name, info.version)?;
    let (ours, theirs) = (files.hashes()?, registered.files.hashes()?);
    for (file, sha) in &ours {
        let other = theirs.get(file).map_or("missing", String::as_str);
        if other != sha {
            return Err(rps_tracking::TrackingError::NotRegistered {
                uri: model_dir.uri(""),
                name: info.name.clone(),
                version: info.version,
                file: format!("{file} (sha256 {})", &sha[..12]),
                registry: format!("sha256 {}", &other[..other.len().min(12)]),
            }
            .into());
        }
    }
    Ok((files, info))
}

/// Run the stage.
pub fn run(args: &Args) -> Result<(), EvaluateError> {
    let set = args.common.load_param_set()?;
    if set.shared().train.pooling.is_pooled() {
        return pooled::run_pooled(args, &set);
    }
    let params = set.into_selected()?;
    let home = Home::for_params(&args.common.home, &params);
    let report_dir = args.report_dir.clone().unwrap_or_else(|| home.reports());
    let features = args
        .features
        .clone()
        .unwrap_or_else(|| home.features(&params.data.symbol));
    let model_dir = rps_store::open(&args.model.clone().unwrap_or_else(|| home.candidate()))?;
    let tracker = home.tracker()?;
    let registry = home.registry()?;
    let features_store = rps_store::open(&features)?;
    let data_tags = rps_cli::data_tags(features_store.as_ref());
    let (ds, schema) = rps_store::frame::read(features_store.as_ref())?;
    let (files, info) = read_candidate(model_dir.as_ref(), registry.as_ref())?;
    let mut tags = BTreeMap::from([
        ("git_commit".to_owned(), rps_cli::git_commit()),
        ("stage".to_owned(), "evaluate".to_owned()),
        ("data_hash".to_owned(), schema.data_hash.clone()),
        ("model_name".to_owned(), info.name.clone()),
        ("model_version".to_owned(), info.version.to_string()),
    ]);
    tags.extend(data_tags);
    let decision = if files.meta.task == Task::Signal {
        tags.insert("task".to_owned(), Task::Signal.as_str().to_owned());
        let cols = ds.signal_columns(&schema, &params.signal)?;
        let model = rps_model::SignalModel::from_parts(&files.xgb_ubj, files.meta.clone())?;
        rps_tracking::with_run(tracker.as_ref(), "evaluate", &tags, |run| {
            run_signal(
                run,
                &params,
                &ds,
                &cols,
                &model,
                registry.as_ref(),
                &info,
                &report_dir,
                args.plot_csv.as_deref(),
            )
        })?
    } else {
        let model = files.model()?.into_volatility()?;
        rps_tracking::with_run(tracker.as_ref(), "evaluate", &tags, |run| {
            let e = evaluate(&params, &ds, &model)?;
            let metric = params.evaluate.primary_metric;
            let challenger_loss = loss(e.score("model").unwrap_or_else(|| unreachable!()), metric);
            let margin = params.evaluate.promotion_margin;
            let wf = if params.evaluate.walk_forward_folds > 0 {
                let bar: rps_core::Interval = schema
                    .bar
                    .parse()
                    .map_err(|_| EvaluateError::Bar(schema.bar.clone()))?;
                Some(walk_forward(&params, &ds, bar.ms())?)
            } else {
                None
            };
            let rule = &params.evaluate.acceptance;
            let verdict = wf.as_ref().and_then(|w| w.verdict(rule));
            let decision = in_experiment(gate(
                match champion_loss(registry.as_ref(), &info.name, &params, &ds, &schema, metric)? {
                    Champion::Incomparable(v, why) => {
                        tracing::warn!("champion v{v} {why}: not compared, the champion is kept");
                        Decision {
                            promoted: false,
                            challenger_version: info.version,
                            champion_version: Some(v),
                            metric: format!("{metric:?}").to_lowercase(),
                            challenger: challenger_loss,
                            champion: None,
                            margin,
                            reason: format!(
                                "champion v{v} {why}: the two are not comparable, so the champion is kept (train both on one dataset, or give this one another train.model_name or --home)"
                            ),
                        }
                    }
                    Champion::Scored(v, l) => {
                        decide(info.version, challenger_loss, Some((v, l)), metric, margin)
                    }
                    Champion::None => decide(info.version, challenger_loss, None, metric, margin),
                },
                verdict.as_ref(),
                rule.enforce,
            ));
            let out = rps_store::open(&report_dir)?;
            rps_store::commit::sweep_stale_temp(out.as_ref());
            let mut json = serde_json::Map::new();
            for (n, s) in &e.scores {
                json.insert(n.clone(), scores_json(s));
            }
            json.insert(
                "diebold_mariano_vs_har_rv".to_owned(),
                serde_json::to_value(e.dm_vs_har)?,
            );
            json.insert("promotion".to_owned(), serde_json::to_value(&decision)?);
            let wf_md = wf.as_ref().map(|w| walk_forward_markdown(w, &params));
            if let Some(w) = &wf {
                json.insert(
                    "walk_forward".to_owned(),
                    walk_forward_json(w, verdict.as_ref())?,
                );
            }
            let metrics_json = serde_json::to_vec_pretty(&headline::headline(&json))?;
            let detail_json = serde_json::to_vec_pretty(&serde_json::Value::Object(json))?;
            let md = markdown(&e, &decision, &info, &params.data.symbol, wf_md.as_deref());
            let csv = predictions_csv(&e);
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
            out.put("metrics_detail.json", &detail_json)?;
            out.put("metrics.json", &metrics_json)?;
            out.put("evaluation.md", md.as_bytes())?;
            out.put("predictions.csv", csv.as_bytes())?;
            put_plot_csv(args.plot_csv.as_deref(), &csv)?;
            out.put("predictions.png", &png)?;
            let mut wf_files: Vec<(String, Vec<u8>)> = Vec::new();
            if let Some(w) = &wf {
                wf_files.push((
                    "walkforward.csv".to_owned(),
                    walk_forward_csv(w).into_bytes(),
                ));
                for (k, f) in w.folds.iter().enumerate() {
                    let series: Vec<(&str, &[f64])> = f
                        .forecasts
                        .iter()
                        .filter(|(n, _)| n == "model" || n == "har_rv" || n == "ewma")
                        .map(|(n, p)| (n.as_str(), p.as_slice()))
                        .collect();
                    let png = rps_report::forecast_png(
                        &f.ts,
                        &f.realized,
                        &series,
                        &format!(
                            "{} hourly volatility: walk-forward fold {}/{}",
                            params.data.symbol,
                            k + 1,
                            w.folds.len()
                        ),
                        1200,
                        500,
                    )?;
                    wf_files.push((fold_png(k), png));
                }
                // Issue #16's plots (plots.rs): monthly interval bands, reliability, coverage by
                // tercile, feature importance.
                wf_files.extend(plots::walk_forward_plots(
                    w,
                    &model.importance(),
                    &params.data.symbol,
                )?);
                for (name, bytes) in &wf_files {
                    out.put(name, bytes)?;
                }
            }
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
            if let Some(w) = &wf {
                let (pooled, points) = walk_forward_metrics(w, verdict.as_ref());
                values.extend(pooled);
                run.log_metrics(&points)?;
            }
            values.push((
                "promoted".to_owned(),
                f64::from(u8::from(decision.promoted)),
            ));
            run.log_owned_values(&values)?;
            run.log_params(&logged_params(&params, &decision))?;
            for (name, bytes) in [
                ("metrics.json", metrics_json.as_slice()),
                ("metrics_detail.json", detail_json.as_slice()),
                ("evaluation.md", md.as_bytes()),
                ("predictions.png", png.as_slice()),
            ] {
                run.log_artifact(name, bytes)?;
            }
            for (name, bytes) in &wf_files {
                run.log_artifact(name, bytes)?;
            }
            // Decide, write every report and record the run, then move the aliases last: a
            // stage that fails before here (a full disk, a tracking server down) leaves the
            // live set as it was, and its rerun decides again.
            record_live_set(registry.as_ref(), &info, decision.promoted, &params)?;
            tracing::info!(
                "{}",
                if decision.promoted {
                    "PROMOTED"
                } else {
                    "KEPT"
                }
            );
            Ok::<_, EvaluateError>((decision, md, out.uri("")))
        })?
    };
    let (decision, md, where_) = decision;
    conclude(args, "challenger", decision, &md, &where_)
}

/// The knobs a volatility evaluate run logs as params (per-symbol and pooled alike).
fn logged_params(params: &Params, decision: &Decision) -> Vec<(String, String)> {
    let ev = &params.evaluate;
    vec![
        ("primary_metric".to_owned(), decision.metric.clone()),
        (
            "promotion_margin".to_owned(),
            ev.promotion_margin.to_string(),
        ),
        ("ewma_lambda".to_owned(), ev.ewma_lambda.to_string()),
        (
            "walk_forward_folds".to_owned(),
            ev.walk_forward_folds.to_string(),
        ),
        (
            "walk_forward_test_fraction".to_owned(),
            ev.walk_forward_test_fraction.to_string(),
        ),
        (
            "walk_forward_window".to_owned(),
            format!("{:?}", ev.walk_forward_window).to_lowercase(),
        ),
        (
            "acceptance_enforce".to_owned(),
            ev.acceptance.enforce.to_string(),
        ),
    ]
}

/// The stage's closing lines: the decision and where the reports are, the table, and with
/// `--require-promotion` exit 9 for a challenger kept out.
fn conclude(
    args: &Args,
    what: &str,
    decision: Decision,
    md: &str,
    where_: &str,
) -> Result<(), EvaluateError> {
    tracing::info!(
        "{what} v{}: {} — {}",
        decision.challenger_version,
        if decision.promoted {
            "promoted to champion"
        } else {
            "not promoted"
        },
        decision.reason
    );
    tracing::info!("reports in {where_}");
    print_table(md);
    if args.require_promotion && !decision.promoted {
        return Err(EvaluateError::NotPromoted {
            version: decision.challenger_version,
            reason: decision.reason,
        });
    }
    Ok(())
}

/// `--plot-csv`: the copy of predictions.csv DVC's plot reads.
fn put_plot_csv(path: Option<&str>, csv: &str) -> Result<(), EvaluateError> {
    let Some(path) = path else {
        return Ok(());
    };
    let (dir, name) = path.rsplit_once('/').unwrap_or((".", path));
    rps_store::open(if dir.is_empty() { "/" } else { dir })?.put(name, csv.as_bytes())?;
    Ok(())
}

/// The signal task inside the evaluate run: score, decide on macro F1, write and log.
#[allow(clippy::too_many_arguments)]
fn run_signal(
    run: &mut dyn rps_tracking::Run,
    params: &Params,
    ds: &Dataset,
    cols: &rps_core::signal::SignalColumns,
    model: &rps_model::SignalModel,
    registry: &dyn Registry,
    info: &VersionInfo,
    report_dir: &str,
    plot_csv: Option<&str>,
) -> Result<(Decision, String, String), EvaluateError> {
    let e = signal::evaluate_signal(ds, cols, model)?;
    let macro_f1 = e.score("model").map_or(f64::NAN, |s| s.macro_f1);
    let champion = signal::champion_macro_f1(registry, &info.name, ds, cols)?;
    let decision = in_experiment(signal::decide_signal(
        info.version,
        macro_f1,
        champion,
        params.evaluate.promotion_margin,
    ));
    let out = rps_store::open(report_dir)?;
    rps_store::commit::sweep_stale_temp(out.as_ref());
    let metrics_json = serde_json::to_vec_pretty(&signal::metrics_json(&e, params, &decision)?)?;
    let md = signal::markdown(&e, &decision, info, params);
    let csv = signal::predictions_csv(&e);
    out.put("metrics.json", &metrics_json)?;
    out.put("evaluation.md", md.as_bytes())?;
    out.put("predictions.csv", csv.as_bytes())?;
    put_plot_csv(plot_csv, &csv)?;
    let png = signal::accuracy_png(&e, &params.data.symbol)?;
    out.put("predictions.png", &png)?;
    let mut values = signal::logged_values(&e);
    values.push((
        "promoted".to_owned(),
        f64::from(u8::from(decision.promoted)),
    ));
    run.log_owned_values(&values)?;
    run.log_params(&[
        ("task".to_owned(), Task::Signal.as_str().to_owned()),
        ("primary_metric".to_owned(), decision.metric.clone()),
        (
            "promotion_margin".to_owned(),
            params.evaluate.promotion_margin.to_string(),
        ),
        (
            "signal_horizon".to_owned(),
            params.signal.horizon.to_string(),
        ),
        (
            "signal_threshold".to_owned(),
            params.signal.threshold.to_string(),
        ),
    ])?;
    for (name, bytes) in [
        ("metrics.json", metrics_json.as_slice()),
        ("evaluation.md", md.as_bytes()),
        ("predictions.csv", csv.as_bytes()),
        ("predictions.png", png.as_slice()),
    ] {
        run.log_artifact(name, bytes)?;
    }
    // The aliases move last, after every report is written (see the volatility task).
    record_live_set(registry, info, decision.promoted, params)?;
    Ok((decision, md, out.uri("")))
}

#[cfg(test)]
mod tests;
