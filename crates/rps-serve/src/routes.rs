//! The HTTP routes and the middleware around them.

use crate::body::{BodyWatch, DeadlineBody};
use crate::error::ApiError;
use crate::input;
use crate::metrics::{escape, fmt_f64};
use crate::state::{AppState, LiveSet, LoadError, Refreshed, Served, Slot};
use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use rps_core::forecast::DistributionFields;
use rps_core::signal::Signal;
use rps_model::Forecast;
use serde::Deserialize;
use serde_json::json;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Instant;

/// Batches larger than this are predicted on the blocking pool instead of an async worker.
const INLINE_ROWS: usize = 64;

/// The router with every route and layer.
pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.config.body_limit;
    Router::new()
        .route("/predict", post(predict))
        .route("/forecast", post(forecast))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/model", get(model))
        .route("/models", get(models))
        .route("/dashboard", get(dashboard))
        .route("/api/history", get(history))
        .route("/api/recent", get(recent))
        .route("/api/scores", get(crate::scores_api::handler))
        .route("/metrics", get(metrics))
        .route("/refresh", post(refresh))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), deadlines))
        .layer(middleware::from_fn(head_limits))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error while handling the request",
    )
    .into_response()
}

/// Count every answered request by method, route template and status.
async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let method: &'static str = match req.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        _ => "other",
    };
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let resp = next.run(req).await;
    state
        .metrics
        .count_request(method, &path, resp.status().as_u16());
    resp
}

/// The body deadline (`--body-timeout`, answered 408 by the handler that reads the body) and
/// the request deadline: 503 `timeout` when handling takes longer than `--request-timeout` —
/// but 408 `body_timeout` when the client was still sending its body then (its fault, not ours).
async fn deadlines(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let limit = state.config.request_timeout;
    let watch = Arc::new(BodyWatch::default());
    let (mut parts, body) = req.into_parts();
    let length = content_length(&parts.headers);
    parts.extensions.insert(watch.clone());
    let body = Body::new(DeadlineBody::new(
        body,
        state.config.body_timeout,
        watch.clone(),
    ));
    let req = Request::from_parts(parts, body);
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) if watch.is_reading() => {
            body_timeout_error(state.config.body_timeout.min(limit), &watch, length).into_response()
        }
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("the request took longer than {limit:?} (--request-timeout)"),
        )
        .into_response(),
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn body_timeout_error(
    limit: std::time::Duration,
    watch: &BodyWatch,
    length: Option<u64>,
) -> ApiError {
    let of = length.map_or_else(String::new, |n| format!(" of the {n} announced"));
    let mut e = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        format!(
            "the request body did not arrive within {limit:?} (--body-timeout): {} bytes received{of}",
            watch.received()
        ),
    );
    e.close = true;
    e
}

/// Longest request target answered (414 `uri_too_long` past it).
pub const MAX_URI: usize = 8 * 1024;
/// Most header lines answered (431 `headers_too_large` past it).
pub const MAX_HEADERS: usize = 100;
/// Most bytes of header names and values answered (431 `headers_too_large` past it).
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// 414 / 431 as JSON for heads hyper accepted but we will not serve; hyper answers (bare)
/// only beyond its own, larger limits (module `listen`).
async fn head_limits(req: Request, next: Next) -> Response {
    let uri = req.uri().to_string().len();
    if uri > MAX_URI {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request target is {uri} bytes; the limit is {MAX_URI}"),
        )
        .into_response();
    }
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "{} header lines, {bytes} bytes; the limits are {MAX_HEADERS} lines and {MAX_HEADER_BYTES} bytes",
                headers.len()
            ),
        )
        .into_response();
    }
    next.run(req).await
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no route {} {}; routes: POST /predict, POST /forecast, GET /health, /ready, /model, /models, /metrics, /dashboard, /api/history, /api/recent, /api/scores, POST /refresh",
            req.method(),
            req.uri().path()
        ),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

#[derive(Debug, Deserialize)]
struct ModelQuery {
    model: Option<String>,
    symbol: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SymbolQuery {
    symbol: Option<String>,
}

/// A query string, or 400 `invalid_query`.
fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))
}

fn not_ready(state: &AppState, slot: &Slot) -> ApiError {
    let of = slot
        .symbol
        .as_deref()
        .map_or_else(String::new, |s| format!(" for {s}"));
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
        format!(
            "no model{of} is loaded yet ({:?} has no {:?} version the service could load); POST /refresh once the registry has one",
            slot.model_name, state.config.alias
        ),
    )
}

/// The symbol a request names by `?symbol=` and by its body, which must agree.
fn one_symbol(
    in_query: Option<String>,
    in_body: Option<String>,
) -> Result<Option<String>, ApiError> {
    match (in_query, in_body) {
        (Some(q), Some(b)) if q.trim() != b.trim() => Err(ApiError::invalid(
            "symbol_mismatch",
            format!("?symbol={q} and the body's `symbol` {b:?} differ: give one"),
        )),
        (q, b) => Ok(q.or(b)),
    }
}

/// The symbol whose stream data a chart shows: the one named, else (a slot per symbol) the
/// slot's, else `BTC-USD`.
pub(crate) fn chart_symbol(state: &AppState, slot: &Slot, named: Option<String>) -> String {
    named
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| state.per_symbol.then(|| slot.symbol.clone()).flatten())
        .unwrap_or_else(|| "BTC-USD".to_owned())
}

fn load_error(e: &LoadError) -> ApiError {
    let (status, code) = e.status();
    ApiError::new(status, code, e.to_string())
}

/// The model a request asks for: the slot's served alias, or `?model=` (another alias or a
/// version).
async fn pick(state: &AppState, slot: &Slot, model: Option<&str>) -> Result<Arc<Served>, ApiError> {
    if model.is_none_or(|m| m.trim().is_empty() || m == state.config.alias) {
        return slot.current().ok_or_else(|| not_ready(state, slot));
    }
    state.lookup(slot, model).await.map_err(|e| load_error(&e))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let mime = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
}

/// The body of a JSON POST, or the JSON error a client can act on: 415 for another content
/// type, 413 over `--body-limit`, 408 when it did not arrive within `--body-timeout`, 400 when it
/// could not be read.
fn json_body(
    state: &AppState,
    watch: Option<&Extension<Arc<BodyWatch>>>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, ApiError> {
    if !is_json(headers) {
        let got = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none");
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("content type must be application/json, got {got}"),
        ));
    }
    let body = body.map_err(|e| {
        if let Some(Extension(w)) = watch.filter(|w| w.timed_out()) {
            body_timeout_error(state.config.body_timeout, w, content_length(headers))
        } else if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "request body is larger than {} bytes (--body-limit)",
                    state.config.body_limit
                ),
            )
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("could not read the request body: {}", e.body_text()),
            )
        }
    })?;
    Ok(body)
}

async fn predict(
    State(state): State<Arc<AppState>>,
    watch: Option<Extension<Arc<BodyWatch>>>,
    query_string: Result<Query<ModelQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let q = query(query_string)?;
    let body = json_body(&state, watch.as_ref(), &headers, body)?;
    let request = input::request(&body)?;
    let symbol = one_symbol(q.symbol, request.symbol.clone())?;
    let slot = state.slot(symbol.as_deref())?;
    let served = pick(&state, slot, q.model.as_deref()).await?;
    let mut rows = request.rows(
        &served.request_features,
        &served.index,
        state.config.max_batch,
    )?;
    rows.values = served.inputs(rows.values);
    let predictions = if rows.n_rows <= INLINE_ROWS {
        predict_rows(&served, &rows.values)
    } else {
        let (s, values) = (served.clone(), rows.values.clone());
        tokio::task::spawn_blocking(move || predict_rows(&s, &values))
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("prediction task failed: {e}"),
                )
            })?
    }?;
    let out_of_range = served.observe(&rows.values);
    let m = &state.metrics;
    for p in &predictions {
        served.observe_forecast(p);
        match p {
            Forecast::Volatility(v) => m.values.observe(v.mean),
            Forecast::Signal { signal, .. } => {
                m.signals[signal.index()].fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    m.predictions
        .fetch_add(predictions.len() as u64, Ordering::Relaxed);
    let task = served.model.task().as_str();
    let mut body = if rows.batch {
        let values: Vec<serde_json::Value> = predictions.iter().map(forecast_json).collect();
        json!({ "model": served.info.name, "version": served.info.version, "task": task, "predictions": values })
    } else {
        json!({ "model": served.info.name, "version": served.info.version, "task": task, "prediction": predictions.first().map(forecast_json) })
    };
    // A model with a distribution (issue #16) adds it beside the unchanged `prediction(s)`.
    let dists: Vec<Option<DistributionFields>> = predictions
        .iter()
        .map(|p| match p {
            Forecast::Volatility(v) => DistributionFields::of(v),
            Forecast::Signal { .. } => None,
        })
        .collect();
    if dists.iter().any(Option::is_some) {
        if rows.batch {
            body["distributions"] = json!(dists);
        } else {
            body["distribution"] = json!(dists.first().cloned().flatten());
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    m.latency.observe(elapsed);
    served
        .predictions
        .fetch_add(predictions.len() as u64, Ordering::Relaxed);
    served.latency_sum.add(elapsed);
    served.latency_count.fetch_add(1, Ordering::Relaxed);
    {
        let mut recent = state.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() >= crate::state::RECENT_REQUESTS {
            recent.pop_front();
        }
        recent.push_back(crate::state::RecentRequest {
            at: crate::state::now_secs(),
            symbol: slot.symbol.clone(),
            version: served.info.version,
            rows: rows.n_rows,
            forecast: predictions
                .first()
                .map_or(serde_json::Value::Null, forecast_json),
            out_of_range,
            latency_ms: elapsed * 1000.0,
        });
    }
    Ok(Json(body).into_response())
}

/// `POST /forecast`: the next bar's forecast from candles (see [`crate::forecast`]), by the
/// served alias or `?model=`; without `candles`, from the newest stored ones
/// ([`crate::stored`]).
async fn forecast(
    State(state): State<Arc<AppState>>,
    watch: Option<Extension<Arc<BodyWatch>>>,
    query_string: Result<Query<ModelQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let q = query(query_string)?;
    let body = json_body(&state, watch.as_ref(), &headers, body)?;
    let req: crate::forecast::ForecastRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("body is not a forecast request ({{\"candles\": [{{\"time\", \"open\", \"high\", \"low\", \"close\", \"volume\"}}, …]}}, or {{}} for the stored candles): {e}"),
        )
    })?;
    if let Some(symbol) = q.symbol.as_deref().or(req.symbol.as_deref()) {
        crate::stored::check_symbol(symbol)?;
    }
    let mut req = req;
    req.symbol = one_symbol(q.symbol, req.symbol)?;
    let slot = state.slot(req.symbol.as_deref())?;
    let served = pick(&state, slot, q.model.as_deref()).await?;
    let out = match req.candles {
        Some(candles) => tokio::task::spawn_blocking(move || {
            crate::forecast::from_request(&served, req.symbol.as_deref(), &candles)
        })
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("forecast task failed: {e}"),
            )
        })??,
        None => {
            let Some(source) = crate::stored::Source::of(&state.config) else {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no_history",
                    "no stored candles are configured: send `candles`, or start rps-serve with \
                     --database-url (the stream's PostgreSQL) or --home (the raw dataset)",
                ));
            };
            let spec = crate::forecast::spec(&served)?;
            let symbol = req
                .symbol
                .clone()
                .or_else(|| state.per_symbol.then(|| slot.symbol.clone()).flatten())
                .unwrap_or_else(|| served.schema.symbol.clone());
            let (bars, interval) = crate::stored::read(&state, &source, &spec, &symbol).await?;
            let max_age = crate::stored::max_age_ms(&state.config, spec.bar);
            let now = chrono::Utc::now().timestamp_millis();
            let label = source.label();
            tokio::task::spawn_blocking(move || {
                let st = rps_core::forecast::stored(&spec, &bars, interval, now, max_age)
                    .map_err(|e| crate::forecast::api_error(&e))?;
                crate::forecast::predict(
                    &served,
                    &spec,
                    &symbol,
                    &st.window,
                    label,
                    Some(st.age_ms),
                )
            })
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("forecast task failed: {e}"),
                )
            })??
        }
    };
    Ok(Json(out).into_response())
}

/// Fewest rows in a drift window for `/api/recent` to report PSI.
const MIN_PSI_ROWS: usize = 100;

/// `GET /api/recent`: what serve itself knows, with or without the stream's PostgreSQL — the
/// last answered `/predict` requests (newest first) and, per live version, the drift of its
/// recent inputs against the training data (out-of-range share, the features with the highest
/// PSI).
async fn recent(
    State(state): State<Arc<AppState>>,
    query_string: Result<Query<SymbolQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let q = query(query_string)?;
    let slot = state.slot(q.symbol.as_deref())?;
    let requests: Vec<crate::state::RecentRequest> = state
        .recent
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .rev()
        .filter(|r| !state.per_symbol || r.symbol == slot.symbol)
        .cloned()
        .collect();
    let live = slot.live.load_full();
    let drift: Vec<serde_json::Value> = live
        .as_ref()
        .map(|l| {
            l.models
                .iter()
                .map(|(alias, s)| {
                    let w = s.drift.lock().unwrap_or_else(PoisonError::into_inner);
                    // PSI over a handful of rows is noise: only from MIN_PSI_ROWS on.
                    let mut psi: Vec<(&String, f64)> = if w.len() >= MIN_PSI_ROWS {
                        s.schema
                            .features
                            .iter()
                            .zip(w.psi(&s.schema.reference))
                            .filter(|(_, v)| v.is_finite())
                            .collect()
                    } else {
                        Vec::new()
                    };
                    psi.sort_by(|a, b| b.1.total_cmp(&a.1));
                    psi.truncate(5);
                    json!({
                        "alias": alias,
                        "version": s.info.version,
                        "window": w.len(),
                        "out_of_range_ratio": if w.is_empty() { serde_json::Value::Null } else { json!(w.ratio()) },
                        "top_psi": psi.iter().map(|(f, v)| json!({"feature": f, "psi": v})).collect::<Vec<_>>(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Json(
        json!({ "symbol": slot.symbol, "model": slot.model_name, "requests": requests, "drift": drift }),
    ))
}

/// A volatility forecast is a number; a signal is `{"signal": "buy", "probabilities": {…}}`.
fn forecast_json(f: &Forecast) -> serde_json::Value {
    match f {
        Forecast::Volatility(v) => json!(v.mean),
        Forecast::Signal {
            signal,
            probabilities,
        } => json!({
            "signal": signal.as_str(),
            "probabilities": {
                "sell": probabilities[Signal::Sell.index()],
                "hold": probabilities[Signal::Hold.index()],
                "buy": probabilities[Signal::Buy.index()],
            },
        }),
    }
}

fn predict_rows(served: &Served, values: &[f32]) -> Result<Vec<Forecast>, ApiError> {
    let n = served.schema.features.len().max(1);
    values
        .chunks_exact(n)
        .map(|row| {
            served.model.predict_one(row).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "prediction_failed",
                    format!("the model failed to predict: {e}"),
                )
            })
        })
        .collect()
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /ready[?symbol=]`: 200 once every served symbol's (or the named one's) model is
/// loaded, else 503 naming those still missing.
async fn ready(
    State(state): State<Arc<AppState>>,
    query_string: Result<Query<SymbolQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let q = query(query_string)?;
    if q.symbol.is_some() || state.slots.len() == 1 {
        let slot = state.slot(q.symbol.as_deref())?;
        let served = slot.current().ok_or_else(|| not_ready(&state, slot))?;
        return Ok(Json(
            json!({ "status": "ready", "symbol": slot.symbol, "model": served.info.name, "version": served.info.version }),
        ));
    }
    let mut symbols = serde_json::Map::new();
    let mut missing = Vec::new();
    for slot in &state.slots {
        let label = slot.label();
        match slot.current() {
            Some(s) => {
                symbols.insert(
                    label,
                    json!({ "model": s.info.name, "version": s.info.version }),
                );
            }
            None => missing.push(label),
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!(
                "no model is loaded yet for {}; POST /refresh once the registry has one",
                missing.join(", ")
            ),
        )
        .with("missing", missing));
    }
    Ok(Json(json!({ "status": "ready", "symbols": symbols })))
}

async fn model(
    State(state): State<Arc<AppState>>,
    query_string: Result<Query<ModelQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let q = query(query_string)?;
    let slot = state.slot(q.symbol.as_deref())?;
    let served = pick(&state, slot, q.model.as_deref()).await?;
    let meta = served.model.meta();
    let is_champion = slot
        .current()
        .is_some_and(|c| c.info.version == served.info.version);
    let live = slot.live.load_full();
    let aliases = live
        .as_ref()
        .map_or_else(Vec::new, |l| l.aliases_of(served.info.version));
    let spec = rps_core::forecast::spec(&served.schema).ok();
    let mut body = json!({
        "name": served.info.name,
        "symbol": slot.symbol,
        "version": served.info.version,
        "alias": if is_champion { Some(state.config.alias.as_str()) } else { None },
        "aliases": aliases,
        "trained_at": served.info.created_at,
        "run_id": served.info.run_id,
        "data_hash": served.info.data_hash,
        "git_commit": served.info.git_commit,
        "metrics": served.info.metrics,
        // What a client sends to POST /predict: a pooled model's one-hot columns come from the
        // slot's symbol, not from the client.
        "features": served.request_features,
        "pooled": served.schema.is_pooled(),
        "symbols": served.schema.symbols,
        "task": meta.task.as_str(),
        "signal": meta.signal,
        "model": {
            "transform": meta.transform,
            "floor": meta.floor,
            "num_trees": meta.num_trees,
            "best_iteration": meta.best_iteration,
            "engine": meta.engine,
        },
        "loaded_at": served.loaded_at,
        "schema": served.schema,
        // What a client sends to POST /forecast: this many consecutive bars of `bar`, oldest
        // first (null when the model cannot forecast from candles).
        "history_bars": spec.as_ref().map(rps_core::forecast::history_bars),
        "feature_spec": spec.as_ref().map(|s| json!({
            "bar": s.bar.to_string(),
            "estimator": s.target.estimator,
            "floor": s.target.floor,
            "horizon": s.target.horizon,
            "windows": s.features,
            // Candle fields beyond OHLCV that POST /forecast needs on every candle.
            "candle_columns": s.needs().iter().map(|c| c.name()).collect::<Vec<_>>(),
        })),
    });
    // Like /predict's `distribution`: present only for a model with quantiles, so a client of a
    // point-only model sees the same document as before issue #16.
    if let Some(q) = &meta.quantiles {
        body["distribution"] = distribution_json(q);
    }
    Ok(Json(body))
}

/// `/model`'s `distribution`: how a model with quantiles makes its distribution (levels, how
/// they were calibrated and by how much, how often validation outcomes fell at or below each
/// level before calibration).
fn distribution_json(q: &rps_model::QuantileMeta) -> serde_json::Value {
    json!({
        "levels": q.levels,
        "calibration": q.calibration,
        "corrections": q.corrections,
        "n_calibration": q.n_calibration,
        "raw_validation_coverage": q.raw_validation_coverage,
        "num_trees": q.num_trees,
        "best_iteration": q.best_iteration,
    })
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut out = String::with_capacity(8192);
    state.metrics.write(&mut out);
    let slots: Vec<(String, &Slot, Option<Arc<LiveSet>>)> = state
        .slots
        .iter()
        .map(|s| (s.label(), s.as_ref(), s.live.load_full()))
        .collect();
    write_version_metrics(&mut out, &slots);
    crate::metrics::write_scores(
        &mut out,
        &state.config.monitor,
        &state.scores,
        crate::scores::max_score_age(
            &state.config.monitor,
            crate::scores::bar_seconds(slots[0].2.as_deref()),
        ),
        crate::state::now_secs(),
    );
    let _ = writeln!(
        out,
        "# HELP model_info The served model of each symbol (value 1).\n# TYPE model_info gauge"
    );
    let _ = writeln!(
        out,
        "# HELP data_drift_ratio Share of feature values outside the reference range over the drift window.\n# TYPE data_drift_ratio gauge"
    );
    let _ = writeln!(
        out,
        "# HELP feature_psi Population stability index of each feature over the drift window.\n# TYPE feature_psi gauge"
    );
    let _ = writeln!(
        out,
        "# HELP drift_window_rows Rows currently in the drift window.\n# TYPE drift_window_rows gauge"
    );
    for (symbol, _, live) in &slots {
        let Some(s) = live.as_ref().and_then(|l| l.primary()) else {
            continue;
        };
        let sym = escape(symbol);
        let (ratio, psi, rows) = {
            let w = s.drift.lock().unwrap_or_else(PoisonError::into_inner);
            (w.ratio(), w.psi(&s.schema.reference), w.len())
        };
        let _ = writeln!(
            out,
            "model_info{{symbol=\"{sym}\",name=\"{}\",version=\"{}\"}} 1",
            escape(&s.info.name),
            s.info.version
        );
        let _ = writeln!(
            out,
            "data_drift_ratio{{symbol=\"{sym}\"}} {}",
            fmt_f64(ratio)
        );
        for (f, v) in s.schema.features.iter().zip(psi) {
            let _ = writeln!(
                out,
                "feature_psi{{symbol=\"{sym}\",feature=\"{}\"}} {}",
                escape(f),
                fmt_f64(v)
            );
        }
        let _ = writeln!(out, "drift_window_rows{{symbol=\"{sym}\"}} {rows}");
    }
    let mut r = out.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// Constant-time comparison of the bearer token.
fn token_matches(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `POST /refresh[?symbol=]`: reload the named symbol's alias, or every symbol's.
async fn refresh(
    State(state): State<Arc<AppState>>,
    query_string: Result<Query<SymbolQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(expected) = state.config.token.as_deref() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "refresh_disabled",
            "POST /refresh is disabled: start the service with --token or RPS_SERVE_TOKEN to enable it",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        None => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing `Authorization: Bearer <token>` header",
            ));
        }
        Some(t) if !token_matches(t, expected) => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "wrong bearer token",
            ));
        }
        Some(_) => {}
    }
    let q = query(query_string)?;
    if q.symbol.is_some() || state.slots.len() == 1 {
        let slot = state.slot(q.symbol.as_deref())?;
        let result = state.refresh_slot(slot).await;
        return refreshed_json(slot, result).map(Json);
    }
    // Every symbol, each swapped on its own: one symbol's failure leaves the others' swaps.
    let results = state.refresh().await;
    let mut symbols = Vec::with_capacity(results.len());
    let mut first_error: Option<ApiError> = None;
    for (slot, result) in state.slots.iter().zip(results) {
        match refreshed_json(slot, result) {
            Ok(v) => symbols.push(v),
            Err(e) => {
                symbols.push(json!({
                    "symbol": slot.symbol,
                    "model": slot.model_name,
                    "status": "failed",
                    "error": { "code": e.code, "message": e.message },
                }));
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        None => {
            let swapped = symbols.iter().any(|v| v["status"] == "swapped");
            Ok(Json(json!({
                "status": if swapped { "swapped" } else { "unchanged" },
                "symbols": symbols,
            })))
        }
        // The first failure's status, every symbol's outcome beside it.
        Some(e) => {
            let failed: Vec<String> = symbols
                .iter()
                .filter(|v| v["status"] == "failed")
                .map(|v| v["symbol"].as_str().unwrap_or("").to_owned())
                .collect();
            let mut err = e.with("symbols", symbols);
            err.message = format!("refresh failed for {}: {}", failed.join(", "), err.message);
            Err(err)
        }
    }
}

/// One slot's refresh as `/refresh` answers it.
fn refreshed_json(
    slot: &Slot,
    result: Result<Refreshed, LoadError>,
) -> Result<serde_json::Value, ApiError> {
    let name = &slot.model_name;
    match result {
        Ok(Refreshed::Swapped { from, to }) => Ok(
            json!({ "status": "swapped", "symbol": slot.symbol, "model": name, "previous_version": from, "version": to, "live": live_versions(slot) }),
        ),
        Ok(Refreshed::Unchanged { version }) => Ok(
            json!({ "status": "unchanged", "symbol": slot.symbol, "model": name, "version": version, "live": live_versions(slot) }),
        ),
        Err(e) => {
            let mut err = load_error(&e);
            if let Some(cur) = slot.current() {
                err.message = format!(
                    "{}; still serving version {}",
                    err.message, cur.info.version
                );
            }
            Err(err)
        }
    }
}

/// alias → version of a slot's live set.
fn live_versions(slot: &Slot) -> std::collections::BTreeMap<String, u32> {
    slot.live
        .load()
        .as_ref()
        .map_or_else(Default::default, |l| l.versions())
}

/// A slot's live set as `/models` lists it, served alias first.
fn live_json(live: &LiveSet) -> Vec<serde_json::Value> {
    live.models
        .iter()
        .map(|(alias, s)| {
            json!({
                "alias": alias,
                "version": s.info.version,
                "trained_at": s.info.created_at,
                "run_id": s.info.run_id,
                "data_hash": s.info.data_hash,
                "metrics": s.info.metrics,
                "features": s.schema.features.len(),
                "pooled": s.schema.is_pooled(),
                "symbols": s.schema.symbols,
                "loaded_at": s.loaded_at,
                "predictions": s.predictions.load(Ordering::Relaxed),
            })
        })
        .collect()
}

/// `GET /models[?symbol=]`: the live set of each served symbol (`symbols`, in params.yaml's
/// order). With one symbol served, or one named, its `model` and `live` at the top level too.
async fn models(
    State(state): State<Arc<AppState>>,
    query_string: Result<Query<SymbolQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let q = query(query_string)?;
    let named = q.symbol.is_some() || state.slots.len() == 1;
    let chosen: Vec<&Arc<Slot>> = if named {
        vec![state.slot(q.symbol.as_deref())?]
    } else {
        state.slots.iter().collect()
    };
    let symbols: Vec<serde_json::Value> = chosen
        .iter()
        .map(|slot| {
            let live = slot.live.load_full();
            json!({
                "symbol": slot.label(),
                "model": slot.model_name,
                "signal_model": slot.signal_model_name,
                "ready": live.is_some(),
                "live": live.as_deref().map(live_json).unwrap_or_default(),
            })
        })
        .collect();
    let mut body = json!({
        "served_alias": state.config.alias,
        "per_symbol": state.per_symbol,
        "symbols": symbols,
    });
    if named {
        let slot = chosen[0];
        let live = slot
            .live
            .load_full()
            .ok_or_else(|| not_ready(&state, slot))?;
        body["model"] = json!(slot.model_name);
        body["symbol"] = json!(slot.symbol);
        body["live"] = json!(live_json(&live));
    }
    Ok(Json(body))
}

/// Per-version families, each labelled with the symbol: `model_version_info{symbol,alias,version}`
/// (one per live alias), `model_version_predictions_total{symbol,version}`, the
/// `model_version_prediction_latency_seconds{symbol,version}` summary (one per loaded version:
/// the live set and the `?model=` cache) and the `model_interval_width{symbol,version}`
/// histogram (one per loaded version with quantiles).
fn write_version_metrics(out: &mut String, slots: &[(String, &Slot, Option<Arc<LiveSet>>)]) {
    let _ = writeln!(
        out,
        "# HELP model_version_info The live set: which version each live alias serves (value 1).\n# TYPE model_version_info gauge"
    );
    let mut loaded: Vec<(String, Vec<Arc<Served>>)> = Vec::with_capacity(slots.len());
    for (symbol, slot, live) in slots {
        let sym = escape(symbol);
        let mut these: Vec<Arc<Served>> = Vec::new();
        if let Some(l) = live {
            for (alias, s) in &l.models {
                let _ = writeln!(
                    out,
                    "model_version_info{{symbol=\"{sym}\",alias=\"{}\",version=\"{}\"}} 1",
                    escape(alias),
                    s.info.version
                );
                if !these.iter().any(|x| x.info.version == s.info.version) {
                    these.push(s.clone());
                }
            }
        }
        for s in slot
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            if !these.iter().any(|x| x.info.version == s.info.version) {
                these.push(s.clone());
            }
        }
        these.sort_by_key(|s| s.info.version);
        loaded.push((sym, these));
    }
    let _ = writeln!(
        out,
        "# HELP model_version_predictions_total Rows predicted, by model version.\n# TYPE model_version_predictions_total counter"
    );
    for (sym, these) in &loaded {
        for s in these {
            let _ = writeln!(
                out,
                "model_version_predictions_total{{symbol=\"{sym}\",version=\"{}\"}} {}",
                s.info.version,
                s.predictions.load(Ordering::Relaxed)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP model_version_prediction_latency_seconds Time to validate and predict one /predict request, by model version.\n# TYPE model_version_prediction_latency_seconds summary"
    );
    for (sym, these) in &loaded {
        for s in these {
            let _ = writeln!(
                out,
                "model_version_prediction_latency_seconds_sum{{symbol=\"{sym}\",version=\"{v}\"}} {}\nmodel_version_prediction_latency_seconds_count{{symbol=\"{sym}\",version=\"{v}\"}} {}",
                fmt_f64(s.latency_sum.get()),
                s.latency_count.load(Ordering::Relaxed),
                v = s.info.version,
            );
        }
    }
    crate::metrics::write_histogram_header(
        out,
        "model_interval_width",
        "Width (upper - lower) of the 80 % interval of each row a volatility model with quantiles predicted by /predict or /forecast, in hourly volatility (fraction), by model version.",
    );
    for (sym, these) in &loaded {
        for s in these.iter().filter(|s| s.model.meta().quantiles.is_some()) {
            s.interval_width.write_series(
                out,
                "model_interval_width",
                &format!("symbol=\"{sym}\",version=\"{}\"", s.info.version),
            );
        }
    }
}

/// The dashboard page (self-contained: no external scripts, styles or fonts).
const DASHBOARD_HTML: &str = include_str!("dashboard.html");

async fn dashboard() -> Response {
    let mut r = DASHBOARD_HTML.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    symbol: Option<String>,
    hours: Option<u32>,
}

/// `GET /api/history?symbol=BTC-USD&hours=168`.
async fn history(
    State(state): State<Arc<AppState>>,
    query_string: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<crate::history::History>, ApiError> {
    let q = query(query_string)?;
    let slot = state.slot(q.symbol.as_deref())?;
    let Some(url) = state.config.database_url.as_deref() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_database",
            "no stream data is configured: start rps-serve with --database-url (DATABASE_URL) \
             pointing at the PostgreSQL that `rps stream` writes",
        ));
    };
    let hours = q.hours.unwrap_or(168);
    if hours == 0 || hours > crate::history::MAX_HOURS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!(
                "hours must be 1 to {} (got {hours})",
                crate::history::MAX_HOURS
            ),
        ));
    }
    let symbol = chart_symbol(&state, slot, q.symbol);
    let models = [slot.model_name.clone(), slot.signal_model_name.clone()];
    crate::history::read(
        url,
        &models,
        &symbol,
        hours,
        state.config.realized_estimator,
    )
    .await
    .map(Json)
    .map_err(|e| {
        tracing::warn!(error = %e, "history query failed");
        ApiError::new(StatusCode::BAD_GATEWAY, "database_error", e.to_string())
    })
}
