//! Command-line flags and environment variables.

use clap::Parser;
use std::time::Duration;

const AFTER_HELP: &str = "\
EXAMPLES:
  # Serve the champion of the default registry on localhost:8080
  rps-serve

  # Another registry and address, with /refresh enabled and polling every minute
  RPS_SERVE_TOKEN=s3cret rps-serve --registry /data/registry --bind 0.0.0.0:9000 --poll-interval 60s

  # Every symbol of params.yaml (data.symbols), each with its own models
  rps-serve --params params.yaml
  curl -s 'localhost:8080/models'             # the live versions, per symbol
  curl -s 'localhost:8080/model?symbol=ETH-USD'

  # Ask for a prediction (features by name; see GET /model for the list)
  curl -s localhost:8080/predict -H 'content-type: application/json' \\
       -d '{\"features\": {\"ret_1b_pct\": 0.1, \"har_24b\": -5.1, ...}}'

ENDPOINTS (with several symbols served, each takes ?symbol=<symbol>, or a `symbol` field in a
POST body; /models, /ready and /refresh without it cover every symbol):
  POST /predict[?model=<alias|version>]  one row ({\"features\": {...}} or {\"features\": [...]})
                                         or a batch ({\"instances\": [{...}, ...]})
  POST /forecast[?model=...]  the next bar's volatility from candles ({\"candles\": [...]}), or
                              from the newest stored ones ({} : --database-url, else --home)
  GET  /health   liveness            GET /ready    200 once a model is loaded, else 503
  GET  /model    served model        GET /metrics  Prometheus text exposition
  GET  /models   the live set (champion, challenger, baseline: alias, version, metrics)
  GET  /dashboard  HTML page: price, realized vs predicted volatility, signals per version,
                   forecast accuracy (?symbol=&hours=&panel=accuracy for that panel alone)
  GET  /api/history?symbol=BTC-USD&hours=168  the dashboard's data (needs --database-url)
  GET  /api/scores?symbol=BTC-USD&hours=168&window=24h   rolling 24 h (or 7d) QLIKE per
                   version, the champion's 7-day 80 % coverage (needs --database-url)
  POST /refresh  reload the alias from the registry (Authorization: Bearer <token>)

EXIT CODES (the table every rps command shares):
  0  clean shutdown (SIGTERM / SIGINT, in-flight requests drained)
  1  unexpected runtime error (a bug)
  2  usage error (unknown flag, bad value)
  3  bad configuration: an empty token, a bad registry URI, a --bind address that cannot be
     bound (in use, no permission)
  4  no model could be loaded at startup (nothing trained or promoted yet; see --wait-for-model)
  6  the registry's server (MLflow, S3) failed after retries
  7  the registry's storage failed";

/// The model served without --model-name or --params.
pub const DEFAULT_MODEL_NAME: &str = "btc-volatility";
/// The signal model the dashboard shows without --signal-model-name or --params.
pub const DEFAULT_SIGNAL_MODEL_NAME: &str = "btc-signal";

/// Log output format: the stages' ([`rps_cli::LogFormat`]).
pub use rps_cli::LogFormat;

/// Serve the RPS volatility model (the registry's `champion`) over HTTP.
///
/// Loads the model version the alias points to, answers predictions, exposes drift and request
/// metrics for Prometheus, and swaps in a new champion without downtime on `POST /refresh` or
/// on a polling interval. Every flag can also be set by the environment variable shown.
#[derive(Debug, Clone, Parser)]
#[command(name = "rps-serve", version, about, long_about, after_long_help = AFTER_HELP, after_help = "See --help for examples, endpoints and EXIT CODES.")]
pub struct Config {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "RPS_SERVE_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,

    /// Model registry: a folder, file:// or s3:// URI as written by `rps train` / `rps evaluate`.
    /// With MLFLOW_TRACKING_URI set (and MLFLOW_TRACKING_USERNAME/PASSWORD or _TOKEN), the
    /// champion comes from MLflow's model registry instead; this folder is then only the
    /// fallback for servers without a registry (DagHub).
    #[arg(long, env = "RPS_REGISTRY", default_value = ".rps/registry")]
    pub registry: String,

    /// Registered model name to serve. Default: params.yaml's `train.model_name` (--params)
    /// when it lists one symbol, else `btc-volatility`. With several symbols in --params each
    /// symbol's own name is served, and this flag is refused (exit 3).
    #[arg(long, env = "RPS_MODEL_NAME")]
    pub model_name: Option<String>,

    /// Serve only these of params.yaml's `data.symbols` (comma-separated or repeated; needs
    /// --params). Default: every symbol it lists, each with its own registered models, hot
    /// swapped on its own; a request names its symbol (`?symbol=` or a `symbol` field).
    #[arg(
        long = "symbol",
        env = "RPS_SERVE_SYMBOLS",
        value_delimiter = ',',
        value_name = "SYMBOL"
    )]
    pub symbols: Vec<String>,

    /// Alias (or version number) to serve and to follow on refresh.
    #[arg(long, env = "RPS_SERVE_ALIAS", default_value = "champion")]
    pub alias: String,

    /// Bearer token that POST /refresh requires. Without one, /refresh answers 403.
    #[arg(long, env = "RPS_SERVE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Largest accepted request body, in bytes (suffixes KiB, MiB, KB, MB accepted).
    #[arg(long, env = "RPS_SERVE_BODY_LIMIT", default_value = "1MiB", value_parser = parse_bytes)]
    pub body_limit: usize,

    /// Most rows accepted in one `instances` batch.
    #[arg(long, env = "RPS_SERVE_MAX_BATCH", default_value_t = 1024)]
    pub max_batch: usize,

    /// Worker threads of the async runtime (default: one per CPU).
    #[arg(long, env = "RPS_SERVE_WORKERS")]
    pub workers: Option<usize>,

    /// Time limit of one request (e.g. 500ms, 10s, 1m); answered 503 `timeout` past it.
    #[arg(long, env = "RPS_SERVE_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Longest a client may take to send a complete request head (request line and headers),
    /// counted from connect, or on a kept-alive connection from its first byte; the connection
    /// is closed past it (slow-header clients).
    #[arg(long, env = "RPS_SERVE_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// Longest a kept-alive connection may sit idle between requests (or unread after its
    /// response) before it is closed.
    #[arg(long, env = "RPS_SERVE_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Longest a client may take to send a request body, counted from the end of its head;
    /// answered 408 `body_timeout` past it (a body shorter than its Content-Length).
    #[arg(long, env = "RPS_SERVE_BODY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub body_timeout: Duration,

    /// Most open client connections. Capped at the open-file limit minus 64 (the soft limit is
    /// raised to the hard one at start). At the cap a new connection sheds the oldest one still
    /// waiting for a request head or idle between requests, so a real client always gets in;
    /// when every connection is busy with a request the new one is closed.
    #[arg(long, env = "RPS_SERVE_MAX_CONNECTIONS", default_value_t = 2048)]
    pub max_connections: usize,

    /// Rows in the sliding window behind `data_drift_ratio` and `feature_psi`.
    #[arg(long, env = "RPS_SERVE_DRIFT_WINDOW", default_value_t = 1000)]
    pub drift_window: usize,

    /// Check the registry alias this often and swap when it moved (e.g. 60s); off by default.
    #[arg(long, env = "RPS_SERVE_POLL_INTERVAL", value_parser = parse_duration)]
    pub poll_interval: Option<Duration>,

    /// Start even when no model can be loaded (/ready answers 503 until a refresh succeeds).
    #[arg(long, env = "RPS_SERVE_WAIT_FOR_MODEL")]
    pub wait_for_model: bool,

    /// Accept a new model whose feature list differs from the served one (clients must change).
    #[arg(long, env = "RPS_SERVE_ALLOW_SCHEMA_CHANGE")]
    pub allow_schema_change: bool,

    /// Most non-alias versions kept loaded for `?model=` queries.
    #[arg(long, env = "RPS_SERVE_MODEL_CACHE", default_value_t = 4)]
    pub model_cache: usize,

    /// The other live aliases served side by side with --alias (those that exist in the
    /// registry): loaded at start and on every refresh, all or nothing.
    #[arg(
        long,
        env = "RPS_SERVE_LIVE_ALIASES",
        value_delimiter = ',',
        default_value = "champion,challenger,baseline"
    )]
    pub live_aliases: Vec<String>,

    /// PostgreSQL with the stream's `candles` and `predictions` tables (what `rps stream
    /// --database-url` writes), e.g. postgres://user:pass@host/rps. Behind GET /api/history and
    /// the charts of GET /dashboard; without it the dashboard lists the live models only.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// The home folder (`rps extract`'s `--home`) whose raw dataset, `<home>/data/raw/<symbol>`,
    /// `POST /forecast` without `candles` reads when there is no --database-url. Default: the
    /// folder holding --registry when that is named `registry` (`<home>/registry`).
    #[arg(long, env = "RPS_HOME")]
    pub home: Option<String>,

    /// How long ago the newest stored candle may have closed for `POST /forecast` without
    /// `candles` to forecast from it (e.g. 90m); older is a 409 `stale_history`. Default: one
    /// bar of the model (the forecast bar has not ended yet).
    #[arg(long, env = "RPS_SERVE_FORECAST_MAX_AGE", value_parser = parse_duration)]
    pub forecast_max_age: Option<Duration>,

    /// Time limit for reading the stored candles of one forecast (PostgreSQL or the raw
    /// dataset); answered 503 `history_timeout` past it.
    #[arg(long, env = "RPS_SERVE_STORE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub store_timeout: Duration,

    /// The Buy/Hold/Sell model whose streamed signals the dashboard shows beside the served
    /// model's forecasts. Default: params.yaml's `train.signal_model_name` (each symbol's, with
    /// several), else `btc-signal`. To serve it, run another rps-serve with --model-name set
    /// to it.
    #[arg(long, env = "RPS_SIGNAL_MODEL_NAME")]
    pub signal_model_name: Option<String>,

    /// The bar-volatility estimator the dashboard's "realized" line uses: the one the models
    /// forecast, params.yaml's `target.estimator` (parkinson or garman_klass; `realized` needs
    /// sub-bars the stream does not keep).
    #[arg(long, env = "RPS_REALIZED_ESTIMATOR", value_enum, default_value_t = RealizedEstimator::GarmanKlass)]
    pub realized_estimator: RealizedEstimator,

    /// params.yaml (validated whole, as the stages read it): the symbols and their registered
    /// model names (`data.symbols`, `train.model_name`, `train.signal_model_name`) and the
    /// `monitor:` section (the online-accuracy thresholds exported as `rps_accuracy_*` and the
    /// scores refresh interval; docs/monitoring.md). Without it, one model (--model-name) is
    /// served for every symbol and the `monitor` defaults apply.
    #[arg(long, env = "RPS_PARAMS")]
    pub params: Option<String>,

    /// The `monitor:` thresholds in effect: params.yaml's (`--params`) once the service starts,
    /// else the defaults. Not a flag; tests and embedders may set it directly.
    #[arg(skip)]
    pub monitor: rps_core::params::MonitorParams,

    /// Log format; the level comes from RUST_LOG (default info).
    #[arg(long, env = "RPS_SERVE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

impl Config {
    /// The defaults with another registry (for tests and embedding).
    pub fn for_registry(registry: &str) -> Self {
        let mut c = Config::parse_from(["rps-serve"]);
        c.registry = registry.to_owned();
        c.token = None;
        c
    }
}

/// `250ms`, `10s`, `5m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 500ms, 10s, 5m, 1h"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        u => {
            return Err(format!(
                "invalid duration unit {u:?} in {s:?}: use ms, s, m or h"
            ));
        }
    };
    if !(secs.is_finite() && secs > 0.0 && secs < 1e9) {
        return Err(format!("duration {s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `65536`, `64KiB`, `1MiB`, `1MB`.
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected e.g. 65536, 64KiB, 1MiB"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1024,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        u => {
            return Err(format!(
                "invalid size unit {u:?} in {s:?}: use B, KB, KiB, MB or MiB"
            ));
        }
    };
    n.checked_mul(mult)
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("size {s:?} must be positive and fit in memory"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_and_durations() {
        assert_eq!(parse_bytes("1MiB"), Ok(1 << 20));
        assert_eq!(parse_bytes("64KiB"), Ok(65536));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert!(parse_bytes("1GB").is_err());
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Config::command().debug_assert();
    }
}

/// How `GET /api/history` computes a bar's realized volatility (see `--realized-estimator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RealizedEstimator {
    /// Parkinson's high-low range ([`rps_core::volatility::parkinson`]).
    Parkinson,
    /// Garman–Klass open-high-low-close ([`rps_core::volatility::garman_klass`]); also
    /// `garman_klass`, as params.yaml's `target.estimator` spells it.
    #[value(alias = "garman_klass")]
    GarmanKlass,
}

impl RealizedEstimator {
    /// The volatility of one bar (a fraction); NaN for a malformed bar.
    pub fn of(self, c: &rps_core::Candle) -> f64 {
        match self {
            Self::Parkinson => rps_core::volatility::parkinson(c.high, c.low),
            Self::GarmanKlass => rps_core::volatility::garman_klass(c),
        }
    }
}
