//! Where the tracking server is and how to authenticate, read from the standard MLflow
//! environment variables.

use std::fmt;
use std::time::Duration;

use crate::error::{MlflowError, Result};

/// `MLFLOW_TRACKING_URI`: the server; unset or empty means "use the local store".
pub const ENV_TRACKING_URI: &str = "MLFLOW_TRACKING_URI";
/// `MLFLOW_TRACKING_USERNAME`: basic-auth user (DagHub: the account name).
pub const ENV_USERNAME: &str = "MLFLOW_TRACKING_USERNAME";
/// `MLFLOW_TRACKING_PASSWORD`: basic-auth password (DagHub: an access token).
pub const ENV_PASSWORD: &str = "MLFLOW_TRACKING_PASSWORD";
/// `MLFLOW_TRACKING_TOKEN`: bearer token.
pub const ENV_TOKEN: &str = "MLFLOW_TRACKING_TOKEN";
/// `MLFLOW_EXPERIMENT_NAME`: default experiment.
pub const ENV_EXPERIMENT_NAME: &str = "MLFLOW_EXPERIMENT_NAME";
/// Retries per request after the first try (the Python client's variable; default 7).
pub const ENV_MAX_RETRIES: &str = "MLFLOW_HTTP_REQUEST_MAX_RETRIES";
/// Seconds before the first retry, doubled each time (the Python client's variable; default 2).
pub const ENV_BACKOFF_FACTOR: &str = "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR";
/// Timeout of one request in seconds (the Python client's variable; default 120).
pub const ENV_TIMEOUT: &str = "MLFLOW_HTTP_REQUEST_TIMEOUT";

/// How requests authenticate. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Auth {
    /// No `Authorization` header.
    #[default]
    None,
    /// HTTP basic auth (MLflow's `basic-auth` app, DagHub's user + token).
    Basic {
        /// User name.
        username: String,
        /// Password or token.
        password: String,
    },
    /// `Authorization: Bearer <token>`.
    Bearer(String),
}

impl Auth {
    /// A description safe to log: the kind of credentials and the user, never the secret.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::None => "no credentials sent".to_owned(),
            Self::Basic { username, .. } => format!("basic auth as user {username:?}"),
            Self::Bearer(_) => "a bearer token".to_owned(),
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Self::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// Bounded, capped exponential back-off with jitter, applied to 5xx, 429 and connection errors.
///
/// The default is the Python client's: 7 retries, 2 s doubling, at most 120 s apart (each delay
/// jittered into its upper half), so a server that is down or rate-limits for a minute or two is
/// ridden out (at least ≈ 2 minutes of retrying before a request gives up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries per request, including the first (≥ 1).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled each time.
    pub base_delay: Duration,
    /// Upper bound of one delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    #[must_use]
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The delay before retry number `retry` (0-based): `min(max, base·2^retry)`, jittered
    /// uniformly into its upper half so that concurrent clients spread out.
    #[must_use]
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1_u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX));
        let capped = exp.min(self.max_delay);
        let half = capped / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        let extra = if jitter_ms == 0 {
            0
        } else {
            rand::random_range(0..=jitter_ms)
        };
        half + Duration::from_millis(extra)
    }
}

/// Where MLflow is and how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlflowConfig {
    /// `http(s)://host[:port][/prefix]`, without a trailing slash.
    pub tracking_uri: String,
    /// Credentials.
    pub auth: Auth,
    /// Default experiment (`MLFLOW_EXPERIMENT_NAME`).
    pub experiment_name: Option<String>,
    /// Retry policy for every request.
    pub retry: RetryPolicy,
    /// Timeout of one HTTP request (uploads included).
    pub timeout: Duration,
}

impl MlflowConfig {
    /// A config for `tracking_uri` with no credentials and the default retry policy.
    ///
    /// # Errors
    /// [`MlflowError::Config`] when the URI is not `http://` or `https://`.
    pub fn new(tracking_uri: &str) -> Result<Self> {
        Ok(Self {
            tracking_uri: normalize_uri(tracking_uri)?,
            auth: Auth::None,
            experiment_name: None,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(120),
        })
    }

    /// Reads the standard MLflow variables from the process environment.
    /// `Ok(None)` when `MLFLOW_TRACKING_URI` is unset or empty: use the local store.
    ///
    /// # Errors
    /// See [`MlflowConfig::from_lookup`].
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`MlflowConfig::from_env`] with a custom variable lookup (tests use a map).
    ///
    /// Basic auth (`MLFLOW_TRACKING_USERNAME` + `MLFLOW_TRACKING_PASSWORD`) wins over
    /// `MLFLOW_TRACKING_TOKEN`, as in the Python client.
    ///
    /// # Errors
    /// [`MlflowError::Config`] for a non-HTTP tracking URI, or a user name without a password
    /// (or the reverse).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let Some(uri) = get(ENV_TRACKING_URI) else {
            return Ok(None);
        };
        let mut config = Self::new(&uri)?;
        config.auth = match (get(ENV_USERNAME), get(ENV_PASSWORD), get(ENV_TOKEN)) {
            (Some(username), Some(password), _) => Auth::Basic { username, password },
            (Some(_), None, _) => {
                return Err(MlflowError::Config(format!(
                    "{ENV_USERNAME} is set but {ENV_PASSWORD} is not (for DagHub, the password is an access token)"
                )));
            }
            (None, Some(_), _) => {
                return Err(MlflowError::Config(format!(
                    "{ENV_PASSWORD} is set but {ENV_USERNAME} is not"
                )));
            }
            (None, None, Some(token)) => Auth::Bearer(token),
            (None, None, None) => Auth::None,
        };
        config.experiment_name = get(ENV_EXPERIMENT_NAME);
        let number = |name: &str| -> Result<Option<f64>> {
            get(name)
                .map(|v| {
                    v.parse::<f64>()
                        .ok()
                        .filter(|x| x.is_finite() && *x >= 0.0 && *x <= 86_400.0)
                        .ok_or_else(|| {
                            MlflowError::Config(format!(
                                "{name}={v:?} is not a number of seconds or retries (0 to 86400)"
                            ))
                        })
                })
                .transpose()
        };
        if let Some(n) = number(ENV_MAX_RETRIES)? {
            // Whole retries; 1 + n tries in all.
            config.retry.max_attempts = 1 + n as u32;
        }
        if let Some(f) = number(ENV_BACKOFF_FACTOR)? {
            config.retry.base_delay = Duration::from_secs_f64(f);
        }
        if let Some(t) = number(ENV_TIMEOUT)? {
            config.timeout = Duration::from_secs_f64(t.max(1.0));
        }
        Ok(Some(config))
    }

    /// Sets the credentials.
    #[must_use]
    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Sets the retry policy.
    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the default experiment name.
    #[must_use]
    pub fn with_experiment_name(mut self, name: impl Into<String>) -> Self {
        self.experiment_name = Some(name.into());
        self
    }
}

fn normalize_uri(uri: &str) -> Result<String> {
    let uri = uri.trim().trim_end_matches('/');
    let rest = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() => Ok(uri.to_owned()),
        _ => Err(MlflowError::Config(format!(
            "{ENV_TRACKING_URI}={uri:?} is not an http(s) URL; leave it unset to use the local store"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn unset_or_empty_uri_means_local_store() {
        assert_eq!(MlflowConfig::from_lookup(lookup(&[])).ok(), Some(None));
        assert_eq!(
            MlflowConfig::from_lookup(lookup(&[(ENV_TRACKING_URI, "  ")])).ok(),
            Some(None)
        );
    }

    #[test]
    fn basic_auth_and_experiment() -> Result<()> {
        let c = MlflowConfig::from_lookup(lookup(&[
            (ENV_TRACKING_URI, "https://dagshub.com/o/r.mlflow/"),
            (ENV_USERNAME, "o"),
            (ENV_PASSWORD, "tok"),
            (ENV_TOKEN, "ignored"),
            (ENV_EXPERIMENT_NAME, "rps"),
        ]))?
        .ok_or_else(|| MlflowError::Config("expected a config".into()))?;
        assert_eq!(c.tracking_uri, "https://dagshub.com/o/r.mlflow");
        assert_eq!(
            c.auth,
            Auth::Basic {
                username: "o".into(),
                password: "tok".into()
            }
        );
        assert_eq!(c.experiment_name.as_deref(), Some("rps"));
        assert!(!format!("{c:?}").contains("tok"), "secret leaked in Debug");
        Ok(())
    }

    #[test]
    fn bearer_token() -> Result<()> {
        let c = MlflowConfig::from_lookup(lookup(&[
            (ENV_TRACKING_URI, "http://127.0.0.1:5000"),
            (ENV_TOKEN, "secret-token"),
        ]))?;
        let c = c.ok_or_else(|| MlflowError::Config("expected a config".into()))?;
        assert_eq!(c.auth, Auth::Bearer("secret-token".into()));
        assert_eq!(c.experiment_name, None);
        assert!(!format!("{c:?}").contains("secret-token"));
        Ok(())
    }

    #[test]
    fn half_basic_auth_and_bad_scheme_are_errors() {
        let e = MlflowConfig::from_lookup(lookup(&[
            (ENV_TRACKING_URI, "http://x"),
            (ENV_USERNAME, "u"),
        ]));
        assert!(matches!(e, Err(MlflowError::Config(m)) if m.contains(ENV_PASSWORD)));
        let e = MlflowConfig::from_lookup(lookup(&[(ENV_TRACKING_URI, "file:///tmp/mlruns")]));
        assert!(matches!(e, Err(MlflowError::Config(m)) if m.contains("http")));
    }

    #[test]
    fn retry_delay_is_capped_and_jittered() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for retry in 0..40 {
            let d = p.delay(retry);
            assert!(d <= Duration::from_secs(1), "{d:?}");
        }
        let d0 = p.delay(0);
        assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100));
        let d10 = p.delay(10);
        assert!(d10 >= Duration::from_millis(500));
    }

    #[test]
    fn the_python_clients_retry_variables_are_honoured_and_checked() -> Result<()> {
        let c = MlflowConfig::from_lookup(lookup(&[(ENV_TRACKING_URI, "http://x")]))?
            .ok_or_else(|| MlflowError::Config("expected a config".into()))?;
        // The defaults ride out a two-minute outage: the smallest total wait of 7 retries.
        let least: Duration = (0..c.retry.max_attempts - 1)
            .map(|r| (c.retry.base_delay * 2_u32.pow(r)).min(c.retry.max_delay) / 2)
            .sum();
        assert!(least >= Duration::from_secs(120), "{least:?}");
        let c = MlflowConfig::from_lookup(lookup(&[
            (ENV_TRACKING_URI, "http://x"),
            (ENV_MAX_RETRIES, "0"),
            (ENV_BACKOFF_FACTOR, "0.5"),
            (ENV_TIMEOUT, "10"),
        ]))?
        .ok_or_else(|| MlflowError::Config("expected a config".into()))?;
        assert_eq!(c.retry.max_attempts, 1);
        assert_eq!(c.retry.base_delay, Duration::from_millis(500));
        assert_eq!(c.timeout, Duration::from_secs(10));
        for (name, value) in [(ENV_MAX_RETRIES, "many"), (ENV_TIMEOUT, "-1")] {
            let e =
                MlflowConfig::from_lookup(lookup(&[(ENV_TRACKING_URI, "http://x"), (name, value)]));
            assert!(
                matches!(e, Err(MlflowError::Config(m)) if m.contains(name)),
                "{name}"
            );
        }
        Ok(())
    }
}
