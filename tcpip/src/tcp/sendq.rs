//! The send queue: bytes the application wrote that the peer has not yet
//! acknowledged, from `snd.una` on. Transmission and retransmission read
//! it at an offset; a cumulative ACK drops its front.
//!
//! The bytes live in one of two places. A socket on shared rings keeps
//! them where the application wrote them, in its up ring ([`SendRing`]):
//! the queue takes them by count and copies each one once, into a frame,
//! and the ring gets its space back as the peer acknowledges. The ring's
//! capacity is then the send buffer; a path that needs more (autotuning
//! grows the bound past the ring) moves the queue into memory of its own
//! for good, as does a socket written by calls. Its own memory follows
//! the bytes held (the storage goes back to the allocator when it drains).

use std::collections::VecDeque;
use std::fmt;

/// Storage kept while empty; more is returned to the allocator.
const KEEP_WHEN_EMPTY: usize = 4096;

/// The socket's up ring, seen from the queue: bytes by free-running index
/// (wrapping at 2^32), written by the application and not yet consumed.
pub trait SendRing {
    /// Copies the bytes from index `at` into `dst`; false (and `dst`
    /// untouched) if the ring no longer holds them: its writer broke it.
    fn copy_out(&self, at: u32, dst: &mut [u8]) -> bool;
}

enum Bytes {
    Own(VecDeque<u8>),
    Ring(Ring),
}

struct Ring {
    ring: Box<dyn SendRing>,
    capacity: usize,
    /// Ring index of `snd.una`'s byte.
    front: u32,
    len: usize,
    /// Bytes written over held ones ([`SendQueue::overwrite`]), by ring
    /// index, later ones over earlier: the ring itself is the writer's
    /// memory and is only read.
    patches: Vec<(u32, Vec<u8>)>,
}

pub struct SendQueue {
    bytes: Bytes,
    limit: usize,
    /// Set when the queue left a ring: the index past the bytes it took
    /// there, all of which the ring may have back (see
    /// [`take_left_ring`](Self::take_left_ring)).
    left_ring: Option<u32>,
}

impl fmt::Debug for SendQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = match &self.bytes {
            Bytes::Own(_) => "own",
            Bytes::Ring(_) => "ring",
        };
        f.debug_struct("SendQueue")
            .field("in", &place)
            .field("len", &self.len())
            .field("limit", &self.limit())
            .finish()
    }
}

impl Default for SendQueue {
    fn default() -> SendQueue {
        SendQueue::new(0)
    }
}

impl SendQueue {
    pub const fn new(limit: usize) -> SendQueue {
        SendQueue {
            bytes: Bytes::Own(VecDeque::new()),
            limit,
            left_ring: None,
        }
    }

    /// Bytes held (sent or not), from `snd.una`.
    pub fn len(&self) -> usize {
        match &self.bytes {
            Bytes::Own(b) => b.len(),
            Bytes::Ring(r) => r.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Room the application may still write into.
    pub fn room(&self) -> usize {
        self.limit().saturating_sub(self.len())
    }

    /// The most the queue holds: the ring's capacity when in a ring.
    pub fn limit(&self) -> usize {
        match &self.bytes {
            Bytes::Own(_) => self.limit,
            Bytes::Ring(r) => r.capacity,
        }
    }

    /// Changes the bound; bytes already held stay. A bound past the ring's
    /// capacity moves the queue out of the ring.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
        if matches!(&self.bytes, Bytes::Ring(r) if limit > r.capacity) {
            self.leave_ring();
        }
    }

    /// Whether the bytes are in the socket's ring.
    pub fn in_ring(&self) -> bool {
        matches!(self.bytes, Bytes::Ring(_))
    }

    /// Keeps the bytes in `ring` from now on, its index `front` being the
    /// next byte to take: only an empty queue whose bound the ring holds
    /// can (false otherwise).
    pub fn use_ring(&mut self, ring: Box<dyn SendRing>, front: u32, capacity: usize) -> bool {
        if !self.is_empty() || self.limit > capacity {
            return false;
        }
        self.bytes = Bytes::Ring(Ring {
            ring,
            capacity,
            front,
            len: 0,
            patches: Vec::new(),
        });
        self.left_ring = None;
        true
    }

    /// Copies the held bytes out of the ring and keeps them itself from
    /// now on.
    pub fn leave_ring(&mut self) {
        let Bytes::Ring(r) = &self.bytes else {
            return;
        };
        let mut own = vec![0; r.len];
        self.read(0, &mut own);
        self.left_ring = Some(r.front.wrapping_add(r.len as u32));
        self.bytes = Bytes::Own(own.into());
    }

    /// Once after the queue left a ring: the index before which the ring
    /// may have every byte back (the queue copied what it held).
    pub fn take_left_ring(&mut self) -> Option<u32> {
        self.left_ring.take()
    }

    /// Appends as much of `data` as there is room for; returns how much.
    /// A queue in a ring takes bytes with [`take`](Self::take) instead.
    pub fn write(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.room());
        match &mut self.bytes {
            Bytes::Own(b) => {
                b.extend(&data[..n]);
                n
            }
            Bytes::Ring(_) => 0,
        }
    }

    /// Takes up to `n` more of the ring's bytes, which follow the held
    /// ones there; returns how many fit.
    pub fn take(&mut self, n: usize) -> usize {
        let n = n.min(self.room());
        match &mut self.bytes {
            Bytes::Ring(r) => {
                r.len += n;
                n
            }
            Bytes::Own(_) => 0,
        }
    }

    /// The ring index of the first byte held (`snd.una`'s): the ring may
    /// have back everything before it.
    pub fn ring_front(&self) -> Option<u32> {
        match &self.bytes {
            Bytes::Ring(r) => Some(r.front),
            Bytes::Own(_) => None,
        }
    }

    /// Copies the bytes at `offset` (from `snd.una`) into `dst`, which must
    /// lie within the queue. Bytes a ring's writer no longer holds in place
    /// read as zeros (its own stream, which it broke; the binding ends it).
    pub fn read(&self, offset: usize, dst: &mut [u8]) {
        match &self.bytes {
            Bytes::Own(b) => read_deque(b, offset, dst),
            Bytes::Ring(r) => {
                debug_assert!(offset + dst.len() <= r.len, "read past the send queue");
                let at = r.front.wrapping_add(offset as u32);
                if !r.ring.copy_out(at, dst) {
                    dst.fill(0);
                }
                for (start, bytes) in &r.patches {
                    patch(dst, at, *start, bytes);
                }
            }
        }
    }

    /// Writes `bytes` over the held bytes at `offset` (from `snd.una`), as
    /// far as the queue goes; returns how many. Retransmissions send the
    /// new bytes (an offload holder's software-sealed records in place of
    /// the ones framed for a NIC that is gone).
    pub fn overwrite(&mut self, offset: usize, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.len().saturating_sub(offset));
        if n == 0 {
            return 0;
        }
        match &mut self.bytes {
            Bytes::Own(b) => {
                for (d, s) in b.range_mut(offset..offset + n).zip(bytes) {
                    *d = *s;
                }
            }
            Bytes::Ring(r) => {
                let at = r.front.wrapping_add(offset as u32);
                r.patches.push((at, bytes[..n].to_vec()));
            }
        }
        n
    }

    /// Drops the first `n` bytes (acknowledged).
    pub fn ack(&mut self, n: usize) {
        let n = n.min(self.len());
        match &mut self.bytes {
            Bytes::Own(b) => {
                b.drain(..n);
                if b.is_empty() && b.capacity() > KEEP_WHEN_EMPTY {
                    *b = VecDeque::new();
                }
            }
            Bytes::Ring(r) => {
                r.front = r.front.wrapping_add(n as u32);
                r.len -= n;
                let front = r.front;
                r.patches.retain_mut(|(start, bytes)| {
                    let behind = front.wrapping_sub(*start) as usize;
                    // A patch at or after the front has `behind` wrapped
                    // to a huge number: it stays whole.
                    if behind > r.capacity {
                        return true;
                    }
                    if behind >= bytes.len() {
                        return false;
                    }
                    bytes.drain(..behind);
                    *start = front;
                    true
                });
            }
        }
    }
}

fn read_deque(bytes: &VecDeque<u8>, offset: usize, dst: &mut [u8]) {
    let (a, b) = bytes.as_slices();
    let mut at = offset;
    let mut filled = 0;
    for part in [a, b] {
        if filled == dst.len() {
            break;
        }
        if at >= part.len() {
            at -= part.len();
            continue;
        }
        let n = (part.len() - at).min(dst.len() - filled);
        dst[filled..filled + n].copy_from_slice(&part[at..at + n]);
        filled += n;
        at = 0;
    }
    debug_assert_eq!(filled, dst.len(), "read past the send queue");
}

/// Copies the part of `bytes` (at ring index `start`) that overlaps `dst`
/// (at ring index `at`) over it.
fn patch(dst: &mut [u8], at: u32, start: u32, bytes: &[u8]) {
    // Positions relative to `at`, in a signed space wide enough for both.
    let from = i64::from(start.wrapping_sub(at) as i32);
    let lo = from.max(0);
    let hi = (from + bytes.len() as i64).min(dst.len() as i64);
    if lo < hi {
        let (lo, hi) = (lo as usize, hi as usize);
        let src = (lo as i64 - from) as usize;
        dst[lo..hi].copy_from_slice(&bytes[src..src + (hi - lo)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    #[test]
    fn reads_at_offsets_across_the_wrap_and_frees_when_drained() {
        let mut q = SendQueue::new(10);
        assert_eq!(q.write(b"abcdefgh"), 8);
        q.ack(6);
        assert_eq!(q.write(b"ijklmnopq"), 8);
        assert_eq!(q.len(), 10);
        assert_eq!(q.room(), 0);
        let mut out = [0u8; 7];
        q.read(2, &mut out);
        assert_eq!(&out, b"ijklmno");
        assert_eq!(q.overwrite(8, b"XYZ"), 2);
        assert_eq!(q.overwrite(11, b"!"), 0);
        let mut out = [0u8; 4];
        q.read(6, &mut out);
        assert_eq!(&out, b"mnXY");
        q.ack(100);
        assert!(q.is_empty());
        let mut big = SendQueue::new(1 << 20);
        big.write(&vec![1u8; 1 << 20]);
        big.ack(1 << 20);
        let Bytes::Own(b) = &big.bytes else {
            unreachable!()
        };
        assert_eq!(b.capacity(), 0);
    }

    /// A ring of 16 bytes the test writes into, as an application would.
    #[derive(Clone)]
    struct TestRing {
        bytes: Rc<RefCell<Vec<u8>>>,
        /// Index past the last byte written.
        tail: Rc<RefCell<u32>>,
    }

    impl TestRing {
        fn new() -> TestRing {
            TestRing {
                bytes: Rc::new(RefCell::new(vec![0; 16])),
                tail: Rc::new(RefCell::new(0)),
            }
        }

        fn write(&self, data: &[u8]) {
            let mut tail = self.tail.borrow_mut();
            for b in data {
                self.bytes.borrow_mut()[(*tail % 16) as usize] = *b;
                *tail = tail.wrapping_add(1);
            }
        }
    }

    /// A queue in a fresh ring from index 0, holding `bytes`.
    fn queue_in_ring(limit: usize, bytes: &[u8]) -> (TestRing, SendQueue) {
        let ring = TestRing::new();
        let mut q = SendQueue::new(limit);
        assert!(q.use_ring(Box::new(ring.clone()), 0, 16));
        ring.write(bytes);
        assert_eq!(q.take(bytes.len()), bytes.len());
        (ring, q)
    }

    impl SendRing for TestRing {
        fn copy_out(&self, at: u32, dst: &mut [u8]) -> bool {
            let before_tail = self.tail.borrow().wrapping_sub(at) as usize;
            if before_tail < dst.len() || before_tail > 16 {
                return false;
            }
            for (i, d) in dst.iter_mut().enumerate() {
                *d = self.bytes.borrow()[(at.wrapping_add(i as u32) % 16) as usize];
            }
            true
        }
    }

    #[test]
    fn a_ring_queue_takes_by_count_reads_in_place_and_gives_space_back_on_ack() {
        let ring = TestRing::new();
        let mut q = SendQueue::new(4);
        // Indices near the wrap of u32.
        let start = u32::MAX - 5;
        *ring.tail.borrow_mut() = start;
        assert!(q.use_ring(Box::new(ring.clone()), start, 16));
        assert_eq!((q.limit(), q.room()), (16, 16));
        ring.write(b"hello, world");
        assert_eq!(q.write(b"no copies"), 0);
        assert_eq!(q.take(12), 12);
        let mut out = [0u8; 5];
        q.read(7, &mut out);
        assert_eq!(&out, b"world");
        q.ack(7);
        assert_eq!(q.ring_front(), Some(start.wrapping_add(7)));
        assert_eq!((q.len(), q.room()), (5, 11));
        // A ring that lost the bytes reads zeros.
        *ring.tail.borrow_mut() = start;
        q.read(0, &mut out);
        assert_eq!(out, [0; 5]);
    }

    #[test]
    fn overwritten_ring_bytes_are_patches_that_acks_trim() {
        let (ring, mut q) = queue_in_ring(0, b"0123456789");
        assert_eq!(q.overwrite(2, b"abcd"), 4);
        assert_eq!(q.overwrite(4, b"XY"), 2);
        assert_eq!(q.overwrite(8, b"pqrs"), 2);
        let mut out = [0u8; 10];
        q.read(0, &mut out);
        assert_eq!(&out, b"01abXY67pq");
        // The ring itself is only read.
        assert_eq!(&ring.bytes.borrow()[..10], b"0123456789");
        q.ack(5);
        let mut out = [0u8; 5];
        q.read(0, &mut out);
        assert_eq!(&out, b"Y67pq");
        let Bytes::Ring(r) = &q.bytes else {
            unreachable!()
        };
        assert_eq!(r.patches.len(), 3);
        // Leaving the ring keeps the patched bytes, and gives the ring
        // back everything the queue took there (once).
        q.leave_ring();
        assert!(!q.in_ring());
        assert_eq!((q.take_left_ring(), q.take_left_ring()), (Some(10), None));
        q.read(0, &mut out);
        assert_eq!(&out, b"Y67pq");
        assert!(!q.use_ring(Box::new(ring), 10, 16), "not empty");
    }

    #[test]
    fn a_bound_past_the_ring_moves_the_queue_out_for_good() {
        let (ring, mut q) = queue_in_ring(8, b"abcdef");
        q.set_limit(16);
        assert!(q.in_ring());
        q.set_limit(32);
        assert!(!q.in_ring());
        assert_eq!((q.len(), q.limit()), (6, 32));
        let mut out = [0u8; 6];
        q.read(0, &mut out);
        assert_eq!(&out, b"abcdef");
        q.ack(6);
        assert!(!q.use_ring(Box::new(ring), 6, 16), "the ring is too small");
    }
}
