//! `rps symbols`: the symbols params.yaml lists, for schedulers and scripts that fan a pipeline
//! out per symbol (the Airflow DAG's local mode, shell loops): one JSON array on stdout, after
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
}

#[derive(Debug, thiserror::Error)]
pub enum SymbolsError {
    #[error(transparent)]
    Params(#[from] ParamsError),
    #[error("cannot write to stdout: {0}")]
    Stdout(#[from] std::io::Error),
}

impl StageError for SymbolsError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Params(_) => exit::CONFIG,
            Self::Stdout(_) => exit::INTERNAL,
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
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}
