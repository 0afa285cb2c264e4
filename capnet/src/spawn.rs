//! Starting a service process with exactly the descriptors it is given.
//!
//! Every socket the supervisor makes is close-on-exec; a child receives only
//! the ones named for it, and learns their numbers from its command line.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Where the service binaries are: `$CAPNET_BIN_DIR`, or beside this one.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CAPNET_BIN_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

pub fn binary(name: &str) -> io::Result<PathBuf> {
    let path = bin_dir().join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} not found (build the workspace, or set CAPNET_BIN_DIR)",
                path.display()
            ),
        ))
    }
}

/// Spawns `program` with `args`; `inherit` stay open in the child under
/// their current numbers. The child is killed when the supervisor dies
/// (SIGKILL on parent death), so no service outlives the set's root of
/// authority: an orphaned driver would keep its port with nobody to restart
/// or stop it.
///
/// The death signal follows the thread that forks, so services are spawned
/// only from the supervisor's single runtime thread.
pub fn spawn(program: &Path, args: &[String], inherit: &[&OwnedFd]) -> io::Result<Child> {
    let fds: Vec<RawFd> = inherit.iter().map(|f| f.as_raw_fd()).collect();
    let parent = std::process::id() as libc::pid_t;
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    // SAFETY: the closure runs in the child between fork and exec and calls
    // only prctl, getppid and fcntl, which are async-signal-safe; it touches
    // no Rust state but copied integers.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) < 0 {
                return Err(io::Error::last_os_error());
            }
            // No service ever gains privileges by exec (setuid files,
            // file capabilities); it is also what seccomp filters need.
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before the death signal was armed.
            if libc::getppid() != parent {
                return Err(io::Error::other("the supervisor exited during start"));
            }
            for &fd in &fds {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// A connected pair of Unix stream sockets, both close-on-exec.
pub fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = std::os::unix::net::UnixStream::pair()?;
    Ok((a.into(), b.into()))
}
