//! The frame pipeline between the port's rings and the device: on TX the
//! offload engines, checksum filling, faults and capture; on RX checksum
//! verification, the RX engines and capture.

use super::device::Device;
use super::*;
use capnet_wire::gso;

/// Everything the transmit path needs, borrowed apart from the port.
pub(super) struct TxPath<'a, D> {
    pub(super) device: &'a mut D,
    pub(super) shaper: &'a mut Shaper,
    pub(super) pcap: &'a mut Option<PcapWriter<BufWriter<File>>>,
    pub(super) c: &'a Counters,
    pub(super) mtu: u32,
    pub(super) csum_offload: bool,
    /// The port offers TSO: merged frames are cut, not dropped.
    pub(super) segmentation: bool,
    pub(super) link_up: bool,
    pub(super) offload: &'a mut Engines,
    /// Where a segment of a merged frame is written.
    pub(super) out: &'a mut [u8],
}

impl<D: Device> TxPath<'_, D> {
    /// One frame from the stack: sent, or, if the stack merged it from
    /// segments (TSO), checked and handed back to be cut one segment at a
    /// time as the device has room ([`TxPath::segment`]).
    pub(super) fn transmit(&mut self, frame: &mut [u8], desc: Desc, now: Instant) -> Option<Cut> {
        let desc_flags = desc.flags;
        if !self.link_up {
            inc(&self.c.tx_dropped);
            return None;
        }
        // A merged frame is checked before any engine sees it.
        let segments = if desc_flags & flags::TSO != 0 {
            Some(self.segments(frame, desc_flags)?)
        } else if csum::frame_len_ok(frame.len(), self.mtu) {
            None
        } else {
            inc(&self.c.tx_dropped);
            return None;
        };
        let mut fill = desc_flags & flags::TX_CSUM != 0 && self.csum_offload;
        if desc_flags & flags::OFFLOAD_TX != 0 {
            // Sealed in place, or dropped: the frame may hold cleartext.
            // A merged frame is sealed whole, before it is cut.
            match self.offload.transmit(frame, desc.context, self.c) {
                TxAction::Send { changed } => fill |= changed,
                TxAction::Drop => return None,
            }
        }
        if let Some(segments) = segments {
            self.count_cut(&segments);
            // Faults act on the wire's frames: a device that cuts merged
            // frames itself gets them only when there are none.
            if self.device.cuts_merged() && self.shaper.is_clean() {
                self.emit_merged(frame, &segments);
                return None;
            }
            return Some(Cut {
                segments,
                next: 0,
                in_ring: false,
            });
        }
        if fill {
            match csum::fill_tx(frame) {
                Ok(true) => inc(&self.c.tx_checksum_filled),
                Ok(false) => {}
                Err(m) => tracing::debug!(%m, "TX_CSUM on a frame that does not parse; sent as is"),
            }
        }
        self.emit(frame, now);
        None
    }

    /// Whether a frame with these descriptor flags is cut straight from the
    /// stack's buffer, without a private copy: a merged frame no engine
    /// seals and no capture or fault must see, to a device that does not
    /// cut merged frames itself. Its layout is checked once on the shared
    /// bytes, and every later read of them uses only the checked offsets
    /// and length: what the stack writes meanwhile can change the bytes of
    /// its own segments, never their size (checksums are made over the
    /// bytes written).
    pub(super) fn cuts_in_place(&self, desc_flags: u32) -> bool {
        desc_flags & flags::TSO != 0
            && desc_flags & flags::OFFLOAD_TX == 0
            && self.writes_straight()
            && !self.device.cuts_merged()
    }

    /// Nothing must see or fault a frame on its way to the device (no
    /// capture, no fault), and the link is up: it can be written once,
    /// straight where the device takes it.
    fn writes_straight(&self) -> bool {
        self.link_up && self.pcap.is_none() && self.shaper.is_clean()
    }

    /// A merged frame [`cuts_in_place`](Self::cuts_in_place) chose, checked:
    /// cut it from the stack's buffer, which is kept until the last segment
    /// has gone.
    pub(super) fn transmit_in_place(&mut self, frame: &[u8], desc_flags: u32) -> Option<Cut> {
        let segments = self.segments(frame, desc_flags)?;
        self.count_cut(&segments);
        Some(Cut {
            segments,
            next: 0,
            in_ring: true,
        })
    }

    fn count_cut(&self, segments: &gso::Segments) {
        inc(&self.c.tx_segmented);
        add(&self.c.tx_segments, segments.count() as u64);
    }

    /// How a merged frame is cut; `None` (dropped, counted) if the port
    /// does not segment or the frame cannot be cut.
    fn segments(&self, frame: &[u8], desc_flags: u32) -> Option<gso::Segments> {
        let cut = if self.segmentation {
            gso::Segments::new(frame, flags::gso_size(desc_flags), self.mtu as usize)
                .map_err(|e| e.to_string())
        } else {
            Err("a TSO frame to a port that does not segment".into())
        };
        cut.map_err(|why| {
            tracing::debug!(why, len = frame.len(), "TSO frame dropped");
            inc(&self.c.tx_segment_errors);
            inc(&self.c.tx_dropped);
        })
        .ok()
    }

    /// The next segment of a merged frame (its checksums filled), into
    /// `out`, and onto the wire. True once the last has gone.
    pub(super) fn segment(&mut self, cut: &mut Cut, frame: &[u8], now: Instant) -> bool {
        if self.writes_straight() {
            // Written once, into the device's buffer.
            let (segments, i) = (cut.segments, cut.next);
            let len = segments.frame_len(i);
            inc(&self.c.tx_checksum_filled);
            inc(&self.c.tx_frames);
            add(&self.c.tx_bytes, len as u64);
            self.device.send_with(len, self.c, |out| {
                segments.write(frame, i, out);
            });
            cut.next += 1;
            return cut.next == cut.segments.count();
        }
        let out = std::mem::take(&mut self.out);
        let len = cut.segments.write(frame, cut.next, out);
        cut.next += 1;
        if self.link_up {
            inc(&self.c.tx_checksum_filled);
            self.emit(&mut out[..len], now);
        } else {
            inc(&self.c.tx_dropped);
        }
        self.out = out;
        cut.next == cut.segments.count()
    }

    /// A merged frame, whole, to a device that cuts it: captured and
    /// counted as the frames it becomes.
    fn emit_merged(&mut self, frame: &mut [u8], segments: &gso::Segments) {
        let cut = segments.for_device(frame);
        capture_cut(self.pcap, frame, segments, self.out);
        inc(&self.c.tx_segmented_by_device);
        add(&self.c.tx_frames, segments.count() as u64);
        add(&self.c.tx_bytes, segments.wire_bytes() as u64);
        self.device.send(frame, Some(&cut), self.c);
    }

    /// One frame of at most the MTU: captured, counted, and handed to the
    /// fault injection on its way to the device.
    fn emit(&mut self, frame: &mut [u8], now: Instant) {
        capture(self.pcap, frame);
        inc(&self.c.tx_frames);
        add(&self.c.tx_bytes, frame.len() as u64);
        let (device, c) = (&mut *self.device, self.c);
        self.shaper
            .transmit(frame, now, c, |f| device.send(f, None, c));
    }
}

/// Records the segments `frame` is cut into, if there is a capture: what
/// the wire carries, whoever cuts it. `out` holds a segment.
fn capture_cut(
    pcap: &mut Option<PcapWriter<BufWriter<File>>>,
    frame: &[u8],
    segments: &gso::Segments,
    out: &mut [u8],
) {
    for i in 0..segments.count() {
        if pcap.is_none() {
            return;
        }
        let len = segments.write(frame, i, out);
        capture(pcap, &out[..len]);
    }
}

/// Records `frame` in the capture, if there is one; a capture that cannot
/// be written is stopped.
fn capture(pcap: &mut Option<PcapWriter<BufWriter<File>>>, frame: &[u8]) {
    if let Some(p) = pcap.as_mut() {
        if let Err(e) = p.record(SystemTime::now(), frame) {
            tracing::warn!(%e, "capture write failed; capture stopped");
            *pcap = None;
        }
    }
}

/// A merged frame from the stack being cut into segments; the frame stays
/// in the data plane's private copy, or in the stack's buffer the port
/// holds, until the last has gone.
pub(super) struct Cut {
    segments: gso::Segments,
    next: usize,
    /// Cut from the stack's buffer ([`Port::cutting`]), not from a copy.
    pub(super) in_ring: bool,
}

/// Everything the receive path needs.
pub(super) struct RxPath<'a> {
    pub(super) port: &'a mut Option<Port>,
    pub(super) pcap: &'a mut Option<PcapWriter<BufWriter<File>>>,
    pub(super) c: &'a Counters,
    pub(super) mtu: u32,
    pub(super) csum_offload: bool,
    /// Coalesce in-order segments of a flow (GRO).
    pub(super) segmentation: bool,
    /// The frame being coalesced, in a buffer of the port's ring.
    pub(super) gro: Option<Gro>,
    /// A descriptor from the stack was bad: end its session.
    pub(super) port_error: &'a mut Option<RingError>,
    pub(super) offload: &'a mut Engines,
    pub(super) events: &'a tokio::sync::mpsc::UnboundedSender<Event>,
    /// Where a merged frame from the device is cut for the capture.
    pub(super) segment: &'a mut Vec<u8>,
    /// Where frames are coalesced while RX engines exist ([`Gro`]).
    pub(super) merged: &'a mut Vec<u8>,
}

/// Segments being coalesced into one frame for the stack, and what the
/// NIC did to them (only segments it did the same to are coalesced).
pub(super) struct Gro {
    /// A buffer of the port's ring the frame is built in; `None` while RX
    /// engines exist: then it is built in private memory
    /// (`RxPath::merged`), the engines open it whole when it is finished
    /// (a merged frame holds whole records, opened in one pass), and only
    /// then is it copied to the stack (which can write its ring's buffers).
    buf: Option<TxBuf>,
    merge: gso::Merge,
    flags: u32,
    context: u32,
}

impl RxPath<'_> {
    /// One frame from the device, to the stack, with what the device said
    /// of it. `frame` is private memory: it is checked and opened here,
    /// and only then copied into the stack's ring.
    pub(super) fn deliver(&mut self, frame: &mut [u8], what: Received) {
        match what.gso_size {
            Some(size) => self.deliver_merged(frame, size),
            None => {
                capture(self.pcap, frame);
                self.deliver_one(frame, what.verified);
            }
        }
    }

    /// A merged TCP frame from the device (Linux's, over a TAP), checked
    /// as a cut would check it, to the stack whole (through the RX
    /// engines). Linux hands up merged frames only to a TAP opened with
    /// offloads, which nicdrv does only for a port that segments (and so
    /// offloads checksums): on any other port one is refused.
    fn deliver_merged(&mut self, frame: &mut [u8], size: u16) {
        let cut = match self.segmentation {
            true => gso::Segments::new(frame, size, self.mtu as usize).map_err(|e| e.to_string()),
            false => Err("a merged frame on a port that does not segment".into()),
        };
        let segments = match cut {
            Ok(s) => s,
            Err(why) => {
                capture(self.pcap, frame);
                tracing::trace!(
                    why,
                    len = frame.len(),
                    "merged frame from the device refused"
                );
                inc(&self.c.rx_malformed);
                return;
            }
        };
        capture_cut(self.pcap, frame, &segments, self.segment);
        // What was being coalesced came first.
        self.finish();
        if self.port.is_none() || self.port_error.is_some() {
            inc(&self.c.rx_dropped);
            return;
        }
        let count = segments.count() as u64;
        let (mut desc_flags, context) = self.open(frame, flags::CSUM_VERIFIED);
        if count > 1 {
            desc_flags = flags::with_gso_size(desc_flags | flags::GRO, size);
        }
        if self.send(frame, desc_flags, context) {
            if count > 1 {
                inc(&self.c.rx_coalesced);
                inc(&self.c.rx_coalesced_by_device);
                add(&self.c.rx_coalesced_segments, count);
            }
            add(&self.c.rx_checksum_verified, count);
            add(&self.c.rx_frames, count);
            add(&self.c.rx_bytes, segments.wire_bytes() as u64);
        }
    }

    /// A frame of at most the MTU from the device; `verified` if the
    /// device vouched for its checksums.
    fn deliver_one(&mut self, frame: &mut [u8], verified: bool) {
        if !csum::frame_len_ok(frame.len(), self.mtu) {
            inc(&self.c.rx_malformed);
            return;
        }
        let mut desc_flags = 0;
        if self.csum_offload && verified {
            desc_flags = flags::CSUM_VERIFIED;
        } else if self.csum_offload {
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
        if self.port.is_none() || self.port_error.is_some() {
            inc(&self.c.rx_dropped);
            return;
        }
        let taken = match self.coalesce(frame, desc_flags) {
            Some(taken) => taken,
            None => {
                let (desc_flags, context) = self.open(frame, desc_flags);
                self.send(frame, desc_flags, context)
            }
        };
        if taken {
            if desc_flags & flags::CSUM_VERIFIED != 0 {
                inc(&self.c.rx_checksum_verified);
            } else if desc_flags & flags::CSUM_BAD != 0 {
                inc(&self.c.rx_bad_checksum);
            }
            inc(&self.c.rx_frames);
            add(&self.c.rx_bytes, frame.len() as u64);
        }
    }

    /// Hands a verified frame to the RX engines (after the capture, which
    /// recorded the wire's bytes): its flags with what they did, and the
    /// context that did it.
    fn open(&mut self, frame: &mut [u8], desc_flags: u32) -> (u32, u32) {
        if desc_flags != flags::CSUM_VERIFIED || self.offload.is_empty() {
            return (desc_flags, 0);
        }
        let mark = self.offload.receive(frame, self.c);
        if let Some((id, tcp_seq)) = mark.resync_request {
            let _ = self.events.send(Event::ResyncRequest { id, tcp_seq });
        }
        (desc_flags | mark.flags, mark.context)
    }

    /// Copies a frame into a buffer of the port's ring, to the stack.
    /// False: no buffer (counted).
    fn send(&mut self, frame: &[u8], desc_flags: u32, context: u32) -> bool {
        let Some(mut b) = self.alloc(frame.len()) else {
            return false;
        };
        let Some(port) = self.port.as_mut() else {
            return false;
        };
        port.duplex.tx.buf_mut(&mut b)[..frame.len()].copy_from_slice(frame);
        port.duplex
            .tx
            .send(b, frame.len() as u32, desc_flags, context);
        true
    }

    /// Adds a verified frame to the frame being coalesced, or starts one
    /// with it: whether it was taken (false: no buffer, counted). `None`:
    /// the frame goes to the stack by itself (after what was being
    /// coalesced), through the RX engines.
    fn coalesce(&mut self, frame: &[u8], desc_flags: u32) -> Option<bool> {
        if let Some(g) = self.gro.as_mut() {
            let port = self.port.as_mut()?;
            let buf = match g.buf.as_mut() {
                Some(b) => port.duplex.tx.buf_mut(b),
                None => &mut self.merged[..],
            };
            if g.flags == desc_flags && g.merge.push(buf, frame) {
                if g.merge.is_closed() {
                    self.finish();
                }
                return Some(true);
            }
            self.finish();
        }
        if !self.segmentation || desc_flags & flags::CSUM_VERIFIED == 0 {
            return None;
        }
        // Only a frame that can lead takes a buffer here: a pure ACK, say,
        // goes by itself without a buffer taken and given back first.
        gso::Merge::leads(frame)?;
        let mut buf = None;
        if self.offload.is_empty() {
            match self.alloc(frame.len()) {
                Some(b) => buf = Some(b),
                None => return Some(false),
            }
        }
        let Some(port) = self.port.as_mut() else {
            return Some(false);
        };
        let cap = port.duplex.tx.buf_size() as usize;
        let dst = match buf.as_mut() {
            Some(b) => port.duplex.tx.buf_mut(b),
            None => &mut self.merged[..],
        };
        match gso::Merge::start(dst, frame, cap, gso::Ident::Any) {
            Some(merge) => {
                self.gro = Some(Gro {
                    buf,
                    merge,
                    flags: desc_flags,
                    context: 0,
                });
                Some(true)
            }
            None => {
                if let Some(b) = buf {
                    port.duplex.tx.free(b);
                }
                None
            }
        }
    }

    /// Hands the frame being coalesced to the stack (through the RX
    /// engines, if it was built in private memory).
    pub(super) fn finish(&mut self) {
        let Some(g) = self.gro.take() else { return };
        let Some(port) = self.port.as_mut() else {
            return;
        };
        let segments = g.merge.segments();
        let mut desc_flags = g.flags;
        if segments > 1 {
            desc_flags = flags::with_gso_size(desc_flags | flags::GRO, g.merge.size());
            inc(&self.c.rx_coalesced);
            add(&self.c.rx_coalesced_segments, u64::from(segments));
        }
        match g.buf {
            Some(mut buf) => {
                let len = g.merge.finish(port.duplex.tx.buf_mut(&mut buf));
                port.duplex.tx.send(buf, len as u32, desc_flags, g.context);
            }
            None => {
                let mut merged = std::mem::take(self.merged);
                let len = g.merge.finish(&mut merged);
                let (opened, context) = self.open(&mut merged[..len], g.flags);
                self.send(&merged[..len], desc_flags | opened, context);
                *self.merged = merged;
            }
        }
    }

    /// A buffer of the port's ring for a frame of `len` bytes to the
    /// stack; counted as a drop when there is none.
    fn alloc(&mut self, len: usize) -> Option<TxBuf> {
        let port = self.port.as_mut()?;
        match port.duplex.tx.alloc() {
            Ok(Some(b)) if port.duplex.tx.buf_size() as usize >= len => Some(b),
            Ok(Some(b)) => {
                // The device's frames are larger than the stack's buffers.
                port.duplex.tx.free(b);
                inc(&self.c.rx_dropped);
                None
            }
            Ok(None) => {
                inc(&self.c.rx_dropped);
                None
            }
            Err(e) => {
                *self.port_error = Some(e);
                inc(&self.c.rx_dropped);
                None
            }
        }
    }
}
