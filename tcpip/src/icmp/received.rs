//! Reading a received ICMP or ICMPv6 error down to the connection it is
//! about.
//!
//! An error quotes the start of the packet that caused it (RFC 792: the IP
//! header and at least 64 bits; RFC 1812 §4.3.2.3 and RFC 4443 §2.4(c):
//! more). That quote is all a peer's word: its lengths are not trusted, only
//! the octets actually present are read, and nothing is copied but the
//! addresses, ports and TCP sequence number the transports need. What the
//! transports then do with it is theirs: RFC 5927 §4 (TCP: the quoted
//! sequence number must lie in the send window before the error counts),
//! RFC 1122 §4.2.3.9 (soft and hard errors), RFC 8201 §4 / RFC 1191 §6
//! (path MTU).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use capnet_wire::tcp::SeqNumber;
use smoltcp::wire::{Icmpv4Packet, Icmpv6Packet};

use super::message::{upper_layer_v6, UpperV6};
use super::{
    ErrorV4, ErrorV6, IcmpError, ParameterProblemV6, TimeExceeded, UnreachableV4, UnreachableV6,
};

/// Why a received ICMP message gave no [`ReceivedError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than the ICMP header, or the quote is too short to hold the
    /// headers needed.
    Truncated,
    /// The ICMP checksum does not verify.
    BadChecksum,
    /// `src` and `dst` are not both of the message's family.
    FamilyMismatch,
    /// Not an error a transport acts on: informational, a Redirect, or a
    /// Source Quench (RFC 6633 §4: hosts MUST ignore it).
    NotAnError,
    /// An error type whose code is not defined (Time Exceeded beyond 1).
    UnknownCode,
    /// The quoted IP header is not one (wrong version, bad header length,
    /// more IPv6 extension headers than we walk).
    EmbeddedMalformed,
    /// The quote is of a fragment other than the first: it holds no ports.
    NotFirstFragment,
    /// The quoted packet is not TCP or UDP (or its IPv6 extension headers
    /// end in something else).
    UnsupportedProtocol(u8),
}

/// The transport of the quoted packet, with what is needed to check it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EmbeddedTransport {
    /// TCP, with the quoted sequence number, which the connection must find
    /// in its send window before believing the error (RFC 5927 §4.1).
    Tcp {
        seq: SeqNumber,
    },
    Udp,
}

/// What the quoted packet says about the connection, as sent by us: `src`
/// is our side (the socket's local address), `dst` the remote one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EmbeddedHeader {
    pub transport: EmbeddedTransport,
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

/// A received error, and the packet it is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReceivedError {
    pub kind: IcmpError,
    pub embedded: EmbeddedHeader,
}

const ICMP_HEADER_LEN: usize = 8;
const TCP: u8 = 6;
const UDP: u8 = 17;

/// Reads `icmp`, an ICMP (if `src` and `dst` are IPv4) or ICMPv6 message
/// from its header on, that came from `src` to `dst`. Checks its checksum
/// (ICMPv6's covers the addresses), that it is an error, and that the
/// quoted packet is the first (or only) fragment of a TCP or UDP packet
/// whose ports, and for TCP sequence number, are present in the quote.
///
/// Source Quench (RFC 6633) and Redirects are refused as
/// [`ParseError::NotAnError`]. Whether the quoted source is really one of
/// ours is settled by the socket lookup the caller does with it.
pub fn parse_error(icmp: &[u8], src: IpAddr, dst: IpAddr) -> Result<ReceivedError, ParseError> {
    match (src, dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => parse_v4(icmp),
        (IpAddr::V6(src), IpAddr::V6(dst)) => parse_v6(icmp, src, dst),
        _ => Err(ParseError::FamilyMismatch),
    }
}

fn parse_v4(icmp: &[u8]) -> Result<ReceivedError, ParseError> {
    if icmp.len() < ICMP_HEADER_LEN {
        return Err(ParseError::Truncated);
    }
    if !Icmpv4Packet::new_unchecked(icmp).verify_checksum() {
        return Err(ParseError::BadChecksum);
    }
    let code = icmp[1];
    let kind = match icmp[0] {
        3 => ErrorV4::DestUnreachable(match code {
            0 => UnreachableV4::Net,
            1 => UnreachableV4::Host,
            2 => UnreachableV4::Protocol,
            3 => UnreachableV4::Port,
            4 => UnreachableV4::FragNeeded {
                next_hop_mtu: u16::from_be_bytes([icmp[6], icmp[7]]),
            },
            5 => UnreachableV4::SourceRouteFailed,
            13 => UnreachableV4::AdminProhibited,
            other => UnreachableV4::Other(other),
        }),
        11 => ErrorV4::TimeExceeded(TimeExceeded::from_code(code).ok_or(ParseError::UnknownCode)?),
        12 => ErrorV4::ParameterProblem { pointer: icmp[4] },
        _ => return Err(ParseError::NotAnError),
    };
    Ok(ReceivedError {
        kind: IcmpError::V4(kind),
        embedded: embedded_v4(&icmp[ICMP_HEADER_LEN..])?,
    })
}

fn embedded_v4(quote: &[u8]) -> Result<EmbeddedHeader, ParseError> {
    const HEADER_LEN: usize = 20;
    if quote.len() < HEADER_LEN {
        return Err(ParseError::Truncated);
    }
    if quote[0] >> 4 != 4 {
        return Err(ParseError::EmbeddedMalformed);
    }
    let ihl = usize::from(quote[0] & 0x0f) * 4;
    if ihl < HEADER_LEN {
        return Err(ParseError::EmbeddedMalformed);
    }
    if u16::from_be_bytes([quote[6], quote[7]]) & 0x1fff != 0 {
        return Err(ParseError::NotFirstFragment);
    }
    let src = Ipv4Addr::new(quote[12], quote[13], quote[14], quote[15]);
    let dst = Ipv4Addr::new(quote[16], quote[17], quote[18], quote[19]);
    // The options may be cut off; then so is the transport header.
    let transport = quote.get(ihl..).ok_or(ParseError::Truncated)?;
    embedded_transport(quote[9], IpAddr::V4(src), IpAddr::V4(dst), transport)
}

fn parse_v6(icmp: &[u8], src: Ipv6Addr, dst: Ipv6Addr) -> Result<ReceivedError, ParseError> {
    if icmp.len() < ICMP_HEADER_LEN {
        return Err(ParseError::Truncated);
    }
    if !Icmpv6Packet::new_unchecked(icmp).verify_checksum(&src, &dst) {
        return Err(ParseError::BadChecksum);
    }
    let code = icmp[1];
    let rest = u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]]);
    let kind = match icmp[0] {
        1 => ErrorV6::DestUnreachable(match code {
            0 => UnreachableV6::NoRoute,
            1 => UnreachableV6::AdminProhibited,
            2 => UnreachableV6::BeyondScope,
            3 => UnreachableV6::Address,
            4 => UnreachableV6::Port,
            other => UnreachableV6::Other(other),
        }),
        2 => ErrorV6::PacketTooBig { mtu: rest },
        3 => ErrorV6::TimeExceeded(TimeExceeded::from_code(code).ok_or(ParseError::UnknownCode)?),
        4 => ErrorV6::ParameterProblem {
            code: match code {
                0 => ParameterProblemV6::ErroneousHeaderField,
                1 => ParameterProblemV6::UnrecognizedNextHeader,
                2 => ParameterProblemV6::UnrecognizedOption,
                other => ParameterProblemV6::Other(other),
            },
            pointer: rest,
        },
        _ => return Err(ParseError::NotAnError),
    };
    Ok(ReceivedError {
        kind: IcmpError::V6(kind),
        embedded: embedded_v6(&icmp[ICMP_HEADER_LEN..])?,
    })
}

fn embedded_v6(quote: &[u8]) -> Result<EmbeddedHeader, ParseError> {
    const HEADER_LEN: usize = 40;
    if quote.len() < HEADER_LEN {
        return Err(ParseError::Truncated);
    }
    if quote[0] >> 4 != 6 {
        return Err(ParseError::EmbeddedMalformed);
    }
    let addr = |at: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&quote[at..at + 16]);
        IpAddr::V6(Ipv6Addr::from(a))
    };
    let (src, dst) = (addr(8), addr(24));
    let payload = &quote[HEADER_LEN..];
    match upper_layer_v6(quote[6], payload) {
        UpperV6::Found { proto, at } => {
            let transport = payload.get(at..).ok_or(ParseError::Truncated)?;
            embedded_transport(proto, src, dst, transport)
        }
        UpperV6::LaterFragment => Err(ParseError::NotFirstFragment),
        UpperV6::Unreadable => Err(ParseError::Truncated),
        UpperV6::TooManyHeaders => Err(ParseError::EmbeddedMalformed),
    }
}

/// The ports (and TCP sequence number) at the start of `header`.
fn embedded_transport(
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    header: &[u8],
) -> Result<EmbeddedHeader, ParseError> {
    let (transport, needed) = match proto {
        TCP => {
            let seq = header.get(4..8).ok_or(ParseError::Truncated)?;
            let seq = SeqNumber(u32::from_be_bytes([seq[0], seq[1], seq[2], seq[3]]));
            (EmbeddedTransport::Tcp { seq }, 8)
        }
        UDP => (EmbeddedTransport::Udp, 4),
        other => return Err(ParseError::UnsupportedProtocol(other)),
    };
    let ports = header.get(..needed).ok_or(ParseError::Truncated)?;
    Ok(EmbeddedHeader {
        transport,
        src: SocketAddr::new(src, u16::from_be_bytes([ports[0], ports[1]])),
        dst: SocketAddr::new(dst, u16::from_be_bytes([ports[2], ports[3]])),
    })
}

#[cfg(test)]
mod tests {
    use super::super::message::tests::{ipv4, ipv6, A4, A6, B4, B6, C6};
    use super::super::{error_v4, error_v6};
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use smoltcp::wire::IpProtocol;

    fn tcp_header(sport: u16, dport: u16, seq: u32) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(&sport.to_be_bytes());
        h.extend_from_slice(&dport.to_be_bytes());
        h.extend_from_slice(&seq.to_be_bytes());
        h.extend_from_slice(&[0; 12]);
        h
    }

    fn udp_ports(sport: u16, dport: u16) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(&sport.to_be_bytes());
        h.extend_from_slice(&dport.to_be_bytes());
        h.extend_from_slice(&[0, 8, 0, 0]);
        h
    }

    fn sa(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
        SocketAddr::new(ip.into(), port)
    }

    /// A v4 error about `offending`, from router B4 to us (A4).
    fn err4(kind: ErrorV4, offending: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        error_v4(kind, offending, &mut out);
        out
    }

    fn err6(kind: ErrorV6, offending: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        error_v6(kind, offending, B6, A6, &mut out);
        out
    }

    #[test]
    fn round_trips_v4_with_tcp_and_udp() {
        // We (A4:40000) sent to B4:443; B4 answers.
        let sent = ipv4(
            A4,
            B4,
            IpProtocol::Tcp,
            &tcp_header(40000, 443, 0xffff_fff0),
        );
        let kind = ErrorV4::DestUnreachable(UnreachableV4::FragNeeded { next_hop_mtu: 1400 });
        let got = parse_error(&err4(kind, &sent), B4.into(), A4.into()).unwrap();
        assert_eq!(
            got,
            ReceivedError {
                kind: IcmpError::V4(kind),
                embedded: EmbeddedHeader {
                    transport: EmbeddedTransport::Tcp {
                        seq: SeqNumber(0xffff_fff0)
                    },
                    src: sa(A4, 40000),
                    dst: sa(B4, 443),
                },
            }
        );
        let sent = ipv4(A4, B4, IpProtocol::Udp, &udp_ports(5353, 53));
        for kind in [
            ErrorV4::DestUnreachable(UnreachableV4::Port),
            ErrorV4::DestUnreachable(UnreachableV4::Other(10)),
            ErrorV4::TimeExceeded(TimeExceeded::TtlExceeded),
            ErrorV4::ParameterProblem { pointer: 8 },
        ] {
            let got = parse_error(&err4(kind, &sent), B4.into(), A4.into()).unwrap();
            assert_eq!(got.kind, IcmpError::V4(kind));
            assert_eq!(got.embedded.transport, EmbeddedTransport::Udp);
            assert_eq!(
                (got.embedded.src, got.embedded.dst),
                (sa(A4, 5353), sa(B4, 53))
            );
        }
    }

    #[test]
    fn round_trips_v6_through_extension_headers() {
        // Destination options (8 octets) then a first fragment, then TCP.
        let mut payload = vec![44, 0, 0, 0, 0, 0, 0, 0];
        payload.extend_from_slice(&[6, 0, 0, 1, 0, 0, 0, 7]);
        payload.extend_from_slice(&tcp_header(1234, 80, 7));
        let sent = ipv6(A6, B6, IpProtocol::Ipv6Opts, &payload);
        for kind in [
            ErrorV6::PacketTooBig { mtu: 1280 },
            ErrorV6::DestUnreachable(UnreachableV6::Port),
            ErrorV6::DestUnreachable(UnreachableV6::Other(6)),
            ErrorV6::TimeExceeded(TimeExceeded::ReassemblyTimeout),
            ErrorV6::ParameterProblem {
                code: ParameterProblemV6::Other(3),
                pointer: 0xdead,
            },
        ] {
            let got = parse_error(&err6(kind, &sent), B6.into(), A6.into()).unwrap();
            assert_eq!(got.kind, IcmpError::V6(kind));
            assert_eq!(
                got.embedded,
                EmbeddedHeader {
                    transport: EmbeddedTransport::Tcp { seq: SeqNumber(7) },
                    src: sa(A6, 1234),
                    dst: sa(B6, 80),
                }
            );
        }
    }

    #[test]
    fn refusals() {
        let sent = ipv4(A4, B4, IpProtocol::Udp, &udp_ports(1, 2));
        let port = ErrorV4::DestUnreachable(UnreachableV4::Port);
        let msg = err4(port, &sent);
        assert_eq!(
            parse_error(&msg, B6.into(), A4.into()),
            Err(ParseError::FamilyMismatch)
        );
        let mut bad = msg.clone();
        bad[10] ^= 0xff;
        assert_eq!(
            parse_error(&bad, B4.into(), A4.into()),
            Err(ParseError::BadChecksum)
        );
        assert_eq!(
            parse_error(&msg[..7], B4.into(), A4.into()),
            Err(ParseError::Truncated)
        );
        // The v6 checksum covers the addresses.
        let sent6 = ipv6(A6, B6, IpProtocol::Udp, &udp_ports(1, 2));
        let msg6 = err6(ErrorV6::PacketTooBig { mtu: 1300 }, &sent6);
        assert_eq!(
            parse_error(&msg6, C6.into(), A6.into()),
            Err(ParseError::BadChecksum)
        );
        // Informational, redirect and source quench messages.
        for t in [0u8, 4, 5, 8, 13, 200] {
            let mut m = vec![t, 0, 0, 0, 0, 0, 0, 0];
            m.extend_from_slice(&sent);
            Icmpv4Packet::new_unchecked(&mut m[..]).fill_checksum();
            assert_eq!(
                parse_error(&m, B4.into(), A4.into()),
                Err(ParseError::NotAnError)
            );
        }
        for t in [128u8, 129, 137, 0, 5, 127] {
            let mut m = vec![t, 0, 0, 0, 0, 0, 0, 0];
            m.extend_from_slice(&sent6);
            Icmpv6Packet::new_unchecked(&mut m[..]).fill_checksum(&B6, &A6);
            assert_eq!(
                parse_error(&m, B6.into(), A6.into()),
                Err(ParseError::NotAnError)
            );
        }
        // Time Exceeded with an undefined code.
        let mut m = err4(ErrorV4::TimeExceeded(TimeExceeded::TtlExceeded), &sent);
        m[1] = 2;
        Icmpv4Packet::new_unchecked(&mut m[..]).fill_checksum();
        assert_eq!(
            parse_error(&m, B4.into(), A4.into()),
            Err(ParseError::UnknownCode)
        );
        // Not TCP or UDP.
        let gre = ipv4(A4, B4, IpProtocol::Unknown(47), &[0; 8]);
        assert_eq!(
            parse_error(&err4(port, &gre), B4.into(), A4.into()),
            Err(ParseError::UnsupportedProtocol(47))
        );
        let nonext = ipv6(A6, B6, IpProtocol::Ipv6NoNxt, &[0; 8]);
        assert_eq!(
            parse_error(
                &err6(ErrorV6::PacketTooBig { mtu: 1280 }, &nonext),
                B6.into(),
                A6.into()
            ),
            Err(ParseError::UnsupportedProtocol(59))
        );
        // A later fragment.
        let mut frag = sent.clone();
        frag[7] = 1;
        assert_eq!(
            parse_error(&err4(port, &frag), B4.into(), A4.into()),
            Err(ParseError::NotFirstFragment)
        );
        let later = [6u8, 0, 0, 0x10, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        let frag6 = ipv6(A6, B6, IpProtocol::Ipv6Frag, &later);
        assert_eq!(
            parse_error(
                &err6(ErrorV6::PacketTooBig { mtu: 1280 }, &frag6),
                B6.into(),
                A6.into()
            ),
            Err(ParseError::NotFirstFragment)
        );
        // More extension headers than are walked.
        let mut many: Vec<u8> = (0..9).flat_map(|_| [0u8, 0, 0, 0, 0, 0, 0, 0]).collect();
        many.extend_from_slice(&udp_ports(1, 2));
        let deep = ipv6(A6, B6, IpProtocol::HopByHop, &many);
        assert_eq!(
            parse_error(
                &err6(ErrorV6::PacketTooBig { mtu: 1280 }, &deep),
                B6.into(),
                A6.into()
            ),
            Err(ParseError::EmbeddedMalformed)
        );
        // Wrong version and header length inside.
        let mut v = sent.clone();
        v[0] = 0x65;
        assert_eq!(
            parse_error(&err4(port, &v), B4.into(), A4.into()),
            Err(ParseError::EmbeddedMalformed)
        );
        v[0] = 0x44;
        assert_eq!(
            parse_error(&err4(port, &v), B4.into(), A4.into()),
            Err(ParseError::EmbeddedMalformed)
        );
        let mut v6 = sent6.clone();
        v6[0] = 0x45;
        assert_eq!(
            parse_error(
                &err6(ErrorV6::PacketTooBig { mtu: 1280 }, &v6),
                B6.into(),
                A6.into()
            ),
            Err(ParseError::EmbeddedMalformed)
        );
    }

    #[test]
    fn every_truncation_is_refused_cleanly() {
        let tcp = ipv4(A4, B4, IpProtocol::Tcp, &tcp_header(1, 2, 3));
        let kind = ErrorV4::DestUnreachable(UnreachableV4::Host);
        let full = err4(kind, &tcp);
        for n in 0..full.len() {
            // Re-checksum the cut message so only the length is wrong.
            let mut m = full[..n].to_vec();
            if n >= 8 {
                Icmpv4Packet::new_unchecked(&mut m[..]).fill_checksum();
            }
            let got = parse_error(&m, B4.into(), A4.into());
            // The TCP sequence number ends at octet 8 + 20 + 8.
            assert_eq!(got.is_ok(), n >= 36, "length {n}: {got:?}");
            if n < 36 {
                assert_eq!(got, Err(ParseError::Truncated));
            }
        }
        // Embedded options past the quote.
        let mut opts = tcp.clone();
        opts[0] = 0x4f;
        assert_eq!(
            parse_error(&err4(kind, &opts[..40]), B4.into(), A4.into()),
            Err(ParseError::Truncated)
        );
        // UDP needs only its ports.
        let udp = ipv6(A6, B6, IpProtocol::Udp, &udp_ports(1, 2));
        let full = err6(ErrorV6::PacketTooBig { mtu: 1280 }, &udp);
        for n in 0..full.len() {
            let mut m = full[..n].to_vec();
            if n >= 8 {
                Icmpv6Packet::new_unchecked(&mut m[..]).fill_checksum(&B6, &A6);
            }
            let got = parse_error(&m, B6.into(), A6.into());
            assert_eq!(got.is_ok(), n >= 8 + 40 + 4, "length {n}: {got:?}");
        }
    }

    #[test]
    fn the_quoted_lengths_are_not_trusted() {
        // A quoted IPv4 total length of 65535 and IPv6 payload length of
        // 65535 over a short quote change nothing.
        let mut sent = ipv4(A4, B4, IpProtocol::Udp, &udp_ports(7, 8));
        sent[2] = 0xff;
        sent[3] = 0xff;
        let got = parse_error(
            &err4(ErrorV4::DestUnreachable(UnreachableV4::Port), &sent),
            B4.into(),
            A4.into(),
        )
        .unwrap();
        assert_eq!(got.embedded.dst, sa(B4, 8));
        let mut sent6 = ipv6(A6, B6, IpProtocol::Udp, &udp_ports(7, 8));
        sent6[4] = 0xff;
        sent6[5] = 0xff;
        let got = parse_error(
            &err6(ErrorV6::DestUnreachable(UnreachableV6::Port), &sent6),
            B6.into(),
            A6.into(),
        )
        .unwrap();
        assert_eq!(got.embedded.dst, sa(B6, 8));
    }

    #[test]
    fn random_messages_never_panic() {
        let mut rng = SmallRng::seed_from_u64(0x1c);
        for _ in 0..50_000 {
            let len = rng.gen_range(0..100);
            let mut m: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let v6 = rng.gen_bool(0.5);
            if len >= 8 {
                m[0] = if v6 {
                    rng.gen_range(1..5)
                } else {
                    [3u8, 11, 12][rng.gen_range(0..3)]
                };
            }
            if len > 8 {
                m[8] = if v6 { 0x60 } else { 0x45 };
            }
            if v6 && len > 14 {
                m[14] = [0u8, 6, 17, 43, 44, 51, 60][rng.gen_range(0..7)];
            }
            let got = if v6 {
                if len >= 8 {
                    Icmpv6Packet::new_unchecked(&mut m[..]).fill_checksum(&B6, &A6);
                }
                parse_error(&m, B6.into(), A6.into())
            } else {
                if len >= 8 {
                    Icmpv4Packet::new_unchecked(&mut m[..]).fill_checksum();
                }
                parse_error(&m, B4.into(), A4.into())
            };
            if let Ok(e) = got {
                assert_eq!(e.embedded.src.is_ipv6(), v6);
            }
        }
    }
}
