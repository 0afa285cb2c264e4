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
