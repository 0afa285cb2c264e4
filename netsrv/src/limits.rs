//! What one client may make netsrv spend.
//!
//! A client is one capnp connection (one bootstrapped `Net`); its user is
//! the uid on the other end of the socket. Every socket, buffer byte,
//! egress subscription and waiting call a client holds is charged to both,
//! so that opening more connections does not multiply what a user may
//! hold. A request over either limit fails with `limit` and is counted.
//! The supervisor's own peers (the admin's `Net`, `--rpc-fd` descriptors)
//! are not limited. tlsd connects like any client (see docs/security.md).

use crate::stack::{Stack, TcpOptions};
use capnet_schema::errors::SocketError;
use capnet_schema::transport::TransportCounters;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};

/// The limits, from `[limits]` in the configuration (see
/// examples/capnet.toml for what each means).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub sockets: usize,
    pub buffer_bytes: usize,
    pub socket_buffer_max: usize,
    pub subscriptions: usize,
    pub calls: usize,
    pub user_sockets: usize,
    pub user_buffer_bytes: usize,
    pub user_subscriptions: usize,
    pub user_calls: usize,
    pub connections_per_user: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            sockets: 1024,
            buffer_bytes: 512 << 20,
            socket_buffer_max: 2 << 20,
            subscriptions: 256,
            calls: 512,
            user_sockets: 4096,
            user_buffer_bytes: 2 << 30,
            user_subscriptions: 1024,
            user_calls: 2048,
            connections_per_user: capnet_schema::transport::DEFAULT_CONNECTIONS_PER_USER,
        }
    }
}

/// Requests refused with `limit`, by what ran out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimitCounters {
    pub sockets: u64,
    pub buffer_bytes: u64,
    pub subscriptions: u64,
    pub calls: u64,
}

/// What a client or a user holds now.
#[derive(Debug, Default)]
struct Usage {
    sockets: Cell<usize>,
    buffer_bytes: Cell<usize>,
    subscriptions: Cell<usize>,
    calls: Cell<usize>,
}

/// A request's cost.
#[derive(Clone, Copy, Debug, Default)]
struct Cost {
    sockets: usize,
    buffer_bytes: usize,
    subscriptions: usize,
    calls: usize,
}

impl Usage {
    fn add(&self, c: Cost) {
        self.sockets.set(self.sockets.get() + c.sockets);
        self.buffer_bytes
            .set(self.buffer_bytes.get() + c.buffer_bytes);
        self.subscriptions
            .set(self.subscriptions.get() + c.subscriptions);
        self.calls.set(self.calls.get() + c.calls);
    }

    fn sub(&self, c: Cost) {
        self.sockets
            .set(self.sockets.get().saturating_sub(c.sockets));
        self.buffer_bytes
            .set(self.buffer_bytes.get().saturating_sub(c.buffer_bytes));
        self.subscriptions
            .set(self.subscriptions.get().saturating_sub(c.subscriptions));
        self.calls.set(self.calls.get().saturating_sub(c.calls));
    }
}

/// Every client's account, by user.
pub struct Accounts {
    pub limits: Limits,
    users: RefCell<HashMap<u32, Weak<Usage>>>,
    pub counters: Rc<RefCell<LimitCounters>>,
}

impl Accounts {
    pub fn new(limits: Limits) -> Accounts {
        Accounts {
            limits,
            users: RefCell::default(),
            counters: Rc::default(),
        }
    }

    /// A new client of user `uid`.
    pub fn client(&self, uid: u32) -> Rc<Account> {
        let mut users = self.users.borrow_mut();
        users.retain(|_, u| u.strong_count() > 0);
        let user = match users.get(&uid).and_then(Weak::upgrade) {
            Some(u) => u,
            None => {
                let u = Rc::new(Usage::default());
                users.insert(uid, Rc::downgrade(&u));
                u
            }
        };
        Rc::new(Account {
            uid,
            limits: Some(self.limits),
            client: Usage::default(),
            user,
            counters: self.counters.clone(),
        })
    }

    /// A peer the supervisor connected: not limited.
    pub fn trusted(&self) -> Rc<Account> {
        Rc::new(Account {
            uid: 0,
            limits: None,
            client: Usage::default(),
            user: Rc::default(),
            counters: self.counters.clone(),
        })
    }
}

/// One client's account.
pub struct Account {
    uid: u32,
    limits: Option<Limits>,
    client: Usage,
    user: Rc<Usage>,
    counters: Rc<RefCell<LimitCounters>>,
}

/// Something a client holds; given back when dropped.
pub struct Charge {
    account: Rc<Account>,
    cost: Cost,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.account.client.sub(self.cost);
        self.account.user.sub(self.cost);
    }
}

impl Charge {
    /// Adds `bytes` of buffers (a socket's rings) to this charge.
    pub fn add_buffer(&mut self, bytes: usize) -> Result<(), capnp::Error> {
        self.account.admit(Cost {
            buffer_bytes: bytes,
            ..Cost::default()
        })?;
        self.cost.buffer_bytes += bytes;
        Ok(())
    }

    /// Moves up to `bytes` of this charge's buffers into a charge of their
    /// own (what a socket's rings cost, kept when the socket goes). Nothing
    /// is counted twice or admitted again.
    pub fn split_buffer(&mut self, bytes: usize) -> Charge {
        let bytes = bytes.min(self.cost.buffer_bytes);
        self.cost.buffer_bytes -= bytes;
        Charge {
            account: self.account.clone(),
            cost: Cost {
                buffer_bytes: bytes,
                ..Cost::default()
            },
        }
    }

    /// Takes `other` (of the same account) into this charge, without
    /// admitting it again.
    pub fn absorb(&mut self, mut other: Charge) {
        debug_assert!(Rc::ptr_eq(&self.account, &other.account));
        let c = std::mem::take(&mut other.cost);
        self.cost.sockets += c.sockets;
        self.cost.buffer_bytes += c.buffer_bytes;
        self.cost.subscriptions += c.subscriptions;
        self.cost.calls += c.calls;
    }
}

impl Account {
    /// How many sockets the client may hold at once (`None`: unbounded).
    pub fn socket_limit(&self) -> Option<usize> {
        self.limits.map(|l| l.sockets)
    }

    /// The largest buffer one socket gets: a larger request is clamped.
    pub fn socket_buffer(&self, requested: usize) -> usize {
        match self.limits {
            Some(l) => requested.min(l.socket_buffer_max),
            None => requested,
        }
    }

    /// One socket with `buffer_bytes` of buffers.
    pub fn socket(self: &Rc<Self>, buffer_bytes: usize) -> Result<Charge, capnp::Error> {
        self.take(Cost {
            sockets: 1,
            buffer_bytes,
            ..Cost::default()
        })
    }

    /// Buffer bytes alone (a socket's queues grown by autotuning).
    pub fn buffers(self: &Rc<Self>, buffer_bytes: usize) -> Result<Charge, capnp::Error> {
        self.take(Cost {
            buffer_bytes,
            ..Cost::default()
        })
    }

    pub fn subscription(self: &Rc<Self>) -> Result<Charge, capnp::Error> {
        self.take(Cost {
            subscriptions: 1,
            ..Cost::default()
        })
    }

    /// A call that waits (for data, a connection, a peer).
    pub fn call(self: &Rc<Self>) -> Result<Charge, capnp::Error> {
        self.take(Cost {
            calls: 1,
            ..Cost::default()
        })
    }

    fn take(self: &Rc<Self>, cost: Cost) -> Result<Charge, capnp::Error> {
        self.admit(cost)?;
        Ok(Charge {
            account: self.clone(),
            cost,
        })
    }

    /// Counts `cost` against the client and its user, if both have room.
    fn admit(&self, cost: Cost) -> Result<(), capnp::Error> {
        if let Some(l) = self.limits {
            self.check(&l, cost)?;
        }
        self.client.add(cost);
        self.user.add(cost);
        Ok(())
    }

    fn check(&self, l: &Limits, cost: Cost) -> Result<(), capnp::Error> {
        let (c, u) = (&self.client, &*self.user);
        let checks = [
            (
                cost.sockets,
                c.sockets.get(),
                u.sockets.get(),
                l.sockets,
                l.user_sockets,
                "sockets",
                "sockets",
            ),
            (
                cost.buffer_bytes,
                c.buffer_bytes.get(),
                u.buffer_bytes.get(),
                l.buffer_bytes,
                l.user_buffer_bytes,
                "bytes of socket buffers",
                "buffer_bytes",
            ),
            (
                cost.subscriptions,
                c.subscriptions.get(),
                u.subscriptions.get(),
                l.subscriptions,
                l.user_subscriptions,
                "egress subscriptions",
                "subscriptions",
            ),
            (
                cost.calls,
                c.calls.get(),
                u.calls.get(),
                l.calls,
                l.user_calls,
                "calls waiting",
                "calls",
            ),
        ];
        for (i, (want, client, user, client_max, user_max, what, key)) in
            checks.into_iter().enumerate()
        {
            if want == 0 {
                continue;
            }
            let refused = if client + want > client_max {
                Some(format!(
                    "this client holds {client} {what} and asks for {want} more; its limit is \
                     {client_max} ([limits] {key} in the capnet configuration)"
                ))
            } else if user + want > user_max {
                Some(format!(
                    "user {} holds {user} {what} over all its connections and asks for {want} \
                     more; the limit is {user_max} ([limits] user_{key} in the capnet \
                     configuration)",
                    self.uid
                ))
            } else {
                None
            };
            if let Some(text) = refused {
                let mut n = self.counters.borrow_mut();
                match i {
                    0 => n.sockets += 1,
                    1 => n.buffer_bytes += 1,
                    2 => n.subscriptions += 1,
                    _ => n.calls += 1,
                }
                return Err(SocketError::Limit.to_capnp(text));
            }
        }
        Ok(())
    }
}

/// The buffer bytes of one TCP socket with `options` (as the stack sizes
/// them), after clamping what the client asked for.
pub fn tcp_cost(stack: &Stack, account: &Account, options: &mut TcpOptions) -> usize {
    let size = |asked: &mut usize| {
        if *asked > 0 {
            *asked = account.socket_buffer(*asked);
        }
        let n = if *asked > 0 {
            *asked
        } else {
            stack.default_buffer
        };
        n.clamp(1024, 16 << 20)
    };
    size(&mut options.recv_buffer) + size(&mut options.send_buffer)
}

/// How many interfaces a socket bound to `local` listens on.
pub fn ifaces_for(stack: &Stack, local: SocketAddr) -> usize {
    if local.ip().is_unspecified() {
        stack.ifaces.len().max(1)
    } else {
        1
    }
}

/// The `limits` counters of `status`.
pub fn write_counters(
    accounts: &Accounts,
    transport: &TransportCounters,
    mut b: capnet_schema::net_capnp::limit_counters::Builder<'_>,
) {
    let refused = *accounts.counters.borrow();
    b.set_sockets(refused.sockets);
    b.set_buffer_bytes(refused.buffer_bytes);
    b.set_subscriptions(refused.subscriptions);
    b.set_calls(refused.calls);
    b.set_connections(transport.connections_refused.get());
    b.set_accept_errors(transport.accept_errors.get());
    b.set_stalls(transport.stalls.get());
    b.set_oversize(transport.oversize.get());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Accounts {
        Accounts::new(Limits {
            sockets: 2,
            user_sockets: 3,
            buffer_bytes: 1000,
            ..Limits::default()
        })
    }

    #[test]
    fn a_client_gets_its_limit_and_then_limit() {
        let accounts = small();
        let a = accounts.client(1000);
        let s1 = a.socket(10).unwrap();
        let _s2 = a.socket(10).unwrap();
        let e = a.socket(10).err().unwrap();
        assert!(
            e.extra.starts_with("limit: this client holds 2 sockets"),
            "{e}"
        );
        assert_eq!(accounts.counters.borrow().sockets, 1);
        drop(s1);
        a.socket(10).unwrap();
    }

    #[test]
    fn a_split_charge_moves_without_counting_twice_and_is_given_back_once() {
        let accounts = small();
        let a = accounts.client(1000);
        let held = || (a.client.buffer_bytes.get(), a.user.buffer_bytes.get());
        let mut socket = a.socket(600).unwrap();
        // The rings' part outlives the socket; the rest goes with it.
        let rings = socket.split_buffer(400);
        drop(socket);
        assert_eq!(held(), (400, 400));
        // A new socket takes the rings over without admitting them again.
        let mut next = a.socket(500).unwrap();
        next.absorb(rings);
        assert_eq!(held(), (900, 900));
        drop(next);
        assert_eq!(held(), (0, 0));
    }

    #[test]
    fn more_connections_do_not_multiply_a_users_budget() {
        let accounts = small();
        let (a, b) = (accounts.client(1000), accounts.client(1000));
        let _held = [
            a.socket(1).unwrap(),
            a.socket(1).unwrap(),
            b.socket(1).unwrap(),
        ];
        let e = b.socket(1).err().unwrap();
        assert!(e.extra.contains("user 1000 holds 3 sockets"), "{e}");
        // Another user is not affected.
        accounts.client(1001).socket(1).unwrap();
    }

    #[test]
    fn buffers_count_and_clamp() {
        let accounts = small();
        let a = accounts.client(7);
        assert_eq!(
            a.socket_buffer(16 << 20),
            Limits::default().socket_buffer_max
        );
        let mut c = a.socket(600).unwrap();
        assert!(c.add_buffer(600).is_err());
        c.add_buffer(400).unwrap();
        assert!(a.socket(1).is_err());
        drop(c);
        a.socket(1000).unwrap();
    }

    #[test]
    fn trusted_peers_are_not_limited() {
        let accounts = small();
        let t = accounts.trusted();
        let _held: Vec<_> = (0..10).map(|_| t.socket(1 << 20).unwrap()).collect();
        assert_eq!(t.socket_buffer(16 << 20), 16 << 20);
    }
}
