//! The NIC's TLS TX engine against an independent AES-GCM (the aes-gcm
//! crate): a framed stream sealed by the engine, segment by segment, must be
//! byte-identical to the same records sealed whole in software, however it
//! is cut and retransmitted; bad records and gaps are refused and change
//! nothing.

mod streams;

use capnet_offload::gcm::GcmKey;
use capnet_offload::tls::{HeaderError, TlsParams, TlsRxEngine, TlsTxEngine, TxError};
use capnet_wire::tls::{self as wire_tls, Version, TAG_LEN};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use streams::{random_records, segments, Setup, CASES};

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
        // 65,160: a merged frame of 45 segments, which holds whole records
        // (sealed in one pass).
        let max_seg = [1, 7, 100, 1448, 9000, 65_160][rng.gen_range(0..6)];
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
                // Odd rounds send merged frames: whole records in one pass.
                let most = if round % 2 == 0 { 2000 } else { 20_000 };
                let b = (hwm + rng.gen_range(1..most)).min(total);
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
            // The first segment ends before the bad byte: in the bad
            // record's prefix when it can, or half way through the body of
            // the record before it (whose end, held for its tag, the
            // refused segment then carries).
            let r0 = s.recs[0];
            for cut in [
                r1.start + at / 2,
                r0.start + (r0.tag_start() - r0.start) / 2,
            ] {
                let mut tx = TlsTxEngine::new(setup.params());
                let mut buf = bad.clone();
                tx.process(setup.seq(0), &mut buf[..cut]).unwrap();
                let err = tx.process(setup.seq(cut), &mut buf[cut..]).unwrap_err();
                assert!(want(&err), "{version:?} byte {at}: {err:?}");
                assert!(!err.to_string().is_empty());
                assert_eq!(tx.counters().dropped, 1);
                assert_eq!(tx.high_water_mark(), setup.seq(cut));
                // The state is as before the refused segment: the good
                // bytes go.
                let mut good = s.framed.clone();
                tx.process(setup.seq(cut), &mut good[cut..]).unwrap();
                assert!(
                    good[cut..] == s.sealed[cut..],
                    "{version:?} byte {at} cut {cut}"
                );
            }
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
