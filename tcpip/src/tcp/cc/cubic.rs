//! CUBIC's window (RFC 9438), counted in bytes.
//!
//! RFC 9438 counts windows in segments and time in seconds:
//! `W_cubic(t) = C*(t-K)^3 + W_max`, `K = cbrt((W_max - cwnd_epoch)/C)`.
//! In bytes the curve is `W_max + C*MSS*(t-K)^3` and
//! `K = cbrt((W_max - cwnd_epoch)/(C*MSS))`. The cube and the cube root are
//! computed in f64, which holds every window up to 2^53 bytes exactly; the
//! rest is integer arithmetic, with remainders carried from ACK to ACK so
//! that small increments are not lost. Linux computes the same curve with an
//! integer cube root on a 1/1024 s clock (bictcp_update); the two agree
//! within rounding.
//!
//! Where the RFC and Linux differ, this follows:
//! - ssthresh = β·cwnd (Linux, and RFC 9438 §4.6's note that cwnd may be
//!   used) rather than β·flight;
//! - the RTT of `W_cubic(t + RTT)` is the minimum RTT seen since the last RTO
//!   (Linux's delay_min) rather than the smoothed RTT (§4.2): the queue a
//!   flow builds should not make its own growth faster;
//! - the Reno-friendly region (§4.3) sets cwnd to W_est (RFC), and α_cubic
//!   becomes 1 once W_est reaches cwnd_prior (RFC; Linux keeps 0.53);
//! - t counts only the time the flow was cwnd-limited (§5.8: t "MUST NOT
//!   include" application-limited periods); Linux only removes idle time.

use std::time::Duration;

use crate::time::Instant;

/// §5: C = 0.4 (segments per second cubed).
const C: f64 = 0.4;
/// §4.6: β_cubic = 0.7.
const BETA_NUM: usize = 7;
const BETA_DEN: usize = 10;
/// §4.7, fast convergence: W_max shrinks to cwnd·(1 + β_cubic)/2.
const FAST_CONVERGENCE_NUM: usize = 17;
const FAST_CONVERGENCE_DEN: usize = 20;
/// §4.3: α_cubic = 3·(1 - β_cubic)/(1 + β_cubic) = 0.9/1.7 = 9/17…
const ALPHA_NUM: u128 = 9;
/// …and 17/17 once W_est has reached cwnd_prior.
const ALPHA_DEN: u128 = 17;

/// CUBIC's state besides cwnd and ssthresh.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Cubic {
    /// W_max in bytes: the window before the last reduction (after fast
    /// convergence). None before the first congestion event and after an
    /// RTO: the next epoch then starts at its own window with K = 0
    /// (§4.8, §4.10).
    w_max: Option<usize>,
    /// cwnd_prior (§4.6): the window when ssthresh was last set by a
    /// congestion event; None before any.
    cwnd_prior: Option<usize>,
    /// The current congestion-avoidance stage; None until its first ACK.
    epoch: Option<Epoch>,
    /// The smallest RTT sample since the connection began or the last RTO.
    min_rtt: Option<Duration>,
}

/// One congestion-avoidance stage (§4.2).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Epoch {
    /// t: the cwnd-limited time since the stage began.
    t: Duration,
    /// When `t` was last brought up to date.
    last: Instant,
    /// K in seconds.
    k: f64,
    /// The plateau of this stage's curve, in bytes: W_max, or the window at
    /// the stage's start if that is larger (K = 0 then).
    origin: usize,
    /// W_est (§4.3) in bytes.
    w_est: usize,
    /// Numerator left over from W_est's increments (denominator 17·cwnd).
    w_est_rem: u128,
    /// Numerator left over from cwnd's increments (denominator cwnd).
    cwnd_rem: u128,
}

impl Epoch {
    fn start(now: Instant, cwnd: usize, w_max: Option<usize>, mss: usize) -> Epoch {
        let origin = w_max.unwrap_or(0).max(cwnd);
        let k = if origin > cwnd {
            ((origin - cwnd) as f64 / (C * mss as f64)).cbrt()
        } else {
            0.0
        };
        Epoch {
            t: Duration::ZERO,
            last: now,
            k,
            origin,
            w_est: cwnd,
            w_est_rem: 0,
            cwnd_rem: 0,
        }
    }

    /// W_cubic(t) in bytes (§4.2 equation 1).
    fn w_cubic(&self, t: Duration, mss: usize) -> f64 {
        let d = t.as_secs_f64() - self.k;
        self.origin as f64 + C * mss as f64 * d * d * d
    }
}

impl Cubic {
    /// A congestion event (§4.6, §4.7): remembers the window for the
    /// curve and returns the new ssthresh. The next ACK in congestion
    /// avoidance starts a new epoch.
    pub(super) fn on_congestion(&mut self, cwnd: usize, mss: usize) -> usize {
        self.w_max = Some(match self.w_max {
            Some(w_max) if cwnd < w_max => {
                super::mul_div(cwnd, FAST_CONVERGENCE_NUM, FAST_CONVERGENCE_DEN)
            }
            _ => cwnd,
        });
        self.cwnd_prior = Some(cwnd);
        self.epoch = None;
        super::mul_div(cwnd, BETA_NUM, BETA_DEN).max(mss.saturating_mul(2))
    }

    /// An RTO (§4.8): the next congestion avoidance starts at its own
    /// window with K = 0; the path may have changed, so its RTT is
    /// measured afresh (Linux bictcp_reset).
    pub(super) fn after_timeout(&mut self) {
        self.w_max = None;
        self.epoch = None;
        self.min_rtt = None;
    }

    pub(super) fn on_rtt(&mut self, rtt: Duration) {
        self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
    }

    /// The sender was idle until `now`: that time is not part of t (§5.8,
    /// Linux CA_EVENT_TX_START).
    pub(super) fn on_idle(&mut self, now: Instant) {
        if let Some(e) = &mut self.epoch {
            e.last = e.last.max(now);
        }
    }

    /// The segment size changed: byte quantities scale by `num/den` and
    /// the curve restarts from the current window (K is in segments).
    pub(super) fn rescale(&mut self, num: usize, den: usize) {
        self.w_max = self.w_max.map(|w| super::mul_div(w, num, den));
        self.cwnd_prior = self.cwnd_prior.map(|w| super::mul_div(w, num, den));
        self.epoch = None;
    }

    /// Undo (§4.9): the curve as it was before the spurious reduction;
    /// the RTT measured since stays.
    pub(super) fn restore(&mut self, prior: Cubic) {
        let min_rtt = self.min_rtt;
        *self = prior;
        self.min_rtt = min_rtt;
    }

    /// An ACK in congestion avoidance that acknowledged `acked` new bytes;
    /// returns the new cwnd (unclamped). `cwnd_limited` false: the window
    /// stays, and neither does t run.
    pub(super) fn congestion_avoidance(
        &mut self,
        now: Instant,
        acked: usize,
        cwnd_limited: bool,
        cwnd: usize,
        mss: usize,
    ) -> usize {
        let cwnd = cwnd.max(1);
        if !cwnd_limited {
            self.on_idle(now);
            return cwnd;
        }
        if self.epoch.is_none() {
            if acked == 0 {
                return cwnd;
            }
            // §4.2: the stage begins with its first ACK.
            self.epoch = Some(Epoch::start(now, cwnd, self.w_max, mss));
        }
        let Some(e) = self.epoch.as_mut() else {
            return cwnd;
        };
        e.t = e.t.saturating_add(now.since(e.last));
        e.last = e.last.max(now);
        if acked == 0 {
            return cwnd;
        }
        // §4.3: W_est += α·segments_acked/cwnd segments, i.e.
        // α·acked·mss/cwnd bytes, with α = 9/17 until W_est reaches
        // cwnd_prior and 1 from then on.
        let alpha_num = match self.cwnd_prior {
            Some(prior) if e.w_est < prior => ALPHA_NUM,
            _ => ALPHA_DEN,
        };
        let den = ALPHA_DEN * cwnd as u128;
        let num = e.w_est_rem + alpha_num * acked as u128 * mss as u128;
        e.w_est = e
            .w_est
            .saturating_add(usize::try_from(num / den).unwrap_or(usize::MAX))
            .min(super::MAX_CWND);
        e.w_est_rem = num % den;

        if e.w_cubic(e.t, mss) < e.w_est as f64 {
            // §4.3: the Reno-friendly region. Never a decrease: cwnd may
            // already be above W_est from the curve.
            return cwnd.max(e.w_est);
        }
        // §4.4, §4.5: towards W_cubic(t + RTT), bounded to [cwnd, 1.5·cwnd]
        // (the increase is never negative nor faster than slow start).
        let rtt = self.min_rtt.unwrap_or(Duration::ZERO);
        let w_next = e.w_cubic(e.t.saturating_add(rtt), mss);
        let target = if w_next <= cwnd as f64 {
            cwnd
        } else if w_next >= 1.5 * cwnd as f64 {
            cwnd.saturating_add(cwnd / 2)
        } else {
            w_next as usize
        };
        // cwnd += (target - cwnd)/cwnd per segment acked, i.e.
        // (target - cwnd)·acked/cwnd bytes.
        let num = e.cwnd_rem + (target - cwnd) as u128 * acked as u128;
        let den = cwnd as u128;
        e.cwnd_rem = num % den;
        cwnd.saturating_add(usize::try_from(num / den).unwrap_or(usize::MAX))
    }

    #[cfg(test)]
    pub(super) fn w_max(&self) -> Option<usize> {
        self.w_max
    }

    #[cfg(test)]
    pub(super) fn k(&self) -> Option<f64> {
        self.epoch.map(|e| e.k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;

    #[test]
    fn reduction_is_beta_with_fast_convergence() {
        let mut c = Cubic::default();
        assert_eq!(c.on_congestion(100 * MSS, MSS), 70 * MSS);
        assert_eq!(c.w_max, Some(100 * MSS));
        assert_eq!(c.cwnd_prior, Some(100 * MSS));
        // A second loss below W_max: the flow releases bandwidth (§4.7).
        assert_eq!(c.on_congestion(80 * MSS, MSS), 56 * MSS);
        assert_eq!(c.w_max, Some(68 * MSS));
        // At or above W_max: W_max is the window.
        assert_eq!(c.on_congestion(90 * MSS, MSS), 63 * MSS);
        assert_eq!(c.w_max, Some(90 * MSS));
        // Two segments at least.
        assert_eq!(c.on_congestion(MSS, MSS), 2 * MSS);
    }

    #[test]
    fn k_is_the_time_back_to_w_max() {
        let e = Epoch::start(Instant::ZERO, 70 * MSS, Some(100 * MSS), MSS);
        // K = cbrt(30 / 0.4) = cbrt(75).
        assert!((e.k - 75f64.cbrt()).abs() < 1e-9);
        let at_k = Duration::from_secs_f64(e.k);
        assert!((e.w_cubic(at_k, MSS) - (100 * MSS) as f64).abs() < 1.0);
        assert!((e.w_cubic(Duration::ZERO, MSS) - (70 * MSS) as f64).abs() < 1.0);
        // No W_max, or a window above it: K = 0 from the current window.
        let e = Epoch::start(Instant::ZERO, 70 * MSS, None, MSS);
        assert_eq!((e.k, e.origin), (0.0, 70 * MSS));
        let e = Epoch::start(Instant::ZERO, 70 * MSS, Some(50 * MSS), MSS);
        assert_eq!((e.k, e.origin), (0.0, 70 * MSS));
    }

    #[test]
    fn increase_is_at_most_half_a_window_per_window_acked() {
        let mut c = Cubic::default();
        c.on_rtt(Duration::from_secs(1000));
        let t0 = Instant::from_millis(1);
        let mut cwnd = c.congestion_avoidance(t0, MSS, true, 10 * MSS, MSS);
        // Far along the convex curve the target is 1.5·cwnd: after a
        // window of ACKs the window is at most 1.5 times larger.
        let start = cwnd;
        let t = t0 + Duration::from_secs(3600);
        for _ in 0..start / MSS {
            cwnd = c.congestion_avoidance(t, MSS, true, cwnd, MSS);
        }
        assert!(cwnd <= start * 3 / 2 + MSS, "{cwnd} {start}");
        assert!(cwnd > start * 13 / 10, "{cwnd} {start}");
    }

    #[test]
    fn not_cwnd_limited_neither_grows_nor_runs_the_clock() {
        let mut c = Cubic::default();
        c.on_congestion(100 * MSS, MSS);
        let mut now = Instant::from_millis(10);
        let cwnd = c.congestion_avoidance(now, MSS, true, 70 * MSS, MSS);
        for _ in 0..1000 {
            now += Duration::from_millis(10);
            assert_eq!(c.congestion_avoidance(now, MSS, false, cwnd, MSS), cwnd);
        }
        assert_eq!(c.epoch.unwrap().t, Duration::ZERO);
        c.on_idle(now + Duration::from_secs(5));
        now += Duration::from_secs(5) + Duration::from_millis(10);
        c.congestion_avoidance(now, MSS, true, cwnd, MSS);
        assert_eq!(c.epoch.unwrap().t, Duration::from_millis(10));
    }

    #[test]
    fn extreme_inputs_do_not_overflow() {
        let mut c = Cubic::default();
        c.on_rtt(Duration::MAX);
        let big = super::super::MAX_CWND;
        c.on_congestion(big, usize::MAX);
        let far = Instant::from_micros(u64::MAX);
        for (now, acked, cwnd) in [
            (Instant::ZERO, usize::MAX, 1),
            (far, usize::MAX, big),
            (far, usize::MAX, 0),
            (far, 0, big),
        ] {
            let w = c.congestion_avoidance(now, acked, true, cwnd, 65535);
            assert!(w >= cwnd);
        }
    }
}
