//! Limits on sending ICMP errors (RFC 1812 §4.3.2.8, RFC 4443 §2.4(f)), as
//! Linux applies them (net/ipv4/icmp.c, net/ipv6/icmp.c, inetpeer.c).
//!
//! Two limits, both of which an error must pass:
//!
//! - a host-wide token bucket: `icmp_msgs_per_sec` (default 1000) tokens a
//!   second, at most `icmp_msgs_burst` (default 50) saved up, refilled no
//!   more often than every 20 ms. As Linux since the fix for
//!   CVE-2020-25705 (the "SAD DNS" side channel), each message sent takes a
//!   random 0, 1 or 2 tokens, so a prober cannot count the bucket down;
//!   the randomness here is a SipHash of a counter under the caller's
//!   secret. As Linux since 6.12, the global bucket is checked first but
//!   only charged once the per-destination limit has let the message
//!   through, so one destination's exhausted bucket cannot drain it.
//! - per destination address: one message per `icmp_ratelimit` (default
//!   1000 ms, IPv4 and IPv6 alike), with bursts of up to
//!   [`XRLIM_BURST_FACTOR`] (6) messages. A new destination starts with its
//!   full burst (Linux backdates a new peer's last message by 60 s).
//!
//! Linux shortens the IPv6 per-destination interval by the prefix length of
//! the route used (`tmo >>= (128 - plen) >> 5`: 250 ms for a /64, 62 ms
//! via a default route); this limiter has no routes and uses
//! [`RateLimitConfig::v6_interval`] for every destination.
//!
//! Which errors are limited at all is [`ErrorV4::rate_limited`] and
//! [`ErrorV6::rate_limited`] (Linux's default `ratemask`s: Fragmentation
//! Needed, Packet Too Big and echo replies never are). Errors to a loopback
//! address are not limited (Linux: "No rate limit on loopback"); nor should
//! the caller limit errors to its own addresses.
//!
//! The per-destination state is an LRU map of bounded size: a flood of
//! spoofed sources evicts old entries (which then start again with a full
//! burst), and the global bucket still caps the total.
//!
//! [`ErrorV4::rate_limited`]: super::ErrorV4::rate_limited
//! [`ErrorV6::rate_limited`]: super::ErrorV6::rate_limited

use std::hash::Hasher;
use std::net::IpAddr;
use std::time::Duration;

use siphasher::sip::SipHasher13;

use super::lru::Lru;
use crate::time::Instant;

/// How many intervals' worth of tokens one destination may save up
/// (Linux's `XRLIM_BURST_FACTOR`).
pub const XRLIM_BURST_FACTOR: u32 = 6;

/// The global bucket refills no more often than this (Linux: `HZ / 50`).
const GLOBAL_REFILL_MIN: Duration = Duration::from_millis(20);

/// The limits. [`Default`] is Linux's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Per-destination interval for ICMPv4 (`net.ipv4.icmp_ratelimit`,
    /// 1000 ms). Zero: no per-destination limit.
    pub v4_interval: Duration,
    /// Per-destination interval for ICMPv6 (`net.ipv6.icmp.ratelimit`,
    /// 1000 ms). Zero: no per-destination limit.
    pub v6_interval: Duration,
    /// Global refill rate (`net.ipv4.icmp_msgs_per_sec`, 1000), shared by
    /// both families as in Linux.
    pub msgs_per_sec: u32,
    /// Global bucket size (`net.ipv4.icmp_msgs_burst`, 50).
    pub msgs_burst: u32,
    /// Most destinations tracked at once.
    pub max_destinations: usize,
}

impl Default for RateLimitConfig {
    fn default() -> RateLimitConfig {
        RateLimitConfig {
            v4_interval: Duration::from_millis(1000),
            v6_interval: Duration::from_millis(1000),
            msgs_per_sec: 1000,
            msgs_burst: 50,
            max_destinations: 4096,
        }
    }
}

/// What the limiter decided (Linux's `RateLimitGlobal` and
/// `RateLimitHost` counters, and what went through).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimitCounters {
    pub allowed: u64,
    /// Refused by the global bucket.
    pub limited_global: u64,
    /// Refused by the destination's bucket.
    pub limited_per_destination: u64,
}

/// One destination's bucket, in microseconds of credit.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens_us: u64,
    last: Instant,
}

/// The ICMP error rate limiter. See the module documentation.
#[derive(Debug)]
pub struct IcmpRateLimiter {
    config: RateLimitConfig,
    destinations: Lru<IpAddr, Bucket>,
    /// May go below zero: a random charge can overdraw it, as in Linux.
    global_credit: i64,
    global_stamp: Instant,
    jitter_key: [u8; 16],
    jitter_count: u64,
    counters: RateLimitCounters,
}

impl IcmpRateLimiter {
    /// A limiter with `config`, its global bucket full at `now`. `secret`
    /// is a random key from the caller, kept for the limiter's life: it
    /// makes the global bucket's charges unpredictable.
    pub fn new(config: RateLimitConfig, secret: [u8; 16], now: Instant) -> IcmpRateLimiter {
        IcmpRateLimiter {
            config,
            destinations: Lru::new(config.max_destinations),
            global_credit: i64::from(config.msgs_burst),
            global_stamp: now,
            jitter_key: secret,
            jitter_count: 0,
            counters: RateLimitCounters::default(),
        }
    }

    /// Whether an error to `dst` may be sent at `now`, charging both
    /// buckets if so. Ask only for errors whose `rate_limited()` is true.
    pub fn allow(&mut self, now: Instant, dst: IpAddr) -> bool {
        if dst.is_loopback() {
            self.counters.allowed += 1;
            return true;
        }
        if !self.global_allow(now) {
            self.counters.limited_global += 1;
            return false;
        }
        if !self.destination_allow(now, dst) {
            self.counters.limited_per_destination += 1;
            return false;
        }
        self.global_credit -= i64::from(self.jitter());
        self.counters.allowed += 1;
        true
    }

    /// What the limiter has decided so far.
    pub fn counters(&self) -> RateLimitCounters {
        self.counters
    }

    /// Linux's `icmp_global_allow`: credit left, or a refill due.
    fn global_allow(&mut self, now: Instant) -> bool {
        if self.global_credit > 0 {
            return true;
        }
        let delta = now.since(self.global_stamp).min(Duration::from_secs(1));
        if delta < GLOBAL_REFILL_MIN {
            return false;
        }
        // delta <= 1 s, so this is at most msgs_per_sec.
        let incr = u64::from(self.config.msgs_per_sec) * delta.as_micros() as u64 / 1_000_000;
        if incr == 0 {
            return false;
        }
        self.global_stamp = now;
        self.global_credit =
            (self.global_credit + incr as i64).min(i64::from(self.config.msgs_burst));
        true
    }

    /// Linux's `inet_peer_xrlim_allow`.
    fn destination_allow(&mut self, now: Instant, dst: IpAddr) -> bool {
        let interval = match dst {
            IpAddr::V4(_) => self.config.v4_interval,
            IpAddr::V6(_) => self.config.v6_interval,
        };
        let interval_us = u64::try_from(interval.as_micros()).unwrap_or(u64::MAX);
        let cap = interval_us.saturating_mul(u64::from(XRLIM_BURST_FACTOR));
        if self.destinations.peek(&dst).is_none() {
            self.destinations.insert(
                dst,
                Bucket {
                    tokens_us: cap,
                    last: now,
                },
            );
        }
        let Some(bucket) = self.destinations.get_mut(&dst) else {
            // Just inserted (the map holds at least one entry).
            return true;
        };
        let elapsed = u64::try_from(now.since(bucket.last).as_micros()).unwrap_or(u64::MAX);
        bucket.last = bucket.last.max(now);
        bucket.tokens_us = bucket.tokens_us.saturating_add(elapsed).min(cap);
        if bucket.tokens_us >= interval_us {
            bucket.tokens_us -= interval_us;
            true
        } else {
            false
        }
    }

    /// 0, 1 or 2, unpredictable without the secret.
    fn jitter(&mut self) -> u8 {
        let mut h = SipHasher13::new_with_key(&self.jitter_key);
        h.write_u64(self.jitter_count);
        self.jitter_count = self.jitter_count.wrapping_add(1);
        (h.finish() % 3) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    /// Only the per-destination limit in play.
    fn per_destination_only() -> RateLimitConfig {
        RateLimitConfig {
            msgs_per_sec: 1_000_000,
            msgs_burst: 1_000_000,
            ..RateLimitConfig::default()
        }
    }

    #[test]
    fn one_destination_gets_a_burst_of_six_then_one_a_second() {
        let mut l = IcmpRateLimiter::new(per_destination_only(), [1; 16], at(0));
        let d = ip(1);
        let sent = (0..20).filter(|_| l.allow(at(0), d)).count();
        assert_eq!(sent, 6);
        assert!(!l.allow(at(999), d));
        assert!(l.allow(at(1000), d));
        assert!(!l.allow(at(1500), d));
        assert!(!l.allow(at(1999), d));
        assert!(l.allow(at(2000), d));
        // Idle long enough, the burst is back, and no more than it.
        let sent = (0..20).filter(|_| l.allow(at(60_000), d)).count();
        assert_eq!(sent, 6);
        // Other destinations are not affected.
        assert!(l.allow(at(60_000), ip(2)));
        let c = l.counters();
        assert_eq!(c.allowed, 6 + 2 + 6 + 1);
        assert_eq!(c.limited_per_destination, 14 + 3 + 14);
        assert_eq!(c.limited_global, 0);
    }

    #[test]
    fn steady_rate_per_destination_is_one_per_interval() {
        let cfg = RateLimitConfig {
            v6_interval: Duration::from_millis(250),
            ..per_destination_only()
        };
        let mut l = IcmpRateLimiter::new(cfg, [2; 16], at(0));
        let d = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        // One attempt every 10 ms for 10 s: 6 burst + 10 s / 250 ms.
        let sent = (0..1000).filter(|i| l.allow(at(i * 10), d)).count();
        assert_eq!(sent, 6 + 39);
    }

    #[test]
    fn zero_interval_means_no_per_destination_limit() {
        let cfg = RateLimitConfig {
            v4_interval: Duration::ZERO,
            ..per_destination_only()
        };
        let mut l = IcmpRateLimiter::new(cfg, [3; 16], at(0));
        assert!((0..1000).all(|_| l.allow(at(5), ip(1))));
    }

    #[test]
    fn loopback_is_not_limited() {
        let cfg = RateLimitConfig {
            msgs_burst: 0,
            msgs_per_sec: 0,
            ..RateLimitConfig::default()
        };
        let mut l = IcmpRateLimiter::new(cfg, [0; 16], at(0));
        assert!((0..100).all(|_| l.allow(at(0), IpAddr::V4(Ipv4Addr::LOCALHOST))));
        assert!(l.allow(at(0), IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert!(!l.allow(at(0), ip(1)));
    }

    #[test]
    fn global_bucket_caps_the_total_with_random_charges() {
        let mut l = IcmpRateLimiter::new(RateLimitConfig::default(), [9; 16], at(0));
        // Many destinations, one attempt each, all at once: the burst of
        // 50 with charges averaging one lets through about 50.
        let burst = (0..10_000).filter(|&n| l.allow(at(0), ip(n))).count();
        assert!((30..=80).contains(&burst), "{burst}");
        // Within 20 ms of the last refill: nothing.
        let more = (10_000..10_100).filter(|&n| l.allow(at(10), ip(n))).count();
        assert_eq!(more, 0);
        // Over ten seconds, attempts every millisecond to fresh destinations:
        // about msgs_per_sec a second, give or take the jitter.
        let mut sent = 0;
        let mut n = 20_000;
        for ms in 1000..11_000 {
            for _ in 0..3 {
                n += 1;
                sent += usize::from(l.allow(at(ms), ip(n)));
            }
        }
        assert!((9_000..=11_000).contains(&sent), "{sent}");
        let c = l.counters();
        assert!(c.limited_global > 0);
        assert_eq!(c.limited_per_destination, 0);
    }

    #[test]
    fn the_charges_depend_on_the_secret() {
        let run = |secret: [u8; 16]| {
            let mut l = IcmpRateLimiter::new(RateLimitConfig::default(), secret, at(0));
            (0..200u32)
                .map(|n| l.allow(at(0), ip(n)))
                .collect::<Vec<bool>>()
        };
        assert_eq!(run([1; 16]), run([1; 16]));
        assert_ne!(run([1; 16]), run([2; 16]));
        let mut l = IcmpRateLimiter::new(RateLimitConfig::default(), [5; 16], at(0));
        let mut seen = [0u32; 3];
        for _ in 0..3000 {
            seen[usize::from(l.jitter())] += 1;
        }
        assert!(seen.iter().all(|&k| (800..1200).contains(&k)), "{seen:?}");
    }

    #[test]
    fn an_exhausted_destination_does_not_drain_the_global_bucket() {
        let cfg = RateLimitConfig {
            msgs_per_sec: 1,
            msgs_burst: 13,
            ..RateLimitConfig::default()
        };
        let mut l = IcmpRateLimiter::new(cfg, [4; 16], at(0));
        // Six charges of at most 2 leave credit for each of the six.
        let sent = (0..1000).filter(|_| l.allow(at(0), ip(1))).count();
        assert_eq!(sent, 6);
        // The 994 refusals charged nothing: credit is left for another.
        assert!(l.global_credit >= 1, "{}", l.global_credit);
        assert!(l.allow(at(0), ip(2)));
        assert_eq!(l.counters().limited_per_destination, 994);
    }

    #[test]
    fn destination_state_is_bounded() {
        let cfg = RateLimitConfig {
            max_destinations: 8,
            ..per_destination_only()
        };
        let mut l = IcmpRateLimiter::new(cfg, [6; 16], at(0));
        for n in 0..10_000 {
            l.allow(at(n as u64), ip(n));
        }
        assert_eq!(l.destinations.len(), 8);
        // An evicted destination starts over with its burst.
        assert!((0..6).all(|_| l.allow(at(10_000), ip(0))));
        assert!(!l.allow(at(10_000), ip(0)));
    }

    #[test]
    fn time_going_backwards_earns_nothing() {
        let mut l = IcmpRateLimiter::new(per_destination_only(), [7; 16], at(100_000));
        let d = ip(1);
        assert_eq!((0..10).filter(|_| l.allow(at(100_000), d)).count(), 6);
        assert!(!l.allow(at(50_000), d));
        assert!(!l.allow(at(100_500), d));
        assert!(l.allow(at(101_000), d));
    }
}
