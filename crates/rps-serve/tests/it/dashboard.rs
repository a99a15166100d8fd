//! `GET /dashboard` and `GET /api/history`: the stream's PostgreSQL tables behind the page, and
//! the page rendered by headless Chromium.
//!
//! The PostgreSQL tests need `RPS_TEST_DATABASE_URL` (crates/rps-serve/tests/servers.sh starts
//! one; `make test` runs them); the browser test also needs `chromium` (Debian package; or set
//! `RPS_CHROMIUM`). Screenshots go to `RPS_TEST_ARTIFACTS` (default: cargo's per-crate test temp
//! folder, `<target>/tmp`), as `dashboard.png` and `dashboard-no-database.png`.

use crate::support::*;
use rps_serve::RealizedEstimator as Estimator;
use rps_tracking::Registry as _;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

/// The stream's schema, from its migrations (what `rps stream migrate` applies).
const DDL: [&str; 4] = crate::scores::DDL;

const BARS: i64 = 48;
/// 2026-01-01T00:00:00Z
const START: i64 = 1_767_225_600;

fn bar(i: i64) -> (f64, f64, f64, f64) {
    #[allow(clippy::cast_precision_loss)]
    let x = i as f64;
    let close = 90_000.0 + 800.0 * (x / 6.0).sin() + 20.0 * x;
    let range = 0.004 + 0.003 * (x / 5.0).cos().abs();
    (
        close * (1.0 - range / 3.0),
        close * (1.0 + range),
        close * (1.0 - range),
        close,
    )
}

/// A fresh database under `RPS_TEST_DATABASE_URL` with the schema and 48 hourly bars of
/// BTC-USD, predictions of versions 1 (with its median and 80 % band) and 2 (a model without
/// quantiles) of btc-volatility for every bar, and rows another model and another symbol wrote
/// (which must not show). Returns its URL.
fn database(tag: &str) -> String {
    database_with(tag, &DDL)
}

/// [`database`] on the schema of the first `ddl` migrations only.
fn database_with(tag: &str, ddl: &[&str]) -> String {
    let url = crate::scores::fresh_database(&format!("dashboard_{tag}"), ddl);
    crate::scores::runtime().block_on(async {
        let db = crate::scores::connect(&url).await;
        let has_band = ddl.len() >= 3;
        for i in 0..BARS {
            let t = chrono::DateTime::from_timestamp(START + 3600 * i, 0).unwrap();
            let (o, h, l, c) = bar(i);
            db.execute(
                "INSERT INTO candles VALUES ('BTC-USD', $1, $2, $3, $4, $5, 12.5)",
                &[&t, &o, &h, &l, &c],
            )
            .await
            .unwrap();
            db.execute(
                "INSERT INTO candles VALUES ('ETH-USD', $1, 1, 2, 1, 1.5, 1)",
                &[&t],
            )
            .await
            .unwrap();
            for (version, alias, scale) in [("1", "champion", 1.15), ("2", "challenger", 0.8)] {
                let vol = scale * realized(Estimator::GarmanKlass, i);
                db.execute(
                    "INSERT INTO predictions (model, version, alias, symbol, bar_time, task, volatility) \
                     VALUES ('btc-volatility', $1, $2, 'BTC-USD', $3, 'volatility', $4)",
                    &[&version, &alias, &t, &vol],
                )
                .await
                .unwrap();
            }
            if has_band {
                // v1 has quantiles: its band brackets its mean (what `rps stream consume` writes).
                let vol = 1.15 * realized(Estimator::GarmanKlass, i);
                db.execute(
                    "UPDATE predictions SET median = $2, lower_80 = $3, upper_80 = $4 \
                     WHERE model = 'btc-volatility' AND version = '1' AND bar_time = $1",
                    &[&t, &(0.95 * vol), &(0.6 * vol), &(1.6 * vol)],
                )
                .await
                .unwrap();
            }
            // The signal model's rows, as `rps stream consume` writes them.
            let signal = ["sell", "hold", "buy"][usize::try_from(i % 3).unwrap()];
            db.execute(
                "INSERT INTO predictions (model, version, alias, symbol, bar_time, task, signal, p_sell, p_hold, p_buy) \
                 VALUES ('btc-signal', '1', 'champion', 'BTC-USD', $1, 'signal', $2, 0.2, 0.5, 0.3)",
                &[&t, &signal],
            )
            .await
            .unwrap();
            db.execute(
                "INSERT INTO predictions (model, version, symbol, bar_time, task, volatility) \
                 VALUES ('other-model', '7', 'BTC-USD', $1, 'volatility', 0.5)",
                &[&t],
            )
            .await
            .unwrap();
        }
    });
    if ddl.len() >= 4 {
        crate::scores::insert(&url, &score_rows());
    }
    url
}

/// Scores of every bar (migration 0004): the champion v1 (with its band, covered four bars in
/// five), the challenger v2, and the baselines HAR-RV (of v1) and EWMA.
fn score_rows() -> Vec<crate::scores::Row> {
    let mut rows = Vec::new();
    for i in 0..BARS {
        #[allow(clippy::cast_precision_loss)]
        let wave = 0.05 * ((i as f64) / 4.0).sin();
        let covered = Some(i % 5 != 0);
        let sym = "BTC-USD";
        rows.push((
            "btc-volatility",
            "1",
            Some("champion"),
            sym,
            i,
            0.20 + wave,
            0.1,
            covered,
        ));
        rows.push((
            "btc-volatility",
            "2",
            Some("challenger"),
            sym,
            i,
            0.26 + wave,
            0.1,
            None,
        ));
        rows.push(("har_rv_log", "1", None, sym, i, 0.23, 0.1, None));
        rows.push(("ewma", "0", None, sym, i, 0.30 - wave, 0.1, None));
    }
    rows
}

/// A registry whose live set is champion v1, challenger v2, and a server on `database_url`.
/// Bar `i`'s volatility by `estimator`, computed here from the bar itself.
fn realized(estimator: Estimator, i: i64) -> f64 {
    let (open, high, low, close) = bar(i);
    let c = rps_core::Candle {
        ts: 0,
        open,
        high,
        low,
        close,
        volume: 12.5,
        ..Default::default()
    };
    match estimator {
        Estimator::Parkinson => rps_core::volatility::parkinson(high, low),
        Estimator::GarmanKlass => rps_core::volatility::garman_klass(&c),
    }
}

fn serve(database_url: Option<String>) -> (Fixture, rps_serve::Server) {
    serve_with(database_url, Estimator::GarmanKlass)
}

fn serve_with(database_url: Option<String>, estimator: Estimator) -> (Fixture, rps_serve::Server) {
    let f = Fixture::empty();
    f.register();
    f.register();
    f.promote(1);
    f.registry.set_alias(NAME, "challenger", 2).unwrap();
    let mut cfg = f.config();
    cfg.database_url = database_url;
    cfg.realized_estimator = estimator;
    let s = rps_serve::Server::spawn(cfg).unwrap();
    (f, s)
}

#[test]
fn the_page_is_self_contained_and_history_needs_a_database() {
    let (_f, s) = serve(None);
    let c = client();
    let r = c.get(format!("{}/dashboard", s.url())).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = r.text().unwrap();
    assert!(
        html.contains("<svg") && html.contains("/api/history"),
        "{html}"
    );
    for external in ["src=\"http", "href=\"http", "src='http", "@import", "<link"] {
        assert!(
            !html.contains(external),
            "the page loads nothing from elsewhere: {external}"
        );
    }
    let msg = expect_error(
        c.get(format!("{}/api/history", s.url())).send().unwrap(),
        503,
        "no_database",
    );
    assert!(msg.contains("--database-url"), "{msg}");
}

#[test]
#[ignore = "needs PostgreSQL (RPS_TEST_DATABASE_URL); make test runs it"]
fn history_reads_the_stream_tables() {
    let url = database("history");
    let (_f, s) = serve(Some(url.clone()));
    let c = client();
    let h: Value = c
        .get(format!("{}/api/history?symbol=BTC-USD&hours=24", s.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let candles = h["candles"].as_array().unwrap_or_else(|| panic!("{h}"));
    assert_eq!(candles.len(), 24, "the last 24 bars: {h}");
    assert_eq!(candles[23]["t"], "2026-01-02T23:00:00Z");
    assert_eq!(candles[0]["t"], "2026-01-02T00:00:00Z");
    let (_, _, _, close) = bar(BARS - 1);
    assert_eq!(candles[23]["close"].as_f64(), Some(close));
    // Realized volatility by the default estimator (Garman–Klass, params.yaml's target), and by
    // Parkinson's when the server is told so: the two differ on these bars.
    let gk = candles[23]["realized"].as_f64().unwrap();
    assert!((gk - realized(Estimator::GarmanKlass, BARS - 1)).abs() < 1e-15);
    let (_f2, s2) = serve_with(Some(url), Estimator::Parkinson);
    let h2: Value = c
        .get(format!("{}/api/history?symbol=BTC-USD&hours=24", s2.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let parkinson = h2["candles"][23]["realized"].as_f64().unwrap();
    assert!((parkinson - realized(Estimator::Parkinson, BARS - 1)).abs() < 1e-15);
    assert!((parkinson - gk).abs() > 1e-5, "{parkinson} vs {gk}");
    let series = h["series"].as_array().unwrap();
    let versions: Vec<(&str, &str, &str)> = series
        .iter()
        .map(|s| {
            (
                s["model"].as_str().unwrap(),
                s["version"].as_str().unwrap(),
                s["task"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        versions,
        [
            ("btc-volatility", "1", "volatility"),
            ("btc-volatility", "2", "volatility"),
            ("btc-signal", "1", "signal"),
        ],
        "the served model's versions, then the signal model's; not other-model: {h}"
    );
    assert_eq!(
        h["models"],
        serde_json::json!(["btc-volatility", "btc-signal"])
    );
    assert_eq!(series[1]["alias"], "challenger");
    assert_eq!(series[1]["points"].as_array().unwrap().len(), 24);
    assert!(series[0]["points"][0]["volatility"].is_f64());
    assert_eq!(
        series[2]["points"][23]["signal"], "buy",
        "bar 47: 47 % 3 = 2"
    );
    assert!(series[2]["points"][0]["volatility"].is_null());
    // The band of v1 (a model with quantiles); none for v2 and the signal model.
    let p = &series[0]["points"][23];
    let (lo, med, hi) = (
        p["lower_80"].as_f64().unwrap(),
        p["median"].as_f64().unwrap(),
        p["upper_80"].as_f64().unwrap(),
    );
    assert!(lo <= med && med <= hi, "{p}");
    for s in &series[1..] {
        for k in ["median", "lower_80", "upper_80"] {
            assert!(s["points"][0][k].is_null(), "{k} of {s}");
        }
    }
    // A database the stream has not migrated to the band columns yet: means, no band.
    let (_f3, s3) = serve(Some(database_with("history_old", &DDL[..1])));
    let old: Value = c
        .get(format!("{}/api/history?symbol=BTC-USD&hours=24", s3.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let p = &old["series"][0]["points"][23];
    assert!(p["volatility"].is_f64() && p["upper_80"].is_null(), "{old}");
    // Another symbol, an empty one, and bad queries.
    let eth: Value = c
        .get(format!("{}/api/history?symbol=ETH-USD&hours=5", s.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(eth["candles"].as_array().unwrap().len(), 5);
    assert_eq!(eth["series"].as_array().unwrap().len(), 0);
    let none: Value = c
        .get(format!("{}/api/history?symbol=XRP-USD", s.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(none["candles"].as_array().unwrap().len(), 0);
    expect_error(
        c.get(format!("{}/api/history?hours=0", s.url()))
            .send()
            .unwrap(),
        400,
        "invalid_query",
    );
}

#[test]
fn a_database_that_is_down_is_a_502() {
    let (_f, s) = serve(Some("postgres://postgres@127.0.0.1:1/none".to_owned()));
    expect_error(
        client()
            .get(format!("{}/api/history", s.url()))
            .send()
            .unwrap(),
        502,
        "database_error",
    );
}

fn chromium() -> String {
    std::env::var("RPS_CHROMIUM").unwrap_or_else(|_| "chromium".to_owned())
}

fn artifacts() -> PathBuf {
    let dir = std::env::var_os("RPS_TEST_ARTIFACTS")
        .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Run headless Chromium on `url`: `--dump-dom` (the DOM after the page's scripts ran) or
/// `--screenshot`.
pub(crate) fn browse(url: &str, mode: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            // Lets the page's fetches and drawing finish before the dump / screenshot.
            "--virtual-time-budget=10000",
            "--window-size=1280,1000",
            &format!("--user-data-dir={}", profile.path().display()),
            mode,
            url,
        ])
        .output()
        .unwrap_or_else(|e| panic!("could not run {} ({e}); install chromium", chromium()));
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn screenshot(url: &str, name: &str) -> PathBuf {
    let png = artifacts().join(name);
    let _ = std::fs::remove_file(&png);
    browse(url, &format!("--screenshot={}", png.display()));
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    assert!(bytes.starts_with(b"\x89PNG"), "{} is a PNG", png.display());
    eprintln!(
        "dashboard screenshot: {} ({} bytes)",
        png.display(),
        bytes.len()
    );
    png
}

#[test]
#[ignore = "needs chromium + PostgreSQL (RPS_TEST_DATABASE_URL); make test runs it"]
fn the_dashboard_renders_in_a_headless_browser() {
    let url = database("dashboard");
    let (_f, s) = serve(Some(url));
    let page = format!("{}/dashboard?symbol=BTC-USD&hours=48", s.url());
    let dom = browse(&page, "--dump-dom");
    assert!(
        dom.contains("data-state=\"ready\""),
        "the script finished: {dom}"
    );
    for v in ["1", "2"] {
        assert!(
            dom.contains(&format!("class=\"series live\" data-version=\"{v}\"")),
            "a volatility path for live version {v}: {dom}"
        );
    }
    assert!(
        dom.contains("class=\"signal-row\" data-model=\"btc-signal\" data-version=\"1\""),
        "a signal row for the signal model: {dom}"
    );
    assert_eq!(
        dom.matches("class=\"signal buy\"").count(),
        16,
        "48 bars, every third a buy"
    );
    assert!(dom.contains("class=\"realized\"") && dom.contains("class=\"price\""));
    // The champion's (v1's) 80 % band is shaded; the challenger (no quantiles) has none.
    assert!(
        dom.contains("class=\"band\" data-version=\"1\""),
        "the champion's band: {dom}"
    );
    assert!(!dom.contains("class=\"band\" data-version=\"2\""), "{dom}");
    assert!(dom.contains("id=\"band-legend\""), "{dom}");
    assert!(dom.contains("id=\"live-models\""));
    // The forecast-accuracy panel: rolling QLIKE per live version beside HAR-RV (of the
    // champion's version) and EWMA, and the champion's coverage against the band.
    assert!(
        dom.contains("id=\"accuracy-panel\" data-state=\"drawn\""),
        "the accuracy panel drew: {dom}"
    );
    for v in ["1", "2"] {
        assert!(
            dom.contains(&format!(
                "class=\"accuracy live\" data-model=\"btc-volatility\" data-version=\"{v}\""
            )),
            "rolling QLIKE of v{v}: {dom}"
        );
    }
    assert!(
        dom.contains("class=\"accuracy har\" data-model=\"har_rv_log\" data-version=\"1\""),
        "{dom}"
    );
    assert!(
        dom.contains("class=\"accuracy ewma\" data-model=\"ewma\""),
        "{dom}"
    );
    assert!(dom.contains("class=\"coverage-band\""), "{dom}");
    assert!(
        dom.contains("class=\"coverage\" data-version=\"1\""),
        "{dom}"
    );
    // No "no scores" note (the page's own script text names that id, so look at the status).
    assert!(dom.contains("<div id=\"accuracy-status\"></div>"), "{dom}");
    // The validation QLIKE column reads what /models really returns (rps-train's keys).
    assert!(
        dom.contains("<td class=\"qlike\">0.1230</td>"),
        "validation QLIKE shown: {dom}"
    );
    let png = screenshot(&page, "dashboard.png");
    let size = std::fs::metadata(&png).unwrap().len();
    // A blank 1280x1000 page compresses to a few KB; three charts make it much larger.
    assert!(size > 20_000, "{} is only {size} bytes", png.display());
    // The accuracy panel alone (`panel=accuracy`, as the README's plot): over more than two
    // weeks it draws the 7-day window (the alert's), and says so.
    let solo = format!(
        "{}/dashboard?symbol=BTC-USD&hours=480&panel=accuracy",
        s.url()
    );
    let dom = browse(&solo, "--dump-dom");
    assert!(
        dom.contains("<body class=\"solo\" data-state=\"ready\""),
        "{dom}"
    );
    assert!(
        dom.contains("id=\"accuracy-panel\" data-state=\"drawn\""),
        "{dom}"
    );
    assert!(
        dom.contains("rolling 7-day mean QLIKE per live version"),
        "{dom}"
    );
    assert!(dom.contains("the 480 hours to "), "{dom}");
    screenshot(&solo, "dashboard-accuracy.png");

    // Without a database the page shows what serve knows: the live models, the drift of
    // recent inputs and the recent requests, and says why there are no charts.
    let (_f2, s2) = serve(None);
    let c = crate::support::client();
    for i in 0..3 {
        let r = crate::support::predict(
            &c,
            &s2,
            "",
            &serde_json::json!({ "features": crate::support::row_object(i) }),
        );
        assert_eq!(r.status(), 200);
    }
    let page = format!("{}/dashboard", s2.url());
    let dom = browse(&page, "--dump-dom");
    assert!(dom.contains("data-state=\"no-history\""), "{dom}");
    assert!(dom.contains("no stream data is configured"), "{dom}");
    assert!(dom.contains("challenger"), "{dom}");
    assert!(dom.contains("id=\"recent-requests\""), "{dom}");
    assert_eq!(
        dom.matches("<tr class=\"request\" data-at=\"1").count(),
        3,
        "{dom}"
    );
    assert!(dom.contains("id=\"drift-table\""), "{dom}");
    screenshot(&page, "dashboard-no-database.png");
}
