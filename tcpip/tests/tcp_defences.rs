//! Scripted-peer tests of the engine's TCP, in the manner of packetdrill:
//! a hand-driven peer sends crafted segments at chosen simulated times and
//! each test states the segments the engine MUST answer with, citing the
//! RFC that says so. Sequence numbers are relative to the ISNs.
//!
//! Here: PAWS, RFC 5961's blind-attack defences, SYN cookies and full
//! listen queues.

mod script;

use script::*;

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

/// A SYN-ACK from the listener on `port` (a SYN from there first).
fn syn_from(p: &mut Peer, port: u16) -> Seg {
    p.remote.set_port(port);
    let syn = p.syn(1460, Some(7));
    p.inject(&syn, &[]);
    p.expect_that("SYN-ACK", |s| s.flags() == SA)
}

/// Cookies start when the half-open connections that live fill the
/// backlog: one that dies (reset in SYN-RECEIVED, or reset after its
/// handshake while it waits to be accepted) gives back one place, once,
/// and one made from a cookie never took one.
#[test]
fn the_half_open_count_follows_the_connections_that_live() {
    // Reset in SYN-RECEIVED.
    let mut p = Peer::new(false);
    p.listen(2, opts());
    syn_from(&mut p, 21_000);
    syn_from(&mut p, 21_001);
    p.remote.set_port(21_000);
    p.send(RST, 1, 0, &[]);
    syn_from(&mut p, 21_002);
    assert_eq!(p.stack.tcp.counters.syn_cookies_sent, 0);
    syn_from(&mut p, 21_003);
    assert_eq!(
        p.stack.tcp.counters.syn_cookies_sent, 1,
        "two live half-open: a cookie"
    );

    // Reset after the handshake, before the accept.
    let mut p = Peer::new(false);
    p.listen(3, opts());
    let sa = syn_from(&mut p, 22_000);
    syn_from(&mut p, 22_001);
    p.remote.set_port(22_000);
    p.engine_isn = sa.h.seq;
    p.send(A, 1, 1, &[]);
    p.send(RST, 1, 0, &[]);
    syn_from(&mut p, 22_002);
    syn_from(&mut p, 22_003);
    assert_eq!(p.stack.tcp.counters.syn_cookies_sent, 0);
    syn_from(&mut p, 22_004);
    assert_eq!(
        p.stack.tcp.counters.syn_cookies_sent, 1,
        "three live half-open: a cookie"
    );

    // A connection from a cookie.
    let mut p = Peer::new(false);
    let l = p.listen(1, opts());
    syn_from(&mut p, 23_000);
    let sa = syn_from(&mut p, 23_001);
    assert_eq!(p.stack.tcp.counters.syn_cookies_sent, 1);
    let mut ack = p.hdr(A, 1, 0);
    ack.ack = sa.h.seq + 1u32;
    ack.timestamp = Some((p.tsval(), sa.h.timestamp.unwrap().0));
    p.inject(&ack, &[]);
    assert!(p.accept(l).is_some());
    syn_from(&mut p, 23_002);
    assert_eq!(
        p.stack.tcp.counters.syn_cookies_sent, 2,
        "the first connection is still half-open: a cookie"
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
