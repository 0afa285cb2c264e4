//! Where a service set lives.

use std::path::PathBuf;

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
