//! The whole configuration, checked before anything starts. What a service
//! would refuse at start-up (nicdrv's, netsrv's and tlsd's argument
//! parsers, netsrv's interface and route set-up) is refused here instead,
//! and each error says what is wrong and where, in the configuration's
//! words: `port sim0: mac "zz": expected six hex octets ...`.

use super::{Backend, Bond, Config, Port, TlsConfig};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

/// The most addresses one interface holds (netsrv's bound).
pub const MAX_ADDRESSES: usize = 4;
/// The most routes netsrv holds (`iface-max-route-count-16`).
pub const MAX_ROUTES: usize = 16;
/// The most legs of one bond (netsrv's `link::MAX_LEGS`).
pub const MAX_LEGS: usize = 64;

/// Percent to parts per million, checked.
pub fn ppm(what: &str, percent: f64) -> Result<u32, String> {
    if !(0.0..=100.0).contains(&percent) || percent.is_nan() {
        return Err(format!(
            "{what} must be a percentage from 0 to 100, not {percent}"
        ));
    }
    Ok((percent * 10_000.0).round() as u32)
}

/// Letters, digits, `-` and `_`; 1 to 64 bytes (a port name travels in
/// one attach message).
fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "{what} name {name:?}: use 1 to 64 letters, digits, - and _"
        ));
    }
    Ok(())
}

/// Checks `ADDRESS/PREFIX`.
pub fn check_cidr(cidr: &str) -> Result<(IpAddr, u8), String> {
    let (ip, len) = cidr
        .split_once('/')
        .ok_or_else(|| format!("address {cidr:?} needs a /prefix"))?;
    let ip: IpAddr = ip.parse().map_err(|e| format!("address {cidr:?}: {e}"))?;
    let len: u8 = len.parse().map_err(|e| format!("address {cidr:?}: {e}"))?;
    if len > if ip.is_ipv4() { 32 } else { 128 } {
        return Err(format!("address {cidr:?}: prefix too long"));
    }
    Ok((ip, len))
}

/// Checks a route destination: `default`, `default6` or a CIDR.
pub fn check_route_to(to: &str) -> Result<(), String> {
    route_to(to).map(|_| ())
}

/// A route destination as (network address, prefix length).
fn route_to(to: &str) -> Result<(IpAddr, u8), String> {
    match to {
        "default" => Ok((IpAddr::from([0u8; 4]), 0)),
        "default6" => Ok((IpAddr::from([0u8; 16]), 0)),
        _ => {
            check_cidr(to).map_err(|e| format!("route to {to:?}: use \"default\" or a CIDR ({e})"))
        }
    }
}

/// An address an interface can hold: not unspecified, not a group address.
fn check_unicast(cidr: &str, ip: IpAddr) -> Result<(), String> {
    let bad = match ip {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    };
    if bad {
        return Err(format!("address {cidr:?}: not an address of one host"));
    }
    Ok(())
}

/// Whether `ip` is on the subnet `net/len`.
fn on_subnet(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    let bits = |a: IpAddr| match a {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    };
    let ((a, a_width), (n, n_width)) = (bits(ip), bits(net));
    if a_width != n_width {
        return false;
    }
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    };
    a & mask == n & mask
}

impl Port {
    /// The port's own settings; the caller says which port.
    fn check(&self) -> Result<(), String> {
        match self.backend {
            Backend::Sim if self.wire.is_none() => return Err("a sim port needs `wire`".into()),
            Backend::Sim if self.tap.is_some() || self.netns.is_some() => {
                return Err("`tap` and `netns` belong to a tap port, not a sim port".into())
            }
            Backend::Tap if self.tap.is_none() => return Err("a tap port needs `tap`".into()),
            Backend::Tap if self.wire.is_some() => {
                return Err("`wire` belongs to a sim port, not a tap port".into())
            }
            _ => {}
        }
        if let Some(tap) = &self.tap {
            // What the kernel takes as an interface name (IFNAMSIZ).
            if tap.is_empty() || tap.len() > 15 || tap.contains(['/', ' ', ':']) {
                return Err(format!(
                    "tap {tap:?}: an interface name of 1 to 15 characters, without '/', ' ' or ':'"
                ));
            }
        }
        if let Some(ns) = &self.netns {
            if ns.is_empty() || ns.contains('/') || ns == "." || ns == ".." {
                return Err(format!("netns {ns:?}: the name of a file in /run/netns"));
            }
        }
        if let Some(mac) = &self.mac {
            capnet_wire::mac::parse_mac(mac).map_err(|e| format!("mac {mac:?}: {e}"))?;
        }
        check_addresses(&self.addresses)?;
        if let Some(mtu) = self.mtu {
            if !(576..=65535).contains(&mtu) {
                return Err(format!("mtu {mtu} outside 576..=65535"));
            }
        }
        if let Some(b) = self.buffers {
            if !b.is_power_of_two() || !(8..=65536).contains(&b) {
                return Err("buffers must be a power of two from 8 to 65536".into());
            }
            // Descriptors name buffers by a 32-bit offset into the pool.
            // With segmentation offload a buffer holds a merged frame.
            let mtu = self.mtu.unwrap_or(1500);
            let segmentation =
                self.segmentation != Some(false) && self.checksum_offload != Some(false);
            let frame = match segmentation {
                true => (mtu + 14).max(capnet_wire::gso::MAX_FRAME as u32),
                false => mtu + 14,
            };
            let layout = capnet_ring::ChannelLayout::for_frames(frame, b);
            let (buffer, pool) = (layout.buf_size, layout.pool_bytes());
            if pool > u32::MAX as u64 {
                let why = if segmentation {
                    " (segmentation offload: a buffer holds a merged frame)"
                } else {
                    ""
                };
                return Err(format!(
                    "{b} buffers of {buffer} bytes (mtu {mtu}){why} make a pool of {pool} bytes; \
                     a port's pool must stay under 4 GiB: use fewer buffers, a smaller mtu or \
                     segmentation = false"
                ));
            }
        }
        if self.tls_offload && self.checksum_offload == Some(false) {
            // The engine changes the payload: the driver fills the checksums
            // after sealing and decrypts only frames whose checksum it verified.
            return Err("tls_offload needs checksum_offload: it cannot be false".into());
        }
        if self.segmentation == Some(true) && self.checksum_offload == Some(false) {
            // Segments are cut with their checksums filled, and coalesced
            // only once each one's checksum is verified.
            return Err("segmentation needs checksum_offload: it cannot be false".into());
        }
        for (what, v) in [
            ("loss", self.faults.loss),
            ("reorder", self.faults.reorder),
            ("duplicate", self.faults.duplicate),
            ("corrupt", self.faults.corrupt),
        ] {
            ppm(what, v)?;
        }
        Ok(())
    }
}

/// One interface's addresses: well formed, each once, at most
/// [`MAX_ADDRESSES`].
fn check_addresses(addresses: &[String]) -> Result<(), String> {
    let mut seen = HashSet::new();
    for a in addresses {
        let (ip, _) = check_cidr(a)?;
        check_unicast(a, ip)?;
        if !seen.insert(ip) {
            return Err(format!("address {ip} is given twice"));
        }
    }
    if addresses.len() > MAX_ADDRESSES {
        return Err(format!(
            "{} addresses: an interface holds at most {MAX_ADDRESSES}",
            addresses.len()
        ));
    }
    Ok(())
}

impl Bond {
    /// The bond's own settings against the ports; `legs_used` collects
    /// the legs of every bond so far.
    fn check<'a>(
        &'a self,
        ports: &[Port],
        legs_used: &mut HashMap<&'a String, &'a String>,
    ) -> Result<(), String> {
        if self.legs.is_empty() {
            return Err("needs at least one leg".into());
        }
        if self.legs.len() > MAX_LEGS {
            return Err(format!(
                "{} legs: a bond has at most {MAX_LEGS}",
                self.legs.len()
            ));
        }
        for leg in &self.legs {
            let port = ports
                .iter()
                .find(|p| &p.name == leg)
                .ok_or_else(|| format!("leg {leg:?} is not a [[port]]"))?;
            if !port.addresses.is_empty() {
                return Err(format!(
                    "leg {leg} has addresses of its own; put them on the bond"
                ));
            }
            if let Some(other) = legs_used.insert(leg, &self.name) {
                return Err(if other == &self.name {
                    format!("leg {leg} is listed twice")
                } else {
                    format!("leg {leg} is already a leg of bond {other}")
                });
            }
        }
        if let Some(p) = &self.primary {
            if !self.legs.contains(p) {
                return Err(format!(
                    "primary {p:?} is not one of its legs ({})",
                    self.legs.join(", ")
                ));
            }
        }
        check_addresses(&self.addresses)
    }
}

impl TlsConfig {
    fn check(&self) -> Result<(), String> {
        if self.cert.is_some() != self.key.is_some() {
            return Err("[tls] cert and key go together: give both or neither".into());
        }
        for (name, v) in [
            ("handshake_timeout_ms", self.handshake_timeout_ms),
            ("max_sockets_per_client", self.max_sockets_per_client),
            ("max_sockets", self.max_sockets),
        ] {
            if v == Some(0) {
                return Err(format!("[tls] {name} must be at least 1"));
            }
        }
        Ok(())
    }
}

impl Config {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.ports.is_empty() {
            return Err("at least one [[port]] is needed".into());
        }
        let mut names = HashSet::new();
        for p in &self.ports {
            check_name("port", &p.name)?;
            if !names.insert(&p.name) {
                return Err(format!("port {:?} is defined twice", p.name));
            }
            p.check().map_err(|e| format!("port {}: {e}", p.name))?;
        }
        let mut legs_used = HashMap::new();
        for b in &self.bonds {
            check_name("bond", &b.name)?;
            if !names.insert(&b.name) {
                return Err(format!(
                    "bond {:?}: a port or another bond already has that name",
                    b.name
                ));
            }
            b.check(&self.ports, &mut legs_used)
                .map_err(|e| format!("bond {}: {e}", b.name))?;
        }
        self.check_shared_addresses()?;
        self.check_routes()?;
        self.limits.check(self.netsrv.tcp_buffer)?;
        self.tls.check()
    }

    /// Every interface's addresses: (interface, e.g. "port p0", address).
    fn subnets(&self) -> impl Iterator<Item = (String, IpAddr, u8)> + '_ {
        let ports = self.ports.iter().flat_map(|p| {
            p.addresses
                .iter()
                .map(move |a| (format!("port {}", p.name), a))
        });
        let bonds = self.bonds.iter().flat_map(|b| {
            b.addresses
                .iter()
                .map(move |a| (format!("bond {}", b.name), a))
        });
        // Each address was checked with its port or bond.
        ports
            .chain(bonds)
            .filter_map(|(owner, a)| check_cidr(a).ok().map(|(ip, len)| (owner, ip, len)))
    }

    /// An address belongs to one interface: on two, which one answers for
    /// it would depend on where a frame came in.
    fn check_shared_addresses(&self) -> Result<(), String> {
        let mut owners: HashMap<IpAddr, String> = HashMap::new();
        for (owner, ip, _) in self.subnets() {
            if let Some(first) = owners.get(&ip) {
                if *first != owner {
                    return Err(format!("address {ip} is on both {first} and {owner}"));
                }
            }
            owners.insert(ip, owner);
        }
        Ok(())
    }

    fn check_routes(&self) -> Result<(), String> {
        if self.routes.len() > MAX_ROUTES {
            return Err(format!(
                "{} routes: netsrv holds at most {MAX_ROUTES}",
                self.routes.len()
            ));
        }
        let mut seen = HashSet::new();
        for r in &self.routes {
            let (net, len) = route_to(&r.to)?;
            let what = format!("route to {} via {}", r.to, r.via);
            if net.is_ipv4() != r.via.is_ipv4() {
                return Err(format!(
                    "{what}: the destination and the gateway are of different IP versions"
                ));
            }
            if !seen.insert((net, len, r.via)) {
                return Err(format!("{what} is given twice"));
            }
            // netsrv reaches a gateway only on a subnet of its own.
            if !self.subnets().any(|(_, ip, len)| on_subnet(r.via, ip, len)) {
                let subnets: Vec<String> = self
                    .subnets()
                    .filter(|(_, ip, _)| ip.is_ipv4() == r.via.is_ipv4())
                    .map(|(owner, ip, len)| format!("{ip}/{len} on {owner}"))
                    .collect();
                return Err(format!(
                    "{what}: the gateway is on no configured subnet ({})",
                    if subnets.is_empty() {
                        "there is none".to_string()
                    } else {
                        subnets.join(", ")
                    }
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BondMode;

    const TWO_PORTS: &str = "[[port]]\nname='p0'\nbackend='sim'\nwire='w0'\n\
                             [[port]]\nname='p1'\nbackend='sim'\nwire='w1'\n\
                             [[port]]\nname='p2'\nbackend='sim'\nwire='w2'\naddresses=['10.1.0.1/24', 'fd01::1/64']\n";

    fn with_bond(bond: &str) -> Result<Config, String> {
        Config::parse(&format!("{TWO_PORTS}[[bond]]\n{bond}"))
    }

    #[test]
    fn bonds_parse() {
        let c = with_bond(
            "name='b0'\nmode='balance-xor'\nlegs=['p0','p1']\naddresses=['10.0.0.1/24','fd00::1/64']",
        )
        .unwrap();
        let b = &c.bonds[0];
        assert_eq!(b.mode, BondMode::BalanceXor);
        assert_eq!(b.primary, None);
        assert_eq!(b.netsrv_arg(), "b0=balance-xor:p0,p1");
        assert_eq!(b.addresses.len(), 2);
        assert_eq!("active-backup".parse(), Ok(BondMode::ActiveBackup));
        assert!("round-robin"
            .parse::<BondMode>()
            .unwrap_err()
            .contains("active-backup or balance-xor"));
    }

    #[test]
    fn bad_bonds_say_why() {
        let err = |b: &str| with_bond(b).unwrap_err();
        assert!(err("name='b0'\nmode='rr'\nlegs=['p0']").contains("unknown variant"));
        assert!(err("name='b0'\nmode='active-backup'\nlegs=['p0','p9']")
            .contains("leg \"p9\" is not a [[port]]"));
        assert!(err("name='b0'\nmode='active-backup'\nlegs=['p0','p0']").contains("listed twice"));
        assert!(err("name='b0'\nmode='active-backup'\nlegs=['p0','p2']")
            .contains("leg p2 has addresses of its own"));
        assert!(
            err("name='b0'\nmode='active-backup'\nlegs=['p0','p1']\nprimary='p2'")
                .contains("primary \"p2\" is not one of its legs")
        );
        assert!(
            err("name='p1'\nmode='active-backup'\nlegs=['p0']").contains("already has that name")
        );
        assert!(err("name='b0'\nmode='active-backup'\nlegs=[]").contains("at least one leg"));
        assert!(err("name='b 0'\nmode='active-backup'\nlegs=['p0']").contains("bond name"));
        assert!(
            err("name='b0'\nmode='active-backup'\nlegs=['p0']\naddresses=['10.0.0.1']")
                .contains("/prefix")
        );
        assert!(
            err("name='b0'\nmode='active-backup'\nlegs=['p0']\nspeed=1").contains("unknown field")
        );
        let two = Config::parse(&format!(
            "{TWO_PORTS}[[bond]]\nname='b0'\nmode='active-backup'\nlegs=['p0']\n\
             [[bond]]\nname='b1'\nmode='active-backup'\nlegs=['p1','p0']"
        ))
        .unwrap_err();
        assert!(two.contains("leg p0 is already a leg of bond b0"), "{two}");
    }

    #[test]
    fn routes_take_default_or_a_cidr() {
        let route = |to: &str| {
            Config::parse(&format!(
                "{TWO_PORTS}[[route]]\nto='{to}'\nvia='10.1.0.254'"
            ))
        };
        Config::parse(&format!(
            "{TWO_PORTS}[[route]]\nto='default6'\nvia='fd01::fe'\n[[route]]\nto='fd09::/48'\nvia='fd01::fe'"
        ))
        .unwrap();
        route("default").unwrap();
        route("10.9.0.0/16").unwrap();
        route("fd09::/48").unwrap_err();
        assert!(route("10.9.0.0")
            .unwrap_err()
            .contains("\"default\" or a CIDR"));
        assert!(route("10.9.0.0/40")
            .unwrap_err()
            .contains("prefix too long"));
        assert!(route("somewhere").unwrap_err().contains("route to"));
    }

    #[test]
    fn bad_configs_say_why() {
        let err = |t: &str| Config::parse(t).unwrap_err();
        assert!(err("").contains("at least one"));
        assert!(err("[[port]]\nname='a'\nbackend='sim'").contains("needs `wire`"));
        assert!(err("[[port]]\nname='a'\nbackend='tap'").contains("needs `tap`"));
        assert!(err("[[port]]\nname='a'\nbackend='warp'\nwire='w'").contains("unknown variant"));
        assert!(
            err("[[port]]\nname='a'\nbackend='sim'\nwire='w'\naddresses=['10.0.0.1']")
                .contains("/prefix")
        );
        assert!(err("[[port]]\nname='a'\nbackend='sim'\nwire='w'\nmtu=100").contains("mtu"));
        assert!(
            err("[[port]]\nname='a'\nbackend='sim'\nwire='w'\n[port.faults]\nloss=200.0")
                .contains("percentage")
        );
        assert!(
            err("[[port]]\nname='a'\nbackend='sim'\nwire='w'\nbogus=1").contains("unknown field")
        );
        assert!(err("[[port]]\nname='a'\nbackend='sim'\nwire='w'\n[[port]]\nname='a'\nbackend='sim'\nwire='w'").contains("twice"));
    }

    #[test]
    fn a_pool_over_4_gib_is_refused() {
        let port = |b: u32, mtu: u32| {
            Config::parse(&format!(
                "[[port]]\nname='a'\nbackend='sim'\nwire='w'\nbuffers={b}\nmtu={mtu}"
            ))
        };
        port(32768, 9000).unwrap();
        let e = port(65536, 65535).unwrap_err();
        assert!(e.contains("must stay under 4 GiB"), "{e}");
        // A buffer holds a merged frame with segmentation offload.
        let e = port(65536, 1500).unwrap_err();
        assert!(e.contains("segmentation offload"), "{e}");
        Config::parse(
            "[[port]]\nname='a'\nbackend='sim'\nwire='w'\nbuffers=65536\nmtu=9000\nsegmentation=false",
        )
        .unwrap();
    }

    #[test]
    fn percent_to_ppm() {
        assert_eq!(ppm("loss", 2.0).unwrap(), 20_000);
        assert!(ppm("loss", -1.0).is_err());
        assert!(ppm("loss", f64::NAN).is_err());
    }

    fn port(extra: &str) -> Result<Config, String> {
        Config::parse(&format!(
            "[[port]]\nname='sim0'\nbackend='sim'\nwire='w'\n{extra}"
        ))
    }

    #[test]
    fn a_bad_mac_is_named_with_its_port() {
        port("mac='02:00:00:00:00:01'").unwrap();
        let e = port("mac='zz'").unwrap_err();
        assert!(
            e.starts_with("port sim0: mac \"zz\": expected six hex octets"),
            "{e}"
        );
        let e = port("mac='01:00:5e:00:00:01'").unwrap_err();
        assert!(
            e.contains("port sim0: mac") && e.contains("multicast"),
            "{e}"
        );
    }

    #[test]
    fn a_route_needs_a_gateway_on_a_configured_subnet() {
        let e = Config::parse(&format!(
            "{TWO_PORTS}[[route]]\nto='default'\nvia='192.168.9.1'"
        ))
        .unwrap_err();
        assert_eq!(
            e,
            "route to default via 192.168.9.1: the gateway is on no configured subnet \
             (10.1.0.1/24 on port p2)"
        );
        // A bond's subnet counts.
        with_bond(
            "name='b0'\nmode='active-backup'\nlegs=['p0']\naddresses=['10.2.0.1/16']\n\
                   [[route]]\nto='10.9.0.0/16'\nvia='10.2.200.1'",
        )
        .unwrap();
        let e = port("[[route]]\nto='default'\nvia='10.0.0.254'").unwrap_err();
        assert!(e.ends_with("(there is none)"), "{e}");
        let e = Config::parse(&format!(
            "{TWO_PORTS}[[route]]\nto='default6'\nvia='10.1.0.254'"
        ))
        .unwrap_err();
        assert!(e.contains("different IP versions"), "{e}");
        let e = Config::parse(&format!(
            "{TWO_PORTS}[[route]]\nto='10.9.0.0/16'\nvia='10.1.0.254'\n\
             [[route]]\nto='10.9.0.0/16'\nvia='10.1.0.254'"
        ))
        .unwrap_err();
        assert!(
            e.contains("route to 10.9.0.0/16 via 10.1.0.254 is given twice"),
            "{e}"
        );
        let many: String = (0..17)
            .map(|i| format!("[[route]]\nto='10.{i}.0.0/16'\nvia='10.1.0.254'\n"))
            .collect();
        let e = Config::parse(&format!("{TWO_PORTS}{many}")).unwrap_err();
        assert!(e.contains("17 routes: netsrv holds at most 16"), "{e}");
    }

    #[test]
    fn an_address_belongs_to_one_interface() {
        let e = Config::parse(&format!(
            "{TWO_PORTS}[[port]]\nname='p3'\nbackend='sim'\nwire='w3'\naddresses=['10.1.0.1/16']"
        ))
        .unwrap_err();
        assert_eq!(e, "address 10.1.0.1 is on both port p2 and port p3");
        let e = with_bond("name='b0'\nmode='active-backup'\nlegs=['p0']\naddresses=['fd01::1/64']")
            .unwrap_err();
        assert_eq!(e, "address fd01::1 is on both port p2 and bond b0");
        let e = port("addresses=['10.0.0.1/24', '10.0.0.1/16']").unwrap_err();
        assert_eq!(e, "port sim0: address 10.0.0.1 is given twice");
        let five: Vec<String> = (1..=5).map(|i| format!("'10.0.{i}.1/24'")).collect();
        let e = port(&format!("addresses=[{}]", five.join(","))).unwrap_err();
        assert!(
            e.contains("port sim0: 5 addresses: an interface holds at most 4"),
            "{e}"
        );
        for bad in ["0.0.0.0/0", "224.0.0.1/4", "ff02::1/16"] {
            let e = port(&format!("addresses=['{bad}']")).unwrap_err();
            assert!(e.contains("not an address of one host"), "{bad}: {e}");
        }
    }

    #[test]
    fn what_the_drivers_would_refuse_is_refused_first() {
        let tap = |extra: &str| {
            Config::parse(&format!(
                "[[port]]\nname='t0'\nbackend='tap'\ntap='tap0'\n{extra}"
            ))
        };
        tap("netns='ns1'").unwrap();
        let e = tap("wire='w'").unwrap_err();
        assert!(e.contains("port t0: `wire` belongs to a sim port"), "{e}");
        let e = port("tap='tap0'").unwrap_err();
        assert!(
            e.contains("port sim0: `tap` and `netns` belong to a tap port"),
            "{e}"
        );
        let e = Config::parse("[[port]]\nname='t0'\nbackend='tap'\ntap='a-very-long-tap-name'")
            .unwrap_err();
        assert!(
            e.contains("port t0: tap \"a-very-long-tap-name\": an interface name"),
            "{e}"
        );
        let e = tap("netns='../x'").unwrap_err();
        assert!(e.contains("port t0: netns \"../x\""), "{e}");
        let e = port("segmentation=true\nchecksum_offload=false").unwrap_err();
        assert!(e.contains("segmentation needs checksum_offload"), "{e}");
        port("segmentation=false\nchecksum_offload=false").unwrap();
        let e = port("tls_offload=true\nchecksum_offload=false").unwrap_err();
        assert!(
            e.contains("port sim0: tls_offload needs checksum_offload"),
            "{e}"
        );
        let mut legs: Vec<String> = Vec::new();
        let mut ports = String::new();
        for i in 0..65 {
            ports += &format!("[[port]]\nname='p{i}'\nbackend='sim'\nwire='w{i}'\n");
            legs.push(format!("'p{i}'"));
        }
        let e = Config::parse(&format!(
            "{ports}[[bond]]\nname='b0'\nmode='balance-xor'\nlegs=[{}]",
            legs.join(",")
        ))
        .unwrap_err();
        assert!(e.contains("bond b0: 65 legs: a bond has at most 64"), "{e}");
    }

    #[test]
    fn what_tlsd_would_refuse_is_refused_first() {
        let e = port("[tls]\ncert='c.pem'").unwrap_err();
        assert!(e.contains("[tls] cert and key go together"), "{e}");
        let e = port("[tls]\nmax_sockets=0").unwrap_err();
        assert!(e.contains("[tls] max_sockets must be at least 1"), "{e}");
    }
}
