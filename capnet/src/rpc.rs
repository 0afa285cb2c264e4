//! capnp over Unix sockets for the supervisor and the CLI.

use capnet_ring::handoff::CONNECT_RPC;
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
    s.write_all(&[CONNECT_RPC])?;
    bootstrap(s.into())
}

/// Binds a socket only the owner may connect to.
pub fn listen(path: &Path) -> io::Result<UnixListener> {
    transport::listen_private(path)
}

/// Serves `bootstrap` on every connection that starts with `R`.
pub async fn serve_forever(listener: UnixListener, bootstrap: capnp::capability::Client) {
    loop {
        // Backs off on errors (out of descriptors) instead of spinning.
        let mut stream = transport::accept(&listener, None).await;
        let bootstrap = bootstrap.clone();
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
