//! The data plane's context table: every installed engine, found by
//! context id (TX descriptors) and by what it matches in received frames (a
//! TCP connection's inbound 4-tuple, an inbound SA's destination and SPI).
//! Drops, per-context and per-kind counters are kept here, once for every
//! kind.

use super::{
    parse_tcp, CmdError, ContextStats, Engine, Flow, Packet, RxOutcome, StatsSnapshot, TxAction,
};
use crate::counters::{inc, Counters};
use capnet_schema::offload::{kind_name, EspSa};
use capnet_schema::offload_capnp::OffloadKind;
use capnet_wire::esp::{esp_in, parse_esp};
use capnet_wire::ip::upper_layer;
use capnet_wire::tcp::tcp_in;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

/// The flow a context processes frames of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matches {
    /// A TCP connection, as this host sees it.
    Tcp(Flow),
    /// An ESP security association.
    Esp(EspSa),
}

impl fmt::Display for Matches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Matches::Tcp(flow) => fmt::Display::fmt(flow, f),
            Matches::Esp(sa) => fmt::Display::fmt(sa, f),
        }
    }
}

/// What received frames find contexts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    /// (source, destination) of a TCP segment.
    Tcp(SocketAddr, SocketAddr),
    /// (destination, SPI) of an ESP packet.
    Spi(IpAddr, u32),
}

impl Matches {
    /// The key of the received frames the context sees; an outbound SA
    /// sees none.
    fn key(&self) -> Option<Key> {
        match self {
            Matches::Tcp(flow) => {
                let (src, dst) = flow.inbound();
                Some(Key::Tcp(src, dst))
            }
            Matches::Esp(sa) => sa.inbound.then_some(Key::Spi(sa.local, sa.spi)),
        }
    }
}

/// What `Cmd::OffloadInstall` carries.
#[derive(Debug)]
pub struct NewContext {
    pub id: u32,
    pub flow: Matches,
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

struct Slot {
    kind: OffloadKind,
    flow: Matches,
    engine: Box<dyn Engine>,
    stats: Arc<ContextStats>,
    /// Frames naming the context dropped before they reached the engine.
    dropped_here: u64,
    /// What was last published (per-kind counters add what it grew by).
    published: StatsSnapshot,
}

impl Slot {
    /// Stores the engine's counters where the control plane reads them;
    /// nothing when they did not change (a TX engine that only learned an
    /// ACK), which is most received frames.
    fn publish(&mut self, c: &Counters) {
        let mut now = self.engine.stats();
        now.dropped += self.dropped_here;
        if now == self.published {
            return;
        }
        c.offload.grew(self.kind, &self.published, &now);
        self.stats.store(now);
        self.published = now;
    }
}

/// Every installed engine of the port.
#[derive(Default)]
pub struct Engines {
    by_id: HashMap<u32, Slot>,
    /// Key -> the contexts that see its frames (a connection's TX context,
    /// for the ACKs, and its RX context; an inbound SA's), in install order.
    by_key: HashMap<Key, Vec<u32>>,
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
        let taken = self
            .by_id
            .values()
            .any(|s| s.kind == kind && s.flow == flow);
        if taken || self.by_id.contains_key(&id) {
            return Err(InstallError::Duplicate);
        }
        if let Some(key) = flow.key() {
            self.by_key.entry(key).or_default().push(id);
        }
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
        tracing::debug!(id, %flow, kind = kind_name(kind), "offload engine installed");
        Ok(())
    }

    /// Deletes a context and everything it held (counts `offloadReleased`).
    /// False if there was none of that id.
    pub fn delete(&mut self, id: u32, c: &Counters) -> bool {
        let Some(mut slot) = self.by_id.remove(&id) else {
            return false;
        };
        if let Some(key) = slot.flow.key() {
            if let Some(ids) = self.by_key.get_mut(&key) {
                ids.retain(|i| *i != id);
                if ids.is_empty() {
                    self.by_key.remove(&key);
                }
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
    /// processed in place, or to be dropped. It must be a frame of the
    /// context's flow as this host sends it.
    pub fn transmit(&mut self, frame: &mut [u8], id: u32, c: &Counters) -> TxAction {
        let slot = self.by_id.get_mut(&id);
        let flow = slot.as_ref().map(|s| s.flow);
        if let Some(Matches::Esp(sa)) = flow {
            let Some(p) = parse_esp(frame) else {
                tracing::debug!(id, "OFFLOAD_TX frame that is not ESP dropped");
                return dropped(slot, c);
            };
            if (p.src, p.dst, p.header.spi) != (sa.local, sa.remote, sa.spi) || sa.inbound {
                tracing::debug!(
                    id,
                    spi = p.header.spi,
                    "OFFLOAD_TX frame of another SA dropped"
                );
                return dropped(slot, c);
            }
            return process(slot, frame, Packet::Esp(&p), c);
        }
        let Some(seg) = parse_tcp(frame) else {
            tracing::debug!(id, "OFFLOAD_TX frame that is not a TCP segment dropped");
            return dropped(slot, c);
        };
        if seg.payload.is_empty() {
            // Nothing to process (a pure ACK, a FIN), whatever it names.
            return TxAction::Send { changed: false };
        }
        let Some(Matches::Tcp(flow)) = flow else {
            tracing::debug!(id, "OFFLOAD_TX frame naming no context dropped");
            return dropped(None, c);
        };
        if (seg.src, seg.dst) != flow.outbound() {
            tracing::debug!(id, %flow, src = %seg.src, dst = %seg.dst,
                "OFFLOAD_TX frame of another flow dropped");
            return dropped(slot, c);
        }
        process(slot, frame, Packet::Tcp(&seg), c)
    }

    /// A received frame with a verified checksum, in the buffer that goes to
    /// the stack: every context that matches it sees it; the one that
    /// processed it names itself in the mark.
    pub fn receive(&mut self, frame: &mut [u8], c: &Counters) -> RxMark {
        // The IP layer is walked once, whatever it carries.
        let Some(ip) = upper_layer(frame) else {
            return RxMark::default();
        };
        if let Some(seg) = tcp_in(frame, &ip) {
            self.deliver(Key::Tcp(seg.src, seg.dst), frame, Packet::Tcp(&seg), c)
        } else if let Some(p) = esp_in(frame, &ip) {
            self.deliver(Key::Spi(p.dst, p.header.spi), frame, Packet::Esp(&p), c)
        } else {
            RxMark::default()
        }
    }

    fn deliver(&mut self, key: Key, frame: &mut [u8], packet: Packet<'_>, c: &Counters) -> RxMark {
        let mut mark = RxMark::default();
        let Some(ids) = self.by_key.get(&key) else {
            return mark;
        };
        for id in ids {
            let Some(slot) = self.by_id.get_mut(id) else {
                continue;
            };
            let started = Instant::now();
            let RxOutcome {
                flags,
                resync_request,
            } = slot.engine.receive(frame, packet);
            c.offload.ran(slot.kind, started.elapsed());
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

/// Hands a frame of its flow to a context's engine.
fn process(
    slot: Option<&mut Slot>,
    frame: &mut [u8],
    packet: Packet<'_>,
    c: &Counters,
) -> TxAction {
    let Some(slot) = slot else {
        return dropped(None, c);
    };
    let started = Instant::now();
    let done = slot.engine.transmit(frame, packet);
    c.offload.ran(slot.kind, started.elapsed());
    let action = match done {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!(kind = kind_name(slot.kind), %e, "offload engine refused a frame; dropped");
            inc(&c.offload_tx_dropped);
            TxAction::Drop
        }
    };
    slot.publish(c);
    action
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
                flow: Matches::Tcp(flow()),
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
                    flow: Matches::Tcp(flow()),
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

    /// An engine that counts what it is handed (the table's side of the
    /// contract, for a flow of any kind).
    struct Counting {
        kind: OffloadKind,
        seen: u64,
    }

    impl Engine for Counting {
        fn kind(&self) -> OffloadKind {
            self.kind
        }

        fn transmit(&mut self, _: &mut [u8], p: Packet<'_>) -> Result<TxAction, String> {
            assert!(matches!(p, Packet::Esp(_)));
            self.seen += 1;
            Ok(TxAction::Send { changed: true })
        }

        fn receive(&mut self, _: &mut [u8], p: Packet<'_>) -> RxOutcome {
            let Packet::Esp(esp) = p else {
                panic!("an ESP context handed {p:?}")
            };
            self.seen += 1;
            RxOutcome {
                flags: flags::OFFLOADED | flags::OFFLOAD_FAILED,
                resync_request: Some(esp.header.seq),
            }
        }

        fn stats(&self) -> StatsSnapshot {
            StatsSnapshot {
                records: self.seen,
                ..StatsSnapshot::default()
            }
        }
    }

    /// Ethernet + IPv4 + ESP from `src` to `dst`.
    fn esp_frame(src: [u8; 4], dst: [u8; 4], spi: u32, seq: u32) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(20u16 + 8 + 16).to_be_bytes());
        ip[8] = 64;
        ip[9] = 50;
        ip[12..16].copy_from_slice(&src);
        ip[16..20].copy_from_slice(&dst);
        f.extend_from_slice(&ip);
        let mut h = [0u8; 8];
        capnet_wire::esp::EspHeader { spi, seq }.emit(&mut h);
        f.extend_from_slice(&h);
        f.extend_from_slice(&[0xEE; 16]);
        f
    }

    #[test]
    fn esp_contexts_are_found_by_spi_and_checked_by_sa() {
        let c = Counters::default();
        let mut e = Engines::default();
        let (me, peer) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let sa = |spi, inbound| EspSa {
            local: me.into(),
            remote: peer.into(),
            spi,
            inbound,
        };
        for (id, kind, flow) in [
            (1, OffloadKind::EspCryptoRx, sa(0x100, true)),
            (2, OffloadKind::EspCryptoTx, sa(0x200, false)),
        ] {
            e.install(
                NewContext {
                    id,
                    flow: Matches::Esp(flow),
                    engine: Box::new(Counting { kind, seen: 0 }),
                    stats: Arc::default(),
                },
                &c,
            )
            .unwrap();
        }
        // Inbound: found by (destination, SPI); another SPI or another
        // destination reaches no engine.
        let m = e.receive(&mut esp_frame(peer, me, 0x100, 7), &c);
        assert_eq!(
            m,
            RxMark {
                flags: flags::OFFLOADED | flags::OFFLOAD_FAILED,
                context: 1,
                resync_request: Some((1, 7)),
            }
        );
        assert_eq!(
            e.receive(&mut esp_frame(peer, me, 0x101, 7), &c),
            RxMark::default()
        );
        assert_eq!(
            e.receive(&mut esp_frame(peer, peer, 0x100, 7), &c),
            RxMark::default()
        );
        // An outbound SA sees no received frame, even one of its SPI.
        assert_eq!(
            e.receive(&mut esp_frame(peer, me, 0x200, 1), &c),
            RxMark::default()
        );
        // Outbound: only frames of the SA, as this host sends them.
        let ok = TxAction::Send { changed: true };
        assert_eq!(e.transmit(&mut esp_frame(me, peer, 0x200, 1), 2, &c), ok);
        assert_eq!(
            e.transmit(&mut esp_frame(me, peer, 0x201, 1), 2, &c),
            TxAction::Drop
        );
        assert_eq!(
            e.transmit(&mut esp_frame(peer, me, 0x200, 1), 2, &c),
            TxAction::Drop
        );
        assert_eq!(
            e.transmit(&mut esp_frame(me, peer, 0x100, 1), 1, &c),
            TxAction::Drop
        );
        let mut tcp_frame = tcp(
            "10.0.0.1:1".parse().unwrap(),
            "10.0.0.2:2".parse().unwrap(),
            1,
            1,
            ACK,
            b"x",
        );
        assert_eq!(e.transmit(&mut tcp_frame, 2, &c), TxAction::Drop);
        let s = c.snapshot();
        assert_eq!(s.offload_tx_dropped, 4);
        let tx = s.offload.get(OffloadKind::EspCryptoTx);
        assert_eq!((tx.contexts, tx.records, tx.dropped), (1, 1, 3));
        assert_eq!(s.offload.get(OffloadKind::EspCryptoRx).records, 1);
        // One context per SA and kind.
        let again = NewContext {
            id: 3,
            flow: Matches::Esp(sa(0x100, true)),
            engine: Box::new(Counting {
                kind: OffloadKind::EspCryptoRx,
                seen: 0,
            }),
            stats: Arc::default(),
        };
        assert_eq!(e.install(again, &c), Err(InstallError::Duplicate));
        assert_eq!(e.delete_all(&c), vec![1, 2]);
        assert_eq!(
            e.receive(&mut esp_frame(peer, me, 0x100, 8), &c),
            RxMark::default()
        );
    }
}
