//! One connection to a service of a service set (netsrv's `Net`, tlsd's
//! `Tls`): the service's capability served on a background thread, and the
//! handoff side channel for shared-memory grants, redeemed on that thread
//! too (so a grant is redeemed in the same job that asked for it: a socket
//! comes to the application with its rings, after one trip to the thread).
//!
//! capnp clients are single-threaded (`Rc`), so they live on the connection's
//! thread in a table; the blocking socket API sends that thread jobs and waits
//! for the answer. The thread bootstraps an untyped capability; jobs see it
//! through the typed views of [`Ctx`] ([`Ctx::net`], [`Ctx::tls`]).
//!
//! When the service goes away (it exits or is killed, the socket closes),
//! the capnp connection ends and so does the thread: it marks the connection
//! dead, rings the doorbell of every ring-mode stream so that its sleepers
//! look again, and drops every job, pending or queued, so that its caller
//! wakes. From then on every operation on the connection answers
//! [`Service::gone`] (`ConnectionReset`).

use crate::arena::ArenaCell;
use crate::bell::Bell;
use crate::handoff::Handoff;
use crate::held::{Held, HeldSet};
use capnet_ring::handoff::{CONNECT_HANDOFF, CONNECT_RPC};
use capnet_schema::errors::capnp_to_io;
use capnet_schema::net_capnp::{egress, net, subscription, tcp_listener, tcp_socket, udp_socket};
use capnet_schema::offload_capnp::offload_context;
use capnet_schema::quiet::QuietStream;
use capnet_schema::tls_capnp::{tls, tls_listener, tls_socket};
use capnet_schema::transport;
use capnp::capability::FromClientHook;
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::RpcSystem;
use futures::future::LocalBoxFuture;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// A capability held on the connection thread, named by a local number.
pub(crate) enum Object {
    Tcp(tcp_socket::Client),
    Listener(tcp_listener::Client),
    Udp(udp_socket::Client),
    Egress(egress::Client),
    /// Held only to keep an egress subscription alive: dropping it ends the
    /// subscription.
    Subscription(#[allow(dead_code)] subscription::Client),
    TlsSocket(tls_socket::Client),
    TlsListener(tls_listener::Client),
    OffloadContext(offload_context::Client),
}

/// What jobs see on the connection thread.
pub(crate) struct Ctx {
    /// The service's capability, as bootstrapped.
    bootstrap: capnp::capability::Client,
    objects: RefCell<HashMap<u64, Object>>,
    next: RefCell<u64>,
    handoff: Handoff,
    /// Socket ring sets released and still mapped (netsrv only).
    pub held: Rc<RefCell<Held>>,
    /// The connection's socket arena, if it uses one (netsrv only).
    pub arena: Arc<ArenaCell>,
}

/// `Ctx::$name(id)`: the object `id` if it is a `$variant`.
macro_rules! object_getters {
    ($($name:ident: $variant:ident => $client:ty;)*) => {
        impl Ctx {
            $(
                pub fn $name(&self, id: u64) -> io::Result<$client> {
                    match self.objects.borrow().get(&id) {
                        Some(Object::$variant(c)) => Ok(c.clone()),
                        _ => Err(closed()),
                    }
                }
            )*
        }
    };
}

object_getters! {
    tcp: Tcp => tcp_socket::Client;
    listener: Listener => tcp_listener::Client;
    udp: Udp => udp_socket::Client;
    egress: Egress => egress::Client;
    tls_socket: TlsSocket => tls_socket::Client;
    tls_listener: TlsListener => tls_listener::Client;
    offload_context: OffloadContext => offload_context::Client;
}

impl Ctx {
    fn new(
        bootstrap: capnp::capability::Client,
        handoff: QuietStream,
        arena: Arc<ArenaCell>,
    ) -> Ctx {
        Ctx {
            bootstrap,
            objects: RefCell::new(HashMap::new()),
            next: RefCell::new(0),
            handoff: Handoff::new(handoff),
            held: Rc::default(),
            arena,
        }
    }

    /// Redeems a shared-memory grant on the handoff channel, expecting
    /// `fds` descriptors.
    pub async fn redeem(&self, token: &[u8], fds: usize) -> io::Result<Vec<OwnedFd>> {
        self.handoff.redeem(token, fds).await
    }

    /// The bootstrap capability as `T` (calls fail with "unimplemented" if
    /// the service does not serve that interface).
    fn view<T: FromClientHook>(&self) -> T {
        T::new(self.bootstrap.hook.add_ref())
    }

    /// netsrv's `Net` (on a connection made by [`crate::Net`]).
    pub fn net(&self) -> net::Client {
        self.view()
    }

    /// tlsd's `Tls` (on a connection made by [`crate::Tls`]).
    pub fn tls(&self) -> tls::Client {
        self.view()
    }

    pub fn insert(&self, o: Object) -> u64 {
        let mut next = self.next.borrow_mut();
        *next += 1;
        self.objects.borrow_mut().insert(*next, o);
        *next
    }

    /// Takes an object out of the table (dropping it releases the
    /// capability).
    pub fn remove(&self, id: u64) -> Option<Object> {
        self.objects.borrow_mut().remove(&id)
    }
}

/// Which service a connection talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Service {
    /// netsrv (`Net`).
    Net,
    /// tlsd (`Tls`).
    Tls,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Net => "network",
            Service::Tls => "TLS",
        }
    }

    /// What a failed connect names.
    fn label(self) -> &'static str {
        match self {
            Service::Net => "capnet service",
            Service::Tls => "capnet TLS service",
        }
    }

    fn thread_name(self) -> &'static str {
        match self {
            Service::Net => "capnet-rpc",
            Service::Tls => "capnet-tls",
        }
    }

    /// The error of every operation once the service has gone away.
    pub fn gone(self) -> io::Error {
        io::Error::new(
            io::ErrorKind::ConnectionReset,
            format!("capnet: the {} service went away", self.name()),
        )
    }
}

/// The error of every operation once the network service has gone away.
pub(crate) fn service_gone() -> io::Error {
    Service::Net.gone()
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "socket is closed")
}

type Job = Box<dyn FnOnce(Rc<Ctx>) -> LocalBoxFuture<'static, ()> + Send>;

struct Inner {
    service: Service,
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
    life: Arc<Life>,
    arena: Arc<ArenaCell>,
}

/// Whether the service is still there, and whom to wake when it is not.
/// Shared by the application's threads and the connection thread.
struct Life {
    dead: AtomicBool,
    /// The doorbells of the ring-mode streams, by object number.
    bells: Mutex<HashMap<u64, Weak<Bell>>>,
    /// The service socket (a second fd of it), to ask whether the service
    /// hung up before the connection thread has noticed.
    socket: OwnedFd,
}

impl Life {
    fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// Dead, or about to be: the service closed its end of the socket.
    /// Things the connection tears down on its way out (exported watchers)
    /// go before `dead` is set; this tells them apart from a normal end.
    fn is_gone(&self) -> bool {
        if self.is_dead() {
            return true;
        }
        // POLLRDHUP (the peer shut its end) is Linux's; elsewhere only a
        // full hang-up shows.
        #[cfg(target_os = "linux")]
        const HUP: libc::c_short = libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR;
        #[cfg(not(target_os = "linux"))]
        const HUP: libc::c_short = libc::POLLHUP | libc::POLLERR;
        let mut p = libc::pollfd {
            fd: self.socket.as_raw_fd(),
            events: HUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no waiting.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n == 1 && p.revents & HUP != 0
    }

    /// Marks the connection dead and wakes every stream's sleepers. Under
    /// the lock of `bells`, so a stream registering at the same time either
    /// is rung here or sees `dead` itself.
    fn kill(&self) {
        let bells = self.bells.lock().unwrap_or_else(|e| e.into_inner());
        self.dead.store(true, Ordering::SeqCst);
        for bell in bells.values().filter_map(Weak::upgrade) {
            bell.doorbell.ring();
        }
    }
}

/// One connection to a service's socket. Cheap to clone; the connection
/// ends when the last clone and every socket made from it are gone.
#[derive(Clone)]
pub(crate) struct Conn {
    inner: Arc<Inner>,
}

impl Conn {
    /// Connects to `service`'s socket at `path`.
    pub fn connect(path: &Path, service: Service) -> io::Result<Conn> {
        Self::connect_with(path, service, false)
    }

    /// Connects to `service`'s socket at `path`; with `arena`, its TCP
    /// sockets' rings are slots of one arena ([`crate::arena`]).
    pub fn connect_with(path: &Path, service: Service, arena: bool) -> io::Result<Conn> {
        let annotate = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("{} at {}: {e}", service.label(), path.display()),
            )
        };
        let mut rpc = UnixStream::connect(path).map_err(annotate)?;
        crate::paths::verify_service_socket(path, rpc.as_fd())?;
        rpc.write_all(&[CONNECT_RPC])?;
        let mut handoff = UnixStream::connect(path).map_err(annotate)?;
        crate::paths::verify_service_socket(path, handoff.as_fd())?;
        handoff.write_all(&[CONNECT_HANDOFF])?;
        rpc.set_nonblocking(true)?;
        handoff.set_nonblocking(true)?;
        let (jobs, mut queue) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let life = Arc::new(Life {
            dead: AtomicBool::new(false),
            bells: Mutex::new(HashMap::new()),
            socket: OwnedFd::from(rpc.try_clone()?),
        });
        let thread_life = life.clone();
        let arena = Arc::new(ArenaCell::new(arena));
        let thread_arena = arena.clone();
        std::thread::Builder::new()
            .name(service.thread_name().into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    let streams = transport::vat_network(rpc, Side::Client)
                        .and_then(|rpc| Ok((rpc, QuietStream::new(handoff)?)));
                    let (network, handoff) = match streams {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let mut system = RpcSystem::new(Box::new(network), None);
                    let ctx = Rc::new(Ctx::new(
                        system.bootstrap(Side::Server),
                        handoff,
                        thread_arena,
                    ));
                    let _ = ready_tx.send(Ok(()));
                    let serve = async move {
                        while let Some(job) = queue.recv().await {
                            tokio::task::spawn_local(job(ctx.clone()));
                        }
                    };
                    tokio::select! {
                        // The service went away (it exited, the socket
                        // closed, or the connection broke).
                        _ = system => thread_life.kill(),
                        // Every handle is gone: a normal end.
                        () = serve => {}
                    }
                    // Returning drops the queue (queued jobs) and, with the
                    // LocalSet, every running job: their callers wake.
                });
            })?;
        ready_rx
            .recv()
            .map_err(|_| io::Error::other("capnet connection thread died"))??;
        Ok(Conn {
            inner: Arc::new(Inner {
                service,
                jobs,
                life,
                arena,
            }),
        })
    }

    /// The process-wide connection kept in `slot`, made to `path()` on first
    /// use, and made again on the next use after the service went away (a
    /// supervisor may have restarted it).
    pub fn shared(
        slot: &Mutex<Option<Conn>>,
        path: fn() -> PathBuf,
        service: Service,
    ) -> io::Result<Conn> {
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = slot.as_ref().filter(|c| c.is_connected()) {
            return Ok(c.clone());
        }
        let conn = Conn::connect(&path(), service)?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// The error of every operation once the service has gone away.
    pub fn gone(&self) -> io::Error {
        self.inner.service.gone()
    }

    /// False once the service has gone away.
    pub fn is_connected(&self) -> bool {
        !self.inner.life.is_gone()
    }

    /// Fails with `ConnectionReset` once the service has gone away.
    pub fn check(&self) -> io::Result<()> {
        if self.inner.life.is_dead() {
            Err(self.gone())
        } else {
            Ok(())
        }
    }

    /// Rings `bell` when the service goes away (at once if it has).
    pub fn watch_bell(&self, id: u64, bell: &Arc<Bell>) {
        let mut bells = self
            .inner
            .life
            .bells
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        bells.insert(id, Arc::downgrade(bell));
        if self.inner.life.is_dead() {
            bell.doorbell.ring();
        }
    }

    pub fn unwatch_bell(&self, id: u64) {
        let mut bells = self
            .inner
            .life
            .bells
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        bells.remove(&id);
    }

    /// Runs `job` on the connection thread and waits for its answer.
    pub fn call<T, F, Fut>(&self, timeout: Option<Duration>, job: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Ctx>) -> Fut + Send + 'static,
        Fut: Future<Output = io::Result<T>> + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let boxed: Job = Box::new(move |ctx| {
            Box::pin(async move {
                let fut = job(ctx);
                let result = match timeout {
                    Some(t) => tokio::time::timeout(t, fut).await.unwrap_or_else(|_| {
                        Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
                    }),
                    None => fut.await,
                };
                let _ = tx.send(result);
            })
        });
        self.check()?;
        // The thread ends (dropping the job, or refusing it) only when the
        // service went away.
        self.inner.jobs.send(boxed).map_err(|_| self.gone())?;
        match rx.recv() {
            Ok(Ok(v)) => Ok(v),
            // A call that failed because the service went away, whatever
            // capnp said about it.
            Ok(Err(_)) | Err(_) if self.inner.life.is_dead() => Err(self.gone()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(self.gone()),
        }
    }

    /// Runs `job` on the connection thread without waiting for it (nothing
    /// happens if the service has gone away).
    pub fn spawn<F, Fut>(&self, job: F)
    where
        F: FnOnce(Rc<Ctx>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let job: Job = Box::new(move |ctx| Box::pin(job(ctx)));
        let _ = self.inner.jobs.send(job);
    }

    /// Drops a capability (the server side closes what it named).
    pub fn release(&self, id: u64) {
        self.spawn(move |ctx| {
            ctx.remove(id);
            async {}
        });
    }

    /// The connection's arena, once netsrv sent it.
    pub fn arena(&self) -> Option<Arc<crate::arena::Arena>> {
        self.inner.arena.get().cloned()
    }

    /// Releases socket `id` and keeps its ring set mapped, for netsrv to
    /// hand back to a later socket ([`crate::held`]).
    pub fn release_keeping(&self, id: u64, set: HeldSet) {
        self.spawn(move |ctx| {
            ctx.remove(id);
            ctx.held.borrow_mut().put(set.id, set);
            async {}
        });
    }
}

/// A connection to a capnet service set's network service (netsrv). Cheap
/// to clone; the connection ends when the last clone and every socket made
/// from it are gone.
#[derive(Clone)]
pub struct Net {
    conn: Conn,
}

impl Net {
    /// Connects to the service socket at `path`.
    pub fn connect(path: impl AsRef<Path>) -> io::Result<Net> {
        Ok(Net {
            conn: Conn::connect(path.as_ref(), Service::Net)?,
        })
    }

    /// Connects to the service socket at `path`, for many sockets: every
    /// TCP stream of this connection has its rings in one shared region
    /// with one doorbell each way (an arena), so the process holds a few
    /// descriptors however many streams it has, and a new stream costs no
    /// descriptor exchange. The streams share one wakeup: a thread blocked
    /// on a stream also wakes for the others' news (and goes back to
    /// sleep), and every stream's `as_raw_fd` is the same descriptor. An
    /// event loop waits with [`Net::news`] instead, which says which
    /// streams have news. At most as many streams as the service's
    /// `[limits] sockets` allows (else `limit`).
    pub fn connect_arena(path: impl AsRef<Path>) -> io::Result<Net> {
        Ok(Net {
            conn: Conn::connect_with(path.as_ref(), Service::Net, true)?,
        })
    }

    /// For a connection made with [`Net::connect_arena`]: the streams (by
    /// [`crate::TcpStream::token`]) that have news since the last call,
    /// each once: bytes to read, room to write, or their end. Waits up to
    /// `timeout` (`None`: until there is news) while there is none; an
    /// empty answer is a timeout. A token of a stream already dropped may
    /// come: skip it. `Unsupported` on a connection without an arena.
    pub fn news(&self, timeout: Option<Duration>) -> io::Result<Vec<u64>> {
        self.conn.check()?;
        let Some(arena) = self.conn.arena() else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "capnet: news needs a connection made with Net::connect_arena (and a stream)",
            ));
        };
        arena.news(timeout.map(|t| std::time::Instant::now() + t))
    }

    /// The process-wide connection to `$CAPNET_SOCKET` (or the default run
    /// directory), made on first use, and made again on the next use after
    /// the service went away (a supervisor may have restarted it). Sockets
    /// of the old connection stay dead.
    pub fn default_net() -> io::Result<Net> {
        static DEFAULT: Mutex<Option<Conn>> = Mutex::new(None);
        Ok(Net {
            conn: Conn::shared(&DEFAULT, crate::paths::default_socket_path, Service::Net)?,
        })
    }

    /// False once the service has gone away: every operation on this
    /// connection and its sockets then fails with `ConnectionReset`.
    pub fn is_connected(&self) -> bool {
        self.conn.is_connected()
    }

    pub(crate) fn from_conn(conn: Conn) -> Net {
        Net { conn }
    }

    pub(crate) fn conn(&self) -> &Conn {
        &self.conn
    }

    /// Runs `job` on the connection thread and waits for its answer.
    pub(crate) fn call<T, F, Fut>(&self, timeout: Option<Duration>, job: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Ctx>) -> Fut + Send + 'static,
        Fut: Future<Output = io::Result<T>> + 'static,
    {
        self.conn.call(timeout, job)
    }

    /// Drops a capability (netsrv closes what it named).
    pub(crate) fn release(&self, id: u64) {
        self.conn.release(id)
    }
}

/// Maps a capnp failure inside a job. A broken connection is the service
/// going away.
pub(crate) fn cap_err(e: capnp::Error) -> io::Error {
    if e.kind == capnp::ErrorKind::Disconnected {
        return service_gone();
    }
    capnp_to_io(e)
}
