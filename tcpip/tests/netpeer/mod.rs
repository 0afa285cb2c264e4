//! One engine and a scripted peer on its link: frames built by hand go in
//! through `Stack::receive`, and what the engine sends is parsed back with
//! every checksum verified. Shared by the link- and network-layer tests.

// Each test file uses a part of the rig and of the names it brings.
#![allow(dead_code, unused_imports)]

pub use crate::sim::{Link, Net, Outbox};
pub use capnet_tcpip::stack::{Event, UdpSendError};
pub use capnet_tcpip::udp::{UdpId, MAX_PAYLOAD_V4, MAX_PAYLOAD_V6};
pub use capnet_tcpip::{Cidr, IfaceId, Instant, RxMeta, Stack};
pub use rand::rngs::SmallRng;
pub use rand::{Rng, SeedableRng};
pub use smoltcp::phy::ChecksumCapabilities;
pub use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    Icmpv4Packet, Icmpv6Packet, Icmpv6Repr, Ipv4Packet, Ipv6Packet, NdiscNeighborFlags, NdiscRepr,
    RawHardwareAddress, TcpPacket, UdpPacket,
};
pub use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
pub use std::time::Duration;

// ---------------------------------------------------------------------------
// One engine and a scripted peer on its link.

pub const US_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const BROADCAST: [u8; 6] = [0xff; 6];

pub fn us4() -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, 1)
}
pub fn peer4() -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, 2)
}
pub fn us6() -> Ipv6Addr {
    "fd00::1".parse().unwrap()
}
pub fn peer6() -> Ipv6Addr {
    "fd00::2".parse().unwrap()
}

/// The engine under test (10.0.0.1/24, fd00::1/64) and what it sent.
pub struct Rig {
    pub stack: Stack,
    pub iface: IfaceId,
    pub now: Instant,
    pub out: Outbox,
}

impl Rig {
    pub fn new() -> Rig {
        let now = Instant::from_millis(1_000);
        let config = capnet_tcpip::Config {
            secret: [7; 32],
            ..Default::default()
        };
        let mut stack = Stack::new(now, config);
        let iface = stack.add_iface(US_MAC, 1500);
        stack
            .add_address(iface, Cidr::new(us4().into(), 24).unwrap())
            .unwrap();
        stack
            .add_address(iface, Cidr::new(us6().into(), 64).unwrap())
            .unwrap();
        Rig {
            stack,
            iface,
            now,
            out: Outbox::default(),
        }
    }

    pub fn rx(&mut self, frame: &[u8]) {
        self.rx_meta(frame, RxMeta::default());
    }

    pub fn rx_meta(&mut self, frame: &[u8], meta: RxMeta) {
        self.stack
            .receive(self.now, self.iface, frame, meta, &mut self.out);
    }

    /// Advances the clock by `d` in steps of at most 100 ms, polling.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now = (self.now + Duration::from_millis(100)).min(end);
            self.stack.poll(self.now, &mut self.out);
        }
    }

    /// Runs what is due now (a first solicitation leaves on a poll).
    pub fn poll(&mut self) {
        self.stack.poll(self.now, &mut self.out);
    }

    /// What was sent, after the peer answered every ARP request and
    /// Neighbor Solicitation among it for its addresses.
    pub fn take_answering(&mut self) -> Vec<Vec<u8>> {
        let mut kept = Vec::new();
        for _ in 0..4 {
            let mut answered = false;
            for f in self.take() {
                match parse(&f) {
                    Out::Arp { .. } => {
                        answered = true;
                        self.rx(&arp(
                            ArpOperation::Reply,
                            PEER_MAC,
                            peer4(),
                            US_MAC,
                            us4(),
                            US_MAC,
                        ));
                    }
                    Out::V6 {
                        next: 58, ref body, ..
                    } if body[0] == 135 => {
                        answered = true;
                        let na = icmp6(peer6(), us6(), &ndisc_na(peer6(), 0x60, PEER_MAC));
                        self.rx(&ipv6_frame(US_MAC, peer6(), us6(), 58, 255, &na));
                    }
                    _ => kept.push(f),
                }
            }
            if !answered {
                break;
            }
        }
        kept
    }

    pub fn take(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.out.frames)
    }

    pub fn bind(&mut self, addr: &str) -> UdpId {
        self.stack.udp_bind(addr.parse().unwrap()).unwrap()
    }

    pub fn send(&mut self, id: UdpId, to: &str, payload: &[u8]) -> Result<(), UdpSendError> {
        self.stack
            .udp_send(self.now, id, to.parse().unwrap(), payload, &mut self.out)
    }

    /// The peer makes itself known (an ARP request and a Neighbor
    /// Solicitation for our addresses); our answers are thrown away.
    pub fn meet_peer(&mut self) {
        self.rx(&arp(
            ArpOperation::Request,
            PEER_MAC,
            peer4(),
            [0; 6],
            us4(),
            BROADCAST,
        ));
        let ns = ndisc_ns(us6(), Some(PEER_MAC));
        self.rx(&ipv6_frame(
            US_MAC,
            peer6(),
            us6(),
            58,
            255,
            &icmp6(peer6(), us6(), &ns),
        ));
        self.take();
    }

    /// Drop counters of every layer, summed.
    pub fn drops(&self) -> u64 {
        let c = self.stack.ip.counters;
        c.malformed
            + c.bad_checksum
            + c.not_for_us
            + c.unknown_protocol
            + self.stack.tcp.counters.malformed
            + self.stack.counters.frag_errors
    }
}

// ---------------------------------------------------------------------------
// Frames in.

pub fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

pub fn arp(
    op: ArpOperation,
    sha: [u8; 6],
    spa: Ipv4Addr,
    tha: [u8; 6],
    tpa: Ipv4Addr,
    eth_dst: [u8; 6],
) -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation: op,
        source_hardware_addr: EthernetAddress(sha),
        source_protocol_addr: spa,
        target_hardware_addr: EthernetAddress(tha),
        target_protocol_addr: tpa,
    };
    let mut p = vec![0u8; repr.buffer_len()];
    repr.emit(&mut ArpPacket::new_unchecked(&mut p[..]));
    ethernet(eth_dst, sha, 0x0806, &p)
}

/// An IPv4 packet: `frag` is (identification, offset in bytes, more).
pub fn ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    frag: (u16, usize, bool),
    payload: &[u8],
) -> Vec<u8> {
    let mut p = vec![0u8; 20 + payload.len()];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    p[4..6].copy_from_slice(&frag.0.to_be_bytes());
    let off = (frag.1 / 8) as u16 | if frag.2 { 0x2000 } else { 0 };
    p[6..8].copy_from_slice(&off.to_be_bytes());
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    Ipv4Packet::new_unchecked(&mut p[..]).fill_checksum();
    p[20..].copy_from_slice(payload);
    p
}

pub fn ipv4_frame(eth_dst: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    ethernet(
        eth_dst,
        PEER_MAC,
        0x0800,
        &ipv4(src, dst, proto, (1, 0, false), l4),
    )
}

pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, hop: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    p[6] = next;
    p[7] = hop;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

pub fn ipv6_frame(
    eth_dst: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next: u8,
    hop: u8,
    l4: &[u8],
) -> Vec<u8> {
    ethernet(eth_dst, PEER_MAC, 0x86dd, &ipv6(src, dst, next, hop, l4))
}

/// An IPv6 fragment: a fragment header, then `data`.
pub fn ipv6_fragment(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next: u8,
    ident: u32,
    offset: usize,
    more: bool,
    data: &[u8],
) -> Vec<u8> {
    let mut body = vec![next, 0];
    body.extend_from_slice(&((offset as u16) | u16::from(more)).to_be_bytes());
    body.extend_from_slice(&ident.to_be_bytes());
    body.extend_from_slice(data);
    ethernet(US_MAC, PEER_MAC, 0x86dd, &ipv6(src, dst, 44, 64, &body))
}

pub fn udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 8 + payload.len()];
    let mut p = UdpPacket::new_unchecked(&mut b[..]);
    p.set_src_port(src.port());
    p.set_dst_port(dst.port());
    p.set_len((8 + payload.len()) as u16);
    p.payload_mut().copy_from_slice(payload);
    p.fill_checksum(&src.ip().into(), &dst.ip().into());
    b
}

/// A UDP datagram from the peer to `dst`, in a frame to `eth_dst`.
pub fn udp_frame(eth_dst: [u8; 6], src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let l4 = udp(src, dst, payload);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ipv4_frame(eth_dst, s, d, 17, &l4),
        (IpAddr::V6(s), IpAddr::V6(d)) => ipv6_frame(eth_dst, s, d, 17, 64, &l4),
        _ => unreachable!(),
    }
}

pub fn tcp_syn(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut b = vec![0u8; 20];
    let mut t = TcpPacket::new_unchecked(&mut b[..]);
    t.set_src_port(src.port());
    t.set_dst_port(dst.port());
    t.set_seq_number(smoltcp::wire::TcpSeqNumber(1000));
    t.set_header_len(20);
    t.set_syn(true);
    t.set_window_len(65535);
    t.fill_checksum(&src.ip().into(), &dst.ip().into());
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ipv4_frame(US_MAC, s, d, 6, &b),
        (IpAddr::V6(s), IpAddr::V6(d)) => ipv6_frame(US_MAC, s, d, 6, 64, &b),
        _ => unreachable!(),
    }
}

/// An ICMPv4 message with its checksum.
pub fn icmp4(ty: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(body);
    Icmpv4Packet::new_unchecked(&mut m[..]).fill_checksum();
    m
}

/// An ICMPv6 message (checksum filled in) from `src` to `dst`.
pub fn icmp6(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> Vec<u8> {
    let mut m = msg.to_vec();
    m[2] = 0;
    m[3] = 0;
    Icmpv6Packet::new_unchecked(&mut m[..]).fill_checksum(&src, &dst);
    m
}

pub fn icmp6_msg(ty: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(body);
    m
}

/// A Neighbor Solicitation for `target` (checksum left to `icmp6`).
pub fn ndisc_ns(target: Ipv6Addr, lladdr: Option<[u8; 6]>) -> Vec<u8> {
    let mut m = icmp6_msg(135, 0, [0; 4], &target.octets());
    if let Some(mac) = lladdr {
        m.extend_from_slice(&[1, 1]);
        m.extend_from_slice(&mac);
    }
    m
}

/// A Neighbor Advertisement for `target` with the target's link-layer address.
pub fn ndisc_na(target: Ipv6Addr, flags: u8, mac: [u8; 6]) -> Vec<u8> {
    let mut m = icmp6_msg(136, 0, [flags, 0, 0, 0], &target.octets());
    m.extend_from_slice(&[2, 1]);
    m.extend_from_slice(&mac);
    m
}

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

pub fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

// ---------------------------------------------------------------------------
// Frames out, parsed back.

/// What the engine sent, parsed (every checksum verified on the way).
#[derive(Debug)]
pub enum Out {
    Arp {
        eth_dst: [u8; 6],
        repr: ArpRepr,
    },
    V4 {
        eth_dst: [u8; 6],
        src: Ipv4Addr,
        dst: Ipv4Addr,
        proto: u8,
        /// The whole IP packet.
        packet: Vec<u8>,
        /// The upper-layer part.
        body: Vec<u8>,
    },
    V6 {
        eth_dst: [u8; 6],
        src: Ipv6Addr,
        dst: Ipv6Addr,
        next: u8,
        hop: u8,
        packet: Vec<u8>,
        body: Vec<u8>,
    },
}

pub fn parse(frame: &[u8]) -> Out {
    let eth = EthernetFrame::new_checked(frame).expect("an Ethernet frame");
    assert_eq!(eth.src_addr().0, US_MAC, "from our MAC");
    let eth_dst = eth.dst_addr().0;
    match eth.ethertype() {
        EthernetProtocol::Arp => {
            let p = ArpPacket::new_checked(eth.payload()).expect("ARP");
            Out::Arp {
                eth_dst,
                repr: ArpRepr::parse(&p).expect("ARP"),
            }
        }
        EthernetProtocol::Ipv4 => {
            let p = Ipv4Packet::new_checked(eth.payload()).expect("IPv4");
            assert!(p.verify_checksum(), "IPv4 header checksum");
            let packet = eth.payload()[..usize::from(p.total_len())].to_vec();
            let body = p.payload().to_vec();
            let proto = u8::from(p.next_header());
            let (src, dst) = (p.src_addr(), p.dst_addr());
            if proto == 1 && p.frag_offset() == 0 && !p.more_frags() {
                assert!(Icmpv4Packet::new_checked(&body[..])
                    .unwrap()
                    .verify_checksum());
            }
            if proto == 17 && p.frag_offset() == 0 && !p.more_frags() {
                let u = UdpPacket::new_checked(&body[..]).unwrap();
                assert!(u.verify_checksum(&src.into(), &dst.into()), "UDP checksum");
            }
            if proto == 6 {
                let t = TcpPacket::new_checked(&body[..]).unwrap();
                assert!(t.verify_checksum(&src.into(), &dst.into()), "TCP checksum");
            }
            Out::V4 {
                eth_dst,
                src,
                dst,
                proto,
                packet,
                body,
            }
        }
        EthernetProtocol::Ipv6 => {
            let p = Ipv6Packet::new_checked(eth.payload()).expect("IPv6");
            let packet = eth.payload()[..40 + usize::from(p.payload_len())].to_vec();
            let body = p.payload().to_vec();
            let (src, dst) = (p.src_addr(), p.dst_addr());
            let next = u8::from(p.next_header());
            if next == 58 {
                let i = Icmpv6Packet::new_checked(&body[..]).unwrap();
                assert!(i.verify_checksum(&src, &dst), "ICMPv6 checksum");
            }
            if next == 17 {
                let u = UdpPacket::new_checked(&body[..]).unwrap();
                assert!(u.verify_checksum(&src.into(), &dst.into()), "UDP checksum");
            }
            Out::V6 {
                eth_dst,
                src,
                dst,
                next,
                hop: p.hop_limit(),
                packet,
                body,
            }
        }
        other => panic!("unexpected ethertype {other}"),
    }
}

pub fn parse_all(frames: &[Vec<u8>]) -> Vec<Out> {
    frames.iter().map(|f| parse(f)).collect()
}

/// The one frame sent, parsed.
pub fn only(frames: Vec<Vec<u8>>) -> Out {
    assert_eq!(frames.len(), 1, "expected one frame, got {frames:?}");
    parse(&frames[0])
}

pub fn ndisc(src: Ipv6Addr, dst: Ipv6Addr, body: &[u8]) -> NdiscRepr<'_> {
    let p = Icmpv6Packet::new_checked(body).unwrap();
    match Icmpv6Repr::parse(&src, &dst, &p, &ChecksumCapabilities::default()).unwrap() {
        Icmpv6Repr::Ndisc(nd) => nd,
        other => panic!("not NDP: {other:?}"),
    }
}

pub fn lladdr_mac(l: Option<RawHardwareAddress>) -> Option<[u8; 6]> {
    l.and_then(|l| l.as_bytes().try_into().ok())
}

// ---------------------------------------------------------------------------
