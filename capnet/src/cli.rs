//! The admin commands: status, faults, carrier, down.

use crate::rpc;
use capnet_schema::supervisor_capnp::supervisor;
use std::fmt::Write as _;
use std::path::Path;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
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
        f(client).await.map_err(err)
    })
}

pub fn status(run_dir: &Path) -> Result<String, String> {
    with_supervisor(run_dir, async |sup| {
        let resp = sup.status_request().send().promise.await?;
        let r = resp.get()?;
        let mut out = String::new();
        let _ = writeln!(out, "processes:");
        for p in r.get_processes()? {
            let _ = writeln!(
                out,
                "  {:<14} pid {:<8} {}",
                p.get_name()?.to_str()?,
                p.get_pid(),
                if p.get_running() { "running" } else { "exited" }
            );
        }
        let net = r.get_net()?;
        let _ = writeln!(out, "ports:");
        for p in net.get_ports()? {
            let c = p.get_counters()?;
            let _ = writeln!(
                out,
                "  {} ({}) {} mtu {} link {}",
                p.get_name()?.to_str()?,
                p.get_backend()?.to_str()?,
                p.get_mac()?.to_str()?,
                p.get_mtu(),
                if p.get_link_up() { "up" } else { "down" }
            );
            let _ = writeln!(
                out,
                "    rx {} frames {} bytes, tx {} frames {} bytes",
                c.get_rx_frames(),
                c.get_rx_bytes(),
                c.get_tx_frames(),
                c.get_tx_bytes()
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
            "stack: sessions {} killed {} bad-ring-indices {} connects {} accepts {} resets {} udp sent {} received {} \
             bad-checksum {} tx-no-buffer {} ports-disabled {}",
            c.get_sessions(),
            c.get_sessions_killed(),
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
        Ok(out)
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
