//! What a link says of its addresses when a leg takes over: a gratuitous
//! ARP (IPv4) or an unsolicited neighbour advertisement (IPv6), so that
//! peers and switches learn the new path at once.

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Icmpv6Packet, Icmpv6Repr, IpAddress, IpProtocol, Ipv6Packet, Ipv6Repr,
    NdiscNeighborFlags, NdiscRepr, IPV6_LINK_LOCAL_ALL_NODES,
};

/// Writes a gratuitous ARP (IPv4) or an unsolicited neighbour advertisement
/// (IPv6) for `addr` into `buf`; returns its length.
pub(super) fn build_announcement(buf: &mut [u8], mac: [u8; 6], addr: IpAddress) -> usize {
    let mac = EthernetAddress(mac);
    match addr {
        IpAddress::Ipv4(ip) => {
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
        IpAddress::Ipv6(ip) => {
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
