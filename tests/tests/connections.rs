//! Ten thousand connections between two sim hosts: each echoes its bytes
//! back exactly; the clients hold them through arenas (`Net::connect_arena`)
//! with a bounded number of descriptors, in this process and in netsrv; and
//! netsrv's memory stays within 16 KiB per connection end beyond the bytes
//! the connections hold (none, once the echo is done).

use capnet::host::Host;
use capnet_tests::{fds_and_memfds, rss_kib, two_hosts, Scratch};
use libclient::{Net, TcpStream};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const N: usize = 10_000;
/// Bytes each connection sends and gets back.
const PER: usize = 64;
const PORT: u16 = 7100;
/// netsrv's memory per idle connection end (issue 13).
const KIB_PER_END: u64 = 16;
/// Descriptors a side may gain for all its connections.
const FDS_MAX: usize = 64;

fn pid_of(host: &Host) -> u32 {
    host.process("netsrv").expect("netsrv").pid
}

/// Open descriptors of this process and of both netsrvs.
fn fds(pids: [u32; 2]) -> (usize, usize, usize) {
    let n = |pid| fds_and_memfds(pid).0;
    (n(std::process::id()), n(pids[0]), n(pids[1]))
}

/// Connection `i`'s bytes.
fn pattern(i: usize) -> Vec<u8> {
    (0..PER).map(|k| (i * 31 + k * 7) as u8).collect()
}

/// Reads what `s` has without waiting; `true` at its end.
fn drain(s: &mut TcpStream, into: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => into.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// The accepting side: echoes every byte back until `total` bytes went
/// back, learning which streams to look at from `news`.
fn echo(net: Net, mut streams: HashMap<u64, TcpStream>, total: usize) {
    let mut pending: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut echoed = 0;
    // A first look at each: data may have come before anything asked to
    // be told.
    let mut look: Vec<u64> = streams.keys().copied().collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while echoed < total {
        assert!(Instant::now() < deadline, "echoed {echoed} of {total}");
        for t in look.drain(..) {
            let Some(s) = streams.get_mut(&t) else {
                continue;
            };
            let out = pending.entry(t).or_default();
            drain(s, out);
            match s.write(out) {
                Ok(n) => {
                    out.drain(..n);
                    echoed += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("write: {e}"),
            }
        }
        look = net.news(Some(Duration::from_millis(200))).unwrap();
        // A stream with bytes still to send is looked at again.
        look.extend(
            pending
                .iter()
                .filter(|(_, p)| !p.is_empty())
                .map(|(t, _)| *t),
        );
    }
}

#[test]
fn ten_thousand_connections_echo_with_bounded_descriptors_and_memory() {
    let scratch = Scratch::new("connections");
    let limits = "\n[limits]\nsockets = 10100\nuser_sockets = 20400\n\
                  buffer_bytes = 17179869184\nuser_buffer_bytes = 34359738368\n";
    let (a, b) = two_hosts(&scratch, limits);
    let (pa, pb) = (pid_of(&a), pid_of(&b));
    let na = Net::connect_arena(&a.socket).unwrap();
    let nb = Net::connect_arena(&b.socket).unwrap();
    let listener = nb
        .tcp_listen(SocketAddr::from(([0, 0, 0, 0], PORT)), 256)
        .unwrap();
    let to: SocketAddr = format!("10.0.0.2:{PORT}").parse().unwrap();

    // One connection first, so that both arenas exist before counting.
    let first = na.tcp_connect(to, None).unwrap();
    let (first_in, _) = listener.accept().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let rss0 = rss_kib(pa) + rss_kib(pb);
    let fds0 = fds([pa, pb]);

    let t = Instant::now();
    let connector = {
        let na = na.clone();
        std::thread::spawn(move || {
            (0..N)
                .map(|_| na.tcp_connect(to, None).unwrap())
                .collect::<Vec<_>>()
        })
    };
    let mut accepted = HashMap::new();
    for _ in 0..N {
        let (s, _) = listener.accept().unwrap();
        s.set_nonblocking(true).unwrap();
        accepted.insert(s.token(), s);
    }
    let mut ours = connector.join().unwrap();
    eprintln!("{N} connections in {:.1} s", t.elapsed().as_secs_f64());
    drop((first, first_in));

    let server = {
        let nb = nb.clone();
        std::thread::spawn(move || echo(nb, accepted, N * PER))
    };
    let mut got: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut index = HashMap::new();
    for (i, s) in ours.iter_mut().enumerate() {
        s.set_nonblocking(true).unwrap();
        s.write_all(&pattern(i)).unwrap();
        index.insert(s.token(), i);
        // Asks to be told of the echo.
        drain(s, got.entry(s.token()).or_default());
    }
    let by_token: HashMap<u64, usize> = index.clone();
    let mut received: usize = got.values().map(Vec::len).sum();
    let deadline = Instant::now() + Duration::from_secs(120);
    while received < N * PER {
        assert!(
            Instant::now() < deadline,
            "received {received} of {}",
            N * PER
        );
        for t in na.news(Some(Duration::from_millis(200))).unwrap() {
            let Some(&i) = by_token.get(&t) else {
                continue;
            };
            let into = got.entry(t).or_default();
            let before = into.len();
            drain(&mut ours[i], into);
            received += into.len() - before;
        }
    }
    server.join().unwrap();
    for (t, i) in &index {
        assert_eq!(got[t], pattern(*i), "connection {i} got other bytes back");
    }

    std::thread::sleep(Duration::from_millis(300));
    let rss = rss_kib(pa) + rss_kib(pb);
    let per_end = rss.saturating_sub(rss0) / (2 * N as u64);
    let fds1 = fds([pa, pb]);
    eprintln!(
        "netsrv RSS {rss0} -> {rss} KiB: {per_end} KiB per connection end; descriptors (this process, netsrv a, b) {fds0:?} -> {fds1:?}"
    );
    assert!(
        per_end <= KIB_PER_END,
        "netsrv holds {per_end} KiB per idle connection end (bound {KIB_PER_END})"
    );
    assert!(
        fds1.0 <= fds0.0 + FDS_MAX,
        "this process: {fds0:?} -> {fds1:?}"
    );
    assert!(fds1.1 <= fds0.1 + FDS_MAX, "netsrv a: {fds0:?} -> {fds1:?}");
    assert!(fds1.2 <= fds0.2 + FDS_MAX, "netsrv b: {fds0:?} -> {fds1:?}");
    drop(ours);
}
