//! MLflow down for 30 s in the middle of `rps train` (issue #21), against a real `mlflow server`
//! of this test's own (sqlite store, so a restart keeps every run): the stage rides the outage
//! out with the Python client's retry policy (7 retries, 2 s doubling), finishes, and its run ends
//! FINISHED with the model registered — never left RUNNING.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use rps_mlflow::{MlflowClient, MlflowConfig, RetryPolicy, RunStatus};
use rps_pipeline_tests::{Project, btc_params, repo_root};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the server stays down (the figure).
const DOWN: Duration = Duration::from_secs(30);

struct OwnMlflow {
    python: String,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl OwnMlflow {
    fn start() -> Self {
        let python = std::env::var("RPS_TEST_MLFLOW_PYTHON").expect(
            "RPS_TEST_MLFLOW_PYTHON (a python with mlflow: crates/rps-mlflow/tests/servers.sh)",
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = Self {
            python,
            dir: tempfile::tempdir().unwrap(),
            port,
            child: None,
        };
        s.up();
        s
    }

    fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn up(&mut self) {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("server.log"))
            .unwrap();
        let child = Command::new(&self.python)
            .args([
                "-m",
                "mlflow",
                "server",
                "--host",
                "127.0.0.1",
                "--workers",
                "1",
            ])
            .args(["--port", &self.port.to_string()])
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", d.join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(d.join("artifacts"))
            .arg("--serve-artifacts")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // Its own process group: the workers die with it.
            .process_group(0)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ok = Command::new("curl")
                .args(["-fsS", "-o", "/dev/null", "--max-time", "2"])
                .arg(format!("{}/health", self.uri()))
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "mlflow server not ready: {}",
                std::fs::read_to_string(d.join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let group = format!("-{}", c.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnMlflow {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
#[ignore = "needs mlflow (RPS_TEST_MLFLOW_PYTHON) and the release stage binaries; run by make test"]
fn mlflow_down_for_30_s_during_train_is_ridden_out_and_the_run_finishes() {
    let mut mlflow = OwnMlflow::start();
    let csv = repo_root().join("data/sample/btc_usd_1h_coinbase_2018.csv");
    let model = "rps-outage-model";
    let p = Project::new(&format!(
        "{}train:\n  model_name: {model}\n  num_boost_round: 300\n  early_stopping_rounds: 300\n",
        btc_params(&csv)
    ))
    .with_env("MLFLOW_TRACKING_URI", &mlflow.uri())
    .with_env("MLFLOW_EXPERIMENT_NAME", "outage");
    for stage in ["rps-extract", "rps-quality", "rps-transform"] {
        p.ok(stage, &[]);
    }
    let log = p.path("train.log");
    let mut train = p
        .command("rps-train", &[])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();

    // The moment train's run exists on the server, the server goes away.
    let client = MlflowClient::new(
        MlflowConfig::new(&mlflow.uri())
            .unwrap()
            .with_retry(RetryPolicy::none()),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let run_id = loop {
        let exp = client.get_experiment_by_name("outage").ok().flatten();
        let runs = exp
            .and_then(|e| {
                client
                    .search_runs(&[e.experiment_id.as_str()], "", &[], 50)
                    .ok()
            })
            .unwrap_or_default();
        if let Some(r) = runs
            .iter()
            .find(|r| r.tags.get("rps.stage").map(String::as_str) == Some("train"))
        {
            break r.info.run_id.clone();
        }
        assert!(
            Instant::now() < deadline && train.try_wait().unwrap().is_none(),
            "train never created its run: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    mlflow.kill();
    let killed = Instant::now();
    std::thread::sleep(DOWN);
    mlflow.up();
    eprintln!("MLflow was down for {:?}", killed.elapsed());

    let status = loop {
        if let Some(s) = train.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > killed + Duration::from_secs(400) {
            let _ = train.kill();
            panic!("train did not finish");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "train failed ({status}):\n{text}");
    assert!(
        text.contains("cannot reach MLflow; retrying"),
        "train never met the outage (it finished before the kill?):\n{text}"
    );
    let run = client.get_run(&run_id).unwrap();
    assert_eq!(run.info.status, Some(RunStatus::Finished), "{text}");
    assert!(
        client
            .list_artifacts(&run_id, "model")
            .unwrap()
            .iter()
            .any(|f| f.path == "model/model.json"),
        "the model's files were uploaded after the outage"
    );
    assert!(client.get_model_version(model, "1").is_ok(), "registered");
}
