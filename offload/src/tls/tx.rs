//! TX: seal framed records in place as their segments leave.

use std::collections::VecDeque;
use std::fmt;

use capnet_wire::tcp::SeqNumber;
use capnet_wire::tls::{self as wire_tls, Version, TAG_LEN};

use super::{check_header, HeaderError, TlsParams};
use crate::gcm::{GcmKey, GcmRecord};

/// Header + TLS 1.2 explicit nonce: the bytes before the ciphertext.
const MAX_PREFIX: usize = wire_tls::HEADER_LEN + wire_tls::EXPLICIT_NONCE_LEN;

/// Why a segment cannot leave. The caller drops the frame: it may hold
/// cleartext. The engine's state is as it was before the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxError {
    /// New bytes start above the high-water mark: bytes in between were
    /// never seen, so the record chain is unknown from here.
    Gap { expected: u32, got: u32 },
    /// Retransmitted bytes of a record already forgotten (acked, and
    /// further behind than the stack's reach).
    Forgotten { seq: u32 },
    /// A header (or its explicit nonce) that is not a protected record.
    BadRecord { seq: u32, error: HeaderError },
    /// A TLS 1.2 explicit nonce other than the one for this record number.
    BadExplicitNonce { seq: u32, rec_seq: u64 },
    /// Retransmitted header or explicit nonce bytes that differ from the
    /// first transmission.
    RetransmitMismatch { seq: u32 },
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxError::Gap { expected, got } => {
                write!(f, "segment at {got} skips bytes from {expected} never seen")
            }
            TxError::Forgotten { seq } => {
                write!(f, "retransmission at {seq} of a record already forgotten")
            }
            TxError::BadRecord { seq, error } => write!(f, "record at {seq}: {error}"),
            TxError::BadExplicitNonce { seq, rec_seq } => write!(
                f,
                "record at {seq}: explicit nonce is not the one of record number {rec_seq}"
            ),
            TxError::RetransmitMismatch { seq } => {
                write!(
                    f,
                    "retransmitted record header at {seq} differs from the first transmission"
                )
            }
        }
    }
}

impl std::error::Error for TxError {}

/// What one segment went through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxOutcome {
    /// Bytes seen for the first time.
    pub new_bytes: usize,
    /// Bytes below the high-water mark, rebuilt from the cached state.
    pub retransmitted_bytes: usize,
    /// Bytes before the offload's start (sealed in software), untouched.
    pub passthrough_bytes: usize,
    /// Records whose last byte was in this segment (first transmission).
    pub records_sealed: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxCounters {
    pub records_sealed: u64,
    /// First-transmission bytes.
    pub bytes: u64,
    pub retransmitted_bytes: u64,
    pub passthrough_bytes: u64,
    /// Segments refused (the caller dropped them).
    pub dropped: u64,
}

#[derive(Clone, Debug)]
struct TxRecord {
    start: SeqNumber,
    prefix: [u8; MAX_PREFIX],
    total_len: usize,
    gcm: GcmRecord,
    /// Set when the first tag byte leaves; later copies come from here.
    tag: Option<[u8; TAG_LEN]>,
    /// Bytes of the record seen so far (first transmission).
    seen: usize,
    /// Where its body starts in the engine's `held` bytes.
    held_from: usize,
}

impl TxRecord {
    fn end(&self) -> SeqNumber {
        self.start + self.total_len
    }

    fn is_open(&self) -> bool {
        self.seen < self.total_len
    }

    /// Turns `chunk`, the record's bytes `rel..rel + chunk.len()`, into what
    /// goes on the wire. `first`: the bytes are new (in order); their
    /// plaintext is kept in `held.bytes` until the tag is made from all of
    /// it.
    fn seal(
        &mut self,
        ct_off: usize,
        rel: usize,
        chunk: &mut [u8],
        first: bool,
        held: &mut Held,
    ) -> Result<(), TxError> {
        let tag_off = self.total_len - TAG_LEN;
        if first && rel == ct_off && rel + chunk.len() == self.total_len {
            // The whole body and tag at hand: sealed in one pass.
            let (body, tag_out) = chunk.split_at_mut(tag_off - ct_off);
            if let Some(tag) = self.gcm.seal_whole(body) {
                tag_out.copy_from_slice(&tag);
                self.tag = Some(tag);
                return Ok(());
            }
        }
        let mut i = 0;
        while i < chunk.len() {
            let at = rel + i;
            if at < ct_off {
                // Only a retransmission reaches here: a first transmission's
                // prefix was checked as it was collected.
                let n = (ct_off - at).min(chunk.len() - i);
                if chunk[i..i + n] != self.prefix[at..at + n] {
                    return Err(TxError::RetransmitMismatch {
                        seq: (self.start + at).0,
                    });
                }
                i += n;
            } else if at < tag_off {
                let n = (tag_off - at).min(chunk.len() - i);
                let piece = &mut chunk[i..i + n];
                if first {
                    held.bytes.extend_from_slice(piece);
                }
                self.gcm.apply_keystream(at - ct_off, piece);
                i += n;
            } else {
                // In order, all of the body was held before the first tag
                // byte; a retransmitted tag byte left before.
                let tag = match self.tag {
                    Some(tag) => tag,
                    None => {
                        let tag = held.tag(&mut self.gcm, self.held_from);
                        self.tag = Some(tag);
                        tag
                    }
                };
                let n = (self.total_len - at).min(chunk.len() - i);
                chunk[i..i + n].copy_from_slice(&tag[at - tag_off..at - tag_off + n]);
                i += n;
            }
        }
        Ok(())
    }
}

/// The plaintext of the open record's body as it left (and, within one
/// call, of the record it closed): the tag is made from all of it at once
/// by ring's AES-GCM, several times cheaper than hashing each piece as it
/// passes. Tags are made from a copy, so that undoing a call only
/// truncates.
#[derive(Debug, Default)]
struct Held {
    bytes: Vec<u8>,
    scratch: Vec<u8>,
}

impl Held {
    /// The tag of the record whose whole body is `bytes[from..]`.
    fn tag(&mut self, gcm: &mut GcmRecord, from: usize) -> [u8; TAG_LEN] {
        self.scratch.clear();
        self.scratch.extend_from_slice(&self.bytes[from..]);
        if let Some(tag) = gcm.seal_whole(&mut self.scratch) {
            return tag;
        }
        // An AAD too long to keep (never TLS's): hashed here instead.
        gcm.apply_keystream(0, &mut self.scratch);
        gcm.absorb(&self.scratch);
        gcm.tag()
    }

    /// Forgets what no open record needs: keeps `bytes[from..]` (the open
    /// record's, which then starts at 0), or nothing.
    fn keep_from(&mut self, from: Option<usize>) {
        match from {
            Some(from) => {
                self.bytes.drain(..from);
            }
            None => self.bytes.clear(),
        }
    }
}

/// The prefix of the next record, while it is being collected.
#[derive(Clone, Copy, Debug)]
struct Prefix {
    buf: [u8; MAX_PREFIX],
    have: usize,
}

/// State to put back when a segment is refused half way.
struct Undo {
    hwm: SeqNumber,
    next_rec_seq: u64,
    prefix: Prefix,
    records: usize,
    open: Option<TxRecord>,
    held: usize,
}

/// The TX half of a TLS offload context.
#[derive(Debug)]
pub struct TlsTxEngine {
    version: Version,
    key: GcmKey,
    iv: [u8; 12],
    /// Sequence number of the first byte never seen.
    hwm: SeqNumber,
    /// Where the offload started. Bytes before it were sealed in software
    /// and pass untouched, until an ack passes it (after that, a byte
    /// before the first remembered record is one that was forgotten).
    start: Option<SeqNumber>,
    next_rec_seq: u64,
    /// Collected when no record is open.
    prefix: Prefix,
    /// In stream order; the last may be open.
    records: VecDeque<TxRecord>,
    /// How far behind the high-water mark the stack may still retransmit
    /// (0: unknown).
    reach: u32,
    held: Held,
    counters: TxCounters,
}

impl TlsTxEngine {
    pub fn new(params: TlsParams) -> TlsTxEngine {
        TlsTxEngine {
            version: params.version,
            key: params.key,
            iv: params.iv,
            hwm: SeqNumber(params.tcp_seq),
            start: Some(SeqNumber(params.tcp_seq)),
            next_rec_seq: params.rec_seq,
            prefix: Prefix {
                buf: [0; MAX_PREFIX],
                have: 0,
            },
            records: VecDeque::new(),
            reach: 0,
            held: Held::default(),
            counters: TxCounters::default(),
        }
    }

    /// Keeps what a retransmission up to `reach` bytes behind the
    /// high-water mark needs, whatever the wire acknowledged. The stack
    /// retransmits from what *it* saw acknowledged, and an ACK the NIC saw
    /// can be lost on its way up (a full ring, a dropped segment); `reach`
    /// is the flow's send buffer, beyond which the stack has nothing to
    /// retransmit. 0 forgets on the wire's ACKs alone.
    pub fn retaining(mut self, reach: u32) -> TlsTxEngine {
        // Beyond half the sequence space "behind" has no meaning.
        self.reach = reach.min(1 << 30);
        self
    }

    pub fn counters(&self) -> TxCounters {
        self.counters
    }

    /// Records remembered for retransmission.
    pub fn records_held(&self) -> usize {
        self.records.len()
    }

    /// The sequence number of the next new byte.
    pub fn high_water_mark(&self) -> u32 {
        self.hwm.0
    }

    /// The record number the next record that starts will get.
    pub fn next_rec_seq(&self) -> u64 {
        self.next_rec_seq
    }

    /// Seals in place the framed records of one outgoing segment whose
    /// first payload byte has sequence `seq`. On error the caller must drop
    /// the frame; the engine is left as before the call.
    pub fn process(&mut self, seq: u32, payload: &mut [u8]) -> Result<TxOutcome, TxError> {
        if payload.is_empty() {
            return Ok(TxOutcome::default());
        }
        let ahead = SeqNumber(seq) - self.hwm;
        if ahead > 0 {
            self.counters.dropped += 1;
            return Err(TxError::Gap {
                expected: self.hwm.0,
                got: seq,
            });
        }
        if ahead == i32::MIN {
            // Half the sequence space behind reads as behind both ways
            // round (the distances below would wrap), and no byte that old
            // is remembered.
            self.counters.dropped += 1;
            return Err(TxError::Forgotten { seq });
        }
        let old_len = (ahead.unsigned_abs() as usize).min(payload.len());
        let (old, new) = payload.split_at_mut(old_len);
        let mut out = TxOutcome::default();
        if let Err(e) = self.retransmit(SeqNumber(seq), old, &mut out) {
            // Nothing changed yet: a retransmission only reads the state.
            self.counters.dropped += 1;
            return Err(e);
        }
        if !new.is_empty() {
            // Only the open record's body is held across calls.
            let open = self.records.back_mut().filter(|r| r.is_open());
            self.held
                .keep_from(open.map(|r| std::mem::take(&mut r.held_from)));
            let undo = self.undo_point();
            if let Err(e) = self.transmit(new, &mut out) {
                self.undo(undo);
                self.counters.dropped += 1;
                return Err(e);
            }
        }
        let c = &mut self.counters;
        c.records_sealed += out.records_sealed as u64;
        c.bytes += out.new_bytes as u64;
        c.retransmitted_bytes += out.retransmitted_bytes as u64;
        c.passthrough_bytes += out.passthrough_bytes as u64;
        Ok(out)
    }

    /// The peer acked everything before `seq`: forget the records that end
    /// at or before it and beyond the stack's reach (they will never be
    /// retransmitted).
    pub fn acked(&mut self, seq: u32) {
        let seq = SeqNumber(seq);
        // An ack beyond what left is bogus: it must not free anything.
        if seq.gt(self.hwm) {
            return;
        }
        let reach_floor = self.hwm - self.reach;
        let seq = if self.reach > 0 && reach_floor.lt(seq) {
            reach_floor
        } else {
            seq
        };
        if self.start.is_some_and(|s| seq.ge(s)) {
            self.start = None;
        }
        while self
            .records
            .front()
            .is_some_and(|r| !r.is_open() && r.end().le(seq))
        {
            self.records.pop_front();
        }
    }

    fn ct_off(&self) -> usize {
        wire_tls::ciphertext_offset(self.version)
    }

    /// Bytes below the high-water mark: rebuilt from the remembered records.
    fn retransmit(
        &mut self,
        seq: SeqNumber,
        data: &mut [u8],
        out: &mut TxOutcome,
    ) -> Result<(), TxError> {
        let ct_off = self.ct_off();
        let mut i = 0;
        while i < data.len() {
            let pos = seq + i;
            let left = data.len() - i;
            if let Some(s) = self.start {
                let before = s - pos;
                if before > 0 {
                    let n = (before as usize).min(left);
                    out.passthrough_bytes += n;
                    i += n;
                    continue;
                }
            }
            // The first record that ends after pos.
            let idx = self.records.partition_point(|r| r.end().le(pos));
            let n = match self.records.get_mut(idx) {
                Some(r) => {
                    let rel = pos - r.start;
                    if rel < 0 {
                        return Err(TxError::Forgotten { seq: pos.0 });
                    }
                    let rel = rel as usize;
                    let n = (r.total_len - rel).min(left);
                    r.seal(ct_off, rel, &mut data[i..i + n], false, &mut self.held)?;
                    n
                }
                None => {
                    // The prefix being collected at the high-water mark.
                    let p = &self.prefix;
                    let rel = p.have as i64 - i64::from(self.hwm - pos);
                    if rel < 0 {
                        return Err(TxError::Forgotten { seq: pos.0 });
                    }
                    let rel = rel as usize;
                    let n = (p.have - rel).min(left);
                    if data[i..i + n] != p.buf[rel..rel + n] {
                        return Err(TxError::RetransmitMismatch { seq: pos.0 });
                    }
                    n
                }
            };
            out.retransmitted_bytes += n;
            i += n;
        }
        Ok(())
    }

    /// Bytes at the high-water mark, in order.
    fn transmit(&mut self, data: &mut [u8], out: &mut TxOutcome) -> Result<(), TxError> {
        let ct_off = self.ct_off();
        let mut i = 0;
        while i < data.len() {
            let left = data.len() - i;
            match self.records.back_mut().filter(|r| r.is_open()) {
                Some(r) => {
                    let n = (r.total_len - r.seen).min(left);
                    r.seal(ct_off, r.seen, &mut data[i..i + n], true, &mut self.held)?;
                    r.seen += n;
                    if !r.is_open() {
                        out.records_sealed += 1;
                    }
                    i += n;
                }
                None => {
                    let p = &mut self.prefix;
                    let n = (ct_off - p.have).min(left);
                    p.buf[p.have..p.have + n].copy_from_slice(&data[i..i + n]);
                    p.have += n;
                    i += n;
                    if p.have == ct_off {
                        let start = self.hwm + i - ct_off;
                        self.open_record(start)?;
                    }
                }
            }
        }
        self.hwm += data.len();
        out.new_bytes += data.len();
        Ok(())
    }

    /// The prefix is complete: check it and open the record.
    fn open_record(&mut self, start: SeqNumber) -> Result<(), TxError> {
        let ct_off = self.ct_off();
        let prefix = self.prefix.buf;
        let hdr = check_header(self.version, &prefix[..wire_tls::HEADER_LEN]).map_err(|error| {
            TxError::BadRecord {
                seq: start.0,
                error,
            }
        })?;
        let rec_seq = self.next_rec_seq;
        if self.version == Version::Tls12
            && prefix[wire_tls::HEADER_LEN..ct_off]
                != wire_tls::tls12_explicit_nonce(&self.iv, rec_seq)
        {
            return Err(TxError::BadExplicitNonce {
                seq: start.0,
                rec_seq,
            });
        }
        let nonce = wire_tls::nonce(self.version, &self.iv, rec_seq);
        let aad = wire_tls::aad(self.version, rec_seq, hdr.content_type, hdr.body_len);
        self.records.push_back(TxRecord {
            start,
            prefix,
            total_len: wire_tls::HEADER_LEN + hdr.body_len,
            gcm: GcmRecord::new(&self.key, &nonce, aad.as_ref()),
            tag: None,
            seen: ct_off,
            held_from: self.held.bytes.len(),
        });
        self.next_rec_seq = rec_seq.wrapping_add(1);
        self.prefix.have = 0;
        Ok(())
    }

    fn undo_point(&self) -> Undo {
        Undo {
            hwm: self.hwm,
            next_rec_seq: self.next_rec_seq,
            prefix: self.prefix,
            records: self.records.len(),
            open: self.records.back().filter(|r| r.is_open()).cloned(),
            held: self.held.bytes.len(),
        }
    }

    fn undo(&mut self, u: Undo) {
        self.hwm = u.hwm;
        self.next_rec_seq = u.next_rec_seq;
        self.prefix = u.prefix;
        self.records.truncate(u.records);
        self.held.bytes.truncate(u.held);
        if let Some(open) = u.open {
            if let Some(last) = self.records.back_mut() {
                *last = open;
            }
        }
    }
}
