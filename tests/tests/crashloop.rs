//! The supervisor's restart policy with real processes: a killed driver comes
//! back; a driver that keeps dying at once is given up on, clearly, while the
//! rest of the set keeps serving.

use capnet::host::{capnet_binary, Host};
use capnet_tests::{cli_ok, echo_until_eof, Scratch};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Host `n` (1 or 2) with two plain ports: p0 on wire0 (10.0.0.n/24), p1 on
/// wire1 (10.1.0.n/24).
fn two_port_config(n: u8) -> String {
    format!(
        "[netsrv]\ntcp_buffer = 65536\n\
         [[port]]\nname = \"p0\"\nbackend = \"sim\"\nwire = \"wire0.sock\"\n\
         mac = \"02:00:00:00:0{n}:01\"\naddresses = [\"10.0.0.{n}/24\"]\n\
         [[port]]\nname = \"p1\"\nbackend = \"sim\"\nwire = \"wire1.sock\"\n\
         mac = \"02:00:00:00:0{n}:02\"\naddresses = [\"10.1.0.{n}/24\"]\n"
    )
}

/// A directory of symlinks to the built capnet, nicdrv, netsrv and tlsd, for
/// `CAPNET_BIN_DIR`.
fn bin_dir(scratch: &Scratch) -> PathBuf {
    let built = capnet_binary()
        .expect("capnet binary")
        .parent()
        .unwrap()
        .to_path_buf();
    let dir = scratch.0.join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["capnet", "nicdrv", "netsrv", "tlsd"] {
        let target = built.join(name);
        assert!(
            target.is_file(),
            "{} missing: build the workspace binaries",
            target.display()
        );
        std::os::unix::fs::symlink(&target, dir.join(name)).unwrap();
    }
    dir
}

/// Replaces `dir/name` with a script that exits 1 at once.
fn break_binary(dir: &Path, name: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.new"));
    std::fs::write(&tmp, "#!/bin/sh\necho \"broken $0\" >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
}

/// One echo round trip from `from` to `to` (an echo server must listen).
fn echo_once(from: &libclient::Net, to: &str, msg: &[u8]) {
    let mut s = from.tcp_connect(addr(to), None).expect("connect");
    s.write_all(msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, msg);
}

/// An echo server on `net` at `local`, serving `n` connections, each on a
/// thread of its own.
fn echo_server(net: &libclient::Net, local: &str, n: usize) -> std::thread::JoinHandle<()> {
    let listener = net.tcp_listen(addr(local), 4).unwrap();
    std::thread::spawn(move || {
        for _ in 0..n {
            let (mut s, _) = listener.accept().unwrap();
            // A connection may end in a reset, or never (its peer's netsrv
            // restarted and forgot it): nobody waits for these threads.
            std::thread::spawn(move || {
                let _ = echo_until_eof(&mut s);
            });
        }
    })
}

#[test]
fn killed_driver_is_restarted() {
    let scratch = Scratch::new("restart");
    let a_dir = scratch.0.join("a");
    let b_dir = scratch.0.join("b");
    let a = Host::start(&two_port_config(1), &a_dir, &a_dir).expect("host a");
    let b = Host::start(&two_port_config(2), &b_dir, &a_dir).expect("host b");
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    let server = echo_server(&nb, "0.0.0.0:7100", 2);
    echo_once(&na, "10.0.0.2:7100", b"before the kill");

    let before = a.process("nicdrv p0").expect("nicdrv p0");
    assert_eq!((before.state.as_str(), before.restarts), ("running", 0));
    let killed = a.kill("nicdrv p0", libc::SIGKILL).unwrap();
    assert_eq!(killed, before.pid);
    let after = a
        .wait_process(
            "nicdrv p0",
            |p| p.state == "running" && p.pid != killed && p.pid != 0,
            Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!(after.restarts, 1, "{after:?}");
    assert_eq!(after.last_exit, "killed by signal 9");
    let netsrv = a.process("netsrv").unwrap();
    assert_eq!((netsrv.state.as_str(), netsrv.restarts), ("running", 0));

    // The new driver is attached: traffic flows on p0 again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = cli_ok(&a, &["link"]);
        let p0 = status.lines().find(|l| l.starts_with("p0 ")).unwrap();
        let words: Vec<&str> = p0.split_whitespace().collect();
        if words[1] == "up" && words[3] == "1" {
            break;
        }
        assert!(Instant::now() < deadline, "p0 not back:\n{status}");
        std::thread::sleep(Duration::from_millis(50));
    }
    echo_once(&na, "10.0.0.2:7100", b"after the restart");
    server.join().unwrap();
}

#[test]
fn crash_looping_driver_is_given_up_and_the_rest_serves() {
    let scratch = Scratch::new("crashloop");
    let bin = bin_dir(&scratch);
    let a_dir = scratch.0.join("a");
    let b_dir = scratch.0.join("b");
    let a = Host::start_with_bin_dir(&two_port_config(1), &a_dir, &a_dir, &bin).expect("host a");
    let b = Host::start(&two_port_config(2), &b_dir, &a_dir).expect("host b");
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    let server = echo_server(&nb, "0.0.0.0:7200", 2);
    echo_once(&na, "10.1.0.2:7200", b"before");
    // A healthy run first (more than 1 s), so that the kill is not a quick
    // exit and the restart after it is immediate.
    std::thread::sleep(Duration::from_millis(1200));

    break_binary(&bin, "nicdrv");
    let started = Instant::now();
    a.kill("nicdrv p0", libc::SIGKILL).unwrap();
    let p = a
        .wait_process(
            "nicdrv p0",
            |p| p.state == "failed",
            Duration::from_secs(15),
        )
        .unwrap();
    let took = started.elapsed();
    // One immediate restart after the healthy run, then 5 quick exits with
    // 100 + 200 + 400 + 800 ms between them.
    assert_eq!(p.restarts, 5, "{p:?}");
    assert_eq!(p.pid, 0);
    assert_eq!(p.last_exit, "exit status 1");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
        "gave up after {took:?}"
    );
    let line = "nicdrv p0 exited 5 times within 1 s of starting (last: exit status 1); \
                not restarting it; port p0 stays down";
    let deadline = Instant::now() + Duration::from_secs(5);
    while !a.log().contains(line) {
        assert!(
            Instant::now() < deadline,
            "no give-up line in the log:\n{}",
            a.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // It stays given up.
    std::thread::sleep(Duration::from_millis(500));
    let p = a.process("nicdrv p0").unwrap();
    assert_eq!((p.state.as_str(), p.restarts), ("failed", 5));

    // Everything else is untouched and serving.
    let p1 = a.process("nicdrv p1").unwrap();
    assert_eq!((p1.state.as_str(), p1.restarts), ("running", 0));
    let netsrv = a.process("netsrv").unwrap();
    assert_eq!((netsrv.state.as_str(), netsrv.restarts), ("running", 0));
    let status = cli_ok(&a, &["status"]);
    assert!(
        status.contains("nicdrv p0      failed"),
        "status does not show the failed driver:\n{status}"
    );
    let links = cli_ok(&a, &["link"]);
    assert!(
        links
            .lines()
            .any(|l| l.starts_with("p0 ") && l.split_whitespace().nth(1) == Some("failed")),
        "{links}"
    );
    // Commands on the dead port fail cleanly.
    let out = a.cli(&["link", "p0", "down"]).unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid: port p0 is down"), "{err}");

    echo_once(&na, "10.1.0.2:7200", b"over the port that still works");
    server.join().unwrap();
}

#[test]
fn killed_netsrv_restarts_the_data_path_with_its_runtime_changes() {
    let scratch = Scratch::new("netsrv-restart");
    let a_dir = scratch.0.join("a");
    let b_dir = scratch.0.join("b");
    let a = Host::start(&two_port_config(1), &a_dir, &a_dir).expect("host a");
    let b = Host::start(&two_port_config(2), &b_dir, &a_dir).expect("host b");
    let nb = b.net().unwrap();
    let server = echo_server(&nb, "0.0.0.0:7300", 2);
    cli_ok(&a, &["route", "add", "10.9.0.0/16", "via", "10.1.0.2"]);
    let na = a.net().unwrap();
    let mut old = na.tcp_connect(addr("10.0.0.2:7300"), None).unwrap();
    old.write_all(b"x").unwrap();
    let mut one = [0u8; 1];
    old.read_exact(&mut one).unwrap();

    let before = a.process("netsrv").unwrap();
    let drivers: Vec<u32> = ["nicdrv p0", "nicdrv p1"]
        .iter()
        .map(|n| a.process(n).unwrap().pid)
        .collect();
    a.kill("netsrv", libc::SIGKILL).unwrap();
    let after = a
        .wait_process(
            "netsrv",
            |p| p.state == "running" && p.pid != before.pid && p.pid != 0,
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(after.restarts, 1, "{after:?}");
    assert_eq!(after.last_exit, "killed by signal 9");
    for (name, old_pid) in ["nicdrv p0", "nicdrv p1"].iter().zip(drivers) {
        let p = a.process(name).unwrap();
        assert_eq!((p.state.as_str(), p.restarts), ("running", 1), "{p:?}");
        assert_ne!(p.pid, old_pid);
    }
    // The application's old connection is reset; a new one works.
    let err = old.read(&mut one).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let na = loop {
        // Until the supervisor says netsrv answers, status may say busy.
        if let Ok(out) = a.cli(&["route"]) {
            if out.status.success() {
                break a.net().unwrap();
            }
        }
        assert!(Instant::now() < deadline, "netsrv not serving again");
        std::thread::sleep(Duration::from_millis(50));
    };
    let routes = cli_ok(&a, &["route"]);
    assert!(routes.contains("10.9.0.0/16 via 10.1.0.2"), "{routes}");
    echo_once(&na, "10.0.0.2:7300", b"after the data path restart");
    server.join().unwrap();
}

#[test]
fn crash_looping_netsrv_is_given_up_and_the_supervisor_says_so() {
    let scratch = Scratch::new("netsrv-loop");
    let bin = bin_dir(&scratch);
    let a_dir = scratch.0.join("a");
    let a = Host::start_with_bin_dir(&two_port_config(1), &a_dir, &a_dir, &bin).expect("host a");
    std::thread::sleep(Duration::from_millis(1200));
    break_binary(&bin, "netsrv");
    a.kill("netsrv", libc::SIGKILL).unwrap();
    let p = a
        .wait_process("netsrv", |p| p.state == "failed", Duration::from_secs(20))
        .unwrap();
    assert_eq!((p.restarts, p.pid), (5, 0), "{p:?}");
    assert_eq!(p.last_exit, "exit status 1");
    let line = "netsrv exited 5 times within 1 s of starting (last: exit status 1); \
                not restarting it; the data path stays down";
    let deadline = Instant::now() + Duration::from_secs(5);
    while !a.log().contains(line) {
        assert!(Instant::now() < deadline, "no give-up line:\n{}", a.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    for name in ["nicdrv p0", "nicdrv p1"] {
        let d = a.process(name).unwrap();
        assert_eq!((d.state.as_str(), d.pid), ("stopped", 0), "{d:?}");
    }
    // The supervisor still answers, and says why the rest does not.
    let status = cli_ok(&a, &["status"]);
    assert!(status.contains("netsrv is not serving"), "{status}");
    let out = a.cli(&["bond"]).unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("closed: netsrv failed"), "{err}");
}
