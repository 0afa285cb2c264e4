//! `tax`: the microkernel tax, TCP bulk through separate processes on a sim
//! wire vs the same engines on the same rings in one process, with
//! each process's CPU per GiB.

use crate::procs::{run_seconds, service_pids, sleeps};
use capnet_ring::{ChannelLayout, Duplex};
use capnet_tests::Scratch;
use netsrv::device::RingDevice;
use netsrv::link::PortMeta;
use netsrv::stack::{Stack, TcpOptions};
use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Instant;

pub const BULK: u64 = 256 << 20;

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
    let cpu0 = run_seconds(std::process::id());
    let mut stacks = [Stack::new(64 * 1024), Stack::new(64 * 1024)];
    for (i, (stack, duplex)) in stacks.iter_mut().zip([da, db]).enumerate() {
        let meta = PortMeta {
            name: "sim0".into(),
            backend: "in-process".into(),
            mac: [2, 0, 0, 0, 0, i as u8 + 1],
            mtu: 1500,
            offloads: Vec::new(),
        };
        let cidr = netsrv::addr::parse_cidr(&format!("10.0.0.{}/24", i + 1)).unwrap();
        stack.add_free_port(meta.clone());
        stack
            .attach("sim0", meta, RingDevice::new(duplex, 1500, false, false))
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
        run_seconds(std::process::id()) - cpu0,
    )
}

/// What one process spent on a bulk transfer.
struct Used {
    name: String,
    /// CPU seconds.
    cpu: f64,
    /// Times its threads slept (and so were woken).
    sleeps: u64,
}

/// The bulk through the processes; `extra` is the ports' extra config.
fn processes_bulk(extra: &str) -> (f64, Vec<Used>) {
    let scratch = Scratch::new("bench-bulk");
    let (a, b) = capnet_tests::two_hosts(&scratch, extra);
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
    let before: Vec<(f64, u64)> = pids
        .iter()
        .map(|(_, p)| (run_seconds(*p), sleeps(*p)))
        .collect();
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
        .map(|((name, p), (c, w))| Used {
            name: name.clone(),
            cpu: run_seconds(*p) - c,
            sleeps: sleeps(*p) - w,
        })
        .collect();
    (BULK as f64 / secs / (1 << 20) as f64, cpu)
}

/// Rounds of the three runs, interleaved: this machine's speed moves by 2-3x
/// within minutes, so a ratio is taken within a round and the median round
/// reported with the range.
const ROUNDS: usize = 3;

pub fn bench_microkernel_tax() {
    // Segmentation offload on (the default) and off, against one reference:
    // the stacks in one process exchange frames of one MTU.
    let mut on = Vec::new();
    let mut off = Vec::new();
    let mut inproc = Vec::new();
    for _ in 0..ROUNDS {
        on.push(processes_bulk(""));
        off.push(processes_bulk("segmentation = false"));
        inproc.push(in_process_bulk());
    }
    let mib_inproc: Vec<f64> = inproc.iter().map(|r| r.0).collect();
    for (what, runs) in [
        ("segmentation offload on ", &on),
        ("segmentation offload off", &off),
    ] {
        let mib: Vec<f64> = runs.iter().map(|r| r.0).collect();
        let ratios: Vec<f64> = mib.iter().zip(&mib_inproc).map(|(p, i)| p / i).collect();
        let m = median_index(&ratios);
        println!(
            "TCP bulk 256 MiB: processes on a sim wire, {what} {:>7.1} MiB/s   one process {:>7.1} MiB/s   ratio {:.2} (median of {ROUNDS} rounds; {})",
            mib[m],
            mib_inproc[m],
            ratios[m],
            list(&ratios)
        );
        print_cpu(runs);
    }
    let cpu_inproc: f64 = inproc.iter().map(|r| r.1).sum();
    println!(
        "    CPU {:<28} {:>6.2} s/GiB",
        "one process (both stacks)",
        per_gib(cpu_inproc, ROUNDS)
    );
}

fn per_gib(cpu: f64, rounds: usize) -> f64 {
    cpu / (rounds as f64 * BULK as f64 / (1u64 << 30) as f64)
}

/// Each process's CPU and sleeps over all rounds, per GiB and per MiB moved.
fn print_cpu(runs: &[(f64, Vec<Used>)]) {
    let mib = (runs.len() as u64 * (BULK >> 20)) as f64;
    let line = |name: &str, cpu: f64, sleeps: u64| {
        println!(
            "    CPU {:<28} {:>6.2} s/GiB   sleeps {:>6.1} per MiB",
            name,
            per_gib(cpu, runs.len()),
            sleeps as f64 / mib
        )
    };
    for (i, u) in runs[0].1.iter().enumerate() {
        let cpu = runs.iter().map(|r| r.1[i].cpu).sum();
        let sleeps = runs.iter().map(|r| r.1[i].sleeps).sum();
        line(&u.name, cpu, sleeps);
    }
    let all = |f: fn(&Used) -> f64| runs.iter().flat_map(|r| &r.1).map(f).sum::<f64>();
    line(
        "all processes",
        all(|u| u.cpu),
        all(|u| u.sleeps as f64) as u64,
    );
}

fn median_index(v: &[f64]) -> usize {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|a, b| v[*a].total_cmp(&v[*b]));
    order[v.len() / 2]
}

fn list(v: &[f64]) -> String {
    v.iter()
        .map(|r| format!("{r:.2}"))
        .collect::<Vec<_>>()
        .join(" / ")
}
