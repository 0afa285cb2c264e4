//! Bulk transfers between capnet and a Linux-side TLS program, both ways at
//! once and checked byte-exact by sha256: capnet's client against `openssl
//! s_server`, and `openssl s_client` or Python's `ssl` against a capnet
//! `TlsListener`.

use super::{addr, hex, read_lossy, sha, Namespace, Peer, Sha, CAPNET_IP, LINUX_IP, STALL};
use capnet::host::Host;
use capnet_tests::{pattern, pki, Scratch};
use libclient::{TlsInfo, TlsListener, TlsOptions, TlsStream};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::Shutdown;
use std::path::Path;
use std::process::{ChildStdin, ChildStdout};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bytes one side sends.
#[derive(Clone)]
pub enum Payload {
    /// `pattern(seed)`, this many bytes.
    Pattern(u64, u64),
    Bytes(Arc<Vec<u8>>),
}

impl Payload {
    pub fn len(&self) -> u64 {
        match self {
            Payload::Pattern(_, n) => *n,
            Payload::Bytes(b) => b.len() as u64,
        }
    }

    /// Writes it all; returns the sha256 of what was written.
    pub fn write_to(&self, w: &mut impl Write) -> std::io::Result<Sha> {
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

    pub fn to_vec(&self) -> Vec<u8> {
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

/// Feeds `data` into a peer's stdin, then keeps stdin open until `done`
/// fires (or its sender is gone); returns the sha256 fed.
pub fn feed(
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
pub fn drain(
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
pub fn receive(r: &mut impl Read, limit: Option<u64>) -> std::io::Result<(u64, Sha)> {
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
pub fn both_ways(
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

pub fn guard(s: &TlsStream) {
    s.set_read_timeout(Some(STALL)).unwrap();
    s.set_write_timeout(Some(STALL)).unwrap();
}

/// Accepts one connection while `peer` runs. The accept blocks in a
/// thread of its own: a non-blocking `accept` that times out can lose the
/// connection tlsd hands over just then.
pub fn accept_from(listener: TlsListener, peer: &mut Peer) -> Arc<TlsStream> {
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
pub fn expect_clean_end(s: &TlsStream, peer: &mut Peer) {
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
pub fn capnet_client_to_s_server(
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
pub fn s_client_to_capnet_server(
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

/// The Python client: sends the file it is given while it reads to
/// close_notify, answers it (unwrap), prints counts and sha256s. Key log to
/// `keylog`. One thread with a non-blocking socket: OpenSSL does not allow
/// one SSL object to be read and written from two threads at once (a read
/// that takes a post-handshake message while a write runs failed the
/// write with "internal error" now and then).
pub const PY_CLIENT: &str = r#"
import hashlib, selectors, socket, ssl, sys
host, port, ca, keylog, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
with open(path, 'rb') as f:
    data = f.read()
ctx = ssl.create_default_context(cafile=ca)
ctx.keylog_filename = keylog
raw = socket.create_connection((host, port))
s = ctx.wrap_socket(raw, server_hostname='capnet.test', suppress_ragged_eofs=False)
print('version', s.version(), s.cipher()[0], flush=True)
s.setblocking(False)
sel = selectors.DefaultSelector()
sel.register(s, selectors.EVENT_READ)
mv = memoryview(data)
h = hashlib.sha256()
total = sent = 0
ended = False
while not ended or sent < len(data):
    events = selectors.EVENT_READ | (selectors.EVENT_WRITE if sent < len(data) else 0)
    sel.modify(s, events)
    sel.select()
    # Everything readable now, OpenSSL's own buffer included.
    while not ended:
        try:
            d = s.recv(1 << 16)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            break
        if not d:
            ended = True
        h.update(d)
        total += len(d)
    if sent < len(data):
        try:
            sent += s.send(mv[sent:sent + (1 << 16)])
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
s.setblocking(True)
s.unwrap()
print('sent', len(data), hashlib.sha256(data).hexdigest())
print('received', total, h.hexdigest(), flush=True)
"#;

/// Python's `ssl` in the namespace against a capnet `TlsListener`:
/// `to_capnet` (through a file) and `to_linux` at once, byte-exact.
pub fn python_to_capnet_server(
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
