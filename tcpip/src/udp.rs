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
mod tests;
