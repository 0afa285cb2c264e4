//! Command line of the netsrv process (normally written by the supervisor).

use crate::addr::parse_cidr;
use crate::limits::Limits;
use crate::link::Mode;
use capnet_schema::access::Principals;
use capnet_tcpip::Cidr;
use std::net::IpAddr;
use std::path::PathBuf;

/// Where a port's `Nic` capability comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NicSource {
    /// Inherited sockets: capnp, and the handoff side channel.
    Fds { rpc: i32, handoff: i32 },
    /// A nicdrv `--listen` socket.
    Path(PathBuf),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortArg {
    pub name: String,
    pub source: NicSource,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BondArg {
    pub name: String,
    pub mode: Mode,
    pub legs: Vec<String>,
    pub primary: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Args {
    pub ports: Vec<PortArg>,
    pub bonds: Vec<BondArg>,
    /// (port or bond name, address)
    pub addresses: Vec<(String, Cidr)>,
    /// (destination, gateway)
    pub routes: Vec<(Cidr, IpAddr)>,
    pub listen: Option<PathBuf>,
    pub rpc_fds: Vec<i32>,
    pub admin_fds: Vec<i32>,
    pub attach_fd: Option<i32>,
    pub tcp_buffer: usize,
    /// TCP congestion control (`--congestion-control cubic|newreno`).
    pub congestion: capnet_tcpip::tcp::cc::Algorithm,
    /// What one client (and one user) may hold.
    pub limits: Limits,
    /// Who may use the socket service at all (default: everyone).
    pub allow_network: Principals,
    /// Who may bind ports below 1024 (default: root only).
    pub allow_low_ports: Principals,
    /// The user to become once the sockets are bound (started as root).
    pub user: Option<capnet_confine::User>,
    /// tlsd's socket: only `trusted_uid` may connect, and it is served as
    /// a trusted peer (tlsd judges and limits its own clients).
    pub trusted_listen: Option<PathBuf>,
    pub trusted_uid: Option<u32>,
}

pub const USAGE: &str = "usage: netsrv --port NAME=fd:RPC,HANDOFF | --port NAME=path:SOCKET ...
              [--bond NAME=MODE:LEG,LEG[:PRIMARY]]... (MODE: active-backup | balance-xor)
              [--address NAME=CIDR]... [--route default|CIDR=GATEWAY]...
              [--listen PATH] [--rpc-fd N]... [--admin-fd N]... [--attach-fd N]
              [--tcp-buffer BYTES] [--congestion-control cubic|newreno]
              [--limit NAME=N]... (NAME: a setting of [limits] in the capnet configuration)
              [--allow-network USERS] [--allow-low-ports USERS]
              (USERS: `*`, uids and @gids, comma-separated; root always may)
              [--trusted-listen PATH --trusted-uid UID] [--user UID:GID]";

pub fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        tcp_buffer: 64 * 1024,
        congestion: Default::default(),
        allow_network: Principals::everyone(),
        ..Args::default()
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => args.ports.push(parse_port(&value()?)?),
            "--bond" => args.bonds.push(parse_bond(&value()?)?),
            "--admin-fd" => args.admin_fds.push(parse_num(&flag, &value()?)?),
            "--attach-fd" => args.attach_fd = Some(parse_num(&flag, &value()?)?),
            "--address" => {
                let v = value()?;
                let (name, cidr) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--address {v:?}: expected NAME=CIDR"))?;
                args.addresses.push((name.to_string(), parse_cidr(cidr)?));
            }
            "--route" => {
                let v = value()?;
                let (dst, gw) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--route {v:?}: expected CIDR=GATEWAY"))?;
                let dst = match dst {
                    "default" => parse_cidr("0.0.0.0/0")?,
                    "default6" => parse_cidr("::/0")?,
                    other => parse_cidr(other)?,
                };
                let gw: std::net::IpAddr = gw
                    .parse()
                    .map_err(|e| format!("--route gateway {gw:?}: {e}"))?;
                args.routes.push((dst, gw));
            }
            "--listen" => args.listen = Some(PathBuf::from(value()?)),
            "--trusted-listen" => args.trusted_listen = Some(PathBuf::from(value()?)),
            "--trusted-uid" => args.trusted_uid = Some(parse_num(&flag, &value()?)?),
            "--user" => args.user = Some(capnet_confine::User::parse(&value()?)?),
            "--rpc-fd" => args.rpc_fds.push(parse_num(&flag, &value()?)?),
            "--tcp-buffer" => args.tcp_buffer = parse_num(&flag, &value()?)?,
            "--congestion-control" => {
                let v = value()?;
                args.congestion = v
                    .parse()
                    .map_err(|_| format!("--congestion-control {v:?}: use cubic or newreno"))?;
            }
            "--limit" => parse_limit(&mut args.limits, &value()?)?,
            "--allow-network" => {
                args.allow_network =
                    Principals::parse(&value()?).map_err(|e| format!("{flag}: {e}"))?
            }
            "--allow-low-ports" => {
                args.allow_low_ports =
                    Principals::parse(&value()?).map_err(|e| format!("{flag}: {e}"))?
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.ports.is_empty() {
        return Err(format!("at least one --port is needed\n{USAGE}"));
    }
    if args.trusted_listen.is_some() != args.trusted_uid.is_some() {
        return Err("--trusted-listen and --trusted-uid go together".into());
    }
    let is_port = |n: &str| args.ports.iter().any(|p| p.name == n);
    let mut enslaved = std::collections::HashSet::new();
    for b in &args.bonds {
        if is_port(&b.name) || args.bonds.iter().filter(|o| o.name == b.name).count() > 1 {
            return Err(format!("--bond {}: the name is taken", b.name));
        }
        for leg in &b.legs {
            if !is_port(leg) {
                return Err(format!("--bond {}: unknown port {leg:?}", b.name));
            }
            if !enslaved.insert(leg.clone()) {
                return Err(format!("--bond {}: port {leg} is already a leg", b.name));
            }
            if args.addresses.iter().any(|(n, _)| n == leg) {
                return Err(format!(
                    "--bond {}: port {leg} has its own address; give it to the bond",
                    b.name
                ));
            }
        }
    }
    for (name, _) in &args.addresses {
        if !is_port(name) && !args.bonds.iter().any(|b| &b.name == name) {
            return Err(format!("--address names unknown port or bond {name:?}"));
        }
    }
    Ok(args)
}

fn parse_bond(v: &str) -> Result<BondArg, String> {
    let bad = || format!("--bond {v:?}: expected NAME=MODE:LEG,LEG[:PRIMARY]");
    let (name, rest) = v.split_once('=').ok_or_else(bad)?;
    let mut parts = rest.split(':');
    let mode = parts.next().ok_or_else(bad)?;
    let mode = Mode::parse(mode).ok_or_else(|| {
        format!("--bond {v:?}: mode {mode:?} is neither active-backup nor balance-xor")
    })?;
    let legs: Vec<String> = parts
        .next()
        .ok_or_else(bad)?
        .split(',')
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    let primary = parts.next().filter(|p| !p.is_empty()).map(String::from);
    if name.is_empty() || legs.is_empty() || parts.next().is_some() {
        return Err(bad());
    }
    if let Some(p) = &primary {
        if !legs.contains(p) {
            return Err(format!("--bond {v:?}: primary {p} is not a leg"));
        }
    }
    Ok(BondArg {
        name: name.to_string(),
        mode,
        legs,
        primary,
    })
}

/// `NAME=N`: one of the limits by its `[limits]` name.
fn parse_limit(limits: &mut Limits, v: &str) -> Result<(), String> {
    let (name, n) = v
        .split_once('=')
        .ok_or_else(|| format!("--limit {v:?}: expected NAME=N"))?;
    let n: usize = parse_num("--limit", n)?;
    let field = match name {
        "sockets" => &mut limits.sockets,
        "buffer_bytes" => &mut limits.buffer_bytes,
        "socket_buffer_max" => &mut limits.socket_buffer_max,
        "subscriptions" => &mut limits.subscriptions,
        "calls" => &mut limits.calls,
        "user_sockets" => &mut limits.user_sockets,
        "user_buffer_bytes" => &mut limits.user_buffer_bytes,
        "user_subscriptions" => &mut limits.user_subscriptions,
        "user_calls" => &mut limits.user_calls,
        "connections_per_user" => &mut limits.connections_per_user,
        other => return Err(format!("--limit {other}: no such limit")),
    };
    *field = n;
    Ok(())
}

fn parse_num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    v.parse().map_err(|e| format!("{flag} {v:?}: {e}"))
}

fn parse_port(v: &str) -> Result<PortArg, String> {
    let (name, src) = v
        .split_once('=')
        .ok_or_else(|| format!("--port {v:?}: expected NAME=fd:RPC,HANDOFF or NAME=path:SOCKET"))?;
    if name.is_empty() {
        return Err(format!("--port {v:?}: empty name"));
    }
    let source = if let Some(fds) = src.strip_prefix("fd:") {
        let (rpc, handoff) = fds
            .split_once(',')
            .ok_or_else(|| format!("--port {v:?}: expected fd:RPC,HANDOFF"))?;
        NicSource::Fds {
            rpc: parse_num("--port", rpc)?,
            handoff: parse_num("--port", handoff)?,
        }
    } else if let Some(path) = src.strip_prefix("path:") {
        NicSource::Path(PathBuf::from(path))
    } else {
        return Err(format!("--port {v:?}: source must start with fd: or path:"));
    };
    Ok(PortArg {
        name: name.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Args, String> {
        parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn full_command_line() {
        let a = p(
            "--port sim0=fd:3,4 --port tap0=path:/x/nic.sock --address sim0=10.0.0.1/24 \
                   --address tap0=fd00::1/64 --route default=10.0.0.254 --listen /r/capnet.sock \
                   --rpc-fd 7 --tcp-buffer 65536 --limit sockets=9 --limit user_calls=3",
        )
        .unwrap();
        assert_eq!((a.limits.sockets, a.limits.user_calls), (9, 3));
        assert_eq!(a.limits.subscriptions, Limits::default().subscriptions);
        assert_eq!(a.ports.len(), 2);
        assert_eq!(a.ports[0].source, NicSource::Fds { rpc: 3, handoff: 4 });
        assert_eq!(a.addresses.len(), 2);
        assert_eq!(a.routes.len(), 1);
        assert_eq!(a.rpc_fds, vec![7]);
        assert_eq!(a.tcp_buffer, 65536);
    }

    #[test]
    fn bonds_and_routes() {
        let a = p(
            "--port a=fd:3,4 --port b=fd:5,6 --bond bond0=active-backup:a,b:b \
                   --address bond0=10.0.0.1/24 --route 10.9.0.0/16=10.0.0.254 \
                   --admin-fd 8 --attach-fd 9",
        )
        .unwrap();
        assert_eq!(
            a.bonds,
            vec![BondArg {
                name: "bond0".into(),
                mode: Mode::ActiveBackup,
                legs: vec!["a".into(), "b".into()],
                primary: Some("b".into()),
            }]
        );
        assert_eq!(a.routes[0].0.prefix, 16);
        assert_eq!((a.admin_fds.clone(), a.attach_fd), (vec![8], Some(9)));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(p("").unwrap_err().contains("at least one --port"));
        assert!(p("--port x").unwrap_err().contains("expected NAME="));
        assert!(p("--port x=fd:3").unwrap_err().contains("fd:RPC,HANDOFF"));
        assert!(p("--port x=fd:3,4 --address y=10.0.0.1/24")
            .unwrap_err()
            .contains("unknown port"));
        assert!(p("--port x=fd:3,4 --bond b=mirror:x")
            .unwrap_err()
            .contains("neither active-backup"));
        assert!(p("--port x=fd:3,4 --bond b=active-backup:x,y")
            .unwrap_err()
            .contains("unknown port"));
        assert!(
            p("--port x=fd:3,4 --address x=10.0.0.1/24 --bond b=balance-xor:x")
                .unwrap_err()
                .contains("its own address")
        );
        assert!(p("--port x=fd:3,4 --bond b=active-backup:x:z")
            .unwrap_err()
            .contains("not a leg"));
        assert!(p("--port x=fd:3,4 --bogus")
            .unwrap_err()
            .contains("unknown argument"));
        assert!(p("--port x=fd:3,4 --limit nonsense=3")
            .unwrap_err()
            .contains("no such limit"));
        assert!(p("--port x=fd:3,4 --rpc-fd")
            .unwrap_err()
            .contains("needs a value"));
    }
}
