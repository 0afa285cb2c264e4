//! netsrv killed under an application: nothing hangs, everything resets.
//!
//! Host a's netsrv is killed with SIGKILL while its application has calls
//! blocked in every way a socket can block; each must return
//! `ConnectionReset` within 2 s, and so must every later call. The
//! supervisor may restart netsrv or stop the set: either is fine here.

use capnet_tests::{two_hosts, Scratch};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The pid of the netsrv serving the application socket `socket`: its
/// command line has `--listen SOCKET`.
fn netsrv_pid(socket: &Path) -> u32 {
    let socket = socket.display().to_string();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_netsrv = args
            .first()
            .is_some_and(|a| String::from_utf8_lossy(a).ends_with("netsrv"));
        let serves = args
            .windows(2)
            .any(|w| w[0] == b"--listen" && w[1] == socket.as_bytes());
        if is_netsrv && serves {
            return pid;
        }
    }
    panic!("no netsrv process listens on {socket}");
}

fn is_reset(r: &std::io::Result<impl std::fmt::Debug>) -> bool {
    matches!(r, Err(e) if e.kind() == ErrorKind::ConnectionReset)
}

#[track_caller]
fn assert_reset<T: std::fmt::Debug>(what: &str, r: std::io::Result<T>) {
    match r {
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {
            assert!(
                e.to_string().contains("network service went away"),
                "{what}: {e}"
            );
        }
        other => panic!("{what}: expected ConnectionReset, got {other:?}"),
    }
}

#[test]
fn netsrv_death_resets_every_blocked_call() {
    use mio::{unix::SourceFd, Events, Interest, Poll, Token};
    use std::os::fd::AsRawFd;

    let scratch = Scratch::new("service-loss");
    let (a, b) = two_hosts(&scratch, "");
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());

    // The peer: accepts and holds every connection, reads nothing.
    let peer_listener = nb.tcp_listen(addr("0.0.0.0:7300"), 8).unwrap();
    let (held_tx, held_rx) = mpsc::channel();
    let peer = std::thread::spawn(move || {
        for _ in 0..3 {
            let (s, _) = peer_listener.accept().unwrap();
            held_tx.send(s).unwrap();
        }
    });
    let reader = Arc::new(na.tcp_connect(addr("10.0.0.2:7300"), None).unwrap());
    let writer = Arc::new(na.tcp_connect(addr("10.0.0.2:7300"), None).unwrap());
    let polled = na.tcp_connect(addr("10.0.0.2:7300"), None).unwrap();
    peer.join().unwrap();
    let held: Vec<libclient::TcpStream> = held_rx.try_iter().collect();
    assert_eq!(held.len(), 3);
    let listener = Arc::new(na.tcp_listen(addr("0.0.0.0:7301"), 4).unwrap());
    let udp = Arc::new(na.udp_bind(addr("0.0.0.0:7302")).unwrap());
    let egress = reader.egress().unwrap();
    let changes = Arc::new(egress.subscribe().unwrap());

    // Each blocked call reports (what, reset?, error text, when it returned).
    type Report = (&'static str, bool, String, Instant);
    let (done_tx, done_rx) = mpsc::channel::<Report>();
    let mut threads = Vec::new();
    {
        let s = reader.clone();
        let tx = done_tx.clone();
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            let r = (&*s).read(&mut buf);
            tx.send(("read", is_reset(&r), format!("{r:?}"), Instant::now()))
                .unwrap();
        }));
    }
    let written = Arc::new(AtomicU64::new(0));
    {
        let s = writer.clone();
        let tx = done_tx.clone();
        let written = written.clone();
        threads.push(std::thread::spawn(move || {
            let chunk = vec![0x5au8; 64 * 1024];
            let r = loop {
                match (&*s).write(&chunk) {
                    Ok(n) => written.fetch_add(n as u64, Ordering::SeqCst),
                    Err(e) => break Err::<(), _>(e),
                };
            };
            tx.send(("write", is_reset(&r), format!("{r:?}"), Instant::now()))
                .unwrap();
        }));
    }
    {
        let l = listener.clone();
        let tx = done_tx.clone();
        threads.push(std::thread::spawn(move || {
            let r = l.accept();
            tx.send(("accept", is_reset(&r), format!("{r:?}"), Instant::now()))
                .unwrap();
        }));
    }
    {
        let c = changes.clone();
        let tx = done_tx.clone();
        threads.push(std::thread::spawn(move || {
            let r = c.recv();
            tx.send((
                "egress recv",
                is_reset(&r),
                format!("{r:?}"),
                Instant::now(),
            ))
            .unwrap();
        }));
    }
    {
        let u = udp.clone();
        let tx = done_tx.clone();
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            let r = u.recv_from(&mut buf);
            tx.send(("recv_from", is_reset(&r), format!("{r:?}"), Instant::now()))
                .unwrap();
        }));
    }
    drop(done_tx);

    // A non-blocking stream in an event loop: nothing to read yet.
    polled.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(
        (&polled).read(&mut buf).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    let mut poll = Poll::new().unwrap();
    let fd = polled.as_raw_fd();
    poll.registry()
        .register(&mut SourceFd(&fd), Token(1), Interest::READABLE)
        .unwrap();
    let mut events = Events::with_capacity(4);
    poll.poll(&mut events, Some(Duration::from_millis(50)))
        .unwrap();
    assert!(events.is_empty(), "no wakeup before the service goes away");

    // Wait until the writer is stuck: the peer's window and both rings are
    // full, so the count stops growing.
    let mut last = 0;
    let mut still = 0;
    let stuck_by = Instant::now() + Duration::from_secs(30);
    while still < 5 {
        assert!(Instant::now() < stuck_by, "the writer never filled up");
        std::thread::sleep(Duration::from_millis(100));
        let now = written.load(Ordering::SeqCst);
        if now == last && now > 0 {
            still += 1;
        } else {
            still = 0;
        }
        last = now;
    }
    for t in &threads {
        assert!(!t.is_finished(), "a call returned before netsrv died");
    }
    assert!(na.is_connected());

    let pid = netsrv_pid(&a.socket);
    let killed = Instant::now();
    // SAFETY: kill(2) with a pid read from /proc just now.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);

    let mut reports = Vec::new();
    while reports.len() < threads.len() {
        let left = Duration::from_secs(2).saturating_sub(killed.elapsed());
        match done_rx.recv_timeout(left) {
            Ok(r) => reports.push(r),
            Err(_) => {
                let back: Vec<_> = reports.iter().map(|r| r.0).collect();
                panic!("blocked calls still hang 2 s after netsrv died; returned: {back:?}");
            }
        }
    }
    for (what, reset, text, at) in &reports {
        assert!(*at >= killed, "{what} returned before the kill: {text}");
        let after = at.duration_since(killed);
        eprintln!("{what} returned {after:?} after the kill: {text}");
        assert!(reset, "{what}: expected ConnectionReset, got {text}");
        assert!(after < Duration::from_secs(2), "{what} took {after:?}");
    }
    for t in threads {
        t.join().unwrap();
    }

    // The event loop was woken, and its stream is reset too.
    let left = Duration::from_secs(2).saturating_sub(killed.elapsed());
    poll.poll(&mut events, Some(left.max(Duration::from_millis(1))))
        .unwrap();
    assert!(
        events.iter().any(|e| e.token() == Token(1)),
        "the event loop was not woken"
    );
    assert_reset("non-blocking read", (&polled).read(&mut buf));
    assert_reset("non-blocking write", (&polled).write(b"x"));

    // Every later call on every socket of that connection resets too.
    assert!(!na.is_connected());
    for s in [&*reader, &*writer] {
        assert_reset("read", (&*s).read(&mut buf));
        assert_reset("write", (&*s).write(b"more"));
        assert_reset("flush", (&*s).flush());
        assert_reset("shutdown", s.shutdown(Shutdown::Both));
        assert_reset("set_nodelay", s.set_nodelay(true));
    }
    assert_reset("accept", listener.accept());
    listener.set_nonblocking(true).unwrap();
    assert_reset("non-blocking accept", listener.accept());
    assert_reset("send_to", udp.send_to(b"x", "10.0.0.2:9"));
    assert_reset("recv_from", udp.recv_from(&mut buf));
    assert_reset(
        "connect",
        na.tcp_connect(addr("10.0.0.2:7300"), Some(Duration::from_secs(1))),
    );
    assert_reset("listen", na.tcp_listen(addr("0.0.0.0:7303"), 1));
    assert_reset("udp bind", na.udp_bind(addr("0.0.0.0:0")));
    assert_reset(
        "egress",
        na.egress(libclient::Flow {
            protocol: libclient::Protocol::Tcp,
            local: None,
            remote: addr("10.0.0.2:7300"),
        }),
    );
    assert_reset("stream egress", reader.egress());
    assert_reset("egress current", egress.current());
    assert_reset("egress subscribe", egress.subscribe());
    assert_eq!(changes.recv_timeout(Duration::from_secs(1)), None);
    assert_eq!(changes.try_recv(), None);

    // Dropping everything after the loss is quiet and quick.
    let dropped = Instant::now();
    drop((changes, egress, reader, writer, polled, listener, udp, na));
    assert!(dropped.elapsed() < Duration::from_secs(1));
    drop(held);

    // The supervisor brings the service back, and a new connection works.
    let p = a
        .wait_process(
            "netsrv",
            |p| p.state == "running" && p.restarts >= 1,
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("the supervisor did not restart netsrv: {e}\n{}", a.log()));
    eprintln!("netsrv restarted: {p:?}");
    let l = nb.tcp_listen(addr("0.0.0.0:7304"), 1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut c = loop {
        let r = a
            .net()
            .and_then(|n| n.tcp_connect(addr("10.0.0.2:7304"), Some(Duration::from_secs(2))));
        match r {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("no connection through the restarted netsrv: {e}"),
        }
    };
    let (mut s, _) = l.accept().unwrap();
    c.write_all(b"again").unwrap();
    let mut got = [0u8; 5];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"again");
}

/// A stream blocked in read on a Net whose service is killed while another
/// Net of the same process stays untouched (a different host): only the
/// first is reset. Bytes already in a stream's receive ring are read first.
#[test]
fn only_the_lost_service_resets() {
    let scratch = Scratch::new("service-loss-other");
    let (a, b) = two_hosts(&scratch, "");
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    let l = nb.tcp_listen(addr("0.0.0.0:7400"), 4).unwrap();
    let c = na.tcp_connect(addr("10.0.0.2:7400"), None).unwrap();
    let (mut s, _) = l.accept().unwrap();
    // A second stream with bytes already in its receive ring.
    let full = na.tcp_connect(addr("10.0.0.2:7400"), None).unwrap();
    let (mut full_peer, _) = l.accept().unwrap();
    full.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        (&full).read(&mut buf).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    full_peer.write_all(b"delivered").unwrap();
    {
        use mio::{unix::SourceFd, Events, Interest, Poll, Token};
        use std::os::fd::AsRawFd;
        let mut poll = Poll::new().unwrap();
        poll.registry()
            .register(
                &mut SourceFd(&full.as_raw_fd()),
                Token(0),
                Interest::READABLE,
            )
            .unwrap();
        let mut events = Events::with_capacity(1);
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert!(!events.is_empty(), "the bytes never arrived");
    }
    full.set_nonblocking(false).unwrap();

    let pid = netsrv_pid(&a.socket);
    let killed = Instant::now();
    // SAFETY: kill(2) with a pid read from /proc just now.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_reset("read", (&c).read(&mut buf));
    assert!(killed.elapsed() < Duration::from_secs(2));
    // What netsrv delivered before it died is still read, then the reset.
    let n = (&full).read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"delivered");
    assert_reset("read after the delivered bytes", (&full).read(&mut buf));
    assert_reset("write", (&full).write(b"x"));

    // Host b's service is fine: its side of the connection is still open
    // (it could see the peer vanish only by TCP means).
    assert!(nb.is_connected());
    s.set_nonblocking(true).unwrap();
    assert_eq!(s.read(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);
    let l2 = nb.tcp_listen(addr("0.0.0.0:7401"), 1).unwrap();
    assert_eq!(l2.local_addr().unwrap(), addr("0.0.0.0:7401"));
}

/// `current()` of a connected stream and of a flow names the sim port; a
/// subscription sees the link go down and up, once each.
#[test]
fn egress_names_the_port_and_follows_the_link() {
    let scratch = Scratch::new("egress-smoke");
    let (a, b) = two_hosts(&scratch, "");
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    let l = nb.tcp_listen(addr("0.0.0.0:7500"), 4).unwrap();
    let c = na.tcp_connect(addr("10.0.0.2:7500"), None).unwrap();
    let _s = l.accept().unwrap();

    let egress = c.egress().unwrap();
    let now = egress.current().unwrap();
    assert_eq!(now.port.as_deref(), Some("sim0"), "{now:?}");
    assert_eq!(now.interface, "sim0", "{now:?}");
    assert_eq!(now.reason, libclient::EgressReason::Initial, "{now:?}");

    let flow = na
        .egress(libclient::Flow {
            protocol: libclient::Protocol::Udp,
            local: None,
            remote: addr("10.0.0.2:4789"),
        })
        .unwrap();
    let info = flow.current().unwrap();
    assert_eq!(info.port.as_deref(), Some("sim0"), "{info:?}");
    assert_eq!(info.driver_epoch, now.driver_epoch);

    let changes = egress.subscribe().unwrap();
    assert_eq!(changes.recv_timeout(Duration::from_millis(200)), None);
    capnet_tests::cli_ok(&a, &["link", "sim0", "down"]);
    let down = changes
        .recv_timeout(Duration::from_secs(5))
        .expect("a change when the link goes down");
    assert_eq!(down.reason, libclient::EgressReason::LinkDown, "{down:?}");
    assert_eq!(down.port, None, "{down:?}");
    capnet_tests::cli_ok(&a, &["link", "sim0", "up"]);
    let up = changes
        .recv_timeout(Duration::from_secs(5))
        .expect("a change when the link comes up");
    assert_eq!(up.reason, libclient::EgressReason::LinkUp, "{up:?}");
    assert_eq!(up.port.as_deref(), Some("sim0"), "{up:?}");
    assert!(up.generation > down.generation, "{down:?} then {up:?}");
    assert_eq!(changes.recv_timeout(Duration::from_millis(300)), None);

    // Dropping the subscription ends it in netsrv.
    let watchers = |host: &capnet::host::Host| {
        let status = capnet_tests::cli_ok(host, &["status"]);
        capnet_tests::status_counter(&status, "watchers")
    };
    assert_eq!(watchers(&a), 1);
    drop(changes);
    let deadline = Instant::now() + Duration::from_secs(5);
    while watchers(&a) != 0 {
        assert!(
            Instant::now() < deadline,
            "the subscription outlived its drop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
