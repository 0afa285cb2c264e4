//! capnp-rpc over Unix sockets, and the service socket that applications
//! connect to.
//!
//! Each connection to the service socket starts with one byte: `R` (capnp
//! follows; the client bootstraps a `Net`) or `H` (handoff: the client redeems
//! ring grants and receives their file descriptors). A connection that starts
//! with anything else is plain capnp, for clients in other languages.

use crate::service::{NetServer, Shared};
use capnet_ring::handoff::{Token, CONNECT_HANDOFF, CONNECT_RPC};
use capnet_schema::transport;
use capnp_rpc::{rpc_twoparty_capnp::Side, twoparty, RpcSystem};
use std::os::fd::AsFd;
use std::path::Path;
use std::rc::Rc;
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;
use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

/// Serves `bootstrap` to the peer of `stream` until it disconnects.
pub fn serve(stream: UnixStream, bootstrap: capnp::capability::Client) {
    tokio::task::spawn_local(async move {
        if let Err(e) = transport::serve(stream, bootstrap).await {
            tracing::debug!(%e, "capnp connection ended");
        }
    });
}

/// Binds the service socket (mode 0600) and serves every connection.
pub async fn listen(shared: Rc<Shared>, path: &Path) -> std::io::Result<()> {
    let listener = transport::listen_private(path)?;
    tracing::info!(path = %path.display(), "serving applications");
    loop {
        let (stream, _) = listener.accept().await?;
        let shared = shared.clone();
        tokio::task::spawn_local(async move {
            if let Err(e) = handle(shared, stream).await {
                tracing::debug!(%e, "client connection ended");
            }
        });
    }
}

async fn handle(shared: Rc<Shared>, mut stream: UnixStream) -> std::io::Result<()> {
    let uid = stream.peer_cred()?.uid();
    let mut first = [0u8; 1];
    stream.read_exact(&mut first).await?;
    if first[0] == CONNECT_HANDOFF {
        loop {
            let mut token = [0u8; 16];
            stream.read_exact(&mut token).await?;
            shared.handoff.answer(stream.as_fd(), &Token(token))?;
        }
    }
    // `R` announces capnp; a plain capnp client (pycapnp) starts with its
    // first message at once, so any other byte belongs to that message.
    let replay = if first[0] == CONNECT_RPC {
        Vec::new()
    } else {
        vec![first[0]]
    };
    let net: capnet_schema::net_capnp::net::Client =
        capnp_rpc::new_client(NetServer::new(shared, uid));
    let (reader, writer) = stream.into_split();
    let reader =
        futures::io::AsyncReadExt::chain(futures::io::Cursor::new(replay), reader.compat());
    let network = twoparty::VatNetwork::new(
        reader,
        writer.compat_write(),
        Side::Server,
        transport::reader_options(),
    );
    let system = RpcSystem::new(Box::new(network), Some(net.client));
    if let Err(e) = system.await {
        tracing::debug!(%e, "capnp connection ended");
    }
    Ok(())
}
