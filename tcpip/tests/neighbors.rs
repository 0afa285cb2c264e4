//! ARP and IPv6 neighbour discovery as a peer on the link sees them.

mod netpeer;
mod sim;

use netpeer::*;

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
