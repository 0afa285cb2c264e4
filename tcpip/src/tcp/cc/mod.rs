//! TCP congestion control: how many bytes one connection may have in flight.
//!
//! [`CongestionControl`] owns a connection's congestion window (cwnd) and
//! slow-start threshold (ssthresh), both counted in bytes (RFC 3465), and
//! follows Linux wherever the RFCs leave a choice:
//!
//! - slow start and congestion avoidance (RFC 5681 §3.1) with Appropriate
//!   Byte Counting (RFC 3465); an initial window of 10 segments (RFC 6928,
//!   counted as Linux does: 10 segments whatever their size);
//! - CUBIC (RFC 9438), the default as in Linux, or NewReno's window (RFC
//!   5681, RFC 6582);
//! - HyStart++ (RFC 9406) for CUBIC's initial slow start; NewReno runs
//!   plain slow start, as Linux's reno does;
//! - Proportional Rate Reduction in fast recovery (RFC 6937), with
//!   PRR-SSRB as Linux's tcp_cwnd_reduction;
//! - the loss window after a retransmission timeout (RFC 5681 §3.1);
//! - undoing a reduction found spurious (RFC 3522, RFC 4015, RFC 3708,
//!   RFC 9438 §4.9; Linux tcp_undo_cwnd_reduction);
//! - restarting after idle (RFC 5681 §4.1, RFC 7661; Linux
//!   tcp_cwnd_restart).
//!
//! It does not detect losses, estimate the RTO or count what is in flight:
//! the caller does, and tells it.
//!
//! # The caller's part
//!
//! - Every ACK: [`on_ack`](CongestionControl::on_ack), in recovery too (it
//!   then only records the RTT sample and the ACK, and never grows cwnd).
//! - Loss detection starts fast recovery:
//!   [`on_congestion_event`](CongestionControl::on_congestion_event), once
//!   per episode (a second call before the episode ends is ignored). Then on
//!   every ACK of the episode, after `on_ack` and after marking losses,
//!   [`recovery_quota`](CongestionControl::recovery_quota) says how many
//!   bytes may be sent; every transmission, new data or retransmission, is
//!   reported with [`on_sent`](CongestionControl::on_sent). When snd.una
//!   reaches the recovery point:
//!   [`on_recovery_end`](CongestionControl::on_recovery_end).
//! - Every retransmission timeout: [`on_rto`](CongestionControl::on_rto),
//!   backed-off ones included (they keep ssthresh).
//! - A reduction found spurious (DSACK, timestamps, F-RTO):
//!   [`undo`](CongestionControl::undo).
//! - Before sending new data with nothing in flight:
//!   [`on_idle_restart`](CongestionControl::on_idle_restart).
//! - A new path MTU: [`set_mss`](CongestionControl::set_mss).
//!
//! Outside recovery the sender may have [`cwnd`](CongestionControl::cwnd)
//! bytes in flight. No input panics or overflows: the segment size is
//! clamped to `1..=`[`MAX_MSS`], cwnd to `mss..=`[`MAX_CWND`], and finite
//! ssthresh to `2·mss..=MAX_CWND`.

mod cubic;
mod hystart;
mod newreno;
mod prr;

use core::fmt;
use core::str::FromStr;
use std::time::Duration;

use capnet_wire::tcp::SeqNumber;

use crate::time::Instant;
use cubic::Cubic;
use hystart::{HyStart, Signal};
use newreno::NewReno;
use prr::Prr;

/// The largest congestion window, in bytes (1 GiB, the largest TCP window
/// with the maximum window scale, RFC 7323 §2.3).
pub const MAX_CWND: usize = 1 << 30;

/// ssthresh before the first congestion event: "arbitrarily high" (RFC
/// 5681 §3.1).
pub const SSTHRESH_INFINITE: usize = usize::MAX;

/// The initial window, in segments (RFC 6928; Linux TCP_INIT_CWND).
pub const INITIAL_WINDOW_SEGMENTS: usize = 10;

/// The largest segment size taken (the MSS option is 16 bits); a larger
/// one is clamped to it, as a zero one is to 1.
pub const MAX_MSS: usize = u16::MAX as usize;

/// A congestion control algorithm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// CUBIC (RFC 9438) with HyStart++ (RFC 9406): Linux's default.
    #[default]
    Cubic,
    /// NewReno (RFC 5681, RFC 6582) with plain slow start.
    NewReno,
}

impl Algorithm {
    /// Its name, as [`FromStr`] reads it.
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::Cubic => "cubic",
            Algorithm::NewReno => "newreno",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no [`Algorithm`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownAlgorithm;

impl fmt::Display for UnknownAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown congestion control algorithm (known: cubic, newreno)")
    }
}

impl std::error::Error for UnknownAlgorithm {}

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    /// "cubic" or "newreno", in any case; "reno" (Linux's name) also reads
    /// as NewReno.
    fn from_str(s: &str) -> Result<Algorithm, UnknownAlgorithm> {
        if s.eq_ignore_ascii_case("cubic") {
            Ok(Algorithm::Cubic)
        } else if s.eq_ignore_ascii_case("newreno") || s.eq_ignore_ascii_case("reno") {
            Ok(Algorithm::NewReno)
        } else {
            Err(UnknownAlgorithm)
        }
    }
}

/// What one ACK tells congestion control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AckSample {
    /// Bytes newly acknowledged by this ACK, cumulatively or by SACK.
    pub delivered: usize,
    /// This ACK's RTT sample, if it gave one (Karn's rule is the caller's).
    pub rtt: Option<Duration>,
    /// The ACK number.
    pub ack: SeqNumber,
    /// The sender's SND.NXT when the ACK arrived (for HyStart++'s rounds).
    pub snd_nxt: SeqNumber,
    /// The flight was limited by cwnd, not by the application or the
    /// peer's window (Linux tcp_is_cwnd_limited: in slow start, cwnd below
    /// twice the largest flight of the last window; RFC 7661). When false
    /// cwnd does not grow.
    pub cwnd_limited: bool,
}

/// What one ACK during fast recovery tells PRR (RFC 6937 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoveryAck {
    /// `DeliveredData`: bytes this ACK newly acknowledged, cumulatively or
    /// by SACK.
    pub delivered: usize,
    /// `pipe` (RFC 6675) after this ACK, with any losses it revealed marked,
    /// before anything is sent in response.
    pub in_flight: usize,
    /// The ACK advanced snd.una and revealed no new loss: PRR-SSRB may then
    /// add a segment (Linux; RFC 6937bis's "safe ACK").
    pub safe: bool,
}

/// Counts for `status` output. Each saturates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CcCounters {
    /// Fast recoveries begun ([`CongestionControl::on_congestion_event`]).
    pub congestion_events: u64,
    /// Retransmission timeouts ([`CongestionControl::on_rto`]).
    pub timeouts: u64,
    /// Reductions undone ([`CongestionControl::undo`]).
    pub undos: u64,
    /// Times HyStart++ saw the RTT rise and entered Conservative Slow Start.
    pub hystart_css_entries: u64,
    /// Times HyStart++ ended slow start (CSS ran its rounds).
    pub hystart_exits: u64,
    /// Restarts after an idle longer than the RTO.
    pub idle_restarts: u64,
}

/// The algorithm-specific part of the window.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Window {
    Cubic(Cubic),
    NewReno(NewReno),
}

impl Window {
    fn new(algorithm: Algorithm) -> Window {
        match algorithm {
            Algorithm::Cubic => Window::Cubic(Cubic::default()),
            Algorithm::NewReno => Window::NewReno(NewReno::default()),
        }
    }

    fn algorithm(&self) -> Algorithm {
        match self {
            Window::Cubic(_) => Algorithm::Cubic,
            Window::NewReno(_) => Algorithm::NewReno,
        }
    }

    /// The most an ACK may grow cwnd in slow start, in bytes (`L`).
    fn slow_start_limit(&self, mss: usize) -> usize {
        let segments = match self {
            Window::Cubic(_) => hystart::SLOW_START_LIMIT_SEGMENTS,
            Window::NewReno(_) => newreno::SLOW_START_LIMIT_SEGMENTS,
        };
        segments.saturating_mul(mss)
    }

    /// A congestion event or first RTO: returns the new ssthresh.
    fn on_congestion(&mut self, cwnd: usize, in_flight: usize, mss: usize) -> usize {
        match self {
            Window::Cubic(c) => c.on_congestion(cwnd, mss),
            Window::NewReno(r) => {
                r.on_reduction();
                NewReno::ssthresh(in_flight, mss)
            }
        }
    }

    fn after_timeout(&mut self) {
        match self {
            Window::Cubic(c) => c.after_timeout(),
            Window::NewReno(r) => r.on_reduction(),
        }
    }

    fn on_rtt(&mut self, rtt: Duration) {
        if let Window::Cubic(c) = self {
            c.on_rtt(rtt);
        }
    }

    fn on_idle(&mut self, now: Instant) {
        if let Window::Cubic(c) = self {
            c.on_idle(now);
        }
    }

    fn rescale(&mut self, num: usize, den: usize) {
        match self {
            Window::Cubic(c) => c.rescale(num, den),
            Window::NewReno(r) => r.on_reduction(),
        }
    }

    fn restore(&mut self, prior: Window) {
        match (self, prior) {
            (Window::Cubic(c), Window::Cubic(p)) => c.restore(p),
            (w, p) => *w = p,
        }
    }

    /// Returns the new cwnd, unclamped.
    fn congestion_avoidance(
        &mut self,
        now: Instant,
        acked: usize,
        cwnd_limited: bool,
        cwnd: usize,
        mss: usize,
    ) -> usize {
        match self {
            Window::Cubic(c) => c.congestion_avoidance(now, acked, cwnd_limited, cwnd, mss),
            Window::NewReno(_) if !cwnd_limited => cwnd,
            Window::NewReno(r) => r.congestion_avoidance(acked, cwnd, mss),
        }
    }
}

/// Where the connection is, as congestion control sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Slow start or congestion avoidance.
    Open,
    /// Fast recovery: PRR decides what may be sent.
    Recovery(Prr),
    /// An RTO fired and no ACK has advanced snd.una since: a further RTO is
    /// of the same segment and keeps ssthresh (RFC 5681 §3.1). cwnd grows
    /// as in `Open`.
    Timeout,
}

/// What [`CongestionControl::undo`] restores.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Prior {
    cwnd: usize,
    ssthresh: usize,
    window: Window,
    hystart: Option<HyStart>,
}

/// One connection's congestion control. See the module documentation for
/// what the caller must call when.
#[derive(Clone, Debug)]
pub struct CongestionControl {
    mss: usize,
    cwnd: usize,
    ssthresh: usize,
    window: Window,
    /// HyStart++, for the algorithms that use it.
    hystart: Option<HyStart>,
    phase: Phase,
    /// The highest ACK number seen: an ACK above it advanced snd.una.
    highest_ack: Option<SeqNumber>,
    /// The state before the last reduction, until undone or replaced.
    prior: Option<Prior>,
    counters: CcCounters,
}

/// `a * b / c` without overflow, saturating; `c` of zero counts as one.
fn mul_div(a: usize, b: usize, c: usize) -> usize {
    usize::try_from(a as u128 * b as u128 / c.max(1) as u128).unwrap_or(usize::MAX)
}

fn clamp_mss(mss: usize) -> usize {
    mss.clamp(1, MAX_MSS)
}

impl CongestionControl {
    /// A new connection's congestion control: `mss` is the sender's
    /// segment size (clamped to `1..=MAX_MSS`), cwnd the initial window and
    /// ssthresh infinite. `now` is not kept (no state needs the start time).
    pub fn new(algorithm: Algorithm, mss: usize, now: Instant) -> CongestionControl {
        let _ = now;
        let mss = clamp_mss(mss);
        CongestionControl {
            mss,
            cwnd: INITIAL_WINDOW_SEGMENTS * mss,
            ssthresh: SSTHRESH_INFINITE,
            window: Window::new(algorithm),
            hystart: match algorithm {
                Algorithm::Cubic => Some(HyStart::default()),
                Algorithm::NewReno => None,
            },
            phase: Phase::Open,
            highest_ack: None,
            prior: None,
            counters: CcCounters::default(),
        }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.window.algorithm()
    }

    /// The segment size windows are counted in, in bytes.
    pub fn mss(&self) -> usize {
        self.mss
    }

    /// The congestion window in bytes: outside fast recovery, the most the
    /// sender may have in flight. In fast recovery it reads as Linux's
    /// does, the flight plus the last quota; use
    /// [`recovery_quota`](Self::recovery_quota) there.
    pub fn cwnd(&self) -> usize {
        self.cwnd
    }

    /// The slow-start threshold in bytes; [`SSTHRESH_INFINITE`] before the
    /// first congestion event or HyStart++ exit.
    pub fn ssthresh(&self) -> usize {
        self.ssthresh
    }

    /// Whether the connection is in slow start (cwnd below ssthresh, RFC
    /// 5681 §3.1; HyStart++'s Conservative Slow Start included), and not in
    /// fast recovery.
    pub fn in_slow_start(&self) -> bool {
        !self.in_recovery() && self.cwnd < self.ssthresh
    }

    /// Whether a fast recovery episode is under way.
    pub fn in_recovery(&self) -> bool {
        matches!(self.phase, Phase::Recovery(_))
    }

    /// The counters.
    pub fn counters(&self) -> CcCounters {
        self.counters
    }

    fn initial_window(&self) -> usize {
        INITIAL_WINDOW_SEGMENTS * self.mss
    }

    fn set_cwnd(&mut self, cwnd: usize) {
        self.cwnd = cwnd.clamp(self.mss, MAX_CWND);
    }

    fn clamp_ssthresh(&self, ssthresh: usize) -> usize {
        if ssthresh == SSTHRESH_INFINITE {
            ssthresh
        } else {
            ssthresh.clamp(2 * self.mss, MAX_CWND)
        }
    }

    /// A new segment size (path MTU discovery, RFC 8201/4821). As Linux,
    /// which counts windows in segments, a smaller segment shrinks the
    /// windows in proportion (the same number of segments); a larger one
    /// keeps them in bytes (Linux tcp_mtup_probe_success). CUBIC's curve
    /// restarts from the current window.
    pub fn set_mss(&mut self, mss: usize) {
        let new = clamp_mss(mss);
        let old = self.mss;
        if new == old {
            return;
        }
        let (num, den) = if new < old { (new, old) } else { (1, 1) };
        let scale = |x: usize| {
            if x == SSTHRESH_INFINITE {
                x
            } else {
                mul_div(x, num, den)
            }
        };
        self.mss = new;
        self.set_cwnd(scale(self.cwnd));
        self.ssthresh = self.clamp_ssthresh(scale(self.ssthresh));
        self.window.rescale(num, den);
        if let Some(p) = &mut self.prior {
            p.cwnd = scale(p.cwnd);
            p.ssthresh = scale(p.ssthresh);
            p.window.rescale(num, den);
        }
    }

    /// An ACK arrived (every ACK, in any phase). Grows cwnd when the ACK
    /// advanced snd.una (RFC 5681 §3.1; Linux tcp_may_raise_cwnd) and the
    /// flight was cwnd-limited, except in fast recovery, where PRR decides
    /// and this only records the RTT sample and the ACK.
    pub fn on_ack(&mut self, now: Instant, s: &AckSample) {
        let advanced = self.highest_ack.is_none_or(|h| s.ack.gt(h));
        if advanced {
            self.highest_ack = Some(s.ack);
        }
        if let Some(rtt) = s.rtt {
            self.window.on_rtt(rtt);
        }
        match self.phase {
            Phase::Recovery(_) => return,
            Phase::Timeout if advanced => self.phase = Phase::Open,
            Phase::Timeout | Phase::Open => {}
        }
        let mut acked = if advanced && s.cwnd_limited {
            s.delivered
        } else {
            0
        };
        if self.in_slow_start() {
            acked = self.slow_start(s, acked);
        }
        if !self.in_slow_start() {
            let cwnd =
                self.window
                    .congestion_avoidance(now, acked, s.cwnd_limited, self.cwnd, self.mss);
            self.set_cwnd(cwnd);
        }
    }

    /// Slow start for one ACK that lets it grow by `acked` bytes; returns
    /// what is left for congestion avoidance if it ended.
    fn slow_start(&mut self, s: &AckSample, acked: usize) -> usize {
        // RFC 9406 §4.2: round accounting before growth.
        let signal = match &mut self.hystart {
            Some(h) => h.on_ack(s.ack, s.snd_nxt),
            None => Signal::Nothing,
        };
        if signal == Signal::ExitSlowStart {
            self.counters.hystart_exits = self.counters.hystart_exits.saturating_add(1);
            self.ssthresh = self.clamp_ssthresh(self.cwnd);
            return acked;
        }
        let divisor = self.hystart.as_ref().map_or(1, HyStart::growth_divisor);
        let mut leftover = 0;
        if acked > 0 {
            // RFC 3465 §2.2 / RFC 9406 §4.2: at most L segments per ACK.
            let inc = acked.min(self.window.slow_start_limit(self.mss)) / divisor;
            let room = self.ssthresh.saturating_sub(self.cwnd);
            if inc < room {
                self.set_cwnd(self.cwnd.saturating_add(inc));
            } else {
                // Up to ssthresh; the rest counts in congestion avoidance
                // (Linux tcp_slow_start).
                self.set_cwnd(self.ssthresh);
                leftover = acked.saturating_sub(room.saturating_mul(divisor));
            }
        }
        if let (Some(h), Some(rtt)) = (&mut self.hystart, s.rtt) {
            if h.on_rtt(rtt) == Signal::EnterCss {
                self.counters.hystart_css_entries =
                    self.counters.hystart_css_entries.saturating_add(1);
            }
        }
        leftover
    }

    fn save_prior(&mut self) {
        self.prior = Some(Prior {
            cwnd: self.cwnd,
            ssthresh: self.ssthresh,
            window: self.window,
            hystart: self.hystart,
        });
    }

    /// Loss detection found a loss and fast recovery begins, with
    /// `in_flight` bytes in flight (RecoverFS). Sets ssthresh (CUBIC:
    /// 0.7·cwnd, with fast convergence; NewReno: half the flight; both at
    /// least two segments) and starts PRR. Ignored if an episode is
    /// already under way: one reduction per episode (RFC 5681 §3.2, RFC
    /// 6582 §3.2). An ECN echo can be reported the same way (RFC 3168
    /// §6.1.2). `now` is not needed: CUBIC's new epoch starts with the first
    /// ACK after recovery.
    pub fn on_congestion_event(&mut self, now: Instant, in_flight: usize) {
        let _ = now;
        if self.in_recovery() {
            return;
        }
        self.save_prior();
        let ssthresh = self.window.on_congestion(self.cwnd, in_flight, self.mss);
        self.ssthresh = self.clamp_ssthresh(ssthresh);
        if let Some(h) = &mut self.hystart {
            // RFC 9406 §4.2: a loss ends slow start and CSS.
            h.finish();
        }
        self.phase = Phase::Recovery(Prr::new(in_flight.max(self.mss)));
        self.counters.congestion_events = self.counters.congestion_events.saturating_add(1);
    }

    /// An ACK during fast recovery (after [`on_ack`](Self::on_ack) and after
    /// marking the losses it revealed): returns the bytes that may be sent
    /// now (RFC 6937's `sndcnt`). Quota not used carries over to the next
    /// ACK, so a sender that sends only whole segments may wait for it to
    /// reach one. Outside recovery: what cwnd leaves room for.
    pub fn recovery_quota(&mut self, a: &RecoveryAck) -> usize {
        let Phase::Recovery(prr) = &mut self.phase else {
            return self.cwnd.saturating_sub(a.in_flight);
        };
        let quota = prr
            .on_ack(a.delivered, a.in_flight, a.safe, self.ssthresh, self.mss)
            .min(MAX_CWND);
        self.set_cwnd(a.in_flight.saturating_add(quota));
        quota
    }

    /// `bytes` were sent (new data or retransmission). PRR counts them in
    /// fast recovery (`prr_out`); otherwise this does nothing.
    pub fn on_sent(&mut self, bytes: usize) {
        if let Phase::Recovery(prr) = &mut self.phase {
            prr.on_sent(bytes);
        }
    }

    /// Fast recovery is over (snd.una reached the recovery point): cwnd
    /// becomes ssthresh (RFC 6937 §3; Linux tcp_end_cwnd_reduction). Does
    /// nothing outside recovery.
    pub fn on_recovery_end(&mut self, now: Instant) {
        let _ = now;
        if self.in_recovery() {
            self.set_cwnd(self.ssthresh);
            self.phase = Phase::Open;
        }
    }

    /// The retransmission timer expired with `in_flight` bytes in flight
    /// (before they are marked lost). cwnd becomes one segment, the loss
    /// window (RFC 5681 §3.1), and slow start begins again; ssthresh is
    /// reduced as for a congestion event, except when this episode already
    /// reduced it: in fast recovery (Linux tcp_enter_loss), or a repeated
    /// timeout with no ACK advancing snd.una since (RFC 5681 §3.1). CUBIC
    /// forgets W_max: the next congestion avoidance starts from its own
    /// window (RFC 9438 §4.8).
    pub fn on_rto(&mut self, now: Instant, in_flight: usize) {
        let _ = now;
        self.counters.timeouts = self.counters.timeouts.saturating_add(1);
        if self.phase == Phase::Open {
            self.save_prior();
            let ssthresh = self.window.on_congestion(self.cwnd, in_flight, self.mss);
            self.ssthresh = self.clamp_ssthresh(ssthresh);
        }
        self.window.after_timeout();
        if let Some(h) = &mut self.hystart {
            h.finish();
        }
        self.set_cwnd(self.mss);
        self.phase = Phase::Timeout;
    }

    /// The last congestion event or RTO was spurious (DSACK, RFC 3708;
    /// timestamps, RFC 3522/4015; F-RTO, RFC 5682): restore cwnd, ssthresh
    /// and the algorithm's state as they were before it (RFC 9438 §4.9),
    /// and leave recovery. If cwnd has meanwhile grown past what it was,
    /// it stays, and ssthresh is only raised back (Linux
    /// tcp_undo_cwnd_reduction). Returns whether there was anything to
    /// undo; a reduction is undone once.
    pub fn undo(&mut self) -> bool {
        let Some(prior) = self.prior.take() else {
            return false;
        };
        if self.cwnd < prior.cwnd {
            self.set_cwnd(prior.cwnd);
            self.window.restore(prior.window);
            self.hystart = prior.hystart;
        }
        self.ssthresh = self.clamp_ssthresh(self.ssthresh.max(prior.ssthresh));
        self.phase = Phase::Open;
        self.counters.undos = self.counters.undos.saturating_add(1);
        true
    }

    /// The sender is about to send new data with nothing in flight, having
    /// last sent at `idle_since`; `rto` is the current RTO. CUBIC's clock
    /// skips the idle time (RFC 9438 §5.8; Linux CA_EVENT_TX_START). If the
    /// idle time exceeds the RTO, the window is no longer validated (RFC
    /// 5681 §4.1, RFC 7661): as Linux's tcp_cwnd_restart, ssthresh keeps
    /// at least 3/4 of cwnd, and cwnd halves for every RTO of idle beyond
    /// the first, down to the restart window min(IW, cwnd). Does nothing in
    /// fast recovery.
    pub fn on_idle_restart(&mut self, now: Instant, rto: Duration, idle_since: Instant) {
        if self.in_recovery() {
            return;
        }
        self.window.on_idle(now);
        let idle = now.since(idle_since);
        if idle <= rto {
            return;
        }
        // Linux tcp_current_ssthresh.
        self.ssthresh = self.clamp_ssthresh(self.ssthresh.max(mul_div(self.cwnd, 3, 4)));
        let restart = self.initial_window().min(self.cwnd);
        let mut cwnd = self.cwnd;
        let mut left = idle;
        // Ends: `left` falls by `rto` or, with a zero RTO, cwnd halves
        // down to `restart`.
        loop {
            left = left.saturating_sub(rto);
            if left.is_zero() || cwnd <= restart {
                break;
            }
            cwnd /= 2;
        }
        self.set_cwnd(cwnd.max(restart));
        self.counters.idle_restarts = self.counters.idle_restarts.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    const MSS: usize = 1000;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn check_invariants(cc: &CongestionControl) {
        assert!((1..=MAX_MSS).contains(&cc.mss()), "{cc:?}");
        assert!((cc.mss()..=MAX_CWND).contains(&cc.cwnd()), "{cc:?}");
        let ss = cc.ssthresh();
        assert!(
            ss == SSTHRESH_INFINITE || (2 * cc.mss()..=MAX_CWND).contains(&ss),
            "{cc:?}"
        );
        assert!(!(cc.in_slow_start() && cc.in_recovery()), "{cc:?}");
    }

    fn cubic_of(cc: &CongestionControl) -> Cubic {
        match cc.window {
            Window::Cubic(c) => c,
            Window::NewReno(_) => panic!("not CUBIC"),
        }
    }

    /// An ACK of everything up to `ack`, `delivered` of it new.
    fn sample(ack: u32, delivered: usize) -> AckSample {
        AckSample {
            delivered,
            rtt: Some(ms(10)),
            ack: SeqNumber(ack),
            snd_nxt: SeqNumber(ack.wrapping_add(100_000)),
            cwnd_limited: true,
        }
    }

    /// A bulk sender: each round sends a window of full segments at once;
    /// they are acknowledged `per_ack` at a time, the ACKs spread evenly
    /// over the round. Sequence numbers wrap in the first round.
    struct Sim {
        cc: CongestionControl,
        now: Instant,
        una: SeqNumber,
    }

    impl Sim {
        fn new(algorithm: Algorithm) -> Sim {
            let now = Instant::from_millis(1000);
            Sim {
                cc: CongestionControl::new(algorithm, MSS, now),
                now,
                una: SeqNumber(u32::MAX - 5 * MSS as u32),
            }
        }

        fn segments(&self) -> usize {
            self.cc.cwnd() / MSS
        }

        fn round(&mut self, rtt: Duration, per_ack: usize) {
            self.round_sampled(rtt, per_ack, || rtt);
        }

        /// A round lasting `duration`, each ACK's RTT sample from `rtt`.
        fn round_sampled(
            &mut self,
            duration: Duration,
            per_ack: usize,
            mut rtt: impl FnMut() -> Duration,
        ) {
            let segs = self.segments().max(1);
            let snd_nxt = self.una + segs * MSS;
            let start = self.now;
            let acks = segs.div_ceil(per_ack);
            for i in 0..acks {
                let n = per_ack.min(segs - i * per_ack);
                self.una += n * MSS;
                self.now = start + duration.mul_f64((i + 1) as f64 / acks as f64);
                self.cc.on_ack(
                    self.now,
                    &AckSample {
                        delivered: n * MSS,
                        rtt: Some(rtt()),
                        ack: self.una,
                        snd_nxt,
                        cwnd_limited: true,
                    },
                );
            }
        }

        /// A loss with the window in flight, and a recovery that ends at
        /// once.
        fn loss(&mut self) {
            let flight = self.cc.cwnd();
            self.cc.on_congestion_event(self.now, flight);
            self.cc.on_recovery_end(self.now);
        }
    }

    #[test]
    fn algorithm_names() {
        assert_eq!(Algorithm::default(), Algorithm::Cubic);
        for a in [Algorithm::Cubic, Algorithm::NewReno] {
            assert_eq!(a.to_string().parse::<Algorithm>(), Ok(a));
            assert_eq!(CongestionControl::new(a, MSS, Instant::ZERO).algorithm(), a);
        }
        assert_eq!(Algorithm::NewReno.to_string(), "newreno");
        assert_eq!("CUBIC".parse(), Ok(Algorithm::Cubic));
        assert_eq!("reno".parse(), Ok(Algorithm::NewReno));
        assert_eq!("bbr".parse::<Algorithm>(), Err(UnknownAlgorithm));
        assert_eq!("".parse::<Algorithm>(), Err(UnknownAlgorithm));
        assert!(!UnknownAlgorithm.to_string().is_empty());
    }

    #[test]
    fn initial_window_is_ten_segments_and_mss_is_clamped() {
        let cc = CongestionControl::new(Algorithm::Cubic, 1460, Instant::ZERO);
        assert_eq!((cc.mss(), cc.cwnd()), (1460, 14_600));
        assert_eq!(cc.ssthresh(), SSTHRESH_INFINITE);
        assert!(cc.in_slow_start() && !cc.in_recovery());
        assert_eq!(cc.counters(), CcCounters::default());
        let cc = CongestionControl::new(Algorithm::NewReno, 0, Instant::ZERO);
        assert_eq!((cc.mss(), cc.cwnd()), (1, 10));
        let cc = CongestionControl::new(Algorithm::Cubic, usize::MAX, Instant::ZERO);
        assert_eq!((cc.mss(), cc.cwnd()), (MAX_MSS, 10 * MAX_MSS));
    }

    #[test]
    fn slow_start_doubles_every_round_trip() {
        for (algorithm, per_ack) in [
            (Algorithm::NewReno, 1),
            (Algorithm::NewReno, 2),
            (Algorithm::Cubic, 1),
            (Algorithm::Cubic, 2),
            (Algorithm::Cubic, 8),
        ] {
            let mut sim = Sim::new(algorithm);
            for round in 0..8 {
                assert_eq!(sim.segments(), 10 << round, "{algorithm} {per_ack}");
                sim.round(ms(50), per_ack);
            }
            assert!(sim.cc.in_slow_start());
        }
    }

    #[test]
    fn a_stretch_ack_grows_slow_start_by_at_most_l_segments() {
        for (algorithm, l) in [(Algorithm::NewReno, 2), (Algorithm::Cubic, 8)] {
            let mut cc = CongestionControl::new(algorithm, MSS, Instant::ZERO);
            cc.on_ack(Instant::from_millis(10), &sample(20_000, 20 * MSS));
            assert_eq!(cc.cwnd(), (10 + l) * MSS, "{algorithm}");
        }
    }

    #[test]
    fn no_growth_unless_cwnd_limited_and_snd_una_advances() {
        for algorithm in [Algorithm::NewReno, Algorithm::Cubic] {
            let mut cc = CongestionControl::new(algorithm, MSS, Instant::ZERO);
            let t = Instant::from_millis(10);
            // Application-limited.
            let mut s = sample(1000, MSS);
            s.cwnd_limited = false;
            cc.on_ack(t, &s);
            assert_eq!(cc.cwnd(), 10 * MSS);
            // SACKed bytes with the cumulative ACK where it was.
            cc.on_ack(t, &sample(1000, MSS));
            assert_eq!(cc.cwnd(), 10 * MSS);
            // An old ACK.
            cc.on_ack(t, &sample(500, MSS));
            assert_eq!(cc.cwnd(), 10 * MSS);
            cc.on_ack(t, &sample(2000, MSS));
            assert_eq!(cc.cwnd(), 11 * MSS);
            // Nothing delivered.
            cc.on_ack(t, &sample(3000, 0));
            assert_eq!(cc.cwnd(), 11 * MSS);
        }
    }

    #[test]
    fn newreno_avoidance_adds_one_segment_per_round_trip() {
        let mut sim = Sim::new(Algorithm::NewReno);
        for _ in 0..3 {
            sim.round(ms(50), 1);
        }
        sim.loss();
        assert_eq!((sim.segments(), sim.cc.ssthresh()), (40, 40 * MSS));
        for i in 0..20 {
            assert_eq!(sim.segments(), 40 + i);
            sim.round(ms(50), 1);
        }
    }

    #[test]
    fn slow_start_stops_at_ssthresh_and_the_rest_counts_for_avoidance() {
        let mut cc = CongestionControl::new(Algorithm::NewReno, MSS, Instant::ZERO);
        let t = Instant::from_millis(10);
        cc.on_rto(t, 10 * MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (MSS, 5 * MSS));
        cc.on_ack(t, &sample(1000, MSS));
        cc.on_ack(t, &sample(3000, 2 * MSS));
        assert_eq!(cc.cwnd(), 4 * MSS);
        // One segment of room: the other counts toward the next segment.
        cc.on_ack(t, &sample(5000, 2 * MSS));
        assert_eq!(cc.cwnd(), 5 * MSS);
        assert!(!cc.in_slow_start());
        cc.on_ack(t, &sample(8000, 3 * MSS));
        assert_eq!(cc.cwnd(), 5 * MSS);
        cc.on_ack(t, &sample(9000, MSS));
        assert_eq!(cc.cwnd(), 6 * MSS);
    }

    /// W_cubic(t) in segments for RFC 9438's equation 1.
    fn w_cubic(t: f64, w_max: f64, cwnd_epoch: f64) -> f64 {
        let k = ((w_max - cwnd_epoch) / 0.4).cbrt();
        w_max + 0.4 * (t - k).powi(3)
    }

    #[test]
    fn cubic_after_a_loss_follows_w_cubic_and_plateaus_at_w_max() {
        let rtt = ms(100);
        let mut sim = Sim::new(Algorithm::Cubic);
        for _ in 0..4 {
            sim.round(rtt, 1);
        }
        assert_eq!(sim.segments(), 160);
        sim.loss();
        assert_eq!((sim.segments(), sim.cc.ssthresh()), (112, 112 * MSS));
        let k = (48f64 / 0.4).cbrt();
        let t0 = sim.now;
        let mut at_k = None;
        while sim.now.since(t0).as_secs_f64() < 2.0 * k {
            sim.round(rtt, 1);
            let t = sim.now.since(t0).as_secs_f64();
            let cwnd = sim.cc.cwnd() as f64 / MSS as f64;
            let expect = w_cubic(t, 160.0, 112.0);
            assert!(
                (cwnd - expect).abs() <= 1.0,
                "t {t:.2}: cwnd {cwnd:.1}, W_cubic {expect:.1}"
            );
            assert_eq!(cwnd < 160.0, t < k, "concave before K, convex after");
            if at_k.is_none() && t >= k {
                at_k = Some(cwnd);
            }
        }
        let at_k = at_k.unwrap();
        assert!((160.0..=161.0).contains(&at_k), "{at_k}");
        assert!(!sim.cc.in_slow_start());
    }

    #[test]
    fn reno_friendly_region_dominates_at_small_rtt() {
        let rtt = ms(1);
        let mut sim = Sim::new(Algorithm::Cubic);
        for _ in 0..4 {
            sim.round(rtt, 1);
        }
        sim.loss();
        let t0 = sim.now;
        // RFC 9438 §4.3: W_est grows by α = 9/17 per round trip until it
        // reaches cwnd_prior (160), then by one.
        let mut w_est: f64 = 112.0;
        for round in 0..300 {
            sim.round(rtt, 1);
            w_est += if w_est < 160.0 { 9.0 / 17.0 } else { 1.0 };
            let t = sim.now.since(t0).as_secs_f64();
            let cwnd = sim.cc.cwnd() as f64 / MSS as f64;
            assert!(
                (cwnd - w_est).abs() <= w_est * 0.02,
                "round {round}: cwnd {cwnd:.1}, W_est {w_est:.1}"
            );
            if round > 5 {
                assert!(cwnd > w_cubic(t, 160.0, 112.0) + 1.0);
            }
        }
        assert!(sim.segments() > 350);
    }

    #[test]
    fn fast_convergence_releases_bandwidth_on_a_loss_below_w_max() {
        let rtt = ms(100);
        let mut sim = Sim::new(Algorithm::Cubic);
        for _ in 0..4 {
            sim.round(rtt, 1);
        }
        sim.loss();
        assert_eq!(cubic_of(&sim.cc).w_max(), Some(160 * MSS));
        for _ in 0..10 {
            sim.round(rtt, 1);
        }
        let cwnd = sim.cc.cwnd();
        assert!(cwnd < 160 * MSS);
        sim.loss();
        assert_eq!(cubic_of(&sim.cc).w_max(), Some(cwnd * 17 / 20));
        assert_eq!(sim.cc.ssthresh(), cwnd * 7 / 10);
        // The next epoch's K is measured to the lowered W_max.
        sim.round(rtt, 1);
        let k = cubic_of(&sim.cc).k().unwrap();
        let expect = ((cwnd * 17 / 20 - cwnd * 7 / 10) as f64 / (0.4 * MSS as f64)).cbrt();
        assert!((k - expect).abs() < 1e-9, "{k} {expect}");
        // A loss at or above W_max remembers the window itself.
        while sim.cc.cwnd() < cwnd * 17 / 20 {
            sim.round(rtt, 1);
        }
        let cwnd = sim.cc.cwnd();
        sim.loss();
        assert_eq!(cubic_of(&sim.cc).w_max(), Some(cwnd));
    }

    #[test]
    fn hystart_leaves_slow_start_when_the_rtt_rises() {
        let mut sim = Sim::new(Algorithm::Cubic);
        for _ in 0..3 {
            sim.round(ms(100), 1);
        }
        assert_eq!(sim.segments(), 80);
        // 100 ms / 8 = 12.5 ms: 113 ms is a rise. The eighth sample decides,
        // and the rest of the round grows at a quarter of the rate.
        sim.round(ms(113), 1);
        assert_eq!(sim.cc.counters().hystart_css_entries, 1);
        assert!(sim.cc.in_slow_start());
        assert_eq!(sim.cc.cwnd(), 80 * MSS + 8 * MSS + 72 * MSS / 4);
        // The entry round and four more are CSS.
        for _ in 0..4 {
            let before = sim.cc.cwnd();
            sim.round(ms(113), 1);
            assert_eq!(sim.cc.cwnd(), before + before / MSS * MSS / 4);
            assert!(sim.cc.in_slow_start());
        }
        // The next round's first ACK ends slow start: ssthresh = cwnd.
        let cwnd = sim.cc.cwnd();
        sim.round(ms(113), 1);
        assert_eq!(sim.cc.ssthresh(), cwnd);
        assert!(!sim.cc.in_slow_start());
        assert_eq!(sim.cc.counters().hystart_exits, 1);
        // From there on, congestion avoidance: W_max undefined, K = 0.
        assert_eq!(cubic_of(&sim.cc).w_max(), None);
        assert_eq!(cubic_of(&sim.cc).k(), Some(0.0));
        assert!(sim.cc.cwnd() < cwnd + cwnd / 10);
    }

    #[test]
    fn hystart_ignores_rtt_noise_below_the_threshold() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut sim = Sim::new(Algorithm::Cubic);
        for round in 0..10 {
            // Every sample in 100..=112 ms: no minimum, of 8 samples or of
            // a round, is 12.5 ms above another.
            sim.round_sampled(ms(100), 1, || ms(rng.gen_range(100..=112)));
            assert_eq!(sim.segments(), 20 << round);
        }
        assert_eq!(sim.cc.counters().hystart_css_entries, 0);
        assert!(sim.cc.in_slow_start());
    }

    #[test]
    fn hystart_resumes_slow_start_when_the_rise_was_spurious() {
        let mut sim = Sim::new(Algorithm::Cubic);
        sim.round(ms(100), 1);
        sim.round(ms(120), 1);
        assert_eq!(sim.cc.counters().hystart_css_entries, 1);
        sim.round(ms(100), 1);
        let before = sim.cc.cwnd();
        sim.round(ms(100), 1);
        assert_eq!(sim.cc.cwnd(), 2 * before);
    }

    #[test]
    fn newreno_runs_plain_slow_start() {
        let mut sim = Sim::new(Algorithm::NewReno);
        sim.round(ms(10), 1);
        for round in 0..5 {
            sim.round(ms(10 + 50 * round), 1);
        }
        assert_eq!(sim.segments(), 640);
        assert_eq!(sim.cc.counters().hystart_css_entries, 0);
    }

    #[test]
    fn prr_spreads_the_reduction_then_ssrb_rebuilds_to_ssthresh() {
        let mut sim = Sim::new(Algorithm::Cubic);
        for _ in 0..4 {
            sim.round(ms(100), 1);
        }
        let now = sim.now;
        let una = sim.una;
        let cc = &mut sim.cc;
        let flight = cc.cwnd();
        cc.on_congestion_event(now, flight);
        assert!(cc.in_recovery() && !cc.in_slow_start());
        assert_eq!((cc.ssthresh(), cc.cwnd()), (112 * MSS, 160 * MSS));
        // A second event in the same episode changes nothing.
        cc.on_congestion_event(now, flight);
        assert_eq!(cc.ssthresh(), 112 * MSS);
        assert_eq!(cc.counters().congestion_events, 1);

        // One segment lost; each ACK SACKs one more. The flight stays above
        // ssthresh: PRR sends ssthresh/RecoverFS of what is delivered.
        let (mut pipe, mut delivered, mut sent) = (159 * MSS, 0, 0);
        for _ in 0..100 {
            pipe -= MSS;
            delivered += MSS;
            let mut s = sample(una.0, MSS);
            s.rtt = None;
            cc.on_ack(now, &s);
            let q = cc.recovery_quota(&RecoveryAck {
                delivered: MSS,
                in_flight: pipe,
                safe: false,
            });
            cc.on_sent(q);
            pipe += q;
            sent += q;
            assert_eq!(sent, (delivered * 112).div_ceil(160).max(MSS));
            assert_eq!(cc.cwnd(), pipe);
        }
        assert_eq!(sent, 70 * MSS);

        // Heavy losses: the flight falls to 60 segments. PRR-SSRB sends
        // what was delivered and not yet sent, plus a segment per safe ACK,
        // never past ssthresh.
        pipe = 60 * MSS;
        let mut acks = 0;
        while pipe < 112 * MSS {
            pipe -= MSS;
            delivered += MSS;
            let q = cc.recovery_quota(&RecoveryAck {
                delivered: MSS,
                in_flight: pipe,
                safe: true,
            });
            let expect = delivered.saturating_sub(sent).max(MSS) + MSS;
            assert_eq!(q, expect.min(112 * MSS - pipe));
            cc.on_sent(q);
            pipe += q;
            sent += q;
            acks += 1;
            assert!(acks < 60);
        }
        assert_eq!(pipe, 112 * MSS);
        cc.on_recovery_end(now);
        assert!(!cc.in_recovery());
        assert_eq!(cc.cwnd(), 112 * MSS);
        // Outside recovery the quota is what cwnd leaves.
        assert_eq!(
            cc.recovery_quota(&RecoveryAck {
                delivered: MSS,
                in_flight: 100 * MSS,
                safe: true
            }),
            12 * MSS
        );
        cc.on_recovery_end(now);
        assert_eq!(cc.cwnd(), 112 * MSS);
    }

    #[test]
    fn rto_collapses_to_one_segment_and_backoffs_keep_ssthresh() {
        for (algorithm, ssthresh) in [(Algorithm::Cubic, 112), (Algorithm::NewReno, 80)] {
            let mut sim = Sim::new(algorithm);
            for _ in 0..4 {
                sim.round(ms(100), 1);
            }
            sim.cc.on_rto(sim.now, 160 * MSS);
            assert_eq!(sim.cc.cwnd(), MSS);
            assert_eq!(sim.cc.ssthresh(), ssthresh * MSS);
            assert!(sim.cc.in_slow_start());
            // The same segment times out again.
            sim.cc.on_rto(sim.now, MSS);
            assert_eq!((sim.cc.cwnd(), sim.cc.ssthresh()), (MSS, ssthresh * MSS));
            assert_eq!(sim.cc.counters().timeouts, 2);
            // snd.una advances: slow start, and a later RTO reduces again.
            sim.round(ms(100), 1);
            assert_eq!(sim.cc.cwnd(), 2 * MSS);
            sim.cc.on_rto(sim.now, 2 * MSS);
            assert_eq!((sim.cc.cwnd(), sim.cc.ssthresh()), (MSS, 2 * MSS));
        }
        // CUBIC forgets W_max; an RTO in recovery keeps that episode's
        // ssthresh.
        let mut sim = Sim::new(Algorithm::Cubic);
        for _ in 0..4 {
            sim.round(ms(100), 1);
        }
        sim.cc.on_congestion_event(sim.now, 160 * MSS);
        assert_eq!(cubic_of(&sim.cc).w_max(), Some(160 * MSS));
        sim.cc.on_rto(sim.now, 100 * MSS);
        assert_eq!((sim.cc.cwnd(), sim.cc.ssthresh()), (MSS, 112 * MSS));
        assert!(!sim.cc.in_recovery());
        assert_eq!(cubic_of(&sim.cc).w_max(), None);
    }

    #[test]
    fn undo_restores_the_state_before_a_spurious_reduction() {
        let rtt = ms(100);
        let mut sim = Sim::new(Algorithm::Cubic);
        for _ in 0..4 {
            sim.round(rtt, 1);
        }
        sim.loss();
        for _ in 0..5 {
            sim.round(rtt, 1);
        }
        let (cwnd, ssthresh, window) = (sim.cc.cwnd(), sim.cc.ssthresh(), sim.cc.window);
        // A spurious fast retransmit (DSACK), undone in recovery.
        sim.cc.on_congestion_event(sim.now, cwnd);
        sim.cc.recovery_quota(&RecoveryAck {
            delivered: MSS,
            in_flight: cwnd - 2 * MSS,
            safe: false,
        });
        assert!(sim.cc.cwnd() < cwnd);
        assert!(sim.cc.undo());
        assert_eq!((sim.cc.cwnd(), sim.cc.ssthresh()), (cwnd, ssthresh));
        assert_eq!(sim.cc.window, window);
        assert!(!sim.cc.in_recovery());
        assert!(!sim.cc.undo());
        assert_eq!(sim.cc.counters().undos, 1);
        // The curve carries on from where it was.
        let mut twin = Sim {
            cc: sim.cc.clone(),
            now: sim.now,
            una: sim.una,
        };
        twin.cc.prior = None;
        twin.cc.counters = sim.cc.counters;
        sim.round(rtt, 1);
        twin.round(rtt, 1);
        assert_eq!(sim.cc.cwnd(), twin.cc.cwnd());

        // A spurious RTO (Eifel), undone after the first ACK.
        let (cwnd, ssthresh) = (sim.cc.cwnd(), sim.cc.ssthresh());
        let w_max = cubic_of(&sim.cc).w_max();
        sim.cc.on_rto(sim.now, cwnd);
        sim.round(rtt, 1);
        assert!(sim.cc.undo());
        assert_eq!((sim.cc.cwnd(), sim.cc.ssthresh()), (cwnd, ssthresh));
        assert_eq!(cubic_of(&sim.cc).w_max(), w_max);

        // A loss in the initial slow start, undone: slow start again, with
        // HyStart++.
        let mut sim = Sim::new(Algorithm::Cubic);
        sim.round(rtt, 1);
        sim.loss();
        assert!(sim.cc.undo());
        assert_eq!(sim.cc.ssthresh(), SSTHRESH_INFINITE);
        assert!(sim.cc.in_slow_start());
        assert!(sim.cc.hystart.is_some_and(|h| h.active()));

        // Undone late, when cwnd has grown past what it was: it stays, and
        // ssthresh is raised back.
        let mut sim = Sim::new(Algorithm::NewReno);
        sim.round(rtt, 1);
        sim.cc.on_rto(sim.now, 60 * MSS);
        for _ in 0..6 {
            sim.round(rtt, 1);
        }
        let grown = sim.cc.cwnd();
        assert!(grown > 20 * MSS);
        assert!(sim.cc.undo());
        assert_eq!(sim.cc.cwnd(), grown);
        assert_eq!(sim.cc.ssthresh(), SSTHRESH_INFINITE);
    }

    #[test]
    fn idle_restart_halves_per_rto_down_to_the_initial_window() {
        let rto = ms(1000);
        let mut sim = Sim::new(Algorithm::NewReno);
        for _ in 0..4 {
            sim.round(ms(100), 1);
        }
        let last = sim.now;
        // Idle for no more than an RTO: nothing.
        sim.cc.on_idle_restart(last + rto, rto, last);
        assert_eq!(sim.segments(), 160);
        assert_eq!(sim.cc.counters().idle_restarts, 0);
        // 2.5 RTOs: halved twice.
        sim.cc.on_idle_restart(last + rto.mul_f64(2.5), rto, last);
        assert_eq!(sim.segments(), 40);
        assert_eq!(sim.cc.ssthresh(), SSTHRESH_INFINITE);
        // Long idle: down to the initial window, not below.
        sim.cc.on_idle_restart(last + rto * 100, rto, last);
        assert_eq!(sim.segments(), 10);
        assert_eq!(sim.cc.counters().idle_restarts, 2);
        // A zero RTO ends too.
        sim.cc
            .on_idle_restart(last + rto * 100, Duration::ZERO, last);
        assert_eq!(sim.segments(), 10);

        // ssthresh keeps 3/4 of the window it cuts (tcp_current_ssthresh).
        let mut sim = Sim::new(Algorithm::NewReno);
        sim.cc.on_rto(sim.now, 20 * MSS);
        for _ in 0..9 {
            sim.round(ms(100), 1);
        }
        let cwnd = sim.cc.cwnd();
        assert!(cwnd * 3 / 4 > 10 * MSS, "{cwnd}");
        let last = sim.now;
        sim.cc.on_idle_restart(last + rto.mul_f64(1.5), rto, last);
        assert_eq!(sim.cc.ssthresh(), cwnd * 3 / 4);
        assert_eq!(sim.cc.cwnd(), 10 * MSS);

        // Nothing is idle in fast recovery.
        let mut sim = Sim::new(Algorithm::Cubic);
        sim.cc.on_congestion_event(sim.now, 10 * MSS);
        sim.cc.on_idle_restart(sim.now + rto * 10, rto, sim.now);
        assert_eq!(sim.cc.cwnd(), 10 * MSS);
    }

    #[test]
    fn a_smaller_mss_keeps_the_window_in_segments_a_larger_one_in_bytes() {
        let mut cc = CongestionControl::new(Algorithm::Cubic, 1460, Instant::ZERO);
        cc.set_mss(1460);
        assert_eq!(cc.cwnd(), 14_600);
        cc.set_mss(1000);
        assert_eq!((cc.mss(), cc.cwnd()), (1000, 10_000));
        cc.set_mss(9000);
        assert_eq!((cc.mss(), cc.cwnd()), (9000, 10_000));
        cc.set_mss(0);
        assert_eq!((cc.mss(), cc.cwnd()), (1, 1));
        let mut cc = CongestionControl::new(Algorithm::NewReno, 1000, Instant::ZERO);
        cc.on_rto(Instant::ZERO, 100_000);
        cc.set_mss(500);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (500, 25_000));
        // ssthresh stays at least two segments of the larger size.
        cc.set_mss(20_000);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (20_000, 40_000));
        check_invariants(&cc);
    }

    #[test]
    fn extreme_inputs_neither_panic_nor_overflow() {
        let far = Instant::from_micros(u64::MAX);
        for algorithm in [Algorithm::Cubic, Algorithm::NewReno] {
            for mss in [0, 1, usize::MAX] {
                let mut cc = CongestionControl::new(algorithm, mss, far);
                for i in 0..100u32 {
                    cc.on_ack(
                        far,
                        &AckSample {
                            delivered: usize::MAX,
                            rtt: Some(if i % 2 == 0 {
                                Duration::MAX
                            } else {
                                Duration::ZERO
                            }),
                            ack: SeqNumber(i.wrapping_mul(1 << 30)),
                            snd_nxt: SeqNumber(i.wrapping_mul(1 << 29)),
                            cwnd_limited: true,
                        },
                    );
                    check_invariants(&cc);
                }
                let huge = RecoveryAck {
                    delivered: usize::MAX,
                    in_flight: usize::MAX,
                    safe: true,
                };
                cc.on_congestion_event(far, usize::MAX);
                check_invariants(&cc);
                assert!(cc.recovery_quota(&huge) <= MAX_CWND);
                cc.on_sent(usize::MAX);
                cc.on_sent(usize::MAX);
                cc.recovery_quota(&RecoveryAck {
                    in_flight: 0,
                    ..huge
                });
                check_invariants(&cc);
                cc.on_recovery_end(far);
                cc.on_rto(far, usize::MAX);
                check_invariants(&cc);
                cc.undo();
                cc.on_idle_restart(far, Duration::MAX, Instant::ZERO);
                cc.on_idle_restart(far, Duration::ZERO, Instant::ZERO);
                check_invariants(&cc);
                cc.set_mss(usize::MAX);
                check_invariants(&cc);
                cc.set_mss(0);
                check_invariants(&cc);
            }
        }
    }

    /// Random calls in any order, with random and extreme arguments: the
    /// invariants hold throughout.
    #[test]
    fn random_call_sequences_keep_the_invariants() {
        for seed in 0..40 {
            let mut rng = SmallRng::seed_from_u64(seed);
            for algorithm in [Algorithm::Cubic, Algorithm::NewReno] {
                let mss = rng.gen_range(0..70_000);
                let mut now = Instant::from_micros(rng.gen());
                let mut cc = CongestionControl::new(algorithm, mss, now);
                let mut una = SeqNumber(rng.gen());
                for _ in 0..2000 {
                    let bytes = |rng: &mut SmallRng| match rng.gen_range(0..20) {
                        0 => 0,
                        1 => usize::MAX,
                        _ => rng.gen_range(0..20 * 65_535),
                    };
                    match rng.gen_range(0..100) {
                        0..=59 => {
                            let delivered = bytes(&mut rng);
                            if rng.gen_bool(0.8) {
                                una += delivered.min(1 << 20);
                            }
                            let rtt = match rng.gen_range(0..10) {
                                0 => None,
                                1 => Some(Duration::ZERO),
                                2 => Some(Duration::MAX),
                                _ => Some(ms(rng.gen_range(1..500))),
                            };
                            cc.on_ack(
                                now,
                                &AckSample {
                                    delivered,
                                    rtt,
                                    ack: una,
                                    snd_nxt: una + rng.gen_range(0..(1usize << 24)),
                                    cwnd_limited: rng.gen_bool(0.8),
                                },
                            );
                        }
                        60..=64 => cc.on_congestion_event(now, bytes(&mut rng)),
                        65..=79 => {
                            let a = RecoveryAck {
                                delivered: bytes(&mut rng),
                                in_flight: bytes(&mut rng),
                                safe: rng.gen(),
                            };
                            let q = cc.recovery_quota(&a);
                            cc.on_sent(rng.gen_range(0..=q));
                        }
                        80..=84 => cc.on_recovery_end(now),
                        85..=87 => cc.on_rto(now, bytes(&mut rng)),
                        88..=90 => {
                            cc.undo();
                        }
                        91..=94 => {
                            let idle = ms(rng.gen_range(0..10_000));
                            let rto = ms(rng.gen_range(0..3_000));
                            cc.on_idle_restart(now, rto, now - idle);
                        }
                        95..=96 => cc.set_mss(rng.gen_range(0..70_000)),
                        _ => now += ms(rng.gen_range(0..100_000)),
                    }
                    now += Duration::from_micros(rng.gen_range(0..50_000));
                    check_invariants(&cc);
                }
            }
        }
    }

    /// Linux's packet-counted Reno (tcp_reno_cong_avoid, tcp_slow_start,
    /// tcp_cong_avoid_ai), with NewReno's ssthresh of half the flight.
    struct LinuxReno {
        cwnd: usize,
        ssthresh: usize,
        cnt: usize,
        in_recovery: bool,
        /// An RTO and no ACK since: another keeps ssthresh (RFC 5681 §3.1).
        timed_out: bool,
    }

    impl LinuxReno {
        fn ack(&mut self, mut acked: usize) {
            self.timed_out = false;
            if self.in_recovery {
                return;
            }
            if self.cwnd < self.ssthresh {
                let cwnd = (self.cwnd + acked).min(self.ssthresh);
                acked -= cwnd - self.cwnd;
                self.cwnd = cwnd;
                if acked == 0 {
                    return;
                }
            }
            let w = self.cwnd;
            if self.cnt >= w {
                self.cnt = 0;
                self.cwnd += 1;
            }
            self.cnt += acked;
            if self.cnt >= w {
                let delta = self.cnt / w;
                self.cnt -= delta * w;
                self.cwnd += delta;
            }
        }
    }

    /// Byte counting with whole-segment ACKs of one or two segments (L = 2
    /// never binds) matches Linux's packet counting exactly.
    #[test]
    fn newreno_matches_linux_packet_counted_reno() {
        for seed in 0..20 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mss = rng.gen_range(500..=9000);
            let mut now = Instant::ZERO;
            let mut cc = CongestionControl::new(Algorithm::NewReno, mss, now);
            let mut model = LinuxReno {
                cwnd: 10,
                ssthresh: usize::MAX,
                cnt: 0,
                in_recovery: false,
                timed_out: false,
            };
            let mut una = SeqNumber(rng.gen());
            for _ in 0..5000 {
                now += ms(1);
                match rng.gen_range(0..1000) {
                    // Even flights: half of one is whole segments.
                    0..=4 if !model.in_recovery => {
                        let flight = 2 * rng.gen_range(1..=model.cwnd.div_ceil(2));
                        cc.on_congestion_event(now, flight * mss);
                        model.ssthresh = (flight / 2).max(2);
                        model.cnt = 0;
                        model.in_recovery = true;
                    }
                    5..=30 if model.in_recovery => {
                        cc.on_recovery_end(now);
                        model.cwnd = model.ssthresh;
                        model.in_recovery = false;
                    }
                    31..=33 if !model.in_recovery => {
                        let flight = 2 * rng.gen_range(1..=model.cwnd.div_ceil(2));
                        cc.on_rto(now, flight * mss);
                        if !model.timed_out {
                            model.ssthresh = (flight / 2).max(2);
                        }
                        model.timed_out = true;
                        model.cwnd = 1;
                        model.cnt = 0;
                    }
                    _ => {
                        let segs = rng.gen_range(1..=2);
                        una += segs * mss;
                        cc.on_ack(now, &sample(una.0, segs * mss));
                        model.ack(segs);
                    }
                }
                assert_eq!(cc.cwnd(), model.cwnd * mss, "seed {seed}");
                let ss = if model.ssthresh == usize::MAX {
                    SSTHRESH_INFINITE
                } else {
                    model.ssthresh * mss
                };
                assert_eq!(cc.ssthresh(), ss, "seed {seed}");
            }
        }
    }
}
