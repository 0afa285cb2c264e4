//! SPSC byte stream for socket data (one direction of a socket); [`SocketRings`] (in
//! `sockets.rs`) holds one per direction.
//!
//! Memory: a [`ByteHeader`] of four cache-line blocks (128 bytes each), then `capacity` data bytes (a power of two).
//!
//! - writer's line: `tail` (free-running bytes written; Release after copying data in), `state`
//!   (open, EOF, error; Release after the final tail) and the error code.
//! - reader's line: `head` (free-running bytes read; Release after copying data out, so the
//!   writer never overwrites unread bytes) and `closed` (the reader went away).
//! - `data_wanted`: the reader asks for a signal when data arrives; the writer answers it.
//! - `space_wanted`: the writer asks for a signal when space frees up; the reader answers it.
//!
//! Signals follow the queue's protocol (see [`crate::queue`]): request (store; SeqCst fence),
//! re-check, sleep; the other side publishes, fences, and rings only if asked.
//!
//! Indices from the peer are validated (`tail - head <= capacity`, monotonic) and an impossible
//! state is [`RingError::Corrupt`].

use crate::error::RingError;
use crate::sync::{fence, AtomicU32, CacheLine, Ordering, LINE};
use std::marker::PhantomData;

pub use crate::bytemem::{heap, ByteMem, DefaultBytes, HeapBytes};
#[cfg(not(loom))]
pub use crate::shm::ShmBytes;
#[cfg(not(loom))]
pub use crate::sockets::{socket_region_bytes, ClientEnd, ServerEnd, SocketMapping, SocketRings};

/// Bytes of the header: four cache-line blocks.
pub const HEADER_BYTES: usize = core::mem::size_of::<ByteHeader>();
const _: () = assert!(HEADER_BYTES == 4 * LINE);

/// Largest capacity accepted.
pub const MAX_CAPACITY: u32 = 1 << 30;

const OPEN: u32 = 0;
const EOF: u32 = 1;
const ERROR: u32 = 2;

/// Bytes of shared memory one byte ring of `capacity` takes.
pub fn byte_ring_bytes(capacity: u32) -> usize {
    HEADER_BYTES + capacity as usize
}

/// A power of two, at most [`MAX_CAPACITY`].
pub fn check_capacity(capacity: u32) -> Result<(), RingError> {
    if !capacity.is_power_of_two() || capacity > MAX_CAPACITY {
        return Err(RingError::Layout(
            "byte ring capacity must be a power of two <= 2^30",
        ));
    }
    Ok(())
}

#[repr(C)]
#[derive(Debug)]
struct WriterLine {
    tail: AtomicU32,
    state: AtomicU32,
    error: AtomicU32,
}

#[repr(C)]
#[derive(Debug)]
struct ReaderLine {
    head: AtomicU32,
    closed: AtomicU32,
}

/// The shared indices and flags of a byte ring, one cache line per writer.
#[repr(C)]
#[derive(Debug)]
pub struct ByteHeader {
    writer: CacheLine<WriterLine>,
    reader: CacheLine<ReaderLine>,
    data_wanted: CacheLine<AtomicU32>,
    space_wanted: CacheLine<AtomicU32>,
}

impl ByteHeader {
    /// Back to a fresh ring's indices and flags. Only while neither end is
    /// in use (a ring set taken up again for the same client).
    fn reset(&self) {
        let w = &self.writer.0;
        for word in [&w.tail, &w.state, &w.error] {
            word.store(0, Ordering::Relaxed);
        }
        self.reader.0.head.store(0, Ordering::Relaxed);
        self.reader.0.closed.store(0, Ordering::Relaxed);
        self.data_wanted.0.store(0, Ordering::Relaxed);
        self.space_wanted.0.store(0, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    pub(crate) fn new() -> ByteHeader {
        ByteHeader {
            writer: CacheLine(WriterLine {
                tail: AtomicU32::new(0),
                state: AtomicU32::new(OPEN),
                error: AtomicU32::new(0),
            }),
            reader: CacheLine(ReaderLine {
                head: AtomicU32::new(0),
                closed: AtomicU32::new(0),
            }),
            data_wanted: CacheLine(AtomicU32::new(0)),
            space_wanted: CacheLine(AtomicU32::new(0)),
        }
    }
}

/// Where `at` falls in the data area, and how many bytes fit before the end.
#[inline]
fn split(cap: u32, at: u32, len: usize) -> (usize, usize) {
    let pos = (at & (cap - 1)) as usize;
    (pos, len.min(cap as usize - pos))
}

/// Copies `src` into the data area at free-running index `at` (wrapping once).
fn copy_in<M: ByteMem>(mem: &M, at: u32, src: &[u8]) {
    assert!(
        src.len() <= mem.capacity() as usize,
        "copy larger than the ring"
    );
    mem.track(at, src.len(), true);
    let (pos, first) = split(mem.capacity(), at, src.len());
    // SAFETY: `pos + first <= capacity` and `src.len() - first <= pos`, so both spans lie in the
    // `capacity` bytes `data()` guarantees; the writer owns free space, so the reader is not
    // reading it; `src` is our own memory and cannot overlap the ring.
    unsafe {
        let base = mem.data().as_ptr();
        std::ptr::copy_nonoverlapping(src.as_ptr(), base.add(pos), first);
        std::ptr::copy_nonoverlapping(src.as_ptr().add(first), base, src.len() - first);
    }
}

/// Copies from the data area at free-running index `at` into `dst` (wrapping once).
fn copy_out<M: ByteMem>(mem: &M, at: u32, dst: &mut [u8]) {
    assert!(
        dst.len() <= mem.capacity() as usize,
        "copy larger than the ring"
    );
    mem.track(at, dst.len(), false);
    let (pos, first) = split(mem.capacity(), at, dst.len());
    // SAFETY: spans in bounds as in `copy_in`; callers copy only published bytes their reader has
    // not consumed (`read`, or `HeldBytes` under `held`'s contract), which the writer does not
    // write until the head passes them; `dst` is our own memory.
    unsafe {
        let base = mem.data().as_ptr();
        std::ptr::copy_nonoverlapping(base.add(pos), dst.as_mut_ptr(), first);
        std::ptr::copy_nonoverlapping(base, dst.as_mut_ptr().add(first), dst.len() - first);
    }
}

/// The writing end: writes `tail` and `state`, reads `head`.
#[derive(Debug)]
pub struct ByteWriter<M: ByteMem = DefaultBytes> {
    mem: M,
    tail: u32,
    cached_head: u32,
    closed: bool,
}

/// The reading end: writes `head`, reads `tail` and `state`.
#[derive(Debug)]
pub struct ByteReader<M: ByteMem = DefaultBytes> {
    mem: M,
    head: u32,
    cached_tail: u32,
}

impl<M: ByteMem> ByteWriter<M> {
    /// Wraps fresh ring memory (indices zero).
    pub fn new(mem: M) -> Result<Self, RingError> {
        check_capacity(mem.capacity())?;
        Ok(ByteWriter {
            mem,
            tail: 0,
            cached_head: 0,
            closed: false,
        })
    }

    pub fn capacity(&self) -> u32 {
        self.mem.capacity()
    }

    /// Empties the ring and opens it again, for both ends: only while the
    /// reader is not using it (see [`ServerEnd::reset`]).
    pub fn reset(&mut self) {
        self.mem.header().reset();
        self.tail = 0;
        self.cached_head = 0;
        self.closed = false;
    }

    /// Copies what fits of `data` and publishes it; returns how many bytes were taken.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, RingError> {
        self.check_open()?;
        let mut free = self.cached_free();
        if free < data.len() {
            self.refresh_head()?;
            free = self.cached_free();
        }
        let n = data.len().min(free);
        if n > 0 {
            copy_in(&self.mem, self.tail, &data[..n]);
            self.advance(n);
        }
        Ok(n)
    }

    /// The contiguous free space at the tail (possibly empty); fill some and [`Self::commit`].
    pub fn reserve(&mut self) -> Result<&mut [u8], RingError> {
        self.check_open()?;
        self.refresh_head()?;
        let (pos, len) = split(self.capacity(), self.tail, self.cached_free());
        self.mem.track(self.tail, len, true);
        // SAFETY: `pos + len <= capacity` (split); free space belongs to the writer until it is
        // published, and `&mut self` keeps this the only slice of it in this process.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.mem.data().as_ptr().add(pos), len) })
    }

    /// Publishes `n` bytes filled after [`Self::reserve`] (clamped to the free space).
    pub fn commit(&mut self, n: usize) {
        if self.closed {
            return;
        }
        let n = n.min(self.cached_free());
        if n > 0 {
            self.advance(n);
        }
    }

    /// Free bytes now.
    pub fn space(&self) -> Result<usize, RingError> {
        let head = self.load_head()?;
        Ok(self.capacity() as usize - self.tail.wrapping_sub(head) as usize)
    }

    /// EOF after the bytes written so far.
    pub fn close(&mut self) {
        self.finish(EOF, 0);
    }

    /// Ends the stream with an error; the reader sees `code` after draining the bytes.
    pub fn set_error(&mut self, code: u32) {
        self.finish(ERROR, code);
    }

    /// The reader went away: further bytes will never be read (EPIPE).
    pub fn reader_closed(&self) -> bool {
        self.mem.header().reader.closed.load(Ordering::Acquire) != 0
    }

    /// After publishing: true (and cleared) if the reader asked for a data signal.
    pub fn signal_wanted(&mut self) -> bool {
        take_request(&self.mem.header().data_wanted)
    }

    /// Asks the reader for a space signal; then re-check [`Self::space`] before sleeping.
    pub fn request_signal(&self) {
        request(&self.mem.header().space_wanted);
    }

    pub fn cancel_signal(&self) {
        cancel(&self.mem.header().space_wanted);
    }

    fn check_open(&self) -> Result<(), RingError> {
        if self.closed {
            return Err(RingError::Closed);
        }
        Ok(())
    }

    #[inline]
    fn cached_free(&self) -> usize {
        self.capacity() as usize - self.tail.wrapping_sub(self.cached_head) as usize
    }

    fn advance(&mut self, n: usize) {
        self.tail = self.tail.wrapping_add(n as u32);
        let w = &self.mem.header().writer;
        w.tail.store(self.tail, Ordering::Release);
    }

    fn finish(&mut self, state: u32, code: u32) {
        if self.closed {
            return;
        }
        self.closed = true;
        let w = &self.mem.header().writer;
        w.error.store(code, Ordering::Relaxed);
        w.state.store(state, Ordering::Release);
    }

    /// The reader's head: never behind our cached copy, never past our tail.
    fn load_head(&self) -> Result<u32, RingError> {
        let head = self.mem.header().reader.head.load(Ordering::Acquire);
        if head.wrapping_sub(self.cached_head) > self.tail.wrapping_sub(self.cached_head) {
            return Err(RingError::Corrupt("byte ring head out of range"));
        }
        Ok(head)
    }

    fn refresh_head(&mut self) -> Result<(), RingError> {
        self.cached_head = self.load_head()?;
        Ok(())
    }
}

impl<M: ByteMem> ByteReader<M> {
    /// Wraps fresh ring memory (indices zero).
    pub fn new(mem: M) -> Result<Self, RingError> {
        check_capacity(mem.capacity())?;
        Ok(ByteReader {
            mem,
            head: 0,
            cached_tail: 0,
        })
    }

    pub fn capacity(&self) -> u32 {
        self.mem.capacity()
    }

    /// Empties the ring and opens it again, for both ends: only while the
    /// writer is not using it (see [`ServerEnd::reset`]).
    pub fn reset(&mut self) {
        self.mem.header().reset();
        self.head = 0;
        self.cached_tail = 0;
    }

    /// Copies up to `out.len()` bytes out; 0 means empty (then see [`Self::eof`], [`Self::error`]).
    pub fn read(&mut self, out: &mut [u8]) -> Result<usize, RingError> {
        let mut ready = self.cached_ready();
        if ready < out.len() {
            self.cached_tail = self.load_tail()?;
            ready = self.cached_ready();
        }
        let n = out.len().min(ready);
        if n > 0 {
            copy_out(&self.mem, self.head, &mut out[..n]);
            self.advance(n);
        } else if !out.is_empty() {
            self.check_state()?;
        }
        Ok(n)
    }

    /// The contiguous readable bytes at the head (possibly empty); then [`Self::consume`].
    pub fn peek(&self) -> Result<&[u8], RingError> {
        let ready = self.load_tail()?.wrapping_sub(self.head) as usize;
        let (pos, len) = split(self.capacity(), self.head, ready);
        self.mem.track(self.head, len, false);
        // SAFETY: `pos + len <= capacity` (split); published bytes are not touched by the writer
        // until our head passes them, which needs `&mut self` (consume).
        Ok(unsafe { std::slice::from_raw_parts(self.mem.data().as_ptr().add(pos), len) })
    }

    /// Drops `n` bytes seen through [`Self::peek`] (clamped to what is readable).
    pub fn consume(&mut self, n: usize) {
        if let Ok(tail) = self.load_tail() {
            self.cached_tail = tail;
        }
        let n = n.min(self.cached_ready());
        if n > 0 {
            self.advance(n);
        }
    }

    /// The free-running index of the first byte not consumed.
    pub fn head(&self) -> u32 {
        self.head
    }

    /// A view of the bytes this reader has not consumed, for a consumer
    /// that keeps them in place until it is done with them.
    ///
    /// # Safety
    /// The view must be used on the thread that holds this reader, only for
    /// bytes the reader has not consumed (the writer may reuse the others at
    /// once), and not after the ring is [reset](Self::reset).
    pub unsafe fn held(&self) -> HeldBytes<M>
    where
        M: Clone,
    {
        HeldBytes {
            mem: self.mem.clone(),
            _one_thread: PhantomData,
        }
    }

    /// Readable bytes now.
    pub fn available(&self) -> Result<usize, RingError> {
        Ok(self.load_tail()?.wrapping_sub(self.head) as usize)
    }

    /// The writer closed cleanly and every byte has been read.
    pub fn eof(&self) -> bool {
        self.ended() == Some(EOF)
    }

    /// The writer closed cleanly; bytes before the close may still be
    /// waiting to be read.
    pub fn writer_finished(&self) -> bool {
        self.mem.header().writer.state.load(Ordering::Acquire) == EOF
    }

    /// The writer's error code, once every byte before it has been read.
    pub fn error(&self) -> Option<u32> {
        (self.ended() == Some(ERROR))
            .then(|| self.mem.header().writer.error.load(Ordering::Relaxed))
    }

    /// Tells the writer nobody will read any more.
    pub fn close(&mut self) {
        self.mem.header().reader.closed.store(1, Ordering::Release);
    }

    /// After consuming: true (and cleared) if the writer asked for a space signal.
    pub fn signal_wanted(&mut self) -> bool {
        take_request(&self.mem.header().space_wanted)
    }

    /// Asks the writer for a data signal; then re-check [`Self::available`] (and eof) first.
    pub fn request_signal(&self) {
        request(&self.mem.header().data_wanted);
    }

    pub fn cancel_signal(&self) {
        cancel(&self.mem.header().data_wanted);
    }

    #[inline]
    fn cached_ready(&self) -> usize {
        self.cached_tail.wrapping_sub(self.head) as usize
    }

    fn advance(&mut self, n: usize) {
        self.head = self.head.wrapping_add(n as u32);
        let r = &self.mem.header().reader;
        r.head.store(self.head, Ordering::Release);
    }

    /// The writer's tail: at most `capacity` ahead of our head, never behind our cached copy.
    fn load_tail(&self) -> Result<u32, RingError> {
        let tail = self.mem.header().writer.tail.load(Ordering::Acquire);
        let ready = tail.wrapping_sub(self.head);
        if ready > self.capacity() || ready < self.cached_tail.wrapping_sub(self.head) {
            return Err(RingError::Corrupt("byte ring tail out of range"));
        }
        Ok(tail)
    }

    /// The final state if the writer ended the stream and nothing is left to read. The state is
    /// acquired before the tail, so a tail published before the close is seen.
    fn ended(&self) -> Option<u32> {
        let state = self.mem.header().writer.state.load(Ordering::Acquire);
        let drained = self.load_tail().is_ok_and(|t| t == self.head);
        (state != OPEN && drained).then_some(state)
    }

    fn check_state(&self) -> Result<(), RingError> {
        match self.mem.header().writer.state.load(Ordering::Acquire) {
            OPEN | EOF | ERROR => Ok(()),
            _ => Err(RingError::Corrupt("byte ring state")),
        }
    }
}

/// Bytes a reader keeps in the ring after seeing them, copied out by
/// free-running index: a reader that consumes only when it is done with
/// its bytes (TCP's send queue keeps what the peer has not acknowledged in
/// the socket's up ring) reads them here, as often as it needs, in place.
#[derive(Debug)]
pub struct HeldBytes<M: ByteMem = DefaultBytes> {
    mem: M,
    /// Tied to the reader's thread (see [`ByteReader::held`]).
    _one_thread: PhantomData<*const ()>,
}

impl<M: ByteMem> HeldBytes<M> {
    /// Copies the bytes from free-running index `at` into `dst`. They must
    /// have been published (an impossible range is `Corrupt`); which
    /// bytes of them the reader has consumed it must know itself.
    pub fn copy_out(&self, at: u32, dst: &mut [u8]) -> Result<(), RingError> {
        let tail = self.mem.header().writer.tail.load(Ordering::Acquire);
        let before_tail = tail.wrapping_sub(at) as usize;
        if dst.len() > before_tail || before_tail > self.mem.capacity() as usize {
            return Err(RingError::Corrupt("held bytes outside the published ones"));
        }
        copy_out(&self.mem, at, dst);
        Ok(())
    }
}

/// Sets a wakeup request and orders it before the caller's re-check (pairs with `take_request`;
/// SeqCst on the flag for loom's sake, see [`crate::queue`]).
fn request(flag: &AtomicU32) {
    flag.store(1, Ordering::SeqCst);
    fence(Ordering::SeqCst);
}

/// Withdraws a request.
fn cancel(flag: &AtomicU32) {
    flag.store(0, Ordering::SeqCst);
}

/// After publishing: answers a pending request once (pairs with `request`).
fn take_request(flag: &AtomicU32) -> bool {
    fence(Ordering::SeqCst);
    flag.load(Ordering::SeqCst) != 0 && flag.swap(0, Ordering::SeqCst) != 0
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn ring() -> (ByteWriter<HeapBytes>, ByteReader<HeapBytes>) {
        heap(64).unwrap()
    }

    #[test]
    fn write_then_read() {
        let (mut w, mut r) = ring();
        assert_eq!(w.write(b"hello").unwrap(), 5);
        assert_eq!(r.available().unwrap(), 5);
        let mut buf = [0u8; 16];
        assert_eq!(r.read(&mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        assert_eq!(r.read(&mut buf).unwrap(), 0);
        assert!(!r.eof());
    }

    #[test]
    fn held_bytes_read_in_place_across_the_wrap_until_consumed() {
        let (mut w, mut r) = ring();
        w.write(&[0; 60]).unwrap();
        r.consume(60);
        // 20 bytes from index 60 wrap at 64.
        let data: Vec<u8> = (0..20).collect();
        assert_eq!(w.write(&data).unwrap(), 20);
        // SAFETY: one thread; only bytes from the head on; no reset.
        let held = unsafe { r.held() };
        let at = r.head();
        let mut out = [0u8; 12];
        held.copy_out(at.wrapping_add(6), &mut out).unwrap();
        assert_eq!(out[..], data[6..18]);
        // Not yet published, or further back than the ring holds.
        assert!(held.copy_out(at.wrapping_add(15), &mut out).is_err());
        assert!(held.copy_out(at.wrapping_sub(64), &mut out).is_err());
        // Space comes back to the writer only when consumed.
        assert_eq!(w.space().unwrap(), 44);
        r.consume(20);
        assert_eq!(w.space().unwrap(), 64);
    }

    #[test]
    fn a_reset_ring_is_empty_and_open_at_both_ends() {
        let (mut w, mut r) = ring();
        w.write(b"stale bytes").unwrap();
        w.close();
        r.close();
        r.request_signal();
        w.reset();
        r.reset();
        assert!(!w.reader_closed() && !r.eof());
        assert_eq!(r.available().unwrap(), 0);
        assert!(!w.signal_wanted(), "a stale signal request survived");
        assert_eq!(w.write(b"new").unwrap(), 3);
        let mut buf = [0u8; 16];
        assert_eq!(r.read(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"new");
    }

    #[test]
    fn write_stops_when_full_and_space_returns() {
        let (mut w, mut r) = ring();
        assert_eq!(w.write(&[7u8; 100]).unwrap(), 64);
        assert_eq!(w.space().unwrap(), 0);
        assert_eq!(w.write(b"x").unwrap(), 0);
        let mut buf = [0u8; 10];
        r.read(&mut buf).unwrap();
        assert_eq!(w.space().unwrap(), 10);
        assert_eq!(w.write(&[1u8; 20]).unwrap(), 10);
    }

    #[test]
    fn wraps_around_with_contents_intact() {
        let (mut w, mut r) = ring();
        let mut next_in = 0u8;
        let mut next_out = 0u8;
        for round in 0..200 {
            let chunk: Vec<u8> = (0..(round % 50 + 1))
                .map(|i| next_in.wrapping_add(i as u8))
                .collect();
            let n = w.write(&chunk).unwrap();
            next_in = next_in.wrapping_add(n as u8);
            let mut buf = [0u8; 37];
            let got = r.read(&mut buf).unwrap();
            for b in &buf[..got] {
                assert_eq!(*b, next_out);
                next_out = next_out.wrapping_add(1);
            }
        }
    }

    #[test]
    fn reserve_commit_peek_consume_across_the_wrap() {
        let (mut w, mut r) = ring();
        w.write(&[0u8; 60]).unwrap();
        r.consume(60);
        let s = w.reserve().unwrap();
        assert_eq!(s.len(), 4, "contiguous up to the end of the data area");
        s.copy_from_slice(b"abcd");
        w.commit(4);
        let s = w.reserve().unwrap();
        assert_eq!(s.len(), 60);
        s[..3].copy_from_slice(b"efg");
        w.commit(3);
        assert_eq!(r.peek().unwrap(), b"abcd");
        r.consume(4);
        assert_eq!(r.peek().unwrap(), b"efg");
        r.consume(100);
        assert_eq!(r.available().unwrap(), 0);
    }

    #[test]
    fn commit_is_clamped_to_free_space() {
        let (mut w, r) = ring();
        w.write(&[0u8; 60]).unwrap();
        w.reserve().unwrap();
        w.commit(1000);
        assert_eq!(r.available().unwrap(), 64);
    }

    #[test]
    fn eof_after_the_last_byte() {
        let (mut w, mut r) = ring();
        w.write(b"bye").unwrap();
        assert!(!r.writer_finished());
        w.close();
        assert!(!r.eof(), "bytes first");
        assert!(r.writer_finished(), "closed, bytes or not");
        let mut buf = [0u8; 8];
        assert_eq!(r.read(&mut buf).unwrap(), 3);
        assert!(r.eof());
        assert_eq!(r.error(), None);
        assert!(matches!(w.write(b"more"), Err(RingError::Closed)));
        assert!(matches!(w.reserve(), Err(RingError::Closed)));
    }

    #[test]
    fn error_code_after_the_last_byte() {
        let (mut w, mut r) = ring();
        w.write(b"ab").unwrap();
        w.set_error(104);
        w.close(); // ignored: the stream already ended
        assert!(!r.writer_finished(), "an error is no clean close");
        assert_eq!(r.error(), None);
        let mut buf = [0u8; 8];
        assert_eq!(r.read(&mut buf).unwrap(), 2);
        assert_eq!(r.error(), Some(104));
        assert!(!r.eof());
    }

    #[test]
    fn reader_close_is_seen_by_writer() {
        let (w, mut r) = ring();
        assert!(!w.reader_closed());
        r.close();
        assert!(w.reader_closed());
    }

    #[test]
    fn corrupt_tail_is_reported_not_followed() {
        let (_w, mut r) = ring();
        r.mem.header().writer.tail.store(65, Ordering::Release);
        let mut buf = [0u8; 8];
        assert!(matches!(r.read(&mut buf), Err(RingError::Corrupt(_))));
        assert!(matches!(r.peek(), Err(RingError::Corrupt(_))));
        assert!(matches!(r.available(), Err(RingError::Corrupt(_))));
        r.consume(10);
        assert_eq!(r.head, 0, "consume ignores a corrupt tail");
        assert!(!r.eof());
    }

    #[test]
    fn tail_moving_backwards_is_corrupt() {
        let (mut w, mut r) = ring();
        w.write(b"abcdef").unwrap();
        let mut buf = [0u8; 2];
        r.read(&mut buf).unwrap();
        r.mem.header().writer.tail.store(1, Ordering::Release);
        assert!(matches!(r.available(), Err(RingError::Corrupt(_))));
    }

    #[test]
    fn corrupt_head_is_reported() {
        let (mut w, _r) = ring();
        w.write(b"abc").unwrap();
        w.mem.header().reader.head.store(4, Ordering::Release);
        assert!(matches!(w.space(), Err(RingError::Corrupt(_))));
        assert!(matches!(w.write(&[0u8; 100]), Err(RingError::Corrupt(_))));
        assert!(matches!(w.reserve(), Err(RingError::Corrupt(_))));
        w.mem
            .header()
            .reader
            .head
            .store(u32::MAX, Ordering::Release);
        assert!(
            matches!(w.space(), Err(RingError::Corrupt(_))),
            "behind the cached head"
        );
    }

    #[test]
    fn corrupt_state_is_reported_when_empty() {
        let (_w, mut r) = ring();
        r.mem.header().writer.state.store(9, Ordering::Release);
        let mut buf = [0u8; 1];
        assert!(matches!(r.read(&mut buf), Err(RingError::Corrupt(_))));
        assert!(!r.eof());
        assert_eq!(r.error(), None);
    }

    #[test]
    fn data_and_space_signals_are_answered_once() {
        let (mut w, mut r) = ring();
        assert!(!w.signal_wanted());
        r.request_signal();
        w.write(b"x").unwrap();
        assert!(w.signal_wanted());
        assert!(!w.signal_wanted());
        w.request_signal();
        r.consume(1);
        assert!(r.signal_wanted());
        assert!(!r.signal_wanted());
        w.request_signal();
        w.cancel_signal();
        r.request_signal();
        r.cancel_signal();
        assert!(!r.signal_wanted());
        assert!(!w.signal_wanted());
    }

    #[test]
    fn rejects_bad_capacity() {
        assert!(matches!(heap(100), Err(RingError::Layout(_))));
        assert!(matches!(heap(0), Err(RingError::Layout(_))));
        assert!(heap(1).is_ok());
    }

    #[test]
    fn threads_stream_bytes_in_order() {
        let (mut w, mut r) = heap(256).unwrap();
        const N: usize = 300_000;
        let t = std::thread::spawn(move || {
            let data: Vec<u8> = (0..N).map(|i| (i % 251) as u8).collect();
            let mut sent = 0;
            while sent < N {
                let n = w.write(&data[sent..(sent + 100).min(N)]).unwrap();
                sent += n;
                if n == 0 {
                    std::thread::yield_now();
                }
            }
            w.close();
        });
        let mut got = 0;
        let mut buf = [0u8; 77];
        while !r.eof() {
            let n = r.read(&mut buf).unwrap();
            for b in &buf[..n] {
                assert_eq!(*b, (got % 251) as u8);
                got += 1;
            }
            if n == 0 {
                std::thread::yield_now();
            }
        }
        assert_eq!(got, N);
        t.join().unwrap();
    }
}
