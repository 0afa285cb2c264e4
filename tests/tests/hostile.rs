//! Bad input never takes the service down: garbage on the capnp socket,
//! corrupted socket rings, junk frames on the wire. Each costs only the
//! offender's own session, and is counted.

use capnet_ring::handoff::{self, Token, CONNECT_HANDOFF, CONNECT_RPC};
use capnet_schema::net_capnp::net;
use capnet_schema::transport;
use capnet_tests::{
    cli_ok, good_transfer, receive_all, scribble, send_pattern, status_counter, two_hosts, Scratch,
};
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn garbage_on_the_capnp_socket_ends_only_that_connection() {
    let scratch = Scratch::new("garbage");
    let (a, b) = two_hosts(&scratch, "");
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    let good = good_transfer(&na, &nb, 5100, 16 << 20).0;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for round in 0..20 {
        let mut s = UnixStream::connect(&a.socket).unwrap();
        let mut junk = vec![0u8; rng.gen_range(1..4096)];
        rng.fill(&mut junk[..]);
        // Half the rounds announce capnp first, half send raw junk.
        if round % 2 == 0 {
            s.write_all(&[CONNECT_RPC]).unwrap();
        }
        let _ = s.write_all(&junk);
        // A handoff connection with bogus tokens.
        let h = UnixStream::connect(&a.socket).unwrap();
        (&h).write_all(&[CONNECT_HANDOFF]).unwrap();
        let err = handoff::redeem(h.as_fd(), &Token([round as u8; 16]), 3).unwrap_err();
        assert!(!err.to_string().is_empty());
    }
    good.join().unwrap();
    // netsrv is still serving new clients.
    let status = cli_ok(&a, &["status"]);
    assert!(status.contains("netsrv"), "{status}");
    let _again = a
        .net()
        .unwrap()
        .tcp_listen(addr("0.0.0.0:5101"), 1)
        .unwrap();
}

/// Opens a TCP connection with raw capnp, takes its rings, and returns the
/// ring fds: [region, wake_server, wake_client]. Keeps the capnp connection
/// alive on a background thread until the returned sender is dropped.
fn raw_ring_socket(
    socket: &Path,
    remote: SocketAddr,
) -> (Vec<OwnedFd>, std::sync::mpsc::Sender<()>) {
    let socket = socket.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let mut s = UnixStream::connect(&socket).unwrap();
            s.write_all(&[CONNECT_RPC]).unwrap();
            s.set_nonblocking(true).unwrap();
            let net: net::Client = transport::connect(tokio::net::UnixStream::from_std(s).unwrap());
            let mut req = net.tcp_connect_request();
            let mut ra = req.get().init_remote();
            ra.set_ip(&[10, 0, 0, 2]);
            ra.set_port(remote.port());
            // A send buffer of the ring's size, which autotuning leaves
            // alone: TCP's send queue stays in the ring.
            req.get().init_options().set_send_buffer(256 << 10);
            let resp = req.send().promise.await.unwrap();
            let sock = resp.get().unwrap().get_socket().unwrap();
            let g = sock.open_rings_request().send().promise.await.unwrap();
            let token =
                Token::from_slice(g.get().unwrap().get_grant().unwrap().get_token().unwrap())
                    .unwrap();
            let h = UnixStream::connect(&socket).unwrap();
            (&h).write_all(&[CONNECT_HANDOFF]).unwrap();
            let fds = handoff::redeem(h.as_fd(), &token, 3).unwrap();
            tx.send(fds).unwrap();
            // Hold the socket capability until the test is done.
            while done_rx.try_recv() == Err(std::sync::mpsc::TryRecvError::Empty) {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            drop(sock);
        });
    });
    (rx.recv().unwrap(), done_tx)
}

/// The host's count of sockets ended for a broken ring, once it reaches
/// `want` (or after 5 s).
fn killed(host: &capnet::host::Host, want: u64) -> u64 {
    let mut killed = 0;
    for _ in 0..100 {
        killed = status_counter(&cli_ok(host, &["status"]), "killed");
        if killed >= want {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    killed
}

fn ring(fd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: writing 8 bytes from a valid u64 to a doorbell fd (an 8-byte
    // datagram on its socket).
    unsafe { libc::write(fd.as_raw_fd(), &one as *const u64 as *const libc::c_void, 8) };
}

#[test]
fn corrupted_socket_rings_end_only_that_socket() {
    let scratch = Scratch::new("rings");
    let (a, b) = two_hosts(&scratch, "");
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    let _victim_listener = nb.tcp_listen(addr("0.0.0.0:5200"), 8).unwrap();
    let good = good_transfer(&na, &nb, 5201, 16 << 20).0;
    // Out-of-range indices everywhere.
    let (fds, done1) = raw_ring_socket(&a.socket, addr("10.0.0.2:5200"));
    scribble(&fds[0], |_| 0xff);
    ring(&fds[1]);
    // Random garbage.
    let (fds2, done2) = raw_ring_socket(&a.socket, addr("10.0.0.2:5200"));
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let noise: Vec<u8> = (0..1 << 20).map(|_| rng.gen()).collect();
    scribble(&fds2[0], |i| noise[i % noise.len()]);
    ring(&fds2[1]);
    good.join().unwrap();
    assert_eq!(killed(&a, 2), 2, "both hostile sockets were ended");
    drop((done1, done2));
}

/// TCP keeps what the peer has not acknowledged in the client's up ring,
/// where the client wrote it, and sends it from there. So a client that
/// scribbles over those bytes changes only its own stream (the peer gets
/// the new bytes, in place of the ones it never had), and one that takes
/// them back (moves its tail behind them) has its socket ended and
/// counted while another transfer goes on.
#[test]
fn bytes_tcp_holds_stay_in_the_clients_ring_and_changing_them_costs_only_that_socket() {
    use std::io::Read;
    use std::sync::atomic::Ordering::SeqCst;
    use std::time::{Duration, Instant};
    let scratch = Scratch::new("held");
    let (a, b) = two_hosts(&scratch, "");
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    // Not accepted yet: the connection's window fills and stays full.
    let listener = nb.tcp_listen(addr("0.0.0.0:5210"), 8).unwrap();
    let (fds, done) = raw_ring_socket(&a.socket, addr("10.0.0.2:5210"));
    let rings = Greedy::map(&fds[0]);
    let up = rings.rings[0];
    let capacity = rings.rings[1] - up - capnet_ring::bytering::HEADER_BYTES;
    let data = up + capnet_ring::bytering::HEADER_BYTES;
    let poke = |at: u32, byte: u8| {
        // SAFETY: a byte of the up ring's data area, in the live mapping.
        unsafe { *rings.map.as_ptr().add(data + at as usize % capacity) = byte };
    };
    let pattern = |at: u32| (at % 251) as u8;
    // Write until the ring is full and no space comes back.
    let (mut tail, mut head) = (0u32, 0u32);
    let mut still_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(20);
    while still_since.elapsed() < Duration::from_millis(500) {
        assert!(Instant::now() < deadline, "the ring never stayed full");
        let now_head = rings.word(up + Greedy::LINE).load(SeqCst);
        if now_head != head {
            head = now_head;
            still_since = Instant::now();
        }
        let free = capacity - tail.wrapping_sub(head) as usize;
        if free > 0 {
            for at in tail..tail + free as u32 {
                poke(at, pattern(at));
            }
            tail += free as u32;
            rings.word(up).store(tail, SeqCst);
            ring(&fds[1]);
            still_since = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!((tail - head) as usize, capacity, "the ring stayed full");
    // Every byte in it is TCP's: the send queue is the ring.
    let status = cli_ok(&a, &["status"]);
    let held = format!("sendq {capacity}/{capacity} (ring)");
    assert!(
        status
            .lines()
            .any(|l| l.contains(":5210 ") && l.contains(&held)),
        "no connection on port 5210 with {held:?}:\n{status}"
    );
    // The peer has every byte before `head` and none after: scribble those.
    for at in head..tail {
        poke(at, 0xaa);
    }
    let (mut s, _) = listener.accept().unwrap();
    let mut got = vec![0u8; tail as usize];
    s.read_exact(&mut got).unwrap();
    let first_wrong = (0..head).find(|&at| got[at as usize] != pattern(at));
    assert_eq!(first_wrong, None, "bytes the peer had came through");
    assert!(
        got[head as usize..].iter().all(|&b| b == 0xaa),
        "the bytes TCP held were sent from the client's ring"
    );
    let good = good_transfer(&na, &nb, 5211, 8 << 20).0;
    // Take bytes back: the tail moves behind what TCP took.
    rings
        .word(up)
        .store(tail.wrapping_sub(capacity as u32), SeqCst);
    ring(&fds[1]);
    good.join().unwrap();
    assert_eq!(
        killed(&a, 1),
        1,
        "the socket whose client took bytes back was ended"
    );
    drop(done);
}

#[test]
fn junk_frames_on_the_wire_are_dropped_and_counted() {
    use capnet::host::Host;
    let scratch = Scratch::new("junk");
    let a_dir = scratch.0.join("a");
    let a = Host::start(&capnet_tests::sim_config(1, ""), &a_dir, &a_dir).unwrap();
    // The test is the wire's other end for a while.
    let layout = nicdrv::dataplane::layout_for(1500, 512);
    let mut peer =
        nicdrv::sim::connect_wire(&a_dir.join("wires").join("wire0.sock"), layout).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let our_mac = [2u8, 0, 0, 0, 0, 1];
    let mut sent = 0;
    while sent < 5000 {
        let Some(mut buf) = peer.duplex.tx.alloc().unwrap() else {
            if peer.duplex.tx.flush().unwrap() {
                peer.duplex.wake_peer.ring();
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
            continue;
        };
        let bytes = peer.duplex.tx.buf_mut(&mut buf);
        let len = match sent % 3 {
            0 => rng.gen_range(0..14),    // runts
            1 => rng.gen_range(14..1514), // random bytes
            _ => rng.gen_range(34..200),  // addressed to us, IPv4 or ARP, junk inside
        };
        rng.fill(&mut bytes[..len]);
        if sent % 3 == 2 {
            bytes[..6].copy_from_slice(&our_mac);
            bytes[12..14].copy_from_slice(if sent % 2 == 0 {
                &[0x08, 0x00]
            } else {
                &[0x08, 0x06]
            });
        }
        peer.duplex.tx.send(buf, len as u32, 0, 0);
        sent += 1;
        if sent % 32 == 0 && peer.duplex.tx.flush().unwrap() {
            peer.duplex.wake_peer.ring();
        }
    }
    if peer.duplex.tx.flush().unwrap() {
        peer.duplex.wake_peer.ring();
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let status = cli_ok(&a, &["status"]);
    assert!(status_counter(&status, "malformed") >= 1000, "{status}");
    let netsrv = a.process("netsrv").expect("netsrv in status");
    assert_eq!(
        (netsrv.state.as_str(), netsrv.restarts),
        ("running", 0),
        "{status}"
    );
    // The junk peer leaves; a real host joins the same wire and talks.
    drop(peer);
    let b_dir = scratch.0.join("b");
    let b = Host::start(&capnet_tests::sim_config(2, ""), &b_dir, &a_dir).unwrap();
    good_transfer(&a.net().unwrap(), &b.net().unwrap(), 5300, 4 << 20)
        .0
        .join()
        .unwrap();
}

/// VmRSS (KiB) and thread count of a process.
fn rss_and_threads(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (field("VmRSS:"), field("Threads:"))
}

/// Everything a client can do to a doorbell fd it holds, whatever kind it
/// is: an eventfd is filled to its maximum count, a socket gets tiny buffers
/// and as many datagrams as it takes; then the fd is made blocking (the flag
/// lives in the open file description, which the client shares with the
/// service if the fd is a dup of the service's). Repeated, it undoes what
/// the service drained.
fn block_and_fill(fd: &OwnedFd) {
    let raw = fd.as_raw_fd();
    // SAFETY: plain fcntl on a live fd.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
    // SAFETY: plain fcntl on a live fd (non-blocking while we fill it).
    unsafe { libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) };
    let kind = std::fs::read_link(format!("/proc/self/fd/{raw}")).unwrap();
    if kind.as_os_str() == "anon_inode:[eventfd]" {
        let full: u64 = 0xffff_ffff_ffff_fffe;
        // A few tries: the service may ring between our read and write.
        for _ in 0..100 {
            let mut n = 0u64;
            // SAFETY: 8-byte read into and write from live u64s on a live fd
            // (still non-blocking here).
            let wrote = unsafe {
                libc::read(raw, (&mut n as *mut u64).cast(), 8);
                libc::write(raw, (&full as *const u64).cast(), 8)
            };
            if wrote == 8 {
                break;
            }
        }
    } else {
        let small: libc::c_int = 1;
        for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
            // SAFETY: a valid int option for the call.
            unsafe {
                libc::setsockopt(
                    raw,
                    libc::SOL_SOCKET,
                    opt,
                    (&small as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
        }
        let junk = [0u8; 2048];
        // SAFETY: sends from a live buffer, never blocking.
        while unsafe { libc::send(raw, junk.as_ptr().cast(), junk.len(), libc::MSG_DONTWAIT) } > 0 {
        }
    }
    // SAFETY: plain fcntl on a live fd.
    assert_eq!(
        unsafe { libc::fcntl(raw, libc::F_SETFL, flags & !libc::O_NONBLOCK) },
        0
    );
}

/// A hostile client's view of its socket's rings: it asks for every signal
/// (all four `wanted` flags) and takes whatever arrives in the receive ring
/// without reading it, so that netsrv keeps writing and ringing.
struct Greedy {
    map: capnet_ring::SharedRegion,
    /// Offsets of the up and down byte rings.
    rings: [usize; 2],
}

impl Greedy {
    const LINE: usize = 128;

    fn map(region: &OwnedFd) -> Greedy {
        let len = capnet_tests::region_len(region);
        let capacity = (4..31)
            .map(|b| 1u32 << b)
            .find(|&c| capnet_ring::bytering::socket_region_bytes(c) == len)
            .unwrap();
        let map = capnet_ring::SharedRegion::from_fd(region.try_clone().unwrap(), len).unwrap();
        let down = Self::LINE + capnet_ring::byte_ring_bytes(capacity);
        Greedy {
            map,
            rings: [Self::LINE, down],
        }
    }

    fn word(&self, offset: usize) -> &std::sync::atomic::AtomicU32 {
        assert!(offset.is_multiple_of(4) && offset + 4 <= self.map.len());
        // SAFETY: an aligned u32 inside the live mapping (checked above),
        // only ever accessed atomically by both processes.
        unsafe { &*(self.map.as_ptr().add(offset) as *const std::sync::atomic::AtomicU32) }
    }

    fn step(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        // Each ring's header: writer line (tail), reader line (head), then
        // data_wanted and space_wanted on a line each.
        for ring in self.rings {
            self.word(ring + 2 * Self::LINE).store(1, SeqCst);
            self.word(ring + 3 * Self::LINE).store(1, SeqCst);
        }
        let down = self.rings[1];
        let tail = self.word(down).load(SeqCst);
        self.word(down + Self::LINE).store(tail, SeqCst);
    }
}

/// Datagrams queued at a doorbell's wait end, taken.
fn drain_count(fd: impl AsFd) -> u32 {
    let mut n = 0;
    let mut byte = 0u8;
    // SAFETY: non-blocking 1-byte receives into a live u8.
    while unsafe {
        libc::recv(
            fd.as_fd().as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_DONTWAIT,
        )
    } > 0
    {
        n += 1;
    }
    n
}

/// Issue 10, hole 2: a client that makes its doorbells blocking and full
/// and keeps asking for signals while data arrives for it. With eventfds
/// shared with the client, netsrv's next ring blocked in write(2) for ever
/// and every client on the host froze; now the transfer of another client
/// goes on, and netsrv stays the same process with bounded threads and RSS.
#[test]
fn doorbells_a_client_made_blocking_stall_nobody() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    let scratch = Scratch::new("bells");
    let (a, b) = two_hosts(&scratch, "");
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    let netsrv = a.process("netsrv").unwrap().pid;
    let (rss0, threads0) = rss_and_threads(netsrv);
    // The hostile socket's peer keeps sending, so netsrv keeps writing into
    // the socket's receive ring and answering its `wanted` flag.
    let stop = Arc::new(AtomicBool::new(false));
    let listener = nb.tcp_listen(addr("0.0.0.0:5400"), 4).unwrap();
    let fed = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let (s, _) = listener.accept().unwrap();
            s.set_write_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let mut sent = 0usize;
            while !stop.load(Ordering::Relaxed) {
                match (&s).write(&[7u8; 1024]) {
                    Ok(n) => sent += n,
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => break,
                }
            }
            sent
        }
    });
    let (fds, done) = raw_ring_socket(&a.socket, addr("10.0.0.2:5400"));
    for fd in &fds[1..] {
        block_and_fill(fd);
    }
    let asker = std::thread::spawn({
        let stop = stop.clone();
        let region = fds[0].try_clone().unwrap();
        move || {
            let greedy = Greedy::map(&region);
            while !stop.load(Ordering::Relaxed) {
                greedy.step();
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    let good = good_transfer(&na, &nb, 5401, 64 << 20).0;
    let deadline = Instant::now() + Duration::from_secs(90);
    while !good.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the good transfer froze: netsrv blocked on a hostile client's doorbell"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    good.join().unwrap();
    // The attack was real: netsrv kept ringing the blocked doorbell until
    // no more rings fit, as many as a doorbell of our own holds.
    let pending = drain_count(&fds[2]);
    let (ours, mine) = capnet_ring::Doorbell::pair().unwrap();
    for _ in 0..10_000 {
        ours.ring();
    }
    let full = drain_count(mine.as_fd());
    assert!(pending >= full, "netsrv rang {pending} times, {full} fit");
    let (rss, threads) = rss_and_threads(netsrv);
    assert!(
        threads <= threads0 + 2,
        "netsrv threads {threads0} -> {threads}"
    );
    assert!(
        rss <= rss0 + 64 * 1024,
        "netsrv RSS {rss0} KiB -> {rss} KiB"
    );
    let p = a.process("netsrv").unwrap();
    assert_eq!(
        (p.pid, p.state.as_str(), p.restarts),
        (netsrv, "running", 0)
    );
    stop.store(true, Ordering::Relaxed);
    asker.join().unwrap();
    drop((done, fds));
    assert!(fed.join().unwrap() > 0, "data reached the hostile socket");
    println!(
        "netsrv RSS {rss0} -> {rss} KiB, threads {threads0} -> {threads}; {pending} rings queued"
    );
}

/// Like [`raw_ring_socket`], through tlsd: a TLS connection made with raw
/// capnp on `tls.sock`, its rings taken with the handoff. Dropping the
/// returned sender drops the TLS socket capability (tlsd cancels the
/// session); the ring fds stay with the caller.
fn raw_tls_ring_socket(
    tls_sock: &Path,
    remote: SocketAddr,
) -> (Vec<OwnedFd>, std::sync::mpsc::Sender<()>) {
    use capnet_schema::tls_capnp::tls;
    let socket = tls_sock.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let mut s = UnixStream::connect(&socket).unwrap();
            s.write_all(&[CONNECT_RPC]).unwrap();
            s.set_nonblocking(true).unwrap();
            let tls: tls::Client = transport::connect(tokio::net::UnixStream::from_std(s).unwrap());
            let mut req = tls.connect_request();
            {
                let mut p = req.get();
                let mut ra = p.reborrow().init_remote();
                ra.set_ip(&[10, 0, 0, 2]);
                ra.set_port(remote.port());
                p.set_server_name("capnet.test");
                p.init_options();
            }
            let resp = req.send().promise.await.unwrap();
            let sock = resp.get().unwrap().get_socket().unwrap();
            // The answer holds the capability too.
            drop(resp);
            let g = sock.open_rings_request().send().promise.await.unwrap();
            let token =
                Token::from_slice(g.get().unwrap().get_grant().unwrap().get_token().unwrap())
                    .unwrap();
            let h = UnixStream::connect(&socket).unwrap();
            (&h).write_all(&[CONNECT_HANDOFF]).unwrap();
            let fds = handoff::redeem(h.as_fd(), &token, 3).unwrap();
            tx.send(fds).unwrap();
            while done_rx.try_recv() == Err(std::sync::mpsc::TryRecvError::Empty) {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            drop(sock);
            // Keep the connection up while tlsd cancels the session.
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        });
    });
    (rx.recv().unwrap(), done_tx)
}

/// Hole 2 through tlsd: the same client, on a TLS socket. With eventfds,
/// tlsd's session thread blocked ringing the client, and `cancel` (on
/// tlsd's one capnp thread) blocked ringing the session through a doorbell
/// the client had made blocking and full: no TLS client got through again.
#[test]
fn tls_doorbells_a_client_made_blocking_stall_nobody() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    let scratch = Scratch::new("tlsbells");
    let tls = capnet_tests::tls_section(None);
    let (a_dir, b_dir) = (scratch.0.join("a"), scratch.0.join("b"));
    let config = |n| format!("{}{tls}", capnet_tests::sim_config(n, ""));
    let a = capnet::host::Host::start(&config(1), &a_dir, &a_dir).unwrap();
    let b = capnet::host::Host::start(&config(2), &b_dir, &a_dir).unwrap();
    let tlsd = a.process("tlsd").unwrap().pid;
    let (rss0, threads0) = rss_and_threads(tlsd);
    let options = libclient::TlsOptions::default();
    let stop = Arc::new(AtomicBool::new(false));
    let server_tls = b.tls().unwrap();
    let listener = server_tls
        .listen(addr("0.0.0.0:5500"), 4, &options)
        .unwrap();
    let fed = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let (s, _) = listener.accept().unwrap();
            s.set_write_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            while !stop.load(Ordering::Relaxed) {
                match (&s).write(&[7u8; 1024]) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => break,
                }
            }
        }
    });
    let (fds, done) = raw_tls_ring_socket(&a.run_dir.join("tls.sock"), addr("10.0.0.2:5500"));
    let attack = Arc::new(AtomicBool::new(true));
    let asker = std::thread::spawn({
        let attack = attack.clone();
        let fds: Vec<OwnedFd> = fds.iter().map(|f| f.try_clone().unwrap()).collect();
        move || {
            let greedy = Greedy::map(&fds[0]);
            while attack.load(Ordering::Relaxed) {
                greedy.step();
                for fd in &fds[1..] {
                    block_and_fill(fd);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    attack.store(false, Ordering::Relaxed);
    asker.join().unwrap();
    // The session's last ring meets a full blocking doorbell (with an
    // eventfd it then sleeps for ever and drains nothing); the doorbell it
    // sleeps on is made full and blocking once more.
    std::thread::sleep(Duration::from_millis(300));
    block_and_fill(&fds[1]);
    // The application goes away: tlsd cancels the session, ringing that
    // doorbell from its capnp thread.
    drop(done);
    std::thread::sleep(Duration::from_millis(300));
    let (na, nb) = (a.tls().unwrap(), b.tls().unwrap());
    let good = std::thread::spawn(move || {
        let listener = nb.listen(addr("0.0.0.0:5501"), 4, &options).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            receive_all(&mut s).unwrap()
        });
        let s = na
            .connect_stream(addr("10.0.0.2:5501"), "capnet.test", &options)
            .unwrap();
        let sent = send_pattern(&mut &s, 5, 64 << 20).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let (n, got) = server.join().unwrap();
        assert_eq!(n, 64 << 20);
        assert_eq!(got, sent);
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    while !good.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the good TLS transfer froze: tlsd blocked on a hostile client's doorbell"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    good.join().unwrap();
    let (rss, threads) = rss_and_threads(tlsd);
    assert!(
        threads <= threads0 + 2,
        "tlsd threads {threads0} -> {threads}"
    );
    assert!(rss <= rss0 + 64 * 1024, "tlsd RSS {rss0} KiB -> {rss} KiB");
    let p = a.process("tlsd").unwrap();
    assert_eq!((p.pid, p.state.as_str(), p.restarts), (tlsd, "running", 0));
    stop.store(true, Ordering::Relaxed);
    drop(fds);
    fed.join().unwrap();
    println!("tlsd RSS {rss0} -> {rss} KiB, threads {threads0} -> {threads}");
}

/// The socket calls of issue 12 against a hostile client: `setLinger` out
/// of bounds is `invalid`; a lingering `close` whose peer never takes the
/// data returns at its bound and does not hold up anyone else; calls after
/// `close` are refused with `closed`; a socket shut for reading that a
/// remote peer floods fills only its window (no session is killed, its
/// other direction keeps working).
#[test]
fn linger_close_and_shutdown_read_cannot_hold_the_service() {
    use capnet_schema::errors::SocketError;
    use std::time::{Duration, Instant};
    let scratch = Scratch::new("linger");
    let (a, b) = two_hosts(&scratch, "");
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    // A peer on b that accepts and never reads.
    let listener = nb.tcp_listen(addr("0.0.0.0:5400"), 4).unwrap();
    let sleeper = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_secs(8));
        drop(s);
    });
    let socket = a.socket.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let word = |e: capnp::Error| SocketError::from_description(&e.to_string());
    let (closed_in, after_close) = tokio::task::LocalSet::new().block_on(&rt, async move {
        let mut s = UnixStream::connect(&socket).unwrap();
        s.write_all(&[CONNECT_RPC]).unwrap();
        s.set_nonblocking(true).unwrap();
        let net: net::Client = transport::connect(tokio::net::UnixStream::from_std(s).unwrap());
        let mut req = net.tcp_connect_request();
        let mut ra = req.get().init_remote();
        ra.set_ip(&[10, 0, 0, 2]);
        ra.set_port(5400);
        let resp = req.send().promise.await.unwrap();
        let sock = resp.get().unwrap().get_socket().unwrap();
        // Out of bounds: refused, typed.
        for ms in [u32::MAX, 120_001] {
            let mut req = sock.set_linger_request();
            req.get().set_on(true);
            req.get().set_timeout_ms(ms);
            let err = req.send().promise.await.map(|_| ()).unwrap_err();
            assert_eq!(word(err), Some(SocketError::Invalid), "{ms} ms");
        }
        // Fill everything between us and the sleeping peer.
        let chunk = vec![0x5a; 64 * 1024];
        loop {
            let mut req = sock.write_request();
            req.get().set_data(&chunk);
            let sent = tokio::time::timeout(Duration::from_millis(300), req.send().promise);
            if sent.await.is_err() {
                break;
            }
        }
        let mut req = sock.set_linger_request();
        req.get().set_on(true);
        req.get().set_timeout_ms(1500);
        req.send().promise.await.unwrap();
        let began = Instant::now();
        sock.close_request().send().promise.await.unwrap();
        let closed_in = began.elapsed();
        let mut req = sock.read_request();
        req.get().set_max(16);
        let after = req.send().promise.await.map(|_| ()).unwrap_err();
        (closed_in, word(after))
    });
    assert!(
        closed_in >= Duration::from_millis(1400) && closed_in < Duration::from_secs(5),
        "a lingering close of 1.5 s took {closed_in:?}"
    );
    assert_eq!(after_close, Some(SocketError::Closed));
    // A remote peer floods a socket shut for reading.
    let listener = nb.tcp_listen(addr("0.0.0.0:5401"), 4).unwrap();
    let flooder = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = send_pattern(&mut &s, 9, 16 << 20);
        let mut got = [0u8; 5];
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        std::io::Read::read_exact(&mut &s, &mut got).unwrap();
        got
    });
    let mut shut = na.tcp_connect(addr("10.0.0.2:5401"), None).unwrap();
    shut.shutdown(Shutdown::Read).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    shut.write_all(b"still").unwrap();
    assert_eq!(&flooder.join().unwrap(), b"still");
    // Others were served throughout; nobody was taken for a ring breaker.
    good_transfer(&na, &nb, 5402, 8 << 20).0.join().unwrap();
    let status = cli_ok(&a, &["status"]);
    assert_eq!(status_counter(&status, "killed"), 0, "{status}");
    drop(shut);
    sleeper.join().unwrap();
}
