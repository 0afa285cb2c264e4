//! Initial sequence numbers (RFC 6528) and per-host-pair timestamp offsets.
//!
//! ISN = M + F(local address, local port, remote address, remote port,
//! secret) (RFC 6528 3): M is a clock that ticks every 4 microseconds, F a
//! keyed hash (SipHash-2-4, as Linux's `secure_tcp_seq` uses). Each 4-tuple
//! then gets its own sequence space that an off-path attacker cannot guess,
//! and successive incarnations of one 4-tuple start where the clock has
//! got to (RFC 9293 3.4.1): ahead of where the last one left off if it sent
//! less than one byte per 4 µs (250 kB/s) on average; faster connections
//! rely on TIME-WAIT and PAWS instead, as everywhere.
//!
//! The timestamp offset is what Linux's `secure_tcp_ts_off` gives: a keyed
//! hash of the two addresses, added to the clock for every TSval of
//! connections between them (RFC 7323 5.4 and 7.1: a TSval clock with a
//! random offset does not tell a peer the host's uptime). The ports are left
//! out on purpose, as Linux does: every connection between two hosts then
//! shares one TSval clock, so a new connection reusing a 4-tuple in
//! TIME-WAIT sends TSvals above the old one's and PAWS (RFC 7323 5) keeps
//! working across them.
//!
//! Both keys are derived from the one secret, each under its own label, so
//! neither hash tells anything about the other.

use core::fmt;
use core::hash::Hasher;
use std::net::{IpAddr, SocketAddr};

use capnet_wire::tcp::SeqNumber;
use siphasher::sip::SipHasher24;
use siphasher::sip128::SipHasher24 as SipHasher24x128;

use crate::time::Instant;

/// Makes ISNs and timestamp offsets for a stack, from one secret the
/// bindings draw from a CSPRNG at start (and may change: connections keep
/// the ISN they started with, but see [`timestamp_offset`](Self::timestamp_offset)).
#[derive(Clone)]
pub struct IsnGenerator {
    isn_key: SipHasher24,
    ts_key: SipHasher24,
}

impl IsnGenerator {
    /// A generator keyed by `secret` (16 random bytes).
    pub fn new(secret: [u8; 16]) -> Self {
        IsnGenerator {
            isn_key: derive_key(&secret, b"capnet-tcpip isn (RFC 6528)"),
            ts_key: derive_key(&secret, b"capnet-tcpip tsval offset"),
        }
    }

    /// The initial sequence number for a connection from `local` to
    /// `remote` starting at `now` (RFC 6528 3). Successive calls for one
    /// 4-tuple advance by one every 4 µs, wrapping mod 2^32.
    pub fn isn(&self, local: SocketAddr, remote: SocketAddr, now: Instant) -> SeqNumber {
        // M: the 4 µs clock, mod 2^32 (wraps every 4.77 hours).
        let m = (now.micros() / 4) as u32;
        let f = hash_endpoints(&self.isn_key, local, remote, Ports::Included, &[]) as u32;
        SeqNumber(f) + m
    }

    /// The offset to add to the TSval clock for every connection between
    /// `local`'s and `remote`'s addresses (the ports do not count; see the
    /// module documentation). A connection fixes its offset when it starts.
    pub fn timestamp_offset(&self, local: SocketAddr, remote: SocketAddr) -> u32 {
        hash_endpoints(&self.ts_key, local, remote, Ports::Excluded, &[]) as u32
    }
}

/// Never shows the keys.
impl fmt::Debug for IsnGenerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IsnGenerator").finish_non_exhaustive()
    }
}

/// A SipHash-2-4 key derived from `secret` for one use, named by `label`:
/// the 128-bit SipHash of the label under the secret (a PRF, so keys under
/// different labels are independent).
pub(crate) fn derive_key(secret: &[u8; 16], label: &[u8]) -> SipHasher24 {
    let key = SipHasher24x128::new_with_key(secret).hash(label).as_bytes();
    SipHasher24::new_with_key(&key)
}

/// Whether a hash of two endpoints covers their ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ports {
    Included,
    Excluded,
}

/// The keyed hash of two endpoints (and `extra` bytes after them). Each
/// address is written with its family, so no IPv4 tuple reads as an IPv6
/// one. An IPv4-mapped IPv6 address is hashed as the IPv6 address it is:
/// the caller presents one endpoint the same way every time.
pub(crate) fn hash_endpoints(
    key: &SipHasher24,
    local: SocketAddr,
    remote: SocketAddr,
    ports: Ports,
    extra: &[u8],
) -> u64 {
    let mut h = *key;
    for end in [local, remote] {
        match end.ip() {
            IpAddr::V4(a) => {
                h.write_u8(4);
                h.write(&a.octets());
            }
            IpAddr::V6(a) => {
                h.write_u8(6);
                h.write(&a.octets());
            }
        }
        if ports == Ports::Included {
            h.write(&end.port().to_be_bytes());
        }
    }
    h.write(extra);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use std::collections::HashSet;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SECRET: [u8; 16] = *b"0123456789abcdef";

    fn v4(a: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), port)
    }

    fn v6(last: u16, port: u16) -> SocketAddr {
        SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, last)),
            port,
        )
    }

    #[test]
    fn different_tuples_differ() {
        let g = IsnGenerator::new(SECRET);
        let now = Instant::from_millis(12_345);
        let l = v4([10, 0, 0, 1], 443);
        let r = v4([10, 0, 0, 2], 50_000);
        let base = g.isn(l, r, now);
        let others = [
            g.isn(v4([10, 0, 0, 3], 443), r, now),
            g.isn(v4([10, 0, 0, 1], 444), r, now),
            g.isn(l, v4([10, 0, 0, 4], 50_000), now),
            g.isn(l, v4([10, 0, 0, 2], 50_001), now),
            // The two ends swapped: the other side's connection.
            g.isn(r, l, now),
            g.isn(v6(1, 443), v6(2, 50_000), now),
        ];
        for o in others {
            assert_ne!(o, base);
        }
        // Deterministic for the same inputs.
        assert_eq!(g.isn(l, r, now), base);
        // Another secret, another ISN.
        assert_ne!(IsnGenerator::new([7; 16]).isn(l, r, now), base);
    }

    #[test]
    fn spread_over_many_tuples() {
        let g = IsnGenerator::new(SECRET);
        let mut rng = SmallRng::seed_from_u64(6528);
        let now = Instant::from_millis(1);
        let mut seen = HashSet::new();
        let mut high = 0;
        for _ in 0..10_000 {
            let l = v4(rng.gen(), rng.gen());
            let r = v4(rng.gen(), rng.gen());
            let isn = g.isn(l, r, now);
            seen.insert(isn.0);
            high += isn.0 >> 31;
        }
        assert!(seen.len() > 9_980, "{}", seen.len());
        assert!((4_700..5_300).contains(&high), "{high}");
    }

    #[test]
    fn same_tuple_advances_with_the_4us_clock() {
        let g = IsnGenerator::new(SECRET);
        let l = v6(1, 80);
        let r = v6(2, 40_000);
        let t0 = Instant::from_micros(1_000_000);
        let isn0 = g.isn(l, r, t0);
        assert_eq!(g.isn(l, r, Instant::from_micros(1_000_003)), isn0);
        assert_eq!(g.isn(l, r, Instant::from_micros(1_000_004)) - isn0, 1);
        assert_eq!(
            g.isn(l, r, Instant::from_micros(1_000_000 + 4_000)) - isn0,
            1000
        );
        // One second: 250,000 ticks on.
        let later = g.isn(l, r, t0 + std::time::Duration::from_secs(1));
        assert_eq!(later - isn0, 250_000);
        assert!(later.gt(isn0));
    }

    #[test]
    fn wraps_fine() {
        let g = IsnGenerator::new(SECRET);
        let l = v4([192, 0, 2, 1], 1);
        let r = v4([192, 0, 2, 2], 2);
        // M wraps mod 2^32 after 2^32 ticks of 4 µs.
        let wrap = (1u64 << 32) * 4;
        for base in [wrap - 8, 5 * wrap - 4, u64::MAX - 40] {
            let a = g.isn(l, r, Instant::from_micros(base));
            let b = g.isn(l, r, Instant::from_micros(base + 20));
            assert_eq!(b - a, 5, "at {base}");
            assert!(b.gt(a));
        }
        // A whole M period later, the same ISN.
        assert_eq!(
            g.isn(l, r, Instant::from_micros(100)),
            g.isn(l, r, Instant::from_micros(100 + wrap))
        );
    }

    #[test]
    fn timestamp_offset_is_per_address_pair() {
        let g = IsnGenerator::new(SECRET);
        let l = v4([10, 1, 1, 1], 80);
        let r = v4([10, 1, 1, 2], 33_000);
        let off = g.timestamp_offset(l, r);
        // The ports do not count.
        assert_eq!(
            g.timestamp_offset(v4([10, 1, 1, 1], 8080), v4([10, 1, 1, 2], 1)),
            off
        );
        // The addresses do.
        assert_ne!(
            g.timestamp_offset(v4([10, 1, 1, 1], 80), v4([10, 1, 1, 3], 1)),
            off
        );
        assert_ne!(g.timestamp_offset(r, l), off);
        assert_ne!(g.timestamp_offset(v6(1, 80), v6(2, 80)), off);
        // Its key is not the ISN's: the hash of the same bytes differs.
        assert_ne!(
            hash_endpoints(&g.ts_key, l, r, Ports::Excluded, &[]),
            hash_endpoints(&g.isn_key, l, r, Ports::Excluded, &[])
        );
        assert_ne!(IsnGenerator::new([1; 16]).timestamp_offset(l, r), off);
    }

    #[test]
    fn debug_hides_the_keys() {
        let s = format!("{:?}", IsnGenerator::new(SECRET));
        assert_eq!(s, "IsnGenerator { .. }");
    }
}
