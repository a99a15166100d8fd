//! Graceful shutdown drains in-flight requests; the binary's exit codes.

use crate::support::*;
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn graceful_shutdown_drains_an_in_flight_request() {
    let f = Fixture::with_champion();
    let mut s = f.start();
    let addr = s.addr();
    let body = json!({ "features": row_object(0) }).to_string();
    let (head, tail) = body.split_at(body.len() / 2);
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(tcp, "POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{head}", body.len()).unwrap();
    tcp.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // The request is in flight (head read, body half sent) when shutdown begins.
    s.begin_shutdown();
    std::thread::sleep(Duration::from_millis(300));
    tcp.write_all(tail.as_bytes()).unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"prediction\""), "{response}");
    s.shutdown().unwrap();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "no longer listening"
    );
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rps-serve"));
    for (k, _) in std::env::vars() {
        if k.starts_with("RPS_") {
            c.env_remove(k);
        }
    }
    c.env("RUST_LOG", "info");
    c
}

#[test]
fn help_documents_exit_codes_and_usage_errors_exit_2() {
    let out = bin().arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "EXIT CODES",
        "RPS_REGISTRY",
        "RPS_SERVE_TOKEN",
        "--poll-interval",
        "--drift-window",
        "POST /predict",
    ] {
        assert!(help.contains(needle), "{needle} in\n{help}");
    }
    let out = bin().arg("--no-such-flag").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bin().args(["--body-limit", "lots"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn binary_exit_codes_for_no_model_and_bind_failure() {
    // The shared table: no model is missing upstream output (4), an unusable --bind is a
    // configuration error (3).
    let empty = Fixture::empty();
    let out = bin()
        .args(["--registry", &empty.path(), "--bind", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let f = Fixture::with_champion();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = bin()
        .args(["--registry", &f.path(), "--bind", &addr])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sigterm_stops_the_binary_cleanly() {
    let f = Fixture::with_champion();
    let mut child = bin()
        .args([
            "--registry",
            &f.path(),
            "--bind",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("a `listening` log line");
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("json log line: {line}"));
        if v["message"] == "listening" {
            break v["addr"].as_str().unwrap().to_owned();
        }
    };
    let r = client().get(format!("http://{addr}/ready")).send().unwrap();
    assert_eq!(r.status(), 200);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0));
}
