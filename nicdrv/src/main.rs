//! `nicdrv`: one NIC port. See `nicdrv --help` and the crate docs.

use nicdrv::args::{self, ArgError};
use std::io::IsTerminal;
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
        // No escape codes in a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let user = args.user;
    let wire = match &args.backend {
        args::Backend::Sim { wire } => Some(wire.clone()),
        args::Backend::Tap { .. } => None,
    };
    let listen = args.listen.clone();
    let result = nicdrv::open(args).and_then(|opened| {
        confine(user, wire.as_deref(), listen.as_deref())
            .map_err(|e| format!("cannot confine nicdrv: {e}"))?;
        nicdrv::serve(opened)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("nicdrv: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Once the device and capture are open, the driver touches only its
/// wire's directory (the rendezvous socket and lock, met again whenever the
/// peer restarts) and its `--listen` socket's.
fn confine(
    user: Option<capnet_confine::User>,
    wire: Option<&std::path::Path>,
    listen: Option<&std::path::Path>,
) -> std::io::Result<()> {
    use capnet_confine::{Access, Policy, Service};
    use std::path::Path;
    let parent = |p: &Path| p.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut policy = Policy::new(Service::Nicdrv).user(user);
    for path in wire.into_iter().chain(listen) {
        policy = policy.allow(parent(path), Access::Write);
    }
    let report = capnet_confine::confine(&policy)?;
    tracing::info!(%report, "confined");
    Ok(())
}
