//! The HTTP side: `POST /alerts` (Alertmanager's webhook), `GET /health`, `GET /metrics`, and
//! the accept loop with its limits (a connection cap, a header-read timeout, a bounded body read
//! under a deadline, a bound on each connection's life).
//!
//! Answers to `POST /alerts`: 200 with what happened to each retrain alert; 4xx JSON for a body
//! that is not a webhook payload (Alertmanager does not retry those); 503 when Airflow is
//! unavailable, so Alertmanager retries; 502 when Airflow refuses the run or the credentials (a
//! configuration fault: logged as an error and counted, retried by Alertmanager too).

use crate::airflow::{Airflow, AirflowError, Created};
use crate::alertmanager::{Notification, PayloadError, Status};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body::Body as _;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Semaphore};

/// Server limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted body (413 above).
    pub body_limit: usize,
    /// Deadline for a request's headers and, separately, its body (408 for the body).
    pub read_timeout: Duration,
    /// Longest life of one connection (then it is closed gracefully).
    pub connection_lifetime: Duration,
    /// Connections served at once; more are closed on accept.
    pub max_connections: usize,
}

/// Counters behind `GET /metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    notifications_ok: AtomicU64,
    notifications_invalid: AtomicU64,
    notifications_failed: AtomicU64,
    runs_created: AtomicU64,
    runs_existing: AtomicU64,
    runs_cooldown: AtomicU64,
    failures_unavailable: AtomicU64,
    failures_auth: AtomicU64,
    failures_rejected: AtomicU64,
    resolved: AtomicU64,
}

impl Metrics {
    fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "# HELP rps_alert_hook_notifications_total Alertmanager webhook notifications received, by outcome.\n\
             # TYPE rps_alert_hook_notifications_total counter\n\
             rps_alert_hook_notifications_total{{result=\"ok\"}} {}\n\
             rps_alert_hook_notifications_total{{result=\"invalid\"}} {}\n\
             rps_alert_hook_notifications_total{{result=\"failed\"}} {}\n\
             # HELP rps_alert_hook_triggers_total Retrain alerts handled: a DAG run created, one already existing for the alert (a repeat), or skipped within the cooldown.\n\
             # TYPE rps_alert_hook_triggers_total counter\n\
             rps_alert_hook_triggers_total{{result=\"created\"}} {}\n\
             rps_alert_hook_triggers_total{{result=\"exists\"}} {}\n\
             rps_alert_hook_triggers_total{{result=\"cooldown\"}} {}\n\
             # HELP rps_alert_hook_trigger_failures_total DAG runs Airflow did not take, by reason.\n\
             # TYPE rps_alert_hook_trigger_failures_total counter\n\
             rps_alert_hook_trigger_failures_total{{reason=\"unavailable\"}} {}\n\
             rps_alert_hook_trigger_failures_total{{reason=\"auth\"}} {}\n\
             rps_alert_hook_trigger_failures_total{{reason=\"rejected\"}} {}\n\
             # HELP rps_alert_hook_resolved_alerts_total Resolved alerts received (logged only).\n\
             # TYPE rps_alert_hook_resolved_alerts_total counter\n\
             rps_alert_hook_resolved_alerts_total {}\n",
            g(&self.notifications_ok),
            g(&self.notifications_invalid),
            g(&self.notifications_failed),
            g(&self.runs_created),
            g(&self.runs_existing),
            g(&self.runs_cooldown),
            g(&self.failures_unavailable),
            g(&self.failures_auth),
            g(&self.failures_rejected),
            g(&self.resolved),
        )
    }
}

/// What the handlers share.
pub struct Hook {
    pub airflow: Airflow,
    /// No new run within this after one was created (`retrain.cooldown_minutes`).
    pub cooldown: Duration,
    pub limits: Limits,
    pub metrics: Metrics,
    /// When the last run was created; held while triggering, so concurrent notifications see
    /// each other's runs.
    last_created: Mutex<Option<Instant>>,
}

impl Hook {
    pub fn new(airflow: Airflow, cooldown: Duration, limits: Limits) -> Self {
        Self {
            airflow,
            cooldown,
            limits,
            metrics: Metrics::default(),
            last_created: Mutex::new(None),
        }
    }
}

/// What happened to one retrain alert.
#[derive(Debug, Serialize)]
struct Outcome {
    alertname: String,
    symbol: Option<String>,
    dag_run_id: String,
    /// created | exists | cooldown
    result: &'static str,
}

#[derive(Debug, Serialize)]
struct Handled {
    dag_id: String,
    triggers: Vec<Outcome>,
    resolved: usize,
    ignored: usize,
}

fn error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message.to_string()}});
    (status, axum::Json(body)).into_response()
}

pub fn router(hook: Arc<Hook>) -> Router {
    Router::new()
        .route("/alerts", post(alerts))
        .route(
            "/health",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/metrics", get(metrics))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .with_state(hook)
}

async fn metrics(State(hook): State<Arc<Hook>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        hook.metrics.render(),
    )
        .into_response()
}

async fn alerts(State(hook): State<Arc<Hook>>, req: Request) -> Response {
    let response = match read_body(&hook.limits, req).await {
        Err(r) => r,
        Ok(bytes) => match Notification::parse(&bytes) {
            Err(e) => {
                tracing::warn!(error = %e, "refused a webhook notification");
                let (status, code) = match e {
                    PayloadError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed"),
                    PayloadError::Version(_) => {
                        (StatusCode::UNPROCESSABLE_ENTITY, "unsupported_version")
                    }
                };
                error(status, code, e)
            }
            Ok(n) => handle(&hook, n).await,
        },
    };
    let counter = match response.status() {
        s if s.is_success() => &hook.metrics.notifications_ok,
        s if s.is_client_error() => &hook.metrics.notifications_invalid,
        _ => &hook.metrics.notifications_failed,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    response
}

/// The body, bounded in size and time; the error answer otherwise.
async fn read_body(limits: &Limits, req: Request) -> Result<Vec<u8>, Response> {
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ));
    }
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than {} bytes", limits.body_limit),
        )
    };
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limits.body_limit as u64) {
        return Err(too_large());
    }
    let mut body: Body = req.into_body();
    let read = async {
        let mut buf = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            let frame = frame.map_err(|e| error(StatusCode::BAD_REQUEST, "body_unreadable", e))?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > limits.body_limit {
                    return Err(too_large());
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(buf)
    };
    match tokio::time::timeout(limits.read_timeout, read).await {
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!("the body did not arrive within {:?}", limits.read_timeout),
        )),
        Ok(r) => r,
    }
}

/// Act on each alert of a parsed notification.
async fn handle(hook: &Hook, n: Notification) -> Response {
    let mut handled = Handled {
        dag_id: hook.airflow.dag_id().to_owned(),
        triggers: Vec::new(),
        resolved: 0,
        ignored: 0,
    };
    for alert in &n.alerts {
        if alert.status == Status::Resolved {
            handled.resolved += 1;
            hook.metrics.resolved.fetch_add(1, Ordering::Relaxed);
            tracing::info!(alertname = alert.name(), symbol = alert.symbol(), starts_at = %alert.starts_at, "alert resolved");
            continue;
        }
        if !alert.wants_retrain() {
            handled.ignored += 1;
            tracing::debug!(
                alertname = alert.name(),
                "firing alert without action=retrain: ignored"
            );
            continue;
        }
        let dag_run_id = alert.dag_run_id();
        let mut last = hook.last_created.lock().await;
        let result = match *last {
            Some(t) if t.elapsed() < hook.cooldown => {
                hook.metrics.runs_cooldown.fetch_add(1, Ordering::Relaxed);
                tracing::info!(alertname = alert.name(), symbol = alert.symbol(), %dag_run_id,
                    since_last_run_secs = t.elapsed().as_secs(), "retrain alert within the cooldown: no new run");
                "cooldown"
            }
            _ => {
                let note = format!(
                    "Triggered by the alert {} ({})",
                    alert.name(),
                    alert.symbol().unwrap_or("all symbols")
                );
                match hook
                    .airflow
                    .trigger(&dag_run_id, &alert.conf(), &note)
                    .await
                {
                    Ok(Created::New) => {
                        *last = Some(Instant::now());
                        hook.metrics.runs_created.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(alertname = alert.name(), symbol = alert.symbol(), %dag_run_id,
                            dag_id = hook.airflow.dag_id(), "retrain alert: DAG run created");
                        "created"
                    }
                    Ok(Created::AlreadyExists) => {
                        // A repeat of an alert whose run exists (e.g. after a restart of this
                        // receiver): that run counts for the cooldown too.
                        last.get_or_insert_with(Instant::now);
                        hook.metrics.runs_existing.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(alertname = alert.name(), %dag_run_id, "retrain alert repeated: its DAG run exists");
                        "exists"
                    }
                    Err(e) => return failed(hook, &e),
                }
            }
        };
        drop(last);
        handled.triggers.push(Outcome {
            alertname: alert.name().to_owned(),
            symbol: alert.symbol().map(str::to_owned),
            dag_run_id,
            result,
        });
    }
    (StatusCode::OK, axum::Json(handled)).into_response()
}

fn failed(hook: &Hook, e: &AirflowError) -> Response {
    let counter = match e {
        AirflowError::Unavailable { .. } => &hook.metrics.failures_unavailable,
        AirflowError::Auth { .. } => &hook.metrics.failures_auth,
        AirflowError::Rejected { .. } => &hook.metrics.failures_rejected,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    if e.retryable() {
        tracing::warn!(error = %e, "could not create the DAG run: Alertmanager will retry");
        error(StatusCode::SERVICE_UNAVAILABLE, "airflow_unavailable", e)
    } else {
        tracing::error!(error = %e, reason = e.reason(), "Airflow refused the DAG run: check the receiver's configuration");
        error(StatusCode::BAD_GATEWAY, "airflow_refused", e)
    }
}

/// Accept and serve connections until `shutdown` completes.
pub async fn serve(
    hook: Arc<Hook>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let limits = hook.limits;
    let app = router(hook);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(
                max = limits.max_connections,
                "connection limit reached: closing a new connection"
            );
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.read_timeout)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = tokio::time::sleep(limits.connection_lifetime) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(limits.read_timeout, conn).await;
                }
            }
            drop(slot);
        });
    }
}
