//! SYN cookies (RFC 4987 3.6): when a listener's SYN queue is full, the
//! SYN-ACK's ISN carries what the connection needs (the peer's MSS, within a
//! small table) under a keyed hash, and the stack keeps nothing; the
//! handshake's final ACK brings it back, and a valid one makes the
//! connection.
//!
//! The layout is Linux's (`net/ipv4/syncookies.c`), in 32 bits:
//!
//! ```text
//! cookie = H0(4-tuple) + peer ISN + (count << 24)
//!          + ((H1(4-tuple, peer ISN, count) + mss index * K) mod 2^24)
//! ```
//!
//! `count` is a clock that ticks every [`COUNTER_PERIOD`]; its low 8 bits
//! sit in the top byte. H0 and H1 are SipHash-2-4 under two keys derived
//! from the secret. [`SynCookies::check`] peels off H0 and the peer's ISN,
//! reads the counter back from the top byte, accepts it if it is at most
//! [`MAX_AGE`]` - 1` periods behind the current one (a cookie is valid for
//! between one and two periods after it was sent, as with Linux's
//! `MAX_SYNCOOKIE_AGE` 2), and takes H1 of that counter off the low 24 bits,
//! which must leave one of the four encoded indexes. A blind guess passes
//! with a probability of about 2/256 * 4/2^24 = 2^-29.
//!
//! Two departures from Linux, so that a cookie binds what it carries:
//! H1 also covers the peer's ISN (Linux only adds it in, so an ACK whose
//! sequence number is off by k passes with the MSS index k lower), and the
//! index is spread by an odd constant K rather than added as is (Linux's
//! low bits are the index plus a hash, so a flip of bit 0 or 1 passes with
//! another MSS): no single-bit change of a cookie turns one encoded index
//! into another. Linux's period is 60 s; here it is 64 s.
//!
//! The MSS tables are Linux's `msstab` (IPv4) and `msstab6` (IPv6): the
//! values most peers announce. A peer's MSS is rounded down to the largest
//! entry not above it; one below the smallest entry gets the smallest
//! entry, which is each family's default MSS that every host must accept
//! (RFC 9293 3.7.1: 536 for IPv4, 1220 for IPv6).
//!
//! The other SYN options go in the low bits of our TSval when the peer
//! uses timestamps (Linux's `cookie_init_timestamp`): the peer echoes it in
//! TSecr in the ACK ([`encode_options`], [`decode_options`]). Without
//! timestamps, a cookie connection has neither window scaling nor SACK.

use std::net::SocketAddr;
use std::time::Duration;

use capnet_wire::tcp::SeqNumber;
use siphasher::sip::SipHasher24;

use super::isn::{derive_key, hash_endpoints, Ports};
use crate::time::Instant;

/// How often the cookie clock ticks.
pub const COUNTER_PERIOD: Duration = Duration::from_secs(64);

/// A cookie is accepted while the clock is less than this many ticks past
/// the one it was made at.
pub const MAX_AGE: u32 = 2;

/// The MSS values an IPv4 cookie can carry (Linux's `msstab`), ascending.
pub const MSS_TABLE_V4: [u16; 4] = [536, 1300, 1440, 1460];

/// The MSS values an IPv6 cookie can carry (Linux's `msstab6`: MTUs of
/// 1280, 1480, 1500 and 9000 less 60 bytes of headers), ascending.
pub const MSS_TABLE_V6: [u16; 4] = [1220, 1420, 1440, 8940];

/// Bits of the cookie under the counter: the hash and MSS index.
const HASH_BITS: u32 = 24;
const HASH_MASK: u32 = (1 << HASH_BITS) - 1;
/// The counter's bits in the cookie's top byte.
const COUNTER_MASK: u32 = u32::MAX >> HASH_BITS;

const PERIOD_US: u64 = COUNTER_PERIOD.as_micros() as u64;

/// Makes and checks SYN cookies for a stack, from one secret the bindings
/// draw from a CSPRNG at start. Changing the secret invalidates the cookies
/// in flight.
#[derive(Clone)]
pub struct SynCookies {
    /// H0: the counter-independent hash of the 4-tuple.
    tuple_key: SipHasher24,
    /// H1: the hash of the 4-tuple and the counter.
    count_key: SipHasher24,
}

impl SynCookies {
    /// Cookies keyed by `secret` (16 random bytes).
    pub fn new(secret: [u8; 16]) -> Self {
        SynCookies {
            tuple_key: derive_key(&secret, b"capnet-tcpip syn cookie tuple"),
            count_key: derive_key(&secret, b"capnet-tcpip syn cookie count"),
        }
    }

    /// Our ISN for the SYN-ACK answering a SYN from `remote` to `local`
    /// with sequence number `peer_isn` and MSS option `mss` (536 if it had
    /// none, RFC 9293 3.7.1), and the MSS the cookie carries: the largest
    /// table entry not above `mss` (the smallest entry if `mss` is below it;
    /// see the module documentation). The table is the one of `local`'s
    /// family.
    pub fn encode(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        peer_isn: SeqNumber,
        mss: u16,
        now: Instant,
    ) -> (SeqNumber, u16) {
        let table = mss_table(local);
        let index = table.iter().rposition(|&entry| entry <= mss).unwrap_or(0);
        let count = counter(now);
        let low = self
            .count_hash(local, remote, peer_isn, count)
            .wrapping_add(spread(index))
            & HASH_MASK;
        let word = (count << HASH_BITS) | low;
        let cookie = peer_isn + self.tuple_hash(local, remote).wrapping_add(word);
        (cookie, table[index])
    }

    /// The MSS a cookie carries, if it is one we made for this connection
    /// within the last [`MAX_AGE`] counter periods. For the ACK that ends
    /// the handshake: `peer_isn` is its sequence number less 1, `cookie` its
    /// acknowledgment number less 1. `None` for a forged, mangled or stale
    /// cookie, or one from a clock tick after `now`.
    pub fn check(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        peer_isn: SeqNumber,
        cookie: SeqNumber,
        now: Instant,
    ) -> Option<u16> {
        let word = ((cookie - peer_isn) as u32).wrapping_sub(self.tuple_hash(local, remote));
        let count = counter(now);
        // Counters compare in their low 8 bits, the ones the cookie holds.
        let age = count.wrapping_sub(word >> HASH_BITS) & COUNTER_MASK;
        if age >= MAX_AGE {
            return None;
        }
        let sent = count.wrapping_sub(age);
        let spread_index =
            word.wrapping_sub(self.count_hash(local, remote, peer_isn, sent)) & HASH_MASK;
        let table = mss_table(local);
        let index = (0..table.len()).position(|i| spread(i) == spread_index)?;
        Some(table[index])
    }

    fn tuple_hash(&self, local: SocketAddr, remote: SocketAddr) -> u32 {
        hash_endpoints(&self.tuple_key, local, remote, Ports::Included, &[]) as u32
    }

    fn count_hash(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        peer_isn: SeqNumber,
        count: u32,
    ) -> u32 {
        let mut extra = [0; 8];
        extra[..4].copy_from_slice(&u32::from(peer_isn).to_be_bytes());
        extra[4..].copy_from_slice(&count.to_be_bytes());
        hash_endpoints(&self.count_key, local, remote, Ports::Included, &extra) as u32
    }
}

/// Never shows the keys.
impl core::fmt::Debug for SynCookies {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SynCookies").finish_non_exhaustive()
    }
}

/// The odd constant an MSS index is multiplied by in the cookie's low 24
/// bits (the golden ratio's first 24 bits, made odd). For no two indexes
/// `a`, `b` of the table is `(a - b) * INDEX_SPREAD` plus or minus a power of
/// two mod 2^24, so no single-bit flip turns one into another (checked by a
/// test).
const INDEX_SPREAD: u32 = 0x9e_3779;

/// An MSS index as the cookie holds it, under the hash.
fn spread(index: usize) -> u32 {
    (index as u32).wrapping_mul(INDEX_SPREAD) & HASH_MASK
}

/// The cookie clock at `now` (the full counter: the hash covers all of it,
/// the cookie holds its low 8 bits). Wraps mod 2^32.
fn counter(now: Instant) -> u32 {
    (now.micros() / PERIOD_US) as u32
}

fn mss_table(local: SocketAddr) -> &'static [u16; 4] {
    match local {
        SocketAddr::V4(_) => &MSS_TABLE_V4,
        SocketAddr::V6(_) => &MSS_TABLE_V6,
    }
}

/// Low bits of a cookie TSval that carry the options (Linux's `TSBITS`).
pub const TS_OPTION_BITS: u32 = 6;
const TS_OPTION_MASK: u32 = (1 << TS_OPTION_BITS) - 1;
/// The window scale field; all ones is "no window scaling" (Linux's
/// `TS_OPT_WSCALE_MASK`).
const TS_WSCALE_MASK: u32 = 0xf;
/// SACK permitted (Linux's `TS_OPT_SACK`). Bit 5 is Linux's ECN bit, which
/// this stack leaves clear.
const TS_SACK: u32 = 1 << 4;

/// The largest window shift (RFC 7323 2.3: a larger one is taken as 14).
const MAX_WSCALE: u8 = 14;

/// The options of a SYN that a cookie's TSval carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieOptions {
    /// The peer's window scale shift (0..=14), or `None` when its SYN had
    /// no window scale option.
    pub wscale: Option<u8>,
    /// Whether the peer's SYN had SACK-permitted.
    pub sack: bool,
}

/// The TSval for a cookie SYN-ACK: `tsval` (our timestamp clock now) with
/// its low [`TS_OPTION_BITS`] bits replaced by the peer's window scale
/// (clamped to 14, RFC 7323 2.3) and SACK-permitted. It is never after
/// `tsval` in the timestamps' wrapping order (RFC 7323 5.2), and less than
/// 64 before it: when the option bits would read above `tsval`'s, the value
/// is taken 64 lower, so that later TSvals of the connection are never
/// below this one. (For a `tsval` below 64 that means wrapping to just
/// below 2^32, which is before `tsval` mod 2^32.)
pub fn encode_options(tsval: u32, wscale: Option<u8>, sack: bool) -> u32 {
    let mut options = match wscale {
        Some(shift) => u32::from(shift.min(MAX_WSCALE)),
        None => TS_WSCALE_MASK,
    };
    if sack {
        options |= TS_SACK;
    }
    let ts = (tsval & !TS_OPTION_MASK) | options;
    if ts > tsval {
        ts.wrapping_sub(1 << TS_OPTION_BITS)
    } else {
        ts
    }
}

/// The options a cookie's TSval carried, from the TSecr of the ACK that
/// returned it. Only for an ACK with a timestamp option whose cookie
/// [`SynCookies::check`] accepted; without timestamps, neither window
/// scaling nor SACK.
pub fn decode_options(tsecr: u32) -> CookieOptions {
    let shift = tsecr & TS_WSCALE_MASK;
    CookieOptions {
        wscale: (shift != TS_WSCALE_MASK).then_some(shift as u8),
        sack: tsecr & TS_SACK != 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    const SECRET: [u8; 16] = *b"fedcba9876543210";

    fn v4(a: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), port)
    }

    fn v6(last: u16, port: u16) -> SocketAddr {
        SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last)),
            port,
        )
    }

    fn pairs() -> [(SocketAddr, SocketAddr, &'static [u16; 4]); 2] {
        [
            (
                v4([198, 51, 100, 1], 443),
                v4([203, 0, 113, 9], 51_000),
                &MSS_TABLE_V4,
            ),
            (v6(1, 443), v6(9, 51_000), &MSS_TABLE_V6),
        ]
    }

    fn secs(s: u64) -> Instant {
        Instant::from_millis(s * 1000)
    }

    #[test]
    fn round_trip_every_table_entry() {
        let c = SynCookies::new(SECRET);
        let now = secs(1_000_000);
        for (local, remote, table) in pairs() {
            for (i, &entry) in table.iter().enumerate() {
                // The entry itself, and anything up to the next one.
                let above = table.get(i + 1).map_or(u16::MAX, |next| next - 1);
                for mss in [entry, entry + 1, above] {
                    let isn = SeqNumber(0xffff_fff0 + i as u32);
                    let (cookie, got) = c.encode(local, remote, isn, mss, now);
                    assert_eq!(got, entry, "{mss}");
                    assert_eq!(c.check(local, remote, isn, cookie, now), Some(entry));
                }
            }
            // Below the table: its smallest entry.
            for mss in [0, 1, table[0] - 1] {
                let (cookie, got) = c.encode(local, remote, SeqNumber(7), mss, now);
                assert_eq!(got, table[0]);
                assert_eq!(
                    c.check(local, remote, SeqNumber(7), cookie, now),
                    Some(table[0])
                );
            }
        }
    }

    #[test]
    fn accepted_for_one_to_two_periods() {
        let c = SynCookies::new(SECRET);
        let period = COUNTER_PERIOD.as_micros() as u64;
        let (l, r, _) = pairs()[0];
        let isn = SeqNumber(12_345);
        let start = 777 * period;
        // Made at the very end of a period...
        let (cookie, mss) = c.encode(l, r, isn, 1460, Instant::from_micros(start + period - 1));
        let check = |at: u64| c.check(l, r, isn, cookie, Instant::from_micros(at));
        // ...good through the next one...
        assert_eq!(check(start + period - 1), Some(mss));
        assert_eq!(check(start + 2 * period - 1), Some(mss));
        // ...and no further.
        assert_eq!(check(start + 2 * period), None);
        assert_eq!(check(start + 100 * period), None);
        // Nor from before it was made.
        assert_eq!(check(start - 1), None);
        // Made at the start of a period: good for two whole periods.
        let (cookie, mss) = c.encode(l, r, isn, 1460, Instant::from_micros(start));
        let check = |at: u64| c.check(l, r, isn, cookie, Instant::from_micros(at));
        assert_eq!(check(start + 2 * period - 1), Some(mss));
        assert_eq!(check(start + 2 * period), None);
        // A whole 256 periods later the top byte matches again, but the
        // hash of the counter does not.
        assert_eq!(check(start + 256 * period), None);
    }

    #[test]
    fn counter_wraps() {
        let c = SynCookies::new(SECRET);
        let period = COUNTER_PERIOD.as_micros() as u64;
        for (l, r, _) in pairs() {
            // The cookie's 8 bits wrap (255 to 256), and the whole u32
            // counter does (2^32 - 1 to 2^32).
            for last in [255u64, (1 << 32) - 1, (2 << 32) - 1] {
                let made = Instant::from_micros(last * period + period / 2);
                let (cookie, mss) = c.encode(l, r, SeqNumber(1), 1440, made);
                let next = Instant::from_micros((last + 1) * period + period / 2);
                assert_eq!(
                    c.check(l, r, SeqNumber(1), cookie, next),
                    Some(mss),
                    "{last}"
                );
                let after = Instant::from_micros((last + 2) * period);
                assert_eq!(c.check(l, r, SeqNumber(1), cookie, after), None);
            }
        }
        // And at the very end of time, nothing panics.
        let (l, r, _) = pairs()[1];
        let end = Instant::from_micros(u64::MAX);
        let (cookie, mss) = c.encode(l, r, SeqNumber(u32::MAX), 9000, end);
        assert_eq!(mss, 8940);
        assert_eq!(c.check(l, r, SeqNumber(u32::MAX), cookie, end), Some(8940));
    }

    #[test]
    fn rejects_another_connection_or_a_mangled_cookie() {
        let c = SynCookies::new(SECRET);
        let now = secs(50_000);
        let mut rng = SmallRng::seed_from_u64(4987);
        for _ in 0..200 {
            for (l, r, table) in pairs() {
                let isn = SeqNumber(rng.gen());
                let (cookie, mss) = c.encode(l, r, isn, rng.gen(), now);
                assert!(table.contains(&mss));
                assert_eq!(c.check(l, r, isn, cookie, now), Some(mss));
                let mut other_port = |a: SocketAddr| {
                    let mut b = a;
                    b.set_port(a.port() ^ rng.gen_range(1..=u16::MAX));
                    b
                };
                let (l2, r2) = (other_port(l), other_port(r));
                let mut other_ip = l;
                other_ip.set_ip(match l.ip() {
                    IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)),
                    IpAddr::V6(_) => v6(2, 0).ip(),
                });
                let wrong = [
                    c.check(l2, r, isn, cookie, now),
                    c.check(l, r2, isn, cookie, now),
                    c.check(other_ip, r, isn, cookie, now),
                    c.check(r, l, isn, cookie, now),
                    c.check(l, r, isn + 1u32, cookie, now),
                    c.check(l, r, isn - 1u32, cookie, now),
                    SynCookies::new([0; 16]).check(l, r, isn, cookie, now),
                ];
                assert_eq!(wrong, [None; 7]);
                for bit in 0..32 {
                    let flipped = SeqNumber(cookie.0 ^ (1 << bit));
                    assert_eq!(c.check(l, r, isn, flipped, now), None, "bit {bit}");
                }
            }
        }
    }

    /// Random ACKs against a listener: none passes (2^-29 each).
    #[test]
    fn blind_guesses_fail() {
        let c = SynCookies::new(SECRET);
        let mut rng = SmallRng::seed_from_u64(29);
        let now = secs(123_456);
        for (l, r, _) in pairs() {
            for _ in 0..100_000 {
                let guess = c.check(l, r, SeqNumber(rng.gen()), SeqNumber(rng.gen()), now);
                assert_eq!(guess, None);
            }
        }
    }

    /// Random 4-tuples, ISNs, MSSs and times, checked a random time within
    /// the validity later.
    #[test]
    fn random_round_trips() {
        let c = SynCookies::new(SECRET);
        let mut rng = SmallRng::seed_from_u64(6013);
        let period = COUNTER_PERIOD.as_micros() as u64;
        for _ in 0..20_000 {
            let (l, r) = if rng.gen() {
                (v4(rng.gen(), rng.gen()), v4(rng.gen(), rng.gen()))
            } else {
                (v6(rng.gen(), rng.gen()), v6(rng.gen(), rng.gen()))
            };
            let made = rng.gen_range(0..1u64 << 60);
            let isn = SeqNumber(rng.gen());
            let (cookie, mss) = c.encode(l, r, isn, rng.gen(), Instant::from_micros(made));
            // Anywhere up to the end of the next period.
            let end = (made / period + 2) * period;
            let at = rng.gen_range(made..end);
            assert_eq!(
                c.check(l, r, isn, cookie, Instant::from_micros(at)),
                Some(mss)
            );
            assert_eq!(c.check(l, r, isn, cookie, Instant::from_micros(end)), None);
        }
    }

    #[test]
    fn options_round_trip() {
        let mut rng = SmallRng::seed_from_u64(7323);
        let wscales = (0..=14).map(Some).chain([None]);
        for wscale in wscales {
            for sack in [false, true] {
                for tsval in [0u32, 1, 63, 64, 65, 1000, u32::MAX, u32::MAX - 64]
                    .into_iter()
                    .chain((0..100).map(|_| rng.gen()))
                {
                    let ts = encode_options(tsval, wscale, sack);
                    assert_eq!(decode_options(ts), CookieOptions { wscale, sack });
                    // Never after tsval, less than 64 before it (mod 2^32).
                    let behind = tsval.wrapping_sub(ts);
                    assert!(behind < 64, "{tsval} {ts} {wscale:?} {sack}");
                    if tsval >= 64 {
                        assert!(ts <= tsval);
                    }
                }
            }
        }
    }

    #[test]
    fn options_edge_cases() {
        // A shift above 14 is taken as 14 (RFC 7323 2.3).
        let ts = encode_options(10_000, Some(200), false);
        assert_eq!(decode_options(ts).wscale, Some(14));
        // Exactly the option bits already: unchanged.
        let opts = TS_SACK | 3;
        assert_eq!(encode_options(128 | opts, Some(3), true), 128 | opts);
        // Option bits above tsval's: 64 lower.
        assert_eq!(encode_options(128, Some(3), true), 64 | opts);
        // Wrapping below zero.
        assert_eq!(encode_options(0, None, false), u32::MAX - 63 + 15);
        // Bit 5 (Linux's ECN) and the clock bits do not count.
        assert_eq!(
            decode_options(0xdead_0000 | 1 << 5 | 7),
            CookieOptions {
                wscale: Some(7),
                sack: false
            }
        );
    }

    /// No encoded index is one bit flip (an addition or subtraction of a
    /// power of two, mod 2^24) away from another.
    #[test]
    fn index_spreading_survives_single_bit_flips() {
        let n = MSS_TABLE_V4.len().max(MSS_TABLE_V6.len());
        for i in 0..n {
            for bit in 0..HASH_BITS {
                for flipped in [
                    spread(i).wrapping_add(1 << bit) & HASH_MASK,
                    spread(i).wrapping_sub(1 << bit) & HASH_MASK,
                ] {
                    assert!((0..n).all(|j| spread(j) != flipped), "{i} {bit}");
                }
            }
        }
    }

    #[test]
    fn debug_hides_the_keys() {
        assert_eq!(
            format!("{:?}", SynCookies::new(SECRET)),
            "SynCookies { .. }"
        );
    }
}
