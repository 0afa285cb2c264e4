//! capnet's TLS against Linux's TLS stacks: a network namespace with a TAP
//! device, Linux-side TLS programs in it (killed on drop), and a capnet
//! service set on that TAP port. `transfer` moves bulk data both ways
//! between capnet and such a program.

#![allow(dead_code)]

pub mod transfer;

use capnet::host::Host;
pub use capnet_tests::tap_rig::{sh, KillOnDrop};
use capnet_tests::{tls_section, Scratch};
use libclient::{RecordMode, TlsInfo, TlsVersion};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const OUR_MAC: &str = "02:00:00:00:aa:02";
/// capnet's address on the TAP port; the namespace's side is 10.77.0.1.
pub const CAPNET_IP: &str = "10.77.0.2";
pub const LINUX_IP: &str = "10.77.0.1";
/// The bulk transfers, each way.
pub const BULK: u64 = 64 << 20;
/// A hang guard on every stream and wait: no progress for this long fails
/// the test (it is not a speed requirement).
pub const STALL: Duration = Duration::from_secs(120);

pub type Sha = [u8; 32];

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha(b: &[u8]) -> Sha {
    Sha256::digest(b).into()
}

pub fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// A network namespace with a TAP device `ctap0` at 10.77.0.1/24; one per
/// test (`tag`), removed on drop.
pub struct Namespace(String);

impl Namespace {
    pub fn new(tag: &str) -> Namespace {
        let name = format!("capnet-ti-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh(&format!(
            "ip netns add {name} && ip -n {name} link set lo up && \
             ip -n {name} tuntap add dev ctap0 mode tap && \
             ip -n {name} addr add {LINUX_IP}/24 dev ctap0 && ip -n {name} link set ctap0 up"
        ));
        Namespace(name)
    }

    pub fn exec(&self, cmd: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, "bash", "-c", cmd]);
        c
    }

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
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("nothing listens on {port} in the namespace");
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// A Linux-side TLS program in the namespace, with piped stdin and stdout
/// and its stderr in a file; killed on drop.
pub struct Peer {
    name: String,
    proc: KillOnDrop,
    err: PathBuf,
}

impl Peer {
    pub fn spawn(ns: &Namespace, scratch: &Scratch, name: String, cmd: &str) -> Peer {
        let err = scratch.0.join(format!("{name}.stderr"));
        let proc = KillOnDrop(
            ns.exec(&format!("exec {cmd} 2>{}", err.display()))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        Peer { name, proc, err }
    }

    pub fn stdin(&mut self) -> ChildStdin {
        self.proc.0.stdin.take().unwrap()
    }

    pub fn stdout(&mut self) -> ChildStdout {
        self.proc.0.stdout.take().unwrap()
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.proc.0.try_wait().unwrap()
    }

    /// How it ended (given a moment to end), for a failure message.
    pub fn report(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut status = self.exited();
        while status.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            status = self.exited();
        }
        let status = status.map_or("still running".to_owned(), |s| s.to_string());
        format!(
            "{}: {status}; its stderr:\n{}",
            self.name,
            read_lossy(&self.err)
        )
    }

    /// Waits for it to end by itself, and insists that it succeeded.
    pub fn wait_success(&mut self) {
        let deadline = Instant::now() + STALL;
        loop {
            if let Some(status) = self.exited() {
                assert!(status.success(), "{}", self.report());
                return;
            }
            assert!(Instant::now() < deadline, "{}", self.report());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A capnet service set whose one port is the namespace's TAP device, with
/// tlsd serving the test PKI's identity and trusting its CA. With offload
/// the port captures what it puts on and takes off the wire
/// (`host/tap0.pcap`, kept with the scratch directory when a test fails):
/// with the peer's key log, a record the NIC got wrong can be read there.
pub fn tap_host(scratch: &Scratch, ns: &Namespace, offload: bool, keylog: Option<&Path>) -> Host {
    let run = scratch.0.join("host");
    let offload_lines = if offload {
        format!(
            "tls_offload = true\npcap = \"{}\"\n",
            run.join("tap0.pcap").display()
        )
    } else {
        String::new()
    };
    let config = format!(
        "[[port]]\nname = \"tap0\"\nbackend = \"tap\"\ntap = \"ctap0\"\nnetns = \"{}\"\n\
         mac = \"{OUR_MAC}\"\naddresses = [\"{CAPNET_IP}/24\"]\n{offload_lines}{}",
        ns.0,
        tls_section(keylog)
    );
    Host::start(&config, &run, &run).expect("capnet host on the TAP port")
}

/// What a connection agreed on, from capnet's side; and where capnet's
/// records are sealed: on the NIC with offload, else in tlsd.
pub fn check_info(info: &TlsInfo, version: TlsVersion, suite: &str, offload: bool) {
    assert_eq!(info.version, version, "{info:?}");
    assert_eq!(info.cipher_suite, suite, "{info:?}");
    let want = if offload {
        RecordMode::Device
    } else {
        RecordMode::Software
    };
    assert_eq!(info.tx, want, "capnet's sending side: {info:?}");
}

pub fn addr(ip: &str, port: u16) -> SocketAddr {
    format!("{ip}:{port}").parse().unwrap()
}
