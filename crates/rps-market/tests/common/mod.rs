//! A tiny_http mock server on 127.0.0.1 (port 0) and helpers shared by the integration tests.
#![allow(dead_code)]

use reqwest::Url;
use rps_market::{RetryPolicy, Sleeper};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
}

impl Recorded {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A required integer query parameter.
    pub fn int(&self, key: &str) -> i64 {
        self.param(key)
            .unwrap_or_else(|| panic!("missing {key} in {self:?}"))
            .parse()
            .unwrap_or_else(|_| panic!("{key} is not an integer in {self:?}"))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the handler answers.
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
    /// Wait this long before answering (to provoke client timeouts).
    pub delay: Duration,
}

impl Reply {
    pub fn json(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            body: body.into(),
            headers: vec![("Content-Type".into(), "application/json".into())],
            delay: Duration::ZERO,
        }
    }

    pub fn ok(body: impl Into<String>) -> Self {
        Self::json(200, body)
    }

    pub fn header(mut self, name: &str, value: impl ToString) -> Self {
        self.headers.push((name.into(), value.to_string()));
        self
    }

    pub fn delayed(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

/// Serves until dropped (or for at most 60 s), recording every request.
pub struct MockServer {
    pub base: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MockServer {
    /// `handler(n, request)` answers the `n`-th request (0-based).
    pub fn start<F>(mut handler: F) -> Self
    where
        F: FnMut(usize, &Recorded) -> Reply + Send + 'static,
    {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = server.server_addr().to_ip().expect("an IP address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (reqs, stopping) = (Arc::clone(&requests), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stopping.load(Ordering::SeqCst) && Instant::now() < deadline {
                let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(20)) else {
                    continue;
                };
                let url = Url::parse(&format!("http://mock{}", request.url())).expect("url");
                let recorded = Recorded {
                    path: url.path().to_owned(),
                    query: url
                        .query_pairs()
                        .map(|(k, v)| (k.into(), v.into()))
                        .collect(),
                    headers: request
                        .headers()
                        .iter()
                        .map(|h| (h.field.to_string(), h.value.to_string()))
                        .collect(),
                };
                let n = {
                    let mut all = lock(&reqs);
                    all.push(recorded.clone());
                    all.len() - 1
                };
                let reply = handler(n, &recorded);
                let delay = reply.delay;
                let mut response =
                    tiny_http::Response::from_string(reply.body).with_status_code(reply.status);
                for (k, v) in reply.headers {
                    response.add_header(
                        tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("header"),
                    );
                }
                // The client may have given up (timeout): ignore write errors.
                if delay.is_zero() {
                    let _ = request.respond(response);
                } else {
                    // Answer late from another thread so later requests are still served.
                    std::thread::spawn(move || {
                        std::thread::sleep(delay);
                        let _ = request.respond(response);
                    });
                }
            }
        });
        Self {
            base: format!("http://127.0.0.1:{port}"),
            requests,
            stop,
            thread: Some(thread),
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.requests).clone()
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A sleeper that records the waits instead of sleeping.
pub fn recording_sleeper() -> (Sleeper, Arc<Mutex<Vec<Duration>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&log);
    let sleeper: Sleeper = Arc::new(move |d| lock(&sink).push(d));
    (sleeper, log)
}

pub fn sleeps(log: &Arc<Mutex<Vec<Duration>>>) -> Vec<Duration> {
    lock(log).clone()
}

/// Fast, bounded retries for tests.
pub fn test_policy() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        max_retry_after: Duration::from_secs(60),
        timeout: Duration::from_secs(5),
    }
}

/// 2024-01-01T00:00:00Z.
pub const T0: i64 = 1_704_067_200_000;
pub const HOUR: i64 = 3_600_000;

/// A deterministic price for bar `i`, as the decimal string an API would send.
pub fn price(i: i64, offset: f64) -> String {
    format!("{:.8}", 40_000.0 + (i % 997) as f64 * 0.25 + offset)
}

pub fn parse(s: &str) -> f64 {
    s.parse().expect("decimal")
}
