//! RX: open records in place as in-order segments arrive; after a loss,
//! find a record boundary again with the holder's help.
//!
//! Where the records are is the stream tracker's ([`crate::stream`]): in
//! sync, it hands over each record's prefix (header, TLS 1.2 explicit
//! nonce) and then its bytes; after a gap or a bad header it searches for a
//! plausible header, asks the holder once about it (`resync_request`), and
//! resumes at the next record boundary once the holder confirms the
//! candidate's record number ([`TlsRxEngine::resync`]). Segments pass
//! untouched meanwhile.
//!
//! What is TLS is here: bodies are decrypted as they pass (GHASH over the
//! ciphertext first); a segment is marked decrypted when every record piece
//! in it authenticated or still waits for its tag. A failed tag restores the
//! whole segment to ciphertext and the engine goes on with the next record.

use std::fmt;
use std::ops::Range;

use capnet_wire::tcp::SeqNumber;
use capnet_wire::tls::{self as wire_tls, ContentType, Record, Version, HEADER_LEN, TAG_LEN};

use super::{Records, TlsParams};
use crate::gcm::{self, GcmKey, GcmRecord};
use crate::stream::{Event, ResyncError, Tracker};

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

/// The record being opened: from its prefix to its last byte.
#[derive(Debug)]
struct RxRecord {
    gcm: GcmRecord,
    tag: [u8; TAG_LEN],
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
    key: GcmKey,
    iv: [u8; 12],
    stream: Tracker<Records>,
    record: Option<RxRecord>,
    /// Reused across calls so that the fast path does not allocate.
    decrypted: Vec<Decrypted>,
    /// A whole record's ciphertext while it is opened in one pass.
    scratch: Vec<u8>,
    /// The open record's ciphertext so far: its tag is checked over it in
    /// one pass when the tag is in (ring's AES-GCM), while its pieces are
    /// decrypted as they pass (CTR only), several times cheaper than
    /// hashing each piece as it passes. At most one record's body.
    held: Vec<u8>,
    /// The engine's own; the stream's are the tracker's.
    counters: RxCounters,
}

impl fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Decrypted({}..{})", self.start, self.end)
    }
}

impl TlsRxEngine {
    pub fn new(params: TlsParams) -> TlsRxEngine {
        let records = Records {
            version: params.version,
        };
        TlsRxEngine {
            key: params.key,
            iv: params.iv,
            stream: Tracker::new(records, SeqNumber(params.tcp_seq), params.rec_seq),
            record: None,
            decrypted: Vec::new(),
            scratch: Vec::new(),
            held: Vec::new(),
            counters: RxCounters::default(),
        }
    }

    pub fn counters(&self) -> RxCounters {
        let s = self.stream.counters();
        RxCounters {
            resync_requests: s.resync_requests,
            resyncs: s.resyncs,
            sync_losses: s.sync_losses,
            ..self.counters
        }
    }

    pub fn in_sync(&self) -> bool {
        self.stream.in_sync()
    }

    /// The next in-order sequence number.
    pub fn expected(&self) -> u32 {
        self.stream.expected().0
    }

    /// Processes one received segment whose first payload byte has sequence
    /// `seq`, decrypting it in place when it can.
    pub fn process(&mut self, seq: u32, payload: &mut [u8]) -> RxOutcome {
        let mut out = RxOutcome::default();
        if payload.is_empty() {
            return out;
        }
        let Some(from) = self.stream.arrive(SeqNumber(seq), payload.len()) else {
            // A retransmission or duplicate of bytes already handed up.
            self.counters.segments_untouched += 1;
            return out;
        };
        if !self.stream.in_sync() {
            self.record = None;
        }
        // Whether every byte of the segment went through the in-sync path:
        // not when old bytes overlap (only the new part is processed).
        let mut whole = from == 0;
        let mut auth_ok = true;
        self.decrypted.clear();
        while let Some(event) = self.stream.next(payload) {
            match event {
                Event::Start { index, len, prefix } => {
                    let version = self.stream.framing().version;
                    self.record = Some(open_record(
                        version, &self.key, &self.iv, index, len, &prefix,
                    ));
                    self.held.clear();
                }
                Event::Body { range, at, len } => {
                    auth_ok &= self.body(payload, range, at, len);
                }
                Event::Lost => {
                    self.record = None;
                    whole = false;
                }
                Event::Synced { at } => whole &= at == 0,
                Event::Candidate { seq } => out.resync_request = Some(seq.0),
            }
        }
        whole &= self.stream.in_sync();
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
        self.stream.confirm(SeqNumber(tcp_seq), rec_seq)
    }

    /// The holder says no record starts at `tcp_seq`: search again from the
    /// next segment on.
    pub fn resync_reject(&mut self, tcp_seq: u32) -> Result<(), ResyncError> {
        self.stream.reject(SeqNumber(tcp_seq))
    }

    /// `payload[range]`, bytes `at..` of the open record of `len` bytes:
    /// decrypts the ciphertext, collects the tag and checks it at the end.
    /// False when the record's tag was wrong.
    fn body(&mut self, payload: &mut [u8], range: Range<usize>, at: usize, len: usize) -> bool {
        let Some(r) = &mut self.record else {
            // The tracker opens every record it hands bytes of.
            debug_assert!(false, "record bytes without a record");
            return true;
        };
        let ct_off = wire_tls::ciphertext_offset(self.stream.framing().version);
        let tag_off = len - TAG_LEN;
        if at == ct_off && range.len() == len - ct_off {
            // The whole body and tag at hand (a merged frame): opened and
            // checked in one pass.
            let (body, tag) = payload[range.clone()].split_at_mut(tag_off - ct_off);
            let tag: &[u8; TAG_LEN] = (&*tag).try_into().expect("TAG_LEN bytes");
            if let Some(ok) = r.gcm.open_whole(body, tag, &mut self.scratch) {
                if ok {
                    self.decrypted.push(Decrypted {
                        nonce: *r.gcm.nonce(),
                        ct_offset: 0,
                        start: range.start,
                        end: range.start + body.len(),
                    });
                    self.counters.records_decrypted += 1;
                } else {
                    self.counters.auth_failures += 1;
                }
                self.record = None;
                return ok;
            }
        }
        let (mut i, mut at) = (range.start, at);
        if at < tag_off {
            let n = (tag_off - at).min(range.end - i);
            let piece = &mut payload[i..i + n];
            let ct_offset = at - ct_off;
            self.held.extend_from_slice(piece);
            r.gcm.apply_keystream(ct_offset, piece);
            self.decrypted.push(Decrypted {
                nonce: *r.gcm.nonce(),
                ct_offset,
                start: i,
                end: i + n,
            });
            i += n;
            at += n;
        }
        if i == range.end {
            return true;
        }
        let have = at - tag_off;
        let n = range.end - i;
        r.tag[have..have + n].copy_from_slice(&payload[i..range.end]);
        if at + n < len {
            return true;
        }
        let ok = match r.gcm.check_whole(&mut self.held, &r.tag) {
            Some(ok) => ok,
            // An AAD too long to keep (never TLS's): hashed here instead.
            None => {
                r.gcm.absorb(&self.held);
                r.gcm.verify(&r.tag)
            }
        };
        self.held.clear();
        if ok {
            self.counters.records_decrypted += 1;
        } else {
            self.counters.auth_failures += 1;
        }
        self.record = None;
        ok
    }
}

/// The record of `len` bytes whose prefix (header, TLS 1.2 explicit nonce)
/// is `prefix`.
fn open_record(
    version: Version,
    key: &GcmKey,
    iv: &[u8; 12],
    rec_seq: u64,
    len: usize,
    prefix: &[u8],
) -> RxRecord {
    let body_len = len - HEADER_LEN;
    let content_type: ContentType = Record::new_unchecked(prefix).content_type();
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
        gcm: GcmRecord::new(key, &nonce, aad.as_ref()),
        tag: [0; TAG_LEN],
    }
}
