//! The `rps-serve` binary: parse flags, set up logging, run the service, map errors to the exit
//! codes listed in `--help`.

use clap::Parser;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = match rps_serve::Config::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // --help / --version are not errors.
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    rps_serve::init_tracing(config.log_format);
    match rps_serve::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "rps-serve stopped");
            ExitCode::from(e.exit_code())
        }
    }
}
