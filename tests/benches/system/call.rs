//! `call`: capnp call latency through libclient vs a Unix socket ping-pong.

use crate::procs::two_hosts;
use capnet_tests::Scratch;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

pub fn bench_call_latency() {
    let scratch = Scratch::new("bench-call");
    let (a, b) = two_hosts(&scratch);
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    let l = nb.tcp_listen("0.0.0.0:9000".parse().unwrap(), 1).unwrap();
    let s = na
        .tcp_connect("10.0.0.2:9000".parse().unwrap(), None)
        .unwrap();
    let _peer = l.accept().unwrap();
    const N: u32 = 5000;
    for _ in 0..200 {
        s.set_nodelay(true).unwrap();
    }
    let t = Instant::now();
    for _ in 0..N {
        s.set_nodelay(true).unwrap();
    }
    let call = t.elapsed() / N;

    let (mut x, mut y) = UnixStream::pair().unwrap();
    let echo = std::thread::spawn(move || {
        let mut b = [0u8; 1];
        while y.read_exact(&mut b).is_ok() {
            y.write_all(&b).unwrap();
        }
    });
    let mut b = [0u8; 1];
    let t = Instant::now();
    for _ in 0..N {
        x.write_all(&b).unwrap();
        x.read_exact(&mut b).unwrap();
    }
    let ping = t.elapsed() / N;
    drop(x);
    echo.join().unwrap();
    println!(
        "capnp call (TcpSocket.setNoDelay via libclient)  {:>8.1} us   unix socket ping-pong {:>6.1} us   ratio {:.1}x",
        call.as_secs_f64() * 1e6,
        ping.as_secs_f64() * 1e6,
        call.as_secs_f64() / ping.as_secs_f64()
    );
}
