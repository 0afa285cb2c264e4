//! One write per burst of capnp messages.
//!
//! capnp-futures writes a message as its segment table, then each segment,
//! each with its own `write`, and flushes after each message. On a Unix
//! socket every write is a syscall that wakes the reader: it woke for the
//! table alone, found the body missing, slept and woke again; and the
//! messages one turn of the RPC system sends (a return and a finish, two
//! pipelined calls) woke it once each. [`Coalesce`] gathers what is
//! written, and a flush only marks the gathered bytes due: the connection's
//! driver writes them ([`Drain::poll_drain`]) once the write queue has taken
//! every message that was ready, so a burst costs the peer one wakeup.
//!
//! A message may carry a key (see [`crate::metered`]): the buffer is zeroed
//! once its bytes are written, and when the writer goes.

use futures::AsyncWrite;
use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};
use zeroize::Zeroize;

/// Bytes gathered before they are written even without a flush; a larger
/// write goes straight through.
const GATHER: usize = 64 * 1024;

/// An [`AsyncWrite`] that gathers what it is given; the bytes leave in as
/// few writes as they can when [`Drain::poll_drain`] runs (or a write finds
/// the buffer full, or the writer closes).
pub struct Coalesce<W>(Rc<RefCell<Gathered<W>>>);

struct Gathered<W> {
    inner: W,
    /// Gathered bytes are `buf[..filled]`; the rest is zeroes.
    buf: Vec<u8>,
    filled: usize,
    /// Bytes of `buf` already written.
    written: usize,
}

/// What writes out a [`Coalesce`]'s gathered bytes.
pub trait Drain {
    fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl<W> Coalesce<W> {
    pub fn new(inner: W) -> Coalesce<W> {
        Coalesce(Rc::new(RefCell::new(Gathered {
            inner,
            buf: Vec::new(),
            filled: 0,
            written: 0,
        })))
    }
}

impl<W: AsyncWrite + Unpin + 'static> Coalesce<W> {
    /// The handle the connection's driver writes the gathered bytes with.
    pub fn drain(&self) -> Rc<dyn Drain> {
        Rc::new(Coalesce(self.0.clone()))
    }
}

impl<W: AsyncWrite + Unpin> Gathered<W> {
    /// Writes out what is gathered, then zeroes it.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.filled {
            let pending = &self.buf[self.written..self.filled];
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf[..self.filled].zeroize();
        self.filled = 0;
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> Drain for Coalesce<W> {
    fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut g = self.0.borrow_mut();
        ready!(g.poll_drain(cx))?;
        Pin::new(&mut g.inner).poll_flush(cx)
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Coalesce<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut g = self.0.borrow_mut();
        if g.filled + data.len() > GATHER {
            ready!(g.poll_drain(cx))?;
        }
        if data.len() >= GATHER {
            return Pin::new(&mut g.inner).poll_write(cx, data);
        }
        let end = g.filled + data.len();
        if g.buf.len() < end {
            g.buf.resize(end, 0);
        }
        let start = g.filled;
        g.buf[start..end].copy_from_slice(data);
        g.filled = end;
        Poll::Ready(Ok(data.len()))
    }

    /// Marks the bytes due: [`Drain::poll_drain`] writes them.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut g = self.0.borrow_mut();
        ready!(g.poll_drain(cx))?;
        Pin::new(&mut g.inner).poll_close(cx)
    }
}

impl<W> Drop for Gathered<W> {
    fn drop(&mut self) {
        self.buf.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::AsyncWriteExt;

    /// Records each write it is given.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl AsyncWrite for Writes {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().0.push(data.to_vec());
            Poll::Ready(Ok(data.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_burst_is_one_write_once_drained_and_leaves_nothing_behind() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut w = Coalesce::new(Writes::default());
            let drain = w.drain();
            let drained = || futures::future::poll_fn(|cx| drain.poll_drain(cx));
            // Two messages, each flushed as capnp-futures does.
            w.write_all(&[0, 0, 0, 0, 2, 0, 0, 0]).await.unwrap();
            w.write_all(&[0xAB; 16]).await.unwrap();
            w.flush().await.unwrap();
            w.write_all(&[0, 0, 0, 0, 1, 0, 0, 0]).await.unwrap();
            w.write_all(&[0xCD; 8]).await.unwrap();
            w.flush().await.unwrap();
            assert!(
                w.0.borrow().inner.0.is_empty(),
                "nothing written before the drain"
            );
            drained().await.unwrap();
            {
                let g = w.0.borrow();
                assert_eq!(g.inner.0.len(), 1);
                assert_eq!(g.inner.0[0].len(), 40);
                assert_eq!(g.filled, 0);
                assert!(
                    g.buf.iter().all(|b| *b == 0),
                    "the gathered bytes are zeroed once written"
                );
            }
            // A write past the gathering size goes through on its own,
            // after what was gathered before it.
            w.write_all(&[1; 8]).await.unwrap();
            w.write_all(&vec![2; GATHER]).await.unwrap();
            drained().await.unwrap();
            let sizes: Vec<usize> = w.0.borrow().inner.0.iter().map(Vec::len).collect();
            assert_eq!(sizes, [40, 8, GATHER]);
            // Closing writes what is left.
            w.write_all(&[3; 5]).await.unwrap();
            w.close().await.unwrap();
            assert_eq!(w.0.borrow().inner.0.last().unwrap(), &[3; 5]);
        });
    }
}
