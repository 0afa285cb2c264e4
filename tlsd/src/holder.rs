//! tlsd as the holder of a connection's NIC offload contexts.
//!
//! A context is minted by the driver of the connection's egress port (netsrv
//! passes the call through to it). The holder follows the connection's
//! `Egress`: on every change (failover, link down, driver restart, route)
//! it revokes in the order DESIGN.md gives — software first, drain, delete
//! in the NIC — and then offloads again where the new egress offers it,
//! which Linux never does. A context the driver revokes, or whose driver
//! died, is treated the same way.

use crate::conn::{DeviceStart, TlsConn};
use crate::record::Cipher;
use crate::stats::Stats;
use capnet_wire::tls::Version;
use libclient::{
    EgressSubscription, OffloadContext, OffloadEvent, OffloadKind, TcpStream, TlsCipher,
    TlsOffloadParams,
};
use std::io;
use std::sync::Arc;
use std::time::Instant;
use zeroize::Zeroize;

/// Framed bytes between two looks at what the peer acknowledged.
const PRUNE_EVERY: u64 = 1 << 20;

/// One context the connection is bound to.
pub struct Bound {
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
        self.ctx
            .tcp_seq()
            .wrapping_add(offset.wrapping_sub(self.ctx.stream_offset()) as u32)
    }
}

pub struct Holder {
    /// Offload allowed for this connection (options, cipher).
    enabled: bool,
    pub egress: Option<EgressSubscription>,
    pub tx: Option<Bound>,
    pub rx: Option<Bound>,
    stats: Arc<Stats>,
    /// Framed bytes logged at the last prune.
    pruned_at: u64,
    /// Set when contexts must be moved (an egress change, a revocation).
    pub moved: bool,
    /// Contexts were held before: the next ones count as re-offloads.
    held_before: bool,
    /// Bumped whenever a context is bound or dropped (its eventfd with it).
    generation: u64,
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

impl Holder {
    pub fn new(enabled: bool, tcp: &TcpStream, stats: Arc<Stats>) -> Holder {
        let egress = if enabled {
            match tcp.egress().and_then(|e| e.subscribe()) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::info!(%e, "no egress subscription; TLS stays in software");
                    None
                }
            }
        } else {
            None
        };
        Holder {
            enabled: enabled && egress.is_some(),
            egress,
            tx: None,
            rx: None,
            stats,
            pruned_at: 0,
            moved: false,
            held_before: false,
            generation: 0,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Binds whatever direction is not bound and can be, on the current
    /// egress. A port without TLS offload answers `unsupported`: the
    /// connection stays in software until the egress changes.
    pub fn offload(&mut self, conn: &mut TlsConn, tcp: &TcpStream) {
        if !self.enabled {
            return;
        }
        let mut bound_any = false;
        if self.tx.is_none() {
            if let Some(start) = conn.device_tx_start() {
                if let Some(b) = self.bind(tcp, OffloadKind::TlsTx, &start) {
                    conn.begin_device_tx();
                    self.tx = Some(b);
                    self.pruned_at = 0;
                    bound_any = true;
                }
            }
        }
        if self.rx.is_none() {
            if let Some(start) = conn.device_rx_start() {
                if let Some(b) = self.bind(tcp, OffloadKind::TlsRx, &start) {
                    conn.set_device_rx(true);
                    self.rx = Some(b);
                    bound_any = true;
                }
            }
        }
        if bound_any && self.held_before {
            Stats::inc(&self.stats.reoffloads);
        }
        if bound_any {
            self.generation += 1;
            self.held_before = true;
        }
    }

    fn bind(&mut self, tcp: &TcpStream, kind: OffloadKind, start: &DeviceStart) -> Option<Bound> {
        let mut p = params(start)?;
        let began = Instant::now();
        let bound = tcp.offload_tls(kind, &p, start.stream_offset);
        // Our copy of the key is done with (the context holds its own).
        p.key.zeroize();
        p.iv.zeroize();
        match bound {
            Ok(ctx) => {
                let info = ctx.initial_info();
                tracing::info!(
                    ?kind,
                    port = %info.port,
                    context = info.id,
                    offset = start.stream_offset,
                    took_us = began.elapsed().as_micros() as u64,
                    "TLS offloaded"
                );
                Some(Bound {
                    port: info.port.clone(),
                    ctx,
                })
            }
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                tracing::debug!(?kind, %e, "egress port has no TLS offload; software");
                None
            }
            Err(e) => {
                tracing::info!(?kind, %e, "TLS offload refused; software");
                None
            }
        }
    }

    /// Revokes both directions (software first, drain, delete) and offloads
    /// again where the egress now allows.
    pub fn move_contexts(&mut self, conn: &mut TlsConn, tcp: &TcpStream) {
        self.moved = false;
        self.revoke_tx(conn, tcp);
        self.revoke_rx(conn, tcp);
        self.offload(conn, tcp);
    }

    /// The four steps for TX; step 4 is `offload`.
    pub fn revoke_tx(&mut self, conn: &mut TlsConn, tcp: &TcpStream) {
        let Some(b) = self.tx.take() else {
            return;
        };
        self.generation += 1;
        // 1. Software from here on; the framed records still in flight are
        //    sealed here too, and netsrv sends those bytes instead.
        let unacked = tcp.send_unacked().unwrap_or(0);
        let (start, replacement) = conn.end_device_tx(unacked);
        // 2. The drain: netsrv answers once no descriptor naming the
        //    context is in flight on the old port.
        if let Err(e) = tcp.offload_stop(OffloadKind::TlsTx, start, &replacement) {
            tracing::warn!(%e, "offloadStop (TX) failed");
        }
        // 3. Delete it in the NIC.
        if let Err(e) = b.ctx.release() {
            if !gone(&e) {
                tracing::warn!(%e, "releasing the TX context failed");
            }
        }
        tracing::info!(port = %b.port, replaced = replacement.len(), "TLS TX context revoked");
    }

    pub fn revoke_rx(&mut self, conn: &mut TlsConn, tcp: &TcpStream) {
        let Some(b) = self.rx.take() else {
            return;
        };
        self.generation += 1;
        if let Err(e) = tcp.offload_stop(OffloadKind::TlsRx, 0, &[]) {
            tracing::warn!(%e, "offloadStop (RX) failed");
        }
        conn.set_device_rx(false);
        if let Err(e) = b.ctx.release() {
            if !gone(&e) {
                tracing::warn!(%e, "releasing the RX context failed");
            }
        }
        tracing::info!(port = %b.port, "TLS RX context revoked");
    }

    /// Everything that arrived from netsrv and the NICs; may revoke and
    /// offload again.
    pub fn poll(&mut self, conn: &mut TlsConn, tcp: &TcpStream) {
        if let Some(sub) = &self.egress {
            while let Some(info) = sub.try_recv() {
                tracing::info!(port = ?info.port, reason = ?info.reason, "egress changed");
                self.moved = true;
            }
        }
        let mut tx_revoked = false;
        if let Some(b) = &self.tx {
            while let Some(ev) = b.ctx.try_event() {
                if let OffloadEvent::Revoked { reason } = ev {
                    tracing::info!(%reason, "the NIC revoked the TX context");
                    tx_revoked = true;
                }
            }
        }
        let mut rx_revoked = false;
        if let Some(b) = &self.rx {
            while let Some(ev) = b.ctx.try_event() {
                match ev {
                    OffloadEvent::ResyncRequest { tcp_seq } => {
                        conn.watch_record_start(b.offset_of(tcp_seq));
                    }
                    OffloadEvent::Revoked { reason } => {
                        tracing::info!(%reason, "the NIC revoked the RX context");
                        rx_revoked = true;
                    }
                }
            }
        }
        if tx_revoked {
            self.revoke_tx(conn, tcp);
        }
        if rx_revoked {
            self.revoke_rx(conn, tcp);
        }
        // New keys (KeyUpdate) need new contexts.
        if conn.device_tx_stale() || conn.device_rx_stale() {
            self.moved = true;
        }
        if self.moved {
            self.move_contexts(conn, tcp);
        }
        self.answer_resyncs(conn);
        self.prune(conn, tcp);
    }

    /// Before sleeping: empties the eventfds (events queued after this ring
    /// them again; `poll` must run once more before the sleep).
    pub fn clear_wakeups(&self) {
        if let Some(sub) = &self.egress {
            sub.clear_wakeup();
        }
        for b in [&self.tx, &self.rx].into_iter().flatten() {
            b.ctx.clear_wakeup();
        }
    }

    /// Changes whenever [`Self::fds`] may have (a closed eventfd's number
    /// can come back for the next context's).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The eventfds to sleep on: egress, TX context, RX context.
    pub fn fds(&self) -> [Option<std::os::fd::RawFd>; 3] {
        use std::os::fd::AsRawFd;
        [
            self.egress.as_ref().map(|s| s.as_raw_fd()),
            self.tx.as_ref().map(|b| b.ctx.as_raw_fd()),
            self.rx.as_ref().map(|b| b.ctx.as_raw_fd()),
        ]
    }

    /// Answers the NIC's resync requests the record layer has decided.
    pub fn answer_resyncs(&mut self, conn: &mut TlsConn) {
        let answers = conn.take_resync_answers();
        let Some(b) = &self.rx else {
            return;
        };
        for (offset, rec_seq) in answers {
            let seq = b.seq_of(offset);
            let r = match rec_seq {
                Some(n) => b.ctx.resync(seq, n).map(|()| {
                    Stats::inc(&self.stats.rx_device_resync);
                }),
                None => b.ctx.resync_reject(seq),
            };
            if let Err(e) = r {
                if !gone(&e) {
                    tracing::debug!(%e, seq, "resync answer refused");
                }
            }
        }
    }

    /// Forgets framed records the peer acknowledged (bounded memory).
    fn prune(&mut self, conn: &mut TlsConn, tcp: &TcpStream) {
        if self.tx.is_none() {
            return;
        }
        let logged = conn.device_tx_logged() as u64;
        if logged < self.pruned_at + PRUNE_EVERY {
            return;
        }
        if let Ok(unacked) = tcp.send_unacked() {
            conn.device_tx_acked(unacked);
        }
        self.pruned_at = conn.device_tx_logged() as u64;
    }

    /// At the end of the session. A TX context goes the full way: framed
    /// records may still wait in netsrv, and they must leave sealed (in
    /// software) before the context is deleted.
    pub fn finish(&mut self, conn: &mut TlsConn, tcp: &TcpStream) {
        self.revoke_tx(conn, tcp);
        self.revoke_rx(conn, tcp);
    }
}
