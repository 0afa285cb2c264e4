//! Polling a little before sleeping on a doorbell, while that pays.
//!
//! A process that sleeps is woken through a doorbell, which on these
//! machines' vCPUs costs the ringer and the sleeper tens of microseconds and
//! puts a scheduling delay on the path of every request: a 1-byte ping-pong
//! through the services wakes five processes in a row. When the work a
//! process waits for is a few microseconds away (a reply is due), polling
//! for it costs less than sleeping.
//!
//! [`IdlePoll`] polls for at most a maximum, and only while that pays:
//! while more than a quarter of recent idle spells ended within the
//! maximum (work found by a round, or a sleep that short). Between checks
//! it yields the CPU, so a task waiting for the core runs first (a fixed
//! spin in every loop, netsrv's without yielding, once cost bulk transfers
//! a third of their rate). Idle costs nothing: long sleeps bring the share
//! of short spells down and the rounds stop. Nothing here touches a ring; the caller's `ready` check
//! is what it looks at before it sleeps, and it still asks for a signal
//! and checks once more before sleeping, so a round that misses work
//! loses nothing.
//!
//! A round sees only what its `ready` check can see. A caller whose check
//! cannot look at every producer without being told (netsrv's sockets)
//! asks its producers to ring before the round, so that their rings reach
//! it while it polls, and asks again after a fruitless round.
//!
//! Measured in alternation with polling off (docs/benchmarks.md): the
//! 1-byte ping-pong's p50 32-37 us against 108-118 (Linux: 51-53), p99
//! 71-108 against 284-336; bulk through the processes at the same rate
//! with a third of the sleeps.

use std::time::{Duration, Instant};

/// How long to poll before sleeping, learned from what polling found.
#[derive(Debug)]
pub struct IdlePoll {
    max: Duration,
    /// Of recent idle spells, how many ended within `max` (out of
    /// [`HITS_ONE`], a moving average).
    hits: u32,
}

/// One round of polling, from [`IdlePoll::start`] to [`IdlePoll::finish`].
#[derive(Debug)]
pub struct Round {
    start: Instant,
    budget: Duration,
}

const HITS_ONE: u32 = 1 << 10;
/// Polls while more than a quarter of the idle spells end within a round.
const HITS_ENOUGH: u32 = HITS_ONE / 4;

impl IdlePoll {
    /// The default maximum: about what one wakeup costs on these machines.
    pub const MAX: Duration = Duration::from_micros(50);

    /// The environment variable that sets the maximum for a process, in
    /// microseconds (0 turns polling off; at most [`Self::MAX_SETTING`]).
    pub const ENV: &'static str = "CAPNET_IDLE_POLL_US";
    /// The largest maximum the environment may set.
    pub const MAX_SETTING: Duration = Duration::from_millis(1);

    /// Polls for at most what [`Self::ENV`] says, else [`Self::MAX`].
    pub fn configured() -> IdlePoll {
        IdlePoll::new(Self::setting(std::env::var(Self::ENV).ok().as_deref()))
    }

    /// The maximum a setting of [`Self::ENV`] asks for: a number of
    /// microseconds up to [`Self::MAX_SETTING`]; anything else (or
    /// nothing) is [`Self::MAX`].
    pub fn setting(value: Option<&str>) -> Duration {
        value
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_micros)
            .filter(|d| *d <= Self::MAX_SETTING)
            .unwrap_or(Self::MAX)
    }

    /// Polls for at most `max` per round; zero never polls.
    pub fn new(max: Duration) -> IdlePoll {
        IdlePoll {
            max,
            hits: HITS_ONE,
        }
    }

    /// Whether the next idle spell starts with a round.
    pub fn polls(&self) -> bool {
        !self.max.is_zero() && self.hits > HITS_ENOUGH
    }

    /// Starts a round, or `None` when polling does not pay now.
    pub fn start(&self) -> Option<Round> {
        if !self.polls() {
            return None;
        }
        Some(Round {
            start: Instant::now(),
            budget: self.max,
        })
    }

    /// Ends a round; `found`: it ended because work came (an idle spell
    /// that ended within a round). Otherwise the spell goes on into the
    /// sleep that [`slept`](Self::slept) reports.
    pub fn finish(&mut self, _round: Round, found: bool) {
        if found {
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
    /// check again: not once the budget is spent.
    pub fn go_on(&mut self) -> bool {
        if self.start.elapsed() >= self.budget {
            return false;
        }
        std::thread::yield_now();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_micros(40);

    #[test]
    fn long_sleeps_stop_the_rounds_and_then_they_cost_nothing() {
        let mut idle = IdlePoll::new(MAX);
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
        let mut idle = IdlePoll::new(MAX);
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
        let mut idle = IdlePoll::new(MAX);
        let t = Instant::now();
        assert!(!idle.poll(|| false));
        assert!(t.elapsed() >= MAX);
        assert!(idle.polls(), "a fruitless round alone changes nothing");
    }

    #[test]
    fn zero_maximum_never_polls() {
        let mut idle = IdlePoll::new(Duration::ZERO);
        assert!(!idle.polls());
        assert!(!idle.poll(|| true));
    }

    #[test]
    fn the_environment_sets_the_maximum_within_bounds() {
        assert_eq!(IdlePoll::setting(None), IdlePoll::MAX);
        assert_eq!(IdlePoll::setting(Some("0")), Duration::ZERO);
        assert_eq!(IdlePoll::setting(Some(" 20 ")), Duration::from_micros(20));
        assert_eq!(IdlePoll::setting(Some("1000")), IdlePoll::MAX_SETTING);
        assert_eq!(IdlePoll::setting(Some("1001")), IdlePoll::MAX);
        assert_eq!(IdlePoll::setting(Some("-5")), IdlePoll::MAX);
        assert_eq!(IdlePoll::setting(Some("lots")), IdlePoll::MAX);
    }
}
