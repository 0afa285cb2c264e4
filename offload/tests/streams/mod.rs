//! Test streams for the NIC TLS engines: records framed as tlsd writes them
//! in offload mode, sealed whole by an independent AES-GCM (the aes-gcm
//! crate), and opened as the RX engine hands them up; random records and
//! random segmentations of a stream.
#![allow(dead_code)]

use aes_gcm::aead::{AeadInPlace, KeyInit};
use capnet_offload::gcm::GcmKey;
use capnet_offload::tls::TlsParams;
use capnet_wire::tls::{self as wire_tls, ContentType, RecordHeader, Version, HEADER_LEN, TAG_LEN};
use rand::rngs::StdRng;
use rand::Rng;

/// One record of a test stream: where it starts in the stream, its total
/// length, and where its tag starts.
#[derive(Clone, Copy, Debug)]
pub struct Rec {
    pub start: usize,
    pub len: usize,
}

impl Rec {
    pub fn tag_start(&self) -> usize {
        self.start + self.len - TAG_LEN
    }
}

/// A stream of records three ways: framed (what tlsd writes in offload
/// mode), sealed (what software produces), opened (what the RX engine hands
/// up for a segment it marks: plaintext where the ciphertext was, the rest
/// as on the wire).
pub struct Stream {
    pub framed: Vec<u8>,
    pub sealed: Vec<u8>,
    pub opened: Vec<u8>,
    pub recs: Vec<Rec>,
}

pub struct Setup {
    pub version: Version,
    pub key: Vec<u8>,
    pub iv: [u8; 12],
    pub tcp_seq: u32,
    pub rec_seq: u64,
}

impl Setup {
    pub fn random(rng: &mut StdRng, version: Version, key_len: usize) -> Setup {
        let tcp_seq = if rng.gen_bool(0.3) {
            // Close to the wrap of the sequence space.
            u32::MAX - rng.gen_range(0..40_000)
        } else {
            rng.gen()
        };
        Setup {
            version,
            key: (0..key_len).map(|_| rng.gen()).collect(),
            iv: rng.gen(),
            tcp_seq,
            rec_seq: rng.gen_range(0..1000),
        }
    }

    pub fn params(&self) -> TlsParams {
        TlsParams {
            version: self.version,
            key: GcmKey::new(&self.key).unwrap(),
            iv: self.iv,
            tcp_seq: self.tcp_seq,
            rec_seq: self.rec_seq,
        }
    }

    pub fn seq(&self, off: usize) -> u32 {
        self.tcp_seq.wrapping_add(off as u32)
    }

    /// Seals `data` whole with the aes-gcm crate; returns the tag.
    pub fn reference_seal(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; 16] {
        let tag = match self.key.len() {
            16 => aes_gcm::Aes128Gcm::new_from_slice(&self.key)
                .unwrap()
                .encrypt_in_place_detached(nonce.into(), aad, data),
            _ => aes_gcm::Aes256Gcm::new_from_slice(&self.key)
                .unwrap()
                .encrypt_in_place_detached(nonce.into(), aad, data),
        };
        tag.unwrap().into()
    }

    /// Builds the stream of `records` (content type, plaintext).
    pub fn stream(&self, records: &[(ContentType, Vec<u8>)]) -> Stream {
        let v = self.version;
        let ct_off = wire_tls::ciphertext_offset(v);
        let mut s = Stream {
            framed: Vec::new(),
            sealed: Vec::new(),
            opened: Vec::new(),
            recs: Vec::new(),
        };
        for (i, (ty, pt)) in records.iter().enumerate() {
            let seq = self.rec_seq + i as u64;
            let mut inner = pt.clone();
            let outer = match v {
                Version::Tls12 => *ty,
                Version::Tls13 => {
                    inner.push((*ty).into());
                    ContentType::ApplicationData
                }
            };
            let body_len = ct_off - HEADER_LEN + inner.len() + TAG_LEN;
            let mut framed = vec![0u8; HEADER_LEN + body_len];
            RecordHeader {
                content_type: outer,
                body_len,
            }
            .emit(&mut framed);
            if v == Version::Tls12 {
                framed[HEADER_LEN..ct_off]
                    .copy_from_slice(&wire_tls::tls12_explicit_nonce(&self.iv, seq));
            }
            framed[ct_off..ct_off + inner.len()].copy_from_slice(&inner);
            let nonce = wire_tls::nonce(v, &self.iv, seq);
            let aad = wire_tls::aad(v, seq, outer, body_len);
            let mut sealed = framed.clone();
            let tag_at = sealed.len() - TAG_LEN;
            let tag = self.reference_seal(&nonce, aad.as_ref(), &mut sealed[ct_off..tag_at]);
            sealed[tag_at..].copy_from_slice(&tag);
            let mut opened = framed.clone();
            opened[tag_at..].copy_from_slice(&tag);

            s.recs.push(Rec {
                start: s.framed.len(),
                len: framed.len(),
            });
            s.framed.extend_from_slice(&framed);
            s.sealed.extend_from_slice(&sealed);
            s.opened.extend_from_slice(&opened);
        }
        s
    }
}

pub fn random_records(rng: &mut StdRng, n: usize, max_len: usize) -> Vec<(ContentType, Vec<u8>)> {
    (0..n)
        .map(|_| {
            let ty = match rng.gen_range(0..10) {
                0 => ContentType::Alert,
                1 => ContentType::Handshake,
                _ => ContentType::ApplicationData,
            };
            let len = if rng.gen_bool(0.2) {
                rng.gen_range(0..8)
            } else {
                rng.gen_range(0..=max_len)
            };
            (ty, (0..len).map(|_| rng.gen()).collect())
        })
        .collect()
}

/// Cuts `0..len` into segments of 1..=max bytes.
pub fn segments(rng: &mut StdRng, len: usize, max: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut a = 0;
    while a < len {
        let b = (a + rng.gen_range(1..=max)).min(len);
        out.push((a, b));
        a = b;
    }
    out
}

pub const CASES: [(Version, usize); 4] = [
    (Version::Tls12, 16),
    (Version::Tls12, 32),
    (Version::Tls13, 16),
    (Version::Tls13, 32),
];
