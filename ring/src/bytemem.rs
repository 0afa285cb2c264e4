//! Where a byte ring lives: the [`ByteMem`] contract, and its heap
//! implementation for tests, benchmarks and loom ([`crate::shm`] has the
//! shared-memory one).

use std::cell::UnsafeCell;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::bytering::{check_capacity, ByteHeader, ByteReader, ByteWriter};
use crate::error::RingError;

/// The memory a byte ring lives in by default: shared memory, or the heap under loom.
#[cfg(not(loom))]
pub type DefaultBytes = crate::shm::ShmBytes;
/// The memory a byte ring lives in by default: shared memory, or the heap under loom.
#[cfg(loom)]
pub type DefaultBytes = HeapBytes;

/// Where a byte ring's header and data live.
///
/// # Safety
/// `data()` must point to `capacity()` bytes (a valid capacity) that stay valid and are touched
/// by nobody but the ring's writer and reader for as long as the value lives.
pub unsafe trait ByteMem {
    fn header(&self) -> &ByteHeader;
    fn data(&self) -> NonNull<u8>;
    fn capacity(&self) -> u32;
    /// Hook for loom: records an access to bytes `[at, at + len)` so that loom can check that the
    /// index protocol orders it against the other side's accesses. A no-op elsewhere.
    #[inline]
    fn track(&self, _at: u32, _len: usize, _write: bool) {}
}

/// A byte ring in heap memory: for tests, benchmarks and loom.
#[derive(Clone, Debug)]
pub struct HeapBytes(Arc<HeapBytesInner>);

#[derive(Debug)]
struct HeapBytesInner {
    header: ByteHeader,
    data: Box<[UnsafeCell<u8>]>,
    #[cfg(loom)]
    cells: Box<[loom::cell::UnsafeCell<()>]>,
}

// SAFETY: the header is atomics; the data cells are only accessed by the one writer and one
// reader, in disjoint ranges that the index protocol hands over with Release/Acquire.
unsafe impl Sync for HeapBytesInner {}
// SAFETY: as above; nothing in it is tied to a thread.
unsafe impl Send for HeapBytesInner {}

// SAFETY: `data` is a boxed slice of exactly `capacity` cells (see `heap`), kept alive by the Arc.
unsafe impl ByteMem for HeapBytes {
    #[inline]
    fn header(&self) -> &ByteHeader {
        &self.0.header
    }
    #[inline]
    fn data(&self) -> NonNull<u8> {
        // UnsafeCell<u8> is repr(transparent): the slice is `capacity` u8s we may write through.
        NonNull::from(&self.0.data[..]).cast::<u8>()
    }
    #[inline]
    fn capacity(&self) -> u32 {
        self.0.data.len() as u32
    }
    #[cfg(loom)]
    fn track(&self, at: u32, len: usize, write: bool) {
        let mask = self.capacity() - 1;
        for i in 0..len as u32 {
            let cell = &self.0.cells[(at.wrapping_add(i) & mask) as usize];
            if write {
                cell.with_mut(|_| ());
            } else {
                cell.with(|_| ());
            }
        }
    }
}

/// Both ends of a heap-backed byte ring of `capacity` bytes.
pub fn heap(capacity: u32) -> Result<(ByteWriter<HeapBytes>, ByteReader<HeapBytes>), RingError> {
    check_capacity(capacity)?;
    let mem = HeapBytes(Arc::new(HeapBytesInner {
        header: ByteHeader::new(),
        data: (0..capacity).map(|_| UnsafeCell::new(0)).collect(),
        #[cfg(loom)]
        cells: (0..capacity)
            .map(|_| loom::cell::UnsafeCell::new(()))
            .collect(),
    }));
    Ok((ByteWriter::new(mem.clone())?, ByteReader::new(mem)?))
}
