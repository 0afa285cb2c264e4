//! Where a service set lives.

use std::ffi::OsString;
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
