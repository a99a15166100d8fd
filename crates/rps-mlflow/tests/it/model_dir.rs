//! The MLflow model directory: snapshots of every file, checked to parse as the YAML MLflow
//! reads. The layout mirrors `mlflow.xgboost.save_model` of MLflow 3.17.2 / xgboost 3.2.0.

use rps_mlflow::{XgboostModel, write_xgboost_model_dir};

use crate::common::{features, tiny_model_json};

fn fixed_model() -> XgboostModel {
    let mut m = XgboostModel::new(tiny_model_json(), features(), "rv_pred")
        .unwrap_or_else(|e| panic!("model: {e}"))
        .with_run("0f1e2d3c4b5a69788796a5b4c3d2e1f0", "model");
    m.model_uuid = "5ae2242674df489b82ba9dba3f59bde5".into();
    m.utc_time_created = "2026-11-23 03:59:52.063148".into();
    m
}

#[test]
fn mlmodel_snapshot() {
    insta::assert_snapshot!("MLmodel", fixed_model().mlmodel_yaml());
}

#[test]
fn env_files_snapshot() {
    let m = fixed_model();
    insta::assert_snapshot!("python_env.yaml", m.python_env_yaml());
    insta::assert_snapshot!("requirements.txt", m.requirements_txt());
    insta::assert_snapshot!("conda.yaml", m.conda_yaml());
}

#[test]
fn log_model_json_snapshot() {
    let v: serde_json::Value =
        serde_json::from_str(&fixed_model().log_model_json()).unwrap_or_else(|e| panic!("{e}"));
    insta::assert_json_snapshot!("log_model_json", v);
}

#[test]
fn mlmodel_parses_to_the_expected_structure() {
    let m = fixed_model();
    let y: serde_yaml::Value =
        serde_yaml::from_str(&m.mlmodel_yaml()).unwrap_or_else(|e| panic!("yaml: {e}"));
    let s = |path: &[&str]| {
        let mut v = &y;
        for p in path {
            v = &v[*p];
        }
        v.as_str().map(str::to_owned)
    };
    assert_eq!(
        s(&["flavors", "python_function", "loader_module"]).as_deref(),
        Some("mlflow.xgboost")
    );
    assert_eq!(
        s(&["flavors", "python_function", "data"]).as_deref(),
        Some("model.json")
    );
    assert_eq!(
        s(&["flavors", "python_function", "env", "virtualenv"]).as_deref(),
        Some("python_env.yaml")
    );
    assert_eq!(
        s(&["flavors", "xgboost", "model_class"]).as_deref(),
        Some("xgboost.core.Booster")
    );
    assert_eq!(
        s(&["flavors", "xgboost", "xgb_version"]).as_deref(),
        Some("3.2.0")
    );
    assert!(y["flavors"]["xgboost"]["code"].is_null());
    assert_eq!(
        s(&["utc_time_created"]).as_deref(),
        Some("2026-11-23 03:59:52.063148")
    );
    assert_eq!(
        s(&["run_id"]).as_deref(),
        Some("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
    );
    assert_eq!(
        y["model_size_bytes"].as_u64(),
        Some(tiny_model_json().len() as u64)
    );
    let inputs: serde_json::Value =
        serde_json::from_str(&s(&["signature", "inputs"]).unwrap_or_default())
            .unwrap_or_else(|e| panic!("inputs json: {e}"));
    assert_eq!(
        inputs,
        serde_json::json!([
            {"type": "double", "name": "rv_lag_1", "required": true},
            {"type": "double", "name": "ret_abs_1", "required": true},
            {"type": "double", "name": "hl_range", "required": true},
        ])
    );
    let outputs: serde_json::Value =
        serde_json::from_str(&s(&["signature", "outputs"]).unwrap_or_default())
            .unwrap_or_else(|e| panic!("outputs json: {e}"));
    assert_eq!(
        outputs,
        serde_json::json!([{"type": "float", "name": "rv_pred", "required": true}])
    );
}

#[test]
fn written_directory_snapshot_with_redactions() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let model_dir = dir.path().join("model");
    let model = write_xgboost_model_dir(
        &model_dir,
        &tiny_model_json(),
        &features(),
        "rv_pred",
        Some("0f1e2d3c4b5a69788796a5b4c3d2e1f0"),
        "model",
    )
    .unwrap_or_else(|e| panic!("write: {e}"));
    let mut names: Vec<String> = std::fs::read_dir(&model_dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "MLmodel",
            "conda.yaml",
            "model.json",
            "python_env.yaml",
            "requirements.txt"
        ]
    );
    assert_eq!(
        std::fs::read(model_dir.join("model.json")).unwrap_or_default(),
        tiny_model_json(),
        "model bytes are copied verbatim"
    );
    let mlmodel = std::fs::read_to_string(model_dir.join("MLmodel")).unwrap_or_default();
    assert!(mlmodel.contains(&model.model_uuid));
    insta::with_settings!({filters => vec![
        (r"model_uuid: [0-9a-f]{32}", "model_uuid: [uuid]"),
        (r"utc_time_created: '\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}'", "utc_time_created: '[time]'"),
    ]}, {
        insta::assert_snapshot!("MLmodel_written", mlmodel);
    });
}
