//! `failover` and `restart`: how long a stream takes to move again after a
//! carrier drop on an active-backup bond's active leg, and after a kill -9
//! of the sending host's driver, each against the time it takes to move the
//! same bytes undisturbed.

use crate::procs::two_hosts;
use crate::stream::{median, ms, Stream, MOVED};
use capnet_tests::{bond_hosts, snapshot, wait_progress, Scratch};
use std::time::{Duration, Instant};

pub fn bench_failover() {
    const ROUNDS: usize = 10;
    let scratch = Scratch::new("bench-failover");
    let (a, b) = bond_hosts(&scratch, "active-backup", Some("p0"));
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    let stream = Stream::start(&na, &nb, "10.0.0.2:5100");
    let (mut first_frame, mut moving, mut undisturbed) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        std::thread::sleep(Duration::from_millis(200));
        undisturbed.push(stream.time_to_move(MOVED, Instant::now()));
        std::thread::sleep(Duration::from_millis(200));
        let snap = snapshot(&a);
        let (from, to) = if snap.active == "p0" {
            ("p0", "p1")
        } else {
            ("p1", "p0")
        };
        let frames_before = snap.port(to).tx_frames;
        let t0 = Instant::now();
        capnet::cli::set_carrier(&a.run_dir, from, false).unwrap();
        let at = stream.bytes();
        // The first frame the stack sends on the other leg.
        while snapshot(&a).port(to).tx_frames == frames_before {
            assert!(t0.elapsed() < Duration::from_secs(10), "no frame on {to}");
        }
        first_frame.push(t0.elapsed());
        assert!(wait_progress(
            &stream.progress,
            at + MOVED,
            Duration::from_secs(30)
        ));
        moving.push(t0.elapsed());
        capnet::cli::set_carrier(&a.run_dir, from, true).unwrap();
    }
    let worst = moving.iter().copied().max().unwrap_or_default();
    let (f, m, u) = (median(first_frame), median(moving), median(undisturbed));
    println!(
        "failover (active-backup, carrier drop on the active leg, median of {ROUNDS}):\n  \
         first frame on the other leg {:.1} ms; stream moved {} KiB more after {:.1} ms \
         (max {:.1}), vs {:.1} ms undisturbed (ratio {:.2}); goal: under 100 ms",
        ms(f),
        MOVED >> 10,
        ms(m),
        ms(worst),
        ms(u),
        ms(m) / ms(u)
    );
}

pub fn bench_restart() {
    const ROUNDS: usize = 6;
    let scratch = Scratch::new("bench-restart");
    let (a, b) = two_hosts(&scratch);
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    let stream = Stream::start(&na, &nb, "10.0.0.2:5101");
    let (mut moving, mut undisturbed) = (Vec::new(), Vec::new());
    for k in 1..=ROUNDS as u32 {
        // Outside the supervisor's crash-loop window (1 s).
        std::thread::sleep(Duration::from_millis(1100));
        undisturbed.push(stream.time_to_move(MOVED, Instant::now()));
        let t0 = Instant::now();
        let at = stream.bytes();
        a.kill("nicdrv sim0", libc::SIGKILL).unwrap();
        assert!(wait_progress(
            &stream.progress,
            at + MOVED,
            Duration::from_secs(30)
        ));
        moving.push(t0.elapsed());
        a.wait_process("nicdrv sim0", |p| p.restarts == k, Duration::from_secs(10))
            .unwrap();
    }
    let (m, u) = (median(moving.clone()), median(undisturbed));
    println!(
        "driver restart (kill -9 of nicdrv mid-stream, median of {ROUNDS}):\n  \
         stream moved {} KiB more {:.1} ms after the kill (max {:.1} ms), vs {:.1} ms \
         undisturbed (ratio {:.1}); goal: under 1 s",
        MOVED >> 10,
        ms(m),
        ms(*moving.iter().max().unwrap()),
        ms(u),
        ms(m) / ms(u)
    );
}
