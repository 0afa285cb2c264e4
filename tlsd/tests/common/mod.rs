//! Shared by tlsd's tests: a PKI, rustls peers, and a one-thread pump
//! that moves a `TlsConn`'s records over a socket.
#![allow(dead_code)]

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tlsd::conn::TlsConn;
use tlsd::identity::{Identity, IdentityConfig};

pub fn pki() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(make_pki).clone()
}

pub fn make_pki() -> PathBuf {
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

pub fn identity(dir: &std::path::Path) -> Identity {
    Identity::load(&IdentityConfig {
        cert: Some(dir.join("server.pem")),
        key: Some(dir.join("server.key")),
        roots: Some(dir.join("ca.pem")),
        keylog: None,
    })
    .unwrap()
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn peer_server_config(dir: &std::path::Path) -> Arc<rustls::ServerConfig> {
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

pub fn peer_client_config(dir: &std::path::Path, suite: &str) -> Arc<rustls::ClientConfig> {
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

pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Moves `send` out through `conn` and reads until `expect` bytes came in
/// and the peer's close_notify. Non-blocking, one thread.
pub fn pump(conn: &mut TlsConn, sock: &mut UnixStream, send: &[u8], expect: usize) -> Vec<u8> {
    pump_with(conn, sock, send, expect, 0, &mut |_, _| {}, &mut |_, _| {})
}

/// `pump` with a NIC between the record layer and the socket: `nic` sees
/// every outgoing byte once, with its stream offset (counted from
/// `first_offset`), before it leaves; `tick` runs each round with the
/// plaintext bytes sealed so far (to switch modes midway).
pub fn pump_with(
    conn: &mut TlsConn,
    sock: &mut UnixStream,
    send: &[u8],
    expect: usize,
    first_offset: u64,
    nic: &mut dyn FnMut(u64, &mut [u8]),
    tick: &mut dyn FnMut(&mut TlsConn, usize),
) -> Vec<u8> {
    sock.set_nonblocking(true).unwrap();
    let mut offset = first_offset;
    let mut pending: Vec<u8> = Vec::new();
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
        tick(conn, sent);
        // Bounded by what waits for the socket (`outgoing` is emptied into
        // `pending` every round).
        while sent < send.len() && pending.len() + conn.outgoing().len() < 256 * 1024 {
            let n = conn.seal(&send[sent..]);
            assert!(n > 0);
            sent += n;
        }
        if sent == send.len() && !closed && got.len() >= expect {
            conn.close();
            closed = true;
        }
        let mut progress = false;
        if !conn.outgoing().is_empty() {
            let mut chunk = conn.outgoing().to_vec();
            nic(offset, &mut chunk);
            offset += chunk.len() as u64;
            conn.sent(chunk.len());
            pending.extend_from_slice(&chunk);
        }
        while !pending.is_empty() {
            match sock.write(&pending) {
                Ok(n) => {
                    pending.drain(..n);
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
        if closed && conn.outgoing().is_empty() && pending.is_empty() && conn.peer_closed() {
            return got;
        }
        if !progress {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// rustls's complete connection as the peer: sends `send`, expects
/// `expect` bytes, and optionally refreshes its keys (KeyUpdate) midway.
pub fn run_peer(
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
