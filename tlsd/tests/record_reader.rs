//! tlsd's record reader, which cuts a TCP stream into whole records, and
//! the NIC's part in them: the marks it carries per record, records the
//! NIC decrypted partly or fully (opened with the GCM keystream), and
//! records framed for the device to seal.

mod record_keys;

use std::ops::Range;

use capnet_offload::gcm::{GcmKey, GcmRecord};
use capnet_wire::tls::{ContentType, Version, MAX_CIPHERTEXT, MAX_PLAINTEXT, TAG_LEN};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use record_keys::{header_len, keys, pair, random_bytes, ALL};
use tlsd::alert::AlertDescription;
use tlsd::record::{Cipher, Decryption, RecordError, RecordOpener, RecordReader, RecordSealer};

#[test]
fn reader_rejects_oversized_header_before_buffering() {
    let over = (MAX_CIPHERTEXT + 1) as u16;
    let mut r = RecordReader::new();
    let [hi, lo] = over.to_be_bytes();
    r.push(&[23, 3, 3], false);
    assert!(r.next_record().unwrap().is_none());
    r.push(&[hi], false);
    assert!(r.next_record().unwrap().is_none());
    r.push(&[lo], false);
    let e = r.next_record().unwrap_err();
    assert_eq!(e, RecordError::RecordOverflow(MAX_CIPHERTEXT + 1));
    assert_eq!(e.alert(), AlertDescription::RecordOverflow);
    assert!(e.to_string().contains(&(MAX_CIPHERTEXT + 1).to_string()));
    assert_eq!(r.buffered(), 5);
    // The stream is dead for good, whatever follows.
    r.push(&[0; 100], false);
    assert_eq!(r.next_record().unwrap_err(), e);

    // Exactly MAX_CIPHERTEXT waits for its body.
    let [hi, lo] = (MAX_CIPHERTEXT as u16).to_be_bytes();
    let mut r = RecordReader::new();
    r.push(&[23, 3, 3, hi, lo], false);
    assert!(r.next_record().unwrap().is_none());
    r.push(&vec![0; MAX_CIPHERTEXT - 1], false);
    assert!(r.next_record().unwrap().is_none());
    r.push(&[0], false);
    assert_eq!(
        r.next_record().unwrap().unwrap().bytes.len(),
        5 + MAX_CIPHERTEXT
    );

    // Not TLS at all.
    let mut r = RecordReader::new();
    r.push(b"GET / HTTP/1.1\r\n", false);
    let e = r.next_record().unwrap_err();
    assert_eq!(e, RecordError::BadVersion(u16::from_be_bytes(*b"ET")));
    assert_eq!(e.alert(), AlertDescription::DecodeError);
}

/// Seals `n` records of random sizes; returns the stream, each record's
/// plaintext and type.
fn sealed_stream(
    rng: &mut StdRng,
    s: &mut RecordSealer,
    n: usize,
) -> (Vec<u8>, Vec<(ContentType, Vec<u8>)>) {
    let mut stream = Vec::new();
    let mut sent = Vec::new();
    for _ in 0..n {
        let len = match rng.gen_range(0..10) {
            0 => MAX_PLAINTEXT,
            1 => 0,
            2..=4 => rng.gen_range(1..3000),
            _ => rng.gen_range(1..200),
        };
        let ty = if rng.gen_bool(0.1) {
            ContentType::Handshake
        } else {
            ContentType::ApplicationData
        };
        let pt = random_bytes(rng, len);
        s.seal(ty, &pt, &mut stream).unwrap();
        sent.push((ty, pt));
    }
    (stream, sent)
}

#[test]
fn reader_with_random_splits() {
    let mut rng = StdRng::seed_from_u64(9);
    for round in 0..60 {
        let (v, c) = ALL[round % ALL.len()];
        let start = rng.gen_range(0..1000);
        let (mut s, mut o) = pair(&mut rng, v, c, start);
        let (stream, sent) = sealed_stream(&mut rng, &mut s, 40);
        let largest = sent.iter().map(|(_, p)| p.len()).max().unwrap() + 29;
        let mut r = RecordReader::new();
        let mut got = Vec::new();
        let mut at = 0;
        while at < stream.len() {
            let piece = match rng.gen_range(0..4) {
                0 => rng.gen_range(0..=5),
                1 => rng.gen_range(0..=1448),
                2 => rng.gen_range(0..=9000),
                _ => rng.gen_range(0..=40000),
            }
            .min(stream.len() - at);
            r.push(&stream[at..at + piece], false);
            at += piece;
            while let Some(mut rec) = r.next_record().unwrap() {
                assert_eq!(rec.decryption, Decryption::None);
                let opened = o.open_in(&mut rec).unwrap();
                got.push((opened.content_type, rec.bytes[opened.plaintext].to_vec()));
            }
            // Drained: less than one record is left.
            assert!(r.buffered() < largest, "round {round}: {}", r.buffered());
        }
        assert_eq!(r.buffered(), 0);
        assert_eq!(got.len(), sent.len(), "round {round}");
        assert!(got == sent, "round {round}");
        assert_eq!(o.seq(), s.seq());
    }
}

#[test]
fn reader_carries_marks_per_record() {
    let mut rng = StdRng::seed_from_u64(10);
    for round in 0..200 {
        // Records of random bytes: only the framing matters here.
        let mut stream = Vec::new();
        let mut bounds = Vec::new();
        for _ in 0..rng.gen_range(1..12) {
            let body = rng.gen_range(0..3000usize);
            let start = stream.len();
            stream.extend_from_slice(&[23, 3, 3]);
            stream.extend_from_slice(&(body as u16).to_be_bytes());
            stream.extend(random_bytes(&mut rng, body));
            bounds.push(start..stream.len());
        }
        let mut marked = vec![false; stream.len()];
        let mut r = RecordReader::new();
        let mut got = Vec::new();
        let mut at = 0;
        while at < stream.len() {
            let piece = rng.gen_range(0..=1500).min(stream.len() - at);
            let dec = rng.gen_bool(0.6);
            marked[at..at + piece].fill(dec);
            r.push(&stream[at..at + piece], dec);
            at += piece;
            // Sometimes several pushes before reading.
            if rng.gen_bool(0.3) {
                continue;
            }
            while let Some(rec) = r.next_record().unwrap() {
                got.push((rec.bytes.to_vec(), rec.decryption.clone()));
            }
        }
        while let Some(rec) = r.next_record().unwrap() {
            got.push((rec.bytes.to_vec(), rec.decryption.clone()));
        }
        assert_eq!(got.len(), bounds.len(), "round {round}");
        for ((bytes, dec), b) in got.iter().zip(&bounds) {
            assert_eq!(&bytes[..], &stream[b.clone()]);
            let m = &marked[b.clone()];
            let want = if m.iter().all(|&x| x) {
                Decryption::Full
            } else if m.iter().all(|&x| !x) {
                Decryption::None
            } else {
                // Maximal runs of marked bytes.
                let mut runs = Vec::new();
                let mut i = 0;
                while i < m.len() {
                    if m[i] {
                        let s = i;
                        while i < m.len() && m[i] {
                            i += 1;
                        }
                        runs.push(s..i);
                    } else {
                        i += 1;
                    }
                }
                Decryption::Partial(runs)
            };
            assert_eq!(dec, &want, "round {round}");
        }
    }
}

#[test]
fn partly_and_fully_decrypted_records_with_the_gcm_keystream() {
    // The NIC's decryption primitive (capnet_offload::gcm) applied to parts
    // of records, as the RX engine does to the segments it processes.
    let mut rng = StdRng::seed_from_u64(11);
    for (v, c) in ALL.into_iter().filter(|(_, c)| c.offloadable()) {
        let k = keys(&mut rng, v, c);
        let gk = GcmKey::new(&k.key).unwrap();
        let mut s = RecordSealer::new(k.clone(), 100).unwrap();
        let mut o = RecordOpener::new(k.clone(), 100).unwrap();
        let ct_off = if v == Version::Tls12 { 13 } else { 5 };
        for i in 0..30u64 {
            let len = rng.gen_range(1..5000);
            let pt = random_bytes(&mut rng, len);
            let mut rec = Vec::new();
            s.seal(ContentType::ApplicationData, &pt, &mut rec).unwrap();
            let seq = 100 + i;
            let mut nonce = k.iv;
            for (n, b) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
                *n ^= b;
            }
            let ks = GcmRecord::new(&gk, &nonce, &[]);
            let ct_end = rec.len() - TAG_LEN;
            match i % 3 {
                0 => {
                    // Everything decrypted by the "NIC".
                    ks.apply_keystream(0, &mut rec[ct_off..ct_end]);
                    let opened = o.accept_decrypted(&mut rec).unwrap();
                    assert_eq!(&rec[opened.plaintext], &pt[..]);
                }
                _ => {
                    // Random ranges over the whole record (header and tag
                    // included: the opener must ignore those parts).
                    let mut cuts: Vec<usize> =
                        (0..6).map(|_| rng.gen_range(0..=rec.len())).collect();
                    cuts.sort_unstable();
                    let ranges: Vec<_> = cuts
                        .chunks(2)
                        .map(|w| w[0]..w[1])
                        .filter(|r| !r.is_empty())
                        .collect();
                    for r in &ranges {
                        let (a, b) = (r.start.max(ct_off), r.end.min(ct_end));
                        if a < b {
                            ks.apply_keystream(a - ct_off, &mut rec[a..b]);
                        }
                    }
                    let opened = o.open_partly_decrypted(&mut rec, &ranges).unwrap();
                    assert_eq!(&rec[opened.plaintext], &pt[..], "{v:?} {c:?} {ranges:?}");
                }
            }
        }
        // Overlapping or unsorted ranges are refused before touching anything.
        let mut rec = Vec::new();
        s.seal(ContentType::ApplicationData, &[1; 64], &mut rec)
            .unwrap();
        let copy = rec.clone();
        for bad in [
            vec![10..20, 15..30],
            vec![30..40, 10..20],
            vec![Range { start: 20, end: 10 }],
        ] {
            assert_eq!(
                o.open_partly_decrypted(&mut rec, &bad),
                Err(RecordError::BadRanges)
            );
            assert_eq!(rec, copy);
        }
    }
    // ChaCha: no NIC does it, so no marks can be honoured.
    let (mut s, mut o) = pair(&mut rng, Version::Tls13, Cipher::Chacha20Poly1305, 0);
    let mut rec = Vec::new();
    s.seal(ContentType::ApplicationData, b"abc", &mut rec)
        .unwrap();
    let unsupported = RecordError::UnsupportedForDevice(Cipher::Chacha20Poly1305);
    assert_eq!(
        o.accept_decrypted(&mut rec.clone()),
        Err(unsupported.clone())
    );
    assert_eq!(
        o.open_partly_decrypted(&mut rec.clone(), &[Range { start: 5, end: 6 }]),
        Err(unsupported.clone())
    );
    assert_eq!(
        s.frame_for_device(ContentType::ApplicationData, b"abc", &mut Vec::new()),
        Err(unsupported)
    );
    assert!(o.open(&mut rec).is_ok());
}

#[test]
fn device_framing_layout() {
    let mut rng = StdRng::seed_from_u64(12);
    for (v, c) in ALL.into_iter().filter(|(_, c)| c.offloadable()) {
        let k = keys(&mut rng, v, c);
        let mut s = RecordSealer::new(k.clone(), 0x0012_0304).unwrap();
        let pt = random_bytes(&mut rng, 300);
        let mut out = vec![9];
        s.frame_for_device(ContentType::Alert, &pt, &mut out)
            .unwrap();
        assert_eq!(s.seq(), 0x0012_0305);
        let rec = &out[1..];
        assert_eq!(header_len(rec), rec.len());
        assert!(rec.ends_with(&[0; 16]));
        match v {
            Version::Tls12 => {
                assert_eq!(rec[0], 21);
                let mut explicit = [0u8; 8];
                for (i, e) in explicit.iter_mut().enumerate() {
                    *e = k.iv[4 + i] ^ 0x0012_0304u64.to_be_bytes()[i];
                }
                assert_eq!(&rec[5..13], &explicit);
                assert_eq!(&rec[13..313], &pt[..]);
                assert_eq!(rec.len(), 5 + 8 + 300 + 16);
            }
            Version::Tls13 => {
                assert_eq!(rec[0], 23);
                assert_eq!(&rec[5..305], &pt[..]);
                assert_eq!(rec[305], 21);
                assert_eq!(rec.len(), 5 + 300 + 1 + 16);
            }
        }
    }
}
