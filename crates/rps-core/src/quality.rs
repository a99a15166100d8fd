//! The data-quality checks behind the quality gate. Each check produces a [`CheckResult`]; the
//! gate passes when every check passes.

use crate::candle::{Candle, Interval};
use crate::stats::ColumnStats;
use serde::{Deserialize, Serialize};

/// Thresholds (`quality:` in params.yaml).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QualityParams {
    /// Fewest rows accepted.
    pub min_rows: usize,
    /// Largest share of missing values in any column.
    pub max_null_fraction: f64,
    /// Largest share of rows whose timestamp repeats an earlier row's.
    pub max_duplicate_fraction: f64,
    /// Largest share of missing bars in the grid between the first and last bar.
    pub max_gap_fraction: f64,
    /// Largest share of rows breaking OHLC sanity (low ≤ open, close ≤ high; prices > 0; volume ≥ 0).
    pub max_ohlc_violation_fraction: f64,
    /// A log return further than this many robust sigmas (1.4826 · MAD) from the median is an outlier.
    pub outlier_sigmas: f64,
    /// Largest share of outlier returns.
    pub max_outlier_fraction: f64,
    /// Largest age of the last bar, as an interval such as `2h`; `null` turns the check off
    /// (backfills).
    pub max_staleness: Option<Interval>,
}

impl Default for QualityParams {
    fn default() -> Self {
        Self {
            min_rows: 500,
            max_null_fraction: 0.01,
            max_duplicate_fraction: 0.0,
            max_gap_fraction: 0.01,
            max_ohlc_violation_fraction: 0.0,
            outlier_sigmas: 20.0,
            max_outlier_fraction: 0.001,
            max_staleness: None,
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    /// The measured value (a count, a share, an age in hours).
    pub value: f64,
    /// The limit it was held against.
    pub threshold: f64,
    /// One line a human can act on.
    pub detail: String,
}

/// Everything the quality stage found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityReport {
    pub passed: bool,
    pub rows: usize,
    pub first_ts: Option<i64>,
    pub last_ts: Option<i64>,
    pub interval: String,
    pub checks: Vec<CheckResult>,
    pub columns: Vec<ColumnStats>,
}

impl QualityReport {
    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(|c| !c.passed)
    }
}

fn check(name: &str, value: f64, threshold: f64, detail: String) -> CheckResult {
    CheckResult {
        name: name.to_owned(),
        passed: value <= threshold,
        value,
        threshold,
        detail,
    }
}

fn share(count: usize, total: usize) -> f64 {
    if total == 0 {
        0.0
    } else {
        count as f64 / total as f64
    }
}

/// Run every check on `bars` in the order they were stored (not de-duplicated, not sorted).
/// `schema_problems` are problems the reader found (missing or mistyped columns): each fails the
/// `schema` check. `now_ms` is the current time, for freshness.
/// A named numeric column of a candle.
type Column = (&'static str, fn(&Candle) -> f64);

pub fn run(
    bars: &[Candle],
    interval: Interval,
    schema_problems: &[String],
    p: &QualityParams,
    now_ms: i64,
) -> QualityReport {
    let n = bars.len();
    let mut checks = vec![CheckResult {
        name: "schema".to_owned(),
        passed: schema_problems.is_empty(),
        value: schema_problems.len() as f64,
        threshold: 0.0,
        detail: if schema_problems.is_empty() {
            "all columns present with numeric types".to_owned()
        } else {
            schema_problems.join("; ")
        },
    }];
    checks.push(CheckResult {
        name: "min_rows".to_owned(),
        passed: n >= p.min_rows,
        value: n as f64,
        threshold: p.min_rows as f64,
        detail: format!("{n} rows (need at least {})", p.min_rows),
    });

    let cols: [Column; 5] = [
        ("open", |c| c.open),
        ("high", |c| c.high),
        ("low", |c| c.low),
        ("close", |c| c.close),
        ("volume", |c| c.volume),
    ];
    let mut worst = ("", 0usize);
    for (name, f) in cols {
        let nulls = bars.iter().filter(|c| !f(c).is_finite()).count();
        if nulls > worst.1 {
            worst = (name, nulls);
        }
    }
    checks.push(check(
        "nulls",
        share(worst.1, n),
        p.max_null_fraction,
        if worst.1 == 0 {
            "no missing values".to_owned()
        } else {
            format!(
                "{} missing or non-finite values in column `{}`",
                worst.1, worst.0
            )
        },
    ));

    let mut ts: Vec<i64> = bars.iter().map(|c| c.ts).collect();
    ts.sort_unstable();
    let dups = ts.windows(2).filter(|w| w[0] == w[1]).count();
    checks.push(check(
        "duplicates",
        share(dups, n),
        p.max_duplicate_fraction,
        format!("{dups} duplicate timestamps"),
    ));

    let misaligned = ts.iter().filter(|&&t| interval.floor(t) != t).count();
    ts.dedup();
    let (gaps, expected) = match (ts.first(), ts.last()) {
        (Some(&a), Some(&b)) => {
            let expected = usize::try_from((b - a) / interval.ms() + 1).unwrap_or(0);
            (expected.saturating_sub(ts.len()), expected)
        }
        _ => (0, 0),
    };
    let largest_gap = ts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    checks.push(check(
        "gaps",
        share(gaps + misaligned, expected),
        p.max_gap_fraction,
        format!(
            "{gaps} missing bars of {expected} on the {interval} grid (largest gap {:.1} h), {misaligned} timestamps off the grid",
            largest_gap as f64 / 3_600_000.0
        ),
    ));

    let bad = bars
        .iter()
        .filter(|c| {
            let prices_ok = [c.open, c.high, c.low, c.close].iter().all(|v| *v > 0.0);
            let range_ok =
                c.low <= c.open && c.low <= c.close && c.open <= c.high && c.close <= c.high;
            let finite = [c.open, c.high, c.low, c.close, c.volume]
                .iter()
                .all(|v| v.is_finite());
            finite && !(prices_ok && range_ok && c.volume >= 0.0)
        })
        .count();
    checks.push(check(
        "ohlc_sanity",
        share(bad, n),
        p.max_ohlc_violation_fraction,
        format!("{bad} rows break low <= open, close <= high, prices > 0 or volume >= 0"),
    ));

    let mut sorted = bars.to_vec();
    crate::candle::sort_dedup(&mut sorted);
    let closes: Vec<f64> = sorted.iter().map(|c| c.close).collect();
    let mut rets: Vec<f64> = crate::volatility::log_returns(&closes)
        .into_iter()
        .filter(|r| r.is_finite())
        .collect();
    let outliers = if rets.len() > 2 {
        rets.sort_by(f64::total_cmp);
        let med = crate::stats::quantile_sorted(&rets, 0.5);
        let mut dev: Vec<f64> = rets.iter().map(|r| (r - med).abs()).collect();
        dev.sort_by(f64::total_cmp);
        let sigma = 1.4826 * crate::stats::quantile_sorted(&dev, 0.5);
        if sigma > 0.0 {
            rets.iter()
                .filter(|r| ((*r - med) / sigma).abs() > p.outlier_sigmas)
                .count()
        } else {
            0
        }
    } else {
        0
    };
    checks.push(check(
        "outliers",
        share(outliers, rets.len()),
        p.max_outlier_fraction,
        format!(
            "{outliers} returns beyond {} robust sigmas",
            p.outlier_sigmas
        ),
    ));

    if let Some(max_age) = p.max_staleness {
        let last_close = ts.last().map_or(i64::MIN, |t| t + interval.ms());
        let age_h = (now_ms.saturating_sub(last_close)) as f64 / 3_600_000.0;
        checks.push(check(
            "freshness",
            age_h,
            max_age.ms() as f64 / 3_600_000.0,
            format!("last bar closed {age_h:.1} h ago (limit {max_age})"),
        ));
    }

    let columns = cols
        .iter()
        .map(|(name, f)| ColumnStats::compute(name, &bars.iter().map(f).collect::<Vec<_>>(), 30))
        .collect();
    QualityReport {
        passed: checks.iter().all(|c| c.passed),
        rows: n,
        first_ts: ts.first().copied(),
        last_ts: ts.last().copied(),
        interval: interval.to_string(),
        checks,
        columns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn series(n: usize) -> Vec<Candle> {
        (0..n)
            .map(|i| {
                let c = 100.0 + (i as f64 * 0.3).sin();
                Candle {
                    ts: i as i64 * H,
                    open: c,
                    high: c + 0.5,
                    low: c - 0.5,
                    close: c + 0.1,
                    volume: 1.0,
                }
            })
            .collect()
    }

    fn failed(r: &QualityReport) -> Vec<&str> {
        r.failures().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn clean_data_passes() {
        let r = run(
            &series(600),
            Interval::H1,
            &[],
            &QualityParams::default(),
            0,
        );
        assert!(r.passed, "{:?}", failed(&r));
        assert_eq!(r.columns.len(), 5);
    }

    #[test]
    fn each_problem_fails_its_check() {
        let p = QualityParams {
            max_staleness: Some(Interval::H1),
            ..QualityParams::default()
        };
        let mut bars = series(600);
        bars[10].close = f64::NAN; // 1 null of 600 < 1 %: fine alone
        bars[11].low = bars[11].high + 1.0; // OHLC violation
        bars.push(bars[20]); // duplicate
        bars.remove(30); // a gap
        bars[40].close *= 5.0; // outlier
        let now = 600 * H + 5 * H;
        let r = run(
            &bars,
            Interval::H1,
            &["missing column `volume`".to_owned()],
            &p,
            now,
        );
        assert_eq!(
            failed(&r),
            vec![
                "schema",
                "duplicates",
                "ohlc_sanity",
                "outliers",
                "freshness"
            ]
        );
        assert!(r.checks.iter().any(|c| c.name == "nulls" && c.passed));
        let gaps = r.checks.iter().find(|c| c.name == "gaps").unwrap();
        assert!(gaps.detail.starts_with("1 missing bars"), "{}", gaps.detail);
        let r = run(&series(10), Interval::H1, &[], &QualityParams::default(), 0);
        assert_eq!(failed(&r), vec!["min_rows"]);
    }
}
