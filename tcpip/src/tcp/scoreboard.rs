//! The TCP sender's loss-detection state: every segment sent and not yet
//! cumulatively acknowledged, in the shape of Linux's retransmit queue
//! (per-segment send times and "sacked" flags).
//!
//! It owns:
//! - the record of `[SND.UNA, SND.NXT)` as the segments they were sent in,
//!   each with its last send time and one state: in flight, re-sent,
//!   SACKed (RFC 2018), deemed lost, retransmitted after being deemed
//!   lost (Linux's `sacked` bits);
//! - SACK and DSACK processing (RFC 2018, RFC 2883);
//! - RFC 6675's bookkeeping: `pipe` ([`Scoreboard::in_flight`]), `NextSeg`
//!   rule (1) ([`Scoreboard::next_retransmit`]), and `IsLost` with
//!   DupThresh as a second loss detector;
//! - RACK-TLP (RFC 8985): time-based loss detection with an adaptive
//!   reordering window, and the detection of a loss a tail-loss probe
//!   repaired (§7.4).
//!
//! It does not own timers, RTT estimation or the congestion response: the
//! caller passes `min_rtt` and `srtt`, arms the reordering timer at
//! [`LossOutcome::reorder_deadline`] and the RTO/PTO itself, and reacts to
//! [`AckOutcome`].
//!
//! Everything is in bytes. SACK marks whole recorded segments only (a block
//! covering part of one leaves it unSACKed, as Linux does below MSS
//! granularity), so a peer can never fragment the record: segments are only
//! added or split by the caller's own transmissions, and the caller bounds
//! their number through its send window. The caller should therefore record
//! one segment per MSS-sized transmission; DupThresh counts in units of the
//! largest segment recorded.
//!
//! Storage is a `VecDeque` sorted by sequence number, tiling
//! `[una, end)` exactly; lookups are binary searches, so one ACK costs
//! O(blocks · log n + segments newly (S)ACKed) plus one linear pass in
//! [`Scoreboard::detect_loss`]. A segment takes 24 bytes; the record spans
//! under 2^31 bytes (the send window is far smaller).

mod rack;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use capnet_wire::tcp::SeqNumber;

use crate::time::Instant;
use rack::Rack;

/// The most bytes the record may span: sequence comparisons are meaningful
/// only under 2^31 apart (RFC 9293 §3.4, RFC 1982).
const MAX_SPAN: u32 = i32::MAX as u32;

/// RFC 2018 §3: at most 4 blocks fit in the options; more is hostile.
const MAX_SACK_BLOCKS: usize = 4;

/// RFC 6675 §2 DupThresh, and the least the adaptive threshold gets.
const DUP_THRESH: u32 = 3;

/// The most the threshold grows with observed reordering, in segments
/// (Linux's `tcp_max_reordering`).
const MAX_DUP_THRESH: u32 = 300;

/// Slack when comparing a timestamp echo with a send time: TCP timestamp
/// clocks tick in milliseconds (Linux's), so an echo may read as up to one
/// tick older than the send it answers.
const TS_GRANULARITY: Duration = Duration::from_millis(1);

/// How a range went on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transmit {
    /// First transmission: the range starts at [`Scoreboard::end`].
    New,
    /// A retransmission (RFC 6675 NextSeg, or after an RTO).
    Retransmit,
    /// A tail-loss probe that re-sends recorded data (RFC 8985 §7.3); a
    /// probe of new data is a [`Transmit::New`].
    Probe,
}

/// What one ACK told the board.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AckOutcome {
    /// Bytes newly cumulatively acknowledged (`ack - una` before the ACK),
    /// including any that had been SACKed.
    pub acked: u32,
    /// Bytes newly SACKed: above the ACK, not SACKed before.
    pub sacked: u32,
    /// An RTT sample: the caller's timestamp sample when the ACK advanced
    /// SND.UNA (RFC 7323 §4.1), else Karn's (RFC 6298 §3): from the most
    /// recently sent of the newly (S)ACKed segments never retransmitted.
    pub rtt: Option<Duration>,
    /// The ACK carried a plausible DSACK (RFC 2883 §4): its first block is
    /// below the ACK or inside its second block.
    pub dsack: bool,
    /// A segment sent below one already (S)ACKed was (S)ACKed without
    /// having been retransmitted (RFC 8985 §6.2 step 3).
    pub reordering: bool,
    /// RFC 8985 §7.4.2: a tail-loss probe repaired a loss; the caller must
    /// respond to congestion.
    pub tlp_loss: bool,
}

/// What one loss-detection pass found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LossOutcome {
    /// Bytes newly deemed lost, lost retransmissions included.
    pub newly_lost: u32,
    /// When the segments RACK suspects but is still waiting on would be
    /// deemed lost (RFC 8985 §6.2 step 5); the caller arms a timer and
    /// calls [`Scoreboard::detect_loss`] again then.
    pub reorder_deadline: Option<Instant>,
}

/// A caller bug [`Scoreboard::on_transmit`] refused; the board is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScoreboardError {
    /// A zero-length range.
    EmptyRange,
    /// New data that does not start where the record ends.
    NotAtEnd { start: SeqNumber, end: SeqNumber },
    /// A retransmission of bytes outside `[una, end)`.
    NotRecorded { start: SeqNumber, len: u32 },
    /// The record would span 2^31 bytes or more.
    TooLarge,
}

impl fmt::Display for ScoreboardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScoreboardError::EmptyRange => write!(f, "a transmission of no bytes"),
            ScoreboardError::NotAtEnd { start, end } => {
                write!(f, "new data at {start}, but the record ends at {end}")
            }
            ScoreboardError::NotRecorded { start, len } => {
                write!(
                    f,
                    "a retransmission of {len} bytes at {start} never sent or already acked"
                )
            }
            ScoreboardError::TooLarge => write!(f, "the record would span 2^31 bytes or more"),
        }
    }
}

impl std::error::Error for ScoreboardError {}

/// Where one recorded segment stands (Linux's `sacked` bits, as a state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SegState {
    /// Sent, not deemed lost, no copy since. Pipe: 1 per byte.
    Sent,
    /// Sent again before being deemed lost (a probe, or a retransmission
    /// the caller chose): both copies count. Pipe: 2 (RFC 6675 §4 pipe,
    /// not IsLost and retransmitted; Linux's `SACKED_RETRANS` alone).
    Resent,
    /// Deemed lost and not retransmitted since: NextSeg's candidate.
    /// Pipe: 0.
    Lost,
    /// Deemed lost, then retransmitted; the retransmission is in flight.
    /// Pipe: 1 (Linux's `LOST | SACKED_RETRANS`).
    Repaired,
    /// SACKed: the receiver holds it. Pipe: 0.
    Sacked,
}

impl SegState {
    /// Counted in [`Scoreboard::lost_bytes`] (RFC 6675 IsLost held).
    fn is_lost(self) -> bool {
        matches!(self, SegState::Lost | SegState::Repaired)
    }

    /// A retransmitted copy is in flight.
    fn has_retransmission(self) -> bool {
        matches!(self, SegState::Resent | SegState::Repaired)
    }

    /// After being deemed lost (Linux `tcp_mark_skb_lost`): a lost
    /// retransmission is lost again; `None` when there is nothing in
    /// flight to lose.
    fn marked_lost(self) -> Option<SegState> {
        match self {
            SegState::Sent => Some(SegState::Lost),
            // The original is lost; the copy sent later is still in flight.
            SegState::Resent => Some(SegState::Repaired),
            SegState::Repaired => Some(SegState::Lost),
            SegState::Lost | SegState::Sacked => None,
        }
    }

    /// After being sent again.
    fn retransmitted(self) -> SegState {
        match self {
            SegState::Sent | SegState::Resent => SegState::Resent,
            SegState::Lost | SegState::Repaired => SegState::Repaired,
            SegState::Sacked => SegState::Sacked,
        }
    }
}

/// One recorded transmission (or the piece of one a retransmission split).
#[derive(Clone, Copy, Debug)]
struct Segment {
    start: SeqNumber,
    len: u32,
    /// When it was last sent (RFC 8985 Segment.xmit_ts).
    xmit_ts: Instant,
    state: SegState,
    /// Sent more than once, ever: its ACK is ambiguous (Karn; RFC 8985
    /// Segment.retransmitted).
    ever_retransmitted: bool,
}

impl Segment {
    fn end(&self) -> SeqNumber {
        self.start + self.len
    }
}

/// RFC 8985 §7: the TLP episode in progress.
#[derive(Clone, Copy, Debug)]
struct Tlp {
    /// TLP.end_seq: SND.NXT when the probe went.
    end: SeqNumber,
    /// TLP.is_retrans: the probe re-sent data rather than sending new.
    retransmitted: bool,
}

/// What one ACK newly delivered, gathered while walking it for RACK,
/// Karn and reordering (RFC 8985 §6.2 steps 2 and 3).
struct Delivered {
    now: Instant,
    ts_rtt: Option<Duration>,
    min_rtt: Option<Duration>,
    /// RACK.fack before this ACK.
    fack: SeqNumber,
    /// The latest-sent unambiguous segment, for RACK: (xmit_ts, end).
    rack: Option<(Instant, SeqNumber)>,
    /// The latest send time of a never-retransmitted segment, for Karn.
    karn: Option<Instant>,
    /// The highest end delivered.
    high: Option<SeqNumber>,
    /// How far below RACK.fack the deepest reordered segment started.
    reorder_distance: Option<u32>,
}

impl Delivered {
    fn note(&mut self, seg: &Segment, end: SeqNumber) {
        let rtt = self.now - seg.xmit_ts;
        // §6.2 step 2: an ACK of a retransmitted segment may be for an
        // earlier copy: trust it only if the timestamp echo is not older
        // than this copy and the RTT is not impossibly short.
        let unambiguous = !seg.ever_retransmitted
            || (self.ts_rtt.is_none_or(|ts| ts <= rtt + TS_GRANULARITY)
                && self.min_rtt.is_some_and(|min| rtt >= min));
        if unambiguous
            && self
                .rack
                .is_none_or(|(t, e)| rack::sent_after(seg.xmit_ts, end, t, e))
        {
            self.rack = Some((seg.xmit_ts, end));
        }
        if !seg.ever_retransmitted {
            self.karn = Some(self.karn.map_or(seg.xmit_ts, |t| t.max(seg.xmit_ts)));
            // §6.2 step 3: delivered below RACK.fack and never resent: the
            // network reordered it.
            if end.lt(self.fack) {
                let distance = (self.fack - seg.start).max(0) as u32;
                self.reorder_distance = Some(self.reorder_distance.unwrap_or(0).max(distance));
            }
        }
        self.high = Some(self.high.map_or(end, |h| h.max(end)));
    }
}

/// The sender's record of unacknowledged data and what is known of it.
///
/// Invariants: the segments tile `[una, end)` in order with no gaps; the
/// span is under 2^31; the byte counters equal the sums over the segments.
#[derive(Debug)]
pub struct Scoreboard {
    segs: VecDeque<Segment>,
    una: SeqNumber,
    end: SeqNumber,
    /// Bytes in state Sacked.
    sacked: u32,
    /// Bytes deemed lost (Lost or Repaired).
    lost: u32,
    /// Bytes with a retransmitted copy in flight (Resent or Repaired).
    retrans: u32,
    /// The largest segment recorded as new data: DupThresh's unit.
    smss: u32,
    /// DupThresh in segments: 3, raised by observed reordering.
    dup_thresh: u32,
    /// The end of the highest SACKed segment, while above una.
    high_sacked: Option<SeqNumber>,
    /// RACK.fack: the highest end (S)ACKed; never below una.
    fack: SeqNumber,
    /// No Lost segment starts below this (NextSeg's search start).
    lost_hint: SeqNumber,
    /// RFC 6675 RecoveryPoint while in fast or RTO recovery.
    recovery: Option<SeqNumber>,
    rack: Rack,
    tlp: Option<Tlp>,
    /// The caller's last min_RTT, or the least sample seen before it said.
    min_rtt: Option<Duration>,
    /// Bytes ever sent again, and bytes DSACKed: a peer cannot report more
    /// duplicates than were sent (Linux's `dsack_dups <= total_retrans`).
    retransmitted_total: u64,
    dsacked_total: u64,
}

impl Default for Scoreboard {
    fn default() -> Scoreboard {
        Scoreboard::new()
    }
}

impl Scoreboard {
    /// An empty board; the first [`Transmit::New`] sets where it starts.
    pub fn new() -> Scoreboard {
        Scoreboard {
            segs: VecDeque::new(),
            una: SeqNumber(0),
            end: SeqNumber(0),
            sacked: 0,
            lost: 0,
            retrans: 0,
            smss: 0,
            dup_thresh: DUP_THRESH,
            high_sacked: None,
            fack: SeqNumber(0),
            lost_hint: SeqNumber(0),
            recovery: None,
            rack: Rack::new(),
            tlp: None,
            min_rtt: None,
            retransmitted_total: 0,
            dsacked_total: 0,
        }
    }

    /// Records `start..start+len` going on the wire at `now`.
    ///
    /// [`Transmit::New`] must start at [`end`](Self::end), or anywhere
    /// when the board is empty (then `una = end = start`). A retransmission
    /// or probe must lie within `[una, end)`: the segments at its edges are
    /// split, and every segment in it not SACKed takes the new send time
    /// and stops being a NextSeg candidate. A caller bug is an error and
    /// leaves the board unchanged.
    pub fn on_transmit(
        &mut self,
        start: SeqNumber,
        len: u32,
        now: Instant,
        kind: Transmit,
    ) -> Result<(), ScoreboardError> {
        if len == 0 {
            return Err(ScoreboardError::EmptyRange);
        }
        match kind {
            Transmit::New => self.record_new(start, len, now),
            Transmit::Retransmit | Transmit::Probe => self.record_again(start, len, now),
        }
    }

    fn record_new(
        &mut self,
        start: SeqNumber,
        len: u32,
        now: Instant,
    ) -> Result<(), ScoreboardError> {
        if self.segs.is_empty() {
            if len > MAX_SPAN {
                return Err(ScoreboardError::TooLarge);
            }
            if start != self.end {
                self.restart_at(start);
            }
        } else if start != self.end {
            return Err(ScoreboardError::NotAtEnd {
                start,
                end: self.end,
            });
        } else if u64::from(self.span()) + u64::from(len) > u64::from(MAX_SPAN) {
            return Err(ScoreboardError::TooLarge);
        }
        self.segs.push_back(Segment {
            start,
            len,
            xmit_ts: now,
            state: SegState::Sent,
            ever_retransmitted: false,
        });
        self.end = start + len;
        self.smss = self.smss.max(len);
        Ok(())
    }

    /// Moves an empty board to `start`: every sequence number it keeps is
    /// brought along so that none is left 2^31 away.
    fn restart_at(&mut self, start: SeqNumber) {
        self.una = start;
        self.end = start;
        self.fack = start;
        self.lost_hint = start;
        self.high_sacked = None;
        self.recovery = None;
        self.tlp = None;
        self.rack.restart_at(start);
    }

    fn record_again(
        &mut self,
        start: SeqNumber,
        len: u32,
        now: Instant,
    ) -> Result<(), ScoreboardError> {
        let bad = ScoreboardError::NotRecorded { start, len };
        if !self.una.le(start) || len > MAX_SPAN {
            return Err(bad);
        }
        let from = self.off(start);
        if u64::from(from) + u64::from(len) > u64::from(self.span()) {
            return Err(bad);
        }
        let stop = start + len;
        self.split_at(start);
        self.split_at(stop);
        let mut i = self.first_starting_at_or_after(start);
        while let Some(seg) = self.segs.get(i) {
            if !seg.start.lt(stop) {
                break;
            }
            if seg.state != SegState::Sacked {
                let next = seg.state.retransmitted();
                self.set_state(i, next);
                let seg = &mut self.segs[i];
                seg.xmit_ts = now;
                seg.ever_retransmitted = true;
            }
            i += 1;
        }
        self.retransmitted_total = self.retransmitted_total.saturating_add(u64::from(len));
        if self.lost_hint.ge(start) && self.lost_hint.lt(stop) {
            self.lost_hint = stop;
        }
        self.advance_lost_hint();
        Ok(())
    }

    /// Processes one ACK: `ack` is the cumulative ACK (the caller passes
    /// `max(ack, una)`), `sack` the SACK blocks as received, `ts_rtt` the
    /// RTT the ACK's timestamp echo gives, if any.
    ///
    /// An ACK beyond [`end`](Self::end) is ignored whole (RFC 9293 §3.10.7.4:
    /// it acknowledges nothing sent). Of `sack`, the first four blocks are
    /// read; a block that is empty, inverted, or not within `[una, end]`
    /// after the cumulative ACK is ignored, as is a DSACK beyond what was
    /// ever retransmitted.
    pub fn on_ack(
        &mut self,
        now: Instant,
        ack: SeqNumber,
        sack: &[(SeqNumber, SeqNumber)],
        ts_rtt: Option<Duration>,
    ) -> AckOutcome {
        let mut out = AckOutcome::default();
        if !self.una.le(ack) || !ack.le(self.end) {
            return out;
        }
        let blocks = &sack[..sack.len().min(MAX_SACK_BLOCKS)];
        let dsack = self.check_dsack(ack, blocks);
        out.dsack = dsack.is_some();

        let mut delivered = Delivered {
            now,
            ts_rtt,
            min_rtt: self.min_rtt,
            fack: self.fack,
            rack: None,
            karn: None,
            high: None,
            reorder_distance: None,
        };
        out.acked = self.ack_to(ack, &mut delivered);
        for (i, &(start, end)) in blocks.iter().enumerate() {
            if i == 0 && dsack.is_some_and(|d| d.below_ack) {
                continue;
            }
            out.sacked += self.sack_block(start, end, &mut delivered);
        }

        // RFC 8985 §6.2 step 2.
        if let Some((xmit_ts, end)) = delivered.rack {
            self.rack.advance(now, xmit_ts, end);
        }
        // §6.2 step 3, and Linux's tcp_check_sack_reordering: DupThresh
        // grows to the reordering distance seen.
        if let Some(distance) = delivered.reorder_distance {
            out.reordering = true;
            self.rack.note_reordering();
            let segs = distance.div_ceil(self.smss.max(1));
            self.dup_thresh = self.dup_thresh.max(segs.min(MAX_DUP_THRESH));
        }
        if let Some(high) = delivered.high {
            self.fack = self.fack.max(high);
        }
        self.fack = self.fack.max(self.una);

        let karn = delivered.karn.map(|t| now - t);
        out.rtt = if out.acked > 0 { ts_rtt.or(karn) } else { karn };
        if let Some(sample) = out.rtt {
            self.min_rtt = Some(self.min_rtt.map_or(sample, |m| m.min(sample)));
        }

        let exiting_recovery = match self.recovery {
            Some(point) if self.una.ge(point) => {
                self.recovery = None;
                true
            }
            _ => false,
        };
        // §6.2 step 4: a DSACK for the TLP says nothing of reordering.
        let dsack_counts = dsack.is_some_and(|d| !d.for_tlp);
        self.rack
            .update_reo_wnd(self.una, self.end, dsack_counts, exiting_recovery);

        out.tlp_loss = self.process_tlp_ack(ack, &out, dsack.is_some_and(|d| d.for_tlp));
        self.advance_lost_hint();
        out
    }

    /// RFC 2883 §4: whether the first block reports duplicate data, and if
    /// so whether it lies below the ACK (and so marks nothing). A DSACK
    /// must be well-formed and within what was ever retransmitted.
    fn check_dsack(&mut self, ack: SeqNumber, blocks: &[(SeqNumber, SeqNumber)]) -> Option<Dsack> {
        let &(start, end) = blocks.first()?;
        if !start.lt(end) {
            return None;
        }
        let below_ack = if start.lt(ack) {
            if !end.le(ack) {
                return None;
            }
            true
        } else {
            let &(s1, e1) = blocks.get(1)?;
            if !(s1.lt(e1) && s1.le(start) && end.le(e1)) {
                return None;
            }
            // Inside a block beyond the record is no report at all.
            if !self.block_in_window(s1, e1, ack) {
                return None;
            }
            false
        };
        let len = (end - start) as u32;
        if self.dsacked_total.saturating_add(u64::from(len)) > self.retransmitted_total {
            return None;
        }
        self.dsacked_total += u64::from(len);
        let for_tlp = self.tlp.is_some_and(|t| t.retransmitted && t.end == end);
        Some(Dsack { below_ack, for_tlp })
    }

    /// A SACK block that can mark something: `una <= start < end <= end()`,
    /// against the una this ACK leaves.
    fn block_in_window(&self, start: SeqNumber, end: SeqNumber, una: SeqNumber) -> bool {
        // As distances from una (the span is under 2^31), so that edges
        // 2^31 apart, which compare both ways round, cannot pass.
        let (s, e, span) = (start - una, end - una, self.end - una);
        0 <= s && s < e && e <= span
    }

    /// Advances una to `ack`, dropping or trimming the segments below it.
    /// Returns the bytes acknowledged.
    fn ack_to(&mut self, ack: SeqNumber, delivered: &mut Delivered) -> u32 {
        let acked = self.off(ack);
        while let Some(&seg) = self.segs.front() {
            if seg.end().le(ack) {
                self.account(seg.state, seg.len, false);
                self.segs.pop_front();
            } else if seg.start.lt(ack) {
                // Part of a segment: its ACK still times its send (Linux
                // times a partially acked TSO skb the same way).
                let cut = (ack - seg.start) as u32;
                self.account(seg.state, cut, false);
                let front = &mut self.segs[0];
                front.start = ack;
                front.len -= cut;
            } else {
                break;
            }
            if seg.state != SegState::Sacked {
                delivered.note(&seg, seg.end());
            }
        }
        self.una = ack;
        if self.segs.is_empty() {
            self.end = ack;
        }
        if self.high_sacked.is_some_and(|h| h.le(ack)) {
            self.high_sacked = None;
        }
        self.lost_hint = self.lost_hint.max(ack);
        self.rack.on_una(ack);
        acked
    }

    /// Marks SACKed every segment wholly inside `[start, end)`; returns the
    /// bytes newly SACKed.
    fn sack_block(&mut self, start: SeqNumber, end: SeqNumber, delivered: &mut Delivered) -> u32 {
        if !self.block_in_window(start, end, self.una) {
            return 0;
        }
        let mut newly = 0;
        let mut i = self.first_starting_at_or_after(start);
        while let Some(&seg) = self.segs.get(i) {
            if !seg.end().le(end) {
                break;
            }
            if seg.state != SegState::Sacked {
                self.set_state(i, SegState::Sacked);
                newly += seg.len;
                delivered.note(&seg, seg.end());
                self.high_sacked = Some(self.high_sacked.map_or(seg.end(), |h| h.max(seg.end())));
            }
            i += 1;
        }
        newly
    }

    /// RFC 8985 §7.4.2 (Linux `tcp_process_tlp_ack`): whether this ACK
    /// shows that the probe, not the original, repaired a loss.
    fn process_tlp_ack(&mut self, ack: SeqNumber, out: &AckOutcome, dsack_for_tlp: bool) -> bool {
        let Some(tlp) = self.tlp else { return false };
        if ack.lt(tlp.end) {
            return false;
        }
        if !tlp.retransmitted || dsack_for_tlp {
            // New data delivered, or both copies arrived: no loss.
            self.tlp = None;
            false
        } else if ack.gt(tlp.end) {
            // The ACK passed the probe with no sign of the original: the
            // probe plugged a hole.
            self.tlp = None;
            true
        } else {
            if out.acked == 0 && out.sacked == 0 && !out.dsack {
                // A pure duplicate at TLP.end_seq: the probe arrived after
                // the original.
                self.tlp = None;
            }
            false
        }
    }

    /// RACK (RFC 8985 §6.2 step 5) and then RFC 6675 IsLost with the
    /// current DupThresh: marks lost what they deem lost. `min_rtt` and
    /// `srtt` are the caller's estimates; `min_rtt` is also kept to judge
    /// the ACKs of retransmissions (§6.2 step 2).
    pub fn detect_loss(&mut self, now: Instant, min_rtt: Duration, srtt: Duration) -> LossOutcome {
        self.min_rtt = Some(min_rtt);
        let mut out = LossOutcome::default();
        if self.segs.is_empty() {
            return out;
        }
        let dup_thresh_met = u64::from(self.sacked) >= self.dup_thresh_bytes(self.dup_thresh);
        let reo_wnd = self
            .rack
            .reo_wnd(min_rtt, srtt, self.recovery.is_some(), dup_thresh_met);
        for i in 0..self.segs.len() {
            let seg = self.segs[i];
            if !matches!(
                seg.state,
                SegState::Sent | SegState::Resent | SegState::Repaired
            ) {
                continue;
            }
            match self.rack.deadline(seg.xmit_ts, seg.end(), reo_wnd) {
                Some(deadline) if deadline <= now => {
                    out.newly_lost += self.mark_lost(i);
                }
                Some(deadline) => {
                    out.reorder_deadline =
                        Some(out.reorder_deadline.map_or(deadline, |d| d.max(deadline)));
                }
                None => {}
            }
        }

        // RFC 6675 §4 IsLost: more than (DupThresh - 1) * SMSS bytes or
        // DupThresh discontiguous runs SACKed above. Walk down from the top
        // counting both; only segments never deemed lost qualify (a lost
        // retransmission is RACK's to find).
        if self.high_sacked.is_some() {
            let bytes_thresh = self.dup_thresh_bytes(self.dup_thresh - 1);
            let mut sacked_above = 0u64;
            let mut runs_above = 0u32;
            let mut in_run = false;
            for i in (0..self.segs.len()).rev() {
                let seg = self.segs[i];
                if seg.state == SegState::Sacked {
                    sacked_above += u64::from(seg.len);
                    runs_above += u32::from(!in_run);
                    in_run = true;
                    continue;
                }
                in_run = false;
                if matches!(seg.state, SegState::Sent | SegState::Resent)
                    && (sacked_above > bytes_thresh || runs_above >= self.dup_thresh)
                {
                    out.newly_lost += self.mark_lost(i);
                }
            }
        }

        if out.newly_lost > 0 {
            self.recovery.get_or_insert(self.end);
            // This pass was linear already; so is finding NextSeg afresh.
            self.lost_hint = self.una;
            self.advance_lost_hint();
        }
        out
    }

    /// RFC 8985 §6.3 as Linux's `tcp_enter_loss` does it: on an RTO every
    /// segment not SACKed is deemed lost, its retransmissions included, and
    /// RTO recovery runs until una reaches the current end. Ends any TLP
    /// episode.
    pub fn on_rto(&mut self, _now: Instant) {
        for i in 0..self.segs.len() {
            let state = self.segs[i].state;
            if state != SegState::Sacked && state != SegState::Lost {
                self.set_state(i, SegState::Lost);
            }
        }
        if !self.segs.is_empty() {
            self.recovery = Some(self.end);
        }
        self.tlp = None;
        self.lost_hint = self.una;
        self.advance_lost_hint();
    }

    /// RFC 6675 §4 pipe, in bytes: bytes sent and neither SACKed nor deemed
    /// lost, plus bytes retransmitted whose retransmission is neither
    /// (S)ACKed nor deemed lost. A byte deemed lost and retransmitted
    /// counts once; one re-sent before being deemed lost (a probe) twice.
    pub fn in_flight(&self) -> u32 {
        self.span()
            .saturating_sub(self.sacked)
            .saturating_sub(self.lost)
            .saturating_add(self.retrans)
    }

    /// RFC 6675 §4 NextSeg rule (1): the first range deemed lost and not
    /// retransmitted since, at most `mss` bytes of one segment. The caller
    /// then reports what it sent with [`Transmit::Retransmit`].
    pub fn next_retransmit(&self, mss: u32) -> Option<(SeqNumber, u32)> {
        if mss == 0 {
            return None;
        }
        let from = self.first_ending_after(self.lost_hint);
        self.segs
            .range(from..)
            .find(|seg| seg.state == SegState::Lost)
            .map(|seg| (seg.start, seg.len.min(mss)))
    }

    /// SND.UNA: the first byte not cumulatively acknowledged.
    pub fn una(&self) -> SeqNumber {
        self.una
    }

    /// SND.NXT as recorded: just past the last byte sent.
    pub fn end(&self) -> SeqNumber {
        self.end
    }

    /// Nothing is outstanding.
    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// Bytes SACKed and not yet cumulatively acknowledged.
    pub fn sacked_bytes(&self) -> u32 {
        self.sacked
    }

    /// Bytes deemed lost (RFC 6675 IsLost), retransmitted since or not.
    pub fn lost_bytes(&self) -> u32 {
        self.lost
    }

    /// Just past the highest SACKed byte, while any is above una.
    pub fn highest_sacked(&self) -> Option<SeqNumber> {
        self.high_sacked
    }

    /// RFC 8985 §7.3: a tail-loss probe went out; `end` is SND.NXT after it
    /// (the probe's end), `retransmitted` whether it re-sent data. Starts
    /// the episode [`AckOutcome::tlp_loss`] reports on. An `end` outside
    /// `(una, end]` is ignored.
    pub fn on_tlp_sent(&mut self, end: SeqNumber, retransmitted: bool) {
        if self.una.lt(end) && end.le(self.end) {
            self.tlp = Some(Tlp { end, retransmitted });
        }
    }

    // ---- internals ----

    /// Bytes from una to `seq`, for `seq` in `[una, end]`.
    fn off(&self, seq: SeqNumber) -> u32 {
        (seq - self.una) as u32
    }

    fn span(&self) -> u32 {
        self.off(self.end)
    }

    fn dup_thresh_bytes(&self, segments: u32) -> u64 {
        u64::from(segments) * u64::from(self.smss)
    }

    /// The index of the first segment starting at or after `seq`.
    fn first_starting_at_or_after(&self, seq: SeqNumber) -> usize {
        let at = self.off(seq);
        self.segs.partition_point(|s| self.off(s.start) < at)
    }

    /// The index of the first segment ending after `seq`.
    fn first_ending_after(&self, seq: SeqNumber) -> usize {
        let at = self.off(seq);
        self.segs.partition_point(|s| self.off(s.end()) <= at)
    }

    /// Splits the segment holding `seq` so that one starts there.
    fn split_at(&mut self, seq: SeqNumber) {
        let i = self.first_ending_after(seq);
        let Some(&seg) = self.segs.get(i) else { return };
        if seg.start.lt(seq) {
            let head = (seq - seg.start) as u32;
            self.segs[i].len = head;
            self.segs.insert(
                i + 1,
                Segment {
                    start: seq,
                    len: seg.len - head,
                    ..seg
                },
            );
        }
    }

    /// Deems segment `i` lost; returns the bytes newly lost.
    fn mark_lost(&mut self, i: usize) -> u32 {
        match self.segs[i].state.marked_lost() {
            Some(next) => {
                self.set_state(i, next);
                self.segs[i].len
            }
            None => 0,
        }
    }

    fn set_state(&mut self, i: usize, next: SegState) {
        let seg = self.segs[i];
        self.account(seg.state, seg.len, false);
        self.account(next, seg.len, true);
        self.segs[i].state = next;
    }

    /// Adds `len` bytes in `state` to the counters, or takes them away.
    fn account(&mut self, state: SegState, len: u32, add: bool) {
        let counters = [
            (state == SegState::Sacked, &mut self.sacked),
            (state.is_lost(), &mut self.lost),
            (state.has_retransmission(), &mut self.retrans),
        ];
        for (applies, counter) in counters {
            if applies {
                *counter = if add {
                    counter.saturating_add(len)
                } else {
                    counter.saturating_sub(len)
                };
            }
        }
    }

    /// Moves `lost_hint` up to the first Lost segment (or `end`). The hint
    /// only rises here, so the walks add up to one pass between losses.
    fn advance_lost_hint(&mut self) {
        let from = self.first_ending_after(self.lost_hint.max(self.una));
        self.lost_hint = self
            .segs
            .range(from..)
            .find(|seg| seg.state == SegState::Lost)
            .map_or(self.end, |seg| seg.start);
    }
}

/// A DSACK that passed [`Scoreboard::check_dsack`].
#[derive(Clone, Copy, Debug)]
struct Dsack {
    /// Below the cumulative ACK: it marks nothing.
    below_ack: bool,
    /// It reports the TLP's duplicate (RFC 8985 §7.4.2).
    for_tlp: bool,
}
