//! The accept side of a listener (TCP and TLS alike).
//!
//! An accept is a capnp call that returns once a connection is there; the
//! connection's `openRings` is pipelined on it and its grant redeemed in the
//! same job, so a connection arrives with its rings. A listener's first
//! `accept` starts pumps on the connection thread (up to [`PUMPS`], each
//! with one call in flight): each connection a pump brings is queued here
//! and its next call sent at once, while what is queued and in flight stays
//! within [`QUEUE`]. So a loop that accepts and hands each connection to a
//! thread waits for the service only when nothing is queued, as with the
//! kernel's accept queue; with one call per `accept` (and the rings asked
//! for after it) the loop waited three round trips per connection, which
//! capped connection-per-request HTTP at ~1,300 requests a second with a
//! core idle.
//!
//! A pump stops when the queue is full or its call fails (the error is a
//! later `accept`'s answer); `accept` starts pumps again. A non-blocking
//! `accept` waits 1 ms for a connection, then answers `WouldBlock` with the
//! calls still in flight: cancelling one would drop the socket it may bring
//! a moment later, and the service would close that connection.
//!
//! When the listener goes, the calls in flight are cancelled: the service
//! then drops its end of it, and with it the last hold on the listening
//! socket, so the port is released at once rather than at the next
//! connection (which would be accepted only to be closed). Queued
//! connections are released (closed).

use crate::conn::{Conn, Ctx};
use crate::stream::Rings;
use futures::future::{AbortHandle, Abortable, LocalBoxFuture};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// What an accept brings: the socket's object id on the connection, the
/// peer, and the socket's rings.
pub(crate) type Accepted = (u64, SocketAddr, Rings);

/// One accept call, made on the connection thread.
pub(crate) type AcceptCall =
    Arc<dyn Fn(Rc<Ctx>) -> LocalBoxFuture<'static, io::Result<Accepted>> + Send + Sync>;

/// Connections accepted ahead of the application, queued or on their way.
/// Each holds a socket of the client's allowance (and, once here, its
/// rings), so the queue is short: it only has to cover the round trips a
/// connection takes to arrive.
const QUEUE: usize = 8;

/// Accept calls in flight at once. A connection takes one message exchange
/// to arrive (the accept with its `openRings`; one more to redeem a grant
/// when its ring set is not one the connection keeps mapped), and one call
/// at a time capped a loop at one connection per ~0.35 ms. With many
/// clients connecting, four calls (and a queue of eight) rather than two
/// (and four) took connection-per-request HTTP at 50 connections from
/// ~4,800 to ~6,000 requests a second (`CAPNET_BENCH=http`).
const PUMPS: usize = 4;

/// How long a non-blocking `accept` waits for a connection already queued.
const NONBLOCKING_WAIT: Duration = Duration::from_millis(1);

#[derive(Default)]
struct State {
    /// The pumps running, by number; aborting one cancels its call.
    pumps: Vec<(u64, AbortHandle)>,
    next_pump: u64,
    /// What calls brought, not yet taken, oldest first.
    ready: VecDeque<io::Result<Accepted>>,
    /// The listener is gone: a late connection is closed, not kept.
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    done: Condvar,
    call: AcceptCall,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A pump's hold on the queue. Dropped without [`Pumping::stop`] (the
/// connection thread went away with the job), it queues the service-gone
/// error for the accept that waits.
struct Pumping {
    shared: Arc<Shared>,
    number: u64,
    gone: Option<io::Error>,
}

impl Pumping {
    fn stop(mut self, st: &mut State) {
        self.gone = None;
        st.pumps.retain(|(n, _)| *n != self.number);
    }
}

impl Drop for Pumping {
    fn drop(&mut self) {
        if let Some(e) = self.gone.take() {
            let mut st = self.shared.lock();
            st.pumps.retain(|(n, _)| *n != self.number);
            if !st.closed {
                st.ready.push_back(Err(e));
            }
            self.shared.done.notify_all();
        }
    }
}

/// Accepts until the queue is full, a call fails or the listener goes.
async fn pump(pumping: Pumping, ctx: Rc<Ctx>) {
    let shared = pumping.shared.clone();
    loop {
        let result = (shared.call)(ctx.clone()).await;
        let mut st = shared.lock();
        if st.closed {
            if let Ok((id, _, _)) = result {
                ctx.remove(id);
            }
            return pumping.stop(&mut st);
        }
        let failed = result.is_err();
        st.ready.push_back(result);
        shared.done.notify_all();
        // This pump's next call counts among those on their way.
        if failed || st.ready.len() + st.pumps.len() > QUEUE {
            return pumping.stop(&mut st);
        }
    }
}

pub(crate) struct Acceptor {
    conn: Conn,
    nonblocking: AtomicBool,
    shared: Arc<Shared>,
}

impl Acceptor {
    /// An acceptor whose calls are `call`.
    pub fn new(conn: Conn, call: AcceptCall) -> Acceptor {
        Acceptor {
            conn,
            nonblocking: AtomicBool::new(false),
            shared: Arc::new(Shared {
                state: Mutex::default(),
                done: Condvar::new(),
                call,
            }),
        }
    }

    /// Turning non-blocking also wakes an `accept` blocked now: it answers
    /// `WouldBlock` as a non-blocking one would (the call stays in flight).
    /// That is how another thread can take back a thread blocked in accept.
    pub fn set_nonblocking(&self, on: bool) {
        let _st = self.shared.lock();
        self.nonblocking.store(on, Ordering::Relaxed);
        self.shared.done.notify_all();
    }

    /// Starts pumps while fewer than [`PUMPS`] run and the queue has room,
    /// unless the last thing queued is an error not yet taken.
    fn start(&self, st: &mut State) -> io::Result<()> {
        let stopped_on_error = st.ready.back().is_some_and(|r| r.is_err());
        while !st.closed
            && !stopped_on_error
            && st.pumps.len() < PUMPS
            && st.ready.len() + st.pumps.len() < QUEUE
        {
            self.conn.check()?;
            let (abort, registration) = AbortHandle::new_pair();
            let number = st.next_pump;
            st.next_pump += 1;
            st.pumps.push((number, abort));
            let pumping = Pumping {
                shared: self.shared.clone(),
                number,
                gone: Some(self.conn.gone()),
            };
            self.conn.spawn(move |ctx| async move {
                // Aborted: the listener went, and `pumping` (dropped here)
                // has no one left to tell.
                let _ = Abortable::new(pump(pumping, ctx), registration).await;
            });
        }
        Ok(())
    }

    /// The next connection: the oldest queued, else what the pumps bring
    /// next. Non-blocking: waits 1 ms, then `WouldBlock` with the pumps'
    /// calls still in flight.
    pub fn accept(&self) -> io::Result<Accepted> {
        let mut st = self.shared.lock();
        if st.ready.is_empty() {
            self.start(&mut st)?;
        }
        let nonblocking = || self.nonblocking.load(Ordering::Relaxed);
        st = if nonblocking() {
            self.shared
                .done
                .wait_timeout_while(st, NONBLOCKING_WAIT, |st| st.ready.is_empty())
                .unwrap_or_else(|e| e.into_inner())
                .0
        } else {
            // Also ends when `set_nonblocking(true)` is called meanwhile.
            self.shared
                .done
                .wait_while(st, |st| st.ready.is_empty() && !nonblocking())
                .unwrap_or_else(|e| e.into_inner())
        };
        match st.ready.pop_front() {
            // Failed because the service went away, whatever capnp said.
            Some(Err(e)) => Err(self.conn.check().err().unwrap_or(e)),
            Some(Ok(accepted)) => {
                // Refill behind the connection taken; a service gone now is
                // the next accept's error.
                let _ = self.start(&mut st);
                Ok(accepted)
            }
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.closed = true;
        for (id, _, _) in st.ready.drain(..).flatten() {
            self.conn.release(id);
        }
        for (_, pump) in st.pumps.drain(..) {
            pump.abort();
        }
    }
}
