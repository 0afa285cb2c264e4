//! AES-GCM (NIST SP 800-38D) for one record at a time, as a NIC plays it.
//!
//! A NIC sees a record's bytes spread over TCP segments and must emit each
//! segment at once, so sealing cannot wait for the whole record. GCM splits
//! cleanly: CTR keystream at any byte offset ([`GcmRecord::apply_keystream`],
//! the `aes` crate), and the tag over the whole ciphertext. The TLS engines
//! CTR each piece as it passes and keep the record's body; its tag is made
//! or checked in one pass by ring's AES-GCM ([`GcmRecord::seal_whole`] on a
//! copy of the plaintext, [`GcmRecord::check_whole`] on a copy of the
//! ciphertext), or, when the body is all in one frame, the record is sealed
//! or opened in place ([`GcmRecord::open_whole`]): several times the rate
//! of hashing pieces as they pass (`cargo bench -p capnet-offload --bench
//! engine`).
//!
//! Hashing as the bytes pass ([`GcmRecord::absorb`], [`GcmRecord::tag`];
//! the `ghash` crate, one block at a time) remains for AADs longer than
//! [`MAX_WHOLE_AAD`], which ring is not handed; TLS's are 5 or 13 bytes.
//!
//! Only 96-bit nonces (all TLS uses), so J0 = nonce || 0^31 || 1 and the
//! first ciphertext block uses counter 2.

use std::fmt;
use std::sync::Arc;

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::{Aes128, Aes256, Block};
use ghash::universal_hash::UniversalHash;
use ghash::GHash;
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_128_GCM, AES_256_GCM};

pub const BLOCK_LEN: usize = 16;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// The longest AAD a whole-record seal takes (TLS 1.2's is 13 bytes).
pub const MAX_WHOLE_AAD: usize = 16;

/// Keystream blocks encrypted per batch: enough for aes's parallel backend
/// (8 blocks with AES-NI) to stay busy, small enough for the stack.
const BATCH_BLOCKS: usize = 64;

/// A key of the wrong length for AES-128 or AES-256.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyLengthError(pub usize);

impl fmt::Display for KeyLengthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AES-GCM key of {} bytes (16 or 32 expected)", self.0)
    }
}

impl std::error::Error for KeyLengthError {}

// One per key, behind an Arc: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum Cipher {
    Aes128(Aes128),
    Aes256(Aes256),
}

impl Cipher {
    fn encrypt_blocks(&self, blocks: &mut [Block]) {
        match self {
            Cipher::Aes128(c) => c.encrypt_blocks(blocks),
            Cipher::Aes256(c) => c.encrypt_blocks(blocks),
        }
    }
}

struct KeyInner {
    cipher: Cipher,
    /// The same key for whole records.
    whole: LessSafeKey,
    /// GHASH keyed with H = E(K, 0^128), empty: each record starts from a
    /// clone of it.
    ghash: GHash,
}

/// An AES-GCM key (expanded once). Cloning is cheap (shared), so that every
/// record in flight can hold its key.
#[derive(Clone)]
pub struct GcmKey {
    inner: Arc<KeyInner>,
}

impl fmt::Debug for GcmKey {
    // Never the key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bits = match self.inner.cipher {
            Cipher::Aes128(_) => 128,
            Cipher::Aes256(_) => 256,
        };
        write!(f, "GcmKey(AES-{bits})")
    }
}

impl GcmKey {
    /// AES-128 for 16 bytes, AES-256 for 32.
    pub fn new(key: &[u8]) -> Result<GcmKey, KeyLengthError> {
        let (cipher, alg) = match key.len() {
            16 => (
                Cipher::Aes128(Aes128::new_from_slice(key).map_err(|_| KeyLengthError(16))?),
                &AES_128_GCM,
            ),
            32 => (
                Cipher::Aes256(Aes256::new_from_slice(key).map_err(|_| KeyLengthError(32))?),
                &AES_256_GCM,
            ),
            n => return Err(KeyLengthError(n)),
        };
        let whole =
            LessSafeKey::new(UnboundKey::new(alg, key).map_err(|_| KeyLengthError(key.len()))?);
        let mut h = Block::default();
        cipher.encrypt_blocks(std::slice::from_mut(&mut h));
        let ghash = GHash::new(&h);
        Ok(GcmKey {
            inner: Arc::new(KeyInner {
                cipher,
                whole,
                ghash,
            }),
        })
    }

    /// 16 or 32.
    pub fn key_len(&self) -> usize {
        match self.inner.cipher {
            Cipher::Aes128(_) => 16,
            Cipher::Aes256(_) => 32,
        }
    }
}

/// The GCM state of one record (one nonce): keystream at any offset, and
/// GHASH over the ciphertext fed in order.
#[derive(Clone)]
pub struct GcmRecord {
    key: GcmKey,
    nonce: [u8; NONCE_LEN],
    /// E(K, J0), XORed into the GHASH result to make the tag.
    ek_j0: [u8; TAG_LEN],
    ghash: GHash,
    partial: [u8; BLOCK_LEN],
    partial_len: usize,
    /// The AAD, for a whole-record seal (up to [`MAX_WHOLE_AAD`] bytes; a
    /// record with a longer one is only ever streamed).
    aad: [u8; MAX_WHOLE_AAD],
    aad_len: u64,
    ct_len: u64,
    /// The tag of a record sealed or opened whole: nothing follows.
    sealed: Option<[u8; TAG_LEN]>,
}

impl fmt::Debug for GcmRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcmRecord")
            .field("key", &self.key)
            .field("absorbed", &self.ct_len)
            .finish_non_exhaustive()
    }
}

impl GcmRecord {
    pub fn new(key: &GcmKey, nonce: &[u8; NONCE_LEN], aad: &[u8]) -> GcmRecord {
        let mut j0 = counter_block(nonce, 1);
        key.inner
            .cipher
            .encrypt_blocks(std::slice::from_mut(&mut j0));
        let mut ghash = key.inner.ghash.clone();
        ghash.update_padded(aad);
        let mut kept = [0u8; MAX_WHOLE_AAD];
        if let Some(k) = kept.get_mut(..aad.len()) {
            k.copy_from_slice(aad);
        }
        GcmRecord {
            key: key.clone(),
            nonce: *nonce,
            ek_j0: j0.into(),
            ghash,
            partial: [0; BLOCK_LEN],
            partial_len: 0,
            aad: kept,
            aad_len: aad.len() as u64,
            ct_len: 0,
            sealed: None,
        }
    }

    /// Seals `plaintext`, the record's whole body, in place in one pass and
    /// returns the tag (also [`tag`](Self::tag)'s from then on). `None`,
    /// with nothing done, once any ciphertext was absorbed or when the AAD
    /// was too long to keep: stream it instead.
    pub fn seal_whole(&mut self, plaintext: &mut [u8]) -> Option<[u8; TAG_LEN]> {
        let aad_len = self.whole_aad()?;
        let tag = self
            .key
            .inner
            .whole
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(self.nonce),
                Aad::from(&self.aad[..aad_len]),
                plaintext,
            )
            // Only a body over GCM's 64 GiB limit fails: never a record.
            .ok()?;
        let tag: [u8; TAG_LEN] = tag.as_ref().try_into().ok()?;
        self.ct_len = plaintext.len() as u64;
        self.sealed = Some(tag);
        Some(tag)
    }

    /// XORs `data` with the keystream of ciphertext bytes `offset..offset +
    /// data.len()` of this record: encrypts plaintext, decrypts ciphertext,
    /// in any order and any number of times.
    pub fn apply_keystream(&self, offset: usize, data: &mut [u8]) {
        apply_keystream(&self.key, &self.nonce, offset, data);
    }

    pub fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.nonce
    }

    /// Opens `body`, the record's whole ciphertext, in place in one pass
    /// and checks `tag`: true (plaintext now), or false with `body` as it
    /// was (ring clears a body whose tag is wrong; `scratch` keeps a copy
    /// meanwhile). `None`, with nothing done, once any ciphertext was
    /// absorbed or when the AAD was too long to keep.
    pub fn open_whole(
        &mut self,
        body: &mut [u8],
        tag: &[u8; TAG_LEN],
        scratch: &mut Vec<u8>,
    ) -> Option<bool> {
        self.whole_aad()?;
        scratch.clear();
        scratch.extend_from_slice(body);
        let opened = self.check_whole(body, tag)?;
        if !opened {
            body.copy_from_slice(scratch);
        }
        Some(opened)
    }

    /// Checks `tag` over `ciphertext`, the record's whole body gathered by
    /// the caller, in one pass: whether it is right. `ciphertext` is the
    /// caller's copy and is left plaintext, or cleared if the tag is wrong.
    /// `None`, with nothing done, as for [`open_whole`](Self::open_whole).
    pub fn check_whole(&mut self, ciphertext: &mut [u8], tag: &[u8; TAG_LEN]) -> Option<bool> {
        let aad = self.whole_aad()?;
        self.ct_len = ciphertext.len() as u64;
        let opened = self.key.inner.whole.open_in_place_separate_tag(
            Nonce::assume_unique_for_key(self.nonce),
            Aad::from(&self.aad[..aad]),
            Tag::from(*tag),
            ciphertext,
            0..,
        );
        self.sealed = Some(*tag);
        Some(opened.is_ok())
    }

    /// The AAD's length, if the record can still go through ring whole:
    /// nothing absorbed, and an AAD short enough to have been kept.
    fn whole_aad(&self) -> Option<usize> {
        let aad_len = usize::try_from(self.aad_len).ok()?;
        (self.ct_len == 0 && self.sealed.is_none() && aad_len <= MAX_WHOLE_AAD).then_some(aad_len)
    }

    /// Feeds the next ciphertext bytes (in order, any piece sizes) to GHASH.
    /// Nothing follows a record sealed whole.
    pub fn absorb(&mut self, ciphertext: &[u8]) {
        if self.sealed.is_some() {
            debug_assert!(ciphertext.is_empty(), "bytes after a whole record");
            return;
        }
        self.ct_len += ciphertext.len() as u64;
        let mut data = ciphertext;
        if self.partial_len > 0 {
            let take = (BLOCK_LEN - self.partial_len).min(data.len());
            self.partial[self.partial_len..self.partial_len + take].copy_from_slice(&data[..take]);
            self.partial_len += take;
            data = &data[take..];
            if self.partial_len < BLOCK_LEN {
                return;
            }
            self.ghash.update_padded(&self.partial);
            self.partial_len = 0;
        }
        let whole = data.len() - data.len() % BLOCK_LEN;
        // Whole blocks only, so update_padded pads nothing (and copies nothing).
        self.ghash.update_padded(&data[..whole]);
        let tail = &data[whole..];
        self.partial[..tail.len()].copy_from_slice(tail);
        self.partial_len = tail.len();
    }

    /// Ciphertext bytes absorbed so far.
    pub fn absorbed(&self) -> u64 {
        self.ct_len
    }

    /// The tag over the AAD and the ciphertext absorbed so far (the state is
    /// not consumed: more may be absorbed after).
    pub fn tag(&self) -> [u8; TAG_LEN] {
        if let Some(tag) = self.sealed {
            return tag;
        }
        let mut g = self.ghash.clone();
        if self.partial_len > 0 {
            g.update_padded(&self.partial[..self.partial_len]);
        }
        let mut lens = [0u8; BLOCK_LEN];
        lens[..8].copy_from_slice(&(self.aad_len * 8).to_be_bytes());
        lens[8..].copy_from_slice(&(self.ct_len * 8).to_be_bytes());
        g.update_padded(&lens);
        let mut tag: [u8; TAG_LEN] = g.finalize().into();
        for (t, e) in tag.iter_mut().zip(&self.ek_j0) {
            *t ^= e;
        }
        tag
    }

    /// Constant-time comparison of [`tag`](Self::tag) with a received tag.
    pub fn verify(&self, received: &[u8; TAG_LEN]) -> bool {
        let diff = self
            .tag()
            .iter()
            .zip(received)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        diff == 0
    }
}

/// GCM's CTR keystream of the record with `nonce`, XORed into `data`, which
/// holds ciphertext bytes `offset..offset + data.len()` of that record (the
/// record state is not needed: undoing a decryption needs only this).
pub fn apply_keystream(key: &GcmKey, nonce: &[u8; NONCE_LEN], offset: usize, data: &mut [u8]) {
    let mut blocks = [Block::default(); BATCH_BLOCKS];
    let mut block_no = offset / BLOCK_LEN;
    let mut skip = offset % BLOCK_LEN;
    let mut rest = data;
    while !rest.is_empty() {
        let n = (skip + rest.len()).div_ceil(BLOCK_LEN).min(BATCH_BLOCKS);
        for (i, b) in blocks[..n].iter_mut().enumerate() {
            // Counter 2 is the first ciphertext block; inc32: the low 32
            // bits wrap (SP 800-38D 6.2).
            *b = counter_block(nonce, (block_no + i + 2) as u32);
        }
        key.inner.cipher.encrypt_blocks(&mut blocks[..n]);
        let mut ks = blocks[..n].iter();
        if skip > 0 {
            // The first block is used from `skip` on.
            let first = &ks.next().expect("n >= 1")[skip..];
            let m = first.len().min(rest.len());
            let (now, later) = rest.split_at_mut(m);
            xor(now, &first[..m]);
            rest = later;
        }
        for b in ks {
            if rest.len() >= BLOCK_LEN {
                let (now, later) = rest.split_at_mut(BLOCK_LEN);
                xor_block(now, b);
                rest = later;
            } else {
                let m = rest.len();
                xor(rest, &b[..m]);
                rest = &mut [];
            }
        }
        block_no += n;
        skip = 0;
    }
}

fn xor(data: &mut [u8], ks: &[u8]) {
    for (d, k) in data.iter_mut().zip(ks) {
        *d ^= k;
    }
}

/// One whole block as a single 128-bit XOR.
fn xor_block(data: &mut [u8], ks: &Block) {
    let d: &mut [u8; BLOCK_LEN] = data.try_into().expect("a whole block");
    let k: [u8; BLOCK_LEN] = (*ks).into();
    *d = (u128::from_ne_bytes(*d) ^ u128::from_ne_bytes(k)).to_ne_bytes();
}

fn counter_block(nonce: &[u8; NONCE_LEN], ctr: u32) -> Block {
    let mut b = Block::default();
    b[..NONCE_LEN].copy_from_slice(nonce);
    b[NONCE_LEN..].copy_from_slice(&ctr.to_be_bytes());
    b
}

/// Seals `data` in place as one whole record; returns the tag. (The software
/// path, and a reference for the tests.)
pub fn seal(key: &GcmKey, nonce: &[u8; NONCE_LEN], aad: &[u8], data: &mut [u8]) -> [u8; TAG_LEN] {
    let mut r = GcmRecord::new(key, nonce, aad);
    r.apply_keystream(0, data);
    r.absorb(data);
    r.tag()
}

/// Opens `data` in place if `tag` authenticates it; otherwise leaves it as
/// it was and returns false.
pub fn open(
    key: &GcmKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    data: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> bool {
    let mut r = GcmRecord::new(key, nonce, aad);
    r.absorb(data);
    if !r.verify(tag) {
        return false;
    }
    r.apply_keystream(0, data);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm::aead::AeadInPlace;
    use rand::{Rng, SeedableRng};

    fn reference(key: &[u8], nonce: &[u8; 12], aad: &[u8], pt: &[u8]) -> (Vec<u8>, [u8; 16]) {
        let mut buf = pt.to_vec();
        let tag = match key.len() {
            16 => aes_gcm::Aes128Gcm::new_from_slice(key)
                .unwrap()
                .encrypt_in_place_detached(nonce.into(), aad, &mut buf),
            _ => aes_gcm::Aes256Gcm::new_from_slice(key)
                .unwrap()
                .encrypt_in_place_detached(nonce.into(), aad, &mut buf),
        }
        .unwrap();
        (buf, tag.into())
    }

    /// Cuts `0..len` at random points (including empty pieces).
    fn random_cuts(rng: &mut impl Rng, len: usize) -> Vec<usize> {
        let mut cuts: Vec<usize> = (0..rng.gen_range(0..8))
            .map(|_| rng.gen_range(0..=len))
            .collect();
        cuts.push(0);
        cuts.push(len);
        cuts.sort_unstable();
        cuts
    }

    #[test]
    fn bad_key_lengths() {
        for n in [0, 15, 17, 24, 31, 33] {
            assert_eq!(GcmKey::new(&vec![0; n]).unwrap_err(), KeyLengthError(n));
        }
        assert_eq!(GcmKey::new(&[0; 16]).unwrap().key_len(), 16);
        assert_eq!(GcmKey::new(&[0; 32]).unwrap().key_len(), 32);
        assert_eq!(
            format!("{:?}", GcmKey::new(&[7; 32]).unwrap()),
            "GcmKey(AES-256)"
        );
    }

    #[test]
    fn nist_test_case_4() {
        // McGrew & Viega, "The Galois/Counter Mode of Operation", test case 4.
        let key = hex("feffe9928665731c6d6a8f9467308308");
        let nonce: [u8; 12] = hex("cafebabefacedbaddecaf888").try_into().unwrap();
        let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let pt = hex(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
             1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        );
        let ct = hex(
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e\
             21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
        );
        let k = GcmKey::new(&key).unwrap();
        let mut buf = pt.clone();
        let tag = seal(&k, &nonce, &aad, &mut buf);
        assert_eq!(buf, ct);
        assert_eq!(tag.to_vec(), hex("5bc94fbc3221a5db94fae95ae7121a47"));
        assert!(open(&k, &nonce, &aad, &mut buf, &tag));
        assert_eq!(buf, pt);
    }

    #[test]
    fn incremental_matches_aes_gcm() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x6c6d);
        for round in 0..400 {
            let key: Vec<u8> = (0..if round % 2 == 0 { 16 } else { 32 })
                .map(|_| rng.gen())
                .collect();
            let nonce: [u8; 12] = rng.gen();
            let aad: Vec<u8> = (0..rng.gen_range(0..40)).map(|_| rng.gen()).collect();
            let len = if round % 10 == 0 {
                rng.gen_range(0..20_000)
            } else {
                rng.gen_range(0..300)
            };
            let pt: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let (want_ct, want_tag) = reference(&key, &nonce, &aad, &pt);

            let k = GcmKey::new(&key).unwrap();
            let mut rec = GcmRecord::new(&k, &nonce, &aad);
            let mut buf = pt.clone();
            let cuts = random_cuts(&mut rng, len);
            for w in cuts.windows(2) {
                let piece = &mut buf[w[0]..w[1]];
                rec.apply_keystream(w[0], piece);
                rec.absorb(piece);
            }
            assert_eq!(buf, want_ct, "round {round}");
            assert_eq!(rec.absorbed(), len as u64);
            assert_eq!(rec.tag(), want_tag, "round {round}");

            // The keystream at any offset, pieces out of order, decrypts.
            let cuts = random_cuts(&mut rng, len);
            let mut pieces: Vec<_> = cuts.windows(2).map(|w| (w[0], w[1])).collect();
            pieces.reverse();
            for (a, b) in pieces {
                rec.apply_keystream(a, &mut buf[a..b]);
            }
            assert_eq!(buf, pt, "round {round}");
        }
    }

    /// A key (AES-128 on even rounds), nonce, AAD a whole-record call
    /// keeps and record of up to 17,000 bytes.
    fn whole_case(
        rng: &mut rand::rngs::StdRng,
        round: usize,
    ) -> (Vec<u8>, [u8; 12], Vec<u8>, Vec<u8>) {
        let key = (0..if round.is_multiple_of(2) { 16 } else { 32 })
            .map(|_| rng.gen())
            .collect();
        let aad = (0..rng.gen_range(0..=MAX_WHOLE_AAD))
            .map(|_| rng.gen())
            .collect();
        let pt = (0..rng.gen_range(0..17_000)).map(|_| rng.gen()).collect();
        (key, rng.gen(), aad, pt)
    }

    #[test]
    fn whole_records_seal_as_streamed_ones() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x77);
        for round in 0..200 {
            let (key, nonce, aad, pt) = whole_case(&mut rng, round);
            let (want_ct, want_tag) = reference(&key, &nonce, &aad, &pt);
            let k = GcmKey::new(&key).unwrap();
            let mut rec = GcmRecord::new(&k, &nonce, &aad);
            let mut buf = pt.clone();
            assert_eq!(rec.seal_whole(&mut buf), Some(want_tag), "round {round}");
            assert_eq!(buf, want_ct, "round {round}");
            assert_eq!((rec.tag(), rec.absorbed()), (want_tag, pt.len() as u64));
            assert_eq!(rec.seal_whole(&mut buf), None, "sealed once");
            // The keystream still decrypts any piece (retransmissions).
            rec.apply_keystream(0, &mut buf);
            assert_eq!(buf, pt, "round {round}");
        }
    }

    #[test]
    fn whole_records_open_or_stay_as_they_were() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x6f70);
        let mut scratch = Vec::new();
        for round in 0..200 {
            let (key, nonce, aad, pt) = whole_case(&mut rng, round);
            let (ct, mut tag) = reference(&key, &nonce, &aad, &pt);
            let k = GcmKey::new(&key).unwrap();
            let mut buf = ct.clone();
            let wrong = round % 3 == 0;
            if wrong {
                tag[rng.gen_range(0..TAG_LEN)] ^= 1 << rng.gen_range(0..8);
            }
            let mut rec = GcmRecord::new(&k, &nonce, &aad);
            let ok = rec.open_whole(&mut buf, &tag, &mut scratch);
            assert_eq!(ok, Some(!wrong), "round {round}");
            assert_eq!(&buf, if wrong { &ct } else { &pt }, "round {round}");
            assert_eq!(rec.open_whole(&mut buf, &tag, &mut scratch), None);
        }
    }

    #[test]
    fn a_record_streamed_or_with_a_long_aad_is_not_sealed_whole() {
        let k = GcmKey::new(&[5; 16]).unwrap();
        let mut rec = GcmRecord::new(&k, &[1; 12], &[2; 13]);
        let mut data = [0x33u8; 64];
        rec.apply_keystream(0, &mut data[..16]);
        rec.absorb(&data[..16]);
        assert_eq!(rec.seal_whole(&mut data[16..]), None);
        assert_eq!(data[16..], [0x33; 48], "untouched");
        let mut long = GcmRecord::new(&k, &[1; 12], &[2; MAX_WHOLE_AAD + 1]);
        assert_eq!(long.seal_whole(&mut data), None);
    }

    #[test]
    fn tag_is_readable_midway() {
        let k = GcmKey::new(&[3; 16]).unwrap();
        let (nonce, data) = ([9; 12], [0x5a; 100]);
        let tag_of = |d: &[u8]| {
            let mut r = GcmRecord::new(&k, &nonce, b"aad");
            r.absorb(d);
            r.tag()
        };
        let mut rec = GcmRecord::new(&k, &nonce, b"aad");
        rec.absorb(&data[..37]);
        assert_eq!(rec.tag(), tag_of(&data[..37]));
        rec.absorb(&data[37..]);
        assert_eq!(rec.tag(), tag_of(&data));
        assert_ne!(rec.tag(), tag_of(&data[..37]));
        assert!(rec.verify(&tag_of(&data)));
        let mut bad = tag_of(&data);
        bad[15] ^= 1;
        assert!(!rec.verify(&bad));
    }

    #[test]
    fn open_rejects_and_leaves_data() {
        let k = GcmKey::new(&[1; 32]).unwrap();
        let mut buf = b"attack at dawn".to_vec();
        let tag = seal(&k, &[2; 12], b"", &mut buf);
        let ct = buf.clone();
        let mut bad = tag;
        bad[0] ^= 0x80;
        assert!(!open(&k, &[2; 12], b"", &mut buf, &bad));
        assert_eq!(buf, ct);
        assert!(!open(&k, &[2; 12], b"x", &mut buf, &tag));
        assert!(open(&k, &[2; 12], b"", &mut buf, &tag));
        assert_eq!(buf, b"attack at dawn");
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
