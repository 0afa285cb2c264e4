//! One direction of frames over a buffer pool: a free queue and an active queue (sDDF).
//!
//! Memory: `[free queue][active queue][data: buffers * buf_size]`. Buffer `i` lives at offset
//! `i * buf_size` of the data area; descriptors carry that offset.
//!
//! The sender owns every buffer at start, in a private free list. It fills one, sends it on the
//! active queue (lending it to the receiver) and gets it back on the free queue. Each queue has
//! room for every buffer, so a well-behaved peer can never make one overflow.
//!
//! Neither side trusts the other. Each keeps private shadow state:
//! - the sender accepts a returned descriptor only if it names a buffer (in range, aligned) that
//!   is currently lent to the receiver; a second return or a never-lent buffer is `Corrupt`;
//! - the receiver accepts an active descriptor only if it names a buffer (in range, aligned,
//!   `len <= buf_size`) that it does not already hold.
//!
//! `Corrupt` means: end that peer's session. Our own memory stays safe either way.

use std::sync::Arc;

use crate::desc::Desc;
use crate::error::RingError;
use crate::platform::SharedRegion;
use crate::queue::{queue_bytes, Consumer, Producer};
use crate::shm::DataArea;
use crate::sync::line_up;

/// Largest pool: 64 Ki buffers.
pub const MAX_BUFFERS: u32 = 1 << 16;

/// Shape of a channel's pool. `buffers` is a power of two; all of it fits 32-bit offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelLayout {
    pub buffers: u32,
    pub buf_size: u32,
}

impl ChannelLayout {
    /// `buffers` buffers for frames of up to `frame` bytes, each rounded up
    /// to a cache line.
    pub fn for_frames(frame: u32, buffers: u32) -> ChannelLayout {
        ChannelLayout {
            buffers,
            buf_size: frame.div_ceil(64) * 64,
        }
    }

    /// Bytes of the buffer pool: descriptors name buffers by a 32-bit
    /// offset into it ([`Self::check`]).
    pub fn pool_bytes(&self) -> u64 {
        self.data_bytes() as u64
    }

    /// Bytes of shared memory the channel takes (queues and data), rounded to a cache line.
    pub fn region_bytes(&self) -> usize {
        self.data_offset() + line_up(self.data_bytes())
    }

    /// Refuses layouts that cannot work.
    pub fn check(&self) -> Result<(), RingError> {
        if !self.buffers.is_power_of_two() || self.buffers > MAX_BUFFERS {
            return Err(RingError::Layout("buffers must be a power of two <= 65536"));
        }
        if self.buf_size == 0 || self.data_bytes() > u32::MAX as usize {
            return Err(RingError::Layout(
                "buffer size zero, or pool beyond 32-bit offsets",
            ));
        }
        Ok(())
    }

    fn free_offset(&self) -> usize {
        0
    }

    fn active_offset(&self) -> usize {
        queue_bytes(self.buffers)
    }

    fn data_offset(&self) -> usize {
        2 * queue_bytes(self.buffers)
    }

    fn data_bytes(&self) -> usize {
        self.buffers as usize * self.buf_size as usize
    }

    /// The buffer index an offset names, if it is in range and aligned.
    fn index_of(&self, offset: u32) -> Option<usize> {
        let i = offset / self.buf_size;
        (offset % self.buf_size == 0 && i < self.buffers).then_some(i as usize)
    }

    fn offset_of(&self, index: usize) -> u32 {
        index as u32 * self.buf_size
    }
}

/// A buffer the sender owns, being filled. Hand it to [`ChannelSender::send`] or
/// [`ChannelSender::free`].
#[derive(Debug)]
pub struct TxBuf(usize);

/// A received frame: the receiver holds its buffer until [`ChannelReceiver::release`].
#[derive(Debug)]
pub struct RxBuf(Desc);

impl RxBuf {
    pub fn desc(&self) -> Desc {
        self.0
    }
}

/// The sending side of a channel.
#[derive(Debug)]
pub struct ChannelSender {
    layout: ChannelLayout,
    active: Producer,
    free: Consumer,
    data: DataArea,
    /// Shadow: `lent[i]` iff buffer `i` was sent and has not come back.
    lent: Vec<bool>,
    /// What buffer `i` carried when last sent: (send order, len, flags).
    sent: Vec<(u64, u32, u32)>,
    next_seq: u64,
    /// Buffers we own and nobody is filling.
    free_list: Vec<u32>,
    staged: Vec<Desc>,
    returns: Vec<Desc>,
}

/// The receiving side of a channel.
#[derive(Debug)]
pub struct ChannelReceiver {
    layout: ChannelLayout,
    active: Consumer,
    free: Producer,
    data: DataArea,
    /// Shadow: `held[i]` iff we received buffer `i` and have not published its return.
    held: Vec<bool>,
    staged: Vec<Desc>,
}

impl ChannelSender {
    /// The sending side of the channel at `offset` in `region` (fresh memory).
    pub fn attach(
        region: Arc<SharedRegion>,
        offset: usize,
        layout: ChannelLayout,
    ) -> Result<Self, RingError> {
        layout.check()?;
        let n = layout.buffers as usize;
        Ok(ChannelSender {
            layout,
            active: Producer::attach(
                region.clone(),
                offset + layout.active_offset(),
                layout.buffers,
            )?,
            free: Consumer::attach(
                region.clone(),
                offset + layout.free_offset(),
                layout.buffers,
            )?,
            data: DataArea::new(region, offset + layout.data_offset(), layout.data_bytes())?,
            lent: vec![false; n],
            sent: vec![(0, 0, 0); n],
            next_seq: 0,
            free_list: (0..layout.buffers).rev().collect(),
            staged: Vec::with_capacity(n),
            returns: vec![Desc::default(); n.min(64)],
        })
    }

    /// A buffer to fill, or None while every buffer is lent out (see [`Self::request_signal`]).
    ///
    /// The most recently returned buffer first: returns are taken in as
    /// soon as they come, so the buffers in use stay the few that are warm
    /// in the cache rather than cycling through the whole pool (with 64 KiB
    /// segmentation buffers, 33 MiB of it).
    pub fn alloc(&mut self) -> Result<Option<TxBuf>, RingError> {
        if self.free_list.is_empty() || !self.free.is_empty() {
            self.reclaim()?;
        }
        Ok(self.free_list.pop().map(|i| TxBuf(i as usize)))
    }

    /// The whole buffer (`buf_size` bytes).
    pub fn buf_mut(&mut self, b: &mut TxBuf) -> &mut [u8] {
        let offset = self.layout.offset_of(b.0) as usize;
        self.data.bytes_mut(offset, self.layout.buf_size as usize)
    }

    /// Stages the buffer for the receiver; `len` is clamped to `buf_size`. See [`Self::flush`].
    pub fn send(&mut self, b: TxBuf, len: u32, flags: u32, context: u32) {
        debug_assert!(len <= self.layout.buf_size, "frame longer than its buffer");
        self.lent[b.0] = true;
        self.sent[b.0] = (self.next_seq, len.min(self.layout.buf_size), flags);
        self.next_seq += 1;
        self.staged.push(Desc {
            offset: self.layout.offset_of(b.0),
            len: len.min(self.layout.buf_size),
            flags,
            context,
        });
    }

    /// Gives back an allocated buffer without sending it.
    pub fn free(&mut self, b: TxBuf) {
        self.free_list.push(b.0 as u32);
    }

    /// Publishes the staged frames in one batch. Ok(true): ring the receiver's doorbell.
    pub fn flush(&mut self) -> Result<bool, RingError> {
        if self.staged.is_empty() {
            return Ok(false);
        }
        // Room for every buffer: a short batch means the receiver faked its head.
        if self.active.enqueue_batch(&self.staged)? != self.staged.len() {
            return Err(RingError::Corrupt("active queue full"));
        }
        self.staged.clear();
        Ok(self.active.signal_wanted())
    }

    /// Asks to be woken when buffers come back; then re-check [`Self::has_returns`].
    pub fn request_signal(&self) {
        self.free.request_signal();
    }

    pub fn cancel_signal(&self) {
        self.free.cancel_signal();
    }

    /// The receiver has returned buffers we have not reclaimed yet.
    pub fn has_returns(&self) -> bool {
        !self.free.is_empty()
    }

    pub fn buf_size(&self) -> u32 {
        self.layout.buf_size
    }

    pub fn layout(&self) -> ChannelLayout {
        self.layout
    }

    /// Copies of the frames sent and never returned, oldest first, with
    /// their flags. After the receiver died these are the frames it may not
    /// have passed on (some it may have: a resend can duplicate them).
    pub fn unreturned_frames(&mut self) -> Vec<(Vec<u8>, u32)> {
        // Returns already published are not in doubt; a broken free queue
        // only means fewer of them are known.
        let _ = self.reclaim();
        let mut lent: Vec<usize> = (0..self.lent.len()).filter(|&i| self.lent[i]).collect();
        lent.sort_by_key(|&i| self.sent[i].0);
        lent.into_iter()
            .map(|i| {
                let (_, len, flags) = self.sent[i];
                let offset = self.layout.offset_of(i) as usize;
                (self.data.bytes(offset, len as usize).to_vec(), flags)
            })
            .collect()
    }

    /// Takes back what the peer returned so far.
    pub fn reclaim_returned(&mut self) -> Result<(), RingError> {
        self.reclaim()
    }

    /// Buffers sent and not yet reclaimed from the free queue.
    pub fn in_flight(&self) -> usize {
        self.lent.iter().filter(|l| **l).count()
    }

    /// Moves returned buffers to the free list, checking each against the shadow state.
    fn reclaim(&mut self) -> Result<(), RingError> {
        loop {
            let n = self.free.dequeue_batch(&mut self.returns)?;
            for i in 0..n {
                let index = self.check_return(self.returns[i])?;
                self.lent[index] = false;
                self.free_list.push(index as u32);
            }
            if n < self.returns.len() {
                return Ok(());
            }
        }
    }

    /// In range, aligned, and currently lent (not never-lent, not returned twice).
    fn check_return(&self, d: Desc) -> Result<usize, RingError> {
        let index = self
            .layout
            .index_of(d.offset)
            .ok_or(RingError::Corrupt("returned descriptor outside the pool"))?;
        if !self.lent[index] {
            return Err(RingError::Corrupt("returned buffer was not lent"));
        }
        Ok(index)
    }
}

impl ChannelReceiver {
    /// The receiving side of the channel at `offset` in `region` (fresh memory).
    pub fn attach(
        region: Arc<SharedRegion>,
        offset: usize,
        layout: ChannelLayout,
    ) -> Result<Self, RingError> {
        layout.check()?;
        let n = layout.buffers as usize;
        Ok(ChannelReceiver {
            layout,
            active: Consumer::attach(
                region.clone(),
                offset + layout.active_offset(),
                layout.buffers,
            )?,
            free: Producer::attach(
                region.clone(),
                offset + layout.free_offset(),
                layout.buffers,
            )?,
            data: DataArea::new(region, offset + layout.data_offset(), layout.data_bytes())?,
            held: vec![false; n],
            staged: Vec::with_capacity(n),
        })
    }

    /// The next frame, checked; None if none is ready.
    pub fn recv(&mut self) -> Result<Option<RxBuf>, RingError> {
        let Some(d) = self.active.dequeue()? else {
            return Ok(None);
        };
        let index = self.check_active(d)?;
        self.held[index] = true;
        Ok(Some(RxBuf(d)))
    }

    /// The frame's bytes (`desc.len` of them).
    pub fn data(&self, b: &RxBuf) -> &[u8] {
        self.data.bytes(b.0.offset as usize, b.0.len as usize)
    }

    /// The frame's bytes, for in-place fixups.
    pub fn data_mut(&mut self, b: &mut RxBuf) -> &mut [u8] {
        self.data.bytes_mut(b.0.offset as usize, b.0.len as usize)
    }

    /// Stages the buffer's return to the sender. See [`Self::flush`].
    pub fn release(&mut self, b: RxBuf) {
        self.staged.push(b.0);
    }

    /// Publishes staged returns in one batch. Ok(true): ring the sender's doorbell.
    pub fn flush(&mut self) -> Result<bool, RingError> {
        if self.staged.is_empty() {
            return Ok(false);
        }
        if self.free.enqueue_batch(&self.staged)? != self.staged.len() {
            return Err(RingError::Corrupt("free queue full"));
        }
        for d in &self.staged {
            // Staged descriptors passed `check_active`, so their offsets are valid.
            self.held[(d.offset / self.layout.buf_size) as usize] = false;
        }
        self.staged.clear();
        Ok(self.free.signal_wanted())
    }

    /// Asks to be woken when frames arrive; then re-check [`Self::is_empty`].
    pub fn request_signal(&self) {
        self.active.request_signal();
    }

    pub fn cancel_signal(&self) {
        self.active.cancel_signal();
    }

    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    pub fn layout(&self) -> ChannelLayout {
        self.layout
    }

    /// In range, aligned, fits its buffer, and not a buffer we already hold.
    fn check_active(&self, d: Desc) -> Result<usize, RingError> {
        let index = self
            .layout
            .index_of(d.offset)
            .ok_or(RingError::Corrupt("frame descriptor outside the pool"))?;
        if d.len > self.layout.buf_size {
            return Err(RingError::Corrupt("frame longer than its buffer"));
        }
        if self.held[index] {
            return Err(RingError::Corrupt("frame buffer already held"));
        }
        Ok(index)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::flags;

    const LAYOUT: ChannelLayout = ChannelLayout {
        buffers: 4,
        buf_size: 256,
    };

    /// Both sides over two separate mappings of one memfd, as two processes would have.
    fn pair(layout: ChannelLayout) -> (ChannelSender, ChannelReceiver, Arc<SharedRegion>) {
        let a = Arc::new(SharedRegion::create("ch", layout.region_bytes()).unwrap());
        let fd = a.fd().try_clone_to_owned().unwrap();
        let b = Arc::new(SharedRegion::from_fd(fd, layout.region_bytes()).unwrap());
        let tx = ChannelSender::attach(a, 0, layout).unwrap();
        let rx = ChannelReceiver::attach(b.clone(), 0, layout).unwrap();
        (tx, rx, b)
    }

    /// A rogue receiver's hand on the free queue.
    fn rogue_free_queue(region: &Arc<SharedRegion>) -> Producer {
        Producer::attach(region.clone(), LAYOUT.free_offset(), LAYOUT.buffers).unwrap()
    }

    /// A rogue sender's hand on the active queue.
    fn rogue_active_queue(region: &Arc<SharedRegion>) -> Producer {
        Producer::attach(region.clone(), LAYOUT.active_offset(), LAYOUT.buffers).unwrap()
    }

    fn send(tx: &mut ChannelSender, payload: &[u8]) {
        let mut b = tx.alloc().unwrap().expect("a free buffer");
        tx.buf_mut(&mut b)[..payload.len()].copy_from_slice(payload);
        tx.send(b, payload.len() as u32, flags::TX_CSUM, 3);
    }

    #[test]
    fn frames_go_and_buffers_come_back() {
        let (mut tx, mut rx, _) = pair(LAYOUT);
        for round in 0..10u8 {
            send(&mut tx, &[round; 60]);
            send(&mut tx, b"second");
            tx.flush().unwrap();
            assert!(tx.in_flight() >= 2, "returns are reclaimed lazily");
            let mut a = rx.recv().unwrap().unwrap();
            assert_eq!(rx.data(&a), &[round; 60][..]);
            assert_eq!(a.desc().flags, flags::TX_CSUM);
            assert_eq!(a.desc().context, 3);
            rx.data_mut(&mut a)[0] = 0xff;
            assert_eq!(rx.data(&a)[0], 0xff);
            let b = rx.recv().unwrap().unwrap();
            assert_eq!(rx.data(&b), b"second");
            assert!(rx.recv().unwrap().is_none());
            rx.release(a);
            rx.release(b);
            rx.flush().unwrap();
            assert!(tx.has_returns());
        }
    }

    #[test]
    fn unreturned_frames_come_back_in_send_order() {
        let (mut tx, mut rx, _r) = pair(ChannelLayout {
            buffers: 8,
            buf_size: 64,
        });
        for p in [&b"one"[..], b"two", b"three"] {
            send(&mut tx, p);
        }
        tx.flush().unwrap();
        // The receiver passes the first one on and returns it.
        let b = rx.recv().unwrap().unwrap();
        rx.release(b);
        rx.flush().unwrap();
        let left: Vec<Vec<u8>> = tx.unreturned_frames().into_iter().map(|f| f.0).collect();
        assert_eq!(left, vec![b"two".to_vec(), b"three".to_vec()]);
    }

    #[test]
    fn alloc_runs_dry_then_refills() {
        let (mut tx, mut rx, _) = pair(LAYOUT);
        for _ in 0..4 {
            send(&mut tx, b"x");
        }
        assert!(tx.alloc().unwrap().is_none());
        tx.flush().unwrap();
        let got = rx.recv().unwrap().unwrap();
        rx.release(got);
        rx.flush().unwrap();
        assert!(tx.alloc().unwrap().is_some());
        assert!(tx.alloc().unwrap().is_none());
    }

    #[test]
    fn freed_buffer_is_reused() {
        let (mut tx, _rx, _) = pair(LAYOUT);
        let bufs: Vec<_> = (0..4).map(|_| tx.alloc().unwrap().unwrap()).collect();
        assert!(tx.alloc().unwrap().is_none());
        for b in bufs {
            tx.free(b);
        }
        assert!(tx.alloc().unwrap().is_some());
    }

    #[test]
    fn signals_are_requested_and_answered() {
        let (mut tx, mut rx, _) = pair(LAYOUT);
        send(&mut tx, b"a");
        assert!(!tx.flush().unwrap(), "nobody asked");
        rx.request_signal();
        assert!(!rx.is_empty());
        rx.cancel_signal();
        let got = rx.recv().unwrap().unwrap();
        rx.request_signal();
        assert!(rx.is_empty());
        send(&mut tx, b"b");
        assert!(tx.flush().unwrap(), "receiver sleeps: ring");
        assert!(!tx.flush().unwrap(), "nothing staged");
        tx.request_signal();
        assert!(!tx.has_returns());
        rx.release(got);
        assert!(rx.flush().unwrap(), "sender waits for buffers: ring");
    }

    fn corrupt_return(d: Desc) -> RingError {
        let (mut tx, mut rx, region) = pair(LAYOUT);
        send(&mut tx, b"a");
        tx.flush().unwrap();
        let got = rx.recv().unwrap().unwrap();
        drop(rx); // the rogue receiver writes the free queue itself
        let mut q = rogue_free_queue(&region);
        q.enqueue(got.desc()).unwrap();
        q.enqueue(d).unwrap();
        // Returns are taken in (and checked) at the next alloc, before the
        // three buffers never lent are used.
        tx.alloc().unwrap_err()
    }

    #[test]
    fn shadow_rejects_out_of_range_return() {
        let err = corrupt_return(Desc {
            offset: 4 * 256,
            ..Desc::default()
        });
        assert!(matches!(err, RingError::Corrupt(_)), "{err}");
        let err = corrupt_return(Desc {
            offset: u32::MAX,
            ..Desc::default()
        });
        assert!(matches!(err, RingError::Corrupt(_)), "{err}");
    }

    #[test]
    fn shadow_rejects_misaligned_return() {
        let err = corrupt_return(Desc {
            offset: 257,
            ..Desc::default()
        });
        assert!(matches!(err, RingError::Corrupt(_)), "{err}");
    }

    #[test]
    fn shadow_rejects_duplicate_return() {
        // The first buffer sent is the last of the initial free list: index 0, offset 0.
        let err = corrupt_return(Desc::default());
        assert!(
            matches!(err, RingError::Corrupt("returned buffer was not lent")),
            "{err}"
        );
    }

    #[test]
    fn shadow_rejects_never_lent_return() {
        let err = corrupt_return(Desc {
            offset: 2 * 256,
            ..Desc::default()
        });
        assert!(
            matches!(err, RingError::Corrupt("returned buffer was not lent")),
            "{err}"
        );
    }

    #[test]
    fn receiver_rejects_bad_frames() {
        let bad = [
            (
                Desc {
                    offset: 1024,
                    len: 10,
                    ..Desc::default()
                },
                "outside",
            ),
            (
                Desc {
                    offset: 100,
                    len: 10,
                    ..Desc::default()
                },
                "misaligned",
            ),
            (
                Desc {
                    offset: 256,
                    len: 257,
                    ..Desc::default()
                },
                "too long",
            ),
        ];
        for (d, why) in bad {
            let (_tx, mut rx, region) = pair(LAYOUT);
            rogue_active_queue(&region).enqueue(d).unwrap();
            assert!(matches!(rx.recv(), Err(RingError::Corrupt(_))), "{why}");
        }
    }

    #[test]
    fn receiver_rejects_a_buffer_it_already_holds() {
        let (_tx, mut rx, region) = pair(LAYOUT);
        let d = Desc {
            offset: 256,
            len: 1,
            ..Desc::default()
        };
        rogue_active_queue(&region).enqueue_batch(&[d, d]).unwrap();
        let _first = rx.recv().unwrap().unwrap();
        assert!(matches!(rx.recv(), Err(RingError::Corrupt(_))));
    }

    #[test]
    fn receiver_holds_a_buffer_until_its_return_is_published() {
        let (_tx, mut rx, region) = pair(LAYOUT);
        let mut q = rogue_active_queue(&region);
        let d = Desc {
            offset: 256,
            len: 1,
            ..Desc::default()
        };
        q.enqueue(d).unwrap();
        let b = rx.recv().unwrap().unwrap();
        rx.release(b);
        q.enqueue(d).unwrap();
        assert!(matches!(rx.recv(), Err(RingError::Corrupt(_))));
    }

    #[test]
    fn receiver_accepts_a_buffer_again_after_returning_it() {
        let (_tx, mut rx, region) = pair(LAYOUT);
        let mut q = rogue_active_queue(&region);
        let d = Desc {
            offset: 512,
            len: 0,
            ..Desc::default()
        };
        q.enqueue(d).unwrap();
        let b = rx.recv().unwrap().unwrap();
        rx.release(b);
        rx.flush().unwrap();
        q.enqueue(d).unwrap();
        assert!(rx.recv().unwrap().is_some());
    }

    #[test]
    fn returns_without_consuming_cannot_overflow_the_active_queue() {
        let (mut tx, _rx, region) = pair(LAYOUT);
        for _ in 0..4 {
            send(&mut tx, b"x");
        }
        tx.flush().unwrap();
        // A rogue receiver returns every buffer without ever consuming the active queue.
        let lent: Vec<Desc> = (0..4)
            .map(|i| Desc {
                offset: i * 256,
                ..Desc::default()
            })
            .collect();
        rogue_free_queue(&region).enqueue_batch(&lent).unwrap();
        send(&mut tx, b"y");
        assert!(matches!(
            tx.flush(),
            Err(RingError::Corrupt("active queue full"))
        ));
    }

    #[test]
    fn layout_checks() {
        assert!(LAYOUT.check().is_ok());
        let bad = [
            ChannelLayout {
                buffers: 3,
                buf_size: 2048,
            },
            ChannelLayout {
                buffers: 0,
                buf_size: 2048,
            },
            ChannelLayout {
                buffers: 4,
                buf_size: 0,
            },
            ChannelLayout {
                buffers: 1 << 16,
                buf_size: 1 << 16,
            },
            ChannelLayout {
                buffers: 1 << 17,
                buf_size: 64,
            },
        ];
        for l in bad {
            assert!(matches!(l.check(), Err(RingError::Layout(_))), "{l:?}");
        }
        assert_eq!(LAYOUT.region_bytes() % crate::sync::LINE, 0);
        assert!(LAYOUT.region_bytes() >= 4 * 256 + 2 * (4096 + 4 * 16));
    }
}
