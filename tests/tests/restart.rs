//! Driver restarts on the sim wire: connections survive ten SIGKILLs of a
//! NIC driver, and nothing of the dead instances stays behind.

use capnet_tests::{
    fds_and_memfds, receive_counting, send_pattern, snapshot, two_hosts, wait_progress, Progress,
    Scratch,
};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn nicdrv_killed_ten_times_during_256mib() {
    const BYTES: u64 = 256 << 20;
    const KILLS: u32 = 10;
    let s = Scratch::new("restart-sim");
    let (a, b) = two_hosts(&s, "");
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    let listener = nb.tcp_listen(addr("0.0.0.0:7300"), 1).unwrap();
    let progress = Progress::default();
    let p = progress.clone();
    // 12 MiB/s: the transfer outlasts ten kills spaced by the supervisor's
    // crash-loop window.
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        receive_counting(&mut s, &p, 12 << 20).unwrap()
    });
    let mut c = na.tcp_connect(addr("10.0.0.2:7300"), None).unwrap();
    let sender = std::thread::spawn(move || {
        let digest = send_pattern(&mut c, 11, BYTES).unwrap();
        drop(c);
        digest
    });
    assert!(wait_progress(&progress, 4 << 20, Duration::from_secs(30)));
    let netsrv = a.process("netsrv").unwrap().pid;
    let before = fds_and_memfds(netsrv);
    let mut moving_again = Vec::new();
    for k in 1..=KILLS {
        let old = a.kill("nicdrv sim0", libc::SIGKILL).unwrap();
        let killed_at = Instant::now();
        let p = a
            .wait_process(
                "nicdrv sim0",
                |p| p.restarts == k && p.state == "running" && p.pid != old,
                Duration::from_secs(10),
            )
            .unwrap_or_else(|e| panic!("restart {k}: {e}\n{}", a.log()));
        assert_ne!(p.pid, old);
        let at = progress.load(Ordering::Relaxed);
        assert!(
            wait_progress(&progress, at + (256 << 10), Duration::from_secs(30)),
            "kill {k}: the stream did not move again"
        );
        moving_again.push(killed_at.elapsed());
        // Stay clear of the supervisor's crash-loop window (1 s).
        std::thread::sleep(Duration::from_millis(1200).saturating_sub(killed_at.elapsed()));
    }
    let sent = sender.join().unwrap();
    let (got, digest) = server.join().unwrap();
    assert_eq!(got, BYTES);
    assert_eq!(digest, sent, "data differs");
    moving_again.sort();
    eprintln!(
        "kill -9 to stream moving again: median {:?}, max {:?}",
        moving_again[moving_again.len() / 2],
        moving_again.last().unwrap()
    );

    // Every dead instance's rings were released once, and nothing leaked.
    let snap = snapshot(&a);
    assert_eq!(snap.tcp_resets, 0, "{snap:?}");
    assert_eq!(snap.driver_attaches, 1 + KILLS as u64, "{snap:?}");
    assert_eq!(snap.driver_detaches, KILLS as u64, "{snap:?}");
    assert_eq!(snap.rings_mapped, 1, "{snap:?}");
    assert_eq!(snap.port("sim0").epoch, KILLS, "{snap:?}");
    assert_eq!(a.process("netsrv").unwrap().pid, netsrv, "netsrv restarted");
    let after = fds_and_memfds(netsrv);
    // The sender's socket is gone by now: its ring region may be too (a
    // released socket's ring goes once its connection is in TIME-WAIT).
    assert!(
        after.0 <= before.0 && after.1 <= before.1,
        "netsrv's (fds, memfds) grew from {before:?} to {after:?}"
    );
    assert_eq!(snapshot(&b).tcp_resets, 0);
}
