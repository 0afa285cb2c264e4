//! Record engine throughput: sealing and opening 16 KiB records with
//! tlsd's RecordSealer/RecordOpener, side by side with
//! `openssl speed -evp aes-128-gcm -bytes 16384` run in the same process
//! tree, so that the ratio holds on whatever machine this runs.
//!
//! `cargo bench -p tlsd --bench record`. Prints; asserts nothing about time.
//! RECORD_BENCH_SECS sets the seconds per measurement (default 3, as the
//! openssl run).

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use capnet_wire::tls::{ContentType, Version, MAX_PLAINTEXT};
use tlsd::record::{Cipher, RecordOpener, RecordSealer, TrafficKeys};

const MB: f64 = 1e6;

fn keys(version: Version, cipher: Cipher) -> TrafficKeys {
    let key: Vec<u8> = (0..cipher.key_len() as u8)
        .map(|i| i.wrapping_mul(37))
        .collect();
    TrafficKeys::new(version, cipher, &key, [0x5c; 12])
}

/// MB/s of plaintext sealed into 16 KiB records.
fn seal_rate(version: Version, cipher: Cipher, secs: Duration) -> f64 {
    let mut sealer = RecordSealer::new(keys(version, cipher), 0).unwrap();
    let plaintext = vec![0xa5; MAX_PLAINTEXT];
    let mut out = Vec::with_capacity(MAX_PLAINTEXT + 64);
    let start = Instant::now();
    let mut bytes = 0u64;
    while start.elapsed() < secs {
        for _ in 0..64 {
            out.clear();
            sealer
                .seal(ContentType::ApplicationData, &plaintext, &mut out)
                .unwrap();
            black_box(&out);
        }
        bytes += 64 * MAX_PLAINTEXT as u64;
    }
    bytes as f64 / start.elapsed().as_secs_f64() / MB
}

/// MB/s of ring's AES-128-GCM alone, sealing one 16 KiB buffer in place:
/// what the record layer adds (header, the copy into the output) shows as
/// the difference to `seal_rate`.
fn ring_in_place_rate(secs: Duration) -> f64 {
    use ring::aead;
    let k = keys(Version::Tls13, Cipher::Aes128Gcm);
    let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &k.key).unwrap());
    let mut buf = vec![0xa5; MAX_PLAINTEXT + 1];
    let start = Instant::now();
    let mut bytes = 0u64;
    let mut n = 0u64;
    while start.elapsed() < secs {
        for _ in 0..64 {
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&n.to_be_bytes());
            n += 1;
            let tag = key
                .seal_in_place_separate_tag(
                    aead::Nonce::assume_unique_for_key(nonce),
                    aead::Aad::from([23, 3, 3, 0x40, 0x11]),
                    &mut buf,
                )
                .unwrap();
            let _ = black_box(tag);
        }
        bytes += 64 * MAX_PLAINTEXT as u64;
    }
    bytes as f64 / start.elapsed().as_secs_f64() / MB
}

/// MB/s of plaintext opened from 16 KiB records. Each open works on a fresh
/// copy of a sealed record; only the open itself is timed.
fn open_rate(version: Version, cipher: Cipher, secs: Duration) -> f64 {
    const BATCH: u64 = 64;
    let mut sealer = RecordSealer::new(keys(version, cipher), 0).unwrap();
    let plaintext = vec![0xa5; MAX_PLAINTEXT];
    let records: Vec<Vec<u8>> = (0..BATCH)
        .map(|_| {
            let mut r = Vec::new();
            sealer
                .seal(ContentType::ApplicationData, &plaintext, &mut r)
                .unwrap();
            r
        })
        .collect();
    let mut buf = records[0].clone();
    let mut timed = Duration::ZERO;
    let mut bytes = 0u64;
    let wall = Instant::now();
    while wall.elapsed() < secs {
        // Sequence numbers restart with each batch.
        let mut opener = RecordOpener::new(keys(version, cipher), 0).unwrap();
        for rec in &records {
            buf.copy_from_slice(rec);
            let t = Instant::now();
            let opened = opener.open(&mut buf).unwrap();
            timed += t.elapsed();
            black_box(&buf[opened.plaintext]);
        }
        bytes += BATCH * MAX_PLAINTEXT as u64;
    }
    bytes as f64 / timed.as_secs_f64() / MB
}

/// `openssl speed`'s AES-128-GCM rate for 16 KiB blocks in MB/s, or why
/// there is none.
fn openssl_rate(secs: Duration) -> Result<f64, String> {
    let out = Command::new("openssl")
        .args([
            "speed",
            "-evp",
            "aes-128-gcm",
            "-bytes",
            "16384",
            "-seconds",
        ])
        .arg(secs.as_secs().max(1).to_string())
        .output()
        .map_err(|e| format!("openssl not runnable ({e})"))?;
    if !out.status.success() {
        return Err(format!("openssl speed failed ({})", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // The table's last line: "AES-128-GCM    4368189.54k" (1000s of bytes/s).
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or("openssl speed printed nothing")?;
    let field = last
        .split_whitespace()
        .last()
        .and_then(|f| f.strip_suffix('k'))
        .ok_or_else(|| format!("unexpected openssl speed line {last:?}"))?;
    let k: f64 = field
        .parse()
        .map_err(|_| format!("unexpected openssl speed figure {field:?}"))?;
    Ok(k * 1000.0 / MB)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this too:
    // keep that short.
    let quick = !std::env::args().any(|a| a == "--bench");
    let secs = std::env::var("RECORD_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 0 } else { 3 });
    let secs = if quick && secs == 0 {
        Duration::from_millis(50)
    } else {
        Duration::from_secs(secs)
    };

    println!("record engine, 16 KiB records, {secs:?} per figure");
    let seal = seal_rate(Version::Tls13, Cipher::Aes128Gcm, secs);
    let open = open_rate(Version::Tls13, Cipher::Aes128Gcm, secs);
    println!("  seal TLS 1.3 AES-128-GCM  {seal:9.0} MB/s");
    println!("  open TLS 1.3 AES-128-GCM  {open:9.0} MB/s");
    let raw = ring_in_place_rate(secs);
    println!("  ring in place, no record  {raw:9.0} MB/s");
    if quick {
        println!("  (quick run: openssl comparison only under cargo bench)");
        return;
    }
    match openssl_rate(secs) {
        Ok(ssl) => {
            println!("  openssl speed aes-128-gcm {ssl:9.0} MB/s (encrypt)");
            println!("  seal / openssl            {:9.2}", seal / ssl);
            println!("  open / openssl            {:9.2}", open / ssl);
        }
        Err(why) => println!("  openssl comparison skipped: {why}"),
    }
    for (v, c) in [
        (Version::Tls12, Cipher::Aes128Gcm),
        (Version::Tls13, Cipher::Aes256Gcm),
        (Version::Tls13, Cipher::Chacha20Poly1305),
    ] {
        let s = seal_rate(v, c, secs);
        let o = open_rate(v, c, secs);
        println!("  {v:?} {c:?}: seal {s:.0} MB/s, open {o:.0} MB/s");
    }
}
