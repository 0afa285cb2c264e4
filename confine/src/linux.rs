//! Linux: prctl, Landlock (the `landlock` crate), seccomp-bpf (`seccompiler`).

use crate::{syscalls, Access, Policy, Report, User};
use landlock::Access as _;
use landlock::{
    AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    Scope, ABI,
};
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

pub fn confine(policy: &Policy) -> io::Result<Report> {
    // SAFETY: prctl with integer arguments only.
    let nnp = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } == 0;
    if !nnp {
        return Err(io::Error::last_os_error());
    }
    let landlock = landlock(policy)?;
    seccomp(policy)?;
    Ok(Report {
        user: policy.user.map(|u| u.uid),
        no_new_privs: true,
        landlock,
        seccomp: true,
    })
}

/// Becomes `user` for good. glibc applies set*id calls to every thread of
/// the process, so threads started earlier follow too.
pub fn become_user(user: User) -> io::Result<()> {
    use io::Error;
    let fail = |what: &str| {
        let e = Error::last_os_error();
        Error::new(e.kind(), format!("becoming user {user}: {what}: {e}"))
    };
    // The kernel clears the parent-death signal when the uid changes; the
    // supervisor's promise that no service outlives it needs it back.
    let mut death_signal: libc::c_int = 0;
    // SAFETY: PR_GET_PDEATHSIG writes one int through a valid pointer;
    // getppid takes nothing.
    let parent = unsafe {
        libc::prctl(
            libc::PR_GET_PDEATHSIG,
            &mut death_signal as *mut libc::c_int,
        );
        libc::getppid()
    };
    // SAFETY: setgroups with a zero length reads no memory; the set*id
    // calls take integers only.
    unsafe {
        // Groups first: after setresuid we no longer could.
        if libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(fail("setgroups"));
        }
        if libc::setresgid(user.gid, user.gid, user.gid) != 0 {
            return Err(fail("setresgid"));
        }
        if libc::setresuid(user.uid, user.uid, user.uid) != 0 {
            return Err(fail("setresuid"));
        }
    }
    // The way back must be shut: a kernel or libc that left a saved uid of
    // 0 behind would let a compromised service become root again.
    // SAFETY: setuid/getuid/geteuid take and return integers only.
    let (back, uid, euid) = unsafe { (libc::setuid(0), libc::getuid(), libc::geteuid()) };
    if back == 0 || uid != user.uid || euid != user.uid {
        return Err(Error::other(format!(
            "becoming user {user}: still able to return to root"
        )));
    }
    if death_signal != 0 {
        // SAFETY: prctl and getppid with integer arguments only.
        let armed = unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, death_signal as libc::c_ulong) == 0
                && libc::getppid() == parent
        };
        if !armed {
            return Err(Error::other(format!(
                "becoming user {user}: the parent exited meanwhile"
            )));
        }
    }
    Ok(())
}

/// The newest ABI we know; older kernels enforce what they can.
const LANDLOCK_ABI: ABI = ABI::V6;

fn landlock(policy: &Policy) -> io::Result<&'static str> {
    let err = |e: landlock::RulesetError| io::Error::other(format!("landlock: {e}"));
    let all = AccessFs::from_all(LANDLOCK_ABI);
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)
        .map_err(err)?
        .scope(Scope::Signal)
        .map_err(err)?
        .create()
        .map_err(err)?;
    for (path, access) in &policy.paths {
        let (path, access) = existing(path, *access);
        let rights = match access {
            Access::Read => AccessFs::from_read(LANDLOCK_ABI),
            Access::Write => all,
        };
        let fd = match landlock::PathFd::new(&path) {
            Ok(fd) => fd,
            // Nothing there to protect or to use.
            Err(_) => continue,
        };
        let rights = if std::fs::metadata(&path).is_ok_and(|m| !m.is_dir()) {
            rights & AccessFs::from_file(LANDLOCK_ABI)
        } else {
            rights
        };
        ruleset = ruleset
            .add_rule(landlock::PathBeneath::new(fd, rights))
            .map_err(err)?;
    }
    let status = ruleset.restrict_self().map_err(err)?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => "enforced",
        RulesetStatus::PartiallyEnforced => "partly enforced",
        RulesetStatus::NotEnforced => "unsupported",
    })
}

/// A file the service will create is allowed through its directory: write
/// access there (make, remove, write), since the file is not there yet.
fn existing(path: &Path, access: Access) -> (PathBuf, Access) {
    if path.exists() {
        return (path.to_path_buf(), access);
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    (parent.to_path_buf(), access)
}

fn arch() -> io::Result<seccompiler::TargetArch> {
    std::env::consts::ARCH
        .try_into()
        .map_err(|e| io::Error::other(format!("seccomp: {e:?}")))
}

/// Two stacked filters: the allow-list (anything else fails with EPERM,
/// so a call we did not foresee is an error the code handles, not a
/// crash), and the kill-list (what only an attacker would call ends the
/// process: the kernel applies the stricter answer of the two).
fn seccomp(policy: &Policy) -> io::Result<()> {
    let err = |e: seccompiler::Error| io::Error::other(format!("seccomp: {e}"));
    let allowed: BTreeMap<i64, Vec<seccompiler::SeccompRule>> = syscalls::allowed(policy.service)
        .into_iter()
        .map(|nr| (nr, Vec::new()))
        .collect();
    let allow: BpfProgram = SeccompFilter::new(
        allowed,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch()?,
    )
    .map_err(|e| err(e.into()))?
    .try_into()
    .map_err(|e: seccompiler::BackendError| err(e.into()))?;
    let fatal: BTreeMap<i64, Vec<seccompiler::SeccompRule>> =
        syscalls::FATAL.iter().map(|nr| (*nr, Vec::new())).collect();
    let kill: BpfProgram = SeccompFilter::new(
        fatal,
        SeccompAction::Allow,
        SeccompAction::KillProcess,
        arch()?,
    )
    .map_err(|e| err(e.into()))?
    .try_into()
    .map_err(|e: seccompiler::BackendError| err(e.into()))?;
    // The kill-list first: the allow-list forbids seccomp(2) itself.
    seccompiler::apply_filter_all_threads(&kill).map_err(err)?;
    seccompiler::apply_filter_all_threads(&allow).map_err(err)?;
    Ok(())
}
