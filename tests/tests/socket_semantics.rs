//! Socket semantics applications rely on, with Linux as the oracle in the
//! same run: every scenario runs on a connected pair of libclient sockets
//! (two capnet hosts on a sim wire) and on a pair of `std::net` sockets on
//! Linux loopback, writes down what each call returned (values and
//! `io::ErrorKind`), and the two transcripts must be equal. The plain
//! Cap'n Proto methods are held to the same oracle in
//! `socket_semantics_plain.rs`.

mod semantics;

use capnet_tests::{pattern, two_hosts, Scratch};
use semantics::{
    addr, compare, read_exactly, read_text, reset_on_close, std_pair, with_timeouts, Linux, Log,
    Stream, PATIENCE, SETTLE,
};
use std::io::{self, ErrorKind};
use std::net::Shutdown;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// A stack to run scenarios on: makes connected pairs.
trait Side: Sync {
    /// (local, peer): a connection and the other end of it, both with
    /// `PATIENCE` as read and write timeouts.
    fn pair(&self) -> (Box<dyn Stream>, Box<dyn Stream>);
    /// Connects to a port nobody listens on.
    fn connect_closed_port(&self) -> io::Result<Box<dyn Stream>>;
}

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
    // Full is three tries in a row that take nothing: a stack whose send
    // buffer frees only as the peer acknowledges blocks for a moment
    // before the peer's buffers are full too.
    let mut would_block = 0;
    while would_block < 3 && total < 64 << 20 {
        pattern(seed, total, &mut buf);
        match s.write(&buf) {
            Ok(n) => {
                total += n as u64;
                would_block = 0;
            }
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
