//! Every class of bad input gets a JSON error naming the problem, and the service keeps serving.

use crate::support::*;
use serde_json::{Value, json};

fn raw(
    c: &reqwest::blocking::Client,
    s: &rps_serve::Server,
    content_type: Option<&str>,
    body: impl Into<reqwest::blocking::Body>,
) -> reqwest::blocking::Response {
    let mut req = c.post(format!("{}/predict", s.url())).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    req.send().unwrap()
}

#[test]
fn bad_inputs_are_named() {
    let f = Fixture::with_champion();
    let mut cfg = f.config();
    cfg.body_limit = 16 * 1024;
    cfg.max_batch = 4;
    let s = rps_serve::Server::spawn(cfg).unwrap();
    let c = client();
    let good = json!({ "features": row_object(0) }).to_string();

    // Content type.
    expect_error(
        raw(&c, &s, Some("text/plain"), good.clone()),
        415,
        "unsupported_media_type",
    );
    expect_error(
        raw(&c, &s, None, good.clone()),
        415,
        "unsupported_media_type",
    );
    assert_eq!(
        raw(
            &c,
            &s,
            Some("application/json; charset=utf-8"),
            good.clone()
        )
        .status(),
        200
    );

    // Malformed JSON, NaN literals.
    expect_error(
        raw(&c, &s, Some("application/json"), "{\"features\": {"),
        400,
        "malformed_json",
    );
    expect_error(
        raw(&c, &s, Some("application/json"), ""),
        400,
        "malformed_json",
    );
    let nan = good.replacen(&format!("{}", row_array(0)[0]), "NaN", 1);
    expect_error(
        raw(&c, &s, Some("application/json"), nan),
        400,
        "malformed_json",
    );

    // Missing, unknown, wrong length.
    let mut row = row_object(0);
    row.remove("har_24b");
    let msg = expect_error(
        predict(&c, &s, "", &json!({ "features": row })),
        422,
        "missing_feature",
    );
    assert!(msg.contains("missing feature `har_24b`"), "{msg}");
    let mut row = row_object(0);
    row.insert("moon_phase".to_owned(), json!(0.5));
    let msg = expect_error(
        predict(&c, &s, "", &json!({ "features": row })),
        422,
        "unknown_feature",
    );
    assert!(msg.contains("`moon_phase`"), "{msg}");
    let msg = expect_error(
        predict(&c, &s, "", &json!({ "features": [0.1, 0.2, 0.3] })),
        422,
        "wrong_length",
    );
    assert!(msg.contains("got 3"), "{msg}");
    let mut long = row_array(0);
    long.push(1.0);
    expect_error(
        predict(&c, &s, "", &json!({ "features": long })),
        422,
        "wrong_length",
    );

    // Non-finite, strings, booleans (null is a missing value: `a_null_feature_is_missing`).
    for (bad, what) in [
        (json!(1e39), "not finite"),
        (json!("0.1"), "a string"),
        (json!(true), "a boolean"),
    ] {
        let mut row = row_object(1);
        row.insert("ret_1b_pct".to_owned(), bad);
        let msg = expect_error(
            predict(&c, &s, "", &json!({ "features": row })),
            422,
            "invalid_value",
        );
        assert!(msg.contains("`ret_1b_pct`") && msg.contains(what), "{msg}");
    }
    let msg = expect_error(
        predict(
            &c,
            &s,
            "",
            &json!({ "instances": [row_array(0), [1.0, null]] }),
        ),
        422,
        "wrong_length",
    );
    assert!(msg.starts_with("instance 1"), "{msg}");

    // Shape.
    expect_error(
        predict(&c, &s, "", &json!([1, 2, 3])),
        422,
        "invalid_request",
    );
    expect_error(
        predict(&c, &s, "", &json!({ "rows": [] })),
        422,
        "unknown_field",
    );
    expect_error(
        predict(
            &c,
            &s,
            "",
            &json!({ "features": row_array(0), "instances": [] }),
        ),
        422,
        "invalid_request",
    );
    expect_error(
        predict(&c, &s, "", &json!({ "instances": [] })),
        422,
        "empty_batch",
    );
    expect_error(
        predict(&c, &s, "", &json!({ "features": "all of them" })),
        422,
        "invalid_request",
    );

    // Limits: body size and batch size.
    let huge = format!(
        "{{\"features\": {{\"pad\": \"{}\"}}}}",
        "x".repeat(64 * 1024)
    );
    let msg = expect_error(
        raw(&c, &s, Some("application/json"), huge),
        413,
        "payload_too_large",
    );
    assert!(msg.contains("16384"), "{msg}");
    let five: Vec<Vec<f64>> = (0..5).map(row_array).collect();
    let msg = expect_error(
        predict(&c, &s, "", &json!({ "instances": five })),
        413,
        "batch_too_large",
    );
    assert!(msg.contains("limit is 4"), "{msg}");
    let four: Vec<Vec<f64>> = (0..4).map(row_array).collect();
    assert_eq!(
        predict(&c, &s, "", &json!({ "instances": four })).status(),
        200
    );

    // Bad query string.
    expect_error(
        c.get(format!("{}/model?model=%ZZ&model=1", s.url()))
            .send()
            .unwrap(),
        400,
        "invalid_query",
    );

    // Still healthy and serving.
    assert_eq!(
        c.get(format!("{}/health", s.url()))
            .send()
            .unwrap()
            .status(),
        200
    );
    let v: Value = predict(&c, &s, "", &json!({ "features": row_object(2) }))
        .json()
        .unwrap();
    assert!((v["prediction"].as_f64().unwrap() - expected(2)).abs() < 1e-12);
}

#[test]
fn slow_requests_time_out_with_json() {
    use std::io::{Read, Write};
    let f = Fixture::with_champion();
    let mut cfg = f.config();
    cfg.request_timeout = std::time::Duration::from_millis(300);
    let s = rps_serve::Server::spawn(cfg).unwrap();
    // Send the head and part of the body, then stall: the body read runs into the request
    // timeout while the client is still sending — a client error, 408 (issue #21: it was a 503,
    // which fired the 5xx alert).
    let mut tcp = std::net::TcpStream::connect(s.addr()).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    tcp.write_all(b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"feat").unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&buf).contains("}}") {
        let n = tcp.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"body_timeout\""), "{text}");
}

/// `null` is a missing value: NaN to the booster, which sends it down each tree's default
/// branch, as for the missing values it was trained with. An absent key stays an error.
#[test]
fn a_null_feature_is_missing_and_predicts_as_nan() {
    let f = Fixture::with_champion();
    let s = f.start();
    let c = client();
    let t = trained();
    #[allow(clippy::cast_possible_truncation)]
    let x32 = |i: usize| -> Vec<f32> { row_array(i).iter().map(|v| *v as f32).collect() };
    let with = |i: usize, at: usize, v: f32| {
        let mut x = x32(i);
        x[at] = v;
        t.model.predict_one(&x).unwrap()
    };
    // A row and feature where a missing value changes the forecast, and differently from a
    // zero: so the test sees whether null really reached the booster as NaN.
    let (i, at) = (0..20)
        .flat_map(|i| (0..t.schema.features.len()).map(move |j| (i, j)))
        .find(|&(i, j)| {
            let nan = with(i, j, f32::NAN);
            nan != t.model.predict_one(&x32(i)).unwrap() && nan != with(i, j, 0.0)
        })
        .expect("some feature matters");
    let want = with(i, at, f32::NAN);
    assert!(want.is_finite());
    let name = t.schema.features[at].clone();

    let mut row = row_object(i);
    row.insert(name.clone(), Value::Null);
    let r = predict(&c, &s, "", &json!({ "features": row }));
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    assert_eq!(v["prediction"].as_f64().unwrap(), want);

    let mut arr: Vec<Value> = row_array(i).iter().map(|v| json!(v)).collect();
    arr[at] = Value::Null;
    let v: Value = predict(&c, &s, "", &json!({ "instances": [arr] }))
        .json()
        .unwrap();
    assert_eq!(v["predictions"][0].as_f64().unwrap(), want);

    let mut row = row_object(i);
    row.remove(&name);
    expect_error(
        predict(&c, &s, "", &json!({ "features": row })),
        422,
        "missing_feature",
    );
}
