//! The socket service: capnp servers for `Net` (`client`), `TcpSocket`
//! (`tcp`), `TcpListener` (`listener`), `UdpSocket` (`udp`), the drivers'
//! `LinkWatcher` (`links`) and the status (`status`), and here the state
//! they share and the poll loop that drives the stack.
//!
//! One thread runs everything (see docs/netsrv.md): capnp calls change the
//! stack synchronously and kick the poll loop; calls that must wait (read,
//! accept, connect) sleep on `changed`, which the loop signals after every
//! poll that moved something.

use crate::egress::EgressRegistry;
use crate::limits::{Account, Accounts, Charge, Limits};
use crate::offload::TxBinding;
use crate::stack::{SockId, Stack, TcpOptions};
use capnet_ring::{Doorbell, HandoffTable, IdlePoll};
use capnet_schema::addr::{read_socket_addr, write_socket_addr};
use capnet_schema::errors::SocketError;
use capnet_schema::net_capnp::{
    net, net_status, tcp_listener, tcp_socket, udp_socket, BondMode, Shutdown,
};
use capnet_schema::nic_capnp::{link_watcher, nic};
use capnet_schema::offload::{kind_name, write_tcp_flow};
use capnet_schema::offload_capnp::{offload_request, OffloadKind};
use capnp::capability::Rc as CapRc;
use capnp::Error;
pub use rings::read_held;
use rings::{Kept, RingPool};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

mod client;
mod links;
mod listener;
mod rings;
mod status;
mod tcp;
mod udp;

pub use client::NetServer;
pub use links::LinkWatcherServer;
pub use listener::TcpListenerServer;
pub use status::fill_status;
pub use tcp::TcpSocketServer;
pub use udp::UdpSocketServer;

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Capacity of each byte ring of a socket in ring mode.
pub const SOCKET_RING_BYTES: u32 = 256 * 1024;
const MAX_IO: u32 = 1 << 20;
/// What a UDP socket holds on each interface it is bound on: the stack's
/// receive and send packet buffers.
const UDP_SOCKET_BYTES: usize = 2 * 256 * 1024;
/// Backlog a listener may ask for (the stack's own bound).
const MAX_BACKLOG: usize = 256;

pub struct Shared {
    pub stack: RefCell<Stack>,
    /// Wakes the poll loop.
    pub kick: Notify,
    /// Sockets whose client rang since the loop last looked.
    rang: RefCell<Vec<SockId>>,
    /// Wakes calls waiting for the stack to change.
    pub changed: Notify,
    /// A driver broke its ring contract (its watcher detaches it).
    pub faults: Notify,
    pub handoff: Arc<HandoffTable>,
    /// Each attached port's current driver instance.
    drivers: RefCell<HashMap<String, Driver>>,
    pub egress: RefCell<EgressRegistry>,
    /// What each client holds, against `[limits]`.
    pub accounts: Accounts,
    /// TCP sockets their client let go that the stack still holds
    /// (sending what was queued, closing): their charges count until the
    /// stack lets the socket go, and their rings go back to their client's
    /// pool then.
    lingering: RefCell<Vec<Lingering>>,
    /// What the service socket's connections did at their limits.
    pub transport: Rc<capnet_schema::transport::TransportCounters>,
}

/// A socket its client let go of, until the stack does.
struct Lingering {
    id: SockId,
    charge: Charge,
    rings: Option<(Rc<RingPool>, Kept)>,
}

/// A driver instance as the control plane holds it.
struct Driver {
    instance: u64,
    nic: nic::Client,
    doorbell: JoinHandle<()>,
}

impl Shared {
    pub fn new(stack: Stack, limits: Limits) -> Rc<Shared> {
        Rc::new(Shared {
            stack: RefCell::new(stack),
            kick: Notify::new(),
            rang: RefCell::default(),
            changed: Notify::new(),
            faults: Notify::new(),
            handoff: Arc::new(HandoffTable::new()),
            drivers: RefCell::new(HashMap::new()),
            egress: RefCell::new(EgressRegistry::default()),
            accounts: Accounts::new(limits),
            lingering: RefCell::default(),
            transport: Rc::default(),
        })
    }

    /// Gives back the charges of released sockets the stack has let go,
    /// and their rings to their clients' pools.
    fn reap_lingering(&self) {
        let Ok(mut stack) = self.stack.try_borrow_mut() else {
            return;
        };
        let mut retired = std::mem::take(&mut stack.retired_rings);
        self.lingering.borrow_mut().retain_mut(|l| {
            if stack.tcp_info(l.id).is_ok() {
                return true;
            }
            if let (Some((pool, fds)), Some(end)) = (l.rings.take(), retired.remove(&l.id)) {
                // The rings keep their part of the socket's charge.
                let charge = l.charge.split_buffer(2 * SOCKET_RING_BYTES as usize);
                pool.put_back(end, fds, charge);
            }
            false
        });
    }

    /// A driver instance's rings are under its port: keep its `Nic` and
    /// doorbell task (replacing an older instance's).
    pub fn instance_started(
        &self,
        port: &str,
        instance: u64,
        nic: nic::Client,
        doorbell: JoinHandle<()>,
    ) {
        let old = self.drivers.borrow_mut().insert(
            port.to_string(),
            Driver {
                instance,
                nic,
                doorbell,
            },
        );
        if let Some(old) = old {
            old.doorbell.abort();
        }
    }

    /// A driver instance's connection ended: release its rings (once) and
    /// its doorbell; the port is detached until a new instance attaches.
    pub fn driver_gone(&self, port: &str, instance: u64) {
        let released = self.stack.borrow_mut().detach(port, instance);
        let mut drivers = self.drivers.borrow_mut();
        if drivers.get(port).is_some_and(|d| d.instance == instance) {
            if let Some(d) = drivers.remove(port) {
                d.doorbell.abort();
            }
        }
        if released {
            tracing::warn!(
                port,
                instance,
                "driver instance gone; its rings are released"
            );
        }
        self.kick.notify_one();
    }

    /// The current driver of every attached port.
    /// The `Nic` of the current driver of `port`.
    pub fn nic(&self, port: &str) -> Option<nic::Client> {
        self.drivers.borrow().get(port).map(|d| d.nic.clone())
    }

    pub fn nics(&self) -> Vec<(String, nic::Client)> {
        self.drivers
            .borrow()
            .iter()
            .map(|(n, d)| (n.clone(), d.nic.clone()))
            .collect()
    }

    /// Runs `op` against the stack until it answers, waiting for stack
    /// progress in between.
    async fn wait_for<T>(
        &self,
        mut op: impl FnMut(&mut Stack) -> Result<Option<T>, SocketError>,
        what: &str,
    ) -> Result<T, Error> {
        loop {
            let changed = self.changed.notified();
            let answer = op(&mut self.stack.borrow_mut());
            match answer {
                Ok(Some(v)) => {
                    self.kick.notify_one();
                    return Ok(v);
                }
                Ok(None) => changed.await,
                Err(e) => return Err(e.to_capnp(what)),
            }
        }
    }

    fn now<T>(
        &self,
        op: impl FnOnce(&mut Stack) -> Result<T, SocketError>,
        what: &str,
    ) -> Result<T, Error> {
        let r = op(&mut self.stack.borrow_mut()).map_err(|e| e.to_capnp(what));
        self.kick.notify_one();
        r
    }
}

/// Drives the stack: poll while there is work, then sleep on doorbells and
/// timers. Never spins without work.
pub async fn run_stack(shared: Rc<Shared>) {
    // Busy polls between yields: each yield costs tokio an epoll_wait, and
    // while frames flow the doorbells have nothing to say.
    const BUSY_ROUNDS: u32 = 16;
    let mut rounds = 0;
    let mut idle = IdlePoll::configured();
    loop {
        let busy = poll_stack(&shared);
        if shared.stack.borrow_mut().take_new_faults() {
            shared.faults.notify_waiters();
        }
        crate::egress::check(&shared);
        if busy {
            rounds += 1;
            if rounds < BUSY_ROUNDS {
                continue;
            }
            rounds = 0;
            shared.changed.notify_waiters();
            // Let capnp calls and doorbell tasks in, then poll again.
            tokio::task::yield_now().await;
            continue;
        }
        if rounds > 0 {
            rounds = 0;
            shared.changed.notify_waiters();
        }
        // Armed first: a socket the loop looked at since its last arm is
        // not asked to ring, and a round would not see its client's bytes
        // (bulk to Linux over a TAP lost three quarters of its rate so).
        // Armed again after a round its polls may have unarmed sockets in.
        if shared.stack.borrow_mut().arm() {
            continue;
        }
        if poll_before_sleeping(&shared, &mut idle).await {
            // The round's poll did work: calls waiting on the stack (an
            // accept, a connect) hear of it when the busy streak ends, as
            // after any other busy poll.
            rounds += 1;
            continue;
        }
        if shared.stack.borrow_mut().arm() {
            // Work the round's checks did not see: a short spell all the same.
            idle.slept(Duration::ZERO);
            continue;
        }
        let delay = shared
            .stack
            .borrow_mut()
            .poll_delay()
            .unwrap_or(Duration::from_secs(1));
        if delay.is_zero() {
            tokio::task::yield_now().await;
            continue;
        }
        let slept = Instant::now();
        tokio::select! {
            _ = shared.kick.notified() => {}
            _ = tokio::time::sleep(delay) => {}
        }
        idle.slept(slept.elapsed());
        // Timers may have changed socket state without moving frames.
        shared.changed.notify_waiters();
    }
}

/// Files the sockets whose clients rang, then polls the stack once:
/// whether it did work.
fn poll_stack(shared: &Shared) -> bool {
    let mut stack = shared.stack.borrow_mut();
    for id in shared.rang.take() {
        stack.tcp_rang(id);
    }
    stack.poll()
}

/// Polls the stack a little before arming its doorbells and sleeping,
/// while that pays (`capnet_ring::idle`): whether work came. Each check
/// first lets tokio run (doorbell tasks file what rang, calls land), so a
/// reply a client writes is taken without netsrv sleeping for it.
async fn poll_before_sleeping(shared: &Shared, idle: &mut IdlePoll) -> bool {
    let Some(mut round) = idle.start() else {
        return false;
    };
    let found = loop {
        tokio::task::yield_now().await;
        if poll_stack(shared) {
            break true;
        }
        if !round.go_on() {
            break false;
        }
    };
    idle.finish(round, found);
    found
}

/// Forwards a doorbell (our wait end) to the poll loop, after `on_ring`
/// filed what the ring means (it answers whether work may be left that
/// another ring will not announce). Every call on the doorbell is
/// non-blocking whatever the peer does to its end. A wait end the peer shut
/// down (through a dup it kept) would be readable forever: the task ends,
/// and only that peer goes without wakeups; so does one `on_ring` gives up
/// on (`None`).
pub fn watch_doorbell(
    shared: &Rc<Shared>,
    bell: Doorbell,
    mut on_ring: impl FnMut(&Shared) -> Option<bool> + 'static,
) -> std::io::Result<JoinHandle<()>> {
    // SAFETY: the Doorbell owns its fd for as long as the AsyncFd owns the
    // Doorbell, and always reports that same descriptor.
    let fd = unsafe { AsyncFd::register_with_interest(bell, tokio::io::Interest::READABLE) }?;
    let shared = shared.clone();
    Ok(tokio::task::spawn_local(async move {
        loop {
            let Ok(mut guard) = fd.readable().await else {
                return;
            };
            // Read-closed is what epoll says of a wait end the peer shut down.
            let bell = guard.get_inner();
            if guard.ready().is_read_closed() && bell.peer_gone() {
                tracing::warn!("a peer shut down its doorbell; no longer watching it");
                shared.kick.notify_one();
                return;
            }
            // A full batch may have left rings behind: look again first.
            let drained = bell.drain() < Doorbell::DRAIN_MAX;
            let Some(left) = on_ring(&shared) else {
                shared.kick.notify_one();
                return;
            };
            if drained && !left {
                guard.clear_ready();
            }
            shared.kick.notify_one();
        }
    }))
}

/// What a socket ring set's doorbell means: the socket holding the set now
/// (`owner`) has news.
pub fn socket_rang(owner: Rc<Cell<SockId>>) -> impl FnMut(&Shared) -> Option<bool> {
    move |shared| {
        shared.rang.borrow_mut().push(owner.get());
        Some(false)
    }
}
