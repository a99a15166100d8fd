//! `GET /api/history`: price, realized volatility and each model version's predictions over
//! the last hours, read from the PostgreSQL tables `rps stream` writes (`candles`,
//! `predictions`; schema in crates/rps-stream/migrations/0001_init.sql).
//!
//! The window ends at the newest candle of the symbol (or the newest prediction when there are
//! no candles), so a stream that stopped still shows its last hours. Realized volatility is the
//! Parkinson estimate of each bar ([`rps_core::volatility::parkinson`]), the quantity the models
//! forecast.

use serde::Serialize;
use std::collections::BTreeMap;

/// Most hours one request may ask for (90 days of hourly bars).
pub const MAX_HOURS: u32 = 24 * 90;

/// Why the history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("could not connect to PostgreSQL: {0}")]
    Connect(#[source] tokio_postgres::Error),
    #[error("PostgreSQL query failed: {0}")]
    Query(#[source] tokio_postgres::Error),
}

/// One bar.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bar {
    /// RFC 3339, UTC.
    pub t: String,
    pub close: Option<f64>,
    /// Parkinson volatility of the bar (a fraction), `None` when high/low are missing or bad.
    pub realized: Option<f64>,
}

/// One prediction of one version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// The bar the prediction is for, RFC 3339.
    pub t: String,
    pub volatility: Option<f64>,
    pub signal: Option<String>,
}

/// The predictions of one model version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub version: String,
    /// The alias the stream recorded with its latest row (may be stale; the live set is in
    /// `GET /models`).
    pub alias: Option<String>,
    pub task: String,
    pub points: Vec<Point>,
}

/// The answer of `GET /api/history`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct History {
    pub symbol: String,
    pub model: String,
    pub hours: u32,
    pub candles: Vec<Bar>,
    pub series: Vec<Series>,
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Read the last `hours` of `symbol` for model `model`.
pub async fn read(
    database_url: &str,
    model: &str,
    symbol: &str,
    hours: u32,
) -> Result<History, HistoryError> {
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
        .await
        .map_err(HistoryError::Connect)?;
    let conn = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL connection ended with an error");
        }
    });
    let result = query(&client, model, symbol, hours).await;
    drop(client);
    let _ = conn.await;
    result
}

async fn query(
    client: &tokio_postgres::Client,
    model: &str,
    symbol: &str,
    hours: u32,
) -> Result<History, HistoryError> {
    let hours_f = f64::from(hours);
    // The window's end: the newest candle, else the newest prediction.
    let end: Option<chrono::DateTime<chrono::Utc>> = client
        .query_one(
            "SELECT coalesce((SELECT max(bar_time) FROM candles WHERE symbol = $1), \
                             (SELECT max(bar_time) FROM predictions WHERE symbol = $1 AND model = $2))",
            &[&symbol, &model],
        )
        .await
        .map_err(HistoryError::Query)?
        .get(0);
    let mut history = History {
        symbol: symbol.to_owned(),
        model: model.to_owned(),
        hours,
        candles: Vec::new(),
        series: Vec::new(),
    };
    let Some(end) = end else {
        return Ok(history);
    };
    let window = "bar_time > $2::timestamptz - make_interval(secs => $3::float8 * 3600.0) AND bar_time <= $2::timestamptz";
    let rows = client
        .query(
            &format!(
                "SELECT bar_time, close, high, low FROM candles WHERE symbol = $1 AND {window} \
                 ORDER BY bar_time"
            ),
            &[&symbol, &end, &hours_f],
        )
        .await
        .map_err(HistoryError::Query)?;
    for r in rows {
        let t: chrono::DateTime<chrono::Utc> = r.get(0);
        let (high, low): (Option<f64>, Option<f64>) = (r.get(2), r.get(3));
        let realized = match (high, low) {
            (Some(h), Some(l)) => {
                Some(rps_core::volatility::parkinson(h, l)).filter(|v| v.is_finite())
            }
            _ => None,
        };
        history.candles.push(Bar {
            t: rfc3339(t),
            close: r.get(1),
            realized,
        });
    }
    let rows = client
        .query(
            &format!(
                "SELECT version, alias, task, bar_time, volatility, signal FROM predictions \
                 WHERE symbol = $1 AND {window} AND model = $4 ORDER BY version, bar_time"
            ),
            &[&symbol, &end, &hours_f, &model],
        )
        .await
        .map_err(HistoryError::Query)?;
    let mut by_version: BTreeMap<(String, String), Series> = BTreeMap::new();
    for r in rows {
        let (version, alias, task): (String, Option<String>, String) =
            (r.get(0), r.get(1), r.get(2));
        let t: chrono::DateTime<chrono::Utc> = r.get(3);
        let s = by_version
            .entry((version.clone(), task.clone()))
            .or_insert_with(|| Series {
                version,
                alias: None,
                task,
                points: Vec::new(),
            });
        if alias.is_some() {
            s.alias = alias;
        }
        s.points.push(Point {
            t: rfc3339(t),
            volatility: r.get(4),
            signal: r.get(5),
        });
    }
    let mut series: Vec<Series> = by_version.into_values().collect();
    // Numeric order of versions ("10" after "9").
    series.sort_by_key(|s| {
        (
            s.version.parse::<u64>().unwrap_or(u64::MAX),
            s.version.clone(),
        )
    });
    history.series = series;
    Ok(history)
}
