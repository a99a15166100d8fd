//! Test support: one small model trained once per test binary on synthetic bars, tempdir
//! registries, a running server on 127.0.0.1:0 and an HTTP client.

#![allow(dead_code, clippy::unwrap_used)]

use rps_core::candle::{Candle, HOUR_MS, Interval};
use rps_core::params::{Params, TrainParams};
use rps_core::schema::FeatureSchema;
use rps_core::split::Split;
use rps_core::synthetic::{SyntheticParams, simulate};
use rps_model::{Rows, SignalModel, VolatilityModel};
use rps_serve::{Config, Server};
use rps_tracking::{LocalRegistry, ModelFiles, Registry, VersionInfo};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

pub const NAME: &str = "btc-volatility";
/// The signal model's registered name (`train.signal_model_name`).
pub const SIGNAL_NAME: &str = "btc-signal";
pub const TOKEN: &str = "test-token";

/// The model, its schema and some realistic (all-finite) feature rows from the test split.
pub struct Trained {
    pub model: VolatilityModel,
    /// A Buy/Hold/Sell model on the same rows (`train.task: signal`).
    pub signal: SignalModel,
    pub schema: FeatureSchema,
    pub rows: Vec<Vec<f64>>,
}

pub fn trained() -> &'static Trained {
    static T: OnceLock<Trained> = OnceLock::new();
    T.get_or_init(train)
}

fn train() -> Trained {
    let bars: Vec<Candle> = simulate(&SyntheticParams::default(), Interval::H1, 0, 2000 * HOUR_MS);
    // The same features, target, split and reference statistics as the transform stage.
    let params = Params::default();
    let (ds, schema) = rps_transform::transform(&params, &bars, "synthetic-42").unwrap();
    let frame = &ds.frame;
    let (tr, va, te) = (
        ds.rows(Split::Train),
        ds.rows(Split::Validation),
        ds.rows(Split::Test),
    );
    let ys = |ix: &[usize]| -> Vec<f64> { ix.iter().map(|&i| frame.target[i]).collect() };
    let mut p = TrainParams {
        num_boost_round: 50,
        early_stopping_rounds: 0,
        ..TrainParams::default()
    };
    p.xgboost.insert("eta".to_owned(), json!(0.1));
    let (xt, xv) = (
        Rows::gather(&frame.columns, &tr),
        Rows::gather(&frame.columns, &va),
    );
    let (model, _) = VolatilityModel::train(
        &p,
        &frame.names,
        params.target.floor,
        (&xt, &ys(&tr)),
        (&xv, &ys(&va)),
    )
    .unwrap();
    // The signal task's model: the same feature rows, labels from the closes (one label rule).
    let cols = rps_transform::signal_columns(&params, &bars, &frame.ts).unwrap();
    let labelled = |ix: &[usize]| -> (Rows, Vec<rps_core::signal::Signal>) {
        let (ix, y): (Vec<usize>, Vec<_>) = ix
            .iter()
            .filter_map(|&i| cols.labels[i].map(|l| (i, l)))
            .unzip();
        (Rows::gather(&frame.columns, &ix), y)
    };
    let (st, sv) = (labelled(&tr), labelled(&va));
    let (signal, _) = SignalModel::train(
        &p,
        &params.signal,
        &frame.names,
        (&st.0, &st.1),
        (&sv.0, &sv.1),
    )
    .unwrap();
    let rows: Vec<Vec<f64>> = te
        .iter()
        .map(|&i| frame.row(i))
        .filter(|r| r.iter().all(|v| v.is_finite()))
        .take(200)
        .collect();
    assert!(rows.len() >= 50, "enough finite test rows");
    Trained {
        model,
        signal,
        schema,
        rows,
    }
}

/// A tempdir registry.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub registry: LocalRegistry,
}

impl Fixture {
    /// An empty registry.
    pub fn empty() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let registry = LocalRegistry::new(rps_store::open(dir.path().to_str().unwrap()).unwrap());
        Self { dir, registry }
    }

    /// A registry whose champion is version 1.
    pub fn with_champion() -> Self {
        let f = Self::empty();
        let v = f.register();
        f.promote(v);
        f
    }

    pub fn files() -> ModelFiles {
        let t = trained();
        ModelFiles::from_model(&t.model, &t.schema).unwrap()
    }

    /// Register the trained model as a new version.
    pub fn register(&self) -> u32 {
        self.register_files(&Self::files())
    }

    pub fn register_files(&self, files: &ModelFiles) -> u32 {
        self.register_as(NAME, files)
    }

    /// Register the signal model as a new version of [`SIGNAL_NAME`] and make it its champion.
    pub fn register_signal_champion(&self) -> u32 {
        let t = trained();
        let files = ModelFiles::from_signal_model(&t.signal, &t.schema).unwrap();
        let v = self.register_as(SIGNAL_NAME, &files);
        self.registry.set_alias(SIGNAL_NAME, "champion", v).unwrap();
        v
    }

    pub fn register_as(&self, name: &str, files: &ModelFiles) -> u32 {
        let info = VersionInfo {
            name: name.to_owned(),
            version: 0,
            created_at: "2026-01-01T00:00:00Z".to_owned(),
            run_id: "0123456789abcdef0123456789abcdef".to_owned(),
            data_hash: "synthetic-42".to_owned(),
            git_commit: "test".to_owned(),
            // The keys rps-train records.
            metrics: BTreeMap::from([
                ("validation_qlike".to_owned(), 0.123),
                ("validation_rmse".to_owned(), 0.001),
            ]),
        };
        self.registry.register(files, info).unwrap()
    }

    pub fn promote(&self, version: u32) {
        self.registry.set_alias(NAME, "champion", version).unwrap();
    }

    pub fn path(&self) -> String {
        self.dir.path().to_str().unwrap().to_owned()
    }

    /// Config for this registry on 127.0.0.1:0 with the test token.
    pub fn config(&self) -> Config {
        let mut c = Config::for_registry(&self.path());
        c.bind = "127.0.0.1:0".to_owned();
        c.token = Some(TOKEN.to_owned());
        c.workers = Some(2);
        c
    }

    pub fn start(&self) -> Server {
        Server::spawn(self.config()).unwrap()
    }
}

pub fn client() -> reqwest::blocking::Client {
    // A fresh connection per request: after an error answered before the body was read (413),
    // the server closes the connection, and a pooled client racing that close would see
    // `IncompleteMessage` on its next request — a client-side race, not a server failure.
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// Row `i` of the sample as a JSON object by feature name.
pub fn row_object(i: usize) -> Map<String, Value> {
    let t = trained();
    t.schema
        .features
        .iter()
        .zip(&t.rows[i % t.rows.len()])
        .map(|(n, v)| (n.clone(), json!(v)))
        .collect()
}

pub fn row_array(i: usize) -> Vec<f64> {
    let t = trained();
    t.rows[i % t.rows.len()].clone()
}

/// What the model predicts for row `i` locally.
pub fn expected(i: usize) -> f64 {
    #[allow(clippy::cast_possible_truncation)]
    let row: Vec<f32> = row_array(i).iter().map(|v| *v as f32).collect();
    trained().model.predict_one(&row).unwrap()
}

/// POST JSON to `/predict` (with an optional query string).
pub fn predict(
    c: &reqwest::blocking::Client,
    server: &Server,
    query: &str,
    body: &Value,
) -> reqwest::blocking::Response {
    c.post(format!("{}/predict{query}", server.url()))
        .json(body)
        .send()
        .unwrap()
}

/// Assert the response is a JSON error with `status` and `code`; returns the message.
pub fn expect_error(resp: reqwest::blocking::Response, status: u16, code: &str) -> String {
    assert_eq!(resp.status().as_u16(), status, "status");
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(ct.starts_with("application/json"), "content type {ct}");
    let body: Value = resp.json().unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    body["error"]["message"].as_str().unwrap().to_owned()
}

/// The `rps-serve` binary running as a child process (JSON logs collected), killed on drop.
pub struct Spawned {
    pub child: std::process::Child,
    pub addr: std::net::SocketAddr,
    /// Every log line after `listening`.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Spawned {
    /// Start `rps-serve --registry <registry> --bind 127.0.0.1:0 --log-format json <args>`,
    /// under `prlimit --nofile=N:N` when `nofile` is given; `None` when prlimit is missing.
    pub fn start(registry: &str, args: &[&str], nofile: Option<u32>) -> Option<Self> {
        use std::io::BufRead as _;
        let exe = env!("CARGO_BIN_EXE_rps-serve");
        let mut cmd = match nofile {
            Some(n) => {
                if std::process::Command::new("prlimit")
                    .arg("--version")
                    .output()
                    .is_err()
                {
                    return None;
                }
                let mut c = std::process::Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg(exe);
                c
            }
            None => std::process::Command::new(exe),
        };
        for (k, _) in std::env::vars() {
            if k.starts_with("RPS_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("RUST_LOG", "info")
            .args([
                "--registry",
                registry,
                "--bind",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ])
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut listening = false;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if listening {
                    sink.lock().unwrap().push(line);
                } else if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["message"] == "listening"
                {
                    listening = true;
                    let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("a `listening` log line")
            .parse()
            .unwrap();
        Some(Self { child, addr, log })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The process's resident set size in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Open file descriptors of the process.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(Iterator::count)
            .unwrap_or(0)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One raw HTTP/1.1 exchange's answer: status, JSON body (if any), whether the server closes.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn closes(&self) -> bool {
        self.headers
            .to_ascii_lowercase()
            .contains("\r\nconnection: close")
    }
}

/// Read one response from `r` (`head_only`: the answer to HEAD, no body). `Ok(None)` on a
/// clean EOF before any byte.
pub fn read_response(
    r: &mut impl std::io::BufRead,
    head_only: bool,
) -> std::io::Result<Option<RawResponse>> {
    let mut head = String::new();
    loop {
        let mut line = Vec::new();
        let n = r.read_until(b'\n', &mut line)?;
        if n == 0 {
            if head.is_empty() {
                return Ok(None);
            }
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = String::from_utf8_lossy(&line).into_owned();
        let end = line == "\r\n";
        head.push_str(&line);
        if end {
            break;
        }
    }
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(std::io::ErrorKind::InvalidData)?;
    if (100..200).contains(&status) {
        // 100 Continue: the real answer follows.
        return read_response(r, head_only);
    }
    let lower = head.to_ascii_lowercase();
    let mut body = Vec::new();
    if !head_only && status >= 200 && status != 204 && status != 304 {
        if let Some(len) = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            body.resize(len, 0);
            r.read_exact(&mut body)?;
        } else if lower.contains("transfer-encoding: chunked") {
            loop {
                let mut size = String::new();
                r.read_line(&mut size)?;
                let n = usize::from_str_radix(size.trim(), 16)
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else {
            r.read_to_end(&mut body)?;
        }
    }
    Ok(Some(RawResponse {
        status,
        headers: head,
        body,
    }))
}

/// Send `request` on a fresh connection, close the write side, read the first response.
pub fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> Option<RawResponse> {
    use std::io::Write as _;
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = tcp.write_all(request);
    let _ = tcp.shutdown(std::net::Shutdown::Write);
    let mut r = std::io::BufReader::new(tcp);
    read_response(&mut r, request.starts_with(b"HEAD "))
        .ok()
        .flatten()
}

/// The model pooled over two synthetic symbols, shared with rps-stream's tests.
pub use rps_testkit::{POOLED_SYMBOLS, pooled};
