//! The signal task (`train.task: signal`) end to end on the bundled sample: extract → quality →
//! transform → train → evaluate, then the saved model reloaded in Rust alone.
#![allow(clippy::unwrap_used)]

use rps_pipeline_tests::{Project, repo_root};

/// The repository's params.yaml with the sample's absolute path and `train.task: signal`.
fn signal_params() -> String {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("params.yaml")).unwrap();
    let sample = root.join("data/sample/btc_usdt_1h_binance_2020-2021.csv");
    let text = text.replace(
        "path: data/sample/btc_usdt_1h_binance_2020-2021.csv",
        &format!("path: {}", sample.display()),
    );
    assert!(
        text.contains("  task: volatility "),
        "params.yaml has train.task"
    );
    text.replace("  task: volatility ", "  task: signal ")
}

/// The counts of a Markdown confusion matrix that follows `### <name>` in `md`.
fn confusion_counts(md: &str, name: &str) -> Vec<Vec<u64>> {
    let start = md.find(&format!("### {name}\n")).unwrap();
    md[start..]
        .lines()
        .filter(|l| {
            l.starts_with("| sell |") || l.starts_with("| hold |") || l.starts_with("| buy |")
        })
        .take(3)
        .map(|l| {
            l.split('|')
                .filter_map(|c| c.trim().parse::<u64>().ok())
                .take(3)
                .collect()
        })
        .collect()
}

#[test]
fn signal_task_on_the_bundled_sample() {
    let p = Project::new(&signal_params());
    p.ok("rps-extract", &[]);
    p.ok("rps-quality", &[]);
    p.ok("rps-transform", &[]);
    // Train and evaluate label rows from the features' close column: the raw dataset is gone.
    std::fs::remove_dir_all(p.path(".rps/data/raw")).unwrap();
    let o = p.ok("rps-train", &[]);
    assert!(o.stderr.contains("btc-signal v1"), "{}", o.stderr);
    let dir = p.path(".rps/models/candidate");
    for f in [
        "model.json",
        "model.ubj",
        "meta.json",
        "schema.json",
        "version.json",
        "train_metrics.json",
    ] {
        assert!(dir.join(f).exists(), "{f}");
    }
    let meta = p.json(".rps/models/candidate/meta.json");
    assert_eq!(meta["task"], "signal");
    assert_eq!(
        meta["signal"]["classes"],
        serde_json::json!(["sell", "hold", "buy"])
    );
    assert_eq!(meta["signal"]["horizon"], 1);
    assert_eq!(meta["signal"]["threshold"], 0.002);
    assert_eq!(meta["xgboost_params"]["objective"], "multi:softprob");
    assert_eq!(meta["xgboost_params"]["num_class"], 3);
    let booster = p.json(".rps/models/candidate/model.json");
    assert_eq!(
        booster["learner"]["learner_model_param"]["num_class"], "3",
        "XGBoost's own file says 3 classes"
    );

    let o = p.ok("rps-evaluate", &[]);
    assert!(o.stdout.contains("| model |"), "{}", o.stdout);
    let m = p.json(".rps/reports/metrics.json");
    assert_eq!(m["task"], "signal");
    let n = m["model"]["n"].as_u64().unwrap();
    let schema = p.json(".rps/data/features/BTC-USDT/schema.json");
    let test_rows = schema["rows"]["test"].as_u64().unwrap();
    assert!(
        n <= test_rows && n + 5 >= test_rows,
        "{n} labelled of {test_rows}"
    );
    for name in ["model", "majority", "momentum"] {
        let s = &m[name];
        assert_eq!(s["n"], n, "{name}: the same rows");
        for k in ["accuracy", "macro_f1"] {
            assert!(s[k].is_number(), "{name}.{k}");
        }
        let total: u64 = s["confusion"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()))
            .sum();
        assert_eq!(
            total, n,
            "{name}: the confusion matrix counts every test row"
        );
    }
    let md = std::fs::read_to_string(p.path(".rps/reports/evaluation.md")).unwrap();
    assert!(md.contains("rows = truth, columns = predicted"), "{md}");
    let counts = confusion_counts(&md, "model");
    assert_eq!(counts.len(), 3);
    assert_eq!(counts.iter().flatten().sum::<u64>(), n);
    assert_eq!(m["promotion"]["promoted"], true);
    assert_eq!(m["promotion"]["metric"], "macro_f1");
    assert_eq!(
        p.json(".rps/registry/btc-signal/aliases.json")["champion"],
        1
    );
    assert!(
        !p.path(".rps/registry/btc-volatility").exists(),
        "the signal task never registers a volatility model"
    );

    // Python-free reloading: the model file alone, in Rust, predicts probabilities summing to
    // 1, and the ones the report wrote.
    let meta: rps_model::ModelMeta =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    let model =
        rps_model::SignalModel::from_parts(&std::fs::read(dir.join("model.ubj")).unwrap(), meta)
            .unwrap();
    let store = rps_store::open(p.path(".rps/data/features/BTC-USDT").to_str().unwrap()).unwrap();
    let (ds, _) = rps_store::frame::read(store.as_ref()).unwrap();
    let test = ds.rows(rps_core::split::Split::Test);
    let proba = model
        .predict_proba(&rps_model::Rows::gather(&ds.frame.columns, &test))
        .unwrap();
    for row in &proba {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-5, "{row:?}");
    }
    let csv = std::fs::read_to_string(p.path(".rps/reports/predictions.csv")).unwrap();
    let first: Vec<f64> = csv.lines().nth(1).unwrap().split(',').collect::<Vec<_>>()[3..6]
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    // The first labelled test row is among the first test rows (labels skip missing bars only).
    assert!(
        proba[..5]
            .iter()
            .any(|r| r.iter().zip(&first).all(|(a, b)| (a - b).abs() < 1e-6)),
        "the report's probabilities {first:?} come from the reloaded model"
    );

    // Evaluating the champion again changes nothing.
    let o = p.run("rps-evaluate", &["--require-promotion"]);
    assert_eq!(o.code, 9, "{}", o.stderr);
    assert!(o.stderr.contains("already the champion"), "{}", o.stderr);
}
