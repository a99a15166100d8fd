//! `rps-serve`: the RPS prediction service. It serves the registry's live set — the `champion`
//! volatility model, with `challenger` and `baseline` side by side — over HTTP (axum on tokio)
//! and swaps in a new set without downtime. With several symbols in params.yaml
//! (`data.symbols`) it serves each symbol's own models, chosen by a request's `symbol` and
//! swapped per symbol (module `slots`, [`AppState::slot`]).
//!
//! # Endpoints
//!
//! | route | what |
//! | --- | --- |
//! | `POST /predict[?model=<alias\|version>]` | one row — `{"features": {"ret_1b_pct": 0.1, …}}` (by name, canonical) or `{"features": [0.1, …]}` (schema order) — answered `{"model", "version", "task", "prediction"}`; or a batch `{"instances": [{…}, …]}` answered `{"model", "version", "task", "predictions": […]}`. A volatility prediction is a number, a signal model's `{"signal", "probabilities"}`. `?model=` queries another alias or version side by side (loaded on demand, cached). |
//! | `GET /health` | liveness: 200 while the process runs |
//! | `GET /ready` | 200 once a model is loaded, 503 before |
//! | `POST /forecast[?model=…]` | the next bar's volatility from candles (`{"candles": [{"time", "open", "high", "low", "close", "volume"}, …]}`), through the model's own feature spec; `{}` forecasts from the newest stored candles (`--database-url`, else the raw dataset of `--home`), 409 when they stopped, 422 for a gap (module [`forecast`]) |
//! | `GET /model[?model=…]` | name, version, trained-at, metrics, features, the full feature schema, `history_bars` (candles one forecast needs) and `feature_spec` |
//! | `GET /metrics` | Prometheus text: `http_requests_total{method,path,status}`, `prediction_latency_seconds`, `model_prediction_value`, `data_drift_ratio{symbol}`, `feature_psi{symbol,feature}`, `model_info{symbol,name,version}`, `model_last_reload_timestamp_seconds`, `process_start_time_seconds`, `model_reloads_total{result}`, … and with `--database-url` the online accuracy `rps_score_*` and its thresholds `rps_accuracy_*` (module [`scores`]) |
//! | `GET /models` | the live set: every live alias (`champion`, `challenger`, `baseline`) with its version, metrics and rows served |
//! | `GET /dashboard` | a self-contained HTML page (inline JS + SVG): the live models, and with `--database-url` price, realized vs predicted volatility and signals per version |
//! | `GET /api/history?symbol=&hours=` | the dashboard's data from the stream's PostgreSQL tables (module [`history`]) |
//! | `GET /api/scores?symbol=&hours=&window=` | the online accuracy as time series: the rolling 24 h (`window=24h`) or 7-day (`7d`) mean QLIKE of every scored (model, version), the champion's rolling 7-day 80 % coverage, and the `monitor:` thresholds |
//! | `POST /refresh` | `Authorization: Bearer <token>`: reload the alias from the registry and swap atomically (403 when no token is configured, 401 for a missing or wrong one) |
//!
//! Every error is JSON: `{"error": {"code": "missing_feature", "message": "`features`: missing feature `har_24b`"}}`
//! — 415 wrong content type, 400 malformed JSON, 422 unknown / missing / non-finite / non-numeric
//! features or wrong length, 413 oversized body or batch, 408 a body that does not arrive within
//! `--body-timeout`, 414 / 431 an oversized request target or headers, 503 not ready or timed out.
//!
//! # Design
//! - **Hot swap**: the live set sits in an [`arc_swap::ArcSwapOption`]; each request clones the
//!   model's `Arc` once, so in-flight requests finish on the model they started with. A candidate is
//!   loaded and checked (schema vs model features, reference statistics, feature list unchanged
//!   unless `--allow-schema-change`, finite forecast on the reference medians) before the swap,
//!   so a bad model is refused and the old set keeps serving (all or nothing).
//! - **Drift**: every predicted row goes into a ring of the last `--drift-window` rows; the share
//!   of values outside the reference range ([`rps_core::stats::ColumnStats::is_out_of_range`]) is
//!   kept incrementally, and PSI per feature ([`rps_core::stats::ColumnStats::psi`]) is computed
//!   when `/metrics` is scraped.
//! - **Metrics** are written by hand (module `metrics`): eight families on atomics need no
//!   registry crate, and we control label escaping, bucket bounds (50 µs … 1 s) and the route
//!   template as the `path` label (`unmatched` for unknown paths), which bounds cardinality.
//! - **Limits**: body size (`--body-limit`), batch size (`--max-batch`), a per-request timeout,
//!   panics caught into a 500 JSON answer, and graceful shutdown on SIGTERM / SIGINT that lets
//!   in-flight requests finish.
//! - **Connections** (module `listen`, our accept loop over hyper instead of `axum::serve`): a
//!   header-read timeout, an idle keep-alive timeout, a body timeout (408), and a connection cap
//!   that fits the open-file limit; at the cap the oldest connection still waiting for a request
//!   head (or idle) is shed, so slow or silent clients cannot starve `/health` and `/predict`.

mod body;
mod config;
mod conns;
mod drift;
mod error;
mod fdlimit;
pub mod forecast;
pub mod history;
mod input;
mod listen;
mod metrics;
mod routes;
pub mod scores;
mod scores_api;
mod slots;
mod state;
pub mod stored;

pub use config::{Config, LogFormat, RealizedEstimator, parse_bytes, parse_duration};
pub use error::{ApiError, ServeError};
pub use state::{AppState, LiveSet, LoadError, Refreshed, Served, Slot, SlotError};

use rps_tracking::LocalRegistry;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

/// Set up logging (level from `RUST_LOG`, default `info`): the stages' subscriber
/// ([`rps_cli::init_tracing`]), colours only on a terminal without `NO_COLOR`.
pub fn init_tracing(format: LogFormat) {
    rps_cli::init_tracing(format, "info", rps_cli::ColorChoice::Auto);
}

/// The registry the champion comes from: MLflow's when `MLFLOW_TRACKING_URI` is set (the same
/// variables as the stages; a server without a registry falls back to `local`), else `local`.
fn open_registry(local: LocalRegistry) -> Result<Arc<dyn rps_tracking::Registry>, ServeError> {
    let mlflow = |e: rps_mlflow::MlflowError| ServeError::Config(format!("MLflow: {e}"));
    match rps_mlflow::MlflowConfig::from_env().map_err(mlflow)? {
        Some(cfg) => {
            let client = rps_mlflow::MlflowClient::new(cfg)
                .map_err(mlflow)?
                .with_artifact_backend(Box::new(rps_tracking::S3Artifacts));
            Ok(Arc::new(rps_tracking::MlflowRegistry::new(
                Arc::new(client),
                local,
            )))
        }
        None => Ok(Arc::new(local)),
    }
}

/// Open the registry and load every slot's model; fails with [`ServeError::NoModel`] unless
/// `--wait-for-model`.
async fn prepare(mut config: Config) -> Result<Arc<AppState>, ServeError> {
    let (slots, per_symbol) = slots::resolve(&mut config)?;
    if config.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
        return Err(ServeError::Config(
            "the refresh token is empty; unset RPS_SERVE_TOKEN / --token to disable /refresh"
                .to_owned(),
        ));
    }
    if config.drift_window == 0 || config.max_batch == 0 {
        return Err(ServeError::Config(
            "--drift-window and --max-batch must be at least 1".to_owned(),
        ));
    }
    let store = rps_store::open(&config.registry).map_err(|source| ServeError::Registry {
        uri: config.registry.clone(),
        source,
    })?;
    let registry = open_registry(LocalRegistry::new(store))?;
    let state = Arc::new(AppState::with_slots(config, registry, slots, per_symbol));
    let results = state.refresh().await;
    for (slot, result) in state.slots.iter().zip(results) {
        let symbol = slot.symbol.as_deref().unwrap_or("");
        match result {
            Ok(r) => {
                tracing::info!(result = ?r, model = %slot.model_name, symbol, registry = %state.registry_describe(), "model loaded");
            }
            Err(e) if state.config.wait_for_model => {
                tracing::warn!(error = %e, model = %slot.model_name, symbol, "no model loaded yet; /ready answers 503 until a refresh succeeds");
            }
            Err(e) => {
                let of = slot
                    .symbol
                    .as_deref()
                    .map_or_else(String::new, |s| format!(", symbol {s:?}"));
                return Err(ServeError::NoModel(format!(
                    "{e} (registry {}, model {:?}{of}, alias {:?})",
                    state.config.registry, slot.model_name, state.config.alias
                )));
            }
        }
    }
    Ok(state)
}

impl AppState {
    fn registry_describe(&self) -> String {
        self.registry.describe()
    }
}

async fn bind(addr: &str) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: addr.to_owned(),
            source,
        })
}

/// Serve until `shutdown` completes, then drain in-flight requests.
async fn serve(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let poller = state.config.poll_interval.map(|every| {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let _ = state.refresh().await;
            }
        })
    });
    let scorer = scores::spawn(state.clone());
    let c = &state.config;
    let soft = fdlimit::soft_limit();
    let limits = conns::Limits {
        header_timeout: c.header_timeout,
        idle_timeout: c.idle_timeout,
        max_connections: fdlimit::connection_cap(c.max_connections, soft),
    };
    if limits.max_connections < c.max_connections {
        tracing::info!(
            max_connections = limits.max_connections,
            open_file_limit = soft,
            "--max-connections lowered to fit the open-file limit"
        );
    }
    let registry = Arc::new(conns::Registry::new(limits));
    let app = routes::router(state.clone());
    listen::serve(state, listener, app, registry, shutdown).await;
    for task in [poller, scorer].into_iter().flatten() {
        task.abort();
    }
    tracing::info!("shut down");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, draining"),
        () = term => tracing::info!("SIGTERM received, draining"),
    }
}

fn runtime(workers: Option<usize>) -> Result<tokio::runtime::Runtime, ServeError> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all().thread_name("rps-serve");
    if let Some(n) = workers {
        if n == 0 {
            return Err(ServeError::Config(
                "--workers must be at least 1".to_owned(),
            ));
        }
        b.worker_threads(n);
    }
    Ok(b.build()?)
}

/// Run the service until SIGTERM / SIGINT. Blocks the calling thread.
pub fn run(config: Config) -> Result<(), ServeError> {
    // Every connection is a descriptor: use all the hard limit allows (the connection cap is
    // derived from it).
    fdlimit::raise_to_hard();
    let rt = runtime(config.workers)?;
    rt.block_on(async move {
        let state = prepare(config).await?;
        let listener = bind(&state.config.bind).await?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "listening");
        serve(state, listener, shutdown_signal()).await
    })
}

/// A service running on a background thread (for tests and embedding).
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    state: Arc<AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ServeError>>>,
}

impl Server {
    /// Start the service (bind `config.bind`, port 0 allowed) and return once it listens.
    pub fn spawn(config: Config) -> Result<Self, ServeError> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("rps-serve-main".to_owned())
            .spawn(move || {
                let rt = match runtime(config.workers) {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return Ok(());
                    }
                };
                rt.block_on(async move {
                    let started = async {
                        let state = prepare(config).await?;
                        let listener = bind(&state.config.bind).await?;
                        let addr = listener.local_addr()?;
                        Ok::<_, ServeError>((state, listener, addr))
                    }
                    .await;
                    match started {
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            Ok(())
                        }
                        Ok((state, listener, addr)) => {
                            let _ = ready_tx.send(Ok((addr, state.clone())));
                            serve(state, listener, async move {
                                let _ = stop_rx.await;
                            })
                            .await
                        }
                    }
                })
            })?;
        match ready_rx.recv() {
            Ok(Ok((addr, state))) => Ok(Self {
                addr,
                state,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(ServeError::Config(
                "the server thread ended before listening".to_owned(),
            )),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Begin a graceful shutdown (stop accepting, drain in-flight requests).
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Shut down gracefully and wait for the server to finish.
    pub fn shutdown(mut self) -> Result<(), ServeError> {
        self.begin_shutdown();
        self.thread.take().map_or(Ok(()), |t| {
            t.join().unwrap_or_else(|_| {
                Err(ServeError::Config("the server thread panicked".to_owned()))
            })
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.begin_shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
