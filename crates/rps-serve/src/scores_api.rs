//! `GET /api/scores?symbol=BTC-USD&hours=168`: the online accuracy as time series, for the
//! dashboard's "Forecast accuracy" panel. From the stream's `scores` table (module
//! [`crate::scores`]), by SQL window functions over `bar_time`:
//!
//! - `series`: for every scored (model, version) — the live versions of the served model, the
//!   baselines `ewma`, `har_rv` and `har_rv_log` — the rolling mean QLIKE at each scored bar over the
//!   `window` (`24h` by default, or `7d`: the windows `(t − 24 h, t]` and `(t − 7 d, t]`, as the
//!   `rps_score_*` metrics count them);
//! - `coverage`: the champion's rolling 7-day share of realized values inside its 80 % interval
//!   (rows with a band only), with `thresholds` (`monitor:` of params.yaml) for its band.
//!
//! The span ends at the newest scored bar of the symbol, like the metrics.

use crate::error::ApiError;
use crate::scores::{ScoresError, connect, has_scores_table, live_alias};
use crate::state::{AppState, LiveSet};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Most hours one request may ask for (90 days of hourly bars), as `/api/history`.
pub const MAX_HOURS: u32 = crate::history::MAX_HOURS;

/// One bar of a rolling series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// The scored bar (`bar_time`), RFC 3339.
    pub t: String,
    /// The rolling mean (QLIKE) or share (coverage) at `t`.
    pub value: f64,
    /// Rows the rolling window held.
    pub n: i64,
}

/// The rolling 24 h mean QLIKE of one (model, version).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub model: String,
    pub version: String,
    /// The live alias (served model), `""` for the baselines and versions no longer live.
    pub alias: String,
    pub points: Vec<Point>,
}

/// The `monitor:` thresholds the page draws.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Thresholds {
    pub qlike_margin: f64,
    pub coverage_low: f64,
    pub coverage_high: f64,
}

/// The rolling window of the QLIKE series (`window=` in the query): the two windows the
/// `rps_score_*` metrics and the alert rules use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub enum RollingWindow {
    /// `(t − 24 h, t]`: what changed today.
    #[default]
    #[serde(rename = "24h")]
    Day,
    /// `(t − 7 d, t]`: the window of the alert `RpsChampionWorseThanHarRv`; the dashboard uses it
    /// for spans longer than two weeks, where the 24 h mean is mostly noise.
    #[serde(rename = "7d")]
    Week,
}

impl RollingWindow {
    /// The window's length in hours.
    pub fn hours(self) -> i32 {
        match self {
            Self::Day => 24,
            Self::Week => 168,
        }
    }
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scores {
    pub symbol: String,
    pub hours: u32,
    /// The rolling window of `series`.
    pub window: RollingWindow,
    /// The newest scored bar of the symbol (the span's end); `None` when nothing is scored.
    pub end: Option<String>,
    /// The served model's registered name (its versions' `model`).
    pub model: String,
    /// The champion's version, if one is live.
    pub champion: Option<String>,
    pub thresholds: Thresholds,
    pub series: Vec<Series>,
    /// The champion's rolling 7-day 80 % coverage (`None` without a champion or a band).
    pub coverage: Option<Series>,
}

#[derive(Debug, Deserialize)]
pub struct ScoresQuery {
    symbol: Option<String>,
    hours: Option<u32>,
    #[serde(default)]
    window: RollingWindow,
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `GET /api/scores`.
pub async fn handler(
    State(state): State<Arc<AppState>>,
    query: Result<Query<ScoresQuery>, QueryRejection>,
) -> Result<Json<Scores>, ApiError> {
    let Query(q) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let hours = q.hours.unwrap_or(168);
    if hours == 0 || hours > MAX_HOURS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("hours must be 1 to {MAX_HOURS} (got {hours})"),
        ));
    }
    let slot = state.slot(q.symbol.as_deref())?.clone();
    let symbol = crate::routes::chart_symbol(&state, &slot, q.symbol);
    if symbol.is_empty() || symbol.len() > 64 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "symbol must be 1 to 64 characters",
        ));
    }
    let Some(url) = state.config.database_url.as_deref() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_database",
            "no stream data is configured: start rps-serve with --database-url (DATABASE_URL) \
             pointing at the PostgreSQL that `rps stream` writes",
        ));
    };
    let live = slot.live.load_full();
    read(
        &state,
        &slot.model_name,
        url,
        live.as_deref(),
        &symbol,
        hours,
        q.window,
    )
    .await
    .map(Json)
    .map_err(|e| {
        tracing::warn!(error = %e, "scores query failed");
        ApiError::new(StatusCode::BAD_GATEWAY, "database_error", e.to_string())
    })
}

async fn read(
    state: &AppState,
    served: &str,
    url: &str,
    live: Option<&LiveSet>,
    symbol: &str,
    hours: u32,
    window: RollingWindow,
) -> Result<Scores, ScoresError> {
    let m = &state.config.monitor;
    let champion = live.and_then(|l| l.get("champion").or_else(|| l.primary()));
    let mut out = Scores {
        symbol: symbol.to_owned(),
        hours,
        window,
        end: None,
        model: served.to_owned(),
        champion: champion.map(|c| c.info.version.to_string()),
        thresholds: Thresholds {
            qlike_margin: m.qlike_margin,
            coverage_low: m.coverage_low,
            coverage_high: m.coverage_high,
        },
        series: Vec::new(),
        coverage: None,
    };
    let client = connect(url, state.config.store_timeout).await?;
    if !has_scores_table(&client).await? {
        return Ok(out);
    }
    let end: Option<chrono::DateTime<chrono::Utc>> = client
        .query_one(
            "SELECT max(bar_time) FROM scores WHERE symbol = $1",
            &[&symbol],
        )
        .await
        .map_err(ScoresError::Query)?
        .get(0);
    let Some(end) = end else {
        return Ok(out);
    };
    out.end = Some(rfc3339(end));
    let h = i32::try_from(hours).unwrap_or(i32::MAX);
    let w = window.hours();
    // The rolling window (t − w, t]: timestamptz has microseconds, so w less 1 µs PRECEDING
    // leaves out the bar exactly w before.
    let rows = client
        .query(
            "SELECT model, version, bar_time, q, n FROM ( \
               SELECT model, version, bar_time, avg(qlike) OVER w AS q, count(*) OVER w AS n \
               FROM scores \
               WHERE symbol = $1 AND bar_time > $2::timestamptz - make_interval(hours => $3::int + $4::int) \
                 AND bar_time <= $2::timestamptz \
               WINDOW w AS (PARTITION BY model, version ORDER BY bar_time \
                            RANGE BETWEEN make_interval(hours => $4::int) - '1 microsecond'::interval \
                            PRECEDING AND CURRENT ROW)) x \
             WHERE bar_time > $2::timestamptz - make_interval(hours => $3) \
             ORDER BY model, version, bar_time",
            &[&symbol, &end, &h, &w],
        )
        .await
        .map_err(ScoresError::Query)?;
    for r in rows {
        let (model, version): (String, String) = (r.get(0), r.get(1));
        let point = Point {
            t: rfc3339(r.get(2)),
            value: r.get(3),
            n: r.get(4),
        };
        match out.series.last_mut() {
            Some(s) if s.model == model && s.version == version => s.points.push(point),
            _ => out.series.push(Series {
                alias: live_alias(live, served, &model, &version),
                model,
                version,
                points: vec![point],
            }),
        }
    }
    // The served model first, then the baselines; versions in numeric order.
    out.series.sort_by_key(|s| {
        (
            s.model != served,
            s.model.clone(),
            s.version.parse::<u64>().unwrap_or(u64::MAX),
            s.version.clone(),
        )
    });
    let Some(champion) = champion else {
        return Ok(out);
    };
    let version = champion.info.version.to_string();
    let rows = client
        .query(
            "SELECT bar_time, c, n FROM ( \
               SELECT bar_time, avg(CASE WHEN covered_80 THEN 1.0 ELSE 0.0 END::float8) OVER w AS c, \
                      count(*) OVER w AS n \
               FROM scores \
               WHERE model = $4 AND version = $5 AND symbol = $1 AND covered_80 IS NOT NULL \
                 AND bar_time > $2::timestamptz - make_interval(hours => $3 + 168) \
                 AND bar_time <= $2::timestamptz \
               WINDOW w AS (ORDER BY bar_time \
                            RANGE BETWEEN '6 days 23:59:59.999999'::interval PRECEDING AND CURRENT ROW)) x \
             WHERE bar_time > $2::timestamptz - make_interval(hours => $3) \
             ORDER BY bar_time",
            &[&symbol, &end, &h, &served, &version],
        )
        .await
        .map_err(ScoresError::Query)?;
    if !rows.is_empty() {
        out.coverage = Some(Series {
            model: served.to_owned(),
            alias: live_alias(live, served, served, &version),
            version,
            points: rows
                .iter()
                .map(|r| Point {
                    t: rfc3339(r.get(0)),
                    value: r.get(1),
                    n: r.get(2),
                })
                .collect(),
        });
    }
    Ok(out)
}
