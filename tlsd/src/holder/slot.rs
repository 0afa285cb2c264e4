//! One direction of a connection's offload (TX or RX): the holder machine
//! that decides, and what performing each of its actions means for TLS.
//!
//! The calls block (libclient's), so each action's answer is fed back at
//! once; the machine still decides every step, so the order cannot drift.

use super::{Common, Io};
use crate::conn::DeviceStart;
use crate::record::Cipher;
use crate::stats::Stats;
use capnet_holder::{Action, ContextId, CreateError, Egress, Event, Holder, Kind};
use capnet_wire::tcp::{SeqNumber, StreamBase};
use capnet_wire::tls::Version;
use libclient::{OffloadContext, OffloadEvent, OffloadKind, TlsCipher, TlsOffloadParams};
use std::io;
use std::time::Instant;
use zeroize::Zeroize;

/// Which direction a slot serves: what differs between TLS TX and RX.
pub trait Direction: Kind<Position = u64> {
    const KIND: OffloadKind;
    /// "TX" or "RX", in log lines (the benchmarks look for them).
    const SHORT: &'static str;
}

impl Direction for capnet_holder::TlsTx {
    const KIND: OffloadKind = OffloadKind::TlsTx;
    const SHORT: &'static str = "TX";
}

impl Direction for capnet_holder::TlsRx {
    const KIND: OffloadKind = OffloadKind::TlsRx;
    const SHORT: &'static str = "RX";
}

/// The context a direction holds.
pub struct Bound {
    pub id: ContextId,
    pub ctx: OffloadContext,
    pub port: String,
}

impl Bound {
    /// The stream offset of the NIC's sequence number `seq` (a resync
    /// request: at or after where the context started).
    fn offset_of(&self, seq: u32) -> u64 {
        self.ctx.stream_offset_of(seq, self.ctx.stream_offset())
    }

    fn seq_of(&self, offset: u64) -> u32 {
        StreamBase::new(SeqNumber(self.ctx.tcp_seq()), self.ctx.stream_offset())
            .seq_of(offset)
            .0
    }
}

pub struct Slot<K: Direction> {
    machine: Holder<K>,
    pub bound: Option<Bound>,
    /// Where the paused software path stands, with the keys: from
    /// `PauseSoftware` to `Create`.
    start: Option<DeviceStart>,
    /// TX: the framed records still in flight, sealed in software (their
    /// stream offset, the bytes), from the switch to the drain.
    replacement: Option<(u64, Vec<u8>)>,
    /// TX: replacement bytes handed over, for the log.
    replaced: usize,
}

fn params(start: &DeviceStart) -> Option<TlsOffloadParams> {
    let cipher = match start.keys.cipher {
        Cipher::Aes128Gcm => TlsCipher::Aes128Gcm,
        Cipher::Aes256Gcm => TlsCipher::Aes256Gcm,
        Cipher::Chacha20Poly1305 => return None,
    };
    Some(TlsOffloadParams {
        version: match start.keys.version {
            Version::Tls12 => 0x0303,
            Version::Tls13 => 0x0304,
        },
        cipher,
        key: start.keys.key.clone(),
        iv: start.keys.iv,
        record_seq: start.rec_seq,
    })
}

/// A failed context call whose context is gone anyway (released, revoked,
/// or its driver died) is not worth a log line.
fn gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotConnected | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

impl<K: Direction> Slot<K> {
    pub fn new(egress: Egress) -> Slot<K> {
        Slot {
            machine: Holder::new(egress),
            bound: None,
            start: None,
            replacement: None,
            replaced: 0,
        }
    }

    /// Feeds one event, then performs what follows.
    pub fn feed(&mut self, ev: Event<u64>, io: &mut Io) {
        if let Err(why) = self.machine.handle(ev.clone()) {
            tracing::debug!(kind = K::NAME, ?ev, %why, "offload event dropped");
        }
        self.run(io);
    }

    /// Performs the machine's actions until it waits for news.
    pub fn run(&mut self, io: &mut Io) {
        while let Some(action) = self.machine.poll_action() {
            if let Some(answer) = self.perform(action, io) {
                if let Err(why) = self.machine.handle(answer.clone()) {
                    tracing::warn!(kind = K::NAME, ?answer, %why, "offload answer dropped");
                }
            }
        }
    }

    /// What the NIC said about the held context, as machine events.
    pub fn nic_events(&self) -> Vec<Event<u64>> {
        let Some(b) = &self.bound else {
            return Vec::new();
        };
        std::iter::from_fn(|| b.ctx.try_event())
            .map(|ev| match ev {
                OffloadEvent::ResyncRequest { tcp_seq } => Event::ResyncRequested {
                    ctx: b.id,
                    at: b.offset_of(tcp_seq),
                },
                OffloadEvent::Revoked { reason } => {
                    tracing::info!(%reason, "the NIC revoked the {} context", K::SHORT);
                    Event::Revoked { ctx: b.id }
                }
            })
            .collect()
    }

    fn perform(&mut self, action: Action<u64>, io: &mut Io) -> Option<Event<u64>> {
        match action {
            Action::PauseSoftware => Some(self.pause(io)),
            Action::Create { at, .. } => Some(self.create(at, io)),
            Action::Activate { .. } => {
                match K::KIND {
                    OffloadKind::TlsTx => {
                        io.conn.begin_device_tx();
                        io.common.pruned_at = 0;
                    }
                    _ => io.conn.set_device_rx(true),
                }
                io.common.bound_now = true;
                None
            }
            // Nothing was sealed or opened meanwhile (the calls block).
            Action::ResumeSoftware { .. } => {
                self.start = None;
                None
            }
            Action::SwitchToSoftware { ctx } => Some(self.switch(ctx, io)),
            Action::Drain { ctx } => {
                self.drain(io);
                Some(Event::Drained { ctx })
            }
            Action::Release { ctx } => {
                self.release(ctx, io.common);
                Some(Event::Released { ctx })
            }
            Action::LocateRecord { at, .. } => {
                io.conn.watch_record_start(at);
                None
            }
            Action::Resync { ctx, at, record } => {
                self.resync(ctx, at, record, &io.common.stats);
                None
            }
        }
    }

    /// Where a context would start, and whether this connection can be
    /// offloaded at all (state, cipher).
    fn pause(&mut self, io: &mut Io) -> Event<u64> {
        let start = match K::KIND {
            OffloadKind::TlsTx => io.conn.device_tx_start(),
            _ => io.conn.device_rx_start(),
        };
        match start.filter(|s| params(s).is_some()) {
            Some(s) => {
                let at = s.stream_offset;
                self.start = Some(s);
                Event::SoftwarePaused { at }
            }
            None => Event::CannotOffload,
        }
    }

    /// Mints a context on the connection's egress port. A port without TLS
    /// offload answers `unsupported`.
    fn create(&mut self, at: u64, io: &mut Io) -> Event<u64> {
        let kind = K::KIND;
        let Some((start, mut p)) = self.start.take().and_then(|s| params(&s).map(|p| (s, p)))
        else {
            tracing::warn!(?kind, "create asked for without a pause");
            return Event::CreateFailed(CreateError::Refused);
        };
        debug_assert_eq!(
            start.stream_offset, at,
            "a context starts where software stopped"
        );
        let began = Instant::now();
        let made = io.tcp.offload_tls(kind, &p, start.stream_offset);
        // Our copy of the key is done with (the context holds its own).
        p.key.zeroize();
        p.iv.zeroize();
        match made {
            Ok(ctx) => {
                let info = ctx.initial_info();
                let port = info.port.clone();
                tracing::info!(
                    ?kind,
                    %port,
                    context = info.id,
                    offset = start.stream_offset,
                    took_us = began.elapsed().as_micros() as u64,
                    "TLS offloaded"
                );
                let id = io.common.next_id();
                self.bound = Some(Bound {
                    id,
                    ctx,
                    port: port.clone(),
                });
                io.common.generation += 1;
                Event::Created { ctx: id, port }
            }
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                tracing::debug!(?kind, %e, "egress port has no TLS offload; software");
                Event::CreateFailed(CreateError::Unsupported)
            }
            Err(e) => {
                tracing::info!(?kind, %e, "TLS offload refused; software");
                Event::CreateFailed(CreateError::Refused)
            }
        }
    }

    /// Step 1. TX: records are sealed here from now on; the framed ones
    /// still in flight are sealed here too, and netsrv sends those bytes
    /// instead (at the drain).
    fn switch(&mut self, ctx: ContextId, io: &mut Io) -> Event<u64> {
        let at = match K::KIND {
            OffloadKind::TlsTx => {
                let unacked = io.tcp.send_unacked().unwrap_or(0);
                self.replacement = Some(io.conn.end_device_tx(unacked));
                io.conn.tx_offset()
            }
            _ => {
                io.conn.set_device_rx(false);
                io.conn.rx_offset()
            }
        };
        Event::SoftwareResumed { ctx, at }
    }

    /// Step 2: netsrv answers once no descriptor naming the context is in
    /// flight on the old port.
    fn drain(&mut self, io: &mut Io) {
        let kind = K::KIND;
        let (offset, bytes) = match kind {
            OffloadKind::TlsTx => self
                .replacement
                .take()
                .unwrap_or_else(|| (io.conn.tx_offset(), Vec::new())),
            _ => (0, Vec::new()),
        };
        self.replaced = bytes.len();
        if let Err(e) = io.tcp.offload_stop(kind, offset, &bytes) {
            tracing::warn!(%e, "offloadStop ({}) failed", K::SHORT);
        }
    }

    /// Step 3: delete it in the NIC.
    fn release(&mut self, ctx: ContextId, common: &mut Common) {
        let kind = K::KIND;
        let Some(b) = self.bound.take_if(|b| b.id == ctx) else {
            tracing::warn!(?kind, %ctx, "release of a context not held");
            return;
        };
        common.generation += 1;
        if let Err(e) = b.ctx.release() {
            if !gone(&e) {
                tracing::warn!(%e, "releasing the {} context failed", K::SHORT);
            }
        }
        tracing::info!(port = %b.port, replaced = self.replaced, "{} context revoked", K::NAME);
        self.replaced = 0;
    }

    /// Answers the NIC's resync request at `at` as the record layer found.
    fn resync(&self, ctx: ContextId, at: u64, record: Option<u64>, stats: &Stats) {
        let Some(b) = self.bound.as_ref().filter(|b| b.id == ctx) else {
            return;
        };
        let seq = b.seq_of(at);
        let r = match record {
            Some(n) => b.ctx.resync(seq, n).map(|()| {
                Stats::inc(&stats.rx_device_resync);
            }),
            None => b.ctx.resync_reject(seq),
        };
        if let Err(e) = r {
            if !gone(&e) {
                tracing::debug!(%e, seq, "resync answer refused");
            }
        }
    }

    pub fn held(&self) -> Option<ContextId> {
        self.bound.as_ref().map(|b| b.id)
    }
}
