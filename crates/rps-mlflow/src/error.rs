//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong talking to MLflow or writing a model directory.
#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    /// The environment or the [`crate::MlflowConfig`] is unusable.
    #[error("invalid MLflow configuration: {0}")]
    Config(String),

    /// The server answered 401 or 403.
    #[error(
        "MLflow at {tracking_uri} refused {endpoint} (HTTP {status}, {sent}): {server_message}. \
         Set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (basic auth; for DagHub the \
         password is an access token) or MLFLOW_TRACKING_TOKEN (bearer token)"
    )]
    Unauthorized {
        /// 401 or 403.
        status: u16,
        /// The tracking URI the request went to.
        tracking_uri: String,
        /// The REST path, e.g. `api/2.0/mlflow/runs/create`.
        endpoint: String,
        /// What credentials were sent (never the secret itself).
        sent: String,
        /// The body (or its `message`) the server sent back, shortened.
        server_message: String,
    },

    /// The server does not implement the model registry (DagHub's old MLflow: "Model Registry
    /// features are not supported by the store", or a 404 `ENDPOINT_NOT_FOUND`).
    /// Callers are expected to fall back, e.g. to a tag on the run.
    #[error("the MLflow server does not support the model registry ({endpoint}): {message}")]
    RegistryUnsupported {
        /// The REST path that answered 404.
        endpoint: String,
        /// The server's message.
        message: String,
    },

    /// A param already logged on the run with another value (MLflow params are immutable).
    #[error(
        "param conflict on run {run_id}: {message} (MLflow params are immutable; log a new run or use a tag)"
    )]
    ParamConflict {
        /// The run that already has the param.
        run_id: String,
        /// The server's (or our own) explanation, naming the key.
        message: String,
    },

    /// MLflow answered with a JSON error (`{"error_code": …, "message": …}`).
    #[error("MLflow {endpoint} failed with HTTP {status} {error_code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The REST path.
        endpoint: String,
        /// MLflow's `error_code`, e.g. `RESOURCE_DOES_NOT_EXIST`.
        error_code: String,
        /// MLflow's `message`.
        message: String,
    },

    /// A non-success HTTP answer whose body is not an MLflow error document.
    #[error("MLflow {endpoint} failed with HTTP {status}: {body}")]
    Http {
        /// HTTP status.
        status: u16,
        /// The REST path.
        endpoint: String,
        /// The body, shortened.
        body: String,
    },

    /// Connection or protocol failure, after the retries were spent.
    #[error("cannot reach MLflow for {endpoint} after {attempts} attempt(s): {source}")]
    Transport {
        /// The REST path.
        endpoint: String,
        /// How many times it was tried.
        attempts: u32,
        /// The last error.
        #[source]
        source: reqwest::Error,
    },

    /// The server's answer did not have the expected shape.
    #[error("unexpected answer from MLflow {endpoint}: {detail}")]
    Decode {
        /// The REST path.
        endpoint: String,
        /// What was wrong.
        detail: String,
    },

    /// A metric, param or tag key MLflow would reject.
    #[error("invalid {kind} key {key:?}: {reason}")]
    InvalidKey {
        /// `metric`, `param` or `tag`.
        kind: &'static str,
        /// The offending key.
        key: String,
        /// Why.
        reason: String,
    },

    /// A param or tag value longer than MLflow stores. Nothing is truncated.
    #[error("{kind} {key:?} has a value of {len} characters; MLflow accepts at most {max}")]
    ValueTooLong {
        /// `param` or `tag`.
        kind: &'static str,
        /// The key whose value is too long.
        key: String,
        /// Its length in characters.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// Some other argument is unusable (alias name, artifact path, model input…).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The run's artifact URI has a scheme this client cannot write to (yet), and no
    /// [`crate::ArtifactBackend`] registered on the client claims it.
    #[error(
        "artifact URI {uri:?} is not supported: only `mlflow-artifacts:` (artifacts proxied by \
         `mlflow server --serve-artifacts`) is built in; register an ArtifactBackend for others"
    )]
    UnsupportedArtifactUri {
        /// The run's artifact URI.
        uri: String,
    },

    /// An [`crate::ArtifactBackend`] (e.g. S3) failed to store or read an artifact.
    #[error("artifact store {uri}: {message}")]
    ArtifactStore {
        /// The artifact's URI.
        uri: String,
        /// What went wrong, from the backend.
        message: String,
    },

    /// Local file IO failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (`reading`, `writing`, …).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// JSON (de)serialisation of our own data failed.
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),
}

impl MlflowError {
    /// MLflow's `error_code` when the server sent one.
    #[must_use]
    pub fn error_code(&self) -> Option<&str> {
        match self {
            Self::Api { error_code, .. } => Some(error_code),
            _ => None,
        }
    }

    /// The HTTP status when the error came from an HTTP answer.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. }
            | Self::Http { status, .. }
            | Self::Unauthorized { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True for an MLflow `RESOURCE_DOES_NOT_EXIST`.
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        self.error_code() == Some("RESOURCE_DOES_NOT_EXIST")
    }

    /// True for an MLflow `RESOURCE_ALREADY_EXISTS`.
    #[must_use]
    pub fn is_already_exists(&self) -> bool {
        self.error_code() == Some("RESOURCE_ALREADY_EXISTS")
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = MlflowError> = std::result::Result<T, E>;
