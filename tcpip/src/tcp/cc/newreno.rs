//! NewReno's window (RFC 5681 §3, RFC 6582), counted in bytes with
//! Appropriate Byte Counting (RFC 3465).
//!
//! Only what is NewReno's own lives here: the slow-start limit `L`, the
//! additive increase of congestion avoidance and the threshold after a loss.
//! Slow start itself, fast recovery (PRR) and the loss window are shared and
//! live in the parent module.

/// RFC 3465 §2.2: an ACK grows the window by at most `L` segments in slow
/// start, and L = 2 is the largest the RFC allows (a delayed ACK covers 2).
pub(super) const SLOW_START_LIMIT_SEGMENTS: usize = 2;

/// The part of NewReno's state that is not cwnd/ssthresh.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct NewReno {
    /// Bytes acknowledged in congestion avoidance not yet turned into
    /// window: RFC 3465 §2.1 `bytes_acked`. Always below cwnd after an ACK.
    bytes_acked: usize,
}

impl NewReno {
    /// RFC 5681 §3.1 equation (4): half the flight, at least two segments.
    pub(super) fn ssthresh(in_flight: usize, mss: usize) -> usize {
        (in_flight / 2).max(mss.saturating_mul(2))
    }

    /// A congestion event or RTO: the count restarts with the new window.
    pub(super) fn on_reduction(&mut self) {
        self.bytes_acked = 0;
    }

    /// Congestion avoidance: one segment more per window of bytes acked
    /// (RFC 3465 §2.1; several at once for a stretch ACK, as Linux's
    /// tcp_cong_avoid_ai). Returns the new cwnd, unclamped.
    pub(super) fn congestion_avoidance(&mut self, acked: usize, cwnd: usize, mss: usize) -> usize {
        let cwnd = cwnd.max(1);
        self.bytes_acked = self.bytes_acked.saturating_add(acked);
        let segments = self.bytes_acked / cwnd;
        self.bytes_acked -= segments * cwnd;
        cwnd.saturating_add(segments.saturating_mul(mss))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssthresh_is_half_the_flight_but_two_segments_at_least() {
        assert_eq!(NewReno::ssthresh(100_000, 1000), 50_000);
        assert_eq!(NewReno::ssthresh(3000, 1000), 2000);
        assert_eq!(NewReno::ssthresh(0, 1000), 2000);
        assert_eq!(NewReno::ssthresh(usize::MAX, usize::MAX), usize::MAX);
    }

    #[test]
    fn one_segment_per_window_of_acked_bytes() {
        let mut r = NewReno::default();
        let mss = 1000;
        let mut cwnd = 10 * mss;
        // Nine segments acked: nothing yet; the tenth completes a window.
        for _ in 0..9 {
            cwnd = r.congestion_avoidance(mss, cwnd, mss);
            assert_eq!(cwnd, 10 * mss);
        }
        cwnd = r.congestion_avoidance(mss, cwnd, mss);
        assert_eq!(cwnd, 11 * mss);
        // A stretch ACK of three windows grows it by three segments.
        let mut r = NewReno::default();
        assert_eq!(r.congestion_avoidance(30 * mss, 10 * mss, mss), 13 * mss);
        assert_eq!(r.bytes_acked, 0);
    }

    #[test]
    fn reduction_forgets_the_partial_count() {
        let mut r = NewReno::default();
        r.congestion_avoidance(900, 1000, 100);
        r.on_reduction();
        assert_eq!(r.congestion_avoidance(900, 1000, 100), 1000);
    }

    #[test]
    fn huge_and_zero_inputs_do_not_overflow() {
        let mut r = NewReno::default();
        assert_eq!(
            r.congestion_avoidance(usize::MAX, 1, usize::MAX),
            usize::MAX
        );
        assert_eq!(r.congestion_avoidance(usize::MAX, 0, 1), usize::MAX);
        assert_eq!(r.congestion_avoidance(0, 0, 0), 1);
    }
}
