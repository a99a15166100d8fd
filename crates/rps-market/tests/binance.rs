//! BinanceClient against a local mock of `GET /api/v3/klines`.

mod common;

use common::{
    HOUR, MockServer, Recorded, Reply, T0, parse, price, recording_sleeper, sleeps, test_policy,
};
use rps_core::candle::{Candle, Interval};
use rps_market::{BinanceClient, FetchRequest, MarketError, MarketSource, Progress, RetryPolicy};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A synthetic hourly market of `bars` bars from `T0`.
#[derive(Clone, Copy)]
struct Market {
    bars: i64,
    /// Most rows per page the server returns, whatever `limit` says.
    page_cap: usize,
    /// Prepend the bar just before `startTime` to every page (an overlapping server).
    overlap: bool,
}

impl Market {
    fn new(bars: i64) -> Self {
        Self {
            bars,
            page_cap: 1000,
            overlap: false,
        }
    }

    fn row(i: i64) -> serde_json::Value {
        let ts = T0 + i * HOUR;
        serde_json::json!([
            ts,
            price(i, 0.0),
            price(i, 5.0),
            price(i, -5.0),
            price(i, 1.0),
            format!("{:.8}", 1.5 + i as f64 * 0.125),
            ts + HOUR - 1,
            "123.45",
            42,
            "0.5",
            "20000.1",
            "0"
        ])
    }

    fn expected(range: std::ops::Range<i64>) -> Vec<Candle> {
        range
            .map(|i| Candle {
                ts: T0 + i * HOUR,
                open: parse(&price(i, 0.0)),
                high: parse(&price(i, 5.0)),
                low: parse(&price(i, -5.0)),
                close: parse(&price(i, 1.0)),
                volume: parse(&format!("{:.8}", 1.5 + i as f64 * 0.125)),
                // The klines' order-flow fields 7..=10 are kept (issue #16).
                quote_volume: Some(123.45),
                trades: Some(42),
                taker_buy_volume: Some(0.5),
                taker_buy_quote_volume: Some(20000.1),
            })
            .collect()
    }

    /// Answer a klines request the way Binance does: rows with `startTime <= openTime <=
    /// endTime`, oldest first, at most `limit`.
    fn page(&self, r: &Recorded) -> Reply {
        assert_eq!(r.path, "/api/v3/klines");
        assert_eq!(r.param("symbol"), Some("BTCUSDT"));
        assert_eq!(r.param("interval"), Some("1h"));
        let (start, end) = (r.int("startTime"), r.int("endTime"));
        let limit = usize::try_from(r.int("limit"))
            .expect("limit")
            .min(self.page_cap);
        let first = (start - T0).div_euclid(HOUR) + i64::from((start - T0).rem_euclid(HOUR) != 0);
        let mut rows: Vec<serde_json::Value> = (first.max(0)..self.bars)
            .take_while(|i| T0 + i * HOUR <= end)
            .take(limit)
            .map(Self::row)
            .collect();
        if self.overlap && first > 0 && first - 1 < self.bars {
            rows.insert(0, Self::row(first - 1));
        }
        Reply::ok(serde_json::Value::Array(rows).to_string()).header("X-MBX-USED-WEIGHT-1M", 2)
    }
}

fn client(server: &MockServer, policy: RetryPolicy) -> (BinanceClient, Arc<Mutex<Vec<Duration>>>) {
    let (sleeper, log) = recording_sleeper();
    let c = BinanceClient::new(&server.base, policy)
        .expect("client")
        .with_sleeper(sleeper);
    (c, log)
}

fn fetch_all(
    c: &BinanceClient,
    req: &FetchRequest,
) -> (Result<Vec<Candle>, MarketError>, Vec<Progress>) {
    let mut seen = Vec::new();
    let r = c.fetch(req, &mut |p| seen.push(p));
    (r, seen)
}

fn hours(n: i64) -> i64 {
    T0 + n * HOUR
}

#[test]
fn pages_2500_bars_with_nothing_lost_or_duplicated() {
    let market = Market::new(2500);
    let server = MockServer::start(move |_, r| market.page(r));
    let (c, log) = client(&server, test_policy());
    // Lower case on purpose: the client upper-cases Binance symbols.
    let req = FetchRequest::new("btcusdt", Interval::H1, T0, hours(2500));
    let (bars, progress) = fetch_all(&c, &req);
    let bars = bars.expect("fetch");
    assert_eq!(bars, Market::expected(0..2500));

    let reqs = server.requests();
    let starts: Vec<i64> = reqs.iter().map(|r| r.int("startTime")).collect();
    assert_eq!(starts, [T0, hours(1000), hours(2000)]);
    for r in &reqs {
        assert_eq!(
            r.int("endTime"),
            hours(2500) - 1,
            "endTime is the inclusive end"
        );
        assert_eq!(r.param("limit"), Some("1000"));
    }
    assert_eq!(
        progress,
        [
            Progress {
                bars: 1000,
                cursor_ms: hours(1000),
                end_ms: hours(2500)
            },
            Progress {
                bars: 2000,
                cursor_ms: hours(2000),
                end_ms: hours(2500)
            },
            Progress {
                bars: 2500,
                cursor_ms: hours(2500),
                end_ms: hours(2500)
            },
        ]
    );
    assert!(sleeps(&log).is_empty());
}

#[test]
fn short_and_overlapping_pages_lose_and_duplicate_nothing() {
    let market = Market {
        page_cap: 700,
        overlap: true,
        ..Market::new(3000)
    };
    let server = MockServer::start(move |_, r| market.page(r));
    let (c, _) = client(&server, test_policy());
    let req = FetchRequest::new("BTCUSDT", Interval::H1, hours(10) + 1, hours(2010));
    let bars = c.fetch(&req, &mut |_| {}).expect("fetch");
    // hours(10) + 1 is inside bar 10, whose open time is before the range: it is excluded.
    assert_eq!(bars, Market::expected(11..2010));
    let unique: HashSet<i64> = bars.iter().map(|b| b.ts).collect();
    assert_eq!(unique.len(), bars.len());
    let starts: Vec<i64> = server
        .requests()
        .iter()
        .map(|r| r.int("startTime"))
        .collect();
    assert_eq!(starts, [hours(10) + 1, hours(711), hours(1411)]);
}

#[test]
fn empty_page_ends_the_fetch() {
    let market = Market::new(1500);
    let server = MockServer::start(move |_, r| market.page(r));
    let (c, _) = client(&server, test_policy());
    let req = FetchRequest::new("BTCUSDT", Interval::H1, T0, hours(5000));
    let (bars, progress) = fetch_all(&c, &req);
    assert_eq!(bars.expect("fetch"), Market::expected(0..1500));
    let starts: Vec<i64> = server
        .requests()
        .iter()
        .map(|r| r.int("startTime"))
        .collect();
    assert_eq!(
        starts,
        [T0, hours(1000), hours(1500)],
        "the third page is empty and ends it"
    );
    assert_eq!(progress.len(), 2);
}

#[test]
fn too_many_requests_honours_retry_after() {
    let market = Market::new(50);
    let server = MockServer::start(move |n, r| {
        if n == 0 {
            Reply::json(429, r#"{"code":-1003,"msg":"Too many requests."}"#)
                .header("Retry-After", 7)
        } else {
            market.page(r)
        }
    });
    let (c, log) = client(&server, test_policy());
    let req = FetchRequest::new("BTCUSDT", Interval::H1, T0, hours(50));
    assert_eq!(
        c.fetch(&req, &mut |_| {}).expect("fetch"),
        Market::expected(0..50)
    );
    assert_eq!(sleeps(&log), [Duration::from_secs(7)]);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].query, reqs[1].query, "the same page is asked again");
}

#[test]
fn too_many_requests_with_a_long_retry_after_fails_fast() {
    let server = MockServer::start(|_, _| Reply::json(429, "{}").header("Retry-After", 3600));
    let (c, log) = client(&server, test_policy());
    let req = FetchRequest::new("BTCUSDT", Interval::H1, T0, hours(50));
    let err = c.fetch(&req, &mut |_| {}).expect_err("rate limited");
    assert!(
        matches!(err, MarketError::RateLimited { retry_after, .. } if retry_after == Duration::from_secs(3600)),
        "{err:?}"
    );
    assert!(sleeps(&log).is_empty());
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn short_ban_is_waited_out() {
    let market = Market::new(24);
    let server = MockServer::start(move |n, r| {
        if n == 0 {
            Reply::json(
                418,
                r#"{"code":-1003,"msg":"Way too many requests; IP banned."}"#,
            )
            .header("Retry-After", 2)
        } else {
            market.page(r)
        }
    });
    let (c, log) = client(&server, test_policy());
    let req = FetchRequest::new("BTCUSDT", Interval::H1, T0, hours(24));
    assert_eq!(
        c.fetch(&req, &mut |_| {}).expect("fetch"),
        Market::expected(0..24)
    );
    assert_eq!(sleeps(&log), [Duration::from_secs(2)]);
}

#[test]
fn long_ban_fails_with_banned_instead_of_sleeping() {
    let server = MockServer::start(|_, _| {
        Reply::json(
            418,
            r#"{"code":-1003,"msg":"Way too many requests; IP banned until 1704326400000."}"#,
        )
        .header("Retry-After", 259_200)
    });
    let (c, log) = client(&server, test_policy());
    let req = FetchRequest::new("BTCUSDT", Interval::H1, T0, hours(24));
    let err = c.fetch(&req, &mut |_| {}).expect_err("banned");
    match &err {
        MarketError::Banned {
            retry_after,
            max_wait,
            ..
        } => {
            assert_eq!(*retry_after, Some(Duration::from_secs(259_200)));
            assert_eq!(*max_wait, Duration::from_secs(60));
        }
        other => panic!("expected Banned, got {other:?}"),
    }
    assert!(err.to_string().contains("banned this IP"), "{err}");
    assert!(sleeps(&log).is_empty(), "never sleeps through a long ban");
    assert_eq!(server.requests().len(), 1, "does not keep knocking");
}

#[test]
fn server_errors_are_retried_with_backoff() {
    let market = Market::new(24);
    let server = MockServer::start(move |n, r| match n {
        0 => Reply::json(500, "internal error"),
        1 => Reply::json(503, "<html>unavailable</html>"),
        _ => market.page(r),
    });
    let (c, log) = client(&server, test_policy());
    let req = FetchRequest::new("BTCUSDT", Interval::H1, T0, hours(24));
    assert_eq!(
        c.fetch(&req, &mut |_| {}).expect("fetch"),
        Market::expected(0..24)
    );
    let waits = sleeps(&log);
    assert_eq!(waits.len(), 2);
    // Base 10 ms, doubling, equal jitter: [5, 10] ms then [10, 20] ms.
    assert!(
        waits[0] >= Duration::from_millis(5) && waits[0] <= Duration::from_millis(10),
        "{waits:?}"
    );
    assert!(
        waits[1] >= Duration::from_millis(10) && waits[1] <= Duration::from_millis(20),
        "{waits:?}"
    );
}

#[test]
fn persistent_server_errors_exhaust_the_retries() {
    let server = MockServer::start(|_, _| Reply::json(502, "bad gateway today"));
    let (c, log) = client(&server, test_policy());
    let req = FetchRequest::new("BTCUSDT", Interval::H1, T0, hours(24));
    let err = c.fetch(&req, &mut |_| {}).expect_err("exhausted");
    assert!(
        matches!(err, MarketError::RetriesExhausted { attempts: 4, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("HTTP 502") && msg.contains("bad gateway today"),
        "{msg}"
    );
    assert_eq!(server.requests().len(), 4);
    let waits = sleeps(&log);
    assert_eq!(waits.len(), 3);
    assert!(
        waits.iter().all(|w| *w <= Duration::from_millis(40)),
        "capped: {waits:?}"
    );
}

#[test]
fn timeouts_are_retried() {
    let market = Market::new(24);
    let server = MockServer::start(move |n, r| {
        let reply = market.page(r);
        if n == 0 {
            reply.delayed(Duration::from_secs(3))
        } else {
            reply
        }
    });
    let policy = RetryPolicy {
        timeout: Duration::from_millis(500),
        ..test_policy()
    };
    let (c, log) = client(&server, policy);
    let req = FetchRequest::new("BTCUSDT", Interval::H1, T0, hours(24));
    assert_eq!(
        c.fetch(&req, &mut |_| {}).expect("fetch"),
        Market::expected(0..24)
    );
    assert_eq!(sleeps(&log).len(), 1);
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn connection_errors_are_retried_then_reported() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let (sleeper, log) = recording_sleeper();
    let c = BinanceClient::new(&format!("http://127.0.0.1:{port}"), test_policy())
        .expect("client")
        .with_sleeper(sleeper);
    let req = FetchRequest::new("BTCUSDT", Interval::H1, T0, hours(24));
    let err = c.fetch(&req, &mut |_| {}).expect_err("refused");
    match &err {
        MarketError::RetriesExhausted {
            attempts: 4, last, ..
        } => {
            assert!(matches!(**last, MarketError::Transport { .. }), "{last:?}");
        }
        other => panic!("expected RetriesExhausted, got {other:?}"),
    }
    assert_eq!(sleeps(&log).len(), 3);
}

#[test]
fn malformed_json_is_a_malformed_payload() {
    let server = MockServer::start(|_, _| Reply::ok(r#"[[1704067200000,"42000.1","#));
    let (c, log) = client(&server, test_policy());
    let req = FetchRequest::new("BTCUSDT", Interval::H1, T0, hours(24));
    let err = c.fetch(&req, &mut |_| {}).expect_err("malformed");
    assert!(
        matches!(err, MarketError::MalformedPayload { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("klines body is not valid JSON"), "{msg}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "keeps the parse error as source"
    );
    assert_eq!(server.requests().len(), 1, "not retried");
    assert!(sleeps(&log).is_empty());
}

#[test]
fn malformed_row_names_row_and_field() {
    let server = MockServer::start(|_, _| {
        Reply::ok(format!(
            r#"[[{T0},"1","2","0.5","1.5","10",0,"0",1,"0","0","0"],[{},"oops","2","0.5","1.5","10",0,"0",1,"0","0","0"]]"#,
            T0 + HOUR
        ))
    });
    let (c, _) = client(&server, test_policy());
    let req = FetchRequest::new("BTCUSDT", Interval::H1, T0, hours(24));
    let err = c.fetch(&req, &mut |_| {}).expect_err("malformed");
    let msg = err.to_string();
    assert!(
        msg.contains("klines row 1: field open \"oops\" is not a decimal number"),
        "{msg}"
    );
}

#[test]
fn invalid_symbol_surfaces_binance_msg_without_retrying() {
    let server =
        MockServer::start(|_, _| Reply::json(400, r#"{"code":-1121,"msg":"Invalid symbol."}"#));
    let (c, log) = client(&server, test_policy());
    let req = FetchRequest::new("BTCUSDX", Interval::H1, T0, hours(24));
    let err = c.fetch(&req, &mut |_| {}).expect_err("invalid");
    assert!(
        matches!(
            err,
            MarketError::InvalidRequest {
                status: Some(400),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("Invalid symbol."), "{err}");
    assert_eq!(server.requests().len(), 1);
    assert!(sleeps(&log).is_empty());
}

#[test]
fn unsupported_interval_is_rejected_before_any_request() {
    let server = MockServer::start(|_, _| Reply::ok("[]"));
    let (c, _) = client(&server, test_policy());
    let two_days: Interval = "2d".parse().expect("interval");
    let err = c
        .fetch(
            &FetchRequest::new("BTCUSDT", two_days, T0, hours(480)),
            &mut |_| {},
        )
        .expect_err("2d");
    assert!(
        err.to_string()
            .contains("interval 2d is not a Binance kline interval"),
        "{err}"
    );
    let empty = c
        .fetch(
            &FetchRequest::new("BTCUSDT", Interval::H1, T0, T0),
            &mut |_| {},
        )
        .expect("empty range");
    assert!(empty.is_empty());
    assert!(server.requests().is_empty());
}

fn weighted_server(weight: u32) -> MockServer {
    let market = Market::new(2500);
    MockServer::start(move |_, r| {
        let mut reply = market.page(r);
        reply.headers.retain(|(k, _)| k != "X-MBX-USED-WEIGHT-1M");
        reply.header("X-MBX-USED-WEIGHT-1M", weight)
    })
}

#[test]
fn used_weight_near_the_cap_pauses_before_the_next_page() {
    let server = weighted_server(5500);
    let (c, log) = client(&server, test_policy());
    let c = c.with_weight_pause(Duration::from_secs(3));
    let req = FetchRequest::new("BTCUSDT", Interval::H1, T0, hours(2500));
    assert_eq!(c.fetch(&req, &mut |_| {}).expect("fetch").len(), 2500);
    // Three pages: a pause before the second and the third, none after the last.
    assert_eq!(
        sleeps(&log),
        [Duration::from_secs(3), Duration::from_secs(3)]
    );
}

#[test]
fn used_weight_pause_defaults_to_the_next_minute_boundary() {
    let server = weighted_server(5999);
    let (c, log) = client(&server, test_policy());
    // 12:00:45.000 → 15 s to 12:01:00, plus the 1 s safety margin.
    let c = c.with_clock(Arc::new(|| T0 + 45_000));
    let req = FetchRequest::new("BTCUSDT", Interval::H1, T0, hours(1500));
    assert_eq!(c.fetch(&req, &mut |_| {}).expect("fetch").len(), 1500);
    assert_eq!(sleeps(&log), [Duration::from_secs(16)]);
}

#[test]
fn used_weight_below_the_threshold_does_not_pause() {
    let server = weighted_server(4000);
    let (c, log) = client(&server, test_policy());
    let req = FetchRequest::new("BTCUSDT", Interval::H1, T0, hours(2500));
    assert_eq!(c.fetch(&req, &mut |_| {}).expect("fetch").len(), 2500);
    assert!(sleeps(&log).is_empty());
    // The threshold is configurable.
    let (c2, log2) = client(&server, test_policy());
    let c2 = c2
        .with_weight_threshold(3000)
        .with_weight_pause(Duration::from_secs(1));
    assert_eq!(c2.fetch(&req, &mut |_| {}).expect("fetch").len(), 2500);
    assert_eq!(sleeps(&log2).len(), 2);
}
