//! A client's socket arena: the rings of many sockets in one region, with
//! one doorbell and one ready list per direction, so that a client with
//! thousands of sockets holds three descriptors for all of them (DESIGN.md:
//! "a client's rings share a region it maps once, and one doorbell per
//! direction carries a ready list of sockets").
//!
//! Layout (page-aligned parts):
//!
//! | offset | what |
//! |---|---|
//! | 0 | header: magic, version, slots, ring capacity |
//! | [`UP_LIST`] | the up ready list (the client names slots for netsrv): queue, then flags |
//! | then | the down ready list (netsrv names slots for the client) |
//! | then | `slots` socket ring sets, each laid out as [`crate::sockets`]'s region |
//!
//! A slot belongs to one socket at a time; netsrv writes its header and
//! empties its rings before handing it out ([`ServerArena::take_slot`]). Pages
//! are touched only as slots are used: a sparse region costs memory for
//! the rings in use, not for the arena's size.
//!
//! Every peer is untrusted: a slot number from the other side is checked
//! against the arena's size (the ready lists), and a client that scribbles
//! on a slot reaches only its own sockets.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use crate::bytering::check_capacity;
use crate::error::RingError;
use crate::platform::{Doorbell, End, SharedRegion};
use crate::queue::{queue_bytes, Consumer, Producer};
use crate::ready::{ReadyReceiver, ReadySender};
use crate::shm::{atomic_u32_at, ShmFlags};
use crate::sockets::{doorbells, socket_region_bytes, ServerEnd, SlotNews, SocketMapping, Waker};
use crate::sync::Ordering;

const MAGIC: u32 = u32::from_le_bytes(*b"CNAR");
const VERSION: u32 = 1;
const PAGE: usize = 4096;
/// Where the up ready list starts.
pub const UP_LIST: usize = PAGE;
/// The most slots an arena has.
pub const MAX_SLOTS: u32 = 1 << 16;

fn page_up(n: usize) -> usize {
    n.div_ceil(PAGE) * PAGE
}

/// Where things are in an arena of `slots` slots of `capacity`-byte rings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArenaLayout {
    pub slots: u32,
    pub capacity: u32,
}

impl ArenaLayout {
    pub fn new(slots: u32, capacity: u32) -> Result<ArenaLayout, RingError> {
        check_capacity(capacity)?;
        if slots == 0 || slots > MAX_SLOTS {
            return Err(RingError::Layout("arena slots out of range"));
        }
        Ok(ArenaLayout { slots, capacity })
    }

    fn queue_capacity(&self) -> u32 {
        self.slots.next_power_of_two()
    }

    fn flags_at(&self, list: usize) -> usize {
        list + queue_bytes(self.queue_capacity())
    }

    fn list_bytes(&self) -> usize {
        page_up(queue_bytes(self.queue_capacity()) + 4 * self.slots as usize)
    }

    fn down_list(&self) -> usize {
        UP_LIST + self.list_bytes()
    }

    fn slot_bytes(&self) -> usize {
        page_up(socket_region_bytes(self.capacity))
    }

    fn slot_at(&self, slot: u32) -> usize {
        self.down_list() + self.list_bytes() + slot as usize * self.slot_bytes()
    }

    /// Bytes of the whole region.
    pub fn bytes(&self) -> usize {
        self.slot_at(self.slots)
    }

    fn receiver(
        &self,
        region: &Arc<SharedRegion>,
        list: usize,
    ) -> Result<ReadyReceiver, RingError> {
        ReadyReceiver::new(
            Consumer::attach(region.clone(), list, self.queue_capacity())?,
            ShmFlags::new(region.clone(), self.flags_at(list), self.slots)?,
        )
    }

    fn sender(&self, region: &Arc<SharedRegion>, list: usize) -> Result<ReadySender, RingError> {
        ReadySender::new(
            Producer::attach(region.clone(), list, self.queue_capacity())?,
            ShmFlags::new(region.clone(), self.flags_at(list), self.slots)?,
        )
    }
}

/// The slots no socket holds, most recently freed last (its pages are the
/// likeliest to be warm).
type FreeSlots = Arc<Mutex<Vec<u32>>>;

/// A slot in use: free again once the [`ServerEnd`] over it and the
/// [`SlotHold`] handed out with it are both gone, so a slot never serves a
/// second socket while the stack still has the first one's end, nor while
/// its client may still read and write the first one's rings.
#[derive(Debug)]
pub(crate) struct SlotLease {
    slot: u32,
    free: FreeSlots,
}

/// The client's side of a slot in use ([`ServerArena::take_slot`]): netsrv
/// keeps it until the client has let go of the socket. A socket the stack
/// ends early (a reset) leaves the client's stream over the same rings; the
/// slot must not be emptied under it for another socket.
#[derive(Debug)]
pub struct SlotHold {
    _lease: Arc<SlotLease>,
}

impl Drop for SlotLease {
    fn drop(&mut self) {
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.slot);
    }
}

/// netsrv's end of an arena.
#[derive(Debug)]
pub struct ServerArena {
    layout: ArenaLayout,
    region: Arc<SharedRegion>,
    /// Which slots the client has news for.
    pub up: ReadyReceiver,
    /// Rung by the client after it listed slots.
    pub wake_me: Doorbell,
    down: Arc<SlotNews>,
    free: FreeSlots,
}

impl ServerArena {
    /// A new arena; returns netsrv's end and, for the client, the fds
    /// `[region, ring_server, wait_client]` (as [`crate::SocketRings`]).
    pub fn create(layout: ArenaLayout) -> io::Result<(ServerArena, Vec<OwnedFd>)> {
        let region = Arc::new(SharedRegion::create("capnet-arena", layout.bytes())?);
        let word = |off| atomic_u32_at(&region, off);
        word(0)?.store(MAGIC, Ordering::Relaxed);
        word(4)?.store(VERSION, Ordering::Relaxed);
        word(8)?.store(layout.slots, Ordering::Relaxed);
        word(12)?.store(layout.capacity, Ordering::Relaxed);
        let (wait_server, ring_client, fds) = doorbells(&region)?;
        let up = layout.receiver(&region, UP_LIST)?;
        let down = layout.sender(&region, layout.down_list())?;
        Ok((
            ServerArena {
                layout,
                region,
                up,
                wake_me: wait_server,
                down: Arc::new(SlotNews::new(down, ring_client)),
                free: Arc::new(Mutex::new((0..layout.slots).rev().collect())),
            },
            fds,
        ))
    }

    pub fn layout(&self) -> ArenaLayout {
        self.layout
    }

    /// A free slot's rings for a new socket, header written and both rings
    /// empty and open, with the slot's number and the client's hold on it;
    /// `None` when every slot is in use. The slot is free again once the end
    /// and the hold are both dropped.
    pub fn take_slot(&self) -> Result<Option<(u32, ServerEnd, SlotHold)>, RingError> {
        let Some(slot) = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop() else {
            return Ok(None);
        };
        let lease = Arc::new(SlotLease {
            slot,
            free: self.free.clone(),
        });
        let hold = SlotHold {
            _lease: lease.clone(),
        };
        let end = ServerEnd::at(
            self.region.clone(),
            self.layout.slot_at(slot),
            self.layout.capacity,
            Waker::Slot {
                news: self.down.clone(),
                slot,
            },
        )?
        .leased(lease);
        Ok(Some((slot, end, hold)))
    }

    /// Slots no socket holds.
    pub fn free_slots(&self) -> usize {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The client's end of an arena.
#[derive(Debug)]
pub struct ClientArena {
    layout: ArenaLayout,
    region: Arc<SharedRegion>,
    /// Which slots netsrv has news for.
    pub down: ReadyReceiver,
    /// Rung by netsrv after it listed slots.
    pub wake_me: Doorbell,
    up: Arc<SlotNews>,
}

impl ClientArena {
    /// Maps the arena from the fds [`ServerArena::create`] handed out;
    /// checks its size and header against `layout`.
    pub fn attach(fds: Vec<OwnedFd>, layout: ArenaLayout) -> Result<ClientArena, RingError> {
        let [region, ring_server, wait_client] = <[OwnedFd; 3]>::try_from(fds)
            .map_err(|_| RingError::Layout("an arena needs exactly 3 fds"))?;
        let region = Arc::new(SharedRegion::from_fd(region, layout.bytes())?);
        let word = |off| atomic_u32_at(&region, off).map(|w| w.load(Ordering::Relaxed));
        if word(0)? != MAGIC || word(4)? != VERSION {
            return Err(RingError::Layout("not a capnet socket arena"));
        }
        if word(8)? != layout.slots || word(12)? != layout.capacity {
            return Err(RingError::Layout("arena layout mismatch"));
        }
        let ring_server = Doorbell::from_peer_fd(ring_server, End::Ring)?;
        let up = layout.sender(&region, UP_LIST)?;
        Ok(ClientArena {
            down: layout.receiver(&region, layout.down_list())?,
            wake_me: Doorbell::from_peer_fd(wait_client, End::Wait)?,
            up: Arc::new(SlotNews::new(up, ring_server)),
            layout,
            region,
        })
    }

    pub fn layout(&self) -> ArenaLayout {
        self.layout
    }

    /// Slot `slot` as netsrv handed it to a new socket: its mapping (whose
    /// [`SocketMapping::rings`] checks the header netsrv wrote) and how to
    /// wake netsrv for it.
    pub fn slot(&self, slot: u32) -> Result<(SocketMapping, Waker), RingError> {
        if slot >= self.layout.slots {
            return Err(RingError::Layout("no such arena slot"));
        }
        let mapping = SocketMapping::at(
            self.region.clone(),
            self.layout.slot_at(slot),
            self.layout.capacity,
        );
        let waker = Waker::Slot {
            news: self.up.clone(),
            slot,
        };
        Ok((mapping, waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn dup(fds: &[OwnedFd]) -> Vec<OwnedFd> {
        fds.iter().map(|f| f.try_clone().unwrap()).collect()
    }

    #[test]
    fn slots_move_bytes_both_ways_and_name_themselves() {
        let layout = ArenaLayout::new(3, 4096).unwrap();
        let (mut server, fds) = ServerArena::create(layout).unwrap();
        let mut client = ClientArena::attach(fds, layout).unwrap();
        let mut holds = Vec::new();
        let mut ends: Vec<ServerEnd> = (0..3)
            .map(|i| {
                let (slot, end, hold) = server.take_slot().unwrap().unwrap();
                assert_eq!(slot, i, "lowest first");
                holds.push(hold);
                end
            })
            .collect();
        assert!(server.take_slot().unwrap().is_none(), "all held");
        let (m2, wake2) = client.slot(2).unwrap();
        let (mut up, mut down) = m2.rings().unwrap();
        assert_eq!(up.write(b"to netsrv").unwrap(), 9);
        wake2.ring();
        assert!(server.wake_me.wait(Some(Duration::from_secs(1))).unwrap());
        assert_eq!(server.up.take().unwrap(), Some(2));
        assert_eq!(server.up.take().unwrap(), None);
        let mut buf = [0u8; 16];
        assert_eq!(ends[2].up.read(&mut buf).unwrap(), 9);
        assert_eq!(ends[0].up.read(&mut buf).unwrap(), 0, "slots are apart");

        assert_eq!(ends[2].down.write(b"back").unwrap(), 4);
        ends[2].wake_peer.ring();
        ends[2].wake_peer.ring();
        assert!(client.wake_me.wait(Some(Duration::from_secs(1))).unwrap());
        assert_eq!(client.down.take().unwrap(), Some(2));
        assert_eq!(client.down.take().unwrap(), None, "listed once");
        assert_eq!(down.read(&mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"back");

        // Handed to a new socket once the old end and the client's hold are
        // both gone: emptied, and the client's view starts over.
        drop(ends.pop());
        assert_eq!(server.free_slots(), 0, "the client may still use it");
        drop(holds.pop());
        assert_eq!(server.free_slots(), 1);
        let (slot, end, _hold) = server.take_slot().unwrap().unwrap();
        assert_eq!(slot, 2);
        ends.push(end);
        let (mut up, _down) = m2.rings().unwrap();
        assert_eq!(up.write(b"x").unwrap(), 1);
        assert_eq!(ends[2].up.read(&mut buf).unwrap(), 1);
        assert_eq!(buf[0], b'x');
        assert!(client.slot(3).is_err());
    }

    #[test]
    fn attach_checks_size_and_header_and_a_lying_client_is_caught() {
        let layout = ArenaLayout::new(4, 4096).unwrap();
        let (mut server, fds) = ServerArena::create(layout).unwrap();
        let other = ArenaLayout::new(5, 4096).unwrap();
        assert!(ClientArena::attach(dup(&fds), other).is_err(), "size");
        assert!(ClientArena::attach(dup(&fds[..2]), layout).is_err());
        let client = ClientArena::attach(fds, layout).unwrap();
        // A client writing its up list by hand, naming slot 7 of 4.
        let mut raw = Producer::attach(client.region.clone(), UP_LIST, 4).unwrap();
        raw.enqueue(crate::Desc {
            offset: 7,
            len: 0,
            flags: 0,
            context: 0,
        })
        .unwrap();
        assert!(matches!(server.up.take(), Err(RingError::Corrupt(_))));
        assert!(ArenaLayout::new(0, 4096).is_err());
        assert!(ArenaLayout::new(MAX_SLOTS + 1, 4096).is_err());
    }

    #[test]
    fn a_large_arena_costs_only_the_pages_it_uses() {
        let layout = ArenaLayout::new(MAX_SLOTS, 256 * 1024).unwrap();
        assert!(layout.bytes() > 16 << 30, "{}", layout.bytes());
        let (server, fds) = ServerArena::create(layout).unwrap();
        let client = ClientArena::attach(fds, layout).unwrap();
        let (slot, mut end, _hold) = server.take_slot().unwrap().unwrap();
        let (m, _) = client.slot(slot).unwrap();
        let (_, mut down) = m.rings().unwrap();
        assert_eq!(end.down.write(b"far").unwrap(), 3);
        let mut buf = [0u8; 3];
        assert_eq!(down.read(&mut buf).unwrap(), 3);
    }
}
