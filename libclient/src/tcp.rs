//! TCP streams and listeners.

use crate::bell::Bell;
use crate::conn::{cap_err, Net, Object};
use capnet_ring::{ByteReader, ByteWriter, Doorbell, RingError, SocketRings};
use capnet_schema::errors::SocketError;
use capnet_schema::net_capnp::Shutdown;
use std::io::{self, Read, Write};
use std::net::{Shutdown as StdShutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

fn ring_err(e: RingError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("socket ring: {e}"))
}

fn socket_error(code: u32) -> io::Error {
    match SocketError::from_code(code) {
        Some(e) => io::Error::new(e.io_kind(), format!("connection {e}")),
        None => io::Error::other(format!("connection failed (code {code})")),
    }
}

pub(crate) fn resolve(addr: impl ToSocketAddrs) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to"))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now() + t)
}

/// A TCP connection, like `std::net::TcpStream`.
///
/// If the network service goes away (netsrv exits or is killed), sleepers
/// in `read` and `write` wake at once and every operation from then on
/// fails with `ConnectionReset`, like a connection reset by its peer, with
/// one difference: bytes netsrv had already put in the stream's receive ring
/// are still delivered first. The fd of `as_raw_fd` turns readable, so event
/// loops wake up too.
pub struct TcpStream {
    net: Net,
    id: u64,
    up: Mutex<ByteWriter>,
    down: Mutex<ByteReader>,
    bell: Arc<Bell>,
    wake_peer: Doorbell,
    local: OnceLock<SocketAddr>,
    peer: SocketAddr,
    read_timeout: Mutex<Option<Duration>>,
    write_timeout: Mutex<Option<Duration>>,
    nonblocking: AtomicBool,
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
    /// mode.
    pub(crate) fn from_object(net: Net, id: u64, peer: SocketAddr) -> io::Result<TcpStream> {
        let end = match Self::open_rings(&net, id) {
            Ok(end) => end,
            Err(e) => {
                // Nobody will hold this capability: let netsrv close it.
                net.release(id);
                return Err(e);
            }
        };
        let bell = Arc::new(Bell::new(end.wake_me));
        net.watch_bell(id, &bell);
        Ok(TcpStream {
            net,
            id,
            up: Mutex::new(end.up),
            down: Mutex::new(end.down),
            bell,
            wake_peer: end.wake_peer,
            local: OnceLock::new(),
            peer,
            read_timeout: Mutex::new(None),
            write_timeout: Mutex::new(None),
            nonblocking: AtomicBool::new(false),
        })
    }

    fn open_rings(net: &Net, id: u64) -> io::Result<capnet_ring::ClientEnd> {
        let (token, capacity) = net.call(Some(Duration::from_secs(10)), move |ctx| async move {
            let resp = ctx
                .tcp(id)?
                .open_rings_request()
                .send()
                .promise
                .await
                .map_err(cap_err)?;
            let g = resp.get().map_err(cap_err)?.get_grant().map_err(cap_err)?;
            Ok((g.get_token().map_err(cap_err)?.to_vec(), g.get_ring_bytes()))
        })?;
        let fds = net.redeem(&token, 3).map_err(|e| match net.check() {
            Err(gone) => gone,
            Ok(()) => e,
        })?;
        SocketRings::attach(fds, capacity).map_err(ring_err)
    }

    pub(crate) fn net(&self) -> &Net {
        &self.net
    }

    /// The socket's number in the connection's table.
    pub(crate) fn object(&self) -> u64 {
        self.id
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer)
    }

    /// Asked of netsrv on first use (connect and accept do not need it).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        if let Some(a) = self.local.get() {
            return Ok(*a);
        }
        let id = self.id;
        let addr = self
            .net
            .call(Some(Duration::from_secs(10)), move |ctx| async move {
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

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        check_timeout(t)?;
        *lock(&self.read_timeout) = t;
        Ok(())
    }

    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        check_timeout(t)?;
        *lock(&self.write_timeout) = t;
        Ok(())
    }

    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(*lock(&self.read_timeout))
    }

    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(*lock(&self.write_timeout))
    }

    /// In non-blocking mode, `WouldBlock` means a wakeup was requested: the
    /// fd from `as_raw_fd` turns readable when the socket may have changed.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.nonblocking.store(on, Ordering::Relaxed);
        Ok(())
    }

    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        let id = self.id;
        self.net
            .call(Some(Duration::from_secs(10)), move |ctx| async move {
                let mut req = ctx.tcp(id)?.set_no_delay_request();
                req.get().set_on(on);
                req.send().promise.await.map_err(cap_err)?;
                Ok(())
            })
    }

    pub fn shutdown(&self, how: StdShutdown) -> io::Result<()> {
        self.net.check()?;
        if matches!(how, StdShutdown::Write | StdShutdown::Both) {
            lock(&self.up).close();
            self.wake_peer.ring();
        }
        if matches!(how, StdShutdown::Read | StdShutdown::Both) {
            let id = self.id;
            self.net
                .call(Some(Duration::from_secs(10)), move |ctx| async move {
                    let mut req = ctx.tcp(id)?.shutdown_request();
                    req.get().set_how(Shutdown::Read);
                    req.send().promise.await.map_err(cap_err)?;
                    Ok(())
                })?;
        }
        Ok(())
    }

    fn wait(&self, ticket: crate::bell::Ticket, deadline: Option<Instant>) -> io::Result<()> {
        if self.nonblocking.load(Ordering::Relaxed) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if self.bell.wait(ticket, deadline)? {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
        }
    }

    fn read_inner(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let deadline = deadline(*lock(&self.read_timeout));
        loop {
            let ticket = self.bell.ticket();
            {
                let mut down = lock(&self.down);
                let n = down.read(buf).map_err(ring_err)?;
                if n > 0 {
                    if down.signal_wanted() {
                        self.wake_peer.ring();
                    }
                    return Ok(n);
                }
                // What netsrv delivered before it went away was read above.
                self.net.check()?;
                if let Some(code) = down.error() {
                    return Err(socket_error(code));
                }
                if down.eof() {
                    return Ok(0);
                }
                down.request_signal();
                if down.available().map_err(ring_err)? > 0 || down.eof() || down.error().is_some() {
                    down.cancel_signal();
                    continue;
                }
            }
            self.wait(ticket, deadline)?;
        }
    }

    fn write_inner(&self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let deadline = deadline(*lock(&self.write_timeout));
        loop {
            let ticket = self.bell.ticket();
            // Checked after the ticket: the doorbell rung when the service
            // goes away then ends the wait below.
            self.net.check()?;
            {
                let mut up = lock(&self.up);
                if up.reader_closed() {
                    return Err(match lock(&self.down).error() {
                        Some(code) => socket_error(code),
                        None => io::Error::new(io::ErrorKind::BrokenPipe, "connection closed"),
                    });
                }
                let n = up.write(data).map_err(ring_err)?;
                if n > 0 {
                    if up.signal_wanted() {
                        self.wake_peer.ring();
                    }
                    return Ok(n);
                }
                up.request_signal();
                if up.space().map_err(ring_err)? > 0 || up.reader_closed() {
                    up.cancel_signal();
                    continue;
                }
            }
            self.wait(ticket, deadline)?;
        }
    }
}

fn check_timeout(t: Option<Duration>) -> io::Result<()> {
    if t == Some(Duration::ZERO) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "zero timeout"));
    }
    Ok(())
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_inner(buf)
    }
}

impl Read for &TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_inner(buf)
    }
}

impl Write for TcpStream {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.write_inner(data)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.net.check()
    }
}

impl Write for &TcpStream {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.write_inner(data)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.net.check()
    }
}

impl AsRawFd for TcpStream {
    /// The eventfd that turns readable when netsrv answers a wakeup request.
    fn as_raw_fd(&self) -> RawFd {
        self.bell.doorbell.as_raw_fd()
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        // Bytes already written still go out, then FIN.
        lock(&self.up).close();
        lock(&self.down).close();
        self.wake_peer.ring();
        self.net.unwatch_bell(self.id);
        self.net.release(self.id);
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
        let id = self.call(None, move |ctx| async move {
            let mut req = ctx.net.tcp_connect_request();
            crate::udp::write_addr(req.get().init_remote(), addr);
            options.write(req.get().init_options());
            let resp = req.send().promise.await.map_err(cap_err)?;
            let sock = resp.get().map_err(cap_err)?.get_socket().map_err(cap_err)?;
            Ok(ctx.insert(Object::Tcp(sock)))
        })?;
        TcpStream::from_object(self.clone(), id, addr)
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
        let (id, local) = self.call(Some(Duration::from_secs(10)), move |ctx| async move {
            let mut req = ctx.net.tcp_listen_request();
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
            nonblocking: AtomicBool::new(false),
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
    nonblocking: AtomicBool,
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
    /// without a connection.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.nonblocking.store(on, Ordering::Relaxed);
        Ok(())
    }

    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let id = self.id;
        let timeout = self
            .nonblocking
            .load(Ordering::Relaxed)
            .then_some(Duration::from_millis(1));
        let accepted = self.net.call(timeout, move |ctx| async move {
            let resp = ctx
                .listener(id)?
                .accept_request()
                .send()
                .promise
                .await
                .map_err(cap_err)?;
            let r = resp.get().map_err(cap_err)?;
            let remote = crate::udp::read_addr(r.get_remote().map_err(cap_err)?)?;
            let sock = r.get_socket().map_err(cap_err)?;
            Ok((ctx.insert(Object::Tcp(sock)), remote))
        });
        let (sock, remote) = match accepted {
            Err(e) if e.kind() == io::ErrorKind::TimedOut && timeout.is_some() => {
                return Err(io::ErrorKind::WouldBlock.into())
            }
            other => other?,
        };
        Ok((
            TcpStream::from_object(self.net.clone(), sock, remote)?,
            remote,
        ))
    }

    pub fn incoming(&self) -> impl Iterator<Item = io::Result<TcpStream>> + '_ {
        std::iter::repeat_with(move || self.accept().map(|(s, _)| s))
    }
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
