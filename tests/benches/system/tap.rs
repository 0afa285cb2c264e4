//! `tap` (root only): TCP bulk between capnet over TAP and Linux, both
//! ways, vs Linux to Linux over veth, in the same namespace layout. Every
//! sender writes 256 KiB at a time and every sink reads 256 KiB at a time:
//! neither end of the reference is its bottleneck (a `socat` pipe was,
//! until issue 13). With segmentation offload (the default) nicdrv and
//! Linux hand each other 64 KiB frames through the TAP's virtio-net
//! headers; the bench runs it off too. CPU per GiB of capnet's processes
//! is printed for each run.

use crate::netns::{enter_netns, sink, Namespaces, TAP_CAPNET, TAP_LINUX, VETH_NS};
use crate::procs::{cpu_seconds, service_pids};
use crate::tax::BULK;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Instant;

/// Sends `BULK` bytes on `s`, 256 KiB at a time.
fn send_all(mut s: impl Write) {
    let chunk = vec![0x5au8; 256 * 1024];
    let mut sent = 0;
    while sent < BULK {
        let n = (BULK - sent).min(chunk.len() as u64) as usize;
        s.write_all(&chunk[..n]).unwrap();
        sent += n as u64;
    }
}

/// MiB/s of `BULK` bytes moved in `secs`.
fn rate(secs: f64) -> f64 {
    BULK as f64 / secs / (1 << 20) as f64
}

/// Linux to Linux over veth: the source on a thread in the other namespace.
fn veth(nets: &Namespaces) -> f64 {
    let to: SocketAddr = format!("{VETH_NS}:41001").parse().unwrap();
    let got = sink(&nets.ns, SocketAddr::from(([0, 0, 0, 0], 41001)));
    let cl = nets.cl.clone();
    let t = Instant::now();
    std::thread::spawn(move || {
        enter_netns(&cl);
        let s = std::net::TcpStream::connect(to).unwrap();
        send_all(&s);
        s.shutdown(Shutdown::Write).unwrap();
    })
    .join()
    .unwrap();
    assert_eq!(got.join().unwrap(), BULK);
    rate(t.elapsed().as_secs_f64())
}

/// capnet over TAP to a Linux sink, then a Linux source to capnet: MiB/s
/// and the capnet processes' CPU seconds, each way.
fn capnet_both_ways(nets: &Namespaces, extra: &str) -> [(f64, Vec<(String, f64)>); 2] {
    let scratch = capnet_tests::Scratch::new("bench-tap");
    let host = nets.capnet_with(&scratch, extra);
    let net = host.net().unwrap();
    let pids = service_pids(&host);
    let cpu = |before: &[f64]| -> Vec<(String, f64)> {
        pids.iter()
            .zip(before)
            .map(|((name, p), b)| (name.clone(), cpu_seconds(*p) - b))
            .collect()
    };
    let now = || {
        pids.iter()
            .map(|(_, p)| cpu_seconds(*p))
            .collect::<Vec<_>>()
    };

    let got = sink(&nets.ns, SocketAddr::from(([0, 0, 0, 0], 41002)));
    let before = now();
    let t = Instant::now();
    let s = net
        .tcp_connect(format!("{TAP_LINUX}:41002").parse().unwrap(), None)
        .unwrap();
    send_all(&s);
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(got.join().unwrap(), BULK);
    let out = (rate(t.elapsed().as_secs_f64()), cpu(&before));
    drop(s);

    let listener = net
        .tcp_listen(SocketAddr::from(([0, 0, 0, 0], 41003)), 1)
        .unwrap();
    let to: SocketAddr = format!("{TAP_CAPNET}:41003").parse().unwrap();
    let ns = nets.ns.clone();
    let before = now();
    let t = Instant::now();
    let source = std::thread::spawn(move || {
        enter_netns(&ns);
        let s = std::net::TcpStream::connect(to).unwrap();
        send_all(&s);
        s.shutdown(Shutdown::Write).unwrap();
    });
    let (mut s, _) = listener.accept().unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        match s.read(&mut buf).unwrap() {
            0 => break,
            k => n += k as u64,
        }
    }
    assert_eq!(n, BULK);
    let back = (rate(t.elapsed().as_secs_f64()), cpu(&before));
    source.join().unwrap();
    drop((s, listener, net, host));
    [out, back]
}

pub fn bench_tap_vs_veth() {
    let Some(nets) = Namespaces::new("TAP vs veth", "b") else {
        return;
    };
    let veth = veth(&nets);
    let per_gib = |s: f64| s / (BULK as f64 / (1u64 << 30) as f64);
    for (what, extra) in [
        ("segmentation offload on ", ""),
        ("segmentation offload off", "segmentation = false\n"),
    ] {
        let runs = capnet_both_ways(&nets, extra);
        for ((mib, cpu), way) in runs
            .into_iter()
            .zip(["to a Linux sink", "from a Linux source"])
        {
            println!(
                "TCP 256 MiB {way:<20} over TAP, {what}  capnet {mib:>7.1} MiB/s   Linux over veth {veth:>7.1} MiB/s   ratio {:.2} (goal: at least 0.5)",
                mib / veth
            );
            let total: f64 = cpu.iter().map(|(_, s)| per_gib(*s)).sum();
            for (name, s) in cpu.iter().filter(|(_, s)| *s > 0.0) {
                println!("    CPU {:<28} {:>6.2} s/GiB", name, per_gib(*s));
            }
            println!("    CPU {:<28} {:>6.2} s/GiB", "capnet's processes", total);
        }
    }
}
