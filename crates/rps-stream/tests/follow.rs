//! `rps-stream produce --follow` against a mock Binance klines API on 127.0.0.1 and a real
//! Kafka-compatible broker (tansu), started by `crates/rps-stream/tests/servers.sh`: every closed
//! bar lands on the topic once, in order, the open bar never; reruns resume from the topic; a bar
//! the exchange publishes late is appended alone; a refused symbol exits 3; SIGTERM stops the loop.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use rps_core::params::Params;
use rps_stream::kafka::{self, CandleMessage};
use rskafka::client::partition::OffsetAt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const H: i64 = 3_600_000;
const SERVERS: &str = "needs Kafka (tansu): crates/rps-stream/tests/servers.sh";

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The open time of the current (still forming) hourly bar, a few seconds away from its ends so
/// that the hour does not turn while the test runs (waits ≤ 25 s when it would).
fn current_hour() -> i64 {
    let now = now_ms();
    let h0 = now.div_euclid(H) * H;
    if now - h0 < 5_000 || h0 + H - now < 20_000 {
        let wake = if now - h0 < 5_000 {
            h0 + 5_000
        } else {
            h0 + H + 5_000
        };
        std::thread::sleep(Duration::from_millis(
            u64::try_from(wake - now).unwrap_or(0) + 100,
        ));
        return now_ms().div_euclid(H) * H;
    }
    h0
}

/// A mock of `GET /api/v3/klines` serving the hourly bars whose open times are in `bars` (the
/// documented row layout, prices as strings); any symbol other than BTCUSDT is refused like
/// Binance refuses it.
struct MockBinance {
    base: String,
    bars: Arc<Mutex<Vec<i64>>>,
    requests: Arc<Mutex<usize>>,
    stop: Arc<AtomicBool>,
}

impl Drop for MockBinance {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn query(url: &str) -> Vec<(String, String)> {
    url.split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn row(ts: i64) -> String {
    let p = 40_000.0 + (ts / H % 100) as f64;
    format!(
        r#"[{ts},"{o:.2}","{h:.2}","{l:.2}","{c:.2}","12.5",{close},"500000.0",1234,"6.0","240000.0","0"]"#,
        o = p,
        h = p + 10.0,
        l = p - 10.0,
        c = p + 1.0,
        close = ts + H - 1
    )
}

impl MockBinance {
    fn start(bars: Vec<i64>) -> Self {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let port = server.server_addr().to_ip().unwrap().port();
        let bars = Arc::new(Mutex::new(bars));
        let requests = Arc::new(Mutex::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, r, s) = (Arc::clone(&bars), Arc::clone(&requests), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let Ok(Some(req)) = server.recv_timeout(Duration::from_millis(20)) else {
                    continue;
                };
                *r.lock().unwrap() += 1;
                let q = query(req.url());
                let get = |k: &str| {
                    q.iter()
                        .find(|(key, _)| key == k)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                let (status, body) = if !req.url().starts_with("/api/v3/klines") {
                    (404, r#"{"code":-1,"msg":"not found"}"#.to_owned())
                } else if get("symbol") != "BTCUSDT" {
                    (400, r#"{"code":-1121,"msg":"Invalid symbol."}"#.to_owned())
                } else {
                    assert_eq!(get("interval"), "1h");
                    let start: i64 = get("startTime").parse().unwrap();
                    let end: i64 = get("endTime").parse().unwrap();
                    let limit: usize = get("limit").parse().unwrap();
                    let mut all = b.lock().unwrap().clone();
                    all.sort_unstable();
                    let rows: Vec<String> = all
                        .into_iter()
                        .filter(|&t| t >= start && t <= end)
                        .take(limit)
                        .map(row)
                        .collect();
                    (200, format!("[{}]", rows.join(",")))
                };
                let resp = tiny_http::Response::from_string(body)
                    .with_status_code(status)
                    .with_header(
                        tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap(),
                    )
                    .with_header(
                        tiny_http::Header::from_bytes("X-MBX-USED-WEIGHT-1M", "2").unwrap(),
                    );
                let _ = req.respond(resp);
            }
        });
        Self {
            base: format!("http://127.0.0.1:{port}"),
            bars,
            requests,
            stop,
        }
    }

    fn add(&self, ts: i64) {
        self.bars.lock().unwrap().push(ts);
    }

    fn requests(&self) -> usize {
        *self.requests.lock().unwrap()
    }
}

struct Env {
    _dir: tempfile::TempDir,
    params: PathBuf,
    bad_symbol_params: PathBuf,
    brokers: String,
    topic: String,
}

fn setup(name: &str, base_url: &str) -> Env {
    let brokers = std::env::var("RPS_TEST_KAFKA_BROKERS").unwrap_or_else(|_| panic!("{SERVERS}"));
    let dir = tempfile::tempdir().unwrap();
    let mut params: Params =
        rps_cli::params_from_str(include_str!("../../../params.yaml")).unwrap();
    // data.source stays `file` (as for training): --source binance picks the API.
    params.data.binance.base_url = base_url.to_owned();
    let write = |p: &Path, params: &Params| {
        std::fs::write(p, serde_yaml::to_string(params).unwrap()).unwrap();
    };
    let p = dir.path().join("params.yaml");
    write(&p, &params);
    params.data.binance.symbol = "NOPEUSDT".to_owned();
    let bad = dir.path().join("bad-symbol.yaml");
    write(&bad, &params);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    Env {
        params: p,
        bad_symbol_params: bad,
        _dir: dir,
        brokers,
        topic: format!("rps-test-{name}-{stamp}"),
    }
}

impl Env {
    fn command(&self, params: &Path, topic: &str, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rps-stream"));
        c.arg("--params")
            .arg(params)
            .args(["--home", "/nonexistent-rps-home"])
            .args(["--brokers", &self.brokers, "--topic", topic])
            .args(["--kafka-timeout", "10"])
            .args(["produce", "--follow", "--source", "binance"])
            .args(["--settle-secs", "2"])
            .args(args)
            .env_remove("RPS_KAFKA_BROKERS")
            .env_remove("RPS_KAFKA_TOPIC");
        c
    }

    fn follow(&self, args: &[&str]) -> Output {
        let t = Instant::now();
        let out = self
            .command(&self.params, &self.topic, args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        eprintln!(
            "produce --follow {args:?} ({:.1} s):\n{err}",
            t.elapsed().as_secs_f64()
        );
        assert!(
            out.status.success(),
            "produce --follow {args:?} failed:\n{err}"
        );
        out
    }

    /// Every candle message on the symbol's partition, in offset order.
    fn topic(&self) -> Vec<CandleMessage> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let client = kafka::connect(&self.brokers, Duration::from_secs(10))
                .await
                .unwrap();
            let parts = kafka::topic_partitions(&client, &self.topic, 1, false)
                .await
                .unwrap();
            let n = i32::try_from(parts.len()).unwrap();
            let pc = kafka::partition(&client, &self.topic, kafka::partition_for(b"BTC-USDT", n))
                .await
                .unwrap();
            let high = pc.get_offset(OffsetAt::Latest).await.unwrap();
            let mut out = Vec::new();
            let mut next = 0;
            while next < high {
                let (mut recs, _) = pc.fetch_records(next, 1..4_000_000, 500).await.unwrap();
                recs.retain(|r| r.offset >= next);
                recs.sort_by_key(|r| r.offset);
                let first = recs.first().expect("records below the high watermark");
                assert_eq!(first.offset, next, "no offset gap");
                for r in &recs {
                    out.push(serde_json::from_slice(r.record.value.as_deref().unwrap()).unwrap());
                }
                next = recs.last().unwrap().offset + 1;
            }
            out
        })
    }
}

fn times(msgs: &[CandleMessage]) -> Vec<i64> {
    msgs.iter().map(|m| m.ts).collect()
}

#[test]
#[ignore = "needs Kafka (tansu): crates/rps-stream/tests/servers.sh"]
fn follow_publishes_each_closed_bar_once_and_resumes_from_the_topic() {
    let h0 = current_hour();
    let started = Instant::now();
    // The exchange has the last 48 hours and the bar now forming (h0), but not yet the bar
    // that closed at h0 (h0 - 1 h): it lags.
    let mut bars: Vec<i64> = (2..=48).map(|k| h0 - k * H).collect();
    bars.push(h0);
    let mock = MockBinance::start(bars);
    let e = setup("follow", &mock.base);

    // Empty topic: --backfill 24 bars before the last closed one; h0 - 1 h is missing.
    e.follow(&["--max-polls", "1", "--backfill", "24", "--batch", "5"]);
    let first = e.topic();
    let want: Vec<i64> = (2..=24).rev().map(|k| h0 - k * H).collect();
    assert_eq!(times(&first), want, "the closed bars, in order, once");
    assert!(
        !times(&first).contains(&h0),
        "the open bar is never published"
    );
    let m = &first[0];
    assert_eq!((m.symbol.as_str(), m.interval.as_str()), ("BTC-USDT", "1h"));
    assert!(m.high > m.low && m.volume == 12.5);

    // Again: the topic is up to date, nothing republished (--backfill is ignored now).
    e.follow(&["--max-polls", "1", "--backfill", "48"]);
    assert_eq!(times(&e.topic()), want);

    // The exchange publishes the late bar: exactly that bar is appended.
    mock.add(h0 - H);
    e.follow(&["--max-polls", "1"]);
    let after = e.topic();
    let mut want2 = want.clone();
    want2.push(h0 - H);
    assert_eq!(times(&after), want2);
    assert_eq!(
        after[..first.len()],
        first[..],
        "earlier messages untouched"
    );

    // And once more: nothing new.
    e.follow(&["--max-polls", "1"]);
    assert_eq!(times(&e.topic()), want2);

    // A symbol the exchange refuses (on an empty topic, so there is something to fetch): exit 3
    // at once, even with --max-failures 0 (never give up on transient errors).
    let asked = mock.requests();
    let other = format!("{}-refused", e.topic);
    let out = e
        .command(&e.bad_symbol_params, &other, &["--max-failures", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("Invalid symbol"), "{err}");
    assert_eq!(
        mock.requests(),
        asked + 1,
        "a refused request is not retried"
    );

    // Without --max-polls it polls, then sleeps until the next bar: SIGTERM stops it cleanly.
    let mut child = e
        .command(&e.params, &e.topic, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let reader = {
        let (log, stderr) = (Arc::clone(&log), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
                let Ok(line) = line else { break };
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log.lock().unwrap().contains("next poll at") {
        assert!(
            Instant::now() < deadline,
            "no poll: {}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "SIGTERM did not stop it"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    reader.join().unwrap();
    let log = log.lock().unwrap().clone();
    eprintln!("produce --follow until SIGTERM:\n{log}");
    assert!(status.success(), "{log}");
    assert!(
        log.contains("next poll at") && log.contains("stopped after 1 polls"),
        "{log}"
    );
    assert_eq!(times(&e.topic()), want2);
    assert!(started.elapsed() < Duration::from_secs(30));
}
