//! The admin commands: status, link, bond, route, wire, down. Everything
//! goes through admin.sock.

use crate::config::{check_cidr, check_route_to, BondMode};
use crate::rpc;
use capnet_schema::net_capnp::{self as net_capnp, net_admin, net_status};
use capnet_schema::supervisor_capnp::supervisor;
use std::fmt::Write as _;
use std::path::Path;

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

fn write_bonds(out: &mut String, net: net_status::Reader<'_>) -> capnp::Result<()> {
    let bonds = net.get_bonds()?;
    if bonds.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for b in bonds {
        let active = b.get_active()?.to_str()?;
        let primary = b.get_primary()?.to_str()?;
        let _ = writeln!(
            out,
            "  {} {}, active {}, primary {}, legs {}",
            b.get_name()?.to_str()?,
            mode_name(b.get_mode()),
            if active.is_empty() { "none" } else { active },
            if primary.is_empty() { "none" } else { primary },
            texts(b.get_legs()?)?.join(",")
        );
        let _ = writeln!(
            out,
            "    failovers {}, announcements {}, tx {} rx {} frames, tx-no-leg {}",
            b.get_failovers(),
            b.get_announcements(),
            b.get_tx_frames(),
            b.get_rx_frames(),
            b.get_tx_no_leg()
        );
    }
    Ok(())
}

pub fn status(run_dir: &Path) -> Result<String, String> {
    with_supervisor(run_dir, async |sup| {
        let resp = sup.status_request().send().promise.await?;
        let r = resp.get()?;
        let procs = read_processes(r.get_processes()?)?;
        let mut out = String::new();
        let _ = writeln!(out, "processes:");
        for p in &procs {
            let _ = write!(
                out,
                "  {:<14} {:<10} pid {:<8} restarts {}",
                p.name, p.state, p.pid, p.restarts
            );
            if !p.last_exit.is_empty() {
                let _ = write!(out, ", last exit: {}", p.last_exit);
            }
            if p.pid != 0 {
                let _ = write!(out, "; confined: {}", confinement(p.pid, &p.confinement));
            }
            out.push('\n');
        }
        if !r.has_net() {
            let _ = writeln!(out, "netsrv is not serving now (see processes)");
            return Ok(out);
        }
        let net = r.get_net()?;
        let _ = writeln!(out, "ports:");
        for p in net.get_ports()? {
            let c = p.get_counters()?;
            let name = p.get_name()?.to_str()?;
            let iface = p.get_interface()?.to_str()?;
            let _ = writeln!(
                out,
                "  {} ({}) {} mtu {} link {}, state {}, interface {}, driver epoch {}",
                name,
                p.get_backend()?.to_str()?,
                p.get_mac()?.to_str()?,
                p.get_mtu(),
                if p.get_link_up() { "up" } else { "down" },
                port_state(name, Some(p.get_state()?.to_str()?), &procs),
                if iface.is_empty() { "none" } else { iface },
                p.get_driver_epoch()
            );
            let _ = writeln!(
                out,
                "    rx {} frames {} bytes, tx {} frames {} bytes; stack rx {} tx {} frames",
                c.get_rx_frames(),
                c.get_rx_bytes(),
                c.get_tx_frames(),
                c.get_tx_bytes(),
                p.get_rx_frames(),
                p.get_tx_frames()
            );
            let _ = writeln!(
                out,
                "    rx dropped {} bad-checksum {} malformed {}, tx dropped {}, bad descriptors {}",
                c.get_rx_dropped(),
                c.get_rx_bad_checksum(),
                c.get_rx_malformed(),
                c.get_tx_dropped(),
                c.get_bad_descriptors()
            );
            let _ = writeln!(
                out,
                "    checksums verified {} filled {}; wire lost {} reordered {} duplicated {} corrupted {}; link changes {}",
                c.get_rx_checksum_verified(),
                c.get_tx_checksum_filled(),
                c.get_wire_lost(),
                c.get_wire_reordered(),
                c.get_wire_duplicated(),
                c.get_wire_corrupted(),
                c.get_link_changes()
            );
        }
        let _ = writeln!(out, "bonds:");
        write_bonds(&mut out, net)?;
        let _ = writeln!(out, "addresses:");
        for a in net.get_addresses()? {
            let _ = writeln!(out, "  {}", a?.to_str()?);
        }
        let _ = writeln!(out, "routes:");
        for a in net.get_routes()? {
            let _ = writeln!(out, "  {}", a?.to_str()?);
        }
        let sockets = net.get_sockets()?;
        let _ = writeln!(out, "sockets: {}", sockets.len());
        for s in sockets {
            let _ = writeln!(
                out,
                "  {:<10} {:<22} {:<22} {:<12} rx {} tx {}{}",
                s.get_kind()?.to_str()?,
                s.get_local()?.to_str()?,
                s.get_remote()?.to_str()?,
                s.get_state()?.to_str()?,
                s.get_rx_bytes(),
                s.get_tx_bytes(),
                if s.get_ring_mode() { " (rings)" } else { "" }
            );
        }
        let c = net.get_counters()?;
        let _ = writeln!(
            out,
            "stack: sessions {} killed {} refused {} bad-ring-indices {} connects {} accepts {} resets {} udp sent {} received {} \
             bad-checksum {} tx-no-buffer {} ports-disabled {}",
            c.get_sessions(),
            c.get_sessions_killed(),
            c.get_sessions_refused(),
            c.get_bad_ring_indices(),
            c.get_tcp_connects(),
            c.get_tcp_accepts(),
            c.get_tcp_resets(),
            c.get_udp_sent(),
            c.get_udp_received(),
            c.get_rx_bad_checksum(),
            c.get_tx_no_buffer(),
            c.get_port_bad_descriptors()
        );
        let _ = writeln!(
            out,
            "drivers: attaches {} detaches {} refused {} rings-mapped {}, frames of dead instances \
             resent {} dropped {}; egress watchers {} events {}",
            c.get_driver_attaches(),
            c.get_driver_detaches(),
            c.get_drivers_refused(),
            c.get_rings_mapped(),
            c.get_salvage_resent(),
            c.get_salvage_dropped(),
            c.get_egress_watchers(),
            c.get_egress_events()
        );
        let l = c.get_limits()?;
        let _ = writeln!(
            out,
            "limits: refused sockets {} buffer-bytes {} subscriptions {} calls {} connections {}; \
             accept-errors {} stalls {} oversize {}",
            l.get_sockets(),
            l.get_buffer_bytes(),
            l.get_subscriptions(),
            l.get_calls(),
            l.get_connections(),
            l.get_accept_errors(),
            l.get_stalls(),
            l.get_oversize()
        );
        let o = c.get_offload()?;
        let _ = writeln!(
            out,
            "offload: tx tagged {} replaced {} held {} (sent {} dropped {}); rx decrypted {} \
             out-of-order {} (decrypted {}, dropped {}) mark-errors {}",
            o.get_tx_tagged(),
            o.get_tx_replaced(),
            o.get_tx_held(),
            o.get_tx_held_sent(),
            o.get_tx_held_dropped(),
            o.get_rx_decrypted(),
            o.get_rx_out_of_order(),
            o.get_rx_out_of_order_decrypted(),
            o.get_rx_out_of_order_dropped(),
            o.get_rx_mark_errors()
        );
        Ok(out)
    })
}

/// `capnet link`: one line per port.
pub fn links(run_dir: &Path) -> Result<String, String> {
    with_supervisor(run_dir, async |sup| {
        let resp = sup.status_request().send().promise.await?;
        let r = resp.get()?;
        let procs = read_processes(r.get_processes()?)?;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<10} {:<11} {:<10} {:>5} {:>8} {:>12} {:>12} {:>9} {:>9} {:>7}",
            "PORT",
            "STATE",
            "INTERFACE",
            "EPOCH",
            "RESTARTS",
            "RX",
            "TX",
            "RX-DROP",
            "TX-DROP",
            "CHANGES"
        );
        if r.has_net() {
            for p in r.get_net()?.get_ports()? {
                let name = p.get_name()?.to_str()?;
                let c = p.get_counters()?;
                let iface = p.get_interface()?.to_str()?;
                let restarts = procs
                    .iter()
                    .find(|q| q.name == format!("nicdrv {name}"))
                    .map_or(0, |q| q.restarts);
                let _ = writeln!(
                    out,
                    "{:<10} {:<11} {:<10} {:>5} {:>8} {:>12} {:>12} {:>9} {:>9} {:>7}",
                    name,
                    port_state(name, Some(p.get_state()?.to_str()?), &procs),
                    if iface.is_empty() { "-" } else { iface },
                    p.get_driver_epoch(),
                    restarts,
                    c.get_rx_frames(),
                    c.get_tx_frames(),
                    c.get_rx_dropped(),
                    c.get_tx_dropped(),
                    c.get_link_changes()
                );
            }
        } else {
            for p in &procs {
                if let Some(name) = p.name.strip_prefix("nicdrv ") {
                    let _ = writeln!(
                        out,
                        "{:<10} {:<11} {:<10} {:>5} {:>8}",
                        name,
                        port_state(name, None, &procs),
                        "-",
                        "-",
                        p.restarts
                    );
                }
            }
            let _ = writeln!(
                out,
                "(netsrv is not serving now: no interfaces or counters)"
            );
        }
        Ok(out)
    })
}

/// `capnet link PORT`: what the port's driver says, straight from it.
pub fn link_detail(run_dir: &Path, port: &str) -> Result<String, String> {
    with_supervisor(run_dir, async |sup| {
        let mut req = sup.port_counters_request();
        req.get().set_port(port);
        let resp = req.send().promise.await?;
        let r = resp.get()?;
        let (info, c) = (r.get_info()?, r.get_counters()?);
        let mac = info
            .get_mac()?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} ({}) {} mtu {} link {}, checksum offload {}",
            info.get_name()?.to_str()?,
            info.get_backend()?.to_str()?,
            mac,
            info.get_mtu(),
            if info.get_link_up() { "up" } else { "down" },
            if info.get_checksum_offload() {
                "on"
            } else {
                "off"
            }
        );
        let capture = info.get_capture_path()?.to_str()?;
        if !capture.is_empty() {
            let _ = writeln!(out, "capturing to {capture}");
        }
        let _ = writeln!(
            out,
            "rx {} frames {} bytes, tx {} frames {} bytes\n\
             rx dropped {} bad-checksum {} malformed {}, tx dropped {}, bad descriptors {}\n\
             checksums verified {} filled {}; wire lost {} reordered {} duplicated {} corrupted {}; link changes {}",
            c.get_rx_frames(),
            c.get_rx_bytes(),
            c.get_tx_frames(),
            c.get_tx_bytes(),
            c.get_rx_dropped(),
            c.get_rx_bad_checksum(),
            c.get_rx_malformed(),
            c.get_tx_dropped(),
            c.get_bad_descriptors(),
            c.get_rx_checksum_verified(),
            c.get_tx_checksum_filled(),
            c.get_wire_lost(),
            c.get_wire_reordered(),
            c.get_wire_duplicated(),
            c.get_wire_corrupted(),
            c.get_link_changes()
        );
        let _ = writeln!(
            out,
            "TLS offload tx {} rx {}: contexts {} released {}; records sealed {} opened {}; \
             auth failures {} resync requests {}; tx dropped unsealed {}",
            if info.get_tls_tx_offload() {
                "on"
            } else {
                "off"
            },
            if info.get_tls_rx_offload() {
                "on"
            } else {
                "off"
            },
            c.get_offload_contexts(),
            c.get_offload_released(),
            c.get_tls_tx_records(),
            c.get_tls_rx_records(),
            c.get_tls_rx_auth_failures(),
            c.get_tls_rx_resync_requests(),
            c.get_offload_tx_dropped()
        );
        Ok(out)
    })
}

/// `capnet bond`: every bond.
pub fn bonds(run_dir: &Path) -> Result<String, String> {
    with_net_admin(run_dir, async |admin| {
        let resp = admin.status_request().send().promise.await?;
        let mut out = String::new();
        write_bonds(&mut out, resp.get()?.get_status()?)?;
        Ok(out)
    })
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

pub fn routes(run_dir: &Path) -> Result<String, String> {
    let routes = route_list(run_dir)?;
    if routes.is_empty() {
        return Ok("(no routes)\n".into());
    }
    Ok(routes.iter().map(|r| format!("{r}\n")).collect())
}

/// The routes as netsrv has them (`TO via GATEWAY`).
pub fn route_list(run_dir: &Path) -> Result<Vec<String>, String> {
    with_net_admin(run_dir, async |admin| {
        let resp = admin.status_request().send().promise.await?;
        let mut out = Vec::new();
        for r in resp.get()?.get_status()?.get_routes()? {
            out.push(r?.to_str()?.to_string());
        }
        Ok(out)
    })
}

/// `capnet route --json`: `[{"to": ..., "via": ...}]`.
pub fn routes_json(run_dir: &Path) -> Result<serde_json::Value, String> {
    let routes = route_list(run_dir)?;
    Ok(serde_json::Value::Array(
        routes
            .iter()
            .map(|r| {
                let (to, via) = r.split_once(" via ").unwrap_or((r.as_str(), ""));
                serde_json::json!({ "to": to, "via": via })
            })
            .collect(),
    ))
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

/// One offload context, as `capnet offload list` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OffloadRow {
    pub port: String,
    pub driver_epoch: u32,
    pub id: u32,
    pub kind: &'static str,
    pub state: String,
    pub local: String,
    pub remote: String,
    pub records: u64,
    pub bytes: u64,
    pub resyncs: u64,
    pub resync_requests: u64,
    pub auth_failures: u64,
    pub dropped: u64,
}

/// Every offload context of every running driver.
pub fn offload_rows(run_dir: &Path) -> Result<Vec<OffloadRow>, String> {
    with_supervisor(run_dir, async |sup| {
        let status = sup.status_request().send().promise.await?;
        let mut ports = Vec::new();
        for p in status.get()?.get_processes()?.iter() {
            let name = p.get_name()?.to_str()?;
            if let Some(port) = name.strip_prefix("nicdrv ") {
                if p.get_running() {
                    ports.push(port.to_string());
                }
            }
        }
        let mut rows = Vec::new();
        for port in ports {
            let mut req = sup.offload_contexts_request();
            req.get().set_port(&port);
            let resp = req.send().promise.await?;
            for c in resp.get()?.get_contexts()?.iter() {
                let flow = c.get_flow()?;
                let local = capnet_schema::addr::read_socket_addr(flow.get_local()?)?;
                let remote = capnet_schema::addr::read_socket_addr(flow.get_remote()?)?;
                rows.push(OffloadRow {
                    port: c.get_port()?.to_str()?.to_string(),
                    driver_epoch: c.get_driver_epoch(),
                    id: c.get_id(),
                    kind: match c.get_kind()? {
                        capnet_schema::offload_capnp::OffloadKind::TlsTx => "tls-tx",
                        capnet_schema::offload_capnp::OffloadKind::TlsRx => "tls-rx",
                    },
                    state: c.get_state()?.to_str()?.to_string(),
                    local: local.to_string(),
                    remote: remote.to_string(),
                    records: c.get_records(),
                    bytes: c.get_bytes(),
                    resyncs: c.get_resyncs(),
                    resync_requests: c.get_resync_requests(),
                    auth_failures: c.get_auth_failures(),
                    dropped: c.get_dropped(),
                });
            }
        }
        Ok(rows)
    })
}

/// `capnet offload list`: every offload context of every running driver:
/// flow, port, direction, state, resyncs, bytes.
pub fn offload_list(run_dir: &Path) -> Result<String, String> {
    let mut out = format!(
        "{:<6} {:>5} {:<6} {:<6} {:<9} {:<45} {:>9} {:>12} {:>7} {:>7} {:>5} {:>7}\n",
        "port",
        "epoch",
        "id",
        "kind",
        "state",
        "flow",
        "records",
        "bytes",
        "resync",
        "asked",
        "auth",
        "dropped"
    );
    for c in offload_rows(run_dir)? {
        let _ = writeln!(
            out,
            "{:<6} {:>5} {:<6} {:<6} {:<9} {:<45} {:>9} {:>12} {:>7} {:>7} {:>5} {:>7}",
            c.port,
            c.driver_epoch,
            c.id,
            c.kind,
            c.state,
            format!("{} -> {}", c.local, c.remote),
            c.records,
            c.bytes,
            c.resyncs,
            c.resync_requests,
            c.auth_failures,
            c.dropped
        );
    }
    Ok(out)
}

/// `capnet tls stat`: tlsd's counters, named as in Linux /proc/net/tls_stat
/// (then capnet's own).
pub fn tls_stat(dir: &Path) -> Result<String, String> {
    let mut out = String::new();
    for (name, v) in tls_stat_rows(dir)? {
        out += &format!("{name:<24}{v}\n");
    }
    Ok(out)
}

/// `capnet tls stat --json`: `{"TlsCurrTxSw": 0, ...}`.
pub fn tls_stat_json(dir: &Path) -> Result<serde_json::Value, String> {
    Ok(serde_json::Value::Object(
        tls_stat_rows(dir)?
            .into_iter()
            .map(|(name, v)| (name.to_string(), v.into()))
            .collect(),
    ))
}

/// tlsd's counters, named as in Linux /proc/net/tls_stat (then capnet's own).
pub fn tls_stat_rows(dir: &Path) -> Result<Vec<(&'static str, u64)>, String> {
    let path = dir.join("tls.sock");
    let tls =
        libclient::Tls::connect(&path).map_err(|e| format!("tlsd at {}: {e}", path.display()))?;
    let s = tls.stat().map_err(|e| format!("tlsd: {e}"))?;
    let rows: [(&str, u64); 29] = [
        ("TlsCurrTxSw", s.curr_tx_sw),
        ("TlsCurrRxSw", s.curr_rx_sw),
        ("TlsCurrTxDevice", s.curr_tx_device),
        ("TlsCurrRxDevice", s.curr_rx_device),
        ("TlsTxSw", s.tx_sw),
        ("TlsRxSw", s.rx_sw),
        ("TlsTxDevice", s.tx_device),
        ("TlsRxDevice", s.rx_device),
        ("TlsDecryptError", s.decrypt_error),
        ("TlsRxDeviceResync", s.rx_device_resync),
        ("TlsDecryptRetry", s.decrypt_retry),
        ("TlsTxRekeyOk", s.tx_rekey_ok),
        ("TlsRxRekeyOk", s.rx_rekey_ok),
        ("TlsRxRekeyReceived", s.rx_rekey_received),
        ("TlsReoffloads", s.reoffloads),
        ("TlsHandshakes", s.handshakes),
        ("TlsHandshakeFailures", s.handshake_failures),
        ("TlsAlertsSent", s.alerts_sent),
        ("TlsAlertsReceived", s.alerts_received),
        ("TlsRecordsSealed", s.records_sealed),
        ("TlsRecordsOpened", s.records_opened),
        ("TlsBytesSealed", s.bytes_sealed),
        ("TlsBytesOpened", s.bytes_opened),
        ("TlsSessionTickets", s.session_tickets),
        ("TlsHandshakeTimeouts", s.handshake_timeouts),
        ("TlsCurrHandshakes", s.curr_handshakes),
        ("TlsCurrSockets", s.curr_sockets),
        ("TlsLimitRefused", s.limit_refused),
        ("TlsAcceptErrors", s.accept_errors),
    ];
    Ok(rows.to_vec())
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
