//! One TLS listener: its TCP listener at netsrv, the connections being
//! handshaken, and those ready for the application's `accept`.
//!
//! A thread of the listener's own accepts TCP connections as they come
//! and hands each to the handshake workers at once, so that handshakes run
//! side by side, each with its deadline: a client that never speaks delays
//! no one. Completed handshakes wait for `accept`, at most `backlog` of
//! them; beyond that the thread stops taking connections from netsrv (whose
//! own backlog then holds them). Each connection holds a permit of the
//! listener's owner from its TCP accept on.
//!
//! `close` (also on drop) ends it all at once: the thread lets go of the
//! TCP listener (netsrv releases the port), handshakes in progress and
//! connections not yet accepted are closed, waiting accepts fail `closed`.

use crate::handshake::{Established, Handshake};
use crate::handshaker::Job;
use crate::identity::Options;
use crate::limits::Permit;
use crate::service::Shared;
use crate::stats::Stats;
use capnet_schema::errors::SocketError;
use futures::channel::oneshot;
use libclient::{TcpListener, TcpStream};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// How long the acceptor waits after a failed accept (out of file
/// descriptors, say) before it tries again: long enough not to spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// A connection whose handshake completed, waiting for `accept`.
pub struct Ready {
    pub est: Established,
    pub tcp: TcpStream,
    pub permit: Permit,
}

struct State {
    ready: VecDeque<Ready>,
    closed: bool,
    /// Why the listener stopped by itself (netsrv went away).
    failed: Option<String>,
    /// Shared with the acceptor thread until `close`.
    tcp: Option<Arc<TcpListener>>,
    /// Resolves when the acceptor thread has let go of the TCP listener.
    released: Option<oneshot::Receiver<()>>,
    permit: Option<Permit>,
}

pub struct Listener {
    shared: Arc<Shared>,
    tls: Options,
    backlog: usize,
    local: SocketAddr,
    state: Mutex<State>,
    /// The acceptor waits here for room in `ready`.
    room: Condvar,
    /// Accept calls wait here for a connection (or the end).
    arrived: tokio::sync::Notify,
    /// Set on close: handshakes in progress end.
    cancelled: Arc<AtomicBool>,
}

impl Listener {
    /// Serves `tcp` and starts its acceptor thread.
    pub fn start(
        shared: Arc<Shared>,
        tcp: TcpListener,
        permit: Permit,
        tls: Options,
        backlog: usize,
    ) -> io::Result<Arc<Listener>> {
        let local = tcp.local_addr()?;
        let tcp = Arc::new(tcp);
        let (released_tx, released_rx) = oneshot::channel();
        let listener = Arc::new(Listener {
            shared,
            tls,
            backlog: backlog.max(1),
            local,
            state: Mutex::new(State {
                ready: VecDeque::new(),
                closed: false,
                failed: None,
                tcp: Some(tcp.clone()),
                released: Some(released_rx),
                permit: Some(permit),
            }),
            room: Condvar::new(),
            arrived: tokio::sync::Notify::new(),
            cancelled: Arc::new(AtomicBool::new(false)),
        });
        let weak = Arc::downgrade(&listener);
        std::thread::Builder::new()
            .name(format!("tls listen {local}"))
            .spawn(move || {
                run_acceptor(&weak, &tcp);
                drop(tcp);
                let _ = released_tx.send(());
            })?;
        Ok(listener)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next connection whose handshake completed.
    pub async fn accept(&self) -> Result<Ready, capnp::Error> {
        loop {
            let notified = std::pin::pin!(self.arrived.notified());
            let mut notified = notified;
            // Registered before the look below: an arrival after it wakes us.
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                if let Some(r) = st.ready.pop_front() {
                    self.room.notify_one();
                    return Ok(r);
                }
                if st.closed {
                    return Err(SocketError::Closed.to_capnp("the listener is closed"));
                }
                if let Some(why) = &st.failed {
                    return Err(SocketError::Reset.to_capnp(why));
                }
            }
            notified.await;
        }
    }

    /// Stops listening (again: nothing). Resolves once the TCP listener is
    /// let go of.
    pub fn close(&self) -> Option<oneshot::Receiver<()>> {
        let (ready, tcp, released, permit) = {
            let mut st = self.lock();
            if st.closed {
                return None;
            }
            st.closed = true;
            (
                std::mem::take(&mut st.ready),
                st.tcp.take(),
                st.released.take(),
                st.permit.take(),
            )
        };
        self.cancelled.store(true, Ordering::Release);
        self.shared.handshaker.wake_all();
        self.room.notify_all();
        self.arrived.notify_waiters();
        if let Some(tcp) = tcp {
            // Takes the acceptor thread out of its blocking accept.
            let _ = tcp.set_nonblocking(true);
        }
        // Closes the connections the application never accepted.
        drop((ready, permit));
        released
    }

    fn closed(&self) -> bool {
        self.lock().closed
    }

    /// Waits for room in `ready`; false once closed.
    fn wait_for_room(&self) -> bool {
        let mut st = self.lock();
        while !st.closed && st.ready.len() >= self.backlog {
            st = self.room.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        !st.closed
    }

    fn fail(&self, why: String) {
        self.lock().failed = Some(why);
        self.arrived.notify_waiters();
    }

    fn arrive(&self, ready: Ready) {
        let mut st = self.lock();
        if st.closed {
            return;
        }
        st.ready.push_back(ready);
        drop(st);
        self.arrived.notify_one();
    }

    /// Starts the handshake of a new connection, within the owner's limits.
    fn handshake(self: &Arc<Self>, tcp: TcpStream, remote: SocketAddr) {
        let owner = self.lock().permit.as_ref().map(Permit::uid);
        let Some(owner) = owner else {
            return; // closed meanwhile
        };
        let permit = match self.shared.gate.take(owner) {
            Ok(p) => p,
            Err(e) => {
                // Counted in limitRefused; a flood is not worth a line each.
                tracing::debug!(%remote, %e, "incoming TLS connection refused");
                return;
            }
        };
        let handshake = match self
            .shared
            .identity
            .server_config(&self.tls)
            .map_err(|e| e.to_string())
            .and_then(|(config, sni)| Handshake::server(config, sni).map_err(|e| e.to_string()))
        {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(%remote, %e, "no server handshake");
                return;
            }
        };
        let listener = Arc::downgrade(self);
        self.shared.handshaker.submit(Job {
            tcp,
            handshake,
            deadline: Instant::now() + self.shared.gate.limits().handshake_timeout,
            cancelled: self.cancelled.clone(),
            // Failures were counted and logged by the worker.
            done: Box::new(move |outcome| {
                if let (Ok((est, tcp)), Some(l)) = (outcome, listener.upgrade()) {
                    l.arrive(Ready { est, tcp, permit });
                }
            }),
        });
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.close();
    }
}

/// Accepts until the listener closes or netsrv goes away. Holds the
/// listener only while it handles a connection, so that dropping every
/// other handle closes it.
fn run_acceptor(listener: &Weak<Listener>, tcp: &TcpListener) {
    loop {
        match listener.upgrade() {
            Some(l) if l.wait_for_room() => {}
            _ => return,
        }
        let accepted = tcp.accept();
        let Some(l) = listener.upgrade().filter(|l| !l.closed()) else {
            return;
        };
        match accepted {
            Ok((stream, remote)) => l.handshake(stream, remote),
            // `close` turned the listener non-blocking to wake us.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                tracing::warn!(local = %l.local, %e, "TLS listener ends: netsrv went away");
                l.fail(format!("netsrv went away: {e}"));
                return;
            }
            Err(e) => {
                // Out of file descriptors or memory, say: this one
                // connection is lost, the listener is not.
                Stats::inc(&l.shared.stats.accept_errors);
                tracing::warn!(local = %l.local, %e, "accept failed; going on");
                drop(l);
                std::thread::sleep(ACCEPT_RETRY);
            }
        }
    }
}
