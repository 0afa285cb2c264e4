//! System benchmarks, each a ratio against a reference measured in the same
//! run (`cargo bench -p capnet-tests --bench system`):
//!
//! - capnp call latency through libclient vs a Unix socket ping-pong;
//! - the microkernel tax: TCP bulk through separate processes on a sim wire
//!   vs the same engines on the same rings in one process;
//! - TCP goodput under 0.5, 1 and 2% random frame loss vs Linux over veth
//!   with the same loss (root for the reference);
//! - idle CPU of two whole service sets;
//! - many connections: connect and accept rates and the per-packet cost
//!   (ping-pong round trip, netsrv CPU) at 10, 1,000 and up to 10,000 idle
//!   connections, vs Linux over veth (root for the reference);
//! - memory per idle TCP connection;
//! - TCP over TAP vs the Linux stack over veth (root only);
//! - HTTP requests per second with one connection per request (`wrk`),
//!   the same server program on capnet over TAP vs on Linux over veth
//!   (root only);
//! - request/response latency (1-byte TCP ping-pong, p50 and p99), the
//!   same echo server on capnet over TAP vs on Linux over veth (root only);
//! - failover time of an active-backup bond and driver restart time, each
//!   against the time the same stream takes to move the same bytes
//!   undisturbed;
//! - a balance-xor bond with 16 flows vs one port with 16 flows;
//! - TLS bulk in software and with the sim NIC's TLS offload vs plain TCP,
//!   with each service process's CPU per byte;
//! - the time a TLS flow takes to be offloaded again after a bond failover.
//!
//! CPU time is read from /proc for every process involved.
//!
//! `CAPNET_BENCH` picks some (comma-separated; all when unset), each a
//! module here: `call`, `tax`, `idle`, `conns`, `tap`, `http`, `pingpong`, `loss`, `failover` and
//! `restart` (`recovery`), `xor`, `tls`, `reoffload`.

mod call;
mod conns;
mod http;
mod idle;
mod loss;
mod netns;
mod pingpong;
mod procs;
mod recovery;
mod reoffload;
mod stream;
mod tap;
mod tax;
mod tls;
mod xor;

fn main() {
    // `cargo test --benches` lists or runs benches in test mode: do nothing.
    if std::env::args().any(|a| a == "--list") || !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let only = std::env::var("CAPNET_BENCH").unwrap_or_default();
    let want = |name: &str| only.is_empty() || only.split(',').any(|o| o == name);
    if want("call") {
        call::bench_call_latency();
    }
    if want("tax") {
        tax::bench_microkernel_tax();
    }
    if want("idle") {
        idle::bench_idle_and_memory();
    }
    if want("conns") {
        conns::bench_conns();
    }
    if want("tap") {
        tap::bench_tap_vs_veth();
    }
    if want("http") {
        http::bench_http();
    }
    if want("pingpong") {
        pingpong::bench_pingpong();
    }
    if want("loss") {
        loss::bench_loss();
    }
    if want("failover") {
        recovery::bench_failover();
    }
    if want("restart") {
        recovery::bench_restart();
    }
    if want("xor") {
        xor::bench_xor();
    }
    if want("tls") {
        tls::bench_tls();
    }
    if want("reoffload") {
        reoffload::bench_reoffload();
    }
}
