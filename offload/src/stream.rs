//! Where the records of a record-framed byte stream (TLS records, NVMe/TCP
//! PDUs) are in TCP sequence space, as received segments pass: the part of
//! an RX engine that does not depend on what a record holds.
//!
//! A [`Framing`] says how long a header is and what record length it
//! gives. The [`Tracker`] follows the chain of records from a known start
//! and reports, segment by segment, which bytes belong to which record
//! ([`Event`]); what to do with them (decrypt, place) is the engine's.
//!
//! States:
//! - in sync: the tracker knows where the next record byte belongs. A header
//!   is checked as soon as it is whole; a bad one loses sync.
//! - searching: after a gap, or a bad header, the tracker looks for a
//!   plausible header, asks about it once ([`Event::Candidate`]), and
//!   follows the chain of headers from it by their lengths. When the holder
//!   confirms the candidate's record number ([`Tracker::confirm`]), the
//!   tracker is in sync again at the next record boundary the stream
//!   reaches.

use std::fmt;
use std::ops::Range;

use capnet_wire::tcp::SeqNumber;

/// The largest [`Framing::prefix_len`].
pub const MAX_PREFIX: usize = 32;

/// How records are delimited in the stream.
pub trait Framing {
    /// Bytes of the header that [`record_len`](Self::record_len) reads.
    fn header_len(&self) -> usize;

    /// Bytes at the start of every record that the engine needs before its
    /// body (the header and any fixed fields after it), handed over whole
    /// in [`Event::Start`]: from `header_len` to [`MAX_PREFIX`].
    fn prefix_len(&self) -> usize {
        self.header_len()
    }

    /// The whole length of the record (header included) whose
    /// `header_len` header bytes are `hdr`; `None` when `hdr` is not a
    /// header of this stream. A length below `prefix_len` is not one either.
    fn record_len(&self, hdr: &[u8]) -> Option<usize>;

    /// Like [`record_len`](Self::record_len), for a header found by
    /// searching: what is plausible enough to ask the holder about. A
    /// framing whose headers are easy to mistake for data is stricter here.
    fn candidate_len(&self, hdr: &[u8]) -> Option<usize> {
        self.record_len(hdr)
    }
}

/// The first [`Framing::prefix_len`] bytes of a record.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    bytes: [u8; MAX_PREFIX],
    len: usize,
}

impl std::ops::Deref for Prefix {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Prefix({:02x?})", &**self)
    }
}

/// What the tracker found in the segment being walked.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A record's prefix is whole: record number `index`, `len` bytes in
    /// all. Its bytes after the prefix follow as `Body` (none when `len`
    /// is the prefix's).
    Start {
        index: u64,
        len: usize,
        prefix: Prefix,
    },
    /// `payload[range]` are bytes `at..` of the current record, of `len` in
    /// all (never prefix bytes).
    Body {
        range: Range<usize>,
        at: usize,
        len: usize,
    },
    /// A header that does not parse: from here on the segment's bytes are
    /// not followed.
    Lost,
    /// In sync again: records are followed from `payload[at]` on.
    Synced { at: usize },
    /// A candidate header at `seq`: ask the holder, who answers with
    /// [`Tracker::confirm`] or [`Tracker::reject`].
    Candidate { seq: SeqNumber },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResyncError {
    /// Not the candidate the engine asked about (never asked, already
    /// abandoned, or the engine is in sync): nothing changed.
    UnknownCandidate { tcp_seq: u32 },
    /// The candidate was already confirmed.
    AlreadyConfirmed { tcp_seq: u32 },
}

impl fmt::Display for ResyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResyncError::UnknownCandidate { tcp_seq } => {
                write!(f, "no resync candidate at {tcp_seq}")
            }
            ResyncError::AlreadyConfirmed { tcp_seq } => {
                write!(f, "resync candidate at {tcp_seq} already confirmed")
            }
        }
    }
}

impl std::error::Error for ResyncError {}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamCounters {
    /// Candidates asked about.
    pub resync_requests: u64,
    /// Resyncs that took effect.
    pub resyncs: u64,
    /// Times the tracker went from in sync to searching.
    pub sync_losses: u64,
}

#[derive(Debug)]
struct Sync {
    /// The number of the record whose prefix comes next, or is open.
    next_index: u64,
    prefix: [u8; MAX_PREFIX],
    have: usize,
    /// The length of the record whose header is in `prefix`.
    len: usize,
    /// The open record's bytes seen so far (its prefix is whole).
    open: Option<usize>,
}

impl Sync {
    fn new(next_index: u64) -> Sync {
        Sync {
            next_index,
            prefix: [0; MAX_PREFIX],
            have: 0,
            len: 0,
            open: None,
        }
    }
}

/// Following the chain of headers from a candidate.
#[derive(Debug)]
struct Follow {
    candidate: SeqNumber,
    /// Where the next header starts, and its index in the chain (the
    /// candidate is 0).
    next_hdr: SeqNumber,
    next_index: u64,
    hdr: [u8; MAX_PREFIX],
    have: usize,
    /// The candidate's record number, once the holder confirmed it.
    confirmed: Option<u64>,
}

#[derive(Debug)]
struct Search {
    /// The last bytes before the next segment, for a header across the
    /// boundary (no candidate yet).
    carry: [u8; MAX_PREFIX],
    carry_len: usize,
    follow: Option<Follow>,
}

const NEW_SEARCH: Search = Search {
    carry: [0; MAX_PREFIX],
    carry_len: 0,
    follow: None,
};

#[derive(Debug)]
enum State {
    InSync(Sync),
    Searching(Search),
}

/// The segment being walked.
#[derive(Debug, Default)]
struct Walk {
    seq: SeqNumber,
    len: usize,
    /// The next byte to look at.
    i: usize,
    /// Where the walk in the current state began.
    from: usize,
}

/// Follows the records of one direction of a TCP connection.
#[derive(Debug)]
pub struct Tracker<F> {
    framing: F,
    /// The next in-order sequence number.
    expected: SeqNumber,
    state: State,
    walk: Walk,
    counters: StreamCounters,
}

impl<F: Framing> Tracker<F> {
    /// A tracker in sync: record number `index` starts at `seq`.
    pub fn new(framing: F, seq: SeqNumber, index: u64) -> Tracker<F> {
        assert!(framing.header_len() > 0 && framing.header_len() <= framing.prefix_len());
        assert!(framing.prefix_len() <= MAX_PREFIX);
        Tracker {
            framing,
            expected: seq,
            state: State::InSync(Sync::new(index)),
            walk: Walk::default(),
            counters: StreamCounters::default(),
        }
    }

    pub fn framing(&self) -> &F {
        &self.framing
    }

    pub fn counters(&self) -> StreamCounters {
        self.counters
    }

    pub fn in_sync(&self) -> bool {
        matches!(self.state, State::InSync(_))
    }

    /// The next in-order sequence number.
    pub fn expected(&self) -> SeqNumber {
        self.expected
    }

    /// A segment of `len` bytes from `seq` arrives. `None`: it holds only
    /// bytes already seen, and is not walked. Otherwise its bytes from the
    /// offset returned on are new: walk them with [`next`](Self::next).
    /// Bytes skipped (a gap before `seq`) lose sync.
    pub fn arrive(&mut self, seq: SeqNumber, len: usize) -> Option<usize> {
        let ahead = i64::from(seq - self.expected);
        if len == 0 || ahead + len as i64 <= 0 {
            self.walk = Walk::default();
            return None;
        }
        let from = if ahead > 0 {
            // Bytes were lost: the record chain is unknown from here.
            self.lose_sync();
            0
        } else {
            // Overlapping old and new bytes: only the new part is walked.
            (-ahead) as usize
        };
        self.expected = seq + len;
        self.walk = Walk {
            seq,
            len,
            i: from,
            from,
        };
        Some(from)
    }

    /// The next thing found in the segment that [`arrive`](Self::arrive)
    /// announced, whose bytes are `payload`; `None` at its end.
    pub fn next(&mut self, payload: &[u8]) -> Option<Event> {
        debug_assert_eq!(payload.len(), self.walk.len);
        let payload = &payload[..self.walk.len.min(payload.len())];
        if self.walk.i >= payload.len() {
            return None;
        }
        if self.in_sync() {
            self.sync_next(payload)
        } else {
            self.search_next(payload)
        }
    }

    /// The holder confirms that record number `index` starts at `seq`, the
    /// candidate asked about. The tracker is in sync again at the next
    /// record boundary the stream reaches.
    pub fn confirm(&mut self, seq: SeqNumber, index: u64) -> Result<(), ResyncError> {
        match &mut self.state {
            State::Searching(Search {
                follow: Some(f), ..
            }) if f.candidate == seq => {
                if f.confirmed.is_some() {
                    return Err(ResyncError::AlreadyConfirmed { tcp_seq: seq.0 });
                }
                f.confirmed = Some(index);
                Ok(())
            }
            _ => Err(ResyncError::UnknownCandidate { tcp_seq: seq.0 }),
        }
    }

    /// The holder says no record starts at `seq`: search again, from the
    /// bytes after it that are still to be walked (usually the next
    /// segment's).
    pub fn reject(&mut self, seq: SeqNumber) -> Result<(), ResyncError> {
        match &mut self.state {
            State::Searching(s) if s.follow.as_ref().is_some_and(|f| f.candidate == seq) => {
                *s = NEW_SEARCH;
                Ok(())
            }
            _ => Err(ResyncError::UnknownCandidate { tcp_seq: seq.0 }),
        }
    }

    /// Searching from scratch (a gap also drops the candidate followed).
    fn lose_sync(&mut self) {
        if self.in_sync() {
            self.counters.sync_losses += 1;
        }
        self.state = State::Searching(NEW_SEARCH);
    }

    fn sync_next(&mut self, payload: &[u8]) -> Option<Event> {
        let State::InSync(sync) = &mut self.state else {
            return None;
        };
        let (hdr_len, prefix_len) = (self.framing.header_len(), self.framing.prefix_len());
        let w = &mut self.walk;
        while w.i < payload.len() {
            let left = payload.len() - w.i;
            if let Some(seen) = &mut sync.open {
                let at = *seen;
                let n = (sync.len - at).min(left);
                let range = w.i..w.i + n;
                *seen += n;
                w.i += n;
                if *seen == sync.len {
                    sync.open = None;
                    sync.have = 0;
                }
                return Some(Event::Body {
                    range,
                    at,
                    len: sync.len,
                });
            }
            // The header is checked as soon as it is whole, so that a bad
            // one is given up on at once.
            let want = if sync.have < hdr_len {
                hdr_len
            } else {
                prefix_len
            };
            let n = (want - sync.have).min(left);
            sync.prefix[sync.have..sync.have + n].copy_from_slice(&payload[w.i..w.i + n]);
            sync.have += n;
            w.i += n;
            if sync.have == hdr_len {
                match record_len(&self.framing, &sync.prefix[..hdr_len]) {
                    Some(len) => sync.len = len,
                    None => {
                        // Search again from the byte after its start.
                        let at = (w.i + 1).saturating_sub(hdr_len).max(w.from);
                        w.i = at;
                        w.from = at;
                        self.lose_sync();
                        return Some(Event::Lost);
                    }
                }
            }
            if sync.have == prefix_len {
                let index = sync.next_index;
                sync.next_index = index.wrapping_add(1);
                sync.open = Some(prefix_len);
                if prefix_len == sync.len {
                    sync.open = None;
                    sync.have = 0;
                }
                return Some(Event::Start {
                    index,
                    len: sync.len,
                    prefix: Prefix {
                        bytes: sync.prefix,
                        len: prefix_len,
                    },
                });
            }
        }
        None
    }

    fn search_next(&mut self, payload: &[u8]) -> Option<Event> {
        let State::Searching(s) = &mut self.state else {
            return None;
        };
        let hdr_len = self.framing.header_len();
        let w = &mut self.walk;
        loop {
            let Some(f) = &mut s.follow else {
                let Some((candidate, len)) = scan(&self.framing, s, w.seq, payload, w.i) else {
                    w.i = payload.len();
                    return None;
                };
                self.counters.resync_requests += 1;
                s.carry_len = 0;
                s.follow = Some(Follow {
                    candidate,
                    next_hdr: candidate + len,
                    next_index: 1,
                    hdr: [0; MAX_PREFIX],
                    have: 0,
                    confirmed: None,
                });
                // Were it rejected before the walk goes on, the search
                // would go on after it.
                let cand_at = i64::from(candidate - w.seq);
                w.i = usize::try_from(cand_at + 1).unwrap_or(0).max(w.i);
                return Some(Event::Candidate { seq: candidate });
            };
            let off = i64::from((f.next_hdr + f.have) - w.seq);
            // The chain never points behind the stream position.
            debug_assert!(off >= 0);
            let off = off.max(0) as usize;
            if off >= payload.len() {
                w.i = payload.len();
                return None;
            }
            if f.have == 0 {
                if let Some(base) = f.confirmed {
                    let index = base.wrapping_add(f.next_index);
                    self.state = State::InSync(Sync::new(index));
                    self.counters.resyncs += 1;
                    w.i = off;
                    w.from = off;
                    return Some(Event::Synced { at: off });
                }
            }
            let n = (hdr_len - f.have).min(payload.len() - off);
            f.hdr[f.have..f.have + n].copy_from_slice(&payload[off..off + n]);
            f.have += n;
            if f.have < hdr_len {
                w.i = payload.len();
                return None;
            }
            match record_len(&self.framing, &f.hdr[..hdr_len]) {
                Some(len) => {
                    f.next_hdr += len;
                    f.next_index += 1;
                    f.have = 0;
                }
                None => {
                    // The chain breaks: the candidate was wrong (or the
                    // holder's answer came too late). Search after it.
                    let hdr_at = i64::from(f.next_hdr - w.seq);
                    let at = (hdr_at + 1).max(w.from as i64) as usize;
                    w.i = at;
                    *s = NEW_SEARCH;
                }
            }
        }
    }
}

/// The framing's record length, when it can hold the prefix.
fn record_len<F: Framing>(framing: &F, hdr: &[u8]) -> Option<usize> {
    framing
        .record_len(hdr)
        .filter(|&len| len >= framing.prefix_len())
}

/// Looks for a candidate header in the carried bytes followed by
/// `payload[from..]`. Returns its sequence number and record length, or
/// carries the last bytes over to the next segment.
fn scan<F: Framing>(
    framing: &F,
    s: &mut Search,
    seq: SeqNumber,
    payload: &[u8],
    from: usize,
) -> Option<(SeqNumber, usize)> {
    let hdr_len = framing.header_len();
    let data = &payload[from.min(payload.len())..];
    let carry_len = s.carry_len;
    let total = carry_len + data.len();
    let at = |k: usize| {
        if k < carry_len {
            s.carry[k]
        } else {
            data[k - carry_len]
        }
    };
    let mut window = [0u8; MAX_PREFIX];
    let mut k = 0;
    while k + hdr_len <= total {
        let hdr = if k >= carry_len {
            &data[k - carry_len..k - carry_len + hdr_len]
        } else {
            // Across the carried bytes and the segment's.
            for (j, b) in window[..hdr_len].iter_mut().enumerate() {
                *b = at(k + j);
            }
            &window[..hdr_len]
        };
        if let Some(len) = framing
            .candidate_len(hdr)
            .filter(|&len| len >= framing.prefix_len())
        {
            // k counts from the first carried byte, carry_len bytes
            // before payload[from].
            return Some((seq + (from + k) - carry_len, len));
        }
        k += 1;
    }
    let keep = total.min(hdr_len - 1);
    let mut carry = [0u8; MAX_PREFIX];
    for (j, c) in carry[..keep].iter_mut().enumerate() {
        *c = at(total - keep + j);
    }
    s.carry = carry;
    s.carry_len = keep;
    None
}

#[cfg(test)]
mod tests;
