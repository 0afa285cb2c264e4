//! The admin CLI against real service sets: bonds made at run time, modes,
//! primaries, routes, link state, wire faults, and clean errors.

use capnet::host::Host;
use capnet_tests::{cli_ok, echo_until_eof, Scratch};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Host `n` with two free ports (no addresses): p0 on wire0, p1 on wire1.
fn free_ports(n: u8) -> String {
    format!(
        "[[port]]\nname = \"p0\"\nbackend = \"sim\"\nwire = \"wire0.sock\"\nmac = \"02:00:00:00:0{n}:01\"\n\
         [[port]]\nname = \"p1\"\nbackend = \"sim\"\nwire = \"wire1.sock\"\nmac = \"02:00:00:00:0{n}:02\"\n"
    )
}

/// Runs a CLI command that must fail; returns its stderr.
fn cli_err(host: &Host, args: &[&str]) -> String {
    let out = host.cli(args).expect("run capnet");
    assert!(
        !out.status.success(),
        "capnet {args:?} should have failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn bond_line<'a>(bonds: &'a str, name: &str) -> &'a str {
    bonds
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no bond {name}:\n{bonds}"))
}

#[test]
fn bonds_routes_links_and_wires_from_the_cli() {
    let scratch = Scratch::new("admin-cli");
    let a_dir = scratch.0.join("a");
    let b_dir = scratch.0.join("b");
    let a = Host::start(&free_ports(1), &a_dir, &a_dir).expect("host a");
    let b = Host::start(&free_ports(2), &b_dir, &a_dir).expect("host b");

    // Bad requests fail with the reason, locally or from netsrv.
    let e = cli_err(&a, &["bond", "add", "x", "--mode", "rr", "--legs", "p0"]);
    assert!(e.contains("active-backup or balance-xor"), "{e}");
    let e = cli_err(
        &a,
        &[
            "bond",
            "add",
            "x",
            "--mode",
            "active-backup",
            "--legs",
            "p0,p9",
        ],
    );
    assert!(e.contains("invalid:"), "{e}");
    assert!(!e.contains("remote exception"), "{e}");
    let e = cli_err(&a, &["route", "add", "10.9.0.0", "via", "10.0.0.2"]);
    assert!(e.contains("\"default\" or a CIDR"), "{e}");
    let e = cli_err(&a, &["link", "p9", "down"]);
    assert!(e.contains("invalid: no port named"), "{e}");

    for (h, n) in [(&a, 1), (&b, 2)] {
        cli_ok(
            h,
            &[
                "bond",
                "add",
                "bond0",
                "--mode",
                "active-backup",
                "--legs",
                "p0,p1",
                "--primary",
                "p0",
                "--address",
                &format!("10.0.0.{n}/24"),
                "--address",
                &format!("fd00::{n}/64"),
            ],
        );
    }
    let e = cli_err(
        &a,
        &[
            "bond",
            "add",
            "bond0",
            "--mode",
            "active-backup",
            "--legs",
            "p0",
        ],
    );
    assert!(e.contains("invalid:"), "{e}");
    let bonds = cli_ok(&a, &["bond"]);
    let line = bond_line(&bonds, "bond0");
    assert!(line.contains("active-backup"), "{bonds}");
    assert!(line.contains("primary p0"), "{bonds}");
    assert!(line.contains("legs p0,p1"), "{bonds}");

    // Traffic over the bond.
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    let listener = nb.tcp_listen(addr("0.0.0.0:7400"), 4).unwrap();
    std::thread::spawn(move || {
        while let Ok((mut s, _)) = listener.accept() {
            std::thread::spawn(move || {
                let _ = echo_until_eof(&mut s);
            });
        }
    });
    let mut s = na.tcp_connect(addr("10.0.0.2:7400"), None).unwrap();
    let mut echo = |msg: &[u8]| {
        s.write_all(msg).unwrap();
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).unwrap();
        assert_eq!(back, msg);
    };
    echo(b"over bond0");

    // A cable pull on the active leg: the bond moves to p1, traffic goes on.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !bond_line(&cli_ok(&a, &["bond"]), "bond0").contains("active p0") {
        assert!(Instant::now() < deadline, "bond0 never chose p0");
        std::thread::sleep(Duration::from_millis(20));
    }
    cli_ok(&a, &["link", "p0", "down"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let links = cli_ok(&a, &["link"]);
        let p0 = links.lines().find(|l| l.starts_with("p0 ")).unwrap();
        if p0.split_whitespace().nth(1) == Some("down") {
            assert_eq!(p0.split_whitespace().nth(2), Some("bond0"), "{links}");
            break;
        }
        assert!(Instant::now() < deadline, "p0 not down:\n{links}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !bond_line(&cli_ok(&a, &["bond"]), "bond0").contains("active p1") {
        assert!(Instant::now() < deadline, "bond0 did not fail over");
        std::thread::sleep(Duration::from_millis(20));
    }
    echo(b"after the cable pull");
    cli_ok(&a, &["link", "p0", "up"]);
    let detail = cli_ok(&a, &["link", "p0"]);
    assert!(detail.contains("02:00:00:00:01:01"), "{detail}");
    assert!(detail.contains("link changes"), "{detail}");

    // Mode and primary at run time.
    cli_ok(&a, &["bond", "primary", "bond0", "none"]);
    assert!(bond_line(&cli_ok(&a, &["bond"]), "bond0").contains("primary none"));
    let e = cli_err(&a, &["bond", "primary", "bond0", "p7"]);
    assert!(e.contains("invalid:"), "{e}");
    cli_ok(&a, &["bond", "mode", "bond0", "balance-xor"]);
    cli_ok(&b, &["bond", "mode", "bond0", "balance-xor"]);
    assert!(bond_line(&cli_ok(&a, &["bond", "show"]), "bond0").contains("balance-xor"));
    echo(b"balance-xor");

    // Routes.
    cli_ok(&a, &["route", "add", "10.9.0.0/16", "via", "10.0.0.2"]);
    cli_ok(&a, &["route", "add", "default", "via", "10.0.0.2"]);
    let routes = cli_ok(&a, &["route"]);
    assert!(routes.contains("10.9.0.0/16 via 10.0.0.2"), "{routes}");
    cli_ok(&a, &["route", "del", "10.9.0.0/16", "via", "10.0.0.2"]);
    let routes = cli_ok(&a, &["route"]);
    assert!(!routes.contains("10.9.0.0/16"), "{routes}");

    // Wire faults (and the old name of the command).
    cli_ok(&a, &["wire", "p1", "--loss", "1", "--reorder", "1"]);
    cli_ok(&a, &["faults", "p1"]);
    echo(b"after the faults");

    let status = cli_ok(&a, &["status"]);
    for want in [
        "processes:",
        "bonds:",
        "bond0 balance-xor",
        "routes:",
        "default via 10.0.0.2",
    ] {
        assert!(status.contains(want), "no {want:?} in status:\n{status}");
    }
}
