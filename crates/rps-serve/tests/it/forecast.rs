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
    assert!(msg.contains("1 missing 1h bar(s)"), "{msg}");

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

/// A home with a raw dataset of `bars` for BTC-USD (what `rps extract` writes).
fn home_with(bars: &[Candle]) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let uri = format!("{}/data/raw/BTC-USD", home.path().to_str().unwrap());
    rps_store::raw::RawDataset::new(rps_store::open(&uri).unwrap())
        .replace("BTC-USD", Interval::H1, "synthetic", bars)
        .unwrap();
    home
}

/// 1000 synthetic hourly bars, the newest one closed at the start of the current hour.
fn fresh_bars() -> Vec<Candle> {
    let now = chrono::Utc::now().timestamp_millis();
    let end = now - now.rem_euclid(HOUR_MS);
    simulate(
        &SyntheticParams::default(),
        Interval::H1,
        end - 1000 * HOUR_MS,
        end,
    )
}

fn start_with_home(f: &Fixture, home: &tempfile::TempDir) -> rps_serve::Server {
    let mut c = f.config();
    c.home = Some(home.path().to_str().unwrap().to_owned());
    c.database_url = None;
    rps_serve::Server::spawn(c).unwrap()
}

fn stored(s: &rps_serve::Server, b: &Value) -> reqwest::blocking::Response {
    post(s, b)
}

#[test]
fn a_forecast_from_the_stored_candles_equals_one_from_the_same_candles_posted() {
    let f = Fixture::with_champion();
    let bars = fresh_bars();
    assert_eq!(bars.len(), 1000);
    let home = home_with(&bars);
    let s = start_with_home(&f, &home);

    for b in [json!({}), json!({"symbol": "BTC-USD"})] {
        let r = stored(&s, &b);
        assert_eq!(r.status(), 200);
        let got: Value = r.json().unwrap();
        let posted: Value = post(&s, &body(&bars[bars.len() - 673..])).json().unwrap();
        assert_eq!(got["volatility"], posted["volatility"], "{got} vs {posted}");
        assert_eq!(
            got["volatility_annualised"],
            posted["volatility_annualised"]
        );
        assert_eq!(got["from_bar"], posted["from_bar"]);
        assert_eq!(got["target_bar"], posted["target_bar"]);
        assert_eq!(got["history"], "raw_dataset");
        assert_eq!(posted["history"], "request");
        let newest = chrono::DateTime::from_timestamp_millis(bars[999].ts).unwrap();
        assert_eq!(
            got["from_bar"],
            newest.format("%Y-%m-%dT%H:%M:%SZ").to_string()
        );
        let age = got["age_secs"].as_i64().unwrap();
        assert!((0..=3600).contains(&age), "{age}");
        assert!(posted.get("age_secs").is_none(), "{posted}");
    }
    // The forecast of a symbol without a dataset, or of a name that is no symbol, is the
    // client's problem (4xx), never a 5xx.
    expect_error(stored(&s, &json!({"symbol": "ETH-USD"})), 422, "no_history");
    expect_error(
        stored(&s, &json!({"symbol": "../../etc"})),
        422,
        "bad_symbol",
    );
}

#[test]
fn a_stored_history_that_stopped_is_a_409_naming_its_newest_bar() {
    let f = Fixture::with_champion();
    // The test bars of 1970: the newest closed decades ago.
    let home = home_with(&bars());
    let s = start_with_home(&f, &home);
    let r = stored(&s, &json!({}));
    assert_eq!(r.status(), 409);
    let v: Value = r.json().unwrap();
    assert_eq!(v["error"]["code"], "stale_history", "{v}");
    let newest = chrono::DateTime::from_timestamp_millis(1999 * HOUR_MS).unwrap();
    assert_eq!(
        v["error"]["newest_bar"],
        newest.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    );
    assert!(v["error"]["age_secs"].as_i64().unwrap() > 3600 * 24 * 365 * 50);
    assert_eq!(v["error"]["max_age_secs"], 3600);
}

#[test]
fn a_hole_in_the_stored_window_is_a_422_naming_the_first_missing_bar() {
    let f = Fixture::with_champion();
    let mut bars = fresh_bars();
    let lost = bars.remove(990);
    let home = home_with(&bars);
    let s = start_with_home(&f, &home);
    let r = stored(&s, &json!({}));
    assert_eq!(r.status(), 422);
    let v: Value = r.json().unwrap();
    assert_eq!(v["error"]["code"], "gap", "{v}");
    let t = chrono::DateTime::from_timestamp_millis(lost.ts).unwrap();
    assert_eq!(
        v["error"]["first_missing"],
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    );
    assert_eq!(v["error"]["missing"], 1);
    // A hole before the window does not matter.
    let mut bars = fresh_bars();
    bars.remove(100);
    let home = home_with(&bars);
    let s = start_with_home(&f, &home);
    assert_eq!(stored(&s, &json!({})).status(), 200);
}

#[test]
fn without_a_configured_store_a_forecast_needs_candles() {
    let f = Fixture::with_champion();
    let mut c = f.config();
    c.home = None;
    c.database_url = None;
    let s = rps_serve::Server::spawn(c).unwrap();
    let msg = expect_error(stored(&s, &json!({})), 503, "no_history");
    assert!(msg.contains("--home"), "{msg}");
}

#[test]
fn model_states_history_bars_and_exactly_that_many_candles_forecast() {
    let f = Fixture::with_champion();
    let s = f.start();
    let m: Value = client()
        .get(format!("{}/model", s.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let n = usize::try_from(m["history_bars"].as_u64().unwrap()).unwrap();
    assert_eq!(
        n, 673,
        "28 days of hourly bars for the time-of-day profile, plus the bar"
    );
    assert_eq!(m["feature_spec"]["bar"], "1h");
    // The model's own saved spec (Params::default(): parkinson), not params.yaml's.
    assert_eq!(
        m["feature_spec"]["estimator"],
        json!(trained().schema.target.estimator)
    );
    assert_eq!(
        m["feature_spec"]["windows"]["har_windows"],
        json!([1, 4, 24, 168])
    );
    let all = bars();
    assert_eq!(post(&s, &body(&all[all.len() - n..])).status(), 200);
    let msg = expect_error(
        post(&s, &body(&all[all.len() - n + 1..])),
        422,
        "short_history",
    );
    assert!(msg.contains("672 candles"), "{msg}");
}

/// A fresh database under `RPS_TEST_DATABASE_URL` with the stream's schema and `bars` as
/// BTC-USD's candles (what `rps stream consume` writes). Returns its URL.
fn database_with(tag: &str, bars: &[Candle]) -> String {
    const DDL: &str = include_str!("../../../rps-stream/migrations/0001_init.sql");
    let url = crate::scores::fresh_database(&format!("forecast_{tag}"), &[DDL]);
    crate::scores::runtime().block_on(async {
        let db = crate::scores::connect(&url).await;
        let t: Vec<_> = bars
            .iter()
            .map(|c| chrono::DateTime::from_timestamp_millis(c.ts).unwrap())
            .collect();
        let col = |f: fn(&Candle) -> f64| bars.iter().map(f).collect::<Vec<f64>>();
        let (o, h, l, c, v) = (
            col(|c| c.open),
            col(|c| c.high),
            col(|c| c.low),
            col(|c| c.close),
            col(|c| c.volume),
        );
        db.execute(
            "INSERT INTO candles (symbol, bar_time, open, high, low, close, volume) \
             SELECT 'BTC-USD', * FROM UNNEST($1::timestamptz[], $2::float8[], $3::float8[], \
             $4::float8[], $5::float8[], $6::float8[])",
            &[&t, &o, &h, &l, &c, &v],
        )
        .await
        .unwrap();
    });
    url
}

#[test]
#[ignore = "needs PostgreSQL (RPS_TEST_DATABASE_URL); make test runs it"]
fn a_forecast_from_the_streams_database_equals_one_from_the_same_candles_posted() {
    let f = Fixture::with_champion();
    let bars = fresh_bars();
    // The raw dataset of the home holds other (older) bars: the database comes first.
    let home = home_with(&bars[..700]);
    let mut c = f.config();
    c.home = Some(home.path().to_str().unwrap().to_owned());
    c.database_url = Some(database_with("stored", &bars));
    let s = rps_serve::Server::spawn(c).unwrap();

    let r = stored(&s, &json!({"symbol": "BTC-USD"}));
    assert_eq!(r.status(), 200);
    let got: Value = r.json().unwrap();
    let posted: Value = post(&s, &body(&bars[bars.len() - 673..])).json().unwrap();
    assert_eq!(got["history"], "database", "{got}");
    assert_eq!(got["volatility"], posted["volatility"], "{got} vs {posted}");
    assert_eq!(got["from_bar"], posted["from_bar"]);
    assert_eq!(got["target_bar"], posted["target_bar"]);
    let age = got["age_secs"].as_i64().unwrap();
    assert!((0..=3600).contains(&age), "{age}");
    // A symbol the stream never wrote is the client's problem, and says where it looked.
    let r = stored(&s, &json!({"symbol": "ETH-USD"}));
    expect_error(r, 422, "no_history");
}

#[test]
#[ignore = "needs PostgreSQL (RPS_TEST_DATABASE_URL); make test runs it"]
fn a_hole_in_the_streams_candles_is_a_422_naming_it() {
    let f = Fixture::with_champion();
    let mut bars = fresh_bars();
    let missing = bars.remove(900).ts;
    let mut c = f.config();
    c.database_url = Some(database_with("hole", &bars));
    let s = rps_serve::Server::spawn(c).unwrap();
    let r = stored(&s, &json!({}));
    assert_eq!(r.status(), 422);
    let v: Value = r.json().unwrap();
    assert_eq!(v["error"]["code"], "gap", "{v}");
    let t = chrono::DateTime::from_timestamp_millis(missing).unwrap();
    assert_eq!(
        v["error"]["first_missing"],
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    );
}

/// Synthetic bars with made-up order-flow columns (trade counts, taker-buy volume).
fn flow_bars() -> Vec<Candle> {
    bars()
        .into_iter()
        .enumerate()
        .map(|(i, c)| Candle {
            trades: Some(500 + (i as u64 * 7919) % 300),
            taker_buy_volume: Some(c.volume * (0.4 + (i % 5) as f64 * 0.05)),
            ..c
        })
        .collect()
}

/// `body` with the order-flow columns.
fn flow_body(candles: &[Candle]) -> Value {
    let mut b = body(candles);
    for (j, c) in candles.iter().enumerate() {
        b["candles"][j]["trades"] = json!(c.trades);
        b["candles"][j]["taker_buy_volume"] = json!(c.taker_buy_volume);
    }
    b
}

/// A model trained with the order-flow features (`features.flow: auto` on bars that carry
/// them) forecasts from candles that carry them, and answers 422 `missing_column` naming the
/// column and the candle when they do not.
#[test]
fn a_flow_model_refuses_candles_without_the_order_flow_columns() {
    let all = flow_bars();
    let params = Params::default();
    let (ds, schema) = rps_transform::transform(&params, &all, "flow").unwrap();
    assert_eq!(schema.feature_params.flow, rps_core::flow::Flow::On);
    let frame = &ds.frame;
    let (tr, va) = (
        ds.rows(rps_core::split::Split::Train),
        ds.rows(rps_core::split::Split::Validation),
    );
    let ys = |ix: &[usize]| -> Vec<f64> { ix.iter().map(|&i| frame.target[i]).collect() };
    let p = rps_core::params::TrainParams {
        num_boost_round: 20,
        early_stopping_rounds: 0,
        ..Default::default()
    };
    let (model, _) = rps_model::VolatilityModel::train(
        &p,
        &frame.names,
        params.target.floor,
        (&rps_model::Rows::gather(&frame.columns, &tr), &ys(&tr)),
        (&rps_model::Rows::gather(&frame.columns, &va), &ys(&va)),
    )
    .unwrap();
    let f = Fixture::empty();
    let v = f.register_files(&rps_tracking::ModelFiles::from_model(&model, &schema).unwrap());
    f.promote(v);
    let s = f.start();
    let tail = &all[all.len() - 800..];

    let m: Value = client()
        .get(format!("{}/model", s.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        m["feature_spec"]["candle_columns"],
        json!(["trades", "taker_buy_volume"])
    );
    let r = post(&s, &flow_body(tail));
    assert_eq!(r.status(), 200);
    let got: Value = r.json().unwrap();
    assert!(got["volatility"].as_f64().unwrap() > 0.0);

    // Plain OHLCV candles, as for a model without flow features.
    let r = post(&s, &body(tail));
    assert_eq!(r.status(), 422);
    let v: Value = r.json().unwrap();
    assert_eq!(v["error"]["code"], "missing_column", "{v}");
    assert_eq!(v["error"]["column"], "trades");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("trained with order-flow features") && msg.contains("`trades`"),
        "{msg}"
    );

    // One candle in the window without taker-buy volume.
    let mut b = flow_body(tail);
    let at = tail.len() - 3;
    b["candles"][at]
        .as_object_mut()
        .unwrap()
        .remove("taker_buy_volume");
    let r = post(&s, &b);
    assert_eq!(r.status(), 422);
    let v: Value = r.json().unwrap();
    assert_eq!(v["error"]["code"], "missing_column", "{v}");
    assert_eq!(v["error"]["column"], "taker_buy_volume");
    let t = chrono::DateTime::from_timestamp_millis(tail[at].ts).unwrap();
    assert_eq!(
        v["error"]["candle"],
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    );
}
