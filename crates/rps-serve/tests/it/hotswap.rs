//! Refresh: auth, atomic hot swap under load, bad models refused, polling.

use crate::support::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn refresh(c: &reqwest::blocking::Client, s: &rps_serve::Server) -> reqwest::blocking::Response {
    c.post(format!("{}/refresh", s.url()))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
}

#[test]
fn refresh_requires_the_token() {
    let f = Fixture::with_champion();
    let c = client();
    {
        let mut cfg = f.config();
        cfg.token = None;
        let s = rps_serve::Server::spawn(cfg).unwrap();
        let msg = expect_error(
            c.post(format!("{}/refresh", s.url()))
                .bearer_auth(TOKEN)
                .send()
                .unwrap(),
            403,
            "refresh_disabled",
        );
        assert!(msg.contains("RPS_SERVE_TOKEN"), "{msg}");
    }
    let s = f.start();
    let url = format!("{}/refresh", s.url());
    let msg = expect_error(c.post(&url).send().unwrap(), 401, "unauthorized");
    assert!(msg.contains("Bearer"), "{msg}");
    expect_error(
        c.post(&url).bearer_auth("wrong-token").send().unwrap(),
        401,
        "unauthorized",
    );
    expect_error(
        c.post(&url).bearer_auth("test-toke").send().unwrap(),
        401,
        "unauthorized",
    );
    expect_error(
        c.post(&url).header("authorization", TOKEN).send().unwrap(),
        401,
        "unauthorized",
    );
    let r: Value = refresh(&c, &s).json().unwrap();
    assert_eq!(
        (r["status"].as_str(), r["version"].as_u64()),
        (Some("unchanged"), Some(1))
    );
}

#[test]
fn hot_swap_under_load_drops_no_request() {
    let f = Fixture::with_champion();
    let s = f.start();
    let url = s.url();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let loaders: Vec<_> = (0..2)
        .map(|t| {
            let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), url.clone());
            std::thread::spawn(move || {
                let c = client();
                let mut versions = std::collections::BTreeSet::new();
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut i = t;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let body = if i % 3 == 0 {
                        json!({ "instances": [row_object(i), row_object(i + 1)] })
                    } else {
                        json!({ "features": row_object(i) })
                    };
                    match c.post(format!("{url}/predict")).json(&body).send() {
                        Ok(r) if r.status() == 200 => {
                            let v: Value = r.json().unwrap();
                            versions.insert(v["version"].as_u64().unwrap());
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => {
                            eprintln!("failed: {} {}", r.status(), r.text().unwrap_or_default());
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            eprintln!("failed: {e}");
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    i += 2;
                }
                versions
            })
        })
        .collect();
    let c = client();
    std::thread::sleep(Duration::from_millis(100));
    for round in 0..10 {
        let v = f.register();
        f.promote(v);
        let r = refresh(&c, &s);
        assert_eq!(r.status(), 200, "round {round}");
        let r: Value = r.json().unwrap();
        assert_eq!(
            (
                r["status"].as_str(),
                r["version"].as_u64(),
                r["previous_version"].as_u64()
            ),
            (Some("swapped"), Some(u64::from(v)), Some(u64::from(v - 1)))
        );
        std::thread::sleep(Duration::from_millis(30));
    }
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let mut seen = std::collections::BTreeSet::new();
    for l in loaders {
        seen.extend(l.join().unwrap());
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no request failed during the swaps"
    );
    assert!(
        ok.load(Ordering::Relaxed) > 20,
        "the loop ran: {}",
        ok.load(Ordering::Relaxed)
    );
    assert!(seen.len() >= 3, "requests saw several versions: {seen:?}");
    assert!(seen.contains(&11), "{seen:?}");
    let m: Value = c
        .get(format!("{url}/model"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(m["version"], 11);
    let metrics = c
        .get(format!("{url}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("model_reloads_total{result=\"success\"} 11"),
        "{metrics}"
    );
    assert!(
        metrics.contains("model_info{symbol=\"BTC-USD\",name=\"btc-volatility\",version=\"11\"} 1")
    );
}

#[test]
fn a_bad_new_model_is_rejected_and_the_old_keeps_serving() {
    let f = Fixture::with_champion();
    let s = f.start();
    let c = client();
    let body = json!({ "features": row_object(0) });

    // schema.json disagrees with the model's features.
    let mut files = Fixture::files();
    files.schema.features[0] = "ret_2b_pct".to_owned();
    files.schema.reference[0].name = "ret_2b_pct".to_owned();
    let v2 = f.register_files(&files);
    f.promote(v2);
    let msg = expect_error(refresh(&c, &s), 422, "model_rejected");
    assert!(
        msg.contains("ret_2b_pct") && msg.contains("still serving version 1"),
        "{msg}"
    );
    let r: Value = predict(&c, &s, "", &body).json().unwrap();
    assert_eq!(r["version"], 1);

    // The booster file is corrupt.
    let v3 = f.register();
    std::fs::write(
        f.dir.path().join(format!("{NAME}/versions/{v3}/model.ubj")),
        b"not a model",
    )
    .unwrap();
    f.promote(v3);
    let msg = expect_error(refresh(&c, &s), 502, "model_load_failed");
    assert!(msg.contains("still serving version 1"), "{msg}");
    let r: Value = predict(&c, &s, "", &body).json().unwrap();
    assert_eq!(r["version"], 1);

    // The alias points nowhere.
    std::fs::write(
        f.dir.path().join(format!("{NAME}/aliases.json")),
        br#"{"challenger": 1}"#,
    )
    .unwrap();
    expect_error(refresh(&c, &s), 404, "model_not_found");

    // A good one is accepted again.
    let v4 = f.register();
    f.promote(v4);
    let r: Value = refresh(&c, &s).json().unwrap();
    assert_eq!(
        (r["status"].as_str(), r["version"].as_u64()),
        (Some("swapped"), Some(u64::from(v4)))
    );
    let r: Value = predict(&c, &s, "", &body).json().unwrap();
    assert_eq!(r["version"], v4);
    let metrics = c
        .get(format!("{}/metrics", s.url()))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("model_reloads_total{result=\"rejected\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("model_reloads_total{result=\"error\"} 2"),
        "{metrics}"
    );
}

#[test]
fn polling_follows_the_alias() {
    let f = Fixture::with_champion();
    let mut cfg = f.config();
    cfg.poll_interval = Some(Duration::from_millis(100));
    let s = rps_serve::Server::spawn(cfg).unwrap();
    let c = client();
    let v2 = f.register();
    f.promote(v2);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m: Value = c
            .get(format!("{}/model", s.url()))
            .send()
            .unwrap()
            .json()
            .unwrap();
        if m["version"] == v2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "poller did not pick up version {v2}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
