//! The neighbour cache: one bounded table for ARP (IPv4, RFC 826) and IPv6
//! Neighbor Discovery (RFC 4861), mapping (interface index, IP address) to a
//! link-layer (Ethernet) address.
//!
//! Both families run the reachability state machine of RFC 4861 §7.3.2 the
//! way Linux's neighbour subsystem (`net/core/neighbour.c`) runs it for
//! `arp_tbl` and `nd_tbl` alike: INCOMPLETE, REACHABLE, STALE, DELAY, PROBE
//! and FAILED. This module owns the states, their timers, the packets
//! queued while an address resolves, and the table's bounds. It does not
//! parse or build ARP or ND packets: the caller turns [`Action::Solicit`]
//! into an ARP request or a Neighbor Solicitation, and turns what it
//! receives into [`NeighborCache::learn`] and [`NeighborCache::confirm`].
//!
//! Sans-IO: every entry point takes the current [`Instant`]; timers come out
//! as [`NeighborCache::next_deadline`] and are run by [`NeighborCache::poll`].
//! Costs: every call is O(log n) in the number of entries (a `BTreeMap` keyed
//! by (interface, address), and a `BTreeSet` of deadlines), except
//! [`NeighborCache::forget_iface`] and [`NeighborCache::entries`], which walk
//! the interface's or the whole table. The hot path, [`NeighborCache::resolve`]
//! on a REACHABLE, DELAY or PROBE entry, and [`NeighborCache::confirm`] on a
//! REACHABLE one, only stamp a time in the entry (as Linux's
//! `neigh->used`/`neigh->confirmed` are stamped) and never touch the deadline
//! set; the REACHABLE timer reads the stamps when it fires.
//!
//! Bounds (nothing a remote host sends grows without bound):
//! - at most [`NeighborConfig::capacity`] entries. On a full table a new
//!   entry evicts one that is not in use: FAILED entries first, then STALE
//!   entries that never carried a packet of ours, then other STALE entries,
//!   each least recently used first. INCOMPLETE, REACHABLE, DELAY and PROBE
//!   entries are never evicted; if every entry is one of those, the new entry
//!   is refused (counted).
//! - at most [`NeighborConfig::queue_len`] packets queued per INCOMPLETE
//!   entry, counted in packets (the packet type is opaque here, so bytes are
//!   not known). A full queue drops its oldest packet for the new one, as
//!   RFC 4861 §7.2.2 says and Linux's `__neigh_event_send` does.
//! - entries are created only by our own traffic ([`NeighborCache::resolve`])
//!   and by [`Learned::Request`]: an ARP request for one of our addresses or
//!   an NS/RS/Redirect carrying the sender's link-layer address, as Linux's
//!   `arp_process` (`neigh_event_ns` only when the target is ours) and
//!   `ndisc_recv_ns` do. Advertisements (ARP replies, gratuitous ARP, NAs)
//!   only update an existing entry (RFC 4861 §7.2.5; Linux with
//!   `arp_accept=0`). Entries so created are STALE and so are the first to
//!   go, so a flood of forged requests recycles its own entries and never
//!   evicts one in use.
//!
//! What differs from Linux, on purpose:
//! - One set of parameters for every interface (Linux has them per device).
//! - An advertisement with a different link-layer address and no override
//!   (ND's O flag clear, or ARP within [`NeighborConfig::arp_locktime`] of
//!   the last update) turns a REACHABLE entry STALE for both families, as
//!   RFC 4861 §7.2.5 says; Linux's ARP ignores it instead.
//! - An upper-layer confirmation ([`NeighborCache::confirm`]) of a STALE,
//!   DELAY or PROBE entry makes it REACHABLE at once (RFC 4861 §7.3.1);
//!   Linux only stamps the time and lets the next timer decide.
//! - No IsRouter flag: routing is not this module's business.
//! - FAILED and unused STALE entries are removed
//!   [`NeighborConfig::gc_stale_time`] after they entered that state (Linux's
//!   periodic garbage collection looks at the same `gc_staletime`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::time::Instant;

mod types;

pub use types::*;

type Key = (usize, IpAddr);

#[derive(Debug)]
enum State<P> {
    Incomplete { solicits: u8, queue: VecDeque<P> },
    Reachable { mac: Mac },
    Stale { mac: Mac },
    Delay { mac: Mac },
    Probe { mac: Mac, probes: u8 },
    Failed,
}

impl<P> State<P> {
    fn public(&self) -> NeighborState {
        match self {
            State::Incomplete { .. } => NeighborState::Incomplete,
            State::Reachable { .. } => NeighborState::Reachable,
            State::Stale { .. } => NeighborState::Stale,
            State::Delay { .. } => NeighborState::Delay,
            State::Probe { .. } => NeighborState::Probe,
            State::Failed => NeighborState::Failed,
        }
    }

    fn mac(&self) -> Option<Mac> {
        match self {
            State::Reachable { mac }
            | State::Stale { mac }
            | State::Delay { mac }
            | State::Probe { mac, .. } => Some(*mac),
            State::Incomplete { .. } | State::Failed => None,
        }
    }
}

#[derive(Debug)]
struct Entry<P> {
    state: State<P>,
    /// When the state or address last changed (Linux `updated`).
    updated: Instant,
    /// When a packet was last sent or queued through it (Linux `used`).
    used: Option<Instant>,
    /// When reachability was last confirmed (Linux `confirmed`).
    confirmed: Option<Instant>,
    /// When its timer fires; indexed in `NeighborCache::deadlines`.
    deadline: Instant,
}

/// Eviction order: lowest first. Only FAILED and STALE entries have one.
type EvictKey = (u8, Instant, Key);

impl<P> Entry<P> {
    fn evict_key(&self, key: Key) -> Option<EvictKey> {
        match self.state {
            State::Failed => Some((0, self.updated, key)),
            State::Stale { .. } => match self.used {
                None => Some((1, self.updated, key)),
                Some(used) => Some((2, used, key)),
            },
            _ => None,
        }
    }
}

/// The neighbour cache, generic over the packets it queues.
#[derive(Debug)]
pub struct NeighborCache<P> {
    config: NeighborConfig,
    entries: BTreeMap<Key, Entry<P>>,
    /// Every entry's (deadline, key).
    deadlines: BTreeSet<(Instant, Key)>,
    /// Every evictable entry's eviction key.
    evictable: BTreeSet<EvictKey>,
    /// The current randomized ReachableTime, and when to draw it again.
    reachable_time: Duration,
    redraw_at: Option<Instant>,
    rng: u64,
    counters: NeighborCounters,
}

impl<P> NeighborCache<P> {
    /// An empty cache. `seed` feeds the randomization of ReachableTime
    /// (RFC 4861 §6.3.2); give each instance a different random seed so
    /// that hosts do not probe in step. Durations below [`MIN_TIMER`] are
    /// raised to it.
    pub fn new(config: NeighborConfig, seed: u64) -> Self {
        let config = NeighborConfig {
            retrans_time: config.retrans_time.max(MIN_TIMER),
            base_reachable_time: config.base_reachable_time.max(MIN_TIMER),
            delay_first_probe_time: config.delay_first_probe_time.max(MIN_TIMER),
            gc_stale_time: config.gc_stale_time.max(MIN_TIMER),
            ..config
        };
        let mut cache = NeighborCache {
            reachable_time: config.base_reachable_time,
            config,
            entries: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            evictable: BTreeSet::new(),
            redraw_at: None,
            rng: seed,
            counters: NeighborCounters::default(),
        };
        cache.reachable_time = cache.draw_reachable_time();
        cache
    }

    /// The parameters in force (after [`MIN_TIMER`] clamping).
    pub fn config(&self) -> &NeighborConfig {
        &self.config
    }

    /// Hand `packet` over for sending to neighbour `ip` on `iface`.
    ///
    /// A known address (REACHABLE, STALE, DELAY, PROBE) sends at once; a
    /// STALE entry moves to DELAY (RFC 4861 §7.3.3). Otherwise the packet is
    /// queued and resolution starts or goes on: a missing or FAILED entry
    /// becomes INCOMPLETE with its first solicitation due now, from
    /// [`NeighborCache::poll`].
    pub fn resolve(&mut self, now: Instant, iface: usize, ip: IpAddr, packet: P) -> Resolve<P> {
        if !is_unicast(ip) {
            self.counters.dropped_not_unicast += 1;
            return Resolve::Dropped {
                packet,
                reason: DropReason::NotUnicast,
            };
        }
        let key = (iface, ip);
        if let Some(e) = self.entries.get_mut(&key) {
            // The hot path: no index changes.
            if let State::Reachable { mac } | State::Delay { mac } | State::Probe { mac, .. } =
                e.state
            {
                e.used = Some(now);
                return Resolve::Send { mac, packet };
            }
        }
        let mut e = match self.take(key) {
            Some(e) => e,
            None => {
                if !self.make_room() {
                    self.counters.dropped_no_room += 1;
                    return Resolve::Dropped {
                        packet,
                        reason: DropReason::NoRoom,
                    };
                }
                // Starts as if it had failed before: resolution restarts below.
                Entry {
                    state: State::Failed,
                    updated: now,
                    used: None,
                    confirmed: None,
                    deadline: now,
                }
            }
        };
        e.used = Some(now);
        let result = match &mut e.state {
            State::Stale { mac } => {
                let mac = *mac;
                self.enter(&mut e, now, State::Delay { mac });
                Resolve::Send { mac, packet }
            }
            State::Reachable { mac } | State::Delay { mac } | State::Probe { mac, .. } => {
                Resolve::Send { mac: *mac, packet }
            }
            State::Failed | State::Incomplete { .. } => {
                if matches!(e.state, State::Failed) {
                    let queue = VecDeque::new();
                    self.enter(&mut e, now, State::Incomplete { solicits: 0, queue });
                }
                match &mut e.state {
                    State::Incomplete { queue, .. } => self.enqueue(queue, packet),
                    // Not reached: the entry was made INCOMPLETE just above.
                    _ => Resolve::Dropped {
                        packet,
                        reason: DropReason::NoRoom,
                    },
                }
            }
        };
        self.put(key, e);
        result
    }

    /// Record that `ip` on `iface` has link-layer address `mac`, learned as
    /// `how` says, and return the packets that were waiting for it: the
    /// caller sends them to `mac`, in order.
    ///
    /// The resulting state follows RFC 4861 §7.2.3 (requests) and §7.2.5
    /// (advertisements); see [`Learned`]. An advertisement without a
    /// link-layer address is not a `learn`: with the Solicited flag set it
    /// is a [`NeighborCache::confirm`], otherwise nothing. Non-unicast `ip`s
    /// are ignored.
    pub fn learn(
        &mut self,
        now: Instant,
        iface: usize,
        ip: IpAddr,
        mac: Mac,
        how: Learned,
    ) -> Vec<P> {
        if !is_unicast(ip) {
            return Vec::new();
        }
        let key = (iface, ip);
        let Some(mut e) = self.take(key) else {
            // §7.2.5: an advertisement for which there is no entry is
            // discarded; §7.2.3: a request creates a STALE entry.
            if how == Learned::Request {
                if self.make_room() {
                    let mut e = Entry {
                        state: State::Failed,
                        updated: now,
                        used: None,
                        confirmed: None,
                        deadline: now,
                    };
                    self.enter(&mut e, now, State::Stale { mac });
                    self.put(key, e);
                } else {
                    self.counters.refused_unsolicited += 1;
                }
            }
            return Vec::new();
        };

        let mut released = Vec::new();
        match e.state.mac() {
            None => {
                // INCOMPLETE (or FAILED, which Linux also updates): record the
                // address; a solicited advertisement makes it REACHABLE,
                // anything else STALE (§7.2.3, §7.2.5).
                let old = std::mem::replace(&mut e.state, State::Failed);
                if let State::Incomplete { queue, .. } = old {
                    self.counters.resolved += 1;
                    released = Vec::from(queue);
                }
                if !released.is_empty() {
                    e.used = Some(now);
                }
                match how {
                    Learned::Solicited { .. } => self.enter(&mut e, now, State::Reachable { mac }),
                    Learned::Unsolicited { .. } | Learned::Request => {
                        self.enter(&mut e, now, State::Stale { mac });
                        if !released.is_empty() {
                            // Sending the queue through a STALE entry starts
                            // the delay timer (§7.3.3), as Linux's output
                            // path does when it flushes `arp_queue`.
                            e.used = Some(now);
                            self.enter(&mut e, now, State::Delay { mac });
                        }
                    }
                }
            }
            Some(old) => {
                let differs = old != mac;
                let reachable = matches!(e.state, State::Reachable { .. });
                match how {
                    Learned::Request => {
                        // §7.2.3: a different address replaces the cached one
                        // and the entry goes STALE; the same one changes
                        // nothing.
                        if differs {
                            self.enter(&mut e, now, State::Stale { mac });
                        }
                    }
                    Learned::Solicited { override_flag }
                    | Learned::Unsolicited { override_flag } => {
                        let solicited = matches!(how, Learned::Solicited { .. });
                        let locked =
                            ip.is_ipv4() && differs && now < e.updated + self.config.arp_locktime;
                        let override_flag = override_flag && !locked;
                        if differs && !override_flag {
                            // §7.2.5: REACHABLE goes STALE and keeps its
                            // address; anything else ignores it.
                            if reachable {
                                self.enter(&mut e, now, State::Stale { mac: old });
                            }
                        } else if solicited {
                            self.enter(&mut e, now, State::Reachable { mac });
                        } else if differs {
                            self.enter(&mut e, now, State::Stale { mac });
                        }
                    }
                }
            }
        }
        self.put(key, e);
        released
    }

    /// Upper-layer reachability confirmation (RFC 4861 §7.3.1: TCP forward
    /// progress, or a solicited NA without a link-layer address): a known
    /// entry becomes REACHABLE. INCOMPLETE, FAILED and missing entries are
    /// left as they are. Cheap on a REACHABLE entry (call it per ACK).
    pub fn confirm(&mut self, now: Instant, iface: usize, ip: IpAddr) {
        let key = (iface, ip);
        match self.entries.get_mut(&key) {
            None => {}
            Some(e) => match e.state {
                State::Reachable { .. } => {
                    // The REACHABLE timer reads `confirmed` when it fires.
                    e.confirmed = Some(now);
                }
                State::Stale { mac } | State::Delay { mac } | State::Probe { mac, .. } => {
                    if let Some(mut e) = self.take(key) {
                        self.enter(&mut e, now, State::Reachable { mac });
                        self.put(key, e);
                    }
                }
                State::Incomplete { .. } | State::Failed => {}
            },
        }
    }

    /// Run the timers that are due at `now`, telling `out` what to send and
    /// what to drop. Each entry's timer runs at most once per due deadline;
    /// after a jump in time, an entry takes one step, not every step it
    /// missed.
    pub fn poll(&mut self, now: Instant, out: &mut impl FnMut(Action<P>)) {
        while let Some(&(deadline, key)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            let Some(e) = self.take(key) else {
                // Cannot happen (every deadline has its entry); never spin.
                self.deadlines.remove(&(deadline, key));
                continue;
            };
            self.fire(now, key, e, out);
        }
    }

    /// When [`NeighborCache::poll`] next has work, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(t, _)| t)
    }

    /// Drop every entry of `iface` (link down, or its addresses removed),
    /// returning the packets that were queued on them (counted as
    /// `dropped_flushed`). Walks that interface's entries.
    pub fn forget_iface(&mut self, iface: usize) -> Vec<P> {
        let lo = (iface, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let hi = (iface, IpAddr::V6(Ipv6Addr::from(u128::MAX)));
        let keys: Vec<Key> = self.entries.range(lo..=hi).map(|(k, _)| *k).collect();
        let mut flushed = Vec::new();
        for key in keys {
            flushed.extend(self.remove_key(key));
        }
        flushed
    }

    /// Drop the entry for `ip` on `iface`, returning the packets that were
    /// queued on it (counted as `dropped_flushed`).
    pub fn remove(&mut self, iface: usize, ip: IpAddr) -> Vec<P> {
        self.remove_key((iface, ip))
    }

    /// The entry for `ip` on `iface`, ages measured at `now`.
    pub fn get(&self, now: Instant, iface: usize, ip: IpAddr) -> Option<NeighborEntry> {
        let key = (iface, ip);
        self.entries.get(&key).map(|e| listing(now, key, e))
    }

    /// Every entry, ordered by interface then address, ages measured at
    /// `now`.
    pub fn entries(&self, now: Instant) -> impl Iterator<Item = NeighborEntry> + '_ {
        self.entries
            .iter()
            .map(move |(&key, e)| listing(now, key, e))
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Event counts since the cache was made.
    pub fn counters(&self) -> NeighborCounters {
        self.counters
    }

    /// The ReachableTime currently in force (randomized, RFC 4861 §6.3.2).
    pub fn reachable_time(&self) -> Duration {
        self.reachable_time
    }

    // ---- internals ----

    /// Run `key`'s timer (it was due), and put the entry back unless it is
    /// garbage.
    fn fire(&mut self, now: Instant, key: Key, mut e: Entry<P>, out: &mut impl FnMut(Action<P>)) {
        let state = std::mem::replace(&mut e.state, State::Failed);
        match state {
            State::Incomplete { solicits, queue } => {
                if solicits >= self.config.max_multicast_solicit {
                    // §7.2.2: give up; each queued packet earns an ICMP
                    // address unreachable from the caller.
                    self.counters.failed += 1;
                    self.counters.dropped_failed += queue.len() as u64;
                    for packet in queue {
                        out(Action::Dropped {
                            packet,
                            reason: DropReason::ResolutionFailed,
                        });
                    }
                    self.enter(&mut e, now, State::Failed);
                } else {
                    self.counters.solicits += 1;
                    out(Action::Solicit {
                        iface: key.0,
                        target: key.1,
                        unicast: None,
                    });
                    e.state = State::Incomplete {
                        solicits: solicits + 1,
                        queue,
                    };
                    e.deadline = now + self.config.retrans_time;
                }
            }
            State::Reachable { mac } => {
                let rt = self.current_reachable_time(now);
                let alive_until = e.confirmed.unwrap_or(e.updated) + rt;
                let recently_used = e
                    .used
                    .is_some_and(|used| now <= used + self.config.delay_first_probe_time);
                if now < alive_until {
                    // Confirmed since the timer was set.
                    e.state = State::Reachable { mac };
                    e.deadline = alive_until;
                } else if recently_used {
                    // Linux's shortcut: an entry in use goes straight to
                    // DELAY, as its next packet would take it there (§7.3.3).
                    self.enter(&mut e, now, State::Delay { mac });
                } else {
                    // §7.3.3: ReachableTime passed without confirmation.
                    self.enter(&mut e, now, State::Stale { mac });
                }
            }
            State::Delay { mac } => {
                // §7.3.3: no confirmation within DELAY_FIRST_PROBE_TIME.
                self.enter(&mut e, now, State::Probe { mac, probes: 0 });
            }
            State::Probe { mac, probes } => {
                if probes >= self.config.max_unicast_solicit {
                    self.counters.failed += 1;
                    self.enter(&mut e, now, State::Failed);
                } else {
                    self.counters.solicits += 1;
                    out(Action::Solicit {
                        iface: key.0,
                        target: key.1,
                        unicast: Some(mac),
                    });
                    e.state = State::Probe {
                        mac,
                        probes: probes + 1,
                    };
                    e.deadline = now + self.config.retrans_time;
                }
            }
            State::Stale { .. } | State::Failed => {
                // Garbage collection: unused for gc_stale_time.
                return;
            }
        }
        self.put(key, e);
    }

    /// Move `e` into `state` at `now`, setting its timer for that state.
    /// `e` must be out of the indexes (between `take` and `put`).
    fn enter(&mut self, e: &mut Entry<P>, now: Instant, state: State<P>) {
        e.deadline = match state {
            // The first solicitation, or probe, is due at once.
            State::Incomplete { .. } | State::Probe { .. } => now,
            State::Reachable { .. } => {
                e.confirmed = Some(now);
                now + self.current_reachable_time(now)
            }
            State::Delay { .. } => now + self.config.delay_first_probe_time,
            State::Stale { .. } | State::Failed => now + self.config.gc_stale_time,
        };
        e.state = state;
        e.updated = now;
    }

    fn enqueue(&mut self, queue: &mut VecDeque<P>, packet: P) -> Resolve<P> {
        if self.config.queue_len == 0 {
            self.counters.dropped_queue_full += 1;
            return Resolve::Dropped {
                packet,
                reason: DropReason::QueueFull,
            };
        }
        queue.push_back(packet);
        let mut displaced = None;
        while queue.len() > self.config.queue_len {
            // §7.2.2: "the new arrival SHOULD replace the oldest entry".
            displaced = queue.pop_front();
            self.counters.dropped_queue_full += 1;
        }
        Resolve::Queued { displaced }
    }

    /// Make room for one more entry, evicting if the table is full. False if
    /// every entry is in use.
    fn make_room(&mut self) -> bool {
        if self.entries.len() < self.config.capacity {
            return true;
        }
        let Some(&(_, _, victim)) = self.evictable.first() else {
            return false;
        };
        // Evictable entries (STALE, FAILED) have empty queues.
        let _ = self.take(victim);
        self.counters.evictions += 1;
        self.entries.len() < self.config.capacity
    }

    fn remove_key(&mut self, key: Key) -> Vec<P> {
        match self.take(key) {
            Some(Entry {
                state: State::Incomplete { queue, .. },
                ..
            }) => {
                self.counters.dropped_flushed += queue.len() as u64;
                Vec::from(queue)
            }
            _ => Vec::new(),
        }
    }

    /// Remove an entry from the table and its indexes.
    fn take(&mut self, key: Key) -> Option<Entry<P>> {
        let e = self.entries.remove(&key)?;
        self.deadlines.remove(&(e.deadline, key));
        if let Some(k) = e.evict_key(key) {
            self.evictable.remove(&k);
        }
        Some(e)
    }

    /// Put an entry into the table and its indexes.
    fn put(&mut self, key: Key, e: Entry<P>) {
        self.deadlines.insert((e.deadline, key));
        if let Some(k) = e.evict_key(key) {
            self.evictable.insert(k);
        }
        self.entries.insert(key, e);
    }

    /// ReachableTime, drawn again every [`REACHABLE_TIME_REDRAW`].
    fn current_reachable_time(&mut self, now: Instant) -> Duration {
        match self.redraw_at {
            Some(at) if now < at => {}
            // The first use keeps the draw made at construction.
            None => self.redraw_at = Some(now + REACHABLE_TIME_REDRAW),
            Some(_) => {
                self.reachable_time = self.draw_reachable_time();
                self.redraw_at = Some(now + REACHABLE_TIME_REDRAW);
            }
        }
        self.reachable_time
    }

    /// A uniform random time in [0.5, 1.5) × BaseReachableTime (RFC 4861
    /// §6.3.2, MIN_RANDOM_FACTOR and MAX_RANDOM_FACTOR; Linux
    /// `neigh_rand_reach_time`).
    fn draw_reachable_time(&mut self) -> Duration {
        let base = self
            .config
            .base_reachable_time
            .as_micros()
            .min(u64::MAX as u128 / 2) as u64;
        let r = ((u128::from(self.next_random()) * u128::from(base)) >> 64) as u64;
        Duration::from_micros(base / 2 + r)
    }

    /// splitmix64: the caller's seed spread over the draws.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn listing<P>(now: Instant, key: Key, e: &Entry<P>) -> NeighborEntry {
    NeighborEntry {
        iface: key.0,
        ip: key.1,
        mac: e.state.mac(),
        state: e.state.public(),
        updated: now - e.updated,
        used: e.used.map(|t| now - t),
        confirmed: e.confirmed.map(|t| now - t),
        queued: match &e.state {
            State::Incomplete { queue, .. } => queue.len(),
            _ => 0,
        },
    }
}

/// Whether `ip` names one neighbour (the cache resolves nothing else).
fn is_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_multicast() || a.is_broadcast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
    }
}

#[cfg(test)]
mod tests;
