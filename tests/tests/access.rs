//! Who may use the network, bind low ports and administer is policy on
//! each peer's credentials (`[access]`), and clients check whom they talk
//! to before they send a byte. Root-only: the tests run clients as other
//! users with setpriv.

use capnet::host::Host;
use capnet_tests::{require_root, sim_config, Scratch};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const NOBODY: u32 = 65534;
const OTHER: u32 = 65533;

/// The binaries, copied where any user may run them (the build tree may
/// sit in a directory only root can enter).
fn public_bin(scratch: &Scratch) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch.0.join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    let built = capnet::host::capnet_binary().unwrap();
    let debug = built.parent().unwrap();
    for (from, name) in [
        (debug.join("capnet"), "capnet"),
        (debug.join("examples/echo_server"), "echo_server"),
    ] {
        std::fs::copy(&from, dir.join(name)).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
    for p in [&scratch.0, &dir] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

/// `program` as `uid`, in a clean environment but for `socket` as
/// CAPNET_SOCKET.
fn as_user(uid: u32, program: &Path, socket: Option<&Path>) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg("--clear-groups")
        .arg("env")
        .arg("-i")
        .arg("PATH=/usr/bin:/bin");
    if let Some(socket) = socket {
        cmd.arg(format!("CAPNET_SOCKET={}", socket.display()));
    }
    cmd.arg(program).stdin(Stdio::null());
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Two hosts whose a has `access` as its [access] section.
fn hosts(scratch: &Scratch, access: &str) -> (Host, Host) {
    let a_dir = scratch.0.join("a");
    let b_dir = scratch.0.join("b");
    let a = Host::start(&format!("{access}\n{}", sim_config(1, "")), &a_dir, &a_dir).unwrap();
    let b = Host::start(&sim_config(2, ""), &b_dir, &a_dir).unwrap();
    (a, b)
}

/// An echo server run as `uid` on host `a`.
fn echo_as(uid: u32, bin: &Path, a: &Host, addr: &str) -> Child {
    as_user(uid, &bin.join("echo_server"), Some(&a.socket))
        .arg(addr)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn low_ports_and_the_network_follow_the_policy() {
    if !require_root("low_ports_and_the_network_follow_the_policy") {
        return;
    }
    let scratch = Scratch::new("access-net");
    let bin = public_bin(&scratch);
    let (a, b) = hosts(
        &scratch,
        &format!("[access]\nnetwork = [\"owner\", {NOBODY}, {OTHER}]\nlow_ports = [\"owner\", {OTHER}]\n"),
    );
    // A user may use the network, but not bind a low port...
    let out = as_user(NOBODY, &bin.join("echo_server"), Some(&a.socket))
        .arg("0.0.0.0:7")
        .output()
        .unwrap();
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("port 7 is below 1024"), "{said}");
    assert!(!said.contains("remote exception"), "{said}");
    // ...a high one works and carries data...
    let mut server = echo_as(NOBODY, &bin, &a, "0.0.0.0:7007");
    let nb = b.net().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut s = loop {
        match nb.tcp_connect("10.0.0.1:7007".parse().unwrap(), None) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("connect: {e}"),
        }
    };
    s.write_all(b"who may talk").unwrap();
    let mut got = [0u8; 12];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"who may talk");
    drop(s);
    let _ = server.kill();
    let _ = server.wait();
    // ...and one listed under low_ports binds port 7.
    let mut low = echo_as(OTHER, &bin, &a, "0.0.0.0:7");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(low.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.contains("echo on 0.0.0.0:7"), "{line:?}");
    let _ = low.kill();
    let _ = low.wait();
    // A user outside `network` is refused with a reason, and counted.
    let out = as_user(1234, &bin.join("echo_server"), Some(&a.socket))
        .arg("0.0.0.0:7008")
        .output()
        .unwrap();
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("uid 1234 may not use this network"), "{said}");
    let status = capnet_tests::cli_ok(&a, &["status"]);
    assert!(status.contains("refused 1 "), "{status}");
}

#[test]
fn only_admins_administer() {
    if !require_root("only_admins_administer") {
        return;
    }
    let scratch = Scratch::new("access-admin");
    let bin = public_bin(&scratch);
    let (a, _b) = hosts(
        &scratch,
        &format!("[access]\nadmin = [\"owner\", {OTHER}]\n"),
    );
    let status = |uid: u32| {
        as_user(uid, &bin.join("capnet"), None)
            .args(["status", "--run-dir"])
            .arg(&a.run_dir)
            .output()
            .unwrap()
    };
    let out = status(OTHER);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("netsrv"));
    let out = status(NOBODY);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains(&format!("uid {NOBODY} may not administer")),
        "{said}"
    );
    assert!(!said.contains("remote exception"), "{said}");
}

#[test]
fn a_run_directory_planted_by_another_user_is_not_trusted() {
    if !require_root("a_run_directory_planted_by_another_user_is_not_trusted") {
        return;
    }
    let scratch = Scratch::new("access-plant");
    let bin = public_bin(&scratch);
    // Another user makes nobody's default run directory first and serves
    // fake sockets in it.
    let planted = PathBuf::from(format!("/tmp/capnet-{NOBODY}"));
    let _ = std::fs::remove_dir_all(&planted);
    std::fs::create_dir(&planted).unwrap();
    std::os::unix::fs::chown(&planted, Some(OTHER), Some(OTHER)).unwrap();
    let fake = as_user(OTHER, Path::new("/usr/bin/python3"), None)
        .arg("-c")
        .arg(
            "import os,socket,sys,time\n\
             s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o777); s.listen(8)\n\
             while True:\n  c,_=s.accept(); print(c.recv(100), flush=True)\n",
        )
        .arg(planted.join("capnet.sock"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    struct Cleanup(Child, PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }
    let _cleanup = Cleanup(fake, planted.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !planted.join("capnet.sock").exists() {
        assert!(Instant::now() < deadline, "the fake server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // nobody's application, with no CAPNET_SOCKET and no XDG_RUNTIME_DIR,
    // would use it: it refuses.
    let out = as_user(NOBODY, &bin.join("echo_server"), None)
        .arg("0.0.0.0:7009")
        .output()
        .unwrap();
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("not trusting"), "{said}");
    assert!(said.contains(&format!("belongs to uid {OTHER}")), "{said}");
    // And nobody's `capnet up` will not start in it either.
    let out = as_user(NOBODY, &bin.join("capnet"), None)
        .arg("up")
        .output()
        .unwrap();
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("not a directory of ours"), "{said}");
}
