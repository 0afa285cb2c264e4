//! `loss`: TCP goodput under random frame loss. capnet (two sim hosts, the
//! sim wire dropping frames at random both ways) against Linux over a veth
//! pair between two namespaces with the same loss (nftables `numgen random`
//! drop on both ends; TSO/GRO off so that a lost frame is one MSS, as on the
//! sim wire). Linux needs root, nft and ethtool; without them only capnet's
//! figure is printed.

use crate::procs::{sh, two_hosts};
use capnet_tests::{cli_ok, receive_counting, send_pattern, status_counter, Progress, Scratch};
use std::net::Shutdown;
use std::process::Command;
use std::time::Instant;

/// Bytes per transfer.
const BYTES: u64 = 16 << 20;
/// Loss rates in percent.
const RATES: [f64; 3] = [0.5, 1.0, 2.0];

/// What capnet's sending host did: TCP segments sent again, and
/// retransmission timeouts.
struct Recovery {
    retransmits: u64,
    timeouts: u64,
}

/// capnet: MiB/s of one 16 MiB transfer from host a to host b at `loss`%,
/// and what recovery cost the sender.
fn capnet_goodput(loss: f64, port: u16) -> (f64, Recovery) {
    let scratch = Scratch::new("bench-loss");
    let (a, b) = two_hosts(&scratch);
    for h in [&a, &b] {
        cli_ok(h, &["wire", "sim0", "--loss", &loss.to_string()]);
    }
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    let listener = nb
        .tcp_listen(format!("0.0.0.0:{port}").parse().unwrap(), 1)
        .unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        receive_counting(&mut s, &Progress::default(), 0).unwrap()
    });
    let t = Instant::now();
    let c = na
        .tcp_connect(format!("10.0.0.2:{port}").parse().unwrap(), None)
        .unwrap();
    send_pattern(&mut &c, 3, BYTES).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let (got, _) = server.join().unwrap();
    assert_eq!(got, BYTES);
    let rate = BYTES as f64 / t.elapsed().as_secs_f64() / (1 << 20) as f64;
    let status = cli_ok(&a, &["status"]);
    let recovery = Recovery {
        retransmits: status_counter(&status, "retransmits"),
        timeouts: status_counter(&status, "timeouts"),
    };
    (rate, recovery)
}

/// Linux over veth with `loss`% dropped at each end's ingress; `None`
/// when this machine cannot set that up.
fn linux_goodput(ns: &str, loss: f64, port: u16) -> Option<f64> {
    let per_mille = (loss * 10.0).round() as u32;
    for side in [ns.to_string(), format!("{ns}c")] {
        let rules = format!(
            "ip netns exec {side} nft flush ruleset && \
             ip netns exec {side} nft add table inet loss && \
             ip netns exec {side} nft add chain inet loss in '{{ type filter hook input priority 0; }}' && \
             ip netns exec {side} nft add rule inet loss in numgen random mod 1000 '<' {per_mille} drop"
        );
        if !sh(&rules) {
            return None;
        }
    }
    let mut sink = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "socat",
            "-u",
            &format!("TCP-LISTEN:{port},reuseaddr"),
            "OPEN:/dev/null",
        ])
        .spawn()
        .ok()?;
    std::thread::sleep(std::time::Duration::from_millis(300));
    let t = Instant::now();
    let ok = sh(&format!(
        "ip netns exec {ns}c bash -c 'head -c {BYTES} /dev/zero | socat -u - TCP:10.81.0.1:{port}'"
    ));
    let _ = sink.wait();
    ok.then(|| BYTES as f64 / t.elapsed().as_secs_f64() / (1 << 20) as f64)
}

fn veth_pair(ns: &str) -> bool {
    let cl = format!("{ns}c");
    sh(&format!(
        "command -v nft >/dev/null && command -v ethtool >/dev/null && \
         ip netns add {ns} && ip netns add {cl} && ip -n {ns} link set lo up && ip -n {cl} link set lo up && \
         ip -n {ns} link add veth0 type veth peer name veth1 netns {cl} && \
         ip -n {ns} addr add 10.81.0.1/24 dev veth0 && ip -n {ns} link set veth0 up && \
         ip -n {cl} addr add 10.81.0.2/24 dev veth1 && ip -n {cl} link set veth1 up && \
         ip netns exec {ns} ethtool -K veth0 tso off gso off gro off >/dev/null && \
         ip netns exec {cl} ethtool -K veth1 tso off gso off gro off >/dev/null"
    ))
}

/// Runs of each side at each rate: one lost SYN costs either side its
/// one-second initial RTO, and one retransmission timeout at least 200 ms
/// (16 MiB take ~80 ms on Linux's veth, so a timeout cuts a run to a
/// third), so one run alone says little. Linux meets such timeouts in
/// some runs, more of them the longer the transfer (64 MiB: medians of
/// 69-223 MiB/s in one sitting); the ratio of the best runs is printed
/// beside the ratio of the medians, so that a reference slowed by its
/// timeouts does not flatter capnet unseen.
const RUNS: u16 = 5;

/// The median of `v`, its best, and its range as "lo-hi".
fn median_range(mut v: Vec<f64>) -> (f64, f64, String) {
    v.sort_by(f64::total_cmp);
    let (lo, hi) = (v[0], v[v.len() - 1]);
    (v[v.len() / 2], hi, format!("{lo:.1}-{hi:.1}"))
}

pub fn bench_loss() {
    let ns = format!("capnet-l{}", std::process::id());
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let linux = root && veth_pair(&ns);
    println!(
        "goodput under random loss, {} MiB one way, median of {RUNS} runs each (range):",
        BYTES >> 20
    );
    for (i, loss) in RATES.iter().enumerate() {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let (mut retransmits, mut timeouts) = (0, 0);
        for run in 0..RUNS {
            let port = 42000 + 10 * i as u16 + run;
            let (mib, r) = capnet_goodput(*loss, port);
            ours.push(mib);
            retransmits += r.retransmits;
            timeouts += r.timeouts;
            if let Some(mib) = linux.then(|| linux_goodput(&ns, *loss, port)).flatten() {
                theirs.push(mib);
            }
        }
        let (ours, our_best, our_range) = median_range(ours);
        let recovery = format!("{retransmits} retransmits, {timeouts} timeouts in all");
        if theirs.len() == RUNS as usize {
            let (theirs, their_best, their_range) = median_range(theirs);
            println!(
                "  {loss}% loss: capnet {ours:.1} MiB/s ({our_range}; {recovery}), Linux over veth {theirs:.1} MiB/s ({their_range}): {:.2} (best runs {:.2})",
                ours / theirs,
                our_best / their_best
            );
        } else {
            println!(
                "  {loss}% loss: capnet {ours:.1} MiB/s ({our_range}; {recovery}) (Linux reference skipped: needs root, nft, ethtool)"
            );
        }
    }
    if root {
        sh(&format!(
            "ip netns del {ns} 2>/dev/null; ip netns del {ns}c 2>/dev/null"
        ));
    }
}
