//! Which received stream bytes a NIC decrypted, byte for byte, for one
//! connection whose TLS receive side is offloaded.
//!
//! The engine keeps out-of-order segments in its receive buffer, and a later
//! copy of the same bytes overwrites an earlier one; which copy a byte holds
//! when it is finally enqueued is the engine's business. Rather than mirror its
//! reassembly, this module settles a byte's mark by what is known for sure:
//! - a byte no out-of-order segment touched was written by the segment that
//!   reached the receive point: it carries that segment's mark;
//! - a byte some out-of-order segment touched holds either its plaintext
//!   (from a decrypted copy) or its ciphertext (from one the NIC left
//!   alone), and there are no other values it can hold. Every decrypted
//!   copy that may sit out of order is kept ([`OutOfOrder::keep_plaintext`]),
//!   so the byte is decrypted exactly when it equals the kept plaintext. (A
//!   byte whose ciphertext equals its plaintext has a zero keystream byte,
//!   and either mark is then right.)

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;

/// Marked receive bytes: runs of (end offset, decrypted), contiguous from
/// `start`.
#[derive(Clone, Debug, Default)]
pub struct Marks {
    pub(crate) start: u64,
    pub(crate) runs: VecDeque<(u64, bool)>,
}

impl Marks {
    pub fn new(start: u64) -> Marks {
        Marks {
            start,
            runs: VecDeque::new(),
        }
    }

    /// The first offset without a mark.
    pub fn end(&self) -> u64 {
        self.runs.back().map_or(self.start, |r| r.0)
    }

    /// Marks the bytes from [`Self::end`] to `end` (nothing if `end` is not
    /// past it).
    pub fn push(&mut self, end: u64, decrypted: bool) {
        if end <= self.end() {
            return;
        }
        match self.runs.back_mut() {
            Some(last) if last.1 == decrypted => last.0 = end,
            _ => self.runs.push_back((end, decrypted)),
        }
    }

    /// The run at `offset`: (bytes left in it, decrypted), and drops what
    /// lies before `offset`.
    pub fn run_at(&mut self, offset: u64) -> Option<(u64, bool)> {
        while let Some(&(end, _)) = self.runs.front() {
            if end > offset {
                break;
            }
            self.start = end;
            self.runs.pop_front();
        }
        self.start = self.start.max(offset);
        self.runs.front().map(|&(end, d)| (end - offset, d))
    }
}

/// Plaintext kept per connection before decrypted out-of-order segments are
/// dropped instead (the peer sends them again).
pub const MAX_KEPT: usize = 4 << 20;

/// What went beyond the engine's receive point, for settling marks once those
/// bytes are enqueued.
#[derive(Clone, Debug, Default)]
pub struct OutOfOrder {
    /// Stream ranges of segments handed to the engine beyond the receive point,
    /// sorted, disjoint, merged (a superset of what the engine kept).
    touched: Vec<Range<u64>>,
    /// Plaintext of decrypted segments that may sit beyond the receive
    /// point, by first offset.
    plaintext: BTreeMap<u64, Vec<u8>>,
    kept: usize,
}

impl OutOfOrder {
    /// A segment's bytes `range` go to the engine beyond the receive point.
    pub fn touch(&mut self, range: Range<u64>) {
        if range.is_empty() {
            return;
        }
        let at = self.touched.partition_point(|r| r.end < range.start);
        let mut merged = range;
        while at < self.touched.len() && self.touched[at].start <= merged.end {
            let r = self.touched.remove(at);
            merged = merged.start.min(r.start)..merged.end.max(r.end);
        }
        self.touched.insert(at, merged);
    }

    /// Whether any byte of `range` was touched out of order.
    pub fn touches(&self, range: &Range<u64>) -> bool {
        let at = self.touched.partition_point(|r| r.end <= range.start);
        self.touched.get(at).is_some_and(|r| r.start < range.end)
    }

    /// Keeps the decrypted bytes at `start`; false (nothing kept) over the
    /// budget.
    pub fn keep_plaintext(&mut self, start: u64, bytes: &[u8]) -> bool {
        let replaced = self.plaintext.get(&start).map_or(0, Vec::len);
        if self.kept - replaced + bytes.len() > MAX_KEPT {
            return false;
        }
        self.kept = self.kept - replaced + bytes.len();
        self.plaintext.insert(start, bytes.to_vec());
        true
    }

    /// Whether kept plaintext covers any byte of `range`.
    fn has_plaintext(&self, range: &Range<u64>) -> bool {
        self.plaintext
            .range(..range.end)
            .any(|(&s, p)| s + p.len() as u64 > range.start)
    }

    /// The kept plaintext over `span`, byte by byte (copies of the same
    /// bytes agree: a stream byte has one plaintext).
    fn plaintext_over(&self, span: &Range<u64>) -> Vec<Option<u8>> {
        let mut out = vec![None; (span.end - span.start) as usize];
        for (&s, p) in self.plaintext.range(..span.end) {
            let (from, to) = (s.max(span.start), (s + p.len() as u64).min(span.end));
            for offset in from..to {
                out[(offset - span.start) as usize] = Some(p[(offset - s) as usize]);
            }
        }
        out
    }

    /// Marks `range` (newly enqueued) onto `marks`, whose end is
    /// `range.start`. `write`: the segment that reached the receive point
    /// (its end and mark). `peek` reads enqueued bytes when content must
    /// decide. Err: a byte nothing accounts for.
    pub fn settle(
        &mut self,
        marks: &mut Marks,
        range: Range<u64>,
        write: Option<(u64, bool)>,
        mut peek: impl FnMut(Range<u64>) -> Option<Vec<u8>>,
    ) -> Result<(), &'static str> {
        let mut at = range.start;
        while at < range.end {
            let idx = self.touched.partition_point(|r| r.end <= at);
            let next = self.touched.get(idx).filter(|r| r.start < range.end);
            match next {
                Some(r) if r.start <= at => {
                    // Touched out of order: decided by content, if any
                    // decrypted copy could be there.
                    let span = at..r.end.min(range.end);
                    if self.has_plaintext(&span) {
                        let bytes = peek(span.clone()).ok_or("enqueued bytes unreadable")?;
                        if bytes.len() as u64 != span.end - span.start {
                            return Err("enqueued bytes of the wrong length");
                        }
                        let plain = self.plaintext_over(&span);
                        for (i, (b, p)) in bytes.iter().zip(plain).enumerate() {
                            marks.push(span.start + i as u64 + 1, p == Some(*b));
                        }
                    } else {
                        marks.push(span.end, false);
                    }
                    at = span.end;
                }
                _ => {
                    // Only the segment at the receive point wrote here.
                    let until = next.map_or(range.end, |r| r.start);
                    match write {
                        Some((end, decrypted)) if end >= until => marks.push(until, decrypted),
                        _ => return Err("bytes enqueued that no segment wrote"),
                    }
                    at = until;
                }
            }
        }
        self.forget_before(range.end);
        Ok(())
    }

    /// Everything before `offset` is enqueued: forget it.
    fn forget_before(&mut self, offset: u64) {
        self.touched.retain_mut(|r| {
            r.start = r.start.max(offset);
            r.end > offset
        });
        let kept = &mut self.kept;
        self.plaintext.retain(|&s, p| {
            let wanted = s + p.len() as u64 > offset;
            if !wanted {
                *kept -= p.len();
            }
            wanted
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_coalesce_and_pop() {
        let mut m = Marks::new(100);
        m.push(200, true);
        m.push(300, true);
        m.push(320, false);
        m.push(310, true);
        assert_eq!(m.runs.len(), 2);
        assert_eq!(m.end(), 320);
        assert_eq!(m.run_at(100), Some((200, true)));
        assert_eq!(m.run_at(250), Some((50, true)));
        assert_eq!(m.run_at(300), Some((20, false)));
        assert_eq!(m.run_at(320), None);
    }

    #[test]
    fn touched_ranges_merge() {
        let mut o = OutOfOrder::default();
        o.touch(10..20);
        o.touch(30..40);
        o.touch(18..31);
        o.touch(50..60);
        assert_eq!(o.touched, vec![10..40, 50..60]);
        assert!(o.touches(&(39..45)));
        assert!(!o.touches(&(40..50)));
        o.forget_before(55);
        assert_eq!(o.touched, vec![55..60]);
    }

    fn runs(m: &Marks) -> Vec<(u64, bool)> {
        m.runs.iter().copied().collect()
    }

    #[test]
    fn content_decides_where_copies_disagree() {
        // Plaintext P = 0..100 as bytes, ciphertext C = P ^ 0xff.
        let plain: Vec<u8> = (0..100).collect();
        let mut o = OutOfOrder::default();
        // A decrypted copy of 20..60 came out of order, then a ciphertext
        // copy of 40..80 overwrote part of it.
        o.touch(20..60);
        assert!(o.keep_plaintext(20, &plain[20..60]));
        o.touch(40..80);
        let mut buffer: Vec<u8> = plain.iter().map(|b| b ^ 0xff).collect();
        buffer[20..40].copy_from_slice(&plain[20..40]);
        // The hole 0..20 filled by a decrypted segment: 0..80 enqueued.
        let mut m = Marks::new(0);
        o.settle(&mut m, 0..80, Some((20, true)), |r| {
            Some(buffer[r.start as usize..r.end as usize].to_vec())
        })
        .unwrap();
        assert_eq!(runs(&m), [(40, true), (80, false)]);
        assert!(o.touched.is_empty() && o.plaintext.is_empty() && o.kept == 0);
    }

    #[test]
    fn without_decrypted_copies_nothing_is_read() {
        let mut o = OutOfOrder::default();
        o.touch(50..90);
        let mut m = Marks::new(0);
        // The segment at the receive point, left alone by the NIC, wrote
        // 0..60 over part of what waited (undecrypted too).
        o.settle(&mut m, 0..90, Some((60, false)), |_| unreachable!())
            .unwrap();
        assert_eq!(runs(&m), [(90, false)]);
    }

    #[test]
    fn a_decrypted_segment_over_waiting_bytes_is_read_back() {
        let plain: Vec<u8> = (0..90).collect();
        let mut o = OutOfOrder::default();
        o.touch(50..90);
        // The segment at the receive point was decrypted and overlaps what
        // waited: its plaintext is kept for that part.
        assert!(o.keep_plaintext(50, &plain[50..60]));
        let mut buffer: Vec<u8> = plain.iter().map(|b| b ^ 0x5a).collect();
        buffer[..60].copy_from_slice(&plain[..60]);
        let mut m = Marks::new(0);
        let mut reads = 0;
        o.settle(&mut m, 0..90, Some((60, true)), |r| {
            reads += 1;
            assert_eq!(r, 50..90);
            Some(buffer[50..90].to_vec())
        })
        .unwrap();
        assert_eq!(reads, 1);
        assert_eq!(runs(&m), [(60, true), (90, false)]);
    }

    #[test]
    fn bytes_nothing_wrote_are_an_error() {
        let mut o = OutOfOrder::default();
        let mut m = Marks::new(0);
        assert!(o.settle(&mut m, 0..10, None, |_| None).is_err());
        let mut m = Marks::new(0);
        assert!(o.settle(&mut m, 0..10, Some((5, true)), |_| None).is_err());
    }

    #[test]
    fn plaintext_budget() {
        let mut o = OutOfOrder::default();
        assert!(o.keep_plaintext(0, &vec![0; MAX_KEPT]));
        assert!(!o.keep_plaintext(MAX_KEPT as u64, &[1]));
        // Replacing a copy counts once.
        assert!(o.keep_plaintext(0, &vec![0; MAX_KEPT]));
    }
}
