//! `train.pooling: pooled` end to end (issue #20): two synthetic symbols through extract,
//! quality and transform each, then one `rps-train` over both and one `rps-evaluate` deciding
//! for both.
#![allow(clippy::unwrap_used)]

use rps_pipeline_tests::Project;

const SYMBOLS: [&str; 2] = ["SYN-A", "SYN-B"];

/// Two synthetic symbols (different seeds and volatility levels), pooled, small boosters.
pub fn pooled_params() -> String {
    "data:
  source: synthetic
  start: 2024-01-01T00:00:00Z
  end: 2024-05-01T00:00:00Z
  symbols:
    SYN-A: {synthetic: {seed: 1, hourly_vol: 0.006}}
    SYN-B: {synthetic: {seed: 2, hourly_vol: 0.015, start_price: 50.0}}
train:
  pooling: pooled
  model_name: syn-volatility
  signal_model_name: syn-signal
  num_boost_round: 150
  early_stopping_rounds: 30
  quantiles: []
evaluate:
  walk_forward_folds: 2
  walk_forward_test_fraction: 0.3
"
    .to_owned()
}

fn prepare(p: &Project) {
    for s in SYMBOLS {
        for stage in ["rps-extract", "rps-quality", "rps-transform"] {
            p.ok(stage, &["--symbol", s]);
        }
    }
}

#[test]
fn pooled_train_fits_one_model_over_both_symbols() {
    let p = Project::new(&pooled_params());
    prepare(&p);
    // One run over every symbol: --symbol makes no sense and is refused.
    let o = p.run("rps-train", &["--symbol", "SYN-A"]);
    assert_eq!(o.code, 3, "{}", o.stderr);
    assert!(o.stderr.contains("without --symbol"), "{}", o.stderr);
    // Under DVC that is the root dvc.yaml's train@<symbol>: the error names the pooled pipeline.
    assert!(
        o.stderr.contains("dvc repro pooled/dvc.yaml"),
        "{}",
        o.stderr
    );
    let o = p.ok("rps-train", &[]);
    assert!(o.stderr.contains("syn-volatility v1"), "{}", o.stderr);
    assert!(o.stderr.contains("SYN-B: validation QLIKE"), "{}", o.stderr);
    let dir = ".rps/models/pooled/candidate";
    let schema = p.json(&format!("{dir}/schema.json"));
    assert_eq!(schema["symbols"], serde_json::json!(SYMBOLS));
    let features: Vec<String> = serde_json::from_value(schema["features"].clone()).unwrap();
    assert_eq!(
        features[features.len() - 2..],
        ["symbol_SYN-A", "symbol_SYN-B"]
    );
    assert_eq!(
        schema["reference"].as_array().unwrap().len(),
        features.len()
    );
    let per_symbol: rps_core::schema::FeatureSchema =
        serde_json::from_value(p.json(".rps/data/features/SYN-A/schema.json")).unwrap();
    assert_eq!(features[..features.len() - 2], per_symbol.features[..]);
    // Rows of both symbols: the pooled training set is the sum of theirs.
    let rows = |s: &serde_json::Value| s["rows"]["train"].as_u64().unwrap();
    let b = p.json(".rps/data/features/SYN-B/schema.json");
    assert_eq!(
        rows(&schema),
        rows(&serde_json::to_value(&per_symbol).unwrap()) + rows(&b)
    );
    let m = p.json(&format!("{dir}/train_metrics.json"));
    for s in SYMBOLS {
        assert!(m["validation_by_symbol"][s]["qlike"].is_number(), "{m}");
    }
    let v = p.json(&format!("{dir}/version.json"));
    assert_eq!(v["name"], "syn-volatility");
    assert!(v["metrics"]["validation_qlike_SYN-A"].is_number(), "{v}");
    // The saved model reads the one-hot columns as inputs.
    let meta = p.json(&format!("{dir}/meta.json"));
    assert_eq!(meta["features"], schema["features"]);
}

#[test]
fn pooled_evaluate_decides_once_for_every_symbol() {
    let p = Project::new(&pooled_params());
    prepare(&p);
    p.ok("rps-train", &[]);
    let o = p.run("rps-evaluate", &["--symbol", "SYN-B"]);
    assert_eq!(o.code, 3, "{}", o.stderr);
    // The first pooled model becomes champion of the one name, for both symbols.
    let o = p.ok("rps-evaluate", &["--require-promotion"]);
    assert!(o.stderr.contains("promoted to champion"), "{}", o.stderr);
    let m = p.json(".rps/reports/pooled/metrics.json");
    assert_eq!(m["promotion"]["promoted"], true, "{m}");
    assert_eq!(m["symbols"], serde_json::json!(SYMBOLS));
    let by: Vec<serde_json::Value> = serde_json::from_value(m["by_symbol"].clone()).unwrap();
    assert_eq!(by.len(), 2);
    for (s, name) in by.iter().zip(SYMBOLS) {
        assert_eq!(s["symbol"], name);
        assert!(s["rows"].as_u64().unwrap() > 100, "{s}");
        for f in ["model", "har_rv", "ewma"] {
            assert!(s["qlike"][f].is_number(), "{s}");
        }
        // The walk-forward verdict on this symbol's rows. The model has no quantiles here
        // (train.quantiles: []), so its interval criteria cannot be measured and fail.
        assert_eq!(s["acceptance"]["passed"], false, "{s}");
        let failed = s["acceptance"]["failed"].as_array().unwrap();
        assert!(failed.contains(&serde_json::json!("coverage80")), "{s}");
    }
    // The walk-forward: 2 folds, judged on both symbols together and on each, in the
    // per-symbol stage's shape.
    let wf = &m["walk_forward"];
    assert_eq!(wf["folds"], 2, "{wf}");
    assert_eq!(wf["passed"], false, "{wf}");
    assert_eq!(wf["together"]["folds"].as_array().unwrap().len(), 2, "{wf}");
    assert_eq!(
        wf["together"]["verdict"]["checks"]
            .as_array()
            .unwrap()
            .len(),
        7
    );
    let rows = |w: &serde_json::Value| w["pooled"]["model"]["n"].as_u64().unwrap();
    assert_eq!(
        rows(&wf["together"]),
        SYMBOLS
            .iter()
            .map(|s| rows(&wf["by_symbol"][s]))
            .sum::<u64>()
    );
    for s in SYMBOLS {
        assert!(wf["by_symbol"][s]["verdict"]["passed"].is_boolean(), "{wf}");
    }
    // Reported, not enforced (evaluate.acceptance.enforce: false): the reason says so.
    let reason = m["promotion"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("fails the acceptance rule on all symbols together")
            && reason.contains("reported, not enforced"),
        "{reason}"
    );
    let md = std::fs::read_to_string(p.path(".rps/reports/pooled/evaluation.md")).unwrap();
    assert!(
        md.contains("## Walk-forward: 2 folds, a pooled model per fold"),
        "{md}"
    );
    // A second training (same data, another seed) is judged against the champion on each
    // symbol's rows and together; whatever it decides, the report says why per symbol.
    p.ok("rps-train", &["--set", "train.xgboost.seed=7"]);
    let o = p.run(
        "rps-evaluate",
        &["--set", "train.xgboost.seed=7", "--require-promotion"],
    );
    assert!(o.code == 0 || o.code == 9, "{}", o.stderr);
    let m = p.json(".rps/reports/pooled/metrics.json");
    assert_eq!(m["promotion"]["challenger_version"], 2, "{m}");
    assert_eq!(m["promotion"]["champion_version"], 1, "{m}");
    assert!(
        m["promotion"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("all symbols together:"),
        "{m}"
    );
    for s in m["by_symbol"].as_array().unwrap() {
        assert!(s["champion"].is_number(), "{s}");
        assert!(
            s["reason"]
                .as_str()
                .unwrap()
                .contains("against the champion"),
            "{s}"
        );
    }
    assert_eq!(o.code == 0, m["promotion"]["promoted"] == true);
}

/// A failed walk-forward verdict blocks a pooled promotion exactly when it would block a
/// per-symbol one: with `evaluate.acceptance.enforce: true`.
#[test]
fn pooled_acceptance_blocks_only_when_enforced() {
    let p = Project::new(&pooled_params());
    prepare(&p);
    p.ok("rps-train", &[]);
    // No quantiles (train.quantiles: []): the interval criteria fail on every scope, so an
    // enforced rule keeps even the first model out.
    let o = p.run(
        "rps-evaluate",
        &[
            "--set",
            "evaluate.acceptance.enforce=true",
            "--require-promotion",
        ],
    );
    assert_eq!(o.code, 9, "{}", o.stderr);
    let m = p.json(".rps/reports/pooled/metrics.json");
    assert_eq!(m["promotion"]["promoted"], false, "{m}");
    let reason = m["promotion"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("enforce is on") && reason.contains("on SYN-B ("),
        "{reason}"
    );
    // The tracking run has the verdicts: together under the per-symbol stage's names, each
    // symbol's with its suffix.
    let runs = std::fs::read_dir(p.path(".rps/runs")).unwrap();
    let run = runs
        .map(|e| {
            p.json(&format!(
                ".rps/runs/{}/run.json",
                e.unwrap().file_name().to_string_lossy()
            ))
        })
        .find(|r| r["stage"] == "evaluate")
        .expect("an evaluate run");
    assert_eq!(run["tags"]["pooling"], "pooled", "{run}");
    assert_eq!(run["params"]["acceptance_enforce"], "true", "{run}");
    let metric = |key: &str| {
        run["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["key"] == key)
            .map(|m| m["value"].as_f64().unwrap())
    };
    for key in [
        "wf_beats_baselines",
        "wf_beats_baselines_SYN-A",
        "wf_beats_baselines_SYN-B",
    ] {
        assert_eq!(metric(key), Some(0.0), "{key}: {run}");
    }
    assert!(
        metric("wf_model_qlike_SYN-B").is_some_and(f64::is_finite),
        "{run}"
    );
    // Not enforced (the default), the same verdicts are reported and the model is promoted.
    let o = p.ok("rps-evaluate", &["--require-promotion"]);
    assert!(o.stderr.contains("promoted to champion"), "{}", o.stderr);
}

/// `dvc repro pooled/dvc.yaml` with `train.pooling: per_symbol`: its train passes
/// `--features data/features/{symbol}`, which only pooled mode reads; refused at once (exit 3),
/// naming the setting, before any data is read.
#[test]
fn a_symbol_template_in_per_symbol_mode_is_refused() {
    let params = pooled_params()
        .replace("pooling: pooled", "pooling: per_symbol")
        .replace(
            "model_name: syn-volatility",
            "model_name: '{symbol}-volatility'",
        )
        .replace("model_name: syn-signal", "model_name: '{symbol}-signal'");
    let p = Project::new(&params);
    let o = p.run(
        "rps-train",
        &[
            "--features",
            "data/features/{symbol}",
            "--out",
            "models/pooled/candidate",
        ],
    );
    assert_eq!(o.code, 3, "{}", o.stderr);
    assert!(
        o.stderr.contains("only train.pooling: pooled reads")
            && o.stderr.contains("train.pooling: per_symbol"),
        "{}",
        o.stderr
    );
}
