//! The `tap` backend: a Linux TAP device (IFF_TAP | IFF_NO_PI, non-blocking),
//! usually inside a network namespace, so that the peer is the Linux
//! kernel's own stack.
//!
//! Link state is `IFF_UP && IFF_LOWER_UP` (administratively up, carrier on)
//! of the interface, read with an RTM_GETLINK request on a NETLINK_ROUTE
//! socket of the namespace. Not IFF_RUNNING: that flag follows the operstate,
//! which the kernel's linkwatch updates up to a second late when changes come
//! in quick succession (measured: a TUNSETCARRIER off/on pair 150 ms apart left
//! IFF_RUNNING unchanged); the carrier bit and IFF_UP change synchronously.
//! A second NETLINK_ROUTE socket subscribed to RTMGRP_LINK wakes the data
//! plane on every RTM_NEWLINK (then the flags are read again); EIO on a write
//! and our own TUNSETCARRIER also trigger a re-read. Without netlink, the
//! fallback is SIOCGIFFLAGS `IFF_UP && IFF_RUNNING`, polled.
//!
//! # Offloads with Linux
//!
//! With segmentation offload the TAP is opened with `IFF_VNET_HDR` and
//! `TUNSETOFFLOAD` (checksum, TSO over IPv4 and IPv6): every frame both
//! ways carries a virtio-net header ([`capnet_wire::vnet`]). A merged frame
//! from the stack goes to Linux whole, in one write, for Linux to cut; Linux
//! hands up its own merged frames (64 KiB in one read) and frames whose
//! checksum it left partial, which nicdrv completes.
//!
//! # Persistent and non-persistent taps
//!
//! [`Tap::open`] attaches to an existing tap (made persistent with
//! `ip tuntap add`), or creates one if none has the name. nicdrv never sets or
//! clears TUNSETPERSIST and never deletes an interface: a persistent tap (its
//! addresses, bridge membership, up state) outlives any number of driver
//! restarts, and a tap nicdrv created vanishes with the process (the kernel
//! removes a non-persistent tap when its last fd closes). Setups that restart
//! drivers must therefore create persistent taps beforehand.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Read, Write};
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
    /// Opened with `IFF_VNET_HDR`: frames carry a virtio-net header.
    vnet: bool,
    name: String,
    /// Interface index of our device (taken right after TUNSETIFF).
    index: u32,
    /// Whether the device existed before we attached (a persistent tap).
    existed: bool,
    /// An AF_INET datagram socket, only for interface ioctls.
    ctl: OwnedFd,
    /// RTMGRP_LINK subscription: wakes the data plane on link changes.
    netlink: Option<OwnedFd>,
    /// Unsubscribed NETLINK_ROUTE socket for RTM_GETLINK requests.
    query: Option<OwnedFd>,
    seq: std::cell::Cell<u32>,
}

/// How long [`Tap::open`] retries TUNSETIFF while the device is busy (a
/// previous driver's fd being released).
const BUSY_RETRY: std::time::Duration = std::time::Duration::from_secs(3);

impl Tap {
    /// Attaches to the TAP device `name` in the current namespace, or creates
    /// a non-persistent one if there is none (see the module docs); with
    /// `offloads`, frames carry virtio-net headers and Linux may hand over
    /// partial checksums and merged TCP frames.
    pub fn open(name: &str, offloads: bool) -> io::Result<Tap> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| io::Error::new(e.kind(), format!("/dev/net/tun: {e}")))?;
        let existed = if_index(name) != 0;
        let started = std::time::Instant::now();
        loop {
            let mut req = ifreq_for(name)?;
            let vnet = if offloads { libc::IFF_VNET_HDR } else { 0 };
            req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | vnet) as libc::c_short;
            // SAFETY: TUNSETIFF reads (and updates) the ifreq we pass, which lives across the call.
            let r = unsafe {
                libc::ioctl(
                    file.as_raw_fd(),
                    libc::TUNSETIFF as _,
                    &mut req as *mut libc::ifreq,
                )
            };
            if r == 0 {
                break;
            }
            let e = io::Error::last_os_error();
            // EBUSY: another fd is attached, e.g. a killed predecessor whose
            // files the kernel is still closing. Wait for it a little.
            if e.raw_os_error() == Some(libc::EBUSY) && started.elapsed() < BUSY_RETRY {
                std::thread::sleep(std::time::Duration::from_millis(20));
                continue;
            }
            return Err(io::Error::new(e.kind(), format!("TUNSETIFF {name}: {e}")));
        }
        // Set either way: a persistent tap keeps the offloads the last
        // driver asked for, and without virtio-net headers Linux must
        // neither leave checksums partial nor hand over merged frames.
        let features = if offloads {
            libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6
        } else {
            0
        };
        // SAFETY: TUNSETOFFLOAD takes its argument by value; no memory is passed.
        let r = unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                libc::TUNSETOFFLOAD as _,
                features as libc::c_ulong,
            )
        };
        if r != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("TUNSETOFFLOAD {name}: {e}"),
            ));
        }
        let index = if_index(name);
        if existed {
            tracing::info!(tap = name, index, "attached to an existing tap");
        } else {
            tracing::info!(
                tap = name,
                index,
                "created tap (not persistent: it disappears when nicdrv exits; \
                 create persistent taps with `ip tuntap add` to keep them across restarts)"
            );
        }
        // SAFETY: plain socket(2) call; the result is checked before it is owned.
        let ctl = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if ctl < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `ctl` is a fresh descriptor that nothing else owns.
        let ctl = unsafe { OwnedFd::from_raw_fd(ctl) };
        let (netlink, query) = match (open_netlink(true), open_netlink(false)) {
            (Ok(w), Ok(q)) => (Some(w), Some(q)),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(%e, "no netlink link watch; polling interface flags instead");
                (None, None)
            }
        };
        Ok(Tap {
            file,
            vnet: offloads,
            name: name.to_string(),
            index,
            existed,
            ctl,
            netlink,
            query,
            seq: std::cell::Cell::new(0),
        })
    }

    /// Whether the device existed before we attached (else we created it,
    /// and it vanishes with us).
    pub fn existed(&self) -> bool {
        self.existed
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Whether frames carry a virtio-net header (opened with offloads).
    pub fn vnet(&self) -> bool {
        self.vnet
    }

    /// Reads one frame, after its virtio-net header if [`Tap::vnet`];
    /// `WouldBlock` when none is queued.
    pub fn read_frame(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Writes one frame, after `header` (which must be empty unless
    /// [`Tap::vnet`], and a virtio-net header if it is). EIO means the
    /// interface is down.
    pub fn write_frame(&self, header: &[u8], frame: &[u8]) -> io::Result<()> {
        let n = if header.is_empty() {
            (&self.file).write(frame)?
        } else {
            (&self.file).write_vectored(&[IoSlice::new(header), IoSlice::new(frame)])?
        };
        if n != header.len() + frame.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short write to tap",
            ));
        }
        Ok(())
    }

    /// IFF_UP and IFF_LOWER_UP (administratively up, carrier on), asked with
    /// RTM_GETLINK; without netlink, IFF_UP and IFF_RUNNING from SIOCGIFFLAGS.
    pub fn link_up(&self) -> io::Result<bool> {
        if let Some(q) = &self.query {
            let seq = self.seq.get().wrapping_add(1);
            self.seq.set(seq);
            return match get_link_flags(q.as_fd(), self.index, seq)? {
                Some(f) => {
                    let want = libc::IFF_UP as u32 | IFF_LOWER_UP;
                    Ok(f & want == want)
                }
                None => Ok(false), // the device is gone
            };
        }
        self.link_up_ioctl()
    }

    /// IFF_UP and IFF_RUNNING from SIOCGIFFLAGS (the operstate view).
    pub fn link_up_ioctl(&self) -> io::Result<bool> {
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

/// `IFF_LOWER_UP` (carrier), only in the 32-bit netlink flags.
const IFF_LOWER_UP: u32 = 0x1_0000;
const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;

/// A NETLINK_ROUTE socket of the current namespace (the namespace is fixed
/// when the socket is created): subscribed to link changes (RTMGRP_LINK) and
/// non-blocking, or unsubscribed and blocking with a 1 s receive timeout (for
/// requests).
fn open_netlink(subscribe: bool) -> io::Result<OwnedFd> {
    let nonblock = if subscribe { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: plain socket(2) call; the result is checked before it is owned.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | nonblock,
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
    if subscribe {
        addr.nl_groups = libc::RTMGRP_LINK as u32;
    } else {
        let tv = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: SO_RCVTIMEO reads one timeval through the pointer, which lives across the call.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
    }
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

/// The RTM_GETLINK request for interface `index`.
fn getlink_request(index: u32, seq: u32) -> [u8; NLMSG_HDRLEN + IFINFOMSG_LEN] {
    let mut m = [0u8; NLMSG_HDRLEN + IFINFOMSG_LEN];
    m[0..4].copy_from_slice(&((NLMSG_HDRLEN + IFINFOMSG_LEN) as u32).to_ne_bytes());
    m[4..6].copy_from_slice(&libc::RTM_GETLINK.to_ne_bytes());
    m[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    // pid 0; ifinfomsg: family AF_UNSPEC, type 0, index, flags 0, change 0.
    m[NLMSG_HDRLEN + 4..NLMSG_HDRLEN + 8].copy_from_slice(&(index as i32).to_ne_bytes());
    m
}

/// What one netlink answer says about our request `seq`.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// RTM_NEWLINK: the interface flags (`ifi_flags`).
    Flags(u32),
    /// NLMSG_ERROR with this (positive) errno.
    Error(i32),
    /// Nothing for `seq` in this datagram.
    Other,
}

fn parse_answer(buf: &[u8], seq: u32) -> Answer {
    let word = |at: usize| u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let len = word(off) as usize;
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            break;
        }
        let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        if word(off + 8) == seq {
            if kind == libc::RTM_NEWLINK && len >= NLMSG_HDRLEN + IFINFOMSG_LEN {
                return Answer::Flags(word(off + NLMSG_HDRLEN + 8));
            }
            if kind == libc::NLMSG_ERROR as u16 && len >= NLMSG_HDRLEN + 4 {
                let err = word(off + NLMSG_HDRLEN) as i32;
                return Answer::Error(-err);
            }
        }
        off += (len + 3) & !3;
    }
    Answer::Other
}

/// `ifi_flags` of interface `index`, or None if there is no such interface.
fn get_link_flags(sock: BorrowedFd<'_>, index: u32, seq: u32) -> io::Result<Option<u32>> {
    let req = getlink_request(index, seq);
    // SAFETY: send from a stack buffer of the length we pass (to the kernel: no address needed).
    let n = unsafe { libc::send(sock.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0u8; 16384];
    loop {
        // SAFETY: recv into a stack buffer of the length we pass.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        match parse_answer(&buf[..n as usize], seq) {
            Answer::Flags(f) => return Ok(Some(f)),
            Answer::Error(libc::ENODEV) => return Ok(None),
            Answer::Error(e) => return Err(io::Error::from_raw_os_error(e)),
            // An answer to an earlier request that timed out: skip it.
            Answer::Other => {}
        }
    }
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
    fn getlink_answers_are_parsed() {
        let req = getlink_request(7, 42);
        assert_eq!(req.len(), 32);
        assert_eq!(u32::from_ne_bytes(req[0..4].try_into().unwrap()), 32);
        assert_eq!(i32::from_ne_bytes(req[20..24].try_into().unwrap()), 7);
        // An RTM_NEWLINK answer with ifi_flags, padded to 4 bytes and followed by
        // an attribute, after an unrelated message of another sequence number.
        let msg = |kind: u16, seq: u32, body: &[u8]| {
            let mut m = Vec::new();
            m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
            m.extend_from_slice(&kind.to_ne_bytes());
            m.extend_from_slice(&0u16.to_ne_bytes());
            m.extend_from_slice(&seq.to_ne_bytes());
            m.extend_from_slice(&0u32.to_ne_bytes());
            m.extend_from_slice(body);
            while m.len() % 4 != 0 {
                m.push(0);
            }
            m
        };
        let mut ifi = vec![0u8; 16];
        ifi[8..12].copy_from_slice(&0x1_1043u32.to_ne_bytes());
        ifi.extend_from_slice(&[5, 0, 3, 0, b'x']);
        let mut dgram = msg(libc::RTM_NEWLINK, 41, &ifi);
        dgram.extend(msg(libc::RTM_NEWLINK, 42, &ifi));
        assert_eq!(parse_answer(&dgram, 42), Answer::Flags(0x1_1043));
        assert_eq!(parse_answer(&dgram, 43), Answer::Other);
        let err = msg(2, 42, &(-libc::ENODEV).to_ne_bytes());
        assert_eq!(parse_answer(&err, 42), Answer::Error(libc::ENODEV));
        // Truncated or garbage datagrams are not answers.
        assert_eq!(parse_answer(&dgram[..10], 41), Answer::Other);
        assert_eq!(parse_answer(&[0xff; 40], 42), Answer::Other);
    }

    #[test]
    fn missing_netns_is_a_clear_error() {
        let e = enter_netns("capnet-no-such-namespace").unwrap_err();
        assert!(e
            .to_string()
            .contains("/run/netns/capnet-no-such-namespace"));
    }
}
