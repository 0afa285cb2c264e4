//! Every record engine produces the same bytes, and what one seals the
//! others open:
//! (a) tlsd's software engine (`RecordSealer::seal`, ring),
//! (b) device framing (`RecordSealer::frame_for_device`) sealed by the
//!     simulated NIC (`capnet_offload::tls::TlsTxEngine`) over random TCP
//!     segmentations, with retransmissions,
//! (c) an independent seal with the `aes-gcm` crate, the TLS nonce and AAD
//!     rules written out here (RFC 5288, RFC 8446 5.2-5.3), not taken from
//!     `capnet_wire::tls`.
//! RX: the NIC (`TlsRxEngine`) decrypts what it can; lost and corrupted
//! segments give records that are partly or not decrypted, and tlsd's
//! opener recovers every plaintext (or says bad_record_mac).

use std::ops::Range;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use capnet_offload::gcm::GcmKey;
use capnet_offload::tls::{TlsParams, TlsRxEngine, TlsTxEngine};
use capnet_wire::tls::{ContentType, Version, MAX_PLAINTEXT};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tlsd::record::{
    Cipher, Decryption, RecordError, RecordOpener, RecordReader, RecordSealer, TrafficKeys,
};

const AES: [(Version, Cipher); 4] = [
    (Version::Tls12, Cipher::Aes128Gcm),
    (Version::Tls12, Cipher::Aes256Gcm),
    (Version::Tls13, Cipher::Aes128Gcm),
    (Version::Tls13, Cipher::Aes256Gcm),
];

fn random_bytes(rng: &mut impl Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.gen()).collect()
}

fn keys(rng: &mut impl Rng, v: Version, c: Cipher) -> TrafficKeys {
    let key = random_bytes(rng, c.key_len());
    TrafficKeys::new(v, c, &key, rng.gen())
}

fn params(k: &TrafficKeys, tcp_seq: u32, rec_seq: u64) -> TlsParams {
    TlsParams {
        version: k.version,
        key: GcmKey::new(&k.key).unwrap(),
        iv: k.iv,
        tcp_seq,
        rec_seq,
    }
}

/// (c): one record sealed with the aes-gcm crate.
/// TLS 1.2 (RFC 5288 3, RFC 5246 6.2.3.3): explicit nonce = iv[4..] XOR
/// seq (as rustls makes it), nonce = iv[..4] || explicit, AAD = seq || type
/// || 0x0303 || plaintext length. TLS 1.3 (RFC 8446 5.2, 5.3): nonce = iv
/// XOR (0^4 || seq), inner = plaintext || type, AAD = the record header.
fn reference_record(k: &TrafficKeys, seq: u64, ty: ContentType, plaintext: &[u8]) -> Vec<u8> {
    let seq_be = seq.to_be_bytes();
    let ty = u8::from(ty);
    let (header, prefix, mut body, nonce, aad) = match k.version {
        Version::Tls12 => {
            let mut explicit = [0u8; 8];
            for i in 0..8 {
                explicit[i] = k.iv[4 + i] ^ seq_be[i];
            }
            let mut nonce = [0u8; 12];
            nonce[..4].copy_from_slice(&k.iv[..4]);
            nonce[4..].copy_from_slice(&explicit);
            let len = plaintext.len() as u16;
            let mut aad = seq_be.to_vec();
            aad.extend_from_slice(&[ty, 3, 3]);
            aad.extend_from_slice(&len.to_be_bytes());
            let body_len = (8 + plaintext.len() + 16) as u16;
            let mut header = vec![ty, 3, 3];
            header.extend_from_slice(&body_len.to_be_bytes());
            (header, explicit.to_vec(), plaintext.to_vec(), nonce, aad)
        }
        Version::Tls13 => {
            let mut nonce = k.iv;
            for i in 0..8 {
                nonce[4 + i] ^= seq_be[i];
            }
            let mut inner = plaintext.to_vec();
            inner.push(ty);
            let body_len = (inner.len() + 16) as u16;
            let mut header = vec![23, 3, 3];
            header.extend_from_slice(&body_len.to_be_bytes());
            let aad = header.clone();
            (header, Vec::new(), inner, nonce, aad)
        }
    };
    let tag = match k.key.len() {
        16 => aes_gcm::Aes128Gcm::new_from_slice(&k.key)
            .unwrap()
            .encrypt_in_place_detached((&nonce).into(), &aad, &mut body),
        _ => aes_gcm::Aes256Gcm::new_from_slice(&k.key)
            .unwrap()
            .encrypt_in_place_detached((&nonce).into(), &aad, &mut body),
    }
    .unwrap();
    let mut rec = header;
    rec.extend_from_slice(&prefix);
    rec.extend_from_slice(&body);
    rec.extend_from_slice(&tag);
    rec
}

fn random_plaintext(rng: &mut impl Rng) -> (ContentType, Vec<u8>) {
    let len = match rng.gen_range(0..8) {
        0 => MAX_PLAINTEXT,
        1 => rng.gen_range(0..4),
        2 | 3 => rng.gen_range(1000..MAX_PLAINTEXT),
        _ => rng.gen_range(1..600),
    };
    let ty = match rng.gen_range(0..10) {
        0 => ContentType::Handshake,
        1 => ContentType::Alert,
        _ => ContentType::ApplicationData,
    };
    (ty, random_bytes(rng, len))
}

/// Cut points of `0..len` into segments of random sizes, some tiny.
fn segments(rng: &mut impl Rng, len: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < len {
        let n = match rng.gen_range(0..6) {
            0 => rng.gen_range(1..=6),
            1..=3 => rng.gen_range(1..=1448),
            4 => rng.gen_range(1..=9000),
            _ => rng.gen_range(1..=64000),
        }
        .min(len - at);
        out.push((at, at + n));
        at += n;
    }
    out
}

struct Flow {
    keys: TrafficKeys,
    rec_seq: u64,
    /// TCP sequence number of the first record byte (wraps sometimes).
    tcp_seq: u32,
    sent: Vec<(ContentType, Vec<u8>)>,
    /// (a) sealed by ring.
    sealed: Vec<u8>,
    /// Device-framed, as tlsd hands them to TCP.
    framed: Vec<u8>,
}

fn flow(rng: &mut StdRng, v: Version, c: Cipher, records: usize) -> Flow {
    let k = keys(rng, v, c);
    // TLS 1.2 AES-GCM ends at 2^24 records per key.
    let rec_seq = rng.gen_range(0..1u64 << 23);
    let tcp_seq = if rng.gen_bool(0.3) {
        u32::MAX - rng.gen_range(0..200_000)
    } else {
        rng.gen()
    };
    let mut soft = RecordSealer::new(k.clone(), rec_seq).unwrap();
    let mut dev = RecordSealer::new(k.clone(), rec_seq).unwrap();
    let (mut sealed, mut framed, mut sent) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..records {
        let (ty, pt) = random_plaintext(rng);
        soft.seal(ty, &pt, &mut sealed).unwrap();
        dev.frame_for_device(ty, &pt, &mut framed).unwrap();
        sent.push((ty, pt));
    }
    assert_eq!(soft.seq(), dev.seq());
    assert_eq!(sealed.len(), framed.len());
    Flow {
        keys: k,
        rec_seq,
        tcp_seq,
        sent,
        sealed,
        framed,
    }
}

#[test]
fn software_matches_aes_gcm_crate() {
    let mut rng = StdRng::seed_from_u64(0xa5);
    for (v, c) in AES {
        for _ in 0..20 {
            let f = flow(&mut rng, v, c, 12);
            let mut reference = Vec::new();
            for (i, (ty, pt)) in f.sent.iter().enumerate() {
                reference.extend(reference_record(&f.keys, f.rec_seq + i as u64, *ty, pt));
            }
            assert!(reference == f.sealed, "{v:?} {c:?}");
        }
    }
}

#[test]
fn nic_tx_matches_software_over_random_segmentation() {
    let mut rng = StdRng::seed_from_u64(0x7e);
    for round in 0..80 {
        let (v, c) = AES[round % AES.len()];
        let f = flow(&mut rng, v, c, 10);
        let mut tx = TlsTxEngine::new(params(&f.keys, f.tcp_seq, f.rec_seq));
        let mut wire = f.framed.clone();
        let segs = segments(&mut rng, wire.len());
        for (i, &(a, b)) in segs.iter().enumerate() {
            let seq = f.tcp_seq.wrapping_add(a as u32);
            tx.process(seq, &mut wire[a..b])
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            // Now and then TCP sends an earlier segment again, from its
            // buffer of framed bytes: it must leave byte-identical.
            if i > 0 && rng.gen_bool(0.2) {
                let (ra, rb) = segs[rng.gen_range(0..=i)];
                let mut again = f.framed[ra..rb].to_vec();
                tx.process(f.tcp_seq.wrapping_add(ra as u32), &mut again)
                    .unwrap_or_else(|e| panic!("round {round}: retransmit: {e}"));
                assert!(again == f.sealed[ra..rb], "round {round}: retransmit");
            }
        }
        assert!(wire == f.sealed, "round {round} {v:?} {c:?}");
        // And what the NIC sealed opens in software.
        let mut opener = RecordOpener::new(f.keys.clone(), f.rec_seq).unwrap();
        let mut reader = RecordReader::new();
        reader.push(&wire, false);
        for (ty, pt) in &f.sent {
            let mut rec = reader.next_record().unwrap().unwrap();
            let opened = opener.open_in(&mut rec).unwrap();
            assert_eq!(
                (opened.content_type, &rec.bytes[opened.plaintext]),
                (*ty, &pt[..])
            );
        }
    }
}

/// What the stack hands tlsd: stream bytes in order, each piece with the
/// mark of the frame it came in.
type Delivered = Vec<(Vec<u8>, bool)>;

/// Each record's decryption state and what opening it gave.
type Outcome = (Decryption, Result<(ContentType, Vec<u8>), RecordError>);

/// Sends `wire` through the NIC's RX engine in `segs`; the segments in
/// `lost` do not reach the NIC the first time and come again, unmarked,
/// as the retransmission the engine passes untouched. Returns what the
/// stack delivers in order, and the engine.
fn receive(
    f: &Flow,
    wire: &[u8],
    segs: &[(usize, usize)],
    lost: &[usize],
) -> (Delivered, TlsRxEngine) {
    let mut rx = TlsRxEngine::new(params(&f.keys, f.tcp_seq, f.rec_seq));
    let mut delivered: Vec<Option<(Vec<u8>, bool)>> = vec![None; segs.len()];
    for (i, &(a, b)) in segs.iter().enumerate() {
        if lost.contains(&i) {
            continue;
        }
        let mut seg = wire[a..b].to_vec();
        let out = rx.process(f.tcp_seq.wrapping_add(a as u32), &mut seg);
        if !out.decrypted {
            assert_eq!(seg, &wire[a..b], "an unmarked segment is as received");
        }
        delivered[i] = Some((seg, out.decrypted));
    }
    let mut lost = lost.to_vec();
    lost.sort_unstable();
    lost.dedup();
    for i in lost {
        // Below the engine's point it passes untouched; a "lost" last
        // segment was only late, and the engine may take it in order.
        let (a, b) = segs[i];
        let mut seg = wire[a..b].to_vec();
        let out = rx.process(f.tcp_seq.wrapping_add(a as u32), &mut seg);
        if !out.decrypted {
            assert_eq!(seg, &wire[a..b], "an unmarked segment is as received");
        }
        delivered[i] = Some((seg, out.decrypted));
    }
    (delivered.into_iter().map(Option::unwrap).collect(), rx)
}

/// Feeds `delivered` to a reader and opens every record; returns each
/// record's decryption state and result.
fn open_all(f: &Flow, delivered: &Delivered) -> Vec<Outcome> {
    let mut opener = RecordOpener::new(f.keys.clone(), f.rec_seq).unwrap();
    let mut reader = RecordReader::new();
    let mut out = Vec::new();
    for (bytes, marked) in delivered {
        reader.push(bytes, *marked);
        while let Some(mut rec) = reader.next_record().unwrap() {
            let state = rec.decryption.clone();
            let res = opener
                .open_in(&mut rec)
                .map(|o| (o.content_type, rec.bytes[o.plaintext].to_vec()));
            if res.is_err() {
                // The connection would end here; the test carries on with
                // the next record number to look at the others.
                opener = RecordOpener::new(f.keys.clone(), opener.seq() + 1).unwrap();
            }
            out.push((state, res));
        }
    }
    assert_eq!(reader.buffered(), 0);
    out
}

#[test]
fn nic_rx_full_partial_and_none_all_open() {
    let mut rng = StdRng::seed_from_u64(0x52);
    let mut seen = [0usize; 3];
    for round in 0..120 {
        let (v, c) = AES[round % AES.len()];
        let f = flow(&mut rng, v, c, 8);
        let segs = segments(&mut rng, f.sealed.len());
        // Sometimes nothing is lost, otherwise one or two segments.
        let lost: Vec<usize> = (0..rng.gen_range(0..3))
            .map(|_| rng.gen_range(0..segs.len()))
            .collect();
        let (delivered, _) = receive(&f, &f.sealed, &segs, &lost);
        let results = open_all(&f, &delivered);
        assert_eq!(results.len(), f.sent.len());
        for (i, ((state, res), sent)) in results.iter().zip(&f.sent).enumerate() {
            match state {
                Decryption::None => seen[0] += 1,
                Decryption::Partial(_) => seen[1] += 1,
                Decryption::Full => seen[2] += 1,
            }
            let (ty, pt) = res
                .as_ref()
                .unwrap_or_else(|e| panic!("round {round} record {i} ({state:?}): {e}"));
            assert_eq!((ty, pt), (&sent.0, &sent.1), "round {round} record {i}");
        }
        if lost.is_empty() {
            // In sync throughout: every record fully decrypted by the NIC.
            assert!(
                results.iter().all(|(s, _)| *s == Decryption::Full),
                "round {round}"
            );
        }
    }
    // The rounds exercised every path.
    assert!(seen.iter().all(|&n| n > 10), "{seen:?}");
}

#[test]
fn a_loss_mid_record_gives_partial() {
    // Two records in many small segments: the first segments are
    // decrypted, one in the middle of the first record is lost.
    let mut rng = StdRng::seed_from_u64(0x10);
    for (v, c) in AES {
        let k = keys(&mut rng, v, c);
        let mut s = RecordSealer::new(k.clone(), 3).unwrap();
        let mut sealed = Vec::new();
        let pts = [random_bytes(&mut rng, 5000), random_bytes(&mut rng, 700)];
        for pt in &pts {
            s.seal(ContentType::ApplicationData, pt, &mut sealed)
                .unwrap();
        }
        let f = Flow {
            keys: k,
            rec_seq: 3,
            tcp_seq: 1000,
            sent: pts
                .iter()
                .map(|p| (ContentType::ApplicationData, p.clone()))
                .collect(),
            sealed: sealed.clone(),
            framed: Vec::new(),
        };
        let segs: Vec<_> = (0..sealed.len())
            .step_by(1000)
            .map(|a| (a, (a + 1000).min(sealed.len())))
            .collect();
        let (delivered, rx) = receive(&f, &sealed, &segs, &[2]);
        assert!(delivered[0].1 && delivered[1].1);
        assert!(!delivered[2].1 && !delivered[3].1);
        assert!(!rx.in_sync());
        let results = open_all(&f, &delivered);
        match &results[0].0 {
            Decryption::Partial(r) => assert_eq!(
                r[..],
                [Range {
                    start: 0,
                    end: 2000
                }]
            ),
            other => panic!("{v:?} {c:?}: {other:?}"),
        }
        assert_eq!(results[0].1.as_ref().unwrap().1, pts[0]);
        assert_eq!(results[1].0, Decryption::None);
        assert_eq!(results[1].1.as_ref().unwrap().1, pts[1]);
    }
}

#[test]
fn corrupted_records_fail_in_every_decryption_state() {
    let mut rng = StdRng::seed_from_u64(0xbad);
    let mut states = [0usize; 2];
    for round in 0..150 {
        let (v, c) = AES[round % AES.len()];
        let f = flow(&mut rng, v, c, 5);
        // One bit flipped on the wire in a record's body or tag.
        let victim = rng.gen_range(0..f.sent.len());
        let mut lens = Vec::new();
        let mut at = 0;
        while at < f.sealed.len() {
            let len = 5 + u16::from_be_bytes([f.sealed[at + 3], f.sealed[at + 4]]) as usize;
            lens.push((at, len));
            at += len;
        }
        let (rec_at, rec_len) = lens[victim];
        let flip_at = rec_at + rng.gen_range(5..rec_len);
        let mut wire = f.sealed.clone();
        wire[flip_at] ^= 1 << rng.gen_range(0..8);

        let segs = segments(&mut rng, wire.len());
        let lost: Vec<usize> = if rng.gen_bool(0.3) {
            vec![rng.gen_range(0..segs.len())]
        } else {
            Vec::new()
        };
        let (delivered, rx) = receive(&f, &wire, &segs, &lost);
        if lost.is_empty() {
            assert!(rx.counters().auth_failures >= 1, "round {round}");
        }
        let results = open_all(&f, &delivered);
        for (i, (state, res)) in results.iter().enumerate() {
            if i == victim {
                assert_eq!(
                    res.as_ref().map(|_| ()),
                    Err(&RecordError::BadRecordMac),
                    "round {round}: {state:?}"
                );
                // The NIC never vouches for a record it could not check.
                assert_ne!(*state, Decryption::Full, "round {round}");
                match state {
                    Decryption::None => states[0] += 1,
                    _ => states[1] += 1,
                }
            } else {
                let (ty, pt) = res
                    .as_ref()
                    .unwrap_or_else(|e| panic!("round {round} record {i} ({state:?}): {e}"));
                assert_eq!((ty, pt), (&f.sent[i].0, &f.sent[i].1));
            }
        }
    }
    assert!(states.iter().all(|&n| n > 10), "{states:?}");
}
