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

use capnp::capability::Promise;
use capnp_rpc::rpc_twoparty_capnp::Side;
use futures::{AsyncRead, TryFutureExt};
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
    /// Collecting a message; its size is known once the table is in.
    Filling,
    /// Handing a complete message to the capnp reader from `pos`.
    Delivering { pos: usize },
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

/// Bytes read from the peer at a time while a message fills.
const READ_CHUNK: usize = 16 * 1024;

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
            if let FrameState::Delivering { pos } = &mut this.state {
                let n = out.len().min(this.buf.len() - *pos);
                out[..n].copy_from_slice(&this.buf[*pos..*pos + n]);
                *pos += n;
                if *pos == this.buf.len() {
                    // Keep a small buffer for the next message, not a big one.
                    if this.buf.capacity() > READ_CHUNK {
                        this.buf = Vec::new();
                    }
                    this.buf.clear();
                    this.state = FrameState::Filling;
                }
                return Poll::Ready(Ok(n));
            }
            if this.buf.is_empty() && this.ledger.over() {
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
            if this.buf.len() == want {
                this.ledger.framed.borrow_mut().push_back(want);
                this.ledger.bytes.set(this.ledger.bytes.get() + want);
                this.ledger.messages.set(this.ledger.messages.get() + 1);
                this.state = FrameState::Delivering { pos: 0 };
                continue;
            }
            // Through a scratch buffer: `buf` grows only by what arrived.
            let mut scratch = [0u8; READ_CHUNK];
            let chunk = (want - this.buf.len()).min(READ_CHUNK);
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

struct Metered {
    inner: Box<dyn capnp_rpc::Connection<Side>>,
    ledger: Rc<Ledger>,
}

impl capnp_rpc::Connection<Side> for Metered {
    fn get_peer_vat_id(&self) -> Side {
        self.inner.get_peer_vat_id()
    }

    fn new_outgoing_message(&mut self, words: u32) -> Box<dyn capnp_rpc::OutgoingMessage> {
        self.inner.new_outgoing_message(words)
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
        let inner =
            capnp_rpc::twoparty::VatNetwork::new(framed, writer, side, limits.reader_options());
        MeteredNetwork { inner, ledger }
    }
}

impl<R: AsyncRead + Unpin + 'static> capnp_rpc::VatNetwork<Side> for MeteredNetwork<R> {
    fn connect(&mut self, host_id: Side) -> Option<Box<dyn capnp_rpc::Connection<Side>>> {
        let ledger = self.ledger.clone();
        self.inner.connect(host_id).map(|inner| {
            Box::new(Metered { inner, ledger }) as Box<dyn capnp_rpc::Connection<Side>>
        })
    }

    fn accept(&mut self) -> Promise<Box<dyn capnp_rpc::Connection<Side>>, capnp::Error> {
        let ledger = self.ledger.clone();
        Promise::from_future(self.inner.accept().map_ok(move |inner| {
            Box::new(Metered { inner, ledger }) as Box<dyn capnp_rpc::Connection<Side>>
        }))
    }

    fn drive_until_shutdown(&mut self) -> Promise<(), capnp::Error> {
        self.inner.drive_until_shutdown()
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
