//! The ring-mode byte stream every stream socket shares: [`TcpStream`]
//! (netsrv) and [`TlsStream`] (tlsd) move their bytes the same way.
//!
//! After connect or accept the socket's `openRings` hands out a grant; the
//! application redeems it on the connection's handoff channel for the shared
//! region (an up ring it writes, a down ring it reads) and two doorbells (one
//! it rings, one it sleeps on). A busy stream costs no syscall per read or
//! write: a side rings the other only when asked to.
//!
//! If the service goes away, sleepers wake at once (the connection rings
//! every stream's doorbell) and every operation from then on fails with
//! `ConnectionReset`, except that bytes already in the down ring are still
//! read first.
//!
//! [`TcpStream`]: crate::TcpStream
//! [`TlsStream`]: crate::TlsStream

use crate::bell::{Bell, Ticket};
use crate::chunks::{ring_err, Down, SwitchEnd};
use crate::conn::{Conn, Ctx};
use crate::held::{HeldSet, Named, TakenUp, HELD_MAX};
use capnet_ring::{ArenaLayout, ByteWriter, IdlePoll, RingError, SocketRings, Waker};
use capnet_schema::common_capnp::ring_grant;
use capnet_schema::errors::SocketError;
use capnet_schema::net_capnp::tcp_socket;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

fn broken_pipe() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "connection closed for writing")
}

/// How long a control call on an established socket may take.
pub(crate) const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// The error the service left in the down ring (a [`SocketError`] code).
pub(crate) fn socket_error(code: u32) -> io::Error {
    match SocketError::from_code(code) {
        Some(e) => io::Error::new(e.io_kind(), format!("connection {e}")),
        None => io::Error::other(format!("connection failed (code {code})")),
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now() + t)
}

fn check_timeout(t: Option<Duration>) -> io::Result<()> {
    if t == Some(Duration::ZERO) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "zero timeout"));
    }
    Ok(())
}

/// A socket's `openRings` answer: the token to redeem and each ring's
/// capacity, and for netsrv's sockets which set it is.
pub(crate) struct Grant {
    token: Vec<u8>,
    ring_bytes: u32,
    set: Option<SetAnswer>,
}

/// netsrv's word on the set (`RingSet`).
struct SetAnswer {
    id: u64,
    /// One the request named as held: there is no token.
    reused: bool,
    gone: Vec<u64>,
    /// A slot of the connection's arena: (slot, the arena's slots).
    arena: Option<(u32, u32)>,
}

impl Grant {
    pub fn read(g: ring_grant::Reader<'_>) -> capnp::Result<Grant> {
        Ok(Grant {
            token: g.get_token()?.to_vec(),
            ring_bytes: g.get_ring_bytes(),
            set: None,
        })
    }

    /// A `TcpSocket.openRings` answer.
    pub fn read_tcp(r: tcp_socket::open_rings_results::Reader<'_>) -> capnp::Result<Grant> {
        let set = r.get_set()?;
        Ok(Grant {
            set: Some(SetAnswer {
                id: set.get_id(),
                reused: set.get_reused(),
                // No request names more than the connection keeps.
                gone: set.get_gone()?.iter().take(HELD_MAX).collect(),
                arena: set
                    .get_in_arena()
                    .then(|| (set.get_arena_slot(), set.get_arena_slots())),
            }),
            ..Grant::read(r.get_grant()?)?
        })
    }
}

/// A socket's rings: descriptors the handoff gave (with each ring's
/// capacity), or a set this connection kept mapped. Mapped by
/// [`RingStream::open`].
pub(crate) enum Rings {
    Granted {
        fds: Vec<OwnedFd>,
        ring_bytes: u32,
        /// netsrv's number for the set, to keep it once released.
        set: Option<u64>,
    },
    Held(HeldSet),
    /// A slot of the connection's arena, taken up.
    Arena(TakenUp),
}

/// Names the ring sets this connection keeps in a socket's `openRings`
/// request (netsrv's sockets only; see [`crate::held`]).
pub(crate) fn name_held(ctx: &Ctx, mut req: tcp_socket::open_rings_params::Builder<'_>) -> Named {
    if ctx.arena.wanted {
        req.set_arena(true);
        req.set_arena_mapped(ctx.arena.get().is_some());
    }
    let named = Named::new(&ctx.held);
    let mut list = req.reborrow().init_held(named.ids().len() as u32);
    for (i, id) in named.ids().iter().enumerate() {
        list.set(i as u32, *id);
    }
    named
}

/// Awaits a socket's pipelined `openRings` answer and redeems its grant,
/// within [`CONTROL_TIMEOUT`]; or takes the set it names back from the
/// sets `named` in the request. On failure the socket `id`, just put in
/// the connection's table, is taken out again (the service closes it).
pub(crate) async fn granted(
    ctx: &Ctx,
    id: u64,
    named: Option<Named>,
    answer: impl Future<Output = capnp::Result<Grant>>,
    err: fn(capnp::Error) -> io::Error,
) -> io::Result<Rings> {
    let redeemed = async {
        let grant = answer.await.map_err(err)?;
        let Some(set) = grant.set else {
            let fds = ctx.redeem(&grant.token, 3).await?;
            return Ok(Rings::Granted {
                fds,
                ring_bytes: grant.ring_bytes,
                set: None,
            });
        };
        if let Some((slot, slots)) = set.arena {
            return arena_slot(ctx, id, &grant.token, grant.ring_bytes, slot, slots).await;
        }
        let back = named.and_then(|n| n.settle(set.reused.then_some(set.id), &set.gone));
        match (set.reused, back) {
            (true, Some(held)) => Ok(Rings::Held(held)),
            (true, None) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "openRings: the service answered with a ring set this client does not hold",
            )),
            (false, _) => Ok(Rings::Granted {
                fds: ctx.redeem(&grant.token, 3).await?,
                ring_bytes: grant.ring_bytes,
                set: Some(set.id),
            }),
        }
    };
    let rings = match tokio::time::timeout(CONTROL_TIMEOUT, redeemed).await {
        Ok(rings) => rings,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "openRings timed out",
        )),
    };
    if rings.is_err() {
        ctx.remove(id);
    }
    rings
}

/// Slot `slot` of the connection's arena of `slots` slots, for socket
/// `id`: the arena mapped from the grant's descriptors the first time.
async fn arena_slot(
    ctx: &Ctx,
    id: u64,
    token: &[u8],
    ring_bytes: u32,
    slot: u32,
    slots: u32,
) -> io::Result<Rings> {
    let invalid =
        |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("openRings: {what}"));
    let layout = ArenaLayout::new(slots, ring_bytes).map_err(|e| invalid(&e.to_string()))?;
    let arena = match token.is_empty() {
        false => {
            let fds = ctx.redeem(token, 3).await?;
            ctx.arena.attach(fds, layout)?.clone()
        }
        true => ctx
            .arena
            .get()
            .cloned()
            .ok_or_else(|| invalid("a slot of an arena this client has not mapped"))?,
    };
    if arena.layout() != layout {
        return Err(invalid("the arena's layout changed"));
    }
    Ok(Rings::Arena(arena.take_up(slot, id)?))
}

/// What reads do after a shutdown of the receiving side (a `ReadShut` as
/// `u8`, in an atomic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ReadShut {
    /// Not shut: reads wait for data.
    Open = 0,
    /// Reads never wait: they answer what is queued, else 0 (Linux's TCP
    /// `SHUT_RD`, where bytes that come later are still read).
    NoWait = 1,
    /// Reads answer end of stream (a TLS stream: there is no way to tell
    /// the peer, and no byte after it is wanted).
    Eof = 2,
}

impl ReadShut {
    fn from_u8(v: u8) -> ReadShut {
        match v {
            1 => ReadShut::NoWait,
            2 => ReadShut::Eof,
            _ => ReadShut::Open,
        }
    }
}

/// The up ring and how much went into it.
struct Up {
    ring: ByteWriter,
    /// Bytes written into the ring so far: the stream offset of the next.
    written: u64,
}

/// The data path of one stream socket, named `id` in `conn`'s table.
/// Dropping it closes the up ring (bytes written still go out, then the
/// end of stream), closes the down ring and releases the socket.
///
/// The down ring carries plain bytes, or from some position on marked
/// chunks (TLS RX offload; see [`crate::chunks`]).
pub(crate) struct RingStream {
    conn: Conn,
    id: u64,
    up: Mutex<Up>,
    down: Mutex<Down>,
    /// How long a blocking read polls the down ring before it sleeps
    /// (`capnet_ring::idle`): a reply due from netsrv is taken without a
    /// wakeup while a core is free.
    read_idle: Mutex<IdlePoll>,
    bell: Arc<Bell>,
    wake_peer: Arc<Waker>,
    /// The set behind the rings, kept mapped once the stream is done with
    /// it (netsrv's sockets).
    held: Mutex<Option<HeldSet>>,
    /// The bell's descriptor went to the application (`raw_fd`).
    fd_shown: AtomicBool,
    /// The bell is the arena's, shared with the connection's other streams.
    shared_bell: bool,
    read_timeout: Mutex<Option<Duration>>,
    write_timeout: Mutex<Option<Duration>>,
    nonblocking: AtomicBool,
    /// A [`ReadShut`]: what `shutdown_read` asked of reads.
    read_shut: AtomicU8,
    /// An [`ErrorReport`]: how often the error the service left in the
    /// down ring is reported.
    errors: AtomicU8,
}

/// How often a stream reports the error that ended it (an `ErrorReport`
/// as `u8`, in an atomic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ErrorReport {
    /// To every read and write (a TLS stream: an error must never look like
    /// the end of the stream, which would hide a truncation).
    Always = 0,
    /// Once, to the first read or write; later reads answer end of stream
    /// and later writes `BrokenPipe` (a TCP stream, as Linux reports a
    /// socket error once: `sock_error`).
    Once = 1,
    /// `Once`, and it was reported.
    Reported = 2,
}

impl RingStream {
    /// Takes the socket `id` (already in the connection's table) to ring
    /// mode with `rings`, from its `openRings` (pipelined on the call that
    /// brought the socket: one trip to the connection thread and one message
    /// exchange). On failure the socket is released.
    pub fn open(conn: Conn, id: u64, rings: Rings) -> io::Result<RingStream> {
        let shared_bell = matches!(rings, Rings::Arena(_));
        match Self::attach(rings) {
            Ok((end, held)) => Ok(Self::from_end(conn, id, end, held, shared_bell)),
            Err(e) => {
                // Nobody will hold this socket: let the service close it.
                conn.release(id);
                Err(e)
            }
        }
    }

    /// The rings, and the set to keep once the stream is done with it.
    fn attach(rings: Rings) -> io::Result<(TakenUp, Option<HeldSet>)> {
        match rings {
            Rings::Granted {
                fds,
                ring_bytes,
                set,
            } => HeldSet::granted(set, SocketRings::attach(fds, ring_bytes).map_err(ring_err)?),
            Rings::Held(mut held) => Ok((held.take_up()?, Some(held))),
            Rings::Arena(taken) => Ok((taken, None)),
        }
    }

    fn from_end(
        conn: Conn,
        id: u64,
        end: TakenUp,
        held: Option<HeldSet>,
        shared_bell: bool,
    ) -> RingStream {
        conn.watch_bell(id, &end.bell);
        RingStream {
            conn,
            id,
            up: Mutex::new(Up {
                ring: end.up,
                written: 0,
            }),
            down: Mutex::new(Down::new(end.down)),
            read_idle: Mutex::new(IdlePoll::configured()),
            bell: end.bell,
            wake_peer: end.wake_peer,
            held: Mutex::new(held),
            fd_shown: AtomicBool::new(false),
            shared_bell,
            read_timeout: Mutex::new(None),
            write_timeout: Mutex::new(None),
            nonblocking: AtomicBool::new(false),
            read_shut: AtomicU8::new(ReadShut::Open as u8),
            errors: AtomicU8::new(ErrorReport::Always as u8),
        }
    }

    pub fn conn(&self) -> &Conn {
        &self.conn
    }

    /// The socket's number in the connection's table.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        check_timeout(t)?;
        *lock(&self.read_timeout) = t;
        Ok(())
    }

    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        check_timeout(t)?;
        *lock(&self.write_timeout) = t;
        Ok(())
    }

    pub fn read_timeout(&self) -> Option<Duration> {
        *lock(&self.read_timeout)
    }

    pub fn write_timeout(&self) -> Option<Duration> {
        *lock(&self.write_timeout)
    }

    pub fn set_nonblocking(&self, on: bool) {
        self.nonblocking.store(on, Ordering::Relaxed);
    }

    /// Ends the up direction after the bytes written so far.
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.conn.check()?;
        lock(&self.up).ring.close();
        self.wake_peer.ring();
        Ok(())
    }

    /// Shuts the receiving side for this process's reads (the service is
    /// not told here): `how` says what reads answer from now on.
    pub fn shutdown_read(&self, how: ReadShut) {
        self.read_shut.store(how as u8, Ordering::Relaxed);
    }

    fn read_shut(&self) -> ReadShut {
        ReadShut::from_u8(self.read_shut.load(Ordering::Relaxed))
    }

    /// The service closed the up ring's reading end: the connection can
    /// send no more (it was reset, or both directions ended).
    pub fn writes_refused(&self) -> bool {
        lock(&self.up).ring.reader_closed()
    }

    /// From now on the error that ends the stream is reported as `how`
    /// says (the default is `Always`).
    pub fn report_errors(&self, how: ErrorReport) {
        self.errors.store(how as u8, Ordering::Relaxed);
    }

    /// The error the service left in the down ring, if it is still to be
    /// reported (see [`ErrorReport`]).
    fn take_error(&self, code: u32) -> Option<io::Error> {
        let once = ErrorReport::Once as u8;
        let reported = ErrorReport::Reported as u8;
        let report = match self.errors.load(Ordering::Relaxed) {
            v if v == once => self
                .errors
                .compare_exchange(once, reported, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok(),
            v => v != reported,
        };
        report.then(|| socket_error(code))
    }

    pub fn flush(&self) -> io::Result<()> {
        self.conn.check()
    }

    /// The fd that turns readable when the service answers a wakeup
    /// request, or the stream is woken from this process (service gone).
    pub fn raw_fd(&self) -> RawFd {
        self.fd_shown.store(true, Ordering::Relaxed);
        self.bell.doorbell.as_raw_fd()
    }

    /// In non-blocking mode, right before asking for a signal: takes the
    /// rings already pending. An event loop sleeps on the fd until it turns
    /// readable, and a doorbell nobody drains stops turning readable (only a
    /// few rings fit; see `capnet_ring::Doorbell`). Taken before the request
    /// and its re-check, no ring that answers the request is lost. An
    /// arena's bell is drained only by its sleepers ([`crate::Net::news`]):
    /// a ring taken here could be another stream's news.
    fn clear_before_arming(&self) {
        if self.nonblocking.load(Ordering::Relaxed) && !self.shared_bell {
            self.bell.doorbell.drain();
        }
    }

    fn wait(&self, ticket: Ticket, deadline: Option<Instant>) -> io::Result<()> {
        if self.nonblocking.load(Ordering::Relaxed) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if self.bell.wait(ticket, deadline)? {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
        }
    }

    /// Reads plain bytes; in marked-chunk mode the data of the chunks
    /// without their flags.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_marked(buf).map(|(n, _)| n)
    }

    /// Reads bytes of one kind: plain ones (`false`), never past the start
    /// of marked chunks, or the data of at most one chunk with its
    /// decrypted flag.
    pub fn read_marked(&self, buf: &mut [u8]) -> io::Result<(usize, bool)> {
        let shut = self.read_shut();
        if buf.is_empty() || shut == ReadShut::Eof {
            return Ok((0, false));
        }
        let deadline = deadline(self.read_timeout());
        loop {
            let ticket = self.bell.ticket();
            {
                let mut down = lock(&self.down);
                let before = down.consumed();
                let got = down.read_some(buf);
                // Headers count: whatever left the ring made space.
                if down.consumed() != before && down.ring.signal_wanted() {
                    self.wake_peer.ring();
                }
                if let Some(got) = got? {
                    return Ok(got);
                }
                // What the service delivered before it went away was read
                // above.
                self.conn.check()?;
                if down.switching() {
                    // `end_switch` rings the bell.
                    drop(down);
                    self.wait(ticket, deadline)?;
                    continue;
                }
                if let Some(code) = down.ring.error() {
                    // Reported (once, for TCP; then the end of the stream).
                    return match self.take_error(code) {
                        Some(e) => Err(e),
                        None => Ok((0, false)),
                    };
                }
                if down.ring.eof() {
                    if down.mid_chunk() {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "capnet: the stream ended inside a marked receive chunk",
                        ));
                    }
                    return Ok((0, false));
                }
                if shut == ReadShut::NoWait {
                    return Ok((0, false));
                }
                if !self.nonblocking.load(Ordering::Relaxed) {
                    let ring = &down.ring;
                    let came = lock(&self.read_idle).poll(|| {
                        ring.available().is_ok_and(|n| n > 0)
                            || ring.eof()
                            || ring.error().is_some()
                    });
                    if came {
                        continue;
                    }
                }
                self.clear_before_arming();
                down.ring.request_signal();
                if down.ring.available().map_err(ring_err)? > 0
                    || down.ring.eof()
                    || down.ring.error().is_some()
                {
                    down.ring.cancel_signal();
                    continue;
                }
            }
            let slept = Instant::now();
            self.wait(ticket, deadline)?;
            lock(&self.read_idle).slept(slept.elapsed());
        }
    }

    /// The receive-ring position of the next byte to read (bytes taken out
    /// of the down ring so far, chunk headers included).
    pub fn ring_read_offset(&self) -> u64 {
        lock(&self.down).consumed()
    }

    /// Stream bytes read so far (chunk headers not counted).
    pub fn read_offset(&self) -> u64 {
        lock(&self.down).data_read()
    }

    /// Where marked chunks begin in the down ring, once they do.
    pub fn chunks_from(&self) -> Option<u64> {
        lock(&self.down).chunks_from()
    }

    /// Reads wait from now on until [`Self::end_rx_switch`]: an RX offload
    /// call is telling netsrv to switch the down ring to marked chunks, at
    /// a position not known yet.
    pub fn begin_rx_switch(&self) {
        lock(&self.down).begin_switch();
    }

    /// Ends the wait of [`Self::begin_rx_switch`] and wakes readers.
    pub fn end_rx_switch(&self, end: SwitchEnd) -> io::Result<()> {
        let result = lock(&self.down).end_switch(end);
        self.bell.doorbell.ring();
        result
    }

    /// The stream offset of the next byte written (bytes written so far).
    pub fn write_offset(&self) -> u64 {
        lock(&self.up).written
    }

    pub fn write(&self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let deadline = deadline(self.write_timeout());
        loop {
            let ticket = self.bell.ticket();
            // Checked after the ticket: the doorbell rung when the service
            // goes away then ends the wait below.
            self.conn.check()?;
            {
                let mut up = lock(&self.up);
                if up.ring.reader_closed() {
                    // How the connection ended (once, for TCP; then EPIPE).
                    let error = lock(&self.down).ring.error();
                    return Err(error
                        .and_then(|code| self.take_error(code))
                        .unwrap_or_else(broken_pipe));
                }
                let n = up.ring.write(data).map_err(|e| match e {
                    // shutdown(Write) closed the ring: EPIPE, as Linux.
                    RingError::Closed => broken_pipe(),
                    e => ring_err(e),
                })?;
                if n > 0 {
                    up.written += n as u64;
                    if up.ring.signal_wanted() {
                        self.wake_peer.ring();
                    }
                    return Ok(n);
                }
                self.clear_before_arming();
                up.ring.request_signal();
                if up.ring.space().map_err(ring_err)? > 0 || up.ring.reader_closed() {
                    up.ring.cancel_signal();
                    continue;
                }
            }
            self.wait(ticket, deadline)?;
        }
    }
}

impl Drop for RingStream {
    fn drop(&mut self) {
        // Bytes already written still go out, then the end of stream;
        // unless bytes came that were never read, which makes the close a
        // reset. The down ring closes first, so that a service that sees
        // the up ring's end already sees that too.
        lock(&self.down).ring.close();
        lock(&self.up).ring.close();
        self.wake_peer.ring();
        self.conn.unwatch_bell(self.id);
        match lock(&self.held).take() {
            Some(mut set) => {
                if !self.fd_shown.load(Ordering::Relaxed) {
                    set.keep_bell(self.bell.clone());
                }
                self.conn.release_keeping(self.id, set)
            }
            None => self.conn.release(self.id),
        }
    }
}

/// The std-like surface of a stream socket whose field `$ring` is a
/// [`RingStream`]: `Read` and `Write` (also through `&`), `AsRawFd`, and
/// the timeout and non-blocking settings.
macro_rules! ring_stream_api {
    ($stream:ident, $ring:ident) => {
        impl $stream {
            /// `None` (the default) waits as long as it takes; a zero
            /// duration is `InvalidInput`.
            pub fn set_read_timeout(&self, t: Option<std::time::Duration>) -> std::io::Result<()> {
                self.$ring.set_read_timeout(t)
            }

            /// `None` (the default) waits as long as it takes; a zero
            /// duration is `InvalidInput`.
            pub fn set_write_timeout(&self, t: Option<std::time::Duration>) -> std::io::Result<()> {
                self.$ring.set_write_timeout(t)
            }

            pub fn read_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
                Ok(self.$ring.read_timeout())
            }

            pub fn write_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
                Ok(self.$ring.write_timeout())
            }

            /// In non-blocking mode, `WouldBlock` means a wakeup was
            /// requested: the fd from `as_raw_fd` turns readable when the
            /// socket may have changed.
            pub fn set_nonblocking(&self, on: bool) -> std::io::Result<()> {
                self.$ring.set_nonblocking(on);
                Ok(())
            }
        }

        impl std::io::Read for $stream {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.$ring.read(buf)
            }
        }

        impl std::io::Read for &$stream {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.$ring.read(buf)
            }
        }

        impl std::io::Write for $stream {
            fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
                self.$ring.write(data)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                self.$ring.flush()
            }
        }

        impl std::io::Write for &$stream {
            fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
                self.$ring.write(data)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                self.$ring.flush()
            }
        }

        impl std::os::fd::AsRawFd for $stream {
            /// The fd that turns readable when the service answers a
            /// wakeup request, or the service went away.
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                self.$ring.raw_fd()
            }
        }
    };
}
pub(crate) use ring_stream_api;
