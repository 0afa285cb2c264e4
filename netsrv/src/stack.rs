//! The TCP/IP stack: smoltcp interfaces over NIC rings, and the sockets that
//! clients hold.
//!
//! Everything here is synchronous and runs on netsrv's single thread. Socket
//! operations either complete or answer `Ok(None)` ("not yet"); the capnp
//! layer waits for the next stack poll and asks again. Clients never see a
//! `SocketHandle`: they hold capabilities that map to private ids.

use crate::addr::{endpoint_to_std, from_smol, to_smol};
use crate::device::{DeviceCounters, RingDevice};
use capnet_ring::{RingError, ServerEnd};
use capnet_schema::errors::SocketError;
use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::{Duration as SmolDuration, Instant};
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpEndpoint, IpListenEndpoint};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A socket's private name inside netsrv.
pub type SockId = u64;

const EPHEMERAL: std::ops::RangeInclusive<u16> = 49152..=65535;
const MAX_BACKLOG: usize = 256;
const UDP_PACKETS: usize = 64;
const UDP_BUFFER: usize = 256 * 1024;

#[derive(Clone, Debug)]
pub struct PortMeta {
    pub name: String,
    pub backend: String,
    pub mac: [u8; 6],
    pub mtu: usize,
}

pub struct Port {
    pub meta: PortMeta,
    pub iface: Interface,
    pub device: RingDevice,
    pub sockets: SocketSet<'static>,
    pub link_up: bool,
    default_v4: Option<IpAddress>,
    default_v6: Option<IpAddress>,
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
    pub bad_ring_indices: u64,
    pub tcp_connects: u64,
    pub tcp_accepts: u64,
    pub tcp_resets: u64,
    pub udp_sent: u64,
    pub udp_received: u64,
}

struct TcpConn {
    port: usize,
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
    pub ports: Vec<Port>,
    tcp: HashMap<SockId, TcpConn>,
    listeners: HashMap<SockId, Listener>,
    udp: HashMap<SockId, UdpSock>,
    next_id: SockId,
    next_ephemeral: u16,
    pub counters: StackCounters,
    pub default_buffer: usize,
    epoch: std::time::Instant,
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
            ports: Vec::new(),
            tcp: HashMap::new(),
            listeners: HashMap::new(),
            udp: HashMap::new(),
            next_id: 1,
            next_ephemeral: EPHEMERAL.start() + (seed % span) as u16,
            counters: StackCounters::default(),
            default_buffer,
            epoch: std::time::Instant::now(),
        }
    }

    pub fn now(&self) -> Instant {
        smol_now(self.epoch)
    }

    /// Adds a port with its addresses and default gateways.
    pub fn add_port(
        &mut self,
        meta: PortMeta,
        mut device: RingDevice,
        addresses: &[IpCidr],
        gateways: &[IpAddress],
    ) -> Result<usize, String> {
        let mut seed = [0u8; 8];
        capnet_ring::platform::random_bytes(&mut seed);
        let mut config = Config::new(EthernetAddress(meta.mac).into());
        config.random_seed = u64::from_le_bytes(seed);
        let mut iface = Interface::new(config, &mut device, self.now());
        let mut result = Ok(());
        iface.update_ip_addrs(|addrs| {
            for a in addresses {
                if addrs.push(*a).is_err() {
                    result = Err(format!("port {}: too many addresses", meta.name));
                }
            }
        });
        result?;
        let mut port = Port {
            meta,
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
            link_up: true,
            default_v4: None,
            default_v6: None,
        };
        for gw in gateways {
            match gw {
                IpAddress::Ipv4(v4) => {
                    port.iface
                        .routes_mut()
                        .add_default_ipv4_route(*v4)
                        .map_err(|_| "route table full".to_string())?;
                    port.default_v4 = Some(*gw);
                }
                IpAddress::Ipv6(v6) => {
                    port.iface
                        .routes_mut()
                        .add_default_ipv6_route(*v6)
                        .map_err(|_| "route table full".to_string())?;
                    port.default_v6 = Some(*gw);
                }
            }
        }
        self.ports.push(port);
        Ok(self.ports.len() - 1)
    }

    fn next_id(&mut self) -> SockId {
        self.next_id += 1;
        self.next_id
    }

    /// The port a packet to `dst` leaves from: a directly connected subnet
    /// first, then a default route.
    pub fn route(&self, dst: IpAddr) -> Option<usize> {
        let dst = to_smol(dst);
        let usable = |p: &Port| p.device.fault().is_none();
        self.ports
            .iter()
            .position(|p| usable(p) && p.iface.ip_addrs().iter().any(|c| c.contains_addr(&dst)))
            .or_else(|| {
                self.ports.iter().position(|p| {
                    usable(p)
                        && match dst {
                            IpAddress::Ipv4(_) => p.default_v4.is_some(),
                            IpAddress::Ipv6(_) => p.default_v6.is_some(),
                        }
                })
            })
    }

    fn port_owning(&self, ip: IpAddr) -> Option<usize> {
        let ip = to_smol(ip);
        self.ports
            .iter()
            .position(|p| p.iface.ip_addrs().iter().any(|c| c.address() == ip))
    }

    fn source_address(&self, port: usize, dst: IpAddr) -> Option<IpAddress> {
        let v4 = dst.is_ipv4();
        self.ports[port]
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
                self.ports[c.port]
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
        let p = &mut self.ports[port];
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
        let socket = self.ports[conn.port]
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
            let port = &mut self.ports[conn.port];
            port.sockets.get_mut::<tcp::Socket>(conn.handle).abort();
            // smoltcp sends the RST on the next poll; the handle goes then.
            self.orphan_abort(conn.port, conn.handle);
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
            (0..self.ports.len()).collect()
        } else {
            vec![self
                .port_owning(local.ip())
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
        Ok(self.ports[port].sockets.add(s))
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
        let remote = self.ports[port]
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
                self.ports[port]
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
                let state = self.ports[port].sockets.get::<tcp::Socket>(handle).state();
                match state {
                    tcp::State::Listen | tcp::State::SynReceived => i += 1,
                    tcp::State::Closed => {
                        // A half-open attempt that failed: listen again.
                        let s = self.ports[port].sockets.get_mut::<tcp::Socket>(handle);
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
            (0..self.ports.len()).collect()
        } else {
            vec![self
                .port_owning(local.ip())
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
            sockets.push((port, self.ports[port].sockets.add(s)));
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
        let socket = self.ports[port].sockets.get_mut::<udp::Socket>(handle);
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
            let socket = self.ports[port].sockets.get_mut::<udp::Socket>(handle);
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
                self.ports[port].sockets.remove(handle);
            }
        }
    }

    // ---- the poll loop ----

    /// Runs every port and socket once; true if anything moved.
    pub fn poll(&mut self) -> bool {
        let now = self.now();
        let mut activity = false;
        for port in &mut self.ports {
            if port.device.fault().is_some() {
                continue;
            }
            if port.iface.poll(now, &mut port.device, &mut port.sockets)
                == PollResult::SocketStateChanged
            {
                activity = true;
            }
            port.device.flush();
            activity |= port.device.take_activity();
        }
        activity |= self.pump_connections();
        self.maintain_listeners();
        activity
    }

    /// Moves bytes between ring-mode sockets and smoltcp, tracks connection
    /// ends, and retires released sockets.
    fn pump_connections(&mut self) -> bool {
        let mut moved = false;
        let mut finished = Vec::new();
        let mut killed = Vec::new();
        for (&id, conn) in &mut self.tcp {
            let socket = self.ports[conn.port]
                .sockets
                .get_mut::<tcp::Socket>(conn.handle);
            conn.observe(socket);
            match conn.pump(socket) {
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
        for id in killed {
            self.counters.sessions_killed += 1;
            self.counters.bad_ring_indices += 1;
            self.tcp_abort(id);
        }
        for id in finished {
            if let Some(conn) = self.tcp.remove(&id) {
                if conn.established && !conn.saw_fin && !conn.fin_queued {
                    self.counters.tcp_resets += 1;
                }
                self.ports[conn.port].sockets.remove(conn.handle);
            }
        }
        moved
    }

    /// Asks every ring for a doorbell before sleeping; true if work arrived
    /// meanwhile (then do not sleep).
    pub fn arm(&mut self) -> bool {
        let mut pending = false;
        for port in &mut self.ports {
            pending |= port.device.arm();
        }
        for conn in self.tcp.values_mut() {
            let Some(r) = &mut conn.rings else { continue };
            r.up.request_signal();
            r.down.request_signal();
            let socket = self.ports[conn.port]
                .sockets
                .get::<tcp::Socket>(conn.handle);
            let up_ready = socket.can_send() && r.up.available().unwrap_or(0) > 0;
            let down_ready = socket.can_recv() && r.down.space().unwrap_or(0) > 0;
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
        self.ports
            .iter_mut()
            .filter_map(|p| p.iface.poll_delay(now, &p.sockets))
            .map(|d| Duration::from_micros(d.total_micros()))
            .min()
    }

    /// The stack side's frame counters, summed over all ports.
    pub fn device_counters(&self) -> DeviceCounters {
        let mut sum = DeviceCounters::default();
        for p in &self.ports {
            let c = p.device.counters;
            sum.rx_frames += c.rx_frames;
            sum.tx_frames += c.tx_frames;
            sum.rx_bad_checksum += c.rx_bad_checksum;
            sum.tx_no_buffer += c.tx_no_buffer;
        }
        sum
    }

    pub fn sockets(&self) -> Vec<SocketSummary> {
        let mut out = Vec::new();
        for conn in self.tcp.values() {
            let s = self.ports[conn.port]
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

impl Port {
    /// The gateways of this port's default routes.
    pub fn default_routes(&self) -> impl Iterator<Item = IpAddress> + '_ {
        self.default_v4
            .iter()
            .chain(self.default_v6.iter())
            .copied()
    }
}

fn is_link_local(a: &IpAddress) -> bool {
    match a {
        IpAddress::Ipv4(v4) => v4.is_link_local(),
        IpAddress::Ipv6(v6) => v6.is_unicast_link_local(),
    }
}

impl TcpConn {
    fn new(port: usize, handle: SocketHandle, established: bool) -> TcpConn {
        TcpConn {
            port,
            handle,
            rings: None,
            established,
            saw_fin: false,
            released: false,
            fin_queued: false,
            end_delivered: false,
            rx_bytes: 0,
            tx_bytes: 0,
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
    fn pump(&mut self, socket: &mut tcp::Socket) -> Result<bool, RingError> {
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
        while socket.can_recv() {
            let space = rings.down.reserve()?;
            if space.is_empty() {
                break;
            }
            let n = socket.recv_slice(space).unwrap_or(0);
            if n == 0 {
                break;
            }
            rings.down.commit(n);
            self.rx_bytes += n as u64;
            received = true;
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
