//! CoinCapClient against a local mock of CoinCap v3 (`/v3/assets/{slug}/history`, `/v3/candles`).

mod common;

use common::{
    HOUR, MockServer, Recorded, Reply, T0, parse, price, recording_sleeper, sleeps, test_policy,
};
use rps_core::candle::{Candle, Interval};
use rps_market::{CoinCapClient, CoinCapMode, FetchRequest, MarketError, MarketSource, Progress};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KEY: &str = "test-key-123";

fn hours(n: i64) -> i64 {
    T0 + n * HOUR
}

/// CoinCap's long decimal strings.
fn price_usd(i: i64) -> String {
    format!("{}1234567891", price(i, 0.123))
}

fn client(
    server: &MockServer,
    key: Option<&str>,
    mode: CoinCapMode,
) -> (CoinCapClient, Arc<Mutex<Vec<Duration>>>) {
    let (sleeper, log) = recording_sleeper();
    let c = CoinCapClient::new(
        &format!("{}/v3", server.base),
        key.map(str::to_owned),
        mode,
        test_policy(),
    )
    .expect("client")
    .with_sleeper(sleeper);
    (c, log)
}

fn assert_authorized(r: &Recorded) {
    assert_eq!(
        r.header("Authorization"),
        Some(format!("Bearer {KEY}").as_str()),
        "{r:?}"
    );
    assert!(
        r.query
            .iter()
            .all(|(k, v)| k != "apiKey" && !v.contains(KEY)),
        "key in query: {r:?}"
    );
}

/// History points for bars `first..last` except a gap, answered for `start <= time <= end`
/// (inclusive, so a point on a window boundary comes back twice).
fn history_reply(r: &Recorded, first: i64, last: i64, gap: std::ops::Range<i64>) -> Reply {
    if r.header("Authorization") != Some(format!("Bearer {KEY}").as_str()) {
        return Reply::json(401, r#"{"error":"Unauthorized"}"#);
    }
    assert_eq!(r.path, "/v3/assets/bitcoin/history");
    assert_eq!(r.param("interval"), Some("h1"));
    let (start, end) = (r.int("start"), r.int("end"));
    let data: Vec<serde_json::Value> = (first..last)
        .filter(|i| !gap.contains(i))
        .filter(|i| (start..=end).contains(&hours(*i)))
        .map(|i| {
            serde_json::json!({
                "priceUsd": price_usd(i),
                "time": hours(i),
                "circulatingSupply": "19600000.0000000000000000",
                "date": "2024-01-01T00:00:00.000Z",
            })
        })
        .collect();
    Reply::ok(serde_json::json!({ "data": data, "timestamp": T0 }).to_string())
}

#[test]
fn history_pages_by_window_with_bearer_auth() {
    let server = MockServer::start(|_, r| history_reply(r, 5, 1000, 300..310));
    let (c, log) = client(&server, Some(KEY), CoinCapMode::History);
    let req = FetchRequest::new("Bitcoin", Interval::H1, hours(-720), hours(1000));
    let mut progress = Vec::new();
    let bars = c.fetch(&req, &mut |p| progress.push(p)).expect("fetch");

    let want: Vec<Candle> = (5..1000)
        .filter(|i| !(300..310).contains(i))
        .map(|i| {
            let p = parse(&price_usd(i));
            Candle {
                ts: hours(i),
                open: p,
                high: p,
                low: p,
                close: p,
                volume: 0.0,
                ..Default::default()
            }
        })
        .collect();
    assert_eq!(
        bars, want,
        "close-only bars, string decimals parsed, gap kept as a gap"
    );
    let unique: HashSet<i64> = bars.iter().map(|b| b.ts).collect();
    assert_eq!(
        unique.len(),
        bars.len(),
        "the shared window boundary is not duplicated"
    );

    let reqs = server.requests();
    let windows: Vec<(i64, i64)> = reqs
        .iter()
        .map(|r| (r.int("start"), r.int("end")))
        .collect();
    // 30-day windows; the first one is empty (`{"data":[]}`) and is tolerated.
    assert_eq!(
        windows,
        [
            (hours(-720), T0),
            (T0, hours(720)),
            (hours(720), hours(1000))
        ]
    );
    reqs.iter().for_each(assert_authorized);
    assert_eq!(
        progress.last(),
        Some(&Progress {
            bars: bars.len() + 1,
            cursor_ms: hours(1000),
            end_ms: hours(1000)
        }),
        "progress counts rows received (T0+720h came twice)"
    );
    assert_eq!(progress.len(), 3);
    assert!(sleeps(&log).is_empty());
}

/// Candles `first..last` on exchange binance, quote tether, at most `cap` rows per answer.
fn candles_reply(r: &Recorded, last: i64, cap: usize, empty_first: bool, n: usize) -> Reply {
    assert_authorized(r);
    assert_eq!(r.path, "/v3/candles");
    for (k, v) in [
        ("exchange", "binance"),
        ("baseId", "bitcoin"),
        ("quoteId", "tether"),
        ("interval", "h1"),
    ] {
        if r.param(k) != Some(v) {
            return Reply::json(400, format!(r#"{{"error":"{k} is required"}}"#));
        }
    }
    if empty_first && n == 0 {
        return Reply::ok(r#"{"data":[]}"#);
    }
    let (start, end) = (r.int("start"), r.int("end"));
    let data: Vec<serde_json::Value> = (0..last)
        .filter(|i| (start..=end).contains(&hours(*i)))
        .take(cap)
        .map(|i| {
            serde_json::json!({
                "open": price(i, 0.0), "high": price(i, 5.0), "low": price(i, -5.0),
                "close": price(i, 1.0), "volume": format!("{:.8}", 2.0 + i as f64 * 0.5),
                "period": hours(i),
            })
        })
        .collect();
    Reply::ok(serde_json::json!({ "data": data, "timestamp": T0 }).to_string())
}

fn expected_candles(range: std::ops::Range<i64>) -> Vec<Candle> {
    range
        .map(|i| Candle {
            ts: hours(i),
            open: parse(&price(i, 0.0)),
            high: parse(&price(i, 5.0)),
            low: parse(&price(i, -5.0)),
            close: parse(&price(i, 1.0)),
            volume: parse(&format!("{:.8}", 2.0 + i as f64 * 0.5)),
            ..Default::default()
        })
        .collect()
}

#[test]
fn candles_page_by_2000_rows() {
    let server = MockServer::start(|n, r| candles_reply(r, 2500, 2000, false, n));
    let (c, _) = client(&server, Some(KEY), CoinCapMode::binance_tether());
    let req = FetchRequest::new("bitcoin", Interval::H1, T0, hours(2500));
    let bars = c.fetch(&req, &mut |_| {}).expect("fetch");
    assert_eq!(bars, expected_candles(0..2500));
    let windows: Vec<(i64, i64)> = server
        .requests()
        .iter()
        .map(|r| (r.int("start"), r.int("end")))
        .collect();
    assert_eq!(windows, [(T0, hours(2000)), (hours(2000), hours(2500))]);
}

#[test]
fn candles_continue_after_a_page_cut_short() {
    // The server caps at 1500 rows, below the documented 2000: nothing may be lost.
    let server = MockServer::start(|n, r| candles_reply(r, 2500, 1500, false, n));
    let (c, _) = client(&server, Some(KEY), CoinCapMode::binance_tether());
    let req = FetchRequest::new("bitcoin", Interval::H1, T0, hours(2500));
    assert_eq!(
        c.fetch(&req, &mut |_| {}).expect("fetch"),
        expected_candles(0..2500)
    );
    let starts: Vec<i64> = server.requests().iter().map(|r| r.int("start")).collect();
    assert_eq!(starts, [T0, hours(1500)]);
}

#[test]
fn candles_tolerate_an_empty_data_page() {
    let server = MockServer::start(|n, r| candles_reply(r, 2500, 2000, true, n));
    let (c, _) = client(&server, Some(KEY), CoinCapMode::binance_tether());
    let req = FetchRequest::new("bitcoin", Interval::H1, T0, hours(2500));
    // The first window came back `{"data":[]}`: it is a gap, the rest still arrives.
    assert_eq!(
        c.fetch(&req, &mut |_| {}).expect("fetch"),
        expected_candles(2000..2500)
    );
}

#[test]
fn unauthorized_says_to_set_the_key_and_is_not_retried() {
    let server =
        MockServer::start(|_, _| Reply::json(401, r#"{"error":"Invalid or missing API key"}"#));
    for key in [None, Some("wrong")] {
        let (c, log) = client(&server, key, CoinCapMode::History);
        let req = FetchRequest::new("bitcoin", Interval::H1, T0, hours(24));
        let err = c.fetch(&req, &mut |_| {}).expect_err("401");
        assert!(
            matches!(err, MarketError::Unauthorized { status: 401, .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("COINCAP_API_KEY") && msg.contains("Invalid or missing API key"),
            "{msg}"
        );
        assert!(sleeps(&log).is_empty());
    }
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "one request per client, no retries");
    assert_eq!(reqs[0].header("Authorization"), None, "no key, no header");
    assert_eq!(reqs[1].header("Authorization"), Some("Bearer wrong"));
}

#[test]
fn forbidden_is_unauthorized_too() {
    let server = MockServer::start(|_, _| Reply::json(403, "credits exhausted"));
    let (c, _) = client(&server, Some(KEY), CoinCapMode::History);
    let err = c
        .fetch(
            &FetchRequest::new("bitcoin", Interval::H1, T0, hours(24)),
            &mut |_| {},
        )
        .expect_err("403");
    assert!(
        matches!(err, MarketError::Unauthorized { status: 403, .. }),
        "{err:?}"
    );
}

#[test]
fn unsupported_interval_is_rejected_before_any_request() {
    let server = MockServer::start(|_, _| Reply::ok(r#"{"data":[]}"#));
    let (c, _) = client(&server, Some(KEY), CoinCapMode::History);
    let four_hours: Interval = "4h".parse().expect("interval");
    let err = c
        .fetch(
            &FetchRequest::new("bitcoin", four_hours, T0, hours(24)),
            &mut |_| {},
        )
        .expect_err("4h");
    assert!(
        matches!(err, MarketError::InvalidRequest { status: None, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("4h is not served by CoinCap"),
        "{err}"
    );
    assert!(server.requests().is_empty());
}

#[test]
fn malformed_history_is_reported() {
    let server = MockServer::start(|_, _| {
        Reply::ok(
            r#"{"data":[{"priceUsd":"42000.5","time":1704067200000},{"priceUsd":"n/a","time":1704070800000}]}"#,
        )
    });
    let (c, _) = client(&server, Some(KEY), CoinCapMode::History);
    let err = c
        .fetch(
            &FetchRequest::new("bitcoin", Interval::H1, T0, hours(24)),
            &mut |_| {},
        )
        .expect_err("malformed");
    assert!(
        matches!(err, MarketError::MalformedPayload { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("history row 1: field priceUsd \"n/a\" is not a decimal number"),
        "{err}"
    );
}

#[test]
fn rate_limit_and_server_errors_are_retried() {
    let server = MockServer::start(|n, r| match n {
        0 => Reply::json(429, r#"{"error":"slow down"}"#).header("Retry-After", 4),
        1 => Reply::json(500, "oops"),
        _ => history_reply(r, 0, 24, 0..0),
    });
    let (c, log) = client(&server, Some(KEY), CoinCapMode::History);
    let bars = c
        .fetch(
            &FetchRequest::new("bitcoin", Interval::H1, T0, hours(24)),
            &mut |_| {},
        )
        .expect("fetch");
    assert_eq!(bars.len(), 24);
    let waits = sleeps(&log);
    assert_eq!(waits.len(), 2);
    assert_eq!(waits[0], Duration::from_secs(4));
    assert!(
        waits[1] >= Duration::from_millis(10) && waits[1] <= Duration::from_millis(20),
        "{waits:?}"
    );
}
