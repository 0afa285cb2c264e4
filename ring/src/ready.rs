//! A ready list: which of many sockets behind one doorbell have news for
//! the peer, as io_uring's completion queue says which requests finished.
//!
//! A descriptor queue carries slot numbers (in [`Desc::offset`]); a flag
//! per slot keeps each slot in the queue at most once, so a queue with room
//! for every slot never fills while the peer keeps the protocol:
//!
//! - sender, after writing a slot's rings: fence; `swap(flag, 1)`; only if
//!   it was 0, enqueue the slot ([`ReadySender::mark`]); then ring the
//!   doorbell if the slot's rings say the receiver waits;
//! - receiver: dequeue a slot; `store(flag, 0)`; fence; then look at the
//!   slot's rings ([`ReadyReceiver::take`]).
//!
//! If the sender's swap saw the flag still set, the receiver's clear came
//! after it, and the fences (Dekker, as in the queue's signal handshake)
//! make the receiver's look at the rings see what the sender wrote: news is
//! never lost, and a busy slot costs one enqueue per look, not one per
//! write. Loom checks this (`tests/loom.rs`).
//!
//! Neither side trusts the other: a slot number out of range is
//! [`RingError::Corrupt`]; a sender that ignores the flags can fill the
//! queue, which only delays its own news; a receiver that never clears a
//! flag only loses that slot's news.

use crate::desc::Desc;
use crate::error::RingError;
use crate::queue::{Consumer, DefaultMem, Producer, QueueMem};
use crate::sync::{fence, AtomicU32, Ordering};

/// Where a ready list's per-slot flags live.
pub trait FlagMem {
    fn flags(&self) -> &[AtomicU32];
}

/// Flags on the heap, shared by both ends (tests, loom).
#[derive(Clone, Debug)]
pub struct HeapFlags(std::sync::Arc<[AtomicU32]>);

impl HeapFlags {
    pub fn new(slots: u32) -> HeapFlags {
        HeapFlags((0..slots).map(|_| AtomicU32::new(0)).collect())
    }
}

impl FlagMem for HeapFlags {
    fn flags(&self) -> &[AtomicU32] {
        &self.0
    }
}

#[cfg(not(loom))]
pub type DefaultFlags = crate::shm::ShmFlags;
#[cfg(loom)]
pub type DefaultFlags = HeapFlags;

/// Checks that a queue has room for every slot once.
fn check_room(capacity: u32, slots: usize) -> Result<(), RingError> {
    if slots > capacity as usize {
        return Err(RingError::Layout("ready list queue smaller than its slots"));
    }
    Ok(())
}

/// The end that announces slots.
#[derive(Debug)]
pub struct ReadySender<M: QueueMem = DefaultMem, F: FlagMem = DefaultFlags> {
    queue: Producer<M>,
    flags: F,
}

impl<M: QueueMem, F: FlagMem> ReadySender<M, F> {
    pub fn new(queue: Producer<M>, flags: F) -> Result<Self, RingError> {
        check_room(queue.capacity(), flags.flags().len())?;
        Ok(ReadySender { queue, flags })
    }

    /// Puts `slot` on the list unless it is there already, after the
    /// caller wrote what the receiver should see. `Layout` for a slot this
    /// list does not have (the caller's own mistake), `Full` only if the
    /// receiver's end is broken.
    pub fn mark(&mut self, slot: u32) -> Result<(), RingError> {
        let flag = self
            .flags
            .flags()
            .get(slot as usize)
            .ok_or(RingError::Layout("no such slot in the ready list"))?;
        fence(Ordering::SeqCst);
        if flag.swap(1, Ordering::SeqCst) != 0 {
            return Ok(());
        }
        self.queue.enqueue(Desc {
            offset: slot,
            len: 0,
            flags: 0,
            context: 0,
        })
    }
}

/// The end that learns which slots have news.
#[derive(Debug)]
pub struct ReadyReceiver<M: QueueMem = DefaultMem, F: FlagMem = DefaultFlags> {
    queue: Consumer<M>,
    flags: F,
}

impl<M: QueueMem, F: FlagMem> ReadyReceiver<M, F> {
    pub fn new(queue: Consumer<M>, flags: F) -> Result<Self, RingError> {
        check_room(queue.capacity(), flags.flags().len())?;
        Ok(ReadyReceiver { queue, flags })
    }

    /// The next slot with news, its flag cleared: look at its rings after
    /// this. `Corrupt` if the sender named a slot that does not exist.
    pub fn take(&mut self) -> Result<Option<u32>, RingError> {
        let Some(d) = self.queue.dequeue()? else {
            return Ok(None);
        };
        let flag = self
            .flags
            .flags()
            .get(d.offset as usize)
            .ok_or(RingError::Corrupt(
                "ready list names a slot that does not exist",
            ))?;
        flag.store(0, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        Ok(Some(d.offset))
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// Both ends of a ready list for `slots` slots on the heap (tests, loom).
#[allow(clippy::type_complexity)]
pub fn heap(
    slots: u32,
) -> Result<
    (
        ReadySender<crate::queue::HeapQueue, HeapFlags>,
        ReadyReceiver<crate::queue::HeapQueue, HeapFlags>,
    ),
    RingError,
> {
    let (p, c) = crate::queue::heap(slots.max(1).next_power_of_two())?;
    let flags = HeapFlags::new(slots);
    Ok((
        ReadySender::new(p, flags.clone())?,
        ReadyReceiver::new(c, flags)?,
    ))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_listed_once_until_taken() {
        let (mut tx, mut rx) = heap(3).unwrap();
        tx.mark(2).unwrap();
        tx.mark(2).unwrap();
        tx.mark(0).unwrap();
        assert_eq!(rx.take().unwrap(), Some(2));
        assert_eq!(
            rx.take().unwrap(),
            Some(0),
            "listed once, however often marked"
        );
        assert_eq!(rx.take().unwrap(), None);
        assert!(rx.is_empty());
        tx.mark(2).unwrap();
        assert_eq!(rx.take().unwrap(), Some(2), "taken, then marked again");
        assert!(matches!(tx.mark(3), Err(RingError::Layout(_))));
    }

    #[test]
    fn every_slot_fits_at_once_and_a_lying_sender_is_caught() {
        let (mut tx, mut rx) = heap(5).unwrap();
        for _ in 0..3 {
            for s in 0..5 {
                tx.mark(s).unwrap();
            }
        }
        let mut got: Vec<u32> = std::iter::from_fn(|| rx.take().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2, 3, 4]);

        // A sender that writes the queue itself, naming slot 9 of 5.
        let (mut raw, c) = crate::queue::heap(8).unwrap();
        let mut rx = ReadyReceiver::new(c, HeapFlags::new(5)).unwrap();
        raw.enqueue(Desc {
            offset: 9,
            len: 0,
            flags: 0,
            context: 0,
        })
        .unwrap();
        assert!(matches!(rx.take(), Err(RingError::Corrupt(_))));
    }

    #[test]
    fn a_queue_smaller_than_the_slots_is_refused() {
        let (p, _) = crate::queue::heap(4).unwrap();
        assert!(ReadySender::new(p, HeapFlags::new(5)).is_err());
    }
}
