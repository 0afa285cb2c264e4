//! The plain Cap'n Proto socket methods (no shared memory, as a client in
//! another language uses them) with Linux as the oracle in the same run: a
//! raw capnp client on one side, a Linux socket used through the same calls
//! (raw file descriptor calls) on the other; the transcripts must be equal.

mod semantics;

use capnet_ring::handoff::CONNECT_RPC;
use capnet_schema::errors::{capnp_to_io, SocketError};
use capnet_schema::net_capnp::{net, tcp_socket, Shutdown as CapShutdown};
use capnet_schema::transport;
use capnet_tests::{two_hosts, Scratch};
use semantics::{
    addr, compare, read_exactly, read_text, reset_on_close, std_pair, with_timeouts, Linux, Log,
    Stream, PATIENCE, SETTLE,
};
use std::fmt::Debug;
use std::io::{self, ErrorKind, Write};
use std::net::Shutdown;
use std::os::fd::IntoRawFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// The calls of the plain `TcpSocket` interface, or of a Linux socket fd
/// used the same way. `close` keeps the object: later calls must fail.
trait Plain {
    async fn read(&self, max: u32) -> io::Result<String>;
    async fn write(&self, data: &[u8]) -> io::Result<u32>;
    async fn shutdown(&self, how: Shutdown) -> io::Result<()>;
    async fn close(&self) -> io::Result<()>;
}

/// A Linux socket called through raw file descriptor calls, so that a
/// call after `close` reaches the kernel (EBADF). The fd is moved far up
/// first: nothing else in the process gets that number back meanwhile.
struct LinuxFd(libc::c_int, std::cell::Cell<bool>);

impl Drop for LinuxFd {
    fn drop(&mut self) {
        if !self.1.get() {
            // SAFETY: our fd, not closed yet.
            unsafe { libc::close(self.0) };
        }
    }
}

impl LinuxFd {
    fn new(s: std::net::TcpStream) -> LinuxFd {
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let low = s.into_raw_fd();
        // SAFETY: dup of a valid fd to a free number >= 900, then the old
        // number is closed; the new one is owned by this struct.
        let fd = unsafe {
            let fd = libc::fcntl(low, libc::F_DUPFD_CLOEXEC, 900);
            libc::close(low);
            fd
        };
        assert!(fd >= 900);
        LinuxFd(fd, std::cell::Cell::new(false))
    }
}

fn os_result(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

impl Plain for LinuxFd {
    async fn read(&self, max: u32) -> io::Result<String> {
        let mut buf = vec![0u8; max as usize];
        // SAFETY: reading into a buffer of the length given.
        let n = os_result(unsafe { libc::read(self.0, buf.as_mut_ptr().cast(), buf.len()) })?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
    async fn write(&self, data: &[u8]) -> io::Result<u32> {
        // SAFETY: sending from a buffer of the length given; MSG_NOSIGNAL
        // makes a broken pipe an error instead of a signal.
        let n = os_result(unsafe {
            libc::send(self.0, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL)
        })?;
        Ok(n as u32)
    }
    async fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let how = match how {
            Shutdown::Read => libc::SHUT_RD,
            Shutdown::Write => libc::SHUT_WR,
            Shutdown::Both => libc::SHUT_RDWR,
        };
        // SAFETY: shutdown on an fd number.
        os_result(unsafe { libc::shutdown(self.0, how) } as isize).map(|_| ())
    }
    async fn close(&self) -> io::Result<()> {
        self.1.set(true);
        // SAFETY: closes our fd; later calls on the number fail with EBADF.
        os_result(unsafe { libc::close(self.0) } as isize).map(|_| ())
    }
}

/// A `TcpSocket` of netsrv, called with plain capnp.
struct CapSocket(tcp_socket::Client);

/// A plain capnp call's answer as a socket user sees it (a hang is
/// `TimedOut`).
async fn answer<T>(
    call: impl std::future::Future<Output = Result<T, capnp::Error>>,
) -> io::Result<T> {
    match tokio::time::timeout(PATIENCE, call).await {
        Ok(r) => r.map_err(capnp_to_io),
        Err(_) => Err(io::Error::new(ErrorKind::TimedOut, "the call hangs")),
    }
}

impl Plain for CapSocket {
    async fn read(&self, max: u32) -> io::Result<String> {
        let mut req = self.0.read_request();
        req.get().set_max(max);
        answer(async {
            let r = req.send().promise.await?;
            let data = r.get()?.get_data()?;
            Ok(String::from_utf8_lossy(data).into_owned())
        })
        .await
    }
    async fn write(&self, data: &[u8]) -> io::Result<u32> {
        let mut req = self.0.write_request();
        req.get().set_data(data);
        answer(async { Ok(req.send().promise.await?.get()?.get_written()) }).await
    }
    async fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let mut req = self.0.shutdown_request();
        req.get().set_how(match how {
            Shutdown::Read => CapShutdown::Read,
            Shutdown::Write => CapShutdown::Write,
            Shutdown::Both => CapShutdown::Both,
        });
        answer(async { req.send().promise.await.map(|_| ()) }).await
    }
    async fn close(&self) -> io::Result<()> {
        let req = self.0.close_request();
        answer(async { req.send().promise.await.map(|_| ()) }).await
    }
}

/// What a plain call after `close` answered. Both stacks must refuse it;
/// the kinds cannot agree (Linux says EBADF, which has no `ErrorKind`), so
/// each is held to its own: EBADF, and capnet's error word `closed`.
fn refused<T: Debug>(r: io::Result<T>, capnet: bool) -> String {
    match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(e)
            if capnet
                && SocketError::from_description(&e.to_string()) == Some(SocketError::Closed) =>
        {
            "refused".into()
        }
        Err(e) if !capnet && e.raw_os_error() == Some(libc::EBADF) => "refused".into(),
        Err(e) => format!("Err({:?}: {e})", e.kind()),
    }
}

/// Makes connected pairs for the plain scenarios: a socket called the
/// plain way, and its peer.
trait PlainSide {
    type Socket: Plain;
    const CAPNET: bool;
    async fn pair(&self) -> (Self::Socket, Box<dyn Stream>);
}

impl PlainSide for Linux {
    type Socket = LinuxFd;
    const CAPNET: bool = false;
    async fn pair(&self) -> (LinuxFd, Box<dyn Stream>) {
        let (local, peer) = std_pair();
        (LinuxFd::new(local), with_timeouts(Box::new(peer)))
    }
}

/// Host a's `Net` with plain capnp; peers accepted on host b with
/// libclient.
struct PlainCapnet {
    net: net::Client,
    b: libclient::Net,
    port: AtomicU16,
}

impl PlainSide for PlainCapnet {
    type Socket = CapSocket;
    const CAPNET: bool = true;
    async fn pair(&self) -> (CapSocket, Box<dyn Stream>) {
        let port = self.port.fetch_add(1, Ordering::Relaxed);
        let l = self
            .b
            .tcp_listen(addr(&format!("0.0.0.0:{port}")), 1)
            .unwrap();
        let accept = std::thread::spawn(move || l.accept().map(|(s, _)| s));
        let mut req = self.net.tcp_connect_request();
        let mut remote = req.get().init_remote();
        remote.set_ip(&[10, 0, 0, 2]);
        remote.set_port(port);
        let resp = req.send().promise.await.unwrap();
        let socket = resp.get().unwrap().get_socket().unwrap();
        let peer = accept.join().unwrap().unwrap();
        (CapSocket(socket), with_timeouts(Box::new(peer)))
    }
}

async fn plain_scenarios<P: PlainSide>(side: &P) -> Vec<(&'static str, Log)> {
    let mut out = Vec::new();

    // read with a maximum of 0: nothing, at once, even with bytes queued.
    let mut log = Log::default();
    let (s, peer) = side.pair().await;
    log.step("peer write abc", peer.write(b"abc"));
    tokio::time::sleep(SETTLE).await;
    log.step("read max 0", s.read(0).await);
    log.step("read max 64", s.read(64).await);
    out.push(("plain_read_max_zero", log));

    // shutdown(Read): reads answer at once; queued and later bytes still
    // come; writing goes on.
    let mut log = Log::default();
    let (s, peer) = side.pair().await;
    log.step("peer write early", peer.write(b"early"));
    tokio::time::sleep(SETTLE).await;
    log.step("shutdown(Read)", s.shutdown(Shutdown::Read).await);
    log.step("read queued bytes", plain_poll_read(&s).await);
    log.step("read, nothing queued", s.read(64).await);
    log.step("peer write late", peer.write(b"late"));
    log.step("read later bytes", plain_poll_read(&s).await);
    log.step("write", s.write(b"x").await);
    log.step("peer reads", read_text(&*peer, 64));
    out.push(("plain_shutdown_read", log));

    // shutdown(Write): the peer reads EOF, writing again is a broken pipe,
    // reading goes on.
    let mut log = Log::default();
    let (s, peer) = side.pair().await;
    log.step("shutdown(Write)", s.shutdown(Shutdown::Write).await);
    log.step("peer reads", read_text(&*peer, 64));
    log.step("write after shutdown(Write)", s.write(b"x").await);
    log.step("peer write pong", peer.write(b"pong"));
    log.step("read", s.read(64).await);
    out.push(("plain_shutdown_write", log));

    // close: the peer gets what was written, then EOF; every later call
    // is refused.
    let mut log = Log::default();
    let (s, peer) = side.pair().await;
    log.step("write", s.write(b"bye").await);
    log.step("close", s.close().await);
    log.step("peer reads", read_exactly(&*peer, 3));
    log.step("peer reads again", read_text(&*peer, 64));
    log.note_refused("read after close", refused(s.read(64).await, P::CAPNET));
    log.note_refused(
        "read max 0 after close",
        refused(s.read(0).await, P::CAPNET),
    );
    log.note_refused("write after close", refused(s.write(b"x").await, P::CAPNET));
    log.note_refused(
        "shutdown after close",
        refused(s.shutdown(Shutdown::Write).await, P::CAPNET),
    );
    log.note_refused("close again", refused(s.close().await, P::CAPNET));
    out.push(("plain_close", log));

    // close with bytes unread: a reset, which the peer's next call reports.
    let mut log = Log::default();
    let (s, peer) = side.pair().await;
    log.step("peer write", peer.write(b"never read"));
    tokio::time::sleep(SETTLE).await;
    log.step("close", s.close().await);
    tokio::time::sleep(SETTLE).await;
    log.step("peer reads", read_text(&*peer, 64));
    log.step("peer writes", peer.write(b"x"));
    out.push(("plain_close_unread", log));

    // A reset: the first call says so; later reads are EOF, later writes a
    // broken pipe.
    let mut log = Log::default();
    let (s, peer) = side.pair().await;
    if reset_on_close(&*peer, &mut log) {
        drop(peer);
        tokio::time::sleep(SETTLE).await;
        log.step("read", s.read(64).await);
        log.step("read again", s.read(64).await);
        log.step("write", s.write(b"x").await);
    }
    out.push(("plain_peer_reset", log));

    out
}

/// `poll_read` for the plain calls.
async fn plain_poll_read(s: &impl Plain) -> io::Result<String> {
    let end = Instant::now() + PATIENCE;
    loop {
        let r = s.read(64).await;
        match &r {
            Ok(t) if t.is_empty() && Instant::now() < end => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            _ => return r,
        }
    }
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&rt, f)
}

#[test]
fn plain_capnp_sockets_behave_as_linux_sockets() {
    let scratch = Scratch::new("semantics-plain");
    let (a, b) = two_hosts(&scratch, "");
    let socket = a.socket.clone();
    let b_net = b.net().unwrap();
    let linux = std::thread::spawn(|| block_on(plain_scenarios(&Linux)));
    let capnet = block_on(async move {
        let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        s.write_all(&[CONNECT_RPC]).unwrap();
        s.set_nonblocking(true).unwrap();
        let net: net::Client = transport::connect(tokio::net::UnixStream::from_std(s).unwrap());
        let side = PlainCapnet {
            net,
            b: b_net,
            port: AtomicU16::new(7500),
        };
        plain_scenarios(&side).await
    });
    let linux = linux.join().unwrap();
    compare(
        linux
            .into_iter()
            .zip(capnet)
            .map(|((name, l), (_, c))| (name, l, c))
            .collect(),
    );
}
