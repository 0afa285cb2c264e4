//! Redox (and any other non-Linux target): the seam compiles, and every operation that needs
//! the OS answers `io::ErrorKind::Unsupported` until the Redox schemes are wired in.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

fn unsupported<T>() -> io::Result<T> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "capnet-ring: not yet ported to this OS",
    ))
}

/// No value of this type exists: regions cannot be made here yet.
#[derive(Debug)]
enum Never {}

#[derive(Debug)]
pub struct SharedRegion {
    never: Never,
}

impl SharedRegion {
    pub fn create(_name: &str, _len: usize) -> io::Result<SharedRegion> {
        unsupported()
    }
    pub fn from_fd(_fd: OwnedFd, _expected_len: usize) -> io::Result<SharedRegion> {
        unsupported()
    }
    pub fn len(&self) -> usize {
        match self.never {}
    }
    pub fn is_empty(&self) -> bool {
        match self.never {}
    }
    pub fn fd(&self) -> BorrowedFd<'_> {
        match self.never {}
    }
    pub fn as_ptr(&self) -> *mut u8 {
        match self.never {}
    }
}

/// Which end of a doorbell between processes this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Ring,
    Wait,
}

/// Holds the fd so that ownership works the same; ringing is not wired up yet.
#[derive(Debug)]
pub struct Doorbell {
    fd: OwnedFd,
}

impl Doorbell {
    pub const DRAIN_MAX: u64 = 64;

    pub fn new() -> io::Result<Doorbell> {
        unsupported()
    }
    pub fn pair() -> io::Result<(Doorbell, Doorbell)> {
        unsupported()
    }
    pub fn from_peer_fd(fd: OwnedFd, _end: End) -> io::Result<Doorbell> {
        Ok(Doorbell { fd })
    }
    pub fn with_local_ring(self) -> io::Result<Doorbell> {
        Ok(self)
    }
    pub fn ring(&self) {}
    pub fn drain(&self) -> u64 {
        0
    }
    pub fn wait(&self, _timeout: Option<Duration>) -> io::Result<bool> {
        unsupported()
    }
    pub fn peer_gone(&self) -> bool {
        false
    }
    pub fn try_clone(&self) -> io::Result<Doorbell> {
        Ok(Doorbell {
            fd: self.fd.try_clone()?,
        })
    }
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

impl AsFd for Doorbell {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Doorbell {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

pub fn send_fds(_sock: BorrowedFd<'_>, _data: &[u8], _fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    unsupported()
}

pub fn recv_fds(
    _sock: BorrowedFd<'_>,
    _buf: &mut [u8],
    _max_fds: usize,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    unsupported()
}

/// Reads the kernel's random scheme. Panics if there is none: tokens must never be guessable.
pub fn random_bytes(out: &mut [u8]) {
    use std::io::Read;
    let mut src = std::fs::File::open("/scheme/rand")
        .or_else(|_| std::fs::File::open("/dev/urandom"))
        .expect("no entropy source");
    src.read_exact(out).expect("entropy source failed");
}

pub fn clear_cloexec(_fd: BorrowedFd<'_>) -> io::Result<()> {
    unsupported()
}
