//! The walk-forward evaluation: expanding window, retrained per fold, purge gap.

use crate::*;
use rps_core::metrics::{DieboldMariano, Scores};
use rps_core::params::Params;
use rps_model::{Rows, VolatilityModel};
use rps_store::frame::Dataset;

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

/// Gather the targets and the model's rows for `idx`.
pub(crate) fn gather(ds: &Dataset, idx: &[usize]) -> (Rows, Vec<f64>) {
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
        test_start: ev.walk_forward_test_start_ms(),
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
