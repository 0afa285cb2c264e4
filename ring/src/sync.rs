//! The atomics the ring protocol is written against.
//!
//! Under `--cfg loom` these are loom's model-checked atomics; otherwise the std ones, whose
//! in-memory representation equals that of the plain integers, so that they can live in memory
//! shared with another process.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// A cache line of its own, so that what one side writes never shares a line with what the
/// other side writes (no false sharing between producer and consumer). 128 bytes, not 64: x86's
/// adjacent-line prefetcher and some arm64 cores move lines in pairs (as crossbeam's
/// `CachePadded`); the benchmark measured single-item throughput at 0.66x of rtrb with 64 and
/// about 1.0x with 128.
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub struct CacheLine<T>(pub T);

impl<T> core::ops::Deref for CacheLine<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Size of the blocks that keep the two sides' indices apart (a pair of 64-byte lines).
pub(crate) const LINE: usize = 128;

/// Rounds `n` up to a whole number of cache lines.
pub(crate) const fn line_up(n: usize) -> usize {
    n.div_ceil(LINE) * LINE
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_whole_lines() {
        assert_eq!(core::mem::size_of::<CacheLine<AtomicU32>>(), LINE);
        assert_eq!(core::mem::align_of::<CacheLine<AtomicU64>>(), LINE);
        assert_eq!(line_up(0), 0);
        assert_eq!(line_up(1), LINE);
        assert_eq!(line_up(LINE), LINE);
    }

    #[test]
    fn atomics_have_the_layout_of_integers() {
        // Shared memory holds them; the peer sees plain integers.
        assert_eq!(core::mem::size_of::<AtomicU32>(), 4);
        assert_eq!(core::mem::align_of::<AtomicU64>(), 8);
    }
}
