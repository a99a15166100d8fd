//! The stage binaries end to end, on the real data in ../shared/data.
#![allow(clippy::unwrap_used)]

use rps_pipeline_tests::{Project, btc_params, shared_data};

const BTC: &str = "btc_usd_1h_coinbase_2017-07_2018-12.csv";

fn files_under(p: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if e.file_type().unwrap().is_dir() {
                out.extend(files_under(&e.path()));
            } else {
                out.push(e.path().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn full_pipeline_on_real_btc_hours() {
    let p = Project::new(&btc_params(&shared_data(BTC)));
    let o = p.ok("rps-extract", &[]);
    assert!(o.stderr.contains("13165 bars"), "{}", o.stderr);
    let manifest = p.json(".rps/data/raw/BTC-USD/_manifest.json");
    assert_eq!(
        manifest["partitions"].as_array().unwrap().len(),
        18,
        "2017-07 .. 2018-12 is 18 months"
    );

    // A rerun of the same window changes nothing.
    let before = files_under(&p.path(".rps/data/raw"));
    let o = p.ok("rps-extract", &[]);
    assert!(o.stderr.contains("0 partitions written"), "{}", o.stderr);
    assert_eq!(files_under(&p.path(".rps/data/raw")), before);
    assert_eq!(p.json(".rps/data/raw/BTC-USD/_manifest.json"), manifest);

    p.ok("rps-quality", &[]);
    let q = p.json(".rps/reports/quality.json");
    assert_eq!(q["passed"], true);
    assert!(p.path(".rps/reports/quality.html").exists());

    p.ok("rps-transform", &[]);
    let schema = p.json(".rps/data/features/BTC-USD/schema.json");
    assert!(schema["features"].as_array().unwrap().len() >= 20);
    assert_eq!(
        schema["reference"].as_array().unwrap().len(),
        schema["features"].as_array().unwrap().len()
    );

    p.ok("rps-train", &[]);
    for f in [
        "model.json",
        "model.ubj",
        "meta.json",
        "schema.json",
        "version.json",
        "train_metrics.json",
        "feature_importance.json",
    ] {
        assert!(p.path(".rps/models/candidate").join(f).exists(), "{f}");
    }
    let o = p.ok("rps-evaluate", &[]);
    assert!(
        o.stdout.contains("| model |") || o.stdout.contains("| **model** |"),
        "{}",
        o.stdout
    );
    // metrics.json holds the headline (what `dvc metrics diff` and `dvc exp show` compare);
    // metrics_detail.json every score of every forecaster.
    let detail = p.json(".rps/reports/metrics_detail.json");
    for name in ["model", "persistence", "ewma", "har_rv"] {
        for k in ["rmse", "mae", "r2", "r2_log", "qlike", "n"] {
            assert!(
                detail[name][k].is_number(),
                "{name}.{k} missing in {detail}"
            );
        }
        assert_eq!(
            detail[name]["n"], detail["model"]["n"],
            "every forecaster is scored on the same rows"
        );
    }
    let m = p.json(".rps/reports/metrics.json");
    for name in ["model", "persistence", "ewma", "har_rv"] {
        assert_eq!(m[name]["qlike"], detail[name]["qlike"], "{m}");
    }
    let size = std::fs::metadata(p.path(".rps/reports/metrics.json"))
        .unwrap()
        .len();
    assert!(
        size < 1500,
        "metrics.json is {size} bytes: a headline, not a dump"
    );
    assert!(m["model"]["n"].as_u64().unwrap() > 1500);
    // Honest floor: the model beats naive persistence on QLIKE.
    assert!(
        m["model"]["qlike"].as_f64().unwrap() < m["persistence"]["qlike"].as_f64().unwrap(),
        "{m}"
    );
    assert_eq!(
        m["promotion"]["promoted"], true,
        "the first model becomes champion"
    );
    let aliases = p.json(".rps/registry/btc-volatility/aliases.json");
    assert_eq!(aliases["champion"], 1);
    for f in ["evaluation.md", "predictions.csv", "predictions.png"] {
        assert!(p.path(".rps/reports").join(f).exists(), "{f}");
    }

    // Evaluating the champion again changes nothing; --require-promotion turns "kept" into exit 9.
    let o = p.run("rps-evaluate", &["--require-promotion"]);
    assert_eq!(o.code, 9, "{}", o.stderr);
    assert!(o.stderr.contains("already the champion"), "{}", o.stderr);

    // A second training run is a new version, judged against the champion on the same rows.
    p.ok("rps-train", &[]);
    p.ok("rps-evaluate", &[]);
    let m = p.json(".rps/reports/metrics.json");
    assert_eq!(m["promotion"]["challenger_version"], 2);
    assert_eq!(m["promotion"]["champion_version"], 1);
    // Same data, same seed: an identical model, so no improvement and no promotion at margin 0.
    assert_eq!(m["promotion"]["promoted"], false, "{m}");
    assert_eq!(
        p.json(".rps/registry/btc-volatility/aliases.json")["champion"],
        1
    );
}

#[test]
fn eth_half_hour_bars_with_a_column_mapping_and_realized_volatility() {
    let params = format!(
        "data:\n  source: file\n  symbol: ETH-USD\n  interval: 30m\n  bar: 1h\n  file:\n    path: {}\n    columns: {{timestamp: Date, open: ETH.open, high: ETH.high, low: ETH.low, close: ETH.close, volume: ETH.volume}}\ntarget:\n  estimator: realized\nquality:\n  max_gap_fraction: 0.01\ntrain:\n  num_boost_round: 200\n  early_stopping_rounds: 20\n",
        shared_data("eth_usd_30m_2017-10_2019-10.csv").display()
    );
    let p = Project::new(&params);
    let o = p.ok("rps-extract", &[]);
    assert!(o.stderr.contains("35011 bars"), "{}", o.stderr);
    p.ok("rps-quality", &[]);
    let gaps = p.json(".rps/reports/quality.json")["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "gaps")
        .cloned()
        .unwrap();
    assert!(
        gaps["detail"]
            .as_str()
            .unwrap()
            .starts_with("30 missing bars"),
        "{gaps}"
    );
    p.ok("rps-transform", &[]);
    let schema = p.json(".rps/data/features/ETH-USD/schema.json");
    assert_eq!(schema["bar"], "1h");
    assert_eq!(schema["target"]["estimator"], "realized");
}

fn expect_failure(p: &Project, stage: &str, args: &[&str], code: i32, needle: &str) {
    let o = p.run(stage, args);
    assert_eq!(
        o.code, code,
        "{stage}: wanted exit {code}, got {}:\n{}",
        o.code, o.stderr
    );
    assert!(
        o.stderr.contains(needle),
        "{stage}: stderr should mention {needle:?}:\n{}",
        o.stderr
    );
}

#[test]
fn bad_input_gets_a_clear_error_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("in.csv");
    let p = Project::new(&btc_params(&csv));
    let raw = p.path(".rps/data/raw/BTC-USD");

    // Missing column.
    std::fs::write(
        &csv,
        "timestamp_utc,open,high,low,close\n2018-01-01T00:00:00Z,1,2,0.5,1.5\n",
    )
    .unwrap();
    expect_failure(&p, "rps-extract", &[], 4, "no column \"volume_btc\"");
    assert!(!raw.exists(), "no partial output");

    // Empty file.
    std::fs::write(&csv, "").unwrap();
    expect_failure(&p, "rps-extract", &[], 4, "is empty");

    // Unparseable value.
    std::fs::write(
        &csv,
        "timestamp_utc,open,high,low,close,volume_btc\n2018-01-01T00:00:00Z,1,2,abc,1.5,3\n",
    )
    .unwrap();
    expect_failure(
        &p,
        "rps-extract",
        &[],
        4,
        "row 2: column \"low\": \"abc\" is not a number",
    );

    // Unreadable Parquet.
    let pq = dir.path().join("in.parquet");
    std::fs::write(&pq, b"PAR1 this is not parquet").unwrap();
    expect_failure(
        &p,
        "rps-extract",
        &["--file", pq.to_str().unwrap()],
        4,
        "not a readable Parquet file",
    );
    assert!(!raw.exists(), "no partial output");

    // Bad params.
    let bad = Project::new("split:\n  trian: 0.5\n");
    expect_failure(&bad, "rps-extract", &[], 3, "unknown field `trian`");

    // NaN prices: stored as missing values, then the quality gate stops the pipeline.
    let mut text = String::from("timestamp_utc,open,high,low,close,volume_btc\n");
    for i in 0..600 {
        let close = if i % 40 == 0 {
            "NaN".to_owned()
        } else {
            format!("{}", 100.0 + f64::from(i % 7))
        };
        text.push_str(&format!(
            "2018-01-{:02}T{:02}:00:00Z,100,108,99,{close},5\n",
            1 + i / 24,
            i % 24
        ));
    }
    std::fs::write(&csv, text).unwrap();
    p.ok("rps-extract", &[]);
    expect_failure(
        &p,
        "rps-quality",
        &[],
        5,
        "nulls: 15 missing values in column `close`",
    );
    let q = p.json(".rps/reports/quality.json");
    assert_eq!(q["passed"], false);
    assert!(
        p.path(".rps/reports/quality.html").exists(),
        "the report is written even when the gate fails"
    );

    // Stages downstream of a missing input say so.
    let empty = Project::new(&btc_params(&csv));
    expect_failure(&empty, "rps-transform", &[], 4, "object not found");
    expect_failure(&empty, "rps-train", &[], 4, "object not found");
}

#[test]
fn help_explains_flags_and_exit_codes() {
    let p = Project::new("");
    for stage in [
        "rps-extract",
        "rps-quality",
        "rps-transform",
        "rps-train",
        "rps-evaluate",
    ] {
        let o = p.ok(stage, &["--help"]);
        assert!(o.stdout.contains("EXIT CODES"), "{stage}");
        assert!(o.stdout.contains("--params"), "{stage}");
        assert!(o.stdout.contains("--log-format"), "{stage}");
    }
}

#[test]
fn json_logs_for_pods() {
    let p = Project::new(
        "data:\n  source: synthetic\n  start: \"2024-01-01T00:00:00Z\"\n  end: \"2024-01-03T00:00:00Z\"\n",
    );
    let o = p.ok("rps-extract", &["--log-format", "json"]);
    let line = o
        .stderr
        .lines()
        .find(|l| l.contains("extract done"))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["level"], "INFO");
    assert!(v["message"].as_str().unwrap().contains("48 bars"));
}

/// One home shared by hand runs, `dvc repro` and experiments: bars from another source are never
/// merged into the dataset (exit 3 naming both sources), and a model trained on another dataset
/// is never compared with the champion: it is reported as not comparable and the champion kept.
#[test]
fn one_home_never_mixes_sources_nor_compares_models_across_them() {
    let sample = rps_pipeline_tests::repo_root().join("data/sample/btc_usd_1h_coinbase_2018.csv");
    let p = Project::new(&format!(
        "{}train:\n  num_boost_round: 20\nevaluate:\n  walk_forward_folds: 0\n",
        btc_params(&sample)
    ));
    for stage in [
        "rps-extract",
        "rps-quality",
        "rps-transform",
        "rps-train",
        "rps-evaluate",
    ] {
        p.ok(stage, &[]);
    }
    let manifest = p.json(".rps/data/raw/BTC-USD/_manifest.json");
    assert_eq!(manifest["source"], "file");
    assert_eq!(
        p.json(".rps/data/features/BTC-USD/schema.json")["source"],
        "file"
    );
    let window = [
        "--start",
        "2018-01-01T00:00:00Z",
        "--end",
        "2018-07-01T00:00:00Z",
    ];
    let synthetic = [&["--source", "synthetic"][..], &window[..]].concat();
    expect_failure(
        &p,
        "rps-extract",
        &synthetic,
        3,
        "holds BTC-USD from the source \"file\"; merging bars from \"synthetic\"",
    );
    assert_eq!(
        p.json(".rps/data/raw/BTC-USD/_manifest.json"),
        manifest,
        "nothing merged"
    );

    let replace = [&synthetic[..], &["--full-refresh"][..]].concat();
    p.ok("rps-extract", &replace);
    for stage in ["rps-quality", "rps-transform", "rps-train"] {
        p.ok(stage, &[]);
    }
    let o = p.ok("rps-evaluate", &[]);
    assert!(o.stderr.contains("not compared"), "{}", o.stderr);
    let detail = p.json(".rps/reports/metrics_detail.json");
    let reason = detail["promotion"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(
            "champion v1 was trained on BTC-USD from file, this model on BTC-USD from synthetic"
        ) && reason.contains("not comparable"),
        "{reason}"
    );
    assert_eq!(detail["promotion"]["promoted"], false);
    assert_eq!(
        p.json(".rps/registry/btc-volatility/aliases.json")["champion"],
        1
    );
}

#[test]
fn symbols_lists_params_yamls_symbols_on_stdout_or_into_a_file() {
    let p = Project::new(
        "data:\n  symbols:\n    BTC-USDT: {}\n    ETH-USD: {model_name: eth-volatility, signal_model_name: eth-signal}\n",
    );
    let o = p.ok("rps", &["symbols"]);
    assert_eq!(o.stdout, "[\"BTC-USDT\",\"ETH-USD\"]\n");
    assert_eq!(
        p.ok("rps", &["symbols", "--lines"]).stdout,
        "BTC-USDT\nETH-USD\n"
    );
    // --output: what a pod hands to Airflow as XCom (/airflow/xcom/return.json), replaced whole.
    let out = p.path("xcom/return.json");
    let out_s = out.to_str().unwrap();
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, "stale").unwrap();
    assert_eq!(p.ok("rps", &["symbols", "--output", out_s]).stdout, "");
    assert_eq!(
        p.json("xcom/return.json"),
        serde_json::json!(["BTC-USDT", "ETH-USD"])
    );
    let left: Vec<_> = std::fs::read_dir(out.parent().unwrap()).unwrap().collect();
    assert_eq!(left.len(), 1, "no temporary file left beside it");
    // A file where the folder should be: exit 7 naming the path.
    std::fs::write(p.path("blocker"), "").unwrap();
    let blocked = p.path("blocker/return.json");
    expect_failure(
        &p,
        "rps",
        &["symbols", "--output", blocked.to_str().unwrap()],
        7,
        "blocker/return.json",
    );
    // A bad entry anywhere is exit 3, before anything is written.
    std::fs::write(
        p.path("params.yaml"),
        "data:\n  symbols:\n    BTC-USDT: {}\n    ETH-USD: {model_name: btc-volatility}\n",
    )
    .unwrap();
    expect_failure(
        &p,
        "rps",
        &["symbols", "--output", out_s],
        3,
        "btc-volatility",
    );
    assert_eq!(
        p.json("xcom/return.json"),
        serde_json::json!(["BTC-USDT", "ETH-USD"])
    );
}
