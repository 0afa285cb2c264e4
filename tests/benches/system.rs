//! System benchmarks, each a ratio against a reference measured in the same
//! run (`cargo bench -p capnet-tests --bench system`):
//!
//! - capnp call latency through libclient vs a Unix socket ping-pong;
//! - the microkernel tax: TCP bulk through separate processes on a sim wire
//!   vs the same smoltcp stacks on the same rings in one process;
//! - idle CPU of two whole service sets;
//! - memory per idle TCP connection;
//! - TCP over TAP vs the Linux stack over veth (root only);
//! - failover time of an active-backup bond and driver restart time, each
//!   against the time the same stream takes to move the same bytes
//!   undisturbed;
//! - a balance-xor bond with 16 flows vs one port with 16 flows;
//! - TLS bulk in software and with the sim NIC's TLS offload vs plain TCP,
//!   with each service process's CPU per byte;
//! - the time a TLS flow takes to be offloaded again after a bond failover.
//!
//! CPU time is read from /proc for every process involved.

use capnet::host::Host;
use capnet_ring::{ChannelLayout, Duplex};
use capnet_tests::{
    bond_config_with, bond_hosts, cli_ok, receive_counting, send_pattern, sim_config, snapshot,
    tls_section, wait_progress, Progress, Scratch,
};
use libclient::{OffloadPolicy, RecordMode, TlsOptions, TlsStream};
use netsrv::device::RingDevice;
use netsrv::link::PortMeta;
use netsrv::stack::{Stack, TcpOptions};
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

/// User+system CPU seconds of a process.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / ticks_per_second()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// (name, pid) of every service process of a host, and of its supervisor.
fn service_pids(host: &Host) -> Vec<(String, u32)> {
    let mut pids = vec![("capnet".to_string(), host.pid())];
    pids.extend(
        host.processes()
            .unwrap()
            .into_iter()
            .map(|p| (p.name, p.pid)),
    );
    pids
}

fn two_hosts(scratch: &Scratch) -> (Host, Host) {
    capnet_tests::two_hosts(scratch, "")
}

// ---- capnp call latency ----

fn bench_call_latency() {
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

// ---- the microkernel tax ----

const BULK: u64 = 256 << 20;

/// Both hosts' stacks in this process, joined by one duplex: no nicdrv, no
/// wire process, no libclient, no capnp.
fn in_process_bulk() -> (f64, f64) {
    let layout = ChannelLayout {
        buffers: 512,
        buf_size: 1536,
    };
    let (da, fds) = Duplex::create("bench", layout).unwrap();
    let db = Duplex::attach(fds, layout).unwrap();
    // No driver sets the carrier here: the "wire" is always up.
    da.set_carrier(true);
    let cpu0 = cpu_seconds(std::process::id());
    let mut stacks = [Stack::new(64 * 1024), Stack::new(64 * 1024)];
    for (i, (stack, duplex)) in stacks.iter_mut().zip([da, db]).enumerate() {
        let meta = PortMeta {
            name: "sim0".into(),
            backend: "in-process".into(),
            mac: [2, 0, 0, 0, 0, i as u8 + 1],
            mtu: 1500,
            tls_offload: (false, false),
        };
        let cidr = netsrv::addr::parse_cidr(&format!("10.0.0.{}/24", i + 1)).unwrap();
        stack.add_free_port(meta.clone());
        stack
            .attach("sim0", meta, RingDevice::new(duplex, 1500, false))
            .unwrap();
        stack.configure(&[], &[("sim0".into(), cidr)], &[]).unwrap();
    }
    let [mut a, mut b] = stacks;
    let listener = b
        .tcp_listen("0.0.0.0:5001".parse().unwrap(), 1, TcpOptions::default())
        .unwrap();
    let client = a
        .tcp_connect("10.0.0.2:5001".parse().unwrap(), &TcpOptions::default())
        .unwrap();
    let mut server = None;
    let chunk = vec![0x5au8; 64 * 1024];
    let (mut sent, mut got) = (0u64, 0u64);
    let t = Instant::now();
    while got < BULK {
        a.poll();
        b.poll();
        if server.is_none() {
            server = b.tcp_accept(listener).unwrap().map(|(id, _)| id);
            continue;
        }
        if sent < BULK {
            let n = (BULK - sent).min(chunk.len() as u64) as usize;
            if let Ok(Some(w)) = a.tcp_write(client, &chunk[..n]) {
                sent += w as u64;
            }
        }
        while let Ok(Some(data)) = b.tcp_read(server.unwrap(), 1 << 20) {
            if data.is_empty() {
                break;
            }
            got += data.len() as u64;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    (
        BULK as f64 / secs / (1 << 20) as f64,
        cpu_seconds(std::process::id()) - cpu0,
    )
}

fn processes_bulk() -> (f64, Vec<(String, f64)>) {
    let scratch = Scratch::new("bench-bulk");
    let (a, b) = two_hosts(&scratch);
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    let mut pids: Vec<(String, u32)> = service_pids(&a)
        .into_iter()
        .map(|(n, p)| (format!("a {n}"), p))
        .collect();
    pids.extend(
        service_pids(&b)
            .into_iter()
            .map(|(n, p)| (format!("b {n}"), p)),
    );
    pids.push(("application (both ends)".into(), std::process::id()));
    let before: Vec<f64> = pids.iter().map(|(_, p)| cpu_seconds(*p)).collect();
    let l = nb.tcp_listen("0.0.0.0:5001".parse().unwrap(), 1).unwrap();
    // The application does nothing but move bytes, as in the one-process run.
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let mut n = 0u64;
        loop {
            match s.read(&mut buf).unwrap() {
                0 => return n,
                k => n += k as u64,
            }
        }
    });
    let t = Instant::now();
    let mut s = na
        .tcp_connect("10.0.0.2:5001".parse().unwrap(), None)
        .unwrap();
    let chunk = vec![0x5au8; 256 * 1024];
    let mut sent = 0;
    while sent < BULK {
        sent += s
            .write(&chunk[..(BULK - sent).min(chunk.len() as u64) as usize])
            .unwrap() as u64;
    }
    s.shutdown(Shutdown::Write).unwrap();
    let n = server.join().unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(n, BULK);
    let cpu = pids
        .iter()
        .zip(before)
        .map(|((name, p), b)| (name.clone(), cpu_seconds(*p) - b))
        .collect();
    (BULK as f64 / secs / (1 << 20) as f64, cpu)
}

fn bench_microkernel_tax() {
    let (mib_proc, cpu) = processes_bulk();
    let (mib_inproc, cpu_inproc) = in_process_bulk();
    println!(
        "TCP bulk 256 MiB: processes on a sim wire {:>7.1} MiB/s   one process {:>7.1} MiB/s   ratio {:.2}",
        mib_proc,
        mib_inproc,
        mib_proc / mib_inproc
    );
    let per_gib = |s: f64| s / (BULK as f64 / (1u64 << 30) as f64);
    for (name, s) in cpu {
        println!("    CPU {:<28} {:>6.2} s/GiB", name, per_gib(s));
    }
    println!(
        "    CPU {:<28} {:>6.2} s/GiB",
        "one process (both stacks)",
        per_gib(cpu_inproc)
    );
}

// ---- idle cost and memory ----

fn bench_idle_and_memory() {
    let scratch = Scratch::new("bench-idle");
    let (a, b) = two_hosts(&scratch);
    let mut pids = service_pids(&a);
    pids.extend(service_pids(&b));
    std::thread::sleep(Duration::from_millis(500));
    let before: f64 = pids.iter().map(|(_, p)| cpu_seconds(*p)).sum();
    let window = Duration::from_secs(5);
    std::thread::sleep(window);
    let idle: f64 = pids.iter().map(|(_, p)| cpu_seconds(*p)).sum::<f64>() - before;
    println!(
        "idle: {} processes of two service sets used {:.2}% of one core over {} s",
        pids.len(),
        idle / window.as_secs_f64() * 100.0,
        window.as_secs()
    );

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

// ---- TAP vs veth ----

fn sh(cmd: &str) -> bool {
    Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn bench_tap_vs_veth() {
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

fn main() {
    // `cargo test --benches` lists or runs benches in test mode: do nothing.
    if std::env::args().any(|a| a == "--list") || !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let only = std::env::var("CAPNET_BENCH").unwrap_or_default();
    let want = |name: &str| only.is_empty() || only.split(',').any(|o| o == name);
    if want("call") {
        bench_call_latency();
    }
    if want("tax") {
        bench_microkernel_tax();
    }
    if want("idle") {
        bench_idle_and_memory();
    }
    if want("tap") {
        bench_tap_vs_veth();
    }
    if want("failover") {
        bench_failover();
    }
    if want("restart") {
        bench_restart();
    }
    if want("xor") {
        bench_xor();
    }
    if want("tls") {
        bench_tls();
    }
    if want("reoffload") {
        bench_reoffload();
    }
}

// ---- failover and restart ----

/// A stream from host a to host b that runs until dropped; `progress`
/// counts the bytes b received.
struct Stream {
    progress: Progress,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Stream {
    fn start(na: &libclient::Net, nb: &libclient::Net, to: &str) -> Stream {
        let port = to.rsplit_once(':').unwrap().1;
        let l = nb
            .tcp_listen(format!("0.0.0.0:{port}").parse().unwrap(), 1)
            .unwrap();
        let progress = Progress::default();
        let stop = Arc::new(AtomicBool::new(false));
        let p = progress.clone();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let _ = receive_counting(&mut s, &p, 0);
        });
        let mut c = na.tcp_connect(to.parse().unwrap(), None).unwrap();
        let st = stop.clone();
        let client = std::thread::spawn(move || {
            let chunk = vec![0x3cu8; 64 * 1024];
            while !st.load(Ordering::Relaxed) {
                if c.write_all(&chunk).is_err() {
                    return;
                }
            }
            let _ = c.shutdown(Shutdown::Write);
        });
        assert!(wait_progress(&progress, 8 << 20, Duration::from_secs(30)));
        Stream {
            progress,
            stop,
            threads: vec![server, client],
        }
    }

    fn bytes(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }

    /// Time from now until `bytes` more arrived.
    fn time_to_move(&self, bytes: u64, from: Instant) -> Duration {
        assert!(wait_progress(
            &self.progress,
            self.bytes() + bytes,
            Duration::from_secs(30)
        ));
        from.elapsed()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// "Moving again" means this many more bytes arrived.
const MOVED: u64 = 256 << 10;

fn bench_failover() {
    const ROUNDS: usize = 10;
    let scratch = Scratch::new("bench-failover");
    let (a, b) = bond_hosts(&scratch, "active-backup", Some("p0"));
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    let stream = Stream::start(&na, &nb, "10.0.0.2:5100");
    let (mut first_frame, mut moving, mut undisturbed) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        std::thread::sleep(Duration::from_millis(200));
        undisturbed.push(stream.time_to_move(MOVED, Instant::now()));
        std::thread::sleep(Duration::from_millis(200));
        let snap = snapshot(&a);
        let (from, to) = if snap.active == "p0" {
            ("p0", "p1")
        } else {
            ("p1", "p0")
        };
        let frames_before = snap.port(to).tx_frames;
        let t0 = Instant::now();
        capnet::cli::set_carrier(&a.run_dir, from, false).unwrap();
        let at = stream.bytes();
        // The first frame the stack sends on the other leg.
        while snapshot(&a).port(to).tx_frames == frames_before {
            assert!(t0.elapsed() < Duration::from_secs(10), "no frame on {to}");
        }
        first_frame.push(t0.elapsed());
        assert!(wait_progress(
            &stream.progress,
            at + MOVED,
            Duration::from_secs(30)
        ));
        moving.push(t0.elapsed());
        capnet::cli::set_carrier(&a.run_dir, from, true).unwrap();
    }
    let worst = moving.iter().copied().max().unwrap_or_default();
    let (f, m, u) = (median(first_frame), median(moving), median(undisturbed));
    println!(
        "failover (active-backup, carrier drop on the active leg, median of {ROUNDS}):\n  \
         first frame on the other leg {:.1} ms; stream moved {} KiB more after {:.1} ms \
         (max {:.1}), vs {:.1} ms undisturbed (ratio {:.2}); goal: under 100 ms",
        ms(f),
        MOVED >> 10,
        ms(m),
        ms(worst),
        ms(u),
        ms(m) / ms(u)
    );
}

fn bench_restart() {
    const ROUNDS: usize = 6;
    let scratch = Scratch::new("bench-restart");
    let (a, b) = two_hosts(&scratch);
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    let stream = Stream::start(&na, &nb, "10.0.0.2:5101");
    let (mut moving, mut undisturbed) = (Vec::new(), Vec::new());
    for k in 1..=ROUNDS as u32 {
        // Outside the supervisor's crash-loop window (1 s).
        std::thread::sleep(Duration::from_millis(1100));
        undisturbed.push(stream.time_to_move(MOVED, Instant::now()));
        let t0 = Instant::now();
        let at = stream.bytes();
        a.kill("nicdrv sim0", libc::SIGKILL).unwrap();
        assert!(wait_progress(
            &stream.progress,
            at + MOVED,
            Duration::from_secs(30)
        ));
        moving.push(t0.elapsed());
        a.wait_process("nicdrv sim0", |p| p.restarts == k, Duration::from_secs(10))
            .unwrap();
    }
    let (m, u) = (median(moving.clone()), median(undisturbed));
    println!(
        "driver restart (kill -9 of nicdrv mid-stream, median of {ROUNDS}):\n  \
         stream moved {} KiB more {:.1} ms after the kill (max {:.1} ms), vs {:.1} ms \
         undisturbed (ratio {:.1}); goal: under 1 s",
        MOVED >> 10,
        ms(m),
        ms(*moving.iter().max().unwrap()),
        ms(u),
        ms(m) / ms(u)
    );
}

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
fn bench_xor() {
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

// ---- TLS: software and NIC offload against plain TCP ----

/// Bytes moved one way per transfer.
const TLS_BULK: u64 = 64 << 20;
/// What the application writes or reads per call.
const CHUNK: usize = 256 * 1024;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Carry {
    Plain,
    Software,
    Offload,
}

impl Carry {
    const ALL: [Carry; 3] = [Carry::Plain, Carry::Software, Carry::Offload];

    fn label(self) -> &'static str {
        match self {
            Carry::Plain => "plain TCP",
            Carry::Software => "TLS software",
            Carry::Offload => "TLS offload",
        }
    }
}

fn write_bulk(w: &mut impl Write, bytes: u64) {
    let chunk = vec![0x5au8; CHUNK];
    let mut sent = 0;
    while sent < bytes {
        let n = (bytes - sent).min(CHUNK as u64) as usize;
        w.write_all(&chunk[..n]).unwrap();
        sent += n as u64;
    }
}

fn read_counting(r: &mut impl Read) -> u64 {
    let mut buf = vec![0u8; CHUNK];
    let mut n = 0;
    loop {
        match r.read(&mut buf).unwrap() {
            0 => return n,
            k => n += k as u64,
        }
    }
}

/// One transfer: seconds from the first write (connection and handshake
/// done) to the receiver's end of stream, CPU seconds of each pid over the
/// same span, and the cipher suite.
struct Transfer {
    secs: f64,
    cpu: Vec<f64>,
    suite: String,
}

/// Moves TLS_BULK from a to b once, as `carry` says; checks that TLS took
/// the record mode asked for on both ends.
fn one_way(a: &Host, b: &Host, carry: Carry, port: u16, pids: &[(String, u32)]) -> Transfer {
    let to = format!("10.0.0.2:{port}").parse().unwrap();
    let listen = format!("0.0.0.0:{port}").parse().unwrap();
    let cpu = || {
        pids.iter()
            .map(|(_, p)| cpu_seconds(*p))
            .collect::<Vec<f64>>()
    };
    let (cpu0, t, suite) = if carry == Carry::Plain {
        let (na, nb) = (a.net().unwrap(), b.net().unwrap());
        let l = nb.tcp_listen(listen, 1).unwrap();
        let server = std::thread::spawn(move || read_counting(&mut l.accept().unwrap().0));
        let mut c = na.tcp_connect(to, None).unwrap();
        let (cpu0, t) = (cpu(), Instant::now());
        write_bulk(&mut c, TLS_BULK);
        c.shutdown(Shutdown::Write).unwrap();
        assert_eq!(server.join().unwrap(), TLS_BULK);
        (cpu0, t, String::new())
    } else {
        let options = TlsOptions {
            offload: if carry == Carry::Offload {
                OffloadPolicy::Auto
            } else {
                OffloadPolicy::Off
            },
            ..TlsOptions::default()
        };
        let (ta, tb) = (a.tls().unwrap(), b.tls().unwrap());
        let l = tb.listen(listen, 1, &options).unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let n = read_counting(&mut &s);
            (n, s.info().unwrap())
        });
        let c = ta.connect_stream(to, "capnet.test", &options).unwrap();
        let (cpu0, t) = (cpu(), Instant::now());
        write_bulk(&mut &c, TLS_BULK);
        c.shutdown(Shutdown::Write).unwrap();
        let (n, server_info) = server.join().unwrap();
        assert_eq!(n, TLS_BULK);
        let info = c.info().unwrap();
        let mode = if carry == Carry::Offload {
            RecordMode::Device
        } else {
            RecordMode::Software
        };
        assert_eq!(info.tx, mode, "{carry:?}: sender {info:?}");
        assert_eq!(server_info.rx, mode, "{carry:?}: receiver {server_info:?}");
        (cpu0, t, info.cipher_suite)
    };
    let secs = t.elapsed().as_secs_f64();
    Transfer {
        secs,
        cpu: cpu().iter().zip(cpu0).map(|(c, c0)| c - c0).collect(),
        suite,
    }
}

fn bench_tls() {
    const ROUNDS: usize = 5;
    let scratch = Scratch::new("bench-tls");
    let tls = tls_section(None);
    let start = |n: u8, dir: &str| {
        Host::start(
            &format!("{}{tls}", sim_config(n, "tls_offload = true")),
            &scratch.0.join(dir),
            &scratch.0.join("a"),
        )
        .unwrap()
    };
    let (a, b) = (start(1, "a"), start(2, "b"));
    // The service processes (the supervisor does no work on the data path).
    let mut pids: Vec<(String, u32)> = Vec::new();
    for (h, host) in [("a", &a), ("b", &b)] {
        let mut ps = host.processes().unwrap();
        ps.sort_by(|x, y| x.name.cmp(&y.name));
        pids.extend(ps.into_iter().map(|p| (format!("{h} {}", p.name), p.pid)));
    }
    pids.push(("application (both ends)".into(), std::process::id()));
    // A first round of each, not counted: handshakes, page faults, caches.
    let mut port = 5400;
    for carry in Carry::ALL {
        one_way(&a, &b, carry, port, &pids);
        port += 1;
    }
    let mut secs: [Vec<f64>; 3] = Default::default();
    let mut cpu = [
        vec![0.0; pids.len()],
        vec![0.0; pids.len()],
        vec![0.0; pids.len()],
    ];
    let mut suite = String::new();
    for _ in 0..ROUNDS {
        for (i, carry) in Carry::ALL.into_iter().enumerate() {
            let r = one_way(&a, &b, carry, port, &pids);
            port += 1;
            secs[i].push(r.secs);
            for (sum, c) in cpu[i].iter_mut().zip(r.cpu) {
                *sum += c;
            }
            if !r.suite.is_empty() {
                suite = r.suite;
            }
        }
    }
    let rate = |secs: f64| TLS_BULK as f64 / secs / (1 << 20) as f64;
    // (median, slowest, fastest) MiB/s of each way of carrying.
    let rates: Vec<(f64, f64, f64)> = secs
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s.sort_by(f64::total_cmp);
            (rate(s[s.len() / 2]), rate(s[s.len() - 1]), rate(s[0]))
        })
        .collect();
    let mib_s: Vec<f64> = rates.iter().map(|r| r.0).collect();
    println!(
        "TLS {} MiB one way between two sim hosts (ports with TLS offload), {suite}, median of {ROUNDS}:",
        TLS_BULK >> 20
    );
    for (carry, (m, lo, hi)) in Carry::ALL.iter().zip(&rates) {
        println!(
            "  {:<14} {m:>7.1} MiB/s   (rounds {lo:.1} to {hi:.1})",
            carry.label()
        );
    }
    println!(
        "  offload/plain {:.2} (goal >= 0.9)   offload/software {:.2}   software/plain {:.2}",
        mib_s[2] / mib_s[0],
        mib_s[2] / mib_s[1],
        mib_s[1] / mib_s[0]
    );
    let bytes = (ROUNDS as u64 * TLS_BULK) as f64;
    println!(
        "  CPU ns/byte {:<23} {:>9} {:>9} {:>9}",
        "", "plain", "software", "offload"
    );
    for (k, (name, _)) in pids.iter().enumerate() {
        println!(
            "    {:<33} {:>9.2} {:>9.2} {:>9.2}",
            name,
            cpu[0][k] * 1e9 / bytes,
            cpu[1][k] * 1e9 / bytes,
            cpu[2][k] * 1e9 / bytes
        );
    }
    println!(
        "    {:<33} {:>9.2} {:>9.2} {:>9.2}",
        "all",
        cpu[0].iter().sum::<f64>() * 1e9 / bytes,
        cpu[1].iter().sum::<f64>() * 1e9 / bytes,
        cpu[2].iter().sum::<f64>() * 1e9 / bytes
    );
    let s = a.tls().unwrap().stat().unwrap();
    assert_eq!(s.decrypt_error, 0, "{s:?}");
}

// ---- TLS re-offload after a failover ----

/// Removes ANSI colour sequences (tracing colours its output).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The timestamp a tracing line starts with ("2026-11-21T11:15:12.123456Z").
fn log_time(line: &str) -> Option<SystemTime> {
    let ts = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let d: Vec<i64> = date
        .split('-')
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<u64> = hms
        .split(':')
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    if d.len() != 3 || t.len() != 3 || frac.len() > 9 {
        return None;
    }
    let nanos: u32 = format!("{frac:0<9}").parse().ok()?;
    let days = u64::try_from(days_from_civil(d[0], d[1], d[2])).ok()?;
    let secs = days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2];
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// The time of the first log line after `skip` lines that contains every
/// word of `words`, as an offset from `since`.
fn logged_after(log: &str, skip: usize, words: &[&str], since: SystemTime) -> Option<Duration> {
    log.lines()
        .skip(skip)
        .map(strip_ansi)
        .find(|l| words.iter().all(|w| l.contains(w)))
        .and_then(|l| log_time(&l))
        .map(|t| t.duration_since(since).unwrap_or_default())
}

/// One carrier change under an offloaded TLS stream, as seen from host a:
/// times from the change to tlsd's log lines (egress change seen, old TX
/// context revoked, new one made on the other leg), to the stream's TX
/// being on the NIC again as polled, and to the stream having moved
/// MOVED bytes more; and whether netsrv's drain of the old leg gave up.
struct Flap {
    noticed: Option<Duration>,
    revoked: Option<Duration>,
    offloaded: Option<Duration>,
    polled: Duration,
    moving: Duration,
    drain_gave_up: bool,
}

fn flap(
    a: &Host,
    ta: &libclient::Tls,
    stream: &TlsStream,
    progress: &Progress,
    port: &str,
    up: bool,
    to: &str,
) -> Flap {
    let from = if to == "p0" { "p1" } else { "p0" };
    let before = ta.stat().unwrap().reoffloads;
    let lines = a.log().lines().count();
    let (wall0, t0) = (SystemTime::now(), Instant::now());
    capnet::cli::set_carrier(&a.run_dir, port, up).unwrap();
    let at = progress.load(Ordering::Relaxed);
    // Offloaded again: the counter moved and the stream's TX is on the NIC
    // (each look is a capnp call to tlsd).
    while ta.stat().unwrap().reoffloads == before || stream.info().unwrap().tx != RecordMode::Device
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "not offloaded again"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    let polled = t0.elapsed();
    assert!(wait_progress(progress, at + MOVED, Duration::from_secs(30)));
    let moving = t0.elapsed();
    // tlsd's lines reach the host's log through pipes: wait for them.
    let (from_port, to_port) = (format!("port={from}"), format!("port={to}"));
    let offloaded = ["TLS offloaded", "kind=TlsTx", to_port.as_str()];
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut log = a.log();
    while logged_after(&log, lines, &offloaded, wall0).is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        log = a.log();
    }
    Flap {
        noticed: logged_after(&log, lines, &["egress changed"], wall0),
        revoked: logged_after(&log, lines, &["TLS TX context revoked", &from_port], wall0),
        offloaded: logged_after(&log, lines, &offloaded, wall0),
        polled,
        moving,
        drain_gave_up: logged_after(&log, lines, &["offloadStop (TX) failed"], wall0).is_some(),
    }
}

fn print_flaps(what: &str, flaps: &[Flap]) {
    let med = |f: &dyn Fn(&Flap) -> Option<Duration>| {
        let v: Vec<Duration> = flaps.iter().filter_map(f).collect();
        if v.is_empty() {
            "-".to_string()
        } else {
            format!("{:.1}", ms(median(v)))
        }
    };
    println!(
        "  {what}: egress change seen {} ms, old TX context revoked {} ms, TX context on the \
         new leg {} ms (log); polled {} ms (max {:.1}); stream moved {} KiB more after {} ms \
         (max {:.1}); drain of the old leg gave up (5 s) in {} of {}",
        med(&|f| f.noticed),
        med(&|f| f.revoked),
        med(&|f| f.offloaded),
        med(&|f| Some(f.polled)),
        ms(flaps.iter().map(|f| f.polled).max().unwrap()),
        MOVED >> 10,
        med(&|f| Some(f.moving)),
        ms(flaps.iter().map(|f| f.moving).max().unwrap()),
        flaps.iter().filter(|f| f.drain_gave_up).count(),
        flaps.len()
    );
}

/// An active-backup bond with p0 as its primary, both legs offering TLS
/// offload, an offloaded stream from a to b. Each flap drops p0's carrier
/// (failover to p1 with the old leg down) and then raises it again (back
/// to p0, the old leg p1 still up).
fn bench_reoffload() {
    const FLAPS: usize = 8;
    let scratch = Scratch::new("bench-reoffload");
    let tls = tls_section(None);
    let config = |n: u8| {
        bond_config_with(n, "active-backup", Some("p0"), &tls, "").replace(
            "backend = \"sim\"\n",
            "backend = \"sim\"\ntls_offload = true\n",
        )
    };
    // tlsd's holder logs its egress changes and contexts at info; the lines
    // carry tlsd's own timestamps.
    let saved = std::env::var_os("CAPNET_LOG");
    std::env::set_var("CAPNET_LOG", "warn,tlsd::holder=info");
    let (a_dir, b_dir) = (scratch.0.join("a"), scratch.0.join("b"));
    let a = Host::start(&config(1), &a_dir, &a_dir).unwrap();
    let b = Host::start(&config(2), &b_dir, &a_dir).unwrap();
    match saved {
        Some(v) => std::env::set_var("CAPNET_LOG", v),
        None => std::env::remove_var("CAPNET_LOG"),
    }
    let (ta, tb) = (a.tls().unwrap(), b.tls().unwrap());
    let options = TlsOptions::default();
    let l = tb
        .listen("0.0.0.0:5500".parse().unwrap(), 1, &options)
        .unwrap();
    let progress = Progress::default();
    let p = progress.clone();
    let server = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        receive_counting(&mut &s, &p, 0).expect("the offloaded stream ends cleanly");
    });
    let c: Arc<TlsStream> = Arc::new(
        ta.connect_stream("10.0.0.2:5500".parse().unwrap(), "capnet.test", &options)
            .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (st, w) = (stop.clone(), c.clone());
    let writer = std::thread::spawn(move || {
        let chunk = vec![0x3cu8; 64 * 1024];
        while !st.load(Ordering::Relaxed) {
            (&*w).write_all(&chunk).expect("write");
        }
        w.shutdown(Shutdown::Write).expect("close_notify");
    });
    assert!(wait_progress(&progress, 8 << 20, Duration::from_secs(30)));
    let t = Instant::now();
    while c.info().unwrap().tx != RecordMode::Device {
        assert!(t.elapsed() < Duration::from_secs(10), "never offloaded");
        std::thread::sleep(Duration::from_millis(5));
    }
    let (mut down, mut back) = (Vec::new(), Vec::new());
    for _ in 0..FLAPS {
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(snapshot(&a).active, "p0");
        down.push(flap(&a, &ta, &c, &progress, "p0", false, "p1"));
        std::thread::sleep(Duration::from_millis(300));
        back.push(flap(&a, &ta, &c, &progress, "p0", true, "p0"));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    server.join().expect("reader");
    let s = ta.stat().unwrap();
    assert_eq!(s.decrypt_error, 0, "{s:?}");
    println!(
        "TLS re-offload (active-backup bond, primary p0, both legs with TLS offload, an \
         offloaded stream; times from the carrier change, median of {FLAPS}):"
    );
    print_flaps("p0 carrier down, to p1 (old leg down)", &down);
    print_flaps("p0 carrier up, back to p0 (old leg up)", &back);
    println!(
        "  tlsd: reoffloads {}, tx_device {}, decrypt_error {}",
        s.reoffloads, s.tx_device, s.decrypt_error
    );
    for (h, name) in [(&a, "a"), (&b, "b")] {
        let status = cli_ok(h, &["status"]);
        if let Some(line) = status.lines().find(|l| l.starts_with("offload:")) {
            println!("  {name} netsrv {line}");
        }
    }
}
