//! Address text: the one parser of "10.0.0.1/24" for the command line and
//! the admin calls.

use capnet_tcpip::Cidr;
use std::net::IpAddr;

/// Parses "10.0.0.1/24" or "fd00::1/64".
pub fn parse_cidr(s: &str) -> Result<Cidr, String> {
    let (ip, len) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: expected ADDRESS/PREFIX"))?;
    let ip: IpAddr = ip.parse().map_err(|e| format!("{s:?}: {e}"))?;
    let len: u8 = len.parse().map_err(|e| format!("{s:?}: prefix: {e}"))?;
    Cidr::new(ip, len).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing() {
        assert_eq!(parse_cidr("10.0.0.1/24").unwrap().prefix, 24);
        assert_eq!(parse_cidr("fd00::1/64").unwrap().prefix, 64);
        assert!(parse_cidr("10.0.0.1").is_err());
        assert!(parse_cidr("10.0.0.1/33").is_err());
        assert!(parse_cidr("x/3").is_err());
    }
}
