//! Connections bound to NIC offload contexts (TLS), as the data path sees
//! them.
//!
//! netsrv holds no keys and does no crypto. It
//! - takes each connection's first sequence numbers from the engine's TCP
//!   state when a holder binds it ([`OffloadTable::learn_bases`]), so that
//!   stream offsets (what holders speak) and TCP sequence numbers (what
//!   NICs speak) convert. No frame makes or changes an entry: a SYN flood
//!   (or the SYN cookies that answer it) cannot grow the table and a
//!   spoofed SYN cannot disturb a flow. Entries are capped and swept when
//!   their socket is gone ([`OffloadTable::retain`]);
//! - tags TX frames of a bound connection with its context when they leave
//!   on the context's port, and holds them when they would leave elsewhere
//!   (framed records are cleartext: they never leave untagged);
//! - after the holder moved to software, drops the frames it held (TCP
//!   sends their bytes again from its queue, where the stack wrote the
//!   holder's software-sealed replacement over the framed bytes), and
//!   tells when no descriptor naming the old context is still in flight
//!   (the drain);
//! - on RX, gives the engine each segment of an RX-bound connection with
//!   the NIC's outcome ([`Mark`]); TCP keeps the mark with the bytes
//!   through reassembly, so the receive ring can say byte for byte which
//!   ones the NIC decrypted.

use capnet_ring::flags;
use capnet_tcpip::tcp::Mark;
use capnet_wire::tcp::{SeqNumber, StreamBase};
use std::collections::{HashMap, VecDeque};

pub use capnet_wire::tcp::{parse_tcp, Flow};

/// Stream offset of `seq` for a stream whose first byte has sequence
/// `first`, near `hint` (a recent offset): unwraps past 4 GiB.
fn offset_of(seq: u32, first: u32, hint: u64) -> u64 {
    StreamBase::new(SeqNumber(first), 0).offset_of(SeqNumber(seq), hint)
}

/// The TCP sequence number of stream offset `offset`.
pub fn seq_of(first: u32, offset: u64) -> u32 {
    StreamBase::new(SeqNumber(first), 0).seq_of(offset).0
}

/// TX bound to a context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxBinding {
    pub port: String,
    pub epoch: u32,
    pub context: u32,
    /// First stream offset the holder framed for the NIC.
    pub start: u64,
}

/// RX bound to a context.
#[derive(Clone, Debug)]
pub struct RxBinding {
    /// The receive point when the binding was made (a stream offset): the
    /// NIC may open any segment from here on.
    pub start: u64,
    /// Receive-ring position where marked chunks begin, once the NIC made
    /// the context (until then the receive ring stops at `start`).
    pub chunks_from: Option<u64>,
    /// Still expecting NIC marks (false after `offloadStop`).
    pub active: bool,
}

impl RxBinding {
    /// While the NIC makes the context, the bytes from `start` wait (they
    /// may come back marked): how many of the bytes from stream offset
    /// `read` on may go to the receive ring now. `None`: no limit (the
    /// context is made).
    pub fn plain_allowance(&self, read: u64) -> Option<u64> {
        self.chunks_from
            .is_none()
            .then(|| self.start.saturating_sub(read))
    }
}

/// Counters of the offload path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffloadCounters {
    pub tx_tagged: u64,
    /// Framed bytes rewritten software-sealed after the holder moved to
    /// software (in TCP's send queue, or on their way into it).
    pub tx_replaced: u64,
    /// Frames kept back: they would have left untagged with framed bytes.
    pub tx_held: u64,
    pub tx_held_sent: u64,
    /// Held frames given up (too many); TCP retransmits them.
    pub tx_held_dropped: u64,
    /// Segments of RX-bound connections the NIC had decrypted.
    pub rx_decrypted: u64,
    /// Segments of RX-bound connections that waited out of order in TCP's
    /// reassembly (their marks with them).
    pub rx_out_of_order: u64,
    /// Of those, decrypted by the NIC.
    pub rx_out_of_order_decrypted: u64,
    /// Handshakes not tracked because the table was full (those
    /// connections cannot be offloaded).
    untracked: u64,
}

impl OffloadCounters {
    pub fn untracked(&self) -> u64 {
        self.untracked
    }
}

/// Connections tracked at most: the stack's own sockets (bounded by the
/// clients' limits), far more than any host here holds.
pub const MAX_CONNS: usize = 65536;

/// Held frames per connection before the oldest are given up.
const MAX_HELD: usize = 512;

/// One connection's offload state.
#[derive(Debug, Default)]
pub struct ConnOffload {
    /// Sequence number of the first stream byte sent (ISS+1).
    pub tx_first: Option<u32>,
    tx_hint: u64,
    pub tx: Option<TxBinding>,
    held: VecDeque<Vec<u8>>,
    /// Some held frame waits for its context's port (not for a buffer).
    held_for_port: bool,
    pub rx: Option<RxBinding>,
    /// The connection's out-of-order counts (all, marked) when last
    /// added to the table's counters.
    rx_ooo_seen: (u64, u64),
}

/// What to do with a TX frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxAction {
    /// Send, OR-ing `flags` into the descriptor and naming `context`.
    Send { flags: u32, context: u32 },
    /// Keep it back (copied into the hold queue); send nothing now.
    Hold,
}

const SEND: TxAction = TxAction::Send {
    flags: 0,
    context: 0,
};

fn hold(c: &mut ConnOffload, frame: &[u8], counters: &mut OffloadCounters) -> TxAction {
    if c.held.len() >= MAX_HELD {
        c.held.pop_front();
        counters.tx_held_dropped += 1;
    }
    c.held.push_back(frame.to_vec());
    counters.tx_held += 1;
    TxAction::Hold
}

/// Every connection's offload state, consulted by the data path.
#[derive(Debug, Default)]
pub struct OffloadTable {
    conns: HashMap<Flow, ConnOffload>,
    pub counters: OffloadCounters,
    /// A binding or the topology changed since held frames were last
    /// tried.
    held_dirty: bool,
}

impl OffloadTable {
    pub fn conn(&self, t: &Flow) -> Option<&ConnOffload> {
        self.conns.get(t)
    }

    pub fn conn_mut(&mut self, t: &Flow) -> Option<&mut ConnOffload> {
        self.conns.get_mut(t)
    }

    /// The connection is gone.
    pub fn forget(&mut self, t: &Flow) {
        self.conns.remove(t);
    }

    /// The connections tracked.
    pub fn flows(&self) -> impl Iterator<Item = &Flow> {
        self.conns.keys()
    }

    /// Connections tracked.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Keeps only the connections `live` names (the stack's sockets): a
    /// handshake that never completed leaves nothing behind.
    pub fn retain(&mut self, live: impl Fn(&Flow) -> bool) {
        self.conns.retain(|t, _| live(t));
    }

    /// The first data byte's sequence number of an established connection,
    /// from the engine, before a holder binds it; a flow already bound
    /// keeps what it has.
    pub fn learn_bases(&mut self, tuple: Flow, seq: u32) {
        if !self.conns.contains_key(&tuple) && self.conns.len() >= MAX_CONNS {
            if self.counters.untracked == 0 {
                tracing::warn!("offload table full: new connections cannot be offloaded");
            }
            self.counters.untracked += 1;
            return;
        }
        let c = self.conns.entry(tuple).or_default();
        if c.tx.is_some() || c.rx.is_some() {
            return;
        }
        c.tx_first = Some(seq);
    }

    /// A frame the engine built for `port` (driver `epoch`).
    pub fn on_tx(&mut self, frame: &[u8], port: &str, epoch: u32) -> TxAction {
        let Some(v) = parse_tcp(frame) else {
            return SEND;
        };
        let tuple = Flow {
            local: v.src,
            remote: v.dst,
        };
        if v.syn {
            return SEND;
        }
        let Some(c) = self.conns.get_mut(&tuple) else {
            return SEND;
        };
        // Frames of a bound connection leave in order: the NIC seals a
        // record as its bytes pass, and a frame that overtook a held one
        // would be a gap it must refuse.
        if c.tx.is_some() && !c.held.is_empty() && !v.payload.is_empty() {
            return hold(c, frame, &mut self.counters);
        }
        let (Some(first), true) = (c.tx_first, !v.payload.is_empty()) else {
            return SEND;
        };
        let start = offset_of(v.seq, first, c.tx_hint);
        let end = start + v.payload.len() as u64;
        c.tx_hint = end;
        // Bytes from the binding's start on are framed: only its context
        // may send them (its NIC passes the bytes before `start` as they
        // are).
        let framed = c.tx.as_ref().is_some_and(|b| end > b.start);
        match &c.tx {
            Some(b) if framed && b.port == port && b.epoch == epoch => {
                self.counters.tx_tagged += 1;
                TxAction::Send {
                    flags: flags::OFFLOAD_TX,
                    context: b.context,
                }
            }
            Some(_) if framed => {
                c.held_for_port = true;
                hold(c, frame, &mut self.counters)
            }
            _ => SEND,
        }
    }

    /// A frame built while the port had no TX buffer. Dropping it is fine
    /// for TCP, but for a connection bound to a TX context it would leave a
    /// gap in what the NIC sees: keep it, to go out first.
    pub fn on_tx_no_buffer(&mut self, frame: &[u8]) {
        let Some(v) = parse_tcp(frame) else {
            return;
        };
        let tuple = Flow {
            local: v.src,
            remote: v.dst,
        };
        if let Some(c) = self.conns.get_mut(&tuple) {
            if c.tx.is_some() && !v.payload.is_empty() {
                hold(c, frame, &mut self.counters);
                self.held_dirty = true;
            }
        }
    }

    /// Something that decides where held frames may go changed.
    pub fn topology_changed(&mut self) {
        self.held_dirty = true;
    }

    /// Held frames to try again, once per change of bindings or topology.
    pub fn take_releasable(&mut self) -> Vec<Vec<u8>> {
        let dirty = std::mem::take(&mut self.held_dirty);
        // Frames held for want of a buffer are tried every poll; those held
        // for another port wait for a change.
        let mut out = Vec::new();
        for c in self.conns.values_mut() {
            let waiting_for_port = c.tx.is_some() && c.held_for_port;
            if c.held.is_empty() || (waiting_for_port && !dirty) {
                continue;
            }
            c.held_for_port = false;
            out.extend(c.held.drain(..));
        }
        out
    }

    /// A frame from a port, before the engine: what the NIC did to its
    /// payload, as the engine is to keep it. Only a connection bound to an
    /// RX context has marks (a frame opened by a context revoked since is
    /// plaintext all the same); any other frame is plain, whatever its
    /// descriptor claims.
    pub fn on_rx(&mut self, frame: &[u8], desc_flags: u32) -> Mark {
        let Some(v) = parse_tcp(frame) else {
            return Mark::Plain;
        };
        let tuple = Flow {
            local: v.dst,
            remote: v.src,
        };
        let bound = self.conns.get(&tuple).is_some_and(|c| c.rx.is_some());
        if !bound || v.payload.is_empty() {
            return Mark::Plain;
        }
        if desc_flags & (flags::OFFLOADED | flags::OFFLOAD_FAILED) != flags::OFFLOADED {
            return Mark::Plain;
        }
        self.counters.rx_decrypted += 1;
        Mark::Decrypted
    }

    /// A bound connection's out-of-order counts from TCP (all segments,
    /// NIC-marked ones), added to the table's counters as they grow.
    pub fn observe_rx(&mut self, t: &Flow, out_of_order: u64, marked: u64) {
        let Some(c) = self.conns.get_mut(t).filter(|c| c.rx.is_some()) else {
            return;
        };
        let (all, decrypted) = c.rx_ooo_seen;
        self.counters.rx_out_of_order += out_of_order.saturating_sub(all);
        self.counters.rx_out_of_order_decrypted += marked.saturating_sub(decrypted);
        c.rx_ooo_seen = (out_of_order, marked);
    }

    /// Binds TX; `start` is the stream offset of the first framed byte.
    pub fn bind_tx(&mut self, t: Flow, b: TxBinding) -> Result<(), &'static str> {
        let Some(c) = self.conns.get_mut(&t).filter(|c| c.tx_first.is_some()) else {
            return Err("the connection is not established");
        };
        if c.tx.is_some() {
            return Err("TX is already bound to a context");
        }
        c.tx = Some(b);
        self.held_dirty = true;
        Ok(())
    }

    /// Unbinds TX: the holder moved to software, and the stack rewrites
    /// the framed bytes in TCP's queue. Frames held back hold framed
    /// bytes (cleartext) and no context may send them now: they are
    /// dropped, and TCP sends their bytes again as rewritten. Returns the
    /// old binding.
    pub fn unbind_tx(&mut self, t: &Flow) -> Option<TxBinding> {
        let c = self.conns.get_mut(t)?;
        let old = c.tx.take();
        self.counters.tx_held_dropped += c.held.len() as u64;
        c.held.clear();
        c.held_for_port = false;
        old
    }

    /// Binds RX before the NIC makes the context: marks from the current
    /// receive point `enqueued` (a stream offset) on; the receive ring
    /// holds back bytes from there until `confirm_rx`. `ooo`: the
    /// connection's out-of-order counts now (all, marked).
    pub fn bind_rx(&mut self, t: Flow, enqueued: u64, ooo: (u64, u64)) -> Result<(), &'static str> {
        let Some(c) = self.conns.get_mut(&t) else {
            return Err("the connection is not established");
        };
        if let Some(rx) = &mut c.rx {
            if rx.active {
                return Err("RX is already bound to a context");
            }
            // Re-offload: the ring is already in chunk mode.
            rx.active = true;
            return Ok(());
        }
        c.rx = Some(RxBinding {
            start: enqueued,
            chunks_from: None,
            active: true,
        });
        c.rx_ooo_seen = ooo;
        Ok(())
    }

    /// The NIC made the RX context: the receive ring switches to marked
    /// chunks at `ring_offset` (unless it did before). Returns where chunks
    /// begin.
    pub fn confirm_rx(&mut self, t: &Flow, ring_offset: u64) -> Option<u64> {
        let rx = self.conns.get_mut(t)?.rx.as_mut()?;
        Some(*rx.chunks_from.get_or_insert(ring_offset))
    }

    /// The NIC refused: forget a binding that never switched the ring.
    pub fn cancel_rx(&mut self, t: &Flow) {
        if let Some(c) = self.conns.get_mut(t) {
            if c.rx.as_ref().is_some_and(|rx| rx.chunks_from.is_none()) {
                c.rx = None;
            } else if let Some(rx) = &mut c.rx {
                rx.active = false;
            }
        }
    }

    pub fn unbind_rx(&mut self, t: &Flow) {
        if let Some(rx) = self.conns.get_mut(t).and_then(|c| c.rx.as_mut()) {
            rx.active = false;
        }
    }
}

#[cfg(test)]
mod tests;
