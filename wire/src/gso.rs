//! TCP segmentation offload's two halves, one implementation for both sides
//! of a port: [`Merge`] joins consecutive segments of one flow into one
//! large frame (netsrv, before a port that segments; nicdrv's receive
//! coalescing), and [`Segments`] cuts such a frame into the frames that go
//! on the wire (nicdrv's transmit).
//!
//! A merged frame is its first segment with the others' payloads appended:
//! the first segment's headers, the IP length covering everything, and the
//! PSH and FIN of the last. Cut with the first segment's payload size it
//! gives back the segments that were merged, byte for byte, when their
//! IPv4 idents followed one another ([`Ident::Consecutive`]): each segment's
//! sequence number and ident follow from its place, its checksums are filled.
//!
//! Only the plain case is handled, as Linux's GRO does: Ethernet, IPv4
//! without options and not a fragment, or IPv6 with TCP as the next header,
//! and TCP with the IP length ending the frame (no padding). Anything else
//! is simply not merged (and not cut: [`CutError`]).

use crate::csum::{self, sum16};
use std::ops::Range;

const ETH: usize = 14;
const IPV4: usize = 20;
const IPV6: usize = 40;
const TCP_MIN: usize = 20;
const PROTO_TCP: u8 = 6;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const URG: u8 = 0x20;
const CWR: u8 = 0x80;

/// The largest frame a merge makes or a cut takes: an IPv4 packet of the
/// largest total length (an IPv6 one is held to the same size).
pub const MAX_FRAME: usize = ETH + 65535;
/// The longest headers a merged frame has: Ethernet, IPv6 and TCP with 40
/// bytes of options.
pub const MAX_HEADERS: usize = ETH + IPV6 + 60;
/// The smallest segment payload a cut accepts: bounds a frame to 1024
/// segments whatever a hostile sender asks for.
pub const MIN_SEGMENT: u16 = 64;

/// Where the parts of a plain TCP frame are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub v6: bool,
    /// Where the TCP header starts.
    pub l4: usize,
    /// Where the payload starts (the length of the headers).
    pub payload: usize,
}

impl Layout {
    /// Reads the layout of `frame`, a plain TCP frame whose IP length
    /// ends it; anything else is `None`.
    pub fn of(frame: &[u8]) -> Option<Layout> {
        if frame.len() < ETH + IPV4 + TCP_MIN || frame.len() > MAX_FRAME {
            return None;
        }
        let (v6, l4) = match u16::from_be_bytes([frame[12], frame[13]]) {
            0x0800 => {
                let ip = &frame[ETH..];
                let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
                let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
                if ip[0] != 0x45 || fragment || ip[9] != PROTO_TCP || ETH + total != frame.len() {
                    return None;
                }
                (false, ETH + IPV4)
            }
            0x86dd => {
                let ip = &frame[ETH..];
                if frame.len() < ETH + IPV6 + TCP_MIN {
                    return None;
                }
                let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
                if ip[0] >> 4 != 6 || ip[6] != PROTO_TCP || ETH + IPV6 + payload != frame.len() {
                    return None;
                }
                (true, ETH + IPV6)
            }
            _ => return None,
        };
        let header = usize::from(frame[l4 + 12] >> 4) * 4;
        if header < TCP_MIN || l4 + header > frame.len() {
            return None;
        }
        Some(Layout {
            v6,
            l4,
            payload: l4 + header,
        })
    }

    fn flags(&self, frame: &[u8]) -> u8 {
        frame[self.l4 + 13]
    }

    fn seq(&self, frame: &[u8]) -> u32 {
        read32(frame, self.l4 + 4)
    }
}

/// What a merge asks of IPv4 idents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ident {
    /// Each segment's is one more than the last's, so that the cut gives
    /// back the same frames (netsrv's own segments).
    Consecutive,
    /// Any (receive coalescing: the ident of a segment that is not a
    /// fragment means nothing).
    Any,
}

/// A merged frame being built in a buffer the caller owns. What it
/// compares later segments with is its own copy of the first segment's
/// headers, never the buffer (which a peer may be able to write).
#[derive(Clone, Debug)]
pub struct Merge {
    head: [u8; MAX_HEADERS],
    layout: Layout,
    /// The first segment's payload: every segment but the last has as much.
    size: usize,
    len: usize,
    max: usize,
    segments: u16,
    next_seq: u32,
    next_ident: Option<u16>,
    /// PSH and FIN of the last segment.
    last_flags: u8,
    closed: bool,
}

impl Merge {
    /// The layout of `frame` if it can lead a merged frame: a plain TCP
    /// segment with payload and no flag but ACK (pure ACKs, PSH, FIN and
    /// the rest go by themselves).
    pub fn leads(frame: &[u8]) -> Option<Layout> {
        let layout = Layout::of(frame)?;
        (frame.len() > layout.payload && layout.flags(frame) == ACK).then_some(layout)
    }

    /// Starts a merged frame with `frame` (copied to the front of `buf`,
    /// which must hold it) if it [`leads`](Self::leads) one. `max` bounds
    /// the merged frame's length.
    pub fn start(buf: &mut [u8], frame: &[u8], max: usize, ident: Ident) -> Option<Merge> {
        let layout = Self::leads(frame)?;
        let size = frame.len() - layout.payload;
        if frame.len() > max.min(buf.len()) {
            return None;
        }
        let mut head = [0u8; MAX_HEADERS];
        head[..layout.payload].copy_from_slice(&frame[..layout.payload]);
        buf[..frame.len()].copy_from_slice(frame);
        let next_ident = match (ident, layout.v6) {
            (Ident::Consecutive, false) => Some(read16(frame, ETH + 4).wrapping_add(1)),
            _ => None,
        };
        Some(Merge {
            head,
            layout,
            size,
            len: frame.len(),
            max: max.min(buf.len()).min(MAX_FRAME),
            segments: 1,
            next_seq: layout.seq(frame).wrapping_add(size as u32),
            next_ident,
            last_flags: 0,
            closed: false,
        })
    }

    /// Appends `frame`'s payload to the merged frame in `buf` if it
    /// continues it: the same headers but for the sequence number, the
    /// lengths, the ident and the checksums (and PSH or FIN, which end
    /// the merge); the next sequence number; at most as much payload as
    /// the first segment (less ends the merge); room left. False: `frame`
    /// was not taken.
    pub fn push(&mut self, buf: &mut [u8], frame: &[u8]) -> bool {
        let Some(range) = self.admits(frame) else {
            return false;
        };
        let n = range.len();
        buf[self.len..self.len + n].copy_from_slice(&frame[range]);
        self.len += n;
        self.segments += 1;
        self.next_seq = self.next_seq.wrapping_add(n as u32);
        self.next_ident = self.next_ident.map(|i| i.wrapping_add(1));
        self.last_flags = self.layout.flags(frame) & (PSH | FIN);
        self.closed = n < self.size || self.last_flags != 0;
        true
    }

    /// Where `frame`'s payload is, if it continues the merged frame.
    fn admits(&self, frame: &[u8]) -> Option<Range<usize>> {
        let l = self.layout;
        if self.closed || Layout::of(frame)? != l {
            return None;
        }
        let n = frame.len() - l.payload;
        if n == 0 || n > self.size || self.len + n > self.max || l.seq(frame) != self.next_seq {
            return None;
        }
        if l.flags(frame) & !(PSH | FIN) != ACK {
            return None;
        }
        if let Some(ident) = self.next_ident {
            if read16(frame, ETH + 4) != ident {
                return None;
            }
        }
        // Every header byte but those a segment's place decides.
        let h = &self.head[..l.payload];
        let f = &frame[..l.payload];
        let same = |r: Range<usize>| h[r.clone()] == f[r];
        let ip_same = if l.v6 {
            same(0..ETH + 4) && same(ETH + 6..l.l4)
        } else {
            same(0..ETH + 2) && same(ETH + 6..ETH + 10) && same(ETH + 12..l.l4)
        };
        let tcp_same =
            same(l.l4..l.l4 + 4) && same(l.l4 + 8..l.l4 + 13) && same(l.l4 + 14..l.l4 + 16);
        let rest_same = same(l.l4 + 18..l.payload);
        (ip_same && tcp_same && rest_same).then_some(l.payload..frame.len())
    }

    /// Writes the merged frame's headers into `buf` and returns its length:
    /// the first segment's, with the IP length of the whole, its IPv4
    /// checksum, and the last segment's PSH and FIN. The TCP checksum is
    /// the first segment's: a merged frame is handed on with its segments'
    /// checksums verified (receive) or to be filled when it is cut (send).
    pub fn finish(&self, buf: &mut [u8]) -> usize {
        let l = self.layout;
        let hdr = &mut buf[..l.payload];
        hdr.copy_from_slice(&self.head[..l.payload]);
        if l.v6 {
            write16(hdr, ETH + 4, (self.len - ETH - IPV6) as u16);
        } else {
            write16(hdr, ETH + 2, (self.len - ETH) as u16);
            write16(hdr, ETH + 10, 0);
            let sum = !sum16(&hdr[ETH..ETH + IPV4]);
            write16(hdr, ETH + 10, sum);
        }
        hdr[l.l4 + 13] |= self.last_flags;
        self.len
    }

    /// Segments merged so far.
    pub fn segments(&self) -> u16 {
        self.segments
    }

    /// The first segment's payload size: what the merged frame is cut into.
    pub fn size(&self) -> u16 {
        self.size as u16
    }

    /// No segment can follow (the last was short, or carried PSH or FIN).
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

/// Why a frame handed over for segmentation cannot be cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutError {
    /// Not a plain TCP frame whose IP length ends it.
    NotTcp,
    /// SYN, RST or URG: never part of a merged frame.
    Flags,
    /// A segment size under [`MIN_SEGMENT`], or one whose frames would not
    /// fit the MTU.
    Size,
    /// Nothing to cut.
    NoPayload,
}

impl std::fmt::Display for CutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CutError::NotTcp => "not a plain TCP frame",
            CutError::Flags => "SYN, RST or URG on a frame to segment",
            CutError::Size => "a segment size under the minimum or over the MTU",
            CutError::NoPayload => "a frame to segment without payload",
        })
    }
}

/// A large TCP frame cut into segments of `size` payload bytes.
#[derive(Clone, Copy, Debug)]
pub struct Segments {
    layout: Layout,
    size: usize,
    count: usize,
    len: usize,
}

impl Segments {
    /// Checks `frame` can be cut into segments of `size` payload bytes
    /// whose frames fit an IP MTU of `mtu`.
    pub fn new(frame: &[u8], size: u16, mtu: usize) -> Result<Segments, CutError> {
        let layout = Layout::of(frame).ok_or(CutError::NotTcp)?;
        if layout.flags(frame) & (SYN | RST | URG) != 0 {
            return Err(CutError::Flags);
        }
        let size = usize::from(size);
        if size < usize::from(MIN_SEGMENT) || layout.payload - ETH + size > mtu {
            return Err(CutError::Size);
        }
        let payload = frame.len() - layout.payload;
        if payload == 0 {
            return Err(CutError::NoPayload);
        }
        Ok(Segments {
            layout,
            size,
            count: payload.div_ceil(size),
            len: frame.len(),
        })
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// The bytes of all the segments' frames.
    pub fn wire_bytes(&self) -> usize {
        self.count * self.layout.payload + (self.len - self.layout.payload)
    }

    /// The length of segment `i`'s frame.
    pub fn frame_len(&self, i: usize) -> usize {
        let start = self.layout.payload + i * self.size;
        self.layout.payload + self.size.min(self.len - start)
    }

    /// Writes segment `i` (below [`count`](Self::count)) of `frame` into
    /// `out` (at least [`frame_len`](Self::frame_len) bytes) with its
    /// checksums filled; returns its length. `frame` must be the frame
    /// [`new`](Self::new) checked, its headers and length unchanged (its
    /// payload may have been sealed since).
    pub fn write(&self, frame: &[u8], i: usize, out: &mut [u8]) -> usize {
        let l = self.layout;
        let start = l.payload + i * self.size;
        let n = self.size.min(self.len - start);
        let len = l.payload + n;
        let out = &mut out[..len];
        out[..l.payload].copy_from_slice(&frame[..l.payload]);
        out[l.payload..].copy_from_slice(&frame[start..start + n]);
        if l.v6 {
            write16(out, ETH + 4, (len - ETH - IPV6) as u16);
        } else {
            write16(out, ETH + 2, (len - ETH) as u16);
            let ident = read16(frame, ETH + 4).wrapping_add(i as u16);
            write16(out, ETH + 4, ident);
        }
        let seq = l.seq(frame).wrapping_add((i * self.size) as u32);
        out[l.l4 + 4..l.l4 + 8].copy_from_slice(&seq.to_be_bytes());
        let mut flags = l.flags(frame);
        if i + 1 < self.count {
            flags &= !(PSH | FIN);
        }
        if i > 0 {
            flags &= !CWR;
        }
        out[l.l4 + 13] = flags;
        // Cannot fail: the layout was checked and is unchanged.
        let _ = csum::fill_tx(out);
        len
    }
}

/// A merged frame readied for a device that cuts it itself (a TAP with
/// virtio-net headers: [`crate::vnet::Header::tso`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceCut {
    pub v6: bool,
    /// The first segment carries CWR (the others must not).
    pub cwr: bool,
    /// Where the TCP header starts: the checksum's start.
    pub l4: u16,
    /// The headers' length.
    pub headers: u16,
    /// Each segment's payload.
    pub size: u16,
}

impl Segments {
    /// Readies `frame` (the frame [`new`](Self::new) checked) to be cut
    /// by a device, as Linux readies a GSO frame: its IPv4 header checksum
    /// filled and its TCP checksum partial, the pseudo-header's sum over
    /// the whole length, which the device adjusts and completes for each
    /// segment.
    pub fn for_device(&self, frame: &mut [u8]) -> DeviceCut {
        let l = self.layout;
        let tcp_len = (frame.len() - l.l4) as u64;
        let addrs = if l.v6 {
            ETH + 8..ETH + IPV6
        } else {
            write16(frame, ETH + 10, 0);
            let sum = !sum16(&frame[ETH..ETH + IPV4]);
            write16(frame, ETH + 10, sum);
            ETH + 12..ETH + IPV4
        };
        let mut acc = u64::from(sum16(&frame[addrs])) + u64::from(PROTO_TCP) + tcp_len;
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        write16(frame, l.l4 + 16, acc as u16);
        DeviceCut {
            v6: l.v6,
            cwr: l.flags(frame) & CWR != 0,
            l4: l.l4 as u16,
            headers: l.payload as u16,
            size: self.size as u16,
        }
    }
}

fn read16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn read32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn write16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests;
