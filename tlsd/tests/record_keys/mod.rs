//! Keys for tlsd's record tests: every TLS version and cipher, a sealer and
//! opener sharing random keys, and random bytes.
#![allow(dead_code)]

use capnet_wire::tls::Version;
use rand::Rng;
use tlsd::record::{Cipher, RecordOpener, RecordSealer, TrafficKeys};

pub const ALL: [(Version, Cipher); 6] = [
    (Version::Tls12, Cipher::Aes128Gcm),
    (Version::Tls12, Cipher::Aes256Gcm),
    (Version::Tls12, Cipher::Chacha20Poly1305),
    (Version::Tls13, Cipher::Aes128Gcm),
    (Version::Tls13, Cipher::Aes256Gcm),
    (Version::Tls13, Cipher::Chacha20Poly1305),
];

pub fn keys(rng: &mut impl Rng, version: Version, cipher: Cipher) -> TrafficKeys {
    let key: Vec<u8> = (0..cipher.key_len()).map(|_| rng.gen()).collect();
    TrafficKeys::new(version, cipher, &key, rng.gen())
}

pub fn pair(rng: &mut impl Rng, v: Version, c: Cipher, seq: u64) -> (RecordSealer, RecordOpener) {
    let k = keys(rng, v, c);
    (
        RecordSealer::new(k.clone(), seq).unwrap(),
        RecordOpener::new(k, seq).unwrap(),
    )
}

pub fn random_bytes(rng: &mut impl Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.gen()).collect()
}

/// The record's length as the header says, read here without the wire module.
pub fn header_len(rec: &[u8]) -> usize {
    5 + u16::from_be_bytes([rec[3], rec[4]]) as usize
}
