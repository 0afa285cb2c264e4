//! TCP sequence numbers, and the one conversion between them and stream
//! offsets.
//!
//! A sequence number is 32 bits that wrap (RFC 9293 3.4): `a` is before `b`
//! when `b - a`, taken mod 2^32, is below 2^31 (serial number arithmetic,
//! RFC 1982). That order is not transitive over the whole space, so
//! [`SeqNumber`] has no `PartialOrd`: comparisons are the named methods
//! ([`lt`](SeqNumber::lt), [`le`](SeqNumber::le), [`max`](SeqNumber::max)),
//! meaningful only for numbers less than 2^31 apart, which a window always
//! is. Subtracting two gives the signed distance.
//!
//! Holders and clients count a stream in 64-bit offsets; NICs and TCP count
//! it in sequence numbers. A [`StreamBase`] pins one offset to its sequence
//! number, and converts both ways: the offset of a sequence number is the
//! one, of those it may stand for (one per 4 GiB), nearest a known offset.

use core::fmt;
use core::ops::{Add, AddAssign, Sub};

/// A TCP sequence number. Arithmetic wraps mod 2^32.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    /// Whether `self` comes before `other` in sequence space.
    pub fn lt(self, other: SeqNumber) -> bool {
        self - other < 0
    }

    /// Whether `self` comes before `other` or is it.
    pub fn le(self, other: SeqNumber) -> bool {
        self - other <= 0
    }

    /// Whether `self` comes after `other`.
    pub fn gt(self, other: SeqNumber) -> bool {
        self - other > 0
    }

    /// Whether `self` comes after `other` or is it.
    pub fn ge(self, other: SeqNumber) -> bool {
        self - other >= 0
    }

    /// The later of the two.
    pub fn max(self, other: SeqNumber) -> SeqNumber {
        if self.lt(other) {
            other
        } else {
            self
        }
    }

    /// The earlier of the two.
    pub fn min(self, other: SeqNumber) -> SeqNumber {
        if self.lt(other) {
            self
        } else {
            other
        }
    }
}

impl From<u32> for SeqNumber {
    fn from(v: u32) -> SeqNumber {
        SeqNumber(v)
    }
}

impl From<SeqNumber> for u32 {
    fn from(s: SeqNumber) -> u32 {
        s.0
    }
}

/// `n` bytes further on. Only `n mod 2^32` counts: a length of 4 GiB or more
/// comes round to the same sequence numbers.
impl Add<usize> for SeqNumber {
    type Output = SeqNumber;
    fn add(self, n: usize) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(n as u32))
    }
}

impl Add<u32> for SeqNumber {
    type Output = SeqNumber;
    fn add(self, n: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(n))
    }
}

impl AddAssign<usize> for SeqNumber {
    fn add_assign(&mut self, n: usize) {
        *self = *self + n;
    }
}

/// `n` bytes before (mod 2^32, as for `+`).
impl Sub<usize> for SeqNumber {
    type Output = SeqNumber;
    fn sub(self, n: usize) -> SeqNumber {
        SeqNumber(self.0.wrapping_sub(n as u32))
    }
}

impl Sub<u32> for SeqNumber {
    type Output = SeqNumber;
    fn sub(self, n: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_sub(n))
    }
}

/// The signed distance from `other` to `self`: negative when `self` is
/// before `other`. Numbers exactly 2^31 apart read as `i32::MIN` (before)
/// both ways round.
impl Sub for SeqNumber {
    type Output = i32;
    fn sub(self, other: SeqNumber) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SeqNumber({})", self.0)
    }
}

/// Stream offset `offset` has sequence number `seq`: what converts between
/// the two for the whole stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StreamBase {
    pub seq: SeqNumber,
    pub offset: u64,
}

impl StreamBase {
    pub fn new(seq: SeqNumber, offset: u64) -> StreamBase {
        StreamBase { seq, offset }
    }

    /// The sequence number of stream offset `offset` (before or after the
    /// base).
    pub fn seq_of(&self, offset: u64) -> SeqNumber {
        self.seq + offset.wrapping_sub(self.offset) as u32
    }

    /// The stream offset of `seq`: of the offsets it may stand for (one per
    /// 4 GiB), the one nearest `near` (e.g. how far the stream has gone).
    /// Exactly 2^31 either way, the earlier one; never below 0 or above
    /// `u64::MAX` (then the one 4 GiB the other way).
    pub fn offset_of(&self, seq: SeqNumber, near: u64) -> u64 {
        let delta = i64::from(seq - self.seq_of(near));
        match near.checked_add_signed(delta) {
            Some(at) => at,
            // Before offset 0: `near` is under 2^31, the later one is not.
            None if delta < 0 => near + (delta + (1 << 32)) as u64,
            // Past u64::MAX: `near` is within 2^31 of it.
            None => near - ((1 << 32) - delta) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB4: u64 = 1 << 32;

    #[test]
    fn arithmetic_wraps() {
        let s = SeqNumber(0xffff_fff0);
        assert_eq!(s + 0x20usize, SeqNumber(0x10));
        assert_eq!(s + 0x20u32, SeqNumber(0x10));
        assert_eq!(SeqNumber(0x10) - 0x20usize, s);
        assert_eq!(SeqNumber(0x10) - 0x20u32, s);
        assert_eq!(SeqNumber(0x10) - s, 0x20);
        assert_eq!(s - SeqNumber(0x10), -0x20);
        // A length of 4 GiB comes round.
        assert_eq!(s + (GIB4 as usize + 3), s + 3usize);
        let mut t = s;
        t += 0x11usize;
        assert_eq!(t, SeqNumber(1));
        assert_eq!(u32::from(SeqNumber::from(7)), 7);
        assert_eq!(s.to_string(), "4294967280");
        assert_eq!(format!("{s:?}"), "SeqNumber(4294967280)");
    }

    #[test]
    fn comparisons_across_the_wrap() {
        let a = SeqNumber(0xffff_fff0);
        let b = SeqNumber(0x10);
        assert!(a.lt(b) && a.le(b) && !b.lt(a) && !b.le(a));
        assert!(a.le(a) && !a.lt(a) && a.ge(a) && !a.gt(a));
        assert!(b.gt(a) && b.ge(a) && !a.gt(b) && !a.ge(b));
        assert_eq!(a.max(b), b);
        assert_eq!(b.max(a), b);
        assert_eq!(a.min(b), a);
        assert_eq!(b.min(a), a);
        // Within 2^31 either way round the order is the one of distances.
        let c = a + (1usize << 31) - 1usize;
        assert!(a.lt(c) && c - a == i32::MAX);
        // Exactly 2^31 apart, each reads as before the other.
        let d = a + (1usize << 31);
        assert_eq!(d - a, i32::MIN);
        assert_eq!(a - d, i32::MIN);
        assert!(a.lt(d) && d.lt(a) && !a.gt(d) && !d.gt(a) && !a.ge(d));
    }

    #[test]
    fn seq_of_offset() {
        let base = StreamBase::new(SeqNumber(0xffff_ff00), 1000);
        assert_eq!(base.seq_of(1000), SeqNumber(0xffff_ff00));
        assert_eq!(base.seq_of(1000 + 0x100), SeqNumber(0));
        assert_eq!(base.seq_of(999), SeqNumber(0xffff_feff));
        // Beyond 4 GiB the sequence numbers come round.
        assert_eq!(base.seq_of(1000 + GIB4 + 0x105), SeqNumber(5));
        assert_eq!(base.seq_of(1000 + 3 * GIB4), base.seq);
    }

    #[test]
    fn offset_of_seq_unwraps() {
        let base = StreamBase::new(SeqNumber(0xffff_fff0), 0);
        assert_eq!(base.offset_of(base.seq, 0), 0);
        assert_eq!(base.offset_of(base.seq + 100usize, 50), 100);
        // Near 4 GiB of stream, a small sequence distance is past it.
        assert_eq!(base.offset_of(base.seq + 5usize, GIB4 - 10), GIB4 + 5);
        // ...and a little before it is before.
        assert_eq!(base.offset_of(base.seq - 5usize, GIB4 + 10), GIB4 - 5);
        // Far beyond 4 GiB.
        let far = 7 * GIB4 + 12345;
        assert_eq!(base.offset_of(base.seq_of(far), far - 1_000_000), far);
        assert_eq!(base.offset_of(base.seq_of(far), far + 1_000_000), far);
        // Never below 0: a number "before" offset 0 is 4 GiB on.
        assert_eq!(base.offset_of(base.seq - 1usize, 0), GIB4 - 1);
        // Exactly 2^31 away: the earlier offset, unless it is below 0.
        let half = 1u64 << 31;
        assert_eq!(base.offset_of(base.seq_of(GIB4 + half), GIB4), half);
        assert_eq!(base.offset_of(base.seq_of(half), 0), half);
        // Never past u64::MAX.
        let top = u64::MAX - 3;
        assert_eq!(
            base.offset_of(base.seq_of(top) + 10usize, top),
            top - (GIB4 - 10)
        );
    }

    #[test]
    fn offset_of_with_a_base_past_zero() {
        // A base in the middle of the stream: offsets before it convert
        // too.
        let base = StreamBase::new(SeqNumber(10), 5 * GIB4 + 100);
        assert_eq!(base.offset_of(SeqNumber(10), 0), 100);
        assert_eq!(base.offset_of(SeqNumber(5), base.offset), base.offset - 5);
        assert_eq!(
            base.offset_of(SeqNumber(0xffff_fff0), base.offset),
            base.offset - 26
        );
    }

    #[test]
    fn round_trips() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(9293);
        for _ in 0..10_000 {
            let base = StreamBase::new(SeqNumber(rng.gen()), rng.gen_range(0..1 << 40));
            let offset = rng.gen_range(0..1u64 << 40);
            let near = offset.saturating_add_signed(rng.gen_range(-(1i64 << 31) + 1..1 << 31));
            let seq = base.seq_of(offset);
            assert_eq!(
                base.offset_of(seq, near),
                offset,
                "{base:?} {offset} {near}"
            );
            assert_eq!(base.offset_of(seq, offset), offset);
        }
    }
}
