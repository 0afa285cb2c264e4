//! The socket ring sets one client let go of, kept to be taken up again by
//! its next connections.
//!
//! Making a set (shared memory, two doorbell socketpairs) and unmaking it
//! was a quarter of netsrv's CPU per connection with one connection per
//! request, and its fresh pages fault in on both sides. A set its client
//! let go of (both rings closed, the socket released) once the stack is
//! done with it waits here, charged to the client, and the client's next
//! `openRings` gets it again: reset, with duplicates of the same
//! descriptors. Never another client's: one that kept a mapping of a set
//! it released can only reach its own later connections.

use super::SOCKET_RING_BYTES;
use crate::limits::{Account, Charge};
use capnet_ring::{Doorbell, ServerEnd, SocketRings};
use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;

/// Idle sets kept per client: enough for a burst of short connections,
/// little memory (only the pages the rings touched).
const IDLE_MAX: usize = 16;

/// The client's side of a set, as netsrv keeps it to hand out again.
pub struct ClientFds {
    region: OwnedFd,
    ring_server: OwnedFd,
    wait_client: Doorbell,
}

impl ClientFds {
    /// Duplicates, in [`SocketRings::attach`]'s order, for a grant.
    fn offer(&self) -> io::Result<Vec<OwnedFd>> {
        Ok(vec![
            self.region.try_clone()?,
            self.ring_server.try_clone()?,
            self.wait_client.as_fd().try_clone_to_owned()?,
        ])
    }
}

struct Idle {
    end: ServerEnd,
    fds: ClientFds,
    _charge: Charge,
}

/// One client's idle ring sets.
pub struct RingPool {
    account: Rc<Account>,
    idle: RefCell<Vec<Idle>>,
}

/// A set for a new connection: netsrv's end, the fds to grant, and the
/// client's fds to keep for [`RingPool::put_back`].
pub struct Opened {
    pub end: ServerEnd,
    pub offer: Vec<OwnedFd>,
    pub kept: ClientFds,
    pub reused: bool,
}

impl RingPool {
    pub fn new(account: Rc<Account>) -> RingPool {
        RingPool {
            account,
            idle: RefCell::default(),
        }
    }

    /// An idle set, reset, or a new one. The set's charge is the caller's
    /// to make (an idle set's own is given back here).
    pub fn open(&self) -> io::Result<Opened> {
        while let Some(Idle { mut end, fds, .. }) = self.idle.borrow_mut().pop() {
            // A doorbell the client shut down would stay readable forever.
            if fds.wait_client.peer_gone() || end.wake_me.peer_gone() {
                continue;
            }
            end.reset();
            fds.wait_client.drain();
            let offer = fds.offer()?;
            return Ok(Opened {
                end,
                offer,
                kept: fds,
                reused: true,
            });
        }
        let (end, mut fds) = SocketRings::create(SOCKET_RING_BYTES)?;
        let offer = fds
            .iter()
            .map(|f| f.try_clone())
            .collect::<io::Result<_>>()?;
        let wait_client = fds.pop().expect("three fds");
        let ring_server = fds.pop().expect("three fds");
        let region = fds.pop().expect("three fds");
        Ok(Opened {
            end,
            offer,
            kept: ClientFds {
                region,
                ring_server,
                wait_client: Doorbell::from_peer_fd(wait_client, capnet_ring::End::Wait)?,
            },
            reused: false,
        })
    }

    /// A set the client let go of and the stack is done with. Kept while
    /// the pool has room and the client's limits allow its memory.
    pub fn put_back(&self, end: ServerEnd, fds: ClientFds) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() >= IDLE_MAX {
            return;
        }
        if let Ok(charge) = self.account.buffers(2 * SOCKET_RING_BYTES as usize) {
            idle.push(Idle {
                end,
                fds,
                _charge: charge,
            });
        }
    }
}
