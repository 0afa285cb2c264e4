//! capnp-rpc over a Unix stream: the one way every capnet process talks.

use capnp_rpc::{rpc_twoparty_capnp::Side, twoparty, RpcSystem};
use tokio::net::unix::OwnedReadHalf;
use tokio::net::UnixStream;
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

/// Binds a Unix socket only its owner may connect to (mode 0600), replacing
/// a stale socket file.
pub fn listen_private(path: &std::path::Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Binds a service socket for `users`: mode 0600 when they are only the
/// service's own user (and root), else 0666 — then the kernel lets anyone
/// connect and the service judges each peer's credentials.
pub fn listen_for(
    path: &std::path::Path,
    users: &crate::access::Principals,
) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let listener = listen_private(path)?;
    // SAFETY: getuid has no preconditions.
    if !users.only(unsafe { libc::getuid() }) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    }
    Ok(listener)
}

/// Messages carry socket data of up to 1 MiB; allow well beyond that.
pub fn reader_options() -> capnp::message::ReaderOptions {
    let mut options = capnp::message::ReaderOptions::new();
    options.traversal_limit_in_words(Some(64 << 20));
    options
}

pub type Network = twoparty::VatNetwork<Compat<OwnedReadHalf>>;

pub fn vat_network(stream: UnixStream, side: Side) -> Network {
    let (r, w) = stream.into_split();
    twoparty::VatNetwork::new(r.compat(), w.compat_write(), side, reader_options())
}

/// Serves `bootstrap` to the peer until the connection ends.
pub async fn serve(stream: UnixStream, bootstrap: capnp::capability::Client) -> capnp::Result<()> {
    RpcSystem::new(Box::new(vat_network(stream, Side::Server)), Some(bootstrap)).await
}

/// Bootstraps the capability the peer offers; the connection runs as a task
/// on the current `LocalSet` until both sides drop it.
pub fn connect<C: capnp::capability::FromClientHook>(stream: UnixStream) -> C {
    let mut system = RpcSystem::new(Box::new(vat_network(stream, Side::Client)), None);
    let client: C = system.bootstrap(Side::Server);
    tokio::task::spawn_local(async move {
        if let Err(e) = system.await {
            tracing::debug!(%e, "capnp connection ended");
        }
    });
    client
}

/// A service that applications reach through a socket in the run
/// directory (netsrv's `net.sock`, tlsd's `tls.sock`).
pub trait ServiceSocket {
    /// Grants (shared memory fds) waiting to be redeemed by clients.
    fn handoff(&self) -> &capnet_ring::HandoffTable;
    /// The capability a client with `peer`'s credentials bootstraps.
    fn bootstrap(&self, peer: &crate::access::Peer) -> capnp::capability::Client;
}

/// A capability that answers every call with `error`: what a peer that
/// may not use a service bootstraps, so that it learns why instead of
/// seeing the connection drop.
pub fn refused(error: capnp::Error) -> capnp::capability::Client {
    capnp_rpc::new_future_client(async move { Err::<capnp::capability::Client, _>(error) })
}

/// Serves every connection to `listener`.
///
/// Each connection starts with one byte: `R` (capnp follows; the client
/// bootstraps the service's capability) or `H` (handoff: the client redeems
/// ring grants and receives their file descriptors). A connection that
/// starts with anything else is plain capnp, for clients in other languages
/// (pycapnp), and that byte is the start of its first message.
pub async fn serve_clients(
    listener: tokio::net::UnixListener,
    service: std::rc::Rc<dyn ServiceSocket>,
) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let service = service.clone();
        tokio::task::spawn_local(async move {
            if let Err(e) = serve_client(service, stream).await {
                tracing::debug!(%e, "client connection ended");
            }
        });
    }
}

async fn serve_client(
    service: std::rc::Rc<dyn ServiceSocket>,
    mut stream: UnixStream,
) -> std::io::Result<()> {
    use capnet_ring::handoff::{Token, CONNECT_HANDOFF, CONNECT_RPC};
    use std::os::fd::AsFd;
    use tokio::io::AsyncReadExt;
    let peer = crate::access::Peer::of(stream.as_fd())?;
    let mut first = [0u8; 1];
    stream.read_exact(&mut first).await?;
    if first[0] == CONNECT_HANDOFF {
        loop {
            let mut token = [0u8; 16];
            stream.read_exact(&mut token).await?;
            service.handoff().answer(stream.as_fd(), &Token(token))?;
        }
    }
    let replay = if first[0] == CONNECT_RPC {
        Vec::new()
    } else {
        vec![first[0]]
    };
    let bootstrap = service.bootstrap(&peer);
    let (reader, writer) = stream.into_split();
    let reader =
        futures::io::AsyncReadExt::chain(futures::io::Cursor::new(replay), reader.compat());
    let network = twoparty::VatNetwork::new(
        reader,
        writer.compat_write(),
        Side::Server,
        reader_options(),
    );
    if let Err(e) = RpcSystem::new(Box::new(network), Some(bootstrap)).await {
        tracing::debug!(%e, "capnp connection ended");
    }
    Ok(())
}
