//! `http` (root only, and `wrk`): HTTP requests per second with one
//! connection per request. The same server program (libclient's
//! `http_server` example, one thread per connection) runs on capnet with a
//! TAP port, and with `--std` on Linux's stack at the end of a veth pair;
//! `wrk` sends `Connection: close` requests from the other side of the TAP
//! and of the veth, with 1, 50 and 200 connections. Each process's CPU per
//! request comes from /proc (for wrk, from its rusage once it ends).
//!
//! wrk often closes first (it has the whole response before the server's
//! FIN), so its namespace holds a TIME-WAIT per request: at thousands of
//! requests a second the ephemeral ports run out within seconds and
//! `connect` crawls. Both wrk namespaces reuse TIME-WAIT ports after a
//! second (`tcp_tw_reuse`, safe with timestamps), as load generators are
//! set up. So ports come round again within a run, as they do with any
//! busy client, and reach a server whose end of the last connection on
//! that port may still be in its TIME-WAIT.

use crate::netns::{Namespaces, TAP_CAPNET, VETH_NS};
use crate::procs::{cpu_line, cpu_seconds, example_binary, service_pids, sh, wait_cpu, Example};
use capnet_tests::{cli_ok, Scratch};
use std::io::Read;
use std::process::{Command, Stdio};

const CONNECTIONS: [u32; 3] = [1, 50, 200];
const SECONDS: u32 = 10;
const PORT: u16 = 8080;

/// What wrk reports of a run.
#[derive(Default)]
struct Wrk {
    requests: u64,
    per_second: f64,
    /// connect, read, write, timeout.
    socket_errors: [u64; 4],
    /// Responses with a status of 400 or more.
    bad_status: u64,
    /// Mean and longest request, as wrk prints them.
    latency: (String, String),
}

impl Wrk {
    fn parse(out: &str) -> Wrk {
        let mut w = Wrk::default();
        for line in out.lines().map(str::trim) {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let Some(rest) = line.strip_prefix("Socket errors:") {
                // "connect 0, read 3, write 0, timeout 0"
                let nums: Vec<u64> = rest
                    .split(',')
                    .filter_map(|p| p.split_whitespace().nth(1)?.parse().ok())
                    .collect();
                w.socket_errors.copy_from_slice(&nums[..4]);
            } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
                w.bad_status = rest.trim().parse().unwrap_or(0);
            } else if let Some(rest) = line.strip_prefix("Requests/sec:") {
                w.per_second = rest.trim().parse().unwrap_or(0.0);
            } else if words.first() == Some(&"Latency") && words.len() >= 4 {
                w.latency = (words[1].to_string(), words[3].to_string());
            } else if words.get(1) == Some(&"requests") {
                w.requests = words[0].parse().unwrap_or(0);
            }
        }
        w
    }

    /// "N req/s (mean/max latency, errors c/r/w/t s)".
    fn summary(&self) -> String {
        let [c, r, w, t] = self.socket_errors;
        format!(
            "{:>6.0} req/s ({}/{}, errors {c}/{r}/{w}/{t} {})",
            self.per_second, self.latency.0, self.latency.1, self.bad_status
        )
    }
}

/// One wrk run from namespace `netns` against `addr`, with each of
/// `procs`' CPU seconds over it (wrk's last).
fn run_wrk(netns: &str, addr: &str, conns: u32, procs: &[(String, u32)]) -> (Wrk, Vec<f64>) {
    let before: Vec<f64> = procs.iter().map(|(_, p)| cpu_seconds(*p)).collect();
    let mut wrk = Namespaces::exec(netns, "wrk")
        .args([
            &format!("-t{}", conns.min(2)),
            &format!("-c{conns}"),
            &format!("-d{SECONDS}s"),
            "-H",
            "Connection: close",
            &format!("http://{addr}:{PORT}/"),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = String::new();
    wrk.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let (ok, wrk_cpu) = wait_cpu(&mut wrk);
    assert!(ok, "wrk failed:\n{out}");
    let mut cpu: Vec<f64> = procs
        .iter()
        .zip(before)
        .map(|((_, p), b)| cpu_seconds(*p) - b)
        .collect();
    cpu.push(wrk_cpu);
    (Wrk::parse(&out), cpu)
}

/// "name N" for each process: microseconds of CPU per request.
pub fn bench_http() {
    const NAME: &str = "HTTP connection per request";
    if !sh("command -v wrk >/dev/null") {
        println!("{NAME}: skipped (needs wrk: apt-get install wrk)");
        return;
    }
    let Some(server) = example_binary("http_server") else {
        println!(
            "{NAME}: skipped (needs the http_server example: cargo build --release -p libclient --examples)"
        );
        return;
    };
    let Some(nets) = Namespaces::new(NAME, "h") else {
        return;
    };
    for netns in [&nets.ns, &nets.cl] {
        assert!(sh(&format!(
            "ip netns exec {netns} sysctl -qw net.ipv4.tcp_tw_reuse=1"
        )));
    }
    let scratch = Scratch::new("bench-http");
    let host = nets.capnet(&scratch);
    let mut ours = Command::new(&server);
    ours.env("CAPNET_SOCKET", &host.socket)
        .arg(format!("0.0.0.0:{PORT}"));
    let ours = Example::start(ours, "http on");
    let mut theirs = Namespaces::exec(&nets.ns, server.to_str().unwrap());
    theirs.args(["--std", &format!("{VETH_NS}:{PORT}")]);
    let theirs = Example::start(theirs, "http on");

    let mut capnet_procs = service_pids(&host);
    capnet_procs.push(("http_server".into(), ours.child.id()));
    let linux_procs = vec![("http_server".to_string(), theirs.child.id())];
    let capnet_names: Vec<&str> = capnet_procs
        .iter()
        .map(|(n, _)| n.as_str())
        .chain(["wrk"])
        .collect();
    let linux_names = ["http_server", "wrk"];

    println!(
        "HTTP, one connection per request (wrk -H 'Connection: close' -d{SECONDS}s, 18-byte body); \
         each side: req/s (mean/max latency, errors: socket connect/read/write/timeout, then status >= 400):"
    );
    for conns in CONNECTIONS {
        let (l, lcpu) = run_wrk(&nets.cl, VETH_NS, conns, &linux_procs);
        let (c, ccpu) = run_wrk(&nets.ns, TAP_CAPNET, conns, &capnet_procs);
        println!(
            "  {conns:>3} connections: capnet over TAP {}   Linux over veth {}   ratio {:.2}",
            c.summary(),
            l.summary(),
            c.per_second / l.per_second
        );
        println!(
            "      CPU us/request  capnet: {}",
            cpu_line(&capnet_names, &ccpu, c.requests)
        );
        println!(
            "      CPU us/request  Linux:  {}",
            cpu_line(&linux_names, &lcpu, l.requests)
        );
    }
    let status = cli_ok(&host, &["status"]);
    for line in status
        .lines()
        .filter(|l| l.starts_with("stack:") || l.starts_with("limits:"))
    {
        println!("  capnet {line}");
    }
    drop((ours, theirs, host));
}
