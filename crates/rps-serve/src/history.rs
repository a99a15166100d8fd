//! `GET /api/history`: price, realized volatility and each model version's predictions over
//! the last hours, read from the PostgreSQL tables `rps stream` writes (`candles`,
//! `predictions`; schema in crates/rps-stream/migrations/, the 80 % band from 0003).
//!
//! The window ends at the newest candle of the symbol (or the newest prediction when there are
//! no candles), so a stream that stopped still shows its last hours. Realized volatility is each
//! bar's estimate by `--realized-estimator` ([`crate::config::RealizedEstimator`]): the quantity
//! the models forecast, params.yaml's `target.estimator`.

use serde::Serialize;
use std::collections::BTreeMap;

/// Most hours one request may ask for: a leap year of hourly bars (8,784), so the dashboard can
/// show a whole year (the README's plot of 2021). One bar is a few dozen bytes of JSON per
/// series: about 2 MB at most for a year of the served and signal models' live versions.
pub const MAX_HOURS: u32 = 24 * 366;

/// Why the history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("could not connect to PostgreSQL: {}", crate::scores::pg_detail(.0))]
    Connect(#[source] tokio_postgres::Error),
    #[error("PostgreSQL query failed: {}", crate::scores::pg_detail(.0))]
    Query(#[source] tokio_postgres::Error),
}

/// One bar.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bar {
    /// RFC 3339, UTC.
    pub t: String,
    pub close: Option<f64>,
    /// Volatility of the bar (a fraction) by the configured estimator, `None` for a bad bar.
    pub realized: Option<f64>,
}

/// One prediction of one version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// The bar the prediction is for, RFC 3339.
    pub t: String,
    pub volatility: Option<f64>,
    /// The median of σ and the central 80 % band, for a volatility model with quantiles
    /// (`None` otherwise, and for rows the stream wrote before its migration 0003).
    pub median: Option<f64>,
    pub lower_80: Option<f64>,
    pub upper_80: Option<f64>,
    pub signal: Option<String>,
}

/// The predictions of one model version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// The registered model (the served one, or the signal model).
    pub model: String,
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
    /// The served model first, then the signal model whose rows are shown too.
    pub models: Vec<String>,
    pub hours: u32,
    pub candles: Vec<Bar>,
    pub series: Vec<Series>,
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Read the last `hours` of `symbol` for the registered `models`.
pub async fn read(
    database_url: &str,
    models: &[String],
    symbol: &str,
    hours: u32,
    estimator: crate::config::RealizedEstimator,
) -> Result<History, HistoryError> {
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
        .await
        .map_err(HistoryError::Connect)?;
    let conn = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL connection ended with an error");
        }
    });
    let result = query(&client, models, symbol, hours, estimator).await;
    drop(client);
    let _ = conn.await;
    result
}

async fn query(
    client: &tokio_postgres::Client,
    models: &[String],
    symbol: &str,
    hours: u32,
    estimator: crate::config::RealizedEstimator,
) -> Result<History, HistoryError> {
    let hours_f = f64::from(hours);
    // The window's end: the newest candle, else the newest prediction.
    let end: Option<chrono::DateTime<chrono::Utc>> = client
        .query_one(
            "SELECT coalesce((SELECT max(bar_time) FROM candles WHERE symbol = $1), \
                             (SELECT max(bar_time) FROM predictions WHERE symbol = $1 AND model = ANY($2)))",
            &[&symbol, &models],
        )
        .await
        .map_err(HistoryError::Query)?
        .get(0);
    let mut history = History {
        symbol: symbol.to_owned(),
        models: models.to_vec(),
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
                "SELECT bar_time, open, high, low, close FROM candles WHERE symbol = $1 AND {window} \
                 ORDER BY bar_time"
            ),
            &[&symbol, &end, &hours_f],
        )
        .await
        .map_err(HistoryError::Query)?;
    for r in rows {
        let t: chrono::DateTime<chrono::Utc> = r.get(0);
        let ohlc: [Option<f64>; 4] = [r.get(1), r.get(2), r.get(3), r.get(4)];
        let realized = match ohlc {
            [Some(open), Some(high), Some(low), Some(close)] => {
                let bar = rps_core::Candle {
                    ts: t.timestamp_millis(),
                    open,
                    high,
                    low,
                    close,
                    volume: 0.0,
                    ..Default::default()
                };
                Some(estimator.of(&bar)).filter(|v| v.is_finite())
            }
            _ => None,
        };
        history.candles.push(Bar {
            t: rfc3339(t),
            close: ohlc[3],
            realized,
        });
    }
    let band = if has_band_columns(client).await? {
        "median, lower_80, upper_80"
    } else {
        "NULL::float8, NULL::float8, NULL::float8"
    };
    let rows = client
        .query(
            &format!(
                "SELECT version, alias, task, bar_time, volatility, signal, model, {band} \
                 FROM predictions WHERE symbol = $1 AND {window} AND model = ANY($4) \
                 ORDER BY model, version, bar_time"
            ),
            &[&symbol, &end, &hours_f, &models],
        )
        .await
        .map_err(HistoryError::Query)?;
    let mut by_version: BTreeMap<(String, String, String), Series> = BTreeMap::new();
    for r in rows {
        let (version, alias, task, model): (String, Option<String>, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(6));
        let t: chrono::DateTime<chrono::Utc> = r.get(3);
        let s = by_version
            .entry((model.clone(), version.clone(), task.clone()))
            .or_insert_with(|| Series {
                model,
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
            median: r.get(7),
            lower_80: r.get(8),
            upper_80: r.get(9),
            signal: r.get(5),
        });
    }
    let mut series: Vec<Series> = by_version.into_values().collect();
    // The served model first (the order of `models`), versions in numeric order ("10" after "9").
    series.sort_by_key(|s| {
        (
            models.iter().position(|m| *m == s.model),
            s.version.parse::<u64>().unwrap_or(u64::MAX),
            s.version.clone(),
        )
    });
    history.series = series;
    Ok(history)
}

/// Whether `predictions` has the distribution columns of the stream's migration 0003: serve may
/// be upgraded before the stream that migrates its database, and an older schema still shows its
/// means (without a band) rather than failing.
async fn has_band_columns(client: &tokio_postgres::Client) -> Result<bool, HistoryError> {
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.columns \
             WHERE table_name = 'predictions' AND table_schema = current_schema() \
             AND column_name IN ('median', 'lower_80', 'upper_80')",
            &[],
        )
        .await
        .map_err(HistoryError::Query)?
        .get(0);
    Ok(n == 3)
}
