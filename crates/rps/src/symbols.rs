//! `rps symbols`: the symbols params.yaml lists, for schedulers and scripts that fan a pipeline
//! out per symbol (the Airflow DAG's `params_symbols` task, shell loops): one JSON array on
//! stdout, or in a file (`--output`, what a Kubernetes pod hands to Airflow as its XCom), after
//! the same reading and validation every stage does (a bad entry anywhere exits 3).

use rps_cli::{CommonArgs, ParamsError, StageError, exit};
use std::io::Write;

/// Print the symbols of params.yaml's data.symbols (or its one data.symbol) as a JSON array,
/// in the file's order, e.g. `["BTC-USDT","ETH-USD"]`; `--lines` prints one per line instead.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// One symbol per line instead of a JSON array (for `for s in $(rps symbols --lines)`).
    #[arg(long)]
    pub lines: bool,
    /// Write to this file (replaced whole: written beside it, then renamed) instead of stdout,
    /// e.g. `/airflow/xcom/return.json` in a pod whose result Airflow reads as XCom.
    #[arg(long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum SymbolsError {
    #[error(transparent)]
    Params(#[from] ParamsError),
    #[error("cannot write to stdout: {0}")]
    Stdout(#[from] std::io::Error),
    #[error("cannot write {path}: {source}")]
    Output {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl StageError for SymbolsError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Params(_) => exit::CONFIG,
            Self::Stdout(_) => exit::INTERNAL,
            Self::Output { .. } => exit::STORAGE,
        }
    }
}

pub fn run(args: &Args) -> Result<(), SymbolsError> {
    let set = args.common.load_param_set()?;
    let symbols = set.symbols();
    let text = if args.lines {
        symbols.iter().map(|s| format!("{s}\n")).collect::<String>()
    } else {
        format!("{}\n", serde_json::to_string(&symbols).unwrap_or_default())
    };
    match &args.output {
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
        Some(path) => {
            write_whole(path, text.as_bytes()).map_err(|source| SymbolsError::Output {
                path: path.display().to_string(),
                source,
            })?
        }
    }
    Ok(())
}

/// Write `bytes` to `path` whole: into a temporary file beside it, synced, then renamed over it.
fn write_whole(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
