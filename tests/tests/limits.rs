//! What one client may cost the services: allocation bombs and pipelined
//! calls over capnp, sockets until refused, file descriptors until accept
//! fails. Each attack costs the attacker, never another client, and the
//! attacked service stays small and alive.

use capnet::host::Host;
use capnet_ring::handoff::CONNECT_RPC;
use capnet_schema::net_capnp::{net, tcp_socket};
use capnet_schema::tls_capnp::{tls, tls_socket};
use capnet_schema::transport;
use capnet_tests::{cli_ok, good_transfer, status_counter, tls_section, two_hosts, Scratch};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A field of /proc/PID/status ("VmRSS" in KiB, "Threads").
fn proc_status(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn pid_of(host: &Host, name: &str) -> u32 {
    let p = host.process(name).expect(name);
    assert!(p.pid != 0, "{name} is not running");
    p.pid
}

/// The nine-byte allocation bomb: `R`, then a segment table announcing one
/// segment of 0x03ffffff words (512 MiB). Kept open: the old reader
/// allocated the whole message and waited for its body.
fn bomb(socket: &Path) -> UnixStream {
    let mut s = UnixStream::connect(socket).unwrap();
    s.write_all(&[CONNECT_RPC, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x03])
        .unwrap();
    s
}

#[derive(Clone, Copy)]
enum Service {
    Net,
    Tls,
}

/// Pipelines `calls` calls of 1 MiB each on a socket that never comes: the
/// answer of an `accept` on a listener nobody connects to. Each call waits
/// in the service with its parameters until the accept answers. Runs on
/// its own thread until the returned sender is dropped.
fn flood(socket: &Path, service: Service, port: u16, calls: usize) -> mpsc::Sender<()> {
    let socket = socket.to_path_buf();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel();
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
            let s = tokio::net::UnixStream::from_std(s).unwrap();
            let local = |r: &mut capnet_schema::common_capnp::socket_addr::Builder<'_>| {
                r.set_ip(&[0, 0, 0, 0]);
                r.set_port(port);
            };
            let (target, type_id, _keep): (capnp::capability::Client, u64, Box<dyn std::any::Any>) =
                match service {
                    Service::Net => {
                        let net: net::Client = transport::connect(s);
                        let mut req = net.tcp_listen_request();
                        local(&mut req.get().init_local());
                        req.get().set_backlog(1);
                        let l = req.send().promise.await.unwrap();
                        let l = l.get().unwrap().get_listener().unwrap();
                        let accept = l.accept_request().send();
                        let sock = accept.pipeline.get_socket();
                        (
                            sock.client,
                            <tcp_socket::Client as capnp::traits::HasTypeId>::TYPE_ID,
                            Box::new((l, accept.promise)),
                        )
                    }
                    Service::Tls => {
                        let tls: tls::Client = transport::connect(s);
                        let mut req = tls.listen_request();
                        local(&mut req.get().init_local());
                        req.get().set_backlog(1);
                        let l = req.send().promise.await.unwrap();
                        let l = l.get().unwrap().get_listener().unwrap();
                        let accept = l.accept_request().send();
                        let sock = accept.pipeline.get_socket();
                        (
                            sock.client,
                            <tls_socket::Client as capnp::traits::HasTypeId>::TYPE_ID,
                            Box::new((l, accept.promise)),
                        )
                    }
                };
            let blob = vec![0x5au8; 1 << 20];
            let mut pending = Vec::new();
            for _ in 0..calls {
                let mut req = target
                    .new_call::<capnp::any_pointer::Owned, capnp::any_pointer::Owned>(
                        type_id, 0, None,
                    );
                req.get().set_as::<capnp::data::Owned>(&blob[..]).unwrap();
                pending.push(req.send().promise);
            }
            ready_tx.send(()).unwrap();
            while done_rx.try_recv() == Err(mpsc::TryRecvError::Empty) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            drop(pending);
        });
    });
    ready_rx.recv().unwrap();
    done_tx
}

/// The largest VmRSS (KiB) of each pid over `span`.
fn peak_rss(pids: &[u32], span: Duration) -> Vec<u64> {
    let mut peak = vec![0; pids.len()];
    let end = Instant::now() + span;
    while Instant::now() < end {
        for (p, pid) in peak.iter_mut().zip(pids) {
            *p = (*p).max(proc_status(*pid, "VmRSS"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    peak
}

#[test]
fn allocation_bombs_and_pipelined_calls_cost_the_services_little() {
    let scratch = Scratch::new("limits-bomb");
    let (a, b) = two_hosts(&scratch, &format!("\n{}", tls_section(None)));
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    // Warm both services up, then take their sizes.
    let (warm, _) = good_transfer(&na, &nb, 5200, 4 << 20);
    warm.join().unwrap();
    let pids = [pid_of(&a, "netsrv"), pid_of(&a, "tlsd")];
    let before: Vec<u64> = pids.iter().map(|p| proc_status(*p, "VmRSS")).collect();
    let threads: Vec<u64> = pids.iter().map(|p| proc_status(*p, "Threads")).collect();

    let (good, up) = good_transfer(&na, &nb, 5201, 64 << 20);
    up.recv().unwrap();
    let tls_socket = a.run_dir.join("tls.sock");
    let bombs: Vec<UnixStream> = (0..4)
        .map(|_| bomb(&a.socket))
        .chain((0..2).map(|_| bomb(&tls_socket)))
        .collect();
    let floods = [
        flood(&a.socket, Service::Net, 5210, 96),
        flood(&a.socket, Service::Net, 5211, 96),
        flood(&tls_socket, Service::Tls, 5212, 96),
    ];
    let peak = peak_rss(&pids, Duration::from_secs(3));
    good.join().unwrap();
    for (i, name) in ["netsrv", "tlsd"].iter().enumerate() {
        let grew = peak[i].saturating_sub(before[i]);
        eprintln!(
            "{name}: VmRSS {} KiB before, {} KiB at the peak of the attack",
            before[i], peak[i]
        );
        assert!(
            grew < 64 << 10,
            "{name} grew by {grew} KiB under attack ({} -> {} KiB)",
            before[i],
            peak[i]
        );
        let t = proc_status(pids[i], "Threads");
        assert!(t <= threads[i] + 8, "{name} threads {} -> {t}", threads[i]);
    }
    drop(floods);
    drop(bombs);
    // Both services still serve, the same processes, and counted.
    assert_eq!(pid_of(&a, "netsrv"), pids[0]);
    assert_eq!(pid_of(&a, "tlsd"), pids[1]);
    let status = cli_ok(&a, &["status"]);
    assert!(status_counter(&status, "oversize") >= 4, "{status}");
    assert!(status_counter(&status, "stalls") >= 1, "{status}");
    let (again, _) = good_transfer(&a.net().unwrap(), &nb, 5202, 1 << 20);
    again.join().unwrap();
}

#[test]
fn a_client_that_opens_sockets_until_refused_gets_limit_and_others_still_work() {
    let scratch = Scratch::new("limits-sockets");
    let (a, b) = two_hosts(&scratch, "\n[limits]\nsockets = 64\nuser_sockets = 100\n");
    // Every test client is the same user: the second hog meets the user's
    // limit, not its own.
    let hog = a.net().unwrap();
    let mut held = Vec::new();
    let err = loop {
        match hog.udp_bind(addr("0.0.0.0:0")) {
            Ok(s) => held.push(s),
            Err(e) => break e,
        }
        assert!(held.len() <= 64, "a client got more than its 64 sockets");
    };
    assert_eq!(held.len(), 64);
    assert_eq!(err.kind(), std::io::ErrorKind::QuotaExceeded, "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with("limit: this client holds 64 sockets"),
        "{text}"
    );
    assert!(
        !text.contains("remote exception") && !text.contains("Failed"),
        "{text}"
    );

    let hog2 = a.net().unwrap();
    let mut held2 = Vec::new();
    let err = loop {
        match hog2.tcp_listen(addr("0.0.0.0:0"), 1) {
            Ok(l) => held2.push(l),
            Err(e) => break e,
        }
        assert!(held2.len() <= 36, "a user got more than its 100 sockets");
    };
    assert_eq!(held2.len(), 36);
    assert!(
        err.to_string().contains("over all its connections"),
        "{err}"
    );
    drop(held2);
    drop(hog2);

    // Another client connects and moves data while the first hog holds
    // its sockets.
    let nb = b.net().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let good = loop {
        // The second hog's sockets are given back as its capabilities go.
        let na = a.net().unwrap();
        match na.tcp_listen(addr("0.0.0.0:0"), 1) {
            Ok(_) => break good_transfer(&na, &nb, 5300, 16 << 20).0,
            Err(e) if Instant::now() < deadline => {
                assert_eq!(e.kind(), std::io::ErrorKind::QuotaExceeded, "{e}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("the second hog's sockets never came back: {e}"),
        }
    };
    good.join().unwrap();
    let status = cli_ok(&a, &["status"]);
    assert!(status_counter(&status, "sockets") >= 2, "{status}");
    drop(held);
}

/// Sets (or only reads) a process's RLIMIT_NOFILE; returns the old one.
/// Set as the process's own user (prlimit(1) run under its uid and gid):
/// a service started as root became a user of its own, and touching
/// another user's limits needs CAP_SYS_RESOURCE, which a container's root
/// may lack.
fn nofile(pid: u32, new: Option<libc::rlimit>) -> libc::rlimit {
    use std::os::unix::process::CommandExt;
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files in /proc/PID/limits");
    let nums: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let old = libc::rlimit {
        rlim_cur: nums[0],
        rlim_max: nums[1],
    };
    if let Some(new) = new {
        let id = |field: &str| -> u32 { capnet_tests::proc_field(pid, field)[0].parse().unwrap() };
        let out = std::process::Command::new("prlimit")
            .arg("--pid")
            .arg(pid.to_string())
            .arg(format!("--nofile={}:{}", new.rlim_cur, new.rlim_max))
            .uid(id("Uid:"))
            .gid(id("Gid:"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "prlimit: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    old
}

#[test]
fn a_client_that_exhausts_descriptors_makes_nobody_else_fail() {
    let scratch = Scratch::new("limits-fds");
    // The attacker may hold many connections: the descriptors run out first.
    let (a, b) = two_hosts(&scratch, "\n[limits]\nconnections_per_user = 100000\n");
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    let netsrv = pid_of(&a, "netsrv");
    let (good, up) = good_transfer(&na, &nb, 5400, 64 << 20);
    up.recv().unwrap();
    // Leave netsrv a few descriptors beyond what it holds now (the soft
    // limit only: raising a hard limit back needs a capability).
    let open = std::fs::read_dir(format!("/proc/{netsrv}/fd"))
        .unwrap()
        .count() as u64;
    let old = nofile(netsrv, None);
    nofile(
        netsrv,
        Some(libc::rlimit {
            rlim_cur: open + 16,
            rlim_max: old.rlim_max,
        }),
    );
    let attack: Vec<UnixStream> = (0..200)
        .filter_map(|_| {
            let mut s = UnixStream::connect(&a.socket).ok()?;
            s.write_all(&[CONNECT_RPC]).ok()?;
            Some(s)
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    // netsrv is out of descriptors, and still the same running process.
    assert_eq!(pid_of(&a, "netsrv"), netsrv, "netsrv was restarted");
    good.join().unwrap();
    drop(attack);
    nofile(netsrv, Some(old));
    // A new client connects and transfers.
    let (again, _) = good_transfer(&a.net().unwrap(), &nb, 5401, 4 << 20);
    again.join().unwrap();
    assert_eq!(pid_of(&a, "netsrv"), netsrv);
    let status = cli_ok(&a, &["status"]);
    assert!(status_counter(&status, "accept-errors") >= 1, "{status}");
}

#[test]
fn a_user_over_its_connections_hears_limit_and_the_others_stay() {
    let scratch = Scratch::new("limits-conns");
    let (a, _b) = two_hosts(&scratch, "\n[limits]\nconnections_per_user = 4\n");
    let held: Vec<UnixStream> = (0..4)
        .map(|_| {
            let mut s = UnixStream::connect(&a.socket).unwrap();
            s.write_all(&[CONNECT_RPC]).unwrap();
            s
        })
        .collect();
    // Wait until netsrv has accepted all four.
    std::thread::sleep(Duration::from_millis(300));
    let over = a.net().and_then(|n| n.udp_bind(addr("0.0.0.0:0")));
    let Err(err) = over else {
        panic!("a fifth connection was served")
    };
    assert_eq!(err.kind(), std::io::ErrorKind::QuotaExceeded, "{err}");
    assert!(err.to_string().contains("holds 4 connections"), "{err}");
    drop(held);
    // The connections given back, the user is served again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match a.net().and_then(|n| n.udp_bind(addr("0.0.0.0:0"))) {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                assert_eq!(e.kind(), std::io::ErrorKind::QuotaExceeded, "{e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("still refused: {e}"),
        }
    }
    let status = cli_ok(&a, &["status"]);
    assert!(status_counter(&status, "connections") >= 1, "{status}");
}

#[test]
fn calls_beyond_a_clients_limit_fail_with_limit_and_the_rest_wait() {
    let scratch = Scratch::new("limits-calls");
    let (a, _b) = two_hosts(&scratch, "\n[limits]\ncalls = 8\n");
    let socket = a.socket.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let (limited, waiting) = local.block_on(&rt, async move {
        let mut s = UnixStream::connect(&socket).unwrap();
        s.write_all(&[CONNECT_RPC]).unwrap();
        s.set_nonblocking(true).unwrap();
        let net: net::Client = transport::connect(tokio::net::UnixStream::from_std(s).unwrap());
        let mut req = net.tcp_listen_request();
        let mut local_addr = req.get().init_local();
        local_addr.set_ip(&[0, 0, 0, 0]);
        local_addr.set_port(5500);
        let l = req.send().promise.await.unwrap();
        let l = l.get().unwrap().get_listener().unwrap();
        // Twenty accepts nobody will answer: eight may wait.
        let accepts: Vec<_> = (0..20).map(|_| l.accept_request().send().promise).collect();
        let (mut limited, mut waiting) = (0, 0);
        for accept in accepts {
            match tokio::time::timeout(Duration::from_millis(500), accept).await {
                Err(_) => waiting += 1,
                Ok(Err(e)) => {
                    assert!(e.extra.contains("limit: this client holds 8 calls"), "{e}");
                    limited += 1;
                }
                Ok(Ok(_)) => panic!("an accept answered without a connection"),
            }
        }
        (limited, waiting)
    });
    assert_eq!((limited, waiting), (12, 8));
    let status = cli_ok(&a, &["status"]);
    assert!(status_counter(&status, "calls") >= 12, "{status}");
}

/// examples/capnet.toml documents the defaults: they must be netsrv's.
#[test]
fn the_documented_limits_are_netsrvs_defaults() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/capnet.toml");
    let l = capnet::config::Config::load(&example).unwrap().limits;
    let d = netsrv::limits::Limits::default();
    let pairs = [
        (l.sockets, d.sockets),
        (l.buffer_bytes, d.buffer_bytes),
        (l.socket_buffer_max, d.socket_buffer_max),
        (l.subscriptions, d.subscriptions),
        (l.calls, d.calls),
        (l.user_sockets, d.user_sockets),
        (l.user_buffer_bytes, d.user_buffer_bytes),
        (l.user_subscriptions, d.user_subscriptions),
        (l.user_calls, d.user_calls),
        (l.connections_per_user, d.connections_per_user),
    ];
    for (i, (documented, default)) in pairs.into_iter().enumerate() {
        assert_eq!(documented, Some(default), "setting {i} of [limits]");
    }
}

/// The `status` line of host's TCP connection on `port`.
fn tcp_status(host: &Host, port: u16) -> String {
    let status = cli_ok(host, &["status"]);
    status
        .lines()
        .find(|l| l.trim_start().starts_with("tcp ") && l.contains(&format!(":{port} ")))
        .unwrap_or_else(|| panic!("no connection on port {port}:\n{status}"))
        .to_string()
}

/// The bound of the receive queue of host's TCP connection on `port`, from
/// `status` ("recvq held/bound").
fn recv_bound(host: &Host, port: u16) -> usize {
    let line = tcp_status(host, port);
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == "recvq")
        .unwrap_or_else(|| panic!("no recvq in {line:?}"));
    // The round trip as `ss -ti` shows it: smoothed, then the least seen.
    let rtt = words.iter().position(|w| *w == "rtt").unwrap();
    let (srtt, min) = words[rtt + 1]
        .trim_end_matches("us")
        .split_once('/')
        .unwrap();
    let (srtt, min): (u64, u64) = (srtt.parse().unwrap(), min.parse().unwrap());
    assert!(min > 0 && min <= srtt, "{line}");
    words[at + 1].split('/').nth(1).unwrap().parse().unwrap()
}

/// Autotuning grows a bulk connection's queues (the receiver's window past
/// its first 64 KiB) and pays for it from the client's buffer budget: a
/// client whose budget has no room left keeps its first queues, is told
/// nothing, and its transfer completes all the same.
#[test]
fn autotuned_queues_are_paid_from_the_clients_buffer_budget() {
    // A listener (backlog 1: two 128 KiB connections' worth), the accepted
    // connection (128 KiB) and its rings (512 KiB) leave 128 KiB of 1 MiB
    // to grow into.
    // Without segmentation offload a receive buffer holds one segment;
    // with it, a coalesced frame of up to 64 KiB.
    const MTU_HALF: usize = 512 * 1460 / 2;
    for (config, ceiling) in [
        ("segmentation = false\n", Some(MTU_HALF)),
        ("", Some(2 << 20)),
        ("\n[limits]\nbuffer_bytes = 1048576\n", None),
    ] {
        let scratch = Scratch::new("limits-autotune");
        let (a, b) = two_hosts(&scratch, config);
        let (na, nb) = (a.net().unwrap(), b.net().unwrap());
        let listener = nb.tcp_listen(addr("0.0.0.0:5400"), 1).unwrap();
        let (tx, rx) = mpsc::channel();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; 256 << 10];
            let mut n = 0u64;
            loop {
                match std::io::Read::read(&mut s, &mut buf).unwrap() {
                    0 => break,
                    k => n += k as u64,
                }
            }
            tx.send(n).unwrap();
            // Held open until the bounds were read.
            std::thread::sleep(Duration::from_secs(2));
        });
        let mut c = na.tcp_connect(addr("10.0.0.2:5400"), None).unwrap();
        let chunk = vec![0x5au8; 256 << 10];
        for _ in 0..128 {
            c.write_all(&chunk).unwrap();
        }
        c.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(rx.recv().unwrap(), 32 << 20);
        let bound = recv_bound(&b, 5400);
        // The sender's queue starts in the socket's ring (256 KiB) and
        // leaves it when autotuning grows it further, if the budget pays.
        let sender = tcp_status(&a, 5400);
        assert_eq!(
            sender.contains("(ring)"),
            ceiling.is_none(),
            "{config:?}: {sender}"
        );
        match ceiling {
            // Up to half of what the sim port's receive ring holds (512
            // buffers), and no further than `[limits] socket_buffer_max`
            // (2 MiB by default).
            Some(ceiling) => {
                assert!(bound >= 256 << 10, "the window hardly grew: {bound}");
                assert!(bound <= ceiling, "{config:?}: over {ceiling}: {bound}");
            }
            // 128 KiB were left: one step to 128 KiB fits, the next not.
            None => assert!(bound <= 128 << 10, "grew past the client's budget: {bound}"),
        }
        server.join().unwrap();
    }
}
