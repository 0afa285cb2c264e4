//! The NIC's TLS RX engine opens what the TX engine sealed, whatever the
//! segmentation: in sync, after a bad tag, after a loss (resync through the
//! holder), and across the wrap of the sequence space; neither engine
//! panics on hostile bytes.

mod streams;

use capnet_offload::tls::{ResyncError, RxOutcome, TlsRxEngine, TlsTxEngine, TxError};
use capnet_wire::tls::{ContentType, Version, HEADER_LEN, TAG_LEN};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use streams::{random_records, segments, Setup, Stream, CASES};

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
        // 65,160: a merged frame of 45 segments, whose whole records are
        // opened in one pass.
        let max_seg = [1, 13, 1448, 9000, 65_160][rng.gen_range(0..5)];
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
        // Odd rounds: merged frames, whose whole records open in one pass.
        let max_seg = if round % 2 == 0 { 1448 } else { 20_000 };
        let segs = segments(&mut rng, s.sealed.len(), max_seg);
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
