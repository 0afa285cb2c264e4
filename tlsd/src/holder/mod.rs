//! tlsd as the holder of a connection's NIC offload contexts.
//!
//! A context is minted by the driver of the connection's egress port (netsrv
//! passes the call through to it). The holder follows the connection's
//! `Egress`: on every change (failover, link down, driver restart, route),
//! on new keys, and when the driver revokes a context or dies, the context
//! leaves in the order docs/offload.md gives — software first, drain, delete in
//! the NIC — and a new one is made where the new egress offers it, which
//! Linux never does.
//!
//! That order is `capnet_holder`'s machine, one per direction ([`slot`]):
//! this module turns what netsrv and the NICs say into its events, and
//! [`slot::Slot`] performs its actions.

mod slot;

use crate::conn::TlsConn;
use crate::stats::Stats;
use capnet_holder::{ContextId, Egress, Event, Offers, TlsRx, TlsTx};
use libclient::{EgressInfo, EgressSubscription, TcpStream};
use slot::Slot;
use std::sync::Arc;

/// Framed bytes between two looks at what the peer acknowledged.
const PRUNE_EVERY: u64 = 1 << 20;

/// What performing an action needs besides its slot.
pub(crate) struct Io<'a> {
    conn: &'a mut TlsConn,
    tcp: &'a TcpStream,
    common: &'a mut Common,
}

/// Shared by both directions.
pub(crate) struct Common {
    stats: Arc<Stats>,
    /// The next context's id (ids only grow).
    next_id: u64,
    /// Bumped whenever a context is bound or dropped (its eventfd with it).
    generation: u64,
    /// A context was activated since the last look.
    bound_now: bool,
    /// Framed bytes logged at the last prune.
    pruned_at: u64,
}

impl Common {
    fn next_id(&mut self) -> ContextId {
        self.next_id += 1;
        ContextId(self.next_id)
    }
}

pub struct Holder {
    /// Offload allowed for this connection (options, egress known).
    enabled: bool,
    egress: Option<EgressSubscription>,
    tx: Slot<TlsTx>,
    rx: Slot<TlsRx>,
    common: Common,
    /// Contexts were held before: the next ones count as re-offloads.
    held_before: bool,
}

/// The egress as the machine sees it. Whether the port offers TLS is
/// found out by asking.
fn egress_of(info: &EgressInfo) -> Egress {
    match &info.port {
        Some(port) => Egress::port(port.clone(), Offers::Unknown),
        None => Egress::NoPort,
    }
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
        let enabled = enabled && egress.is_some();
        // Not told yet where the connection leaves: the first create finds
        // out.
        let start = if enabled {
            Egress::unknown()
        } else {
            Egress::NoPort
        };
        Holder {
            enabled,
            egress,
            tx: Slot::new(start.clone()),
            rx: Slot::new(start),
            common: Common {
                stats,
                next_id: 0,
                generation: 0,
                bound_now: false,
                pruned_at: 0,
            },
            held_before: false,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// At the start of the session: offloads whatever direction can be on
    /// the current egress. A port without TLS offload answers
    /// `unsupported`: the connection stays in software until the egress
    /// changes.
    pub fn start(&mut self, conn: &mut TlsConn, tcp: &TcpStream) {
        if !self.enabled {
            return;
        }
        let mut io = Io {
            conn,
            tcp,
            common: &mut self.common,
        };
        self.tx.run(&mut io);
        self.rx.run(&mut io);
        self.count_reoffload();
    }

    /// Everything that arrived from netsrv and the NICs; may revoke and
    /// offload again.
    pub fn poll(&mut self, conn: &mut TlsConn, tcp: &TcpStream) {
        let mut moved = None;
        if let Some(sub) = &self.egress {
            while let Some(info) = sub.try_recv() {
                tracing::info!(port = ?info.port, reason = ?info.reason, "egress changed");
                moved = Some(egress_of(&info));
            }
        }
        let mut io = Io {
            conn,
            tcp,
            common: &mut self.common,
        };
        // The NICs' news first: a revoked context leaves before anything
        // else moves.
        for ev in self.tx.nic_events() {
            self.tx.feed(ev, &mut io);
        }
        for ev in self.rx.nic_events() {
            self.rx.feed(ev, &mut io);
        }
        // New keys (KeyUpdate) need new contexts; an egress change moves
        // them anyway.
        let rekeyed = io.conn.device_tx_stale() || io.conn.device_rx_stale();
        let ev = match moved {
            Some(egress) => Some(Event::Egress(egress)),
            None => rekeyed.then_some(Event::Rekeyed),
        };
        if let Some(ev) = ev {
            self.tx.feed(ev.clone(), &mut io);
            self.rx.feed(ev, &mut io);
        }
        // The record layer's answers to the NIC's resync requests.
        if let Some(ctx) = self.rx.held() {
            for (at, record) in io.conn.take_resync_answers() {
                self.rx
                    .feed(Event::RecordLocated { ctx, at, record }, &mut io);
            }
        } else {
            io.conn.take_resync_answers();
        }
        self.prune(conn, tcp);
        self.count_reoffload();
    }

    fn count_reoffload(&mut self) {
        if std::mem::take(&mut self.common.bound_now) {
            if self.held_before {
                Stats::inc(&self.common.stats.reoffloads);
            }
            self.held_before = true;
        }
    }

    /// Before sleeping: empties the eventfds (events queued after this ring
    /// them again; `poll` must run once more before the sleep).
    pub fn clear_wakeups(&self) {
        if let Some(sub) = &self.egress {
            sub.clear_wakeup();
        }
        for b in [&self.tx.bound, &self.rx.bound].into_iter().flatten() {
            b.ctx.clear_wakeup();
        }
    }

    /// Changes whenever [`Self::fds`] may have (a closed eventfd's number
    /// can come back for the next context's).
    pub fn generation(&self) -> u64 {
        self.common.generation
    }

    /// The eventfds to sleep on: egress, TX context, RX context.
    pub fn fds(&self) -> [Option<std::os::fd::RawFd>; 3] {
        use std::os::fd::AsRawFd;
        [
            self.egress.as_ref().map(|s| s.as_raw_fd()),
            self.tx.bound.as_ref().map(|b| b.ctx.as_raw_fd()),
            self.rx.bound.as_ref().map(|b| b.ctx.as_raw_fd()),
        ]
    }

    /// Forgets framed records the peer acknowledged (bounded memory).
    fn prune(&mut self, conn: &mut TlsConn, tcp: &TcpStream) {
        if self.tx.bound.is_none() {
            return;
        }
        let logged = conn.device_tx_logged() as u64;
        if logged < self.common.pruned_at + PRUNE_EVERY {
            return;
        }
        if let Ok(unacked) = tcp.send_unacked() {
            conn.device_tx_acked(unacked);
        }
        self.common.pruned_at = conn.device_tx_logged() as u64;
    }

    /// At the end of the session. A TX context goes the full way: framed
    /// records may still wait in netsrv, and they must leave sealed (in
    /// software) before the context is deleted.
    pub fn finish(&mut self, conn: &mut TlsConn, tcp: &TcpStream) {
        let mut io = Io {
            conn,
            tcp,
            common: &mut self.common,
        };
        self.tx.feed(Event::Close, &mut io);
        self.rx.feed(Event::Close, &mut io);
    }
}
