//! The engine's top: frames in ([`Stack::receive`]), time in
//! ([`Stack::poll`]), socket calls; frames out through a [`Device`],
//! socket events out through [`Stack::next_event`], and the next deadline
//! from [`Stack::next_deadline`].
//!
//! - `input`: every received frame judged once: Ethernet, ARP, IPv4/IPv6
//!   (with reassembly), ICMP and neighbour discovery, then the transport.
//! - `tcp`: TCP's way down (segments to packets) and the socket calls.
//! - `udp`: UDP datagrams both ways, fragmented when larger than the path.
//! - `errors`: ICMP errors sent (rate limited) and received (path MTU).

mod errors;
mod input;
mod tcp;
mod udp;

use crate::frag::{FragLimits, Reassembler};
use crate::icmp::{IcmpRateLimiter, PmtuCache, RateLimitConfig};
use crate::ip::iface::{Cidr, Iface, IfaceId, Mac};
use crate::ip::route::Route;
use crate::ip::{Device, Ip};
use crate::tcp::{ListenerId, Mark, Tcp, TcpId, TcpLimits};
use crate::time::Instant;
use crate::udp::{PortRange, UdpId, UdpLimits, UdpSockets};
use std::collections::VecDeque;
use std::net::IpAddr;

pub use tcp::ConnectError;
pub use udp::UdpSendError;

/// What the bindings know about a received frame.
#[derive(Clone, Copy, Debug, Default)]
pub struct RxMeta {
    /// The NIC verified every checksum in it.
    pub checksum_ok: bool,
    /// What the NIC's offload did to a TCP segment's payload in it.
    pub mark: Mark,
}

/// How an engine starts.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Keys for ISNs, SYN cookies, the neighbour cache's jitter and the
    /// ICMP limiter: drawn at random by the bindings (the core has no RNG).
    pub secret: [u8; 32],
    pub tcp: TcpLimits,
    pub udp: UdpLimits,
    /// The ephemeral port range (IANA's 49152-65535 by default).
    pub ephemeral: PortRange,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            secret: [0; 32],
            tcp: TcpLimits::default(),
            udp: UdpLimits::default(),
            ephemeral: PortRange::IANA,
        }
    }
}

/// What the application side should look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A TCP connection became readable, writable, established or ended.
    Tcp(TcpId),
    /// A connection waits in a listener's accept queue.
    Accept(ListenerId),
    /// A datagram waits on a UDP socket.
    Udp(UdpId),
}

/// Counters of the layers the stack owns itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct StackCounters {
    pub icmp_in: u64,
    pub icmp_errors_sent: u64,
    pub icmp_errors_limited: u64,
    pub echo_replies: u64,
    pub frag_errors: u64,
    pub reassembled: u64,
    pub pmtu_updates: u64,
    pub fragments_sent: u64,
}

pub struct Stack {
    pub ip: Ip,
    pub tcp: Tcp,
    pub udp: UdpSockets,
    reasm: Reassembler,
    limiter: IcmpRateLimiter,
    pub pmtu: PmtuCache,
    ephemeral: PortRange,
    /// Where the next ephemeral search starts (RFC 6056 3.3.2's "simple
    /// hash-based" would need a hash per call; a walking counter seeded
    /// from the secret is Linux's `inet_hash_connect` without the hash).
    next_port: u32,
    udp_events: VecDeque<UdpId>,
    /// The identification of the next fragmented datagram.
    ip_ident: u32,
    pub counters: StackCounters,
}

impl Stack {
    pub fn new(now: Instant, config: Config) -> Stack {
        let seed = u64::from_le_bytes(config.secret[..8].try_into().expect("8 bytes"));
        let mut limiter_key = [0u8; 16];
        limiter_key.copy_from_slice(&config.secret[8..24]);
        Stack {
            ip: Ip::new(seed ^ 0x9e37_79b9_7f4a_7c15),
            tcp: Tcp::new(now, config.secret, config.tcp),
            udp: UdpSockets::new(config.udp),
            reasm: Reassembler::new(FragLimits::default()),
            limiter: IcmpRateLimiter::new(RateLimitConfig::default(), limiter_key, now),
            pmtu: PmtuCache::new(4096),
            ephemeral: config.ephemeral,
            next_port: (seed >> 32) as u32,
            udp_events: VecDeque::new(),
            ip_ident: seed as u32,
            counters: StackCounters::default(),
        }
    }

    pub fn add_iface(&mut self, mac: Mac, mtu: usize) -> IfaceId {
        self.ip.add_iface(Iface::new(mac, mtu))
    }

    /// Adds an address and its connected route.
    pub fn add_address(&mut self, iface: IfaceId, cidr: Cidr) -> Result<(), String> {
        let f = self.ip.iface_mut(iface).ok_or("no such interface")?;
        if f.has_addr(cidr.addr) {
            return Err(format!("{cidr} already present"));
        }
        f.addrs.push(cidr);
        let to = Cidr::new(mask(cidr.addr, cidr.prefix), cidr.prefix)?;
        let _ = self.ip.routes.add(Route {
            to,
            via: None,
            iface,
        });
        Ok(())
    }

    /// A route through a gateway on a connected prefix.
    pub fn add_route(&mut self, to: Cidr, via: IpAddr) -> Result<(), String> {
        let hop = self
            .ip
            .routes
            .lookup(via)
            .ok_or_else(|| format!("gateway {via} is not on a connected prefix"))?;
        self.ip.routes.add(Route {
            to,
            via: Some(via),
            iface: hop.iface,
        })
    }

    /// Installs the IP policy every packet passes (the IPsec SPD's hook).
    pub fn set_policy(&mut self, policy: Option<Box<dyn crate::ip::policy::Policy>>) {
        self.ip.set_policy(policy);
    }

    /// Timers, neighbour solicitations, reassembly timeouts, and output of
    /// every socket with something to send.
    pub fn poll(&mut self, now: Instant, dev: &mut dyn Device) {
        self.ip.poll_neighbors(now, dev);
        self.expire_fragments(now, dev);
        self.tcp_poll(now, dev);
    }

    /// When [`poll`](Self::poll) is next needed (now, if output waits).
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.tcp.next_deadline(),
            self.ip.neighbors.next_deadline(),
            self.reasm.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next socket the application side should look at.
    pub fn next_event(&mut self) -> Option<Event> {
        if let Some(e) = self.tcp.next_event() {
            return Some(match e {
                crate::tcp::Event::Conn(id) => Event::Tcp(id),
                crate::tcp::Event::Accept(id) => Event::Accept(id),
            });
        }
        self.udp_events.pop_front().map(Event::Udp)
    }

    /// Whether `ip` is one of ours (the weak host model: on any interface).
    fn is_local(&self, ip: IpAddr) -> bool {
        self.ip.owner(ip).is_some()
    }

    /// The path MTU toward `dst`: the route's link MTU, lowered by what
    /// ICMP taught us.
    fn path_mtu(&self, now: Instant, dst: IpAddr) -> Option<(IpAddr, usize)> {
        let (_, src, mtu) = self.ip.route(dst)?;
        let learnt = self
            .pmtu
            .get(now, dst)
            .map_or(mtu, |p| (p as usize).min(mtu));
        Some((src, learnt))
    }
}

/// The network part of an address.
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

fn unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_multicast() || a.is_broadcast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
    }
}
