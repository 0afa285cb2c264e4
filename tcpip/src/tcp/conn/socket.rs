//! The socket calls: what the application asks of a connection (read,
//! write, shut down, abort, let go) and what it learns from it (state,
//! readiness, queues, round trip). Segments and timers are `input.rs`,
//! `output.rs` and `timers.rs`.

use super::{limits, Conn, ConnError, Fin, Mark, Negotiated, Options, State};
use crate::tcp::sendq::{SendQueue, SendRing};
use crate::time::Instant;
use std::time::Duration;

impl Conn {
    pub fn state(&self) -> State {
        self.state
    }

    pub fn error(&self) -> Option<ConnError> {
        self.error
    }

    pub fn negotiated(&self) -> Negotiated {
        self.neg
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    pub fn set_no_delay(&mut self, on: bool) {
        self.opts.no_delay = on;
        self.send_blocked = false;
    }

    pub fn set_keep_alive(&mut self, idle: Option<Duration>, now: Instant) {
        self.opts.keep_alive = idle;
        self.timers.keepalive = idle.map(|d| now + d);
    }

    /// Whether the handshake finished (data may flow).
    pub fn is_established(&self) -> bool {
        self.synchronized
    }

    /// Bytes the application may read now.
    pub fn readable(&self) -> usize {
        self.recvq.readable()
    }

    /// Whether the peer's stream has ended and every byte was read.
    pub fn read_eof(&self) -> bool {
        self.peer_fin_reached && self.recvq.readable() == 0
    }

    /// Room to write into.
    pub fn writable(&self) -> usize {
        if self.state.sends() && self.fin == Fin::None {
            self.sendq.room()
        } else {
            0
        }
    }

    /// The send queue's bound: TCP never retransmits further behind the
    /// newest byte it sent.
    pub fn send_buffer(&self) -> usize {
        self.sendq.limit()
    }

    /// The smoothed round-trip time and the smallest seen, once measured
    /// (what `ss -ti` shows as rtt and minrtt).
    pub fn rtt(&self) -> Option<(Duration, Duration)> {
        Some((self.rtt.srtt()?, self.rtt.min_rtt()?))
    }

    /// The congestion window in bytes.
    pub fn cwnd(&self) -> usize {
        self.cc.cwnd()
    }

    /// The receive queue's bound: the most the window ever offers.
    pub fn recv_buffer(&self) -> usize {
        self.recvq.limit()
    }

    /// Whether the peer's FIN has been taken (every byte before it too).
    pub fn peer_closed(&self) -> bool {
        self.peer_fin_reached
    }

    /// Whether the application may still write (no FIN queued or sent).
    pub fn may_send(&self) -> bool {
        self.state.sends() && self.fin == Fin::None
    }

    /// Bytes written and not yet acknowledged.
    pub fn send_queued(&self) -> usize {
        self.sendq.len()
    }

    /// Reads in-order bytes, whatever the NIC did to them, up to the first
    /// placed byte.
    pub fn read(&mut self, dst: &mut [u8]) -> usize {
        let n = self.recvq.read(dst);
        if n > 0 {
            self.window_opened();
        }
        n
    }

    /// The run of received bytes at the read point that share one mark:
    /// the mark, and how many bytes it holds ([`read`](Self::read) takes
    /// them, or [`consume`](Self::consume) if they were placed).
    pub fn front_run(&self) -> Option<(Mark, usize)> {
        self.recvq.front_run()
    }

    /// Drops `n` in-order bytes unread (placed ones are only taken so).
    pub fn consume(&mut self, n: usize) {
        self.recvq.consume(n);
        if n > 0 {
            self.window_opened();
        }
    }

    /// Queues bytes to send; returns how many fit (0 when the send side is
    /// closed or full).
    pub fn write(&mut self, data: &[u8]) -> usize {
        self.queue(|q| q.write(data))
    }

    /// Puts bytes in the send queue with `put` (how many it took), if the
    /// send side is open.
    fn queue(&mut self, put: impl FnOnce(&mut SendQueue) -> usize) -> usize {
        if !self.state.sends() || self.fin != Fin::None {
            return 0;
        }
        let n = put(&mut self.sendq);
        if n > 0 {
            self.send_blocked = false;
        }
        n
    }

    /// Keeps the bytes to send in the socket's up ring from now on, where
    /// the application writes them (`front`: the index of the next byte it
    /// writes); false while the queue still holds bytes of its own, or
    /// once its bound outgrew the ring (autotuning then moved it out).
    pub fn send_from_ring(&mut self, ring: Box<dyn SendRing>, front: u32, capacity: usize) -> bool {
        self.sendq.use_ring(ring, front, capacity)
    }

    /// Whether the bytes to send are in the socket's ring.
    pub fn sends_from_ring(&self) -> bool {
        self.sendq.in_ring()
    }

    /// The ring is going away: the queue copies what it holds there.
    pub fn send_from_own_queue(&mut self) {
        self.sendq.leave_ring();
    }

    /// Queues `n` more bytes of the ring (the ones after those queued);
    /// returns how many fit (0 when the send side is closed or full).
    pub fn take_from_ring(&mut self, n: usize) -> usize {
        self.queue(|q| q.take(n))
    }

    /// The ring index of the first unacknowledged byte, when the bytes are
    /// in the ring: its reader consumes everything before it, giving the
    /// application its space back.
    pub fn ring_front(&self) -> Option<u32> {
        self.sendq.ring_front()
    }

    /// Once after the send queue left the ring (autotuning grew it past the
    /// ring's capacity): the index before which the ring may have every
    /// byte back, the queue having copied what it held there.
    pub fn take_left_ring(&mut self) -> Option<u32> {
        self.sendq.take_left_ring()
    }

    /// Writes `bytes` over queued bytes from `offset` (from the first
    /// unacknowledged byte) on, as far as the queue goes; returns how many.
    /// What is sent or sent again from there is the new bytes.
    pub fn rewrite_queued(&mut self, offset: usize, bytes: &[u8]) -> usize {
        self.sendq.overwrite(offset, bytes)
    }

    /// Shuts the sending side: a FIN follows the queued data.
    pub fn shutdown_write(&mut self) {
        if self.fin == Fin::None && self.state.sends() {
            self.fin = Fin::Queued;
            self.send_blocked = false;
        }
        if self.state == State::SynSent {
            // Nothing reached the peer: the connection just ends.
            self.state = State::Closed;
            self.wake = true;
        }
    }

    /// The application let go: the engine alone finishes the connection.
    /// A FIN-WAIT-2 reached before that gets its timeout now, else a peer
    /// that acknowledged our FIN but never sends its own would hold the
    /// connection forever.
    pub(crate) fn orphan(&mut self, now: Instant) {
        self.orphan = true;
        if self.state == State::FinWait2 {
            self.arm_fin_timeout(now);
        }
    }

    pub(super) fn arm_fin_timeout(&mut self, now: Instant) {
        if self.timers.close.is_none() {
            self.timers.close = Some(now + limits::FIN_TIMEOUT);
        }
    }

    /// Shuts the receiving side: unread bytes and later data are dropped.
    pub fn shutdown_read(&mut self) {
        self.read_shut = true;
        let unread = self.recvq.readable();
        self.recvq.consume(unread);
    }

    /// Abortive close (SO_LINGER 0, or data unread at close, RFC 9293
    /// 3.10.4 / RFC 2525 2.17): a RST goes out if the peer knows us.
    pub fn abort(&mut self) -> bool {
        let send_rst = !matches!(self.state, State::SynSent | State::TimeWait | State::Closed);
        self.finish(Some(ConnError::Aborted));
        send_rst
    }
}
