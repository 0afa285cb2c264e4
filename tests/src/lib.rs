//! Helpers for the end-to-end tests: hosts on a sim wire, data patterns,
//! root-only fixtures.

use capnet::host::Host;
use std::path::PathBuf;

pub use capnet::demo::{pattern, receive_all, send_pattern};

/// Echoes everything back until EOF; returns the byte count.
pub fn echo_until_eof(s: &mut libclient::TcpStream) -> std::io::Result<usize> {
    use std::io::{Read, Write};
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        s.write_all(&buf[..n])?;
        total += n;
    }
}

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("capnet-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The config of host `n` (1 or 2) on a sim wire, with optional extra port
/// settings (TOML lines inside [[port]]).
pub fn sim_config(n: u8, extra: &str) -> String {
    format!(
        "[netsrv]\ntcp_buffer = 65536\n[[port]]\nname = \"sim0\"\nbackend = \"sim\"\nwire = \"wire0.sock\"\n\
         mac = \"02:00:00:00:00:0{n}\"\naddresses = [\"10.0.0.{n}/24\", \"fd00::{n}/64\"]\n{extra}\n"
    )
}

/// Two hosts, 10.0.0.1 and 10.0.0.2, on one sim wire.
pub fn two_hosts(scratch: &Scratch, extra: &str) -> (Host, Host) {
    let a_dir = scratch.0.join("a");
    let b_dir = scratch.0.join("b");
    let a = Host::start(&sim_config(1, extra), &a_dir, &a_dir).expect("host a");
    let b = Host::start(&sim_config(2, extra), &b_dir, &a_dir).expect("host b");
    (a, b)
}

/// Runs a CLI command on a host and insists that it succeeded.
pub fn cli_ok(host: &Host, args: &[&str]) -> String {
    let out = host.cli(args).expect("run capnet");
    assert!(
        out.status.success(),
        "capnet {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A counter's value from `capnet status` output ("name N").
pub fn status_counter(status: &str, name: &str) -> u64 {
    let words: Vec<&str> = status.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].trim_end_matches([',', ';']).parse().ok())
        .unwrap_or_else(|| panic!("no counter {name:?} in status:\n{status}"))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Tests that need root (TAP, namespaces) fail loudly without it, unless
/// the user opts out with CAPNET_SKIP_ROOT_TESTS=1 (then they say so).
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var_os("CAPNET_SKIP_ROOT_TESTS").is_some() {
        eprintln!("SKIPPED {test}: needs root (CAPNET_SKIP_ROOT_TESTS is set)");
        return false;
    }
    panic!("{test} needs root for TAP devices and network namespaces; run as root or set CAPNET_SKIP_ROOT_TESTS=1");
}
