//! A Unix stream the runtime watches for reading only.
//!
//! tokio registers a socket with epoll for both directions. On a Unix
//! socket, a reader taking a message frees its writer's send space, and the
//! kernel then wakes every epoll registered for the writer's `EPOLLOUT`,
//! whether or not anything waits to write: each capnp message read woke the
//! sender's thread for nothing (with connection-per-request HTTP, 1.3 such
//! wakeups per request of the server's connection thread, more than its
//! real ones; `perf record -e sched:sched_wakeup`). [`QuietStream`] is
//! registered for reading; a write that finds the socket full registers a
//! duplicate of its descriptor for writing, until a write gets through.

use futures::{AsyncRead, AsyncWrite};
use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A non-blocking Unix stream for one thread's runtime. Clones share the
/// socket: one can read while another writes (a capnp connection's halves).
#[derive(Clone)]
pub struct QuietStream(Rc<Inner>);

struct Inner {
    read: AsyncFd<UnixStream>,
    /// A duplicate registered for writing while a write waits for room.
    write: RefCell<Option<Rc<AsyncFd<UnixStream>>>>,
}

impl QuietStream {
    /// Takes over `stream` (made non-blocking) on the current runtime.
    pub fn new(stream: UnixStream) -> io::Result<QuietStream> {
        stream.set_nonblocking(true)?;
        Ok(QuietStream(Rc::new(Inner {
            read: register(stream, Interest::READABLE)?,
            write: RefCell::new(None),
        })))
    }

    /// A tokio stream, moved to reading-only registration.
    pub fn from_tokio(stream: tokio::net::UnixStream) -> io::Result<QuietStream> {
        QuietStream::new(stream.into_std()?)
    }

    pub fn get_ref(&self) -> &UnixStream {
        self.0.read.get_ref()
    }

    /// Runs the non-blocking `io` once the socket is readable, again each
    /// time it would block.
    pub fn poll_read_with<R>(
        &self,
        cx: &mut Context<'_>,
        mut io: impl FnMut(&UnixStream) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            let mut guard = ready!(self.0.read.poll_read_ready(cx))?;
            if let Ok(r) = guard.try_io(|fd| io(fd.get_ref())) {
                return Poll::Ready(r);
            }
        }
    }

    /// Runs the non-blocking `io` at once, and again each time the socket
    /// has room after it would block.
    pub fn poll_write_with<R>(
        &self,
        cx: &mut Context<'_>,
        mut io: impl FnMut(&UnixStream) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        let current = self.0.write.borrow().clone();
        let waiting = match current {
            Some(waiting) => waiting,
            None => {
                match io(self.get_ref()) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    done => return Poll::Ready(done),
                }
                // epoll reports a registration that is writable at once, so
                // room made before it is not missed.
                let dup = self.get_ref().try_clone()?;
                let fd = Rc::new(register(dup, Interest::WRITABLE)?);
                *self.0.write.borrow_mut() = Some(fd.clone());
                fd
            }
        };
        loop {
            let mut guard = ready!(waiting.poll_write_ready(cx))?;
            if let Ok(r) = guard.try_io(|fd| io(fd.get_ref())) {
                // Through: stop hearing of room nobody waits for.
                *self.0.write.borrow_mut() = None;
                return Poll::Ready(r);
            }
        }
    }

    pub async fn read_with<R>(
        &self,
        mut io: impl FnMut(&UnixStream) -> io::Result<R>,
    ) -> io::Result<R> {
        std::future::poll_fn(|cx| self.poll_read_with(cx, &mut io)).await
    }

    pub async fn write_with<R>(
        &self,
        mut io: impl FnMut(&UnixStream) -> io::Result<R>,
    ) -> io::Result<R> {
        std::future::poll_fn(|cx| self.poll_write_with(cx, &mut io)).await
    }
}

fn register(stream: UnixStream, interest: Interest) -> io::Result<AsyncFd<UnixStream>> {
    // SAFETY: the AsyncFd owns the stream, which keeps its descriptor open
    // and reports that same descriptor until the AsyncFd drops it.
    unsafe { AsyncFd::register_with_interest(stream, interest) }.map_err(io::Error::from)
}

impl std::os::fd::AsFd for QuietStream {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.get_ref().as_fd()
    }
}

impl AsyncRead for QuietStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.0.read.poll_read_ready(cx))?;
            match guard.try_io(|fd| fd.get_ref().read(buf)) {
                Ok(Ok(n)) => {
                    // A short read of a stream socket emptied it: wait for
                    // epoll's next word rather than read again to hear
                    // EAGAIN (a system call per read; tokio's own streams do
                    // the same). Data that came since is still reported.
                    if n > 0 && n < buf.len() {
                        guard.clear_ready();
                    }
                    return Poll::Ready(Ok(n));
                }
                Ok(other) => return Poll::Ready(other),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for QuietStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |mut s| s.write(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_ref().shutdown(std::net::Shutdown::Write) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{AsyncReadExt, AsyncWriteExt};

    /// `f` on a fresh runtime; a test that hangs fails after 10 s.
    fn run<F: std::future::Future>(f: F) -> F::Output {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let f = async { tokio::time::timeout(std::time::Duration::from_secs(10), f).await };
        tokio::task::LocalSet::new()
            .block_on(&rt, f)
            .expect("timed out")
    }

    #[test]
    fn a_write_that_finds_the_socket_full_waits_for_room_and_then_lets_go() {
        run(async {
            let (ours, theirs) = UnixStream::pair().unwrap();
            let ours = QuietStream::new(ours).unwrap();
            let theirs = QuietStream::new(theirs).unwrap();
            let total = 4 << 20;
            let writer = {
                let mut w = ours.clone();
                tokio::task::spawn_local(async move {
                    let chunk = vec![7u8; 64 << 10];
                    for _ in 0..total / chunk.len() {
                        w.write_all(&chunk).await.unwrap();
                    }
                    w.close().await.unwrap();
                    w.0.write.borrow().is_some()
                })
            };
            // Far more than the socket holds: the writer must wait.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            assert!(ours.0.write.borrow().is_some(), "the writer is not waiting");
            let mut got = Vec::new();
            let mut r = theirs.clone();
            r.read_to_end(&mut got).await.unwrap();
            assert_eq!(got.len(), total);
            assert!(got.iter().all(|&b| b == 7));
            assert!(!writer.await.unwrap(), "still registered for writing");
        });
    }

    #[test]
    fn data_that_comes_right_after_a_short_read_is_not_missed() {
        run(async {
            let (ours, theirs) = UnixStream::pair().unwrap();
            let mut ours = QuietStream::new(ours).unwrap();
            let mut buf = [0u8; 64];
            (&theirs).write_all(b"first").unwrap();
            assert_eq!(ours.read(&mut buf).await.unwrap(), 5);
            // Between the short read (readiness dropped) and the next wait.
            (&theirs).write_all(b"second").unwrap();
            assert_eq!(ours.read(&mut buf).await.unwrap(), 6);
            assert_eq!(&buf[..6], b"second");
            let late = tokio::task::spawn_local(async move {
                let n = ours.read(&mut buf).await.unwrap();
                buf[..n].to_vec()
            });
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            (&theirs).write_all(b"third").unwrap();
            assert_eq!(late.await.unwrap(), b"third");
        });
    }

    #[test]
    fn reads_wake_for_data_and_end_at_the_peers_close() {
        run(async {
            let (ours, theirs) = UnixStream::pair().unwrap();
            let mut ours = QuietStream::new(ours).unwrap();
            let reader = tokio::task::spawn_local(async move {
                let mut got = Vec::new();
                ours.read_to_end(&mut got).await.map(|_| got)
            });
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            (&theirs).write_all(b"late").unwrap();
            drop(theirs);
            assert_eq!(reader.await.unwrap().unwrap(), b"late");
        });
    }
}
