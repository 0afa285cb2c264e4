//! The round-trip time estimate of one connection and the retransmission
//! timeout (RTO) computed from it: RFC 6298, with Linux's constants.
//!
//! What is computed, exactly:
//!
//! - Before any sample, RTO = 1 s (RFC 6298 2.1).
//! - The first sample R: SRTT = R, RTTVAR = R/2 (2.2); every later sample
//!   R': RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R'|, then SRTT = 7/8 SRTT + 1/8
//!   R' (2.3). Kept in integer microseconds scaled by 8 and 4, as Linux's
//!   `srtt_us` and `mdev_us` are.
//! - RTO = SRTT + max(4 RTTVAR, 200 ms), at most 120 s. RFC 6298 2.4 puts
//!   the 1 s minimum on the whole RTO; Linux instead floors the variance
//!   term at `TCP_RTO_MIN` (200 ms: its `rttvar_us` never drops below
//!   `tcp_rto_min`), so a path of 10 ms gets an RTO of 210 ms, and a path of
//!   1 s one of 1.2 s or more. The 1 µs clock granularity G of 2.3 is below
//!   the floor, so it never counts. 120 s is Linux's `TCP_RTO_MAX` (2.5
//!   allows any maximum of at least 60 s).
//! - Each [`RttEstimator::backoff`] doubles the RTO (5.5), up to 120 s; a
//!   new sample ends the backoff (5.7's note: the new estimate replaces the
//!   backed-off RTO; Linux resets `icsk_backoff` on every valid sample).
//!
//! Where this differs from Linux's estimator: Linux gives a sample below
//! SRTT a smaller weight in the variance (1/32 rather than 1/4, when it is
//! further below than the mean deviation) and lets RTTVAR fall only once per
//! flight of data, towards the largest deviation seen in that flight. Both
//! need the sequence space, which this module does not see; here the RFC's
//! plain per-sample update holds, with Linux's floor.
//!
//! Karn's algorithm (RFC 6298 3) is the caller's: it passes only samples
//! from segments that were not retransmitted, or from timestamps (RFC 7323
//! 4.1).
//!
//! The estimator also keeps the minimum RTT over the last 300 s (Linux's
//! `tcp_min_rtt_wlen`), with Kathleen Nichols' windowed-minimum filter (the
//! one Linux's `lib/win_minmax.c` runs for BBR and RACK): three samples,
//! O(1) time and space.

use std::time::Duration;

use crate::time::Instant;

/// The RTO before any sample (RFC 6298 2.1).
pub const INITIAL_RTO: Duration = Duration::from_secs(1);

/// The RTO before any sample once the handshake had to be retransmitted
/// (RFC 6298 5.7; Linux's `TCP_TIMEOUT_FALLBACK`).
pub const FALLBACK_RTO: Duration = Duration::from_secs(3);

/// The floor on the variance term of the RTO (Linux's `TCP_RTO_MIN`), and
/// so the smallest RTO there is.
pub const MIN_RTO: Duration = Duration::from_millis(200);

/// The largest RTO, backoff included (Linux's `TCP_RTO_MAX`). Samples above
/// it count as it.
pub const MAX_RTO: Duration = Duration::from_secs(120);

/// How long a sample may stand as the minimum RTT (Linux's
/// `tcp_min_rtt_wlen` default).
pub const MIN_RTT_WINDOW: Duration = Duration::from_secs(300);

const MIN_RTO_US: u64 = MIN_RTO.as_micros() as u64;
const MAX_RTO_US: u64 = MAX_RTO.as_micros() as u64;

/// The smoothed estimate, once there has been a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Smoothed {
    /// 8 SRTT, in microseconds.
    srtt8: u64,
    /// 4 RTTVAR, in microseconds: the RTO's variance term itself.
    rttvar4: u64,
    /// The most recent sample, in microseconds (clamped to MAX_RTO).
    latest: u64,
}

/// The RTT estimate and RTO of one connection.
#[derive(Clone, Debug)]
pub struct RttEstimator {
    smoothed: Option<Smoothed>,
    /// How many times the RTO has doubled since the last sample (it stops
    /// counting once the RTO reaches MAX_RTO).
    backoffs: u32,
    min_rtt: WindowedMin,
    /// The RTO while there is no sample: [`INITIAL_RTO`], or
    /// [`FALLBACK_RTO`] after a retransmitted handshake.
    unsampled_us: u64,
}

impl Default for RttEstimator {
    fn default() -> Self {
        Self::new()
    }
}

impl RttEstimator {
    /// An estimator with no samples: RTO 1 s.
    pub fn new() -> Self {
        RttEstimator {
            smoothed: None,
            backoffs: 0,
            min_rtt: WindowedMin::new(MIN_RTT_WINDOW),
            unsampled_us: INITIAL_RTO.as_micros() as u64,
        }
    }

    /// RFC 6298 5.7: the SYN (or SYN-ACK) timed out and the handshake gave
    /// no sample, so until one comes the RTO is 3 s rather than 1 s (a 1 s
    /// RTO has just proved too short for this path).
    pub fn handshake_retransmitted(&mut self) {
        self.unsampled_us = FALLBACK_RTO.as_micros() as u64;
    }

    /// Takes one RTT measurement, made at `now` (RFC 6298 2.2, 2.3), and
    /// ends any backoff. Only samples that Karn's algorithm allows: not from
    /// a retransmitted segment, unless timed by a timestamp echo. A sample
    /// above [`MAX_RTO`] counts as `MAX_RTO`.
    pub fn sample(&mut self, now: Instant, rtt: Duration) {
        let r = duration_us(rtt).min(MAX_RTO_US);
        self.smoothed = Some(match self.smoothed {
            None => Smoothed {
                srtt8: r * 8,
                // 4 * R/2.
                rttvar4: r * 2,
                latest: r,
            },
            Some(s) => {
                // RTTVAR first, from the SRTT before this sample (2.3).
                let err = (s.srtt8 / 8).abs_diff(r);
                Smoothed {
                    rttvar4: s.rttvar4 - s.rttvar4 / 4 + err,
                    srtt8: s.srtt8 - s.srtt8 / 8 + r,
                    latest: r,
                }
            }
        });
        self.min_rtt.update(now, Duration::from_micros(r));
        self.backoffs = 0;
    }

    /// The retransmission timeout now, backoff included: between
    /// [`MIN_RTO`] and [`MAX_RTO`].
    pub fn rto(&self) -> Duration {
        let rto = self
            .base_rto_us()
            .saturating_mul(1u64 << self.backoffs.min(32))
            .min(MAX_RTO_US);
        Duration::from_micros(rto)
    }

    /// Doubles the RTO, up to [`MAX_RTO`], after the retransmission timer
    /// expired (RFC 6298 5.5).
    pub fn backoff(&mut self) {
        if self.rto() < MAX_RTO {
            self.backoffs += 1;
        }
    }

    /// Ends the backoff without a sample: the RTO is again the one the
    /// estimate gives.
    pub fn reset_backoff(&mut self) {
        self.backoffs = 0;
    }

    /// The smoothed RTT (SRTT), once there has been a sample.
    pub fn srtt(&self) -> Option<Duration> {
        self.smoothed.map(|s| Duration::from_micros(s.srtt8 / 8))
    }

    /// The RTT variation (RTTVAR), once there has been a sample.
    pub fn rttvar(&self) -> Option<Duration> {
        self.smoothed.map(|s| Duration::from_micros(s.rttvar4 / 4))
    }

    /// The most recent sample (clamped to [`MAX_RTO`]).
    pub fn latest(&self) -> Option<Duration> {
        self.smoothed.map(|s| Duration::from_micros(s.latest))
    }

    /// The smallest sample of roughly the last [`MIN_RTT_WINDOW`] (the
    /// windowed-minimum filter's estimate, as of the latest sample: it ages
    /// only as samples come).
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt.get()
    }

    /// The RTO without backoff, in microseconds.
    fn base_rto_us(&self) -> u64 {
        match self.smoothed {
            None => self.unsampled_us,
            Some(s) => (s.srtt8 / 8 + s.rttvar4.max(MIN_RTO_US)).min(MAX_RTO_US),
        }
    }
}

/// A duration in whole microseconds, saturating.
fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A sample and when it was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamped {
    at: Instant,
    rtt: Duration,
}

/// Kathleen Nichols' windowed minimum: the best, second-best and
/// third-best samples, each later than the one before, of the last
/// `window`. The estimate is always a sample from within the window; when
/// the best ages out, the second takes its place, and the second and third
/// are refreshed a quarter and half a window on so that they are not all
/// about to age out together.
#[derive(Clone, Debug)]
struct WindowedMin {
    window: Duration,
    /// `best[0]` is the estimate; `None` before any sample.
    best: Option<[Stamped; 3]>,
}

impl WindowedMin {
    fn new(window: Duration) -> Self {
        WindowedMin { window, best: None }
    }

    fn get(&self) -> Option<Duration> {
        self.best.map(|b| b[0].rtt)
    }

    fn update(&mut self, at: Instant, rtt: Duration) {
        let s = Stamped { at, rtt };
        let Some(mut b) = self.best else {
            self.best = Some([s; 3]);
            return;
        };
        // A new minimum, or even the third choice is out of the window:
        // this sample is the only one that counts.
        if rtt <= b[0].rtt || at - b[2].at > self.window {
            self.best = Some([s; 3]);
            return;
        }
        if rtt <= b[1].rtt {
            b[1] = s;
            b[2] = s;
        } else if rtt <= b[2].rtt {
            b[2] = s;
        }
        let age = at - b[0].at;
        if age > self.window {
            // The best aged out: promote the others (b[2] is in the window,
            // or the reset above would have happened).
            b = [b[1], b[2], s];
            if at - b[0].at > self.window {
                b = [b[1], b[2], s];
            }
        } else if b[1].at == b[0].at && age > self.window / 4 {
            // A quarter window with no second choice: take this one.
            b[1] = s;
            b[2] = s;
        } else if b[2].at == b[1].at && age > self.window / 2 {
            b[2] = s;
        }
        self.best = Some(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    fn at_s(s: u64) -> Instant {
        Instant::from_millis(s * 1000)
    }

    #[test]
    fn before_any_sample() {
        let e = RttEstimator::new();
        assert_eq!(e.rto(), INITIAL_RTO);
        assert_eq!(e.srtt(), None);
        assert_eq!(e.rttvar(), None);
        assert_eq!(e.latest(), None);
        assert_eq!(e.min_rtt(), None);
    }

    #[test]
    fn a_retransmitted_handshake_falls_back_to_3s_until_a_sample() {
        let mut e = RttEstimator::new();
        e.handshake_retransmitted();
        assert_eq!(e.rto(), FALLBACK_RTO);
        e.backoff();
        assert_eq!(e.rto(), 2 * FALLBACK_RTO);
        e.sample(at_s(1), ms(100));
        assert_eq!(e.rto(), ms(300));
    }

    #[test]
    fn first_and_second_sample() {
        let mut e = RttEstimator::new();
        e.sample(at_s(1), ms(100));
        assert_eq!(e.srtt(), Some(ms(100)));
        assert_eq!(e.rttvar(), Some(ms(50)));
        // 100 + max(4 * 50, 200).
        assert_eq!(e.rto(), ms(300));
        e.sample(at_s(2), ms(200));
        // RTTVAR = 3/4 * 50 + 1/4 * |100 - 200| = 62.5 (from the old SRTT).
        assert_eq!(e.rttvar(), Some(us(62_500)));
        // SRTT = 7/8 * 100 + 1/8 * 200 = 112.5.
        assert_eq!(e.srtt(), Some(us(112_500)));
        assert_eq!(e.rto(), us(112_500 + 250_000));
        assert_eq!(e.latest(), Some(ms(200)));
        assert_eq!(e.min_rtt(), Some(ms(100)));
    }

    #[test]
    fn first_sample_gives_three_rtts_when_above_the_floor() {
        let mut e = RttEstimator::new();
        e.sample(at_s(0), ms(800));
        assert_eq!(e.rto(), ms(2400));
    }

    #[test]
    fn variance_term_is_floored_at_200ms() {
        let mut e = RttEstimator::new();
        for i in 0..200 {
            e.sample(at_s(i), ms(10));
        }
        assert_eq!(e.srtt(), Some(ms(10)));
        assert_eq!(e.rttvar(), Some(Duration::ZERO));
        assert_eq!(e.rto(), ms(210));
        // A zero RTT (same-tick ACK) is a valid sample.
        let mut z = RttEstimator::new();
        z.sample(at_s(0), Duration::ZERO);
        assert_eq!(z.srtt(), Some(Duration::ZERO));
        assert_eq!(z.rto(), MIN_RTO);
    }

    #[test]
    fn rtt_rises_and_falls() {
        let mut e = RttEstimator::new();
        e.sample(at_s(0), ms(50));
        // A sudden jump to 500 ms: RTTVAR grows by a quarter of the error.
        e.sample(at_s(1), ms(500));
        // RTTVAR = 3/4 * 25 + 1/4 * 450 = 131.25; SRTT = 43.75 + 62.5.
        assert_eq!(e.rttvar(), Some(us(131_250)));
        assert_eq!(e.srtt(), Some(us(106_250)));
        assert_eq!(e.rto(), us(106_250 + 525_000));
        // The RTO follows the path down again.
        for i in 2..100 {
            e.sample(at_s(i), ms(50));
        }
        assert!(e.rto() < ms(260), "{:?}", e.rto());
        assert!(e.rto() >= ms(250));
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let mut e = RttEstimator::new();
        let mut expected = vec![1, 2, 4, 8, 16, 32, 64, 120, 120, 120];
        expected.reverse();
        for _ in 0..10 {
            assert_eq!(e.rto(), Duration::from_secs(expected.pop().unwrap()));
            e.backoff();
        }
        // The counter stopped at the cap: no overflow however long.
        for _ in 0..1000 {
            e.backoff();
        }
        assert_eq!(e.rto(), MAX_RTO);
        e.reset_backoff();
        assert_eq!(e.rto(), INITIAL_RTO);
        // A sample ends the backoff too (RFC 6298 5.7).
        e.backoff();
        e.backoff();
        assert_eq!(e.rto(), Duration::from_secs(4));
        e.sample(at_s(5), ms(100));
        assert_eq!(e.rto(), ms(300));
        e.backoff();
        assert_eq!(e.rto(), ms(600));
    }

    #[test]
    fn huge_samples_are_clamped() {
        let mut e = RttEstimator::new();
        e.sample(at_s(0), Duration::from_secs(1_000_000));
        assert_eq!(e.srtt(), Some(MAX_RTO));
        assert_eq!(e.latest(), Some(MAX_RTO));
        assert_eq!(e.rto(), MAX_RTO);
        e.sample(at_s(1), Duration::MAX);
        assert_eq!(e.rto(), MAX_RTO);
        e.backoff();
        assert_eq!(e.rto(), MAX_RTO);
        // 100 s: 100 + 200 capped at 120.
        let mut f = RttEstimator::new();
        f.sample(at_s(0), Duration::from_secs(100));
        assert_eq!(f.rto(), MAX_RTO);
    }

    /// The integer estimator against the RFC's formulas in floating point.
    #[test]
    fn matches_the_rfc_formulas() {
        let mut rng = SmallRng::seed_from_u64(6298);
        for _ in 0..50 {
            let mut e = RttEstimator::new();
            let mut model: Option<(f64, f64)> = None;
            let base = rng.gen_range(100..2_000_000u64);
            for i in 0..500 {
                let r = (base as f64 * rng.gen_range(0.5..3.0)) as u64;
                e.sample(Instant::from_micros(i), us(r));
                let r = r as f64;
                model = Some(match model {
                    None => (r, r / 2.0),
                    Some((srtt, var)) => (
                        0.875 * srtt + 0.125 * r,
                        0.75 * var + 0.25 * (srtt - r).abs(),
                    ),
                });
                let (srtt, var) = model.unwrap();
                let rto = (srtt + (4.0 * var).max(200_000.0)).min(120e6);
                // Integer truncation costs at most a few microseconds.
                let got = e.rto().as_micros() as f64;
                assert!((got - rto).abs() <= 16.0, "{got} vs {rto}");
                let got_srtt = e.srtt().unwrap().as_micros() as f64;
                assert!((got_srtt - srtt).abs() <= 2.0, "{got_srtt} vs {srtt}");
                let got_var = e.rttvar().unwrap().as_micros() as f64;
                assert!((got_var - var).abs() <= 4.0, "{got_var} vs {var}");
            }
        }
    }

    #[test]
    fn min_rtt_follows_a_falling_path() {
        let mut e = RttEstimator::new();
        for (i, r) in [90, 80, 85, 70, 75].into_iter().enumerate() {
            e.sample(at_s(i as u64), ms(r));
        }
        assert_eq!(e.min_rtt(), Some(ms(70)));
    }

    #[test]
    fn min_rtt_ages_out_after_the_window() {
        let mut e = RttEstimator::new();
        e.sample(at_s(0), ms(10));
        // The path gets longer: 10 ms stands for the whole window...
        for t in 1..=300 {
            e.sample(at_s(t), ms(50 + t % 7));
            assert_eq!(e.min_rtt(), Some(ms(10)), "at {t}");
        }
        // ...and no longer.
        e.sample(at_s(301), ms(53));
        let m = e.min_rtt().unwrap();
        assert!(m >= ms(50) && m <= ms(56), "{m:?}");
        // After a long silence, the first sample is the minimum.
        e.sample(at_s(2000), ms(400));
        assert_eq!(e.min_rtt(), Some(ms(400)));
    }

    /// The filter's estimate is always one of the samples of the last
    /// window, and never below their minimum.
    #[test]
    fn windowed_min_stays_in_the_window() {
        let mut rng = SmallRng::seed_from_u64(300);
        let window = Duration::from_secs(10);
        let mut f = WindowedMin::new(window);
        let mut history: Vec<(Instant, Duration)> = Vec::new();
        let mut now = Instant::ZERO;
        for _ in 0..20_000 {
            now += Duration::from_millis(rng.gen_range(0..1500));
            let rtt = ms(rng.gen_range(10..100));
            f.update(now, rtt);
            history.push((now, rtt));
            let in_window: Vec<Duration> = history
                .iter()
                .filter(|(at, _)| now - *at <= window)
                .map(|&(_, r)| r)
                .collect();
            let got = f.get().unwrap();
            assert!(in_window.contains(&got), "{got:?} not in the window");
            assert!(got >= *in_window.iter().min().unwrap());
        }
    }
}
