//! Pooled vs per-symbol volatility models, on the same walk-forward folds by time.
//!
//! Every symbol's feature dataset (what `rps transform` wrote for it) is scored on the same
//! test hours, cut by [`time_folds`] from `rps_core::walkforward::folds` run on the union of the
//! symbols' usable hours. At each fold four model configurations are retrained with
//! `VolatilityModel::train` — the code path of `rps train` and of the evaluate stage's
//! walk-forward, with `train:` as given — and the baselines are refitted per symbol on the
//! fold's history ([`rps_core::baselines::forecasts`], as the evaluate stage does):
//!
//! | forecaster | trained on | extra inputs |
//! |---|---|---|
//! | `per_symbol` | the symbol's own rows | — |
//! | `per_symbol_market` | the symbol's own rows | `market_<term>`: the other symbols' mean of `<term>` at the same hour |
//! | `pooled` | every symbol's rows, stacked | `symbol_<name>`: one-hot of the row's symbol |
//! | `pooled_market` | every symbol's rows, stacked | both |
//!
//! The pooled models predict each symbol's test rows with that symbol's one-hot. The linear
//! base margin (`train.base_margin`) is part of the model, so the pooled model fits one HAR-type
//! base over all symbols and its trees learn the per-symbol corrections.

use rps_core::baselines::{self, BaselineError};
use rps_core::features::FeatureFrame;
use rps_core::metrics::{self, DieboldMariano, Scores, qlike_one};
use rps_core::params::Params;
use rps_core::walkforward::{Fold, WalkForwardError, WalkForwardParams, folds};
use rps_model::{ModelError, Rows, VolatilityModel};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The model configurations, in report order.
pub const CONFIGS: [Config; 4] = [
    Config::PerSymbol,
    Config::PerSymbolMarket,
    Config::Pooled,
    Config::PooledMarket,
];

/// The baselines reported beside the models, in report order.
pub const BASELINES: [&str; 4] = ["har_rv", baselines::HAR_LOG, "ewma", "persistence"];

/// One model configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Config {
    PerSymbol,
    PerSymbolMarket,
    Pooled,
    PooledMarket,
}

impl Config {
    pub fn name(self) -> &'static str {
        match self {
            Self::PerSymbol => "per_symbol",
            Self::PerSymbolMarket => "per_symbol_market",
            Self::Pooled => "pooled",
            Self::PooledMarket => "pooled_market",
        }
    }

    pub fn pooled(self) -> bool {
        matches!(self, Self::Pooled | Self::PooledMarket)
    }

    pub fn market(self) -> bool {
        matches!(self, Self::PerSymbolMarket | Self::PooledMarket)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PooledError {
    #[error("walk-forward: {0}")]
    WalkForward(#[from] WalkForwardError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Baseline(#[from] BaselineError),
    #[error("pooling needs at least two symbols, got {0}")]
    TooFewSymbols(usize),
    #[error(
        "symbol {symbol} has features {found:?}, symbol {first} has {expected:?}: pooling needs the same columns"
    )]
    Columns {
        first: String,
        symbol: String,
        expected: Vec<String>,
        found: Vec<String>,
    },
    #[error("{0}")]
    Symbol(String),
    #[error("the market factor's term {0:?} is not a feature column")]
    UnknownTerm(String),
    #[error("symbol {symbol}, fold {fold}: {what}")]
    Empty {
        symbol: String,
        fold: usize,
        what: &'static str,
    },
}

/// One symbol's feature frame.
#[derive(Debug, Clone)]
pub struct Symbol {
    pub name: String,
    pub frame: FeatureFrame,
}

/// A fold's spans as times (bar open, ms), so that every symbol's rows are cut at the same
/// hours: train `[train_from, validation_from − gap)`, validation `[validation_from,
/// test_from − gap)` (a row is in a span when its target window ends more than `gap` bars before
/// the next span starts, as in `rps_core::walkforward`), test `[test_from, test_to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeFold {
    pub train_from: i64,
    pub validation_from: i64,
    pub test_from: i64,
    /// Exclusive; `i64::MAX` for the last fold.
    pub test_to: i64,
    /// The purge, `split.gap` bars, in ms.
    pub gap_ms: i64,
}

impl TimeFold {
    /// The rows (indices into `ts`) of each span among the `usable` ones.
    pub fn rows(&self, ts: &[i64], usable: &[bool]) -> Fold {
        let pick = |keep: &dyn Fn(i64) -> bool| -> Vec<usize> {
            (0..ts.len())
                .filter(|&i| usable[i] && keep(ts[i]))
                .collect()
        };
        let before = |t: i64, end: i64| t.saturating_add(self.gap_ms) < end;
        Fold {
            train: pick(&|t| t >= self.train_from && before(t, self.validation_from)),
            validation: pick(&|t| t >= self.validation_from && before(t, self.test_from)),
            test: pick(&|t| t >= self.test_from && t < self.test_to),
        }
    }
}

/// The walk-forward folds of `rps_core::walkforward::folds` on the union of every symbol's
/// usable hours (`timelines`: each symbol's row times and usable flags), as times: the same
/// test hours, and the same history before them, for every symbol.
pub fn time_folds(
    timelines: &[(&[i64], &[bool])],
    bar_ms: i64,
    horizon: usize,
    p: &WalkForwardParams,
) -> Result<Vec<TimeFold>, WalkForwardError> {
    let mut union: Vec<i64> = timelines
        .iter()
        .flat_map(|(ts, usable)| ts.iter().zip(*usable).filter(|(_, u)| **u).map(|(t, _)| *t))
        .collect();
    union.sort_unstable();
    union.dedup();
    let plan = folds(&union, &vec![true; union.len()], bar_ms, horizon, p)?;
    let gap_ms = i64::try_from(p.gap)
        .unwrap_or(i64::MAX)
        .saturating_mul(bar_ms);
    Ok(plan
        .iter()
        .enumerate()
        .map(|(k, f)| TimeFold {
            train_from: union[f.train[0]],
            validation_from: union[f.validation[0]],
            test_from: union[f.test[0]],
            test_to: plan.get(k + 1).map_or(i64::MAX, |g| union[g.test[0]]),
            gap_ms,
        })
        .collect())
}

/// A symbol's model inputs for one configuration: the feature columns, then the one-hot of the
/// symbol (`symbol_<name>` per symbol, pooled configurations), then the market factor
/// (`market_<term>`), column-major over the symbol's rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Design {
    pub names: Vec<String>,
    pub columns: Vec<Vec<f64>>,
}

/// The inputs of symbol `k` of `symbols`: its features; with `one_hot` a 0/1 column per symbol
/// (1 in its own); for each of `market` a column holding the mean of that feature over the
/// *other* symbols' rows at the same bar time (the finite ones; NaN when none has it).
pub fn design(
    symbols: &[Symbol],
    k: usize,
    one_hot: bool,
    market: &[String],
) -> Result<Design, PooledError> {
    let f = &symbols[k].frame;
    let mut names = f.names.clone();
    let mut columns = f.columns.clone();
    if one_hot {
        let all: Vec<String> = symbols.iter().map(|s| s.name.clone()).collect();
        names.extend(rps_core::pooling::one_hot_names(&all));
        columns = rps_core::pooling::with_one_hot(&columns, f.len(), &all, &symbols[k].name)
            .map_err(|e| PooledError::Symbol(e.to_string()))?;
    }
    for term in market {
        let mut sum = vec![0.0; f.len()];
        let mut count = vec![0_u32; f.len()];
        for (j, other) in symbols.iter().enumerate() {
            if j == k {
                continue;
            }
            let col = other
                .frame
                .column(term)
                .ok_or_else(|| PooledError::UnknownTerm(term.clone()))?;
            let at: BTreeMap<i64, f64> = other
                .frame
                .ts
                .iter()
                .copied()
                .zip(col.iter().copied())
                .collect();
            for (i, t) in f.ts.iter().enumerate() {
                if let Some(v) = at.get(t).filter(|v| v.is_finite()) {
                    sum[i] += v;
                    count[i] += 1;
                }
            }
        }
        names.push(format!("market_{term}"));
        columns.push(
            sum.iter()
                .zip(&count)
                .map(|(s, &c)| if c == 0 { f64::NAN } else { s / f64::from(c) })
                .collect(),
        );
    }
    Ok(Design { names, columns })
}

/// The rows `idx` of each part's design stacked in part order, and their targets: the pooled
/// training set.
pub fn stack(parts: &[(&Design, &FeatureFrame, &[usize])]) -> (Rows, Vec<f64>) {
    let parts: Vec<rps_model::Part<'_>> = parts
        .iter()
        .map(|(d, f, idx)| (d.columns.as_slice(), f.target.as_slice(), *idx))
        .collect();
    Rows::stack_parts(&parts)
}

/// One symbol's out-of-sample forecasts over every fold, in time order.
#[derive(Debug, Clone)]
pub struct SymbolResult {
    pub name: String,
    pub ts: Vec<i64>,
    /// Fold number (0-based) of each row.
    pub fold: Vec<usize>,
    pub realized: Vec<f64>,
    /// [`CONFIGS`] then [`BASELINES`], by name.
    pub forecasts: Vec<(String, Vec<f64>)>,
}

impl SymbolResult {
    pub fn forecast(&self, name: &str) -> Option<&[f64]> {
        self.forecasts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// What one fold trained: rows and best iteration per model.
#[derive(Debug, Clone)]
pub struct FoldInfo {
    pub fold: TimeFold,
    /// (symbol, train, validation, test rows).
    pub rows: Vec<(String, usize, usize, usize)>,
    /// (model — `pooled` or `per_symbol:BTC-USDT` …, its best iteration).
    pub best_iteration: Vec<(String, Option<usize>)>,
}

/// The whole comparison.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub symbols: Vec<SymbolResult>,
    pub folds: Vec<FoldInfo>,
    pub market_terms: Vec<String>,
    pub dm_lags: usize,
}

/// Run the comparison: `params`' `train:` for every model (its quantiles are not trained: the
/// mean booster does not depend on them), `evaluate:`'s walk-forward settings, HAR terms, EWMA λ
/// and DM lags, `split.gap` and `target:`. `bar_ms` is the bar of every symbol's dataset;
/// `market` the features whose other-symbol mean is the market factor; `progress` is told what
/// is being trained.
pub fn compare(
    params: &Params,
    symbols: &[Symbol],
    bar_ms: i64,
    market: &[String],
    progress: &mut dyn FnMut(&str),
) -> Result<Comparison, PooledError> {
    if symbols.len() < 2 {
        return Err(PooledError::TooFewSymbols(symbols.len()));
    }
    for s in &symbols[1..] {
        if s.frame.names != symbols[0].frame.names {
            return Err(PooledError::Columns {
                first: symbols[0].name.clone(),
                symbol: s.name.clone(),
                expected: symbols[0].frame.names.clone(),
                found: s.frame.names.clone(),
            });
        }
    }
    let ev = &params.evaluate;
    let floor = params.target.floor;
    let train = rps_core::params::TrainParams {
        quantiles: Vec::new(),
        ..params.train.clone()
    };
    let wp = WalkForwardParams::from_params(params);
    let usable: Vec<Vec<bool>> = symbols.iter().map(|s| s.frame.usable()).collect();
    let timelines: Vec<(&[i64], &[bool])> = symbols
        .iter()
        .zip(&usable)
        .map(|(s, u)| (s.frame.ts.as_slice(), u.as_slice()))
        .collect();
    let plan = time_folds(&timelines, bar_ms, params.target.horizon, &wp)?;
    // designs[c][k]: configuration c's inputs for symbol k.
    let designs: Vec<Vec<Design>> = CONFIGS
        .iter()
        .map(|c| {
            let terms: &[String] = if c.market() { market } else { &[] };
            (0..symbols.len())
                .map(|k| design(symbols, k, c.pooled(), terms))
                .collect()
        })
        .collect::<Result<_, _>>()?;
    let names: Vec<String> = CONFIGS
        .iter()
        .map(|c| c.name().to_owned())
        .chain(BASELINES.iter().map(|b| (*b).to_owned()))
        .collect();
    let mut results: Vec<SymbolResult> = symbols
        .iter()
        .map(|s| SymbolResult {
            name: s.name.clone(),
            ts: Vec::new(),
            fold: Vec::new(),
            realized: Vec::new(),
            forecasts: names.iter().map(|n| (n.clone(), Vec::new())).collect(),
        })
        .collect();
    let mut infos = Vec::with_capacity(plan.len());
    for (fk, tf) in plan.iter().enumerate() {
        let spans: Vec<Fold> = symbols
            .iter()
            .zip(&usable)
            .map(|(s, u)| tf.rows(&s.frame.ts, u))
            .collect();
        for (s, sp) in symbols.iter().zip(&spans) {
            for (what, rows) in [
                ("no training rows", &sp.train),
                ("no validation rows", &sp.validation),
                ("no test rows", &sp.test),
            ] {
                if rows.is_empty() {
                    return Err(PooledError::Empty {
                        symbol: s.name.clone(),
                        fold: fk + 1,
                        what,
                    });
                }
            }
        }
        let mut best = Vec::new();
        for (c, config) in CONFIGS.iter().enumerate() {
            let d = &designs[c];
            let fit = |ks: &[usize]| -> Result<VolatilityModel, PooledError> {
                let tr: Vec<(&Design, &FeatureFrame, &[usize])> = ks
                    .iter()
                    .map(|&k| (&d[k], &symbols[k].frame, spans[k].train.as_slice()))
                    .collect();
                let va: Vec<(&Design, &FeatureFrame, &[usize])> = ks
                    .iter()
                    .map(|&k| (&d[k], &symbols[k].frame, spans[k].validation.as_slice()))
                    .collect();
                let (xt, yt) = stack(&tr);
                let (xv, yv) = stack(&va);
                let (m, _) =
                    VolatilityModel::train(&train, &d[ks[0]].names, floor, (&xt, &yt), (&xv, &yv))?;
                Ok(m)
            };
            let models: Vec<(String, VolatilityModel)> = if config.pooled() {
                progress(&format!(
                    "fold {}/{}: {}",
                    fk + 1,
                    plan.len(),
                    config.name()
                ));
                let all: Vec<usize> = (0..symbols.len()).collect();
                let m = fit(&all)?;
                vec![(config.name().to_owned(), m)]
            } else {
                (0..symbols.len())
                    .map(|k| {
                        progress(&format!(
                            "fold {}/{}: {} {}",
                            fk + 1,
                            plan.len(),
                            config.name(),
                            symbols[k].name
                        ));
                        Ok((format!("{}:{}", config.name(), symbols[k].name), fit(&[k])?))
                    })
                    .collect::<Result<_, PooledError>>()?
            };
            for (k, r) in results.iter_mut().enumerate() {
                let m = &models[if config.pooled() { 0 } else { k }].1;
                let (xs, _) = stack(&[(&d[k], &symbols[k].frame, &spans[k].test)]);
                r.forecasts[c].1.extend(m.predict(&xs)?);
            }
            best.extend(
                models
                    .iter()
                    .map(|(n, m)| (n.clone(), m.meta.best_iteration)),
            );
        }
        for (k, r) in results.iter_mut().enumerate() {
            let s = &symbols[k];
            let sp = &spans[k];
            let mut seen = sp.train.clone();
            seen.extend(&sp.validation);
            let (base, _) =
                baselines::forecasts(&s.frame, &ev.har_terms, ev.ewma_lambda, floor, &seen)?;
            for (j, b) in BASELINES.iter().enumerate() {
                let v = base
                    .iter()
                    .find(|(n, _)| n == b)
                    .map(|(_, v)| v)
                    .ok_or_else(|| BaselineError::UnknownHarTerm((*b).to_owned()))?;
                r.forecasts[CONFIGS.len() + j]
                    .1
                    .extend(sp.test.iter().map(|&i| v[i]));
            }
            r.ts.extend(sp.test.iter().map(|&i| s.frame.ts[i]));
            r.fold.extend(std::iter::repeat_n(fk, sp.test.len()));
            r.realized
                .extend(sp.test.iter().map(|&i| s.frame.target[i]));
        }
        infos.push(FoldInfo {
            fold: *tf,
            rows: symbols
                .iter()
                .zip(&spans)
                .map(|(s, sp)| {
                    (
                        s.name.clone(),
                        sp.train.len(),
                        sp.validation.len(),
                        sp.test.len(),
                    )
                })
                .collect(),
            best_iteration: best,
        });
    }
    Ok(Comparison {
        symbols: results,
        folds: infos,
        market_terms: market.to_vec(),
        dm_lags: ev.dm_lags,
    })
}

/// QLIKE losses of `forecast` against `realized`.
fn qlike_losses(realized: &[f64], forecast: &[f64]) -> Vec<f64> {
    realized
        .iter()
        .zip(forecast)
        .map(|(y, h)| qlike_one(*y, *h))
        .collect()
}

/// Diebold–Mariano test of `a` against `b` on QLIKE, over the hours of every symbol: the loss
/// differential of each hour is the mean over the symbols scored at that hour (a panel's
/// cross-sectional average), in time order.
pub fn dm_across(
    symbols: &[SymbolResult],
    a: &str,
    b: &str,
    lags: usize,
) -> Option<DieboldMariano> {
    let mut by_hour: BTreeMap<i64, (f64, u32)> = BTreeMap::new();
    for s in symbols {
        let d: Vec<f64> = qlike_losses(&s.realized, s.forecast(a)?)
            .iter()
            .zip(qlike_losses(&s.realized, s.forecast(b)?))
            .map(|(x, y)| x - y)
            .collect();
        for (t, v) in s.ts.iter().zip(d) {
            let e = by_hour.entry(*t).or_insert((0.0, 0));
            e.0 += v;
            e.1 += 1;
        }
    }
    let d: Vec<f64> = by_hour.values().map(|(s, c)| s / f64::from(*c)).collect();
    Some(metrics::diebold_mariano(&d, &vec![0.0; d.len()], lags))
}

/// Diebold–Mariano test of `a` against `b` on one symbol's QLIKE losses.
pub fn dm_symbol(s: &SymbolResult, a: &str, b: &str, lags: usize) -> Option<DieboldMariano> {
    Some(metrics::diebold_mariano(
        &qlike_losses(&s.realized, s.forecast(a)?),
        &qlike_losses(&s.realized, s.forecast(b)?),
        lags,
    ))
}

/// A bar time (ms) as RFC 3339 UTC, `2019-01-01T00:00:00Z`.
fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

fn date(ms: i64) -> String {
    rfc3339(ms).get(..10).unwrap_or("?").to_owned()
}

/// Scores of every forecaster on one symbol's rows (`fold`: only that fold's).
fn scores(s: &SymbolResult, fold: Option<usize>) -> Vec<(String, Scores)> {
    let keep: Vec<usize> = (0..s.realized.len())
        .filter(|&i| fold.is_none_or(|f| s.fold[i] == f))
        .collect();
    let y: Vec<f64> = keep.iter().map(|&i| s.realized[i]).collect();
    s.forecasts
        .iter()
        .map(|(n, v)| {
            let p: Vec<f64> = keep.iter().map(|&i| v[i]).collect();
            (n.clone(), metrics::score(&y, &p))
        })
        .collect()
}

/// Every symbol's rows together, as one result (for the "all symbols" scores).
fn all_rows(symbols: &[SymbolResult]) -> SymbolResult {
    let mut all = SymbolResult {
        name: "all".to_owned(),
        ts: Vec::new(),
        fold: Vec::new(),
        realized: Vec::new(),
        forecasts: symbols[0]
            .forecasts
            .iter()
            .map(|(n, _)| (n.clone(), Vec::new()))
            .collect(),
    };
    for s in symbols {
        all.ts.extend(&s.ts);
        all.fold.extend(&s.fold);
        all.realized.extend(&s.realized);
        for (j, (_, v)) in s.forecasts.iter().enumerate() {
            all.forecasts[j].1.extend(v);
        }
    }
    all
}

impl Comparison {
    /// QLIKE of each of [`CONFIGS`] (in that order) pooled over the folds, per symbol and then
    /// over every symbol's rows (`all`).
    pub fn qlike_by_group(&self) -> Vec<(String, Vec<f64>)> {
        let mut groups = self.symbols.clone();
        groups.push(all_rows(&self.symbols));
        groups
            .iter()
            .map(|g| {
                let sc = scores(g, None);
                let q = CONFIGS
                    .iter()
                    .map(|c| {
                        sc.iter()
                            .find(|(n, _)| n == c.name())
                            .map_or(f64::NAN, |(_, s)| s.qlike)
                    })
                    .collect();
                (g.name.clone(), q)
            })
            .collect()
    }

    /// The report (Markdown): the folds, pooled scores per symbol and over all symbols, the
    /// Diebold–Mariano tests of each configuration against `per_symbol`, per-fold QLIKE.
    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let syms = &self.symbols;
        let base = Config::PerSymbol.name();
        let _ = writeln!(o, "### Folds (same test hours for every symbol)\n");
        let _ = write!(o, "| fold | test from | test to |");
        for s in syms {
            let _ = write!(o, " {} train / validation / test |", s.name);
        }
        let _ = write!(o, "\n|---|---|---|");
        for _ in syms {
            let _ = write!(o, "---:|");
        }
        o.push('\n');
        for (k, f) in self.folds.iter().enumerate() {
            let last = syms
                .iter()
                .filter_map(|s| {
                    s.ts.iter()
                        .zip(&s.fold)
                        .filter(|(_, fo)| **fo == k)
                        .map(|(t, _)| *t)
                        .max()
                })
                .max()
                .unwrap_or(f.fold.test_from);
            let _ = write!(
                o,
                "| {} | {} | {} |",
                k + 1,
                date(f.fold.test_from),
                date(last)
            );
            for (_, tr, va, te) in &f.rows {
                let _ = write!(o, " {tr} / {va} / {te} |");
            }
            o.push('\n');
        }
        let _ = writeln!(
            o,
            "\n### Pooled over the folds\n\nQLIKE on variances (primary), MSE of σ², R² on log volatility; Δ QLIKE relative to `{base}`.\n"
        );
        let mut groups: Vec<SymbolResult> = syms.clone();
        groups.push(all_rows(syms));
        for g in &groups {
            let sc = scores(g, None);
            let ref_q = sc
                .iter()
                .find(|(n, _)| n == base)
                .map_or(f64::NAN, |(_, s)| s.qlike);
            let title = if g.name == "all" {
                "all symbols (every test row)".to_owned()
            } else {
                g.name.clone()
            };
            let _ = writeln!(
                o,
                "**{title}** ({} test hours)\n\n| forecaster | QLIKE | Δ QLIKE | MSE σ² | R² (log) |\n|---|---:|---:|---:|---:|",
                g.realized.len()
            );
            for (n, s) in &sc {
                let _ = writeln!(
                    o,
                    "| {n} | {:.4} | {:+.2} % | {:.4e} | {:.4} |",
                    s.qlike,
                    100.0 * (s.qlike / ref_q - 1.0),
                    s.mse_var,
                    s.r2_log
                );
            }
            o.push('\n');
        }
        let _ = writeln!(
            o,
            "### Diebold–Mariano vs `{base}` on QLIKE\n\nNewey–West variance with {} lags; negative statistic: the configuration has the lower loss. \"all\": the hourly loss differential averaged over the symbols.\n\n| configuration | symbol | mean loss difference | DM statistic | p-value |\n|---|---|---:|---:|---:|",
            self.dm_lags
        );
        for c in &CONFIGS[1..] {
            for s in syms {
                if let Some(d) = dm_symbol(s, c.name(), base, self.dm_lags) {
                    let _ = writeln!(
                        o,
                        "| {} | {} | {:+.5} | {:+.2} | {:.4} |",
                        c.name(),
                        s.name,
                        d.mean_diff,
                        d.statistic,
                        d.p_value
                    );
                }
            }
            if let Some(d) = dm_across(syms, c.name(), base, self.dm_lags) {
                let _ = writeln!(
                    o,
                    "| {} | all | {:+.5} | {:+.2} | {:.4} |",
                    c.name(),
                    d.mean_diff,
                    d.statistic,
                    d.p_value
                );
            }
        }
        let _ = writeln!(o, "\n### QLIKE per fold\n");
        let _ = write!(o, "| fold |");
        for s in syms {
            for c in CONFIGS {
                let _ = write!(o, " {} {} |", s.name, c.name());
            }
        }
        let _ = write!(o, "\n|---|");
        for _ in 0..syms.len() * CONFIGS.len() {
            let _ = write!(o, "---:|");
        }
        o.push('\n');
        for k in 0..self.folds.len() {
            let _ = write!(o, "| {} |", k + 1);
            for s in syms {
                let sc = scores(s, Some(k));
                for c in CONFIGS {
                    let q = sc
                        .iter()
                        .find(|(n, _)| n == c.name())
                        .map_or(f64::NAN, |(_, s)| s.qlike);
                    let _ = write!(o, " {q:.4} |");
                }
            }
            o.push('\n');
        }
        let _ = writeln!(o, "\n### Best iteration of each model\n");
        for (k, f) in self.folds.iter().enumerate() {
            let parts: Vec<String> = f
                .best_iteration
                .iter()
                .map(|(n, b)| format!("{n} {}", b.map_or("-".to_owned(), |b| b.to_string())))
                .collect();
            let _ = writeln!(o, "- fold {}: {}", k + 1, parts.join(", "));
        }
        o
    }

    /// Every test row's forecasts as CSV: symbol, fold (1-based), ts (RFC 3339), realized, then
    /// one column per forecaster.
    pub fn csv(&self) -> String {
        let mut o = String::from("symbol,fold,ts,realized");
        for (n, _) in &self.symbols[0].forecasts {
            let _ = write!(o, ",{n}");
        }
        o.push('\n');
        for s in &self.symbols {
            for i in 0..s.realized.len() {
                let _ = write!(
                    o,
                    "{},{},{},{}",
                    s.name,
                    s.fold[i] + 1,
                    rfc3339(s.ts[i]),
                    s.realized[i]
                );
                for (_, v) in &s.forecasts {
                    let _ = write!(o, ",{}", v[i]);
                }
                o.push('\n');
            }
        }
        o
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_precision_loss)]
mod tests;
