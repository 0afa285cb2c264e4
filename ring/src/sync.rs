//! The atomics the ring protocol is written against.
//!
//! Under `--cfg loom` these are loom's model-checked atomics; otherwise the std ones, whose
//! in-memory representation equals that of the plain integers, so that they can live in memory
//! shared with another process.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// One cache line of its own, so that what one side writes never shares a line with what the
/// other side writes (no false sharing between producer and consumer).
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct CacheLine<T>(pub T);

impl<T> core::ops::Deref for CacheLine<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Size of a cache line on the machines we run on.
pub(crate) const LINE: usize = 64;

/// Rounds `n` up to a whole number of cache lines.
pub(crate) const fn line_up(n: usize) -> usize {
    n.div_ceil(LINE) * LINE
}
