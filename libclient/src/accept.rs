//! The accept side of a listener (TCP and TLS alike).
//!
//! An accept is a capnp call that returns once a connection is there. In
//! non-blocking mode the caller waits 1 ms for it; giving up then must not
//! lose the connection the call may bring a moment later (cancelling the
//! call would drop its socket capability, and the service would close the
//! connection). So the call stays in flight, and what it brings waits here
//! for the next `accept`.

use crate::conn::{Conn, Ctx};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// What an accept brings: the socket's object id on the connection, and
/// the peer.
pub(crate) type Accepted = (u64, SocketAddr);

/// How long a non-blocking `accept` waits for a connection already queued.
const NONBLOCKING_WAIT: Duration = Duration::from_millis(1);

#[derive(Default)]
struct State {
    /// An accept call is on its way.
    in_flight: bool,
    /// What the last call brought, not yet taken.
    ready: Option<io::Result<Accepted>>,
    /// The listener is gone: a late connection is closed, not kept.
    closed: bool,
}

#[derive(Default)]
struct Slot {
    state: Mutex<State>,
    done: Condvar,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Hands a call's result to the slot, once; a call dropped before it ended
/// (the connection thread went away) counts as the service gone.
struct Landing {
    slot: Arc<Slot>,
    gone: Option<io::Error>,
}

impl Landing {
    /// Stores `result`, or closes what it brought if the listener is gone.
    fn land(mut self, ctx: &Ctx, result: io::Result<Accepted>) {
        self.gone = None;
        let mut st = self.slot.lock();
        st.in_flight = false;
        if st.closed {
            if let Ok((id, _)) = result {
                ctx.remove(id);
            }
        } else {
            st.ready = Some(result);
        }
        self.slot.done.notify_all();
    }
}

impl Drop for Landing {
    fn drop(&mut self) {
        if let Some(e) = self.gone.take() {
            let mut st = self.slot.lock();
            st.in_flight = false;
            st.ready = Some(Err(e));
            self.slot.done.notify_all();
        }
    }
}

pub(crate) struct Acceptor {
    conn: Conn,
    nonblocking: AtomicBool,
    slot: Arc<Slot>,
}

impl Acceptor {
    pub fn new(conn: Conn) -> Acceptor {
        Acceptor {
            conn,
            nonblocking: AtomicBool::new(false),
            slot: Arc::default(),
        }
    }

    pub fn set_nonblocking(&self, on: bool) {
        self.nonblocking.store(on, Ordering::Relaxed);
    }

    /// The next connection: what an earlier call brought, else what the
    /// call in flight (or `call`, started now) brings. Non-blocking: waits
    /// 1 ms, then `WouldBlock` with the call still in flight.
    pub fn accept<F, Fut>(&self, call: F) -> io::Result<Accepted>
    where
        F: FnOnce(Rc<Ctx>) -> Fut + Send + 'static,
        Fut: Future<Output = io::Result<Accepted>> + 'static,
    {
        let mut st = self.slot.lock();
        if let Some(result) = st.ready.take() {
            return result;
        }
        if !st.in_flight {
            self.conn.check()?;
            st.in_flight = true;
            let landing = Landing {
                slot: self.slot.clone(),
                gone: Some(self.conn.gone()),
            };
            self.conn.spawn(move |ctx| async move {
                let result = call(ctx.clone()).await;
                landing.land(&ctx, result);
            });
        }
        let ready = |st: &mut State| st.ready.is_none();
        st = if self.nonblocking.load(Ordering::Relaxed) {
            self.slot
                .done
                .wait_timeout_while(st, NONBLOCKING_WAIT, ready)
                .unwrap_or_else(|e| e.into_inner())
                .0
        } else {
            self.slot
                .done
                .wait_while(st, ready)
                .unwrap_or_else(|e| e.into_inner())
        };
        match st.ready.take() {
            // Failed because the service went away, whatever capnp said.
            Some(Err(e)) => Err(self.conn.check().err().unwrap_or(e)),
            Some(result) => result,
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        let mut st = self.slot.lock();
        st.closed = true;
        if let Some(Ok((id, _))) = st.ready.take() {
            self.conn.release(id);
        }
    }
}
