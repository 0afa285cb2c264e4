//! The frame pipeline between the port's rings and the device: on TX the
//! offload engines, checksum filling, faults and capture; on RX checksum
//! verification, the RX engines and capture.

use super::device::Device;
use super::*;

/// Everything the transmit path needs, borrowed apart from the port.
pub(super) struct TxPath<'a, D> {
    pub(super) device: &'a mut D,
    pub(super) shaper: &'a mut Shaper,
    pub(super) pcap: &'a mut Option<PcapWriter<BufWriter<File>>>,
    pub(super) c: &'a Counters,
    pub(super) mtu: u32,
    pub(super) csum_offload: bool,
    pub(super) link_up: bool,
    pub(super) offload: &'a mut Engines,
}

impl<D: Device> TxPath<'_, D> {
    /// One frame from the stack.
    pub(super) fn transmit(&mut self, frame: &mut [u8], desc: Desc, now: Instant) {
        let desc_flags = desc.flags;
        if !csum::frame_len_ok(frame.len(), self.mtu) {
            inc(&self.c.tx_dropped);
            return;
        }
        if !self.link_up {
            inc(&self.c.tx_dropped);
            return;
        }
        let mut fill = desc_flags & flags::TX_CSUM != 0 && self.csum_offload;
        if desc_flags & flags::OFFLOAD_TX != 0 {
            // Sealed in place, or dropped: the frame may hold cleartext.
            match self.offload.transmit(frame, desc.context, self.c) {
                TxAction::Send { changed } => fill |= changed,
                TxAction::Drop => return,
            }
        }
        if fill {
            match csum::fill_tx(frame) {
                Ok(true) => inc(&self.c.tx_checksum_filled),
                Ok(false) => {}
                Err(m) => tracing::debug!(%m, "TX_CSUM on a frame that does not parse; sent as is"),
            }
        }
        if let Some(p) = self.pcap.as_mut() {
            if let Err(e) = p.record(SystemTime::now(), frame) {
                tracing::warn!(%e, "capture write failed; capture stopped");
                *self.pcap = None;
            }
        }
        inc(&self.c.tx_frames);
        add(&self.c.tx_bytes, frame.len() as u64);
        let (device, c) = (&mut *self.device, self.c);
        self.shaper.transmit(frame, now, c, |f| device.send(f, c));
    }
}

/// Everything the receive path needs.
pub(super) struct RxPath<'a> {
    pub(super) port: &'a mut Option<Port>,
    pub(super) pcap: &'a mut Option<PcapWriter<BufWriter<File>>>,
    pub(super) c: &'a Counters,
    pub(super) mtu: u32,
    pub(super) csum_offload: bool,
    /// A descriptor from the stack was bad: end its session.
    pub(super) port_error: &'a mut Option<RingError>,
    pub(super) offload: &'a mut Engines,
    pub(super) events: &'a tokio::sync::mpsc::UnboundedSender<Event>,
}

impl RxPath<'_> {
    /// One frame from the device, to the stack. `frame` is private memory:
    /// it is checked and opened here, and only then copied into the
    /// stack's ring.
    pub(super) fn deliver(&mut self, frame: &mut [u8]) {
        if let Some(p) = self.pcap.as_mut() {
            if let Err(e) = p.record(SystemTime::now(), frame) {
                tracing::warn!(%e, "capture write failed; capture stopped");
                *self.pcap = None;
            }
        }
        if !csum::frame_len_ok(frame.len(), self.mtu) {
            inc(&self.c.rx_malformed);
            return;
        }
        let mut desc_flags = 0;
        if self.csum_offload {
            match csum::check_rx(frame) {
                Ok(RxCheck::Verified) => desc_flags = flags::CSUM_VERIFIED,
                Ok(RxCheck::Bad) => desc_flags = flags::CSUM_BAD,
                Ok(RxCheck::Unchecked) => {}
                Err(m) => {
                    tracing::trace!(%m, len = frame.len(), "malformed frame dropped");
                    inc(&self.c.rx_malformed);
                    return;
                }
            }
        }
        let Some(port) = self.port.as_mut() else {
            inc(&self.c.rx_dropped);
            return;
        };
        if self.port_error.is_some() {
            inc(&self.c.rx_dropped);
            return;
        }
        let mut b = match port.duplex.tx.alloc() {
            Ok(Some(b)) => b,
            Ok(None) => {
                inc(&self.c.rx_dropped);
                return;
            }
            Err(e) => {
                *self.port_error = Some(e);
                inc(&self.c.rx_dropped);
                return;
            }
        };
        if frame.len() > port.duplex.tx.buf_size() as usize {
            // The device's frames are larger than the stack's buffers.
            port.duplex.tx.free(b);
            inc(&self.c.rx_dropped);
            return;
        }
        let mut context = 0;
        if desc_flags == flags::CSUM_VERIFIED && !self.offload.is_empty() {
            // After the capture, which recorded the wire's bytes.
            let mark = self.offload.receive(frame, self.c);
            desc_flags |= mark.flags;
            context = mark.context;
            if let Some((id, tcp_seq)) = mark.resync_request {
                let _ = self.events.send(Event::ResyncRequest { id, tcp_seq });
            }
        }
        port.duplex.tx.buf_mut(&mut b)[..frame.len()].copy_from_slice(frame);
        port.duplex
            .tx
            .send(b, frame.len() as u32, desc_flags, context);
        if desc_flags & flags::CSUM_VERIFIED != 0 {
            inc(&self.c.rx_checksum_verified);
        } else if desc_flags & flags::CSUM_BAD != 0 {
            inc(&self.c.rx_bad_checksum);
        }
        inc(&self.c.rx_frames);
        add(&self.c.rx_bytes, frame.len() as u64);
    }
}
