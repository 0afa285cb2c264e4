//! The data plane against peers that write what it reads, flood it, or
//! spoof it (issue 10, holes 4 and 5), and a panic in it (it must end the
//! process, so that the supervisor restarts it).
//!
//! Host a has two ports: sim0 on wire0 to host b, where a good transfer
//! runs, and sim1 on wire1, whose other end is this test.

mod hostile_peer;

use capnet::host::Host;
use capnet_tests::{cli_ok, receive_all, send_pattern, sim_config, status_counter, Scratch};
use hostile_peer::{
    arp_request, is_tcp_to, rss_and_threads, tcp_frame, Mapped, Seg, WirePeer, ACK, RST, SYN,
};
use std::net::{Shutdown, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const A_SIM1_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 1, 0x99];

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn v4(s: &str) -> SocketAddrV4 {
    s.parse().unwrap()
}

/// Host a: sim0 (10.0.0.1/24, to host b) and sim1 (10.1.0.1/24, to the
/// test); `sim0_extra` inside sim0's [[port]], `extra` at the end.
fn config_a(sim0_extra: &str, extra: &str) -> String {
    format!(
        "{}[[port]]\nname = \"sim1\"\nbackend = \"sim\"\nwire = \"wire1.sock\"\n\
         mac = \"02:00:00:00:01:01\"\naddresses = [\"10.1.0.1/24\"]\n{extra}\n",
        sim_config(1, sim0_extra)
    )
}

/// Starts host a (with `bin` as its bin directory if given) and host b.
fn hosts(scratch: &Scratch, config_a: &str, config_b: &str, bin: Option<&Path>) -> (Host, Host) {
    let a_dir = scratch.0.join("a");
    let b_dir = scratch.0.join("b");
    let a = match bin {
        Some(bin) => Host::start_with_bin_dir(config_a, &a_dir, &a_dir, bin),
        None => Host::start(config_a, &a_dir, &a_dir),
    }
    .expect("host a");
    let b = Host::start(config_b, &b_dir, &a_dir).expect("host b");
    (a, b)
}

/// 16 MiB from a to b over wire0, checked byte for byte; returns the
/// thread, which panics on any error.
fn good_transfer(a: &Host, b: &Host, port: u16) -> std::thread::JoinHandle<()> {
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    let listener = nb.tcp_listen(addr(&format!("0.0.0.0:{port}")), 4).unwrap();
    std::thread::spawn(move || {
        let bytes = 16 << 20;
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            receive_all(&mut s).unwrap()
        });
        let mut s = na
            .tcp_connect(addr(&format!("10.0.0.2:{port}")), None)
            .unwrap();
        let sent = send_pattern(&mut s, 5, bytes).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let (n, got) = server.join().unwrap();
        assert_eq!(n, bytes);
        assert_eq!(got, sent);
    })
}

/// Waits for `t` to finish within `limit`, and re-raises its panic.
fn join_within(t: std::thread::JoinHandle<()>, limit: Duration, what: &str) {
    let deadline = Instant::now() + limit;
    while !t.is_finished() {
        assert!(
            Instant::now() < deadline,
            "{what} did not finish within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Err(p) = t.join() {
        std::panic::resume_unwind(p);
    }
}

fn pid_of(host: &Host, name: &str) -> u32 {
    let p = host.process(name).unwrap_or_else(|| panic!("no {name}"));
    assert_eq!(p.state, "running", "{p:?}");
    p.pid
}

/// Neither netsrv nor the drivers of host a restarted or died.
fn assert_nothing_restarted(a: &Host) {
    for name in ["netsrv", "nicdrv sim0", "nicdrv sim1"] {
        let p = a.process(name).unwrap();
        assert_eq!(
            (p.state.as_str(), p.restarts),
            ("running", 0),
            "{name}: {p:?}"
        );
    }
}

/// sim1 still answers: a SYN to a closed port gets a reset.
fn assert_sim1_answers(peer: &mut WirePeer, sport: u16) {
    peer.send(&arp_request(PEER_MAC, [10, 1, 0, 2], [10, 1, 0, 1]));
    let probe = Seg {
        src: SocketAddrV4::new([10, 1, 0, 2].into(), sport),
        dst: v4("10.1.0.1:7499"),
        seq: 1000,
        ack: 0,
        flags: SYN,
        payload: &[],
    };
    peer.send(&tcp_frame(A_SIM1_MAC, PEER_MAC, &probe));
    peer.flush();
    assert!(
        peer.wait_for(Duration::from_secs(5), |f| is_tcp_to(f, sport, RST)),
        "sim1 no longer answers a SYN"
    );
}

/// Hole 4: the driver's side of sim1 (its port region, which netsrv reads,
/// and the wire region, which the driver reads) keeps changing lengths
/// while frames pass; no check may be undone by a later read.
#[test]
fn lengths_flipped_in_shared_buffers_hurt_no_one() {
    let scratch = Scratch::new("dp-flip");
    let (a, b) = hosts(&scratch, &config_a("", ""), &sim_config(2, ""), None);
    let _listener = a
        .net()
        .unwrap()
        .tcp_listen(addr("0.0.0.0:7400"), 8)
        .unwrap();
    let mut peer = WirePeer::connect(&scratch.0.join("a/wires/wire1.sock"));
    let netsrv = pid_of(&a, "netsrv");
    let driver = pid_of(&a, "nicdrv sim1");
    let before = rss_and_threads(netsrv);

    // The hostile writer: in every buffer of both regions, the IPv4
    // total length, header length and TCP data offset change all the time.
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let stop = stop.clone();
        let port = Mapped::find(driver, "nicdrv-sim1");
        let wire = Mapped::find(driver, "capnet-wire");
        std::thread::spawn(move || {
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                let odd = round % 2 == 1;
                for (m, a_to_b) in [(&port, true), (&wire, false)] {
                    let layout = m.layout();
                    let data = m.data_offset(a_to_b);
                    for i in 0..layout.buffers as usize {
                        let at = data + i * layout.buf_size as usize;
                        m.write_u8(at + 14, if odd { 0x4f } else { 0x45 });
                        m.write_u8(at + 16, if odd { 0xff } else { 0x00 });
                        m.write_u8(at + 17, if odd { 0xff } else { 0x28 });
                        m.write_u8(at + 46, if odd { 0xf0 } else { 0x50 });
                    }
                }
            }
            round
        })
    };
    let good = good_transfer(&a, &b, 7401);
    // Valid segments into sim1 meanwhile: SYNs to the listener, data to
    // nobody.
    peer.send(&arp_request(PEER_MAC, [10, 1, 0, 2], [10, 1, 0, 1]));
    let payload = [0x5a; 1000];
    let mut sent = 0u64;
    // At least 100 000 frames, and on while the transfer runs.
    while sent < 400_000 && (sent < 100_000 || !good.is_finished()) {
        let sport = 1024 + (sent % 60000) as u16;
        let src = SocketAddrV4::new([10, 1, 0, 2].into(), sport);
        let seg = if sent.is_multiple_of(2) {
            Seg {
                src,
                dst: v4("10.1.0.1:7400"),
                seq: 7,
                ack: 0,
                flags: SYN,
                payload: &[],
            }
        } else {
            Seg {
                src,
                dst: v4("10.1.0.1:9"),
                seq: 7,
                ack: 9,
                flags: ACK,
                payload: &payload[..(sent % 1000) as usize],
            }
        };
        let frame = tcp_frame(A_SIM1_MAC, PEER_MAC, &seg);
        if !peer.send(&frame) {
            break;
        }
        sent += 1;
        if sent.is_multiple_of(32) {
            peer.flush();
            peer.receive(|_| {});
        }
    }
    peer.flush();
    join_within(good, Duration::from_secs(120), "the good transfer");
    stop.store(true, Ordering::Relaxed);
    let rounds = flipper.join().unwrap();
    eprintln!("{sent} frames into sim1, {rounds} rounds of flipping");
    assert!(rounds > 100, "the flipping hardly ran");

    assert_nothing_restarted(&a);
    assert_sim1_answers(&mut peer, 40000);
    let after = rss_and_threads(netsrv);
    eprintln!("netsrv rss/threads before {before:?} after {after:?}");
    assert!(
        after.0 < before.0 + 64 * 1024,
        "netsrv grew: {before:?} -> {after:?}"
    );
    assert!(
        after.1 <= before.1 + 2,
        "netsrv threads: {before:?} -> {after:?}"
    );
}

/// A panic in netsrv's data plane (here from a test hook) ends netsrv; the
/// supervisor restarts it and the network works again.
#[test]
fn a_panic_in_the_data_plane_ends_netsrv_and_it_comes_back() {
    let scratch = Scratch::new("dp-panic");
    // netsrv removes the trigger; started as root, it is a user of its own
    // by then.
    let hook_dir = scratch.0.join("hook");
    std::fs::create_dir_all(&hook_dir).unwrap();
    std::fs::set_permissions(
        &hook_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let trigger = hook_dir.join("panic-now");
    let bin = hostile_peer::hooked_bin_dir(
        &scratch.0,
        "netsrv",
        "--listen",
        &[(netsrv::test_hooks::PANIC_FILE, trigger.to_str().unwrap())],
    );
    let (a, b) = hosts(&scratch, &sim_config(1, ""), &sim_config(2, ""), Some(&bin));
    let first = pid_of(&a, "netsrv");
    std::fs::write(&trigger, b"").unwrap();
    // Traffic makes the stack poll.
    let _ = a.net().unwrap().tcp_connect(addr("10.0.0.2:9"), None);
    let p = a
        .wait_process(
            "netsrv",
            |p| p.restarts >= 1 && p.state == "running" && p.pid != first,
            Duration::from_secs(20),
        )
        .unwrap_or_else(|e| panic!("netsrv was not restarted: {e}\n{}", a.log()));
    assert!(p.last_exit.contains("signal"), "{p:?}");
    assert!(!trigger.exists(), "the hook removes its trigger");
    // The new netsrv serves.
    let deadline = Instant::now() + Duration::from_secs(20);
    let net = loop {
        match a.net() {
            Ok(n) if n.tcp_listen(addr("0.0.0.0:7501"), 1).is_ok() => break n,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("the restarted netsrv does not serve: {e}"),
            Ok(_) => panic!("the restarted netsrv does not serve"),
        }
    };
    drop(net);
    join_within(
        good_transfer(&a, &b, 7502),
        Duration::from_secs(120),
        "the transfer",
    );
}

/// The offload line of netsrv's status.
fn offload_line(host: &Host) -> String {
    let status = cli_ok(host, &["status"]);
    status
        .lines()
        .find(|l| l.starts_with("offload:"))
        .unwrap_or_else(|| panic!("no offload line in status:\n{status}"))
        .to_string()
}

/// Hole 5: a flood of SYNs with 300 000 different 4-tuples (to a listener
/// and to closed ports) leaves netsrv's memory where it was.
#[test]
fn a_syn_flood_leaves_netsrv_bounded() {
    let scratch = Scratch::new("dp-synflood");
    let (a, b) = hosts(&scratch, &config_a("", ""), &sim_config(2, ""), None);
    let _listener = a
        .net()
        .unwrap()
        .tcp_listen(addr("0.0.0.0:7700"), 8)
        .unwrap();
    let mut peer = WirePeer::connect(&scratch.0.join("a/wires/wire1.sock"));
    let netsrv = pid_of(&a, "netsrv");
    let before = rss_and_threads(netsrv);
    let good = good_transfer(&a, &b, 7701);
    peer.send(&arp_request(PEER_MAC, [10, 1, 0, 2], [10, 1, 0, 1]));
    let mut sent = 0u32;
    while sent < 300_000 {
        let seg = Seg {
            src: SocketAddrV4::new([10, 1, 0, 2].into(), 1024 + (sent % 60000) as u16),
            dst: SocketAddrV4::new([10, 1, 0, 1].into(), 7700 + (sent / 60000) as u16),
            seq: sent.wrapping_mul(2654435761),
            ack: 0,
            flags: SYN,
            payload: &[],
        };
        assert!(
            peer.send(&tcp_frame(A_SIM1_MAC, PEER_MAC, &seg)),
            "wire1 stalled"
        );
        sent += 1;
        if sent.is_multiple_of(32) {
            peer.flush();
            peer.receive(|_| {});
        }
    }
    peer.flush();
    join_within(good, Duration::from_secs(120), "the good transfer");
    // Let netsrv take what is still on the wire.
    std::thread::sleep(Duration::from_millis(500));
    peer.receive(|_| {});
    assert_nothing_restarted(&a);
    assert_sim1_answers(&mut peer, 40001);
    let after = rss_and_threads(netsrv);
    eprintln!("{sent} SYNs; netsrv rss/threads before {before:?} after {after:?}");
    assert!(
        after.0 < before.0 + 24 * 1024,
        "netsrv grew: {before:?} -> {after:?}"
    );
    assert!(
        after.1 <= before.1 + 2,
        "netsrv threads: {before:?} -> {after:?}"
    );
}

/// Hole 5: SYNs and SYN-ACKs with the 4-tuple of a live TLS flow whose
/// receive side the NIC decrypts (the table is one for every port, so they
/// come in on sim1) do not disturb it: 16 MiB arrive intact and the
/// receive marks never lose track.
#[test]
fn a_spoofed_syn_leaves_an_offloaded_flow_alone() {
    use libclient::{RecordMode, TlsOptions};
    let scratch = Scratch::new("dp-spoof");
    let tls = capnet_tests::tls_section(None);
    let (a, b) = hosts(
        &scratch,
        &config_a("tls_offload = true", &tls),
        &format!("{}{tls}", sim_config(2, "tls_offload = true")),
        None,
    );
    let mut peer = WirePeer::connect(&scratch.0.join("a/wires/wire1.sock"));
    let options = TlsOptions::default();
    let listener = b
        .tls()
        .unwrap()
        .listen(addr("0.0.0.0:7800"), 4, &options)
        .unwrap();
    let bytes = 16 << 20;
    let server = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let sent = send_pattern(&mut &s, 9, bytes).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut &s, &mut rest);
        sent
    });
    let s = a
        .tls()
        .unwrap()
        .connect_stream(addr("10.0.0.2:7800"), "capnet.test", &options)
        .unwrap();
    let SocketAddr::V4(local) = s.local_addr().unwrap() else {
        panic!("an IPv4 flow")
    };
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        std::thread::spawn(move || {
            let got = receive_all(&mut &s).unwrap();
            done.store(true, Ordering::Relaxed);
            (got, s.info().unwrap())
        })
    };
    let mut spoofed = 0u32;
    while !done.load(Ordering::Relaxed) && spoofed < 200_000 {
        let seg = Seg {
            src: v4("10.0.0.2:7800"),
            dst: local,
            seq: spoofed.wrapping_mul(2654435761),
            ack: spoofed.wrapping_mul(40503),
            flags: if spoofed.is_multiple_of(2) {
                SYN
            } else {
                SYN | ACK
            },
            payload: &[],
        };
        assert!(
            peer.send(&tcp_frame(A_SIM1_MAC, PEER_MAC, &seg)),
            "wire1 stalled"
        );
        spoofed += 1;
        if spoofed.is_multiple_of(16) {
            peer.flush();
            peer.receive(|_| {});
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    peer.flush();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !reader.is_finished() {
        assert!(Instant::now() < deadline, "the TLS transfer is stuck");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ((n, got), info) = reader.join().unwrap();
    let sent = server.join().unwrap();
    let line = offload_line(&a);
    eprintln!("{spoofed} spoofed SYNs; a: {line}; client {info:?}");
    assert_eq!(n, bytes);
    assert_eq!(got, sent);
    assert_eq!(info.rx, RecordMode::Device, "{info:?}");
    assert!(status_counter(&line, "decrypted") > 0, "{line}");
    assert!(spoofed > 100, "the spoofing hardly ran");
}
