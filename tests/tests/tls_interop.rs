//! TLS interoperability: capnet's tlsd on a TAP port talks to Linux-side
//! TLS stacks in a network namespace the test makes (openssl s_server and
//! s_client, Python's `ssl`), 64 MiB each way, byte-exact; tshark decrypts
//! a capture with the key logs and finds no plaintext on the wire. Needs
//! root.
//!
//! Every case takes `offload`: with it the TAP port gets `tls_offload =
//! true` and capnet's side of each connection must seal on the NIC
//! (`TlsInfo::tx == Device`). Only `offload = false` runs today.

use capnet::host::Host;
use capnet_tests::{pattern, pki, require_root, tls_section, Scratch};
use libclient::{RecordMode, TlsInfo, TlsListener, TlsOptions, TlsStream, TlsVersion};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const OUR_MAC: &str = "02:00:00:00:aa:02";
/// capnet's address on the TAP port; the namespace's side is 10.77.0.1.
const CAPNET_IP: &str = "10.77.0.2";
const LINUX_IP: &str = "10.77.0.1";
/// The bulk transfers, each way.
const BULK: u64 = 64 << 20;
/// The capture test's data is lines that start with this.
const MARKER: &str = "CAPNET-TLS-INTEROP-PLAINTEXT-MARKER";
/// A hang guard on every stream and wait: no progress for this long fails
/// the test (it is not a speed requirement).
const STALL: Duration = Duration::from_secs(120);

type Sha = [u8; 32];

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha(b: &[u8]) -> Sha {
    Sha256::digest(b).into()
}

fn sh(cmd: &str) -> String {
    let out = Command::new("bash").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// A network namespace with a TAP device `ctap0` at 10.77.0.1/24; one per
/// test (`tag`), removed on drop.
struct Namespace(String);

impl Namespace {
    fn new(tag: &str) -> Namespace {
        let name = format!("capnet-ti-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh(&format!(
            "ip netns add {name} && ip -n {name} link set lo up && \
             ip -n {name} tuntap add dev ctap0 mode tap && \
             ip -n {name} addr add {LINUX_IP}/24 dev ctap0 && ip -n {name} link set ctap0 up"
        ));
        Namespace(name)
    }

    fn exec(&self, cmd: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, "bash", "-c", cmd]);
        c
    }

    fn wait_for_port(&self, port: u16) {
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

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Linux-side TLS program in the namespace, with piped stdin and stdout
/// and its stderr in a file; killed on drop.
struct Peer {
    name: String,
    proc: KillOnDrop,
    err: PathBuf,
}

impl Peer {
    fn spawn(ns: &Namespace, scratch: &Scratch, name: String, cmd: &str) -> Peer {
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

    fn stdin(&mut self) -> ChildStdin {
        self.proc.0.stdin.take().unwrap()
    }

    fn stdout(&mut self) -> ChildStdout {
        self.proc.0.stdout.take().unwrap()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.proc.0.try_wait().unwrap()
    }

    /// How it ended (given a moment to end), for a failure message.
    fn report(&mut self) -> String {
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
    fn wait_success(&mut self) {
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
/// tlsd serving the test PKI's identity and trusting its CA.
fn tap_host(scratch: &Scratch, ns: &Namespace, offload: bool, keylog: Option<&Path>) -> Host {
    let config = format!(
        "[[port]]\nname = \"tap0\"\nbackend = \"tap\"\ntap = \"ctap0\"\nnetns = \"{}\"\n\
         mac = \"{OUR_MAC}\"\naddresses = [\"{CAPNET_IP}/24\"]\n{}{}",
        ns.0,
        if offload { "tls_offload = true\n" } else { "" },
        tls_section(keylog)
    );
    let run = scratch.0.join("host");
    Host::start(&config, &run, &run).expect("capnet host on the TAP port")
}

/// What a connection agreed on, from capnet's side; and where capnet's
/// records are sealed: on the NIC with offload, else in tlsd.
fn check_info(info: &TlsInfo, version: TlsVersion, suite: &str, offload: bool) {
    assert_eq!(info.version, version, "{info:?}");
    assert_eq!(info.cipher_suite, suite, "{info:?}");
    let want = if offload {
        RecordMode::Device
    } else {
        RecordMode::Software
    };
    assert_eq!(info.tx, want, "capnet's sending side: {info:?}");
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    format!("{ip}:{port}").parse().unwrap()
}

/// Bytes one side sends.
#[derive(Clone)]
enum Payload {
    /// `pattern(seed)`, this many bytes.
    Pattern(u64, u64),
    Bytes(Arc<Vec<u8>>),
}

impl Payload {
    fn len(&self) -> u64 {
        match self {
            Payload::Pattern(_, n) => *n,
            Payload::Bytes(b) => b.len() as u64,
        }
    }

    /// Writes it all; returns the sha256 of what was written.
    fn write_to(&self, w: &mut impl Write) -> std::io::Result<Sha> {
        match self {
            Payload::Pattern(seed, n) => capnet_tests::send_pattern(w, *seed, *n),
            Payload::Bytes(b) => {
                for chunk in b.chunks(64 << 10) {
                    w.write_all(chunk)?;
                }
                Ok(sha(b))
            }
        }
    }

    fn to_vec(&self) -> Vec<u8> {
        match self {
            Payload::Pattern(seed, n) => {
                let mut v = vec![0u8; *n as usize];
                pattern(*seed, 0, &mut v);
                v
            }
            Payload::Bytes(b) => b.to_vec(),
        }
    }
}

/// `len` bytes of lines "MARKER/tag 00000000\n", "MARKER/tag 00000001\n", ...
fn marked(tag: &str, len: usize) -> Payload {
    let mut v = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while v.len() < len {
        v.extend_from_slice(format!("{MARKER}/{tag} {i:08}\n").as_bytes());
        i += 1;
    }
    v.truncate(len);
    Payload::Bytes(Arc::new(v))
}

/// Feeds `data` into a peer's stdin, then keeps stdin open until `done`
/// fires (or its sender is gone); returns the sha256 fed.
fn feed(
    mut stdin: ChildStdin,
    data: Payload,
    done: mpsc::Receiver<()>,
) -> JoinHandle<std::io::Result<Sha>> {
    std::thread::spawn(move || {
        let h = data.write_to(&mut stdin)?;
        stdin.flush()?;
        let _ = done.recv();
        Ok(h)
    })
}

/// Reads a peer's stdout to EOF (bytes, sha256); fires `arrived` once
/// `expect` bytes are in.
fn drain(
    mut stdout: ChildStdout,
    expect: u64,
    arrived: mpsc::Sender<()>,
) -> JoinHandle<std::io::Result<(u64, Sha)>> {
    std::thread::spawn(move || {
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 64 << 10];
        let mut total = 0u64;
        let mut arrived = Some(arrived);
        loop {
            let n = stdout.read(&mut buf)?;
            if n == 0 {
                return Ok((total, hash.finalize().into()));
            }
            hash.update(&buf[..n]);
            total += n as u64;
            if total >= expect {
                if let Some(a) = arrived.take() {
                    let _ = a.send(());
                }
            }
        }
    })
}

/// Reads `limit` bytes (fewer only at end of stream; `None`: to end of
/// stream); (bytes, sha256).
fn receive(r: &mut impl Read, limit: Option<u64>) -> std::io::Result<(u64, Sha)> {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    let limit = limit.unwrap_or(u64::MAX);
    while total < limit {
        let want = (limit - total).min(buf.len() as u64) as usize;
        let got = r.read(&mut buf[..want])?;
        if got == 0 {
            break;
        }
        hash.update(&buf[..got]);
        total += got as u64;
    }
    Ok((total, hash.finalize().into()))
}

/// capnet's side of a transfer both ways at once: sends `out` on `s` (from
/// a thread of its own) while it reads `limit` bytes (`None`: to the
/// peer's close_notify), then fires `received`. Returns (sha256 sent,
/// (bytes, sha256) received), or the first failure (the read's, if it
/// failed: that is what the peer did).
fn both_ways(
    s: &Arc<TlsStream>,
    out: &Payload,
    limit: Option<u64>,
    received: mpsc::Sender<()>,
) -> Result<(Sha, (u64, Sha)), String> {
    let writer = {
        let (s, out) = (s.clone(), out.clone());
        std::thread::spawn(move || out.write_to(&mut &*s))
    };
    let got = receive(&mut &**s, limit).map_err(|e| format!("capnet read: {e}"))?;
    let _ = received.send(());
    // A failed read returned above without waiting for the writer: it ends
    // on its own when the stream dies.
    let sent = writer
        .join()
        .unwrap()
        .map_err(|e| format!("capnet write: {e}"))?;
    Ok((sent, got))
}

fn guard(s: &TlsStream) {
    s.set_read_timeout(Some(STALL)).unwrap();
    s.set_write_timeout(Some(STALL)).unwrap();
}

/// Accepts one connection while `peer` runs. The accept blocks in a
/// thread of its own: a non-blocking `accept` that times out can lose the
/// connection tlsd hands over just then.
fn accept_from(listener: TlsListener, peer: &mut Peer) -> Arc<TlsStream> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(listener.accept().map(|(s, _)| s));
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match rx.recv_timeout(Duration::from_millis(10)) {
            Ok(Ok(s)) => {
                guard(&s);
                return Arc::new(s);
            }
            Ok(Err(e)) => panic!("accept: {e}\n{}", peer.report()),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("accept thread died"),
        }
        if peer.exited().is_some() {
            panic!(
                "the peer ended before a connection was accepted; {}",
                peer.report()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no connection accepted; {}",
            peer.report()
        );
    }
}

/// After the peer has gone: its close_notify ended the stream, and no byte
/// came beyond what was expected.
fn expect_clean_end(s: &TlsStream, peer: &mut Peer) {
    let mut buf = [0u8; 4096];
    match (&*s).read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("{} bytes more than expected; {}", n, peer.report()),
        Err(e) => panic!("no close_notify ({e}); {}", peer.report()),
    }
}

/// capnet's `TlsStream` client against `openssl s_server` in the namespace
/// (`args`: version and suite), `to_linux` and `to_capnet` at once, both
/// checked byte-exact. s_server's stdin closes once capnet's bytes are all
/// on its stdout; s_server then sends close_notify, which ends capnet's
/// read (s_server stops on the client's close_notify, so capnet does not
/// send one first). Returns what capnet's side agreed on.
#[allow(clippy::too_many_arguments)]
fn capnet_client_to_s_server(
    scratch: &Scratch,
    ns: &Namespace,
    host: &Host,
    port: u16,
    args: &str,
    options: &TlsOptions,
    to_linux: &Payload,
    to_capnet: &Payload,
) -> TlsInfo {
    let p = pki();
    let mut srv = Peer::spawn(
        ns,
        scratch,
        format!("s_server-{port}"),
        &format!(
            "openssl s_server -quiet -naccept 1 -accept {port} -cert {} -key {} {args}",
            p.join("server.pem").display(),
            p.join("server.key").display()
        ),
    );
    ns.wait_for_port(port);
    let (arrived_tx, arrived_rx) = mpsc::channel();
    let feeder = feed(srv.stdin(), to_capnet.clone(), arrived_rx);
    let drainer = drain(srv.stdout(), to_linux.len(), arrived_tx);

    let tls = host.tls().unwrap();
    let s = tls
        .connect_stream(addr(LINUX_IP, port), "capnet.test", options)
        .unwrap_or_else(|e| panic!("connect to s_server: {e}; {}", srv.report()));
    guard(&s);
    let s = Arc::new(s);
    let (sent, got) = both_ways(&s, to_linux, None, mpsc::channel().0)
        .unwrap_or_else(|e| panic!("{e}; {}", srv.report()));
    // After the data moved: the record mode is decided once the session runs.
    let info = s.info().unwrap();
    srv.wait_success();
    drop(s);
    let fed = feeder.join().unwrap().expect("s_server's stdin");
    let (linux_n, linux_sha) = drainer.join().unwrap().expect("s_server's stdout");
    assert_eq!(linux_n, to_linux.len(), "bytes capnet -> s_server");
    assert_eq!(linux_sha, sent, "sha256 capnet -> s_server");
    assert_eq!(got.0, to_capnet.len(), "bytes s_server -> capnet");
    assert_eq!(got.1, fed, "sha256 s_server -> capnet");
    info
}

/// `openssl s_client` in the namespace against a capnet `TlsListener`
/// (`args`: version and suite): each way at once, byte-exact. capnet reads
/// what s_client sends, then sends close_notify; s_client (`-quiet`, so it
/// ignores EOF on stdin) ends on it and answers with its own.
#[allow(clippy::too_many_arguments)]
fn s_client_to_capnet_server(
    scratch: &Scratch,
    ns: &Namespace,
    host: &Host,
    port: u16,
    args: &str,
    options: &TlsOptions,
    to_linux: &Payload,
    to_capnet: &Payload,
) -> TlsInfo {
    let tls = host.tls().unwrap();
    let listener = tls
        .listen(addr("0.0.0.0", port), 4, options)
        .expect("capnet TLS listener");
    let mut cl = Peer::spawn(
        ns,
        scratch,
        format!("s_client-{port}"),
        &format!(
            "openssl s_client -quiet -connect {CAPNET_IP}:{port} -servername capnet.test \
             -CAfile {} -verify_return_error {args}",
            pki().join("ca.pem").display()
        ),
    );
    let (done_tx, done_rx) = mpsc::channel();
    let feeder = feed(cl.stdin(), to_capnet.clone(), done_rx);
    let drainer = drain(cl.stdout(), u64::MAX, mpsc::channel().0);
    let s = accept_from(listener, &mut cl);
    let (sent, got) = both_ways(&s, to_linux, Some(to_capnet.len()), done_tx)
        .unwrap_or_else(|e| panic!("{e}; {}", cl.report()));
    // After the data moved: the record mode is decided once the session runs.
    let info = s.info().unwrap();
    assert_eq!(info.server_name.as_deref(), Some("capnet.test"), "{info:?}");
    s.shutdown(Shutdown::Write).unwrap();
    cl.wait_success();
    expect_clean_end(&s, &mut cl);
    let fed = feeder.join().unwrap().expect("s_client's stdin");
    let (linux_n, linux_sha) = drainer.join().unwrap().expect("s_client's stdout");
    assert_eq!(linux_n, to_linux.len(), "bytes capnet -> s_client");
    assert_eq!(linux_sha, sent, "sha256 capnet -> s_client");
    assert_eq!(got.0, to_capnet.len(), "bytes s_client -> capnet");
    assert_eq!(got.1, fed, "sha256 s_client -> capnet");
    info
}

/// The Python client: sends the file it is given from one thread while the
/// main thread reads to close_notify, answers it (unwrap), prints counts
/// and sha256s. Key log to `keylog`.
const PY_CLIENT: &str = r#"
import hashlib, socket, ssl, sys, threading
host, port, ca, keylog, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
with open(path, 'rb') as f:
    data = f.read()
ctx = ssl.create_default_context(cafile=ca)
ctx.keylog_filename = keylog
# A blocking socket: with a timeout, CPython makes it non-blocking, and a
# read and a write at once on one SSL object then misread each other's
# WANT_READ/WANT_WRITE (rwstate is shared) as an EOF.
raw = socket.create_connection((host, port))
s = ctx.wrap_socket(raw, server_hostname='capnet.test', suppress_ragged_eofs=False)
print('version', s.version(), s.cipher()[0], flush=True)
def send():
    mv = memoryview(data)
    for i in range(0, len(mv), 1 << 16):
        s.sendall(mv[i:i + (1 << 16)])
sender = threading.Thread(target=send)
sender.start()
h = hashlib.sha256()
total = 0
while True:
    d = s.recv(1 << 16)
    if not d:
        break
    h.update(d)
    total += len(d)
sender.join()
s.unwrap()
print('sent', len(data), hashlib.sha256(data).hexdigest())
print('received', total, h.hexdigest(), flush=True)
"#;

/// Python's `ssl` in the namespace against a capnet `TlsListener`:
/// `to_capnet` (through a file) and `to_linux` at once, byte-exact.
fn python_to_capnet_server(
    scratch: &Scratch,
    ns: &Namespace,
    host: &Host,
    port: u16,
    keylog: &Path,
    to_linux: &Payload,
    to_capnet: &Payload,
) -> TlsInfo {
    let script = scratch.0.join("client.py");
    std::fs::write(&script, PY_CLIENT).unwrap();
    let source = scratch.0.join(format!("py-send-{port}"));
    let to_capnet_bytes = to_capnet.to_vec();
    std::fs::write(&source, &to_capnet_bytes).unwrap();
    let to_capnet_sha = sha(&to_capnet_bytes);
    drop(to_capnet_bytes);
    let tls = host.tls().unwrap();
    let listener = tls
        .listen(addr("0.0.0.0", port), 4, &TlsOptions::default())
        .expect("capnet TLS listener");
    let mut py = Peer::spawn(
        ns,
        scratch,
        format!("python-{port}"),
        &format!(
            "python3 {} {CAPNET_IP} {port} {} {} {}",
            script.display(),
            pki().join("ca.pem").display(),
            keylog.display(),
            source.display()
        ),
    );
    drop(py.stdin());
    let mut out = py.stdout();
    let output = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).map(|_| s)
    });
    let s = accept_from(listener, &mut py);
    let (sent, got) = both_ways(&s, to_linux, Some(to_capnet.len()), mpsc::channel().0)
        .unwrap_or_else(|e| panic!("{e}; {}", py.report()));
    // After the data moved: the record mode is decided once the session runs.
    let info = s.info().unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    py.wait_success();
    expect_clean_end(&s, &mut py);
    let output = output.join().unwrap().expect("python's stdout");
    let (got_n, got_sha) = got;
    let line = |what: &str| -> (u64, String) {
        let l = output
            .lines()
            .find_map(|l| l.strip_prefix(what))
            .unwrap_or_else(|| panic!("no {what:?} in python's output:\n{output}"));
        let mut f = l.split_whitespace();
        (
            f.next().unwrap().parse().unwrap(),
            f.next().unwrap().to_owned(),
        )
    };
    assert_eq!(got_n, to_capnet.len(), "bytes python -> capnet");
    assert_eq!(got_sha, to_capnet_sha, "sha256 python -> capnet");
    assert_eq!(
        line("sent "),
        (to_capnet.len(), hex(&to_capnet_sha)),
        "python sent the file"
    );
    assert_eq!(
        line("received "),
        (to_linux.len(), hex(&sent)),
        "capnet -> python"
    );
    let kl = read_lossy(keylog);
    assert!(
        kl.contains("CLIENT_TRAFFIC_SECRET_0") || kl.contains("CLIENT_RANDOM"),
        "python's key log: {kl:?}"
    );
    info
}

// --- 1. capnet client, openssl s_server --------------------------------

fn s_server_case(
    tag: &str,
    port: u16,
    offload: bool,
    args: &str,
    version: TlsVersion,
    suite: &str,
) {
    if !require_root(tag) {
        return;
    }
    let scratch = Scratch::new(&format!("tls-interop-{tag}"));
    let ns = Namespace::new(tag);
    let host = tap_host(&scratch, &ns, offload, None);
    let info = capnet_client_to_s_server(
        &scratch,
        &ns,
        &host,
        port,
        args,
        &TlsOptions::default(),
        &Payload::Pattern(1, BULK),
        &Payload::Pattern(2, BULK),
    );
    check_info(&info, version, suite, offload);
    assert_eq!(info.peer, addr(LINUX_IP, port));
    let stat = host.tls().unwrap().stat().unwrap();
    assert_eq!(stat.decrypt_error, 0, "{stat:?}");
    assert!(
        stat.bytes_sealed >= BULK && stat.bytes_opened >= BULK,
        "{stat:?}"
    );
}

#[test]
fn s_server_tls12_ecdhe_rsa_aes128_gcm() {
    s_server_case(
        "ss12",
        4431,
        false,
        "-tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256",
        TlsVersion::Tls12,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    );
}

#[test]
fn s_server_tls13_aes128_gcm() {
    s_server_case(
        "ss13a",
        4432,
        false,
        "-tls1_3 -ciphersuites TLS_AES_128_GCM_SHA256",
        TlsVersion::Tls13,
        "TLS13_AES_128_GCM_SHA256",
    );
}

#[test]
fn s_server_tls13_aes256_gcm() {
    s_server_case(
        "ss13b",
        4433,
        false,
        "-tls1_3 -ciphersuites TLS_AES_256_GCM_SHA384",
        TlsVersion::Tls13,
        "TLS13_AES_256_GCM_SHA384",
    );
}

// --- 2. openssl s_client, capnet server --------------------------------

fn s_client_case(
    tag: &str,
    port: u16,
    offload: bool,
    args: &str,
    version: TlsVersion,
    suite: &str,
) {
    if !require_root(tag) {
        return;
    }
    let scratch = Scratch::new(&format!("tls-interop-{tag}"));
    let ns = Namespace::new(tag);
    let host = tap_host(&scratch, &ns, offload, None);
    let info = s_client_to_capnet_server(
        &scratch,
        &ns,
        &host,
        port,
        args,
        &TlsOptions::default(),
        &Payload::Pattern(3, BULK),
        &Payload::Pattern(4, BULK),
    );
    check_info(&info, version, suite, offload);
    let stat = host.tls().unwrap().stat().unwrap();
    assert_eq!(stat.decrypt_error, 0, "{stat:?}");
}

#[test]
fn s_client_tls12_ecdhe_rsa_aes128_gcm() {
    s_client_case(
        "sc12",
        4441,
        false,
        "-tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256",
        TlsVersion::Tls12,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    );
}

#[test]
fn s_client_tls13_aes256_gcm() {
    s_client_case(
        "sc13",
        4442,
        false,
        "-tls1_3 -ciphersuites TLS_AES_256_GCM_SHA384",
        TlsVersion::Tls13,
        "TLS13_AES_256_GCM_SHA384",
    );
}

// --- 3. Python ssl client, capnet server -------------------------------

fn python_case(offload: bool) {
    if !require_root("python_ssl_client") {
        return;
    }
    let tag = if offload { "pyo" } else { "py" };
    let scratch = Scratch::new(&format!("tls-interop-{tag}"));
    let ns = Namespace::new(tag);
    let host = tap_host(&scratch, &ns, offload, None);
    let keylog = scratch.0.join("python-keylog.txt");
    let info = python_to_capnet_server(
        &scratch,
        &ns,
        &host,
        4451,
        &keylog,
        &Payload::Pattern(5, BULK),
        &Payload::Pattern(6, BULK),
    );
    // Python offers TLS 1.3 and its suites in OpenSSL's order.
    check_info(
        &info,
        TlsVersion::Tls13,
        "TLS13_AES_256_GCM_SHA384",
        offload,
    );
}

#[test]
fn python_ssl_client() {
    python_case(false);
}

// --- 4. tshark decrypts a capture with the key logs ---------------------

/// dumpcap on the namespace's ctap0, writing `pcap`.
struct Capture {
    child: KillOnDrop,
    /// Taken by `stop`.
    stderr: Option<JoinHandle<String>>,
}

impl Capture {
    fn start(ns: &Namespace, pcap: &Path) -> Capture {
        for tool in ["dumpcap", "tshark"] {
            let found = Command::new("bash")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .unwrap();
            assert!(
                found.status.success(),
                "{tool} is missing: install tshark (scripts/test.sh does; \
                 `apt-get install tshark`)"
            );
        }
        let mut child = KillOnDrop(
            ns.exec(&format!(
                "exec dumpcap -i ctap0 -B 64 -w {} -q",
                pcap.display()
            ))
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        );
        // dumpcap names its file once the interface is open.
        let (ready_tx, ready_rx) = mpsc::channel();
        let stderr = BufReader::new(child.0.stderr.take().unwrap());
        let stderr = std::thread::spawn(move || {
            let mut all = String::new();
            for line in stderr.lines() {
                let line = line.unwrap_or_default();
                if line.starts_with("File:") {
                    let _ = ready_tx.send(());
                }
                all += &line;
                all.push('\n');
            }
            all
        });
        if ready_rx.recv_timeout(Duration::from_secs(20)).is_err() {
            let _ = child.0.kill();
            panic!("dumpcap did not start:\n{}", stderr.join().unwrap());
        }
        Capture {
            child,
            stderr: Some(stderr),
        }
    }

    /// Stops dumpcap (SIGINT: it writes out what it has); its report.
    fn stop(mut self) -> String {
        let status = self.interrupt();
        let report = self.stderr.take().unwrap().join().unwrap();
        assert!(
            status.is_some_and(|s| s.success()),
            "dumpcap: {status:?}\n{report}"
        );
        report
    }

    /// None: it did not stop.
    fn interrupt(&mut self) -> Option<ExitStatus> {
        // Packets wait in the capture ring for up to dumpcap's read timeout.
        std::thread::sleep(Duration::from_secs(1));
        // SAFETY: kill(2) on our own unreaped child (dumpcap, exec'd).
        unsafe { libc::kill(self.child.0.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Capture {
    /// A failed test leaves a whole capture behind it too.
    fn drop(&mut self) {
        if self.stderr.is_some() {
            let _ = self.interrupt();
        }
    }
}

/// The decrypted application data in `pcap`, per direction (source port,
/// destination port), in stream order.
fn decrypted(pcap: &Path, keylog: &Path, ports: &[u16]) -> HashMap<(u16, u16), Vec<u8>> {
    let decode: String = ports
        .iter()
        .map(|p| format!(" -d tcp.port=={p},tls"))
        .collect();
    let out = sh(&format!(
        "tshark -r {} -o tls.keylog_file:{}{decode} -Y data -T fields \
         -e tcp.srcport -e tcp.dstport -e data.data",
        pcap.display(),
        keylog.display()
    ));
    let mut flows: HashMap<(u16, u16), Vec<u8>> = HashMap::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 3, "tshark line {line:?}");
        let key = (f[0].parse().unwrap(), f[1].parse().unwrap());
        let flow = flows.entry(key).or_default();
        // Several records in one frame: their data comma-separated.
        for h in f[2].split(',') {
            assert!(h.len() % 2 == 0, "odd hex from tshark: {h:?}");
            flow.extend((0..h.len()).step_by(2).map(|i| {
                u8::from_str_radix(&h[i..i + 2], 16)
                    .unwrap_or_else(|_| panic!("not hex from tshark: {h:?}"))
            }));
        }
    }
    flows
}

/// The plaintext of one direction of the connection to or from `port`,
/// as tshark decrypted it.
fn flow(flows: &HashMap<(u16, u16), Vec<u8>>, port: u16, to_port: bool) -> &[u8] {
    let mut it = flows
        .iter()
        .filter(|((src, dst), _)| if to_port { *dst == port } else { *src == port });
    let found = it.next().map(|(_, v)| &v[..]).unwrap_or_else(|| {
        panic!(
            "tshark decrypted nothing {} port {port}; flows {:?}",
            if to_port { "to" } else { "from" },
            flows.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>()
        )
    });
    assert!(it.next().is_none(), "one connection per port");
    found
}

/// tshark's plaintext of one direction is what was sent.
fn assert_plaintext(got: &[u8], want: &Payload, what: &str, dumpcap: &str) {
    let want = want.to_vec();
    if got != &want[..] {
        let at = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
        panic!(
            "{what}: tshark decrypted {} bytes, {} were sent; first difference at {at}\n\
             dumpcap: {dumpcap}",
            got.len(),
            want.len()
        );
    }
}

fn tshark_case(offload: bool) {
    if !require_root("tshark_decrypts_and_sees_no_plaintext") {
        return;
    }
    const SMALL: usize = 3 << 20;
    let (p13, p12, ppy) = if offload {
        (4481u16, 4482u16, 4483u16)
    } else {
        (4491u16, 4492u16, 4493u16)
    };
    let tag = if offload { "capo" } else { "cap" };
    let scratch = Scratch::new(&format!("tls-interop-tshark-{tag}"));
    let ns = Namespace::new(tag);
    let tlsd_keylog = scratch.0.join("tlsd-keylog.txt");
    let py_keylog = scratch.0.join("python-keylog.txt");
    let host = tap_host(&scratch, &ns, offload, Some(&tlsd_keylog));
    let pcap = scratch.0.join("f.pcap");
    let capture = Capture::start(&ns, &pcap);

    // capnet's client to s_server, TLS 1.3 and 1.2; Python's client to
    // capnet's server. Each direction of each carries its own marked lines.
    let data = |tag: &str| marked(tag, SMALL);
    let (c13, s13) = (
        data("capnet-to-s_server/tls13"),
        data("s_server-to-capnet/tls13"),
    );
    let (c12, s12) = (
        data("capnet-to-s_server/tls12"),
        data("s_server-to-capnet/tls12"),
    );
    let (cpy, pyc) = (data("capnet-to-python"), data("python-to-capnet"));
    let info = capnet_client_to_s_server(
        &scratch,
        &ns,
        &host,
        p13,
        "-tls1_3 -ciphersuites TLS_AES_128_GCM_SHA256",
        &TlsOptions::default(),
        &c13,
        &s13,
    );
    check_info(
        &info,
        TlsVersion::Tls13,
        "TLS13_AES_128_GCM_SHA256",
        offload,
    );
    let info = capnet_client_to_s_server(
        &scratch,
        &ns,
        &host,
        p12,
        "-tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256",
        &TlsOptions::default(),
        &c12,
        &s12,
    );
    check_info(
        &info,
        TlsVersion::Tls12,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        offload,
    );
    let info = python_to_capnet_server(&scratch, &ns, &host, ppy, &py_keylog, &cpy, &pyc);
    check_info(
        &info,
        TlsVersion::Tls13,
        "TLS13_AES_256_GCM_SHA384",
        offload,
    );
    let report = capture.stop();

    // tlsd's key log opens all three connections (both directions) ...
    let kl = read_lossy(&tlsd_keylog);
    assert!(
        kl.contains("CLIENT_TRAFFIC_SECRET_0") && kl.contains("CLIENT_RANDOM"),
        "tlsd's key log has TLS 1.3 and 1.2 secrets: {kl:?}"
    );
    // (Frames dumpcap lost would show here: its report says how many.)
    let flows = decrypted(&pcap, &tlsd_keylog, &[p13, p12, ppy]);
    let cases = [
        (p13, true, &c13, "capnet -> s_server, TLS 1.3"),
        (p13, false, &s13, "s_server -> capnet, TLS 1.3"),
        (p12, true, &c12, "capnet -> s_server, TLS 1.2"),
        (p12, false, &s12, "s_server -> capnet, TLS 1.2"),
        // tlsd was the server here: its key log has these secrets too.
        (ppy, true, &pyc, "python -> capnet"),
        (ppy, false, &cpy, "capnet -> python"),
    ];
    for (port, to_port, sent, what) in cases {
        assert_plaintext(flow(&flows, port, to_port), sent, what, &report);
    }
    // ... and Python's, on its own, its connection to capnet's server.
    let flows = decrypted(&pcap, &py_keylog, &[p13, p12, ppy]);
    for (port, to_port, sent, what) in &cases[4..] {
        assert_plaintext(flow(&flows, *port, *to_port), sent, what, &report);
    }
    assert!(
        !flows
            .keys()
            .any(|(s, d)| [p13, p12].contains(s) || [p13, p12].contains(d)),
        "python's key log opened another connection"
    );

    // No TCP payload on the wire holds the marker: no cleartext.
    let raw = sh(&format!(
        "tshark -r {} -o tcp.desegment_tcp_streams:FALSE -T fields -e tcp.payload",
        pcap.display()
    ));
    let payload_bytes: usize = raw.lines().map(|l| l.len() / 2).sum();
    assert!(
        payload_bytes >= 6 * SMALL,
        "the capture holds {payload_bytes} TCP payload bytes, {} were sent",
        6 * SMALL
    );
    let marker = hex(MARKER.as_bytes());
    // The same search finds the marker where tshark shows plaintext.
    let shown = sh(&format!(
        "tshark -r {} -o tls.keylog_file:{} -Y data -T fields -e data.data",
        pcap.display(),
        tlsd_keylog.display()
    ));
    assert!(
        shown.lines().filter(|l| l.contains(&marker)).count() > 100,
        "the marker in tshark's hex of the plaintext"
    );
    let leaks = raw.lines().filter(|l| l.contains(&marker)).count();
    assert_eq!(
        leaks, 0,
        "TCP payloads with the plaintext marker on the wire"
    );
}

#[test]
fn tshark_decrypts_with_key_logs_and_no_plaintext_on_the_wire() {
    tshark_case(false);
}

// --- the same with the TAP port's simulated NIC sealing and opening ------

#[test]
fn s_server_tls12_ecdhe_rsa_aes128_gcm_offload() {
    s_server_case(
        "ss12o",
        4461,
        true,
        "-tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256",
        TlsVersion::Tls12,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    );
}

#[test]
fn s_server_tls13_aes128_gcm_offload() {
    s_server_case(
        "ss13ao",
        4462,
        true,
        "-tls1_3 -ciphersuites TLS_AES_128_GCM_SHA256",
        TlsVersion::Tls13,
        "TLS13_AES_128_GCM_SHA256",
    );
}

#[test]
fn s_server_tls13_aes256_gcm_offload() {
    s_server_case(
        "ss13bo",
        4463,
        true,
        "-tls1_3 -ciphersuites TLS_AES_256_GCM_SHA384",
        TlsVersion::Tls13,
        "TLS13_AES_256_GCM_SHA384",
    );
}

#[test]
fn s_client_tls12_ecdhe_rsa_aes128_gcm_offload() {
    s_client_case(
        "sc12o",
        4471,
        true,
        "-tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256",
        TlsVersion::Tls12,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    );
}

#[test]
fn s_client_tls13_aes256_gcm_offload() {
    s_client_case(
        "sc13o",
        4472,
        true,
        "-tls1_3 -ciphersuites TLS_AES_256_GCM_SHA384",
        TlsVersion::Tls13,
        "TLS13_AES_256_GCM_SHA384",
    );
}

#[test]
fn python_ssl_client_offload() {
    python_case(true);
}

#[test]
fn tshark_decrypts_with_key_logs_and_no_plaintext_on_the_wire_offload() {
    tshark_case(true);
}
