//! NIC offload as the drivers and tlsd see it: `capnet offload list` and
//! `capnet tls stat`, as tables or JSON.

use super::json::{document, object};
use super::with_supervisor;
use serde_json::{Map, Value};
use std::fmt::Write as _;
use std::path::Path;

/// `capnet offload list`: every offload context of every running driver:
/// flow, port, direction, state, resyncs, bytes.
pub fn offload_list(run_dir: &Path, json: bool) -> Result<String, String> {
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
        let mut out = format!(
            "{:<6} {:>5} {:<6} {:<13} {:<9} {:<45} {:>9} {:>12} {:>7} {:>7} {:>5} {:>7}\n",
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
        let mut contexts = Vec::new();
        for port in ports {
            let mut req = sup.offload_contexts_request();
            req.get().set_port(&port);
            let resp = req.send().promise.await?;
            for c in resp.get()?.get_contexts()?.iter() {
                if json {
                    contexts.push(Value::Object(object(c)?));
                    continue;
                }
                let flow = capnet_schema::offload::read_flow(c.get_flow()?)?;
                let kind = capnet_schema::offload::kind_label(c.get_kind()?);
                let _ = writeln!(
                    out,
                    "{:<6} {:>5} {:<6} {:<13} {:<9} {:<45} {:>9} {:>12} {:>7} {:>7} {:>5} {:>7}",
                    c.get_port()?.to_str()?,
                    c.get_driver_epoch(),
                    c.get_id(),
                    kind,
                    c.get_state()?.to_str()?,
                    flow.to_string(),
                    c.get_records(),
                    c.get_bytes(),
                    c.get_resyncs(),
                    c.get_resync_requests(),
                    c.get_auth_failures(),
                    c.get_dropped()
                );
            }
        }
        if json {
            return Ok(document(&Value::Array(contexts)));
        }
        Ok(out)
    })
}

/// `capnet tls stat`: tlsd's counters, named as in Linux /proc/net/tls_stat
/// (then capnet's own).
pub fn tls_stat(dir: &Path, json: bool) -> Result<String, String> {
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
    if json {
        let obj: Map<String, Value> = rows
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).into()))
            .collect();
        return Ok(document(&Value::Object(obj)));
    }
    let mut out = String::new();
    for (name, v) in rows {
        out += &format!("{name:<24}{v}\n");
    }
    Ok(out)
}
