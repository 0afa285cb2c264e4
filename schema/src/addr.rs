//! `SocketAddr` (common.capnp) to and from `std::net::SocketAddr`.

use crate::common_capnp::socket_addr;
use crate::errors::SocketError;
use std::net::{IpAddr, SocketAddr};

/// Reads an address; one whose IP is not 4 or 16 bytes is `invalid`.
pub fn read_socket_addr(r: socket_addr::Reader<'_>) -> capnp::Result<SocketAddr> {
    let ip = r.get_ip()?;
    let ip: IpAddr = if let Ok(v4) = <[u8; 4]>::try_from(ip) {
        v4.into()
    } else if let Ok(v6) = <[u8; 16]>::try_from(ip) {
        v6.into()
    } else {
        return Err(SocketError::Invalid.to_capnp(format_args!(
            "an IP address is 4 or 16 bytes, not {}",
            ip.len()
        )));
    };
    Ok(SocketAddr::new(ip, r.get_port()))
}

pub fn write_socket_addr(mut b: socket_addr::Builder<'_>, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(v4) => b.set_ip(&v4.octets()),
        IpAddr::V6(v6) => b.set_ip(&v6.octets()),
    }
    b.set_port(addr.port());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addr_round_trip() {
        for addr in ["10.1.2.3:80", "[fd00::2]:4433"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut msg = capnp::message::Builder::new_default();
            write_socket_addr(msg.init_root(), addr);
            let r = msg.get_root_as_reader::<socket_addr::Reader>().unwrap();
            assert_eq!(read_socket_addr(r).unwrap(), addr);
        }
    }

    #[test]
    fn bad_address_length_is_invalid() {
        let mut msg = capnp::message::Builder::new_default();
        msg.init_root::<socket_addr::Builder>().set_ip(&[1, 2, 3]);
        let r = msg.get_root_as_reader::<socket_addr::Reader>().unwrap();
        let err = read_socket_addr(r).unwrap_err();
        assert_eq!(
            SocketError::from_description(&err.extra),
            Some(SocketError::Invalid)
        );
    }
}
