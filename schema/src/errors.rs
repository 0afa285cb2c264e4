//! The error words of the socket service.
//!
//! A failed capnp call carries only a description. capnet services start it
//! with one of these words and a colon so that every client, in any language,
//! can tell what happened without parsing prose.

use std::fmt;
use std::io;

/// What went wrong with a socket operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SocketError {
    Refused,
    Reset,
    Aborted,
    TimedOut,
    AddrInUse,
    AddrNotAvailable,
    Unreachable,
    NotConnected,
    Invalid,
    Closed,
    Busy,
    Denied,
    WouldBlock,
    /// The port or service does not offer what was asked (an offload).
    Unsupported,
    /// The capability was revoked (an offload context released or taken away).
    Revoked,
    /// The client reached one of its limits (sockets, buffer bytes,
    /// subscriptions, calls in flight, connections): see `[limits]` in the
    /// service set's configuration.
    Limit,
}

impl SocketError {
    pub const ALL: [SocketError; 16] = [
        SocketError::Refused,
        SocketError::Reset,
        SocketError::Aborted,
        SocketError::TimedOut,
        SocketError::AddrInUse,
        SocketError::AddrNotAvailable,
        SocketError::Unreachable,
        SocketError::NotConnected,
        SocketError::Invalid,
        SocketError::Closed,
        SocketError::Busy,
        SocketError::Denied,
        SocketError::WouldBlock,
        SocketError::Unsupported,
        SocketError::Revoked,
        SocketError::Limit,
    ];

    /// The word that starts a failed call's description.
    pub fn word(self) -> &'static str {
        match self {
            SocketError::Refused => "refused",
            SocketError::Reset => "reset",
            SocketError::Aborted => "aborted",
            SocketError::TimedOut => "timedout",
            SocketError::AddrInUse => "addrinuse",
            SocketError::AddrNotAvailable => "addrnotavail",
            SocketError::Unreachable => "unreachable",
            SocketError::NotConnected => "notconnected",
            SocketError::Invalid => "invalid",
            SocketError::Closed => "closed",
            SocketError::Busy => "busy",
            SocketError::Denied => "denied",
            SocketError::WouldBlock => "wouldblock",
            SocketError::Unsupported => "unsupported",
            SocketError::Revoked => "revoked",
            SocketError::Limit => "limit",
        }
    }

    /// A small stable number, used where an error travels in shared memory.
    pub fn code(self) -> u32 {
        Self::ALL.iter().position(|e| *e == self).unwrap_or(0) as u32 + 1
    }

    pub fn from_code(code: u32) -> Option<SocketError> {
        Self::ALL.get((code as usize).checked_sub(1)?).copied()
    }

    /// Finds the error word in `description`. capnp-rpc may put its own
    /// prefix ("remote exception: ") before the word the service wrote.
    pub fn from_description(description: &str) -> Option<SocketError> {
        description
            .split(':')
            .map(str::trim)
            .find_map(|word| Self::ALL.iter().copied().find(|e| e.word() == word))
    }

    pub fn io_kind(self) -> io::ErrorKind {
        match self {
            SocketError::Refused => io::ErrorKind::ConnectionRefused,
            SocketError::Reset => io::ErrorKind::ConnectionReset,
            SocketError::Aborted => io::ErrorKind::ConnectionAborted,
            SocketError::TimedOut => io::ErrorKind::TimedOut,
            SocketError::AddrInUse => io::ErrorKind::AddrInUse,
            SocketError::AddrNotAvailable => io::ErrorKind::AddrNotAvailable,
            SocketError::Unreachable => io::ErrorKind::HostUnreachable,
            SocketError::NotConnected => io::ErrorKind::NotConnected,
            SocketError::Invalid => io::ErrorKind::InvalidInput,
            SocketError::Closed => io::ErrorKind::BrokenPipe,
            SocketError::Busy => io::ErrorKind::ResourceBusy,
            SocketError::Denied => io::ErrorKind::PermissionDenied,
            SocketError::WouldBlock => io::ErrorKind::WouldBlock,
            SocketError::Unsupported => io::ErrorKind::Unsupported,
            SocketError::Revoked => io::ErrorKind::NotConnected,
            SocketError::Limit => io::ErrorKind::QuotaExceeded,
        }
    }

    /// A capnp error whose description starts with this word.
    pub fn to_capnp(self, detail: impl fmt::Display) -> capnp::Error {
        capnp::Error::failed(format!("{}: {}", self.word(), detail))
    }
}

impl fmt::Display for SocketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// A capnp error as a person should read it: the server's description
/// (`denied: ...`, `invalid: ...`) without capnp-rpc's prefixes
/// ("Failed: remote exception: ").
pub fn describe(e: &capnp::Error) -> String {
    match plain_description(&e.extra) {
        "" => e.to_string(),
        text => text.to_string(),
    }
}

/// Turns a failed capnp call into the `io::Error` a socket user expects,
/// with a message a person can read: the service's own words ("limit: this
/// client holds 1024 sockets ..."), without capnp's "Failed: remote
/// exception:" framing.
pub fn capnp_to_io(err: capnp::Error) -> io::Error {
    let kind = match err.kind {
        capnp::ErrorKind::Disconnected => io::ErrorKind::NotConnected,
        _ => SocketError::from_description(&err.extra)
            .map(SocketError::io_kind)
            .unwrap_or(io::ErrorKind::Other),
    };
    let text = plain_description(&err.extra);
    let text = match err.kind {
        capnp::ErrorKind::Disconnected => format!("the capnet service went away: {text}"),
        _ => text.to_string(),
    };
    io::Error::new(kind, text)
}

/// `description` without the prefixes capnp-rpc adds on its way
/// ("remote exception: "), so that what a service wrote is what a person
/// reads.
pub fn plain_description(description: &str) -> &str {
    let mut text = description.trim();
    while let Some(rest) = text.strip_prefix("remote exception:") {
        text = rest.trim_start();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_codes_round_trip() {
        for e in SocketError::ALL {
            assert_eq!(SocketError::from_code(e.code()), Some(e));
            let capnp = e.to_capnp("detail");
            assert_eq!(SocketError::from_description(&capnp.extra), Some(e));
        }
        assert_eq!(SocketError::from_code(0), None);
        assert_eq!(SocketError::from_description("nonsense: x"), None);
        assert_eq!(
            SocketError::from_description("remote exception: reset: 10.0.0.2:80"),
            Some(SocketError::Reset)
        );
    }

    #[test]
    fn io_kinds() {
        let err = capnp_to_io(SocketError::Refused.to_capnp("10.0.0.2:80"));
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        let err = capnp_to_io(capnp::Error::disconnected("gone".into()));
        assert_eq!(err.kind(), io::ErrorKind::NotConnected);
    }

    #[test]
    fn messages_are_plain() {
        let remote = capnp::Error::failed(
            "remote exception: limit: this client holds 4 sockets (limit 4)".into(),
        );
        let err = capnp_to_io(remote);
        assert_eq!(err.kind(), io::ErrorKind::QuotaExceeded);
        assert_eq!(
            err.to_string(),
            "limit: this client holds 4 sockets (limit 4)"
        );
        let err = capnp_to_io(SocketError::Denied.to_capnp("port 7 needs root"));
        assert_eq!(err.to_string(), "denied: port 7 needs root");
        assert!(!err.to_string().contains("Failed"));
    }
}
