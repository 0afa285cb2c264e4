//! RX: open records in place as in-order segments arrive; after a loss,
//! find a record boundary again with the holder's help.
//!
//! States:
//! - in sync: the engine knows where the next record byte belongs. Bodies
//!   are decrypted as they pass (GHASH over the ciphertext first); a segment
//!   is marked decrypted when every record piece in it authenticated or
//!   still waits for its tag. A failed tag restores the whole segment to
//!   ciphertext and the engine goes on with the next record.
//! - searching: after a gap, or a header that does not parse, segments pass
//!   untouched. The engine looks for a plausible header, asks the holder
//!   once about it (`resync_request`), and follows the chain of headers from
//!   it by their lengths. When the holder confirms the candidate's record
//!   number ([`TlsRxEngine::resync`]), decryption resumes at the next record
//!   boundary.

use std::fmt;

use capnet_wire::tls::{self as wire_tls, ContentType, Version, HEADER_LEN, TAG_LEN};

use super::{check_header, min_body, seq_add, seq_diff, TlsParams};
use crate::gcm::{self, GcmKey, GcmRecord};

const MAX_PREFIX: usize = HEADER_LEN + wire_tls::EXPLICIT_NONCE_LEN;

/// What the NIC did with one received segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxOutcome {
    /// Every record byte in the segment is plaintext now (the descriptor's
    /// "decrypted" mark). Otherwise the segment is exactly as received.
    pub decrypted: bool,
    /// A candidate record header at this TCP sequence number: the holder
    /// answers with `resync` or `resync_reject`.
    pub resync_request: Option<u32>,
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
pub struct RxCounters {
    /// Records whose tag the engine checked and found right.
    pub records_decrypted: u64,
    pub auth_failures: u64,
    pub resync_requests: u64,
    /// Resyncs that took effect (decryption resumed).
    pub resyncs: u64,
    pub segments_decrypted: u64,
    /// Segments handed up as they arrived, whatever the reason.
    pub segments_untouched: u64,
    /// Times the engine went from in sync to searching.
    pub sync_losses: u64,
}

#[derive(Debug)]
struct RxRecord {
    total_len: usize,
    gcm: GcmRecord,
    /// Bytes of the record seen so far.
    seen: usize,
    tag: [u8; TAG_LEN],
}

#[derive(Debug)]
enum Cursor {
    /// Collecting the header (and TLS 1.2 explicit nonce) of the next record.
    Prefix {
        buf: [u8; MAX_PREFIX],
        have: usize,
    },
    Body(Box<RxRecord>),
}

const EMPTY_PREFIX: Cursor = Cursor::Prefix {
    buf: [0; MAX_PREFIX],
    have: 0,
};

#[derive(Debug)]
struct Sync {
    /// The number of the record whose prefix comes next.
    next_rec_seq: u64,
    cursor: Cursor,
}

/// Following the chain of headers from a candidate.
#[derive(Debug)]
struct Follow {
    candidate: u32,
    /// Where the next header starts, and its index in the chain (the
    /// candidate is 0).
    next_hdr: u32,
    next_index: u64,
    hdr: [u8; HEADER_LEN],
    have: usize,
    /// The candidate's record number, once the holder confirmed it.
    confirmed: Option<u64>,
}

#[derive(Debug, Default)]
struct Search {
    /// The last bytes before the next segment, for a header across the
    /// boundary (no candidate yet).
    carry: [u8; HEADER_LEN - 1],
    carry_len: usize,
    follow: Option<Follow>,
}

#[derive(Debug)]
enum State {
    InSync(Sync),
    Searching(Search),
}

/// How a pass over part of a segment ended.
enum Pass {
    /// The rest of the segment was consumed in this state.
    Done,
    /// Switch state, going on from this offset in the segment.
    LostSync {
        at: usize,
    },
    Synced {
        at: usize,
        rec_seq: u64,
    },
}

/// A range of the segment this call decrypted, to re-encrypt if the segment
/// cannot be marked.
struct Decrypted {
    nonce: [u8; 12],
    ct_offset: usize,
    start: usize,
    end: usize,
}

/// The RX half of a TLS offload context.
#[derive(Debug)]
pub struct TlsRxEngine {
    version: Version,
    key: GcmKey,
    iv: [u8; 12],
    /// The next in-order sequence number.
    expected: u32,
    state: State,
    /// Reused across calls so that the fast path does not allocate.
    decrypted: Vec<Decrypted>,
    counters: RxCounters,
}

impl fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Decrypted({}..{})", self.start, self.end)
    }
}

impl TlsRxEngine {
    pub fn new(params: TlsParams) -> TlsRxEngine {
        TlsRxEngine {
            version: params.version,
            key: params.key,
            iv: params.iv,
            expected: params.tcp_seq,
            state: State::InSync(Sync {
                next_rec_seq: params.rec_seq,
                cursor: EMPTY_PREFIX,
            }),
            decrypted: Vec::new(),
            counters: RxCounters::default(),
        }
    }

    pub fn counters(&self) -> RxCounters {
        self.counters
    }

    pub fn in_sync(&self) -> bool {
        matches!(self.state, State::InSync(_))
    }

    /// The next in-order sequence number.
    pub fn expected(&self) -> u32 {
        self.expected
    }

    /// Processes one received segment whose first payload byte has sequence
    /// `seq`, decrypting it in place when it can.
    pub fn process(&mut self, seq: u32, payload: &mut [u8]) -> RxOutcome {
        let mut out = RxOutcome::default();
        if payload.is_empty() {
            return out;
        }
        let ahead = seq_diff(seq, self.expected);
        let end = ahead + payload.len() as i64;
        if end <= 0 {
            // A retransmission or duplicate of bytes already handed up.
            self.counters.segments_untouched += 1;
            return out;
        }
        let mut from = 0;
        if ahead > 0 {
            // Bytes were lost: the record chain is unknown from here.
            self.lose_sync();
            self.state = State::Searching(Search::default());
        } else {
            // Overlapping old and new bytes: only the new part is processed
            // (and the segment cannot be marked).
            from = (-ahead) as usize;
        }
        self.expected = seq_add(seq, payload.len());

        // Whether every byte of the segment went through the in-sync path.
        let mut whole = from == 0;
        let mut auth_ok = true;
        self.decrypted.clear();
        loop {
            let pass = if self.in_sync() {
                self.sync_pass(payload, from, &mut auth_ok)
            } else {
                self.search_pass(seq, payload, from, &mut out)
            };
            match pass {
                Pass::Done => {
                    whole &= self.in_sync();
                    break;
                }
                Pass::LostSync { at } => {
                    self.lose_sync();
                    self.state = State::Searching(Search::default());
                    whole = false;
                    from = at;
                }
                Pass::Synced { at, rec_seq } => {
                    self.counters.resyncs += 1;
                    self.state = State::InSync(Sync {
                        next_rec_seq: rec_seq,
                        cursor: EMPTY_PREFIX,
                    });
                    whole &= at == 0;
                    from = at;
                }
            }
        }
        out.decrypted = whole && auth_ok;
        if out.decrypted {
            self.counters.segments_decrypted += 1;
        } else {
            for d in &self.decrypted {
                gcm::apply_keystream(
                    &self.key,
                    &d.nonce,
                    d.ct_offset,
                    &mut payload[d.start..d.end],
                );
            }
            self.counters.segments_untouched += 1;
        }
        out
    }

    /// The holder confirms that record number `rec_seq` starts at `tcp_seq`.
    /// Decryption resumes at the next record boundary the stream reaches.
    pub fn resync(&mut self, tcp_seq: u32, rec_seq: u64) -> Result<(), ResyncError> {
        match &mut self.state {
            State::Searching(Search {
                follow: Some(f), ..
            }) if f.candidate == tcp_seq => {
                if f.confirmed.is_some() {
                    return Err(ResyncError::AlreadyConfirmed { tcp_seq });
                }
                f.confirmed = Some(rec_seq);
                Ok(())
            }
            _ => Err(ResyncError::UnknownCandidate { tcp_seq }),
        }
    }

    /// The holder says no record starts at `tcp_seq`: search again from the
    /// next segment on.
    pub fn resync_reject(&mut self, tcp_seq: u32) -> Result<(), ResyncError> {
        match &mut self.state {
            State::Searching(s) if s.follow.as_ref().is_some_and(|f| f.candidate == tcp_seq) => {
                *s = Search::default();
                Ok(())
            }
            _ => Err(ResyncError::UnknownCandidate { tcp_seq }),
        }
    }

    fn lose_sync(&mut self) {
        if self.in_sync() {
            self.counters.sync_losses += 1;
        }
    }

    /// In sync: decrypt `payload[from..]` record by record.
    fn sync_pass(&mut self, payload: &mut [u8], from: usize, auth_ok: &mut bool) -> Pass {
        let State::InSync(sync) = &mut self.state else {
            return Pass::Done;
        };
        let version = self.version;
        let ct_off = wire_tls::ciphertext_offset(version);
        let mut i = from;
        while i < payload.len() {
            let left = payload.len() - i;
            match &mut sync.cursor {
                Cursor::Prefix { buf, have } => {
                    // The header is checked as soon as it is whole, so that
                    // a bad one is given up on at once.
                    let want = if *have < HEADER_LEN {
                        HEADER_LEN
                    } else {
                        ct_off
                    };
                    let n = (want - *have).min(left);
                    buf[*have..*have + n].copy_from_slice(&payload[i..i + n]);
                    *have += n;
                    i += n;
                    if *have == HEADER_LEN && check_header(version, &buf[..HEADER_LEN]).is_err() {
                        // Search again from the byte after its start.
                        let at = (i + 1).saturating_sub(HEADER_LEN).max(from);
                        return Pass::LostSync { at };
                    }
                    if *have == ct_off {
                        sync.cursor = Cursor::Body(Box::new(open_record(
                            version,
                            &self.key,
                            &self.iv,
                            sync.next_rec_seq,
                            &buf[..ct_off],
                        )));
                        sync.next_rec_seq = sync.next_rec_seq.wrapping_add(1);
                    }
                }
                Cursor::Body(r) => {
                    let tag_off = r.total_len - TAG_LEN;
                    if r.seen < tag_off {
                        let n = (tag_off - r.seen).min(left);
                        let piece = &mut payload[i..i + n];
                        let ct_offset = r.seen - ct_off;
                        r.gcm.absorb(piece);
                        r.gcm.apply_keystream(ct_offset, piece);
                        self.decrypted.push(Decrypted {
                            nonce: *r.gcm.nonce(),
                            ct_offset,
                            start: i,
                            end: i + n,
                        });
                        r.seen += n;
                        i += n;
                    } else {
                        let have = r.seen - tag_off;
                        let n = (TAG_LEN - have).min(left);
                        r.tag[have..have + n].copy_from_slice(&payload[i..i + n]);
                        r.seen += n;
                        i += n;
                        if r.seen == r.total_len {
                            if r.gcm.verify(&r.tag) {
                                self.counters.records_decrypted += 1;
                            } else {
                                self.counters.auth_failures += 1;
                                *auth_ok = false;
                            }
                            sync.cursor = EMPTY_PREFIX;
                        }
                    }
                }
            }
        }
        Pass::Done
    }

    /// Searching: look for a candidate header in `payload[from..]` and
    /// follow the chain from it.
    fn search_pass(&mut self, seq: u32, payload: &[u8], from: usize, out: &mut RxOutcome) -> Pass {
        let State::Searching(s) = &mut self.state else {
            return Pass::Done;
        };
        let version = self.version;
        let mut i = from;
        loop {
            let Some(f) = &mut s.follow else {
                match scan(version, s, seq, payload, i) {
                    Some((candidate, body_len)) => {
                        out.resync_request = Some(candidate);
                        self.counters.resync_requests += 1;
                        s.carry_len = 0;
                        s.follow = Some(Follow {
                            candidate,
                            next_hdr: seq_add(candidate, HEADER_LEN + body_len),
                            next_index: 1,
                            hdr: [0; HEADER_LEN],
                            have: 0,
                            confirmed: None,
                        });
                        continue;
                    }
                    None => return Pass::Done,
                }
            };
            let off = seq_diff(seq_add(f.next_hdr, f.have), seq);
            // The chain never points behind the stream position.
            debug_assert!(off >= 0);
            let off = off.max(0) as usize;
            if off >= payload.len() {
                return Pass::Done;
            }
            if f.have == 0 {
                if let Some(base) = f.confirmed {
                    return Pass::Synced {
                        at: off,
                        rec_seq: base.wrapping_add(f.next_index),
                    };
                }
            }
            let n = (HEADER_LEN - f.have).min(payload.len() - off);
            f.hdr[f.have..f.have + n].copy_from_slice(&payload[off..off + n]);
            f.have += n;
            if f.have < HEADER_LEN {
                return Pass::Done;
            }
            match check_header(version, &f.hdr) {
                Ok(h) => {
                    f.next_hdr = seq_add(f.next_hdr, HEADER_LEN + h.body_len);
                    f.next_index += 1;
                    f.have = 0;
                }
                Err(_) => {
                    // The chain breaks: the candidate was wrong (or the
                    // holder's answer came too late). Search after it.
                    let hdr_at = seq_diff(f.next_hdr, seq);
                    i = (hdr_at + 1).max(from as i64) as usize;
                    *s = Search::default();
                }
            }
        }
    }
}

/// Looks for a plausible record header in the carried bytes followed by
/// `payload[from..]`: type 23, version 0x0303, a body length a protected
/// record of this version can have (at least its overhead, at most
/// `MAX_CIPHERTEXT`). Returns its sequence number and body length, or
/// carries the last bytes over to the next segment.
fn scan(
    version: Version,
    s: &mut Search,
    seq: u32,
    payload: &[u8],
    from: usize,
) -> Option<(u32, usize)> {
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
    let [v_hi, v_lo] = wire_tls::LEGACY_VERSION.to_be_bytes();
    let mut k = 0;
    while k + HEADER_LEN <= total {
        if at(k) == u8::from(ContentType::ApplicationData) && at(k + 1) == v_hi && at(k + 2) == v_lo
        {
            let len = usize::from(u16::from_be_bytes([at(k + 3), at(k + 4)]));
            if len >= min_body(version) && len <= wire_tls::MAX_CIPHERTEXT {
                // k counts from the first carried byte, carry_len bytes
                // before payload[from].
                let pos = seq_add(seq, from + k).wrapping_sub(carry_len as u32);
                return Some((pos, len));
            }
        }
        k += 1;
    }
    let keep = total.min(HEADER_LEN - 1);
    let mut carry = [0u8; HEADER_LEN - 1];
    for (j, c) in carry[..keep].iter_mut().enumerate() {
        *c = at(total - keep + j);
    }
    s.carry = carry;
    s.carry_len = keep;
    None
}

/// The record whose prefix (header, TLS 1.2 explicit nonce) is `prefix`.
fn open_record(
    version: Version,
    key: &GcmKey,
    iv: &[u8; 12],
    rec_seq: u64,
    prefix: &[u8],
) -> RxRecord {
    let body_len = usize::from(u16::from_be_bytes([prefix[3], prefix[4]]));
    let content_type = ContentType::from(prefix[0]);
    let nonce = match version {
        Version::Tls13 => wire_tls::nonce(version, iv, rec_seq),
        Version::Tls12 => {
            let mut explicit = [0u8; wire_tls::EXPLICIT_NONCE_LEN];
            explicit.copy_from_slice(&prefix[HEADER_LEN..]);
            wire_tls::tls12_nonce_from_record(iv, &explicit)
        }
    };
    let aad = wire_tls::aad(version, rec_seq, content_type, body_len);
    RxRecord {
        total_len: HEADER_LEN + body_len,
        gcm: GcmRecord::new(key, &nonce, aad.as_ref()),
        seen: prefix.len(),
        tag: [0; TAG_LEN],
    }
}
