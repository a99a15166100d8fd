//! Issue #16 served: `/model` describes a model's distribution, and `model_interval_width`
//! counts the 80 % intervals `/predict` and `/forecast` answered.

use crate::support::*;
use rps_core::candle::Interval;
use rps_core::distribution::central_levels;
use rps_core::params::DEFAULT_QUANTILES;
use rps_core::synthetic::{SyntheticParams, simulate};
use rps_tracking::ModelFiles;
use serde_json::{Value, json};

/// The trained model without its quantile booster: what a model from before #16 (or one trained
/// with `train.quantiles: []`) registers.
fn point_only_files() -> ModelFiles {
    let mut files = Fixture::files();
    files.quantile = None;
    files.meta.quantiles = None;
    files
}

/// v1 (with quantiles) the champion, v2 point-only.
fn fixture() -> Fixture {
    let f = Fixture::with_champion();
    assert_eq!(f.register_files(&point_only_files()), 2);
    f
}

fn get(s: &rps_serve::Server, path: &str) -> Value {
    let r = client().get(format!("{}{path}", s.url())).send().unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().unwrap()
}

#[test]
fn model_describes_the_distribution_of_a_model_with_quantiles_only() {
    let f = fixture();
    let s = f.start();
    let m = get(&s, "/model");
    let d = &m["distribution"];
    let levels: Vec<f64> = serde_json::from_value(d["levels"].clone()).unwrap();
    assert_eq!(levels, DEFAULT_QUANTILES, "{m}");
    assert_eq!(d["calibration"], "cqr");
    for k in ["corrections", "raw_validation_coverage"] {
        let v = d[k].as_array().unwrap_or_else(|| panic!("{k}: {d}"));
        assert_eq!(v.len(), levels.len(), "{k}");
        assert!(v.iter().all(Value::is_f64), "{k}: {d}");
    }
    assert!(d["n_calibration"].as_u64().unwrap() > 0, "{d}");
    // The same numbers as the model's meta.json.
    let meta = trained().model.meta.quantiles.clone().unwrap();
    assert_eq!(d["corrections"], json!(meta.corrections));
    // A point-only version: no `distribution` key at all (as /predict omits it).
    let m2 = get(&s, "/model?model=2");
    assert_eq!(m2["version"], 2);
    assert!(m2.get("distribution").is_none(), "{m2}");
}

/// `model_interval_width{version="…"}` series: name (with labels) → value.
fn width_series(s: &rps_serve::Server) -> (String, Vec<(String, f64)>) {
    let text = client()
        .get(format!("{}/metrics", s.url()))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let rows = text
        .lines()
        .filter(|l| l.starts_with("model_interval_width"))
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_owned(), v.parse::<f64>().unwrap())
        })
        .collect();
    (text, rows)
}

fn value(rows: &[(String, f64)], key: &str, text: &str) -> f64 {
    rows.iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no {key} in\n{text}"))
        .1
}

#[test]
fn every_interval_predict_and_forecast_answer_is_in_the_width_histogram() {
    let f = fixture();
    let s = f.start();
    let c = client();
    let (text, rows) = width_series(&s);
    assert!(
        text.contains("# TYPE model_interval_width histogram"),
        "{text}"
    );
    assert_eq!(
        value(
            &rows,
            r#"model_interval_width_count{symbol="BTC-USD",version="1"}"#,
            &text
        ),
        0.0
    );
    // Three single rows and a batch of two by the champion; its 80 % intervals' widths.
    let mut widths = Vec::new();
    for i in 0..3 {
        let r = predict(&c, &s, "", &json!({ "features": row_object(i) }));
        assert_eq!(r.status(), 200);
        let v: Value = r.json().unwrap();
        let band = &v["distribution"]["interval_80"];
        widths.push(band[1].as_f64().unwrap() - band[0].as_f64().unwrap());
    }
    let r = predict(
        &c,
        &s,
        "",
        &json!({ "instances": [row_array(3), row_array(4)] }),
    );
    let v: Value = r.json().unwrap();
    for d in v["distributions"].as_array().unwrap() {
        let band = &d["interval_80"];
        widths.push(band[1].as_f64().unwrap() - band[0].as_f64().unwrap());
    }
    // The point-only version predicts too, and has no series.
    assert_eq!(
        predict(&c, &s, "?model=2", &json!({ "features": row_object(0) })).status(),
        200
    );
    let (text, rows) = width_series(&s);
    assert_eq!(
        value(
            &rows,
            r#"model_interval_width_count{symbol="BTC-USD",version="1"}"#,
            &text
        ),
        5.0
    );
    let sum = value(
        &rows,
        r#"model_interval_width_sum{symbol="BTC-USD",version="1"}"#,
        &text,
    );
    assert!(
        (sum - widths.iter().sum::<f64>()).abs() < 1e-12,
        "{sum} vs {widths:?}"
    );
    assert!(widths.iter().all(|w| *w > 0.0), "{widths:?}");
    assert_eq!(
        value(
            &rows,
            r#"model_interval_width_bucket{symbol="BTC-USD",version="1",le="+Inf"}"#,
            &text
        ),
        5.0
    );
    assert!(
        !text.contains(r#"model_interval_width_count{symbol="BTC-USD",version="2"}"#),
        "{text}"
    );
    // The band is the central 80 % one.
    assert_eq!(central_levels(0.8), (0.1, 0.9));

    // A /forecast from candles counts as well.
    let bars = simulate(
        &SyntheticParams::default(),
        Interval::H1,
        0,
        900 * 3_600_000,
    );
    let candles: Vec<Value> = bars
        .iter()
        .map(|c| json!({"time": c.ts, "open": c.open, "high": c.high, "low": c.low, "close": c.close, "volume": c.volume}))
        .collect();
    let r = c
        .post(format!("{}/forecast", s.url()))
        .json(&json!({ "symbol": "BTC-USD", "candles": candles }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    // /forecast's distribution fields sit beside `volatility`.
    let band = &v["interval_80"];
    let w = band[1].as_f64().unwrap() - band[0].as_f64().unwrap();
    let (text, rows) = width_series(&s);
    assert_eq!(
        value(
            &rows,
            r#"model_interval_width_count{symbol="BTC-USD",version="1"}"#,
            &text
        ),
        6.0
    );
    let sum2 = value(
        &rows,
        r#"model_interval_width_sum{symbol="BTC-USD",version="1"}"#,
        &text,
    );
    assert!((sum2 - sum - w).abs() < 1e-12, "{sum2} - {sum} vs {w}");
}
