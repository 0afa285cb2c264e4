//! tlsd's record engine at its limits: plaintext and ciphertext sizes, TLS
//! 1.3 padding and inner plaintexts written by another implementation, TLS
//! 1.2 overflow, and the key's record limits (key update, exhaustion).

mod record_keys;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use capnet_wire::tls::{ContentType, Version, MAX_PLAINTEXT, TAG_LEN};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use record_keys::{keys, pair, random_bytes, ALL};
use tlsd::alert::{Alert, AlertDescription};
use tlsd::record::{Cipher, RecordError, RecordOpener, RecordSealer, TrafficKeys};

#[test]
fn plaintext_limits() {
    let mut rng = StdRng::seed_from_u64(5);
    for (v, c) in ALL {
        let (mut s, _) = pair(&mut rng, v, c, 0);
        let mut out = vec![1, 2, 3];
        assert_eq!(
            s.seal(
                ContentType::ApplicationData,
                &vec![0; MAX_PLAINTEXT + 1],
                &mut out
            ),
            Err(RecordError::PlaintextTooLong(MAX_PLAINTEXT + 1))
        );
        assert_eq!(out, [1, 2, 3]);
        assert_eq!(s.seq(), 0);
    }
    // Padding: TLS 1.3 only, and the inner plaintext stays within 2^14 + 1.
    let (mut s, _) = pair(&mut rng, Version::Tls12, Cipher::Aes128Gcm, 0);
    assert_eq!(
        s.seal_padded(ContentType::ApplicationData, b"x", 1, &mut Vec::new()),
        Err(RecordError::BadPadding(1))
    );
    let (mut s, mut o) = pair(&mut rng, Version::Tls13, Cipher::Aes256Gcm, 0);
    assert_eq!(
        s.seal_padded(
            ContentType::ApplicationData,
            &[9; 100],
            MAX_PLAINTEXT - 99,
            &mut Vec::new()
        ),
        Err(RecordError::BadPadding(MAX_PLAINTEXT - 99))
    );
    let mut rec = Vec::new();
    s.seal_padded(
        ContentType::ApplicationData,
        &[9; 100],
        MAX_PLAINTEXT - 100,
        &mut rec,
    )
    .unwrap();
    assert_eq!(rec.len(), 5 + MAX_PLAINTEXT + 1 + TAG_LEN);
    let opened = o.open(&mut rec).unwrap();
    assert_eq!(opened.plaintext, 5..105);
}

/// with the RFC 8446 nonce and AAD written out here.
fn aes_gcm_tls13_record(key: &[u8], iv: &[u8; 12], seq: u64, inner: &[u8]) -> Vec<u8> {
    let mut nonce = *iv;
    for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
        *n ^= s;
    }
    let body_len = (inner.len() + 16) as u16;
    let mut rec = vec![23, 3, 3];
    rec.extend_from_slice(&body_len.to_be_bytes());
    let aad = rec.clone();
    let mut body = inner.to_vec();
    let tag = match key.len() {
        16 => aes_gcm::Aes128Gcm::new_from_slice(key)
            .unwrap()
            .encrypt_in_place_detached((&nonce).into(), &aad, &mut body),
        _ => aes_gcm::Aes256Gcm::new_from_slice(key)
            .unwrap()
            .encrypt_in_place_detached((&nonce).into(), &aad, &mut body),
    }
    .unwrap();
    rec.extend_from_slice(&body);
    rec.extend_from_slice(&tag);
    rec
}

#[test]
fn tls13_padding_and_all_zero_inner_plaintext() {
    let mut rng = StdRng::seed_from_u64(6);
    for c in [
        Cipher::Aes128Gcm,
        Cipher::Aes256Gcm,
        Cipher::Chacha20Poly1305,
    ] {
        let (mut s, mut o) = pair(&mut rng, Version::Tls13, c, 0);
        for (pt_len, pad) in [(0, 0), (0, 1), (0, 500), (10, 3), (1000, 15000), (1, 0)] {
            let pt = random_bytes(&mut rng, pt_len);
            let mut rec = Vec::new();
            s.seal_padded(ContentType::Handshake, &pt, pad, &mut rec)
                .unwrap();
            assert_eq!(rec.len(), 5 + pt_len + 1 + pad + 16);
            let opened = o.open(&mut rec).unwrap();
            assert_eq!(opened.content_type, ContentType::Handshake);
            assert_eq!(&rec[opened.plaintext], &pt[..]);
        }
    }

    // Padding written by another implementation, with a plaintext ending in
    // zero bytes that are data (before the type) and not padding.
    let key = random_bytes(&mut rng, 16);
    let iv: [u8; 12] = rng.gen();
    let k = TrafficKeys::new(Version::Tls13, Cipher::Aes128Gcm, &key, iv);
    let mut o = RecordOpener::new(k, 0).unwrap();
    let mut inner = b"data\0\0".to_vec();
    inner.push(23);
    inner.extend_from_slice(&[0; 40]);
    let mut rec = aes_gcm_tls13_record(&key, &iv, 0, &inner);
    let opened = o.open(&mut rec).unwrap();
    assert_eq!(opened.content_type, ContentType::ApplicationData);
    assert_eq!(&rec[opened.plaintext], b"data\0\0");

    // All zero: no content type at all.
    let mut rec = aes_gcm_tls13_record(&key, &iv, 1, &[0; 30]);
    let e = o.open(&mut rec).unwrap_err();
    assert!(matches!(e, RecordError::UnexpectedMessage(_)), "{e}");
    assert_eq!(e.alert(), AlertDescription::UnexpectedMessage);
    let mut rec = aes_gcm_tls13_record(&key, &iv, 1, &[]);
    assert!(matches!(
        o.open(&mut rec),
        Err(RecordError::UnexpectedMessage(_))
    ));

    // An inner type no record may have.
    let mut rec = aes_gcm_tls13_record(&key, &iv, 1, &[1, 2, 3, 20, 0, 0]);
    assert_eq!(
        o.open(&mut rec),
        Err(RecordError::UnexpectedContentType(
            ContentType::ChangeCipherSpec
        ))
    );

    // Inner plaintext of 2^14 + 2 (content 2^14, type, one byte of padding):
    // within MAX_CIPHERTEXT, but too long once opened.
    let mut inner = vec![7; MAX_PLAINTEXT];
    inner.extend_from_slice(&[23, 0]);
    let mut rec = aes_gcm_tls13_record(&key, &iv, 1, &inner);
    assert_eq!(
        o.open(&mut rec),
        Err(RecordError::PlaintextOverflow(MAX_PLAINTEXT + 2))
    );
    assert_eq!(
        RecordError::PlaintextOverflow(1).alert(),
        AlertDescription::RecordOverflow
    );
    // 2^14 + 1 is fine.
    let mut rec = aes_gcm_tls13_record(&key, &iv, 1, &inner[..MAX_PLAINTEXT + 1]);
    assert_eq!(o.open(&mut rec).unwrap().plaintext.len(), MAX_PLAINTEXT);
}

#[test]
fn tls12_plaintext_overflow() {
    // TLS 1.2 AES-GCM with 2^14 + 1 plaintext bytes, sealed independently.
    let mut rng = StdRng::seed_from_u64(7);
    let key = random_bytes(&mut rng, 16);
    let iv: [u8; 12] = rng.gen();
    let seq = 5u64;
    let len = MAX_PLAINTEXT + 1;
    let explicit: [u8; 8] = rng.gen();
    let mut nonce = [0; 12];
    nonce[..4].copy_from_slice(&iv[..4]);
    nonce[4..].copy_from_slice(&explicit);
    let mut aad = seq.to_be_bytes().to_vec();
    aad.extend_from_slice(&[23, 3, 3]);
    aad.extend_from_slice(&(len as u16).to_be_bytes());
    let mut body = vec![0x41; len];
    let tag = aes_gcm::Aes128Gcm::new_from_slice(&key)
        .unwrap()
        .encrypt_in_place_detached((&nonce).into(), &aad, &mut body)
        .unwrap();
    let mut rec = vec![23, 3, 3];
    rec.extend_from_slice(&((8 + len + 16) as u16).to_be_bytes());
    rec.extend_from_slice(&explicit);
    rec.extend_from_slice(&body);
    rec.extend_from_slice(&tag);
    let k = TrafficKeys::new(Version::Tls12, Cipher::Aes128Gcm, &key, iv);
    let mut o = RecordOpener::new(k, seq).unwrap();
    // Authentic (the peer's explicit nonce is used as received), too long.
    assert_eq!(
        o.open(&mut rec.clone()),
        Err(RecordError::PlaintextOverflow(len))
    );
    let mut wrong_seq = RecordOpener::new(
        TrafficKeys::new(Version::Tls12, Cipher::Aes128Gcm, &key, iv),
        seq + 1,
    )
    .unwrap();
    assert_eq!(wrong_seq.open(&mut rec), Err(RecordError::BadRecordMac));
}

#[test]
fn key_limits() {
    let mut rng = StdRng::seed_from_u64(8);
    let aes_limit = 1u64 << 24;
    assert_eq!(Cipher::Aes128Gcm.confidentiality_limit(), aes_limit);

    // TLS 1.3: a key update is due when the next record is the last one.
    let (mut s, _) = pair(&mut rng, Version::Tls13, Cipher::Aes128Gcm, aes_limit - 3);
    let mut out = Vec::new();
    assert!(!s.needs_key_update());
    s.seal(ContentType::ApplicationData, b"a", &mut out)
        .unwrap();
    assert!(!s.needs_key_update());
    s.seal(ContentType::ApplicationData, b"a", &mut out)
        .unwrap();
    assert!(s.needs_key_update());
    assert!(!s.exhausted());
    // Ignoring it does not stop TLS 1.3 (as rustls): only the counter does.
    s.seal(ContentType::ApplicationData, b"a", &mut out)
        .unwrap();
    assert!(s.needs_key_update());

    // The new key starts from 0, and the peer's opener follows.
    let k1 = keys(&mut rng, Version::Tls13, Cipher::Aes128Gcm);
    let k2 = keys(&mut rng, Version::Tls13, Cipher::Aes128Gcm);
    let mut s = RecordSealer::new(k1.clone(), aes_limit - 1).unwrap();
    let mut o = RecordOpener::new(k1, aes_limit - 1).unwrap();
    assert!(s.needs_key_update());
    let mut rec = Vec::new();
    s.seal(ContentType::Handshake, b"key update", &mut rec)
        .unwrap();
    assert!(o.open(&mut rec).is_ok());
    s.update_keys(k2.clone()).unwrap();
    o.update_keys(k2).unwrap();
    assert_eq!((s.seq(), o.seq()), (0, 0));
    assert!(!s.needs_key_update());
    let mut rec = Vec::new();
    s.seal(ContentType::ApplicationData, b"after", &mut rec)
        .unwrap();
    let opened = o.open(&mut rec).unwrap();
    assert_eq!(&rec[opened.plaintext], b"after");
    // Another cipher is not a key update.
    let k3 = keys(&mut rng, Version::Tls13, Cipher::Aes256Gcm);
    assert_eq!(s.update_keys(k3), Err(RecordError::KeyUpdateMismatch));

    // TLS 1.3 at the counter's end.
    let (mut s, _) = pair(
        &mut rng,
        Version::Tls13,
        Cipher::Chacha20Poly1305,
        u64::MAX - 3,
    );
    // Far past rustls's soft limit.
    assert!(s.needs_key_update());
    assert_eq!(s.records_left(), 2);
    assert!(!s.exhausted());
    s.seal(ContentType::ApplicationData, b"x", &mut out)
        .unwrap();
    assert!(s.exhausted());
    s.seal(ContentType::Alert, &[1, 0], &mut out).unwrap();
    let before = out.len();
    assert_eq!(
        s.seal(ContentType::ApplicationData, b"x", &mut out),
        Err(RecordError::SequenceExhausted)
    );
    assert_eq!(out.len(), before);

    // TLS 1.2 has no key update: it ends at the confidentiality limit,
    // with one record left for close_notify.
    for c in [Cipher::Aes128Gcm, Cipher::Aes256Gcm] {
        let (mut s, _) = pair(&mut rng, Version::Tls12, c, aes_limit - 2);
        assert!(!s.exhausted());
        assert!(!s.needs_key_update());
        s.seal(ContentType::ApplicationData, b"x", &mut out)
            .unwrap();
        assert!(s.exhausted());
        assert!(!s.needs_key_update());
        s.seal(
            ContentType::Alert,
            &Alert::close_notify().encode(),
            &mut out,
        )
        .unwrap();
        assert_eq!(
            s.seal(ContentType::ApplicationData, b"x", &mut out),
            Err(RecordError::SequenceExhausted)
        );
        assert_eq!(
            s.frame_for_device(ContentType::ApplicationData, b"x", &mut out),
            Err(RecordError::SequenceExhausted)
        );
        let k = keys(&mut rng, Version::Tls12, c);
        assert_eq!(s.update_keys(k), Err(RecordError::KeyUpdateMismatch));
    }
    let (s, _) = pair(
        &mut rng,
        Version::Tls12,
        Cipher::Chacha20Poly1305,
        aes_limit,
    );
    assert!(!s.exhausted());

    // The opener cannot count past the last number either.
    let (mut s, mut o) = pair(&mut rng, Version::Tls13, Cipher::Aes128Gcm, u64::MAX);
    let _ = s.seal(ContentType::ApplicationData, b"x", &mut out);
    let mut rec = vec![23, 3, 3, 0, 17];
    rec.extend_from_slice(&[0; 17]);
    assert_eq!(o.open(&mut rec), Err(RecordError::SequenceExhausted));
}
