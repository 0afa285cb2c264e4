//! Views of a [`SharedRegion`] as ring memory: the only place that turns region pointers into
//! references.
//!
//! Why this is sound: the mapping is page aligned and every offset used here is checked to be
//! in bounds and aligned for the type; it stays mapped while the `Arc<SharedRegion>` we hold
//! lives; and every type placed there is made of atomics (valid for any bit pattern, same layout
//! as the plain integers) or is plain bytes. The peer may write anything at any time: atomics make
//! that a well-defined value, which the ring code validates; buffer bytes are opaque data.

use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use crate::bytering::{ByteHeader, ByteMem};
use crate::desc::Slot;
use crate::error::RingError;
use crate::platform::SharedRegion;
use crate::queue::{check_capacity, queue_bytes, QueueHeader, QueueMem};
use crate::ready::FlagMem;

/// Checks that `[offset, offset + len)` lies in `region` and `offset` is aligned to `align`.
fn check_span(
    region: &SharedRegion,
    offset: usize,
    len: usize,
    align: usize,
) -> Result<(), RingError> {
    let end = offset
        .checked_add(len)
        .ok_or(RingError::Layout("span overflows"))?;
    if end > region.len() {
        return Err(RingError::Layout("span past the end of the region"));
    }
    if offset % align != 0 {
        return Err(RingError::Layout("span misaligned"));
    }
    Ok(())
}

/// A pointer to `offset` in the region; the span must have been checked.
fn ptr_at<T>(region: &SharedRegion, offset: usize) -> NonNull<T> {
    // SAFETY: callers checked `offset` is within the mapping, so the result stays inside the
    // same allocation (the mapping) and is not null.
    unsafe { NonNull::new_unchecked(region.as_ptr().add(offset).cast::<T>()) }
}

/// A 32-bit word in the region (for small headers: magic, carrier, ...).
pub(crate) fn atomic_u32_at(region: &SharedRegion, offset: usize) -> Result<&AtomicU32, RingError> {
    check_span(region, offset, 4, 4)?;
    let p = ptr_at::<AtomicU32>(region, offset);
    // SAFETY: in bounds and 4-aligned (checked above); AtomicU32 has u32's layout and any bit
    // pattern is valid; the reference cannot outlive `region`, which keeps the mapping.
    Ok(unsafe { p.as_ref() })
}

/// A descriptor queue placed in a shared region.
#[derive(Debug)]
pub struct ShmQueue {
    header: NonNull<QueueHeader>,
    slots: NonNull<Slot>,
    cap: usize,
    _region: Arc<SharedRegion>,
}

// SAFETY: the pointers refer to atomics in a mapping that `_region` keeps alive; atomics may be
// used from any thread.
unsafe impl Send for ShmQueue {}
// SAFETY: as above: shared access only ever goes through atomics.
unsafe impl Sync for ShmQueue {}

impl ShmQueue {
    /// The queue of `capacity` slots at `offset` (cache-line aligned) in `region`.
    pub fn new(
        region: Arc<SharedRegion>,
        offset: usize,
        capacity: u32,
    ) -> Result<ShmQueue, RingError> {
        check_capacity(capacity)?;
        check_span(&region, offset, queue_bytes(capacity), crate::sync::LINE)?;
        let header = ptr_at::<QueueHeader>(&region, offset);
        let slots = ptr_at::<Slot>(&region, offset + crate::queue::SLOTS_OFFSET);
        Ok(ShmQueue {
            header,
            slots,
            cap: capacity as usize,
            _region: region,
        })
    }
}

impl QueueMem for ShmQueue {
    #[inline]
    fn header(&self) -> &QueueHeader {
        // SAFETY: checked in bounds and line aligned in `new`; all atomics (see module doc);
        // the mapping lives as long as `self`.
        unsafe { self.header.as_ref() }
    }

    #[inline]
    fn slots(&self) -> &[Slot] {
        // SAFETY: `cap` slots after the header were checked to lie in the mapping, aligned; Slot
        // is two AtomicU64 (any bit pattern valid); the mapping lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.slots.as_ptr(), self.cap) }
    }
}

/// A ready list's per-slot flags placed in a shared region.
#[derive(Debug)]
pub struct ShmFlags {
    flags: NonNull<AtomicU32>,
    len: usize,
    _region: Arc<SharedRegion>,
}

// SAFETY: the pointer refers to atomics in a mapping that `_region` keeps alive; atomics may be
// used from any thread.
unsafe impl Send for ShmFlags {}
// SAFETY: as above: access only ever goes through atomics.
unsafe impl Sync for ShmFlags {}

impl ShmFlags {
    /// The `len` flags at `offset` (4-aligned) in `region`.
    pub fn new(region: Arc<SharedRegion>, offset: usize, len: u32) -> Result<ShmFlags, RingError> {
        check_span(&region, offset, 4 * len as usize, 4)?;
        Ok(ShmFlags {
            flags: ptr_at::<AtomicU32>(&region, offset),
            len: len as usize,
            _region: region,
        })
    }
}

impl FlagMem for ShmFlags {
    fn flags(&self) -> &[AtomicU32] {
        // SAFETY: `len` flags from `flags` were checked to lie in the mapping, 4-aligned;
        // AtomicU32 has u32's layout and any bit pattern is valid; the mapping lives as long as
        // `self`.
        unsafe { std::slice::from_raw_parts(self.flags.as_ptr(), self.len) }
    }
}

/// A byte ring placed in a shared region.
#[derive(Clone, Debug)]
pub struct ShmBytes {
    header: NonNull<ByteHeader>,
    data: NonNull<u8>,
    cap: u32,
    _region: Arc<SharedRegion>,
}

// SAFETY: the header is atomics; the data bytes are only handed out by the ring code under its
// ownership protocol; `_region` keeps the mapping alive.
unsafe impl Send for ShmBytes {}

impl ShmBytes {
    /// The byte ring of `capacity` bytes at `offset` (cache-line aligned) in `region`.
    pub fn new(
        region: Arc<SharedRegion>,
        offset: usize,
        capacity: u32,
    ) -> Result<ShmBytes, RingError> {
        crate::bytering::check_capacity(capacity)?;
        check_span(
            &region,
            offset,
            crate::byte_ring_bytes(capacity),
            crate::sync::LINE,
        )?;
        Ok(ShmBytes {
            header: ptr_at(&region, offset),
            data: ptr_at(&region, offset + crate::bytering::HEADER_BYTES),
            cap: capacity,
            _region: region,
        })
    }
}

// SAFETY: `data` points to `cap` bytes inside the mapping (checked in `new`), which `_region`
// keeps mapped for as long as `self` lives.
unsafe impl ByteMem for ShmBytes {
    #[inline]
    fn header(&self) -> &ByteHeader {
        // SAFETY: checked in bounds and line aligned in `new`; all atomics; mapping outlives self.
        unsafe { self.header.as_ref() }
    }
    #[inline]
    fn data(&self) -> NonNull<u8> {
        self.data
    }
    #[inline]
    fn capacity(&self) -> u32 {
        self.cap
    }
}

/// The buffer area of a channel: `len` bytes at a fixed place in a region.
#[derive(Debug)]
pub(crate) struct DataArea {
    base: NonNull<u8>,
    len: usize,
    _region: Arc<SharedRegion>,
}

// SAFETY: plain bytes in a mapping kept alive by `_region`; slices are only made through
// `&self`/`&mut self`, so Rust's borrow rules apply within this process.
unsafe impl Send for DataArea {}

impl DataArea {
    pub(crate) fn new(
        region: Arc<SharedRegion>,
        offset: usize,
        len: usize,
    ) -> Result<DataArea, RingError> {
        check_span(&region, offset, len, 1)?;
        Ok(DataArea {
            base: ptr_at(&region, offset),
            len,
            _region: region,
        })
    }

    /// `len` bytes at `offset`. Panics on a span outside the area: offsets reaching here were
    /// validated, so that would be our own bug, never the peer's doing.
    pub(crate) fn bytes(&self, offset: usize, len: usize) -> &[u8] {
        assert!(
            offset <= self.len && len <= self.len - offset,
            "buffer span outside data area"
        );
        // SAFETY: in bounds (asserted); the mapping outlives `&self`; bytes are valid for any
        // value. The peer could change them concurrently only by breaking the ownership protocol,
        // in which case it just changes its own untrusted data.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(offset), len) }
    }

    /// Mutable `len` bytes at `offset`; panics like [`Self::bytes`].
    pub(crate) fn bytes_mut(&mut self, offset: usize, len: usize) -> &mut [u8] {
        assert!(
            offset <= self.len && len <= self.len - offset,
            "buffer span outside data area"
        );
        // SAFETY: as in `bytes`; `&mut self` makes this the only slice of the area in this process.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(offset), len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    fn region(len: usize) -> Arc<SharedRegion> {
        Arc::new(SharedRegion::create("shm-test", len).unwrap())
    }

    #[test]
    fn spans_must_fit_and_be_aligned() {
        let r = region(4096);
        assert!(check_span(&r, 0, 4096, 64).is_ok());
        assert!(matches!(
            check_span(&r, 1, 4096, 1),
            Err(RingError::Layout(_))
        ));
        assert!(matches!(
            check_span(&r, 8, 4, 16),
            Err(RingError::Layout(_))
        ));
        assert!(matches!(
            check_span(&r, usize::MAX, 2, 1),
            Err(RingError::Layout(_))
        ));
    }

    #[test]
    fn words_are_shared_between_mappings() {
        let a = region(4096);
        let b = SharedRegion::from_fd(a.fd().try_clone_to_owned().unwrap(), 4096).unwrap();
        atomic_u32_at(&a, 100)
            .unwrap()
            .store(0xfeed, Ordering::Release);
        assert_eq!(
            atomic_u32_at(&b, 100).unwrap().load(Ordering::Acquire),
            0xfeed
        );
        assert!(atomic_u32_at(&a, 4094).is_err(), "past the end");
        assert!(atomic_u32_at(&a, 2).is_err(), "misaligned");
    }

    #[test]
    fn queue_and_byte_views_check_their_span() {
        let r = region(8192);
        assert!(ShmQueue::new(r.clone(), 0, 16).is_ok());
        assert!(ShmQueue::new(r.clone(), 8192 - 256, 16).is_err());
        assert!(ShmQueue::new(r.clone(), 0, 3).is_err());
        assert!(ShmBytes::new(r.clone(), 0, 4096).is_ok());
        assert!(ShmBytes::new(r, 0, 8192).is_err());
    }

    #[test]
    fn data_area_hands_out_its_bytes() {
        let mut d = DataArea::new(region(4096), 1024, 2048).unwrap();
        d.bytes_mut(2000, 48).fill(9);
        assert_eq!(d.bytes(2040, 8), &[9; 8]);
        assert!(DataArea::new(region(4096), 1024, 4096).is_err());
    }

    #[test]
    #[should_panic(expected = "outside data area")]
    fn data_area_refuses_spans_outside_it() {
        let d = DataArea::new(region(4096), 0, 100).unwrap();
        d.bytes(90, 20);
    }
}
