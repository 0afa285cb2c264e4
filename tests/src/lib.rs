//! Helpers for the end-to-end tests: hosts on a sim wire, data patterns,
//! root-only fixtures.

use capnet::host::Host;
use std::path::PathBuf;

pub mod tap_rig;

pub use capnet::demo::{pattern, receive_all, receive_counting, send_pattern, Progress};

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

/// A scratch directory removed on drop, unless the test failed (then its
/// captures and configs are kept for a look).
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
        if std::thread::panicking() {
            eprintln!("the test failed: {} kept", self.0.display());
            return;
        }
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

/// A throwaway PKI (CA, and a server certificate for capnet.test and the
/// test addresses) made by `scripts/test-pki.sh` with openssl, once per
/// test process.
pub fn pki() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("capnet-pki-{}", std::process::id()));
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-pki.sh");
        let ok = std::process::Command::new("bash")
            .arg(script)
            .arg(&dir)
            .status()
            .expect("bash")
            .success();
        assert!(ok, "scripts/test-pki.sh failed (openssl is needed)");
        dir
    })
    .clone()
}

/// A `[tls]` section: the PKI's server identity and trust root, and an
/// optional key log.
pub fn tls_section(keylog: Option<&std::path::Path>) -> String {
    let p = pki();
    let mut s = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\nroots = \"{}\"\n",
        p.join("server.pem").display(),
        p.join("server.key").display(),
        p.join("ca.pem").display()
    );
    if let Some(k) = keylog {
        s += &format!("keylog = \"{}\"\n", k.display());
    }
    s
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

/// The config of host `n` (1 or 2) with `ports` sim ports p0.. on wires
/// wire0.., the first two in bond0 (`mode`, 10.0.0.n/24, fd00::n/64), and
/// `extra` TOML appended (more ports, routes).
pub fn bond_config(n: u8, mode: &str, primary: Option<&str>, extra: &str) -> String {
    bond_config_with(n, mode, primary, extra, "")
}

/// `bond_config` with more `[netsrv]` settings (TOML lines).
pub fn bond_config_with(
    n: u8,
    mode: &str,
    primary: Option<&str>,
    extra: &str,
    netsrv: &str,
) -> String {
    let mut c = format!("[netsrv]\ntcp_buffer = 65536\n{netsrv}\n");
    for p in 0..2 {
        c += &format!(
            "[[port]]\nname = \"p{p}\"\nbackend = \"sim\"\nwire = \"wire{p}.sock\"\n\
             mac = \"02:00:00:00:0{n}:0{p}\"\n"
        );
    }
    c += &format!(
        "[[bond]]\nname = \"bond0\"\nmode = \"{mode}\"\nlegs = [\"p0\", \"p1\"]\n\
         addresses = [\"10.0.0.{n}/24\", \"fd00::{n}/64\"]\n"
    );
    if let Some(p) = primary {
        c += &format!("primary = \"{p}\"\n");
    }
    c + extra
}

/// Two hosts joined by two sim wires, each with a two-leg bond0.
///
/// Returns once both legs are up on both hosts and, in active-backup, both
/// hosts send on the same leg. (Back to back, with no switch to flood
/// broadcasts to every leg, two hosts that chose different legs never hear
/// each other's ARP: each drops group frames on its inactive leg, as Linux
/// does. Give active-backup a primary for that reason.)
pub fn bond_hosts(scratch: &Scratch, mode: &str, primary: Option<&str>) -> (Host, Host) {
    let a_dir = scratch.0.join("a");
    let b_dir = scratch.0.join("b");
    let a = Host::start(&bond_config(1, mode, primary, ""), &a_dir, &a_dir).expect("host a");
    let b = Host::start(&bond_config(2, mode, primary, ""), &b_dir, &a_dir).expect("host b");
    wait_bonds_settled(&a, &b, mode == "active-backup");
    (a, b)
}

/// Waits until bond0's legs p0 and p1 are up on both hosts and, for
/// active-backup, both hosts send on the same leg.
pub fn wait_bonds_settled(a: &Host, b: &Host, active_backup: bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (sa, sb) = (snapshot(a), snapshot(b));
        let up = [&sa, &sb]
            .iter()
            .all(|s| ["p0", "p1"].iter().all(|p| s.port(p).state == "up"));
        let agree = !active_backup || (!sa.active.is_empty() && sa.active == sb.active);
        if up && agree {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the bonds never settled: a on {:?}, b on {:?}",
            sa.active,
            sb.active
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A process's resident memory in KiB (0 once it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// A raw capnp client of the service socket at `socket`, and its handoff
/// connection: what a client that bypasses libclient holds. Call inside a
/// tokio `LocalSet`.
pub fn raw_net(
    socket: &std::path::Path,
) -> (
    capnet_schema::net_capnp::net::Client,
    std::os::unix::net::UnixStream,
) {
    use capnet_ring::handoff::{CONNECT_HANDOFF, CONNECT_RPC};
    use std::io::Write;
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    s.write_all(&[CONNECT_RPC]).unwrap();
    s.set_nonblocking(true).unwrap();
    let net = capnet_schema::transport::connect(tokio::net::UnixStream::from_std(s).unwrap());
    let mut handoff = std::os::unix::net::UnixStream::connect(socket).unwrap();
    handoff.write_all(&[CONNECT_HANDOFF]).unwrap();
    (net, handoff)
}

/// Open descriptors and mapped memfds of a process (a leak check).
pub fn fds_and_memfds(pid: u32) -> (usize, usize) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    let memfds = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map(|m| {
            let mut regions: Vec<&str> = m
                .lines()
                .filter(|l| l.contains("/memfd:"))
                .filter_map(|l| l.split_whitespace().nth(4))
                .collect();
            regions.sort();
            regions.dedup();
            regions.len()
        })
        .unwrap_or(0);
    (fds, memfds)
}

/// Waits until `progress` passes `bytes`; false on timeout.
pub fn wait_progress(progress: &Progress, bytes: u64, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while progress.load(std::sync::atomic::Ordering::Relaxed) < bytes {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    true
}

/// What netsrv reports about one port.
#[derive(Clone, Debug, Default)]
pub struct PortSnap {
    pub name: String,
    pub state: String,
    pub epoch: u32,
    /// Frames the stack sent and received on the port (a frame merged
    /// for segmentation offload is one).
    pub tx_frames: u64,
    pub rx_frames: u64,
    /// Frames the port's driver put on its medium (segments).
    pub wire_tx_frames: u64,
}

/// netsrv's status, read through the supervisor's admin socket.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub ports: Vec<PortSnap>,
    /// Of the first bond, if any.
    pub active: String,
    pub failovers: u64,
    pub announcements: u64,
    pub tcp_resets: u64,
    pub driver_attaches: u64,
    pub driver_detaches: u64,
    pub rings_mapped: u64,
}

impl Snapshot {
    pub fn port(&self, name: &str) -> &PortSnap {
        self.ports
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no port {name} in {self:?}"))
    }
}

pub fn snapshot(host: &Host) -> Snapshot {
    use capnet_schema::supervisor_capnp::supervisor;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let sup: supervisor::Client =
            capnet::rpc::connect(&host.run_dir.join("admin.sock")).expect("admin socket");
        let resp = sup.status_request().send().promise.await.expect("status");
        let net = resp.get().unwrap().get_net().unwrap();
        let mut snap = Snapshot::default();
        for p in net.get_ports().unwrap() {
            snap.ports.push(PortSnap {
                name: p.get_name().unwrap().to_string().unwrap(),
                state: p.get_state().unwrap().to_string().unwrap(),
                epoch: p.get_driver_epoch(),
                tx_frames: p.get_tx_frames(),
                rx_frames: p.get_rx_frames(),
                wire_tx_frames: p.get_counters().map_or(0, |c| c.get_tx_frames()),
            });
        }
        if let Some(b) = net.get_bonds().unwrap().iter().next() {
            snap.active = b.get_active().unwrap().to_string().unwrap();
            snap.failovers = b.get_failovers();
            snap.announcements = b.get_announcements();
        }
        let c = net.get_counters().unwrap();
        snap.tcp_resets = c.get_tcp_resets();
        snap.driver_attaches = c.get_driver_attaches();
        snap.driver_detaches = c.get_driver_detaches();
        snap.rings_mapped = c.get_rings_mapped();
        snap
    })
}

/// `bond_config` with TOML lines inside each leg's [[port]] (`legs[0]` for
/// p0, `legs[1]` for p1): e.g. one leg with TLS offload, captures.
pub fn bond_config_legs(
    n: u8,
    mode: &str,
    primary: Option<&str>,
    legs: [&str; 2],
    extra: &str,
) -> String {
    let mut c = "[netsrv]\ntcp_buffer = 65536\n".to_string();
    for (p, leg) in legs.iter().enumerate() {
        c += &format!(
            "[[port]]\nname = \"p{p}\"\nbackend = \"sim\"\nwire = \"wire{p}.sock\"\n\
             mac = \"02:00:00:00:0{n}:0{p}\"\n{leg}\n"
        );
    }
    c += &format!(
        "[[bond]]\nname = \"bond0\"\nmode = \"{mode}\"\nlegs = [\"p0\", \"p1\"]\n\
         addresses = [\"10.0.0.{n}/24\", \"fd00::{n}/64\"]\n"
    );
    if let Some(p) = primary {
        c += &format!("primary = \"{p}\"\n");
    }
    c + extra
}

/// What a classic pcap file (as nicdrv's `pcap` writes) holds of TCP.
#[derive(Clone, Debug, Default)]
pub struct PcapTcp {
    /// Frames, and those with TCP payload, and its bytes.
    pub frames: u64,
    pub tcp_segments: u64,
    pub tcp_payload_bytes: u64,
    /// Segments whose payload contains the searched string: (frame index,
    /// source port, destination port).
    pub hits: Vec<(u64, u16, u16)>,
}

/// Reads `path` (as nicdrv's `pcap` writes it) and looks for `needle` in
/// every TCP payload. The capture may be live: a record its driver is
/// still writing at the end is left out.
pub fn pcap_tcp_search(path: &std::path::Path, needle: &[u8]) -> std::io::Result<PcapTcp> {
    let bad = |what: String| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {what}", path.display()),
        )
    };
    let (linktype, records, _torn) =
        nicdrv::pcap::parse_live(&std::fs::read(path)?).map_err(bad)?;
    if linktype != nicdrv::pcap::LINKTYPE_ETHERNET {
        return Err(bad(format!("link type {linktype}, not Ethernet")));
    }
    let mut out = PcapTcp {
        frames: records.len() as u64,
        ..PcapTcp::default()
    };
    for (index, record) in records.iter().enumerate() {
        let Some(seg) = nicdrv::offload::parse_tcp(&record.data) else {
            continue;
        };
        let payload = &record.data[seg.payload];
        if payload.is_empty() {
            continue;
        }
        out.tcp_segments += 1;
        out.tcp_payload_bytes += payload.len() as u64;
        if payload.windows(needle.len()).any(|w| w == needle) {
            out.hits
                .push((index as u64, seg.src.port(), seg.dst.port()));
        }
    }
    Ok(out)
}

fn socket_addr(s: &str) -> std::net::SocketAddr {
    s.parse().unwrap()
}

/// A stream the both-ways transfer runs on: a TCP or a TLS stream.
pub trait ByteStream: Send + Sync + 'static
where
    for<'a> &'a Self: std::io::Read + std::io::Write,
{
    fn shutdown_write(&self);
}

impl ByteStream for libclient::TcpStream {
    fn shutdown_write(&self) {
        self.shutdown(std::net::Shutdown::Write).unwrap();
    }
}

impl ByteStream for libclient::TlsStream {
    fn shutdown_write(&self) {
        self.shutdown(std::net::Shutdown::Write).unwrap();
    }
}

/// `bytes` each way at once between the stream `connect` gives and the one
/// `accept` gives (on a thread of its own, started first, so that a
/// handshake can run), each checked whole against what the other side
/// sent; returns the client's stream and the digests of what arrived
/// (client->server, server->client).
pub fn both_ways<S: ByteStream>(
    connect: impl FnOnce() -> S,
    accept: impl FnOnce() -> S + Send + 'static,
    bytes: u64,
) -> (S, [u8; 32], [u8; 32])
where
    for<'a> &'a S: std::io::Read + std::io::Write,
{
    // Sends its pattern while it reads the other side's to the end.
    let exchange = move |s: &S, seed: u64| {
        std::thread::scope(|scope| {
            let w = scope.spawn(|| {
                let h = send_pattern(&mut &*s, seed, bytes).unwrap();
                s.shutdown_write();
                h
            });
            let got = receive_all(&mut &*s).unwrap();
            (w.join().unwrap(), got)
        })
    };
    let server = std::thread::spawn(move || exchange(&accept(), 22));
    let client = connect();
    let (sent_a, got_a) = exchange(&client, 11);
    let (sent_b, got_b) = server.join().unwrap();
    assert_eq!(got_b.0, bytes, "client->server byte count");
    assert_eq!(got_b.1, sent_a, "client->server sha256");
    assert_eq!(got_a.0, bytes, "server->client byte count");
    assert_eq!(got_a.1, sent_b, "server->client sha256");
    (client, got_b.1, got_a.1)
}

/// `bytes` each way on one connection from 10.0.0.1 (`a`) to 10.0.0.2:`port`
/// (`b`), both directions at once, each checked whole against what the
/// other side sent; returns the digests of what arrived (a->b, b->a).
pub fn transfer_both_ways(
    a: &libclient::Net,
    b: &libclient::Net,
    port: u16,
    bytes: u64,
) -> ([u8; 32], [u8; 32]) {
    let listener = b
        .tcp_listen(socket_addr(&format!("0.0.0.0:{port}")), 4)
        .unwrap();
    let to = socket_addr(&format!("10.0.0.2:{port}"));
    let (_, ab, ba) = both_ways(
        || a.tcp_connect(to, None).unwrap(),
        move || listener.accept().unwrap().0,
        bytes,
    );
    (ab, ba)
}

/// A transfer from a well-behaved client (10.0.0.1 to 10.0.0.2 on `port`),
/// run while something hostile happens. `connected` hears once both ends are up;
/// the handle returns once every byte was verified.
pub fn good_transfer(
    a: &libclient::Net,
    b: &libclient::Net,
    port: u16,
    bytes: u64,
) -> (std::thread::JoinHandle<()>, std::sync::mpsc::Receiver<()>) {
    let listener = b
        .tcp_listen(socket_addr(&format!("0.0.0.0:{port}")), 4)
        .unwrap();
    let a = a.clone();
    let (up_tx, up_rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            receive_all(&mut s).unwrap()
        });
        let s = a
            .tcp_connect(socket_addr(&format!("10.0.0.2:{port}")), None)
            .unwrap();
        let _ = up_tx.send(());
        let sent = send_pattern(&mut &s, 5, bytes).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let (n, got) = server.join().unwrap();
        assert_eq!(n, bytes);
        assert_eq!(got, sent);
    });
    (handle, up_rx)
}

/// The fields of /proc/PID/status after `name:` (`"Uid:"` gives the real,
/// effective, saved and filesystem uids).
pub fn proc_field(pid: u32, name: &str) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// The size of a shared region's memfd.
pub fn region_len(region: &std::os::fd::OwnedFd) -> usize {
    let file = std::fs::File::from(region.try_clone().unwrap());
    file.metadata().unwrap().len() as usize
}

/// Overwrites a shared region with `fill`, as a hostile client could.
pub fn scribble(region: &std::os::fd::OwnedFd, fill: impl Fn(usize) -> u8) {
    let len = region_len(region);
    let map = capnet_ring::SharedRegion::from_fd(region.try_clone().unwrap(), len).unwrap();
    // SAFETY: the whole live mapping; the bytes are the peer's to read as
    // whatever it finds (a hostile write, on purpose).
    let bytes = unsafe { std::slice::from_raw_parts_mut(map.as_ptr(), len) };
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = fill(i);
    }
}
