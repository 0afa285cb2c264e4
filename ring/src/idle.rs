//! Polling a little before sleeping on a doorbell, while that pays.
//!
//! A process that sleeps is woken through a doorbell, which on these
//! machines' vCPUs costs the ringer and the sleeper tens of microseconds and
//! puts a scheduling delay on the path of every request: a 1-byte ping-pong
//! through the services wakes five processes in a row. When the work a
//! process waits for is a few microseconds away (a reply is due) and a core
//! is free, polling for it costs less than sleeping. When the cores are
//! busy (a bulk transfer through five processes on two cores) polling
//! steals the core the work needs: tried as a fixed spin, it cut the
//! transfer by a third.
//!
//! So [`IdlePoll`] polls for at most a maximum, and only while it pays:
//! while more than a quarter of recent idle spells ended within that
//! maximum (work found by a round, or a sleep that short), and not for a
//! while after a round in which yielding the CPU handed it to another task
//! (the thread's involuntary context switches grew: the core is contended;
//! the round ends at once). Idle costs nothing: long sleeps bring the share
//! of short spells down and the rounds stop. Nothing here touches a ring;
//! the caller's `ready` check is what it looks at before it sleeps, and it
//! still asks for a signal and checks once more before sleeping, so a
//! round that misses work loses nothing.
//!
//! Measured (docs/benchmarks.md): the 1-byte ping-pong's p99 went from
//! 390-450 to 210-240 us and its p50 from 135-140 to 112-119; the tax
//! bench, within its noise, 0.61-0.64 against 0.63-0.77 without.

use std::time::{Duration, Instant};

/// How long to poll before sleeping, learned from what polling found.
#[derive(Debug)]
pub struct IdlePoll {
    max: Duration,
    /// Of recent idle spells, how many ended within `max` (out of
    /// [`HITS_ONE`], a moving average).
    hits: u32,
    /// No round until then: the last one found the core contended.
    quiet_until: Option<Instant>,
    preemptions: fn() -> Option<u64>,
}

/// One round of polling, from [`IdlePoll::start`] to [`IdlePoll::finish`].
#[derive(Debug)]
pub struct Round {
    start: Instant,
    budget: Duration,
    preemptions: fn() -> Option<u64>,
    seen: u64,
    contended: bool,
}

const HITS_ONE: u32 = 1 << 10;
/// Polls while more than a quarter of the idle spells end within a round.
const HITS_ENOUGH: u32 = HITS_ONE / 4;
/// How long a contended core keeps polling off.
const QUIET: Duration = Duration::from_millis(50);

impl IdlePoll {
    /// The default maximum: about what one wakeup costs on these machines.
    pub const MAX: Duration = Duration::from_micros(50);

    /// Polls for at most `max` per round; zero never polls.
    pub fn new(max: Duration) -> IdlePoll {
        IdlePoll::counting(max, crate::platform::preemptions)
    }

    /// As [`new`](Self::new), with the count of the thread's involuntary
    /// context switches read from `preemptions` (`None`: unknown, so the
    /// CPU is taken as contended and no round starts).
    pub fn counting(max: Duration, preemptions: fn() -> Option<u64>) -> IdlePoll {
        IdlePoll {
            max,
            hits: HITS_ONE,
            quiet_until: None,
            preemptions,
        }
    }

    /// Whether the next idle spell starts with a round.
    pub fn polls(&self) -> bool {
        !self.max.is_zero()
            && self.hits > HITS_ENOUGH
            && self.quiet_until.is_none_or(|t| Instant::now() >= t)
    }

    /// Starts a round, or `None` when polling does not pay now.
    pub fn start(&self) -> Option<Round> {
        if !self.polls() {
            return None;
        }
        Some(Round {
            start: Instant::now(),
            budget: self.max,
            preemptions: self.preemptions,
            seen: (self.preemptions)()?,
            contended: false,
        })
    }

    /// Ends a round; `found`: it ended because work came (an idle spell
    /// that ended within a round). Otherwise the spell goes on into the
    /// sleep that [`slept`](Self::slept) reports.
    pub fn finish(&mut self, round: Round, found: bool) {
        if round.contended {
            self.quiet_until = Some(Instant::now() + QUIET);
        } else if found {
            self.spell(true);
        }
    }

    /// After the caller slept for `how_long` (after a fruitless round, or
    /// none): the idle spell ended then.
    pub fn slept(&mut self, how_long: Duration) {
        self.spell(how_long < self.max);
    }

    fn spell(&mut self, short: bool) {
        let sample = if short { HITS_ONE } else { 0 };
        self.hits = self.hits - self.hits / 8 + sample / 8;
    }

    /// One round over `ready`, yielding the CPU between checks: whether it
    /// found work.
    pub fn poll(&mut self, mut ready: impl FnMut() -> bool) -> bool {
        let Some(mut round) = self.start() else {
            return false;
        };
        let found = loop {
            if ready() {
                break true;
            }
            if !round.go_on() {
                break false;
            }
        };
        self.finish(round, found);
        found
    }
}

impl Round {
    /// Gives the CPU to whoever waits for it, then answers whether to
    /// check again: not once the budget is spent, nor once the yield found
    /// another task waiting for this core.
    pub fn go_on(&mut self) -> bool {
        if self.start.elapsed() >= self.budget {
            return false;
        }
        std::thread::yield_now();
        match (self.preemptions)() {
            Some(n) if n == self.seen => true,
            _ => {
                self.contended = true;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        static SWITCHES: Cell<u64> = const { Cell::new(0) };
    }

    fn fake() -> Option<u64> {
        Some(SWITCHES.with(Cell::get))
    }

    fn preempt() {
        SWITCHES.with(|s| s.set(s.get() + 1));
    }

    const MAX: Duration = Duration::from_micros(40);

    #[test]
    fn long_sleeps_stop_the_rounds_and_then_they_cost_nothing() {
        let mut idle = IdlePoll::counting(MAX, fake);
        let mut spells = 0;
        while idle.polls() {
            idle.slept(Duration::from_millis(5));
            spells += 1;
        }
        assert_eq!(
            spells, 11,
            "a quarter of short spells is left after 11 long ones"
        );
        let mut checks = 0;
        assert!(!idle.poll(|| {
            checks += 1;
            true
        }));
        assert_eq!(checks, 0, "no round, not even one check");
    }

    #[test]
    fn short_spells_bring_the_rounds_back() {
        let mut idle = IdlePoll::counting(MAX, fake);
        while idle.polls() {
            idle.slept(Duration::from_millis(5));
        }
        idle.slept(Duration::from_micros(10));
        assert!(idle.polls(), "one short sleep after the share fell below");
        // Work a round finds is a short spell too.
        let mut checks = 0;
        assert!(idle.poll(|| {
            checks += 1;
            checks == 3
        }));
        for _ in 0..3 {
            idle.slept(Duration::from_millis(5));
        }
        assert!(idle.polls());
    }

    #[test]
    fn a_round_runs_out_at_its_maximum() {
        let mut idle = IdlePoll::counting(MAX, fake);
        let t = Instant::now();
        assert!(!idle.poll(|| false));
        assert!(t.elapsed() >= MAX);
        assert!(idle.polls(), "a fruitless round alone changes nothing");
    }

    #[test]
    fn a_contended_core_ends_the_round_and_stops_polling_for_a_while() {
        let mut idle = IdlePoll::counting(Duration::from_secs(10), fake);
        let mut checks = 0;
        let t = Instant::now();
        assert!(!idle.poll(|| {
            checks += 1;
            if checks == 2 {
                // Another task took the core at the next yield.
                preempt();
            }
            false
        }));
        assert_eq!(checks, 2);
        assert!(t.elapsed() < Duration::from_secs(5), "ended at once");
        assert!(!idle.polls());
        std::thread::sleep(QUIET);
        assert!(idle.polls());
    }

    #[test]
    fn an_unknown_switch_count_never_polls() {
        let mut idle = IdlePoll::counting(MAX, || None);
        assert!(!idle.poll(|| true));
    }

    #[test]
    fn zero_maximum_never_polls() {
        let mut idle = IdlePoll::counting(Duration::ZERO, fake);
        assert!(!idle.polls());
        assert!(!idle.poll(|| true));
    }

    #[test]
    fn the_real_count_is_known_here() {
        assert!(crate::platform::preemptions().is_some());
    }
}
