//! The `Tls` capability and its sockets.
//!
//! The capnp side runs on tlsd's single-threaded control runtime. Every
//! handshake runs on the handshake workers ([`crate::handshaker`]) with a
//! deadline; each established connection's data path runs on a thread of
//! its own (`session`), ended by the application's close, its death (the
//! capability is dropped), or TLS. Every socket holds a permit of its
//! client's limits ([`crate::limits`]).

use crate::conn::TlsConn;
use crate::handshake::{Established, Handshake};
use crate::handshaker::{Failure, Handshaker, Job};
use crate::holder::Holder;
use crate::identity::{Identity, Options, TlsVersion};
use crate::limits::{Gate, Limits, Permit};
use crate::listener::Listener;
use crate::session::{self, AppRings, Control, Ended, Handle};
use crate::stats::Stats;
use capnet_ring::{HandoffTable, SocketRings};
use capnet_schema::access::{Peer, Principals};
use capnet_schema::addr::{read_socket_addr, write_socket_addr};
use capnet_schema::errors::SocketError;
use capnet_schema::tls_capnp::{
    tls, tls_listener, tls_options, tls_socket, OffloadPolicy, RecordMode,
    TlsVersion as WireVersion,
};
use capnet_schema::transport::TransportCounters;
use capnp::capability::Rc as CapRc;
use capnp::Error;
use libclient::{Net, TcpStream};
use rustls::pki_types::ServerName;
use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes per direction of an application's socket rings.
pub const SOCKET_RING_BYTES: u32 = 1 << 20;

/// What every capability of one tlsd shares.
pub struct Shared {
    pub identity: Identity,
    pub stats: Arc<Stats>,
    pub handoff: Arc<HandoffTable>,
    pub gate: Arc<Gate>,
    pub handshaker: Handshaker,
    /// netsrv's service socket; tlsd is one of its applications.
    net_path: PathBuf,
    net: Mutex<Option<Net>>,
}

impl Shared {
    /// Also starts the handshake workers.
    pub fn new(identity: Identity, net_path: PathBuf, limits: Limits) -> io::Result<Shared> {
        let stats = Arc::new(Stats::default());
        Ok(Shared {
            identity,
            handshaker: Handshaker::start(
                limits.handshake_workers,
                limits.handshake_timeout,
                stats.clone(),
            )?,
            gate: Gate::new(limits, stats.clone()),
            stats,
            handoff: Arc::new(HandoffTable::new()),
            net_path,
            net: Mutex::new(None),
        })
    }

    /// The connection to netsrv, made again after netsrv restarted.
    fn net(&self) -> io::Result<Net> {
        let mut net = self.net.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = net.as_ref().filter(|n| n.is_connected()) {
            return Ok(n.clone());
        }
        let n = Net::connect(&self.net_path)?;
        *net = Some(n.clone());
        Ok(n)
    }
}

/// The words of tls.capnp beyond the socket words.
fn handshake_err(e: impl std::fmt::Display) -> Error {
    Error::failed(format!("handshake: {e}"))
}

fn io_to_capnp(e: io::Error) -> Error {
    let word = match e.kind() {
        io::ErrorKind::ConnectionRefused => SocketError::Refused,
        io::ErrorKind::ConnectionReset => SocketError::Reset,
        io::ErrorKind::ConnectionAborted => SocketError::Aborted,
        io::ErrorKind::TimedOut => SocketError::TimedOut,
        io::ErrorKind::AddrInUse => SocketError::AddrInUse,
        io::ErrorKind::AddrNotAvailable => SocketError::AddrNotAvailable,
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
            SocketError::Unreachable
        }
        io::ErrorKind::InvalidInput => SocketError::Invalid,
        io::ErrorKind::PermissionDenied => SocketError::Denied,
        io::ErrorKind::NotConnected => SocketError::NotConnected,
        _ => SocketError::Busy,
    };
    word.to_capnp(e)
}

fn read_version(v: Result<WireVersion, capnp::NotInSchema>) -> Option<TlsVersion> {
    match v {
        Ok(WireVersion::Tls12) => Some(TlsVersion::Tls12),
        Ok(WireVersion::Tls13) => Some(TlsVersion::Tls13),
        _ => None,
    }
}

/// Per-connection choices, checked here so that a bad one is `invalid`.
#[derive(Clone, Debug)]
struct ConnOptions {
    tls: Options,
    /// Use the egress port's TLS offload where it offers one.
    offload: bool,
}

impl Default for ConnOptions {
    fn default() -> Self {
        ConnOptions {
            tls: Options::default(),
            offload: true,
        }
    }
}

fn read_options(r: Option<tls_options::Reader<'_>>) -> Result<ConnOptions, Error> {
    let Some(r) = r else {
        return Ok(ConnOptions::default());
    };
    let mut tls = Options::default();
    for p in r.get_alpn()?.iter() {
        let p = p?
            .to_str()
            .map_err(|_| SocketError::Invalid.to_capnp("alpn: not UTF-8"))?;
        if p.is_empty() || p.len() > 255 {
            return Err(SocketError::Invalid.to_capnp("alpn: each name 1 to 255 bytes"));
        }
        tls.alpn.push(p.as_bytes().to_vec());
    }
    tls.min_version = read_version(r.get_min_version());
    tls.max_version = read_version(r.get_max_version());
    for s in r.get_cipher_suites()?.iter() {
        let s = s?
            .to_str()
            .map_err(|_| SocketError::Invalid.to_capnp("cipher suite: not UTF-8"))?;
        tls.cipher_suites.push(s.to_owned());
    }
    let offload = match r.get_offload() {
        Ok(OffloadPolicy::Auto) => true,
        Ok(OffloadPolicy::Off) => false,
        Err(_) => return Err(SocketError::Invalid.to_capnp("offload: unknown policy")),
    };
    Ok(ConnOptions { tls, offload })
}

/// `connect`'s parameters, checked before anything is started.
fn read_connect(
    p: tls::connect_params::Reader<'_>,
) -> Result<(SocketAddr, ServerName<'static>, ConnOptions), Error> {
    let remote = read_socket_addr(p.get_remote()?)?;
    let name = p
        .get_server_name()?
        .to_str()
        .map_err(|_| SocketError::Invalid.to_capnp("server name: not UTF-8"))?
        .to_owned();
    let server_name = ServerName::try_from(name.clone())
        .map_err(|e| SocketError::Invalid.to_capnp(format_args!("server name {name:?}: {e}")))?;
    let options = read_options(p.has_options().then(|| p.get_options()).transpose()?)?;
    Ok((remote, server_name, options))
}

/// `listen`'s parameters: local address, backlog, options.
fn read_listen(p: tls::listen_params::Reader<'_>) -> Result<(SocketAddr, u32, ConnOptions), Error> {
    let local = read_socket_addr(p.get_local()?)?;
    let options = read_options(p.has_options().then(|| p.get_options()).transpose()?)?;
    Ok((local, p.get_backlog(), options))
}

/// The parameter readers above, for the fuzz targets (`fuzz/`).
#[doc(hidden)]
pub mod fuzz_api {
    use super::*;

    pub fn read_connect(p: tls::connect_params::Reader<'_>) -> Result<(), Error> {
        super::read_connect(p).map(|_| ())
    }

    pub fn read_listen(p: tls::listen_params::Reader<'_>) -> Result<(), Error> {
        super::read_listen(p).map(|_| ())
    }
}

/// What `info` reports, fixed once the handshake is done.
#[derive(Clone, Debug)]
struct Info {
    version: TlsVersion,
    suite: String,
    alpn: String,
    server_name: String,
    local: Option<SocketAddr>,
    remote: SocketAddr,
}

fn info_of(est: &Established, tcp: &TcpStream) -> Info {
    Info {
        version: match est.version {
            rustls::ProtocolVersion::TLSv1_2 => TlsVersion::Tls12,
            _ => TlsVersion::Tls13,
        },
        suite: est.suite.clone(),
        alpn: est
            .alpn
            .as_deref()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .unwrap_or_default(),
        server_name: est.server_name.clone().unwrap_or_default(),
        local: tcp.local_addr().ok(),
        remote: tcp.peer_addr().unwrap_or_else(|_| ([0, 0, 0, 0], 0).into()),
    }
}

/// A session thread waiting for its rings, then running.
struct Started {
    info: Info,
    rings: mpsc::Sender<AppRings>,
    control: Arc<Control>,
}

/// Hands a handshaken connection to its own thread; the thread waits for
/// the application's rings (or for it to go away), then runs the session.
/// The thread holds the connection's permit until it ends.
fn start_session(
    shared: &Shared,
    est: Established,
    tcp: TcpStream,
    offload: bool,
    permit: Permit,
) -> Result<Started, Error> {
    let info = info_of(&est, &tcp);
    let stats = shared.stats.clone();
    let conn = TlsConn::new(est, shared.stats.clone()).map_err(handshake_err)?;
    let (rings_tx, rings_rx) = mpsc::channel::<AppRings>();
    let control = Arc::new(Control::default());
    let thread_control = control.clone();
    let remote = info.remote;
    std::thread::Builder::new()
        .name(format!("tls {remote}"))
        .spawn(move || {
            let _permit = permit;
            // Dropped without rings: the application never took the socket.
            let Ok(app) = rings_rx.recv() else {
                return;
            };
            let holder = Holder::new(offload, &tcp, stats);
            let ended = session::run(conn, tcp, app.end, app.wake_me, &thread_control, holder);
            match ended {
                Ended::Clean | Ended::Cancelled => {
                    tracing::debug!(%remote, ?ended, "session ended")
                }
                Ended::Failed(why) => tracing::warn!(%remote, %why, "session failed"),
            }
        })
        .map_err(|e| SocketError::Busy.to_capnp(format_args!("thread: {e}")))?;
    Ok(Started {
        info,
        rings: rings_tx,
        control,
    })
}

/// Runs `work` on a thread of its own and awaits its answer: libclient's
/// TCP connect and listen block, and the control runtime must not. The
/// caller holds a permit, which bounds these threads.
async fn off_thread<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let (tx, rx) = futures::channel::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .map_err(|e| SocketError::Busy.to_capnp(format_args!("thread: {e}")))?;
    rx.await
        .map_err(|_| Error::failed("busy: worker thread died".into()))?
}

/// How a failed handshake reads to the application.
fn failure_to_capnp(f: Failure) -> Error {
    match f {
        Failure::TimedOut(t) => SocketError::TimedOut.to_capnp(format_args!(
            "handshake: no complete handshake within {t:?}"
        )),
        Failure::Cancelled => SocketError::Closed.to_capnp("handshake: cancelled"),
        Failure::Handshake(e) => handshake_err(e),
    }
}

/// Sets its flag when dropped: a connect call that ends, or is cancelled
/// by the application, lets its handshake go.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The `Tls` capability of one client (one connection to tls.sock).
pub struct TlsServer {
    shared: Arc<Shared>,
    /// The client's uid (SO_PEERCRED): whose limits its sockets count in.
    uid: u32,
    /// Whether the client may listen below port 1024 (`[access] low_ports`).
    low_ports: bool,
    /// tls.sock's transport counters, for `stat`.
    transport: Rc<TransportCounters>,
}

impl TlsServer {
    fn permit(&self) -> Result<Permit, Error> {
        self.shared.gate.take(self.uid).map_err(|e| {
            tracing::info!(uid = self.uid, %e, "TLS socket refused");
            e.to_capnp()
        })
    }
}

impl tls::Server for TlsServer {
    async fn connect(
        self: CapRc<Self>,
        params: tls::ConnectParams,
        mut results: tls::ConnectResults,
    ) -> Result<(), Error> {
        let (remote, server_name, options) = read_connect(params.get()?)?;
        let config = self
            .shared
            .identity
            .client_config(&options.tls)
            .map_err(|e| SocketError::Invalid.to_capnp(e))?;
        let permit = self.permit()?;
        let handshake = Handshake::client(config, server_name).map_err(handshake_err)?;
        let shared = self.shared.clone();
        // The thread holds the permit: a call cancelled meanwhile still
        // counts until its thread is done.
        let (tcp, permit) = off_thread("tls connect", move || {
            let net = shared.net().map_err(io_to_capnp)?;
            let tcp = net.tcp_connect(remote, None).map_err(io_to_capnp)?;
            Ok((tcp, permit))
        })
        .await?;
        let (done, outcome) = futures::channel::oneshot::channel();
        let cancelled = Arc::new(AtomicBool::new(false));
        let _cancel = CancelOnDrop(cancelled.clone());
        self.shared.handshaker.submit(Job {
            tcp,
            handshake,
            deadline: Instant::now() + self.shared.gate.limits().handshake_timeout,
            cancelled,
            done: Box::new(move |o| {
                let _ = done.send(o);
            }),
        });
        let (est, tcp) = match outcome.await {
            Ok(Ok(established)) => established,
            Ok(Err(f)) => return Err(failure_to_capnp(f)),
            Err(_) => return Err(SocketError::Busy.to_capnp("handshake: the worker went away")),
        };
        let started = start_session(&self.shared, est, tcp, options.offload, permit)?;
        results
            .get()
            .set_socket(capnp_rpc::new_client(TlsSocketServer::new(
                self.shared.clone(),
                started,
            )));
        Ok(())
    }

    async fn listen(
        self: CapRc<Self>,
        params: tls::ListenParams,
        mut results: tls::ListenResults,
    ) -> Result<(), Error> {
        let (local, backlog, options) = read_listen(params.get()?)?;
        if local.port() != 0 && local.port() < 1024 && !self.low_ports {
            return Err(SocketError::Denied.to_capnp(format_args!(
                "port {} is below 1024 and this user may not bind it ([access] low_ports in the configuration)",
                local.port()
            )));
        }
        if !self.shared.identity.has_server_identity() {
            return Err(Error::failed(
                "identity: tlsd has no server certificate and key configured".into(),
            ));
        }
        // Checked now so that a bad option fails listen, not each accept.
        self.shared
            .identity
            .server_config(&options.tls)
            .map_err(|e| SocketError::Invalid.to_capnp(e))?;
        let permit = self.permit()?;
        let shared = self.shared.clone();
        let (tcp, permit) = off_thread("tls listen", move || {
            let net = shared.net().map_err(io_to_capnp)?;
            let tcp = net.tcp_listen(local, backlog.max(1)).map_err(io_to_capnp)?;
            Ok((tcp, permit))
        })
        .await?;
        let listener = Listener::start(
            self.shared.clone(),
            tcp,
            permit,
            options.tls.clone(),
            backlog as usize,
        )
        .map_err(|e| SocketError::Busy.to_capnp(format_args!("listener thread: {e}")))?;
        results
            .get()
            .set_listener(capnp_rpc::new_client(TlsListenerServer {
                shared: self.shared.clone(),
                listener,
                options,
            }));
        Ok(())
    }

    async fn stat(
        self: CapRc<Self>,
        _: tls::StatParams,
        mut results: tls::StatResults,
    ) -> Result<(), Error> {
        write_stat(&self.shared, &self.transport, results.get().init_stat());
        Ok(())
    }
}

/// What `stat` answers, to applications and to the supervisor alike.
pub fn write_stat(
    shared: &Shared,
    transport: &TransportCounters,
    mut r: capnet_schema::tls_capnp::tls_stat::Builder<'_>,
) {
    let s = shared.stats.snapshot();
    r.set_curr_tx_sw(s.curr_tx_sw);
    r.set_curr_rx_sw(s.curr_rx_sw);
    r.set_curr_tx_device(s.curr_tx_device);
    r.set_curr_rx_device(s.curr_rx_device);
    r.set_tx_sw(s.tx_sw);
    r.set_rx_sw(s.rx_sw);
    r.set_tx_device(s.tx_device);
    r.set_rx_device(s.rx_device);
    r.set_decrypt_error(s.decrypt_error);
    r.set_rx_device_resync(s.rx_device_resync);
    r.set_decrypt_retry(s.decrypt_retry);
    r.set_tx_rekey_ok(s.tx_rekey_ok);
    r.set_rx_rekey_ok(s.rx_rekey_ok);
    r.set_rx_rekey_received(s.rx_rekey_received);
    r.set_reoffloads(s.reoffloads);
    r.set_handshakes(s.handshakes);
    r.set_handshake_failures(s.handshake_failures);
    r.set_alerts_sent(s.alerts_sent);
    r.set_alerts_received(s.alerts_received);
    r.set_records_sealed(s.records_sealed);
    r.set_records_opened(s.records_opened);
    r.set_bytes_sealed(s.bytes_sealed);
    r.set_bytes_opened(s.bytes_opened);
    r.set_session_tickets(s.session_tickets);
    r.set_handshake_timeouts(s.handshake_timeouts);
    r.set_curr_handshakes(s.curr_handshakes);
    r.set_curr_sockets(s.curr_sockets);
    r.set_limit_refused(s.limit_refused);
    r.set_accept_errors(s.accept_errors + transport.accept_errors.get());
    r.set_confinement(capnet_confine::current_text());
}

pub struct TlsListenerServer {
    shared: Arc<Shared>,
    listener: Arc<Listener>,
    options: ConnOptions,
}

impl Drop for TlsListenerServer {
    fn drop(&mut self) {
        // Its acceptor thread may hold the listener for a moment: close
        // now rather than when the last handle goes.
        self.listener.close();
    }
}

/// How long `close` waits for the acceptor thread to let go of the port.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

impl tls_listener::Server for TlsListenerServer {
    async fn accept(
        self: CapRc<Self>,
        _: tls_listener::AcceptParams,
        mut results: tls_listener::AcceptResults,
    ) -> Result<(), Error> {
        let ready = self.listener.accept().await?;
        let started = start_session(
            &self.shared,
            ready.est,
            ready.tcp,
            self.options.offload,
            ready.permit,
        )?;
        let remote = started.info.remote;
        let mut r = results.get();
        r.set_socket(capnp_rpc::new_client(TlsSocketServer::new(
            self.shared.clone(),
            started,
        )));
        write_socket_addr(r.init_remote(), remote);
        Ok(())
    }

    async fn local_addr(
        self: CapRc<Self>,
        _: tls_listener::LocalAddrParams,
        mut results: tls_listener::LocalAddrResults,
    ) -> Result<(), Error> {
        write_socket_addr(results.get().init_addr(), self.listener.local_addr());
        Ok(())
    }

    async fn close(
        self: CapRc<Self>,
        _: tls_listener::CloseParams,
        _: tls_listener::CloseResults,
    ) -> Result<(), Error> {
        if let Some(released) = self.listener.close() {
            let _ = tokio::time::timeout(CLOSE_WAIT, released).await;
        }
        Ok(())
    }
}

pub struct TlsSocketServer {
    shared: Arc<Shared>,
    info: Info,
    /// Until `openRings`: where the session thread waits for its rings.
    rings: RefCell<Option<mpsc::Sender<AppRings>>>,
    /// After `openRings`: how to stop the session.
    handle: RefCell<Option<Handle>>,
    control: Arc<Control>,
}

impl TlsSocketServer {
    fn new(shared: Arc<Shared>, started: Started) -> TlsSocketServer {
        TlsSocketServer {
            shared,
            info: started.info,
            rings: RefCell::new(Some(started.rings)),
            handle: RefCell::new(None),
            control: started.control,
        }
    }
}

impl Drop for TlsSocketServer {
    fn drop(&mut self) {
        // Without rings the session thread ends when the sender goes.
        if let Some(h) = self.handle.borrow().as_ref() {
            h.cancel();
        }
    }
}

fn write_version(v: TlsVersion) -> WireVersion {
    match v {
        TlsVersion::Tls12 => WireVersion::Tls12,
        TlsVersion::Tls13 => WireVersion::Tls13,
    }
}

impl tls_socket::Server for TlsSocketServer {
    async fn info(
        self: CapRc<Self>,
        _: tls_socket::InfoParams,
        mut results: tls_socket::InfoResults,
    ) -> Result<(), Error> {
        let i = &self.info;
        let mut r = results.get().init_info();
        r.set_version(write_version(i.version));
        r.set_cipher_suite(&i.suite);
        r.set_alpn(&i.alpn);
        r.set_server_name(&i.server_name);
        if let Some(l) = i.local {
            write_socket_addr(r.reborrow().init_local(), l);
        }
        write_socket_addr(r.reborrow().init_remote(), i.remote);
        let mode = |device: &std::sync::atomic::AtomicBool| {
            if device.load(std::sync::atomic::Ordering::Relaxed) {
                RecordMode::Device
            } else {
                RecordMode::Software
            }
        };
        r.set_tx(mode(&self.control.tx_device));
        r.set_rx(mode(&self.control.rx_device));
        Ok(())
    }

    async fn open_rings(
        self: CapRc<Self>,
        _: tls_socket::OpenRingsParams,
        mut results: tls_socket::OpenRingsResults,
    ) -> Result<(), Error> {
        let Some(sender) = self.rings.borrow_mut().take() else {
            return Err(SocketError::Invalid.to_capnp("the rings are already open"));
        };
        let (end, wake_me, fds) = SocketRings::create(SOCKET_RING_BYTES)
            .map_err(|e| SocketError::Busy.to_capnp(format_args!("shared memory: {e}")))?;
        // `cancel` wakes the session from this process: its ring goes to a
        // private eventfd, never to anything the application holds.
        let doorbell = |e| SocketError::Busy.to_capnp(format_args!("doorbell: {e}"));
        let wake_me = wake_me.with_local_ring().map_err(doorbell)?;
        let wake = wake_me.try_clone().map_err(doorbell)?;
        sender
            .send(AppRings { end, wake_me })
            .map_err(|_| SocketError::Closed.to_capnp("the session has ended"))?;
        *self.handle.borrow_mut() = Some(Handle {
            control: self.control.clone(),
            wake,
        });
        let token = self.shared.handoff.offer(fds);
        let mut g = results.get().init_grant();
        g.set_token(&token.0);
        g.set_ring_bytes(SOCKET_RING_BYTES);
        Ok(())
    }
}

/// The `Tls` bootstrap for applications on tls.sock.
pub struct TlsSocketService {
    pub shared: Arc<Shared>,
    pub network: Principals,
    pub low_ports: Principals,
    /// What the transport refused and survived on tls.sock.
    pub transport: Rc<TransportCounters>,
}

impl capnet_schema::transport::ServiceSocket for TlsSocketService {
    fn handoff(&self) -> &HandoffTable {
        &self.shared.handoff
    }

    fn bootstrap(&self, peer: &Peer) -> capnp::capability::Client {
        if !self.network.admits(peer) {
            tracing::warn!(uid = peer.uid, pid = peer.pid, "refused: may not use TLS");
            return capnet_schema::transport::refused(SocketError::Denied.to_capnp(format_args!(
                "uid {} may not use this network ([access] network in the configuration)",
                peer.uid
            )));
        }
        let low_ports = self.low_ports.admits(peer);
        let server = TlsServer {
            shared: self.shared.clone(),
            uid: peer.uid,
            low_ports,
            transport: self.transport.clone(),
        };
        let t: tls::Client = capnp_rpc::new_client(server);
        t.client
    }

    fn transport_counters(&self) -> Option<Rc<TransportCounters>> {
        Some(self.transport.clone())
    }
}

/// Serves applications on `listener` for as long as tlsd runs. The shared
/// transport survives failed accepts (running out of file descriptors):
/// they are counted, and new clients get in once descriptors are free.
pub async fn serve_applications(
    listener: tokio::net::UnixListener,
    service: TlsSocketService,
) -> io::Result<()> {
    capnet_schema::transport::serve_clients(listener, std::rc::Rc::new(service)).await
}
