//! Doorbells: how one process wakes another, or itself.
//!
//! A doorbell between two processes is an AF_UNIX datagram socketpair. The ringer holds one end,
//! the waiter the other, and neither holds the other's. Ring is `send` of one byte, drain is
//! `recv` until EAGAIN, wait is `poll`, and every call asks for non-blocking behaviour itself
//! (`MSG_DONTWAIT`) instead of trusting the file's `O_NONBLOCK`: a peer that clears that flag on
//! its end, or on a dup of ours it kept when it created the pair, changes nothing for us. A full
//! socket buffer makes `send` answer EAGAIN, which means a wakeup is pending anyway.
//!
//! (An eventfd sent to a peer shares one open file description with it: the peer clears
//! `O_NONBLOCK`, fills the counter to its maximum, and our next ring sleeps in `write(2)`
//! forever. That is why only purely local doorbells are eventfds.)
//!
//! Each end is also shut down in the direction it does not use, so that a peer cannot park
//! datagrams at an end nobody reads, and a wait end cannot ring anybody by mistake.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::{cvt, invalid};

/// Which end of a doorbell between processes this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Rings the peer ([`Doorbell::ring`] only).
    Ring,
    /// Woken by the peer ([`Doorbell::wait`], [`Doorbell::drain`]).
    Wait,
}

/// A doorbell, or one end of one. Ring wakes the waiter, drain takes pending rings without
/// blocking, wait sleeps until rung. Nothing here ever blocks on state a peer controls.
#[derive(Debug)]
pub struct Doorbell {
    /// What a poll loop watches ([`AsFd`]).
    fd: OwnedFd,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// An eventfd that only this process holds.
    Local,
    /// One end of a socketpair whose other end a peer holds.
    Peer(End),
    /// A wait end this process rings too: `fd` is an epoll instance over both fds.
    Merged { wait: OwnedFd, local: OwnedFd },
}

impl Doorbell {
    /// Most datagrams one [`Self::drain`] takes, so that a peer ringing as fast as we drain
    /// cannot keep us there. A drain that took this many may have left some.
    pub const DRAIN_MAX: u64 = 64;

    /// A doorbell this process both rings and waits on (an eventfd). Never hand it to a peer:
    /// use [`Self::pair`] for that.
    pub fn new() -> io::Result<Doorbell> {
        Ok(Doorbell {
            fd: eventfd()?,
            kind: Kind::Local,
        })
    }

    /// A doorbell between two processes: `(ring end, wait end)`. Keep one, send the other's fd
    /// ([`Self::into_fd`]) to the peer, which takes it with [`Self::from_peer_fd`].
    pub fn pair() -> io::Result<(Doorbell, Doorbell)> {
        let mut fds = [0 as RawFd; 2];
        let ty = libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
        // SAFETY: writes two fds into `fds`.
        cvt(unsafe { libc::socketpair(libc::AF_UNIX, ty, 0, fds.as_mut_ptr()) })?;
        // SAFETY: socketpair returned two fresh fds that nothing else owns.
        let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok((Doorbell::end(a, End::Ring)?, Doorbell::end(b, End::Wait)?))
    }

    /// Takes an end of a doorbell a peer made with [`Self::pair`]. It must be a Unix datagram
    /// socket, else `InvalidData`. Nothing else about it needs checking: no flag the peer sets
    /// on it, now or later, can make our calls block.
    pub fn from_peer_fd(fd: OwnedFd, end: End) -> io::Result<Doorbell> {
        let opt = |name| {
            sockopt(fd.as_fd(), name).map_err(|e| match e.raw_os_error() {
                Some(libc::ENOTSOCK) => invalid("doorbell is not a socket"),
                _ => e,
            })
        };
        if opt(libc::SO_DOMAIN)? != libc::AF_UNIX || opt(libc::SO_TYPE)? != libc::SOCK_DGRAM {
            return Err(invalid("doorbell is not a Unix datagram socket"));
        }
        Doorbell::end(fd, end)
    }

    fn end(fd: OwnedFd, end: End) -> io::Result<Doorbell> {
        let how = match end {
            End::Ring => {
                // Rings a waiter has not taken yet stay charged to the ringer's send buffer
                // (a socketpair has no queue limit of its own): keep that to the kernel's
                // minimum, a few datagrams, rather than ~200 KiB per doorbell a waiter never
                // drains. One pending ring is all a waiter needs.
                setsockopt(fd.as_fd(), libc::SO_SNDBUF, 0)?;
                libc::SHUT_RD
            }
            End::Wait => libc::SHUT_WR,
        };
        // SAFETY: plain syscall on an fd we own.
        cvt(unsafe { libc::shutdown(fd.as_raw_fd(), how) })?;
        Ok(Doorbell {
            fd,
            kind: Kind::Peer(end),
        })
    }

    /// This wait end, made ringable from this process too (to wake its own sleepers): rings
    /// from here go to a private eventfd, and the fd a poll loop watches is an epoll instance
    /// over both. A local doorbell is returned as it is; a ring end is `InvalidInput`.
    pub fn with_local_ring(self) -> io::Result<Doorbell> {
        match self.kind {
            Kind::Peer(End::Wait) => {}
            Kind::Local | Kind::Merged { .. } => return Ok(self),
            Kind::Peer(End::Ring) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a ring end has nothing to wait on",
                ))
            }
        }
        let local = eventfd()?;
        // SAFETY: plain syscall.
        let ep = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: epoll_create1 returned a fresh fd that nothing else owns.
        let ep = unsafe { OwnedFd::from_raw_fd(ep) };
        epoll_add(
            ep.as_fd(),
            self.fd.as_fd(),
            libc::EPOLLIN | libc::EPOLLRDHUP,
        )?;
        epoll_add(ep.as_fd(), local.as_fd(), libc::EPOLLIN)?;
        Ok(Doorbell {
            fd: ep,
            kind: Kind::Merged {
                wait: self.fd,
                local,
            },
        })
    }

    /// Wakes the waiter; never blocks. Errors are ignored: EAGAIN means earlier rings are still
    /// pending (the waiter will wake anyway), anything else means the peer is gone.
    pub fn ring(&self) {
        match &self.kind {
            Kind::Local => write_event(self.fd.as_fd()),
            Kind::Merged { local, .. } => write_event(local.as_fd()),
            Kind::Peer(End::Ring) => {
                let one = 1u8;
                let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
                // SAFETY: sends 1 byte from a live u8.
                unsafe { libc::send(self.fd.as_raw_fd(), (&one as *const u8).cast(), 1, flags) };
            }
            Kind::Peer(End::Wait) => {
                debug_assert!(false, "a wait end cannot ring: see with_local_ring");
            }
        }
    }

    /// Takes pending rings without blocking; how many (0 if none, at most
    /// [`Self::DRAIN_MAX`] from a peer).
    pub fn drain(&self) -> u64 {
        match &self.kind {
            Kind::Local => read_event(self.fd.as_fd()),
            Kind::Peer(End::Wait) => recv_all(self.fd.as_fd()),
            Kind::Peer(End::Ring) => 0,
            Kind::Merged { wait, local } => recv_all(wait.as_fd()) + read_event(local.as_fd()),
        }
    }

    /// Sleeps until rung (then drains) or until `timeout`; false on timeout. EINTR is retried.
    /// A wait end the peer shut down (see [`Self::peer_gone`]) is a `BrokenPipe` error, not a
    /// wakeup: it would wake every time, and a sleep would become a busy loop.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let (first, local) = match &self.kind {
            Kind::Local => (self.fd.as_fd(), None),
            Kind::Peer(End::Wait) => (self.fd.as_fd(), None),
            Kind::Merged { wait, local } => (wait.as_fd(), Some(local.as_fd())),
            Kind::Peer(End::Ring) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a ring end has nothing to wait on",
                ))
            }
        };
        let from_peer = !matches!(self.kind, Kind::Local);
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let mut fds = [
                pollfd(
                    first,
                    libc::POLLIN | if from_peer { libc::POLLRDHUP } else { 0 },
                ),
                // poll(2) skips negative fds.
                local.map_or(pollfd_none(), |l| pollfd(l, libc::POLLIN)),
            ];
            if poll(&mut fds, deadline)? {
                if from_peer && fds[0].revents & GONE != 0 {
                    return Err(gone());
                }
                self.drain();
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
        }
    }

    /// True if this wait end can never be rung again because the peer shut it down (through a
    /// dup it kept when it created the pair). Such an fd stays readable: a poll loop must stop
    /// watching it and treat the peer as gone. (A peer that merely closes its end leaves ours
    /// quiet: datagram sockets report no hangup.)
    pub fn peer_gone(&self) -> bool {
        let fd = match &self.kind {
            Kind::Peer(End::Wait) => self.fd.as_fd(),
            Kind::Merged { wait, .. } => wait.as_fd(),
            Kind::Local | Kind::Peer(End::Ring) => return false,
        };
        shut_down(fd)
    }

    pub fn try_clone(&self) -> io::Result<Doorbell> {
        let kind = match &self.kind {
            Kind::Local => Kind::Local,
            Kind::Peer(end) => Kind::Peer(*end),
            Kind::Merged { wait, local } => Kind::Merged {
                wait: wait.try_clone()?,
                local: local.try_clone()?,
            },
        };
        Ok(Doorbell {
            fd: self.fd.try_clone()?,
            kind,
        })
    }

    /// The fd, to hand an end of a [`Self::pair`] to a peer.
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

/// Poll bits of a wait end that will never be rung again.
const GONE: libc::c_short = libc::POLLRDHUP | libc::POLLHUP | libc::POLLNVAL;

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the peer shut down its doorbell")
}

fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
    // SAFETY: eventfd returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds one to a local eventfd. Errors are ignored: EAGAIN means the counter is saturated,
/// i.e. rung.
fn write_event(fd: BorrowedFd<'_>) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64.
    unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
}

fn read_event(fd: BorrowedFd<'_>) -> u64 {
    let mut n: u64 = 0;
    // SAFETY: reads at most 8 bytes into a live u64.
    let r = unsafe { libc::read(fd.as_raw_fd(), (&mut n as *mut u64).cast(), 8) };
    if r == 8 {
        n
    } else {
        0
    }
}

/// Receives the datagrams waiting, at most [`Doorbell::DRAIN_MAX`], with
/// `recvmmsg` a batch at a time (one `recv` each and one more to hear
/// EAGAIN was a system call per wakeup more than needed; a batch short of
/// full says the queue is empty). Another error (a socket error the kernel
/// reported, e.g. the peer reconnecting its end) is taken by the call and
/// ends it.
fn recv_all(fd: BorrowedFd<'_>) -> u64 {
    // Rarely more than a few wait: a batch is small to set up.
    const BATCH: usize = 8;
    let mut n = 0;
    while n < Doorbell::DRAIN_MAX {
        let got = recv_batch::<BATCH>(fd);
        n += got.taken;
        if got.ended || got.taken < BATCH as u64 {
            break;
        }
    }
    n.min(Doorbell::DRAIN_MAX)
}

struct Batch {
    /// Rings taken.
    taken: u64,
    /// The end was shut down (or the call failed): stop.
    ended: bool,
}

fn recv_batch<const N: usize>(fd: BorrowedFd<'_>) -> Batch {
    // Rings are one byte; longer datagrams are truncated into one byte each.
    let mut bytes = [0u8; N];
    // SAFETY: iovec and mmsghdr are plain data; all zeroes is a valid value.
    let mut iov: [libc::iovec; N] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; N] = unsafe { std::mem::zeroed() };
    for ((v, b), m) in iov.iter_mut().zip(bytes.iter_mut()).zip(msgs.iter_mut()) {
        v.iov_base = (b as *mut u8).cast();
        v.iov_len = 1;
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
    }
    let got = loop {
        // SAFETY: N headers, each with one iovec of one live byte; no
        // names, no control data; the arrays outlive the call.
        let r = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                N as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        match r {
            0.. => break r as usize,
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            _ => {
                return Batch {
                    taken: 0,
                    ended: true,
                }
            }
        }
    };
    // An empty datagram, or end of input on an end the peer shut down
    // (which the kernel reports as one empty datagram after another).
    match msgs[..got].iter().position(|m| m.msg_len == 0) {
        Some(first_empty) if shut_down(fd) => Batch {
            taken: first_empty as u64,
            ended: true,
        },
        _ => Batch {
            taken: got as u64,
            ended: false,
        },
    }
}

/// Whether the peer shut down reading on our wait end (no datagram can arrive any more).
fn shut_down(fd: BorrowedFd<'_>) -> bool {
    let mut fds = [pollfd(fd, libc::POLLRDHUP)];
    // SAFETY: one valid pollfd, no waiting.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) };
    n > 0 && fds[0].revents & GONE != 0
}

fn sockopt(fd: BorrowedFd<'_>, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid out pointers of the sizes given.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(v)
}

fn setsockopt(fd: BorrowedFd<'_>, name: libc::c_int, v: libc::c_int) -> io::Result<()> {
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` is a valid int option value of the size given.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&v as *const libc::c_int).cast(),
            len,
        )
    })?;
    Ok(())
}

fn epoll_add(ep: BorrowedFd<'_>, fd: BorrowedFd<'_>, events: libc::c_int) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: events as u32,
        u64: 0,
    };
    // SAFETY: `ev` is a valid epoll_event for the call; both fds are live.
    cvt(unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd.as_raw_fd(), &mut ev) })?;
    Ok(())
}

fn pollfd(fd: BorrowedFd<'_>, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    }
}

fn pollfd_none() -> libc::pollfd {
    libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }
}

/// One poll until `deadline`; Ok(false) on timeout or EINTR (the caller loops).
fn poll(fds: &mut [libc::pollfd], deadline: Option<Instant>) -> io::Result<bool> {
    let ms = match deadline {
        None => -1,
        Some(d) => timeout_ms(d.saturating_duration_since(Instant::now())),
    };
    // SAFETY: `fds` is a valid array of pollfds of the length given.
    match cvt(unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) }) {
        Ok(n) => Ok(n > 0),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(e),
    }
}

/// Rounds up, so that a short timeout never turns into a busy poll(0) loop.
fn timeout_ms(d: Duration) -> libc::c_int {
    let ms = d.as_nanos().div_ceil(1_000_000);
    ms.min(libc::c_int::MAX as u128) as libc::c_int
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_ring_drain_wait() {
        let b = Doorbell::new().unwrap();
        assert_eq!(b.drain(), 0);
        b.ring();
        b.ring();
        assert_eq!(b.drain(), 2);
        assert!(!b.wait(Some(Duration::from_millis(5))).unwrap());
        b.ring();
        assert!(b.wait(Some(Duration::from_millis(5))).unwrap());
        assert_eq!(b.drain(), 0, "wait drains");
    }

    #[test]
    fn pair_ring_drain_wait() {
        let (ring, wait) = Doorbell::pair().unwrap();
        assert_eq!(wait.drain(), 0);
        ring.ring();
        ring.ring();
        assert_eq!(wait.drain(), 2);
        assert_eq!(ring.drain(), 0, "a ring end has nothing to drain");
        assert!(!wait.wait(Some(Duration::from_millis(5))).unwrap());
        ring.ring();
        assert!(wait.wait(Some(Duration::from_millis(5))).unwrap());
        assert_eq!(wait.drain(), 0, "wait drains");
        assert!(ring.wait(Some(Duration::ZERO)).is_err());
        assert!(!wait.peer_gone());
        // An empty datagram from a live peer is a ring too; a long one is one ring.
        for len in [0usize, 300] {
            let data = vec![1u8; len];
            // SAFETY: sends from a live buffer of `len` bytes.
            let sent = unsafe { libc::send(ring.as_raw_fd(), data.as_ptr().cast(), len, 0) };
            assert_eq!(sent, len as isize);
        }
        ring.ring();
        assert_eq!(wait.drain(), 3);
        assert_eq!(wait.drain(), 0);
    }

    #[test]
    fn pair_wakes_another_thread() {
        let (ring, wait) = Doorbell::pair().unwrap();
        let t = std::thread::spawn(move || wait.wait(None).unwrap());
        std::thread::sleep(Duration::from_millis(10));
        ring.ring();
        assert!(t.join().unwrap());
    }

    /// The attack an eventfd fell to: the peer makes its end (here a dup of ours, as a peer that
    /// created the pair could keep) blocking, fills every buffer it can and never drains. Our
    /// ring must still return at once, and the rings already queued still wake the waiter.
    #[test]
    fn ring_never_blocks_on_a_blocking_saturated_peer() {
        let (ring, wait) = Doorbell::pair().unwrap();
        for fd in [ring.as_fd(), wait.as_fd()] {
            // SAFETY: plain fcntl on a live fd: clear O_NONBLOCK on the shared description.
            unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, 0) };
            let small: libc::c_int = 1;
            // SAFETY: a valid int option for the call (the kernel rounds it up to its minimum).
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_SNDBUF,
                    (&small as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
        }
        // Fill the wait end's queue with big datagrams, as a hostile ringer could.
        let big = vec![0u8; 4096];
        // SAFETY: sends from a live buffer, never blocking.
        while unsafe {
            libc::send(
                ring.as_raw_fd(),
                big.as_ptr().cast(),
                big.len(),
                libc::MSG_DONTWAIT,
            )
        } > 0
        {}
        let t0 = Instant::now();
        for _ in 0..10_000 {
            ring.ring();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "ring blocked: {:?}",
            t0.elapsed()
        );
        assert!(wait.wait(Some(Duration::ZERO)).unwrap());
        // The queue drained, the next ring gets through again.
        while wait.drain() > 0 {}
        ring.ring();
        assert_eq!(wait.drain(), 1);
    }

    #[test]
    fn undrained_rings_are_few() {
        let (ring, wait) = Doorbell::pair().unwrap();
        for _ in 0..10_000 {
            ring.ring();
        }
        let mut pending = 0;
        loop {
            match wait.drain() {
                0 => break,
                n => pending += n,
            }
        }
        assert!((1..=16).contains(&pending), "{pending} rings pending");
    }

    #[test]
    fn a_peer_shutting_our_wait_end_is_an_error_not_a_busy_loop() {
        let (ring, wait) = Doorbell::pair().unwrap();
        let dup = wait.try_clone().unwrap();
        ring.ring();
        // SAFETY: plain syscall on a live fd (the peer's dup of our wait end).
        unsafe { libc::shutdown(dup.as_raw_fd(), libc::SHUT_RDWR) };
        assert!(wait.peer_gone());
        assert_eq!(
            wait.wait(None).unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
        assert!(
            wait.drain() <= 1,
            "a shut-down end drains what was queued, then stops"
        );
        // A peer that closes its end leaves ours quiet rather than always readable.
        let (ring, wait) = Doorbell::pair().unwrap();
        drop(ring);
        assert!(!wait.peer_gone());
        assert!(!wait.wait(Some(Duration::from_millis(5))).unwrap());
    }

    #[test]
    fn peer_fds_must_be_unix_datagram_sockets() {
        let (ring, wait) = Doorbell::pair().unwrap();
        assert!(Doorbell::from_peer_fd(ring.into_fd(), End::Ring).is_ok());
        assert!(Doorbell::from_peer_fd(wait.into_fd(), End::Wait).is_ok());
        let null: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        let event = Doorbell::new().unwrap().into_fd();
        let (stream, _) = std::os::unix::net::UnixStream::pair().unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for fd in [null, event, stream.into(), udp.into()] {
            assert_eq!(
                Doorbell::from_peer_fd(fd, End::Wait).unwrap_err().kind(),
                io::ErrorKind::InvalidData
            );
        }
    }

    #[test]
    fn ends_are_one_way() {
        let (ring, wait) = Doorbell::pair().unwrap();
        let one = 1u8;
        // SAFETY: sends 1 byte from a live u8, never blocking.
        let r = unsafe {
            libc::send(
                wait.as_raw_fd(),
                (&one as *const u8).cast(),
                1,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        assert_eq!(r, -1, "nothing can queue datagrams at the ring end");
        assert_eq!(ring.drain(), 0);
    }

    #[test]
    fn a_merged_wait_end_wakes_from_either_side() {
        let (ring, wait) = Doorbell::pair().unwrap();
        let merged = wait.with_local_ring().unwrap();
        let other = merged.try_clone().unwrap();
        assert!(!merged.wait(Some(Duration::from_millis(5))).unwrap());
        other.ring();
        assert!(merged.wait(Some(Duration::from_millis(5))).unwrap());
        ring.ring();
        assert!(merged.wait(Some(Duration::from_millis(5))).unwrap());
        assert_eq!(merged.drain(), 0);
        // The fd a poll loop watches turns readable for both.
        let readable = |d: &Doorbell| {
            let mut fds = [pollfd(d.as_fd(), libc::POLLIN)];
            poll(&mut fds, Some(Instant::now())).unwrap()
        };
        assert!(!readable(&merged));
        other.ring();
        assert!(readable(&merged));
        merged.drain();
        ring.ring();
        assert!(readable(&merged));
        assert!(Doorbell::pair().unwrap().0.with_local_ring().is_err());
    }

    #[test]
    fn timeouts_round_up() {
        assert_eq!(timeout_ms(Duration::from_micros(1)), 1);
        assert_eq!(timeout_ms(Duration::ZERO), 0);
        assert_eq!(timeout_ms(Duration::from_secs(u64::MAX)), libc::c_int::MAX);
    }
}
