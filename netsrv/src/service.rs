//! The socket service: capnp servers for `Net`, `TcpSocket`, `TcpListener`
//! and `UdpSocket`, and the poll loop that drives the stack.
//!
//! One thread runs everything (see docs/netsrv.md): capnp calls change the
//! stack synchronously and kick the poll loop; calls that must wait (read,
//! accept, connect) sleep on `changed`, which the loop signals after every
//! poll that moved something.

use crate::egress::EgressRegistry;
use crate::limits::{Account, Accounts, Charge, Limits};
use crate::offload::TxBinding;
use crate::stack::{SockId, Stack, TcpOptions};
use capnet_ring::{Doorbell, HandoffTable, SocketRings};
use capnet_schema::addr::{read_socket_addr, write_socket_addr};
use capnet_schema::errors::SocketError;
use capnet_schema::net_capnp::{
    net, net_status, tcp_listener, tcp_socket, udp_socket, BondMode, Shutdown,
};
use capnet_schema::nic_capnp::{link_watcher, nic};
use capnet_schema::offload_capnp::OffloadKind;
use capnp::capability::Rc as CapRc;
use capnp::Error;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

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
    /// Wakes calls waiting for the stack to change.
    pub changed: Notify,
    pub handoff: Arc<HandoffTable>,
    /// Each attached port's current driver instance.
    drivers: RefCell<HashMap<String, Driver>>,
    pub egress: RefCell<EgressRegistry>,
    /// What each client holds, against `[limits]`.
    pub accounts: Accounts,
    /// Charges of TCP sockets their client let go that the stack still
    /// holds (sending what was queued, closing): they count until the
    /// stack lets the socket go.
    lingering: RefCell<Vec<(SockId, Charge)>>,
    /// What the service socket's connections did at their limits.
    pub transport: Rc<capnet_schema::transport::TransportCounters>,
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
            changed: Notify::new(),
            handoff: Arc::new(HandoffTable::new()),
            drivers: RefCell::new(HashMap::new()),
            egress: RefCell::new(EgressRegistry::default()),
            accounts: Accounts::new(limits),
            lingering: RefCell::default(),
            transport: Rc::default(),
        })
    }

    /// Gives back the charges of released sockets the stack has let go.
    fn reap_lingering(&self) {
        let Ok(mut stack) = self.stack.try_borrow_mut() else {
            return;
        };
        self.lingering
            .borrow_mut()
            .retain(|(id, _)| stack.tcp_info(*id).is_ok());
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
    loop {
        let busy = shared.stack.borrow_mut().poll();
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
        if shared.stack.borrow_mut().arm() {
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
        tokio::select! {
            _ = shared.kick.notified() => {}
            _ = tokio::time::sleep(delay) => {}
        }
        // Timers may have changed socket state without moving frames.
        shared.changed.notify_waiters();
    }
}

/// Forwards a doorbell (our wait end) to the poll loop. Every call on it is
/// non-blocking whatever the peer does to its end. A wait end the peer shut
/// down (through a dup it kept) would be readable forever: the task ends,
/// and only that peer goes without wakeups.
pub fn watch_doorbell(shared: &Rc<Shared>, bell: Doorbell) -> std::io::Result<JoinHandle<()>> {
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
            if bell.drain() < Doorbell::DRAIN_MAX {
                guard.clear_ready();
            }
            shared.kick.notify_one();
        }
    }))
}

fn tcp_options(
    r: Option<capnet_schema::net_capnp::socket_options::Reader<'_>>,
) -> (TcpOptions, Duration) {
    let Some(r) = r else {
        return (TcpOptions::default(), DEFAULT_CONNECT_TIMEOUT);
    };
    let options = TcpOptions {
        no_delay: r.get_no_delay(),
        send_buffer: r.get_send_buffer() as usize,
        recv_buffer: r.get_recv_buffer() as usize,
        keep_alive: (r.get_keep_alive_ms() > 0)
            .then(|| Duration::from_millis(r.get_keep_alive_ms() as u64)),
    };
    let timeout = match r.get_connect_timeout_ms() {
        0 => DEFAULT_CONNECT_TIMEOUT,
        ms => Duration::from_millis(ms as u64),
    };
    (options, timeout)
}

// ---- Net ----

/// One client's view of the socket service.
pub struct NetServer {
    shared: Rc<Shared>,
    /// Whether the client may bind ports below 1024 (`[access] low_ports`,
    /// judged on its SO_PEERCRED credentials).
    low_ports: bool,
    /// What this client holds, against its limits.
    account: Rc<Account>,
}

impl NetServer {
    /// A client of user `uid`, limited by `[limits]`.
    pub fn new(shared: Rc<Shared>, uid: u32, low_ports: bool) -> NetServer {
        let account = shared.accounts.client(uid);
        NetServer::with_account(shared, low_ports, account)
    }

    /// A peer the supervisor connected (the admin's `Net`, a `--rpc-fd`
    /// descriptor): not limited, and may bind any port.
    pub fn trusted(shared: Rc<Shared>) -> NetServer {
        let account = shared.accounts.trusted();
        NetServer::with_account(shared, true, account)
    }

    fn with_account(shared: Rc<Shared>, low_ports: bool, account: Rc<Account>) -> NetServer {
        shared.stack.borrow_mut().counters.sessions += 1;
        NetServer {
            shared,
            low_ports,
            account,
        }
    }

    fn check_privileged(&self, addr: SocketAddr) -> Result<(), Error> {
        if addr.port() != 0 && addr.port() < 1024 && !self.low_ports {
            return Err(SocketError::Denied.to_capnp(format_args!(
                "port {} is below 1024 and this user may not bind it ([access] low_ports in the configuration)",
                addr.port()
            )));
        }
        Ok(())
    }
}

impl net::Server for NetServer {
    async fn tcp_connect(
        self: CapRc<Self>,
        params: net::TcpConnectParams,
        mut results: net::TcpConnectResults,
    ) -> Result<(), Error> {
        let _call = self.account.call()?;
        let p = params.get()?;
        let remote = read_socket_addr(p.get_remote()?)?;
        let (mut options, timeout) = tcp_options(if p.has_options() {
            Some(p.get_options()?)
        } else {
            None
        });
        let shared = self.shared.clone();
        shared.reap_lingering();
        let charge = self.account.socket(crate::limits::tcp_cost(
            &shared.stack.borrow(),
            &self.account,
            &mut options,
        ))?;
        let id = shared.now(|s| s.tcp_connect(remote, &options), &remote.to_string())?;
        let socket = TcpSocketServer::new(shared.clone(), id, self.account.clone(), charge);
        let what = remote.to_string();
        match tokio::time::timeout(
            timeout,
            shared.wait_for(|s| Ok(s.tcp_connected(id)?.then_some(())), &what),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(SocketError::TimedOut.to_capnp(format_args!("connect to {remote}")))
            }
        }
        results.get().set_socket(capnp_rpc::new_client(socket));
        Ok(())
    }

    async fn tcp_listen(
        self: CapRc<Self>,
        params: net::TcpListenParams,
        mut results: net::TcpListenResults,
    ) -> Result<(), Error> {
        let p = params.get()?;
        let local = read_socket_addr(p.get_local()?)?;
        self.check_privileged(local)?;
        let (mut options, _) = tcp_options(if p.has_options() {
            Some(p.get_options()?)
        } else {
            None
        });
        let backlog = p.get_backlog() as usize;
        // A listener keeps `backlog` listening sockets per interface, and
        // as many connections ready to accept.
        self.shared.reap_lingering();
        let conn_bytes =
            crate::limits::tcp_cost(&self.shared.stack.borrow(), &self.account, &mut options);
        let slots = 2
            * backlog.clamp(1, MAX_BACKLOG)
            * crate::limits::ifaces_for(&self.shared.stack.borrow(), local);
        let charge = self.account.socket(slots * conn_bytes)?;
        let id = self.shared.now(
            |s| s.tcp_listen(local, backlog, options),
            &local.to_string(),
        )?;
        results
            .get()
            .set_listener(capnp_rpc::new_client(TcpListenerServer {
                shared: self.shared.clone(),
                id,
                account: self.account.clone(),
                conn_bytes,
                _charge: charge,
            }));
        Ok(())
    }

    async fn udp_bind(
        self: CapRc<Self>,
        params: net::UdpBindParams,
        mut results: net::UdpBindResults,
    ) -> Result<(), Error> {
        let local = read_socket_addr(params.get()?.get_local()?)?;
        self.check_privileged(local)?;
        let charge = self.account.socket(
            UDP_SOCKET_BYTES * crate::limits::ifaces_for(&self.shared.stack.borrow(), local),
        )?;
        let id = self.shared.now(|s| s.udp_bind(local), &local.to_string())?;
        results
            .get()
            .set_socket(capnp_rpc::new_client(UdpSocketServer {
                shared: self.shared.clone(),
                id,
                account: self.account.clone(),
                _charge: charge,
            }));
        Ok(())
    }

    async fn status(
        self: CapRc<Self>,
        _: net::StatusParams,
        mut results: net::StatusResults,
    ) -> Result<(), Error> {
        let _call = self.account.call()?;
        fill_status(&self.shared, results.get().init_status()).await;
        Ok(())
    }

    async fn egress(
        self: CapRc<Self>,
        params: net::EgressParams,
        mut results: net::EgressResults,
    ) -> Result<(), Error> {
        let flow = params.get()?.get_flow()?;
        let target = crate::egress::Target::from_flow(flow)?;
        results
            .get()
            .set_egress(crate::egress::client(&self.shared, target, &self.account));
        Ok(())
    }
}

type NicCounters = capnp::capability::Response<nic::counters_results::Owned>;

/// The whole status, with every driver's own counters.
pub async fn fill_status(shared: &Rc<Shared>, mut status: net_status::Builder<'_>) {
    let counters = driver_counters(shared).await;
    write_status(&shared.stack.borrow(), &counters, status.reborrow());
    status.set_confinement(capnet_confine::current_text());
    if let Ok(c) = status.get_counters() {
        crate::limits::write_counters(&shared.accounts, &shared.transport, c.init_limits());
    }
}

/// How long a status waits for one driver's counters.
const STATUS_DRIVER_DEADLINE: Duration = Duration::from_secs(1);

/// Every attached driver's own counters. Asked before the stack is
/// borrowed: no borrow may live across an await.
async fn driver_counters(shared: &Rc<Shared>) -> HashMap<String, NicCounters> {
    let asks = shared.nics().into_iter().map(|(name, nic)| async move {
        let call = nic.counters_request().send().promise;
        // A driver that does not answer leaves its counters out of the
        // status; it does not hold the status up.
        match tokio::time::timeout(STATUS_DRIVER_DEADLINE, call).await {
            Ok(Ok(r)) => Some((name, r)),
            _ => None,
        }
    });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

fn mac_text(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

fn set_texts(mut list: capnp::text_list::Builder<'_>, items: &[String]) {
    for (i, a) in items.iter().enumerate() {
        list.set(i as u32, a);
    }
}

fn write_status(
    stack: &Stack,
    nic_counters: &HashMap<String, NicCounters>,
    mut status: net_status::Builder<'_>,
) {
    let all = stack.ports();
    let mut ports = status.reborrow().init_ports(all.len() as u32);
    for (i, (leg, iface)) in all.iter().enumerate() {
        let mut b = ports.reborrow().get(i as u32);
        b.set_name(&leg.meta.name);
        b.set_backend(&leg.meta.backend);
        b.set_mac(mac_text(leg.meta.mac));
        b.set_mtu(leg.meta.mtu as u32);
        b.set_link_up(leg.usable());
        b.set_interface(iface);
        b.set_state(leg.state());
        b.set_driver_epoch(leg.epoch);
        let c = leg.counters();
        b.set_tx_frames(c.tx_frames);
        b.set_rx_frames(c.rx_frames);
        if let Some(resp) = nic_counters.get(&leg.meta.name) {
            if let Ok(c) = resp.get().and_then(|r| r.get_counters()) {
                let _ = b.set_counters(c);
            }
        }
    }
    let addrs: Vec<String> = stack
        .ifaces
        .iter()
        .flat_map(|p| {
            p.iface
                .ip_addrs()
                .iter()
                .map(move |a| format!("{a} on {}", p.link.name))
        })
        .collect();
    set_texts(status.reborrow().init_addresses(addrs.len() as u32), &addrs);
    let routes = stack.route_texts();
    set_texts(status.reborrow().init_routes(routes.len() as u32), &routes);
    let sockets = stack.sockets();
    let mut list = status.reborrow().init_sockets(sockets.len() as u32);
    for (i, s) in sockets.iter().enumerate() {
        let mut b = list.reborrow().get(i as u32);
        b.set_kind(s.kind);
        b.set_local(&s.local);
        b.set_remote(&s.remote);
        b.set_state(&s.state);
        b.set_rx_bytes(s.rx_bytes);
        b.set_tx_bytes(s.tx_bytes);
        b.set_ring_mode(s.ring_mode);
    }
    let bonds: Vec<&crate::link::Link> = stack
        .ifaces
        .iter()
        .map(|i| &i.link)
        .filter(|l| l.is_bond())
        .collect();
    let mut list = status.reborrow().init_bonds(bonds.len() as u32);
    for (i, link) in bonds.iter().enumerate() {
        let mut b = list.reborrow().get(i as u32);
        b.set_name(&link.name);
        b.set_mode(match link.mode {
            crate::link::Mode::BalanceXor => BondMode::BalanceXor,
            _ => BondMode::ActiveBackup,
        });
        let legs: Vec<String> = link.legs.iter().map(|l| l.meta.name.clone()).collect();
        set_texts(b.reborrow().init_legs(legs.len() as u32), &legs);
        if let Some(a) = link.active() {
            b.set_active(&link.legs[a].meta.name);
        }
        if let Some(p) = link.primary {
            b.set_primary(&link.legs[p].meta.name);
        }
        let c = link.counters;
        b.set_failovers(c.failovers);
        b.set_announcements(c.announcements);
        b.set_tx_no_leg(c.tx_no_leg);
        let d = link.device_counters();
        b.set_tx_frames(d.tx_frames);
        b.set_rx_frames(d.rx_frames);
    }
    let c = stack.counters;
    let d = stack.device_counters();
    let (attaches, detaches, mapped) = stack.driver_counters();
    let mut b = status.init_counters();
    b.set_sessions(c.sessions);
    b.set_sessions_killed(c.sessions_killed);
    b.set_sessions_refused(c.sessions_refused);
    b.set_drivers_refused(c.drivers_refused);
    b.set_bad_ring_indices(c.bad_ring_indices);
    b.set_tcp_connects(c.tcp_connects);
    b.set_tcp_accepts(c.tcp_accepts);
    b.set_tcp_resets(c.tcp_resets);
    b.set_udp_sent(c.udp_sent);
    b.set_udp_received(c.udp_received);
    b.set_port_bad_descriptors(all.iter().filter(|p| p.0.state() == "failed").count() as u64);
    b.set_rx_bad_checksum(d.rx_bad_checksum);
    b.set_tx_no_buffer(d.tx_no_buffer);
    b.set_driver_attaches(attaches);
    b.set_driver_detaches(detaches);
    b.set_rings_mapped(mapped);
    let (resent, dropped) = stack.ifaces.iter().fold((0, 0), |(r, d), i| {
        (
            r + i.link.counters.salvage_resent,
            d + i.link.counters.salvage_dropped,
        )
    });
    b.set_salvage_resent(resent);
    b.set_salvage_dropped(dropped);
    b.set_egress_watchers(c.egress_watchers);
    b.set_egress_events(c.egress_events);
    let o = stack.offload_counters();
    let mut ob = b.init_offload();
    ob.set_tx_tagged(o.tx_tagged);
    ob.set_tx_replaced(o.tx_replaced);
    ob.set_tx_held(o.tx_held);
    ob.set_tx_held_sent(o.tx_held_sent);
    ob.set_tx_held_dropped(o.tx_held_dropped);
    ob.set_rx_decrypted(o.rx_decrypted);
    ob.set_rx_out_of_order(o.rx_out_of_order);
    ob.set_rx_out_of_order_dropped(o.rx_out_of_order_dropped);
    ob.set_rx_out_of_order_decrypted(o.rx_out_of_order_decrypted);
    ob.set_rx_mark_errors(o.rx_mark_errors);
}

// ---- TcpSocket ----

pub struct TcpSocketServer {
    shared: Rc<Shared>,
    id: SockId,
    doorbell: RefCell<Option<JoinHandle<()>>>,
    account: Rc<Account>,
    /// The socket and its buffers (and rings, once open).
    charge: RefCell<Option<Charge>>,
}

impl TcpSocketServer {
    fn new(
        shared: Rc<Shared>,
        id: SockId,
        account: Rc<Account>,
        charge: Charge,
    ) -> TcpSocketServer {
        TcpSocketServer {
            shared,
            id,
            doorbell: RefCell::new(None),
            account,
            charge: RefCell::new(Some(charge)),
        }
    }
}

impl Drop for TcpSocketServer {
    fn drop(&mut self) {
        if let Some(task) = self.doorbell.borrow_mut().take() {
            task.abort();
        }
        if let Some(charge) = self.charge.borrow_mut().take() {
            self.shared.lingering.borrow_mut().push((self.id, charge));
        }
        if let Ok(mut stack) = self.shared.stack.try_borrow_mut() {
            stack.tcp_release(self.id);
        }
        self.shared.kick.notify_one();
    }
}

impl tcp_socket::Server for TcpSocketServer {
    async fn read(
        self: CapRc<Self>,
        params: tcp_socket::ReadParams,
        mut results: tcp_socket::ReadResults,
    ) -> Result<(), Error> {
        let _call = self.account.call()?;
        let max = params.get()?.get_max().min(MAX_IO) as usize;
        let id = self.id;
        let data = self
            .shared
            .wait_for(|s| s.tcp_read(id, max), "read")
            .await?;
        results.get().set_data(&data);
        Ok(())
    }

    async fn write(
        self: CapRc<Self>,
        params: tcp_socket::WriteParams,
        mut results: tcp_socket::WriteResults,
    ) -> Result<(), Error> {
        let _call = self.account.call()?;
        let data = params.get()?.get_data()?;
        if data.is_empty() {
            results.get().set_written(0);
            return Ok(());
        }
        let id = self.id;
        let n = self
            .shared
            .wait_for(|s| s.tcp_write(id, data), "write")
            .await?;
        results.get().set_written(n as u32);
        Ok(())
    }

    async fn shutdown(
        self: CapRc<Self>,
        params: tcp_socket::ShutdownParams,
        _: tcp_socket::ShutdownResults,
    ) -> Result<(), Error> {
        let how = params.get()?.get_how()?;
        let (read, write) = match how {
            Shutdown::Read => (true, false),
            Shutdown::Write => (false, true),
            Shutdown::Both => (true, true),
        };
        let id = self.id;
        self.shared
            .now(|s| s.tcp_shutdown(id, read, write), "shutdown")
    }

    async fn close(
        self: CapRc<Self>,
        _: tcp_socket::CloseParams,
        _: tcp_socket::CloseResults,
    ) -> Result<(), Error> {
        let id = self.id;
        self.shared.now(
            |s| {
                s.tcp_release(id);
                Ok(())
            },
            "close",
        )
    }

    async fn set_no_delay(
        self: CapRc<Self>,
        params: tcp_socket::SetNoDelayParams,
        _: tcp_socket::SetNoDelayResults,
    ) -> Result<(), Error> {
        let on = params.get()?.get_on();
        let id = self.id;
        self.shared
            .now(|s| s.tcp_set_no_delay(id, on), "setNoDelay")
    }

    async fn info(
        self: CapRc<Self>,
        _: tcp_socket::InfoParams,
        mut results: tcp_socket::InfoResults,
    ) -> Result<(), Error> {
        let id = self.id;
        let (local, remote, state) = self.shared.now(|s| s.tcp_info(id), "info")?;
        let mut r = results.get();
        if let Some(a) = local {
            write_socket_addr(r.reborrow().init_local(), a);
        }
        if let Some(a) = remote {
            write_socket_addr(r.reborrow().init_remote(), a);
        }
        r.set_state(&state);
        Ok(())
    }

    async fn open_rings(
        self: CapRc<Self>,
        _: tcp_socket::OpenRingsParams,
        mut results: tcp_socket::OpenRingsResults,
    ) -> Result<(), Error> {
        match self.charge.borrow_mut().as_mut() {
            Some(charge) => charge.add_buffer(2 * SOCKET_RING_BYTES as usize)?,
            None => return Err(SocketError::Closed.to_capnp("openRings")),
        }
        let (server_end, fds) = SocketRings::create(SOCKET_RING_BYTES)
            .map_err(|e| SocketError::Busy.to_capnp(format_args!("shared memory: {e}")))?;
        let bell = server_end
            .wake_me
            .try_clone()
            .map_err(|e| SocketError::Busy.to_capnp(format_args!("doorbell: {e}")))?;
        let id = self.id;
        self.shared
            .now(|s| s.tcp_attach_rings(id, server_end), "openRings")?;
        let task = watch_doorbell(&self.shared, bell).map_err(|e| SocketError::Busy.to_capnp(e))?;
        *self.doorbell.borrow_mut() = Some(task);
        let token = self.shared.handoff.offer(fds);
        let mut g = results.get().init_grant();
        g.set_token(&token.0);
        g.set_ring_bytes(SOCKET_RING_BYTES);
        Ok(())
    }

    async fn egress(
        self: CapRc<Self>,
        _: tcp_socket::EgressParams,
        mut results: tcp_socket::EgressResults,
    ) -> Result<(), Error> {
        let id = self.id;
        // Fails with `closed` for a socket that is gone.
        self.shared
            .now(|s| s.egress_of_socket(id).map(|_| ()), "egress")?;
        results.get().set_egress(crate::egress::client(
            &self.shared,
            crate::egress::Target::Socket(id),
            &self.account,
        ));
        Ok(())
    }

    async fn offload_tls(
        self: CapRc<Self>,
        params: tcp_socket::OffloadTlsParams,
        mut results: tcp_socket::OffloadTlsResults,
    ) -> Result<(), Error> {
        let _call = self.account.call()?;
        let p = params.get()?;
        let kind = p.get_kind()?;
        let tls = p.get_params()?;
        let offset = p.get_stream_offset();
        let events = p.get_events()?;
        let id = self.id;
        let tx = kind == OffloadKind::TlsTx;
        tracing::debug!(id, ?kind, offset, "offloadTls");
        let egress = self.shared.now(|s| s.egress_of_socket(id), "offloadTls")?;
        let Some(port) = egress.port else {
            return Err(SocketError::Busy.to_capnp("offloadTls: no egress port now"));
        };
        // A port without the feature is answered here: no call to its
        // driver, no receive-side switch.
        let (has_tx, has_rx) = self.shared.stack.borrow().port_tls_offload(&port);
        if !(if tx { has_tx } else { has_rx }) {
            return Err(SocketError::Unsupported.to_capnp(format_args!(
                "offloadTls: port {port} offers no TLS {} offload",
                if tx { "TX" } else { "RX" }
            )));
        }
        let nic = self.shared.nic(&port).ok_or_else(|| {
            SocketError::Busy.to_capnp(format_args!("offloadTls: port {port} has no driver now"))
        })?;
        let tuple = self.shared.now(|s| s.tcp_tuple(id), "offloadTls")?;
        let seq = self
            .shared
            .now(|s| s.tcp_seq_at(id, tx, offset), "offloadTls")?;
        let reach = self.shared.now(|s| s.tcp_send_buffer(id), "offloadTls")?;
        // RX: expect marks before the NIC can mark anything.
        if !tx {
            self.shared
                .stack
                .borrow_mut()
                .tcp_bind_rx(id)
                .map_err(|e| SocketError::Invalid.to_capnp(format_args!("offloadTls: {e}")))?;
        }
        let mut req = nic.offload_tls_request();
        {
            let mut r = req.get();
            let mut flow = r.reborrow().init_flow();
            write_socket_addr(flow.reborrow().init_local(), tuple.local);
            write_socket_addr(flow.reborrow().init_remote(), tuple.remote);
            flow.set_tx_reach(reach);
            r.set_kind(kind);
            r.set_params(tls)?;
            r.reborrow().get_params()?.set_tcp_seq(seq);
            r.set_events(events);
        }
        let answer = crate::driver::deadline("offloadTls", req.send().promise)
            .await
            .map_err(|e| SocketError::Busy.to_capnp(e));
        let resp = match answer {
            Ok(r) => r,
            Err(e) => {
                if !tx {
                    let _ = self.shared.stack.borrow_mut().tcp_cancel_rx(id);
                }
                tracing::debug!(id, ?kind, %e, "the NIC refused an offload context");
                return Err(e);
            }
        };
        let resp = resp.get()?;
        let info = resp.get_info()?;
        let ring_offset = if tx {
            0
        } else {
            self.shared.now(|s| s.tcp_confirm_rx(id), "offloadTls")?
        };
        if tx {
            let binding = TxBinding {
                port: port.clone(),
                epoch: egress.epoch,
                context: info.get_id(),
                start: offset,
            };
            self.shared
                .stack
                .borrow_mut()
                .tcp_bind_tx(id, binding)
                .map_err(|e| SocketError::Invalid.to_capnp(format_args!("offloadTls: {e}")))?;
        }
        tracing::info!(id, %port, ?kind, context = info.get_id(), seq, offset, "connection bound to an offload context");
        let mut r = results.get();
        r.set_context(resp.get_context()?);
        r.set_info(info)?;
        r.set_ring_offset(ring_offset);
        r.set_tcp_seq(seq);
        self.shared.kick.notify_one();
        Ok(())
    }

    async fn offload_stop(
        self: CapRc<Self>,
        params: tcp_socket::OffloadStopParams,
        _: tcp_socket::OffloadStopResults,
    ) -> Result<(), Error> {
        let _call = self.account.call()?;
        let p = params.get()?;
        let id = self.id;
        if p.get_kind()? == OffloadKind::TlsRx {
            return self.shared.now(|s| s.tcp_unbind_rx(id), "offloadStop");
        }
        let bytes = p.get_replacement()?.to_vec();
        let start = p.get_replacement_offset();
        let old = self
            .shared
            .now(|s| s.tcp_unbind_tx(id, start, bytes), "offloadStop")?;
        let Some(old) = old else {
            return Ok(());
        };
        // The drain: every descriptor sent on the old port before now (some
        // may name the context) must come back before the context goes.
        let began = std::time::Instant::now();
        let mark = self
            .shared
            .stack
            .borrow_mut()
            .port_tx_progress(&old.port, old.epoch)
            .map(|(sent, _)| sent);
        if let Some(mark) = mark {
            loop {
                let progress = self
                    .shared
                    .stack
                    .borrow_mut()
                    .port_tx_progress(&old.port, old.epoch);
                match progress {
                    Some((_, returned)) if returned < mark => {}
                    // Returned, or the driver instance is gone.
                    _ => break,
                }
                if began.elapsed() > Duration::from_secs(5) {
                    return Err(SocketError::Busy.to_capnp(format_args!(
                        "offloadStop: port {} kept descriptors of context {} for 5 s",
                        old.port, old.context
                    )));
                }
                self.shared.kick.notify_one();
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
        tracing::info!(
            id,
            port = %old.port,
            context = old.context,
            drain_us = began.elapsed().as_micros() as u64,
            "connection unbound from its TX context; drained"
        );
        Ok(())
    }

    async fn send_unacked(
        self: CapRc<Self>,
        _: tcp_socket::SendUnackedParams,
        mut results: tcp_socket::SendUnackedResults,
    ) -> Result<(), Error> {
        let id = self.id;
        let offset = self.shared.now(|s| s.tcp_send_unacked(id), "sendUnacked")?;
        results.get().set_offset(offset);
        Ok(())
    }
}

// ---- TcpListener ----

pub struct TcpListenerServer {
    shared: Rc<Shared>,
    id: SockId,
    account: Rc<Account>,
    /// The buffer bytes of each connection it accepts.
    conn_bytes: usize,
    _charge: Charge,
}

impl Drop for TcpListenerServer {
    fn drop(&mut self) {
        if let Ok(mut stack) = self.shared.stack.try_borrow_mut() {
            stack.tcp_listener_close(self.id);
        }
        self.shared.kick.notify_one();
    }
}

impl tcp_listener::Server for TcpListenerServer {
    async fn accept(
        self: CapRc<Self>,
        _: tcp_listener::AcceptParams,
        mut results: tcp_listener::AcceptResults,
    ) -> Result<(), Error> {
        let _call = self.account.call()?;
        let id = self.id;
        // The connection is charged before it is taken off the queue: one
        // over the limit stays there for a later accept.
        self.shared.reap_lingering();
        let charge = self.account.socket(self.conn_bytes)?;
        let (conn, remote) = self.shared.wait_for(|s| s.tcp_accept(id), "accept").await?;
        let mut r = results.get();
        r.set_socket(capnp_rpc::new_client(TcpSocketServer::new(
            self.shared.clone(),
            conn,
            self.account.clone(),
            charge,
        )));
        write_socket_addr(r.init_remote(), remote);
        Ok(())
    }

    async fn local_addr(
        self: CapRc<Self>,
        _: tcp_listener::LocalAddrParams,
        mut results: tcp_listener::LocalAddrResults,
    ) -> Result<(), Error> {
        let id = self.id;
        let addr = self.shared.now(|s| s.tcp_listener_addr(id), "localAddr")?;
        write_socket_addr(results.get().init_addr(), addr);
        Ok(())
    }

    async fn close(
        self: CapRc<Self>,
        _: tcp_listener::CloseParams,
        _: tcp_listener::CloseResults,
    ) -> Result<(), Error> {
        let id = self.id;
        self.shared.now(
            |s| {
                s.tcp_listener_close(id);
                Ok(())
            },
            "close",
        )
    }
}

// ---- UdpSocket ----

pub struct UdpSocketServer {
    shared: Rc<Shared>,
    id: SockId,
    account: Rc<Account>,
    _charge: Charge,
}

impl Drop for UdpSocketServer {
    fn drop(&mut self) {
        if let Ok(mut stack) = self.shared.stack.try_borrow_mut() {
            stack.udp_close(self.id);
        }
        self.shared.kick.notify_one();
    }
}

impl udp_socket::Server for UdpSocketServer {
    async fn send_to(
        self: CapRc<Self>,
        params: udp_socket::SendToParams,
        _: udp_socket::SendToResults,
    ) -> Result<(), Error> {
        let _call = self.account.call()?;
        let p = params.get()?;
        let data = p.get_data()?;
        let to = read_socket_addr(p.get_to()?)?;
        let id = self.id;
        self.shared
            .wait_for(|s| s.udp_send(id, data, to), &to.to_string())
            .await
    }

    async fn recv_from(
        self: CapRc<Self>,
        params: udp_socket::RecvFromParams,
        mut results: udp_socket::RecvFromResults,
    ) -> Result<(), Error> {
        let _call = self.account.call()?;
        let max = params.get()?.get_max().min(MAX_IO) as usize;
        let id = self.id;
        let (data, from) = self
            .shared
            .wait_for(|s| s.udp_recv(id, max), "recvFrom")
            .await?;
        let mut r = results.get();
        r.set_data(&data);
        write_socket_addr(r.init_from(), from);
        Ok(())
    }

    async fn local_addr(
        self: CapRc<Self>,
        _: udp_socket::LocalAddrParams,
        mut results: udp_socket::LocalAddrResults,
    ) -> Result<(), Error> {
        let id = self.id;
        let addr = self.shared.now(|s| s.udp_local_addr(id), "localAddr")?;
        write_socket_addr(results.get().init_addr(), addr);
        Ok(())
    }

    async fn close(
        self: CapRc<Self>,
        _: udp_socket::CloseParams,
        _: udp_socket::CloseResults,
    ) -> Result<(), Error> {
        let id = self.id;
        self.shared.now(
            |s| {
                s.udp_close(id);
                Ok(())
            },
            "close",
        )
    }
}

// ---- link state from the drivers ----

pub struct LinkWatcherServer {
    pub shared: Rc<Shared>,
    pub port: String,
}

impl link_watcher::Server for LinkWatcherServer {
    async fn link_changed(
        self: CapRc<Self>,
        params: link_watcher::LinkChangedParams,
        _: link_watcher::LinkChangedResults,
    ) -> Result<(), Error> {
        // The carrier word in the port's shared region says the same and
        // is what the data path reads; this event wakes the stack at once.
        let up = params.get()?.get_up();
        tracing::info!(port = %self.port, up, "link changed");
        self.shared.kick.notify_one();
        Ok(())
    }
}
