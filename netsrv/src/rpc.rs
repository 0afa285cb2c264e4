//! capnp-rpc over Unix sockets, and the service socket that applications
//! connect to (the connection protocol is `capnet_schema::transport`'s).

use crate::service::{NetServer, Shared};
use capnet_schema::access::{Peer, Principals};
use capnet_schema::errors::SocketError;
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

struct NetSocket {
    shared: Rc<Shared>,
    network: Principals,
    low_ports: Principals,
}

impl ServiceSocket for NetSocket {
    fn handoff(&self) -> &capnet_ring::HandoffTable {
        &self.shared.handoff
    }

    fn bootstrap(&self, peer: &Peer) -> capnp::capability::Client {
        if !self.network.admits(peer) {
            self.shared.stack.borrow_mut().counters.sessions_refused += 1;
            tracing::warn!(
                uid = peer.uid,
                pid = peer.pid,
                "refused: may not use the network"
            );
            return transport::refused(SocketError::Denied.to_capnp(format_args!(
                "uid {} may not use this network ([access] network in the configuration)",
                peer.uid
            )));
        }
        let low_ports = self.low_ports.admits(peer);
        let net: capnet_schema::net_capnp::net::Client =
            capnp_rpc::new_client(NetServer::new(self.shared.clone(), peer.uid, low_ports));
        net.client
    }

    fn connections_per_user(&self) -> usize {
        self.shared.accounts.limits.connections_per_user
    }

    fn transport_counters(&self) -> Option<Rc<transport::TransportCounters>> {
        Some(self.shared.transport.clone())
    }
}

/// Binds the service socket and serves every connection; who may use it is
/// decided on each peer's credentials, so the socket itself is open to
/// every local user when `network` admits anyone beyond root.
pub async fn listen(
    shared: Rc<Shared>,
    path: &Path,
    network: Principals,
    low_ports: Principals,
) -> std::io::Result<()> {
    let listener = transport::listen_for(path, &network)?;
    tracing::info!(path = %path.display(), %network, %low_ports, "serving applications");
    let socket = NetSocket {
        shared,
        network,
        low_ports,
    };
    transport::serve_clients(listener, Rc::new(socket)).await
}
