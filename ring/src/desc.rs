//! Buffer descriptors, as in seL4 sDDF: `{offset, len, flags, context}`.
//!
//! A descriptor names a buffer by its offset in the channel's data area. In a queue slot it is
//! stored as two relaxed `AtomicU64` words, so that reading a slot the peer may be scribbling on
//! is a well-defined (if meaningless) value rather than a data race; the receiver validates it.

use crate::sync::{AtomicU64, Ordering};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Desc {
    /// Byte offset of the buffer in the channel's data area.
    pub offset: u32,
    /// Bytes of the buffer in use.
    pub len: u32,
    /// What the NIC did (RX) or must do (TX): see [`flags`].
    pub flags: u32,
    /// Offload context the frame belongs to (0: none).
    pub context: u32,
}

/// What the NIC did / must do.
pub mod flags {
    /// RX: driver verified IP/L4 checksums.
    pub const CSUM_VERIFIED: u32 = 1 << 0;
    /// RX: driver found a bad checksum (frame still delivered for counting).
    pub const CSUM_BAD: u32 = 1 << 1;
    /// TX: driver must fill IP/L4 checksums.
    pub const TX_CSUM: u32 = 1 << 2;
    /// TX: the offload context named by `context` must process the frame
    /// (else the driver drops it, since it may hold cleartext): tlsTx seals
    /// the records framed in it; ESP kinds encrypt or encapsulate it.
    pub const OFFLOAD_TX: u32 = 1 << 3;
    /// RX: the offload context named by `context` processed this frame, and
    /// all went well: tlsRx opened (decrypted and authenticated so far)
    /// every TLS byte of it; ESP kinds removed ESP with the ICV good;
    /// nvmeTcpRx placed its payload with the data digest good.
    pub const OFFLOADED: u32 = 1 << 4;
    /// RX, with [`OFFLOADED`]: the context processed the frame and its check
    /// failed (ESP ICV or replay, NVMe/TCP data digest); the frame is as it
    /// came from the wire. tlsRx never sets it: a record that fails to
    /// authenticate is left for the holder's software path to judge.
    pub const OFFLOAD_FAILED: u32 = 1 << 5;
    /// TX: a TCP frame merged from segments (`capnet_wire::gso`): the
    /// driver cuts it into segments of [`gso_size`] payload bytes and fills
    /// their checksums (TSO). Only to a port that offers segmentation.
    pub const TSO: u32 = 1 << 6;
    /// RX: a TCP frame the driver coalesced from segments of [`gso_size`]
    /// payload bytes (GRO), their checksums verified.
    pub const GRO: u32 = 1 << 7;

    /// The segment size a [`TSO`] or [`GRO`] frame carries in the top half.
    pub const fn gso_size(flags: u32) -> u16 {
        (flags >> 16) as u16
    }

    /// `flags` with the segment size `size`.
    pub const fn with_gso_size(flags: u32, size: u16) -> u32 {
        (flags & 0xffff) | ((size as u32) << 16)
    }
}

/// One queue slot: a descriptor packed into two words.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Slot {
    lo: AtomicU64,
    hi: AtomicU64,
}

impl Slot {
    /// A zeroed slot (loom atomics have no `const fn new`).
    pub(crate) fn new() -> Slot {
        Slot {
            lo: AtomicU64::new(0),
            hi: AtomicU64::new(0),
        }
    }

    /// Relaxed: the queue index store that follows publishes it.
    #[inline]
    pub(crate) fn store(&self, d: Desc) {
        self.lo.store(pack(d.offset, d.len), Ordering::Relaxed);
        self.hi.store(pack(d.flags, d.context), Ordering::Relaxed);
    }

    /// Relaxed: the queue index load before it acquired the producer's stores.
    #[inline]
    pub(crate) fn load(&self) -> Desc {
        let (offset, len) = unpack(self.lo.load(Ordering::Relaxed));
        let (flags, context) = unpack(self.hi.load(Ordering::Relaxed));
        Desc {
            offset,
            len,
            flags,
            context,
        }
    }
}

#[inline]
fn pack(a: u32, b: u32) -> u64 {
    u64::from(a) | (u64::from(b) << 32)
}

#[inline]
fn unpack(w: u64) -> (u32, u32) {
    (w as u32, (w >> 32) as u32)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn slot_round_trips_every_field() {
        let s = Slot::new();
        let d = Desc {
            offset: 0xdead_beef,
            len: u32::MAX,
            flags: flags::CSUM_VERIFIED | flags::TX_CSUM,
            context: 7,
        };
        s.store(d);
        assert_eq!(s.load(), d);
    }

    #[test]
    fn desc_is_sixteen_bytes() {
        assert_eq!(core::mem::size_of::<Desc>(), 16);
        assert_eq!(core::mem::size_of::<Slot>(), 16);
    }

    #[test]
    fn flags_are_distinct_bits() {
        let all = [
            flags::CSUM_VERIFIED,
            flags::CSUM_BAD,
            flags::TX_CSUM,
            flags::OFFLOAD_TX,
            flags::OFFLOADED,
            flags::OFFLOAD_FAILED,
            flags::TSO,
            flags::GRO,
        ];
        for (i, a) in all.iter().enumerate() {
            assert_eq!(a.count_ones(), 1);
            assert_eq!(flags::gso_size(*a), 0);
            for b in &all[i + 1..] {
                assert_eq!(a & b, 0);
            }
        }
    }

    #[test]
    fn the_segment_size_rides_in_the_top_half() {
        let f = flags::with_gso_size(flags::TSO | flags::TX_CSUM, 1448);
        assert_eq!(flags::gso_size(f), 1448);
        assert_eq!(f & 0xffff, flags::TSO | flags::TX_CSUM);
        assert_eq!(flags::gso_size(flags::with_gso_size(f, 9000)), 9000);
    }
}
