//! `pingpong` (root only, and python3): request/response latency, one
//! byte each way over one TCP connection. The same echo server program
//! (libclient's `echo_server` example, no delay on its sockets) runs on
//! capnet with a TAP port, and with `--std` on Linux's stack at the end of
//! a veth pair; the same client (a Python loop with TCP_NODELAY, each round
//! trip timed with `perf_counter_ns`) runs on the other side of each. The
//! median and the 99th percentile, and capnet's CPU per round trip in each
//! process: what a reply costs when every step of it waits for the one
//! before, as one connection's HTTP requests do.

use crate::netns::{Namespaces, TAP_CAPNET, VETH_NS};
use crate::procs::{cpu_line, cpu_seconds, example_binary, service_pids, sh, wait_cpu, Example};
use capnet_tests::Scratch;
use std::io::Read;
use std::process::Stdio;

const PORT: u16 = 7007;
/// Round trips timed, after as many again to warm up.
const ROUND_TRIPS: u32 = 20_000;

/// Prints "p50 p99" in µs of ROUND_TRIPS one-byte round trips.
const CLIENT: &str = r#"
import socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((host, port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
pc = time.perf_counter_ns
for _ in range(n):
    s.sendall(b"x")
    if s.recv(1) != b"x":
        sys.exit("short echo")
t = []
for _ in range(n):
    a = pc()
    s.sendall(b"x")
    if s.recv(1) != b"x":
        sys.exit("short echo")
    t.append(pc() - a)
t.sort()
print(t[len(t) // 2] / 1000, t[len(t) * 99 // 100] / 1000)
"#;

/// The median and 99th percentile round trip, in µs.
struct Latency {
    p50: f64,
    p99: f64,
}

/// Runs the client in `netns` against `addr`, with each of `procs`' CPU
/// seconds over it (the client's last).
fn run_client(netns: &str, addr: &str, procs: &[(String, u32)]) -> (Latency, Vec<f64>) {
    let before: Vec<f64> = procs.iter().map(|(_, p)| cpu_seconds(*p)).collect();
    let mut client = Namespaces::exec(netns, "python3")
        .args([
            "-c",
            CLIENT,
            addr,
            &PORT.to_string(),
            &ROUND_TRIPS.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = String::new();
    client
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let (ok, client_cpu) = wait_cpu(&mut client);
    assert!(ok, "the ping-pong client failed: {out}");
    let v: Vec<f64> = out.split_whitespace().map(|w| w.parse().unwrap()).collect();
    let mut cpu: Vec<f64> = procs
        .iter()
        .zip(before)
        .map(|((_, p), b)| cpu_seconds(*p) - b)
        .collect();
    cpu.push(client_cpu);
    (
        Latency {
            p50: v[0],
            p99: v[1],
        },
        cpu,
    )
}

pub fn bench_pingpong() {
    const NAME: &str = "TCP ping-pong";
    if !sh("command -v python3 >/dev/null") {
        println!("{NAME}: skipped (needs python3)");
        return;
    }
    let Some(server) = example_binary("echo_server") else {
        println!(
            "{NAME}: skipped (needs the echo_server example: cargo build --release -p libclient --examples)"
        );
        return;
    };
    let Some(nets) = Namespaces::new(NAME, "p") else {
        return;
    };
    let scratch = Scratch::new("bench-pingpong");
    let host = nets.capnet(&scratch);
    let mut ours = std::process::Command::new(&server);
    ours.env("CAPNET_SOCKET", &host.socket)
        .arg(format!("0.0.0.0:{PORT}"));
    let ours = Example::start(ours, "echo on");
    let mut theirs = Namespaces::exec(&nets.ns, server.to_str().unwrap());
    theirs.args(["--std", &format!("{VETH_NS}:{PORT}")]);
    let theirs = Example::start(theirs, "echo on");

    let mut capnet_procs = service_pids(&host);
    capnet_procs.push(("echo_server".into(), ours.child.id()));
    let linux_procs = vec![("echo_server".to_string(), theirs.child.id())];
    let (l, lcpu) = run_client(&nets.cl, VETH_NS, &linux_procs);
    let (c, ccpu) = run_client(&nets.ns, TAP_CAPNET, &capnet_procs);
    let names = |procs: &[(String, u32)]| -> Vec<String> {
        procs
            .iter()
            .map(|(n, _)| n.clone())
            .chain(["client".to_string()])
            .collect()
    };
    let (cn, ln) = (names(&capnet_procs), names(&linux_procs));
    let cn: Vec<&str> = cn.iter().map(String::as_str).collect();
    let ln: Vec<&str> = ln.iter().map(String::as_str).collect();
    // Each side's CPU counts both timed and warm-up round trips.
    let trips = 2 * ROUND_TRIPS as u64;
    println!(
        "TCP ping-pong, 1 byte each way, {ROUND_TRIPS} round trips: capnet over TAP p50 {:.1} us p99 {:.1} us   \
         Linux over veth p50 {:.1} us p99 {:.1} us   ratio p50 {:.2} p99 {:.2} (goal: at most 2)",
        c.p50,
        c.p99,
        l.p50,
        l.p99,
        c.p50 / l.p50,
        c.p99 / l.p99
    );
    println!(
        "      CPU us/round trip  capnet: {}",
        cpu_line(&cn, &ccpu, trips)
    );
    println!(
        "      CPU us/round trip  Linux:  {}",
        cpu_line(&ln, &lcpu, trips)
    );
    drop((ours, theirs, host));
}
