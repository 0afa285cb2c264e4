//! libclient's TLS API against a stand-in for tlsd in this process: it
//! speaks tlsd's socket protocol (`R` + capnp bootstrapping `Tls`, `H` for
//! the handoff channel), but "handshakes" by fiat and echoes plaintext on
//! the rings. The real tlsd is tested end to end in the workspace's tests.

use capnet_ring::bytering::socket_region_bytes;
use capnet_ring::handoff::{read_token, CONNECT_HANDOFF, CONNECT_RPC};
use capnet_ring::{Doorbell, HandoffTable, ServerEnd, SocketRings};
use capnet_schema::errors::SocketError;
use capnet_schema::tls_capnp::{tls, tls_info, tls_listener, tls_socket, RecordMode, TlsVersion};
use libclient::{OffloadPolicy, Tls, TlsError, TlsOptions, TlsStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Small rings, so that a few KiB fill them and wrap around.
const RING_BYTES: u32 = 4096;
const LOCAL: &str = "10.0.0.1:40000";
const LISTEN: &str = "10.0.0.1:8443";
const ACCEPTED_PEER: &str = "10.0.0.9:5555";

/// What the stand-in saw, for the tests to check.
#[derive(Default)]
struct Seen {
    handshakes: AtomicU64,
    handshake_failures: AtomicU64,
    /// Bytes the echo loops read from up rings.
    bytes_up: AtomicU64,
    /// Echo loops that saw the application's end of stream.
    up_closed: AtomicUsize,
    listeners_closed: AtomicUsize,
}

struct Shared {
    handoff: HandoffTable,
    seen: Seen,
    /// Every connection made to the socket, to cut them all.
    connections: Mutex<Vec<UnixStream>>,
}

struct FakeTlsd {
    path: PathBuf,
    shared: Arc<Shared>,
}

impl FakeTlsd {
    fn start() -> FakeTlsd {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "libclient-tls-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tls.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let shared = Arc::new(Shared {
            handoff: HandoffTable::new(),
            seen: Seen::default(),
            connections: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                s.connections
                    .lock()
                    .unwrap()
                    .push(stream.try_clone().unwrap());
                let s = s.clone();
                std::thread::spawn(move || serve_connection(s, stream));
            }
        });
        FakeTlsd { path, shared }
    }

    fn seen(&self) -> &Seen {
        &self.shared.seen
    }

    /// tlsd goes away: every connection to it closes.
    fn kill(&self) {
        for c in self.shared.connections.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for FakeTlsd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.path);
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn serve_connection(shared: Arc<Shared>, mut stream: UnixStream) {
    let mut first = [0u8; 1];
    if stream.read_exact(&mut first).is_err() {
        return;
    }
    match first[0] {
        CONNECT_HANDOFF => {
            while let Ok(Some(token)) = read_token(stream.as_fd()) {
                if shared.handoff.answer(stream.as_fd(), &token).is_err() {
                    return;
                }
            }
        }
        CONNECT_RPC => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, async move {
                stream.set_nonblocking(true).unwrap();
                let stream = tokio::net::UnixStream::from_std(stream).unwrap();
                let bootstrap: tls::Client = capnp_rpc::new_client(FakeTls { shared });
                let _ = capnet_schema::transport::serve(stream, bootstrap.client).await;
            });
        }
        _ => {}
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

struct FakeTls {
    shared: Arc<Shared>,
}

impl FakeTls {
    /// A connection whose "handshake" completed: rings with an echo loop
    /// behind them.
    fn socket(&self, info: Info) -> tls_socket::Client {
        let (end, wake_me, fds) = SocketRings::create(RING_BYTES).unwrap();
        let shared = self.shared.clone();
        let reset = info.server_name == "reset.test";
        std::thread::spawn(move || echo(shared, end, wake_me, reset));
        self.shared.seen.handshakes.fetch_add(1, Ordering::Relaxed);
        capnp_rpc::new_client(FakeSocket {
            shared: self.shared.clone(),
            info,
            fds: Cell::new(Some(fds)),
        })
    }
}

/// Echoes what arrives on the up ring; at the application's end of stream
/// it ends the down ring too ("close_notify"). For `reset.test` it fails
/// the connection at once with the Reset code, as tlsd does after a reset
/// or a fatal alert.
fn echo(shared: Arc<Shared>, mut end: ServerEnd, wake_me: Doorbell, reset: bool) {
    if reset {
        end.down.set_error(SocketError::Reset.code());
        end.up.close();
        end.wake_peer.ring();
        return;
    }
    let mut buf = vec![0u8; 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let mut progress = false;
        if !pending.is_empty() {
            if end.down.reader_closed() {
                pending.clear();
            } else {
                let n = end.down.write(&pending).unwrap();
                pending.drain(..n);
                progress |= n > 0;
                if n > 0 && end.down.signal_wanted() {
                    end.wake_peer.ring();
                }
            }
        }
        if pending.is_empty() {
            let n = end.up.read(&mut buf).unwrap();
            if n > 0 {
                shared.seen.bytes_up.fetch_add(n as u64, Ordering::Relaxed);
                pending.extend_from_slice(&buf[..n]);
                progress = true;
                if end.up.signal_wanted() {
                    end.wake_peer.ring();
                }
            } else if end.up.eof() {
                shared.seen.up_closed.fetch_add(1, Ordering::Relaxed);
                end.down.close();
                end.wake_peer.ring();
                return;
            }
        }
        if !progress {
            // Polls as well, so that a missed signal only slows it down.
            end.up.request_signal();
            end.down.request_signal();
            let _ = wake_me.wait(Some(Duration::from_millis(20)));
        }
    }
}

struct Info {
    server_name: String,
    alpn: Vec<u8>,
    peer: SocketAddr,
    offload: bool,
}

impl tls::Server for FakeTls {
    async fn connect(
        self: capnp::capability::Rc<Self>,
        params: tls::ConnectParams,
        mut results: tls::ConnectResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let server_name = p.get_server_name()?.to_string()?;
        let peer = capnet_schema::addr::read_socket_addr(p.get_remote()?)?;
        if peer.port() == 1 {
            return Err(SocketError::Refused.to_capnp(peer));
        }
        if server_name == "bad.test" {
            self.shared
                .seen
                .handshake_failures
                .fetch_add(1, Ordering::Relaxed);
            return Err(capnp::Error::failed(format!(
                "handshake: certificate not valid for {server_name}"
            )));
        }
        let options = p.get_options()?;
        let alpn = match options.get_alpn()?.iter().next() {
            Some(a) => a?.as_bytes().to_vec(),
            None => Vec::new(),
        };
        let offload = options.get_offload()? == capnet_schema::tls_capnp::OffloadPolicy::Auto;
        results.get().set_socket(self.socket(Info {
            server_name,
            alpn,
            peer,
            offload,
        }));
        Ok(())
    }

    async fn listen(
        self: capnp::capability::Rc<Self>,
        params: tls::ListenParams,
        mut results: tls::ListenResults,
    ) -> Result<(), capnp::Error> {
        let local = capnet_schema::addr::read_socket_addr(params.get()?.get_local()?)?;
        if local.port() == 444 {
            return Err(capnp::Error::failed(
                "identity: no certificate and key configured".into(),
            ));
        }
        results
            .get()
            .set_listener(capnp_rpc::new_client(FakeListener {
                tls: FakeTls {
                    shared: self.shared.clone(),
                },
                accepted: Cell::new(false),
                // Port 8445: the client arrives 30 ms after the call.
                delay: Duration::from_millis(if local.port() == 8445 { 30 } else { 0 }),
            }));
        Ok(())
    }

    async fn stat(
        self: capnp::capability::Rc<Self>,
        _: tls::StatParams,
        mut results: tls::StatResults,
    ) -> Result<(), capnp::Error> {
        let seen = &self.shared.seen;
        let mut s = results.get().init_stat();
        s.set_handshakes(seen.handshakes.load(Ordering::Relaxed));
        s.set_handshake_failures(seen.handshake_failures.load(Ordering::Relaxed));
        s.set_bytes_opened(seen.bytes_up.load(Ordering::Relaxed));
        s.set_session_tickets(7);
        Ok(())
    }
}

struct FakeListener {
    tls: FakeTls,
    accepted: Cell<bool>,
    /// How long the one client takes to arrive.
    delay: Duration,
}

impl tls_listener::Server for FakeListener {
    /// One client, then none.
    async fn accept(
        self: capnp::capability::Rc<Self>,
        _: tls_listener::AcceptParams,
        mut results: tls_listener::AcceptResults,
    ) -> Result<(), capnp::Error> {
        if self.accepted.replace(true) {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(self.delay).await;
        let peer = addr(ACCEPTED_PEER);
        let socket = self.tls.socket(Info {
            server_name: "server.test".into(),
            alpn: Vec::new(),
            peer,
            offload: false,
        });
        let mut r = results.get();
        r.set_socket(socket);
        capnet_schema::addr::write_socket_addr(r.init_remote(), peer);
        Ok(())
    }

    async fn local_addr(
        self: capnp::capability::Rc<Self>,
        _: tls_listener::LocalAddrParams,
        mut results: tls_listener::LocalAddrResults,
    ) -> Result<(), capnp::Error> {
        capnet_schema::addr::write_socket_addr(results.get().init_addr(), addr(LISTEN));
        Ok(())
    }

    async fn close(
        self: capnp::capability::Rc<Self>,
        _: tls_listener::CloseParams,
        _: tls_listener::CloseResults,
    ) -> Result<(), capnp::Error> {
        self.tls
            .shared
            .seen
            .listeners_closed
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

struct FakeSocket {
    shared: Arc<Shared>,
    info: Info,
    fds: Cell<Option<Vec<std::os::fd::OwnedFd>>>,
}

impl FakeSocket {
    fn write_info(&self, mut b: tls_info::Builder<'_>) {
        b.set_version(TlsVersion::Tls13);
        b.set_cipher_suite("TLS13_AES_128_GCM_SHA256");
        b.set_alpn(capnp::text::Reader::from(&self.info.alpn[..]));
        b.set_server_name(self.info.server_name.as_str());
        capnet_schema::addr::write_socket_addr(b.reborrow().init_local(), addr(LOCAL));
        capnet_schema::addr::write_socket_addr(b.reborrow().init_remote(), self.info.peer);
        let mode = if self.info.offload {
            RecordMode::Device
        } else {
            RecordMode::Software
        };
        b.set_tx(mode);
        b.set_rx(RecordMode::Software);
    }
}

impl tls_socket::Server for FakeSocket {
    async fn info(
        self: capnp::capability::Rc<Self>,
        _: tls_socket::InfoParams,
        mut results: tls_socket::InfoResults,
    ) -> Result<(), capnp::Error> {
        self.write_info(results.get().init_info());
        Ok(())
    }

    async fn open_rings(
        self: capnp::capability::Rc<Self>,
        _: tls_socket::OpenRingsParams,
        mut results: tls_socket::OpenRingsResults,
    ) -> Result<(), capnp::Error> {
        let fds = self
            .fds
            .take()
            .ok_or_else(|| SocketError::Busy.to_capnp("rings already open"))?;
        let token = self.shared.handoff.offer(fds);
        let mut g = results.get().init_grant();
        g.set_token(&token.0);
        g.set_region_bytes(socket_region_bytes(RING_BYTES) as u64);
        g.set_ring_bytes(RING_BYTES);
        Ok(())
    }
}

fn connect(tls: &Tls, server_name: &str) -> io::Result<TlsStream> {
    tls.connect_stream(addr("10.0.0.2:443"), server_name, &TlsOptions::default())
}

/// Waits (a bounded time) for `f` to hold.
fn eventually(what: &str, f: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn connect_echo_info_and_close_notify() {
    let fake = FakeTlsd::start();
    let tls = Tls::connect(&fake.path).unwrap();
    let options = TlsOptions {
        alpn: vec![b"h2".to_vec()],
        ..TlsOptions::default()
    };
    let mut s = tls
        .connect_stream(addr("10.0.0.2:443"), "example.test", &options)
        .unwrap();
    assert_eq!(s.peer_addr().unwrap(), addr("10.0.0.2:443"));

    // Far more than a ring holds, so both directions wrap and wait.
    let data: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut got = vec![0u8; data.len()];
    let stream = &s;
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut w = stream;
            w.write_all(&data).unwrap();
            w.flush().unwrap();
        });
        let mut r = stream;
        r.read_exact(&mut got).unwrap();
    });
    assert!(got == data, "echoed bytes differ");

    let info = s.info().unwrap();
    assert_eq!(info.version, libclient::TlsVersion::Tls13);
    assert_eq!(info.cipher_suite, "TLS13_AES_128_GCM_SHA256");
    assert_eq!(info.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(info.server_name.as_deref(), Some("example.test"));
    assert_eq!(info.peer, addr("10.0.0.2:443"));
    assert_eq!(info.local, addr(LOCAL));
    assert_eq!(info.tx, libclient::RecordMode::Device);
    assert_eq!(info.rx, libclient::RecordMode::Software);
    assert_eq!(s.local_addr().unwrap(), addr(LOCAL));

    // shutdown(Write): the service sees the end of stream, answers with
    // its own ("close_notify"), and reads end.
    s.write_all(b"last words").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut tail = Vec::new();
    s.read_to_end(&mut tail).unwrap();
    assert_eq!(tail, b"last words");
    assert_eq!(fake.seen().up_closed.load(Ordering::Relaxed), 1);
    assert!(s.write(b"x").is_err(), "write after shutdown(Write)");

    let stat = tls.stat().unwrap();
    assert_eq!(stat.handshakes, 1);
    assert_eq!(stat.bytes_opened, data.len() as u64 + 10);
    assert_eq!(stat.session_tickets, 7);
}

#[test]
fn failed_calls_carry_tlsd_words() {
    let fake = FakeTlsd::start();
    let tls = Tls::connect(&fake.path).unwrap();

    let e = connect(&tls, "bad.test").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    assert_eq!(TlsError::of(&e), Some(TlsError::Handshake));
    assert!(
        e.to_string().contains("certificate not valid for bad.test"),
        "{e}"
    );

    let e = tls
        .connect_stream(addr("10.0.0.2:1"), "example.test", &TlsOptions::default())
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");

    let e = tls
        .listen(addr("0.0.0.0:444"), 16, &TlsOptions::default())
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    assert_eq!(TlsError::of(&e), Some(TlsError::Identity));

    let stat = tls.stat().unwrap();
    assert_eq!((stat.handshakes, stat.handshake_failures), (0, 1));
}

#[test]
fn an_error_code_in_the_ring_is_a_reset() {
    let fake = FakeTlsd::start();
    let tls = Tls::connect(&fake.path).unwrap();
    let mut s = connect(&tls, "reset.test").unwrap();
    let e = s.read(&mut [0u8; 16]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
    let e = s.write(b"hello").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
}

#[test]
fn timeouts_and_nonblocking() {
    let fake = FakeTlsd::start();
    let tls = Tls::connect(&fake.path).unwrap();
    let mut s = connect(&tls, "example.test").unwrap();
    assert!(s.set_read_timeout(Some(Duration::ZERO)).is_err());
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    assert_eq!(s.read_timeout().unwrap(), Some(Duration::from_millis(50)));
    let started = Instant::now();
    let e = s.read(&mut [0u8; 16]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    assert!(started.elapsed() >= Duration::from_millis(50));

    s.set_nonblocking(true).unwrap();
    let e = s.read(&mut [0u8; 16]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    // The doorbell's fd turns readable when the echo arrives.
    let mut poll = Poll::new().unwrap();
    let fd = s.as_raw_fd();
    poll.registry()
        .register(&mut SourceFd(&fd), Token(1), Interest::READABLE)
        .unwrap();
    let mut events = Events::with_capacity(4);
    s.write_all(b"ping").unwrap();
    poll.poll(&mut events, Some(Duration::from_secs(5)))
        .unwrap();
    assert!(events.iter().any(|e| e.token() == Token(1)), "no wakeup");
    let mut got = Vec::new();
    let mut buf = [0u8; 16];
    loop {
        match s.read(&mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, b"ping");

    s.shutdown(Shutdown::Read).unwrap();
    assert_eq!(s.read(&mut buf).unwrap(), 0);
}

#[test]
fn listen_accept_and_close_on_drop() {
    let fake = FakeTlsd::start();
    let tls = Tls::connect(&fake.path).unwrap();
    let listener = tls
        .listen(addr("0.0.0.0:8443"), 16, &TlsOptions::default())
        .unwrap();
    assert_eq!(listener.local_addr().unwrap(), addr(LISTEN));
    let (mut s, peer) = listener.accept().unwrap();
    assert_eq!(peer, addr(ACCEPTED_PEER));
    assert_eq!(s.peer_addr().unwrap(), peer);
    let info = s.info().unwrap();
    assert_eq!(info.tx, libclient::RecordMode::Software);
    assert_eq!(info.alpn, None);
    s.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");

    // The stand-in has no second client.
    listener.set_nonblocking(true).unwrap();
    let e = listener.accept().unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);

    drop(listener);
    eventually("the listener closed", || {
        fake.seen().listeners_closed.load(Ordering::Relaxed) == 1
    });

    // Dropping a stream: bytes written still go out, then the end.
    let before = fake.seen().bytes_up.load(Ordering::Relaxed);
    s.write_all(b"bye").unwrap();
    drop(s);
    eventually("the stream's end", || {
        fake.seen().up_closed.load(Ordering::Relaxed) == 1
    });
    assert_eq!(fake.seen().bytes_up.load(Ordering::Relaxed), before + 3);
}

/// A non-blocking accept that gives up before the client arrives leaves
/// its call in flight: the connection is the next accept's, not lost.
#[test]
fn a_nonblocking_accept_never_loses_a_connection() {
    let fake = FakeTlsd::start();
    let tls = Tls::connect(&fake.path).unwrap();
    let listener = tls
        .listen(addr("0.0.0.0:8445"), 16, &TlsOptions::default())
        .unwrap();
    listener.set_nonblocking(true).unwrap();
    let e = listener.accept().unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut s, peer) = loop {
        match listener.accept() {
            Ok(accepted) => break accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "the client never came");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    assert_eq!(peer, addr(ACCEPTED_PEER));
    s.write_all(b"late").unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"late");
}

#[test]
fn tlsd_going_away_resets_everything() {
    let fake = FakeTlsd::start();
    let tls = Tls::connect(&fake.path).unwrap();
    let options = TlsOptions {
        offload: OffloadPolicy::Off,
        ..TlsOptions::default()
    };
    let mut s = tls
        .connect_stream(addr("10.0.0.2:443"), "example.test", &options)
        .unwrap();
    assert_eq!(s.info().unwrap().tx, libclient::RecordMode::Software);
    s.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).unwrap();

    // A reader asleep when tlsd goes away wakes up.
    let sleeper = std::thread::scope(|scope| {
        let r = scope.spawn(|| (&s).read(&mut [0u8; 4]));
        std::thread::sleep(Duration::from_millis(50));
        fake.kill();
        r.join().unwrap()
    });
    let e = sleeper.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
    assert!(e.to_string().contains("TLS service went away"), "{e}");
    eventually("the connection to notice", || !tls.is_connected());
    assert_eq!(
        s.write(b"x").unwrap_err().kind(),
        io::ErrorKind::ConnectionReset
    );
    assert_eq!(
        tls.stat().unwrap_err().kind(),
        io::ErrorKind::ConnectionReset
    );
    assert_eq!(
        connect(&tls, "example.test").unwrap_err().kind(),
        io::ErrorKind::ConnectionReset
    );
}

#[test]
fn default_tls_follows_the_environment_and_reconnects() {
    let first = FakeTlsd::start();
    std::env::set_var(libclient::TLS_SOCKET_ENV, &first.path);
    let tls = Tls::default_tls().unwrap();
    tls.stat().unwrap();
    let mut s = TlsStream::connect("10.0.0.2:443", "example.test").unwrap();
    s.write_all(b"a").unwrap();
    assert_eq!(first.seen().handshakes.load(Ordering::Relaxed), 1);

    // tlsd restarted (here: another one at another path).
    first.kill();
    eventually("the connection to notice", || !tls.is_connected());
    let second = FakeTlsd::start();
    std::env::set_var(libclient::TLS_SOCKET_ENV, &second.path);
    let _s2 = TlsStream::connect("10.0.0.2:443", "example.test").unwrap();
    assert_eq!(second.seen().handshakes.load(Ordering::Relaxed), 1);
    assert!(Tls::default_tls().unwrap().is_connected());
    assert!(s.write(b"b").is_err());
}
