//! TLS between two service sets on a sim wire: tlsd on each host, a
//! libclient `TlsStream` client and `TlsListener` server, data both ways,
//! the counters `capnet tls stat` shows, and tlsd's restart.

use capnet::host::Host;
use capnet_tests::{
    both_ways, cli_ok, receive_counting, send_pattern, sim_config, tls_section, Progress, Scratch,
};
use libclient::{RecordMode, TlsOptions, TlsVersion};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Runs `f`; if it panics, prints the hosts' logs first.
fn with_logs<T>(hosts: &[&Host], f: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(p) => {
            for (i, h) in hosts.iter().enumerate() {
                eprintln!("---- host {i} log ----\n{}", h.log());
            }
            std::panic::resume_unwind(p)
        }
    }
}

fn tls_hosts(scratch: &Scratch) -> (Host, Host) {
    hosts_with(scratch, "")
}

/// Two TLS hosts; `port_extra` goes into each [[port]] (e.g. the offload).
fn hosts_with(scratch: &Scratch, port_extra: &str) -> (Host, Host) {
    let a_dir = scratch.0.join("a");
    let b_dir = scratch.0.join("b");
    let tls = tls_section(None);
    let a = Host::start(
        &format!("{}{tls}", sim_config(1, port_extra)),
        &a_dir,
        &a_dir,
    )
    .expect("host a");
    let b = Host::start(
        &format!("{}{tls}", sim_config(2, port_extra)),
        &b_dir,
        &a_dir,
    )
    .expect("host b");
    (a, b)
}

/// `bytes` each way at once over one TLS connection; sha256 checked.
fn transfer(a: &Host, b: &Host, port: u16, bytes: u64, options: &TlsOptions) -> libclient::TlsInfo {
    let server_tls = b.tls().unwrap();
    let listener = server_tls
        .listen(addr(&format!("0.0.0.0:{port}")), 4, options)
        .unwrap();
    let client_tls = a.tls().unwrap();
    let to = addr(&format!("10.0.0.2:{port}"));
    let (s, _, _) = both_ways(
        || {
            client_tls
                .connect_stream(to, "capnet.test", options)
                .unwrap()
        },
        move || listener.accept().unwrap().0,
        bytes,
    );
    // Asked after the data moved: the record mode is decided once the
    // session runs.
    s.info().unwrap()
}

#[test]
fn tls_both_ways_between_two_hosts_every_version() {
    let scratch = Scratch::new("tls-sim");
    let (a, b) = tls_hosts(&scratch);
    let info = transfer(&a, &b, 4433, 16 << 20, &TlsOptions::default());
    assert_eq!(info.version, TlsVersion::Tls13);
    assert_eq!(info.server_name.as_deref(), Some("capnet.test"));
    assert_eq!(info.tx, RecordMode::Software);
    let tls12 = TlsOptions {
        max_version: Some(TlsVersion::Tls12),
        cipher_suites: vec!["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384".into()],
        ..TlsOptions::default()
    };
    let info = transfer(&a, &b, 4434, 4 << 20, &tls12);
    assert_eq!(info.version, TlsVersion::Tls12);
    assert_eq!(info.cipher_suite, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384");
    let stat = cli_ok(&a, &["tls", "stat"]);
    let handshakes = stat
        .lines()
        .find_map(|l| l.strip_prefix("TlsHandshakes"))
        .map(|v| v.trim().parse::<u64>().unwrap())
        .expect("TlsHandshakes in tls stat");
    assert_eq!(handshakes, 2, "{stat}");
    let s = a.tls().unwrap().stat().unwrap();
    assert!(
        s.bytes_sealed >= 20 << 20 && s.bytes_opened >= 20 << 20,
        "{s:?}"
    );
    assert_eq!(s.decrypt_error, 0);
    // Both connections are gone: no session counted as current.
    assert_eq!(s.curr_tx_sw, 0, "{s:?}");
}

/// An application that closes its side and drops the stream at once,
/// while much of what it wrote still waits in tlsd behind a slow reader:
/// all of it, then close_notify, still reaches the peer.
#[test]
fn a_stream_dropped_right_after_its_close_still_delivers_everything() {
    let scratch = Scratch::new("tls-drop");
    let (a, b) = tls_hosts(&scratch);
    const BYTES: u64 = 4 << 20;
    let listener = b
        .tls()
        .unwrap()
        .listen(addr("0.0.0.0:4436"), 4, &TlsOptions::default())
        .unwrap();
    let server = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        // Slower than the writer: its bytes queue up in front of tlsd.
        receive_counting(&mut &s, &Progress::default(), 8 << 20)
    });
    let sent = with_logs(&[&a, &b], || {
        let s = a
            .tls()
            .unwrap()
            .connect_stream(addr("10.0.0.2:4436"), "capnet.test", &TlsOptions::default())
            .unwrap();
        let sent = send_pattern(&mut &s, 33, BYTES).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        drop(s);
        sent
    });
    let got = server
        .join()
        .unwrap()
        .expect("a clean end of stream (close_notify), not a truncation");
    assert_eq!(got.0, BYTES);
    assert_eq!(got.1, sent);
}

#[test]
fn a_certificate_for_another_name_is_refused_and_counted() {
    let scratch = Scratch::new("tls-name");
    let (a, b) = tls_hosts(&scratch);
    let listener = b
        .tls()
        .unwrap()
        .listen(addr("0.0.0.0:4435"), 4, &TlsOptions::default())
        .unwrap();
    let server = std::thread::spawn(move || {
        // The failed handshake is not returned by accept; a good one is.
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        buf
    });
    let tls = a.tls().unwrap();
    let err = tls
        .connect_stream(addr("10.0.0.2:4435"), "wrong.test", &TlsOptions::default())
        .expect_err("the certificate is for capnet.test");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    assert!(err.to_string().contains("handshake"), "{err}");
    let mut ok = tls
        .connect_stream(addr("10.0.0.2:4435"), "capnet.test", &TlsOptions::default())
        .unwrap();
    ok.write_all(b"hello").unwrap();
    assert_eq!(&server.join().unwrap(), b"hello");
    assert_eq!(tls.stat().unwrap().handshake_failures, 1);
    assert_eq!(b.tls().unwrap().stat().unwrap().handshake_failures, 1);
}

/// The NIC seals and opens the records of both hosts (sim ports with TLS
/// offload): byte-exact both ways, both directions in device mode, the
/// drivers' engines did the work.
#[test]
fn tls_with_nic_offload_on_both_hosts() {
    let scratch = Scratch::new("tls-offload");
    let (a, b) = hosts_with(&scratch, "tls_offload = true");
    for (i, max) in [None, Some(TlsVersion::Tls12)].into_iter().enumerate() {
        let options = TlsOptions {
            max_version: max,
            ..TlsOptions::default()
        };
        let info = with_logs(&[&a, &b], || {
            transfer(&a, &b, 4440 + i as u16, 16 << 20, &options)
        });
        assert_eq!(info.tx, RecordMode::Device, "{info:?}");
        assert_eq!(info.rx, RecordMode::Device, "{info:?}");
    }
    let s = a.tls().unwrap().stat().unwrap();
    assert_eq!(s.tx_device, 2, "{s:?}");
    assert_eq!(s.rx_device, 2, "{s:?}");
    assert_eq!(s.decrypt_error, 0, "{s:?}");
    // The port's engine did the work: records sealed and opened there.
    let link = cli_ok(&a, &["link", "sim0"]);
    let count = |what: &str| -> u64 {
        let at = link
            .find(what)
            .unwrap_or_else(|| panic!("no {what:?} in:\n{link}"));
        link[at + what.len()..]
            .split_whitespace()
            .next()
            .and_then(|w| w.trim_end_matches(';').parse().ok())
            .unwrap_or_else(|| panic!("{what:?} in:\n{link}"))
    };
    assert!(
        count("records sealed ") > 0 && count("opened ") > 0,
        "{link}"
    );
}

/// `capnet offload list` shows a live offloaded connection's two contexts
/// (TX and RX, active, with records counted), and none once it is closed.
#[test]
fn offload_list_shows_live_contexts() {
    let scratch = Scratch::new("tls-offload-list");
    let (a, b) = hosts_with(&scratch, "tls_offload = true");
    let listener = b
        .tls()
        .unwrap()
        .listen(addr("0.0.0.0:4450"), 4, &TlsOptions::default())
        .unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0usize;
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                return total;
            }
            s.write_all(&buf[..n]).unwrap();
            total += n;
        }
    });
    let s = a
        .tls()
        .unwrap()
        .connect_stream(addr("10.0.0.2:4450"), "capnet.test", &TlsOptions::default())
        .unwrap();
    let data = vec![0x5au8; 1 << 20];
    let mut back = vec![0u8; data.len()];
    std::thread::scope(|scope| {
        let s = &s;
        scope.spawn(move || (&mut &*s).write_all(&data).unwrap());
        (&mut &*s).read_exact(&mut back).unwrap();
    });
    assert!(back.iter().all(|b| *b == 0x5a));
    let list = cli_ok(&a, &["offload", "list"]);
    let live: Vec<&str> = list.lines().filter(|l| l.contains("active")).collect();
    assert_eq!(live.len(), 2, "{list}");
    assert!(live.iter().any(|l| l.contains("tls-tx")), "{list}");
    assert!(live.iter().any(|l| l.contains("tls-rx")), "{list}");
    drop(s);
    assert_eq!(server.join().unwrap(), 1 << 20);
    // The session ends after close_notify: its contexts are released.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let list = cli_ok(&a, &["offload", "list"]);
        if !list.contains("active") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "contexts stay active:\n{list}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
