//! A connection's socket arena ([`capnet_ring::arena`]): with
//! [`crate::Net::connect_arena`], every TCP socket's rings are a slot of one
//! region netsrv made for this connection, with one doorbell each way, so
//! thousands of sockets cost a handful of descriptors and no descriptor
//! exchange after the first.
//!
//! The streams share one bell: a sleeper wakes when any stream of the
//! arena may have news and looks at its own rings again. An event loop asks
//! [`crate::Net::news`] which streams have news (the down ready list).

use crate::bell::Bell;
use crate::held::TakenUp;
use crate::stream::lock;
use capnet_ring::{ArenaLayout, ClientArena};
use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// Whether a connection uses an arena, and the arena once netsrv sent it.
/// Shared by the application's threads and the connection thread.
pub(crate) struct ArenaCell {
    pub wanted: bool,
    arena: OnceLock<Arc<Arena>>,
}

impl ArenaCell {
    pub fn new(wanted: bool) -> ArenaCell {
        ArenaCell {
            wanted,
            arena: OnceLock::new(),
        }
    }

    pub fn get(&self) -> Option<&Arc<Arena>> {
        self.arena.get()
    }

    /// The arena, mapped from the descriptors of a grant if it is not yet
    /// (a grant that crossed another one's brings them again: dropped).
    pub fn attach(&self, fds: Vec<OwnedFd>, layout: ArenaLayout) -> io::Result<&Arc<Arena>> {
        if let Some(a) = self.arena.get() {
            return Ok(a);
        }
        let arena = Arc::new(Arena::attach(fds, layout)?);
        Ok(self.arena.get_or_init(|| arena))
    }
}

pub(crate) struct Arena {
    client: Mutex<ClientArena>,
    pub bell: Arc<Bell>,
    /// Which stream (object number) holds each slot now.
    owners: Mutex<HashMap<u32, u64>>,
}

impl Arena {
    fn attach(fds: Vec<OwnedFd>, layout: ArenaLayout) -> io::Result<Arena> {
        let client = ClientArena::attach(fds, layout)?;
        let bell = Arc::new(Bell::new(client.wake_me.try_clone()?.with_local_ring()?));
        Ok(Arena {
            client: Mutex::new(client),
            bell,
            owners: Mutex::new(HashMap::new()),
        })
    }

    pub fn layout(&self) -> ArenaLayout {
        lock(&self.client).layout()
    }

    /// The rings of slot `slot`, which netsrv just handed to stream `id`.
    pub fn take_up(&self, slot: u32, id: u64) -> io::Result<TakenUp> {
        let (mapping, waker) = lock(&self.client).slot(slot)?;
        let (up, down) = mapping.rings()?;
        lock(&self.owners).insert(slot, id);
        Ok(TakenUp {
            up,
            down,
            bell: self.bell.clone(),
            wake_peer: Arc::new(waker),
        })
    }

    /// Streams (object numbers) netsrv listed since the last call, each
    /// once; waits until there is one or until `deadline` (`None`: as long
    /// as it takes). A slot's last stream is named until another takes the
    /// slot up: the caller skips numbers it no longer holds.
    pub fn news(&self, deadline: Option<Instant>) -> io::Result<Vec<u64>> {
        loop {
            let ticket = self.bell.ticket();
            let mut out = Vec::new();
            {
                let mut client = lock(&self.client);
                let owners = lock(&self.owners);
                while let Some(slot) = client.down.take()? {
                    out.extend(owners.get(&slot));
                }
            }
            if !out.is_empty() || !self.bell.wait(ticket, deadline)? {
                return Ok(out);
            }
        }
    }
}
