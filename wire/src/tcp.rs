//! Where a frame's TCP payload is and which connection it belongs to: the
//! one parse the NIC's offload engines, netsrv's offload path and the
//! capture checks in tests share.

use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, Ipv6ExtHeader, Ipv6Packet, TcpPacket,
    ETHERNET_HEADER_LEN, IPV6_HEADER_LEN,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;

/// Where the TCP payload of a frame is, and what it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpSegment {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// Sequence number of the first payload byte (after a SYN's).
    pub seq: u32,
    /// The acknowledgment number, when the ACK flag is set.
    pub ack: Option<u32>,
    pub syn: bool,
    pub rst: bool,
    /// The payload's bytes in the frame (up to the IP length: Ethernet
    /// padding is not payload).
    pub payload: Range<usize>,
}

/// IPv6 extension headers walked before giving up (as the checksum code).
const MAX_EXT_HEADERS: usize = 8;

/// Parses an Ethernet frame carrying an unfragmented TCP segment over IPv4
/// or IPv6 (hop-by-hop and destination-options headers are walked). Anything
/// else, or lengths that do not add up: `None`.
pub fn parse_tcp(frame: &[u8]) -> Option<TcpSegment> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            if ip.version() != 4
                || ip.more_frags()
                || ip.frag_offset() != 0
                || ip.next_header() != IpProtocol::Tcp
            {
                return None;
            }
            let src = IpAddr::V4(Ipv4Addr::from(ip.src_addr().octets()));
            let dst = IpAddr::V4(Ipv4Addr::from(ip.dst_addr().octets()));
            let l4 = ETHERNET_HEADER_LEN + usize::from(ip.header_len());
            tcp(src, dst, l4, ip.payload())
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            if ip.version() != 6 {
                return None;
            }
            let src = IpAddr::V6(Ipv6Addr::from(ip.src_addr().octets()));
            let dst = IpAddr::V6(Ipv6Addr::from(ip.dst_addr().octets()));
            let data = ip.payload();
            let mut proto = ip.next_header();
            let mut at = 0usize;
            for _ in 0..MAX_EXT_HEADERS {
                match proto {
                    IpProtocol::HopByHop | IpProtocol::Ipv6Opts => {
                        let h = Ipv6ExtHeader::new_checked(data.get(at..)?).ok()?;
                        proto = h.next_header();
                        at += 8 + usize::from(h.header_len()) * 8;
                    }
                    _ => break,
                }
            }
            if proto != IpProtocol::Tcp {
                return None;
            }
            let l4 = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + at;
            tcp(src, dst, l4, data.get(at..)?)
        }
        _ => None,
    }
}

fn tcp(src: IpAddr, dst: IpAddr, l4: usize, seg: &[u8]) -> Option<TcpSegment> {
    let t = TcpPacket::new_checked(seg).ok()?;
    let syn = t.syn();
    let seq = (t.seq_number().0 as u32).wrapping_add(u32::from(syn));
    Some(TcpSegment {
        src: SocketAddr::new(src, t.src_port()),
        dst: SocketAddr::new(dst, t.dst_port()),
        seq,
        ack: t.ack().then(|| t.ack_number().0 as u32),
        syn,
        rst: t.rst(),
        payload: l4 + usize::from(t.header_len())..l4 + seg.len(),
    })
}
