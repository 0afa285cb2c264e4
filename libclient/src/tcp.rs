//! TCP streams and listeners.

use crate::accept::{Accepted, Acceptor};
use crate::conn::{cap_err, Ctx, Net, Object};
use crate::stream::{
    granted, lock, name_held, ring_stream_api, ErrorReport, Grant, ReadShut, RingStream, Rings,
    CONTROL_TIMEOUT,
};
use capnet_schema::net_capnp::Shutdown;
use futures::FutureExt;
use std::io;
use std::net::{Shutdown as StdShutdown, SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub(crate) fn resolve(addr: impl ToSocketAddrs) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to"))
}

/// A TCP connection, like `std::net::TcpStream`, with the semantics of a
/// Linux socket (`tests/tests/socket_semantics.rs` holds it to them):
///
/// - A reset is reported once, to the first read or write (`ConnectionReset`,
///   after the bytes that came before it); then reads answer 0 and writes
///   `BrokenPipe`, and `shutdown` answers `NotConnected`.
/// - A write after `shutdown(Write)`, or after the peer's reset answered
///   our bytes, is `BrokenPipe`.
/// - After `shutdown(Read)` reads never wait: they answer what is queued, or
///   0; bytes the peer sends later are still read (Linux `SHUT_RD`). With
///   both directions shut, new data from the peer resets the connection.
/// - Dropping the stream closes it: what was written still goes out, then
///   a FIN. [`set_linger`](Self::set_linger) changes that as `SO_LINGER`
///   does.
///
/// If the network service goes away (netsrv exits or is killed), sleepers
/// in `read` and `write` wake at once and every operation from then on
/// fails with `ConnectionReset`, like a connection reset by its peer, with
/// one difference: bytes netsrv had already put in the stream's receive ring
/// are still delivered first. The fd of `as_raw_fd` turns readable, so event
/// loops wake up too.
pub struct TcpStream {
    ring: RingStream,
    local: OnceLock<SocketAddr>,
    peer: SocketAddr,
    /// SO_LINGER, as netsrv was told.
    linger: Mutex<Option<Duration>>,
}

impl TcpStream {
    /// Connects through the default service set (`$CAPNET_SOCKET`).
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        Net::default_net()?.tcp_connect(resolve(addr)?, None)
    }

    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        Net::default_net()?.tcp_connect(*addr, Some(timeout))
    }

    /// Takes a socket capability (already in the connection's table) to ring
    /// mode with its `openRings` answer.
    pub(crate) fn from_object(
        net: Net,
        id: u64,
        peer: SocketAddr,
        rings: Rings,
    ) -> io::Result<TcpStream> {
        let ring = RingStream::open(net.conn().clone(), id, rings)?;
        ring.report_errors(ErrorReport::Once);
        Ok(TcpStream {
            ring,
            local: OnceLock::new(),
            peer,
            linger: Mutex::new(None),
        })
    }

    /// The connection this socket belongs to.
    pub(crate) fn net(&self) -> Net {
        Net::from_conn(self.ring.conn().clone())
    }

    /// The socket's number in the connection's table.
    pub(crate) fn object(&self) -> u64 {
        self.ring.id()
    }

    /// The stream's name in [`Net::news`]: unique within its connection,
    /// never reused.
    pub fn token(&self) -> u64 {
        self.ring.id()
    }

    pub(crate) fn ring_conn(&self) -> &crate::conn::Conn {
        self.ring.conn()
    }

    pub(crate) fn begin_rx_switch(&self) {
        self.ring.begin_rx_switch()
    }

    pub(crate) fn end_rx_switch(&self, end: crate::chunks::SwitchEnd) -> io::Result<()> {
        self.ring.end_rx_switch(end)
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer)
    }

    /// Asked of netsrv on first use (connect and accept do not need it).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        if let Some(a) = self.local.get() {
            return Ok(*a);
        }
        let id = self.object();
        let addr = self
            .ring
            .conn()
            .call(Some(CONTROL_TIMEOUT), move |ctx| async move {
                let info = ctx
                    .tcp(id)?
                    .info_request()
                    .send()
                    .promise
                    .await
                    .map_err(cap_err)?;
                let info = info.get().map_err(cap_err)?;
                if !info.has_local() {
                    return Err(io::Error::new(
                        io::ErrorKind::NotConnected,
                        "no local address",
                    ));
                }
                crate::udp::read_addr(info.get_local().map_err(cap_err)?)
            })?;
        Ok(*self.local.get_or_init(|| addr))
    }

    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        let id = self.object();
        self.ring
            .conn()
            .call(Some(CONTROL_TIMEOUT), move |ctx| async move {
                let mut req = ctx.tcp(id)?.set_no_delay_request();
                req.get().set_on(on);
                req.send().promise.await.map_err(cap_err)?;
                Ok(())
            })
    }

    /// Reads like `read`, and says whether the NIC decrypted the bytes.
    ///
    /// Before TLS RX offload switched this stream's receive side to marked
    /// chunks (see [`offload_tls`](Self::offload_tls)), and before the
    /// receive-ring position where the chunks begin is reached, it returns
    /// plain bytes with `false`, never crossing that position. From there
    /// on it returns the data of at most one chunk per call, with the
    /// chunk's decrypted flag (`true`: the NIC opened every TLS byte in
    /// it). A malformed chunk header is `InvalidData`, and so is every read
    /// after it; so is the end of the stream inside a chunk.
    ///
    /// Blocking, timeouts, non-blocking mode and the end of the stream
    /// (`Ok((0, false))`) are those of `read`. Plain `read` on a stream in
    /// chunk mode returns the chunks' data without their flags, so a reader
    /// that cares about the flags must use this.
    pub fn read_marked(&self, buf: &mut [u8]) -> io::Result<(usize, bool)> {
        self.ring.read_marked(buf)
    }

    /// Bytes the application has written into the send ring so far: the
    /// stream offset of the next byte written (what `offload_tls`'s
    /// `stream_offset` and `offload_stop`'s `replacement_offset` count in).
    pub fn write_offset(&self) -> u64 {
        self.ring.write_offset()
    }

    /// Bytes of the stream the application has read so far (chunk headers
    /// not counted): the stream offset of the next byte read (what
    /// `offload_tls`'s `stream_offset` counts in for TLS RX).
    pub fn read_offset(&self) -> u64 {
        self.ring.read_offset()
    }

    /// Bytes taken out of the receive ring so far, chunk headers included:
    /// the receive-ring position of the next byte read.
    pub fn ring_read_offset(&self) -> u64 {
        self.ring.ring_read_offset()
    }

    /// The receive-ring position where marked chunks begin, once TLS RX
    /// offload switched this stream to them.
    pub fn marked_chunks_from(&self) -> Option<u64> {
        self.ring.chunks_from()
    }

    /// SO_LINGER, as `std::net::TcpStream::set_linger` (unstable there):
    /// what dropping the stream does.
    ///
    /// - `None` (the default): the drop returns at once; what was written
    ///   still goes out, then a FIN.
    /// - `Some(Duration::ZERO)`: the drop resets the connection (RST); bytes
    ///   not yet sent are dropped and the peer's reads fail with
    ///   `ConnectionReset`.
    /// - `Some(t)`: the drop waits until the peer has acknowledged every
    ///   byte and the FIN, or until `t` passed; then the close goes on in
    ///   the background, as Linux's does. Unlike Linux (whole seconds),
    ///   `t` counts in milliseconds (rounded up); at most 120 s, else
    ///   `InvalidInput`.
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        let ms = match linger {
            Some(t) => u32::try_from(t.as_nanos().div_ceil(1_000_000)).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "linger longer than 120 s")
            })?,
            None => 0,
        };
        let id = self.object();
        self.ring
            .conn()
            .call(Some(CONTROL_TIMEOUT), move |ctx| async move {
                let mut req = ctx.tcp(id)?.set_linger_request();
                req.get().set_on(linger.is_some());
                req.get().set_timeout_ms(ms);
                req.send().promise.await.map_err(cap_err)?;
                Ok(())
            })?;
        *lock(&self.linger) = linger.map(|_| Duration::from_millis(ms.into()));
        Ok(())
    }

    /// The linger [`set_linger`](Self::set_linger) set (milliseconds).
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        Ok(*lock(&self.linger))
    }

    /// As `std`'s: `Write` sends a FIN after the bytes written (later
    /// writes are `BrokenPipe`); `Read` makes reads answer at once (what is
    /// queued, or 0), as Linux's `SHUT_RD`. A connection that was reset or
    /// has ended both ways answers `NotConnected`.
    pub fn shutdown(&self, how: StdShutdown) -> io::Result<()> {
        self.ring.conn().check()?;
        if self.ring.writes_refused() {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the connection has ended",
            ));
        }
        if matches!(how, StdShutdown::Write | StdShutdown::Both) {
            self.ring.shutdown_write()?;
        }
        if matches!(how, StdShutdown::Read | StdShutdown::Both) {
            self.ring.shutdown_read(ReadShut::NoWait);
            // netsrv hears of it too: with both directions shut, data that
            // comes after resets the connection.
            let id = self.object();
            self.ring
                .conn()
                .call(Some(CONTROL_TIMEOUT), move |ctx| async move {
                    let mut req = ctx.tcp(id)?.shutdown_request();
                    req.get().set_how(Shutdown::Read);
                    req.send().promise.await.map_err(cap_err)?;
                    Ok(())
                })?;
        }
        Ok(())
    }
}

ring_stream_api!(TcpStream, ring);

impl Drop for TcpStream {
    /// With a linger set, the close is a call: a reset must leave before
    /// the ring's end of stream could make netsrv send a FIN, and a
    /// lingering close waits for its answer. (The ring stream then lets go
    /// of the socket as always.)
    fn drop(&mut self) {
        let Some(linger) = *lock(&self.linger) else {
            return;
        };
        if !linger.is_zero() {
            // The FIN after the bytes written, as the drop would.
            let _ = self.ring.shutdown_write();
        }
        let id = self.object();
        let _ = self
            .ring
            .conn()
            .call(Some(linger + CONTROL_TIMEOUT), move |ctx| async move {
                let req = ctx.tcp(id)?.close_request();
                req.send().promise.await.map_err(cap_err)?;
                Ok(())
            });
    }
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream")
            .field("local", &self.local.get())
            .field("peer", &self.peer)
            .finish()
    }
}

/// Options for a new TCP socket (`Net::tcp_connect_with`,
/// `Net::tcp_listen_with`). Zero sizes mean netsrv's default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    pub no_delay: bool,
    /// netsrv's send buffer for this socket, in bytes.
    pub send_buffer: u32,
    /// netsrv's receive buffer (and so the advertised window), in bytes.
    pub recv_buffer: u32,
    /// How long a connect may take (default 20 s).
    pub connect_timeout: Option<Duration>,
    /// TCP keep-alive interval.
    pub keep_alive: Option<Duration>,
}

fn millis(d: Option<Duration>) -> u32 {
    d.map(|t| t.as_millis().clamp(1, u32::MAX as u128) as u32)
        .unwrap_or(0)
}

impl TcpOptions {
    fn write(&self, mut b: capnet_schema::net_capnp::socket_options::Builder<'_>) {
        b.set_no_delay(self.no_delay);
        b.set_send_buffer(self.send_buffer);
        b.set_recv_buffer(self.recv_buffer);
        b.set_connect_timeout_ms(millis(self.connect_timeout));
        b.set_keep_alive_ms(millis(self.keep_alive));
    }
}

impl Net {
    /// Opens a TCP connection; `timeout` bounds the handshake (default 20 s).
    pub fn tcp_connect(
        &self,
        addr: SocketAddr,
        timeout: Option<Duration>,
    ) -> io::Result<TcpStream> {
        let options = TcpOptions {
            connect_timeout: timeout,
            ..TcpOptions::default()
        };
        self.tcp_connect_with(addr, &options)
    }

    pub fn tcp_connect_with(
        &self,
        addr: SocketAddr,
        options: &TcpOptions,
    ) -> io::Result<TcpStream> {
        let options = *options;
        let (id, rings) = self.call(None, move |ctx| async move {
            let mut req = ctx.net().tcp_connect_request();
            crate::udp::write_addr(req.get().init_remote(), addr);
            options.write(req.get().init_options());
            let call = req.send();
            let mut rings = call.pipeline.get_socket().open_rings_request();
            let named = name_held(&ctx, rings.get());
            let rings = rings.send();
            let resp = call.promise.await.map_err(cap_err)?;
            let sock = resp.get().map_err(cap_err)?.get_socket().map_err(cap_err)?;
            let id = ctx.insert(Object::Tcp(sock));
            let answer = async move { Grant::read_tcp(rings.promise.await?.get()?) };
            Ok((id, granted(&ctx, id, Some(named), answer, cap_err).await?))
        })?;
        TcpStream::from_object(self.clone(), id, addr, rings)
    }

    pub fn tcp_listen(&self, addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
        self.tcp_listen_with(addr, backlog, &TcpOptions::default())
    }

    /// Listens; accepted connections get `options`.
    pub fn tcp_listen_with(
        &self,
        addr: SocketAddr,
        backlog: u32,
        options: &TcpOptions,
    ) -> io::Result<TcpListener> {
        let options = *options;
        let (id, local) = self.call(Some(CONTROL_TIMEOUT), move |ctx| async move {
            let mut req = ctx.net().tcp_listen_request();
            crate::udp::write_addr(req.get().init_local(), addr);
            req.get().set_backlog(backlog);
            options.write(req.get().init_options());
            let resp = req.send().promise.await.map_err(cap_err)?;
            let l = resp
                .get()
                .map_err(cap_err)?
                .get_listener()
                .map_err(cap_err)?;
            let la = l
                .local_addr_request()
                .send()
                .promise
                .await
                .map_err(cap_err)?;
            let local =
                crate::udp::read_addr(la.get().map_err(cap_err)?.get_addr().map_err(cap_err)?)?;
            Ok((ctx.insert(Object::Listener(l)), local))
        })?;
        Ok(TcpListener {
            net: self.clone(),
            id,
            local,
            acceptor: Acceptor::new(
                self.conn().clone(),
                Arc::new(move |ctx| accept_call(ctx, id).boxed_local()),
            ),
        })
    }
}

/// A TCP listener, like `std::net::TcpListener`. If the network service
/// goes away, a blocked `accept` returns at once and every call from then on
/// fails with `ConnectionReset`.
pub struct TcpListener {
    net: Net,
    id: u64,
    local: SocketAddr,
    acceptor: Acceptor,
}

impl TcpListener {
    /// Listens through the default service set, with a backlog of 128.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        Net::default_net()?.tcp_listen(resolve(addr)?, 128)
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

    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (sock, remote, rings) = self.acceptor.accept()?;
        Ok((
            TcpStream::from_object(self.net.clone(), sock, remote, rings)?,
            remote,
        ))
    }

    pub fn incoming(&self) -> impl Iterator<Item = io::Result<TcpStream>> + '_ {
        std::iter::repeat_with(move || self.accept().map(|(s, _)| s))
    }
}

/// One accept on listener `id`, with the connection's `openRings`
/// pipelined on it.
async fn accept_call(ctx: Rc<Ctx>, id: u64) -> io::Result<Accepted> {
    let call = ctx.listener(id)?.accept_request().send();
    let mut rings = call.pipeline.get_socket().open_rings_request();
    let named = name_held(&ctx, rings.get());
    let rings = rings.send();
    let resp = call.promise.await.map_err(cap_err)?;
    let r = resp.get().map_err(cap_err)?;
    let remote = crate::udp::read_addr(r.get_remote().map_err(cap_err)?)?;
    let sock = ctx.insert(Object::Tcp(r.get_socket().map_err(cap_err)?));
    let answer = async move { Grant::read_tcp(rings.promise.await?.get()?) };
    let rings = granted(&ctx, sock, Some(named), answer, cap_err).await?;
    Ok((sock, remote, rings))
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        self.net.release(self.id);
    }
}

impl std::fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpListener")
            .field("local", &self.local)
            .finish()
    }
}
