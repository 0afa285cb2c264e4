//! HyStart++ (RFC 9406): leave the initial slow start when the RTT starts
//! to rise, before the queue overflows.
//!
//! Rounds are counted in sequence space (§4.2): a round starts with
//! `windowEnd = SND.NXT` and ends when an ACK acknowledges the byte at
//! `windowEnd`, i.e. when the ACK number passes it. Each round keeps the
//! minimum RTT of its samples; once a round has N_RTT_SAMPLE samples and its
//! minimum exceeds the previous round's by the threshold, slow start gives
//! way to Conservative Slow Start (CSS), which grows at a quarter of the rate
//! for CSS_ROUNDS rounds and then hands over to congestion avoidance, unless
//! the RTT falls back (a false exit), which resumes slow start.
//!
//! This module only decides; the window itself is the parent's.

use std::time::Duration;

use capnet_wire::tcp::SeqNumber;

// §4.3, the RECOMMENDED constants.
const MIN_RTT_THRESH: Duration = Duration::from_millis(4);
const MAX_RTT_THRESH: Duration = Duration::from_millis(16);
const MIN_RTT_DIVISOR: u32 = 8;
const N_RTT_SAMPLE: u32 = 8;
/// CSS grows the window at 1/CSS_GROWTH_DIVISOR of slow start's rate.
pub(super) const CSS_GROWTH_DIVISOR: usize = 4;
const CSS_ROUNDS: u32 = 5;
/// §4.3: "L = infinity if paced, L = 8 if non-paced". The engine does not
/// pace (yet), so an ACK grows the window by at most 8 segments. With
/// pacing this could become unlimited, as Linux's slow start is.
pub(super) const SLOW_START_LIMIT_SEGMENTS: usize = 8;

/// Where HyStart++ has the initial slow start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Standard slow start, watching the RTT.
    SlowStart,
    /// Conservative Slow Start since the RTT rose to `baseline`; `rounds`
    /// round ends seen since (the partial round it began in counts).
    Css { baseline: Duration, rounds: u32 },
    /// Slow start is over (delay exit completed, a loss, or an RTO): §4.2
    /// "HyStart++ ... only for the initial slow start".
    Done,
}

/// What an ACK changed, for the parent to act on and count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Signal {
    Nothing,
    /// The RTT rose by the threshold: CSS begins.
    EnterCss,
    /// The RTT fell back below CSS's baseline: the exit was spurious and
    /// slow start resumes.
    ResumeSlowStart,
    /// CSS_ROUNDS rounds of CSS are complete: enter congestion avoidance
    /// by setting ssthresh to cwnd (§4.2).
    ExitSlowStart,
}

/// HyStart++'s state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct HyStart {
    phase: Phase,
    /// The round ends when the ACK number passes this (`windowEnd`); none
    /// before the first ACK.
    window_end: Option<SeqNumber>,
    /// `lastRoundMinRTT`; none until a round with a sample has ended.
    last_round_min: Option<Duration>,
    /// `currentRoundMinRTT`; none until this round has a sample.
    round_min: Option<Duration>,
    /// `rttSampleCount` of this round.
    samples: u32,
}

impl Default for HyStart {
    fn default() -> Self {
        HyStart {
            phase: Phase::SlowStart,
            window_end: None,
            last_round_min: None,
            round_min: None,
            samples: 0,
        }
    }
}

impl HyStart {
    /// Whether HyStart++ still runs (the initial slow start is not over).
    pub(super) fn active(&self) -> bool {
        self.phase != Phase::Done
    }

    /// Whether it is in Conservative Slow Start.
    pub(super) fn in_css(&self) -> bool {
        matches!(self.phase, Phase::Css { .. })
    }

    /// What the slow-start increase is divided by now (§4.2).
    pub(super) fn growth_divisor(&self) -> usize {
        if self.in_css() {
            CSS_GROWTH_DIVISOR
        } else {
            1
        }
    }

    /// Slow start ended some other way (a loss, an RTO, ssthresh reached):
    /// HyStart++ is done for the connection.
    pub(super) fn finish(&mut self) {
        self.phase = Phase::Done;
    }

    /// Round accounting, first on every ACK in slow start: `ack` is the
    /// ACK's number, `snd_nxt` the sender's next new byte. Returns
    /// [`Signal::ExitSlowStart`] when CSS has run its rounds.
    pub(super) fn on_ack(&mut self, ack: SeqNumber, snd_nxt: SeqNumber) -> Signal {
        if !self.active() {
            return Signal::Nothing;
        }
        let round_over = match self.window_end {
            None => true,
            Some(end) => ack.gt(end),
        };
        if !round_over {
            return Signal::Nothing;
        }
        // §4.2: at the start of each round.
        self.last_round_min = self.round_min;
        self.round_min = None;
        self.samples = 0;
        self.window_end = Some(snd_nxt);
        if let Phase::Css { baseline, rounds } = self.phase {
            let rounds = rounds + 1;
            if rounds >= CSS_ROUNDS {
                self.phase = Phase::Done;
                return Signal::ExitSlowStart;
            }
            self.phase = Phase::Css { baseline, rounds };
        }
        Signal::Nothing
    }

    /// An RTT sample of this ACK, after the window has grown for it (the
    /// order of §4.2's pseudocode).
    pub(super) fn on_rtt(&mut self, rtt: Duration) -> Signal {
        if !self.active() {
            return Signal::Nothing;
        }
        let round_min = self.round_min.map_or(rtt, |m| m.min(rtt));
        self.round_min = Some(round_min);
        self.samples = self.samples.saturating_add(1);
        if self.samples < N_RTT_SAMPLE {
            return Signal::Nothing;
        }
        match self.phase {
            Phase::SlowStart => {
                let Some(last) = self.last_round_min else {
                    return Signal::Nothing;
                };
                let thresh = (last / MIN_RTT_DIVISOR).clamp(MIN_RTT_THRESH, MAX_RTT_THRESH);
                // No RTT can exceed a bound past Duration::MAX.
                if last
                    .checked_add(thresh)
                    .is_some_and(|bound| round_min >= bound)
                {
                    self.phase = Phase::Css {
                        baseline: round_min,
                        rounds: 0,
                    };
                    return Signal::EnterCss;
                }
                Signal::Nothing
            }
            Phase::Css { baseline, .. } => {
                if round_min < baseline {
                    self.phase = Phase::SlowStart;
                    return Signal::ResumeSlowStart;
                }
                Signal::Nothing
            }
            Phase::Done => Signal::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// One round of `n` ACKs with the given RTTs, starting at `*seq`;
    /// returns every signal that was not Nothing.
    fn round(h: &mut HyStart, seq: &mut SeqNumber, rtts: &[Duration]) -> Vec<Signal> {
        let mut out = Vec::new();
        let snd_nxt = *seq + rtts.len() * 1000;
        for &rtt in rtts {
            *seq += 1000;
            for s in [h.on_ack(*seq, snd_nxt), h.on_rtt(rtt)] {
                if s != Signal::Nothing {
                    out.push(s);
                }
            }
        }
        out
    }

    #[test]
    fn delay_rise_enters_css_then_exits_after_css_rounds() {
        for base in [SeqNumber(0), SeqNumber(u32::MAX - 2500)] {
            let mut h = HyStart::default();
            let mut seq = base;
            assert!(round(&mut h, &mut seq, &[ms(100); 10]).is_empty());
            assert!(round(&mut h, &mut seq, &[ms(100); 10]).is_empty());
            // Threshold: 100/8 = 12.5 ms; the eighth sample triggers.
            let mut rtts = vec![ms(113); 10];
            rtts[0] = ms(200);
            assert_eq!(round(&mut h, &mut seq, &rtts), vec![Signal::EnterCss]);
            assert!(h.in_css());
            assert_eq!(h.growth_divisor(), CSS_GROWTH_DIVISOR);
            for _ in 0..4 {
                assert!(round(&mut h, &mut seq, &[ms(113); 10]).is_empty());
            }
            // The round that entered CSS and four more are complete when
            // the next begins.
            assert_eq!(
                round(&mut h, &mut seq, &[ms(113); 10]),
                vec![Signal::ExitSlowStart]
            );
            assert!(!h.active());
            assert!(round(&mut h, &mut seq, &[ms(500); 10]).is_empty());
        }
    }

    #[test]
    fn noise_below_the_threshold_does_not_exit() {
        let mut h = HyStart::default();
        let mut seq = SeqNumber(7);
        round(&mut h, &mut seq, &[ms(100); 10]);
        // +12 ms < 12.5 ms.
        for _ in 0..20 {
            assert!(round(&mut h, &mut seq, &[ms(112); 10]).is_empty());
        }
        assert_eq!(h.phase, Phase::SlowStart);
    }

    #[test]
    fn fewer_than_n_rtt_samples_do_not_decide() {
        let mut h = HyStart::default();
        let mut seq = SeqNumber(0);
        round(&mut h, &mut seq, &[ms(100); 10]);
        assert!(round(&mut h, &mut seq, &[ms(300); 7]).is_empty());
        assert!(round(&mut h, &mut seq, &[ms(900); 7]).is_empty());
        assert_eq!(h.phase, Phase::SlowStart);
    }

    #[test]
    fn threshold_is_clamped_between_4_and_16_ms() {
        // 10 ms base: 10/8 = 1.25 ms, clamped up to 4 ms.
        let mut h = HyStart::default();
        let mut seq = SeqNumber(0);
        round(&mut h, &mut seq, &[ms(10); 10]);
        assert!(round(&mut h, &mut seq, &[ms(13); 10]).is_empty());
        let mut h = HyStart::default();
        round(&mut h, &mut seq, &[ms(10); 10]);
        assert_eq!(
            round(&mut h, &mut seq, &[ms(14); 10]),
            vec![Signal::EnterCss]
        );
        // 400 ms base: 50 ms, clamped down to 16 ms.
        let mut h = HyStart::default();
        round(&mut h, &mut seq, &[ms(400); 10]);
        assert_eq!(
            round(&mut h, &mut seq, &[ms(416); 10]),
            vec![Signal::EnterCss]
        );
        // Zero RTT: threshold 4 ms, nothing divides by zero.
        let mut h = HyStart::default();
        round(&mut h, &mut seq, &[Duration::ZERO; 10]);
        assert!(round(&mut h, &mut seq, &[ms(3); 10]).is_empty());
    }

    #[test]
    fn rtt_falling_back_in_css_resumes_slow_start() {
        let mut h = HyStart::default();
        let mut seq = SeqNumber(0);
        round(&mut h, &mut seq, &[ms(100); 10]);
        assert_eq!(
            round(&mut h, &mut seq, &[ms(120); 10]),
            vec![Signal::EnterCss]
        );
        assert_eq!(
            round(&mut h, &mut seq, &[ms(101); 10]),
            vec![Signal::ResumeSlowStart]
        );
        assert_eq!(h.phase, Phase::SlowStart);
        assert_eq!(h.growth_divisor(), 1);
    }

    #[test]
    fn a_round_ends_only_when_the_ack_passes_window_end() {
        let mut h = HyStart::default();
        assert_eq!(h.on_ack(SeqNumber(100), SeqNumber(1000)), Signal::Nothing);
        assert_eq!(h.window_end, Some(SeqNumber(1000)));
        h.on_rtt(ms(5));
        // ACKing up to windowEnd (but not the byte at it) stays in the round.
        h.on_ack(SeqNumber(1000), SeqNumber(1000));
        assert_eq!(h.round_min, Some(ms(5)));
        // Nothing new sent and everything acked: the round cannot end.
        h.on_ack(SeqNumber(1000), SeqNumber(1000));
        assert_eq!(h.window_end, Some(SeqNumber(1000)));
        h.on_ack(SeqNumber(1001), SeqNumber(2000));
        assert_eq!(h.window_end, Some(SeqNumber(2000)));
        assert_eq!(h.last_round_min, Some(ms(5)));
    }

    #[test]
    fn huge_rtts_saturate() {
        let mut h = HyStart::default();
        let mut seq = SeqNumber(0);
        round(&mut h, &mut seq, &[Duration::MAX; 10]);
        assert!(round(&mut h, &mut seq, &[Duration::MAX; 10]).is_empty());
    }
}
