//! The data-quality checks behind the quality gate. Each check produces a [`CheckResult`]; the
//! gate passes when every check passes. A failed check names the offending bars (UTC timestamps)
//! in its detail and in `rows`.

use crate::candle::{Candle, Interval};
use crate::stats::ColumnStats;
use serde::{Deserialize, Serialize};

/// Thresholds (`quality:` in params.yaml). [`QualityParams::validate`] refuses nonsense (a
/// negative sigma, a share above 1); params.yaml is checked when it is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QualityParams {
    /// Fewest rows accepted.
    pub min_rows: usize,
    /// Largest share of missing values (empty cells, NaN) in any column.
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
    /// A spike is a bar out of line with both neighbours by more than this many robust sigmas
    /// of the log returns: the close jumps and comes straight back (within 3 bars), or the high
    /// (low) sticks out that far beyond the bar's own open/close and both neighbours' highs
    /// (lows). At the first and last bar the one neighbour decides.
    pub spike_sigmas: f64,
    /// Most spikes accepted.
    pub max_spikes: usize,
    /// Longest run of consecutive bars with identical open, high, low and close (a frozen feed,
    /// whatever the volume).
    pub max_frozen_bars: usize,
    /// Largest price (open, high, low, close) accepted: a sanity rail far above any real quote
    /// and far below where derived values (squares, variances) overflow.
    pub max_price: f64,
    /// Largest volume accepted.
    pub max_volume: f64,
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
            spike_sigmas: 50.0,
            max_spikes: 0,
            max_frozen_bars: 24,
            max_price: 1e9,
            max_volume: 1e13,
            max_staleness: None,
        }
    }
}

/// A nonsensical threshold in `quality:`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quality.{key}: {problem}")]
pub struct QualityParamsError {
    pub key: &'static str,
    pub problem: String,
}

impl QualityParams {
    /// Refuse thresholds that cannot mean anything: shares outside 0..=1, sigmas and magnitude
    /// limits that are not positive finite numbers, a frozen-run limit of 0.
    pub fn validate(&self) -> Result<(), QualityParamsError> {
        let shares = [
            ("max_null_fraction", self.max_null_fraction),
            ("max_duplicate_fraction", self.max_duplicate_fraction),
            ("max_gap_fraction", self.max_gap_fraction),
            (
                "max_ohlc_violation_fraction",
                self.max_ohlc_violation_fraction,
            ),
            ("max_outlier_fraction", self.max_outlier_fraction),
        ];
        for (key, v) in shares {
            if !(0.0..=1.0).contains(&v) {
                return Err(QualityParamsError {
                    key,
                    problem: format!("{v} is not a share between 0 and 1"),
                });
            }
        }
        let positive = [
            ("outlier_sigmas", self.outlier_sigmas),
            ("spike_sigmas", self.spike_sigmas),
            ("max_price", self.max_price),
            ("max_volume", self.max_volume),
        ];
        for (key, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(QualityParamsError {
                    key,
                    problem: format!("{v} must be a positive finite number"),
                });
            }
        }
        if self.max_frozen_bars == 0 {
            return Err(QualityParamsError {
                key: "max_frozen_bars",
                problem: "0 would refuse every bar; use 1 or more".to_owned(),
            });
        }
        Ok(())
    }
}

/// Deserialize and [`QualityParams::validate`] (the `quality:` section of params.yaml), so a
/// nonsensical threshold fails when the file is read, naming the key.
pub fn deserialize_checked<'de, D>(d: D) -> Result<QualityParams, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let p = QualityParams::deserialize(d)?;
    p.validate().map_err(serde::de::Error::custom)?;
    Ok(p)
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
    /// UTC timestamps (RFC 3339) of the offending bars, at most [`MAX_ROWS_LISTED`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rows: Vec<String>,
}

/// Most offending bars a check lists in its `rows`.
pub const MAX_ROWS_LISTED: usize = 20;
/// Most offending bars a check names in its one-line detail.
const NAMED_IN_DETAIL: usize = 5;

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

/// `2018-03-01T04:00:00Z` for epoch milliseconds (proleptic Gregorian, UTC).
pub fn rfc3339(ts_ms: i64) -> String {
    let days = ts_ms.div_euclid(86_400_000);
    let ms = ts_ms.rem_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, mi, s) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60);
    let frac = ms % 1000;
    if frac == 0 {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{frac:03}Z")
    }
}

/// The bars a check found, as listed in its detail (`: a, b, … and 3 more`) and `rows`.
struct Found {
    labels: Vec<String>,
    count: usize,
}

impl Found {
    fn new() -> Self {
        Self {
            labels: Vec::new(),
            count: 0,
        }
    }

    fn add(&mut self, label: String) {
        self.count += 1;
        if self.labels.len() < MAX_ROWS_LISTED {
            self.labels.push(label);
        }
    }

    fn named(&self) -> String {
        if self.count == 0 {
            return String::new();
        }
        let shown: Vec<&str> = self
            .labels
            .iter()
            .take(NAMED_IN_DETAIL)
            .map(String::as_str)
            .collect();
        let more = self.count - shown.len();
        let tail = if more > 0 {
            format!(" … and {more} more")
        } else {
            String::new()
        };
        format!(": {}{tail}", shown.join(", "))
    }
}

fn check(name: &str, value: f64, threshold: f64, detail: String, found: Found) -> CheckResult {
    CheckResult {
        name: name.to_owned(),
        passed: value <= threshold,
        value,
        threshold,
        detail,
        rows: found.labels,
    }
}

fn share(count: usize, total: usize) -> f64 {
    if total == 0 {
        0.0
    } else {
        count as f64 / total as f64
    }
}

/// A named numeric column of a candle.
type Column = (&'static str, fn(&Candle) -> f64);

const COLUMNS: [Column; 5] = [
    ("open", |c| c.open),
    ("high", |c| c.high),
    ("low", |c| c.low),
    ("close", |c| c.close),
    ("volume", |c| c.volume),
];

/// Longest number of bars a close-to-close spike may span before it comes back.
const MAX_SPIKE_BARS: usize = 3;

/// Run every check on `bars` in the order they were stored (not de-duplicated, not sorted).
/// `schema_problems` are problems the reader found (missing or mistyped columns): each fails the
/// `schema` check. `now_ms` is the current time, for freshness.
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
        rows: Vec::new(),
    }];
    checks.push(CheckResult {
        name: "min_rows".to_owned(),
        passed: n >= p.min_rows,
        value: n as f64,
        threshold: p.min_rows as f64,
        detail: format!("{n} rows (need at least {})", p.min_rows),
        rows: Vec::new(),
    });

    checks.push(nulls(bars, p));
    checks.push(non_finite(bars));
    // Off-grid bars take the slot they opened in (`candle::snap_to_grid`, the policy transform
    // applies too): every check below sees the snapped series.
    let mut snapped = bars.to_vec();
    let off = crate::candle::snap_to_grid(&mut snapped, interval);
    let mut sorted = snapped.clone();
    crate::candle::sort_dedup(&mut sorted);
    checks.push(magnitude(&sorted, p));

    let mut ts: Vec<i64> = bars.iter().map(|c| c.ts).collect();
    ts.sort_unstable();
    let mut dup_found = Found::new();
    for w in ts.windows(2).filter(|w| w[0] == w[1]) {
        dup_found.add(rfc3339(w[0]));
    }
    let dups = dup_found.count;
    checks.push(check(
        "duplicates",
        share(dups, n),
        p.max_duplicate_fraction,
        format!("{dups} duplicate timestamps{}", dup_found.named()),
        dup_found,
    ));

    checks.push(off_grid(&off, interval));
    let mut ts: Vec<i64> = snapped.iter().map(|c| c.ts).collect();
    ts.sort_unstable();
    ts.dedup();
    let (gaps, expected) = match (ts.first(), ts.last()) {
        (Some(&a), Some(&b)) => {
            let expected = usize::try_from((b - a) / interval.ms() + 1).unwrap_or(0);
            (expected.saturating_sub(ts.len()), expected)
        }
        _ => (0, 0),
    };
    let runs = ts
        .windows(2)
        .filter(|w| w[1] - w[0] > interval.ms())
        .count();
    let largest = ts.windows(2).max_by_key(|w| w[1] - w[0]);
    let longest_missing = largest.map_or(0, |w| (w[1] - w[0]) / interval.ms() - 1);
    let largest_at = largest
        .filter(|_| longest_missing > 0)
        .map_or_else(String::new, |w| format!(" after {}", rfc3339(w[0])));
    checks.push(check(
        "gaps",
        share(gaps, expected),
        p.max_gap_fraction,
        format!(
            "{gaps} missing bars of {expected} on the {interval} grid in {runs} gaps (longest {longest_missing} bars, {:.1} h{largest_at})",
            (longest_missing * interval.ms()) as f64 / 3_600_000.0
        ),
        Found::new(),
    ));

    checks.push(ohlc_sanity(bars, p));

    let sigma = robust_sigma(&sorted);
    checks.push(outliers(&sorted, sigma, p));
    checks.push(spikes(&sorted, sigma, interval, p));
    checks.push(frozen(&sorted, p));

    if let Some(max_age) = p.max_staleness {
        let last_close = ts.last().map_or(i64::MIN, |t| t + interval.ms());
        let age_h = (now_ms.saturating_sub(last_close)) as f64 / 3_600_000.0;
        checks.push(check(
            "freshness",
            age_h,
            max_age.ms() as f64 / 3_600_000.0,
            format!("last bar closed {age_h:.1} h ago (limit {max_age})"),
            Found::new(),
        ));
    }

    let columns = COLUMNS
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

/// Missing values (empty cells, NaN) in the worst column.
fn nulls(bars: &[Candle], p: &QualityParams) -> CheckResult {
    let mut worst: (&str, Found) = ("", Found::new());
    for (name, f) in COLUMNS {
        let mut found = Found::new();
        for c in bars.iter().filter(|c| f(c).is_nan()) {
            found.add(rfc3339(c.ts));
        }
        if found.count > worst.1.count {
            worst = (name, found);
        }
    }
    let (name, found) = worst;
    let detail = if found.count == 0 {
        "no missing values".to_owned()
    } else {
        format!(
            "{} missing values in column `{name}`{}",
            found.count,
            found.named()
        )
    };
    check(
        "nulls",
        share(found.count, bars.len()),
        p.max_null_fraction,
        detail,
        found,
    )
}

/// ±infinity anywhere: never a "missing" value, always a failure.
fn non_finite(bars: &[Candle]) -> CheckResult {
    let mut found = Found::new();
    for c in bars {
        for (name, f) in COLUMNS {
            let v = f(c);
            if v.is_infinite() {
                found.add(format!("{} {name}={v}", rfc3339(c.ts)));
            }
        }
    }
    let detail = if found.count == 0 {
        "no infinite values".to_owned()
    } else {
        format!("{} infinite values{}", found.count, found.named())
    };
    check("non_finite", found.count as f64, 0.0, detail, found)
}

/// Prices and volumes beyond the sanity limits, and bars whose derived values (the return from
/// the previous close, the high/low range, their squares) are not finite.
fn magnitude(sorted: &[Candle], p: &QualityParams) -> CheckResult {
    let mut found = Found::new();
    let mut prev_close: Option<f64> = None;
    for c in sorted {
        let finite = |v: f64| v.is_finite();
        let big_price = [c.open, c.high, c.low, c.close]
            .iter()
            .find(|v| finite(**v) && v.abs() > p.max_price)
            .copied();
        let big_volume = finite(c.volume) && c.volume.abs() > p.max_volume;
        let label = if let Some(v) = big_price {
            Some(format!("{} price {v:e}", rfc3339(c.ts)))
        } else if big_volume {
            Some(format!("{} volume {:e}", rfc3339(c.ts), c.volume))
        } else {
            let ratio = prev_close.map_or(1.0, |pc| c.close / pc);
            let range = c.high / c.low;
            let derived_ok = |x: f64| x.is_nan() || (x * x).is_finite();
            (!(derived_ok(ratio) && derived_ok(range)))
                .then(|| format!("{} non-finite return or range", rfc3339(c.ts)))
        };
        if let Some(l) = label {
            found.add(l);
        }
        if c.close.is_finite() && c.close > 0.0 {
            prev_close = Some(c.close);
        }
    }
    let detail = format!(
        "{} bars with a price above {:e}, a volume above {:e} or non-finite derived values{}",
        found.count,
        p.max_price,
        p.max_volume,
        found.named()
    );
    check("magnitude", found.count as f64, 0.0, detail, found)
}

/// Bars off the grid ([`crate::candle::snap_to_grid`]): snapped to the slot they opened in and
/// counted (the check passes, its `rows` list them as a warning); it fails only when a snapped
/// bar lands on a slot that holds another bar, and then lists those slots.
fn off_grid(off: &crate::candle::OffGrid, interval: Interval) -> CheckResult {
    let mut found = Found::new();
    for &slot in &off.collisions {
        found.add(format!("{} collision", rfc3339(slot)));
    }
    let collisions = found.count;
    for &(stamped, _) in &off.snapped {
        found.add(rfc3339(stamped));
    }
    let n = off.snapped.len();
    let detail = if n == 0 {
        format!("no timestamps off the {interval} grid")
    } else {
        format!(
            "{n} timestamps off the grid snapped to the {interval} slot they opened in, {collisions} landing on a slot that holds another bar{}",
            found.named()
        )
    };
    check("off_grid", collisions as f64, 0.0, detail, found)
}

/// low ≤ open, close ≤ high; prices > 0; volume ≥ 0. Rows with a missing value are left to the
/// `nulls` check; infinite values are judged here too (and fail `non_finite`).
fn ohlc_sanity(bars: &[Candle], p: &QualityParams) -> CheckResult {
    let mut found = Found::new();
    for c in bars {
        let vals = [c.open, c.high, c.low, c.close, c.volume];
        if vals.iter().any(|v| v.is_nan()) {
            continue;
        }
        let prices_ok = [c.open, c.high, c.low, c.close].iter().all(|v| *v > 0.0);
        let range_ok = c.low <= c.open && c.low <= c.close && c.open <= c.high && c.close <= c.high;
        if !(prices_ok && range_ok && c.volume >= 0.0) {
            found.add(rfc3339(c.ts));
        }
    }
    check(
        "ohlc_sanity",
        share(found.count, bars.len()),
        p.max_ohlc_violation_fraction,
        format!(
            "{} rows break low <= open, close <= high, prices > 0 or volume >= 0{}",
            found.count,
            found.named()
        ),
        found,
    )
}

/// Log returns between consecutive closes (sorted bars): `(index of the later bar, return)`,
/// only where both closes are finite and positive.
fn returns(sorted: &[Candle]) -> Vec<(usize, f64)> {
    sorted
        .windows(2)
        .enumerate()
        .filter_map(|(i, w)| {
            let r = (w[1].close / w[0].close).ln();
            (w[0].close > 0.0 && w[1].close > 0.0 && r.is_finite()).then_some((i + 1, r))
        })
        .collect()
}

/// Median and robust sigma (1.4826 · MAD) of the close-to-close log returns; sigma 0 when
/// there are too few returns or they do not vary.
fn robust_sigma(sorted: &[Candle]) -> (f64, f64) {
    let mut rets: Vec<f64> = returns(sorted).into_iter().map(|(_, r)| r).collect();
    if rets.len() <= 2 {
        return (0.0, 0.0);
    }
    rets.sort_by(f64::total_cmp);
    let med = crate::stats::quantile_sorted(&rets, 0.5);
    let mut dev: Vec<f64> = rets.iter().map(|r| (r - med).abs()).collect();
    dev.sort_by(f64::total_cmp);
    (med, 1.4826 * crate::stats::quantile_sorted(&dev, 0.5))
}

fn outliers(sorted: &[Candle], (med, sigma): (f64, f64), p: &QualityParams) -> CheckResult {
    let rets = returns(sorted);
    let mut found = Found::new();
    if sigma > 0.0 {
        for (i, r) in &rets {
            if ((r - med) / sigma).abs() > p.outlier_sigmas {
                found.add(rfc3339(sorted[*i].ts));
            }
        }
    }
    check(
        "outliers",
        share(found.count, rets.len()),
        p.max_outlier_fraction,
        format!(
            "{} returns beyond {} robust sigmas{}",
            found.count,
            p.outlier_sigmas,
            found.named()
        ),
        found,
    )
}

/// Bars out of line with both neighbours (see [`QualityParams::spike_sigmas`]).
fn spikes(
    sorted: &[Candle],
    (_, sigma): (f64, f64),
    interval: Interval,
    p: &QualityParams,
) -> CheckResult {
    let n = sorted.len();
    let k = p.spike_sigmas;
    let mut found = Found::new();
    if sigma > 0.0 && n >= 2 {
        // z[j]: the return into bar j in sigmas, scaled for the time between the bars.
        let mut z: Vec<Option<f64>> = vec![None; n];
        for (j, r) in returns(sorted) {
            let bars_apart =
                ((sorted[j].ts - sorted[j - 1].ts) as f64 / interval.ms() as f64).max(1.0);
            z[j] = Some(r / (sigma * bars_apart.sqrt()));
        }
        let big = |j: usize| z[j].filter(|v| v.abs() > k);
        let mut j = 1;
        while j < n {
            if let Some(a) = big(j) {
                let back = (j + 1..=(j + MAX_SPIKE_BARS).min(n - 1))
                    .find(|&m| big(m).is_some_and(|b| b.signum() != a.signum()));
                let (first, last) = match back {
                    Some(m) => (Some(j), Some(m - 1)),
                    None if j == n - 1 => (Some(j), Some(j)),
                    None if j == 1 => (Some(0), Some(0)),
                    None => (None, None),
                };
                if let (Some(f), Some(l)) = (first, last) {
                    let span = if f == l {
                        rfc3339(sorted[f].ts)
                    } else {
                        format!("{}..{}", rfc3339(sorted[f].ts), rfc3339(sorted[l].ts))
                    };
                    found.add(format!("{span} close {:.1} sigmas out and back", a.abs()));
                    j = back.map_or(j + 1, |m| m + 1);
                    continue;
                }
            }
            j += 1;
        }
        // Wicks: a high (low) beyond its own body and both neighbours' extremes.
        let log_sigmas = |num: f64, den: f64| {
            let r = (num / den).ln() / sigma;
            if r.is_finite() { r } else { 0.0 }
        };
        for (i, c) in sorted.iter().enumerate() {
            let neighbours: Vec<&Candle> = [i.checked_sub(1), (i + 1 < n).then_some(i + 1)]
                .into_iter()
                .flatten()
                .map(|x| &sorted[x])
                .collect();
            let hi_next = neighbours.iter().map(|x| x.high).fold(f64::NAN, f64::max);
            let lo_next = neighbours.iter().map(|x| x.low).fold(f64::NAN, f64::min);
            let up = log_sigmas(c.high, c.open.max(c.close)).min(log_sigmas(c.high, hi_next));
            let down = log_sigmas(c.open.min(c.close), c.low).min(log_sigmas(lo_next, c.low));
            if up > k {
                found.add(format!(
                    "{} high {up:.1} sigmas above its neighbours",
                    rfc3339(c.ts)
                ));
            } else if down > k {
                found.add(format!(
                    "{} low {down:.1} sigmas below its neighbours",
                    rfc3339(c.ts)
                ));
            }
        }
    }
    check(
        "spikes",
        found.count as f64,
        p.max_spikes as f64,
        format!(
            "{} bars out of line with both neighbours by more than {k} robust sigmas{}",
            found.count,
            found.named()
        ),
        found,
    )
}

/// Rows that share a timestamp, from [`find_duplicates`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Duplicates {
    /// Extra rows that repeat an earlier row exactly (safe to collapse).
    pub identical: usize,
    /// Timestamps whose rows disagree, with the rows' indices (input order).
    pub conflicting: Vec<(i64, Vec<usize>)>,
}

/// Group `bars` by timestamp: exact copies are counted, disagreeing rows are listed.
pub fn find_duplicates(bars: &[Candle]) -> Duplicates {
    let mut idx: Vec<usize> = (0..bars.len()).collect();
    idx.sort_by_key(|&i| bars[i].ts);
    let same = |a: &Candle, b: &Candle| {
        COLUMNS.iter().all(|(_, f)| {
            let (x, y) = (f(a), f(b));
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
        }) && (
            a.quote_volume,
            a.trades,
            a.taker_buy_volume,
            a.taker_buy_quote_volume,
        ) == (
            b.quote_volume,
            b.trades,
            b.taker_buy_volume,
            b.taker_buy_quote_volume,
        )
    };
    let mut out = Duplicates::default();
    for group in idx.chunk_by(|&a, &b| bars[a].ts == bars[b].ts) {
        if group.len() < 2 {
            continue;
        }
        let first = &bars[group[0]];
        if group.iter().all(|&i| same(first, &bars[i])) {
            out.identical += group.len() - 1;
        } else {
            out.conflicting.push((first.ts, group.to_vec()));
        }
    }
    out
}

/// Runs of consecutive bars with identical open, high, low and close.
fn frozen(sorted: &[Candle], p: &QualityParams) -> CheckResult {
    let same = |a: &Candle, b: &Candle| {
        [a.open, a.high, a.low, a.close]
            .iter()
            .zip([b.open, b.high, b.low, b.close])
            .all(|(x, y)| x.to_bits() == y.to_bits() && !x.is_nan())
    };
    let mut found = Found::new();
    let mut longest = usize::from(!sorted.is_empty());
    let mut start = 0;
    for i in 1..=sorted.len() {
        if i < sorted.len() && same(&sorted[i - 1], &sorted[i]) {
            continue;
        }
        let len = i - start;
        longest = longest.max(len);
        if len > p.max_frozen_bars {
            found.add(format!(
                "{}..{} ({len} bars)",
                rfc3339(sorted[start].ts),
                rfc3339(sorted[i - 1].ts)
            ));
        }
        start = i;
    }
    check(
        "frozen",
        longest as f64,
        p.max_frozen_bars as f64,
        format!(
            "longest run of identical OHLC bars: {longest} (limit {}){}",
            p.max_frozen_bars,
            found.named()
        ),
        found,
    )
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
                    ..Default::default()
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
                "spikes",
                "freshness"
            ]
        );
        assert!(r.checks.iter().any(|c| c.name == "nulls" && c.passed));
        let gaps = r.checks.iter().find(|c| c.name == "gaps").unwrap();
        assert!(gaps.detail.starts_with("1 missing bars"), "{}", gaps.detail);
        let r = run(&series(10), Interval::H1, &[], &QualityParams::default(), 0);
        assert_eq!(failed(&r), vec!["min_rows"]);
    }

    fn check_of<'a>(r: &'a QualityReport, name: &str) -> &'a CheckResult {
        r.checks.iter().find(|c| c.name == name).unwrap()
    }

    fn gate(bars: &[Candle]) -> QualityReport {
        run(bars, Interval::H1, &[], &QualityParams::default(), 0)
    }

    #[test]
    fn infinity_is_its_own_failure_not_a_missing_value() {
        let mut bars = series(600);
        bars[100].high = f64::INFINITY;
        bars[200].low = f64::NEG_INFINITY;
        let r = gate(&bars);
        assert!(failed(&r).contains(&"non_finite"), "{:?}", failed(&r));
        let c = check_of(&r, "non_finite");
        assert_eq!(c.value, 2.0);
        assert!(
            c.detail.contains("1970-01-05T04:00:00Z high=inf")
                && c.detail.contains("1970-01-09T08:00:00Z low=-inf"),
            "{}",
            c.detail
        );
        assert_eq!(check_of(&r, "nulls").value, 0.0, "inf is not missing");
        // The -inf low breaks OHLC sanity too: non-finite rows are no longer skipped.
        assert!(
            check_of(&r, "ohlc_sanity")
                .detail
                .contains("1970-01-09T08:00:00Z")
        );
    }

    #[test]
    fn a_bar_out_of_line_with_both_neighbours_is_a_spike() {
        let quiet = |bars: &[Candle]| {
            let r = gate(bars);
            assert!(r.passed, "{:?}", failed(&r));
        };
        let base = series(2000);
        quiet(&base);
        for factor in [10.0, 100.0, 0.01] {
            let mut bars = base.clone();
            let b = &mut bars[700];
            (b.open, b.high, b.low, b.close) = (
                b.open * factor,
                b.high * factor,
                b.low * factor,
                b.close * factor,
            );
            let r = gate(&bars);
            let c = check_of(&r, "spikes");
            assert!(!c.passed, "x{factor}: {}", c.detail);
            assert_eq!(c.rows.len(), 1, "{:?}", c.rows);
            assert!(
                c.rows[0].starts_with("1970-01-30T04:00:00Z close"),
                "{:?}",
                c.rows
            );
        }
        // Two bars up and back.
        let mut bars = base.clone();
        for b in &mut bars[900..902] {
            b.close *= 3.0;
            b.high *= 3.0;
            b.open *= 3.0;
            b.low *= 3.0;
        }
        let c = check_of(&gate(&bars), "spikes").clone();
        assert!(
            c.rows[0].starts_with("1970-02-07T12:00:00Z..1970-02-07T13:00:00Z"),
            "{:?}",
            c.rows
        );
        // A wick: the high alone, far above the bar's body and both neighbours.
        let mut bars = base.clone();
        bars[1200].high *= 10.0;
        let c = check_of(&gate(&bars), "spikes").clone();
        assert!(c.rows[0].contains("high"), "{:?}", c.rows);
        // The last bar, against its only neighbour.
        let mut bars = base.clone();
        let last = bars.len() - 1;
        bars[last].close *= 100.0;
        bars[last].high *= 100.0;
        assert!(!check_of(&gate(&bars), "spikes").passed);
        // A level shift that stays is not a spike.
        let mut bars = base.clone();
        for b in &mut bars[1000..] {
            b.open *= 2.0;
            b.high *= 2.0;
            b.low *= 2.0;
            b.close *= 2.0;
        }
        assert!(check_of(&gate(&bars), "spikes").passed);
    }

    #[test]
    fn a_frozen_feed_fails_whatever_its_volume() {
        for volume in [0.0, 3.0] {
            let mut bars = series(1000);
            let frozen = bars[300];
            for b in &mut bars[300..500] {
                *b = Candle {
                    ts: b.ts,
                    volume,
                    ..frozen
                };
            }
            let r = gate(&bars);
            let c = check_of(&r, "frozen");
            assert!(!c.passed);
            assert_eq!(c.value, 200.0);
            assert_eq!(
                c.rows,
                vec!["1970-01-13T12:00:00Z..1970-01-21T19:00:00Z (200 bars)"]
            );
        }
        // Up to the limit is fine (the real samples hold runs of 15 flat hours).
        let mut bars = series(1000);
        let flat = Candle {
            open: 90.0,
            high: 90.0,
            low: 90.0,
            close: 90.0,
            volume: 0.0,
            ts: 0,
            ..Default::default()
        };
        for b in &mut bars[300..324] {
            *b = Candle { ts: b.ts, ..flat };
        }
        assert!(check_of(&gate(&bars), "frozen").passed);
    }

    #[test]
    fn absurd_magnitudes_fail_naming_the_row() {
        let mut bars = series(600);
        bars[50].close = 1e308;
        bars[50].high = 1e308;
        let r = gate(&bars);
        let c = check_of(&r, "magnitude");
        assert!(!c.passed);
        assert!(
            c.detail.contains("1970-01-03T02:00:00Z price 1e308"),
            "{}",
            c.detail
        );
        let mut bars = series(600);
        bars[60].volume = 1e300;
        assert!(
            check_of(&gate(&bars), "magnitude")
                .detail
                .contains("volume 1e300")
        );
        // A tiny positive price: the ratio to its neighbour squares to infinity.
        let mut bars = series(600);
        bars[70].low = 1e-300;
        let c = check_of(&gate(&bars), "magnitude").clone();
        assert!(
            c.detail.contains("non-finite return or range"),
            "{}",
            c.detail
        );
    }

    #[test]
    fn duplicates_are_split_into_identical_and_conflicting() {
        let mut bars = series(10);
        bars.push(bars[3]);
        bars.push(bars[3]);
        let mut other = bars[5];
        other.close += 1.0;
        bars.push(other);
        bars[7].volume = f64::NAN;
        bars.push(bars[7]);
        let d = find_duplicates(&bars);
        assert_eq!(d.identical, 3);
        assert_eq!(d.conflicting, vec![(5 * H, vec![5, 12])]);
    }

    #[test]
    fn nonsensical_thresholds_are_refused_naming_the_key() {
        assert!(QualityParams::default().validate().is_ok());
        for (yaml, key) in [
            ("outlier_sigmas: -3", "quality.outlier_sigmas"),
            ("spike_sigmas: 0", "quality.spike_sigmas"),
            ("max_null_fraction: 1.5", "quality.max_null_fraction"),
            ("max_gap_fraction: -0.1", "quality.max_gap_fraction"),
            ("max_price: .nan", "quality.max_price"),
            ("max_frozen_bars: 0", "quality.max_frozen_bars"),
        ] {
            let err =
                serde_yaml::from_str::<crate::params::Params>(&format!("quality:\n  {yaml}\n"))
                    .unwrap_err()
                    .to_string();
            assert!(err.contains(key), "{yaml}: {err}");
        }
    }

    #[test]
    fn timestamps_print_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_519_862_400_000), "2018-03-01T00:00:00Z");
        assert_eq!(rfc3339(1_518_168_494_000), "2018-02-09T09:28:14Z");
        assert_eq!(rfc3339(951_782_400_500), "2000-02-29T00:00:00.500Z");
        assert_eq!(rfc3339(-1000), "1969-12-31T23:59:59Z");
    }
}
