//! `idle`: the idle CPU of two whole service sets, and netsrv's memory per
//! idle TCP connection.

use crate::procs::{cpu_seconds, rss_kib, service_pids, two_hosts};
use capnet_tests::Scratch;
use std::time::Duration;

pub fn bench_idle_and_memory() {
    let scratch = Scratch::new("bench-idle");
    let (a, b) = two_hosts(&scratch);
    let mut pids = service_pids(&a);
    pids.extend(service_pids(&b));
    std::thread::sleep(Duration::from_millis(500));
    let sample = || -> Vec<(f64, u64)> {
        pids.iter()
            .map(|(_, p)| (cpu_seconds(*p), wakeups(*p)))
            .collect()
    };
    let before = sample();
    let window = Duration::from_secs(5);
    std::thread::sleep(window);
    let after = sample();
    let idle: f64 = after.iter().zip(&before).map(|(a, b)| a.0 - b.0).sum();
    println!(
        "idle: {} processes of two service sets used {:.2}% of one core over {} s",
        pids.len(),
        idle / window.as_secs_f64() * 100.0,
        window.as_secs()
    );
    // Who spends it: CPU and wakeups (voluntary context switches) each.
    for (((name, _), a), b) in pids.iter().zip(&after).zip(&before) {
        println!(
            "  {name}: {:.2}% of a core, {:.1} wakeups/s",
            (a.0 - b.0) / window.as_secs_f64() * 100.0,
            (a.1 - b.1) as f64 / window.as_secs_f64()
        );
    }

    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    let netsrv_pid = |pids: &[(String, u32)]| pids.iter().find(|(n, _)| n == "netsrv").unwrap().1;
    let (pa, pb) = (netsrv_pid(&service_pids(&a)), netsrv_pid(&service_pids(&b)));
    let l = nb.tcp_listen("0.0.0.0:6000".parse().unwrap(), 128).unwrap();
    let rss0 = rss_kib(pa) + rss_kib(pb);
    const N: usize = 200;
    let mut conns = Vec::new();
    for _ in 0..N {
        let c = na
            .tcp_connect("10.0.0.2:6000".parse().unwrap(), None)
            .unwrap();
        let (s, _) = l.accept().unwrap();
        conns.push((c, s));
    }
    std::thread::sleep(Duration::from_millis(300));
    let rss1 = rss_kib(pa) + rss_kib(pb);
    println!(
        "memory: {} idle TCP connections (both ends in ring mode) add {:.1} KiB of netsrv RSS per connection end",
        N,
        (rss1 - rss0) as f64 / (2 * N) as f64
    );
}

/// Voluntary context switches of every thread of `pid` so far.
fn wakeups(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let status = std::fs::read_to_string(t.path().join("status")).ok()?;
            let line = status
                .lines()
                .find(|l| l.starts_with("voluntary_ctxt_switches:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum()
}
