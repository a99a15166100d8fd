//! Plumbing shared by every RPS stage binary. This is the edge: the only crate (with the
//! binaries) that prints to the terminal or picks a process exit code.
//!
//! - [`CommonArgs`]: `--params`, `--set`, `--home`, `--log-format`, `--color`, `-v`/`-q`,
//!   flattened into each stage.
//! - [`exit`]: the exit codes every stage documents, and [`finish`] to map an error to one and
//!   print it once (with a hint where the cause is known).
//! - [`CommonArgs::load_params`]: `params.yaml` with unknown keys refused, the `--set`
//!   overrides applied, and the one validation ([`rps_core::validate`]) run before anything else.
//! - [`Home`]: the embedded default folder (`.rps/`) with the object store, registry and runs.
//! - [`progress`]: a progress bar on a terminal, silence in a pod.

use clap::{Args, ValueEnum};
use rps_core::params::Params;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

mod params;
pub use params::{
    ParamSet, ParamsError, load_param_set, load_params, load_params_with, param_set_from_str,
    params_from_str,
};

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

/// When human-format logs use colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ColorChoice {
    /// Only on a terminal, and not when `NO_COLOR` is set.
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to write ANSI colour codes to stderr.
    pub fn enabled(self) -> bool {
        use std::io::IsTerminal;
        match self {
            Self::Always => true,
            Self::Never => false,
            Self::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::io::stderr().is_terminal()
            }
        }
    }
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
    /// Override one value of the parameter file, e.g. `--set train.xgboost.eta=0.1` or
    /// `--set split.gap=48` (repeatable; the value is YAML; checked like the file itself).
    #[arg(long = "set", global = true, value_name = "SECTION.KEY=VALUE")]
    pub set: Vec<String>,
    /// The symbol this run is for: one of params.yaml's data.symbols (needed when it lists
    /// several; with one, it is that one).
    #[arg(long, global = true, env = "RPS_SYMBOL", value_name = "SYMBOL")]
    pub symbol: Option<String>,
    /// The embedded home folder: object store, model registry and run records live under it
    /// when no server is configured.
    #[arg(long, global = true, default_value = ".rps", env = "RPS_HOME")]
    pub home: String,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "RPS_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Colours in human logs: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, env = "RPS_COLOR")]
    pub color: ColorChoice,
    /// More logging (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

impl CommonArgs {
    /// The parameters this run uses: `--params` (or `RPS_PARAMS`), then each `--set`, then the
    /// one validation; and `--home` checked to be a location RPS can store to (a path,
    /// `file://` or `s3://`; nothing is read or written yet). Every stage calls this first, so
    /// a bad value stops it before any work, with exit 3. With several symbols in
    /// `data.symbols`, the one `--symbol` (or `RPS_SYMBOL`) names.
    pub fn load_params(&self) -> Result<Params, ParamsError> {
        self.load_param_set()?.into_selected()
    }

    /// Every symbol's parameters ([`load_param_set`]), for commands that work across symbols;
    /// `--symbol` checked to be one of them. Checks `--home` like [`Self::load_params`].
    pub fn load_param_set(&self) -> Result<ParamSet, ParamsError> {
        let set = load_param_set(&self.params, &self.set, self.symbol.as_deref())?;
        match rps_store::open(&self.home) {
            Err(source @ rps_store::StoreError::Unsupported { .. }) => Err(ParamsError::Home {
                home: self.home.clone(),
                source,
            }),
            // Other failures belong to the stage's own storage handling.
            _ => Ok(set),
        }
    }
}

/// How [`finish`] reports: set by [`init_logging`].
static FORMAT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();

/// Start logging to stderr. `RUST_LOG` overrides the level.
pub fn init_logging(args: &CommonArgs) {
    let _ = FORMAT.set(args.log_format);
    let level = match (args.quiet, args.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    init_tracing(args.log_format, level, args.color);
}

/// The one tracing subscriber of every command (stages, `rps serve`, `rps stream`): to stderr,
/// `RUST_LOG` over `default_level`, human lines (colours per `color`) or one JSON object per
/// event. A second call is a no-op.
pub fn init_tracing(format: LogFormat, default_level: &str, color: ColorChoice) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder
            .with_target(false)
            .with_ansi(color.enabled())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_ansi(false)
            .try_init(),
    };
}

/// Report the error once and return its exit code. On a terminal (human format) that is an
/// `error:` line, one `caused by:` line per cause not already in the message above it, and a
/// `hint:` where the cause is known; with `--log-format json` one JSON log event with the same
/// fields, so a log shipper gets one record per failure.
#[allow(clippy::print_stderr)]
pub fn finish<E: StageError>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            let (message, causes) = chain(&e);
            let hint = hint(&message, &causes);
            let code = e.exit_code();
            match FORMAT.get() {
                Some(LogFormat::Json) => tracing::error!(
                    exit_code = code,
                    causes = %causes.join("; "),
                    hint = hint.unwrap_or(""),
                    "{message}"
                ),
                _ => {
                    eprintln!("error: {message}");
                    for c in &causes {
                        eprintln!("  caused by: {c}");
                    }
                    if let Some(h) = hint {
                        eprintln!("  hint: {h}");
                    }
                }
            }
            ExitCode::from(code)
        }
    }
}

/// The error and its causes on one line (`message: cause: cause`), for a warning that is
/// logged and survived rather than reported by [`finish`].
#[must_use]
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let (message, causes) = chain(e);
    std::iter::once(message)
        .chain(causes)
        .collect::<Vec<_>>()
        .join(": ")
}

/// The error's message and its causes, leaving out a cause whose text the line above already
/// holds (`#[error("…: {source}")]` wrappers repeat their source).
fn chain(e: &dyn std::error::Error) -> (String, Vec<String>) {
    let message = e.to_string();
    let mut causes = Vec::new();
    let mut last = message.clone();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !last.contains(&text) {
            causes.push(text.clone());
        }
        last = text;
        source = s.source();
    }
    (message, causes)
}

/// What to do about an error whose cause is known: a missing input names the stage that makes
/// it; a missing parameter file names the flag and variable that point at one.
fn hint(message: &str, causes: &[String]) -> Option<&'static str> {
    let all = std::iter::once(message).chain(causes.iter().map(String::as_str));
    for text in all {
        if text.starts_with("cannot read parameter file") && text.contains("No such file") {
            return Some(
                "run from the project folder that holds params.yaml, or pass --params PATH (or set RPS_PARAMS)",
            );
        }
        let Some((_, missing)) = text.split_once("object not found: ") else {
            continue;
        };
        let missing = missing.trim_end();
        if missing.ends_with("schema.json") || missing.ends_with("features.parquet") {
            return Some(
                "the feature dataset is missing: run `rps transform` first (or pass --features)",
            );
        }
        if missing.ends_with("_manifest.json") {
            return Some("the raw dataset is missing: run `rps extract` first");
        }
        if missing.contains("models/candidate") || missing.ends_with("version.json") {
            return Some("no trained model: run `rps train` first (or pass --model)");
        }
    }
    None
}

/// The embedded default layout under one folder.
#[derive(Debug, Clone)]
pub struct Home {
    pub root: String,
    /// The symbol whose candidate and reports these are, when the parameters list several
    /// (`models/<symbol>/candidate`, `reports/<symbol>`); `None`: `models/candidate`, `reports`.
    scope: Option<String>,
}

impl Home {
    pub fn new(root: &str) -> Self {
        Self {
            root: root.trim_end_matches('/').to_owned(),
            scope: None,
        }
    }

    /// The home of one symbol's run: with several symbols in `data.symbols`, its candidate
    /// model and reports get a folder of their own (two symbols' stages may run at once).
    pub fn for_params(root: &str, params: &Params) -> Self {
        let mut home = Self::new(root);
        if params.data.is_multi_symbol() {
            home.scope = Some(params.data.symbol.clone());
        }
        home
    }

    /// The home of a pooled run (`train.pooling: pooled`): one model for every symbol, its
    /// candidate in `models/pooled/candidate` and its reports in `reports/pooled`.
    pub fn pooled(root: &str) -> Self {
        let mut home = Self::new(root);
        home.scope = Some(rps_core::params::POOLED.to_owned());
        home
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

    /// Where train writes the candidate model and evaluate reads it.
    pub fn candidate(&self) -> String {
        match &self.scope {
            Some(symbol) => self.join(&format!("models/{symbol}/candidate")),
            None => self.join("models/candidate"),
        }
    }

    /// The default report folder of quality and evaluate.
    pub fn reports(&self) -> String {
        match &self.scope {
            Some(symbol) => self.join(&format!("reports/{symbol}")),
            None => self.join("reports"),
        }
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

/// The DVC experiment this stage runs in: `dvc exp run` (also `--temp` and `--queue`) sets
/// `DVC_EXP_NAME` for the stage commands; `dvc repro` does not.
pub fn dvc_experiment() -> Option<String> {
    std::env::var("DVC_EXP_NAME")
        .ok()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
}

/// Run tags naming what DVC says about this run: `dvc_stage` under `dvc repro` and `dvc exp run`,
/// `dvc_exp_name` and `dvc_exp_baseline_rev` (the commit the experiment starts from) under
/// `dvc exp run` only.
fn dvc_tags() -> Vec<(String, String)> {
    [
        ("DVC_STAGE", "dvc_stage"),
        ("DVC_EXP_NAME", "dvc_exp_name"),
        ("DVC_EXP_BASELINE_REV", "dvc_exp_baseline_rev"),
    ]
    .into_iter()
    .filter_map(|(var, tag)| {
        std::env::var(var)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| (tag.to_owned(), v.trim().to_owned()))
    })
    .collect()
}

/// Run tags naming the data a stage read: the dataset URI and, for a local folder (what DVC
/// tracks), DVC's own hash of it, equal to the `md5` that `dvc.lock` records for that input.
/// A failure to hash is logged, never fatal: tags are for tracing, not for correctness. Under
/// DVC, the stage and experiment DVC names are added (`dvc_stage`, `dvc_exp_name`,
/// `dvc_exp_baseline_rev`).
pub fn data_tags(store: &dyn rps_store::ObjectStore) -> Vec<(String, String)> {
    data_tags_with(store, &std::collections::HashMap::new())
}

/// [`data_tags`] given the MD5s of files the stage has already read (key → MD5 hex, see
/// `rps_store::dvc::md5_hex`): only the others are read again.
pub fn data_tags_with(
    store: &dyn rps_store::ObjectStore,
    known_md5: &std::collections::HashMap<String, String>,
) -> Vec<(String, String)> {
    let mut tags = vec![("data_uri".to_owned(), store.uri(""))];
    tags.extend(dvc_tags());
    match rps_store::dvc::dir_md5_with(store, known_md5) {
        Ok(Some(md5)) => tags.push(("dvc_md5".to_owned(), md5)),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "could not compute the DVC hash of the input"),
    }
    tags
}

/// The commit the running code was built from: `RPS_GIT_COMMIT` (set in images), else
/// `git rev-parse HEAD` with `-dirty` appended when tracked files have uncommitted changes (as
/// `git describe --dirty` does: a model trained from such a tree cannot be rebuilt from the
/// commit alone), else `unknown`. Trackers split the suffix into a `git_dirty` tag.
pub fn git_commit() -> String {
    if let Ok(c) = std::env::var("RPS_GIT_COMMIT")
        && !c.is_empty()
    {
        return c;
    }
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
    };
    let Some(commit) = git(&["rev-parse", "HEAD"]).map(|s| s.trim().to_owned()) else {
        return "unknown".to_owned();
    };
    match git(&["status", "--porcelain", "--untracked-files=no"]) {
        Some(changes) if !changes.trim().is_empty() => format!("{commit}-dirty"),
        _ => commit,
    }
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

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read x: {source}")]
    struct Wrapper {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let e = Wrapper {
            source: std::io::Error::other("disk on fire"),
        };
        let (message, causes) = chain(&e);
        assert_eq!(message, "cannot read x: disk on fire");
        assert!(causes.is_empty(), "{causes:?}");
    }

    #[test]
    fn known_causes_get_a_hint() {
        assert!(
            hint(
                "object not found: .rps/data/features/BTC-USD/schema.json",
                &[]
            )
            .unwrap()
            .contains("rps transform")
        );
        assert!(
            hint(
                "cannot read parameter file params.yaml: No such file or directory (os error 2)",
                &[]
            )
            .unwrap()
            .contains("RPS_PARAMS")
        );
        assert!(
            hint("x", &["object not found: a/_manifest.json".to_owned()])
                .unwrap()
                .contains("rps extract")
        );
        assert_eq!(hint("something else", &[]), None);
    }
}
