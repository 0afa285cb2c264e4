//! Command line of the tlsd process (normally written by the supervisor).

use crate::identity::IdentityConfig;
use crate::limits::Limits;
use capnet_schema::access::Principals;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Args {
    /// The service socket applications connect to (`tls.sock`).
    pub listen: PathBuf,
    /// netsrv's socket for tlsd (its trusted one, under a supervisor): tlsd
    /// makes its TCP connections there.
    pub net: PathBuf,
    pub identity: IdentityConfig,
    /// Who may use TLS at all (default: everyone).
    pub allow_network: Principals,
    /// Who may listen on ports below 1024 (default: root only): netsrv
    /// trusts tlsd with any port, so tlsd judges this for its clients.
    pub allow_low_ports: Principals,
    pub limits: Limits,
    /// The user to become once the keys are read and the socket is bound.
    pub user: Option<capnet_confine::User>,
    /// An inherited socket to the supervisor, which pings tlsd on it (its
    /// watchdog) and asks for its counters.
    pub admin_fd: Option<i32>,
}

impl PartialEq for IdentityConfig {
    fn eq(&self, o: &Self) -> bool {
        self.cert == o.cert && self.key == o.key && self.roots == o.roots && self.keylog == o.keylog
    }
}

impl Eq for IdentityConfig {}

pub const USAGE: &str =
    "usage: tlsd --listen PATH --net PATH [--cert PEM --key PEM] [--roots PEM] [--keylog FILE]
            [--handshake-timeout-ms MS] [--max-sockets N] [--max-sockets-per-client N]
            [--handshake-workers N] [--allow-network USERS] [--allow-low-ports USERS]
            [--admin-fd N] [--user UID:GID]
            (USERS: `*`, uids and @gids, comma-separated; root always may)";

/// A count of at least 1.
fn count(flag: &str, v: Option<String>) -> Result<usize, String> {
    let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
    match v.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{flag}: {v:?} is not a number of at least 1")),
    }
}

pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut listen = None;
    let mut net = None;
    let mut id = IdentityConfig::default();
    let mut allow_network = Principals::everyone();
    let mut allow_low_ports = Principals::root_only();
    let mut limits = Limits::default();
    let mut user = None;
    let mut admin_fd = None;
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--handshake-timeout-ms" => {
                let ms = count(&flag, args.next())?;
                limits.handshake_timeout = Duration::from_millis(ms as u64);
                continue;
            }
            "--max-sockets" => {
                limits.sockets = count(&flag, args.next())?;
                continue;
            }
            "--max-sockets-per-client" => {
                limits.sockets_per_client = count(&flag, args.next())?;
                continue;
            }
            "--handshake-workers" => {
                limits.handshake_workers = count(&flag, args.next())?;
                continue;
            }
            "--user" => {
                let v = args.next().ok_or("--user needs a value")?;
                user = Some(capnet_confine::User::parse(&v)?);
                continue;
            }
            "--admin-fd" => {
                let v = args.next().ok_or("--admin-fd needs a value")?;
                match v.parse::<i32>() {
                    // 0 to 2 are stdio: never the supervisor's socket.
                    Ok(fd) if fd > 2 => admin_fd = Some(fd),
                    _ => return Err(format!("--admin-fd: {v:?} is not a descriptor number")),
                }
                continue;
            }
            _ => {}
        }
        let mut value = |name: &str| {
            args.next()
                .map(PathBuf::from)
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--listen" => listen = Some(value("--listen")?),
            "--net" => net = Some(value("--net")?),
            "--cert" => id.cert = Some(value("--cert")?),
            "--key" => id.key = Some(value("--key")?),
            "--roots" => id.roots = Some(value("--roots")?),
            "--keylog" => id.keylog = Some(value("--keylog")?),
            "--allow-network" | "--allow-low-ports" => {
                let v = value(&flag)?;
                let users =
                    Principals::parse(&v.to_string_lossy()).map_err(|e| format!("{flag}: {e}"))?;
                if flag == "--allow-network" {
                    allow_network = users;
                } else {
                    allow_low_ports = users;
                }
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if id.cert.is_some() != id.key.is_some() {
        return Err("--cert and --key go together".into());
    }
    Ok(Args {
        listen: listen.ok_or_else(|| format!("--listen is required\n{USAGE}"))?,
        net: net.ok_or_else(|| format!("--net is required\n{USAGE}"))?,
        identity: id,
        allow_network,
        allow_low_ports,
        limits,
        user,
        admin_fd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Args, String> {
        parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn parses_and_refuses() {
        let a = p("--listen /r/tls.sock --net /r/net.sock --cert c.pem --key k.pem --keylog kl")
            .unwrap();
        assert_eq!(a.listen, PathBuf::from("/r/tls.sock"));
        assert_eq!(a.identity.keylog, Some(PathBuf::from("kl")));
        assert!(p("--net x").unwrap_err().contains("--listen"));
        assert!(p("--listen x --net y --cert c")
            .unwrap_err()
            .contains("together"));
        assert!(p("--listen x --net y --bogus")
            .unwrap_err()
            .contains("unknown"));
        assert!(p("--listen").unwrap_err().contains("value"));
        assert_eq!(
            p("--listen x --net y --admin-fd 7").unwrap().admin_fd,
            Some(7)
        );
        assert_eq!(p("--listen x --net y").unwrap().admin_fd, None);
        assert!(p("--listen x --net y --admin-fd 1")
            .unwrap_err()
            .contains("descriptor"));
    }

    #[test]
    fn limits_default_and_parse() {
        let a = p("--listen x --net y").unwrap();
        assert_eq!(a.limits, Limits::default());
        assert_eq!(a.limits.handshake_timeout, Duration::from_secs(10));
        let a = p(
            "--listen x --net y --handshake-timeout-ms 1500 --max-sockets 9 \
                   --max-sockets-per-client 3 --handshake-workers 4",
        )
        .unwrap();
        assert_eq!(
            a.limits,
            Limits {
                sockets_per_client: 3,
                sockets: 9,
                handshake_timeout: Duration::from_millis(1500),
                handshake_workers: 4,
            }
        );
        assert!(p("--listen x --net y --max-sockets 0")
            .unwrap_err()
            .contains("at least 1"));
        assert!(p("--listen x --net y --handshake-timeout-ms soon")
            .unwrap_err()
            .contains("not a number"));
    }
}
