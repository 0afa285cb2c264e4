//! One connection to a service set: a capnp `Net` served on a background
//! thread, and the handoff side channel for shared-memory grants.
//!
//! capnp clients are single-threaded (`Rc`), so they live on the connection's
//! thread in a table; the blocking socket API sends that thread jobs and waits
//! for the answer.

use capnet_ring::handoff::{self, Token, CONNECT_HANDOFF, CONNECT_RPC};
use capnet_schema::errors::capnp_to_io;
use capnet_schema::net_capnp::{net, tcp_listener, tcp_socket, udp_socket};
use capnet_schema::transport;
use futures::future::LocalBoxFuture;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// A capability held on the connection thread, named by a local number.
pub(crate) enum Object {
    Tcp(tcp_socket::Client),
    Listener(tcp_listener::Client),
    Udp(udp_socket::Client),
}

/// What jobs see on the connection thread.
pub(crate) struct Ctx {
    pub net: net::Client,
    objects: RefCell<HashMap<u64, Object>>,
    next: RefCell<u64>,
}

impl Ctx {
    pub fn insert(&self, o: Object) -> u64 {
        let mut next = self.next.borrow_mut();
        *next += 1;
        self.objects.borrow_mut().insert(*next, o);
        *next
    }

    pub fn tcp(&self, id: u64) -> io::Result<tcp_socket::Client> {
        match self.objects.borrow().get(&id) {
            Some(Object::Tcp(c)) => Ok(c.clone()),
            _ => Err(closed()),
        }
    }

    pub fn listener(&self, id: u64) -> io::Result<tcp_listener::Client> {
        match self.objects.borrow().get(&id) {
            Some(Object::Listener(c)) => Ok(c.clone()),
            _ => Err(closed()),
        }
    }

    pub fn udp(&self, id: u64) -> io::Result<udp_socket::Client> {
        match self.objects.borrow().get(&id) {
            Some(Object::Udp(c)) => Ok(c.clone()),
            _ => Err(closed()),
        }
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "socket is closed")
}

type Job = Box<dyn FnOnce(Rc<Ctx>) -> LocalBoxFuture<'static, ()> + Send>;

struct Inner {
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
    handoff: Mutex<UnixStream>,
}

/// A connection to a capnet service set. Cheap to clone; the connection ends
/// when the last clone and every socket made from it are gone.
#[derive(Clone)]
pub struct Net {
    inner: Arc<Inner>,
}

impl Net {
    /// Connects to the service socket at `path`.
    pub fn connect(path: impl AsRef<Path>) -> io::Result<Net> {
        let path = path.as_ref();
        let annotate = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("capnet service at {}: {e}", path.display()),
            )
        };
        let mut rpc = UnixStream::connect(path).map_err(annotate)?;
        rpc.write_all(&[CONNECT_RPC])?;
        let mut handoff = UnixStream::connect(path).map_err(annotate)?;
        handoff.write_all(&[CONNECT_HANDOFF])?;
        rpc.set_nonblocking(true)?;
        let (jobs, mut queue) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("capnet-rpc".into())
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
                    let stream = match tokio::net::UnixStream::from_std(rpc) {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let net: net::Client = transport::connect(stream);
                    let ctx = Rc::new(Ctx {
                        net,
                        objects: RefCell::new(HashMap::new()),
                        next: RefCell::new(0),
                    });
                    let _ = ready_tx.send(Ok(()));
                    while let Some(job) = queue.recv().await {
                        tokio::task::spawn_local(job(ctx.clone()));
                    }
                });
            })?;
        ready_rx
            .recv()
            .map_err(|_| io::Error::other("capnet connection thread died"))??;
        Ok(Net {
            inner: Arc::new(Inner {
                jobs,
                handoff: Mutex::new(handoff),
            }),
        })
    }

    /// The process-wide connection to `$CAPNET_SOCKET` (or the default run
    /// directory), made on first use.
    pub fn default_net() -> io::Result<Net> {
        static DEFAULT: OnceLock<Net> = OnceLock::new();
        if let Some(n) = DEFAULT.get() {
            return Ok(n.clone());
        }
        let net = Net::connect(crate::paths::default_socket_path())?;
        Ok(DEFAULT.get_or_init(|| net).clone())
    }

    /// Runs `job` on the connection thread and waits for its answer.
    pub(crate) fn call<T, F, Fut>(&self, timeout: Option<Duration>, job: F) -> io::Result<T>
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
        self.inner.jobs.send(boxed).map_err(|_| {
            io::Error::new(io::ErrorKind::NotConnected, "capnet connection is gone")
        })?;
        rx.recv()
            .map_err(|_| io::Error::new(io::ErrorKind::NotConnected, "capnet connection is gone"))?
    }

    /// Drops a capability (the server side closes what it named).
    pub(crate) fn release(&self, id: u64) {
        let job: Job = Box::new(move |ctx| {
            ctx.objects.borrow_mut().remove(&id);
            Box::pin(async {})
        });
        let _ = self.inner.jobs.send(job);
    }

    /// Redeems a shared-memory grant on the handoff channel.
    pub(crate) fn redeem(&self, token: &[u8], fds: usize) -> io::Result<Vec<OwnedFd>> {
        let token = Token::from_slice(token).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "grant token is not 16 bytes")
        })?;
        let stream = self.inner.handoff.lock().unwrap_or_else(|e| e.into_inner());
        handoff::redeem(stream.as_fd(), &token, fds)
    }
}

/// Maps a capnp failure inside a job.
pub(crate) fn cap_err(e: capnp::Error) -> io::Error {
    capnp_to_io(e)
}
