//! tlsd's handshake and record layer against rustls's own complete
//! connection (buffered API, its own record layer) as the peer, over a Unix
//! socket pair: every version and AEAD suite, data both ways, KeyUpdate
//! from either side, session tickets, close_notify, and corruption.

mod common;

use common::{identity, pattern, peer_client_config, peer_server_config, pki, pump, run_peer};
use rustls::pki_types::ServerName;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;
use tlsd::conn::TlsConn;
use tlsd::handshake;
use tlsd::identity::{Options, TlsVersion};
use tlsd::stats::Stats;

const SUITES: [(&str, &str); 5] = [
    ("TLS13_AES_128_GCM_SHA256", "1.3"),
    ("TLS13_AES_256_GCM_SHA384", "1.3"),
    ("TLS13_CHACHA20_POLY1305_SHA256", "1.3"),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "1.2"),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "1.2"),
];

#[test]
fn tlsd_client_against_rustls_server_every_suite() {
    let dir = pki();
    let id = identity(&dir);
    for (suite, _) in SUITES {
        let (mut a, b) = UnixStream::pair().unwrap();
        let server_cfg = peer_server_config(&dir);
        let rekey = suite.starts_with("TLS13");
        let to_tlsd = pattern(3 << 20, 1);
        let from_tlsd = pattern(2 << 20, 2);
        let expect_from_tlsd = from_tlsd.len();
        let want = to_tlsd.clone();
        let peer = std::thread::spawn(move || {
            let conn = rustls::ServerConnection::new(server_cfg).unwrap();
            run_peer(conn.into(), b, to_tlsd, expect_from_tlsd, rekey)
        });
        let options = Options {
            cipher_suites: vec![suite.to_owned()],
            ..Options::default()
        };
        let cfg = id.client_config(&options).unwrap();
        let stats = Arc::new(Stats::default());
        let est = handshake::client(cfg, ServerName::try_from("capnet.test").unwrap(), &mut a)
            .unwrap_or_else(|e| panic!("{suite}: {e}"));
        assert_eq!(est.suite, suite);
        let mut conn = TlsConn::new(est, stats.clone()).unwrap();
        // Ours, asking the peer to update too.
        conn.request_key_update();
        let got = pump(&mut conn, &mut a, &from_tlsd, want.len());
        let peer_got = peer.join().unwrap();
        assert!(
            got == want,
            "{suite}: tlsd received {} bytes, wrong",
            got.len()
        );
        assert!(
            peer_got == from_tlsd,
            "{suite}: peer received {} bytes, wrong",
            peer_got.len()
        );
        let s = stats.snapshot();
        if rekey {
            // Received: the peer's own update, and its answer to ours.
            // Sent: ours, and our answer to the peer's (rustls asks).
            assert_eq!(s.rx_rekey_ok, 2, "{suite}: {s:?}");
            assert_eq!(s.tx_rekey_ok, 2, "{suite}: {s:?}");
            // rustls's server sends tickets after the handshake
            assert!(s.session_tickets >= 1, "{suite}: {s:?}");
        }
        assert_eq!(s.decrypt_error, 0);
    }
}

#[test]
fn tlsd_server_against_rustls_client_every_suite() {
    let dir = pki();
    let id = identity(&dir);
    for (suite, _) in SUITES {
        let (mut a, b) = UnixStream::pair().unwrap();
        let client_cfg = peer_client_config(&dir, suite);
        let to_tlsd = pattern(1 << 20, 3);
        let from_tlsd = pattern(3 << 20, 4);
        let expect = from_tlsd.len();
        let want = to_tlsd.clone();
        let peer = std::thread::spawn(move || {
            let conn = rustls::ClientConnection::new(
                client_cfg,
                ServerName::try_from("capnet.test").unwrap(),
            )
            .unwrap();
            run_peer(conn.into(), b, to_tlsd, expect, false)
        });
        let (cfg, sni) = id.server_config(&Options::default()).unwrap();
        let stats = Arc::new(Stats::default());
        let est = handshake::server(cfg, &sni, &mut a).unwrap_or_else(|e| panic!("{suite}: {e}"));
        assert_eq!(est.suite, suite);
        assert_eq!(est.server_name.as_deref(), Some("capnet.test"));
        let mut conn = TlsConn::new(est, stats.clone()).unwrap();
        let got = pump(&mut conn, &mut a, &from_tlsd, want.len());
        let peer_got = peer.join().unwrap();
        assert!(
            got == want,
            "{suite}: tlsd received {} bytes, wrong",
            got.len()
        );
        assert!(peer_got == from_tlsd, "{suite}: peer received wrong bytes");
    }
}

#[test]
fn a_wrong_server_name_fails_the_handshake() {
    let dir = pki();
    let id = identity(&dir);
    let (mut a, b) = UnixStream::pair().unwrap();
    let server_cfg = peer_server_config(&dir);
    let peer = std::thread::spawn(move || {
        let mut conn = rustls::ServerConnection::new(server_cfg).unwrap();
        let mut b = b;
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut alert = None;
        while conn.is_handshaking() {
            while conn.wants_write() {
                if conn.write_tls(&mut b).is_err() {
                    return alert;
                }
            }
            match conn.read_tls(&mut b) {
                Ok(0) | Err(_) => return alert,
                Ok(_) => {
                    if let Err(e) = conn.process_new_packets() {
                        alert = Some(e.to_string());
                        return alert;
                    }
                }
            }
        }
        alert
    });
    let cfg = id.client_config(&Options::default()).unwrap();
    let err = handshake::client(cfg, ServerName::try_from("other.test").unwrap(), &mut a)
        .err()
        .expect("the certificate is not valid for other.test");
    assert!(err.to_string().contains("certificate"), "{err}");
    drop(a);
    let peer_saw = peer.join().unwrap();
    assert!(
        peer_saw.as_deref().unwrap_or("").contains("BadCertificate")
            || peer_saw.as_deref().unwrap_or("").contains("alert"),
        "the peer was told why: {peer_saw:?}"
    );
}

#[test]
fn version_limits_are_kept() {
    let dir = pki();
    let id = identity(&dir);
    let (mut a, b) = UnixStream::pair().unwrap();
    let server_cfg = peer_server_config(&dir);
    let peer = std::thread::spawn(move || {
        let conn = rustls::ServerConnection::new(server_cfg).unwrap();
        run_peer(conn.into(), b, b"hi".to_vec(), 2, false)
    });
    let options = Options {
        max_version: Some(TlsVersion::Tls12),
        ..Options::default()
    };
    let est = handshake::client(
        id.client_config(&options).unwrap(),
        ServerName::try_from("capnet.test").unwrap(),
        &mut a,
    )
    .unwrap();
    assert_eq!(est.version, rustls::ProtocolVersion::TLSv1_2);
    let mut conn = TlsConn::new(est, Arc::new(Stats::default())).unwrap();
    assert_eq!(pump(&mut conn, &mut a, b"yo", 2), b"hi");
    assert_eq!(peer.join().unwrap(), b"yo");
}

/// A record changed on the way fails authentication: tlsd sends a fatal
/// bad_record_mac alert (the peer sees it), counts it, and ends the
/// connection; nothing of the bad record reaches the application.
#[test]
fn a_corrupted_record_gets_an_alert_and_a_counter() {
    use std::io::{Read, Write};
    let dir = pki();
    let id = identity(&dir);
    let (mut a, mut b) = UnixStream::pair().unwrap();
    let server_cfg = peer_server_config(&dir);
    let peer = std::thread::spawn(move || {
        let mut conn = rustls::ServerConnection::new(server_cfg).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut b).unwrap();
        }
        conn.writer().write_all(&[7u8; 4000]).unwrap();
        conn.complete_io(&mut b).unwrap();
        // Wait for tlsd's answer: an alert.
        b.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        loop {
            match conn.read_tls(&mut b) {
                Ok(0) => return "eof".to_string(),
                Ok(_) => {
                    if let Err(e) = conn.process_new_packets() {
                        return e.to_string();
                    }
                }
                Err(e) => return format!("read: {e}"),
            }
        }
    });
    let stats = Arc::new(Stats::default());
    let est = handshake::client(
        id.client_config(&Options::default()).unwrap(),
        ServerName::try_from("capnet.test").unwrap(),
        &mut a,
    )
    .unwrap();
    let mut conn = TlsConn::new(est, stats.clone()).unwrap();
    a.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut stream = Vec::new();
    // Session tickets and then the 4000-byte record: flip one byte near
    // the end of what arrived (inside the application data record).
    while stream.len() < 4000 {
        let n = a.read(&mut buf).unwrap();
        assert!(n > 0, "peer closed early");
        stream.extend_from_slice(&buf[..n]);
    }
    let at = stream.len() - 30;
    stream[at] ^= 0x01;
    conn.received(&stream, false);
    let err = conn.error().cloned().expect("the record must not open");
    assert!(err.to_string().contains("authentication"), "{err}");
    // The corrupted record was the only data record: nothing of it, nor
    // anything after it, reaches the application.
    assert!(
        conn.plaintext().is_empty(),
        "no plaintext from a bad record"
    );
    a.write_all(conn.outgoing()).unwrap();
    let s = stats.snapshot();
    assert_eq!((s.decrypt_error, s.alerts_sent), (1, 1), "{s:?}");
    let peer_saw = peer.join().unwrap();
    assert!(
        peer_saw.contains("BadRecordMac"),
        "the peer got: {peer_saw}"
    );
}
