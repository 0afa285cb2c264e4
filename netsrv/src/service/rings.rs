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
use crate::limits::Charge;
use capnet_ring::{Doorbell, ServerEnd, SocketRings};
use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

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
    charge: Charge,
}

/// One client's idle ring sets.
#[derive(Default)]
pub struct RingPool {
    idle: RefCell<Vec<Idle>>,
}

/// A set for a new connection: netsrv's end, the fds to grant, and the
/// client's fds to keep for [`RingPool::put_back`].
pub struct Opened {
    pub end: ServerEnd,
    pub offer: Vec<OwnedFd>,
    pub kept: ClientFds,
    /// A reused set's charge, for the socket to take over; `None` for a
    /// new set, which the socket is charged for.
    pub charge: Option<Charge>,
}

impl RingPool {
    /// An idle set, reset, if there is one.
    pub fn take_idle(&self) -> io::Result<Option<Opened>> {
        loop {
            let Some(Idle {
                mut end,
                fds,
                charge,
            }) = self.idle.borrow_mut().pop()
            else {
                break;
            };
            // A doorbell the client shut down would stay readable forever.
            if fds.wait_client.peer_gone() || end.wake_me.peer_gone() || end.reset().is_err() {
                continue;
            }
            fds.wait_client.drain();
            let offer = fds.offer()?;
            return Ok(Some(Opened {
                end,
                offer,
                kept: fds,
                charge: Some(charge),
            }));
        }
        Ok(None)
    }

    /// A new set (its charge is the caller's to make).
    pub fn create() -> io::Result<Opened> {
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
            charge: None,
        })
    }

    /// A set the client let go of and the stack is done with, with what it
    /// was charged as part of its socket: kept, still charged, while the
    /// pool has room.
    pub fn put_back(&self, end: ServerEnd, fds: ClientFds, charge: Charge) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() < IDLE_MAX {
            idle.push(Idle { end, fds, charge });
        }
    }
}
