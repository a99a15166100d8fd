//! The one error type of this crate.

use std::error::Error as StdError;
use std::time::Duration;

/// Everything that can go wrong while fetching market data. Each variant names the API (`api`:
/// "Binance" or "CoinCap") and says what the caller can do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MarketError {
    /// The request itself is wrong: rejected before sending (unsupported interval, empty symbol,
    /// end before start), or refused by the server with a 4xx that carries a message, such as
    /// Binance's `{"code":-1121,"msg":"Invalid symbol."}`. Not retried.
    #[error("{api} rejected the request{}: {message}", status_suffix(*.status))]
    InvalidRequest {
        api: &'static str,
        /// HTTP status when the server refused it; `None` when rejected before sending.
        status: Option<u16>,
        message: String,
    },

    /// CoinCap answered 401/403: the API key is missing, wrong or out of credits. Not retried.
    #[error(
        "{api} refused the request as unauthorized (HTTP {status}: {detail}); set COINCAP_API_KEY to a valid CoinCap v3 API key"
    )]
    Unauthorized {
        api: &'static str,
        status: u16,
        detail: String,
    },

    /// HTTP 418: the exchange has banned this IP (Binance: from 2 minutes to 3 days) and the
    /// `Retry-After` is longer than [`RetryPolicy::max_retry_after`](crate::RetryPolicy), or absent.
    #[error(
        "{api} has banned this IP (HTTP 418); Retry-After is {}, longer than the {}s this client is willing to wait; stop sending requests until then",
        fmt_retry_after(*.retry_after), .max_wait.as_secs()
    )]
    Banned {
        api: &'static str,
        retry_after: Option<Duration>,
        max_wait: Duration,
    },

    /// HTTP 429 with a `Retry-After` longer than [`RetryPolicy::max_retry_after`](crate::RetryPolicy).
    #[error(
        "{api} is rate limiting this client (HTTP 429) with Retry-After {}s, longer than the {}s this client is willing to wait",
        .retry_after.as_secs(), .max_wait.as_secs()
    )]
    RateLimited {
        api: &'static str,
        retry_after: Duration,
        max_wait: Duration,
    },

    /// An HTTP error status without a more specific meaning; `body` is the start of the body.
    #[error("{api} answered HTTP {status}: {body}")]
    Http {
        api: &'static str,
        status: u16,
        body: String,
    },

    /// The request could not be completed: connection refused, timeout, broken body.
    #[error("{api} request failed{}: {detail}", if *.timeout { " (timed out)" } else { "" })]
    Transport {
        api: &'static str,
        timeout: bool,
        /// The error and its causes, joined by `: `.
        detail: String,
    },

    /// Every attempt failed with a retryable error; `last` is the final one.
    #[error("{api}: giving up after {attempts} attempts; last error: {last}")]
    RetriesExhausted {
        api: &'static str,
        attempts: u32,
        last: Box<MarketError>,
    },

    /// The server answered 2xx but the body is not what the API documents.
    #[error("{api} sent a malformed payload: {what}")]
    MalformedPayload {
        api: &'static str,
        /// What was wrong and where (e.g. `row 3: field "open" is "abc", not a decimal number`).
        what: String,
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },

    /// The configured base URL does not parse, or the HTTP client could not be built.
    #[error("cannot set up the {api} client: {detail}")]
    Setup { api: &'static str, detail: String },
}

impl MarketError {
    pub(crate) fn malformed(
        api: &'static str,
        what: impl Into<String>,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        Self::MalformedPayload {
            api,
            what: what.into(),
            source: source.into(),
        }
    }

    pub(crate) fn invalid(api: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            api,
            status: None,
            message: message.into(),
        }
    }

    /// Whether waiting and trying again later could succeed (rate limits, bans, server and
    /// network errors), as opposed to a request or payload that will never work.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Banned { .. }
            | Self::RateLimited { .. }
            | Self::Transport { .. }
            | Self::RetriesExhausted { .. } => true,
            Self::Http { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

fn status_suffix(status: Option<u16>) -> String {
    status.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
}

fn fmt_retry_after(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!("{}s", d.as_secs()),
        None => "missing".to_owned(),
    }
}

/// The first `max` characters of `s`, on a character boundary, with `…` when cut.
pub(crate) fn excerpt(s: &str, max: usize) -> String {
    let s = s.trim();
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// An error and all its causes, joined by `: `.
pub(crate) fn error_chain(e: &dyn StdError) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(cause) = cur {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_cuts_on_char_boundary() {
        assert_eq!(excerpt("  short  ", 10), "short");
        assert_eq!(excerpt("ééééé", 3), "ééé…");
    }

    #[test]
    fn messages_name_the_problem() {
        let e = MarketError::Banned {
            api: "Binance",
            retry_after: Some(Duration::from_secs(259_200)),
            max_wait: Duration::from_secs(300),
        };
        let s = e.to_string();
        assert!(
            s.contains("banned") && s.contains("259200s") && s.contains("300s"),
            "{s}"
        );
        let e = MarketError::InvalidRequest {
            api: "Binance",
            status: Some(400),
            message: "Invalid symbol. (code -1121)".into(),
        };
        assert_eq!(
            e.to_string(),
            "Binance rejected the request (HTTP 400): Invalid symbol. (code -1121)"
        );
        assert!(!e.is_transient());
        assert_eq!(
            MarketError::invalid("CoinCap", "x").to_string(),
            "CoinCap rejected the request: x"
        );
    }
}
