//! What netsrv and the supervisor report of the set: `capnet status`,
//! `capnet bond` and `capnet route`, as tables or JSON.

use super::json::{document, object};
use super::{confinement, mode_name, texts};
use super::{port_state, read_processes, with_net_admin, with_supervisor, ProcessInfo};
use capnet_schema::net_capnp::net_status;
use capnet_schema::supervisor_capnp::supervisor::status_results;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::Path;

/// `capnet status`.
pub fn status(run_dir: &Path, json: bool) -> Result<String, String> {
    with_supervisor(run_dir, async |sup| {
        let resp = sup.status_request().send().promise.await?;
        let r = resp.get()?;
        let procs = read_processes(r.get_processes()?)?;
        if json {
            return Ok(document(&status_json(r, &procs)?));
        }
        human(r, &procs)
    })
}

fn human(r: status_results::Reader<'_>, procs: &[ProcessInfo]) -> capnp::Result<String> {
    let mut out = String::new();
    let _ = writeln!(out, "processes:");
    for p in procs {
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
            port_state(name, Some(p.get_state()?.to_str()?), procs),
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
        super::link::segmentation_line(&mut out, "    ", c);
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
        "stack: sessions {} killed {} refused {} bad-ring-indices {} connects {} accepts {} resets {} \
         (closed-unread {}) retransmits {} timeouts {} ring-sets made {} reused {} still-mapped {} arena-slots {} udp sent {} received {} bad-checksum {} \
         tx-no-buffer {} ports-disabled {}",
        c.get_sessions(),
        c.get_sessions_killed(),
        c.get_sessions_refused(),
        c.get_bad_ring_indices(),
        c.get_tcp_connects(),
        c.get_tcp_accepts(),
        c.get_tcp_resets(),
        c.get_tcp_closed_unread(),
        c.get_tcp_retransmits(),
        c.get_tcp_timeouts(),
        c.get_ring_sets_made(),
        c.get_ring_sets_reused(),
        c.get_ring_sets_still_mapped(),
        c.get_ring_arena_slots(),
        c.get_udp_sent(),
        c.get_udp_received(),
        c.get_rx_bad_checksum(),
        c.get_tx_no_buffer(),
        c.get_port_bad_descriptors()
    );
    let t = c.get_tcp()?;
    let _ = writeln!(
        out,
        "tcp: opens active {} passive {}; segments in {} out {}; retransmits {} fast-recoveries {} \
         timeouts {} tail-loss-probes {} dsacks {}; out-of-order {} (dropped {}) out-of-window {} \
         paws-drops {} challenge-acks {} zero-window-probes {}; resets sent {} received {} \
         no-socket {}; syn-cookies sent {} accepted {} rejected {}; listen-overflows {}; \
         time-wait skipped {} reopened {}",
        t.get_active_opens(),
        t.get_passive_opens(),
        t.get_segments_in(),
        t.get_segments_out(),
        t.get_retransmits(),
        t.get_fast_recoveries(),
        t.get_timeouts(),
        t.get_tail_loss_probes(),
        t.get_dsacks(),
        t.get_out_of_order(),
        t.get_out_of_order_dropped(),
        t.get_out_of_window(),
        t.get_paws_drops(),
        t.get_challenge_acks(),
        t.get_zero_window_probes(),
        t.get_resets_sent(),
        t.get_resets_received(),
        t.get_no_socket(),
        t.get_syn_cookies_sent(),
        t.get_syn_cookies_accepted(),
        t.get_syn_cookies_rejected(),
        t.get_listen_overflows(),
        t.get_time_wait_skipped(),
        t.get_time_wait_reopened()
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
         out-of-order {} (decrypted {})",
        o.get_tx_tagged(),
        o.get_tx_replaced(),
        o.get_tx_held(),
        o.get_tx_held_sent(),
        o.get_tx_held_dropped(),
        o.get_rx_decrypted(),
        o.get_rx_out_of_order(),
        o.get_rx_out_of_order_decrypted(),
    );
    Ok(out)
}

/// `{"processes": [...], "net": {...}}`; `net` is null while netsrv is not
/// serving.
fn status_json(r: status_results::Reader<'_>, procs: &[ProcessInfo]) -> capnp::Result<Value> {
    let processes: Vec<Value> = procs
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "pid": p.pid,
                "state": p.state,
                "restarts": p.restarts,
                "last_exit": p.last_exit,
                // As the table shows it: the kernel's view and the service's word.
                "confinement": (p.pid != 0).then(|| confinement(p.pid, &p.confinement)),
            })
        })
        .collect();
    let net = if r.has_net() {
        net_json(r.get_net()?, procs)?
    } else {
        Value::Null
    };
    Ok(json!({ "processes": processes, "net": net }))
}

/// netsrv's status field for field, with each port's state as the table
/// shows it and addresses and routes split into their parts.
fn net_json(net: net_status::Reader<'_>, procs: &[ProcessInfo]) -> capnp::Result<Value> {
    let mut obj = object(net)?;
    if let Some(Value::Array(ports)) = obj.get_mut("ports") {
        for p in ports {
            let name = p["name"].as_str().unwrap_or_default().to_string();
            let state = port_state(&name, p["state"].as_str(), procs);
            p["state"] = state.into();
        }
    }
    let addresses: Vec<Value> = net
        .get_addresses()?
        .iter()
        .map(|a| {
            let a = a?.to_str()?;
            Ok(match a.split_once(" on ") {
                Some((address, on)) => json!({ "address": address, "interface": on }),
                None => json!({ "address": a }),
            })
        })
        .collect::<capnp::Result<_>>()?;
    obj.insert("addresses".into(), addresses.into());
    obj.insert("routes".into(), routes_json(net)?);
    Ok(Value::Object(obj))
}

/// `[{"to": "default", "via": "10.0.0.254"}, ...]`
fn routes_json(net: net_status::Reader<'_>) -> capnp::Result<Value> {
    net.get_routes()?
        .iter()
        .map(|r| {
            let r = r?.to_str()?;
            Ok(match r.split_once(" via ") {
                Some((to, via)) => json!({ "to": to, "via": via }),
                None => json!({ "to": r }),
            })
        })
        .collect()
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

/// `capnet bond`: every bond.
pub fn bonds(run_dir: &Path, json: bool) -> Result<String, String> {
    with_net_admin(run_dir, async |admin| {
        let resp = admin.status_request().send().promise.await?;
        let net = resp.get()?.get_status()?;
        if json {
            let bonds = object(net)?.remove("bonds").unwrap_or_default();
            return Ok(document(&bonds));
        }
        let mut out = String::new();
        write_bonds(&mut out, net)?;
        Ok(out)
    })
}

/// `capnet route`: the routes, or a line that says there are none.
pub fn routes(run_dir: &Path, json: bool) -> Result<String, String> {
    with_net_admin(run_dir, async |admin| {
        let resp = admin.status_request().send().promise.await?;
        let net = resp.get()?.get_status()?;
        if json {
            return Ok(document(&routes_json(net)?));
        }
        let routes = net.get_routes()?;
        if routes.is_empty() {
            return Ok("no routes: only the interfaces' own subnets are reached\n".into());
        }
        let mut out = String::new();
        for r in routes {
            let _ = writeln!(out, "{}", r?.to_str()?);
        }
        Ok(out)
    })
}
