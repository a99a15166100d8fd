//! `rps-pooled`: pooled vs per-symbol volatility models on the same walk-forward folds
//! (issue #20). Reads the feature datasets `rps transform` wrote for each symbol, runs
//! `rps_experiments::pooled::compare` with the parameter file's `train:`, `split:`, `target:`
//! and `evaluate:` sections, prints the report and writes it (`pooled.md`) with every test
//! row's forecasts (`pooled_forecasts.csv`) to `--out`. `scripts/pooled.sh` (`make pooled`)
//! builds the datasets and runs it. Exit codes: 0 done, 1 failed.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use clap::Parser;
use rps_experiments::pooled::{Symbol, compare};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "rps-pooled", version)]
struct Args {
    /// The parameter file (its train:, split:, target: and evaluate: sections are used as they
    /// are; data: is not read).
    #[arg(long, default_value = "params.yaml")]
    params: PathBuf,
    /// Override one value of the parameter file (repeatable), as for the stages.
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    set: Vec<String>,
    /// A symbol's feature dataset, `SYMBOL=DIR` (the folder with features.parquet and
    /// schema.json); at least two.
    #[arg(long = "features", value_name = "SYMBOL=DIR", required = true)]
    features: Vec<String>,
    /// Features whose mean over the other symbols at the same hour is the market factor of the
    /// `*_market` configurations.
    #[arg(long, value_delimiter = ',', default_value = "har_1b,har_24b")]
    market: Vec<String>,
    /// Folder for pooled.md and pooled_forecasts.csv.
    #[arg(long)]
    out: PathBuf,
}

fn run(args: &Args) -> Result<String, Box<dyn std::error::Error>> {
    let params = rps_cli::load_params_with(&args.params, &args.set)?;
    let mut symbols = Vec::new();
    let mut inputs = String::new();
    let mut bar = None;
    for spec in &args.features {
        let (name, dir) = spec
            .split_once('=')
            .ok_or_else(|| format!("--features {spec:?}: expected SYMBOL=DIR"))?;
        let store = rps_store::open(dir)?;
        let (ds, schema) = rps_store::frame::read(store.as_ref())?;
        let b: rps_core::Interval = schema
            .bar
            .parse()
            .map_err(|_| format!("{dir}: bar {:?} is not an interval", schema.bar))?;
        if bar.is_some_and(|x| x != b) {
            return Err(format!("{dir}: bar {b:?} differs from the other datasets'").into());
        }
        bar = Some(b);
        let usable = ds.frame.usable().iter().filter(|u| **u).count();
        let _ = writeln!(
            inputs,
            "- {name}: `{dir}`, {} rows ({usable} usable), bars {} .. {}, {} features, data hash {}",
            ds.frame.len(),
            chrono::DateTime::from_timestamp_millis(schema.first_ts)
                .map_or_else(String::new, |d| d.to_rfc3339()),
            chrono::DateTime::from_timestamp_millis(schema.last_ts)
                .map_or_else(String::new, |d| d.to_rfc3339()),
            schema.features.len(),
            schema.data_hash.get(..12).unwrap_or(&schema.data_hash),
        );
        symbols.push(Symbol {
            name: name.to_owned(),
            frame: ds.frame,
        });
    }
    let bar_ms = bar.ok_or("no --features")?.ms();
    let t = std::time::Instant::now();
    let cmp = compare(&params, &symbols, bar_ms, &args.market, &mut |what| {
        eprintln!("[{:>5.0} s] training {what}", t.elapsed().as_secs_f64());
    })?;
    let mut report = format!(
        "## Pooled vs per-symbol (rps-pooled at {})\n\nInputs:\n{inputs}- market factor: the other symbols' mean of {:?} at the same hour\n- {} walk-forward folds ({:?} window), train: as in {}{}\n\n",
        rps_cli::git_commit(),
        args.market,
        cmp.folds.len(),
        params.evaluate.walk_forward_window,
        args.params.display(),
        if args.set.is_empty() {
            String::new()
        } else {
            format!(" with {}", args.set.join(" "))
        },
    );
    report.push_str(&cmp.markdown());
    let _ = writeln!(report, "\nWall time {:.0} s.", t.elapsed().as_secs_f64());
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("pooled.md"), &report)?;
    std::fs::write(args.out.join("pooled_forecasts.csv"), cmp.csv())?;
    Ok(report)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
