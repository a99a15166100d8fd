//! Against real `mlflow server`s (MLflow 3.17.2) started by tests/servers.sh.
//! Ignored by default: `make test` runs them with `--include-ignored`.

use std::collections::BTreeSet;
use std::process::Command;

use rps_mlflow::{Auth, LogModelOutcome, Metric, MlflowError, RunStatus, XgboostModel};

use crate::common::{client_for, features, plain_client, server_env, tiny_model_json, unique};

#[test]
#[ignore = "needs a real MLflow server; run by make test"]
fn experiment_get_or_create_is_stable() {
    let client = plain_client();
    let name = unique("rps-exp");
    let a = client
        .get_or_create_experiment(&name)
        .unwrap_or_else(|e| panic!("{e}"));
    let b = client
        .get_or_create_experiment(&name)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a, b);
    let e = client
        .get_experiment_by_name(&name)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("experiment {name} missing"));
    assert_eq!(e.experiment_id, a);
    assert!(
        client
            .get_experiment_by_name(&unique("nope"))
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
}

#[test]
#[ignore = "needs a real MLflow server; run by make test"]
fn run_metrics_params_tags_and_status() {
    let client = plain_client();
    let exp = client
        .get_or_create_experiment(&unique("rps-runs"))
        .unwrap_or_else(|e| panic!("{e}"));
    let run = client
        .create_run(&exp, "train-btc", &[("rps.stage".into(), "train".into())])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.experiment_id, exp);
    assert!(
        run.artifact_uri.starts_with("mlflow-artifacts:"),
        "{}",
        run.artifact_uri
    );

    // 2500 metrics over two keys, 150 params, 120 tags → several log-batch requests.
    let t0 = rps_mlflow::now_millis();
    let mut metrics = Vec::new();
    for step in 0..1200_i64 {
        metrics.push(Metric {
            key: "train/loss".into(),
            value: 1.0 / (step as f64 + 1.0),
            timestamp: t0 + step,
            step,
        });
    }
    for step in 0..1300_i64 {
        metrics.push(Metric {
            key: "val/qlike".into(),
            value: step as f64 * 0.5,
            timestamp: t0 + step,
            step,
        });
    }
    let params: Vec<(String, String)> = (0..150)
        .map(|i| (format!("p{i:03}"), format!("{}", i * 7)))
        .collect();
    let tags: Vec<(String, String)> = (0..120)
        .map(|i| (format!("t.{i:03}"), format!("tag value {i}")))
        .collect();
    client
        .log_batch(&run.run_id, &metrics, &params, &tags)
        .unwrap_or_else(|e| panic!("log_batch: {e}"));

    let hist = client
        .get_metric_history(&run.run_id, "train/loss")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hist.len(), 1200);
    assert_eq!(
        hist.iter().map(|m| m.step).collect::<Vec<_>>(),
        (0..1200).collect::<Vec<_>>()
    );
    assert!((hist[9].value - 0.1).abs() < 1e-12);
    let hist = client
        .get_metric_history(&run.run_id, "val/qlike")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hist.len(), 1300);
    assert_eq!(hist.last().map(|m| (m.step, m.value)), Some((1299, 649.5)));

    let got = client
        .get_run(&run.run_id)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.params.len(), 150);
    assert_eq!(got.params.get("p149").map(String::as_str), Some("1043"));
    for (k, v) in &tags {
        assert_eq!(got.tags.get(k), Some(v), "tag {k}");
    }
    assert_eq!(got.tags.get("rps.stage").map(String::as_str), Some("train"));
    assert_eq!(
        got.tags.get("mlflow.runName").map(String::as_str),
        Some("train-btc")
    );
    assert_eq!(got.metrics.get("val/qlike").map(|m| m.step), Some(1299));
    assert_eq!(got.info.status, Some(RunStatus::Running));

    // Same param value again: fine. A changed one: a clear conflict naming the key.
    client
        .log_batch(&run.run_id, &[], &params[..3], &[])
        .unwrap_or_else(|e| panic!("re-log: {e}"));
    let e = client
        .log_batch(&run.run_id, &[], &[("p001".into(), "changed".into())], &[])
        .err();
    assert!(
        matches!(&e, Some(MlflowError::ParamConflict { message, .. }) if message.contains("p001")),
        "{e:?}"
    );

    client
        .set_tag(&run.run_id, "rps.note", "hello")
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .update_run(&run.run_id, RunStatus::Finished)
        .unwrap_or_else(|e| panic!("{e}"));
    let got = client
        .get_run(&run.run_id)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.info.status, Some(RunStatus::Finished));
    assert!(got.info.end_time.is_some_and(|t| t >= t0));
    assert_eq!(got.tags.get("rps.note").map(String::as_str), Some("hello"));

    let failed = client
        .create_run(&exp, "", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .update_run(&failed.run_id, RunStatus::Failed)
        .unwrap_or_else(|e| panic!("{e}"));
    let got = client
        .get_run(&failed.run_id)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.info.status, Some(RunStatus::Failed));

    let found = client
        .search_runs(
            &[exp.as_str()],
            "tags.`rps.stage` = 'train'",
            &["attributes.start_time DESC"],
            10,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        found
            .iter()
            .map(|r| r.info.run_id.as_str())
            .collect::<Vec<_>>(),
        vec![run.run_id.as_str()]
    );
    let all = client
        .search_runs(&[exp.as_str()], "", &[], 10)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all.len(), 2);
}

#[test]
#[ignore = "needs a real MLflow server; run by make test"]
fn artifacts_round_trip() {
    let client = plain_client();
    let exp = client
        .get_or_create_experiment(&unique("rps-art"))
        .unwrap_or_else(|e| panic!("{e}"));
    let run = client
        .create_run(&exp, "art", &[])
        .unwrap_or_else(|e| panic!("{e}"));

    let blob: Vec<u8> = (0..70_000_u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    client
        .log_artifact_bytes(&run, "plots/deep/nested/rv vs pred.bin", &blob)
        .unwrap_or_else(|e| panic!("{e}"));

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(dir.path().join("sub/inner")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("report.md"), "# report\n").unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("sub/inner/data.csv"), "a,b\n1,2\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let written = client
        .log_artifact_dir(&run, dir.path(), "bundle")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        written,
        vec!["bundle/report.md", "bundle/sub/inner/data.csv"]
    );
    let single = client
        .log_artifact_file(&run, &dir.path().join("report.md"), "")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(single, "report.md");

    let names = |path: &str| -> BTreeSet<(String, bool)> {
        client
            .list_artifacts(&run.run_id, path)
            .unwrap_or_else(|e| panic!("list {path}: {e}"))
            .into_iter()
            .map(|f| (f.path, f.is_dir))
            .collect()
    };
    assert_eq!(
        names(""),
        BTreeSet::from([
            ("bundle".into(), true),
            ("plots".into(), true),
            ("report.md".into(), false)
        ])
    );
    assert_eq!(
        names("plots/deep/nested"),
        BTreeSet::from([("plots/deep/nested/rv vs pred.bin".into(), false)])
    );
    let listed = client
        .list_artifacts(&run.run_id, "plots/deep/nested")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(listed[0].file_size, Some(blob.len() as i64));

    let back = client
        .download_artifact(&run, "plots/deep/nested/rv vs pred.bin")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(back == blob, "downloaded bytes differ");
    let back = client
        .download_artifact(&run, "bundle/sub/inner/data.csv")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, b"a,b\n1,2\n");
}

/// Logs the fixture model to a run, registers it, aliases it. Returns (model name, run id).
fn log_and_register(client: &rps_mlflow::MlflowClient) -> (String, rps_mlflow::RunInfo, String) {
    let exp = client
        .get_or_create_experiment(&unique("rps-model"))
        .unwrap_or_else(|e| panic!("{e}"));
    let run = client
        .create_run(&exp, "model", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let model = XgboostModel::new(tiny_model_json(), features(), "rv_pred")
        .unwrap_or_else(|e| panic!("{e}"));
    let outcome = client
        .log_xgboost_model(&run, "model", &model)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome, LogModelOutcome::Recorded);

    let name = unique("rps-rv");
    client
        .create_registered_model(&name)
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .create_registered_model(&name)
        .unwrap_or_else(|e| panic!("idempotent: {e}"));
    let source = format!("{}/model", run.artifact_uri);
    let version = client
        .create_model_version(&name, &source, &run.run_id)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(version, "1");
    client
        .set_alias(&name, "champion", &version)
        .unwrap_or_else(|e| panic!("{e}"));
    (name, run, version)
}

#[test]
#[ignore = "needs a real MLflow server; run by make test"]
fn log_model_and_registry() {
    let client = plain_client();
    let (name, run, version) = log_and_register(&client);

    let files: BTreeSet<String> = client
        .list_artifacts(&run.run_id, "model")
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|f| f.path)
        .collect();
    assert_eq!(
        files,
        [
            "MLmodel",
            "conda.yaml",
            "model.json",
            "python_env.yaml",
            "requirements.txt"
        ]
        .iter()
        .map(|f| format!("model/{f}"))
        .collect()
    );
    let mlmodel = client
        .download_artifact(&run, "model/MLmodel")
        .unwrap_or_else(|e| panic!("{e}"));
    let mlmodel = String::from_utf8(mlmodel).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        mlmodel.contains(&format!("run_id: {}", run.run_id))
            || mlmodel.contains(&format!("run_id: '{}'", run.run_id))
    );
    assert!(mlmodel.contains("artifact_path: model\n"));
    assert_eq!(
        client
            .download_artifact(&run, "model/model.json")
            .unwrap_or_default(),
        tiny_model_json()
    );

    let tags = client
        .get_run_tags(&run.run_id)
        .unwrap_or_else(|e| panic!("{e}"));
    let history = tags
        .get("mlflow.log-model.history")
        .unwrap_or_else(|| panic!("no log-model history tag: {tags:?}"));
    let history: serde_json::Value =
        serde_json::from_str(history).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(history[0]["artifact_path"], "model");
    assert_eq!(history[0]["flavors"]["xgboost"]["model_format"], "json");

    let mv = client
        .get_version_by_alias(&name, "champion")
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("alias not resolved"));
    assert_eq!(mv.version, version);
    assert_eq!(mv.run_id.as_deref(), Some(run.run_id.as_str()));
    assert!(mv.aliases.contains(&"champion".to_owned()));
    assert_eq!(
        client
            .get_version_by_alias(&name, "challenger")
            .unwrap_or_else(|e| panic!("{e}")),
        None
    );

    // A second version takes the alias over.
    let v2 = client
        .create_model_version(&name, &format!("{}/model", run.artifact_uri), &run.run_id)
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .set_alias(&name, "champion", &v2)
        .unwrap_or_else(|e| panic!("{e}"));
    let mv = client
        .get_version_by_alias(&name, "champion")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(mv.map(|m| m.version), Some(v2));

    client
        .delete_alias(&name, "champion")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        client
            .get_version_by_alias(&name, "champion")
            .unwrap_or_else(|e| panic!("{e}")),
        None
    );
    client
        .delete_alias(&name, "champion")
        .unwrap_or_else(|e| panic!("deleting twice: {e}"));
}

/// The model directory we write is loadable by real MLflow: `models:/<name>@champion` through
/// the server, predictions equal to xgboost's own.
#[test]
#[ignore = "needs a real MLflow server; run by make test"]
fn python_mlflow_loads_the_registered_model() {
    let python = server_env("RPS_TEST_MLFLOW_PYTHON");
    let uri = server_env("RPS_TEST_MLFLOW_URI");
    let client = plain_client();
    let (name, _run, _version) = log_and_register(&client);
    let script = r#"
import sys, json, numpy as np, pandas as pd, xgboost as xgb, mlflow.pyfunc
from mlflow.models import Model
name, fixture = sys.argv[1], sys.argv[2]
m = mlflow.pyfunc.load_model(f"models:/{name}@champion")
sig = m.metadata.signature
assert [c.name for c in sig.inputs.inputs] == ["rv_lag_1", "ret_abs_1", "hl_range"], sig
X = pd.DataFrame({"rv_lag_1": [0.1, 0.9], "ret_abs_1": [0.2, 0.5], "hl_range": [0.3, 0.1]})
got = np.asarray(m.predict(X)).ravel().tolist()
b = xgb.Booster(); b.load_model(fixture)
want = b.predict(xgb.DMatrix(X)).tolist()
assert got == want, (got, want)
print(json.dumps({"pred": got, "flavor": m.metadata.flavors["python_function"]["loader_module"]}))
"#;
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(&name)
        .arg(crate::common::fixture_path("xgb_tiny.json"))
        .env("MLFLOW_TRACKING_URI", &uri)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed:\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(v["flavor"], "mlflow.xgboost");
    let pred: Vec<f64> = serde_json::from_value(v["pred"].clone()).unwrap_or_default();
    assert_eq!(pred.len(), 2);
    assert!((pred[0] - 0.212_596_803_903_579_7).abs() < 1e-6, "{pred:?}");
}

#[test]
#[ignore = "needs a real MLflow server; run by make test"]
fn basic_auth_server() {
    let uri = server_env("RPS_TEST_MLFLOW_AUTH_URI");
    let user = server_env("RPS_TEST_MLFLOW_ADMIN_USER");
    let password = server_env("RPS_TEST_MLFLOW_ADMIN_PASSWORD");

    let good = client_for(
        &uri,
        Auth::Basic {
            username: user.clone(),
            password: password.clone(),
        },
    );
    let exp = good
        .get_or_create_experiment(&unique("rps-auth"))
        .unwrap_or_else(|e| panic!("{e}"));
    let run = good
        .create_run(&exp, "auth", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    good.log_batch(
        &run.run_id,
        &[Metric::new("m", 1.0, 0)],
        &[("p".into(), "1".into())],
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    good.log_artifact_bytes(&run, "a/b.txt", b"secret data")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        good.download_artifact(&run, "a/b.txt").unwrap_or_default(),
        b"secret data"
    );

    let wrong = client_for(
        &uri,
        Auth::Basic {
            username: user,
            password: format!("{password}-wrong"),
        },
    );
    let e = wrong.get_or_create_experiment("anything").err();
    let Some(e @ MlflowError::Unauthorized { .. }) = e else {
        panic!("expected Unauthorized, got {e:?}");
    };
    let text = e.to_string();
    assert!(
        text.contains("MLFLOW_TRACKING_USERNAME") && text.contains("MLFLOW_TRACKING_PASSWORD"),
        "{text}"
    );
    assert!(text.contains("MLFLOW_TRACKING_TOKEN"), "{text}");
    assert!(!text.contains(&password), "password leaked: {text}");

    let anonymous = client_for(&uri, Auth::None);
    let e = anonymous.get_run(&run.run_id).err();
    assert!(
        matches!(e, Some(MlflowError::Unauthorized { status: 401, .. })),
        "{e:?}"
    );

    // The env-var path works the same way.
    let config = rps_mlflow::MlflowConfig::from_lookup(|name| match name {
        "MLFLOW_TRACKING_URI" => Some(uri.clone()),
        "MLFLOW_TRACKING_USERNAME" => Some(server_env("RPS_TEST_MLFLOW_ADMIN_USER")),
        "MLFLOW_TRACKING_PASSWORD" => Some(server_env("RPS_TEST_MLFLOW_ADMIN_PASSWORD")),
        _ => None,
    })
    .unwrap_or_else(|e| panic!("{e}"))
    .unwrap_or_else(|| panic!("no config"));
    let from_env = rps_mlflow::MlflowClient::new(config).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        from_env.get_run(&run.run_id).map(|r| r.info.run_id).ok(),
        Some(run.run_id.clone())
    );
}
