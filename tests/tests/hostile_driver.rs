//! A hostile NIC driver costs only its own port (issue 10, hole 9).
//!
//! Host a has two ports: sim0 on wire0 to host b, where a good transfer
//! runs, and sim1, whose driver misbehaves: it lies about its MTU (frames
//! of that size do not fit its ring buffers), never answers, never hands
//! over its rings, or returns descriptors that name nothing. netsrv must
//! refuse or fail that port alone, say why in plain words, and go on
//! serving sim0.

mod hostile_peer;

use capnet::host::Host;
use capnet_tests::{receive_all, send_pattern, sim_config, snapshot, Scratch};
use hostile_peer::{arp_request, rss_and_threads, Mapped, WirePeer};
use std::net::{Shutdown, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Host a: sim0 (10.0.0.1/24, to host b) and sim1 (10.1.0.1/24).
/// Host a: sim0 as usual, and sim1 for the hostile driver. sim1's rings
/// hold one MTU frame each (no segmentation offload), so that an MTU lie
/// shows against its buffers.
fn config_a() -> String {
    format!(
        "{}[[port]]\nname = \"sim1\"\nbackend = \"sim\"\nwire = \"wire1.sock\"\n\
         mac = \"02:00:00:00:01:01\"\naddresses = [\"10.1.0.1/24\"]\nsegmentation = false\n",
        sim_config(1, "")
    )
}

fn hosts(scratch: &Scratch, bin: Option<&Path>) -> (Host, Host) {
    let a_dir = scratch.0.join("a");
    let b_dir = scratch.0.join("b");
    let started = Instant::now();
    let a = match bin {
        Some(bin) => Host::start_with_bin_dir(&config_a(), &a_dir, &a_dir, bin),
        None => Host::start(&config_a(), &a_dir, &a_dir),
    }
    .expect("host a starts with a hostile driver on sim1");
    eprintln!("host a ready after {:?}", started.elapsed());
    let b = Host::start(&sim_config(2, ""), &b_dir, &a_dir).expect("host b");
    (a, b)
}

/// 16 MiB from a to b over wire0, checked byte for byte, within 2 minutes.
fn good_transfer(a: &Host, b: &Host, port: u16) {
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    let listener = nb.tcp_listen(addr(&format!("0.0.0.0:{port}")), 4).unwrap();
    let t = std::thread::spawn(move || {
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
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    while !t.is_finished() {
        assert!(Instant::now() < deadline, "the good transfer is stuck");
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Err(p) = t.join() {
        std::panic::resume_unwind(p);
    }
}

/// Waits for sim1 to be in `states`; returns the state.
fn wait_sim1(a: &Host, states: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let state = snapshot(a).port("sim1").state.clone();
        if states.contains(&state.as_str()) {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "sim1 is {state}, not one of {states:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Makes netsrv send sim1 a frame as large as the port's MTU allows: a
/// neighbour on wire1 (this test) and an 8000-byte datagram to it.
fn big_frame_to_sim1(a: &Host, scratch: &Scratch) -> WirePeer {
    let mut peer = WirePeer::connect(&scratch.0.join("a/wires/wire1.sock"));
    peer.send(&arp_request(
        [2, 0, 0, 0, 1, 0x99],
        [10, 1, 0, 2],
        [10, 1, 0, 1],
    ));
    peer.flush();
    std::thread::sleep(Duration::from_millis(200));
    let udp = a.net().unwrap().udp_bind(addr("0.0.0.0:7600")).unwrap();
    let _ = udp.send_to(&[0x42; 8000], addr("10.1.0.2:9"));
    std::thread::sleep(Duration::from_millis(200));
    peer.receive(|_| {});
    peer
}

/// The driver of sim1 misbehaves as `kind` (nicdrv's test hook).
fn hostile_driver_costs_only_its_port(kind: &str, reason: &str) {
    let scratch = Scratch::new(&format!("hostile-driver-{kind}"));
    let bin = hostile_peer::hooked_bin_dir(
        &scratch.0,
        "nicdrv",
        "--name sim1",
        &[(nicdrv::misbehave::VAR, kind)],
    );
    let (a, b) = hosts(&scratch, Some(&bin));
    let netsrv = a.process("netsrv").unwrap();
    let before = rss_and_threads(netsrv.pid);
    let _peer = big_frame_to_sim1(&a, &scratch);
    good_transfer(&a, &b, 7601);
    let state = wait_sim1(&a, &["detached"]);
    let now = a.process("netsrv").unwrap();
    assert_eq!(
        (now.state.as_str(), now.restarts, now.pid),
        ("running", 0, netsrv.pid),
        "{now:?}"
    );
    let after = rss_and_threads(netsrv.pid);
    eprintln!("{kind}: sim1 {state}; netsrv rss/threads {before:?} -> {after:?}");
    assert!(after.0 < before.0 + 64 * 1024, "{before:?} -> {after:?}");
    assert!(after.1 <= before.1 + 2, "{before:?} -> {after:?}");
    let log = a.log();
    let line = log
        .lines()
        .find(|l| l.contains("driver refused"))
        .unwrap_or_else(|| panic!("no refusal logged:\n{log}"));
    assert!(line.contains(reason), "{line}");
    assert!(!line.contains("remote exception"), "{line}");
    // And counted where an operator looks.
    let status = capnet_tests::cli_ok(&a, &["status"]);
    let refused = status
        .split("drivers: attaches ")
        .nth(1)
        .and_then(|t| t.split(" refused ").nth(1))
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(refused.is_some_and(|n| n >= 1), "{status}");
}

#[test]
fn a_driver_that_lies_about_its_mtu_costs_only_its_port() {
    hostile_driver_costs_only_its_port("mtu", "does not fit its 1536-byte ring buffers");
}

#[test]
fn a_driver_that_never_answers_costs_only_its_port() {
    hostile_driver_costs_only_its_port("silent", "did not answer info within");
}

#[test]
fn a_driver_that_never_hands_over_its_rings_costs_only_its_port() {
    hostile_driver_costs_only_its_port("handoff", "did not hand over its rings");
}

/// The driver's side of sim1's rings is overwritten with descriptors that
/// name no buffer while a transfer runs on sim0: netsrv detaches it.
#[test]
fn a_driver_that_returns_bad_descriptors_costs_only_its_port() {
    let scratch = Scratch::new("hostile-driver-descriptors");
    let (a, b) = hosts(&scratch, None);
    let netsrv = a.process("netsrv").unwrap();
    wait_sim1(&a, &["up", "down"]);
    let driver = a.process("nicdrv sim1").unwrap().pid;
    let stop = Arc::new(AtomicBool::new(false));
    let scribbler = {
        let stop = stop.clone();
        let port = Mapped::find(driver, "nicdrv-sim1");
        std::thread::spawn(move || {
            let from = port.active_queue_offset(true);
            let to = port.data_offset(true);
            while !stop.load(Ordering::Relaxed) {
                for at in from..to {
                    port.write_u8(at, 0xff);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    good_transfer(&a, &b, 7602);
    let state = wait_sim1(&a, &["detached"]);
    assert!(
        a.log().contains("driver broke the ring contract"),
        "{}",
        a.log()
    );
    stop.store(true, Ordering::Relaxed);
    scribbler.join().unwrap();
    good_transfer(&a, &b, 7603);
    let now = a.process("netsrv").unwrap();
    assert_eq!(
        (now.state.as_str(), now.restarts, now.pid),
        ("running", 0, netsrv.pid),
        "sim1 {state}: {now:?}"
    );
}

/// sim1's driver keeps every doorbell of its port blocking and full (its
/// own, and copies it kept of netsrv's ends) while netsrv keeps sending on
/// sim1: nothing netsrv rings or drains may block on it, so sim0's transfer
/// completes and netsrv never stops answering (the watchdog would restart
/// it).
#[test]
fn a_driver_that_jams_its_doorbells_costs_only_its_port() {
    let scratch = Scratch::new("hostile-driver-doorbell");
    let bin = hostile_peer::hooked_bin_dir(
        &scratch.0,
        "nicdrv",
        "--name sim1",
        &[(nicdrv::misbehave::VAR, "doorbell")],
    );
    let (a, b) = hosts(&scratch, Some(&bin));
    let netsrv = a.process("netsrv").unwrap();
    let before = rss_and_threads(netsrv.pid);
    // A far end on sim1's wire brings its link up.
    let _peer = big_frame_to_sim1(&a, &scratch);
    wait_sim1(&a, &["up"]);
    // Keep netsrv transmitting on sim1 (ARP for addresses nobody has).
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        let udp = a.net().unwrap().udp_bind(addr("0.0.0.0:7610")).unwrap();
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let to = addr(&format!("10.1.0.{}:9", 2 + n % 200));
                let _ = udp.send_to(&[0x42; 64], to);
                n += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            n
        })
    };
    good_transfer(&a, &b, 7611);
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().unwrap();
    // netsrv did put frames on sim1's jammed rings (and rang for them).
    let status = capnet_tests::cli_ok(&a, &["status"]);
    let sim1 = status
        .split("\n  sim1 (sim)")
        .nth(1)
        .unwrap_or_else(|| panic!("no sim1 in {status}"));
    let stack_tx = sim1
        .split("stack rx ")
        .nth(1)
        .and_then(|t| t.split_whitespace().nth(2))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no stack tx count for sim1 in {status}"));
    assert!(
        sent > 10 && stack_tx > 10,
        "sim1 hardly used: {sent} sends, {stack_tx} frames"
    );
    // netsrv answers at once and was never restarted.
    let started = Instant::now();
    let now = a.process("netsrv").unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        (now.state.as_str(), now.restarts, now.pid),
        ("running", 0, netsrv.pid),
        "{now:?}"
    );
    let after = rss_and_threads(netsrv.pid);
    eprintln!("doorbell: sent {sent}; netsrv rss/threads {before:?} -> {after:?}");
    assert!(after.0 < before.0 + 64 * 1024, "{before:?} -> {after:?}");
    assert!(after.1 <= before.1 + 2, "{before:?} -> {after:?}");
}
