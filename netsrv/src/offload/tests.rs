//! The offload table's data path, with frames made here and the engine's
//! receive buffer played by the test.

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
fn send(table: &mut OffloadTable, mut frame: Vec<u8>) -> TxAction {
    table.on_tx(&mut frame, "p0", 0, true)
}

/// An established connection whose bases the engine gave.
fn accepted() -> OffloadTable {
    let mut table = OffloadTable::default();
    // The handshake's frames make no entry ...
    assert!(table.on_rx(&frame(true, 0, &[]), 0));
    assert_eq!(
        send(&mut table, segment(true, true, OUR_ISN - 1, Some(ISN), &[])),
        SEND
    );
    assert_eq!(table.len(), 0);
    // ... the engine's state does.
    table.learn_bases(tuple(), OUR_ISN, ISN);
    table
}

/// An RX-bound connection whose receive point is offset 0.
fn bound() -> OffloadTable {
    let mut table = accepted();
    table.bind_rx(tuple(), 7, 0).unwrap();
    table
}

fn marks(table: &mut OffloadTable) -> Vec<(u64, bool)> {
    let rx = table.conn_mut(&tuple()).unwrap().rx.as_mut().unwrap();
    rx.marks.runs.iter().copied().collect()
}

/// Stream byte `i`: plaintext `i`, ciphertext `i ^ 0xa5`.
fn stream(range: Range<u64>, decrypted: bool) -> Vec<u8> {
    range
        .map(|i| if decrypted { i as u8 } else { i as u8 ^ 0xa5 })
        .collect()
}

/// the engine's receive buffer as far as these tests need it: every
/// segment handed over is written at its offset (last write wins).
#[derive(Default)]
struct Buffer(Vec<u8>);

impl Buffer {
    /// Hands a segment to the table and, if it lets it through, to the
    /// buffer.
    fn offer(&mut self, table: &mut OffloadTable, at: u64, len: u64, decrypted: bool) -> bool {
        let bytes = stream(at..at + len, decrypted);
        let flags = if decrypted { flags::OFFLOADED } else { 0 };
        if !table.on_rx(&frame(false, at, &bytes), flags) {
            return false;
        }
        let end = (at + len) as usize;
        if self.0.len() < end {
            self.0.resize(end, 0);
        }
        self.0[at as usize..end].copy_from_slice(&bytes);
        true
    }

    fn settle(&self, table: &mut OffloadTable, enqueued: u64) {
        table.settle_rx(enqueued, |r| {
            Some(self.0[r.start as usize..r.end as usize].to_vec())
        });
    }
}

#[test]
fn rx_marks_follow_what_smoltcp_enqueued() {
    let mut table = bound();
    let mut engine = Buffer::default();
    // In order, decrypted; the engine takes it all.
    assert!(engine.offer(&mut table, 0, 100, true));
    assert_eq!(table.rx_pending_socket(), Some(7));
    engine.settle(&mut table, 100);
    // Decrypted beyond the receive point (the NIC took a byte the engine
    // refused, a zero-window probe say): kept aside.
    assert!(engine.offer(&mut table, 200, 100, true));
    engine.settle(&mut table, 100);
    // A retransmission the NIC left alone overwrites half of it.
    assert!(engine.offer(&mut table, 250, 100, false));
    engine.settle(&mut table, 100);
    // The hole filled, undecrypted: the engine enqueues through 350.
    assert!(engine.offer(&mut table, 100, 100, false));
    engine.settle(&mut table, 350);
    // A decrypted segment over the receive point, trimmed by the window.
    assert!(engine.offer(&mut table, 300, 100, true));
    engine.settle(&mut table, 380);
    // Old bytes change nothing.
    assert!(table.on_rx(&frame(false, 0, &stream(0..100, false)), 0));
    assert_eq!(table.rx_pending_socket(), None);
    assert_eq!(
        marks(&mut table),
        [
            (100, true),
            (200, false),
            (250, true),
            (350, false),
            (380, true)
        ]
    );
    assert!(table.reconcile_rx(&tuple(), 380));
    let c = table.counters;
    assert_eq!(
        (
            c.rx_decrypted,
            c.rx_out_of_order,
            c.rx_out_of_order_decrypted,
            c.rx_out_of_order_dropped,
            c.rx_mark_errors
        ),
        (2, 2, 1, 0, 0)
    );
}

#[test]
fn rx_marks_refuse_bytes_nothing_accounts_for() {
    let mut table = bound();
    // An out-of-order segment cannot move the receive point past bytes
    // nobody wrote.
    assert!(table.on_rx(&frame(false, 100, &stream(100..200, false)), 0));
    table.settle_rx(300, |_| None);
    assert!(!table.reconcile_rx(&tuple(), 300));
    assert_eq!(table.counters.rx_mark_errors, 1);

    // Bytes enqueued behind the stack's back (no segment settled).
    let mut table = bound();
    assert!(!table.reconcile_rx(&tuple(), 10));
    assert_eq!(table.counters.rx_mark_errors, 1);
}

#[test]
fn syns_off_the_wire_make_no_entries() {
    let mut table = OffloadTable::default();
    for port in 0..5000u16 {
        let t = Flow {
            local: "10.0.0.1:443".parse().unwrap(),
            remote: SocketAddr::new("10.0.0.2".parse().unwrap(), port),
        };
        assert!(table.on_rx(&segment_of(t, false, true, 7, None, &[]), 0));
        assert!(table.on_rx(&segment_of(t, false, true, 7, Some(9), &[]), 0));
    }
    assert_eq!(table.len(), 0);
    // Nor can a connection be bound on the strength of one.
    assert!(table.bind_rx(tuple(), 7, 0).is_err());
    assert_eq!(table.len(), 0);
}

#[test]
fn spoofed_syns_leave_a_bound_flow_alone() {
    let mut table = bound();
    let mut engine = Buffer::default();
    assert!(engine.offer(&mut table, 0, 100, true));
    engine.settle(&mut table, 100);
    // A SYN and SYN-ACKs with the flow's 4-tuple and other numbers.
    assert!(table.on_rx(&segment(false, true, 0x5555, None, &[]), 0));
    assert!(table.on_rx(&segment(false, true, 0x5555, Some(OUR_ISN), &[]), 0));
    assert!(table.on_rx(&segment(false, true, 0x6666, Some(0x77), &[]), 0));
    assert_eq!(table.conn(&tuple()).unwrap().rx_first, Some(ISN));
    assert!(engine.offer(&mut table, 100, 100, true));
    engine.settle(&mut table, 200);
    assert!(table.reconcile_rx(&tuple(), 200));
    assert_eq!(marks(&mut table), [(200, true)]);
    assert_eq!(table.counters.rx_mark_errors, 0);
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
        table.learn_bases(t, 1, 2);
    }
    assert_eq!(table.len(), MAX_CONNS);
    assert_eq!(table.counters.untracked(), 10);
    table.retain(|t| t.local.port() == 1 && t.remote.port() < 100);
    assert_eq!(table.len(), 100);
}
