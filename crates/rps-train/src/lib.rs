//! `rps-train`: fit the volatility model on the training split with early stopping on the
//! validation split, save it in XGBoost's format, and register it as a new model version.

use clap::Parser;
use rps_cli::{CommonArgs, Home, StageError, exit};
use rps_core::metrics;
use rps_core::split::Split;
use rps_model::{Rows, VolatilityModel};
use rps_tracking::{MetricPoint, ModelFiles, VersionInfo};
use std::collections::BTreeMap;

/// Train the volatility model and register it as a new version.
///
/// Hyper-parameters come from `train.xgboost` in params.yaml under XGBoost's own names
/// (eta, max_depth, subsample, …); `train.target_transform` picks what the booster learns
/// (log volatility, variance with a gamma objective, or volatility). Writes the model
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
    /// Where to write the trained model (default: <home>/models/candidate).
    #[arg(long)]
    pub out: Option<String>,
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
}

impl StageError for TrainError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Params(_)
            | Self::Model(
                rps_model::ModelError::Params(_)
                | rps_model::ModelError::UnknownFeature { .. }
                | rps_model::ModelError::MarginTransform
                | rps_model::ModelError::Power(_)
                | rps_model::ModelError::GridWithoutMargin,
            ) => exit::CONFIG,
            Self::Frame(
                rps_store::frame::FrameError::Store(rps_store::StoreError::NotFound { .. })
                | rps_store::frame::FrameError::Mismatch { .. },
            ) => exit::INPUT,
            Self::Model(_) => exit::MODEL,
            Self::Tracking(e) if e.is_remote() => exit::REMOTE,
            Self::Frame(_) | Self::Store(_) | Self::Tracking(_) | Self::Json(_) => exit::STORAGE,
        }
    }
}

/// Run the stage.
pub fn run(args: &Args) -> Result<(), TrainError> {
    let params = rps_cli::load_params(&args.common.params)?;
    let home = Home::new(&args.common.home);
    let features = args
        .features
        .clone()
        .unwrap_or_else(|| home.features(&params.data.symbol));
    let out_uri = args.out.clone().unwrap_or_else(|| home.candidate());
    let tracker = home.tracker()?;
    let registry = home.registry()?;
    let features_store = rps_store::open(&features)?;
    let data_tags = rps_cli::data_tags(features_store.as_ref());
    let (ds, schema) = rps_store::frame::read(features_store.as_ref())?;
    let git_commit = rps_cli::git_commit();
    let mut tags = BTreeMap::from([
        ("git_commit".to_owned(), git_commit.clone()),
        ("stage".to_owned(), "train".to_owned()),
        ("data_hash".to_owned(), schema.data_hash.clone()),
    ]);
    tags.extend(data_tags);
    rps_tracking::with_run(tracker.as_ref(), "train", &tags, |run| {
        let tr = ds.rows(Split::Train);
        let va = ds.rows(Split::Validation);
        let f = &ds.frame;
        let y = |idx: &[usize]| idx.iter().map(|&i| f.target[i]).collect::<Vec<f64>>();
        let (xt, yt) = (Rows::gather(&f.columns, &tr), y(&tr));
        let (xv, yv) = (Rows::gather(&f.columns, &va), y(&va));
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
            ("train_rows".to_owned(), tr.len().to_string()),
            ("validation_rows".to_owned(), va.len().to_string()),
        ]);
        run.log_params(&logged)?;
        tracing::info!(
            "training on {} rows, early stopping on {} validation rows",
            tr.len(),
            va.len()
        );
        let (model, history) = VolatilityModel::train(
            tp,
            &schema.features,
            params.target.floor,
            (&xt, &yt),
            (&xv, &yv),
        )?;
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
        let pred = model.predict(&xv)?;
        let s = metrics::score(&yv, &pred);
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
        run.log_values(
            &final_metrics
                .iter()
                .map(|(k, v)| (k.as_str(), *v))
                .collect::<Vec<_>>(),
        )?;
        let files = ModelFiles::from_model(&model, &schema)?;
        let out = rps_store::open(&out_uri)?;
        files.write(out.as_ref(), "")?;
        let importance = serde_json::to_vec_pretty(&model.importance())?;
        out.put("feature_importance.json", &importance)?;
        out.put(
            "train_metrics.json",
            &serde_json::to_vec_pretty(&serde_json::json!({
                "validation": s,
                "best_iteration": best,
                "power": model.meta.power,
                "power_selection": model.meta.selection,
                "base_margin": model.meta.margin,
                "smearing": model.meta.smearing,
                "history": history,
            }))?,
        )?;
        for name in [rps_model::XGB_JSON, rps_model::META, "schema.json"] {
            run.log_artifact(&format!("model/{name}"), &out.get(name)?)?;
        }
        run.log_artifact("feature_importance.json", &importance)?;
        let info = VersionInfo {
            name: tp.model_name.clone(),
            version: 0,
            created_at: chrono::Utc::now().to_rfc3339(),
            run_id: run.id().to_owned(),
            data_hash: schema.data_hash.clone(),
            git_commit: git_commit.clone(),
            metrics: final_metrics,
        };
        let version = registry.register(&files, info.clone())?;
        let info = VersionInfo { version, ..info };
        out.put("version.json", &serde_json::to_vec_pretty(&info)?)?;
        run.set_tags(&[
            ("model_name".to_owned(), tp.model_name.clone()),
            ("model_version".to_owned(), version.to_string()),
        ])?;
        tracing::info!(
            "trained {} trees (best iteration {best}{}); validation QLIKE {:.4}, R²(log) {:.4}; registered {} v{version} in {}; files in {}",
            model.meta.num_trees,
            model
                .meta
                .power
                .map_or_else(String::new, |k| format!(", power k = {k}")),
            s.qlike,
            s.r2_log,
            tp.model_name,
            registry.describe(),
            out.uri("")
        );
        Ok(())
    })
}
