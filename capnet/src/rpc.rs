//! capnp over Unix sockets for the supervisor and the CLI.

use capnet_ring::handoff::CONNECT_RPC;
use capnet_schema::access::{Peer, Principals};
use capnet_schema::errors::SocketError;
use capnet_schema::transport;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use tokio::io::AsyncReadExt;
use tokio::net::{UnixListener, UnixStream};

/// Bootstraps the capability offered on an already connected socket.
pub fn bootstrap<C: capnp::capability::FromClientHook>(fd: OwnedFd) -> io::Result<C> {
    let std_stream = std::os::unix::net::UnixStream::from(fd);
    std_stream.set_nonblocking(true)?;
    Ok(transport::connect(UnixStream::from_std(std_stream)?))
}

/// Connects to a service socket (`R` then capnp) and bootstraps.
pub fn connect<C: capnp::capability::FromClientHook>(path: &Path) -> io::Result<C> {
    let mut s = std::os::unix::net::UnixStream::connect(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("{}: {e} (is `capnet up` running?)", path.display()),
        )
    })?;
    libclient::verify_service_socket(path, std::os::fd::AsFd::as_fd(&s))?;
    s.write_all(&[CONNECT_RPC])?;
    bootstrap(s.into())
}

/// Serves `bootstrap` on every connection that starts with `R` and comes
/// from one of `users`; anyone else bootstraps a capability that answers
/// every call with `denied`.
pub async fn serve_forever(
    listener: UnixListener,
    bootstrap: capnp::capability::Client,
    users: Principals,
) {
    loop {
        // Backs off on errors (out of descriptors) instead of spinning.
        let mut stream = transport::accept(&listener, None).await;
        let bootstrap = match Peer::of(std::os::fd::AsFd::as_fd(&stream)) {
            Ok(peer) if users.admits(&peer) => bootstrap.clone(),
            Ok(peer) => {
                tracing::warn!(uid = peer.uid, pid = peer.pid, "admin refused");
                transport::refused(SocketError::Denied.to_capnp(format_args!(
                    "uid {} may not administer this service set ([access] admin in the configuration)",
                    peer.uid
                )))
            }
            Err(e) => {
                tracing::warn!(%e, "admin peer without credentials");
                continue;
            }
        };
        tokio::task::spawn_local(async move {
            let mut kind = [0u8; 1];
            if stream.read_exact(&mut kind).await.is_err() || kind[0] != CONNECT_RPC {
                return;
            }
            if let Err(e) = transport::serve(stream, bootstrap).await {
                tracing::debug!(%e, "admin connection ended");
            }
        });
    }
}
