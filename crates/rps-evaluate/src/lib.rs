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
use rps_core::params::{Params, PrimaryMetric, Task};
use rps_core::schema::FeatureSchema;
use rps_core::split::Split;
use rps_model::{Rows, VolatilityModel};
use rps_store::frame::Dataset;
use rps_tracking::{MetricPoint, ModelFiles, Registry, VersionInfo};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

mod headline;
pub mod signal;

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
    /// The trained model folder written by rps-train (default: <home>/models/candidate).
    #[arg(long)]
    pub model: Option<String>,
    /// Folder for metrics.json, evaluation.md, predictions.csv and predictions.png (default: <home>/reports, beside everything else
    /// the stages write; DVC and CI pass their own).
    #[arg(long)]
    pub report_dir: Option<String>,
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
}

impl StageError for EvaluateError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Labels(e) if e.is_input() => exit::INPUT,
            Self::Labels(_) => exit::CONFIG,
            Self::Params(_) | Self::UnknownHarTerm(_) => exit::CONFIG,
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

/// Forecasts and scores on the test split.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub ts: Vec<i64>,
    pub realized: Vec<f64>,
    /// Forecaster name → forecasts, in a fixed order: model, persistence, ewma, har_rv, har_rv_log.
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

/// Named forecasts, one value per row.
pub type Forecasts = Vec<(String, Vec<f64>)>;

/// The HAR-RV fit's log-scale forecast, `exp(fitted)` without Duan's smearing: the same
/// regression as `har_rv`, which forecasts the volatility level (smeared) and so sits higher
/// than the R²(log)-optimal forecast. The acceptance rule's R² (log) bar is the better of the two.
pub const HAR_LOG: &str = "har_rv_log";

/// Baseline forecasts for every row of the dataset (in time order): persistence, EWMA, HAR-RV
/// fitted on `fit_rows` and the same fit on the log scale ([`HAR_LOG`]).
pub fn baselines(
    params: &Params,
    ds: &Dataset,
    fit_rows: &[usize],
) -> Result<(Forecasts, Har), EvaluateError> {
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
    // HAR-RV sees what the model saw: the training and validation splits.
    let mut fit_rows = ds.rows(Split::Train);
    fit_rows.extend(ds.rows(Split::Validation));
    let (base, har) = baselines(params, ds, &fit_rows)?;
    let realized: Vec<f64> = test.iter().map(|&i| f.target[i]).collect();
    let mut forecasts = vec![(
        "model".to_owned(),
        model.predict(&Rows::gather(&f.columns, &test))?,
    )];
    forecasts.extend(
        base.into_iter()
            .map(|(n, v)| (n, test.iter().map(|&i| v[i]).collect::<Vec<_>>())),
    );
    let (scores, dm_vs_har) = score_all(&realized, &forecasts, params.evaluate.dm_lags);
    Ok(Evaluation {
        ts: test.iter().map(|&i| f.ts[i]).collect(),
        realized,
        forecasts,
        scores,
        dm_vs_har,
        har,
    })
}

/// Scores of every forecaster on `realized`, and the DM test of the first (the model) against
/// `har_rv` on QLIKE losses.
fn score_all(
    realized: &[f64],
    forecasts: &[(String, Vec<f64>)],
    dm_lags: usize,
) -> (Vec<(String, Scores)>, DieboldMariano) {
    let scores = forecasts
        .iter()
        .map(|(n, p)| (n.clone(), metrics::score(realized, p)))
        .collect();
    let losses = |p: &[f64]| {
        realized
            .iter()
            .zip(p)
            .map(|(y, h)| qlike_one(*y, *h))
            .collect::<Vec<_>>()
    };
    let har = forecasts
        .iter()
        .find(|(n, _)| n == "har_rv")
        .map_or(&forecasts[0].1, |(_, p)| p);
    let dm = metrics::diebold_mariano(&losses(&forecasts[0].1), &losses(har), dm_lags);
    (scores, dm)
}

/// One walk-forward fold: a model retrained on the fold's history and every forecaster scored
/// on its test block.
#[derive(Debug, Clone)]
pub struct FoldResult {
    pub train_rows: usize,
    pub validation_rows: usize,
    pub best_iteration: Option<usize>,
    /// The model's calibrated scale factor.
    pub smearing: f64,
    /// The exponent of the power transform the fold's model uses.
    pub power: Option<f64>,
    pub ts: Vec<i64>,
    pub realized: Vec<f64>,
    /// model, persistence, ewma, har_rv, har_rv_log.
    pub forecasts: Vec<(String, Vec<f64>)>,
    pub scores: Vec<(String, Scores)>,
    pub dm_vs_har: DieboldMariano,
}

/// Walk-forward evaluation: per-fold results and the pooled out-of-sample scores.
#[derive(Debug, Clone)]
pub struct WalkForward {
    pub folds: Vec<FoldResult>,
    /// Every fold's test rows together.
    pub pooled: Vec<(String, Scores)>,
    /// Model vs HAR-RV on the pooled QLIKE losses (in time order).
    pub dm_vs_har: DieboldMariano,
    pub window: rps_core::walkforward::Window,
}

impl WalkForward {
    pub fn pooled_score(&self, name: &str) -> Option<&Scores> {
        self.pooled.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }

    /// The acceptance check of the model against the baselines on the pooled scores.
    pub fn verdict(&self) -> Option<Verdict> {
        let model = self.pooled_score("model")?;
        // HAR-RV's R² (log) bar: the better of its level (smeared) and log-scale forecasts.
        let har_r2_log = ["har_rv", HAR_LOG]
            .iter()
            .filter_map(|n| self.pooled_score(n))
            .map(|s| s.r2_log)
            .reduce(f64::max)?;
        let (best_name, best) = self
            .pooled
            .iter()
            .filter(|(n, _)| n != "model")
            .min_by(|a, b| a.1.qlike.total_cmp(&b.1.qlike))?;
        let qlike_gain = 1.0 - model.qlike / best.qlike;
        Some(Verdict {
            best_baseline: best_name.clone(),
            qlike_gain,
            r2_log_vs_har: model.r2_log - har_r2_log,
            passed: qlike_gain >= QLIKE_GAIN_REQUIRED && model.r2_log >= har_r2_log,
        })
    }
}

/// The model must beat the lowest baseline QLIKE by this share.
pub const QLIKE_GAIN_REQUIRED: f64 = 0.05;

/// Whether the model beats the baselines on both counts at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The baseline with the lowest pooled QLIKE.
    pub best_baseline: String,
    /// `1 − QLIKE(model) / QLIKE(best baseline)`: the share by which the model's QLIKE is lower.
    pub qlike_gain: f64,
    /// `R²log(model) − R²log(HAR-RV)`, HAR-RV's being the better of `har_rv` and [`HAR_LOG`].
    pub r2_log_vs_har: f64,
    /// QLIKE at least 5 % lower than the best baseline's and R² (log) at least HAR-RV's.
    pub passed: bool,
}

/// Gather the targets and the model's rows for `idx`.
fn gather(ds: &Dataset, idx: &[usize]) -> (Rows, Vec<f64>) {
    (
        Rows::gather(&ds.frame.columns, idx),
        idx.iter().map(|&i| ds.frame.target[i]).collect(),
    )
}

/// Walk-forward evaluation over `evaluate.walk_forward_folds` folds: at each fold the model is
/// retrained with `train:` on the fold's training rows (early stopping and calibration on its
/// validation rows), HAR-RV is refitted on both, and the model and every baseline forecast the
/// fold's test block. `bar_ms` is the dataset's bar length.
pub fn walk_forward(
    params: &Params,
    ds: &Dataset,
    bar_ms: i64,
) -> Result<WalkForward, EvaluateError> {
    use rps_core::walkforward::{WalkForwardParams, folds};
    let f = &ds.frame;
    let ev = &params.evaluate;
    let sp = &params.split;
    let wp = WalkForwardParams {
        folds: ev.walk_forward_folds,
        test_fraction: ev.walk_forward_test_fraction,
        validation_fraction: sp.validation / (sp.train + sp.validation),
        gap: sp.gap,
        window: ev.walk_forward_window,
    };
    let plan = folds(&f.ts, &f.usable(), bar_ms, params.target.horizon, &wp)?;
    let mut out = Vec::with_capacity(plan.len());
    for (k, fold) in plan.iter().enumerate() {
        let (xt, yt) = gather(ds, &fold.train);
        let (xv, yv) = gather(ds, &fold.validation);
        let (xs, realized) = gather(ds, &fold.test);
        let (model, _) = VolatilityModel::train(
            &params.train,
            &f.names,
            params.target.floor,
            (&xt, &yt),
            (&xv, &yv),
        )?;
        let mut seen = fold.train.clone();
        seen.extend(&fold.validation);
        let (base, _) = baselines(params, ds, &seen)?;
        let mut forecasts = vec![("model".to_owned(), model.predict(&xs)?)];
        forecasts.extend(
            base.into_iter()
                .map(|(n, v)| (n, fold.test.iter().map(|&i| v[i]).collect::<Vec<_>>())),
        );
        let (scores, dm_vs_har) = score_all(&realized, &forecasts, ev.dm_lags);
        tracing::info!(
            "walk-forward fold {}/{}: {} train, {} validation, {} test rows; model QLIKE {:.4}, R²(log) {:.4}",
            k + 1,
            plan.len(),
            fold.train.len(),
            fold.validation.len(),
            fold.test.len(),
            scores[0].1.qlike,
            scores[0].1.r2_log
        );
        out.push(FoldResult {
            train_rows: fold.train.len(),
            validation_rows: fold.validation.len(),
            best_iteration: model.meta.best_iteration,
            smearing: model.meta.smearing,
            power: model.meta.power,
            ts: fold.test.iter().map(|&i| f.ts[i]).collect(),
            realized,
            forecasts,
            scores,
            dm_vs_har,
        });
    }
    let realized: Vec<f64> = out.iter().flat_map(|r| r.realized.clone()).collect();
    let forecasts: Vec<(String, Vec<f64>)> = out[0]
        .forecasts
        .iter()
        .enumerate()
        .map(|(j, (n, _))| {
            (
                n.clone(),
                out.iter().flat_map(|r| r.forecasts[j].1.clone()).collect(),
            )
        })
        .collect();
    let (pooled, dm_vs_har) = score_all(&realized, &forecasts, ev.dm_lags);
    Ok(WalkForward {
        folds: out,
        pooled,
        dm_vs_har,
        window: ev.walk_forward_window,
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
    decide_by(
        challenger_version,
        challenger,
        champion,
        &format!("{metric:?}").to_lowercase(),
        false,
        margin,
    )
}

/// Decide whether `challenger` replaces `champion` on the metric `metric_name`, lower-is-better
/// unless `higher_is_better`: promoted for a relative improvement of at least `margin`. The
/// decision records the metric's own values.
pub fn decide_by(
    challenger_version: u32,
    challenger: f64,
    champion: Option<(u32, f64)>,
    metric_name: &str,
    higher_is_better: bool,
    margin: f64,
) -> Decision {
    let base = Decision {
        promoted: false,
        challenger_version,
        champion_version: champion.map(|c| c.0),
        metric: metric_name.to_owned(),
        challenger,
        champion: champion.map(|c| c.1),
        margin,
        reason: String::new(),
    };
    let loss = |v: f64| if higher_is_better { -v } else { v };
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
            let (champ, challenger) = (loss(champ), loss(challenger));
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

fn utc(t: Option<&i64>) -> String {
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

/// The walk-forward section of the report, in Markdown.
pub fn walk_forward_markdown(wf: &WalkForward, params: &Params) -> String {
    let rows: Vec<rps_report::Row> = wf
        .pooled
        .iter()
        .map(|(n, s)| rps_report::Row {
            name: n.clone(),
            scores: *s,
        })
        .collect();
    let n: usize = wf.folds.iter().map(|f| f.realized.len()).sum();
    let first = wf.folds.first().and_then(|f| f.ts.first());
    let last = wf.folds.last().and_then(|f| f.ts.last());
    let window = match wf.window {
        rps_core::walkforward::Window::Expanding => "expanding window: all earlier history",
        rps_core::walkforward::Window::Rolling => "rolling window: the most recent history",
    };
    let verdict = wf.verdict().map_or_else(String::new, |v| {
        format!(
            "Verdict: the model's pooled QLIKE is {:.1} % {} than the best baseline's ({}; at least {:.0} % lower required) \
and its R² (log) is {:+.4} against HAR-RV's best (of har_rv and its log-scale forecast har_rv_log; at least 0 required): **{}**.\n\n",
            v.qlike_gain.abs() * 100.0,
            if v.qlike_gain >= 0.0 { "lower" } else { "higher" },
            v.best_baseline,
            QLIKE_GAIN_REQUIRED * 100.0,
            v.r2_log_vs_har,
            if v.passed {
                "beats every baseline on both counts"
            } else {
                "does not beat the baselines on both counts"
            }
        )
    });
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
    let plots: String = (0..wf.folds.len())
        .map(|k| format!("![fold {}]({})\n", k + 1, fold_png(k)))
        .collect();
    format!(
        "## Walk-forward: {folds} folds, pooled out of sample\n\n{n} hourly test rows, {from} to {to} UTC, in {folds} consecutive blocks. At every fold the model is retrained ({window}; the last {vshare:.0} % of it for early stopping and calibration, purged by {gap} bars on each side) and HAR-RV is refitted on the same rows; EWMA and persistence need no fitting.\n\n{table}\nDiebold–Mariano, model vs HAR-RV on pooled QLIKE: mean loss difference {dm:.5}, statistic {st:.2}, p-value {p:.4} (negative favours the model).\n\n{verdict}### Per fold\n\n{folds_table}\n{plots}",
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

/// The walk-forward results as JSON (for metrics.json).
fn walk_forward_json(wf: &WalkForward) -> Result<serde_json::Value, serde_json::Error> {
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
        "verdict": serde_json::to_value(wf.verdict())?,
    }))
}

/// Every fold's test forecasts as CSV.
pub fn walk_forward_csv(wf: &WalkForward) -> String {
    let names = wf
        .folds
        .first()
        .map_or_else(String::new, |f| forecaster_names(&f.forecasts));
    let mut csv = format!("fold,ts,realized,{names}\n");
    for (k, f) in wf.folds.iter().enumerate() {
        for (i, t) in f.ts.iter().enumerate() {
            let when = chrono::DateTime::from_timestamp_millis(*t)
                .map_or_else(String::new, |d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string());
            let vals: Vec<String> = f
                .forecasts
                .iter()
                .map(|(_, p)| format!("{:.8}", p[i]))
                .collect();
            csv.push_str(&format!(
                "{},{when},{:.8},{}\n",
                k + 1,
                f.realized[i],
                vals.join(",")
            ));
        }
    }
    csv
}

/// The forecasters' names, comma-separated: the CSV columns after `realized`.
fn forecaster_names(forecasts: &[(String, Vec<f64>)]) -> String {
    forecasts
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Walk-forward metrics for the tracker: pooled values, and one point per fold (step = fold).
fn walk_forward_metrics(wf: &WalkForward) -> (Vec<(String, f64)>, Vec<MetricPoint>) {
    let metric_values = |s: &Scores| {
        [
            ("qlike", s.qlike),
            ("rmse", s.rmse),
            ("mae", s.mae),
            ("r2", s.r2),
            ("r2_log", s.r2_log),
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
    if let Some(v) = wf.verdict() {
        values.push(("wf_qlike_gain_vs_best_baseline".to_owned(), v.qlike_gain));
        values.push(("wf_r2_log_vs_har_rv".to_owned(), v.r2_log_vs_har));
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

/// Inside a DVC experiment (`dvc exp run` sets `DVC_EXP_NAME`) the decision is taken and
/// reported, but never acted on: an experiment is not committed and may be thrown away, so it
/// must not become the production champion. The report says what it would have done.
fn in_experiment(mut d: Decision) -> Decision {
    if let Some(name) = rps_cli::dvc_experiment() {
        let would = if d.promoted {
            "would be promoted"
        } else {
            "would not be promoted"
        };
        d.reason = format!(
            "DVC experiment {name}: {would} ({}), but an experiment never moves the registry's aliases — keep it with `dvc exp apply {name}`, a commit and `dvc repro`",
            d.reason
        );
        d.promoted = false;
    }
    d
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
    let params = args.common.load_params()?;
    let home = Home::new(&args.common.home);
    let report_dir = args
        .report_dir
        .clone()
        .unwrap_or_else(|| home.join("reports"));
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
            )
        })?
    } else {
        let model = files.model()?.into_volatility()?;
        rps_tracking::with_run(tracker.as_ref(), "evaluate", &tags, |run| {
            let e = evaluate(&params, &ds, &model)?;
            let metric = params.evaluate.primary_metric;
            let challenger_loss = loss(e.score("model").unwrap_or_else(|| unreachable!()), metric);
            let margin = params.evaluate.promotion_margin;
            let decision = in_experiment(
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
            );
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
            let wf = if params.evaluate.walk_forward_folds > 0 {
                let bar: rps_core::Interval = schema
                    .bar
                    .parse()
                    .map_err(|_| EvaluateError::Bar(schema.bar.clone()))?;
                Some(walk_forward(&params, &ds, bar.ms())?)
            } else {
                None
            };
            let wf_md = wf.as_ref().map(|w| walk_forward_markdown(w, &params));
            if let Some(w) = &wf {
                json.insert("walk_forward".to_owned(), walk_forward_json(w)?);
            }
            let metrics_json = serde_json::to_vec_pretty(&headline::headline(&json))?;
            let detail_json = serde_json::to_vec_pretty(&serde_json::Value::Object(json))?;
            let md = markdown(&e, &decision, &info, &params.data.symbol, wf_md.as_deref());
            let mut csv = format!("ts,realized,{}\n", forecaster_names(&e.forecasts));
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
            out.put("metrics_detail.json", &detail_json)?;
            out.put("metrics.json", &metrics_json)?;
            out.put("evaluation.md", md.as_bytes())?;
            out.put("predictions.csv", csv.as_bytes())?;
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
                let (pooled, points) = walk_forward_metrics(w);
                values.extend(pooled);
                run.log_metrics(&points)?;
            }
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
                (
                    "walk_forward_folds".to_owned(),
                    params.evaluate.walk_forward_folds.to_string(),
                ),
                (
                    "walk_forward_test_fraction".to_owned(),
                    params.evaluate.walk_forward_test_fraction.to_string(),
                ),
                (
                    "walk_forward_window".to_owned(),
                    format!("{:?}", params.evaluate.walk_forward_window).to_lowercase(),
                ),
            ])?;
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
    let png = signal::accuracy_png(&e, &params.data.symbol)?;
    out.put("predictions.png", &png)?;
    let mut values = signal::logged_values(&e);
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

#[allow(clippy::print_stdout)]
fn print_table(md: &str) {
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

/// The current champion, as far as it can be compared with the challenger.
enum Champion {
    /// No champion yet (or one that cannot score these features): the challenger is judged alone.
    None,
    /// The champion's version and loss on the challenger's test rows.
    Scored(u32, f64),
    /// A champion trained on another dataset (symbol or source), and how they differ.
    Incomparable(u32, String),
}

/// How a champion trained on `champion`'s dataset differs from the challenger's (`challenger`):
/// another symbol, or another source (schemas written before the source was recorded compare
/// on the symbol alone). `None` when they are the same dataset.
pub fn incomparable(champion: &FeatureSchema, challenger: &FeatureSchema) -> Option<String> {
    let what = |s: &FeatureSchema| {
        if s.source.is_empty() {
            s.symbol.clone()
        } else {
            format!("{} from {}", s.symbol, s.source)
        }
    };
    let other_source = !champion.source.is_empty()
        && !challenger.source.is_empty()
        && champion.source != challenger.source;
    (champion.symbol != challenger.symbol || other_source).then(|| {
        format!(
            "was trained on {}, this model on {}",
            what(champion),
            what(challenger)
        )
    })
}

/// The current champion's loss on the same test rows, if there is a champion trained on the
/// same dataset that can score these features.
fn champion_loss(
    registry: &dyn Registry,
    name: &str,
    params: &Params,
    ds: &Dataset,
    schema: &FeatureSchema,
    metric: PrimaryMetric,
) -> Result<Champion, EvaluateError> {
    let Some(v) = registry.alias(name, "champion")? else {
        return Ok(Champion::None);
    };
    let loaded = registry.load(name, v)?;
    if let Some(why) = incomparable(&loaded.files.schema, schema) {
        return Ok(Champion::Incomparable(v, why));
    }
    let champ = loaded.model.into_volatility()?;
    match evaluate(params, ds, &champ) {
        Ok(e) => Ok(e
            .score("model")
            .map_or(Champion::None, |s| Champion::Scored(v, loss(s, metric)))),
        Err(EvaluateError::FeatureMismatch { .. }) => {
            tracing::warn!(
                "champion v{v} was trained on other features and cannot score this dataset; the challenger is judged alone"
            );
            Ok(Champion::None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn models_of_other_symbols_or_sources_are_not_comparable() {
        let schema = |symbol: &str, source: &str| FeatureSchema {
            version: FeatureSchema::VERSION,
            symbol: symbol.to_owned(),
            source: source.to_owned(),
            bar: "1h".to_owned(),
            features: Vec::new(),
            feature_params: Default::default(),
            target: Default::default(),
            reference: Vec::new(),
            rows: BTreeMap::new(),
            first_ts: 0,
            last_ts: 0,
            data_hash: String::new(),
        };
        let file = schema("BTC-USD", "file");
        assert_eq!(incomparable(&file, &schema("BTC-USD", "file")), None);
        assert_eq!(
            incomparable(&file, &schema("BTC-USD", "synthetic")).as_deref(),
            Some("was trained on BTC-USD from file, this model on BTC-USD from synthetic")
        );
        assert!(incomparable(&file, &schema("ETH-USD", "file")).is_some());
        // A schema from before the source was recorded compares on the symbol alone.
        assert_eq!(incomparable(&schema("BTC-USD", ""), &file), None);
        assert!(incomparable(&schema("ETH-USD", ""), &file).is_some());
    }
    use rps_core::Interval;
    use rps_core::params::TargetTransform;
    use rps_core::synthetic::{SyntheticParams, simulate};

    const HOUR: i64 = 3_600_000;

    /// A synthetic hourly dataset through the transform stage's own code, and params for a fast
    /// walk-forward over it.
    fn synthetic() -> (Params, Dataset) {
        let bars = simulate(&SyntheticParams::default(), Interval::H1, 0, 2400 * HOUR);
        let mut params = Params::default();
        params.train.num_boost_round = 60;
        params.train.early_stopping_rounds = 10;
        params.train.target_transform = TargetTransform::Power;
        params.train.power_grid = vec![1.0, 2.0];
        params.train.base_margin = vec!["har_1b".into(), "har_24b".into()];
        params.evaluate.walk_forward_folds = 3;
        params.evaluate.walk_forward_test_fraction = 0.3;
        let (ds, _) = rps_transform::transform(&params, &bars, "synthetic").unwrap();
        (params, ds)
    }

    #[test]
    fn walk_forward_scores_every_forecaster_on_every_fold() {
        let (params, ds) = synthetic();
        let wf = walk_forward(&params, &ds, HOUR).unwrap();
        assert_eq!(wf.folds.len(), 3);
        let names: Vec<&str> = wf.pooled.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["model", "persistence", "ewma", "har_rv", HAR_LOG]);
        let mut n = 0;
        let mut last_ts = i64::MIN;
        for f in &wf.folds {
            assert!(f.ts[0] > last_ts, "folds in time order, no overlap");
            last_ts = *f.ts.last().unwrap();
            assert!(f.train_rows > 0 && f.validation_rows > 0);
            assert!(f.power == Some(1.0) || f.power == Some(2.0));
            for (_, s) in &f.scores {
                assert_eq!(s.n, f.realized.len(), "the same rows for every forecaster");
                assert!(s.qlike.is_finite() && s.r2_log.is_finite());
            }
            n += f.realized.len();
        }
        // The pooled scores are those of the concatenated test blocks.
        for (name, s) in &wf.pooled {
            assert_eq!(s.n, n);
            let j = wf.folds[0]
                .forecasts
                .iter()
                .position(|(x, _)| x == name)
                .unwrap();
            let y: Vec<f64> = wf.folds.iter().flat_map(|f| f.realized.clone()).collect();
            let h: Vec<f64> = wf
                .folds
                .iter()
                .flat_map(|f| f.forecasts[j].1.clone())
                .collect();
            assert_eq!(*s, metrics::score(&y, &h));
        }
        assert!(wf.dm_vs_har.statistic.is_finite());
        let v = wf.verdict().unwrap();
        let best = wf
            .pooled
            .iter()
            .skip(1)
            .map(|(_, s)| s.qlike)
            .fold(f64::INFINITY, f64::min);
        assert!((v.qlike_gain - (1.0 - wf.pooled[0].1.qlike / best)).abs() < 1e-12);
        // The R² (log) bar is the better of HAR-RV's two forecasts; the log-scale one is the
        // same fit without the smearing (> 1), so it sits below the level forecast.
        let r2 = |name: &str| wf.pooled_score(name).unwrap().r2_log;
        let bar = r2("har_rv").max(r2(HAR_LOG));
        assert!((v.r2_log_vs_har - (r2("model") - bar)).abs() < 1e-12);
        for f in &wf.folds {
            let h = |name: &str| &f.forecasts.iter().find(|(n, _)| n == name).unwrap().1;
            assert!(h("har_rv").iter().zip(h(HAR_LOG)).all(|(a, b)| a >= b));
        }
        assert_eq!(
            v.passed,
            v.qlike_gain >= QLIKE_GAIN_REQUIRED && v.r2_log_vs_har >= 0.0
        );

        let md = walk_forward_markdown(&wf, &params);
        assert!(md.contains("## Walk-forward: 3 folds"), "{md}");
        assert!(md.contains("| forecaster | QLIKE"));
        assert!(md.contains("| 3 |"), "a row per fold");
        for k in 0..3 {
            assert!(md.contains(&format!("]({})", fold_png(k))));
        }
        let json = walk_forward_json(&wf).unwrap();
        assert_eq!(json["folds"].as_array().unwrap().len(), 3);
        assert!(json["pooled"]["har_rv"]["qlike"].is_number());
        assert!(json["verdict"]["passed"].is_boolean());
        let csv = walk_forward_csv(&wf);
        assert_eq!(csv.lines().count(), n + 1);
        let (values, points) = walk_forward_metrics(&wf);
        assert!(values.iter().any(|(k, _)| k == "wf_model_qlike"));
        assert_eq!(
            points
                .iter()
                .filter(|p| p.key == "wf_fold_model_qlike")
                .count(),
            3,
            "one point per fold"
        );
    }

    #[test]
    fn walk_forward_refuses_impossible_folds() {
        let (mut params, ds) = synthetic();
        params.evaluate.walk_forward_folds = 500;
        assert!(matches!(
            walk_forward(&params, &ds, HOUR),
            Err(EvaluateError::WalkForward(_))
        ));
    }

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
