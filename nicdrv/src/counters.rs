//! Port counters: one atomic per `PortCounters` field of `nic.capnp`.
//!
//! The data plane is the only writer, so an increment is a relaxed load and
//! store (no locked read-modify-write on the hot path); the control plane
//! reads a snapshot whenever `Nic.counters` is called.

use crate::offload::{KindCounters, KindSnapshot};
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($field:ident => $capnp:literal),* $(,)?) => {
        /// The live counters, shared between the data plane (writer) and the control plane.
        #[derive(Debug, Default)]
        pub struct Counters {
            $(pub $field: AtomicU64,)*
            /// Per offload kind (`PortCounters.offloads`).
            pub offload: KindCounters,
        }

        /// A copy of the counters at one moment.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Snapshot {
            $(pub $field: u64,)*
            pub offload: KindSnapshot,
        }

        impl Counters {
            pub fn snapshot(&self) -> Snapshot {
                Snapshot {
                    $($field: self.$field.load(Ordering::Relaxed),)*
                    offload: self.offload.snapshot(),
                }
            }
        }

        impl Snapshot {
            /// (capnp field name, value) pairs of the plain counters, in
            /// schema order.
            pub fn fields(&self) -> Vec<(&'static str, u64)> {
                vec![$(($capnp, self.$field),)*]
            }
        }
    };
}

counters! {
    rx_frames => "rxFrames",
    rx_bytes => "rxBytes",
    tx_frames => "txFrames",
    tx_bytes => "txBytes",
    rx_dropped => "rxDropped",
    rx_bad_checksum => "rxBadChecksum",
    rx_malformed => "rxMalformed",
    tx_dropped => "txDropped",
    tx_checksum_filled => "txChecksumFilled",
    rx_checksum_verified => "rxChecksumVerified",
    wire_lost => "wireLost",
    wire_reordered => "wireReordered",
    wire_duplicated => "wireDuplicated",
    wire_corrupted => "wireCorrupted",
    link_changes => "linkChanges",
    bad_descriptors => "badDescriptors",
    offload_contexts => "offloadContexts",
    offload_released => "offloadReleased",
    offload_tx_dropped => "offloadTxDropped",
    tx_segmented => "txSegmented",
    tx_segments => "txSegments",
    tx_segment_errors => "txSegmentErrors",
    rx_coalesced => "rxCoalesced",
    rx_coalesced_segments => "rxCoalescedSegments",
    tx_segmented_by_device => "txSegmentedByDevice",
    rx_coalesced_by_device => "rxCoalescedByDevice",
}

/// Adds `n` to a counter that only the calling thread writes.
#[inline]
pub fn add(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// Adds one to a counter that only the calling thread writes.
#[inline]
pub fn inc(c: &AtomicU64) {
    add(c, 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_reads_every_field() {
        let c = Counters::default();
        inc(&c.rx_frames);
        add(&c.rx_bytes, 60);
        inc(&c.bad_descriptors);
        let s = c.snapshot();
        assert_eq!(s.rx_frames, 1);
        assert_eq!(s.rx_bytes, 60);
        assert_eq!(s.bad_descriptors, 1);
        let f = s.fields();
        assert_eq!(f.len(), 26);
        assert_eq!(f[0], ("rxFrames", 1));
        assert_eq!(f[15], ("badDescriptors", 1));
        assert_eq!(f[18], ("offloadTxDropped", 0));
    }
}
