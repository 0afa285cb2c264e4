//! The processes a bench measures: two service sets on a sim wire, the
//! pids of a host's processes, and their CPU time and memory from /proc.

use capnet::host::Host;
use capnet_tests::Scratch;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

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

/// CPU seconds of a process to the nanosecond, for the service processes,
/// whose threads live as long as they do: the run time the scheduler
/// counted for each live thread (`/proc/PID/task/*/schedstat`); for this
/// process its rusage, which keeps the threads that ended. The clock ticks
/// [`cpu_seconds`] reads moved in steps of 0.04 s/GiB over a 256 MiB run,
/// as large as the differences the tax bench looks for.
pub fn run_seconds(pid: u32) -> f64 {
    if pid == std::process::id() {
        // SAFETY: getrusage only writes the struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: as above; RUSAGE_SELF is always valid.
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
            return cpu_seconds(pid);
        }
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        return secs(u.ru_utime) + secs(u.ru_stime);
    }
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    ns as f64 / 1e9
}

pub use capnet_tests::rss_kib;

/// Times the threads of a process went to sleep so far (their voluntary
/// context switches): each is a wakeup it then waited for. Threads that
/// ended are not counted.
pub fn sleeps(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|n| n.trim().parse::<u64>().ok())
        })
        .sum()
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

/// A libclient example, built with the workspace beside the service
/// binaries (`cargo build --release --workspace --all-targets`).
pub fn example_binary(name: &str) -> Option<PathBuf> {
    let capnet = capnet::host::capnet_binary().ok()?;
    let path = capnet.parent()?.join("examples").join(name);
    path.is_file().then_some(path)
}

/// A running example server, killed when dropped (a failing bench leaves
/// none behind).
pub struct Example {
    pub child: Child,
    _out: BufReader<std::process::ChildStdout>,
}

impl Example {
    /// Starts the server and waits for its first line, which must begin
    /// with `ready` (it prints it once it listens).
    pub fn start(mut cmd: Command, ready: &str) -> Example {
        let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(line.starts_with(ready), "the server said {line:?}");
        Example { child, _out: out }
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// "name N  name N ...": each process's CPU in µs per `unit` of `units`.
pub fn cpu_line(names: &[&str], cpu: &[f64], units: u64) -> String {
    names
        .iter()
        .zip(cpu)
        .map(|(n, s)| format!("{n} {:.0}", s * 1e6 / units.max(1) as f64))
        .collect::<Vec<_>>()
        .join("  ")
}

/// Writes a bench's figures as JSON to `target/bench-results/<name>.json`
/// (or under `$CAPNET_BENCH_OUT`), where `scripts/plots.py` reads them.
pub fn write_results(name: &str, results: &serde_json::Value) -> std::io::Result<PathBuf> {
    let dir = std::env::var_os("CAPNET_BENCH_OUT").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-results"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(results)?)?;
    Ok(path)
}
