//! `POST /forecast`: candles in, the next bar's forecast out, through the model's own feature
//! spec; a gapped, unordered or short history is a 422 naming the problem.

use crate::support::*;
use rps_core::candle::{Candle, Interval};
use rps_core::params::Params;
use rps_core::synthetic::{SyntheticParams, simulate};
use serde_json::{Value, json};

const HOUR_MS: i64 = 3_600_000;

fn bars() -> Vec<Candle> {
    simulate(&SyntheticParams::default(), Interval::H1, 0, 2000 * HOUR_MS)
}

fn body(candles: &[Candle]) -> Value {
    let c: Vec<Value> = candles
        .iter()
        .map(|c| json!({"time": c.ts, "open": c.open, "high": c.high, "low": c.low, "close": c.close, "volume": c.volume}))
        .collect();
    json!({ "symbol": "BTC-USD", "candles": c })
}

fn post(s: &rps_serve::Server, b: &Value) -> reqwest::blocking::Response {
    client()
        .post(format!("{}/forecast", s.url()))
        .json(b)
        .send()
        .unwrap()
}

#[test]
fn the_last_candles_give_the_models_forecast_for_the_next_bar() {
    let f = Fixture::with_champion();
    let s = f.start();
    let all = bars();
    // The batch features of the whole series (what transform wrote for the model).
    let (ds, _) = rps_transform::transform(&Params::default(), &all, "x").unwrap();
    let last = ds.frame.len() - 1;
    #[allow(clippy::cast_possible_truncation)]
    let x: Vec<f32> = ds.frame.row(last).iter().map(|v| *v as f32).collect();
    let want = trained().model.predict_one(&x).unwrap();

    let tail = &all[all.len() - 800..];
    let r = post(&s, &body(tail));
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    let got = v["volatility"].as_f64().unwrap();
    assert!(
        (got - want).abs() <= 1e-6 * want.abs(),
        "{got} vs batch {want}"
    );
    assert_eq!(v["version"], 1);
    assert_eq!(v["task"], "volatility");
    let newest = chrono::DateTime::from_timestamp_millis(tail[tail.len() - 1].ts).unwrap();
    assert_eq!(
        v["from_bar"],
        newest.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    );
    let next = newest + chrono::Duration::hours(1);
    assert_eq!(
        v["target_bar"],
        next.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    );
    let annual = v["volatility_annualised"].as_f64().unwrap();
    assert!((annual / got - (365.0f64 * 24.0).sqrt()).abs() < 1e-9);
}

#[test]
fn a_bad_history_is_a_422_naming_the_problem() {
    let f = Fixture::with_champion();
    let s = f.start();
    let all = bars();
    let tail = all[all.len() - 800..].to_vec();

    let mut gapped = tail.clone();
    gapped.remove(500);
    let r = post(&s, &body(&gapped));
    let msg = expect_error(r, 422, "gap");
    assert!(msg.contains("1 missing bar(s)"), "{msg}");

    let r = post(&s, &body(&tail[..100]));
    let msg = expect_error(r, 422, "short_history");
    assert!(msg.contains("needs the last 673"), "{msg}");

    let mut repeated = tail.clone();
    repeated[11] = repeated[10];
    expect_error(post(&s, &body(&repeated)), 422, "unordered");

    let mut bad = tail.clone();
    bad[20].high = f64::NAN;
    let mut b = body(&bad);
    b["candles"][20]["high"] = json!(-1.0);
    expect_error(post(&s, &b), 422, "bad_candle");

    let r = client()
        .post(format!("{}/forecast", s.url()))
        .json(&json!({"candles": "no"}))
        .send()
        .unwrap();
    expect_error(r, 400, "bad_json");
}
