//! The TAP rig: a network namespace with a TAP device in it, the Linux
//! kernel's own stack behind that device as capnet's peer, and programs run
//! inside the namespace (killed on drop). Needs root.

use sha2::{Digest, Sha256};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The TAP device inside the namespace.
pub const TAP: &str = "ctap0";
/// Linux's address on the TAP device.
pub const LINUX_IP: &str = "10.77.0.1";
/// capnet's address on its TAP port.
pub const CAPNET_IP: &str = "10.77.0.2";

/// Runs a shell command and insists that it succeeded; its stdout.
pub fn sh(cmd: &str) -> String {
    let mut c = Command::new("bash");
    c.arg("-c").arg(cmd);
    checked(c, cmd)
}

fn checked(mut c: Command, cmd: &str) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace with the TAP device [`TAP`] at [`LINUX_IP`]/24,
/// named after the test (`tag`) and the test process; removed on drop.
pub struct Namespace(pub String);

impl Namespace {
    pub fn new(tag: &str) -> Namespace {
        let name = format!("capnet-{tag}{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh(&format!(
            "ip netns add {name} && ip -n {name} link set lo up && \
             ip -n {name} tuntap add dev {TAP} mode tap && \
             ip -n {name} addr add {LINUX_IP}/24 dev {TAP} && ip -n {name} link set {TAP} up"
        ));
        Namespace(name)
    }

    /// `bash -c cmd` inside the namespace, not started yet.
    pub fn exec(&self, cmd: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, "bash", "-c", cmd]);
        c
    }

    /// A shell command inside the namespace that must succeed; its stdout.
    pub fn sh(&self, cmd: &str) -> String {
        checked(self.exec(cmd), cmd)
    }

    /// A program inside the namespace, killed on drop.
    pub fn spawn(&self, cmd: &str) -> KillOnDrop {
        KillOnDrop(
            self.exec(&format!("exec {cmd}"))
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    /// Waits until something in the namespace listens on TCP `port`.
    pub fn wait_for_port(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let listening = self
                .exec(&format!("ss -ltn 'sport = :{port}' | grep -q LISTEN"))
                .status()
                .unwrap();
            if listening.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nothing listens on {port} in {}", self.0);
    }

    /// The `[[port]]` section of a capnet config whose port `tap0` is this
    /// namespace's TAP device, at [`CAPNET_IP`]/24, with extra TOML lines.
    pub fn port_config(&self, mac: &str, extra: &str) -> String {
        format!(
            "[[port]]\nname = \"tap0\"\nbackend = \"tap\"\ntap = \"{TAP}\"\nnetns = \"{}\"\n\
             mac = \"{mac}\"\naddresses = [\"{CAPNET_IP}/24\"]\n{extra}",
            self.0
        )
    }

    /// A capnet host run in `dir` whose one port is this namespace's TAP
    /// ([`Namespace::port_config`]).
    pub fn start_host(&self, dir: &std::path::Path, mac: &str, extra: &str) -> capnet::host::Host {
        capnet::host::Host::start(&self.port_config(mac, extra), dir, dir).unwrap()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// A child process, killed (and reaped) on drop.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn sha256_file(path: &std::path::Path) -> [u8; 32] {
    Sha256::digest(std::fs::read(path).unwrap()).into()
}
