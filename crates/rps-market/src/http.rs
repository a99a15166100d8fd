//! The retrying GET shared by both clients.

use crate::error::{MarketError, error_chain, excerpt};
use rand::Rng;
use reqwest::blocking::Client;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::{debug, warn};

/// How the clients wait. The default is [`std::thread::sleep`]; tests inject a recorder so
/// they never sleep for real and can assert on the waits that were asked for.
pub type Sleeper = Arc<dyn Fn(Duration) + Send + Sync>;

/// The wall clock in milliseconds since the Unix epoch (used to find the next minute boundary
/// when Binance's request weight runs high). Injectable for tests.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// A [`Sleeper`] that really sleeps.
pub fn thread_sleeper() -> Sleeper {
    Arc::new(std::thread::sleep)
}

/// A [`Clock`] reading the system time.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    })
}

/// Longest body excerpt kept in error messages.
pub(crate) const BODY_EXCERPT: usize = 300;

/// When and how long to retry.
///
/// Retried: 5xx, 429, 418 (when its `Retry-After` is short enough), timeouts and connection
/// errors. Not retried: other 4xx and malformed payloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so at most `max_retries + 1` requests per page).
    pub max_retries: u32,
    /// First back-off delay; doubled on every retry, capped at `max_delay`, then jittered
    /// ("equal jitter": a uniformly random delay between half the capped value and all of it).
    pub base_delay: Duration,
    /// Cap on the exponential back-off.
    pub max_delay: Duration,
    /// Longest `Retry-After` (429/418) this client will sleep through. A longer one fails at once
    /// with [`MarketError::RateLimited`] / [`MarketError::Banned`] instead of sleeping for days.
    pub max_retry_after: Duration,
    /// Per-request timeout (connect + read).
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    /// 6 retries, 500 ms doubling to a 30 s cap, Retry-After honoured up to 5 minutes (a short
    /// Binance ban lasts 2 minutes), 30 s request timeout.
    fn default() -> Self {
        Self {
            max_retries: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
            timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The back-off ceiling before retry number `attempt + 1`: `min(max_delay, base · 2^attempt)`.
    pub fn backoff_cap(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// The jittered back-off before retry number `attempt + 1`, in `[cap/2, cap]`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let cap = self.backoff_cap(attempt);
        let half = cap / 2;
        half + (cap - half).mul_f64(rand::rng().random::<f64>())
    }
}

/// A successful (2xx) response.
pub(crate) struct Reply {
    pub headers: HeaderMap,
    pub body: String,
}

enum Outcome {
    Done(Reply),
    Retry { delay: Duration, error: MarketError },
    Fail(MarketError),
}

/// A blocking HTTP client with retries, shared by the Binance and CoinCap clients.
pub(crate) struct Http {
    pub api: &'static str,
    client: Client,
    pub retry: RetryPolicy,
    pub sleeper: Sleeper,
}

impl fmt::Debug for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http")
            .field("api", &self.api)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Http {
    pub fn new(api: &'static str, retry: RetryPolicy) -> Result<Self, MarketError> {
        let client = Client::builder()
            .timeout(retry.timeout)
            .connect_timeout(retry.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("rps-market/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| MarketError::Setup {
                api,
                detail: error_chain(&e),
            })?;
        Ok(Self {
            api,
            client,
            retry,
            sleeper: thread_sleeper(),
        })
    }

    pub fn sleep(&self, d: Duration) {
        (self.sleeper)(d);
    }

    /// GET `url`, retrying per the policy. `reject` turns a non-retryable error status (4xx other
    /// than 429/418) and its body into the API's error.
    pub fn get(
        &self,
        url: &Url,
        bearer: Option<&str>,
        reject: &dyn Fn(StatusCode, &str) -> MarketError,
    ) -> Result<Reply, MarketError> {
        let mut attempt: u32 = 0;
        loop {
            match self.attempt(url, bearer, reject, attempt) {
                Outcome::Done(reply) => return Ok(reply),
                Outcome::Fail(error) => return Err(error),
                Outcome::Retry { delay, error } => {
                    if attempt >= self.retry.max_retries {
                        warn!(api = self.api, %url, attempts = attempt + 1, %error, "giving up");
                        return Err(MarketError::RetriesExhausted {
                            api: self.api,
                            attempts: attempt + 1,
                            last: Box::new(error),
                        });
                    }
                    warn!(
                        api = self.api,
                        %url,
                        retry = attempt + 1,
                        of = self.retry.max_retries,
                        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        %error,
                        "request failed, retrying"
                    );
                    self.sleep(delay);
                    attempt += 1;
                }
            }
        }
    }

    fn attempt(
        &self,
        url: &Url,
        bearer: Option<&str>,
        reject: &dyn Fn(StatusCode, &str) -> MarketError,
        attempt: u32,
    ) -> Outcome {
        let mut request = self.client.get(url.clone());
        if let Some(key) = bearer {
            request = request.bearer_auth(key);
        }
        debug!(api = self.api, %url, attempt, "GET");
        let transport = |e: reqwest::Error| {
            let error = MarketError::Transport {
                api: self.api,
                timeout: e.is_timeout(),
                detail: error_chain(&e),
            };
            if e.is_builder() || e.is_redirect() {
                Outcome::Fail(error)
            } else {
                Outcome::Retry {
                    delay: self.retry.backoff(attempt),
                    error,
                }
            }
        };
        let response = match request.send() {
            Ok(r) => r,
            Err(e) => return transport(e),
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = match response.text() {
            Ok(b) => b,
            Err(e) => return transport(e),
        };
        debug!(
            api = self.api,
            status = status.as_u16(),
            bytes = body.len(),
            "response"
        );
        if status.is_success() {
            return Outcome::Done(Reply { headers, body });
        }
        let retry_after = parse_retry_after(&headers);
        let max_wait = self.retry.max_retry_after;
        let http_error = || MarketError::Http {
            api: self.api,
            status: status.as_u16(),
            body: excerpt(&body, BODY_EXCERPT),
        };
        match status.as_u16() {
            418 => match retry_after {
                Some(delay) if delay <= max_wait => Outcome::Retry {
                    delay,
                    error: http_error(),
                },
                _ => Outcome::Fail(MarketError::Banned {
                    api: self.api,
                    retry_after,
                    max_wait,
                }),
            },
            429 => match retry_after {
                Some(delay) if delay > max_wait => Outcome::Fail(MarketError::RateLimited {
                    api: self.api,
                    retry_after: delay,
                    max_wait,
                }),
                Some(delay) => Outcome::Retry {
                    delay,
                    error: http_error(),
                },
                None => Outcome::Retry {
                    delay: self.retry.backoff(attempt),
                    error: http_error(),
                },
            },
            s if s >= 500 => Outcome::Retry {
                delay: match retry_after {
                    Some(d) if d <= max_wait => d,
                    _ => self.retry.backoff(attempt),
                },
                error: http_error(),
            },
            _ => Outcome::Fail(reject(status, &body)),
        }
    }
}

/// `Retry-After` in seconds (Binance sends whole seconds). HTTP dates are not supported and read
/// as absent.
pub(crate) fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let secs: f64 = value.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e12)))
}

/// Join `path` onto a base URL that may itself carry a path (`https://rest.coincap.io/v3`).
pub(crate) fn join_url(
    api: &'static str,
    base: &str,
    segments: &[&str],
) -> Result<Url, MarketError> {
    let setup = |detail: String| MarketError::Setup { api, detail };
    let mut url = Url::parse(base.trim_end_matches('/'))
        .map_err(|e| setup(format!("base URL {base:?} does not parse: {e}")))?;
    if url.cannot_be_a_base() {
        return Err(setup(format!("base URL {base:?} cannot carry a path")));
    }
    {
        let mut path = url
            .path_segments_mut()
            .map_err(|()| setup(format!("base URL {base:?} cannot carry a path")))?;
        path.pop_if_empty();
        path.extend(segments);
    }
    Ok(url)
}

/// Read a decimal that an API sends as a string (or, tolerated, a JSON number).
pub(crate) fn decimal(v: &serde_json::Value) -> Result<f64, String> {
    let x = match v {
        serde_json::Value::String(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("{s:?} is not a decimal number"))?,
        serde_json::Value::Number(n) => n.as_f64().ok_or_else(|| format!("{n} is out of range"))?,
        other => return Err(format!("{other} is not a decimal string")),
    };
    if x.is_finite() {
        Ok(x)
    } else {
        Err(format!("{v} is not a finite number"))
    }
}

/// Read an integer millisecond timestamp.
pub(crate) fn millis(v: &serde_json::Value) -> Result<i64, String> {
    v.as_i64()
        .ok_or_else(|| format!("{v} is not an integer millisecond timestamp"))
}

/// The JSON type of `v`, for error messages.
pub(crate) fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Parse a body as JSON, or say which endpoint sent what.
pub(crate) fn parse_json(
    api: &'static str,
    endpoint: &str,
    body: &str,
) -> Result<serde_json::Value, MarketError> {
    serde_json::from_str(body).map_err(|e| {
        MarketError::malformed(
            api,
            format!(
                "{endpoint} body is not valid JSON ({e}); body starts with {:?}",
                excerpt(body, 120)
            ),
            e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            ..RetryPolicy::default()
        };
        let caps: Vec<u128> = (0..9).map(|a| p.backoff_cap(a).as_millis()).collect();
        assert_eq!(
            caps,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(p.backoff_cap(200), Duration::from_secs(30));
        for attempt in 0..10 {
            let d = p.backoff(attempt);
            let cap = p.backoff_cap(attempt);
            assert!(
                d >= cap / 2 && d <= cap,
                "{d:?} outside [{:?}, {cap:?}]",
                cap / 2
            );
        }
    }

    #[test]
    fn retry_after_reads_seconds() {
        let mut h = HeaderMap::new();
        assert_eq!(parse_retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(parse_retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("-3"));
        assert_eq!(parse_retry_after(&h), None);
    }

    #[test]
    fn urls_join_onto_base_paths() {
        let u = join_url(
            "X",
            "https://rest.coincap.io/v3/",
            &["assets", "bitcoin", "history"],
        )
        .expect("joins");
        assert_eq!(
            u.as_str(),
            "https://rest.coincap.io/v3/assets/bitcoin/history"
        );
        let u = join_url("X", "http://127.0.0.1:8080", &["api", "v3", "klines"]).expect("joins");
        assert_eq!(u.as_str(), "http://127.0.0.1:8080/api/v3/klines");
        // Segments are escaped, not interpreted.
        let u = join_url("X", "http://h/v3", &["assets", "a/b?c", "history"]).expect("joins");
        assert_eq!(u.path(), "/v3/assets/a%2Fb%3Fc/history");
        assert!(matches!(
            join_url("X", "not a url", &["a"]),
            Err(MarketError::Setup { .. })
        ));
    }

    #[test]
    fn decimals_and_millis() {
        use serde_json::json;
        let x = decimal(&json!("6379.3997635993342453")).expect("parses");
        assert!((x - 6_379.399_763_6).abs() < 1e-6, "{x}");
        assert_eq!(decimal(&json!(1.5)), Ok(1.5));
        assert!(decimal(&json!("abc")).is_err());
        assert!(decimal(&json!("NaN")).is_err());
        assert!(decimal(&json!(null)).is_err());
        assert_eq!(millis(&json!(1_530_403_200_000_i64)), Ok(1_530_403_200_000));
        assert!(millis(&json!("1530403200000")).is_err());
    }
}
