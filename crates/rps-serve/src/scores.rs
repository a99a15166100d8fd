//! Online accuracy: what `rps stream` scored (the PostgreSQL table `scores`, migration
//! crates/rps-stream/migrations/0004_scores.sql), read in the background and cached for
//! `GET /metrics` (rendered by [`crate::metrics::write_scores`]; no query per scrape).
//!
//! Every `monitor.refresh_seconds` a task reads, per symbol, the means of the last 24 hours and
//! 7 days of scored bars of every (model, version): the live versions under the served model's
//! name, the baselines `ewma` and `har_rv_log`. **The windows end at the newest scored bar of
//! the symbol**, not at the wall clock: a replay of history and a live stream read alike, and a
//! window is `(newest − 24 h, newest]` — a bar exactly 24 hours (7 days) before the newest is
//! not in it, so a window of hourly bars holds at most 24 (168) of them. Whether the newest
//! scored bar is recent is a separate gauge (`rps_score_newest_bar_age_seconds`).
//!
//! The queries are short and use the `(symbol, bar_time)` index (the distinct symbols by a loose
//! index scan, one range aggregate per symbol, the ratio to HAR-RV by the primary key), under a
//! statement timeout of `--store-timeout`. A failed refresh is logged and counted
//! (`rps_score_refresh_errors_total`) and keeps the last values; a database the stream has not
//! migrated to `scores` yet gives no score series (logged once).

use crate::state::{AppState, LiveSet};
use rps_core::params::MonitorParams;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The model name of the online EWMA baseline's scores.
pub const EWMA: &str = "ewma";
/// The model name of the online HAR-RV baseline's scores: the level forecast `exp(L) ·
/// smearing` of the live version's saved base-margin fit (its version in `scores.version`). What
/// the ratio `rps_score_qlike_ratio_vs_har` divides by.
pub const HAR: &str = "har_rv";
/// The log-scale HAR-RV, `exp(L)` without smearing: the ratio's baseline for versions saved
/// before their margin's smearing was recorded (they have no [`HAR`] rows).
pub const HAR_LOG: &str = "har_rv_log";

/// Bar length when the served model does not say (its schema's `bar`): one hour.
pub const DEFAULT_BAR_SECONDS: i64 = 3600;

/// Why the scores could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScoresError {
    #[error("could not connect to PostgreSQL: {}", pg_detail(.0))]
    Connect(#[source] tokio_postgres::Error),
    #[error("PostgreSQL query failed: {}", pg_detail(.0))]
    Query(#[source] tokio_postgres::Error),
    #[error("PostgreSQL did not answer within {0:?}")]
    Timeout(Duration),
}

/// A PostgreSQL error with the server's message (tokio-postgres displays a server error as
/// just "db error").
pub fn pg_detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({}): {}", e, db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// Count and means of one window of one series.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    pub count: i64,
    /// `None` when the window has no rows.
    pub qlike: Option<f64>,
    pub log_error: Option<f64>,
}

/// One (model, version) of one symbol.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub model: String,
    pub version: String,
    /// The live alias of the version (served model only), `""` for the baselines and versions
    /// no longer live.
    pub alias: String,
    pub day: Window,
    pub week: Window,
    /// 7-day share of the rows with a band whose realized value fell inside the 80 % interval,
    /// and how many rows had a band; `None` when none had.
    pub coverage_80: Option<(f64, i64)>,
}

/// A live version's 7-day mean QLIKE over HAR-RV's (same version) on the same bars.
#[derive(Debug, Clone, PartialEq)]
pub struct Ratio {
    pub alias: String,
    pub version: String,
    /// The HAR-RV divided by: [`HAR`], or [`HAR_LOG`] for a version without `har_rv` scores.
    pub baseline: &'static str,
    pub ratio: f64,
    /// The bars both were scored on.
    pub bars: i64,
}

/// The scores of one symbol.
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolScores {
    pub symbol: String,
    /// Unix seconds at which the newest scored bar closed (its `bar_time` + the bar length).
    pub newest_close: f64,
    pub series: Vec<Series>,
    pub ratios: Vec<Ratio>,
}

/// What the last successful refresh read, symbols in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub symbols: Vec<SymbolScores>,
}

/// The cache behind the `rps_score_*` series and its bookkeeping.
#[derive(Debug, Default)]
pub struct ScoreCache {
    snapshot: RwLock<Arc<Snapshot>>,
    /// Failed refreshes (`rps_score_refresh_errors_total`).
    pub errors: AtomicU64,
    /// Successful refreshes (tests wait on it).
    pub refreshes: AtomicU64,
    missing_logged: AtomicBool,
}

impl ScoreCache {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn store(&self, s: Snapshot) {
        *self
            .snapshot
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(s);
        self.refreshes.fetch_add(1, Ordering::Relaxed);
    }
}

/// The bar length of the served model (its schema's `bar`), else [`DEFAULT_BAR_SECONDS`].
pub fn bar_seconds(live: Option<&LiveSet>) -> i64 {
    live.and_then(LiveSet::primary)
        .and_then(|s| s.schema.bar.parse::<rps_core::candle::Interval>().ok())
        .map_or(DEFAULT_BAR_SECONDS, |b| b.ms() / 1000)
}

/// `rps_accuracy_max_score_age_seconds`: `(stale_bars + 1)` bars.
pub fn max_score_age(monitor: &MonitorParams, bar_seconds: i64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let bar = bar_seconds as f64;
    (f64::from(monitor.stale_bars) + 1.0) * bar
}

/// The live alias of `version` of the served model (the first, in live-set order), else `""`.
pub fn live_alias(
    live: Option<&LiveSet>,
    served_model: &str,
    model: &str,
    version: &str,
) -> String {
    if model != served_model {
        return String::new();
    }
    let Ok(v) = version.parse::<u32>() else {
        return String::new();
    };
    live.and_then(|l| l.aliases_of(v).first().map(|a| (*a).to_owned()))
        .unwrap_or_default()
}

/// Connect with a connect and statement timeout of `timeout`; the connection task ends when the
/// client is dropped.
pub async fn connect(
    database_url: &str,
    timeout: Duration,
) -> Result<tokio_postgres::Client, ScoresError> {
    let mut cfg: tokio_postgres::Config = database_url.parse().map_err(ScoresError::Connect)?;
    cfg.connect_timeout(timeout);
    let (client, connection) = tokio::time::timeout(timeout, cfg.connect(tokio_postgres::NoTls))
        .await
        .map_err(|_| ScoresError::Timeout(timeout))?
        .map_err(ScoresError::Connect)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection ended with an error");
        }
    });
    let ms = timeout.as_millis().max(1);
    client
        .batch_execute(&format!("SET statement_timeout = {ms}"))
        .await
        .map_err(ScoresError::Query)?;
    Ok(client)
}

/// Whether the database has the stream's `scores` table (migration 0004).
pub async fn has_scores_table(client: &tokio_postgres::Client) -> Result<bool, ScoresError> {
    let row = client
        .query_one("SELECT to_regclass('scores') IS NOT NULL", &[])
        .await
        .map_err(ScoresError::Query)?;
    Ok(row.get(0))
}

/// The newest scored `bar_time` of every symbol, by a loose index scan of `(symbol, bar_time)`.
async fn newest_bars(
    client: &tokio_postgres::Client,
) -> Result<Vec<(String, chrono::DateTime<chrono::Utc>)>, ScoresError> {
    let rows = client
        .query(
            "WITH RECURSIVE s(symbol) AS ( \
               (SELECT symbol FROM scores ORDER BY symbol LIMIT 1) \
               UNION ALL \
               SELECT (SELECT x.symbol FROM scores x WHERE x.symbol > s.symbol ORDER BY x.symbol LIMIT 1) \
               FROM s WHERE s.symbol IS NOT NULL) \
             SELECT symbol, (SELECT max(bar_time) FROM scores y WHERE y.symbol = s.symbol) \
             FROM s WHERE symbol IS NOT NULL ORDER BY symbol",
            &[],
        )
        .await
        .map_err(ScoresError::Query)?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The served model a symbol's scores are read against: its slot's registered name and live
/// set; `None` for a symbol no slot serves (not read).
pub type ServedOf<'a> = dyn Fn(&str) -> Option<(String, Option<Arc<LiveSet>>)> + Send + Sync + 'a;

/// Read every served symbol's windows and ratios. `served_of` names each symbol's served model
/// and its live versions (the ratio to HAR-RV is computed for each of them).
pub async fn read(
    client: &tokio_postgres::Client,
    monitor: &MonitorParams,
    served_of: &ServedOf<'_>,
    bar_seconds: i64,
) -> Result<Snapshot, ScoresError> {
    let mut snapshot = Snapshot::default();
    for (symbol, newest) in newest_bars(client).await? {
        let Some((served_model, live)) = served_of(&symbol) else {
            continue;
        };
        let (served_model, live) = (served_model.as_str(), live.as_deref());
        let live_versions: Vec<(String, String)> = live
            .map(|l| {
                l.models
                    .iter()
                    .map(|(a, s)| (a.clone(), s.info.version.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let versions: Vec<String> = live_versions.iter().map(|(_, v)| v.clone()).collect();
        let rows = client
            .query(
                "SELECT model, version, \
                   count(*) FILTER (WHERE bar_time > $2::timestamptz - interval '24 hours'), \
                   avg(qlike) FILTER (WHERE bar_time > $2::timestamptz - interval '24 hours'), \
                   avg(log_error) FILTER (WHERE bar_time > $2::timestamptz - interval '24 hours'), \
                   count(*), avg(qlike), avg(log_error), \
                   count(covered_80), avg(CASE WHEN covered_80 THEN 1.0 ELSE 0.0 END::float8) \
                     FILTER (WHERE covered_80 IS NOT NULL) \
                 FROM scores \
                 WHERE symbol = $1 AND bar_time > $2::timestamptz - interval '7 days' AND bar_time <= $2::timestamptz \
                 GROUP BY model, version ORDER BY model, version",
                &[&symbol, &newest],
            )
            .await
            .map_err(ScoresError::Query)?;
        let mut series: Vec<Series> = rows
            .iter()
            .map(|r| {
                let (model, version): (String, String) = (r.get(0), r.get(1));
                let covered: i64 = r.get(8);
                Series {
                    alias: live_alias(live, served_model, &model, &version),
                    model,
                    version,
                    day: Window {
                        count: r.get(2),
                        qlike: r.get(3),
                        log_error: r.get(4),
                    },
                    week: Window {
                        count: r.get(5),
                        qlike: r.get(6),
                        log_error: r.get(7),
                    },
                    coverage_80: r.get::<_, Option<f64>>(9).map(|c| (c, covered)),
                }
            })
            .collect();
        // Versions in numeric order ("10" after "9").
        series.sort_by_key(|s| {
            (
                s.model.clone(),
                s.version.parse::<u64>().unwrap_or(u64::MAX),
                s.version.clone(),
            )
        });
        let mut ratios = Vec::new();
        if !versions.is_empty() {
            let hars: &[&str] = &[HAR, HAR_LOG];
            let rows = client
                .query(
                    "SELECT m.version, h.model, count(*), avg(m.qlike), avg(h.qlike) \
                     FROM scores m JOIN scores h \
                       ON h.model = ANY($4) AND h.version = m.version AND h.symbol = m.symbol AND h.bar_time = m.bar_time \
                     WHERE m.symbol = $1 AND m.model = $3 AND m.version = ANY($5) \
                       AND m.bar_time > $2::timestamptz - interval '7 days' AND m.bar_time <= $2::timestamptz \
                     GROUP BY m.version, h.model",
                    &[&symbol, &newest, &served_model, &hars, &versions],
                )
                .await
                .map_err(ScoresError::Query)?;
            for (alias, version) in &live_versions {
                // The smeared HAR-RV where the version has it, else the log-scale one.
                let of = |baseline: &str| {
                    rows.iter().find(|r| {
                        r.get::<_, String>(0) == *version && r.get::<_, String>(1) == baseline
                    })
                };
                let Some((baseline, r)) = of(HAR)
                    .map(|r| (HAR, r))
                    .or_else(|| of(HAR_LOG).map(|r| (HAR_LOG, r)))
                else {
                    continue;
                };
                let (bars, own, har): (i64, Option<f64>, Option<f64>) =
                    (r.get(2), r.get(3), r.get(4));
                if bars < i64::from(monitor.min_scores) {
                    continue;
                }
                if let (Some(own), Some(har)) = (own, har)
                    && har > 0.0
                {
                    ratios.push(Ratio {
                        alias: alias.clone(),
                        version: version.clone(),
                        baseline,
                        ratio: own / har,
                        bars,
                    });
                }
            }
        }
        #[allow(clippy::cast_precision_loss)]
        let newest_close = (newest.timestamp_millis() as f64) / 1000.0 + bar_seconds as f64;
        snapshot.symbols.push(SymbolScores {
            symbol,
            newest_close,
            series,
            ratios,
        });
    }
    Ok(snapshot)
}

/// One refresh: read and cache, or log, count and keep the last values.
pub async fn refresh(state: &AppState, database_url: &str) {
    let cache = &state.scores;
    let timeout = state.config.store_timeout;
    let bar = bar_seconds(state.slots[0].live.load_full().as_deref());
    let served_of = |symbol: &str| {
        state
            .slot_of(symbol)
            .map(|s| (s.model_name.clone(), s.live.load_full()))
    };
    let work = async {
        let client = connect(database_url, timeout).await?;
        if !has_scores_table(&client).await? {
            return Ok(None);
        }
        read(&client, &state.config.monitor, &served_of, bar)
            .await
            .map(Some)
    };
    // Several short statements, each under the statement timeout: bound the whole refresh too.
    let bound = timeout.saturating_mul(4);
    let result = match tokio::time::timeout(bound, work).await {
        Ok(r) => r,
        Err(_) => Err(ScoresError::Timeout(bound)),
    };
    match result {
        Ok(Some(s)) => {
            cache.missing_logged.store(false, Ordering::Relaxed);
            cache.store(s);
        }
        Ok(None) => {
            if !cache.missing_logged.swap(true, Ordering::Relaxed) {
                tracing::info!(
                    "the database has no `scores` table (the stream has not run migration 0004 yet): no rps_score_* series"
                );
            }
            cache.store(Snapshot::default());
        }
        Err(e) => {
            cache.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "reading the scores failed; /metrics keeps the last values");
        }
    }
}

/// The background task: refresh now, then every `monitor.refresh_seconds`.
pub fn spawn(state: Arc<AppState>) -> Option<tokio::task::JoinHandle<()>> {
    let url = state.config.database_url.clone()?;
    let every = Duration::from_secs(state.config.monitor.refresh_seconds.max(1));
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            refresh(&state, &url).await;
        }
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_max_age_is_stale_bars_plus_one() {
        let m = MonitorParams::default();
        assert_eq!(max_score_age(&m, 3600), 3.0 * 3600.0);
        assert_eq!(bar_seconds(None), 3600);
    }
}
