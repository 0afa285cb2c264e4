//! sDDF-style single-producer single-consumer descriptor queue.
//!
//! Memory: a [`QueueHeader`] of three cache-line blocks (128 bytes each), then from
//! [`SLOTS_OFFSET`] on `capacity` slots (capacity a power of two).
//!
//! - `tail` (producer's line): free-running count of descriptors published. The producer writes
//!   slots with relaxed stores, then publishes them with one Release store of `tail` per batch.
//! - `head` (consumer's line): free-running count consumed; Release store after reading slots, so
//!   the producer (Acquire) never overwrites a slot that is still being read.
//! - `signal` (own line): the consumer sets it before it sleeps; the producer clears it and rings.
//!
//! Capacity is private to each side (passed in, never read from shared memory). Every index read
//! from the peer is checked: `tail - head` must stay within `[0, capacity]` and indices only move
//! forward; anything else is [`RingError::Corrupt`].
//!
//! Notification suppression (sDDF, Dekker-style; both fences SeqCst, loom-checked):
//! - consumer: [`Consumer::request_signal`] (store flag; fence), re-check [`Consumer::is_empty`],
//!   sleep on the doorbell only if still empty;
//! - producer: publish; [`Producer::signal_wanted`] (fence; load flag): ring only if it returns
//!   true, once per batch.
//!
//! Either the consumer's re-check sees the new tail, or the producer sees the flag: a wakeup is
//! never lost. The fences alone make this hold in the C11 model; the flag accesses are SeqCst as
//! well because loom 0.7 only proves the pattern that way (with relaxed flag accesses it reports
//! a stale load after the fences at 3 preemptions). They are off the hot path: the producer's
//! per-batch check is a fence and a plain load on x86.

use std::sync::Arc;

use crate::desc::{Desc, Slot};
use crate::error::RingError;
use crate::sync::{fence, AtomicU32, CacheLine, Ordering, LINE};

#[cfg(not(loom))]
pub use crate::shm::ShmQueue;

/// The memory a queue lives in by default: shared memory, or the heap under loom.
#[cfg(not(loom))]
pub type DefaultMem = ShmQueue;
/// The memory a queue lives in by default: shared memory, or the heap under loom.
#[cfg(loom)]
pub type DefaultMem = HeapQueue;

/// Largest capacity accepted (16 Mi descriptors, 256 MiB of slots).
pub const MAX_CAPACITY: u32 = 1 << 24;

/// Where the slots start in shared memory: a page after the header, because the L2 streamer
/// prefetches within a 4 KiB page and slots next to the indices drag the other side's index lines
/// along (measured: single items over shared memory went from 0.58x to about 0.72x of rtrb).
pub const SLOTS_OFFSET: usize = 4096;

/// Bytes of the queue header: three cache-line blocks.
pub const HEADER_BYTES: usize = core::mem::size_of::<QueueHeader>();

/// The shared indices of one queue, each on its own cache line.
#[repr(C)]
#[derive(Debug)]
pub struct QueueHeader {
    tail: CacheLine<AtomicU32>,
    head: CacheLine<AtomicU32>,
    signal: CacheLine<AtomicU32>,
}

impl QueueHeader {
    pub(crate) fn new() -> QueueHeader {
        QueueHeader {
            tail: CacheLine(AtomicU32::new(0)),
            head: CacheLine(AtomicU32::new(0)),
            signal: CacheLine(AtomicU32::new(0)),
        }
    }
}

/// Where a queue's header and slots live. `slots().len()` must be the capacity.
pub trait QueueMem {
    fn header(&self) -> &QueueHeader;
    fn slots(&self) -> &[Slot];
    /// Hook for loom: records an access to slot `index`, so that loom checks the indices order
    /// it against the other side's (slots are relaxed atomics, and loom does not explore load
    /// buffering on its own). A no-op elsewhere.
    #[inline]
    fn track(&self, _index: usize, _write: bool) {}
}

/// Bytes of shared memory a queue of `capacity` slots takes, rounded to a cache line.
pub fn queue_bytes(capacity: u32) -> usize {
    crate::sync::line_up(SLOTS_OFFSET + capacity as usize * core::mem::size_of::<Slot>())
}

/// Checks a capacity: a power of two, at most [`MAX_CAPACITY`].
pub fn check_capacity(capacity: u32) -> Result<(), RingError> {
    if !capacity.is_power_of_two() || capacity > MAX_CAPACITY {
        return Err(RingError::Layout(
            "queue capacity must be a power of two <= 2^24",
        ));
    }
    Ok(())
}

/// A queue in ordinary heap memory: for tests, benchmarks and loom.
#[derive(Clone, Debug)]
pub struct HeapQueue(Arc<HeapInner>);

#[derive(Debug)]
struct HeapInner {
    header: QueueHeader,
    slots: Box<[Slot]>,
    #[cfg(loom)]
    cells: Box<[loom::cell::UnsafeCell<()>]>,
}

// SAFETY: the loom cells carry no data; they only record which thread touched which slot, and
// loom runs every modelled thread on one OS thread.
#[cfg(loom)]
unsafe impl Sync for HeapInner {}

impl QueueMem for HeapQueue {
    #[inline]
    fn header(&self) -> &QueueHeader {
        &self.0.header
    }
    #[inline]
    fn slots(&self) -> &[Slot] {
        &self.0.slots
    }
    #[cfg(loom)]
    fn track(&self, index: usize, write: bool) {
        if write {
            self.0.cells[index].with_mut(|_| ());
        } else {
            self.0.cells[index].with(|_| ());
        }
    }
}

/// A heap-backed queue of `capacity` descriptors, both ends.
pub fn heap(capacity: u32) -> Result<(Producer<HeapQueue>, Consumer<HeapQueue>), RingError> {
    check_capacity(capacity)?;
    let mem = HeapQueue(Arc::new(HeapInner {
        header: QueueHeader::new(),
        slots: (0..capacity).map(|_| Slot::new()).collect(),
        #[cfg(loom)]
        cells: (0..capacity)
            .map(|_| loom::cell::UnsafeCell::new(()))
            .collect(),
    }));
    Ok((Producer::new(mem.clone())?, Consumer::new(mem)?))
}

/// The producing end. Writes `tail`, reads `head` only when its cached copy says full.
#[derive(Debug)]
pub struct Producer<M: QueueMem = DefaultMem> {
    mem: M,
    mask: u32,
    tail: u32,
    cached_head: u32,
}

/// The consuming end. Writes `head`, reads `tail` only when its cached copy says empty.
#[derive(Debug)]
pub struct Consumer<M: QueueMem = DefaultMem> {
    mem: M,
    mask: u32,
    head: u32,
    cached_tail: u32,
}

/// Capacity of a queue's memory, checked.
fn mem_capacity<M: QueueMem>(mem: &M) -> Result<u32, RingError> {
    let cap = u32::try_from(mem.slots().len()).map_err(|_| RingError::Layout("too many slots"))?;
    check_capacity(cap)?;
    Ok(cap)
}

impl<M: QueueMem> Producer<M> {
    /// Wraps fresh queue memory (both indices zero).
    pub fn new(mem: M) -> Result<Self, RingError> {
        let cap = mem_capacity(&mem)?;
        Ok(Producer {
            mem,
            mask: cap - 1,
            tail: 0,
            cached_head: 0,
        })
    }

    pub fn capacity(&self) -> u32 {
        self.mask + 1
    }

    /// Stages and publishes one descriptor; [`RingError::Full`] if there is no free slot.
    pub fn enqueue(&mut self, d: Desc) -> Result<(), RingError> {
        if self.free_slots(1)? == 0 {
            return Err(RingError::Full);
        }
        self.write_slot(self.tail, d);
        self.tail = self.tail.wrapping_add(1);
        self.publish();
        Ok(())
    }

    /// Enqueues as many of `ds` as fit, published with one Release store. Returns how many.
    pub fn enqueue_batch(&mut self, ds: &[Desc]) -> Result<usize, RingError> {
        let n = ds.len().min(self.free_slots(ds.len())? as usize);
        let (first, second) = ring_spans(self.mem.slots(), self.tail & self.mask, n);
        let (ds_first, ds_second) = ds[..n].split_at(first.len());
        for (slot, d) in first.iter().zip(ds_first) {
            slot.store(*d);
        }
        for (slot, d) in second.iter().zip(ds_second) {
            slot.store(*d);
        }
        self.track_span(self.tail, n, true);
        if n > 0 {
            self.tail = self.tail.wrapping_add(n as u32);
            self.publish();
        }
        Ok(n)
    }

    /// After publishing: true (and the request is cleared) if the consumer asked to be woken.
    /// Ring the doorbell then. The fence pairs with the one in [`Consumer::request_signal`].
    pub fn signal_wanted(&mut self) -> bool {
        fence(Ordering::SeqCst);
        let signal = &self.mem.header().signal;
        signal.load(Ordering::SeqCst) != 0 && signal.swap(0, Ordering::SeqCst) != 0
    }

    /// Descriptors in the queue as seen now; a corrupt head reads as full.
    pub fn len(&self) -> u32 {
        let head = self.mem.header().head.load(Ordering::Acquire);
        self.tail.wrapping_sub(head).min(self.capacity())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Free slots, re-reading the consumer's head only when the cache can't satisfy `want`.
    #[inline]
    fn free_slots(&mut self, want: usize) -> Result<u32, RingError> {
        let free = self.capacity() - self.tail.wrapping_sub(self.cached_head);
        if free as usize >= want {
            return Ok(free);
        }
        self.refresh_head()?;
        Ok(self.capacity() - self.tail.wrapping_sub(self.cached_head))
    }

    /// Acquires the consumer's head: it may only move forward, and never past our tail.
    fn refresh_head(&mut self) -> Result<(), RingError> {
        let head = self.mem.header().head.load(Ordering::Acquire);
        let moved = head.wrapping_sub(self.cached_head);
        if moved > self.tail.wrapping_sub(self.cached_head) {
            return Err(RingError::Corrupt("queue head out of range"));
        }
        self.cached_head = head;
        Ok(())
    }

    #[inline]
    fn publish(&self) {
        self.mem.header().tail.store(self.tail, Ordering::Release);
    }

    #[inline]
    fn write_slot(&self, index: u32, d: Desc) {
        let i = (index & self.mask) as usize;
        self.mem.track(i, true);
        self.mem.slots()[i].store(d);
    }

    #[inline]
    fn track_span(&self, from: u32, n: usize, write: bool) {
        for i in 0..n as u32 {
            self.mem
                .track((from.wrapping_add(i) & self.mask) as usize, write);
        }
    }
}

impl<M: QueueMem> Consumer<M> {
    /// Wraps fresh queue memory (both indices zero).
    pub fn new(mem: M) -> Result<Self, RingError> {
        let cap = mem_capacity(&mem)?;
        Ok(Consumer {
            mem,
            mask: cap - 1,
            head: 0,
            cached_tail: 0,
        })
    }

    pub fn capacity(&self) -> u32 {
        self.mask + 1
    }

    /// Takes one descriptor; `Corrupt` if the producer's index is impossible.
    pub fn dequeue(&mut self) -> Result<Option<Desc>, RingError> {
        if self.available(1)? == 0 {
            return Ok(None);
        }
        let d = self.read_slot(self.head);
        self.head = self.head.wrapping_add(1);
        self.release();
        Ok(Some(d))
    }

    /// Takes up to `out.len()` descriptors, released with one store. Returns how many.
    pub fn dequeue_batch(&mut self, out: &mut [Desc]) -> Result<usize, RingError> {
        let n = out.len().min(self.available(out.len())? as usize);
        self.track_span(self.head, n, false);
        let (first, second) = ring_spans(self.mem.slots(), self.head & self.mask, n);
        let (out_first, out_second) = out[..n].split_at_mut(first.len());
        for (d, slot) in out_first.iter_mut().zip(first) {
            *d = slot.load();
        }
        for (d, slot) in out_second.iter_mut().zip(second) {
            *d = slot.load();
        }
        if n > 0 {
            self.head = self.head.wrapping_add(n as u32);
            self.release();
        }
        Ok(n)
    }

    /// Asks the producer for a doorbell. The caller must then re-check [`Self::is_empty`] and
    /// sleep only if it is still empty (the fence orders the flag before that re-check).
    pub fn request_signal(&self) {
        self.mem.header().signal.store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Withdraws a request: there was work after all.
    pub fn cancel_signal(&self) {
        self.mem.header().signal.store(0, Ordering::SeqCst);
    }

    /// True if nothing is published beyond what we consumed (a corrupt tail reads as non-empty,
    /// so that the next dequeue reports it).
    pub fn is_empty(&self) -> bool {
        self.cached_tail == self.head && self.mem.header().tail.load(Ordering::Acquire) == self.head
    }

    /// Descriptors ready to dequeue now.
    pub fn len(&mut self) -> Result<u32, RingError> {
        self.refresh_tail()?;
        Ok(self.cached_tail.wrapping_sub(self.head))
    }

    /// Ready descriptors, re-reading the producer's tail only when the cache can't satisfy `want`.
    #[inline]
    fn available(&mut self, want: usize) -> Result<u32, RingError> {
        let ready = self.cached_tail.wrapping_sub(self.head);
        if ready as usize >= want {
            return Ok(ready);
        }
        self.refresh_tail()?;
        Ok(self.cached_tail.wrapping_sub(self.head))
    }

    /// Acquires the producer's tail: at most `capacity` ahead of our head, never moving back.
    fn refresh_tail(&mut self) -> Result<(), RingError> {
        let tail = self.mem.header().tail.load(Ordering::Acquire);
        let ready = tail.wrapping_sub(self.head);
        if ready > self.capacity() || ready < self.cached_tail.wrapping_sub(self.head) {
            return Err(RingError::Corrupt("queue tail out of range"));
        }
        self.cached_tail = tail;
        Ok(())
    }

    #[inline]
    fn release(&self) {
        self.mem.header().head.store(self.head, Ordering::Release);
    }

    #[inline]
    fn read_slot(&self, index: u32) -> Desc {
        let i = (index & self.mask) as usize;
        self.mem.track(i, false);
        self.mem.slots()[i].load()
    }

    #[inline]
    fn track_span(&self, from: u32, n: usize, write: bool) {
        for i in 0..n as u32 {
            self.mem
                .track((from.wrapping_add(i) & self.mask) as usize, write);
        }
    }
}

/// The `n` slots from position `start`, as the part before the end of the array and the part
/// that wrapped to its start (`n <= slots.len()`, checked by the callers' index arithmetic).
#[inline]
fn ring_spans(slots: &[Slot], start: u32, n: usize) -> (&[Slot], &[Slot]) {
    let (before, from_start) = slots.split_at(start as usize);
    let first = n.min(from_start.len());
    (&from_start[..first], &before[..n - first])
}

// The header must be exactly three whole lines so that slots start on a line boundary.
const _: () = assert!(HEADER_BYTES == 3 * LINE);

#[cfg(not(loom))]
mod shm_ends {
    use super::*;
    use crate::platform::SharedRegion;

    impl Producer<ShmQueue> {
        /// The producing end of the queue at `offset` in `region` (fresh, zeroed memory).
        pub fn attach(
            region: Arc<SharedRegion>,
            offset: usize,
            capacity: u32,
        ) -> Result<Self, RingError> {
            Producer::new(ShmQueue::new(region, offset, capacity)?)
        }
    }

    impl Consumer<ShmQueue> {
        /// The consuming end of the queue at `offset` in `region` (fresh, zeroed memory).
        pub fn attach(
            region: Arc<SharedRegion>,
            offset: usize,
            capacity: u32,
        ) -> Result<Self, RingError> {
            Consumer::new(ShmQueue::new(region, offset, capacity)?)
        }
    }

    /// Both ends of a queue in shared memory (for tests and benchmarks; peers attach one end each).
    pub fn shm(
        region: Arc<SharedRegion>,
        offset: usize,
        capacity: u32,
    ) -> Result<(Producer, Consumer), RingError> {
        Ok((
            Producer::attach(region.clone(), offset, capacity)?,
            Consumer::attach(region, offset, capacity)?,
        ))
    }
}

#[cfg(not(loom))]
pub use shm_ends::shm;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::platform::SharedRegion;

    fn d(i: u32) -> Desc {
        Desc {
            offset: i,
            len: i.wrapping_mul(3),
            flags: i ^ 0x55,
            context: !i,
        }
    }

    #[test]
    fn fifo_order_and_empty() {
        let (mut p, mut c) = heap(8).unwrap();
        assert!(c.is_empty());
        assert_eq!(c.dequeue().unwrap(), None);
        for i in 0..5 {
            p.enqueue(d(i)).unwrap();
        }
        assert_eq!(p.len(), 5);
        assert_eq!(c.len().unwrap(), 5);
        for i in 0..5 {
            assert_eq!(c.dequeue().unwrap(), Some(d(i)));
        }
        assert!(c.is_empty());
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn full_queue_reports_full() {
        let (mut p, mut c) = heap(4).unwrap();
        for i in 0..4 {
            p.enqueue(d(i)).unwrap();
        }
        assert!(matches!(p.enqueue(d(9)), Err(RingError::Full)));
        assert_eq!(c.dequeue().unwrap(), Some(d(0)));
        p.enqueue(d(4)).unwrap();
    }

    #[test]
    fn wraps_around_many_times() {
        let (mut p, mut c) = heap(2).unwrap();
        for i in 0..1000 {
            p.enqueue(d(i)).unwrap();
            assert_eq!(c.dequeue().unwrap(), Some(d(i)));
        }
    }

    #[test]
    fn indices_wrap_past_u32_max() {
        let (mut p, mut c) = heap(4).unwrap();
        let start = u32::MAX - 2;
        p.mem.header().tail.store(start, Ordering::Relaxed);
        p.mem.header().head.store(start, Ordering::Relaxed);
        (p.tail, p.cached_head, c.head, c.cached_tail) = (start, start, start, start);
        for i in 0..10 {
            p.enqueue(d(i)).unwrap();
            assert_eq!(c.dequeue().unwrap(), Some(d(i)));
        }
    }

    #[test]
    fn batches_are_partial_when_nearly_full() {
        let (mut p, mut c) = heap(8).unwrap();
        let ds: Vec<Desc> = (0..12).map(d).collect();
        assert_eq!(p.enqueue_batch(&ds).unwrap(), 8);
        assert_eq!(p.enqueue_batch(&ds[8..]).unwrap(), 0);
        let mut out = [Desc::default(); 5];
        assert_eq!(c.dequeue_batch(&mut out).unwrap(), 5);
        assert_eq!(&out[..], &ds[..5]);
        assert_eq!(p.enqueue_batch(&ds[8..]).unwrap(), 4);
        let mut out = [Desc::default(); 16];
        assert_eq!(c.dequeue_batch(&mut out).unwrap(), 7);
        assert_eq!(&out[..7], &ds[5..]);
        assert_eq!(c.dequeue_batch(&mut out).unwrap(), 0);
    }

    #[test]
    fn rejects_bad_capacity() {
        assert!(matches!(heap(3), Err(RingError::Layout(_))));
        assert!(matches!(heap(0), Err(RingError::Layout(_))));
        assert!(matches!(heap(MAX_CAPACITY * 2), Err(RingError::Layout(_))));
    }

    #[test]
    fn tail_beyond_capacity_is_corrupt() {
        let (_p, mut c) = heap(4).unwrap();
        c.mem.header().tail.store(5, Ordering::Release);
        assert!(!c.is_empty());
        assert!(matches!(c.dequeue(), Err(RingError::Corrupt(_))));
        let mut out = [Desc::default(); 2];
        assert!(matches!(
            c.dequeue_batch(&mut out),
            Err(RingError::Corrupt(_))
        ));
    }

    #[test]
    fn tail_moving_backwards_is_corrupt() {
        let (mut p, mut c) = heap(4).unwrap();
        p.enqueue_batch(&[d(1), d(2), d(3)]).unwrap();
        assert_eq!(c.dequeue().unwrap(), Some(d(1)));
        c.mem.header().tail.store(2, Ordering::Release);
        // Cached items are still served; the regression shows on the next refresh.
        assert_eq!(c.dequeue().unwrap(), Some(d(2)));
        assert_eq!(c.dequeue().unwrap(), Some(d(3)));
        assert!(matches!(c.dequeue(), Err(RingError::Corrupt(_))));
    }

    #[test]
    fn head_beyond_tail_is_corrupt() {
        let (mut p, _c) = heap(2).unwrap();
        p.enqueue_batch(&[d(1), d(2)]).unwrap();
        p.mem.header().head.store(7, Ordering::Release);
        assert!(matches!(p.enqueue(d(3)), Err(RingError::Corrupt(_))));
        assert_eq!(p.len(), 2, "a corrupt head reads as full");
    }

    #[test]
    fn head_moving_backwards_is_corrupt() {
        let (mut p, mut c) = heap(2).unwrap();
        p.enqueue_batch(&[d(1), d(2)]).unwrap();
        c.dequeue().unwrap();
        p.enqueue(d(3)).unwrap(); // refreshes the cached head to 1
        p.mem.header().head.store(0, Ordering::Release);
        assert!(matches!(p.enqueue(d(4)), Err(RingError::Corrupt(_))));
    }

    #[test]
    fn signal_only_when_requested_and_once() {
        let (mut p, c) = heap(4).unwrap();
        p.enqueue(d(1)).unwrap();
        assert!(!p.signal_wanted());
        c.request_signal();
        assert!(!c.is_empty(), "the re-check sees the published item");
        p.enqueue(d(2)).unwrap();
        assert!(p.signal_wanted());
        assert!(!p.signal_wanted(), "a request is answered once");
        c.request_signal();
        c.cancel_signal();
        assert!(!p.signal_wanted());
    }

    #[test]
    fn shared_memory_queue_matches_heap_queue() {
        let cap = 16;
        let region = Arc::new(SharedRegion::create("q", queue_bytes(cap)).unwrap());
        let (mut p, mut c) = shm(region.clone(), 0, cap).unwrap();
        for i in 0..40 {
            p.enqueue(d(i)).unwrap();
            assert_eq!(c.dequeue().unwrap(), Some(d(i)));
        }
        assert!(
            matches!(shm(region.clone(), LINE, cap), Err(RingError::Layout(_))),
            "past the end"
        );
        assert!(
            matches!(shm(region, 8, 1), Err(RingError::Layout(_))),
            "misaligned"
        );
    }

    fn two_threads<M: QueueMem + Send + 'static>(mut p: Producer<M>, mut c: Consumer<M>, n: u32) {
        let t = std::thread::spawn(move || {
            let mut i = 0;
            while i < n {
                match p.enqueue(d(i)) {
                    Ok(()) => i += 1,
                    Err(RingError::Full) => std::thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        });
        let mut next = 0;
        let mut out = [Desc::default(); 7];
        while next < n {
            let k = c.dequeue_batch(&mut out).unwrap();
            for got in &out[..k] {
                assert_eq!(*got, d(next));
                next += 1;
            }
            if k == 0 {
                std::thread::yield_now();
            }
        }
        t.join().unwrap();
    }

    #[test]
    fn threads_heap_queue_keeps_order() {
        let (p, c) = heap(64).unwrap();
        two_threads(p, c, 200_000);
    }

    #[test]
    fn threads_shm_queue_keeps_order() {
        let region = Arc::new(SharedRegion::create("q", queue_bytes(32)).unwrap());
        let (p, c) = shm(region, 0, 32).unwrap();
        two_threads(p, c, 200_000);
    }
}
