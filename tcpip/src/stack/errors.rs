//! ICMP errors: sent (by the rules of when not to, and rate limited) and
//! received (path MTU for TCP and UDP, RFC 1191 / RFC 8201, checked
//! against TCP's window as RFC 5927 asks).

use super::input::Datagram;
use super::Stack;
use crate::frag::FragKey;
use crate::icmp::{self, ErrorV4, ErrorV6, IcmpError, TimeExceeded, UnreachableV4, UnreachableV6};
use crate::ip::{Device, Packet};
use crate::time::Instant;
use capnet_wire::tcp::Flow;
use smoltcp::wire::IpProtocol;
use std::net::IpAddr;

impl Stack {
    /// Sends a finished ICMP message (checksum included) from `src` to `dst`.
    pub(super) fn send_icmp(
        &mut self,
        now: Instant,
        dev: &mut dyn Device,
        src: IpAddr,
        dst: IpAddr,
        message: &[u8],
    ) {
        let protocol = if dst.is_ipv4() {
            IpProtocol::Icmp
        } else {
            IpProtocol::Icmpv6
        };
        let mut fill = |b: &mut [u8]| b.copy_from_slice(message);
        let p = Packet {
            src,
            dst,
            protocol,
            len: message.len(),
            dont_fragment: false,
            ports: None,
            fill: &mut fill,
        };
        self.ip.send(now, dev, p);
    }

    /// An ICMP error about a datagram we received, if the rules allow one.
    pub(super) fn send_error(
        &mut self,
        now: Instant,
        dev: &mut dyn Device,
        d: &Datagram<'_>,
        kind: IcmpError,
    ) {
        let to_many = d.multicast || d.link_multicast;
        let (allowed, limited) = match kind {
            IcmpError::V4(k) => (icmp::may_send_error_v4(d.packet, to_many), k.rate_limited()),
            IcmpError::V6(k) => (
                icmp::may_send_error_v6(d.packet, &k, to_many),
                k.rate_limited(),
            ),
        };
        if !allowed {
            return;
        }
        if limited && !self.is_local(d.src) && !self.limiter.allow(now, d.src) {
            self.counters.icmp_errors_limited += 1;
            return;
        }
        let src = if d.multicast {
            match self.ip.route(d.src) {
                Some((_, src, _)) => src,
                None => return,
            }
        } else {
            d.dst
        };
        let mut message = Vec::new();
        match (kind, src, d.src) {
            (IcmpError::V4(k), IpAddr::V4(_), IpAddr::V4(_)) => {
                icmp::error_v4(k, d.packet, &mut message)
            }
            (IcmpError::V6(k), IpAddr::V6(s), IpAddr::V6(t)) => {
                icmp::error_v6(k, d.packet, s, t, &mut message)
            }
            _ => return,
        }
        self.counters.icmp_errors_sent += 1;
        self.send_icmp(now, dev, src, d.src, &message);
    }

    /// Port unreachable, for a UDP datagram no socket takes.
    pub(super) fn port_unreachable(
        &mut self,
        now: Instant,
        d: &Datagram<'_>,
        dev: &mut dyn Device,
    ) {
        let kind = if d.src.is_ipv4() {
            IcmpError::V4(ErrorV4::DestUnreachable(UnreachableV4::Port))
        } else {
            IcmpError::V6(ErrorV6::DestUnreachable(UnreachableV6::Port))
        };
        self.send_error(now, dev, d, kind);
    }

    /// Protocol unreachable (ICMPv6: parameter problem, next header).
    pub(super) fn protocol_unreachable(
        &mut self,
        now: Instant,
        d: &Datagram<'_>,
        dev: &mut dyn Device,
    ) {
        let kind = if d.src.is_ipv4() {
            IcmpError::V4(ErrorV4::DestUnreachable(UnreachableV4::Protocol))
        } else {
            IcmpError::V6(ErrorV6::ParameterProblem {
                code: icmp::ParameterProblemV6::UnrecognizedNextHeader,
                pointer: 6,
            })
        };
        self.send_error(now, dev, d, kind);
    }

    /// A received ICMP error: the path MTU it teaches, for the flow it
    /// names.
    pub(super) fn icmp_error_input(&mut self, now: Instant, d: &Datagram<'_>) {
        let Ok(e) = icmp::parse_error(d.body, d.src, d.dst) else {
            self.ip.counters.malformed += 1;
            return;
        };
        let reported = match e.kind {
            IcmpError::V4(ErrorV4::DestUnreachable(UnreachableV4::FragNeeded { next_hop_mtu })) => {
                u32::from(next_hop_mtu)
            }
            IcmpError::V6(ErrorV6::PacketTooBig { mtu }) => mtu,
            _ => return,
        };
        // The error is about a packet we sent: from one of ours.
        if !self.is_local(e.embedded.src.ip()) {
            return;
        }
        let remote = e.embedded.dst;
        let Some((_, _, link_mtu)) = self.ip.route(remote.ip()) else {
            return;
        };
        let flow = Flow {
            local: e.embedded.src,
            remote,
        };
        if let icmp::EmbeddedTransport::Tcp { seq } = e.embedded.transport {
            // RFC 5927 4.1: only for data we have in flight.
            let in_window = self.tcp.in_send_window(&flow, seq);
            if !in_window {
                return;
            }
        }
        if let Some(mtu) = self
            .pmtu
            .update(now, remote.ip(), reported, link_mtu as u32)
        {
            self.counters.pmtu_updates += 1;
            self.tcp.path_mtu_changed(now, &flow, mtu as usize);
        }
    }

    /// Reassemblies that timed out; ICMP time exceeded when the first
    /// fragment had come (RFC 792, RFC 8200 4.5).
    pub(super) fn expire_fragments(&mut self, now: Instant, dev: &mut dyn Device) {
        let mut expired = Vec::new();
        self.reasm.poll(now, &mut |e| expired.push(e));
        for e in expired {
            let Some(first) = e.first else { continue };
            let mut packet = first.header.clone();
            packet.extend_from_slice(&first.data);
            let (src, dst, kind) = match e.key {
                FragKey::V4 { src, dst, .. } => (
                    IpAddr::V4(src),
                    IpAddr::V4(dst),
                    IcmpError::V4(ErrorV4::TimeExceeded(TimeExceeded::ReassemblyTimeout)),
                ),
                FragKey::V6 { src, dst, .. } => (
                    IpAddr::V6(src),
                    IpAddr::V6(dst),
                    IcmpError::V6(ErrorV6::TimeExceeded(TimeExceeded::ReassemblyTimeout)),
                ),
            };
            // Only our own addresses and broadcast/multicast ones get as
            // far as reassembly: one not ours was sent to many, and no
            // error may answer it (RFC 1122 3.2.2; a directed broadcast
            // is not visible in the quoted header alone).
            let multicast = !self.is_local(dst);
            let d = Datagram {
                iface: crate::ip::iface::IfaceId(usize::MAX),
                src,
                dst,
                protocol: IpProtocol::Unknown(0),
                body: &[],
                packet: &packet,
                multicast,
                checksum_ok: true,
                mark: crate::tcp::Mark::Plain,
                hop_limit: 0,
                link_multicast: false,
            };
            self.send_error(now, dev, &d, kind);
        }
    }
}
