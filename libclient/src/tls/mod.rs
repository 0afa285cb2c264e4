//! TLS streams and listeners through tlsd.
//!
//! tlsd makes the TCP connection, runs the handshake and keeps the record
//! layer (in software, or on the NIC); the application sees plaintext on the
//! same kind of shared rings a [`TcpStream`](crate::TcpStream) uses.
//! Certificates, private keys and traffic keys never leave tlsd.

mod error;
mod options;

use error::read_addr;
pub(crate) use error::tls_err;
pub use error::TlsError;
pub use options::{OffloadPolicy, RecordMode, TlsInfo, TlsOptions, TlsStat, TlsVersion};

use crate::accept::{Accepted, Acceptor};
use crate::conn::{Conn, Ctx, Object, Service};
use crate::stream::{
    granted, ring_stream_api, Grant, ReadShut, RingStream, Rings, CONTROL_TIMEOUT,
};
use crate::tcp::resolve;
use futures::FutureExt;
use std::io;
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};

/// A connection to a service set's TLS service (tlsd, `tls.sock`). Cheap to
/// clone; the connection ends when the last clone and every socket made
/// from it are gone.
///
/// If tlsd goes away, every operation on this connection and its sockets
/// fails with `ConnectionReset` ("capnet: the TLS service went away"), as
/// with [`Net`](crate::Net); [`Tls::default_tls`] connects anew on its next
/// use.
#[derive(Clone)]
pub struct Tls {
    conn: Conn,
}

impl Tls {
    /// Connects to tlsd's socket at `path`.
    pub fn connect(path: impl AsRef<Path>) -> io::Result<Tls> {
        Ok(Tls {
            conn: Conn::connect(path.as_ref(), Service::Tls)?,
        })
    }

    /// The process-wide connection to `$CAPNET_TLS_SOCKET` (see
    /// [`default_tls_socket_path`](crate::default_tls_socket_path)), made on
    /// first use, and made again on the next use after tlsd went away.
    /// Sockets of the old connection stay dead.
    pub fn default_tls() -> io::Result<Tls> {
        static DEFAULT: Mutex<Option<Conn>> = Mutex::new(None);
        Ok(Tls {
            conn: Conn::shared(
                &DEFAULT,
                crate::paths::default_tls_socket_path,
                Service::Tls,
            )?,
        })
    }

    /// False once tlsd has gone away.
    pub fn is_connected(&self) -> bool {
        self.conn.is_connected()
    }

    /// tlsd's counters.
    pub fn stat(&self) -> io::Result<TlsStat> {
        self.conn.call(Some(CONTROL_TIMEOUT), |ctx| async move {
            let resp = ctx
                .tls()
                .stat_request()
                .send()
                .promise
                .await
                .map_err(tls_err)?;
            let stat = resp.get().map_err(tls_err)?.get_stat().map_err(tls_err)?;
            Ok(TlsStat::read(stat))
        })
    }

    /// Connects to `addr` and completes a handshake; the peer's certificate
    /// must be valid for `server_name` (a DNS name or an IP address), which
    /// is also sent as SNI. A failed handshake is `InvalidData` (see
    /// [`TlsError`]).
    pub fn connect_stream(
        &self,
        addr: SocketAddr,
        server_name: &str,
        options: &TlsOptions,
    ) -> io::Result<TlsStream> {
        let options = options.clone();
        let server_name = server_name.to_owned();
        let (id, rings) = self.conn.call(None, move |ctx| async move {
            let mut req = ctx.tls().connect_request();
            crate::udp::write_addr(req.get().init_remote(), addr);
            req.get().set_server_name(server_name.as_str());
            options.write(req.get().init_options());
            let call = req.send();
            let rings = call.pipeline.get_socket().open_rings_request().send();
            let resp = call.promise.await.map_err(tls_err)?;
            let sock = resp.get().map_err(tls_err)?.get_socket().map_err(tls_err)?;
            let id = ctx.insert(Object::TlsSocket(sock));
            let answer = async move { Grant::read(rings.promise.await?.get()?.get_grant()?) };
            Ok((id, granted(&ctx, id, None, answer, tls_err).await?))
        })?;
        TlsStream::from_object(self.conn.clone(), id, addr, rings)
    }

    /// Listens on `addr` and serves tlsd's configured identity (`NotFound`
    /// if it has none).
    pub fn listen(
        &self,
        addr: SocketAddr,
        backlog: u32,
        options: &TlsOptions,
    ) -> io::Result<TlsListener> {
        let options = options.clone();
        let (id, local) = self
            .conn
            .call(Some(CONTROL_TIMEOUT), move |ctx| async move {
                let mut req = ctx.tls().listen_request();
                crate::udp::write_addr(req.get().init_local(), addr);
                req.get().set_backlog(backlog);
                options.write(req.get().init_options());
                let resp = req.send().promise.await.map_err(tls_err)?;
                let l = resp
                    .get()
                    .map_err(tls_err)?
                    .get_listener()
                    .map_err(tls_err)?;
                let la = l
                    .local_addr_request()
                    .send()
                    .promise
                    .await
                    .map_err(tls_err)?;
                let local = read_addr(la.get().map_err(tls_err)?.get_addr().map_err(tls_err)?)?;
                Ok((ctx.insert(Object::TlsListener(l)), local))
            })?;
        Ok(TlsListener {
            conn: self.conn.clone(),
            id,
            local,
            acceptor: Acceptor::new(
                self.conn.clone(),
                Arc::new(move |ctx| accept_call(ctx, id).boxed_local()),
            ),
        })
    }
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("connected", &self.is_connected())
            .finish()
    }
}

/// A TLS connection whose handshake has completed; reads and writes
/// plaintext, like a [`TcpStream`](crate::TcpStream).
///
/// The peer's `close_notify` is end of stream (`read` answers 0); a fatal
/// alert or a connection reset fails the read. `shutdown(Write)` makes tlsd
/// send `close_notify` after the bytes written so far; so does dropping the
/// stream.
///
/// If tlsd goes away, sleepers in `read` and `write` wake at once and every
/// operation from then on fails with `ConnectionReset`; plaintext tlsd had
/// already put in the receive ring is still delivered first.
pub struct TlsStream {
    ring: RingStream,
    peer: SocketAddr,
    local: OnceLock<SocketAddr>,
}

impl TlsStream {
    /// Connects through the default TLS service
    /// ([`Tls::default_tls`]) with the default [`TlsOptions`].
    pub fn connect(addr: impl ToSocketAddrs, server_name: &str) -> io::Result<TlsStream> {
        Tls::default_tls()?.connect_stream(resolve(addr)?, server_name, &TlsOptions::default())
    }

    /// Takes a TLS socket (already in the connection's table) to ring mode
    /// with its `openRings` answer.
    fn from_object(conn: Conn, id: u64, peer: SocketAddr, rings: Rings) -> io::Result<TlsStream> {
        let ring = RingStream::open(conn, id, rings)?;
        Ok(TlsStream {
            ring,
            peer,
            local: OnceLock::new(),
        })
    }

    /// What the handshake agreed on, and where records are processed now
    /// (asked of tlsd on each call).
    pub fn info(&self) -> io::Result<TlsInfo> {
        let id = self.ring.id();
        let info = self
            .ring
            .conn()
            .call(Some(CONTROL_TIMEOUT), move |ctx| async move {
                let resp = ctx
                    .tls_socket(id)?
                    .info_request()
                    .send()
                    .promise
                    .await
                    .map_err(tls_err)?;
                TlsInfo::read(resp.get().map_err(tls_err)?.get_info().map_err(tls_err)?)
            })?;
        let _ = self.local.set(info.local);
        Ok(info)
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer)
    }

    /// Asked of tlsd on first use.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self.local.get() {
            Some(a) => Ok(*a),
            None => Ok(self.info()?.local),
        }
    }

    /// `Write`: tlsd sends `close_notify` after the bytes written so far.
    /// `Read`: reads answer end of stream from now on (nothing is sent;
    /// TLS has no way to say it).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.ring.conn().check()?;
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            self.ring.shutdown_read(ReadShut::Eof);
        }
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            self.ring.shutdown_write()?;
        }
        Ok(())
    }
}

ring_stream_api!(TlsStream, ring);

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("local", &self.local.get())
            .field("peer", &self.peer)
            .finish()
    }
}

/// A TLS listener: accepts connections whose handshake completed (a client
/// whose handshake fails is counted in [`TlsStat::handshake_failures`] and
/// `accept` waits for the next one). Dropping it closes the listening
/// socket. If tlsd goes away, a blocked `accept` returns at once and every
/// call from then on fails with `ConnectionReset`.
pub struct TlsListener {
    conn: Conn,
    id: u64,
    local: SocketAddr,
    acceptor: Acceptor,
}

impl TlsListener {
    /// Listens through the default TLS service with the default
    /// [`TlsOptions`] and a backlog of 128.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<TlsListener> {
        Tls::default_tls()?.listen(resolve(addr)?, 128, &TlsOptions::default())
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    /// In non-blocking mode, `accept` answers `WouldBlock` after 1 ms
    /// without a connection (the call stays in flight: a connection it
    /// brings later is the next `accept`'s).
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.acceptor.set_nonblocking(on);
        Ok(())
    }

    /// Stops listening and waits for tlsd to release the port; connections
    /// not yet accepted are closed. Dropping the listener does the same
    /// without waiting.
    pub fn close(self) -> io::Result<()> {
        let id = self.id;
        self.conn
            .call(Some(CONTROL_TIMEOUT), move |ctx| async move {
                let l = ctx.tls_listener(id)?;
                l.close_request().send().promise.await.map_err(tls_err)?;
                Ok(())
            })
    }

    pub fn accept(&self) -> io::Result<(TlsStream, SocketAddr)> {
        let (sock, remote, rings) = self.acceptor.accept()?;
        Ok((
            TlsStream::from_object(self.conn.clone(), sock, remote, rings)?,
            remote,
        ))
    }

    pub fn incoming(&self) -> impl Iterator<Item = io::Result<TlsStream>> + '_ {
        std::iter::repeat_with(move || self.accept().map(|(s, _)| s))
    }
}

/// One accept on TLS listener `id`, with the connection's `openRings`
/// pipelined on it.
async fn accept_call(ctx: Rc<Ctx>, id: u64) -> io::Result<Accepted> {
    let call = ctx.tls_listener(id)?.accept_request().send();
    let rings = call.pipeline.get_socket().open_rings_request().send();
    let resp = call.promise.await.map_err(tls_err)?;
    let r = resp.get().map_err(tls_err)?;
    let remote = read_addr(r.get_remote().map_err(tls_err)?)?;
    let sock = ctx.insert(Object::TlsSocket(r.get_socket().map_err(tls_err)?));
    let answer = async move { Grant::read(rings.promise.await?.get()?.get_grant()?) };
    let rings = granted(&ctx, sock, None, answer, tls_err).await?;
    Ok((sock, remote, rings))
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        let id = self.id;
        self.conn.spawn(move |ctx| async move {
            if let Some(Object::TlsListener(l)) = ctx.remove(id) {
                let _ = l.close_request().send().promise.await;
            }
        });
    }
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("local", &self.local)
            .finish()
    }
}
