//! Issue #20, `train.pooling: pooled`: every symbol's slot serves the one pooled model, and
//! each request row gets its slot's symbol one-hot; a symbol the model was not trained on is
//! refused, never predicted.

use crate::support::*;
use rps_tracking::{ModelFiles, Registry as _};
use serde_json::{Map, Value, json};

const NAME: &str = "crypto-vol";

/// A registry with the pooled model as champion of `crypto-vol`, and a params.yaml listing
/// `symbols`, pooled.
fn serving(symbols: &[&str]) -> (Fixture, rps_serve::Config) {
    let f = Fixture::empty();
    let p = pooled();
    let v = f.register_as(NAME, &ModelFiles::from_model(&p.model, &p.schema).unwrap());
    f.registry.set_alias(NAME, "champion", v).unwrap();
    let listed: String = symbols.iter().map(|s| format!("    {s}: {{}}\n")).collect();
    let params = f.dir.path().join("params.yaml");
    std::fs::write(
        &params,
        format!(
            "data:\n  symbols:\n{listed}train:\n  pooling: pooled\n  model_name: {NAME}\n  signal_model_name: crypto-signal\n"
        ),
    )
    .unwrap();
    let mut cfg = f.config();
    cfg.params = Some(params.to_str().unwrap().to_owned());
    (f, cfg)
}

/// The request row `i` (AAA-USD's features) by name, without the one-hot.
fn request_row(i: usize) -> Map<String, Value> {
    let p = pooled();
    p.schema
        .built_features()
        .iter()
        .zip(&p.rows[i % p.rows.len()])
        .map(|(n, v)| (n.clone(), json!(v)))
        .collect()
}

/// What the pooled model predicts for row `i` as `symbol`, computed as training laid out the
/// inputs: the features, then the symbol's one-hot.
fn local(i: usize, symbol: &str) -> f64 {
    let p = pooled();
    let row = &p.rows[i % p.rows.len()];
    let cols: Vec<Vec<f64>> = row.iter().map(|v| vec![*v]).collect();
    let x = rps_core::pooling::with_one_hot(&cols, 1, &p.schema.symbols, symbol).unwrap();
    #[allow(clippy::cast_possible_truncation)]
    let x: Vec<f32> = x.iter().map(|c| c[0] as f32).collect();
    p.model.predict_one(&x).unwrap()
}

#[test]
fn each_symbol_is_predicted_with_its_own_one_hot() {
    let (_f, cfg) = serving(&POOLED_SYMBOLS);
    let s = rps_serve::Server::spawn(cfg).unwrap();
    let c = client();
    let mut got = Vec::new();
    for symbol in POOLED_SYMBOLS {
        let r = predict(
            &c,
            &s,
            "",
            &json!({"symbol": symbol, "features": request_row(3)}),
        );
        assert_eq!(r.status(), 200, "{symbol}");
        let v: Value = r.json().unwrap();
        assert_eq!(v["model"], NAME);
        let p = v["prediction"].as_f64().unwrap_or_else(|| panic!("{v}"));
        let want = local(3, symbol);
        assert!((p - want).abs() < 1e-12, "{symbol}: {p} vs {want}");
        got.push(p);
    }
    assert!(
        (got[1] / got[0] - 1.0).abs() > 0.05,
        "the one-hot must change the forecast: {got:?}"
    );
    // The one-hot comes from the slot, not from the client: sending it is an unknown feature.
    let mut with_hot = request_row(3);
    with_hot.insert("symbol_AAA-USD".to_owned(), json!(1.0));
    let r = predict(
        &c,
        &s,
        "",
        &json!({"symbol": "AAA-USD", "features": with_hot}),
    );
    assert_eq!(r.status(), 422);
    // /models and /model say the model is pooled and over which symbols.
    let m: Value = c
        .get(format!("{}/models", s.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    for (entry, symbol) in m["symbols"].as_array().unwrap().iter().zip(POOLED_SYMBOLS) {
        assert_eq!(entry["symbol"], symbol);
        assert_eq!(entry["model"], NAME);
        assert_eq!(entry["live"][0]["pooled"], true, "{m}");
        assert_eq!(entry["live"][0]["symbols"], json!(POOLED_SYMBOLS), "{m}");
    }
    let one: Value = c
        .get(format!("{}/model?symbol=BBB-USD", s.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(one["pooled"], true);
    assert_eq!(
        one["features"].as_array().unwrap().len(),
        pooled().schema.features.len() - 2,
        "a client sends the features without the one-hot"
    );
    s.shutdown().unwrap();
}

#[test]
fn a_symbol_the_pooled_model_was_not_trained_on_is_refused() {
    // params.yaml lists CCC-USD too, but the champion was pooled over AAA-USD and BBB-USD:
    // its slot refuses the model at load, so the service does not start on it.
    let (_f, cfg) = serving(&["AAA-USD", "BBB-USD", "CCC-USD"]);
    let err = rps_serve::Server::spawn(cfg).unwrap_err().to_string();
    assert!(
        err.contains("model rejected")
            && err.contains("cannot forecast \"CCC-USD\"")
            && err.contains("AAA-USD, BBB-USD"),
        "{err}"
    );
}

fn refresh(c: &reqwest::blocking::Client, s: &rps_serve::Server) -> Value {
    let r = c
        .post(format!("{}/refresh", s.url()))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().unwrap()
}

/// A new pooled champion is hot swapped into every symbol's slot under load: no request fails,
/// and every answer, before, during and after the swaps, is the pooled model's forecast for the
/// request's own symbol (its slot's one-hot), from a version of that model.
#[test]
fn a_new_pooled_champion_is_hot_swapped_for_every_symbol_under_load() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    let (f, cfg) = serving(&POOLED_SYMBOLS);
    let s = rps_serve::Server::spawn(cfg).unwrap();
    let url = s.url();
    let stop = Arc::new(AtomicBool::new(false));
    let loaders: Vec<_> = POOLED_SYMBOLS
        .iter()
        .map(|&symbol| {
            let (stop, url) = (stop.clone(), url.clone());
            std::thread::spawn(move || {
                let c = client();
                let (mut answered, mut versions) = (0usize, std::collections::BTreeSet::new());
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let body = json!({"symbol": symbol, "features": request_row(i)});
                    let r = c.post(format!("{url}/predict")).json(&body).send().unwrap();
                    assert_eq!(r.status(), 200, "{symbol}: {}", r.text().unwrap());
                    let v: Value = r.json().unwrap();
                    let p = v["prediction"].as_f64().unwrap();
                    let want = local(i, symbol);
                    assert!((p - want).abs() < 1e-12, "{symbol} row {i}: {p} vs {want}");
                    versions.insert(v["version"].as_u64().unwrap());
                    answered += 1;
                    i += 1;
                }
                (answered, versions)
            })
        })
        .collect();
    let c = client();
    std::thread::sleep(Duration::from_millis(100));
    let p = pooled();
    let files = ModelFiles::from_model(&p.model, &p.schema).unwrap();
    for round in 0..5u64 {
        let v = f.register_as(NAME, &files);
        f.registry.set_alias(NAME, "champion", v).unwrap();
        let r = refresh(&c, &s);
        let outcomes: Vec<(&str, &str, u64)> = r["symbols"]
            .as_array()
            .unwrap_or_else(|| panic!("{r}"))
            .iter()
            .map(|o| {
                (
                    o["symbol"].as_str().unwrap(),
                    o["status"].as_str().unwrap(),
                    o["version"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            outcomes,
            POOLED_SYMBOLS.map(|sym| (sym, "swapped", u64::from(v))),
            "round {round}: {r}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    for (h, symbol) in loaders.into_iter().zip(POOLED_SYMBOLS) {
        let (answered, versions) = h.join().unwrap();
        assert!(answered > 10, "{symbol}: {answered} answers");
        assert!(versions.len() >= 2, "{symbol} saw only {versions:?}");
    }
    // Afterwards both slots serve the last version, each with its own one-hot.
    for symbol in POOLED_SYMBOLS {
        let r = predict(
            &c,
            &s,
            "",
            &json!({"symbol": symbol, "features": request_row(2)}),
        );
        let v: Value = r.json().unwrap();
        assert_eq!(v["version"], 6, "{symbol}: {v}");
        assert!((v["prediction"].as_f64().unwrap() - local(2, symbol)).abs() < 1e-12);
    }
    s.shutdown().unwrap();
}
