//! TLS record offload (kTLS device TX and RX) on the [`Engine`] contract:
//! the `TlsParams` a holder sends, read and checked, and the offload
//! crate's engines behind the trait.

use super::{CmdError, Engine, Packet, RxOutcome, StatsSnapshot, TxAction};
use capnet_offload::gcm::GcmKey;
use capnet_offload::tls::{TlsParams, TlsRxEngine, TlsTxEngine};
use capnet_ring::flags;
use capnet_schema::errors::SocketError;
use capnet_schema::offload_capnp::{tls_params, OffloadKind, TlsCipher};
use capnet_wire::tls::Version;

/// Reads and checks `TlsParams`: `unsupported` for what the NIC cannot do,
/// `invalid` for what no TLS connection has.
pub fn read_params(t: tls_params::Reader<'_>) -> Result<TlsParams, capnp::Error> {
    let invalid = |m: String| SocketError::Invalid.to_capnp(m);
    let unsupported = |m: String| SocketError::Unsupported.to_capnp(m);
    let version = match t.get_version() {
        0x0303 => Version::Tls12,
        0x0304 => Version::Tls13,
        v => {
            return Err(unsupported(format!(
                "TLS version {v:#06x} (the NIC does 0x0303 and 0x0304)"
            )))
        }
    };
    let key_len = match t.get_cipher() {
        Ok(TlsCipher::Aes128Gcm) => 16,
        Ok(TlsCipher::Aes256Gcm) => 32,
        Err(e) => return Err(unsupported(format!("cipher {}", e.0))),
    };
    let key = t.get_key()?;
    if key.len() != key_len {
        return Err(invalid(format!(
            "a key of {} bytes for a cipher that takes {key_len}",
            key.len()
        )));
    }
    let key = GcmKey::new(key).map_err(|e| invalid(e.to_string()))?;
    let iv: [u8; 12] = t.get_iv()?.try_into().map_err(|_| {
        invalid(format!(
            "an IV of {} bytes, not 12",
            t.get_iv().map_or(0, |v| v.len())
        ))
    })?;
    Ok(TlsParams {
        version,
        key,
        iv,
        tcp_seq: t.get_tcp_seq(),
        rec_seq: t.get_record_seq(),
    })
}

/// The engine of a TLS context of `kind`; `tx_reach` is `TcpFlow.txReach`.
pub fn engine(kind: OffloadKind, params: TlsParams, tx_reach: u32) -> Box<dyn Engine> {
    match kind {
        OffloadKind::TlsTx => Box::new(TlsTx(TlsTxEngine::new(params).retaining(tx_reach))),
        _ => Box::new(TlsRx {
            engine: TlsRxEngine::new(params),
            bytes: 0,
        }),
    }
}

/// Seals the records the holder framed; forgets what the peer acknowledged.
struct TlsTx(TlsTxEngine);

impl Engine for TlsTx {
    fn kind(&self) -> OffloadKind {
        OffloadKind::TlsTx
    }

    fn transmit(&mut self, frame: &mut [u8], packet: Packet<'_>) -> Result<TxAction, String> {
        let Packet::Tcp(seg) = packet else {
            return Err("not a TCP segment".into());
        };
        self.0
            .process(seg.seq, &mut frame[seg.payload.clone()])
            .map(|_| TxAction::Send { changed: true })
            .map_err(|e| e.to_string())
    }

    fn receive(&mut self, _: &mut [u8], packet: Packet<'_>) -> RxOutcome {
        if let Packet::Tcp(seg) = packet {
            if let Some(ack) = seg.ack.filter(|_| !seg.rst) {
                self.0.acked(ack);
            }
        }
        RxOutcome::default()
    }

    fn stats(&self) -> StatsSnapshot {
        let c = self.0.counters();
        StatsSnapshot {
            records: c.records_sealed,
            bytes: c.bytes,
            dropped: c.dropped,
            ..StatsSnapshot::default()
        }
    }
}

/// Opens records in place and marks the segments it opened whole.
struct TlsRx {
    engine: TlsRxEngine,
    /// Payload bytes of the segments handed up decrypted.
    bytes: u64,
}

impl Engine for TlsRx {
    fn kind(&self) -> OffloadKind {
        OffloadKind::TlsRx
    }

    fn transmit(&mut self, _: &mut [u8], _: Packet<'_>) -> Result<TxAction, String> {
        Err("a tlsRx context seals nothing".into())
    }

    fn receive(&mut self, frame: &mut [u8], packet: Packet<'_>) -> RxOutcome {
        let Packet::Tcp(seg) = packet else {
            return RxOutcome::default();
        };
        if seg.payload.is_empty() || seg.syn || seg.rst {
            return RxOutcome::default();
        }
        let len = seg.payload.len();
        let out = self
            .engine
            .process(seg.seq, &mut frame[seg.payload.clone()]);
        tracing::trace!(seq = seg.seq, len, decrypted = out.decrypted,
            in_sync = self.engine.in_sync(), resync = ?out.resync_request, "tls rx");
        if out.decrypted {
            self.bytes += len as u64;
        }
        RxOutcome {
            flags: if out.decrypted { flags::OFFLOADED } else { 0 },
            resync_request: out.resync_request,
        }
    }

    fn resync(&mut self, seq: u32, record: Option<u64>) -> Result<(), CmdError> {
        match record {
            Some(record) => self.engine.resync(seq, record),
            None => self.engine.resync_reject(seq),
        }
        .map_err(|e| CmdError::Engine(e.to_string()))
    }

    fn stats(&self) -> StatsSnapshot {
        let c = self.engine.counters();
        StatsSnapshot {
            records: c.records_decrypted,
            bytes: self.bytes,
            resync_requests: c.resync_requests,
            resyncs: c.resyncs,
            auth_failures: c.auth_failures,
            dropped: 0,
        }
    }
}
