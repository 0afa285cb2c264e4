//! Started as root, each service becomes its own unprivileged user once it
//! has opened what needs root, and tlsd reaches netsrv over a socket only
//! its user may use. Root-only: as another user the services cannot
//! change uid and keep the starter's.

use capnet::host::Host;
use capnet_tests::{proc_field, require_root, sim_config, status_counter, tls_section, Scratch};
use libclient::TlsOptions;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

/// netsrv's, tlsd's and the drivers' uids with the default `uid_base`.
const NETSRV_UID: u32 = 0x7000_0000;
const TLSD_UID: u32 = NETSRV_UID + 1;
const NICDRV_UID: u32 = NETSRV_UID + 2;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Two TLS hosts on one wire; `extra` goes into a's configuration.
fn tls_hosts(scratch: &Scratch, extra: &str) -> (Host, Host) {
    let a_dir = scratch.0.join("a");
    let b_dir = scratch.0.join("b");
    let tls = tls_section(None);
    let a = Host::start(
        &format!("{extra}\n{}{tls}", sim_config(1, "")),
        &a_dir,
        &a_dir,
    )
    .expect("host a");
    let b = Host::start(&format!("{}{tls}", sim_config(2, "")), &b_dir, &a_dir).expect("host b");
    (a, b)
}

/// One TLS echo round trip from a to b's listener on `port`, `n`
/// connections open at once.
fn tls_round_trips(a: &Host, b: &Host, port: u16, n: usize) {
    use std::io::{Read, Write};
    let server = b.tls().unwrap();
    let listener = server
        .listen(addr(&format!("0.0.0.0:{port}")), 64, &TlsOptions::default())
        .unwrap();
    let echo = std::thread::spawn(move || {
        let mut held = Vec::new();
        for _ in 0..n {
            let (mut s, _) = listener.accept().unwrap();
            let mut b = [0u8; 5];
            s.read_exact(&mut b).unwrap();
            s.write_all(&b).unwrap();
            held.push(s);
        }
        held
    });
    let client = a.tls().unwrap();
    let mut open = Vec::new();
    for i in 0..n {
        let mut s = client
            .connect_stream(
                addr(&format!("10.0.0.2:{port}")),
                "capnet.test",
                &TlsOptions::default(),
            )
            .unwrap_or_else(|e| panic!("TLS connection {i} of {n}: {e}"));
        s.write_all(b"hello").unwrap();
        let mut b = [0u8; 5];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"hello");
        open.push(s);
    }
    drop(echo.join().unwrap());
}

#[test]
fn every_service_runs_as_a_user_of_its_own() {
    if !require_root("every_service_runs_as_a_user_of_its_own") {
        return;
    }
    let scratch = Scratch::new("users-own");
    let (a, b) = tls_hosts(&scratch, "");
    let mut seen = HashSet::new();
    for p in a.processes().unwrap() {
        let want = match p.name.as_str() {
            "netsrv" => NETSRV_UID,
            "tlsd" => TLSD_UID,
            n if n.starts_with("nicdrv") => NICDRV_UID,
            other => panic!("unexpected process {other}"),
        };
        let want_s = want.to_string();
        // Real, effective, saved and filesystem ids: no way back to root.
        assert_eq!(
            proc_field(p.pid, "Uid:"),
            vec![want_s.clone(); 4],
            "{}",
            p.name
        );
        assert_eq!(proc_field(p.pid, "Gid:"), vec![want_s; 4], "{}", p.name);
        assert!(proc_field(p.pid, "Groups:").is_empty(), "{}", p.name);
        for caps in ["CapPrm:", "CapEff:", "CapAmb:"] {
            assert_eq!(
                proc_field(p.pid, caps),
                vec!["0000000000000000"],
                "{} {caps}",
                p.name
            );
        }
        seen.insert(want);
    }
    assert_eq!(seen.len(), 3, "netsrv, tlsd and the driver each their own");
    let status = a.cli(&["status"]).unwrap();
    let status = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(
        status.contains(&format!("confined: uid {TLSD_UID}")),
        "{status}"
    );

    // The run directory stays root's and closed to the drivers; the wire
    // lives in a directory of its own that they may write.
    let meta = std::fs::metadata(&a.run_dir).unwrap();
    assert_eq!(meta.uid(), 0);
    assert_eq!(meta.permissions().mode() & 0o022, 0, "run dir writable");
    let trusted = std::fs::metadata(a.run_dir.join("net-trusted.sock")).unwrap();
    assert_eq!(trusted.uid(), TLSD_UID, "tlsd's socket is tlsd's");
    assert_eq!(trusted.permissions().mode() & 0o077, 0, "and only tlsd's");
    let wires = std::fs::metadata(a.run_dir.join("wires")).unwrap();
    assert_eq!(wires.gid(), NICDRV_UID);

    // Everything still works: data through netsrv, TLS through tlsd.
    let (transfer, _) =
        capnet_tests::good_transfer(&a.net().unwrap(), &b.net().unwrap(), 7301, 1 << 20);
    transfer.join().expect("a transfer through netsrv");
    tls_round_trips(&a, &b, 7302, 1);
}

#[test]
fn only_tlsd_may_use_its_socket_to_netsrv() {
    if !require_root("only_tlsd_may_use_its_socket_to_netsrv") {
        return;
    }
    let scratch = Scratch::new("users-trusted");
    let (a, _b) = tls_hosts(&scratch, "");
    let before = status_counter(&capnet_tests::cli_ok(&a, &["status"]), "refused");
    // Root itself is refused: a trusted Net is tlsd's alone.
    let net = libclient::Net::connect(a.run_dir.join("net-trusted.sock")).unwrap();
    let e = net
        .tcp_listen(addr("0.0.0.0:7310"), 1)
        .expect_err("a trusted Net for root");
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    assert!(e.to_string().contains("tlsd"), "{e}");
    let after = status_counter(&capnet_tests::cli_ok(&a, &["status"]), "refused");
    assert_eq!(after, before + 1, "the refusal is counted");
}

/// Through the application socket tlsd was one client of netsrv, and every
/// TLS user shared that client's limits: with 2 sockets per client, the
/// third TLS connection of anyone failed. Over its own socket tlsd is
/// trusted and limits each of its users itself.
#[test]
fn tls_users_do_not_share_one_netsrv_client() {
    if !require_root("tls_users_do_not_share_one_netsrv_client") {
        return;
    }
    let scratch = Scratch::new("users-tls-limits");
    let (a, b) = tls_hosts(&scratch, "[limits]\nsockets = 2\nuser_sockets = 2");
    tls_round_trips(&a, &b, 7320, 6);
    // Applications are still limited by netsrv.
    let net = a.net().unwrap();
    let held: Vec<_> = (0..2)
        .map(|i| {
            net.tcp_listen(addr(&format!("0.0.0.0:{}", 7330 + i)), 1)
                .unwrap()
        })
        .collect();
    let e = net.tcp_listen(addr("0.0.0.0:7339"), 1).unwrap_err();
    assert!(e.to_string().contains("limit"), "{e}");
    drop(held);
}
