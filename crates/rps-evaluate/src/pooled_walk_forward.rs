//! The walk-forward of a pooled model (`train.pooling: pooled`, issue #20), and the acceptance
//! rule on it.
//!
//! Each symbol's rows are cut into folds exactly as its per-symbol walk-forward cuts them
//! ([`fold_plan`]: `rps_core::walkforward::folds` on the symbol's own rows). Fold `k` of the
//! pooled walk-forward is fold `k` of every symbol: one pooled model is trained on every
//! symbol's training rows of that fold, stacked in the order of `data.symbols` with each
//! symbol's one-hot (`Rows::stack_parts` and `VolatilityModel::train`, as `rps train` does in
//! pooled mode), early-stopped on their validation rows, and forecasts each symbol's test rows.
//! The baselines are refitted per symbol, on that symbol's history of the fold ([`score_fold`],
//! as the per-symbol walk-forward does).
//!
//! The acceptance rule ([`judge`]) is then applied per symbol, on that symbol's out-of-sample
//! rows, and on every symbol's rows together (each fold's symbol blocks one after the other).

use crate::*;
use rps_core::params::{AcceptanceParams, Params};
use rps_model::{Rows, VolatilityModel};

/// The scope of the verdict on every symbol's rows at once.
pub const TOGETHER: &str = "all symbols together";

/// A pooled model's walk-forward: each symbol's out-of-sample rows, and all of them together.
#[derive(Debug, Clone)]
pub struct PooledWalkForward {
    /// Each symbol's folds and scores, in the order of `data.symbols`.
    pub by_symbol: Vec<(String, WalkForward)>,
    /// Every symbol's test rows of each fold together.
    pub together: WalkForward,
}

impl PooledWalkForward {
    /// The acceptance rule on every scope: [`TOGETHER`] first, then each symbol.
    pub fn verdicts(&self, rule: &AcceptanceParams) -> Vec<(String, Verdict)> {
        std::iter::once((TOGETHER, &self.together))
            .chain(self.by_symbol.iter().map(|(s, w)| (s.as_str(), w)))
            .filter_map(|(s, w)| w.verdict(rule).map(|v| (s.to_owned(), v)))
            .collect()
    }
}

/// The pooled walk-forward over `datasets` (each symbol's features with the pooled model's
/// one-hot columns appended, in the order of `data.symbols`); `bar_ms` is their bar.
pub fn pooled_walk_forward(
    params: &Params,
    datasets: &[(String, Dataset)],
    bar_ms: i64,
) -> Result<PooledWalkForward, EvaluateError> {
    let Some((_, first)) = datasets.first() else {
        return Err(EvaluateError::Pooled(
            "the pooled walk-forward needs at least one symbol".to_owned(),
        ));
    };
    let names = &first.frame.names;
    if let Some((_, ds)) = datasets.iter().find(|(_, ds)| &ds.frame.names != names) {
        return Err(EvaluateError::FeatureMismatch {
            expected: names.clone(),
            found: ds.frame.names.clone(),
        });
    }
    let plans: Vec<Vec<rps_core::walkforward::Fold>> = datasets
        .iter()
        .map(|(_, ds)| fold_plan(params, ds, bar_ms))
        .collect::<Result<_, _>>()?;
    let n = plans[0].len();
    if let Some(((s, _), p)) = datasets.iter().zip(&plans).find(|(_, p)| p.len() != n) {
        return Err(EvaluateError::Pooled(format!(
            "the pooled walk-forward needs the same folds for every symbol: {} has {n}, {s} has {}",
            datasets[0].0,
            p.len()
        )));
    }
    let mut by: Vec<Vec<FoldResult>> = vec![Vec::with_capacity(n); datasets.len()];
    let mut together = Vec::with_capacity(n);
    for k in 0..n {
        let parts = |pick: fn(&rps_core::walkforward::Fold) -> &[usize]| {
            datasets
                .iter()
                .zip(&plans)
                .map(|((_, ds), p)| {
                    (
                        ds.frame.columns.as_slice(),
                        ds.frame.target.as_slice(),
                        pick(&p[k]),
                    )
                })
                .collect::<Vec<_>>()
        };
        let (xt, yt) = Rows::stack_parts(&parts(|f| &f.train));
        let (xv, yv) = Rows::stack_parts(&parts(|f| &f.validation));
        let (model, _) = VolatilityModel::train(
            &params.train,
            names,
            params.target.floor,
            (&xt, &yt),
            (&xv, &yv),
        )?;
        let folds: Vec<FoldResult> = datasets
            .iter()
            .zip(&plans)
            .map(|((_, ds), p)| score_fold(params, ds, &p[k], &model))
            .collect::<Result<_, _>>()?;
        let all = concat(&folds, params.evaluate.dm_lags);
        tracing::info!(
            "pooled walk-forward fold {}/{n}: {} train, {} validation, {} test rows over {} symbols; model QLIKE {:.4} ({})",
            k + 1,
            yt.len(),
            yv.len(),
            all.realized.len(),
            datasets.len(),
            all.scores[0].1.qlike,
            datasets
                .iter()
                .zip(&folds)
                .map(|((s, _), f)| format!("{s} {:.4}", f.scores[0].1.qlike))
                .collect::<Vec<_>>()
                .join(", ")
        );
        together.push(all);
        for (b, f) in by.iter_mut().zip(folds) {
            b.push(f);
        }
    }
    Ok(PooledWalkForward {
        by_symbol: datasets
            .iter()
            .zip(by)
            .map(|((s, _), folds)| (s.clone(), summarise(folds, params)))
            .collect(),
        together: summarise(together, params),
    })
}

/// Named series of several parts, each series the parts' values one after the other.
fn cat(parts: &[&Forecasts]) -> Forecasts {
    parts[0]
        .iter()
        .enumerate()
        .map(|(j, (n, _))| {
            (
                n.clone(),
                parts.iter().flat_map(|p| p[j].1.iter().copied()).collect(),
            )
        })
        .collect()
}

/// One fold's results of every symbol as one fold: the test rows of each symbol one after the
/// other, scored together; the rows trained on are the symbols' sums.
fn concat(parts: &[FoldResult], dm_lags: usize) -> FoldResult {
    let realized: Vec<f64> = parts
        .iter()
        .flat_map(|p| p.realized.iter().copied())
        .collect();
    let forecasts = cat(&parts.iter().map(|p| &p.forecasts).collect::<Vec<_>>());
    let (scores, dm_vs_har) = score_all(&realized, &forecasts, dm_lags);
    FoldResult {
        train_rows: parts.iter().map(|p| p.train_rows).sum(),
        validation_rows: parts.iter().map(|p| p.validation_rows).sum(),
        best_iteration: parts[0].best_iteration,
        smearing: parts[0].smearing,
        power: parts[0].power,
        ts: parts.iter().flat_map(|p| p.ts.iter().copied()).collect(),
        realized,
        forecasts,
        scores,
        dm_vs_har,
        quantiles: cat(&parts.iter().map(|p| &p.quantiles).collect::<Vec<_>>()),
        baseline_quantiles: cat(&parts
            .iter()
            .map(|p| &p.baseline_quantiles)
            .collect::<Vec<_>>()),
    }
}

/// The pooled walk-forward's section of `evaluation.md`: the verdict of every scope in one
/// table, then each scope's scores and criteria.
pub fn pooled_walk_forward_markdown(
    wf: &PooledWalkForward,
    verdicts: &[(String, Verdict)],
    params: &Params,
) -> String {
    use std::fmt::Write as _;
    let folds = wf.together.folds.len();
    let rows = |w: &WalkForward| w.folds.iter().map(|f| f.realized.len()).sum::<usize>();
    let mut md = format!(
        "## Walk-forward: {folds} folds, a pooled model per fold\n\n\
At every fold one pooled model is retrained on every symbol's training rows of that fold (each \
symbol's rows are split as its per-symbol walk-forward splits them; the last {vshare:.0} % of the \
history for early stopping and calibration, purged by {gap} bars) and forecasts each symbol's \
test block with that symbol's one-hot; the baselines are refitted per symbol on the same \
rows. The acceptance rule (`evaluate.acceptance` in params.yaml) is applied to every symbol's \
out-of-sample rows together and to each symbol's own.\n\n\
| rows judged | rows | model QLIKE | best baseline | its QLIKE | verdict |\n|---|---:|---:|---|---:|---|\n",
        vshare = 100.0 * params.split.validation / (params.split.train + params.split.validation),
        gap = params.split.gap,
    );
    let scope = |name: &str| {
        if name == TOGETHER {
            Some(&wf.together)
        } else {
            wf.by_symbol.iter().find(|(s, _)| s == name).map(|(_, w)| w)
        }
    };
    for (name, v) in verdicts {
        let Some(w) = scope(name) else { continue };
        let q = |f: &str| w.pooled_score(f).map_or(f64::NAN, |s| s.qlike);
        let _ = writeln!(
            md,
            "| {name} | {} | {:.4} | {} | {:.4} | {} |",
            rows(w),
            q("model"),
            v.best_baseline,
            q(&v.best_baseline),
            if v.passed {
                "passes".to_owned()
            } else {
                format!(
                    "**fails** {} of {}",
                    v.checks.iter().filter(|c| !c.passed).count(),
                    v.checks.len()
                )
            }
        );
    }
    md.push('\n');
    for (name, v) in verdicts {
        let Some(w) = scope(name) else { continue };
        let table = crate::report::pooled_score_rows(w);
        let _ = write!(
            md,
            "### {name}\n\n{}\n{}",
            rps_report::metrics_table(&table),
            verdict_table(v)
        );
    }
    md
}
