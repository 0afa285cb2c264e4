//! Linux: prctl, Landlock (the `landlock` crate), seccomp-bpf (`seccompiler`).

use crate::{syscalls, Access, Policy, Report};
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
        no_new_privs: true,
        landlock,
        seccomp: true,
    })
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
