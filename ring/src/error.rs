//! Errors of the data plane.
//!
//! `Corrupt` means the peer broke the ring contract (impossible index, descriptor not lent, ...):
//! the caller ends that peer's session. It is never produced by our own mistakes.

use std::fmt;
use std::io;

#[derive(Debug)]
pub enum RingError {
    /// An index or descriptor read from shared memory breaks the contract; end the session.
    Corrupt(&'static str),
    /// Sizes or layouts that cannot work (not a power of two, region too small, header mismatch).
    Layout(&'static str),
    /// The operating system refused.
    Io(io::Error),
    /// The queue has no free slot (only a plain queue can be full; a channel's cannot).
    Full,
    /// This end was closed locally and cannot be written any more.
    Closed,
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::Corrupt(what) => write!(f, "peer corrupted the ring: {what}"),
            RingError::Layout(what) => write!(f, "bad ring layout: {what}"),
            RingError::Io(e) => write!(f, "ring i/o: {e}"),
            RingError::Full => f.write_str("queue full"),
            RingError::Closed => f.write_str("ring closed"),
        }
    }
}

impl std::error::Error for RingError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RingError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for RingError {
    fn from(e: io::Error) -> Self {
        RingError::Io(e)
    }
}

impl From<RingError> for io::Error {
    fn from(e: RingError) -> Self {
        let kind = match &e {
            RingError::Io(_) => return into_io(e),
            RingError::Corrupt(_) | RingError::Layout(_) => io::ErrorKind::InvalidData,
            RingError::Full => io::ErrorKind::WouldBlock,
            RingError::Closed => io::ErrorKind::BrokenPipe,
        };
        io::Error::new(kind, e)
    }
}

fn into_io(e: RingError) -> io::Error {
    match e {
        RingError::Io(e) => e,
        other => io::Error::other(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_problem() {
        assert_eq!(
            RingError::Corrupt("queue tail").to_string(),
            "peer corrupted the ring: queue tail"
        );
        assert_eq!(
            RingError::Layout("capacity").to_string(),
            "bad ring layout: capacity"
        );
        assert_eq!(RingError::Full.to_string(), "queue full");
    }

    #[test]
    fn converts_to_io_error_kinds() {
        let e: io::Error = RingError::Corrupt("x").into();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let e: io::Error = RingError::Io(io::Error::from(io::ErrorKind::NotFound)).into();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let e: io::Error = RingError::Closed.into();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn io_source_is_kept() {
        use std::error::Error;
        let e = RingError::from(io::Error::from(io::ErrorKind::Unsupported));
        assert!(e.source().is_some());
        assert!(RingError::Full.source().is_none());
    }
}
