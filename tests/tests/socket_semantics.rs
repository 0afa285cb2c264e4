//! Socket semantics applications rely on, with Linux as the oracle in the
//! same run: every scenario runs on a connected pair of libclient sockets
//! (two capnet hosts on a sim wire) and on a pair of `std::net` sockets on
//! Linux loopback, writes down what each call returned (values and
//! `io::ErrorKind`), and the two transcripts must be equal.
//!
//! The plain Cap'n Proto methods (no shared memory, as a client in another
//! language uses them) are held to the same oracle: a raw capnp client on
//! one side, a Linux socket used through the same calls on the other.

use capnet_ring::handoff::CONNECT_RPC;
use capnet_schema::errors::{capnp_to_io, SocketError};
use capnet_schema::net_capnp::{net, tcp_socket, Shutdown as CapShutdown};
use capnet_schema::transport;
use capnet_tests::{pattern, two_hosts, Scratch};
use std::fmt::Debug;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// Long enough for a segment to cross loopback or the sim wire and be
/// answered.
const SETTLE: Duration = Duration::from_millis(200);
/// What any single call may take before the scenario calls it a hang.
const PATIENCE: Duration = Duration::from_secs(5);

/// One stream socket, whichever stack serves it.
trait Stream: Send + Sync {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn write(&self, data: &[u8]) -> io::Result<usize>;
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
    fn set_linger(&self, linger: Option<Duration>) -> io::Result<()>;
    fn linger(&self) -> io::Result<Option<Duration>>;
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()>;
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()>;
    fn set_nonblocking(&self, on: bool) -> io::Result<()>;
}

impl Stream for std::net::TcpStream {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(&mut &*self, buf)
    }
    fn write(&self, data: &[u8]) -> io::Result<usize> {
        Write::write(&mut &*self, data)
    }
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        std::net::TcpStream::shutdown(self, how)
    }
    /// SO_LINGER (`std`'s own `set_linger` is not stable yet).
    fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        let l = libc::linger {
            l_onoff: linger.is_some() as libc::c_int,
            l_linger: linger.map_or(0, |d| d.as_secs() as libc::c_int),
        };
        // SAFETY: a valid socket fd and a linger struct of the size given.
        let r = unsafe {
            libc::setsockopt(
                self.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &l as *const libc::linger as *const libc::c_void,
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
    fn linger(&self) -> io::Result<Option<Duration>> {
        let mut l = libc::linger {
            l_onoff: 0,
            l_linger: 0,
        };
        let mut len = std::mem::size_of::<libc::linger>() as libc::socklen_t;
        // SAFETY: a valid socket fd and a linger struct of the size given.
        let r = unsafe {
            libc::getsockopt(
                self.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &mut l as *mut libc::linger as *mut libc::c_void,
                &mut len,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((l.l_onoff != 0).then(|| Duration::from_secs(l.l_linger as u64)))
    }
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        std::net::TcpStream::set_read_timeout(self, t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        std::net::TcpStream::set_write_timeout(self, t)
    }
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        std::net::TcpStream::set_nonblocking(self, on)
    }
}

impl Stream for libclient::TcpStream {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(&mut &*self, buf)
    }
    fn write(&self, data: &[u8]) -> io::Result<usize> {
        Write::write(&mut &*self, data)
    }
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        libclient::TcpStream::shutdown(self, how)
    }
    fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        libclient::TcpStream::set_linger(self, linger)
    }
    fn linger(&self) -> io::Result<Option<Duration>> {
        libclient::TcpStream::linger(self)
    }
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        libclient::TcpStream::set_read_timeout(self, t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        libclient::TcpStream::set_write_timeout(self, t)
    }
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        libclient::TcpStream::set_nonblocking(self, on)
    }
}

/// A stack to run scenarios on: makes connected pairs.
trait Side: Sync {
    /// (local, peer): a connection and the other end of it, both with
    /// `PATIENCE` as read and write timeouts.
    fn pair(&self) -> (Box<dyn Stream>, Box<dyn Stream>);
    /// Connects to a port nobody listens on.
    fn connect_closed_port(&self) -> io::Result<Box<dyn Stream>>;
}

fn with_timeouts(s: Box<dyn Stream>) -> Box<dyn Stream> {
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_write_timeout(Some(PATIENCE)).unwrap();
    s
}

struct Linux;

impl Side for Linux {
    fn pair(&self) -> (Box<dyn Stream>, Box<dyn Stream>) {
        let (local, peer) = std_pair();
        (
            with_timeouts(Box::new(local)),
            with_timeouts(Box::new(peer)),
        )
    }

    fn connect_closed_port(&self) -> io::Result<Box<dyn Stream>> {
        // A port that was just free: bind, learn it, let it go.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::net::TcpStream::connect(("127.0.0.1", port)).map(|s| Box::new(s) as Box<dyn Stream>)
    }
}

/// Host a (10.0.0.1) connects, host b (10.0.0.2) listens.
struct Capnet {
    a: libclient::Net,
    b: libclient::Net,
    port: AtomicU16,
}

impl Side for Capnet {
    fn pair(&self) -> (Box<dyn Stream>, Box<dyn Stream>) {
        let port = self.port.fetch_add(1, Ordering::Relaxed);
        let l = self
            .b
            .tcp_listen(addr(&format!("0.0.0.0:{port}")), 1)
            .unwrap();
        let local = self
            .a
            .tcp_connect(addr(&format!("10.0.0.2:{port}")), None)
            .unwrap();
        let (peer, _) = l.accept().unwrap();
        (
            with_timeouts(Box::new(local)),
            with_timeouts(Box::new(peer)),
        )
    }

    fn connect_closed_port(&self) -> io::Result<Box<dyn Stream>> {
        self.a
            .tcp_connect(addr("10.0.0.2:9"), None)
            .map(|s| Box::new(s) as Box<dyn Stream>)
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// What the calls of one scenario returned, in order.
#[derive(Default)]
struct Log(Vec<String>);

impl Log {
    fn step<T: Debug>(&mut self, what: &str, r: io::Result<T>) {
        let shown = match r {
            Ok(v) => format!("Ok({v:?})"),
            Err(e) => format!("Err({:?})", e.kind()),
        };
        self.0.push(format!("{what} -> {shown}"));
    }

    fn note_refused(&mut self, what: &str, outcome: String) {
        self.0.push(format!("{what} -> {outcome}"));
    }

    fn note(&mut self, what: impl Into<String>) {
        self.0.push(what.into());
    }
}

/// One read of up to `max` bytes, as text.
fn read_text(s: &dyn Stream, max: usize) -> io::Result<String> {
    let mut buf = vec![0u8; max];
    let n = s.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Reads until `n` bytes came or the stream ended.
fn read_exactly(s: &dyn Stream, n: usize) -> io::Result<String> {
    let mut got = Vec::new();
    while got.len() < n {
        let mut buf = vec![0u8; n - got.len()];
        let k = s.read(&mut buf)?;
        if k == 0 {
            break;
        }
        got.extend_from_slice(&buf[..k]);
    }
    Ok(String::from_utf8_lossy(&got).into_owned())
}

/// For a socket whose reads never wait (shut for reading): reads until
/// something other than `Ok(0)` comes, or `PATIENCE` passed.
fn poll_read(s: &dyn Stream) -> io::Result<String> {
    let end = Instant::now() + PATIENCE;
    loop {
        let r = read_text(s, 64);
        match &r {
            Ok(t) if t.is_empty() && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(10))
            }
            _ => return r,
        }
    }
}

/// Writes a byte now and then until a write fails (the peer's RST came
/// back), or `PATIENCE` passed.
fn write_until_error(s: &dyn Stream) -> io::Result<&'static str> {
    let end = Instant::now() + PATIENCE;
    while Instant::now() < end {
        s.write(b"x")?;
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok("every write succeeded")
}

/// Reads to the end; (bytes, whether they are `pattern(seed)`).
fn read_pattern_to_end(s: &dyn Stream, seed: u64) -> io::Result<(u64, bool)> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut want = vec![0u8; 64 * 1024];
    let (mut total, mut same) = (0u64, true);
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok((total, same));
        }
        pattern(seed, total, &mut want[..n]);
        same &= buf[..n] == want[..n];
        total += n as u64;
    }
}

/// Writes `pattern(seed)` without waiting until the socket would block;
/// returns the bytes written.
fn fill_without_blocking(s: &dyn Stream, seed: u64) -> u64 {
    s.set_nonblocking(true).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    // Give a stack that takes the first bytes in slowly a few tries.
    let mut would_block = 0;
    while would_block < 3 && total < 64 << 20 {
        pattern(seed, total, &mut buf);
        match s.write(&buf) {
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                would_block += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("filling: {e}"),
        }
    }
    s.set_nonblocking(false).unwrap();
    total
}

// ---- the scenarios ----

/// Local shutdown(Write): the peer reads what came then EOF; the local side
/// still reads what the peer sends; writing again is a broken pipe.
fn shutdown_write(side: &dyn Side, log: &mut Log) {
    let (local, peer) = side.pair();
    log.step("local write ping", local.write(b"ping"));
    log.step("local shutdown(Write)", local.shutdown(Shutdown::Write));
    log.step("peer reads", read_exactly(&*peer, 4));
    log.step("peer reads again", read_text(&*peer, 64));
    log.step("peer write pong", peer.write(b"pong"));
    log.step("local reads", read_exactly(&*local, 4));
    log.step("local write after shutdown", local.write(b"x"));
    log.step(
        "local shutdown(Write) again",
        local.shutdown(Shutdown::Write),
    );
    log.step("peer shutdown(Write)", peer.shutdown(Shutdown::Write));
    log.step("local reads to EOF", read_text(&*local, 64));
}

/// Local shutdown(Read): reads answer at once, 0 when nothing is there;
/// bytes queued before and sent after are still handed out (Linux keeps
/// receiving); the write side and the peer carry on.
fn shutdown_read(side: &dyn Side, log: &mut Log) {
    let (local, peer) = side.pair();
    log.step("peer write early", peer.write(b"early"));
    std::thread::sleep(SETTLE);
    log.step("local shutdown(Read)", local.shutdown(Shutdown::Read));
    log.step("local reads queued bytes", poll_read(&*local));
    log.step("local reads, nothing queued", read_text(&*local, 64));
    log.step("local write", local.write(b"to-peer"));
    log.step("peer reads", read_exactly(&*peer, 7));
    log.step("peer write late", peer.write(b"late"));
    log.step("local reads (polling)", poll_read(&*local));
    log.step("peer shutdown(Write)", peer.shutdown(Shutdown::Write));
    std::thread::sleep(SETTLE);
    log.step("local reads after peer EOF", read_text(&*local, 64));
    log.step("local write still", local.write(b"bye"));
    log.step("peer reads", read_exactly(&*peer, 3));
}

/// shutdown(Both): reads answer 0, writes are a broken pipe, the peer reads
/// EOF. New data from the peer then resets the connection (Linux
/// TCPAbortOnData: nobody will ever read it).
fn shutdown_both(side: &dyn Side, log: &mut Log) {
    let (local, peer) = side.pair();
    log.step("local shutdown(Both)", local.shutdown(Shutdown::Both));
    log.step("local read", read_text(&*local, 64));
    log.step("local write", local.write(b"x"));
    log.step("peer reads", read_text(&*peer, 64));
    log.step("peer write", peer.write(b"late"));
    log.step("local reads (polling)", poll_read(&*local));
    log.step("local reads again", read_text(&*local, 64));
    log.step("peer writes until one fails", write_until_error(&*peer));
}

/// Close with a lot still queued: the peer gets every byte, then EOF.
fn close_with_unsent_data(side: &dyn Side, log: &mut Log) {
    const BYTES: u64 = 4 << 20;
    let (local, peer) = side.pair();
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut sent = 0u64;
            while sent < BYTES {
                pattern(7, sent, &mut buf);
                let n = local.write(&buf[..(BYTES - sent).min(buf.len() as u64) as usize])?;
                sent += n as u64;
            }
            drop(local);
            Ok::<_, io::Error>(sent)
        });
        // The peer starts reading late, so that the close finds data queued.
        std::thread::sleep(SETTLE);
        log.step("peer reads to EOF", read_pattern_to_end(&*peer, 7));
        log.step("local wrote, then closed", writer.join().unwrap());
    });
}

/// Closing with bytes received and never read resets the connection, so
/// the peer learns they were lost (RFC 2525 2.17; Linux `tcp_close`): its
/// next read says so once, then reads are EOF and writes a broken pipe.
fn close_with_unread_data(side: &dyn Side, log: &mut Log) {
    let (local, peer) = side.pair();
    log.step("peer write", peer.write(b"never read"));
    std::thread::sleep(SETTLE);
    drop(local);
    std::thread::sleep(SETTLE);
    log.step("peer read", read_text(&*peer, 64));
    log.step("peer read again", read_text(&*peer, 64));
    log.step("peer write", peer.write(b"x"));
}

/// SO_LINGER 0: close resets the connection; the peer's read says so once,
/// then reads EOF, and writes are a broken pipe.
fn linger_zero(side: &dyn Side, log: &mut Log) {
    let (local, peer) = side.pair();
    log.step("local linger (default)", local.linger());
    log.step(
        "local set_linger(0)",
        local.set_linger(Some(Duration::ZERO)),
    );
    log.step("local linger", local.linger());
    log.step("local write", local.write(b"hello"));
    log.step("peer reads", read_exactly(&*peer, 5));
    drop(local);
    log.step("peer read after the close", read_text(&*peer, 64));
    log.step("peer read again", read_text(&*peer, 64));
    log.step("peer write", peer.write(b"x"));
}

/// SO_LINGER with a timeout and data the peer does not take: close waits
/// the timeout, then the connection closes gracefully in the background.
fn linger_timeout_expires(side: &dyn Side, log: &mut Log) {
    let (local, peer) = side.pair();
    let queued = fill_without_blocking(&*local, 9);
    log.step(
        "local set_linger(1 s)",
        local.set_linger(Some(Duration::from_secs(1))),
    );
    log.step("local linger", local.linger());
    let began = Instant::now();
    drop(local);
    let took = began.elapsed();
    log.note(if took < Duration::from_millis(900) {
        format!("close returned early, after {took:?}")
    } else if took < Duration::from_millis(2500) {
        "close waited for the linger timeout".to_string()
    } else {
        format!("close took {took:?}")
    });
    peer.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let got = read_pattern_to_end(&*peer, 9);
    log.step(
        "peer reads to EOF: every byte queued, in order",
        got.map(|(n, same)| n == queued && same),
    );
}

/// SO_LINGER with a timeout and a peer that reads: close returns once the
/// peer has everything, well before the timeout.
fn linger_timeout_met(side: &dyn Side, log: &mut Log) {
    const BYTES: u64 = 256 << 10;
    let (local, peer) = side.pair();
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| read_pattern_to_end(&*peer, 3));
        let mut buf = vec![0u8; BYTES as usize];
        pattern(3, 0, &mut buf);
        let mut sent = 0;
        while sent < buf.len() {
            sent += local.write(&buf[sent..]).unwrap();
        }
        log.step(
            "local set_linger(5 s)",
            local.set_linger(Some(Duration::from_secs(5))),
        );
        let began = Instant::now();
        drop(local);
        let took = began.elapsed();
        log.note(if took < Duration::from_secs(4) {
            "close returned before the timeout".to_string()
        } else {
            format!("close took {took:?}")
        });
        log.step("peer reads to EOF", reader.join().unwrap());
    });
}

/// Sets SO_LINGER 0, so that dropping `s` resets its connection; false
/// (and noted) if the stack cannot.
fn reset_on_close(s: &dyn Stream, log: &mut Log) -> bool {
    match s.set_linger(Some(Duration::ZERO)) {
        Ok(()) => true,
        Err(e) => {
            log.note(format!(
                "peer set_linger(0) -> Err({:?}): scenario not run",
                e.kind()
            ));
            false
        }
    }
}

/// The peer resets: the first call says so, later reads are EOF and later
/// writes a broken pipe; shutdown is `NotConnected`.
fn peer_reset_then_read(side: &dyn Side, log: &mut Log) {
    let (local, peer) = side.pair();
    if !reset_on_close(&*peer, log) {
        return;
    }
    drop(peer);
    log.step("local read", read_text(&*local, 64));
    log.step("local read again", read_text(&*local, 64));
    log.step("local write", local.write(b"x"));
    log.step("local write again", local.write(b"x"));
    log.step("local shutdown(Write)", local.shutdown(Shutdown::Write));
}

/// As above, with a write as the first call after the reset.
fn peer_reset_then_write(side: &dyn Side, log: &mut Log) {
    let (local, peer) = side.pair();
    if !reset_on_close(&*peer, log) {
        return;
    }
    drop(peer);
    std::thread::sleep(SETTLE);
    log.step("local write", local.write(b"x"));
    log.step("local read", read_text(&*local, 64));
    log.step("local write again", local.write(b"x"));
}

/// Bytes that arrived before the reset are read first, then the reset.
fn peer_reset_after_data(side: &dyn Side, log: &mut Log) {
    let (local, peer) = side.pair();
    log.step("peer write", peer.write(b"data"));
    std::thread::sleep(SETTLE);
    if !reset_on_close(&*peer, log) {
        return;
    }
    drop(peer);
    std::thread::sleep(SETTLE);
    log.step("local read", read_text(&*local, 64));
    log.step("local read again", read_text(&*local, 64));
    log.step("local read once more", read_text(&*local, 64));
}

/// The peer closed: reads are EOF; a write still succeeds (nobody has said
/// otherwise yet), its answer is a reset, and writes after that are a
/// broken pipe (the peer had read the FIN: EPIPE, not ECONNRESET).
fn write_after_peer_closed(side: &dyn Side, log: &mut Log) {
    let (local, peer) = side.pair();
    drop(peer);
    log.step("local read", read_text(&*local, 64));
    log.step("local write", local.write(b"x"));
    log.step("local writes until one fails", write_until_error(&*local));
    log.step("local read", read_text(&*local, 64));
}

fn connect_refused(side: &dyn Side, log: &mut Log) {
    log.step(
        "connect to a closed port",
        side.connect_closed_port().map(|_| ()),
    );
}

type Scenario = fn(&dyn Side, &mut Log);

const SCENARIOS: &[(&str, Scenario)] = &[
    ("shutdown_write", shutdown_write),
    ("shutdown_read", shutdown_read),
    ("shutdown_both", shutdown_both),
    ("close_with_unsent_data", close_with_unsent_data),
    ("close_with_unread_data", close_with_unread_data),
    ("linger_zero", linger_zero),
    ("linger_timeout_expires", linger_timeout_expires),
    ("linger_timeout_met", linger_timeout_met),
    ("peer_reset_then_read", peer_reset_then_read),
    ("peer_reset_then_write", peer_reset_then_write),
    ("peer_reset_after_data", peer_reset_after_data),
    ("write_after_peer_closed", write_after_peer_closed),
    ("connect_refused", connect_refused),
];

/// Runs each scenario on both stacks at once and compares the transcripts;
/// prints all of them, fails on any difference.
fn compare(pairs: Vec<(&str, Log, Log)>) {
    let mut differ = Vec::new();
    for (name, linux, capnet) in &pairs {
        eprintln!("== {name}");
        let n = linux.0.len().max(capnet.0.len());
        for i in 0..n {
            let l = linux.0.get(i).map_or("(nothing)", String::as_str);
            let c = capnet.0.get(i).map_or("(nothing)", String::as_str);
            let mark = if l == c { "  " } else { "!!" };
            eprintln!("{mark} linux:  {l}\n{mark} capnet: {c}");
        }
        if linux.0 != capnet.0 {
            differ.push(*name);
        }
    }
    assert!(differ.is_empty(), "capnet differs from Linux in {differ:?}");
}

#[test]
fn libclient_sockets_behave_as_linux_sockets() {
    let scratch = Scratch::new("semantics");
    let (a, b) = two_hosts(&scratch, "");
    let capnet = Capnet {
        a: a.net().unwrap(),
        b: b.net().unwrap(),
        port: AtomicU16::new(7000),
    };
    let pairs = std::thread::scope(|scope| {
        let runs: Vec<_> = SCENARIOS
            .iter()
            .map(|&(name, scenario)| {
                let linux = scope.spawn(move || {
                    let mut log = Log::default();
                    scenario(&Linux, &mut log);
                    log
                });
                let mut log = Log::default();
                scenario(&capnet, &mut log);
                (name, linux.join().unwrap(), log)
            })
            .collect();
        runs
    });
    compare(pairs);
}

// ---- the plain capnp methods ----

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

fn std_pair() -> (std::net::TcpStream, std::net::TcpStream) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let local = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (peer, _) = l.accept().unwrap();
    (local, peer)
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
