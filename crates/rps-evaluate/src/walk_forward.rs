//! The walk-forward evaluation: expanding window, retrained per fold, purge gap.

use crate::*;
use rps_core::distribution::{
    IntervalScores, central_levels, level_suffix, normal_quantile, reliability, score_intervals,
};
use rps_core::metrics::{DieboldMariano, Scores, diebold_mariano, log_loss_one};
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
    /// The model's quantile forecasts (`model_q05` …), empty for a model without a
    /// distribution.
    pub quantiles: Vec<(String, Vec<f64>)>,
    /// The baselines' quantile forecasts at the model's levels (`har_rv_q05` …, `ewma_q05` …).
    pub baseline_quantiles: Vec<(String, Vec<f64>)>,
}

/// How the model's forecast distribution fared on the pooled test rows.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DistributionSummary {
    /// The 80 % and 90 % central intervals, pooled.
    pub intervals: Vec<IntervalScores>,
    /// Observed share of outcomes at or below each level's forecast.
    pub reliability: Vec<(f64, f64)>,
    /// Coverage of the 80 % interval in each tercile of the model's predicted volatility
    /// (calm, normal, turbulent).
    pub tercile_coverage_80: Vec<f64>,
}

/// Walk-forward evaluation: per-fold results and the pooled out-of-sample scores.
#[derive(Debug, Clone)]
pub struct WalkForward {
    pub folds: Vec<FoldResult>,
    /// Every fold's test rows together.
    pub pooled: Vec<(String, Scores)>,
    /// Model vs HAR-RV on the pooled QLIKE losses (in time order).
    pub dm_vs_har: DieboldMariano,
    /// The model's median (its mean without quantiles) vs HAR-RV's log-scale forecast on the
    /// pooled squared log errors: the log-scale counterpart of `dm_vs_har`.
    pub dm_log_vs_har: Option<DieboldMariano>,
    pub window: rps_core::walkforward::Window,
    /// The model's distribution and the baselines' intervals, by forecaster (`model`,
    /// `har_rv`, `ewma`); empty for a model without a distribution.
    pub distribution: Vec<(String, DistributionSummary)>,
}

impl WalkForward {
    pub fn pooled_score(&self, name: &str) -> Option<&Scores> {
        self.pooled.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }

    /// The acceptance rule `rule` applied to the pooled scores and the distribution.
    pub fn verdict(&self, rule: &rps_core::params::AcceptanceParams) -> Option<Verdict> {
        judge(self, rule)
    }
}

/// The baselines' quantile forecasts of the `test` rows at `levels`, from their log errors on
/// the rows they were fitted on (`seen`): HAR-RV's log-scale forecast times the empirical
/// quantiles of exp(residual) (`har_rv_q…`), and EWMA times a log-normal spread with the mean
/// and standard deviation of its log errors (`ewma_q…`, Gaussian quantiles on the log scale).
fn baseline_intervals(
    levels: &[f64],
    base: &[(String, Vec<f64>)],
    target: &[f64],
    seen: &[usize],
    test: &[usize],
) -> Vec<(String, Vec<f64>)> {
    let get = |n: &str| base.iter().find(|(m, _)| m == n).map(|(_, v)| v);
    let resid = |f: &[f64]| -> Vec<f64> {
        let mut r: Vec<f64> = seen
            .iter()
            .map(|&i| (target[i] / f[i]).ln())
            .filter(|v| v.is_finite())
            .collect();
        r.sort_by(f64::total_cmp);
        r
    };
    let mut out = Vec::new();
    if let Some(har) = get(HAR_LOG) {
        let r = resid(har);
        for &l in levels {
            let k = rps_core::stats::quantile_sorted(&r, l).exp();
            out.push((
                format!("har_rv_{}", level_suffix(l)),
                test.iter().map(|&i| har[i] * k).collect(),
            ));
        }
    }
    if let Some(ew) = get("ewma") {
        let r = resid(ew);
        let n = r.len().max(2) as f64;
        let mu = r.iter().sum::<f64>() / n;
        let sd = (r.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        for &l in levels {
            let k = (mu + sd * normal_quantile(l)).exp();
            out.push((
                format!("ewma_{}", level_suffix(l)),
                test.iter().map(|&i| ew[i] * k).collect(),
            ));
        }
    }
    out
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
    let f = &ds.frame;
    let plan = fold_plan(params, ds, bar_ms)?;
    let mut out = Vec::with_capacity(plan.len());
    for (k, fold) in plan.iter().enumerate() {
        let (xt, yt) = gather(ds, &fold.train);
        let (xv, yv) = gather(ds, &fold.validation);
        let (model, _) = VolatilityModel::train(
            &params.train,
            &f.names,
            params.target.floor,
            (&xt, &yt),
            (&xv, &yv),
        )?;
        let r = score_fold(params, ds, fold, &model)?;
        tracing::info!(
            "walk-forward fold {}/{}: {} train, {} validation, {} test rows; model QLIKE {:.4}, R²(log) {:.4}",
            k + 1,
            plan.len(),
            fold.train.len(),
            fold.validation.len(),
            fold.test.len(),
            r.scores[0].1.qlike,
            r.scores[0].1.r2_log
        );
        out.push(r);
    }
    Ok(summarise(out, params))
}

/// The walk-forward folds of one dataset (`evaluate:` and `split:`, `rps_core::walkforward`):
/// the per-symbol walk-forward's split, which the pooled one applies to each symbol's rows.
pub(crate) fn fold_plan(
    params: &Params,
    ds: &Dataset,
    bar_ms: i64,
) -> Result<Vec<rps_core::walkforward::Fold>, EvaluateError> {
    use rps_core::walkforward::{WalkForwardParams, folds};
    let f = &ds.frame;
    let wp = WalkForwardParams::from_params(params);
    Ok(folds(
        &f.ts,
        &f.usable(),
        bar_ms,
        params.target.horizon,
        &wp,
    )?)
}

/// One fold of `ds` scored with the `model` trained for it: the baselines refitted on the
/// fold's training and validation rows, then the model and every baseline (and their
/// intervals, for a model with quantiles) on its test rows.
pub(crate) fn score_fold(
    params: &Params,
    ds: &Dataset,
    fold: &rps_core::walkforward::Fold,
    model: &VolatilityModel,
) -> Result<FoldResult, EvaluateError> {
    let f = &ds.frame;
    let (xs, realized) = gather(ds, &fold.test);
    let mut seen = fold.train.clone();
    seen.extend(&fold.validation);
    let (base, _) = baselines(params, ds, &seen)?;
    let (mut forecasts, quantiles) = model_forecasts(model, &xs)?;
    let levels: Vec<f64> = model
        .quantile_booster()
        .map_or_else(Vec::new, |q| q.meta.levels.clone());
    let baseline_quantiles = if quantiles.is_empty() {
        Vec::new()
    } else {
        baseline_intervals(&levels, &base, &f.target, &seen, &fold.test)
    };
    forecasts.extend(
        base.into_iter()
            .map(|(n, v)| (n, fold.test.iter().map(|&i| v[i]).collect::<Vec<_>>())),
    );
    let (scores, dm_vs_har) = score_all(&realized, &forecasts, params.evaluate.dm_lags);
    Ok(FoldResult {
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
        quantiles,
        baseline_quantiles,
    })
}

/// The walk-forward of scored `folds` (at least one): the pooled out-of-sample scores of their
/// test rows together, the DM tests and the distribution summaries.
pub(crate) fn summarise(out: Vec<FoldResult>, params: &Params) -> WalkForward {
    let ev = &params.evaluate;
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
    let median = ["model_median", "model"]
        .iter()
        .find_map(|n| forecasts.iter().find(|(m, _)| m == n));
    let har_log = forecasts.iter().find(|(m, _)| m == HAR_LOG);
    let dm_log_vs_har = median.zip(har_log).map(|((_, a), (_, b))| {
        let losses = |p: &[f64]| -> Vec<f64> {
            realized
                .iter()
                .zip(p)
                .map(|(y, h)| log_loss_one(*y, *h))
                .collect()
        };
        diebold_mariano(&losses(a), &losses(b), ev.dm_lags)
    });
    let distribution = ["model", "har_rv", "ewma"]
        .iter()
        .filter_map(|name| {
            summarise_distribution(&out, name, &realized, &forecasts[0].1)
                .map(|d| ((*name).to_owned(), d))
        })
        .collect();
    WalkForward {
        folds: out,
        pooled,
        dm_vs_har,
        dm_log_vs_har,
        window: ev.walk_forward_window,
        distribution,
    }
}

/// Pooled coverage, interval scores, reliability and coverage by tercile of predicted
/// volatility of `name`'s quantile columns (`None` when it has none). The terciles are those of
/// the model's mean forecast `mean`: the same rows for every forecaster.
fn summarise_distribution(
    folds: &[FoldResult],
    name: &str,
    realized: &[f64],
    mean: &[f64],
) -> Option<DistributionSummary> {
    let prefix = format!("{name}_q");
    let cols = |f: &FoldResult| -> Vec<(f64, Vec<f64>)> {
        f.quantiles
            .iter()
            .chain(&f.baseline_quantiles)
            .filter_map(|(n, v)| {
                let d = n.strip_prefix(&prefix)?;
                Some((format!("0.{d}").parse::<f64>().ok()?, v.clone()))
            })
            .collect()
    };
    let first = cols(folds.first()?);
    if first.is_empty() {
        return None;
    }
    let levels: Vec<f64> = first.iter().map(|(l, _)| *l).collect();
    let rows: Vec<Vec<f64>> = folds
        .iter()
        .flat_map(|f| {
            let c = cols(f);
            (0..f.realized.len())
                .map(|i| c.iter().map(|(_, v)| v[i]).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        })
        .collect();
    let band = |c: f64| -> Option<Vec<(f64, f64)>> {
        let (lo, hi) = central_levels(c);
        let a = levels.iter().position(|l| (l - lo).abs() < 1e-9)?;
        let b = levels.iter().position(|l| (l - hi).abs() < 1e-9)?;
        Some(rows.iter().map(|r| (r[a], r[b])).collect())
    };
    let intervals = [0.8, 0.9]
        .iter()
        .filter_map(|&c| band(c).map(|b| score_intervals(&b, realized, c)))
        .collect();
    let mut sorted = mean.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let (t1, t2) = (sorted[n / 3], sorted[(2 * n) / 3]);
    let tercile_coverage_80 = band(0.8).map_or_else(Vec::new, |b| {
        (0..3)
            .map(|t| {
                let idx: Vec<usize> = (0..n)
                    .filter(|&i| match t {
                        0 => mean[i] < t1,
                        1 => mean[i] >= t1 && mean[i] < t2,
                        _ => mean[i] >= t2,
                    })
                    .collect();
                let bb: Vec<(f64, f64)> = idx.iter().map(|&i| b[i]).collect();
                let yy: Vec<f64> = idx.iter().map(|&i| realized[i]).collect();
                score_intervals(&bb, &yy, 0.8).coverage
            })
            .collect()
    });
    Some(DistributionSummary {
        intervals,
        reliability: reliability(&levels, &rows, realized),
        tercile_coverage_80,
    })
}
