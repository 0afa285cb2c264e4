//! UDP (RFC 768): the socket table and each socket's datagram queue.
//!
//! This module owns which local address and port each UDP socket holds,
//! the demultiplexing of an arriving datagram to the one socket that takes
//! it, and the bounded receive queues. It does not parse or build UDP
//! headers and knows nothing of routes or interfaces: the IP layer checks
//! the UDP header and checksum, calls [`UdpSockets::receive`] (or
//! [`UdpSockets::lookup`] and [`UdpSockets::deliver`]) with the payload, and
//! answers a miss with ICMP port unreachable (RFC 1122 §4.1.3.1).
//!
//! Binding follows Linux without `SO_REUSEADDR`/`SO_REUSEPORT`: on one port
//! and family, a specific address conflicts with the same address and with
//! the wildcard, and the wildcard conflicts with everything. IPv4 and IPv6
//! are separate namespaces, as with `IPV6_V6ONLY=1`: a v6 socket never sees
//! a v4 datagram, and the caller should turn IPv4-mapped IPv6 addresses
//! (`::ffff:a.b.c.d`) into IPv4 ones before they reach this table. Scope
//! ids and flow labels of IPv6 socket addresses play no part in matching.
//!
//! An ephemeral port (port 0 in `bind`) is chosen by RFC 6056 §3.3.2
//! ("Algorithm 2"): start at a point of the range given by a random value
//! the caller passes, and take the first port from there, wrapping, that
//! the bind would not conflict on.
//!
//! Receive memory is charged per datagram as payload bytes plus
//! [`DATAGRAM_OVERHEAD`], like Linux's `skb->truesize`, so that a flood of
//! empty datagrams is bounded as surely as a few large ones.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

/// Bytes charged against a socket's receive buffer for every queued
/// datagram on top of its payload: our queue entry (two socket addresses
/// and a `Vec`) and allocator slack, rounded up as Linux's truesize rounds
/// an skb's bookkeeping.
pub const DATAGRAM_OVERHEAD: usize = 256;

/// The smallest receive buffer [`UdpSockets::set_recv_buffer`] grants
/// (Linux's `SOCK_MIN_RCVBUF` is of this order): room for a few small
/// datagrams.
pub const MIN_RECV_BUFFER: usize = 4096;

/// Largest UDP payload in an IPv4 datagram: 65535 - 20 (IP) - 8 (UDP).
pub const MAX_PAYLOAD_V4: usize = 65_507;

/// Largest UDP payload in an IPv6 packet without jumbograms: 65535 - 8.
pub const MAX_PAYLOAD_V6: usize = 65_527;

/// Bounds on the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpLimits {
    /// The receive buffer a new socket starts with, in charged bytes
    /// (payload plus [`DATAGRAM_OVERHEAD`] per datagram).
    pub recv_bytes_per_socket: usize,
    /// The largest receive buffer [`UdpSockets::set_recv_buffer`] grants
    /// (Linux: `net.core.rmem_max`).
    pub recv_bytes_max: usize,
    /// How many sockets may be open at once.
    pub max_sockets: usize,
}

impl Default for UdpLimits {
    fn default() -> UdpLimits {
        UdpLimits {
            recv_bytes_per_socket: 256 * 1024,
            recv_bytes_max: 4 * 1024 * 1024,
            max_sockets: 4096,
        }
    }
}

/// Names one open socket. A closed socket's id stays dead: the slot's
/// generation moves on, so the id never names the socket that reuses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UdpId {
    index: u32,
    generation: u32,
}

/// An inclusive range of ports to take ephemeral ports from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    low: u16,
    high: u16,
}

impl PortRange {
    /// Linux's default `net.ipv4.ip_local_port_range`.
    pub const LINUX: PortRange = PortRange {
        low: 32768,
        high: 60999,
    };
    /// The IANA dynamic/private range (RFC 6335 §6), which RFC 6056 §3.2
    /// recommends at the least.
    pub const IANA: PortRange = PortRange {
        low: 49152,
        high: 65535,
    };

    /// `low..=high`; `None` if it is empty or includes port 0.
    pub fn new(low: u16, high: u16) -> Option<PortRange> {
        (low != 0 && low <= high).then_some(PortRange { low, high })
    }

    /// The lowest port of the range.
    pub fn low(self) -> u16 {
        self.low
    }

    /// The highest port of the range.
    pub fn high(self) -> u16 {
        self.high
    }

    fn len(self) -> u32 {
        u32::from(self.high - self.low) + 1
    }
}

/// How to choose a port when `bind` is given port 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EphemeralPorts {
    /// Where ephemeral ports come from.
    pub range: PortRange,
    /// A random value from the caller, fresh per bind: where in the range
    /// the search starts (RFC 6056 §3.3.2).
    pub start: u32,
}

/// Why a bind failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindError {
    /// The address is not one of this host's (EADDRNOTAVAIL).
    AddressNotAvailable,
    /// Another socket holds the port on a conflicting address
    /// (`EADDRINUSE`).
    InUse,
    /// Every port of the ephemeral range conflicts (`EADDRINUSE` too, in
    /// Linux; kept apart here so the caller can say why).
    NoPorts,
    /// [`UdpLimits::max_sockets`] sockets are already open.
    Limit,
}

/// Why a datagram was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpDrop {
    /// The socket's receive buffer has no room for it.
    ReceiveBufferFull,
    /// No socket takes it (or the id names a closed socket).
    NoSocket,
}

/// Why a datagram may not be sent from a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The id names no open socket.
    NoSocket,
    /// The destination is of the other address family.
    FamilyMismatch,
    /// Port 0 is not a destination (Linux: `EINVAL`).
    PortZero,
    /// The payload does not fit in one IP datagram (`EMSGSIZE`).
    TooLong,
}

/// A received datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// The sender's address and port.
    pub from: SocketAddr,
    /// The address and port it was sent to (for a wildcard socket, which of
    /// its addresses; what `IP_PKTINFO` reports).
    pub to: SocketAddr,
    pub payload: Vec<u8>,
}

/// Counts over the whole table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpCounters {
    /// Datagrams offered to [`UdpSockets::receive`] or
    /// [`UdpSockets::deliver`].
    pub received: u64,
    /// Datagrams queued on a socket.
    pub delivered: u64,
    /// Datagrams dropped for a full receive buffer (Linux `RcvbufErrors`).
    pub dropped_full: u64,
    /// Datagrams no socket took (Linux `NoPorts`).
    pub no_port: u64,
    /// Datagrams the IP layer reported sent ([`UdpSockets::record_sent`]).
    pub sent: u64,
    /// Sends that failed ([`UdpSockets::record_send_error`]).
    pub send_errors: u64,
}

/// Counts for one socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpSocketCounters {
    /// Datagrams offered to this socket.
    pub received: u64,
    /// Datagrams queued.
    pub delivered: u64,
    /// Datagrams dropped for a full receive buffer.
    pub dropped_full: u64,
    pub sent: u64,
    pub send_errors: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

#[derive(Debug)]
struct Socket {
    /// As bound, with the chosen port filled in.
    local: SocketAddr,
    queue: VecDeque<Datagram>,
    /// Charged bytes queued.
    used: usize,
    /// Charged bytes the queue may hold.
    limit: usize,
    counters: UdpSocketCounters,
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    socket: Option<Socket>,
}

/// The UDP socket table. See the module documentation.
#[derive(Debug)]
pub struct UdpSockets {
    limits: UdpLimits,
    slots: Vec<Slot>,
    free: Vec<u32>,
    open: usize,
    /// Sockets bound to a specific address.
    exact: HashMap<(IpAddr, u16), u32>,
    /// Sockets bound to the wildcard address of a family.
    wildcard: HashMap<(Family, u16), u32>,
    /// How many specific-address sockets hold each (family, port): a
    /// wildcard bind conflicts with any of them.
    specific_on_port: HashMap<(Family, u16), u32>,
    counters: UdpCounters,
}

fn charge(payload_len: usize) -> usize {
    payload_len.saturating_add(DATAGRAM_OVERHEAD)
}

impl UdpSockets {
    /// An empty table. A `recv_bytes_max` below [`MIN_RECV_BUFFER`] is
    /// raised to it, and `recv_bytes_per_socket` is clamped into
    /// `MIN_RECV_BUFFER..=recv_bytes_max`.
    pub fn new(limits: UdpLimits) -> UdpSockets {
        let recv_bytes_max = limits.recv_bytes_max.max(MIN_RECV_BUFFER);
        let limits = UdpLimits {
            recv_bytes_max,
            recv_bytes_per_socket: limits
                .recv_bytes_per_socket
                .clamp(MIN_RECV_BUFFER, recv_bytes_max),
            max_sockets: limits.max_sockets,
        };
        UdpSockets {
            limits,
            slots: Vec::new(),
            free: Vec::new(),
            open: 0,
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            specific_on_port: HashMap::new(),
            counters: UdpCounters::default(),
        }
    }

    /// Opens a socket bound to `local`. Its address may be unspecified (the
    /// wildcard: every local address of its family); port 0 asks for an
    /// ephemeral port chosen as `ephemeral` says (unused otherwise).
    ///
    /// The caller has checked that a specific address is one of its own
    /// (`EADDRNOTAVAIL` is the IP layer's to say) and that the binder may
    /// take a privileged port.
    pub fn bind(
        &mut self,
        local: SocketAddr,
        ephemeral: EphemeralPorts,
    ) -> Result<UdpId, BindError> {
        if self.open >= self.limits.max_sockets {
            return Err(BindError::Limit);
        }
        let ip = local.ip();
        let port = if local.port() != 0 {
            if self.conflicts(ip, local.port()) {
                return Err(BindError::InUse);
            }
            local.port()
        } else {
            self.pick_ephemeral(ip, ephemeral)
                .ok_or(BindError::NoPorts)?
        };
        let mut local = local;
        local.set_port(port);
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                // The open-socket limit bounds the slab; u32 indices cover any
                // limit a host can hold.
                let Ok(index) = u32::try_from(self.slots.len()) else {
                    return Err(BindError::Limit);
                };
                self.slots.push(Slot {
                    generation: 0,
                    socket: None,
                });
                index
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.socket = Some(Socket {
            local,
            queue: VecDeque::new(),
            used: 0,
            limit: self.limits.recv_bytes_per_socket,
            counters: UdpSocketCounters::default(),
        });
        let id = UdpId {
            index,
            generation: slot.generation,
        };
        let family = Family::of(ip);
        if ip.is_unspecified() {
            self.wildcard.insert((family, port), index);
        } else {
            self.exact.insert((ip, port), index);
            *self.specific_on_port.entry((family, port)).or_insert(0) += 1;
        }
        self.open += 1;
        Ok(id)
    }

    /// Whether binding `ip:port` would conflict with an open socket.
    fn conflicts(&self, ip: IpAddr, port: u16) -> bool {
        let family = Family::of(ip);
        if self.wildcard.contains_key(&(family, port)) {
            return true;
        }
        if ip.is_unspecified() {
            self.specific_on_port.contains_key(&(family, port))
        } else {
            self.exact.contains_key(&(ip, port))
        }
    }

    fn pick_ephemeral(&self, ip: IpAddr, ephemeral: EphemeralPorts) -> Option<u16> {
        let range = ephemeral.range;
        let n = range.len();
        let first = ephemeral.start % n;
        (0..n)
            .map(|i| {
                // (first + i) % n < n <= 65535 - low + 1, so this stays a port.
                range.low + ((first + i) % n) as u16
            })
            .find(|&port| !self.conflicts(ip, port))
    }

    /// The socket that takes a datagram sent to `dst`: the one bound to
    /// exactly that address and port, else the wildcard socket of its family
    /// on that port. O(1).
    pub fn lookup(&self, dst: SocketAddr) -> Option<UdpId> {
        let index = self
            .exact
            .get(&(dst.ip(), dst.port()))
            .or_else(|| self.wildcard.get(&(Family::of(dst.ip()), dst.port())))?;
        let slot = &self.slots[*index as usize];
        Some(UdpId {
            index: *index,
            generation: slot.generation,
        })
    }

    /// [`lookup`](Self::lookup) then [`deliver`](Self::deliver): the one
    /// call the IP layer makes for an arriving datagram. On
    /// `Err(UdpDrop::NoSocket)` it answers with port unreachable (subject to
    /// the ICMP rules and rate limit).
    pub fn receive(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        payload: &[u8],
    ) -> Result<UdpId, UdpDrop> {
        match self.lookup(to) {
            Some(id) => self.deliver(id, from, to, payload).map(|()| id),
            None => {
                self.counters.received += 1;
                self.counters.no_port += 1;
                Err(UdpDrop::NoSocket)
            }
        }
    }

    /// Queues a datagram on socket `id` if its receive buffer has room for
    /// the payload plus [`DATAGRAM_OVERHEAD`]. As in Linux, a socket whose
    /// queue is empty takes one datagram of any legal size (up to 64 KiB)
    /// even if it is larger than the buffer, so a small buffer still
    /// receives; a queue therefore holds at most its limit plus one
    /// datagram.
    pub fn deliver(
        &mut self,
        id: UdpId,
        from: SocketAddr,
        to: SocketAddr,
        payload: &[u8],
    ) -> Result<(), UdpDrop> {
        self.counters.received += 1;
        let Some(socket) = Self::socket_in(&mut self.slots, id) else {
            self.counters.no_port += 1;
            return Err(UdpDrop::NoSocket);
        };
        socket.counters.received += 1;
        let cost = charge(payload.len());
        let fits = socket.used.saturating_add(cost) <= socket.limit
            || (socket.queue.is_empty() && payload.len() <= usize::from(u16::MAX));
        if !fits {
            socket.counters.dropped_full += 1;
            self.counters.dropped_full += 1;
            return Err(UdpDrop::ReceiveBufferFull);
        }
        socket.queue.push_back(Datagram {
            from,
            to,
            payload: payload.to_vec(),
        });
        socket.used += cost;
        socket.counters.delivered += 1;
        self.counters.delivered += 1;
        Ok(())
    }

    /// Takes the oldest queued datagram of socket `id`.
    pub fn recv(&mut self, id: UdpId) -> Option<Datagram> {
        let socket = Self::socket_in(&mut self.slots, id)?;
        let datagram = socket.queue.pop_front()?;
        socket.used -= charge(datagram.payload.len());
        Some(datagram)
    }

    /// The payload length of the datagram [`recv`](Self::recv) would return
    /// (`FIONREAD` for UDP); `None` if the queue is empty or `id` is closed.
    pub fn peek_len(&self, id: UdpId) -> Option<usize> {
        self.socket(id)?.queue.front().map(|d| d.payload.len())
    }

    /// The address socket `id` is bound to, its port filled in.
    pub fn local_addr(&self, id: UdpId) -> Option<SocketAddr> {
        self.socket(id).map(|s| s.local)
    }

    /// Closes socket `id`, dropping its queue and freeing its port. `false`
    /// if it was not open.
    pub fn close(&mut self, id: UdpId) -> bool {
        let Some(slot) = self.slots.get_mut(id.index as usize) else {
            return false;
        };
        if slot.generation != id.generation {
            return false;
        }
        let Some(socket) = slot.socket.take() else {
            return false;
        };
        // A generation wraps only after 2^32 reuses of one slot.
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index);
        self.open -= 1;
        let ip = socket.local.ip();
        let port = socket.local.port();
        let family = Family::of(ip);
        if ip.is_unspecified() {
            self.wildcard.remove(&(family, port));
        } else {
            self.exact.remove(&(ip, port));
            if let Some(n) = self.specific_on_port.get_mut(&(family, port)) {
                *n -= 1;
                if *n == 0 {
                    self.specific_on_port.remove(&(family, port));
                }
            }
        }
        true
    }

    /// Sets socket `id`'s receive buffer to `bytes` clamped into
    /// [`MIN_RECV_BUFFER`]`..=`[`UdpLimits::recv_bytes_max`], and returns
    /// what it became. Datagrams already queued stay even if they now exceed
    /// it; new ones wait for room.
    pub fn set_recv_buffer(&mut self, id: UdpId, bytes: usize) -> Option<usize> {
        let limit = bytes.clamp(MIN_RECV_BUFFER, self.limits.recv_bytes_max);
        let socket = Self::socket_in(&mut self.slots, id)?;
        socket.limit = limit;
        Some(limit)
    }

    /// Socket `id`'s receive buffer, in charged bytes.
    pub fn recv_buffer(&self, id: UdpId) -> Option<usize> {
        self.socket(id).map(|s| s.limit)
    }

    /// Checks that socket `id` may send `payload_len` bytes to `to`, and
    /// gives the local address to send from (its IP unspecified for a
    /// wildcard socket: the IP layer picks the source by route). Counts
    /// nothing: the IP layer reports the outcome with
    /// [`record_sent`](Self::record_sent) or
    /// [`record_send_error`](Self::record_send_error).
    pub fn check_send(
        &self,
        id: UdpId,
        to: SocketAddr,
        payload_len: usize,
    ) -> Result<SocketAddr, SendError> {
        let socket = self.socket(id).ok_or(SendError::NoSocket)?;
        let family = Family::of(socket.local.ip());
        if family != Family::of(to.ip()) {
            return Err(SendError::FamilyMismatch);
        }
        if to.port() == 0 {
            return Err(SendError::PortZero);
        }
        let max = match family {
            Family::V4 => MAX_PAYLOAD_V4,
            Family::V6 => MAX_PAYLOAD_V6,
        };
        if payload_len > max {
            return Err(SendError::TooLong);
        }
        Ok(socket.local)
    }

    /// Counts one datagram sent from socket `id`. `false` if it is closed
    /// (the table total is counted all the same).
    pub fn record_sent(&mut self, id: UdpId) -> bool {
        self.counters.sent += 1;
        match Self::socket_in(&mut self.slots, id) {
            Some(socket) => {
                socket.counters.sent += 1;
                true
            }
            None => false,
        }
    }

    /// Counts one failed send from socket `id` (a `check_send` refusal, no
    /// route, no neighbour). `false` if it is closed (the table total is
    /// counted all the same).
    pub fn record_send_error(&mut self, id: UdpId) -> bool {
        self.counters.send_errors += 1;
        match Self::socket_in(&mut self.slots, id) {
            Some(socket) => {
                socket.counters.send_errors += 1;
                true
            }
            None => false,
        }
    }

    /// Counts over the whole table.
    pub fn counters(&self) -> UdpCounters {
        self.counters
    }

    /// Counts for socket `id`.
    pub fn socket_counters(&self, id: UdpId) -> Option<UdpSocketCounters> {
        self.socket(id).map(|s| s.counters)
    }

    /// How many sockets are open.
    pub fn len(&self) -> usize {
        self.open
    }

    /// Whether no socket is open.
    pub fn is_empty(&self) -> bool {
        self.open == 0
    }

    fn socket(&self, id: UdpId) -> Option<&Socket> {
        let slot = self.slots.get(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.socket.as_ref()
    }

    fn socket_in(slots: &mut [Slot], id: UdpId) -> Option<&mut Socket> {
        let slot = slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.socket.as_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const ANY4: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    const ANY6: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

    fn v4(a: u8, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, a)), port)
    }

    fn v6(a: u16, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, a)), port)
    }

    fn eph(start: u32) -> EphemeralPorts {
        EphemeralPorts {
            range: PortRange::LINUX,
            start,
        }
    }

    fn table() -> UdpSockets {
        UdpSockets::new(UdpLimits::default())
    }

    #[test]
    fn port_ranges() {
        assert_eq!(PortRange::LINUX.len(), 28232);
        assert_eq!(PortRange::IANA.len(), 16384);
        assert_eq!(PortRange::new(0, 10), None);
        assert_eq!(PortRange::new(10, 9), None);
        let r = PortRange::new(65535, 65535).unwrap();
        assert_eq!((r.low(), r.high(), r.len()), (65535, 65535, 1));
    }

    #[test]
    fn specific_and_wildcard_conflict_on_one_port_and_family() {
        let mut t = table();
        let a = t.bind(v4(1, 53), eph(0)).unwrap();
        // Same address: in use. Wildcard over a specific: in use.
        assert_eq!(t.bind(v4(1, 53), eph(0)), Err(BindError::InUse));
        assert_eq!(
            t.bind(SocketAddr::new(ANY4, 53), eph(0)),
            Err(BindError::InUse)
        );
        // Another address, another port, the other family: free.
        let b = t.bind(v4(2, 53), eph(0)).unwrap();
        t.bind(v4(1, 54), eph(0)).unwrap();
        let w6 = t.bind(SocketAddr::new(ANY6, 53), eph(0)).unwrap();
        // Specific under a v6 wildcard: in use.
        assert_eq!(t.bind(v6(1, 53), eph(0)), Err(BindError::InUse));
        // Closing both specifics frees the port for the v4 wildcard.
        assert!(t.close(a));
        assert_eq!(
            t.bind(SocketAddr::new(ANY4, 53), eph(0)),
            Err(BindError::InUse)
        );
        assert!(t.close(b));
        let w4 = t.bind(SocketAddr::new(ANY4, 53), eph(0)).unwrap();
        assert_eq!(t.bind(v4(9, 53), eph(0)), Err(BindError::InUse));
        assert!(t.close(w4));
        assert!(t.close(w6));
        t.bind(v6(1, 53), eph(0)).unwrap();
    }

    #[test]
    fn ipv6_scope_and_flowinfo_do_not_matter() {
        let mut t = table();
        let ip = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
        let a = SocketAddr::V6(std::net::SocketAddrV6::new(ip, 7, 0, 2));
        let b = SocketAddr::V6(std::net::SocketAddrV6::new(ip, 7, 99, 3));
        let id = t.bind(a, eph(0)).unwrap();
        assert_eq!(t.bind(b, eph(0)), Err(BindError::InUse));
        assert_eq!(t.lookup(b), Some(id));
        assert_eq!(t.local_addr(id), Some(a));
    }

    #[test]
    fn ephemeral_ports_start_where_the_caller_says_and_skip_conflicts() {
        let mut t = table();
        let range = PortRange::new(1000, 1003).unwrap();
        let e = |start| EphemeralPorts { range, start };
        let a = t.bind(v4(1, 0), e(2)).unwrap();
        assert_eq!(t.local_addr(a).unwrap().port(), 1002);
        // Start is taken modulo the range.
        let b = t.bind(v4(1, 0), e(6)).unwrap();
        assert_eq!(t.local_addr(b).unwrap().port(), 1003);
        // Wraps around.
        let c = t.bind(v4(1, 0), e(3)).unwrap();
        assert_eq!(t.local_addr(c).unwrap().port(), 1000);
        // Another address does not conflict on the same ports...
        let d = t.bind(v4(2, 0), e(2)).unwrap();
        assert_eq!(t.local_addr(d).unwrap().port(), 1002);
        // ...but the wildcard conflicts with both.
        let w = t.bind(SocketAddr::new(ANY4, 0), e(0)).unwrap();
        assert_eq!(t.local_addr(w).unwrap().port(), 1001);
        assert_eq!(t.bind(v4(1, 0), e(0)), Err(BindError::NoPorts));
        // 10.0.0.3 is only held off the wildcard's port.
        let g = t.bind(v4(3, 0), e(u32::MAX)).unwrap();
        assert_eq!(t.local_addr(g).unwrap().port(), 1003);
        // The other family has its own ports.
        t.bind(SocketAddr::new(ANY6, 0), e(0)).unwrap();
        t.close(b);
        let f = t.bind(v4(1, 0), e(0)).unwrap();
        assert_eq!(t.local_addr(f).unwrap().port(), 1003);
    }

    #[test]
    fn ephemeral_range_at_the_top_of_the_port_space() {
        let mut t = table();
        let range = PortRange::new(65534, 65535).unwrap();
        for (start, port) in [(u32::MAX, 65535), (u32::MAX, 65534)] {
            let id = t.bind(v4(1, 0), EphemeralPorts { range, start }).unwrap();
            assert_eq!(t.local_addr(id).unwrap().port(), port);
        }
        let id = t.bind(
            v4(1, 0),
            EphemeralPorts {
                range: PortRange::IANA,
                start: u32::MAX,
            },
        );
        assert!(id.is_ok());
    }

    #[test]
    fn the_socket_limit_holds() {
        let mut t = UdpSockets::new(UdpLimits {
            max_sockets: 2,
            ..UdpLimits::default()
        });
        let a = t.bind(v4(1, 1), eph(0)).unwrap();
        t.bind(v4(1, 2), eph(0)).unwrap();
        assert_eq!(t.bind(v4(1, 3), eph(0)), Err(BindError::Limit));
        assert_eq!(t.len(), 2);
        t.close(a);
        t.bind(v4(1, 3), eph(0)).unwrap();
        let mut none = UdpSockets::new(UdpLimits {
            max_sockets: 0,
            ..UdpLimits::default()
        });
        assert!(none.is_empty());
        assert_eq!(none.bind(v4(1, 1), eph(0)), Err(BindError::Limit));
    }

    #[test]
    fn a_stale_id_never_names_the_new_socket() {
        let mut t = table();
        let old = t.bind(v4(1, 7), eph(0)).unwrap();
        assert!(t.close(old));
        assert!(!t.close(old));
        let new = t.bind(v4(1, 7), eph(0)).unwrap();
        assert_ne!(old, new);
        assert_eq!(t.local_addr(old), None);
        assert_eq!(
            t.deliver(old, v4(9, 1), v4(1, 7), b"x"),
            Err(UdpDrop::NoSocket)
        );
        assert_eq!(t.recv(old), None);
        assert_eq!(t.peek_len(old), None);
        assert_eq!(t.set_recv_buffer(old, 9000), None);
        assert_eq!(t.socket_counters(old), None);
        assert_eq!(t.check_send(old, v4(9, 1), 1), Err(SendError::NoSocket));
        assert!(!t.record_sent(old));
        // The new socket saw none of it.
        assert_eq!(t.peek_len(new), None);
        assert_eq!(t.socket_counters(new), Some(UdpSocketCounters::default()));
        // An id from another table's slab is just unknown.
        let forged = UdpId {
            index: 1000,
            generation: 0,
        };
        assert_eq!(t.local_addr(forged), None);
        assert!(!t.close(forged));
    }

    #[test]
    fn lookup_prefers_the_exact_address() {
        let mut t = table();
        let w = t.bind(SocketAddr::new(ANY4, 0), eph(5)).unwrap();
        let port = t.local_addr(w).unwrap().port();
        assert_eq!(t.lookup(v4(1, port)), Some(w));
        assert_eq!(t.lookup(v4(1, port + 1)), None);
        assert_eq!(t.lookup(v6(1, port)), None);
        assert_eq!(t.lookup(v4(1, 0)), None);
        let mut t = table();
        let e = t.bind(v4(1, 80), eph(0)).unwrap();
        let e6 = t.bind(v6(1, 80), eph(0)).unwrap();
        let w6 = t.bind(SocketAddr::new(ANY6, 81), eph(0)).unwrap();
        assert_eq!(t.lookup(v4(1, 80)), Some(e));
        assert_eq!(t.lookup(v4(2, 80)), None);
        assert_eq!(t.lookup(v6(1, 80)), Some(e6));
        assert_eq!(t.lookup(v6(7, 81)), Some(w6));
    }

    #[test]
    fn datagrams_queue_in_order_and_are_charged_with_overhead() {
        let mut t = table();
        let id = t.bind(v4(1, 9), eph(0)).unwrap();
        let size = 3 * (1300 + DATAGRAM_OVERHEAD);
        assert_eq!(t.set_recv_buffer(id, size), Some(size));
        for i in 0..3u8 {
            t.deliver(id, v4(2, 1000 + u16::from(i)), v4(1, 9), &[i; 1300])
                .unwrap();
        }
        assert_eq!(
            t.deliver(id, v4(2, 1), v4(1, 9), &[0; 1]),
            Err(UdpDrop::ReceiveBufferFull)
        );
        assert_eq!(t.peek_len(id), Some(1300));
        let d = t.recv(id).unwrap();
        assert_eq!(
            (d.from, d.to, d.payload),
            (v4(2, 1000), v4(1, 9), vec![0; 1300])
        );
        // Room for exactly one more of the same size.
        t.deliver(id, v4(2, 1), v4(1, 9), &[7; 1300]).unwrap();
        assert_eq!(
            t.deliver(id, v4(2, 1), v4(1, 9), &[]),
            Err(UdpDrop::ReceiveBufferFull)
        );
        let got: Vec<u8> = std::iter::from_fn(|| t.recv(id))
            .map(|d| d.payload[0])
            .collect();
        assert_eq!(got, vec![1, 2, 7]);
        assert_eq!(t.peek_len(id), None);
        let c = t.socket_counters(id).unwrap();
        assert_eq!((c.received, c.delivered, c.dropped_full), (6, 4, 2));
    }

    #[test]
    fn empty_datagrams_cannot_exhaust_memory() {
        let mut t = table();
        let id = t.bind(v4(1, 9), eph(0)).unwrap();
        let limit = t.recv_buffer(id).unwrap();
        assert_eq!(limit, 256 * 1024);
        let mut queued = 0;
        while t.deliver(id, v4(2, 1), v4(1, 9), &[]).is_ok() {
            queued += 1;
        }
        assert_eq!(queued, limit / DATAGRAM_OVERHEAD);
        // Zero-length datagrams are real datagrams.
        assert_eq!(t.peek_len(id), Some(0));
        assert_eq!(t.recv(id).unwrap().payload, Vec::<u8>::new());
    }

    #[test]
    fn an_empty_queue_takes_one_datagram_larger_than_its_buffer() {
        let mut t = table();
        let id = t.bind(v4(1, 9), eph(0)).unwrap();
        assert_eq!(t.set_recv_buffer(id, 0), Some(MIN_RECV_BUFFER));
        let big = vec![0u8; 9000];
        t.deliver(id, v4(2, 1), v4(1, 9), &big).unwrap();
        assert_eq!(
            t.deliver(id, v4(2, 1), v4(1, 9), &[]),
            Err(UdpDrop::ReceiveBufferFull)
        );
        assert_eq!(t.recv(id).unwrap().payload.len(), 9000);
        // Beyond any legal UDP payload, not even an empty queue takes it.
        let huge = vec![0u8; 70_000];
        assert_eq!(
            t.deliver(id, v4(2, 1), v4(1, 9), &huge),
            Err(UdpDrop::ReceiveBufferFull)
        );
    }

    #[test]
    fn recv_buffer_clamps() {
        let mut t = UdpSockets::new(UdpLimits {
            recv_bytes_per_socket: usize::MAX,
            recv_bytes_max: 1 << 20,
            max_sockets: 8,
        });
        let id = t.bind(v4(1, 9), eph(0)).unwrap();
        assert_eq!(t.recv_buffer(id), Some(1 << 20));
        assert_eq!(t.set_recv_buffer(id, usize::MAX), Some(1 << 20));
        assert_eq!(t.set_recv_buffer(id, 1), Some(MIN_RECV_BUFFER));
        assert_eq!(t.set_recv_buffer(id, 50_000), Some(50_000));
        let t = UdpSockets::new(UdpLimits {
            recv_bytes_per_socket: 0,
            recv_bytes_max: 0,
            max_sockets: 8,
        });
        assert_eq!(t.limits.recv_bytes_per_socket, MIN_RECV_BUFFER);
        assert_eq!(t.limits.recv_bytes_max, MIN_RECV_BUFFER);
    }

    #[test]
    fn shrinking_the_buffer_keeps_what_is_queued() {
        let mut t = table();
        let id = t.bind(v4(1, 9), eph(0)).unwrap();
        for _ in 0..10 {
            t.deliver(id, v4(2, 1), v4(1, 9), &[0; 1000]).unwrap();
        }
        t.set_recv_buffer(id, 0);
        assert_eq!(
            t.deliver(id, v4(2, 1), v4(1, 9), &[0; 1]),
            Err(UdpDrop::ReceiveBufferFull)
        );
        assert_eq!(std::iter::from_fn(|| t.recv(id)).count(), 10);
        t.deliver(id, v4(2, 1), v4(1, 9), &[0; 1]).unwrap();
    }

    #[test]
    fn receive_counts_misses_and_hits() {
        let mut t = table();
        let id = t.bind(SocketAddr::new(ANY4, 53), eph(0)).unwrap();
        assert_eq!(t.receive(v4(2, 1), v4(1, 53), b"q"), Ok(id));
        assert_eq!(t.receive(v4(2, 1), v4(1, 54), b"q"), Err(UdpDrop::NoSocket));
        t.set_recv_buffer(id, 0);
        t.receive(v4(2, 1), v4(1, 53), &[0; 3500]).unwrap();
        assert_eq!(
            t.receive(v4(2, 1), v4(1, 53), b"q"),
            Err(UdpDrop::ReceiveBufferFull)
        );
        assert!(t.record_sent(id));
        assert!(t.record_send_error(id));
        let c = t.counters();
        assert_eq!(
            c,
            UdpCounters {
                received: 4,
                delivered: 2,
                dropped_full: 1,
                no_port: 1,
                sent: 1,
                send_errors: 1,
            }
        );
        assert_eq!(
            t.socket_counters(id),
            Some(UdpSocketCounters {
                received: 3,
                delivered: 2,
                dropped_full: 1,
                sent: 1,
                send_errors: 1,
            })
        );
        t.close(id);
        assert!(!t.record_sent(id));
        assert_eq!(t.counters().sent, 2);
    }

    #[test]
    fn check_send() {
        let mut t = table();
        let id = t.bind(SocketAddr::new(ANY4, 0), eph(1)).unwrap();
        let local = t.local_addr(id).unwrap();
        assert_eq!(t.check_send(id, v4(2, 53), MAX_PAYLOAD_V4), Ok(local));
        assert_eq!(
            t.check_send(id, v4(2, 53), MAX_PAYLOAD_V4 + 1),
            Err(SendError::TooLong)
        );
        assert_eq!(t.check_send(id, v4(2, 0), 1), Err(SendError::PortZero));
        assert_eq!(
            t.check_send(id, v6(2, 53), 1),
            Err(SendError::FamilyMismatch)
        );
        let id6 = t.bind(v6(1, 0), eph(1)).unwrap();
        assert!(t.check_send(id6, v6(2, 53), MAX_PAYLOAD_V6).is_ok());
        assert_eq!(
            t.check_send(id6, v6(2, 53), MAX_PAYLOAD_V6 + 1),
            Err(SendError::TooLong)
        );
    }

    /// The table against a list of bound addresses searched naively, under
    /// random binds, closes and lookups.
    #[test]
    fn matches_a_naive_model() {
        let mut rng = SmallRng::seed_from_u64(0x05ee_d0dd);
        let ips: Vec<IpAddr> = vec![
            ANY4,
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            ANY6,
            "fd00::1".parse().unwrap(),
            "fd00::2".parse().unwrap(),
        ];
        let range = PortRange::new(5000, 5007).unwrap();
        for _round in 0..20 {
            let mut t = UdpSockets::new(UdpLimits {
                max_sockets: 24,
                ..UdpLimits::default()
            });
            let mut model: Vec<(UdpId, SocketAddr)> = Vec::new();
            let mut dead: Vec<UdpId> = Vec::new();
            let conflicts = |model: &[(UdpId, SocketAddr)], ip: IpAddr, port: u16| {
                model.iter().any(|(_, a)| {
                    a.port() == port
                        && a.is_ipv4() == ip.is_ipv4()
                        && (a.ip() == ip || a.ip().is_unspecified() || ip.is_unspecified())
                })
            };
            for _ in 0..400 {
                match rng.gen_range(0..4) {
                    0 | 1 => {
                        let ip = ips[rng.gen_range(0..ips.len())];
                        let port = if rng.gen_bool(0.5) {
                            0
                        } else {
                            rng.gen_range(5000..5008)
                        };
                        let start = rng.gen();
                        let got =
                            t.bind(SocketAddr::new(ip, port), EphemeralPorts { range, start });
                        let want = if model.len() >= 24 {
                            Err(BindError::Limit)
                        } else if port != 0 {
                            if conflicts(&model, ip, port) {
                                Err(BindError::InUse)
                            } else {
                                Ok(port)
                            }
                        } else {
                            (0..8)
                                .map(|i| 5000 + ((start % 8 + i) % 8) as u16)
                                .find(|&p| !conflicts(&model, ip, p))
                                .ok_or(BindError::NoPorts)
                        };
                        match (got, want) {
                            (Ok(id), Ok(p)) => {
                                let a = SocketAddr::new(ip, p);
                                assert_eq!(t.local_addr(id), Some(a));
                                model.push((id, a));
                            }
                            (got, want) => assert_eq!(got.map(|_| ()), want.map(|_| ())),
                        }
                    }
                    2 => {
                        if !model.is_empty() && rng.gen_bool(0.8) {
                            let (id, _) = model.swap_remove(rng.gen_range(0..model.len()));
                            assert!(t.close(id));
                            dead.push(id);
                        } else if let Some(&id) = dead.last() {
                            assert!(!t.close(id));
                        }
                    }
                    _ => {
                        let ip = ips[rng.gen_range(0..ips.len())];
                        if ip.is_unspecified() {
                            continue;
                        }
                        let dst = SocketAddr::new(ip, rng.gen_range(4999..5009));
                        let want = model
                            .iter()
                            .find(|(_, a)| *a == dst)
                            .or_else(|| {
                                model.iter().find(|(_, a)| {
                                    a.port() == dst.port()
                                        && a.ip().is_unspecified()
                                        && a.is_ipv4() == dst.is_ipv4()
                                })
                            })
                            .map(|(id, _)| *id);
                        assert_eq!(t.lookup(dst), want);
                    }
                }
                assert_eq!(t.len(), model.len());
                for id in &dead {
                    assert_eq!(t.local_addr(*id), None);
                }
            }
        }
    }
}
