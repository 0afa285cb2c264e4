//! The TCP/IP stack: smoltcp interfaces over NIC rings, and the sockets that
//! clients hold.
//!
//! Everything here is synchronous and runs on netsrv's single thread. Socket
//! operations either complete or answer `Ok(None)` ("not yet"); the capnp
//! layer waits for the next stack poll and asks again. Clients never see a
//! `SocketHandle`: they hold capabilities that map to private ids.
//!
//! One file past the size of the others on purpose: this smoltcp glue is
//! what capnet's own TCP/IP engine replaces whole, so it is changed only as
//! far as the offload contract needs rather than split now.

use crate::addr::{endpoint_to_std, from_smol, to_smol};
use crate::device::{DeviceCounters, OffloadHook, RingDevice};
use crate::link::{FlowKey, Leg, Link, Mode, PortMeta};
use crate::offload::{self, Flow, OffloadTable, TxBinding};
use capnet_ring::{RingError, ServerEnd};
use capnet_schema::errors::SocketError;
use capnet_schema::offload_capnp::OffloadKind;
use capnet_wire::chunk::{self, ChunkHeader};
use smoltcp::iface::{
    Config, Interface, PollIngressSingleResult, PollResult, Route, SocketHandle, SocketSet,
};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::{Duration as SmolDuration, Instant};
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpEndpoint, IpListenEndpoint};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

/// A socket's private name inside netsrv.
pub type SockId = u64;

const EPHEMERAL: std::ops::RangeInclusive<u16> = 49152..=65535;
const MAX_BACKLOG: usize = 256;
const UDP_PACKETS: usize = 64;
const UDP_BUFFER: usize = 256 * 1024;
/// How often offload entries of connections no socket holds are forgotten.
const OFFLOAD_SWEEP: Duration = Duration::from_secs(1);

/// What smoltcp sees as one interface: addresses and sockets over a link
/// of one port or a bond of several.
pub struct Iface {
    pub link: Link,
    pub iface: Interface,
    pub sockets: SocketSet<'static>,
}

/// A route to a prefix through a gateway (`default` is a /0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteEntry {
    pub to: IpCidr,
    pub via: IpAddress,
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

/// Options a client sets on a TCP socket.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpOptions {
    pub no_delay: bool,
    pub send_buffer: usize,
    pub recv_buffer: usize,
    pub keep_alive: Option<Duration>,
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
    pub udp_sent: u64,
    pub udp_received: u64,
    /// Live egress subscriptions, and change notifications sent.
    pub egress_watchers: u64,
    pub egress_events: u64,
    /// Driver instances refused: no answer in time, or a port that cannot
    /// work (see `driver::check_port`).
    pub drivers_refused: u64,
}

struct TcpConn {
    iface: usize,
    handle: SocketHandle,
    rings: Option<ServerEnd>,
    established: bool,
    saw_fin: bool,
    /// The application closed or dropped its capability.
    released: bool,
    /// We sent FIN on the application's behalf.
    fin_queued: bool,
    /// EOF or error already passed to the down ring.
    end_delivered: bool,
    rx_bytes: u64,
    tx_bytes: u64,
    /// Bytes written to the receive ring (with chunk headers once chunked).
    ring_written: u64,
    /// The connection as (local, remote), once known: its offload key.
    tuple: Option<Flow>,
}

struct Listener {
    endpoint: IpListenEndpoint,
    backlog: usize,
    options: TcpOptions,
    /// Listening (or half-open) sockets, `backlog` per port.
    slots: Vec<(usize, SocketHandle)>,
    ready: VecDeque<(usize, SocketHandle)>,
}

struct UdpSock {
    port_num: u16,
    local: IpListenEndpoint,
    sockets: Vec<(usize, SocketHandle)>,
}

/// What a TCP socket looks like to `status`.
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

pub struct Stack {
    pub ifaces: Vec<Iface>,
    /// Ports with neither addresses nor a bond, ready to become legs.
    pub free: Vec<Leg>,
    pub routes: Vec<RouteEntry>,
    /// Bumped whenever an egress may have changed; `last_change` says why.
    pub topology: u64,
    pub last_change: Change,
    next_instance: u64,
    tcp: HashMap<SockId, TcpConn>,
    listeners: HashMap<SockId, Listener>,
    udp: HashMap<SockId, UdpSock>,
    next_id: SockId,
    next_ephemeral: u16,
    pub counters: StackCounters,
    pub default_buffer: usize,
    /// Reno congestion control on new TCP sockets (else none, the default).
    pub reno: bool,
    epoch: std::time::Instant,
    /// Connections bound to NIC offload contexts; every link and port
    /// device consults it.
    pub offload: Rc<RefCell<OffloadTable>>,
    panic_trigger: Option<crate::test_hooks::PanicTrigger>,
    next_offload_sweep: std::time::Instant,
}

fn smol_now(epoch: std::time::Instant) -> Instant {
    Instant::from_micros(epoch.elapsed().as_micros() as i64)
}

impl Stack {
    pub fn new(default_buffer: usize) -> Stack {
        let seed = {
            let mut b = [0u8; 8];
            capnet_ring::platform::random_bytes(&mut b);
            u64::from_le_bytes(b)
        };
        let span = (EPHEMERAL.end() - EPHEMERAL.start()) as u64;
        Stack {
            ifaces: Vec::new(),
            free: Vec::new(),
            routes: Vec::new(),
            topology: 0,
            last_change: Change::Attach,
            next_instance: 0,
            tcp: HashMap::new(),
            listeners: HashMap::new(),
            udp: HashMap::new(),
            next_id: 1,
            next_ephemeral: EPHEMERAL.start() + (seed % span) as u16,
            counters: StackCounters::default(),
            default_buffer,
            reno: false,
            epoch: std::time::Instant::now(),
            offload: Rc::default(),
            panic_trigger: crate::test_hooks::PanicTrigger::from_env(),
            next_offload_sweep: std::time::Instant::now(),
        }
    }

    pub fn now(&self) -> Instant {
        smol_now(self.epoch)
    }

    /// Adds an interface over `link` with its addresses.
    pub fn add_iface(&mut self, mut link: Link, addresses: &[IpCidr]) -> Result<usize, String> {
        if self.iface_named(&link.name).is_some() {
            return Err(format!("invalid: interface {} exists", link.name));
        }
        let mut seed = [0u8; 8];
        capnet_ring::platform::random_bytes(&mut seed);
        let mut config = Config::new(EthernetAddress(link.mac()).into());
        config.random_seed = u64::from_le_bytes(seed);
        link.offload = self.offload.clone();
        let mut iface = Interface::new(config, &mut link, self.now());
        let mut result = Ok(());
        iface.update_ip_addrs(|addrs| {
            for a in addresses {
                if addrs.push(*a).is_err() {
                    result = Err(format!("invalid: {}: too many addresses", link.name));
                }
            }
        });
        result?;
        self.ifaces.push(Iface {
            link,
            iface,
            sockets: SocketSet::new(Vec::new()),
        });
        self.sync_routes();
        self.changed(Change::Bond);
        Ok(self.ifaces.len() - 1)
    }

    /// Builds interfaces from the command line once every port attached:
    /// bonds first, then a single-port interface for each port with
    /// addresses, then routes. Ports left over stay free.
    pub fn configure(
        &mut self,
        bonds: &[crate::args::BondArg],
        addresses: &[(String, IpCidr)],
        routes: &[(IpCidr, IpAddress)],
    ) -> Result<(), String> {
        let addrs_of = |name: &str| -> Vec<IpCidr> {
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
        addresses: &[IpCidr],
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

    pub fn route_add(&mut self, to: IpCidr, via: IpAddress) -> Result<(), String> {
        let entry = RouteEntry { to, via };
        if self.routes.contains(&entry) {
            return Err(format!("invalid: route {} exists", route_text(&entry)));
        }
        if matches!(to.address(), IpAddress::Ipv4(_)) != matches!(via, IpAddress::Ipv4(_)) {
            return Err(format!(
                "invalid: {to} and gateway {via} are of different IP versions"
            ));
        }
        if self.connected(via).is_none() {
            return Err(format!(
                "unreachable: gateway {via} is on no interface's subnet"
            ));
        }
        if self.routes.len() >= 16 {
            return Err("invalid: route table full (16 routes)".into());
        }
        self.routes.push(entry);
        self.sync_routes();
        self.changed(Change::Route);
        Ok(())
    }

    pub fn route_remove(&mut self, to: IpCidr, via: IpAddress) -> Result<(), String> {
        let entry = RouteEntry { to, via };
        let i = self
            .routes
            .iter()
            .position(|r| *r == entry)
            .ok_or_else(|| format!("invalid: no route {}", route_text(&entry)))?;
        self.routes.remove(i);
        self.sync_routes();
        self.changed(Change::Route);
        Ok(())
    }

    pub fn route_texts(&self) -> Vec<String> {
        self.routes.iter().map(route_text).collect()
    }

    /// Gives each smoltcp interface the routes whose gateway it reaches.
    fn sync_routes(&mut self) {
        let routes = self.routes.clone();
        for iface in &mut self.ifaces {
            let mine: Vec<RouteEntry> = routes
                .iter()
                .filter(|r| {
                    iface
                        .iface
                        .ip_addrs()
                        .iter()
                        .any(|c| c.contains_addr(&r.via))
                })
                .copied()
                .collect();
            iface.iface.routes_mut().update(|table| {
                table.clear();
                for r in mine {
                    let _ = table.push(Route {
                        cidr: r.to,
                        via_router: r.via,
                        preferred_until: None,
                        expires_at: None,
                    });
                }
            });
        }
    }

    /// The interface whose subnet holds `ip`, with the prefix length.
    fn connected(&self, ip: IpAddress) -> Option<(usize, u8)> {
        let mut best: Option<(usize, u8)> = None;
        for (i, iface) in self.ifaces.iter().enumerate() {
            for c in iface.iface.ip_addrs() {
                if c.contains_addr(&ip) && best.is_none_or(|(_, len)| c.prefix_len() > len) {
                    best = Some((i, c.prefix_len()));
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
        let dst = to_smol(dst);
        let mut best = self.connected(dst);
        for r in &self.routes {
            if !r.to.contains_addr(&dst) || best.is_some_and(|(_, len)| r.to.prefix_len() <= len) {
                continue;
            }
            if let Some((i, _)) = self.connected(r.via) {
                best = Some((i, r.to.prefix_len()));
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
            _ => self
                .source_address(i, remote.ip())
                .map(from_smol)
                .unwrap_or(remote.ip()),
        };
        let key = FlowKey {
            src,
            dst: remote.ip(),
            src_port: local.map(|l| l.port()).unwrap_or(0),
            dst_port: remote.port(),
        };
        self.egress_on(i, Some(&key))
    }

    /// The egress of a TCP connection: its interface, and the leg of its
    /// flow there.
    pub fn egress_of_socket(&self, id: SockId) -> Result<Egress, SocketError> {
        let conn = self.tcp.get(&id).ok_or(SocketError::Closed)?;
        let iface = &self.ifaces[conn.iface];
        let s = iface.sockets.get::<tcp::Socket>(conn.handle);
        let key = match (s.local_endpoint(), s.remote_endpoint()) {
            (Some(l), Some(r)) => Some(FlowKey {
                src: from_smol(l.addr),
                dst: from_smol(r.addr),
                src_port: l.port,
                dst_port: r.port,
            }),
            _ => None,
        };
        Ok(self.egress_on(conn.iface, key.as_ref()))
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
        let ip = to_smol(ip);
        self.ifaces
            .iter()
            .position(|p| p.iface.ip_addrs().iter().any(|c| c.address() == ip))
    }

    fn source_address(&self, port: usize, dst: IpAddr) -> Option<IpAddress> {
        let v4 = dst.is_ipv4();
        self.ifaces[port]
            .iface
            .ip_addrs()
            .iter()
            .map(|c| c.address())
            .find(|a| matches!(a, IpAddress::Ipv4(_)) == v4 && !is_link_local(a))
    }

    fn port_in_use(&self, port_num: u16) -> bool {
        self.listeners.values().any(|l| l.endpoint.port == port_num)
            || self.udp.values().any(|u| u.port_num == port_num)
            || self.tcp.values().any(|c| {
                self.ifaces[c.iface]
                    .sockets
                    .get::<tcp::Socket>(c.handle)
                    .local_endpoint()
                    .is_some_and(|e| e.port == port_num)
            })
    }

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

    fn new_tcp_socket(&self, options: &TcpOptions) -> tcp::Socket<'static> {
        let rx = if options.recv_buffer > 0 {
            options.recv_buffer
        } else {
            self.default_buffer
        };
        let tx = if options.send_buffer > 0 {
            options.send_buffer
        } else {
            self.default_buffer
        };
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; rx.clamp(1024, 16 << 20)]),
            tcp::SocketBuffer::new(vec![0; tx.clamp(1024, 16 << 20)]),
        );
        s.set_nagle_enabled(!options.no_delay);
        // A choice between two of smoltcp's limits (docs/benchmarks.md).
        // Without congestion control many bulk flows through one port can
        // overrun the receiver's ring, and each drop costs a retransmission
        // timeout (16 flows: 4 MiB/s). With Reno, random loss collapses a
        // flow (2% loss: a few KB/s, since without SACK a small window
        // leaves only timeouts to recover). Off by default.
        // Explicit either way: with the Reno feature built in, smoltcp
        // picks Reno by default.
        s.set_congestion_control(if self.reno {
            tcp::CongestionControl::Reno
        } else {
            tcp::CongestionControl::None
        });
        // Out-of-order segments must be answered at once: smoltcp has no
        // SACK, and only prompt duplicate ACKs trigger fast retransmit
        // instead of a one-second retransmission timeout.
        s.set_ack_delay(None);
        s.set_keep_alive(
            options
                .keep_alive
                .map(|d| SmolDuration::from_millis(d.as_millis() as u64)),
        );
        s
    }

    // ---- TCP connections ----

    /// Starts a connection; `tcp_connected` tells when it is up.
    pub fn tcp_connect(
        &mut self,
        remote: SocketAddr,
        options: &TcpOptions,
    ) -> Result<SockId, SocketError> {
        if remote.port() == 0 || remote.ip().is_unspecified() {
            return Err(SocketError::Invalid);
        }
        let port = self.route(remote.ip()).ok_or(SocketError::Unreachable)?;
        let src = self
            .source_address(port, remote.ip())
            .ok_or(SocketError::AddrNotAvailable)?;
        let local_port = self.ephemeral_port()?;
        let mut socket = self.new_tcp_socket(options);
        let p = &mut self.ifaces[port];
        socket
            .connect(
                p.iface.context(),
                IpEndpoint::new(to_smol(remote.ip()), remote.port()),
                IpEndpoint::new(src, local_port),
            )
            .map_err(|_| SocketError::Invalid)?;
        let handle = p.sockets.add(socket);
        let id = self.next_id();
        self.tcp.insert(id, TcpConn::new(port, handle, false));
        self.counters.tcp_connects += 1;
        Ok(id)
    }

    /// `Ok(true)` once established; `refused` if the peer reset the attempt.
    pub fn tcp_connected(&mut self, id: SockId) -> Result<bool, SocketError> {
        let (conn, socket) = self.conn(id)?;
        match socket.state() {
            tcp::State::SynSent | tcp::State::SynReceived => Ok(false),
            tcp::State::Closed => Err(if conn.established {
                SocketError::Reset
            } else {
                SocketError::Refused
            }),
            _ => Ok(true),
        }
    }

    fn conn(
        &mut self,
        id: SockId,
    ) -> Result<(&mut TcpConn, &mut tcp::Socket<'static>), SocketError> {
        let conn = self.tcp.get_mut(&id).ok_or(SocketError::Closed)?;
        let socket = self.ifaces[conn.iface]
            .sockets
            .get_mut::<tcp::Socket>(conn.handle);
        Ok((conn, socket))
    }

    /// Reads up to `max` bytes; `Ok(Some(empty))` is EOF.
    pub fn tcp_read(&mut self, id: SockId, max: usize) -> Result<Option<Vec<u8>>, SocketError> {
        let (conn, socket) = self.conn(id)?;
        if conn.rings.is_some() {
            return Err(SocketError::Invalid);
        }
        if socket.can_recv() {
            let mut buf = vec![0u8; max.clamp(1, 1 << 20)];
            let n = socket.recv_slice(&mut buf).unwrap_or(0);
            buf.truncate(n);
            conn.rx_bytes += n as u64;
            return Ok(Some(buf));
        }
        if socket.may_recv()
            || matches!(
                socket.state(),
                tcp::State::SynSent | tcp::State::SynReceived
            )
        {
            return Ok(None);
        }
        match conn.end_error(socket) {
            Some(e) => Err(e),
            None => Ok(Some(Vec::new())),
        }
    }

    /// Queues what fits of `data`; `Ok(None)` while the send buffer is full.
    pub fn tcp_write(&mut self, id: SockId, data: &[u8]) -> Result<Option<usize>, SocketError> {
        let (conn, socket) = self.conn(id)?;
        if conn.rings.is_some() {
            return Err(SocketError::Invalid);
        }
        if !socket.may_send() {
            if matches!(
                socket.state(),
                tcp::State::SynSent | tcp::State::SynReceived
            ) {
                return Ok(None);
            }
            return Err(conn.end_error(socket).unwrap_or(SocketError::Closed));
        }
        if !socket.can_send() {
            return Ok(None);
        }
        let n = socket.send_slice(data).unwrap_or(0);
        conn.tx_bytes += n as u64;
        Ok(Some(n))
    }

    /// Half-closes: `write` sends FIN once queued data is out; `read` drops
    /// what arrives from now on.
    pub fn tcp_shutdown(&mut self, id: SockId, read: bool, write: bool) -> Result<(), SocketError> {
        let (conn, socket) = self.conn(id)?;
        if write && !conn.fin_queued {
            match &mut conn.rings {
                // The application closes its ring; FIN follows the bytes in it.
                Some(r) => r.up.close(),
                None => {
                    socket.close();
                    conn.fin_queued = true;
                }
            }
        }
        if read {
            if let Some(r) = &mut conn.rings {
                r.down.close();
            }
        }
        Ok(())
    }

    pub fn tcp_set_no_delay(&mut self, id: SockId, on: bool) -> Result<(), SocketError> {
        let (_, socket) = self.conn(id)?;
        socket.set_nagle_enabled(!on);
        Ok(())
    }

    /// The application is done with the socket: send what it queued, then
    /// FIN; the socket goes away once closed.
    pub fn tcp_release(&mut self, id: SockId) {
        if let Some(conn) = self.tcp.get_mut(&id) {
            conn.released = true;
        }
    }

    /// Ends a socket at once (RST), e.g. when its connect timed out.
    pub fn tcp_abort(&mut self, id: SockId) {
        if let Some(conn) = self.tcp.remove(&id) {
            if let Some(t) = &conn.tuple {
                self.offload.borrow_mut().forget(t);
            }
            let port = &mut self.ifaces[conn.iface];
            port.sockets.get_mut::<tcp::Socket>(conn.handle).abort();
            // smoltcp sends the RST on the next poll; the handle goes then.
            self.orphan_abort(conn.iface, conn.handle);
        }
    }

    fn orphan_abort(&mut self, port: usize, handle: SocketHandle) {
        let id = self.next_id();
        let mut c = TcpConn::new(port, handle, false);
        c.released = true;
        c.fin_queued = true;
        self.tcp.insert(id, c);
    }

    pub fn tcp_info(
        &mut self,
        id: SockId,
    ) -> Result<(Option<SocketAddr>, Option<SocketAddr>, String), SocketError> {
        let (_, socket) = self.conn(id)?;
        Ok((
            socket.local_endpoint().map(endpoint_to_std),
            socket.remote_endpoint().map(endpoint_to_std),
            socket.state().to_string(),
        ))
    }

    /// Moves the socket's data onto shared byte rings.
    pub fn tcp_attach_rings(&mut self, id: SockId, rings: ServerEnd) -> Result<(), SocketError> {
        let (conn, _) = self.conn(id)?;
        if conn.rings.is_some() {
            return Err(SocketError::Busy);
        }
        conn.rings = Some(rings);
        Ok(())
    }

    // ---- TCP listeners ----

    pub fn tcp_listen(
        &mut self,
        local: SocketAddr,
        backlog: usize,
        options: TcpOptions,
    ) -> Result<SockId, SocketError> {
        let ports: Vec<usize> = if local.ip().is_unspecified() {
            (0..self.ifaces.len()).collect()
        } else {
            vec![self
                .iface_owning(local.ip())
                .ok_or(SocketError::AddrNotAvailable)?]
        };
        let port_num = if local.port() == 0 {
            self.ephemeral_port()?
        } else if self
            .listeners
            .values()
            .any(|l| l.endpoint.port == local.port())
        {
            return Err(SocketError::AddrInUse);
        } else {
            local.port()
        };
        let endpoint = IpListenEndpoint {
            addr: (!local.ip().is_unspecified()).then(|| to_smol(local.ip())),
            port: port_num,
        };
        let backlog = backlog.clamp(1, MAX_BACKLOG);
        let mut listener = Listener {
            endpoint,
            backlog,
            options,
            slots: Vec::new(),
            ready: VecDeque::new(),
        };
        for port in ports {
            for _ in 0..backlog {
                let handle = self.listening_socket(port, &listener)?;
                listener.slots.push((port, handle));
            }
        }
        let id = self.next_id();
        self.listeners.insert(id, listener);
        Ok(id)
    }

    fn listening_socket(&mut self, port: usize, l: &Listener) -> Result<SocketHandle, SocketError> {
        let mut s = self.new_tcp_socket(&l.options);
        s.listen(l.endpoint).map_err(|_| SocketError::Invalid)?;
        Ok(self.ifaces[port].sockets.add(s))
    }

    pub fn tcp_listener_addr(&self, id: SockId) -> Result<SocketAddr, SocketError> {
        let l = self.listeners.get(&id).ok_or(SocketError::Closed)?;
        let ip = l
            .endpoint
            .addr
            .map(from_smol)
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        Ok(SocketAddr::new(ip, l.endpoint.port))
    }

    /// Takes an established connection off the accept queue.
    pub fn tcp_accept(&mut self, id: SockId) -> Result<Option<(SockId, SocketAddr)>, SocketError> {
        let l = self.listeners.get_mut(&id).ok_or(SocketError::Closed)?;
        let Some((port, handle)) = l.ready.pop_front() else {
            return Ok(None);
        };
        let remote = self.ifaces[port]
            .sockets
            .get::<tcp::Socket>(handle)
            .remote_endpoint()
            .map(endpoint_to_std)
            .ok_or(SocketError::Aborted)?;
        let conn_id = self.next_id();
        self.tcp.insert(conn_id, TcpConn::new(port, handle, true));
        self.counters.tcp_accepts += 1;
        Ok(Some((conn_id, remote)))
    }

    pub fn tcp_listener_close(&mut self, id: SockId) {
        if let Some(l) = self.listeners.remove(&id) {
            for (port, handle) in l.slots.into_iter().chain(l.ready) {
                self.ifaces[port]
                    .sockets
                    .get_mut::<tcp::Socket>(handle)
                    .abort();
                self.orphan_abort(port, handle);
            }
        }
    }

    /// Moves established connections to the accept queue and refills the
    /// listening slots.
    fn maintain_listeners(&mut self) {
        let ids: Vec<SockId> = self.listeners.keys().copied().collect();
        for id in ids {
            let Some(mut l) = self.listeners.remove(&id) else {
                continue;
            };
            let mut i = 0;
            while i < l.slots.len() {
                let (port, handle) = l.slots[i];
                let state = self.ifaces[port].sockets.get::<tcp::Socket>(handle).state();
                match state {
                    tcp::State::Listen | tcp::State::SynReceived => i += 1,
                    tcp::State::Closed => {
                        // A half-open attempt that failed: listen again.
                        let s = self.ifaces[port].sockets.get_mut::<tcp::Socket>(handle);
                        if s.listen(l.endpoint).is_err() {
                            i += 1;
                        }
                    }
                    _ if l.ready.len() < l.backlog => {
                        l.ready.push_back((port, handle));
                        match self.listening_socket(port, &l) {
                            Ok(h) => l.slots[i] = (port, h),
                            Err(_) => {
                                l.slots.swap_remove(i);
                            }
                        }
                    }
                    // Accept queue full: the connection waits in its slot.
                    _ => i += 1,
                }
            }
            self.listeners.insert(id, l);
        }
    }

    // ---- UDP ----

    pub fn udp_bind(&mut self, local: SocketAddr) -> Result<SockId, SocketError> {
        let ports: Vec<usize> = if local.ip().is_unspecified() {
            (0..self.ifaces.len()).collect()
        } else {
            vec![self
                .iface_owning(local.ip())
                .ok_or(SocketError::AddrNotAvailable)?]
        };
        let port_num = if local.port() == 0 {
            self.ephemeral_port()?
        } else if self.udp.values().any(|u| u.port_num == local.port()) {
            return Err(SocketError::AddrInUse);
        } else {
            local.port()
        };
        let endpoint = IpListenEndpoint {
            addr: (!local.ip().is_unspecified()).then(|| to_smol(local.ip())),
            port: port_num,
        };
        let mut sockets = Vec::new();
        for port in ports {
            let mut s = udp::Socket::new(
                udp::PacketBuffer::new(
                    vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
                    vec![0; UDP_BUFFER],
                ),
                udp::PacketBuffer::new(
                    vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
                    vec![0; UDP_BUFFER],
                ),
            );
            s.bind(endpoint).map_err(|_| SocketError::Invalid)?;
            sockets.push((port, self.ifaces[port].sockets.add(s)));
        }
        let id = self.next_id();
        self.udp.insert(
            id,
            UdpSock {
                port_num,
                local: endpoint,
                sockets,
            },
        );
        Ok(id)
    }

    pub fn udp_local_addr(&self, id: SockId) -> Result<SocketAddr, SocketError> {
        let u = self.udp.get(&id).ok_or(SocketError::Closed)?;
        let ip = u
            .local
            .addr
            .map(from_smol)
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        Ok(SocketAddr::new(ip, u.port_num))
    }

    pub fn udp_send(
        &mut self,
        id: SockId,
        data: &[u8],
        to: SocketAddr,
    ) -> Result<Option<()>, SocketError> {
        let port = self.route(to.ip()).ok_or(SocketError::Unreachable)?;
        let u = self.udp.get(&id).ok_or(SocketError::Closed)?;
        let &(_, handle) = u
            .sockets
            .iter()
            .find(|(p, _)| *p == port)
            .ok_or(SocketError::Unreachable)?;
        let socket = self.ifaces[port].sockets.get_mut::<udp::Socket>(handle);
        match socket.send_slice(data, IpEndpoint::new(to_smol(to.ip()), to.port())) {
            Ok(()) => {
                self.counters.udp_sent += 1;
                Ok(Some(()))
            }
            Err(udp::SendError::BufferFull) if data.len() <= UDP_BUFFER => Ok(None),
            Err(udp::SendError::BufferFull) => Err(SocketError::Invalid),
            Err(udp::SendError::Unaddressable) => Err(SocketError::Unreachable),
        }
    }

    pub fn udp_recv(
        &mut self,
        id: SockId,
        max: usize,
    ) -> Result<Option<(Vec<u8>, SocketAddr)>, SocketError> {
        let u = self.udp.get(&id).ok_or(SocketError::Closed)?;
        for &(port, handle) in &u.sockets {
            let socket = self.ifaces[port].sockets.get_mut::<udp::Socket>(handle);
            if let Ok((data, meta)) = socket.recv() {
                let data = data[..data.len().min(max)].to_vec();
                self.counters.udp_received += 1;
                return Ok(Some((data, endpoint_to_std(meta.endpoint))));
            }
        }
        Ok(None)
    }

    pub fn udp_close(&mut self, id: SockId) {
        if let Some(u) = self.udp.remove(&id) {
            for (port, handle) in u.sockets {
                self.ifaces[port].sockets.remove(handle);
            }
        }
    }

    // ---- the poll loop ----

    /// Runs every interface and socket once; true if anything moved.
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
            iface.link.resend_salvaged();
            if iface.link.announce_pending() {
                let addrs: Vec<IpCidr> = iface.iface.ip_addrs().to_vec();
                iface.link.announce(&addrs);
            }
            // `Interface::poll`, one frame at a time: the receive marks of
            // an offloaded connection settle after each of its segments.
            iface.iface.poll_maintenance(now);
            loop {
                let iface = &mut self.ifaces[i];
                match iface
                    .iface
                    .poll_ingress_single(now, &mut iface.link, &mut iface.sockets)
                {
                    PollIngressSingleResult::None => break,
                    PollIngressSingleResult::PacketProcessed => {}
                    PollIngressSingleResult::SocketStateChanged => activity = true,
                }
                self.settle_rx_marks();
            }
            let iface = &mut self.ifaces[i];
            while iface
                .iface
                .poll_egress(now, &mut iface.link, &mut iface.sockets)
                == PollResult::SocketStateChanged
            {
                activity = true;
            }
            iface.link.flush();
            activity |= iface.link.take_activity();
        }
        if legs_changed {
            self.changed(Change::Legs);
        }
        activity |= self.send_held();
        activity |= self.pump_connections();
        self.maintain_listeners();
        self.sweep_offload();
        activity
    }

    /// Forgets, once a second, the offload entries of connections no socket
    /// holds any more (handshakes that never completed).
    fn sweep_offload(&mut self) {
        let now = std::time::Instant::now();
        if now < self.next_offload_sweep {
            return;
        }
        self.next_offload_sweep = now + OFFLOAD_SWEEP;
        let mut table = self.offload.borrow_mut();
        if table.is_empty() {
            return;
        }
        let mut live = std::collections::HashSet::new();
        for iface in &self.ifaces {
            for (_, socket) in iface.sockets.iter() {
                let smoltcp::socket::Socket::Tcp(s) = socket else {
                    continue;
                };
                if let (Some(l), Some(r)) = (s.local_endpoint(), s.remote_endpoint()) {
                    live.insert(Flow {
                        local: endpoint_to_std(l),
                        remote: endpoint_to_std(r),
                    });
                }
            }
        }
        table.retain(|t| live.contains(t));
    }

    /// smoltcp took a segment of an RX-offloaded connection: its marks
    /// settle against how far the socket has now enqueued.
    fn settle_rx_marks(&mut self) {
        let mut table = self.offload.borrow_mut();
        let Some(id) = table.rx_pending_socket() else {
            return;
        };
        let Some(conn) = self.tcp.get(&id) else {
            table.forget_rx_pending();
            return;
        };
        let socket = self.ifaces[conn.iface]
            .sockets
            .get_mut::<tcp::Socket>(conn.handle);
        let read = conn.rx_bytes;
        let enqueued = read + socket.recv_queue() as u64;
        table.settle_rx(enqueued, |range| {
            // Queued bytes by stream offset: the queue starts at `read`.
            let skip = usize::try_from(range.start.checked_sub(read)?).ok()?;
            let len = usize::try_from(range.end - range.start).ok()?;
            let mut bytes = vec![0; skip + len];
            (socket.peek_slice(&mut bytes).ok()? == bytes.len()).then(|| bytes.split_off(skip))
        });
    }

    /// Frames of offload-bound connections kept back while their context
    /// was on another port: judged again now that something changed.
    fn send_held(&mut self) -> bool {
        let frames = self.offload.borrow_mut().take_releasable();
        if frames.is_empty() {
            return false;
        }
        for frame in &frames {
            let Some(v) = offload::parse_tcp(frame) else {
                continue;
            };
            let sent = match self.iface_owning(v.src.ip()) {
                Some(i) => {
                    let link = &mut self.ifaces[i].link;
                    let sent = link.send_frame(frame);
                    link.flush();
                    sent
                }
                None => false,
            };
            let mut table = self.offload.borrow_mut();
            if sent {
                table.counters.tx_held_sent += 1;
            } else {
                // No buffer (or no leg) yet: back in line, in order.
                table.on_tx_no_buffer(frame);
            }
        }
        true
    }

    // ---- offload bindings (netsrv's part of TLS offload) ----

    /// The connection's (local, remote), once established.
    pub fn tcp_tuple(&mut self, id: SockId) -> Result<Flow, SocketError> {
        let (conn, socket) = self.conn(id)?;
        if let Some(t) = conn.tuple {
            return Ok(t);
        }
        match (socket.local_endpoint(), socket.remote_endpoint()) {
            (Some(l), Some(r)) => {
                let t = Flow {
                    local: endpoint_to_std(l),
                    remote: endpoint_to_std(r),
                };
                conn.tuple = Some(t);
                Ok(t)
            }
            _ => Err(SocketError::NotConnected),
        }
    }

    /// The TCP sequence number of stream offset `offset`, sent (`tx`) or
    /// received.
    pub fn tcp_seq_at(&mut self, id: SockId, tx: bool, offset: u64) -> Result<u32, SocketError> {
        let t = self.tcp_tuple(id)?;
        let table = self.offload.borrow();
        let first = table
            .conn(&t)
            .and_then(|c| if tx { c.tx_first } else { c.rx_first })
            .ok_or(SocketError::Invalid)?;
        Ok(offload::seq_of(first, offset))
    }

    /// The socket's send buffer: TCP never retransmits further behind the
    /// newest byte it sent.
    pub fn tcp_send_buffer(&mut self, id: SockId) -> Result<u32, SocketError> {
        let (_, socket) = self.conn(id)?;
        Ok(u32::try_from(socket.send_capacity()).unwrap_or(u32::MAX))
    }

    /// Offset of the first byte written to the socket that the peer has not
    /// acknowledged.
    pub fn tcp_send_unacked(&mut self, id: SockId) -> Result<u64, SocketError> {
        let (conn, socket) = self.conn(id)?;
        Ok(conn.tx_bytes - socket.send_queue() as u64)
    }

    pub fn tcp_bind_tx(&mut self, id: SockId, b: TxBinding) -> Result<(), String> {
        let t = self.tcp_tuple(id).map_err(|e| e.to_string())?;
        self.offload
            .borrow_mut()
            .bind_tx(t, b)
            .map_err(str::to_owned)
    }

    pub fn tcp_unbind_tx(
        &mut self,
        id: SockId,
        start: u64,
        bytes: Vec<u8>,
    ) -> Result<Option<TxBinding>, SocketError> {
        let t = self.tcp_tuple(id)?;
        Ok(self.offload.borrow_mut().unbind_tx(&t, start, bytes))
    }

    /// Expects NIC marks from the current receive point on (before the NIC
    /// makes the RX context, so that nothing it opens goes unmarked).
    pub fn tcp_bind_rx(&mut self, id: SockId) -> Result<(), String> {
        let t = self.tcp_tuple(id).map_err(|e| e.to_string())?;
        let (conn, socket) = self.conn(id).map_err(|e| e.to_string())?;
        let enqueued = conn.rx_bytes + socket.recv_queue() as u64;
        self.offload
            .borrow_mut()
            .bind_rx(t, id, enqueued)
            .map_err(str::to_owned)
    }

    /// The NIC made the RX context: the receive ring carries marked chunks
    /// from its current position; returns that position.
    pub fn tcp_confirm_rx(&mut self, id: SockId) -> Result<u64, SocketError> {
        let t = self.tcp_tuple(id)?;
        let (conn, _) = self.conn(id)?;
        let at = conn.ring_written;
        self.offload
            .borrow_mut()
            .confirm_rx(&t, at)
            .ok_or(SocketError::Closed)
    }

    /// The NIC refused the RX context.
    pub fn tcp_cancel_rx(&mut self, id: SockId) -> Result<(), SocketError> {
        let t = self.tcp_tuple(id)?;
        self.offload.borrow_mut().cancel_rx(&t);
        Ok(())
    }

    pub fn tcp_unbind_rx(&mut self, id: SockId) -> Result<(), SocketError> {
        let t = self.tcp_tuple(id)?;
        self.offload.borrow_mut().unbind_rx(&t);
        Ok(())
    }

    pub fn offload_counters(&self) -> offload::OffloadCounters {
        self.offload.borrow().counters
    }

    /// Whether `port`'s driver offers offload contexts of `kind`.
    pub fn port_offers(&self, port: &str, kind: OffloadKind) -> bool {
        match self.port_location(port) {
            Some(Some((i, l))) => self.ifaces[i].link.legs[l].meta.offloads.contains(&kind),
            _ => false,
        }
    }

    /// (descriptors sent, descriptors returned) on `port` while its driver
    /// instance is `epoch`; `None` once that instance is gone (nothing of
    /// it is in flight any more).
    pub fn port_tx_progress(&mut self, port: &str, epoch: u32) -> Option<(u64, u64)> {
        let loc = self.port_location(port)??;
        let leg = &mut self.ifaces[loc.0].link.legs[loc.1];
        if leg.epoch != epoch {
            return None;
        }
        leg.device.as_mut().map(|d| d.tx_progress())
    }

    /// Moves bytes between ring-mode sockets and smoltcp, tracks connection
    /// ends, and retires released sockets.
    fn pump_connections(&mut self) -> bool {
        let mut moved = false;
        let mut finished = Vec::new();
        let mut killed = Vec::new();
        let mut offload_broken = Vec::new();
        let mut table = self.offload.borrow_mut();
        for (&id, conn) in &mut self.tcp {
            let socket = self.ifaces[conn.iface]
                .sockets
                .get_mut::<tcp::Socket>(conn.handle);
            conn.observe(socket);
            if conn.tuple.is_none() {
                if let (Some(l), Some(r)) = (socket.local_endpoint(), socket.remote_endpoint()) {
                    conn.tuple = Some(Flow {
                        local: endpoint_to_std(l),
                        remote: endpoint_to_std(r),
                    });
                }
            }
            if let Some(t) = conn.tuple {
                let enqueued = conn.rx_bytes + socket.recv_queue() as u64;
                if !table.reconcile_rx(&t, enqueued) {
                    tracing::error!(
                        id,
                        "receive marks lost track of the stream; aborting the connection"
                    );
                    offload_broken.push(id);
                    continue;
                }
                table.acked_tx(&t, conn.tx_bytes - socket.send_queue() as u64);
            }
            match conn.pump(socket, &mut table) {
                Ok(m) => moved |= m,
                Err(err) => {
                    tracing::warn!(id, %err, "client broke its socket ring; ending that socket");
                    killed.push(id);
                    continue;
                }
            }
            if conn.released {
                if !conn.fin_queued
                    && conn
                        .rings
                        .as_ref()
                        .is_none_or(|r| r.up.available().unwrap_or(0) == 0)
                {
                    socket.close();
                    conn.fin_queued = true;
                }
                if socket.state() == tcp::State::Closed {
                    finished.push(id);
                }
            }
        }
        drop(table);
        for id in killed {
            self.counters.sessions_killed += 1;
            self.counters.bad_ring_indices += 1;
            self.tcp_abort(id);
        }
        for id in offload_broken {
            self.tcp_abort(id);
        }
        for id in finished {
            if let Some(conn) = self.tcp.remove(&id) {
                if let Some(t) = &conn.tuple {
                    self.offload.borrow_mut().forget(t);
                }
                if conn.established && !conn.saw_fin && !conn.fin_queued {
                    self.counters.tcp_resets += 1;
                }
                self.ifaces[conn.iface].sockets.remove(conn.handle);
            }
        }
        moved
    }

    /// Asks every ring for a doorbell before sleeping; true if work arrived
    /// meanwhile (then do not sleep).
    pub fn arm(&mut self) -> bool {
        let mut pending = false;
        for iface in &mut self.ifaces {
            pending |= iface.link.arm();
        }
        let table = self.offload.borrow();
        for conn in self.tcp.values_mut() {
            let Some(r) = &mut conn.rings else { continue };
            r.up.request_signal();
            r.down.request_signal();
            let socket = self.ifaces[conn.iface]
                .sockets
                .get::<tcp::Socket>(conn.handle);
            // Bytes held back while a NIC makes an RX context are not work:
            // spinning on them would starve the call that ends the wait.
            let held = conn
                .tuple
                .and_then(|t| table.conn(&t))
                .and_then(|c| c.rx.as_ref())
                .is_some_and(|rx| rx.plain_allowance(conn.rx_bytes) == Some(0));
            let up_ready = socket.can_send() && r.up.available().unwrap_or(0) > 0;
            let down_ready = !held && socket.can_recv() && r.down.space().unwrap_or(0) > 0;
            if up_ready || down_ready {
                r.up.cancel_signal();
                r.down.cancel_signal();
                pending = true;
            }
        }
        pending
    }

    /// How long the stack may sleep before a timer is due.
    pub fn poll_delay(&mut self) -> Option<Duration> {
        let now = self.now();
        // An interface with no leg up holds frames that cannot leave; a leg
        // coming back wakes the loop (doorbell, link event, attach), so
        // only check now and then instead of spinning on them.
        const LINK_DOWN_RECHECK: Duration = Duration::from_millis(100);
        self.ifaces
            .iter_mut()
            .filter_map(|p| {
                let d = p.iface.poll_delay(now, &p.sockets)?;
                let d = Duration::from_micros(d.total_micros());
                Some(if p.link.has_live_leg() {
                    d
                } else {
                    d.max(LINK_DOWN_RECHECK)
                })
            })
            .min()
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
        let mut out = Vec::new();
        for conn in self.tcp.values() {
            let s = self.ifaces[conn.iface]
                .sockets
                .get::<tcp::Socket>(conn.handle);
            out.push(SocketSummary {
                kind: "tcp",
                local: s
                    .local_endpoint()
                    .map(|e| endpoint_to_std(e).to_string())
                    .unwrap_or_default(),
                remote: s
                    .remote_endpoint()
                    .map(|e| endpoint_to_std(e).to_string())
                    .unwrap_or_default(),
                state: match &conn.rings {
                    Some(r) => format!(
                        "{} sendq {} recvq {} up {} down-space {}",
                        s.state(),
                        s.send_queue(),
                        s.recv_queue(),
                        r.up.available().unwrap_or(0),
                        r.down.space().unwrap_or(0)
                    ),
                    None => format!(
                        "{} sendq {} recvq {}",
                        s.state(),
                        s.send_queue(),
                        s.recv_queue()
                    ),
                },
                rx_bytes: conn.rx_bytes,
                tx_bytes: conn.tx_bytes,
                ring_mode: conn.rings.is_some(),
            });
        }
        for l in self.listeners.values() {
            out.push(SocketSummary {
                kind: "tcp-listen",
                local: l.endpoint.to_string(),
                remote: String::new(),
                state: format!("backlog {} ready {}", l.backlog, l.ready.len()),
                rx_bytes: 0,
                tx_bytes: 0,
                ring_mode: false,
            });
        }
        for u in self.udp.values() {
            out.push(SocketSummary {
                kind: "udp",
                local: u.local.to_string(),
                remote: String::new(),
                state: String::new(),
                rx_bytes: 0,
                tx_bytes: 0,
                ring_mode: false,
            });
        }
        out
    }
}

fn route_text(r: &RouteEntry) -> String {
    if r.to.prefix_len() == 0 {
        format!("default via {}", r.via)
    } else {
        format!("{} via {}", r.to, r.via)
    }
}

fn is_link_local(a: &IpAddress) -> bool {
    match a {
        IpAddress::Ipv4(v4) => v4.is_link_local(),
        IpAddress::Ipv6(v6) => v6.is_unicast_link_local(),
    }
}

impl TcpConn {
    fn new(iface: usize, handle: SocketHandle, established: bool) -> TcpConn {
        TcpConn {
            iface,
            handle,
            rings: None,
            established,
            saw_fin: false,
            released: false,
            fin_queued: false,
            end_delivered: false,
            rx_bytes: 0,
            tx_bytes: 0,
            ring_written: 0,
            tuple: None,
        }
    }

    /// Tracks what happened to the connection between polls.
    fn observe(&mut self, socket: &tcp::Socket) {
        use tcp::State::*;
        match socket.state() {
            Established | FinWait1 | FinWait2 => self.established = true,
            CloseWait | LastAck | Closing | TimeWait => {
                self.established = true;
                self.saw_fin = true;
            }
            _ => {}
        }
    }

    /// Why the connection ended, if not by an orderly FIN.
    fn end_error(&self, socket: &tcp::Socket) -> Option<SocketError> {
        (socket.state() == tcp::State::Closed && !self.saw_fin).then_some(if self.established {
            SocketError::Reset
        } else {
            SocketError::Refused
        })
    }

    /// Moves bytes between the rings and smoltcp. `Err` when the client broke
    /// the ring contract.
    fn pump(
        &mut self,
        socket: &mut tcp::Socket,
        table: &mut OffloadTable,
    ) -> Result<bool, RingError> {
        let chunked = self
            .tuple
            .and_then(|t| table.conn_mut(&t))
            .and_then(|c| c.rx.as_mut());
        let Some(rings) = &mut self.rings else {
            return Ok(false);
        };
        let mut moved = false;
        // Application -> network.
        let mut sent = false;
        while socket.can_send() {
            let chunk = rings.up.peek()?;
            if chunk.is_empty() {
                break;
            }
            let n = socket.send_slice(chunk).unwrap_or(0);
            if n == 0 {
                break;
            }
            rings.up.consume(n);
            self.tx_bytes += n as u64;
            sent = true;
        }
        if sent {
            moved = true;
            if rings.up.signal_wanted() {
                rings.wake_peer.ring();
            }
        }
        if !self.fin_queued && rings.up.eof() && socket.may_send() {
            socket.close();
            self.fin_queued = true;
            moved = true;
        }
        // Network -> application.
        let mut received = false;
        // While the NIC makes an RX context, bytes past the binding wait:
        // they may come back marked.
        let limit = chunked
            .as_ref()
            .and_then(|rx| rx.plain_allowance(self.rx_bytes));
        match chunked.filter(|rx| rx.chunks_from.is_some()) {
            None => {
                let mut left = limit.map_or(usize::MAX, |l| l as usize);
                while socket.can_recv() && left > 0 {
                    let space = rings.down.reserve()?;
                    if space.is_empty() {
                        break;
                    }
                    let want = space.len().min(left);
                    let n = socket.recv_slice(&mut space[..want]).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    rings.down.commit(n);
                    self.rx_bytes += n as u64;
                    self.ring_written += n as u64;
                    left -= n;
                    received = true;
                }
            }
            Some(rx) => {
                received |= pump_chunks(
                    socket,
                    rings,
                    rx,
                    &mut self.rx_bytes,
                    &mut self.ring_written,
                )?;
            }
        }
        if !self.end_delivered && self.established && !socket.may_recv() && !socket.can_recv() {
            let error = (socket.state() == tcp::State::Closed && !self.saw_fin)
                .then_some(SocketError::Reset);
            match error {
                Some(e) => {
                    rings.down.set_error(e.code());
                    // The application's writes have nowhere to go either.
                    rings.up.close();
                }
                None => rings.down.close(),
            }
            self.end_delivered = true;
            received = true;
        }
        if received {
            moved = true;
            if rings.down.signal_wanted() {
                rings.wake_peer.ring();
            }
        }
        Ok(moved)
    }
}

/// Receive path of a connection with TLS RX offload: marked chunks (see
/// net.capnp `RxChunk`), one per run of bytes the NIC did or did not
/// decrypt.
fn pump_chunks(
    socket: &mut tcp::Socket,
    rings: &mut ServerEnd,
    rx: &mut offload::RxBinding,
    rx_bytes: &mut u64,
    ring_written: &mut u64,
) -> Result<bool, RingError> {
    let mut received = false;
    loop {
        let queued = socket.recv_queue();
        if queued == 0 {
            break;
        }
        // Bytes smoltcp held before the binding carry no marks: unmarked.
        let (run, decrypted) = if *rx_bytes < rx.marks_start() {
            (rx.marks_start() - *rx_bytes, false)
        } else {
            match rx.marks.run_at(*rx_bytes) {
                Some(r) => r,
                // Reconciled before the pump: cannot happen; stop safely.
                None => break,
            }
        };
        let space = rings.down.space()?;
        if space <= chunk::HEADER_LEN {
            break;
        }
        let n = (run as usize)
            .min(queued)
            .min(chunk::MAX_LEN)
            .min(space - chunk::HEADER_LEN);
        tracing::trace!(offset = *rx_bytes, n, decrypted, "rx chunk");
        let header = ChunkHeader {
            len: n as u16, // at most chunk::MAX_LEN
            decrypted,
        };
        rings.down.write(&header.to_bytes())?;
        let mut left = n;
        while left > 0 {
            let dst = rings.down.reserve()?;
            let want = left.min(dst.len());
            let got = socket.recv_slice(&mut dst[..want]).unwrap_or(0);
            if got == 0 {
                // smoltcp said `queued` bytes were there.
                return Err(RingError::Layout("receive queue shrank"));
            }
            rings.down.commit(got);
            left -= got;
        }
        *rx_bytes += n as u64;
        *ring_written += (chunk::HEADER_LEN + n) as u64;
        received = true;
    }
    Ok(received)
}
