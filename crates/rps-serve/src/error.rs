//! Errors: [`ServeError`] for the process (each maps to an exit code) and [`ApiError`] for one
//! HTTP request (each maps to a status and a JSON body `{"error": {"code", "message"}}`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("could not open the model registry {uri}: {source}")]
    Registry {
        uri: String,
        #[source]
        source: rps_store::StoreError,
    },
    #[error("no model could be loaded at startup: {0}")]
    NoModel(String),
    #[error("could not bind {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

impl ServeError {
    /// The process exit code, from the one table every RPS command uses (`rps_cli::exit`, in
    /// `--help` and docs/exit-codes.md).
    pub fn exit_code(&self) -> u8 {
        use rps_cli::exit;
        match self {
            ServeError::Io(_) => exit::INTERNAL,
            ServeError::Config(_) | ServeError::Bind { .. } => exit::CONFIG,
            ServeError::NoModel(_) => exit::INPUT,
            ServeError::Registry { source, .. } => match source {
                rps_store::StoreError::Unsupported { .. }
                | rps_store::StoreError::InvalidKey { .. } => exit::CONFIG,
                rps_store::StoreError::Remote { .. } => exit::REMOTE,
                _ => exit::STORAGE,
            },
        }
    }
}

/// An error answered to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Answer with `Connection: close` (the request's body was not read to its end).
    pub close: bool,
    /// Fields a client can act on without parsing the message (e.g. `newest_bar`, `age_secs`
    /// of a stale history), added to the `error` object beside `code` and `message`.
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            close: false,
            details: serde_json::Map::new(),
        }
    }

    /// The same error with `key: value` in its `error` object.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// 422 for a request that is valid JSON but not a valid prediction request.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
}

impl From<crate::state::SlotError> for ApiError {
    /// 400 `symbol_required` when several symbols are served and none was named, 404
    /// `unknown_symbol` for one that is not served; both list the served symbols.
    fn from(e: crate::state::SlotError) -> Self {
        use crate::state::SlotError;
        let (status, code, served) = match &e {
            SlotError::Required(served) => (StatusCode::BAD_REQUEST, "symbol_required", served),
            SlotError::Unknown { served, .. } => (StatusCode::NOT_FOUND, "unknown_symbol", served),
        };
        let served = served.clone();
        ApiError::new(status, code, e.to_string()).with("symbols", served)
    }
}

/// The JSON error body.
pub fn error_body(code: &str, message: &str) -> String {
    serde_json::json!({ "error": { "code": code, "message": message } }).to_string()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = if self.details.is_empty() {
            error_body(self.code, &self.message)
        } else {
            let mut e = self.details;
            e.insert("code".to_owned(), self.code.into());
            e.insert("message".to_owned(), self.message.into());
            serde_json::json!({ "error": e }).to_string()
        };
        let mut r = (self.status, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.close {
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }
}
