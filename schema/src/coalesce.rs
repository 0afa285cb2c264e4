//! One write per capnp message.
//!
//! capnp-futures writes a message as its segment table, then each segment,
//! each with its own `write`, and flushes after the message. On a Unix
//! socket every write is a syscall that wakes the reader: it wakes for the
//! table alone, finds the body missing, sleeps and wakes again. [`Coalesce`]
//! gathers what is written until the flush and writes it at once, so a
//! message costs the peer one wakeup.
//!
//! A message may carry a key (see [`crate::metered`]): the buffer is zeroed
//! once its bytes are written, and when the writer goes.

use futures::AsyncWrite;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use zeroize::Zeroize;

/// Bytes gathered before they are written even without a flush; a larger
/// write goes straight through.
const GATHER: usize = 64 * 1024;

/// An [`AsyncWrite`] that writes what it was given since the last flush
/// in as few writes as it can.
pub struct Coalesce<W> {
    inner: W,
    /// Gathered bytes are `buf[..filled]`; the rest is zeroes.
    buf: Vec<u8>,
    filled: usize,
    /// Bytes of `buf` already written.
    written: usize,
}

impl<W> Coalesce<W> {
    pub fn new(inner: W) -> Coalesce<W> {
        Coalesce {
            inner,
            buf: Vec::new(),
            filled: 0,
            written: 0,
        }
    }
}

impl<W: AsyncWrite + Unpin> Coalesce<W> {
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

impl<W: AsyncWrite + Unpin> AsyncWrite for Coalesce<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.filled + data.len() > GATHER {
            ready!(this.poll_drain(cx))?;
        }
        if data.len() >= GATHER {
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        let end = this.filled + data.len();
        if this.buf.len() < end {
            this.buf.resize(end, 0);
        }
        this.buf[this.filled..end].copy_from_slice(data);
        this.filled = end;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_close(cx)
    }
}

impl<W> Drop for Coalesce<W> {
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
    fn a_message_is_one_write_and_leaves_nothing_behind() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut w = Coalesce::new(Writes::default());
            w.write_all(&[0, 0, 0, 0, 2, 0, 0, 0]).await.unwrap();
            w.write_all(&[0xAB; 16]).await.unwrap();
            assert!(w.inner.0.is_empty(), "nothing written before the flush");
            w.flush().await.unwrap();
            assert_eq!(w.inner.0.len(), 1);
            assert_eq!(w.inner.0[0].len(), 24);
            assert_eq!(w.filled, 0);
            assert!(
                w.buf.iter().all(|b| *b == 0),
                "the gathered bytes are zeroed once written"
            );
            // A write past the gathering size goes through on its own.
            w.write_all(&[1; 8]).await.unwrap();
            w.write_all(&vec![2; GATHER]).await.unwrap();
            w.flush().await.unwrap();
            let sizes: Vec<usize> = w.inner.0.iter().map(Vec::len).collect();
            assert_eq!(sizes, [24, 8, GATHER]);
        });
    }
}
