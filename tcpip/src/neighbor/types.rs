//! The neighbour cache's interface: its parameters, the states an entry is
//! in, and what it answers and asks of its caller.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

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

/// What [`NeighborCache::resolve`](super::NeighborCache::resolve) did with a packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolve<P> {
    /// Send `packet` to `mac` now.
    Send { mac: Mac, packet: P },
    /// The packet waits for resolution; it comes back from
    /// [`NeighborCache::learn`](super::NeighborCache::learn) when the address is learned, or as
    /// [`Action::Dropped`] when resolution fails. A solicitation may now be
    /// due: it comes out of [`NeighborCache::poll`](super::NeighborCache::poll), whose deadline is now.
    /// `displaced` is the queue's oldest packet, dropped to make room
    /// ([`DropReason::QueueFull`], already counted).
    Queued { displaced: Option<P> },
    /// The packet was not queued (already counted).
    Dropped { packet: P, reason: DropReason },
}

/// What the caller must do, from [`NeighborCache::poll`](super::NeighborCache::poll).
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
