//! IP fragmentation: reassembly of received fragments for IPv4 (RFC 791,
//! with RFC 815's hole accounting) and IPv6 (RFC 8200 §4.5, RFC 5722), and
//! the planner that splits an outgoing payload into fragments.
//!
//! This module owns the byte ranges, their validation, the reassembly
//! timers and the memory bound. It does not parse or build headers: the
//! caller parses each fragment into a [`FragKey`], an offset, the More
//! Fragments flag, the fragment's data and (for the offset-zero fragment)
//! the header to keep, and it builds the reassembled packet and any ICMP
//! error from what comes back.
//!
//! The rules, and where they come from:
//! - Offsets are multiples of 8, and so is the length of every fragment but
//!   the last (RFC 791 §3.2; RFC 8200 §4.5, which answers a misaligned
//!   length with ICMP Parameter Problem code 0 at Payload Length). A bad
//!   fragment is dropped alone.
//! - No datagram may exceed 65535 octets (RFC 791's Total Length; RFC 8200
//!   §4.5 answers with Parameter Problem code 0 at the Fragment Offset). A
//!   fragment reaching past that is dropped alone.
//! - Any overlap discards the whole datagram, and its fragments still to
//!   come until its timeout (RFC 5722 §4, for IPv6). IPv4 does the same, as
//!   Linux has since 4.19 ("ip: discard IPv4 datagrams with overlapping
//!   segments", 2018): overlaps only serve to evade inspection. A fragment
//!   that lies wholly inside one already received, with the same bytes, is
//!   a duplicate (RFC 5722 errata 3089: duplicates are ignored) and is
//!   dropped alone; with different bytes it is an overlap.
//! - A last fragment that disagrees with the known end, or ends before data
//!   already held, and a fragment past the known end, discard the datagram
//!   (as Linux's `ip_frag_queue`/`ip6_frag_queue` do).
//! - A fragment with offset zero and More Fragments clear is a whole packet
//!   (RFC 6946 §4, "atomic fragment"): it comes back at once and never
//!   joins a reassembly.
//! - A datagram is abandoned when its timeout, counted from its first
//!   arriving fragment, passes: 30 s for IPv4 (Linux `ipfrag_time`; RFC 791
//!   leaves it to the implementation), 60 s for IPv6 (RFC 8200 §4.5). Only
//!   if its offset-zero fragment had arrived does the caller send ICMP Time
//!   Exceeded, code 1 (RFC 792; RFC 8200 §4.5, RFC 4443 §3.3).
//!
//! Bounds: at most [`FragLimits::max_datagrams`] datagrams and
//! [`FragLimits::max_bytes_total`] bytes, counting every fragment's data,
//! the kept header and a fixed overhead per fragment and per datagram
//! ([`FRAGMENT_OVERHEAD`], [`DATAGRAM_OVERHEAD`]) so that a flood of tiny
//! fragments is charged for its bookkeeping. Under pressure the oldest
//! datagrams (by first arrival) are evicted, and counted. Linux instead
//! refuses new datagrams above `ipfrag_high_thresh`; evicting the oldest
//! lets fresh traffic through a flood at the cost of old partial datagrams,
//! which under a flood are the least likely to complete.
//!
//! Costs: each call is O(log n) in datagrams and in the datagram's
//! fragments, plus copying the fragment's bytes once (and once more when
//! the datagram is put together).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::time::Instant;

/// Bytes charged per fragment held, beyond its data.
pub const FRAGMENT_OVERHEAD: usize = 64;
/// Bytes charged per datagram held (including a discarded one's marker).
pub const DATAGRAM_OVERHEAD: usize = 128;

/// The largest IP datagram (RFC 791 Total Length; RFC 8200 Payload Length).
const MAX_DATAGRAM: usize = 65535;
const IPV4_MIN_HEADER: usize = 20;
const IPV4_MAX_HEADER: usize = 60;
const IPV6_HEADER: usize = 40;

/// The reassembler's bounds and timeouts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FragLimits {
    /// Bytes held over all datagrams (see the module doc for what counts).
    pub max_bytes_total: usize,
    /// Datagrams held at once, complete or discarded-but-remembered.
    pub max_datagrams: usize,
    /// IPv4 reassembly timeout (Linux `ipfrag_time`: 30 s).
    pub timeout_v4: Duration,
    /// IPv6 reassembly timeout (RFC 8200 §4.5: 60 s).
    pub timeout_v6: Duration,
}

impl Default for FragLimits {
    fn default() -> Self {
        FragLimits {
            // Linux's ipfrag_high_thresh.
            max_bytes_total: 4 << 20,
            max_datagrams: 1024,
            timeout_v4: Duration::from_secs(30),
            timeout_v6: Duration::from_secs(60),
        }
    }
}

/// Which original datagram a fragment belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FragKey {
    /// RFC 791 §3.2: source, destination, protocol and identification.
    V4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        id: u16,
        protocol: u8,
    },
    /// RFC 8200 §4.5: source, destination and Fragment Identification. The
    /// Next Header is not part of it: only the offset-zero fragment's
    /// counts.
    V6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        id: u32,
    },
}

impl FragKey {
    /// The furthest a fragment may reach: a datagram's length less the
    /// smallest header that must precede it.
    fn max_end(&self) -> usize {
        match self {
            FragKey::V4 { .. } => MAX_DATAGRAM - IPV4_MIN_HEADER,
            // Payload Length counts everything after the fixed header.
            FragKey::V6 { .. } => MAX_DATAGRAM,
        }
    }

    fn max_header(&self) -> usize {
        match self {
            FragKey::V4 { .. } => IPV4_MAX_HEADER,
            FragKey::V6 { .. } => IPV6_HEADER + MAX_DATAGRAM,
        }
    }

    /// Whether the reassembled datagram fits in its length field.
    fn fits(&self, header_len: usize, payload_len: usize) -> bool {
        let total = match self {
            FragKey::V4 { .. } => header_len.saturating_add(payload_len),
            FragKey::V6 { .. } => header_len
                .saturating_sub(IPV6_HEADER)
                .saturating_add(payload_len),
        };
        total <= MAX_DATAGRAM
    }
}

/// A datagram put back together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reassembled {
    /// The fragmentable part, in order.
    pub payload: Vec<u8>,
    /// The header kept from the offset-zero fragment, as given to
    /// [`Reassembler::insert`].
    pub header: Vec<u8>,
}

/// The offset-zero fragment of an expired datagram: what an ICMP Time
/// Exceeded quotes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirstFragment {
    pub header: Vec<u8>,
    pub data: Vec<u8>,
}

/// A datagram abandoned at its timeout, from [`Reassembler::poll`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expired {
    pub key: FragKey,
    /// `Some` if the offset-zero fragment had arrived: only then does the
    /// caller send ICMP Time Exceeded, "fragment reassembly time exceeded"
    /// (RFC 792; RFC 8200 §4.5), to the source, quoting it.
    pub first: Option<FirstFragment>,
}

/// Why [`Reassembler::insert`] refused a fragment. Whether the datagram
/// went with it is [`FragError::discards_datagram`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FragError {
    /// The offset is not a multiple of 8.
    MisalignedOffset,
    /// A fragment other than the last has a length not a multiple of 8
    /// (IPv6: ICMP Parameter Problem, code 0, at Payload Length).
    MisalignedLength,
    /// The fragment reaches past the largest datagram (IPv6: ICMP
    /// Parameter Problem, code 0, at the Fragment Offset).
    TooLong,
    /// The datagram put together, with its header, would exceed 65535
    /// bytes; it is discarded.
    Oversized,
    /// The offset-zero fragment's header is longer than any valid one.
    HeaderTooLong,
    /// A fragment with no data that is not a whole packet.
    Empty,
    /// The fragment overlaps data already held (RFC 5722).
    Overlap,
    /// A last fragment whose end disagrees with the known end or falls
    /// before data already held.
    EndMismatch,
    /// A fragment reaching past the known end.
    PastEnd,
    /// The datagram was discarded earlier; its fragments are dropped until
    /// its timeout (RFC 5722 §4).
    Discarded,
    /// The datagram's time is up; [`Reassembler::poll`] reports it.
    Expired,
    /// The datagram alone would exceed the memory bound; it is discarded.
    NoMemory,
}

impl FragError {
    /// Whether the whole datagram was discarded (and its later fragments
    /// will be), rather than this fragment alone.
    pub fn discards_datagram(self) -> bool {
        match self {
            FragError::Overlap
            | FragError::EndMismatch
            | FragError::PastEnd
            | FragError::Oversized
            | FragError::NoMemory => true,
            FragError::MisalignedOffset
            | FragError::MisalignedLength
            | FragError::TooLong
            | FragError::HeaderTooLong
            | FragError::Empty
            | FragError::Discarded
            | FragError::Expired => false,
        }
    }
}

impl fmt::Display for FragError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FragError::MisalignedOffset => "fragment offset not a multiple of 8",
            FragError::MisalignedLength => "non-last fragment length not a multiple of 8",
            FragError::TooLong => "fragment reaches past 65535 octets",
            FragError::Oversized => "reassembled datagram longer than 65535 octets",
            FragError::HeaderTooLong => "header too long",
            FragError::Empty => "empty fragment",
            FragError::Overlap => "overlapping fragment",
            FragError::EndMismatch => "last fragment disagrees with the datagram's end",
            FragError::PastEnd => "fragment past the datagram's end",
            FragError::Discarded => "datagram already discarded",
            FragError::Expired => "datagram reassembly time exceeded",
            FragError::NoMemory => "datagram exceeds the reassembly memory bound",
        })
    }
}

impl std::error::Error for FragError {}

/// Event counts since the reassembler was made. Refused fragments are the
/// caller's to count, by [`FragError`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragCounters {
    /// Datagrams put back together (not counting atomic fragments).
    pub reassembled: u64,
    /// Atomic fragments passed straight through (RFC 6946).
    pub atomic: u64,
    /// Datagrams abandoned at their timeout.
    pub timed_out: u64,
    /// Datagrams evicted to stay within the bounds.
    pub evicted: u64,
    /// Duplicate fragments ignored.
    pub duplicates: u64,
    /// Datagrams discarded for a bad fragment (overlaps and the like).
    pub discarded: u64,
}

#[derive(Debug)]
struct Datagram {
    /// Arrival order of its first fragment: eviction takes the lowest.
    seq: u64,
    deadline: Instant,
    body: Body,
}

#[derive(Debug)]
enum Body {
    Collecting(Collecting),
    /// RFC 5722 §4: discarded; later fragments are dropped too until the
    /// timeout.
    Discarded,
}

#[derive(Debug, Default)]
struct Collecting {
    /// offset → data; no two overlap.
    fragments: BTreeMap<usize, Vec<u8>>,
    /// Bytes held: since nothing overlaps, the datagram is whole when this
    /// reaches `end` (RFC 815's "no holes left", counted instead of listed).
    received: usize,
    /// The end, once the last fragment has arrived.
    end: Option<usize>,
    /// Kept from the offset-zero fragment.
    header: Option<Vec<u8>>,
}

impl Datagram {
    fn charge(&self) -> usize {
        DATAGRAM_OVERHEAD
            + match &self.body {
                Body::Discarded => 0,
                Body::Collecting(c) => {
                    c.received
                        + c.fragments.len() * FRAGMENT_OVERHEAD
                        + c.header.as_ref().map_or(0, Vec::len)
                }
            }
    }
}

/// Where a new fragment falls among those held.
enum Fit {
    New,
    /// Wholly inside one held fragment, with the same bytes.
    Duplicate,
    Bad(FragError),
}

impl Collecting {
    fn fit(&self, offset: usize, end: usize, more: bool, data: &[u8]) -> Fit {
        let held_end = self
            .fragments
            .last_key_value()
            .map_or(0, |(&o, d)| o + d.len());
        if more {
            if self.end.is_some_and(|known| end > known) {
                return Fit::Bad(FragError::PastEnd);
            }
        } else if self.end.is_some_and(|known| known != end) || end < held_end {
            return Fit::Bad(FragError::EndMismatch);
        }
        if let Some((&o, d)) = self.fragments.range(..=offset).next_back() {
            let held = o + d.len();
            if held > offset {
                let same = held >= end && d.get(offset - o..end - o) == Some(data);
                return if same {
                    Fit::Duplicate
                } else {
                    Fit::Bad(FragError::Overlap)
                };
            }
        }
        match self.fragments.range(offset + 1..).next() {
            Some((&o, _)) if o < end => Fit::Bad(FragError::Overlap),
            _ => Fit::New,
        }
    }

    fn is_whole(&self) -> bool {
        self.end == Some(self.received)
    }

    fn into_first(mut self) -> Option<FirstFragment> {
        let data = self.fragments.remove(&0)?;
        let header = self.header?;
        Some(FirstFragment { header, data })
    }
}

/// Reassembly of IPv4 and IPv6 fragments, bounded in datagrams and bytes.
#[derive(Debug)]
pub struct Reassembler {
    limits: FragLimits,
    datagrams: BTreeMap<FragKey, Datagram>,
    by_deadline: BTreeSet<(Instant, FragKey)>,
    by_age: BTreeSet<(u64, FragKey)>,
    next_seq: u64,
    /// Sum of every datagram's charge.
    used: usize,
    counters: FragCounters,
}

impl Reassembler {
    pub fn new(limits: FragLimits) -> Self {
        Reassembler {
            limits,
            datagrams: BTreeMap::new(),
            by_deadline: BTreeSet::new(),
            by_age: BTreeSet::new(),
            next_seq: 0,
            used: 0,
            counters: FragCounters::default(),
        }
    }

    /// Take in one fragment of datagram `key`: `data` is its fragmentable
    /// part, starting `offset` bytes into the original payload; `more` is
    /// its More Fragments flag. Returns the datagram when this fragment
    /// completes it, `None` while it is still partial or the fragment was a
    /// duplicate.
    ///
    /// `header` is read only from the offset-zero fragment (pass `&[]` for
    /// the others) and comes back in [`Reassembled::header`] and
    /// [`FirstFragment::header`]. For IPv4 it is that fragment's IPv4
    /// header, options included (at most 60 bytes; the datagram must fit
    /// 65535 bytes with it); the caller rewrites Total Length, the flags and
    /// offset, and the checksum. For IPv6 it is the unfragmentable part: the
    /// IPv6 header and the extension headers before the Fragment header,
    /// with the last Next Header already set to the offset-zero Fragment
    /// header's Next Header (RFC 8200 §4.5); the caller rewrites Payload
    /// Length, which must fit 65535 bytes with the extension headers.
    ///
    /// Call [`Reassembler::poll`] first when [`Reassembler::next_deadline`]
    /// has passed: a fragment of a datagram whose time is up is refused
    /// ([`FragError::Expired`]) and the datagram waits for `poll`.
    pub fn insert(
        &mut self,
        now: Instant,
        key: FragKey,
        offset: usize,
        more: bool,
        data: &[u8],
        header: &[u8],
    ) -> Result<Option<Reassembled>, FragError> {
        // Checks of the fragment alone: it goes, the datagram stays.
        if offset & 7 != 0 {
            return Err(FragError::MisalignedOffset);
        }
        if more && data.len() & 7 != 0 {
            return Err(FragError::MisalignedLength);
        }
        let end = offset
            .checked_add(data.len())
            .filter(|&end| end <= key.max_end())
            .ok_or(FragError::TooLong)?;
        let header = if offset == 0 { header } else { &[] };
        if header.len() > key.max_header() {
            return Err(FragError::HeaderTooLong);
        }
        if offset == 0 && !more {
            // RFC 6946 §4: a whole packet; never mixed with a reassembly.
            if !key.fits(header.len(), end) {
                return Err(FragError::Oversized);
            }
            self.counters.atomic += 1;
            return Ok(Some(Reassembled {
                payload: data.to_vec(),
                header: header.to_vec(),
            }));
        }
        if data.is_empty() {
            return Err(FragError::Empty);
        }

        // Checks against the datagram.
        let is_new = match self.datagrams.get(&key) {
            None => true,
            Some(d) if d.deadline <= now => return Err(FragError::Expired),
            Some(Datagram {
                body: Body::Discarded,
                ..
            }) => return Err(FragError::Discarded),
            Some(Datagram {
                body: Body::Collecting(c),
                ..
            }) => match c.fit(offset, end, more, data) {
                Fit::New => false,
                Fit::Duplicate => {
                    self.counters.duplicates += 1;
                    // Linux takes the last fragment's end even when its
                    // bytes are a duplicate; the checks above held.
                    if !more {
                        return self.finish_if_whole(key, Some(end));
                    }
                    return Ok(None);
                }
                Fit::Bad(e) => {
                    self.discard(key);
                    return Err(e);
                }
            },
        };

        // Room, by the bounds.
        let cost = data.len() + FRAGMENT_OVERHEAD + header.len();
        let cost = if is_new {
            cost + DATAGRAM_OVERHEAD
        } else {
            cost
        };
        let own = self.datagrams.get(&key).map_or(0, Datagram::charge);
        if own + cost > self.limits.max_bytes_total || self.limits.max_datagrams == 0 {
            // Too big for the whole budget: evict nobody for it.
            if !is_new {
                self.remove(key);
                self.counters.discarded += 1;
            }
            return Err(FragError::NoMemory);
        }
        if is_new && self.datagrams.len() >= self.limits.max_datagrams {
            self.evict_oldest(key);
        }
        while self.used + cost > self.limits.max_bytes_total {
            if !self.evict_oldest(key) {
                break;
            }
        }
        if self.used + cost > self.limits.max_bytes_total
            || (is_new && self.datagrams.len() >= self.limits.max_datagrams)
        {
            if !is_new {
                self.remove(key);
                self.counters.discarded += 1;
            }
            return Err(FragError::NoMemory);
        }

        // Take it in.
        if is_new {
            let timeout = match key {
                FragKey::V4 { .. } => self.limits.timeout_v4,
                FragKey::V6 { .. } => self.limits.timeout_v6,
            };
            let d = Datagram {
                seq: self.next_seq,
                deadline: now + timeout,
                body: Body::Collecting(Collecting::default()),
            };
            self.next_seq += 1;
            self.add(key, d);
        }
        let Some(d) = self.datagrams.get_mut(&key) else {
            return Ok(None);
        };
        let before = d.charge();
        if let Body::Collecting(c) = &mut d.body {
            c.fragments.insert(offset, data.to_vec());
            c.received += data.len();
            if offset == 0 {
                c.header = Some(header.to_vec());
            }
        }
        self.used = self.used - before + d.charge();
        self.finish_if_whole(key, if more { None } else { Some(end) })
    }

    /// Abandon the datagrams whose timeout has passed at `now`, telling
    /// `out` about each (not about those already discarded for a bad
    /// fragment: they go silently).
    pub fn poll(&mut self, now: Instant, out: &mut impl FnMut(Expired)) {
        while let Some(&(deadline, key)) = self.by_deadline.first() {
            if deadline > now {
                break;
            }
            match self.remove(key) {
                Some(Datagram {
                    body: Body::Collecting(c),
                    ..
                }) => {
                    self.counters.timed_out += 1;
                    out(Expired {
                        key,
                        first: c.into_first(),
                    });
                }
                Some(_) => {}
                None => {
                    // Cannot happen (every deadline has its datagram); never spin.
                    self.by_deadline.remove(&(deadline, key));
                }
            }
        }
    }

    /// When [`Reassembler::poll`] next has work, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.by_deadline.first().map(|&(t, _)| t)
    }

    /// Datagrams held, including discarded ones remembered until their
    /// timeout.
    pub fn len(&self) -> usize {
        self.datagrams.len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }

    /// Bytes charged against [`FragLimits::max_bytes_total`].
    pub fn bytes_used(&self) -> usize {
        self.used
    }

    /// Event counts since the reassembler was made.
    pub fn counters(&self) -> FragCounters {
        self.counters
    }

    // ---- internals ----

    /// Record `last` as the datagram's end if given, and if it is now whole,
    /// remove it and put it together.
    fn finish_if_whole(
        &mut self,
        key: FragKey,
        last: Option<usize>,
    ) -> Result<Option<Reassembled>, FragError> {
        let Some(Datagram {
            body: Body::Collecting(c),
            ..
        }) = self.datagrams.get_mut(&key)
        else {
            return Ok(None);
        };
        if last.is_some() {
            c.end = last;
        }
        if !c.is_whole() {
            return Ok(None);
        }
        let Some(Datagram {
            body: Body::Collecting(c),
            ..
        }) = self.remove(key)
        else {
            return Ok(None);
        };
        let header = c.header.unwrap_or_default();
        if !key.fits(header.len(), c.received) {
            self.counters.discarded += 1;
            return Err(FragError::Oversized);
        }
        let mut payload = Vec::with_capacity(c.received);
        for data in c.fragments.values() {
            payload.extend_from_slice(data);
        }
        self.counters.reassembled += 1;
        Ok(Some(Reassembled { payload, header }))
    }

    /// Drop a datagram's fragments but remember it until its timeout
    /// (RFC 5722 §4).
    fn discard(&mut self, key: FragKey) {
        if let Some(d) = self.datagrams.get_mut(&key) {
            self.used -= d.charge();
            d.body = Body::Discarded;
            self.used += d.charge();
            self.counters.discarded += 1;
        }
    }

    /// Evict the oldest datagram other than `keep`; false if there is none.
    fn evict_oldest(&mut self, keep: FragKey) -> bool {
        let victim = self.by_age.iter().map(|&(_, k)| k).find(|&k| k != keep);
        match victim {
            Some(k) => {
                self.remove(k);
                self.counters.evicted += 1;
                true
            }
            None => false,
        }
    }

    fn add(&mut self, key: FragKey, d: Datagram) {
        self.by_deadline.insert((d.deadline, key));
        self.by_age.insert((d.seq, key));
        self.used += d.charge();
        self.datagrams.insert(key, d);
    }

    fn remove(&mut self, key: FragKey) -> Option<Datagram> {
        let d = self.datagrams.remove(&key)?;
        self.by_deadline.remove(&(d.deadline, key));
        self.by_age.remove(&(d.seq, key));
        self.used -= d.charge();
        Some(d)
    }
}

/// One fragment of a plan: `len` bytes of the payload from `offset`, and
/// the More Fragments flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Piece {
    pub offset: usize,
    pub len: usize,
    pub more: bool,
}

/// Why a payload cannot be planned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PlanError {
    /// Fewer than 8 bytes of payload fit in a fragment.
    MtuTooSmall,
    /// More than 65535 bytes: past what a fragment offset can address.
    TooLong,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PlanError::MtuTooSmall => "fewer than 8 payload bytes fit in a fragment",
            PlanError::TooLong => "payload longer than 65535 bytes",
        })
    }
}

impl std::error::Error for PlanError {}

/// Split a payload of `payload_len` bytes into fragments.
///
/// `mtu_payload` is how many bytes of the fragmentable part fit in one
/// fragment: the link MTU less every header each fragment carries (IPv4:
/// the header with its copied options; IPv6: the unfragmentable part and
/// the 8-byte Fragment header). Every fragment but the last carries a
/// multiple of 8 bytes (RFC 791 §3.2, RFC 8200 §4.5); the last carries up
/// to `mtu_payload`. The pieces come in order and are as few as possible.
/// A payload that fits already comes back as one piece with `more` clear
/// (which the caller sends unfragmented; RFC 8021 deprecates atomic
/// fragments).
pub fn plan(payload_len: usize, mtu_payload: usize) -> Result<Plan, PlanError> {
    if mtu_payload < 8 {
        return Err(PlanError::MtuTooSmall);
    }
    if payload_len > MAX_DATAGRAM {
        return Err(PlanError::TooLong);
    }
    Ok(Plan {
        offset: 0,
        payload_len,
        mtu_payload,
        step: mtu_payload & !7,
        done: false,
    })
}

/// The pieces of [`plan`], in order.
#[derive(Clone, Debug)]
pub struct Plan {
    offset: usize,
    payload_len: usize,
    mtu_payload: usize,
    step: usize,
    done: bool,
}

impl Iterator for Plan {
    type Item = Piece;

    fn next(&mut self) -> Option<Piece> {
        if self.done {
            return None;
        }
        let left = self.payload_len - self.offset;
        let piece = if left > self.mtu_payload {
            Piece {
                offset: self.offset,
                len: self.step,
                more: true,
            }
        } else {
            self.done = true;
            Piece {
                offset: self.offset,
                len: left,
                more: false,
            }
        };
        self.offset += piece.len;
        Some(piece)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = if self.done {
            0
        } else {
            let left = self.payload_len - self.offset;
            1 + left.saturating_sub(self.mtu_payload).div_ceil(self.step)
        };
        (n, Some(n))
    }
}

impl ExactSizeIterator for Plan {}

#[cfg(test)]
mod tests;
