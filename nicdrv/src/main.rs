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
    if let Err(e) = confine(&args) {
        tracing::error!("cannot confine nicdrv: {e}");
        return ExitCode::FAILURE;
    }
    match nicdrv::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("nicdrv: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The driver touches only its wire's directory (the rendezvous socket
/// and lock), its capture file, and for TAP the device node and its
/// namespace.
fn confine(a: &args::Args) -> std::io::Result<()> {
    use capnet_confine::{Access, Policy, Service};
    use std::path::Path;
    let parent = |p: &Path| p.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut policy = Policy::new(Service::Nicdrv);
    match &a.backend {
        args::Backend::Sim { wire } => policy = policy.allow(parent(wire), Access::Write),
        args::Backend::Tap { netns, .. } => {
            policy = policy.allow("/dev/net/tun", Access::Write);
            if let Some(ns) = netns {
                policy = policy.allow(format!("/run/netns/{ns}"), Access::Read);
            }
        }
    }
    if let Some(pcap) = &a.pcap {
        policy = policy.allow(pcap, Access::Write);
    }
    if let Some(listen) = &a.listen {
        policy = policy.allow(parent(listen), Access::Write);
    }
    let report = capnet_confine::confine(&policy)?;
    tracing::info!(%report, "confined");
    Ok(())
}
