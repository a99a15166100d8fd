use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let args = rps_forecast::Args::parse();
    rps_cli::init_logging(&args.common);
    rps_cli::finish(rps_forecast::run(&args))
}
