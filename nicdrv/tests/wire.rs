//! Two `nicdrv --backend sim` processes on one wire, driven from this test as
//! their stacks: capnp on the `--listen` sockets, ring fds through the
//! handoff side channel, frames through the port rings.

use capnet_ring::flags;
use capnet_schema::nic_capnp::link_watcher;
use capnp::capability::Rc as CapRc;
use std::cell::RefCell;
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

mod common;

use common::conn::{linked, local_test, Conn};
use common::frames::{recv, send, send_batch, udp_frame};
use common::{arm, fd_count, memfd_maps, tmpdir, wait_change, Proc, LINK_DEADLINE, WAIT};

/// Records what a LinkWatcher is told.
struct Watcher(Rc<RefCell<Vec<bool>>>);

impl link_watcher::Server for Watcher {
    fn link_changed(
        self: CapRc<Self>,
        params: link_watcher::LinkChangedParams,
        _: link_watcher::LinkChangedResults,
    ) -> impl std::future::Future<Output = Result<(), capnp::Error>> + 'static {
        let up = params.get().map(|p| p.get_up());
        let seen = self.0.clone();
        async move {
            seen.borrow_mut().push(up?);
            Ok(())
        }
    }
}

#[test]
fn two_ports_on_one_wire() {
    let dir = tmpdir("pair");
    let wire = dir.join("wire0.sock");
    let pcap = dir.join("a.pcap");
    let mut a = Proc::spawn(
        &dir,
        "a",
        &wire,
        &[
            "--mac",
            "02:00:00:00:00:01",
            "--seed",
            "1",
            "--pcap",
            pcap.to_str().unwrap(),
        ],
    );
    let b = Proc::spawn(&dir, "b", &wire, &["--mac", "02:00:00:00:00:02"]);
    local_test(async {
        let ca = Conn::open(&a);
        let cb = Conn::open(&b);
        ca.wait_link(true).await;
        cb.wait_link(true).await;
        let (_, mac, mtu) = ca.info().await;
        assert_eq!((mac, mtu), (vec![2, 0, 0, 0, 0, 1], 1500));

        let seen = Rc::new(RefCell::new(Vec::new()));
        let mut req = cb.nic.watch_link_request();
        req.get()
            .set_watcher(capnp_rpc::new_client(Watcher(seen.clone())));
        req.send().promise.await.unwrap();

        let mut ra = ca.open_rings(&a).await;
        let mut rb = cb.open_rings(&b).await;
        // One session at a time.
        let busy = ca
            .try_open_rings(&a)
            .await
            .expect_err("second openRings must fail");
        assert!(is_word(&busy, "busy"), "{busy}");

        // 1. Frames cross the wire; half ask for checksum filling.
        const N: u32 = 200;
        let frames: Vec<(Vec<u8>, u32)> = (0..N)
            .map(|i| {
                let offload = i % 2 == 0;
                (
                    udp_frame(i, !offload),
                    if offload { flags::TX_CSUM } else { 0 },
                )
            })
            .collect();
        send(&mut ra, &frames).await;
        let got = recv(&mut rb, N as usize, WAIT).await;
        assert_eq!(got.len(), N as usize);
        for (i, (f, fl)) in got.iter().enumerate() {
            assert_eq!(*fl, flags::CSUM_VERIFIED, "frame {i}");
            // Same bytes as sent, checksums filled in where asked.
            assert_eq!(f, &udp_frame(i as u32, true), "frame {i}");
        }
        let (sa, sb) = (ca.counters().await, cb.counters().await);
        assert_eq!(
            (sa.tx_frames, sa.tx_checksum_filled, sa.tx_dropped),
            (N as u64, N as u64 / 2, 0)
        );
        assert_eq!(
            (sb.rx_frames, sb.rx_checksum_verified, sb.rx_bad_checksum),
            (N as u64, N as u64, 0)
        );
        assert_eq!(sa.tx_bytes, sb.rx_bytes);

        // And back.
        send(&mut rb, &frames[..10]).await;
        assert_eq!(recv(&mut ra, 10, WAIT).await.len(), 10);

        // 2. Carrier down from A: both ends see link down and drop what they send.
        ca.set_carrier(false).await;
        ca.wait_link(false).await;
        cb.wait_link(false).await;
        send(&mut ra, &frames[..10]).await;
        send(&mut rb, &frames[..10]).await;
        assert!(recv(&mut rb, 1, Duration::from_millis(300))
            .await
            .is_empty());
        assert!(recv(&mut ra, 1, Duration::from_millis(10)).await.is_empty());
        let (sa, sb) = (ca.counters().await, cb.counters().await);
        assert_eq!((sa.tx_dropped, sb.tx_dropped), (10, 10));
        assert!(sa.link_changes >= 2 && sb.link_changes >= 2);
        ca.set_carrier(true).await;
        ca.wait_link(true).await;
        cb.wait_link(true).await;
        let deadline = Instant::now() + WAIT;
        while seen.borrow().as_slice() != [true, false, true] {
            assert!(Instant::now() < deadline, "watcher saw {:?}", seen.borrow());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // 3. 100% loss at run time, then none.
        ca.set_loss(1_000_000).await;
        send(&mut ra, &frames[..20]).await;
        assert!(recv(&mut rb, 1, Duration::from_millis(300))
            .await
            .is_empty());
        assert_eq!(ca.counters().await.wire_lost, 20);
        ca.set_loss(0).await;
        send(&mut ra, &frames[..20]).await;
        assert_eq!(recv(&mut rb, 20, WAIT).await.len(), 20);
        assert_eq!(ca.counters().await.wire_lost, 20);

        // 4. Duplication, reordering and corruption, each at 100%.
        let batch = &frames[..10];
        ca.set_faults(0, 0, 1_000_000, 0).await;
        send_batch(&mut ra, batch);
        let got = recv(&mut rb, 20, WAIT).await;
        assert_eq!(got.len(), 20);
        for (i, (f, _)) in got.iter().enumerate() {
            assert_eq!(f, &udp_frame((i / 2) as u32, true));
        }
        ca.set_faults(0, 1_000_000, 0, 0).await;
        send_batch(&mut ra, batch);
        let got = recv(&mut rb, 10, WAIT).await;
        let order: Vec<u32> = got
            .iter()
            .map(|(f, _)| {
                (0..10)
                    .find(|i| f == &udp_frame(*i, true))
                    .expect("a sent frame")
            })
            .collect();
        assert_eq!(order, vec![1, 0, 3, 2, 5, 4, 7, 6, 9, 8]);
        // A held frame with nothing after it leaves on its timer.
        send_batch(&mut ra, &frames[..1]);
        assert_eq!(recv(&mut rb, 1, Duration::from_millis(500)).await.len(), 1);
        ca.set_faults(0, 0, 0, 1_000_000).await;
        send_batch(&mut ra, batch);
        let got = recv(&mut rb, 10, Duration::from_millis(500)).await;
        let originals: Vec<Vec<u8>> = (0..10).map(|i| udp_frame(i, true)).collect();
        assert!(
            got.iter().all(|(f, _)| !originals.contains(f)),
            "every frame was corrupted"
        );
        ca.set_faults(0, 0, 0, 0).await;
        let s = ca.counters().await;
        assert_eq!(
            (s.wire_duplicated, s.wire_reordered, s.wire_corrupted),
            (10, 6, 10)
        );

        // An invalid fault setting is refused with the `invalid` word.
        let mut req = ca.nic.set_faults_request();
        req.get().init_faults().set_corrupt_ppm(2_000_000);
        let e = req
            .send()
            .promise
            .await
            .err()
            .expect("2e6 ppm must be refused");
        assert!(is_word(&e, "invalid"), "{e}");
    });

    // The capture is flushed on SIGTERM and holds what A sent and received.
    let st = a.terminate();
    assert!(st.success(), "nicdrv exited with {st}");
    let (linktype, recs) = nicdrv::pcap::parse(&std::fs::read(&pcap).unwrap()).unwrap();
    assert_eq!(linktype, nicdrv::pcap::LINKTYPE_ETHERNET);
    // 200 + 20 + 20 + 3 * 10 + 1 sent (captured before the wire's faults), 10 received.
    assert_eq!(recs.len(), 281);
    if let Ok(out) = Command::new("tshark")
        .args(["-r"])
        .arg(&pcap)
        .args(["-T", "fields", "-e", "udp.dstport"])
        .output()
    {
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                text.lines().filter(|l| l.trim() == "5000").count(),
                281,
                "tshark:\n{text}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ring_session_lifecycle() {
    let dir = tmpdir("session");
    let a = Proc::spawn(&dir, "solo", &dir.join("wire.sock"), &[]);
    local_test(async {
        let c1 = Conn::open(&a);
        let c2 = Conn::open(&a);
        let _r1 = c1.open_rings(&a).await;
        let e = c2.try_open_rings(&a).await.expect_err("busy");
        assert!(is_word(&e, "busy"), "{e}");

        // The session ends with the connection that opened it.
        c1.close();
        let deadline = Instant::now() + WAIT;
        let (r2, region) = loop {
            match c2.try_open_rings(&a).await {
                Ok(r) => break r,
                Err(e) => assert!(is_word(&e, "busy") && Instant::now() < deadline, "{e}"),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };

        // A descriptor that breaks the contract ends the session (not the driver).
        common::frames::corrupt_stack_tx_queue(&region, &r2);
        r2.wake_peer.ring();
        let deadline = Instant::now() + WAIT;
        while c2.counters().await.bad_descriptors != 1 {
            assert!(Instant::now() < deadline, "bad descriptor not noticed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The port tells the stack by dropping the session's carrier.
        assert!(!r2.carrier());
        let _r3 = c2.open_rings(&a).await;
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn garbage_from_the_wire_is_counted_not_fatal() {
    let dir = tmpdir("garbage");
    let wire = dir.join("wire.sock");
    let mut a = Proc::spawn(&dir, "victim", &wire, &[]);
    // This test is the port's wire peer.
    let layout = nicdrv::dataplane::layout_for(1500, 64);
    let mut peer = nicdrv::sim::connect_wire(&wire, layout).expect("wire rendezvous");
    local_test(async {
        let c = Conn::open(&a);
        c.wait_link(true).await;
        let mut stack = c.open_rings(&a).await;
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let buf_size = peer.duplex.tx.buf_size() as usize;
        let mut sent = 0u32;
        let mut good = udp_frame(1, true);
        let last = good.len() - 1;
        good[last] ^= 0xff; // a bad UDP checksum
        for i in 0..2000 {
            let frame: Vec<u8> = match i % 4 {
                0 => (0..rng.gen_range(0..20)).map(|_| rng.gen()).collect(),
                1 => (0..rng.gen_range(0..=buf_size))
                    .map(|_| rng.gen())
                    .collect(),
                2 => {
                    let mut f = udp_frame(i, true);
                    let cut = rng.gen_range(0..f.len());
                    f.truncate(cut);
                    f
                }
                _ => good.clone(),
            };
            let deadline = Instant::now() + WAIT;
            let mut b = loop {
                if let Some(b) = peer.duplex.tx.alloc().unwrap() {
                    break b;
                }
                assert!(Instant::now() < deadline, "the port stopped taking frames");
                if peer.duplex.tx.flush().unwrap() {
                    peer.duplex.wake_peer.ring();
                }
                let _ = recv(&mut stack, usize::MAX, Duration::from_millis(1)).await;
            };
            peer.duplex.tx.buf_mut(&mut b)[..frame.len()].copy_from_slice(&frame);
            peer.duplex.tx.send(b, frame.len() as u32, 0, 0);
            sent += 1;
            if i % 16 == 0 && peer.duplex.tx.flush().unwrap() {
                peer.duplex.wake_peer.ring();
            }
        }
        if peer.duplex.tx.flush().unwrap() {
            peer.duplex.wake_peer.ring();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let _ = recv(&mut stack, usize::MAX, Duration::from_millis(5)).await;
            let s = c.counters().await;
            let accounted = s.rx_frames + s.rx_dropped + s.rx_malformed;
            if accounted == u64::from(sent) {
                assert!(s.rx_malformed > 500, "{s:?}");
                // Frames the stack had no buffer for are dropped before the check.
                assert!(s.rx_bad_checksum > 0, "{s:?}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "only {accounted} of {sent} frames accounted for: {s:?}"
            );
        }
    });
    assert!(a.alive(), "nicdrv died on garbage");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether a failed call carries a capnet error word (capnp-rpc puts
/// "remote exception: " in front of the callee's description).
fn is_word(e: &capnp::Error, word: &str) -> bool {
    let d = e
        .extra
        .strip_prefix("remote exception: ")
        .unwrap_or(&e.extra);
    capnet_schema::errors::SocketError::from_description(d).map(|w| w.word()) == Some(word)
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `after_comm` starts at field 3.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn full_wire_backpressures_without_spinning() {
    let dir = tmpdir("backpressure");
    let wire = dir.join("wire.sock");
    let a = Proc::spawn(&dir, "bp", &wire, &["--buffers", "64"]);
    let mut peer =
        nicdrv::sim::connect_wire(&wire, nicdrv::dataplane::layout_for(1500, 64)).unwrap();
    local_test(async {
        let c = Conn::open(&a);
        c.wait_link(true).await;
        let mut stack = c.open_rings(&a).await;
        let frames: Vec<(Vec<u8>, u32)> = (0..100).map(|i| (udp_frame(i, true), 0)).collect();
        // The peer reads nothing yet: 64 frames fill the wire, 36 wait in the port ring.
        send(&mut stack, &frames).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = cpu_ticks(a.child.id());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let spent = cpu_ticks(a.child.id()) - before;
        assert!(spent <= 5, "a blocked port used {spent} ticks in 1 s");

        // The peer drains the wire: the rest follows, nothing was dropped.
        let got = recv(&mut peer.duplex, 100, WAIT).await;
        assert_eq!(got.len(), 100);
        for (i, (f, _)) in got.iter().enumerate() {
            assert_eq!(f, &frames[i].0, "frame {i} out of order");
        }
        let s = c.counters().await;
        assert_eq!((s.tx_frames, s.tx_dropped), (100, 0));

        // Idle with a session open costs nothing either.
        let before = cpu_ticks(a.child.id());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let spent = cpu_ticks(a.child.id()) - before;
        assert!(spent <= 5, "an idle port used {spent} ticks in 1 s");
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn survivor_meets_a_restarted_peer() {
    let dir = tmpdir("restart");
    let wire = dir.join("wire.sock");
    let a = Proc::spawn(&dir, "a", &wire, &[]);
    let mut b = Proc::spawn(&dir, "b", &wire, &[]);
    local_test(async {
        let ca = Conn::open(&a);
        ca.wait_link(true).await;
        let mut ra = ca.open_rings(&a).await;
        // The peer dies without a word.
        b.child.kill().unwrap();
        b.child.wait().unwrap();
        ca.wait_link(false).await;
        // A new peer on the same wire path: the link comes back, frames flow.
        let b2 = Proc::spawn(&dir, "b", &wire, &[]);
        let cb = Conn::open(&b2);
        ca.wait_link(true).await;
        cb.wait_link(true).await;
        let mut rb = cb.open_rings(&b2).await;
        let frames: Vec<(Vec<u8>, u32)> = (0..5).map(|i| (udp_frame(i, true), 0)).collect();
        send(&mut ra, &frames).await;
        assert_eq!(recv(&mut rb, 5, WAIT).await.len(), 5);
        assert_eq!(ca.counters().await.link_changes, 3);
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn faulty_wire_loses_nothing_else() {
    let dir = tmpdir("faulty");
    let wire = dir.join("wire.sock");
    let a = Proc::spawn(
        &dir,
        "a",
        &wire,
        &[
            "--loss-ppm",
            "20000",
            "--reorder-ppm",
            "20000",
            "--duplicate-ppm",
            "20000",
            "--seed",
            "5",
        ],
    );
    let b = Proc::spawn(&dir, "b", &wire, &[]);
    local_test(async {
        let (ca, cb, mut ra, mut rb) = linked(&a, &b).await;
        let mut got = 0usize;
        for round in 0..30u32 {
            let frames: Vec<(Vec<u8>, u32)> = (0..100)
                .map(|i| (udp_frame(round * 100 + i, true), 0))
                .collect();
            send(&mut ra, &frames).await;
            got += recv(&mut rb, usize::MAX, Duration::from_millis(2))
                .await
                .len();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            got += recv(&mut rb, usize::MAX, Duration::from_millis(5))
                .await
                .len();
            let s = ca.counters().await;
            let want = s.tx_frames - s.wire_lost + s.wire_duplicated;
            if got as u64 == want {
                assert_eq!(s.tx_frames, 3000);
                assert!(
                    s.wire_lost > 20 && s.wire_reordered > 20 && s.wire_duplicated > 20,
                    "{s:?}"
                );
                break;
            }
            assert!(Instant::now() < deadline, "got {got} of {want}: {s:?}");
        }
        assert_eq!(cb.counters().await.rx_dropped, 0);
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn jumbo_frames() {
    let dir = tmpdir("jumbo");
    let wire = dir.join("wire.sock");
    // Without segmentation offload, whose buffers hold merged frames of 64 KiB.
    let args = ["--mtu", "9000", "--buffers", "64", "--no-segmentation"];
    let a = Proc::spawn(&dir, "a", &wire, &args);
    let b = Proc::spawn(&dir, "b", &wire, &args);
    local_test(async {
        let (ca, _cb, mut ra, mut rb) = linked(&a, &b).await;
        assert_eq!(ra.tx.buf_size(), 9024);
        // Largest frame: 9000 bytes of IP + 14; one byte more is refused.
        let mut big = udp_frame(1, true);
        big.resize(9014, 0);
        let mut too_big = big.clone();
        too_big.push(0);
        send(&mut ra, &[(big.clone(), 0), (too_big, 0)]).await;
        let got = recv(&mut rb, 1, WAIT).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, big);
        // Ethernet padding after the IP packet does not disturb the checksum check.
        assert_eq!(got[0].1, flags::CSUM_VERIFIED);
        assert_eq!(ca.counters().await.tx_dropped, 1);
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn carrier_drop_is_seen_by_both_ends() {
    let dir = tmpdir("carrier");
    let wire = dir.join("wire.sock");
    let a = Proc::spawn(&dir, "a", &wire, &[]);
    let b = Proc::spawn(&dir, "b", &wire, &[]);
    local_test(async {
        let (ca, cb) = common::conn::up(&a, &b).await;
        let (ea, eb) = (ca.watch().await, cb.watch().await);
        let (ra, rb) = (ca.open_rings(&a).await, cb.open_rings(&b).await);
        let mut worst = Duration::ZERO;
        for round in 0..3 {
            for (who, via_faults) in [("a", false), ("b", false), ("a", true), ("b", true)] {
                let c = if who == "a" { &ca } else { &cb };
                for up in [false, true] {
                    let (wa, wb) = (arm(&ra, &ea), arm(&rb, &eb));
                    if via_faults {
                        c.set_faults_carrier(up).await;
                    } else {
                        c.set_carrier(up).await;
                    }
                    // Both ends watched at once (one after the other would
                    // time the second end late).
                    let (sa, sb) = futures::join!(
                        wait_change(&ra, &ea, wa, up, WAIT),
                        wait_change(&rb, &eb, wb, up, WAIT)
                    );
                    let how = if via_faults {
                        "setFaults"
                    } else {
                        "setCarrier"
                    };
                    println!("round {round}: {how}({up}) on {who}: end a: {sa}; end b: {sb}");
                    worst = worst.max(sa.worst()).max(sb.worst());
                }
            }
        }
        println!("worst carrier latency over 24 changes x 2 ends: {worst:?}");
        assert!(worst < LINK_DEADLINE, "worst {worst:?}");
        assert_eq!(ca.counters().await.link_changes, 1 + 24);
        assert_eq!(cb.counters().await.link_changes, 1 + 24);
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn survivor_of_ten_peer_kills() {
    let dir = tmpdir("kills");
    let wire = dir.join("wire.sock");
    let a = Proc::spawn(&dir, "a", &wire, &[]);
    let mut b = Proc::spawn(&dir, "b", &wire, &[]);
    let pid = a.child.id();
    local_test(async {
        let ca = Conn::open(&a);
        ca.wait_link(true).await;
        let ea = ca.watch().await;
        let mut ra = ca.open_rings(&a).await;
        let frames: Vec<(Vec<u8>, u32)> = (0..5).map(|i| (udp_frame(i, true), 0)).collect();
        let mut cb = Conn::open(&b);
        let mut rb = cb.open_rings(&b).await;
        send(&mut ra, &frames).await;
        assert_eq!(recv(&mut rb, 5, WAIT).await.len(), 5);
        let (fds, maps) = (fd_count(pid), memfd_maps(pid));
        let (mut down_worst, mut up_worst) = (Duration::ZERO, Duration::ZERO);
        for i in 0..10 {
            // The peer dies without a word: the survivor's link goes down.
            let armed = arm(&ra, &ea);
            b.child.kill().unwrap();
            b.child.wait().unwrap();
            let down = wait_change(&ra, &ea, armed, false, WAIT).await;
            drop(rb);
            cb.close();
            // A new instance with the same arguments rejoins the wire.
            let armed = arm(&ra, &ea);
            b = Proc::spawn(&dir, "b", &wire, &[]);
            let started = armed.0.elapsed();
            let up = wait_change(&ra, &ea, armed, true, WAIT).await;
            println!(
                "kill {i}: survivor down after {down}; up after {up} (the new driver listened after {:.1} ms)",
                started.as_secs_f64() * 1000.0
            );
            down_worst = down_worst.max(down.worst());
            up_worst = up_worst.max(up.worst());
            // Frames flow both ways again.
            cb = Conn::open(&b);
            cb.wait_link(true).await;
            rb = cb.open_rings(&b).await;
            send(&mut ra, &frames).await;
            assert_eq!(
                recv(&mut rb, 5, WAIT).await.len(),
                5,
                "a -> b after kill {i}"
            );
            send(&mut rb, &frames).await;
            assert_eq!(
                recv(&mut ra, 5, WAIT).await.len(),
                5,
                "b -> a after kill {i}"
            );
        }
        println!("worst: link down {down_worst:?} after SIGKILL; link up {up_worst:?} after the restart began");
        assert!(down_worst < LINK_DEADLINE, "{down_worst:?}");
        assert_eq!(ca.counters().await.link_changes, 1 + 2 * 10);
        // Nothing of the ten dead wires is left in the survivor.
        let (fds2, maps2) = (fd_count(pid), memfd_maps(pid));
        println!("survivor: fds {fds} -> {fds2}, memfd mappings {maps} -> {maps2}");
        assert_eq!((fds2, maps2), (fds, maps));
        drop(rb);
        cb.close();
    });
    let _ = std::fs::remove_dir_all(&dir);
}
