//! netsrv's side of the TCP/IP engine (`capnet_tcpip`): the engine's
//! interfaces are netsrv's links (a port, or a bond of ports), its frames
//! come from and go to their rings, and its sockets are the ones clients
//! hold, by private ids.
//!
//! Everything here is synchronous and runs on netsrv's single thread.
//! Socket operations either complete or answer `Ok(None)` ("not yet"); the
//! capnp layer waits for the next stack poll and asks again. Clients never
//! see an engine id: they hold capabilities that map to private ids.
//!
//! - `tcp`: connections and listeners, and the socket rings' pump.
//! - `udp`: datagram sockets.
//! - `bindings`: netsrv's part of NIC offload (the offload table's view of
//!   a connection's sequence numbers and receive queue).

mod bindings;
mod pump;
mod ready;
mod sendring;
mod tcp;
mod udp;

use crate::device::{DeviceCounters, OffloadHook, RingDevice};
use crate::link::{FlowKey, Leg, Link, Mode, PortMeta};
use crate::offload::OffloadTable;
use capnet_schema::errors::SocketError;
use capnet_tcpip::{Cidr, Device, IfaceId, Instant, RxMeta};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

pub use tcp::TcpOptions;

/// A socket's private name inside netsrv.
pub type SockId = u64;

const EPHEMERAL: std::ops::RangeInclusive<u16> = 49152..=65535;
const MAX_ROUTES: usize = 16;
/// Frames taken from one link per poll, so one busy port cannot starve
/// the others (or the sockets).
const RX_BATCH: usize = 256;
/// How often offload entries of connections no socket holds are forgotten.
const OFFLOAD_SWEEP: Duration = Duration::from_secs(1);

/// One engine interface over a link of one port or a bond of several.
pub struct Iface {
    pub link: Link,
    pub id: IfaceId,
    pub addrs: Vec<Cidr>,
}

/// A route to a prefix through a gateway (`default` is a /0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteEntry {
    pub to: Cidr,
    pub via: IpAddr,
}

/// Why the egress of flows may have changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Legs,
    Attach,
    Detach,
    Route,
    Bond,
}

/// Which port carries a flow now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Egress {
    /// The interface the route chose; `None` if unreachable.
    pub iface: Option<String>,
    /// The port (leg) carrying it; `None` if no leg is usable.
    pub port: Option<String>,
    pub epoch: u32,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct StackCounters {
    pub sessions: u64,
    pub sessions_killed: u64,
    pub sessions_refused: u64,
    pub bad_ring_indices: u64,
    pub tcp_connects: u64,
    pub tcp_accepts: u64,
    pub tcp_resets: u64,
    /// Closes with received bytes unread, made resets (Linux's
    /// TCPAbortOnClose).
    pub tcp_closed_unread: u64,
    pub ring_sets_made: u64,
    pub ring_sets_reused: u64,
    /// Of those, sets the client still had mapped: no descriptors sent.
    pub ring_sets_still_mapped: u64,
    pub ring_arena_slots: u64,
    pub udp_sent: u64,
    pub udp_received: u64,
    /// Live egress subscriptions, and change notifications sent.
    pub egress_watchers: u64,
    pub egress_events: u64,
    /// Driver instances refused: no answer in time, or a port that cannot
    /// work (see `driver::check_port`).
    pub drivers_refused: u64,
}

/// What a socket looks like to `status`.
#[derive(Clone, Debug)]
pub struct SocketSummary {
    pub kind: &'static str,
    pub local: String,
    pub remote: String,
    pub state: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub ring_mode: bool,
}

/// The engine's way out: a frame goes to the link of its interface.
struct Links<'a> {
    ifaces: &'a mut [Iface],
}

impl Device for Links<'_> {
    fn transmit(&mut self, id: IfaceId, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
        let Some(iface) = self.ifaces.iter_mut().find(|i| i.id == id) else {
            return false;
        };
        match iface.link.transmit() {
            Some(token) => {
                token.consume(len, |b| fill(b));
                true
            }
            None => {
                if !iface.link.has_live_leg() {
                    iface.link.counters.tx_no_leg += 1;
                }
                false
            }
        }
    }
}

pub struct Stack {
    pub ifaces: Vec<Iface>,
    /// Ports with neither addresses nor a bond, ready to become legs.
    pub free: Vec<Leg>,
    pub routes: Vec<RouteEntry>,
    /// Bumped whenever an egress may have changed; `last_change` says why.
    pub topology: u64,
    pub last_change: Change,
    next_instance: u64,
    engine: capnet_tcpip::Stack,
    tcp: HashMap<SockId, tcp::TcpConn>,
    /// The TCP sockets the next pump looks at.
    ready: ready::ReadySockets,
    listeners: HashMap<SockId, tcp::Listener>,
    udp: HashMap<SockId, udp::UdpSock>,
    next_id: SockId,
    next_ephemeral: u16,
    pub counters: StackCounters,
    pub default_buffer: usize,
    /// How far autotuning may grow a TCP socket's queues (each way), when
    /// its client's account pays for it; at or below `default_buffer`:
    /// never.
    pub buffer_max: usize,
    /// Congestion control of new TCP sockets.
    pub congestion: capnet_tcpip::tcp::cc::Algorithm,
    epoch: std::time::Instant,
    /// Connections bound to NIC offload contexts; every link and port
    /// device consults it.
    pub offload: Rc<RefCell<OffloadTable>>,
    panic_trigger: Option<crate::test_hooks::PanicTrigger>,
    next_offload_sweep: std::time::Instant,
    /// A received frame, copied out of its link.
    rx_frame: Vec<u8>,
    /// Rings of sockets their client released, once the stack let the
    /// socket go: the service gives them back to that client's pool.
    pub retired_rings: HashMap<SockId, capnet_ring::ServerEnd>,
}

fn random_secret() -> [u8; 32] {
    let mut s = [0u8; 32];
    capnet_ring::platform::random_bytes(&mut s);
    s
}

impl Stack {
    pub fn new(default_buffer: usize) -> Stack {
        let secret = random_secret();
        let span = u64::from(EPHEMERAL.end() - EPHEMERAL.start());
        let seed = u64::from_le_bytes(secret[24..].try_into().expect("8 bytes"));
        let config = capnet_tcpip::Config {
            secret,
            ..Default::default()
        };
        Stack {
            ifaces: Vec::new(),
            free: Vec::new(),
            routes: Vec::new(),
            topology: 0,
            last_change: Change::Attach,
            next_instance: 0,
            engine: capnet_tcpip::Stack::new(Instant::ZERO, config),
            tcp: HashMap::new(),
            ready: Default::default(),
            listeners: HashMap::new(),
            udp: HashMap::new(),
            next_id: 1,
            next_ephemeral: EPHEMERAL.start() + (seed % span) as u16,
            counters: StackCounters::default(),
            default_buffer,
            buffer_max: 0,
            congestion: Default::default(),
            epoch: std::time::Instant::now(),
            offload: Rc::default(),
            panic_trigger: crate::test_hooks::PanicTrigger::from_env(),
            next_offload_sweep: std::time::Instant::now(),
            rx_frame: Vec::new(),
            retired_rings: HashMap::new(),
        }
    }

    /// The engine's clock: microseconds since this stack started.
    pub fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as u64)
    }

    /// Adds an interface over `link` with its addresses.
    pub fn add_iface(&mut self, mut link: Link, addresses: &[Cidr]) -> Result<usize, String> {
        if self.iface_named(&link.name).is_some() {
            return Err(format!("invalid: interface {} exists", link.name));
        }
        if addresses.len() > 4 {
            return Err(format!("invalid: {}: too many addresses", link.name));
        }
        link.offload = self.offload.clone();
        let id = self.engine.add_iface(link.mac(), link.mtu());
        for a in addresses {
            self.engine
                .add_address(id, *a)
                .map_err(|e| format!("invalid: {}: {e}", link.name))?;
        }
        self.ifaces.push(Iface {
            link,
            id,
            addrs: addresses.to_vec(),
        });
        self.changed(Change::Bond);
        Ok(self.ifaces.len() - 1)
    }

    /// Builds interfaces from the command line once every port attached:
    /// bonds first, then a single-port interface for each port with
    /// addresses, then routes. Ports left over stay free.
    pub fn configure(
        &mut self,
        bonds: &[crate::args::BondArg],
        addresses: &[(String, Cidr)],
        routes: &[(Cidr, IpAddr)],
    ) -> Result<(), String> {
        let addrs_of = |name: &str| -> Vec<Cidr> {
            addresses
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, a)| *a)
                .collect()
        };
        for b in bonds {
            self.add_bond(
                &b.name,
                b.mode,
                &b.legs,
                b.primary.as_deref(),
                &addrs_of(&b.name),
            )?;
        }
        let mut singles: Vec<&str> = Vec::new();
        for (name, _) in addresses {
            if !singles.contains(&name.as_str()) && self.free.iter().any(|l| &l.meta.name == name) {
                singles.push(name);
            }
        }
        for name in singles {
            let leg = self
                .take_free(name)
                .ok_or_else(|| format!("no port {name}"))?;
            let link = Link::new(name.to_string(), Mode::Single, vec![leg], None);
            self.add_iface(link, &addrs_of(name))?;
        }
        for (to, via) in routes {
            self.route_add(*to, *via)?;
        }
        Ok(())
    }

    /// Makes a bond of free ports.
    pub fn add_bond(
        &mut self,
        name: &str,
        mode: Mode,
        legs: &[String],
        primary: Option<&str>,
        addresses: &[Cidr],
    ) -> Result<usize, String> {
        if legs.is_empty() || legs.len() > crate::link::MAX_LEGS {
            return Err(format!(
                "invalid: bond {name} needs 1 to {} legs",
                crate::link::MAX_LEGS
            ));
        }
        if self.iface_named(name).is_some() || self.free.iter().any(|l| l.meta.name == name) {
            return Err(format!("invalid: the name {name} is taken"));
        }
        for (i, leg) in legs.iter().enumerate() {
            if legs[..i].contains(leg) {
                return Err(format!("invalid: port {leg} is named twice"));
            }
            if !self.free.iter().any(|l| &l.meta.name == leg) {
                return Err(match self.port_location(leg) {
                    Some(_) => format!(
                        "invalid: port {leg} already serves an interface (it has addresses or is a leg)"
                    ),
                    None => format!("invalid: no port named {leg}"),
                });
            }
        }
        let primary = match primary {
            Some(p) => Some(
                legs.iter()
                    .position(|l| l == p)
                    .ok_or_else(|| format!("invalid: primary {p} is not a leg of {name}"))?,
            ),
            None => None,
        };
        // Every leg was checked free above.
        let taken: Vec<Leg> = legs.iter().filter_map(|l| self.take_free(l)).collect();
        let link = Link::new(name.to_string(), mode, taken, primary);
        tracing::info!(bond = name, mode = mode.name(), ?legs, "bond created");
        self.add_iface(link, addresses)
    }

    pub fn bond_set_mode(&mut self, name: &str, mode: Mode) -> Result<(), String> {
        let link = self.bond_mut(name)?;
        link.set_mode(mode);
        self.changed(Change::Bond);
        Ok(())
    }

    pub fn bond_set_primary(&mut self, name: &str, primary: Option<&str>) -> Result<(), String> {
        let link = self.bond_mut(name)?;
        let primary = match primary {
            Some(p) => Some(
                link.leg_named(p)
                    .ok_or_else(|| format!("invalid: {p} is not a leg of {name}"))?,
            ),
            None => None,
        };
        link.set_primary(primary);
        self.changed(Change::Bond);
        Ok(())
    }

    fn bond_mut(&mut self, name: &str) -> Result<&mut Link, String> {
        match self.iface_named(name) {
            Some(i) if self.ifaces[i].link.is_bond() => Ok(&mut self.ifaces[i].link),
            Some(_) => Err(format!("invalid: {name} is a port, not a bond")),
            None => Err(format!("invalid: no bond named {name}")),
        }
    }

    pub fn iface_named(&self, name: &str) -> Option<usize> {
        self.ifaces.iter().position(|i| i.link.name == name)
    }

    /// Where a port lives: `Some(Some((iface, leg)))` under an interface,
    /// `Some(None)` free.
    fn port_location(&self, name: &str) -> Option<Option<(usize, usize)>> {
        for (i, iface) in self.ifaces.iter().enumerate() {
            if let Some(l) = iface.link.leg_named(name) {
                return Some(Some((i, l)));
            }
        }
        self.free
            .iter()
            .any(|l| l.meta.name == name)
            .then_some(None)
    }

    pub fn leg_mut(&mut self, name: &str) -> Option<&mut Leg> {
        match self.port_location(name)? {
            Some((i, l)) => Some(&mut self.ifaces[i].link.legs[l]),
            None => self.free.iter_mut().find(|l| l.meta.name == name),
        }
    }

    /// Whether a driver broke its ring contract since the last call (the
    /// device found out while the stack polled it).
    pub fn take_new_faults(&mut self) -> bool {
        let legs = self.ifaces.iter_mut().flat_map(|i| i.link.legs.iter_mut());
        let mut any = false;
        for leg in legs.chain(self.free.iter_mut()) {
            any |= leg.device.as_mut().is_some_and(|d| d.take_new_fault());
        }
        any
    }

    /// Every port with the interface it serves ("" when free).
    pub fn ports(&self) -> Vec<(&Leg, &str)> {
        let mut out = Vec::new();
        for iface in &self.ifaces {
            for leg in &iface.link.legs {
                out.push((leg, iface.link.name.as_str()));
            }
        }
        out.extend(self.free.iter().map(|l| (l, "")));
        out
    }

    /// How far autotuning may grow a TCP socket's queues: `buffer_max`, but
    /// no more than half of what the smallest attached port's receive ring
    /// holds. A window past that lets one flow's bursts overflow the ring,
    /// and every overflow is a loss the sender must recover from (found by
    /// the echo test: 2 MiB windows overran the sim ports' 512-buffer rings
    /// thousands of times and stalled on retransmission timeouts).
    pub fn autotune_ceiling(&self) -> usize {
        self.ports()
            .iter()
            .filter_map(|(leg, _)| leg.device.as_ref())
            .map(|d| d.rx_ring_payload() / 2)
            .min()
            .unwrap_or(self.buffer_max)
            .min(self.buffer_max)
    }

    /// A port the command line named: free until `add_iface`/`add_bond`
    /// takes it.
    pub fn add_free_port(&mut self, meta: PortMeta) {
        self.free.push(Leg::new(meta));
    }

    /// Takes a free port out for a single-port interface.
    pub fn take_free(&mut self, name: &str) -> Option<Leg> {
        let i = self.free.iter().position(|l| l.meta.name == name)?;
        Some(self.free.remove(i))
    }

    /// A new driver instance for port `name`; returns its instance number.
    pub fn attach(&mut self, name: &str, meta: PortMeta, device: RingDevice) -> Option<u64> {
        self.next_instance += 1;
        let instance = self.next_instance;
        let table = self.offload.clone();
        let leg = self.leg_mut(name)?;
        leg.attach(meta, device, instance);
        let epoch = leg.epoch;
        if let Some(d) = leg.device.as_mut() {
            d.set_offload(OffloadHook {
                table,
                port: Rc::from(name),
                epoch,
            });
        }
        self.changed(Change::Attach);
        Some(instance)
    }

    /// The driver instance `instance` of port `name` is gone: release its
    /// rings (once; a later instance is left alone).
    pub fn detach(&mut self, name: &str, instance: u64) -> bool {
        let released = self.leg_mut(name).is_some_and(|l| l.detach(instance));
        if released {
            self.changed(Change::Detach);
        }
        released
    }

    fn changed(&mut self, why: Change) {
        self.topology += 1;
        self.last_change = why;
        self.offload.borrow_mut().topology_changed();
    }

    // ---- routes ----

    pub fn route_add(&mut self, to: Cidr, via: IpAddr) -> Result<(), String> {
        let entry = RouteEntry { to, via };
        if self.routes.contains(&entry) {
            return Err(format!("invalid: route {} exists", route_text(&entry)));
        }
        if to.addr.is_ipv4() != via.is_ipv4() {
            return Err(format!(
                "invalid: {to} and gateway {via} are of different IP versions"
            ));
        }
        if self.connected(via).is_none() {
            return Err(format!(
                "unreachable: gateway {via} is on no interface's subnet"
            ));
        }
        if self.routes.len() >= MAX_ROUTES {
            return Err(format!("invalid: route table full ({MAX_ROUTES} routes)"));
        }
        self.engine
            .add_route(network(to), via)
            .map_err(|e| format!("invalid: {e}"))?;
        self.routes.push(entry);
        self.changed(Change::Route);
        Ok(())
    }

    pub fn route_remove(&mut self, to: Cidr, via: IpAddr) -> Result<(), String> {
        let entry = RouteEntry { to, via };
        let i = self
            .routes
            .iter()
            .position(|r| *r == entry)
            .ok_or_else(|| format!("invalid: no route {}", route_text(&entry)))?;
        self.routes.remove(i);
        let _ = self.engine.ip.routes.remove(network(to), Some(via));
        self.changed(Change::Route);
        Ok(())
    }

    pub fn route_texts(&self) -> Vec<String> {
        self.routes.iter().map(route_text).collect()
    }

    /// The interface whose subnet holds `ip`, with the prefix length.
    fn connected(&self, ip: IpAddr) -> Option<(usize, u8)> {
        let mut best: Option<(usize, u8)> = None;
        for (i, iface) in self.ifaces.iter().enumerate() {
            for c in &iface.addrs {
                if c.contains(ip) && best.is_none_or(|(_, len)| c.prefix > len) {
                    best = Some((i, c.prefix));
                }
            }
        }
        best
    }

    fn next_id(&mut self) -> SockId {
        self.next_id += 1;
        self.next_id
    }

    /// The interface a packet to `dst` leaves from: the longest prefix
    /// among connected subnets and routes (a connected subnet wins a tie).
    pub fn route(&self, dst: IpAddr) -> Option<usize> {
        let mut best = self.connected(dst);
        for r in &self.routes {
            if !r.to.contains(dst) || best.is_some_and(|(_, len)| r.to.prefix <= len) {
                continue;
            }
            if let Some((i, _)) = self.connected(r.via) {
                best = Some((i, r.to.prefix));
            }
        }
        best.map(|(i, _)| i)
    }

    // ---- egress ----

    /// The egress of a flow from `local` (unspecified: the route's source
    /// address) to `remote`.
    pub fn egress_of_flow(&self, local: Option<SocketAddr>, remote: SocketAddr) -> Egress {
        let Some(i) = self.route(remote.ip()) else {
            return Egress::default();
        };
        let src = match local {
            Some(l) if !l.ip().is_unspecified() => l.ip(),
            _ => self.source_address(i, remote.ip()).unwrap_or(remote.ip()),
        };
        let key = FlowKey {
            src,
            dst: remote.ip(),
            src_port: local.map(|l| l.port()).unwrap_or(0),
            dst_port: remote.port(),
        };
        self.egress_on(i, Some(&key))
    }

    fn egress_on(&self, i: usize, key: Option<&FlowKey>) -> Egress {
        let link = &self.ifaces[i].link;
        let leg = link.select(key).map(|l| &link.legs[l]);
        Egress {
            iface: Some(link.name.clone()),
            port: leg.map(|l| l.meta.name.clone()),
            epoch: leg.map(|l| l.epoch).unwrap_or(0),
        }
    }

    fn iface_owning(&self, ip: IpAddr) -> Option<usize> {
        self.ifaces
            .iter()
            .position(|p| p.addrs.iter().any(|c| c.addr == ip))
    }

    fn source_address(&self, iface: usize, dst: IpAddr) -> Option<IpAddr> {
        let v4 = dst.is_ipv4();
        self.ifaces[iface]
            .addrs
            .iter()
            .map(|c| c.addr)
            .find(|a| a.is_ipv4() == v4 && !capnet_tcpip::ip::iface::is_link_local(*a))
    }

    /// A free port for a listener or a UDP socket bound to port 0.
    fn ephemeral_port(&mut self) -> Result<u16, SocketError> {
        let span = EPHEMERAL.end() - EPHEMERAL.start() + 1;
        for _ in 0..span {
            let p = self.next_ephemeral;
            self.next_ephemeral = if p == *EPHEMERAL.end() {
                *EPHEMERAL.start()
            } else {
                p + 1
            };
            if !self.port_in_use(p) {
                return Ok(p);
            }
        }
        Err(SocketError::AddrNotAvailable)
    }

    fn port_in_use(&self, port: u16) -> bool {
        self.listeners.values().any(|l| l.local.port() == port)
            || self.udp.values().any(|u| u.local.port() == port)
            || self
                .tcp
                .values()
                .any(|c| c.tuple.is_some_and(|t| t.local.port() == port))
    }

    // ---- the poll loop ----

    /// Runs every link and socket once; true if anything moved.
    pub fn poll(&mut self) -> bool {
        if let Some(t) = &mut self.panic_trigger {
            t.check();
        }
        let now = self.now();
        let mut activity = false;
        let mut legs_changed = false;
        for i in 0..self.ifaces.len() {
            let iface = &mut self.ifaces[i];
            legs_changed |= iface.link.refresh();
            if let Some(f) = self.engine.ip.iface_mut(iface.id) {
                f.mtu = iface.link.mtu();
            }
            iface.link.resend_salvaged();
            if iface.link.announce_pending() {
                let addrs = iface.addrs.clone();
                iface.link.announce(&addrs);
            }
            let id = iface.id;
            for _ in 0..RX_BATCH {
                let Some(mark) = self.ifaces[i].link.receive(&mut self.rx_frame) else {
                    break;
                };
                activity = true;
                let meta = RxMeta {
                    checksum_ok: true,
                    mark,
                };
                let mut links = Links {
                    ifaces: &mut self.ifaces,
                };
                self.engine
                    .receive(now, id, &self.rx_frame, meta, &mut links);
            }
        }
        let mut links = Links {
            ifaces: &mut self.ifaces,
        };
        self.engine.poll(now, &mut links);
        if legs_changed {
            self.changed(Change::Legs);
        }
        activity |= self.take_events();
        activity |= self.send_held();
        activity |= self.pump_connections();
        // What the pump queued leaves now rather than at the next poll.
        let mut links = Links {
            ifaces: &mut self.ifaces,
        };
        self.engine.poll(now, &mut links);
        self.take_events();
        for iface in &mut self.ifaces {
            iface.link.flush();
            activity |= iface.link.take_activity();
        }
        self.sweep_offload();
        activity
    }

    /// Files the engine's events: its connections' sockets are looked at
    /// in the next pump. The service's calls (accepts, datagrams) ask again
    /// after a poll with activity; the events only say that there was some.
    fn take_events(&mut self) -> bool {
        let mut any = false;
        while let Some(e) = self.engine.next_event() {
            any = true;
            if let capnet_tcpip::stack::Event::Tcp(id) = e {
                self.ready.wake_engine(id);
            }
        }
        any
    }

    /// The client rang the socket's doorbell: its pump looks at it.
    pub fn tcp_rang(&mut self, id: SockId) {
        if self.tcp.contains_key(&id) {
            self.ready.wake(id);
        }
    }

    /// Asks every ring for a doorbell before sleeping; true if work arrived
    /// meanwhile (then do not sleep).
    pub fn arm(&mut self) -> bool {
        let mut pending = false;
        for iface in &mut self.ifaces {
            pending |= iface.link.arm();
        }
        pending | self.arm_connections()
    }

    /// How long the stack may sleep before a timer is due.
    pub fn poll_delay(&mut self) -> Option<Duration> {
        let now = self.now();
        let at = self.engine.next_deadline()?;
        let d = at.since(now);
        // An interface with no leg up holds frames that cannot leave; a leg
        // coming back wakes the loop (doorbell, link event, attach), so
        // only check now and then instead of spinning on them.
        const LINK_DOWN_RECHECK: Duration = Duration::from_millis(100);
        if self.ifaces.iter().any(|i| !i.link.has_live_leg()) && d.is_zero() {
            return Some(LINK_DOWN_RECHECK);
        }
        Some(d)
    }

    /// Driver instances attached and released, and ring regions mapped now.
    pub fn driver_counters(&self) -> (u64, u64, u64) {
        let ports = self.ports();
        (
            ports.iter().map(|p| p.0.attaches).sum(),
            ports.iter().map(|p| p.0.detaches).sum(),
            ports.iter().filter(|p| p.0.device.is_some()).count() as u64,
        )
    }

    /// The stack side's frame counters, summed over all ports.
    pub fn device_counters(&self) -> DeviceCounters {
        let mut sum = DeviceCounters::default();
        for p in self.ports() {
            sum.add(&p.0.counters());
        }
        sum
    }

    pub fn sockets(&self) -> Vec<SocketSummary> {
        let mut out = self.tcp_summaries();
        out.extend(self.udp_summaries());
        out
    }

    /// The engine's counters (for `status`).
    pub fn engine(&self) -> &capnet_tcpip::Stack {
        &self.engine
    }
}

fn route_text(r: &RouteEntry) -> String {
    if r.to.prefix == 0 {
        format!("default via {}", r.via)
    } else {
        format!("{} via {}", r.to, r.via)
    }
}

/// A prefix with its host bits cleared, as the engine's routing table
/// keeps it.
fn network(c: Cidr) -> Cidr {
    let addr = match c.addr {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(c.prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = u128::MAX
                .checked_shl(128 - u32::from(c.prefix))
                .unwrap_or(0);
            IpAddr::V6((u128::from(a) & m).into())
        }
    };
    Cidr {
        addr,
        prefix: c.prefix,
    }
}
