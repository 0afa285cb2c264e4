//! The service set's configuration (TOML).

use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The configuration `capnet up` uses without `--config`.
pub const DEFAULT: &str = include_str!("default.toml");

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, rename = "port")]
    pub ports: Vec<Port>,
    #[serde(default, rename = "route")]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub netsrv: NetsrvConfig,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetsrvConfig {
    pub tcp_buffer: Option<usize>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sim,
    Tap,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    pub name: String,
    pub backend: Backend,
    pub wire: Option<PathBuf>,
    pub tap: Option<String>,
    pub netns: Option<String>,
    pub mac: Option<String>,
    pub mtu: Option<u32>,
    #[serde(default)]
    pub addresses: Vec<String>,
    pub pcap: Option<PathBuf>,
    pub checksum_offload: Option<bool>,
    pub buffers: Option<u32>,
    #[serde(default)]
    pub faults: Faults,
}

/// Fault injection in percent.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    #[serde(default)]
    pub loss: f64,
    #[serde(default)]
    pub reorder: f64,
    #[serde(default)]
    pub duplicate: f64,
    #[serde(default)]
    pub corrupt: f64,
    pub seed: Option<u64>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub to: String,
    pub via: IpAddr,
}

/// Percent to parts per million, checked.
pub fn ppm(what: &str, percent: f64) -> Result<u32, String> {
    if !(0.0..=100.0).contains(&percent) || percent.is_nan() {
        return Err(format!(
            "{what} must be a percentage from 0 to 100, not {percent}"
        ));
    }
    Ok((percent * 10_000.0).round() as u32)
}

impl Config {
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.check()?;
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Config::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn check(&self) -> Result<(), String> {
        if self.ports.is_empty() {
            return Err("at least one [[port]] is needed".into());
        }
        let mut names = std::collections::HashSet::new();
        for p in &self.ports {
            if p.name.is_empty()
                || !p
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "port name {:?}: use letters, digits, - and _",
                    p.name
                ));
            }
            if !names.insert(&p.name) {
                return Err(format!("port {:?} is defined twice", p.name));
            }
            match p.backend {
                Backend::Sim if p.wire.is_none() => {
                    return Err(format!("port {}: a sim port needs `wire`", p.name))
                }
                Backend::Tap if p.tap.is_none() => {
                    return Err(format!("port {}: a tap port needs `tap`", p.name))
                }
                _ => {}
            }
            for a in &p.addresses {
                let (ip, len) = a
                    .split_once('/')
                    .ok_or_else(|| format!("port {}: address {a:?} needs a /prefix", p.name))?;
                let ip: IpAddr = ip
                    .parse()
                    .map_err(|e| format!("port {}: address {a:?}: {e}", p.name))?;
                let len: u8 = len
                    .parse()
                    .map_err(|e| format!("port {}: address {a:?}: {e}", p.name))?;
                if len > if ip.is_ipv4() { 32 } else { 128 } {
                    return Err(format!("port {}: address {a:?}: prefix too long", p.name));
                }
            }
            if let Some(mtu) = p.mtu {
                if !(576..=65535).contains(&mtu) {
                    return Err(format!("port {}: mtu {mtu} outside 576..=65535", p.name));
                }
            }
            if let Some(b) = p.buffers {
                if !b.is_power_of_two() || !(8..=65536).contains(&b) {
                    return Err(format!(
                        "port {}: buffers must be a power of two from 8 to 65536",
                        p.name
                    ));
                }
            }
            for (what, v) in [
                ("loss", p.faults.loss),
                ("reorder", p.faults.reorder),
                ("duplicate", p.faults.duplicate),
                ("corrupt", p.faults.corrupt),
            ] {
                ppm(what, v).map_err(|e| format!("port {}: {e}", p.name))?;
            }
        }
        for r in &self.routes {
            if r.to != "default" && r.to != "default6" {
                return Err(format!(
                    "route to {:?}: only \"default\" and \"default6\" are supported",
                    r.to
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_and_example_parse() {
        let c = Config::parse(DEFAULT).unwrap();
        assert_eq!(c.ports[0].backend, Backend::Sim);
        Config::parse(include_str!("../../examples/capnet.toml")).unwrap();
        Config::parse(include_str!("../../examples/host-b.toml")).unwrap();
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
    fn percent_to_ppm() {
        assert_eq!(ppm("loss", 2.0).unwrap(), 20_000);
        assert!(ppm("loss", -1.0).is_err());
        assert!(ppm("loss", f64::NAN).is_err());
    }
}
