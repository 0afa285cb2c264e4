//! netsrv: TCP/IP and the socket service. Started by the `capnet` supervisor.

use netsrv::{args, driver, rpc, service};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitCode;

fn main() -> ExitCode {
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
        .init();
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(%e, "netsrv failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: args::Args) -> std::io::Result<()> {
    let mut stack = netsrv::stack::Stack::new(args.tcp_buffer);
    stack.reno = args.reno;
    let shared = service::Shared::new(stack);
    for port in &args.ports {
        let streams = driver::open(&port.source)?;
        driver::attach(&shared, &port.name, streams)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("port {}: {e}", port.name)))?;
    }
    shared
        .stack
        .borrow_mut()
        .configure(&args.bonds, &args.addresses, &args.routes)
        .map_err(std::io::Error::other)?;
    tokio::task::spawn_local(service::run_stack(shared.clone()));
    for &fd in &args.rpc_fds {
        let net: capnet_schema::net_capnp::net::Client =
            capnp_rpc::new_client(service::NetServer::new(shared.clone(), 0));
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
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    match &args.listen {
        Some(path) => {
            tokio::select! {
                r = rpc::listen(shared.clone(), path) => r,
                _ = term.recv() => Ok(()),
            }
        }
        None => {
            term.recv().await;
            Ok(())
        }
    }
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
