//! The `capnet` commands that talk to a running set, all through its
//! admin.sock: the listings (each as a table or, with `--json`, as one
//! JSON document) and the changes (bonds, routes, carrier, wire faults,
//! down). The command tree itself is in `args`.

use crate::config::{check_cidr, check_route_to, BondMode};
use crate::rpc;
use capnet_schema::net_capnp::{self as net_capnp, net_admin};
use capnet_schema::supervisor_capnp::supervisor;
use std::path::Path;

pub mod args;
pub mod json;
mod link;
mod offload;
mod status;

pub use link::{link_detail, links};
pub use offload::{offload_list, tls_stat};
pub use status::{bonds, routes, status};

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

pub use capnet_schema::errors::describe as describe_error;

/// How process `pid` is confined: what the kernel says in /proc/PID/status
/// (its user, no_new_privs, a seccomp filter), and the Landlock state from
/// `reported`, the service's own answer (Landlock is not in /proc).
pub fn confinement(pid: u32, reported: &str) -> String {
    // Only the words a service may say: a driver's answer is not printed
    // raw into an admin's terminal.
    let landlock = capnet_confine::landlock_of(reported)
        .filter(|l| matches!(*l, "enforced" | "partly enforced" | "unsupported" | "off"))
        .unwrap_or("unknown (the service did not say)");
    format!("{}, landlock {landlock}", kernel_confinement(pid))
}

/// What the kernel says confines process `pid` (/proc/PID/status): its
/// user, no_new_privs, and a seccomp filter.
fn kernel_confinement(pid: u32) -> String {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return "unknown".into();
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    let mut parts = vec![format!("uid {}", field("Uid:"))];
    if field("NoNewPrivs:") == "1" {
        parts.push("no_new_privs".into());
    }
    if field("Seccomp:") == "2" {
        parts.push("seccomp".into());
    }
    parts.join(", ")
}

/// Runs `f` against the supervisor of the set in `run_dir`.
fn with_supervisor<T>(
    run_dir: &Path,
    f: impl AsyncFnOnce(supervisor::Client) -> Result<T, capnp::Error>,
) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(err)?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let client: supervisor::Client = rpc::connect(&run_dir.join("admin.sock")).map_err(err)?;
        f(client).await.map_err(|e| describe_error(&e))
    })
}

/// Runs `f` against netsrv's administration, through the supervisor.
fn with_net_admin<T>(
    run_dir: &Path,
    f: impl AsyncFnOnce(net_admin::Client) -> Result<T, capnp::Error>,
) -> Result<T, String> {
    with_supervisor(run_dir, async |sup| {
        let resp = sup.net_admin_request().send().promise.await?;
        f(resp.get()?.get_admin()?).await
    })
}

/// One service process as `capnet status` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    pub name: String,
    /// 0 while not running.
    pub pid: u32,
    /// running, restarting, failed, stopped
    pub state: String,
    pub restarts: u32,
    /// How the last instance ended, e.g. "killed by signal 9"; empty if none did.
    pub last_exit: String,
    /// How the running instance says it confined itself; empty: unknown.
    pub confinement: String,
}

fn read_processes(
    list: capnp::struct_list::Reader<'_, capnet_schema::supervisor_capnp::process::Owned>,
) -> capnp::Result<Vec<ProcessInfo>> {
    list.iter()
        .map(|p| {
            Ok(ProcessInfo {
                name: p.get_name()?.to_string()?,
                pid: p.get_pid(),
                state: p.get_state()?.to_string()?,
                restarts: p.get_restarts(),
                last_exit: p.get_last_exit()?.to_string()?,
                confinement: p.get_confinement()?.to_string()?,
            })
        })
        .collect()
}

/// The service processes of the set in `run_dir`.
pub fn processes(run_dir: &Path) -> Result<Vec<ProcessInfo>, String> {
    with_supervisor(run_dir, async |sup| {
        let resp = sup.status_request().send().promise.await?;
        read_processes(resp.get()?.get_processes()?)
    })
}

pub fn mode_name(m: Result<net_capnp::BondMode, capnp::NotInSchema>) -> &'static str {
    match m {
        Ok(net_capnp::BondMode::ActiveBackup) => "active-backup",
        Ok(net_capnp::BondMode::BalanceXor) => "balance-xor",
        Err(_) => "unknown",
    }
}

fn to_capnp_mode(m: BondMode) -> net_capnp::BondMode {
    match m {
        BondMode::ActiveBackup => net_capnp::BondMode::ActiveBackup,
        BondMode::BalanceXor => net_capnp::BondMode::BalanceXor,
    }
}

fn texts(l: capnp::text_list::Reader<'_>) -> capnp::Result<Vec<String>> {
    l.iter().map(|t| Ok(t?.to_string()?)).collect()
}

/// A port's state: the supervisor knows of failed and restarting drivers,
/// netsrv of the rest.
fn port_state(port: &str, net_state: Option<&str>, procs: &[ProcessInfo]) -> String {
    let driver = procs.iter().find(|p| p.name == format!("nicdrv {port}"));
    match (driver.map(|p| p.state.as_str()), net_state) {
        (Some("failed"), _) => "failed".into(),
        (Some("restarting"), Some("up" | "down") | None) => "restarting".into(),
        (_, Some(s)) if !s.is_empty() => s.into(),
        (Some(s), _) => s.into(),
        (None, _) => "unknown".into(),
    }
}

/// `capnet bond add`.
#[derive(Clone, Debug)]
pub struct BondArgs {
    pub name: String,
    pub mode: BondMode,
    pub legs: Vec<String>,
    pub primary: Option<String>,
    pub addresses: Vec<String>,
}

pub fn bond_add(run_dir: &Path, b: BondArgs) -> Result<(), String> {
    if b.legs.is_empty() || b.legs.iter().any(String::is_empty) {
        return Err("--legs: a comma-separated list of ports, e.g. p0,p1".into());
    }
    if let Some(p) = &b.primary {
        if !b.legs.contains(p) {
            return Err(format!("--primary {p}: not one of the legs"));
        }
    }
    for a in &b.addresses {
        check_cidr(a)?;
    }
    with_net_admin(run_dir, async move |admin| {
        let mut req = admin.bond_add_request();
        let mut c = req.get().init_bond();
        c.set_name(&b.name);
        c.set_mode(to_capnp_mode(b.mode));
        c.set_primary(b.primary.as_deref().unwrap_or(""));
        let mut legs = c.reborrow().init_legs(b.legs.len() as u32);
        for (i, l) in b.legs.iter().enumerate() {
            legs.set(i as u32, l);
        }
        let mut addrs = c.init_addresses(b.addresses.len() as u32);
        for (i, a) in b.addresses.iter().enumerate() {
            addrs.set(i as u32, a);
        }
        req.send().promise.await?;
        Ok(())
    })
}

pub fn bond_mode(run_dir: &Path, name: &str, mode: BondMode) -> Result<(), String> {
    with_net_admin(run_dir, async move |admin| {
        let mut req = admin.bond_set_mode_request();
        req.get().set_name(name);
        req.get().set_mode(to_capnp_mode(mode));
        req.send().promise.await?;
        Ok(())
    })
}

/// `primary`: a leg, or `None` for none.
pub fn bond_primary(run_dir: &Path, name: &str, primary: Option<&str>) -> Result<(), String> {
    with_net_admin(run_dir, async move |admin| {
        let mut req = admin.bond_set_primary_request();
        req.get().set_name(name);
        req.get().set_primary(primary.unwrap_or(""));
        req.send().promise.await?;
        Ok(())
    })
}

/// `capnet route add|del TO via GW`.
pub fn route_change(run_dir: &Path, add: bool, to: &str, via: &str) -> Result<(), String> {
    check_route_to(to)?;
    via.parse::<std::net::IpAddr>()
        .map_err(|e| format!("gateway {via:?}: {e}"))?;
    with_net_admin(run_dir, async move |admin| {
        if add {
            let mut req = admin.route_add_request();
            req.get().set_to(to);
            req.get().set_via(via);
            req.send().promise.await?;
        } else {
            let mut req = admin.route_remove_request();
            req.get().set_to(to);
            req.get().set_via(via);
            req.send().promise.await?;
        }
        Ok(())
    })
}

/// Fault settings in percent; `None` leaves the value at 0.
#[derive(Clone, Copy, Debug, Default)]
pub struct FaultArgs {
    pub loss: f64,
    pub reorder: f64,
    pub duplicate: f64,
    pub corrupt: f64,
    pub carrier_up: bool,
}

pub fn set_faults(run_dir: &Path, port: &str, f: FaultArgs) -> Result<(), String> {
    let ppm = |what, v| crate::config::ppm(what, v);
    let (loss, reorder, dup, corrupt) = (
        ppm("loss", f.loss)?,
        ppm("reorder", f.reorder)?,
        ppm("duplicate", f.duplicate)?,
        ppm("corrupt", f.corrupt)?,
    );
    let port = port.to_string();
    with_supervisor(run_dir, async move |sup| {
        let mut req = sup.set_faults_request();
        req.get().set_port(&port);
        let mut b = req.get().init_faults();
        b.set_loss_ppm(loss);
        b.set_reorder_ppm(reorder);
        b.set_duplicate_ppm(dup);
        b.set_corrupt_ppm(corrupt);
        b.set_carrier_up(f.carrier_up);
        req.send().promise.await?;
        Ok(())
    })
}

pub fn set_carrier(run_dir: &Path, port: &str, up: bool) -> Result<(), String> {
    let port = port.to_string();
    with_supervisor(run_dir, async move |sup| {
        let mut req = sup.set_carrier_request();
        req.get().set_port(&port);
        req.get().set_up(up);
        req.send().promise.await?;
        Ok(())
    })
}

pub fn down(run_dir: &Path) -> Result<(), String> {
    with_supervisor(run_dir, async |sup| {
        sup.shutdown_request().send().promise.await?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_read_cleanly() {
        let e = capnp::Error::failed("remote exception: invalid: leg p9 is not a port".into());
        assert_eq!(describe_error(&e), "invalid: leg p9 is not a port");
        let e = capnp::Error::failed("busy: netsrv is restarting".into());
        assert_eq!(describe_error(&e), "busy: netsrv is restarting");
    }

    #[test]
    fn landlock_comes_from_the_service_and_only_in_known_words() {
        let me = std::process::id();
        let shown = confinement(me, "no_new_privs on, landlock partly enforced, seccomp on");
        assert!(shown.starts_with("uid "), "{shown}");
        assert!(shown.ends_with(", landlock partly enforced"), "{shown}");
        for said in ["", "landlock \x1b[2Jgotcha", "no_new_privs on"] {
            let shown = confinement(me, said);
            assert!(
                shown.ends_with("landlock unknown (the service did not say)"),
                "{shown}"
            );
        }
    }

    #[test]
    fn port_state_prefers_what_the_supervisor_knows() {
        let p = |state: &str| ProcessInfo {
            name: "nicdrv p0".into(),
            pid: 0,
            state: state.into(),
            restarts: 0,
            last_exit: String::new(),
            confinement: String::new(),
        };
        assert_eq!(port_state("p0", Some("detached"), &[p("failed")]), "failed");
        assert_eq!(
            port_state("p0", Some("up"), &[p("restarting")]),
            "restarting"
        );
        assert_eq!(
            port_state("p0", Some("detached"), &[p("restarting")]),
            "detached"
        );
        assert_eq!(port_state("p0", Some("down"), &[p("running")]), "down");
        assert_eq!(port_state("p0", None, &[p("running")]), "running");
    }
}
