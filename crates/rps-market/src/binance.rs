//! Binance spot klines: `GET /api/v3/klines`.

use crate::error::{MarketError, excerpt};
use crate::http::{
    BODY_EXCERPT, Clock, Http, RetryPolicy, Sleeper, decimal, join_url, json_kind, millis,
    parse_json, system_clock,
};
use crate::{FetchRequest, MarketSource, Progress, check_request, finish, in_range};
use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};
use rps_core::candle::{Candle, Interval};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;
use tracing::{debug, warn};

const API: &str = "Binance";

/// Most rows Binance returns per klines request.
pub const KLINES_LIMIT: usize = 1000;

/// Binance's request-weight budget per minute per IP.
pub const WEIGHT_CAP: u32 = 6000;

/// Used weight above which the client pauses before its next request.
pub const DEFAULT_WEIGHT_THRESHOLD: u32 = 5000;

/// Extra wait after the minute boundary, for clock skew between us and Binance.
pub const MINUTE_BOUNDARY_MARGIN: Duration = Duration::from_secs(1);

/// Intervals Binance serves (`1M`, a calendar month, has no fixed length and is not supported).
pub const SUPPORTED_INTERVALS: [&str; 15] = [
    "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w",
];

/// The used-weight header Binance puts on every response.
pub const USED_WEIGHT_HEADER: &str = "x-mbx-used-weight-1m";

/// Client for Binance's public klines endpoint. See the crate docs for paging and rate limits.
pub struct BinanceClient {
    http: Http,
    base_url: String,
    weight_threshold: u32,
    weight_pause: Option<Duration>,
    clock: Clock,
}

impl fmt::Debug for BinanceClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BinanceClient")
            .field("base_url", &self.base_url)
            .field("retry", &self.http.retry)
            .field("weight_threshold", &self.weight_threshold)
            .field("weight_pause", &self.weight_pause)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct ApiError {
    code: i64,
    msg: String,
}

impl BinanceClient {
    pub const DEFAULT_BASE_URL: &'static str = "https://api.binance.com";

    /// A client for `base_url` (normally [`Self::DEFAULT_BASE_URL`]).
    pub fn new(base_url: &str, retry: RetryPolicy) -> Result<Self, MarketError> {
        join_url(API, base_url, &["api", "v3", "klines"])?;
        Ok(Self {
            http: Http::new(API, retry)?,
            base_url: base_url.to_owned(),
            weight_threshold: DEFAULT_WEIGHT_THRESHOLD,
            weight_pause: None,
            clock: system_clock(),
        })
    }

    /// Replace how the client waits (retries and weight pauses).
    #[must_use]
    pub fn with_sleeper(mut self, sleeper: Sleeper) -> Self {
        self.http.sleeper = sleeper;
        self
    }

    /// Replace the wall clock used to find the next minute boundary.
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Pause before the next page when `X-MBX-USED-WEIGHT-1M` exceeds `threshold`
    /// (default [`DEFAULT_WEIGHT_THRESHOLD`]).
    #[must_use]
    pub fn with_weight_threshold(mut self, threshold: u32) -> Self {
        self.weight_threshold = threshold;
        self
    }

    /// Pause for a fixed `pause` when the weight runs high, instead of until the next minute
    /// boundary plus [`MINUTE_BOUNDARY_MARGIN`].
    #[must_use]
    pub fn with_weight_pause(mut self, pause: Duration) -> Self {
        self.weight_pause = Some(pause);
        self
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.http.retry
    }

    /// The klines URL for one page: `[start_ms, end_ms_inclusive]` on open time.
    pub fn klines_url(
        &self,
        symbol: &str,
        interval: Interval,
        start_ms: i64,
        end_ms_inclusive: i64,
        limit: usize,
    ) -> Result<Url, MarketError> {
        let mut url = join_url(API, &self.base_url, &["api", "v3", "klines"])?;
        url.query_pairs_mut()
            .append_pair("symbol", symbol)
            .append_pair("interval", &interval.to_string())
            .append_pair("startTime", &start_ms.to_string())
            .append_pair("endTime", &end_ms_inclusive.to_string())
            .append_pair("limit", &limit.to_string());
        Ok(url)
    }

    /// How long to pause when the used weight is `used`.
    fn weight_pause(&self, used: u32) -> Duration {
        let pause = self.weight_pause.unwrap_or_else(|| {
            let now = (self.clock)();
            let to_boundary = 60_000 - now.rem_euclid(60_000);
            Duration::from_millis(u64::try_from(to_boundary).unwrap_or(60_000))
                + MINUTE_BOUNDARY_MARGIN
        });
        warn!(
            used,
            cap = WEIGHT_CAP,
            pause_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
            "Binance request weight is close to the per-minute cap; pausing"
        );
        pause
    }
}

impl MarketSource for BinanceClient {
    fn name(&self) -> &'static str {
        "binance"
    }

    fn fetch(
        &self,
        req: &FetchRequest,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<Candle>, MarketError> {
        if check_request(API, req)?.is_none() {
            return Ok(Vec::new());
        }
        let interval = req.interval.to_string();
        if !SUPPORTED_INTERVALS.contains(&interval.as_str()) {
            return Err(MarketError::invalid(
                API,
                format!(
                    "interval {interval} is not a Binance kline interval (one of {})",
                    SUPPORTED_INTERVALS.join(" ")
                ),
            ));
        }
        // Binance symbols are upper case; "btcusdt" would be an "Invalid symbol.".
        let symbol = req.symbol.trim().to_ascii_uppercase();
        let step = req.interval.ms();
        let mut bars: Vec<Candle> = Vec::new();
        let mut cursor = req.start_ms;
        let mut weight_high: Option<u32> = None;
        while cursor < req.end_ms {
            if let Some(used) = weight_high.take() {
                self.http.sleep(self.weight_pause(used));
            }
            let url =
                self.klines_url(&symbol, req.interval, cursor, req.end_ms - 1, KLINES_LIMIT)?;
            let reply = self.http.get(&url, None, &reject)?;
            if let Some(used) = used_weight(&reply.headers)
                && used > self.weight_threshold
            {
                weight_high = Some(used);
            }
            let page = parse_klines(&reply.body)?;
            let Some(last) = page.iter().map(|c| c.ts).max() else {
                debug!(cursor, "empty klines page: done");
                break;
            };
            let received = page.len();
            bars.extend(in_range(page, req));
            let next = last.saturating_add(step);
            if next <= cursor {
                warn!(
                    cursor,
                    last, "klines page did not move past the cursor; stopping"
                );
                break;
            }
            cursor = next;
            debug!(received, total = bars.len(), cursor, "klines page");
            progress(Progress {
                bars: bars.len(),
                cursor_ms: cursor.min(req.end_ms),
                end_ms: req.end_ms,
            });
        }
        Ok(finish(bars))
    }
}

/// A non-retryable error status: Binance's `{"code","msg"}` becomes an `InvalidRequest`.
fn reject(status: StatusCode, body: &str) -> MarketError {
    match serde_json::from_str::<ApiError>(body) {
        Ok(e) => MarketError::InvalidRequest {
            api: API,
            status: Some(status.as_u16()),
            message: format!("{} (code {})", e.msg, e.code),
        },
        Err(_) => MarketError::Http {
            api: API,
            status: status.as_u16(),
            body: excerpt(body, BODY_EXCERPT),
        },
    }
}

/// `X-MBX-USED-WEIGHT-1M`, if present and numeric.
pub fn used_weight(headers: &HeaderMap) -> Option<u32> {
    headers
        .get(USED_WEIGHT_HEADER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Parse a klines body: an array of rows `[openTime, open, high, low, close, volume, closeTime,
/// quoteAssetVolume, numberOfTrades, takerBuyBase, takerBuyQuote, ignore]`, prices and volumes as
/// decimal strings, `numberOfTrades` an integer. Fields 0–5 are OHLCV; 7–10 (quote volume, trades,
/// taker-buy base and quote volume) are kept as the candle's order-flow columns, `None` when a
/// row is too short to have them (`closeTime` and `ignore` are dropped).
pub fn parse_klines(body: &str) -> Result<Vec<Candle>, MarketError> {
    let value = parse_json(API, "klines", body)?;
    let serde_json::Value::Array(rows) = value else {
        let kind = json_kind(&value);
        return Err(MarketError::malformed(
            API,
            format!(
                "klines body is {kind}, expected an array of rows; body starts with {:?}",
                excerpt(body, 120)
            ),
            format!("expected a JSON array, got {kind}"),
        ));
    };
    rows.iter()
        .enumerate()
        .map(|(i, row)| parse_row(i, row))
        .collect()
}

fn parse_row(i: usize, row: &serde_json::Value) -> Result<Candle, MarketError> {
    let bad = |what: String, why: String| MarketError::malformed(API, what, why);
    let cells = row.as_array().ok_or_else(|| {
        bad(
            format!("klines row {i} is {}, expected an array", json_kind(row)),
            format!("row {row}"),
        )
    })?;
    if cells.len() < 6 {
        return Err(bad(
            format!("klines row {i} has {} fields, expected 12", cells.len()),
            format!("row {row}"),
        ));
    }
    let ts = millis(&cells[0]).map_err(|e| bad(format!("klines row {i}: openTime {e}"), e))?;
    let field = |k: usize, name: &str| {
        decimal(&cells[k]).map_err(|e| bad(format!("klines row {i}: field {name} {e}"), e))
    };
    let optional = |k: usize, name: &str| cells.get(k).map(|_| field(k, name)).transpose();
    let trades = cells
        .get(8)
        .map(|v| {
            v.as_u64().ok_or_else(|| {
                bad(
                    format!("klines row {i}: field numberOfTrades {v} is not a whole number"),
                    format!("{v} is not a non-negative integer"),
                )
            })
        })
        .transpose()?;
    Ok(Candle {
        ts,
        open: field(1, "open")?,
        high: field(2, "high")?,
        low: field(3, "low")?,
        close: field(4, "close")?,
        volume: field(5, "volume")?,
        quote_volume: optional(7, "quoteAssetVolume")?,
        trades,
        taker_buy_volume: optional(9, "takerBuyBaseAssetVolume")?,
        taker_buy_quote_volume: optional(10, "takerBuyQuoteAssetVolume")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use std::sync::Arc;

    fn client(base: &str) -> BinanceClient {
        BinanceClient::new(base, RetryPolicy::default()).expect("client")
    }

    #[test]
    fn klines_url_carries_every_param() {
        let c = client("https://api.binance.com/");
        let url = c
            .klines_url(
                "BTCUSDT",
                Interval::H1,
                1_700_000_000_000,
                1_700_003_599_999,
                1000,
            )
            .expect("url");
        assert_eq!(
            url.as_str(),
            "https://api.binance.com/api/v3/klines?symbol=BTCUSDT&interval=1h\
             &startTime=1700000000000&endTime=1700003599999&limit=1000"
        );
        let url = client("http://127.0.0.1:9/")
            .klines_url("ETHBTC", Interval::M30, 0, 1, 5)
            .expect("url");
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/api/v3/klines?symbol=ETHBTC&interval=30m&startTime=0&endTime=1&limit=5"
        );
    }

    #[test]
    fn bad_base_url_is_a_setup_error() {
        assert!(matches!(
            BinanceClient::new("::", RetryPolicy::default()),
            Err(MarketError::Setup { .. })
        ));
    }

    #[test]
    fn parses_documented_rows() {
        let body = r#"[[1499040000000,"0.01634790","0.80000000","0.01575800","0.01577100","148976.11427815",
            1499644799999,"2434.19055334",308,"1756.87402397","28.46694368","0"]]"#;
        let bars = parse_klines(body).expect("parses");
        assert_eq!(
            bars,
            vec![Candle {
                ts: 1_499_040_000_000,
                open: 0.016_347_9,
                high: 0.8,
                low: 0.015_758,
                close: 0.015_771,
                volume: 148_976.114_278_15,
                quote_volume: Some(2_434.190_553_34),
                trades: Some(308),
                taker_buy_volume: Some(1_756.874_023_97),
                taker_buy_quote_volume: Some(28.466_943_68),
            }]
        );
        assert_eq!(parse_klines("[]").expect("empty").len(), 0);
        // A row cut after the volume still gives OHLCV, without the order-flow columns.
        let short = parse_klines(r#"[[1499040000000,"1","2","0.5","1.5","10"]]"#).expect("short");
        assert!(!short[0].has_flow());
        // A fractional or quoted trade count is malformed, not silently dropped.
        let err = parse_klines(
            r#"[[1499040000000,"1","2","0.5","1.5","10",1499043599999,"15","3.5","6","9","0"]]"#,
        )
        .expect_err("fractional trades");
        assert!(err.to_string().contains("numberOfTrades"), "{err}");
    }

    #[test]
    fn malformed_rows_name_the_problem() {
        let cases = [
            (r#"{"code":0}"#, "klines body is an object"),
            (r#"[[1,"1","1","1","1"]]"#, "row 0 has 5 fields"),
            (
                r#"[[1,"1","1","1","1","1"],["x","1","1","1","1","1"]]"#,
                "row 1: openTime",
            ),
            (
                r#"[[1,"1","abc","1","1","1"]]"#,
                "row 0: field high \"abc\"",
            ),
            (r#"[[1,"1","1","1","1",null]]"#, "row 0: field volume null"),
            ("[[1,", "not valid JSON"),
        ];
        for (body, needle) in cases {
            let e = parse_klines(body).expect_err(body);
            assert!(matches!(e, MarketError::MalformedPayload { .. }), "{e:?}");
            assert!(
                e.to_string().contains(needle),
                "{e} should contain {needle:?}"
            );
        }
    }

    #[test]
    fn rejects_carry_binance_msg() {
        let e = reject(
            StatusCode::BAD_REQUEST,
            r#"{"code":-1121,"msg":"Invalid symbol."}"#,
        );
        assert_eq!(
            e.to_string(),
            "Binance rejected the request (HTTP 400): Invalid symbol. (code -1121)"
        );
        let e = reject(StatusCode::FORBIDDEN, "<html>WAF</html>");
        assert!(matches!(e, MarketError::Http { status: 403, .. }), "{e:?}");
    }

    #[test]
    fn used_weight_header() {
        let mut h = HeaderMap::new();
        assert_eq!(used_weight(&h), None);
        h.insert("X-MBX-USED-WEIGHT-1M", HeaderValue::from_static("5123"));
        assert_eq!(used_weight(&h), Some(5123));
    }

    #[test]
    fn weight_pause_runs_to_the_next_minute() {
        let c = client("http://127.0.0.1:9").with_clock(Arc::new(|| 1_700_000_045_250));
        // 1_700_000_045_250 % 60_000 = 5_250 → 54.75 s to the boundary, plus the margin.
        assert_eq!(
            c.weight_pause(5500),
            Duration::from_millis(54_750) + MINUTE_BOUNDARY_MARGIN
        );
        let c = c.with_weight_pause(Duration::from_secs(3));
        assert_eq!(c.weight_pause(5500), Duration::from_secs(3));
    }
}
