//! Handing fds over beside Cap'n Proto (Rust capnp-rpc cannot carry them).
//!
//! The provider puts fds in its [`HandoffTable`] and returns the [`Token`] in a capnp result.
//! The holder opens a connection to the provider's service socket, sends [`CONNECT_HANDOFF`], then
//! for each grant writes the 16 token bytes; the provider answers one status byte (1 = ok,
//! 0 = unknown or expired token) with the fds attached as SCM_RIGHTS. A token is redeemed at
//! most once and expires after [`TOKEN_TTL`], so a leaked token is worth little. Tokens are 128
//! random bits: they cannot be guessed.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::platform::{random_bytes, recv_fds, send_fds};

/// First byte on a connection to a service socket: capnp follows.
pub const CONNECT_RPC: u8 = b'R';
/// First byte: handoff redeem requests follow.
pub const CONNECT_HANDOFF: u8 = b'H';

/// How long an offer stays redeemable.
pub const TOKEN_TTL: Duration = Duration::from_secs(10);

const OK: u8 = 1;
const REFUSED: u8 = 0;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Token(pub [u8; 16]);

impl Token {
    /// A token from exactly 16 bytes (e.g. a capnp `Data` field).
    pub fn from_slice(b: &[u8]) -> Option<Token> {
        b.try_into().ok().map(Token)
    }

    fn random() -> Token {
        let mut t = [0u8; 16];
        random_bytes(&mut t);
        Token(t)
    }
}

/// Offered fds waiting to be redeemed. Send + Sync.
#[derive(Debug)]
pub struct HandoffTable {
    ttl: Duration,
    offers: Mutex<HashMap<Token, (Instant, Vec<OwnedFd>)>>,
}

impl Default for HandoffTable {
    fn default() -> Self {
        HandoffTable::new()
    }
}

impl HandoffTable {
    pub fn new() -> HandoffTable {
        HandoffTable::with_ttl(TOKEN_TTL)
    }

    /// A table whose offers expire after `ttl` (tests use short ones).
    pub fn with_ttl(ttl: Duration) -> HandoffTable {
        HandoffTable {
            ttl,
            offers: Mutex::new(HashMap::new()),
        }
    }

    /// Holds `fds` until redeemed (once) or expired; expired offers are closed here.
    pub fn offer(&self, fds: Vec<OwnedFd>) -> Token {
        let mut offers = self.lock();
        let now = Instant::now();
        offers.retain(|_, (at, _)| now.duration_since(*at) < self.ttl);
        let token = Token::random();
        offers.insert(token, (now, fds));
        token
    }

    /// The fds for `token`, at most once, if it has not expired.
    pub fn redeem(&self, token: &Token) -> Option<Vec<OwnedFd>> {
        let (at, fds) = self.lock().remove(token)?;
        (at.elapsed() < self.ttl).then_some(fds)
    }

    /// Answers one redeem request on `sock`: status byte plus fds. Ok(false) if refused.
    pub fn answer(&self, sock: BorrowedFd<'_>, token: &Token) -> io::Result<bool> {
        match self.redeem(token) {
            Some(fds) => {
                let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
                send_fds(sock, &[OK], &borrowed)?;
                Ok(true)
            }
            None => {
                send_fds(sock, &[REFUSED], &[])?;
                Ok(false)
            }
        }
    }

    /// Number of offers not yet redeemed (including expired ones not yet swept).
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    /// A poisoned lock only means another thread panicked mid-insert; the map is still valid.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Token, (Instant, Vec<OwnedFd>)>> {
        self.offers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Client side: redeems `token` on a handoff connection and expects exactly `expect_fds` fds.
/// Blocking. `PermissionDenied` if the provider refused, `InvalidData` on a malformed answer.
pub fn redeem(sock: BorrowedFd<'_>, token: &Token, expect_fds: usize) -> io::Result<Vec<OwnedFd>> {
    send_fds(sock, &token.0, &[])?;
    let mut status = [0u8; 1];
    let (n, fds) = recv_fds(sock, &mut status, expect_fds)?;
    read_answer(n, status[0], fds, expect_fds)
}

/// Client side: what the provider answered to a redeem, as [`redeem`] returns it, from the
/// `n` bytes (0 or 1), `status` byte and `fds` one `recv_fds` got (for callers that do the I/O
/// themselves, as an async one does).
pub fn read_answer(
    n: usize,
    status: u8,
    fds: Vec<OwnedFd>,
    expect_fds: usize,
) -> io::Result<Vec<OwnedFd>> {
    match (n, status) {
        (0, _) => Err(io::ErrorKind::UnexpectedEof.into()),
        (_, REFUSED) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "handoff token refused",
        )),
        (_, OK) if fds.len() == expect_fds => Ok(fds),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "malformed handoff answer",
        )),
    }
}

/// Provider side: reads one 16-byte token from a handoff connection; None at EOF.
pub fn read_token(sock: BorrowedFd<'_>) -> io::Result<Option<Token>> {
    let mut buf = [0u8; 16];
    let mut got = 0;
    while got < buf.len() {
        let (n, _) = recv_fds(sock, &mut buf[got..], 0)?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        got += n;
    }
    Ok(Some(Token(buf)))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::platform::{Doorbell, End};
    use std::os::unix::net::UnixStream;

    fn bell_fd() -> OwnedFd {
        Doorbell::new().unwrap().into_fd()
    }

    #[test]
    fn token_from_slice_needs_sixteen_bytes() {
        assert_eq!(Token::from_slice(&[1; 16]), Some(Token([1; 16])));
        assert_eq!(Token::from_slice(&[1; 15]), None);
        assert_eq!(Token::from_slice(&[1; 17]), None);
    }

    #[test]
    fn tokens_differ() {
        let t = HandoffTable::new();
        assert_ne!(t.offer(vec![]), t.offer(vec![]));
    }

    #[test]
    fn redeem_at_most_once() {
        let t = HandoffTable::new();
        let tok = t.offer(vec![bell_fd(), bell_fd()]);
        assert_eq!(t.redeem(&tok).unwrap().len(), 2);
        assert!(t.redeem(&tok).is_none());
        assert!(t.redeem(&Token([0; 16])).is_none());
    }

    #[test]
    fn offers_expire() {
        let t = HandoffTable::with_ttl(Duration::from_millis(1));
        let tok = t.offer(vec![bell_fd()]);
        std::thread::sleep(Duration::from_millis(5));
        assert!(t.redeem(&tok).is_none());
        t.offer(vec![]);
        t.offer(vec![]);
        std::thread::sleep(Duration::from_millis(5));
        t.offer(vec![]);
        assert_eq!(t.pending(), 1, "expired offers are swept");
    }

    #[test]
    fn handoff_over_a_socketpair() {
        let (client, server) = UnixStream::pair().unwrap();
        let table = HandoffTable::new();
        let (button, bell) = Doorbell::pair().unwrap();
        let tok = table.offer(vec![button.into_fd()]);
        let provider = std::thread::spawn(move || {
            let mut answered = vec![];
            while let Some(t) = read_token(server.as_fd()).unwrap() {
                answered.push(table.answer(server.as_fd(), &t).unwrap());
            }
            answered
        });
        let fds = redeem(client.as_fd(), &tok, 1).unwrap();
        let fd = fds.into_iter().next().unwrap();
        Doorbell::from_peer_fd(fd, End::Ring).unwrap().ring();
        assert_eq!(bell.drain(), 1, "the fd is the provider's doorbell");
        let again = redeem(client.as_fd(), &tok, 1).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::PermissionDenied);
        drop(client);
        assert_eq!(provider.join().unwrap(), vec![true, false]);
    }

    #[test]
    fn redeem_rejects_a_wrong_fd_count() {
        let (client, server) = UnixStream::pair().unwrap();
        let table = HandoffTable::new();
        let tok = table.offer(vec![bell_fd(), bell_fd()]);
        let t = std::thread::spawn(move || {
            let got = read_token(server.as_fd()).unwrap().unwrap();
            table.answer(server.as_fd(), &got).unwrap()
        });
        assert!(redeem(client.as_fd(), &tok, 3).is_err());
        assert!(t.join().unwrap());
    }

    #[test]
    fn redeem_sees_eof() {
        let (client, server) = UnixStream::pair().unwrap();
        drop(server);
        assert!(redeem(client.as_fd(), &Token([0; 16]), 1).is_err());
    }
}
