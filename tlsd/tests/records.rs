//! tlsd's software record engine: round trips, sequence numbers, tampering,
//! keys, RFC 8448's records byte for byte, and alerts. Limits are in
//! `record_limits.rs`, the stream reader and the NIC's part in
//! `record_reader.rs`.

mod record_keys;

use capnet_wire::tls::{ContentType, Version, MAX_PLAINTEXT};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use record_keys::{header_len, keys, pair, random_bytes, ALL};
use tlsd::alert::{Alert, AlertDescription, AlertError, AlertLevel};
use tlsd::record::{Cipher, RecordError, RecordOpener, RecordSealer, TrafficKeys};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn round_trip_every_version_and_cipher() {
    let mut rng = StdRng::seed_from_u64(1);
    for (v, c) in ALL {
        let (mut s, mut o) = pair(&mut rng, v, c, 0);
        let types = [
            ContentType::ApplicationData,
            ContentType::Handshake,
            ContentType::Alert,
        ];
        for (i, len) in [
            0,
            1,
            15,
            16,
            17,
            100,
            1000,
            MAX_PLAINTEXT - 1,
            MAX_PLAINTEXT,
        ]
        .into_iter()
        .enumerate()
        {
            let ty = types[i % types.len()];
            let pt = random_bytes(&mut rng, len);
            // Appends after what is already there.
            let mut out = vec![0xee; 3];
            s.seal(ty, &pt, &mut out).unwrap();
            assert_eq!(&out[..3], &[0xee; 3]);
            let rec = &mut out[3..];
            let overhead = match (v, c) {
                (Version::Tls13, _) => 5 + 1 + 16,
                (Version::Tls12, Cipher::Chacha20Poly1305) => 5 + 16,
                (Version::Tls12, _) => 5 + 8 + 16,
            };
            assert_eq!(rec.len(), len + overhead, "{v:?} {c:?}");
            assert_eq!(header_len(rec), rec.len());
            assert_eq!(&rec[1..3], &[3, 3]);
            let outer = if v == Version::Tls13 {
                ContentType::ApplicationData
            } else {
                ty
            };
            assert_eq!(rec[0], u8::from(outer));
            if len >= 16 {
                // Encrypted: the plaintext does not show.
                let at = overhead - 16;
                assert_ne!(&rec[at..at + 16], &pt[..16]);
            }
            let opened = o.open(rec).unwrap();
            assert_eq!(opened.content_type, ty, "{v:?} {c:?} len {len}");
            assert_eq!(&rec[opened.plaintext], &pt[..], "{v:?} {c:?} len {len}");
            assert_eq!(s.seq(), i as u64 + 1);
            assert_eq!(o.seq(), i as u64 + 1);
        }
    }
}

#[test]
fn sequence_numbers_matter() {
    let mut rng = StdRng::seed_from_u64(2);
    for (v, c) in ALL {
        let k = keys(&mut rng, v, c);
        // TLS 1.2 AES-GCM keys end at 2^24 records.
        let start = rng.gen_range(0..1u64 << 23);
        let mut s = RecordSealer::new(k.clone(), start).unwrap();
        let mut records = Vec::new();
        for i in 0..4u8 {
            let mut out = Vec::new();
            s.seal(ContentType::ApplicationData, &[i; 40], &mut out)
                .unwrap();
            records.push(out);
        }
        assert_eq!(s.seq(), start + 4);
        // Same plaintext, different records.
        let mut s2 = RecordSealer::new(k.clone(), start).unwrap();
        let mut again = Vec::new();
        s2.seal(ContentType::ApplicationData, &[0; 40], &mut again)
            .unwrap();
        assert_eq!(again, records[0]);
        s2.seal(ContentType::ApplicationData, &[0; 40], &mut again)
            .unwrap();
        assert_ne!(again[records[0].len()..], records[0][..]);

        // One record skipped: the opener expects the wrong number.
        let mut o = RecordOpener::new(k.clone(), start).unwrap();
        let mut r = records[0].clone();
        o.open(&mut r).unwrap();
        let mut r = records[2].clone();
        assert_eq!(
            o.open(&mut r),
            Err(RecordError::BadRecordMac),
            "{v:?} {c:?}"
        );
        // A failure does not advance the count.
        assert_eq!(o.seq(), start + 1);
        let mut r = records[1].clone();
        assert!(o.open(&mut r).is_ok());

        // Off by one either way.
        for wrong in [start + 1, start.wrapping_sub(1)] {
            let mut o = RecordOpener::new(k.clone(), wrong).unwrap();
            let mut r = records[0].clone();
            assert_eq!(o.open(&mut r), Err(RecordError::BadRecordMac));
        }
        // A different key.
        let mut o = RecordOpener::new(keys(&mut rng, v, c), start).unwrap();
        let mut r = records[0].clone();
        assert_eq!(o.open(&mut r), Err(RecordError::BadRecordMac));
    }
}

#[test]
fn any_flipped_bit_fails() {
    let mut rng = StdRng::seed_from_u64(3);
    for (v, c) in ALL {
        let k = keys(&mut rng, v, c);
        let mut s = RecordSealer::new(k.clone(), 7).unwrap();
        let mut rec = Vec::new();
        s.seal(
            ContentType::ApplicationData,
            &random_bytes(&mut rng, 33),
            &mut rec,
        )
        .unwrap();
        let mut o = RecordOpener::new(k.clone(), 7).unwrap();
        assert!(o.open(&mut rec.clone()).is_ok());
        // Body and tag (TLS 1.2 AES-GCM: the explicit nonce too).
        for byte in 5..rec.len() {
            for bit in 0..8 {
                let mut bad = rec.clone();
                bad[byte] ^= 1 << bit;
                let mut o = RecordOpener::new(k.clone(), 7).unwrap();
                assert_eq!(
                    o.open(&mut bad),
                    Err(RecordError::BadRecordMac),
                    "{v:?} {c:?} byte {byte} bit {bit}"
                );
            }
        }
        // Header: some error, whichever check catches it first.
        for byte in 0..5 {
            for bit in 0..8 {
                let mut bad = rec.clone();
                bad[byte] ^= 1 << bit;
                let mut o = RecordOpener::new(k.clone(), 7).unwrap();
                assert!(o.open(&mut bad).is_err(), "{v:?} {c:?} header {byte}.{bit}");
            }
        }
    }
}

#[test]
fn not_one_whole_record() {
    let mut rng = StdRng::seed_from_u64(4);
    let (mut s, mut o) = pair(&mut rng, Version::Tls13, Cipher::Aes128Gcm, 0);
    let mut rec = Vec::new();
    s.seal(ContentType::ApplicationData, b"hello", &mut rec)
        .unwrap();
    let mut longer = rec.clone();
    longer.push(0);
    assert!(matches!(o.open(&mut longer), Err(RecordError::Decode(_))));
    let n = rec.len();
    assert!(matches!(
        o.open(&mut rec[..n - 1]),
        Err(RecordError::Decode(_))
    ));
    assert!(matches!(o.open(&mut rec[..3]), Err(RecordError::Decode(_))));
    // Too short for a tag: a decryption failure, as in rustls.
    let mut short = vec![23, 3, 3, 0, 16];
    short.extend_from_slice(&[0; 16]);
    assert_eq!(o.open(&mut short), Err(RecordError::BadRecordMac));
    // TLS 1.3 hides the type: any other outer type is unexpected.
    let mut hs = rec.clone();
    hs[0] = 22;
    assert_eq!(
        o.open(&mut hs),
        Err(RecordError::UnexpectedContentType(ContentType::Handshake))
    );
    let mut bad = rec.clone();
    bad[1] = 0x47;
    assert_eq!(o.open(&mut bad), Err(RecordError::BadVersion(0x4703)));
    // A TLS version, but not the one after the handshake.
    let mut old = rec.clone();
    old[2] = 1;
    assert_eq!(o.open(&mut old), Err(RecordError::BadVersion(0x0301)));
    assert_eq!(o.seq(), 0);
    assert_eq!(o.open(&mut rec).unwrap().plaintext.len(), 5);

    // TLS 1.2: change_cipher_spec after the handshake is unexpected.
    let (mut s, mut o) = pair(&mut rng, Version::Tls12, Cipher::Aes128Gcm, 0);
    let mut rec = Vec::new();
    s.seal(ContentType::ChangeCipherSpec, &[1], &mut rec)
        .unwrap();
    assert_eq!(
        o.open(&mut rec),
        Err(RecordError::UnexpectedContentType(
            ContentType::ChangeCipherSpec
        ))
    );
}

#[test]
fn bad_keys() {
    for (v, c) in ALL {
        for len in [0, 15, 16, 24, 32, 33] {
            let k = TrafficKeys::new(v, c, &vec![1; len], [0; 12]);
            let ok = len == c.key_len();
            assert_eq!(RecordSealer::new(k.clone(), 0).is_ok(), ok);
            match RecordOpener::new(k, 0) {
                Ok(_) => assert!(ok),
                Err(e) => {
                    assert_eq!(e, RecordError::BadKey { cipher: c, len });
                    assert!(e.to_string().contains(&len.to_string()));
                }
            }
        }
    }
}

#[test]
fn debug_never_shows_the_key() {
    let key = hex("9f02283b6c9c07efc26bb9f2ac92e356");
    let k = TrafficKeys::new(Version::Tls13, Cipher::Aes128Gcm, &key, [0x5a; 12]);
    let shown = format!("{k:?}");
    assert!(shown.contains("Aes128Gcm"), "{shown}");
    for pattern in ["9f", "159", "0x9f", "90", "[159"] {
        assert!(!shown.contains(pattern), "{shown}");
    }
    let s = RecordSealer::new(k.clone(), 3).unwrap();
    let o = RecordOpener::new(k, 3).unwrap();
    for shown in [format!("{s:?}"), format!("{o:?}")] {
        assert!(shown.contains("seq: 3"), "{shown}");
        assert!(!shown.contains("159") && !shown.contains("9f"), "{shown}");
    }
}

/// An independent TLS 1.3 AES-GCM sealer over an arbitrary inner plaintext,

#[test]
fn rfc8448_simple_1rtt_records() {
    // RFC 8448 3: the server's application traffic key and IV; its first
    // record (seq 0) is the NewSessionTicket, its second (seq 1) the 50 bytes
    // of application data.
    let key = hex("9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56");
    let iv: [u8; 12] = hex("cf 78 2b 88 dd 83 54 9a ad f1 e9 84")
        .try_into()
        .unwrap();
    let ticket = hex("04 00 00 c9 00 00 00 1e fa d6 aa c5 02 00
         00 00 b2 2c 03 5d 82 93 59 ee 5f f7 af 4e c9 00 00 00 00 26 2a
         64 94 dc 48 6d 2c 8a 34 cb 33 fa 90 bf 1b 00 70 ad 3c 49 88 83
         c9 36 7c 09 a2 be 78 5a bc 55 cd 22 60 97 a3 a9 82 11 72 83 f8
         2a 03 a1 43 ef d3 ff 5d d3 6d 64 e8 61 be 7f d6 1d 28 27 db 27
         9c ce 14 50 77 d4 54 a3 66 4d 4e 6d a4 d2 9e e0 37 25 a6 a4 da
         fc d0 fc 67 d2 ae a7 05 29 51 3e 3d a2 67 7f a5 90 6c 5b 3f 7d
         8f 92 f2 28 bd a4 0d da 72 14 70 f9 fb f2 97 b5 ae a6 17 64 6f
         ac 5c 03 27 2e 97 07 27 c6 21 a7 91 41 ef 5f 7d e6 50 5e 5b fb
         c3 88 e9 33 43 69 40 93 93 4a e4 d3 57 00 08 00 2a 00 04 00 00
         04 00");
    let ticket_record = hex("17 03 03 00 de 3a 6b 8f 90 41 4a 97
         d6 95 9c 34 87 68 0d e5 13 4a 2b 24 0e 6c ff ac 11 6e 95 d4 1d
         6a f8 f6 b5 80 dc f3 d1 1d 63 c7 58 db 28 9a 01 59 40 25 2f 55
         71 3e 06 1d c1 3e 07 88 91 a3 8e fb cf 57 53 ad 8e f1 70 ad 3c
         73 53 d1 6d 9d a7 73 b9 ca 7f 2b 9f a1 b6 c0 d4 a3 d0 3f 75 e0
         9c 30 ba 1e 62 97 2a c4 6f 75 f7 b9 81 be 63 43 9b 29 99 ce 13
         06 46 15 13 98 91 d5 e4 c5 b4 06 f1 6e 3f c1 81 a7 7c a4 75 84
         00 25 db 2f 0a 77 f8 1b 5a b0 5b 94 c0 13 46 75 5f 69 23 2c 86
         51 9d 86 cb ee ac 87 aa c3 47 d1 43 f9 60 5d 64 f6 50 db 4d 02
         3e 70 e9 52 ca 49 fe 51 37 12 1c 74 bc 26 97 68 7e 24 87 46 d6
         df 35 30 05 f3 bc e1 86 96 12 9c 81 53 55 6b 3b 6c 67 79 b3 7b
         f1 59 85 68 4f");
    let app_data: Vec<u8> = (0u8..50).collect();
    let server_app_record = hex("17 03 03 00 43 2e 93 7e 11 ef 4a c7
         40 e5 38 ad 36 00 5f c4 a4 69 32 fc 32 25 d0 5f 82 aa 1b 36 e3
         0e fa f9 7d 90 e6 df fc 60 2d cb 50 1a 59 a8 fc c4 9c 4b f2 e5
         f0 a2 1c 00 47 c2 ab f3 32 54 0d d0 32 e1 67 c2 95 5d");
    assert_eq!(ticket.len(), 205);
    assert_eq!(ticket_record.len(), 227);

    let k = TrafficKeys::new(Version::Tls13, Cipher::Aes128Gcm, &key, iv);
    let mut s = RecordSealer::new(k.clone(), 0).unwrap();
    let mut out = Vec::new();
    s.seal(ContentType::Handshake, &ticket, &mut out).unwrap();
    assert_eq!(out, ticket_record);
    out.clear();
    s.seal(ContentType::ApplicationData, &app_data, &mut out)
        .unwrap();
    assert_eq!(out, server_app_record);

    let mut o = RecordOpener::new(k, 0).unwrap();
    let mut rec = ticket_record.clone();
    let opened = o.open(&mut rec).unwrap();
    assert_eq!(opened.content_type, ContentType::Handshake);
    assert_eq!(&rec[opened.plaintext], &ticket[..]);
    let mut rec = server_app_record.clone();
    let opened = o.open(&mut rec).unwrap();
    assert_eq!(opened.content_type, ContentType::ApplicationData);
    assert_eq!(&rec[opened.plaintext], &app_data[..]);

    // The client's application data (its own key, seq 0), the same 50 bytes.
    let client = TrafficKeys::new(
        Version::Tls13,
        Cipher::Aes128Gcm,
        &hex("17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51"),
        hex("5b 78 92 3d ee 08 57 90 33 e5 23 d9")
            .try_into()
            .unwrap(),
    );
    let client_record = hex("17 03 03 00 43 a2 3f 70 54 b6 2c 94
         d0 af fa fe 82 28 ba 55 cb ef ac ea 42 f9 14 aa 66 bc ab 3f 2b
         98 19 a8 a5 b4 6b 39 5b d5 4a 9a 20 44 1e 2b 62 97 4e 1f 5a 62
         92 a2 97 70 14 bd 1e 3d ea e6 3a ee bb 21 69 49 15 e4");
    let mut s = RecordSealer::new(client.clone(), 0).unwrap();
    let mut out = Vec::new();
    s.seal(ContentType::ApplicationData, &app_data, &mut out)
        .unwrap();
    assert_eq!(out, client_record);
    let mut o = RecordOpener::new(client, 0).unwrap();
    let mut rec = client_record;
    let opened = o.open(&mut rec).unwrap();
    assert_eq!(&rec[opened.plaintext], &app_data[..]);
}

#[test]
fn alerts_parse_and_encode() {
    for level in [AlertLevel::Warning, AlertLevel::Fatal] {
        for d in 0..=255u8 {
            let a = Alert {
                level,
                description: d.into(),
            };
            let bytes = a.encode();
            assert_eq!(bytes[1], d);
            assert_eq!(Alert::parse(&bytes), Ok(a));
        }
    }
    let a = Alert::parse(&[2, 20]).unwrap();
    assert_eq!(a, Alert::fatal(AlertDescription::BadRecordMac));
    assert_eq!(a.to_string(), "fatal alert bad_record_mac");
    assert_eq!(Alert::close_notify().encode(), [1, 0]);
    for (code, d) in [
        (0, AlertDescription::CloseNotify),
        (10, AlertDescription::UnexpectedMessage),
        (20, AlertDescription::BadRecordMac),
        (22, AlertDescription::RecordOverflow),
        (40, AlertDescription::HandshakeFailure),
        (50, AlertDescription::DecodeError),
        (51, AlertDescription::DecryptError),
        (70, AlertDescription::ProtocolVersion),
        (80, AlertDescription::InternalError),
        (90, AlertDescription::UserCanceled),
        (116, AlertDescription::CertificateRequired),
        (120, AlertDescription::NoApplicationProtocol),
        (21, AlertDescription::Unknown(21)),
        (255, AlertDescription::Unknown(255)),
    ] {
        assert_eq!(AlertDescription::from(code), d);
        assert_eq!(u8::from(d), code);
    }
    assert_eq!(Alert::parse(&[]), Err(AlertError::Length(0)));
    assert_eq!(Alert::parse(&[2]), Err(AlertError::Length(1)));
    assert_eq!(Alert::parse(&[2, 0, 0]), Err(AlertError::Length(3)));
    assert_eq!(Alert::parse(&[0, 10]), Err(AlertError::BadLevel(0)));
    assert_eq!(Alert::parse(&[3, 10]), Err(AlertError::BadLevel(3)));
    assert!(AlertError::BadLevel(3).to_string().contains('3'));

    // What ends a connection: TLS 1.3 ignores the level.
    let warn = |d| Alert {
        level: AlertLevel::Warning,
        description: d,
    };
    assert!(warn(AlertDescription::BadRecordMac).ends_connection(true));
    assert!(!warn(AlertDescription::BadRecordMac).ends_connection(false));
    assert!(!Alert::fatal(AlertDescription::UserCanceled).ends_connection(true));
    assert!(Alert::close_notify().ends_connection(false));
}

#[test]
fn errors_map_to_alerts_and_say_what_happened() {
    use AlertDescription as A;
    let cases = [
        (RecordError::BadRecordMac, A::BadRecordMac, "authentication"),
        (
            RecordError::RecordOverflow(17000),
            A::RecordOverflow,
            "17000",
        ),
        (
            RecordError::PlaintextOverflow(16386),
            A::RecordOverflow,
            "16386",
        ),
        (RecordError::BadVersion(0x0200), A::DecodeError, "0x0200"),
        (
            RecordError::Decode("truncated record"),
            A::DecodeError,
            "truncated",
        ),
        (
            RecordError::UnexpectedContentType(ContentType::ChangeCipherSpec),
            A::UnexpectedMessage,
            "20",
        ),
        (
            RecordError::UnsupportedForDevice(Cipher::Chacha20Poly1305),
            A::InternalError,
            "Chacha20Poly1305",
        ),
        (RecordError::SequenceExhausted, A::InternalError, "sequence"),
        (
            RecordError::PlaintextTooLong(20000),
            A::InternalError,
            "20000",
        ),
    ];
    for (e, alert, text) in cases {
        assert_eq!(e.alert(), alert, "{e:?}");
        assert!(e.to_string().contains(text), "{e}");
    }
}
