//! The TLS record format (RFC 5246 6.2, RFC 8446 5), shared by every record
//! engine: tlsd's software engine, the simulated NIC's engine and the tests.
//!
//! smoltcp style: [`Record`] is a zero-copy view over one whole record,
//! [`RecordHeader`] a plain repr. Lengths are checked once (`new_checked`,
//! `parse`); the accessors after that cannot panic.
//!
//! The per-record AEAD inputs ([`nonce`], [`aad`]) are computed here and
//! nowhere else, so that all engines agree byte for byte.
//!
//! Record layouts (AES-GCM; ChaCha20-Poly1305 has the TLS 1.3 layout):
//! - TLS 1.2: `[hdr 5][explicit nonce 8][ciphertext = plaintext len][tag 16]`
//! - TLS 1.3: `[hdr 5: 23, 0x0303, len][ciphertext = plaintext || inner type
//!   || zero padding][tag 16]`

use core::fmt;

pub const HEADER_LEN: usize = 5;
/// AES-GCM and ChaCha20-Poly1305.
pub const TAG_LEN: usize = 16;
/// TLS 1.2 AES-GCM (RFC 5288 3).
pub const EXPLICIT_NONCE_LEN: usize = 8;
/// 2^14 (RFC 8446 5.1).
pub const MAX_PLAINTEXT: usize = 16384;
/// The largest record body a peer may send (RFC 8446 5.2).
pub const MAX_CIPHERTEXT: usize = 16384 + 256;
pub const LEGACY_VERSION: u16 = 0x0303;

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const VERSION: Range<usize> = 1..3;
    pub const LENGTH: Range<usize> = 3..5;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentType {
    ChangeCipherSpec,
    Alert,
    Handshake,
    ApplicationData,
    Unknown(u8),
}

impl From<u8> for ContentType {
    fn from(v: u8) -> Self {
        match v {
            20 => ContentType::ChangeCipherSpec,
            21 => ContentType::Alert,
            22 => ContentType::Handshake,
            23 => ContentType::ApplicationData,
            other => ContentType::Unknown(other),
        }
    }
}

impl From<ContentType> for u8 {
    fn from(t: ContentType) -> u8 {
        match t {
            ContentType::ChangeCipherSpec => 20,
            ContentType::Alert => 21,
            ContentType::Handshake => 22,
            ContentType::ApplicationData => 23,
            ContentType::Unknown(v) => v,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Tls12,
    Tls13,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Fewer bytes than the header, or than the body the header announces.
    Truncated,
    /// A legacy_version other than 0x0301..=0x0303.
    BadVersion(u16),
    /// A body length above [`MAX_CIPHERTEXT`].
    Overflow(usize),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("truncated TLS record"),
            Error::BadVersion(v) => write!(f, "TLS record with version {v:#06x}"),
            Error::Overflow(n) => write!(
                f,
                "TLS record body of {n} bytes exceeds the maximum of {MAX_CIPHERTEXT}"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// Whether a record's legacy_version is acceptable. A first ClientHello may
/// carry 0x0301 (RFC 8446 5.1), so the whole TLS 1.x range passes; anything
/// else is not TLS.
fn version_ok(v: u16) -> bool {
    (0x0301..=LEGACY_VERSION).contains(&v)
}

/// Zero-copy view over one whole record (header + body), smoltcp style.
/// The buffer may be longer than the record; the bytes after it are ignored.
#[derive(Debug, Clone)]
pub struct Record<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Record<T> {
    /// A view without checks: the accessors may panic unless
    /// [`check_len`](Self::check_len) succeeded.
    pub fn new_unchecked(buffer: T) -> Self {
        Record { buffer }
    }

    /// A view whose header is present, whose version is TLS and whose whole
    /// body (at most [`MAX_CIPHERTEXT`]) is in the buffer.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let r = Self::new_unchecked(buffer);
        r.check_len()?;
        Ok(r)
    }

    pub fn check_len(&self) -> Result<(), Error> {
        let b = self.buffer.as_ref();
        let hdr = RecordHeader::parse(b)?;
        if b.len() < HEADER_LEN + hdr.body_len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn content_type(&self) -> ContentType {
        self.buffer.as_ref()[field::TYPE].into()
    }

    pub fn legacy_version(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::VERSION];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The header's length field.
    pub fn body_len(&self) -> usize {
        let b = &self.buffer.as_ref()[field::LENGTH];
        u16::from_be_bytes([b[0], b[1]]) as usize
    }

    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.body_len()
    }

    /// The 5 header bytes.
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..HEADER_LEN]
    }

    pub fn body(&self) -> &[u8] {
        let end = self.total_len();
        &self.buffer.as_ref()[HEADER_LEN..end]
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Record<T> {
    pub fn body_mut(&mut self) -> &mut [u8] {
        let end = self.total_len();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    pub fn set_content_type(&mut self, t: ContentType) {
        self.buffer.as_mut()[field::TYPE] = t.into();
    }

    pub fn set_legacy_version(&mut self, v: u16) {
        self.buffer.as_mut()[field::VERSION].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the length field; `len` must fit in 16 bits (it is truncated).
    pub fn set_body_len(&mut self, len: usize) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&(len as u16).to_be_bytes());
    }
}

/// Plain header repr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub content_type: ContentType,
    pub body_len: usize,
}

impl RecordHeader {
    /// Parses the first [`HEADER_LEN`] bytes of `bytes` (more may follow);
    /// checks the version and that the length is at most [`MAX_CIPHERTEXT`].
    pub fn parse(bytes: &[u8]) -> Result<RecordHeader, Error> {
        let Some(h) = bytes.get(..HEADER_LEN) else {
            return Err(Error::Truncated);
        };
        let version = u16::from_be_bytes([h[1], h[2]]);
        if !version_ok(version) {
            return Err(Error::BadVersion(version));
        }
        let body_len = u16::from_be_bytes([h[3], h[4]]) as usize;
        if body_len > MAX_CIPHERTEXT {
            return Err(Error::Overflow(body_len));
        }
        Ok(RecordHeader {
            content_type: h[0].into(),
            body_len,
        })
    }

    /// Writes the 5 header bytes (version 0x0303) to the start of `out`,
    /// which must hold at least [`HEADER_LEN`] bytes (it panics otherwise,
    /// like smoltcp's `emit`: a caller bug, not bad input).
    pub fn emit(&self, out: &mut [u8]) {
        out[field::TYPE] = self.content_type.into();
        out[field::VERSION].copy_from_slice(&LEGACY_VERSION.to_be_bytes());
        out[field::LENGTH].copy_from_slice(&(self.body_len as u16).to_be_bytes());
    }
}

/// The nonce of record `seq`: `iv XOR (0^4 || seq_be)` (RFC 8446 5.3). For
/// TLS 1.2 AES-GCM that is also `salt || explicit_nonce`, since rustls
/// derives the explicit nonce as `iv[4..12] XOR seq_be` (and the salt is
/// `iv[..4]`), so both versions compute the same thing.
pub fn nonce(version: Version, iv: &[u8; 12], seq: u64) -> [u8; 12] {
    match version {
        Version::Tls13 => {
            let mut n = *iv;
            for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
                *b ^= s;
            }
            n
        }
        Version::Tls12 => tls12_nonce_from_record(iv, &tls12_explicit_nonce(iv, seq)),
    }
}

/// The 8 explicit nonce bytes a TLS 1.2 AES-GCM record carries for `seq`.
pub fn tls12_explicit_nonce(iv: &[u8; 12], seq: u64) -> [u8; 8] {
    let mut e = [0u8; EXPLICIT_NONCE_LEN];
    for ((e, i), s) in e.iter_mut().zip(&iv[4..]).zip(seq.to_be_bytes()) {
        *e = i ^ s;
    }
    e
}

/// The nonce of a received TLS 1.2 record: `salt || explicit` as received.
pub fn tls12_nonce_from_record(iv: &[u8; 12], explicit: &[u8; 8]) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&iv[..4]);
    n[4..].copy_from_slice(explicit);
    n
}

/// The additional data of one record (13 bytes at most).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Aad {
    bytes: [u8; 13],
    len: usize,
}

impl AsRef<[u8]> for Aad {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The AAD of record `seq` whose header says `content_type` and `body_len`.
/// - TLS 1.3: the 5 header bytes (RFC 8446 5.2).
/// - TLS 1.2: `seq_be(8) || type || 0x0303 || plaintext_len_be(2)` (RFC 5246
///   6.2.3.3) with `plaintext_len = body_len - 8 - 16`. A body shorter than
///   that gives plaintext length 0: such a record cannot authenticate anyway,
///   and the caller must reject it before opening.
pub fn aad(version: Version, seq: u64, content_type: ContentType, body_len: usize) -> Aad {
    let mut bytes = [0u8; 13];
    match version {
        Version::Tls13 => {
            RecordHeader {
                content_type,
                body_len,
            }
            .emit(&mut bytes);
            Aad {
                bytes,
                len: HEADER_LEN,
            }
        }
        Version::Tls12 => {
            let plain = body_len.saturating_sub(EXPLICIT_NONCE_LEN + TAG_LEN);
            bytes[..8].copy_from_slice(&seq.to_be_bytes());
            RecordHeader {
                content_type,
                body_len: plain,
            }
            .emit(&mut bytes[8..]);
            Aad { bytes, len: 13 }
        }
    }
}

/// Bytes a record adds around its plaintext: TLS 1.2 = 5 + 8 + 16; TLS 1.3 =
/// 5 + 1 (inner content type) + 16 (no padding).
pub fn overhead(version: Version) -> usize {
    match version {
        Version::Tls12 => HEADER_LEN + EXPLICIT_NONCE_LEN + TAG_LEN,
        Version::Tls13 => HEADER_LEN + 1 + TAG_LEN,
    }
}

/// Offset in the record of the first ciphertext byte.
pub fn ciphertext_offset(version: Version) -> usize {
    match version {
        Version::Tls12 => HEADER_LEN + EXPLICIT_NONCE_LEN,
        Version::Tls13 => HEADER_LEN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn content_type_round_trip() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(ContentType::from(v)), v);
        }
        assert_eq!(ContentType::from(23), ContentType::ApplicationData);
        assert_eq!(ContentType::from(24), ContentType::Unknown(24));
    }

    #[test]
    fn header_parse_emit_round_trip() {
        for (t, len) in [
            (ContentType::ApplicationData, 0),
            (ContentType::Handshake, 1),
            (ContentType::Alert, 300),
            (ContentType::ApplicationData, MAX_CIPHERTEXT),
        ] {
            let h = RecordHeader {
                content_type: t,
                body_len: len,
            };
            let mut b = [0u8; HEADER_LEN];
            h.emit(&mut b);
            assert_eq!(b[1..3], [3, 3]);
            assert_eq!(RecordHeader::parse(&b), Ok(h));
        }
    }

    #[test]
    fn header_errors() {
        assert_eq!(RecordHeader::parse(&[23, 3, 3, 0]), Err(Error::Truncated));
        assert_eq!(RecordHeader::parse(&[]), Err(Error::Truncated));
        assert_eq!(
            RecordHeader::parse(&[23, 3, 4, 0, 1]),
            Err(Error::BadVersion(0x0304))
        );
        assert_eq!(
            RecordHeader::parse(&[23, 0x47, 0x45, 0x54, 0x20]),
            Err(Error::BadVersion(0x4745))
        );
        // 0x0301 is what a first ClientHello may carry.
        assert!(RecordHeader::parse(&[22, 3, 1, 0, 1]).is_ok());
        let over = (MAX_CIPHERTEXT + 1) as u16;
        let [hi, lo] = over.to_be_bytes();
        assert_eq!(
            RecordHeader::parse(&[23, 3, 3, hi, lo]),
            Err(Error::Overflow(MAX_CIPHERTEXT + 1))
        );
        assert!(Error::Overflow(17000).to_string().contains("17000"));
    }

    #[test]
    fn record_view() {
        let mut buf = vec![23, 3, 3, 0, 3, 0xa, 0xb, 0xc, 0xff];
        let r = Record::new_checked(&buf[..]).unwrap();
        assert_eq!(r.content_type(), ContentType::ApplicationData);
        assert_eq!(r.legacy_version(), 0x0303);
        assert_eq!(r.body_len(), 3);
        assert_eq!(r.total_len(), 8);
        assert_eq!(r.header(), &[23, 3, 3, 0, 3]);
        assert_eq!(r.body(), &[0xa, 0xb, 0xc]);
        assert!(Record::new_checked(&buf[..7]).is_err());
        assert_eq!(
            Record::new_checked(&buf[..3]).unwrap_err(),
            Error::Truncated
        );

        let mut r = Record::new_checked(&mut buf[..]).unwrap();
        r.body_mut()[0] = 0x1;
        r.set_content_type(ContentType::Alert);
        r.set_body_len(4);
        r.set_legacy_version(0x0301);
        let r = Record::new_checked(&buf[..]).unwrap();
        assert_eq!(r.content_type(), ContentType::Alert);
        assert_eq!(r.legacy_version(), 0x0301);
        assert_eq!(r.body(), &[0x1, 0xb, 0xc, 0xff]);
    }

    #[test]
    fn tls13_nonce_rfc8448() {
        // RFC 8448 3: the server's application traffic IV. Its first record
        // (seq 0, NewSessionTicket) uses the IV itself; its application data
        // record is seq 1.
        let iv: [u8; 12] = hex("cf 78 2b 88 dd 83 54 9a ad f1 e9 84")
            .try_into()
            .unwrap();
        assert_eq!(nonce(Version::Tls13, &iv, 0), iv);
        assert_eq!(
            nonce(Version::Tls13, &iv, 1).to_vec(),
            hex("cf 78 2b 88 dd 83 54 9a ad f1 e9 85")
        );
        assert_eq!(
            nonce(Version::Tls13, &iv, 0x0102_0304_0506_0708).to_vec(),
            hex("cf 78 2b 88 dc 81 57 9e a8 f7 ee 8c")
        );
    }

    #[test]
    fn tls12_nonce() {
        let iv: [u8; 12] = hex("01 02 03 04 10 20 30 40 50 60 70 80")
            .try_into()
            .unwrap();
        let seq = 0x0000_0000_0000_01ff;
        let e = tls12_explicit_nonce(&iv, seq);
        assert_eq!(e.to_vec(), hex("10 20 30 40 50 60 71 7f"));
        let n = nonce(Version::Tls12, &iv, seq);
        assert_eq!(n.to_vec(), hex("01 02 03 04 10 20 30 40 50 60 71 7f"));
        assert_eq!(tls12_nonce_from_record(&iv, &e), n);
        // The same as TLS 1.3's construction, as rustls does it.
        assert_eq!(n, nonce(Version::Tls13, &iv, seq));
    }

    #[test]
    fn aad_both_versions() {
        let a = aad(Version::Tls13, 7, ContentType::ApplicationData, 0x43);
        assert_eq!(a.as_ref(), &hex("17 03 03 00 43")[..]);
        let a = aad(
            Version::Tls12,
            0x0102_0304_0506_0708,
            ContentType::ApplicationData,
            100 + 24,
        );
        assert_eq!(
            a.as_ref(),
            &hex("01 02 03 04 05 06 07 08 17 03 03 00 64")[..]
        );
        // A body too short for TLS 1.2's framing does not underflow.
        let a = aad(Version::Tls12, 0, ContentType::Alert, 3);
        assert_eq!(&a.as_ref()[8..], &[21, 3, 3, 0, 0]);
    }

    #[test]
    fn random_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(8448);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..64);
            let mut b: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if len >= 3 && rng.gen_bool(0.5) {
                b[1] = 3;
                b[2] = 3;
            }
            if let Ok(r) = Record::new_checked(&b[..]) {
                assert!(r.total_len() <= b.len());
                assert_eq!(r.body().len(), r.body_len());
                let _ = (r.content_type(), r.header());
            }
        }
    }

    #[test]
    fn overhead_and_offset() {
        assert_eq!(overhead(Version::Tls12), 29);
        assert_eq!(overhead(Version::Tls13), 22);
        assert_eq!(ciphertext_offset(Version::Tls12), 13);
        assert_eq!(ciphertext_offset(Version::Tls13), 5);
    }
}
