//! Buffer autotuning, as Linux sizes a socket's buffers to its path
//! (`tcp_rcv_space_adjust`, `tcp_sndbuf_expand`). A connection starts with
//! its configured queues; when its application reads more in a round trip
//! than half the receive queue holds, or the congestion window outgrows
//! half the send queue, it asks for more, up to the ceilings in its
//! [`Options`](super::Options). It never takes more unasked: the binding
//! grants (and pays for) each step with [`Conn::grow_buffers`], so what a
//! connection may hold is always what was accounted for.

use super::Conn;
use crate::time::Instant;
use std::time::Duration;

/// The shortest interval reads are measured over (and the interval before
/// the first RTT sample): on a path faster than that, 200 us of reading is
/// still a fair picture of the rate.
const MIN_INTERVAL: Duration = Duration::from_micros(200);

/// What the receive side measured (Linux `rcvq_space`).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Tune {
    /// Start of the current measurement.
    since: Option<Instant>,
    /// The application's read offset then.
    read_from: u64,
    /// The most the application read in one round trip so far.
    space: usize,
}

impl Conn {
    /// Called as data arrives: once a round trip, notes how much the
    /// application read in it.
    pub(super) fn measure_reads(&mut self, now: Instant) {
        if self.opts.recv_buffer_max <= self.recvq.limit() {
            return;
        }
        let read_at = self.recvq.read_at();
        let Some(since) = self.tune.since else {
            self.tune.since = Some(now);
            self.tune.read_from = read_at;
            return;
        };
        let interval = self.rtt.srtt().unwrap_or(MIN_INTERVAL).max(MIN_INTERVAL);
        if now.since(since) < interval {
            return;
        }
        let read = usize::try_from(read_at - self.tune.read_from).unwrap_or(usize::MAX);
        self.tune.space = self.tune.space.max(read);
        self.tune.since = Some(now);
        self.tune.read_from = read_at;
    }

    /// The sizes (send, receive) the queues should grow to, when either is
    /// more than now. Steps are powers of two, so a connection asks a few
    /// times in its life rather than at every ACK.
    pub fn buffers_wanted(&self) -> Option<(usize, usize)> {
        let step = |need: usize, max: usize, now: usize| {
            need.checked_next_power_of_two()
                .unwrap_or(max)
                .min(max)
                .max(now)
        };
        let recv = step(
            2 * self.tune.space,
            self.opts.recv_buffer_max,
            self.recvq.limit(),
        );
        // Past a ring's capacity, the send queue leaves the ring.
        let send = step(
            2 * self.cc.cwnd(),
            self.opts.send_buffer_max,
            self.sendq.limit(),
        );
        (recv > self.recvq.limit() || send > self.sendq.limit()).then_some((send, recv))
    }

    /// Grows the queues to `send` and `recv` bytes (never shrinks them).
    pub fn grow_buffers(&mut self, send: usize, recv: usize) {
        if send > self.sendq.limit() {
            self.sendq.set_limit(send);
            // Room for the application to write into.
            self.wake = true;
        }
        if recv > self.recvq.limit() {
            self.recvq.set_limit(recv);
            self.window_opened();
        }
    }

    /// No more growth (the binding could not pay for it): the queues stay
    /// as they are.
    pub fn stop_growing(&mut self) {
        self.opts.send_buffer_max = self.sendq.limit();
        self.opts.recv_buffer_max = self.recvq.limit();
    }
}
