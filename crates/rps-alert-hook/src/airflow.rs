//! The two calls made to Airflow 3's API server, shaped after its OpenAPI document
//! (`airflow/api_fastapi/core_api/openapi/v2-rest-api-generated.yaml` and the simple auth
//! manager's `v2-simple-auth-manager-generated.yaml`, apache-airflow 3.3):
//!
//! - `POST /auth/token` with `{"username", "password"}` → 201 `{"access_token"}` (a JWT);
//! - `POST /api/v2/dags/{dag_id}/dagRuns` with `Authorization: Bearer <JWT>` and a
//!   `TriggerDAGRunPostBody` (`logical_date` required but nullable, `dag_run_id`, `conf`,
//!   `note`; no other field allowed) → 200 `DAGRunResponse`; 409 when the run id exists.
//!
//! The token is cached and fetched again once when a call answers 401 or 403 (Airflow 3.3 says
//! 403 `{"detail": "Invalid JWT token"}` to an expired token, checked against the real server).

use serde::Deserialize;
use std::time::Duration;
use tokio::sync::Mutex;

/// Where Airflow is and who we are to it.
#[derive(Clone)]
pub struct AirflowConfig {
    /// The API server's base URL, e.g. `http://airflow-api-server:8080`.
    pub url: String,
    pub dag_id: String,
    pub username: String,
    pub password: String,
    /// Bound on each HTTP call (connect + answer).
    pub timeout: Duration,
}

impl std::fmt::Debug for AirflowConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AirflowConfig")
            .field("url", &self.url)
            .field("dag_id", &self.dag_id)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What creating a run came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// A new DAG run.
    New,
    /// A run with this id exists (409): this alert already triggered it.
    AlreadyExists,
}

/// Airflow could not take the run.
#[derive(Debug, thiserror::Error)]
pub enum AirflowError {
    /// Not reachable, timed out, or a 5xx: worth retrying later.
    #[error("Airflow at {url} is unavailable: {detail}")]
    Unavailable { url: String, detail: String },
    /// The credentials were refused (401 on /auth/token, or 401/403 even with a fresh token:
    /// the user may not trigger the DAG).
    #[error("Airflow refused the credentials of {user:?} ({status}): {detail}")]
    Auth {
        user: String,
        status: u16,
        detail: String,
    },
    /// Any other 4xx: a wrong DAG id (404), a paused or unparsed DAG, a refused body.
    #[error("Airflow refused the DAG run of {dag_id} ({status}): {detail}")]
    Rejected {
        dag_id: String,
        status: u16,
        detail: String,
    },
}

impl AirflowError {
    /// Whether Alertmanager should send the notification again (a 503 to it) rather than
    /// the receiver needing a human (a 502).
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// Metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unavailable { .. } => "unavailable",
            Self::Auth { .. } => "auth",
            Self::Rejected { .. } => "rejected",
        }
    }
}

#[derive(Deserialize)]
struct LoginResponse {
    access_token: String,
}

/// A small Airflow 3 REST client.
pub struct Airflow {
    config: AirflowConfig,
    http: reqwest::Client,
    token: Mutex<Option<String>>,
}

impl Airflow {
    pub fn new(mut config: AirflowConfig) -> Result<Self, reqwest::Error> {
        config.url = config.url.trim_end_matches('/').to_owned();
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .build()?;
        Ok(Self {
            config,
            http,
            token: Mutex::new(None),
        })
    }

    pub fn dag_id(&self) -> &str {
        &self.config.dag_id
    }

    fn unavailable(&self, detail: impl std::fmt::Display) -> AirflowError {
        AirflowError::Unavailable {
            url: self.config.url.clone(),
            detail: detail.to_string(),
        }
    }

    async fn fetch_token(&self) -> Result<String, AirflowError> {
        let url = format!("{}/auth/token", self.config.url);
        let resp = self
            .http
            .post(&url)
            .json(&serde_json::json!({
                "username": self.config.username,
                "password": self.config.password,
            }))
            .send()
            .await
            .map_err(|e| self.unavailable(e))?;
        let status = resp.status();
        if status.is_server_error() {
            return Err(self.unavailable(format!("POST /auth/token answered {status}")));
        }
        if !status.is_success() {
            return Err(AirflowError::Auth {
                user: self.config.username.clone(),
                status: status.as_u16(),
                detail: detail(resp).await,
            });
        }
        let body: LoginResponse = resp
            .json()
            .await
            .map_err(|e| self.unavailable(format!("POST /auth/token: unexpected answer: {e}")))?;
        Ok(body.access_token)
    }

    async fn token(&self, refresh: bool) -> Result<String, AirflowError> {
        let mut cached = self.token.lock().await;
        if refresh || cached.is_none() {
            *cached = Some(self.fetch_token().await?);
        }
        Ok(cached.clone().unwrap_or_default())
    }

    /// Create a run of the DAG with this id and conf (`logical_date` null: "now", as a manual
    /// trigger from the UI).
    pub async fn trigger(
        &self,
        dag_run_id: &str,
        conf: &serde_json::Value,
        note: &str,
    ) -> Result<Created, AirflowError> {
        let url = format!(
            "{}/api/v2/dags/{}/dagRuns",
            self.config.url, self.config.dag_id
        );
        let body = serde_json::json!({
            "dag_run_id": dag_run_id,
            "logical_date": null,
            "conf": conf,
            "note": note,
        });
        let mut refreshed = false;
        loop {
            let token = self.token(refreshed).await?;
            let resp = self
                .http
                .post(&url)
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .map_err(|e| self.unavailable(e))?;
            let status = resp.status().as_u16();
            match status {
                200..=299 => return Ok(Created::New),
                409 => return Ok(Created::AlreadyExists),
                // Airflow 3.3 answers 403 `Invalid JWT token` to an expired or otherwise bad token
                // (401 only to a missing one): either way, one new token and one more try.
                401 | 403 if !refreshed => {
                    tracing::info!(status, "Airflow refused the token: fetching a new one");
                    refreshed = true;
                }
                401 | 403 => {
                    return Err(AirflowError::Auth {
                        user: self.config.username.clone(),
                        status,
                        detail: detail(resp).await,
                    });
                }
                500..=599 => {
                    let d = detail(resp).await;
                    return Err(self.unavailable(format!("POST {url} answered {status}: {d}")));
                }
                _ => {
                    return Err(AirflowError::Rejected {
                        dag_id: self.config.dag_id.clone(),
                        status,
                        detail: detail(resp).await,
                    });
                }
            }
        }
    }
}

/// The start of an error answer's body, for the log.
async fn detail(resp: reqwest::Response) -> String {
    let text = resp.text().await.unwrap_or_default();
    text.chars().take(300).collect()
}
