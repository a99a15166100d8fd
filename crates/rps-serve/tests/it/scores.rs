//! The online accuracy: the `rps_score_*` / `rps_accuracy_*` series of `/metrics` and
//! `GET /api/scores`, from a real PostgreSQL `scores` table seeded with known values
//! (`RPS_TEST_DATABASE_URL`, crates/rps-serve/tests/servers.sh).
//!
//! The seed, per bar `i` of BTC-USD (hourly, `bar_time = START + i h`, `i` in 0..200; the newest
//! scored bar is 199, so the 24 h window is bars 176..=199 and the 7-day one 32..=199):
//! - btc-volatility v1 (champion): QLIKE 0.2, except 10.0 at bar 175 (exactly 24 h before the
//!   newest: outside the 24 h window), 50.0 at bar 31 (exactly 7 days before: outside the 7-day
//!   one) and 5.0 at bars 100..=109 (where HAR-RV has no score: outside the ratio's join);
//!   log error 0.1; covered_80 NULL before bar 40, then false every fifth bar (coverage 0.8);
//! - btc-volatility v2 (challenger): QLIKE 0.3 from bar 190 only (10 bars: fewer than
//!   `min_scores`, no ratio);
//! - har_rv_log v1: QLIKE 0.25 (log error 0.2) on every bar but 100..=109; har_rv_log v2 0.25
//!   from bar 190; ewma v0: 0.4 on every bar;
//! - ETH-USD: btc-volatility v1, QLIKE 1.0 on bars 0..=10 only (its windows end at its bar 10).

use crate::support::*;
use rps_tracking::Registry as _;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The stream's schema, from its migrations (what `rps stream migrate` applies).
pub const DDL: [&str; 4] = [
    include_str!("../../../rps-stream/migrations/0001_init.sql"),
    include_str!("../../../rps-stream/migrations/0002_flow_columns.sql"),
    include_str!("../../../rps-stream/migrations/0003_distribution_columns.sql"),
    include_str!("../../../rps-stream/migrations/0004_scores.sql"),
];

/// 2026-01-01T00:00:00Z
pub const START: i64 = 1_767_225_600;
const BARS: i64 = 200;
const NEWEST: i64 = BARS - 1;

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn admin() -> tokio_postgres::Client {
    let base = std::env::var("RPS_TEST_DATABASE_URL")
        .expect("RPS_TEST_DATABASE_URL (start crates/rps-serve/tests/servers.sh)");
    let (admin, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    admin
}

fn db_name(tag: &str) -> String {
    format!("rps_serve_{tag}_{}", std::process::id())
}

/// A client of the database at `url` (its connection task on the current runtime).
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (db, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    db
}

/// A fresh database `tag` under `RPS_TEST_DATABASE_URL` with the first `ddl` migrations; its URL.
/// The one helper every PostgreSQL test of rps-serve starts from (scores, dashboard, forecast).
pub fn fresh_database(tag: &str, ddl: &[&str]) -> String {
    let base = std::env::var("RPS_TEST_DATABASE_URL")
        .expect("RPS_TEST_DATABASE_URL (start crates/rps-serve/tests/servers.sh)");
    let name = db_name(tag);
    let url = match base.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => panic!("RPS_TEST_DATABASE_URL has no database: {base}"),
    };
    runtime().block_on(async {
        let admin = admin().await;
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            admin.batch_execute(&sql).await.unwrap();
        }
        let db = connect(&url).await;
        for sql in ddl {
            db.batch_execute(sql).await.unwrap();
        }
    });
    url
}

/// Drop the database `tag` made, even with sessions open.
fn drop_database(tag: &str) {
    runtime().block_on(async {
        admin()
            .await
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", db_name(tag)))
            .await
            .unwrap();
    });
}

/// One scores row: (model, version, alias, symbol, bar index, qlike, log_error, covered_80).
pub type Row = (
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
    i64,
    f64,
    f64,
    Option<bool>,
);

/// Insert scores rows into the database at `url`.
pub fn insert(url: &str, rows: &[Row]) {
    runtime().block_on(async {
        let (mut db, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let tx = db.transaction().await.unwrap();
        let stmt = tx
            .prepare(
                "INSERT INTO scores (model, version, alias, symbol, bar_time, predicted_from, \
                 realized, forecast, qlike, log_error, covered_80) \
                 VALUES ($1, $2, $3, $4, $5, $6, 0.01, 0.01, $7, $8, $9)",
            )
            .await
            .unwrap();
        for (model, version, alias, symbol, i, qlike, log_error, covered) in rows {
            let t = chrono::DateTime::from_timestamp(START + 3600 * i, 0).unwrap();
            let from = t - chrono::Duration::hours(1);
            tx.execute(
                &stmt,
                &[
                    model, version, alias, symbol, &t, &from, qlike, log_error, covered,
                ],
            )
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
    });
}

/// The seed described at the top of this file.
pub fn seed_rows() -> Vec<Row> {
    let mut rows = Vec::new();
    for i in 0..BARS {
        let q1 = match i {
            175 => 10.0,
            31 => 50.0,
            100..=109 => 5.0,
            _ => 0.2,
        };
        let covered = (i >= 40).then_some(i % 5 != 0);
        rows.push((
            "btc-volatility",
            "1",
            Some("champion"),
            "BTC-USD",
            i,
            q1,
            0.1,
            covered,
        ));
        if !(100..=109).contains(&i) {
            rows.push(("har_rv_log", "1", None, "BTC-USD", i, 0.25, 0.2, None));
        }
        if i >= 190 {
            rows.push((
                "btc-volatility",
                "2",
                Some("challenger"),
                "BTC-USD",
                i,
                0.3,
                0.3,
                None,
            ));
            rows.push(("har_rv_log", "2", None, "BTC-USD", i, 0.25, 0.2, None));
        }
        rows.push(("ewma", "0", None, "BTC-USD", i, 0.4, 0.5, None));
        if i <= 10 {
            rows.push((
                "btc-volatility",
                "1",
                Some("champion"),
                "ETH-USD",
                i,
                1.0,
                1.0,
                Some(true),
            ));
        }
    }
    rows
}

/// A database with the full schema and [`seed_rows`].
pub fn seeded_database(tag: &str) -> String {
    let url = fresh_database(tag, &DDL);
    insert(&url, &seed_rows());
    url
}

/// A registry whose live set is champion v1 and challenger v2.
pub fn live_fixture() -> Fixture {
    let f = Fixture::empty();
    f.register();
    f.register();
    f.promote(1);
    f.registry.set_alias(NAME, "challenger", 2).unwrap();
    f
}

/// Wait until the server has read the scores `n` times in all (successfully) or failed `errors`
/// times; panics after 20 s.
pub fn wait_for(s: &rps_serve::Server, refreshes: u64, errors: u64) {
    use std::sync::atomic::Ordering;
    let t0 = Instant::now();
    let c = &s.state().scores;
    while c.refreshes.load(Ordering::Relaxed) < refreshes
        || c.errors.load(Ordering::Relaxed) < errors
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no refresh: {} refreshes, {} errors",
            c.refreshes.load(Ordering::Relaxed),
            c.errors.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn scrape(s: &rps_serve::Server) -> String {
    let r = client().get(format!("{}/metrics", s.url())).send().unwrap();
    assert_eq!(r.status(), 200);
    r.text().unwrap()
}

/// The value of the sample `series` (name and labels exactly as exported), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .map(|v| v.parse().unwrap())
    })
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12 * b.abs().max(1.0)
}

#[track_caller]
fn assert_sample(text: &str, series: &str, want: f64) {
    let got = sample(text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    assert!(close(got, want), "{series} = {got}, want {want}");
}

fn params_file(dir: &std::path::Path, yaml: &str) -> String {
    let p = dir.join("params.yaml");
    std::fs::write(&p, yaml).unwrap();
    p.to_str().unwrap().to_owned()
}

const V1: &str = "symbol=\"BTC-USD\",model=\"btc-volatility\",version=\"1\",alias=\"champion\"";

/// A version with `har_rv` scores (the smeared HAR-RV) is divided by them; one with only
/// `har_rv_log` (saved before the margin's smearing was recorded) by those.
#[test]
#[ignore = "needs PostgreSQL (RPS_TEST_DATABASE_URL); make test runs it"]
fn the_ratio_prefers_the_smeared_har_rv_and_falls_back_to_the_log_one() {
    let url = seeded_database("scores_har_rv");
    // har_rv of v1: QLIKE 0.16 on the bars har_rv_log has too, but 120..=129 (left out of the
    // join as well).
    let rows: Vec<_> = (0..BARS)
        .filter(|i| !(100..=109).contains(i) && !(120..=129).contains(i))
        .map(|i| ("har_rv", "1", None, "BTC-USD", i, 0.16, 0.2, None))
        .collect();
    insert(&url, &rows);
    let f = live_fixture();
    let mut cfg = f.config();
    cfg.database_url = Some(url);
    cfg.params = Some(params_file(
        f.dir.path(),
        "train:\n  task: volatility\nmonitor:\n  min_scores: 10\n  refresh_seconds: 1\n",
    ));
    let s = rps_serve::Server::spawn(cfg).unwrap();
    wait_for(&s, 1, 0);
    let text = scrape(&s);
    // v1 over har_rv on its 148 bars of the 7-day window (32..=199 without 100..=109 and
    // 120..=129): 147 at 0.2 and bar 175's 10.0.
    let v1 = (147.0 * 0.2 + 10.0) / 148.0;
    assert_sample(
        &text,
        "rps_score_qlike_ratio_vs_har{symbol=\"BTC-USD\",alias=\"champion\",version=\"1\",baseline=\"har_rv\",window=\"7d\"}",
        v1 / 0.16,
    );
    assert!(
        !text.contains("alias=\"champion\",version=\"1\",baseline=\"har_rv_log\""),
        "one ratio per version: {text}"
    );
    // v2 has har_rv_log scores only (bars 190..=199).
    assert_sample(
        &text,
        "rps_score_qlike_ratio_vs_har{symbol=\"BTC-USD\",alias=\"challenger\",version=\"2\",baseline=\"har_rv_log\",window=\"7d\"}",
        0.3 / 0.25,
    );
    let har = "symbol=\"BTC-USD\",model=\"har_rv\",version=\"1\",alias=\"\"";
    assert_sample(
        &text,
        &format!("rps_score_count{{{har},window=\"7d\"}}"),
        148.0,
    );
}

#[test]
#[ignore = "needs PostgreSQL (RPS_TEST_DATABASE_URL); make test runs it"]
fn metrics_export_the_windows_counts_coverage_ratio_and_age() {
    let url = seeded_database("scores_metrics");
    let f = live_fixture();
    let mut cfg = f.config();
    cfg.database_url = Some(url.clone());
    // Thresholds from a params file (its other sections are not read).
    cfg.params = Some(params_file(
        f.dir.path(),
        "train:\n  task: volatility\nmonitor:\n  qlike_margin: 0.07\n  coverage_low: 0.7\n  \
         coverage_high: 0.9\n  stale_bars: 3\n  min_scores: 158\n  refresh_seconds: 1\n",
    ));
    let s = rps_serve::Server::spawn(cfg).unwrap();
    wait_for(&s, 1, 0);
    let before = rps_serve_now();
    let text = scrape(&s);
    let after = rps_serve_now();

    // The thresholds, and (stale_bars + 1) one-hour bars.
    assert_sample(&text, "rps_accuracy_qlike_margin", 0.07);
    assert_sample(&text, "rps_accuracy_coverage_low", 0.7);
    assert_sample(&text, "rps_accuracy_coverage_high", 0.9);
    assert_sample(&text, "rps_accuracy_max_score_age_seconds", 4.0 * 3600.0);
    assert_sample(&text, "rps_score_refresh_errors_total", 0.0);
    for family in [
        "rps_score_qlike_mean",
        "rps_score_log_error_mean",
        "rps_score_count",
        "rps_score_coverage_80",
        "rps_score_qlike_ratio_vs_har",
        "rps_score_newest_bar_timestamp_seconds",
        "rps_score_newest_bar_age_seconds",
        "rps_accuracy_qlike_margin",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} gauge"))
                && text.contains(&format!("# HELP {family} ")),
            "{family} has HELP and TYPE"
        );
    }
    assert!(text.contains("# TYPE rps_score_refresh_errors_total counter"));

    // 24 h: bars 176..=199 (bar 175, exactly 24 h before the newest, is out).
    assert_sample(
        &text,
        &format!("rps_score_count{{{V1},window=\"24h\"}}"),
        24.0,
    );
    assert_sample(
        &text,
        &format!("rps_score_qlike_mean{{{V1},window=\"24h\"}}"),
        0.2,
    );
    assert_sample(
        &text,
        &format!("rps_score_log_error_mean{{{V1},window=\"24h\"}}"),
        0.1,
    );
    // 7 days: bars 32..=199 (bar 31 is out; bar 175 and 100..=109 in).
    let week = (157.0 * 0.2 + 10.0 + 10.0 * 5.0) / 168.0;
    assert_sample(
        &text,
        &format!("rps_score_count{{{V1},window=\"7d\"}}"),
        168.0,
    );
    assert_sample(
        &text,
        &format!("rps_score_qlike_mean{{{V1},window=\"7d\"}}"),
        week,
    );
    // Coverage over the rows with a band only (40..=199: 160 rows, 32 missed).
    assert_sample(
        &text,
        &format!("rps_score_coverage_80{{{V1},window=\"7d\"}}"),
        0.8,
    );
    assert!(
        !text.contains("rps_score_coverage_80{symbol=\"BTC-USD\",model=\"ewma\""),
        "no coverage for a series without a band"
    );
    // Baselines: alias "".
    let ewma = "symbol=\"BTC-USD\",model=\"ewma\",version=\"0\",alias=\"\"";
    assert_sample(
        &text,
        &format!("rps_score_qlike_mean{{{ewma},window=\"7d\"}}"),
        0.4,
    );
    assert_sample(
        &text,
        &format!("rps_score_count{{{ewma},window=\"24h\"}}"),
        24.0,
    );
    let har = "symbol=\"BTC-USD\",model=\"har_rv_log\",version=\"1\",alias=\"\"";
    assert_sample(
        &text,
        &format!("rps_score_count{{{har},window=\"7d\"}}"),
        158.0,
    );
    let v2 = "symbol=\"BTC-USD\",model=\"btc-volatility\",version=\"2\",alias=\"challenger\"";
    assert_sample(
        &text,
        &format!("rps_score_count{{{v2},window=\"7d\"}}"),
        10.0,
    );
    assert_sample(
        &text,
        &format!("rps_score_qlike_mean{{{v2},window=\"24h\"}}"),
        0.3,
    );

    // The ratio on the same bars (the inner join leaves out 100..=109): 158 bars >= min_scores.
    let same_bars = (157.0 * 0.2 + 10.0) / 158.0;
    assert_sample(
        &text,
        "rps_score_qlike_ratio_vs_har{symbol=\"BTC-USD\",alias=\"champion\",version=\"1\",baseline=\"har_rv_log\",window=\"7d\"}",
        same_bars / 0.25,
    );
    assert!(
        !text.contains("rps_score_qlike_ratio_vs_har{symbol=\"BTC-USD\",alias=\"challenger\""),
        "10 bars are fewer than min_scores: {text}"
    );

    // Each symbol's windows end at its own newest scored bar: ETH-USD's at its bar 10.
    let eth = "symbol=\"ETH-USD\",model=\"btc-volatility\",version=\"1\",alias=\"champion\"";
    assert_sample(
        &text,
        &format!("rps_score_count{{{eth},window=\"24h\"}}"),
        11.0,
    );
    assert_sample(
        &text,
        &format!("rps_score_qlike_mean{{{eth},window=\"7d\"}}"),
        1.0,
    );

    // The newest scored bar closes one bar after its bar_time; its age counts from then.
    #[allow(clippy::cast_precision_loss)]
    let closes = (START + 3600 * (NEWEST + 1)) as f64;
    assert_sample(
        &text,
        "rps_score_newest_bar_timestamp_seconds{symbol=\"BTC-USD\"}",
        closes,
    );
    let age = sample(
        &text,
        "rps_score_newest_bar_age_seconds{symbol=\"BTC-USD\"}",
    )
    .unwrap();
    assert!(
        age >= before - closes - 1e-3 && age <= after - closes + 1e-3,
        "age {age} from {closes} between {before} and {after}"
    );
    #[allow(clippy::cast_precision_loss)]
    let eth_closes = (START + 3600 * 11) as f64;
    assert_sample(
        &text,
        "rps_score_newest_bar_timestamp_seconds{symbol=\"ETH-USD\"}",
        eth_closes,
    );

    // One more scored bar shows on the next refresh (every second): the windows move with it.
    let n = s
        .state()
        .scores
        .refreshes
        .load(std::sync::atomic::Ordering::Relaxed);
    insert(
        &url,
        &[(
            "btc-volatility",
            "1",
            Some("champion"),
            "BTC-USD",
            BARS,
            2.6,
            0.1,
            Some(true),
        )],
    );
    wait_for(&s, n + 2, 0);
    let text = scrape(&s);
    assert_sample(
        &text,
        &format!("rps_score_count{{{V1},window=\"24h\"}}"),
        24.0,
    );
    assert_sample(
        &text,
        &format!("rps_score_qlike_mean{{{V1},window=\"24h\"}}"),
        (23.0 * 0.2 + 2.6) / 24.0,
    );
    drop(s);

    // One bar more than the join has: no ratio.
    let mut cfg = f.config();
    cfg.database_url = Some(url);
    cfg.monitor.min_scores = 159;
    cfg.monitor.refresh_seconds = 1;
    let s = rps_serve::Server::spawn(cfg).unwrap();
    wait_for(&s, 1, 0);
    let text = scrape(&s);
    assert!(!text.contains("rps_score_qlike_ratio_vs_har{"), "{text}");
    assert_sample(&text, "rps_accuracy_qlike_margin", 0.05);
    assert_sample(&text, "rps_accuracy_max_score_age_seconds", 3.0 * 3600.0);
}

fn rps_serve_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
#[ignore = "needs PostgreSQL (RPS_TEST_DATABASE_URL); make test runs it"]
fn a_database_that_goes_away_keeps_the_last_values_and_counts_errors() {
    let tag = "scores_gone";
    let url = fresh_database(tag, &DDL);
    insert(&url, &seed_rows());
    let f = live_fixture();
    let mut cfg = f.config();
    cfg.database_url = Some(url);
    cfg.monitor.refresh_seconds = 1;
    cfg.store_timeout = Duration::from_secs(2);
    let s = rps_serve::Server::spawn(cfg).unwrap();
    wait_for(&s, 1, 0);
    let series = format!("rps_score_qlike_mean{{{V1},window=\"24h\"}}");
    assert_sample(&scrape(&s), &series, 0.2);
    drop_database(tag);
    wait_for(&s, 1, 2);
    let text = scrape(&s);
    assert_sample(&text, &series, 0.2);
    assert!(
        sample(&text, "rps_score_refresh_errors_total").unwrap() >= 2.0,
        "{text}"
    );
    // The rest of the service does not care.
    assert_eq!(
        client()
            .get(format!("{}/ready", s.url()))
            .send()
            .unwrap()
            .status(),
        200
    );
    expect_error(
        client()
            .get(format!("{}/api/scores", s.url()))
            .send()
            .unwrap(),
        502,
        "database_error",
    );
}

#[test]
#[ignore = "needs PostgreSQL (RPS_TEST_DATABASE_URL); make test runs it"]
fn a_database_without_the_scores_table_has_no_score_series() {
    let url = fresh_database("scores_old", &DDL[..3]);
    let f = live_fixture();
    let mut cfg = f.config();
    cfg.database_url = Some(url);
    cfg.monitor.refresh_seconds = 1;
    let s = rps_serve::Server::spawn(cfg).unwrap();
    wait_for(&s, 2, 0);
    let text = scrape(&s);
    assert!(!text.contains("rps_score_qlike_mean{"), "{text}");
    assert!(
        !text.contains("rps_score_newest_bar_age_seconds{"),
        "{text}"
    );
    assert_sample(&text, "rps_score_refresh_errors_total", 0.0);
    assert_sample(&text, "rps_accuracy_coverage_low", 0.74);
    let r: Value = client()
        .get(format!("{}/api/scores", s.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(r["end"].is_null(), "{r}");
    assert_eq!(r["series"], serde_json::json!([]));
}

#[test]
fn without_a_database_the_thresholds_are_exported_and_api_scores_is_503() {
    let f = live_fixture();
    let s = f.start();
    let text = scrape(&s);
    assert_sample(&text, "rps_accuracy_qlike_margin", 0.05);
    assert_sample(&text, "rps_accuracy_coverage_high", 0.86);
    assert_sample(&text, "rps_accuracy_max_score_age_seconds", 3.0 * 3600.0);
    assert_sample(&text, "rps_score_refresh_errors_total", 0.0);
    assert!(!text.contains("rps_score_count{"), "{text}");
    expect_error(
        client()
            .get(format!("{}/api/scores", s.url()))
            .send()
            .unwrap(),
        503,
        "no_database",
    );
    // A bad --params file is a configuration error at start.
    let mut cfg = f.config();
    cfg.params = Some(params_file(
        f.dir.path(),
        "monitor:\n  coverage_low: 0.95\n",
    ));
    let e = rps_serve::Server::spawn(cfg).unwrap_err();
    assert_eq!(e.exit_code(), 3, "{e}");
    assert!(e.to_string().contains("monitor.coverage_high"), "{e}");
}

#[test]
#[ignore = "needs PostgreSQL (RPS_TEST_DATABASE_URL); make test runs it"]
fn api_scores_gives_rolling_qlike_and_the_champions_coverage() {
    let url = seeded_database("scores_api");
    let f = live_fixture();
    let mut cfg = f.config();
    cfg.database_url = Some(url);
    let s = rps_serve::Server::spawn(cfg).unwrap();
    let c = client();
    let r: Value = c
        .get(format!("{}/api/scores?symbol=BTC-USD&hours=24", s.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["end"], "2026-01-09T07:00:00Z", "bar 199: {r}");
    assert_eq!(r["champion"], "1");
    assert_eq!(r["thresholds"]["coverage_low"], 0.74);
    assert_eq!(r["thresholds"]["coverage_high"], 0.86);
    let ids: Vec<(String, String, String)> = r["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["model"].as_str().unwrap().to_owned(),
                s["version"].as_str().unwrap().to_owned(),
                s["alias"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let id = |m: &str, v: &str, a: &str| (m.to_owned(), v.to_owned(), a.to_owned());
    assert_eq!(
        ids,
        [
            id("btc-volatility", "1", "champion"),
            id("btc-volatility", "2", "challenger"),
            id("ewma", "0", ""),
            id("har_rv_log", "1", ""),
            id("har_rv_log", "2", ""),
        ],
        "{r}"
    );
    let v1 = r["series"][0]["points"].as_array().unwrap();
    assert_eq!(v1.len(), 24, "bars 176..=199");
    assert_eq!(v1[0]["t"], "2026-01-08T08:00:00Z");
    // At bar 176 the rolling 24 h window is bars 153..=176, with bar 175's 10.0.
    assert!(
        close(v1[0]["value"].as_f64().unwrap(), (23.0 * 0.2 + 10.0) / 24.0),
        "{}",
        v1[0]
    );
    assert_eq!(v1[0]["n"], 24);
    // At bar 199 it is 176..=199: bar 175, exactly 24 h before, is out.
    assert!(close(v1[23]["value"].as_f64().unwrap(), 0.2), "{}", v1[23]);
    assert_eq!(v1[23]["n"], 24);
    // v2 starts at bar 190: its windows grow from 1 row.
    let v2 = r["series"][1]["points"].as_array().unwrap();
    assert_eq!(
        (v2.len(), v2[0]["n"].as_i64(), v2[9]["n"].as_i64()),
        (10, Some(1), Some(10))
    );
    // The champion's coverage: 7 days of rows with a band.
    let cov = r["coverage"]["points"].as_array().unwrap();
    assert_eq!(r["coverage"]["version"], "1");
    assert_eq!(cov.len(), 24);
    assert!(
        close(cov[23]["value"].as_f64().unwrap(), 0.8),
        "{}",
        cov[23]
    );
    assert_eq!(cov[23]["n"], 160);
    // Another symbol's span ends at its own newest bar; an unknown one is empty.
    let eth: Value = c
        .get(format!("{}/api/scores?symbol=ETH-USD&hours=5", s.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(eth["end"], "2026-01-01T10:00:00Z");
    assert_eq!(eth["series"][0]["points"].as_array().unwrap().len(), 5);
    assert_eq!(eth["coverage"]["points"][4]["value"], 1.0);
    let none: Value = c
        .get(format!("{}/api/scores?symbol=XRP-USD", s.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(
        none["end"].is_null() && none["coverage"].is_null(),
        "{none}"
    );
    // window=7d: the same bars, each the mean over the 7 days to it, as the 7d metrics.
    let week: Value = c
        .get(format!(
            "{}/api/scores?symbol=BTC-USD&hours=24&window=7d",
            s.url()
        ))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(week["window"], "7d");
    assert_eq!(r["window"], "24h", "the default");
    let w1 = week["series"][0]["points"].as_array().unwrap();
    assert_eq!(w1.len(), 24);
    // At bar 199 the window is bars 32..=199: bar 31's 50.0 exactly 7 days before is out.
    assert!(
        close(
            w1[23]["value"].as_f64().unwrap(),
            (157.0 * 0.2 + 10.0 + 10.0 * 5.0) / 168.0
        ),
        "{}",
        w1[23]
    );
    assert_eq!(w1[23]["n"], 168);
    // At bar 176 it is bars 9..=176: bar 31's 50.0 is in.
    assert!(
        close(
            w1[0]["value"].as_f64().unwrap(),
            (156.0 * 0.2 + 50.0 + 10.0 + 10.0 * 5.0) / 168.0
        ),
        "{}",
        w1[0]
    );
    // A year of hours is allowed (the README's plot of 2021).
    let year = c
        .get(format!("{}/api/scores?symbol=BTC-USD&hours=8784", s.url()))
        .send()
        .unwrap();
    assert_eq!(year.status(), 200);
    for bad in [
        "hours=0",
        "hours=8785",
        "hours=abc",
        "hours=-1",
        "window=30d",
        "window=",
    ] {
        expect_error(
            c.get(format!("{}/api/scores?{bad}", s.url()))
                .send()
                .unwrap(),
            400,
            "invalid_query",
        );
    }
}
