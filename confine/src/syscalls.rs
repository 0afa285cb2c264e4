//! The system calls each service makes (seen with `strace -f -c` over the
//! end-to-end tests; docs/security.md says how to see them again), and the
//! ones that end a process on sight.

use crate::Service;
use libc::*;

/// What every service does: memory, threads, time, signals, sockets and
/// shared memory, polling, its inherited fds.
const COMMON: &[c_long] = &[
    SYS_read,
    SYS_write,
    SYS_readv,
    SYS_writev,
    SYS_pread64,
    SYS_pwrite64,
    SYS_close,
    SYS_lseek,
    SYS_fstat,
    SYS_newfstatat,
    SYS_statx,
    SYS_mmap,
    SYS_munmap,
    SYS_mprotect,
    SYS_mremap,
    SYS_madvise,
    SYS_brk,
    SYS_msync,
    SYS_rt_sigaction,
    SYS_rt_sigprocmask,
    SYS_rt_sigreturn,
    SYS_sigaltstack,
    SYS_fcntl,
    SYS_ioctl,
    SYS_dup,
    SYS_dup3,
    SYS_pipe2,
    SYS_socket,
    SYS_socketpair,
    SYS_connect,
    SYS_accept4,
    SYS_bind,
    SYS_listen,
    SYS_getsockname,
    SYS_getpeername,
    SYS_getsockopt,
    SYS_setsockopt,
    SYS_shutdown,
    SYS_sendto,
    SYS_recvfrom,
    SYS_sendmsg,
    SYS_recvmsg,
    SYS_sendmmsg,
    SYS_recvmmsg,
    SYS_epoll_create1,
    SYS_epoll_ctl,
    SYS_epoll_pwait,
    SYS_epoll_pwait2,
    SYS_ppoll,
    SYS_pselect6,
    SYS_eventfd2,
    SYS_timerfd_create,
    SYS_timerfd_settime,
    SYS_timerfd_gettime,
    SYS_futex,
    SYS_set_robust_list,
    SYS_get_robust_list,
    SYS_rseq,
    SYS_set_tid_address,
    SYS_clone,
    SYS_clone3,
    SYS_exit,
    SYS_exit_group,
    SYS_restart_syscall,
    SYS_gettid,
    SYS_getpid,
    SYS_getppid,
    SYS_getuid,
    SYS_geteuid,
    SYS_getgid,
    SYS_getegid,
    SYS_getresuid,
    SYS_getresgid,
    SYS_getgroups,
    SYS_tgkill,
    SYS_sched_yield,
    SYS_sched_getaffinity,
    SYS_nanosleep,
    SYS_clock_nanosleep,
    SYS_clock_gettime,
    SYS_clock_getres,
    SYS_gettimeofday,
    SYS_getrandom,
    SYS_memfd_create,
    SYS_ftruncate,
    SYS_fallocate,
    SYS_prctl,
    SYS_prlimit64,
    SYS_uname,
    SYS_sysinfo,
    SYS_getcwd,
    SYS_readlinkat,
    // Landlock decides which paths these may reach.
    SYS_openat,
    SYS_getdents64,
    SYS_unlinkat,
    SYS_mkdirat,
    SYS_fchmod,
    SYS_fchmodat,
    SYS_flock,
    SYS_fsync,
    SYS_fdatasync,
    SYS_statfs,
    SYS_fstatfs,
    SYS_umask,
    SYS_membarrier,
];

/// The x86_64 names of calls newer architectures only have as *at forms.
#[cfg(target_arch = "x86_64")]
const LEGACY: &[c_long] = &[
    SYS_open,
    SYS_stat,
    SYS_lstat,
    SYS_poll,
    SYS_epoll_wait,
    SYS_dup2,
    SYS_pipe,
    SYS_readlink,
    SYS_unlink,
    SYS_mkdir,
    SYS_chmod,
    SYS_arch_prctl,
    SYS_getrlimit,
    SYS_select,
    SYS_access,
];
#[cfg(not(target_arch = "x86_64"))]
const LEGACY: &[c_long] = &[];

/// nicdrv also enters its TAP device's network namespace.
const NICDRV: &[c_long] = &[SYS_setns];

/// The system calls `service` may make.
// c_long is i32 on 32-bit targets, where the casts are not no-ops.
#[allow(clippy::unnecessary_cast)]
pub fn allowed(service: Service) -> Vec<i64> {
    let extra: &[c_long] = match service {
        Service::Nicdrv => NICDRV,
        Service::Netsrv | Service::Tlsd => &[],
    };
    COMMON
        .iter()
        .chain(LEGACY)
        .chain(extra)
        .map(|nr| *nr as i64)
        .collect()
}

/// Calls no capnet service makes and an attacker would: they end the
/// process at once (SECCOMP_RET_KILL_PROCESS).
pub const FATAL: &[c_long] = &[
    SYS_execve,
    SYS_execveat,
    SYS_ptrace,
    SYS_process_vm_readv,
    SYS_process_vm_writev,
    SYS_mount,
    SYS_umount2,
    SYS_pivot_root,
    SYS_chroot,
    SYS_unshare,
    SYS_bpf,
    SYS_perf_event_open,
    SYS_kexec_load,
    SYS_init_module,
    SYS_finit_module,
    SYS_delete_module,
    SYS_reboot,
    SYS_swapon,
    SYS_swapoff,
    SYS_userfaultfd,
    SYS_keyctl,
    SYS_add_key,
    SYS_request_key,
    SYS_open_by_handle_at,
    SYS_io_uring_setup,
    SYS_setuid,
    SYS_setgid,
    SYS_setreuid,
    SYS_setregid,
    SYS_setresuid,
    SYS_setresgid,
    SYS_setgroups,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::unnecessary_cast)] // c_long is i32 on 32-bit targets
    fn nothing_is_both_allowed_and_fatal() {
        for s in [Service::Nicdrv, Service::Netsrv, Service::Tlsd] {
            let allowed = allowed(s);
            for nr in FATAL {
                assert!(
                    !allowed.contains(&(*nr as i64)),
                    "{} allows fatal {nr}",
                    s.name()
                );
            }
        }
    }
}
