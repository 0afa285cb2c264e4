//! libclient's offload API (what tlsd needs from netsrv) against a
//! stand-in for netsrv in this process: it speaks the service socket
//! protocol (`R` + capnp bootstrapping `Net`, `H` for the handoff channel),
//! and its TCP sockets implement `offloadTls` (a fake `OffloadContext`
//! whose `OffloadEvents` the test drives), `offloadStop`, `sendUnacked` and
//! `egress`. A pump thread plays netsrv's receive path: it writes what the
//! test feeds into the receive ring, as plain bytes or, after an RX
//! offload, as marked chunks (`RxChunk`). The real netsrv is tested end to
//! end in the workspace's tests.

use capnet_ring::bytering::socket_region_bytes;
use capnet_ring::handoff::{read_token, CONNECT_HANDOFF, CONNECT_RPC};
use capnet_ring::{HandoffTable, ServerEnd, SocketRings};
use capnet_schema::errors::SocketError;
use capnet_schema::net_capnp::{
    egress, egress_watcher, net, subscription, tcp_socket, EgressReason,
};
use capnet_schema::offload_capnp::{offload_context, offload_events, OffloadKind as WireKind};
use libclient::{Net, OffloadEvent, OffloadKind, TcpStream, TlsCipher, TlsOffloadParams};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Small rings, so that a few KiB fill them and wrap around.
const RING_BYTES: u32 = 4096;
const LOCAL: &str = "10.0.0.1:40000";
const REMOTE: &str = "10.0.0.2:443";
/// The fake answers `offloadTls` with this sequence number for offset 0.
const SEQ_BASE: u32 = 0xffff_ff00;
/// A `recordSeq` the fake refuses with `unsupported`.
const UNSUPPORTED_SEQ: u64 = 999;

/// netsrv's receive path for one connection.
struct Pump {
    end: ServerEnd,
    /// Bytes written into the receive ring (headers included).
    written: u64,
    /// Marked chunks from `chunks_from` on.
    chunks_from: Option<u64>,
    /// What the peer "sent": runs of bytes with the NIC's mark, or raw
    /// ring bytes (to write malformed chunks).
    pending: VecDeque<Feed>,
    /// Headers go into the ring a byte at a time, with pauses.
    split_headers: bool,
    /// Bytes read from the send ring.
    bytes_up: u64,
    up_closed: bool,
}

enum Feed {
    Data(Vec<u8>, bool),
    Raw(Vec<u8>),
    End,
}

impl Pump {
    /// One step: moves what fits. True if anything moved.
    fn step(&mut self) -> bool {
        let mut moved = false;
        let mut buf = [0u8; 1024];
        loop {
            let n = self.end.up.read(&mut buf).unwrap();
            if n == 0 {
                if self.end.up.eof() {
                    self.up_closed = true;
                }
                break;
            }
            self.bytes_up += n as u64;
            moved = true;
        }
        if moved && self.end.up.signal_wanted() {
            self.end.wake_peer.ring();
        }
        let mut delivered = false;
        while let Some(feed) = self.pending.front_mut() {
            let space = self.end.down.space().unwrap();
            match feed {
                Feed::End => {
                    self.end.down.close();
                    self.pending.pop_front();
                    delivered = true;
                    break;
                }
                Feed::Raw(bytes) => {
                    let n = self.end.down.write(bytes).unwrap();
                    self.written += n as u64;
                    bytes.drain(..n);
                    delivered |= n > 0;
                    if !bytes.is_empty() {
                        break;
                    }
                }
                Feed::Data(bytes, decrypted) => {
                    if self.chunks_from.is_none() {
                        let n = self.end.down.write(bytes).unwrap();
                        self.written += n as u64;
                        bytes.drain(..n);
                        delivered |= n > 0;
                        if !bytes.is_empty() {
                            break;
                        }
                    } else {
                        if space <= 4 {
                            break;
                        }
                        let n = bytes.len().min(0xffff).min(space - 4);
                        let mut h = n as u32;
                        if *decrypted {
                            h |= 1 << 31;
                        }
                        let header = h.to_le_bytes();
                        if self.split_headers {
                            for b in header {
                                self.end.down.write(&[b]).unwrap();
                                if self.end.down.signal_wanted() {
                                    self.end.wake_peer.ring();
                                }
                                std::thread::sleep(Duration::from_micros(300));
                            }
                        } else {
                            self.end.down.write(&header).unwrap();
                        }
                        assert_eq!(self.end.down.write(&bytes[..n]).unwrap(), n);
                        self.written += 4 + n as u64;
                        bytes.drain(..n);
                        delivered = true;
                    }
                    if bytes.is_empty() {
                        self.pending.pop_front();
                    }
                    continue;
                }
            }
            self.pending.pop_front();
        }
        if delivered && self.end.down.signal_wanted() {
            self.end.wake_peer.ring();
        }
        moved | delivered
    }
}

/// One offload context as the fake NIC keeps it (on the RPC thread).
struct ContextState {
    kind: WireKind,
    /// None: active; Some: revoked or released (the reason).
    ended: RefCell<Option<String>>,
    /// The driver "died": calls answer disconnected.
    disconnected: Cell<bool>,
    events: RefCell<Option<offload_events::Client>>,
}

/// What the test asks of the fake's RPC thread.
enum Cmd {
    ResyncRequest(u32),
    Revoke(String),
    /// The driver dies: the callbacks go without a word, calls answer
    /// disconnected.
    DriverDies,
    EgressChange(&'static str),
    /// netsrv drops the egress watcher.
    EndSubscription,
}

/// (kind, stream offset, record seq, key) of an offloadTls call.
type Offload = (WireKind, u64, u64, Vec<u8>);

/// What the fake saw, and the test's handles into it.
#[derive(Default)]
struct Seen {
    resyncs: Mutex<Vec<(u32, u64)>>,
    rejects: Mutex<Vec<u32>>,
    releases: AtomicUsize,
    contexts_dropped: AtomicUsize,
    offloads: Mutex<Vec<Offload>>,
    /// (kind, replacement offset, replacement) of each offloadStop.
    stops: Mutex<Vec<(WireKind, u64, Vec<u8>)>>,
}

struct Shared {
    handoff: HandoffTable,
    seen: Seen,
    pump: Mutex<Option<Pump>>,
    pump_stop: AtomicBool,
    /// offloadTls answers only after this long (after switching the ring).
    offload_delay_ms: AtomicU64,
    commands: Mutex<Option<tokio::sync::mpsc::UnboundedSender<Cmd>>>,
    connections: Mutex<Vec<UnixStream>>,
}

struct FakeNetsrv {
    path: PathBuf,
    shared: Arc<Shared>,
}

impl FakeNetsrv {
    fn start() -> FakeNetsrv {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "libclient-offload-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("capnet.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let shared = Arc::new(Shared {
            handoff: HandoffTable::new(),
            seen: Seen::default(),
            pump: Mutex::new(None),
            pump_stop: AtomicBool::new(false),
            offload_delay_ms: AtomicU64::new(0),
            commands: Mutex::new(None),
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
        let s = shared.clone();
        std::thread::spawn(move || pump_loop(s));
        FakeNetsrv { path, shared }
    }

    fn seen(&self) -> &Seen {
        &self.shared.seen
    }

    fn pump<T>(&self, f: impl FnOnce(&mut Pump) -> T) -> T {
        let mut p = self.shared.pump.lock().unwrap();
        f(p.as_mut().expect("no connection yet"))
    }

    fn feed(&self, data: &[u8], decrypted: bool) {
        self.pump(|p| p.pending.push_back(Feed::Data(data.to_vec(), decrypted)));
    }

    fn feed_raw(&self, data: &[u8]) {
        self.pump(|p| p.pending.push_back(Feed::Raw(data.to_vec())));
    }

    /// Waits until the pump wrote everything fed so far.
    fn flushed(&self) {
        eventually("the pump to deliver", || {
            self.pump(|p| p.pending.is_empty())
        });
    }

    fn command(&self, cmd: Cmd) {
        let tx = self.shared.commands.lock().unwrap();
        tx.as_ref()
            .expect("no RPC connection")
            .send(cmd)
            .ok()
            .unwrap();
    }
}

impl Drop for FakeNetsrv {
    fn drop(&mut self) {
        self.shared.pump_stop.store(true, Ordering::Relaxed);
        for c in self.shared.connections.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        let _ = std::fs::remove_file(&self.path);
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn pump_loop(shared: Arc<Shared>) {
    while !shared.pump_stop.load(Ordering::Relaxed) {
        let moved = {
            let mut p = shared.pump.lock().unwrap();
            p.as_mut().map(Pump::step).unwrap_or(false)
        };
        if !moved {
            // Polls as well, so that a missed signal only slows it down.
            let bell = {
                let p = shared.pump.lock().unwrap();
                p.as_ref().map(|p| {
                    p.end.down.request_signal();
                    p.end.up.request_signal();
                    p.end.wake_me.try_clone().unwrap()
                })
            };
            match bell {
                Some(b) => {
                    let _ = b.wait(Some(Duration::from_millis(5)));
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
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
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                *shared.commands.lock().unwrap() = Some(tx);
                let state = Rc::new(RpcState::default());
                tokio::task::spawn_local(run_commands(state.clone(), rx));
                stream.set_nonblocking(true).unwrap();
                let stream = tokio::net::UnixStream::from_std(stream).unwrap();
                let bootstrap: net::Client = capnp_rpc::new_client(FakeNet { shared, state });
                let _ = capnet_schema::transport::serve(stream, bootstrap.client).await;
            });
        }
        _ => {}
    }
}

/// What the RPC thread keeps for the commands.
#[derive(Default)]
struct RpcState {
    context: RefCell<Option<Rc<ContextState>>>,
    watcher: RefCell<Option<egress_watcher::Client>>,
    egress_generation: Cell<u64>,
}

async fn run_commands(state: Rc<RpcState>, mut rx: tokio::sync::mpsc::UnboundedReceiver<Cmd>) {
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Cmd::ResyncRequest(seq) => {
                let events = state
                    .context
                    .borrow()
                    .as_ref()
                    .and_then(|c| c.events.borrow().clone());
                if let Some(events) = events {
                    let mut req = events.resync_request_request();
                    req.get().set_tcp_seq(seq);
                    req.send().promise.await.unwrap();
                }
            }
            Cmd::Revoke(reason) => {
                let ctx = state.context.borrow().clone();
                if let Some(ctx) = ctx {
                    *ctx.ended.borrow_mut() = Some(reason.clone());
                    let events = ctx.events.borrow_mut().take();
                    if let Some(events) = events {
                        let mut req = events.revoked_request();
                        req.get().set_reason(&reason);
                        req.send().promise.await.unwrap();
                    }
                }
            }
            Cmd::DriverDies => {
                let ctx = state.context.borrow().clone();
                if let Some(ctx) = ctx {
                    ctx.disconnected.set(true);
                    ctx.events.borrow_mut().take();
                }
            }
            Cmd::EgressChange(port) => {
                let watcher = state.watcher.borrow().clone();
                if let Some(w) = watcher {
                    state
                        .egress_generation
                        .set(state.egress_generation.get() + 1);
                    let mut req = w.changed_request();
                    let mut info = req.get().init_info();
                    info.set_port(port);
                    info.set_interface("bond0");
                    info.set_driver_epoch(1);
                    info.set_generation(state.egress_generation.get());
                    info.set_reason(EgressReason::Failover);
                    req.send().promise.await.unwrap();
                }
            }
            Cmd::EndSubscription => {
                state.watcher.borrow_mut().take();
            }
        }
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

struct FakeNet {
    shared: Arc<Shared>,
    state: Rc<RpcState>,
}

impl net::Server for FakeNet {
    async fn tcp_connect(
        self: capnp::capability::Rc<Self>,
        _: net::TcpConnectParams,
        mut results: net::TcpConnectResults,
    ) -> Result<(), capnp::Error> {
        let (end, fds) = SocketRings::create(RING_BYTES).unwrap();
        *self.shared.pump.lock().unwrap() = Some(Pump {
            end,
            written: 0,
            chunks_from: None,
            pending: VecDeque::new(),
            split_headers: false,
            bytes_up: 0,
            up_closed: false,
        });
        results.get().set_socket(capnp_rpc::new_client(FakeSocket {
            shared: self.shared.clone(),
            state: self.state.clone(),
            fds: Cell::new(Some(fds)),
        }));
        Ok(())
    }
}

struct FakeSocket {
    shared: Arc<Shared>,
    state: Rc<RpcState>,
    fds: Cell<Option<Vec<OwnedFd>>>,
}

fn write_info(mut b: capnet_schema::offload_capnp::offload_info::Builder<'_>, ctx: &ContextState) {
    b.set_id(7);
    b.set_port("sim0");
    b.set_driver_epoch(2);
    b.set_kind(ctx.kind);
    capnet_schema::offload::write_tcp_flow(
        b.reborrow().init_flow().init_tcp(),
        addr(LOCAL),
        addr(REMOTE),
        0,
    );
    b.set_state(if ctx.ended.borrow().is_some() {
        "revoked"
    } else {
        "active"
    });
}

impl tcp_socket::Server for FakeSocket {
    async fn open_rings(
        self: capnp::capability::Rc<Self>,
        _: tcp_socket::OpenRingsParams,
        mut results: tcp_socket::OpenRingsResults,
    ) -> Result<(), capnp::Error> {
        let fds = self
            .fds
            .take()
            .ok_or_else(|| SocketError::Invalid.to_capnp("rings already open"))?;
        let token = self.shared.handoff.offer(fds);
        let mut g = results.get().init_grant();
        g.set_token(&token.0);
        g.set_region_bytes(socket_region_bytes(RING_BYTES) as u64);
        g.set_ring_bytes(RING_BYTES);
        Ok(())
    }

    async fn offload(
        self: capnp::capability::Rc<Self>,
        params: tcp_socket::OffloadParams,
        mut results: tcp_socket::OffloadResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let request = p.get_request()?;
        let kind = request.get_kind()?;
        let capnet_schema::offload_capnp::offload_request::params::Tls(tls) =
            request.get_params().which()?
        else {
            return Err(SocketError::Invalid.to_capnp("offload: not TLS parameters"));
        };
        let tls = tls?;
        let offset = p.get_stream_offset();
        self.shared.seen.offloads.lock().unwrap().push((
            kind,
            offset,
            tls.get_record_seq(),
            tls.get_key()?.to_vec(),
        ));
        if tls.get_record_seq() == UNSUPPORTED_SEQ {
            return Err(SocketError::Unsupported.to_capnp("offload: sim0 has no TLS offload"));
        }
        // RX: the ring switches at once, the answer may come later.
        let ring_offset = if kind == WireKind::TlsRx {
            let mut pump = self.shared.pump.lock().unwrap();
            let pump = pump.as_mut().unwrap();
            *pump.chunks_from.get_or_insert(pump.written)
        } else {
            0
        };
        let delay = self.shared.offload_delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let ctx = Rc::new(ContextState {
            kind,
            ended: RefCell::new(None),
            disconnected: Cell::new(false),
            events: RefCell::new(Some(p.get_events()?)),
        });
        *self.state.context.borrow_mut() = Some(ctx.clone());
        let mut r = results.get();
        write_info(r.reborrow().init_info(), &ctx);
        r.set_context(capnp_rpc::new_client(FakeContext {
            shared: self.shared.clone(),
            state: ctx,
        }));
        r.set_ring_offset(ring_offset);
        r.set_tcp_seq(SEQ_BASE.wrapping_add(offset as u32));
        Ok(())
    }

    async fn offload_stop(
        self: capnp::capability::Rc<Self>,
        params: tcp_socket::OffloadStopParams,
        _: tcp_socket::OffloadStopResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        self.shared.seen.stops.lock().unwrap().push((
            p.get_kind()?,
            p.get_replacement_offset(),
            p.get_replacement()?.to_vec(),
        ));
        Ok(())
    }

    async fn send_unacked(
        self: capnp::capability::Rc<Self>,
        _: tcp_socket::SendUnackedParams,
        mut results: tcp_socket::SendUnackedResults,
    ) -> Result<(), capnp::Error> {
        // Everything read from the send ring, but the last 10 bytes.
        let up = self.shared.pump.lock().unwrap().as_ref().unwrap().bytes_up;
        results.get().set_offset(up.saturating_sub(10));
        Ok(())
    }

    async fn egress(
        self: capnp::capability::Rc<Self>,
        _: tcp_socket::EgressParams,
        mut results: tcp_socket::EgressResults,
    ) -> Result<(), capnp::Error> {
        results.get().set_egress(capnp_rpc::new_client(FakeEgress {
            state: self.state.clone(),
        }));
        Ok(())
    }
}

struct FakeContext {
    shared: Arc<Shared>,
    state: Rc<ContextState>,
}

impl FakeContext {
    fn check(&self) -> Result<(), capnp::Error> {
        if self.state.disconnected.get() {
            return Err(capnp::Error::disconnected("the driver went away".into()));
        }
        match &*self.state.ended.borrow() {
            None => Ok(()),
            Some(why) => {
                Err(SocketError::Revoked.to_capnp(format_args!("offload context 7: {why}")))
            }
        }
    }
}

impl Drop for FakeContext {
    fn drop(&mut self) {
        self.shared
            .seen
            .contexts_dropped
            .fetch_add(1, Ordering::Relaxed);
    }
}

impl offload_context::Server for FakeContext {
    async fn info(
        self: capnp::capability::Rc<Self>,
        _: offload_context::InfoParams,
        mut results: offload_context::InfoResults,
    ) -> Result<(), capnp::Error> {
        if self.state.disconnected.get() {
            self.check()?;
        }
        let mut info = results.get().init_info();
        write_info(info.reborrow(), &self.state);
        let seen = &self.shared.seen;
        info.set_resyncs(seen.resyncs.lock().unwrap().len() as u64);
        info.set_resync_requests(3);
        info.set_records(100);
        info.set_bytes(1_600_000);
        info.set_auth_failures(1);
        info.set_dropped(2);
        Ok(())
    }

    async fn resync(
        self: capnp::capability::Rc<Self>,
        params: offload_context::ResyncParams,
        _: offload_context::ResyncResults,
    ) -> Result<(), capnp::Error> {
        self.check()?;
        let p = params.get()?;
        if p.get_tcp_seq() == 0 {
            return Err(SocketError::Invalid.to_capnp("resync: not asked about 0"));
        }
        self.shared
            .seen
            .resyncs
            .lock()
            .unwrap()
            .push((p.get_tcp_seq(), p.get_record_seq()));
        Ok(())
    }

    async fn resync_reject(
        self: capnp::capability::Rc<Self>,
        params: offload_context::ResyncRejectParams,
        _: offload_context::ResyncRejectResults,
    ) -> Result<(), capnp::Error> {
        self.check()?;
        self.shared
            .seen
            .rejects
            .lock()
            .unwrap()
            .push(params.get()?.get_tcp_seq());
        Ok(())
    }

    async fn release(
        self: capnp::capability::Rc<Self>,
        _: offload_context::ReleaseParams,
        _: offload_context::ReleaseResults,
    ) -> Result<(), capnp::Error> {
        self.check()?;
        *self.state.ended.borrow_mut() = Some("released".into());
        self.state.events.borrow_mut().take();
        self.shared.seen.releases.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

struct FakeEgress {
    state: Rc<RpcState>,
}

struct FakeSubscription;

impl subscription::Server for FakeSubscription {}

impl egress::Server for FakeEgress {
    async fn subscribe(
        self: capnp::capability::Rc<Self>,
        params: egress::SubscribeParams,
        mut results: egress::SubscribeResults,
    ) -> Result<(), capnp::Error> {
        *self.state.watcher.borrow_mut() = Some(params.get()?.get_watcher()?);
        results
            .get()
            .set_subscription(capnp_rpc::new_client(FakeSubscription));
        Ok(())
    }
}

// ---- helpers ----

fn connect(fake: &FakeNetsrv) -> (Net, TcpStream) {
    let net = Net::connect(&fake.path).unwrap();
    let s = net.tcp_connect(addr(REMOTE), None).unwrap();
    (net, s)
}

fn params(record_seq: u64) -> TlsOffloadParams {
    TlsOffloadParams {
        version: 0x0304,
        cipher: TlsCipher::Aes128Gcm,
        key: vec![0x11; 16],
        iv: [0x22; 12],
        record_seq,
    }
}

/// Waits (a bounded time) for `f` to hold.
fn eventually(what: &str, f: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Test data: byte `i` of stream `seed`.
fn data(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(31)
                .wrapping_add(seed as u32 * 7 + (i / 253) as u32) as u8
        })
        .collect()
}

/// Reads `len` bytes with `read_marked`, in reads of at most `step` bytes:
/// the bytes and each byte's flag.
fn read_marked_exact(s: &TcpStream, len: usize, step: usize) -> (Vec<u8>, Vec<bool>) {
    let mut bytes = Vec::with_capacity(len);
    let mut flags = Vec::with_capacity(len);
    let mut buf = vec![0u8; step];
    while bytes.len() < len {
        let want = step.min(len - bytes.len());
        let (n, decrypted) = s.read_marked(&mut buf[..want]).unwrap();
        assert!(n > 0, "end of stream after {} bytes", bytes.len());
        bytes.extend_from_slice(&buf[..n]);
        flags.extend(std::iter::repeat_n(decrypted, n));
    }
    (bytes, flags)
}

/// An mio poll on one fd.
struct Waiter {
    poll: Poll,
    events: Events,
}

impl Waiter {
    fn on(fd: RawFd) -> Waiter {
        let poll = Poll::new().unwrap();
        poll.registry()
            .register(&mut SourceFd(&fd), Token(1), Interest::READABLE)
            .unwrap();
        Waiter {
            poll,
            events: Events::with_capacity(4),
        }
    }

    /// True if the fd turned readable within `t`.
    fn wait(&mut self, t: Duration) -> bool {
        self.poll.poll(&mut self.events, Some(t)).unwrap();
        self.events.iter().any(|e| e.token() == Token(1))
    }
}

// ---- tests ----

#[test]
fn plain_then_chunks_from_the_ring_offset_across_wraps() {
    let fake = FakeNetsrv::start();
    let (_net, s) = connect(&fake);

    // Plain bytes, more than a ring holds; the application reads some.
    let plain = data(1, 10_000);
    fake.feed(&plain, false);
    let (got, flags) = read_marked_exact(&s, 3000, 700);
    assert_eq!(got, plain[..3000]);
    assert!(flags.iter().all(|f| !f));
    assert_eq!(s.marked_chunks_from(), None);

    // RX offload while netsrv still has plain bytes in the ring and queued.
    let ctx = s.offload_tls(OffloadKind::TlsRx, &params(5), 1234).unwrap();
    let from = s.marked_chunks_from().expect("chunk mode");
    assert!(from >= 3000, "chunks begin at {from}");
    assert_eq!(ctx.kind(), OffloadKind::TlsRx);
    assert_eq!(ctx.stream_offset(), 1234);
    assert_eq!(ctx.tcp_seq(), SEQ_BASE.wrapping_add(1234));
    {
        let seen = fake.seen().offloads.lock().unwrap();
        assert_eq!(seen[0], (WireKind::TlsRx, 1234, 5, vec![0x11; 16]));
    }

    // Marked runs of every size, decrypted or not; the chunks wrap the
    // ring at every position.
    let mut expect_bytes = plain[3000..].to_vec();
    let mut expect_flags = vec![false; expect_bytes.len()];
    for i in 0..60usize {
        let run = data(i as u8, 1 + (i * 397) % 5000);
        let decrypted = i % 3 != 1;
        fake.feed(&run, decrypted);
        expect_bytes.extend_from_slice(&run);
        expect_flags.extend(std::iter::repeat_n(decrypted, run.len()));
    }
    // Reads of odd sizes, so that they end inside chunks.
    let (got, flags) = read_marked_exact(&s, expect_bytes.len(), 1021);
    assert!(got == expect_bytes, "bytes differ");
    assert!(flags == expect_flags, "flags differ");
    fake.flushed();
    let written = fake.pump(|p| p.written);
    assert_eq!(s.ring_read_offset(), written);
    assert_eq!(s.read_offset(), 10_000 + expect_bytes.len() as u64 - 7000);

    // Headers written a byte at a time still parse.
    fake.pump(|p| p.split_headers = true);
    let run = data(9, 300);
    for _ in 0..5 {
        fake.feed(&run, true);
    }
    let (got, flags) = read_marked_exact(&s, 1500, 4096);
    assert_eq!(got, run.repeat(5));
    assert!(flags.iter().all(|f| *f));

    // Plain `read` in chunk mode: the data without the headers.
    fake.pump(|p| p.split_headers = false);
    fake.feed(b"hello", false);
    fake.feed(b" world", true);
    let mut buf = [0u8; 11];
    (&s).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello world");

    // The end of the stream.
    fake.pump(|p| p.pending.push_back(Feed::End));
    assert_eq!(s.read_marked(&mut buf).unwrap(), (0, false));
}

#[test]
fn reads_wait_while_the_rx_switch_is_on_its_way() {
    let fake = FakeNetsrv::start();
    let (_net, s) = connect(&fake);
    let plain = data(2, 2000);
    fake.feed(&plain, false);
    fake.flushed();
    // netsrv switches the ring at once but answers 300 ms later; chunks
    // land behind the plain bytes meanwhile.
    fake.shared.offload_delay_ms.store(300, Ordering::Relaxed);
    let chunked = data(3, 3000);
    let (got, flags) = std::thread::scope(|scope| {
        let offload = scope.spawn(|| s.offload_tls(OffloadKind::TlsRx, &params(1), 0));
        eventually("the switch", || fake.pump(|p| p.chunks_from.is_some()));
        fake.feed(&chunked, true);
        eventually("chunks in the ring", || fake.pump(|p| p.written > 2000));
        // The reader starts now, before the answer.
        let got = read_marked_exact(&s, 5000, 4096);
        offload.join().unwrap().unwrap();
        got
    });
    assert_eq!(got[..2000], plain[..]);
    assert_eq!(got[2000..], chunked[..]);
    assert!(flags[..2000].iter().all(|f| !f));
    assert!(flags[2000..].iter().all(|f| *f));
    assert_eq!(s.marked_chunks_from(), Some(2000));
}

#[test]
fn nonblocking_and_timeouts_like_read() {
    let fake = FakeNetsrv::start();
    let (_net, s) = connect(&fake);
    let _ctx = s.offload_tls(OffloadKind::TlsRx, &params(1), 0).unwrap();
    assert_eq!(s.marked_chunks_from(), Some(0));

    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let started = Instant::now();
    let e = s.read_marked(&mut [0u8; 16]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    assert!(started.elapsed() >= Duration::from_millis(50));
    s.set_read_timeout(None).unwrap();

    s.set_nonblocking(true).unwrap();
    let e = s.read_marked(&mut [0u8; 16]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    let mut waiter = Waiter::on(s.as_raw_fd());
    fake.feed(b"sealed?", true);
    assert!(waiter.wait(Duration::from_secs(5)), "no wakeup");
    let mut buf = [0u8; 16];
    let mut got = Vec::new();
    loop {
        match s.read_marked(&mut buf) {
            Ok((n, flag)) => {
                assert!(flag);
                got.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if got.len() == 7 {
                    break;
                }
                waiter.wait(Duration::from_millis(100));
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, b"sealed?");
}

#[test]
fn malformed_chunk_headers_are_invalid_data() {
    let fake = FakeNetsrv::start();
    let (_net, s) = connect(&fake);
    fake.feed(b"plain", false);
    fake.flushed();
    let _ctx = s.offload_tls(OffloadKind::TlsRx, &params(1), 0).unwrap();
    fake.feed(b"ok", true);
    // Reserved bits set.
    fake.feed_raw(&(0x0100_0004u32).to_le_bytes());
    fake.feed_raw(b"junk");
    let (got, _) = read_marked_exact(&s, 7, 64);
    assert_eq!(got, b"plainok");
    let e = s.read_marked(&mut [0u8; 16]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    assert!(e.to_string().contains("malformed"), "{e}");
    // And stays broken, for plain reads too.
    let e = (&s).read(&mut [0u8; 16]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);

    // A zero length.
    let fake = FakeNetsrv::start();
    let (_net, s) = connect(&fake);
    let _ctx = s.offload_tls(OffloadKind::TlsRx, &params(1), 0).unwrap();
    fake.feed_raw(&0u32.to_le_bytes());
    let e = s.read_marked(&mut [0u8; 16]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);

    // The end of the stream inside a chunk.
    let fake = FakeNetsrv::start();
    let (_net, s) = connect(&fake);
    let _ctx = s.offload_tls(OffloadKind::TlsRx, &params(1), 0).unwrap();
    fake.feed_raw(&10u32.to_le_bytes());
    fake.feed_raw(b"abc");
    fake.pump(|p| p.pending.push_back(Feed::End));
    assert_eq!(s.read_marked(&mut [0u8; 16]).unwrap(), (3, false));
    let e = s.read_marked(&mut [0u8; 16]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
}

#[test]
fn events_wake_the_fd_and_revocation_ends_the_context() {
    let fake = FakeNetsrv::start();
    let (_net, mut s) = connect(&fake);
    s.write_all(&data(4, 5000)).unwrap();
    assert_eq!(s.write_offset(), 5000);
    let ctx = s
        .offload_tls(OffloadKind::TlsTx, &params(3), s.write_offset())
        .unwrap();
    // TX leaves the receive side alone.
    assert_eq!(s.marked_chunks_from(), None);
    let info = ctx.initial_info();
    assert_eq!(info.id, 7);
    assert_eq!(info.port, "sim0");
    assert_eq!(info.driver_epoch, 2);
    assert_eq!(info.kind, OffloadKind::TlsTx);
    assert_eq!(info.local, Some(addr(LOCAL)));
    assert_eq!(info.remote, Some(addr(REMOTE)));
    assert_eq!(info.state, "active");
    assert_eq!(ctx.tcp_seq(), SEQ_BASE.wrapping_add(5000));
    assert_eq!(
        ctx.stream_offset_of(SEQ_BASE.wrapping_add(5100), 5000),
        5100
    );

    // A resync request: the fd turns readable, the event is queued.
    assert_eq!(ctx.try_event(), None);
    let mut waiter = Waiter::on(ctx.as_raw_fd());
    assert!(
        !waiter.wait(Duration::from_millis(20)),
        "readable too early"
    );
    fake.command(Cmd::ResyncRequest(0x1234));
    assert!(waiter.wait(Duration::from_secs(5)), "no wakeup");
    ctx.clear_wakeup();
    assert_eq!(
        ctx.try_event(),
        Some(OffloadEvent::ResyncRequest { tcp_seq: 0x1234 })
    );
    assert_eq!(ctx.try_event(), None);
    assert!(!waiter.wait(Duration::from_millis(20)), "still readable");

    // From another thread than the connection's.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                ctx.resync(0x1234, 9).unwrap();
                ctx.resync_reject(0x2000).unwrap();
            })
            .join()
            .unwrap();
    });
    assert_eq!(*fake.seen().resyncs.lock().unwrap(), vec![(0x1234, 9)]);
    assert_eq!(*fake.seen().rejects.lock().unwrap(), vec![0x2000]);
    let e = ctx.resync(0, 1).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    let info = ctx.info().unwrap();
    assert_eq!((info.resyncs, info.resync_requests), (1, 3));
    assert_eq!((info.records, info.bytes), (100, 1_600_000));
    assert_eq!((info.auth_failures, info.dropped), (1, 2));

    // offloadStop and sendUnacked, with their arguments.
    eventually("the pump to read the send ring", || {
        fake.pump(|p| p.bytes_up == 5000)
    });
    assert_eq!(s.send_unacked().unwrap(), 4990);
    s.offload_stop(OffloadKind::TlsTx, 4990, b"sealed again")
        .unwrap();
    assert_eq!(
        *fake.seen().stops.lock().unwrap(),
        vec![(WireKind::TlsTx, 4990, b"sealed again".to_vec())]
    );

    // Revocation: an event, then every call answers NotConnected.
    fake.command(Cmd::Revoke("port sim0 is going away".into()));
    assert!(waiter.wait(Duration::from_secs(5)), "no wakeup");
    ctx.clear_wakeup();
    assert_eq!(
        ctx.try_event(),
        Some(OffloadEvent::Revoked {
            reason: "port sim0 is going away".into()
        })
    );
    assert!(ctx.is_revoked());
    for e in [
        ctx.resync(1, 1).unwrap_err(),
        ctx.resync_reject(1).unwrap_err(),
        ctx.release().unwrap_err(),
    ] {
        assert_eq!(e.kind(), io::ErrorKind::NotConnected, "{e}");
        assert!(e.to_string().contains("revoked"), "{e}");
    }
    assert_eq!(ctx.info().unwrap().state, "revoked");
    // The callbacks going away after a revocation add nothing.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(ctx.try_event(), None);

    // Dropping the context drops the capability.
    drop(ctx);
    eventually("the context to be dropped", || {
        fake.seen().contexts_dropped.load(Ordering::Relaxed) == 1
    });
}

#[test]
fn release_then_drop() {
    let fake = FakeNetsrv::start();
    let (_net, s) = connect(&fake);
    let ctx = s.offload_tls(OffloadKind::TlsRx, &params(1), 0).unwrap();
    s.offload_stop(OffloadKind::TlsRx, 0, &[]).unwrap();
    ctx.release().unwrap();
    assert_eq!(fake.seen().releases.load(Ordering::Relaxed), 1);
    let e = ctx.resync(5, 5).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotConnected);
    // A released context's callbacks going away is no revocation.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(ctx.try_event(), None);
    assert!(!ctx.is_revoked());
    drop(ctx);
    eventually("the context to be dropped", || {
        fake.seen().contexts_dropped.load(Ordering::Relaxed) == 1
    });
    // The receive side stays in chunk mode.
    fake.feed(b"after", false);
    assert_eq!(read_marked_exact(&s, 5, 16).0, b"after");
}

#[test]
fn a_dead_driver_counts_as_revocation() {
    let fake = FakeNetsrv::start();
    let (net, s) = connect(&fake);
    let ctx = s.offload_tls(OffloadKind::TlsRx, &params(1), 0).unwrap();
    let mut waiter = Waiter::on(ctx.as_raw_fd());
    fake.command(Cmd::DriverDies);
    assert!(waiter.wait(Duration::from_secs(5)), "no wakeup");
    ctx.clear_wakeup();
    match ctx.try_event() {
        Some(OffloadEvent::Revoked { reason }) => {
            assert!(reason.contains("went away"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(ctx.is_revoked());
    let e = ctx.info().unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotConnected, "{e}");
    assert!(e.to_string().contains("revoked"), "{e}");
    // The connection itself is fine.
    assert!(net.is_connected());
    fake.feed(b"still here", false);
    assert_eq!(read_marked_exact(&s, 10, 16).0, b"still here");
}

#[test]
fn refused_offloads_change_nothing() {
    let fake = FakeNetsrv::start();
    let (_net, s) = connect(&fake);
    fake.feed(b"before", false);
    let e = s
        .offload_tls(OffloadKind::TlsRx, &params(UNSUPPORTED_SEQ), 0)
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}");
    assert_eq!(s.marked_chunks_from(), None);
    fake.feed(b" after", false);
    assert_eq!(
        read_marked_exact(&s, 12, 64),
        (b"before after".to_vec(), vec![false; 12])
    );

    // Bad parameters never leave the process.
    let mut bad = params(1);
    bad.key = vec![1; 32];
    let e = s.offload_tls(OffloadKind::TlsTx, &bad, 0).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    assert_eq!(fake.seen().offloads.lock().unwrap().len(), 1);
    // Nor does the key through Debug.
    assert!(!format!("{bad:?}").contains("1, 1"));
}

#[test]
fn the_service_going_away_resets_offload_calls() {
    let fake = FakeNetsrv::start();
    let (net, s) = connect(&fake);
    let ctx = s.offload_tls(OffloadKind::TlsTx, &params(1), 0).unwrap();
    let mut waiter = Waiter::on(ctx.as_raw_fd());
    drop(fake);
    eventually("the connection to notice", || !net.is_connected());
    // The context went with it: an event, and ConnectionReset for calls.
    assert!(waiter.wait(Duration::from_secs(5)), "no wakeup");
    assert!(matches!(
        ctx.try_event(),
        Some(OffloadEvent::Revoked { .. })
    ));
    assert_eq!(
        ctx.info().unwrap_err().kind(),
        io::ErrorKind::ConnectionReset
    );
    assert_eq!(
        s.send_unacked().unwrap_err().kind(),
        io::ErrorKind::ConnectionReset
    );
    assert_eq!(
        s.offload_tls(OffloadKind::TlsRx, &params(1), 0)
            .unwrap_err()
            .kind(),
        io::ErrorKind::ConnectionReset
    );
}

#[test]
fn egress_subscription_fd() {
    let fake = FakeNetsrv::start();
    let (_net, s) = connect(&fake);
    let egress = s.egress().unwrap();
    let sub = egress.subscribe().unwrap();
    let mut waiter = Waiter::on(sub.as_raw_fd());
    assert!(
        !waiter.wait(Duration::from_millis(20)),
        "readable too early"
    );
    fake.command(Cmd::EgressChange("sim1"));
    assert!(waiter.wait(Duration::from_secs(5)), "no wakeup");
    sub.clear_wakeup();
    let info = sub.try_recv().expect("a change");
    assert_eq!(info.port.as_deref(), Some("sim1"));
    assert_eq!(info.reason, libclient::EgressReason::Failover);
    assert_eq!(sub.try_recv(), None);
    assert!(!sub.ended());

    // Two changes, one wakeup drain, both there.
    fake.command(Cmd::EgressChange("sim0"));
    fake.command(Cmd::EgressChange("sim1"));
    assert!(waiter.wait(Duration::from_secs(5)), "no wakeup");
    let mut ports = Vec::new();
    let until = Instant::now() + Duration::from_secs(5);
    while ports.len() < 2 && Instant::now() < until {
        sub.clear_wakeup();
        while let Some(i) = sub.try_recv() {
            ports.push(i.port.unwrap());
        }
        if ports.len() < 2 {
            waiter.wait(Duration::from_millis(100));
        }
    }
    assert_eq!(ports, ["sim0", "sim1"]);

    // netsrv ends the subscription: readable, and ended.
    fake.command(Cmd::EndSubscription);
    assert!(waiter.wait(Duration::from_secs(5)), "no wakeup at the end");
    eventually("the end", || sub.ended());
    // The blocking API is still there.
    assert!(sub.recv().is_err());
    assert_eq!(sub.recv_timeout(Duration::from_millis(10)), None);
}
