//! The layout of the benches that put capnet beside Linux (root only): a
//! namespace holding a TAP device, capnet's port, and one end of a veth
//! pair whose other end is in a second namespace. capnet talks to Linux
//! over the TAP; Linux talks to Linux over the veth, in the same layout.

use crate::procs::sh;
use capnet::host::Host;
use capnet_tests::Scratch;
use std::process::Command;

/// Linux's address on the TAP, in the namespace.
pub const TAP_LINUX: &str = "10.78.0.1";
/// capnet's address on its TAP port.
pub const TAP_CAPNET: &str = "10.78.0.2";
/// The namespace's end of the veth pair.
pub const VETH_NS: &str = "10.79.0.1";
/// The second namespace's end.
pub const VETH_CL: &str = "10.79.0.2";

/// The two namespaces; deleted on drop.
pub struct Namespaces {
    /// Holds the TAP and the veth end at [`VETH_NS`].
    pub ns: String,
    /// Holds the veth end at [`VETH_CL`].
    pub cl: String,
}

impl Namespaces {
    /// Sets the namespaces up (`tag` keeps benches apart); `None`, with
    /// the reason printed, when not root.
    pub fn new(bench: &str, tag: &str) -> Option<Namespaces> {
        if !capnet_tests::is_root() {
            println!("{bench}: skipped (needs root)");
            return None;
        }
        let ns = format!("capnet-{tag}{}", std::process::id());
        let cl = format!("{ns}c");
        let setup = format!(
            "ip netns add {ns} && ip netns add {cl} && ip -n {ns} link set lo up && \
             ip -n {cl} link set lo up && \
             ip -n {ns} tuntap add dev ctap0 mode tap && ip -n {ns} addr add {TAP_LINUX}/24 dev ctap0 && \
             ip -n {ns} link set ctap0 up && \
             ip -n {ns} link add veth0 type veth peer name veth1 netns {cl} && \
             ip -n {ns} addr add {VETH_NS}/24 dev veth0 && ip -n {ns} link set veth0 up && \
             ip -n {cl} addr add {VETH_CL}/24 dev veth1 && ip -n {cl} link set veth1 up"
        );
        let made = Namespaces { ns, cl };
        assert!(sh(&setup), "namespace setup");
        Some(made)
    }

    /// `program` run in namespace `netns` (one of ours).
    pub fn exec(netns: &str, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns, program]);
        cmd
    }

    /// A capnet service set whose one port is the TAP, at [`TAP_CAPNET`].
    pub fn capnet(&self, scratch: &Scratch) -> Host {
        self.capnet_with(scratch, "")
    }

    /// The same, with more configuration after the port (`[limits]`, ...).
    pub fn capnet_with(&self, scratch: &Scratch, extra: &str) -> Host {
        let config = format!(
            "[[port]]\nname = \"tap0\"\nbackend = \"tap\"\ntap = \"ctap0\"\nnetns = \"{}\"\naddresses = [\"{TAP_CAPNET}/24\"]\n{extra}",
            self.ns
        );
        let run = scratch.0.join("host");
        Host::start(&config, &run, &run).unwrap()
    }
}

/// Enters network namespace `name` (one of ours) on this thread.
pub fn enter_netns(name: &str) {
    let f = std::fs::File::open(format!("/run/netns/{name}")).expect("namespace");
    // SAFETY: setns on a namespace file we hold open; it changes only this
    // thread's network namespace.
    let r = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
}

/// A TCP sink in namespace `netns`, listening on `addr` once this returns:
/// it takes one connection and reads it to the end in 256 KiB reads (so
/// that it is never what a bench measures); the thread's answer is the
/// byte count.
pub fn sink(netns: &str, addr: std::net::SocketAddr) -> std::thread::JoinHandle<u64> {
    let netns = netns.to_string();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        enter_netns(&netns);
        let l = std::net::TcpListener::bind(addr).unwrap();
        ready_tx.send(()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let mut n = 0u64;
        loop {
            match std::io::Read::read(&mut s, &mut buf).unwrap() {
                0 => return n,
                k => n += k as u64,
            }
        }
    });
    ready_rx.recv().unwrap();
    t
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        sh(&format!(
            "ip netns del {} 2>/dev/null; ip netns del {} 2>/dev/null",
            self.ns, self.cl
        ));
    }
}
