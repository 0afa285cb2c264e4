//! Where an Ethernet frame's IP payload is: the one walk over IPv4 and IPv6
//! (with its extension headers) that `tcp` and `esp` share.

use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, Ipv6Packet, ETHERNET_HEADER_LEN,
    IPV6_HEADER_LEN,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

/// The upper-layer payload of an unfragmented IP packet in a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpperLayer {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The protocol after the IPv6 extension headers.
    pub protocol: IpProtocol,
    /// Where it starts in the frame.
    pub at: usize,
    /// Where it ends (the IP length says: Ethernet padding is not payload).
    pub end: usize,
}

impl UpperLayer {
    pub fn range(&self) -> Range<usize> {
        self.at..self.end
    }
}

/// The upper layer of an Ethernet frame carrying an unfragmented IPv4 or
/// IPv6 packet (hop-by-hop and destination-options headers are walked).
/// Anything else, or lengths that do not add up: `None`.
pub fn upper_layer(frame: &[u8]) -> Option<UpperLayer> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            if ip.version() != 4 || ip.more_frags() || ip.frag_offset() != 0 {
                return None;
            }
            let at = ETHERNET_HEADER_LEN + usize::from(ip.header_len());
            Some(UpperLayer {
                src: IpAddr::V4(Ipv4Addr::from(ip.src_addr().octets())),
                dst: IpAddr::V4(Ipv4Addr::from(ip.dst_addr().octets())),
                protocol: ip.next_header(),
                at,
                end: at + ip.payload().len(),
            })
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            if ip.version() != 6 {
                return None;
            }
            let data = ip.payload();
            let (protocol, skip) = crate::ipv6::upper_layer(ip.next_header(), data).ok()?;
            if skip > data.len() {
                return None;
            }
            let base = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN;
            Some(UpperLayer {
                src: IpAddr::V6(Ipv6Addr::from(ip.src_addr().octets())),
                dst: IpAddr::V6(Ipv6Addr::from(ip.dst_addr().octets())),
                protocol,
                at: base + skip,
                end: base + data.len(),
            })
        }
        _ => None,
    }
}
