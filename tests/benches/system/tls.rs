//! `tls`: TLS bulk in software and with the sim NIC's TLS offload vs plain
//! TCP, with each service process's CPU per byte, and the time the NICs'
//! TLS engines ran (part of the drivers' CPU here; a real NIC's hardware).

use crate::procs::cpu_seconds;
use capnet::host::Host;
use capnet_tests::{cli_ok, sim_config, status_counter, tls_section, Scratch};
use libclient::{OffloadPolicy, RecordMode, TlsOptions};
use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Instant;

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
    /// Seconds the TLS engines of each host's NIC ran (a seals, b opens).
    engines: [f64; 2],
    suite: String,
}

/// Seconds the TLS offload engines of each host's port ran so far.
fn engine_seconds(hosts: [&Host; 2]) -> [f64; 2] {
    hosts.map(|h| status_counter(&cli_ok(h, &["link", "sim0"]), "engine-us") as f64 / 1e6)
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
    let engines0 = engine_seconds([a, b]);
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
    let cpu = cpu().iter().zip(cpu0).map(|(c, c0)| c - c0).collect();
    Transfer {
        secs,
        cpu,
        engines: {
            let [ea, eb] = engine_seconds([a, b]);
            [ea - engines0[0], eb - engines0[1]]
        },
        suite,
    }
}

pub fn bench_tls() {
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
    let mut engines = [[0.0; 2]; 3];
    let mut suite = String::new();
    for _ in 0..ROUNDS {
        for (i, carry) in Carry::ALL.into_iter().enumerate() {
            let r = one_way(&a, &b, carry, port, &pids);
            port += 1;
            secs[i].push(r.secs);
            engines[i][0] += r.engines[0];
            engines[i][1] += r.engines[1];
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
    let all: Vec<f64> = cpu.iter().map(|c| c.iter().sum::<f64>()).collect();
    for (h, what) in [
        (0, "a's NIC TLS engines (seal)"),
        (1, "b's NIC TLS engines (open)"),
    ] {
        println!(
            "    {:<33} {:>9.2} {:>9.2} {:>9.2}",
            format!("of which {what}"),
            engines[0][h] * 1e9 / bytes,
            engines[1][h] * 1e9 / bytes,
            engines[2][h] * 1e9 / bytes
        );
    }
    let engines: Vec<f64> = engines.iter().map(|e| e[0] + e[1]).collect();
    println!(
        "    {:<33} {:>9.2} {:>9.2} {:>9.2}   (offload/software {:.2})",
        "host CPU (all but the engines)",
        (all[0] - engines[0]) * 1e9 / bytes,
        (all[1] - engines[1]) * 1e9 / bytes,
        (all[2] - engines[2]) * 1e9 / bytes,
        (all[2] - engines[2]) / (all[1] - engines[1])
    );
    let s = a.tls().unwrap().stat().unwrap();
    assert_eq!(s.decrypt_error, 0, "{s:?}");
}
