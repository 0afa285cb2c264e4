//! Remote TLS peers that do not play along: silent connections (slowloris)
//! never delay another client's handshake or grow tlsd, a handshake that
//! never finishes is closed at its deadline and counted, and a TLS
//! listener the application closed or dropped releases its port.

use capnet::host::Host;
use capnet_tests::{receive_all, send_pattern, sim_config, tls_section, Scratch};
use libclient::{TlsOptions, TlsStream};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Runs `f`; if it panics, prints the hosts' logs first.
fn with_logs<T>(hosts: &[&Host], f: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(p) => {
            for (i, h) in hosts.iter().enumerate() {
                eprintln!("---- host {i} log ----\n{}", h.log());
            }
            std::panic::resume_unwind(p)
        }
    }
}

fn tls_hosts(scratch: &Scratch) -> (Host, Host) {
    let a_dir = scratch.0.join("a");
    let b_dir = scratch.0.join("b");
    let tls = tls_section(None);
    let a = Host::start(&format!("{}{tls}", sim_config(1, "")), &a_dir, &a_dir).expect("host a");
    let b = Host::start(&format!("{}{tls}", sim_config(2, "")), &b_dir, &a_dir).expect("host b");
    (a, b)
}

/// (threads, VmRSS in KiB) of a process.
fn threads_and_rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("Threads:"), field("VmRSS:"))
}

fn tlsd_pid(host: &Host) -> u32 {
    let p = host.process("tlsd").expect("tlsd in status");
    assert_ne!(p.pid, 0, "tlsd is not running: {p:?}");
    p.pid
}

/// A TLS echo server on `listener`: every accepted connection echoes on a
/// thread of its own until EOF. Ends when accept fails (the host stops).
fn echo_server(listener: libclient::TlsListener) {
    std::thread::spawn(move || {
        while let Ok((s, _)) = listener.accept() {
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match (&s).read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if (&s).write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = s.shutdown(Shutdown::Write);
            });
        }
    });
}

/// Connects (TCP and TLS handshake) and checks one echo; returns how long
/// the connect took. The connect runs on a thread so that a stuck one
/// fails the test after `limit` instead of hanging it.
fn timed_connect(tls: &libclient::Tls, to: SocketAddr, limit: Duration) -> (TlsStream, Duration) {
    let tls = tls.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let began = Instant::now();
        let r = tls.connect_stream(to, "capnet.test", &TlsOptions::default());
        let _ = tx.send(r.map(|s| (s, began.elapsed())));
    });
    let (mut s, took) = match rx.recv_timeout(limit) {
        Ok(r) => r.expect("TLS connect"),
        Err(_) => panic!("the TLS connect did not complete within {limit:?}"),
    };
    s.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
    (s, took)
}

/// 200 TCP connections that never send a byte are open to a TLS
/// listener; a real client still completes its handshake in about its
/// normal time and moves 16 MiB byte-exact, and tlsd's threads and memory
/// stay bounded.
#[test]
fn slowloris_does_not_delay_a_real_client_or_grow_tlsd() {
    const SILENT: usize = 200;
    let scratch = Scratch::new("tls-slowloris");
    let (a, b) = tls_hosts(&scratch);
    with_logs(&[&a, &b], || {
        let pid = tlsd_pid(&b);
        let (threads_before, rss_before) = threads_and_rss(pid);
        let listener = b
            .tls()
            .unwrap()
            .listen(addr("0.0.0.0:4460"), 16, &TlsOptions::default())
            .unwrap();
        echo_server(listener);
        let client = a.tls().unwrap();
        let to = addr("10.0.0.2:4460");

        // The normal time, measured here, on this machine, now.
        let mut normal = Duration::ZERO;
        for _ in 0..3 {
            let (s, took) = timed_connect(&client, to, Duration::from_secs(20));
            normal = normal.max(took);
            drop(s);
        }
        // Well under the 10 s handshake deadline: a client queued behind
        // even one silent handshake takes longer.
        let allowed = (normal * 20).clamp(Duration::from_secs(2), Duration::from_secs(5));

        let net = a.net().unwrap();
        let opened = Instant::now();
        let mut silent = Vec::new();
        while silent.len() < SILENT {
            match net.tcp_connect(to, Some(Duration::from_secs(5))) {
                Ok(s) => silent.push(s),
                // The listening slots refill as tlsd accepts: try again.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("silent connection {}: {e}", silent.len()),
            }
            assert!(
                opened.elapsed() < Duration::from_secs(8),
                "opening {SILENT} TCP connections took too long: {} opened",
                silent.len()
            );
        }

        let (s, took) = timed_connect(&client, to, allowed);
        assert!(
            took <= allowed,
            "under attack the handshake took {took:?}; normal is {normal:?}"
        );
        // The silent connections are still open, and pending at tlsd.
        let pending = b.tls().unwrap().stat().unwrap().curr_handshakes;
        assert!(
            pending >= SILENT as u64 / 2,
            "only {pending} handshakes pending"
        );

        // A real transfer while the attack runs: 16 MiB each way, exact.
        const BYTES: u64 = 16 << 20;
        let (sent, got) = std::thread::scope(|scope| {
            let w = scope.spawn(|| {
                let h = send_pattern(&mut &s, 77, BYTES).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
                h
            });
            let got = receive_all(&mut &s).unwrap();
            (w.join().unwrap(), got)
        });
        assert_eq!(got.0, BYTES);
        assert_eq!(got.1, sent);

        let (threads, rss) = threads_and_rss(pid);
        eprintln!(
            "normal connect {normal:?}, under attack {took:?} (allowed {allowed:?}); \
             {pending} handshakes pending; tlsd threads {threads_before} -> {threads}, \
             RSS {rss_before} -> {rss} KiB"
        );
        assert!(
            threads <= threads_before + 16,
            "tlsd went from {threads_before} to {threads} threads"
        );
        assert!(
            rss <= rss_before + 64 * 1024,
            "tlsd went from {rss_before} KiB to {rss} KiB"
        );
        drop(silent);
    });
}

/// A connection that never sends its ClientHello is closed when the
/// handshake deadline (10 s by default) passes, and counted.
#[test]
fn a_silent_handshake_is_closed_at_its_deadline_and_counted() {
    let scratch = Scratch::new("tls-deadline");
    let (a, b) = tls_hosts(&scratch);
    with_logs(&[&a, &b], || {
        let listener = b
            .tls()
            .unwrap()
            .listen(addr("0.0.0.0:4461"), 4, &TlsOptions::default())
            .unwrap();
        echo_server(listener);
        let silent = a
            .net()
            .unwrap()
            .tcp_connect(addr("10.0.0.2:4461"), None)
            .unwrap();
        let began = Instant::now();
        silent
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut buf = [0u8; 64];
        let r = (&silent).read(&mut buf);
        let took = began.elapsed();
        assert!(
            matches!(r, Ok(0)) || matches!(&r, Err(e) if e.kind() != std::io::ErrorKind::TimedOut),
            "the silent connection was not closed: {r:?} after {took:?}"
        );
        assert!(
            took >= Duration::from_secs(9) && took <= Duration::from_secs(15),
            "closed after {took:?}, not at the 10 s deadline"
        );
        let stat = b.tls().unwrap().stat().unwrap();
        assert_eq!(stat.handshake_timeouts, 1, "{stat:?}");
        assert_eq!(stat.curr_handshakes, 0, "{stat:?}");
    });
}

/// Waits until a TCP connect to `to` is refused; panics if the port still
/// answers after `within`. A connect that got through, or was reset as the
/// listener went under it (its queue is reset, as Linux resets a closed
/// listener's), came while the listener was still going: try again.
fn wait_refused(net: &libclient::Net, to: SocketAddr, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let answered = match net.tcp_connect(to, Some(Duration::from_secs(2))) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => e.to_string(),
            Err(e) => panic!("connect to {to}: {e} (expected refused)"),
            Ok(s) => {
                drop(s);
                "connected".to_string()
            }
        };
        assert!(
            Instant::now() < deadline,
            "{to} still answers ({answered}) {within:?} after its listener went"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A TLS listener the application drops (with an accept still in flight,
/// as an event loop leaves it) or closes releases its port: the next
/// connect is refused, not handshaken and dropped.
#[test]
fn a_dropped_or_closed_tls_listener_releases_its_port() {
    let scratch = Scratch::new("tls-close");
    let (a, b) = tls_hosts(&scratch);
    with_logs(&[&a, &b], || {
        let net = a.net().unwrap();
        let tls = b.tls().unwrap();

        let l = tls
            .listen(addr("0.0.0.0:4462"), 4, &TlsOptions::default())
            .unwrap();
        l.set_nonblocking(true).unwrap();
        let e = l.accept().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
        drop(l);
        wait_refused(&net, addr("10.0.0.2:4462"), Duration::from_secs(3));

        let l = tls
            .listen(addr("0.0.0.0:4463"), 4, &TlsOptions::default())
            .unwrap();
        l.close().unwrap();
        wait_refused(&net, addr("10.0.0.2:4463"), Duration::from_secs(1));

        // The port can be listened on again, and serves.
        let l = tls
            .listen(addr("0.0.0.0:4462"), 4, &TlsOptions::default())
            .unwrap();
        echo_server(l);
        let (s, _) = timed_connect(
            &a.tls().unwrap(),
            addr("10.0.0.2:4462"),
            Duration::from_secs(20),
        );
        drop(s);
    });
}

/// A tlsd of the test's own, beside host `a`'s netsrv, with its own
/// limits; killed when dropped.
struct OwnTlsd {
    child: std::process::Child,
    socket: std::path::PathBuf,
}

impl OwnTlsd {
    fn start(host: &Host, dir: &std::path::Path, limits: &[&str]) -> OwnTlsd {
        let tlsd = capnet::host::capnet_binary()
            .unwrap()
            .with_file_name("tlsd");
        let pki = capnet_tests::pki();
        let socket = dir.join("own-tls.sock");
        let child = std::process::Command::new(tlsd)
            .arg("--listen")
            .arg(&socket)
            .arg("--net")
            .arg(&host.socket)
            .arg("--cert")
            .arg(pki.join("server.pem"))
            .arg("--key")
            .arg(pki.join("server.key"))
            .arg("--roots")
            .arg(pki.join("ca.pem"))
            .args(limits)
            .env("CAPNET_LOG", "warn")
            .spawn()
            .expect("start tlsd");
        let t = OwnTlsd { child, socket };
        let deadline = Instant::now() + Duration::from_secs(10);
        while libclient::Tls::connect(&t.socket).is_err() {
            assert!(Instant::now() < deadline, "tlsd did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        t
    }

    fn tls(&self) -> libclient::Tls {
        libclient::Tls::connect(&self.socket).unwrap()
    }
}

impl Drop for OwnTlsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A user at its socket limit gets a clear `limit` error (counted) and
/// its next socket once one is given back; the handshake deadline is
/// tlsd's to set.
#[test]
fn socket_limits_and_the_handshake_deadline_are_configurable() {
    let scratch = Scratch::new("tls-limits");
    let (a, b) = tls_hosts(&scratch);
    with_logs(&[&a, &b], || {
        let own = OwnTlsd::start(
            &b,
            &scratch.0,
            &[
                "--max-sockets-per-client",
                "2",
                "--handshake-timeout-ms",
                "1000",
            ],
        );
        let tls = own.tls();
        let opts = TlsOptions::default();
        let first = tls.listen(addr("0.0.0.0:4470"), 4, &opts).unwrap();
        let second = tls.listen(addr("0.0.0.0:4471"), 4, &opts).unwrap();
        let e = tls.listen(addr("0.0.0.0:4472"), 4, &opts).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::QuotaExceeded, "{e}");
        // The socket word `limit`, as netsrv's limits say it.
        assert_eq!(libclient::TlsError::of(&e), None);
        assert!(e.to_string().contains("limit: uid"), "{e}");
        assert!(!e.to_string().contains("remote exception"), "{e}");
        // An incoming connection past the limit is closed at once.
        let net = a.net().unwrap();
        let refused = net.tcp_connect(addr("10.0.0.2:4470"), None).unwrap();
        refused
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 8];
        let r = (&refused).read(&mut buf);
        assert!(
            matches!(r, Ok(0)) || matches!(&r, Err(e) if e.kind() != std::io::ErrorKind::TimedOut),
            "{r:?}"
        );
        drop(refused);
        let stat = tls.stat().unwrap();
        assert_eq!((stat.limit_refused, stat.curr_sockets), (2, 2), "{stat:?}");

        // Sockets given back make room again: for a listener, then for a
        // connection to it, whose silent client is closed at the 1 s
        // deadline.
        first.close().unwrap();
        let third = tls.listen(addr("0.0.0.0:4472"), 4, &opts).unwrap();
        drop(second);
        let deadline = Instant::now() + Duration::from_secs(2);
        while tls.stat().unwrap().curr_sockets > 1 {
            assert!(
                Instant::now() < deadline,
                "a dropped listener kept its permit"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let silent = net.tcp_connect(addr("10.0.0.2:4472"), None).unwrap();
        let began = Instant::now();
        silent
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let r = (&silent).read(&mut buf);
        let took = began.elapsed();
        assert!(
            matches!(r, Ok(0)) || matches!(&r, Err(e) if e.kind() != std::io::ErrorKind::TimedOut),
            "{r:?} after {took:?}"
        );
        assert!(
            took >= Duration::from_millis(800) && took <= Duration::from_secs(3),
            "closed after {took:?}, not at the 1 s deadline"
        );
        assert_eq!(tls.stat().unwrap().handshake_timeouts, 1);
        drop(third);
    });
}

/// Out of file descriptors, tlsd turns new clients away for a while and
/// counts it; it does not exit, and serves again once descriptors are
/// free.
#[test]
fn tlsd_survives_running_out_of_file_descriptors() {
    let scratch = Scratch::new("tls-fds");
    let (a, b) = tls_hosts(&scratch);
    with_logs(&[&a, &b], || {
        let mut own = OwnTlsd::start(&b, &scratch.0, &[]);
        let pid = own.child.id();
        let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count() as u64;
        // Only the soft limit moves, so no privilege is needed to put it
        // back.
        let set_soft_limit = |soft: Option<u64>| -> u64 {
            let mut old = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: prlimit on our own child, reading into a valid struct.
            let r = unsafe {
                libc::prlimit(
                    pid as libc::pid_t,
                    libc::RLIMIT_NOFILE,
                    std::ptr::null(),
                    &mut old,
                )
            };
            assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
            if let Some(soft) = soft {
                let new = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: old.rlim_max,
                };
                // SAFETY: as above, with a valid new limit.
                let r = unsafe {
                    libc::prlimit(
                        pid as libc::pid_t,
                        libc::RLIMIT_NOFILE,
                        &new,
                        std::ptr::null_mut(),
                    )
                };
                assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
            }
            old.rlim_cur
        };
        let normal = set_soft_limit(Some(open + 16));
        // Far more clients than descriptors left.
        let crowd: Vec<_> = (0..64)
            .map(|_| std::os::unix::net::UnixStream::connect(&own.socket).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            own.child.try_wait().unwrap().is_none(),
            "tlsd exited when it ran out of descriptors"
        );
        drop(crowd);
        set_soft_limit(Some(normal));
        // Served again: a listener, a connection through it, the count.
        let deadline = Instant::now() + Duration::from_secs(10);
        let tls = loop {
            match libclient::Tls::connect(&own.socket).and_then(|t| t.stat().map(|_| t)) {
                Ok(t) => break t,
                Err(e) => {
                    assert!(Instant::now() < deadline, "tlsd does not serve again: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        let l = tls
            .listen(addr("0.0.0.0:4475"), 4, &TlsOptions::default())
            .unwrap();
        echo_server(l);
        let (s, _) = timed_connect(
            &a.tls().unwrap(),
            addr("10.0.0.2:4475"),
            Duration::from_secs(20),
        );
        drop(s);
        let stat = tls.stat().unwrap();
        assert!(stat.accept_errors >= 1, "{stat:?}");
    });
}
