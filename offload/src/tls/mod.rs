//! The NIC's TLS engine, after the kTLS device-offload contract.
//!
//! - TX ([`TlsTxEngine`]): the holder (tlsd) writes *framed* records into the
//!   TCP stream: real header, TLS 1.2 explicit nonce, plaintext where the
//!   ciphertext goes, [`TAG_LEN`] bytes of room for the tag. The engine seals
//!   them in place, segment by segment, into exactly the bytes a whole-record
//!   software seal gives; retransmissions leave byte-identical.
//! - RX ([`TlsRxEngine`]): the engine opens records in place as segments
//!   arrive in order, says per segment whether every byte in it is
//!   plaintext, and after a loss finds its way back through a resync
//!   request that the holder answers.
//!
//! Both follow the record chain by header lengths from a known start (TCP
//! sequence of record `rec_seq`); TCP sequence numbers compare mod 2^32.
//! RX follows it with the generic stream tracker ([`crate::stream`]), told
//! the record layout by `Records`.

use capnet_wire::tls::{self as wire_tls, ContentType, Record, RecordHeader, Version};

use crate::gcm::GcmKey;
use crate::stream::Framing;

mod rx;
mod tx;

pub use crate::stream::ResyncError;
pub use capnet_wire::tls::TAG_LEN;
pub use rx::{RxCounters, RxOutcome, TlsRxEngine};
pub use tx::{TlsTxEngine, TxCounters, TxError, TxOutcome};

/// What both directions start from.
#[derive(Clone, Debug)]
pub struct TlsParams {
    pub version: Version,
    pub key: GcmKey,
    /// The 12-byte IV as rustls extracts it (TLS 1.2: salt || 8 bytes from
    /// which the explicit nonces derive).
    pub iv: [u8; 12],
    /// Stream position of the first byte of record `rec_seq`.
    pub tcp_seq: u32,
    pub rec_seq: u64,
}

/// Why a record header (and, on TX, its explicit nonce) is not acceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Does not parse: bad version or a length above the maximum.
    Header(wire_tls::Error),
    /// TLS 1.3 protects only type 23; TLS 1.2 protects 21, 22 and 23.
    ContentType(u8),
    /// A body too short for the explicit nonce, inner type and tag.
    TooShort(usize),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Header(e) => e.fmt(f),
            HeaderError::ContentType(t) => write!(f, "content type {t} cannot be protected"),
            HeaderError::TooShort(n) => write!(f, "record body of {n} bytes is too short"),
        }
    }
}

/// The smallest body of a protected record: TLS 1.2 = explicit nonce + tag;
/// TLS 1.3 = inner content type + tag.
fn min_body(version: Version) -> usize {
    wire_tls::overhead(version) - wire_tls::HEADER_LEN
}

/// Checks the 5 header bytes of a protected record.
fn check_header(version: Version, hdr: &[u8]) -> Result<RecordHeader, HeaderError> {
    let h = RecordHeader::parse(hdr).map_err(HeaderError::Header)?;
    let ok_type = matches!(
        (version, h.content_type),
        (_, ContentType::ApplicationData)
            | (Version::Tls12, ContentType::Alert | ContentType::Handshake)
    );
    if !ok_type {
        return Err(HeaderError::ContentType(h.content_type.into()));
    }
    if h.body_len < min_body(version) {
        return Err(HeaderError::TooShort(h.body_len));
    }
    Ok(h)
}

/// The protected records of one direction, as the stream tracker sees them.
#[derive(Clone, Copy, Debug)]
struct Records {
    version: Version,
}

impl Framing for Records {
    fn header_len(&self) -> usize {
        wire_tls::HEADER_LEN
    }

    /// The header and, in TLS 1.2, the explicit nonce: what opening a
    /// record needs.
    fn prefix_len(&self) -> usize {
        wire_tls::ciphertext_offset(self.version)
    }

    fn record_len(&self, hdr: &[u8]) -> Option<usize> {
        let h = check_header(self.version, hdr).ok()?;
        Some(wire_tls::HEADER_LEN + h.body_len)
    }

    /// Only what most records of a protected stream look like: type 23,
    /// version 0x0303, a body length a protected record of this version
    /// can have (at least its overhead, at most `MAX_CIPHERTEXT`).
    fn candidate_len(&self, hdr: &[u8]) -> Option<usize> {
        let r = Record::new_unchecked(hdr);
        let plausible = r.content_type() == ContentType::ApplicationData
            && r.legacy_version() == wire_tls::LEGACY_VERSION
            && (min_body(self.version)..=wire_tls::MAX_CIPHERTEXT).contains(&r.body_len());
        plausible.then(|| r.total_len())
    }
}
