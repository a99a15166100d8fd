//! The walk-forward's plots for people (issue #16), written beside `walkforward.csv` and the
//! fold plots:
//!
//! - `walkforward_band_<k>.png` (k = 1, 2, …): realized hourly σ against the model's 80 %
//!   interval (q10–q90, shaded), its mean and median, one panel per calendar month of the
//!   walk-forward's test span, [`MONTHS_PER_IMAGE`] months per image (a 2-year span: 8 or 9);
//!   a model without a distribution (or without the 0.1 and 0.9 levels) gets its mean alone;
//! - `walkforward_reliability.png`: the reliability diagram of the model's and the baselines'
//!   quantiles (pooled over the folds), with the deviation from the diagonal below;
//! - `walkforward_tercile_coverage.png`: coverage of the 80 % interval in the calm, normal and
//!   turbulent terciles of the model's predicted volatility, against 80 % ± 5 points;
//! - `feature_importance.csv` (`feature,gain,share`, largest first) and
//!   `feature_importance.png` (the top [`TOP_FEATURES`]): the evaluated model's total split gain
//!   per feature, from its mean booster (the linear base margin's terms are not counted).
//!
//! The reliability and tercile plots need a model with a distribution and are skipped without.

use crate::{EvaluateError, WalkForward};
use rps_core::distribution::score_intervals;
use rps_report::{BandPanel, month_ranges, next_month};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Calendar months per `walkforward_band_<k>.png`, stacked vertically.
pub const MONTHS_PER_IMAGE: usize = 3;
/// Features in `feature_importance.png`.
pub const TOP_FEATURES: usize = 20;
pub const RELIABILITY_PNG: &str = "walkforward_reliability.png";
pub const TERCILE_PNG: &str = "walkforward_tercile_coverage.png";
pub const IMPORTANCE_CSV: &str = "feature_importance.csv";
pub const IMPORTANCE_PNG: &str = "feature_importance.png";

/// The name of the `k`-th (0-based) band image.
pub fn band_png(k: usize) -> String {
    format!("walkforward_band_{}.png", k + 1)
}

/// Every file of this module for the walk-forward `w` and the evaluated model's feature
/// importance (name → total gain), as (file name, bytes).
pub fn walk_forward_plots(
    w: &WalkForward,
    importance: &BTreeMap<String, f64>,
    symbol: &str,
) -> Result<Vec<(String, Vec<u8>)>, EvaluateError> {
    let mut files = band_plots(w, symbol)?;
    files.extend(distribution_plots(w, symbol)?);
    files.extend(importance_files(importance, symbol)?);
    Ok(files)
}

/// The folds' values of the forecast or quantile column `name`, end to end (`None` when a fold
/// lacks it).
fn pooled(w: &WalkForward, name: &str) -> Option<Vec<f64>> {
    let mut out = Vec::new();
    for f in &w.folds {
        let (_, v) = f
            .forecasts
            .iter()
            .chain(&f.quantiles)
            .find(|(n, _)| n == name)?;
        out.extend_from_slice(v);
    }
    Some(out)
}

fn month_name(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(String::new, |d| d.format("%Y-%m").to_string())
}

/// `walkforward_band_<k>.png`: a panel per calendar month, [`MONTHS_PER_IMAGE`] per image.
fn band_plots(w: &WalkForward, symbol: &str) -> Result<Vec<(String, Vec<u8>)>, EvaluateError> {
    let ts: Vec<i64> = w.folds.iter().flat_map(|f| f.ts.iter().copied()).collect();
    let realized: Vec<f64> = w
        .folds
        .iter()
        .flat_map(|f| f.realized.iter().copied())
        .collect();
    let Some(mean) = pooled(w, "model") else {
        return Ok(Vec::new());
    };
    let median = pooled(w, "model_median");
    let band = pooled(w, "model_q10").zip(pooled(w, "model_q90"));
    let months = month_ranges(&ts);
    let mut files = Vec::new();
    for (k, chunk) in months.chunks(MONTHS_PER_IMAGE).enumerate() {
        let panels: Vec<BandPanel<'_>> = chunk
            .iter()
            .map(|(m, r)| {
                let r = r.clone();
                let month = month_name(*m);
                let title = match &band {
                    Some((lo, hi)) => {
                        let b: Vec<(f64, f64)> = r.clone().map(|i| (lo[i], hi[i])).collect();
                        let s = score_intervals(&b, &realized[r.clone()], 0.8);
                        format!(
                            "{symbol} {month}: realized hourly σ vs the model's 80 % interval — coverage {:.1} % of {} hours",
                            s.coverage * 100.0,
                            s.n
                        )
                    }
                    None => format!("{symbol} {month}: realized hourly σ vs the model's mean"),
                };
                let mut lines = vec![("model mean", &mean[r.clone()])];
                if let Some(md) = &median {
                    lines.push(("model median", &md[r.clone()]));
                }
                BandPanel {
                    title,
                    ts: &ts[r.clone()],
                    realized: &realized[r.clone()],
                    band: band
                        .as_ref()
                        .map(|(lo, hi)| (&lo[r.clone()], &hi[r.clone()])),
                    lines,
                    span: Some((*m, next_month(*m))),
                }
            })
            .collect();
        let png = rps_report::band_png(&panels, "model 80 % interval (q10–q90)", 1400, 340)?;
        files.push((band_png(k), png));
    }
    Ok(files)
}

/// `walkforward_reliability.png` and `walkforward_tercile_coverage.png`, from the pooled
/// distribution summaries (none without them).
fn distribution_plots(
    w: &WalkForward,
    symbol: &str,
) -> Result<Vec<(String, Vec<u8>)>, EvaluateError> {
    if w.distribution.is_empty() {
        return Ok(Vec::new());
    }
    let n: usize = w.folds.iter().map(|f| f.realized.len()).sum();
    let rel: Vec<(&str, &[(f64, f64)])> = w
        .distribution
        .iter()
        .map(|(name, d)| (name.as_str(), d.reliability.as_slice()))
        .collect();
    let reliability = rps_report::reliability_png(
        &rel,
        &format!(
            "{symbol} walk-forward: reliability of the quantile forecasts ({n} test hours, {} folds)",
            w.folds.len()
        ),
        900,
        1000,
    )?;
    let cov: Vec<(&str, &[f64])> = w
        .distribution
        .iter()
        .filter(|(_, d)| d.tercile_coverage_80.len() == 3)
        .map(|(name, d)| (name.as_str(), d.tercile_coverage_80.as_slice()))
        .collect();
    let terciles = rps_report::coverage_png(
        &["calm", "normal", "turbulent"],
        &cov,
        0.8,
        0.05,
        &format!(
            "{symbol} walk-forward: 80 % interval coverage by tercile of the model's predicted volatility"
        ),
        1000,
        560,
    )?;
    Ok(vec![
        (RELIABILITY_PNG.to_owned(), reliability),
        (TERCILE_PNG.to_owned(), terciles),
    ])
}

/// `feature_importance.csv` (feature, total gain, share of the total; largest first) and
/// `feature_importance.png` (the top [`TOP_FEATURES`]).
fn importance_files(
    importance: &BTreeMap<String, f64>,
    symbol: &str,
) -> Result<Vec<(String, Vec<u8>)>, EvaluateError> {
    let items: Vec<(&str, f64)> = importance.iter().map(|(n, g)| (n.as_str(), *g)).collect();
    let rows = rps_report::shares(&items);
    let mut csv = String::from("feature,gain,share\n");
    for (name, gain, share) in &rows {
        let _ = writeln!(csv, "{name},{gain},{share:.6}");
    }
    let shown = rows.len().min(TOP_FEATURES);
    let height = u32::try_from(120 + 30 * shown.max(4)).unwrap_or(800);
    let png = rps_report::importance_png(
        &items,
        TOP_FEATURES,
        &format!(
            "{symbol} volatility model: feature importance (total gain, top {shown} of {})",
            rows.len()
        ),
        "share of the mean booster's total split gain (the linear base margin is not counted)",
        1000,
        height,
    )?;
    Ok(vec![
        (IMPORTANCE_CSV.to_owned(), csv.into_bytes()),
        (IMPORTANCE_PNG.to_owned(), png),
    ])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{DistributionSummary, FoldResult};
    use rps_core::metrics::{DieboldMariano, Scores};

    const H: i64 = 3_600_000;
    /// 2021-01-15 00:00 UTC.
    const T0: i64 = 1_610_668_800_000;

    fn fold(start: i64, n: usize, quantiles: bool) -> FoldResult {
        let ts: Vec<i64> = (0..n as i64).map(|i| start + i * H).collect();
        let realized: Vec<f64> = (0..n)
            .map(|i| 0.006 + 0.003 * ((i as f64) / 5.0).sin())
            .collect();
        let mean: Vec<f64> = realized.iter().map(|v| v * 1.1).collect();
        let q = |name: &str, k: f64| (name.to_owned(), mean.iter().map(|v| v * k).collect());
        let dm = DieboldMariano {
            mean_diff: 0.0,
            statistic: 0.0,
            p_value: 1.0,
        };
        FoldResult {
            train_rows: 100,
            validation_rows: 20,
            best_iteration: None,
            smearing: 1.0,
            power: None,
            ts,
            realized,
            forecasts: vec![("model".to_owned(), mean.clone())],
            scores: Vec::<(String, Scores)>::new(),
            dm_vs_har: dm,
            quantiles: if quantiles {
                vec![
                    q("model_q10", 0.6),
                    q("model_q50", 1.0),
                    q("model_q90", 1.5),
                ]
            } else {
                Vec::new()
            },
            baseline_quantiles: Vec::new(),
        }
    }

    fn walk(quantiles: bool) -> WalkForward {
        // Two folds of 35 days from mid-January: January, February, March (one image).
        let folds = vec![
            fold(T0, 24 * 35, quantiles),
            fold(T0 + 24 * 35 * H, 24 * 35, quantiles),
        ];
        let summary = DistributionSummary {
            intervals: Vec::new(),
            reliability: vec![(0.1, 0.12), (0.5, 0.49), (0.9, 0.88)],
            tercile_coverage_80: vec![0.83, 0.8, 0.75],
        };
        WalkForward {
            folds,
            pooled: Vec::new(),
            dm_vs_har: DieboldMariano {
                mean_diff: 0.0,
                statistic: 0.0,
                p_value: 1.0,
            },
            dm_log_vs_har: None,
            window: rps_core::walkforward::Window::Expanding,
            distribution: if quantiles {
                vec![("model".to_owned(), summary)]
            } else {
                Vec::new()
            },
        }
    }

    fn is_png(b: &[u8]) -> bool {
        b.starts_with(b"\x89PNG\r\n\x1a\n")
    }

    #[test]
    fn every_plot_of_a_distribution() {
        let imp = BTreeMap::from([
            ("har_1b".to_owned(), 30.0),
            ("har_24b".to_owned(), 10.0),
            ("hour_sin".to_owned(), 0.0),
        ]);
        let files = walk_forward_plots(&walk(true), &imp, "BTC-USDT").unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        // 70 days from 2021-01-15: January, February, March 2021 → one image of three months.
        assert_eq!(
            names,
            [
                "walkforward_band_1.png",
                RELIABILITY_PNG,
                TERCILE_PNG,
                IMPORTANCE_CSV,
                IMPORTANCE_PNG
            ]
        );
        for (name, bytes) in &files {
            if name.ends_with(".png") {
                assert!(is_png(bytes), "{name}");
            }
        }
        let csv = String::from_utf8(files[3].1.clone()).unwrap();
        assert_eq!(
            csv,
            "feature,gain,share\nhar_1b,30,0.750000\nhar_24b,10,0.250000\nhour_sin,0,0.000000\n"
        );
    }

    #[test]
    fn a_point_model_gets_its_mean_and_no_calibration_plots() {
        let mut w = walk(false);
        // A third fold into April: a second band image.
        w.folds.push(fold(T0 + 2 * 24 * 35 * H, 24 * 35, false));
        let files = walk_forward_plots(&w, &BTreeMap::new(), "BTC-USDT").unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "walkforward_band_1.png",
                "walkforward_band_2.png",
                IMPORTANCE_CSV,
                IMPORTANCE_PNG
            ]
        );
        assert!(
            files
                .iter()
                .filter(|(n, _)| n.ends_with(".png"))
                .all(|(_, b)| is_png(b))
        );
    }
}
