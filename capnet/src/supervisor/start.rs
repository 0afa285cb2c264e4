//! The start-up table: what each service is started with — its command
//! line, the descriptors it inherits, the user it becomes — and the
//! starting itself. Which processes run when is the caller's business.

use super::{Role, Set, Shared, State, UpOptions};
use crate::config::{ppm, Access, Backend, Bond, Config, Port, ServiceUsers};
use crate::rpc;
use crate::spawn::{socket_pair, spawn};
use capnet_schema::net_capnp::net_admin;
use capnet_schema::nic_capnp::nic;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// What every start needs.
pub(super) struct Ctx {
    pub(super) opts: UpOptions,
    pub(super) nicdrv: PathBuf,
    pub(super) netsrv: PathBuf,
    pub(super) tlsd: PathBuf,
    pub(super) socket_path: PathBuf,
    pub(super) tls_socket_path: PathBuf,
    /// netsrv's socket for tlsd alone.
    pub(super) trusted_socket_path: PathBuf,
    pub(super) access: Access,
    /// The users the services become (the set started as root).
    pub(super) users: Option<ServiceUsers>,
}

/// Where a sim port's wire socket is: a relative path is beneath
/// `<wire-dir>/wires/`, a directory of its own, since the drivers may
/// write there (and never in the run directory).
pub(super) fn wire_path(opts: &UpOptions, wire: &Path) -> PathBuf {
    resolve(&opts.wire_dir.join("wires"), wire)
}

fn resolve(dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

/// `epoch`: instances of this port's driver started before this one.
fn nicdrv_args(
    port: &Port,
    opts: &UpOptions,
    user: Option<capnet_confine::User>,
    epoch: u32,
    rpc_fds: &[&OwnedFd],
    handoff: &OwnedFd,
) -> Result<Vec<String>, String> {
    let mut a = vec!["--name".to_string(), port.name.clone()];
    a.extend(["--epoch".into(), epoch.to_string()]);
    a.extend(user_args(user));
    match port.backend {
        Backend::Sim => {
            let wire = port.wire.as_ref().ok_or("sim port without wire")?;
            a.extend(["--backend".into(), "sim".into(), "--wire".into()]);
            a.push(wire_path(opts, wire).display().to_string());
        }
        Backend::Tap => {
            a.extend(["--backend".into(), "tap".into(), "--tap".into()]);
            a.push(port.tap.clone().ok_or("tap port without tap")?);
            if let Some(ns) = &port.netns {
                a.extend(["--netns".into(), ns.clone()]);
            }
        }
    }
    if let Some(mac) = &port.mac {
        a.extend(["--mac".into(), mac.clone()]);
    }
    if let Some(mtu) = port.mtu {
        a.extend(["--mtu".into(), mtu.to_string()]);
    }
    if let Some(b) = port.buffers {
        a.extend(["--buffers".into(), b.to_string()]);
    }
    if let Some(pcap) = &port.pcap {
        a.extend([
            "--pcap".into(),
            resolve(&opts.run_dir, pcap).display().to_string(),
        ]);
    }
    if port.checksum_offload == Some(false) {
        a.push("--no-csum-offload".into());
    }
    if port.segmentation == Some(false) {
        a.push("--no-segmentation".into());
    }
    if port.tls_offload {
        a.push("--tls-offload".into());
    }
    let f = &port.faults;
    for (flag, v) in [
        ("--loss-ppm", f.loss),
        ("--reorder-ppm", f.reorder),
        ("--duplicate-ppm", f.duplicate),
        ("--corrupt-ppm", f.corrupt),
    ] {
        let v = ppm(flag, v)?;
        if v > 0 {
            a.extend([flag.to_string(), v.to_string()]);
        }
    }
    if let Some(seed) = f.seed {
        a.extend(["--seed".into(), seed.to_string()]);
    }
    for fd in rpc_fds {
        a.extend(["--rpc-fd".into(), fd.as_raw_fd().to_string()]);
    }
    a.extend(["--handoff-fd".into(), handoff.as_raw_fd().to_string()]);
    Ok(a)
}

/// netsrv's arguments but the descriptors: ports, bonds, addresses,
/// routes, buffers, the application socket.
fn netsrv_args(
    config: &Config,
    bonds: &[Bond],
    routes: &[(String, String)],
    socket_path: &Path,
    access: &Access,
) -> Vec<String> {
    let mut a = Vec::new();
    for port in &config.ports {
        for addr in &port.addresses {
            a.extend(["--address".to_string(), format!("{}={addr}", port.name)]);
        }
    }
    for b in bonds {
        a.extend(["--bond".to_string(), b.netsrv_arg()]);
        for addr in &b.addresses {
            a.extend(["--address".to_string(), format!("{}={addr}", b.name)]);
        }
    }
    for (to, via) in routes {
        a.extend(["--route".to_string(), format!("{to}={via}")]);
    }
    if let Some(b) = config.netsrv.tcp_buffer {
        a.extend(["--tcp-buffer".to_string(), b.to_string()]);
    }
    a.extend(config.limits.netsrv_args());
    if let Some(cc) = config.netsrv.congestion_control {
        let cc = match cc {
            crate::config::CongestionControl::Cubic => "cubic",
            crate::config::CongestionControl::Newreno => "newreno",
        };
        a.extend(["--congestion-control".to_string(), cc.to_string()]);
    }
    a.extend(["--listen".to_string(), socket_path.display().to_string()]);
    a.extend(access_args(access));
    a
}

/// `--user UID:GID` when the service is to become a user of its own.
fn user_args(user: Option<capnet_confine::User>) -> Vec<String> {
    user.map(|u| vec!["--user".into(), u.to_string()])
        .unwrap_or_default()
}

/// Who may use the network and bind low ports, for netsrv and tlsd.
fn access_args(access: &Access) -> [String; 4] {
    [
        "--allow-network".into(),
        access.network.to_string(),
        "--allow-low-ports".into(),
        access.low_ports.to_string(),
    ]
}

/// Starts one driver; returns netsrv's ends `[rpc, handoff]`.
pub(super) fn start_nicdrv(ctx: &Ctx, set: &mut Set, index: usize) -> Result<[OwnedFd; 2], String> {
    let port = &ctx.opts.config.ports[index];
    let io = |e: io::Error| e.to_string();
    let (rpc_child, rpc_netsrv) = socket_pair().map_err(io)?;
    let (handoff_child, handoff_netsrv) = socket_pair().map_err(io)?;
    let (admin_child, admin_here) = socket_pair().map_err(io)?;
    let epoch = set.procs[index].starts;
    let args = nicdrv_args(
        port,
        &ctx.opts,
        ctx.users.map(|u| u.nicdrv),
        epoch,
        &[&rpc_child, &admin_child],
        &handoff_child,
    )?;
    let child = spawn(
        &ctx.nicdrv,
        &args,
        &[&rpc_child, &admin_child, &handoff_child],
    )
    .map_err(|e| format!("starting nicdrv for {}: {e}", port.name))?;
    let pid = child.id();
    set.procs[index].started(child);
    let nic: nic::Client = rpc::bootstrap(admin_here).map_err(io)?;
    set.nics.insert(port.name.clone(), nic);
    tracing::info!(port = %port.name, pid, restarts = set.procs[index].restarts, "nicdrv started");
    Ok([rpc_netsrv, handoff_netsrv])
}

/// Starts every driver, then netsrv over them. Returns netsrv's `NetAdmin`
/// (not yet known to answer).
pub(super) fn start_data_path(ctx: &Ctx, shared: &Shared) -> Result<net_admin::Client, String> {
    let mut set = shared.borrow_mut();
    let set = &mut *set;
    let mut args = Vec::new();
    let mut fds: Vec<OwnedFd> = Vec::new();
    for (i, port) in ctx.opts.config.ports.iter().enumerate() {
        // A fresh start of the data path: earlier crash loops are forgiven.
        set.procs[i].quick_exits = 0;
        let [rpc, handoff] = match start_nicdrv(ctx, set, i) {
            Ok(fds) => fds,
            Err(e) if set.procs[i].starts == 0 => return Err(e),
            Err(e) => {
                tracing::error!("{e}; port {} stays down", port.name);
                let p = &mut set.procs[i];
                p.state = State::Failed;
                p.last_exit = format!("could not start: {e}");
                continue;
            }
        };
        args.extend([
            "--port".to_string(),
            format!(
                "{}=fd:{},{}",
                port.name,
                rpc.as_raw_fd(),
                handoff.as_raw_fd()
            ),
        ]);
        fds.extend([rpc, handoff]);
    }
    args.extend(netsrv_args(
        &ctx.opts.config,
        &set.bonds,
        &set.routes,
        &ctx.socket_path,
        &ctx.access,
    ));
    // tlsd's own way in (it serves many users: see netsrv's rpc.rs).
    args.extend([
        "--trusted-listen".to_string(),
        ctx.trusted_socket_path.display().to_string(),
        "--trusted-uid".to_string(),
        ctx.users
            .map(|u| u.tlsd.uid)
            // SAFETY: getuid has no preconditions.
            .unwrap_or_else(|| unsafe { libc::getuid() })
            .to_string(),
    ]);
    args.extend(user_args(ctx.users.map(|u| u.netsrv)));
    let io = |e: io::Error| e.to_string();
    let (admin_child, admin_here) = socket_pair().map_err(io)?;
    let (attach_child, attach_here) = socket_pair().map_err(io)?;
    // Never block the supervisor on a netsrv that does not read.
    let attach_here = std::os::unix::net::UnixStream::from(attach_here);
    attach_here.set_nonblocking(true).map_err(io)?;
    let attach_here = OwnedFd::from(attach_here);
    args.extend([
        "--admin-fd".to_string(),
        admin_child.as_raw_fd().to_string(),
    ]);
    args.extend([
        "--attach-fd".to_string(),
        attach_child.as_raw_fd().to_string(),
    ]);
    let _ = std::fs::remove_file(&ctx.socket_path);
    let mut inherit: Vec<&OwnedFd> = fds.iter().collect();
    inherit.extend([&admin_child, &attach_child]);
    let child = spawn(&ctx.netsrv, &args, &inherit).map_err(|e| format!("starting netsrv: {e}"))?;
    let pid = child.id();
    set.netsrv().started(child);
    set.netsrv_generation += 1;
    set.attach = Some(attach_here);
    set.admin = None;
    tracing::info!(pid, restarts = set.netsrv().restarts, "netsrv started");
    rpc::bootstrap(admin_here).map_err(io)
}

/// tlsd's arguments: its socket, netsrv's socket for it, and the TLS files.
fn tlsd_args(ctx: &Ctx) -> Vec<String> {
    let mut a = vec![
        "--listen".to_string(),
        ctx.tls_socket_path.display().to_string(),
        "--net".to_string(),
        ctx.trusted_socket_path.display().to_string(),
    ];
    a.extend(user_args(ctx.users.map(|u| u.tlsd)));
    let tls = &ctx.opts.config.tls;
    for (flag, path) in [
        ("--cert", &tls.cert),
        ("--key", &tls.key),
        ("--roots", &tls.roots),
        ("--keylog", &tls.keylog),
    ] {
        if let Some(p) = path {
            a.extend([flag.to_string(), p.display().to_string()]);
        }
    }
    a.extend(tls.limit_args());
    a.extend(access_args(&ctx.access));
    a
}

/// Starts tlsd. It needs netsrv's application socket, not netsrv itself:
/// a netsrv restart resets its sessions, and it connects again.
pub(super) fn start_tlsd(ctx: &Ctx, set: &mut Set) -> Result<(), String> {
    let _ = std::fs::remove_file(&ctx.tls_socket_path);
    // Our channel to this instance: the watchdog pings it there.
    let (admin_child, admin_here) = socket_pair().map_err(|e| e.to_string())?;
    let mut args = tlsd_args(ctx);
    args.extend(["--admin-fd".into(), admin_child.as_raw_fd().to_string()]);
    let child =
        spawn(&ctx.tlsd, &args, &[&admin_child]).map_err(|e| format!("starting tlsd: {e}"))?;
    let pid = child.id();
    let p = set.process(Role::Tlsd);
    p.started(child);
    tracing::info!(pid, restarts = p.restarts, "tlsd started");
    // The child is in the table first: it must be stopped and reaped
    // whatever happens here.
    set.tlsd = rpc::bootstrap(admin_here)
        .inspect_err(|e| tracing::error!(%e, "no channel to tlsd; the watchdog cannot ping it"))
        .ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netsrv_gets_bonds_addresses_and_routes() {
        let config = Config::parse(include_str!("../../../examples/bond-a.toml")).unwrap();
        let routes = vec![("default".to_string(), "10.0.0.254".to_string())];
        let access = config.access.resolve(1000).unwrap();
        let a = netsrv_args(
            &config,
            &config.bonds,
            &routes,
            Path::new("/r/capnet.sock"),
            &access,
        )
        .join(" ");
        assert_eq!(
            a,
            "--bond bond0=active-backup:p0,p1:p0 --address bond0=10.0.0.1/24 \
             --route default=10.0.0.254 --listen /r/capnet.sock \
             --allow-network * --allow-low-ports 1000"
        );
    }
}
