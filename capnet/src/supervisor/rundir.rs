//! The run directory (the set's sockets, pid file and lock) and the sim
//! wires' directories: who owns them and who may enter.

use crate::config::Access;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Makes the run directory ours and private (0700); an existing one must
/// be a real directory (not a symlink) that we own, or another local user
/// could have prepared it and would own our sockets.
pub fn prepare_run_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    // Like `mkdir -p -m 0700`: the parents get the usual mode, so that
    // services running as users of their own can pass through them.
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let meta = std::fs::symlink_metadata(dir)?;
    // SAFETY: getuid has no preconditions.
    let me = unsafe { libc::getuid() };
    if !meta.file_type().is_dir() || meta.uid() != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a directory of ours (owner uid {}); remove it or pick another --run-dir",
                dir.display(),
                meta.uid()
            ),
        ));
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Lets other users reach the sockets (0711: enter, not list) when the
/// policy admits anyone but us, or when the services run as users of
/// their own (tlsd reaches netsrv's socket for it); each service then
/// judges every peer.
pub(super) fn open_run_dir_to(dir: &Path, access: &Access, separate_users: bool) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: getuid has no preconditions.
    let me = unsafe { libc::getuid() };
    if separate_users || !access.network.only(me) || !access.admin.only(me) {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))?;
    }
    Ok(())
}

/// Holds the run directory for one service set: a second `capnet up` on
/// the same directory would join the first set's wire with the same
/// addresses and, on exit, delete its sockets. Released when the
/// supervisor exits, however it exits.
pub struct RunDirLock {
    _file: std::fs::File,
}

impl RunDirLock {
    pub fn take(dir: &Path) -> Result<RunDirLock, String> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join("capnet.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        // SAFETY: flock on an fd we own; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::WouldBlock {
                return Err(format!("{}: {e}", path.display()));
            }
            let pid = std::fs::read_to_string(dir.join("capnet.pid")).unwrap_or_default();
            let pid = match pid.trim() {
                "" => String::new(),
                p => format!(" (supervisor pid {p})"),
            };
            return Err(format!(
                "a service set is already running in {}{pid}; stop it with `capnet down --run-dir {}` or pick another --run-dir",
                dir.display(),
                dir.display()
            ));
        }
        Ok(RunDirLock { _file: file })
    }
}

/// Makes a sim wire's directory. With `drivers_gid` (the services run as
/// users of their own), lets the drivers' group meet their peers there:
/// they bind, connect and lock whenever a peer restarts, long after they
/// gave up root. A directory anyone may write (`/tmp`) is left alone; one
/// of root's gets the group and its rights; one of another user's cannot
/// be shared by us and is an error. Never the run directory.
pub(super) fn prepare_wire_dir(
    dir: &Path,
    run_dir: &Path,
    drivers_gid: Option<u32>,
) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::create_dir_all(dir)?;
    let Some(gid) = drivers_gid else {
        return Ok(());
    };
    if std::fs::canonicalize(dir)? == std::fs::canonicalize(run_dir)? {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the wire {} would be in the run directory, where the drivers may not write: \
                 give it a relative path (it is then beneath <wire-dir>/wires/)",
                dir.display()
            ),
        ));
    }
    let meta = std::fs::symlink_metadata(dir)?;
    let mode = meta.mode() & 0o7777;
    if !meta.file_type().is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the wire directory {} is not a directory", dir.display()),
        ));
    }
    if mode & 0o002 != 0 {
        return Ok(());
    }
    if meta.uid() != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the wire directory {} belongs to uid {}; the drivers (gid {gid}) could not use it: \
                 pick one of root's, or set [supervisor] separate_users = false",
                dir.display(),
                meta.uid()
            ),
        ));
    }
    std::os::unix::fs::chown(dir, None, Some(gid))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o070))?;
    reachable(dir, gid)
}

/// Every directory above `dir` lets the drivers (group `gid`, no other
/// privilege) pass, else their rendezvous fails later with a bare EACCES.
fn reachable(dir: &Path, gid: u32) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dir = std::fs::canonicalize(dir)?;
    for above in dir.ancestors().skip(1) {
        let meta = std::fs::metadata(above)?;
        let search = meta.mode() & 0o001 != 0 || (meta.gid() == gid && meta.mode() & 0o010 != 0);
        if !search {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "the drivers (gid {gid}) cannot reach the wire directory {}: {} is mode {:o}",
                    dir.display(),
                    above.display(),
                    meta.mode() & 0o7777
                ),
            ));
        }
    }
    Ok(())
}
