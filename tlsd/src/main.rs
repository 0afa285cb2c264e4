//! tlsd: the TLS service. Started by the `capnet` supervisor.

use capnet_schema::transport;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use tlsd::{args, identity::Identity, service};

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
        Err(msg) => {
            eprintln!("tlsd: {msg}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAPNET_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // No escape codes in a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let identity = match Identity::load(&args.identity) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("tlsd: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match transport::listen_for(&args.listen, &args.allow_network) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tlsd: {}: {e}", args.listen.display());
            return ExitCode::FAILURE;
        }
    };
    // The keys are read, the key log is open and the socket is bound: from
    // here on tlsd touches no file but netsrv's socket.
    if let Err(e) = confine(&args) {
        tracing::error!("cannot confine tlsd: {e}");
        return ExitCode::FAILURE;
    }
    if args.identity.keylog.is_some() {
        tracing::warn!("TLS secrets are being written to the key log (debugging only)");
    }
    let shared = match service::Shared::new(identity, args.net.clone(), args.limits) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("tlsd: handshake workers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    let served = local.block_on(&runtime, async move {
        let listener = transport::serve_on(listener)?;
        tracing::info!(path = %args.listen.display(), "serving applications");
        let transport = std::rc::Rc::default();
        if let Some(fd) = args.admin_fd {
            tlsd::supervisor::serve(fd, shared.clone(), std::rc::Rc::clone(&transport))?;
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = service::serve_applications(listener, service::TlsSocketService {
                shared,
                network: args.allow_network.clone(),
                low_ports: args.allow_low_ports.clone(),
                transport,
            }) => r,
            _ = term.recv() => Ok(()),
        }
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(%e, "tlsd failed");
            ExitCode::FAILURE
        }
    }
}

fn confine(args: &args::Args) -> std::io::Result<()> {
    use capnet_confine::{Access, Policy, Service};
    let mut policy = Policy::new(Service::Tlsd).user(args.user);
    if let Some(dir) = args.net.parent() {
        policy = policy.allow(dir, Access::Read);
    }
    let report = capnet_confine::confine(&policy)?;
    tracing::info!(%report, "confined");
    Ok(())
}
