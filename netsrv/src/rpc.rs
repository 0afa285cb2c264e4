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

/// The sockets netsrv serves, bound at start (before it gives up root).
pub struct Listeners {
    /// The application socket.
    pub apps: Option<(std::os::unix::net::UnixListener, std::path::PathBuf)>,
    /// tlsd's socket, and the one uid that may connect to it.
    pub trusted: Option<(std::os::unix::net::UnixListener, u32)>,
}

/// Binds the application socket for `network` and tlsd's socket for
/// `trusted_uid` alone (mode 0600, owned by that uid). Binding and handing
/// the socket file to another uid may need root, so this runs before the
/// service drops to its own user.
pub fn bind(args: &crate::args::Args) -> std::io::Result<Listeners> {
    let annotate = |p: &Path, e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("{}: {e}", p.display()))
    };
    let apps = match &args.listen {
        Some(path) => Some((
            transport::listen_for(path, &args.allow_network).map_err(|e| annotate(path, e))?,
            path.clone(),
        )),
        None => None,
    };
    let trusted = match (&args.trusted_listen, args.trusted_uid) {
        (Some(path), Some(uid)) => {
            let l = transport::listen_private(path).map_err(|e| annotate(path, e))?;
            // SAFETY: getuid has no preconditions.
            if uid != unsafe { libc::getuid() } {
                std::os::unix::fs::chown(path, Some(uid), None).map_err(|e| annotate(path, e))?;
            }
            Some((l, uid))
        }
        _ => None,
    };
    Ok(Listeners { apps, trusted })
}

/// Serves every connection to the application socket; who may use it is
/// decided on each peer's credentials, so the socket itself is open to
/// every local user when `network` admits anyone beyond root.
pub async fn serve_apps(
    shared: Rc<Shared>,
    listener: std::os::unix::net::UnixListener,
    path: &Path,
    network: Principals,
    low_ports: Principals,
) -> std::io::Result<()> {
    let listener = transport::serve_on(listener)?;
    tracing::info!(path = %path.display(), %network, %low_ports, "serving applications");
    let socket = NetSocket {
        shared,
        network,
        low_ports,
    };
    transport::serve_clients(listener, Rc::new(socket)).await
}

/// tlsd's way in: the one peer that connects as `uid` gets a trusted `Net`
/// (not limited, any port), since tlsd serves many users and judges and
/// limits each of them itself; through the application socket it would be
/// one ordinary client, and one TLS user could spend every other's share.
/// Anyone else is refused, root included: a trusted `Net` is only tlsd's.
struct TrustedSocket {
    shared: Rc<Shared>,
    uid: u32,
}

impl ServiceSocket for TrustedSocket {
    fn handoff(&self) -> &capnet_ring::HandoffTable {
        &self.shared.handoff
    }

    fn bootstrap(&self, peer: &Peer) -> capnp::capability::Client {
        if peer.uid != self.uid {
            self.shared.stack.borrow_mut().counters.sessions_refused += 1;
            tracing::warn!(
                uid = peer.uid,
                pid = peer.pid,
                "refused on the trusted socket: only uid {} (tlsd) may use it",
                self.uid
            );
            return transport::refused(SocketError::Denied.to_capnp(format_args!(
                "uid {} is not tlsd's (uid {}); applications use capnet.sock",
                peer.uid, self.uid
            )));
        }
        let net: capnet_schema::net_capnp::net::Client =
            capnp_rpc::new_client(NetServer::trusted(self.shared.clone()));
        net.client
    }

    fn transport_counters(&self) -> Option<Rc<transport::TransportCounters>> {
        Some(self.shared.transport.clone())
    }
}

/// Serves tlsd on its socket.
pub async fn serve_trusted(
    shared: Rc<Shared>,
    listener: std::os::unix::net::UnixListener,
    uid: u32,
) -> std::io::Result<()> {
    let listener = transport::serve_on(listener)?;
    tracing::info!(uid, "serving tlsd on its trusted socket");
    transport::serve_clients(listener, Rc::new(TrustedSocket { shared, uid })).await
}
