//! The HTTP core (auth, retries, error mapping) and the tracking endpoints.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use reqwest::blocking::{Client, RequestBuilder};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::artifacts::ArtifactBackend;
use crate::batch::{self, plan_log_batch};
use crate::config::{Auth, MlflowConfig, RetryPolicy};
use crate::error::{MlflowError, Result};
use crate::types::{Experiment, LogModelOutcome, Metric, Run, RunInfo, RunStatus, now_millis};

pub(crate) const TRACKING: &str = "api/2.0/mlflow";
pub(crate) const ARTIFACT_PROXY: &str = "api/2.0/mlflow-artifacts/artifacts";

/// A request body.
pub(crate) enum Body {
    Empty,
    Json(Vec<u8>),
    Bytes(Vec<u8>),
}

/// A blocking MLflow REST client. Cheap to share by reference; every method is one or a few
/// HTTP requests, each retried per the config's [`RetryPolicy`].
pub struct MlflowClient {
    config: MlflowConfig,
    http: Client,
    pub(crate) backends: Vec<Box<dyn ArtifactBackend>>,
}

impl std::fmt::Debug for MlflowClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlflowClient")
            .field("config", &self.config)
            .field("artifact_backends", &self.backends.len())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct WireKeyValue {
    key: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize, Default)]
struct WireRunData {
    #[serde(default)]
    metrics: Vec<Metric>,
    #[serde(default)]
    params: Vec<WireKeyValue>,
    #[serde(default)]
    tags: Vec<WireKeyValue>,
}

#[derive(Deserialize)]
struct WireRun {
    info: RunInfo,
    #[serde(default)]
    data: WireRunData,
}

impl From<WireRun> for Run {
    fn from(w: WireRun) -> Self {
        Self {
            info: w.info,
            metrics: w
                .data
                .metrics
                .into_iter()
                .map(|m| (m.key.clone(), m))
                .collect(),
            params: w
                .data
                .params
                .into_iter()
                .map(|kv| (kv.key, kv.value))
                .collect(),
            tags: w
                .data
                .tags
                .into_iter()
                .map(|kv| (kv.key, kv.value))
                .collect(),
        }
    }
}

/// Shortens a body for an error message.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.chars().count() > 500 {
        let cut: String = text.chars().take(500).collect();
        format!("{cut}…")
    } else {
        text.to_owned()
    }
}

fn is_registry_path(path: &str) -> bool {
    path.contains("/registered-models") || path.contains("/model-versions")
}

/// Maps a non-success answer to an error.
pub(crate) fn classify_error(
    tracking_uri: &str,
    auth: &Auth,
    status: u16,
    endpoint: &str,
    body: &[u8],
) -> MlflowError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let code = parsed.as_ref().and_then(|b| b.error_code.clone());
    let message = parsed
        .as_ref()
        .and_then(|b| b.message.clone())
        .unwrap_or_else(|| snippet(body));
    if status == 401 || status == 403 {
        return MlflowError::Unauthorized {
            status,
            tracking_uri: tracking_uri.to_owned(),
            endpoint: endpoint.to_owned(),
            sent: auth.describe(),
            server_message: if message.is_empty() {
                "(empty body)".to_owned()
            } else {
                message
            },
        };
    }
    if status == 404 && is_registry_path(endpoint) {
        let unsupported = code.as_deref() == Some("ENDPOINT_NOT_FOUND")
            || code.is_none()
            || message.to_ascii_lowercase().contains("not supported");
        if unsupported {
            return MlflowError::RegistryUnsupported {
                endpoint: endpoint.to_owned(),
                message,
            };
        }
    }
    match code {
        Some(error_code) => MlflowError::Api {
            status,
            endpoint: endpoint.to_owned(),
            error_code,
            message,
        },
        None => MlflowError::Http {
            status,
            endpoint: endpoint.to_owned(),
            body: message,
        },
    }
}

fn retry_after(resp: &reqwest::blocking::Response) -> Option<Duration> {
    let secs: u64 = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

impl MlflowClient {
    /// Builds a client. No request is made.
    ///
    /// # Errors
    /// [`MlflowError::Config`] when the URI is not http(s) or the TLS backend cannot start.
    pub fn new(config: MlflowConfig) -> Result<Self> {
        let config = MlflowConfig {
            tracking_uri: MlflowConfig::new(&config.tracking_uri)?.tracking_uri,
            ..config
        };
        let http = Client::builder()
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("rps-mlflow/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| MlflowError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            config,
            http,
            backends: Vec::new(),
        })
    }

    /// A client from the environment, `Ok(None)` when `MLFLOW_TRACKING_URI` is unset.
    ///
    /// # Errors
    /// See [`MlflowConfig::from_env`] and [`MlflowClient::new`].
    pub fn from_env() -> Result<Option<Self>> {
        MlflowConfig::from_env()?.map(Self::new).transpose()
    }

    /// Adds an artifact backend for artifact URIs the built-in proxy does not handle
    /// (e.g. `s3://`). Backends are asked in the order they were added.
    #[must_use]
    pub fn with_artifact_backend(mut self, backend: Box<dyn ArtifactBackend>) -> Self {
        self.backends.push(backend);
        self
    }

    /// The configuration in use.
    #[must_use]
    pub fn config(&self) -> &MlflowConfig {
        &self.config
    }

    /// The tracking URI, without a trailing slash.
    #[must_use]
    pub fn tracking_uri(&self) -> &str {
        &self.config.tracking_uri
    }

    // ----- HTTP core -----

    fn builder(&self, method: &Method, path: &str) -> RequestBuilder {
        let url = format!("{}/{path}", self.config.tracking_uri);
        let b = self.http.request(method.clone(), url);
        match &self.config.auth {
            Auth::None => b,
            Auth::Basic { username, password } => b.basic_auth(username, Some(password)),
            Auth::Bearer(token) => b.bearer_auth(token),
        }
    }

    /// Sends with retries; returns the body of a 2xx answer.
    pub(crate) fn send(
        &self,
        method: &Method,
        path: &str,
        query: &[(&str, &str)],
        body: &Body,
        retry: RetryPolicy,
    ) -> Result<Vec<u8>> {
        let attempts = retry.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self.builder(method, path);
            if !query.is_empty() {
                req = req.query(query);
            }
            req = match body {
                Body::Empty => req,
                Body::Json(bytes) => req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(bytes.clone()),
                Body::Bytes(bytes) => req
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .body(bytes.clone()),
            };
            let last = attempt >= attempts;
            match req.send() {
                Ok(resp) => {
                    let status = resp.status();
                    let wait = retry_after(&resp);
                    let transient = status.is_server_error() || status.as_u16() == 429;
                    if transient && !last {
                        let delay = wait
                            .unwrap_or_else(|| retry.delay(attempt - 1))
                            .min(retry.max_delay);
                        tracing::warn!(
                            endpoint = path,
                            status = status.as_u16(),
                            attempt,
                            ?delay,
                            "MLflow answered a transient error; retrying"
                        );
                        std::thread::sleep(delay);
                        continue;
                    }
                    let bytes = resp.bytes().map_err(|source| MlflowError::Transport {
                        endpoint: path.to_owned(),
                        attempts: attempt,
                        source,
                    })?;
                    if status.is_success() {
                        return Ok(bytes.to_vec());
                    }
                    return Err(classify_error(
                        &self.config.tracking_uri,
                        &self.config.auth,
                        status.as_u16(),
                        path,
                        &bytes,
                    ));
                }
                Err(source) => {
                    let transient = source.is_connect()
                        || source.is_timeout()
                        || source.is_request()
                        || source.is_body();
                    if transient && !last {
                        let delay = retry.delay(attempt - 1);
                        tracing::warn!(
                            endpoint = path,
                            attempt,
                            ?delay,
                            error = %source,
                            "cannot reach MLflow; retrying"
                        );
                        std::thread::sleep(delay);
                        continue;
                    }
                    return Err(MlflowError::Transport {
                        endpoint: path.to_owned(),
                        attempts: attempt,
                        source,
                    });
                }
            }
        }
    }

    fn decode<T: DeserializeOwned>(path: &str, bytes: &[u8]) -> Result<T> {
        let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}".as_slice()
        } else {
            bytes
        };
        serde_json::from_slice(bytes).map_err(|e| MlflowError::Decode {
            endpoint: path.to_owned(),
            detail: format!("{e}; body: {}", snippet(bytes)),
        })
    }

    pub(crate) fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T> {
        let bytes = self.send(&Method::GET, path, query, &Body::Empty, self.config.retry)?;
        Self::decode(path, &bytes)
    }

    pub(crate) fn call_json<T: DeserializeOwned>(
        &self,
        method: &Method,
        path: &str,
        body: &impl Serialize,
        retry: RetryPolicy,
    ) -> Result<T> {
        let body = Body::Json(serde_json::to_vec(body)?);
        let bytes = self.send(method, path, &[], &body, retry)?;
        Self::decode(path, &bytes)
    }

    pub(crate) fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T> {
        self.call_json(&Method::POST, path, body, self.config.retry)
    }

    // ----- experiments -----

    /// The experiment called `name`, or `None`.
    ///
    /// # Errors
    /// Transport, auth and API errors.
    pub fn get_experiment_by_name(&self, name: &str) -> Result<Option<Experiment>> {
        #[derive(Deserialize)]
        struct Resp {
            experiment: Experiment,
        }
        let path = format!("{TRACKING}/experiments/get-by-name");
        match self.get_json::<Resp>(&path, &[("experiment_name", name)]) {
            Ok(r) => Ok(Some(r.experiment)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The id of the experiment called `name`, creating it if needed. Safe against a
    /// concurrent creator (`RESOURCE_ALREADY_EXISTS` → read it again).
    ///
    /// # Errors
    /// [`MlflowError::InvalidArgument`] if the experiment exists but is deleted; transport,
    /// auth and API errors.
    pub fn get_or_create_experiment(&self, name: &str) -> Result<String> {
        if name.trim().is_empty() || name.chars().count() > 500 {
            return Err(MlflowError::InvalidArgument(format!(
                "experiment name {name:?} must be 1–500 characters"
            )));
        }
        let usable = |e: Experiment| {
            if e.lifecycle_stage.as_deref() == Some("deleted") {
                Err(MlflowError::InvalidArgument(format!(
                    "experiment {name:?} (id {}) is deleted; restore it or delete it permanently \
                     (`mlflow gc`) before reusing the name",
                    e.experiment_id
                )))
            } else {
                Ok(e.experiment_id)
            }
        };
        if let Some(e) = self.get_experiment_by_name(name)? {
            return usable(e);
        }
        #[derive(Deserialize)]
        struct Created {
            experiment_id: String,
        }
        let path = format!("{TRACKING}/experiments/create");
        match self.post_json::<Created>(&path, &json!({ "name": name })) {
            Ok(c) => {
                tracing::info!(experiment = name, id = %c.experiment_id, "created MLflow experiment");
                Ok(c.experiment_id)
            }
            Err(e) if e.is_already_exists() => match self.get_experiment_by_name(name)? {
                Some(e) => usable(e),
                None => Err(MlflowError::Decode {
                    endpoint: path,
                    detail: format!(
                        "experiment {name:?} reported as existing but cannot be read back"
                    ),
                }),
            },
            Err(e) => Err(e),
        }
    }

    // ----- runs -----

    /// Starts a run (status `RUNNING`, start time now) with the given tags.
    ///
    /// # Errors
    /// Invalid tag keys/values; transport, auth and API errors.
    pub fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        tags: &[(String, String)],
    ) -> Result<RunInfo> {
        for (k, v) in tags {
            batch::validate_key("tag", k)?;
            if v.chars().count() > batch::MAX_TAG_VALUE_LENGTH {
                return Err(MlflowError::ValueTooLong {
                    kind: "tag",
                    key: k.clone(),
                    len: v.chars().count(),
                    max: batch::MAX_TAG_VALUE_LENGTH,
                });
            }
        }
        #[derive(Deserialize)]
        struct Resp {
            run: WireRun,
        }
        let tags: Vec<_> = tags
            .iter()
            .map(|(k, v)| json!({ "key": k, "value": v }))
            .collect();
        let mut body = json!({
            "experiment_id": experiment_id,
            "start_time": now_millis(),
            "tags": tags,
        });
        if !run_name.is_empty() {
            body["run_name"] = json!(run_name);
        }
        let r: Resp = self.post_json(&format!("{TRACKING}/runs/create"), &body)?;
        tracing::info!(run_id = %r.run.info.run_id, experiment_id, "created MLflow run");
        Ok(r.run.info)
    }

    /// Logs metrics, params and tags, split into as many `runs/log-batch` requests as MLflow's
    /// limits require (see [`crate::batch::plan_log_batch`]). Re-logging a param with the
    /// value it already has is accepted; a different value is a [`MlflowError::ParamConflict`].
    ///
    /// # Errors
    /// Validation errors before anything is sent; then transport, auth and API errors (earlier
    /// chunks stay logged).
    pub fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[(String, String)],
        tags: &[(String, String)],
    ) -> Result<()> {
        let batches = plan_log_batch(run_id, metrics, params, tags)?;
        let path = format!("{TRACKING}/runs/log-batch");
        let n = batches.len();
        for (i, b) in batches.iter().enumerate() {
            tracing::debug!(
                run_id,
                chunk = i + 1,
                of = n,
                metrics = b.metrics.len(),
                params = b.params.len(),
                tags = b.tags.len(),
                "log-batch"
            );
            match self.post_json::<serde_json::Value>(&path, b) {
                Ok(_) => {}
                Err(MlflowError::Api {
                    error_code,
                    message,
                    ..
                }) if error_code == "INVALID_PARAMETER_VALUE" && is_param_change(&message) => {
                    return Err(MlflowError::ParamConflict {
                        run_id: run_id.to_owned(),
                        message,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sets one tag on a run.
    ///
    /// # Errors
    /// Invalid key or value; transport, auth and API errors.
    pub fn set_tag(&self, run_id: &str, key: &str, value: &str) -> Result<()> {
        batch::validate_key("tag", key)?;
        let len = value.chars().count();
        if len > batch::MAX_TAG_VALUE_LENGTH {
            return Err(MlflowError::ValueTooLong {
                kind: "tag",
                key: key.to_owned(),
                len,
                max: batch::MAX_TAG_VALUE_LENGTH,
            });
        }
        let _: serde_json::Value = self.post_json(
            &format!("{TRACKING}/runs/set-tag"),
            &json!({ "run_id": run_id, "key": key, "value": value }),
        )?;
        Ok(())
    }

    /// Sets the run's status; terminal statuses also set `end_time` to now.
    ///
    /// # Errors
    /// Transport, auth and API errors.
    pub fn update_run(&self, run_id: &str, status: RunStatus) -> Result<()> {
        let mut body = json!({ "run_id": run_id, "status": status.as_str() });
        if status.is_terminal() {
            body["end_time"] = json!(now_millis());
        }
        let _: serde_json::Value = self.post_json(&format!("{TRACKING}/runs/update"), &body)?;
        Ok(())
    }

    /// A run with its latest metrics, params and tags.
    ///
    /// # Errors
    /// `RESOURCE_DOES_NOT_EXIST` for an unknown run; transport, auth and API errors.
    pub fn get_run(&self, run_id: &str) -> Result<Run> {
        #[derive(Deserialize)]
        struct Resp {
            run: WireRun,
        }
        let r: Resp = self.get_json(&format!("{TRACKING}/runs/get"), &[("run_id", run_id)])?;
        Ok(r.run.into())
    }

    /// Runs of the given experiments matching an MLflow filter string (`""` for all), e.g.
    /// `metrics.rmse < 0.1 and tags.stage = 'train'`, ordered by `order_by` (e.g.
    /// `["attributes.start_time DESC"]`), at most `max_results` (pages are followed).
    ///
    /// # Errors
    /// Transport, auth and API errors (a bad filter is `INVALID_PARAMETER_VALUE`).
    pub fn search_runs(
        &self,
        experiment_ids: &[&str],
        filter: &str,
        order_by: &[&str],
        max_results: usize,
    ) -> Result<Vec<Run>> {
        #[derive(Deserialize)]
        struct Resp {
            #[serde(default)]
            runs: Vec<WireRun>,
            #[serde(default)]
            next_page_token: Option<String>,
        }
        let path = format!("{TRACKING}/runs/search");
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        while out.len() < max_results {
            let page = (max_results - out.len()).min(1000);
            let mut body = json!({
                "experiment_ids": experiment_ids,
                "filter": filter,
                "max_results": page,
                "order_by": order_by,
            });
            if let Some(t) = &token {
                body["page_token"] = json!(t);
            }
            let r: Resp = self.post_json(&path, &body)?;
            let got = r.runs.len();
            out.extend(r.runs.into_iter().map(Run::from));
            token = r.next_page_token.filter(|t| !t.is_empty());
            if token.is_none() || got == 0 {
                break;
            }
        }
        out.truncate(max_results);
        Ok(out)
    }

    /// Every point of one metric, sorted by (step, timestamp).
    ///
    /// # Errors
    /// Transport, auth and API errors.
    pub fn get_metric_history(&self, run_id: &str, key: &str) -> Result<Vec<Metric>> {
        #[derive(Deserialize)]
        struct Resp {
            #[serde(default)]
            metrics: Vec<Metric>,
            #[serde(default)]
            next_page_token: Option<String>,
        }
        let path = format!("{TRACKING}/metrics/get-history");
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("run_id", run_id),
                ("metric_key", key),
                ("max_results", "25000"),
            ];
            if let Some(t) = &token {
                query.push(("page_token", t.as_str()));
            }
            let r: Resp = self.get_json(&path, &query)?;
            let got = r.metrics.len();
            out.extend(r.metrics);
            token = r.next_page_token.filter(|t| !t.is_empty());
            if token.is_none() || got == 0 {
                break;
            }
        }
        out.sort_by_key(|m| (m.step, m.timestamp));
        Ok(out)
    }

    /// Records a logged model on the run (`runs/log-model`, which appends `model_json` to the
    /// run's `mlflow.log-model.history` tag). `model_json` is the JSON the Python client sends:
    /// see [`crate::XgboostModel::log_model_json`]. An HTTP 500 — what old servers such as
    /// DagHub's MLflow 2.7 answer — is logged as a warning and reported as
    /// [`LogModelOutcome::SkippedByServer`]; it is retried only once.
    ///
    /// # Errors
    /// Transport, auth and other API errors.
    pub fn log_model(&self, run_id: &str, model_json: &str) -> Result<LogModelOutcome> {
        let path = format!("{TRACKING}/runs/log-model");
        let retry = RetryPolicy {
            max_attempts: self.config.retry.max_attempts.min(2),
            ..self.config.retry
        };
        let body = json!({ "run_id": run_id, "model_json": model_json });
        match self.call_json::<serde_json::Value>(&Method::POST, &path, &body, retry) {
            Ok(_) => Ok(LogModelOutcome::Recorded),
            Err(e) if e.status() == Some(500) => {
                tracing::warn!(
                    run_id,
                    error = %e,
                    "MLflow could not record the logged model (old servers such as DagHub's \
                     MLflow 2.7 answer 500 here); the model artifacts are still on the run"
                );
                Ok(LogModelOutcome::SkippedByServer)
            }
            Err(e) => Err(e),
        }
    }

    /// The tags of a run as a map (a convenience over [`MlflowClient::get_run`]).
    ///
    /// # Errors
    /// As [`MlflowClient::get_run`].
    pub fn get_run_tags(&self, run_id: &str) -> Result<BTreeMap<String, String>> {
        Ok(self.get_run(run_id)?.tags)
    }
}

fn is_param_change(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("changing param") || (m.contains("param") && m.contains("already logged"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_classification() {
        let auth = Auth::Basic {
            username: "u".into(),
            password: "p".into(),
        };
        let e = classify_error("http://h", &auth, 401, "api/2.0/mlflow/runs/get", b"");
        let text = e.to_string();
        assert!(text.contains("MLFLOW_TRACKING_USERNAME"), "{text}");
        assert!(text.contains("MLFLOW_TRACKING_PASSWORD"), "{text}");
        assert!(text.contains("MLFLOW_TRACKING_TOKEN"), "{text}");
        assert!(text.contains("\"u\"") && !text.contains("\"p\""), "{text}");

        let body = br#"{"error_code":"ENDPOINT_NOT_FOUND","message":"No API found"}"#;
        let e = classify_error(
            "http://h",
            &Auth::None,
            404,
            "api/2.0/mlflow/registered-models/create",
            body,
        );
        assert!(matches!(e, MlflowError::RegistryUnsupported { .. }));
        let body =
            br#"{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"Model Registry features are not supported by the store."}"#;
        let e = classify_error(
            "http://h",
            &Auth::None,
            404,
            "api/2.0/mlflow/model-versions/create",
            body,
        );
        assert!(matches!(e, MlflowError::RegistryUnsupported { .. }));
        // A plain missing alias is not "unsupported".
        let body =
            br#"{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"alias champion not found"}"#;
        let e = classify_error(
            "http://h",
            &Auth::None,
            404,
            "api/2.0/mlflow/registered-models/alias",
            body,
        );
        assert!(e.is_not_found());
        // A 404 elsewhere stays an API error.
        let body = br#"{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"no run"}"#;
        let e = classify_error(
            "http://h",
            &Auth::None,
            404,
            "api/2.0/mlflow/runs/get",
            body,
        );
        assert_eq!(e.error_code(), Some("RESOURCE_DOES_NOT_EXIST"));
        let e = classify_error(
            "http://h",
            &Auth::None,
            502,
            "x",
            b"<html>bad gateway</html>",
        );
        assert!(matches!(e, MlflowError::Http { status: 502, .. }));
    }

    #[test]
    fn param_change_messages() {
        assert!(is_param_change(
            "Changing param values is not allowed. Param with key='a' was already logged"
        ));
        assert!(!is_param_change("Invalid metric name"));
    }
}
