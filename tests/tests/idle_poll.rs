//! Idle polling (`capnet_ring::idle`) ends with the traffic: after a burst of
//! 1-byte round trips, during which every data loop polls before it sleeps,
//! the two service sets go back to using no CPU. A loop that kept polling,
//! or never slept again, fails it.

use capnet_tests::{two_hosts, Scratch};
use std::io::{Read, Write};
use std::time::Duration;

/// User+system CPU seconds of a process, from /proc (clock ticks).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (t(11) + t(12)) / hz
}

#[test]
fn polling_stops_when_the_traffic_does() {
    let scratch = Scratch::new("idle-poll");
    let (a, b) = two_hosts(&scratch, "");
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    let l = nb.tcp_listen("0.0.0.0:7100".parse().unwrap(), 1).unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut byte = [0u8; 1];
        while let Ok(1) = s.read(&mut byte) {
            s.write_all(&byte).unwrap();
        }
    });
    let mut c = na
        .tcp_connect("10.0.0.2:7100".parse().unwrap(), None)
        .unwrap();
    let mut byte = [0u8; 1];
    for i in 0..3000u32 {
        c.write_all(&[i as u8]).unwrap();
        c.read_exact(&mut byte).unwrap();
        assert_eq!(byte[0], i as u8);
    }
    let pids: Vec<(String, u32)> = [&a, &b]
        .iter()
        .flat_map(|h| h.processes().unwrap())
        .map(|p| (p.name, p.pid))
        .collect();
    // The connection stays open and idle: nothing is due but its timers.
    std::thread::sleep(Duration::from_millis(300));
    let before: Vec<f64> = pids.iter().map(|(_, p)| cpu_seconds(*p)).collect();
    std::thread::sleep(Duration::from_secs(2));
    let used: Vec<(String, f64)> = pids
        .iter()
        .zip(before)
        .map(|((n, p), b)| (n.clone(), cpu_seconds(*p) - b))
        .collect();
    let total: f64 = used.iter().map(|(_, s)| s).sum();
    // A tenth of one core over the two seconds (eight processes, each read
    // in clock ticks of 10 ms); a loop polling through them would use the
    // whole of one.
    assert!(
        total < 0.2,
        "idle processes used {total:.2} s of CPU in 2 s: {used:?}"
    );
    drop(c);
    server.join().unwrap();
}
