//! The receive queue: in-order bytes waiting for the application, and the
//! out-of-order segments waiting for the hole before them, in 64-bit
//! stream offsets (the connection converts sequence numbers once).
//!
//! The window is what is left of the queue's bound after the unread
//! bytes; out-of-order data is accepted only inside it, and the number of
//! separate out-of-order ranges is bounded too, so that a peer sending
//! every other byte cannot make the queue spend more on bookkeeping than on
//! data. The queue remembers which ranges arrived most recently, for SACK
//! (RFC 2018 4: the first block holds the latest segment), and the last
//! duplicate, for D-SACK (RFC 2883).
//!
//! Each byte keeps the [`Mark`] of the copy that was stored: a later copy
//! overwrites an earlier one's bytes and mark together. Placed bytes occupy
//! stream offsets but no storage once in order, and are not part of the
//! window's accounting (they never wait in the queue).

use super::mark::{self, Mark, MarkMap};
use std::collections::{BTreeMap, VecDeque};

/// Separate out-of-order ranges kept; a segment that would make more is
/// dropped (and counted by the caller).
pub const MAX_OOO_RANGES: usize = 64;
/// Ranges remembered for SACK's "most recent first" order.
const RECENT: usize = 4;

/// What one segment's payload did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inserted {
    /// Bytes that became readable in order (this segment's and any
    /// out-of-order ones it joined).
    pub advanced: usize,
    /// Some of it went to the out-of-order store.
    pub out_of_order: bool,
    /// Some of it was already here (a duplicate: D-SACK reports it).
    pub duplicate: bool,
    /// Dropped: it lay outside the window, or would make too many ranges
    /// (of out-of-order data, or of marks).
    pub dropped: usize,
}

#[derive(Debug)]
pub struct RecvQueue {
    /// The in-order bytes from `read_at` to `next`, placed ones left out.
    ready: VecDeque<u8>,
    /// Stream offset of the first unread byte.
    read_at: u64,
    /// Stream offset of the next in-order byte (RCV.NXT).
    next: u64,
    /// The FIN was counted in `next`.
    fin: bool,
    limit: usize,
    ooo: BTreeMap<u64, Vec<u8>>,
    ooo_bytes: usize,
    /// Starts of recently received out-of-order data, latest first.
    recent: Vec<u64>,
    dsack: Option<(u64, u64)>,
    /// Marks of the bytes held (in order and out of order).
    marks: MarkMap,
}

impl RecvQueue {
    pub fn new(limit: usize, next: u64) -> RecvQueue {
        RecvQueue {
            ready: VecDeque::new(),
            read_at: next,
            next,
            fin: false,
            limit,
            ooo: BTreeMap::new(),
            ooo_bytes: 0,
            recent: Vec::new(),
            dsack: None,
            marks: MarkMap::default(),
        }
    }

    /// Stream offset of the first unread byte: how far the application read.
    pub fn read_at(&self) -> u64 {
        self.read_at
    }

    /// RCV.NXT as a stream offset.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Counts the FIN, which occupies one sequence number after the data.
    pub fn advance_control(&mut self) {
        if !self.fin {
            self.fin = true;
            self.next += 1;
        }
    }

    /// End of the in-order data (RCV.NXT before any FIN).
    fn data_end(&self) -> u64 {
        self.next - u64::from(self.fin)
    }

    /// In-order stream bytes not yet read (placed ones included).
    pub fn readable(&self) -> usize {
        usize::try_from(self.data_end() - self.read_at).unwrap_or(usize::MAX)
    }

    /// The receive window: room behind RCV.NXT.
    pub fn window(&self) -> usize {
        self.limit.saturating_sub(self.ready.len())
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    pub fn has_out_of_order(&self) -> bool {
        !self.ooo.is_empty()
    }

    /// How many blocks [`sack_blocks`](Self::sack_blocks) would give now
    /// (a D-SACK and every out-of-order range), before any cap.
    pub fn sack_block_count(&self) -> usize {
        usize::from(self.dsack.is_some()) + self.ooo.len()
    }

    /// Bytes held in the out-of-order store.
    pub fn out_of_order_bytes(&self) -> usize {
        self.ooo_bytes
    }

    /// The run at the read point: its mark and how many bytes it holds.
    pub fn front_run(&self) -> Option<(Mark, usize)> {
        let data_end = self.data_end();
        if self.read_at == data_end {
            return None;
        }
        let (mark, end) = self.marks.run_at(self.read_at, data_end);
        Some((mark, (end - self.read_at) as usize))
    }

    /// Takes up to `dst.len()` in-order bytes, whatever their marks, up to
    /// the first placed byte (placed bytes are taken by
    /// [`consume`](Self::consume)).
    pub fn read(&mut self, dst: &mut [u8]) -> usize {
        let before_placed = self
            .marks
            .placed_in(&(self.read_at..self.data_end()))
            .next()
            .map_or(self.ready.len(), |p| (p.start - self.read_at) as usize);
        let n = dst.len().min(before_placed);
        let (front, back) = self.ready.as_slices();
        let first = n.min(front.len());
        dst[..first].copy_from_slice(&front[..first]);
        dst[first..n].copy_from_slice(&back[..n - first]);
        self.ready.drain(..n);
        self.read_at += n as u64;
        self.marks.forget_before(self.read_at);
        self.shrink_when_empty();
        n
    }

    /// Drops `n` in-order bytes unread (placed ones too).
    pub fn consume(&mut self, n: usize) {
        let to = self.read_at + n.min(self.readable()) as u64;
        let placed: u64 = self
            .marks
            .placed_in(&(self.read_at..to))
            .map(|r| r.end - r.start)
            .sum();
        self.ready.drain(..(to - self.read_at - placed) as usize);
        self.read_at = to;
        self.marks.forget_before(to);
        self.shrink_when_empty();
    }

    fn shrink_when_empty(&mut self) {
        if self.ready.is_empty() && self.ready.capacity() > 4096 {
            self.ready = VecDeque::new();
        }
    }

    /// Appends the in-order bytes of stream range `from..` to the ready
    /// queue, leaving out the placed ones (their marks are already set).
    fn append(&mut self, from: u64, bytes: &[u8]) {
        if self.marks.is_empty() {
            self.ready.extend(bytes);
            return;
        }
        let end = from + bytes.len() as u64;
        let mut at = from;
        let placed: Vec<_> = self.marks.placed_in(&(from..end)).collect();
        for p in placed {
            self.ready
                .extend(&bytes[(at - from) as usize..(p.start - from) as usize]);
            at = p.end;
        }
        self.ready.extend(&bytes[(at - from) as usize..]);
    }

    /// Takes a segment's payload that starts at stream offset `at`, with
    /// what the NIC did to it.
    pub fn insert(&mut self, at: u64, data: &[u8], mark: Mark) -> Inserted {
        let mut out = Inserted::default();
        let end = at + data.len() as u64;
        let window_end = self.next + self.window() as u64;
        if at < self.next {
            out.duplicate = true;
            self.dsack = Some((at, end.min(self.next)));
        }
        let start = at.max(self.next);
        let stop = end.min(window_end);
        out.dropped = data.len() - (stop.saturating_sub(start) as usize);
        if start >= stop {
            return out;
        }
        let piece = &data[(start - at) as usize..(stop - at) as usize];
        if self.marks.len() >= mark::MAX_RUNS && self.marks.would_grow(&(start..stop), mark) {
            out.dropped += piece.len();
            return out;
        }
        if start == self.next {
            self.marks.set(start..stop, mark);
            self.append(start, piece);
            self.next = stop;
            out.advanced = piece.len();
            out.advanced += self.pull_in_order();
        } else {
            out.out_of_order = true;
            match self.store(start, piece) {
                Store::Stored { duplicate } => {
                    self.marks.set(start..stop, mark);
                    out.duplicate |= duplicate;
                }
                Store::TooManyRanges => out.dropped += piece.len(),
            }
        }
        out
    }

    /// Moves out-of-order data that now touches RCV.NXT into the ready queue.
    fn pull_in_order(&mut self) -> usize {
        let mut moved = 0;
        while let Some(entry) = self.ooo.first_entry() {
            let start = *entry.key();
            if start > self.next {
                break;
            }
            let bytes = entry.remove();
            self.ooo_bytes -= bytes.len();
            let end = start + bytes.len() as u64;
            if end > self.next {
                let fresh = &bytes[(self.next - start) as usize..];
                self.append(self.next, fresh);
                moved += fresh.len();
                self.next = end;
            }
        }
        self.recent.retain(|s| *s >= self.next);
        moved
    }

    fn store(&mut self, start: u64, piece: &[u8]) -> Store {
        let end = start + piece.len() as u64;
        // The ranges that overlap or touch [start, end) merge with it.
        let first = self
            .ooo
            .range(..=start)
            .next_back()
            .filter(|(s, b)| **s + b.len() as u64 >= start)
            .map(|(s, _)| *s)
            .unwrap_or(start);
        let touching: Vec<u64> = self.ooo.range(first..=end).map(|(s, _)| *s).collect();
        if touching.is_empty() && self.ooo.len() >= MAX_OOO_RANGES {
            return Store::TooManyRanges;
        }
        let mut merged_start = start;
        let mut merged_end = end;
        let mut duplicate = false;
        for s in &touching {
            let len = self.ooo[s].len() as u64;
            if *s < end && s + len > start {
                duplicate = true;
            }
            merged_start = merged_start.min(*s);
            merged_end = merged_end.max(s + len);
        }
        let mut merged = vec![0u8; (merged_end - merged_start) as usize];
        for s in touching {
            let bytes = self.ooo.remove(&s).expect("listed above");
            self.ooo_bytes -= bytes.len();
            let at = (s - merged_start) as usize;
            merged[at..at + bytes.len()].copy_from_slice(&bytes);
        }
        let at = (start - merged_start) as usize;
        merged[at..at + piece.len()].copy_from_slice(piece);
        if duplicate {
            self.dsack = Some((start, end));
        }
        self.ooo_bytes += merged.len();
        self.ooo.insert(merged_start, merged);
        self.recent.retain(|s| *s != start);
        self.recent.insert(0, start);
        self.recent.truncate(RECENT);
        Store::Stored { duplicate }
    }

    /// The SACK blocks to send, as stream offsets `[start, end)`: a pending
    /// D-SACK first (RFC 2883), then the range holding the latest segment,
    /// then other recent ones (RFC 2018 4). Taking them clears the D-SACK.
    pub fn sack_blocks(&mut self, max: usize) -> Vec<(u64, u64)> {
        let mut blocks = Vec::with_capacity(max);
        if let Some(d) = self.dsack.take() {
            blocks.push(d);
        }
        for s in &self.recent {
            if blocks.len() >= max {
                break;
            }
            if let Some((start, bytes)) = self.ooo.range(..=*s).next_back() {
                let range = (*start, start + bytes.len() as u64);
                if range.1 > *s && !blocks.contains(&range) {
                    blocks.push(range);
                }
            }
        }
        for (start, bytes) in &self.ooo {
            if blocks.len() >= max {
                break;
            }
            let range = (*start, start + bytes.len() as u64);
            if !blocks.contains(&range) {
                blocks.push(range);
            }
        }
        blocks.truncate(max);
        blocks
    }
}

enum Store {
    Stored { duplicate: bool },
    TooManyRanges,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn holes_fill_and_sack_reports_latest_first() {
        let mut q = RecvQueue::new(1000, 100);
        assert_eq!(q.insert(110, b"klmno", Mark::Plain).advanced, 0);
        assert_eq!(q.insert(120, b"uvw", Mark::Plain).advanced, 0);
        assert_eq!(q.sack_blocks(4), vec![(120, 123), (110, 115)]);
        let r = q.insert(100, b"abcdefghij", Mark::Plain);
        assert_eq!(r.advanced, 15);
        assert_eq!(q.next(), 115);
        assert_eq!(q.sack_blocks(4), vec![(120, 123)]);
        // A duplicate is reported once as D-SACK.
        let r = q.insert(105, b"fgh", Mark::Plain);
        assert!(r.duplicate);
        assert_eq!(q.sack_blocks(4), vec![(105, 108), (120, 123)]);
        assert_eq!(q.sack_blocks(4), vec![(120, 123)]);
        let mut out = [0u8; 32];
        let n = q.read(&mut out);
        assert_eq!(&out[..n], b"abcdefghijklmno");
    }

    #[test]
    fn the_window_bounds_what_is_taken() {
        let mut q = RecvQueue::new(10, 0);
        let r = q.insert(0, b"0123456789abc", Mark::Plain);
        assert_eq!((r.advanced, r.dropped), (10, 3));
        assert_eq!(q.window(), 0);
        assert_eq!(q.insert(10, b"x", Mark::Plain).dropped, 1);
        let mut out = [0u8; 4];
        q.read(&mut out);
        assert_eq!(q.window(), 4);
        assert_eq!(q.insert(12, b"zzzzzz", Mark::Plain).dropped, 4);
    }

    #[test]
    fn every_other_byte_cannot_make_unbounded_ranges() {
        let mut q = RecvQueue::new(1 << 20, 0);
        let mut dropped = 0;
        for i in 0..10_000u64 {
            dropped += q.insert(1 + 2 * i, b"x", Mark::Plain).dropped;
        }
        assert_eq!(q.ooo.len(), MAX_OOO_RANGES);
        assert_eq!(dropped, 10_000 - MAX_OOO_RANGES);
    }

    #[test]
    fn random_segments_reassemble_byte_exact() {
        for seed in 0..50 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let data: Vec<u8> = (0..5000).map(|_| rng.gen()).collect();
            let mut q = RecvQueue::new(2048, 7);
            let mut got = Vec::new();
            while got.len() < data.len() {
                let at = q.next() as usize - 7 + rng.gen_range(0..1500usize);
                let at = at.saturating_sub(rng.gen_range(0..600));
                let len = rng.gen_range(1..400);
                let end = (at + len).min(data.len());
                if at < end {
                    q.insert(at as u64 + 7, &data[at..end], Mark::Plain);
                }
                let mut buf = vec![0u8; rng.gen_range(0..800)];
                let n = q.read(&mut buf);
                got.extend_from_slice(&buf[..n]);
                let held: usize = q.ooo.values().map(Vec::len).sum();
                assert_eq!(held, q.ooo_bytes);
                for blk in q.sack_blocks(4) {
                    assert!(blk.0 < blk.1);
                }
            }
            assert_eq!(got, data, "seed {seed}");
        }
    }
}

#[cfg(test)]
mod marked {
    use super::*;

    const PLACED: Mark = Mark::Placed { context: 3 };

    /// Reads run by run: (mark, bytes or, for placed runs, their length).
    fn drain(q: &mut RecvQueue) -> Vec<(Mark, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some((mark, n)) = q.front_run() {
            if matches!(mark, Mark::Placed { .. }) {
                q.consume(n);
                out.push((mark, vec![0; n]));
            } else {
                let mut buf = vec![0; n];
                assert_eq!(q.read(&mut buf), n);
                out.push((mark, buf));
            }
        }
        out
    }

    #[test]
    fn the_copy_that_is_kept_keeps_its_mark() {
        let mut q = RecvQueue::new(1000, 0);
        // A decrypted copy of 10..30 waits; a plain copy of 20..40 overwrites
        // part of it; the hole fills with decrypted bytes.
        q.insert(10, &[b'd'; 20], Mark::Decrypted);
        q.insert(20, &[b'c'; 20], Mark::Plain);
        q.insert(0, &[b'd'; 10], Mark::Decrypted);
        assert_eq!(
            drain(&mut q),
            [
                (Mark::Decrypted, vec![b'd'; 20]),
                (Mark::Plain, vec![b'c'; 20])
            ]
        );
    }

    #[test]
    fn placed_bytes_take_offsets_but_no_room() {
        let mut q = RecvQueue::new(100, 0);
        q.insert(0, b"head", Mark::Plain);
        // Out of order, placed, then the hole.
        q.insert(8, &[0xee; 60], PLACED);
        q.insert(4, b"gap!", Mark::Plain);
        q.insert(68, b"tail", Mark::Plain);
        assert_eq!(q.readable(), 72);
        assert_eq!(q.window(), 100 - 12);
        // A mark-blind read stops before the placed bytes.
        let mut buf = [0u8; 100];
        assert_eq!(q.read(&mut buf), 8);
        assert_eq!(&buf[..8], b"headgap!");
        assert_eq!(
            drain(&mut q),
            [(PLACED, vec![0; 60]), (Mark::Plain, b"tail".to_vec())]
        );
        assert_eq!(q.window(), 100);
    }

    #[test]
    fn the_fin_is_not_a_readable_byte() {
        let mut q = RecvQueue::new(100, 0);
        q.insert(0, b"bye", Mark::Decrypted);
        q.advance_control();
        assert_eq!((q.readable(), q.next()), (3, 4));
        assert_eq!(drain(&mut q), [(Mark::Decrypted, b"bye".to_vec())]);
        assert_eq!(q.front_run(), None);
    }

    #[test]
    fn alternating_marks_are_bounded() {
        let mut q = RecvQueue::new(1 << 20, 0);
        let mut dropped = 0;
        for i in 0..(3 * mark::MAX_RUNS as u64) {
            let m = if i % 2 == 0 {
                Mark::Decrypted
            } else {
                Mark::Plain
            };
            dropped += q.insert(i, b"x", m).dropped;
        }
        assert!(q.marks.len() <= mark::MAX_RUNS);
        assert!(dropped > 0);
        // What was taken reads back in order, with its marks.
        let got = drain(&mut q);
        assert!(got.iter().all(|(_, b)| !b.is_empty()));
    }

    #[test]
    fn random_marked_segments_reassemble_byte_exact_with_their_marks() {
        use rand::rngs::SmallRng;
        use rand::{Rng, SeedableRng};
        for seed in 0..30 {
            let mut rng = SmallRng::seed_from_u64(seed);
            // The plaintext, and the "ciphertext" a plain copy carries.
            let plain: Vec<u8> = (0..4000).map(|_| rng.gen()).collect();
            let cipher: Vec<u8> = plain.iter().map(|b| b ^ 0x5a).collect();
            let mut q = RecvQueue::new(1500, 0);
            let mut read = 0usize;
            while read < plain.len() {
                let at = q.next() as usize + rng.gen_range(0..1200usize);
                let at = at.saturating_sub(rng.gen_range(0..400));
                let end = (at + rng.gen_range(1..300)).min(plain.len());
                if at < end {
                    let (bytes, mark) = match rng.gen_range(0..3) {
                        0 => (&plain[at..end], Mark::Decrypted),
                        1 => (&cipher[at..end], Mark::Plain),
                        _ => (&plain[at..end], PLACED),
                    };
                    q.insert(at as u64, bytes, mark);
                }
                for (mark, bytes) in drain(&mut q) {
                    let want = match mark {
                        Mark::Decrypted => &plain[read..read + bytes.len()],
                        Mark::Plain => &cipher[read..read + bytes.len()],
                        Mark::Placed { .. } => &vec![0; bytes.len()][..],
                    };
                    assert_eq!(bytes, want, "seed {seed} at {read}");
                    read += bytes.len();
                }
                assert!(q.marks.len() <= mark::MAX_RUNS);
            }
        }
    }
}
