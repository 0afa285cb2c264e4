//! tlsd's channel to the supervisor: a socket it inherits (`--admin-fd`),
//! on which the supervisor's watchdog pings tlsd and `capnet status` asks
//! how it is confined. The peer is only the supervisor, but it gets no more
//! than it needs: `stat` answers, `connect` and `listen` are refused (TLS
//! sockets are for applications on tls.sock, under their own limits).

use crate::service::{write_stat, Shared};
use capnet_schema::errors::SocketError;
use capnet_schema::tls_capnp::tls;
use capnet_schema::transport::{self, TransportCounters};
use capnp::capability::Rc as CapRc;
use capnp::Error;
use std::os::fd::{FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;

/// The `Tls` the supervisor bootstraps: counters only.
struct SupervisorTls {
    shared: Arc<Shared>,
    /// tls.sock's transport counters, so both see the same `stat`.
    transport: Rc<TransportCounters>,
}

fn stat_only() -> Error {
    SocketError::Denied.to_capnp("the supervisor's channel to tlsd answers stat only")
}

impl tls::Server for SupervisorTls {
    async fn connect(
        self: CapRc<Self>,
        _: tls::ConnectParams,
        _: tls::ConnectResults,
    ) -> Result<(), Error> {
        Err(stat_only())
    }

    async fn listen(
        self: CapRc<Self>,
        _: tls::ListenParams,
        _: tls::ListenResults,
    ) -> Result<(), Error> {
        Err(stat_only())
    }

    async fn stat(
        self: CapRc<Self>,
        _: tls::StatParams,
        mut results: tls::StatResults,
    ) -> Result<(), Error> {
        write_stat(&self.shared, &self.transport, results.get().init_stat());
        Ok(())
    }
}

/// Serves the supervisor on inherited descriptor `fd` from a task on the
/// current `LocalSet`, for as long as the supervisor keeps its end.
pub fn serve(
    fd: i32,
    shared: Arc<Shared>,
    transport: Rc<TransportCounters>,
) -> std::io::Result<()> {
    // SAFETY: an inherited socket from the supervisor, named once on the
    // command line and owned by nothing else here.
    let stream = std::os::unix::net::UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    // Non-blocking: a supervisor that stops reading never stalls tlsd.
    stream.set_nonblocking(true)?;
    let stream = tokio::net::UnixStream::from_std(stream)?;
    let tls: tls::Client = capnp_rpc::new_client(SupervisorTls { shared, transport });
    tokio::task::spawn_local(async move {
        if let Err(e) = transport::serve(stream, tls.client).await {
            tracing::debug!(%e, "supervisor channel ended");
        }
    });
    Ok(())
}
