//! TCP's glue: segments become IP packets on the way down, checked
//! segments reach the TCP layer on the way up, and the socket calls.

use super::input::Datagram;
use super::{unicast, Stack};
use crate::ip::{Device, Ip, Packet, Sent};
use crate::tcp::conn::{Payload, Sink};
use crate::tcp::{Conn, ListenerId, Options, TcpError, TcpId};
use crate::time::Instant;
use capnet_wire::tcp::{Flow, Header};
use smoltcp::wire::{IpProtocol, TcpPacket};
use std::net::{IpAddr, SocketAddr};

/// TCP's way down: a segment becomes an IP packet.
struct TcpOut<'a> {
    ip: &'a mut Ip,
    dev: &'a mut dyn Device,
    now: Instant,
}

impl Sink for TcpOut<'_> {
    fn segment(&mut self, flow: &Flow, h: &Header, payload: Payload<'_>) -> bool {
        let hl = h.header_len();
        let (src, dst) = (flow.local.ip(), flow.remote.ip());
        let mut fill = |l4: &mut [u8]| {
            h.emit(l4);
            payload.copy_to(&mut l4[hl..]);
            TcpPacket::new_unchecked(l4).fill_checksum(&src.into(), &dst.into());
        };
        let p = Packet {
            src,
            dst,
            protocol: IpProtocol::Tcp,
            len: hl + payload.len(),
            dont_fragment: true,
            ports: Some((flow.local.port(), flow.remote.port())),
            fill: &mut fill,
        };
        self.ip.send(self.now, self.dev, p) != Sent::DeviceFull
    }
}

/// Why a connection could not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectError {
    /// No route to the destination (EHOSTUNREACH / ENETUNREACH).
    NoRoute,
    /// The local address is not one of ours (EADDRNOTAVAIL).
    AddressNotAvailable,
    /// Every ephemeral port toward that destination is taken.
    NoPorts,
    /// Mixed families, port 0, or a non-unicast address (EINVAL).
    Invalid,
    Tcp(TcpError),
}

impl Stack {
    pub(super) fn tcp_input(&mut self, now: Instant, d: &Datagram<'_>, dev: &mut dyn Device) {
        let (src, dst, seg) = (d.src, d.dst, d.body);
        let Ok(t) = TcpPacket::new_checked(seg) else {
            self.tcp.counters.malformed += 1;
            return;
        };
        if !d.checksum_ok && !t.verify_checksum(&src.into(), &dst.into()) {
            self.ip.counters.bad_checksum += 1;
            return;
        }
        let Ok((h, offset)) = Header::parse(seg) else {
            self.tcp.counters.malformed += 1;
            return;
        };
        if h.src_port == 0 || h.dst_port == 0 || !unicast(src) {
            self.tcp.counters.malformed += 1;
            return;
        }
        let flow = Flow {
            local: SocketAddr::new(dst, h.dst_port),
            remote: SocketAddr::new(src, h.src_port),
        };
        let mut out = TcpOut {
            ip: &mut self.ip,
            dev,
            now,
        };
        self.tcp
            .input(now, flow, &h, &seg[offset..], d.mark, &mut out);
    }

    pub(super) fn tcp_poll(&mut self, now: Instant, dev: &mut dyn Device) {
        let mut out = TcpOut {
            ip: &mut self.ip,
            dev,
            now,
        };
        self.tcp.poll(now, &mut out);
    }

    /// The MSS for a connection to `remote`, and the source address.
    fn mss_toward(&self, now: Instant, remote: IpAddr) -> Option<(IpAddr, usize)> {
        let (src, mtu) = self.path_mtu(now, remote)?;
        Some((src, mtu.saturating_sub(headers(remote)).max(536)))
    }

    /// A free ephemeral port for a flow from `ip` to `remote`.
    fn tcp_ephemeral(&mut self, ip: IpAddr, remote: SocketAddr) -> Option<u16> {
        let (lo, hi) = (self.ephemeral.low(), self.ephemeral.high());
        let span = u32::from(hi - lo) + 1;
        for _ in 0..span {
            self.next_port = self.next_port.wrapping_add(1);
            let port = lo + (self.next_port % span) as u16;
            let flow = Flow {
                local: SocketAddr::new(ip, port),
                remote,
            };
            if !self.tcp.flow_in_use(&flow) && !self.tcp.port_in_use(flow.local) {
                return Some(port);
            }
        }
        None
    }

    /// Opens a TCP connection; `local` may leave the address unspecified
    /// and the port 0.
    pub fn tcp_connect(
        &mut self,
        now: Instant,
        local: Option<SocketAddr>,
        remote: SocketAddr,
        opts: Options,
    ) -> Result<TcpId, ConnectError> {
        let (src, mss) = self
            .mss_toward(now, remote.ip())
            .ok_or(ConnectError::NoRoute)?;
        let ip = match local.map(|l| l.ip()) {
            Some(ip) if !ip.is_unspecified() => {
                if !self.is_local(ip) {
                    return Err(ConnectError::AddressNotAvailable);
                }
                ip
            }
            _ => src,
        };
        let port = match local.map(|l| l.port()) {
            Some(p) if p != 0 => p,
            _ => self
                .tcp_ephemeral(ip, remote)
                .ok_or(ConnectError::NoPorts)?,
        };
        let flow = Flow {
            local: SocketAddr::new(ip, port),
            remote,
        };
        flow.check().map_err(|_| ConnectError::Invalid)?;
        self.tcp
            .connect(now, flow, opts, mss)
            .map_err(ConnectError::Tcp)
    }

    /// Listens on `local` (the address may be unspecified).
    pub fn tcp_listen(
        &mut self,
        local: SocketAddr,
        backlog: usize,
        opts: Options,
    ) -> Result<ListenerId, TcpError> {
        let mtu = self.ip.ifaces().map(|(_, f)| f.mtu).max().unwrap_or(1500);
        let mss = mtu.saturating_sub(headers(local.ip())).max(536);
        self.tcp.listen(local, backlog, opts, mss)
    }

    /// Runs `f` on a connection and files what it changed.
    pub fn tcp<R>(
        &mut self,
        now: Instant,
        id: TcpId,
        f: impl FnOnce(&mut Conn) -> R,
    ) -> Result<R, TcpError> {
        self.tcp.with_conn(now, id, f)
    }

    /// Graceful close (an abort if unread data is left, as Linux does).
    pub fn tcp_close(&mut self, now: Instant, id: TcpId, dev: &mut dyn Device) {
        let mut out = TcpOut {
            ip: &mut self.ip,
            dev,
            now,
        };
        self.tcp.close(now, id, &mut out);
    }

    /// Abortive close: a reset if the peer knows the connection.
    pub fn tcp_abort(&mut self, now: Instant, id: TcpId, dev: &mut dyn Device) {
        let mut out = TcpOut {
            ip: &mut self.ip,
            dev,
            now,
        };
        self.tcp.abort(now, id, &mut out);
    }

    pub fn tcp_close_listener(&mut self, now: Instant, id: ListenerId, dev: &mut dyn Device) {
        let mut out = TcpOut {
            ip: &mut self.ip,
            dev,
            now,
        };
        self.tcp.close_listener(now, id, &mut out);
    }
}

/// IP and TCP header bytes without options.
fn headers(ip: IpAddr) -> usize {
    if ip.is_ipv4() {
        40
    } else {
        60
    }
}
