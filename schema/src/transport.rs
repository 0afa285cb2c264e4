//! capnp-rpc over a Unix stream: the one way every capnet process talks.

use capnp_rpc::{rpc_twoparty_capnp::Side, RpcSystem};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;
use tokio::net::UnixStream;

/// Binds a Unix socket only its owner may connect to (mode 0600), replacing
/// a stale socket file. The listener is a std one (non-blocking), so that
/// a service can bind before its runtime exists — while it still holds
/// the privileges binding may need — and serve later ([`serve_on`]).
pub fn listen_private(path: &std::path::Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    bind_as(path, 0o600)
}

/// Binds a service socket for `users`: mode 0600 when they are only the
/// service's own user (and root), else 0666 — then the kernel lets anyone
/// connect and the service judges each peer's credentials.
pub fn listen_for(
    path: &std::path::Path,
    users: &crate::access::Principals,
) -> std::io::Result<std::os::unix::net::UnixListener> {
    // SAFETY: getuid has no preconditions.
    let mode = if users.only(unsafe { libc::getuid() }) {
        0o600
    } else {
        0o666
    };
    bind_as(path, mode)
}

/// The socket file appears at `path` only once it listens with its final
/// mode: it is bound beside it and renamed into place. Bound at `path`
/// itself, the file would exist a moment before listen(2) (a client that
/// saw it and connected was refused) and before its mode was set (anyone
/// could connect in between).
fn bind_as(path: &std::path::Path, mode: u32) -> std::io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}", std::process::id()));
    let temp = std::path::PathBuf::from(name);
    let _ = std::fs::remove_file(&temp);
    let listener = std::os::unix::net::UnixListener::bind(&temp)?;
    let placed = std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(mode))
        .and_then(|()| std::fs::rename(&temp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// A bound listener, registered with the current tokio runtime.
pub fn serve_on(
    listener: std::os::unix::net::UnixListener,
) -> std::io::Result<tokio::net::UnixListener> {
    listener.set_nonblocking(true)?;
    tokio::net::UnixListener::from_std(listener)
}

use crate::metered::MeteredNetwork;
pub use crate::metered::{ConnectionLimits, TransportCounters};
use crate::quiet::QuietStream;

/// Reading options for messages from a peer on the `side` given.
pub fn reader_options(side: Side) -> capnp::message::ReaderOptions {
    limits_of(side).reader_options()
}

fn limits_of(side: Side) -> ConnectionLimits {
    match side {
        Side::Server => ConnectionLimits::SERVICE,
        Side::Client => ConnectionLimits::CLIENT,
    }
}

pub type Network = MeteredNetwork<QuietStream>;

/// A connection whose incoming messages are framed and metered with the
/// limits of `side` (a service reading requests, or a client reading
/// answers).
pub fn vat_network(stream: std::os::unix::net::UnixStream, side: Side) -> std::io::Result<Network> {
    let stream = QuietStream::new(stream)?;
    Ok(MeteredNetwork::new(
        stream.clone(),
        stream,
        side,
        limits_of(side),
        None,
    ))
}

/// Serves `bootstrap` to the peer until the connection ends.
pub async fn serve(stream: UnixStream, bootstrap: capnp::capability::Client) -> capnp::Result<()> {
    let network = vat_network(stream.into_std()?, Side::Server)?;
    RpcSystem::new(Box::new(network), Some(bootstrap)).await
}

/// Bootstraps the capability the peer offers; the connection runs as a task
/// on the current `LocalSet` until both sides drop it. A stream the runtime
/// cannot take gives a capability whose every call fails with why.
pub fn connect<C: capnp::capability::FromClientHook>(stream: UnixStream) -> C {
    let network = match stream.into_std().and_then(|s| vat_network(s, Side::Client)) {
        Ok(n) => n,
        Err(e) => return C::new(capnp_rpc::new_broken_cap(e.into()).hook),
    };
    let mut system = RpcSystem::new(Box::new(network), None);
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
    /// What one connection may hold.
    fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits::SERVICE
    }
    /// Connections one user may hold open at once (capnp and handoff).
    fn connections_per_user(&self) -> usize {
        DEFAULT_CONNECTIONS_PER_USER
    }
    /// Where the transport counts what it refused.
    fn transport_counters(&self) -> Option<Rc<TransportCounters>> {
        None
    }
}

/// See [`ServiceSocket::connections_per_user`].
pub const DEFAULT_CONNECTIONS_PER_USER: usize = 64;

/// How long a failed accept (out of file descriptors) waits before the
/// next: the descriptors come back as other connections end.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How long a connection refused for its user's connection count is kept
/// open, so that its bootstrap call hears why.
const REFUSED_LINGER: Duration = Duration::from_secs(2);

/// How long a new connection may take to say what it is.
const FIRST_BYTE_DEADLINE: Duration = Duration::from_secs(10);

/// Open connections per user.
#[derive(Default)]
struct UserConnections(RefCell<HashMap<u32, usize>>);

/// One connection's place in its user's count.
struct ConnectionSlot {
    users: Rc<UserConnections>,
    uid: u32,
}

impl UserConnections {
    fn take(self: &Rc<Self>, uid: u32, limit: usize) -> Option<ConnectionSlot> {
        let mut users = self.0.borrow_mut();
        let n = users.entry(uid).or_default();
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(ConnectionSlot {
            users: self.clone(),
            uid,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut users = self.users.0.borrow_mut();
        if let Some(n) = users.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                users.remove(&self.uid);
            }
        }
    }
}

/// How long a notification to a peer (an event, a watcher's callback)
/// waits for its answer: a peer that never answers must not pile up tasks
/// that wait for it.
pub const NOTICE_DEADLINE: Duration = Duration::from_secs(10);

/// `call`, or a `failed` error naming `what` once `deadline` passed.
pub async fn within<T>(
    deadline: Duration,
    what: &str,
    call: impl std::future::Future<Output = capnp::Result<T>>,
) -> capnp::Result<T> {
    match tokio::time::timeout(deadline, call).await {
        Ok(r) => r,
        Err(_) => Err(capnp::Error::failed(format!(
            "{what}: no answer within {} ms",
            deadline.as_millis()
        ))),
    }
}

/// A capability that answers every call with `error`: what a peer that
/// may not use a service bootstraps, so that it learns why instead of
/// seeing the connection drop.
pub fn refused(error: capnp::Error) -> capnp::capability::Client {
    capnp_rpc::new_broken_cap(error)
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
    service: Rc<dyn ServiceSocket>,
) -> std::io::Result<()> {
    let users = Rc::new(UserConnections::default());
    let counters = service.transport_counters();
    loop {
        let stream = accept(&listener, counters.as_deref()).await;
        let service = service.clone();
        let users = users.clone();
        tokio::task::spawn_local(async move {
            if let Err(e) = serve_client(service, users, stream).await {
                tracing::debug!(%e, "client connection ended");
            }
        });
    }
}

/// The next connection to `listener`. A failed accept (out of descriptors:
/// EMFILE, ENFILE; or a connection that died in the queue) is nobody
/// else's business: it is counted, and the next waits a moment for
/// descriptors to come back. Never gives up: a service outlives what a
/// client exhausted.
pub async fn accept(
    listener: &tokio::net::UnixListener,
    counters: Option<&TransportCounters>,
) -> UnixStream {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return stream,
            Err(e) => {
                if let Some(c) = counters {
                    TransportCounters::bump(&c.accept_errors);
                }
                tracing::warn!(%e, "accept failed; serving on");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

async fn serve_client(
    service: Rc<dyn ServiceSocket>,
    users: Rc<UserConnections>,
    stream: UnixStream,
) -> std::io::Result<()> {
    use capnet_ring::handoff::{Token, CONNECT_HANDOFF};
    use futures::AsyncReadExt;
    use std::os::fd::AsFd;
    let mut stream = QuietStream::from_tokio(stream)?;
    let peer = crate::access::Peer::of(stream.as_fd())?;
    let uid = peer.uid;
    let limit = service.connections_per_user();
    let slot = users.take(uid, limit);
    if slot.is_none() {
        if let Some(c) = service.transport_counters() {
            TransportCounters::bump(&c.connections_refused);
        }
    }
    // Every client writes its first byte at once; one that does not only
    // holds a descriptor.
    let deadline = if slot.is_some() {
        FIRST_BYTE_DEADLINE
    } else {
        REFUSED_LINGER
    };
    let mut first = [0u8; 1];
    tokio::time::timeout(deadline, stream.read_exact(&mut first))
        .await
        .map_err(|_| std::io::ErrorKind::TimedOut)??;
    if first[0] == CONNECT_HANDOFF {
        if slot.is_none() {
            return Ok(());
        }
        loop {
            let mut token = [0u8; 16];
            stream.read_exact(&mut token).await?;
            service.handoff().answer(stream.as_fd(), &Token(token))?;
        }
    }
    let Some(_slot) = slot else {
        // Every call on the bootstrap fails with `limit`, then the
        // connection closes.
        let why = crate::errors::SocketError::Limit.to_capnp(format_args!(
            "user {uid} holds {limit} connections to this service, its limit \
             ([limits] connections_per_user in the capnet configuration)"
        ));
        let network = rpc_network(&*service, stream, first[0]);
        let system = RpcSystem::new(Box::new(network), Some(capnp_rpc::new_broken_cap(why)));
        let _ = tokio::time::timeout(REFUSED_LINGER, system).await;
        return Ok(());
    };
    let bootstrap = service.bootstrap(&peer);
    let network = rpc_network(&*service, stream, first[0]);
    if let Err(e) = RpcSystem::new(Box::new(network), Some(bootstrap)).await {
        tracing::debug!(%e, "capnp connection ended");
    }
    Ok(())
}

/// The capnp side of a service connection whose first byte was `first`:
/// `R`, or the start of a plain capnp client's first message.
fn rpc_network(
    service: &dyn ServiceSocket,
    stream: QuietStream,
    first: u8,
) -> MeteredNetwork<impl futures::AsyncRead + Unpin + 'static> {
    let replay = if first == capnet_ring::handoff::CONNECT_RPC {
        Vec::new()
    } else {
        vec![first]
    };
    let reader = futures::io::AsyncReadExt::chain(futures::io::Cursor::new(replay), stream.clone());
    MeteredNetwork::new(
        reader,
        stream,
        Side::Server,
        service.connection_limits(),
        service.transport_counters(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_socket_appears_listening_with_its_mode_and_replaces_a_stale_one() {
        let dir = std::env::temp_dir().join(format!("capnet-bind-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        std::fs::write(&path, b"stale").unwrap();
        let _l = listen_private(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::os::unix::net::UnixStream::connect(&path).expect("listening once it exists");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary name left: {left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
