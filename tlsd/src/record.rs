//! tlsd's record layer after the handshake: the software engine that seals
//! and opens records (ring's AEADs), the device framing that a NIC offload
//! context seals, and the reader that cuts a TCP stream into records and
//! remembers which bytes the NIC already decrypted.
//!
//! Every nonce and AAD comes from [`capnet_wire::tls`], the module the NIC
//! engine uses too, so that the two engines agree byte for byte.
//!
//! - [`RecordSealer`]: one direction out: `seal` (software) or
//!   `frame_for_device` (the NIC seals); sequence number and key limits.
//! - [`RecordOpener`]: one direction in: `open` (software), `accept_decrypted`
//!   (the NIC did it all), `open_partly_decrypted` (re-encrypt what the NIC
//!   decrypted, then open: Linux's `tls_device_reencrypt`).
//! - [`RecordReader`]: whole records out of a byte stream, with the NIC's
//!   per-frame "decrypted" marks carried over to each record.

use core::fmt;
use core::ops::Range;

use capnet_offload::gcm::{GcmKey, GcmRecord};
use capnet_wire::tls::{
    self, ContentType, RecordHeader, Version, EXPLICIT_NONCE_LEN, HEADER_LEN, MAX_PLAINTEXT,
    TAG_LEN,
};
use ring::aead;
use zeroize::Zeroize;

use crate::alert::AlertDescription;

/// rustls's SEQ_SOFT_LIMIT: where a key is retired whatever its cipher.
const SEQ_SOFT_LIMIT: u64 = 0x7fff_ffff_ffff_0000;
/// rustls's SEQ_HARD_LIMIT: the last sequence numbers are never used, so
/// that the counter cannot wrap.
const SEQ_HARD_LIMIT: u64 = 0xffff_ffff_ffff_fffe;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cipher {
    Aes128Gcm,
    Aes256Gcm,
    /// Software only: no NIC engine does ChaCha20-Poly1305.
    Chacha20Poly1305,
}

impl Cipher {
    pub fn key_len(self) -> usize {
        match self {
            Cipher::Aes128Gcm => 16,
            Cipher::Aes256Gcm | Cipher::Chacha20Poly1305 => 32,
        }
    }

    /// Whether a NIC offload context can take records of this cipher.
    pub fn offloadable(self) -> bool {
        matches!(self, Cipher::Aes128Gcm | Cipher::Aes256Gcm)
    }

    /// Records one key may seal (rustls's `confidentiality_limit`): for
    /// AES-GCM RFC 8446 5.5's 2^24.5, rounded down as rustls does;
    /// ChaCha20-Poly1305 has none worth counting.
    pub fn confidentiality_limit(self) -> u64 {
        match self {
            Cipher::Aes128Gcm | Cipher::Aes256Gcm => 1 << 24,
            Cipher::Chacha20Poly1305 => u64::MAX,
        }
    }

    fn algorithm(self) -> &'static aead::Algorithm {
        match self {
            Cipher::Aes128Gcm => &aead::AES_128_GCM,
            Cipher::Aes256Gcm => &aead::AES_256_GCM,
            Cipher::Chacha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }
}

/// One direction's record protection, as rustls's extracted secrets give it.
/// The key is zeroed on drop and never printed.
#[derive(Clone)]
pub struct TrafficKeys {
    pub version: Version,
    pub cipher: Cipher,
    pub key: Vec<u8>,
    /// The 12-byte IV rustls extracts (TLS 1.2 AES-GCM: salt || 8 bytes
    /// from which the explicit nonce is derived).
    pub iv: [u8; 12],
}

impl TrafficKeys {
    pub fn new(version: Version, cipher: Cipher, key: &[u8], iv: [u8; 12]) -> TrafficKeys {
        TrafficKeys {
            version,
            cipher,
            key: key.to_vec(),
            iv,
        }
    }
}

impl Drop for TrafficKeys {
    fn drop(&mut self) {
        self.key.zeroize();
        self.iv.zeroize();
    }
}

impl fmt::Debug for TrafficKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrafficKeys")
            .field("version", &self.version)
            .field("cipher", &self.cipher)
            .field("key", &format_args!("<{} bytes redacted>", self.key.len()))
            .finish_non_exhaustive()
    }
}

/// Everything that can go wrong with a record; [`alert`](Self::alert) is what
/// tlsd tells the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// The record did not authenticate (wrong key, sequence number, or bytes
    /// changed on the way), or is too short to carry a tag.
    BadRecordMac,
    /// A record header announced a body above `MAX_CIPHERTEXT`.
    RecordOverflow(usize),
    /// An authenticated record's plaintext is above 2^14 (TLS 1.3: its inner
    /// plaintext above 2^14 + 1).
    PlaintextOverflow(usize),
    /// A record header with a version that is not TLS.
    BadVersion(u16),
    Decode(&'static str),
    UnexpectedMessage(&'static str),
    /// A record type that has no business after the handshake.
    UnexpectedContentType(ContentType),
    /// The NIC does not do this cipher (device framing, device marks).
    UnsupportedForDevice(Cipher),
    /// This key has sealed or opened all the records it may.
    SequenceExhausted,
    /// The caller asked to seal more than one record holds.
    PlaintextTooLong(usize),
    /// TLS 1.2 records carry no padding; TLS 1.3 padding must fit the record.
    BadPadding(usize),
    BadKey {
        cipher: Cipher,
        len: usize,
    },
    /// New keys for a different version or cipher, or a TLS 1.2 key update.
    KeyUpdateMismatch,
    /// Caller-supplied decrypted ranges that are unsorted or overlap.
    BadRanges,
}

impl RecordError {
    /// The alert tlsd sends for this error (RFC 8446 6.2).
    pub fn alert(&self) -> AlertDescription {
        match self {
            RecordError::BadRecordMac => AlertDescription::BadRecordMac,
            RecordError::RecordOverflow(_) | RecordError::PlaintextOverflow(_) => {
                AlertDescription::RecordOverflow
            }
            RecordError::BadVersion(_) | RecordError::Decode(_) => AlertDescription::DecodeError,
            RecordError::UnexpectedMessage(_) | RecordError::UnexpectedContentType(_) => {
                AlertDescription::UnexpectedMessage
            }
            // Our own limits and mistakes: the peer did nothing wrong.
            RecordError::UnsupportedForDevice(_)
            | RecordError::SequenceExhausted
            | RecordError::PlaintextTooLong(_)
            | RecordError::BadPadding(_)
            | RecordError::BadKey { .. }
            | RecordError::KeyUpdateMismatch
            | RecordError::BadRanges => AlertDescription::InternalError,
        }
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::BadRecordMac => f.write_str("record failed authentication"),
            RecordError::RecordOverflow(n) => write!(
                f,
                "record header announces {n} body bytes, above the limit of {}",
                tls::MAX_CIPHERTEXT
            ),
            RecordError::PlaintextOverflow(n) => write!(
                f,
                "record opened to {n} plaintext bytes, above the limit of {MAX_PLAINTEXT}"
            ),
            RecordError::BadVersion(v) => write!(f, "record header with version {v:#06x}"),
            RecordError::Decode(what) => write!(f, "malformed record: {what}"),
            RecordError::UnexpectedMessage(what) => write!(f, "unexpected message: {what}"),
            RecordError::UnexpectedContentType(t) => {
                write!(
                    f,
                    "record of content type {} after the handshake",
                    u8::from(*t)
                )
            }
            RecordError::UnsupportedForDevice(c) => {
                write!(f, "{c:?} records cannot be offloaded to the NIC")
            }
            RecordError::SequenceExhausted => {
                f.write_str("record sequence number at its limit for this key")
            }
            RecordError::PlaintextTooLong(n) => write!(
                f,
                "{n} plaintext bytes do not fit one record (at most {MAX_PLAINTEXT})"
            ),
            RecordError::BadPadding(n) => write!(f, "{n} bytes of padding do not fit this record"),
            RecordError::BadKey { cipher, len } => write!(
                f,
                "{len}-byte key for {cipher:?} (needs {})",
                cipher.key_len()
            ),
            RecordError::KeyUpdateMismatch => {
                f.write_str("key update with another version or cipher, or under TLS 1.2")
            }
            RecordError::BadRanges => f.write_str("decrypted ranges unsorted or overlapping"),
        }
    }
}

impl std::error::Error for RecordError {}

impl From<tls::Error> for RecordError {
    fn from(e: tls::Error) -> Self {
        match e {
            tls::Error::Truncated => RecordError::Decode("truncated record"),
            tls::Error::BadVersion(v) => RecordError::BadVersion(v),
            tls::Error::Overflow(n) => RecordError::RecordOverflow(n),
        }
    }
}

/// Where a protocol version and cipher put things in a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// `[hdr][ciphertext of plaintext || type || padding][tag]`.
    Tls13,
    /// `[hdr][explicit nonce 8][ciphertext][tag]` (RFC 5288).
    Tls12Gcm,
    /// `[hdr][ciphertext][tag]`, nonce as TLS 1.3 (RFC 7905).
    Tls12Chacha,
}

impl Framing {
    fn new(version: Version, cipher: Cipher) -> Framing {
        match (version, cipher) {
            (Version::Tls13, _) => Framing::Tls13,
            (Version::Tls12, Cipher::Chacha20Poly1305) => Framing::Tls12Chacha,
            (Version::Tls12, _) => Framing::Tls12Gcm,
        }
    }

    fn explicit_nonce_len(self) -> usize {
        match self {
            Framing::Tls12Gcm => EXPLICIT_NONCE_LEN,
            Framing::Tls13 | Framing::Tls12Chacha => 0,
        }
    }

    fn ciphertext_offset(self) -> usize {
        HEADER_LEN + self.explicit_nonce_len()
    }

    /// The shortest body that can authenticate. (A TLS 1.3 body of just a
    /// tag authenticates, and then fails for having no content type.)
    fn min_body(self) -> usize {
        self.explicit_nonce_len() + TAG_LEN
    }

    /// The nonce for sealing record `seq` (TLS 1.2 AES-GCM opens with the
    /// explicit nonce the record carries instead).
    fn nonce(self, iv: &[u8; 12], seq: u64) -> [u8; 12] {
        match self {
            Framing::Tls13 => tls::nonce(Version::Tls13, iv, seq),
            Framing::Tls12Gcm => tls::nonce(Version::Tls12, iv, seq),
            // RFC 7905: iv XOR padded seq, TLS 1.3's construction.
            Framing::Tls12Chacha => tls::nonce(Version::Tls13, iv, seq),
        }
    }

    fn aad(self, seq: u64, outer: ContentType, body_len: usize) -> tls::Aad {
        match self {
            Framing::Tls13 => tls::aad(Version::Tls13, seq, outer, body_len),
            Framing::Tls12Gcm => tls::aad(Version::Tls12, seq, outer, body_len),
            // TLS 1.2's AAD with the plaintext length; the shared function
            // derives that from a body with an explicit nonce, so it is told
            // the length such a body would have.
            Framing::Tls12Chacha => {
                tls::aad(Version::Tls12, seq, outer, body_len + EXPLICIT_NONCE_LEN)
            }
        }
    }
}

fn new_key(keys: &TrafficKeys) -> Result<aead::LessSafeKey, RecordError> {
    let bad = RecordError::BadKey {
        cipher: keys.cipher,
        len: keys.key.len(),
    };
    if keys.key.len() != keys.cipher.key_len() {
        return Err(bad);
    }
    let unbound = aead::UnboundKey::new(keys.cipher.algorithm(), &keys.key).map_err(|_| bad)?;
    Ok(aead::LessSafeKey::new(unbound))
}

/// Seals one direction's records, from sequence number `seq` on.
pub struct RecordSealer {
    key: aead::LessSafeKey,
    iv: [u8; 12],
    version: Version,
    cipher: Cipher,
    framing: Framing,
    seq: u64,
}

impl fmt::Debug for RecordSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordSealer")
            .field("version", &self.version)
            .field("cipher", &self.cipher)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl RecordSealer {
    pub fn new(keys: TrafficKeys, seq: u64) -> Result<RecordSealer, RecordError> {
        Ok(RecordSealer {
            key: new_key(&keys)?,
            iv: keys.iv,
            version: keys.version,
            cipher: keys.cipher,
            framing: Framing::new(keys.version, keys.cipher),
            seq,
        })
    }

    /// The sequence number of the next record.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// The sequence number past the last record this key may seal: TLS 1.3
    /// renews keys (KeyUpdate), so only the counter limits it; TLS 1.2 has
    /// no key update, so the cipher's confidentiality limit does.
    fn hard_limit(&self) -> u64 {
        match self.version {
            Version::Tls13 => SEQ_HARD_LIMIT,
            Version::Tls12 => self.cipher.confidentiality_limit().min(SEQ_SOFT_LIMIT),
        }
    }

    /// Records that [`seal`](Self::seal) will still accept under this key.
    pub fn records_left(&self) -> u64 {
        self.hard_limit().saturating_sub(self.seq)
    }

    /// TLS 1.3: the next record is the last the key may seal within its
    /// confidentiality limit; make it a KeyUpdate, then
    /// [`update_keys`](Self::update_keys). (As rustls: at
    /// `min(confidentiality_limit, SEQ_SOFT_LIMIT)`.) Never true for TLS 1.2,
    /// which must close instead: see [`exhausted`](Self::exhausted).
    pub fn needs_key_update(&self) -> bool {
        let limit = self.cipher.confidentiality_limit().min(SEQ_SOFT_LIMIT);
        self.version == Version::Tls13 && self.seq.saturating_add(1) >= limit
    }

    /// At most one more record may be sealed under this key: make it
    /// close_notify. (TLS 1.2 reaches this at the confidentiality limit; TLS
    /// 1.3 only if it ignored [`needs_key_update`](Self::needs_key_update).)
    pub fn exhausted(&self) -> bool {
        self.records_left() <= 1
    }

    /// TLS 1.3 KeyUpdate: the next record is sealed with `keys`, as record 0.
    pub fn update_keys(&mut self, keys: TrafficKeys) -> Result<(), RecordError> {
        if self.version != Version::Tls13
            || keys.version != self.version
            || keys.cipher != self.cipher
        {
            return Err(RecordError::KeyUpdateMismatch);
        }
        self.key = new_key(&keys)?;
        self.iv = keys.iv;
        self.seq = 0;
        Ok(())
    }

    /// Appends one whole record carrying `plaintext` (at most 2^14 bytes) of
    /// type `ty` to `out`.
    pub fn seal(
        &mut self,
        ty: ContentType,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RecordError> {
        self.seal_padded(ty, plaintext, 0, out)
    }

    /// [`seal`](Self::seal) with `padding` zero bytes after the inner content
    /// type (TLS 1.3 only, RFC 8446 5.4).
    pub fn seal_padded(
        &mut self,
        ty: ContentType,
        plaintext: &[u8],
        padding: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), RecordError> {
        let (outer, body_len) = self.layout(ty, plaintext.len(), padding)?;
        let seq = self.seq;
        out.reserve(HEADER_LEN + body_len);
        let start = out.len();
        self.write_prefix(outer, body_len, out);
        let ct_start = out.len();
        out.extend_from_slice(plaintext);
        if self.framing == Framing::Tls13 {
            out.push(ty.into());
            out.resize(out.len() + padding, 0);
        }
        let nonce = aead::Nonce::assume_unique_for_key(self.framing.nonce(&self.iv, seq));
        let aad = self.framing.aad(seq, outer, body_len);
        let sealed =
            self.key
                .seal_in_place_separate_tag(nonce, aead::Aad::from(aad), &mut out[ct_start..]);
        match sealed {
            Ok(tag) => out.extend_from_slice(tag.as_ref()),
            Err(_) => {
                // Only an input ring cannot take, which `layout` rules out.
                out.truncate(start);
                return Err(RecordError::PlaintextTooLong(plaintext.len()));
            }
        }
        self.seq += 1;
        Ok(())
    }

    /// Appends one device-framed record (kTLS device offload): the real
    /// header, the explicit nonce (TLS 1.2), the plaintext where the
    /// ciphertext goes (TLS 1.3: plaintext || type) and TAG_LEN zero bytes
    /// for the tag. The NIC, told where record `seq` starts in the TCP
    /// stream, turns it into exactly what [`seal`](Self::seal) would have
    /// produced. AES-GCM only.
    pub fn frame_for_device(
        &mut self,
        ty: ContentType,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RecordError> {
        if !self.cipher.offloadable() {
            return Err(RecordError::UnsupportedForDevice(self.cipher));
        }
        let (outer, body_len) = self.layout(ty, plaintext.len(), 0)?;
        out.reserve(HEADER_LEN + body_len);
        self.write_prefix(outer, body_len, out);
        out.extend_from_slice(plaintext);
        if self.framing == Framing::Tls13 {
            out.push(ty.into());
        }
        out.extend_from_slice(&[0; TAG_LEN]);
        self.seq += 1;
        Ok(())
    }

    /// Checks a record of `len` plaintext bytes may be sealed now; returns
    /// its outer content type and body length.
    fn layout(
        &self,
        ty: ContentType,
        len: usize,
        padding: usize,
    ) -> Result<(ContentType, usize), RecordError> {
        if len > MAX_PLAINTEXT {
            return Err(RecordError::PlaintextTooLong(len));
        }
        if self.records_left() == 0 {
            return Err(RecordError::SequenceExhausted);
        }
        let f = self.framing;
        match f {
            Framing::Tls13 => {
                // The inner plaintext is at most 2^14 + 1 (RFC 8446 5.4).
                if padding > MAX_PLAINTEXT - len {
                    return Err(RecordError::BadPadding(padding));
                }
                Ok((ContentType::ApplicationData, len + 1 + padding + TAG_LEN))
            }
            Framing::Tls12Gcm | Framing::Tls12Chacha => {
                if padding != 0 {
                    return Err(RecordError::BadPadding(padding));
                }
                Ok((ty, f.explicit_nonce_len() + len + TAG_LEN))
            }
        }
    }

    /// The header and, for TLS 1.2 AES-GCM, the explicit nonce.
    fn write_prefix(&self, outer: ContentType, body_len: usize, out: &mut Vec<u8>) {
        let mut hdr = [0; HEADER_LEN];
        RecordHeader {
            content_type: outer,
            body_len,
        }
        .emit(&mut hdr);
        out.extend_from_slice(&hdr);
        if self.framing == Framing::Tls12Gcm {
            out.extend_from_slice(&tls::tls12_explicit_nonce(&self.iv, self.seq));
        }
    }
}

/// An opened record: its real content type and where its plaintext is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    pub content_type: ContentType,
    /// Within the record buffer given to the opener.
    pub plaintext: Range<usize>,
}

/// Opens one direction's records, from sequence number `seq` on.
pub struct RecordOpener {
    key: aead::LessSafeKey,
    /// The NIC's keystream for re-encrypting partly decrypted records
    /// (AES-GCM only).
    gcm: Option<GcmKey>,
    iv: [u8; 12],
    version: Version,
    cipher: Cipher,
    framing: Framing,
    seq: u64,
}

impl fmt::Debug for RecordOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordOpener")
            .field("version", &self.version)
            .field("cipher", &self.cipher)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// A record checked to be exactly one whole record of a type that may come
/// after the handshake, long enough to carry its tag.
struct Checked {
    outer: ContentType,
    body_len: usize,
}

impl RecordOpener {
    pub fn new(keys: TrafficKeys, seq: u64) -> Result<RecordOpener, RecordError> {
        let key = new_key(&keys)?;
        let gcm = if keys.cipher.offloadable() {
            Some(GcmKey::new(&keys.key).map_err(|_| RecordError::BadKey {
                cipher: keys.cipher,
                len: keys.key.len(),
            })?)
        } else {
            None
        };
        Ok(RecordOpener {
            key,
            gcm,
            iv: keys.iv,
            version: keys.version,
            cipher: keys.cipher,
            framing: Framing::new(keys.version, keys.cipher),
            seq,
        })
    }

    /// The sequence number of the next record.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// TLS 1.3 KeyUpdate from the peer: the next record opens with `keys`,
    /// as record 0.
    pub fn update_keys(&mut self, keys: TrafficKeys) -> Result<(), RecordError> {
        if self.version != Version::Tls13
            || keys.version != self.version
            || keys.cipher != self.cipher
        {
            return Err(RecordError::KeyUpdateMismatch);
        }
        *self = RecordOpener::new(keys, 0)?;
        Ok(())
    }

    /// Opens one whole record (header included) in place.
    pub fn open(&mut self, record: &mut [u8]) -> Result<Opened, RecordError> {
        let c = self.check(record)?;
        self.decrypt(record, &c)?;
        self.finish(record, &c)
    }

    /// A record that arrived entirely in frames the NIC marked decrypted:
    /// its bytes are plaintext already, authenticated by the NIC.
    pub fn accept_decrypted(&mut self, record: &mut [u8]) -> Result<Opened, RecordError> {
        if !self.cipher.offloadable() {
            return Err(RecordError::UnsupportedForDevice(self.cipher));
        }
        let c = self.check(record)?;
        self.finish(record, &c)
    }

    /// A record of which the NIC decrypted only the bytes in `decrypted`
    /// (record offsets, sorted, not overlapping): those are encrypted again
    /// with the AES-GCM keystream, then the whole record opens in software
    /// (Linux's `tls_device_reencrypt`). Header, explicit nonce and tag
    /// bytes are never touched by the NIC, so ranges over them are ignored.
    pub fn open_partly_decrypted(
        &mut self,
        record: &mut [u8],
        decrypted: &[Range<usize>],
    ) -> Result<Opened, RecordError> {
        let Some(gcm) = &self.gcm else {
            return Err(RecordError::UnsupportedForDevice(self.cipher));
        };
        if decrypted
            .windows(2)
            .any(|w| w[0].end > w[1].start || w[0].start > w[0].end)
            || decrypted.last().is_some_and(|r| r.start > r.end)
        {
            return Err(RecordError::BadRanges);
        }
        let c = self.check(record)?;
        let ct = self.framing.ciphertext_offset()..record.len() - TAG_LEN;
        // The keystream depends on the nonce only; the AAD is for the tag.
        let keystream = GcmRecord::new(gcm, &self.record_nonce(record), &[]);
        for r in decrypted {
            let (start, end) = (r.start.max(ct.start), r.end.min(ct.end));
            if start < end {
                keystream.apply_keystream(start - ct.start, &mut record[start..end]);
            }
        }
        self.decrypt(record, &c)?;
        self.finish(record, &c)
    }

    /// Opens a record the [`RecordReader`] cut, the way its marks say.
    pub fn open_in(&mut self, rec: &mut InRecord<'_>) -> Result<Opened, RecordError> {
        match &rec.decryption {
            Decryption::None => self.open(rec.bytes),
            Decryption::Full => self.accept_decrypted(rec.bytes),
            Decryption::Partial(ranges) => self.open_partly_decrypted(rec.bytes, ranges),
        }
    }

    fn check(&self, record: &[u8]) -> Result<Checked, RecordError> {
        let hdr = RecordHeader::parse(record)?;
        // Only a first ClientHello may say otherwise (RFC 8446 5.1, RFC 5246
        // 6.2.1); TLS 1.2's AAD does not cover it, so it is checked here.
        let version = u16::from_be_bytes([record[1], record[2]]);
        if version != tls::LEGACY_VERSION {
            return Err(RecordError::BadVersion(version));
        }
        if record.len() != HEADER_LEN + hdr.body_len {
            return Err(RecordError::Decode(
                if record.len() < HEADER_LEN + hdr.body_len {
                    "truncated record"
                } else {
                    "bytes after the record"
                },
            ));
        }
        let outer = hdr.content_type;
        let type_ok = match self.version {
            // Everything is application_data outside (RFC 8446 5.2).
            Version::Tls13 => outer == ContentType::ApplicationData,
            Version::Tls12 => matches!(
                outer,
                ContentType::ApplicationData | ContentType::Alert | ContentType::Handshake
            ),
        };
        if !type_ok {
            return Err(RecordError::UnexpectedContentType(outer));
        }
        // Too short to hold a tag: as rustls, a decryption failure.
        if hdr.body_len < self.framing.min_body() {
            return Err(RecordError::BadRecordMac);
        }
        if self.seq == u64::MAX {
            return Err(RecordError::SequenceExhausted);
        }
        Ok(Checked {
            outer,
            body_len: hdr.body_len,
        })
    }

    fn record_nonce(&self, record: &[u8]) -> [u8; 12] {
        match self.framing {
            Framing::Tls12Gcm => {
                let mut explicit = [0; EXPLICIT_NONCE_LEN];
                explicit.copy_from_slice(&record[HEADER_LEN..HEADER_LEN + EXPLICIT_NONCE_LEN]);
                tls::tls12_nonce_from_record(&self.iv, &explicit)
            }
            f => f.nonce(&self.iv, self.seq),
        }
    }

    fn decrypt(&self, record: &mut [u8], c: &Checked) -> Result<(), RecordError> {
        let nonce = aead::Nonce::assume_unique_for_key(self.record_nonce(record));
        let aad = self.framing.aad(self.seq, c.outer, c.body_len);
        let (rest, tag) = record.split_at_mut(record.len() - TAG_LEN);
        let tag = aead::Tag::try_from(&*tag).map_err(|_| RecordError::BadRecordMac)?;
        let ct = &mut rest[self.framing.ciphertext_offset()..];
        self.key
            .open_in_place_separate_tag(nonce, aead::Aad::from(aad), tag, ct, 0..)
            .map_err(|_| RecordError::BadRecordMac)?;
        Ok(())
    }

    /// After decryption: the real type, the plaintext, the sequence number.
    fn finish(&mut self, record: &[u8], c: &Checked) -> Result<Opened, RecordError> {
        let start = self.framing.ciphertext_offset();
        let inner = &record[start..record.len() - TAG_LEN];
        let opened = match self.framing {
            Framing::Tls13 => {
                if inner.len() > MAX_PLAINTEXT + 1 {
                    return Err(RecordError::PlaintextOverflow(inner.len()));
                }
                // The real type is the last non-zero byte (RFC 8446 5.4).
                let Some(at) = inner.iter().rposition(|&b| b != 0) else {
                    return Err(RecordError::UnexpectedMessage(
                        "TLS 1.3 record without a content type (all zero)",
                    ));
                };
                let ty = ContentType::from(inner[at]);
                if !matches!(
                    ty,
                    ContentType::ApplicationData | ContentType::Alert | ContentType::Handshake
                ) {
                    return Err(RecordError::UnexpectedContentType(ty));
                }
                Opened {
                    content_type: ty,
                    plaintext: start..start + at,
                }
            }
            Framing::Tls12Gcm | Framing::Tls12Chacha => {
                if inner.len() > MAX_PLAINTEXT {
                    return Err(RecordError::PlaintextOverflow(inner.len()));
                }
                Opened {
                    content_type: c.outer,
                    plaintext: start..start + inner.len(),
                }
            }
        };
        self.seq += 1;
        Ok(opened)
    }
}

/// What the NIC did to a record's bytes on the way in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decryption {
    /// No byte came in a frame marked decrypted: the record is as sent.
    None,
    /// Every byte came in marked frames: plaintext, authenticated by the NIC.
    Full,
    /// These record-offset ranges came in marked frames, the rest did not.
    Partial(Vec<Range<usize>>),
}

/// One whole record cut from the stream, valid until the next call to the
/// reader.
pub struct InRecord<'a> {
    pub bytes: &'a mut [u8],
    pub decryption: Decryption,
}

impl fmt::Debug for InRecord<'_> {
    // Lengths only: the bytes may be plaintext.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InRecord")
            .field("len", &self.bytes.len())
            .field("decryption", &self.decryption)
            .finish()
    }
}

/// Cuts a TCP byte stream into whole records and remembers, per record,
/// which of its bytes arrived in frames the NIC marked decrypted.
///
/// Memory stays bounded when the caller alternates: push what arrived, then
/// take records until `Ok(None)`. The buffer then holds one partial record
/// plus what one push adds; consumed bytes are dropped before the next push.
#[derive(Default)]
pub struct RecordReader {
    buf: Vec<u8>,
    /// First unconsumed byte of `buf`.
    start: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// Stream ranges that came in marked frames, sorted, merged, none before
    /// the first unconsumed byte.
    marks: Vec<Range<u64>>,
    /// Length of the record last handed out; consumed at the next call.
    lent: usize,
    /// The stream is broken: every later call gives this error.
    failed: Option<RecordError>,
}

impl fmt::Debug for RecordReader {
    // Lengths only: the bytes may be plaintext.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordReader")
            .field("buffered", &self.buffered())
            .field("stream_offset", &(self.base + self.start as u64))
            .field("marks", &self.marks)
            .field("failed", &self.failed)
            .finish()
    }
}

impl RecordReader {
    pub fn new() -> RecordReader {
        RecordReader::default()
    }

    /// Stream bytes, in order; `decrypted` is the mark of the frame they
    /// came in.
    pub fn push(&mut self, bytes: &[u8], decrypted: bool) {
        self.release();
        if self.start > 0 {
            // What is left is less than a record: cheap to move.
            self.buf.drain(..self.start);
            self.base += self.start as u64;
            self.start = 0;
        }
        let at = self.base + self.buf.len() as u64;
        self.buf.extend_from_slice(bytes);
        if decrypted && !bytes.is_empty() {
            let end = at + bytes.len() as u64;
            match self.marks.last_mut() {
                Some(last) if last.end == at => last.end = end,
                _ => self.marks.push(at..end),
            }
        }
    }

    /// The next whole record, `Ok(None)` until one has arrived. A header
    /// that cannot start a record fails at once (without waiting for the
    /// body it announces), and for good: the stream cannot be resynced.
    pub fn next_record(&mut self) -> Result<Option<InRecord<'_>>, RecordError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.release();
        let avail = &self.buf[self.start..];
        let hdr = match RecordHeader::parse(avail) {
            Ok(h) => h,
            Err(tls::Error::Truncated) => return Ok(None),
            Err(e) => {
                let e = RecordError::from(e);
                self.failed = Some(e.clone());
                return Err(e);
            }
        };
        let total = HEADER_LEN + hdr.body_len;
        if avail.len() < total {
            let missing = total - avail.len();
            self.buf.reserve(missing);
            return Ok(None);
        }
        let first = self.base + self.start as u64;
        let decryption = self.take_marks(first..first + total as u64);
        self.lent = total;
        Ok(Some(InRecord {
            bytes: &mut self.buf[self.start..self.start + total],
            decryption,
        }))
    }

    /// The stream offset of the first unconsumed byte.
    pub fn position(&self) -> u64 {
        self.base + (self.start + self.lent) as u64
    }

    /// Unconsumed bytes held (a record handed out counts until the next
    /// call).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    fn release(&mut self) {
        self.start += self.lent;
        self.lent = 0;
        if self.start == self.buf.len() {
            self.base += self.start as u64;
            self.buf.clear();
            self.start = 0;
        }
    }

    /// The marks over `rec` (stream offsets), as record offsets; drops them.
    fn take_marks(&mut self, rec: Range<u64>) -> Decryption {
        let mut ranges = Vec::new();
        for m in &self.marks {
            if m.start >= rec.end {
                break;
            }
            let (s, e) = (m.start.max(rec.start), m.end.min(rec.end));
            if s < e {
                ranges.push((s - rec.start) as usize..(e - rec.start) as usize);
            }
        }
        self.marks.retain(|m| m.end > rec.end);
        if let Some(m) = self.marks.first_mut() {
            m.start = m.start.max(rec.end);
        }
        let len = (rec.end - rec.start) as usize;
        match ranges.as_slice() {
            [] => Decryption::None,
            [r] if *r == (0..len) => Decryption::Full,
            _ => Decryption::Partial(ranges),
        }
    }
}
