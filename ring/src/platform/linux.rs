//! Linux: memfd + mmap regions, socketpair and eventfd doorbells, SCM_RIGHTS fd passing,
//! getrandom.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

mod doorbell;
pub use doorbell::{Doorbell, End};

/// Seals every region carries: it can never shrink under a mapping (SIGBUS) or grow, and the
/// seal set itself is final.
const REQUIRED_SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

/// Turns a `-1` return into the errno.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A sealed memfd mapped shared, read-write; unmapped on drop.
#[derive(Debug)]
pub struct SharedRegion {
    base: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
}

// SAFETY: the mapping is process-wide memory; the region itself hands out only a raw pointer.
// Typed access (atomics, byte slices under the ring protocol) is arranged by `crate::shm`.
unsafe impl Send for SharedRegion {}
// SAFETY: as above; `&SharedRegion` offers no unsynchronised access.
unsafe impl Sync for SharedRegion {}

impl SharedRegion {
    /// A fresh zeroed region of `len` bytes, sealed against shrinking and growing.
    pub fn create(name: &str, len: usize) -> io::Result<SharedRegion> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty region"));
        }
        let fd = memfd(name)?;
        let size = libc::off_t::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: plain syscall on an fd we own.
        cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), size) })?;
        // SAFETY: plain syscall on an fd we own.
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, REQUIRED_SEALS) })?;
        map(fd, len)
    }

    /// Maps a region received from a peer. It must be a memfd of exactly `expected_len` bytes
    /// carrying our seals, else `InvalidData`: an unsealed one could shrink and fault us.
    pub fn from_fd(fd: OwnedFd, expected_len: usize) -> io::Result<SharedRegion> {
        if file_size(fd.as_fd())? != expected_len as u64 || expected_len == 0 {
            return Err(invalid("shared region has the wrong size"));
        }
        if seals(fd.as_fd())? & REQUIRED_SEALS != REQUIRED_SEALS {
            return Err(invalid("shared region is not sealed"));
        }
        map(fd, expected_len)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: regions are at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Start of the mapping. Dereferencing it is the caller's business (see `crate::shm`).
    pub fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }
}

impl Drop for SharedRegion {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly what mmap returned; every view into the mapping holds
        // an `Arc<SharedRegion>` (or a borrow), so none outlives this.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn memfd(name: &str) -> io::Result<OwnedFd> {
    let name = CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: `name` is a valid C string for the duration of the call.
    let fd = cvt(unsafe { libc::memfd_create(name.as_ptr(), flags) })?;
    // SAFETY: memfd_create returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn map(fd: OwnedFd, len: usize) -> io::Result<SharedRegion> {
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    // SAFETY: a new shared mapping chosen by the kernel; no existing memory is affected.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let base = NonNull::new(p.cast::<u8>()).ok_or_else(|| invalid("mmap returned null"))?;
    Ok(SharedRegion { base, len, fd })
}

fn file_size(fd: BorrowedFd<'_>) -> io::Result<u64> {
    // SAFETY: all-zero is a valid `stat`; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out pointer for the call.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st.st_size as u64)
}

/// The memfd's seals; `InvalidData` for an fd that cannot carry seals at all.
fn seals(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // SAFETY: plain fcntl query.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) }).map_err(|e| {
        match e.raw_os_error() {
            Some(libc::EINVAL) => invalid("shared region is not a memfd"),
            _ => e,
        }
    })
}

/// Bytes of control buffer for `n` fds, in u64 words (cmsg wants size_t alignment).
fn cmsg_words(n: usize) -> usize {
    // SAFETY: CMSG_SPACE is pure arithmetic.
    let bytes = unsafe { libc::CMSG_SPACE((n * std::mem::size_of::<RawFd>()) as u32) } as usize;
    bytes.div_ceil(8)
}

/// Sends `data` with `fds` attached (SCM_RIGHTS) on a Unix socket. `data` must not be empty when
/// fds are sent (a stream socket needs a byte to carry them). Short writes are completed.
pub fn send_fds(sock: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if data.is_empty() && !fds.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "fds need at least one data byte",
        ));
    }
    let mut sent = send_once(sock, data, fds)?;
    while sent < data.len() {
        sent += send_once(sock, &data[sent..], &[])?;
    }
    Ok(())
}

/// One sendmsg (EINTR retried); returns bytes sent.
fn send_once(sock: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    let mut cbuf = vec![
        0u64;
        if fds.is_empty() {
            0
        } else {
            cmsg_words(fds.len())
        }
    ];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: all-zero is a valid msghdr (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = cbuf.len() * 8;
        let payload = fds.len() * std::mem::size_of::<RawFd>();
        // SAFETY: the control buffer is large enough for one cmsg with `fds.len()` fds
        // (cmsg_words), aligned (u64), and CMSG_FIRSTHDR points into it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(payload as u32) as usize;
            let dst = libc::CMSG_DATA(cmsg).cast::<RawFd>();
            for (i, fd) in fds.iter().enumerate() {
                dst.add(i).write_unaligned(fd.as_raw_fd());
            }
        }
    }
    loop {
        // SAFETY: `msg` points at live iovec and control buffers for the call.
        let r = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receives data and up to `max_fds` fds (close-on-exec). More fds than that is `InvalidData`
/// (the kernel already dropped the excess). Returns (bytes, fds); 0 bytes means EOF.
pub fn recv_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    max_fds: usize,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut cbuf = vec![0u64; cmsg_words(max_fds.max(1))];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: all-zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = cbuf.len() * 8;
    let n = loop {
        // SAFETY: `msg` points at live, writable iovec and control buffers.
        let r = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if r >= 0 {
            break r as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let fds = take_fds(&msg);
    if msg.msg_flags & libc::MSG_CTRUNC != 0 || fds.len() > max_fds {
        return Err(invalid("peer sent more fds than expected"));
    }
    Ok((n, fds))
}

/// Takes ownership of every fd in the SCM_RIGHTS messages of a received `msg`.
fn take_fds(msg: &libc::msghdr) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    // SAFETY: `msg` was filled by recvmsg; CMSG_* walk only the `msg_controllen` bytes the
    // kernel wrote, and each SCM_RIGHTS payload holds `(len - CMSG_LEN(0)) / 4` fresh fds that
    // nothing else owns yet.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let bytes = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let src = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for i in 0..bytes / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(src.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    fds
}

/// Fills `out` from the kernel's CSPRNG. Panics only if the kernel has no getrandom(2), which
/// every supported kernel has.
pub fn random_bytes(out: &mut [u8]) {
    let mut done = 0;
    while done < out.len() {
        let rest = &mut out[done..];
        // SAFETY: writes at most `rest.len()` bytes into `rest`.
        let r = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if r > 0 {
            done += r as usize;
            continue;
        }
        let e = io::Error::last_os_error();
        assert!(
            e.kind() == io::ErrorKind::Interrupted,
            "getrandom failed: {e}"
        );
    }
}

/// Lets `fd` survive exec, for handing it to a child process.
pub fn clear_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain fcntl query.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) })?;
    // SAFETY: plain fcntl update of the fd's own flags.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, flags & !libc::FD_CLOEXEC) })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn socketpair() -> (UnixStream, UnixStream) {
        UnixStream::pair().unwrap()
    }

    #[test]
    fn region_is_zeroed_shared_and_sealed() {
        let r = SharedRegion::create("t", 8192).unwrap();
        assert_eq!(r.len(), 8192);
        assert!(!r.is_empty());
        assert_eq!(seals(r.fd()).unwrap() & REQUIRED_SEALS, REQUIRED_SEALS);
        let fd = r.fd().try_clone_to_owned().unwrap();
        let r2 = SharedRegion::from_fd(fd, 8192).unwrap();
        // SAFETY: test-only byte access to two mappings of the same fresh memfd.
        unsafe {
            assert_eq!(*r.as_ptr().add(100), 0);
            *r.as_ptr().add(100) = 42;
            assert_eq!(*r2.as_ptr().add(100), 42);
        }
    }

    #[test]
    fn region_rejects_zero_length_and_nul_names() {
        assert_eq!(
            SharedRegion::create("t", 0).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            SharedRegion::create("a\0b", 64).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn from_fd_rejects_wrong_size() {
        let r = SharedRegion::create("t", 4096).unwrap();
        let fd = r.fd().try_clone_to_owned().unwrap();
        assert_eq!(
            SharedRegion::from_fd(fd, 8192).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        let fd = r.fd().try_clone_to_owned().unwrap();
        assert_eq!(
            SharedRegion::from_fd(fd, 0).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn from_fd_rejects_unsealed_memfd() {
        let fd = memfd("unsealed").unwrap();
        // SAFETY: plain syscall on an fd we own.
        cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), 4096) }).unwrap();
        assert_eq!(
            SharedRegion::from_fd(fd, 4096).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn from_fd_rejects_non_memfd() {
        let f = std::fs::File::open("/proc/self/exe").unwrap();
        let len = f.metadata().unwrap().len() as usize;
        assert_eq!(
            SharedRegion::from_fd(f.into(), len).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn fds_travel_over_a_socketpair() {
        let (a, b) = socketpair();
        let region = SharedRegion::create("t", 4096).unwrap();
        let (button, bell) = Doorbell::pair().unwrap();
        send_fds(a.as_fd(), b"hi", &[region.fd(), button.as_fd()]).unwrap();
        drop(button);
        let mut buf = [0u8; 8];
        let (n, mut fds) = recv_fds(b.as_fd(), &mut buf, 4).unwrap();
        assert_eq!(&buf[..n], b"hi");
        assert_eq!(fds.len(), 2);
        let peer_bell = Doorbell::from_peer_fd(fds.pop().unwrap(), End::Ring).unwrap();
        let peer_region = SharedRegion::from_fd(fds.pop().unwrap(), 4096).unwrap();
        // SAFETY: test-only byte access.
        unsafe { *region.as_ptr() = 7 };
        // SAFETY: test-only byte access.
        assert_eq!(unsafe { *peer_region.as_ptr() }, 7);
        peer_bell.ring();
        assert_eq!(bell.drain(), 1);
        // SAFETY: plain fcntl query.
        let fl = unsafe { libc::fcntl(peer_bell.as_raw_fd(), libc::F_GETFD) };
        assert!(fl & libc::FD_CLOEXEC != 0, "received fds are close-on-exec");
    }

    #[test]
    fn too_many_fds_is_invalid_data() {
        let (a, b) = socketpair();
        let x = Doorbell::new().unwrap();
        let y = Doorbell::new().unwrap();
        send_fds(a.as_fd(), b"x", &[x.as_fd(), y.as_fd()]).unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(
            recv_fds(b.as_fd(), &mut buf, 1).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn plain_data_and_eof() {
        let (a, b) = socketpair();
        send_fds(a.as_fd(), b"abc", &[]).unwrap();
        drop(a);
        let mut buf = [0u8; 8];
        let (n, fds) = recv_fds(b.as_fd(), &mut buf, 0).unwrap();
        assert_eq!((n, fds.len()), (3, 0));
        assert_eq!(recv_fds(b.as_fd(), &mut buf, 0).unwrap().0, 0);
        let x = Doorbell::new().unwrap();
        assert!(send_fds(b.as_fd(), b"", &[x.as_fd()]).is_err());
    }

    #[test]
    fn random_bytes_are_not_all_zero() {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        random_bytes(&mut a);
        random_bytes(&mut b);
        assert_ne!(a, b);
    }

    #[test]
    fn clear_cloexec_clears_the_flag() {
        let b = Doorbell::new().unwrap();
        clear_cloexec(b.as_fd()).unwrap();
        // SAFETY: plain fcntl query.
        let fl = unsafe { libc::fcntl(b.as_raw_fd(), libc::F_GETFD) };
        assert_eq!(fl & libc::FD_CLOEXEC, 0);
    }
}
