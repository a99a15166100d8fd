//! The Prometheus exposition, parsed back.

use crate::support::*;
use serde_json::json;
use std::collections::BTreeMap;

/// `name{labels}` → value, with labels as written.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        assert!(
            out.insert(key.to_owned(), v).is_none(),
            "duplicate series {key}"
        );
    }
    out
}

fn scrape(c: &reqwest::blocking::Client, s: &rps_serve::Server) -> (String, BTreeMap<String, f64>) {
    let r = c.get(format!("{}/metrics", s.url())).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text().unwrap();
    let m = parse(&text);
    (text, m)
}

#[test]
fn exposition_counts_what_was_asked() {
    let f = Fixture::with_champion();
    let s = f.start();
    let c = client();
    for i in 0..3 {
        assert_eq!(
            predict(&c, &s, "", &json!({ "features": row_object(i) })).status(),
            200
        );
    }
    assert_eq!(
        predict(
            &c,
            &s,
            "",
            &json!({ "instances": [row_array(4), row_array(5)] })
        )
        .status(),
        200
    );
    assert_eq!(
        predict(&c, &s, "", &json!({ "features": [1.0] })).status(),
        422
    );
    for _ in 0..2 {
        assert_eq!(
            c.get(format!("{}/health", s.url()))
                .send()
                .unwrap()
                .status(),
            200
        );
    }
    assert_eq!(
        c.get(format!("{}/does/not/exist?x=1", s.url()))
            .send()
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        c.get(format!("{}/other-unknown", s.url()))
            .send()
            .unwrap()
            .status(),
        404
    );

    let (text, m) = scrape(&c, &s);
    let get = |k: &str| {
        *m.get(k)
            .unwrap_or_else(|| panic!("no series {k} in\n{text}"))
    };
    assert_eq!(
        get(r#"http_requests_total{method="POST",path="/predict",status="200"}"#),
        4.0
    );
    assert_eq!(
        get(r#"http_requests_total{method="POST",path="/predict",status="422"}"#),
        1.0
    );
    assert_eq!(
        get(r#"http_requests_total{method="GET",path="/health",status="200"}"#),
        2.0
    );
    // Unknown URLs share one label value: bounded cardinality.
    assert_eq!(
        get(r#"http_requests_total{method="GET",path="unmatched",status="404"}"#),
        2.0
    );
    assert!(!text.contains("does/not/exist"));

    assert_eq!(get("prediction_latency_seconds_count"), 4.0);
    for le in ["0.00005", "0.0001", "0.0005", "0.1", "0.5", "1", "+Inf"] {
        assert!(
            m.contains_key(&format!("prediction_latency_seconds_bucket{{le=\"{le}\"}}")),
            "bucket {le}\n{text}"
        );
    }
    assert_eq!(get(r#"prediction_latency_seconds_bucket{le="+Inf"}"#), 4.0);
    assert!(get("prediction_latency_seconds_sum") > 0.0);
    // Buckets are cumulative.
    let buckets: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("prediction_latency_seconds_bucket"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");

    assert_eq!(get("model_prediction_value_count"), 5.0);
    let sum: f64 = (0..3).map(expected).sum::<f64>() + expected(4) + expected(5);
    assert!((get("model_prediction_value_sum") - sum).abs() < 1e-9);
    assert_eq!(get("model_predictions_total"), 5.0);
    assert_eq!(
        get(r#"model_info{symbol="BTC-USD",name="btc-volatility",version="1"}"#),
        1.0
    );
    let ratio = get(r#"data_drift_ratio{symbol="BTC-USD"}"#);
    assert!((0.0..=1.0).contains(&ratio), "{ratio}");
    assert_eq!(get(r#"drift_window_rows{symbol="BTC-USD"}"#), 5.0);
    for feature in &trained().schema.features {
        let psi = get(&format!(
            "feature_psi{{symbol=\"BTC-USD\",feature=\"{feature}\"}}"
        ));
        assert!(psi.is_finite() && psi >= 0.0, "{feature}: {psi}");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = get("process_start_time_seconds");
    assert!(started > now - 600.0 && started <= now, "{started}");
    let reloaded = get("model_last_reload_timestamp_seconds");
    assert!(reloaded >= started && reloaded <= now, "{reloaded}");
    for family in [
        "http_requests_total counter",
        "prediction_latency_seconds histogram",
        "data_drift_ratio gauge",
        "feature_psi gauge",
        "model_prediction_value histogram",
        "model_info gauge",
    ] {
        assert!(text.contains(&format!("# TYPE {family}\n")), "{family}");
    }
    // The scrape itself is counted on the next one.
    let (_, m) = scrape(&c, &s);
    assert_eq!(
        m[r#"http_requests_total{method="GET",path="/metrics",status="200"}"#],
        1.0
    );
}

#[test]
fn drift_ratio_follows_the_window() {
    let f = Fixture::with_champion();
    let mut cfg = f.config();
    cfg.drift_window = 10;
    let s = rps_serve::Server::spawn(cfg).unwrap();
    let c = client();
    // In-distribution rows: few values out of range.
    let normal: Vec<Vec<f64>> = (0..10).map(row_array).collect();
    assert_eq!(
        predict(&c, &s, "", &json!({ "instances": normal })).status(),
        200
    );
    let (_, m) = scrape(&c, &s);
    let calm = m[r#"data_drift_ratio{symbol="BTC-USD"}"#];
    assert!(calm < 0.2, "{calm}");
    // Ten rows far outside the reference replace them all.
    let n = trained().schema.features.len();
    let far: Vec<Vec<f64>> = (0..10).map(|_| vec![1.0e6; n]).collect();
    assert_eq!(
        predict(&c, &s, "", &json!({ "instances": far })).status(),
        200
    );
    let (_, m) = scrape(&c, &s);
    assert!(
        (m[r#"data_drift_ratio{symbol="BTC-USD"}"#] - 1.0).abs() < 1e-12,
        "{}",
        m[r#"data_drift_ratio{symbol="BTC-USD"}"#]
    );
    assert_eq!(m[r#"drift_window_rows{symbol="BTC-USD"}"#], 10.0);
    assert!(m[r#"feature_psi{symbol="BTC-USD",feature="har_24b"}"#] > 1.0);
    // And normal traffic brings it back.
    let normal: Vec<Vec<f64>> = (10..20).map(row_array).collect();
    assert_eq!(
        predict(&c, &s, "", &json!({ "instances": normal })).status(),
        200
    );
    let (_, m) = scrape(&c, &s);
    assert!(m[r#"data_drift_ratio{symbol="BTC-USD"}"#] < 0.2);
}
