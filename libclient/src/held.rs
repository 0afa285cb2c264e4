//! The socket ring sets this connection released and still has mapped.
//!
//! netsrv keeps a released set for the client's next socket. A client that
//! kept its mapping names it in `openRings` (`held`); if netsrv has it
//! idle, it answers with that set and sends nothing, and the new stream
//! starts both rings afresh over the old mapping: no handoff exchange, no
//! mmap and munmap, no first-touch faults. The cache lives on the
//! connection thread, which both builds each `openRings` and takes its
//! answer.
//!
//! A set named in a request still in flight is pinned: it may come back in
//! that answer, so it must still be here then. netsrv says which named sets
//! it let go of (`gone`); those are unmapped at once.

use crate::bell::Bell;
use capnet_ring::{ByteReader, ByteWriter, ClientEnd, Doorbell, SocketMapping, Waker};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::rc::Rc;
use std::sync::Arc;

/// Sets kept per connection, as many as netsrv keeps idle for it.
pub const HELD_MAX: usize = 16;

/// A released set as the client keeps it: the mapping, the doorbells'
/// descriptors (the wait end of its own, the ring end of netsrv's), and
/// the last stream's bell if none of its descriptors left libclient.
pub(crate) struct HeldSet {
    pub id: u64,
    mapping: SocketMapping,
    /// The wait end as netsrv made it, to make a stream's bell from.
    wait: Doorbell,
    wake_peer: Arc<Waker>,
    bell: Option<Arc<Bell>>,
}

/// A stream's view of a set: fresh ring positions and the doorbells.
pub(crate) struct TakenUp {
    pub up: ByteWriter,
    pub down: ByteReader,
    pub bell: Arc<Bell>,
    pub wake_peer: Arc<Waker>,
}

impl HeldSet {
    /// The rings of a set netsrv just granted, and what to keep of it.
    pub fn granted(id: Option<u64>, end: ClientEnd) -> io::Result<(TakenUp, Option<HeldSet>)> {
        let ClientEnd {
            up,
            down,
            wake_me,
            wake_peer,
            mapping,
        } = end;
        let wake_peer = Arc::new(wake_peer);
        let (bell_end, held) = match id {
            Some(id) => {
                let held = HeldSet {
                    id,
                    mapping,
                    wait: wake_me.try_clone()?,
                    wake_peer: wake_peer.clone(),
                    bell: None,
                };
                (wake_me, Some(held))
            }
            None => (wake_me, None),
        };
        let taken = TakenUp {
            up,
            down,
            bell: new_bell(bell_end)?,
            wake_peer,
        };
        Ok((taken, held))
    }

    /// The set's rings for a new stream, after netsrv reset them. The last
    /// stream's bell serves again if it never showed its descriptor to the
    /// application; otherwise the stream gets a new one, so that nothing
    /// the application did with the old one (an epoll registration) reaches
    /// the new stream.
    pub fn take_up(&mut self) -> io::Result<TakenUp> {
        let (up, down) = self.mapping.rings()?;
        let bell = match self.bell.take() {
            Some(bell) => bell,
            None => new_bell(self.wait.try_clone()?)?,
        };
        Ok(TakenUp {
            up,
            down,
            bell,
            wake_peer: self.wake_peer.clone(),
        })
    }

    /// Keeps `bell` for the next stream (its descriptor stayed inside).
    pub fn keep_bell(&mut self, bell: Arc<Bell>) {
        self.bell = Some(bell);
    }
}

/// A stream's bell over the wait end `wait`, which also rings from this
/// process (service gone, RX switch over).
fn new_bell(wait: Doorbell) -> io::Result<Arc<Bell>> {
    Ok(Arc::new(Bell::new(wait.with_local_ring()?)))
}

/// The kept sets, oldest first, and how many requests in flight named each
/// id. A pin is by id, not by entry: a set named by a request, taken up by
/// another and released again may still come back in the first one's
/// answer, so it must not be evicted meanwhile.
pub(crate) struct Held<T = HeldSet> {
    entries: Vec<(u64, T)>,
    pins: HashMap<u64, u32>,
}

impl<T> Default for Held<T> {
    fn default() -> Self {
        Held {
            entries: Vec::new(),
            pins: HashMap::new(),
        }
    }
}

impl<T> Held<T> {
    /// Every kept set's id, for a request; each is pinned until
    /// [`Self::settle`] or [`Self::unpin`] with the same list.
    pub fn name_all(&mut self) -> Vec<u64> {
        let ids: Vec<u64> = self.entries.iter().map(|(id, _)| *id).collect();
        for id in &ids {
            *self.pins.entry(*id).or_default() += 1;
        }
        ids
    }

    /// A request that named `named` is over without an answer.
    pub fn unpin(&mut self, named: &[u64]) {
        for id in named {
            if let Some(n) = self.pins.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    self.pins.remove(id);
                }
            }
        }
    }

    /// The answer to a request that named `named`: the sets netsrv let go
    /// of are dropped, and the one it handed back (`reused`) is taken out.
    pub fn settle(&mut self, named: &[u64], reused: Option<u64>, gone: &[u64]) -> Option<T> {
        self.unpin(named);
        // Only what this request named can come back or be gone in it.
        self.entries
            .retain(|(id, _)| !(gone.contains(id) && named.contains(id)));
        let reused = reused.filter(|id| named.contains(id))?;
        let i = self.entries.iter().position(|(id, _)| *id == reused)?;
        Some(self.entries.remove(i).1)
    }

    /// A set a stream released. When full, the oldest set no request names
    /// makes room; if every one is named, `set` is not kept.
    pub fn put(&mut self, id: u64, set: T) {
        if self.entries.len() >= HELD_MAX {
            match self
                .entries
                .iter()
                .position(|(id, _)| !self.pins.contains_key(id))
            {
                Some(i) => drop(self.entries.remove(i)),
                None => return,
            }
        }
        self.entries.push((id, set));
    }
}

/// The sets one `openRings` named, pinned until its answer is settled;
/// dropped unsettled (the request failed or was abandoned), they are
/// unpinned.
pub(crate) struct Named {
    held: Rc<RefCell<Held>>,
    ids: Vec<u64>,
    settled: bool,
}

impl Named {
    pub fn new(held: &Rc<RefCell<Held>>) -> Named {
        let ids = held.borrow_mut().name_all();
        Named {
            held: held.clone(),
            ids,
            settled: false,
        }
    }

    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    /// Settles the answer (see [`Held::settle`]).
    pub fn settle(mut self, reused: Option<u64>, gone: &[u64]) -> Option<HeldSet> {
        self.settled = true;
        self.held.borrow_mut().settle(&self.ids, reused, gone)
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        if !self.settled {
            self.held.borrow_mut().unpin(&self.ids);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_named_set_comes_back_once_and_gone_ones_leave() {
        let mut held = Held::default();
        held.put(1, "a");
        held.put(2, "b");
        held.put(3, "c");
        let named = held.name_all();
        assert_eq!(named, [1, 2, 3]);
        held.put(4, "d");
        assert_eq!(held.settle(&named, Some(2), &[3]), Some("b"));
        assert_eq!(held.name_all(), [1, 4]);
        // An id this request did not name is neither handed back nor dropped.
        assert_eq!(held.settle(&[1], Some(4), &[4]), None);
        assert_eq!(held.entries.len(), 2);
    }

    #[test]
    fn a_pinned_set_is_never_evicted() {
        let mut held = Held::default();
        for id in 0..HELD_MAX as u64 {
            held.put(id, id);
        }
        let named = held.name_all();
        // Every set is named by a request in flight: a new one is not kept.
        held.put(100, 100);
        assert_eq!(held.entries.len(), HELD_MAX);
        assert_eq!(held.settle(&named, Some(0), &[]), Some(0));
        held.put(101, 101);
        held.put(102, 102);
        // Once unpinned, the oldest makes room.
        assert_eq!(held.name_all()[0], 2);
        assert_eq!(held.entries.len(), HELD_MAX);
    }

    #[test]
    fn a_set_taken_up_and_released_again_stays_pinned_by_an_older_request() {
        let mut held = Held::default();
        held.put(1, 1);
        let older = held.name_all();
        let newer = held.name_all();
        // The newer request's answer hands set 1 back; its stream ends and
        // releases it again.
        assert_eq!(held.settle(&newer, Some(1), &[]), Some(1));
        held.put(1, 1);
        for id in 10..10 + HELD_MAX as u64 {
            held.put(id, id);
        }
        // The older request may still get set 1: it was not evicted.
        assert_eq!(held.settle(&older, Some(1), &[]), Some(1));
    }

    #[test]
    fn an_abandoned_request_unpins() {
        let held = Rc::new(RefCell::new(Held::default()));
        for id in 0..HELD_MAX as u64 {
            held.borrow_mut().put(id, dummy());
        }
        let named = Named::new(&held);
        assert_eq!(named.ids().len(), HELD_MAX);
        drop(named);
        held.borrow_mut().put(100, dummy());
        assert_eq!(held.borrow().entries[0].0, 1, "the oldest made room");
    }

    #[test]
    fn a_bell_kept_serves_the_next_stream_and_otherwise_a_new_one_is_made() {
        let (mut server, _wake, fds) = capnet_ring::SocketRings::create(4096).unwrap();
        let end = capnet_ring::SocketRings::attach(fds, 4096).unwrap();
        let (first, held) = HeldSet::granted(Some(1), end).unwrap();
        let mut held = held.unwrap();
        held.keep_bell(first.bell.clone());
        server.reset().unwrap();
        let second = held.take_up().unwrap();
        assert!(Arc::ptr_eq(&first.bell, &second.bell));
        assert!(Arc::ptr_eq(&first.wake_peer, &second.wake_peer));
        // Not kept (its descriptor was shown): a bell of its own, which
        // still wakes for the set's doorbell.
        server.reset().unwrap();
        let third = held.take_up().unwrap();
        assert!(!Arc::ptr_eq(&second.bell, &third.bell));
        assert_ne!(
            second.bell.doorbell.as_raw_fd(),
            third.bell.doorbell.as_raw_fd()
        );
        server.wake_peer.ring();
        let t = third.bell.ticket();
        assert!(third
            .bell
            .wait(
                t,
                Some(std::time::Instant::now() + std::time::Duration::from_secs(5))
            )
            .unwrap());
    }

    fn dummy() -> HeldSet {
        let (_server, _wake, fds) = capnet_ring::SocketRings::create(4096).unwrap();
        let end = capnet_ring::SocketRings::attach(fds, 4096).unwrap();
        HeldSet::granted(Some(7), end).unwrap().1.unwrap()
    }
}
