//! The offload table's data path, with frames made here.

use super::*;
use std::net::SocketAddr;

#[test]
fn offsets_unwrap_across_4gib() {
    let first = 0xffff_fff0;
    assert_eq!(offset_of(first, first, 0), 0);
    assert_eq!(offset_of(first.wrapping_add(100), first, 50), 100);
    // Near 4 GiB of stream, a small sequence distance is past it.
    assert_eq!(
        offset_of(first.wrapping_add(5), first, (1 << 32) - 10),
        (1 << 32) + 5
    );
    assert_eq!(seq_of(first, (1 << 32) + 5), first.wrapping_add(5));
}

const ISN: u32 = 0xffff_ff00;

fn tuple() -> Flow {
    Flow {
        local: "10.0.0.1:443".parse().unwrap(),
        remote: "10.0.0.2:40000".parse().unwrap(),
    }
}

/// A frame from the peer: a SYN, or `payload` at stream offset
/// `offset`.
fn frame(syn: bool, offset: u64, payload: &[u8]) -> Vec<u8> {
    let seq = if syn {
        ISN.wrapping_sub(1)
    } else {
        seq_of(ISN, offset)
    };
    segment(false, syn, seq, None, payload)
}

/// Our first sequence number (after our SYN).
const OUR_ISN: u32 = 0x1000;

/// A segment of `tuple()`, ours (`ours`) or the peer's, with the
/// sequence number `seq` and an optional acknowledgment.
fn segment(ours: bool, syn: bool, seq: u32, ack: Option<u32>, payload: &[u8]) -> Vec<u8> {
    segment_of(tuple(), ours, syn, seq, ack, payload)
}

fn segment_of(
    t: Flow,
    ours: bool,
    syn: bool,
    seq: u32,
    ack: Option<u32>,
    payload: &[u8],
) -> Vec<u8> {
    use capnet_wire::tcp::{Flags, Header, SeqNumber};
    use std::net::IpAddr;
    let (from, to) = if ours {
        (t.local, t.remote)
    } else {
        (t.remote, t.local)
    };
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (from.ip(), to.ip()) else {
        unreachable!()
    };
    let mut flags = if syn { Flags::SYN } else { Flags(0) };
    if ack.is_some() {
        flags = flags | Flags::ACK;
    }
    let h = Header {
        src_port: from.port(),
        dst_port: to.port(),
        seq: SeqNumber(seq),
        ack: SeqNumber(ack.unwrap_or(0)),
        flags,
        window: 1000,
        ..Header::default()
    };
    crate::test_frames::tcp_frame(src, dst, &h, payload)
}

/// The stack sends `frame` on port "p0".
fn send(table: &mut OffloadTable, frame: Vec<u8>) -> TxAction {
    table.on_tx(&frame, "p0", 0)
}

/// An established connection whose bases the engine gave.
fn accepted() -> OffloadTable {
    let mut table = OffloadTable::default();
    // The handshake's frames make no entry ...
    assert_eq!(table.on_rx(&frame(true, 0, &[]), OFFLOADED), Mark::Plain);
    assert_eq!(
        send(&mut table, segment(true, true, OUR_ISN - 1, Some(ISN), &[])),
        SEND
    );
    assert_eq!(table.len(), 0);
    // ... the engine's state does.
    table.learn_bases(tuple(), OUR_ISN);
    table
}

/// An RX-bound connection whose receive point is offset 0.
fn bound() -> OffloadTable {
    let mut table = accepted();
    table.bind_rx(tuple(), 0, (0, 0)).unwrap();
    table
}

const OFFLOADED: u32 = flags::OFFLOADED;

#[test]
fn rx_segments_carry_the_nics_outcome_only_when_bound() {
    let data = frame(false, 0, b"record bytes");
    // Unbound: plain, whatever the descriptor claims.
    let mut table = accepted();
    assert_eq!(table.on_rx(&data, OFFLOADED), Mark::Plain);
    // Bound: the NIC's word, unless it also says it failed.
    let mut table = bound();
    assert_eq!(table.on_rx(&data, OFFLOADED), Mark::Decrypted);
    assert_eq!(table.on_rx(&data, 0), Mark::Plain);
    assert_eq!(
        table.on_rx(&data, OFFLOADED | flags::OFFLOAD_FAILED),
        Mark::Plain
    );
    // A pure ACK has nothing to mark.
    assert_eq!(table.on_rx(&frame(false, 12, &[]), OFFLOADED), Mark::Plain);
    assert_eq!(table.counters.rx_decrypted, 1);
    // After offloadStop, frames the NIC opened in flight are still plaintext.
    table.unbind_rx(&tuple());
    assert_eq!(table.on_rx(&data, OFFLOADED), Mark::Decrypted);
}

#[test]
fn rx_out_of_order_counts_grow_from_the_binding_on() {
    let mut table = accepted();
    table.bind_rx(tuple(), 0, (5, 1)).unwrap();
    table.observe_rx(&tuple(), 5, 1);
    assert_eq!(table.counters.rx_out_of_order, 0);
    table.observe_rx(&tuple(), 9, 3);
    table.observe_rx(&tuple(), 9, 3);
    assert_eq!(
        (
            table.counters.rx_out_of_order,
            table.counters.rx_out_of_order_decrypted
        ),
        (4, 2)
    );
}

#[test]
fn the_receive_ring_waits_at_the_binding_until_the_context_is_made() {
    let mut table = accepted();
    table.bind_rx(tuple(), 100, (0, 0)).unwrap();
    let rx = table.conn(&tuple()).unwrap().rx.clone().unwrap();
    assert_eq!(rx.plain_allowance(40), Some(60));
    assert_eq!(rx.plain_allowance(100), Some(0));
    assert_eq!(table.confirm_rx(&tuple(), 4096), Some(4096));
    // Confirmed once: a second confirmation keeps the first position.
    assert_eq!(table.confirm_rx(&tuple(), 9999), Some(4096));
    let rx = table.conn(&tuple()).unwrap().rx.clone().unwrap();
    assert_eq!(rx.plain_allowance(100), None);
}

/// Our data segment at stream offset `offset`.
fn ours(offset: u64, payload: &[u8]) -> Vec<u8> {
    segment(true, false, seq_of(OUR_ISN, offset), Some(ISN), payload)
}

#[test]
fn framed_bytes_leave_only_tagged_and_held_frames_die_with_the_binding() {
    let mut table = accepted();
    let binding = |port: &str| TxBinding {
        port: port.into(),
        epoch: 0,
        context: 5,
        start: 100,
    };
    table.bind_tx(tuple(), binding("p0")).unwrap();
    // Before the binding's start: as it is; from it on: tagged.
    assert_eq!(send(&mut table, ours(0, &[1; 100])), SEND);
    let tagged = TxAction::Send {
        flags: flags::OFFLOAD_TX,
        context: 5,
    };
    assert_eq!(send(&mut table, ours(50, &[1; 100])), tagged);
    // The context moved to another port: framed bytes wait, in order,
    // and so does what follows them.
    table.unbind_tx(&tuple());
    table.bind_tx(tuple(), binding("p1")).unwrap();
    assert_eq!(send(&mut table, ours(150, &[2; 100])), TxAction::Hold);
    assert_eq!(table.take_releasable().len(), 1);
    assert_eq!(send(&mut table, ours(250, &[2; 100])), TxAction::Hold);
    // The holder left for software: held frames (cleartext records) are
    // dropped, and what TCP sends again leaves untagged.
    let old = table.unbind_tx(&tuple()).unwrap();
    assert_eq!(old.port, "p1");
    assert!(table.take_releasable().is_empty());
    assert_eq!(table.counters.tx_held_dropped, 1);
    assert_eq!(send(&mut table, ours(150, &[3; 200])), SEND);
}

#[test]
fn syns_off_the_wire_make_no_entries() {
    let mut table = OffloadTable::default();
    for port in 0..5000u16 {
        let t = Flow {
            local: "10.0.0.1:443".parse().unwrap(),
            remote: SocketAddr::new("10.0.0.2".parse().unwrap(), port),
        };
        let syn = segment_of(t, false, true, 7, None, &[]);
        let syn_ack = segment_of(t, false, true, 7, Some(9), &[]);
        assert_eq!(table.on_rx(&syn, OFFLOADED), Mark::Plain);
        assert_eq!(table.on_rx(&syn_ack, OFFLOADED), Mark::Plain);
    }
    assert_eq!(table.len(), 0);
    // Nor can a connection be bound on the strength of one.
    assert!(table.bind_rx(tuple(), 0, (0, 0)).is_err());
    assert_eq!(table.len(), 0);
}

#[test]
fn spoofed_syns_leave_a_bound_flow_alone() {
    let mut table = bound();
    // A SYN and SYN-ACKs with the flow's 4-tuple and other numbers.
    for syn in [
        segment(false, true, 0x5555, None, &[]),
        segment(false, true, 0x5555, Some(OUR_ISN), &[]),
        segment(false, true, 0x6666, Some(0x77), &[]),
    ] {
        assert_eq!(table.on_rx(&syn, OFFLOADED), Mark::Plain);
    }
    let c = table.conn(&tuple()).unwrap();
    assert_eq!(c.tx_first, Some(OUR_ISN));
    assert!(c.rx.as_ref().is_some_and(|rx| rx.active && rx.start == 0));
}

#[test]
fn our_own_syns_and_syn_acks_make_no_entries_either() {
    // SYN cookies answer a flood with SYN-ACKs: none may make an entry.
    let mut table = OffloadTable::default();
    for port in 0..5000u16 {
        let t = Flow {
            local: "10.0.0.1:443".parse().unwrap(),
            remote: SocketAddr::new("10.0.0.2".parse().unwrap(), port),
        };
        assert_eq!(
            send(&mut table, segment_of(t, true, true, 1, Some(2), &[])),
            SEND
        );
        assert_eq!(
            send(&mut table, segment_of(t, true, true, 1, None, &[])),
            SEND
        );
    }
    assert_eq!(table.len(), 0);
}

#[test]
fn the_table_is_capped_and_swept() {
    let mut table = OffloadTable::default();
    for i in 0..MAX_CONNS as u32 + 10 {
        let t = Flow {
            local: SocketAddr::new("10.0.0.1".parse().unwrap(), 1 + (i >> 16) as u16),
            remote: SocketAddr::new("10.0.0.2".parse().unwrap(), i as u16),
        };
        table.learn_bases(t, 1);
    }
    assert_eq!(table.len(), MAX_CONNS);
    assert_eq!(table.counters.untracked(), 10);
    table.retain(|t| t.local.port() == 1 && t.remote.port() < 100);
    assert_eq!(table.len(), 100);
}
