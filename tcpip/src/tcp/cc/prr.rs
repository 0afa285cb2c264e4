//! Proportional Rate Reduction (RFC 6937) with the slow-start reduction
//! bound (PRR-SSRB) as Linux runs it (tcp_cwnd_reduction).
//!
//! During fast recovery the window is not cwnd but a quota per ACK: while
//! the flight is above ssthresh, send in proportion to what was delivered
//! (ssthresh/RecoverFS of it), so the flight shrinks smoothly to ssthresh
//! by the end of recovery; once it is at or below ssthresh (heavy losses),
//! grow it back toward ssthresh no faster than slow start would.
//! Everything is in bytes (RFC 6937 counts bytes too).

/// PRR's state for one recovery episode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Prr {
    /// `RecoverFS`: the flight when recovery began (never zero).
    recover_fs: usize,
    /// `prr_delivered`: bytes delivered to the receiver since then.
    delivered: usize,
    /// `prr_out`: bytes sent (new or retransmitted) since then.
    out: usize,
}

impl Prr {
    /// Recovery begins with `recover_fs` bytes in flight.
    pub(super) fn new(recover_fs: usize) -> Prr {
        Prr {
            recover_fs: recover_fs.max(1),
            delivered: 0,
            out: 0,
        }
    }

    /// The sender transmitted `bytes` (RFC 6937 §3: "On any data
    /// transmission or retransmission").
    pub(super) fn on_sent(&mut self, bytes: usize) {
        self.out = self.out.saturating_add(bytes);
    }

    /// An ACK during recovery delivered `delivered` bytes and leaves
    /// `in_flight` (pipe); `safe` if it advanced snd.una without new losses.
    /// Returns `sndcnt`: the bytes that may be sent now.
    pub(super) fn on_ack(
        &mut self,
        delivered: usize,
        in_flight: usize,
        safe: bool,
        ssthresh: usize,
        mss: usize,
    ) -> usize {
        self.delivered = self.delivered.saturating_add(delivered);
        let sndcnt = if in_flight > ssthresh {
            // RFC 6937 §3: CEIL(prr_delivered * ssthresh / RecoverFS) - prr_out.
            let fs = self.recover_fs as u128;
            let allowed = (self.delivered as u128 * ssthresh as u128).div_ceil(fs);
            usize::try_from(allowed)
                .unwrap_or(usize::MAX)
                .saturating_sub(self.out)
        } else {
            // PRR-SSRB: what was delivered and not yet resent, plus one
            // segment on an ACK that is safe to grow on (Linux adds it only
            // when snd.una advanced and nothing new was marked lost, as
            // RFC 6937bis does), never past ssthresh.
            let mut limit = self.delivered.saturating_sub(self.out).max(delivered);
            if safe {
                limit = limit.saturating_add(mss);
            }
            limit.min(ssthresh - in_flight)
        };
        // The first ACK of recovery always releases the fast retransmit
        // (Linux: "Force a fast retransmit upon entering fast recovery").
        if self.out == 0 {
            sndcnt.max(mss)
        } else {
            sndcnt
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;

    #[test]
    fn proportional_while_flight_above_ssthresh() {
        // RFC 6937 §5's example scaled: 20 segments in flight, one lost,
        // ssthresh 10: one segment sent per two delivered.
        let mut p = Prr::new(20 * MSS);
        let ssthresh = 10 * MSS;
        let mut pipe = 19 * MSS;
        let mut sent = Vec::new();
        for _ in 0..10 {
            pipe -= MSS;
            let q = p.on_ack(MSS, pipe, false, ssthresh, MSS);
            let q = q / MSS * MSS; // whole segments only
            p.on_sent(q);
            pipe += q;
            sent.push(q / MSS);
        }
        // The forced fast retransmit first, then 1 per 2 ACKs (byte
        // counting: half a segment per ACK, sent once whole).
        assert_eq!(sent, [1, 0, 0, 1, 0, 1, 0, 1, 0, 1]);
        assert_eq!(p.out, 5 * MSS);
        // Unsent quota carries over: the totals decide.
        let mut p = Prr::new(20 * MSS);
        assert_eq!(p.on_ack(MSS, 18 * MSS, false, ssthresh, MSS), MSS);
        assert_eq!(p.on_ack(MSS, 17 * MSS, false, ssthresh, MSS), MSS);
        assert_eq!(p.on_ack(MSS, 16 * MSS, false, ssthresh, MSS), 1500);
    }

    #[test]
    fn ssrb_grows_back_to_ssthresh_no_faster_than_slow_start() {
        // Heavy loss: the flight is already below ssthresh.
        let ssthresh = 10 * MSS;
        let mut p = Prr::new(20 * MSS);
        let mut pipe = 4 * MSS;
        let mut quotas = Vec::new();
        for _ in 0..6 {
            pipe -= MSS;
            let q = p.on_ack(MSS, pipe, true, ssthresh, MSS);
            p.on_sent(q);
            pipe += q;
            quotas.push(q / MSS);
            assert!(pipe <= ssthresh);
        }
        // delivered + 1 per safe ACK: the flight grows one segment per ACK,
        // then stops at ssthresh.
        assert_eq!(quotas, [2, 2, 2, 2, 2, 2]);
        assert_eq!(pipe, 10 * MSS);
        assert_eq!(p.on_ack(MSS, 9 * MSS, true, ssthresh, MSS), MSS);
        // An unsafe ACK (a new loss marked) sends only what was delivered.
        let mut p = Prr::new(20 * MSS);
        p.on_sent(MSS);
        assert_eq!(p.on_ack(MSS, 3 * MSS, false, ssthresh, MSS), MSS);
    }

    #[test]
    fn no_overflow_and_no_division_by_zero() {
        let mut p = Prr::new(0);
        let q = p.on_ack(usize::MAX, usize::MAX, true, usize::MAX - 1, usize::MAX);
        assert_eq!(q, usize::MAX);
        p.on_sent(usize::MAX);
        p.on_sent(usize::MAX);
        assert_eq!(p.on_ack(usize::MAX, 0, true, usize::MAX, 1), usize::MAX);
        let mut p = Prr::new(1);
        assert_eq!(p.on_ack(0, 0, false, 0, 0), 0);
    }
}
