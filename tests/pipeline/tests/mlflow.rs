//! The five stages against a real MLflow server (`MLFLOW_TRACKING_URI`): every run is recorded
//! there with its status, params, metric history and artifacts, and the registry lives there.
//! `make test` starts the server (crates/rps-mlflow/tests/servers.sh) and sets
//! `RPS_TEST_MLFLOW_URI`.
#![allow(clippy::unwrap_used)]

use rps_mlflow::{MlflowClient, MlflowConfig, RunStatus};
use rps_pipeline_tests::{Project, btc_params, repo_root};

fn server_uri() -> String {
    std::env::var("RPS_TEST_MLFLOW_URI").unwrap_or_else(|_| {
        panic!(
            "RPS_TEST_MLFLOW_URI is not set: start a server with \
             `eval \"$(bash crates/rps-mlflow/tests/servers.sh start VENV/bin/python STATE)\"` \
             or run `make test`"
        )
    })
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// The bundled 2018 sample with a small, fast model named `model_name`.
fn params(model_name: &str, xgboost_extra: &str) -> String {
    let csv = repo_root().join("data/sample/btc_usd_1h_coinbase_2018.csv");
    format!(
        "{}train:\n  model_name: {model_name}\n  num_boost_round: 60\n  early_stopping_rounds: 20\n  xgboost:\n    objective: reg:squarederror\n    eta: 0.1\n    max_depth: 3\n    seed: 7\n{xgboost_extra}",
        btc_params(&csv)
    )
}

#[test]
#[ignore = "needs a real MLflow server; run by make test"]
fn every_stage_records_its_run_and_the_registry_lives_in_mlflow() {
    let uri = server_uri();
    let experiment = unique("rps-pipeline");
    let model_name = unique("rps-test-model");
    let p = Project::new(&params(&model_name, ""))
        .with_env("MLFLOW_TRACKING_URI", &uri)
        .with_env("MLFLOW_EXPERIMENT_NAME", &experiment);
    let stages = [
        "rps-extract",
        "rps-quality",
        "rps-transform",
        "rps-train",
        "rps-evaluate",
    ];
    for stage in stages {
        p.ok(stage, &[]);
    }
    assert!(
        !p.path(".rps/runs").exists(),
        "with MLflow configured, no local run records"
    );
    assert!(
        !p.path(".rps/registry").exists(),
        "a server with a registry keeps the versions"
    );

    let client = MlflowClient::new(MlflowConfig::new(&uri).unwrap()).unwrap();
    let exp = client
        .get_experiment_by_name(&experiment)
        .unwrap()
        .expect("the experiment was created");
    let runs = client
        .search_runs(&[exp.experiment_id.as_str()], "", &[], 100)
        .unwrap();
    assert_eq!(runs.len(), 5, "one run per stage");
    let by_stage = |stage: &str| {
        runs.iter()
            .find(|r| r.tags.get("rps.stage").map(String::as_str) == Some(stage))
            .unwrap_or_else(|| panic!("no run tagged rps.stage={stage}"))
    };
    for stage in ["extract", "quality", "transform", "train", "evaluate"] {
        let r = by_stage(stage);
        assert_eq!(r.info.status, Some(RunStatus::Finished), "{stage}");
        assert_eq!(r.info.run_name.as_deref(), Some(stage));
        assert!(r.tags.contains_key("git_commit"), "{stage}: {:?}", r.tags);
        assert!(r.info.end_time.is_some(), "{stage}");
    }
    for stage in ["transform", "train", "evaluate"] {
        assert!(
            by_stage(stage)
                .tags
                .get("data_hash")
                .is_some_and(|h| !h.is_empty()),
            "{stage}"
        );
    }

    // Train: params, the per-iteration validation loss, the model directory.
    let train = by_stage("train");
    assert_eq!(train.params["eta"], "0.1");
    assert_eq!(train.params["max_depth"], "3");
    assert!(train.params.contains_key("train_rows"));
    let val_key = train
        .metrics
        .keys()
        .find(|k| k.starts_with("validation_") && !k.contains("qlike") && !k.contains("r2"))
        .cloned();
    let history_key = train
        .metrics
        .keys()
        .filter(|k| k.starts_with("validation_"))
        .find(|k| {
            client
                .get_metric_history(&train.info.run_id, k)
                .unwrap()
                .len()
                > 10
        })
        .cloned();
    assert!(
        history_key.is_some(),
        "no validation metric with more than 10 steps among {:?} (e.g. {val_key:?})",
        train.metrics.keys().collect::<Vec<_>>()
    );
    assert!(train.metrics.contains_key("validation_qlike"));
    let model_files: Vec<String> = client
        .list_artifacts(&train.info.run_id, "model")
        .unwrap()
        .into_iter()
        .map(|f| f.path)
        .collect();
    for f in [
        "model/MLmodel",
        "model/model.json",
        "model/model.ubj",
        "model/meta.json",
        "model/schema.json",
    ] {
        assert!(model_files.iter().any(|p| p == f), "{f} in {model_files:?}");
    }
    let mlmodel = String::from_utf8(
        client
            .download_artifact(&train.info, "model/MLmodel")
            .unwrap(),
    )
    .unwrap();
    assert!(mlmodel.contains("xgboost"), "{mlmodel}");
    let model_json = client
        .download_artifact(&train.info, "model/model.json")
        .unwrap();
    assert_eq!(
        model_json,
        std::fs::read(p.path(".rps/models/candidate/model.json")).unwrap(),
        "the logged model is the one train wrote"
    );

    // Quality and evaluate: their reports.
    let listed = |run: &rps_mlflow::Run| -> Vec<String> {
        client
            .list_artifacts(&run.info.run_id, "")
            .unwrap()
            .into_iter()
            .map(|f| f.path)
            .collect()
    };
    let q = listed(by_stage("quality"));
    assert!(q.iter().any(|f| f.ends_with("quality.html")), "{q:?}");
    let e = by_stage("evaluate");
    let ev = listed(e);
    for f in ["metrics.json", "evaluation.md"] {
        assert!(ev.iter().any(|x| x.ends_with(f)), "{f} in {ev:?}");
    }
    let metrics_path = ev.iter().find(|x| x.ends_with("metrics.json")).unwrap();
    let metrics: serde_json::Value =
        serde_json::from_slice(&client.download_artifact(&e.info, metrics_path).unwrap()).unwrap();
    assert!(metrics["model"]["qlike"].is_number(), "{metrics}");

    // The registry: version 1 from the train run, champion points at it.
    let v = client.get_model_version(&model_name, "1").unwrap();
    assert_eq!(v.run_id.as_deref(), Some(train.info.run_id.as_str()));
    assert!(
        v.source.as_deref().is_some_and(|s| s.ends_with("/model")),
        "{v:?}"
    );
    let champion = client
        .get_version_by_alias(&model_name, "champion")
        .unwrap()
        .expect("the first model becomes champion");
    assert_eq!(champion.version, "1");
    assert_eq!(
        train.tags.get("model_version").map(String::as_str),
        Some("1")
    );

    // A second training run registers version 2; evaluate loads the champion back from MLflow.
    p.ok("rps-train", &[]);
    p.ok("rps-evaluate", &[]);
    assert!(client.get_model_version(&model_name, "2").is_ok());
    let challenger = client
        .get_version_by_alias(&model_name, "challenger")
        .unwrap()
        .unwrap();
    assert_eq!(challenger.version, "2");

    // RPS's registry seam reads the same versions and aliases back from MLflow.
    let fallback = rps_tracking::LocalRegistry::new(
        rps_store::open(p.path("unused-registry").to_str().unwrap()).unwrap(),
    );
    let registry = rps_tracking::MlflowRegistry::new(
        std::sync::Arc::new(MlflowClient::new(MlflowConfig::new(&uri).unwrap()).unwrap()),
        fallback,
    );
    use rps_tracking::Registry as _;
    assert_eq!(registry.versions(&model_name).unwrap(), vec![1, 2]);
    assert_eq!(registry.alias(&model_name, "champion").unwrap(), Some(1));
    let champ = registry.resolve(&model_name, "champion").unwrap();
    assert_eq!(champ.info.version, 1);
    assert_eq!(champ.info.run_id, train.info.run_id);
    assert_eq!(champ.files.xgb_json, model_json);
    assert!(!registry.uses_fallback());

    // A stage that fails leaves its run FAILED.
    std::fs::write(
        p.path("params.yaml"),
        params(&model_name, "    max_depth: -5\n").replace("    max_depth: 3\n", ""),
    )
    .unwrap();
    let o = p.run("rps-train", &[]);
    assert_ne!(o.code, 0, "{}", o.stderr);
    let failed = client
        .search_runs(
            &[exp.experiment_id.as_str()],
            "tags.`rps.stage` = 'train' and attributes.status = 'FAILED'",
            &[],
            10,
        )
        .unwrap();
    assert_eq!(failed.len(), 1, "exit {}: {}", o.code, o.stderr);
    assert!(failed[0].info.end_time.is_some());
}

#[test]
#[ignore = "needs a real MLflow server; run by make test"]
fn bad_credentials_name_the_variables_to_set() {
    let Ok(uri) = std::env::var("RPS_TEST_MLFLOW_AUTH_URI") else {
        let _ = server_uri();
        return;
    };
    let p = Project::new(&params("rps-auth", ""))
        .with_env("MLFLOW_TRACKING_URI", &uri)
        .with_env("MLFLOW_TRACKING_USERNAME", "admin")
        .with_env("MLFLOW_TRACKING_PASSWORD", "wrong-password");
    let o = p.run("rps-extract", &[]);
    assert_eq!(o.code, 6, "{}", o.stderr);
    assert!(
        o.stderr.contains("MLFLOW_TRACKING_USERNAME") && o.stderr.contains("MLFLOW_TRACKING_TOKEN"),
        "{}",
        o.stderr
    );
    assert!(
        !o.stderr.contains("wrong-password"),
        "never print the secret"
    );
}

fn curl(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Kills the server when the test ends, however it ends.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// rps-serve with `MLFLOW_TRACKING_URI` set loads the champion from MLflow's registry and, on
/// `POST /refresh`, swaps in the version evaluate promoted there.
#[test]
#[ignore = "needs a real MLflow server; run by make test"]
fn serve_takes_the_champion_from_mlflow_and_refreshes_it() {
    let uri = server_uri();
    let experiment = unique("rps-serve");
    let model_name = unique("rps-serve-model");
    // The first champion is a deliberately weak model (two trees), so the properly trained second
    // version beats it and evaluate promotes it.
    let full = params(&model_name, "");
    let p = Project::new(&full.replace("num_boost_round: 60", "num_boost_round: 2"))
        .with_env("MLFLOW_TRACKING_URI", &uri)
        .with_env("MLFLOW_EXPERIMENT_NAME", &experiment);
    for stage in [
        "rps-extract",
        "rps-quality",
        "rps-transform",
        "rps-train",
        "rps-evaluate",
    ] {
        p.ok(stage, &[]);
    }

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let _server = Server(
        std::process::Command::new(rps_pipeline_tests::bin_dir().join("rps-serve"))
            .args([
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--model-name",
                &model_name,
            ])
            .arg("--registry")
            .arg(p.path(".rps/registry"))
            .env("MLFLOW_TRACKING_URI", &uri)
            .env("RPS_SERVE_TOKEN", "test-token")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !curl(&["-f", &format!("{base}/ready")]).0 {
        assert!(
            std::time::Instant::now() < deadline,
            "rps-serve not ready in 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let model: serde_json::Value =
        serde_json::from_str(&curl(&[&format!("{base}/model")]).1).unwrap();
    assert_eq!(model["version"], 1, "{model}");
    let n = model["features"].as_array().unwrap().len();
    let row = format!("{{\"features\":[{}]}}", vec!["0.5"; n].join(","));
    let (ok, body) = curl(&[
        "-f",
        "-H",
        "Content-Type: application/json",
        "-d",
        &row,
        &format!("{base}/predict"),
    ]);
    assert!(ok, "{body}");
    assert!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["prediction"]
            .as_f64()
            .unwrap()
            > 0.0
    );

    std::fs::write(p.path("params.yaml"), &full).unwrap();
    p.ok("rps-train", &[]);
    p.ok("rps-evaluate", &[]);
    let (_, denied) = curl(&[
        "-X",
        "POST",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{base}/refresh"),
    ]);
    assert_eq!(denied, "401");
    let (ok, body) = curl(&[
        "-f",
        "-X",
        "POST",
        "-H",
        "Authorization: Bearer test-token",
        &format!("{base}/refresh"),
    ]);
    assert!(ok, "{body}");
    let refreshed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(refreshed["status"], "swapped", "{refreshed}");
    assert_eq!(refreshed["version"], 2, "{refreshed}");
    let model: serde_json::Value =
        serde_json::from_str(&curl(&[&format!("{base}/model")]).1).unwrap();
    assert_eq!(model["version"], 2);
    assert!(
        !p.path(".rps/registry").exists(),
        "the versions live in MLflow, not locally"
    );
}

/// An MLflow server without a model registry (older DagHub, a tracking-only deployment): a
/// loopback proxy in front of the real server answers every registry endpoint with MLflow's own
/// `404 ENDPOINT_NOT_FOUND` and forwards the rest.
struct NoRegistryProxy {
    uri: String,
    registry_calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl NoRegistryProxy {
    fn start(upstream: &str) -> Self {
        use std::io::{BufRead, BufReader, Read, Write};
        use std::sync::atomic::Ordering;
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let uri = format!("http://{}", listener.local_addr().unwrap());
        let registry_calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let calls = registry_calls.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut client) = conn else { continue };
                let upstream = upstream.clone();
                let calls = calls.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(client.try_clone().unwrap());
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut headers = Vec::new();
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        reader.read_line(&mut line).unwrap();
                        if line == "\r\n" || line.is_empty() {
                            break;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        if !lower.starts_with("connection:") {
                            headers.push(line);
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let path = request_line.split_whitespace().nth(1).unwrap_or("");
                    if path.contains("/registered-models") || path.contains("/model-versions") {
                        calls.fetch_add(1, Ordering::Relaxed);
                        let body = r#"{"error_code":"ENDPOINT_NOT_FOUND","message":"No API endpoint found"}"#;
                        let _ = write!(
                            client,
                            "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        return;
                    }
                    let mut up = std::net::TcpStream::connect(&upstream).unwrap();
                    let mut head = request_line;
                    for h in headers {
                        head.push_str(&h);
                    }
                    head.push_str("connection: close\r\n\r\n");
                    up.write_all(head.as_bytes()).unwrap();
                    up.write_all(&body).unwrap();
                    let mut response = Vec::new();
                    up.read_to_end(&mut response).unwrap();
                    let _ = client.write_all(&response);
                });
            }
        });
        Self {
            uri,
            registry_calls,
        }
    }
}

/// Against a server without a registry, train and evaluate still record their runs in MLflow
/// and keep versions and aliases in the local fallback registry (`<home>/registry`), with a
/// warning saying so; a second model is compared with the fallback's champion.
#[test]
#[ignore = "needs a real MLflow server; run by make test"]
fn a_server_without_a_registry_falls_back_to_the_local_registry() {
    let upstream = server_uri();
    let proxy = NoRegistryProxy::start(&upstream);
    let experiment = unique("rps-no-registry");
    let model_name = unique("rps-fallback-model");
    let p = Project::new(&params(&model_name, ""))
        .with_env("MLFLOW_TRACKING_URI", &proxy.uri)
        .with_env("MLFLOW_EXPERIMENT_NAME", &experiment);
    for stage in ["rps-extract", "rps-quality", "rps-transform"] {
        p.ok(stage, &[]);
    }
    let train = p.run("rps-train", &[]);
    assert_eq!(train.code, 0, "{}", train.stderr);
    assert!(
        train.stderr.contains("has no model registry"),
        "the fallback is announced: {}",
        train.stderr
    );
    p.ok("rps-evaluate", &[]);
    assert!(
        proxy
            .registry_calls
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "the stages did ask the server's registry first"
    );

    // Versions and the champion alias live in the local fallback registry ...
    let local = rps_tracking::LocalRegistry::new(
        rps_store::open(p.path(".rps/registry").to_str().unwrap()).unwrap(),
    );
    use rps_tracking::Registry as _;
    assert_eq!(local.versions(&model_name).unwrap(), vec![1]);
    assert_eq!(local.alias(&model_name, "champion").unwrap(), Some(1));
    // ... while the runs, with the model artifacts, are on the server.
    let client = MlflowClient::new(MlflowConfig::new(&upstream).unwrap()).unwrap();
    let exp = client
        .get_experiment_by_name(&experiment)
        .unwrap()
        .expect("the experiment was created through the proxy");
    let runs = client
        .search_runs(&[exp.experiment_id.as_str()], "", &[], 100)
        .unwrap();
    assert_eq!(runs.len(), 5, "one run per stage");
    let train_run = runs
        .iter()
        .find(|r| r.tags.get("rps.stage").map(String::as_str) == Some("train"))
        .unwrap();
    assert_eq!(train_run.info.status, Some(RunStatus::Finished));
    assert!(
        client
            .list_artifacts(&train_run.info.run_id, "model")
            .unwrap()
            .iter()
            .any(|f| f.path == "model/model.json")
    );
    assert!(
        client.get_model_version(&model_name, "1").is_err(),
        "nothing was registered on the server"
    );

    // A second model is registered as version 2 and judged against the fallback's champion.
    p.ok("rps-train", &[]);
    p.ok("rps-evaluate", &[]);
    assert_eq!(local.versions(&model_name).unwrap(), vec![1, 2]);
    assert!(local.alias(&model_name, "champion").unwrap().is_some());
}
