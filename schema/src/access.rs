//! Who may do what: a service judges each peer by the credentials the
//! kernel gives for its socket (SO_PEERCRED, SO_PEERGROUPS), never by which
//! file it could open.
//!
//! The supervisor resolves the configuration's names (`owner`, user and
//! group names) to numbers and hands each service [`Principals`] in their
//! plain form: `*` (everyone), user ids (`1000`) and group ids (`@27`),
//! comma-separated. Root is always admitted.

use std::fmt;
use std::io;

/// A connected peer's credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub pid: i32,
    pub uid: u32,
    /// The primary group and the supplementary ones.
    pub gids: Vec<u32>,
}

impl Peer {
    /// The credentials of the process at the other end of `fd` (a connected
    /// Unix socket), as the kernel recorded them at connect time.
    #[cfg(target_os = "linux")]
    pub fn of(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<Peer> {
        use std::os::fd::AsRawFd;
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into the live ucred.
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut gids = vec![cred.gid];
        let mut groups = [0 as libc::gid_t; 256];
        let mut len = std::mem::size_of_val(&groups) as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into the live array.
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        // Without supplementary groups (ERANGE: more than we asked for;
        // old kernels) the primary group still counts.
        if r == 0 {
            let n = len as usize / std::mem::size_of::<libc::gid_t>();
            gids.extend(groups.iter().take(n).filter(|g| **g != cred.gid));
        }
        Ok(Peer {
            pid: cred.pid,
            uid: cred.uid,
            gids,
        })
    }

    #[cfg(not(target_os = "linux"))]
    pub fn of(_fd: std::os::fd::BorrowedFd<'_>) -> io::Result<Peer> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "peer credentials are not available on this platform yet",
        ))
    }

    /// Root: admitted to everything.
    pub fn root() -> Peer {
        Peer {
            pid: 0,
            uid: 0,
            gids: vec![0],
        }
    }
}

/// A set of users: everyone, or listed user and group ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Principals {
    everyone: bool,
    uids: Vec<u32>,
    gids: Vec<u32>,
}

impl Principals {
    pub fn everyone() -> Principals {
        Principals {
            everyone: true,
            ..Principals::default()
        }
    }

    /// Only root.
    pub fn root_only() -> Principals {
        Principals::default()
    }

    pub fn uid(uid: u32) -> Principals {
        Principals {
            uids: vec![uid],
            ..Principals::default()
        }
    }

    pub fn add_uid(&mut self, uid: u32) {
        if !self.uids.contains(&uid) {
            self.uids.push(uid);
        }
    }

    pub fn add_gid(&mut self, gid: u32) {
        if !self.gids.contains(&gid) {
            self.gids.push(gid);
        }
    }

    pub fn add_everyone(&mut self) {
        self.everyone = true;
    }

    pub fn is_everyone(&self) -> bool {
        self.everyone
    }

    /// Whether nobody but `uid` (and root) belongs.
    pub fn only(&self, uid: u32) -> bool {
        !self.everyone && self.gids.is_empty() && self.uids.iter().all(|u| *u == uid || *u == 0)
    }

    /// Whether `peer` belongs: root always does.
    pub fn admits(&self, peer: &Peer) -> bool {
        peer.uid == 0
            || self.everyone
            || self.uids.contains(&peer.uid)
            || peer.gids.iter().any(|g| self.gids.contains(g))
    }

    /// Parses the plain form (`*`, `1000`, `@27`, comma-separated; empty:
    /// root only).
    pub fn parse(s: &str) -> Result<Principals, String> {
        let mut p = Principals::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if item == "*" {
                p.everyone = true;
            } else if let Some(g) = item.strip_prefix('@') {
                p.add_gid(g.parse().map_err(|_| format!("{item:?}: not a group id"))?);
            } else {
                p.add_uid(
                    item.parse()
                        .map_err(|_| format!("{item:?}: not a user id"))?,
                );
            }
        }
        Ok(p)
    }
}

impl fmt::Display for Principals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut items: Vec<String> = Vec::new();
        if self.everyone {
            items.push("*".into());
        }
        items.extend(self.uids.iter().map(u32::to_string));
        items.extend(self.gids.iter().map(|g| format!("@{g}")));
        f.write_str(&items.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gids: &[u32]) -> Peer {
        Peer {
            pid: 1,
            uid,
            gids: gids.to_vec(),
        }
    }

    #[test]
    fn root_is_always_admitted() {
        assert!(Principals::root_only().admits(&Peer::root()));
        assert!(!Principals::root_only().admits(&peer(1000, &[1000])));
    }

    #[test]
    fn users_and_groups_admit_their_members_only() {
        let p = Principals::parse("1000, @27").unwrap();
        assert!(p.admits(&peer(1000, &[1000])));
        assert!(p.admits(&peer(1001, &[1001, 27])));
        assert!(!p.admits(&peer(1001, &[1001, 28])));
        assert!(Principals::parse("*")
            .unwrap()
            .admits(&peer(65534, &[65534])));
    }

    #[test]
    fn the_plain_form_round_trips() {
        for s in ["*", "1000,@27", "", "*,0,5,@1"] {
            assert_eq!(Principals::parse(s).unwrap().to_string(), s);
        }
        assert!(Principals::parse("bob").is_err());
        assert!(Principals::parse("@wheel").is_err());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_socket_pair_knows_its_own_process() {
        use std::os::fd::AsFd;
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let me = Peer::of(a.as_fd()).unwrap();
        assert_eq!(me.pid as u32, std::process::id());
        // SAFETY: getuid has no preconditions.
        assert_eq!(me.uid, unsafe { libc::getuid() });
    }
}
