//! The `tap` backend: a Linux TAP device (IFF_TAP | IFF_NO_PI, non-blocking),
//! usually inside a network namespace, so that the peer is the Linux
//! kernel's own stack.
//!
//! Link state is `IFF_UP && IFF_RUNNING` of the interface, read with
//! SIOCGIFFLAGS. A NETLINK_ROUTE socket subscribed to RTMGRP_LINK wakes the
//! data plane on every RTM_NEWLINK (then the flags are read again); EIO on a
//! write also triggers a re-read. TUNSETCARRIER sets the carrier from our side.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

/// Moves the calling thread into the network namespace `/run/netns/NAME`
/// (what `ip netns exec` does). Call it before starting any other thread:
/// threads inherit the namespace of the thread that creates them.
pub fn enter_netns(name: &str) -> io::Result<()> {
    let path = format!("/run/netns/{name}");
    let f = File::open(&path).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))?;
    // SAFETY: setns on a namespace fd we hold open; it changes only kernel state of this thread.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("setns {path}: {e}")));
    }
    Ok(())
}

fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?}"),
        ));
    }
    // SAFETY: ifreq is plain old data (a name array and a union of integers); all zeroes is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok(req)
}

/// An open TAP device and its link-state helpers.
pub struct Tap {
    file: File,
    name: String,
    /// An AF_INET datagram socket, only for interface ioctls.
    ctl: OwnedFd,
    netlink: Option<OwnedFd>,
}

impl Tap {
    /// Attaches to (or creates) the TAP device `name` in the current namespace.
    pub fn open(name: &str) -> io::Result<Tap> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| io::Error::new(e.kind(), format!("/dev/net/tun: {e}")))?;
        let mut req = ifreq_for(name)?;
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads (and updates) the ifreq we pass, which lives across the call.
        let r = unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                libc::TUNSETIFF as _,
                &mut req as *mut libc::ifreq,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("TUNSETIFF {name}: {e}")));
        }
        // SAFETY: plain socket(2) call; the result is checked before it is owned.
        let ctl = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if ctl < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `ctl` is a fresh descriptor that nothing else owns.
        let ctl = unsafe { OwnedFd::from_raw_fd(ctl) };
        let netlink = match open_link_watch() {
            Ok(fd) => Some(fd),
            Err(e) => {
                tracing::warn!(%e, "no netlink link watch; polling interface flags instead");
                None
            }
        };
        Ok(Tap {
            file,
            name: name.to_string(),
            ctl,
            netlink,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Reads one frame; `WouldBlock` when none is queued.
    pub fn read_frame(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Writes one frame. EIO means the interface is down.
    pub fn write_frame(&self, frame: &[u8]) -> io::Result<()> {
        let n = (&self.file).write(frame)?;
        if n != frame.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short write to tap",
            ));
        }
        Ok(())
    }

    /// IFF_UP and IFF_RUNNING (administratively up, carrier on).
    pub fn link_up(&self) -> io::Result<bool> {
        let mut req = ifreq_for(&self.name)?;
        // SAFETY: SIOCGIFFLAGS fills the flags of the ifreq we pass, which lives across the call.
        let r = unsafe {
            libc::ioctl(
                self.ctl.as_raw_fd(),
                libc::SIOCGIFFLAGS as _,
                &mut req as *mut libc::ifreq,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: SIOCGIFFLAGS wrote the flags member of the union.
        let flags = i32::from(unsafe { req.ifr_ifru.ifru_flags });
        let want = libc::IFF_UP | libc::IFF_RUNNING;
        Ok(flags & want == want)
    }

    /// TUNSETCARRIER: carrier on or off from the fd owner's side.
    pub fn set_carrier(&self, up: bool) -> io::Result<()> {
        let v: libc::c_int = up.into();
        // SAFETY: TUNSETCARRIER reads one int through the pointer, which lives across the call.
        let r = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                libc::TUNSETCARRIER as _,
                &v as *const libc::c_int,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The netlink socket to poll, if the link watch could be opened.
    pub fn netlink_fd(&self) -> Option<BorrowedFd<'_>> {
        self.netlink.as_ref().map(|f| f.as_fd())
    }

    /// Reads every pending netlink message; true if there was any (or the
    /// socket overflowed): the caller then reads the flags again.
    pub fn drain_netlink(&self) -> bool {
        let Some(nl) = &self.netlink else {
            return false;
        };
        let mut any = false;
        let mut buf = [0u8; 8192];
        loop {
            // SAFETY: recv into a stack buffer of the length we pass.
            let n = unsafe {
                libc::recv(
                    nl.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                any = true;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ENOBUFS) => any = true, // messages were lost: re-read anyway
                _ => {}
            }
            return any;
        }
    }
}

/// A NETLINK_ROUTE socket subscribed to link changes (RTMGRP_LINK).
fn open_link_watch() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before it is owned.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain old data; all zeroes is valid.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = libc::RTMGRP_LINK as u32;
    // SAFETY: bind with a pointer to an initialised sockaddr_nl and its exact size.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Interface index of `name` in the current namespace (0 if unknown).
pub fn if_index(name: &str) -> u32 {
    let Ok(c) = CString::new(name) else { return 0 };
    // SAFETY: if_nametoindex reads a NUL-terminated string that lives across the call.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(ifreq_for("").is_err());
        assert!(ifreq_for("abcdefghijklmnop").is_err());
        let r = ifreq_for("tap0").unwrap();
        assert_eq!(
            r.ifr_name[..5].iter().map(|c| *c as u8).collect::<Vec<_>>(),
            b"tap0\0"
        );
    }

    #[test]
    fn missing_netns_is_a_clear_error() {
        let e = enter_netns("capnet-no-such-namespace").unwrap_err();
        assert!(e
            .to_string()
            .contains("/run/netns/capnet-no-such-namespace"));
    }
}
