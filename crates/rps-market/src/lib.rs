//! Market-data HTTP clients for RPS: hourly (or other) OHLCV bars for Bitcoin from Binance and
//! CoinCap, as [`rps_core::candle::Candle`]s.
//!
//! Both clients implement [`MarketSource`]: give them a [`FetchRequest`] (symbol, interval and a
//! half-open range `[start_ms, end_ms)` on bar **open** time) and they page through the API,
//! report [`Progress`] after every page and return the bars sorted by time, without duplicates,
//! and only those with `start_ms <= ts < end_ms`.
//!
//! - [`BinanceClient`] reads `GET /api/v3/klines` (no key needed). Pages hold up to 1000 bars;
//!   the next page starts one interval after the last bar received, and paging stops at an empty
//!   page or when the cursor reaches `end_ms`. The `X-MBX-USED-WEIGHT-1M` header is watched: when
//!   it passes a threshold (5000 of the 6000 per-minute cap by default) the client pauses until
//!   the next minute boundary (or for a configured pause) before the next page. The symbol is an
//!   exchange pair such as `BTCUSDT`.
//! - [`CoinCapClient`] reads CoinCap v3, authenticated with `Authorization: Bearer <key>` (never
//!   the `?apiKey=` query form, which leaks into logs). The caller reads the key (RPS uses the
//!   `COINCAP_API_KEY` environment variable); this crate never touches the environment. The symbol
//!   is an asset slug such as `bitcoin`. Two modes, see [`CoinCapMode`]:
//!   [`CoinCapMode::History`] (`/assets/{slug}/history`, a close-only price index: every bar has
//!   `open = high = low = close = priceUsd` and `volume = 0`) and [`CoinCapMode::Candles`]
//!   (`/candles`, real OHLCV from one exchange).
//!
//! # Errors, retries and rate limits
//!
//! Every request goes through the same [`RetryPolicy`]: 5xx answers, timeouts and connection
//! errors are retried with capped exponential back-off plus jitter; 429 and 418 honour
//! `Retry-After` (seconds) when it is at most [`RetryPolicy::max_retry_after`] and otherwise fail at
//! once with [`MarketError::RateLimited`] / [`MarketError::Banned`] (a Binance 418 is an IP ban of
//! up to 3 days: do not sleep through it, and do not keep knocking). Other 4xx answers are not
//! retried: Binance's `{"code":…,"msg":…}` becomes [`MarketError::InvalidRequest`] carrying the
//! message, CoinCap's 401/403 becomes [`MarketError::Unauthorized`]. A 2xx body that does not
//! match the documented shape is a [`MarketError::MalformedPayload`] naming the row and field.
//! Retries are logged with `tracing::warn!`, requests with `tracing::debug!`.
//!
//! # Testing
//!
//! The base URL is a constructor argument (point it at a local mock server), and all waiting goes
//! through an injectable [`Sleeper`] (default [`std::thread::sleep`]) so tests record the waits
//! instead of sleeping; the Binance client's wall clock is injectable too ([`Clock`]).
//!
//! ```no_run
//! use rps_core::candle::Interval;
//! use rps_market::{BinanceClient, FetchRequest, MarketSource, RetryPolicy};
//!
//! let client = BinanceClient::new(BinanceClient::DEFAULT_BASE_URL, RetryPolicy::default())?;
//! let req = FetchRequest::new("BTCUSDT", Interval::H1, 1_704_067_200_000, 1_706_745_600_000);
//! let bars = client.fetch(&req, &mut |p| tracing::info!(bars = p.bars, "fetching"))?;
//! # Ok::<(), rps_market::MarketError>(())
//! ```

pub mod binance;
pub mod coincap;
pub mod configured;
mod error;
mod http;

pub use binance::BinanceClient;
pub use coincap::{CoinCapClient, CoinCapMode};
pub use configured::{ConfiguredSource, from_params};
pub use error::MarketError;
pub use http::{Clock, RetryPolicy, Sleeper, system_clock, thread_sleeper};

use rps_core::candle::{Candle, Interval, sort_dedup};

/// What to fetch: bars of `interval` for `symbol` whose open time lies in `[start_ms, end_ms)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// Binance: the pair (`BTCUSDT`); CoinCap: the asset slug (`bitcoin`).
    pub symbol: String,
    pub interval: Interval,
    /// Inclusive, milliseconds since the Unix epoch (UTC), on bar open time.
    pub start_ms: i64,
    /// Exclusive.
    pub end_ms: i64,
}

impl FetchRequest {
    pub fn new(symbol: impl Into<String>, interval: Interval, start_ms: i64, end_ms: i64) -> Self {
        Self {
            symbol: symbol.into(),
            interval,
            start_ms,
            end_ms,
        }
    }
}

/// Reported after every page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bars in range received so far (before de-duplication across pages).
    pub bars: usize,
    /// Where the next page starts (at most `end_ms`).
    pub cursor_ms: i64,
    pub end_ms: i64,
}

/// A source of historical bars.
pub trait MarketSource {
    /// Short name for logs and metadata (`"binance"`, `"coincap"`).
    fn name(&self) -> &'static str;

    /// Fetch every bar with `req.start_ms <= ts < req.end_ms`, sorted and de-duplicated, calling
    /// `progress` after each page.
    fn fetch(
        &self,
        req: &FetchRequest,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<Candle>, MarketError>;
}

/// Check a request before any network traffic. `Ok(None)` means the range is empty.
fn check_request(api: &'static str, req: &FetchRequest) -> Result<Option<()>, MarketError> {
    if req.symbol.trim().is_empty() {
        return Err(MarketError::invalid(api, "the symbol is empty"));
    }
    if req.end_ms < req.start_ms {
        return Err(MarketError::invalid(
            api,
            format!(
                "end ({}) is before start ({}); the range is [start, end) in ms",
                req.end_ms, req.start_ms
            ),
        ));
    }
    Ok((req.end_ms > req.start_ms).then_some(()))
}

/// Keep only the bars of `page` inside `[start, end)`.
fn in_range(page: Vec<Candle>, req: &FetchRequest) -> impl Iterator<Item = Candle> + '_ {
    page.into_iter()
        .filter(move |c| c.ts >= req.start_ms && c.ts < req.end_ms)
}

/// Sort and de-duplicate the collected bars.
fn finish(mut bars: Vec<Candle>) -> Vec<Candle> {
    sort_dedup(&mut bars);
    bars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked() {
        let ok = FetchRequest::new("BTCUSDT", Interval::H1, 0, 10);
        assert_eq!(check_request("X", &ok).ok(), Some(Some(())));
        let empty = FetchRequest::new("BTCUSDT", Interval::H1, 10, 10);
        assert_eq!(check_request("X", &empty).ok(), Some(None));
        let backwards = FetchRequest::new("BTCUSDT", Interval::H1, 10, 0);
        assert!(matches!(
            check_request("X", &backwards),
            Err(MarketError::InvalidRequest { .. })
        ));
        let blank = FetchRequest::new(" ", Interval::H1, 0, 10);
        assert!(check_request("X", &blank).is_err());
    }
}
