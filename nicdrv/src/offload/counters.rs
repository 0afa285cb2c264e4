//! Offload counters: per context ([`ContextStats`], `OffloadInfo`) and per
//! kind over the port ([`KindCounters`], `PortCounters.offloads`). The data
//! plane writes both, the control plane reads them.

use crate::counters::add;
use capnet_schema::offload::KINDS;
use capnet_schema::offload_capnp::OffloadKind;
use std::sync::atomic::{AtomicU64, Ordering};

/// A context's counters, as `OffloadInfo` has them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Units processed: records sealed (TX) or opened and authenticated (RX).
    pub records: u64,
    /// TX: first-transmission record bytes sealed. RX: payload bytes of the
    /// segments handed up processed.
    pub bytes: u64,
    pub resync_requests: u64,
    pub resyncs: u64,
    pub auth_failures: u64,
    /// Frames dropped rather than sent unprocessed.
    pub dropped: u64,
}

/// A context's live counters: written by the data plane, read by the
/// control plane.
#[derive(Debug, Default)]
pub struct ContextStats {
    records: AtomicU64,
    bytes: AtomicU64,
    resync_requests: AtomicU64,
    resyncs: AtomicU64,
    auth_failures: AtomicU64,
    dropped: AtomicU64,
}

impl ContextStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            records: l(&self.records),
            bytes: l(&self.bytes),
            resync_requests: l(&self.resync_requests),
            resyncs: l(&self.resyncs),
            auth_failures: l(&self.auth_failures),
            dropped: l(&self.dropped),
        }
    }

    /// Stores every value (single writer).
    pub(super) fn store(&self, s: StatsSnapshot) {
        let st = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        st(&self.records, s.records);
        st(&self.bytes, s.bytes);
        st(&self.resync_requests, s.resync_requests);
        st(&self.resyncs, s.resyncs);
        st(&self.auth_failures, s.auth_failures);
        st(&self.dropped, s.dropped);
    }
}

/// One kind's counters over the port, as `OffloadCounters` has them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindStats {
    pub contexts: u64,
    pub released: u64,
    pub records: u64,
    pub auth_failures: u64,
    pub resync_requests: u64,
    pub dropped: u64,
    /// Nanoseconds the engines ran: what a real NIC does in hardware.
    pub engine_nanos: u64,
}

#[derive(Debug, Default)]
struct KindAtomics {
    contexts: AtomicU64,
    released: AtomicU64,
    records: AtomicU64,
    auth_failures: AtomicU64,
    resync_requests: AtomicU64,
    dropped: AtomicU64,
    engine_nanos: AtomicU64,
}

/// Every kind's counters over the port.
#[derive(Debug, Default)]
pub struct KindCounters([KindAtomics; KINDS.len()]);

/// A copy of [`KindCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindSnapshot([KindStats; KINDS.len()]);

impl KindSnapshot {
    pub fn get(&self, kind: OffloadKind) -> KindStats {
        self.0[kind as usize]
    }

    pub fn set(&mut self, kind: OffloadKind, stats: KindStats) {
        self.0[kind as usize] = stats;
    }
}

impl KindCounters {
    fn of(&self, kind: OffloadKind) -> &KindAtomics {
        &self.0[kind as usize]
    }

    pub fn created(&self, kind: OffloadKind) {
        add(&self.of(kind).contexts, 1);
    }

    pub fn released(&self, kind: OffloadKind) {
        add(&self.of(kind).released, 1);
    }

    /// An engine of `kind` ran for `time` on one frame.
    pub fn ran(&self, kind: OffloadKind, time: std::time::Duration) {
        add(
            &self.of(kind).engine_nanos,
            u64::try_from(time.as_nanos()).unwrap_or(u64::MAX),
        );
    }

    /// Adds what a context's counters grew by between two snapshots.
    pub fn grew(&self, kind: OffloadKind, before: &StatsSnapshot, after: &StatsSnapshot) {
        let k = self.of(kind);
        let d = |a: u64, b: u64| a.wrapping_sub(b);
        add(&k.records, d(after.records, before.records));
        add(
            &k.auth_failures,
            d(after.auth_failures, before.auth_failures),
        );
        add(
            &k.resync_requests,
            d(after.resync_requests, before.resync_requests),
        );
        add(&k.dropped, d(after.dropped, before.dropped));
    }

    pub fn snapshot(&self) -> KindSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        KindSnapshot(std::array::from_fn(|i| {
            let k = &self.0[i];
            KindStats {
                contexts: l(&k.contexts),
                released: l(&k.released),
                records: l(&k.records),
                auth_failures: l(&k.auth_failures),
                resync_requests: l(&k.resync_requests),
                dropped: l(&k.dropped),
                engine_nanos: l(&k.engine_nanos),
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_count_apart() {
        let c = KindCounters::default();
        c.created(OffloadKind::TlsRx);
        c.grew(
            OffloadKind::TlsRx,
            &StatsSnapshot {
                records: 2,
                ..Default::default()
            },
            &StatsSnapshot {
                records: 5,
                resync_requests: 1,
                ..Default::default()
            },
        );
        c.released(OffloadKind::TlsTx);
        let s = c.snapshot();
        let rx = s.get(OffloadKind::TlsRx);
        assert_eq!((rx.contexts, rx.records, rx.resync_requests), (1, 3, 1));
        assert_eq!(s.get(OffloadKind::TlsTx).released, 1);
        assert_eq!(s.get(OffloadKind::NvmeTcpRx), KindStats::default());
    }
}
