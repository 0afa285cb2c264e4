//! The network layer: interfaces, routes, the neighbour cache, and the
//! output path from an upper-layer payload to a frame on a device.
//!
//! A frame is built in place in the device's buffer when the next hop's
//! link-layer address is known (the common case: one copy from a socket's
//! queue to the frame); otherwise the IP packet waits in the neighbour
//! cache and leaves when the address is learned.

mod announce;
pub mod iface;
pub mod policy;
pub mod route;

pub use announce::announcement;

use crate::neighbor::{self, NeighborCache, Resolve};
use crate::time::Instant;
use iface::{Iface, IfaceId, Mac};
use route::{NextHop, Routes};
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, IpProtocol, Ipv4Packet, Ipv6Address, Ipv6Packet,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const ETH_HEADER: usize = 14;
pub const IPV4_HEADER: usize = 20;
pub const IPV6_HEADER: usize = 40;

/// Where frames leave: the bindings' ports (or a test's wire).
pub trait Device {
    /// Sends one frame of `len` bytes on `iface`, written by `fill` into
    /// the device's own buffer. False: no room now (nothing was sent).
    fn transmit(&mut self, iface: IfaceId, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool;
}

/// What became of a packet handed to [`Ip::send`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    Sent,
    /// Waiting for the neighbour's address.
    Queued,
    /// The device has no room now: try again later.
    DeviceFull,
    NoRoute,
    /// Neither queued nor sent (neighbour cache full, and the like).
    Dropped,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct IpCounters {
    pub frames_in: u64,
    pub frames_out: u64,
    pub not_for_us: u64,
    pub malformed: u64,
    pub bad_checksum: u64,
    pub no_route: u64,
    pub device_full: u64,
    pub neighbor_drops: u64,
    pub unknown_protocol: u64,
    pub too_big: u64,
    /// Packets the policy discarded, sent and received.
    pub policy_discards_out: u64,
    pub policy_discards_in: u64,
}

/// An upper-layer packet to send: where, what, and who writes its bytes.
pub struct Packet<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: IpProtocol,
    /// Length of the upper-layer part.
    pub len: usize,
    /// Don't fragment (IPv4): set for TCP, whose segments fit the path.
    pub dont_fragment: bool,
    /// TCP's and UDP's (source, destination) ports, for policy.
    pub ports: Option<(u16, u16)>,
    /// Writes the upper-layer part (exactly `len` bytes, checksum included).
    pub fill: &'a mut dyn FnMut(&mut [u8]),
}

pub struct Ip {
    ifaces: Vec<Option<Iface>>,
    pub routes: Routes,
    pub neighbors: NeighborCache<(IpAddr, Vec<u8>)>,
    ident: u16,
    policy: Option<Box<dyn policy::Policy>>,
    pub counters: IpCounters,
}

impl Ip {
    pub fn new(seed: u64) -> Ip {
        Ip {
            ifaces: Vec::new(),
            routes: Routes::default(),
            neighbors: NeighborCache::new(neighbor_config(), seed),
            ident: (seed >> 16) as u16,
            policy: None,
            counters: IpCounters::default(),
        }
    }

    /// Installs the policy every packet passes (replacing any other).
    pub fn set_policy(&mut self, policy: Option<Box<dyn policy::Policy>>) {
        self.policy = policy;
    }

    /// Whether policy lets a packet leave (counted when it does not).
    pub fn policy_output(&mut self, s: &policy::Selector) -> bool {
        let ok = self
            .policy
            .as_mut()
            .is_none_or(|p| p.output(s) == policy::Verdict::Accept);
        self.counters.policy_discards_out += u64::from(!ok);
        ok
    }

    /// Whether policy lets a received datagram through to its transport.
    pub fn policy_input(&mut self, s: &policy::Selector) -> bool {
        let ok = self
            .policy
            .as_mut()
            .is_none_or(|p| p.input(s) == policy::Verdict::Accept);
        self.counters.policy_discards_in += u64::from(!ok);
        ok
    }

    pub fn add_iface(&mut self, iface: Iface) -> IfaceId {
        match self.ifaces.iter().position(Option::is_none) {
            Some(i) => {
                self.ifaces[i] = Some(iface);
                IfaceId(i)
            }
            None => {
                self.ifaces.push(Some(iface));
                IfaceId(self.ifaces.len() - 1)
            }
        }
    }

    pub fn remove_iface(&mut self, id: IfaceId) {
        if let Some(slot) = self.ifaces.get_mut(id.0) {
            *slot = None;
        }
        self.routes.remove_iface(id);
        self.neighbors.forget_iface(id.0);
    }

    pub fn iface(&self, id: IfaceId) -> Option<&Iface> {
        self.ifaces.get(id.0).and_then(Option::as_ref)
    }

    pub fn iface_mut(&mut self, id: IfaceId) -> Option<&mut Iface> {
        self.ifaces.get_mut(id.0).and_then(Option::as_mut)
    }

    pub fn ifaces(&self) -> impl Iterator<Item = (IfaceId, &Iface)> {
        self.ifaces
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.as_ref().map(|f| (IfaceId(i), f)))
    }

    /// The interface that owns `ip`, if any.
    pub fn owner(&self, ip: IpAddr) -> Option<IfaceId> {
        self.ifaces().find(|(_, f)| f.has_addr(ip)).map(|(i, _)| i)
    }

    /// Where a packet to `dst` goes, and from which address. A route
    /// whose link has no carrier still serves, as Linux keeps `linkdown`
    /// routes: what goes out meanwhile is lost and TCP sends it again, so
    /// a connect in a link's first moments (or during a flap) waits rather
    /// than fails.
    pub fn route(&self, dst: IpAddr) -> Option<(NextHop, IpAddr, usize)> {
        let hop = self.routes.lookup(dst)?;
        let iface = self.iface(hop.iface)?;
        let src = iface.source_for(dst)?;
        Some((hop, src, iface.mtu))
    }

    /// Sends an upper-layer packet along its route. The packet must fit
    /// the interface's MTU (the caller fragments or refuses).
    pub fn send(&mut self, now: Instant, dev: &mut dyn Device, p: Packet<'_>) -> Sent {
        let Some(hop) = self.routes.lookup(p.dst) else {
            self.counters.no_route += 1;
            return Sent::NoRoute;
        };
        self.send_via(now, dev, hop, p)
    }

    /// Sends along a given next hop.
    pub fn send_via(
        &mut self,
        now: Instant,
        dev: &mut dyn Device,
        hop: NextHop,
        p: Packet<'_>,
    ) -> Sent {
        let selector = policy::Selector {
            src: p.src,
            dst: p.dst,
            protocol: p.protocol,
            ports: p.ports,
            iface: hop.iface,
        };
        if !self.policy_output(&selector) {
            // As a packet lost on the way: the sender's own recovery applies.
            return Sent::Dropped;
        }
        let Some(iface) = self.iface(hop.iface) else {
            self.counters.no_route += 1;
            return Sent::NoRoute;
        };
        let header = if p.dst.is_ipv4() {
            IPV4_HEADER
        } else {
            IPV6_HEADER
        };
        if header + p.len > iface.mtu {
            self.counters.too_big += 1;
            return Sent::Dropped;
        }
        let src_mac = iface.mac;
        let ip_len = header + p.len;
        let ident = self.next_ident();
        let known = self
            .neighbors
            .get(now, hop.iface.0, hop.hop)
            .filter(|e| e.state == neighbor::NeighborState::Reachable)
            .and_then(|e| e.mac);
        let dst_mac = multicast_mac(p.dst).or(known);
        if let Some(mac) = dst_mac {
            let fill = p.fill;
            let (src, dst, protocol, df) = (p.src, p.dst, p.protocol, p.dont_fragment);
            let sent = dev.transmit(hop.iface, ETH_HEADER + ip_len, &mut |frame| {
                write_eth(frame, src_mac, mac, dst);
                let l4 = write_ip(
                    &mut frame[ETH_HEADER..],
                    src,
                    dst,
                    protocol,
                    p.len,
                    ident,
                    df,
                );
                fill(l4);
            });
            if !sent {
                self.counters.device_full += 1;
                return Sent::DeviceFull;
            }
            self.counters.frames_out += 1;
            return Sent::Sent;
        }
        let mut packet = vec![0u8; ip_len];
        let l4 = write_ip(
            &mut packet,
            p.src,
            p.dst,
            p.protocol,
            p.len,
            ident,
            p.dont_fragment,
        );
        (p.fill)(l4);
        self.resolve_and_send(now, dev, hop, p.dst, packet)
    }

    /// Sends a finished IP packet (a fragment, say) via `hop`.
    pub fn send_packet(
        &mut self,
        now: Instant,
        dev: &mut dyn Device,
        hop: NextHop,
        dst: IpAddr,
        packet: Vec<u8>,
    ) -> Sent {
        if let Some(mac) = multicast_mac(dst) {
            return if self.transmit_ip(dev, hop.iface, mac, &packet) {
                Sent::Sent
            } else {
                Sent::DeviceFull
            };
        }
        self.resolve_and_send(now, dev, hop, dst, packet)
    }

    /// Hands a finished IP packet to the neighbour cache.
    fn resolve_and_send(
        &mut self,
        now: Instant,
        dev: &mut dyn Device,
        hop: NextHop,
        dst: IpAddr,
        packet: Vec<u8>,
    ) -> Sent {
        match self
            .neighbors
            .resolve(now, hop.iface.0, hop.hop, (dst, packet))
        {
            Resolve::Send { mac, packet } => {
                if self.transmit_ip(dev, hop.iface, mac, &packet.1) {
                    Sent::Sent
                } else {
                    Sent::DeviceFull
                }
            }
            Resolve::Queued { displaced } => {
                self.counters.neighbor_drops += u64::from(displaced.is_some());
                Sent::Queued
            }
            Resolve::Dropped { .. } => {
                self.counters.neighbor_drops += 1;
                Sent::Dropped
            }
        }
    }

    /// Frames and sends a finished IP packet to `mac`.
    pub fn transmit_ip(
        &mut self,
        dev: &mut dyn Device,
        iface: IfaceId,
        mac: Mac,
        packet: &[u8],
    ) -> bool {
        let Some(f) = self.iface(iface) else {
            return false;
        };
        let src_mac = f.mac;
        let dst = if packet.first().is_some_and(|b| b >> 4 == 6) {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        let ok = dev.transmit(iface, ETH_HEADER + packet.len(), &mut |frame| {
            write_eth(frame, src_mac, mac, dst);
            frame[ETH_HEADER..].copy_from_slice(packet);
        });
        if ok {
            self.counters.frames_out += 1;
        } else {
            self.counters.device_full += 1;
        }
        ok
    }

    /// Packets that waited for `mac` leave now.
    pub fn release(
        &mut self,
        dev: &mut dyn Device,
        iface: IfaceId,
        mac: Mac,
        packets: Vec<(IpAddr, Vec<u8>)>,
    ) {
        for (_, p) in packets {
            self.transmit_ip(dev, iface, mac, &p);
        }
    }

    /// Solicitations that are due, and packets whose resolution failed.
    pub fn poll_neighbors(&mut self, now: Instant, dev: &mut dyn Device) {
        let mut actions = Vec::new();
        self.neighbors.poll(now, &mut |a| actions.push(a));
        for a in actions {
            match a {
                neighbor::Action::Solicit {
                    iface,
                    target,
                    unicast,
                } => {
                    self.solicit(dev, IfaceId(iface), target, unicast);
                }
                neighbor::Action::Dropped { .. } => self.counters.neighbor_drops += 1,
            }
        }
    }

    /// An ARP request or a Neighbor Solicitation for `target`.
    fn solicit(
        &mut self,
        dev: &mut dyn Device,
        iface: IfaceId,
        target: IpAddr,
        unicast: Option<Mac>,
    ) {
        let Some(f) = self.iface(iface) else { return };
        let mac = f.mac;
        let Some(src) = f.source_for(target) else {
            return;
        };
        match (src, target) {
            (IpAddr::V4(src), IpAddr::V4(target)) => {
                let repr = ArpRepr::EthernetIpv4 {
                    operation: ArpOperation::Request,
                    source_hardware_addr: EthernetAddress(mac),
                    source_protocol_addr: src,
                    target_hardware_addr: EthernetAddress([0; 6]),
                    target_protocol_addr: target,
                };
                let to = unicast.unwrap_or([0xff; 6]);
                self.send_arp(dev, iface, to, &repr);
            }
            (IpAddr::V6(src), IpAddr::V6(target)) => {
                let dst = match unicast {
                    Some(_) => target,
                    None => solicited_node(target),
                };
                let ns = smoltcp::wire::NdiscRepr::NeighborSolicit {
                    target_addr: target,
                    lladdr: Some(EthernetAddress(mac).into()),
                };
                let to =
                    unicast.unwrap_or_else(|| multicast_mac(IpAddr::V6(dst)).expect("multicast"));
                self.send_ndisc(dev, iface, to, src, dst, ns);
            }
            _ => {}
        }
    }

    pub fn send_arp(&mut self, dev: &mut dyn Device, iface: IfaceId, to: Mac, repr: &ArpRepr) {
        let Some(f) = self.iface(iface) else { return };
        let src_mac = f.mac;
        let len = ETH_HEADER + repr.buffer_len();
        let ok = dev.transmit(iface, len, &mut |frame| {
            let mut eth = EthernetFrame::new_unchecked(&mut *frame);
            EthernetRepr {
                src_addr: EthernetAddress(src_mac),
                dst_addr: EthernetAddress(to),
                ethertype: EthernetProtocol::Arp,
            }
            .emit(&mut eth);
            repr.emit(&mut ArpPacket::new_unchecked(eth.payload_mut()));
        });
        self.counters.frames_out += u64::from(ok);
    }

    /// An NDP message (hop limit 255, RFC 4861 6.1.1).
    pub fn send_ndisc(
        &mut self,
        dev: &mut dyn Device,
        iface: IfaceId,
        to: Mac,
        src: Ipv6Address,
        dst: Ipv6Address,
        repr: smoltcp::wire::NdiscRepr<'_>,
    ) {
        let Some(f) = self.iface(iface) else { return };
        let src_mac = f.mac;
        let icmp = smoltcp::wire::Icmpv6Repr::Ndisc(repr);
        let l4 = icmp.buffer_len();
        let len = ETH_HEADER + IPV6_HEADER + l4;
        let ok = dev.transmit(iface, len, &mut |frame| {
            write_eth(frame, src_mac, to, IpAddr::V6(dst));
            write_ip(
                &mut frame[ETH_HEADER..],
                IpAddr::V6(src),
                IpAddr::V6(dst),
                IpProtocol::Icmpv6,
                l4,
                0,
                false,
            );
            Ipv6Packet::new_unchecked(&mut frame[ETH_HEADER..]).set_hop_limit(255);
            let mut pkt =
                smoltcp::wire::Icmpv6Packet::new_unchecked(&mut frame[ETH_HEADER + IPV6_HEADER..]);
            icmp.emit(
                &src,
                &dst,
                &mut pkt,
                &smoltcp::phy::ChecksumCapabilities::default(),
            );
        });
        self.counters.frames_out += u64::from(ok);
    }

    fn next_ident(&mut self) -> u16 {
        self.ident = self.ident.wrapping_add(1);
        self.ident
    }
}

/// Packets queued per unresolved neighbour: every fragment of the largest
/// UDP datagram (65535 bytes in 1232-byte IPv6 fragments at the 1280 MTU
/// floor is 54), so that a datagram sent before resolution is not cut to
/// its last few fragments and lost whole. Linux bounds the queue by bytes
/// (`unres_qlen_bytes`, 208 KiB by default) for the same reason.
const NEIGHBOR_QUEUE: usize = 64;

fn neighbor_config() -> neighbor::NeighborConfig {
    neighbor::NeighborConfig {
        queue_len: NEIGHBOR_QUEUE,
        ..Default::default()
    }
}

/// The Ethernet header, toward `mac`.
fn write_eth(frame: &mut [u8], src: Mac, dst: Mac, ip: IpAddr) {
    frame[0..6].copy_from_slice(&dst);
    frame[6..12].copy_from_slice(&src);
    let ethertype: u16 = if ip.is_ipv4() { 0x0800 } else { 0x86dd };
    frame[12..14].copy_from_slice(&ethertype.to_be_bytes());
}

/// The IP header at the front of `buf`; returns the upper-layer part.
pub fn write_ip(
    buf: &mut [u8],
    src: IpAddr,
    dst: IpAddr,
    protocol: IpProtocol,
    len: usize,
    ident: u16,
    df: bool,
) -> &mut [u8] {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut p = Ipv4Packet::new_unchecked(&mut buf[..IPV4_HEADER + len]);
            p.set_version(4);
            p.set_header_len(IPV4_HEADER as u8);
            p.set_dscp(0);
            p.set_ecn(0);
            p.set_total_len((IPV4_HEADER + len) as u16);
            p.set_ident(ident);
            p.clear_flags();
            p.set_dont_frag(df);
            p.set_more_frags(false);
            p.set_frag_offset(0);
            p.set_hop_limit(64);
            p.set_next_header(protocol);
            p.set_src_addr(s);
            p.set_dst_addr(d);
            p.fill_checksum();
            &mut buf[IPV4_HEADER..IPV4_HEADER + len]
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut p = Ipv6Packet::new_unchecked(&mut buf[..IPV6_HEADER + len]);
            p.set_version(6);
            p.set_traffic_class(0);
            p.set_flow_label(0);
            p.set_payload_len(len as u16);
            p.set_next_header(protocol);
            p.set_hop_limit(64);
            p.set_src_addr(s);
            p.set_dst_addr(d);
            &mut buf[IPV6_HEADER..IPV6_HEADER + len]
        }
        _ => &mut buf[..0],
    }
}

/// The solicited-node multicast address of `a` (RFC 4291 2.7.1).
pub fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// The link-layer address of a multicast or broadcast destination
/// (RFC 1112 6.4, RFC 2464 7).
pub fn multicast_mac(ip: IpAddr) -> Option<Mac> {
    match ip {
        IpAddr::V4(a) if a.is_broadcast() => Some([0xff; 6]),
        IpAddr::V4(a) if a.is_multicast() => {
            let o = a.octets();
            Some([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
        }
        IpAddr::V6(a) if a.is_multicast() => {
            let o = a.octets();
            Some([0x33, 0x33, o[12], o[13], o[14], o[15]])
        }
        _ => None,
    }
}
