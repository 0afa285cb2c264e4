//! What one client, and all clients together, may make tlsd hold.
//!
//! A TLS socket — a connection from the start of its handshake to the end
//! of its session, or a listener — holds a [`Permit`] of the uid that
//! asked for it (a listener's incoming connections are its owner's). Each
//! established session is a thread and each listener one more, so the
//! global limit bounds tlsd's threads; the per-client one keeps a user
//! from taking them all. A refused socket is a `limit` error and counted.

use crate::stats::Stats;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// tlsd's limits and deadlines (its command line sets them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// TLS sockets one uid may hold.
    pub sockets_per_client: usize,
    /// TLS sockets all clients together may hold.
    pub sockets: usize,
    /// How long a handshake may take, from the TCP connection on.
    pub handshake_timeout: Duration,
    /// Threads that run handshakes (each runs many at once).
    pub handshake_workers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            sockets_per_client: 256,
            sockets: 1024,
            handshake_timeout: Duration::from_secs(10),
            handshake_workers: 2,
        }
    }
}

/// Why a socket was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitError {
    Client { uid: u32, limit: usize },
    Global { limit: usize },
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitError::Client { uid, limit } => write!(
                f,
                "uid {uid} already holds {limit} TLS sockets, the most one user may \
                 (tlsd --max-sockets-per-client)"
            ),
            LimitError::Global { limit } => write!(
                f,
                "tlsd already holds {limit} TLS sockets, the most it serves (tlsd --max-sockets)"
            ),
        }
    }
}

impl std::error::Error for LimitError {}

impl LimitError {
    /// The capnp error a client sees: the `limit` word, then why.
    pub fn to_capnp(&self) -> capnp::Error {
        capnet_schema::errors::SocketError::Limit.to_capnp(self)
    }
}

#[derive(Default)]
struct Held {
    total: usize,
    by_uid: HashMap<u32, usize>,
}

/// Hands out permits within the limits.
pub struct Gate {
    limits: Limits,
    held: Mutex<Held>,
    stats: Arc<Stats>,
}

impl Gate {
    pub fn new(limits: Limits, stats: Arc<Stats>) -> Arc<Gate> {
        Arc::new(Gate {
            limits,
            held: Mutex::new(Held::default()),
            stats,
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A permit for one more socket of `uid`, or why not (counted).
    pub fn take(self: &Arc<Self>, uid: u32) -> Result<Permit, LimitError> {
        let mut held = self.lock();
        let mine = held.by_uid.get(&uid).copied().unwrap_or(0);
        let refused = if held.total >= self.limits.sockets {
            Some(LimitError::Global {
                limit: self.limits.sockets,
            })
        } else if mine >= self.limits.sockets_per_client {
            Some(LimitError::Client {
                uid,
                limit: self.limits.sockets_per_client,
            })
        } else {
            None
        };
        if let Some(e) = refused {
            Stats::inc(&self.stats.limit_refused);
            return Err(e);
        }
        held.total += 1;
        *held.by_uid.entry(uid).or_default() += 1;
        Stats::inc(&self.stats.curr_sockets);
        Ok(Permit {
            gate: self.clone(),
            uid,
        })
    }
}

/// One socket's share of the limits; given back when dropped.
pub struct Permit {
    gate: Arc<Gate>,
    uid: u32,
}

impl Permit {
    pub fn uid(&self) -> u32 {
        self.uid
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").field("uid", &self.uid).finish()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut held = self.gate.lock();
        held.total = held.total.saturating_sub(1);
        if let Some(n) = held.by_uid.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                held.by_uid.remove(&self.uid);
            }
        }
        Stats::dec(&self.gate.stats.curr_sockets);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(per_client: usize, total: usize) -> (Arc<Gate>, Arc<Stats>) {
        let stats = Arc::new(Stats::default());
        let limits = Limits {
            sockets_per_client: per_client,
            sockets: total,
            ..Limits::default()
        };
        (Gate::new(limits, stats.clone()), stats)
    }

    #[test]
    fn per_client_then_global_limits_are_kept_and_counted() {
        let (g, stats) = gate(2, 3);
        let a1 = g.take(1000).unwrap();
        let _a2 = g.take(1000).unwrap();
        let e = g.take(1000).unwrap_err();
        assert_eq!(
            e,
            LimitError::Client {
                uid: 1000,
                limit: 2
            }
        );
        assert!(e.to_capnp().extra.starts_with("limit: uid 1000"), "{e}");
        let _b1 = g.take(1001).unwrap();
        assert_eq!(g.take(1002).unwrap_err(), LimitError::Global { limit: 3 });
        let s = stats.snapshot();
        assert_eq!((s.limit_refused, s.curr_sockets), (2, 3));
        // A permit given back is one more for its user, and for everyone.
        drop(a1);
        let _a3 = g.take(1000).unwrap();
        assert_eq!(stats.snapshot().curr_sockets, 3);
    }

    #[test]
    fn permits_given_back_leave_nothing_held() {
        let (g, stats) = gate(4, 4);
        let permits: Vec<Permit> = (0..4).map(|_| g.take(7).unwrap()).collect();
        drop(permits);
        assert_eq!(stats.snapshot().curr_sockets, 0);
        assert!(g.lock().by_uid.is_empty());
        assert_eq!(g.lock().total, 0);
    }
}
