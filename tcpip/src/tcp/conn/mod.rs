//! One TCP connection (RFC 9293): its state, its queues and the machinery
//! that decides what it sends. Sans-IO: segments and the time come in
//! (`input.rs`), segments go out through a [`Sink`] (`output.rs`), and
//! deadlines are asked for (`timers.rs`); the application's calls are
//! `socket.rs`, buffer autotuning `tune.rs`.
//!
//! Sequence numbers become 64-bit stream offsets once, at the edge
//! (`StreamBase`): the queues, the scoreboard's callers and the
//! application count bytes, never wrapping `u32`s.

mod input;
mod output;
mod socket;
mod timers;
mod tune;

use super::cc::{Algorithm, CongestionControl};
use super::mark::Mark;
use super::recvq::RecvQueue;
use super::rtt::RttEstimator;
use super::scoreboard::Scoreboard;
use super::sendq::SendQueue;
use crate::time::Instant;
use capnet_wire::tcp::{Flow, Header, SeqNumber};
use std::time::Duration;

pub use input::Reply;
pub use output::{Payload, Sink};
pub use timers::Timers;

/// RFC 9293 3.3.2, without LISTEN (listeners are not connections here)
/// and CLOSED (a closed connection is gone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
    /// Finished: reset, timed out, or both FINs acknowledged. The layer
    /// above removes it once the application has seen the end.
    Closed,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::SynSent => "syn-sent",
            State::SynReceived => "syn-received",
            State::Established => "established",
            State::FinWait1 => "fin-wait-1",
            State::FinWait2 => "fin-wait-2",
            State::CloseWait => "close-wait",
            State::Closing => "closing",
            State::LastAck => "last-ack",
            State::TimeWait => "time-wait",
            State::Closed => "closed",
        }
    }

    /// Whether the peer may still send us data.
    fn receives(self) -> bool {
        matches!(self, State::Established | State::FinWait1 | State::FinWait2)
    }

    /// Whether our send side is still open for the application.
    fn sends(self) -> bool {
        matches!(
            self,
            State::SynSent | State::SynReceived | State::Established | State::CloseWait
        )
    }
}

/// Why a connection ended other than by an orderly close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnError {
    /// The peer answered our SYN with a reset.
    Refused,
    /// The peer reset an established connection.
    Reset,
    /// Retransmissions (or keep-alive probes) went unanswered too long.
    TimedOut,
    /// The application aborted it.
    Aborted,
}

/// Per-socket choices (setsockopt).
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// TCP_NODELAY: no Nagle.
    pub no_delay: bool,
    /// Delayed ACKs (TCP_QUICKACK off).
    pub delayed_ack: bool,
    /// SO_KEEPALIVE with TCP_KEEPIDLE.
    pub keep_alive: Option<Duration>,
    pub send_buffer: usize,
    pub recv_buffer: usize,
    /// Ceilings autotuning may grow the queues to, when the binding grants
    /// it (`buffers_wanted`, `grow_buffers`); at or below the sizes above,
    /// the queues stay as they are.
    pub send_buffer_max: usize,
    pub recv_buffer_max: usize,
    pub congestion: Algorithm,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            no_delay: false,
            delayed_ack: true,
            keep_alive: None,
            send_buffer: 256 * 1024,
            recv_buffer: 256 * 1024,
            send_buffer_max: 0,
            recv_buffer_max: 0,
            congestion: Algorithm::default(),
        }
    }
}

impl Options {
    /// Our window scale: one that covers the largest receive queue this
    /// connection may grow to.
    pub(crate) fn wscale(&self) -> u8 {
        wscale_for(self.recv_buffer.max(self.recv_buffer_max))
    }
}

/// Limits of the machine, Linux's defaults.
pub mod limits {
    use std::time::Duration;
    /// tcp_syn_retries.
    pub const SYN_RETRIES: u32 = 6;
    /// tcp_synack_retries.
    pub const SYNACK_RETRIES: u32 = 5;
    /// tcp_retries2: retransmissions of data before giving up.
    pub const DATA_RETRIES: u32 = 15;
    /// TCP_TIMEWAIT_LEN.
    pub const TIME_WAIT: Duration = Duration::from_secs(60);
    /// tcp_fin_timeout, for a FIN-WAIT-2 the application has let go of.
    pub const FIN_TIMEOUT: Duration = Duration::from_secs(60);
    /// TCP_DELACK_MIN / TCP_ATO_MIN.
    pub const DELAYED_ACK: Duration = Duration::from_millis(40);
    /// tcp_keepalive_intvl and tcp_keepalive_probes.
    pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(75);
    pub const KEEPALIVE_PROBES: u32 = 9;
    /// The persist timer's bounds (RFC 9293 3.8.6.1).
    pub const PERSIST_MIN: Duration = Duration::from_millis(200);
    pub const PERSIST_MAX: Duration = Duration::from_secs(120);
    /// What a tail-loss probe waits beyond 2*SRTT (Linux TCP_TIMEOUT_MIN,
    /// two jiffies at HZ=1000).
    pub const PROBE_SLACK: Duration = Duration::from_millis(2);
    /// Quick ACKs at the start of a connection (Linux TCP_MAX_QUICKACKS).
    pub const QUICK_ACKS: u32 = 16;
    /// RFC 7323 5.5: a timestamp older than 24 days is not used for PAWS.
    pub const PAWS_IDLE: Duration = Duration::from_secs(24 * 24 * 3600);
    /// Challenge ACKs per second per connection (RFC 5961 7).
    pub const CHALLENGE_ACKS_PER_SEC: u32 = 10;
}

/// What the connection negotiated.
#[derive(Clone, Copy, Debug, Default)]
pub struct Negotiated {
    /// Our MSS for the segments we send (the peer's announced MSS, bounded
    /// by the path).
    pub send_mss: usize,
    /// Shift applied to windows we receive / we send (RFC 7323 2).
    pub snd_wscale: u8,
    pub rcv_wscale: u8,
    pub sack: bool,
    pub timestamps: bool,
}

/// Timestamps state (RFC 7323 4.3).
#[derive(Clone, Copy, Debug, Default)]
struct Ts {
    /// TS.Recent and when it was taken.
    recent: u32,
    recent_at: Instant,
    /// Added to our clock in TSval, per connection (RFC 7323 5.4).
    offset: u32,
}

/// Where loss recovery stands (Linux's CA states, reduced).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Recovery {
    Open,
    /// Fast recovery until `high` (RFC 6675 RecoveryPoint) is acknowledged.
    Fast {
        high: SeqNumber,
    },
    /// After a retransmission timeout, until `high` is acknowledged.
    Loss {
        high: SeqNumber,
    },
}

/// Counters of one connection (what `ss -ti` shows).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnCounters {
    /// Segments received; a segment the NIC coalesced counts as the MSS-
    /// sized segments it holds.
    pub segs_in: u64,
    pub segs_out: u64,
    pub bytes_acked: u64,
    pub bytes_received: u64,
    pub retransmits: u64,
    pub fast_recoveries: u64,
    pub timeouts: u64,
    pub tail_loss_probes: u64,
    pub dsacks: u64,
    pub challenge_acks: u64,
    pub paws_drops: u64,
    pub out_of_window: u64,
    pub ooo_dropped: u64,
    /// Segments that waited for a hole before them.
    pub out_of_order: u64,
    /// Of those, ones whose payload a NIC had marked (decrypted, placed).
    pub marked_out_of_order: u64,
    pub zero_window_probes: u64,
}

impl ConnCounters {
    /// Adds `o` field by field (totals over connections). Destructured, so
    /// that a new counter cannot be left out of the totals.
    pub fn add(&mut self, o: &ConnCounters) {
        let ConnCounters {
            segs_in,
            segs_out,
            bytes_acked,
            bytes_received,
            retransmits,
            fast_recoveries,
            timeouts,
            tail_loss_probes,
            dsacks,
            challenge_acks,
            paws_drops,
            out_of_window,
            ooo_dropped,
            out_of_order,
            marked_out_of_order,
            zero_window_probes,
        } = *o;
        self.segs_in += segs_in;
        self.segs_out += segs_out;
        self.bytes_acked += bytes_acked;
        self.bytes_received += bytes_received;
        self.retransmits += retransmits;
        self.fast_recoveries += fast_recoveries;
        self.timeouts += timeouts;
        self.tail_loss_probes += tail_loss_probes;
        self.dsacks += dsacks;
        self.challenge_acks += challenge_acks;
        self.paws_drops += paws_drops;
        self.out_of_window += out_of_window;
        self.ooo_dropped += ooo_dropped;
        self.out_of_order += out_of_order;
        self.marked_out_of_order += marked_out_of_order;
        self.zero_window_probes += zero_window_probes;
    }
}

/// The acknowledgment we owe.
#[derive(Clone, Copy, Debug, Default)]
struct AckState {
    /// Send one with the next output, whatever else goes.
    now: bool,
    /// The one owed must leave before the next segment is taken, not with
    /// the output after a batch of them: each out-of-order segment and
    /// each hole filled gets its own (RFC 5681 4.2), so that the sender
    /// sees every step of the SACK scoreboard and one lost ACK does not
    /// hide a whole batch's news (Linux answers each segment as it comes).
    immediate: bool,
    /// Full-sized segments received since our last ACK.
    unacked_segments: u32,
    /// ACKs left to send without delay (connection start, after a hole).
    quick: u32,
    /// The right edge of the window last advertised (never moved left).
    rcv_adv: SeqNumber,
    /// RCV.NXT in the last ACK we sent (RFC 7323 4.3 Last.ACK.sent).
    last_sent: SeqNumber,
    /// Challenge ACKs sent in the current second.
    challenges: u32,
    challenge_second: u64,
}

/// Our FIN's progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fin {
    None,
    /// The application shut down writing; the FIN follows the data.
    Queued,
    /// Sent with this sequence number.
    Sent(SeqNumber),
}

pub struct Conn {
    pub flow: Flow,
    state: State,
    error: Option<ConnError>,
    opts: Options,
    neg: Negotiated,
    /// The MSS we announced (what the path lets us receive).
    our_mss: usize,

    iss: SeqNumber,
    snd_una: SeqNumber,
    snd_nxt: SeqNumber,
    /// Highest sequence number sent plus one.
    snd_max: SeqNumber,
    /// The peer's window, scaled, and the segment that last set it.
    snd_wnd: usize,
    snd_wl1: SeqNumber,
    snd_wl2: SeqNumber,
    max_snd_wnd: usize,
    sendq: SendQueue,
    fin: Fin,

    irs: SeqNumber,
    recvq: RecvQueue,
    /// The peer's FIN: its sequence number once seen, and whether reached.
    peer_fin: Option<SeqNumber>,
    peer_fin_reached: bool,
    /// The application shut down reading: arriving data is dropped.
    read_shut: bool,

    ts: Ts,
    rtt: RttEstimator,
    cc: CongestionControl,
    sb: Scoreboard,
    recovery: Recovery,
    ack: AckState,
    pub(crate) timers: Timers,
    /// Retransmissions (SYN, data) or keep-alive probes since progress.
    retries: u32,
    /// When the last segment arrived and when data was last sent.
    last_rx: Instant,
    last_tx: Instant,
    pub counters: ConnCounters,
    /// The application should look: readable, writable or ended.
    pub(crate) wake: bool,
    /// The application let go of it (close): it lives on only to finish
    /// the close, and frees itself.
    pub(crate) orphan: bool,
    /// The handshake completed once.
    synchronized: bool,
    /// Our TSval on the first retransmission of a timeout (for Eifel).
    ts_first_retransmit: Option<u32>,
    /// PRR's sending quota during fast recovery (bytes).
    recovery_quota: usize,
    /// The last output stopped at the congestion window with data waiting.
    cwnd_limited: bool,
    /// Send one segment beyond the window (zero-window probe, TLP).
    probe_due: Option<Probe>,
    /// The last output sent all it could: what is left waits for the peer's
    /// window, the congestion window or Nagle, and only a segment, a timer
    /// or a socket call can change that. Without it a connection with data
    /// held back would stay on the ready list and make every poll "due now".
    send_blocked: bool,
    /// The sink refused a segment in the current output (device full).
    sink_refused: bool,
    /// SYN-RECEIVED was reached from SYN-SENT (both SYNs crossed), so the
    /// peer's SYN-ACK may complete the handshake.
    simultaneous_open: bool,
    /// Buffer autotuning's measurements.
    tune: tune::Tune,
}

/// A segment due outside the usual rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    /// One byte beyond a zero window (RFC 9293 3.8.6.1).
    ZeroWindow,
    /// A tail-loss probe (RFC 8985 7.3).
    TailLoss,
    /// A keep-alive: an old sequence number asks for an ACK (RFC 9293 3.8.4).
    KeepAlive,
}

impl Conn {
    fn new(
        flow: Flow,
        opts: Options,
        our_mss: usize,
        iss: SeqNumber,
        ts_offset: u32,
        now: Instant,
    ) -> Conn {
        Conn {
            flow,
            state: State::SynSent,
            error: None,
            opts,
            neg: Negotiated {
                send_mss: 536,
                ..Negotiated::default()
            },
            our_mss,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            snd_wl1: SeqNumber(0),
            snd_wl2: SeqNumber(0),
            max_snd_wnd: 0,
            sendq: SendQueue::new(opts.send_buffer),
            fin: Fin::None,
            irs: SeqNumber(0),
            recvq: RecvQueue::new(opts.recv_buffer, 0),
            peer_fin: None,
            peer_fin_reached: false,
            read_shut: false,
            ts: Ts {
                offset: ts_offset,
                ..Ts::default()
            },
            rtt: RttEstimator::new(),
            cc: CongestionControl::new(opts.congestion, our_mss, now),
            sb: Scoreboard::new(),
            recovery: Recovery::Open,
            ack: AckState {
                quick: limits::QUICK_ACKS,
                ..AckState::default()
            },
            timers: Timers::default(),
            retries: 0,
            last_rx: now,
            last_tx: now,
            counters: ConnCounters::default(),
            wake: false,
            orphan: false,
            synchronized: false,
            ts_first_retransmit: None,
            recovery_quota: 0,
            cwnd_limited: false,
            probe_due: None,
            send_blocked: false,
            sink_refused: false,
            simultaneous_open: false,
            tune: tune::Tune::default(),
        }
    }

    /// An active open: SYN-SENT, the SYN due at the next output.
    pub fn connect(
        flow: Flow,
        opts: Options,
        our_mss: usize,
        iss: SeqNumber,
        ts_offset: u32,
        now: Instant,
    ) -> Conn {
        let mut c = Conn::new(flow, opts, our_mss, iss, ts_offset, now);
        c.neg.timestamps = true;
        c.neg.sack = true;
        c.neg.rcv_wscale = opts.wscale();
        c
    }

    /// A passive open: a listener's SYN made it; SYN-RECEIVED, the SYN-ACK
    /// due at the next output.
    pub fn accept(
        flow: Flow,
        opts: Options,
        our_mss: usize,
        iss: SeqNumber,
        ts_offset: u32,
        syn: &Header,
        now: Instant,
    ) -> Conn {
        let mut c = Conn::new(flow, opts, our_mss, iss, ts_offset, now);
        c.state = State::SynReceived;
        c.neg.timestamps = true;
        c.neg.sack = true;
        if syn.window_scale.is_some() {
            c.neg.rcv_wscale = opts.wscale();
        }
        c.take_peer_syn(now, syn);
        c
    }

    /// A connection a SYN cookie vouched for: the ACK `ack` completes the
    /// handshake whose SYN-ACK we did not keep (RFC 4987 3.6).
    pub fn from_cookie(
        flow: Flow,
        opts: Options,
        mss: usize,
        ack: &Header,
        cookie_opts: Option<super::cookie::CookieOptions>,
        ts_offset: u32,
        now: Instant,
    ) -> Conn {
        let iss = ack.ack - 1u32;
        let mut c = Conn::new(flow, opts, mss, iss, ts_offset, now);
        c.irs = ack.seq - 1u32;
        c.recvq = RecvQueue::new(opts.recv_buffer, 0);
        c.snd_una = ack.ack;
        c.snd_nxt = ack.ack;
        c.snd_max = ack.ack;
        c.neg.send_mss = mss;
        if let Some(o) = cookie_opts {
            c.neg.timestamps = true;
            c.neg.sack = o.sack;
            if let Some(shift) = o.wscale {
                c.neg.snd_wscale = shift;
                c.neg.rcv_wscale = opts.wscale();
            }
            if let Some((val, _)) = ack.timestamp {
                c.ts.recent = val;
                c.ts.recent_at = now;
            }
        }
        c.cc.set_mss(c.effective_mss());
        c.state = State::Established;
        c.synchronized = true;
        c.snd_wnd = usize::from(ack.window) << c.neg.snd_wscale;
        c.max_snd_wnd = c.snd_wnd;
        c.snd_wl1 = ack.seq;
        c.snd_wl2 = ack.ack;
        let syn_window = opts.recv_buffer.min(65535);
        c.ack.rcv_adv = c.rcv_nxt() + syn_window;
        c.ack.last_sent = c.rcv_nxt();
        c.wake = true;
        c
    }

    /// The sequence numbers of the first data byte each way (sent,
    /// received), once the handshake is done: where stream offset 0 is.
    pub fn first_data_seqs(&self) -> Option<(SeqNumber, SeqNumber)> {
        self.synchronized
            .then(|| (self.iss + 1u32, self.irs + 1u32))
    }

    /// Whether `seq` is in what we sent and the peer has not acknowledged.
    pub fn in_flight_contains(&self, seq: SeqNumber) -> bool {
        seq.ge(self.snd_una) && seq.lt(self.snd_max.max(self.snd_una + 1u32))
    }

    /// Path MTU discovery (RFC 1191 / RFC 8201) lowered the path's MTU:
    /// segments shrink, and what was in flight at the old size is sent
    /// again at the new one (Linux `tcp_simple_retransmit`).
    pub fn set_path_mtu(&mut self, now: Instant, mtu: usize) {
        let header = if self.flow.remote.is_ipv4() { 40 } else { 60 };
        let mss = mtu.saturating_sub(header).max(64);
        if mss >= self.our_mss.min(self.neg.send_mss) {
            return;
        }
        self.our_mss = mss;
        self.send_blocked = false;
        self.cc.set_mss(self.effective_mss());
        if self.snd_una != self.snd_max && self.synchronized {
            self.sb.on_rto(now);
        }
    }

    /// The sequence number a reset of ours carries.
    pub fn rst_seq(&self) -> SeqNumber {
        self.snd_nxt
    }

    /// TIME-WAIT is full: close now instead (counted by the layer).
    pub fn skip_time_wait(&mut self) {
        if self.state == State::TimeWait {
            self.finish(None);
        }
    }

    /// Whether a SYN may end TIME-WAIT as a new incarnation of the flow
    /// (RFC 6191 2, Linux `tcp_timewait_state_process`): its timestamp is
    /// newer than TS.Recent (or equal, with a sequence number beyond
    /// RCV.NXT); without timestamps on both sides, its sequence number is
    /// beyond RCV.NXT (RFC 1122 4.2.2.13). Anything else may be an old
    /// duplicate.
    pub fn time_wait_yields_to(&self, h: &Header) -> bool {
        let f = h.flags;
        if self.state != State::TimeWait || !f.syn() || f.ack() || f.rst() {
            return false;
        }
        let beyond = h.seq.gt(self.rcv_nxt());
        match h.timestamp {
            Some((val, _)) if self.neg.timestamps => {
                let newer = val.wrapping_sub(self.ts.recent) as i32;
                newer > 0 || (newer == 0 && beyond)
            }
            _ => beyond,
        }
    }

    /// Ends the connection, waking the application.
    fn finish(&mut self, error: Option<ConnError>) {
        if error.is_some() && self.error.is_none() {
            self.error = error;
        }
        self.state = State::Closed;
        self.timers = Timers::default();
        self.wake = true;
    }

    fn rcv_nxt(&self) -> SeqNumber {
        self.irs + 1u32 + (self.recvq.next() as u32)
    }

    /// The largest payload per segment: the peer's MSS within our path's
    /// room, less the options the next segment carries: timestamps, and
    /// the SACK blocks we owe (Linux `tcp_current_mss`; without this a
    /// full segment with SACK blocks would not fit the path).
    fn effective_mss(&self) -> usize {
        let ts = if self.neg.timestamps { 12 } else { 0 };
        (self.neg.send_mss.min(self.our_mss) - ts - self.sack_option_len()).max(64)
    }

    /// Bytes of the SACK option on our next segment (RFC 2018 3: NOP NOP
    /// kind length and 8 per block; 3 blocks fit beside timestamps, 4
    /// without).
    fn sack_option_len(&self) -> usize {
        if !self.neg.sack {
            return 0;
        }
        let fit = if self.neg.timestamps { 3 } else { 4 };
        match self.recvq.sack_block_count().min(fit) {
            0 => 0,
            n => 4 + 8 * n,
        }
    }

    fn ts_val(&self, now: Instant) -> u32 {
        (now.millis() as u32).wrapping_add(self.ts.offset)
    }

    /// A timeline a test or `status` can print.
    pub fn summary(&self) -> String {
        format!(
            "{} {} una={} nxt={} max={} wnd={} cwnd={} rto={:?} inflight={} lost={} recovery={:?} timers={:?} blocked={} retries={}",
            self.flow,
            self.state.name(),
            self.snd_una,
            self.snd_nxt,
            self.snd_max,
            self.snd_wnd,
            self.cc.cwnd(),
            self.rtt.rto(),
            self.sb.in_flight(),
            self.sb.lost_bytes(),
            self.recovery,
            self.timers,
            self.send_blocked,
            self.retries,
        )
    }
}

/// The window scale that lets a window cover `buffer` (RFC 7323 2.3),
/// at least Linux's 7 so that buffers can grow later.
pub(crate) fn wscale_for(buffer: usize) -> u8 {
    let mut shift = 0u8;
    while shift < 14 && (65535usize << shift) < buffer {
        shift += 1;
    }
    shift.max(7)
}

/// Helpers for the other modules.
impl Conn {
    fn header(&self, flags: capnet_wire::tcp::Flags, seq: SeqNumber, now: Instant) -> Header {
        let mut h = Header {
            src_port: self.flow.local.port(),
            dst_port: self.flow.remote.port(),
            seq,
            ack: self.rcv_nxt(),
            flags,
            ..Header::default()
        };
        if self.neg.timestamps {
            h.timestamp = Some((self.ts_val(now), self.ts.recent));
        }
        h
    }
}

#[cfg(test)]
mod tests;
