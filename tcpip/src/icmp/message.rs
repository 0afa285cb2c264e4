//! Building ICMP error and echo reply messages, and the rules of when an
//! error must not be sent.
//!
//! Every builder appends one complete ICMP message (header, checksum and
//! body) to the caller's `Vec`, leaving what is already there alone, so the
//! caller may have written link and IP headers first.

use std::net::{Ipv4Addr, Ipv6Addr};

use smoltcp::wire::{Icmpv4Packet, Icmpv6Packet};

use super::{ErrorV4, ErrorV6, ParameterProblemV6};

const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const ICMP_HEADER_LEN: usize = 8;

/// The longest ICMPv4 error [`error_v4`] writes: RFC 1812 §4.3.2.3 keeps
/// the whole IP datagram of an error within 576 octets, and the error goes
/// out with a 20-octet IP header (no options).
pub const MAX_ERROR_V4_LEN: usize = 576 - IPV4_HEADER_LEN;

/// The longest ICMPv6 error [`error_v6`] writes: RFC 4443 §2.4(c) keeps the
/// packet within the IPv6 minimum MTU, 1280, with a 40-octet header and no
/// extension headers.
pub const MAX_ERROR_V6_LEN: usize = 1280 - IPV6_HEADER_LEN;

/// Why an echo request got no reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Shorter than the 8-octet ICMP header.
    Truncated,
    /// The checksum does not verify (RFC 1122 §3.2.2: discard).
    BadChecksum,
    /// Not an echo request.
    NotEchoRequest,
}

/// The offending packet without link-layer padding: cut at the IPv4 total
/// length when the header is readable and the length makes sense.
fn trim_v4(packet: &[u8]) -> &[u8] {
    if packet.len() >= IPV4_HEADER_LEN && packet[0] >> 4 == 4 {
        let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
        let ihl = usize::from(packet[0] & 0x0f) * 4;
        if total >= ihl && total <= packet.len() {
            return &packet[..total];
        }
    }
    packet
}

/// As [`trim_v4`], by the IPv6 payload length (0, a jumbogram, is left
/// alone).
fn trim_v6(packet: &[u8]) -> &[u8] {
    if packet.len() >= IPV6_HEADER_LEN && packet[0] >> 4 == 6 {
        let payload = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
        if payload != 0 && IPV6_HEADER_LEN + payload <= packet.len() {
            return &packet[..IPV6_HEADER_LEN + payload];
        }
    }
    packet
}

/// Appends the header and as much of `quote` as fits in `max_len`; returns
/// where the message starts in `out`.
fn append_error(
    out: &mut Vec<u8>,
    (msg_type, code): (u8, u8),
    rest: [u8; 4],
    quote: &[u8],
    max_len: usize,
) -> usize {
    let start = out.len();
    let quote = &quote[..quote.len().min(max_len - ICMP_HEADER_LEN)];
    out.reserve(ICMP_HEADER_LEN + quote.len());
    out.extend_from_slice(&[msg_type, code, 0, 0]);
    out.extend_from_slice(&rest);
    out.extend_from_slice(quote);
    start
}

/// Appends to `out` the ICMPv4 error `kind` about `offending_ip_packet`
/// (the packet as received, from its IP header on): type, code, checksum,
/// the four octets the type defines, then as much of the offending packet
/// as keeps the error's IP datagram within 576 octets (RFC 1812 §4.3.2.3;
/// more than RFC 792's header and 64 bits). Link padding after the
/// packet's total length is not quoted.
///
/// This builds whatever it is asked to; whether an error may be sent at
/// all is [`may_send_error_v4`]'s answer, and whether it may be sent now
/// the rate limiter's.
pub fn error_v4(kind: ErrorV4, offending_ip_packet: &[u8], out: &mut Vec<u8>) {
    let quote = trim_v4(offending_ip_packet);
    let start = append_error(
        out,
        kind.type_code(),
        kind.rest_of_header(),
        quote,
        MAX_ERROR_V4_LEN,
    );
    Icmpv4Packet::new_unchecked(&mut out[start..]).fill_checksum();
}

/// Appends to `out` the ICMPv6 error `kind` about `offending_ip_packet`,
/// sent from `src` to `dst` (the checksum covers them, RFC 4443 §2.3): as
/// much of the offending packet as keeps the error within the IPv6 minimum
/// MTU (RFC 4443 §2.4(c)). Packet Too Big carries `mtu`, Parameter Problem
/// its pointer. Link padding after the payload length is not quoted.
pub fn error_v6(
    kind: ErrorV6,
    offending_ip_packet: &[u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    out: &mut Vec<u8>,
) {
    let quote = trim_v6(offending_ip_packet);
    let start = append_error(
        out,
        kind.type_code(),
        kind.rest_of_header(),
        quote,
        MAX_ERROR_V6_LEN,
    );
    Icmpv6Packet::new_unchecked(&mut out[start..]).fill_checksum(&src, &dst);
}

/// ICMPv4 types that are errors (Linux's `icmp_pointers[].error`): no
/// error is sent about one of them (RFC 1122 §3.2.2). Types past the last
/// Linux knows (18) are treated as errors too, to be safe.
fn is_error_type_v4(t: u8) -> bool {
    matches!(t, 3 | 4 | 5 | 11 | 12) || t > 18
}

/// Whether an ICMPv4 error may be sent about `packet` (the offending IP
/// packet, as received). No, by RFC 1122 §3.2.2 and RFC 1812 §4.3.2.7, if:
///
/// - it came as a link-layer broadcast or multicast
///   (`link_broadcast_or_multicast`; pass `true` also for a packet sent to
///   one of our subnets' directed-broadcast addresses, which only the
///   caller knows);
/// - its destination is an IP multicast or the limited broadcast address;
/// - its source does not name one host: unspecified, the limited
///   broadcast, multicast or class E (240.0.0.0/4);
/// - it is a fragment other than the first;
/// - it is an ICMP error (or its ICMP type cannot be read);
/// - its IPv4 header cannot be read.
///
/// A loopback source is allowed: the engine answers its own loopback
/// traffic (a UDP send to a closed local port gets `ECONNREFUSED`); that a
/// packet from the wire with a loopback source never gets this far is the
/// IP layer's martian check.
pub fn may_send_error_v4(packet: &[u8], link_broadcast_or_multicast: bool) -> bool {
    if link_broadcast_or_multicast || packet.len() < IPV4_HEADER_LEN || packet[0] >> 4 != 4 {
        return false;
    }
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    if ihl < IPV4_HEADER_LEN || ihl > packet.len() {
        return false;
    }
    let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    if dst.is_multicast() || dst.is_broadcast() {
        return false;
    }
    // 240.0.0.0/4 covers the limited broadcast too.
    if src.is_unspecified() || src.is_multicast() || src.octets()[0] >= 240 {
        return false;
    }
    let frag_offset = u16::from_be_bytes([packet[6], packet[7]]) & 0x1fff;
    if frag_offset != 0 {
        return false;
    }
    const ICMP: u8 = 1;
    if packet[9] == ICMP {
        match packet.get(ihl) {
            Some(&t) if !is_error_type_v4(t) => {}
            _ => return false,
        }
    }
    true
}

/// An IPv6 extension header read from the front of a buffer.
enum Ext {
    /// An extension header of this many octets, then `next`.
    Header { len: usize, next: u8 },
    /// A fragment header; `first` if its offset is zero.
    Fragment { next: u8, first: bool },
}

/// Next-header values of IPv6 extension headers (RFC 8200 §4, RFC 4302).
pub(super) const HOP_BY_HOP: u8 = 0;
pub(super) const ROUTING: u8 = 43;
pub(super) const FRAGMENT: u8 = 44;
pub(super) const AUTH: u8 = 51;
pub(super) const DEST_OPTS: u8 = 60;

/// Most extension headers stepped over before giving up.
pub(super) const MAX_EXT_HEADERS: usize = 8;

fn ext_header(proto: u8, data: &[u8]) -> Option<Ext> {
    let b0 = *data.first()?;
    let b1 = usize::from(*data.get(1)?);
    match proto {
        HOP_BY_HOP | ROUTING | DEST_OPTS => Some(Ext::Header {
            len: (b1 + 1) * 8,
            next: b0,
        }),
        AUTH => Some(Ext::Header {
            len: (b1 + 2) * 4,
            next: b0,
        }),
        FRAGMENT => {
            let off = data.get(2..4)?;
            data.get(..8)?;
            Some(Ext::Fragment {
                next: b0,
                first: u16::from_be_bytes([off[0], off[1]]) >> 3 == 0,
            })
        }
        _ => None,
    }
}

/// Where the upper layer starts in an IPv6 packet's payload.
pub(super) enum UpperV6 {
    /// Protocol `proto` at offset `at` of the payload (which may be past
    /// its end if the packet is cut short).
    Found { proto: u8, at: usize },
    /// A fragment other than the first: the upper-layer header is not here.
    LaterFragment,
    /// An extension header is cut off.
    Unreadable,
    /// More than [`MAX_EXT_HEADERS`] extension headers.
    TooManyHeaders,
}

/// Steps over the extension headers of an IPv6 payload starting with
/// next-header `proto`.
pub(super) fn upper_layer_v6(mut proto: u8, payload: &[u8]) -> UpperV6 {
    let mut at = 0usize;
    for _ in 0..MAX_EXT_HEADERS {
        let rest = payload.get(at..).unwrap_or(&[]);
        match proto {
            HOP_BY_HOP | ROUTING | DEST_OPTS | AUTH | FRAGMENT => match ext_header(proto, rest) {
                Some(Ext::Header { len, next }) if len <= rest.len() => {
                    proto = next;
                    at += len;
                }
                Some(Ext::Fragment { next, first: true }) => {
                    proto = next;
                    at += 8;
                }
                Some(Ext::Fragment { first: false, .. }) => return UpperV6::LaterFragment,
                _ => return UpperV6::Unreadable,
            },
            _ => return UpperV6::Found { proto, at },
        }
    }
    UpperV6::TooManyHeaders
}

/// ICMPv6 Redirect (RFC 4861 §4.5).
const REDIRECT_V6: u8 = 137;
const ICMPV6: u8 = 58;

/// Whether the ICMPv6 error `kind` may be sent about `packet` (the
/// offending IPv6 packet, as received). No, by RFC 4443 §2.4(e), if:
///
/// - (e.3–5) it was sent to an IPv6 multicast address or as a link-layer
///   multicast or broadcast (`link_broadcast_or_multicast`), unless the
///   error is Packet Too Big or a Parameter Problem code 2 about an option
///   whose type's two high bits are `10` (RFC 8200 §4.2);
/// - (e.6) its source is unspecified or multicast (an anycast source is
///   the caller's to know);
/// - (e.1, e.2) it is an ICMPv6 error or a Redirect;
/// - its IPv6 header cannot be read.
///
/// As in Linux, a packet whose extension headers cannot be walked may still
/// be answered (a Parameter Problem about them, most likely), and so may a
/// later fragment, whose ICMPv6 type is not in it.
pub fn may_send_error_v6(packet: &[u8], kind: &ErrorV6, link_broadcast_or_multicast: bool) -> bool {
    if packet.len() < IPV6_HEADER_LEN || packet[0] >> 4 != 6 {
        return false;
    }
    let addr = |at: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&packet[at..at + 16]);
        Ipv6Addr::from(a)
    };
    let (src, dst) = (addr(8), addr(24));
    let to_many = dst.is_multicast() || link_broadcast_or_multicast;
    if to_many && !multicast_exception(packet, kind) {
        return false;
    }
    if src.is_unspecified() || src.is_multicast() {
        return false;
    }
    let payload = &packet[IPV6_HEADER_LEN..];
    match upper_layer_v6(packet[6], payload) {
        UpperV6::Found { proto: ICMPV6, at } => match payload.get(at) {
            Some(&t) => t >= 128 && t != REDIRECT_V6,
            None => false,
        },
        UpperV6::Found { .. }
        | UpperV6::LaterFragment
        | UpperV6::Unreadable
        | UpperV6::TooManyHeaders => true,
    }
}

/// RFC 4443 §2.4(e.3): the errors that may answer a multicast.
fn multicast_exception(packet: &[u8], kind: &ErrorV6) -> bool {
    match *kind {
        ErrorV6::PacketTooBig { .. } => true,
        ErrorV6::ParameterProblem {
            code: ParameterProblemV6::UnrecognizedOption,
            pointer,
        } => usize::try_from(pointer)
            .ok()
            .and_then(|p| packet.get(p))
            .is_some_and(|&option_type| option_type & 0xc0 == 0x80),
        _ => false,
    }
}

/// Appends to `out` the echo reply to `request_icmp`, an ICMPv4 message
/// from its header on: the same identifier, sequence number and data, type
/// 0 (RFC 792; RFC 1122 §3.2.2.6). Refuses anything but an echo request
/// with a valid checksum. Whether to answer one sent to a broadcast
/// (Linux's `icmp_echo_ignore_broadcasts`, on by default) is the caller's
/// policy.
pub fn echo_reply_v4(request_icmp: &[u8], out: &mut Vec<u8>) -> Result<(), Malformed> {
    if request_icmp.len() < ICMP_HEADER_LEN {
        return Err(Malformed::Truncated);
    }
    const ECHO_REQUEST: u8 = 8;
    const ECHO_REPLY: u8 = 0;
    if request_icmp[0] != ECHO_REQUEST {
        return Err(Malformed::NotEchoRequest);
    }
    if !Icmpv4Packet::new_unchecked(request_icmp).verify_checksum() {
        return Err(Malformed::BadChecksum);
    }
    let start = out.len();
    out.extend_from_slice(request_icmp);
    out[start] = ECHO_REPLY;
    out[start + 1] = 0;
    Icmpv4Packet::new_unchecked(&mut out[start..]).fill_checksum();
    Ok(())
}

/// Appends to `out` the echo reply to `request_icmp`, an ICMPv6 message
/// that came from `request_src` to `request_dst` (its checksum covers
/// them): type 129 with the same identifier, sequence number and data
/// (RFC 4443 §4.2), checksummed for going from `reply_src` back to
/// `request_src`. `reply_src` is `request_dst` for a unicast request; for a
/// multicast one it is a unicast address of the receiving interface (RFC
/// 4443 §4.2), which the caller picks.
pub fn echo_reply_v6(
    request_icmp: &[u8],
    request_src: Ipv6Addr,
    request_dst: Ipv6Addr,
    reply_src: Ipv6Addr,
    out: &mut Vec<u8>,
) -> Result<(), Malformed> {
    if request_icmp.len() < ICMP_HEADER_LEN {
        return Err(Malformed::Truncated);
    }
    const ECHO_REQUEST: u8 = 128;
    const ECHO_REPLY: u8 = 129;
    if request_icmp[0] != ECHO_REQUEST {
        return Err(Malformed::NotEchoRequest);
    }
    if !Icmpv6Packet::new_unchecked(request_icmp).verify_checksum(&request_src, &request_dst) {
        return Err(Malformed::BadChecksum);
    }
    let start = out.len();
    out.extend_from_slice(request_icmp);
    out[start] = ECHO_REPLY;
    out[start + 1] = 0;
    Icmpv6Packet::new_unchecked(&mut out[start..]).fill_checksum(&reply_src, &request_src);
    Ok(())
}

#[cfg(test)]
pub(super) mod tests;
