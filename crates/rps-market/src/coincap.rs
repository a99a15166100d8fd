//! CoinCap API v3: `GET /assets/{slug}/history` and `GET /candles`.

use crate::error::{MarketError, excerpt};
use crate::http::{
    BODY_EXCERPT, Http, RetryPolicy, Sleeper, decimal, join_url, json_kind, millis, parse_json,
};
use crate::{FetchRequest, MarketSource, Progress, check_request, finish, in_range};
use reqwest::{StatusCode, Url};
use rps_core::candle::{Candle, Interval};
use std::fmt;
use tracing::debug;

const API: &str = "CoinCap";

/// Most rows `/candles` returns per request.
pub const CANDLES_LIMIT: i64 = 2000;

/// Bars per `/history` request: 720 keeps responses (and credit cost) small — 30 days of `h1`,
/// 12 hours of `m1`.
pub const HISTORY_WINDOW_BARS: i64 = 720;

/// Which CoinCap endpoint to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoinCapMode {
    /// `/assets/{slug}/history?interval=…&start=…&end=…`: CoinCap's volume-weighted USD price
    /// index. It is **close-only**: every bar comes back with `open = high = low = close =
    /// priceUsd` and `volume = 0`, so range-based volatility estimators (Parkinson,
    /// Garman–Klass) degenerate on it; use close-to-close estimators. It also has gaps.
    History,
    /// `/candles?exchange=…&interval=…&baseId=<slug>&quoteId=…&start=…&end=…`: real OHLCV from one
    /// exchange (e.g. `binance` / `tether`). Up to 2000 rows per request; sometimes answers
    /// `{"data":[]}` for ranges it does have.
    Candles { exchange: String, quote_id: String },
}

impl CoinCapMode {
    /// Candles from Binance's BTC/USDT-like market for the slug (`exchange=binance`,
    /// `quoteId=tether`).
    pub fn binance_tether() -> Self {
        Self::Candles {
            exchange: "binance".to_owned(),
            quote_id: "tether".to_owned(),
        }
    }
}

/// CoinCap's name for an interval: 1m→m1, 5m→m5, 15m→m15, 30m→m30, 1h→h1, 2h→h2, 6h→h6, 12h→h12,
/// 1d→d1. Anything else is not served.
pub fn coincap_interval(interval: Interval) -> Option<&'static str> {
    Some(match interval.to_string().as_str() {
        "1m" => "m1",
        "5m" => "m5",
        "15m" => "m15",
        "30m" => "m30",
        "1h" => "h1",
        "2h" => "h2",
        "6h" => "h6",
        "12h" => "h12",
        "1d" => "d1",
        _ => return None,
    })
}

/// Client for CoinCap v3. See the crate docs.
pub struct CoinCapClient {
    http: Http,
    base_url: String,
    api_key: Option<String>,
    mode: CoinCapMode,
}

impl fmt::Debug for CoinCapClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoinCapClient")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("mode", &self.mode)
            .field("retry", &self.http.retry)
            .finish_non_exhaustive()
    }
}

impl CoinCapClient {
    pub const DEFAULT_BASE_URL: &'static str = "https://rest.coincap.io/v3";

    /// A client for `base_url` (normally [`Self::DEFAULT_BASE_URL`]). `api_key` is sent as
    /// `Authorization: Bearer <key>`; an empty key counts as none. Without a key CoinCap v3
    /// answers 401, reported as [`MarketError::Unauthorized`].
    pub fn new(
        base_url: &str,
        api_key: Option<String>,
        mode: CoinCapMode,
        retry: RetryPolicy,
    ) -> Result<Self, MarketError> {
        join_url(API, base_url, &["candles"])?;
        Ok(Self {
            http: Http::new(API, retry)?,
            base_url: base_url.to_owned(),
            api_key: api_key.filter(|k| !k.trim().is_empty()),
            mode,
        })
    }

    /// Replace how the client waits between retries.
    #[must_use]
    pub fn with_sleeper(mut self, sleeper: Sleeper) -> Self {
        self.http.sleeper = sleeper;
        self
    }

    pub fn mode(&self) -> &CoinCapMode {
        &self.mode
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.http.retry
    }

    /// The history URL for one window.
    pub fn history_url(
        &self,
        slug: &str,
        interval: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Url, MarketError> {
        let mut url = join_url(API, &self.base_url, &["assets", slug, "history"])?;
        url.query_pairs_mut()
            .append_pair("interval", interval)
            .append_pair("start", &start_ms.to_string())
            .append_pair("end", &end_ms.to_string());
        Ok(url)
    }

    /// The candles URL for one window.
    pub fn candles_url(
        &self,
        exchange: &str,
        quote_id: &str,
        slug: &str,
        interval: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Url, MarketError> {
        let mut url = join_url(API, &self.base_url, &["candles"])?;
        url.query_pairs_mut()
            .append_pair("exchange", exchange)
            .append_pair("interval", interval)
            .append_pair("baseId", slug)
            .append_pair("quoteId", quote_id)
            .append_pair("start", &start_ms.to_string())
            .append_pair("end", &end_ms.to_string());
        Ok(url)
    }

    fn get_data(&self, url: &Url, endpoint: &str) -> Result<Vec<serde_json::Value>, MarketError> {
        let reply = self.http.get(url, self.api_key.as_deref(), &reject)?;
        parse_data(endpoint, &reply.body)
    }
}

impl MarketSource for CoinCapClient {
    fn name(&self) -> &'static str {
        "coincap"
    }

    fn fetch(
        &self,
        req: &FetchRequest,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<Candle>, MarketError> {
        if check_request(API, req)?.is_none() {
            return Ok(Vec::new());
        }
        let code = coincap_interval(req.interval).ok_or_else(|| {
            MarketError::invalid(
                API,
                format!(
                    "interval {} is not served by CoinCap (use 1m 5m 15m 30m 1h 2h 6h 12h 1d)",
                    req.interval
                ),
            )
        })?;
        let slug = req.symbol.trim().to_ascii_lowercase();
        let step = req.interval.ms();
        let mut bars: Vec<Candle> = Vec::new();
        let mut cursor = req.start_ms;
        let window_bars = match self.mode {
            CoinCapMode::History => HISTORY_WINDOW_BARS,
            CoinCapMode::Candles { .. } => CANDLES_LIMIT,
        };
        while cursor < req.end_ms {
            let window_end = cursor
                .saturating_add(step.saturating_mul(window_bars))
                .min(req.end_ms);
            let page = match &self.mode {
                CoinCapMode::History => {
                    let url = self.history_url(&slug, code, cursor, window_end)?;
                    let rows = self.get_data(&url, "history")?;
                    rows.iter()
                        .enumerate()
                        .map(|(i, r)| history_row(i, r))
                        .collect::<Result<Vec<_>, _>>()?
                }
                CoinCapMode::Candles { exchange, quote_id } => {
                    let url =
                        self.candles_url(exchange, quote_id, &slug, code, cursor, window_end)?;
                    let rows = self.get_data(&url, "candles")?;
                    rows.iter()
                        .enumerate()
                        .map(|(i, r)| candle_row(i, r))
                        .collect::<Result<Vec<_>, _>>()?
                }
            };
            debug!(cursor, window_end, rows = page.len(), "CoinCap window");
            // If the page stops short of the window (a row cap lower than expected, or a gap at
            // the end of the window), ask again from just after its last bar; an empty page
            // means the rest of the window is a gap (or CoinCap's `{"data":[]}`): move on.
            let last = page.iter().map(|c| c.ts).max();
            bars.extend(in_range(page, req));
            cursor = match last {
                Some(last) if last.saturating_add(step) < window_end => {
                    last.saturating_add(step).max(cursor.saturating_add(step))
                }
                _ => window_end,
            };
            progress(Progress {
                bars: bars.len(),
                cursor_ms: cursor.min(req.end_ms),
                end_ms: req.end_ms,
            });
        }
        Ok(finish(bars))
    }
}

/// A non-retryable error status: 401/403 → `Unauthorized`, other 4xx → `InvalidRequest` with
/// CoinCap's `error`/`message` text when there is one.
fn reject(status: StatusCode, body: &str) -> MarketError {
    let detail = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            ["error", "message", "msg"]
                .iter()
                .find_map(|k| v.get(k).and_then(|m| m.as_str()).map(str::to_owned))
        })
        .unwrap_or_else(|| excerpt(body, BODY_EXCERPT));
    match status.as_u16() {
        401 | 403 => MarketError::Unauthorized {
            api: API,
            status: status.as_u16(),
            detail,
        },
        s if (400..500).contains(&s) => MarketError::InvalidRequest {
            api: API,
            status: Some(s),
            message: detail,
        },
        s => MarketError::Http {
            api: API,
            status: s,
            body: detail,
        },
    }
}

/// The `data` array of a CoinCap response (`{"data":[…],"timestamp":…}`); `{"data":[]}` is fine.
fn parse_data(endpoint: &str, body: &str) -> Result<Vec<serde_json::Value>, MarketError> {
    let value = parse_json(API, endpoint, body)?;
    let kind = json_kind(&value);
    let serde_json::Value::Object(mut map) = value else {
        return Err(MarketError::malformed(
            API,
            format!("{endpoint} body is {kind}, expected an object with a \"data\" array"),
            format!("expected a JSON object, got {kind}"),
        ));
    };
    match map.remove("data") {
        Some(serde_json::Value::Array(rows)) => Ok(rows),
        Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(other) => {
            let kind = json_kind(&other);
            Err(MarketError::malformed(
                API,
                format!("{endpoint} \"data\" is {kind}, expected an array"),
                format!("expected an array, got {kind}"),
            ))
        }
        None => Err(MarketError::malformed(
            API,
            format!(
                "{endpoint} body has no \"data\" field; body starts with {:?}",
                excerpt(body, 120)
            ),
            "missing field \"data\"",
        )),
    }
}

fn field<'a>(
    endpoint: &str,
    i: usize,
    row: &'a serde_json::Value,
    name: &str,
) -> Result<&'a serde_json::Value, MarketError> {
    row.get(name).ok_or_else(|| {
        MarketError::malformed(
            API,
            format!("{endpoint} row {i} has no field {name:?}"),
            format!("row {}", excerpt(&row.to_string(), 200)),
        )
    })
}

fn decimal_field(
    endpoint: &str,
    i: usize,
    row: &serde_json::Value,
    name: &str,
) -> Result<f64, MarketError> {
    decimal(field(endpoint, i, row, name)?).map_err(|e| {
        MarketError::malformed(API, format!("{endpoint} row {i}: field {name} {e}"), e)
    })
}

fn millis_field(
    endpoint: &str,
    i: usize,
    row: &serde_json::Value,
    name: &str,
) -> Result<i64, MarketError> {
    millis(field(endpoint, i, row, name)?).map_err(|e| {
        MarketError::malformed(API, format!("{endpoint} row {i}: field {name} {e}"), e)
    })
}

/// `{"priceUsd":"6379.39…","time":1530403200000,…}` → a flat bar (close-only, volume 0).
fn history_row(i: usize, row: &serde_json::Value) -> Result<Candle, MarketError> {
    let price = decimal_field("history", i, row, "priceUsd")?;
    Ok(Candle {
        ts: millis_field("history", i, row, "time")?,
        open: price,
        high: price,
        low: price,
        close: price,
        volume: 0.0,
        ..Default::default()
    })
}

/// `{"open":"…","high":"…","low":"…","close":"…","volume":"…","period":1530403200000}` → a bar.
fn candle_row(i: usize, row: &serde_json::Value) -> Result<Candle, MarketError> {
    let d = |name: &str| decimal_field("candles", i, row, name);
    Ok(Candle {
        ts: millis_field("candles", i, row, "period")?,
        open: d("open")?,
        high: d("high")?,
        low: d("low")?,
        close: d("close")?,
        volume: d("volume")?,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(mode: CoinCapMode) -> CoinCapClient {
        CoinCapClient::new(
            CoinCapClient::DEFAULT_BASE_URL,
            Some("secret".into()),
            mode,
            RetryPolicy::default(),
        )
        .expect("client")
    }

    #[test]
    fn interval_mapping() {
        let cases = [
            ("1m", Some("m1")),
            ("5m", Some("m5")),
            ("15m", Some("m15")),
            ("30m", Some("m30")),
            ("1h", Some("h1")),
            ("60m", Some("h1")),
            ("2h", Some("h2")),
            ("6h", Some("h6")),
            ("12h", Some("h12")),
            ("1d", Some("d1")),
            ("24h", Some("d1")),
            ("4h", None),
            ("3m", None),
            ("1w", None),
        ];
        for (s, want) in cases {
            let i: Interval = s.parse().expect("interval");
            assert_eq!(coincap_interval(i), want, "{s}");
        }
    }

    #[test]
    fn urls_carry_every_param_and_never_the_key() {
        let c = client(CoinCapMode::History);
        let u = c
            .history_url("bitcoin", "h1", 1_530_403_200_000, 1_533_081_600_000)
            .expect("url");
        assert_eq!(
            u.as_str(),
            "https://rest.coincap.io/v3/assets/bitcoin/history?interval=h1&start=1530403200000&end=1533081600000"
        );
        let u = c
            .candles_url("binance", "tether", "bitcoin", "h1", 1, 2)
            .expect("url");
        assert_eq!(
            u.as_str(),
            "https://rest.coincap.io/v3/candles?exchange=binance&interval=h1&baseId=bitcoin&quoteId=tether&start=1&end=2"
        );
        assert!(!u.as_str().contains("secret"));
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn empty_key_counts_as_none() {
        let c = CoinCapClient::new(
            "http://127.0.0.1:9/v3",
            Some("  ".into()),
            CoinCapMode::History,
            RetryPolicy::default(),
        )
        .expect("client");
        assert_eq!(c.api_key, None);
    }

    #[test]
    fn rows_parse_string_decimals() {
        let body = r#"{"data":[{"priceUsd":"6379.3997635993342453","time":1530403200000,
            "circulatingSupply":"17128500.0000000000000000","date":"2018-07-01T00:00:00.000Z"}],
            "timestamp":1533581900000}"#;
        let rows = parse_data("history", body).expect("data");
        let bar = history_row(0, &rows[0]).expect("row");
        assert_eq!(bar.ts, 1_530_403_200_000);
        assert_eq!(
            bar.close,
            "6379.3997635993342453".parse::<f64>().expect("f64")
        );
        assert_eq!(
            (bar.open, bar.high, bar.low, bar.volume),
            (bar.close, bar.close, bar.close, 0.0)
        );

        let body = r#"{"data":[{"open":"1.5","high":"2.25","low":"1.0","close":"2.0","volume":"10.5","period":1530403200000}]}"#;
        let rows = parse_data("candles", body).expect("data");
        assert_eq!(
            candle_row(0, &rows[0]).expect("row"),
            Candle {
                ts: 1_530_403_200_000,
                open: 1.5,
                high: 2.25,
                low: 1.0,
                close: 2.0,
                volume: 10.5,
                ..Default::default()
            }
        );
        assert!(
            parse_data("candles", r#"{"data":[]}"#)
                .expect("empty")
                .is_empty()
        );
    }

    #[test]
    fn malformed_bodies_name_the_problem() {
        let e = parse_data("history", r#"{"error":"x"}"#).expect_err("no data");
        assert!(e.to_string().contains("no \"data\" field"), "{e}");
        let e = parse_data("history", "[]").expect_err("array");
        assert!(e.to_string().contains("history body is an array"), "{e}");
        let row: serde_json::Value = serde_json::json!({"time": 1});
        let e = history_row(4, &row).expect_err("no price");
        assert!(
            e.to_string()
                .contains("history row 4 has no field \"priceUsd\""),
            "{e}"
        );
        let row: serde_json::Value = serde_json::json!({"priceUsd": "1", "time": "soon"});
        let e = history_row(0, &row).expect_err("bad time");
        assert!(e.to_string().contains("field time \"soon\""), "{e}");
    }

    #[test]
    fn rejects() {
        let e = reject(StatusCode::UNAUTHORIZED, r#"{"error":"Invalid API key"}"#);
        let s = e.to_string();
        assert!(
            s.contains("COINCAP_API_KEY") && s.contains("Invalid API key"),
            "{s}"
        );
        let e = reject(StatusCode::NOT_FOUND, r#"{"error":"bitcoinz not found"}"#);
        assert!(
            matches!(
                e,
                MarketError::InvalidRequest {
                    status: Some(404),
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("bitcoinz not found"));
    }
}
