//! The routing table: longest prefix wins; connected prefixes come from
//! the interfaces' addresses, others go through a gateway.

use super::iface::{Cidr, IfaceId};
use std::net::IpAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub to: Cidr,
    /// The gateway; `None` for a connected prefix.
    pub via: Option<IpAddr>,
    pub iface: IfaceId,
}

/// Where a packet to some destination goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    pub iface: IfaceId,
    /// The neighbour the frame is addressed to: the destination itself, or
    /// the gateway.
    pub hop: IpAddr,
}

#[derive(Clone, Debug, Default)]
pub struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    pub fn add(&mut self, r: Route) -> Result<(), String> {
        if self.routes.iter().any(|x| x.to == r.to && x.via == r.via) {
            return Err(format!("route to {} exists", r.to));
        }
        self.routes.push(r);
        // Longest prefix first: lookup takes the first match.
        self.routes.sort_by_key(|r| std::cmp::Reverse(r.to.prefix));
        Ok(())
    }

    pub fn remove(&mut self, to: Cidr, via: Option<IpAddr>) -> Result<(), String> {
        let before = self.routes.len();
        self.routes.retain(|r| !(r.to == to && r.via == via));
        if self.routes.len() == before {
            return Err(format!("no route to {to}"));
        }
        Ok(())
    }

    /// Drops every route of an interface (it went away).
    pub fn remove_iface(&mut self, iface: IfaceId) {
        self.routes.retain(|r| r.iface != iface);
    }

    pub fn lookup(&self, dst: IpAddr) -> Option<NextHop> {
        self.routes
            .iter()
            .find(|r| r.to.contains(dst))
            .map(|r| NextHop {
                iface: r.iface,
                hop: r.via.unwrap_or(dst),
            })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let mut t = Routes::default();
        t.add(Route {
            to: "0.0.0.0/0".parse().unwrap(),
            via: Some("10.0.0.254".parse().unwrap()),
            iface: IfaceId(0),
        })
        .unwrap();
        t.add(Route {
            to: "10.0.0.0/24".parse().unwrap(),
            via: None,
            iface: IfaceId(1),
        })
        .unwrap();
        let local = t.lookup("10.0.0.7".parse().unwrap()).unwrap();
        assert_eq!(
            (local.iface, local.hop),
            (IfaceId(1), "10.0.0.7".parse().unwrap())
        );
        let far = t.lookup("8.8.8.8".parse().unwrap()).unwrap();
        assert_eq!(far.hop, "10.0.0.254".parse::<IpAddr>().unwrap());
        assert!(t.lookup("fd00::1".parse().unwrap()).is_none());
        assert!(t.remove("10.0.0.0/24".parse().unwrap(), None).is_ok());
        assert!(t.remove("10.0.0.0/24".parse().unwrap(), None).is_err());
    }
}
