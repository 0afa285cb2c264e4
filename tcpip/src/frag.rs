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
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    const H4: &[u8] = &[0x45; 20];
    const H6: &[u8] = &[0x60; 40];

    fn k4(id: u16) -> FragKey {
        FragKey::V4 {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            id,
            protocol: 17,
        }
    }

    fn k6(id: u32) -> FragKey {
        FragKey::V6 {
            src: "2001:db8::1".parse().unwrap(),
            dst: "2001:db8::2".parse().unwrap(),
            id,
        }
    }

    fn t(s: u64) -> Instant {
        Instant::from_millis(s * 1000)
    }

    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
    }

    /// The indexes and the memory charge agree with the table.
    fn check(r: &Reassembler) {
        assert_eq!(r.by_deadline.len(), r.datagrams.len());
        assert_eq!(r.by_age.len(), r.datagrams.len());
        let charged: usize = r.datagrams.values().map(Datagram::charge).sum();
        assert_eq!(r.used, charged);
        assert!(r.used <= r.limits.max_bytes_total);
        assert!(r.datagrams.len() <= r.limits.max_datagrams);
        for (&k, d) in &r.datagrams {
            assert!(r.by_deadline.contains(&(d.deadline, k)));
            assert!(r.by_age.contains(&(d.seq, k)));
            if let Body::Collecting(c) = &d.body {
                let sum: usize = c.fragments.values().map(Vec::len).sum();
                assert_eq!(sum, c.received);
                let mut at = 0;
                for (&o, data) in &c.fragments {
                    assert!(o >= at, "overlap held");
                    at = o + data.len();
                }
            }
        }
        assert_eq!(r.next_deadline(), r.by_deadline.first().map(|x| x.0));
    }

    fn poll(r: &mut Reassembler, now: Instant) -> Vec<Expired> {
        let mut out = Vec::new();
        r.poll(now, &mut |e| out.push(e));
        check(r);
        out
    }

    fn reasm() -> Reassembler {
        Reassembler::new(FragLimits::default())
    }

    #[test]
    fn in_order_and_out_of_order_in_both_families() {
        let payload = bytes(3000, 1);
        for (key, header) in [(k4(1), H4), (k6(1), H6)] {
            for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0], [2, 0, 1]] {
                let mut r = reasm();
                let pieces: Vec<Piece> = plan(payload.len(), 1480).unwrap().collect();
                assert_eq!(pieces.len(), 3);
                let mut done = None;
                for (n, &i) in order.iter().enumerate() {
                    let p = pieces[i];
                    let data = &payload[p.offset..p.offset + p.len];
                    let hdr = if p.offset == 0 { header } else { &[] };
                    let got = r.insert(t(0), key, p.offset, p.more, data, hdr).unwrap();
                    check(&r);
                    if n < 2 {
                        assert!(got.is_none());
                    } else {
                        done = got;
                    }
                }
                let done = done.expect("whole");
                assert_eq!(done.payload, payload);
                assert_eq!(done.header, header);
                assert!(r.is_empty());
                assert_eq!(r.bytes_used(), 0);
                assert_eq!(r.next_deadline(), None);
                assert_eq!(r.counters().reassembled, 1);
            }
        }
    }

    #[test]
    fn the_header_comes_only_from_the_offset_zero_fragment() {
        let mut r = reasm();
        r.insert(t(0), k4(1), 8, false, &[2; 8], &[9; 20]).unwrap();
        let got = r
            .insert(t(0), k4(1), 0, true, &[1; 8], H4)
            .unwrap()
            .unwrap();
        assert_eq!(got.header, H4);
        assert_eq!(got.payload, [[1; 8], [2; 8]].concat());
    }

    #[test]
    fn duplicates_are_ignored() {
        let mut r = reasm();
        let key = k6(7);
        let data = bytes(32, 3);
        assert_eq!(r.insert(t(0), key, 0, true, &data[..16], H6), Ok(None));
        // Exact duplicate, then a piece inside the held one with the same
        // bytes.
        assert_eq!(r.insert(t(0), key, 0, true, &data[..16], H6), Ok(None));
        assert_eq!(r.insert(t(0), key, 8, true, &data[8..16], &[]), Ok(None));
        assert_eq!(r.counters().duplicates, 2);
        check(&r);
        let got = r.insert(t(1), key, 16, false, &data[16..], &[]).unwrap();
        assert_eq!(got.unwrap().payload, data);
        // A duplicate of the last fragment arriving after the fact starts a
        // new datagram, which only times out.
        assert_eq!(r.insert(t(1), key, 16, false, &data[16..], &[]), Ok(None));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn a_duplicate_last_fragment_fixes_the_end() {
        let mut r = reasm();
        let key = k4(2);
        r.insert(t(0), key, 0, true, &[1; 8], H4).unwrap();
        r.insert(t(0), key, 8, true, &[2; 8], &[]).unwrap();
        // The same bytes again, now flagged last: the datagram is [0, 16).
        let got = r
            .insert(t(0), key, 8, false, &[2; 8], &[])
            .unwrap()
            .unwrap();
        assert_eq!(got.payload.len(), 16);
    }

    #[test]
    fn any_overlap_discards_the_datagram_and_its_later_fragments() {
        // (held fragments, the overlapping one)
        type Case = (&'static [(usize, usize)], (usize, usize));
        let cases: &[Case] = &[
            (&[(0, 16)], (8, 16)),         // runs past the held one
            (&[(16, 16)], (8, 16)),        // runs into the next
            (&[(8, 8)], (0, 24)),          // swallows one
            (&[(0, 8)], (0, 16)),          // same start, longer
            (&[(0, 16)], (0, 8)),          // inside, different bytes
            (&[(0, 8), (16, 8)], (8, 16)), // fills a hole and more
            (&[(0, 8), (16, 8)], (0, 24)), // covers all
            (&[(32, 8), (8, 8)], (0, 16)), // into the first of several
        ];
        for key in [k4(3), k6(3)] {
            for (held, (o, n)) in cases {
                let mut r = reasm();
                for &(ho, hn) in held.iter() {
                    let h = if ho == 0 { H4 } else { &[] };
                    r.insert(t(0), key, ho, true, &vec![0xaa; hn], h).unwrap();
                }
                let e = r.insert(t(0), key, *o, true, &vec![0xbb; *n], &[]);
                assert_eq!(e, Err(FragError::Overlap), "{held:?} then {o}+{n}");
                assert!(FragError::Overlap.discards_datagram());
                check(&r);
                // RFC 5722 §4: the rest of it goes too, even a good fragment.
                let e = r.insert(t(1), key, 64, false, &[1; 8], &[]);
                assert_eq!(e, Err(FragError::Discarded));
                assert_eq!(r.counters().discarded, 1);
                assert_eq!(r.bytes_used(), DATAGRAM_OVERHEAD);
                // At the timeout it goes silently, and the key is free again.
                assert!(poll(&mut r, t(60)).is_empty());
                assert!(r.is_empty());
                assert_eq!(r.counters().timed_out, 0);
                assert_eq!(r.insert(t(61), key, 8, false, &[1; 8], &[]), Ok(None));
            }
        }
    }

    #[test]
    fn bad_fragments_go_alone() {
        let mut r = reasm();
        let key = k6(4);
        r.insert(t(0), key, 0, true, &[1; 16], H6).unwrap();
        let bad: &[(usize, bool, usize, FragError)] = &[
            (17, true, 8, FragError::MisalignedOffset),
            (4, false, 8, FragError::MisalignedOffset),
            (16, true, 9, FragError::MisalignedLength),
            (16, true, 0, FragError::Empty),
            (16, false, 0, FragError::Empty),
            (65528, true, 16, FragError::TooLong),
            (65528, false, 8, FragError::TooLong),
        ];
        for &(offset, more, len, want) in bad {
            let got = r.insert(t(0), key, offset, more, &vec![0; len], &[]);
            assert_eq!(got, Err(want), "{offset} {more} {len}");
            assert!(!want.discards_datagram());
        }
        check(&r);
        let got = r
            .insert(t(0), key, 16, false, &[2; 5], &[])
            .unwrap()
            .unwrap();
        assert_eq!(got.payload, [&[1; 16][..], &[2; 5]].concat());
    }

    #[test]
    fn hostile_offsets_near_the_limits() {
        let mut r = reasm();
        // IPv6: the fragmentable part may reach 65535 exactly.
        assert_eq!(r.insert(t(0), k6(5), 65528, false, &[0; 7], &[]), Ok(None));
        assert_eq!(
            r.insert(t(0), k6(6), 65528, false, &[0; 8], &[]),
            Err(FragError::TooLong)
        );
        // IPv4: 65535 less the smallest header.
        assert_eq!(r.insert(t(0), k4(5), 65512, false, &[0; 3], &[]), Ok(None));
        assert_eq!(
            r.insert(t(0), k4(6), 65512, false, &[0; 4], &[]),
            Err(FragError::TooLong)
        );
        // Offsets no wire format can carry, and that would wrap.
        for offset in [usize::MAX & !7, usize::MAX - 7, 1 << 40] {
            assert_eq!(
                r.insert(t(0), k6(7), offset, true, &[0; 16], &[]),
                Err(FragError::TooLong)
            );
        }
        // A tiny fragment far out costs what it holds, not its offset.
        assert!(r.bytes_used() < 2 * (DATAGRAM_OVERHEAD + FRAGMENT_OVERHEAD + 8));
        check(&r);
    }

    #[test]
    fn the_whole_must_fit_in_65535_bytes_with_its_header() {
        // IPv4 with a 60-byte header: 65475 bytes of payload at most.
        let mut r = reasm();
        let key = k4(8);
        r.insert(t(0), key, 0, true, &vec![0; 65464], &[0x4f; 60])
            .unwrap();
        let got = r.insert(t(0), key, 65464, false, &[0; 12], &[]);
        assert_eq!(got, Err(FragError::Oversized));
        assert!(r.is_empty());
        assert_eq!(r.bytes_used(), 0);
        let key = k4(9);
        r.insert(t(0), key, 0, true, &vec![0; 65464], &[0x4f; 60])
            .unwrap();
        let got = r.insert(t(0), key, 65464, false, &[0; 11], &[]).unwrap();
        assert_eq!(got.unwrap().payload.len(), 65475);
        // IPv6: extension headers count against Payload Length.
        let key = k6(8);
        let unfrag = [0; 40 + 16];
        r.insert(t(0), key, 0, true, &vec![0; 65520], &unfrag)
            .unwrap();
        let got = r.insert(t(0), key, 65520, false, &[0; 15], &[]);
        assert_eq!(got, Err(FragError::Oversized));
        // Headers no valid packet has.
        assert_eq!(
            r.insert(t(0), k4(10), 0, true, &[0; 8], &[0; 61]),
            Err(FragError::HeaderTooLong)
        );
        check(&r);
    }

    #[test]
    fn the_end_cannot_move() {
        let mut r = reasm();
        let key = k4(11);
        r.insert(t(0), key, 16, false, &[0; 8], &[]).unwrap();
        assert_eq!(
            r.insert(t(0), key, 16, false, &[0; 16], &[]),
            Err(FragError::EndMismatch)
        );
        assert!(FragError::EndMismatch.discards_datagram());
        assert_eq!(
            r.insert(t(0), key, 0, true, &[0; 8], H4),
            Err(FragError::Discarded)
        );

        let key = k4(12);
        r.insert(t(0), key, 16, false, &[0; 8], &[]).unwrap();
        assert_eq!(
            r.insert(t(0), key, 24, true, &[0; 8], &[]),
            Err(FragError::PastEnd)
        );

        // A last fragment ending before data already held.
        let key = k6(12);
        r.insert(t(0), key, 32, true, &[0; 8], &[]).unwrap();
        assert_eq!(
            r.insert(t(0), key, 8, false, &[0; 8], &[]),
            Err(FragError::EndMismatch)
        );
        assert_eq!(r.counters().discarded, 3);
        check(&r);
    }

    #[test]
    fn timeouts_with_and_without_the_first_fragment() {
        let mut r = reasm();
        r.insert(t(0), k4(1), 0, true, &[1; 8], H4).unwrap();
        r.insert(t(5), k4(2), 8, false, &[2; 8], &[]).unwrap();
        r.insert(t(0), k6(1), 0, true, &[3; 8], H6).unwrap();
        r.insert(t(0), k6(1), 16, true, &[4; 8], &[]).unwrap();
        assert_eq!(r.next_deadline(), Some(t(30)));
        // Later fragments do not extend the timer.
        r.insert(t(29), k4(1), 16, true, &[5; 8], &[]).unwrap();
        assert!(poll(&mut r, t(29)).is_empty());
        let first = FirstFragment {
            header: H4.to_vec(),
            data: vec![1; 8],
        };
        assert_eq!(
            poll(&mut r, t(30)),
            vec![Expired {
                key: k4(1),
                first: Some(first)
            }]
        );
        assert_eq!(r.next_deadline(), Some(t(35)));
        // Due but not polled: refused, left for poll.
        assert_eq!(
            r.insert(t(36), k4(2), 0, true, &[0; 8], H4),
            Err(FragError::Expired)
        );
        assert_eq!(
            poll(&mut r, t(59)),
            vec![Expired {
                key: k4(2),
                first: None
            }]
        );
        let out = poll(&mut r, t(60));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].key, k6(1));
        assert_eq!(out[0].first.as_ref().unwrap().data, vec![3; 8]);
        assert!(r.is_empty());
        assert_eq!(r.bytes_used(), 0);
        assert_eq!(r.counters().timed_out, 3);
    }

    #[test]
    fn atomic_fragments_stand_alone() {
        let mut r = reasm();
        let key = k6(9);
        r.insert(t(0), key, 8, true, &[2; 8], &[]).unwrap();
        let got = r.insert(t(0), key, 0, false, &[7; 5], H6).unwrap().unwrap();
        assert_eq!(got.payload, vec![7; 5]);
        assert_eq!(got.header, H6);
        // An empty one too.
        let got = r.insert(t(0), key, 0, false, &[], H6).unwrap().unwrap();
        assert!(got.payload.is_empty());
        // The reassembly in progress is untouched.
        assert_eq!(r.len(), 1);
        let got = r.insert(t(0), key, 0, true, &[1; 8], H6).unwrap();
        assert!(got.is_none());
        assert_eq!(r.counters().atomic, 2);
    }

    #[test]
    fn memory_pressure_evicts_the_oldest() {
        let per = DATAGRAM_OVERHEAD + FRAGMENT_OVERHEAD + 20 + 1000;
        let mut r = Reassembler::new(FragLimits {
            max_bytes_total: 3 * per,
            ..FragLimits::default()
        });
        for id in 0..3 {
            r.insert(t(id), k4(id as u16), 0, true, &vec![0; 1000], H4)
                .unwrap();
        }
        assert_eq!(r.bytes_used(), 3 * per);
        // A fourth datagram pushes out the first.
        r.insert(t(3), k4(3), 0, true, &vec![0; 1000], H4).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r.counters().evicted, 1);
        assert_eq!(
            r.insert(t(3), k4(0), 1000, false, &[0; 8], &[]),
            Ok(None),
            "k4(0) is gone: this starts afresh"
        );
        check(&r);
        // Growing a datagram evicts others, never itself.
        let before = r.counters().evicted;
        r.insert(t(4), k4(3), 1000, true, &vec![0; 2000], &[])
            .unwrap();
        assert!(r.counters().evicted > before);
        assert!(r.datagrams.contains_key(&k4(3)));
        check(&r);
        // One datagram bigger than the whole budget is discarded, and
        // evicts nobody on its way out.
        let others = r.len() - 1;
        let before = r.counters().evicted;
        let e = r.insert(t(4), k4(3), 3000, true, &vec![0; 4000], &[]);
        assert_eq!(e, Err(FragError::NoMemory));
        assert!(!r.datagrams.contains_key(&k4(3)));
        assert_eq!(r.len(), others);
        assert_eq!(r.counters().evicted, before);
        let e = r.insert(t(4), k4(50), 8, true, &vec![0; 4000], &[]);
        assert_eq!(e, Err(FragError::NoMemory));
        assert_eq!(r.len(), others);
        check(&r);
    }

    #[test]
    fn the_datagram_count_is_bounded() {
        let mut r = Reassembler::new(FragLimits {
            max_datagrams: 4,
            ..FragLimits::default()
        });
        for id in 0..100u32 {
            r.insert(t(0), k6(id), 8, true, &[0; 8], &[]).unwrap();
            check(&r);
        }
        assert_eq!(r.len(), 4);
        assert_eq!(r.counters().evicted, 96);
        let kept: Vec<FragKey> = r.datagrams.keys().copied().collect();
        assert_eq!(kept, vec![k6(96), k6(97), k6(98), k6(99)]);
        let mut none = Reassembler::new(FragLimits {
            max_datagrams: 0,
            ..FragLimits::default()
        });
        assert_eq!(
            none.insert(t(0), k6(1), 8, true, &[0; 8], &[]),
            Err(FragError::NoMemory)
        );
    }

    #[test]
    fn a_flood_of_tiny_fragments_is_charged_for_its_bookkeeping() {
        let mut r = Reassembler::new(FragLimits {
            max_bytes_total: 64 << 10,
            ..FragLimits::default()
        });
        let key = k6(1);
        let mut refused = 0;
        for i in 0..8000 {
            // Every other 8-byte slot: never completes.
            match r.insert(t(0), key, 16 * i, true, &[0; 8], &[]) {
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(e, FragError::NoMemory);
                    refused += 1;
                    break;
                }
            }
        }
        assert_eq!(refused, 1);
        assert!(r.is_empty());
        assert_eq!(r.bytes_used(), 0);
    }

    // ---- the planner ----

    #[test]
    fn plan_splits_into_aligned_pieces_that_fit() {
        let p: Vec<Piece> = plan(20, 13).unwrap().collect();
        assert_eq!(
            p,
            vec![
                Piece {
                    offset: 0,
                    len: 8,
                    more: true
                },
                Piece {
                    offset: 8,
                    len: 12,
                    more: false
                },
            ]
        );
        let p: Vec<Piece> = plan(2960, 1480).unwrap().collect();
        assert_eq!(p.len(), 2);
        assert_eq!((p[1].offset, p[1].len, p[1].more), (1480, 1480, false));
        assert_eq!(plan(0, 8).unwrap().collect::<Vec<_>>().len(), 1);
        assert_eq!(
            plan(100, 1000).unwrap().collect::<Vec<_>>(),
            vec![Piece {
                offset: 0,
                len: 100,
                more: false
            }]
        );
        assert_eq!(plan(100, 7).err(), Some(PlanError::MtuTooSmall));
        assert_eq!(plan(65536, 1280).err(), Some(PlanError::TooLong));
        // The smallest step, the longest payload: offsets stay addressable.
        let p: Vec<Piece> = plan(65535, 8).unwrap().collect();
        assert_eq!(p.len(), 8192);
        assert_eq!(p.last().unwrap().offset, 65528);
    }

    #[test]
    fn plan_pieces_are_contiguous_aligned_and_counted() {
        let mut rng = SmallRng::seed_from_u64(11);
        for _ in 0..2000 {
            let len = rng.gen_range(0..=65535);
            let mtu = rng.gen_range(8..3000);
            let it = plan(len, mtu).unwrap();
            let hint = it.len();
            let p: Vec<Piece> = it.collect();
            assert_eq!(p.len(), hint);
            let mut at = 0;
            for (i, piece) in p.iter().enumerate() {
                assert_eq!(piece.offset, at);
                assert!(piece.len <= mtu);
                assert_eq!(piece.more, i + 1 < p.len());
                if piece.more {
                    assert_eq!(piece.len % 8, 0);
                    assert!(piece.len > 0);
                }
                at += piece.len;
            }
            assert_eq!(at, len);
        }
    }

    // ---- a random workout: plan, shuffle, duplicate, interleave ----

    #[test]
    fn random_payloads_reassemble_byte_exact() {
        let mut rng = SmallRng::seed_from_u64(2024);
        for round in 0..200u32 {
            let mut r = reasm();
            // A few datagrams at once, their fragments interleaved.
            let mut sends = Vec::new();
            let mut want = BTreeMap::new();
            for d in 0..rng.gen_range(1..5u32) {
                let v6 = rng.gen();
                let key = if v6 {
                    k6(round * 8 + d)
                } else {
                    k4((round * 8 + d) as u16)
                };
                let max = if v6 { 65535 } else { 65515 };
                let len = match rng.gen_range(0..4) {
                    0 => rng.gen_range(9..64),
                    1 => max,
                    _ => rng.gen_range(9..=max),
                };
                let payload: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                // Below `len`: always fragmented.
                let mtu = rng.gen_range(8..len.min(9000));
                let header: Vec<u8> = vec![d as u8; if v6 { 40 } else { 20 }];
                for piece in plan(len, mtu).unwrap() {
                    let copies = if rng.gen_range(0..8) == 0 { 2 } else { 1 };
                    for _ in 0..copies {
                        sends.push((key, piece));
                    }
                }
                want.insert(key, (payload, header));
            }
            sends.shuffle(&mut rng);
            let mut got = BTreeMap::new();
            for (key, p) in sends {
                let (payload, header) = &want[&key];
                let h = if p.offset == 0 { &header[..] } else { &[] };
                let data = &payload[p.offset..p.offset + p.len];
                match r.insert(t(0), key, p.offset, p.more, data, h) {
                    Ok(Some(done)) => {
                        // Duplicates after completion may, rarely, make the
                        // datagram again: the same bytes.
                        if let Some(before) = got.insert(key, done.clone()) {
                            assert_eq!(before, done);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => panic!("round {round}: {e}"),
                }
            }
            check(&r);
            assert_eq!(got.len(), want.len(), "round {round}");
            for (key, done) in got {
                assert_eq!(done.payload, want[&key].0);
                assert_eq!(done.header, want[&key].1);
            }
            // Duplicates arriving after completion start new datagrams;
            // nothing else is left.
            assert!(r.counters().discarded == 0);
        }
    }
}
