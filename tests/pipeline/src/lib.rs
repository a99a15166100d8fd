//! Shared context for the end-to-end tests: locating the stage binaries, a temporary project
//! folder with its own `params.yaml` and home, and running a stage to capture its exit code and
//! output.
#![allow(clippy::missing_panics_doc, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The folder holding the stage binaries: `RPS_BIN_DIR`, else the folder of the test
/// executable's parent (`target/<triple>/<profile>/`), where `cargo build --bins` puts them.
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("RPS_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// The repository root: two levels above this crate, as `cargo test` names it when it runs the
/// test (`CARGO_MANIFEST_DIR` at run time), else as it was at compile time. The run-time value
/// comes first because a shared `CARGO_TARGET_DIR` may reuse a library compiled in another
/// checkout of the same commit, whose compile-time path may be gone.
pub fn repo_root() -> PathBuf {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let root = dir.join("../..");
    root.canonicalize()
        .unwrap_or_else(|e| panic!("the repository root {}: {e}", root.display()))
}

/// `../shared/data/<name>` beside the repository.
pub fn shared_data(name: &str) -> PathBuf {
    let p = repo_root().join("../shared/data").join(name);
    assert!(
        p.exists(),
        "{} is missing: the tests need ../shared beside the checkout",
        p.display()
    );
    p
}

/// What a stage run produced.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A temporary project: a folder with params.yaml, the home `.rps/` and `reports/`.
pub struct Project {
    pub dir: tempfile::TempDir,
    /// Extra environment variables for every stage run (e.g. `MLFLOW_TRACKING_URI`).
    pub env: Vec<(String, String)>,
}

impl Project {
    /// A project whose params.yaml is the repository's with `overrides` appended as YAML text
    /// replacing whole top-level sections.
    pub fn new(params_yaml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("params.yaml"), params_yaml).unwrap();
        Self {
            dir,
            env: Vec::new(),
        }
    }

    /// The same project with `key=value` in the environment of every stage run.
    #[must_use]
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The command that runs `stage` (e.g. `rps-extract`) in the project folder, with the
    /// project's environment and no MLflow settings of the developer's.
    pub fn command(&self, stage: &str, args: &[&str]) -> Command {
        let exe = bin_dir().join(stage);
        assert!(
            exe.exists(),
            "{} not built: run `cargo build --bins` (make test does)",
            exe.display()
        );
        let mut c = Command::new(&exe);
        c.args(args)
            .current_dir(self.dir.path())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            // Hermetic: a developer's own MLflow settings never leak into a test's stages.
            .env_remove("MLFLOW_TRACKING_URI")
            .env_remove("MLFLOW_TRACKING_USERNAME")
            .env_remove("MLFLOW_TRACKING_PASSWORD")
            .env_remove("MLFLOW_TRACKING_TOKEN")
            .env_remove("MLFLOW_EXPERIMENT_NAME")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Run `stage` (e.g. `rps-extract`) in the project folder.
    pub fn run(&self, stage: &str, args: &[&str]) -> Output {
        let out = self.command(stage, args).output().unwrap();
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Run and require exit 0.
    pub fn ok(&self, stage: &str, args: &[&str]) -> Output {
        let o = self.run(stage, args);
        assert_eq!(
            o.code, 0,
            "{stage} {args:?} failed:\n{}\n{}",
            o.stdout, o.stderr
        );
        o
    }

    pub fn json(&self, rel: &str) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.path(rel)).unwrap()).unwrap()
    }
}

/// params.yaml reading a CSV in the shared BTC layout, with everything else at defaults.
pub fn btc_params(csv: &Path) -> String {
    format!(
        "data:\n  source: file\n  symbol: BTC-USD\n  file:\n    path: {}\n    columns: {{timestamp: timestamp_utc, open: open, high: high, low: low, close: close, volume: volume_btc}}\n",
        csv.display()
    )
}
