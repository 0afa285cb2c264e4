//! The processes a bench measures: two service sets on a sim wire, the
//! pids of a host's processes, and their CPU time and memory from /proc.

use capnet::host::Host;
use capnet_tests::Scratch;

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

/// User+system CPU seconds of a process.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / ticks_per_second()
}

pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// (name, pid) of every service process of a host, and of its supervisor.
pub fn service_pids(host: &Host) -> Vec<(String, u32)> {
    let mut pids = vec![("capnet".to_string(), host.pid())];
    pids.extend(
        host.processes()
            .unwrap()
            .into_iter()
            .map(|p| (p.name, p.pid)),
    );
    pids
}

pub fn two_hosts(scratch: &Scratch) -> (Host, Host) {
    capnet_tests::two_hosts(scratch, "")
}

/// Runs a shell command; whether it succeeded.
pub fn sh(cmd: &str) -> bool {
    std::process::Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// User+system CPU seconds of this process's children that were waited for.
fn reaped_children_cpu() -> f64 {
    // SAFETY: rusage is plain data; all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer is to a local that outlives the call.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Waits for a child: whether it succeeded, and the CPU seconds it used,
/// all of them (its /proc entry is gone once it ends). No other child may
/// be waited for meanwhile.
pub fn wait_cpu(child: &mut std::process::Child) -> (bool, f64) {
    let before = reaped_children_cpu();
    let ok = child.wait().is_ok_and(|s| s.success());
    (ok, reaped_children_cpu() - before)
}
