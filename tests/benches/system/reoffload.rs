//! `reoffload`: the time a TLS flow takes to be offloaded again after a bond
//! failover, read from tlsd's log and from the stream.

use crate::stream::{median, ms, MOVED};
use capnet::host::Host;
use capnet_tests::{
    bond_config_with, cli_ok, receive_counting, snapshot, tls_section, wait_progress, Progress,
    Scratch,
};
use libclient::{RecordMode, TlsOptions, TlsStream};
use std::io::Write;
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
pub fn bench_reoffload() {
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
