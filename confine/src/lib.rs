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

/// The unprivileged user a service started as root becomes, once it has
/// opened what needs root (a TAP device, its keys, its socket).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

impl User {
    /// `UID:GID`, as the supervisor passes it with `--user`.
    pub fn parse(s: &str) -> Result<User, String> {
        let bad = || format!("--user {s}: expected UID:GID (numbers)");
        let (uid, gid) = s.split_once(':').ok_or_else(bad)?;
        let user = User {
            uid: uid.parse().map_err(|_| bad())?,
            gid: gid.parse().map_err(|_| bad())?,
        };
        if user.uid == 0 || user.gid == 0 {
            return Err(format!(
                "--user {s}: a service never runs as root by choice"
            ));
        }
        Ok(user)
    }
}

impl std::fmt::Display for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

/// A service's confinement: the user it becomes, its system calls and the
/// paths it may use.
#[derive(Clone, Debug)]
pub struct Policy {
    pub service: Service,
    pub user: Option<User>,
    pub paths: Vec<(PathBuf, Access)>,
}

impl Policy {
    pub fn new(service: Service) -> Policy {
        Policy {
            service,
            user: None,
            paths: Vec::new(),
        }
    }

    /// Becomes `user` first (when given): no supplementary groups, every
    /// uid and gid (real, effective, saved) set, no way back to root.
    pub fn user(mut self, user: Option<User>) -> Policy {
        self.user = user;
        self
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
    /// The uid the service dropped to, if it started as root.
    pub user: Option<u32>,
    pub no_new_privs: bool,
    /// "enforced", "partly enforced" (an older kernel), "unsupported".
    pub landlock: &'static str,
    pub seccomp: bool,
}

impl Report {
    pub fn unsupported() -> Report {
        Report {
            user: None,
            no_new_privs: false,
            landlock: "unsupported",
            seccomp: false,
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(uid) = self.user {
            write!(f, "uid {uid}, ")?;
        }
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
///
/// Dropping to `policy.user` is not confinement one may turn off for
/// debugging: it happens even with [`DISABLE_ENV`] set.
pub fn confine(policy: &Policy) -> std::io::Result<Report> {
    if let Some(user) = policy.user {
        #[cfg(target_os = "linux")]
        linux::become_user(user)?;
        #[cfg(not(target_os = "linux"))]
        become_user(user)?;
    }
    let report = if std::env::var_os(DISABLE_ENV).is_some() {
        Report {
            user: policy.user.map(|u| u.uid),
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
        Ok(Report {
            user: policy.user.map(|u| u.uid),
            ..Report::unsupported()
        })
    }
}

#[cfg(not(target_os = "linux"))]
fn become_user(user: User) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        format!("becoming user {user}: not supported on this platform"),
    ))
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
            for user in [None, Some(1879048192)] {
                let report = Report {
                    user,
                    no_new_privs: true,
                    landlock,
                    seccomp: true,
                };
                assert_eq!(landlock_of(&report.to_string()), Some(landlock));
            }
        }
        assert_eq!(landlock_of(""), None);
    }
}
