//! Shared helpers: fixtures, env lookups for the real servers, a tiny_http stub.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rps_mlflow::{Auth, MlflowClient, MlflowConfig, RetryPolicy};

pub const FEATURES: [&str; 3] = ["rv_lag_1", "ret_abs_1", "hl_range"];

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The tiny XGBoost 3.2 JSON model (3 features, 2 trees) in tests/fixtures.
pub fn tiny_model_json() -> Vec<u8> {
    let path = fixture_path("xgb_tiny.json");
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

pub fn features() -> Vec<String> {
    FEATURES.iter().map(|s| (*s).to_owned()).collect()
}

const HOW_TO_START: &str = "start the servers first: \
    eval \"$(bash crates/rps-mlflow/tests/servers.sh start $VENV/bin/python target/mlflow-test)\" \
    (VENV with tests/python/requirements-mlflow.txt installed), then \
    cargo test -p rps-mlflow -- --include-ignored";

/// A variable exported by tests/servers.sh; panics with instructions when missing.
pub fn server_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!("{name} is not set: this test needs a real MLflow server; {HOW_TO_START}"),
    }
}

pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    }
}

pub fn client_for(uri: &str, auth: Auth) -> MlflowClient {
    let config = MlflowConfig::new(uri)
        .unwrap_or_else(|e| panic!("bad uri {uri}: {e}"))
        .with_auth(auth)
        .with_retry(fast_retry());
    MlflowClient::new(config).unwrap_or_else(|e| panic!("client: {e}"))
}

/// The plain server of tests/servers.sh.
pub fn plain_client() -> MlflowClient {
    client_for(&server_env("RPS_TEST_MLFLOW_URI"), Auth::None)
}

/// A name unique to this test process and call.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// What the stub saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub url: String,
    pub body: String,
    pub authorization: Option<String>,
}

type Handler = dyn Fn(&Seen) -> (u16, String) + Send + Sync;

/// A tiny_http server on a free loopback port answering with `handler`; stops when dropped.
pub struct Stub {
    pub uri: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Stub {
    pub fn start(handler: impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static) -> Self {
        let server = tiny_http::Server::http("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("cannot bind the stub: {e}"));
        let port = server
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .unwrap_or_else(|| panic!("stub has no IP address"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Box<Handler> = Box::new(handler);
        let (seen2, stop2) = (Arc::clone(&seen), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let Ok(Some(mut req)) = server.recv_timeout(Duration::from_millis(50)) else {
                    continue;
                };
                let mut body = String::new();
                let _ = req.as_reader().read_to_string(&mut body);
                let s = Seen {
                    method: req.method().to_string(),
                    url: req.url().to_owned(),
                    body,
                    authorization: req
                        .headers()
                        .iter()
                        .find(|h| h.field.equiv("Authorization"))
                        .map(|h| h.value.to_string()),
                };
                let (status, text) = handler(&s);
                if let Ok(mut v) = seen2.lock() {
                    v.push(s);
                }
                let header =
                    tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..])
                        .unwrap_or_else(|()| panic!("header"));
                let resp = tiny_http::Response::from_string(text)
                    .with_status_code(status)
                    .with_header(header);
                let _ = req.respond(resp);
            }
        });
        Self {
            uri: format!("http://127.0.0.1:{port}"),
            seen,
            stop,
            thread: Some(thread),
        }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
