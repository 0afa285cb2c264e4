//! `tap` (root only): TCP from capnet over TAP to a Linux sink vs Linux to
//! Linux over veth, in the same namespace layout.

use crate::procs::sh;
use crate::tax::BULK;
use capnet::host::Host;
use capnet_tests::{send_pattern, Scratch};
use std::net::Shutdown;
use std::process::Command;
use std::time::{Duration, Instant};

pub fn bench_tap_vs_veth() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("TAP vs veth: skipped (needs root)");
        return;
    }
    let ns = format!("capnet-b{}", std::process::id());
    let cl = format!("{ns}c");
    let setup = format!(
        "ip netns add {ns} && ip netns add {cl} && ip -n {ns} link set lo up && \
         ip -n {ns} tuntap add dev ctap0 mode tap && ip -n {ns} addr add 10.78.0.1/24 dev ctap0 && \
         ip -n {ns} link set ctap0 up && \
         ip -n {ns} link add veth0 type veth peer name veth1 netns {cl} && \
         ip -n {ns} addr add 10.79.0.1/24 dev veth0 && ip -n {ns} link set veth0 up && \
         ip -n {cl} addr add 10.79.0.2/24 dev veth1 && ip -n {cl} link set veth1 up"
    );
    assert!(sh(&setup), "namespace setup");
    let sink = |port: u16| {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "socat",
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
        "ip netns exec {cl} bash -c 'head -c {BULK} /dev/zero | socat -u - TCP:10.79.0.1:41001'"
    )));
    let veth = BULK as f64 / t.elapsed().as_secs_f64() / (1 << 20) as f64;
    let _ = s1.wait();
    // capnet over TAP to Linux.
    let scratch = Scratch::new("bench-tap");
    let config = format!(
        "[[port]]\nname = \"tap0\"\nbackend = \"tap\"\ntap = \"ctap0\"\nnetns = \"{ns}\"\naddresses = [\"10.78.0.2/24\"]\n"
    );
    let run = scratch.0.join("host");
    let host = Host::start(&config, &run, &run).unwrap();
    let net = host.net().unwrap();
    let mut s2 = sink(41002);
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let s = net
        .tcp_connect("10.78.0.1:41002".parse().unwrap(), None)
        .unwrap();
    send_pattern(&mut &s, 1, BULK).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let _ = s2.wait();
    let tap = BULK as f64 / t.elapsed().as_secs_f64() / (1 << 20) as f64;
    drop((s, net, host));
    sh(&format!("ip netns del {ns}; ip netns del {cl}"));
    println!(
        "TCP 256 MiB to Linux: capnet over TAP {:>7.1} MiB/s   Linux over veth {:>7.1} MiB/s   ratio {:.2}",
        tap,
        veth,
        tap / veth
    );
}
