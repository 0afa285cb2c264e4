//! Address conversions between the schema, std and smoltcp.

use capnet_schema::common_capnp::socket_addr;
use capnet_schema::errors::SocketError;
use smoltcp::wire::{IpAddress, IpCidr, IpEndpoint};
use std::net::{IpAddr, SocketAddr};

pub fn read_socket_addr(r: socket_addr::Reader<'_>) -> capnp::Result<SocketAddr> {
    let ip = r.get_ip()?;
    let ip: IpAddr = match ip.len() {
        4 => <[u8; 4]>::try_from(ip).unwrap().into(),
        16 => <[u8; 16]>::try_from(ip).unwrap().into(),
        n => {
            return Err(SocketError::Invalid
                .to_capnp(format_args!("an IP address is 4 or 16 bytes, not {n}")))
        }
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

pub fn to_smol(ip: IpAddr) -> IpAddress {
    match ip {
        IpAddr::V4(v4) => IpAddress::Ipv4(v4),
        IpAddr::V6(v6) => IpAddress::Ipv6(v6),
    }
}

pub fn from_smol(ip: IpAddress) -> IpAddr {
    match ip {
        IpAddress::Ipv4(v4) => IpAddr::V4(v4),
        IpAddress::Ipv6(v6) => IpAddr::V6(v6),
    }
}

pub fn endpoint_to_std(ep: IpEndpoint) -> SocketAddr {
    SocketAddr::new(from_smol(ep.addr), ep.port)
}

/// Parses "10.0.0.1/24" or "fd00::1/64".
pub fn parse_cidr(s: &str) -> Result<IpCidr, String> {
    let (ip, len) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: expected ADDRESS/PREFIX"))?;
    let ip: IpAddr = ip.parse().map_err(|e| format!("{s:?}: {e}"))?;
    let len: u8 = len.parse().map_err(|e| format!("{s:?}: prefix: {e}"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(format!("{s:?}: prefix longer than {max}"));
    }
    Ok(IpCidr::new(to_smol(ip), len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing() {
        assert_eq!(parse_cidr("10.0.0.1/24").unwrap().prefix_len(), 24);
        assert_eq!(parse_cidr("fd00::1/64").unwrap().prefix_len(), 64);
        assert!(parse_cidr("10.0.0.1").is_err());
        assert!(parse_cidr("10.0.0.1/33").is_err());
        assert!(parse_cidr("x/3").is_err());
    }

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
