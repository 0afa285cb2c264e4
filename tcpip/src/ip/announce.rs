//! What an interface says of its addresses when a bond leg takes over: a gratuitous
//! ARP (IPv4) or an unsolicited neighbour advertisement (IPv6), so that
//! peers and switches learn the new path at once.

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv6Packet, Ipv6Repr, NdiscNeighborFlags,
    NdiscRepr, IPV6_LINK_LOCAL_ALL_NODES,
};
use std::net::IpAddr;

/// Writes a gratuitous ARP (IPv4) or an unsolicited neighbour advertisement
/// (IPv6) for `addr` into `buf`; returns its length.
pub fn announcement(buf: &mut [u8], mac: [u8; 6], addr: IpAddr) -> usize {
    let mac = EthernetAddress(mac);
    match addr {
        IpAddr::V4(ip) => {
            let arp = ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Request,
                source_hardware_addr: mac,
                source_protocol_addr: ip,
                target_hardware_addr: EthernetAddress([0; 6]),
                target_protocol_addr: ip,
            };
            let eth = EthernetRepr {
                src_addr: mac,
                dst_addr: EthernetAddress::BROADCAST,
                ethertype: EthernetProtocol::Arp,
            };
            let len = eth.buffer_len() + arp.buffer_len();
            let mut frame = EthernetFrame::new_unchecked(&mut buf[..len]);
            eth.emit(&mut frame);
            arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
            len
        }
        IpAddr::V6(ip) => {
            let icmp = Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
                flags: NdiscNeighborFlags::OVERRIDE,
                target_addr: ip,
                lladdr: Some(mac.into()),
            });
            let ipr = Ipv6Repr {
                src_addr: ip,
                dst_addr: IPV6_LINK_LOCAL_ALL_NODES,
                next_header: IpProtocol::Icmpv6,
                payload_len: icmp.buffer_len(),
                hop_limit: 255,
            };
            let eth = EthernetRepr {
                src_addr: mac,
                dst_addr: EthernetAddress([0x33, 0x33, 0, 0, 0, 1]),
                ethertype: EthernetProtocol::Ipv6,
            };
            let len = eth.buffer_len() + ipr.buffer_len() + icmp.buffer_len();
            let mut frame = EthernetFrame::new_unchecked(&mut buf[..len]);
            eth.emit(&mut frame);
            let mut packet = Ipv6Packet::new_unchecked(frame.payload_mut());
            ipr.emit(&mut packet);
            icmp.emit(
                &ip,
                &IPV6_LINK_LOCAL_ALL_NODES,
                &mut Icmpv6Packet::new_unchecked(packet.payload_mut()),
                &ChecksumCapabilities::default(),
            );
            len
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::Ipv6Packet;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn announcements_parse_back() {
        let mut buf = vec![0u8; 256];
        let mac = [2, 0, 0, 0, 0, 9];
        let ip = Ipv4Addr::new(10, 0, 0, 7);
        let len = announcement(&mut buf, mac, IpAddr::V4(ip));
        let eth = EthernetFrame::new_checked(&buf[..len]).unwrap();
        assert_eq!(eth.dst_addr(), EthernetAddress::BROADCAST);
        let arp = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
        match arp {
            ArpRepr::EthernetIpv4 {
                source_hardware_addr,
                source_protocol_addr,
                target_protocol_addr,
                ..
            } => {
                assert_eq!(source_hardware_addr, EthernetAddress(mac));
                assert_eq!(source_protocol_addr, ip);
                assert_eq!(target_protocol_addr, ip);
            }
            _ => panic!("not an IPv4 ARP"),
        }
        let v6 = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
        let len = announcement(&mut buf, mac, IpAddr::V6(v6));
        let eth = EthernetFrame::new_checked(&buf[..len]).unwrap();
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(ip.hop_limit(), 255);
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr()));
        match Icmpv6Repr::parse(
            &ip.src_addr(),
            &ip.dst_addr(),
            &icmp,
            &ChecksumCapabilities::default(),
        )
        .unwrap()
        {
            Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
                flags, target_addr, ..
            }) => {
                assert!(flags.contains(NdiscNeighborFlags::OVERRIDE));
                assert_eq!(target_addr, v6);
            }
            other => panic!("not a neighbour advertisement: {other:?}"),
        }
    }
}
