//! Scripted-peer tests of the engine's TCP, in the manner of packetdrill:
//! a hand-driven peer sends crafted segments at chosen simulated times and
//! each test states the segments the engine MUST answer with, citing the
//! RFC that says so. Sequence numbers are relative to the ISNs.

mod script;

use capnet_tcpip::tcp::{ConnError, Options, State};
use capnet_wire::tcp::Flags;
use script::Peer;
use std::time::Duration;

const A: Flags = Flags::ACK;
const PA: Flags = Flags(Flags::PSH.0 | Flags::ACK.0);

const SA: Flags = Flags(Flags::SYN.0 | Flags::ACK.0);
const RA: Flags = Flags(Flags::RST.0 | Flags::ACK.0);
const RST: Flags = Flags::RST;

/// The segments fill the peer's window `wnd` in segments of at most
/// `mss`, stopping short of a runt at its edge (RFC 9293 3.8.6.2.1, sender
/// SWS avoidance; Linux's `tcp_snd_wnd_test`).
#[track_caller]
fn assert_fills_window(segs: &[script::Seg], wnd: usize, mss: usize) {
    let sent: usize = segs.iter().map(|s| s.len()).sum();
    assert!(segs.iter().all(|s| s.len() <= mss), "MSS {mss}: {segs:?}");
    assert!(sent <= wnd && sent + mss > wnd, "window {wnd}: {segs:?}");
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

/// Options with a small receive buffer (and so a small window scale).
fn opts() -> Options {
    Options::default()
}

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

// --------------------------------------------------------------------- PAWS

/// RFC 7323 5.3 R1-R3: a segment whose TSval is older than TS.Recent is a
/// wrapped-around old duplicate: dropped (its data not taken) and ACKed.
#[test]
fn paws_drops_an_old_timestamp_and_acks() {
    let mut p = Peer::new(false);
    let (_, id) = p.passive_open(opts(), Some(7));
    p.send(PA, 1, 1, &data(100));
    p.expect_that("ACK", |s| s.ack == 101);
    let mut old = p.hdr(PA, 101, 1);
    old.timestamp = Some((p.tsval().wrapping_sub(1_000), p.ts_recent));
    p.inject(&old, &data(100));
    let a = p.expect_that("ACK of nothing new", |s| s.is_pure_ack());
    assert_eq!(a.ack, 101, "{a}");
    assert_eq!(p.read_all(id).len(), 100);
    assert_eq!(p.conn(id).counters.paws_drops, 1);
    // A current TSval is taken.
    p.send(PA, 101, 1, &data(100));
    p.expect_that("ACK", |s| s.ack == 201);
}

// ----------------------------------------------------------------- RFC 5961

/// RFC 5961 3.2: a RST in the window but not at RCV.NXT gets a challenge
/// ACK and resets nothing; one exactly at RCV.NXT resets.
#[test]
fn an_inexact_rst_is_challenged_an_exact_one_resets() {
    let mut p = Peer::new(false);
    let (_, id) = p.passive_open(opts(), Some(7));
    p.send(RST, 1000, 0, &[]);
    let c = p.expect_that("challenge ACK", |s| s.is_pure_ack());
    assert_eq!((c.seq, c.ack), (1, 1), "<SEQ=SND.NXT><ACK=RCV.NXT>: {c}");
    assert_eq!(p.conn(id).state(), State::Established);
    // Out of the window entirely: dropped silently (RFC 5961 3.2 1).
    p.send(RST, 100_000_000, 0, &[]);
    p.expect_none("out-of-window RST");
    p.send(RST, 1, 0, &[]);
    p.expect_none("an exact RST is not answered");
    assert_eq!(p.conn(id).state(), State::Closed);
    assert_eq!(p.conn(id).error(), Some(ConnError::Reset));
}

/// RFC 5961 4.2: a SYN in a synchronized state, in window or not, gets a
/// challenge ACK; the connection lives.
#[test]
fn a_syn_on_an_established_connection_is_challenged() {
    let mut p = Peer::new(false);
    let (_, id) = p.passive_open(opts(), Some(7));
    for seq in [1i64, 500, -100_000] {
        let syn = p.syn(1460, Some(7));
        let mut syn = syn;
        syn.seq = p.peer_isn + (seq as u32);
        p.inject(&syn, &[]);
        let c = p.expect_that("challenge ACK", |s| s.is_pure_ack());
        assert_eq!((c.seq, c.ack), (1, 1), "{c}");
        p.expect_none("no RST, no SYN-ACK");
        assert_eq!(p.conn(id).state(), State::Established);
        p.advance_ms(1_000);
    }
}

/// RFC 5961 5.2 / RFC 9293 3.10.7.4: an ACK of data never sent is ACKed
/// and dropped (its data is not taken).
#[test]
fn an_ack_of_data_never_sent_is_acked_and_dropped() {
    let mut p = Peer::new(false);
    let (_, id) = p.passive_open(opts(), Some(7));
    p.send(PA, 1, 5000, &data(100));
    let a = p.expect_that("ACK", |s| s.is_pure_ack());
    assert_eq!((a.seq, a.ack), (1, 1), "{a}");
    assert_eq!(p.conn(id).readable(), 0);
    assert_eq!(p.conn(id).state(), State::Established);
}

/// RFC 5961 7: challenge ACKs are rate limited (10 a second per
/// connection here; Linux has a global limit, tcp_challenge_ack_limit).
#[test]
fn challenge_acks_are_rate_limited() {
    let mut p = Peer::new(false);
    let (_, id) = p.passive_open(opts(), Some(7));
    p.advance(Duration::from_millis(1_000 - p.now.millis() % 1_000 + 10));
    for i in 0..50 {
        p.send(RST, 1000 + i, 0, &[]);
    }
    assert_eq!(p.take_all().len(), 10);
    // The next second has a new allowance.
    p.advance_ms(1_000);
    p.send(RST, 1000, 0, &[]);
    p.expect_that("challenge ACK", |s| s.is_pure_ack());
    assert_eq!(p.conn(id).state(), State::Established);
}

// -------------------------------------------------------------- SYN cookies

/// RFC 4987 3.6: past the backlog of half-open connections a listener
/// answers with SYN cookies, so SYN-ACKs still come; the ACK that returns
/// a valid cookie makes an accepted connection with the MSS from the
/// cookie's table; a forged ACK gets a RST; with timestamps, the window
/// scale and SACK survive through the cookie.
#[test]
fn syn_cookies_answer_a_flood_and_vouch_for_the_final_ack() {
    for v6 in [false, true] {
        let mut p = Peer::new(v6);
        let l = p.listen(1, opts());
        let mut synacks = Vec::new();
        for port in 0..20u16 {
            p.remote.set_port(20_000 + port);
            let syn = p.syn(1400, Some(5));
            p.inject(&syn, &[]);
            let sa = p.expect_that("a SYN-ACK", |s| s.flags() == SA);
            assert_eq!(sa.h.ack, syn.seq + 1u32, "{sa}");
            synacks.push(sa);
        }
        assert!(p.stack.tcp.counters.syn_cookies_sent >= 19);
        // A forged ACK (a cookie that was never sent) gets a RST.
        p.remote.set_port(20_005);
        let sa = synacks[5].clone();
        let mut forged = p.hdr(A, 1, 0);
        forged.ack = sa.h.seq + 2u32;
        forged.timestamp = Some((p.tsval(), sa.h.timestamp.unwrap().0));
        p.inject(&forged, &[]);
        let r = p.expect_that("RST", |s| s.flags() == RST);
        assert_eq!(r.h.seq, forged.ack, "{r}");
        assert!(p.accept(l).is_none());
        // The real answer to a cookie SYN-ACK.
        p.remote.set_port(20_007);
        let sa = synacks[7].clone();
        let mut ack = p.hdr(A, 1, 0);
        ack.ack = sa.h.seq + 1u32;
        ack.window = 1000;
        ack.timestamp = Some((p.tsval(), sa.h.timestamp.unwrap().0));
        p.inject(&ack, &[]);
        p.expect_none("the handshake is done");
        let id = p.accept(l).expect("a connection from the cookie");
        let c = p.conn(id);
        assert_eq!(c.flow.remote.port(), 20_007);
        let n = c.negotiated();
        // Linux's tables: 536, 1300, 1440, 1460 (v4); 1220, 1420, 1440,
        // 8940 (v6): the largest entry not above the peer's 1400.
        let mss = if v6 { 1220 } else { 1300 };
        assert_eq!(n.send_mss, mss);
        assert_eq!(n.snd_wscale, 5, "the window scale survives");
        assert!(n.sack && n.timestamps, "{n:?}");
        // The window is scaled by the peer's shift: 1000 << 5.
        p.engine_isn = sa.h.seq;
        p.write(id, &data(100_000));
        let segs = p.take_all();
        assert!(segs.iter().all(|s| s.len() <= mss - 12), "{segs:?}");
        let sent: usize = segs.iter().map(|s| s.len()).sum();
        assert!(sent > 10_000, "more than an unscaled 1000: {sent}");
    }
}

/// RFC 4987 3.6 without timestamps: the cookie keeps only the MSS, so
/// neither SACK nor window scaling is on.
#[test]
fn a_syn_cookie_without_timestamps_keeps_only_the_mss() {
    let mut p = Peer::new(false);
    p.timestamps = false;
    let l = p.listen(1, opts());
    let mut sas = Vec::new();
    for port in 0..3u16 {
        p.remote.set_port(30_000 + port);
        let syn = p.syn(1460, Some(7));
        p.inject(&syn, &[]);
        sas.push(p.expect_that("SYN-ACK", |s| s.flags() == SA));
    }
    let sa = sas[2].clone();
    assert_eq!(sa.h.window_scale, None, "{sa}");
    p.remote.set_port(30_002);
    let mut ack = p.hdr(A, 1, 0);
    ack.ack = sa.h.seq + 1u32;
    p.inject(&ack, &[]);
    let id = p.accept(l).expect("accepted");
    let n = p.conn(id).negotiated();
    assert_eq!(
        (n.send_mss, n.sack, n.timestamps, n.snd_wscale),
        (1460, false, false, 0)
    );
}

/// A full accept queue drops new SYNs silently (Linux): no SYN-ACK, so no
/// promise that would have to be broken by a reset later.
#[test]
fn a_full_accept_queue_drops_syns_silently() {
    let mut p = Peer::new(false);
    let l = p.listen(1, opts());
    let syn = p.syn(1460, Some(7));
    p.inject(&syn, &[]);
    p.expect_that("SYN-ACK", |s| s.flags() == SA);
    p.send(A, 1, 1, &[]);
    // Not accepted: the queue of one is full.
    for port in 1..5u16 {
        p.remote.set_port(PEER_PORT_BASE + port);
        let syn = p.syn(1460, Some(7));
        p.inject(&syn, &[]);
        p.expect_none("a SYN to a full accept queue");
    }
    assert_eq!(p.stack.tcp.counters.listen_overflows, 4);
    assert_eq!(p.stack.tcp.counters.resets_sent, 0);
    // Once the application accepts, SYNs are answered again.
    assert!(p.accept(l).is_some());
    p.remote.set_port(PEER_PORT_BASE + 9);
    let syn = p.syn(1460, Some(7));
    p.inject(&syn, &[]);
    p.expect_that("SYN-ACK", |s| s.flags() == SA);
}

const PEER_PORT_BASE: u16 = 41_000;

// -------------------------------------------------------------- zero window

/// RFC 9293 3.8.6.1: at a zero window the sender stops, probes with
/// backoff, and resumes when the window opens.
#[test]
fn a_zero_window_is_probed_with_backoff_then_data_resumes() {
    let mut p = Peer::new(false);
    let id = p.active_open(opts(), Some(0));
    p.advance_ms(5);
    let n = 7 * 1448;
    p.write(id, &data(n));
    assert_eq!(p.take_all().len(), 7);
    // Everything acknowledged, and the window closed.
    p.advance_ms(50);
    let mut h = p.hdr(A, 1, n as i64 + 1);
    h.window = 0;
    p.inject(&h, &[]);
    p.expect_none("the window is closed");
    p.write(id, &data(5_000));
    p.expect_none("the window is still closed");
    let mut probes = Vec::new();
    let mut last = p.now;
    while probes.len() < 5 {
        let s = p.wait_segment(Duration::from_secs(60)).expect("a probe");
        // Linux's probe: <SEQ=SND.UNA-1>, no data: the peer must ACK it.
        assert_eq!((s.seq as i64, s.len()), (n as i64, 0), "{s}");
        probes.push(s.at.since(last));
        last = s.at;
        let mut h = p.hdr(A, 1, n as i64 + 1);
        h.window = 0;
        p.inject(&h, &[]);
        p.expect_none("the probe's answer is not answered");
    }
    for w in probes.windows(2) {
        assert!(
            w[1] >= w[0] * 2 - Duration::from_millis(2),
            "backoff: {probes:?}"
        );
    }
    assert!(probes[0] >= Duration::from_millis(200), "{probes:?}");
    // The window opens: data flows.
    let mut h = p.hdr(A, 1, n as i64 + 1);
    h.window = 65535;
    p.inject(&h, &[]);
    let segs = p.take_all();
    // Three full segments; Nagle holds the runt until they are ACKed.
    assert_eq!(segs.len(), 3, "{segs:?}");
    assert_eq!(segs[0].seq as usize, n + 1, "{segs:?}");
    p.advance_ms(50);
    let mut h = p.hdr(A, 1, (n + 3 * 1448) as i64 + 1);
    h.window = 65535;
    p.inject(&h, &[]);
    let last = p.expect("the rest");
    assert_eq!(last.len(), 5_000 - 3 * 1448, "{last}");
}

/// RFC 9293 3.8.6.2.1: a window too small to use (sender SWS avoidance)
/// with nothing in flight is probed too, or a lost window update would
/// leave both ends waiting for ever.
#[test]
fn a_runt_window_with_nothing_in_flight_is_probed_until_it_opens() {
    let mut p = Peer::new(false);
    let id = p.active_open(opts(), Some(0));
    p.advance_ms(5);
    let n = 7 * 1448;
    p.write(id, &data(n));
    assert_eq!(p.take_all().len(), 7);
    p.advance_ms(50);
    // Everything acknowledged; the window is 200 bytes (the update that
    // opens it is "lost": never sent).
    let mut h = p.hdr(A, 1, n as i64 + 1);
    h.window = 200;
    p.inject(&h, &[]);
    p.write(id, &data(5_000));
    p.expect_none("a 200-byte window is not worth a segment");
    let probe = p.wait_segment(Duration::from_secs(5)).expect("a probe");
    assert_eq!((probe.seq as i64, probe.len()), (n as i64, 0), "{probe}");
    // The probe's answer carries the open window: data flows.
    let mut h = p.hdr(A, 1, n as i64 + 1);
    h.window = 65535;
    p.inject(&h, &[]);
    let segs = p.take_all();
    assert!(!segs.is_empty(), "data after the window opened");
    assert_eq!(segs[0].seq as usize, n + 1, "{segs:?}");
}

/// RFC 9293 3.8.6.2.2: a receiver whose buffer is full advertises a zero
/// window; when the application reads, a window update goes out.
#[test]
fn a_full_receive_buffer_advertises_zero_then_updates() {
    let mut p = Peer::new(false);
    let o = Options {
        recv_buffer: 8 * 1024,
        ..opts()
    };
    let (_, id) = p.passive_open(o, Some(7));
    let mut seq = 1i64;
    let mut last = None;
    for _ in 0..8 {
        p.send(PA, seq, 1, &data(1024));
        seq += 1024;
        if let Some(a) = p.take_all().pop() {
            last = Some(a);
        }
    }
    p.advance_ms(100);
    if let Some(a) = p.take_all().pop() {
        last = Some(a);
    }
    let a = last.expect("an ACK");
    assert_eq!(a.ack as i64, seq, "{a}");
    assert_eq!(a.h.window, 0, "a full buffer: {a}");
    // More data is not taken.
    p.send(PA, seq, 1, &data(100));
    let a = p.expect_that("ACK", |s| s.is_pure_ack());
    assert_eq!((a.ack as i64, a.h.window), (seq, 0), "{a}");
    // The application reads: the window reopens without being asked.
    assert_eq!(p.read_all(id).len(), 8 * 1024);
    let u = p.expect_that("window update", |s| s.is_pure_ack());
    assert!(u.h.window > 0 && u.ack as i64 == seq, "{u}");
}

/// RFC 2018 3 / RFC 9293 3.7.1: SACK blocks count against the segment
/// size: a full data segment that carries them is that much shorter, and
/// every packet still fits the MTU (Linux `tcp_current_mss`).
#[test]
fn data_segments_carrying_sack_blocks_still_fit_the_mtu() {
    for ts in [true, false] {
        let mut p = Peer::new(false);
        p.timestamps = ts;
        let (_, id) = p.passive_open(opts(), Some(7));
        // A hole in what the peer sends: we owe SACK blocks.
        p.send(PA, 1001, 1, &data(500));
        p.send(PA, 2001, 1, &data(500));
        p.take_all();
        p.write(id, &data(20_000));
        let segs = p.take_all();
        assert!(!segs.is_empty());
        for s in &segs {
            assert!(s.ip.len() <= 1500, "{} bytes: {s}", s.ip.len());
            assert_eq!(s.h.sack_len, 2, "{s}");
        }
        let opts_len = if ts { 12 } else { 0 } + 4 + 16;
        assert_eq!(segs[0].len(), 1460 - opts_len, "{}", segs[0]);
    }
}

// ------------------------------------------------ simultaneous open / close

/// RFC 9293 3.5 figure 8: both ends send a SYN; each answers the other's
/// with a SYN-ACK, and the SYN-ACK completes the handshake (Linux
/// tcp_validate_incoming accepts it in SYN-RECEIVED).
#[test]
fn simultaneous_open() {
    let mut p = Peer::new(false);
    let id = p.connect(opts());
    p.expect_that("SYN", |s| s.flags() == Flags::SYN);
    p.advance_ms(10);
    let syn = p.syn(1460, Some(7));
    p.inject(&syn, &[]);
    let sa = p.expect_that("SYN-ACK", |s| s.flags() == SA);
    assert_eq!((sa.seq, sa.ack), (0, 1), "<SEQ=ISS><ACK=IRS+1>: {sa}");
    assert_eq!(p.conn(id).state(), State::SynReceived);
    // The peer's SYN-ACK crosses ours.
    let mut psa = p.syn(1460, Some(7));
    psa.flags = SA;
    psa.ack = p.engine_isn + 1u32;
    psa.timestamp = Some((p.tsval(), p.ts_recent));
    p.inject(&psa, &[]);
    assert_eq!(p.conn(id).state(), State::Established);
    let extra = p.take_all();
    assert!(extra.iter().all(|s| s.is_pure_ack()), "{extra:?}");
    p.write(id, b"hello");
    let d = p.expect("data");
    assert_eq!((d.seq, d.ack, d.len()), (1, 1, 5), "{d}");
}

/// RFC 9293 3.6 figure 13: both FINs cross: FIN-WAIT-1, then CLOSING on
/// the peer's FIN (which we ACK), then TIME-WAIT on the ACK of ours.
#[test]
fn simultaneous_close() {
    let mut p = Peer::new(false);
    let (_, id) = p.passive_open(opts(), Some(7));
    p.with(id, |c| c.shutdown_write());
    let fin = p.expect_that("FIN", |s| s.flags().fin());
    assert_eq!(fin.seq, 1);
    assert_eq!(p.conn(id).state(), State::FinWait1);
    p.send(Flags(Flags::FIN.0 | Flags::ACK.0), 1, 1, &[]);
    let a = p.expect_that("ACK of the peer's FIN", |s| s.is_pure_ack());
    assert_eq!((a.seq, a.ack), (2, 2), "{a}");
    assert_eq!(p.conn(id).state(), State::Closing);
    p.send(A, 2, 2, &[]);
    assert_eq!(p.conn(id).state(), State::TimeWait);
    p.expect_none("nothing more");
}

// --------------------------------------------------------------------- RST

/// RFC 9293 3.10.7.3: in SYN-SENT a RST with an acceptable ACK refuses
/// the connection; one without an ACK, or with a bad one, is ignored.
#[test]
fn a_reset_answering_our_syn_refuses() {
    let mut p = Peer::new(false);
    let id = p.connect(opts());
    p.expect("SYN");
    p.send(RST, 0, 0, &[]);
    p.send(RA, 0, 5, &[]);
    assert_eq!(p.conn(id).state(), State::SynSent);
    p.expect_none("RSTs are not answered");
    p.send(RA, 0, 1, &[]);
    assert_eq!(p.conn(id).state(), State::Closed);
    assert_eq!(p.conn(id).error(), Some(ConnError::Refused));
}

/// RFC 9293 3.10.7.1: segments to a closed port get a reset: for one
/// with an ACK `<SEQ=SEG.ACK><CTL=RST>`, else `<SEQ=0><ACK=SEG.SEQ+
/// SEG.LEN><CTL=RST,ACK>`; a RST gets nothing.
#[test]
fn a_closed_port_answers_with_the_right_reset() {
    for v6 in [false, true] {
        let mut p = Peer::new(v6);
        let syn = p.syn(1460, Some(7));
        p.inject(&syn, &[]);
        let r = p.expect_that("RST,ACK", |s| s.flags() == RA);
        assert_eq!((r.h.seq.0, r.ack), (0, 1), "{r}");
        p.engine_isn = capnet_wire::tcp::SeqNumber(7_000);
        p.send(PA, 5, 100, &data(10));
        let r = p.expect_that("RST", |s| s.flags() == RST);
        assert_eq!(r.seq, 100, "<SEQ=SEG.ACK>: {r}");
        p.send(Flags(Flags::FIN.0), 5, 0, &data(10));
        let r = p.expect_that("RST,ACK", |s| s.flags() == RA);
        assert_eq!(r.ack, 5 + 10 + 1, "SEG.SEQ + SEG.LEN (FIN counts): {r}");
        p.send(RST, 5, 0, &[]);
        p.expect_none("a RST is never answered");
    }
}

// ----------------------------------------------------------------- path MTU

/// RFC 1191 / RFC 8201, RFC 5927 4.1: an ICMP "fragmentation needed" or
/// "packet too big" quoting data in flight shrinks later segments to fit
/// (and resends what was in flight at the old size); one quoting a
/// sequence number outside the flight is ignored.
#[test]
fn path_mtu_errors_shrink_segments_only_for_data_in_flight() {
    for v6 in [false, true] {
        let mut p = Peer::new(v6);
        let id = p.active_open(opts(), Some(7));
        let mss = if v6 { 1440 - 12 } else { 1460 - 12 };
        let (hdr, small) = if v6 { (40, 1280) } else { (20, 1000) };
        p.write(id, &data(4 * mss));
        let segs = p.take_all();
        assert_eq!(segs.len(), 4);
        assert!(segs.iter().all(|s| s.len() == mss));
        // Forged: the quoted sequence number is not in flight.
        let mut forged = segs[0].ip.clone();
        forged[hdr + 4..hdr + 8]
            .copy_from_slice(&(p.engine_isn.0.wrapping_add(1 << 30)).to_be_bytes());
        p.send_too_big(&forged, small);
        p.expect_none("a forged error changes nothing");
        p.advance_ms(50);
        p.send(A, 1, 1 + mss as i64, &[]);
        p.write(id, &data(mss));
        let s = p.expect("a full segment");
        assert_eq!(s.len(), mss, "{s}");
        // Genuine: quoting the segment in flight.
        p.send_too_big(&segs[1].ip, small);
        let mut resent = p.take_all();
        resent.extend(p.wait_segment(Duration::from_millis(5)));
        assert!(!resent.is_empty(), "what was in flight goes again");
        for r in &resent {
            assert!(r.ip.len() <= small as usize, "{} bytes: {r}", r.ip.len());
        }
        p.write(id, &data(3 * mss));
        for s in p.take_all() {
            assert!(s.ip.len() <= small as usize, "{} bytes: {s}", s.ip.len());
        }
    }
}

// ------------------------------------------------------ delayed ACK, Nagle

/// RFC 9293 3.8.6.3 / RFC 5681 4.2 (Linux: 40 ms minimum delay): past the
/// quick-ACK start, one segment is ACKed after the delay, a second one at
/// once.
#[test]
fn delayed_ack_and_every_second_segment() {
    let mut p = Peer::new(false);
    let (_, _id) = p.passive_open(opts(), Some(7));
    let mut seq = 1i64;
    // Quick ACKs first (Linux's quickack mode at the start).
    let mut quick = 0;
    loop {
        p.send(PA, seq, 1, &data(1448));
        seq += 1448;
        if p.take_all().is_empty() {
            break;
        }
        quick += 1;
        assert!(quick <= 16, "quick ACKs never end");
        p.advance_ms(1);
    }
    let at = p.now;
    let a = p
        .wait_segment(Duration::from_millis(500))
        .expect("delayed ACK");
    assert_eq!(a.ack as i64, seq, "{a}");
    assert_eq!(a.at.since(at), Duration::from_millis(40), "{a}");
    // Two full segments: the second is ACKed at once.
    p.advance_ms(100);
    p.send(PA, seq, 1, &data(1448));
    p.expect_none("the first of two waits");
    p.send(PA, seq + 1448, 1, &data(1448));
    let a = p.expect_that("an immediate ACK", |s| s.is_pure_ack());
    assert_eq!(a.ack as i64, seq + 2 * 1448);
}

/// RFC 896 / RFC 9293 3.7.4: a second small write waits while the first
/// is unacknowledged (and the engine is not busy-polled meanwhile), unless
/// TCP_NODELAY.
#[test]
fn nagle_holds_a_second_runt_until_the_ack() {
    for no_delay in [false, true] {
        let mut p = Peer::new(false);
        let o = Options { no_delay, ..opts() };
        let id = p.active_open(o, Some(7));
        p.write(id, &data(100));
        p.expect_that("the first runt", |s| s.len() == 100);
        p.write(id, &data(100));
        if no_delay {
            let s = p.expect("the second runt at once");
            assert_eq!((s.seq, s.len()), (101, 100));
            continue;
        }
        p.expect_none("Nagle holds the second runt");
        assert!(
            p.stack.next_deadline().is_some_and(|d| d > p.now),
            "nothing is due while data waits on Nagle"
        );
        p.advance_ms(20);
        p.expect_none("still held");
        p.send(A, 1, 101, &[]);
        let s = p.expect("the second runt after the ACK");
        assert_eq!((s.seq, s.len()), (101, 100));
    }
}

// --------------------------------------------------------------- keep-alive

/// RFC 9293 3.8.4 (RFC 1122 4.2.3.6) with Linux's numbers: after the idle
/// time a probe `<SEQ=SND.UNA-1>` goes; an answer restarts the idle time;
/// 9 unanswered probes 75 s apart end the connection.
#[test]
fn keep_alive_probes_then_times_out() {
    let mut p = Peer::new(false);
    let idle = Duration::from_secs(60);
    let o = Options {
        keep_alive: Some(idle),
        ..opts()
    };
    let (_, id) = p.passive_open(o, Some(7));
    let start = p.now;
    let k = p.wait_segment(Duration::from_secs(100)).expect("a probe");
    assert_eq!((k.seq, k.len()), (0, 0), "<SEQ=SND.UNA-1>: {k}");
    assert_eq!(k.at.since(start), idle);
    // Answered: the next probe is an idle time later.
    p.send(A, 1, 1, &[]);
    let answered = p.now;
    let k = p.wait_segment(Duration::from_secs(100)).expect("a probe");
    assert_eq!(k.at.since(answered), idle);
    let mut last = k.at;
    for _ in 1..9 {
        let k = p.wait_segment(Duration::from_secs(100)).expect("a probe");
        assert_eq!(k.at.since(last), Duration::from_secs(75));
        last = k.at;
    }
    p.advance(Duration::from_secs(76));
    assert_eq!(p.conn(id).state(), State::Closed);
    assert_eq!(p.conn(id).error(), Some(ConnError::TimedOut));
}

// ------------------------------------------------------------ FIN, half-close

/// RFC 9293 3.6: after our FIN (shutdown of writing) the peer may go on
/// sending; we take and ACK its data, and its FIN ends in TIME-WAIT.
#[test]
fn half_close_keeps_reading() {
    let mut p = Peer::new(false);
    let (_, id) = p.passive_open(opts(), Some(7));
    p.with(id, |c| c.shutdown_write());
    p.expect_that("FIN", |s| s.flags().fin() && s.seq == 1);
    p.send(A, 1, 2, &[]);
    assert_eq!(p.conn(id).state(), State::FinWait2);
    p.send(PA, 1, 2, &data(300));
    p.expect_that("ACK", |s| s.ack == 301 && s.seq == 2);
    assert_eq!(p.read_all(id), data(300));
    p.send(Flags(Flags::FIN.0 | Flags::ACK.0), 301, 2, &[]);
    p.expect_that("ACK of FIN", |s| s.ack == 302);
    assert_eq!(p.conn(id).state(), State::TimeWait);
    assert!(p.conn(id).read_eof());
}

/// RFC 9293 3.6: the peer's FIN first: CLOSE-WAIT, where we may still
/// write; our close sends FIN (LAST-ACK) and its ACK ends the connection.
#[test]
fn peer_closes_first_and_we_still_write() {
    let mut p = Peer::new(false);
    let (_, id) = p.passive_open(opts(), Some(7));
    p.send(Flags(Flags::FIN.0 | Flags::ACK.0), 1, 1, &[]);
    p.expect_that("ACK of FIN", |s| s.is_pure_ack() && s.ack == 2);
    assert_eq!(p.conn(id).state(), State::CloseWait);
    assert!(p.conn(id).read_eof());
    p.write(id, &data(10));
    p.expect_that("data after the peer's FIN", |s| s.len() == 10);
    p.close(id);
    let f = p.expect_that("FIN", |s| s.flags().fin());
    assert_eq!(f.seq, 11);
    p.send(A, 2, 12, &[]);
    assert!(!p.alive(id), "closed and freed");
}

/// RFC 2525 2.17 / RFC 1122 4.2.2.13: closing with unread data aborts
/// with a RST, as does data arriving after the close.
#[test]
fn close_with_unread_data_or_data_after_close_resets() {
    let mut p = Peer::new(false);
    let (_, id) = p.passive_open(opts(), Some(7));
    p.send(PA, 1, 1, &data(10));
    p.take_all();
    p.close(id);
    let r = p.expect_that("RST", |s| s.flags().rst());
    assert_eq!(r.seq, 1, "{r}");
    assert!(!p.alive(id));

    // Data after close (Linux: tcp_rcv_state_process, LINUX_MIB_TCPABORTONDATA).
    let mut p = Peer::new(false);
    let (_, id) = p.passive_open(opts(), Some(7));
    p.close(id);
    p.expect_that("FIN", |s| s.flags().fin());
    p.send(A, 1, 2, &[]);
    p.send(PA, 1, 2, &data(10));
    let r = p.expect_that("RST", |s| s.flags().rst());
    assert_eq!(r.seq, 2, "<SEQ=SEG.ACK>: {r}");
    assert!(!p.alive(id));
}
