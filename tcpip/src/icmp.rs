//! ICMP and ICMPv6 building blocks for the IP layer and the transports.
//!
//! This module owns no sockets and sends nothing. It provides:
//!
//! - the kinds of error the engine sends and receives ([`ErrorV4`],
//!   [`ErrorV6`]);
//! - [`error_v4`] / [`error_v6`]: building an error message that quotes the
//!   offending packet, and [`may_send_error_v4`] / [`may_send_error_v6`]: the
//!   rules of when not to (RFC 1122 §3.2.2, RFC 1812 §4.3.2.7, RFC 4443
//!   §2.4(e));
//! - [`echo_reply_v4`] / [`echo_reply_v6`]: answering pings (RFC 792,
//!   RFC 4443 §4.2);
//! - [`parse_error`]: reading a received error down to the transport
//!   addresses (and TCP sequence number) of the packet it is about, so TCP
//!   and UDP can find the socket and check it (RFC 5927 §4);
//! - [`IcmpRateLimiter`]: Linux's limits on sending errors (a global token
//!   bucket and one per destination), bounded in memory;
//! - [`PmtuCache`]: path MTUs learnt from Fragmentation Needed and Packet
//!   Too Big (RFC 1191, RFC 8201), expiring and bounded.
//!
//! Header layouts come from `smoltcp::wire`; every function takes a byte
//! slice a peer may have written, and returns a typed refusal rather than
//! panicking on any of them.

mod lru;
mod message;
mod pmtu;
mod ratelimit;
mod received;

pub use message::{
    echo_reply_v4, echo_reply_v6, error_v4, error_v6, may_send_error_v4, may_send_error_v6,
    Malformed, MAX_ERROR_V4_LEN, MAX_ERROR_V6_LEN,
};
pub use pmtu::{PmtuCache, IPV4_MIN_PMTU, IPV6_MIN_MTU, PMTU_EXPIRES};
pub use ratelimit::{IcmpRateLimiter, RateLimitConfig, RateLimitCounters, XRLIM_BURST_FACTOR};
pub use received::{parse_error, EmbeddedHeader, EmbeddedTransport, ParseError, ReceivedError};

/// Time Exceeded codes, the same in ICMPv4 (RFC 792) and ICMPv6 (RFC 4443
/// §3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeExceeded {
    /// Code 0: the TTL / hop limit ran out in transit.
    TtlExceeded,
    /// Code 1: fragment reassembly time exceeded.
    ReassemblyTimeout,
}

impl TimeExceeded {
    fn code(self) -> u8 {
        match self {
            TimeExceeded::TtlExceeded => 0,
            TimeExceeded::ReassemblyTimeout => 1,
        }
    }

    fn from_code(code: u8) -> Option<TimeExceeded> {
        match code {
            0 => Some(TimeExceeded::TtlExceeded),
            1 => Some(TimeExceeded::ReassemblyTimeout),
            _ => None,
        }
    }
}

/// ICMPv4 Destination Unreachable codes (RFC 792, RFC 1122 §3.2.2.1,
/// RFC 1812 §5.2.7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnreachableV4 {
    /// Code 0.
    Net,
    /// Code 1.
    Host,
    /// Code 2: no handler for the IP protocol.
    Protocol,
    /// Code 3: no socket on the UDP port.
    Port,
    /// Code 4: the packet needs fragmenting but has DF set; the MTU of the
    /// next hop (RFC 1191 §4; 0 from routers older than it).
    FragNeeded { next_hop_mtu: u16 },
    /// Code 5.
    SourceRouteFailed,
    /// Code 13: communication administratively prohibited (RFC 1812).
    AdminProhibited,
    /// Any other code, carried as is (nothing after the code).
    Other(u8),
}

/// An ICMPv4 error message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorV4 {
    /// Type 3.
    DestUnreachable(UnreachableV4),
    /// Type 11.
    TimeExceeded(TimeExceeded),
    /// Type 12, code 0: `pointer` is the octet of the offending header at
    /// fault.
    ParameterProblem { pointer: u8 },
}

impl ErrorV4 {
    fn type_code(&self) -> (u8, u8) {
        match *self {
            ErrorV4::DestUnreachable(u) => (
                3,
                match u {
                    UnreachableV4::Net => 0,
                    UnreachableV4::Host => 1,
                    UnreachableV4::Protocol => 2,
                    UnreachableV4::Port => 3,
                    UnreachableV4::FragNeeded { .. } => 4,
                    UnreachableV4::SourceRouteFailed => 5,
                    UnreachableV4::AdminProhibited => 13,
                    UnreachableV4::Other(code) => code,
                },
            ),
            ErrorV4::TimeExceeded(t) => (11, t.code()),
            ErrorV4::ParameterProblem { .. } => (12, 0),
        }
    }

    /// The four octets after the checksum.
    fn rest_of_header(&self) -> [u8; 4] {
        match *self {
            // RFC 1191 §4: the next-hop MTU in the low-order 16 bits.
            ErrorV4::DestUnreachable(UnreachableV4::FragNeeded { next_hop_mtu }) => {
                let m = next_hop_mtu.to_be_bytes();
                [0, 0, m[0], m[1]]
            }
            ErrorV4::ParameterProblem { pointer } => [pointer, 0, 0, 0],
            _ => [0; 4],
        }
    }

    /// Whether sending this error goes through the rate limiter. As Linux's
    /// default `icmp_ratemask` (0x1818: types 3, 4, 11 and 12), except that
    /// Fragmentation Needed is never limited, so path-MTU discovery keeps
    /// working under load. Echo replies are not errors and are not limited
    /// either.
    pub fn rate_limited(&self) -> bool {
        !matches!(
            self,
            ErrorV4::DestUnreachable(UnreachableV4::FragNeeded { .. })
        )
    }
}

/// ICMPv6 Destination Unreachable codes (RFC 4443 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnreachableV6 {
    /// Code 0: no route to destination.
    NoRoute,
    /// Code 1: communication administratively prohibited.
    AdminProhibited,
    /// Code 2: beyond the scope of the source address.
    BeyondScope,
    /// Code 3: address unreachable.
    Address,
    /// Code 4: no socket on the port.
    Port,
    /// Any other code (5 source policy, 6 reject route, ...), as is.
    Other(u8),
}

/// ICMPv6 Parameter Problem codes (RFC 4443 §3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParameterProblemV6 {
    /// Code 0: erroneous header field.
    ErroneousHeaderField,
    /// Code 1: unrecognized Next Header type.
    UnrecognizedNextHeader,
    /// Code 2: unrecognized IPv6 option.
    UnrecognizedOption,
    /// Any other code (3, RFC 7112: incomplete header chain; ...), as is.
    Other(u8),
}

/// An ICMPv6 error message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorV6 {
    /// Type 1.
    DestUnreachable(UnreachableV6),
    /// Type 2: the packet did not fit the next hop's `mtu`.
    PacketTooBig { mtu: u32 },
    /// Type 3.
    TimeExceeded(TimeExceeded),
    /// Type 4: `pointer` is the octet offset of the fault in the offending
    /// packet.
    ParameterProblem {
        code: ParameterProblemV6,
        pointer: u32,
    },
}

impl ErrorV6 {
    fn type_code(&self) -> (u8, u8) {
        match *self {
            ErrorV6::DestUnreachable(u) => (
                1,
                match u {
                    UnreachableV6::NoRoute => 0,
                    UnreachableV6::AdminProhibited => 1,
                    UnreachableV6::BeyondScope => 2,
                    UnreachableV6::Address => 3,
                    UnreachableV6::Port => 4,
                    UnreachableV6::Other(code) => code,
                },
            ),
            ErrorV6::PacketTooBig { .. } => (2, 0),
            ErrorV6::TimeExceeded(t) => (3, t.code()),
            ErrorV6::ParameterProblem { code, .. } => (
                4,
                match code {
                    ParameterProblemV6::ErroneousHeaderField => 0,
                    ParameterProblemV6::UnrecognizedNextHeader => 1,
                    ParameterProblemV6::UnrecognizedOption => 2,
                    ParameterProblemV6::Other(code) => code,
                },
            ),
        }
    }

    fn rest_of_header(&self) -> [u8; 4] {
        match *self {
            ErrorV6::PacketTooBig { mtu } => mtu.to_be_bytes(),
            ErrorV6::ParameterProblem { pointer, .. } => pointer.to_be_bytes(),
            _ => [0; 4],
        }
    }

    /// Whether sending this error goes through the rate limiter. As Linux's
    /// default `icmp/ratemask` (`0-1,3-127`): every error type but Packet
    /// Too Big, which path-MTU discovery depends on. Informational messages
    /// (echo replies) are not limited.
    pub fn rate_limited(&self) -> bool {
        !matches!(self, ErrorV6::PacketTooBig { .. })
    }
}

/// An error of either family, as received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IcmpError {
    V4(ErrorV4),
    V6(ErrorV6),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limited_kinds_follow_linux_masks() {
        assert!(ErrorV4::DestUnreachable(UnreachableV4::Port).rate_limited());
        assert!(ErrorV4::TimeExceeded(TimeExceeded::TtlExceeded).rate_limited());
        assert!(ErrorV4::ParameterProblem { pointer: 0 }.rate_limited());
        assert!(
            !ErrorV4::DestUnreachable(UnreachableV4::FragNeeded { next_hop_mtu: 1400 })
                .rate_limited()
        );
        assert!(ErrorV6::DestUnreachable(UnreachableV6::Port).rate_limited());
        assert!(ErrorV6::TimeExceeded(TimeExceeded::ReassemblyTimeout).rate_limited());
        assert!(!ErrorV6::PacketTooBig { mtu: 1280 }.rate_limited());
    }

    #[test]
    fn type_and_code_numbers() {
        let v4 = [
            (ErrorV4::DestUnreachable(UnreachableV4::Net), (3, 0)),
            (ErrorV4::DestUnreachable(UnreachableV4::Host), (3, 1)),
            (ErrorV4::DestUnreachable(UnreachableV4::Protocol), (3, 2)),
            (ErrorV4::DestUnreachable(UnreachableV4::Port), (3, 3)),
            (
                ErrorV4::DestUnreachable(UnreachableV4::FragNeeded { next_hop_mtu: 1 }),
                (3, 4),
            ),
            (
                ErrorV4::DestUnreachable(UnreachableV4::SourceRouteFailed),
                (3, 5),
            ),
            (
                ErrorV4::DestUnreachable(UnreachableV4::AdminProhibited),
                (3, 13),
            ),
            (ErrorV4::DestUnreachable(UnreachableV4::Other(9)), (3, 9)),
            (ErrorV4::TimeExceeded(TimeExceeded::TtlExceeded), (11, 0)),
            (
                ErrorV4::TimeExceeded(TimeExceeded::ReassemblyTimeout),
                (11, 1),
            ),
            (ErrorV4::ParameterProblem { pointer: 3 }, (12, 0)),
        ];
        for (e, tc) in v4 {
            assert_eq!(e.type_code(), tc, "{e:?}");
        }
        let v6 = [
            (ErrorV6::DestUnreachable(UnreachableV6::NoRoute), (1, 0)),
            (
                ErrorV6::DestUnreachable(UnreachableV6::AdminProhibited),
                (1, 1),
            ),
            (ErrorV6::DestUnreachable(UnreachableV6::BeyondScope), (1, 2)),
            (ErrorV6::DestUnreachable(UnreachableV6::Address), (1, 3)),
            (ErrorV6::DestUnreachable(UnreachableV6::Port), (1, 4)),
            (ErrorV6::DestUnreachable(UnreachableV6::Other(6)), (1, 6)),
            (ErrorV6::PacketTooBig { mtu: 1 }, (2, 0)),
            (ErrorV6::TimeExceeded(TimeExceeded::TtlExceeded), (3, 0)),
            (
                ErrorV6::TimeExceeded(TimeExceeded::ReassemblyTimeout),
                (3, 1),
            ),
            (
                ErrorV6::ParameterProblem {
                    code: ParameterProblemV6::ErroneousHeaderField,
                    pointer: 0,
                },
                (4, 0),
            ),
            (
                ErrorV6::ParameterProblem {
                    code: ParameterProblemV6::UnrecognizedNextHeader,
                    pointer: 0,
                },
                (4, 1),
            ),
            (
                ErrorV6::ParameterProblem {
                    code: ParameterProblemV6::UnrecognizedOption,
                    pointer: 0,
                },
                (4, 2),
            ),
            (
                ErrorV6::ParameterProblem {
                    code: ParameterProblemV6::Other(3),
                    pointer: 0,
                },
                (4, 3),
            ),
        ];
        for (e, tc) in v6 {
            assert_eq!(e.type_code(), tc, "{e:?}");
        }
    }
}
