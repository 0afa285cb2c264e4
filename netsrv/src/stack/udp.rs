//! UDP sockets by private id.

use super::{Links, SockId, SocketSummary, Stack};
use capnet_schema::errors::SocketError;
use capnet_tcpip::stack::UdpSendError;
use capnet_tcpip::udp::{BindError, SendError, UdpId};
use std::net::SocketAddr;

pub(super) struct UdpSock {
    pub id: UdpId,
    pub local: SocketAddr,
}

impl Stack {
    pub fn udp_bind(&mut self, local: SocketAddr) -> Result<SockId, SocketError> {
        if !local.ip().is_unspecified() && self.iface_owning(local.ip()).is_none() {
            return Err(SocketError::AddrNotAvailable);
        }
        let port = if local.port() == 0 {
            self.ephemeral_port()?
        } else if self.udp.values().any(|u| u.local.port() == local.port()) {
            return Err(SocketError::AddrInUse);
        } else {
            local.port()
        };
        let local = SocketAddr::new(local.ip(), port);
        let uid = self.engine.udp_bind(local).map_err(|e| match e {
            BindError::InUse => SocketError::AddrInUse,
            BindError::Limit => SocketError::Limit,
            BindError::NoPorts | BindError::AddressNotAvailable => SocketError::AddrNotAvailable,
        })?;
        let id = self.next_id();
        self.udp.insert(id, UdpSock { id: uid, local });
        Ok(id)
    }

    pub fn udp_local_addr(&self, id: SockId) -> Result<SocketAddr, SocketError> {
        let u = self.udp.get(&id).ok_or(SocketError::Closed)?;
        Ok(u.local)
    }

    /// Sends a datagram (fragmented if the path needs it); `Ok(None)` while
    /// the port has no room for it.
    pub fn udp_send(
        &mut self,
        id: SockId,
        data: &[u8],
        to: SocketAddr,
    ) -> Result<Option<()>, SocketError> {
        let u = self.udp.get(&id).ok_or(SocketError::Closed)?;
        let uid = u.id;
        if self.route(to.ip()).is_none() {
            return Err(SocketError::Unreachable);
        }
        let now = self.now();
        let mut links = Links {
            ifaces: &mut self.ifaces,
        };
        match self.engine.udp_send(now, uid, to, data, &mut links) {
            Ok(()) => {
                self.counters.udp_sent += 1;
                Ok(Some(()))
            }
            Err(UdpSendError::WouldBlock) => Ok(None),
            Err(UdpSendError::NoRoute) => Err(SocketError::Unreachable),
            Err(UdpSendError::TooBig) => Err(SocketError::Invalid),
            Err(UdpSendError::Dropped) => Ok(Some(())),
            Err(UdpSendError::Socket(SendError::NoSocket)) => Err(SocketError::Closed),
            Err(UdpSendError::Socket(_)) => Err(SocketError::Invalid),
        }
    }

    pub fn udp_recv(
        &mut self,
        id: SockId,
        max: usize,
    ) -> Result<Option<(Vec<u8>, SocketAddr)>, SocketError> {
        let u = self.udp.get(&id).ok_or(SocketError::Closed)?;
        let uid = u.id;
        match self.engine.udp_recv(uid) {
            Some(mut d) => {
                d.payload.truncate(max);
                self.counters.udp_received += 1;
                Ok(Some((d.payload, d.from)))
            }
            None => Ok(None),
        }
    }

    pub fn udp_close(&mut self, id: SockId) {
        if let Some(u) = self.udp.remove(&id) {
            self.engine.udp_close(u.id);
        }
    }

    pub(super) fn udp_summaries(&self) -> Vec<SocketSummary> {
        self.udp
            .values()
            .map(|u| SocketSummary {
                kind: "udp",
                local: u.local.to_string(),
                remote: String::new(),
                state: String::new(),
                rx_bytes: 0,
                tx_bytes: 0,
                ring_mode: false,
            })
            .collect()
    }
}
