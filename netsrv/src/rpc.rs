//! capnp-rpc over Unix sockets, and the service socket that applications
//! connect to (the connection protocol is `capnet_schema::transport`'s).

use crate::service::{NetServer, Shared};
use capnet_schema::transport::{self, ServiceSocket};
use std::path::Path;
use std::rc::Rc;
use tokio::net::UnixStream;

/// Serves `bootstrap` to the peer of `stream` until it disconnects.
pub fn serve(stream: UnixStream, bootstrap: capnp::capability::Client) {
    tokio::task::spawn_local(async move {
        if let Err(e) = transport::serve(stream, bootstrap).await {
            tracing::debug!(%e, "capnp connection ended");
        }
    });
}

struct NetSocket(Rc<Shared>);

impl ServiceSocket for NetSocket {
    fn handoff(&self) -> &capnet_ring::HandoffTable {
        &self.0.handoff
    }

    fn bootstrap(&self, uid: u32) -> capnp::capability::Client {
        let net: capnet_schema::net_capnp::net::Client =
            capnp_rpc::new_client(NetServer::new(self.0.clone(), uid));
        net.client
    }

    fn connections_per_user(&self) -> usize {
        self.0.accounts.limits.connections_per_user
    }

    fn transport_counters(&self) -> Option<Rc<transport::TransportCounters>> {
        Some(self.0.transport.clone())
    }
}

/// Binds the service socket (mode 0600) and serves every connection.
pub async fn listen(shared: Rc<Shared>, path: &Path) -> std::io::Result<()> {
    let listener = transport::listen_private(path)?;
    tracing::info!(path = %path.display(), "serving applications");
    transport::serve_clients(listener, Rc::new(NetSocket(shared))).await
}
