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
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::time::Instant;

/// An Ethernet (EUI-48) link-layer address.
pub type Mac = [u8; 6];

/// No timer of this module runs more often than this, whatever the
/// configuration says: a zero duration would otherwise let `poll` spin.
pub const MIN_TIMER: Duration = Duration::from_millis(1);

/// How often the randomized ReachableTime is drawn again (Linux's
/// `neigh_periodic_work` does it every 300 s; RFC 4861 §6.3.4 asks for "at
/// least every few hours").
pub const REACHABLE_TIME_REDRAW: Duration = Duration::from_secs(300);

/// The cache's parameters. [`Default`] gives RFC 4861 §10's constants and
/// Linux's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighborConfig {
    /// Most entries the table holds, over all interfaces.
    pub capacity: usize,
    /// Most packets queued per INCOMPLETE entry (RFC 4861 §7.2.2). Zero
    /// queues nothing: resolution still starts, the packet is dropped.
    pub queue_len: usize,
    /// RetransTimer: between two solicitations (RFC 4861 §10: 1 s).
    pub retrans_time: Duration,
    /// BaseReachableTime (RFC 4861 §10: 30 s). An entry stays REACHABLE for
    /// a random time in [0.5, 1.5) times this (§6.3.2).
    pub base_reachable_time: Duration,
    /// DELAY_FIRST_PROBE_TIME (RFC 4861 §10: 5 s).
    pub delay_first_probe_time: Duration,
    /// MAX_MULTICAST_SOLICIT: broadcast/multicast solicitations for an
    /// INCOMPLETE entry before it fails (RFC 4861 §10: 3; Linux
    /// `mcast_solicit`).
    pub max_multicast_solicit: u8,
    /// MAX_UNICAST_SOLICIT: unicast probes of a PROBE entry before it fails
    /// (RFC 4861 §10: 3; Linux `ucast_solicit`).
    pub max_unicast_solicit: u8,
    /// How long an unused STALE or a FAILED entry is kept (Linux
    /// `gc_stale_time`, 60 s).
    pub gc_stale_time: Duration,
    /// IPv4 only: an ARP advertisement that changes the link-layer address
    /// within this time of the entry's last update does not override it
    /// (Linux `locktime`, 1 s), so that two proxies answering for one
    /// address do not make the entry flap.
    pub arp_locktime: Duration,
}

impl Default for NeighborConfig {
    fn default() -> Self {
        NeighborConfig {
            capacity: 1024,
            queue_len: 3,
            retrans_time: Duration::from_secs(1),
            base_reachable_time: Duration::from_secs(30),
            delay_first_probe_time: Duration::from_secs(5),
            max_multicast_solicit: 3,
            max_unicast_solicit: 3,
            gc_stale_time: Duration::from_secs(60),
            arp_locktime: Duration::from_secs(1),
        }
    }
}

/// The reachability state of an entry (RFC 4861 §7.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NeighborState {
    /// Address resolution is in progress; packets wait in the entry's queue.
    Incomplete,
    /// The neighbour was known to be reachable within ReachableTime.
    Reachable,
    /// The address is known but its reachability is not; nothing is done
    /// until a packet is sent.
    Stale,
    /// A packet was sent to a STALE neighbour; waiting for upper-layer
    /// confirmation before probing.
    Delay,
    /// Unicast probes are being sent.
    Probe,
    /// Resolution or probing failed.
    Failed,
}

impl NeighborState {
    /// The name `ip neigh` shows.
    pub fn name(self) -> &'static str {
        match self {
            NeighborState::Incomplete => "INCOMPLETE",
            NeighborState::Reachable => "REACHABLE",
            NeighborState::Stale => "STALE",
            NeighborState::Delay => "DELAY",
            NeighborState::Probe => "PROBE",
            NeighborState::Failed => "FAILED",
        }
    }
}

impl fmt::Display for NeighborState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a packet was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The entry's queue was full; this was its oldest packet.
    QueueFull,
    /// Address resolution failed (RFC 4861 §7.2.2: the caller sends ICMP
    /// destination unreachable, code "address unreachable", for each).
    ResolutionFailed,
    /// The table was full of entries in use: no entry could be made.
    NoRoom,
    /// The destination is not a unicast address; the caller maps multicast
    /// and broadcast destinations itself.
    NotUnicast,
}

/// What [`NeighborCache::resolve`] did with a packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolve<P> {
    /// Send `packet` to `mac` now.
    Send { mac: Mac, packet: P },
    /// The packet waits for resolution; it comes back from
    /// [`NeighborCache::learn`] when the address is learned, or as
    /// [`Action::Dropped`] when resolution fails. A solicitation may now be
    /// due: it comes out of [`NeighborCache::poll`], whose deadline is now.
    /// `displaced` is the queue's oldest packet, dropped to make room
    /// ([`DropReason::QueueFull`], already counted).
    Queued { displaced: Option<P> },
    /// The packet was not queued (already counted).
    Dropped { packet: P, reason: DropReason },
}

/// What the caller must do, from [`NeighborCache::poll`].
#[derive(Debug, PartialEq, Eq)]
pub enum Action<P> {
    /// Send a solicitation for `target` out of `iface`: an ARP request, or a
    /// Neighbor Solicitation. `unicast: None` means broadcast (ARP) or the
    /// solicited-node multicast address (ND, RFC 4861 §7.2.2); `Some(mac)`
    /// is a unicast probe to that address (§7.3.3).
    Solicit {
        iface: usize,
        target: IpAddr,
        unicast: Option<Mac>,
    },
    /// A queued packet is dropped (already counted).
    Dropped { packet: P, reason: DropReason },
}

/// How a link-layer address was learned, which decides the resulting state
/// (RFC 4861 §7.2.3, §7.2.5; Linux `arp_process`, `ndisc_recv_na`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Learned {
    /// A reply to a solicitation, which confirms reachability: an ARP reply
    /// addressed to us (`override_flag: true`), or a Neighbor Advertisement
    /// with the Solicited flag set (`override_flag` is its O flag).
    Solicited { override_flag: bool },
    /// An unsolicited advertisement: gratuitous ARP or an ARP request
    /// between other hosts (`override_flag: true`), or a Neighbor
    /// Advertisement with the Solicited flag clear. Never creates an entry.
    Unsolicited { override_flag: bool },
    /// The host asked us something and told its address: an ARP request
    /// for one of our addresses, or an NS, RS or Redirect carrying a
    /// source/target link-layer address option. Creates a STALE entry if
    /// there is none (room permitting).
    Request,
}

/// One entry, for listing (`ip neigh`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighborEntry {
    pub iface: usize,
    pub ip: IpAddr,
    /// `None` while INCOMPLETE or FAILED.
    pub mac: Option<Mac>,
    pub state: NeighborState,
    /// Since the state or address last changed.
    pub updated: Duration,
    /// Since a packet was last sent or queued through the entry.
    pub used: Option<Duration>,
    /// Since reachability was last confirmed.
    pub confirmed: Option<Duration>,
    /// Packets waiting for resolution.
    pub queued: usize,
}

/// Event counts since the cache was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NeighborCounters {
    /// INCOMPLETE entries that learned their address.
    pub resolved: u64,
    /// Solicitations asked for (broadcast/multicast and unicast).
    pub solicits: u64,
    /// Resolutions and probes that ended FAILED.
    pub failed: u64,
    /// Packets dropped from a full queue.
    pub dropped_queue_full: u64,
    /// Queued packets dropped because resolution failed.
    pub dropped_failed: u64,
    /// Packets refused because the table had no evictable entry.
    pub dropped_no_room: u64,
    /// Packets refused because the destination was not unicast.
    pub dropped_not_unicast: u64,
    /// Queued packets handed back by `remove`/`forget_iface`.
    pub dropped_flushed: u64,
    /// Entries evicted to make room.
    pub evictions: u64,
    /// [`Learned::Request`]s that made no entry for want of room.
    pub refused_unsolicited: u64,
}

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
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    const A: Mac = [2, 0, 0, 0, 0, 0xa];
    const B: Mac = [2, 0, 0, 0, 0, 0xb];
    const SEC: Duration = Duration::from_secs(1);

    type Cache = NeighborCache<u32>;

    fn cache() -> Cache {
        NeighborCache::new(NeighborConfig::default(), 7)
    }

    fn t(s: u64) -> Instant {
        Instant::from_millis(s * 1000)
    }

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    fn v6(n: u32) -> IpAddr {
        IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, n as u16))
    }

    fn poll(c: &mut Cache, now: Instant) -> Vec<Action<u32>> {
        let mut out = Vec::new();
        c.poll(now, &mut |a| out.push(a));
        check_invariants(c);
        out
    }

    fn state(c: &Cache, ip: IpAddr) -> Option<(NeighborState, Option<Mac>)> {
        c.get(Instant::ZERO, 0, ip).map(|e| (e.state, e.mac))
    }

    fn solicit(ip: IpAddr, unicast: Option<Mac>) -> Action<u32> {
        Action::Solicit {
            iface: 0,
            target: ip,
            unicast,
        }
    }

    /// The indexes agree with the table.
    fn check_invariants(c: &Cache) {
        assert!(c.entries.len() <= c.config.capacity);
        assert_eq!(c.deadlines.len(), c.entries.len());
        for (&key, e) in &c.entries {
            assert!(c.deadlines.contains(&(e.deadline, key)));
            if let Some(k) = e.evict_key(key) {
                assert!(c.evictable.contains(&k));
            }
            if let State::Incomplete { queue, .. } = &e.state {
                assert!(queue.len() <= c.config.queue_len);
            }
        }
        let evictable = c
            .entries
            .iter()
            .filter(|(&k, e)| e.evict_key(k).is_some())
            .count();
        assert_eq!(c.evictable.len(), evictable);
        let min = c.entries.values().map(|e| e.deadline).min();
        assert_eq!(c.next_deadline(), min);
    }

    /// An entry in each state with address `mac`, made at `now` the way
    /// traffic makes it.
    fn make(c: &mut Cache, now: Instant, ip: IpAddr, want: NeighborState, mac: Mac) {
        match want {
            NeighborState::Incomplete => {
                let r = c.resolve(now, 0, ip, 1);
                assert_eq!(r, Resolve::Queued { displaced: None });
                assert_eq!(poll(c, now), vec![solicit(ip, None)]);
            }
            NeighborState::Reachable => {
                make(c, now, ip, NeighborState::Incomplete, mac);
                let released = c.learn(
                    now,
                    0,
                    ip,
                    mac,
                    Learned::Solicited {
                        override_flag: true,
                    },
                );
                assert_eq!(released, vec![1]);
            }
            NeighborState::Stale => {
                assert!(c.learn(now, 0, ip, mac, Learned::Request).is_empty());
            }
            NeighborState::Delay => {
                make(c, now, ip, NeighborState::Stale, mac);
                assert_eq!(c.resolve(now, 0, ip, 2), Resolve::Send { mac, packet: 2 });
            }
            NeighborState::Probe => {
                let then = now - c.config.delay_first_probe_time;
                make(c, then, ip, NeighborState::Delay, mac);
                assert_eq!(poll(c, now), vec![solicit(ip, Some(mac))]);
            }
            NeighborState::Failed => {
                let then = now - 3 * c.config.retrans_time;
                make(c, then, ip, NeighborState::Incomplete, mac);
                poll(c, then + SEC);
                poll(c, then + 2 * SEC);
                let out = poll(c, now);
                assert_eq!(
                    out,
                    vec![Action::Dropped {
                        packet: 1,
                        reason: DropReason::ResolutionFailed
                    }]
                );
            }
        }
        assert_eq!(state(c, ip).map(|s| s.0), Some(want), "making {want}");
        check_invariants(c);
    }

    // ---- RFC 4861 Appendix C, row by row ----

    #[test]
    fn packet_to_unknown_neighbour_creates_incomplete_and_solicits_at_once() {
        let mut c = cache();
        let ip = v4(1);
        assert_eq!(
            c.resolve(t(10), 0, ip, 1),
            Resolve::Queued { displaced: None }
        );
        assert_eq!(state(&c, ip), Some((NeighborState::Incomplete, None)));
        assert_eq!(c.next_deadline(), Some(t(10)));
        assert_eq!(poll(&mut c, t(10)), vec![solicit(ip, None)]);
        assert_eq!(c.next_deadline(), Some(t(11)));
        assert!(poll(&mut c, t(11) - Duration::from_micros(1)).is_empty());
        // More packets queue; they do not solicit again.
        assert_eq!(
            c.resolve(t(10), 0, ip, 2),
            Resolve::Queued { displaced: None }
        );
        assert_eq!(c.next_deadline(), Some(t(11)));
        assert_eq!(c.counters().solicits, 1);
    }

    #[test]
    fn incomplete_retransmits_then_fails_and_drops_the_queue() {
        let mut c = cache();
        let ip = v6(1);
        c.resolve(t(0), 0, ip, 1);
        c.resolve(t(0), 0, ip, 2);
        assert_eq!(poll(&mut c, t(0)), vec![solicit(ip, None)]);
        assert_eq!(poll(&mut c, t(1)), vec![solicit(ip, None)]);
        assert_eq!(poll(&mut c, t(2)), vec![solicit(ip, None)]);
        assert_eq!(
            poll(&mut c, t(3)),
            vec![
                Action::Dropped {
                    packet: 1,
                    reason: DropReason::ResolutionFailed
                },
                Action::Dropped {
                    packet: 2,
                    reason: DropReason::ResolutionFailed
                }
            ]
        );
        assert_eq!(state(&c, ip), Some((NeighborState::Failed, None)));
        let k = c.counters();
        assert_eq!((k.solicits, k.failed, k.dropped_failed), (3, 1, 2));
        // FAILED is garbage after gc_stale_time.
        assert!(poll(&mut c, t(62)).is_empty());
        assert_eq!(state(&c, ip).map(|s| s.0), Some(NeighborState::Failed));
        assert!(poll(&mut c, t(63)).is_empty());
        assert!(c.is_empty());
        assert_eq!(c.next_deadline(), None);
    }

    #[test]
    fn a_packet_to_a_failed_neighbour_restarts_resolution() {
        let mut c = cache();
        let ip = v4(1);
        make(&mut c, t(10), ip, NeighborState::Failed, A);
        assert_eq!(
            c.resolve(t(11), 0, ip, 9),
            Resolve::Queued { displaced: None }
        );
        assert_eq!(state(&c, ip), Some((NeighborState::Incomplete, None)));
        assert_eq!(poll(&mut c, t(11)), vec![solicit(ip, None)]);
    }

    #[test]
    fn incomplete_learns_from_each_kind_of_message() {
        // (how, state with an empty queue, state after releasing a queue)
        let rows = [
            (
                Learned::Solicited {
                    override_flag: false,
                },
                NeighborState::Reachable,
                NeighborState::Reachable,
            ),
            (
                Learned::Solicited {
                    override_flag: true,
                },
                NeighborState::Reachable,
                NeighborState::Reachable,
            ),
            (
                Learned::Unsolicited {
                    override_flag: false,
                },
                NeighborState::Stale,
                NeighborState::Delay,
            ),
            (
                Learned::Unsolicited {
                    override_flag: true,
                },
                NeighborState::Stale,
                NeighborState::Delay,
            ),
            (Learned::Request, NeighborState::Stale, NeighborState::Delay),
        ];
        for (how, _, with_queue) in rows {
            let mut c = cache();
            let ip = v6(1);
            make(&mut c, t(0), ip, NeighborState::Incomplete, A);
            c.resolve(t(0), 0, ip, 2);
            assert_eq!(c.learn(t(1), 0, ip, A, how), vec![1, 2], "{how:?}");
            assert_eq!(state(&c, ip), Some((with_queue, Some(A))), "{how:?}");
            assert_eq!(c.counters().resolved, 1);
            check_invariants(&c);
        }
        // With nothing queued (queue_len 0), nothing is sent through the
        // entry, so STALE stays STALE.
        for (how, empty, _) in rows {
            let ip = v6(1);
            let mut c = NeighborCache::new(
                NeighborConfig {
                    queue_len: 0,
                    ..NeighborConfig::default()
                },
                1,
            );
            assert_eq!(
                c.resolve(t(0), 0, ip, 1),
                Resolve::Dropped {
                    packet: 1,
                    reason: DropReason::QueueFull
                }
            );
            assert_eq!(state(&c, ip), Some((NeighborState::Incomplete, None)));
            assert!(c.learn(t(1), 0, ip, A, how).is_empty());
            assert_eq!(state(&c, ip), Some((empty, Some(A))), "{how:?}");
        }
    }

    #[test]
    fn advertisements_on_known_entries_follow_section_7_2_5() {
        use NeighborState::*;
        // Appendix C's rows for "!INCOMPLETE" and an NA with a link-layer
        // address: (state, S, O, same address?) -> (state, cached address).
        let rows: &[(NeighborState, bool, bool, bool, NeighborState, Mac)] = &[
            // S=1, O=0, same address: REACHABLE.
            (Reachable, true, false, true, Reachable, A),
            (Stale, true, false, true, Reachable, A),
            (Delay, true, false, true, Reachable, A),
            (Probe, true, false, true, Reachable, A),
            // S=1, O=0, different: REACHABLE -> STALE, others unchanged;
            // the address is not updated.
            (Reachable, true, false, false, Stale, A),
            (Stale, true, false, false, Stale, A),
            (Delay, true, false, false, Delay, A),
            (Probe, true, false, false, Probe, A),
            // S=1, O=1: record the address, REACHABLE.
            (Reachable, true, true, false, Reachable, B),
            (Stale, true, true, false, Reachable, B),
            (Delay, true, true, false, Reachable, B),
            (Probe, true, true, false, Reachable, B),
            (Stale, true, true, true, Reachable, A),
            // S=0, O=0: unchanged, except §7.2.5 (a): a REACHABLE entry
            // with a different address goes STALE.
            (Reachable, false, false, true, Reachable, A),
            (Stale, false, false, true, Stale, A),
            (Probe, false, false, true, Probe, A),
            (Reachable, false, false, false, Stale, A),
            (Stale, false, false, false, Stale, A),
            (Delay, false, false, false, Delay, A),
            (Probe, false, false, false, Probe, A),
            // S=0, O=1, different: record the address, STALE.
            (Reachable, false, true, false, Stale, B),
            (Stale, false, true, false, Stale, B),
            (Delay, false, true, false, Stale, B),
            (Probe, false, true, false, Stale, B),
            // S=0, O=1, same: unchanged.
            (Reachable, false, true, true, Reachable, A),
            (Delay, false, true, true, Delay, A),
            (Probe, false, true, true, Probe, A),
        ];
        for &(from, s, o, same, to, mac) in rows {
            let mut c = cache();
            let ip = v6(1);
            make(&mut c, t(100), ip, from, A);
            let how = if s {
                Learned::Solicited { override_flag: o }
            } else {
                Learned::Unsolicited { override_flag: o }
            };
            let sent = if same { A } else { B };
            assert!(c.learn(t(101), 0, ip, sent, how).is_empty());
            assert_eq!(
                state(&c, ip),
                Some((to, Some(mac))),
                "{from} S={s} O={o} same={same}"
            );
            check_invariants(&c);
        }
    }

    #[test]
    fn requests_on_known_entries_follow_section_7_2_3() {
        use NeighborState::*;
        for from in [Reachable, Stale, Delay, Probe] {
            let mut c = cache();
            let ip = v4(1);
            make(&mut c, t(100), ip, from, A);
            c.learn(t(101), 0, ip, A, Learned::Request);
            assert_eq!(state(&c, ip), Some((from, Some(A))), "{from} same");
            c.learn(t(102), 0, ip, B, Learned::Request);
            assert_eq!(state(&c, ip), Some((Stale, Some(B))), "{from} different");
        }
    }

    #[test]
    fn only_requests_create_entries() {
        let mut c = cache();
        for how in [
            Learned::Solicited {
                override_flag: true,
            },
            Learned::Unsolicited {
                override_flag: true,
            },
        ] {
            assert!(c.learn(t(0), 0, v4(1), A, how).is_empty());
            assert!(c.is_empty(), "{how:?}");
        }
        c.learn(t(0), 0, v4(1), A, Learned::Request);
        assert_eq!(state(&c, v4(1)), Some((NeighborState::Stale, Some(A))));
        // Never for a non-unicast address.
        c.learn(
            t(0),
            0,
            IpAddr::V4(Ipv4Addr::BROADCAST),
            A,
            Learned::Request,
        );
        c.learn(t(0), 0, "ff02::1".parse().unwrap(), A, Learned::Request);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn failed_entries_accept_addresses_like_linux() {
        let mut c = cache();
        let ip = v4(1);
        make(&mut c, t(10), ip, NeighborState::Failed, A);
        c.learn(
            t(11),
            0,
            ip,
            B,
            Learned::Solicited {
                override_flag: true,
            },
        );
        assert_eq!(state(&c, ip), Some((NeighborState::Reachable, Some(B))));
        assert_eq!(c.counters().resolved, 0);
    }

    #[test]
    fn upper_layer_confirmation_makes_known_entries_reachable() {
        use NeighborState::*;
        for from in [Reachable, Stale, Delay, Probe] {
            let mut c = cache();
            let ip = v4(1);
            make(&mut c, t(100), ip, from, A);
            c.confirm(t(101), 0, ip);
            assert_eq!(state(&c, ip), Some((Reachable, Some(A))), "{from}");
            check_invariants(&c);
        }
        for from in [Incomplete, Failed] {
            let mut c = cache();
            let ip = v4(1);
            make(&mut c, t(100), ip, from, A);
            c.confirm(t(100), 0, ip);
            assert_eq!(state(&c, ip).map(|s| s.0), Some(from));
        }
        let mut c = cache();
        c.confirm(t(1), 0, v4(1));
        assert!(c.is_empty());
    }

    #[test]
    fn reachable_times_out_to_stale_or_to_delay_when_in_use() {
        let mut c = cache();
        let rt = c.reachable_time();
        let ip = v4(1);
        make(&mut c, t(0), ip, NeighborState::Reachable, A);
        assert_eq!(c.next_deadline(), Some(t(0) + rt));
        assert!(poll(&mut c, t(0) + rt - Duration::from_micros(1)).is_empty());
        assert_eq!(state(&c, ip).unwrap().0, NeighborState::Reachable);
        poll(&mut c, t(0) + rt);
        assert_eq!(state(&c, ip), Some((NeighborState::Stale, Some(A))));

        // Used within DELAY_FIRST_PROBE_TIME of the timeout: DELAY at once.
        let ip = v4(2);
        make(&mut c, t(1000), ip, NeighborState::Reachable, A);
        let rt = c.reachable_time();
        let used = t(1000) + rt - 4 * SEC;
        assert_eq!(
            c.resolve(used, 0, ip, 5),
            Resolve::Send { mac: A, packet: 5 }
        );
        poll(&mut c, t(1000) + rt);
        assert_eq!(state(&c, ip), Some((NeighborState::Delay, Some(A))));
        assert_eq!(c.next_deadline(), Some(t(1005) + rt));
    }

    #[test]
    fn confirmation_while_reachable_extends_it_without_touching_timers() {
        let mut c = cache();
        let ip = v4(1);
        make(&mut c, t(0), ip, NeighborState::Reachable, A);
        let rt = c.reachable_time();
        let first = c.next_deadline().unwrap();
        c.confirm(t(10), 0, ip);
        assert_eq!(c.next_deadline(), Some(first), "lazy");
        poll(&mut c, first);
        assert_eq!(state(&c, ip).unwrap().0, NeighborState::Reachable);
        assert_eq!(c.next_deadline(), Some(t(10) + rt));
        poll(&mut c, t(10) + rt);
        assert_eq!(state(&c, ip).unwrap().0, NeighborState::Stale);
    }

    #[test]
    fn stale_delay_probe_failed() {
        let mut c = cache();
        let ip = v6(3);
        make(&mut c, t(0), ip, NeighborState::Stale, A);
        // Sending through STALE sends and starts the delay timer.
        assert_eq!(
            c.resolve(t(1), 0, ip, 7),
            Resolve::Send { mac: A, packet: 7 }
        );
        assert_eq!(state(&c, ip).unwrap().0, NeighborState::Delay);
        assert_eq!(c.next_deadline(), Some(t(6)));
        // DELAY and PROBE still send.
        assert_eq!(
            c.resolve(t(2), 0, ip, 8),
            Resolve::Send { mac: A, packet: 8 }
        );
        assert_eq!(poll(&mut c, t(6)), vec![solicit(ip, Some(A))]);
        assert_eq!(state(&c, ip).unwrap().0, NeighborState::Probe);
        assert_eq!(
            c.resolve(t(6), 0, ip, 9),
            Resolve::Send { mac: A, packet: 9 }
        );
        assert_eq!(poll(&mut c, t(7)), vec![solicit(ip, Some(A))]);
        assert_eq!(poll(&mut c, t(8)), vec![solicit(ip, Some(A))]);
        assert!(poll(&mut c, t(9)).is_empty());
        assert_eq!(state(&c, ip), Some((NeighborState::Failed, None)));
        let k = c.counters();
        assert_eq!((k.solicits, k.failed), (3, 1));
    }

    #[test]
    fn unused_stale_entries_are_collected() {
        let mut c = cache();
        make(&mut c, t(0), v4(1), NeighborState::Stale, A);
        assert_eq!(c.next_deadline(), Some(t(60)));
        poll(&mut c, t(60));
        assert!(c.is_empty());
    }

    #[test]
    fn arp_locktime_keeps_the_first_answer() {
        let mut c = cache();
        let ip = v4(1);
        make(&mut c, t(0), ip, NeighborState::Reachable, A);
        let reply = Learned::Solicited {
            override_flag: true,
        };
        c.learn(t(0) + SEC / 2, 0, ip, B, reply);
        assert_eq!(state(&c, ip), Some((NeighborState::Stale, Some(A))));
        c.learn(t(0) + 2 * SEC, 0, ip, B, reply);
        assert_eq!(state(&c, ip), Some((NeighborState::Reachable, Some(B))));
        // IPv6 has no locktime.
        let ip = v6(1);
        make(&mut c, t(10), ip, NeighborState::Reachable, A);
        c.learn(t(10), 0, ip, B, reply);
        assert_eq!(state(&c, ip), Some((NeighborState::Reachable, Some(B))));
    }

    // ---- queues and bounds ----

    #[test]
    fn a_full_queue_drops_its_oldest_packet() {
        let mut c = cache();
        let ip = v4(1);
        for p in 1..=3 {
            assert_eq!(
                c.resolve(t(0), 0, ip, p),
                Resolve::Queued { displaced: None }
            );
        }
        assert_eq!(
            c.resolve(t(0), 0, ip, 4),
            Resolve::Queued { displaced: Some(1) }
        );
        assert_eq!(
            c.resolve(t(0), 0, ip, 5),
            Resolve::Queued { displaced: Some(2) }
        );
        assert_eq!(c.get(t(0), 0, ip).unwrap().queued, 3);
        assert_eq!(c.counters().dropped_queue_full, 2);
        let released = c.learn(t(0), 0, ip, A, Learned::Request);
        assert_eq!(released, vec![3, 4, 5]);
    }

    #[test]
    fn non_unicast_destinations_are_refused() {
        let mut c = cache();
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::",
            "ff02::1:ff00:1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(
                c.resolve(t(0), 0, ip, 1),
                Resolve::Dropped {
                    packet: 1,
                    reason: DropReason::NotUnicast
                }
            );
        }
        assert!(c.is_empty());
        assert_eq!(c.counters().dropped_not_unicast, 5);
    }

    fn small(capacity: usize) -> Cache {
        NeighborCache::new(
            NeighborConfig {
                capacity,
                ..NeighborConfig::default()
            },
            3,
        )
    }

    #[test]
    fn eviction_takes_failed_then_unused_stale_then_least_recently_used() {
        let mut c = small(4);
        // Two used STALE entries (used at 1 and 2), an unused STALE one, a
        // FAILED one.
        for (n, at) in [(1, 2), (2, 1)] {
            make(&mut c, t(at), v4(n), NeighborState::Reachable, A);
        }
        let rt = c.reachable_time();
        poll(&mut c, t(10) + rt);
        assert_eq!(state(&c, v4(1)).unwrap().0, NeighborState::Stale);
        make(&mut c, t(20) + rt, v4(3), NeighborState::Stale, A);
        make(&mut c, t(30) + rt, v4(4), NeighborState::Failed, A);
        let now = t(40) + rt;
        let order = [v4(4), v4(3), v4(2), v4(1)];
        for (i, gone) in order.into_iter().enumerate() {
            let r = c.resolve(now, 0, v4(100 + i as u32), 0);
            assert_eq!(r, Resolve::Queued { displaced: None });
            assert!(state(&c, gone).is_none(), "step {i}");
            assert_eq!(c.len(), 4);
            check_invariants(&c);
        }
        assert_eq!(c.counters().evictions, 4);
        // Now every entry is INCOMPLETE: nothing may go.
        let r = c.resolve(now, 0, v4(200), 9);
        assert_eq!(
            r,
            Resolve::Dropped {
                packet: 9,
                reason: DropReason::NoRoom
            }
        );
        c.learn(now, 0, v4(201), A, Learned::Request);
        assert_eq!(c.len(), 4);
        let k = c.counters();
        assert_eq!((k.dropped_no_room, k.refused_unsolicited), (1, 1));
    }

    #[test]
    fn a_request_flood_never_evicts_entries_in_use() {
        let mut c = small(64);
        let mut rng = SmallRng::seed_from_u64(1);
        let gateway = v4(1);
        make(&mut c, t(0), gateway, NeighborState::Reachable, A);
        let pending = v4(2);
        c.resolve(t(0), 0, pending, 77);
        let mut now = t(0);
        for i in 0..20_000u32 {
            now += Duration::from_micros(500);
            let forged = IpAddr::V4(Ipv4Addr::from(
                (rng.gen::<u32>() & 0x7fff_ffff) | 0x0100_0000,
            ));
            let mac = [2, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8, 1];
            c.learn(now, 0, forged, mac, Learned::Request);
            if i % 100 == 0 {
                // The gateway is in use: TCP confirms it.
                assert!(matches!(
                    c.resolve(now, 0, gateway, i),
                    Resolve::Send { .. }
                ));
                c.confirm(now, 0, gateway);
                poll(&mut c, now);
            }
            assert!(c.len() <= 64);
        }
        check_invariants(&c);
        assert_eq!(
            state(&c, gateway),
            Some((NeighborState::Reachable, Some(A)))
        );
        // The INCOMPLETE entry went FAILED after 3 s, then was recycled.
        assert!(c.counters().evictions > 19_000);
        assert_eq!(c.counters().dropped_failed, 1);
    }

    #[test]
    fn forget_iface_and_remove_hand_back_queued_packets() {
        let mut c = cache();
        c.resolve(t(0), 1, v4(1), 10);
        c.resolve(t(0), 1, v6(1), 11);
        c.resolve(t(0), 2, v4(1), 20);
        c.learn(t(0), 1, v4(2), A, Learned::Request);
        c.learn(t(0), 3, v4(2), A, Learned::Request);
        let mut flushed = c.forget_iface(1);
        flushed.sort();
        assert_eq!(flushed, vec![10, 11]);
        let left: Vec<(usize, IpAddr)> = c.entries(t(0)).map(|e| (e.iface, e.ip)).collect();
        assert_eq!(left, vec![(2, v4(1)), (3, v4(2))]);
        assert_eq!(c.remove(2, v4(1)), vec![20]);
        assert!(c.remove(3, v4(2)).is_empty());
        assert!(c.remove(3, v4(9)).is_empty());
        assert!(c.is_empty());
        assert_eq!(c.counters().dropped_flushed, 3);
        check_invariants(&c);
    }

    #[test]
    fn listing_shows_state_address_and_ages() {
        let mut c = cache();
        c.resolve(t(5), 0, v4(2), 1);
        c.learn(t(1), 0, v4(1), A, Learned::Request);
        let l: Vec<NeighborEntry> = c.entries(t(10)).collect();
        assert_eq!(
            l,
            vec![
                NeighborEntry {
                    iface: 0,
                    ip: v4(1),
                    mac: Some(A),
                    state: NeighborState::Stale,
                    updated: 9 * SEC,
                    used: None,
                    confirmed: None,
                    queued: 0,
                },
                NeighborEntry {
                    iface: 0,
                    ip: v4(2),
                    mac: None,
                    state: NeighborState::Incomplete,
                    updated: 5 * SEC,
                    used: Some(5 * SEC),
                    confirmed: None,
                    queued: 1,
                },
            ]
        );
        assert_eq!(l[0].state.to_string(), "STALE");
    }

    // ---- randomization and time ----

    #[test]
    fn reachable_time_is_randomized_within_half_to_one_and_a_half() {
        let base = NeighborConfig::default().base_reachable_time;
        let (lo, hi) = (base / 2, base * 3 / 2);
        let mut seen = Vec::new();
        for seed in 0..2000u64 {
            let c = Cache::new(NeighborConfig::default(), seed);
            seen.push(c.reachable_time());
        }
        // One cache, redrawn every 300 s.
        let mut c = cache();
        for i in 0..200u64 {
            let ip = v4(i as u32 + 1);
            make(&mut c, t(i * 301), ip, NeighborState::Reachable, A);
            let e = c.get(t(i * 301), 0, ip).unwrap();
            assert_eq!(e.confirmed, Some(Duration::ZERO));
            seen.push(c.reachable_time());
            let deadline = c.entries[&(0, ip)].deadline;
            assert_eq!(deadline, t(i * 301) + c.reachable_time());
        }
        assert!(seen.iter().all(|&d| lo <= d && d < hi));
        let min = *seen.iter().min().unwrap();
        let max = *seen.iter().max().unwrap();
        assert!(
            min < base * 11 / 20 && max > base * 29 / 20,
            "{min:?} {max:?}"
        );
        // Same seed, same draws: the core is deterministic.
        assert_eq!(Cache::new(NeighborConfig::default(), 5).reachable_time(), {
            Cache::new(NeighborConfig::default(), 5).reachable_time()
        });
    }

    #[test]
    fn a_jump_in_time_takes_one_step_per_poll() {
        let mut c = cache();
        let ip = v4(1);
        make(&mut c, t(0), ip, NeighborState::Incomplete, A);
        // An hour passes: one more solicitation, not instant failure.
        assert_eq!(poll(&mut c, t(3600)), vec![solicit(ip, None)]);
        assert_eq!(c.next_deadline(), Some(t(3601)));
        // A REACHABLE entry an hour later is STALE.
        let ip = v6(1);
        make(&mut c, t(3600), ip, NeighborState::Reachable, A);
        poll(&mut c, t(7200));
        assert_eq!(state(&c, ip).unwrap().0, NeighborState::Stale);
        // Time going backwards runs nothing and breaks nothing.
        assert!(poll(&mut c, t(0)).is_empty());
        assert!(matches!(c.resolve(t(0), 0, ip, 1), Resolve::Send { .. }));
        // The end of time saturates.
        let end = Instant::from_micros(u64::MAX);
        c.resolve(end, 0, v4(9), 3);
        let out = poll(&mut c, end);
        assert!(out.contains(&solicit(v4(9), None)));
        for _ in 0..10 {
            poll(&mut c, end);
        }
        check_invariants(&c);
    }

    #[test]
    fn zero_timers_are_raised_so_poll_cannot_spin() {
        let mut c: Cache = NeighborCache::new(
            NeighborConfig {
                retrans_time: Duration::ZERO,
                base_reachable_time: Duration::ZERO,
                delay_first_probe_time: Duration::ZERO,
                gc_stale_time: Duration::ZERO,
                max_multicast_solicit: 0,
                ..NeighborConfig::default()
            },
            0,
        );
        assert_eq!(c.config().retrans_time, MIN_TIMER);
        c.resolve(t(0), 0, v4(1), 1);
        let out = poll(&mut c, t(0));
        assert_eq!(
            out,
            vec![Action::Dropped {
                packet: 1,
                reason: DropReason::ResolutionFailed
            }]
        );
    }

    // ---- a random workout against a model of packet conservation ----

    #[test]
    fn random_operations_keep_invariants_and_lose_no_packet() {
        for seed in 0..20u64 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut c: Cache = NeighborCache::new(
                NeighborConfig {
                    capacity: 16,
                    queue_len: rng.gen_range(0..4),
                    ..NeighborConfig::default()
                },
                seed,
            );
            let mut now = t(0);
            let mut next_packet = 0u32;
            // Every packet handed in comes out exactly once, or is queued.
            let mut out_count = 0usize;
            for _ in 0..3000 {
                now += Duration::from_millis(rng.gen_range(0..1500));
                let iface = rng.gen_range(0..2);
                let ip = if rng.gen() {
                    v4(rng.gen_range(0..24))
                } else {
                    v6(rng.gen_range(0..24))
                };
                let mac = if rng.gen() { A } else { B };
                match rng.gen_range(0..10) {
                    0..=3 => {
                        next_packet += 1;
                        match c.resolve(now, iface, ip, next_packet) {
                            Resolve::Send { .. } | Resolve::Dropped { .. } => out_count += 1,
                            Resolve::Queued { displaced } => {
                                out_count += usize::from(displaced.is_some())
                            }
                        }
                    }
                    4 => {
                        let how = match rng.gen_range(0..3) {
                            0 => Learned::Request,
                            1 => Learned::Solicited {
                                override_flag: rng.gen(),
                            },
                            _ => Learned::Unsolicited {
                                override_flag: rng.gen(),
                            },
                        };
                        let before = c.get(now, iface, ip);
                        let released = c.learn(now, iface, ip, mac, how);
                        if !released.is_empty() {
                            assert_eq!(before.unwrap().queued, released.len());
                            assert_eq!(c.get(now, iface, ip).unwrap().mac, Some(mac));
                        }
                        out_count += released.len();
                    }
                    5 => c.confirm(now, iface, ip),
                    6 if rng.gen_range(0..20) == 0 => out_count += c.forget_iface(iface).len(),
                    7 if rng.gen_range(0..5) == 0 => out_count += c.remove(iface, ip).len(),
                    _ => {
                        let mut dropped = 0;
                        c.poll(now, &mut |a| {
                            if let Action::Dropped { .. } = a {
                                dropped += 1
                            }
                        });
                        out_count += dropped;
                    }
                }
                check_invariants(&c);
                let queued: usize = c.entries(now).map(|e| e.queued).sum();
                assert_eq!(out_count + queued, next_packet as usize, "seed {seed}");
                for e in c.entries(now) {
                    let has_mac =
                        !matches!(e.state, NeighborState::Incomplete | NeighborState::Failed);
                    assert_eq!(e.mac.is_some(), has_mac);
                }
            }
        }
    }
}
