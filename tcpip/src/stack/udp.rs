//! UDP both ways. A datagram larger than the path MTU leaves in
//! fragments (RFC 791 2.3 / RFC 8200 4.5), or is refused with
//! [`UdpSendError::TooBig`] when not even fragments can carry it; it is
//! never counted as sent and lost.

use super::input::Datagram;
use super::Stack;
use crate::frag::plan;
use crate::ip::{write_ip, Device, Packet, Sent, IPV4_HEADER, IPV6_HEADER};
use crate::time::Instant;
use crate::udp::{BindError, Datagram as UdpDatagram, EphemeralPorts, SendError, UdpId};
use smoltcp::wire::{IpProtocol, UdpPacket};
use std::net::{IpAddr, SocketAddr};

/// Why a datagram was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpSendError {
    /// The socket is closed, or the destination unusable.
    Socket(SendError),
    NoRoute,
    /// Larger than a UDP datagram can be (65507 / 65527 bytes).
    TooBig,
    /// The device had no room for it now (EAGAIN): nothing was sent.
    WouldBlock,
    /// Address resolution could not take it (its queue is full).
    Dropped,
}

const UDP_HEADER: usize = 8;

impl Stack {
    pub(super) fn udp_input(&mut self, now: Instant, d: &Datagram<'_>, dev: &mut dyn Device) {
        let Ok(p) = UdpPacket::new_checked(d.body) else {
            self.ip.counters.malformed += 1;
            return;
        };
        let len = usize::from(p.len());
        if len < UDP_HEADER || len > d.body.len() {
            self.ip.counters.malformed += 1;
            return;
        }
        // IPv4 allows "no checksum" (0); IPv6 does not (RFC 8200 8.1).
        // smoltcp's verify_checksum passes a zero checksum in either
        // family, so IPv6's zero is refused here before it is asked.
        let unchecked = d.src.is_ipv4() && p.checksum() == 0;
        let zero_v6 = d.src.is_ipv6() && p.checksum() == 0;
        if !d.checksum_ok
            && !unchecked
            && (zero_v6 || !p.verify_checksum(&d.src.into(), &d.dst.into()))
        {
            self.ip.counters.bad_checksum += 1;
            return;
        }
        let from = SocketAddr::new(d.src, p.src_port());
        let to = SocketAddr::new(d.dst, p.dst_port());
        match self.udp.receive(from, to, &d.body[UDP_HEADER..len]) {
            Ok(id) => self.udp_event(id),
            Err(crate::udp::UdpDrop::NoSocket) if !d.multicast => {
                self.port_unreachable(now, d, dev)
            }
            Err(_) => {}
        }
    }

    /// Binds a UDP socket (`local`'s address may be unspecified, its port 0).
    pub fn udp_bind(&mut self, local: SocketAddr) -> Result<UdpId, BindError> {
        if !local.ip().is_unspecified() && !self.is_local(local.ip()) {
            return Err(BindError::AddressNotAvailable);
        }
        self.next_port = self
            .next_port
            .wrapping_mul(747_796_405)
            .wrapping_add(2_891_336_453);
        let ephemeral = EphemeralPorts {
            range: self.ephemeral,
            start: self.next_port,
        };
        self.udp.bind(local, ephemeral)
    }

    pub fn udp_recv(&mut self, id: UdpId) -> Option<UdpDatagram> {
        self.udp.recv(id)
    }

    pub fn udp_close(&mut self, id: UdpId) {
        self.udp.close(id);
    }

    /// Sends one datagram; fragments it when the path needs that.
    pub fn udp_send(
        &mut self,
        now: Instant,
        id: UdpId,
        to: SocketAddr,
        payload: &[u8],
        dev: &mut dyn Device,
    ) -> Result<(), UdpSendError> {
        let local = self
            .udp
            .check_send(id, to, payload.len())
            .map_err(|e| match e {
                SendError::TooLong => UdpSendError::TooBig,
                e => UdpSendError::Socket(e),
            })?;
        let result = self.udp_send_from(now, local, to, payload, dev);
        match result {
            Ok(()) => self.udp.record_sent(id),
            Err(_) => self.udp.record_send_error(id),
        };
        result
    }

    fn udp_send_from(
        &mut self,
        now: Instant,
        local: SocketAddr,
        to: SocketAddr,
        payload: &[u8],
        dev: &mut dyn Device,
    ) -> Result<(), UdpSendError> {
        let (route_src, mtu) = self.path_mtu(now, to.ip()).ok_or(UdpSendError::NoRoute)?;
        let src = if local.ip().is_unspecified() {
            route_src
        } else {
            local.ip()
        };
        let l4_len = UDP_HEADER + payload.len();
        let mut datagram = vec![0u8; l4_len];
        {
            let mut p = UdpPacket::new_unchecked(&mut datagram[..]);
            p.set_src_port(local.port());
            p.set_dst_port(to.port());
            p.set_len(l4_len as u16);
            p.payload_mut().copy_from_slice(payload);
            p.fill_checksum(&src.into(), &to.ip().into());
        }
        let header = if to.is_ipv4() {
            IPV4_HEADER
        } else {
            IPV6_HEADER
        };
        if header + l4_len <= mtu {
            let mut fill = |b: &mut [u8]| b.copy_from_slice(&datagram);
            let p = Packet {
                src,
                dst: to.ip(),
                protocol: IpProtocol::Udp,
                len: l4_len,
                dont_fragment: false,
                ports: Some((local.port(), to.port())),
                fill: &mut fill,
            };
            return sent(self.ip.send(now, dev, p));
        }
        self.send_fragments(now, src, to.ip(), &datagram, mtu, dev)
    }

    /// Sends `datagram` (a whole UDP datagram) in fragments that fit `mtu`.
    fn send_fragments(
        &mut self,
        now: Instant,
        src: IpAddr,
        dst: IpAddr,
        datagram: &[u8],
        mtu: usize,
        dev: &mut dyn Device,
    ) -> Result<(), UdpSendError> {
        let hop = self.ip.routes.lookup(dst).ok_or(UdpSendError::NoRoute)?;
        // Policy judges the datagram once, not each fragment.
        let selector = crate::ip::policy::Selector {
            src,
            dst,
            protocol: IpProtocol::Udp,
            ports: crate::ip::policy::ports(IpProtocol::Udp, datagram),
            iface: hop.iface,
        };
        if !self.ip.policy_output(&selector) {
            return Err(UdpSendError::Dropped);
        }
        let v6 = dst.is_ipv6();
        // Each fragment carries the IP header (and IPv6's fragment header).
        let room = mtu.saturating_sub(if v6 { IPV6_HEADER + 8 } else { IPV4_HEADER });
        let pieces = plan(datagram.len(), room).map_err(|_| UdpSendError::TooBig)?;
        self.ip_ident = self.ip_ident.wrapping_add(1);
        let ident = self.ip_ident;
        for piece in pieces {
            let bytes = &datagram[piece.offset..piece.offset + piece.len];
            let packet = fragment(src, dst, ident, piece.offset, piece.more, bytes);
            let r = self.ip.send_packet(now, dev, hop, dst, packet);
            sent(r)?;
            self.counters.fragments_sent += 1;
        }
        Ok(())
    }
}

fn sent(r: Sent) -> Result<(), UdpSendError> {
    match r {
        Sent::Sent | Sent::Queued => Ok(()),
        Sent::DeviceFull => Err(UdpSendError::WouldBlock),
        Sent::NoRoute => Err(UdpSendError::NoRoute),
        Sent::Dropped => Err(UdpSendError::Dropped),
    }
}

/// One fragment of a UDP datagram as a whole IP packet.
fn fragment(
    src: IpAddr,
    dst: IpAddr,
    ident: u32,
    offset: usize,
    more: bool,
    bytes: &[u8],
) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => {
            let mut p = vec![0u8; IPV4_HEADER + bytes.len()];
            write_ip(
                &mut p,
                src,
                dst,
                IpProtocol::Udp,
                bytes.len(),
                ident as u16,
                false,
            )
            .copy_from_slice(bytes);
            let mut h = smoltcp::wire::Ipv4Packet::new_unchecked(&mut p[..]);
            h.set_more_frags(more);
            h.set_frag_offset(offset as u16);
            h.fill_checksum();
            p
        }
        _ => {
            let mut p = vec![0u8; IPV6_HEADER + 8 + bytes.len()];
            let body = write_ip(
                &mut p,
                src,
                dst,
                IpProtocol::Ipv6Frag,
                8 + bytes.len(),
                0,
                false,
            );
            body[0] = IpProtocol::Udp.into();
            body[1] = 0;
            let off = ((offset / 8) as u16) << 3 | u16::from(more);
            body[2..4].copy_from_slice(&off.to_be_bytes());
            body[4..8].copy_from_slice(&ident.to_be_bytes());
            body[8..].copy_from_slice(bytes);
            p
        }
    }
}
