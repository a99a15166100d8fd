//! Plumbing shared by every RPS stage binary. This is the edge: the only crate (with the
//! binaries) that prints to the terminal or picks a process exit code.
//!
//! - [`CommonArgs`]: `--params`, `--home`, `--log-format`, `-v`/`-q`, flattened into each stage.
//! - [`exit`]: the exit codes every stage documents, and [`finish`] to map an error to one.
//! - [`load_params`]: `params.yaml` with unknown keys refused.
//! - [`Home`]: the embedded default folder (`.rps/`) with the object store, registry and runs.
//! - [`progress`]: a progress bar on a terminal, silence in a pod.

use clap::{Args, ValueEnum};
use rps_core::params::Params;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Exit codes shared by all stages (also listed in each `--help` and the README).
pub mod exit {
    /// Success (for evaluate: whether or not the challenger was promoted).
    pub const OK: u8 = 0;
    /// Unexpected internal error (a bug: please report it).
    pub const INTERNAL: u8 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: u8 = 2;
    /// Bad configuration: params.yaml unreadable or invalid, bad flag values.
    pub const CONFIG: u8 = 3;
    /// Bad input data: missing columns, unparseable values, empty or unreadable files, too few rows.
    pub const INPUT: u8 = 4;
    /// The quality gate failed (rps-quality).
    pub const QUALITY_GATE: u8 = 5;
    /// A remote source or server failed (market API, MLflow) after retries.
    pub const REMOTE: u8 = 6;
    /// Storage failed (object store, file system).
    pub const STORAGE: u8 = 7;
    /// Training or evaluation could not produce a model.
    pub const MODEL: u8 = 8;
    /// `--require-promotion` was given and the challenger was kept out (rps-evaluate).
    pub const NOT_PROMOTED: u8 = 9;

    /// The EXIT CODES section appended to every stage's `--help`.
    pub const HELP: &str = "EXIT CODES:
  0  success
  1  internal error (a bug)
  2  bad command line
  3  bad configuration (params.yaml, flags)
  4  bad input data (missing columns, unparseable values, empty or unreadable files)
  5  quality gate failed (rps-quality)
  6  remote source or server failed after retries (market API, MLflow)
  7  storage failed (object store, file system)
  8  model training or evaluation failed
  9  challenger not promoted and --require-promotion given (rps-evaluate)";
}

/// An error that knows its exit code.
pub trait StageError: std::error::Error {
    fn exit_code(&self) -> u8;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line (for pods and log shippers).
    Json,
}

/// Flags every stage takes.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// The parameter file every stage reads its knobs from.
    #[arg(long, global = true, default_value = "params.yaml", env = "RPS_PARAMS")]
    pub params: PathBuf,
    /// The embedded home folder: object store, model registry and run records live under it
    /// when no server is configured.
    #[arg(long, global = true, default_value = ".rps", env = "RPS_HOME")]
    pub home: String,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "RPS_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// More logging (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// Start logging to stderr. `RUST_LOG` overrides the level.
pub fn init_logging(args: &CommonArgs) {
    let level = match (args.quiet, args.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match args.log_format {
        LogFormat::Human => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Print the error chain and return the exit code for it.
#[allow(clippy::print_stderr)]
pub fn finish<E: StageError>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// The problem with a parameter file.
#[derive(Debug, thiserror::Error)]
pub enum ParamsError {
    #[error("cannot read parameter file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid parameter file {path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: serde_yaml::Error,
    },
}

/// Read `params.yaml`. Every section and key is optional (defaults apply); unknown keys fail.
pub fn load_params(path: &Path) -> Result<Params, ParamsError> {
    let text = std::fs::read_to_string(path).map_err(|source| ParamsError::Read {
        path: path.display().to_string(),
        source,
    })?;
    if text.trim().is_empty() {
        return Ok(Params::default());
    }
    serde_yaml::from_str(&text).map_err(|source| ParamsError::Parse {
        path: path.display().to_string(),
        source,
    })
}

/// The embedded default layout under one folder.
#[derive(Debug, Clone)]
pub struct Home {
    pub root: String,
}

impl Home {
    pub fn new(root: &str) -> Self {
        Self {
            root: root.trim_end_matches('/').to_owned(),
        }
    }

    /// A location under the home folder.
    pub fn join(&self, rel: &str) -> String {
        format!("{}/{rel}", self.root)
    }

    pub fn raw(&self, symbol: &str) -> String {
        self.join(&format!("data/raw/{symbol}"))
    }

    pub fn features(&self, symbol: &str) -> String {
        self.join(&format!("data/features/{symbol}"))
    }

    pub fn candidate(&self) -> String {
        self.join("models/candidate")
    }

    /// The MLflow client when `MLFLOW_TRACKING_URI` is set (with `MLFLOW_TRACKING_USERNAME` /
    /// `MLFLOW_TRACKING_PASSWORD` or `MLFLOW_TRACKING_TOKEN`), else `None`. Runs whose artifact
    /// URI is `s3://` (a server started with `--default-artifact-root s3://…` and no artifact
    /// proxy) upload straight to the bucket with the S3 settings of the storage seam.
    pub fn mlflow(
        &self,
    ) -> Result<Option<Arc<rps_mlflow::MlflowClient>>, rps_tracking::TrackingError> {
        match rps_mlflow::MlflowConfig::from_env()? {
            Some(config) => Ok(Some(Arc::new(
                rps_mlflow::MlflowClient::new(config)?
                    .with_artifact_backend(Box::new(rps_tracking::S3Artifacts)),
            ))),
            None => Ok(None),
        }
    }

    /// The run tracker: MLflow when `MLFLOW_TRACKING_URI` is set, else the local run store
    /// under `<home>/runs`.
    pub fn tracker(&self) -> Result<Arc<dyn rps_tracking::Tracker>, rps_tracking::TrackingError> {
        if let Some(client) = self.mlflow()? {
            return Ok(Arc::new(rps_tracking::MlflowTracker::new(client)));
        }
        Ok(Arc::new(rps_tracking::LocalTracker::new(rps_store::open(
            &self.join("runs"),
        )?)))
    }

    /// The model registry: MLflow's when `MLFLOW_TRACKING_URI` is set (falling back to the local
    /// one for servers without a registry), else the local registry under `<home>/registry`.
    pub fn registry(&self) -> Result<Arc<dyn rps_tracking::Registry>, rps_tracking::TrackingError> {
        let local = rps_tracking::LocalRegistry::new(rps_store::open(&self.join("registry"))?);
        if let Some(client) = self.mlflow()? {
            return Ok(Arc::new(rps_tracking::MlflowRegistry::new(client, local)));
        }
        Ok(Arc::new(local))
    }
}

/// Run tags naming the data a stage read: the dataset URI and, for a local folder (what DVC
/// tracks), DVC's own hash of it, equal to the `md5` that `dvc.lock` records for that input.
/// A failure to hash is logged, never fatal: tags are for tracing, not for correctness.
pub fn data_tags(store: &dyn rps_store::ObjectStore) -> Vec<(String, String)> {
    let mut tags = vec![("data_uri".to_owned(), store.uri(""))];
    match rps_store::dvc::dir_md5(store) {
        Ok(Some(md5)) => tags.push(("dvc_md5".to_owned(), md5)),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "could not compute the DVC hash of the input"),
    }
    tags
}

/// The commit the running code was built from: `RPS_GIT_COMMIT` (set in images), else
/// `git rev-parse HEAD`, else `unknown`.
pub fn git_commit() -> String {
    if let Ok(c) = std::env::var("RPS_GIT_COMMIT")
        && !c.is_empty()
    {
        return c;
    }
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "unknown".to_owned(), |s| s.trim().to_owned())
}

/// Progress bars for long terminal work; hidden when stderr is not a terminal (pods, CI).
pub mod progress {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    use std::io::IsTerminal;

    /// A bar of `len` units labelled `what`.
    pub fn bar(len: u64, what: &str) -> ProgressBar {
        let pb = ProgressBar::new(len);
        if !std::io::stderr().is_terminal() {
            pb.set_draw_target(ProgressDrawTarget::hidden());
        }
        pb.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {percent}% ({eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        pb.set_message(what.to_owned());
        pb
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_file_errors_name_the_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("params.yaml");
        assert!(
            load_params(&p)
                .unwrap_err()
                .to_string()
                .contains("cannot read parameter file")
        );
        std::fs::write(&p, "train:\n  num_boost_rounds: 5\n").unwrap();
        let err = load_params(&p).unwrap_err().to_string();
        assert!(
            err.contains("num_boost_rounds") && err.contains("params.yaml"),
            "{err}"
        );
        std::fs::write(&p, "").unwrap();
        assert_eq!(load_params(&p).unwrap(), Params::default());
    }
}
