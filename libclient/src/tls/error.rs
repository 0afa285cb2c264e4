//! What tlsd's failed calls mean: its error words mapped to `io::Error`s.

use crate::conn::Service;
use capnet_schema::errors::SocketError;
use std::io;
use std::net::SocketAddr;

/// How tlsd's failed calls say what went wrong beyond the socket words
/// (the first word of the description; see schema/tls.capnp).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlsError {
    /// The handshake failed (an alert, a certificate that did not verify,
    /// no common version or suite). `InvalidData`.
    Handshake,
    /// tlsd has no server identity (certificate and key). `NotFound`.
    Identity,
    /// The peer sent a fatal alert after the handshake. `InvalidData`.
    Alert,
}

impl TlsError {
    pub const ALL: [TlsError; 3] = [TlsError::Handshake, TlsError::Identity, TlsError::Alert];

    /// The word that starts a failed call's description.
    pub fn word(self) -> &'static str {
        match self {
            TlsError::Handshake => "handshake",
            TlsError::Identity => "identity",
            TlsError::Alert => "alert",
        }
    }

    pub fn io_kind(self) -> io::ErrorKind {
        match self {
            TlsError::Handshake | TlsError::Alert => io::ErrorKind::InvalidData,
            TlsError::Identity => io::ErrorKind::NotFound,
        }
    }

    fn from_word(word: &str) -> Option<TlsError> {
        Self::ALL.into_iter().find(|e| e.word() == word)
    }

    /// The TLS word of an error libclient returned for a tlsd call (its
    /// message keeps tlsd's description), if it has one.
    pub fn of(err: &io::Error) -> Option<TlsError> {
        let description = err.to_string();
        match first_word(&description)? {
            Word::Tls(e) => Some(e),
            Word::Socket(_) => None,
        }
    }
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

enum Word {
    Tls(TlsError),
    Socket(SocketError),
}

/// The first error word in `description`. capnp-rpc may put its own prefix
/// ("remote exception: ") before the word tlsd wrote.
fn first_word(description: &str) -> Option<Word> {
    description.split(':').map(str::trim).find_map(|w| {
        TlsError::from_word(w).map(Word::Tls).or_else(|| {
            SocketError::ALL
                .into_iter()
                .find(|e| e.word() == w)
                .map(Word::Socket)
        })
    })
}

/// Maps a failed tlsd call inside a job; the message is tlsd's
/// description, without what capnp puts around it ("Failed: remote
/// exception: "). A broken connection is the service going away.
pub(crate) fn tls_err(e: capnp::Error) -> io::Error {
    if e.kind == capnp::ErrorKind::Disconnected {
        return Service::Tls.gone();
    }
    let kind = match first_word(&e.extra) {
        Some(Word::Tls(t)) => t.io_kind(),
        Some(Word::Socket(s)) => s.io_kind(),
        None => io::ErrorKind::Other,
    };
    io::Error::new(kind, capnet_schema::errors::describe(&e))
}

pub(super) fn read_addr(
    r: capnet_schema::common_capnp::socket_addr::Reader<'_>,
) -> io::Result<SocketAddr> {
    capnet_schema::addr::read_socket_addr(r).map_err(tls_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(description: &str) -> capnp::Error {
        capnp::Error::failed(description.to_owned())
    }

    #[test]
    fn tls_words_map_to_io_kinds_and_keep_the_description() {
        let cases = [
            ("handshake: certificate expired", io::ErrorKind::InvalidData),
            (
                "identity: no certificate configured",
                io::ErrorKind::NotFound,
            ),
            ("alert: peer sent decrypt_error", io::ErrorKind::InvalidData),
            (
                "remote exception: handshake: received fatal alert: HandshakeFailure",
                io::ErrorKind::InvalidData,
            ),
            (
                "limit: uid 1000 holds 256 TLS sockets",
                io::ErrorKind::QuotaExceeded,
            ),
        ];
        for (description, kind) in cases {
            let e = tls_err(failed(description));
            assert_eq!(e.kind(), kind, "{description}");
            let plain = description.trim_start_matches("remote exception: ");
            assert_eq!(e.to_string(), plain);
        }
        let e = tls_err(failed("handshake: x"));
        assert_eq!(TlsError::of(&e), Some(TlsError::Handshake));
        assert_eq!(
            TlsError::of(&tls_err(failed("identity: none"))),
            Some(TlsError::Identity)
        );
        assert_eq!(
            TlsError::of(&tls_err(failed("alert: bad_record_mac"))),
            Some(TlsError::Alert)
        );
    }

    #[test]
    fn socket_words_still_map_like_netsrv() {
        for s in SocketError::ALL {
            let e = tls_err(s.to_capnp("10.0.0.2:443"));
            assert_eq!(e.kind(), s.io_kind(), "{s}");
            assert_eq!(TlsError::of(&e), None);
        }
        // The first word decides: a socket word before a TLS word.
        let e = tls_err(failed("refused: handshake never started"));
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(tls_err(failed("nonsense")).kind(), io::ErrorKind::Other);
    }

    #[test]
    fn a_broken_connection_is_tlsd_gone() {
        let e = tls_err(capnp::Error::disconnected("eof".into()));
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        assert!(e.to_string().contains("TLS service went away"), "{e}");
    }
}
