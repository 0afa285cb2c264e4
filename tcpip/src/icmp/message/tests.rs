use super::super::{TimeExceeded, UnreachableV4, UnreachableV6};
use super::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    Icmpv4DstUnreachable, Icmpv4Repr, Icmpv6DstUnreachable, Icmpv6ParamProblem, Icmpv6Repr,
    Icmpv6TimeExceeded, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr,
};

pub(crate) const A4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub(crate) const B4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
pub(crate) const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
pub(crate) const B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
pub(crate) const C6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3);

/// An IPv4 packet from `src` to `dst` of `proto` with `payload`.
pub(crate) fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: IpProtocol, payload: &[u8]) -> Vec<u8> {
    let repr = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: proto,
        payload_len: payload.len(),
        hop_limit: 64,
    };
    let mut buf = vec![0u8; 20 + payload.len()];
    repr.emit(
        &mut Ipv4Packet::new_unchecked(&mut buf[..]),
        &ChecksumCapabilities::default(),
    );
    buf[20..].copy_from_slice(payload);
    buf
}

/// An IPv6 packet from `src` to `dst`, next header `next`, `payload`.
pub(crate) fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: IpProtocol, payload: &[u8]) -> Vec<u8> {
    let repr = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: next,
        payload_len: payload.len(),
        hop_limit: 64,
    };
    let mut buf = vec![0u8; 40 + payload.len()];
    repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
    buf[40..].copy_from_slice(payload);
    buf
}

fn udp_header(sport: u16, dport: u16, body: usize) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&((8 + body) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend(std::iter::repeat_n(0xab, body));
    h
}

fn checked_v4(msg: &[u8]) -> Icmpv4Repr<'_> {
    let p = Icmpv4Packet::new_checked(msg).unwrap();
    assert!(p.verify_checksum());
    Icmpv4Repr::parse(&p, &ChecksumCapabilities::default()).unwrap()
}

fn checked_v6<'a>(msg: &'a [u8], src: Ipv6Addr, dst: Ipv6Addr) -> Icmpv6Repr<'a> {
    let p = Icmpv6Packet::new_checked(msg).unwrap();
    assert!(p.verify_checksum(&src, &dst));
    Icmpv6Repr::parse(&src, &dst, &p, &ChecksumCapabilities::default()).unwrap()
}

#[test]
fn port_unreachable_v4_quotes_the_packet_and_verifies() {
    let offending = ipv4(B4, A4, IpProtocol::Udp, &udp_header(5000, 53, 12));
    let mut out = vec![0xee; 3]; // the caller's headers stay
    error_v4(
        ErrorV4::DestUnreachable(UnreachableV4::Port),
        &offending,
        &mut out,
    );
    assert_eq!(&out[..3], &[0xee; 3]);
    let msg = &out[3..];
    assert_eq!(msg.len(), 8 + offending.len());
    assert_eq!(&msg[8..], &offending[..]);
    match checked_v4(msg) {
        Icmpv4Repr::DstUnreachable {
            reason,
            header,
            data,
            ..
        } => {
            assert_eq!(reason, Icmpv4DstUnreachable::PortUnreachable);
            assert_eq!(header.src_addr, B4);
            assert_eq!(data, &offending[20..]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn frag_needed_carries_the_mtu_and_param_problem_the_pointer() {
    let offending = ipv4(B4, A4, IpProtocol::Tcp, &[0; 40]);
    let mut out = Vec::new();
    let kind = ErrorV4::DestUnreachable(UnreachableV4::FragNeeded { next_hop_mtu: 1400 });
    error_v4(kind, &offending, &mut out);
    assert_eq!(&out[..2], &[3, 4]);
    assert_eq!(&out[4..8], &[0, 0, 0x05, 0x78]);
    assert!(Icmpv4Packet::new_unchecked(&out[..]).verify_checksum());
    out.clear();
    error_v4(
        ErrorV4::ParameterProblem { pointer: 9 },
        &offending,
        &mut out,
    );
    assert_eq!(&out[..8], &[12, 0, out[2], out[3], 9, 0, 0, 0]);
    assert!(Icmpv4Packet::new_unchecked(&out[..]).verify_checksum());
    out.clear();
    error_v4(
        ErrorV4::TimeExceeded(TimeExceeded::ReassemblyTimeout),
        &offending,
        &mut out,
    );
    assert_eq!(&out[..2], &[11, 1]);
    assert!(Icmpv4Packet::new_unchecked(&out[..]).verify_checksum());
}

#[test]
fn v4_errors_stay_within_576_and_drop_link_padding() {
    let big = ipv4(B4, A4, IpProtocol::Udp, &udp_header(1, 2, 1400));
    let mut out = Vec::new();
    error_v4(
        ErrorV4::DestUnreachable(UnreachableV4::Port),
        &big,
        &mut out,
    );
    assert_eq!(out.len(), MAX_ERROR_V4_LEN);
    assert_eq!(out.len() + 20, 576);
    assert_eq!(&out[8..], &big[..548]);
    assert!(Icmpv4Packet::new_unchecked(&out[..]).verify_checksum());
    // A 46-octet frame payload padding a 28-octet packet.
    let mut small = ipv4(B4, A4, IpProtocol::Udp, &udp_header(1, 2, 0));
    small.extend_from_slice(&[0; 18]);
    out.clear();
    error_v4(
        ErrorV4::DestUnreachable(UnreachableV4::Port),
        &small,
        &mut out,
    );
    assert_eq!(out.len(), 8 + 28);
}

#[test]
fn v4_errors_about_garbage_still_build() {
    let mut rng = SmallRng::seed_from_u64(1);
    for len in [0usize, 1, 7, 19, 20, 21, 600, 70_000] {
        let junk: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let mut out = Vec::new();
        error_v4(
            ErrorV4::DestUnreachable(UnreachableV4::Host),
            &junk,
            &mut out,
        );
        assert!(out.len() <= MAX_ERROR_V4_LEN && out.len() >= 8);
        assert!(Icmpv4Packet::new_unchecked(&out[..]).verify_checksum());
        out.clear();
        error_v6(
            ErrorV6::DestUnreachable(UnreachableV6::Port),
            &junk,
            A6,
            B6,
            &mut out,
        );
        assert!(out.len() <= MAX_ERROR_V6_LEN && out.len() >= 8);
        assert!(Icmpv6Packet::new_unchecked(&out[..]).verify_checksum(&A6, &B6));
    }
}

#[test]
fn v6_errors_verify_with_smoltcp() {
    let offending = ipv6(B6, A6, IpProtocol::Udp, &udp_header(5000, 53, 20));
    let cases = [
        ErrorV6::DestUnreachable(UnreachableV6::Port),
        ErrorV6::PacketTooBig { mtu: 1400 },
        ErrorV6::TimeExceeded(TimeExceeded::ReassemblyTimeout),
        ErrorV6::ParameterProblem {
            code: ParameterProblemV6::UnrecognizedNextHeader,
            pointer: 6,
        },
    ];
    for kind in cases {
        let mut out = Vec::new();
        error_v6(kind, &offending, A6, B6, &mut out);
        assert_eq!(out.len(), 8 + offending.len());
        let repr = checked_v6(&out, A6, B6);
        match (kind, repr) {
            (ErrorV6::DestUnreachable(_), Icmpv6Repr::DstUnreachable { reason, header, .. }) => {
                assert_eq!(reason, Icmpv6DstUnreachable::PortUnreachable);
                assert_eq!(header.src_addr, B6);
            }
            (ErrorV6::PacketTooBig { .. }, Icmpv6Repr::PktTooBig { mtu, .. }) => {
                assert_eq!(mtu, 1400)
            }
            (ErrorV6::TimeExceeded(_), Icmpv6Repr::TimeExceeded { reason, .. }) => {
                assert_eq!(reason, Icmpv6TimeExceeded::FragReassemExceeded)
            }
            (
                ErrorV6::ParameterProblem { .. },
                Icmpv6Repr::ParamProblem {
                    reason, pointer, ..
                },
            ) => {
                assert_eq!(reason, Icmpv6ParamProblem::UnrecognizedNxtHdr);
                assert_eq!(pointer, 6);
            }
            (k, r) => panic!("{k:?} came back as {r:?}"),
        }
    }
}

#[test]
fn v6_errors_stay_within_1280() {
    let big = ipv6(B6, A6, IpProtocol::Udp, &udp_header(1, 2, 3000));
    let mut out = Vec::new();
    error_v6(ErrorV6::PacketTooBig { mtu: 1280 }, &big, A6, B6, &mut out);
    assert_eq!(out.len() + 40, 1280);
    assert_eq!(&out[8..], &big[..1232]);
    assert!(Icmpv6Packet::new_unchecked(&out[..]).verify_checksum(&A6, &B6));
    // Padding past the payload length is not quoted.
    let mut small = ipv6(B6, A6, IpProtocol::Udp, &udp_header(1, 2, 0));
    small.extend_from_slice(&[0; 10]);
    out.clear();
    error_v6(
        ErrorV6::PacketTooBig { mtu: 1280 },
        &small,
        A6,
        B6,
        &mut out,
    );
    assert_eq!(out.len(), 8 + 48);
}

#[test]
fn when_not_to_send_v4() {
    let udp = udp_header(1, 2, 4);
    let ok = ipv4(B4, A4, IpProtocol::Udp, &udp);
    assert!(may_send_error_v4(&ok, false));
    assert!(!may_send_error_v4(&ok, true));
    let bcast = Ipv4Addr::BROADCAST;
    let mcast = Ipv4Addr::new(224, 0, 0, 251);
    for (src, dst) in [
        (B4, bcast),
        (B4, mcast),
        (Ipv4Addr::UNSPECIFIED, A4),
        (bcast, A4),
        (mcast, A4),
        (Ipv4Addr::new(240, 0, 0, 1), A4),
    ] {
        assert!(!may_send_error_v4(
            &ipv4(src, dst, IpProtocol::Udp, &udp),
            false
        ));
    }
    // Loopback traffic of our own is answered.
    let lo = Ipv4Addr::LOCALHOST;
    assert!(may_send_error_v4(
        &ipv4(lo, lo, IpProtocol::Udp, &udp),
        false
    ));
    // A later fragment: no; the first (MF set, offset 0): yes.
    let mut frag = ok.clone();
    frag[6] = 0x00;
    frag[7] = 0x01;
    assert!(!may_send_error_v4(&frag, false));
    frag[6] = 0x20;
    frag[7] = 0x00;
    assert!(may_send_error_v4(&frag, false));
    // ICMP: errors no, informational yes, unreadable type no.
    for (t, may) in [
        (0u8, true),
        (8, true),
        (13, true),
        (3, false),
        (4, false),
        (5, false),
        (11, false),
        (12, false),
        (19, false),
        (255, false),
    ] {
        let p = ipv4(B4, A4, IpProtocol::Icmp, &[t, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(may_send_error_v4(&p, false), may, "type {t}");
    }
    let p = ipv4(B4, A4, IpProtocol::Icmp, &[]);
    assert!(!may_send_error_v4(&p, false));
    // Unreadable headers.
    assert!(!may_send_error_v4(&ok[..19], false));
    assert!(!may_send_error_v4(&[], false));
    let mut bad = ok.clone();
    bad[0] = 0x44; // IHL 16 octets
    assert!(!may_send_error_v4(&bad, false));
    bad[0] = 0x4f; // IHL 60 > packet
    assert!(!may_send_error_v4(&bad, false));
    bad[0] = 0x65;
    assert!(!may_send_error_v4(&bad, false));
}

#[test]
fn when_not_to_send_v6() {
    let port = ErrorV6::DestUnreachable(UnreachableV6::Port);
    let ptb = ErrorV6::PacketTooBig { mtu: 1280 };
    let udp = udp_header(1, 2, 4);
    let ok = ipv6(B6, A6, IpProtocol::Udp, &udp);
    assert!(may_send_error_v6(&ok, &port, false));
    assert!(!may_send_error_v6(&ok, &port, true));
    assert!(may_send_error_v6(&ok, &ptb, true));
    let mcast: Ipv6Addr = "ff02::1".parse().unwrap();
    let to_group = ipv6(B6, mcast, IpProtocol::Udp, &udp);
    assert!(!may_send_error_v6(&to_group, &port, false));
    assert!(may_send_error_v6(&to_group, &ptb, false));
    for src in [Ipv6Addr::UNSPECIFIED, mcast] {
        let p = ipv6(src, A6, IpProtocol::Udp, &udp);
        assert!(!may_send_error_v6(&p, &port, false));
        assert!(!may_send_error_v6(&p, &ptb, false));
    }
    // Parameter Problem code 2 to a multicast: only for option types 10xxxxxx.
    let mut hbh = vec![u8::from(IpProtocol::Udp), 0, 0x00, 4, 0, 0, 0, 0];
    hbh.extend_from_slice(&udp);
    for (opt, may) in [(0x80u8, true), (0xc2, false), (0x05, false)] {
        hbh[2] = opt;
        let p = ipv6(B6, mcast, IpProtocol::HopByHop, &hbh);
        let kind = ErrorV6::ParameterProblem {
            code: ParameterProblemV6::UnrecognizedOption,
            pointer: 42,
        };
        assert_eq!(may_send_error_v6(&p, &kind, false), may, "{opt:#x}");
        assert!(may_send_error_v6(&p, &kind, true) == may);
        let beyond = ErrorV6::ParameterProblem {
            code: ParameterProblemV6::UnrecognizedOption,
            pointer: u32::MAX,
        };
        assert!(!may_send_error_v6(&p, &beyond, false));
        let code0 = ErrorV6::ParameterProblem {
            code: ParameterProblemV6::ErroneousHeaderField,
            pointer: 42,
        };
        assert!(!may_send_error_v6(&p, &code0, false));
    }
    // ICMPv6 errors and redirects: no; informational: yes.
    for (t, may) in [
        (1u8, false),
        (2, false),
        (127, false),
        (128, true),
        (129, true),
        (135, true),
        (137, false),
    ] {
        let p = ipv6(B6, A6, IpProtocol::Icmpv6, &[t, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(may_send_error_v6(&p, &port, false), may, "type {t}");
    }
    // ...found behind extension headers too.
    let mut chain = vec![u8::from(IpProtocol::Icmpv6), 0, 0, 0, 0, 0, 0, 0];
    chain.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
    let p = ipv6(B6, A6, IpProtocol::Ipv6Opts, &chain);
    assert!(!may_send_error_v6(&p, &port, false));
    // An ICMPv6 header cut off: no. A later fragment: yes (type unknown).
    let p = ipv6(B6, A6, IpProtocol::Icmpv6, &[]);
    assert!(!may_send_error_v6(&p, &port, false));
    let later = [u8::from(IpProtocol::Icmpv6), 0, 0x00, 0x08, 0, 0, 0, 1];
    let p = ipv6(B6, A6, IpProtocol::Ipv6Frag, &later);
    assert!(may_send_error_v6(&p, &port, false));
    // A cut-off extension header chain may be answered.
    let p = ipv6(B6, A6, IpProtocol::HopByHop, &[58, 3, 0, 0]);
    assert!(may_send_error_v6(&p, &port, false));
    // Unreadable fixed header.
    assert!(!may_send_error_v6(&ok[..39], &port, false));
    let mut v4ish = ok.clone();
    v4ish[0] = 0x45;
    assert!(!may_send_error_v6(&v4ish, &ptb, false));
}

#[test]
fn ext_header_walk() {
    let udp = u8::from(IpProtocol::Udp);
    // Hop-by-hop (8), routing (16), first fragment (8), AH (12), UDP.
    let mut p = vec![43, 0, 0, 0, 0, 0, 0, 0];
    p.extend_from_slice(&[44, 1]);
    p.extend_from_slice(&[0; 14]);
    p.extend_from_slice(&[51, 0, 0, 1, 0, 0, 0, 9]);
    p.extend_from_slice(&[udp, 1, 0, 0]);
    p.extend_from_slice(&[0; 8]);
    p.extend_from_slice(&[0; 8]);
    match upper_layer_v6(HOP_BY_HOP, &p) {
        UpperV6::Found { proto, at } => assert_eq!((proto, at), (udp, 44)),
        _ => panic!("not found"),
    }
    // Too many headers.
    let many: Vec<u8> = (0..9).flat_map(|_| [0u8, 0, 0, 0, 0, 0, 0, 0]).collect();
    assert!(matches!(
        upper_layer_v6(HOP_BY_HOP, &many),
        UpperV6::TooManyHeaders
    ));
    // Every truncation of the chain is handled.
    for n in 0..p.len() {
        let _ = upper_layer_v6(HOP_BY_HOP, &p[..n]);
    }
    assert!(matches!(
        upper_layer_v6(FRAGMENT, &[udp, 0, 0, 0]),
        UpperV6::Unreadable
    ));
}

#[test]
fn echo_v4() {
    let repr = Icmpv4Repr::EchoRequest {
        ident: 0x1234,
        seq_no: 7,
        data: b"ping data",
    };
    let mut req = vec![0u8; repr.buffer_len()];
    repr.emit(
        &mut Icmpv4Packet::new_unchecked(&mut req[..]),
        &ChecksumCapabilities::default(),
    );
    let mut out = vec![1, 2];
    echo_reply_v4(&req, &mut out).unwrap();
    assert_eq!(&out[..2], &[1, 2]);
    assert_eq!(
        checked_v4(&out[2..]),
        Icmpv4Repr::EchoReply {
            ident: 0x1234,
            seq_no: 7,
            data: b"ping data",
        }
    );
    let mut out = Vec::new();
    assert_eq!(
        echo_reply_v4(&req[..7], &mut out),
        Err(Malformed::Truncated)
    );
    let mut bad = req.clone();
    bad[9] ^= 1;
    assert_eq!(echo_reply_v4(&bad, &mut out), Err(Malformed::BadChecksum));
    let reply = {
        let mut r = Vec::new();
        echo_reply_v4(&req, &mut r).unwrap();
        r
    };
    assert_eq!(
        echo_reply_v4(&reply, &mut out),
        Err(Malformed::NotEchoRequest)
    );
    assert!(out.is_empty());
    // The bare header (no data) is a valid request.
    echo_reply_v4(&req[..8], &mut out).unwrap_err();
    let mut bare = req[..8].to_vec();
    Icmpv4Packet::new_unchecked(&mut bare[..]).fill_checksum();
    echo_reply_v4(&bare, &mut out).unwrap();
    assert_eq!(out.len(), 8);
}

#[test]
fn echo_v6() {
    let repr = Icmpv6Repr::EchoRequest {
        ident: 9,
        seq_no: 0xffff,
        data: &[0u8; 56],
    };
    let mut req = vec![0u8; repr.buffer_len()];
    repr.emit(
        &B6,
        &A6,
        &mut Icmpv6Packet::new_unchecked(&mut req[..]),
        &ChecksumCapabilities::default(),
    );
    let mut out = Vec::new();
    echo_reply_v6(&req, B6, A6, A6, &mut out).unwrap();
    assert_eq!(
        checked_v6(&out, A6, B6),
        Icmpv6Repr::EchoReply {
            ident: 9,
            seq_no: 0xffff,
            data: &[0u8; 56],
        }
    );
    // A multicast request, answered from a unicast address.
    let group: Ipv6Addr = "ff02::1".parse().unwrap();
    let mut req2 = vec![0u8; repr.buffer_len()];
    repr.emit(
        &B6,
        &group,
        &mut Icmpv6Packet::new_unchecked(&mut req2[..]),
        &ChecksumCapabilities::default(),
    );
    out.clear();
    echo_reply_v6(&req2, B6, group, A6, &mut out).unwrap();
    checked_v6(&out, A6, B6);
    // Wrong addresses: the checksum fails. (Swapping source and
    // destination would not: the pseudo-header sum is symmetric.)
    out.clear();
    assert_eq!(
        echo_reply_v6(&req, C6, A6, A6, &mut out),
        Err(Malformed::BadChecksum)
    );
    assert_eq!(
        echo_reply_v6(&req[..4], B6, A6, A6, &mut out),
        Err(Malformed::Truncated)
    );
    let mut reply = req.clone();
    reply[0] = 129;
    assert_eq!(
        echo_reply_v6(&reply, B6, A6, A6, &mut out),
        Err(Malformed::NotEchoRequest)
    );
    assert!(out.is_empty());
}

#[test]
fn hostile_inputs_never_panic() {
    let mut rng = SmallRng::seed_from_u64(0xbad);
    let kinds = [
        ErrorV6::PacketTooBig { mtu: 1280 },
        ErrorV6::ParameterProblem {
            code: ParameterProblemV6::UnrecognizedOption,
            pointer: 40,
        },
        ErrorV6::DestUnreachable(UnreachableV6::NoRoute),
    ];
    for _ in 0..20_000 {
        let len = rng.gen_range(0..120);
        let mut p: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        // Bias towards plausible headers so the deep paths run.
        if len > 0 && rng.gen_bool(0.7) {
            p[0] = if rng.gen() { 0x45 } else { 0x60 };
        }
        if len > 6 && rng.gen_bool(0.5) {
            p[6] = [0u8, 43, 44, 51, 60, 58][rng.gen_range(0..6)];
        }
        let _ = may_send_error_v4(&p, rng.gen());
        let _ = may_send_error_v6(&p, &kinds[rng.gen_range(0..3)], rng.gen());
        let mut out = Vec::new();
        let _ = echo_reply_v4(&p, &mut out);
        let _ = echo_reply_v6(&p, A6, B6, A6, &mut out);
    }
}
