//! UDP sockets. Datagrams travel in capnp messages.

use crate::conn::{cap_err, Net, Object};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Mutex;
use std::time::Duration;

pub(crate) use capnet_schema::addr::write_socket_addr as write_addr;

pub(crate) fn read_addr(
    r: capnet_schema::common_capnp::socket_addr::Reader<'_>,
) -> io::Result<SocketAddr> {
    capnet_schema::addr::read_socket_addr(r).map_err(cap_err)
}

/// A UDP socket, like `std::net::UdpSocket`. If the network service goes
/// away, a blocked `recv_from` returns at once and every call from then on
/// fails with `ConnectionReset`.
pub struct UdpSocket {
    net: Net,
    id: u64,
    local: SocketAddr,
    read_timeout: Mutex<Option<Duration>>,
}

impl UdpSocket {
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        Net::default_net()?.udp_bind(crate::tcp::resolve(addr)?)
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        *self.read_timeout.lock().unwrap_or_else(|e| e.into_inner()) = t;
        Ok(())
    }

    pub fn send_to(&self, data: &[u8], to: impl ToSocketAddrs) -> io::Result<usize> {
        let to = crate::tcp::resolve(to)?;
        let id = self.id;
        let data = data.to_vec();
        let len = data.len();
        self.net
            .call(Some(Duration::from_secs(10)), move |ctx| async move {
                let mut req = ctx.udp(id)?.send_to_request();
                req.get().set_data(&data);
                write_addr(req.get().init_to(), to);
                req.send().promise.await.map_err(cap_err)?;
                Ok(len)
            })
    }

    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let id = self.id;
        let max = buf.len() as u32;
        let timeout = *self.read_timeout.lock().unwrap_or_else(|e| e.into_inner());
        let (data, from) = self.net.call(timeout, move |ctx| async move {
            let mut req = ctx.udp(id)?.recv_from_request();
            req.get().set_max(max);
            let resp = req.send().promise.await.map_err(cap_err)?;
            let r = resp.get().map_err(cap_err)?;
            Ok((
                r.get_data().map_err(cap_err)?.to_vec(),
                read_addr(r.get_from().map_err(cap_err)?)?,
            ))
        })?;
        buf[..data.len()].copy_from_slice(&data);
        Ok((data.len(), from))
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        self.net.release(self.id);
    }
}

impl Net {
    pub fn udp_bind(&self, addr: SocketAddr) -> io::Result<UdpSocket> {
        let (id, local) = self.call(Some(Duration::from_secs(10)), move |ctx| async move {
            let mut req = ctx.net().udp_bind_request();
            write_addr(req.get().init_local(), addr);
            let resp = req.send().promise.await.map_err(cap_err)?;
            let s = resp.get().map_err(cap_err)?.get_socket().map_err(cap_err)?;
            let la = s
                .local_addr_request()
                .send()
                .promise
                .await
                .map_err(cap_err)?;
            let local = read_addr(la.get().map_err(cap_err)?.get_addr().map_err(cap_err)?)?;
            Ok((ctx.insert(Object::Udp(s)), local))
        })?;
        Ok(UdpSocket {
            net: self.clone(),
            id,
            local,
            read_timeout: Mutex::new(None),
        })
    }
}

impl std::fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpSocket")
            .field("local", &self.local)
            .finish()
    }
}
