//! `conns`: what many connections cost. Two service sets on a sim wire
//! hold 10, 1,000 and 10,000 idle TCP connections, through arenas
//! (`Net::connect_arena`: a few descriptors for all of them); at each
//! level: how fast the new ones were connected and accepted, netsrv's
//! memory per connection end, and the cost of one packet then: a one-byte
//! ping-pong over one more connection, its median round trip and both
//! netsrvs' CPU per round trip. The goal is a per-packet cost flat in the
//! number of connections.
//!
//! The reference (root only) is Linux over veth between two namespaces: the
//! same connect and accept loop and the same ping-pong, with threads of this
//! process moved into the namespaces.

use crate::netns::{enter_netns, Namespaces, TAP_CAPNET, VETH_NS};
use crate::procs::{cpu_seconds, rss_kib, service_pids};
use capnet_tests::Scratch;
use libclient::Net;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const ROUND_TRIPS: usize = 2000;
const PORT: u16 = 6100;

/// Levels of idle connections.
const LEVELS: [usize; 3] = [10, 1000, 10_000];
/// Room for 10,000 sockets and their buffers in one client.
const LIMITS: &str = "\n[limits]\nsockets = 10100\nuser_sockets = 20400\nbuffer_bytes = 17179869184\nuser_buffer_bytes = 34359738368\n";

/// This process's descriptor limit.
fn nofile() -> libc::rlimit {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    lim
}

/// Linux's reference holds both ends of its connections in this process,
/// two descriptors each: as many as the limit allows (raised as far as
/// this process may), up to the level.
fn linux_cap() -> usize {
    (nofile().rlim_cur as usize).saturating_sub(200) / 2 / 100 * 100
}

/// Raises the limit to 65,536 (root, with the right to), else to the
/// hard limit.
fn raise_nofile() {
    let hard = nofile().rlim_max;
    let want = hard.max(65536);
    for (cur, max) in [(want, want), (hard, hard)] {
        let lim = libc::rlimit {
            rlim_cur: cur,
            rlim_max: max,
        };
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0 {
            return;
        }
    }
}

/// One ping-pong run over a connected pair: every timed round trip in µs,
/// sorted.
fn ping_pong<C: Read + Write, S: Read + Write + Send + 'static>(
    mut client: C,
    mut server: S,
) -> Vec<f64> {
    let echo = std::thread::spawn(move || {
        let mut b = [0u8; 1];
        while server.read_exact(&mut b).is_ok() {
            if server.write_all(&b).is_err() {
                break;
            }
        }
    });
    let mut b = [7u8; 1];
    let mut times = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..ROUND_TRIPS + ROUND_TRIPS / 10 {
        let t = Instant::now();
        client.write_all(&b).unwrap();
        client.read_exact(&mut b).unwrap();
        if i >= ROUND_TRIPS / 10 {
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    drop(client);
    echo.join().unwrap();
    times.sort_by(|a, b| a.total_cmp(b));
    times
}

/// The `q`-quantile of sorted `times`.
fn quantile(times: &[f64], q: f64) -> f64 {
    times[((times.len() - 1) as f64 * q).round() as usize]
}

/// Every percentile, 0 to 100: a latency CDF for the plots.
fn percentiles(times: &[f64]) -> Vec<f64> {
    (0..=100)
        .map(|p| quantile(times, p as f64 / 100.0))
        .collect()
}

struct Level {
    conns: usize,
    rate: f64,
    p50: f64,
    p99: f64,
    cpu_us: f64,
    kib_per_end: f64,
    /// Round trip percentiles 0..=100, µs.
    cdf: Vec<f64>,
}

impl Level {
    fn new(conns: usize, rate: f64, times: &[f64], cpu_us: f64, kib_per_end: f64) -> Level {
        Level {
            conns,
            rate,
            p50: quantile(times, 0.5),
            p99: quantile(times, 0.99),
            cpu_us,
            kib_per_end,
            cdf: percentiles(times),
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "conns": self.conns,
            "connects_per_s": self.rate,
            "p50_us": self.p50,
            "p99_us": self.p99,
            "netsrv_cpu_us_per_round_trip": self.cpu_us,
            "netsrv_rss_kib_per_end": self.kib_per_end,
            "round_trip_percentiles_us": self.cdf,
        })
    }
}

fn capnet_levels() -> Vec<Level> {
    let scratch = Scratch::new("bench-conns");
    let (a, b) = capnet_tests::two_hosts(&scratch, LIMITS);
    let na = Net::connect_arena(&a.socket).unwrap();
    let nb = Net::connect_arena(&b.socket).unwrap();
    let netsrv = |h| {
        service_pids(h)
            .into_iter()
            .find(|(n, _)| n == "netsrv")
            .unwrap()
            .1
    };
    let pids = [netsrv(&a), netsrv(&b)];
    let listener = nb
        .tcp_listen(SocketAddr::from(([0, 0, 0, 0], PORT)), 256)
        .unwrap();
    let to: SocketAddr = format!("10.0.0.2:{PORT}").parse().unwrap();
    let rss0: u64 = pids.iter().map(|p| rss_kib(*p)).sum();
    // p50, p99 and both netsrvs' CPU per round trip over one pair.
    let measure = |c: libclient::TcpStream, s: libclient::TcpStream| {
        let cpu0: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
        let times = ping_pong(c, s);
        let cpu1: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
        let trips = ROUND_TRIPS + ROUND_TRIPS / 10;
        (times, (cpu1 - cpu0) / trips as f64 * 1e6)
    };
    // The same ping-pong with a doorbell per stream, no arena: what the
    // arena's shared wakeup costs a packet.
    {
        let (pa, pb) = (a.net().unwrap(), b.net().unwrap());
        let l = pb
            .tcp_listen(SocketAddr::from(([0, 0, 0, 0], PORT + 1)), 4)
            .unwrap();
        let c = pa
            .tcp_connect(format!("10.0.0.2:{}", PORT + 1).parse().unwrap(), None)
            .unwrap();
        let (s, _) = l.accept().unwrap();
        let (times, cpu) = measure(c, s);
        let (p50, p99) = (quantile(&times, 0.5), quantile(&times, 0.99));
        println!(
            "      capnet, a doorbell per stream (Net::connect): p50 {p50:.1} us p99 {p99:.1} us, netsrv CPU {cpu:.1} us/round trip (both)"
        );
    }
    let mut held = Vec::new();
    let mut out = Vec::new();
    for level in LEVELS {
        let t = Instant::now();
        let new = level - held.len();
        while held.len() < level {
            let c = na.tcp_connect(to, None).unwrap_or_else(|e| {
                let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
                panic!("connection {}: {e} ({fds} descriptors open)", held.len())
            });
            let (s, _) = listener.accept().unwrap_or_else(|e| {
                let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
                panic!("accept {}: {e} ({fds} descriptors open)", held.len())
            });
            held.push((c, s));
        }
        let rate = new as f64 / t.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_millis(300));
        let rss: u64 = pids.iter().map(|p| rss_kib(*p)).sum();
        let c = na.tcp_connect(to, None).unwrap();
        let (s, _) = listener.accept().unwrap();
        let (times, cpu_us) = measure(c, s);
        let kib_per_end = rss.saturating_sub(rss0) as f64 / (2 * level) as f64;
        out.push(Level::new(level, rate, &times, cpu_us, kib_per_end));
    }
    let t = Instant::now();
    let n = held.len();
    drop(held);
    println!(
        "      capnet: {n} connections closed (both ends) in {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    out
}

/// From Linux over TAP: a client in the namespace connects to a capnet
/// server (one arena) at each level, sends a byte on each new connection
/// and reads it back, then runs the ping-pong over one more. CPU is the
/// capnet host's netsrv and nicdrv.
fn tap_levels(nets: &Namespaces) -> Vec<Level> {
    let scratch = Scratch::new("bench-conns-tap");
    let host = nets.capnet_with(&scratch, LIMITS);
    let pids: Vec<u32> = service_pids(&host)
        .into_iter()
        .filter(|(n, _)| n == "netsrv" || n.starts_with("nicdrv"))
        .map(|(_, p)| p)
        .collect();
    let net = Net::connect_arena(&host.socket).unwrap();
    let listener = net
        .tcp_listen(SocketAddr::from(([0, 0, 0, 0], PORT)), 256)
        .unwrap();
    let to: SocketAddr = format!("{TAP_CAPNET}:{PORT}").parse().unwrap();
    // The Linux side, on a thread in the namespace; told how many to open.
    let (want_tx, want_rx) = std::sync::mpsc::channel::<usize>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<std::net::TcpStream>();
    let ns = nets.ns.clone();
    let linux = std::thread::spawn(move || {
        enter_netns(&ns);
        let mut held = Vec::new();
        while let Ok(n) = want_rx.recv() {
            let new: Vec<std::net::TcpStream> = (0..n)
                .map(|_| std::net::TcpStream::connect(to).unwrap())
                .collect();
            for mut s in new {
                s.write_all(b"x").unwrap();
                held.push(s);
            }
            let from = held.len() - n;
            for s in &mut held[from..] {
                let mut b = [0u8; 1];
                s.read_exact(&mut b).unwrap();
                assert_eq!(&b, b"x");
            }
            let pp = std::net::TcpStream::connect(to).unwrap();
            pp.set_nodelay(true).unwrap();
            done_tx.send(pp).unwrap();
        }
        held.len()
    });
    let mut ours = Vec::new();
    let mut out = Vec::new();
    for level in LEVELS {
        let t = Instant::now();
        let new = level - ours.len();
        want_tx.send(new).unwrap();
        for _ in 0..new {
            let (s, _) = listener.accept().unwrap();
            ours.push(s);
        }
        let rate = new as f64 / t.elapsed().as_secs_f64();
        // Each new connection's byte, back to where it came from.
        for s in &mut ours[level - new..] {
            let mut b = [0u8; 1];
            s.read_exact(&mut b).unwrap();
            s.write_all(&b).unwrap();
        }
        let client = done_rx.recv().unwrap();
        let (server, _) = listener.accept().unwrap();
        let cpu0: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
        let times = ping_pong(client, server);
        let cpu1: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
        let trips = ROUND_TRIPS + ROUND_TRIPS / 10;
        out.push(Level::new(
            level,
            rate,
            &times,
            (cpu1 - cpu0) / trips as f64 * 1e6,
            0.0,
        ));
    }
    drop(want_tx);
    assert_eq!(linux.join().unwrap(), ours.len());
    out
}

fn linux_levels(nets: &Namespaces) -> Vec<Level> {
    let (ns, cl) = (nets.ns.clone(), nets.cl.clone());
    let addr: SocketAddr = format!("{VETH_NS}:{PORT}").parse().unwrap();
    // The server side: a thread in `ns` accepting and keeping connections.
    let (tx, rx) = std::sync::mpsc::channel::<std::net::TcpStream>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        enter_netns(&ns);
        let l = std::net::TcpListener::bind(addr).unwrap();
        ready_tx.send(()).unwrap();
        while let Ok((s, _)) = l.accept() {
            if tx.send(s).is_err() {
                break;
            }
        }
    });
    ready_rx.recv().unwrap();
    let client = std::thread::spawn(move || {
        enter_netns(&cl);
        let mut held = Vec::new();
        let mut out = Vec::new();
        for level in LEVELS.map(|l| l.min(linux_cap())) {
            let t = Instant::now();
            let new = level - held.len();
            while held.len() < level {
                let c = std::net::TcpStream::connect(addr).unwrap();
                let s = rx.recv().unwrap();
                held.push((c, s));
            }
            let rate = new as f64 / t.elapsed().as_secs_f64();
            let c = std::net::TcpStream::connect(addr).unwrap();
            let s = rx.recv().unwrap();
            c.set_nodelay(true).unwrap();
            s.set_nodelay(true).unwrap();
            let times = ping_pong(c, s);
            out.push(Level::new(level, rate, &times, 0.0, 0.0));
        }
        out
    });
    client.join().unwrap()
}

pub fn bench_conns() {
    raise_nofile();
    let ours = capnet_levels();
    let (theirs, tap) = match Namespaces::new("connections", "n") {
        Some(nets) => (Some(linux_levels(&nets)), Some(tap_levels(&nets))),
        None => (None, None),
    };
    println!(
        "connections: idle TCP connections held, then a 1-byte ping-pong ({ROUND_TRIPS} round trips) over one more"
    );
    for (i, c) in ours.iter().enumerate() {
        let linux = theirs.as_ref().and_then(|t| t.get(i));
        let reference = linux.map_or(String::new(), |l| {
            format!(
                "   Linux over veth ({} conns): {:.0} conn/s, p50 {:.1} us   ratio conn/s {:.2} p50 {:.2}",
                l.conns,
                l.rate,
                l.p50,
                c.rate / l.rate,
                c.p50 / l.p50
            )
        });
        println!(
            "  {:>6} conns: capnet {:.0} connect+accept/s, p50 {:.1} us p99 {:.1} us, netsrv CPU {:.1} us/round trip (both), {:.1} KiB RSS/conn end{reference}",
            c.conns, c.rate, c.p50, c.p99, c.cpu_us, c.kib_per_end
        );
    }
    if let (Some(first), Some(last)) = (ours.first(), ours.last()) {
        println!(
            "      per-packet cost at {} vs {} connections: netsrv CPU per round trip {:.2}x, p50 {:.2}x (goal: flat, 1.0)",
            last.conns,
            first.conns,
            last.cpu_us / first.cpu_us,
            last.p50 / first.p50
        );
    }
    for (i, t) in tap.iter().flatten().enumerate() {
        let linux = theirs.as_ref().and_then(|l| l.get(i));
        let reference = linux.map_or(String::new(), |l| {
            format!(
                "   ratio to Linux over veth: conn/s {:.2} p50 {:.2}",
                t.rate / l.rate,
                t.p50 / l.p50
            )
        });
        println!(
            "  {:>6} conns from Linux over TAP: {:.0} connect+accept/s, p50 {:.1} us p99 {:.1} us, netsrv+nicdrv CPU {:.1} us/round trip{reference}",
            t.conns, t.rate, t.p50, t.p99, t.cpu_us
        );
    }
    let json = |levels: &[Level]| levels.iter().map(Level::json).collect::<Vec<_>>();
    let results = serde_json::json!({
        "capnet": json(&ours),
        "linux": theirs.as_deref().map(json),
        "tap": tap.as_deref().map(json),
    });
    match crate::procs::write_results("conns", &results) {
        Ok(path) => println!("      results for scripts/plots.py: {}", path.display()),
        Err(e) => println!("      results not written: {e}"),
    }
}
