//! Throughput of the NIC TLS engine against whole-record software seals.
//!
//! `cargo bench -p capnet-offload --bench engine`. Plain std::time: each
//! figure is the best of a few runs of about a quarter second, in MB/s of
//! record plaintext. The machine is shared, so figures move; the ratios are
//! what to look at.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aes_gcm::aead::{AeadInPlace, KeyInit};
use capnet_offload::gcm::GcmKey;
use capnet_offload::tls::{TlsParams, TlsRxEngine, TlsTxEngine};
use capnet_wire::tls::{self as wire_tls, ContentType, RecordHeader, Version, TAG_LEN};

const RECORD: usize = 16384;
const RECORDS: usize = 64;
const MSS: usize = 1448;
/// A merged frame of 45 segments (segmentation offload): the TX engine
/// sees whole records in it and seals those in one pass.
const MERGED: usize = 45 * MSS;

/// Runs `f` (which processes `bytes` bytes) repeatedly; best MB/s of 5 runs.
fn measure(bytes: usize, mut f: impl FnMut()) -> f64 {
    let mut best = 0f64;
    for _ in 0..5 {
        let start = Instant::now();
        let mut n = 0usize;
        while start.elapsed() < Duration::from_millis(250) {
            f();
            n += bytes;
        }
        best = best.max(n as f64 / start.elapsed().as_secs_f64() / 1e6);
    }
    best
}

/// A framed stream of RECORDS records of RECORD plaintext bytes each.
fn framed(version: Version, iv: &[u8; 12]) -> Vec<u8> {
    let ct_off = wire_tls::ciphertext_offset(version);
    let inner = RECORD + usize::from(version == Version::Tls13);
    let body_len = ct_off - wire_tls::HEADER_LEN + inner + TAG_LEN;
    let mut out = Vec::new();
    for i in 0..RECORDS {
        let mut rec = vec![0x61u8; wire_tls::HEADER_LEN + body_len];
        RecordHeader {
            content_type: ContentType::ApplicationData,
            body_len,
        }
        .emit(&mut rec);
        if version == Version::Tls12 {
            rec[wire_tls::HEADER_LEN..ct_off]
                .copy_from_slice(&wire_tls::tls12_explicit_nonce(iv, i as u64));
        }
        out.extend_from_slice(&rec);
    }
    out
}

fn params(version: Version, key: &[u8], iv: [u8; 12]) -> TlsParams {
    TlsParams {
        version,
        key: GcmKey::new(key).unwrap(),
        iv,
        tcp_seq: 0xffff_0000, // wraps during the run
        rec_seq: 0,
    }
}

/// The TX engine over the whole stream in `seg`-byte segments. The
/// headers and explicit nonces stay as they are, so a sealed stream is
/// again a valid framed one and each run starts from the previous run's
/// output.
fn tx_engine(version: Version, key: &[u8], seg: usize) -> f64 {
    let iv = [7u8; 12];
    let mut stream = framed(version, &iv);
    let p = params(version, key, iv);
    measure(RECORDS * RECORD, || {
        let mut tx = TlsTxEngine::new(p.clone());
        let mut seq = p.tcp_seq;
        for seg in stream.chunks_mut(seg) {
            tx.process(seq, seg).unwrap();
            seq = seq.wrapping_add(seg.len() as u32);
            tx.acked(seq);
        }
        black_box(&stream);
    })
}

/// The RX engine opening the stream the TX engine sealed, in MSS segments.
fn rx_engine(version: Version, key: &[u8]) -> f64 {
    let iv = [7u8; 12];
    let p = params(version, key, iv);
    let mut sealed = framed(version, &iv);
    let mut tx = TlsTxEngine::new(p.clone());
    tx.process(p.tcp_seq, &mut sealed).unwrap();
    let mut buf = sealed.clone();
    measure(RECORDS * RECORD, || {
        buf.copy_from_slice(&sealed);
        let mut rx = TlsRxEngine::new(p.clone());
        let mut seq = p.tcp_seq;
        for seg in buf.chunks_mut(MSS) {
            assert!(rx.process(seq, seg).decrypted);
            seq = seq.wrapping_add(seg.len() as u32);
        }
        black_box(&buf);
    })
}

fn aes_gcm_whole(key: &[u8]) -> f64 {
    let mut rec = vec![0x61u8; RECORD];
    let aad = [0u8; 13];
    let seal = |rec: &mut Vec<u8>, nonce: &[u8; 12]| match key.len() {
        16 => aes_gcm::Aes128Gcm::new_from_slice(key)
            .unwrap()
            .encrypt_in_place_detached(nonce.into(), &aad, rec)
            .unwrap(),
        _ => aes_gcm::Aes256Gcm::new_from_slice(key)
            .unwrap()
            .encrypt_in_place_detached(nonce.into(), &aad, rec)
            .unwrap(),
    };
    measure(RECORDS * RECORD, || {
        // A key per batch, as the engine has one per context.
        for i in 0..RECORDS {
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&(i as u64).to_be_bytes());
            black_box(seal(&mut rec, &nonce));
        }
    })
}

fn ring_whole(key: &[u8]) -> f64 {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};
    let alg = if key.len() == 16 {
        &AES_128_GCM
    } else {
        &AES_256_GCM
    };
    let key = LessSafeKey::new(UnboundKey::new(alg, key).unwrap());
    let mut rec = vec![0x61u8; RECORD];
    measure(RECORDS * RECORD, || {
        for i in 0..RECORDS {
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&(i as u64).to_be_bytes());
            let tag = key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from([0u8; 13]),
                    &mut rec,
                )
                .unwrap();
            let _ = black_box(tag);
        }
    })
}

fn main() {
    println!(
        "{RECORDS} records of {RECORD} plaintext bytes; engines see {MSS}-byte segments; MB/s of plaintext (best of 5)"
    );
    for (name, key) in [
        ("AES-128-GCM", [0x42u8; 16].to_vec()),
        ("AES-256-GCM", [0x42u8; 32].to_vec()),
    ] {
        let aes_gcm = aes_gcm_whole(&key);
        let ring = ring_whole(&key);
        println!("{name}");
        println!("  aes-gcm crate, whole record   {aes_gcm:9.0}");
        println!("  ring, whole record            {ring:9.0}");
        for version in [Version::Tls12, Version::Tls13] {
            let tx = tx_engine(version, &key, MSS);
            let merged = tx_engine(version, &key, MERGED);
            let rx = rx_engine(version, &key);
            println!(
                "  TX engine {version:?}              {tx:9.0}   x{:.2} aes-gcm, x{:.2} ring",
                tx / aes_gcm,
                tx / ring
            );
            println!(
                "  TX engine {version:?}, {MERGED} B frames {merged:6.0}   x{:.2} aes-gcm, x{:.2} ring",
                merged / aes_gcm,
                merged / ring
            );
            println!(
                "  RX engine {version:?}              {rx:9.0}   x{:.2} aes-gcm, x{:.2} ring (incl. a copy to restore the input)",
                rx / aes_gcm,
                rx / ring
            );
        }
    }
}
