//! Command line of the netsrv process (normally written by the supervisor).

use crate::addr::parse_cidr;
use smoltcp::wire::{IpAddress, IpCidr};
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

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Args {
    pub ports: Vec<PortArg>,
    /// (port name, address)
    pub addresses: Vec<(String, IpCidr)>,
    /// (destination, gateway); only default routes are supported by smoltcp.
    pub routes: Vec<(IpCidr, IpAddress)>,
    pub listen: Option<PathBuf>,
    pub rpc_fds: Vec<i32>,
    pub tcp_buffer: usize,
    pub max_sockets: usize,
}

pub const USAGE: &str = "usage: netsrv --port NAME=fd:RPC,HANDOFF | --port NAME=path:SOCKET ...
              [--address NAME=CIDR]... [--route CIDR=GATEWAY]...
              [--listen PATH] [--rpc-fd N]... [--tcp-buffer BYTES] [--max-sockets N]";

pub fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        tcp_buffer: 64 * 1024,
        max_sockets: 4096,
        ..Args::default()
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => args.ports.push(parse_port(&value()?)?),
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
                args.routes.push((dst, crate::addr::to_smol(gw)));
            }
            "--listen" => args.listen = Some(PathBuf::from(value()?)),
            "--rpc-fd" => args.rpc_fds.push(parse_num(&flag, &value()?)?),
            "--tcp-buffer" => args.tcp_buffer = parse_num(&flag, &value()?)?,
            "--max-sockets" => args.max_sockets = parse_num(&flag, &value()?)?,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.ports.is_empty() {
        return Err(format!("at least one --port is needed\n{USAGE}"));
    }
    for (name, _) in &args.addresses {
        if !args.ports.iter().any(|p| &p.name == name) {
            return Err(format!("--address names unknown port {name:?}"));
        }
    }
    for (dst, _) in &args.routes {
        if dst.prefix_len() != 0 {
            return Err(format!("route {dst}: only default routes are supported"));
        }
    }
    Ok(args)
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
                   --rpc-fd 7 --tcp-buffer 65536",
        )
        .unwrap();
        assert_eq!(a.ports.len(), 2);
        assert_eq!(a.ports[0].source, NicSource::Fds { rpc: 3, handoff: 4 });
        assert_eq!(a.addresses.len(), 2);
        assert_eq!(a.routes.len(), 1);
        assert_eq!(a.rpc_fds, vec![7]);
        assert_eq!(a.tcp_buffer, 65536);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(p("").unwrap_err().contains("at least one --port"));
        assert!(p("--port x").unwrap_err().contains("expected NAME="));
        assert!(p("--port x=fd:3").unwrap_err().contains("fd:RPC,HANDOFF"));
        assert!(p("--port x=fd:3,4 --address y=10.0.0.1/24")
            .unwrap_err()
            .contains("unknown port"));
        assert!(p("--port x=fd:3,4 --route 10.0.0.0/8=10.0.0.1")
            .unwrap_err()
            .contains("only default routes"));
        assert!(p("--port x=fd:3,4 --bogus")
            .unwrap_err()
            .contains("unknown argument"));
        assert!(p("--port x=fd:3,4 --rpc-fd")
            .unwrap_err()
            .contains("needs a value"));
    }
}
