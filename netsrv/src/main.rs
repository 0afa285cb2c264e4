//! netsrv: TCP/IP and the socket service. Started by the `capnet` supervisor.

use netsrv::{args, driver, rpc, service};
use std::io::IsTerminal;
use std::os::fd::{FromRawFd, OwnedFd};
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
        Err(msg) => {
            eprintln!("netsrv: {msg}");
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
    raise_fd_limit();
    let listeners = match rpc::bind(&args) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(%e, "cannot bind the service sockets");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = confine(&args) {
        tracing::error!(%e, "cannot confine netsrv");
        return ExitCode::FAILURE;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, run(args, listeners)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(%e, "netsrv failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: args::Args, listeners: rpc::Listeners) -> std::io::Result<()> {
    let mut stack = netsrv::stack::Stack::new(args.tcp_buffer);
    stack.congestion = args.congestion;
    stack.buffer_max = args.limits.socket_buffer_max;
    let shared = service::Shared::new(stack, args.limits);
    driver::attach_at_start(&shared, &args.ports).await;
    shared
        .stack
        .borrow_mut()
        .configure(&args.bonds, &args.addresses, &args.routes)
        .map_err(std::io::Error::other)?;
    tokio::task::spawn_local(service::run_stack(shared.clone()));
    for &fd in &args.rpc_fds {
        let net: capnet_schema::net_capnp::net::Client =
            capnp_rpc::new_client(service::NetServer::trusted(shared.clone()));
        rpc::serve(inherited_stream(fd)?, net.client);
    }
    for &fd in &args.admin_fds {
        let admin: capnet_schema::net_capnp::net_admin::Client =
            capnp_rpc::new_client(netsrv::admin::NetAdminServer::new(shared.clone()));
        rpc::serve(inherited_stream(fd)?, admin.client);
    }
    if let Some(fd) = args.attach_fd {
        // SAFETY: an inherited socket from the supervisor, named once on the
        // command line and owned by nothing else here.
        let channel = std::os::unix::net::UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let shared = shared.clone();
        tokio::task::spawn_local(async move {
            if let Err(e) = driver::serve_attach_channel(shared, channel).await {
                tracing::error!(%e, "attach channel failed; restarted drivers cannot join");
            }
        });
    }
    if let Some((listener, uid)) = listeners.trusted {
        let shared = shared.clone();
        tokio::task::spawn_local(async move {
            if let Err(e) = rpc::serve_trusted(shared, listener, uid).await {
                tracing::error!(%e, "the trusted socket failed; tlsd cannot reach the network");
            }
        });
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    match listeners.apps {
        Some((listener, path)) => {
            tokio::select! {
                r = rpc::serve_apps(
                    shared.clone(),
                    listener,
                    &path,
                    args.allow_network.clone(),
                    args.allow_low_ports.clone(),
                ) => r,
                _ = term.recv() => Ok(()),
            }
        }
        None => {
            term.recv().await;
            Ok(())
        }
    }
}

/// netsrv opens no file once its sockets are bound: everything else comes
/// as inherited fds. Started as root, it becomes its own user first.
fn confine(args: &args::Args) -> std::io::Result<()> {
    use capnet_confine::{Access, Policy, Service};
    let mut policy = Policy::new(Service::Netsrv).user(args.user);
    // The panic test hook removes its trigger file once it fired.
    if let Some(trigger) = std::env::var_os(netsrv::test_hooks::PANIC_FILE) {
        if let Some(dir) = std::path::Path::new(&trigger).parent() {
            policy = policy.allow(dir, Access::Write);
        }
    }
    let report = capnet_confine::confine(&policy)?;
    tracing::info!(%report, "confined");
    Ok(())
}

fn inherited_stream(fd: i32) -> std::io::Result<tokio::net::UnixStream> {
    // SAFETY: an inherited socket from the supervisor, named once on the
    // command line and owned by nothing else here.
    let std_stream = std::os::unix::net::UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    std_stream.set_nonblocking(true)?;
    tokio::net::UnixStream::from_std(std_stream)
}

/// Every socket in ring mode holds a memfd and two doorbell sockets.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid, initialized struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
