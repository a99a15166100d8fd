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
    /// Also rerun every configuration with these booster seeds (`train.xgboost.seed`) and
    /// report how QLIKE and the pooled-vs-per-symbol difference move with the seed alone: the
    /// training noise beside the test sample's (the Diebold–Mariano test's). Nothing is chosen
    /// on them.
    #[arg(long, value_delimiter = ',')]
    seeds: Vec<i64>,
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
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("pooled_forecasts.csv"), cmp.csv())?;
    if !args.seeds.is_empty() {
        let mut runs = vec![(params.train.xgboost.get("seed").cloned(), cmp)];
        for &seed in &args.seeds {
            let mut p = params.clone();
            p.train.xgboost.insert("seed".to_owned(), seed.into());
            eprintln!("[{:>5.0} s] seed {seed}", t.elapsed().as_secs_f64());
            let c = compare(&p, &symbols, bar_ms, &args.market, &mut |_| {})?;
            runs.push((Some(seed.into()), c));
        }
        report.push_str(&seed_table(&runs));
    }
    let _ = writeln!(report, "\nWall time {:.0} s.", t.elapsed().as_secs_f64());
    std::fs::write(args.out.join("pooled.md"), &report)?;
    Ok(report)
}

/// QLIKE of every configuration per symbol and over all rows, one row per booster seed, and
/// the spread of each over the seeds.
fn seed_table(
    runs: &[(
        Option<serde_json::Value>,
        rps_experiments::pooled::Comparison,
    )],
) -> String {
    use rps_experiments::pooled::CONFIGS;
    let mut o = String::from(
        "\n### The same comparison with other booster seeds\n\nQLIKE pooled over the folds; the first row is the parameter file's seed (the tables above). Δ: pooled vs per_symbol, relative.\n\n| seed |",
    );
    let groups: Vec<String> = runs[0]
        .1
        .symbols
        .iter()
        .map(|s| s.name.clone())
        .chain(["all".to_owned()])
        .collect();
    for g in &groups {
        for c in CONFIGS {
            let _ = write!(o, " {g} {} |", c.name());
        }
        let _ = write!(o, " {g} Δ pooled |");
    }
    o.push_str("\n|---|");
    for _ in 0..groups.len() * (CONFIGS.len() + 1) {
        o.push_str("---:|");
    }
    o.push('\n');
    let mut columns: Vec<Vec<f64>> = Vec::new();
    for (seed, c) in runs {
        let q = c.qlike_by_group();
        let mut row = Vec::new();
        for g in &q {
            row.extend(&g.1);
            row.push(100.0 * (g.1[2] / g.1[0] - 1.0));
        }
        let _ = write!(
            o,
            "| {} |",
            seed.as_ref()
                .map_or("default".to_owned(), ToString::to_string)
        );
        for (j, v) in row.iter().enumerate() {
            if j % (CONFIGS.len() + 1) == CONFIGS.len() {
                let _ = write!(o, " {v:+.2} % |");
            } else {
                let _ = write!(o, " {v:.4} |");
            }
        }
        o.push('\n');
        columns.push(row);
    }
    let _ = write!(o, "| min .. max |");
    for j in 0..columns[0].len() {
        let lo = columns.iter().map(|r| r[j]).fold(f64::INFINITY, f64::min);
        let hi = columns
            .iter()
            .map(|r| r[j])
            .fold(f64::NEG_INFINITY, f64::max);
        if j % (CONFIGS.len() + 1) == CONFIGS.len() {
            let _ = write!(o, " {lo:+.2} .. {hi:+.2} % |");
        } else {
            let _ = write!(o, " {lo:.4} .. {hi:.4} |");
        }
    }
    o.push('\n');
    o
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
