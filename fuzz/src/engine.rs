//! capnet's own TCP/IP engine (`capnet-tcpip`) on its ingress path: every
//! frame a hostile peer on the link can send, from Ethernet through ARP,
//! IPv4/IPv6 (with reassembly), ICMP, neighbour discovery, UDP and TCP,
//! into a stack with a listener, UDP sockets and an established
//! connection, with time advancing and the stack polled between frames.
//!
//! The stack under test is 10.0.0.2 / fd00::2 (MAC 02:00:00:00:00:02),
//! the peer 10.0.0.1 / fd00::1 (MAC ..:01): the addresses the other frame
//! targets use, so their corpora seed this one too. The state before the
//! first frame is made by driving two engines against each other
//! ([`setup`]); it is the same for every input (fixed secrets, fixed time).

use crate::input::Input;
use capnet_tcpip::stack::Event;
use capnet_tcpip::tcp::{ListenerId, Mark, Options, TcpId};
use capnet_tcpip::udp::UdpId;
use capnet_tcpip::{Cidr, Device, IfaceId, Instant, RxMeta, Stack};
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, Icmpv4Packet, Icmpv6Packet, Ipv4Packet, Ipv6Packet, TcpPacket,
    UdpPacket,
};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The stack under test.
pub const US_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
/// The peer that connected to it.
pub const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
/// The stack's TCP listener and UDP sockets (both families).
pub const TCP_PORT: u16 = 443;
pub const UDP_PORT: u16 = 53;
/// The peer's end of the established connection.
pub const PEER_TCP: &str = "10.0.0.1:40000";
const MTU: usize = 1500;
/// Most frames one input feeds.
const MAX_OPS: usize = 128;

/// Frames the engine sent during one call, each checked as it leaves.
#[derive(Default)]
pub struct Wire {
    pub frames: Vec<Vec<u8>>,
}

impl Device for Wire {
    fn transmit(&mut self, _iface: IfaceId, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
        let mut f = vec![0u8; len];
        fill(&mut f);
        self.frames.push(f);
        true
    }
}

/// Two engines, the one under test (`us`) holding a listener, UDP sockets
/// and a connection accepted from `peer`.
pub struct Engine {
    pub us: Stack,
    pub peer: Stack,
    pub now: Instant,
    pub listener: ListenerId,
    pub udp: [UdpId; 2],
    /// The accepted connection (ours) and the peer's end.
    pub conn: TcpId,
    pub peer_conn: TcpId,
}

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("a fixed address")
}

fn stack(mac: [u8; 6], host: u8, secret: u8) -> Stack {
    let config = capnet_tcpip::Config {
        secret: [secret; 32],
        ..Default::default()
    };
    let mut s = Stack::new(Instant::from_millis(1_000), config);
    let iface = s.add_iface(mac, MTU);
    for cidr in [format!("10.0.0.{host}/24"), format!("fd00::{host}/64")] {
        let c: Cidr = cidr.parse().expect("a fixed prefix");
        s.add_address(iface, c).expect("a fresh interface");
    }
    s
}

impl Engine {
    /// Both engines polled and every frame between them delivered, until
    /// neither has anything to say (or `rounds` pass); the peer's frames
    /// to us are returned, in order.
    pub fn pump(&mut self, rounds: usize) -> Vec<Vec<u8>> {
        let iface = IfaceId(0);
        let mut to_us = Vec::new();
        let mut to_peer: Vec<Vec<u8>> = Vec::new();
        for _ in 0..rounds {
            let mut from_peer = Wire::default();
            for f in to_peer.drain(..) {
                self.peer
                    .receive(self.now, iface, &f, RxMeta::default(), &mut from_peer);
            }
            self.peer.poll(self.now, &mut from_peer);
            let mut from_us = Wire::default();
            for f in &from_peer.frames {
                self.us
                    .receive(self.now, iface, f, RxMeta::default(), &mut from_us);
            }
            self.us.poll(self.now, &mut from_us);
            let quiet = from_peer.frames.is_empty() && from_us.frames.is_empty();
            to_us.extend(from_peer.frames);
            to_peer = from_us.frames;
            if !quiet {
                self.now += Duration::from_millis(1);
                continue;
            }
            // Nothing on the wire: on to the next timer within a second
            // (a solicitation, a delayed ACK), or done.
            let next = [self.us.next_deadline(), self.peer.next_deadline()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= self.now + Duration::from_secs(1) => {
                    self.now = t.max(self.now + Duration::from_micros(1));
                }
                _ => break,
            }
        }
        to_us
    }
}

/// The state every input starts from: the peer resolved (ARP and ND both
/// ways), connected to our listener and accepted, and a datagram of each
/// family exchanged. Also returns the peer's frames that made it.
pub fn setup() -> (Engine, Vec<Vec<u8>>) {
    let mut us = stack(US_MAC, 2, 0x5a);
    let mut peer = stack(PEER_MAC, 1, 0xa5);
    let listener = us
        .tcp_listen(sa(&format!("0.0.0.0:{TCP_PORT}")), 8, Options::default())
        .expect("a free port");
    let _ = us.tcp_listen(sa(&format!("[::]:{TCP_PORT}")), 8, Options::default());
    let udp = [
        us.udp_bind(sa(&format!("0.0.0.0:{UDP_PORT}")))
            .expect("a free port"),
        us.udp_bind(sa(&format!("[::]:{UDP_PORT}")))
            .expect("a free port"),
    ];
    let now = Instant::from_millis(1_000);
    let peer_conn = peer
        .tcp_connect(
            now,
            Some(sa(PEER_TCP)),
            sa(&format!("10.0.0.2:{TCP_PORT}")),
            Options::default(),
        )
        .expect("a route");
    let mut e = Engine {
        us,
        peer,
        now,
        listener,
        udp,
        conn: peer_conn,
        peer_conn,
    };
    let mut frames = e.pump(64);
    let (conn, _) =
        e.us.tcp
            .accept(listener)
            .ok()
            .flatten()
            .expect("the handshake completes");
    e.conn = conn;
    let peer_udp = e
        .peer
        .udp_bind(sa("[::]:5353"))
        .expect("a free port on the peer");
    let mut out = Wire::default();
    let _ = e.peer.udp_send(
        e.now,
        peer_udp,
        sa(&format!("[fd00::2]:{UDP_PORT}")),
        b"v6",
        &mut out,
    );
    frames.extend(out.frames);
    frames.extend(e.pump(64));
    for id in e.udp {
        while e.us.udp_recv(id).is_some() {}
    }
    while e.us.next_event().is_some() {}
    (e, frames)
}

/// Every counter of the engine, in a fixed order.
fn counters(s: &Stack) -> Vec<u64> {
    let ip = s.ip.counters;
    let st = s.counters;
    let tcp = s.tcp.counters;
    let udp = s.udp.counters();
    let n = s.ip.neighbors.counters();
    vec![
        ip.frames_in,
        ip.frames_out,
        ip.not_for_us,
        ip.malformed,
        ip.bad_checksum,
        ip.no_route,
        ip.device_full,
        ip.neighbor_drops,
        ip.unknown_protocol,
        ip.too_big,
        st.icmp_in,
        st.icmp_errors_sent,
        st.icmp_errors_limited,
        st.echo_replies,
        st.frag_errors,
        st.reassembled,
        st.pmtu_updates,
        st.fragments_sent,
        tcp.active_opens,
        tcp.passive_opens,
        tcp.resets_sent,
        tcp.resets_received,
        tcp.no_socket,
        tcp.syn_cookies_sent,
        tcp.syn_cookies_accepted,
        tcp.syn_cookies_rejected,
        tcp.listen_overflows,
        tcp.malformed,
        tcp.ended.retransmits,
        tcp.ended.timeouts,
        udp.received,
        udp.delivered,
        udp.dropped_full,
        udp.no_port,
        udp.sent,
        udp.send_errors,
        n.resolved,
        n.solicits,
        n.failed,
        n.dropped_queue_full,
        n.dropped_failed,
        n.dropped_no_room,
        n.evictions,
    ]
}

/// What the engine sends is well formed whatever it was fed: from its own
/// MAC, within the MTU, IP lengths that match, and every checksum right.
fn check_sent(frames: &[Vec<u8>]) {
    for f in frames {
        let eth = EthernetFrame::new_checked(&f[..]).expect("a whole Ethernet header");
        assert_eq!(eth.src_addr().0, US_MAC, "sent from our MAC");
        assert!(
            f.len() <= 14 + MTU,
            "a {} byte frame exceeds the MTU",
            f.len()
        );
        match eth.ethertype() {
            EthernetProtocol::Ipv4 => {
                let p = Ipv4Packet::new_checked(eth.payload()).expect("a whole IPv4 packet");
                assert_eq!(usize::from(p.total_len()), eth.payload().len());
                assert!(p.verify_checksum(), "IPv4 header checksum");
                let (src, dst) = (IpAddr::V4(p.src_addr()), IpAddr::V4(p.dst_addr()));
                if p.frag_offset() == 0 && !p.more_frags() {
                    check_l4(u8::from(p.next_header()), src, dst, p.payload());
                }
            }
            EthernetProtocol::Ipv6 => {
                let p = Ipv6Packet::new_checked(eth.payload()).expect("a whole IPv6 packet");
                assert_eq!(usize::from(p.payload_len()) + 40, eth.payload().len());
                let (src, dst) = (IpAddr::V6(p.src_addr()), IpAddr::V6(p.dst_addr()));
                check_l4(u8::from(p.next_header()), src, dst, p.payload());
            }
            EthernetProtocol::Arp => {}
            other => panic!("sent ethertype {other}"),
        }
    }
}

fn check_l4(proto: u8, src: IpAddr, dst: IpAddr, l4: &[u8]) {
    match proto {
        6 => {
            let t = TcpPacket::new_checked(l4).expect("a whole TCP header");
            assert!(t.verify_checksum(&src.into(), &dst.into()), "TCP checksum");
        }
        17 => {
            let u = UdpPacket::new_checked(l4).expect("a whole UDP header");
            assert_eq!(usize::from(u.len()), l4.len());
            assert!(u.verify_checksum(&src.into(), &dst.into()), "UDP checksum");
        }
        1 => {
            let i = Icmpv4Packet::new_checked(l4).expect("a whole ICMP header");
            assert!(i.verify_checksum(), "ICMP checksum");
        }
        58 => {
            let (IpAddr::V6(s), IpAddr::V6(d)) = (src, dst) else {
                panic!("ICMPv6 over IPv4")
            };
            let i = Icmpv6Packet::new_checked(l4).expect("a whole ICMPv6 header");
            assert!(i.verify_checksum(&s, &d), "ICMPv6 checksum");
        }
        44 => {}
        other => panic!("sent IP protocol {other}"),
    }
}

/// What the application does between frames: accept, read everything,
/// write a little, answer datagrams, now and then close.
fn application(e: &mut Engine, op: u8, wire: &mut Wire) {
    while let Some(ev) = e.us.next_event() {
        match ev {
            Event::Accept(l) => while let Ok(Some(_)) = e.us.tcp.accept(l) {},
            Event::Tcp(id) => {
                let _ = e.us.tcp(e.now, id, |c| {
                    // Run by run, as the bindings read an offloaded
                    // connection: placed runs are taken without bytes.
                    let mut buf = [0u8; 4096];
                    while let Some((mark, n)) = c.front_run() {
                        let took = match mark {
                            Mark::Placed { .. } => {
                                c.consume(n);
                                n
                            }
                            _ => c.read(&mut buf[..n.min(4096)]),
                        };
                        assert!(took > 0, "a run at the read point yields bytes");
                    }
                });
            }
            Event::Udp(id) => {
                while let Some(d) = e.us.udp_recv(id) {
                    let _ = e.us.udp_send(e.now, id, d.from, &d.payload, wire);
                }
            }
        }
    }
    let conn = e.conn;
    let _ = e.us.tcp(e.now, conn, |c| {
        let n = usize::from(op & 0x0f) * 100;
        c.write(&vec![0x42; n]);
        if op & 0x30 == 0x30 {
            c.shutdown_write();
        }
    });
}

/// The fuzz target. Input: ops of `[op][u16 len][frame]`. The frame goes
/// to the engine (as checksum-verified by the NIC if `op & 0x40`, marked
/// by the frame's first byte's low bits as a driver may); then the
/// clock moves by `(op & 0x3f) * 10` ms and the engine is polled; if
/// `op & 0x80` the application takes a turn first.
pub fn engine_frames(data: &[u8]) {
    run(data);
}

/// [`engine_frames`], returning the engine as the input left it.
pub fn run(data: &[u8]) -> Engine {
    let (mut e, _) = setup();
    let mut input = Input::new(data);
    let iface = IfaceId(0);
    let mut last = counters(&e.us);
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        let op = input.u8();
        let frame = input.piece();
        let mut wire = Wire::default();
        // Marks as a hostile driver might set them, on any frame.
        let mark = match frame.first().map(|b| b & 3) {
            Some(1) => Mark::Decrypted,
            Some(2) => Mark::Placed { context: 1 },
            _ => Mark::Plain,
        };
        let meta = RxMeta {
            checksum_ok: op & 0x40 != 0,
            mark,
        };
        e.us.receive(e.now, iface, frame, meta, &mut wire);
        let now = counters(&e.us);
        assert_eq!(now[0], last[0] + 1, "one frame in");
        if op & 0x80 != 0 {
            application(&mut e, op, &mut wire);
        }
        e.now += Duration::from_millis(u64::from(op & 0x3f) * 10);
        e.us.poll(e.now, &mut wire);
        if let Some(t) = e.us.next_deadline() {
            // A deadline in the past is polled now; it must then move on.
            if t <= e.now {
                e.us.poll(e.now, &mut wire);
            }
        }
        check_sent(&wire.frames);
        let now = counters(&e.us);
        for (i, (a, b)) in last.iter().zip(&now).enumerate() {
            assert!(b >= a, "counter {i} went down: {a} -> {b}");
        }
        last = now;
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use capnet_tcpip::tcp::State;

    #[test]
    fn setup_makes_an_established_connection() {
        let (e, frames) = setup();
        assert!(!frames.is_empty());
        let c = e.us.tcp.conn(e.conn).expect("accepted");
        assert_eq!(c.state(), State::Established);
        assert!(e.us.ip.neighbors.len() >= 2, "both families resolved");
    }

    #[test]
    fn the_seeds_reach_every_layer() {
        let seeds = crate::seeds::seeds("engine_frames");
        let mut total = vec![0u64; counters(&setup().0.us).len()];
        let mut read = 0;
        for s in &seeds {
            let e = run(s);
            let c = counters(&e.us);
            for (t, x) in total.iter_mut().zip(&c) {
                *t += x;
            }
            read += e.us.tcp.conns().count();
        }
        let [echo, reassembled, delivered, no_port, pmtu] = [13, 15, 31, 33, 16].map(|i| total[i]);
        assert!(echo >= 2, "echo replies: {echo}");
        assert!(reassembled >= 2, "reassembled: {reassembled}");
        assert!(delivered >= 4, "UDP delivered: {delivered}");
        assert!(no_port >= 2, "UDP to closed ports: {no_port}");
        assert!(pmtu >= 1, "PMTU updates: {pmtu}");
        assert!(total[19] >= 2, "passive opens: {}", total[19]);
        assert!(read > 0);
    }
}
