//! `POST /forecast`: the next bar's volatility from candles, through the one feature pipeline
//! ([`rps_core::pipeline`]) with the served model's own saved spec — no client computes
//! features, so no client can compute them differently.
//!
//! Body: `{"symbol": "BTC-USD", "candles": [{"time": "2024-01-01T00:00:00Z" | 1704067200000,
//! "open": …, "high": …, "low": …, "close": …, "volume": …}, …]}`, oldest first, consecutive
//! bars of the model's bar, at least [`needed`] of them (`GET /model` states it). A gap, a bar off
//! the grid, a bad price or too short a history is a 422 naming it, never a silent forecast.
//! A candle may also carry the Binance klines' order-flow columns (`quote_volume`, `trades`,
//! `taker_buy_volume`, `taker_buy_quote_volume`); a model trained with the order-flow features
//! needs `trades` and `taker_buy_volume` on every candle and answers 422 `missing_column`
//! (naming the column and the first candle without it) when they are absent.
//!
//! Without `candles` (`{}`, `{"symbol": …}`) the newest stored candles are used (module
//! [`crate::stored`]): a history that stopped is a 409 `stale_history`, a hole in it a 422 `gap`.

use crate::error::ApiError;
use crate::state::Served;
use axum::http::StatusCode;
use rps_core::candle::Candle;
use rps_core::forecast::{self as fc, ForecastError, Made, PointForecast, rfc3339};
use rps_core::pipeline::FeatureSpec;
use serde::Deserialize;

/// Most candles one request may carry.
pub const MAX_CANDLES: usize = 20_000;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForecastRequest {
    #[serde(default)]
    pub symbol: Option<String>,
    /// The history; absent: the newest stored candles.
    #[serde(default)]
    pub candles: Option<Vec<CandleIn>>,
}

/// One candle as a client sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandleIn {
    /// Bar open time: RFC 3339 or milliseconds since the epoch (UTC).
    pub time: TimeIn,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    #[serde(default)]
    pub volume: Option<f64>,
    /// The Binance klines' order-flow columns, optional; a model trained with the order-flow
    /// features (`features.flow: on` in its schema) needs `trades` and `taker_buy_volume` on
    /// every candle and answers 422 `missing_column` without them.
    #[serde(default)]
    pub quote_volume: Option<f64>,
    #[serde(default)]
    pub trades: Option<u64>,
    #[serde(default)]
    pub taker_buy_volume: Option<f64>,
    #[serde(default)]
    pub taker_buy_quote_volume: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum TimeIn {
    Ms(i64),
    Text(String),
}

fn unprocessable(code: &'static str, message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

/// The HTTP answer to a forecast that cannot be made: 503 for a model that cannot forecast
/// from candles, 409 `stale_history` (with `newest_bar` and `age_secs`), 422 `gap` (with
/// `first_missing` and `missing`), `short_history` or `missing_column` (with `column` and
/// `candle`: a flow model's candles lack an order-flow column).
pub fn api_error(e: &ForecastError) -> ApiError {
    let message = e.to_string();
    match e {
        ForecastError::Unsupported(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "model_unsupported",
            message,
        ),
        ForecastError::Short { have, need, .. } => unprocessable("short_history", message)
            .with("candles", *have)
            .with("history_bars", *need),
        ForecastError::Gap {
            first_missing,
            missing,
            ..
        } => unprocessable("gap", message)
            .with("first_missing", rfc3339(*first_missing))
            .with("missing", *missing),
        ForecastError::MissingColumn { column, at } => unprocessable("missing_column", message)
            .with("column", column.name())
            .with("candle", rfc3339(*at)),
        ForecastError::Stale {
            newest,
            age_ms,
            max_age_ms,
            ..
        } => ApiError::new(StatusCode::CONFLICT, "stale_history", message)
            .with("newest_bar", rfc3339(*newest))
            .with("age_secs", age_ms.div_euclid(1000))
            .with("max_age_secs", max_age_ms.div_euclid(1000)),
    }
}

/// The served model's spec (its saved schema, its own bar).
pub fn spec(served: &Served) -> Result<FeatureSpec, ApiError> {
    fc::spec(&served.schema).map_err(|e| api_error(&e))
}

/// Candles a forecast needs: the longest lookback of the model's features, plus the bar itself.
pub fn needed(spec: &FeatureSpec) -> usize {
    fc::history_bars(spec)
}

/// Check and convert the candles: times parse, lie on the bar grid, strictly increase without a
/// gap; prices are finite and positive with low ≤ open, close ≤ high.
pub fn candles(candles: &[CandleIn], spec: &FeatureSpec) -> Result<Vec<Candle>, ApiError> {
    let bar = spec.bar.ms();
    if candles.len() > MAX_CANDLES {
        return Err(unprocessable(
            "too_many_candles",
            format!("{} candles; at most {MAX_CANDLES}", candles.len()),
        ));
    }
    let mut out: Vec<Candle> = Vec::with_capacity(candles.len());
    for (i, c) in candles.iter().enumerate() {
        let ts = match &c.time {
            TimeIn::Ms(ms) => *ms,
            TimeIn::Text(t) => chrono::DateTime::parse_from_rfc3339(t)
                .map(|d| d.timestamp_millis())
                .map_err(|e| {
                    unprocessable("bad_candle", format!("candles[{i}].time {t:?}: {e}"))
                })?,
        };
        if ts.rem_euclid(bar) != 0 {
            return Err(unprocessable(
                "off_grid",
                format!(
                    "candles[{i}] at {} is not on the {} grid",
                    rfc3339(ts),
                    spec.bar
                ),
            ));
        }
        let prices = [c.open, c.high, c.low, c.close];
        if prices.iter().any(|p| !p.is_finite() || *p <= 0.0)
            || c.low > c.open.min(c.close)
            || c.high < c.open.max(c.close)
            || [
                c.volume,
                c.quote_volume,
                c.taker_buy_volume,
                c.taker_buy_quote_volume,
            ]
            .iter()
            .flatten()
            .any(|v| !v.is_finite() || *v < 0.0)
        {
            return Err(unprocessable(
                "bad_candle",
                format!(
                    "candles[{i}] at {}: prices must be finite and positive with low <= open, close <= high, volumes >= 0",
                    rfc3339(ts)
                ),
            ));
        }
        if let Some(prev) = out.last() {
            if ts <= prev.ts {
                return Err(unprocessable(
                    "unordered",
                    format!(
                        "candles[{i}] at {} is not after the one before ({}): send them oldest first, once each",
                        rfc3339(ts),
                        rfc3339(prev.ts)
                    ),
                ));
            }
            if ts - prev.ts != bar {
                return Err(api_error(&ForecastError::Gap {
                    first_missing: prev.ts + bar,
                    missing: (ts - prev.ts) / bar - 1,
                    after: prev.ts,
                    before: ts,
                    bar: spec.bar,
                    need: needed(spec),
                }));
            }
        }
        out.push(Candle {
            ts,
            open: c.open,
            high: c.high,
            low: c.low,
            close: c.close,
            volume: c.volume.unwrap_or(0.0),
            quote_volume: c.quote_volume,
            trades: c.trades,
            taker_buy_volume: c.taker_buy_volume,
            taker_buy_quote_volume: c.taker_buy_quote_volume,
        });
    }
    let need = needed(spec);
    if out.len() < need {
        return Err(api_error(&ForecastError::Short {
            have: out.len(),
            need,
            bar: spec.bar,
        }));
    }
    Ok(out)
}

/// The forecast for the bar after the newest of `window` (the newest [`needed`] checked bars),
/// by the served model.
pub fn predict(
    served: &Served,
    spec: &FeatureSpec,
    symbol: &str,
    window: &[Candle],
    history: &'static str,
    age_ms: Option<i64>,
) -> Result<PointForecast, ApiError> {
    let (from, x) = fc::model_input(
        spec,
        &served.schema.features,
        &served.schema.symbols,
        Some(symbol),
        window,
    )
    .map_err(|e| api_error(&e))?;
    let prediction = served.model.predict_one(&x).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("prediction failed: {e}"),
        )
    })?;
    served.observe_forecast(&prediction);
    let made = Made {
        model: &served.info.name,
        version: served.info.version,
        symbol,
        from,
        candles_used: window.len(),
        history,
        age_ms,
    };
    Ok(PointForecast::new(spec, &made, &prediction.into()))
}

/// The forecast from the candles of a request.
pub fn from_request(
    served: &Served,
    symbol: Option<&str>,
    candles_in: &[CandleIn],
) -> Result<PointForecast, ApiError> {
    let spec = spec(served)?;
    let bars = candles(candles_in, &spec)?;
    // Only the lookback matters: build over the newest `needed` bars.
    let tail = &bars[bars.len() - needed(&spec)..];
    let symbol = symbol.unwrap_or(&served.schema.symbol);
    predict(served, &spec, symbol, tail, "request", None)
}
