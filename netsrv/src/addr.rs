//! Address conversions between the schema, std and smoltcp.

use smoltcp::wire::{IpAddress, IpCidr, IpEndpoint};
use std::net::{IpAddr, SocketAddr};

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
}
