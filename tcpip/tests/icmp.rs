//! ICMP echo, ICMP errors (and when not to send one) and path MTU.

mod netpeer;
mod sim;

use netpeer::*;

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
