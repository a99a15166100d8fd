//! The live set: champion, challenger and baseline served side by side, swapped all or nothing.

use crate::support::*;
use rps_tracking::Registry as _;
use serde_json::{Value, json};

fn get(
    c: &reqwest::blocking::Client,
    s: &rps_serve::Server,
    path: &str,
) -> reqwest::blocking::Response {
    c.get(format!("{}{path}", s.url())).send().unwrap()
}

fn refresh(c: &reqwest::blocking::Client, s: &rps_serve::Server) -> reqwest::blocking::Response {
    c.post(format!("{}/refresh", s.url()))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
}

/// alias → version from `GET /models`, in the listed order.
fn live(c: &reqwest::blocking::Client, s: &rps_serve::Server) -> Vec<(String, u64)> {
    let m: Value = get(c, s, "/models").json().unwrap();
    m["live"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["alias"].as_str().unwrap().to_owned(),
                e["version"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn version_of(c: &reqwest::blocking::Client, s: &rps_serve::Server, query: &str) -> u64 {
    let r = predict(c, s, query, &json!({ "features": row_object(1) }));
    assert_eq!(r.status(), 200, "{query}");
    r.json::<Value>().unwrap()["version"].as_u64().unwrap()
}

fn pairs(p: &[(&str, u64)]) -> Vec<(String, u64)> {
    p.iter().map(|(a, v)| ((*a).to_owned(), *v)).collect()
}

#[test]
fn every_live_alias_is_served_and_listed() {
    let f = Fixture::empty();
    for _ in 0..3 {
        f.register();
    }
    f.promote(3);
    f.registry.set_alias(NAME, "challenger", 2).unwrap();
    f.registry.set_alias(NAME, "baseline", 1).unwrap();
    let s = f.start();
    let c = client();
    assert_eq!(
        live(&c, &s),
        pairs(&[("champion", 3), ("challenger", 2), ("baseline", 1)])
    );
    for (q, v) in [
        ("", 3),
        ("?model=champion", 3),
        ("?model=challenger", 2),
        ("?model=challenger", 2),
        ("?model=baseline", 1),
        ("?model=1", 1),
    ] {
        assert_eq!(version_of(&c, &s, q), v, "{q}");
    }
    let m: Value = get(&c, &s, "/model?model=baseline").json().unwrap();
    assert_eq!(m["version"], 1);
    assert_eq!(m["aliases"], json!(["baseline"]));

    // Per-version metrics: the info family joins alias and version; counters by version.
    let text = get(&c, &s, "/metrics").text().unwrap();
    for line in [
        "model_version_info{symbol=\"BTC-USD\",alias=\"champion\",version=\"3\"} 1",
        "model_version_info{symbol=\"BTC-USD\",alias=\"challenger\",version=\"2\"} 1",
        "model_version_info{symbol=\"BTC-USD\",alias=\"baseline\",version=\"1\"} 1",
        "model_version_predictions_total{symbol=\"BTC-USD\",version=\"3\"} 2",
        "model_version_predictions_total{symbol=\"BTC-USD\",version=\"2\"} 2",
        "model_version_predictions_total{symbol=\"BTC-USD\",version=\"1\"} 2",
        "model_version_prediction_latency_seconds_count{symbol=\"BTC-USD\",version=\"2\"} 2",
        // The existing families are unchanged: the served alias's model, all predictions.
        "model_info{symbol=\"BTC-USD\",name=\"btc-volatility\",version=\"3\"} 1",
        "model_predictions_total 6",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

#[test]
fn only_existing_aliases_are_live_and_the_list_is_configurable() {
    let f = Fixture::with_champion();
    let s = f.start();
    let c = client();
    assert_eq!(live(&c, &s), pairs(&[("champion", 1)]));
    expect_error(
        predict(
            &c,
            &s,
            "?model=challenger",
            &json!({ "features": row_object(0) }),
        ),
        404,
        "model_not_found",
    );
    drop(s);
    let v2 = f.register();
    f.registry.set_alias(NAME, "challenger", v2).unwrap();
    let mut cfg = f.config();
    cfg.live_aliases = vec!["baseline".to_owned()];
    let s = rps_serve::Server::spawn(cfg).unwrap();
    assert_eq!(live(&c, &s), pairs(&[("champion", 1)]));
    // Not live, still answered on demand from the registry.
    assert_eq!(version_of(&c, &s, "?model=challenger"), 2);
}

#[test]
fn refresh_swaps_the_whole_set_or_nothing() {
    let f = Fixture::empty();
    for _ in 0..2 {
        f.register();
    }
    f.promote(2);
    f.registry.set_alias(NAME, "baseline", 1).unwrap();
    let s = f.start();
    let c = client();
    assert_eq!(live(&c, &s), pairs(&[("champion", 2), ("baseline", 1)]));

    // Evaluate-style promotion of v3: v2 becomes challenger. One refresh moves all of it.
    let v3 = f.register();
    rps_tracking::live::record_evaluation(&f.registry, NAME, v3, true).unwrap();
    let r: Value = refresh(&c, &s).json().unwrap();
    assert_eq!(r["status"], "swapped");
    assert_eq!(
        r["live"],
        json!({"champion": 3, "challenger": 2, "baseline": 1})
    );
    assert_eq!(
        live(&c, &s),
        pairs(&[("champion", 3), ("challenger", 2), ("baseline", 1)])
    );
    assert_eq!(version_of(&c, &s, "?model=challenger"), 2);

    // Only the challenger moves: still a swap of the set, the served version stays.
    let v4 = f.register();
    rps_tracking::live::record_evaluation(&f.registry, NAME, v4, false).unwrap();
    let r: Value = refresh(&c, &s).json().unwrap();
    assert_eq!(
        (
            r["status"].as_str(),
            r["previous_version"].as_u64(),
            r["version"].as_u64()
        ),
        (Some("swapped"), Some(3), Some(3))
    );
    assert_eq!(version_of(&c, &s, "?model=challenger"), 4);
    let r: Value = refresh(&c, &s).json().unwrap();
    assert_eq!(r["status"], "unchanged");

    // A corrupt challenger: the whole new set is refused, the old set keeps serving — even
    // though the champion moved to a good version at the same time.
    let v5 = f.register();
    std::fs::write(
        f.dir.path().join(format!("{NAME}/versions/{v5}/model.ubj")),
        b"not a model",
    )
    .unwrap();
    let v6 = f.register();
    f.promote(v6);
    f.registry.set_alias(NAME, "challenger", v5).unwrap();
    let msg = expect_error(refresh(&c, &s), 502, "model_load_failed");
    assert!(
        msg.contains("challenger") && msg.contains("still serving version 3"),
        "{msg}"
    );
    assert_eq!(
        live(&c, &s),
        pairs(&[("champion", 3), ("challenger", 4), ("baseline", 1)])
    );
    assert_eq!(version_of(&c, &s, ""), 3);
    assert_eq!(version_of(&c, &s, "?model=challenger"), 4);

    // Fixed: the next refresh takes the whole new set.
    f.registry.set_alias(NAME, "challenger", v3).unwrap();
    let r: Value = refresh(&c, &s).json().unwrap();
    assert_eq!(
        r["live"],
        json!({"champion": 6, "challenger": 3, "baseline": 1})
    );
    let text = get(&c, &s, "/metrics").text().unwrap();
    assert!(
        text.contains("model_version_info{symbol=\"BTC-USD\",alias=\"champion\",version=\"6\"} 1"),
        "{text}"
    );
    assert!(
        !text.contains("model_version_info{symbol=\"BTC-USD\",alias=\"challenger\",version=\"4\"}"),
        "{text}"
    );
}

#[test]
fn archived_versions_are_still_answered_by_number() {
    let f = Fixture::empty();
    for _ in 0..4 {
        f.register();
    }
    f.promote(4);
    assert_eq!(
        rps_tracking::live::retain(&f.registry, NAME, 2).unwrap(),
        vec![1, 2]
    );
    assert_eq!(f.registry.versions(NAME).unwrap(), vec![3, 4]);
    let s = f.start();
    let c = client();
    assert_eq!(version_of(&c, &s, "?model=1"), 1);
    // Numbering continues after the archive.
    assert_eq!(f.register(), 5);
}
