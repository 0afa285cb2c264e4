//! Which TCP sockets the pump looks at: those the engine reported (bytes,
//! room, a state change), those whose client rang, those a call changed,
//! and released ones until they finish (the engine reports nothing of an
//! orphan). An idle socket costs nothing per poll, so the cost of a packet
//! does not grow with the number of connections held.

use super::SockId;
use capnet_tcpip::tcp::TcpId;
use capnet_wire::tcp::Flow;
use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

/// `E` names a connection in the engine (generic for the tests, which
/// cannot make engine names).
pub(super) struct ReadySockets<E = TcpId> {
    /// To look at in the next pump.
    queued: BTreeSet<SockId>,
    /// Released sockets, looked at in every pump until they finish.
    releasing: BTreeSet<SockId>,
    /// Looked at since the loop last asked their rings for doorbells.
    unarmed: BTreeSet<SockId>,
    by_engine: HashMap<E, SockId>,
    by_flow: HashMap<Flow, SockId>,
}

impl<E> Default for ReadySockets<E> {
    fn default() -> Self {
        ReadySockets {
            queued: BTreeSet::new(),
            releasing: BTreeSet::new(),
            unarmed: BTreeSet::new(),
            by_engine: HashMap::new(),
            by_flow: HashMap::new(),
        }
    }
}

impl<E: Hash + Eq> ReadySockets<E> {
    /// A new socket, looked at in the next pump.
    pub fn add(&mut self, id: SockId, engine: E, flow: Option<Flow>) {
        self.by_engine.insert(engine, id);
        if let Some(f) = flow {
            self.by_flow.insert(f, id);
        }
        self.queued.insert(id);
    }

    /// The socket is gone.
    pub fn remove(&mut self, id: SockId, engine: E, flow: Option<Flow>) {
        self.by_engine.remove(&engine);
        if let Some(f) = flow {
            self.by_flow.remove(&f);
        }
        self.queued.remove(&id);
        self.releasing.remove(&id);
        self.unarmed.remove(&id);
    }

    pub fn wake(&mut self, id: SockId) {
        self.queued.insert(id);
    }

    /// The engine reported the connection; nothing if no socket holds it.
    pub fn wake_engine(&mut self, engine: E) {
        if let Some(&id) = self.by_engine.get(&engine) {
            self.queued.insert(id);
        }
    }

    pub fn wake_flow(&mut self, flow: &Flow) {
        if let Some(&id) = self.by_flow.get(flow) {
            self.queued.insert(id);
        }
    }

    /// The client let the socket go: looked at until it finishes.
    pub fn release(&mut self, id: SockId) {
        self.releasing.insert(id);
    }

    /// The sockets for this pump, in order.
    pub fn take(&mut self) -> Vec<SockId> {
        let mut ids = std::mem::take(&mut self.queued);
        ids.extend(self.releasing.iter().copied());
        ids.into_iter().collect()
    }

    /// The pump looked at `id`: its rings want doorbells again.
    pub fn looked_at(&mut self, id: SockId) {
        self.unarmed.insert(id);
    }

    pub fn take_unarmed(&mut self) -> BTreeSet<SockId> {
        std::mem::take(&mut self.unarmed)
    }

    /// Whether some socket waits for the next pump.
    pub fn pending(&self) -> bool {
        !self.queued.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(port: u16) -> Flow {
        Flow {
            local: ([10, 0, 0, 1], port).into(),
            remote: ([10, 0, 0, 2], 80).into(),
        }
    }

    #[test]
    fn only_woken_and_releasing_sockets_are_taken_each_once() {
        let mut r = ReadySockets::<u32>::default();
        let (e1, e2) = (11, 12);
        r.add(1, e1, Some(flow(1)));
        r.add(2, e2, Some(flow(2)));
        assert_eq!(r.take(), [1, 2]);
        assert!(r.take().is_empty() && !r.pending());
        r.wake_engine(e2);
        r.wake_flow(&flow(2));
        r.wake(2);
        assert!(r.pending());
        assert_eq!(r.take(), [2]);
        r.release(1);
        assert_eq!(r.take(), [1]);
        assert_eq!(r.take(), [1], "a releasing socket is looked at every pump");
        r.remove(1, e1, Some(flow(1)));
        r.wake_engine(e1);
        r.wake_flow(&flow(1));
        assert!(r.take().is_empty(), "a removed socket is not woken again");
        r.looked_at(2);
        assert_eq!(r.take_unarmed().into_iter().collect::<Vec<_>>(), [2]);
        assert!(r.take_unarmed().is_empty());
    }
}
