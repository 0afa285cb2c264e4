//! The accept side of a listener (TCP and TLS alike).
//!
//! An accept is a capnp call that returns once a connection is there. In
//! non-blocking mode the caller waits 1 ms for it; giving up then must not
//! lose the connection the call may bring a moment later (cancelling the
//! call would drop its socket capability, and the service would close the
//! connection). So the call stays in flight, and what it brings waits here
//! for the next `accept`.
//!
//! When the listener goes, the call in flight is cancelled: the service
//! then drops its end of it, and with it the last hold on the listening
//! socket, so the port is released at once rather than at the next
//! connection (which would be accepted only to be closed).

use crate::conn::{Conn, Ctx};
use futures::future::{AbortHandle, Abortable};
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
    /// An accept call is on its way; aborting it cancels the call.
    in_flight: Option<AbortHandle>,
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
        st.in_flight = None;
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
            st.in_flight = None;
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

    /// Turning non-blocking also wakes an `accept` blocked now: it answers
    /// `WouldBlock` as a non-blocking one would (the call stays in flight).
    /// That is how another thread can take back a thread blocked in accept.
    pub fn set_nonblocking(&self, on: bool) {
        let _st = self.slot.lock();
        self.nonblocking.store(on, Ordering::Relaxed);
        self.slot.done.notify_all();
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
        if st.in_flight.is_none() {
            self.conn.check()?;
            let (abort, registration) = AbortHandle::new_pair();
            st.in_flight = Some(abort);
            let landing = Landing {
                slot: self.slot.clone(),
                gone: Some(self.conn.gone()),
            };
            self.conn.spawn(move |ctx| async move {
                // Aborted: the listener went, and `landing` (dropped here)
                // has no one left to tell.
                if let Ok(result) = Abortable::new(call(ctx.clone()), registration).await {
                    landing.land(&ctx, result);
                }
            });
        }
        let nonblocking = || self.nonblocking.load(Ordering::Relaxed);
        st = if nonblocking() {
            self.slot
                .done
                .wait_timeout_while(st, NONBLOCKING_WAIT, |st| st.ready.is_none())
                .unwrap_or_else(|e| e.into_inner())
                .0
        } else {
            // Also ends when `set_nonblocking(true)` is called meanwhile.
            self.slot
                .done
                .wait_while(st, |st| st.ready.is_none() && !nonblocking())
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
        if let Some(call) = st.in_flight.take() {
            call.abort();
        }
    }
}
