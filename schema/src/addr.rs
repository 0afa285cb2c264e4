//! `SocketAddr` (common.capnp) to and from `std::net::SocketAddr`.

use crate::common_capnp::socket_addr;
use crate::errors::SocketError;
use std::net::{IpAddr, SocketAddr};

/// Reads an address; one whose IP is not 4 or 16 bytes is `invalid`.
pub fn read_socket_addr(r: socket_addr::Reader<'_>) -> capnp::Result<SocketAddr> {
    Ok(SocketAddr::new(read_ip(r.get_ip()?)?, r.get_port()))
}

pub fn write_socket_addr(mut b: socket_addr::Builder<'_>, addr: SocketAddr) {
    b.set_ip(&ip_octets(addr.ip()));
    b.set_port(addr.port());
}

/// An IP address as the schema carries it (`Data`, network order): 4 or
/// 16 bytes, else `invalid`.
pub fn read_ip(d: &[u8]) -> capnp::Result<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(d) {
        Ok(v4.into())
    } else if let Ok(v6) = <[u8; 16]>::try_from(d) {
        Ok(v6.into())
    } else {
        Err(SocketError::Invalid.to_capnp(format_args!(
            "an IP address is 4 or 16 bytes, not {}",
            d.len()
        )))
    }
}

/// The bytes [`read_ip`] reads.
pub fn ip_octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
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
