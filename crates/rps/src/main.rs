//! `rps`: every stage in one binary, so one small image runs any of them as
//! `docker run IMAGE <stage> [flags]`. Each subcommand is exactly the stage binary of the same
//! name (`rps train --help` = `rps-train --help`); nothing here but dispatch.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod probe;
mod symbols;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// RPS: Bitcoin volatility forecasting, from market data to a served model.
///
/// Pipeline order: extract → quality → transform → train → evaluate; serve answers predictions,
/// stream predicts each new bar from Kafka into PostgreSQL, alert-hook turns accuracy alerts
/// into training DAG runs, forecast prints the next bar's
/// forecast from the raw dataset.
/// Every stage reads its knobs from params.yaml (--params) and keeps its data under --home
/// unless given URIs.
#[derive(Debug, Parser)]
#[command(name = "rps", version, propagate_version = true, after_help = rps_cli::exit::HELP)]
struct Cli {
    #[command(subcommand)]
    stage: Stage,
}

#[derive(Debug, Subcommand)]
enum Stage {
    /// Fetch candles from the market source (or a file) into the raw dataset.
    Extract(rps_extract::Args),
    /// Check the raw dataset against the quality gate; exit 5 when it fails.
    Quality(rps_quality::Args),
    /// Build the point-in-time features and the target.
    Transform(rps_transform::Args),
    /// Train the volatility model (or, with `train.task: signal`, the Buy/Hold/Sell model) and
    /// register it as a new version.
    Train(rps_train::Args),
    /// Score the candidate against the baselines and the champion; promote it if it wins.
    Evaluate(rps_evaluate::Args),
    /// Forecast the next bar's volatility from the newest candles of the raw dataset, by a
    /// registered model (the champion by default): a table, or JSON with --json.
    Forecast(rps_forecast::Args),
    /// Serve predictions over HTTP with metrics, drift and hot model swaps.
    Serve(rps_serve::Config),
    /// Health check for containers: GET a URL, exit 0 on 2xx, 1 otherwise.
    Probe(probe::Args),
    /// Stream candles through Kafka and write online predictions to PostgreSQL
    /// (produce, consume, reconcile, migrate).
    Stream(rps_stream::Args),
    /// Receive Alertmanager webhooks and create a run of the training DAG in Airflow for each
    /// firing alert labelled action=retrain (the online accuracy alerts).
    AlertHook(rps_alert_hook::Args),
    /// Print the symbols params.yaml lists (data.symbols), as JSON or one per line: what a
    /// scheduler fans the per-symbol stages out over (each then run with --symbol).
    Symbols(symbols::Args),
}

fn main() -> ExitCode {
    match Cli::parse().stage {
        Stage::Extract(a) => stage(&a.common, || rps_extract::run(&a)),
        Stage::Quality(a) => stage(&a.common, || rps_quality::run(&a)),
        Stage::Transform(a) => {
            no_huge_pages();
            stage(&a.common, || rps_transform::run(&a))
        }
        Stage::Train(a) => stage(&a.common, || rps_train::run(&a)),
        Stage::Evaluate(a) => stage(&a.common, || rps_evaluate::run(&a)),
        Stage::Forecast(a) => stage(&a.common, || rps_forecast::run(&a)),
        Stage::Stream(a) => stage(&a.common, || rps_stream::run(&a)),
        Stage::AlertHook(a) => stage(&a.common, || rps_alert_hook::run(&a)),
        Stage::Symbols(a) => stage(&a.common, || symbols::run(&a)),
        Stage::Serve(config) => {
            rps_serve::init_tracing(config.log_format);
            match rps_serve::run(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "rps serve stopped");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Stage::Probe(a) => match probe::run(&a) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                #[allow(clippy::print_stderr)] // the probe's whole output, read by the runtime
                {
                    eprintln!("rps probe: {e}");
                }
                ExitCode::FAILURE
            }
        },
    }
}

/// Transparent huge pages off for this process (`prctl(PR_SET_THP_DISABLE)`): mimalloc asks for
/// them on its segments, and a short batch process then pays the kernel zeroing 2 MB per first
/// touch. Measured on `make bench-transform` (5 years of one-minute bars): about a quarter less
/// CPU time and a fifth less peak memory. Failing to set it changes nothing but speed.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

fn stage<E: rps_cli::StageError>(
    common: &rps_cli::CommonArgs,
    run: impl FnOnce() -> Result<(), E>,
) -> ExitCode {
    rps_cli::init_logging(common);
    rps_cli::finish(run())
}
