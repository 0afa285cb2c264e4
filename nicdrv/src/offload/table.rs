//! The data plane's context table: every installed engine, found by
//! context id (TX descriptors) and by inbound 4-tuple (received frames).
//! Drops, per-context and per-kind counters are kept here, once for every
//! kind.

use super::CmdError;
use super::{parse_tcp, ContextStats, Engine, Flow, RxOutcome, StatsSnapshot, TxAction};
use crate::counters::{inc, Counters};
use capnet_schema::offload_capnp::OffloadKind;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// What `Cmd::OffloadInstall` carries.
#[derive(Debug)]
pub struct NewContext {
    pub id: u32,
    pub flow: Flow,
    pub engine: Box<dyn Engine>,
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

/// What the engines did to a received frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxMark {
    /// Descriptor flags to add (`OFFLOADED`, `OFFLOAD_FAILED`).
    pub flags: u32,
    /// The descriptor's context field.
    pub context: u32,
    /// (context id, TCP sequence) of a resync request for the holder.
    pub resync_request: Option<(u32, u32)>,
}

/// A frame's (source, destination).
type Ends = (SocketAddr, SocketAddr);

struct Slot {
    kind: OffloadKind,
    flow: Flow,
    engine: Box<dyn Engine>,
    stats: Arc<ContextStats>,
    /// Frames naming the context dropped before they reached the engine.
    dropped_here: u64,
    /// What was last published (per-kind counters add what it grew by).
    published: StatsSnapshot,
}

impl Slot {
    fn publish(&mut self, c: &Counters) {
        let mut now = self.engine.stats();
        now.dropped += self.dropped_here;
        c.offload.grew(self.kind, &self.published, &now);
        self.stats.store(now);
        self.published = now;
    }
}

/// Every installed engine of the port.
#[derive(Default)]
pub struct Engines {
    by_id: HashMap<u32, Slot>,
    /// Inbound 4-tuple -> the contexts that see its frames (a connection's
    /// TX context, for the ACKs, and its RX context), in install order.
    by_inbound: HashMap<Ends, Vec<u32>>,
}

impl fmt::Debug for Engines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<_> = self.by_id.keys().collect();
        ids.sort_unstable();
        f.debug_struct("Engines").field("ids", &ids).finish()
    }
}

impl Engines {
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Installs a context (counts `offloadContexts`).
    pub fn install(&mut self, ctx: NewContext, c: &Counters) -> Result<(), InstallError> {
        let NewContext {
            id,
            flow,
            engine,
            stats,
        } = ctx;
        let kind = engine.kind();
        let key = flow.inbound();
        let peers = self.by_inbound.get(&key).map_or(&[][..], |v| &v[..]);
        if self.by_id.contains_key(&id) || peers.iter().any(|p| self.by_id[p].kind == kind) {
            return Err(InstallError::Duplicate);
        }
        self.by_inbound.entry(key).or_default().push(id);
        self.by_id.insert(
            id,
            Slot {
                kind,
                flow,
                engine,
                stats,
                dropped_here: 0,
                published: StatsSnapshot::default(),
            },
        );
        inc(&c.offload_contexts);
        c.offload.created(kind);
        tracing::debug!(id, %flow, kind = capnet_schema::offload::kind_name(kind), "offload engine installed");
        Ok(())
    }

    /// Deletes a context and everything it held (counts `offloadReleased`).
    /// False if there was none of that id.
    pub fn delete(&mut self, id: u32, c: &Counters) -> bool {
        let Some(mut slot) = self.by_id.remove(&id) else {
            return false;
        };
        let key = slot.flow.inbound();
        if let Some(ids) = self.by_inbound.get_mut(&key) {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                self.by_inbound.remove(&key);
            }
        }
        slot.publish(c);
        inc(&c.offload_released);
        c.offload.released(slot.kind);
        tracing::debug!(id, "offload engine deleted");
        true
    }

    /// Deletes every context; their ids.
    pub fn delete_all(&mut self, c: &Counters) -> Vec<u32> {
        let mut ids: Vec<u32> = self.by_id.keys().copied().collect();
        ids.sort_unstable();
        for id in &ids {
            self.delete(*id, c);
        }
        ids
    }

    /// The holder's answer to a resync request: `record` confirms the
    /// candidate at `seq`, `None` rejects it.
    pub fn resync(
        &mut self,
        id: u32,
        seq: u32,
        record: Option<u64>,
        c: &Counters,
    ) -> Result<(), CmdError> {
        let slot = self.by_id.get_mut(&id).ok_or(CmdError::Unknown)?;
        let res = slot.engine.resync(seq, record);
        slot.publish(c);
        res
    }

    /// A frame from the stack tagged `OFFLOAD_TX` naming context `id`:
    /// processed in place, or to be dropped.
    pub fn transmit(&mut self, frame: &mut [u8], id: u32, c: &Counters) -> TxAction {
        let slot = self.by_id.get_mut(&id);
        let Some(seg) = parse_tcp(frame) else {
            tracing::debug!(id, "OFFLOAD_TX frame that is not a TCP segment dropped");
            return dropped(slot, c);
        };
        if seg.payload.is_empty() {
            // Nothing to process (a pure ACK, a FIN), whatever it names.
            return TxAction::Send { changed: false };
        }
        let Some(slot) = slot else {
            tracing::debug!(id, "OFFLOAD_TX frame naming no context dropped");
            return dropped(None, c);
        };
        if (seg.src, seg.dst) != slot.flow.outbound() {
            tracing::debug!(id, flow = %slot.flow, src = %seg.src, dst = %seg.dst,
                "OFFLOAD_TX frame of another flow dropped");
            return dropped(Some(slot), c);
        }
        let action = match slot.engine.transmit(frame, &seg) {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(id, %e, "offload engine refused a segment; dropped");
                inc(&c.offload_tx_dropped);
                TxAction::Drop
            }
        };
        slot.publish(c);
        action
    }

    /// A received frame with a verified checksum, in the buffer that goes to
    /// the stack: every context of its flow sees it; the one that processed
    /// it names itself in the mark.
    pub fn receive(&mut self, frame: &mut [u8], c: &Counters) -> RxMark {
        let mut mark = RxMark::default();
        let Some(seg) = parse_tcp(frame) else {
            return mark;
        };
        let Some(ids) = self.by_inbound.get(&(seg.src, seg.dst)) else {
            return mark;
        };
        for id in ids {
            let Some(slot) = self.by_id.get_mut(id) else {
                continue;
            };
            let RxOutcome {
                flags,
                resync_request,
            } = slot.engine.receive(frame, &seg);
            if flags != 0 {
                mark.flags |= flags;
                mark.context = *id;
            }
            if let Some(seq) = resync_request {
                mark.resync_request = Some((*id, seq));
            }
            slot.publish(c);
        }
        mark
    }
}

/// Counts a frame dropped before an engine saw it.
fn dropped(slot: Option<&mut Slot>, c: &Counters) -> TxAction {
    inc(&c.offload_tx_dropped);
    if let Some(s) = slot {
        s.dropped_here += 1;
        s.publish(c);
    }
    TxAction::Drop
}

#[cfg(test)]
mod tests {
    use super::super::testframe::{tcp, ACK, PSH};
    use super::super::{parse_tcp, tls};
    use super::*;
    use capnet_offload::gcm::GcmKey;
    use capnet_offload::tls::TlsParams;
    use capnet_ring::flags;
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

    fn install(
        e: &mut Engines,
        c: &Counters,
        id: u32,
        engine: Box<dyn Engine>,
    ) -> Arc<ContextStats> {
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
            tls::engine(OffloadKind::TlsTx, params(1000), 0),
        );
        assert_eq!(
            e.install(
                NewContext {
                    id: 2,
                    flow: flow(),
                    engine: tls::engine(OffloadKind::TlsTx, params(1), 0),
                    stats: Arc::default(),
                },
                &c
            ),
            Err(InstallError::Duplicate)
        );
        let (framed, sealed) = record(0, b"hello, offload");
        let mut f = tcp(out, inb, 1000, 1, ACK | PSH, &framed);
        assert_eq!(e.transmit(&mut f, 1, &c), TxAction::Send { changed: true });
        let seg = parse_tcp(&f).unwrap();
        assert_eq!(&f[seg.payload], &sealed[..]);
        // A gap, an unknown id, another flow: dropped.
        let mut gap = tcp(out, inb, 5000, 1, ACK, &framed);
        assert_eq!(e.transmit(&mut gap, 1, &c), TxAction::Drop);
        let mut unknown = tcp(out, inb, 1000, 1, ACK, &framed);
        assert_eq!(e.transmit(&mut unknown, 9, &c), TxAction::Drop);
        let mut other = tcp(sa("10.0.0.1:40001"), inb, 1000, 1, ACK, &framed);
        assert_eq!(e.transmit(&mut other, 1, &c), TxAction::Drop);
        // A pure ACK is sent whatever it names.
        let mut pure = tcp(out, inb, 9, 1, ACK, b"");
        assert_eq!(
            e.transmit(&mut pure, 77, &c),
            TxAction::Send { changed: false }
        );
        let s = c.snapshot();
        let k = s.offload.get(OffloadKind::TlsTx);
        assert_eq!((k.records, s.offload_tx_dropped), (1, 3));
        assert_eq!(
            (k.contexts, k.dropped),
            (1, 2),
            "the unknown id is no kind's"
        );
        let st = stats.snapshot();
        assert_eq!((st.records, st.dropped), (1, 2));
        assert_eq!(st.bytes, framed.len() as u64);

        // The peer's ACK of everything frees the record: a retransmission
        // of it is refused from then on.
        let mut ackf = tcp(inb, out, 1, 1000 + framed.len() as u32, ACK, b"");
        assert_eq!(e.receive(&mut ackf, &c), RxMark::default());
        let mut again = tcp(out, inb, 1000, 1, ACK, &framed);
        assert_eq!(e.transmit(&mut again, 1, &c), TxAction::Drop);

        assert_eq!(
            e.resync(1, 0, Some(0), &c),
            Err(CmdError::WrongKind(OffloadKind::TlsTx)),
            "resync is for RX contexts"
        );
        assert!(e.delete(1, &c));
        assert!(!e.delete(1, &c));
        assert!(e.is_empty());
        let s = c.snapshot();
        assert_eq!((s.offload_contexts, s.offload_released), (1, 1));
        assert_eq!(s.offload.get(OffloadKind::TlsTx).released, 1);
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
            tls::engine(OffloadKind::TlsRx, params(500), 0),
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
        assert_eq!((m.flags, m.context), (flags::OFFLOADED, 3));
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
            e.resync(3, 12345, Some(2), &c),
            Err(CmdError::Engine("no resync candidate at 12345".to_string()))
        );
        e.resync(3, frames[2].0, Some(2), &c).unwrap();
        let mut f3 = frames[3].1.clone();
        let m = e.receive(&mut f3, &c);
        assert_eq!((m.flags, m.context), (flags::OFFLOADED, 3));
        let s = c.snapshot().offload.get(OffloadKind::TlsRx);
        assert_eq!((s.records, s.resync_requests), (2, 1));
        let st = stats.snapshot();
        assert_eq!((st.records, st.resync_requests, st.resyncs), (2, 1, 1));
        assert_eq!(e.delete_all(&c), vec![3]);
        assert_eq!(e.resync(3, 0, None, &c), Err(CmdError::Unknown));
        assert_eq!(c.snapshot().offload_released, 1);
    }
}
