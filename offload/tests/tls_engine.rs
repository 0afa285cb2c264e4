//! The NIC TLS engine against an independent AES-GCM (the aes-gcm crate):
//! a framed stream sealed by the engine, segment by segment, must be
//! byte-identical to the same records sealed whole in software; the RX
//! engine must open what the TX engine sealed, whatever the segmentation.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use capnet_offload::gcm::GcmKey;
use capnet_offload::tls::{
    HeaderError, ResyncError, RxOutcome, TlsParams, TlsRxEngine, TlsTxEngine, TxError,
};
use capnet_wire::tls::{self as wire_tls, ContentType, RecordHeader, Version, HEADER_LEN, TAG_LEN};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One record of a test stream: where it starts in the stream, its total
/// length, and where its tag starts.
#[derive(Clone, Copy, Debug)]
struct Rec {
    start: usize,
    len: usize,
}

impl Rec {
    fn tag_start(&self) -> usize {
        self.start + self.len - TAG_LEN
    }
}

/// A stream of records three ways: framed (what tlsd writes in offload
/// mode), sealed (what software produces), opened (what the RX engine hands
/// up for a segment it marks: plaintext where the ciphertext was, the rest
/// as on the wire).
struct Stream {
    framed: Vec<u8>,
    sealed: Vec<u8>,
    opened: Vec<u8>,
    recs: Vec<Rec>,
}

struct Setup {
    version: Version,
    key: Vec<u8>,
    iv: [u8; 12],
    tcp_seq: u32,
    rec_seq: u64,
}

impl Setup {
    fn random(rng: &mut StdRng, version: Version, key_len: usize) -> Setup {
        let tcp_seq = if rng.gen_bool(0.3) {
            // Close to the wrap of the sequence space.
            u32::MAX - rng.gen_range(0..40_000)
        } else {
            rng.gen()
        };
        Setup {
            version,
            key: (0..key_len).map(|_| rng.gen()).collect(),
            iv: rng.gen(),
            tcp_seq,
            rec_seq: rng.gen_range(0..1000),
        }
    }

    fn params(&self) -> TlsParams {
        TlsParams {
            version: self.version,
            key: GcmKey::new(&self.key).unwrap(),
            iv: self.iv,
            tcp_seq: self.tcp_seq,
            rec_seq: self.rec_seq,
        }
    }

    fn seq(&self, off: usize) -> u32 {
        self.tcp_seq.wrapping_add(off as u32)
    }

    /// Seals `data` whole with the aes-gcm crate; returns the tag.
    fn reference_seal(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; 16] {
        let tag = match self.key.len() {
            16 => aes_gcm::Aes128Gcm::new_from_slice(&self.key)
                .unwrap()
                .encrypt_in_place_detached(nonce.into(), aad, data),
            _ => aes_gcm::Aes256Gcm::new_from_slice(&self.key)
                .unwrap()
                .encrypt_in_place_detached(nonce.into(), aad, data),
        };
        tag.unwrap().into()
    }

    /// Builds the stream of `records` (content type, plaintext).
    fn stream(&self, records: &[(ContentType, Vec<u8>)]) -> Stream {
        let v = self.version;
        let ct_off = wire_tls::ciphertext_offset(v);
        let mut s = Stream {
            framed: Vec::new(),
            sealed: Vec::new(),
            opened: Vec::new(),
            recs: Vec::new(),
        };
        for (i, (ty, pt)) in records.iter().enumerate() {
            let seq = self.rec_seq + i as u64;
            let mut inner = pt.clone();
            let outer = match v {
                Version::Tls12 => *ty,
                Version::Tls13 => {
                    inner.push((*ty).into());
                    ContentType::ApplicationData
                }
            };
            let body_len = ct_off - HEADER_LEN + inner.len() + TAG_LEN;
            let mut framed = vec![0u8; HEADER_LEN + body_len];
            RecordHeader {
                content_type: outer,
                body_len,
            }
            .emit(&mut framed);
            if v == Version::Tls12 {
                framed[HEADER_LEN..ct_off]
                    .copy_from_slice(&wire_tls::tls12_explicit_nonce(&self.iv, seq));
            }
            framed[ct_off..ct_off + inner.len()].copy_from_slice(&inner);
            let nonce = wire_tls::nonce(v, &self.iv, seq);
            let aad = wire_tls::aad(v, seq, outer, body_len);
            let mut sealed = framed.clone();
            let tag_at = sealed.len() - TAG_LEN;
            let tag = self.reference_seal(&nonce, aad.as_ref(), &mut sealed[ct_off..tag_at]);
            sealed[tag_at..].copy_from_slice(&tag);
            let mut opened = framed.clone();
            opened[tag_at..].copy_from_slice(&tag);

            s.recs.push(Rec {
                start: s.framed.len(),
                len: framed.len(),
            });
            s.framed.extend_from_slice(&framed);
            s.sealed.extend_from_slice(&sealed);
            s.opened.extend_from_slice(&opened);
        }
        s
    }
}

fn random_records(rng: &mut StdRng, n: usize, max_len: usize) -> Vec<(ContentType, Vec<u8>)> {
    (0..n)
        .map(|_| {
            let ty = match rng.gen_range(0..10) {
                0 => ContentType::Alert,
                1 => ContentType::Handshake,
                _ => ContentType::ApplicationData,
            };
            let len = if rng.gen_bool(0.2) {
                rng.gen_range(0..8)
            } else {
                rng.gen_range(0..=max_len)
            };
            (ty, (0..len).map(|_| rng.gen()).collect())
        })
        .collect()
}

/// Cuts `0..len` into segments of 1..=max bytes.
fn segments(rng: &mut StdRng, len: usize, max: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut a = 0;
    while a < len {
        let b = (a + rng.gen_range(1..=max)).min(len);
        out.push((a, b));
        a = b;
    }
    out
}

const CASES: [(Version, usize); 4] = [
    (Version::Tls12, 16),
    (Version::Tls12, 32),
    (Version::Tls13, 16),
    (Version::Tls13, 32),
];

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn tx_seals_rfc8448_application_data() {
    // RFC 8448 3: the client's first application data record (seq 0) and
    // the server's (seq 1, after its NewSessionTicket), both carrying
    // 00 01 .. 31 as application data.
    let cases = [
        (
            "17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51",
            "5b 78 92 3d ee 08 57 90 33 e5 23 d9",
            0,
            "17 03 03 00 43 a2 3f 70 54 b6 2c 94 d0 af fa fe 82 28 ba 55 cb ef ac ea
             42 f9 14 aa 66 bc ab 3f 2b 98 19 a8 a5 b4 6b 39 5b d5 4a 9a 20 44 1e 2b
             62 97 4e 1f 5a 62 92 a2 97 70 14 bd 1e 3d ea e6 3a ee bb 21 69 49 15 e4",
        ),
        (
            "9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56",
            "cf 78 2b 88 dd 83 54 9a ad f1 e9 84",
            1,
            "17 03 03 00 43 2e 93 7e 11 ef 4a c7 40 e5 38 ad 36 00 5f c4 a4 69 32 fc
             32 25 d0 5f 82 aa 1b 36 e3 0e fa f9 7d 90 e6 df fc 60 2d cb 50 1a 59 a8
             fc c4 9c 4b f2 e5 f0 a2 1c 00 47 c2 ab f3 32 54 0d d0 32 e1 67 c2 95 5d",
        ),
    ];
    for (key, iv, rec_seq, record) in cases {
        let params = TlsParams {
            version: Version::Tls13,
            key: GcmKey::new(&hex(key)).unwrap(),
            iv: hex(iv).try_into().unwrap(),
            tcp_seq: 1000,
            rec_seq,
        };
        let want = hex(record);
        let mut framed = vec![0x17, 0x03, 0x03, 0x00, 0x43];
        framed.extend(0u8..0x32);
        framed.push(0x17); // inner content type
        framed.extend([0u8; TAG_LEN]);
        assert_eq!(framed.len(), want.len());

        let mut tx = TlsTxEngine::new(params.clone());
        let mut buf = framed.clone();
        let (a, b) = buf.split_at_mut(30);
        tx.process(1000, a).unwrap();
        tx.process(1030, b).unwrap();
        assert_eq!(buf, want);

        // And the RX engine opens it back.
        let mut rx = TlsRxEngine::new(params);
        let out = rx.process(1000, &mut buf);
        assert!(out.decrypted);
        assert_eq!(buf[..want.len() - TAG_LEN], framed[..want.len() - TAG_LEN]);
        assert_eq!(rx.counters().records_decrypted, 1);
    }
}

#[test]
fn tx_matches_software_seal() {
    let mut rng = StdRng::seed_from_u64(0x7478);
    for round in 0..120 {
        let (version, key_len) = CASES[round % 4];
        let setup = Setup::random(&mut rng, version, key_len);
        let max_len = if round % 3 == 0 { 16384 } else { 700 };
        let n = rng.gen_range(1..12);
        let recs = random_records(&mut rng, n, max_len);
        let s = setup.stream(&recs);
        let mut tx = TlsTxEngine::new(setup.params());
        let mut buf = s.framed.clone();
        let max_seg = [1, 7, 100, 1448, 9000][rng.gen_range(0..5)];
        let mut sealed = 0;
        for (a, b) in segments(&mut rng, buf.len(), max_seg) {
            let out = tx.process(setup.seq(a), &mut buf[a..b]).unwrap();
            assert_eq!(out.new_bytes, b - a);
            sealed += out.records_sealed;
        }
        assert!(
            buf == s.sealed,
            "round {round}: {version:?} AES-{}",
            key_len * 8
        );
        assert_eq!(sealed, recs.len());
        let c = tx.counters();
        assert_eq!(c.records_sealed, recs.len() as u64);
        assert_eq!(c.bytes, buf.len() as u64);
        assert_eq!(c.dropped, 0);
        assert_eq!(tx.next_rec_seq(), setup.rec_seq + recs.len() as u64);
        assert_eq!(tx.high_water_mark(), setup.seq(buf.len()));
    }
}

#[test]
fn tx_retransmissions_are_byte_identical() {
    let mut rng = StdRng::seed_from_u64(0x7265);
    for round in 0..80 {
        let (version, key_len) = CASES[round % 4];
        let setup = Setup::random(&mut rng, version, key_len);
        let n = rng.gen_range(1..10);
        let recs = random_records(&mut rng, n, 3000);
        let s = setup.stream(&recs);
        let mut tx = TlsTxEngine::new(setup.params());
        let total = s.framed.len();
        let mut hwm = 0;
        let mut retransmitted = 0;
        while hwm < total {
            if hwm > 0 && rng.gen_bool(0.4) {
                // A retransmission of old bytes, possibly running into new
                // ones: what leaves must be what left the first time (and
                // the software seal of the new part).
                let a = rng.gen_range(0..hwm);
                let b = rng.gen_range(a + 1..=(hwm + 2000).min(total));
                let mut seg = s.framed[a..b].to_vec();
                let out = tx.process(setup.seq(a), &mut seg).unwrap();
                assert_eq!(seg, s.sealed[a..b], "round {round}: retransmit {a}..{b}");
                assert_eq!(out.retransmitted_bytes, hwm.min(b) - a);
                retransmitted += out.retransmitted_bytes;
                hwm = hwm.max(b);
            } else {
                let b = (hwm + rng.gen_range(1..2000)).min(total);
                let mut seg = s.framed[hwm..b].to_vec();
                tx.process(setup.seq(hwm), &mut seg).unwrap();
                assert_eq!(seg, s.sealed[hwm..b], "round {round}: new {hwm}..{b}");
                hwm = b;
            }
        }
        assert_eq!(tx.counters().retransmitted_bytes, retransmitted as u64);
        // The whole stream again, in other pieces.
        for (a, b) in segments(&mut rng, total, 1448) {
            let mut seg = s.framed[a..b].to_vec();
            tx.process(setup.seq(a), &mut seg).unwrap();
            assert_eq!(seg, s.sealed[a..b]);
        }
    }
}

#[test]
fn tx_gap_is_refused_and_changes_nothing() {
    let mut rng = StdRng::seed_from_u64(0x6761);
    let setup = Setup::random(&mut rng, Version::Tls12, 16);
    let s = setup.stream(&random_records(&mut rng, 4, 2000));
    let mut tx = TlsTxEngine::new(setup.params());
    let mut buf = s.framed.clone();
    tx.process(setup.seq(0), &mut buf[..100]).unwrap();
    let mut seg = s.framed[150..300].to_vec();
    assert_eq!(
        tx.process(setup.seq(150), &mut seg),
        Err(TxError::Gap {
            expected: setup.seq(100),
            got: setup.seq(150)
        })
    );
    assert_eq!(tx.counters().dropped, 1);
    tx.process(setup.seq(100), &mut buf[100..]).unwrap();
    assert!(buf == s.sealed);
}

/// Whether an error is the one expected.
type ErrorCheck = fn(&TxError) -> bool;

#[test]
fn tx_refuses_bad_records_and_rolls_back() {
    let mut rng = StdRng::seed_from_u64(0x6261);
    for version in [Version::Tls12, Version::Tls13] {
        let setup = Setup::random(&mut rng, version, 16);
        let s = setup.stream(&random_records(&mut rng, 3, 500));
        let r1 = s.recs[1];
        let mut cases: Vec<(usize, u8, ErrorCheck)> = vec![
            (1, 0x02, |e| {
                matches!(
                    e,
                    TxError::BadRecord {
                        error: HeaderError::Header(wire_tls::Error::BadVersion(0x0203)),
                        ..
                    }
                )
            }),
            (3, 0xff, |e| {
                matches!(
                    e,
                    TxError::BadRecord {
                        error: HeaderError::Header(wire_tls::Error::Overflow(_)),
                        ..
                    }
                )
            }),
            (0, 0x42, |e| {
                matches!(
                    e,
                    TxError::BadRecord {
                        error: HeaderError::ContentType(0x42),
                        ..
                    }
                )
            }),
        ];
        match version {
            Version::Tls12 => {
                cases.push((9, 0x00, |e| matches!(e, TxError::BadExplicitNonce { .. })));
                cases.push((4, 0x05, |e| {
                    matches!(
                        e,
                        TxError::BadRecord {
                            error: HeaderError::TooShort(5),
                            ..
                        }
                    )
                }));
            }
            Version::Tls13 => {
                cases.push((0, 22, |e| {
                    matches!(
                        e,
                        TxError::BadRecord {
                            error: HeaderError::ContentType(22),
                            ..
                        }
                    )
                }));
            }
        }
        for (at, val, want) in cases {
            let mut bad = s.framed.clone();
            bad[r1.start + at] = if bad[r1.start + at] == val {
                val ^ 1
            } else {
                val
            };
            if at == 3 {
                bad[r1.start + 4] = 0xff;
            }
            if version == Version::Tls12 && at == 9 && bad[r1.start + 9] == s.framed[r1.start + 9] {
                bad[r1.start + 9] ^= 1;
            }
            let mut tx = TlsTxEngine::new(setup.params());
            let mut buf = bad.clone();
            // The first segment ends before the bad byte, in the bad
            // record's prefix when it can.
            let cut = r1.start + at / 2;
            tx.process(setup.seq(0), &mut buf[..cut]).unwrap();
            let err = tx.process(setup.seq(cut), &mut buf[cut..]).unwrap_err();
            assert!(want(&err), "{version:?} byte {at}: {err:?}");
            assert!(!err.to_string().is_empty());
            assert_eq!(tx.counters().dropped, 1);
            assert_eq!(tx.high_water_mark(), setup.seq(cut));
            // The state is as before the refused segment: the good bytes go.
            let mut good = s.framed.clone();
            tx.process(setup.seq(cut), &mut good[cut..]).unwrap();
            assert!(good[cut..] == s.sealed[cut..]);
        }
    }
}

#[test]
fn tx_retransmitted_header_must_match() {
    let mut rng = StdRng::seed_from_u64(0x6d6d);
    let setup = Setup::random(&mut rng, Version::Tls13, 32);
    let s = setup.stream(&random_records(&mut rng, 3, 500));
    let mut tx = TlsTxEngine::new(setup.params());
    let mut buf = s.framed.clone();
    // Stop in the middle of record 2's header.
    let r2 = s.recs[2];
    tx.process(setup.seq(0), &mut buf[..r2.start + 3]).unwrap();
    for (at, len) in [(s.recs[1].start + 4, 10), (r2.start + 1, 2)] {
        let mut seg = s.framed[at..at + len].to_vec();
        seg[0] ^= 0x10;
        assert_eq!(
            tx.process(setup.seq(at), &mut seg),
            Err(TxError::RetransmitMismatch { seq: setup.seq(at) })
        );
    }
    // The partial header, retransmitted as it was, passes.
    let mut seg = s.framed[r2.start..r2.start + 3].to_vec();
    tx.process(setup.seq(r2.start), &mut seg).unwrap();
    assert_eq!(seg, s.sealed[r2.start..r2.start + 3]);
}

#[test]
fn tx_acked_records_are_forgotten() {
    let mut rng = StdRng::seed_from_u64(0x6163);
    let setup = Setup::random(&mut rng, Version::Tls12, 16);
    let s = setup.stream(&random_records(&mut rng, 400, 300));
    let mut tx = TlsTxEngine::new(setup.params());
    let mut buf = s.framed.clone();
    let mut max_held = 0;
    let mut acked = 0;
    for (a, b) in segments(&mut rng, buf.len(), 1448) {
        tx.process(setup.seq(a), &mut buf[a..b]).unwrap();
        // The peer acks with a lag of a few segments.
        acked = acked.max(a.saturating_sub(5000));
        tx.acked(setup.seq(acked));
        max_held = max_held.max(tx.records_held());
    }
    assert!(buf == s.sealed);
    // ~5000 + 1448 bytes of records of at most 329 bytes, and at least 24.
    assert!(max_held <= 6448 / 24 + 2, "{max_held} records held");
    assert!(max_held < 400);
    // A record wholly below the ack is gone; the one straddling it is not.
    let straddling = s.recs.iter().position(|r| r.start + r.len > acked).unwrap();
    let r = s.recs[straddling];
    let mut seg = s.framed[r.start..r.start + r.len].to_vec();
    tx.process(setup.seq(r.start), &mut seg).unwrap();
    assert_eq!(seg, s.sealed[r.start..r.start + r.len]);
    let old = s.recs[straddling - 1];
    let mut seg = s.framed[old.start..old.start + 10].to_vec();
    assert_eq!(
        tx.process(setup.seq(old.start), &mut seg),
        Err(TxError::Forgotten {
            seq: setup.seq(old.start)
        })
    );
    // An ack beyond what left frees nothing; everything acked, nothing held.
    let held = tx.records_held();
    tx.acked(setup.seq(buf.len() + 1));
    assert_eq!(tx.records_held(), held);
    tx.acked(setup.seq(buf.len()));
    assert_eq!(tx.records_held(), 0);
}

#[test]
fn tx_keeps_records_within_the_stacks_reach() {
    let mut rng = StdRng::seed_from_u64(0x7265);
    let setup = Setup::random(&mut rng, Version::Tls13, 16);
    let s = setup.stream(&random_records(&mut rng, 100, 300));
    const REACH: usize = 4000;
    let mut tx = TlsTxEngine::new(setup.params()).retaining(REACH as u32);
    let mut buf = s.framed.clone();
    for (a, b) in segments(&mut rng, buf.len(), 1448) {
        tx.process(setup.seq(a), &mut buf[a..b]).unwrap();
        // The wire acks everything at once: the stack may not have seen it.
        tx.acked(setup.seq(b));
    }
    assert!(buf == s.sealed);
    let floor = buf.len() - REACH;
    // Every record ending after the reach's floor is still there, acked or
    // not, and its retransmission leaves as it did the first time.
    let kept = s.recs.iter().position(|r| r.start + r.len > floor).unwrap();
    for r in &s.recs[kept..] {
        let mut seg = s.framed[r.start..r.start + r.len].to_vec();
        tx.process(setup.seq(r.start), &mut seg).unwrap();
        assert_eq!(seg, s.sealed[r.start..r.start + r.len]);
    }
    // What lies wholly beyond the reach is gone.
    let old = s.recs[kept - 1];
    let mut seg = s.framed[old.start..old.start + 10].to_vec();
    assert_eq!(
        tx.process(setup.seq(old.start), &mut seg),
        Err(TxError::Forgotten {
            seq: setup.seq(old.start)
        })
    );
    assert_eq!(tx.records_held(), s.recs.len() - kept);
}

#[test]
fn tx_bytes_before_the_start_pass_untouched() {
    let mut rng = StdRng::seed_from_u64(0x7374);
    let setup = Setup::random(&mut rng, Version::Tls13, 16);
    let s = setup.stream(&random_records(&mut rng, 2, 300));
    let mut tx = TlsTxEngine::new(setup.params());
    let mut buf = s.framed.clone();
    tx.process(setup.seq(0), &mut buf).unwrap();
    // A retransmission that begins in what software sealed before the
    // offload started.
    let early: Vec<u8> = (0..50).map(|_| rng.gen()).collect();
    let mut seg = early.clone();
    seg.extend_from_slice(&s.framed[..40]);
    let out = tx
        .process(setup.tcp_seq.wrapping_sub(50), &mut seg)
        .unwrap();
    assert_eq!(out.passthrough_bytes, 50);
    assert_eq!(seg[..50], early[..]);
    assert_eq!(seg[50..], s.sealed[..40]);
    // Once the peer acked past the start, such bytes are forgotten ones.
    tx.acked(setup.seq(1));
    let mut seg = early.clone();
    assert!(matches!(
        tx.process(setup.tcp_seq.wrapping_sub(50), &mut seg),
        Err(TxError::Forgotten { .. })
    ));
}

#[test]
fn tx_segment_half_the_sequence_space_behind_is_refused() {
    // Found by fuzzing (fuzz target nicdrv_frames): 2^31 bytes behind the
    // high-water mark is "behind" both ways round, and the prefix being
    // collected there was indexed with the wrapped distance (an overflow
    // panic, which ended nicdrv's data plane).
    let mut rng = StdRng::seed_from_u64(0x6861);
    let setup = Setup::random(&mut rng, Version::Tls13, 16);
    let s = setup.stream(&random_records(&mut rng, 1, 300));
    let mut tx = TlsTxEngine::new(setup.params());
    let mut head = s.framed[..3].to_vec();
    tx.process(setup.seq(0), &mut head).unwrap();
    tx.acked(setup.seq(3));
    let mut seg = vec![0u8; 10];
    assert!(matches!(
        tx.process(setup.seq(3).wrapping_sub(1 << 31), &mut seg),
        Err(TxError::Forgotten { .. })
    ));
    assert_eq!(seg, [0u8; 10]);
    // The stream goes on where it was.
    let mut rest = s.framed[3..].to_vec();
    tx.process(setup.seq(3), &mut rest).unwrap();
    assert!(rest[..] == s.sealed[3..]);
}

/// Feeds `segs` of the sealed stream to `rx`; checks each segment's bytes
/// against its mark. Returns the outcomes.
fn feed(
    rx: &mut TlsRxEngine,
    setup: &Setup,
    s: &Stream,
    segs: &[(usize, usize)],
) -> Vec<RxOutcome> {
    segs.iter()
        .map(|&(a, b)| {
            let mut seg = s.sealed[a..b].to_vec();
            let out = rx.process(setup.seq(a), &mut seg);
            if out.decrypted {
                assert!(
                    seg == s.opened[a..b],
                    "segment {a}..{b} marked but not plaintext"
                );
            } else {
                assert!(
                    seg == s.sealed[a..b],
                    "segment {a}..{b} unmarked but changed"
                );
            }
            out
        })
        .collect()
}

#[test]
fn rx_in_sync_round_trip() {
    let mut rng = StdRng::seed_from_u64(0x7278);
    for round in 0..80 {
        let (version, key_len) = CASES[round % 4];
        let setup = Setup::random(&mut rng, version, key_len);
        let max_len = if round % 3 == 0 { 16384 } else { 900 };
        let n = rng.gen_range(1..10);
        let recs = random_records(&mut rng, n, max_len);
        let s = setup.stream(&recs);

        // TX output, cut differently, into RX.
        let mut tx = TlsTxEngine::new(setup.params());
        let mut wire = s.framed.clone();
        for (a, b) in segments(&mut rng, wire.len(), 1448) {
            tx.process(setup.seq(a), &mut wire[a..b]).unwrap();
        }
        assert!(wire == s.sealed);
        let mut rx = TlsRxEngine::new(setup.params());
        let max_seg = [1, 13, 1448, 9000][rng.gen_range(0..4)];
        let segs = segments(&mut rng, wire.len(), max_seg);
        let outs = feed(&mut rx, &setup, &s, &segs);
        assert!(
            outs.iter()
                .all(|o| o.decrypted && o.resync_request.is_none()),
            "round {round}"
        );
        let c = rx.counters();
        assert_eq!(c.records_decrypted, recs.len() as u64);
        assert_eq!(c.segments_decrypted, segs.len() as u64);
        assert_eq!(
            (c.auth_failures, c.segments_untouched, c.sync_losses),
            (0, 0, 0)
        );
        assert!(rx.in_sync());
        assert_eq!(rx.expected(), setup.seq(wire.len()));

        // Duplicates of old segments pass untouched.
        let (a, b) = segs[rng.gen_range(0..segs.len())];
        let outs = feed(&mut rx, &setup, &s, &[(a, b)]);
        assert!(!outs[0].decrypted);
        assert_eq!(rx.counters().segments_untouched, 1);
    }
}

#[test]
fn rx_bad_tag_restores_the_segment() {
    let mut rng = StdRng::seed_from_u64(0x6261_6474);
    for round in 0..40 {
        let (version, key_len) = CASES[round % 4];
        let setup = Setup::random(&mut rng, version, key_len);
        let mut s = setup.stream(&random_records(&mut rng, 6, 3000));
        // Corrupt a byte of record 2's tag (in transit).
        let bad = s.recs[2];
        let at = bad.tag_start() + rng.gen_range(0..TAG_LEN);
        s.sealed[at] ^= 1 << rng.gen_range(0..8);
        s.opened[at] = s.sealed[at];

        let mut rx = TlsRxEngine::new(setup.params());
        let segs = segments(&mut rng, s.sealed.len(), 1448);
        let outs = feed(&mut rx, &setup, &s, &segs);
        let last = bad.start + bad.len - 1;
        for (&(a, b), o) in segs.iter().zip(&outs) {
            // Only the segment that completes the bad tag is not marked.
            assert_eq!(
                o.decrypted,
                !(a..b).contains(&last),
                "round {round}: {a}..{b}"
            );
            assert_eq!(o.resync_request, None);
        }
        let c = rx.counters();
        assert_eq!(c.auth_failures, 1);
        assert_eq!(c.records_decrypted, 5);
        assert_eq!(c.segments_untouched, 1);
        assert!(rx.in_sync());
    }
}

/// Plays the holder: answers each resync request from the true record
/// boundaries. Returns the index of the first segment marked after a loss.
fn answer(
    rx: &mut TlsRxEngine,
    setup: &Setup,
    s: &Stream,
    out: &RxOutcome,
) -> Option<Result<(), ResyncError>> {
    let seq = out.resync_request?;
    let off = seq.wrapping_sub(setup.tcp_seq) as usize;
    Some(match s.recs.iter().position(|r| r.start == off) {
        Some(i) => rx.resync(seq, setup.rec_seq + i as u64),
        None => rx.resync_reject(seq),
    })
}

#[test]
fn rx_loss_resync_and_resume() {
    let mut rng = StdRng::seed_from_u64(0x6c6f);
    for round in 0..40 {
        let (version, key_len) = CASES[round % 4];
        let setup = Setup::random(&mut rng, version, key_len);
        let recs = random_records(&mut rng, 30, 4000);
        let s = setup.stream(&recs);
        let segs = segments(&mut rng, s.sealed.len(), 1448);
        let lost = rng.gen_range(0..segs.len() / 3);
        let mut rx = TlsRxEngine::new(setup.params());
        let mut requests = Vec::new();
        let mut resumed_at = None;
        for (k, &(a, b)) in segs.iter().enumerate() {
            if k == lost {
                continue;
            }
            let out = feed(&mut rx, &setup, &s, &[(a, b)])[0];
            if k > lost && resumed_at.is_none() {
                if out.decrypted {
                    resumed_at = Some(k);
                }
            } else if k < lost {
                assert!(out.decrypted);
            }
            if let Some(r) = answer(&mut rx, &setup, &s, &out) {
                r.unwrap();
                requests.push(out.resync_request.unwrap());
            }
        }
        let resumed_at = resumed_at.unwrap_or_else(|| panic!("round {round}: never resynced"));
        // Not before the first record that starts after the loss and after
        // the confirmed candidate.
        let gap_end = segs[lost].1;
        let first_req = requests[0].wrapping_sub(setup.tcp_seq) as usize;
        assert!(first_req >= gap_end);
        assert!(segs[resumed_at].0 > first_req);
        // All segments after the resync are marked.
        let c = rx.counters();
        assert_eq!(c.sync_losses, 1);
        assert_eq!(c.resyncs, 1);
        assert_eq!(c.resync_requests, requests.len() as u64);
        assert_eq!(
            c.segments_decrypted + c.segments_untouched,
            segs.len() as u64 - 1
        );
        assert_eq!(c.segments_untouched as usize, resumed_at - lost - 1);
        assert!(rx.in_sync());
    }
}

#[test]
fn rx_resync_for_a_non_candidate_is_refused() {
    let mut rng = StdRng::seed_from_u64(0x6e63);
    let setup = Setup::random(&mut rng, Version::Tls13, 16);
    let recs = random_records(&mut rng, 20, 2000);
    let s = setup.stream(&recs);
    let mut rx = TlsRxEngine::new(setup.params());
    // In sync there is nothing to confirm.
    assert_eq!(
        rx.resync(setup.tcp_seq, 0),
        Err(ResyncError::UnknownCandidate {
            tcp_seq: setup.tcp_seq
        })
    );
    // Lose record 0 and part of record 1.
    let r = s.recs[1];
    let mut from = r.start + 7;
    let mut req = None;
    while req.is_none() {
        let to = (from + 1000).min(s.sealed.len());
        req = feed(&mut rx, &setup, &s, &[(from, to)])[0].resync_request;
        from = to;
    }
    let req = req.unwrap();
    let idx = s
        .recs
        .iter()
        .position(|r| setup.seq(r.start) == req)
        .expect("a real boundary");
    let wrong = req.wrapping_add(1);
    assert_eq!(
        rx.resync(wrong, 5),
        Err(ResyncError::UnknownCandidate { tcp_seq: wrong })
    );
    assert_eq!(
        rx.resync_reject(wrong),
        Err(ResyncError::UnknownCandidate { tcp_seq: wrong })
    );
    rx.resync(req, setup.rec_seq + idx as u64).unwrap();
    assert_eq!(
        rx.resync(req, setup.rec_seq + idx as u64),
        Err(ResyncError::AlreadyConfirmed { tcp_seq: req })
    );
    let rest = segments(&mut rng, s.sealed.len() - from, 1448);
    let rest: Vec<_> = rest.iter().map(|(a, b)| (a + from, b + from)).collect();
    let outs = feed(&mut rx, &setup, &s, &rest);
    assert!(outs.iter().skip(4).all(|o| o.decrypted));
    assert!(rx.in_sync());
    assert_eq!(rx.counters().resyncs, 1);
}

#[test]
fn rx_rejected_candidate_searches_again() {
    let mut rng = StdRng::seed_from_u64(0x726a);
    let setup = Setup::random(&mut rng, Version::Tls12, 32);
    let s = setup.stream(&random_records(&mut rng, 30, 1500));
    let mut rx = TlsRxEngine::new(setup.params());
    let segs = segments(&mut rng, s.sealed.len(), 1448);
    let mut reqs = Vec::new();
    for &(a, b) in &segs[1..] {
        let out = feed(&mut rx, &setup, &s, &[(a, b)])[0];
        if let Some(seq) = out.resync_request {
            reqs.push(seq);
            // The holder says no, twice; then yes.
            if reqs.len() <= 2 {
                rx.resync_reject(seq).unwrap();
            } else {
                answer(&mut rx, &setup, &s, &out).unwrap().unwrap();
            }
        }
    }
    assert!(reqs.len() >= 3);
    assert!(reqs
        .windows(2)
        .all(|w| (w[1].wrapping_sub(w[0]) as i32) > 0));
    assert!(rx.in_sync());
}

#[test]
fn rx_overlapping_retransmission_keeps_sync() {
    let mut rng = StdRng::seed_from_u64(0x6f76);
    let setup = Setup::random(&mut rng, Version::Tls13, 16);
    let s = setup.stream(&random_records(&mut rng, 5, 2000));
    let mut rx = TlsRxEngine::new(setup.params());
    let n = s.sealed.len();
    let outs = feed(&mut rx, &setup, &s, &[(0, 1000), (500, 2500), (2500, n)]);
    assert_eq!(
        outs.iter().map(|o| o.decrypted).collect::<Vec<_>>(),
        [true, false, true]
    );
    assert!(rx.in_sync());
    assert_eq!(rx.counters().records_decrypted, 5);
}

#[test]
fn rx_garbage_header_in_sync_loses_sync() {
    let mut rng = StdRng::seed_from_u64(0x6768);
    let setup = Setup::random(&mut rng, Version::Tls12, 16);
    let mut s = setup.stream(&random_records(&mut rng, 8, 1000));
    let r = s.recs[3];
    s.sealed[r.start + 1] = 0x47; // no longer version 0x0303
    s.opened[r.start + 1] = 0x47;
    let mut rx = TlsRxEngine::new(setup.params());
    let segs = segments(&mut rng, s.sealed.len(), 300);
    let mut lost = false;
    for &(a, b) in &segs {
        let was_in_sync = rx.in_sync();
        let out = feed(&mut rx, &setup, &s, &[(a, b)])[0];
        // The header is judged when its last byte arrives.
        if (a..b).contains(&(r.start + HEADER_LEN - 1)) {
            assert!(was_in_sync && !rx.in_sync() && !out.decrypted);
            lost = true;
        }
        if !lost {
            assert!(out.decrypted);
        }
        answer(&mut rx, &setup, &s, &out).map(Result::unwrap);
    }
    let c = rx.counters();
    assert_eq!((c.sync_losses, c.resyncs), (1, 1));
    assert!(rx.in_sync());
    // Records 0..3 and those after the resync point.
    assert!(c.records_decrypted >= 3 && c.records_decrypted < 8);
}

#[test]
fn hostile_bytes_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x6675);
    for round in 0..300 {
        let version = CASES[round % 4].0;
        let setup = Setup::random(&mut rng, version, 16);
        // Garbage, or a real stream with bytes flipped.
        let mut data: Vec<u8> = if round % 2 == 0 {
            (0..rng.gen_range(0..20_000)).map(|_| rng.gen()).collect()
        } else {
            setup.stream(&random_records(&mut rng, 6, 2000)).sealed
        };
        let flips = rng.gen_range(0..20);
        for _ in 0..flips.min(data.len()) {
            let i = rng.gen_range(0..data.len());
            data[i] = if rng.gen_bool(0.5) {
                rng.gen()
            } else {
                [23, 3, 0xff, 0][rng.gen_range(0..4)]
            };
        }
        let mut tx = TlsTxEngine::new(setup.params());
        let mut rx = TlsRxEngine::new(setup.params());
        let max_seg = [1, 5, 300, 1448][rng.gen_range(0..4)];
        let segs = segments(&mut rng, data.len(), max_seg);
        for &(a, b) in &segs {
            // Sometimes out of order, duplicated or far away.
            let (a, b) = if rng.gen_bool(0.1) {
                let x = rng.gen_range(0..data.len());
                (x, (x + rng.gen_range(1..3000)).min(data.len()))
            } else {
                (a, b)
            };
            let seq = if rng.gen_bool(0.02) {
                rng.gen()
            } else {
                setup.seq(a)
            };
            let mut seg = data[a..b].to_vec();
            let _ = tx.process(seq, &mut seg);
            let mut seg = data[a..b].to_vec();
            let out = rx.process(seq, &mut seg);
            if !out.decrypted {
                assert_eq!(seg, data[a..b]);
            }
            if let Some(c) = out.resync_request {
                match rng.gen_range(0..3) {
                    0 => rx.resync(c, rng.gen()).unwrap(),
                    1 => rx.resync_reject(c).unwrap(),
                    _ => {}
                }
            }
            let _ = rx.resync(rng.gen(), rng.gen());
            if rng.gen_bool(0.05) {
                tx.acked(setup.seq(rng.gen_range(0..data.len() + 1)));
            }
        }
    }
}

#[test]
fn sequence_numbers_wrap() {
    let mut rng = StdRng::seed_from_u64(0x7772);
    for (version, key_len) in CASES {
        let mut setup = Setup::random(&mut rng, version, key_len);
        // Record 1 straddles the wrap of the sequence space.
        let mut recs: Vec<_> = random_records(&mut rng, 12, 1000)
            .into_iter()
            .map(|(_, pt)| (ContentType::ApplicationData, pt))
            .collect();
        recs[0].1.resize(600, 0x55);
        let first_len = setup.stream(&recs).recs[0].len;
        setup.tcp_seq = 0u32.wrapping_sub(first_len as u32 + 10);
        let s = setup.stream(&recs);
        let total = s.framed.len();
        let mut tx = TlsTxEngine::new(setup.params());
        let mut wire = s.framed.clone();
        let segs = segments(&mut rng, total, 300);
        for &(a, b) in &segs {
            tx.process(setup.seq(a), &mut wire[a..b]).unwrap();
        }
        assert!(wire == s.sealed);
        // A retransmission across the wrap, then an ack past it.
        let (a, b) = (first_len, first_len + 40);
        assert!(setup.seq(a) > setup.seq(b));
        let mut seg = s.framed[a..b].to_vec();
        tx.process(setup.seq(a), &mut seg).unwrap();
        assert_eq!(seg, s.sealed[a..b]);
        tx.acked(setup.seq(s.recs[2].start));
        assert_eq!(tx.records_held(), recs.len() - 2);
        let mut seg = s.framed[a..b].to_vec();
        assert!(matches!(
            tx.process(setup.seq(a), &mut seg),
            Err(TxError::Forgotten { .. })
        ));

        let mut rx = TlsRxEngine::new(setup.params());
        let outs = feed(&mut rx, &setup, &s, &segs);
        assert!(outs.iter().all(|o| o.decrypted));
        assert_eq!(rx.counters().records_decrypted, recs.len() as u64);
        // Lose the segment holding the wrap; resync on the far side.
        let lost = segs
            .iter()
            .position(|&(a, b)| setup.seq(a) > setup.seq(b - 1))
            .unwrap_or(0);
        let mut rx = TlsRxEngine::new(setup.params());
        for (k, &(a, b)) in segs.iter().enumerate() {
            if k != lost {
                let out = feed(&mut rx, &setup, &s, &[(a, b)])[0];
                answer(&mut rx, &setup, &s, &out).map(Result::unwrap);
            }
        }
        let c = rx.counters();
        assert_eq!((c.sync_losses, c.resyncs), (1, 1));
        assert!(rx.in_sync());
    }
}
