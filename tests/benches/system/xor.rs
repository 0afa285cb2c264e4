//! `xor`: a balance-xor bond with 16 flows vs one port with 16 flows.

use capnet::host::Host;
use capnet_tests::{receive_counting, Progress, Scratch};
use std::io::Write;
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// 16 flows from a to one server port on b for `secs` (ephemeral source
/// ports, as real clients have); MiB/s received in total.
fn sixteen_flows(na: &libclient::Net, nb: &libclient::Net, secs: f64) -> f64 {
    const FLOWS: usize = 16;
    let l = nb.tcp_listen("0.0.0.0:5200".parse().unwrap(), 16).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let progress: Vec<Progress> = (0..FLOWS).map(|_| Progress::default()).collect();
    let mut threads = Vec::new();
    for p in &progress {
        let mut c = na
            .tcp_connect("10.0.0.2:5200".parse().unwrap(), None)
            .unwrap();
        let st = stop.clone();
        threads.push(std::thread::spawn(move || {
            let chunk = vec![0x3cu8; 64 * 1024];
            while !st.load(Ordering::Relaxed) {
                if c.write_all(&chunk).is_err() {
                    return;
                }
            }
            let _ = c.shutdown(Shutdown::Write);
        }));
        let (mut s, _) = l.accept().unwrap();
        let p = p.clone();
        threads.push(std::thread::spawn(move || {
            let _ = receive_counting(&mut s, &p, 0);
        }));
    }
    let total = || {
        progress
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    std::thread::sleep(Duration::from_secs(1));
    let (t, b0) = (Instant::now(), total());
    std::thread::sleep(Duration::from_secs_f64(secs));
    let mib = (total() - b0) as f64 / (1 << 20) as f64 / t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    mib
}

/// Both hosts with Reno: without congestion control 16 bulk flows through
/// one port overrun its receive ring and collapse (docs/benchmarks.md).
pub fn bench_xor() {
    const RENO: &str = "congestion_control = \"reno\"";
    let pair = |name: &str, config: &dyn Fn(u8) -> String| {
        let scratch = Scratch::new(name);
        let (a_dir, b_dir) = (scratch.0.join("a"), scratch.0.join("b"));
        let a = Host::start(&config(1), &a_dir, &a_dir).unwrap();
        let b = Host::start(&config(2), &b_dir, &a_dir).unwrap();
        sixteen_flows(&a.net().unwrap(), &b.net().unwrap(), 5.0)
    };
    let one_port = pair("bench-xor-one", &|n| {
        capnet_tests::sim_config(n, "")
            .replace("tcp_buffer = 65536", &format!("tcp_buffer = 65536\n{RENO}"))
    });
    let bond = pair("bench-xor-bond", &|n| {
        capnet_tests::bond_config_with(n, "balance-xor", None, "", RENO)
    });
    println!(
        "16 flows (Reno): balance-xor bond of two sim ports {bond:.0} MiB/s vs one port \
         {one_port:.0} MiB/s (ratio {:.2})",
        bond / one_port
    );
}
