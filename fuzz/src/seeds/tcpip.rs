//! Seeds of `engine_frames`: frames the TCP/IP engine meets, from what
//! it sends itself.

use super::*;

/// Frames as `engine_frames` reads them: each after an op that lets the
/// application take a turn and moves the clock 10 ms.
fn engine_ops(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    for f in frames {
        v.push(0x81);
        piece(&mut v, f);
    }
    v
}

/// What the peer sends when it does `action` (from the state every
/// `engine_frames` input starts in), our answers delivered to it.
fn engine_recorded(action: impl FnOnce(&mut engine::Engine, &mut engine::Wire)) -> Vec<u8> {
    let (mut e, _) = engine::setup();
    let mut w = engine::Wire::default();
    action(&mut e, &mut w);
    let mut frames = w.frames;
    frames.extend(e.pump(64));
    engine_ops(&frames)
}

/// An IP packet from the peer to the engine under test, in a frame.
fn engine_ip(v6: bool, proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = engine::US_MAC.to_vec();
    f.extend_from_slice(&engine::PEER_MAC);
    if v6 {
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        f.extend_from_slice(&[proto, if proto == 58 { 255 } else { 64 }]);
        f.extend_from_slice(&ENGINE_PEER6.octets());
        f.extend_from_slice(&ENGINE_US6.octets());
    } else {
        let mut h = [0u8; 20];
        h[0] = 0x45;
        h[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        h[8] = 64;
        h[9] = proto;
        h[12..16].copy_from_slice(&[10, 0, 0, 1]);
        h[16..20].copy_from_slice(&[10, 0, 0, 2]);
        Ipv4Packet::new_unchecked(&mut h[..]).fill_checksum();
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&h);
    }
    f.extend_from_slice(l4);
    f
}

const ENGINE_PEER6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const ENGINE_US6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);

/// An ICMP (or, `v6`, ICMPv6) message from the peer, its checksum right.
fn engine_icmp(v6: bool, header: [u8; 8], body: &[u8]) -> Vec<u8> {
    let mut m = header.to_vec();
    m.extend_from_slice(body);
    if v6 {
        Icmpv6Packet::new_unchecked(&mut m[..]).fill_checksum(&ENGINE_PEER6, &ENGINE_US6);
        engine_ip(true, 58, &m)
    } else {
        Icmpv4Packet::new_unchecked(&mut m[..]).fill_checksum();
        engine_ip(false, 1, &m)
    }
}

pub(super) fn engine_frames() -> Vec<Vec<u8>> {
    let (_, setup) = engine::setup();
    let us4 = sa(&format!("10.0.0.2:{}", engine::TCP_PORT));
    let udp4 = sa(&format!("10.0.0.2:{}", engine::UDP_PORT));
    let udp6 = sa(&format!("[fd00::2]:{}", engine::UDP_PORT));
    let mut v = vec![
        // The handshake, the resolutions, a datagram: replayed.
        engine_ops(&setup),
        // Data on the connection, a little and a lot, then its end.
        engine_recorded(|e, _| {
            let (now, id) = (e.now, e.peer_conn);
            let _ = e.peer.tcp(now, id, |c| c.write(b"GET / HTTP/1.1\r\n\r\n"));
        }),
        engine_recorded(|e, _| {
            let (now, id) = (e.now, e.peer_conn);
            let _ = e.peer.tcp(now, id, |c| c.write(&[0x17; 6000]));
        }),
        engine_recorded(|e, _| {
            let (now, id) = (e.now, e.peer_conn);
            let _ = e.peer.tcp(now, id, |c| {
                c.write(b"bye");
                c.shutdown_write();
            });
        }),
        engine_recorded(|e, w| {
            let (now, id) = (e.now, e.peer_conn);
            e.peer.tcp_abort(now, id, w);
        }),
        // New connections, both families.
        engine_recorded(|e, _| {
            let now = e.now;
            let _ = e.peer.tcp_connect(now, None, us4, Default::default());
        }),
        engine_recorded(|e, _| {
            let now = e.now;
            let to = sa(&format!("[fd00::2]:{}", engine::TCP_PORT));
            let _ = e.peer.tcp_connect(now, None, to, Default::default());
        }),
        // A SYN to a closed port (a reset answers).
        engine_recorded(|e, _| {
            let now = e.now;
            let _ = e
                .peer
                .tcp_connect(now, None, sa("10.0.0.2:81"), Default::default());
        }),
    ];
    // Datagrams: small, fragmented, to a closed port; both families.
    for (to, len) in [
        (udp4, 10),
        (udp4, 4000),
        (udp6, 10),
        (udp6, 4000),
        (sa("10.0.0.2:9"), 10),
        (sa("[fd00::2]:9"), 10),
    ] {
        v.push(engine_recorded(|e, w| {
            let local = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
            let id = e.peer.udp_bind(sa(local)).expect("a free port");
            let _ = e.peer.udp_send(e.now, id, to, &vec![0x55; len], w);
        }));
    }
    // Crafted: echo requests, an ARP request, neighbour discovery, and a
    // Fragmentation Needed quoting the connection.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&engine::PEER_MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&engine::PEER_MAC);
    arp.extend_from_slice(&[10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
    let mut ns = ENGINE_US6.octets().to_vec();
    ns.extend_from_slice(&[1, 1]);
    ns.extend_from_slice(&engine::PEER_MAC);
    let mut na = ENGINE_PEER6.octets().to_vec();
    na.extend_from_slice(&[2, 1]);
    na.extend_from_slice(&engine::PEER_MAC);
    // About a TCP segment (checked against the send window) and a datagram.
    let ip = |proto: u8| {
        vec![
            0x45, 0, 5, 0xdc, 0, 1, 0x40, 0, 64, proto, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1,
        ]
    };
    let mut tcp_quote = ip(6);
    tcp_quote.extend_from_slice(&engine::TCP_PORT.to_be_bytes());
    tcp_quote.extend_from_slice(&40000u16.to_be_bytes());
    tcp_quote.extend_from_slice(&[0; 4]);
    let mut udp_quote = ip(17);
    udp_quote.extend_from_slice(&engine::UDP_PORT.to_be_bytes());
    udp_quote.extend_from_slice(&[0x14, 0xe9, 0x05, 0xc8, 0, 0]);
    v.push(engine_ops(&[
        engine_icmp(false, [8, 0, 0, 0, 0, 1, 0, 1], b"ping"),
        engine_icmp(true, [128, 0, 0, 0, 0, 1, 0, 1], b"ping"),
        arp,
        engine_icmp(true, [135, 0, 0, 0, 0, 0, 0, 0], &ns),
        engine_icmp(true, [136, 0, 0, 0, 0x60, 0, 0, 0], &na),
        engine_icmp(false, [3, 4, 0, 0, 0, 0, 2, 0x40], &tcp_quote),
        engine_icmp(false, [3, 4, 0, 0, 0, 0, 4, 0], &udp_quote),
        engine_ip(false, 132, &[0; 8]),
    ]));
    v
}
