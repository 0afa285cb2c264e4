//! A NIC port as the TCP/IP engine sees it: frames in and out of the port's
//! shared-memory rings.
//!
//! The driver can write its buffers at any time, so nothing here parses
//! them in place: a received frame is copied out of its buffer once (the
//! buffer goes back to the driver at once) and the engine, the checksum check
//! and the offload path see only that private copy; a frame to send is built
//! in private memory, judged there, and copied into a ring buffer. A copy of
//! at most one MTU per frame is what a peer that changes lengths between a
//! check and a use costs. Descriptors are published in batches: `flush` runs
//! once per stack poll, so the driver's doorbell rings at most once per batch
//! and only when the driver asked for it.

use crate::offload::{OffloadTable, TxAction};
use capnet_ring::{flags, ChannelSender, Desc, Duplex, RingError, TxBuf};
use capnet_wire::{csum, gso};
use std::cell::RefCell;
use std::rc::Rc;

/// Per-port counters kept by the stack side.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeviceCounters {
    pub rx_frames: u64,
    pub tx_frames: u64,
    /// Frames with a bad checksum (the driver's verdict or ours) or, when
    /// checked here, malformed headers; dropped.
    pub rx_bad_checksum: u64,
    /// Frames the engine wanted to send while every TX buffer was in flight.
    pub tx_no_buffer: u64,
}

impl DeviceCounters {
    pub fn add(&mut self, o: &DeviceCounters) {
        self.rx_frames += o.rx_frames;
        self.tx_frames += o.tx_frames;
        self.rx_bad_checksum += o.rx_bad_checksum;
        self.tx_no_buffer += o.tx_no_buffer;
    }
}

pub struct RingDevice {
    duplex: Duplex,
    /// One TX buffer taken ahead, so that `transmit` can say "no buffer"
    /// before the engine builds a frame, without leaking buffers of unused tokens.
    spare: Option<TxBuf>,
    mtu: usize,
    checksum_offload: bool,
    /// The driver cuts merged frames (TSO) and coalesces received ones.
    segmentation: bool,
    /// Segments being merged into one frame in a TX buffer; sent when a
    /// frame that does not continue it comes, or at `flush`.
    merging: Option<Merging>,
    /// The first contract violation seen from the driver; the port is dead
    /// after it.
    fault: Option<RingError>,
    /// The fault was reported by [`Self::take_new_fault`].
    fault_told: bool,
    pub counters: DeviceCounters,
    /// Frames moved since the last `take_activity`.
    activity: u64,
    offload: Option<OffloadHook>,
    /// The private copy of the last frame from `next_rx`.
    rx_frame: Vec<u8>,
    /// Where transmitted frames are built before they are copied out.
    tx_frame: Vec<u8>,
}

/// A received frame, copied out of the ring: its bytes are
/// [`RingDevice::rx_data`] until the next [`RingDevice::next_rx`].
#[derive(Debug)]
pub struct RxFrame {
    desc: Desc,
}

impl RxFrame {
    /// What the NIC said about the frame.
    pub fn desc(&self) -> Desc {
        self.desc
    }
}

/// What the TX path needs to judge frames of offload-bound connections.
#[derive(Clone, Debug)]
pub struct OffloadHook {
    pub table: Rc<RefCell<OffloadTable>>,
    pub port: Rc<str>,
    pub epoch: u32,
}

impl RingDevice {
    /// `mtu` is the IP MTU; Ethernet frames are 14 bytes longer.
    pub fn new(
        duplex: Duplex,
        mtu: usize,
        checksum_offload: bool,
        segmentation: bool,
    ) -> RingDevice {
        RingDevice {
            duplex,
            spare: None,
            mtu,
            checksum_offload,
            segmentation: segmentation && checksum_offload,
            merging: None,
            fault: None,
            fault_told: false,
            counters: DeviceCounters::default(),
            activity: 0,
            offload: None,
            rx_frame: Vec::new(),
            tx_frame: Vec::new(),
        }
    }

    /// Every frame built for this port from now on passes the offload
    /// table (tagging, replacement, hold).
    pub fn set_offload(&mut self, hook: OffloadHook) {
        self.offload = Some(hook);
    }

    /// Sends in-flight descriptors and returned ones so far (for the drain:
    /// the driver returns buffers in order).
    pub fn tx_progress(&mut self) -> (u64, u64) {
        self.finish_merge();
        // Take back what the driver returned: a port no frame is sent on
        // any more (the bond moved away) never reclaims otherwise.
        if let Err(e) = self.duplex.tx.reclaim_returned() {
            self.record(e);
        }
        let in_flight = self.duplex.tx.in_flight() as u64;
        (
            self.counters.tx_frames,
            self.counters.tx_frames.saturating_sub(in_flight),
        )
    }

    pub fn fault(&self) -> Option<&RingError> {
        self.fault.as_ref()
    }

    /// True once, after the driver broke the ring contract.
    pub fn take_new_fault(&mut self) -> bool {
        let new = self.fault.is_some() && !self.fault_told;
        self.fault_told |= new;
        new
    }

    fn record(&mut self, err: RingError) {
        if self.fault.is_none() {
            tracing::error!(%err, "NIC driver broke the ring contract; port disabled");
            self.fault = Some(err);
        }
    }

    /// Sends the frame being merged, if any.
    fn finish_merge(&mut self) {
        finish_merge(&mut self.duplex.tx, &mut self.merging, &mut self.counters);
    }

    /// Publishes staged descriptors and rings the driver if it asked.
    pub fn flush(&mut self) {
        if self.fault.is_some() {
            return;
        }
        self.finish_merge();
        let tx = self.duplex.tx.flush();
        let rx = self.duplex.rx.flush();
        match (tx, rx) {
            (Ok(a), Ok(b)) => {
                if a || b {
                    self.duplex.wake_peer.ring();
                }
            }
            (Err(e), _) | (_, Err(e)) => self.record(e),
        }
    }

    /// True if frames moved since the last call.
    pub fn take_activity(&mut self) -> bool {
        std::mem::take(&mut self.activity) > 0
    }

    /// Asks the driver for a doorbell on new RX frames or returned TX
    /// buffers, then re-checks; true if there is work after all.
    pub fn arm(&mut self) -> bool {
        if self.fault.is_some() {
            return false;
        }
        self.duplex.rx.request_signal();
        self.duplex.tx.request_signal();
        if !self.duplex.rx.is_empty() {
            self.duplex.rx.cancel_signal();
            self.duplex.tx.cancel_signal();
            return true;
        }
        false
    }

    pub fn doorbell(&self) -> &capnet_ring::Doorbell {
        &self.duplex.wake_me
    }

    /// TCP payload bytes the receive ring holds when full: a segment of at
    /// most MTU - 40 bytes per buffer, or with segmentation offload a
    /// coalesced frame of up to a buffer's size.
    pub fn rx_ring_payload(&self) -> usize {
        let layout = self.duplex.rx.layout();
        let per_buffer = match self.segmentation {
            true => (layout.buf_size as usize).saturating_sub(54),
            false => self.mtu.saturating_sub(40),
        };
        layout.buffers as usize * per_buffer
    }

    /// Takes a TX buffer ahead for the next token; false if none is free.
    pub fn reserve_tx(&mut self) -> bool {
        self.fault.is_none() && self.take_tx_buffer()
    }

    fn take_tx_buffer(&mut self) -> bool {
        if self.spare.is_some() {
            return true;
        }
        match self.duplex.tx.alloc() {
            Ok(Some(buf)) => {
                self.spare = Some(buf);
                true
            }
            Ok(None) => {
                self.counters.tx_no_buffer += 1;
                false
            }
            Err(e) => {
                self.record(e);
                false
            }
        }
    }

    /// With offload on, netsrv checks no checksum: trust the driver's
    /// verdict where it gave one, and check in software where it could not
    /// (fragments, extension headers, protocols it does not parse).
    fn checksum_ok(&self, desc: Desc) -> bool {
        let f = desc.flags;
        if f & flags::CSUM_BAD != 0 {
            return false;
        }
        if !self.checksum_offload || f & flags::CSUM_VERIFIED != 0 {
            return true;
        }
        software_checksum_ok(&self.rx_frame)
    }

    fn tx_flags(&self) -> u32 {
        if self.checksum_offload {
            flags::TX_CSUM
        } else {
            0
        }
    }
}

/// The check a driver with checksum offload makes (one implementation,
/// `capnet_wire::csum`, serves both): a frame with a wrong checksum or
/// headers whose lengths do not add up is dropped; one the check does not
/// cover (not IP, fragments, other protocols) passes to the engine.
pub fn software_checksum_ok(frame: &[u8]) -> bool {
    matches!(
        csum::check_rx(frame),
        Ok(csum::RxCheck::Verified | csum::RxCheck::Unchecked)
    )
}

/// Segments of one flow merged in a TX buffer (see `capnet_wire::gso`),
/// with the descriptor flags and context they all had.
struct Merging {
    buf: TxBuf,
    merge: gso::Merge,
    flags: u32,
    context: u32,
}

/// Sends the merged frame: flagged TSO with its segment size if it holds
/// more than one segment, else as the plain frame it is. (The driver
/// counts what it cuts: `PortCounters.txSegmented`.)
fn finish_merge(tx: &mut ChannelSender, merging: &mut Option<Merging>, c: &mut DeviceCounters) {
    let Some(mut m) = merging.take() else { return };
    let len = m.merge.finish(tx.buf_mut(&mut m.buf));
    let mut desc_flags = m.flags;
    if m.merge.segments() > 1 {
        desc_flags = flags::with_gso_size(desc_flags | flags::TSO, m.merge.size());
    }
    tx.send(m.buf, len as u32, desc_flags, m.context);
    c.tx_frames += 1;
}

/// A frame to send on this port: built in private memory, judged by the
/// offload path, then copied into a ring buffer (or merged into the frame
/// in one, when the driver segments).
pub struct TxToken<'a> {
    tx: &'a mut ChannelSender,
    spare: &'a mut Option<TxBuf>,
    /// `Some` when the driver segments: the frame being merged.
    merging: Option<&'a mut Option<Merging>>,
    /// Private memory the frame is built in.
    build: &'a mut Vec<u8>,
    flags: u32,
    counters: &'a mut DeviceCounters,
    offload: Option<&'a OffloadHook>,
}

impl TxToken<'_> {
    /// Builds a `len`-byte frame with `f` and sends it (or drops and counts
    /// it when the token has no buffer).
    pub fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        // The engine builds the frame in private memory, where the offload
        // path may read and change it; only the finished frame is copied
        // into the ring, where the driver can write.
        if self.build.len() < len {
            self.build.resize(len, 0);
        }
        let frame = &mut self.build[..len];
        let result = f(frame);
        // `transmit` only hands out a token with a spare buffer in hand; a
        // reply token from `receive` may have none, and its frame is dropped.
        let Some(mut buf) = self.spare.take() else {
            self.counters.tx_no_buffer += 1;
            if let Some(h) = self.offload {
                h.table.borrow_mut().on_tx_no_buffer(frame);
            }
            return result;
        };
        if len > self.tx.buf_size() as usize {
            // Never with a driver whose MTU passed `driver::check_port`.
            self.counters.tx_no_buffer += 1;
            self.tx.free(buf);
            return result;
        }
        let verdict = match self.offload {
            Some(h) => h.table.borrow_mut().on_tx(frame, &h.port, h.epoch),
            None => TxAction::Send {
                flags: 0,
                context: 0,
            },
        };
        match verdict {
            TxAction::Send { flags, context } => {
                let desc_flags = self.flags | flags;
                let Some(merging) = self.merging else {
                    self.tx.buf_mut(&mut buf)[..len].copy_from_slice(frame);
                    self.tx.send(buf, len as u32, desc_flags, context);
                    self.counters.tx_frames += 1;
                    return result;
                };
                if let Some(m) = merging.as_mut() {
                    let same = m.flags == desc_flags && m.context == context;
                    if same && m.merge.push(self.tx.buf_mut(&mut m.buf), frame) {
                        // The buffer in hand stays for the next frame.
                        *self.spare = Some(buf);
                        if m.merge.is_closed() {
                            finish_merge(self.tx, merging, self.counters);
                        }
                        return result;
                    }
                    finish_merge(self.tx, merging, self.counters);
                }
                let cap = self.tx.buf_size() as usize;
                let dst = self.tx.buf_mut(&mut buf);
                match gso::Merge::start(dst, frame, cap, gso::Ident::Consecutive) {
                    Some(merge) => {
                        *merging = Some(Merging {
                            buf,
                            merge,
                            flags: desc_flags,
                            context,
                        });
                    }
                    None => {
                        dst[..len].copy_from_slice(frame);
                        self.tx.send(buf, len as u32, desc_flags, context);
                        self.counters.tx_frames += 1;
                    }
                }
            }
            // Copied into the hold queue; the buffer goes back unused.
            TxAction::Hold => self.tx.free(buf),
        }
        result
    }
}

impl RingDevice {
    /// The next received frame that passed the checksum check, copied out
    /// of its ring buffer (which is given back to the driver).
    pub fn next_rx(&mut self) -> Option<RxFrame> {
        if self.fault.is_some() {
            return None;
        }
        let desc = loop {
            match self.duplex.rx.recv() {
                Ok(Some(buf)) => {
                    let desc = buf.desc();
                    self.rx_frame.clear();
                    self.rx_frame.extend_from_slice(self.duplex.rx.data(&buf));
                    self.duplex.rx.release(buf);
                    if self.checksum_ok(desc) {
                        break desc;
                    }
                    self.counters.rx_bad_checksum += 1;
                }
                Ok(None) => return None,
                Err(e) => {
                    self.record(e);
                    return None;
                }
            }
        };
        self.counters.rx_frames += 1;
        self.activity += 1;
        Some(RxFrame { desc })
    }

    /// The bytes of the frame from the last `next_rx` (a private copy).
    /// Hands the frame from the last `next_rx` to `into` (the buffers are
    /// swapped: no copy).
    pub fn take_rx(&mut self, _frame: RxFrame, into: &mut Vec<u8>) {
        std::mem::swap(&mut self.rx_frame, into);
    }

    pub fn rx_data(&self, _frame: &RxFrame) -> &[u8] {
        &self.rx_frame
    }

    /// A transmit token that may have no buffer (its frame is then dropped
    /// and counted), for replies.
    pub fn reply_token(&mut self) -> TxToken<'_> {
        if self.fault.is_none() {
            self.take_tx_buffer();
        }
        let flags = self.tx_flags();
        TxToken {
            tx: &mut self.duplex.tx,
            spare: &mut self.spare,
            merging: self.segmentation.then_some(&mut self.merging),
            build: &mut self.tx_frame,
            flags,
            counters: &mut self.counters,
            offload: self.offload.as_ref(),
        }
    }

    /// A transmit token with a buffer in hand, or `None` when every TX
    /// buffer is in flight.
    pub fn tx_token(&mut self) -> Option<TxToken<'_>> {
        if self.fault.is_some() || !self.take_tx_buffer() {
            return None;
        }
        self.activity += 1;
        Some(self.reply_token())
    }

    /// Copies of the frames the driver never gave back, oldest first, with
    /// their descriptor flags: after the driver died, frames it may not
    /// have put on the wire. Nothing from a driver that broke the contract.
    pub fn unreturned_frames(&mut self) -> Vec<(Vec<u8>, u32)> {
        if self.fault.is_some() {
            return Vec::new();
        }
        self.finish_merge();
        self.duplex.tx.unreturned_frames()
    }

    /// Copies of the frames received and not yet handed to the stack, with
    /// their descriptors (what the NIC did to them).
    pub fn drain_rx(&mut self) -> Vec<(Vec<u8>, capnet_ring::Desc)> {
        let mut out = Vec::new();
        while let Some(frame) = self.next_rx() {
            out.push((self.rx_data(&frame).to_vec(), frame.desc()));
        }
        out
    }

    /// Carrier as the driver last set it in the shared region.
    pub fn carrier(&self) -> bool {
        self.duplex.carrier()
    }

    pub fn mtu(&self) -> usize {
        self.mtu
    }

    pub fn checksum_offload(&self) -> bool {
        self.checksum_offload
    }
}

#[cfg(test)]
mod tests {
    use super::software_checksum_ok;
    use crate::test_frames::udp_frame as frame;
    use std::net::Ipv4Addr;

    /// An Ethernet/IPv4/UDP frame with correct checksums.
    fn udp_frame() -> Vec<u8> {
        let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        frame(src, dst, (1, 2), b"checksum me")
    }

    #[test]
    fn good_frames_pass_and_flipped_bits_fail() {
        let frame = udp_frame();
        assert!(software_checksum_ok(&frame));
        for i in 14..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 0x10;
            // A flip in a checksummed field is caught (length fields may
            // instead make the frame unparsable, which the engine drops).
            if software_checksum_ok(&bad) {
                assert!(matches!(i, 16..=17 | 38..=39), "flip at {i} went unnoticed");
            }
        }
    }

    #[test]
    fn junk_never_panics() {
        for len in 0..80 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let _ = software_checksum_ok(&junk);
        }
    }
}
