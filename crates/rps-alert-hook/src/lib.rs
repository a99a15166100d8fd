//! `rps alert-hook`: the retraining loop's receiver. Alertmanager POSTs its webhook
//! notifications here; for each firing alert labelled `action=retrain` (the online accuracy
//! alerts of `monitoring/rules/rps-accuracy.yml`) this creates a run of the training DAG through
//! Airflow 3's REST API. Resolved alerts are logged only.
//!
//! - Idempotent: the run id is derived from the alert's fingerprint and `startsAt`, so
//!   Alertmanager's repeat notifications of one firing hit Airflow's 409 (already triggered).
//! - Bounded: at most one new run per `retrain.cooldown_minutes` (params.yaml), so a flapping
//!   alert or several alerts on one degradation do not queue a run each.
//! - Retried: Airflow unreachable → 503, and Alertmanager sends the notification again.
//!
//! Airflow's URL and DAG id are flags; its credentials come from the environment
//! (`RPS_AIRFLOW_USERNAME`, `RPS_AIRFLOW_PASSWORD`), never from files in the repository.

pub mod airflow;
pub mod alertmanager;
pub mod server;

use rps_cli::{CommonArgs, StageError, exit};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The training DAG of `dags/crypto_volatility_pipeline.py` (`PIPELINE_DAG_ID`).
pub const DEFAULT_DAG_ID: &str = "crypto_volatility_pipeline";

/// Receive Alertmanager webhooks and create a training DAG run for each retrain alert.
#[derive(Debug, clap::Args)]
#[command(after_help = exit::HELP)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address to listen on (Alertmanager's webhook_configs url: http://ADDR/alerts).
    #[arg(long, env = "RPS_ALERT_HOOK_BIND", default_value = "127.0.0.1:9095")]
    pub bind: SocketAddr,
    /// Base URL of Airflow 3's API server, e.g. http://airflow-api-server:8080.
    #[arg(long, env = "RPS_AIRFLOW_URL")]
    pub airflow_url: String,
    /// The DAG a retrain alert runs.
    #[arg(long, env = "RPS_AIRFLOW_DAG_ID", default_value = DEFAULT_DAG_ID)]
    pub dag_id: String,
    /// Airflow user the runs are created as (POST /auth/token).
    #[arg(long, env = "RPS_AIRFLOW_USERNAME")]
    pub airflow_username: String,
    /// Its password: give it through the environment, not on the command line.
    #[arg(long, env = "RPS_AIRFLOW_PASSWORD", hide_env_values = true)]
    pub airflow_password: String,
    /// Bound on each call to Airflow, in seconds.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub airflow_timeout: u64,
    /// Largest webhook body accepted, in bytes (413 above).
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    pub body_limit: usize,
    /// Deadline for a request's headers and for its body, in seconds.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub read_timeout: u64,
    /// Connections served at once.
    #[arg(long, default_value_t = 64)]
    pub max_connections: usize,
}

/// Why `rps alert-hook` stopped.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error(transparent)]
    Params(#[from] rps_cli::ParamsError),
    #[error("invalid setting: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start: {0}")]
    Runtime(std::io::Error),
}

impl StageError for HookError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Params(_) | Self::Config(_) | Self::Bind { .. } => exit::CONFIG,
            Self::Runtime(_) => exit::INTERNAL,
        }
    }
}

/// Run the receiver until SIGINT / SIGTERM.
pub fn run(args: &Args) -> Result<(), HookError> {
    // retrain: is the same for every symbol: no --symbol needed.
    let set = args.common.load_param_set()?;
    let params = set.shared();
    let url = args.airflow_url.trim();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(HookError::Config(format!(
            "--airflow-url {url:?}: expected an http:// or https:// URL"
        )));
    }
    if args.airflow_username.is_empty() || args.airflow_password.is_empty() {
        return Err(HookError::Config(
            "RPS_AIRFLOW_USERNAME and RPS_AIRFLOW_PASSWORD must not be empty".to_owned(),
        ));
    }
    if args.dag_id.is_empty()
        || !args
            .dag_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        return Err(HookError::Config(format!(
            "--dag-id {:?}: not a DAG id",
            args.dag_id
        )));
    }
    if args.airflow_timeout == 0
        || args.read_timeout == 0
        || args.max_connections == 0
        || args.body_limit == 0
    {
        return Err(HookError::Config(
            "--airflow-timeout, --read-timeout, --max-connections and --body-limit must be positive".to_owned(),
        ));
    }
    let airflow = airflow::Airflow::new(airflow::AirflowConfig {
        url: url.to_owned(),
        dag_id: args.dag_id.clone(),
        username: args.airflow_username.clone(),
        password: args.airflow_password.clone(),
        timeout: Duration::from_secs(args.airflow_timeout),
    })
    .map_err(|e| HookError::Config(format!("HTTP client: {e}")))?;
    let read_timeout = Duration::from_secs(args.read_timeout);
    let limits = server::Limits {
        body_limit: args.body_limit,
        read_timeout,
        connection_lifetime: Duration::from_secs(300),
        max_connections: args.max_connections,
    };
    let cooldown = Duration::from_secs(params.retrain.cooldown_minutes.saturating_mul(60));
    let hook = Arc::new(server::Hook::new(airflow, cooldown, limits));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(HookError::Runtime)?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.bind)
            .await
            .map_err(|source| HookError::Bind {
                addr: args.bind,
                source,
            })?;
        let local = listener.local_addr().map_err(HookError::Runtime)?;
        tracing::info!(addr = %local, airflow = url, dag_id = %args.dag_id,
            cooldown_minutes = params.retrain.cooldown_minutes, "rps alert-hook listening");
        server::serve(hook, listener, shutdown_signal()).await;
        tracing::info!("rps alert-hook stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
