use super::*;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, Icmpv6Packet, Icmpv6Repr, IpAddress,
    Ipv6Packet, NdiscNeighborFlags, NdiscRepr,
};
use std::net::{Ipv4Addr, Ipv6Addr};

#[test]
fn frames_hash_like_their_flow() {
    let mut buf = vec![0u8; 128];
    let mac = [2, 0, 0, 0, 0, 1];
    let len = build_announcement(&mut buf, mac, IpAddress::Ipv4(Ipv4Addr::new(10, 0, 0, 1)));
    // An ARP frame has no flow: it hashes by MAC addresses.
    assert!(flow_key(&buf[..len]).is_none());
    let _ = frame_hash(&buf[..len], false);
    for junk in 0..64 {
        let j: Vec<u8> = (0..junk).map(|i| (i * 31 + 7) as u8).collect();
        let _ = frame_hash(&j, true);
    }
}

#[test]
fn announcements_parse_back() {
    let mut buf = vec![0u8; 256];
    let mac = [2, 0, 0, 0, 0, 9];
    let ip = Ipv4Addr::new(10, 0, 0, 7);
    let len = build_announcement(&mut buf, mac, IpAddress::Ipv4(ip));
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
    let len = build_announcement(&mut buf, mac, IpAddress::Ipv6(v6));
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
