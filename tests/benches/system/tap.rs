//! `tap` (root only): TCP bulk from capnet over TAP to a Linux sink vs
//! Linux to the same sink over veth, in the same namespace layout. Both
//! senders write 256 KiB at a time from this process and the sink reads
//! 256 KiB at a time: neither end of the reference is its bottleneck (a
//! `socat` pipe was, until issue 13).

use crate::netns::{enter_netns, sink, Namespaces, TAP_LINUX, VETH_NS};
use crate::tax::BULK;
use std::io::Write;
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

pub fn bench_tap_vs_veth() {
    let Some(nets) = Namespaces::new("TAP vs veth", "b") else {
        return;
    };
    // Linux to Linux over veth: the source on a thread in the other namespace.
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
    let veth = BULK as f64 / t.elapsed().as_secs_f64() / (1 << 20) as f64;
    // capnet over TAP to Linux.
    let scratch = capnet_tests::Scratch::new("bench-tap");
    let host = nets.capnet(&scratch);
    let net = host.net().unwrap();
    let got = sink(&nets.ns, SocketAddr::from(([0, 0, 0, 0], 41002)));
    let t = Instant::now();
    let s = net
        .tcp_connect(format!("{TAP_LINUX}:41002").parse().unwrap(), None)
        .unwrap();
    send_all(&s);
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(got.join().unwrap(), BULK);
    let tap = BULK as f64 / t.elapsed().as_secs_f64() / (1 << 20) as f64;
    drop((s, net, host));
    println!(
        "TCP 256 MiB to a Linux sink (256 KiB reads): capnet over TAP {tap:>7.1} MiB/s   Linux over veth {veth:>7.1} MiB/s   ratio {:.2} (goal: at least 0.5)",
        tap / veth
    );
}
