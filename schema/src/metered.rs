//! What one capnp connection may cost the process that reads it.
//!
//! A capnp stream message starts with a segment table that announces its
//! size, and the capnp reader allocates (and zeroes) that much before the
//! body arrives: nine bytes could make a service commit the whole message
//! limit. [`Framed`] reads a message's bytes as they come, into a buffer
//! that grows only with what arrived, and hands the capnp reader a message
//! only once it is complete; a message larger than the connection's limit
//! ends the connection.
//!
//! A message read stays in memory while the RPC system uses it: a call's
//! parameters live until the call returns, and calls pipelined on a promise
//! wait in a queue. [`MeteredNetwork`] counts the bytes and messages that a
//! connection holds this way and stops reading it while they are over its
//! limits (the peer's own calls then wait; nobody else's do). Services
//! answer the excess with a `limit` error before it gets that far
//! (netsrv's calls in flight); this is the bound that holds regardless.
//!
//! A sent `offload` call has its traffic key and IV (or salt) wiped once it is
//! written ([`Wipes`]): capnp-rpc frees a sent message's buffers as they
//! are, and the caller never sees them again.

use crate::coalesce::Drain;
use capnp::capability::Promise;
use capnp::message::{Builder, HeapAllocator};
use capnp::traits::HasTypeId;
use capnp_rpc::rpc_twoparty_capnp::Side;
use futures::future::LocalBoxFuture;
use futures::stream::FuturesUnordered;
use futures::{AsyncRead, FutureExt, StreamExt, TryFutureExt};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// What one connection may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// The largest message, in bytes.
    pub message_bytes: usize,
    /// Reading pauses while the connection holds this many bytes of
    /// messages (calls in flight, queued calls)...
    pub held_bytes: usize,
    /// ... or this many messages.
    pub held_messages: usize,
}

impl ConnectionLimits {
    /// A service reading a client's requests. The largest legitimate
    /// request carries 1 MiB of socket data (`TcpSocket.write`,
    /// `UdpSocket.sendTo`) or one socket's unacknowledged send buffer
    /// (`offloadStop`'s replacement, at most 2 MiB); 4 MiB leaves room.
    pub const SERVICE: ConnectionLimits = ConnectionLimits {
        message_bytes: 4 << 20,
        held_bytes: 8 << 20,
        held_messages: 1024,
    };

    /// A client reading a service's answers (and the calls it makes back):
    /// a status with tens of thousands of sockets is legitimate. A client
    /// holds little of what it read, so reading pauses only far beyond
    /// that; the bound still holds against a hostile service or driver
    /// (netsrv is the client of each nicdrv).
    pub const CLIENT: ConnectionLimits = ConnectionLimits {
        message_bytes: 32 << 20,
        held_bytes: 64 << 20,
        held_messages: 4096,
    };

    pub fn reader_options(&self) -> capnp::message::ReaderOptions {
        let mut options = capnp::message::ReaderOptions::new();
        options.traversal_limit_in_words(Some(self.message_bytes / 8));
        options
    }
}

/// What a service's connections did at their limits, for `status`.
#[derive(Debug, Default)]
pub struct TransportCounters {
    /// Connections refused: their user held too many.
    pub connections_refused: Cell<u64>,
    /// Failed accepts (EMFILE, ENFILE, ...) the service survived.
    pub accept_errors: Cell<u64>,
    /// Times a connection's reading paused: it held too much.
    pub stalls: Cell<u64>,
    /// Connections ended for a message over the size limit.
    pub oversize: Cell<u64>,
}

impl TransportCounters {
    pub fn bump(cell: &Cell<u64>) {
        cell.set(cell.get() + 1);
    }
}

/// Bytes and messages one connection holds now.
struct Ledger {
    limits: ConnectionLimits,
    bytes: Cell<usize>,
    messages: Cell<usize>,
    /// Sizes of messages framed and not yet taken by the RPC system.
    framed: RefCell<VecDeque<usize>>,
    /// The reader waiting for the connection to hold less.
    waiting: RefCell<Option<Waker>>,
    counters: Option<Rc<TransportCounters>>,
}

impl Ledger {
    fn over(&self) -> bool {
        self.bytes.get() >= self.limits.held_bytes
            || self.messages.get() >= self.limits.held_messages
    }

    fn release(&self, size: usize) {
        self.bytes.set(self.bytes.get().saturating_sub(size));
        self.messages.set(self.messages.get().saturating_sub(1));
        if !self.over() {
            if let Some(w) = self.waiting.borrow_mut().take() {
                w.wake();
            }
        }
    }
}

enum FrameState {
    /// Collecting a message at the start of `buf`; its size is known once
    /// the table is in.
    Filling,
    /// Handing the complete message `buf[..end]` to the capnp reader from
    /// `pos`; what follows it is the start of the next.
    Delivering { pos: usize, end: usize },
}

/// Reads whole messages from `inner` with memory that grows only with the
/// bytes that arrived (see the module documentation).
pub struct Framed<R> {
    inner: R,
    ledger: Rc<Ledger>,
    buf: Vec<u8>,
    state: FrameState,
    stalled: bool,
}

/// Most bytes read from the peer at a time while a message fills.
const READ_CHUNK: usize = 16 * 1024;
/// Least bytes asked for: a read takes what else is waiting (the next
/// messages of a burst) rather than one message's exact size.
const READ_AHEAD: usize = 4 * 1024;

impl<R> Framed<R> {
    /// How many bytes `buf` needs now: the first word, then the segment
    /// table, then (once the table says) the whole message.
    fn needed(&self) -> io::Result<usize> {
        let buf = &self.buf;
        if buf.len() < 8 {
            return Ok(8);
        }
        let word = |i: usize| u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let segments = word(0) as usize + 1;
        if segments > 512 {
            return Err(invalid(format!("a message of {segments} segments")));
        }
        let table = (4 + 4 * segments).next_multiple_of(8);
        if buf.len() < table {
            return Ok(table);
        }
        let words: usize = (0..segments).map(|s| word(4 + 4 * s) as usize).sum();
        let limit = self.ledger.limits.message_bytes;
        match words.checked_mul(8).and_then(|b| b.checked_add(table)) {
            Some(total) if total <= limit => Ok(total),
            _ => {
                if let Some(c) = &self.ledger.counters {
                    TransportCounters::bump(&c.oversize);
                }
                Err(invalid(format!(
                    "a message of {words} words is over the limit of {limit} bytes"
                )))
            }
        }
    }
}

fn invalid(text: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, text)
}

impl<R: AsyncRead + Unpin> AsyncRead for Framed<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        loop {
            if let FrameState::Delivering { pos, end } = &mut this.state {
                let n = out.len().min(*end - *pos);
                out[..n].copy_from_slice(&this.buf[*pos..*pos + n]);
                *pos += n;
                if *pos == *end {
                    this.buf.drain(..*end);
                    // Keep a small buffer for the next message, not a big one.
                    if this.buf.capacity() > 2 * READ_CHUNK {
                        this.buf.shrink_to(READ_CHUNK);
                    }
                    this.state = FrameState::Filling;
                }
                return Poll::Ready(Ok(n));
            }
            // Collecting: nothing more is framed or read while the
            // connection holds too much (bytes already read wait in `buf`).
            if this.ledger.over() {
                *this.ledger.waiting.borrow_mut() = Some(cx.waker().clone());
                if !this.stalled {
                    this.stalled = true;
                    if let Some(c) = &this.ledger.counters {
                        TransportCounters::bump(&c.stalls);
                    }
                }
                return Poll::Pending;
            }
            this.stalled = false;
            let want = this.needed()?;
            if this.buf.len() >= want {
                this.ledger.framed.borrow_mut().push_back(want);
                this.ledger.bytes.set(this.ledger.bytes.get() + want);
                this.ledger.messages.set(this.ledger.messages.get() + 1);
                this.state = FrameState::Delivering { pos: 0, end: want };
                continue;
            }
            // Through a scratch buffer: `buf` grows only by what arrived.
            let mut scratch = [0u8; READ_CHUNK];
            let chunk = (want - this.buf.len()).clamp(READ_AHEAD, READ_CHUNK);
            match Pin::new(&mut this.inner).poll_read(cx, &mut scratch[..chunk]) {
                Poll::Ready(Ok(0)) if this.buf.is_empty() => return Poll::Ready(Ok(0)),
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                }
                Poll::Ready(Ok(n)) => this.buf.extend_from_slice(&scratch[..n]),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// A message the RPC system holds; the connection's ledger counts it until
/// it is dropped.
struct Held {
    inner: Box<dyn capnp_rpc::IncomingMessage>,
    ledger: Rc<Ledger>,
    size: usize,
}

impl capnp_rpc::IncomingMessage for Held {
    fn get_body(&self) -> capnp::Result<capnp::any_pointer::Reader<'_>> {
        self.inner.get_body()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.ledger.release(self.size);
    }
}

/// Sent messages waiting to be written, then wiped. A caller never sees a
/// request again after `send` (capnp-rpc hands it to its write queue,
/// which frees it once written), so the wipe happens here, in the one
/// place that may still hold it: the connection.
#[derive(Default)]
struct Wipes {
    pending: RefCell<FuturesUnordered<LocalBoxFuture<'static, ()>>>,
    /// The connection's driver, woken when a message is added.
    driver: RefCell<Option<Waker>>,
    /// Messages wiped so far.
    wiped: Cell<u64>,
}

impl Wipes {
    fn add(
        self: &Rc<Self>,
        written: impl std::future::Future<Output = ()> + 'static,
        m: Rc<Builder<HeapAllocator>>,
    ) {
        let wipes = Rc::downgrade(self);
        self.pending.borrow_mut().push(Box::pin(async move {
            written.await;
            // Written (or never to be): the write queue has let go, and so
            // has the RPC system, which drops its copy of a call at `send`.
            if let Ok(mut m) = Rc::try_unwrap(m) {
                let _ = wipe(&mut m);
                if let Some(w) = wipes.upgrade() {
                    w.wiped.set(w.wiped.get() + 1);
                }
            }
        }));
        if let Some(w) = self.driver.borrow_mut().take() {
            w.wake();
        }
    }

    /// Wipes what was written since the last poll.
    fn poll(&self, cx: &mut Context<'_>) {
        *self.driver.borrow_mut() = Some(cx.waker().clone());
        let mut pending = self.pending.borrow_mut();
        while let Poll::Ready(Some(())) = pending.poll_next_unpin(cx) {}
    }
}

/// The calls that carry a traffic key (an `OffloadRequest`): a holder's
/// `TcpSocket.offload` to netsrv, and `Nic.offload`.
const KEY_CALLS: [(u64, u16); 2] = [
    (
        <crate::net_capnp::tcp_socket::Client as HasTypeId>::TYPE_ID,
        8,
    ),
    (<crate::nic_capnp::nic::Client as HasTypeId>::TYPE_ID, 6),
];

/// Whether `m` is a call that carries a key.
fn carries_key(m: &dyn capnp_rpc::OutgoingMessage) -> bool {
    use capnp_rpc::rpc_capnp::message;
    let call = m
        .get_body_as_reader()
        .and_then(|b| b.get_as::<message::Reader<'_>>())
        .and_then(|m| Ok(m.which()?));
    match call {
        Ok(message::Which::Call(Ok(c))) => {
            KEY_CALLS.contains(&(c.get_interface_id(), c.get_method_id()))
        }
        _ => false,
    }
}

/// Zeroes the key and IV of a call [`carries_key`] names. Walked through
/// its schema: capnp's generic `clear` stops at capability pointers, which
/// these calls hold (their `events`).
fn wipe(m: &mut Builder<HeapAllocator>) -> capnp::Result<()> {
    use capnp_rpc::rpc_capnp::message;
    use zeroize::Zeroize;
    let message::Which::Call(call) = m.get_root::<message::Builder<'_>>()?.which()? else {
        return Ok(());
    };
    let mut call = call?;
    let id = (
        call.reborrow().get_interface_id(),
        call.reborrow().get_method_id(),
    );
    let content = call.get_params()?.get_content();
    let request = if id == KEY_CALLS[0] {
        content
            .get_as::<crate::net_capnp::tcp_socket::offload_params::Builder<'_>>()?
            .get_request()?
    } else if id == KEY_CALLS[1] {
        content
            .get_as::<crate::nic_capnp::nic::offload_params::Builder<'_>>()?
            .get_request()?
    } else {
        return Ok(());
    };
    use crate::offload_capnp::offload_request::params::Which as P;
    match request.get_params().which()? {
        P::Tls(t) => {
            let mut t = t?;
            if t.has_key() {
                t.reborrow().get_key()?.zeroize();
            }
            if t.has_iv() {
                t.get_iv()?.zeroize();
            }
        }
        P::Esp(e) => {
            let mut e = e?;
            if e.has_key() {
                e.reborrow().get_key()?.zeroize();
            }
            if e.has_salt() {
                e.get_salt()?.zeroize();
            }
        }
        P::NvmeTcp(_) => {}
    }
    Ok(())
}

/// An outgoing message whose key, if it carries one, [`Wipes`] zeroes
/// once it is written.
struct Wiped {
    inner: Box<dyn capnp_rpc::OutgoingMessage>,
    wipes: Rc<Wipes>,
}

impl capnp_rpc::OutgoingMessage for Wiped {
    fn get_body(&mut self) -> capnp::Result<capnp::any_pointer::Builder<'_>> {
        self.inner.get_body()
    }

    fn get_body_as_reader(&self) -> capnp::Result<capnp::any_pointer::Reader<'_>> {
        self.inner.get_body_as_reader()
    }

    fn send(self: Box<Self>) -> (Promise<(), capnp::Error>, Rc<Builder<HeapAllocator>>) {
        if !carries_key(&*self.inner) {
            return self.inner.send();
        }
        let (written, m) = self.inner.send();
        let written = written.shared();
        self.wipes.add(written.clone().map(|_| ()), m.clone());
        (Promise::from_future(written), m)
    }

    fn take(self: Box<Self>) -> Builder<HeapAllocator> {
        self.inner.take()
    }

    fn size_in_words(&self) -> usize {
        self.inner.size_in_words()
    }
}

struct Metered {
    inner: Box<dyn capnp_rpc::Connection<Side>>,
    ledger: Rc<Ledger>,
    wipes: Rc<Wipes>,
}

impl capnp_rpc::Connection<Side> for Metered {
    fn get_peer_vat_id(&self) -> Side {
        self.inner.get_peer_vat_id()
    }

    fn new_outgoing_message(&mut self, words: u32) -> Box<dyn capnp_rpc::OutgoingMessage> {
        Box::new(Wiped {
            inner: self.inner.new_outgoing_message(words),
            wipes: self.wipes.clone(),
        })
    }

    fn receive_incoming_message(
        &mut self,
    ) -> Promise<Option<Box<dyn capnp_rpc::IncomingMessage>>, capnp::Error> {
        let ledger = self.ledger.clone();
        Promise::from_future(self.inner.receive_incoming_message().map_ok(move |m| {
            m.map(|inner| {
                // Framed counted the message as it completed; it is the
                // oldest one not yet taken.
                let size = ledger.framed.borrow_mut().pop_front().unwrap_or(0);
                Box::new(Held {
                    inner,
                    ledger,
                    size,
                }) as Box<dyn capnp_rpc::IncomingMessage>
            })
        }))
    }

    fn new_stream(
        &mut self,
    ) -> (
        Box<dyn capnp_rpc::FlowController>,
        Promise<(), capnp::Error>,
    ) {
        self.inner.new_stream()
    }

    fn shutdown(&mut self, result: capnp::Result<()>) -> Promise<(), capnp::Error> {
        self.inner.shutdown(result)
    }
}

/// A two-party network whose incoming messages are framed and metered.
pub struct MeteredNetwork<R: AsyncRead + Unpin + 'static> {
    inner: capnp_rpc::twoparty::VatNetwork<Framed<R>>,
    ledger: Rc<Ledger>,
    wipes: Rc<Wipes>,
    /// Writes what the write queue gathered (see [`crate::coalesce`]).
    drain: Rc<dyn Drain>,
}

impl<R: AsyncRead + Unpin + 'static> MeteredNetwork<R> {
    pub fn new(
        reader: R,
        writer: impl futures::AsyncWrite + Unpin + 'static,
        side: Side,
        limits: ConnectionLimits,
        counters: Option<Rc<TransportCounters>>,
    ) -> Self {
        let ledger = Rc::new(Ledger {
            limits,
            bytes: Cell::new(0),
            messages: Cell::new(0),
            framed: RefCell::new(VecDeque::new()),
            waiting: RefCell::new(None),
            counters,
        });
        let framed = Framed {
            inner: reader,
            ledger: ledger.clone(),
            buf: Vec::new(),
            state: FrameState::Filling,
            stalled: false,
        };
        let writer = crate::coalesce::Coalesce::new(writer);
        let drain = writer.drain();
        let inner =
            capnp_rpc::twoparty::VatNetwork::new(framed, writer, side, limits.reader_options());
        MeteredNetwork {
            inner,
            ledger,
            wipes: Rc::default(),
            drain,
        }
    }
}

impl<R: AsyncRead + Unpin + 'static> capnp_rpc::VatNetwork<Side> for MeteredNetwork<R> {
    fn connect(&mut self, host_id: Side) -> Option<Box<dyn capnp_rpc::Connection<Side>>> {
        let (ledger, wipes) = (self.ledger.clone(), self.wipes.clone());
        self.inner.connect(host_id).map(|inner| {
            Box::new(Metered {
                inner,
                ledger,
                wipes,
            }) as Box<dyn capnp_rpc::Connection<Side>>
        })
    }

    fn accept(&mut self) -> Promise<Box<dyn capnp_rpc::Connection<Side>>, capnp::Error> {
        let (ledger, wipes) = (self.ledger.clone(), self.wipes.clone());
        Promise::from_future(self.inner.accept().map_ok(move |inner| {
            Box::new(Metered {
                inner,
                ledger,
                wipes,
            }) as Box<dyn capnp_rpc::Connection<Side>>
        }))
    }

    /// The RPC system polls this for the connection's life: it runs the
    /// write queue, then writes out what the queue gathered (every message
    /// that was ready: one write), and drives the wipes of written
    /// messages.
    fn drive_until_shutdown(&mut self) -> Promise<(), capnp::Error> {
        let mut inner = self.inner.drive_until_shutdown();
        let (wipes, drain) = (self.wipes.clone(), self.drain.clone());
        Promise::from_future(futures::future::poll_fn(move |cx| {
            wipes.poll(cx);
            let done = inner.poll_unpin(cx);
            // A peer that does not read leaves this pending; the write
            // queue then waits for room as it did on a full socket.
            if let Poll::Ready(Err(e)) = drain.poll_drain(cx) {
                return Poll::Ready(Err(e.into()));
            }
            if done.is_ready() {
                // The write queue ended: what it held is freed now.
                wipes.poll(cx);
            }
            done
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::AsyncReadExt;
    use std::future::Future;

    /// The output of a future over in-memory reads, which never wait.
    fn now<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("an in-memory read waited"),
        }
    }

    fn framed(bytes: Vec<u8>, limits: ConnectionLimits) -> Framed<futures::io::Cursor<Vec<u8>>> {
        Framed {
            inner: futures::io::Cursor::new(bytes),
            ledger: Rc::new(Ledger {
                limits,
                bytes: Cell::new(0),
                messages: Cell::new(0),
                framed: RefCell::new(VecDeque::new()),
                waiting: RefCell::new(None),
                counters: Some(Rc::default()),
            }),
            buf: Vec::new(),
            state: FrameState::Filling,
            stalled: false,
        }
    }

    fn message() -> Vec<u8> {
        let mut b = capnp::message::Builder::new_default();
        b.set_root(capnp::text::Reader::from("hello")).unwrap();
        capnp::serialize::write_message_to_words(&b)
    }

    /// `TcpSocket.offload` as capnp-rpc frames it, with a TLS key of 0xAB
    /// and an IV of 0xCD.
    fn offload_call(body: capnp::any_pointer::Builder<'_>) {
        let root: capnp_rpc::rpc_capnp::message::Builder<'_> = body.init_as();
        let mut call = root.init_call();
        call.set_interface_id(KEY_CALLS[0].0);
        call.set_method_id(KEY_CALLS[0].1);
        let content = call.init_params().get_content();
        let mut p = content
            .init_as::<crate::net_capnp::tcp_socket::offload_params::Builder<'_>>()
            .init_request()
            .get_params()
            .init_tls();
        p.set_key(&[0xAB; 16][..]);
        p.set_iv(&[0xCD; 12][..]);
    }

    fn holds(segments: &[&[u8]], byte: u8, run: usize) -> bool {
        segments
            .iter()
            .any(|s| s.windows(run).any(|w| w.iter().all(|b| *b == byte)))
    }

    #[test]
    fn a_wiped_call_holds_no_byte_of_its_key() {
        let mut m = Builder::new(HeapAllocator::new());
        offload_call(m.init_root());
        assert!(holds(&m.get_segments_for_output(), 0xAB, 16));
        wipe(&mut m).unwrap();
        let segments = m.get_segments_for_output();
        assert!(!holds(&segments, 0xAB, 1) && !holds(&segments, 0xCD, 1));
    }

    #[test]
    fn a_sent_message_leaves_whole_and_is_wiped_once_written() {
        use capnp_rpc::VatNetwork;
        use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
            let (r, w) = ours.into_split();
            let limits = ConnectionLimits::CLIENT;
            let mut net =
                MeteredNetwork::new(r.compat(), w.compat_write(), Side::Client, limits, None);
            let wipes = net.wipes.clone();
            let mut driver = net.drive_until_shutdown();
            let mut conn = net.connect(Side::Server).expect("a connection");
            let mut m = conn.new_outgoing_message(16);
            offload_call(m.get_body().unwrap());
            // What capnp-rpc does with a call: send, drop both handles.
            drop(m.send());
            let wiped = futures::future::poll_fn(|cx| {
                let _ = driver.poll_unpin(cx);
                if wipes.wiped.get() == 1 {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            });
            tokio::time::timeout(std::time::Duration::from_secs(5), wiped)
                .await
                .expect("the written message was not wiped");
            // The peer got the key: the wipe came after the write.
            let mut sent = vec![0u8; 4096];
            let n = tokio::io::AsyncReadExt::read(&mut peer, &mut sent)
                .await
                .unwrap();
            assert!(holds(&[&sent[..n]], 0xAB, 16), "{:?}", &sent[..n]);
        });
    }

    #[test]
    fn whole_messages_pass_unchanged() {
        let one = message();
        let mut two = one.clone();
        two.extend_from_slice(&one);
        let mut r = framed(two.clone(), ConnectionLimits::SERVICE);
        let mut out = Vec::new();
        now(r.read_to_end(&mut out)).unwrap();
        assert_eq!(out, two);
        assert_eq!(r.ledger.messages.get(), 2);
        assert_eq!(r.ledger.bytes.get(), two.len());
    }

    #[test]
    fn a_burst_of_messages_is_one_read() {
        let one = message();
        let mut three = one.clone();
        three.extend_from_slice(&one);
        three.extend_from_slice(&one);
        let mut r = framed(three.clone(), ConnectionLimits::SERVICE);
        let mut out = vec![0u8; one.len()];
        now(r.read_exact(&mut out)).unwrap();
        assert_eq!(
            r.inner.position(),
            three.len() as u64,
            "read one message at a time"
        );
        let mut rest = Vec::new();
        now(r.read_to_end(&mut rest)).unwrap();
        assert_eq!(rest, three[one.len()..]);
        assert_eq!(r.ledger.messages.get(), 3);
    }

    #[test]
    fn an_announced_giant_is_refused_before_any_allocation() {
        // The nine-byte bomb: one segment of 0x03ffffff words.
        let bomb = vec![0, 0, 0, 0, 0xff, 0xff, 0xff, 0x03];
        let mut r = framed(bomb, ConnectionLimits::SERVICE);
        let mut out = [0u8; 64];
        let e = now(r.read(&mut out)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(r.buf.capacity() < 1024);
        let oversize = r.ledger.counters.as_ref().unwrap().oversize.get();
        assert_eq!(oversize, 1);
    }

    #[test]
    fn a_truncated_message_is_an_error_and_costs_what_arrived() {
        // Announces 1 MiB, sends 16 bytes of it.
        let mut m = vec![0, 0, 0, 0, 0, 0, 2, 0];
        m.extend_from_slice(&[7; 16]);
        let mut r = framed(m, ConnectionLimits::SERVICE);
        let mut out = Vec::new();
        let e = now(r.read_to_end(&mut out)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(r.buf.capacity() < 1024);
    }

    #[test]
    fn reading_pauses_while_the_connection_holds_too_much() {
        let one = message();
        let mut two = one.clone();
        two.extend_from_slice(&one);
        let limits = ConnectionLimits {
            held_messages: 1,
            ..ConnectionLimits::SERVICE
        };
        let mut r = framed(two, limits);
        let mut out = vec![0u8; one.len()];
        now(r.read_exact(&mut out)).unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        let mut more = [0u8; 8];
        assert!(Pin::new(&mut r).poll_read(&mut cx, &mut more).is_pending());
        let counters = r.ledger.counters.clone().unwrap();
        assert_eq!(counters.stalls.get(), 1);
        r.ledger.release(one.len());
        assert!(matches!(
            Pin::new(&mut r).poll_read(&mut cx, &mut more),
            Poll::Ready(Ok(8))
        ));
    }
}
