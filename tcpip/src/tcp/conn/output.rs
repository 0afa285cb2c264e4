//! What the connection sends: its SYN or SYN-ACK, retransmissions of what
//! was lost, new data within the congestion and peer windows, probes and
//! ACKs (RFC 9293 3.8.6 and 3.10; RFC 5681; RFC 6675 NextSeg; RFC 6937).

use super::*;
use crate::tcp::scoreboard::Transmit;
use capnet_wire::tcp::Flags;

/// A segment's payload: bytes of the send queue, copied by whoever builds
/// the frame (one copy, queue to frame).
#[derive(Clone, Copy)]
pub struct Payload<'a> {
    queue: Option<&'a SendQueue>,
    offset: usize,
    len: usize,
}

impl<'a> Payload<'a> {
    /// No payload.
    pub fn empty() -> Payload<'a> {
        Payload {
            queue: None,
            offset: 0,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies the payload into `dst` (exactly [`len`](Self::len) bytes).
    pub fn copy_to(&self, dst: &mut [u8]) {
        if let Some(queue) = self.queue {
            queue.read(self.offset, &mut dst[..self.len]);
        }
    }

    /// The stream offset of the first byte (for offload hooks).
    pub fn stream_offset(&self, acked_before: u64) -> u64 {
        acked_before + self.offset as u64
    }
}

/// Where segments go: the IP layer below.
pub trait Sink {
    /// Sends one segment of `flow`. False: no room now; the connection
    /// keeps it for a later output.
    fn segment(&mut self, flow: &Flow, h: &Header, payload: Payload<'_>) -> bool;
}

impl Conn {
    /// Sends what is due now; returns the segments sent.
    pub fn output(&mut self, now: Instant, sink: &mut impl Sink) -> usize {
        self.sink_refused = false;
        let sent = self.output_inner(now, sink);
        // What is left is held back by a window or Nagle until something
        // changes; a full device is retried at the next poll.
        self.send_blocked = !self.sink_refused;
        sent
    }

    fn output_inner(&mut self, now: Instant, sink: &mut impl Sink) -> usize {
        let mut sent = 0;
        match self.state {
            State::Closed => return 0,
            State::SynSent | State::SynReceived => {
                if self.snd_nxt == self.iss && self.send_syn(now, sink) {
                    sent += 1;
                }
                return sent;
            }
            State::TimeWait => {}
            _ => {
                sent += self.send_probe(now, sink);
                sent += self.send_retransmissions(now, sink);
                sent += self.send_new(now, sink);
            }
        }
        if self.ack.now && self.send_ack(now, sink) {
            sent += 1;
        }
        sent
    }

    /// The SYN (SYN-SENT) or SYN-ACK (SYN-RECEIVED) with our options.
    fn send_syn(&mut self, now: Instant, sink: &mut impl Sink) -> bool {
        let synack = self.state == State::SynReceived;
        let flags = if synack {
            Flags::SYN | Flags::ACK
        } else {
            Flags::SYN
        };
        let mut h = self.header(flags, self.iss, now);
        if !synack {
            h.ack = SeqNumber(0);
            if let Some(ts) = h.timestamp.as_mut() {
                ts.1 = 0;
            }
        }
        h.mss = Some(self.our_mss.min(u16::MAX as usize) as u16);
        h.sack_permitted = self.neg.sack;
        if self.neg.rcv_wscale > 0 || !synack {
            h.window_scale = Some(self.neg.rcv_wscale);
        }
        // RFC 7323 2.2: the window in a SYN is never scaled.
        h.window = self.recvq.window().min(65535) as u16;
        if !self.emit(sink, &h, 0, 0) {
            return false;
        }
        self.snd_nxt = self.iss + 1u32;
        self.snd_max = self.snd_max.max(self.snd_nxt);
        if synack {
            self.ack.rcv_adv = self.rcv_nxt() + usize::from(h.window);
            self.ack.last_sent = self.rcv_nxt();
        }
        if self.timers.rto.is_none_or(|t| t <= now) {
            self.timers.rto = Some(now + self.rtt.rto());
        }
        self.last_tx = now;
        true
    }

    /// Sequence numbers of data and FIN sent, beyond SND.UNA.
    fn data_end(&self) -> SeqNumber {
        self.snd_una + self.sendq.len()
    }

    /// The FIN goes out once every data byte has: it occupies this number.
    fn fin_seq(&self) -> Option<SeqNumber> {
        match self.fin {
            Fin::None => None,
            Fin::Queued => Some(self.data_end()),
            Fin::Sent(s) => Some(s),
        }
    }

    /// Sends `[seq, seq + len)` (data, and the FIN if it lies inside).
    fn send_range(
        &mut self,
        now: Instant,
        sink: &mut impl Sink,
        seq: SeqNumber,
        len: usize,
        kind: Transmit,
    ) -> bool {
        let fin_here = self.fin_seq().filter(|f| f.ge(seq) && f.lt(seq + len));
        let data_len = if fin_here.is_some() { len - 1 } else { len };
        let mut flags = Flags::ACK;
        if fin_here.is_some() {
            flags = flags | Flags::FIN;
        }
        let offset = (seq - self.snd_una).max(0) as usize;
        if data_len > 0 && offset + data_len == self.sendq.len() {
            flags = flags | Flags::PSH;
        }
        let h = self.header(flags, seq, now);
        if !self.emit(sink, &h, offset, data_len) {
            return false;
        }
        if let Some(f) = fin_here {
            self.fin = Fin::Sent(f);
            match self.state {
                State::Established => self.state = State::FinWait1,
                State::CloseWait => self.state = State::LastAck,
                _ => {}
            }
        }
        let _ = self.sb.on_transmit(seq, len as u32, now, kind);
        let end = seq + len;
        if self.snd_nxt.lt(end) {
            self.snd_nxt = end;
        }
        self.snd_max = self.snd_max.max(end);
        self.last_tx = now;
        if kind == Transmit::Retransmit {
            self.counters.retransmits += 1;
        }
        if self.timers.rto.is_none() {
            self.arm_retransmit(now);
        }
        true
    }

    /// RFC 6675 NextSeg (1): lost segments first, within the congestion
    /// window (PRR's quota during fast recovery).
    fn send_retransmissions(&mut self, now: Instant, sink: &mut impl Sink) -> usize {
        let mss = self.effective_mss();
        let mut sent = 0;
        while let Some((seq, len)) = self.sb.next_retransmit(mss as u32) {
            let len = len as usize;
            if !self.congestion_allows(len) {
                break;
            }
            if !self.send_range(now, sink, seq, len, Transmit::Retransmit) {
                break;
            }
            self.spend_quota(len);
            if self.ts_first_retransmit.is_none() && self.neg.timestamps {
                self.ts_first_retransmit = Some(self.ts_val(now));
            }
            sent += 1;
        }
        sent
    }

    /// Whether the congestion state lets `len` more bytes into the network.
    fn congestion_allows(&self, len: usize) -> bool {
        match self.recovery {
            Recovery::Fast { .. } => self.recovery_quota >= len.min(self.effective_mss()),
            _ => {
                let in_flight = self.sb.in_flight() as usize;
                in_flight + len <= self.cc.cwnd() || in_flight == 0
            }
        }
    }

    fn spend_quota(&mut self, len: usize) {
        if matches!(self.recovery, Recovery::Fast { .. }) {
            self.recovery_quota = self.recovery_quota.saturating_sub(len);
            self.cc.on_sent(len);
        }
    }

    /// New data (and our FIN) within both windows, by Nagle's and the
    /// sender SWS rules (RFC 9293 3.8.6.2.1).
    fn send_new(&mut self, now: Instant, sink: &mut impl Sink) -> usize {
        let mss = self.effective_mss();
        let mut sent = 0;
        self.cwnd_limited = false;
        if self.snd_una == self.snd_max && self.data_end().gt(self.snd_nxt) && self.synchronized {
            // RFC 7661 / Linux tcp_cwnd_restart: a window is stale after idle.
            let rto = self.rtt.rto();
            if now.since(self.last_tx) > rto {
                self.cc.on_idle_restart(now, rto, self.last_tx);
            }
        }
        loop {
            let unsent_data = (self.data_end() - self.snd_nxt).max(0) as usize;
            let fin_due = self.fin == Fin::Queued && unsent_data == 0;
            if unsent_data == 0 && !fin_due {
                break;
            }
            let wnd_room = ((self.snd_una + self.snd_wnd) - self.snd_nxt).max(0) as usize;
            let mut len = unsent_data.min(mss).min(wnd_room);
            if fin_due {
                len = 0;
            }
            let in_flight = self.sb.in_flight() as usize;
            let cwnd_room = match self.recovery {
                Recovery::Fast { .. } => self.recovery_quota,
                _ => self.cc.cwnd().saturating_sub(in_flight),
            };
            if len > cwnd_room && in_flight > 0 {
                self.cwnd_limited = true;
                len = cwnd_room;
                if len < mss {
                    break;
                }
            }
            let unacked = self.snd_nxt != self.snd_una;
            if len == 0 && !fin_due {
                if wnd_room == 0 && !unacked {
                    self.arm_persist(now);
                }
                break;
            }
            if len < mss && len < unsent_data {
                // Window- or cwnd-limited to a runt: wait unless it is half
                // the largest window the peer ever offered (SWS avoidance).
                if len < self.max_snd_wnd / 2 || unacked {
                    if !unacked {
                        // Nothing in flight will bring an ACK: if the
                        // window update that would end the wait was lost,
                        // only a probe asks for it again (RFC 9293
                        // 3.8.6.2.1's override timer; Linux's probe timer).
                        self.arm_persist(now);
                    }
                    break;
                }
            }
            if len < mss
                && len == unsent_data
                && unacked
                && !self.opts.no_delay
                && self.fin != Fin::Queued
            {
                // Nagle (RFC 896): one runt in flight at a time.
                break;
            }
            let with_fin = self.fin == Fin::Queued && len == unsent_data;
            let seq_len = len + usize::from(with_fin);
            let seq = self.snd_nxt;
            if !self.send_range(now, sink, seq, seq_len, Transmit::New) {
                break;
            }
            self.spend_quota(len);
            sent += 1;
        }
        if sent > 0 {
            // RFC 8985 7.2: the probe timer restarts after new data is sent,
            // for the whole burst (Linux tcp_write_xmit). Armed with the
            // first segment only, a burst that began with nothing in flight
            // would keep a lone segment's allowance for a delayed ACK: a
            // PTO past the RTO, so no probe for its tail.
            self.arm_loss_probe(now);
        }
        sent
    }

    /// Arms the persist timer if it is not running.
    fn arm_persist(&mut self, now: Instant) {
        if self.timers.persist.is_none() {
            let backoff = self
                .rtt
                .rto()
                .clamp(limits::PERSIST_MIN, limits::PERSIST_MAX);
            self.timers.persist = Some(now + backoff);
        }
    }

    /// A zero-window, tail-loss or keep-alive probe that is due.
    fn send_probe(&mut self, now: Instant, sink: &mut impl Sink) -> usize {
        let Some(probe) = self.probe_due.take() else {
            return 0;
        };
        let sent = match probe {
            Probe::ZeroWindow => {
                // Linux's tcp_xmit_probe_skb: `<SEQ=SND.UNA-1>` without data
                // makes the peer ACK with its window. A byte of new data
                // (RFC 9293 3.8.6.1's probe) would count as in flight and
                // arm the retransmission and tail-loss timers, whose
                // firings would then probe without the persist backoff.
                self.counters.zero_window_probes += 1;
                self.send_keepalive(now, sink)
            }
            Probe::KeepAlive => self.send_keepalive(now, sink),
            Probe::TailLoss => {
                self.counters.tail_loss_probes += 1;
                let unsent = (self.data_end() - self.snd_nxt).max(0) as usize;
                let wnd_room = ((self.snd_una + self.snd_wnd) - self.snd_nxt).max(0) as usize;
                let mss = self.effective_mss();
                if unsent > 0 && wnd_room > 0 {
                    let seq = self.snd_nxt;
                    let len = unsent.min(mss).min(wnd_room);
                    let sent = self.send_range(now, sink, seq, len, Transmit::New);
                    if sent {
                        self.sb.on_tlp_sent(seq + len, false);
                    }
                    sent
                } else {
                    // RFC 8985 7.3: else the last segment sent.
                    let len = ((self.snd_max - self.snd_una).max(0) as usize).min(mss);
                    let seq = self.snd_max - len;
                    let sent = len > 0 && self.send_range(now, sink, seq, len, Transmit::Probe);
                    if sent {
                        self.sb.on_tlp_sent(seq + len, true);
                    }
                    sent
                }
            }
        };
        usize::from(sent)
    }

    /// `<SEQ=SND.UNA-1><ACK=RCV.NXT>`: the peer must answer with an ACK.
    fn send_keepalive(&mut self, now: Instant, sink: &mut impl Sink) -> bool {
        let mut h = self.header(Flags::ACK, self.snd_una - 1u32, now);
        h.window = self.window_field();
        self.emit(sink, &h, 0, 0)
    }

    /// The ACK a segment just made due at once (out of order, or filling a
    /// hole), before the next segment is taken; the rest of the output
    /// waits for the next [`output`](Self::output). Returns whether one
    /// was sent.
    pub fn send_immediate_ack(&mut self, now: Instant, sink: &mut impl Sink) -> bool {
        if !std::mem::take(&mut self.ack.immediate) || !self.ack.now {
            return false;
        }
        if !self.synchronized || self.state == State::Closed {
            return false;
        }
        self.send_ack(now, sink)
    }

    /// A pure ACK (with SACK blocks when out-of-order data waits).
    fn send_ack(&mut self, now: Instant, sink: &mut impl Sink) -> bool {
        let h = self.header(Flags::ACK, self.snd_nxt, now);
        self.emit(sink, &h, 0, 0)
    }

    /// Fills in the window and SACK blocks, hands the segment to the sink
    /// and notes the ACK it carried.
    fn emit(&mut self, sink: &mut impl Sink, h: &Header, offset: usize, len: usize) -> bool {
        let mut h = *h;
        if !h.flags.syn() {
            h.window = self.window_field();
        }
        if self.neg.sack && h.flags.ack() && !h.flags.syn() {
            let base = self.irs + 1u32;
            for (start, end) in self.recvq.sack_blocks(capnet_wire::tcp::MAX_SACK_BLOCKS) {
                h.push_sack((base + start as u32, base + end as u32));
            }
        }
        let payload = Payload {
            queue: Some(&self.sendq),
            offset,
            len,
        };
        if !sink.segment(&self.flow, &h, payload) {
            self.sink_refused = true;
            return false;
        }
        self.counters.segs_out += 1;
        if h.flags.ack() {
            self.ack.now = false;
            self.ack.immediate = false;
            self.ack.unacked_segments = 0;
            self.ack.quick = self.ack.quick.saturating_sub(1);
            self.ack.last_sent = h.ack;
            self.timers.delack = None;
        }
        true
    }

    /// The window field: the right edge never moves left (RFC 9293
    /// 3.8.6.2.2), and moves right only by worthwhile amounts (receiver SWS
    /// avoidance).
    fn window_field(&mut self) -> u16 {
        let nxt = self.rcv_nxt();
        let room = self.recvq.window();
        let mut edge = nxt + room;
        let step = (self.recvq.limit() / 2).min(self.our_mss);
        if edge.lt(self.ack.rcv_adv)
            || (edge - self.ack.rcv_adv) < step as i32 && self.ack.rcv_adv.gt(nxt)
        {
            edge = self.ack.rcv_adv.max(nxt);
        }
        let wnd = (edge - nxt).max(0) as usize;
        let field = (wnd >> self.neg.rcv_wscale).min(65535);
        self.ack.rcv_adv = self.ack.rcv_adv.max(nxt + (field << self.neg.rcv_wscale));
        field as u16
    }

    /// After the application read: a window update if the window grew
    /// enough to matter (Linux `__tcp_cleanup_rbuf`).
    pub(super) fn window_opened(&mut self) {
        if !self.synchronized || !self.state.receives() {
            return;
        }
        let edge = self.rcv_nxt() + self.recvq.window();
        let grown = (edge - self.ack.rcv_adv).max(0) as usize;
        let advertised = self.advertised_window();
        if grown >= (2 * self.our_mss).min(self.recvq.limit() / 2)
            || (advertised < self.our_mss && grown >= self.our_mss.min(self.recvq.limit() / 2))
        {
            self.ack.now = true;
            self.wake = true;
        }
    }

    /// Whether output has anything to do (the layer above keeps a ready
    /// list rather than asking every connection).
    pub fn wants_output(&self) -> bool {
        match self.state {
            State::Closed => false,
            State::SynSent | State::SynReceived => self.snd_nxt == self.iss,
            _ => {
                self.ack.now
                    || self.probe_due.is_some()
                    || (!self.send_blocked
                        && (self.sb.next_retransmit(1).is_some()
                            || self.data_end().gt(self.snd_nxt)
                            || self.fin == Fin::Queued))
            }
        }
    }
}
