//! Path MTUs learnt from ICMP (RFC 1191 for IPv4, RFC 8201 for IPv6), kept
//! as Linux keeps them in its route exceptions.
//!
//! - A report only ever lowers the estimate (RFC 1191 §6.1, RFC 8201 §4:
//!   "MUST NOT increase ... in response to the contents of a Packet Too
//!   Big"); one at or above the current estimate, or above the link MTU,
//!   changes nothing.
//! - A report below the family's floor sets the floor: Linux's
//!   `min_pmtu`, 552, for IPv4 (the peer may claim 68, RFC 791's minimum,
//!   but believing it lets an attacker shrink every segment to a few
//!   bytes); 1280 for IPv6 (RFC 8200 §5, RFC 8201 §4).
//! - An estimate expires 10 minutes after it was learnt (Linux's
//!   `mtu_expires`; RFC 1191 §6.3 and RFC 8201 §4 suggest "no less than 5
//!   minutes ... 10 minutes recommended"), after which the link MTU applies
//!   again and the path is probed afresh. A repeated report of the same
//!   value more than half-way through the lifetime renews it, as in Linux.
//! - The cache is bounded; when full, the entry learnt or renewed longest
//!   ago goes.

use std::net::IpAddr;
use std::time::Duration;

use super::lru::Lru;
use crate::time::Instant;

/// Linux's `net.ipv4.route.min_pmtu`: the smallest IPv4 path MTU believed.
pub const IPV4_MIN_PMTU: u32 = 552;

/// The IPv6 minimum link MTU (RFC 8200 §5).
pub const IPV6_MIN_MTU: u32 = 1280;

/// How long a learnt path MTU lasts (Linux's `net.ipv4.route.mtu_expires`).
pub const PMTU_EXPIRES: Duration = Duration::from_secs(600);

#[derive(Clone, Copy, Debug)]
struct Entry {
    mtu: u32,
    learnt: Instant,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        now.since(self.learnt) < PMTU_EXPIRES
    }
}

/// The path-MTU cache. See the module documentation.
#[derive(Debug)]
pub struct PmtuCache {
    entries: Lru<IpAddr, Entry>,
}

fn family_min(dst: IpAddr) -> u32 {
    match dst {
        IpAddr::V4(_) => IPV4_MIN_PMTU,
        IpAddr::V6(_) => IPV6_MIN_MTU,
    }
}

impl PmtuCache {
    /// An empty cache of at most `capacity` destinations (at least one).
    pub fn new(capacity: usize) -> PmtuCache {
        PmtuCache {
            entries: Lru::new(capacity),
        }
    }

    /// Takes a report at `now` that the path to `dst` carries at most
    /// `reported_mtu` octets (from Fragmentation Needed or Packet Too Big),
    /// over a link of `link_mtu`. Returns the new path MTU if it went down,
    /// `None` if nothing changed.
    ///
    /// `dst` is the destination of the packet the error quotes (the remote
    /// end of the connection), not the router that sent the error.
    ///
    /// An IPv4 report of 0 (a router older than RFC 1191) sets the floor,
    /// as in Linux; the caller that wants RFC 1191 §5's plateau estimate
    /// instead computes it and reports that. When an IPv4 report is below
    /// [`IPV4_MIN_PMTU`], Linux also locks the path MTU and stops setting
    /// DF towards `dst`, so routers may fragment; that is the IP layer's to
    /// do, and it can tell by comparing the report with the floor.
    pub fn update(
        &mut self,
        now: Instant,
        dst: IpAddr,
        reported_mtu: u32,
        link_mtu: u32,
    ) -> Option<u32> {
        let current = match self.entries.peek(&dst) {
            Some(e) if e.live(now) => Some(*e),
            Some(_) => {
                self.entries.remove(&dst);
                None
            }
            None => None,
        };
        let estimate = current.map_or(link_mtu, |e| e.mtu.min(link_mtu));
        let mtu = reported_mtu.max(family_min(dst));
        if mtu < estimate {
            self.entries.insert(dst, Entry { mtu, learnt: now });
            return Some(mtu);
        }
        if let Some(e) = current {
            // Linux renews an estimate confirmed after half its lifetime.
            if mtu == e.mtu && now.since(e.learnt) >= PMTU_EXPIRES / 2 {
                self.entries.insert(dst, Entry { mtu, learnt: now });
            }
        }
        None
    }

    /// The path MTU learnt for `dst`, if one has not yet expired at `now`.
    /// The caller uses the lesser of it and the link MTU.
    pub fn get(&self, now: Instant, dst: IpAddr) -> Option<u32> {
        self.entries
            .peek(&dst)
            .filter(|e| e.live(now))
            .map(|e| e.mtu)
    }

    /// Forgets what was learnt for `dst` (its route changed). `true` if
    /// there was an entry.
    pub fn remove(&mut self, dst: IpAddr) -> bool {
        self.entries.remove(&dst).is_some()
    }

    /// Entries held, expired ones not yet overwritten included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use std::collections::HashMap;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, n))
    }

    fn v6(n: u16) -> IpAddr {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, n))
    }

    fn secs(s: u64) -> Instant {
        Instant::from_millis(s * 1000)
    }

    #[test]
    fn only_decreases_and_clamps() {
        let mut c = PmtuCache::new(16);
        let t = secs(1);
        assert!(c.is_empty());
        // Above or at the link MTU: nothing.
        assert_eq!(c.update(t, v4(1), 9000, 1500), None);
        assert_eq!(c.update(t, v4(1), 1500, 1500), None);
        assert_eq!(c.get(t, v4(1)), None);
        assert_eq!(c.update(t, v4(1), 1400, 1500), Some(1400));
        assert_eq!(c.get(t, v4(1)), Some(1400));
        assert_eq!(c.update(t, v4(1), 1450, 1500), None);
        assert_eq!(c.update(t, v4(1), 1400, 1500), None);
        assert_eq!(c.get(t, v4(1)), Some(1400));
        // Below the floor: the floor.
        assert_eq!(c.update(t, v4(1), 68, 1500), Some(IPV4_MIN_PMTU));
        assert_eq!(c.update(t, v4(1), 0, 1500), None);
        assert_eq!(c.update(t, v6(1), 0, 1500), Some(IPV6_MIN_MTU));
        assert_eq!(c.update(t, v6(1), 1279, 1500), None);
        assert_eq!(c.get(t, v6(1)), Some(1280));
        // A link MTU at or under the floor: nothing to learn.
        assert_eq!(c.update(t, v6(2), 1000, 1280), None);
        assert_eq!(c.update(t, v4(2), 300, 500), None);
        // A link MTU that shrank below a cached value is the estimate.
        assert_eq!(c.update(t, v4(3), 1400, 1500), Some(1400));
        assert_eq!(c.update(t, v4(3), 1300, 1280), None);
        assert_eq!(c.update(t, v4(3), 1200, 1280), Some(1200));
        assert_eq!(c.update(t, v4(4), u32::MAX, u32::MAX), None);
        assert_eq!(
            c.update(t, v4(4), u32::MAX - 1, u32::MAX),
            Some(u32::MAX - 1)
        );
    }

    #[test]
    fn entries_expire_after_ten_minutes() {
        let mut c = PmtuCache::new(16);
        assert_eq!(c.update(secs(100), v4(1), 1400, 1500), Some(1400));
        assert_eq!(c.get(secs(699), v4(1)), Some(1400));
        assert_eq!(c.get(secs(700), v4(1)), None);
        // Expired, it is learnt afresh, even at a higher value.
        assert_eq!(c.update(secs(700), v4(1), 1450, 1500), Some(1450));
        assert_eq!(c.get(secs(1299), v4(1)), Some(1450));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn a_lower_report_renews_and_a_repeat_renews_late_in_life() {
        let mut c = PmtuCache::new(16);
        c.update(secs(0), v4(1), 1400, 1500);
        // A repeat early on does not renew.
        c.update(secs(200), v4(1), 1400, 1500);
        assert_eq!(c.get(secs(600), v4(1)), None);
        c.update(secs(1000), v4(1), 1400, 1500);
        // Past half-way, it does.
        assert_eq!(c.update(secs(1400), v4(1), 1400, 1500), None);
        assert_eq!(c.get(secs(1999), v4(1)), Some(1400));
        assert_eq!(c.get(secs(2000), v4(1)), None);
        // A higher report never renews.
        c.update(secs(3000), v4(1), 1400, 1500);
        c.update(secs(3500), v4(1), 1450, 1500);
        assert_eq!(c.get(secs(3600), v4(1)), None);
        // A lower one restarts the clock.
        c.update(secs(4000), v4(1), 1400, 1500);
        c.update(secs(4100), v4(1), 1300, 1500);
        assert_eq!(c.get(secs(4699), v4(1)), Some(1300));
    }

    #[test]
    fn bounded_with_lru_eviction() {
        let mut c = PmtuCache::new(3);
        for n in 1..=3 {
            c.update(secs(u64::from(n)), v4(n), 1400, 1500);
        }
        // Renewing v4(1) makes v4(2) the oldest.
        c.update(secs(10), v4(1), 1300, 1500);
        c.update(secs(11), v4(4), 1400, 1500);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(secs(12), v4(2)), None);
        assert_eq!(c.get(secs(12), v4(1)), Some(1300));
        assert_eq!(c.get(secs(12), v4(3)), Some(1400));
        assert!(c.remove(v4(3)));
        assert!(!c.remove(v4(3)));
        assert_eq!(c.len(), 2);
        // A flood of destinations never grows it.
        for n in 0..=255u8 {
            c.update(secs(20), v4(n), 1000, 1500);
        }
        assert_eq!(c.len(), 3);
    }

    /// Against a plain map with no bound (capacity above the key count).
    #[test]
    fn matches_a_naive_model() {
        let mut rng = SmallRng::seed_from_u64(1191);
        let mut c = PmtuCache::new(64);
        let mut model: HashMap<IpAddr, (u32, u64)> = HashMap::new();
        let mut now = 0u64;
        for _ in 0..20_000 {
            now += rng.gen_range(0..60);
            let dst = if rng.gen() {
                v4(rng.gen_range(0..8))
            } else {
                v6(rng.gen_range(0..8))
            };
            let link = [1280u32, 1500, 9000][rng.gen_range(0..3)];
            let reported = rng.gen_range(0..10_000);
            let floor = if dst.is_ipv4() { 552 } else { 1280 };
            let live = model.get(&dst).filter(|(_, at)| now - at < 600).copied();
            let estimate = live.map_or(link, |(m, _)| m.min(link));
            let mtu = reported.max(floor);
            let want = if mtu < estimate {
                model.insert(dst, (mtu, now));
                Some(mtu)
            } else {
                if let Some((m, at)) = live {
                    if m == mtu && now - at >= 300 {
                        model.insert(dst, (mtu, now));
                    }
                }
                None
            };
            assert_eq!(c.update(secs(now), dst, reported, link), want);
            let probe = v4(rng.gen_range(0..8));
            let want = model
                .get(&probe)
                .filter(|(_, at)| now - at < 600)
                .map(|(m, _)| *m);
            assert_eq!(c.get(secs(now), probe), want);
        }
    }
}
