//! Issue #20: one service for every symbol of params.yaml's `data.symbols`, each with its own
//! registered models, chosen per request (`?symbol=` or a `symbol` field), listed per symbol and
//! hot swapped per symbol without touching the others.

use crate::support::*;
use rps_tracking::Registry as _;
use serde_json::{Value, json};
use std::sync::Arc;

const BTC: &str = "btc-vol";
/// A symbol, its model name and its live set (alias, version) as `/models` lists them.
type Listed = (String, String, Vec<(String, u64)>);
const ETH: &str = "eth-vol";

/// BTC-USD: `btc-vol` v1 champion. ETH-USD: `eth-vol` v1 challenger, v2 champion. A
/// params.yaml listing both (and SOL-USD, whose `sol-vol` has no version, when `with_sol`).
fn two_symbols(with_sol: bool) -> (Fixture, rps_serve::Config) {
    let f = Fixture::empty();
    let files = Fixture::files();
    let b = f.register_as(BTC, &files);
    f.registry.set_alias(BTC, "champion", b).unwrap();
    let e1 = f.register_as(ETH, &files);
    let e2 = f.register_as(ETH, &files);
    f.registry.set_alias(ETH, "champion", e2).unwrap();
    f.registry.set_alias(ETH, "challenger", e1).unwrap();
    let sol = if with_sol {
        "    SOL-USD: {model_name: sol-vol, signal_model_name: sol-signal}\n"
    } else {
        ""
    };
    let params = f.dir.path().join("params.yaml");
    std::fs::write(
        &params,
        format!(
            "data:\n  symbols:\n    BTC-USD: {{model_name: {BTC}}}\n    ETH-USD: {{model_name: {ETH}, signal_model_name: eth-signal}}\n{sol}"
        ),
    )
    .unwrap();
    let mut cfg = f.config();
    cfg.params = Some(params.to_str().unwrap().to_owned());
    (f, cfg)
}

fn get(c: &reqwest::blocking::Client, s: &rps_serve::Server, path: &str) -> Value {
    let r = c.get(format!("{}{path}", s.url())).send().unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().unwrap()
}

/// (model, version) of a 200 `/predict` answer.
fn answered(r: reqwest::blocking::Response) -> (String, u64) {
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    (
        v["model"].as_str().unwrap().to_owned(),
        v["version"].as_u64().unwrap(),
    )
}

fn refresh(
    c: &reqwest::blocking::Client,
    s: &rps_serve::Server,
    query: &str,
) -> reqwest::blocking::Response {
    c.post(format!("{}/refresh{query}", s.url()))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
}

#[test]
fn each_symbol_is_answered_by_its_own_models() {
    let (_f, cfg) = two_symbols(false);
    let s = rps_serve::Server::spawn(cfg).unwrap();
    let c = client();
    let row = row_object(3);

    // /models: every symbol with its registered name and live set, in params.yaml's order.
    let m = get(&c, &s, "/models");
    assert_eq!(m["per_symbol"], true);
    assert!(
        m.get("live").is_none(),
        "no top-level live set with several symbols: {m}"
    );
    let listed: Vec<Listed> = m["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["symbol"].as_str().unwrap().to_owned(),
                e["model"].as_str().unwrap().to_owned(),
                e["live"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| {
                        (
                            l["alias"].as_str().unwrap().to_owned(),
                            l["version"].as_u64().unwrap(),
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            (
                "BTC-USD".to_owned(),
                BTC.to_owned(),
                vec![("champion".to_owned(), 1)]
            ),
            (
                "ETH-USD".to_owned(),
                ETH.to_owned(),
                vec![("champion".to_owned(), 2), ("challenger".to_owned(), 1)]
            ),
        ]
    );
    assert_eq!(m["symbols"][1]["signal_model"], "eth-signal");
    let one = get(&c, &s, "/models?symbol=ETH-USD");
    assert_eq!(
        (one["model"].as_str(), one["live"][0]["version"].as_u64()),
        (Some(ETH), Some(2))
    );

    // A request names its symbol by query or body; the symbol's own models answer.
    let by_query = predict(&c, &s, "?symbol=ETH-USD", &json!({ "features": row }));
    assert_eq!(answered(by_query), (ETH.to_owned(), 2));
    let by_body = predict(&c, &s, "", &json!({ "symbol": "BTC-USD", "features": row }));
    assert_eq!(answered(by_body), (BTC.to_owned(), 1));
    let challenger = predict(
        &c,
        &s,
        "?symbol=ETH-USD&model=challenger",
        &json!({ "instances": [row, row] }),
    );
    assert_eq!(answered(challenger), (ETH.to_owned(), 1));
    // Both models are the same trees: the same row gets the same forecast either way.
    let a: Value = predict(&c, &s, "?symbol=BTC-USD", &json!({ "features": row }))
        .json()
        .unwrap();
    assert!(
        (a["prediction"].as_f64().unwrap() - expected(3)).abs() < 1e-6,
        "{a}"
    );

    // Without a symbol, or with one not served: a 4xx naming the served symbols.
    let r = predict(&c, &s, "", &json!({ "features": row }));
    assert_eq!(r.status(), 400);
    let body: Value = r.json().unwrap();
    assert_eq!(body["error"]["code"], "symbol_required", "{body}");
    assert_eq!(body["error"]["symbols"], json!(["BTC-USD", "ETH-USD"]));
    let msg = expect_error(
        predict(&c, &s, "?symbol=DOGE-USD", &json!({ "features": row })),
        404,
        "unknown_symbol",
    );
    assert!(msg.contains("DOGE-USD") && msg.contains("ETH-USD"), "{msg}");
    expect_error(
        predict(
            &c,
            &s,
            "?symbol=ETH-USD",
            &json!({ "symbol": "BTC-USD", "features": row }),
        ),
        422,
        "symbol_mismatch",
    );
    expect_error(
        predict(&c, &s, "", &json!({ "symbol": 7, "features": row })),
        422,
        "invalid_symbol",
    );
    expect_error(
        predict(&c, &s, "", &json!({ "symbol": "", "features": row })),
        422,
        "invalid_symbol",
    );
    let r = c.get(format!("{}/model", s.url())).send().unwrap();
    expect_error(r, 400, "symbol_required");

    // /model and /ready per symbol.
    let model = get(&c, &s, "/model?symbol=ETH-USD&model=challenger");
    assert_eq!(
        (
            model["name"].as_str(),
            model["symbol"].as_str(),
            model["version"].as_u64()
        ),
        (Some(ETH), Some("ETH-USD"), Some(1))
    );
    let ready = get(&c, &s, "/ready");
    assert_eq!(ready["symbols"]["ETH-USD"]["version"], 2, "{ready}");
    assert_eq!(ready["symbols"]["BTC-USD"]["model"], BTC, "{ready}");

    // The recent requests and metrics are per symbol.
    let recent = get(&c, &s, "/api/recent?symbol=ETH-USD");
    let requests = recent["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 2, "{recent}");
    assert!(
        requests.iter().all(|r| r["symbol"] == "ETH-USD"),
        "{recent}"
    );
    let text = c
        .get(format!("{}/metrics", s.url()))
        .send()
        .unwrap()
        .text()
        .unwrap();
    for line in [
        "model_info{symbol=\"BTC-USD\",name=\"btc-vol\",version=\"1\"} 1",
        "model_info{symbol=\"ETH-USD\",name=\"eth-vol\",version=\"2\"} 1",
        "model_version_info{symbol=\"ETH-USD\",alias=\"challenger\",version=\"1\"} 1",
        "model_version_predictions_total{symbol=\"ETH-USD\",version=\"1\"} 2",
        "model_version_predictions_total{symbol=\"ETH-USD\",version=\"2\"} 1",
        "model_version_predictions_total{symbol=\"BTC-USD\",version=\"1\"} 2",
        "drift_window_rows{symbol=\"BTC-USD\"} 2",
        "drift_window_rows{symbol=\"ETH-USD\"} 1",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
}

#[test]
fn a_swap_of_one_symbol_leaves_the_others_serving_untouched() {
    let (f, cfg) = two_symbols(false);
    let s = rps_serve::Server::spawn(cfg).unwrap();
    let c = client();
    let row = row_object(5);
    answered(predict(
        &c,
        &s,
        "?symbol=BTC-USD",
        &json!({ "features": row }),
    ));
    let btc_before = s.state().slots[0].current().unwrap();

    // ETH-USD gets a new champion: refreshing ETH-USD alone swaps it, BTC-USD's model (the same
    // loaded object, with its drift window and counters) keeps serving.
    let e3 = f.register_as(ETH, &Fixture::files());
    f.registry.set_alias(ETH, "champion", e3).unwrap();
    let r: Value = refresh(&c, &s, "?symbol=ETH-USD").json().unwrap();
    assert_eq!(
        (
            r["status"].as_str(),
            r["symbol"].as_str(),
            r["previous_version"].as_u64(),
            r["version"].as_u64()
        ),
        (Some("swapped"), Some("ETH-USD"), Some(2), Some(3)),
        "{r}"
    );
    let btc_after = s.state().slots[0].current().unwrap();
    assert!(
        Arc::ptr_eq(&btc_before, &btc_after),
        "BTC-USD was not reloaded"
    );
    assert_eq!(
        btc_after
            .predictions
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        answered(predict(
            &c,
            &s,
            "",
            &json!({ "symbol": "ETH-USD", "features": row })
        )),
        (ETH.to_owned(), 3)
    );

    // One symbol's bad new champion fails its own swap only: a refresh of every symbol swaps
    // BTC-USD's good one, refuses ETH-USD's, and says which is which.
    let b2 = f.register_as(BTC, &Fixture::files());
    f.registry.set_alias(BTC, "champion", b2).unwrap();
    let mut bad = Fixture::files();
    bad.schema.features[0] = "ret_2b_pct".to_owned();
    let e4 = f.register_as(ETH, &bad);
    f.registry.set_alias(ETH, "champion", e4).unwrap();
    let r = refresh(&c, &s, "");
    assert_eq!(r.status(), 422);
    let body: Value = r.json().unwrap();
    assert_eq!(body["error"]["code"], "model_rejected", "{body}");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.starts_with("refresh failed for ETH-USD: "), "{msg}");
    assert!(msg.contains("still serving version 3"), "{msg}");
    let outcomes: Vec<(&str, &str)> = body["error"]["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["symbol"].as_str().unwrap(), v["status"].as_str().unwrap()))
        .collect();
    assert_eq!(outcomes, [("BTC-USD", "swapped"), ("ETH-USD", "failed")]);
    assert_eq!(
        answered(predict(
            &c,
            &s,
            "?symbol=BTC-USD",
            &json!({ "features": row })
        )),
        (BTC.to_owned(), 2)
    );
    assert_eq!(
        answered(predict(
            &c,
            &s,
            "?symbol=ETH-USD",
            &json!({ "features": row })
        )),
        (ETH.to_owned(), 3)
    );
    // Nothing moved since: unchanged everywhere except the still-bad ETH-USD.
    f.registry.set_alias(ETH, "champion", e3).unwrap();
    let r: Value = refresh(&c, &s, "").json().unwrap();
    assert_eq!(r["status"], "unchanged", "{r}");
    assert_eq!(r["symbols"].as_array().unwrap().len(), 2, "{r}");
}

#[test]
fn a_symbol_without_a_model_is_not_ready_alone() {
    let (f, mut cfg) = two_symbols(true);
    // Without --wait-for-model, a symbol with nothing to serve stops the start (exit 4).
    let e = rps_serve::Server::spawn(cfg.clone()).unwrap_err();
    assert_eq!(e.exit_code(), rps_cli::exit::INPUT);
    let msg = e.to_string();
    assert!(msg.contains("sol-vol") && msg.contains("SOL-USD"), "{msg}");

    cfg.wait_for_model = true;
    let s = rps_serve::Server::spawn(cfg).unwrap();
    let c = client();
    let r = c.get(format!("{}/ready", s.url())).send().unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().unwrap();
    assert_eq!(body["error"]["missing"], json!(["SOL-USD"]), "{body}");
    assert_eq!(get(&c, &s, "/ready?symbol=ETH-USD")["version"], 2);
    let row = row_object(0);
    answered(predict(
        &c,
        &s,
        "?symbol=BTC-USD",
        &json!({ "features": row }),
    ));
    let msg = expect_error(
        predict(&c, &s, "?symbol=SOL-USD", &json!({ "features": row })),
        503,
        "not_ready",
    );
    assert!(msg.contains("SOL-USD") && msg.contains("sol-vol"), "{msg}");
    let m = get(&c, &s, "/models");
    assert_eq!(m["symbols"][2]["ready"], false, "{m}");

    let v = f.register_as("sol-vol", &Fixture::files());
    f.registry.set_alias("sol-vol", "champion", v).unwrap();
    let r: Value = refresh(&c, &s, "?symbol=SOL-USD").json().unwrap();
    assert_eq!(r["status"], "swapped", "{r}");
    let ready = get(&c, &s, "/ready");
    assert_eq!(ready["symbols"]["SOL-USD"]["model"], "sol-vol", "{ready}");
}

#[test]
fn one_symbol_in_params_serves_its_model_for_every_symbol() {
    let f = Fixture::empty();
    let v = f.register_as(ETH, &Fixture::files());
    f.registry.set_alias(ETH, "champion", v).unwrap();
    let params = f.dir.path().join("params.yaml");
    std::fs::write(
        &params,
        format!("data:\n  symbol: ETH-USD\ntrain:\n  model_name: {ETH}\n"),
    )
    .unwrap();
    let mut cfg = f.config();
    cfg.params = Some(params.to_str().unwrap().to_owned());
    let s = rps_serve::Server::spawn(cfg).unwrap();
    let c = client();
    let row = row_object(2);
    for query in ["", "?symbol=ETH-USD", "?symbol=BTC-USD"] {
        assert_eq!(
            answered(predict(&c, &s, query, &json!({ "features": row }))),
            (ETH.to_owned(), 1),
            "{query}"
        );
    }
    let m = get(&c, &s, "/models");
    assert_eq!(
        (m["per_symbol"].as_bool(), m["model"].as_str()),
        (Some(false), Some(ETH))
    );
    assert_eq!(m["symbols"][0]["symbol"], "ETH-USD");
}

#[test]
#[ignore = "needs chromium; make test runs it"]
fn the_dashboard_has_a_symbol_selector_and_a_panel_per_symbol() {
    let (_f, cfg) = two_symbols(false);
    let s = rps_serve::Server::spawn(cfg).unwrap();
    let c = client();
    for _ in 0..2 {
        answered(predict(
            &c,
            &s,
            "?symbol=ETH-USD",
            &json!({ "features": row_object(1) }),
        ));
    }
    // No symbol named: the first one's page, both symbols' panels.
    let dom = crate::dashboard::browse(&format!("{}/dashboard", s.url()), "--dump-dom");
    assert!(
        dom.contains("data-state=\"no-history\""),
        "the script finished: {dom}"
    );
    for (symbol, versions) in [
        ("BTC-USD", "champion v1"),
        ("ETH-USD", "champion v2, challenger v1"),
    ] {
        assert!(
            dom.contains(&format!("data-symbol=\"{symbol}\"")),
            "a panel for {symbol}: {dom}"
        );
        assert!(dom.contains(versions), "{symbol}'s live versions: {dom}");
    }
    assert!(
        dom.contains("<div class=\"symbol-panel selected\" data-symbol=\"BTC-USD\">"),
        "{dom}"
    );
    assert!(
        dom.contains("<option selected=\"\">BTC-USD</option>"),
        "{dom}"
    );
    assert!(dom.contains("Live models of BTC-USD"), "{dom}");
    // ETH-USD's page: its live models and its requests only.
    let page = format!("{}/dashboard?symbol=ETH-USD", s.url());
    let dom = crate::dashboard::browse(&page, "--dump-dom");
    assert!(
        dom.contains("<div class=\"symbol-panel selected\" data-symbol=\"ETH-USD\">"),
        "{dom}"
    );
    assert!(dom.contains("Live models of ETH-USD"), "{dom}");
    assert!(
        dom.contains("ETH-USD, model eth-vol: champion v2, challenger v1"),
        "{dom}"
    );
    assert_eq!(
        dom.matches("<tr class=\"request\" data-at=\"1").count(),
        2,
        "{dom}"
    );
    assert!(
        dom.contains("2 rows served"),
        "ETH-USD's panel counts its rows: {dom}"
    );
    crate::dashboard::screenshot(&page, "dashboard-symbols.png");
}
