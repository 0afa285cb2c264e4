//! `capnet link`: the ports as netsrv and the supervisor see them, and one
//! port as its driver sees it.

use super::json::{document, object};
use super::{port_state, read_processes, with_supervisor, ProcessInfo};
use capnet_schema::nic_capnp::{port_counters, port_info};
use capnet_schema::supervisor_capnp::supervisor::status_results;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::Path;

/// `capnet link`: one line per port.
pub fn links(run_dir: &Path, json: bool) -> Result<String, String> {
    with_supervisor(run_dir, async |sup| {
        let resp = sup.status_request().send().promise.await?;
        let r = resp.get()?;
        let procs = read_processes(r.get_processes()?)?;
        if json {
            return Ok(document(&links_json(r, &procs)?));
        }
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
pub fn link_detail(run_dir: &Path, port: &str, json: bool) -> Result<String, String> {
    with_supervisor(run_dir, async |sup| {
        let mut req = sup.port_counters_request();
        req.get().set_port(port);
        let resp = req.send().promise.await?;
        let r = resp.get()?;
        let (info, c) = (r.get_info()?, r.get_counters()?);
        if json {
            let mut obj = object(info)?;
            obj.insert("counters".into(), Value::Object(object(c)?));
            return Ok(document(&Value::Object(obj)));
        }
        let mac = capnet_wire::mac::format_mac(info.get_mac()?);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} ({}) {} mtu {} link {}, checksum offload {}, segmentation {}",
            info.get_name()?.to_str()?,
            info.get_backend()?.to_str()?,
            mac,
            info.get_mtu(),
            if info.get_link_up() { "up" } else { "down" },
            on_off(info.get_checksum_offload()),
            on_off(info.get_segmentation())
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
        segmentation_line(&mut out, "", c);
        offload_lines(&mut out, info, c)?;
        Ok(out)
    })
}

/// The offload families of a port, one line each: which kinds it offers and
/// their counters summed over the family, then the frames dropped for
/// naming no context.
fn offload_lines(
    out: &mut String,
    info: port_info::Reader<'_>,
    c: port_counters::Reader<'_>,
) -> capnp::Result<()> {
    use capnet_schema::offload_capnp::OffloadKind as K;
    // (kind, its name in the family, what its records are)
    type Family = (&'static str, &'static [(K, &'static str, &'static str)]);
    const FAMILIES: [Family; 3] = [
        (
            "TLS",
            &[(K::TlsTx, "tx", "sealed"), (K::TlsRx, "rx", "opened")],
        ),
        (
            "ESP",
            &[
                (K::EspCryptoTx, "crypto-tx", "crypto-tx"),
                (K::EspCryptoRx, "crypto-rx", "crypto-rx"),
                (K::EspPacketTx, "packet-tx", "packet-tx"),
                (K::EspPacketRx, "packet-rx", "packet-rx"),
            ],
        ),
        ("NVMe/TCP", &[(K::NvmeTcpRx, "rx", "placed")]),
    ];
    let offered: Vec<K> = info.get_offloads()?.iter().filter_map(Result::ok).collect();
    let counters: Vec<_> = c.get_offloads()?.iter().collect();
    for (family, kinds) in FAMILIES {
        let mut on = Vec::new();
        let (mut contexts, mut released, mut auth, mut resync, mut dropped) = (0, 0, 0, 0, 0);
        let mut engine_nanos = 0;
        let mut records = Vec::new();
        for (kind, label, done) in kinds {
            on.push(format!(
                "{label} {}",
                if offered.contains(kind) { "on" } else { "off" }
            ));
            let Some(k) = counters.iter().find(|k| k.get_kind() == Ok(*kind)) else {
                continue;
            };
            contexts += k.get_contexts();
            released += k.get_released();
            auth += k.get_auth_failures();
            resync += k.get_resync_requests();
            dropped += k.get_dropped();
            engine_nanos += k.get_engine_nanos();
            records.push(format!("{done} {}", k.get_records()));
        }
        let records = if records.is_empty() {
            "0".to_string()
        } else {
            records.join(" ")
        };
        let _ = writeln!(
            out,
            "{family} offload {}: contexts {contexts} released {released}; records {records}; \
             auth failures {auth} resync requests {resync}; dropped {dropped}; engine-us {}",
            on.join(" "),
            engine_nanos / 1_000
        );
    }
    let _ = writeln!(
        out,
        "offload contexts {} released {}; tx frames dropped unprocessed {}",
        c.get_offload_contexts(),
        c.get_offload_released(),
        c.get_offload_tx_dropped()
    );
    Ok(())
}

/// One object per port: netsrv's view (as `capnet status --json` has it)
/// and its driver's restarts; while netsrv is not serving, only what the
/// supervisor knows (name, state, restarts).
fn links_json(r: status_results::Reader<'_>, procs: &[ProcessInfo]) -> capnp::Result<Value> {
    let restarts = |name: &str| {
        procs
            .iter()
            .find(|q| q.name == format!("nicdrv {name}"))
            .map_or(0, |q| q.restarts)
    };
    let mut ports = Vec::new();
    if r.has_net() {
        for p in r.get_net()?.get_ports()? {
            let name = p.get_name()?.to_str()?;
            let mut obj = object(p)?;
            let state = port_state(name, Some(p.get_state()?.to_str()?), procs);
            obj.insert("state".into(), state.into());
            obj.insert("restarts".into(), restarts(name).into());
            ports.push(Value::Object(obj));
        }
    } else {
        for p in procs {
            if let Some(name) = p.name.strip_prefix("nicdrv ") {
                let state = port_state(name, None, procs);
                ports.push(json!({ "name": name, "state": state, "restarts": p.restarts }));
            }
        }
    }
    Ok(Value::Array(ports))
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// What segmentation offload did on a port (nothing when it did nothing).
pub fn segmentation_line(out: &mut String, indent: &str, c: port_counters::Reader<'_>) {
    if c.get_tx_segmented() + c.get_rx_coalesced() + c.get_tx_segment_errors() == 0 {
        return;
    }
    let _ = writeln!(
        out,
        "{indent}segmentation: tx cut {} into {} cut-by-device {} segment-errors {}, \
         rx coalesced {} from {} merged-by-device {}",
        c.get_tx_segmented(),
        c.get_tx_segments(),
        c.get_tx_segmented_by_device(),
        c.get_tx_segment_errors(),
        c.get_rx_coalesced(),
        c.get_rx_coalesced_segments(),
        c.get_rx_coalesced_by_device()
    );
}
