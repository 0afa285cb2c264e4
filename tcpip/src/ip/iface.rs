//! Interfaces as the engine sees them: a link-layer address, an MTU,
//! addresses with their prefixes. What carries
//! an interface's frames (a port, a bond of ports) is the bindings' affair.

use std::net::IpAddr;

/// An interface's name inside the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfaceId(pub usize);

pub type Mac = [u8; 6];

/// An address with its prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Cidr, String> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(format!("{addr}/{prefix}: prefix longer than {max}"));
        }
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` is inside the prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }

    /// The prefix's IPv4 directed broadcast address.
    pub fn broadcast_v4(&self) -> Option<std::net::Ipv4Addr> {
        match self.addr {
            IpAddr::V4(a) if self.prefix < 31 => {
                let host = u32::MAX >> self.prefix;
                Some((u32::from(a) | host).into())
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s}: not address/prefix"))?;
        let addr: IpAddr = a.parse().map_err(|e| format!("{a}: {e}"))?;
        let prefix: u8 = p.parse().map_err(|e| format!("{p}: {e}"))?;
        Cidr::new(addr, prefix)
    }
}

#[derive(Clone, Debug)]
pub struct Iface {
    pub mac: Mac,
    /// The IP MTU: the largest IP packet a frame carries.
    pub mtu: usize,
    pub addrs: Vec<Cidr>,
}

impl Iface {
    pub fn new(mac: Mac, mtu: usize) -> Iface {
        Iface {
            mac,
            mtu,
            addrs: Vec::new(),
        }
    }

    pub fn has_addr(&self, ip: IpAddr) -> bool {
        self.addrs.iter().any(|c| c.addr == ip)
    }

    /// The address to send from toward `dst`: one on `dst`'s prefix, else
    /// the first of the family (link-local IPv6 only toward link-local).
    pub fn source_for(&self, dst: IpAddr) -> Option<IpAddr> {
        let family = self
            .addrs
            .iter()
            .filter(|c| c.addr.is_ipv4() == dst.is_ipv4());
        family
            .clone()
            .find(|c| c.contains(dst))
            .or_else(|| family.clone().find(|c| !is_link_local(c.addr)))
            .or_else(|| family.clone().next())
            .map(|c| c.addr)
    }
}

pub fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_contain_and_parse() {
        let c: Cidr = "10.0.0.1/24".parse().unwrap();
        assert!(c.contains("10.0.0.200".parse().unwrap()));
        assert!(!c.contains("10.0.1.1".parse().unwrap()));
        assert!(!c.contains("fd00::1".parse().unwrap()));
        assert_eq!(c.broadcast_v4(), Some("10.0.0.255".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        let v6: Cidr = "fd00::1/64".parse().unwrap();
        assert!(v6.contains("fd00::ffff".parse().unwrap()));
        assert!("10.0.0.1/33".parse::<Cidr>().is_err());
        assert!("10.0.0.1".parse::<Cidr>().is_err());
    }
}
