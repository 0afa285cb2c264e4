//! RACK's per-connection state (RFC 8985 §6.1) and its reordering window
//! (§6.2 step 4), apart from the segments it reads.

use std::time::Duration;

use capnet_wire::tcp::SeqNumber;

use crate::time::Instant;

/// RFC 8985 §6.2 step 4: how many recoveries a DSACK-widened window lasts.
const REO_WND_PERSIST: u8 = 16;

/// What RACK remembers between ACKs.
#[derive(Clone, Copy, Debug)]
pub(super) struct Rack {
    /// RACK.xmit_ts and RACK.end_seq: the most recently sent segment yet
    /// (S)ACKed; `None` before the first.
    latest: Option<(Instant, SeqNumber)>,
    /// RACK.rtt: the RTT of that segment's delivery.
    rtt: Duration,
    /// RACK.reordering_seen.
    reordering_seen: bool,
    /// RACK.reo_wnd_mult, in quarters of min_RTT.
    reo_wnd_mult: u8,
    /// RACK.reo_wnd_persist: recoveries left before the multiplier resets.
    reo_wnd_persist: u8,
    /// RACK.dsack_round: SND.NXT when the window last widened; one DSACK
    /// per round trip widens it (§6.2 step 4).
    dsack_round: Option<SeqNumber>,
}

/// RFC 8985 §6.2 RACK_sent_after: `(t1, seq1)` was sent after `(t2, seq2)`;
/// at the same instant the one ending later counts as later.
pub(super) fn sent_after(t1: Instant, seq1: SeqNumber, t2: Instant, seq2: SeqNumber) -> bool {
    t1 > t2 || (t1 == t2 && seq1.gt(seq2))
}

impl Rack {
    pub(super) fn new() -> Rack {
        Rack {
            latest: None,
            rtt: Duration::ZERO,
            reordering_seen: false,
            reo_wnd_mult: 1,
            reo_wnd_persist: 0,
            dsack_round: None,
        }
    }

    /// §6.2 step 2, for the latest-sent of an ACK's newly delivered
    /// segments that passed the ambiguity test: processing them in
    /// ascending send order, as the RFC does, leaves exactly this.
    pub(super) fn advance(&mut self, now: Instant, xmit_ts: Instant, end_seq: SeqNumber) {
        self.rtt = now - xmit_ts;
        let later = match self.latest {
            None => true,
            Some((t, seq)) => sent_after(xmit_ts, end_seq, t, seq),
        };
        if later {
            self.latest = Some((xmit_ts, end_seq));
        }
    }

    /// §6.2 step 5: when a segment sent at `xmit_ts` and ending at
    /// `end_seq` is deemed lost, if RACK has seen a later one delivered;
    /// `None` when it has not (the segment is no suspect yet).
    pub(super) fn deadline(
        &self,
        xmit_ts: Instant,
        end_seq: SeqNumber,
        reo_wnd: Duration,
    ) -> Option<Instant> {
        let (t, seq) = self.latest?;
        sent_after(t, seq, xmit_ts, end_seq).then(|| xmit_ts + self.rtt + reo_wnd)
    }

    /// Keeps RACK.end_seq at or above SND.UNA, so that comparing it stays
    /// meaningful however far the connection runs. Every segment still on
    /// the board ends above SND.UNA, so no comparison changes outcome.
    pub(super) fn on_una(&mut self, una: SeqNumber) {
        if let Some((_, seq)) = &mut self.latest {
            *seq = seq.max(una);
        }
    }

    /// The stream moved (an empty board restarted elsewhere): sequence
    /// numbers kept from before would compare at random.
    pub(super) fn restart_at(&mut self, start: SeqNumber) {
        if let Some((_, seq)) = &mut self.latest {
            *seq = start;
        }
        self.dsack_round = None;
    }

    pub(super) fn note_reordering(&mut self) {
        self.reordering_seen = true;
    }

    #[cfg(test)]
    pub(super) fn reordering_seen(&self) -> bool {
        self.reordering_seen
    }

    /// RFC 8985 §6.2 step 4, RACK_update_reo_wnd: `dsack` says the ACK
    /// carried a DSACK that counts (not one for a TLP), `exiting_recovery`
    /// that this ACK ended a fast or RTO recovery.
    pub(super) fn update_reo_wnd(
        &mut self,
        una: SeqNumber,
        nxt: SeqNumber,
        dsack: bool,
        exiting_recovery: bool,
    ) {
        if self.dsack_round.is_some_and(|round| una.ge(round)) {
            self.dsack_round = None;
        }
        if self.dsack_round.is_none() && dsack {
            self.dsack_round = Some(nxt);
            // A byte, as in Linux; SRTT caps the window long before.
            self.reo_wnd_mult = self.reo_wnd_mult.saturating_add(1);
            self.reo_wnd_persist = REO_WND_PERSIST;
        } else if exiting_recovery {
            self.reo_wnd_persist = self.reo_wnd_persist.saturating_sub(1);
            if self.reo_wnd_persist == 0 {
                self.reo_wnd_mult = 1;
            }
        }
    }

    /// RFC 8985 §6.2 step 4, RACK_reo_wnd: with no reordering seen, no
    /// patience once recovery started or DupThresh is met; otherwise a
    /// quarter of min_RTT per DSACK-widened step, never above SRTT.
    pub(super) fn reo_wnd(
        &self,
        min_rtt: Duration,
        srtt: Duration,
        in_recovery: bool,
        dup_thresh_met: bool,
    ) -> Duration {
        if !self.reordering_seen && (in_recovery || dup_thresh_met) {
            return Duration::ZERO;
        }
        (min_rtt / 4)
            .saturating_mul(u32::from(self.reo_wnd_mult))
            .min(srtt)
    }

    #[cfg(test)]
    pub(super) fn reo_wnd_mult(&self) -> u8 {
        self.reo_wnd_mult
    }

    #[cfg(test)]
    pub(super) fn latest(&self) -> Option<(Instant, SeqNumber)> {
        self.latest
    }

    #[cfg(test)]
    pub(super) fn rtt(&self) -> Duration {
        self.rtt
    }
}
