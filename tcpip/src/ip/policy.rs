//! The IP policy hook: where a security policy (the coming IPsec SPD, RFC
//! 4301 4.4.1) sees every packet this host sends, after routing, and every
//! datagram addressed to it, before delivery to a transport.
//!
//! The engine asks; the policy answers from the selectors alone (addresses,
//! protocol, ports, interface), so the hook costs nothing per byte.
//! Neighbour discovery and ARP are link-layer business and never asked
//! about (RFC 4301 leaves ND to bypass).

use super::iface::IfaceId;
use smoltcp::wire::IpProtocol;
use std::net::IpAddr;

/// What a packet is, as a policy selects it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selector {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: IpProtocol,
    /// (source, destination) ports of TCP and UDP.
    pub ports: Option<(u16, u16)>,
    /// The interface it leaves by or came in on.
    pub iface: IfaceId,
}

/// A policy's decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send it, or deliver it.
    Accept,
    /// Drop it (counted).
    Discard,
}

/// A security policy the engine consults.
pub trait Policy {
    /// A packet this host is about to send on `s.iface`.
    fn output(&mut self, s: &Selector) -> Verdict;
    /// A datagram addressed to this host, before its transport sees it.
    fn input(&mut self, s: &Selector) -> Verdict;
}

/// The ports of a TCP or UDP header at the front of `l4`.
pub fn ports(protocol: IpProtocol, l4: &[u8]) -> Option<(u16, u16)> {
    match protocol {
        IpProtocol::Tcp | IpProtocol::Udp if l4.len() >= 4 => Some((
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        )),
        _ => None,
    }
}
