//! The `capnet` command line as a user and a script meet it: help for every
//! command (taken from the command tree, so a new command is covered
//! without a change here), `--json` of every listing against a live set,
//! completions, a closed pipe, and a bad configuration refused before
//! anything starts.

use capnet::host::{capnet_binary, Host};
use capnet_tests::{cli_ok, sim_config, tls_section, Scratch};
use libclient::TlsOptions;
use serde_json::Value;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn capnet(args: &[&str]) -> Output {
    Command::new(capnet_binary().unwrap())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every command path of the tree ("bond add", "faults", ...), aliases
/// included.
fn paths(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
    for sub in cmd.get_subcommands() {
        for name in std::iter::once(sub.get_name()).chain(sub.get_all_aliases()) {
            let mut path = prefix.to_vec();
            path.push(name.to_string());
            out.push(path.clone());
            paths(sub, &path, out);
        }
    }
}

#[test]
fn help_answers_for_every_command() {
    let mut all = vec![vec![]];
    paths(&capnet::cli::args::command(), &[], &mut all);
    assert!(all.len() > 20, "{all:?}");
    for path in &all {
        let words: Vec<&str> = path.iter().map(String::as_str).collect();
        for flag in ["--help", "-h"] {
            let out = capnet(&[&words[..], &[flag]].concat());
            let said = text(&out.stdout);
            assert!(
                out.status.success(),
                "capnet {} {flag}: {}{}",
                path.join(" "),
                said,
                text(&out.stderr)
            );
            assert!(said.contains("Usage: capnet"), "{path:?}:\n{said}");
            // The last line ends: the shell prompt does not run into it.
            assert!(said.ends_with('\n'), "{path:?}:\n{said}");
        }
        let out = capnet(&[&["help"][..], &words].concat());
        let said = text(&out.stdout);
        assert!(out.status.success(), "capnet help {}", path.join(" "));
        assert!(said.contains("Usage: capnet"), "{path:?}:\n{said}");
    }
}

#[test]
fn usage_errors_name_the_argument_and_exit_2() {
    for (args, named) in [
        (&["link", "--bogus"][..], "--bogus"),
        (&["route", "add", "10.9.0.0", "via", "10.0.0.2"], "<TO>"),
        (&["route", "add", "default", "by", "10.0.0.2"], "<via>"),
        (&["wire", "p0", "--loss", "x"], "--loss"),
        (
            &["bond", "add", "b0", "--mode", "rr", "--legs", "p0"],
            "--mode",
        ),
        (&["completions", "tcsh"], "<SHELL>"),
        (&["frobnicate"], "frobnicate"),
    ] {
        let out = capnet(args);
        let said = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {said}");
        assert!(said.contains(named), "{args:?}: {said}");
        assert!(!said.contains("panicked"), "{args:?}: {said}");
    }
}

/// A pipe whose reader is already gone: every write to it fails with EPIPE.
fn closed_pipe() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills the two descriptors on success.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both are ours and open; the read end is closed at once.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    Stdio::from(write)
}

/// `capnet ... | head -1`: the reader goes away; capnet ends quietly.
fn quiet_on_a_closed_pipe(args: &[&str]) {
    let out = Command::new(capnet_binary().unwrap())
        .args(args)
        .stdin(Stdio::null())
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let said = text(&out.stderr);
    assert!(
        out.status.success(),
        "capnet {args:?}: {:?} {said}",
        out.status
    );
    assert!(said.is_empty(), "capnet {args:?}: {said}");
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    for args in [
        &["help"][..],
        &["--help"],
        &["bond", "add", "--help"],
        &["config"],
        &["run-dir"],
        &["completions", "bash"],
    ] {
        quiet_on_a_closed_pipe(args);
    }
}

#[test]
fn completions_for_each_shell() {
    let scratch = Scratch::new("cli-completions");
    for shell in ["bash", "zsh", "fish"] {
        let out = capnet(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        for word in ["capnet", "offload", "run-dir", "json"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
        if shell == "bash" {
            let file = scratch.0.join("capnet.bash");
            std::fs::write(&file, &script).unwrap();
            let check = Command::new("bash").arg("-n").arg(&file).output().unwrap();
            assert!(check.status.success(), "{}", text(&check.stderr));
        }
    }
}

/// `capnet up` with a configuration that netsrv or a driver would refuse:
/// it fails at once, says what is wrong and where, and starts nothing (the
/// run directory is never made).
#[test]
fn a_bad_configuration_is_refused_before_anything_starts() {
    let scratch = Scratch::new("cli-bad-config");
    let port = "[[port]]\nname = \"sim0\"\nbackend = \"sim\"\nwire = \"w.sock\"\n";
    for (config, said) in [
        (
            format!("{port}mac = \"zz\"\n"),
            "port sim0: mac \"zz\": expected six hex octets",
        ),
        (
            format!("{port}addresses = [\"10.0.0.1/24\"]\n[[route]]\nto = \"default\"\nvia = \"192.168.1.1\"\n"),
            "route to default via 192.168.1.1: the gateway is on no configured subnet (10.0.0.1/24 on port sim0)",
        ),
        (
            format!(
                "{port}addresses = [\"10.0.0.1/24\"]\n\
                 [[port]]\nname = \"sim1\"\nbackend = \"sim\"\nwire = \"w1.sock\"\naddresses = [\"10.0.0.1/16\"]\n"
            ),
            "address 10.0.0.1 is on both port sim0 and port sim1",
        ),
    ] {
        let file = scratch.0.join("bad.toml");
        std::fs::write(&file, &config).unwrap();
        let run_dir = scratch.0.join("run");
        let started = Instant::now();
        let out = Command::new(capnet_binary().unwrap())
            .arg("up")
            .arg("--config")
            .arg(&file)
            .arg("--run-dir")
            .arg(&run_dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(said), "expected {said:?} in:\n{err}");
        assert!(err.contains(&file.display().to_string()), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5), "{err}");
        assert!(!run_dir.exists(), "a run directory was made: {err}");
        assert!(!err.contains("nicdrv") && !err.contains("netsrv"), "{err}");
    }
}

fn json(host: &Host, args: &[&str]) -> Value {
    let out = cli_ok(host, args);
    assert_eq!(
        out.matches('\n').count(),
        1,
        "one document, one line:\n{out}"
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("capnet {args:?}: {e}:\n{out}"))
}

fn find<'a>(list: &'a Value, key: &str, value: &str) -> &'a Value {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .find(|v| v[key] == value)
        .unwrap_or_else(|| panic!("no {key} {value:?} in {list}"))
}

/// Every listing with `--json`, against two hosts with a live TLS
/// connection offloaded to the NIC, a bond and a route: each parses, and
/// says what the set is.
#[test]
fn every_listing_speaks_json() {
    let scratch = Scratch::new("cli-json");
    let (a_dir, b_dir) = (scratch.0.join("a"), scratch.0.join("b"));
    let tls = tls_section(None);
    // Host a also has two free ports (their wires lead nowhere) for a bond.
    let free = "[[port]]\nname = \"p0\"\nbackend = \"sim\"\nwire = \"free0.sock\"\n\
                [[port]]\nname = \"p1\"\nbackend = \"sim\"\nwire = \"free1.sock\"\n";
    let route = "[[route]]\nto = \"10.9.0.0/16\"\nvia = \"10.0.0.2\"\n";
    let a = Host::start(
        &format!("{}{free}{route}{tls}", sim_config(1, "tls_offload = true")),
        &a_dir,
        &a_dir,
    )
    .expect("host a");
    let b = Host::start(
        &format!("{}{tls}", sim_config(2, "tls_offload = true")),
        &b_dir,
        &a_dir,
    )
    .expect("host b");
    cli_ok(
        &a,
        &[
            "bond",
            "add",
            "bond0",
            "--mode",
            "active-backup",
            "--legs",
            "p0,p1",
            "--primary",
            "p1",
            "--address",
            "10.5.0.1/24",
        ],
    );

    // A TLS connection a -> b, open while we look.
    let listener = b
        .tls()
        .unwrap()
        .listen("0.0.0.0:4460".parse().unwrap(), 4, &TlsOptions::default())
        .unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                return;
            }
            s.write_all(&buf[..n]).unwrap();
        }
    });
    let s = a
        .tls()
        .unwrap()
        .connect_stream(
            "10.0.0.2:4460".parse().unwrap(),
            "capnet.test",
            &TlsOptions::default(),
        )
        .unwrap();
    // Enough records each way that both NIC engines count some. An RX
    // context made while the first bytes were already on their way starts
    // out of sync and may see them all pass before the holder's answer to
    // its resync request: then another round.
    let echo = || {
        let data = vec![0x5au8; 256 << 10];
        let mut back = vec![0u8; data.len()];
        std::thread::scope(|scope| {
            let s = &s;
            scope.spawn(move || (&mut &*s).write_all(&data).unwrap());
            (&mut &*s).read_exact(&mut back).unwrap();
        });
        assert!(back.iter().all(|b| *b == 0x5a));
    };
    echo();
    for _ in 0..8 {
        let contexts = json(&a, &["offload", "list", "--json"]);
        let opened = contexts
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["kind"] == "tls-rx")
            .filter_map(|c| c["records"].as_u64())
            .max();
        if opened.unwrap_or(0) > 0 {
            break;
        }
        echo();
    }

    // status
    let status = json(&a, &["status", "--json"]);
    for name in ["nicdrv sim0", "nicdrv p0", "netsrv", "tlsd"] {
        let p = find(&status["processes"], "name", name);
        assert_eq!(p["state"], "running", "{p}");
        assert!(p["pid"].as_u64().unwrap() > 0, "{p}");
        assert!(
            p["confinement"].as_str().unwrap().contains("landlock"),
            "{p}"
        );
        assert_eq!(p["restarts"], 0, "{p}");
    }
    let net = &status["net"];
    let sim0 = find(&net["ports"], "name", "sim0");
    assert_eq!(sim0["state"], "up", "{sim0}");
    assert_eq!(sim0["mac"], "02:00:00:00:00:01", "{sim0}");
    assert_eq!(sim0["interface"], "sim0", "{sim0}");
    assert!(
        sim0["counters"]["rx_frames"].as_u64().unwrap() > 0,
        "{sim0}"
    );
    assert_eq!(find(&net["ports"], "name", "p0")["interface"], "bond0");
    let addr = find(&net["addresses"], "address", "10.0.0.1/24");
    assert_eq!(addr["interface"], "sim0", "{addr}");
    assert_eq!(
        find(&net["addresses"], "address", "10.5.0.1/24")["interface"],
        "bond0"
    );
    assert_eq!(find(&net["routes"], "to", "10.9.0.0/16")["via"], "10.0.0.2");
    assert_eq!(find(&net["bonds"], "name", "bond0")["primary"], "p1");
    let socket = find(&net["sockets"], "remote", "10.0.0.2:4460");
    assert_eq!(socket["kind"], "tcp", "{socket}");
    assert!(
        net["counters"]["tcp_connects"].as_u64().unwrap() >= 1,
        "{net}"
    );
    assert!(net["counters"]["limits"]["sockets"].is_u64(), "{net}");
    assert!(
        net["counters"]["offload"]["tx_tagged"].as_u64().unwrap() > 0,
        "{net}"
    );

    // link, and one port
    let links = json(&a, &["link", "--json"]);
    assert_eq!(links.as_array().unwrap().len(), 3, "{links}");
    let l = find(&links, "name", "sim0");
    assert_eq!(
        (&l["state"], &l["restarts"]),
        (&"up".into(), &0.into()),
        "{l}"
    );
    assert_eq!(find(&links, "name", "p1")["interface"], "bond0");
    let port = json(&a, &["link", "sim0", "--json"]);
    assert_eq!(port["name"], "sim0", "{port}");
    assert_eq!(port["backend"], "sim", "{port}");
    assert_eq!(port["mac"], "02:00:00:00:00:01", "{port}");
    assert_eq!(
        port["offloads"],
        serde_json::json!(["tls-tx", "tls-rx"]),
        "{port}"
    );
    let tls_tx = find(&port["counters"]["offloads"], "kind", "tls-tx");
    assert!(tls_tx["records"].as_u64().unwrap() > 0, "{port}");

    // bond, route: with and without their verb
    let bonds = json(&a, &["bond", "--json"]);
    assert_eq!(bonds, json(&a, &["bond", "show", "--json"]));
    let bond0 = find(&bonds, "name", "bond0");
    assert_eq!(bond0["mode"], "active-backup", "{bond0}");
    assert_eq!(bond0["legs"], serde_json::json!(["p0", "p1"]), "{bond0}");
    let routes = json(&a, &["route", "--json"]);
    assert_eq!(routes, json(&a, &["route", "show", "-j"]));
    assert_eq!(
        routes,
        serde_json::json!([{ "to": "10.9.0.0/16", "via": "10.0.0.2" }])
    );

    // tls, offload
    let stat = json(&a, &["tls", "stat", "--json"]);
    assert_eq!(stat, json(&a, &["tls", "--json"]));
    assert_eq!(stat["TlsCurrTxDevice"], 1, "{stat}");
    assert_eq!(stat["TlsCurrRxDevice"], 1, "{stat}");
    assert!(stat["TlsHandshakes"].as_u64().unwrap() >= 1, "{stat}");
    let contexts = json(&a, &["offload", "list", "--json"]);
    assert_eq!(contexts.as_array().unwrap().len(), 2, "{contexts}");
    for kind in ["tls-tx", "tls-rx"] {
        let c = find(&contexts, "kind", kind);
        assert_eq!(c["port"], "sim0", "{c}");
        assert_eq!(c["state"], "active", "{c}");
        assert_eq!(c["flow"]["tcp"]["remote"], "10.0.0.2:4460", "{c}");
        assert!(
            c["flow"]["tcp"]["local"]
                .as_str()
                .unwrap()
                .starts_with("10.0.0.1:"),
            "{c}"
        );
        assert!(c["records"].as_u64().unwrap() >= 1, "{c}");
    }

    // Output into a closed pipe ends quietly here too.
    let dir = a.run_dir.display().to_string();
    quiet_on_a_closed_pipe(&["status", "--run-dir", &dir]);

    // No routes: the table says so, the JSON is an empty list.
    cli_ok(&a, &["route", "del", "10.9.0.0/16", "via", "10.0.0.2"]);
    let table = cli_ok(&a, &["route"]);
    assert!(table.starts_with("no routes"), "{table:?}");
    assert_eq!(json(&a, &["route", "--json"]), serde_json::json!([]));

    drop(s);
    server.join().unwrap();
}
