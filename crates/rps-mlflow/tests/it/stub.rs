//! Client behaviour against a stub server: no MLflow needed.

use rps_mlflow::{Auth, LogModelOutcome, Metric, MlflowError};

use crate::common::{Stub, client_for};

const RUN: &str = r#"{"run":{"info":{"run_id":"r1","experiment_id":"1","artifact_uri":"mlflow-artifacts:/1/r1/artifacts","status":"RUNNING","start_time":"1700000000000"},"data":{}}}"#;

#[test]
fn retries_5xx_then_succeeds() {
    let stub = Stub::start(|s| {
        if s.url.contains("runs/create") {
            let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n < 2 {
                return (503, "<html>busy</html>".into());
            }
        }
        (200, RUN.into())
    });
    static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let client = client_for(&stub.uri, Auth::None);
    let run = client
        .create_run("1", "r", &[("k".into(), "v".into())])
        .unwrap_or_else(|e| panic!("create_run: {e}"));
    assert_eq!(run.run_id, "r1");
    assert_eq!(run.start_time, Some(1_700_000_000_000));
    let reqs = stub.requests();
    assert_eq!(reqs.len(), 3, "two 503s then success: {reqs:?}");
    assert!(reqs.iter().all(|r| r.method == "POST"));
    let body: serde_json::Value =
        serde_json::from_str(&reqs[2].body).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(body["experiment_id"], "1");
    assert_eq!(body["run_name"], "r");
    assert_eq!(body["tags"][0]["key"], "k");
}

#[test]
fn retries_are_bounded() {
    let stub = Stub::start(|_| {
        (
            500,
            r#"{"error_code":"INTERNAL_ERROR","message":"boom"}"#.into(),
        )
    });
    let client = client_for(&stub.uri, Auth::None);
    let e = client.get_run("x").err();
    assert!(
        matches!(&e, Some(MlflowError::Api { status: 500, error_code, message, .. }) if error_code == "INTERNAL_ERROR" && message == "boom"),
        "{e:?}"
    );
    assert_eq!(stub.requests().len(), 3, "max_attempts = 3");
}

#[test]
fn connection_refused_is_a_transport_error() {
    // Bind then drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    let client = client_for(&format!("http://127.0.0.1:{port}"), Auth::None);
    let e = client.get_run("x").err();
    assert!(
        matches!(e, Some(MlflowError::Transport { attempts: 3, .. })),
        "{e:?}"
    );
}

#[test]
fn unauthorized_names_the_variables_and_sends_credentials() {
    let stub = Stub::start(|s| {
        if s.authorization.as_deref() == Some("Bearer good") {
            (200, RUN.into())
        } else {
            (401, "You are not authenticated.".into())
        }
    });
    let ok = client_for(&stub.uri, Auth::Bearer("good".into()));
    assert!(ok.get_run("r1").is_ok());
    let bad = client_for(
        &stub.uri,
        Auth::Basic {
            username: "me".into(),
            password: "wrong".into(),
        },
    );
    let e = bad.get_run("r1").err();
    let Some(e @ MlflowError::Unauthorized { status: 401, .. }) = e else {
        panic!("expected Unauthorized, got {e:?}");
    };
    let text = e.to_string();
    for var in [
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_TOKEN",
    ] {
        assert!(text.contains(var), "{text}");
    }
    assert!(!text.contains("wrong"), "secret leaked: {text}");
    // The basic header was sent (base64 of me:wrong).
    let reqs = stub.requests();
    assert_eq!(
        reqs.last().and_then(|r| r.authorization.clone()).as_deref(),
        Some("Basic bWU6d3Jvbmc=")
    );
    // Auth errors are not retried.
    assert_eq!(reqs.len(), 2);
}

fn registry_stub(body: &'static str) -> Stub {
    Stub::start(move |s| {
        if s.url.contains("/registered-models") || s.url.contains("/model-versions") {
            (404, body.into())
        } else {
            (200, RUN.into())
        }
    })
}

fn assert_registry_unsupported(stub: &Stub) {
    let client = client_for(&stub.uri, Auth::None);
    // Tracking still works.
    assert!(client.get_run("r1").is_ok());
    let results = [
        client.create_registered_model("m").err(),
        client
            .create_model_version("m", "runs:/r1/model", "r1")
            .err(),
        client.set_alias("m", "champion", "1").err(),
        client.get_version_by_alias("m", "champion").err(),
        client.delete_alias("m", "champion").err(),
    ];
    for e in results {
        assert!(
            matches!(e, Some(MlflowError::RegistryUnsupported { .. })),
            "{e:?}"
        );
    }
}

#[test]
fn registry_endpoint_not_found_falls_back() {
    let stub = registry_stub(
        r#"{"error_code":"ENDPOINT_NOT_FOUND","message":"No API found for 'POST /mlflow/registered-models/create'"}"#,
    );
    assert_registry_unsupported(&stub);
}

#[test]
fn registry_dagshub_message_falls_back() {
    let stub = registry_stub(
        r#"{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"Model Registry features are not supported by the store."}"#,
    );
    assert_registry_unsupported(&stub);
}

#[test]
fn log_model_tolerates_500_from_old_servers() {
    let stub = Stub::start(|s| {
        if s.url.contains("runs/log-model") {
            (
                500,
                r#"{"error_code":"INTERNAL_ERROR","message":"Response: {'Error': 'unsupported'}"}"#
                    .into(),
            )
        } else {
            (200, "{}".into())
        }
    });
    let client = client_for(&stub.uri, Auth::None);
    let out = client
        .log_model("r1", r#"{"flavors":{}}"#)
        .unwrap_or_else(|e| panic!("log_model: {e}"));
    assert_eq!(out, LogModelOutcome::SkippedByServer);
    let n = stub
        .requests()
        .iter()
        .filter(|r| r.url.contains("log-model"))
        .count();
    assert_eq!(n, 2, "log-model is retried once only");
}

#[test]
fn log_batch_surfaces_param_change_clearly() {
    let stub = Stub::start(|s| {
        if s.url.contains("log-batch") && s.body.contains("\"params\":[{") {
            (
                400,
                r#"{"error_code":"INVALID_PARAMETER_VALUE","message":"Changing param values is not allowed. Param with key='lr' was already logged with value='0.1' for run ID='r1'. Attempted logging new value '0.2'."}"#.into(),
            )
        } else {
            (200, "{}".into())
        }
    });
    let client = client_for(&stub.uri, Auth::None);
    let e = client
        .log_batch("r1", &[], &[("lr".into(), "0.2".into())], &[])
        .err();
    assert!(
        matches!(&e, Some(MlflowError::ParamConflict { run_id, message }) if run_id == "r1" && message.contains("lr")),
        "{e:?}"
    );
    // Metrics-only batches go through.
    assert!(
        client
            .log_batch("r1", &[Metric::new("m", 1.0, 0)], &[], &[])
            .is_ok()
    );
}

#[test]
fn non_proxied_artifact_uris_are_unsupported() {
    let stub = Stub::start(|_| (200, "{}".into()));
    let client = client_for(&stub.uri, Auth::None);
    let run = rps_mlflow::RunInfo {
        run_id: "r".into(),
        experiment_id: "1".into(),
        artifact_uri: "s3://bucket/1/r/artifacts".into(),
        ..Default::default()
    };
    let e = client.log_artifact_bytes(&run, "a.txt", b"x").err();
    assert!(
        matches!(&e, Some(MlflowError::UnsupportedArtifactUri { uri }) if uri.starts_with("s3://")),
        "{e:?}"
    );
    assert!(stub.requests().is_empty());
}

/// The hook S3 will use: a registered backend receives non-proxied URIs.
#[test]
fn artifact_backend_hook_handles_other_schemes() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    #[derive(Default, Clone)]
    struct Mem(Arc<Mutex<HashMap<String, Vec<u8>>>>);
    impl rps_mlflow::ArtifactBackend for Mem {
        fn handles(&self, artifact_uri: &str) -> bool {
            artifact_uri.starts_with("mem://")
        }
        fn upload(&self, uri: &str, path: &str, bytes: &[u8]) -> rps_mlflow::Result<()> {
            if let Ok(mut m) = self.0.lock() {
                m.insert(format!("{uri}/{path}"), bytes.to_vec());
            }
            Ok(())
        }
        fn download(&self, uri: &str, path: &str) -> rps_mlflow::Result<Vec<u8>> {
            self.0
                .lock()
                .ok()
                .and_then(|m| m.get(&format!("{uri}/{path}")).cloned())
                .ok_or_else(|| MlflowError::InvalidArgument(format!("no {path}")))
        }
    }

    let stub = Stub::start(|_| (200, "{}".into()));
    let mem = Mem::default();
    let client = client_for(&stub.uri, Auth::None).with_artifact_backend(Box::new(mem.clone()));
    let run = rps_mlflow::RunInfo {
        run_id: "r".into(),
        experiment_id: "1".into(),
        artifact_uri: "mem://bucket/1/r/artifacts".into(),
        ..Default::default()
    };
    client
        .log_artifact_bytes(&run, "model/model.json", b"{}")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        client.download_artifact(&run, "model/model.json").ok(),
        Some(b"{}".to_vec())
    );
    assert!(
        stub.requests().is_empty(),
        "nothing went to the tracking server"
    );
    let other = rps_mlflow::RunInfo {
        artifact_uri: "s3://b/x".into(),
        ..run
    };
    assert!(matches!(
        client.log_artifact_bytes(&other, "a", b"x"),
        Err(MlflowError::UnsupportedArtifactUri { .. })
    ));
}
