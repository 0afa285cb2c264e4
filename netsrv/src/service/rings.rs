//! The socket ring sets one client let go of, kept to be taken up again by
//! its next connections.
//!
//! Making a set (shared memory, two doorbell socketpairs) and unmaking it
//! was a quarter of netsrv's CPU per connection with one connection per
//! request, and its fresh pages fault in on both sides. A set its client
//! let go of (both rings closed, the socket released) once the stack is
//! done with it waits here, charged to the client, and the client's next
//! `openRings` gets it again, reset. If the client says it still has that
//! set mapped (`held`), nothing more is sent; otherwise duplicates of the
//! same descriptors go out in the grant. Never another client's: one that
//! kept a mapping of a set it released can only reach its own later
//! connections.

use super::{socket_rang, watch_doorbell, Shared, SOCKET_RING_BYTES};
use crate::limits::Charge;
use crate::stack::SockId;
use capnet_ring::arena::{self, ArenaLayout, ServerArena, SlotHold};
use capnet_ring::{Doorbell, ServerEnd, SocketRings};
use capnet_schema::errors::SocketError;
use capnet_schema::net_capnp::tcp_socket;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;
use tokio::task::JoinHandle;

/// Idle sets kept per client: enough for a burst of short connections,
/// little memory (only the pages the rings touched).
const IDLE_MAX: usize = 16;

/// The most sets an `openRings` may name as held (the client keeps as many
/// as this pool does; more is a client that lies).
const HELD_MAX: usize = 64;

/// The sets an `openRings` names as held by the client, at most
/// [`HELD_MAX`] (else `limit`).
pub fn read_held(p: tcp_socket::open_rings_params::Reader<'_>) -> Result<Vec<u64>, capnp::Error> {
    let held = p.get_held()?;
    if held.len() as usize > HELD_MAX {
        return Err(SocketError::Limit.to_capnp(format_args!(
            "openRings: {} held ring sets named, at most {HELD_MAX}",
            held.len()
        )));
    }
    Ok(held.iter().collect())
}

/// What netsrv keeps of a set besides its own end, to hand it out again:
/// the client's descriptors, netsrv's doorbell, the set's number, and the
/// task that watches that doorbell (it lives as long as the set: a reused
/// set needs no new registration with the runtime).
pub struct Kept {
    region: OwnedFd,
    ring_server: OwnedFd,
    wait_client: Doorbell,
    /// netsrv's wait end: the client rings it.
    wake_me: Doorbell,
    id: SetId,
    watcher: Option<Watcher>,
    /// The socket that holds the set now, for the watcher to name.
    owner: Rc<Cell<SockId>>,
}

/// A doorbell's watcher task, stopped when dropped.
struct Watcher(JoinHandle<()>);

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Kept {
    /// Whether the set's doorbell is still watched (a watcher ends when
    /// the client shuts the doorbell down).
    pub fn watched(&self) -> bool {
        self.watcher.as_ref().is_some_and(|w| !w.0.is_finished())
    }

    /// The set now belongs to socket `id`: its doorbell names that socket
    /// to the poll loop, from a watcher started now if it has none.
    pub fn hand_to(&mut self, shared: &Rc<Shared>, id: SockId) -> io::Result<()> {
        self.owner.set(id);
        if !self.watched() {
            let task = watch_doorbell(
                shared,
                self.wake_me.try_clone()?,
                socket_rang(self.owner.clone()),
            )?;
            self.watcher = Some(Watcher(task));
        }
        Ok(())
    }

    /// Duplicates, in [`SocketRings::attach`]'s order, for a grant.
    fn offer(&self) -> io::Result<Vec<OwnedFd>> {
        Ok(vec![
            self.region.try_clone()?,
            self.ring_server.try_clone()?,
            self.wait_client.as_fd().try_clone_to_owned()?,
        ])
    }
}

/// A set's number, counted among the client's sets for as long as netsrv
/// can still hand the set out again (it is attached to a socket or idle).
struct SetId {
    id: u64,
    alive: Rc<RefCell<HashSet<u64>>>,
}

impl Drop for SetId {
    fn drop(&mut self) {
        self.alive.borrow_mut().remove(&self.id);
    }
}

struct Idle {
    end: ServerEnd,
    fds: Kept,
    charge: Charge,
}

/// One client's idle ring sets, and its arena.
#[derive(Default)]
pub struct RingPool {
    idle: RefCell<Vec<Idle>>,
    alive: Rc<RefCell<HashSet<u64>>>,
    last_id: Cell<u64>,
    arena: RefCell<Option<Arena>>,
}

/// The client's socket arena (`capnet_ring::arena`), made at its first
/// `openRings` that asks for one. A slot is free again when the stack
/// drops the socket's end of it.
struct Arena {
    end: Rc<RefCell<ServerArena>>,
    /// The client's descriptors, for a client that says it has not mapped
    /// the arena.
    fds: Vec<OwnedFd>,
    /// Which socket holds each slot now, for the watcher to name.
    owners: Rc<RefCell<HashMap<u32, SockId>>>,
    _watcher: Watcher,
}

/// A slot of the client's arena for a new socket.
pub struct ArenaSlot {
    pub end: ServerEnd,
    /// Kept until the client lets go of the socket (see [`SlotHold`]).
    pub hold: SlotHold,
    pub slot: u32,
    pub layout: ArenaLayout,
    /// The arena's descriptors, for a client that has not mapped it.
    pub offer: Option<Vec<OwnedFd>>,
}

/// What the arena's doorbell means: the sockets of the slots the client
/// listed have news. At most one pass over the list per ring, so a client
/// listing as fast as netsrv reads cannot keep it there; a list the client
/// broke is counted and no longer watched (only its own sockets go without
/// wakeups).
fn arena_rang(
    arena: Rc<RefCell<ServerArena>>,
    owners: Rc<RefCell<HashMap<u32, SockId>>>,
) -> impl FnMut(&Shared) -> Option<bool> {
    move |shared| {
        let mut arena = arena.borrow_mut();
        let owners = owners.borrow();
        let mut rang = shared.rang.borrow_mut();
        for _ in 0..arena.layout().slots {
            match arena.up.take() {
                Ok(Some(slot)) => rang.extend(owners.get(&slot)),
                Ok(None) => return Some(false),
                Err(err) => {
                    tracing::warn!(%err, "a client broke its arena's ready list; no longer watching it");
                    shared.stack.borrow_mut().counters.bad_ring_indices += 1;
                    return None;
                }
            }
        }
        Some(true)
    }
}

/// A set for a new connection: netsrv's end, the client's fds to keep for
/// [`RingPool::put_back`], and how the client gets it.
pub struct Opened {
    pub end: ServerEnd,
    pub kept: Kept,
    /// The fds to grant; `None` for a set the client still has mapped.
    pub offer: Option<Vec<OwnedFd>>,
    /// A reused set's charge, for the socket to take over; `None` for a
    /// new set, which the socket is charged for.
    pub charge: Option<Charge>,
}

impl Opened {
    /// The set's number for the client.
    pub fn id(&self) -> u64 {
        self.kept.id.id
    }
}

impl RingPool {
    /// An idle set, reset, if there is one: one the client named in
    /// `held` (it still has it mapped) first.
    pub fn take_idle(&self, held: &[u64]) -> io::Result<Option<Opened>> {
        loop {
            let next = {
                let mut idle = self.idle.borrow_mut();
                let mapped = idle.iter().rposition(|s| held.contains(&s.fds.id.id));
                match mapped {
                    Some(i) => Some((idle.swap_remove(i), true)),
                    None => idle.pop().map(|s| (s, false)),
                }
            };
            let Some((
                Idle {
                    mut end,
                    fds,
                    charge,
                },
                mapped,
            )) = next
            else {
                return Ok(None);
            };
            // A doorbell the client shut down would stay readable forever.
            if fds.wait_client.peer_gone() || fds.wake_me.peer_gone() || end.reset().is_err() {
                continue;
            }
            fds.wait_client.drain();
            fds.wake_me.drain();
            let offer = if mapped { None } else { Some(fds.offer()?) };
            return Ok(Some(Opened {
                end,
                kept: fds,
                offer,
                charge: Some(charge),
            }));
        }
    }

    /// A new set (its charge is the caller's to make).
    pub fn create(&self) -> io::Result<Opened> {
        let (end, wake_me, mut fds) = SocketRings::create(SOCKET_RING_BYTES)?;
        let offer = fds
            .iter()
            .map(|f| f.try_clone())
            .collect::<io::Result<_>>()?;
        let wait_client = fds.pop().expect("three fds");
        let ring_server = fds.pop().expect("three fds");
        let region = fds.pop().expect("three fds");
        let id = self.last_id.get() + 1;
        self.last_id.set(id);
        self.alive.borrow_mut().insert(id);
        Ok(Opened {
            end,
            kept: Kept {
                region,
                ring_server,
                wait_client: Doorbell::from_peer_fd(wait_client, capnet_ring::End::Wait)?,
                wake_me,
                id: SetId {
                    id,
                    alive: self.alive.clone(),
                },
                watcher: None,
                owner: Rc::default(),
            },
            offer: Some(offer),
            charge: None,
        })
    }

    /// A free slot of the client's arena of `slots` slots (made now if the
    /// client has none) for socket `owner`; `None` when every slot is held.
    /// The arena's descriptors come along unless the client has it
    /// `mapped`.
    pub fn arena_slot(
        &self,
        shared: &Rc<Shared>,
        slots: u32,
        owner: SockId,
        mapped: bool,
    ) -> io::Result<Option<ArenaSlot>> {
        let mut arena = self.arena.borrow_mut();
        let arena = match &mut *arena {
            Some(a) => a,
            None => {
                let layout = ArenaLayout::new(slots.min(arena::MAX_SLOTS), SOCKET_RING_BYTES)?;
                let (end, fds) = ServerArena::create(layout)?;
                let bell = end.wake_me.try_clone()?;
                let end = Rc::new(RefCell::new(end));
                let owners = Rc::<RefCell<HashMap<u32, SockId>>>::default();
                let task = watch_doorbell(shared, bell, arena_rang(end.clone(), owners.clone()))?;
                arena.insert(Arena {
                    end,
                    fds,
                    owners,
                    _watcher: Watcher(task),
                })
            }
        };
        let a = arena.end.borrow();
        let Some((slot, end, hold)) = a.take_slot()? else {
            return Ok(None);
        };
        arena.owners.borrow_mut().insert(slot, owner);
        let offer = match mapped {
            true => None,
            false => Some(
                arena
                    .fds
                    .iter()
                    .map(|f| f.try_clone())
                    .collect::<io::Result<_>>()?,
            ),
        };
        Ok(Some(ArenaSlot {
            end,
            hold,
            slot,
            layout: a.layout(),
            offer,
        }))
    }

    /// Of the sets the client says it holds, those netsrv let go of: they
    /// can never come back, so the client may unmap them.
    pub fn gone(&self, held: &[u64]) -> Vec<u64> {
        let alive = self.alive.borrow();
        held.iter()
            .copied()
            .filter(|id| !alive.contains(id))
            .collect()
    }

    /// A set the client let go of and the stack is done with, with what it
    /// was charged as part of its socket: kept, still charged, while the
    /// pool has room.
    pub fn put_back(&self, end: ServerEnd, fds: Kept, charge: Charge) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() < IDLE_MAX {
            idle.push(Idle { end, fds, charge });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{Accounts, Limits};

    #[test]
    fn a_held_set_comes_back_first_without_fds_and_dropped_ones_are_gone() {
        let accounts = Accounts::new(Limits::default());
        let client = accounts.client(1000);
        let pool = RingPool::default();
        let (one, two) = (pool.create().unwrap(), pool.create().unwrap());
        let (id1, id2) = (one.id(), two.id());
        assert_ne!(id1, id2);
        for set in [one, two] {
            pool.put_back(set.end, set.kept, client.socket(0).unwrap());
        }
        // The client holds the older one: it is taken before the newer.
        let back = pool.take_idle(&[id1, 42]).unwrap().unwrap();
        assert_eq!(back.id(), id1);
        assert!(back.offer.is_none() && back.charge.is_some());
        assert_eq!(pool.gone(&[id1, id2, 42]), [42]);
        // Not held: the other comes with duplicates of its fds.
        let other = pool.take_idle(&[id1]).unwrap().unwrap();
        assert_eq!(other.id(), id2);
        assert_eq!(other.offer.as_ref().map(Vec::len), Some(3));
        assert!(pool.take_idle(&[]).unwrap().is_none());
        drop(back);
        assert_eq!(pool.gone(&[id1, id2]), [id1]);
    }
}
