//! capnp over Unix sockets for the supervisor and the CLI.

use capnet_ring::handoff::CONNECT_RPC;
use capnp_rpc::{rpc_twoparty_capnp::Side, twoparty, RpcSystem};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use tokio::io::AsyncReadExt;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

fn network(
    stream: UnixStream,
    side: Side,
) -> twoparty::VatNetwork<impl futures::AsyncRead + Unpin> {
    let (r, w) = stream.into_split();
    twoparty::VatNetwork::new(r.compat(), w.compat_write(), side, Default::default())
}

/// Bootstraps the capability offered on an already connected socket.
pub fn bootstrap<C: capnp::capability::FromClientHook>(fd: OwnedFd) -> io::Result<C> {
    let std_stream = std::os::unix::net::UnixStream::from(fd);
    std_stream.set_nonblocking(true)?;
    let mut system = RpcSystem::new(
        Box::new(network(UnixStream::from_std(std_stream)?, Side::Client)),
        None,
    );
    let client: C = system.bootstrap(Side::Server);
    tokio::task::spawn_local(async move {
        if let Err(e) = system.await {
            tracing::debug!(%e, "capnp connection ended");
        }
    });
    Ok(client)
}

/// Connects to a service socket (`R` then capnp) and bootstraps.
pub fn connect<C: capnp::capability::FromClientHook>(path: &Path) -> io::Result<C> {
    let mut s = std::os::unix::net::UnixStream::connect(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("{}: {e} (is `capnet up` running?)", path.display()),
        )
    })?;
    s.write_all(&[CONNECT_RPC])?;
    bootstrap(s.into())
}

/// Binds a socket only the owner may connect to.
pub fn listen(path: &Path) -> io::Result<UnixListener> {
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(l)
}

/// Serves `bootstrap` on every connection that starts with `R`.
pub async fn serve_forever(listener: UnixListener, bootstrap: capnp::capability::Client) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_local(async move {
            let mut kind = [0u8; 1];
            if stream.read_exact(&mut kind).await.is_err() || kind[0] != CONNECT_RPC {
                return;
            }
            let system = RpcSystem::new(Box::new(network(stream, Side::Server)), Some(bootstrap));
            if let Err(e) = system.await {
                tracing::debug!(%e, "admin connection ended");
            }
        });
    }
}
