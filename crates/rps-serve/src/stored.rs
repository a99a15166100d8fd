//! The newest stored candles behind `POST /forecast` without `candles`: the stream's PostgreSQL
//! (`--database-url`, table `candles`) when configured, else the raw Parquet dataset of the home
//! (`--home`, `<home>/data/raw/<symbol>`, what `rps extract` writes).
//!
//! Reading never blocks the async workers (PostgreSQL is async; the object store runs on the
//! blocking pool) and is cut off after `--store-timeout` (503 `history_timeout`). A store that
//! fails is a 503 `history_unavailable`; a symbol with no stored candles a 422 `no_history`.

use crate::error::ApiError;
use crate::state::AppState;
use axum::http::StatusCode;
use rps_core::candle::{Candle, Interval};
use rps_core::pipeline::FeatureSpec;
use std::time::Duration;

/// Where stored candles come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The stream's PostgreSQL.
    Database(String),
    /// The home folder holding `data/raw/<symbol>`.
    Home(String),
}

impl Source {
    /// `--database-url` first, then `--home`, then the folder holding `--registry` when that is
    /// named `registry` (the home layout: `<home>/registry`).
    pub fn of(config: &crate::Config) -> Option<Self> {
        if let Some(url) = &config.database_url {
            return Some(Self::Database(url.clone()));
        }
        if let Some(home) = &config.home {
            return Some(Self::Home(home.trim_end_matches('/').to_owned()));
        }
        config
            .registry
            .trim_end_matches('/')
            .strip_suffix("/registry")
            .filter(|h| !h.is_empty())
            .map(|h| Self::Home(h.to_owned()))
    }

    /// `database` or `raw_dataset`, as the answer's `history` says.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Database(_) => "database",
            Self::Home(_) => "raw_dataset",
        }
    }
}

/// A symbol usable as a path segment and a query value: 1 to 32 of `A-Z a-z 0-9 . _ -`, not
/// starting with a dot.
pub fn check_symbol(symbol: &str) -> Result<(), ApiError> {
    let ok = !symbol.is_empty()
        && symbol.len() <= 32
        && !symbol.starts_with('.')
        && symbol
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "bad_symbol",
            format!(
                "symbol {:?} is not a symbol: 1 to 32 letters, digits, '.', '_' or '-'",
                symbol.chars().take(40).collect::<String>()
            ),
        ))
    }
}

fn unavailable(message: String) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "history_unavailable",
        message,
    )
}

fn no_history(symbol: &str, where_: &str) -> ApiError {
    ApiError::invalid(
        "no_history",
        format!("no stored candles of {symbol} in {where_}; send them as `candles`"),
    )
}

/// The newest stored candles of `symbol` (enough for `spec`'s window, a few more), with their
/// interval.
pub async fn read(
    state: &AppState,
    source: &Source,
    spec: &FeatureSpec,
    symbol: &str,
) -> Result<(Vec<Candle>, Interval), ApiError> {
    let limit = state.config.store_timeout;
    let read = async {
        match source {
            Source::Database(url) => read_database(url, spec, symbol).await,
            Source::Home(home) => {
                let uri = format!("{home}/data/raw/{symbol}");
                // Two bars more than the window: an unfinished bar or one hole still shows.
                let span = (rps_core::forecast::history_bars(spec) as i64 + 2) * spec.bar.ms();
                let symbol = symbol.to_owned();
                tokio::task::spawn_blocking(move || read_raw(&uri, &symbol, span))
                    .await
                    .map_err(|e| unavailable(format!("reading the raw dataset failed: {e}")))?
            }
        }
    };
    tokio::time::timeout(limit, read).await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "history_timeout",
            format!(
                "the stored candles could not be read within {limit:?} (--store-timeout) from the {}",
                match source {
                    Source::Database(_) => "database",
                    Source::Home(_) => "raw dataset",
                }
            ),
        )
    })?
}

fn read_raw(uri: &str, symbol: &str, span: i64) -> Result<(Vec<Candle>, Interval), ApiError> {
    let store = rps_store::open(uri).map_err(|e| unavailable(format!("raw dataset {uri}: {e}")))?;
    let raw = rps_store::raw::RawDataset::new(store);
    match raw.read_tail(span) {
        Ok((manifest, bars)) if !bars.is_empty() => Ok((bars, manifest.interval)),
        Ok(_) => Err(no_history(symbol, &format!("the raw dataset {uri}"))),
        Err(rps_store::raw::RawError::Store(rps_store::StoreError::NotFound { .. })) => {
            Err(no_history(symbol, &format!("the raw dataset {uri}")))
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading the raw dataset failed");
            Err(unavailable(format!(
                "the raw dataset could not be read: {e}"
            )))
        }
    }
}

async fn read_database(
    url: &str,
    spec: &FeatureSpec,
    symbol: &str,
) -> Result<(Vec<Candle>, Interval), ApiError> {
    let db_error = |e: tokio_postgres::Error| {
        tracing::warn!(error = %e, "reading candles from PostgreSQL failed");
        unavailable(format!("the stream's PostgreSQL: {e}"))
    };
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(db_error)?;
    let conn = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL connection ended with an error");
        }
    });
    let limit = i64::try_from(rps_core::forecast::history_bars(spec) + 2).unwrap_or(i64::MAX);
    let rows = client
        .query(
            "SELECT * FROM candles WHERE symbol = $1 ORDER BY bar_time DESC LIMIT $2",
            &[&symbol, &limit],
        )
        .await
        .map_err(db_error);
    drop(client);
    let _ = conn.await;
    let mut bars: Vec<Candle> = rows?
        .iter()
        .map(|r| {
            let t: chrono::DateTime<chrono::Utc> = r.get("bar_time");
            // The order-flow columns are nullable and absent from a table the stream has not
            // migrated yet (before migration 0002): both read as "no column".
            let opt = |name: &str| r.try_get::<_, Option<f64>>(name).ok().flatten();
            Candle {
                ts: t.timestamp_millis(),
                open: r.get("open"),
                high: r.get("high"),
                low: r.get("low"),
                close: r.get("close"),
                volume: r.get("volume"),
                quote_volume: opt("quote_volume"),
                trades: r
                    .try_get::<_, Option<i64>>("trades")
                    .ok()
                    .flatten()
                    .and_then(|n| u64::try_from(n).ok()),
                taker_buy_volume: opt("taker_buy_volume"),
                taker_buy_quote_volume: opt("taker_buy_quote_volume"),
            }
        })
        .collect();
    if bars.is_empty() {
        return Err(no_history(symbol, "the stream's PostgreSQL"));
    }
    bars.reverse();
    Ok((bars, spec.bar))
}

/// The tolerance of `POST /forecast` on stored candles: `--forecast-max-age`, else one bar.
pub fn max_age_ms(config: &crate::Config, bar: Interval) -> i64 {
    config.forecast_max_age.map_or(bar.ms(), |d: Duration| {
        i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_are_path_safe() {
        for ok in ["BTC-USD", "eth_usd", "X.1"] {
            assert!(check_symbol(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", ".hidden", "a/b", "a b", &"x".repeat(33), "é"] {
            assert!(check_symbol(bad).is_err(), "{bad}");
        }
    }
}
