//! `capnet demo`: two hosts on one sim wire move data and say what happened.

use crate::host::Host;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct DemoOptions {
    pub bytes: u64,
    pub loss: f64,
    pub reorder: f64,
    pub dir: Option<PathBuf>,
}

/// `println!` that lets a reader go away (`capnet demo | head -1`): the
/// demo runs on and stops its hosts, where a panic would leave them.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

const HOST_A: &str = include_str!("default.toml");
const HOST_B: &str = include_str!("../../examples/host-b.toml");

/// Bytes received and their sha256.
pub type Received = (u64, Digest32);
pub type Digest32 = [u8; 32];

/// A deterministic byte pattern, different per seed.
pub fn pattern(seed: u64, offset: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        let x = ((offset + i as u64) ^ seed.wrapping_mul(0xD6E8_FEB8_6659_FD93))
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        *b = (x >> 56) as u8;
    }
}

/// Writes `bytes` of `pattern(seed)`; returns the sha256.
pub fn send_pattern(w: &mut impl Write, seed: u64, bytes: u64) -> std::io::Result<[u8; 32]> {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    while sent < bytes {
        let n = (bytes - sent).min(buf.len() as u64) as usize;
        pattern(seed, sent, &mut buf[..n]);
        w.write_all(&buf[..n])?;
        hash.update(&buf[..n]);
        sent += n as u64;
    }
    Ok(hash.finalize().into())
}

/// Reads to EOF; returns (bytes, sha256).
pub fn receive_all(r: &mut impl Read) -> std::io::Result<Received> {
    receive_counting(r, &Progress::default(), 0)
}

/// A byte counter the receiving side of a transfer bumps, so that others
/// can see the stream move.
pub type Progress = std::sync::Arc<std::sync::atomic::AtomicU64>;

/// Reads to EOF, counting into `progress`, at most `max_rate` bytes per
/// second (0: unlimited); returns (bytes, sha256).
pub fn receive_counting(
    r: &mut impl Read,
    progress: &Progress,
    max_rate: u64,
) -> std::io::Result<Received> {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    let start = std::time::Instant::now();
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok((total, hash.finalize().into()));
        }
        hash.update(&buf[..n]);
        total += n as u64;
        progress.store(total, std::sync::atomic::Ordering::Relaxed);
        if max_rate > 0 {
            let due = std::time::Duration::from_secs_f64(total as f64 / max_rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
}

fn hex(h: &[u8]) -> String {
    h.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

pub fn run(opts: DemoOptions) -> Result<(), String> {
    let base = opts.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("capnet-demo-{}", std::process::id()))
    });
    let (dir_a, dir_b) = (base.join("a"), base.join("b"));
    fn e(what: &'static str) -> impl Fn(std::io::Error) -> String {
        move |err| format!("{what}: {err}")
    }
    say!(
        "starting host a (10.0.0.1) and host b (10.0.0.2) on one sim wire in {}",
        base.display()
    );
    let a = Host::start(HOST_A, &dir_a, &dir_a).map_err(e("host a"))?;
    let b = Host::start(HOST_B, &dir_b, &dir_a).map_err(e("host b"))?;
    if opts.loss > 0.0 || opts.reorder > 0.0 {
        for h in [&a, &b] {
            let loss = opts.loss.to_string();
            let reorder = opts.reorder.to_string();
            let out = h
                .cli(&["faults", "sim0", "--loss", &loss, "--reorder", &reorder])
                .map_err(e("capnet faults"))?;
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).into_owned());
            }
        }
        say!(
            "wire faults: {}% loss, {}% reordering on each side",
            opts.loss,
            opts.reorder
        );
    }
    let net_a = a.net().map_err(e("connect to host a"))?;
    let net_b = b.net().map_err(e("connect to host b"))?;

    // UDP echo on b.
    let udp_b = net_b
        .udp_bind("0.0.0.0:7".parse().unwrap())
        .map_err(e("udp bind"))?;
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        for _ in 0..3 {
            let Ok((n, from)) = udp_b.recv_from(&mut buf) else {
                return;
            };
            let _ = udp_b.send_to(&buf[..n], from);
        }
    });
    let udp_a = net_a
        .udp_bind("0.0.0.0:0".parse().unwrap())
        .map_err(e("udp bind"))?;
    udp_a.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut echoed = 0;
    for i in 0..3 {
        let msg = format!("datagram {i}");
        udp_a
            .send_to(msg.as_bytes(), "10.0.0.2:7")
            .map_err(e("udp send"))?;
        let mut buf = [0u8; 64];
        if let Ok((n, _)) = udp_a.recv_from(&mut buf) {
            echoed += usize::from(&buf[..n] == msg.as_bytes());
        }
    }
    let _ = echo.join();
    say!("udp echo: {echoed}/3 datagrams came back");

    // TCP both ways at once.
    let listener = net_b
        .tcp_listen("0.0.0.0:5001".parse().unwrap(), 8)
        .map_err(e("listen"))?;
    let bytes = opts.bytes;
    let server = std::thread::spawn(move || -> std::io::Result<(Received, Digest32)> {
        let (s, _) = listener.accept()?;
        let writer = std::thread::scope(|scope| {
            let w = scope.spawn(|| {
                let r = send_pattern(&mut &s, 2, bytes);
                s.shutdown(std::net::Shutdown::Write)?;
                r
            });
            let got = receive_all(&mut &s);
            (got, w.join().expect("writer thread"))
        });
        Ok((writer.0?, writer.1?))
    });
    let start = Instant::now();
    let s = net_a
        .tcp_connect("10.0.0.2:5001".parse().unwrap(), None)
        .map_err(e("connect"))?;
    let (a_sent, a_got) = std::thread::scope(|scope| {
        let w = scope.spawn(|| {
            let r = send_pattern(&mut &s, 1, bytes);
            s.shutdown(std::net::Shutdown::Write)?;
            r
        });
        let got = receive_all(&mut &s);
        (w.join().expect("writer thread"), got)
    });
    let elapsed = start.elapsed();
    let a_sent = a_sent.map_err(e("a sending"))?;
    let (a_got_n, a_got_hash) = a_got.map_err(e("a receiving"))?;
    let ((b_got_n, b_got_hash), b_sent) = server
        .join()
        .map_err(|_| "server thread panicked")?
        .map_err(e("b"))?;
    let ok_ab = b_got_n == bytes && b_got_hash == a_sent;
    let ok_ba = a_got_n == bytes && a_got_hash == b_sent;
    let mib = bytes as f64 / (1 << 20) as f64;
    say!(
        "tcp a->b: {b_got_n} bytes, sha256 {} {}",
        hex(&b_got_hash),
        if ok_ab { "matches" } else { "DIFFERS" }
    );
    say!(
        "tcp b->a: {a_got_n} bytes, sha256 {} {}",
        hex(&a_got_hash),
        if ok_ba { "matches" } else { "DIFFERS" }
    );
    say!(
        "{:.1} MiB each way in {:.2} s ({:.1} MiB/s each way)",
        mib,
        elapsed.as_secs_f64(),
        mib / elapsed.as_secs_f64()
    );
    drop(s);
    for (name, h) in [("a", &a), ("b", &b)] {
        say!("--- host {name}: capnet status");
        let out = h.cli(&["status"]).map_err(e("capnet status"))?;
        say!("{}", String::from_utf8_lossy(&out.stdout).trim_end());
    }
    drop((net_a, net_b));
    b.stop().map_err(e("stop b"))?;
    a.stop().map_err(e("stop a"))?;
    if opts.dir.is_none() {
        let _ = std::fs::remove_dir_all(&base);
    }
    if ok_ab && ok_ba && echoed == 3 {
        say!("demo ok");
        Ok(())
    } else {
        Err("demo failed: data did not arrive intact".into())
    }
}
