//! `nicdrv`: one NIC port. See `nicdrv --help` and the crate docs.

use nicdrv::args::{self, ArgError};
use std::process::ExitCode;

fn main() -> ExitCode {
    // A panic anywhere, a data plane's included, ends the process (the
    // supervisor restarts it) instead of leaving it alive with a dead task.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |p| {
        report(p);
        std::process::abort();
    }));
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(ArgError::Help) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAPNET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match nicdrv::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("nicdrv: {e}");
            ExitCode::FAILURE
        }
    }
}
