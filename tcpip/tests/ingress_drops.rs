//! Frames that are not for us, or not frames at all: counted and dropped,
//! never a panic.

mod netpeer;
mod sim;

use netpeer::*;

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
    let ok = RxMeta {
        checksum_ok: true,
        ..RxMeta::default()
    };
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
            ..RxMeta::default()
        };
        r.rx_meta(&f, meta);
        if round % 100 == 0 {
            r.advance(Duration::from_millis(rng.gen_range(0..2_000)));
        }
        r.take();
    }
    assert_eq!(r.stack.ip.counters.frames_in, 20_000 + 2);
}
