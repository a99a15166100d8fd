//! A signal model (`train.task: signal`) served by `--model-name btc-signal`: the same
//! endpoints answer with the class and its probabilities.

use crate::support::{Fixture, SIGNAL_NAME, client, predict, row_array, row_object, trained};
use rps_core::signal::Signal;
use serde_json::{Value, json};

fn local(i: usize) -> [f64; 3] {
    #[allow(clippy::cast_possible_truncation)]
    let row: Vec<f32> = row_array(i).iter().map(|v| *v as f32).collect();
    trained().signal.predict_proba_one(&row).unwrap()
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_signal_model_answers_with_its_class_and_probabilities() {
    let f = Fixture::empty();
    let v = f.register_signal_champion();
    let mut config = f.config();
    config.model_name = Some(SIGNAL_NAME.to_owned());
    let server = rps_serve::Server::spawn(config).unwrap();
    let c = client();

    // One row by name.
    let resp = predict(&c, &server, "", &json!({ "features": row_object(0) }));
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().unwrap();
    assert_eq!(body["model"], SIGNAL_NAME);
    assert_eq!(body["version"], v);
    assert_eq!(body["task"], "signal");
    let p = local(0);
    let best = rps_core::signal::argmax(&p);
    assert_eq!(body["prediction"]["signal"], best.as_str(), "{body}");
    for c in Signal::ALL {
        let got = body["prediction"]["probabilities"][c.as_str()]
            .as_f64()
            .unwrap();
        assert!((got - p[c.index()]).abs() < 1e-9, "{c:?}: {got} vs {p:?}");
    }

    // A batch: one answer per row, in order, each the local model's.
    let n = 40;
    let instances: Vec<Value> = (0..n).map(|i| Value::Object(row_object(i))).collect();
    let body: Value = predict(&c, &server, "", &json!({ "instances": instances }))
        .json()
        .unwrap();
    let got = body["predictions"].as_array().unwrap();
    assert_eq!(got.len(), n);
    let mut per_class = [0u64; 3];
    per_class[best.index()] += 1;
    for (i, g) in got.iter().enumerate() {
        let s = rps_core::signal::argmax(&local(i));
        assert_eq!(g["signal"], s.as_str(), "row {i}");
        per_class[s.index()] += 1;
    }

    // /model says what it is and what its labels mean.
    let m: Value = c
        .get(format!("{}/model", server.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(m["task"], "signal");
    assert_eq!(m["signal"]["classes"], json!(["sell", "hold", "buy"]));

    // Metrics: counted per class; the volatility value histogram saw nothing.
    let text = c
        .get(format!("{}/metrics", server.url()))
        .send()
        .unwrap()
        .text()
        .unwrap();
    for s in Signal::ALL {
        #[allow(clippy::cast_precision_loss)]
        let want = per_class[s.index()] as f64;
        let line = format!(
            "model_signal_predictions_total{{signal=\"{}\"}} ",
            s.as_str()
        );
        assert!((metric(&text, &line) - want).abs() < 0.5, "{line}");
    }
    assert!(metric(&text, "model_prediction_value_count ").abs() < 0.5);
    assert!((metric(&text, "model_predictions_total ") - (n as f64 + 1.0)).abs() < 0.5);
    server.shutdown().unwrap();
}

#[test]
fn a_volatility_model_says_its_task_too() {
    let f = Fixture::with_champion();
    let server = f.start();
    let body: Value = predict(
        &client(),
        &server,
        "",
        &json!({ "features": row_object(1) }),
    )
    .json()
    .unwrap();
    assert_eq!(body["task"], "volatility");
    assert!(body["prediction"].as_f64().is_some(), "{body}");
    server.shutdown().unwrap();
}
