//! Every received frame, judged once: Ethernet, then ARP or IP (lengths,
//! checksums, addresses, fragments), then ICMP, neighbour discovery or the
//! transport. A bad frame is counted and dropped; nothing here panics on
//! what a frame says.

use super::{Event, Stack};
use crate::frag::FragKey;
use crate::icmp;
use crate::ip::iface::IfaceId;
use crate::ip::Device;
use crate::neighbor::Learned;
use crate::tcp::Mark;
use crate::time::Instant;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv4Packet, Ipv6FragmentHeader, Ipv6Packet,
    NdiscNeighborFlags, NdiscRepr,
};
use std::net::{IpAddr, Ipv6Addr};

/// What the link layer says about a frame's IP packet.
#[derive(Clone, Copy)]
struct Link {
    iface: IfaceId,
    checksum_ok: bool,
    /// What the NIC did to the payload it carries.
    mark: Mark,
    /// The frame went to a link-layer broadcast or multicast address.
    multicast: bool,
}

/// A fragment's place in its datagram.
struct Fragment<'a> {
    key: FragKey,
    offset: usize,
    more: bool,
    /// The unfragmentable part, with the offset-0 fragment only.
    header: &'a [u8],
}

/// One received IP datagram, reassembled if it came in fragments.
pub(super) struct Datagram<'a> {
    pub iface: IfaceId,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: IpProtocol,
    /// The upper-layer bytes.
    pub body: &'a [u8],
    /// The whole IP packet as received (for ICMP errors that quote it).
    pub packet: &'a [u8],
    /// Addressed to a broadcast or multicast address.
    pub multicast: bool,
    /// Came in a link-layer broadcast or multicast frame, whatever its IP
    /// destination: no ICMP error and no TCP answers it (RFC 1122 3.2.2;
    /// Linux's `pkt_type != PACKET_HOST`).
    pub link_multicast: bool,
    pub checksum_ok: bool,
    /// What the NIC did to the payload.
    pub mark: Mark,
    pub hop_limit: u8,
}

impl Stack {
    /// Takes one received frame.
    pub fn receive(
        &mut self,
        now: Instant,
        iface: IfaceId,
        frame: &[u8],
        meta: super::RxMeta,
        dev: &mut dyn Device,
    ) {
        self.ip.counters.frames_in += 1;
        let Some(mac) = self.ip.iface(iface).map(|f| f.mac) else {
            return;
        };
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            self.ip.counters.malformed += 1;
            return;
        };
        let dst = eth.dst_addr().0;
        if dst != mac && dst[0] & 1 == 0 {
            self.ip.counters.not_for_us += 1;
            return;
        }
        let link = Link {
            iface,
            checksum_ok: meta.checksum_ok,
            mark: meta.mark,
            multicast: dst[0] & 1 != 0,
        };
        match eth.ethertype() {
            EthernetProtocol::Arp => self.arp_input(now, iface, eth.payload(), dev),
            EthernetProtocol::Ipv4 => self.ipv4_input(now, link, eth.payload(), dev),
            EthernetProtocol::Ipv6 => self.ipv6_input(now, link, eth.payload(), dev),
            _ => self.ip.counters.unknown_protocol += 1,
        }
    }

    fn arp_input(&mut self, now: Instant, iface: IfaceId, payload: &[u8], dev: &mut dyn Device) {
        let Ok(repr) = ArpPacket::new_checked(payload).and_then(|p| ArpRepr::parse(&p)) else {
            self.ip.counters.malformed += 1;
            return;
        };
        let ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        } = repr
        else {
            return;
        };
        let Some(f) = self.ip.iface(iface) else {
            return;
        };
        let ours = f.has_addr(IpAddr::V4(target_protocol_addr));
        let our_mac = f.mac;
        let how = match (operation, ours) {
            (ArpOperation::Reply, true) => Learned::Solicited {
                override_flag: true,
            },
            (ArpOperation::Request, true) => Learned::Request,
            _ => Learned::Unsolicited {
                override_flag: true,
            },
        };
        let sender_mac = source_hardware_addr.0;
        if !source_protocol_addr.is_unspecified() && sender_mac[0] & 1 == 0 {
            let sender = IpAddr::V4(source_protocol_addr);
            let released = self
                .ip
                .neighbors
                .learn(now, iface.0, sender, sender_mac, how);
            self.ip.release(dev, iface, sender_mac, released);
        }
        if operation == ArpOperation::Request && ours {
            let reply = ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: EthernetAddress(our_mac),
                source_protocol_addr: target_protocol_addr,
                target_hardware_addr: source_hardware_addr,
                target_protocol_addr: source_protocol_addr,
            };
            self.ip.send_arp(dev, iface, sender_mac, &reply);
        }
    }

    fn ipv4_input(&mut self, now: Instant, link: Link, payload: &[u8], dev: &mut dyn Device) {
        let Link {
            iface,
            checksum_ok,
            mark,
            multicast: link_multicast,
        } = link;
        let Ok(p) = Ipv4Packet::new_checked(payload) else {
            self.ip.counters.malformed += 1;
            return;
        };
        if p.version() != 4 {
            self.ip.counters.malformed += 1;
            return;
        }
        if !checksum_ok && !p.verify_checksum() {
            self.ip.counters.bad_checksum += 1;
            return;
        }
        let dst4 = p.dst_addr();
        let (src, dst) = (IpAddr::V4(p.src_addr()), IpAddr::V4(dst4));
        let broadcast = dst4.is_broadcast()
            || self
                .ip
                .iface(iface)
                .is_some_and(|f| f.addrs.iter().any(|c| c.broadcast_v4() == Some(dst4)));
        let multicast = broadcast || dst4.is_multicast();
        if !self.is_local(dst) && !multicast {
            self.ip.counters.not_for_us += 1;
            return;
        }
        // Martians (RFC 1122 3.2.1.3): a loopback source never comes from
        // a wire, and the ICMP rules trust that it did not.
        let src4 = p.src_addr();
        if src4.is_broadcast() || src4.is_multicast() || src4.is_loopback() {
            self.ip.counters.malformed += 1;
            return;
        }
        let header_len = usize::from(p.header_len());
        let total = usize::from(p.total_len());
        let packet = &payload[..total];
        let body = &packet[header_len..];
        let protocol = p.next_header();
        let hop_limit = p.hop_limit();
        let d = Datagram {
            iface,
            src,
            dst,
            protocol,
            body,
            packet,
            multicast,
            checksum_ok,
            mark,
            hop_limit,
            link_multicast,
        };
        if p.more_frags() || p.frag_offset() != 0 {
            let key = FragKey::V4 {
                src: src4,
                dst: dst4,
                id: p.ident(),
                protocol: protocol.into(),
            };
            let offset = usize::from(p.frag_offset());
            let header = if offset == 0 {
                &packet[..header_len]
            } else {
                &[][..]
            };
            let fragment = Fragment {
                key,
                offset,
                more: p.more_frags(),
                header,
            };
            self.reassemble(now, fragment, d, dev);
            return;
        }
        self.deliver(now, d, dev);
    }

    fn ipv6_input(&mut self, now: Instant, link: Link, payload: &[u8], dev: &mut dyn Device) {
        let Link {
            iface,
            checksum_ok,
            mark,
            multicast: link_multicast,
        } = link;
        let Ok(p) = Ipv6Packet::new_checked(payload) else {
            self.ip.counters.malformed += 1;
            return;
        };
        if p.version() != 6 {
            self.ip.counters.malformed += 1;
            return;
        }
        let (src6, dst6) = (p.src_addr(), p.dst_addr());
        let (src, dst) = (IpAddr::V6(src6), IpAddr::V6(dst6));
        if !self.is_local(dst) && !dst6.is_multicast() {
            self.ip.counters.not_for_us += 1;
            return;
        }
        // RFC 4291 2.5.3: ::1 received on an interface is dropped.
        if src6.is_multicast() || src6.is_loopback() {
            self.ip.counters.malformed += 1;
            return;
        }
        let packet = &payload[..40 + usize::from(p.payload_len())];
        let body = &packet[40..];
        let Ok((protocol, at)) = capnet_wire::ipv6::upper_layer(p.next_header(), body) else {
            self.ip.counters.malformed += 1;
            return;
        };
        let hop_limit = p.hop_limit();
        if protocol == IpProtocol::Ipv6Frag {
            // Next header, reserved, then smoltcp's fragment header view.
            let Some(frag) = body.get(at..at + 8) else {
                self.ip.counters.malformed += 1;
                return;
            };
            let next_header = IpProtocol::from(frag[0]);
            let f = Ipv6FragmentHeader::new_unchecked(&frag[2..]);
            let key = FragKey::V6 {
                src: src6,
                dst: dst6,
                id: f.ident(),
            };
            let offset = usize::from(f.frag_offset()) * 8;
            let data = &body[at + 8..];
            // The unfragmentable part, its last next-header the fragment's.
            let mut header = Vec::new();
            if offset == 0 {
                header.extend_from_slice(&packet[..40 + at]);
                let next: u8 = frag[0];
                if at == 0 {
                    header[6] = next;
                } else {
                    // The extension header before the fragment header names
                    // it (the walk above checked every length).
                    let mut pos = 0;
                    while pos < at {
                        let h = smoltcp::wire::Ipv6ExtHeader::new_unchecked(&body[pos..]);
                        let len = 8 + usize::from(h.header_len()) * 8;
                        if pos + len >= at {
                            header[40 + pos] = next;
                        }
                        pos += len;
                    }
                }
            }
            // The fragment header's next header says what the payload is.
            let d = Datagram {
                iface,
                src,
                dst,
                protocol: next_header,
                body: data,
                packet,
                multicast: dst6.is_multicast(),
                checksum_ok,
                mark,
                hop_limit,
                link_multicast,
            };
            let fragment = Fragment {
                key,
                offset,
                more: f.more_frags(),
                header: &header,
            };
            self.reassemble(now, fragment, d, dev);
            return;
        }
        let d = Datagram {
            iface,
            src,
            dst,
            protocol,
            body: &body[at..],
            packet,
            multicast: dst6.is_multicast(),
            checksum_ok,
            mark,
            hop_limit,
            link_multicast,
        };
        self.deliver(now, d, dev);
    }

    /// A fragment (`d` its datagram so far: body the fragment's data) goes
    /// to reassembly; the datagram it completes is delivered.
    fn reassemble(&mut self, now: Instant, f: Fragment<'_>, d: Datagram<'_>, dev: &mut dyn Device) {
        let whole = match self
            .reasm
            .insert(now, f.key, f.offset, f.more, d.body, f.header)
        {
            Ok(Some(whole)) => whole,
            Ok(None) => return,
            Err(_) => {
                self.counters.frag_errors += 1;
                return;
            }
        };
        self.counters.reassembled += 1;
        let mut rebuilt = whole.header.clone();
        rebuilt.extend_from_slice(&whole.payload);
        // IPv6's payload may start with more extension headers.
        let (protocol, at) = match f.key {
            FragKey::V4 { .. } => (d.protocol, 0),
            FragKey::V6 { .. } => {
                match capnet_wire::ipv6::upper_layer(d.protocol, &whole.payload) {
                    Ok(walked) => walked,
                    Err(_) => {
                        self.ip.counters.malformed += 1;
                        return;
                    }
                }
            }
        };
        let d = Datagram {
            protocol,
            body: &whole.payload[at..],
            packet: &rebuilt,
            // The NIC checked fragments, not the datagram, and offloads
            // only whole segments.
            checksum_ok: false,
            mark: Mark::Plain,
            ..d
        };
        self.deliver(now, d, dev);
    }

    /// The upper layer of a datagram addressed to us.
    fn deliver(&mut self, now: Instant, d: Datagram<'_>, dev: &mut dyn Device) {
        // Neighbour discovery is the link's business (RFC 4301 bypass).
        let neighbour_discovery =
            d.protocol == IpProtocol::Icmpv6 && matches!(d.body.first(), Some(133..=137));
        if !neighbour_discovery {
            let selector = crate::ip::policy::Selector {
                src: d.src,
                dst: d.dst,
                protocol: d.protocol,
                ports: crate::ip::policy::ports(d.protocol, d.body),
                iface: d.iface,
            };
            if !self.ip.policy_input(&selector) {
                return;
            }
        }
        match d.protocol {
            IpProtocol::Tcp if !d.multicast && !d.link_multicast => self.tcp_input(now, &d, dev),
            IpProtocol::Udp => self.udp_input(now, &d, dev),
            IpProtocol::Icmp if d.src.is_ipv4() => self.icmpv4_input(now, &d, dev),
            IpProtocol::Icmpv6 if d.src.is_ipv6() => self.icmpv6_input(now, &d, dev),
            IpProtocol::Tcp => self.ip.counters.not_for_us += 1,
            _ => {
                self.ip.counters.unknown_protocol += 1;
                self.protocol_unreachable(now, &d, dev);
            }
        }
    }

    fn icmpv4_input(&mut self, now: Instant, d: &Datagram<'_>, dev: &mut dyn Device) {
        self.counters.icmp_in += 1;
        match d.body.first() {
            Some(8) => {
                // Linux ignores broadcast pings (icmp_echo_ignore_broadcasts).
                if d.multicast {
                    return;
                }
                let mut reply = Vec::new();
                if icmp::echo_reply_v4(d.body, &mut reply).is_ok() {
                    self.counters.echo_replies += 1;
                    self.send_icmp(now, dev, d.dst, d.src, &reply);
                }
            }
            Some(3 | 11 | 12) => self.icmp_error_input(now, d),
            _ => {}
        }
    }

    fn icmpv6_input(&mut self, now: Instant, d: &Datagram<'_>, dev: &mut dyn Device) {
        self.counters.icmp_in += 1;
        let (IpAddr::V6(src), IpAddr::V6(dst)) = (d.src, d.dst) else {
            return;
        };
        match d.body.first() {
            Some(128) => {
                let reply_src = if dst.is_multicast() {
                    match self.ip.iface(d.iface).and_then(|f| f.source_for(d.src)) {
                        Some(IpAddr::V6(a)) => a,
                        _ => return,
                    }
                } else {
                    dst
                };
                let mut reply = Vec::new();
                if icmp::echo_reply_v6(d.body, src, dst, reply_src, &mut reply).is_ok() {
                    self.counters.echo_replies += 1;
                    self.send_icmp(now, dev, IpAddr::V6(reply_src), d.src, &reply);
                }
                return;
            }
            Some(1..=4) => {
                self.icmp_error_input(now, d);
                return;
            }
            Some(135 | 136) => {}
            _ => return,
        }
        let caps = smoltcp::phy::ChecksumCapabilities::default();
        let Ok(Icmpv6Repr::Ndisc(nd)) = Icmpv6Packet::new_checked(d.body)
            .and_then(|p| Icmpv6Repr::parse(&src, &dst, &p, &caps))
        else {
            self.ip.counters.malformed += 1;
            return;
        };
        // RFC 4861 7.1.1: only from on-link, hop limit 255.
        if d.hop_limit != 255 {
            self.ip.counters.malformed += 1;
            return;
        }
        self.ndisc_input(now, d.iface, src, nd, dev);
    }

    fn ndisc_input(
        &mut self,
        now: Instant,
        iface: IfaceId,
        src: Ipv6Addr,
        nd: NdiscRepr<'_>,
        dev: &mut dyn Device,
    ) {
        match nd {
            NdiscRepr::NeighborSolicit {
                target_addr,
                lladdr,
            } => {
                let Some(f) = self.ip.iface(iface) else {
                    return;
                };
                if !f.has_addr(IpAddr::V6(target_addr)) {
                    return;
                }
                let our_mac = f.mac;
                let mac: Option<[u8; 6]> = lladdr.and_then(|l| l.as_bytes().try_into().ok());
                if let (Some(mac), false) = (mac, src.is_unspecified()) {
                    let released = self.ip.neighbors.learn(
                        now,
                        iface.0,
                        IpAddr::V6(src),
                        mac,
                        Learned::Request,
                    );
                    self.ip.release(dev, iface, mac, released);
                }
                // To the asker, or to all nodes for DAD (RFC 4861 7.2.4).
                // A unicast reachability probe may leave out its link-layer
                // address (7.2.2): the asker is then reached by the one
                // the cache holds, or its probe, wanting a solicited
                // advertisement, would never succeed.
                let mac = mac.or_else(|| {
                    let known = (!src.is_unspecified())
                        .then(|| self.ip.neighbors.get(now, iface.0, IpAddr::V6(src)))?;
                    known?.mac
                });
                let all = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
                let (to_ip, to_mac, flags) = match (src.is_unspecified(), mac) {
                    (false, Some(m)) => (
                        src,
                        m,
                        NdiscNeighborFlags::SOLICITED | NdiscNeighborFlags::OVERRIDE,
                    ),
                    _ => (
                        all,
                        crate::ip::multicast_mac(IpAddr::V6(all)).expect("multicast"),
                        NdiscNeighborFlags::OVERRIDE,
                    ),
                };
                let na = NdiscRepr::NeighborAdvert {
                    flags,
                    target_addr,
                    lladdr: Some(EthernetAddress(our_mac).into()),
                };
                self.ip
                    .send_ndisc(dev, iface, to_mac, target_addr, to_ip, na);
            }
            NdiscRepr::NeighborAdvert {
                flags,
                target_addr,
                lladdr,
            } => {
                let solicited = flags.contains(NdiscNeighborFlags::SOLICITED);
                let Some(mac) = lladdr.and_then(|l| l.as_bytes().try_into().ok()) else {
                    if solicited {
                        self.ip
                            .neighbors
                            .confirm(now, iface.0, IpAddr::V6(target_addr));
                    }
                    return;
                };
                let override_flag = flags.contains(NdiscNeighborFlags::OVERRIDE);
                let how = if solicited {
                    Learned::Solicited { override_flag }
                } else {
                    Learned::Unsolicited { override_flag }
                };
                let released =
                    self.ip
                        .neighbors
                        .learn(now, iface.0, IpAddr::V6(target_addr), mac, how);
                self.ip.release(dev, iface, mac, released);
            }
            _ => {}
        }
    }

    pub(super) fn udp_event(&mut self, id: crate::udp::UdpId) {
        if !self.udp_events.contains(&id) {
            self.udp_events.push_back(id);
        }
        let _ = Event::Udp(id);
    }
}
