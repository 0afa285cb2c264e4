//! The connection's timers: retransmission (RFC 6298), tail-loss probe
//! and RACK reordering (RFC 8985), delayed ACK (RFC 9293 3.8.6.3), persist
//! (3.8.6.1), keep-alive (3.8.4), and the end of TIME-WAIT or of an
//! abandoned FIN-WAIT-2. One deadline, the earliest, goes into the layer's
//! timer wheel.

use super::*;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timers {
    pub rto: Option<Instant>,
    pub tlp: Option<Instant>,
    pub reorder: Option<Instant>,
    pub delack: Option<Instant>,
    pub persist: Option<Instant>,
    pub keepalive: Option<Instant>,
    /// TIME-WAIT's end, or FIN-WAIT-2's timeout for an orphan.
    pub close: Option<Instant>,
}

impl Timers {
    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        [
            self.rto,
            self.tlp,
            self.reorder,
            self.delack,
            self.persist,
            self.keepalive,
            self.close,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

fn due(t: &mut Option<Instant>, now: Instant) -> bool {
    if t.is_some_and(|t| t <= now) {
        *t = None;
        true
    } else {
        false
    }
}

impl Conn {
    /// The earliest time the connection needs [`on_timer`](Self::on_timer).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Runs every timer that is due.
    pub fn on_timer(&mut self, now: Instant) {
        self.send_blocked = false;
        if due(&mut self.timers.close, now) {
            self.finish(None);
            return;
        }
        if due(&mut self.timers.rto, now) {
            self.on_rto(now);
        }
        if due(&mut self.timers.reorder, now) {
            let min_rtt = self.rtt.min_rtt().unwrap_or(self.rtt.rto());
            let srtt = self.rtt.srtt().unwrap_or(self.rtt.rto());
            let in_flight = self.sb.in_flight() as usize;
            let loss = self.sb.detect_loss(now, min_rtt, srtt);
            self.timers.reorder = loss.reorder_deadline;
            if loss.newly_lost > 0 && self.recovery == Recovery::Open {
                self.enter_fast_recovery(now, in_flight);
            }
        }
        if due(&mut self.timers.tlp, now) && self.snd_una != self.snd_max {
            self.probe_due = Some(Probe::TailLoss);
            self.timers.rto = Some(now + self.rtt.rto());
        }
        if due(&mut self.timers.delack, now) {
            self.ack.now = true;
        }
        if due(&mut self.timers.persist, now) {
            self.probe_due = Some(Probe::ZeroWindow);
            self.rtt.backoff();
            let next = self
                .rtt
                .rto()
                .clamp(limits::PERSIST_MIN, limits::PERSIST_MAX);
            self.timers.persist = Some(now + next);
        }
        if due(&mut self.timers.keepalive, now) {
            self.on_keepalive(now);
        }
    }

    /// RFC 6298 5.4-5.7 with RFC 8985 6.3 / Linux `tcp_enter_loss`.
    fn on_rto(&mut self, now: Instant) {
        let limit = match self.state {
            State::SynSent => limits::SYN_RETRIES,
            State::SynReceived => limits::SYNACK_RETRIES,
            _ => limits::DATA_RETRIES,
        };
        if self.retries >= limit {
            self.finish(Some(ConnError::TimedOut));
            return;
        }
        self.retries += 1;
        self.counters.timeouts += 1;
        self.rtt.backoff();
        match self.state {
            State::SynSent | State::SynReceived => {
                // Send the SYN (or SYN-ACK) again.
                self.snd_nxt = self.iss;
                self.timers.rto = Some(now + self.rtt.rto());
                return;
            }
            State::TimeWait | State::Closed => return,
            _ => {}
        }
        if self.snd_una == self.snd_max {
            return;
        }
        let in_flight = self.sb.in_flight() as usize;
        if !matches!(self.recovery, Recovery::Loss { .. }) {
            self.cc.on_rto(now, in_flight);
            if self.neg.timestamps {
                self.ts_first_retransmit = None;
            }
        }
        self.sb.on_rto(now);
        self.recovery = Recovery::Loss { high: self.snd_max };
        self.timers.tlp = None;
        self.timers.rto = Some(now + self.rtt.rto());
    }

    /// Arms the retransmission timer, and a tail-loss probe before it when
    /// the connection is not recovering (RFC 8985 7.2).
    pub(super) fn arm_retransmit(&mut self, now: Instant) {
        self.timers.rto = Some(now + self.rtt.rto());
        self.arm_loss_probe(now);
    }

    /// (Re)arms the tail-loss probe for the flight as it is now, if it is
    /// due before the retransmission timer and the connection is not
    /// recovering (RFC 8985 7.2).
    pub(super) fn arm_loss_probe(&mut self, now: Instant) {
        self.timers.tlp = None;
        if self.recovery == Recovery::Open && self.neg.sack {
            if let (Some(srtt), Some(rto)) = (self.rtt.srtt(), self.timers.rto) {
                let one_segment = (self.snd_max - self.snd_una) as usize <= self.effective_mss();
                // Linux tcp_schedule_loss_probe: 2*SRTT plus a timer's
                // slack (TCP_TIMEOUT_MIN, two jiffies). A floor of 10 ms
                // (the old draft's) is 30 round trips on a sub-millisecond
                // path, where an ACK lost at the tail of a flight then
                // stalls it for that long.
                let mut pto = 2 * srtt + limits::PROBE_SLACK;
                if one_segment {
                    // The peer may hold a lone segment's ACK for its delay.
                    pto += limits::DELAYED_ACK * 5;
                }
                if now + pto < rto {
                    self.timers.tlp = Some(now + pto);
                }
            }
        }
    }

    fn on_keepalive(&mut self, now: Instant) {
        let Some(idle) = self.opts.keep_alive else {
            return;
        };
        if !matches!(self.state, State::Established | State::CloseWait)
            || self.snd_una != self.snd_max
        {
            self.timers.keepalive = Some(now + idle);
            return;
        }
        let silent = now.since(self.last_rx);
        if silent < idle {
            self.timers.keepalive = Some(self.last_rx + idle);
            return;
        }
        let probes =
            ((silent - idle).as_micros() / limits::KEEPALIVE_INTERVAL.as_micros().max(1)) as u32;
        if probes >= limits::KEEPALIVE_PROBES {
            self.finish(Some(ConnError::TimedOut));
            return;
        }
        self.probe_due = Some(Probe::KeepAlive);
        self.timers.keepalive = Some(now + limits::KEEPALIVE_INTERVAL);
    }
}
