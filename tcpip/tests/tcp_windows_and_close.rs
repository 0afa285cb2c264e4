//! Scripted-peer tests of the engine's TCP, in the manner of packetdrill:
//! a hand-driven peer sends crafted segments at chosen simulated times and
//! each test states the segments the engine MUST answer with, citing the
//! RFC that says so. Sequence numbers are relative to the ISNs.
//!
//! Here: windows (zero and runt), simultaneous open and close, resets,
//! path MTU, delayed ACK and Nagle, keep-alive, FIN and half-close.

mod script;

use capnet_tcpip::tcp::{limits, ListenerId, TcpId};
use script::*;

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

/// tcp_fin_timeout: a connection the application let go of waits in
/// FIN-WAIT-2 for the peer's FIN only so long, whether it was let go of
/// before our FIN was acknowledged (close) or after (shutdown, then
/// release: what netsrv does when a ring-mode socket ends), else a peer
/// that never sends its FIN would hold it forever.
#[test]
fn an_orphan_fin_wait_2_times_out() {
    for release_after_ack in [false, true] {
        let mut p = Peer::new(false);
        let (_, id) = p.passive_open(opts(), Some(7));
        if release_after_ack {
            p.with(id, |c| c.shutdown_write());
        } else {
            p.close(id);
        }
        p.expect_that("FIN", |s| s.flags().fin());
        p.send(A, 1, 2, &[]);
        assert_eq!(p.conn(id).state(), State::FinWait2);
        if release_after_ack {
            let now = p.now;
            p.stack.tcp.release(now, id);
        }
        p.advance(limits::FIN_TIMEOUT - Duration::from_secs(1));
        assert!(p.alive(id), "still waiting for the peer's FIN");
        p.advance(Duration::from_secs(2));
        assert!(
            !p.alive(id),
            "released={release_after_ack}: freed after tcp_fin_timeout"
        );
        p.expect_none("FIN-WAIT-2 ends quietly");
    }
}

// ---------------------------------------------------------------- TIME-WAIT

const FA: Flags = Flags(Flags::FIN.0 | Flags::ACK.0);

/// The engine answers a request and closes first, as an HTTP/1.0 server
/// does: its end waits in TIME-WAIT, the peer's end is gone at once (so
/// the peer may use the same port again right away). Returns the
/// listener and the connection.
fn server_closes_first(p: &mut Peer) -> (ListenerId, TcpId) {
    let (l, id) = p.passive_open(opts(), Some(7));
    p.send(PA, 1, 1, &data(10));
    assert_eq!(p.read_all(id), data(10));
    p.write(id, &data(20));
    p.close(id);
    let sent = p.take_all();
    assert!(sent.iter().any(|s| s.flags().fin()), "{sent:?}");
    p.send(FA, 11, 22, &[]);
    p.expect_that("ACK of the peer's FIN", |s| s.is_pure_ack() && s.ack == 12);
    assert_eq!(p.conn(id).state(), State::TimeWait);
    (l, id)
}

/// RFC 6191 2 (RFC 1122 4.2.2.13 without timestamps; Linux
/// `tcp_timewait_state_process`): a SYN for a flow in TIME-WAIT with a
/// newer timestamp, or without timestamps a sequence number beyond
/// RCV.NXT, is a new incarnation: TIME-WAIT ends and the listener answers
/// it. Without this a client that reuses its port meets an ACK instead of
/// a SYN-ACK, resets, and waits for its SYN to be sent again.
#[test]
fn a_new_syn_ends_time_wait_and_opens_a_connection() {
    for timestamps in [true, false] {
        let mut p = Peer::new(false);
        p.timestamps = timestamps;
        let (l, old) = server_closes_first(&mut p);
        p.advance_ms(1_000);
        p.peer_isn = p.peer_isn + 1_000_000u32;
        let syn = p.syn(1460, Some(7));
        p.inject(&syn, &[]);
        let sa = p.expect_that("SYN-ACK", |s| s.flags() == SA);
        assert_eq!(sa.ack, 1, "{sa}");
        assert!(!p.alive(old), "the old incarnation is gone");
        p.expect_none("nothing else");
        p.send(A, 1, 1, &[]);
        let new = p.accept(l).expect("the new connection");
        assert!(p.conn(new).is_established());
        assert_eq!(p.stack.tcp.time_wait(), 0);
        assert_eq!(p.stack.tcp.counters.time_wait_reopened, 1);
    }
}

/// RFC 6191 2: a SYN that may be an old duplicate (its timestamp not newer,
/// or without timestamps its sequence number not beyond RCV.NXT) leaves
/// TIME-WAIT alone and gets an ACK (RFC 5961 4.2); so does any SYN when
/// nothing listens any more.
#[test]
fn an_old_syn_leaves_time_wait_alone() {
    let mut p = Peer::new(false);
    let (_, id) = server_closes_first(&mut p);
    p.advance_ms(1_000);
    let mut syn = p.syn(1460, Some(7));
    syn.seq = p.peer_isn + 1_000_000u32;
    syn.timestamp = Some((p.tsval().wrapping_sub(5_000), 0));
    p.inject(&syn, &[]);
    p.expect_that("ACK", |s| s.is_pure_ack() && s.ack == 12);
    assert_eq!(p.conn(id).state(), State::TimeWait);

    let mut p = Peer::new(false);
    p.timestamps = false;
    let (_, id) = server_closes_first(&mut p);
    p.advance_ms(1_000);
    let mut syn = p.syn(1460, Some(7));
    syn.seq = p.peer_isn + 5u32;
    p.inject(&syn, &[]);
    p.expect_that("ACK", |s| s.is_pure_ack() && s.ack == 12);
    assert_eq!(p.conn(id).state(), State::TimeWait);

    let mut p = Peer::new(false);
    let (l, id) = server_closes_first(&mut p);
    p.close_listener(l);
    p.advance_ms(1_000);
    p.peer_isn = p.peer_isn + 1_000_000u32;
    let syn = p.syn(1460, Some(7));
    p.inject(&syn, &[]);
    p.expect_that("ACK", |s| s.is_pure_ack());
    assert_eq!(p.conn(id).state(), State::TimeWait);
    assert_eq!(p.stack.tcp.counters.time_wait_reopened, 0);
}
