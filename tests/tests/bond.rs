//! Bonds on the sim wire: connections survive carrier flaps (active-backup)
//! and a dead leg (balance-xor), byte-exact.

use capnet_tests::{
    bond_hosts, cli_ok, receive_counting, send_pattern, snapshot, wait_progress, Progress, Scratch,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn active_backup_keeps_a_256mib_stream_through_carrier_flaps() {
    const BYTES: u64 = 256 << 20;
    let s = Scratch::new("bond-ab-flaps");
    let (a, b) = bond_hosts(&s, "active-backup", Some("p0"));
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    let listener = nb.tcp_listen(addr("0.0.0.0:7100"), 1).unwrap();
    let progress = Progress::default();
    let p = progress.clone();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        // 48 MiB/s: about ten flaps happen during the transfer.
        receive_counting(&mut s, &p, 48 << 20).unwrap()
    });
    let mut c = na.tcp_connect(addr("10.0.0.2:7100"), None).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    // Every 500 ms the active leg loses carrier, alternating legs: p0 goes
    // down (the bond moves to p1), then p0 returns (the bond moves back to
    // its primary) and p1 goes down, ...
    let flapper = {
        let done = done.clone();
        let run_dir = a.run_dir.clone();
        std::thread::spawn(move || {
            let mut flaps = 0u32;
            let set = |port: &str, state: &str| {
                capnet::cli::set_carrier(&run_dir, port, state == "up").unwrap();
            };
            while !done.load(Ordering::Relaxed) {
                let (down, up) = if flaps.is_multiple_of(2) {
                    ("p0", "p1")
                } else {
                    ("p1", "p0")
                };
                set(up, "up");
                set(down, "down");
                flaps += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
            set("p0", "up");
            set("p1", "up");
            flaps
        })
    };
    let start = Instant::now();
    let sent = send_pattern(&mut c, 7, BYTES).unwrap();
    drop(c);
    let (got, digest) = server.join().unwrap();
    done.store(true, Ordering::Relaxed);
    let flaps = flapper.join().unwrap();
    eprintln!(
        "256 MiB through {flaps} carrier flaps in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    assert_eq!(got, BYTES);
    assert_eq!(digest, sent, "data differs");
    assert!(
        flaps >= 6,
        "the transfer ended before the legs flapped enough"
    );
    let snap = snapshot(&a);
    assert!(
        snap.failovers >= flaps as u64,
        "bond did not fail over on each flap: {snap:?}"
    );
    assert!(
        snap.announcements >= flaps as u64,
        "no gratuitous ARPs: {snap:?}"
    );
    assert_eq!(snap.tcp_resets, 0, "{snap:?}");
    assert_eq!(snapshot(&b).tcp_resets, 0);
    assert!(progress.load(Ordering::Relaxed) == BYTES);
}

#[test]
fn balance_xor_spreads_flows_keeps_them_and_survives_a_dead_leg() {
    const FLOWS: usize = 16;
    const BYTES: u64 = 8 << 20;
    let s = Scratch::new("bond-xor");
    let (a, b) = bond_hosts(&s, "balance-xor", None);
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    let listener = nb.tcp_listen(addr("0.0.0.0:7200"), FLOWS as u32).unwrap();
    let progress: Vec<Progress> = (0..FLOWS).map(|_| Progress::default()).collect();
    let server = {
        let progress = progress.clone();
        std::thread::spawn(move || {
            let mut handles = Vec::new();
            for _ in 0..FLOWS {
                let (mut s, _) = listener.accept().unwrap();
                // The client says which flow it is first.
                let mut id = [0u8; 1];
                std::io::Read::read_exact(&mut s, &mut id).unwrap();
                let p = progress[id[0] as usize].clone();
                // Slow receivers keep every flow alive while the leg dies.
                handles.push((
                    id[0],
                    std::thread::spawn(move || receive_counting(&mut s, &p, 4 << 20).unwrap()),
                ));
            }
            handles
                .into_iter()
                .map(|(id, h)| (id, h.join().unwrap()))
                .collect::<Vec<_>>()
        })
    };
    let mut streams = Vec::new();
    for i in 0..FLOWS {
        let mut c = na.tcp_connect(addr("10.0.0.2:7200"), None).unwrap();
        std::io::Write::write_all(&mut c, &[i as u8]).unwrap();
        streams.push(c);
    }
    let egress: Vec<libclient::Egress> = streams.iter().map(|c| c.egress().unwrap()).collect();
    let leg_of = |i: usize| egress[i].current().unwrap().port.expect("a live leg");
    let legs_before: Vec<String> = (0..FLOWS).map(leg_of).collect();
    let on_p1 = legs_before.iter().filter(|l| *l == "p1").count();
    assert!(
        on_p1 > 0 && on_p1 < FLOWS,
        "16 flows should use both legs: {legs_before:?}"
    );
    let senders: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            std::thread::spawn(move || {
                let sent = send_pattern(&mut c, 100 + i as u64, BYTES).unwrap();
                (i as u8, sent, c)
            })
        })
        .collect();
    // While links are stable every flow keeps its leg, and both legs carry.
    for p in &progress {
        assert!(wait_progress(p, 1 << 20, Duration::from_secs(60)));
    }
    let legs_now: Vec<String> = (0..FLOWS).map(leg_of).collect();
    assert_eq!(
        legs_now, legs_before,
        "a flow changed legs while links were stable"
    );
    let snap = snapshot(&a);
    let (p0, p1) = (
        snap.port("p0").wire_tx_frames,
        snap.port("p1").wire_tx_frames,
    );
    assert!(p0 > 1000 && p1 > 1000, "both legs carry: p0 {p0} p1 {p1}");
    cli_ok(&a, &["link", "p1", "down"]);
    let mut results = std::collections::HashMap::new();
    for h in senders {
        let (i, sent, c) = h.join().unwrap();
        // The dead leg's flows moved to the live one.
        assert_eq!(leg_of(i as usize), "p0");
        results.insert(i, sent);
        drop(c);
    }
    for (i, (got, digest)) in server.join().unwrap() {
        assert_eq!(got, BYTES, "flow {i}");
        assert_eq!(Some(&digest), results.get(&i), "flow {i} differs");
    }
    let snap = snapshot(&a);
    assert_eq!(snap.tcp_resets, 0, "{snap:?}");
    assert!(snap.failovers >= 1, "{snap:?}");
}
