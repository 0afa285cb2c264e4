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
mod tests;
