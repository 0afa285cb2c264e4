//! What a NIC did to received payload bytes, kept by the receive queue with
//! the bytes themselves: reassembly decides which copy of a byte is kept,
//! and the copy's mark goes with it, so the reader learns byte for byte
//! what it holds (TLS RX offload), or that a range was placed without
//! passing through the queue at all (NVMe/TCP direct data placement).

use std::collections::BTreeMap;
use std::ops::Range;

/// The NIC's outcome for a segment's payload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mark {
    /// As it came off the wire.
    #[default]
    Plain,
    /// Opened by the NIC's TLS engine: the bytes are plaintext.
    Decrypted,
    /// Written by the NIC straight into offload context `context`'s buffers:
    /// the queue keeps the range, never the bytes.
    Placed { context: u32 },
}

/// Separate marked runs a queue keeps; a segment that would make more is
/// dropped (the peer sends it again), so a driver alternating marks byte by
/// byte cannot make the bookkeeping outgrow the data.
pub const MAX_RUNS: usize = 1024;

/// Marks of stream offsets: the runs that are not [`Mark::Plain`], sorted
/// and disjoint, adjacent runs of one mark merged. Empty (no allocation)
/// for a connection whose NIC does nothing to its bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MarkMap {
    /// start -> (end, mark), mark never `Plain`.
    runs: BTreeMap<u64, (u64, Mark)>,
}

impl MarkMap {
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Runs held.
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    /// Whether marking `range` with `mark` could add a run: it is not plain,
    /// or it cuts into a run that is.
    pub fn would_grow(&self, range: &Range<u64>, mark: Mark) -> bool {
        mark != Mark::Plain || self.overlapping(range).next().is_some()
    }

    /// Marks every offset of `range` with `mark`, over whatever was there.
    pub fn set(&mut self, range: Range<u64>, mark: Mark) {
        if range.is_empty() {
            return;
        }
        let overlapping: Vec<(u64, u64, Mark)> = self.overlapping(&range).collect();
        for (start, end, m) in overlapping {
            self.runs.remove(&start);
            if start < range.start {
                self.runs.insert(start, (range.start, m));
            }
            if end > range.end {
                self.runs.insert(range.end, (end, m));
            }
        }
        if mark == Mark::Plain {
            return;
        }
        let (mut start, mut end) = (range.start, range.end);
        if let Some((&s, &(e, m))) = self.runs.range(..start).next_back() {
            if e == start && m == mark {
                self.runs.remove(&s);
                start = s;
            }
        }
        if let Some(&(e, m)) = self.runs.get(&end) {
            if m == mark {
                self.runs.remove(&end);
                end = e;
            }
        }
        self.runs.insert(start, (end, mark));
    }

    /// The mark at `offset` and where its run ends, at most `limit`.
    pub fn run_at(&self, offset: u64, limit: u64) -> (Mark, u64) {
        if let Some((_, &(end, mark))) = self.runs.range(..=offset).next_back() {
            if end > offset {
                return (mark, end.min(limit));
            }
        }
        let next = self.runs.range(offset..).next().map_or(limit, |(&s, _)| s);
        (Mark::Plain, next.min(limit))
    }

    /// Forgets every offset before `offset` (read, or never to be stored).
    pub fn forget_before(&mut self, offset: u64) {
        while let Some(entry) = self.runs.first_entry() {
            let (start, (end, mark)) = (*entry.key(), *entry.get());
            if start >= offset {
                break;
            }
            entry.remove();
            if end > offset {
                self.runs.insert(offset, (end, mark));
                break;
            }
        }
    }

    /// The placed runs inside `range`, clipped to it.
    pub fn placed_in(&self, range: &Range<u64>) -> impl Iterator<Item = Range<u64>> + '_ {
        let (from, to) = (range.start, range.end);
        self.overlapping(range)
            .filter(|(_, _, m)| matches!(m, Mark::Placed { .. }))
            .map(move |(s, e, _)| s.max(from)..e.min(to))
    }

    fn overlapping(&self, range: &Range<u64>) -> impl Iterator<Item = (u64, u64, Mark)> + '_ {
        let end = range.end;
        let first = self
            .runs
            .range(..=range.start)
            .next_back()
            .filter(|(_, (end, _))| *end > range.start)
            .map_or(range.start, |(&s, _)| s);
        self.runs.range(first..end).map(|(&s, &(e, m))| (s, e, m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Mark = Mark::Placed { context: 7 };

    fn runs(m: &MarkMap) -> Vec<(u64, u64, Mark)> {
        m.runs.iter().map(|(&s, &(e, k))| (s, e, k)).collect()
    }

    #[test]
    fn later_marks_overwrite_and_neighbours_merge() {
        let mut m = MarkMap::default();
        m.set(10..20, Mark::Decrypted);
        m.set(20..30, Mark::Decrypted);
        assert_eq!(runs(&m), [(10, 30, Mark::Decrypted)]);
        m.set(15..25, Mark::Plain);
        assert_eq!(
            runs(&m),
            [(10, 15, Mark::Decrypted), (25, 30, Mark::Decrypted)]
        );
        m.set(12..27, P);
        assert_eq!(
            runs(&m),
            [
                (10, 12, Mark::Decrypted),
                (12, 27, P),
                (27, 30, Mark::Decrypted)
            ]
        );
        m.set(0..40, Mark::Decrypted);
        assert_eq!(runs(&m), [(0, 40, Mark::Decrypted)]);
    }

    #[test]
    fn runs_are_read_from_any_offset() {
        let mut m = MarkMap::default();
        m.set(10..20, Mark::Decrypted);
        m.set(30..35, P);
        assert_eq!(m.run_at(0, 100), (Mark::Plain, 10));
        assert_eq!(m.run_at(12, 100), (Mark::Decrypted, 20));
        assert_eq!(m.run_at(12, 15), (Mark::Decrypted, 15));
        assert_eq!(m.run_at(20, 100), (Mark::Plain, 30));
        assert_eq!(m.run_at(34, 100), (P, 35));
        assert_eq!(m.run_at(35, 100), (Mark::Plain, 100));
        assert_eq!(m.placed_in(&(0..32)).collect::<Vec<_>>(), vec![30..32]);
        m.forget_before(15);
        assert_eq!(runs(&m), [(15, 20, Mark::Decrypted), (30, 35, P)]);
        m.forget_before(33);
        assert_eq!(runs(&m), [(33, 35, P)]);
    }

    #[test]
    fn only_marks_that_split_or_add_can_grow() {
        let mut m = MarkMap::default();
        assert!(!m.would_grow(&(0..10), Mark::Plain));
        assert!(m.would_grow(&(0..10), Mark::Decrypted));
        m.set(0..10, Mark::Decrypted);
        assert!(m.would_grow(&(5..6), Mark::Plain));
        assert!(!m.would_grow(&(10..20), Mark::Plain));
    }
}
