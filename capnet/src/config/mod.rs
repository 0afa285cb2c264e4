//! The service set's configuration (TOML).

use capnet_schema::access::Principals;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

mod check;
pub use check::{check_cidr, check_route_to, ppm};

/// The configuration `capnet up` uses without `--config`.
pub const DEFAULT: &str = include_str!("../default.toml");

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, rename = "port")]
    pub ports: Vec<Port>,
    #[serde(default, rename = "bond")]
    pub bonds: Vec<Bond>,
    #[serde(default, rename = "route")]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub netsrv: NetsrvConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub supervisor: SupervisorConfig,
    #[serde(default)]
    pub access: AccessConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
}

/// How the supervisor keeps the set alive.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorConfig {
    /// A service that does not answer the supervisor's ping within this
    /// many milliseconds is killed and restarted (0: never). Default 10000.
    pub watchdog_ms: Option<u64>,
    /// Started as root, each service becomes its own unprivileged user
    /// once it has opened what needs root. Default true.
    pub separate_users: Option<bool>,
    /// netsrv's uid (and gid); tlsd's is the next, every driver's the one
    /// after. Default [`Self::DEFAULT_UID_BASE`].
    pub uid_base: Option<u32>,
}

/// The users the services become when the set starts as root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceUsers {
    pub netsrv: capnet_confine::User,
    pub tlsd: capnet_confine::User,
    pub nicdrv: capnet_confine::User,
}

impl SupervisorConfig {
    pub const DEFAULT_WATCHDOG_MS: u64 = 10_000;
    /// 0x70000000: above the ranges that systemd hands to login users,
    /// dynamic users and containers, so no account owns these ids.
    pub const DEFAULT_UID_BASE: u32 = 0x7000_0000;

    /// The services' users for a set started by `owner_uid`: separate
    /// ones only when that is root (another user cannot change uid).
    pub fn service_users(&self, owner_uid: u32) -> Result<Option<ServiceUsers>, String> {
        if owner_uid != 0 || !self.separate_users.unwrap_or(true) {
            return Ok(None);
        }
        let base = self.uid_base.unwrap_or(Self::DEFAULT_UID_BASE);
        let id = |k: u32| {
            base.checked_add(k)
                .filter(|&id| id != 0 && id < u32::MAX - 1)
                .map(|id| capnet_confine::User { uid: id, gid: id })
                .ok_or_else(|| {
                    format!("[supervisor] uid_base {base} leaves no room for three uids")
                })
        };
        Ok(Some(ServiceUsers {
            netsrv: id(0)?,
            tlsd: id(1)?,
            nicdrv: id(2)?,
        }))
    }

    pub fn watchdog(&self) -> Option<std::time::Duration> {
        match self.watchdog_ms.unwrap_or(Self::DEFAULT_WATCHDOG_MS) {
            0 => None,
            ms => Some(std::time::Duration::from_millis(ms)),
        }
    }
}

/// Who may do what, judged on each peer's credentials (SO_PEERCRED). Each
/// list holds `"*"` (every local user), `"owner"` (the user running the
/// set), user ids (`1000`) and groups (`"@netdev"`, `"@27"`). Root may
/// always do everything.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// May use the network (capnet.sock, tls.sock). Default: everyone.
    #[serde(default = "everyone")]
    pub network: Vec<User>,
    /// May bind TCP and UDP ports below 1024. Default: the owner.
    #[serde(default = "owner")]
    pub low_ports: Vec<User>,
    /// May administer the set over admin.sock (routes, bonds, faults,
    /// links, down). Default: the owner.
    #[serde(default = "owner")]
    pub admin: Vec<User>,
}

/// One entry of an [`AccessConfig`] list: a user id, or a name.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum User {
    Id(u32),
    Name(String),
}

impl AccessConfig {
    /// The three lists with names resolved: `owner` is `owner_uid`.
    pub fn resolve(&self, owner_uid: u32) -> Result<Access, String> {
        let one = |what: &str, list: &[User]| {
            resolve_users(list, owner_uid).map_err(|e| format!("[access] {what}: {e}"))
        };
        Ok(Access {
            network: one("network", &self.network)?,
            low_ports: one("low_ports", &self.low_ports)?,
            admin: one("admin", &self.admin)?,
        })
    }
}

/// [`AccessConfig`] with every name resolved to ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub network: Principals,
    pub low_ports: Principals,
    pub admin: Principals,
}

fn resolve_users(list: &[User], owner_uid: u32) -> Result<Principals, String> {
    let mut p = Principals::root_only();
    for item in list {
        let item = match item {
            User::Id(uid) => {
                p.add_uid(*uid);
                continue;
            }
            User::Name(name) => name.trim(),
        };
        match item {
            "*" => p.add_everyone(),
            "owner" => p.add_uid(owner_uid),
            _ => match item.strip_prefix('@') {
                Some(g) => p.add_gid(match g.parse() {
                    Ok(gid) => gid,
                    Err(_) => crate::users::group_id(g)?,
                }),
                None => p.add_uid(match item.parse() {
                    Ok(uid) => uid,
                    Err(_) => crate::users::user_id(item)?,
                }),
            },
        }
    }
    Ok(p)
}

fn everyone() -> Vec<User> {
    vec![User::Name("*".into())]
}

fn owner() -> Vec<User> {
    vec![User::Name("owner".into())]
}

impl Default for AccessConfig {
    fn default() -> AccessConfig {
        AccessConfig {
            network: everyone(),
            low_ports: owner(),
            admin: owner(),
        }
    }
}

/// What one client of netsrv (one connection) and one user (a uid, over
/// all its connections) may hold; see examples/capnet.toml. Unset values
/// keep netsrv's defaults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub sockets: Option<usize>,
    pub buffer_bytes: Option<usize>,
    pub socket_buffer_max: Option<usize>,
    pub subscriptions: Option<usize>,
    pub calls: Option<usize>,
    pub user_sockets: Option<usize>,
    pub user_buffer_bytes: Option<usize>,
    pub user_subscriptions: Option<usize>,
    pub user_calls: Option<usize>,
    pub connections_per_user: Option<usize>,
}

/// The largest socket buffer a client may ask for: a socket's whole send
/// buffer can travel in one message (`offloadStop`), and services read
/// messages of at most 4 MiB.
pub const SOCKET_BUFFER_CEILING: usize = 2 << 20;

impl LimitsConfig {
    fn settings(&self) -> [(&'static str, Option<usize>); 10] {
        [
            ("sockets", self.sockets),
            ("buffer_bytes", self.buffer_bytes),
            ("socket_buffer_max", self.socket_buffer_max),
            ("subscriptions", self.subscriptions),
            ("calls", self.calls),
            ("user_sockets", self.user_sockets),
            ("user_buffer_bytes", self.user_buffer_bytes),
            ("user_subscriptions", self.user_subscriptions),
            ("user_calls", self.user_calls),
            ("connections_per_user", self.connections_per_user),
        ]
    }

    /// netsrv's `--limit NAME=N` arguments for the values set.
    pub fn netsrv_args(&self) -> Vec<String> {
        self.settings()
            .into_iter()
            .filter_map(|(name, v)| v.map(|v| ["--limit".to_string(), format!("{name}={v}")]))
            .flatten()
            .collect()
    }

    fn check(&self, tcp_buffer: Option<usize>) -> Result<(), String> {
        for (name, v) in self.settings() {
            if v == Some(0) {
                return Err(format!("[limits] {name} must be at least 1"));
            }
        }
        let max = self.socket_buffer_max.unwrap_or(SOCKET_BUFFER_CEILING);
        if max > SOCKET_BUFFER_CEILING {
            return Err(format!(
                "[limits] socket_buffer_max {max} is over {SOCKET_BUFFER_CEILING} bytes, the \
                 most a socket's send buffer may hold (it must fit in one message)"
            ));
        }
        if let Some(b) = tcp_buffer.filter(|b| *b > max) {
            return Err(format!(
                "[netsrv] tcp_buffer {b} is over [limits] socket_buffer_max ({max})"
            ));
        }
        Ok(())
    }
}

/// tlsd's certificates and keys: only tlsd ever reads these files.
/// Relative paths are taken from the directory `capnet up` runs in.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server certificate chain (PEM, leaf first) and its key.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Trust anchors for the servers tlsd connects to (PEM bundle).
    pub roots: Option<PathBuf>,
    /// NSS key log for Wireshark/tshark: debugging only, off by default.
    pub keylog: Option<PathBuf>,
    /// A handshake not done within this many milliseconds is closed
    /// (default 10000).
    pub handshake_timeout_ms: Option<u64>,
    /// TLS sockets (connections, listeners) one user may hold (default 256).
    pub max_sockets_per_client: Option<u64>,
    /// TLS sockets tlsd holds in all (default 1024).
    pub max_sockets: Option<u64>,
}

impl TlsConfig {
    /// tlsd's arguments for the limits set.
    pub fn limit_args(&self) -> Vec<String> {
        [
            ("--handshake-timeout-ms", self.handshake_timeout_ms),
            ("--max-sockets-per-client", self.max_sockets_per_client),
            ("--max-sockets", self.max_sockets),
        ]
        .into_iter()
        .filter_map(|(flag, v)| v.map(|v| [flag.to_string(), v.to_string()]))
        .flatten()
        .collect()
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetsrvConfig {
    pub tcp_buffer: Option<usize>,
    /// "cubic" (the default, RFC 9438 with HyStart++) or "newreno" (RFC
    /// 5681/6582; "reno" is read as it).
    pub congestion_control: Option<CongestionControl>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CongestionControl {
    Cubic,
    #[serde(alias = "reno")]
    Newreno,
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
    /// TCP segmentation offload between netsrv and the port's driver (TSO
    /// and GRO); on unless false or checksum offload is off.
    pub segmentation: Option<bool>,
    /// The port's NIC seals and opens TLS records (kTLS device offload);
    /// needs checksum offload.
    #[serde(default)]
    pub tls_offload: bool,
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

/// How a bond uses its legs.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BondMode {
    /// One leg carries traffic; another takes over when it fails.
    ActiveBackup,
    /// Flows spread over the live legs by a layer3+4 hash.
    BalanceXor,
}

impl BondMode {
    /// The name on netsrv's command line and in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            BondMode::ActiveBackup => "active-backup",
            BondMode::BalanceXor => "balance-xor",
        }
    }
}

impl std::str::FromStr for BondMode {
    type Err = String;
    fn from_str(s: &str) -> Result<BondMode, String> {
        match s {
            "active-backup" => Ok(BondMode::ActiveBackup),
            "balance-xor" => Ok(BondMode::BalanceXor),
            other => Err(format!(
                "bond mode {other:?}: use active-backup or balance-xor"
            )),
        }
    }
}

impl std::fmt::Display for BondMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bond {
    pub name: String,
    pub mode: BondMode,
    /// Free ports (no addresses of their own, in no other bond).
    pub legs: Vec<String>,
    /// active-backup: the preferred leg.
    pub primary: Option<String>,
    #[serde(default)]
    pub addresses: Vec<String>,
}

impl Bond {
    /// `NAME=MODE:LEG,LEG[:PRIMARY]`, as netsrv's `--bond` takes it.
    pub fn netsrv_arg(&self) -> String {
        let mut s = format!("{}={}:{}", self.name, self.mode, self.legs.join(","));
        if let Some(p) = &self.primary {
            s.push(':');
            s.push_str(p);
        }
        s
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub to: String,
    pub via: IpAddr,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_limits_reach_tlsd() {
        let c = Config::parse(include_str!("../../../examples/tls-a.toml")).unwrap();
        assert_eq!(
            c.tls.limit_args().join(" "),
            "--handshake-timeout-ms 10000 --max-sockets-per-client 256 --max-sockets 1024"
        );
    }

    #[test]
    fn access_lists_resolve_names_ids_and_the_owner() {
        let c = Config::parse(
            "[access]\nnetwork = [\"owner\", 1000, \"@0\", \"root\"]\nadmin = []\n\
             [[port]]\nname = \"p\"\nbackend = \"sim\"\nwire = \"w\"\n",
        )
        .unwrap();
        let a = c.access.resolve(4242).unwrap();
        assert_eq!(a.network.to_string(), "4242,1000,0,@0");
        assert_eq!(a.low_ports.to_string(), "4242");
        assert_eq!(a.admin, Principals::root_only());
        let c = Config::parse(
            "[access]\nlow_ports = [\"no-such-user-capnet\"]\n\
             [[port]]\nname = \"p\"\nbackend = \"sim\"\nwire = \"w\"\n",
        )
        .unwrap();
        let e = c.access.resolve(1).unwrap_err();
        assert!(
            e.contains("[access] low_ports") && e.contains("no user"),
            "{e}"
        );
    }

    #[test]
    fn embedded_default_and_example_parse() {
        let c = Config::parse(DEFAULT).unwrap();
        assert_eq!(c.ports[0].backend, Backend::Sim);
        Config::parse(include_str!("../../../examples/capnet.toml")).unwrap();
        Config::parse(include_str!("../../../examples/host-b.toml")).unwrap();
        for text in [
            include_str!("../../../examples/bond-a.toml"),
            include_str!("../../../examples/bond-b.toml"),
        ] {
            let c = Config::parse(text).unwrap();
            assert_eq!(c.bonds.len(), 1);
            assert_eq!(c.bonds[0].mode, BondMode::ActiveBackup);
            assert_eq!(c.bonds[0].netsrv_arg(), "bond0=active-backup:p0,p1:p0");
        }
    }

    #[test]
    fn limits_parse_check_and_reach_netsrv() {
        let port = "[[port]]\nname='a'\nbackend='sim'\nwire='w'\n";
        let c = Config::parse(&format!("{port}[limits]\nsockets=8\nuser_calls=16")).unwrap();
        assert_eq!(
            c.limits.netsrv_args(),
            ["--limit", "sockets=8", "--limit", "user_calls=16"]
        );
        assert!(Config::parse(port).unwrap().limits.netsrv_args().is_empty());
        let err = |t: &str| Config::parse(&format!("{port}{t}")).unwrap_err();
        assert!(err("[limits]\nsockets=0").contains("sockets must be at least 1"));
        assert!(err("[limits]\nsocket_buffer_max=16777216").contains("fit in one message"));
        assert!(err("[limits]\nfds=3").contains("unknown field"));
        assert!(err("[netsrv]\ntcp_buffer=4194304").contains("over [limits] socket_buffer_max"));
    }
}
