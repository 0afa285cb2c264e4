//! Scripted-peer tests of the engine's TCP, in the manner of packetdrill:
//! a hand-driven peer sends crafted segments at chosen simulated times and
//! each test states the segments the engine MUST answer with, citing the
//! RFC that says so. Sequence numbers are relative to the ISNs.
//!
//! Here: the handshake, SACK, RACK-TLP and the retransmission timeout.

mod script;

use script::*;

// ---------------------------------------------------------------- handshake

/// RFC 9293 3.5 / RFC 7323 2 / RFC 2018 2: our SYN offers MSS, SACK,
/// timestamps and window scale; the peer's SYN-ACK turns them on; the
/// window in a SYN is never scaled, every later one is, both ways.
#[test]
fn active_open_negotiates_every_option_and_scales_windows() {
    for v6 in [false, true] {
        let mut p = Peer::new(v6);
        let id = p.connect(opts());
        let syn = p.expect_that("SYN", |s| s.flags() == Flags::SYN);
        let mss = if v6 { 1440 } else { 1460 };
        assert_eq!(syn.h.mss, Some(mss), "{syn}");
        assert!(syn.h.sack_permitted, "{syn}");
        let (_, ecr) = syn.h.timestamp.expect("timestamps offered");
        assert_eq!(ecr, 0, "RFC 7323 3.2: TSecr of a SYN is zero");
        let shift = syn.h.window_scale.expect("window scale offered");
        assert!(shift >= 7, "{syn}");
        // RFC 7323 2.2: the SYN's window is unscaled.
        assert_eq!(syn.h.window, 65535, "{syn}");

        p.advance_ms(10);
        let mut sa = p.syn(1400, Some(3));
        sa.flags = SA;
        sa.ack = p.engine_isn + 1u32;
        sa.window = 1000; // 8000 bytes with the shift of 3
        sa.timestamp = Some((p.tsval(), p.ts_recent));
        p.inject(&sa, &[]);
        let ack = p.expect_that("ACK", |s| s.is_pure_ack());
        assert_eq!((ack.seq, ack.ack), (1, 1));
        let n = p.conn(id).negotiated();
        assert_eq!(
            (n.snd_wscale, n.rcv_wscale, n.sack, n.timestamps),
            (3, shift, true, true)
        );
        // Our window is scaled by our shift from now on.
        let buf = opts().recv_buffer;
        assert_eq!(
            usize::from(ack.h.window),
            (buf >> shift).min(65535),
            "{ack}"
        );
        // The peer's window is scaled by its shift: 8000 bytes may go, in
        // segments of MSS 1400 less 12 bytes of timestamps.
        p.write(id, &data(20_000));
        assert_fills_window(&p.take_all(), 8000, 1388);
        // RFC 7323 4.3: the ACK echoes the peer's TSval.
        assert_eq!(ack.h.timestamp.unwrap().1, sa.timestamp.unwrap().0);
    }
}

/// RFC 7323 2.2: a SYN-ACK without window scale turns scaling off both
/// ways, and our later windows are unscaled.
#[test]
fn no_window_scale_in_the_syn_ack_means_no_scaling() {
    let mut p = Peer::new(false);
    let id = p.connect(opts());
    p.expect("SYN");
    let mut sa = p.syn(1460, None);
    sa.flags = SA;
    sa.ack = p.engine_isn + 1u32;
    sa.window = 5000;
    p.inject(&sa, &[]);
    let ack = p.expect_that("ACK", |s| s.is_pure_ack());
    let n = p.conn(id).negotiated();
    assert_eq!((n.snd_wscale, n.rcv_wscale), (0, 0));
    assert_eq!(ack.h.window, 65535, "unscaled, capped at 64 KiB: {ack}");
    p.write(id, &data(20_000));
    assert_fills_window(&p.take_all(), 5000, 1448);
}

/// RFC 9293 3.5 (passive side): the SYN-ACK answers every option the SYN
/// offered, acknowledges SEG.SEQ + 1, echoes the TSval; the window scale
/// the peer sent applies to its later windows.
#[test]
fn passive_open_answers_the_syn_options() {
    for v6 in [false, true] {
        let mut p = Peer::new(v6);
        let l = p.listen(8, opts());
        let syn = p.syn(1200, Some(2));
        p.inject(&syn, &[]);
        let sa = p.expect_that("SYN-ACK", |s| s.flags() == SA);
        assert_eq!(sa.ack, 1);
        assert!(sa.h.mss.is_some() && sa.h.sack_permitted, "{sa}");
        let shift = sa.h.window_scale.expect("window scale answered");
        assert_eq!(sa.h.timestamp.unwrap().1, syn.timestamp.unwrap().0);
        assert_eq!(sa.h.window, 65535, "RFC 7323 2.2: unscaled: {sa}");
        p.expect_none("one SYN-ACK");
        // The handshake completes with a window of 1000 << 2.
        let mut ack = p.hdr(A, 1, 1);
        ack.window = 1000;
        p.inject(&ack, &[]);
        let id = p.accept(l).expect("accepted");
        let n = p.conn(id).negotiated();
        assert_eq!((n.snd_wscale, n.rcv_wscale, n.sack), (2, shift, true));
        assert_eq!(n.send_mss, 1200);
        p.write(id, &data(10_000));
        assert_fills_window(&p.take_all(), 4000, 1188);
    }
}

/// RFC 7323 2.2 / RFC 2018 / RFC 7323 3.2: a SYN without the options gets
/// a SYN-ACK without them.
#[test]
fn a_bare_syn_gets_a_bare_syn_ack() {
    let mut p = Peer::new(false);
    p.timestamps = false;
    p.listen(8, opts());
    let mut syn = p.hdr(Flags::SYN, 0, 0);
    syn.window = 8192;
    p.inject(&syn, &[]);
    let sa = p.expect_that("SYN-ACK", |s| s.flags() == SA);
    assert_eq!(sa.h.window_scale, None, "{sa}");
    assert!(!sa.h.sack_permitted, "{sa}");
    assert_eq!(sa.h.timestamp, None, "{sa}");
    assert!(sa.h.mss.is_some());
}

// --------------------------------------------------------------------- SACK

/// RFC 2018 4 / RFC 5681 4.2: out-of-order data gets an immediate
/// duplicate ACK whose first block holds the segment that triggered it,
/// the rest the most recent first; filling the hole ACKs at once.
#[test]
fn out_of_order_data_is_sacked_latest_block_first() {
    let mut p = Peer::new(false);
    let (_, id) = p.passive_open(opts(), Some(7));
    let d = data(1000);
    p.send(PA, 1, 1, &d);
    p.expect_that("ACK of in-order data", |s| s.is_pure_ack() && s.ack == 1001);
    // Hole at [1001, 2001).
    p.send(PA, 2001, 1, &d);
    let a = p.expect_that("duplicate ACK", |s| s.is_pure_ack() && s.ack == 1001);
    assert_eq!(a.sacks(p.peer_isn), vec![(2001, 3001)]);
    p.send(PA, 4001, 1, &d);
    let a = p.expect_that("duplicate ACK", |s| s.is_pure_ack() && s.ack == 1001);
    assert_eq!(a.sacks(p.peer_isn), vec![(4001, 5001), (2001, 3001)]);
    p.send(PA, 6001, 1, &d);
    let a = p.expect("duplicate ACK");
    assert_eq!(
        a.sacks(p.peer_isn),
        vec![(6001, 7001), (4001, 5001), (2001, 3001)]
    );
    // RFC 2018 4: the block of the newest segment first, even when it
    // extends an older one.
    p.send(PA, 3001, 1, &d);
    let a = p.expect("duplicate ACK");
    assert_eq!(a.sacks(p.peer_isn)[0], (2001, 5001), "{a}");
    p.expect_none("one ACK per segment");
    // The hole fills: everything up to 5001 is acknowledged at once.
    p.send(PA, 1001, 1, &d);
    let a = p.expect_that("ACK of the filled hole", |s| s.ack == 5001);
    assert_eq!(a.sacks(p.peer_isn), vec![(6001, 7001)]);
    assert_eq!(p.read_all(id).len(), 5000);
}

/// RFC 5681 4.2: out-of-order segments that arrive together (bindings
/// take a ring's worth of frames per wakeup) get one duplicate ACK each,
/// sent as each is taken, with the SACK blocks as they stood then; the
/// segment that fills the hole gets its own. One ACK for the whole batch
/// would leave the sender blind to the loss if that ACK were lost.
#[test]
fn out_of_order_segments_taken_together_get_an_ack_each() {
    let mut p = Peer::new(false);
    let (_, id) = p.passive_open(opts(), Some(7));
    let d = data(1000);
    // [1, 1001) is lost; three segments after it arrive in one batch.
    let batch: Vec<_> = [1001, 2001, 3001]
        .iter()
        .map(|&seq| (p.hdr(PA, seq, 1), d.clone()))
        .collect();
    p.inject_batch(&batch);
    let acks = p.take_all();
    assert_eq!(acks.len(), 3, "one duplicate ACK per segment: {acks:?}");
    for (i, a) in acks.iter().enumerate() {
        assert!(a.is_pure_ack() && a.ack == 1, "{a}");
        let end = 2001 + 1000 * i as i32;
        assert_eq!(a.sacks(p.peer_isn), vec![(1001, end)], "{a}");
    }
    // The hole fills in a batch with in-order data behind it: the filling
    // segment is answered at once, the in-order one with the output after.
    let batch = vec![(p.hdr(PA, 1, 1), d.clone()), (p.hdr(PA, 4001, 1), d)];
    p.inject_batch(&batch);
    let acks = p.take_all();
    assert_eq!(acks[0].ack, 4001, "the filled hole: {acks:?}");
    assert!(acks[0].sacks(p.peer_isn).is_empty(), "{acks:?}");
    assert_eq!(acks.last().unwrap().ack, 5001, "{acks:?}");
    assert_eq!(p.read_all(id).len(), 5000);
}

/// RFC 2883 4: a duplicate segment is reported in the first SACK block
/// (a D-SACK), below the cumulative ACK or inside a SACKed block.
#[test]
fn duplicates_are_reported_with_dsack() {
    let mut p = Peer::new(false);
    p.passive_open(opts(), Some(7));
    let d = data(1000);
    p.send(PA, 1, 1, &d);
    p.expect("ACK");
    // RFC 2883 4.1.1: a duplicate below the cumulative ACK.
    p.send(PA, 1, 1, &d);
    let a = p.expect_that("D-SACK", |s| s.is_pure_ack() && s.ack == 1001);
    assert_eq!(a.sacks(p.peer_isn), vec![(1, 1001)]);
    // RFC 2883 4.1.2: a duplicate of out-of-order data: the D-SACK block,
    // then the block that holds it.
    p.send(PA, 2001, 1, &d);
    p.expect("duplicate ACK");
    p.send(PA, 2001, 1, &d);
    let a = p.expect("D-SACK");
    assert_eq!(a.sacks(p.peer_isn)[0], (2001, 3001), "{a}");
    // The D-SACK is reported once.
    p.send(PA, 4001, 1, &d);
    let a = p.expect("duplicate ACK");
    assert_eq!(a.sacks(p.peer_isn), vec![(4001, 5001), (2001, 3001)]);
}

/// Established by [`Peer::active_open`] with a 50 ms RTT; the engine
/// writes `n` full segments (MSS 1448) which all go at once.
fn sender(n: usize) -> (Peer, capnet_tcpip::tcp::TcpId, Vec<script::Seg>) {
    let mut p = Peer::new(false);
    let id = p.active_open(opts(), Some(7));
    p.advance_ms(5);
    p.write(id, &data(n * 1448));
    let segs = p.take_all();
    assert_eq!(segs.len(), n, "{segs:?}");
    assert!(segs.iter().all(|s| s.len() == 1448));
    (p, id, segs)
}

/// An ACK of everything before `ack` with SACK blocks (relative to the
/// engine's ISN).
fn sack(p: &mut Peer, ack: i64, blocks: &[(i64, i64)]) {
    let mut h = p.hdr(A, 1, ack);
    for (a, b) in blocks {
        h.push_sack((p.engine_isn + (*a as u32), p.engine_isn + (*b as u32)));
    }
    p.inject(&h, &[]);
}

/// RFC 6675 5 (IsLost with DupThresh 3) and NextSeg rule 1: three
/// segments SACKed above a hole make it lost; only the hole is sent again,
/// at once and before any new data, and nothing SACKed is resent.
#[test]
fn sacked_holes_are_retransmitted_and_nothing_else() {
    let (mut p, id, segs) = sender(8);
    let seq = |i: usize| i64::from(segs[i].seq);
    p.advance_ms(50);
    // Segment 0 arrived; 1 is lost; 2, 3, 4 arrive.
    sack(&mut p, seq(1), &[]);
    let mut sent = p.take_all();
    for i in 2..5 {
        sack(&mut p, seq(1), &[(seq(2), seq(i) + 1448)]);
        sent.extend(p.take_all());
    }
    let end = segs[7].seq + 1448;
    let retransmits: Vec<_> = sent.iter().filter(|s| s.seq < end).collect();
    assert_eq!(retransmits.len(), 1, "{sent:?}");
    assert_eq!(retransmits[0].seq, segs[1].seq);
    assert_eq!(retransmits[0].len(), 1448);
    // The rest of the hole-free flight is not resent as more SACKs come.
    for i in 5..8 {
        sack(&mut p, seq(1), &[(seq(2), seq(i) + 1448)]);
    }
    let later = p.take_all();
    assert!(
        later.iter().all(|s| s.seq >= end),
        "only new data: {later:?}"
    );
    assert_eq!(p.conn(id).counters.retransmits, 1);
    // The retransmission is acknowledged: recovery ends.
    p.advance_ms(50);
    sack(&mut p, i64::from(end), &[]);
    assert_eq!(p.conn(id).counters.retransmits, 1);
}

/// RFC 6675 NextSeg: with two holes, both are retransmitted, lowest first,
/// and only them.
#[test]
fn two_holes_are_retransmitted_lowest_first() {
    let (mut p, id, segs) = sender(10);
    let seq = |i: usize| i64::from(segs[i].seq);
    p.advance_ms(50);
    // 0 and 3 lost; 1, 2, 4..9 SACKed.
    let mut sent = Vec::new();
    for i in 4..10 {
        sack(&mut p, seq(0), &[(seq(4), seq(i) + 1448), (seq(1), seq(3))]);
        sent.extend(p.take_all());
    }
    let old: Vec<i32> = sent
        .iter()
        .filter(|s| s.seq < segs[9].seq + 1448)
        .map(|s| s.seq)
        .collect();
    assert_eq!(old, vec![segs[0].seq, segs[3].seq], "{sent:?}");
    assert_eq!(p.conn(id).counters.retransmits, 2);
}

// ----------------------------------------------------------------- RACK-TLP

/// RFC 8985 7.2-7.3: when the tail of a flight is lost, a probe (the last
/// segment again, no new data being there) goes after about 2*SRTT rather
/// than waiting for the RTO; the SACK of the probe lets RACK find the
/// other lost segment, which is sent again at once (RFC 8985 7.4.2).
#[test]
fn a_tail_loss_gets_a_probe_after_two_srtt() {
    let (mut p, id, segs) = sender(4);
    let seq = |i: usize| i64::from(segs[i].seq);
    p.advance_ms(50);
    // 0 and 1 arrive; 2 and 3 are lost.
    sack(&mut p, seq(2), &[]);
    p.expect_none("no retransmission yet");
    let acked_at = p.now;
    let probe = p.wait_segment(Duration::from_secs(5)).expect("a probe");
    let waited = probe.at.since(acked_at);
    assert_eq!(probe.seq, segs[3].seq, "the last segment: {probe}");
    assert!(
        waited >= Duration::from_millis(90) && waited <= Duration::from_millis(120),
        "PTO = 2 * SRTT (50 ms): waited {waited:?}"
    );
    let next = p.conn(id).next_deadline();
    assert!(next.is_some_and(|t| t > probe.at), "the RTO is later");
    assert_eq!(p.conn(id).counters.tail_loss_probes, 1);
    assert_eq!(p.conn(id).counters.timeouts, 0);
    // The probe arrives: the SACK of 3 shows 2 lost, resent now.
    p.advance_ms(50);
    sack(&mut p, seq(2), &[(seq(3), seq(3) + 1448)]);
    let r = p.wait_segment(Duration::from_millis(30)).expect("2 again");
    assert_eq!(r.seq, segs[2].seq, "{r}");
    assert_eq!(p.conn(id).counters.timeouts, 0);
}

/// RFC 8985 7.2: the probe timer restarts after new data is sent, so it
/// counts the flight as it is after the burst. A flight of two segments
/// that begins with nothing in flight (the window refilled after a full
/// ACK, or a response) and is lost whole gets a probe after 2*SRTT: the
/// allowance for a delayed ACK (WCDelAckT) is for a flight of one, and
/// with it the probe would come after the RTO, that is never.
#[test]
fn a_flight_of_two_sent_from_idle_gets_a_probe_after_two_srtt() {
    let (mut p, id, first) = sender(1);
    p.advance_ms(50);
    sack(&mut p, i64::from(first[0].seq) + 1448, &[]);
    p.expect_none("all acknowledged");
    p.write(id, &data(2 * 1448));
    let segs = p.take_all();
    assert_eq!(segs.len(), 2, "{segs:?}");
    // Both are lost.
    let probe = p.wait_segment(Duration::from_secs(5)).expect("a probe");
    let waited = probe.at.since(segs[1].at);
    assert_eq!(probe.seq, segs[1].seq, "the last segment: {probe}");
    assert!(
        waited >= Duration::from_millis(90) && waited <= Duration::from_millis(120),
        "PTO = 2 * SRTT (50 ms), not the RTO (250 ms): waited {waited:?}"
    );
    assert_eq!(p.conn(id).counters.tail_loss_probes, 1);
    assert_eq!(p.conn(id).counters.timeouts, 0);
    // The probe arrives: its SACK shows the first lost, resent at once.
    p.advance_ms(50);
    let seq = |i: usize| i64::from(segs[i].seq);
    sack(&mut p, seq(0), &[(seq(1), seq(1) + 1448)]);
    let r = p.wait_segment(Duration::from_millis(30)).expect("0 again");
    assert_eq!(r.seq, segs[0].seq, "{r}");
    assert_eq!(p.conn(id).counters.timeouts, 0);
}

/// RFC 8985 7.2, as Linux's tcp_schedule_loss_probe: on a sub-millisecond
/// path the probe waits 2*SRTT and a timer's slack (2 ms), not a floor of
/// 10 ms (30 round trips here) during which the flight stands still.
#[test]
fn a_tail_loss_on_a_short_path_is_probed_within_a_few_ms() {
    let mut p = Peer::new(false);
    p.rtt = Duration::from_micros(300);
    let id = p.active_open(opts(), Some(7));
    p.write(id, &data(4 * 1448));
    let segs = p.take_all();
    assert_eq!(segs.len(), 4, "{segs:?}");
    p.advance(Duration::from_micros(300));
    // 0 and 1 arrive; the ACK of the rest is lost.
    sack(&mut p, i64::from(segs[2].seq), &[]);
    p.expect_none("no retransmission yet");
    let acked_at = p.now;
    let probe = p.wait_segment(Duration::from_secs(1)).expect("a probe");
    let waited = probe.at.since(acked_at);
    assert_eq!(probe.seq, segs[3].seq, "the last segment: {probe}");
    // Timestamp samples tick in milliseconds: SRTT is about one.
    assert!(
        waited <= Duration::from_millis(5),
        "PTO = 2 * SRTT + 2 ms: waited {waited:?}"
    );
    assert_eq!(p.conn(id).counters.tail_loss_probes, 1);
    assert_eq!(p.conn(id).counters.timeouts, 0);
}

/// RFC 8985 6.2: a segment sent before one now SACKed is lost once
/// RACK.rtt + RACK.reo_wnd (min_RTT / 4) has passed since it was sent:
/// not at the SACK (that may be reordering), but a reorder window later.
#[test]
fn rack_marks_a_loss_after_the_reordering_window() {
    let (mut p, id, segs) = sender(4);
    let seq = |i: usize| i64::from(segs[i].seq);
    p.advance_ms(50);
    sack(&mut p, seq(1), &[]);
    // 1 is missing; 2 is SACKed: one SACKed segment is below DupThresh.
    sack(&mut p, seq(1), &[(seq(2), seq(3))]);
    let sacked_at = p.now;
    p.expect_none("within the reordering window");
    let r = p
        .wait_segment(Duration::from_millis(100))
        .expect("the retransmission of 1");
    assert_eq!(r.seq, segs[1].seq, "{r}");
    let waited = r.at.since(sacked_at);
    assert!(
        waited >= Duration::from_millis(5) && waited <= Duration::from_millis(20),
        "reo_wnd = min_RTT / 4 = 12.5 ms: waited {waited:?}"
    );
    p.expect_none("only the lost segment");
    assert_eq!(p.conn(id).counters.timeouts, 0);
}

// ---------------------------------------------------------------------- RTO

/// RFC 6298 2.1 and 5.5, Linux tcp_syn_retries = 6: the SYN is resent
/// after 1 s, then 2, 4, 8, 16, 32 s; after 64 s more the connection ends
/// with a timeout.
#[test]
fn syn_retries_back_off_then_time_out() {
    let mut p = Peer::new(false);
    let id = p.connect(opts());
    let first = p.expect("SYN");
    let mut last = first.at;
    for gap in [1u64, 2, 4, 8, 16, 32] {
        let s = p.wait_segment(Duration::from_secs(100)).expect("a SYN");
        assert_eq!(s.flags(), Flags::SYN);
        assert_eq!(s.seq, 0);
        let waited = s.at.since(last);
        assert!(
            waited >= Duration::from_secs(gap) && waited <= Duration::from_millis(gap * 1000 + 2),
            "gap {gap} s, waited {waited:?}"
        );
        last = s.at;
    }
    assert!(p.wait_segment(Duration::from_secs(63)).is_none());
    assert_eq!(p.conn(id).state(), State::SynSent);
    p.advance(Duration::from_millis(1_100));
    p.expect_none("no more SYNs");
    assert_eq!(p.conn(id).state(), State::Closed);
    assert_eq!(p.conn(id).error(), Some(ConnError::TimedOut));
}

/// RFC 6298 2.4 and 5.5: after an RTT sample (50 ms) the RTO is SRTT +
/// max(4 RTTVAR, 200 ms) = 250 ms (Linux floors the variance term at
/// TCP_RTO_MIN, so no RTO is below 200 ms); unanswered, it doubles.
#[test]
fn data_rto_has_a_200ms_floor_and_doubles() {
    let mut p = Peer::new(false);
    let id = p.active_open(opts(), Some(7));
    p.advance_ms(5);
    p.write(id, &data(100));
    let first = p.expect("data");
    let mut last = first.at;
    for gap in [250u64, 500, 1000, 2000] {
        let s = p
            .wait_segment(Duration::from_secs(10))
            .expect("a retransmission");
        assert_eq!((s.seq, s.len()), (1, 100), "{s}");
        let waited = s.at.since(last);
        assert!(
            waited >= Duration::from_millis(gap) && waited <= Duration::from_millis(gap + 3),
            "gap {gap} ms, waited {waited:?}"
        );
        last = s.at;
    }
    assert_eq!(p.conn(id).counters.timeouts, 4);
    // An ACK ends it and resets the backoff (RFC 6298 5.7 keeps the RTO
    // only until a new sample).
    p.send(A, 1, 101, &[]);
    p.write(id, &data(100));
    let s = p.expect("new data");
    let r = p
        .wait_segment(Duration::from_secs(10))
        .expect("a retransmission");
    assert!(r.at.since(s.at) <= Duration::from_millis(1_000), "{r}");
}

/// RFC 6298 2.1 / 5.7: before any RTT sample the RTO is 1 s; the SYN was
/// resent and, without timestamps, the handshake gives no sample: the
/// first data RTO is 3 s (RFC 6298 5.7, as Linux's tcp_init_transfer).
#[test]
fn no_rtt_sample_after_a_resent_syn_means_a_3s_rto() {
    let mut p = Peer::new(false);
    p.timestamps = false;
    let id = p.connect(opts());
    p.expect("SYN");
    let again = p.wait_segment(Duration::from_secs(2)).expect("SYN again");
    assert_eq!(again.flags(), Flags::SYN);
    p.advance_ms(10);
    let mut sa = p.syn(1460, Some(7));
    sa.flags = SA;
    sa.ack = p.engine_isn + 1u32;
    p.inject(&sa, &[]);
    p.expect_that("ACK", |s| s.is_pure_ack());
    p.write(id, &data(100));
    let s = p.expect("data");
    let r = p
        .wait_segment(Duration::from_secs(10))
        .expect("a retransmission");
    let waited = r.at.since(s.at);
    assert!(
        waited >= Duration::from_secs(3) && waited <= Duration::from_millis(3_002),
        "waited {waited:?}"
    );
}
