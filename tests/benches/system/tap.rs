//! `tap` (root only): TCP from capnet over TAP to a Linux sink vs Linux to
//! Linux over veth, in the same namespace layout.

use crate::netns::{Namespaces, TAP_LINUX, VETH_NS};
use crate::procs::sh;
use crate::tax::BULK;
use capnet_tests::{send_pattern, Scratch};
use std::net::Shutdown;
use std::time::{Duration, Instant};

pub fn bench_tap_vs_veth() {
    let Some(nets) = Namespaces::new("TAP vs veth", "b") else {
        return;
    };
    let (ns, cl) = (&nets.ns, &nets.cl);
    let sink = |port: u16| {
        Namespaces::exec(ns, "socat")
            .args([
                "-u",
                &format!("TCP-LISTEN:{port},reuseaddr"),
                "OPEN:/dev/null",
            ])
            .spawn()
            .unwrap()
    };
    std::thread::sleep(Duration::from_millis(100));
    // Linux to Linux over veth.
    let mut s1 = sink(41001);
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    assert!(sh(&format!(
        "ip netns exec {cl} bash -c 'head -c {BULK} /dev/zero | socat -u - TCP:{VETH_NS}:41001'"
    )));
    let veth = BULK as f64 / t.elapsed().as_secs_f64() / (1 << 20) as f64;
    let _ = s1.wait();
    // capnet over TAP to Linux.
    let scratch = Scratch::new("bench-tap");
    let host = nets.capnet(&scratch);
    let net = host.net().unwrap();
    let mut s2 = sink(41002);
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let s = net
        .tcp_connect(format!("{TAP_LINUX}:41002").parse().unwrap(), None)
        .unwrap();
    send_pattern(&mut &s, 1, BULK).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let _ = s2.wait();
    let tap = BULK as f64 / t.elapsed().as_secs_f64() / (1 << 20) as f64;
    drop((s, net, host));
    println!(
        "TCP 256 MiB to Linux: capnet over TAP {:>7.1} MiB/s   Linux over veth {:>7.1} MiB/s   ratio {:.2}",
        tap,
        veth,
        tap / veth
    );
}
