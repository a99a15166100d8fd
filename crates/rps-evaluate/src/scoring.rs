//! Scoring the model and the baselines on the same rows.

use crate::*;
use rps_core::baselines::{BaselineError, Har};
use rps_core::metrics::{self, DieboldMariano, Scores, qlike_one};
use rps_core::params::{Params, PrimaryMetric};
use rps_core::split::Split;
use rps_model::{Rows, VolatilityModel};
use rps_store::frame::Dataset;

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
    /// The model's quantile forecasts (`model_q05` …), empty for a model without a
    /// distribution.
    pub quantiles: Forecasts,
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
pub const HAR_LOG: &str = rps_core::baselines::HAR_LOG;

/// Baseline forecasts for every row of the dataset (in time order): persistence, EWMA, HAR-RV
/// fitted on `fit_rows` and the same fit on the log scale ([`HAR_LOG`])
/// ([`rps_core::baselines::forecasts`] with `evaluate:`'s terms and λ and `target.floor`).
pub fn baselines(
    params: &Params,
    ds: &Dataset,
    fit_rows: &[usize],
) -> Result<(Forecasts, Har), EvaluateError> {
    let ev = &params.evaluate;
    rps_core::baselines::forecasts(
        &ds.frame,
        &ev.har_terms,
        ev.ewma_lambda,
        params.target.floor,
        fit_rows,
    )
    .map_err(|e| match e {
        BaselineError::UnknownHarTerm(t) => EvaluateError::UnknownHarTerm(t),
        BaselineError::Har(e) => EvaluateError::Har(e),
    })
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
    let (mut forecasts, quantiles) = model_forecasts(model, &Rows::gather(&f.columns, &test))?;
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
        quantiles,
    })
}

/// The model's forecasts of `rows` as named series: `model` (the mean) and, for a model with a
/// distribution, `model_median`; and its quantiles (`model_q05` …, empty without).
pub(crate) fn model_forecasts(
    model: &VolatilityModel,
    rows: &Rows,
) -> Result<(Forecasts, Forecasts), EvaluateError> {
    let dist = model.forecast(rows)?;
    let mut forecasts = vec![("model".to_owned(), dist.iter().map(|d| d.mean).collect())];
    let mut quantiles = Vec::new();
    if let Some(q0) = dist.first().and_then(|d| d.quantiles.as_ref()) {
        forecasts.push((
            "model_median".to_owned(),
            dist.iter().map(|d| d.median().unwrap_or(d.mean)).collect(),
        ));
        for (j, level) in q0.levels.iter().enumerate() {
            quantiles.push((
                format!("model_{}", rps_core::distribution::level_suffix(*level)),
                dist.iter()
                    .map(|d| d.quantiles.as_ref().map_or(f64::NAN, |q| q.values[j]))
                    .collect(),
            ));
        }
    }
    Ok((forecasts, quantiles))
}

/// Scores of every forecaster on `realized`, and the DM test of the first (the model) against
/// `har_rv` on QLIKE losses.
pub(crate) fn score_all(
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
