//! The handoff side channel of a service connection, on the connection
//! thread: a grant's token goes out, a status byte and the shared memory's
//! descriptors come back (`capnet_ring::handoff`). One exchange at a time;
//! an exchange abandoned halfway stops the channel, since its late answer
//! would be read as the next one's.

use capnet_ring::handoff::{self, Token};
use capnet_ring::recv_fds;
use capnet_schema::quiet::QuietStream;
use std::cell::Cell;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

/// The handoff side channel: one redeem exchange at a time (a token out,
/// a status byte and the fds back).
pub(crate) struct Handoff {
    stream: QuietStream,
    turn: tokio::sync::Mutex<()>,
    /// An exchange was abandoned halfway (its job dropped, or the socket
    /// failed): a late answer would be read as the next one's, so no
    /// exchange is tried again.
    out_of_step: Cell<bool>,
}

impl Handoff {
    pub fn new(stream: QuietStream) -> Handoff {
        Handoff {
            stream,
            turn: tokio::sync::Mutex::new(()),
            out_of_step: Cell::new(false),
        }
    }

    /// Redeems a shared-memory grant, expecting `fds` descriptors.
    pub async fn redeem(&self, token: &[u8], fds: usize) -> io::Result<Vec<OwnedFd>> {
        let token = Token::from_slice(token).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "grant token is not 16 bytes")
        })?;
        let _turn = self.turn.lock().await;
        if self.out_of_step.get() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the handoff channel is out of step after an abandoned exchange",
            ));
        }
        // Cleared only by an exchange that ends (this future may be dropped
        // halfway).
        self.out_of_step.set(true);
        let answer = self.exchange(&token, fds).await?;
        self.out_of_step.set(false);
        answer
    }

    /// One exchange: the outer error is the channel's, the inner the
    /// answer's (refused, malformed).
    async fn exchange(&self, token: &Token, fds: usize) -> io::Result<io::Result<Vec<OwnedFd>>> {
        // 16 bytes into a socket that holds at most one unanswered token:
        // never a partial write, so a retry after `WouldBlock` sends all.
        self.stream
            .write_with(|s| capnet_ring::send_fds(s.as_fd(), &token.0, &[]))
            .await?;
        let mut status = [0u8; 1];
        let (n, got) = self
            .stream
            .read_with(|s| recv_fds(s.as_fd(), &mut status, fds))
            .await?;
        Ok(handoff::read_answer(n, status[0], got, fds))
    }
}

#[cfg(test)]
mod tests {
    use super::Handoff;
    use capnet_ring::handoff::{read_token, HandoffTable};
    use capnet_schema::quiet::QuietStream;
    use std::io;
    use std::os::fd::{AsFd, OwnedFd};
    use std::os::unix::net::UnixStream;
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

    /// Our end of a handoff channel, and a provider on the other end that
    /// answers each token it reads from the table, once `go` says so (one
    /// go per token).
    fn channel() -> (UnixStream, Arc<HandoffTable>, mpsc::Sender<()>) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let table = Arc::new(HandoffTable::new());
        let (go, gate) = mpsc::channel::<()>();
        let provider = table.clone();
        std::thread::spawn(move || {
            while let Ok(Some(token)) = read_token(theirs.as_fd()) {
                if gate.recv().is_err() {
                    return;
                }
                provider.answer(theirs.as_fd(), &token).unwrap();
            }
        });
        (ours, table, go)
    }

    fn memfd() -> OwnedFd {
        capnet_ring::SharedRegion::create("t", 4096)
            .unwrap()
            .fd()
            .try_clone_to_owned()
            .unwrap()
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn grants_are_redeemed_refusals_reported_and_the_channel_kept() {
        let (ours, table, go) = channel();
        let token = table.offer(vec![memfd(), memfd()]);
        run(async {
            let h = Handoff::new(QuietStream::new(ours).unwrap());
            go.send(()).unwrap();
            assert_eq!(h.redeem(&token.0, 2).await.unwrap().len(), 2);
            // Redeemed once only: the second is refused, and says so.
            go.send(()).unwrap();
            let e = h.redeem(&token.0, 2).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
            // The channel is still in step.
            let next = table.offer(vec![memfd()]);
            go.send(()).unwrap();
            assert_eq!(h.redeem(&next.0, 1).await.unwrap().len(), 1);
        });
    }

    #[test]
    fn an_abandoned_exchange_stops_the_channel_rather_than_misreading_its_late_answer() {
        let (ours, table, go) = channel();
        let first = table.offer(vec![memfd()]);
        let second = table.offer(vec![memfd()]);
        run(async {
            let h = Handoff::new(QuietStream::new(ours).unwrap());
            // The provider holds its answer: the caller gives up waiting.
            let abandoned = tokio::time::timeout(Duration::from_millis(50), h.redeem(&first.0, 1));
            assert!(abandoned.await.is_err());
            // The late answer (the first grant's fds) must not be taken for
            // the second's.
            go.send(()).unwrap();
            go.send(()).unwrap();
            let e = h.redeem(&second.0, 1).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        });
    }
}
