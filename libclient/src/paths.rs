//! Where a service set lives.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

/// Environment variable naming the service socket an application uses.
pub const SOCKET_ENV: &str = "CAPNET_SOCKET";

/// `$XDG_RUNTIME_DIR/capnet`, or `/tmp/capnet-UID`.
pub fn default_run_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("capnet"),
        // SAFETY: getuid has no preconditions and cannot fail.
        _ => PathBuf::from(format!("/tmp/capnet-{}", unsafe { libc::getuid() })),
    }
}

/// `$CAPNET_SOCKET`, or `capnet.sock` in the default run directory.
pub fn default_socket_path() -> PathBuf {
    match std::env::var_os(SOCKET_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => default_run_dir().join("capnet.sock"),
    }
}

/// Checks, before a single byte is sent, that the service socket at `path`
/// belongs to a service set this process may trust: its directory is not
/// a symlink, nobody but its owner can write to it, its owner is us, root,
/// or the user serving the socket, and the server (SO_PEERCRED) runs as
/// the directory's owner or root (any server, in a directory of root's). The default run directory must be our
/// own or root's: another local user could have made `/tmp/capnet-UID`
/// first and would then receive everything we send.
pub fn verify_service_socket(path: &Path, server: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let denied = |why: String| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("not trusting {}: {why}", path.display()),
        )
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let meta = std::fs::symlink_metadata(&dir)?;
    if !meta.file_type().is_dir() {
        return Err(denied(format!("{} is not a directory", dir.display())));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(denied(format!(
            "{} is writable by others (mode {:o})",
            dir.display(),
            meta.mode() & 0o7777
        )));
    }
    let socket = std::fs::symlink_metadata(path)?;
    if !socket.file_type().is_socket() {
        return Err(denied("not a socket".into()));
    }
    // SAFETY: getuid has no preconditions.
    let me = unsafe { libc::getuid() };
    let owner = meta.uid();
    if dir == default_run_dir() && owner != me && owner != 0 {
        return Err(denied(format!(
            "the default run directory {} belongs to uid {owner}, not to us",
            dir.display()
        )));
    }
    let server = match capnet_schema::access::Peer::of(server) {
        Ok(peer) => peer.uid,
        // No credentials on this platform: the directory checks stand alone.
        Err(e) if e.kind() == io::ErrorKind::Unsupported => owner,
        Err(e) => return Err(e),
    };
    // A directory of root's holds what root put there: a set started as
    // root serves through services that became users of their own.
    if server != owner && server != 0 && owner != 0 {
        return Err(denied(format!(
            "the server runs as uid {server} but {} belongs to uid {owner}",
            dir.display()
        )));
    }
    if owner != me && owner != 0 && owner != server {
        return Err(denied(format!("{} belongs to uid {owner}", dir.display())));
    }
    Ok(())
}

/// Environment variable naming tlsd's socket (`tls.sock`).
pub const TLS_SOCKET_ENV: &str = "CAPNET_TLS_SOCKET";

/// `$CAPNET_TLS_SOCKET`; else `tls.sock` next to `$CAPNET_SOCKET` (the same
/// service set's run directory); else `tls.sock` in the default run
/// directory.
pub fn default_tls_socket_path() -> PathBuf {
    tls_socket_path(
        std::env::var_os(TLS_SOCKET_ENV),
        std::env::var_os(SOCKET_ENV),
        default_run_dir,
    )
}

fn tls_socket_path(
    tls: Option<OsString>,
    net: Option<OsString>,
    run_dir: impl FnOnce() -> PathBuf,
) -> PathBuf {
    const NAME: &str = "tls.sock";
    match (tls, net) {
        (Some(p), _) if !p.is_empty() => PathBuf::from(p),
        (_, Some(p)) if !p.is_empty() => Path::new(&p)
            .parent()
            .map_or_else(|| PathBuf::from(NAME), |dir| dir.join(NAME)),
        _ => run_dir().join(NAME),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_dir() -> PathBuf {
        PathBuf::from("/run/capnet")
    }

    #[test]
    fn tls_socket_env_wins() {
        let p = tls_socket_path(
            Some("/a/t.sock".into()),
            Some("/b/capnet.sock".into()),
            run_dir,
        );
        assert_eq!(p, Path::new("/a/t.sock"));
    }

    #[test]
    fn tls_socket_sits_next_to_the_service_socket() {
        let p = tls_socket_path(None, Some("/b/capnet.sock".into()), run_dir);
        assert_eq!(p, Path::new("/b/tls.sock"));
        let p = tls_socket_path(Some("".into()), Some("capnet.sock".into()), run_dir);
        assert_eq!(p, Path::new("tls.sock"));
    }

    #[test]
    fn tls_socket_defaults_to_the_run_dir() {
        assert_eq!(
            tls_socket_path(None, None, run_dir),
            Path::new("/run/capnet/tls.sock")
        );
        let p = tls_socket_path(Some("".into()), Some("".into()), run_dir);
        assert_eq!(p, Path::new("/run/capnet/tls.sock"));
    }
}
