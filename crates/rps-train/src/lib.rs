//! `rps-train`: fit the volatility model on the training split with early stopping on the
//! validation split, save it in XGBoost's format, and register it as a new model version.
//!
//! With `train.task: signal` the same rows train a Buy/Hold/Sell classifier instead
//! (`multi:softprob`, classes 0 sell, 1 hold, 2 buy; labels by `rps_core::signal::label` from
//! the bar closes transform writes into the features, see `rps_core::signal::columns`),
//! registered under
//! `train.signal_model_name`.

use clap::Parser;
use rps_cli::{CommonArgs, Home, StageError, exit};
use rps_core::metrics;
use rps_core::params::{Params, Task};
use rps_core::schema::FeatureSchema;
use rps_core::signal::SignalColumns;
use rps_core::signal::{self, Signal};
use rps_core::split::Split;
use rps_model::{History, Rows, SignalModel, VolatilityModel};
use rps_store::frame::Dataset;
use rps_tracking::{MetricPoint, ModelFiles, VersionInfo};
use std::collections::BTreeMap;

/// Train the volatility model (or, with `train.task: signal`, the Buy/Hold/Sell model) and
/// register it as a new version.
///
/// Hyper-parameters come from `train.xgboost` in params.yaml under XGBoost's own names
/// (eta, max_depth, subsample, …); `train.target_transform` picks what the booster learns
/// (log volatility, variance with a gamma objective, or volatility). The signal task fixes
/// objective multi:softprob, num_class 3 (0 sell, 1 hold, 2 buy) and eval_metric mlogloss, and
/// labels rows from the features' bar closes with `signal.horizon` and `signal.threshold`. Writes the model
/// (model.json and model.ubj in XGBoost's format, meta.json, schema.json) and
/// train_metrics.json to --out, and a new version to the registry.
#[derive(Debug, Parser)]
#[command(name = "rps-train", version, after_help = exit::HELP)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The feature dataset (default: <home>/data/features/<symbol>).
    #[arg(long)]
    pub features: Option<String>,
    /// Where to write the trained model (default: <home>/models/candidate, or
    /// <home>/models/<symbol>/candidate when params.yaml lists several symbols).
    #[arg(long)]
    pub out: Option<String>,
    /// Ignored, kept so existing invocations still parse: the signal task's labels now come from
    /// the `close` column of the features.
    #[arg(long, hide = true)]
    pub raw: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
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
    #[error("could not encode JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("signal labels: {0}")]
    Labels(#[from] rps_store::frame::LabelError),
    #[error(
        "signal.horizon ({horizon}) exceeds split.gap ({gap}): labels would look into the next split"
    )]
    SignalHorizon { horizon: usize, gap: usize },
    #[error(
        "train.pooling: pooled trains one model over every symbol of data.symbols; run rps train without --symbol (got {0:?}) and without RPS_SYMBOL. Under DVC, the per-symbol train@<symbol> stages of dvc.yaml are for train.pooling: per_symbol: run `dvc repro pooled/dvc.yaml` (each symbol's extract, quality and transform, then one pooled train and evaluate)"
    )]
    PooledSymbol(String),
    #[error(
        "train.pooling: pooled reads every symbol's features: --features must contain {{symbol}} (e.g. .rps/data/features/{{symbol}}), got {0:?}"
    )]
    PooledFeatures(String),
    #[error(
        "train.pooling: pooled needs the same feature columns for every symbol, but {first} has {expected:?} and {symbol} has {found:?} (features.flow: auto builds the order-flow features only where the data has trades and taker-buy volume: set features.flow: off)"
    )]
    PooledColumns {
        first: String,
        symbol: String,
        expected: Vec<String>,
        found: Vec<String>,
    },
    #[error(
        "train.pooling: pooled needs every symbol's features on one bar, but {first} has {expected} and {symbol} has {found}"
    )]
    PooledBar {
        first: String,
        symbol: String,
        expected: String,
        found: String,
    },
    #[error("{0}")]
    Input(#[from] rps_core::pooling::InputError),
    #[error(
        "--features {0:?} holds {{symbol}}, which only train.pooling: pooled reads (every symbol's features: pooled/dvc.yaml passes it); params.yaml has train.pooling: per_symbol: set train.pooling: pooled, or under DVC run the per-symbol stages with `dvc repro` (dvc.yaml)"
    )]
    SymbolTemplateNotPooled(String),
}

impl StageError for TrainError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Labels(e) if e.is_input() => exit::INPUT,
            Self::Labels(_) => exit::CONFIG,
            Self::SignalHorizon { .. }
            | Self::PooledSymbol(_)
            | Self::PooledFeatures(_)
            | Self::PooledColumns { .. }
            | Self::PooledBar { .. }
            | Self::SymbolTemplateNotPooled(_)
            | Self::Input(_) => exit::CONFIG,
            Self::Params(_)
            | Self::Model(
                rps_model::ModelError::Params(_)
                | rps_model::ModelError::UnknownFeature { .. }
                | rps_model::ModelError::MarginTransform
                | rps_model::ModelError::Power(_)
                | rps_model::ModelError::GridWithoutMargin,
            ) => exit::CONFIG,
            // Bad or torn inputs (a truncated features.parquet, a schema.json that is not JSON)
            // are input errors; a store that fails to read or write is storage.
            Self::Frame(e) if e.is_input() => exit::INPUT,
            Self::Model(_) => exit::MODEL,
            Self::Tracking(e) if e.is_remote() => exit::REMOTE,
            Self::Tracking(e) if e.is_input() => exit::INPUT,
            Self::Frame(_) | Self::Store(_) | Self::Tracking(_) | Self::Json(_) => exit::STORAGE,
        }
    }
}

/// This stage's name, in "rerun …" messages of readers of its output.
pub const STAGE: &str = "rps-train";

/// What a fit hands to the shared tail of the stage (files, registration).
struct Fitted {
    files: ModelFiles,
    importance: BTreeMap<String, f64>,
    final_metrics: BTreeMap<String, f64>,
    train_metrics: serde_json::Value,
    /// The first half of the closing log line.
    summary: String,
}

fn log_history(run: &mut dyn rps_tracking::Run, history: &History) -> Result<(), TrainError> {
    let now = chrono::Utc::now().timestamp_millis();
    let mut points = Vec::new();
    for (step, (t, v)) in history.train.iter().zip(&history.validation).enumerate() {
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        points.push(MetricPoint {
            key: format!("train_{}", history.metric),
            value: *t,
            step,
            timestamp_ms: now,
        });
        points.push(MetricPoint {
            key: format!("validation_{}", history.metric),
            value: *v,
            step,
            timestamp_ms: now,
        });
    }
    run.log_metrics(&points)?;
    Ok(())
}

fn log_values(
    run: &mut dyn rps_tracking::Run,
    values: &BTreeMap<String, f64>,
) -> Result<(), TrainError> {
    run.log_values(
        &values
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect::<Vec<_>>(),
    )?;
    Ok(())
}

/// The rows a volatility model is fitted on: one symbol's, or every symbol's stacked (pooled).
struct TrainingRows {
    xt: Rows,
    yt: Vec<f64>,
    xv: Rows,
    yv: Vec<f64>,
    /// Pooled: each symbol's share of the validation rows (a range of `xv`), scored apart.
    validation_by_symbol: Vec<(String, std::ops::Range<usize>)>,
    /// What a pooled run logs beside the knobs (`pooling`, `symbols`, rows per symbol).
    logged: Vec<(String, String)>,
}

impl TrainingRows {
    /// One symbol's training and validation rows.
    fn of(ds: &Dataset) -> Self {
        let tr = ds.rows(Split::Train);
        let va = ds.rows(Split::Validation);
        let f = &ds.frame;
        let y = |idx: &[usize]| idx.iter().map(|&i| f.target[i]).collect::<Vec<f64>>();
        Self {
            xt: Rows::gather(&f.columns, &tr),
            yt: y(&tr),
            xv: Rows::gather(&f.columns, &va),
            yv: y(&va),
            validation_by_symbol: Vec::new(),
            logged: Vec::new(),
        }
    }
}

/// The volatility task.
fn fit_volatility(
    run: &mut dyn rps_tracking::Run,
    params: &Params,
    rows: &TrainingRows,
    schema: &FeatureSchema,
) -> Result<Fitted, TrainError> {
    let TrainingRows { xt, yt, xv, yv, .. } = rows;
    let tp = &params.train;
    let mut logged: Vec<(String, String)> = tp
        .xgboost
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string().trim_matches('"').to_owned()))
        .collect();
    logged.extend([
        (
            "target_transform".to_owned(),
            format!("{:?}", tp.target_transform).to_lowercase(),
        ),
        ("num_boost_round".to_owned(), tp.num_boost_round.to_string()),
        ("power".to_owned(), tp.power.to_string()),
        ("power_grid".to_owned(), format!("{:?}", tp.power_grid)),
        ("base_margin".to_owned(), tp.base_margin.join(",")),
        (
            "calibration".to_owned(),
            format!("{:?}", tp.calibration).to_lowercase(),
        ),
        (
            "early_stopping_rounds".to_owned(),
            tp.early_stopping_rounds.to_string(),
        ),
        ("engine".to_owned(), rps_model::ENGINE.to_owned()),
        ("train_rows".to_owned(), yt.len().to_string()),
        ("validation_rows".to_owned(), yv.len().to_string()),
    ]);
    logged.extend(rows.logged.iter().cloned());
    run.log_params(&logged)?;
    tracing::info!(
        "training on {} rows, early stopping on {} validation rows",
        yt.len(),
        yv.len()
    );
    let (model, history) = VolatilityModel::train(
        tp,
        &schema.features,
        params.target.floor,
        (xt, yt),
        (xv, yv),
    )?;
    log_history(run, &history)?;
    let pred = model.predict(xv)?;
    let s = metrics::score(yv, &pred);
    let best = model.meta.best_iteration.unwrap_or(0);
    let mut final_metrics = BTreeMap::from([
        ("validation_qlike".to_owned(), s.qlike),
        ("validation_rmse".to_owned(), s.rmse),
        ("validation_mae".to_owned(), s.mae),
        ("validation_r2".to_owned(), s.r2),
        ("validation_r2_log".to_owned(), s.r2_log),
        ("best_iteration".to_owned(), best as f64),
    ]);
    if let Some(k) = model.meta.power {
        final_metrics.insert("power".to_owned(), k);
    }
    let mut by_symbol = BTreeMap::new();
    for (symbol, range) in &rows.validation_by_symbol {
        let ss = metrics::score(&yv[range.clone()], &pred[range.clone()]);
        tracing::info!(
            "{symbol}: validation QLIKE {:.4}, R²(log) {:.4} on {} rows",
            ss.qlike,
            ss.r2_log,
            range.len()
        );
        final_metrics.insert(format!("validation_qlike_{symbol}"), ss.qlike);
        final_metrics.insert(format!("validation_r2_log_{symbol}"), ss.r2_log);
        by_symbol.insert(symbol.clone(), ss);
    }
    log_values(run, &final_metrics)?;
    let summary = format!(
        "trained {} trees (best iteration {best}{}); validation QLIKE {:.4}, R²(log) {:.4}",
        model.meta.num_trees,
        model
            .meta
            .power
            .map_or_else(String::new, |k| format!(", power k = {k}")),
        s.qlike,
        s.r2_log,
    );
    Ok(Fitted {
        files: ModelFiles::from_model(&model, schema)?,
        importance: model.importance(),
        final_metrics,
        train_metrics: serde_json::json!({
            "validation": s,
            "validation_by_symbol": by_symbol,
            "best_iteration": best,
            "power": model.meta.power,
            "power_selection": model.meta.selection,
            "base_margin": model.meta.margin,
            "smearing": model.meta.smearing,
            "history": history,
        }),
        summary,
    })
}

/// Rows of `which` that have a signal label, and their labels.
pub fn labelled(
    ds: &Dataset,
    which: Split,
    labels: &[Option<Signal>],
) -> (Vec<usize>, Vec<Signal>) {
    ds.rows(which)
        .into_iter()
        .filter_map(|i| labels[i].map(|l| (i, l)))
        .unzip()
}

/// Class counts (sell, hold, buy).
fn counts(y: &[Signal]) -> [usize; 3] {
    let mut c = [0; 3];
    for s in y {
        c[s.index()] += 1;
    }
    c
}

/// The signal task: the same feature rows, Buy/Hold/Sell labels, `multi:softprob`.
fn fit_signal(
    run: &mut dyn rps_tracking::Run,
    params: &Params,
    ds: &Dataset,
    schema: &FeatureSchema,
    cols: &SignalColumns,
) -> Result<Fitted, TrainError> {
    let (tr, yt) = labelled(ds, Split::Train, &cols.labels);
    let (va, yv) = labelled(ds, Split::Validation, &cols.labels);
    let f = &ds.frame;
    let (xt, xv) = (Rows::gather(&f.columns, &tr), Rows::gather(&f.columns, &va));
    let tp = &params.train;
    let sp = &params.signal;
    let (ct, cv) = (counts(&yt), counts(&yv));
    let mut logged: Vec<(String, String)> = tp
        .xgboost
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string().trim_matches('"').to_owned()))
        .collect();
    logged.extend([
        ("task".to_owned(), Task::Signal.as_str().to_owned()),
        ("objective".to_owned(), "multi:softprob".to_owned()),
        ("num_class".to_owned(), rps_model::NUM_CLASS.to_string()),
        ("classes".to_owned(), signal::class_names().join(",")),
        ("signal_horizon".to_owned(), sp.horizon.to_string()),
        ("signal_threshold".to_owned(), sp.threshold.to_string()),
        ("num_boost_round".to_owned(), tp.num_boost_round.to_string()),
        (
            "early_stopping_rounds".to_owned(),
            tp.early_stopping_rounds.to_string(),
        ),
        ("engine".to_owned(), rps_model::ENGINE.to_owned()),
        ("train_rows".to_owned(), tr.len().to_string()),
        ("validation_rows".to_owned(), va.len().to_string()),
    ]);
    run.log_params(&logged)?;
    tracing::info!(
        "training the signal model on {} rows (sell/hold/buy {}/{}/{}), early stopping on {} validation rows",
        tr.len(),
        ct[0],
        ct[1],
        ct[2],
        va.len()
    );
    let (model, history) = SignalModel::train(tp, sp, &schema.features, (&xt, &yt), (&xv, &yv))?;
    log_history(run, &history)?;
    let s = signal::score(&yv, &model.predict(&xv)?);
    let best = model.meta.best_iteration.unwrap_or(0);
    let best_loss = history.validation.get(best).copied().unwrap_or(f64::NAN);
    let mut final_metrics = BTreeMap::from([
        ("validation_accuracy".to_owned(), s.accuracy),
        ("validation_macro_f1".to_owned(), s.macro_f1),
        ("validation_mlogloss".to_owned(), best_loss),
        ("best_iteration".to_owned(), best as f64),
    ]);
    for (c, cs) in Signal::ALL.iter().zip(&s.per_class) {
        final_metrics.insert(format!("validation_f1_{}", c.as_str()), cs.f1);
    }
    log_values(run, &final_metrics)?;
    let summary = format!(
        "trained the signal model: {} trees (best iteration {best}); validation mlogloss {best_loss:.4}, accuracy {:.4}, macro F1 {:.4}",
        model.meta.num_trees, s.accuracy, s.macro_f1,
    );
    Ok(Fitted {
        files: ModelFiles::from_signal_model(&model, schema)?,
        importance: model.importance(),
        final_metrics,
        train_metrics: serde_json::json!({
            "task": "signal",
            "classes": signal::class_names(),
            "horizon": sp.horizon,
            "threshold": sp.threshold,
            "class_counts": {"train": ct, "validation": cv},
            "validation": s,
            "best_iteration": best,
            "history": history,
        }),
        summary,
    })
}

/// Run the stage.
pub fn run(args: &Args) -> Result<(), TrainError> {
    let set = args.common.load_param_set()?;
    if set.shared().train.pooling.is_pooled() {
        return run_pooled(args, &set);
    }
    if let Some(f) = args.features.as_deref().filter(|f| f.contains("{symbol}")) {
        return Err(TrainError::SymbolTemplateNotPooled(f.to_owned()));
    }
    let params = set.into_selected()?;
    let home = Home::for_params(&args.common.home, &params);
    let features = args
        .features
        .clone()
        .unwrap_or_else(|| home.features(&params.data.symbol));
    let out_uri = args.out.clone().unwrap_or_else(|| home.candidate());
    let features_store = rps_store::open(&features)?;
    let data_tags = rps_cli::data_tags(features_store.as_ref());
    let (ds, schema) = rps_store::frame::read(features_store.as_ref())?;
    let signal_cols = match params.train.task {
        Task::Volatility => None,
        Task::Signal => {
            if params.signal.horizon > params.split.gap {
                return Err(TrainError::SignalHorizon {
                    horizon: params.signal.horizon,
                    gap: params.split.gap,
                });
            }
            Some(ds.signal_columns(&schema, &params.signal)?)
        }
    };
    let mut tags = BTreeMap::new();
    if signal_cols.is_some() {
        tags.insert("task".to_owned(), Task::Signal.as_str().to_owned());
    }
    tags.extend(data_tags);
    register(
        &home,
        &params,
        &out_uri,
        &schema,
        tags,
        |run| match &signal_cols {
            None => fit_volatility(run, &params, &TrainingRows::of(&ds), &schema),
            Some(cols) => fit_signal(run, &params, &ds, &schema, cols),
        },
    )
}

/// `train.pooling: pooled`: one model over every symbol's feature dataset, the rows stacked in
/// the order of data.symbols, each with its symbol's one-hot ([`rps_core::pooling`]); one
/// candidate (`<home>/models/pooled/candidate`) and one registered version. Validation metrics
/// are logged over all rows and per symbol (`validation_qlike_<SYMBOL>`, …).
fn run_pooled(args: &Args, set: &rps_cli::ParamSet) -> Result<(), TrainError> {
    if let Some(s) = args.common.symbol.as_deref().filter(|s| !s.is_empty()) {
        return Err(TrainError::PooledSymbol(s.to_owned()));
    }
    let params = set.shared().clone();
    let symbols: Vec<String> = set.symbols().iter().map(|s| (*s).to_owned()).collect();
    let home = Home::pooled(&args.common.home);
    let template = args
        .features
        .clone()
        .unwrap_or_else(|| home.features("{symbol}"));
    if !template.contains("{symbol}") {
        return Err(TrainError::PooledFeatures(template));
    }
    let out_uri = args.out.clone().unwrap_or_else(|| home.candidate());
    let mut read = Vec::with_capacity(symbols.len());
    for symbol in &symbols {
        let store = rps_store::open(&template.replace("{symbol}", symbol))?;
        let (ds, schema) = rps_store::frame::read(store.as_ref())?;
        read.push((symbol, ds, schema));
    }
    let (first, _, first_schema) = &read[0];
    for (symbol, _, schema) in &read[1..] {
        if schema.features != first_schema.features {
            return Err(TrainError::PooledColumns {
                first: (*first).clone(),
                symbol: (*symbol).clone(),
                expected: first_schema.features.clone(),
                found: schema.features.clone(),
            });
        }
        if schema.bar != first_schema.bar {
            return Err(TrainError::PooledBar {
                first: (*first).clone(),
                symbol: (*symbol).clone(),
                expected: first_schema.bar.clone(),
                found: schema.bar.clone(),
            });
        }
    }
    let mut names = first_schema.features.clone();
    names.extend(rps_core::pooling::one_hot_names(&symbols));
    let mut parts = Vec::with_capacity(read.len());
    let mut rows_per_split: BTreeMap<String, usize> = BTreeMap::new();
    let mut logged = vec![
        ("pooling".to_owned(), "pooled".to_owned()),
        ("symbols".to_owned(), symbols.join(",")),
    ];
    for (symbol, ds, schema) in &read {
        let columns =
            rps_core::pooling::with_one_hot(&ds.frame.columns, ds.frame.len(), &symbols, symbol)?;
        let (tr, va) = (ds.rows(Split::Train), ds.rows(Split::Validation));
        logged.push((format!("train_rows_{symbol}"), tr.len().to_string()));
        logged.push((format!("validation_rows_{symbol}"), va.len().to_string()));
        for (k, v) in &schema.rows {
            *rows_per_split.entry(k.clone()).or_default() += v;
        }
        parts.push((columns, &ds.frame.target, tr, va));
    }
    let mut validation_by_symbol = Vec::with_capacity(parts.len());
    let mut at = 0;
    for ((symbol, _, _), (_, _, _, va)) in read.iter().zip(&parts) {
        validation_by_symbol.push(((*symbol).clone(), at..at + va.len()));
        at += va.len();
    }
    let train: Vec<rps_model::Part<'_>> = parts
        .iter()
        .map(|(c, t, tr, _)| (c.as_slice(), t.as_slice(), tr.as_slice()))
        .collect();
    let validation: Vec<rps_model::Part<'_>> = parts
        .iter()
        .map(|(c, t, _, va)| (c.as_slice(), t.as_slice(), va.as_slice()))
        .collect();
    let (xt, yt) = Rows::stack_parts(&train);
    let (xv, yv) = Rows::stack_parts(&validation);
    let reference = names
        .iter()
        .enumerate()
        .map(|(j, name)| {
            let values: Vec<f64> = parts
                .iter()
                .flat_map(|(c, _, tr, _)| tr.iter().map(move |&i| c[j][i]))
                .collect();
            rps_core::stats::ColumnStats::compute(name, &values, 20)
        })
        .collect();
    let rows = TrainingRows {
        xt,
        yt,
        xv,
        yv,
        validation_by_symbol,
        logged,
    };
    let schema = FeatureSchema {
        symbol: symbols.join(","),
        features: names,
        reference,
        rows: rows_per_split,
        first_ts: read.iter().map(|(_, _, s)| s.first_ts).min().unwrap_or(0),
        last_ts: read.iter().map(|(_, _, s)| s.last_ts).max().unwrap_or(0),
        data_hash: read
            .iter()
            .map(|(sym, _, s)| format!("{sym}:{}", s.data_hash))
            .collect::<Vec<_>>()
            .join(","),
        symbols: symbols.clone(),
        ..first_schema.clone()
    };
    tracing::info!(
        "pooled training over {} ({} training rows)",
        symbols.join(", "),
        rows.yt.len()
    );
    let tags = BTreeMap::from([
        ("pooling".to_owned(), "pooled".to_owned()),
        ("symbols".to_owned(), symbols.join(",")),
    ]);
    register(&home, &params, &out_uri, &schema, tags, |run| {
        fit_volatility(run, &params, &rows, &schema)
    })
}

/// The shared tail of both paths: a tracked run around `fit`, the candidate folder at
/// `out_uri` and a new registry version of `train.registered_name()`.
fn register(
    home: &Home,
    params: &Params,
    out_uri: &str,
    schema: &FeatureSchema,
    extra_tags: BTreeMap<String, String>,
    fit: impl FnOnce(&mut dyn rps_tracking::Run) -> Result<Fitted, TrainError>,
) -> Result<(), TrainError> {
    let tracker = home.tracker()?;
    let registry = home.registry()?;
    let model_name = params.train.registered_name().to_owned();
    let git_commit = rps_cli::git_commit();
    let mut tags = BTreeMap::from([
        ("git_commit".to_owned(), git_commit.clone()),
        ("stage".to_owned(), "train".to_owned()),
        ("data_hash".to_owned(), schema.data_hash.clone()),
    ]);
    tags.extend(extra_tags);
    rps_tracking::with_run(tracker.as_ref(), "train", &tags, |run| {
        let fitted = fit(run)?;
        // The candidate folder is one output: every file, then the commit record listing each
        // file's hash (rps_store::commit). A train killed or out of space midway leaves a folder
        // readers refuse ("torn or in-progress output …; rerun rps-train"), never new model
        // files beside an old version.json.
        let out = rps_store::open(out_uri)?;
        let mut candidate = rps_store::commit::Writer::begin(out.as_ref(), STAGE)?;
        let model_files = fitted.files.encoded()?;
        for (name, bytes) in &model_files {
            candidate.put(name, bytes)?;
        }
        let importance = serde_json::to_vec_pretty(&fitted.importance)?;
        candidate.put("feature_importance.json", &importance)?;
        candidate.put(
            "train_metrics.json",
            &serde_json::to_vec_pretty(&fitted.train_metrics)?,
        )?;
        for (name, bytes) in &model_files {
            if *name != rps_model::XGB_UBJ {
                run.log_artifact(&format!("model/{name}"), bytes)?;
            }
        }
        run.log_artifact("feature_importance.json", &importance)?;
        let info = VersionInfo {
            name: model_name.clone(),
            version: 0,
            created_at: chrono::Utc::now().to_rfc3339(),
            run_id: run.id().to_owned(),
            data_hash: schema.data_hash.clone(),
            git_commit: git_commit.clone(),
            metrics: fitted.final_metrics,
        };
        let version = registry.register(&fitted.files, info.clone())?;
        let info = VersionInfo { version, ..info };
        candidate.put("version.json", &serde_json::to_vec_pretty(&info)?)?;
        candidate.commit()?;
        run.set_tags(&[
            ("model_name".to_owned(), model_name.clone()),
            ("model_version".to_owned(), version.to_string()),
        ])?;
        tracing::info!(
            "{}; registered {model_name} v{version} in {}; files in {}",
            fitted.summary,
            registry.describe(),
            out.uri("")
        );
        Ok(())
    })
}
