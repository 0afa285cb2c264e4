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
const FA: Flags = Flags(Flags::FIN.0 | Flags::ACK.0);
const SA: Flags = Flags(Flags::SYN.0 | Flags::ACK.0);
const RST: Flags = Flags::RST;
const RA: Flags = Flags(Flags::RST.0 | Flags::ACK.0);

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
        assert_eq!(usize::from(ack.h.window), (buf >> shift).min(65535), "{ack}");
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
