//! The restart policy, apart from the processes it is about: what an exit
//! or a failed start means for a service's next start (docs/resilience.md).
//! An exit within [`QUICK`] of starting is quick: the next start waits
//! 100 ms, 200 ms, 400 ms, ...; after [`QUICK_LIMIT`] quick exits in a row
//! the process is `failed` and left down.

use super::Role;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// An exit sooner than this after the start is a quick one.
pub const QUICK: Duration = Duration::from_secs(1);
/// Quick exits in a row after which a process is given up.
pub const QUICK_LIMIT: u32 = 5;
/// The first back-off after a quick exit; it doubles with each further one.
pub const BACKOFF: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Running,
    Restarting,
    Failed,
    Stopped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Restarting => "restarting",
            State::Failed => "failed",
            State::Stopped => "stopped",
        }
    }
}

pub(super) struct Process {
    pub(super) name: String,
    pub(super) role: Role,
    pub(super) child: Option<Child>,
    pub(super) started: Instant,
    /// Instances started after the first.
    pub(super) restarts: u32,
    /// Instances started so far.
    pub(super) starts: u32,
    pub(super) quick_exits: u32,
    pub(super) state: State,
    pub(super) last_exit: String,
    /// When a restarting process is due to start again; `None` while it
    /// waits for something else (a nicdrv for the data path restart).
    pub(super) restart_at: Option<Instant>,
    /// Why the watchdog killed this instance, for its exit description.
    pub(super) hung: Option<String>,
}

impl Process {
    pub(super) fn new(name: String, role: Role) -> Process {
        Process {
            name,
            role,
            child: None,
            started: Instant::now(),
            restarts: 0,
            starts: 0,
            quick_exits: 0,
            state: State::Stopped,
            last_exit: String::new(),
            restart_at: None,
            hung: None,
        }
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub(super) fn started(&mut self, child: Child) {
        self.child = Some(child);
        self.started = Instant::now();
        if self.starts > 0 {
            self.restarts += 1;
        }
        self.starts += 1;
        self.state = State::Running;
        self.restart_at = None;
    }

    /// Notes an exit described by `how`, quick if it came sooner than
    /// [`QUICK`] after the start. Whether a restart follows is
    /// [`Process::schedule`]'s to say.
    pub(super) fn exited(&mut self, how: String, now: Instant) -> bool {
        self.last_exit = how;
        let quick = now.saturating_duration_since(self.started) < QUICK;
        self.quick_exits = if quick { self.quick_exits + 1 } else { 0 };
        quick
    }

    /// A start that failed counts as an instant exit: the same back-off and
    /// the same limit.
    pub(super) fn start_failed(&mut self, why: &str) {
        self.quick_exits += 1;
        self.last_exit = format!("could not start: {why}");
    }

    /// After an exit or a failed start: gives the process up after
    /// [`QUICK_LIMIT`] quick exits in a row (`false`), else marks it
    /// restarting, due after its back-off — or, with `by_itself` false, when
    /// something else starts it (a driver waits for the data path).
    pub(super) fn schedule(&mut self, now: Instant, by_itself: bool) -> bool {
        if self.quick_exits >= QUICK_LIMIT {
            self.state = State::Failed;
            self.restart_at = None;
            return false;
        }
        self.state = State::Restarting;
        self.restart_at = by_itself.then(|| now + backoff(self.quick_exits));
        true
    }
}

/// "exit status 1", "killed by signal 9".
pub fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        format!("exit status {code}")
    } else if let Some(sig) = status.signal() {
        format!("killed by signal {sig}")
    } else {
        status.to_string()
    }
}

/// The wait before the next start after `quick_exits` quick exits in a row.
pub fn backoff(quick_exits: u32) -> Duration {
    match quick_exits {
        0 => Duration::ZERO,
        n => BACKOFF * (1u32 << (n - 1).min(16)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_100ms() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(3), Duration::from_millis(400));
        assert_eq!(backoff(4), Duration::from_millis(800));
    }

    #[test]
    fn exits_are_described_plainly() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(describe_exit(ExitStatus::from_raw(1 << 8)), "exit status 1");
        assert_eq!(describe_exit(ExitStatus::from_raw(9)), "killed by signal 9");
    }

    fn process() -> Process {
        Process::new("netsrv".into(), Role::Netsrv)
    }

    #[test]
    fn quick_exits_back_off_and_then_give_up() {
        let mut p = process();
        let t0 = p.started;
        let mut waits = Vec::new();
        for _ in 0..QUICK_LIMIT {
            assert!(p.exited("exit status 1".into(), t0 + Duration::from_millis(10)));
            if p.schedule(t0, true) {
                assert_eq!(p.state, State::Restarting);
                waits.push(p.restart_at.unwrap() - t0);
            }
        }
        assert_eq!(
            waits,
            [100, 200, 400, 800].map(Duration::from_millis).to_vec(),
            "four restarts, doubling"
        );
        assert_eq!(p.state, State::Failed, "the fifth quick exit gives up");
        assert_eq!(p.restart_at, None);
    }

    #[test]
    fn a_slow_exit_forgives_the_quick_ones() {
        let mut p = process();
        let t0 = p.started;
        for _ in 0..QUICK_LIMIT - 1 {
            p.exited("exit status 1".into(), t0);
        }
        assert!(!p.exited("killed by signal 9".into(), t0 + QUICK * 2));
        assert_eq!(p.quick_exits, 0);
        assert!(p.schedule(t0, true));
        assert_eq!(p.restart_at, Some(t0), "at once");
        assert_eq!(p.last_exit, "killed by signal 9");
    }

    #[test]
    fn failed_starts_count_as_quick_exits() {
        let mut p = process();
        let t0 = p.started;
        for i in 1..QUICK_LIMIT {
            p.start_failed("no such file");
            assert!(p.schedule(t0, true), "start {i}");
        }
        p.start_failed("no such file");
        assert!(!p.schedule(t0, true));
        assert_eq!(p.last_exit, "could not start: no such file");
    }

    #[test]
    fn a_process_started_by_another_waits_without_a_time() {
        let mut p = Process::new("nicdrv p0".into(), Role::Nicdrv(0));
        p.exited("exit status 1".into(), p.started);
        assert!(p.schedule(p.started, false));
        assert_eq!((p.state, p.restart_at), (State::Restarting, None));
    }
}
