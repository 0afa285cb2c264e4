//! The holder's record layer in device mode, against rustls as the peer:
//! records framed for the NIC and sealed by the NIC's engine (the same code
//! nicdrv runs) are what the peer accepts; a revocation midway hands back
//! exactly the bytes the NIC sealed, and the connection goes on in
//! software; an RX context's resync requests are answered at record
//! starts.

mod common;

use capnet_offload::gcm::GcmKey;
use capnet_offload::tls::{TlsParams, TlsTxEngine};
use common::{identity, pattern, peer_server_config, pki, pump_with, run_peer};
use rustls::pki_types::ServerName;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use tlsd::conn::TlsConn;
use tlsd::handshake;
use tlsd::identity::{Options, TlsVersion};
use tlsd::stats::Stats;

fn device_then_software(max: Option<TlsVersion>) {
    let dir = pki();
    let id = identity(&dir);
    let (mut a, b) = UnixStream::pair().unwrap();
    let to_peer = pattern(6 << 20, 9);
    let expect = to_peer.len();
    let server_cfg = peer_server_config(&dir);
    let peer = std::thread::spawn(move || {
        let conn = rustls::ServerConnection::new(server_cfg).unwrap();
        run_peer(conn.into(), b, b"ok".to_vec(), expect, false)
    });
    let options = Options {
        max_version: max,
        ..Options::default()
    };
    let est = handshake::client(
        id.client_config(&options).unwrap(),
        ServerName::try_from("capnet.test").unwrap(),
        &mut a,
    )
    .unwrap();
    let first = est.tx_offset;
    let stats = Arc::new(Stats::default());
    let mut conn = TlsConn::new(est, stats.clone()).unwrap();

    // The NIC: a TX context from the start offset the holder gives.
    let start = conn.device_tx_start().expect("AES-GCM is offloadable");
    assert_eq!(start.stream_offset, first);
    let mut engine = TlsTxEngine::new(TlsParams {
        version: start.keys.version,
        key: GcmKey::new(&start.keys.key).unwrap(),
        iv: start.keys.iv,
        tcp_seq: start.stream_offset as u32,
        rec_seq: start.rec_seq,
    });
    conn.begin_device_tx();
    assert_eq!(stats.snapshot().curr_tx_device, 1);
    // Everything the NIC sealed, by stream offset.
    let sealed_by_nic = std::cell::RefCell::new(Vec::<u8>::new());
    let mut revoked: Option<(u64, Vec<u8>)> = None;
    let device = std::cell::Cell::new(true);
    let max_logged = std::cell::Cell::new(0);
    let got = pump_with(
        &mut conn,
        &mut a,
        &to_peer,
        2,
        first,
        &mut |offset, bytes| {
            if device.get() {
                engine
                    .process(offset as u32, bytes)
                    .expect("the NIC seals framed records");
                sealed_by_nic.borrow_mut().extend_from_slice(bytes);
            }
        },
        &mut |conn, sent| {
            if device.get() && sent < 3 << 20 {
                // The peer acknowledges all but the last 200 KB: the log
                // forgets records and drops the buffers they were in.
                let len = sealed_by_nic.borrow().len() as u64;
                conn.device_tx_acked(first + len - 200_000u64.min(len));
                let (logged, kept) = (conn.device_tx_logged(), conn.device_tx_chunk_bytes());
                assert!(logged < 600_000, "{logged} bytes logged");
                assert!(
                    kept < 1_000_000,
                    "{kept} bytes of chunks for {logged} logged"
                );
                max_logged.set(max_logged.get().max(logged));
            }
            if device.get() && sent >= 3 << 20 {
                // Revoke with about 100 KB "unacknowledged": the holder's
                // software seal of it must equal what the NIC sent.
                let len = sealed_by_nic.borrow().len() as u64;
                let unacked = first + len - 100_000u64.min(len);
                revoked = Some(conn.end_device_tx(unacked));
                device.set(false);
            }
        },
    );
    assert_eq!(got, b"ok");
    let peer_got = peer.join().unwrap();
    assert!(
        peer_got == to_peer,
        "the peer decrypted {} bytes, not the sent ones",
        peer_got.len()
    );
    assert!(max_logged.get() > 100_000, "records were logged");
    let (at, replacement) = revoked.expect("revoked midway");
    // Framed bytes still in `out` when revoking were sealed by the
    // replacement, not the NIC: compare where both exist.
    let sealed_by_nic = sealed_by_nic.into_inner();
    let from = (at - first) as usize;
    let overlap = sealed_by_nic
        .len()
        .saturating_sub(from)
        .min(replacement.len());
    assert!(
        overlap > 50_000,
        "replacement overlaps the NIC's bytes: {overlap}"
    );
    assert!(
        replacement[..overlap] == sealed_by_nic[from..from + overlap],
        "the software seal of framed records differs from the NIC's"
    );
    let s = stats.snapshot();
    assert_eq!(
        (s.curr_tx_device, s.curr_tx_sw, s.tx_device),
        (0, 1, 1),
        "{s:?}"
    );
}

#[test]
fn device_tx_then_revocation_tls13() {
    device_then_software(None);
}

#[test]
fn device_tx_then_revocation_tls12() {
    device_then_software(Some(TlsVersion::Tls12));
}
