//! `rps forecast` (issue #17): on a home built by the stages from fresh synthetic bars, the
//! command's forecast equals the one `rps serve` gives for the same model and stored candles,
//! and a history too old for the tolerance is refused with exit 4 naming its newest bar.
#![allow(clippy::unwrap_used)]

use rps_pipeline_tests::{Output, Project};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// 60 days of synthetic hourly bars up to the last closed hour, a small model, promoted.
fn fresh_home() -> Project {
    let start = chrono::Utc::now() - chrono::Duration::days(60);
    let p = Project::new(&format!(
        "data:\n  source: synthetic\n  symbol: BTC-USD\n  start: \"{}\"\n\
train:\n  num_boost_round: 20\n  early_stopping_rounds: 10\n\
evaluate:\n  walk_forward_folds: 0\n",
        start.format("%Y-%m-%dT%H:00:00Z")
    ));
    for stage in ["extract", "transform", "train", "evaluate"] {
        p.ok("rps", &[stage]);
    }
    p
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 exchange; (status, JSON body).
fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, serde_json::Value)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, serde_json::from_str(body).ok()?))
}

fn forecast(p: &Project, args: &[&str]) -> Output {
    let mut all = vec!["forecast"];
    all.extend_from_slice(args);
    p.run("rps", &all)
}

#[test]
fn rps_forecast_equals_the_served_forecast_and_refuses_a_stale_history() {
    let p = fresh_home();

    let o = forecast(&p, &["--json"]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    let cli: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
    assert_eq!(cli["task"], "volatility");
    assert_eq!(cli["model"], "btc-volatility");
    assert_eq!(cli["history"], "raw_dataset");
    let age = cli["age_secs"].as_i64().unwrap();
    assert!((0..=3600).contains(&age), "{cli}");

    // The same model and candles behind rps serve (its home is the folder of --registry).
    let port = free_port();
    let child = p
        .command(
            "rps",
            &[
                "serve",
                "--registry",
                ".rps/registry",
                "--bind",
                &format!("127.0.0.1:{port}"),
            ],
        )
        .env_remove("DATABASE_URL")
        .env_remove("RPS_HOME")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _serve = Serve(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while http(port, "GET", "/ready", "").is_none_or(|(s, _)| s != 200) {
        assert!(Instant::now() < deadline, "rps serve did not get ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, served) = http(port, "POST", "/forecast", "{}").unwrap();
    assert_eq!(status, 200, "{served}");
    for k in [
        "model",
        "version",
        "symbol",
        "from_bar",
        "target_bar",
        "candles_used",
        "history",
        "volatility",
        "volatility_annualised",
    ] {
        assert_eq!(cli[k], served[k], "{k}: {cli} vs {served}");
    }
    let (_, model) = http(port, "GET", "/model", "").unwrap();
    assert_eq!(cli["candles_used"], model["history_bars"]);

    // The table names the hour and both units.
    let o = forecast(&p, &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let target = cli["target_bar"].as_str().unwrap();
    assert!(o.stdout.contains(target), "{}", o.stdout);
    assert!(o.stdout.contains("annualised"), "{}", o.stdout);

    // A tolerance the newest bar is older than: exit 4 naming that bar, nothing on stdout.
    let o = forecast(&p, &["--json", "--max-age", "0s"]);
    assert_eq!(o.code, 4, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.is_empty(), "{}", o.stdout);
    let from = cli["from_bar"].as_str().unwrap();
    assert!(
        o.stderr.contains(from) && o.stderr.contains("max age"),
        "{}",
        o.stderr
    );

    // A version that does not exist is bad input too.
    let o = forecast(&p, &["--model-version", "99"]);
    assert_eq!(o.code, 4, "{}", o.stderr);
}
