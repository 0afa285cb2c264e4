//! SEGMENT ARRIVES (RFC 9293 3.10.7), with PAWS (RFC 7323 5), the
//! blind-attack defences of RFC 5961, SACK (RFC 2018) and the loss
//! recovery that ACKs drive.

use super::*;
use crate::tcp::cc::{AckSample, RecoveryAck};
use crate::tcp::scoreboard::AckOutcome;

/// What the connection asks of the layer above after a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    Nothing,
    /// Answer with a reset (RFC 9293 3.10.7.3: a bad ACK in SYN-SENT or
    /// SYN-RECEIVED): `<SEQ=seq><CTL=RST>`.
    Reset {
        seq: SeqNumber,
    },
}

impl Conn {
    /// The segments a payload of `len` bytes came in: one, or as many as
    /// it holds of our MSS when the NIC coalesced them (GRO).
    fn segments_held(&self, len: usize) -> u32 {
        len.div_ceil(self.our_mss.max(1))
            .clamp(1, u32::MAX as usize) as u32
    }

    /// Takes one segment addressed to this connection.
    pub fn on_segment(&mut self, now: Instant, h: &Header, payload: &[u8], mark: Mark) -> Reply {
        self.counters.segs_in += self.segments_held(payload.len()) as u64;
        self.send_blocked = false;
        self.last_rx = now;
        if let Some(idle) = self.opts.keep_alive {
            self.timers.keepalive = Some(now + idle);
        }
        match self.state {
            State::SynSent => self.syn_sent(now, h, payload, mark),
            State::Closed => Reply::Nothing,
            _ => self.synchronized_segment(now, h, payload, mark),
        }
    }

    /// RFC 9293 3.10.7.3.
    fn syn_sent(&mut self, now: Instant, h: &Header, payload: &[u8], mark: Mark) -> Reply {
        let f = h.flags;
        let acceptable_ack = f.ack() && h.ack.gt(self.iss) && h.ack.le(self.snd_max);
        if f.ack() && !acceptable_ack {
            return if f.rst() {
                Reply::Nothing
            } else {
                Reply::Reset { seq: h.ack }
            };
        }
        if f.rst() {
            if acceptable_ack {
                self.finish(Some(ConnError::Refused));
            }
            return Reply::Nothing;
        }
        if !f.syn() {
            return Reply::Nothing;
        }
        self.take_peer_syn(now, h);
        if acceptable_ack {
            let rtt = (self.retries == 0).then(|| now.since(self.last_tx));
            self.snd_una = h.ack;
            self.snd_nxt = self.snd_nxt.max(h.ack);
            self.established(now, h, rtt);
            self.ack.now = true;
            // Data on a SYN-ACK (TFO-style) is taken like any other.
            if !payload.is_empty() {
                self.take_data(now, h.seq + 1u32, payload, mark, false);
            }
        } else {
            // Simultaneous open (RFC 9293 3.5, figure 8): SYN-ACK from here.
            self.state = State::SynReceived;
            self.simultaneous_open = true;
            self.snd_nxt = self.iss;
            self.timers.rto = Some(now);
        }
        Reply::Nothing
    }

    /// Takes what the peer's SYN says: its ISN and options.
    pub(super) fn take_peer_syn(&mut self, now: Instant, h: &Header) {
        self.irs = h.seq;
        self.recvq = RecvQueue::new(self.opts.recv_buffer, 0);
        self.neg.send_mss = usize::from(h.mss.unwrap_or(536)).clamp(64, self.our_mss.max(64));
        match h.window_scale {
            Some(shift) if self.neg.rcv_wscale > 0 || self.state != State::SynSent => {
                self.neg.snd_wscale = shift;
            }
            // RFC 7323 2.2: both must send the option, or neither scales.
            _ => {
                self.neg.snd_wscale = 0;
                self.neg.rcv_wscale = 0;
            }
        }
        self.neg.sack &= h.sack_permitted;
        match h.timestamp {
            Some((val, _)) if self.neg.timestamps => {
                self.ts.recent = val;
                self.ts.recent_at = now;
            }
            _ => self.neg.timestamps = false,
        }
        self.snd_wnd = usize::from(h.window);
        self.snd_wl1 = h.seq;
        self.snd_wl2 = h.ack;
        self.max_snd_wnd = self.snd_wnd;
        self.cc.set_mss(self.effective_mss());
        self.ack.rcv_adv = self.rcv_nxt();
    }

    /// The handshake completed: ESTABLISHED.
    fn established(&mut self, now: Instant, h: &Header, rtt: Option<Duration>) {
        self.state = State::Established;
        self.synchronized = true;
        let retransmitted = self.retries > 0;
        self.retries = 0;
        self.timers.rto = None;
        if let Some(rtt) = self.ts_rtt(now, h).or(rtt) {
            self.rtt.sample(now, rtt);
        } else if retransmitted {
            // RFC 6298 5.7 (Linux tcp_init_metrics): no sample, and 1 s
            // was too short once: data starts with a 3 s RTO.
            self.rtt.handshake_retransmitted();
        }
        self.rtt.reset_backoff();
        self.snd_wnd = usize::from(h.window) << self.neg.snd_wscale;
        self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
        self.snd_wl1 = h.seq;
        self.snd_wl2 = h.ack;
        if let Some(idle) = self.opts.keep_alive {
            self.timers.keepalive = Some(now + idle);
        }
        self.wake = true;
    }

    /// The RTT a timestamp echo gives (RFC 7323 4.1), if it is plausible.
    fn ts_rtt(&self, now: Instant, h: &Header) -> Option<Duration> {
        let (_, ecr) = h.timestamp?;
        if !self.neg.timestamps || ecr == 0 {
            return None;
        }
        let elapsed = self.ts_val(now).wrapping_sub(ecr);
        // An echo from the future, or of a value we never sent, says nothing.
        (elapsed < 60_000).then(|| Duration::from_millis(u64::from(elapsed.max(1))))
    }

    /// RFC 9293 3.10.7.4, for every state past SYN-SENT.
    fn synchronized_segment(
        &mut self,
        now: Instant,
        h: &Header,
        payload: &[u8],
        mark: Mark,
    ) -> Reply {
        let f = h.flags;
        let seg_len = h.seq_len(payload.len());
        if self.simultaneous_open
            && self.state == State::SynReceived
            && f.syn()
            && f.ack()
            && !f.rst()
            && h.seq == self.irs
            && h.ack == self.snd_max
        {
            // RFC 9293 3.5 figure 8: the peer's SYN-ACK crossed ours; its
            // ACK completes the handshake (Linux tcp_validate_incoming
            // lets it pass, though its SYN lies just below RCV.NXT).
            let rtt = (self.retries == 0).then(|| now.since(self.last_tx));
            self.snd_una = h.ack;
            self.established(now, h, rtt);
            // RFC 7323 2.2: the window of a SYN is not scaled.
            self.snd_wnd = usize::from(h.window);
            self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
            return Reply::Nothing;
        }
        // RFC 7323 5.3: PAWS.
        if let (true, Some((val, _))) = (self.neg.timestamps, h.timestamp) {
            let older = (val.wrapping_sub(self.ts.recent) as i32) < 0;
            if older && !f.rst() && now.since(self.ts.recent_at) < limits::PAWS_IDLE {
                self.counters.paws_drops += 1;
                self.ack.now = true;
                return Reply::Nothing;
            }
        }
        if !self.acceptable(h.seq, seg_len) {
            self.counters.out_of_window += 1;
            if !f.rst() {
                self.note_duplicate(h.seq, payload.len());
                self.ack.now = true;
            }
            return Reply::Nothing;
        }
        if f.rst() {
            // RFC 5961 3.2: only an exact match resets; others are challenged.
            if h.seq == self.rcv_nxt() {
                let error = if self.synchronized {
                    ConnError::Reset
                } else {
                    ConnError::Refused
                };
                self.finish(Some(error));
            } else {
                self.challenge_ack(now);
            }
            return Reply::Nothing;
        }
        if f.syn() {
            if self.state == State::SynReceived && h.seq == self.irs {
                // The peer did not see our SYN-ACK: send it again.
                self.snd_nxt = self.iss;
                self.timers.rto = Some(now);
                return Reply::Nothing;
            }
            // RFC 5961 4.2: a SYN in a synchronized state is challenged.
            self.challenge_ack(now);
            return Reply::Nothing;
        }
        if !f.ack() {
            return Reply::Nothing;
        }
        if self.state == State::SynReceived {
            if !(h.ack.gt(self.snd_una) && h.ack.le(self.snd_max)) {
                return Reply::Reset { seq: h.ack };
            }
            let rtt = (self.retries == 0).then(|| now.since(self.last_tx));
            self.snd_una = h.ack;
            self.established(now, h, rtt);
        }
        if !self.process_ack(now, h) {
            return Reply::Nothing;
        }
        self.update_ts_recent(now, h, seg_len);
        if self.state == State::Closed {
            return Reply::Nothing;
        }
        if self.orphan && !payload.is_empty() && (h.seq + payload.len()).gt(self.rcv_nxt()) {
            // RFC 1122 4.2.2.13 / RFC 2525 2.17: the application closed, so
            // new data can never be read: abort and tell the peer (Linux
            // tcp_rcv_state_process, TCPAbortOnData), `<SEQ=SEG.ACK>`.
            self.finish(Some(ConnError::Aborted));
            return Reply::Reset { seq: h.ack };
        }
        if !payload.is_empty() || f.fin() {
            self.take_data(now, h.seq, payload, mark, f.fin());
        }
        Reply::Nothing
    }

    /// RFC 9293 3.10.7.4's acceptability test, as Linux applies it
    /// (`tcp_sequence`): some of the segment lies inside the window, or it
    /// is an empty segment at its edge.
    fn acceptable(&self, seq: SeqNumber, seg_len: usize) -> bool {
        let nxt = self.rcv_nxt();
        let wnd = self.advertised_window();
        let end = seq + seg_len;
        if seg_len == 0 {
            return seq.ge(nxt) && seq.le(nxt + wnd);
        }
        end.gt(nxt) && seq.lt(nxt + wnd.max(1))
    }

    /// What our last advertisement lets the peer send beyond RCV.NXT.
    pub(super) fn advertised_window(&self) -> usize {
        (self.ack.rcv_adv - self.rcv_nxt()).max(0) as usize
    }

    /// A segment entirely below RCV.NXT: remembered for D-SACK.
    fn note_duplicate(&mut self, seq: SeqNumber, len: usize) {
        let behind = self.rcv_nxt() - seq;
        if len == 0 || behind <= 0 {
            return;
        }
        if let Some(at) = self.recvq.next().checked_sub(behind as u64) {
            let seen = len.min(behind as usize);
            // Inserting data entirely below RCV.NXT only records the D-SACK.
            self.recvq.insert(at, &vec![0; seen], Mark::Plain);
        }
    }

    /// RFC 5961 7: challenge ACKs, at most a few per second.
    fn challenge_ack(&mut self, now: Instant) {
        let second = now.micros() / 1_000_000;
        if self.ack.challenge_second != second {
            self.ack.challenge_second = second;
            self.ack.challenges = 0;
        }
        if self.ack.challenges < limits::CHALLENGE_ACKS_PER_SEC {
            self.ack.challenges += 1;
            self.counters.challenge_acks += 1;
            self.ack.now = true;
        }
    }

    /// RFC 7323 4.3: TS.Recent follows the segment that covers Last.ACK.sent.
    fn update_ts_recent(&mut self, now: Instant, h: &Header, seg_len: usize) {
        let Some((val, _)) = h.timestamp else { return };
        if !self.neg.timestamps {
            return;
        }
        let newer = (val.wrapping_sub(self.ts.recent) as i32) >= 0;
        let covers = h.seq.le(self.ack.last_sent) && self.ack.last_sent.le(h.seq + seg_len);
        if newer && covers {
            self.ts.recent = val;
            self.ts.recent_at = now;
        }
    }

    /// The ACK field, SACK blocks and window. False: drop the segment.
    fn process_ack(&mut self, now: Instant, h: &Header) -> bool {
        let ack = h.ack;
        if ack.gt(self.snd_max) {
            // RFC 5961 5.2 / RFC 9293: acknowledges what we never sent.
            self.ack.now = true;
            return false;
        }
        if ack.lt(self.snd_una - self.max_snd_wnd.max(1)) {
            self.challenge_ack(now);
            return false;
        }
        let advanced = ack.gt(self.snd_una);
        let ts_rtt = if advanced { self.ts_rtt(now, h) } else { None };
        let sacks: &[capnet_wire::tcp::SackBlock] =
            if self.neg.sack { h.sack_blocks() } else { &[] };
        let in_flight_before = self.sb.in_flight() as usize;
        let sacked_before = self.sb.sacked_bytes();
        let out = self.sb.on_ack(now, ack.max(self.snd_una), sacks, ts_rtt);
        // RFC 6937 DeliveredData: bytes acknowledged now that were not SACKed before.
        let delivered = (out.acked as usize + self.sb.sacked_bytes() as usize)
            .saturating_sub(sacked_before as usize);
        if out.dsack {
            self.counters.dsacks += 1;
        }
        if advanced {
            self.ack_advanced(now, ack, h);
        }
        if let Some(rtt) = ts_rtt.or(out.rtt) {
            self.rtt.sample(now, rtt);
        }
        self.update_window(h);
        self.after_ack(now, &out, delivered, in_flight_before, advanced);
        true
    }

    fn ack_advanced(&mut self, now: Instant, ack: SeqNumber, h: &Header) {
        let mut acked = (ack - self.snd_una) as usize;
        if let Fin::Sent(fin) = self.fin {
            if ack.gt(fin) {
                acked -= 1;
            }
        }
        let data = acked.min(self.sendq.len());
        self.sendq.ack(data);
        self.counters.bytes_acked += data as u64;
        self.snd_una = ack;
        if self.snd_nxt.lt(ack) {
            self.snd_nxt = ack;
        }
        self.retries = 0;
        self.rtt.reset_backoff();
        self.timers.persist = None;
        if self.recovery_spurious(h) {
            self.cc.undo();
            self.recovery = Recovery::Open;
        }
        self.wake = true;
        if let Fin::Sent(fin) = self.fin {
            if ack.gt(fin) {
                self.our_fin_acked(now);
            }
        }
    }

    /// Eifel (RFC 3522): an ACK echoing a timestamp from before the first
    /// retransmission of a timeout says the original arrived.
    fn recovery_spurious(&self, h: &Header) -> bool {
        let (Recovery::Loss { .. }, Some(sent), Some((_, ecr))) =
            (self.recovery, self.ts_first_retransmit, h.timestamp)
        else {
            return false;
        };
        ecr != 0 && (ecr.wrapping_sub(sent) as i32) < 0
    }

    fn our_fin_acked(&mut self, now: Instant) {
        match self.state {
            State::FinWait1 => {
                self.state = State::FinWait2;
                if self.orphan {
                    self.arm_fin_timeout(now);
                }
            }
            State::Closing => self.enter_time_wait(now),
            State::LastAck => self.finish(None),
            _ => {}
        }
    }

    pub(super) fn enter_time_wait(&mut self, now: Instant) {
        self.state = State::TimeWait;
        self.timers = Timers {
            close: Some(now + limits::TIME_WAIT),
            ..Timers::default()
        };
        self.wake = true;
    }

    /// RFC 9293 3.10.7.4: SND.WND follows the newest segment.
    fn update_window(&mut self, h: &Header) {
        let newer = self.snd_wl1.lt(h.seq) || (self.snd_wl1 == h.seq && self.snd_wl2.le(h.ack));
        if !newer {
            return;
        }
        let before = self.snd_wnd;
        self.snd_wnd = usize::from(h.window) << self.neg.snd_wscale;
        self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
        self.snd_wl1 = h.seq;
        self.snd_wl2 = h.ack;
        // A window that opened (from zero, or from a size SWS avoidance
        // would not use) ends the probing.
        if self.snd_wnd > before {
            self.timers.persist = None;
            if self.snd_una == self.snd_max {
                // The probes' backoff ends with the window (Linux
                // tcp_ack_probe); no timeout of data is behind it.
                self.rtt.reset_backoff();
            }
            self.wake = true;
        }
    }

    /// Loss detection and congestion response after an ACK (RFC 6675,
    /// RFC 8985, RFC 9438 / RFC 5681, RFC 6937).
    fn after_ack(
        &mut self,
        now: Instant,
        out: &AckOutcome,
        delivered: usize,
        in_flight_before: usize,
        advanced: bool,
    ) {
        let sample = AckSample {
            delivered,
            rtt: out.rtt,
            ack: self.snd_una,
            snd_nxt: self.snd_nxt,
            cwnd_limited: self.cwnd_limited,
        };
        self.cc.on_ack(now, &sample);
        let min_rtt = self.rtt.min_rtt().unwrap_or(self.rtt.rto());
        let srtt = self.rtt.srtt().unwrap_or(self.rtt.rto());
        let loss = self.sb.detect_loss(now, min_rtt, srtt);
        self.timers.reorder = loss.reorder_deadline;
        match self.recovery {
            Recovery::Open if loss.newly_lost > 0 || out.tlp_loss => {
                self.enter_fast_recovery(now, in_flight_before);
            }
            Recovery::Fast { high } | Recovery::Loss { high } if self.snd_una.ge(high) => {
                if matches!(self.recovery, Recovery::Fast { .. }) {
                    self.cc.on_recovery_end(now);
                }
                self.recovery = Recovery::Open;
                self.ts_first_retransmit = None;
            }
            _ => {}
        }
        if let Recovery::Fast { .. } = self.recovery {
            self.recovery_quota = self.cc.recovery_quota(&RecoveryAck {
                delivered,
                in_flight: self.sb.in_flight() as usize,
                safe: advanced && loss.newly_lost == 0,
            });
        }
        // RFC 6298 5.2/5.3: stop when all is acknowledged, restart on progress.
        if self.snd_una == self.snd_max {
            self.timers.rto = None;
            self.timers.tlp = None;
            self.timers.reorder = None;
        } else if advanced {
            self.arm_retransmit(now);
        }
    }

    /// Loss found while all was well: fast recovery until what is sent now
    /// is acknowledged (RFC 6675 RecoveryPoint).
    pub(super) fn enter_fast_recovery(&mut self, now: Instant, in_flight: usize) {
        self.counters.fast_recoveries += 1;
        self.cc.on_congestion_event(now, in_flight);
        self.recovery = Recovery::Fast { high: self.snd_max };
        self.recovery_quota = self.cc.recovery_quota(&RecoveryAck {
            delivered: 0,
            in_flight: self.sb.in_flight() as usize,
            safe: false,
        });
    }

    /// The payload (and FIN) of an acceptable segment, with what the NIC
    /// did to it.
    pub(super) fn take_data(
        &mut self,
        now: Instant,
        seq: SeqNumber,
        payload: &[u8],
        mark: Mark,
        fin: bool,
    ) {
        if fin {
            let at = seq + payload.len();
            if self.peer_fin.is_none() && self.state.receives() {
                self.peer_fin = Some(at);
            }
        }
        if !payload.is_empty() && self.state.receives() {
            // Trim what lies before RCV.NXT in sequence space first, so the
            // offset conversion never sees a number before the stream.
            let nxt = self.rcv_nxt();
            let skip = ((nxt - seq).max(0) as usize).min(payload.len());
            if skip > 0 {
                self.note_duplicate(seq, skip);
            }
            let rest = &payload[skip..];
            // Data beyond the FIN is the peer's error; it is not taken.
            let rest = match self.peer_fin {
                Some(f) => &rest[..rest.len().min((f - (seq + skip)).max(0) as usize)],
                None => rest,
            };
            if !rest.is_empty() {
                let at = self.recvq.next() + ((seq + skip) - nxt) as u64;
                let hole_before = self.recvq.has_out_of_order();
                let r = self.recvq.insert(at, rest, mark);
                self.counters.ooo_dropped += (r.dropped > 0) as u64;
                if r.out_of_order {
                    self.counters.out_of_order += 1;
                    self.counters.marked_out_of_order += u64::from(mark != Mark::Plain);
                }
                self.counters.bytes_received += r.advanced as u64;
                if r.advanced > 0 {
                    self.measure_reads(now);
                }
                if r.out_of_order || r.duplicate || hole_before || r.dropped > 0 {
                    // RFC 5681 4.2: out of order, or filling a hole: ACK now.
                    // RFC 9293 3.10.7.4: data beyond the window (a zero
                    // window's probe) is answered with an ACK at once, which
                    // tells the peer the window (Linux tcp_data_queue).
                    self.ack.now = true;
                    self.ack.immediate = true;
                } else if r.advanced > 0 {
                    // A segment the NIC coalesced (GRO) counts as the
                    // full-sized segments it held (Linux acks once more than
                    // one MSS arrived unacknowledged).
                    let held = self.segments_held(rest.len());
                    self.ack.unacked_segments = self.ack.unacked_segments.saturating_add(held);
                    // RFC 5681 4.2 / RFC 9293 3.8.6.3: every second segment.
                    if !self.opts.delayed_ack
                        || self.ack.quick > 0
                        || self.ack.unacked_segments >= 2
                    {
                        self.ack.now = true;
                    } else if self.timers.delack.is_none() {
                        self.timers.delack = Some(now + limits::DELAYED_ACK);
                    }
                }
                if r.advanced > 0 {
                    if self.read_shut {
                        let n = self.recvq.readable();
                        self.recvq.consume(n);
                    }
                    self.wake = true;
                }
            } else if skip == 0 && !fin {
                self.ack.now = true;
            }
        }
        self.reach_fin(now);
    }

    /// The peer's FIN, once every byte before it is here.
    fn reach_fin(&mut self, now: Instant) {
        let Some(f) = self.peer_fin else { return };
        if self.peer_fin_reached || self.rcv_nxt() != f {
            if self.peer_fin_reached && self.state == State::TimeWait {
                // A retransmitted FIN: ACK it and restart 2MSL (RFC 9293).
                self.ack.now = true;
                self.timers.close = Some(now + limits::TIME_WAIT);
            }
            return;
        }
        self.recvq.advance_control();
        self.peer_fin_reached = true;
        self.ack.now = true;
        self.wake = true;
        match self.state {
            State::Established => self.state = State::CloseWait,
            State::FinWait1 => {
                if matches!(self.fin, Fin::Sent(s) if self.snd_una.gt(s)) {
                    self.enter_time_wait(now);
                } else {
                    self.state = State::Closing;
                }
            }
            State::FinWait2 => self.enter_time_wait(now),
            _ => {}
        }
    }
}
