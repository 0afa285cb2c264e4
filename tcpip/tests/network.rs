//! The engine's link and network layers, from the outside: crafted frames go
//! in through `Stack::receive`, what comes out is parsed back (checksums
//! verified by re-parsing), and two engines talk over the simulated wire.
//! ARP and neighbour discovery, ICMP echo and errors (and when not to send
//! one), UDP both ways with fragmentation and path MTU, and the frames that
//! must be counted and dropped. Time is simulated throughout.

mod sim;

use capnet_tcpip::stack::{Event, UdpSendError};
use capnet_tcpip::udp::{UdpId, MAX_PAYLOAD_V4, MAX_PAYLOAD_V6};
use capnet_tcpip::{Cidr, IfaceId, Instant, RxMeta, Stack};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sim::{Link, Net, Outbox};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    Icmpv4Packet, Icmpv6Packet, Icmpv6Repr, Ipv4Packet, Ipv6Packet, NdiscNeighborFlags, NdiscRepr,
    RawHardwareAddress, TcpPacket, UdpPacket,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

// ---------------------------------------------------------------------------
// One engine and a scripted peer on its link.

const US_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const BROADCAST: [u8; 6] = [0xff; 6];

fn us4() -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, 1)
}
fn peer4() -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, 2)
}
fn us6() -> Ipv6Addr {
    "fd00::1".parse().unwrap()
}
fn peer6() -> Ipv6Addr {
    "fd00::2".parse().unwrap()
}

/// The engine under test (10.0.0.1/24, fd00::1/64) and what it sent.
struct Rig {
    stack: Stack,
    iface: IfaceId,
    now: Instant,
    out: Outbox,
}

impl Rig {
    fn new() -> Rig {
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

    fn rx(&mut self, frame: &[u8]) {
        self.rx_meta(frame, RxMeta::default());
    }

    fn rx_meta(&mut self, frame: &[u8], meta: RxMeta) {
        self.stack
            .receive(self.now, self.iface, frame, meta, &mut self.out);
    }

    /// Advances the clock by `d` in steps of at most 100 ms, polling.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now = (self.now + Duration::from_millis(100)).min(end);
            self.stack.poll(self.now, &mut self.out);
        }
    }

    /// Runs what is due now (a first solicitation leaves on a poll).
    fn poll(&mut self) {
        self.stack.poll(self.now, &mut self.out);
    }

    /// What was sent, after the peer answered every ARP request and
    /// Neighbor Solicitation among it for its addresses.
    fn take_answering(&mut self) -> Vec<Vec<u8>> {
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

    fn take(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.out.frames)
    }

    fn bind(&mut self, addr: &str) -> UdpId {
        self.stack.udp_bind(addr.parse().unwrap()).unwrap()
    }

    fn send(&mut self, id: UdpId, to: &str, payload: &[u8]) -> Result<(), UdpSendError> {
        self.stack
            .udp_send(self.now, id, to.parse().unwrap(), payload, &mut self.out)
    }

    /// The peer makes itself known (an ARP request and a Neighbor
    /// Solicitation for our addresses); our answers are thrown away.
    fn meet_peer(&mut self) {
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
    fn drops(&self) -> u64 {
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

fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn arp(
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
fn ipv4(
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

fn ipv4_frame(eth_dst: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    ethernet(
        eth_dst,
        PEER_MAC,
        0x0800,
        &ipv4(src, dst, proto, (1, 0, false), l4),
    )
}

fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, hop: u8, payload: &[u8]) -> Vec<u8> {
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

fn ipv6_frame(
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
fn ipv6_fragment(
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

fn udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
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
fn udp_frame(eth_dst: [u8; 6], src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let l4 = udp(src, dst, payload);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ipv4_frame(eth_dst, s, d, 17, &l4),
        (IpAddr::V6(s), IpAddr::V6(d)) => ipv6_frame(eth_dst, s, d, 17, 64, &l4),
        _ => unreachable!(),
    }
}

fn tcp_syn(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
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
fn icmp4(ty: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(body);
    Icmpv4Packet::new_unchecked(&mut m[..]).fill_checksum();
    m
}

/// An ICMPv6 message (checksum filled in) from `src` to `dst`.
fn icmp6(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> Vec<u8> {
    let mut m = msg.to_vec();
    m[2] = 0;
    m[3] = 0;
    Icmpv6Packet::new_unchecked(&mut m[..]).fill_checksum(&src, &dst);
    m
}

fn icmp6_msg(ty: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(body);
    m
}

/// A Neighbor Solicitation for `target` (checksum left to `icmp6`).
fn ndisc_ns(target: Ipv6Addr, lladdr: Option<[u8; 6]>) -> Vec<u8> {
    let mut m = icmp6_msg(135, 0, [0; 4], &target.octets());
    if let Some(mac) = lladdr {
        m.extend_from_slice(&[1, 1]);
        m.extend_from_slice(&mac);
    }
    m
}

/// A Neighbor Advertisement for `target` with the target's link-layer address.
fn ndisc_na(target: Ipv6Addr, flags: u8, mac: [u8; 6]) -> Vec<u8> {
    let mut m = icmp6_msg(136, 0, [flags, 0, 0, 0], &target.octets());
    m.extend_from_slice(&[2, 1]);
    m.extend_from_slice(&mac);
    m
}

fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
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

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

// ---------------------------------------------------------------------------
// Frames out, parsed back.

/// What the engine sent, parsed (every checksum verified on the way).
#[derive(Debug)]
enum Out {
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

fn parse(frame: &[u8]) -> Out {
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

fn parse_all(frames: &[Vec<u8>]) -> Vec<Out> {
    frames.iter().map(|f| parse(f)).collect()
}

/// The one frame sent, parsed.
fn only(frames: Vec<Vec<u8>>) -> Out {
    assert_eq!(frames.len(), 1, "expected one frame, got {frames:?}");
    parse(&frames[0])
}

fn ndisc(src: Ipv6Addr, dst: Ipv6Addr, body: &[u8]) -> NdiscRepr<'_> {
    let p = Icmpv6Packet::new_checked(body).unwrap();
    match Icmpv6Repr::parse(&src, &dst, &p, &ChecksumCapabilities::default()).unwrap() {
        Icmpv6Repr::Ndisc(nd) => nd,
        other => panic!("not NDP: {other:?}"),
    }
}

fn lladdr_mac(l: Option<RawHardwareAddress>) -> Option<[u8; 6]> {
    l.and_then(|l| l.as_bytes().try_into().ok())
}

// ---------------------------------------------------------------------------
// ARP.

#[test]
fn arp_request_for_us_is_answered_and_others_are_not() {
    let mut r = Rig::new();
    r.rx(&arp(
        ArpOperation::Request,
        PEER_MAC,
        peer4(),
        [0; 6],
        us4(),
        BROADCAST,
    ));
    match only(r.take()) {
        Out::Arp {
            eth_dst,
            repr:
                ArpRepr::EthernetIpv4 {
                    operation,
                    source_hardware_addr,
                    source_protocol_addr,
                    target_hardware_addr,
                    target_protocol_addr,
                },
        } => {
            assert_eq!(eth_dst, PEER_MAC);
            assert_eq!(operation, ArpOperation::Reply);
            assert_eq!(source_hardware_addr.0, US_MAC);
            assert_eq!(source_protocol_addr, us4());
            assert_eq!(target_hardware_addr.0, PEER_MAC);
            assert_eq!(target_protocol_addr, peer4());
        }
        other => panic!("{other:?}"),
    }
    // A request for someone else's address: silence.
    let other = Ipv4Addr::new(10, 0, 0, 77);
    r.rx(&arp(
        ArpOperation::Request,
        PEER_MAC,
        peer4(),
        [0; 6],
        other,
        BROADCAST,
    ));
    assert!(r.take().is_empty());
}

#[test]
fn arp_resolution_queues_packets_and_releases_them_in_order() {
    let mut r = Rig::new();
    let s = r.bind("10.0.0.1:5000");
    for i in 0..3u8 {
        r.send(s, "10.0.0.2:7000", &[i; 10]).unwrap();
    }
    r.poll();
    // One broadcast request, no IP yet.
    let frames = r.take();
    assert_eq!(frames.len(), 1, "{frames:?}");
    match parse(&frames[0]) {
        Out::Arp {
            eth_dst,
            repr:
                ArpRepr::EthernetIpv4 {
                    operation,
                    source_hardware_addr,
                    source_protocol_addr,
                    target_protocol_addr,
                    ..
                },
        } => {
            assert_eq!(eth_dst, BROADCAST);
            assert_eq!(operation, ArpOperation::Request);
            assert_eq!(source_hardware_addr.0, US_MAC);
            assert_eq!(source_protocol_addr, us4());
            assert_eq!(target_protocol_addr, peer4());
        }
        other => panic!("{other:?}"),
    }
    r.advance(Duration::from_millis(300));
    assert!(r.take().is_empty(), "no second request before a second");
    r.rx(&arp(
        ArpOperation::Reply,
        PEER_MAC,
        peer4(),
        US_MAC,
        us4(),
        US_MAC,
    ));
    let released = parse_all(&r.take());
    assert_eq!(released.len(), 3);
    for (i, o) in released.iter().enumerate() {
        match o {
            Out::V4 {
                eth_dst,
                dst,
                proto: 17,
                body,
                ..
            } => {
                assert_eq!(*eth_dst, PEER_MAC);
                assert_eq!(*dst, peer4());
                assert_eq!(&body[8..], &[i as u8; 10]);
            }
            other => panic!("{other:?}"),
        }
    }
    // Resolved: the next datagram leaves at once.
    r.send(s, "10.0.0.2:7000", b"now").unwrap();
    assert!(matches!(
        only(r.take()),
        Out::V4 {
            eth_dst: PEER_MAC,
            ..
        }
    ));
}

#[test]
fn arp_gives_up_after_three_requests_and_counts_the_dropped_packets() {
    let mut r = Rig::new();
    let s = r.bind("0.0.0.0:5000");
    r.send(s, "10.0.0.3:7000", b"one").unwrap();
    r.send(s, "10.0.0.3:7000", b"two").unwrap();
    let mut requests = 0;
    let mut at = Vec::new();
    let start = r.now;
    for _ in 0..100 {
        for o in parse_all(&r.take()) {
            match o {
                Out::Arp { .. } => {
                    requests += 1;
                    at.push(r.now.since(start));
                }
                other => panic!("only ARP while unresolved: {other:?}"),
            }
        }
        r.advance(Duration::from_millis(100));
    }
    assert_eq!(requests, 3, "{at:?}");
    assert_eq!(r.stack.ip.counters.neighbor_drops, 2);
    let n = r.stack.ip.neighbors.counters();
    assert_eq!(n.failed, 1, "{n:?}");
    assert_eq!(n.dropped_failed, 2, "{n:?}");
}

#[test]
fn an_unsolicited_arp_reply_creates_no_entry() {
    let mut r = Rig::new();
    let stranger = Ipv4Addr::new(10, 0, 0, 9);
    r.rx(&arp(
        ArpOperation::Reply,
        PEER_MAC,
        stranger,
        US_MAC,
        us4(),
        US_MAC,
    ));
    assert!(r.take().is_empty());
    assert!(r
        .stack
        .ip
        .neighbors
        .get(r.now, r.iface.0, stranger.into())
        .is_none());
}

// ---------------------------------------------------------------------------
// IPv6 neighbour discovery.

#[test]
fn ndp_solicits_the_solicited_node_group_and_a_solicited_advert_releases() {
    let mut r = Rig::new();
    let s = r.bind("[::]:5000");
    r.send(s, "[fd00::2]:7000", b"hello").unwrap();
    r.poll();
    match only(r.take()) {
        Out::V6 {
            eth_dst,
            src,
            dst,
            next: 58,
            hop,
            body,
            ..
        } => {
            assert_eq!(dst, solicited_node(peer6()));
            assert_eq!(eth_dst, [0x33, 0x33, 0xff, 0, 0, 2]);
            assert_eq!(hop, 255, "RFC 4861 6.1.1");
            assert_eq!(src, us6());
            match ndisc(src, dst, &body) {
                NdiscRepr::NeighborSolicit {
                    target_addr,
                    lladdr,
                } => {
                    assert_eq!(target_addr, peer6());
                    assert_eq!(lladdr_mac(lladdr), Some(US_MAC));
                }
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    };
    // An advertisement with hop limit 64 came through a router: ignored.
    let solicited = 0x40 | 0x20;
    let na = icmp6(peer6(), us6(), &ndisc_na(peer6(), solicited, PEER_MAC));
    r.rx(&ipv6_frame(US_MAC, peer6(), us6(), 58, 64, &na));
    assert!(r.take().is_empty());
    // Hop limit 255: the packet leaves.
    r.rx(&ipv6_frame(US_MAC, peer6(), us6(), 58, 255, &na));
    match only(r.take()) {
        Out::V6 {
            eth_dst,
            dst,
            next: 17,
            body,
            ..
        } => {
            assert_eq!(eth_dst, PEER_MAC);
            assert_eq!(dst, peer6());
            assert_eq!(&body[8..], b"hello");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_neighbor_solicitation_for_us_is_answered_unicast_and_solicited() {
    let mut r = Rig::new();
    let ns = icmp6(
        peer6(),
        solicited_node(us6()),
        &ndisc_ns(us6(), Some(PEER_MAC)),
    );
    let eth = [0x33, 0x33, 0xff, 0, 0, 1];
    r.rx(&ipv6_frame(
        eth,
        peer6(),
        solicited_node(us6()),
        58,
        255,
        &ns,
    ));
    match only(r.take()) {
        Out::V6 {
            eth_dst,
            src,
            dst,
            hop,
            body,
            ..
        } => {
            assert_eq!((eth_dst, src, dst, hop), (PEER_MAC, us6(), peer6(), 255));
            match ndisc(src, dst, &body) {
                NdiscRepr::NeighborAdvert {
                    flags,
                    target_addr,
                    lladdr,
                } => {
                    assert_eq!(target_addr, us6());
                    assert!(flags.contains(NdiscNeighborFlags::SOLICITED));
                    assert!(flags.contains(NdiscNeighborFlags::OVERRIDE));
                    assert_eq!(lladdr_mac(lladdr), Some(US_MAC));
                }
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
    // Not ours: silence. Hop limit below 255: silence.
    let other: Ipv6Addr = "fd00::77".parse().unwrap();
    let ns = icmp6(
        peer6(),
        solicited_node(other),
        &ndisc_ns(other, Some(PEER_MAC)),
    );
    r.rx(&ipv6_frame(
        eth,
        peer6(),
        solicited_node(other),
        58,
        255,
        &ns,
    ));
    let ns = icmp6(
        peer6(),
        solicited_node(us6()),
        &ndisc_ns(us6(), Some(PEER_MAC)),
    );
    r.rx(&ipv6_frame(
        eth,
        peer6(),
        solicited_node(us6()),
        58,
        254,
        &ns,
    ));
    assert!(r.take().is_empty());
}

#[test]
fn a_duplicate_address_probe_from_the_unspecified_address_is_answered_to_all_nodes() {
    let mut r = Rig::new();
    let unspec = Ipv6Addr::UNSPECIFIED;
    let ns = icmp6(unspec, solicited_node(us6()), &ndisc_ns(us6(), None));
    r.rx(&ipv6_frame(
        [0x33, 0x33, 0xff, 0, 0, 1],
        unspec,
        solicited_node(us6()),
        58,
        255,
        &ns,
    ));
    match only(r.take()) {
        Out::V6 {
            eth_dst,
            src,
            dst,
            hop,
            body,
            ..
        } => {
            let all: Ipv6Addr = "ff02::1".parse().unwrap();
            assert_eq!(
                (eth_dst, src, dst, hop),
                ([0x33, 0x33, 0, 0, 0, 1], us6(), all, 255)
            );
            match ndisc(src, dst, &body) {
                NdiscRepr::NeighborAdvert { flags, .. } => {
                    // RFC 4861 7.2.4: Solicited clear toward all nodes.
                    assert!(!flags.contains(NdiscNeighborFlags::SOLICITED));
                    assert!(flags.contains(NdiscNeighborFlags::OVERRIDE));
                }
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
    // The prober is not learnt as a neighbour.
    assert!(r
        .stack
        .ip
        .neighbors
        .get(r.now, r.iface.0, IpAddr::V6(unspec))
        .is_none());
}

#[test]
fn a_reachability_probe_without_a_link_layer_option_gets_a_solicited_unicast_advert() {
    // RFC 4861 7.2.4: a unicast NS (NUD) from a known neighbour is answered
    // with a solicited NA unicast to it, or its PROBE never succeeds.
    let mut r = Rig::new();
    r.meet_peer();
    let ns = icmp6(peer6(), us6(), &ndisc_ns(us6(), None));
    r.rx(&ipv6_frame(US_MAC, peer6(), us6(), 58, 255, &ns));
    match only(r.take()) {
        Out::V6 {
            eth_dst,
            src,
            dst,
            body,
            ..
        } => {
            assert_eq!((eth_dst, dst), (PEER_MAC, peer6()));
            match ndisc(src, dst, &body) {
                NdiscRepr::NeighborAdvert { flags, .. } => {
                    assert!(flags.contains(NdiscNeighborFlags::SOLICITED))
                }
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------
// ICMP echo.

#[test]
fn echo_v4_is_answered_with_the_same_identifier_sequence_and_data() {
    let mut r = Rig::new();
    r.meet_peer();
    let data: Vec<u8> = (0..100u8).collect();
    let req = icmp4(8, 0, [0x12, 0x34, 0, 7], &data);
    r.rx(&ipv4_frame(US_MAC, peer4(), us4(), 1, &req));
    match only(r.take()) {
        Out::V4 {
            eth_dst,
            src,
            dst,
            proto: 1,
            body,
            ..
        } => {
            assert_eq!((eth_dst, src, dst), (PEER_MAC, us4(), peer4()));
            assert_eq!(body[0], 0, "echo reply");
            assert_eq!(body[4..8], [0x12, 0x34, 0, 7]);
            assert_eq!(&body[8..], &data[..]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.stack.counters.echo_replies, 1);
    // A request with a bad checksum: no reply.
    let mut bad = req.clone();
    bad[8] ^= 1;
    r.rx(&ipv4_frame(US_MAC, peer4(), us4(), 1, &bad));
    assert!(r.take().is_empty());
}

#[test]
fn echo_v6_is_answered_with_a_valid_checksum() {
    let mut r = Rig::new();
    r.meet_peer();
    let data = b"ping six".to_vec();
    let req = icmp6(
        peer6(),
        us6(),
        &icmp6_msg(128, 0, [0xab, 0xcd, 0, 1], &data),
    );
    r.rx(&ipv6_frame(US_MAC, peer6(), us6(), 58, 64, &req));
    match only(r.take()) {
        Out::V6 {
            eth_dst,
            src,
            dst,
            next: 58,
            body,
            ..
        } => {
            assert_eq!((eth_dst, src, dst), (PEER_MAC, us6(), peer6()));
            assert_eq!(body[0], 129);
            assert_eq!(body[4..8], [0xab, 0xcd, 0, 1]);
            assert_eq!(&body[8..], &data[..]);
        }
        other => panic!("{other:?}"),
    }
    // To all nodes: answered from our unicast address.
    let all: Ipv6Addr = "ff02::1".parse().unwrap();
    let req = icmp6(peer6(), all, &icmp6_msg(128, 0, [0, 1, 0, 2], b"x"));
    r.rx(&ipv6_frame(
        [0x33, 0x33, 0, 0, 0, 1],
        peer6(),
        all,
        58,
        64,
        &req,
    ));
    match only(r.take()) {
        Out::V6 { src, dst, body, .. } => {
            assert_eq!((src, dst, body[0]), (us6(), peer6(), 129));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn echo_to_a_broadcast_address_gets_no_reply() {
    let mut r = Rig::new();
    r.meet_peer();
    let req = icmp4(8, 0, [0, 1, 0, 1], b"smurf");
    for dst in [Ipv4Addr::BROADCAST, Ipv4Addr::new(10, 0, 0, 255)] {
        r.rx(&ipv4_frame(BROADCAST, peer4(), dst, 1, &req));
    }
    assert!(r.take().is_empty());
    assert_eq!(r.stack.counters.echo_replies, 0);
}

// ---------------------------------------------------------------------------
// ICMP errors.

#[test]
fn udp_to_a_closed_port_gets_port_unreachable_v4() {
    let mut r = Rig::new();
    r.meet_peer();
    let frame = udp_frame(US_MAC, sa("10.0.0.2:4000"), sa("10.0.0.1:9"), b"anyone?");
    let offending = frame[14..].to_vec();
    r.rx(&frame);
    match only(r.take()) {
        Out::V4 {
            src,
            dst,
            proto: 1,
            body,
            ..
        } => {
            assert_eq!((src, dst), (us4(), peer4()));
            assert_eq!((body[0], body[1]), (3, 3), "port unreachable");
            // RFC 1812 4.3.2.3: as much of the datagram as fits 576 bytes.
            assert_eq!(&body[8..], &offending[..]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.stack.counters.icmp_errors_sent, 1);
    assert_eq!(r.stack.udp.counters().no_port, 1);
}

#[test]
fn udp_to_a_closed_port_gets_port_unreachable_v6() {
    let mut r = Rig::new();
    r.meet_peer();
    let frame = udp_frame(US_MAC, sa("[fd00::2]:4000"), sa("[fd00::1]:9"), b"anyone?");
    let offending = frame[14..].to_vec();
    r.rx(&frame);
    match only(r.take()) {
        Out::V6 {
            src,
            dst,
            next: 58,
            body,
            ..
        } => {
            assert_eq!((src, dst), (us6(), peer6()));
            assert_eq!((body[0], body[1]), (1, 4), "port unreachable");
            assert_eq!(&body[8..], &offending[..]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn errors_are_rate_limited_per_destination() {
    let mut r = Rig::new();
    r.meet_peer();
    let frame = udp_frame(US_MAC, sa("10.0.0.2:4000"), sa("10.0.0.1:9"), b"x");
    for _ in 0..20 {
        r.rx(&frame);
    }
    // Linux: a burst of XRLIM_BURST_FACTOR (6), then one a second.
    assert_eq!(r.take().len(), 6);
    assert_eq!(r.stack.counters.icmp_errors_limited, 14);
    r.advance(Duration::from_millis(1_000));
    for _ in 0..5 {
        r.rx(&frame);
    }
    assert_eq!(r.take().len(), 1);
    // Another destination has its own burst.
    let peer3 = Ipv4Addr::new(10, 0, 0, 3);
    r.rx(&arp(
        ArpOperation::Request,
        [2, 0, 0, 0, 0, 3],
        peer3,
        [0; 6],
        us4(),
        BROADCAST,
    ));
    r.take();
    let frame = udp_frame(US_MAC, sa("10.0.0.3:4000"), sa("10.0.0.1:9"), b"x");
    r.rx(&frame);
    assert_eq!(r.take().len(), 1);
}

#[test]
fn no_error_answers_a_broadcast_or_multicast() {
    let mut r = Rig::new();
    r.meet_peer();
    let to = [
        (BROADCAST, "255.255.255.255:9"),
        (BROADCAST, "10.0.0.255:9"),
        ([0x01, 0, 0x5e, 0, 0, 1], "224.0.0.1:9"),
        // Unicast IP in a link-layer broadcast (RFC 1122 3.2.2).
        (BROADCAST, "10.0.0.1:9"),
        ([0x33, 0x33, 0, 0, 0, 1], "[ff02::1]:9"),
        ([0x33, 0x33, 0, 0, 0, 1], "[fd00::1]:9"),
    ];
    for (eth, dst) in to {
        let src = if dst.starts_with('[') {
            "[fd00::2]:4000"
        } else {
            "10.0.0.2:4000"
        };
        r.rx(&udp_frame(eth, sa(src), sa(dst), b"who?"));
        assert!(r.take().is_empty(), "an error answered {dst} in {eth:x?}");
    }
    // Nor does TCP answer a link-layer broadcast with a reset.
    let mut syn = tcp_syn(sa("10.0.0.2:4000"), sa("10.0.0.1:80"));
    syn[..6].copy_from_slice(&BROADCAST);
    r.rx(&syn);
    assert!(r.take().is_empty());
    assert_eq!(r.stack.counters.icmp_errors_sent, 0);
}

#[test]
fn no_error_answers_an_error() {
    let mut r = Rig::new();
    r.meet_peer();
    // The first fragment of an ICMP error that never completes: its
    // reassembly times out, but no Time Exceeded may answer an error.
    let quote = ipv4(
        us4(),
        peer4(),
        17,
        (9, 0, false),
        &udp(sa("10.0.0.1:1"), sa("10.0.0.2:2"), &[0; 16]),
    );
    let err = icmp4(3, 3, [0; 4], &quote);
    let first = ipv4(peer4(), us4(), 1, (77, 0, true), &err[..24]);
    r.rx(&ethernet(US_MAC, PEER_MAC, 0x0800, &first));
    // IPv6 the same: an ICMPv6 error in a first fragment.
    let err6 = icmp6(peer6(), us6(), &icmp6_msg(1, 4, [0; 4], &[0u8; 48]));
    r.rx(&ipv6_fragment(peer6(), us6(), 58, 78, 0, true, &err6[..48]));
    r.advance(Duration::from_secs(61));
    assert!(r.take_answering().is_empty());
    assert_eq!(r.stack.counters.icmp_errors_sent, 0);
}

#[test]
fn a_reassembly_timeout_sends_time_exceeded_only_if_the_first_fragment_came() {
    for v6 in [false, true] {
        let mut r = Rig::new();
        r.meet_peer();
        let (from, to) = if v6 {
            (sa("[fd00::2]:4000"), sa("[fd00::1]:9"))
        } else {
            (sa("10.0.0.2:4000"), sa("10.0.0.1:9"))
        };
        let datagram = udp(from, to, &[5u8; 2000]);
        let frag = |id: u32, offset: usize, more: bool, data: &[u8]| {
            if v6 {
                ipv6_fragment(peer6(), us6(), 17, id, offset, more, data)
            } else {
                let p = ipv4(peer4(), us4(), 17, (id as u16, offset, more), data);
                ethernet(US_MAC, PEER_MAC, 0x0800, &p)
            }
        };
        // Datagram 1: only a later fragment. Datagram 2: only the first.
        r.rx(&frag(1, 1000, true, &datagram[1000..1504]));
        r.rx(&frag(2, 0, true, &datagram[..1000]));
        let timeout = if v6 { 60 } else { 30 };
        r.advance(Duration::from_secs(timeout - 1));
        assert!(r.take().is_empty(), "v6 {v6}: too early");
        r.advance(Duration::from_secs(2));
        match only(r.take_answering()) {
            Out::V4 {
                dst,
                proto: 1,
                body,
                ..
            } => {
                assert!(!v6);
                assert_eq!(dst, peer4());
                assert_eq!((body[0], body[1]), (11, 1), "reassembly time exceeded");
                // The quote is the first fragment's header and data.
                let q = Ipv4Packet::new_unchecked(&body[8..]);
                assert_eq!(q.ident(), 2);
                assert_eq!(q.src_addr(), peer4());
            }
            Out::V6 {
                dst,
                next: 58,
                body,
                ..
            } => {
                assert!(v6);
                assert_eq!(dst, peer6());
                assert_eq!((body[0], body[1]), (3, 1), "reassembly time exceeded");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn fragments_to_a_broadcast_address_time_out_silently() {
    let mut r = Rig::new();
    r.meet_peer();
    let datagram = udp(sa("10.0.0.2:4000"), sa("10.0.0.255:9"), &[1u8; 2000]);
    let p = ipv4(
        peer4(),
        Ipv4Addr::new(10, 0, 0, 255),
        17,
        (5, 0, true),
        &datagram[..1000],
    );
    r.rx(&ethernet(BROADCAST, PEER_MAC, 0x0800, &p));
    r.advance(Duration::from_secs(31));
    assert!(r.take_answering().is_empty());
}

#[test]
fn a_protocol_we_do_not_speak_gets_protocol_unreachable() {
    let mut r = Rig::new();
    r.meet_peer();
    r.rx(&ipv4_frame(US_MAC, peer4(), us4(), 132, &[0u8; 12]));
    match only(r.take()) {
        Out::V4 { proto: 1, body, .. } => assert_eq!((body[0], body[1]), (3, 2)),
        other => panic!("{other:?}"),
    }
    r.rx(&ipv6_frame(US_MAC, peer6(), us6(), 132, 64, &[0u8; 12]));
    match only(r.take()) {
        Out::V6 { next: 58, body, .. } => {
            assert_eq!((body[0], body[1]), (4, 1), "parameter problem, next header");
            assert_eq!(body[4..8], 6u32.to_be_bytes());
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Path MTU.

#[test]
fn fragmentation_needed_lowers_the_path_mtu_of_later_udp_sends() {
    let mut r = Rig::new();
    r.meet_peer();
    let s = r.bind("10.0.0.1:5000");
    let payload = vec![0x5a; 1400];
    r.send(s, "10.0.0.2:7000", &payload).unwrap();
    let sent = r.take();
    assert_eq!(sent.len(), 1, "1428 bytes fit a 1500 MTU");
    // A router says: 1000.
    let quoted = &sent[0][14..14 + 28];
    let err = icmp4(3, 4, [0, 0, 0x03, 0xe8], quoted);
    let router = Ipv4Addr::new(10, 0, 0, 254);
    r.rx(&ipv4_frame(US_MAC, router, us4(), 1, &err));
    assert_eq!(r.stack.counters.pmtu_updates, 1);
    r.send(s, "10.0.0.2:7000", &payload).unwrap();
    let frags = parse_all(&r.take());
    assert_eq!(frags.len(), 2);
    for f in &frags {
        match f {
            Out::V4 { packet, .. } => assert!(packet.len() <= 1000, "{}", packet.len()),
            other => panic!("{other:?}"),
        }
    }
    // An error about a packet that was not ours teaches nothing.
    let foreign = ipv4(
        Ipv4Addr::new(10, 0, 0, 50),
        peer4(),
        17,
        (1, 0, false),
        &udp(sa("10.0.0.50:1"), sa("10.0.0.2:7000"), &[]),
    );
    let err = icmp4(3, 4, [0, 0, 0x02, 0x40], &foreign[..28]);
    r.rx(&ipv4_frame(US_MAC, router, us4(), 1, &err));
    assert_eq!(r.stack.counters.pmtu_updates, 1);
}

#[test]
fn packet_too_big_lowers_the_path_mtu_of_later_udp_sends_v6() {
    let mut r = Rig::new();
    r.meet_peer();
    let s = r.bind("[::]:5000");
    let payload = vec![0xa5; 1400];
    r.send(s, "[fd00::2]:7000", &payload).unwrap();
    let sent = r.take();
    assert_eq!(sent.len(), 1);
    let router: Ipv6Addr = "fd00::fe".parse().unwrap();
    let msg = icmp6_msg(2, 0, 1280u32.to_be_bytes(), &sent[0][14..14 + 48]);
    r.rx(&ipv6_frame(
        US_MAC,
        router,
        us6(),
        58,
        64,
        &icmp6(router, us6(), &msg),
    ));
    assert_eq!(r.stack.counters.pmtu_updates, 1);
    r.send(s, "[fd00::2]:7000", &payload).unwrap();
    let frags = parse_all(&r.take());
    assert_eq!(frags.len(), 2);
    for f in &frags {
        match f {
            Out::V6 { packet, next, .. } => {
                assert_eq!(*next, 44, "a fragment header");
                assert!(packet.len() <= 1280, "{}", packet.len());
            }
            other => panic!("{other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// UDP between two engines.

fn recv_all(net: &mut Net, host: usize, id: UdpId) -> Vec<capnet_tcpip::udp::Datagram> {
    let mut v = Vec::new();
    while let Some(d) = net.hosts[host].stack.udp_recv(id) {
        v.push(d);
    }
    v
}

#[test]
fn udp_both_ways_on_both_families() {
    let mut net = Net::new(2, Link::default(), 11);
    for v6 in [false, true] {
        let (wild, a_addr, b_addr) = if v6 {
            ("[::]", net.addr6(0, 5000), net.addr6(1, 6000))
        } else {
            ("0.0.0.0", net.addr(0, 5000), net.addr(1, 6000))
        };
        let a = net.hosts[0]
            .stack
            .udp_bind(sa(&format!("{wild}:5000")))
            .unwrap();
        let b = net.hosts[1]
            .stack
            .udp_bind(sa(&format!("{wild}:6000")))
            .unwrap();
        net.with(0, |s, now, out| s.udp_send(now, a, b_addr, b"ping", out))
            .unwrap();
        let mut got = Vec::new();
        assert!(net.run_until(Duration::from_secs(1), |net| {
            got.extend(recv_all(net, 1, b));
            !got.is_empty()
        }));
        assert!(net.drain_events(1).contains(&Event::Udp(b)));
        assert_eq!(got[0].payload, b"ping");
        assert_eq!(got[0].from, a_addr);
        assert_eq!(got[0].to, b_addr);
        net.with(1, |s, now, out| {
            s.udp_send(now, b, got[0].from, b"pong", out)
        })
        .unwrap();
        let mut back = Vec::new();
        assert!(net.run_until(Duration::from_secs(1), |net| {
            back.extend(recv_all(net, 0, a));
            !back.is_empty()
        }));
        assert!(net.drain_events(0).contains(&Event::Udp(a)));
        assert_eq!(back[0].payload, b"pong");
        assert_eq!(back[0].from, b_addr);
    }
}

fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).rotate_left(11) as u8 ^ salt)
        .collect()
}

#[test]
fn large_datagrams_leave_in_fragments_and_arrive_byte_exact() {
    for v6 in [false, true] {
        let mut net = Net::new(2, Link::default(), 12);
        let (a_addr, b_addr) = if v6 {
            (net.addr6(0, 5000), net.addr6(1, 6000))
        } else {
            (net.addr(0, 5000), net.addr(1, 6000))
        };
        let a = net.hosts[0].stack.udp_bind(a_addr).unwrap();
        let b = net.hosts[1].stack.udp_bind(b_addr).unwrap();
        let max = if v6 { MAX_PAYLOAD_V6 } else { MAX_PAYLOAD_V4 };
        // The first before the neighbour is known: every fragment waits
        // for resolution and none is lost.
        let sizes = [3000, 1473, max, 1, 9000];
        for (i, &n) in sizes.iter().enumerate() {
            let data = pattern(n, i as u8);
            net.with(0, |s, now, out| s.udp_send(now, a, b_addr, &data, out))
                .unwrap_or_else(|e| panic!("v6 {v6}: {n} bytes: {e:?}"));
        }
        let mut got = Vec::new();
        net.run_until(Duration::from_secs(2), |net| {
            got.extend(recv_all(net, 1, b));
            got.len() == sizes.len()
        });
        let lens: Vec<usize> = got.iter().map(|d| d.payload.len()).collect();
        assert_eq!(lens, sizes, "v6 {v6}");
        for (i, d) in got.iter().enumerate() {
            assert!(
                d.payload == pattern(sizes[i], i as u8),
                "v6 {v6}: datagram {i}"
            );
        }
        let c = net.hosts[0].stack.counters;
        assert!(c.fragments_sent > 45, "{c:?}");
        assert_eq!(net.hosts[1].stack.counters.reassembled, 4, "v6 {v6}");
        // One byte more than a datagram holds is refused, and nothing leaves.
        let frames = net.frames;
        let too_big = vec![0u8; max + 1];
        let r = net.with(0, |s, now, out| s.udp_send(now, a, b_addr, &too_big, out));
        assert_eq!(r, Err(UdpSendError::TooBig));
        net.run_until(Duration::from_millis(100), |_| false);
        assert_eq!(net.frames, frames);
    }
}

#[test]
fn a_full_receive_buffer_drops_and_counts() {
    let mut net = Net::new(2, Link::default(), 13);
    let b_addr = net.addr(1, 6000);
    let a_addr = net.addr(0, 5000);
    let a = net.hosts[0].stack.udp_bind(a_addr).unwrap();
    let b = net.hosts[1].stack.udp_bind(b_addr).unwrap();
    net.hosts[1].stack.udp.set_recv_buffer(b, 4096);
    for i in 0..20u8 {
        net.with(0, |s, now, out| s.udp_send(now, a, b_addr, &[i; 1000], out))
            .unwrap();
    }
    net.run_until(Duration::from_millis(200), |_| false);
    let got = recv_all(&mut net, 1, b);
    let c = net.hosts[1].stack.udp.counters();
    assert!(!got.is_empty() && got.len() < 20, "{}", got.len());
    assert_eq!(c.dropped_full, 20 - got.len() as u64, "{c:?}");
    assert_eq!(c.delivered, got.len() as u64);
    // What was kept is the oldest, in order.
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d.payload[0], i as u8);
    }
    // A full buffer is no closed port: no ICMP error.
    assert_eq!(net.hosts[1].stack.counters.icmp_errors_sent, 0);
}

// ---------------------------------------------------------------------------
// Frames that are not for us, or not frames at all.

#[test]
fn frames_for_another_host_are_counted_and_dropped() {
    let mut r = Rig::new();
    r.meet_peer();
    let s = r.bind("0.0.0.0:9");
    let other_mac = [0x02, 0, 0, 0, 0, 0x99];
    r.rx(&udp_frame(
        other_mac,
        sa("10.0.0.2:1"),
        sa("10.0.0.1:9"),
        b"x",
    ));
    assert_eq!(r.stack.ip.counters.not_for_us, 1);
    r.rx(&udp_frame(
        US_MAC,
        sa("10.0.0.2:1"),
        sa("10.0.0.99:9"),
        b"x",
    ));
    assert_eq!(r.stack.ip.counters.not_for_us, 2);
    r.rx(&udp_frame(
        US_MAC,
        sa("[fd00::2]:1"),
        sa("[fd00::99]:9"),
        b"x",
    ));
    assert_eq!(r.stack.ip.counters.not_for_us, 3);
    assert!(r.take().is_empty());
    assert!(r.stack.udp_recv(s).is_none());
    assert!(r.stack.next_event().is_none());
}

#[test]
fn martian_sources_are_dropped() {
    let mut r = Rig::new();
    r.meet_peer();
    let s = r.bind("0.0.0.0:9");
    let s6 = r.bind("[::]:9");
    for src in ["127.0.0.1:1", "255.255.255.255:1", "224.0.0.1:1"] {
        r.rx(&udp_frame(US_MAC, sa(src), sa("10.0.0.1:9"), b"x"));
    }
    for src in ["[::1]:1", "[ff02::1]:1"] {
        r.rx(&udp_frame(US_MAC, sa(src), sa("[fd00::1]:9"), b"x"));
    }
    assert!(r.stack.udp_recv(s).is_none());
    assert!(r.stack.udp_recv(s6).is_none());
    assert_eq!(r.stack.ip.counters.malformed, 5);
    // Nor does a closed port answer one.
    r.rx(&udp_frame(
        US_MAC,
        sa("127.0.0.1:1"),
        sa("10.0.0.1:10"),
        b"x",
    ));
    assert!(r.take().is_empty());
}

/// Valid frames of every kind the engine takes, from the peer.
fn valid_frames() -> Vec<Vec<u8>> {
    let mut v = vec![
        arp(
            ArpOperation::Request,
            PEER_MAC,
            peer4(),
            [0; 6],
            us4(),
            BROADCAST,
        ),
        udp_frame(
            US_MAC,
            sa("10.0.0.2:4000"),
            sa("10.0.0.1:9"),
            b"datagram four",
        ),
        udp_frame(
            US_MAC,
            sa("[fd00::2]:4000"),
            sa("[fd00::1]:9"),
            b"datagram six",
        ),
        tcp_syn(sa("10.0.0.2:4000"), sa("10.0.0.1:80")),
        tcp_syn(sa("[fd00::2]:4000"), sa("[fd00::1]:80")),
        ipv4_frame(
            US_MAC,
            peer4(),
            us4(),
            1,
            &icmp4(8, 0, [0, 1, 0, 1], b"ping"),
        ),
        ipv6_frame(
            US_MAC,
            peer6(),
            us6(),
            58,
            64,
            &icmp6(peer6(), us6(), &icmp6_msg(128, 0, [0, 1, 0, 1], b"ping")),
        ),
    ];
    let ns = icmp6(peer6(), us6(), &ndisc_ns(us6(), Some(PEER_MAC)));
    v.push(ipv6_frame(US_MAC, peer6(), us6(), 58, 255, &ns));
    let datagram = udp(sa("10.0.0.2:4000"), sa("10.0.0.1:9"), &[3u8; 64]);
    let p = ipv4(peer4(), us4(), 17, (40, 0, true), &datagram[..32]);
    v.push(ethernet(US_MAC, PEER_MAC, 0x0800, &p));
    v.push(ipv6_fragment(
        peer6(),
        us6(),
        17,
        41,
        0,
        true,
        &datagram[..32],
    ));
    v
}

#[test]
fn every_truncation_of_a_valid_frame_is_counted_and_dropped() {
    let mut r = Rig::new();
    r.meet_peer();
    let s4 = r.bind("0.0.0.0:9");
    let s6 = r.bind("[::]:9");
    r.stack
        .tcp_listen(sa("0.0.0.0:80"), 16, Default::default())
        .unwrap();
    for (i, frame) in valid_frames().iter().enumerate() {
        for n in 0..frame.len() {
            let before = r.drops();
            r.rx(&frame[..n]);
            assert_eq!(
                r.drops(),
                before + 1,
                "frame {i} cut to {n} bytes: not counted"
            );
            r.take();
            assert!(r.stack.udp_recv(s4).is_none(), "frame {i} cut to {n}");
            assert!(r.stack.udp_recv(s6).is_none(), "frame {i} cut to {n}");
        }
    }
    assert_eq!(r.stack.counters.reassembled, 0);
    assert_eq!(r.stack.counters.echo_replies, 0);
}

#[test]
fn bad_checksums_are_counted_and_dropped() {
    let mut r = Rig::new();
    r.meet_peer();
    let s4 = r.bind("0.0.0.0:9");
    let s6 = r.bind("[::]:9");
    let _l = r
        .stack
        .tcp_listen(sa("[::]:80"), 16, Default::default())
        .unwrap();
    let _l4 = r
        .stack
        .tcp_listen(sa("0.0.0.0:80"), 16, Default::default())
        .unwrap();
    // IPv4 header checksum.
    let mut f = udp_frame(US_MAC, sa("10.0.0.2:4000"), sa("10.0.0.1:9"), b"x");
    f[14 + 10] ^= 0x40;
    r.rx(&f);
    assert_eq!(r.stack.ip.counters.bad_checksum, 1);
    // UDP checksums, both families.
    for (src, dst) in [
        ("10.0.0.2:4000", "10.0.0.1:9"),
        ("[fd00::2]:4000", "[fd00::1]:9"),
    ] {
        let mut f = udp_frame(US_MAC, sa(src), sa(dst), b"payload");
        let last = f.len() - 1;
        f[last] ^= 0xff;
        r.rx(&f);
    }
    assert_eq!(r.stack.ip.counters.bad_checksum, 3);
    // IPv6 forbids the zero UDP checksum (RFC 8200 8.1); IPv4 allows it.
    let mut f = udp_frame(US_MAC, sa("[fd00::2]:4000"), sa("[fd00::1]:9"), b"zero");
    f[14 + 40 + 6..14 + 40 + 8].copy_from_slice(&[0, 0]);
    r.rx(&f);
    assert_eq!(r.stack.ip.counters.bad_checksum, 4);
    // TCP checksums, both families: no SYN-ACK.
    for (src, dst) in [
        ("10.0.0.2:4000", "10.0.0.1:80"),
        ("[fd00::2]:4000", "[fd00::1]:80"),
    ] {
        let mut f = tcp_syn(sa(src), sa(dst));
        let at = f.len() - 20 + 4;
        f[at] ^= 1;
        r.rx(&f);
    }
    assert_eq!(r.stack.ip.counters.bad_checksum, 6);
    assert!(r.take().is_empty());
    assert!(r.stack.udp_recv(s4).is_none() && r.stack.udp_recv(s6).is_none());
    // The IPv4 zero checksum: taken.
    let mut f = udp_frame(US_MAC, sa("10.0.0.2:4000"), sa("10.0.0.1:9"), b"none");
    f[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
    r.rx(&f);
    assert_eq!(r.stack.udp_recv(s4).unwrap().payload, b"none");
}

#[test]
fn checksum_ok_from_the_nic_skips_verification() {
    let mut r = Rig::new();
    r.meet_peer();
    let s4 = r.bind("0.0.0.0:9");
    let s6 = r.bind("[::]:9");
    let ok = RxMeta { checksum_ok: true };
    let mut f = udp_frame(US_MAC, sa("10.0.0.2:4000"), sa("10.0.0.1:9"), b"trusted");
    f[14 + 10] ^= 0x40; // IP header checksum
    f[14 + 26] ^= 0x40; // UDP checksum
    r.rx_meta(&f, ok);
    assert_eq!(r.stack.udp_recv(s4).unwrap().payload, b"trusted");
    let mut f = udp_frame(US_MAC, sa("[fd00::2]:4000"), sa("[fd00::1]:9"), b"trusted6");
    f[14 + 46] ^= 0x40;
    r.rx_meta(&f, ok);
    assert_eq!(r.stack.udp_recv(s6).unwrap().payload, b"trusted6");
    // A SYN with a wrong checksum the NIC vouched for: answered.
    r.stack
        .tcp_listen(sa("0.0.0.0:80"), 16, Default::default())
        .unwrap();
    let mut syn = tcp_syn(sa("10.0.0.2:4000"), sa("10.0.0.1:80"));
    let at = syn.len() - 20 + 16;
    syn[at] ^= 1;
    r.rx_meta(&syn, ok);
    r.stack.poll(r.now, &mut r.out);
    let out = parse_all(&r.take());
    assert!(
        out.iter().any(|o| matches!(o, Out::V4 { proto: 6, .. })),
        "{out:?}"
    );
    assert_eq!(r.stack.ip.counters.bad_checksum, 0);
}

#[test]
fn random_corruption_of_valid_frames_never_panics() {
    let mut r = Rig::new();
    r.meet_peer();
    let _s = r.bind("0.0.0.0:9");
    let _l = r
        .stack
        .tcp_listen(sa("0.0.0.0:80"), 16, Default::default())
        .unwrap();
    let frames = valid_frames();
    let mut rng = SmallRng::seed_from_u64(0x1dea);
    for round in 0..20_000 {
        let mut f = frames[rng.gen_range(0..frames.len())].clone();
        for _ in 0..rng.gen_range(1..4) {
            let i = rng.gen_range(0..f.len());
            f[i] = rng.gen();
        }
        if rng.gen_bool(0.1) {
            f.truncate(rng.gen_range(0..f.len()));
        }
        let meta = RxMeta {
            checksum_ok: rng.gen_bool(0.3),
        };
        r.rx_meta(&f, meta);
        if round % 100 == 0 {
            r.advance(Duration::from_millis(rng.gen_range(0..2_000)));
        }
        r.take();
    }
    assert_eq!(r.stack.ip.counters.frames_in, 20_000 + 2);
}
