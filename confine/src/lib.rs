//! How a capnet service confines itself, as a privilege-separated daemon
//! should (OpenSSH privsep, Firecracker's jailer, systemd's sandboxing):
//!
//! - `no_new_privs`: nothing it could exec gains privileges;
//! - Landlock: the only files it may touch are the ones its job names
//!   (tlsd its keys, nicdrv its wire and capture, netsrv its socket's
//!   directory), and it may not signal processes outside its domain;
//! - seccomp: the system calls a service makes are allowed, any other one
//!   fails with `EPERM`, and the calls that only an attacker would make
//!   (exec, ptrace, mount, module loading, bpf, ...) kill the process.
//!
//! Call [`confine`] once, early in `main`, before any thread starts: a
//! Landlock domain binds the calling thread and the threads it creates
//! afterwards. Other platforms (Redox) answer [`Report::unsupported`] until
//! the port maps this onto their namespaces.

use std::path::PathBuf;
use std::sync::OnceLock;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
mod syscalls;

/// Which service is being confined: each has its own system call list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Nicdrv,
    Netsrv,
    Tlsd,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Nicdrv => "nicdrv",
            Service::Netsrv => "netsrv",
            Service::Tlsd => "tlsd",
        }
    }
}

/// What a service may do with one path (and everything beneath it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read files.
    Read,
    /// Read and write files, make and remove files and sockets.
    Write,
}

/// A service's confinement: its system calls and the paths it may use.
#[derive(Clone, Debug)]
pub struct Policy {
    pub service: Service,
    pub paths: Vec<(PathBuf, Access)>,
}

impl Policy {
    pub fn new(service: Service) -> Policy {
        Policy {
            service,
            paths: Vec::new(),
        }
    }

    /// Allows `access` beneath `path`. A path that does not exist yet
    /// stands for its parent directory (a file the service will create).
    pub fn allow(mut self, path: impl Into<PathBuf>, access: Access) -> Policy {
        self.paths.push((path.into(), access));
        self
    }
}

/// What was enforced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub no_new_privs: bool,
    /// "enforced", "partly enforced" (an older kernel), "unsupported".
    pub landlock: &'static str,
    pub seccomp: bool,
}

impl Report {
    pub fn unsupported() -> Report {
        Report {
            no_new_privs: false,
            landlock: "unsupported",
            seccomp: false,
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no_new_privs {}, landlock {}, seccomp {}",
            if self.no_new_privs { "on" } else { "off" },
            self.landlock,
            if self.seccomp { "on" } else { "off" }
        )
    }
}

/// Set in a service's environment, turns confinement off (debugging with
/// strace or gdb, which the filter would forbid).
pub const DISABLE_ENV: &str = "CAPNET_NO_CONFINE";

/// What [`confine`] enforced in this process: Landlock leaves no trace in
/// /proc, so a service reports this over its RPC (`capnet status`).
static CURRENT: OnceLock<Report> = OnceLock::new();

/// The confinement this process put on itself, once [`confine`] succeeded.
pub fn current() -> Option<&'static Report> {
    CURRENT.get()
}

/// [`current`] as a service reports it: the report's words, or empty
/// before the process confined itself.
pub fn current_text() -> String {
    current().map(Report::to_string).unwrap_or_default()
}

/// Confines the calling process by `policy`. An error means the kernel
/// refused a restriction it claims to support: the caller should not run
/// unconfined by accident, and exits.
pub fn confine(policy: &Policy) -> std::io::Result<Report> {
    let report = if std::env::var_os(DISABLE_ENV).is_some() {
        Report {
            no_new_privs: false,
            landlock: "off",
            seccomp: false,
        }
    } else {
        enforce(policy)?
    };
    // Services confine themselves once; a later call could only add
    // restrictions, so the first report never claims more than holds.
    let _ = CURRENT.set(report.clone());
    Ok(report)
}

fn enforce(policy: &Policy) -> std::io::Result<Report> {
    #[cfg(target_os = "linux")]
    {
        linux::confine(policy)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = policy;
        Ok(Report::unsupported())
    }
}

/// The Landlock state in a report's words (`current_text`, as a service
/// answered it): "enforced", "partly enforced", "unsupported", "off".
pub fn landlock_of(report: &str) -> Option<&str> {
    report
        .split(", ")
        .find_map(|part| part.strip_prefix("landlock "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn landlock_reads_back_from_a_report() {
        for landlock in ["enforced", "partly enforced", "unsupported", "off"] {
            let report = Report {
                no_new_privs: true,
                landlock,
                seccomp: true,
            };
            assert_eq!(landlock_of(&report.to_string()), Some(landlock));
        }
        assert_eq!(landlock_of(""), None);
    }
}
