//! tlsd's handshake and record layer against rustls's own complete
//! connection (buffered API, its own record layer) as the peer, over a Unix
//! socket pair: every version and AEAD suite, data both ways, KeyUpdate
//! from either side, session tickets, close_notify, and corruption.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tlsd::conn::TlsConn;
use tlsd::handshake;
use tlsd::identity::{Identity, IdentityConfig, Options, TlsVersion};
use tlsd::stats::Stats;

fn pki() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(make_pki).clone()
}

fn make_pki() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tlsd-pki-{}", std::process::id()));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-pki.sh");
    let ok = std::process::Command::new("bash")
        .arg(script)
        .arg(&dir)
        .status()
        .expect("bash")
        .success();
    assert!(ok, "test-pki.sh failed (is openssl installed?)");
    dir
}

fn identity(dir: &std::path::Path) -> Identity {
    Identity::load(&IdentityConfig {
        cert: Some(dir.join("server.pem")),
        key: Some(dir.join("server.key")),
        roots: Some(dir.join("ca.pem")),
        keylog: None,
    })
    .unwrap()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn peer_server_config(dir: &std::path::Path) -> Arc<rustls::ServerConfig> {
    let chain: Vec<_> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    )
}

fn peer_client_config(dir: &std::path::Path, suite: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites
        .retain(|s| s.suite().as_str() == Some(suite));
    assert!(!p.cipher_suites.is_empty(), "{suite}");
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(p))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Moves `send` out through `conn` and reads until `expect` bytes came in
/// and (if `until_close`) the peer's close_notify. Non-blocking, one thread.
fn pump(conn: &mut TlsConn, sock: &mut UnixStream, send: &[u8], expect: usize) -> Vec<u8> {
    sock.set_nonblocking(true).unwrap();
    let mut sent = 0;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut closed = false;
    loop {
        assert!(
            Instant::now() < deadline,
            "pump stalled: sent {sent}, got {}",
            got.len()
        );
        if let Some(e) = conn.error() {
            panic!("connection failed: {e}");
        }
        while sent < send.len() && conn.outgoing().len() < 256 * 1024 {
            let n = conn.seal(&send[sent..]);
            assert!(n > 0);
            sent += n;
        }
        if sent == send.len() && !closed && got.len() >= expect {
            conn.close();
            closed = true;
        }
        let mut progress = false;
        while !conn.outgoing().is_empty() {
            match sock.write(conn.outgoing()) {
                Ok(n) => {
                    conn.sent(n);
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("write: {e}"),
            }
        }
        match sock.read(&mut buf) {
            Ok(0) => {
                conn.transport_eof();
            }
            Ok(n) => {
                conn.received(&buf[..n], false);
                progress = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("read: {e}"),
        }
        let p = conn.plaintext().len();
        if p > 0 {
            got.extend_from_slice(conn.plaintext());
            conn.consume_plaintext(p);
            progress = true;
        }
        if closed && conn.outgoing().is_empty() && conn.peer_closed() {
            return got;
        }
        if !progress {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// rustls's complete connection as the peer: sends `send`, expects
/// `expect` bytes, and optionally refreshes its keys (KeyUpdate) midway.
fn run_peer(
    mut conn: rustls::Connection,
    mut sock: UnixStream,
    send: Vec<u8>,
    expect: usize,
    rekey: bool,
) -> Vec<u8> {
    let mut got = Vec::new();
    let mut sent = 0;
    let mut buf = vec![0u8; 64 * 1024];
    sock.set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let mut rekeyed = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut closed = false;
    loop {
        assert!(Instant::now() < deadline, "peer stalled");
        if !conn.is_handshaking() && sent < send.len() {
            let n = (send.len() - sent).min(100_000);
            sent += conn.writer().write(&send[sent..sent + n]).unwrap();
            if rekey && !rekeyed && sent >= send.len() / 2 {
                conn.refresh_traffic_keys().unwrap();
                rekeyed = true;
            }
        }
        if sent == send.len() && got.len() >= expect && !closed && !conn.is_handshaking() {
            conn.send_close_notify();
            closed = true;
        }
        while conn.wants_write() {
            conn.write_tls(&mut sock).unwrap();
        }
        match conn.read_tls(&mut sock) {
            Ok(0) => return got,
            Ok(_) => {
                let state = conn.process_new_packets().expect("peer: tls error");
                if state.plaintext_bytes_to_read() > 0 {
                    let mut r = conn.reader();
                    loop {
                        match r.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                if state.peer_has_closed() && closed {
                    while conn.wants_write() {
                        conn.write_tls(&mut sock).unwrap();
                    }
                    return got;
                }
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut => {
            }
            Err(e) => panic!("peer read: {e}"),
        }
    }
}

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
