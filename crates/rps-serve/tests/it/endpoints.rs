//! Every endpoint answers as documented.

use crate::support::*;
use rps_tracking::Registry;
use serde_json::{Value, json};

#[test]
fn health_ready_and_model() {
    let f = Fixture::with_champion();
    let s = f.start();
    let c = client();
    let h: Value = c
        .get(format!("{}/health", s.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(h["status"], "ok");
    let r = c.get(format!("{}/ready", s.url())).send().unwrap();
    assert_eq!(r.status(), 200);
    let r: Value = r.json().unwrap();
    assert_eq!(
        (r["status"].as_str(), r["version"].as_u64()),
        (Some("ready"), Some(1))
    );
    let m: Value = c
        .get(format!("{}/model", s.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(m["name"], NAME);
    assert_eq!(m["version"], 1);
    assert_eq!(m["alias"], "champion");
    assert_eq!(m["trained_at"], "2026-01-01T00:00:00Z");
    assert_eq!(m["metrics"]["validation_qlike"], 0.123);
    let features: Vec<String> = serde_json::from_value(m["features"].clone()).unwrap();
    assert_eq!(features, trained().schema.features);
    assert_eq!(
        m["schema"]["reference"].as_array().unwrap().len(),
        features.len()
    );
    assert!(m["loaded_at"].as_f64().unwrap() > 0.0);
}

#[test]
fn predicts_one_row_by_name_by_order_and_a_batch() {
    let f = Fixture::with_champion();
    let s = f.start();
    let c = client();
    let r = predict(&c, &s, "", &json!({ "features": row_object(0) }));
    assert_eq!(r.status(), 200);
    let one: Value = r.json().unwrap();
    assert_eq!(
        (one["model"].as_str(), one["version"].as_u64()),
        (Some(NAME), Some(1))
    );
    let p = one["prediction"].as_f64().unwrap();
    assert!(p.is_finite() && p > 0.0);
    assert!((p - expected(0)).abs() < 1e-12, "{p} vs {}", expected(0));

    let by_order: Value = predict(&c, &s, "", &json!({ "features": row_array(0) }))
        .json()
        .unwrap();
    assert_eq!(by_order["prediction"].as_f64(), Some(p));

    let instances: Vec<Value> = (0..5)
        .map(|i| {
            if i % 2 == 0 {
                json!(row_object(i))
            } else {
                json!(row_array(i))
            }
        })
        .collect();
    let batch: Value = predict(&c, &s, "", &json!({ "instances": instances }))
        .json()
        .unwrap();
    let preds: Vec<f64> = serde_json::from_value(batch["predictions"].clone()).unwrap();
    assert_eq!(preds.len(), 5);
    for (i, v) in preds.iter().enumerate() {
        assert!((v - expected(i)).abs() < 1e-12);
    }
    assert_eq!(batch["version"], 1);

    // A large batch goes through the blocking pool and still answers in order.
    let big: Vec<Value> = (0..200).map(|i| json!(row_array(i))).collect();
    let batch: Value = predict(&c, &s, "", &json!({ "instances": big }))
        .json()
        .unwrap();
    let preds: Vec<f64> = serde_json::from_value(batch["predictions"].clone()).unwrap();
    assert_eq!(preds.len(), 200);
    assert!((preds[150] - expected(150)).abs() < 1e-12);
}

#[test]
fn queries_another_version_side_by_side() {
    let f = Fixture::with_champion();
    let v2 = f.register();
    f.registry.set_alias(NAME, "challenger", v2).unwrap();
    let s = f.start();
    let c = client();
    let body = json!({ "features": row_object(3) });
    for (query, version) in [
        ("", 1),
        ("?model=champion", 1),
        ("?model=2", 2),
        ("?model=v2", 2),
        ("?model=challenger", 2),
        ("?model=1", 1),
    ] {
        let r = predict(&c, &s, query, &body);
        assert_eq!(r.status(), 200, "{query}");
        let v: Value = r.json().unwrap();
        assert_eq!(v["version"], version, "{query}");
    }
    let m: Value = c
        .get(format!("{}/model?model=2", s.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        (m["version"].as_u64(), m["alias"].is_null()),
        (Some(2), true)
    );
    expect_error(predict(&c, &s, "?model=9", &body), 404, "model_not_found");
    let msg = expect_error(
        predict(&c, &s, "?model=staging", &body),
        404,
        "model_not_found",
    );
    assert!(msg.contains("staging"), "{msg}");
    // The champion is untouched.
    let v: Value = c
        .get(format!("{}/ready", s.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["version"], 1);
}

#[test]
fn not_ready_until_a_model_arrives() {
    let f = Fixture::empty();
    let mut cfg = f.config();
    cfg.wait_for_model = true;
    let s = rps_serve::Server::spawn(cfg).unwrap();
    let c = client();
    assert_eq!(
        c.get(format!("{}/health", s.url()))
            .send()
            .unwrap()
            .status(),
        200
    );
    expect_error(
        c.get(format!("{}/ready", s.url())).send().unwrap(),
        503,
        "not_ready",
    );
    expect_error(
        predict(&c, &s, "", &json!({ "features": row_object(0) })),
        503,
        "not_ready",
    );
    expect_error(
        c.get(format!("{}/model", s.url())).send().unwrap(),
        503,
        "not_ready",
    );
    let v = f.register();
    f.promote(v);
    let r: Value = c
        .post(format!("{}/refresh", s.url()))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        (r["status"].as_str(), r["version"].as_u64()),
        (Some("swapped"), Some(1))
    );
    assert_eq!(
        c.get(format!("{}/ready", s.url())).send().unwrap().status(),
        200
    );
    assert_eq!(
        predict(&c, &s, "", &json!({ "features": row_object(0) })).status(),
        200
    );
}

#[test]
fn startup_without_a_model_fails_with_exit_code_4() {
    let f = Fixture::empty();
    let err = rps_serve::Server::spawn(f.config()).unwrap_err();
    assert_eq!(err.exit_code(), 4, "{err}");
    assert!(err.to_string().contains("champion"), "{err}");
}

#[test]
fn unknown_routes_and_methods_answer_json() {
    let f = Fixture::with_champion();
    let s = f.start();
    let c = client();
    let msg = expect_error(
        c.get(format!("{}/nope/123", s.url())).send().unwrap(),
        404,
        "not_found",
    );
    assert!(msg.contains("/nope/123"));
    expect_error(
        c.get(format!("{}/predict", s.url())).send().unwrap(),
        405,
        "method_not_allowed",
    );
    expect_error(
        c.delete(format!("{}/model", s.url())).send().unwrap(),
        405,
        "method_not_allowed",
    );
}

/// `/api/recent` keeps the last answered requests, newest first, and the drift of each live
/// version's recent inputs; it needs no database.
#[test]
fn recent_requests_and_drift_without_a_database() {
    let f = Fixture::with_champion();
    let s = f.start();
    let c = client();
    let empty: Value = c
        .get(format!("{}/api/recent", s.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(empty["requests"], json!([]));
    for i in 0..60 {
        assert_eq!(
            predict(&c, &s, "", &json!({ "features": row_object(i) })).status(),
            200
        );
    }
    let r: Value = c
        .get(format!("{}/api/recent", s.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let reqs = r["requests"].as_array().unwrap();
    assert_eq!(reqs.len(), 50, "bounded");
    assert!(
        reqs[0]["at"].as_f64() >= reqs[49]["at"].as_f64(),
        "newest first"
    );
    assert!(reqs[0]["forecast"].is_number() && reqs[0]["rows"] == 1);
    let d = &r["drift"][0];
    assert_eq!(d["alias"], "champion");
    assert_eq!(d["window"], 60);
    assert!(d["out_of_range_ratio"].is_number(), "{d}");
}
