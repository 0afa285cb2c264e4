//! The data plane's half of the offload contexts: the engines, looked up by
//! context id (TX descriptors) and by 4-tuple (received frames).

use super::{parse_tcp, ContextStats, Flow, Kind, StatsSnapshot};
use crate::counters::{add, inc, Counters};
use capnet_offload::tls::{RxCounters, TlsRxEngine, TlsTxEngine};
use capnet_ring::flags;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// A context's engine, as installed.
pub enum Engine {
    Tx(Box<TlsTxEngine>),
    Rx(Box<TlsRxEngine>),
}

impl Engine {
    pub fn kind(&self) -> Kind {
        match self {
            Engine::Tx(_) => Kind::TlsTx,
            Engine::Rx(_) => Kind::TlsRx,
        }
    }
}

// Never the engines' state (it holds the key schedule and the IV).
impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Engine({})", self.kind().name())
    }
}

/// What `Cmd::OffloadInstall` carries.
#[derive(Debug)]
pub struct NewContext {
    pub id: u32,
    pub flow: Flow,
    pub engine: Engine,
    pub stats: Arc<ContextStats>,
}

/// Why the data plane refused to install a context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstallError {
    /// The ring session the context was made for is gone.
    NoSession,
    /// The flow already has a context of that kind, or the id is taken.
    Duplicate,
}

/// Why a command on one context failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CmdError {
    /// No such context in the data plane (deleted or revoked meanwhile).
    Unknown,
    /// Not an RX context.
    NotRx,
    /// The engine refused (its message).
    Engine(String),
}

/// What to do with a frame tagged `TLS_TX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxVerdict {
    /// Send it; `sealed`: the payload changed (fill the checksums).
    Send { sealed: bool },
    /// Drop it (counted): it may hold cleartext.
    Drop,
}

/// What the RX engines did to a received frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxMark {
    /// Descriptor flags to add (`TLS_DECRYPTED`).
    pub flags: u32,
    /// The descriptor's context field.
    pub context: u32,
    /// (context id, TCP sequence) of a resync request for the holder.
    pub resync_request: Option<(u32, u32)>,
}

struct TxCtx {
    id: u32,
    flow: Flow,
    engine: Box<TlsTxEngine>,
    stats: Arc<ContextStats>,
    /// Frames of the context dropped before they reached the engine.
    dropped_here: u64,
}

impl TxCtx {
    fn publish(&self) {
        let c = self.engine.counters();
        self.stats.store(StatsSnapshot {
            records: c.records_sealed,
            bytes: c.bytes,
            resync_requests: 0,
            resyncs: 0,
            auth_failures: 0,
            dropped: c.dropped + self.dropped_here,
        });
    }
}

struct RxCtx {
    id: u32,
    engine: Box<TlsRxEngine>,
    stats: Arc<ContextStats>,
    bytes: u64,
}

impl RxCtx {
    fn publish(&self) {
        let c = self.engine.counters();
        self.stats.store(StatsSnapshot {
            records: c.records_decrypted,
            bytes: self.bytes,
            resync_requests: c.resync_requests,
            resyncs: c.resyncs,
            auth_failures: c.auth_failures,
            dropped: 0,
        });
    }
}

/// A frame's (source, destination).
type Ends = (SocketAddr, SocketAddr);

/// Every installed engine of the port.
#[derive(Default)]
pub struct Engines {
    tx: HashMap<u32, TxCtx>,
    /// Inbound 4-tuple -> TX context id: whose records the received ACKs free.
    tx_by_inbound: HashMap<Ends, u32>,
    /// Inbound 4-tuple -> RX context.
    rx: HashMap<Ends, RxCtx>,
    rx_ids: HashMap<u32, Ends>,
}

impl fmt::Debug for Engines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engines")
            .field("tx", &self.tx.keys().collect::<Vec<_>>())
            .field("rx", &self.rx_ids.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Engines {
    pub fn is_empty(&self) -> bool {
        self.tx.is_empty() && self.rx.is_empty()
    }

    pub fn len(&self) -> usize {
        self.tx.len() + self.rx.len()
    }

    /// Installs a context (counts `offloadContexts`).
    pub fn install(&mut self, ctx: NewContext, c: &Counters) -> Result<(), InstallError> {
        let NewContext {
            id,
            flow,
            engine,
            stats,
        } = ctx;
        if self.tx.contains_key(&id) || self.rx_ids.contains_key(&id) {
            return Err(InstallError::Duplicate);
        }
        let key = flow.inbound();
        match engine {
            Engine::Tx(engine) => {
                if self.tx_by_inbound.contains_key(&key) {
                    return Err(InstallError::Duplicate);
                }
                self.tx_by_inbound.insert(key, id);
                self.tx.insert(
                    id,
                    TxCtx {
                        id,
                        flow,
                        engine,
                        stats,
                        dropped_here: 0,
                    },
                );
            }
            Engine::Rx(engine) => {
                if self.rx.contains_key(&key) {
                    return Err(InstallError::Duplicate);
                }
                self.rx_ids.insert(id, key);
                self.rx.insert(
                    key,
                    RxCtx {
                        id,
                        engine,
                        stats,
                        bytes: 0,
                    },
                );
            }
        }
        inc(&c.offload_contexts);
        tracing::debug!(id, %flow, "offload engine installed");
        Ok(())
    }

    /// Deletes a context and everything it held (counts `offloadReleased`).
    /// False if there was none of that id.
    pub fn delete(&mut self, id: u32, c: &Counters) -> bool {
        let gone = if let Some(t) = self.tx.remove(&id) {
            self.tx_by_inbound.remove(&t.flow.inbound());
            t.publish();
            true
        } else if let Some(key) = self.rx_ids.remove(&id) {
            if let Some(r) = self.rx.remove(&key) {
                r.publish();
            }
            true
        } else {
            false
        };
        if gone {
            inc(&c.offload_released);
            tracing::debug!(id, "offload engine deleted");
        }
        gone
    }

    /// Deletes every context; their ids.
    pub fn delete_all(&mut self, c: &Counters) -> Vec<u32> {
        let mut ids: Vec<u32> = self.tx.keys().chain(self.rx_ids.keys()).copied().collect();
        ids.sort_unstable();
        for id in &ids {
            self.delete(*id, c);
        }
        ids
    }

    /// The holder's answer to a resync request: `rec_seq` confirms the
    /// candidate at `tcp_seq`, `None` rejects it.
    pub fn resync(&mut self, id: u32, tcp_seq: u32, rec_seq: Option<u64>) -> Result<(), CmdError> {
        let Some(key) = self.rx_ids.get(&id) else {
            return Err(if self.tx.contains_key(&id) {
                CmdError::NotRx
            } else {
                CmdError::Unknown
            });
        };
        let Some(r) = self.rx.get_mut(key) else {
            return Err(CmdError::Unknown);
        };
        let res = match rec_seq {
            Some(rec_seq) => r.engine.resync(tcp_seq, rec_seq),
            None => r.engine.resync_reject(tcp_seq),
        };
        r.publish();
        res.map_err(|e| CmdError::Engine(e.to_string()))
    }

    /// A frame from the stack tagged `TLS_TX` naming context `id`: sealed in
    /// place, or to be dropped.
    pub fn transmit(&mut self, frame: &mut [u8], id: u32, c: &Counters) -> TxVerdict {
        let Some(seg) = parse_tcp(frame) else {
            tracing::debug!(id, "TLS_TX frame that is not a TCP segment dropped");
            inc(&c.offload_tx_dropped);
            if let Some(t) = self.tx.get_mut(&id) {
                t.dropped_here += 1;
                t.publish();
            }
            return TxVerdict::Drop;
        };
        if seg.payload.is_empty() {
            return TxVerdict::Send { sealed: false };
        }
        let Some(t) = self.tx.get_mut(&id) else {
            tracing::debug!(id, "TLS_TX frame naming no context dropped");
            inc(&c.offload_tx_dropped);
            return TxVerdict::Drop;
        };
        if (seg.src, seg.dst) != t.flow.outbound() {
            tracing::debug!(id, flow = %t.flow, src = %seg.src, dst = %seg.dst,
                "TLS_TX frame of another flow dropped");
            inc(&c.offload_tx_dropped);
            t.dropped_here += 1;
            t.publish();
            return TxVerdict::Drop;
        }
        let verdict = match t.engine.process(seg.seq, &mut frame[seg.payload]) {
            Ok(out) => {
                add(&c.tls_tx_records, out.records_sealed as u64);
                TxVerdict::Send { sealed: true }
            }
            Err(e) => {
                tracing::debug!(id = t.id, %e, "TLS TX engine refused a segment; dropped");
                inc(&c.offload_tx_dropped);
                TxVerdict::Drop
            }
        };
        t.publish();
        verdict
    }

    /// A received frame with a verified checksum, in the buffer that goes to
    /// the stack: TX contexts learn its ACK, RX contexts open its records.
    pub fn receive(&mut self, frame: &mut [u8], c: &Counters) -> RxMark {
        let mut mark = RxMark::default();
        let Some(seg) = parse_tcp(frame) else {
            return mark;
        };
        let key = (seg.src, seg.dst);
        if let (Some(ack), Some(id)) = (seg.ack, self.tx_by_inbound.get(&key)) {
            if let Some(t) = self.tx.get_mut(id) {
                if !seg.rst {
                    t.engine.acked(ack);
                }
            }
        }
        if seg.payload.is_empty() || seg.syn || seg.rst {
            return mark;
        }
        let Some(r) = self.rx.get_mut(&key) else {
            return mark;
        };
        let before = r.engine.counters();
        let len = seg.payload.len();
        let expected_before = r.engine.expected();
        let out = r.engine.process(seg.seq, &mut frame[seg.payload]);
        tracing::trace!(id = r.id, seq = seg.seq, len, expected_before, decrypted = out.decrypted, in_sync = r.engine.in_sync(), resync = ?out.resync_request, "tls rx");
        let after = r.engine.counters();
        count_rx(c, &before, &after);
        if out.decrypted {
            mark.flags = flags::TLS_DECRYPTED;
            mark.context = r.id;
            r.bytes += len as u64;
        }
        mark.resync_request = out.resync_request.map(|s| (r.id, s));
        r.publish();
        mark
    }
}

fn count_rx(c: &Counters, before: &RxCounters, after: &RxCounters) {
    let d = |a: u64, b: u64| a.wrapping_sub(b);
    add(
        &c.tls_rx_records,
        d(after.records_decrypted, before.records_decrypted),
    );
    add(
        &c.tls_rx_auth_failures,
        d(after.auth_failures, before.auth_failures),
    );
    add(
        &c.tls_rx_resync_requests,
        d(after.resync_requests, before.resync_requests),
    );
}

#[cfg(test)]
mod tests {
    use super::super::testframe::{tcp, ACK, PSH};
    use super::*;
    use capnet_offload::gcm::GcmKey;
    use capnet_offload::tls::TlsParams;
    use capnet_wire::tls::{self as wire_tls, ContentType, RecordHeader, Version, TAG_LEN};

    const KEY: [u8; 16] = [7; 16];
    const IV: [u8; 12] = [9; 12];

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn flow() -> Flow {
        Flow {
            local: sa("10.0.0.1:40000"),
            remote: sa("10.0.0.2:443"),
        }
    }

    fn params(tcp_seq: u32) -> TlsParams {
        TlsParams {
            version: Version::Tls13,
            key: GcmKey::new(&KEY).unwrap(),
            iv: IV,
            tcp_seq,
            rec_seq: 0,
        }
    }

    /// One TLS 1.3 record framed for the NIC (plaintext and inner type, room
    /// for the tag), and the same record sealed by the engine's GCM.
    fn record(rec_seq: u64, plain: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let body_len = plain.len() + 1 + TAG_LEN;
        let mut framed = vec![0u8; 5 + body_len];
        RecordHeader {
            content_type: ContentType::ApplicationData,
            body_len,
        }
        .emit(&mut framed);
        framed[5..5 + plain.len()].copy_from_slice(plain);
        framed[5 + plain.len()] = 23;
        let mut sealed = framed.clone();
        let nonce = wire_tls::nonce(Version::Tls13, &IV, rec_seq);
        let aad = wire_tls::aad(
            Version::Tls13,
            rec_seq,
            ContentType::ApplicationData,
            body_len,
        );
        let key = GcmKey::new(&KEY).unwrap();
        let end = sealed.len() - TAG_LEN;
        let tag = capnet_offload::gcm::seal(&key, &nonce, aad.as_ref(), &mut sealed[5..end]);
        sealed[end..].copy_from_slice(&tag);
        (framed, sealed)
    }

    fn install(e: &mut Engines, c: &Counters, id: u32, engine: Engine) -> Arc<ContextStats> {
        let stats = Arc::new(ContextStats::default());
        e.install(
            NewContext {
                id,
                flow: flow(),
                engine,
                stats: stats.clone(),
            },
            c,
        )
        .unwrap();
        stats
    }

    #[test]
    fn tx_seals_and_drops_what_it_cannot() {
        let c = Counters::default();
        let mut e = Engines::default();
        let (out, inb) = flow().outbound();
        let stats = install(
            &mut e,
            &c,
            1,
            Engine::Tx(Box::new(TlsTxEngine::new(params(1000)))),
        );
        assert_eq!(
            e.install(
                NewContext {
                    id: 2,
                    flow: flow(),
                    engine: Engine::Tx(Box::new(TlsTxEngine::new(params(1)))),
                    stats: Arc::default(),
                },
                &c
            ),
            Err(InstallError::Duplicate)
        );
        let (framed, sealed) = record(0, b"hello, offload");
        let mut f = tcp(out, inb, 1000, 1, ACK | PSH, &framed);
        assert_eq!(e.transmit(&mut f, 1, &c), TxVerdict::Send { sealed: true });
        let seg = parse_tcp(&f).unwrap();
        assert_eq!(&f[seg.payload], &sealed[..]);
        // A gap, an unknown id, another flow: dropped.
        let mut gap = tcp(out, inb, 5000, 1, ACK, &framed);
        assert_eq!(e.transmit(&mut gap, 1, &c), TxVerdict::Drop);
        let mut unknown = tcp(out, inb, 1000, 1, ACK, &framed);
        assert_eq!(e.transmit(&mut unknown, 9, &c), TxVerdict::Drop);
        let mut other = tcp(sa("10.0.0.1:40001"), inb, 1000, 1, ACK, &framed);
        assert_eq!(e.transmit(&mut other, 1, &c), TxVerdict::Drop);
        // A pure ACK is sent whatever it names.
        let mut pure = tcp(out, inb, 9, 1, ACK, b"");
        assert_eq!(
            e.transmit(&mut pure, 77, &c),
            TxVerdict::Send { sealed: false }
        );
        let s = c.snapshot();
        assert_eq!((s.tls_tx_records, s.offload_tx_dropped), (1, 3));
        let st = stats.snapshot();
        assert_eq!((st.records, st.dropped), (1, 2));
        assert_eq!(st.bytes, framed.len() as u64);

        // The peer's ACK of everything frees the record: a retransmission
        // of it is refused from then on.
        let mut ackf = tcp(inb, out, 1, 1000 + framed.len() as u32, ACK, b"");
        assert_eq!(e.receive(&mut ackf, &c), RxMark::default());
        let mut again = tcp(out, inb, 1000, 1, ACK, &framed);
        assert_eq!(e.transmit(&mut again, 1, &c), TxVerdict::Drop);

        assert_eq!(
            e.resync(1, 0, Some(0)),
            Err(CmdError::NotRx),
            "resync is for RX contexts"
        );
        assert!(e.delete(1, &c));
        assert!(!e.delete(1, &c));
        assert!(e.is_empty());
        let s = c.snapshot();
        assert_eq!((s.offload_contexts, s.offload_released), (1, 1));
    }

    #[test]
    fn rx_opens_marks_and_asks_for_resync() {
        let c = Counters::default();
        let mut e = Engines::default();
        let (out, inb) = flow().outbound();
        let stats = install(
            &mut e,
            &c,
            3,
            Engine::Rx(Box::new(TlsRxEngine::new(params(500)))),
        );
        let recs: Vec<(Vec<u8>, Vec<u8>)> = (0..4)
            .map(|i| record(i, format!("record number {i}").as_bytes()))
            .collect();
        let mut seq = 500u32;
        let mut frames = Vec::new();
        for (_, sealed) in &recs {
            frames.push((seq, tcp(inb, out, seq, 1, ACK | PSH, sealed)));
            seq += sealed.len() as u32;
        }
        // In order: opened and marked.
        let mut f0 = frames[0].1.clone();
        let m = e.receive(&mut f0, &c);
        assert_eq!((m.flags, m.context), (flags::TLS_DECRYPTED, 3));
        let p = parse_tcp(&f0).unwrap().payload;
        assert_eq!(
            &f0[p.start + 5..p.end - TAG_LEN],
            &recs[0].0[5..recs[0].0.len() - TAG_LEN]
        );
        // Our own outbound frames are not for the RX engine.
        let mut mine = tcp(out, inb, 1, 500, ACK, &recs[1].1);
        assert_eq!(e.receive(&mut mine, &c), RxMark::default());
        // Record 1 lost: record 2 arrives untouched, with a resync request.
        let mut f2 = frames[2].1.clone();
        let m = e.receive(&mut f2, &c);
        assert_eq!(m.flags, 0);
        assert_eq!(f2, frames[2].1);
        assert_eq!(m.resync_request, Some((3, frames[2].0)));
        assert_eq!(
            e.resync(3, 12345, Some(2)),
            Err(CmdError::Engine("no resync candidate at 12345".to_string()))
        );
        e.resync(3, frames[2].0, Some(2)).unwrap();
        let mut f3 = frames[3].1.clone();
        let m = e.receive(&mut f3, &c);
        assert_eq!((m.flags, m.context), (flags::TLS_DECRYPTED, 3));
        let s = c.snapshot();
        assert_eq!((s.tls_rx_records, s.tls_rx_resync_requests), (2, 1));
        let st = stats.snapshot();
        assert_eq!((st.records, st.resync_requests, st.resyncs), (2, 1, 1));
        assert_eq!(e.delete_all(&c), vec![3]);
        assert_eq!(e.resync(3, 0, None), Err(CmdError::Unknown));
        assert_eq!(c.snapshot().offload_released, 1);
    }
}
