//! The receiver over real HTTP on loopback, against a stand-in Airflow (tiny_http) that answers
//! like Airflow 3's API server: /auth/token → 201 {access_token}, dagRuns → 200, 409 on a run id
//! it already has, 401 for a stale token. The real Airflow is exercised by
//! tests/python/alerting/test_retrain_loop.py.
#![allow(clippy::unwrap_used)]

use rps_alert_hook::airflow::{Airflow, AirflowConfig};
use rps_alert_hook::server::{Hook, Limits, serve};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the stand-in Airflow saw and how it behaves.
#[derive(Default)]
struct FakeState {
    runs: BTreeSet<String>,
    bodies: Vec<serde_json::Value>,
    tokens_issued: u32,
    /// Tokens below this number are answered 401 (expired).
    valid_from: u32,
    logins: u32,
    auth_headers: Vec<String>,
}

fn fake_airflow() -> (String, Arc<Mutex<FakeState>>) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!("http://{}", server.server_addr().to_ip().unwrap());
    let state = Arc::new(Mutex::new(FakeState::default()));
    let st = state.clone();
    std::thread::spawn(move || {
        for mut req in server.incoming_requests() {
            let mut body = String::new();
            req.as_reader().read_to_string(&mut body).unwrap();
            let mut s = st.lock().unwrap();
            let (code, answer) = match (req.method().as_str(), req.url()) {
                ("POST", "/auth/token") => {
                    s.logins += 1;
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                    if v["username"] == "hook" && v["password"] == "pw" {
                        s.tokens_issued += 1;
                        (
                            201,
                            format!(r#"{{"access_token":"jwt-{}"}}"#, s.tokens_issued),
                        )
                    } else {
                        (401, r#"{"detail":"Invalid credentials"}"#.to_owned())
                    }
                }
                ("POST", "/api/v2/dags/crypto_volatility_pipeline/dagRuns") => {
                    let auth = req
                        .headers()
                        .iter()
                        .find(|h| h.field.equiv("Authorization"))
                        .map(|h| h.value.to_string())
                        .unwrap_or_default();
                    s.auth_headers.push(auth.clone());
                    let n: u32 = auth.trim_start_matches("Bearer jwt-").parse().unwrap_or(0);
                    if n == 0 || n < s.valid_from {
                        // What Airflow 3.3 answers to an expired token (not 401).
                        (403, r#"{"detail":"Invalid JWT token"}"#.to_owned())
                    } else {
                        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                        let id = v["dag_run_id"].as_str().unwrap().to_owned();
                        s.bodies.push(v);
                        if s.runs.insert(id) {
                            (200, r#"{"dag_run_id":"x","state":"queued"}"#.to_owned())
                        } else {
                            (409, r#"{"detail":"DAG run already exists"}"#.to_owned())
                        }
                    }
                }
                _ => (404, r#"{"detail":"Not Found"}"#.to_owned()),
            };
            drop(s);
            let _ = req.respond(tiny_http::Response::from_string(answer).with_status_code(code));
        }
    });
    (url, state)
}

struct Running {
    addr: std::net::SocketAddr,
    _rt: tokio::runtime::Runtime,
}

fn start_hook(airflow_url: &str, password: &str, cooldown: Duration) -> Running {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let airflow = Airflow::new(AirflowConfig {
        url: airflow_url.to_owned(),
        dag_id: "crypto_volatility_pipeline".to_owned(),
        username: "hook".to_owned(),
        password: password.to_owned(),
        timeout: Duration::from_secs(2),
    })
    .unwrap();
    let limits = Limits {
        body_limit: 64 * 1024,
        read_timeout: Duration::from_millis(500),
        connection_lifetime: Duration::from_secs(30),
        max_connections: 8,
    };
    let hook = Arc::new(Hook::new(airflow, cooldown, limits));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(serve(hook, listener, std::future::pending()));
    Running { addr, _rt: rt }
}

fn request(addr: std::net::SocketAddr, raw: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

fn post(addr: std::net::SocketAddr, body: &str) -> (u16, serde_json::Value) {
    let raw = format!(
        "POST /alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, text) = request(addr, raw.as_bytes());
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

fn alert(name: &str, status: &str, action: Option<&str>, starts: &str, fp: &str) -> String {
    let action = action.map_or(String::new(), |a| format!(r#","action":"{a}""#));
    format!(
        r#"{{"status":"{status}","labels":{{"alertname":"{name}","symbol":"BTC-USDT","severity":"warning"{action}}},"annotations":{{}},"startsAt":"{starts}","endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"{fp}"}}"#
    )
}

fn notification(alerts: &[String]) -> String {
    format!(
        r#"{{"version":"4","groupKey":"k","truncatedAlerts":0,"status":"firing","receiver":"retrain","groupLabels":{{}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://am","alerts":[{}]}}"#,
        alerts.join(",")
    )
}

const T1: &str = "2026-12-06T02:15:00.5Z";

#[test]
fn a_retrain_alert_creates_one_run_and_its_repeats_none() {
    let (url, fake) = fake_airflow();
    let hook = start_hook(&url, "pw", Duration::ZERO);
    let n = notification(&[
        alert(
            "RpsChampionWorseThanHarRv",
            "firing",
            Some("retrain"),
            T1,
            "aa11",
        ),
        alert("RpsScoringStalled", "firing", None, T1, "bb22"),
        alert(
            "RpsIntervalCoverageOff",
            "resolved",
            Some("retrain"),
            T1,
            "cc33",
        ),
    ]);
    let (status, body) = post(hook.addr, &n);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["triggers"][0]["result"], "created");
    assert_eq!(body["resolved"], 1);
    assert_eq!(body["ignored"], 1);
    let (status, body) = post(hook.addr, &n);
    assert_eq!(status, 200);
    assert_eq!(body["triggers"][0]["result"], "exists");
    // A new firing of the same alert (new startsAt) is a new run (no cooldown here).
    let again = notification(&[alert(
        "RpsChampionWorseThanHarRv",
        "firing",
        Some("retrain"),
        "2026-12-07T00:00:00Z",
        "aa11",
    )]);
    assert_eq!(
        post(hook.addr, &again).1["triggers"][0]["result"],
        "created"
    );

    let s = fake.lock().unwrap();
    assert_eq!(s.runs.len(), 2);
    assert_eq!(s.logins, 1, "the token is reused");
    let first = &s.bodies[0];
    // TriggerDAGRunPostBody: logical_date present (null), conf with the alert.
    assert!(
        first
            .get("logical_date")
            .is_some_and(serde_json::Value::is_null),
        "{first}"
    );
    assert_eq!(first["conf"]["alertname"], "RpsChampionWorseThanHarRv");
    assert_eq!(first["conf"]["symbol"], "BTC-USDT");
    assert_eq!(first["conf"]["starts_at"], "2026-12-06T02:15:00.500+00:00");
    assert_eq!(
        first["dag_run_id"],
        "alert__RpsChampionWorseThanHarRv__aa11__20261206T021500.500Z"
    );
    let allowed: BTreeSet<&str> = ["dag_run_id", "logical_date", "conf", "note"].into();
    assert!(
        first
            .as_object()
            .unwrap()
            .keys()
            .all(|k| allowed.contains(k.as_str()))
    );
    drop(s);

    let (_, metrics) = get(hook.addr, "/metrics");
    assert!(
        metrics.contains("rps_alert_hook_triggers_total{result=\"created\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rps_alert_hook_triggers_total{result=\"exists\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rps_alert_hook_resolved_alerts_total 2"),
        "{metrics}"
    );
}

#[test]
fn the_cooldown_holds_back_a_new_firing() {
    let (url, fake) = fake_airflow();
    let hook = start_hook(&url, "pw", Duration::from_secs(3600));
    let a = notification(&[alert(
        "RpsChampionWorseThanHarRv",
        "firing",
        Some("retrain"),
        T1,
        "aa11",
    )]);
    assert_eq!(post(hook.addr, &a).1["triggers"][0]["result"], "created");
    // Flapped: resolved, then firing again with a new startsAt, within the cooldown.
    let b = notification(&[alert(
        "RpsChampionWorseThanHarRv",
        "firing",
        Some("retrain"),
        "2026-12-06T03:00:00Z",
        "aa11",
    )]);
    assert_eq!(post(hook.addr, &b).1["triggers"][0]["result"], "cooldown");
    let c = notification(&[alert(
        "RpsIntervalCoverageOff",
        "firing",
        Some("retrain"),
        T1,
        "dd44",
    )]);
    assert_eq!(post(hook.addr, &c).1["triggers"][0]["result"], "cooldown");
    assert_eq!(fake.lock().unwrap().runs.len(), 1);
}

#[test]
fn an_expired_token_is_refreshed_once() {
    let (url, fake) = fake_airflow();
    let hook = start_hook(&url, "pw", Duration::ZERO);
    let a = notification(&[alert(
        "RpsChampionWorseThanHarRv",
        "firing",
        Some("retrain"),
        T1,
        "aa11",
    )]);
    assert_eq!(post(hook.addr, &a).0, 200);
    fake.lock().unwrap().valid_from = 2; // jwt-1 expires
    let b = notification(&[alert(
        "RpsChampionWorseThanHarRv",
        "firing",
        Some("retrain"),
        "2026-12-07T00:00:00Z",
        "aa11",
    )]);
    let (status, body) = post(hook.addr, &b);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["triggers"][0]["result"], "created");
    let s = fake.lock().unwrap();
    assert_eq!(s.logins, 2);
    assert_eq!(
        s.auth_headers,
        ["Bearer jwt-1", "Bearer jwt-1", "Bearer jwt-2"]
    );
}

#[test]
fn refused_credentials_are_a_502_not_a_retry_storm_of_logins() {
    let (url, fake) = fake_airflow();
    let hook = start_hook(&url, "wrong", Duration::ZERO);
    let a = notification(&[alert(
        "RpsChampionWorseThanHarRv",
        "firing",
        Some("retrain"),
        T1,
        "aa11",
    )]);
    let (status, body) = post(hook.addr, &a);
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "airflow_refused");
    assert_eq!(fake.lock().unwrap().logins, 1);
    let (_, metrics) = get(hook.addr, "/metrics");
    assert!(
        metrics.contains("rps_alert_hook_trigger_failures_total{reason=\"auth\"} 1"),
        "{metrics}"
    );
}

#[test]
fn airflow_unreachable_is_a_503_so_alertmanager_retries() {
    // A port nothing listens on.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let hook = start_hook(&url, "pw", Duration::ZERO);
    let a = notification(&[alert(
        "RpsChampionWorseThanHarRv",
        "firing",
        Some("retrain"),
        T1,
        "aa11",
    )]);
    let (status, body) = post(hook.addr, &a);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "airflow_unavailable");
    // Nothing to do for Airflow: a notification without retrain alerts is fine while it is down.
    let r = notification(&[alert(
        "RpsChampionWorseThanHarRv",
        "resolved",
        Some("retrain"),
        T1,
        "aa11",
    )]);
    assert_eq!(post(hook.addr, &r).0, 200);
}

#[test]
fn client_input_gets_4xx_json_never_5xx() {
    let (url, fake) = fake_airflow();
    let hook = start_hook(&url, "pw", Duration::ZERO);
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"POST /alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 8\r\nConnection: close\r\n\r\nnot json".to_vec(), 400, "malformed"),
        (b"POST /alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".to_vec(), 400, "malformed"),
        (format!("POST /alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 31\r\nConnection: close\r\n\r\n{}", r#"{"version":"3","alerts":[]    }"#).into_bytes(), 422, "unsupported_version"),
        (b"POST /alerts HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".to_vec(), 415, "unsupported_media_type"),
        (b"POST /alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\nConnection: close\r\n\r\n{".to_vec(), 413, "body_too_large"),
        // Announces 100 bytes, sends 1: the body deadline (500 ms here) answers 408.
        (b"POST /alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{".to_vec(), 408, "body_timeout"),
        (b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(), 404, "not_found"),
    ];
    for (raw, want, code) in cases {
        let (status, body) = request(hook.addr, &raw);
        assert_eq!(status, want, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], code, "{body}");
    }
    // Chunked, over the limit without a Content-Length.
    let big = "x".repeat(70 * 1024);
    let raw = format!(
        "POST /alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        big.len()
    );
    assert_eq!(request(hook.addr, raw.as_bytes()).0, 413);
    assert!(fake.lock().unwrap().runs.is_empty());
    let (status, health) = get(hook.addr, "/health");
    assert_eq!((status, health.as_str()), (200, r#"{"status":"ok"}"#));
}
