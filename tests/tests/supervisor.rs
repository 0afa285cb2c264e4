//! The supervisor's own promises: its table of children is always true, no
//! child outlives it, one set per run directory, and a service that stops
//! answering (netsrv, tlsd) is killed and started again.

use capnet::host::Host;
use capnet_tests::{sim_config, tls_section, Scratch};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn one_host(scratch: &Scratch, extra_config: &str) -> Host {
    let dir = scratch.0.join("a");
    let config = format!("{extra_config}\n{}", sim_config(1, ""));
    Host::start(&config, &dir, &dir).expect("host")
}

/// A process that exited is gone, or a zombie nobody reaped yet (it holds
/// nothing: no fds, no memory, no port).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next();
            state != Some("Z") && state != Some("X")
        }
        Err(_) => false,
    }
}

fn pids(host: &Host) -> Vec<(String, u32)> {
    host.processes()
        .unwrap()
        .into_iter()
        .map(|p| (p.name, p.pid))
        .collect()
}

fn serves(host: &Host) {
    let net = host.net().expect("connect");
    let addr: SocketAddr = "0.0.0.0:7100".parse().unwrap();
    drop(net.tcp_listen(addr, 1).expect("listen"));
}

#[test]
fn a_killed_netsrv_leaves_the_table_true() {
    let scratch = Scratch::new("sup-table");
    let host = one_host(&scratch, "");
    let tlsd = host.process("tlsd").unwrap();
    assert!(tlsd.pid != 0);
    let old = host.kill("netsrv", libc::SIGKILL).unwrap();
    host.wait_process(
        "netsrv",
        |p| p.pid != 0 && p.pid != old && p.state == "running",
        Duration::from_secs(20),
    )
    .unwrap();
    // tlsd was not touched, and the table still knows it.
    let after = host.process("tlsd").unwrap();
    assert_eq!((after.pid, after.state.as_str()), (tlsd.pid, "running"));
    // So its death is noticed and it is started again.
    host.kill("tlsd", libc::SIGKILL).unwrap();
    let again = host
        .wait_process(
            "tlsd",
            |p| p.pid != 0 && p.pid != tlsd.pid && p.state == "running",
            Duration::from_secs(20),
        )
        .unwrap();
    assert_eq!(again.last_exit, "killed by signal 9");
    // And `down` stops every process the set ever had running.
    let all = pids(&host);
    host.stop().unwrap();
    for (name, pid) in all {
        assert!(!alive(pid), "{name} (pid {pid}) outlived capnet down");
    }
}

#[test]
fn no_child_outlives_a_killed_supervisor() {
    let scratch = Scratch::new("sup-orphans");
    let host = one_host(&scratch, "");
    let children = pids(&host);
    assert_eq!(children.len(), 3, "{children:?}");
    // SAFETY: kill(2) on the supervisor this test started.
    unsafe { libc::kill(host.pid() as libc::pid_t, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let left: Vec<_> = children.iter().filter(|(_, pid)| alive(*pid)).collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running a second after the supervisor died: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn one_set_per_run_directory() {
    let scratch = Scratch::new("sup-lock");
    let host = one_host(&scratch, "");
    let second = std::process::Command::new(capnet::host::capnet_binary().unwrap())
        .args(["up", "--run-dir"])
        .arg(&host.run_dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!second.status.success(), "a second set started");
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("already running"), "{err}");
    assert!(err.contains(&host.pid().to_string()), "{err}");
    // The first set kept its sockets and serves as before.
    serves(&host);
    assert!(host.process("netsrv").unwrap().pid != 0);
    // Every service runs with no_new_privs, seccomp and Landlock, and
    // `capnet status` says so: the first two as /proc has them, Landlock as
    // each service answered for itself.
    let status = capnet_tests::cli_ok(&host, &["status"]);
    let services: Vec<&str> = status.lines().filter(|l| l.contains(" pid ")).collect();
    assert_eq!(services.len(), 3, "{status}");
    for line in services {
        assert!(line.contains("no_new_privs, seccomp"), "{line}");
        assert!(
            line.ends_with("landlock enforced") || line.ends_with("landlock partly enforced"),
            "{line}"
        );
    }
}

#[test]
fn a_hung_netsrv_is_killed_and_started_again() {
    let scratch = Scratch::new("sup-watchdog");
    let host = one_host(&scratch, "[supervisor]\nwatchdog_ms = 1000\n");
    serves(&host);
    let netsrv = host.process("netsrv").unwrap();
    // A live process with a dead loop: stopped, it answers nothing.
    // SAFETY: kill(2) on a service of the set this test started.
    unsafe { libc::kill(netsrv.pid as libc::pid_t, libc::SIGSTOP) };
    let restarted = host
        .wait_process(
            "netsrv",
            |p| p.pid != 0 && p.pid != netsrv.pid && p.state == "running",
            Duration::from_secs(20),
        )
        .unwrap();
    assert!(
        restarted.last_exit.contains("watchdog"),
        "{}",
        restarted.last_exit
    );
    assert!(!alive(netsrv.pid));
    let deadline = Instant::now() + Duration::from_secs(20);
    while host
        .net()
        .and_then(|n| n.tcp_listen("0.0.0.0:7101".parse().unwrap(), 1))
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the restarted netsrv does not serve"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Echoes one TLS connection from b's tlsd back to a's: both tlsds serve.
fn tls_echo(a: &Host, b: &Host, port: u16) -> std::io::Result<()> {
    let options = libclient::TlsOptions::default();
    // a's tlsd first: a listener nobody connects to would keep its thread.
    let client = a.tls()?;
    let listener = b
        .tls()?
        .listen(format!("0.0.0.0:{port}").parse().unwrap(), 1, &options)?;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf)?;
        s.write_all(&buf)
    });
    let remote = format!("10.0.0.2:{port}").parse().unwrap();
    let mut s = client.connect_stream(remote, "capnet.test", &options)?;
    s.write_all(b"hello")?;
    let mut back = [0u8; 5];
    s.read_exact(&mut back)?;
    assert_eq!(&back, b"hello");
    server.join().expect("server thread")
}

#[test]
fn a_hung_tlsd_is_killed_and_started_again() {
    let scratch = Scratch::new("sup-watchdog-tls");
    let config = |n| {
        format!(
            "[supervisor]\nwatchdog_ms = 1000\n{}{}",
            tls_section(None),
            sim_config(n, "")
        )
    };
    let a_dir = scratch.0.join("a");
    let b_dir = scratch.0.join("b");
    let a = Host::start(&config(1), &a_dir, &a_dir).expect("host a");
    let b = Host::start(&config(2), &b_dir, &a_dir).expect("host b");
    tls_echo(&a, &b, 4433).expect("TLS before");
    let tlsd = a.process("tlsd").unwrap();
    // A live process with a dead loop: stopped, it answers nothing.
    // SAFETY: kill(2) on a service of the set this test started.
    unsafe { libc::kill(tlsd.pid as libc::pid_t, libc::SIGSTOP) };
    let restarted = a
        .wait_process(
            "tlsd",
            |p| p.pid != 0 && p.pid != tlsd.pid && p.state == "running",
            Duration::from_secs(20),
        )
        .unwrap();
    assert!(
        restarted.last_exit.contains("killed by the watchdog"),
        "{}",
        restarted.last_exit
    );
    assert!(!alive(tlsd.pid));
    let status = capnet_tests::cli_ok(&a, &["status"]);
    assert!(status.contains("killed by the watchdog"), "{status}");
    // The new instance serves TLS (tls.sock appears a moment after start).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut port = 4434;
    while let Err(e) = tls_echo(&a, &b, port) {
        assert!(
            Instant::now() < deadline,
            "the restarted tlsd does not serve: {e}"
        );
        port += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    // It answers the watchdog too: still the same instance a while later.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(a.process("tlsd").unwrap().pid, restarted.pid);
}
