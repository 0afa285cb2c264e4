//! TLS records for the offload tests, written out here rather than taken
//! from the code under test: framed as tlsd hands them to the NIC, and
//! sealed by an independent AES-GCM (the aes-gcm crate, nonce and AAD per
//! RFC 5288/8446).

use aes_gcm::aead::{AeadInPlace, KeyInit};
use capnet_schema::offload_capnp::TlsCipher;

/// In every plaintext record: must never be seen on the wire or in a capture.
pub const SECRET: &[u8] = b"SECRET-PLAINTEXT";

/// The parameters of one context.
#[derive(Clone)]
pub struct Tls {
    pub version: u16,
    pub cipher: TlsCipher,
    pub key: Vec<u8>,
    /// 12 bytes (other lengths to test refusals).
    pub iv: Vec<u8>,
    pub tcp_seq: u32,
    pub rec_seq: u64,
}

/// One record three ways: framed for the NIC (plaintext, room for the
/// tag), sealed (what the wire carries), opened (what an RX context hands
/// up: plaintext where the ciphertext was, the tag as received).
pub struct Rec {
    pub framed: Vec<u8>,
    pub sealed: Vec<u8>,
    pub opened: Vec<u8>,
}

impl Tls {
    pub fn new(version: u16, key_len: usize, tcp_seq: u32, rec_seq: u64) -> Tls {
        Tls {
            version,
            cipher: match key_len {
                16 => TlsCipher::Aes128Gcm,
                _ => TlsCipher::Aes256Gcm,
            },
            key: (0..key_len as u8)
                .map(|i| i.wrapping_mul(37) ^ 0x5a)
                .collect(),
            iv: (0xa0..0xac).collect(),
            tcp_seq,
            rec_seq,
        }
    }

    /// Record number `n` (absolute) of content type `ty` holding `plain`.
    pub fn record(&self, n: u64, ty: u8, plain: &[u8]) -> Rec {
        let tls12 = self.version == 0x0303;
        let seq = n.to_be_bytes();
        // RFC 8446 5.3 (1.3) and RFC 5288 3 with the explicit nonce as
        // rustls derives it (1.2): both are iv XOR (0^4 || seq).
        let mut nonce: [u8; 12] = self.iv.clone().try_into().unwrap();
        for (b, s) in nonce[4..].iter_mut().zip(seq) {
            *b ^= s;
        }
        let (outer, inner) = if tls12 {
            (ty, plain.to_vec())
        } else {
            let mut v = plain.to_vec();
            v.push(ty);
            (23, v)
        };
        let explicit = if tls12 { 8 } else { 0 };
        let body_len = explicit + inner.len() + 16;
        let mut framed = vec![outer, 3, 3];
        framed.extend_from_slice(&(body_len as u16).to_be_bytes());
        if tls12 {
            framed.extend_from_slice(&nonce[4..]);
        }
        framed.extend_from_slice(&inner);
        framed.extend_from_slice(&[0u8; 16]);
        let aad: Vec<u8> = if tls12 {
            let mut a = seq.to_vec();
            a.extend_from_slice(&[ty, 3, 3]);
            a.extend_from_slice(&(inner.len() as u16).to_be_bytes());
            a
        } else {
            framed[..5].to_vec()
        };
        let ct = 5 + explicit;
        let mut body = inner.clone();
        let tag = match self.key.len() {
            16 => aes_gcm::Aes128Gcm::new_from_slice(&self.key)
                .unwrap()
                .encrypt_in_place_detached((&nonce).into(), &aad, &mut body),
            _ => aes_gcm::Aes256Gcm::new_from_slice(&self.key)
                .unwrap()
                .encrypt_in_place_detached((&nonce).into(), &aad, &mut body),
        }
        .unwrap();
        let mut sealed = framed.clone();
        sealed[ct..ct + body.len()].copy_from_slice(&body);
        let end = sealed.len();
        sealed[end - 16..].copy_from_slice(&tag);
        let mut opened = framed.clone();
        opened[end - 16..].copy_from_slice(&tag);
        Rec {
            framed,
            sealed,
            opened,
        }
    }

    /// Plaintext of `len` bytes with the secret in it.
    pub fn plain(i: usize, len: usize) -> Vec<u8> {
        let mut p: Vec<u8> = format!("record {i} ")
            .into_bytes()
            .into_iter()
            .chain(SECRET.iter().copied())
            .cycle()
            .take(len.max(SECRET.len() + 10))
            .collect();
        p.truncate(len.max(SECRET.len() + 10));
        p
    }
}
