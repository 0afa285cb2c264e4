use super::*;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const H4: &[u8] = &[0x45; 20];
const H6: &[u8] = &[0x60; 40];

fn k4(id: u16) -> FragKey {
    FragKey::V4 {
        src: Ipv4Addr::new(10, 0, 0, 1),
        dst: Ipv4Addr::new(10, 0, 0, 2),
        id,
        protocol: 17,
    }
}

fn k6(id: u32) -> FragKey {
    FragKey::V6 {
        src: "2001:db8::1".parse().unwrap(),
        dst: "2001:db8::2".parse().unwrap(),
        id,
    }
}

fn t(s: u64) -> Instant {
    Instant::from_millis(s * 1000)
}

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

/// The indexes and the memory charge agree with the table.
fn check(r: &Reassembler) {
    assert_eq!(r.by_deadline.len(), r.datagrams.len());
    assert_eq!(r.by_age.len(), r.datagrams.len());
    let charged: usize = r.datagrams.values().map(Datagram::charge).sum();
    assert_eq!(r.used, charged);
    assert!(r.used <= r.limits.max_bytes_total);
    assert!(r.datagrams.len() <= r.limits.max_datagrams);
    for (&k, d) in &r.datagrams {
        assert!(r.by_deadline.contains(&(d.deadline, k)));
        assert!(r.by_age.contains(&(d.seq, k)));
        if let Body::Collecting(c) = &d.body {
            let sum: usize = c.fragments.values().map(Vec::len).sum();
            assert_eq!(sum, c.received);
            let mut at = 0;
            for (&o, data) in &c.fragments {
                assert!(o >= at, "overlap held");
                at = o + data.len();
            }
        }
    }
    assert_eq!(r.next_deadline(), r.by_deadline.first().map(|x| x.0));
}

fn poll(r: &mut Reassembler, now: Instant) -> Vec<Expired> {
    let mut out = Vec::new();
    r.poll(now, &mut |e| out.push(e));
    check(r);
    out
}

fn reasm() -> Reassembler {
    Reassembler::new(FragLimits::default())
}

#[test]
fn in_order_and_out_of_order_in_both_families() {
    let payload = bytes(3000, 1);
    for (key, header) in [(k4(1), H4), (k6(1), H6)] {
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0], [2, 0, 1]] {
            let mut r = reasm();
            let pieces: Vec<Piece> = plan(payload.len(), 1480).unwrap().collect();
            assert_eq!(pieces.len(), 3);
            let mut done = None;
            for (n, &i) in order.iter().enumerate() {
                let p = pieces[i];
                let data = &payload[p.offset..p.offset + p.len];
                let hdr = if p.offset == 0 { header } else { &[] };
                let got = r.insert(t(0), key, p.offset, p.more, data, hdr).unwrap();
                check(&r);
                if n < 2 {
                    assert!(got.is_none());
                } else {
                    done = got;
                }
            }
            let done = done.expect("whole");
            assert_eq!(done.payload, payload);
            assert_eq!(done.header, header);
            assert!(r.is_empty());
            assert_eq!(r.bytes_used(), 0);
            assert_eq!(r.next_deadline(), None);
            assert_eq!(r.counters().reassembled, 1);
        }
    }
}

#[test]
fn the_header_comes_only_from_the_offset_zero_fragment() {
    let mut r = reasm();
    r.insert(t(0), k4(1), 8, false, &[2; 8], &[9; 20]).unwrap();
    let got = r
        .insert(t(0), k4(1), 0, true, &[1; 8], H4)
        .unwrap()
        .unwrap();
    assert_eq!(got.header, H4);
    assert_eq!(got.payload, [[1; 8], [2; 8]].concat());
}

#[test]
fn duplicates_are_ignored() {
    let mut r = reasm();
    let key = k6(7);
    let data = bytes(32, 3);
    assert_eq!(r.insert(t(0), key, 0, true, &data[..16], H6), Ok(None));
    // Exact duplicate, then a piece inside the held one with the same
    // bytes.
    assert_eq!(r.insert(t(0), key, 0, true, &data[..16], H6), Ok(None));
    assert_eq!(r.insert(t(0), key, 8, true, &data[8..16], &[]), Ok(None));
    assert_eq!(r.counters().duplicates, 2);
    check(&r);
    let got = r.insert(t(1), key, 16, false, &data[16..], &[]).unwrap();
    assert_eq!(got.unwrap().payload, data);
    // A duplicate of the last fragment arriving after the fact starts a
    // new datagram, which only times out.
    assert_eq!(r.insert(t(1), key, 16, false, &data[16..], &[]), Ok(None));
    assert_eq!(r.len(), 1);
}

#[test]
fn a_duplicate_last_fragment_fixes_the_end() {
    let mut r = reasm();
    let key = k4(2);
    r.insert(t(0), key, 0, true, &[1; 8], H4).unwrap();
    r.insert(t(0), key, 8, true, &[2; 8], &[]).unwrap();
    // The same bytes again, now flagged last: the datagram is [0, 16).
    let got = r
        .insert(t(0), key, 8, false, &[2; 8], &[])
        .unwrap()
        .unwrap();
    assert_eq!(got.payload.len(), 16);
}

#[test]
fn any_overlap_discards_the_datagram_and_its_later_fragments() {
    // (held fragments, the overlapping one)
    type Case = (&'static [(usize, usize)], (usize, usize));
    let cases: &[Case] = &[
        (&[(0, 16)], (8, 16)),         // runs past the held one
        (&[(16, 16)], (8, 16)),        // runs into the next
        (&[(8, 8)], (0, 24)),          // swallows one
        (&[(0, 8)], (0, 16)),          // same start, longer
        (&[(0, 16)], (0, 8)),          // inside, different bytes
        (&[(0, 8), (16, 8)], (8, 16)), // fills a hole and more
        (&[(0, 8), (16, 8)], (0, 24)), // covers all
        (&[(32, 8), (8, 8)], (0, 16)), // into the first of several
    ];
    for key in [k4(3), k6(3)] {
        for (held, (o, n)) in cases {
            let mut r = reasm();
            for &(ho, hn) in held.iter() {
                let h = if ho == 0 { H4 } else { &[] };
                r.insert(t(0), key, ho, true, &vec![0xaa; hn], h).unwrap();
            }
            let e = r.insert(t(0), key, *o, true, &vec![0xbb; *n], &[]);
            assert_eq!(e, Err(FragError::Overlap), "{held:?} then {o}+{n}");
            assert!(FragError::Overlap.discards_datagram());
            check(&r);
            // RFC 5722 §4: the rest of it goes too, even a good fragment.
            let e = r.insert(t(1), key, 64, false, &[1; 8], &[]);
            assert_eq!(e, Err(FragError::Discarded));
            assert_eq!(r.counters().discarded, 1);
            assert_eq!(r.bytes_used(), DATAGRAM_OVERHEAD);
            // At the timeout it goes silently, and the key is free again.
            assert!(poll(&mut r, t(60)).is_empty());
            assert!(r.is_empty());
            assert_eq!(r.counters().timed_out, 0);
            assert_eq!(r.insert(t(61), key, 8, false, &[1; 8], &[]), Ok(None));
        }
    }
}

#[test]
fn bad_fragments_go_alone() {
    let mut r = reasm();
    let key = k6(4);
    r.insert(t(0), key, 0, true, &[1; 16], H6).unwrap();
    let bad: &[(usize, bool, usize, FragError)] = &[
        (17, true, 8, FragError::MisalignedOffset),
        (4, false, 8, FragError::MisalignedOffset),
        (16, true, 9, FragError::MisalignedLength),
        (16, true, 0, FragError::Empty),
        (16, false, 0, FragError::Empty),
        (65528, true, 16, FragError::TooLong),
        (65528, false, 8, FragError::TooLong),
    ];
    for &(offset, more, len, want) in bad {
        let got = r.insert(t(0), key, offset, more, &vec![0; len], &[]);
        assert_eq!(got, Err(want), "{offset} {more} {len}");
        assert!(!want.discards_datagram());
    }
    check(&r);
    let got = r
        .insert(t(0), key, 16, false, &[2; 5], &[])
        .unwrap()
        .unwrap();
    assert_eq!(got.payload, [&[1; 16][..], &[2; 5]].concat());
}

#[test]
fn hostile_offsets_near_the_limits() {
    let mut r = reasm();
    // IPv6: the fragmentable part may reach 65535 exactly.
    assert_eq!(r.insert(t(0), k6(5), 65528, false, &[0; 7], &[]), Ok(None));
    assert_eq!(
        r.insert(t(0), k6(6), 65528, false, &[0; 8], &[]),
        Err(FragError::TooLong)
    );
    // IPv4: 65535 less the smallest header.
    assert_eq!(r.insert(t(0), k4(5), 65512, false, &[0; 3], &[]), Ok(None));
    assert_eq!(
        r.insert(t(0), k4(6), 65512, false, &[0; 4], &[]),
        Err(FragError::TooLong)
    );
    // Offsets no wire format can carry, and that would wrap.
    for offset in [usize::MAX & !7, usize::MAX - 7, 1 << 40] {
        assert_eq!(
            r.insert(t(0), k6(7), offset, true, &[0; 16], &[]),
            Err(FragError::TooLong)
        );
    }
    // A tiny fragment far out costs what it holds, not its offset.
    assert!(r.bytes_used() < 2 * (DATAGRAM_OVERHEAD + FRAGMENT_OVERHEAD + 8));
    check(&r);
}

#[test]
fn the_whole_must_fit_in_65535_bytes_with_its_header() {
    // IPv4 with a 60-byte header: 65475 bytes of payload at most.
    let mut r = reasm();
    let key = k4(8);
    r.insert(t(0), key, 0, true, &vec![0; 65464], &[0x4f; 60])
        .unwrap();
    let got = r.insert(t(0), key, 65464, false, &[0; 12], &[]);
    assert_eq!(got, Err(FragError::Oversized));
    assert!(r.is_empty());
    assert_eq!(r.bytes_used(), 0);
    let key = k4(9);
    r.insert(t(0), key, 0, true, &vec![0; 65464], &[0x4f; 60])
        .unwrap();
    let got = r.insert(t(0), key, 65464, false, &[0; 11], &[]).unwrap();
    assert_eq!(got.unwrap().payload.len(), 65475);
    // IPv6: extension headers count against Payload Length.
    let key = k6(8);
    let unfrag = [0; 40 + 16];
    r.insert(t(0), key, 0, true, &vec![0; 65520], &unfrag)
        .unwrap();
    let got = r.insert(t(0), key, 65520, false, &[0; 15], &[]);
    assert_eq!(got, Err(FragError::Oversized));
    // Headers no valid packet has.
    assert_eq!(
        r.insert(t(0), k4(10), 0, true, &[0; 8], &[0; 61]),
        Err(FragError::HeaderTooLong)
    );
    check(&r);
}

#[test]
fn the_end_cannot_move() {
    let mut r = reasm();
    let key = k4(11);
    r.insert(t(0), key, 16, false, &[0; 8], &[]).unwrap();
    assert_eq!(
        r.insert(t(0), key, 16, false, &[0; 16], &[]),
        Err(FragError::EndMismatch)
    );
    assert!(FragError::EndMismatch.discards_datagram());
    assert_eq!(
        r.insert(t(0), key, 0, true, &[0; 8], H4),
        Err(FragError::Discarded)
    );

    let key = k4(12);
    r.insert(t(0), key, 16, false, &[0; 8], &[]).unwrap();
    assert_eq!(
        r.insert(t(0), key, 24, true, &[0; 8], &[]),
        Err(FragError::PastEnd)
    );

    // A last fragment ending before data already held.
    let key = k6(12);
    r.insert(t(0), key, 32, true, &[0; 8], &[]).unwrap();
    assert_eq!(
        r.insert(t(0), key, 8, false, &[0; 8], &[]),
        Err(FragError::EndMismatch)
    );
    assert_eq!(r.counters().discarded, 3);
    check(&r);
}

#[test]
fn timeouts_with_and_without_the_first_fragment() {
    let mut r = reasm();
    r.insert(t(0), k4(1), 0, true, &[1; 8], H4).unwrap();
    r.insert(t(5), k4(2), 8, false, &[2; 8], &[]).unwrap();
    r.insert(t(0), k6(1), 0, true, &[3; 8], H6).unwrap();
    r.insert(t(0), k6(1), 16, true, &[4; 8], &[]).unwrap();
    assert_eq!(r.next_deadline(), Some(t(30)));
    // Later fragments do not extend the timer.
    r.insert(t(29), k4(1), 16, true, &[5; 8], &[]).unwrap();
    assert!(poll(&mut r, t(29)).is_empty());
    let first = FirstFragment {
        header: H4.to_vec(),
        data: vec![1; 8],
    };
    assert_eq!(
        poll(&mut r, t(30)),
        vec![Expired {
            key: k4(1),
            first: Some(first)
        }]
    );
    assert_eq!(r.next_deadline(), Some(t(35)));
    // Due but not polled: refused, left for poll.
    assert_eq!(
        r.insert(t(36), k4(2), 0, true, &[0; 8], H4),
        Err(FragError::Expired)
    );
    assert_eq!(
        poll(&mut r, t(59)),
        vec![Expired {
            key: k4(2),
            first: None
        }]
    );
    let out = poll(&mut r, t(60));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].key, k6(1));
    assert_eq!(out[0].first.as_ref().unwrap().data, vec![3; 8]);
    assert!(r.is_empty());
    assert_eq!(r.bytes_used(), 0);
    assert_eq!(r.counters().timed_out, 3);
}

#[test]
fn atomic_fragments_stand_alone() {
    let mut r = reasm();
    let key = k6(9);
    r.insert(t(0), key, 8, true, &[2; 8], &[]).unwrap();
    let got = r.insert(t(0), key, 0, false, &[7; 5], H6).unwrap().unwrap();
    assert_eq!(got.payload, vec![7; 5]);
    assert_eq!(got.header, H6);
    // An empty one too.
    let got = r.insert(t(0), key, 0, false, &[], H6).unwrap().unwrap();
    assert!(got.payload.is_empty());
    // The reassembly in progress is untouched.
    assert_eq!(r.len(), 1);
    let got = r.insert(t(0), key, 0, true, &[1; 8], H6).unwrap();
    assert!(got.is_none());
    assert_eq!(r.counters().atomic, 2);
}

#[test]
fn memory_pressure_evicts_the_oldest() {
    let per = DATAGRAM_OVERHEAD + FRAGMENT_OVERHEAD + 20 + 1000;
    let mut r = Reassembler::new(FragLimits {
        max_bytes_total: 3 * per,
        ..FragLimits::default()
    });
    for id in 0..3 {
        r.insert(t(id), k4(id as u16), 0, true, &vec![0; 1000], H4)
            .unwrap();
    }
    assert_eq!(r.bytes_used(), 3 * per);
    // A fourth datagram pushes out the first.
    r.insert(t(3), k4(3), 0, true, &vec![0; 1000], H4).unwrap();
    assert_eq!(r.len(), 3);
    assert_eq!(r.counters().evicted, 1);
    assert_eq!(
        r.insert(t(3), k4(0), 1000, false, &[0; 8], &[]),
        Ok(None),
        "k4(0) is gone: this starts afresh"
    );
    check(&r);
    // Growing a datagram evicts others, never itself.
    let before = r.counters().evicted;
    r.insert(t(4), k4(3), 1000, true, &vec![0; 2000], &[])
        .unwrap();
    assert!(r.counters().evicted > before);
    assert!(r.datagrams.contains_key(&k4(3)));
    check(&r);
    // One datagram bigger than the whole budget is discarded, and
    // evicts nobody on its way out.
    let others = r.len() - 1;
    let before = r.counters().evicted;
    let e = r.insert(t(4), k4(3), 3000, true, &vec![0; 4000], &[]);
    assert_eq!(e, Err(FragError::NoMemory));
    assert!(!r.datagrams.contains_key(&k4(3)));
    assert_eq!(r.len(), others);
    assert_eq!(r.counters().evicted, before);
    let e = r.insert(t(4), k4(50), 8, true, &vec![0; 4000], &[]);
    assert_eq!(e, Err(FragError::NoMemory));
    assert_eq!(r.len(), others);
    check(&r);
}

#[test]
fn the_datagram_count_is_bounded() {
    let mut r = Reassembler::new(FragLimits {
        max_datagrams: 4,
        ..FragLimits::default()
    });
    for id in 0..100u32 {
        r.insert(t(0), k6(id), 8, true, &[0; 8], &[]).unwrap();
        check(&r);
    }
    assert_eq!(r.len(), 4);
    assert_eq!(r.counters().evicted, 96);
    let kept: Vec<FragKey> = r.datagrams.keys().copied().collect();
    assert_eq!(kept, vec![k6(96), k6(97), k6(98), k6(99)]);
    let mut none = Reassembler::new(FragLimits {
        max_datagrams: 0,
        ..FragLimits::default()
    });
    assert_eq!(
        none.insert(t(0), k6(1), 8, true, &[0; 8], &[]),
        Err(FragError::NoMemory)
    );
}

#[test]
fn a_flood_of_tiny_fragments_is_charged_for_its_bookkeeping() {
    let mut r = Reassembler::new(FragLimits {
        max_bytes_total: 64 << 10,
        ..FragLimits::default()
    });
    let key = k6(1);
    let mut refused = 0;
    for i in 0..8000 {
        // Every other 8-byte slot: never completes.
        match r.insert(t(0), key, 16 * i, true, &[0; 8], &[]) {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e, FragError::NoMemory);
                refused += 1;
                break;
            }
        }
    }
    assert_eq!(refused, 1);
    assert!(r.is_empty());
    assert_eq!(r.bytes_used(), 0);
}

// ---- the planner ----

#[test]
fn plan_splits_into_aligned_pieces_that_fit() {
    let p: Vec<Piece> = plan(20, 13).unwrap().collect();
    assert_eq!(
        p,
        vec![
            Piece {
                offset: 0,
                len: 8,
                more: true
            },
            Piece {
                offset: 8,
                len: 12,
                more: false
            },
        ]
    );
    let p: Vec<Piece> = plan(2960, 1480).unwrap().collect();
    assert_eq!(p.len(), 2);
    assert_eq!((p[1].offset, p[1].len, p[1].more), (1480, 1480, false));
    assert_eq!(plan(0, 8).unwrap().collect::<Vec<_>>().len(), 1);
    assert_eq!(
        plan(100, 1000).unwrap().collect::<Vec<_>>(),
        vec![Piece {
            offset: 0,
            len: 100,
            more: false
        }]
    );
    assert_eq!(plan(100, 7).err(), Some(PlanError::MtuTooSmall));
    assert_eq!(plan(65536, 1280).err(), Some(PlanError::TooLong));
    // The smallest step, the longest payload: offsets stay addressable.
    let p: Vec<Piece> = plan(65535, 8).unwrap().collect();
    assert_eq!(p.len(), 8192);
    assert_eq!(p.last().unwrap().offset, 65528);
}

#[test]
fn plan_pieces_are_contiguous_aligned_and_counted() {
    let mut rng = SmallRng::seed_from_u64(11);
    for _ in 0..2000 {
        let len = rng.gen_range(0..=65535);
        let mtu = rng.gen_range(8..3000);
        let it = plan(len, mtu).unwrap();
        let hint = it.len();
        let p: Vec<Piece> = it.collect();
        assert_eq!(p.len(), hint);
        let mut at = 0;
        for (i, piece) in p.iter().enumerate() {
            assert_eq!(piece.offset, at);
            assert!(piece.len <= mtu);
            assert_eq!(piece.more, i + 1 < p.len());
            if piece.more {
                assert_eq!(piece.len % 8, 0);
                assert!(piece.len > 0);
            }
            at += piece.len;
        }
        assert_eq!(at, len);
    }
}

// ---- a random workout: plan, shuffle, duplicate, interleave ----

#[test]
fn random_payloads_reassemble_byte_exact() {
    let mut rng = SmallRng::seed_from_u64(2024);
    for round in 0..200u32 {
        let mut r = reasm();
        // A few datagrams at once, their fragments interleaved.
        let mut sends = Vec::new();
        let mut want = BTreeMap::new();
        for d in 0..rng.gen_range(1..5u32) {
            let v6 = rng.gen();
            let key = if v6 {
                k6(round * 8 + d)
            } else {
                k4((round * 8 + d) as u16)
            };
            let max = if v6 { 65535 } else { 65515 };
            let len = match rng.gen_range(0..4) {
                0 => rng.gen_range(9..64),
                1 => max,
                _ => rng.gen_range(9..=max),
            };
            let payload: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            // Below `len`: always fragmented.
            let mtu = rng.gen_range(8..len.min(9000));
            let header: Vec<u8> = vec![d as u8; if v6 { 40 } else { 20 }];
            for piece in plan(len, mtu).unwrap() {
                let copies = if rng.gen_range(0..8) == 0 { 2 } else { 1 };
                for _ in 0..copies {
                    sends.push((key, piece));
                }
            }
            want.insert(key, (payload, header));
        }
        sends.shuffle(&mut rng);
        let mut got = BTreeMap::new();
        for (key, p) in sends {
            let (payload, header) = &want[&key];
            let h = if p.offset == 0 { &header[..] } else { &[] };
            let data = &payload[p.offset..p.offset + p.len];
            match r.insert(t(0), key, p.offset, p.more, data, h) {
                Ok(Some(done)) => {
                    // Duplicates after completion may, rarely, make the
                    // datagram again: the same bytes.
                    if let Some(before) = got.insert(key, done.clone()) {
                        assert_eq!(before, done);
                    }
                }
                Ok(None) => {}
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        check(&r);
        assert_eq!(got.len(), want.len(), "round {round}");
        for (key, done) in got {
            assert_eq!(done.payload, want[&key].0);
            assert_eq!(done.header, want[&key].1);
        }
        // Duplicates arriving after completion start new datagrams;
        // nothing else is left.
        assert!(r.counters().discarded == 0);
    }
}
