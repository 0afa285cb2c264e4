//! The flow key of a bond's layer3+4 transmit hash: which fields of a
//! frame pick its leg (Linux bonding's `xmit_hash_policy=layer3+4`), so that
//! every frame of one flow leaves by one leg and a flow's two directions
//! agree.

use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket,
};
use std::net::IpAddr;

/// The fields of a frame the layer3+4 hash covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Zero for protocols without ports and for fragments.
    pub src_port: u16,
    pub dst_port: u16,
}

impl FlowKey {
    pub fn reversed(self) -> FlowKey {
        FlowKey {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
        }
    }

    /// The hash of Linux bonding's `xmit_hash_policy=layer3+4`: ports, then
    /// source and destination address words, folded; the lowest bit goes
    /// (ports are often even).
    pub fn hash(&self) -> u32 {
        let sp = self.src_port.to_be_bytes();
        let dp = self.dst_port.to_be_bytes();
        let mut h = u32::from_ne_bytes([sp[0], sp[1], dp[0], dp[1]]);
        h ^= addr_word(self.src) ^ addr_word(self.dst);
        h ^= h >> 16;
        h ^= h >> 8;
        h >> 1
    }
}

fn addr_word(a: IpAddr) -> u32 {
    match a {
        IpAddr::V4(v4) => u32::from_ne_bytes(v4.octets()),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            (0..4).fold(0, |h, i| {
                h ^ u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
            })
        }
    }
}

/// Which hash a frame leaves by: its flow for IPv4/IPv6, its MAC addresses
/// otherwise (layer 2 fallback, as Linux does for non-IP frames).
pub fn frame_hash(frame: &[u8], reverse: bool) -> u32 {
    match flow_key(frame) {
        Some(k) if reverse => k.reversed().hash(),
        Some(k) => k.hash(),
        None => match EthernetFrame::new_checked(frame) {
            Ok(eth) => {
                let (s, d) = (eth.src_addr().0[5], eth.dst_addr().0[5]);
                u32::from(s ^ d) ^ u32::from(u16::from(eth.ethertype()))
            }
            Err(_) => 0,
        },
    }
}

/// The flow of an IPv4 or IPv6 frame.
pub fn flow_key(frame: &[u8]) -> Option<FlowKey> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let (src, dst, proto, payload, fragment): (IpAddr, IpAddr, IpProtocol, &[u8], bool) =
        match eth.ethertype() {
            EthernetProtocol::Ipv4 => {
                let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
                (
                    IpAddr::V4(ip.src_addr()),
                    IpAddr::V4(ip.dst_addr()),
                    ip.next_header(),
                    ip.payload(),
                    ip.more_frags() || ip.frag_offset() != 0,
                )
            }
            EthernetProtocol::Ipv6 => {
                let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
                (
                    IpAddr::V6(ip.src_addr()),
                    IpAddr::V6(ip.dst_addr()),
                    ip.next_header(),
                    ip.payload(),
                    false,
                )
            }
            _ => return None,
        };
    let (src_port, dst_port) = match proto {
        _ if fragment => (0, 0),
        IpProtocol::Tcp => TcpPacket::new_checked(payload)
            .map(|p| (p.src_port(), p.dst_port()))
            .unwrap_or((0, 0)),
        IpProtocol::Udp => UdpPacket::new_checked(payload)
            .map(|p| (p.src_port(), p.dst_port()))
            .unwrap_or((0, 0)),
        _ => (0, 0),
    };
    Some(FlowKey {
        src,
        dst,
        src_port,
        dst_port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn key(sport: u16, dport: u16) -> FlowKey {
        FlowKey {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            src_port: sport,
            dst_port: dport,
        }
    }

    #[test]
    fn flows_spread_over_two_legs() {
        let mut counts = [0; 2];
        for p in 0..16u16 {
            counts[key(50000 + p * 3, 40000).hash() as usize % 2] += 1;
        }
        assert!(counts[0] >= 4 && counts[1] >= 4, "{counts:?}");
    }

    #[test]
    fn hash_depends_on_every_field() {
        let base = key(1000, 2000).hash();
        assert_ne!(base, key(1002, 2000).hash());
        assert_ne!(base, key(1000, 2002).hash());
        let mut k = key(1000, 2000);
        k.dst = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 4));
        assert_ne!(base, k.hash());
        let v6 = FlowKey {
            src: IpAddr::V6(Ipv6Addr::LOCALHOST),
            dst: IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2)),
            src_port: 1,
            dst_port: 2,
        };
        assert_ne!(v6.hash(), v6.reversed().reversed().hash() ^ 1);
    }

    #[test]
    fn frames_without_a_flow_hash_by_mac_and_never_panic() {
        // An ARP frame has no flow: it hashes by MAC addresses.
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert!(flow_key(&arp).is_none());
        let _ = frame_hash(&arp, false);
        for junk in 0..64 {
            let j: Vec<u8> = (0..junk).map(|i| (i * 31 + 7) as u8).collect();
            let _ = frame_hash(&j, true);
        }
    }
}
