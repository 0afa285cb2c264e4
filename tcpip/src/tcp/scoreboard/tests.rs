use std::collections::BTreeSet;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;

const MSS: u32 = 1000;
const RTT: Duration = Duration::from_millis(100);

fn ms(n: u64) -> Instant {
    Instant::from_millis(n)
}

fn sq(n: u32) -> SeqNumber {
    SeqNumber(n)
}

/// Sends `n` MSS-sized segments from the board's end, the i-th at
/// `t0 + i` ms.
fn send(board: &mut Scoreboard, start: SeqNumber, n: u32, t0: u64) {
    for i in 0..n {
        board
            .on_transmit(start + i * MSS, MSS, ms(t0 + u64::from(i)), Transmit::New)
            .unwrap();
    }
    check(board);
}

/// Every invariant the board promises, recomputed from its segments.
fn check(b: &Scoreboard) {
    let (mut sacked, mut lost, mut retrans, mut pipe) = (0u64, 0u64, 0u64, 0u64);
    let mut at = b.una;
    let mut high = None;
    for seg in &b.segs {
        assert_eq!(seg.start, at, "segments tile [una, end)");
        assert!(seg.len > 0);
        at = seg.end();
        let len = u64::from(seg.len);
        match seg.state {
            SegState::Sent => pipe += len,
            SegState::Resent => {
                pipe += 2 * len;
                retrans += len;
            }
            SegState::Lost => lost += len,
            SegState::Repaired => {
                pipe += len;
                lost += len;
                retrans += len;
            }
            SegState::Sacked => {
                sacked += len;
                high = Some(seg.end());
            }
        }
        if seg.state == SegState::Lost {
            assert!(
                b.lost_hint.le(seg.start),
                "hint {:?} past a lost segment {seg:?}",
                b.lost_hint
            );
        }
        if !seg.ever_retransmitted {
            assert!(matches!(
                seg.state,
                SegState::Sent | SegState::Lost | SegState::Sacked
            ));
        }
    }
    assert_eq!(at, b.end);
    assert!(b.span() <= MAX_SPAN);
    assert_eq!(u64::from(b.sacked), sacked);
    assert_eq!(u64::from(b.lost), lost);
    assert_eq!(u64::from(b.retrans), retrans);
    assert_eq!(u64::from(b.in_flight()), pipe);
    assert_eq!(b.high_sacked, high);
    assert!(b.una.le(b.fack));
    assert!(b.una.le(b.lost_hint) && b.lost_hint.le(b.end));
    assert_eq!(b.is_empty(), b.una == b.end);
}

fn states(b: &Scoreboard) -> Vec<(u32, u32, SegState)> {
    b.segs.iter().map(|s| (s.start.0, s.len, s.state)).collect()
}

#[test]
fn a_segment_is_three_words() {
    assert!(std::mem::size_of::<Segment>() <= 24);
}

#[test]
fn in_order_acks_empty_the_board() {
    let mut b = Scoreboard::new();
    assert!(b.is_empty());
    assert_eq!(b.next_retransmit(MSS), None);
    send(&mut b, sq(1000), 5, 0);
    assert_eq!((b.una(), b.end()), (sq(1000), sq(6000)));
    assert_eq!(b.in_flight(), 5000);
    for i in 1..=5u32 {
        let out = b.on_ack(ms(100 + u64::from(i)), sq(1000 + i * MSS), &[], None);
        check(&b);
        assert_eq!(out.acked, MSS);
        assert_eq!(out.sacked, 0);
        // Karn: sent at i-1 ms, acked at 100+i ms.
        assert_eq!(out.rtt, Some(Duration::from_millis(101)));
        assert!(!out.dsack && !out.reordering && !out.tlp_loss);
        assert_eq!(b.in_flight(), (5 - i) * MSS);
        let loss = b.detect_loss(ms(100 + u64::from(i)), RTT, RTT);
        assert_eq!(loss, LossOutcome::default());
    }
    assert!(b.is_empty());
    assert_eq!(b.una(), sq(6000));
    // A duplicate ACK of an empty board changes nothing.
    assert_eq!(
        b.on_ack(ms(200), sq(6000), &[], None),
        AckOutcome::default()
    );
}

#[test]
fn one_ack_for_many_segments_and_a_partial_ack() {
    let mut b = Scoreboard::new();
    send(&mut b, sq(0), 4, 0);
    let out = b.on_ack(ms(100), sq(2500), &[], None);
    check(&b);
    assert_eq!(out.acked, 2500);
    // The most recently sent of those acked: segment 2, sent at 2 ms.
    assert_eq!(out.rtt, Some(Duration::from_millis(98)));
    assert_eq!(
        b.segs.front().map(|s| (s.start, s.len)),
        Some((sq(2500), 500))
    );
    assert_eq!(b.in_flight(), 1500);
}

#[test]
fn rack_deems_a_hole_lost_after_the_reordering_window() {
    let mut b = Scoreboard::new();
    send(&mut b, sq(0), 10, 0);
    b.on_ack(ms(100), sq(3000), &[], None);
    // Segment 3 is missing; segment 4 (sent at 4 ms) arrives.
    let out = b.on_ack(ms(104), sq(3000), &[(sq(4000), sq(5000))], None);
    check(&b);
    assert_eq!((out.acked, out.sacked), (0, 1000));
    assert_eq!(out.rtt, Some(RTT));
    assert_eq!(b.sacked_bytes(), 1000);
    assert_eq!(b.highest_sacked(), Some(sq(5000)));
    assert_eq!(b.in_flight(), 6000);
    // reo_wnd = min_rtt / 4 = 25 ms: segment 3 (sent at 3 ms) is deemed
    // lost at 3 + 100 + 25.
    let early = b.detect_loss(ms(104), RTT, RTT);
    assert_eq!(early.newly_lost, 0);
    assert_eq!(early.reorder_deadline, Some(ms(128)));
    assert_eq!(b.next_retransmit(MSS), None);
    let almost = b.detect_loss(ms(127), RTT, RTT);
    assert_eq!(
        (almost.newly_lost, almost.reorder_deadline),
        (0, Some(ms(128)))
    );
    let due = b.detect_loss(ms(128), RTT, RTT);
    check(&b);
    assert_eq!(
        due,
        LossOutcome {
            newly_lost: 1000,
            reorder_deadline: None
        }
    );
    assert_eq!(b.lost_bytes(), 1000);
    assert_eq!(b.in_flight(), 5000);
    assert_eq!(b.next_retransmit(MSS), Some((sq(3000), 1000)));
    // Nothing is deemed lost twice.
    assert_eq!(b.detect_loss(ms(129), RTT, RTT).newly_lost, 0);

    b.on_transmit(sq(3000), 1000, ms(130), Transmit::Retransmit)
        .unwrap();
    check(&b);
    assert_eq!(b.next_retransmit(MSS), None);
    assert_eq!(b.in_flight(), 6000);
    assert_eq!(b.lost_bytes(), 1000);
    // The retransmission fills the hole: no RTT sample (Karn), no
    // reordering (it was retransmitted).
    let out = b.on_ack(ms(230), sq(5000), &[], None);
    check(&b);
    assert_eq!(out.acked, 2000);
    assert_eq!(out.rtt, None);
    assert!(!out.reordering);
    assert_eq!(
        (b.lost_bytes(), b.sacked_bytes(), b.in_flight()),
        (0, 0, 5000)
    );
    assert_eq!(b.highest_sacked(), None);
}

#[test]
fn without_reordering_dup_thresh_leaves_rack_no_window() {
    let mut b = Scoreboard::new();
    send(&mut b, sq(0), 10, 0);
    // Three segments above the hole at 1000: RFC 8985 §6.2 step 4 gives
    // reo_wnd 0, so RACK marks it at once.
    b.on_ack(ms(104), sq(1000), &[(sq(2000), sq(5000))], None);
    let out = b.detect_loss(ms(104), RTT, RTT);
    assert_eq!(out.newly_lost, 1000);
    assert!(b.recovery.is_some());
}

/// Makes the board see reordering: segment 0 arrives after segment 1.
fn with_reordering_seen(b: &mut Scoreboard) {
    send(b, sq(0), 10, 0);
    let out = b.on_ack(ms(101), sq(0), &[(sq(1000), sq(2000))], None);
    assert!(!out.reordering);
    let out = b.on_ack(ms(102), sq(2000), &[], None);
    assert!(out.reordering);
    assert!(b.rack.reordering_seen());
    // One segment deep: DupThresh stays 3.
    assert_eq!(b.dup_thresh, 3);
    check(b);
}

#[test]
fn dup_thresh_deems_a_hole_lost_while_rack_still_waits() {
    let mut b = Scoreboard::new();
    with_reordering_seen(&mut b);
    // Segment 2 missing, 3..=5 SACKed: 3000 bytes above, more than
    // (DupThresh - 1) * SMSS.
    b.on_ack(ms(105), sq(2000), &[(sq(3000), sq(6000))], None);
    let out = b.detect_loss(ms(105), RTT, RTT);
    check(&b);
    assert_eq!(out.newly_lost, 1000);
    assert_eq!(b.next_retransmit(MSS), Some((sq(2000), 1000)));
}

#[test]
fn dup_thresh_needs_more_than_two_segments_sacked_above() {
    let mut b = Scoreboard::new();
    with_reordering_seen(&mut b);
    // Two SACKed above the hole: not enough; RACK waits reo_wnd (25 ms
    // since reordering was seen) from segment 2's send at 2 ms.
    b.on_ack(ms(105), sq(2000), &[(sq(3000), sq(5000))], None);
    let out = b.detect_loss(ms(105), RTT, RTT);
    assert_eq!(out.newly_lost, 0);
    assert_eq!(out.reorder_deadline, Some(ms(2 + 101 + 25)));
}

#[test]
fn dup_thresh_counts_discontiguous_runs() {
    let mut b = Scoreboard::new();
    b.on_transmit(sq(0), 1000, ms(0), Transmit::New).unwrap();
    for i in 0..6 {
        b.on_transmit(sq(1000 + i * 10), 10, ms(1), Transmit::New)
            .unwrap();
    }
    b.rack.note_reordering();
    // Three separate runs of 10 bytes above 0..1000: far fewer bytes than
    // 2 * SMSS, but DupThresh discontiguous runs.
    let blocks = [
        (sq(1010), sq(1020)),
        (sq(1030), sq(1040)),
        (sq(1050), sq(1060)),
    ];
    b.on_ack(ms(50), sq(0), &blocks, None);
    let out = b.detect_loss(ms(50), RTT, RTT);
    check(&b);
    // Segment 0 (three runs above) and 1000..1010 (three runs above) are
    // lost; 1020.. and 1040.. have fewer runs above them.
    assert_eq!(out.newly_lost, 1010);
    assert_eq!(b.next_retransmit(MSS), Some((sq(0), 1000)));
}

#[test]
fn deep_reordering_raises_dup_thresh() {
    let mut b = Scoreboard::new();
    send(&mut b, sq(0), 10, 0);
    // Segment 0 arrives after 1..=5: five segments deep.
    b.on_ack(ms(105), sq(0), &[(sq(1000), sq(6000))], None);
    let out = b.on_ack(ms(106), sq(6000), &[], None);
    assert!(out.reordering);
    assert_eq!(b.dup_thresh, 6);
    assert_eq!(b.una(), sq(6000));
}

#[test]
fn several_losses_in_one_window() {
    let mut b = Scoreboard::new();
    send(&mut b, sq(0), 20, 0);
    let holes = [2u32, 5, 9];
    let blocks: Vec<_> = [(0u32, 2u32), (3, 5), (6, 9), (10, 20)]
        .iter()
        .map(|&(a, z)| (sq(a * MSS), sq(z * MSS)))
        .collect();
    // First ACK: cumulative to 2000, then SACK of everything else.
    let out = b.on_ack(ms(120), sq(2000), &blocks[1..], None);
    check(&b);
    assert_eq!((out.acked, out.sacked), (2000, 15000));
    assert_eq!(b.in_flight(), 3000);
    let loss = b.detect_loss(ms(120), RTT, RTT);
    check(&b);
    assert_eq!(loss.newly_lost, 3000);
    assert_eq!(b.in_flight(), 0);
    for (k, &h) in holes.iter().enumerate() {
        assert_eq!(b.next_retransmit(MSS), Some((sq(h * MSS), MSS)));
        b.on_transmit(sq(h * MSS), MSS, ms(121), Transmit::Retransmit)
            .unwrap();
        check(&b);
        assert_eq!(b.in_flight(), (k as u32 + 1) * MSS);
    }
    assert_eq!(b.next_retransmit(MSS), None);
    assert_eq!(b.lost_bytes(), 3000);
    let out = b.on_ack(ms(221), sq(20_000), &[], None);
    check(&b);
    assert_eq!(out.acked, 18_000);
    assert!(b.is_empty());
    assert!(b.recovery.is_none());
}

#[test]
fn next_retransmit_is_at_most_mss_and_splits_on_retransmission() {
    let mut b = Scoreboard::new();
    send(&mut b, sq(0), 3, 0);
    b.on_rto(ms(500));
    assert_eq!(b.next_retransmit(0), None);
    assert_eq!(b.next_retransmit(400), Some((sq(0), 400)));
    b.on_transmit(sq(0), 400, ms(500), Transmit::Retransmit)
        .unwrap();
    check(&b);
    assert_eq!(b.next_retransmit(400), Some((sq(400), 400)));
    assert_eq!(b.in_flight(), 400);
    b.on_transmit(sq(400), 400, ms(500), Transmit::Retransmit)
        .unwrap();
    assert_eq!(b.next_retransmit(400), Some((sq(800), 200)));
    assert_eq!(
        states(&b)[..3],
        [
            (0, 400, SegState::Repaired),
            (400, 400, SegState::Repaired),
            (800, 200, SegState::Lost)
        ]
    );
    check(&b);
}

#[test]
fn rack_finds_a_lost_retransmission() {
    let mut b = Scoreboard::new();
    send(&mut b, sq(0), 6, 0);
    b.on_ack(ms(105), sq(0), &[(sq(1000), sq(4000))], None);
    assert_eq!(b.detect_loss(ms(105), RTT, RTT).newly_lost, 1000);
    b.on_transmit(sq(0), MSS, ms(105), Transmit::Retransmit)
        .unwrap();
    // New data sent after the retransmission is SACKed; the
    // retransmission is not.
    b.on_transmit(sq(6000), MSS, ms(110), Transmit::New)
        .unwrap();
    b.on_ack(ms(210), sq(0), &[(sq(4000), sq(7000))], None);
    check(&b);
    let out = b.detect_loss(ms(210), RTT, RTT);
    check(&b);
    // RACK.rtt 100 ms, reo_wnd 0 (in recovery, no reordering seen): the
    // retransmission sent at 105 is due at 205.
    assert_eq!(out.newly_lost, 1000);
    assert_eq!(b.next_retransmit(MSS), Some((sq(0), MSS)));
    assert_eq!(b.in_flight(), 0);
}

#[test]
fn spurious_retransmission_is_dsacked_and_widens_the_reordering_window() {
    let mut b = Scoreboard::new();
    send(&mut b, sq(0), 10, 0);
    b.on_ack(ms(100), sq(1000), &[], None);
    b.on_ack(ms(104), sq(1000), &[(sq(2000), sq(5000))], None);
    assert_eq!(b.detect_loss(ms(104), RTT, RTT).newly_lost, 1000);
    b.on_transmit(sq(1000), MSS, ms(104), Transmit::Retransmit)
        .unwrap();
    // The original was only late: it arrives and fills the hole.
    let out = b.on_ack(ms(105), sq(5000), &[], None);
    assert_eq!(out.acked, 4000);
    assert!(
        !out.reordering,
        "a retransmitted segment's ACK is ambiguous"
    );
    // Then the retransmission arrives: a DSACK below the ACK.
    let out = b.on_ack(ms(204), sq(5000), &[(sq(1000), sq(2000))], None);
    check(&b);
    assert!(out.dsack);
    assert_eq!((out.acked, out.sacked), (0, 0));
    assert_eq!(b.rack.reo_wnd_mult(), 2);
    // A second DSACK in the same round trip does not widen it again (and
    // is beyond what was retransmitted, so it is no DSACK at all).
    let out = b.on_ack(ms(205), sq(5000), &[(sq(1000), sq(2000))], None);
    assert!(!out.dsack);
    assert_eq!(b.rack.reo_wnd_mult(), 2);

    // Leave recovery, then lose one segment with one SACKed above it: the
    // window is now 2 * min_rtt / 4 = 50 ms.
    b.on_ack(ms(206), sq(10_000), &[], None);
    assert!(b.is_empty() && b.recovery.is_none());
    assert_eq!(b.rack.reo_wnd_mult(), 2, "16 recoveries to forget");
    send(&mut b, sq(10_000), 3, 300);
    b.on_ack(ms(401), sq(10_000), &[(sq(11_000), sq(12_000))], None);
    let out = b.detect_loss(ms(401), RTT, RTT);
    assert_eq!(out.newly_lost, 0);
    assert_eq!(out.reorder_deadline, Some(ms(300 + 100 + 50)));
    // SRTT caps it.
    let out = b.detect_loss(ms(401), RTT, Duration::from_millis(30));
    assert_eq!(out.reorder_deadline, Some(ms(300 + 100 + 30)));
}

#[test]
fn dsack_widening_lasts_sixteen_recoveries() {
    let mut r = rack::Rack::new();
    r.update_reo_wnd(sq(0), sq(100), true, false);
    assert_eq!(r.reo_wnd_mult(), 2);
    // Same round: no further widening.
    r.update_reo_wnd(sq(50), sq(200), true, false);
    assert_eq!(r.reo_wnd_mult(), 2);
    // Next round.
    r.update_reo_wnd(sq(100), sq(300), true, false);
    assert_eq!(r.reo_wnd_mult(), 3);
    for _ in 0..15 {
        r.update_reo_wnd(sq(400), sq(400), false, true);
        assert_eq!(r.reo_wnd_mult(), 3);
    }
    r.update_reo_wnd(sq(400), sq(400), false, true);
    assert_eq!(r.reo_wnd_mult(), 1);
    // The window is mult quarters of min_rtt, capped by SRTT, and zero with
    // no reordering seen once in recovery or past DupThresh.
    assert_eq!(r.reo_wnd(RTT, RTT, false, false), Duration::from_millis(25));
    assert_eq!(r.reo_wnd(RTT, RTT, true, false), Duration::ZERO);
    assert_eq!(r.reo_wnd(RTT, RTT, false, true), Duration::ZERO);
    r.note_reordering();
    assert_eq!(r.reo_wnd(RTT, RTT, true, true), Duration::from_millis(25));
    // Saturates rather than overflowing.
    for i in 0..300u32 {
        r.update_reo_wnd(sq(i * 10), sq(i * 10 + 5), true, false);
    }
    assert_eq!(r.reo_wnd_mult(), u8::MAX);
    assert_eq!(
        r.reo_wnd(RTT, Duration::from_secs(10), false, false),
        Duration::from_millis(25 * 255)
    );
}

#[test]
fn dsack_inside_the_second_block() {
    let mut b = Scoreboard::new();
    send(&mut b, sq(0), 5, 0);
    b.on_rto(ms(300));
    b.on_transmit(sq(2000), MSS, ms(300), Transmit::Retransmit)
        .unwrap();
    // Both copies of segment 2 arrived, with segment 3 beside it.
    let out = b.on_ack(
        ms(310),
        sq(0),
        &[(sq(2000), sq(3000)), (sq(2000), sq(4000))],
        None,
    );
    check(&b);
    assert!(out.dsack);
    assert_eq!(out.sacked, 2000);
}

#[test]
fn dsack_beyond_what_was_retransmitted_is_ignored() {
    let mut b = Scoreboard::new();
    send(&mut b, sq(0), 5, 0);
    b.on_ack(ms(100), sq(2000), &[], None);
    // Nothing was ever sent twice: a peer claiming duplicates is lying.
    let out = b.on_ack(ms(101), sq(2000), &[(sq(0), sq(1000))], None);
    assert!(!out.dsack);
    let out = b.on_ack(
        ms(101),
        sq(2000),
        &[(sq(3000), sq(3500)), (sq(3000), sq(4000))],
        None,
    );
    assert!(!out.dsack);
    assert_eq!(out.sacked, 1000);
    assert_eq!(b.rack.reo_wnd_mult(), 1);
}

#[test]
fn tail_loss_probe_repairs_a_loss() {
    let mut b = Scoreboard::new();
    send(&mut b, sq(0), 5, 0);
    b.on_ack(ms(103), sq(4000), &[], None);
    // The last segment is lost; the PTO fires and probes it.
    b.on_transmit(sq(4000), MSS, ms(300), Transmit::Probe)
        .unwrap();
    check(&b);
    // The original may still be in flight: both copies count.
    assert_eq!(b.in_flight(), 2000);
    b.on_tlp_sent(b.end(), true);
    // The probe's ACK: not yet telling (the original's ACK would look the
    // same); Linux waits for the ACK past TLP.end_seq.
    let out = b.on_ack(ms(400), sq(5000), &[], None);
    assert!(!out.tlp_loss);
    assert_eq!(out.rtt, None, "Karn: the segment was sent twice");
    send(&mut b, sq(5000), 1, 401);
    let out = b.on_ack(ms(501), sq(6000), &[], None);
    assert!(out.tlp_loss);
    assert!(b.tlp.is_none());
    // Only once.
    send(&mut b, sq(6000), 1, 502);
    assert!(!b.on_ack(ms(602), sq(7000), &[], None).tlp_loss);
}

#[test]
fn tail_loss_probe_dsacked_means_no_loss() {
    let mut b = Scoreboard::new();
    send(&mut b, sq(0), 5, 0);
    b.on_transmit(sq(4000), MSS, ms(300), Transmit::Probe)
        .unwrap();
    b.on_tlp_sent(sq(5000), true);
    // The originals were only slow; then the probe arrives as a duplicate.
    b.on_ack(ms(301), sq(5000), &[], None);
    let out = b.on_ack(ms(400), sq(5000), &[(sq(4000), sq(5000))], None);
    assert!(out.dsack && !out.tlp_loss);
    assert!(b.tlp.is_none());
    // A DSACK for the probe says nothing of reordering.
    assert_eq!(b.rack.reo_wnd_mult(), 1);
}

#[test]
fn tail_loss_probe_pure_dupack_means_no_loss() {
    let mut b = Scoreboard::new();
    send(&mut b, sq(0), 2, 0);
    b.on_transmit(sq(1000), MSS, ms(300), Transmit::Probe)
        .unwrap();
    b.on_tlp_sent(sq(2000), true);
    b.on_ack(ms(301), sq(2000), &[], None);
    let out = b.on_ack(ms(400), sq(2000), &[], None);
    assert!(!out.tlp_loss);
    assert!(b.tlp.is_none());
}

#[test]
fn tail_loss_probe_of_new_data_is_no_loss() {
    let mut b = Scoreboard::new();
    send(&mut b, sq(0), 2, 0);
    b.on_transmit(sq(2000), MSS, ms(300), Transmit::New)
        .unwrap();
    b.on_tlp_sent(sq(3000), false);
    let out = b.on_ack(ms(400), sq(3000), &[], None);
    assert!(!out.tlp_loss);
    assert!(b.tlp.is_none());
    // An episode outside (una, end] is ignored.
    b.on_tlp_sent(sq(3000), true);
    b.on_tlp_sent(sq(9000), true);
    assert!(b.tlp.is_none());
}

#[test]
fn rto_deems_everything_not_sacked_lost() {
    let mut b = Scoreboard::new();
    send(&mut b, sq(0), 8, 0);
    b.on_ack(ms(105), sq(1000), &[(sq(4000), sq(6000))], None);
    b.detect_loss(ms(105), RTT, RTT);
    b.on_transmit(sq(1000), MSS, ms(106), Transmit::Retransmit)
        .unwrap();
    b.on_transmit(sq(7000), MSS, ms(106), Transmit::Probe)
        .unwrap();
    b.on_tlp_sent(sq(8000), true);
    check(&b);
    b.on_rto(ms(1000));
    check(&b);
    assert_eq!(b.sacked_bytes(), 2000);
    assert_eq!(b.lost_bytes(), 5000);
    assert_eq!(b.in_flight(), 0);
    assert!(b.tlp.is_none());
    assert_eq!(b.next_retransmit(MSS), Some((sq(1000), MSS)));
    // Going back over all of it, in order, skipping what was SACKed.
    let mut sent = vec![];
    while let Some((s, len)) = b.next_retransmit(MSS) {
        b.on_transmit(s, len, ms(1000), Transmit::Retransmit)
            .unwrap();
        sent.push(s.0);
        check(&b);
    }
    assert_eq!(sent, [1000, 2000, 3000, 6000, 7000]);
    assert_eq!(b.in_flight(), 5000);
    // An RTO of an empty board is harmless.
    let mut e = Scoreboard::new();
    e.on_rto(ms(1));
    check(&e);
    assert!(e.recovery.is_none());
}

#[test]
fn karn_and_timestamps() {
    let mut b = Scoreboard::new();
    send(&mut b, sq(0), 3, 0);
    b.on_transmit(sq(0), MSS, ms(50), Transmit::Retransmit)
        .unwrap();
    // Only a retransmitted segment acked: no Karn sample ...
    assert_eq!(b.on_ack(ms(150), sq(1000), &[], None).rtt, None);
    // ... but a timestamp sample is the caller's to give.
    let ts = Some(Duration::from_millis(77));
    assert_eq!(b.on_ack(ms(151), sq(2000), &[], ts).rtt, ts);
    // On an ACK that only SACKs, the echo is of an older segment (RFC
    // 7323 §4.2): the SACKed segment's own time is the sample.
    send(&mut b, sq(3000), 1, 60);
    let out = b.on_ack(ms(160), sq(2000), &[(sq(3000), sq(4000))], ts);
    assert_eq!(out.rtt, Some(RTT));
}

#[test]
fn rack_ignores_ambiguous_acks_of_retransmissions() {
    let mut b = Scoreboard::new();
    send(&mut b, sq(0), 3, 0);
    b.detect_loss(ms(0), RTT, RTT);
    b.on_transmit(sq(2000), MSS, ms(90), Transmit::Retransmit)
        .unwrap();
    // SACKed 10 ms after the retransmission: faster than min_rtt, so the
    // ACK was for the original; RACK learns nothing.
    b.on_ack(ms(100), sq(0), &[(sq(2000), sq(3000))], None);
    assert_eq!(b.rack.latest(), None);
    // A timestamp echo older than the retransmission says the same.
    let mut b = Scoreboard::new();
    send(&mut b, sq(0), 3, 0);
    b.detect_loss(ms(0), Duration::from_millis(5), RTT);
    b.on_transmit(sq(2000), MSS, ms(90), Transmit::Retransmit)
        .unwrap();
    b.on_ack(
        ms(100),
        sq(0),
        &[(sq(2000), sq(3000))],
        Some(Duration::from_millis(98)),
    );
    assert_eq!(b.rack.latest(), None);
    // A consistent one is trusted.
    b.on_ack(
        ms(100),
        sq(0),
        &[(sq(1000), sq(3000))],
        Some(Duration::from_millis(99)),
    );
    assert_eq!(b.rack.latest(), Some((ms(1), sq(2000))));
    assert_eq!(b.rack.rtt(), Duration::from_millis(99));
}

#[test]
fn sack_marks_only_whole_segments() {
    let mut b = Scoreboard::new();
    send(&mut b, sq(0), 4, 0);
    let before = states(&b);
    let out = b.on_ack(
        ms(100),
        sq(0),
        &[(sq(1500), sq(2500)), (sq(3000), sq(3999))],
        None,
    );
    assert_eq!(out.sacked, 0);
    assert_eq!(states(&b), before, "never split by a peer");
    // Overlapping blocks count each byte once.
    let out = b.on_ack(
        ms(101),
        sq(0),
        &[
            (sq(1000), sq(3000)),
            (sq(2000), sq(4000)),
            (sq(1000), sq(4000)),
        ],
        None,
    );
    check(&b);
    assert_eq!(out.sacked, 3000);
    assert_eq!(b.sacked_bytes(), 3000);
}

#[test]
fn hostile_sack_blocks_change_nothing() {
    let base = sq(0xffff_f000);
    let mut b = Scoreboard::new();
    send(&mut b, base, 6, 0);
    b.on_ack(ms(100), base + 1000u32, &[], None);
    let snapshot = format!("{b:?}");
    let half = 1u32 << 31;
    let hostile: Vec<Vec<(SeqNumber, SeqNumber)>> = vec![
        vec![(base + 3000u32, base + 2000u32)],        // inverted
        vec![(base + 2000u32, base + 2000u32)],        // empty
        vec![(base + 6000u32, base + 7000u32)],        // beyond end
        vec![(base + 5000u32, base + 7000u32)],        // straddling end
        vec![(base - 5000u32, base - 4000u32)],        // below una, no DSACK
        vec![(base + 500u32, base + 3000u32)],         // straddling una
        vec![(base + 2000u32, base + 2000u32 + half)], // 2^31 long
        vec![(base + 2000u32 + half, base + 3000u32 + half)], // 2^31 away
        vec![(base + half, base)],
        vec![(sq(0), sq(u32::MAX))],
        vec![(base + 3000u32 + half, base + 3000u32)],
        // A fifth block is never read.
        vec![
            (base + 9000u32, base + 9001u32),
            (base + 9000u32, base + 9001u32),
            (base + 9000u32, base + 9001u32),
            (base + 9000u32, base + 9001u32),
            (base + 2000u32, base + 3000u32),
        ],
    ];
    for blocks in &hostile {
        let out = b.on_ack(ms(101), base + 1000u32, blocks, None);
        assert_eq!(out, AckOutcome::default(), "{blocks:?}");
        assert_eq!(format!("{b:?}"), snapshot, "{blocks:?}");
    }
    // ACKs outside [una, end] are ignored whole.
    for ack in [base, base + 7000u32, base + half, base + 1000u32 + half] {
        let out = b.on_ack(ms(102), ack, &[(base + 2000u32, base + 3000u32)], Some(RTT));
        assert_eq!(out, AckOutcome::default());
        assert_eq!(format!("{b:?}"), snapshot);
    }
    check(&b);
}

#[test]
fn caller_bugs_are_errors_and_change_nothing() {
    let mut b = Scoreboard::new();
    assert_eq!(
        b.on_transmit(sq(5), 0, ms(0), Transmit::New),
        Err(ScoreboardError::EmptyRange)
    );
    assert_eq!(
        b.on_transmit(sq(5), 10, ms(0), Transmit::Retransmit),
        Err(ScoreboardError::NotRecorded {
            start: sq(5),
            len: 10
        })
    );
    assert_eq!(
        b.on_transmit(sq(5), 1 << 31, ms(0), Transmit::New),
        Err(ScoreboardError::TooLarge)
    );
    b.on_transmit(sq(5), 10, ms(0), Transmit::New).unwrap();
    let snapshot = format!("{b:?}");
    assert_eq!(
        b.on_transmit(sq(16), 10, ms(0), Transmit::New),
        Err(ScoreboardError::NotAtEnd {
            start: sq(16),
            end: sq(15)
        })
    );
    for (start, len) in [
        (4, 2),
        (14, 2),
        (15, 1),
        (5, 11),
        (5, u32::MAX),
        (0x8000_0005, 1),
    ] {
        assert!(b
            .on_transmit(sq(start), len, ms(0), Transmit::Probe)
            .is_err());
    }
    assert_eq!(
        b.on_transmit(sq(15), i32::MAX as u32, ms(0), Transmit::New),
        Err(ScoreboardError::TooLarge)
    );
    assert_eq!(format!("{b:?}"), snapshot);
    // Up to just under 2^31 is fine.
    b.on_transmit(sq(15), i32::MAX as u32 - 10, ms(0), Transmit::New)
        .unwrap();
    check(&b);
    assert!(ScoreboardError::TooLarge.to_string().contains("2^31"));
}

#[test]
fn an_empty_board_restarts_anywhere() {
    let mut b = Scoreboard::new();
    send(&mut b, sq(100), 2, 0);
    b.on_ack(ms(100), sq(2100), &[], None);
    assert!(b.is_empty());
    send(&mut b, sq(0x9000_0000), 2, 200);
    assert_eq!(b.una(), sq(0x9000_0000));
    b.on_ack(
        ms(301),
        sq(0x9000_0000),
        &[(sq(0x9000_0000 + 1000), sq(0x9000_0000 + 2000))],
        None,
    );
    check(&b);
    assert_eq!(b.sacked_bytes(), 1000);
}

#[test]
fn wraps_around_2_pow_32() {
    let base = sq(u32::MAX - 2499);
    let mut b = Scoreboard::new();
    send(&mut b, base, 6, 0);
    assert_eq!(b.end(), sq(3500));
    // Hole at base + 1000 (just before the wrap), SACK across the wrap.
    let out = b.on_ack(ms(101), base + 1000u32, &[(base + 2000u32, sq(3500))], None);
    check(&b);
    assert_eq!((out.acked, out.sacked), (1000, 4000));
    assert_eq!(b.highest_sacked(), Some(sq(3500)));
    assert_eq!(b.detect_loss(ms(101), RTT, RTT).newly_lost, 1000);
    assert_eq!(b.next_retransmit(MSS), Some((base + 1000u32, MSS)));
    // Retransmit it in pieces that straddle nothing, then ack across.
    b.on_transmit(base + 1000u32, 500, ms(102), Transmit::Retransmit)
        .unwrap();
    b.on_transmit(base + 1500u32, 500, ms(102), Transmit::Retransmit)
        .unwrap();
    check(&b);
    let out = b.on_ack(ms(202), sq(3500), &[], None);
    assert_eq!(out.acked, 5000);
    assert!(b.is_empty());
    assert_eq!(b.una(), sq(3500));
}

/// The reference: one state per byte, and the set of segment starts.
#[derive(Clone)]
struct Model {
    una: SeqNumber,
    bytes: Vec<SegState>,
    starts: BTreeSet<u32>, // offsets from una... kept absolute via `origin`
    origin: SeqNumber,
}

impl Model {
    fn abs(&self, seq: SeqNumber) -> u32 {
        (seq - self.origin) as u32
    }
    fn end(&self) -> SeqNumber {
        self.una + self.bytes.len()
    }
    fn off(&self, seq: SeqNumber) -> usize {
        (seq - self.una) as u32 as usize
    }
    /// The segments as (start offset from una, len).
    fn segments(&self) -> Vec<(usize, usize)> {
        let una = self.abs(self.una);
        let starts: Vec<usize> = self.starts.iter().map(|&s| (s - una) as usize).collect();
        starts
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                (
                    s,
                    starts.get(i + 1).copied().unwrap_or(self.bytes.len()) - s,
                )
            })
            .collect()
    }
    fn count(&self, f: impl Fn(SegState) -> u32) -> u32 {
        self.bytes.iter().map(|&s| f(s)).sum()
    }
    fn pipe(&self) -> u32 {
        self.count(|s| match s {
            SegState::Sent | SegState::Repaired => 1,
            SegState::Resent => 2,
            SegState::Lost | SegState::Sacked => 0,
        })
    }
    fn split(&mut self, seq: SeqNumber) {
        if seq != self.end() {
            let a = self.abs(seq);
            self.starts.insert(a);
        }
    }
}

#[test]
fn matches_a_byte_model_under_random_operations() {
    // What the runs exercised, so that the model is known to bite.
    let (mut seen_lost, mut seen_sacked, mut dsacks, mut wrapped, mut reordered) =
        (0u64, 0u64, 0, false, 0);
    for seed in 0..40u64 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let origin = sq(u32::MAX - rng.gen_range(0..200_000));
        let mut b = Scoreboard::new();
        let mut m = Model {
            una: origin,
            bytes: vec![],
            starts: BTreeSet::new(),
            origin,
        };
        let mut now = 0u64;
        let (mut total_new, mut total_acked) = (0u64, 0u64);
        // The first transmission places the board.
        b.on_transmit(origin, MSS, ms(0), Transmit::New).unwrap();
        m.starts.insert(0);
        m.bytes
            .extend(std::iter::repeat_n(SegState::Sent, MSS as usize));
        total_new += u64::from(MSS);
        for step in 0..3000 {
            now += rng.gen_range(0..20);
            let t = ms(now);
            let ctx = format!("seed {seed} step {step}");
            match rng.gen_range(0..100) {
                0..=29 => {
                    let len = if rng.gen_ratio(1, 20) {
                        1
                    } else {
                        rng.gen_range(1..=1500)
                    };
                    if m.bytes.len() + len as usize <= 100_000 {
                        b.on_transmit(m.end(), len, t, Transmit::New).unwrap();
                        let a = m.abs(m.end());
                        m.starts.insert(a);
                        m.bytes
                            .extend(std::iter::repeat_n(SegState::Sent, len as usize));
                        total_new += u64::from(len);
                    } else {
                        assert!(b
                            .on_transmit(m.end() + 1u32, len, t, Transmit::New)
                            .is_err());
                    }
                }
                30..=44 => {
                    // A retransmission: NextSeg's, or any range.
                    let mss = rng.gen_range(1..=1500);
                    let expect = m.bytes.iter().position(|&s| s == SegState::Lost).map(|i| {
                        let (s, len) = *m
                            .segments()
                            .iter()
                            .find(|&&(s, len)| s <= i && i < s + len)
                            .unwrap();
                        assert_eq!(s, i, "{ctx}: a Lost byte starts its segment");
                        (m.una + s, (len as u32).min(mss))
                    });
                    assert_eq!(b.next_retransmit(mss), expect, "{ctx}");
                    let range = match expect {
                        Some(r) if rng.gen_ratio(3, 4) => Some(r),
                        _ if !m.bytes.is_empty() => {
                            let s = rng.gen_range(0..m.bytes.len());
                            let len = rng.gen_range(1..=(m.bytes.len() - s).min(3000));
                            Some((m.una + s, len as u32))
                        }
                        _ => None,
                    };
                    if let Some((s, len)) = range {
                        let kind = if rng.gen() {
                            Transmit::Retransmit
                        } else {
                            Transmit::Probe
                        };
                        b.on_transmit(s, len, t, kind).unwrap();
                        if kind == Transmit::Probe {
                            b.on_tlp_sent(b.end(), true);
                        }
                        m.split(s);
                        m.split(s + len);
                        let o = m.off(s);
                        for byte in &mut m.bytes[o..o + len as usize] {
                            *byte = byte.retransmitted();
                        }
                    }
                }
                45..=79 => {
                    let span = m.bytes.len();
                    let adv = if rng.gen_ratio(1, 3) {
                        0
                    } else {
                        rng.gen_range(0..=span.min(4000))
                    };
                    let ack = m.una + adv;
                    let segs = m.segments();
                    let mut blocks = vec![];
                    for _ in 0..rng.gen_range(0..=5) {
                        let block = match rng.gen_range(0..10) {
                            0..=6 if !segs.is_empty() => {
                                let i = rng.gen_range(0..segs.len());
                                let j = rng.gen_range(i..segs.len().min(i + 4));
                                (m.una + segs[i].0, m.una + segs[j].0 + segs[j].1)
                            }
                            7 => (SeqNumber(rng.gen()), SeqNumber(rng.gen())),
                            _ => {
                                let s = m.una + rng.gen_range(0..=span);
                                (s, s + rng.gen_range(0..2000u32))
                            }
                        };
                        blocks.push(block);
                    }
                    let ts = rng
                        .gen_ratio(1, 4)
                        .then(|| Duration::from_millis(rng.gen_range(0..300)));
                    let out = b.on_ack(t, ack, &blocks, ts);
                    // The model: cumulative part, then whole segments
                    // inside the first four blocks that lie in the window.
                    m.bytes.drain(..adv);
                    let una_abs = m.abs(ack);
                    m.starts = m.starts.split_off(&una_abs);
                    m.una = ack;
                    if !m.bytes.is_empty() {
                        m.starts.insert(una_abs);
                    }
                    let mut sacked = 0;
                    let segs = m.segments();
                    for &(s, e) in blocks.iter().take(4) {
                        if !(m.una.le(s) && s.lt(e) && e.le(m.end())) {
                            continue;
                        }
                        let (s, e) = (m.off(s), m.off(e));
                        for &(start, len) in &segs {
                            if start >= s && start + len <= e && m.bytes[start] != SegState::Sacked
                            {
                                sacked += len as u32;
                                m.bytes[start..start + len].fill(SegState::Sacked);
                            }
                        }
                    }
                    assert_eq!(out.acked, adv as u32, "{ctx}");
                    assert_eq!(out.sacked, sacked, "{ctx}");
                    total_acked += adv as u64;
                    seen_sacked += u64::from(out.sacked);
                    dsacks += u32::from(out.dsack);
                    reordered += u32::from(out.reordering);
                    wrapped |= adv > 0 && ack.0 < (ack - adv).0;
                }
                80..=94 => {
                    let min_rtt = Duration::from_millis(rng.gen_range(0..150));
                    let srtt = min_rtt + Duration::from_millis(rng.gen_range(0..100));
                    let before = m.bytes.clone();
                    let out = b.detect_loss(t, min_rtt, srtt);
                    if let Some(d) = out.reorder_deadline {
                        assert!(d > t, "{ctx}");
                    }
                    // Whatever changed went through "deemed lost", whole
                    // segments at a time, and adds up to newly_lost.
                    let mut newly = 0;
                    for seg in &b.segs {
                        let o = m.off(seg.start);
                        let range = o..o + seg.len as usize;
                        for (was, byte) in before[range.clone()].iter().zip(&mut m.bytes[range]) {
                            if *was != seg.state {
                                assert_eq!(was.marked_lost(), Some(seg.state), "{ctx}");
                                newly += 1;
                            }
                            *byte = seg.state;
                        }
                    }
                    assert_eq!(out.newly_lost, newly, "{ctx}");
                    seen_lost += u64::from(newly);
                }
                _ => {
                    b.on_rto(t);
                    for byte in &mut m.bytes {
                        if *byte != SegState::Sacked {
                            *byte = SegState::Lost;
                        }
                    }
                }
            }
            check(&b);
            assert_eq!(b.una(), m.una, "{ctx}");
            assert_eq!(b.end(), m.end(), "{ctx}");
            let starts: Vec<SeqNumber> = m.starts.iter().map(|&a| m.origin + a).collect();
            let board_starts: Vec<SeqNumber> = b.segs.iter().map(|s| s.start).collect();
            assert_eq!(board_starts, starts, "{ctx}");
            for seg in &b.segs {
                let o = m.off(seg.start);
                assert!(
                    m.bytes[o..o + seg.len as usize]
                        .iter()
                        .all(|&s| s == seg.state),
                    "{ctx}"
                );
            }
            assert_eq!(
                b.sacked_bytes(),
                m.count(|s| u32::from(s == SegState::Sacked)),
                "{ctx}"
            );
            assert_eq!(b.lost_bytes(), m.count(|s| u32::from(s.is_lost())), "{ctx}");
            assert_eq!(b.in_flight(), m.pipe(), "{ctx}");
            // Every byte sent is acked or still on the board; pipe plus what
            // is SACKed or lost, less second copies, is the board.
            assert_eq!(
                total_acked + u64::from((b.end() - b.una()) as u32),
                total_new,
                "{ctx}"
            );
            assert_eq!(
                u64::from(b.in_flight()) + u64::from(b.sacked_bytes()) + u64::from(b.lost_bytes())
                    - u64::from(m.count(|s| u32::from(s.has_retransmission()))),
                m.bytes.len() as u64,
                "{ctx}"
            );
        }
    }
    assert!(
        seen_lost > 100_000 && seen_sacked > 100_000,
        "{seen_lost} {seen_sacked}"
    );
    assert!(
        dsacks > 10 && reordered > 10 && wrapped,
        "{dsacks} {reordered} {wrapped}"
    );
}
