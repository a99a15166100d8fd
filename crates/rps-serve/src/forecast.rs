//! `POST /forecast`: the next bar's volatility from candles, through the one feature pipeline
//! ([`rps_core::pipeline`]) with the served model's own saved spec — no client computes
//! features, so no client can compute them differently.
//!
//! Body: `{"symbol": "BTC-USD", "candles": [{"time": "2024-01-01T00:00:00Z" | 1704067200000,
//! "open": …, "high": …, "low": …, "close": …, "volume": …}, …]}`, oldest first, consecutive
//! bars of the model's bar, at least [`needed`] of them (`GET /model` states it). A gap, a bar off
//! the grid, a bad price or too short a history is a 422 naming it, never a silent forecast.

use crate::error::ApiError;
use crate::state::Served;
use axum::http::StatusCode;
use rps_core::candle::{Candle, Interval};
use rps_core::pipeline::{FeatureSpec, request_row};
use rps_model::Forecast;
use serde::Deserialize;
use serde_json::{Value, json};

/// Most candles one request may carry.
pub const MAX_CANDLES: usize = 20_000;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForecastRequest {
    #[serde(default)]
    pub symbol: Option<String>,
    pub candles: Vec<CandleIn>,
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

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

/// The served model's spec (its saved schema, its own bar).
pub fn spec(served: &Served) -> Result<FeatureSpec, ApiError> {
    let bar: Interval = served.schema.bar.parse().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "model_unsupported",
            format!(
                "the model's schema has an unknown bar {:?}",
                served.schema.bar
            ),
        )
    })?;
    FeatureSpec::from_schema(&served.schema, bar).map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "model_unsupported",
            e.to_string(),
        )
    })
}

/// Candles a forecast needs: the longest lookback of the model's features, plus the bar itself.
pub fn needed(spec: &FeatureSpec) -> usize {
    spec.lookback() + 1
}

/// Check and convert the candles: times parse, lie on the bar grid, strictly increase without a
/// gap; prices are finite and positive with low ≤ open, close ≤ high.
pub fn candles(req: &ForecastRequest, spec: &FeatureSpec) -> Result<Vec<Candle>, ApiError> {
    let bar = spec.bar.ms();
    if req.candles.len() > MAX_CANDLES {
        return Err(unprocessable(
            "too_many_candles",
            format!("{} candles; at most {MAX_CANDLES}", req.candles.len()),
        ));
    }
    let mut out: Vec<Candle> = Vec::with_capacity(req.candles.len());
    for (i, c) in req.candles.iter().enumerate() {
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
            || c.volume.is_some_and(|v| !v.is_finite() || v < 0.0)
        {
            return Err(unprocessable(
                "bad_candle",
                format!(
                    "candles[{i}] at {}: prices must be finite and positive with low <= open, close <= high, volume >= 0",
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
                return Err(unprocessable(
                    "gap",
                    format!(
                        "{} missing bar(s) between {} and {}: the features need a gapless history",
                        (ts - prev.ts) / bar - 1,
                        rfc3339(prev.ts),
                        rfc3339(ts)
                    ),
                ));
            }
        }
        out.push(Candle {
            ts,
            open: c.open,
            high: c.high,
            low: c.low,
            close: c.close,
            volume: c.volume.unwrap_or(0.0),
        });
    }
    let need = needed(spec);
    if out.len() < need {
        return Err(unprocessable(
            "short_history",
            format!(
                "{} candles; this model needs the last {need} consecutive {} bars (GET /model: history_bars)",
                out.len(),
                spec.bar
            ),
        ));
    }
    Ok(out)
}

/// The forecast for the bar after the newest candle.
pub fn forecast(served: &Served, req: &ForecastRequest) -> Result<Value, ApiError> {
    let spec = spec(served)?;
    let bars = candles(req, &spec)?;
    // Only the lookback matters: build over the newest `needed` bars.
    let tail = &bars[bars.len() - needed(&spec)..];
    let row = request_row(&spec, tail)
        .ok_or_else(|| unprocessable("short_history", "no candles".to_owned()))?;
    let names = spec.names();
    #[allow(clippy::cast_possible_truncation)]
    let x: Vec<f32> = served
        .schema
        .features
        .iter()
        .map(|f| {
            names
                .iter()
                .position(|n| n == f)
                .map(|j| row.values[j] as f32)
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "model_unsupported",
                        format!("the model needs feature {f:?}, which its own spec does not build"),
                    )
                })
        })
        .collect::<Result<_, _>>()?;
    let from = row.ts;
    let target = from + spec.bar.ms();
    let per_year = (365.0 * 86_400_000.0 / spec.bar.ms() as f64).sqrt();
    let mut out = json!({
        "model": served.info.name,
        "version": served.info.version,
        "symbol": req.symbol.clone().unwrap_or_else(|| served.schema.symbol.clone()),
        "from_bar": rfc3339(from),
        "target_bar": rfc3339(target),
        "bar": spec.bar.to_string(),
        "candles_used": tail.len(),
    });
    match served.model.predict_one(&x).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("prediction failed: {e}"),
        )
    })? {
        Forecast::Volatility(v) => {
            out["task"] = json!("volatility");
            out["units"] = json!(format!(
                "standard deviation of the {} log return; annualised = times sqrt(bars per year)",
                spec.bar
            ));
            out["volatility"] = json!(v);
            out["volatility_annualised"] = json!(v * per_year);
        }
        Forecast::Signal {
            signal,
            probabilities,
        } => {
            out["task"] = json!("signal");
            out["signal"] = json!(signal.as_str());
            out["probabilities"] = json!({
                "sell": probabilities[0], "hold": probabilities[1], "buy": probabilities[2],
            });
        }
    }
    Ok(out)
}
