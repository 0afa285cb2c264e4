//! The pump: bytes between each ring-mode connection and the engine, in
//! both directions (with TLS RX offload, as marked chunks), connection ends
//! passed to the rings, released connections retired, and the doorbells
//! asked for before the loop sleeps.

use super::tcp::TcpConn;
use super::{sendring, Stack};
use crate::offload::{self, OffloadTable};
use capnet_ring::{RingError, ServerEnd};
use capnet_tcpip::tcp::{Conn, Mark, State};
use capnet_wire::chunk::{self, ChunkHeader};

impl Stack {
    /// Moves bytes between ring-mode sockets and the engine, tracks
    /// connection ends, and retires released sockets.
    pub(super) fn pump_connections(&mut self) -> bool {
        let now = self.now();
        let mut moved = false;
        let mut finished = Vec::new();
        let mut killed = Vec::new();
        let mut data_after_shutdown = Vec::new();
        let mut dropped_unread = Vec::new();
        // Connections the pump changed: only these are filed with the
        // engine again (output, timers), not every connection every poll.
        let mut touched = Vec::new();
        let mut table = self.offload.borrow_mut();
        // Offload-bound connections are looked at every pump: the table
        // watches their receive order and holds their bytes back.
        for flow in table.flows() {
            self.ready.wake_flow(flow);
        }
        for id in self.ready.take() {
            let Some(tc) = self.tcp.get_mut(&id) else {
                continue;
            };
            self.ready.looked_at(id);
            let Ok(c) = self.engine.tcp.conn_mut(tc.id) else {
                finished.push(id);
                continue;
            };
            tc.observe(c);
            if tc.data_after_shutdown(c) {
                data_after_shutdown.push(id);
                continue;
            }
            // Before the pump can take the closed up ring for a FIN.
            if tc.dropped_with_unread(c) {
                dropped_unread.push(id);
                continue;
            }
            if let Some(t) = tc.tuple {
                table.observe_rx(&t, c.counters.out_of_order, c.counters.marked_out_of_order);
            }
            if let Some(want) = c.buffers_wanted() {
                tc.grow(c, want);
                // A window the growth opened is announced now, not with
                // the next segment (a peer facing a zero window may send
                // nothing but probes, seconds apart).
                touched.push(tc.id);
            }
            let pumped = tc.pump(c, &mut table);
            tc.arm_abort_on_data(c);
            match pumped {
                Ok(true) => {
                    moved = true;
                    touched.push(tc.id);
                }
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(id, %err, "client broke its socket ring; ending that socket");
                    killed.push(id);
                    continue;
                }
            }
            if tc.released {
                let drained = tc
                    .rings
                    .as_ref()
                    .is_none_or(|r| sendring::untaken(c, r).unwrap_or(0) == 0);
                if !tc.fin_queued && drained {
                    tc.queue_fin(c);
                    touched.push(tc.id);
                }
                // Kept until nothing of it can be sent again: an offload
                // binding must see every retransmission of its bytes.
                if matches!(c.state(), State::Closed | State::TimeWait) {
                    finished.push(id);
                }
            }
        }
        drop(table);
        for id in touched {
            let _ = self.engine.tcp(now, id, |_| ());
        }
        for id in killed {
            self.counters.sessions_killed += 1;
            self.counters.bad_ring_indices += 1;
            self.tcp_abort(id);
        }
        for id in data_after_shutdown {
            self.tcp_reset_on_data(id);
        }
        for id in dropped_unread {
            self.reset_unread(id);
        }
        for id in finished {
            let Some(mut tc) = self.forget_tcp(id) else {
                continue;
            };
            if tc.released {
                if let Some(rings) = tc.rings.take() {
                    self.retired_rings.insert(id, rings);
                }
            }
            if let Some(t) = &tc.tuple {
                self.offload.borrow_mut().forget(t);
            }
            if tc.established && !tc.saw_fin && !tc.fin_queued {
                self.counters.tcp_resets += 1;
            }
            // The engine finishes the close (FIN, TIME-WAIT) on its own.
            self.engine.tcp.release(now, tc.id);
        }
        moved
    }

    /// Asks the rings of the sockets looked at since the last time for
    /// doorbells (the others still have theirs asked for); true if work is
    /// waiting.
    pub(super) fn arm_connections(&mut self) -> bool {
        let mut pending = self.ready.pending();
        let table = self.offload.borrow();
        for id in self.ready.take_unarmed() {
            let Some(tc) = self.tcp.get_mut(&id) else {
                continue;
            };
            let Some(r) = &mut tc.rings else { continue };
            r.up.request_signal();
            r.down.request_signal();
            let Ok(c) = self.engine.tcp.conn_mut(tc.id) else {
                continue;
            };
            // Bytes held back while a NIC makes an RX context are not work:
            // spinning on them would starve the call that ends the wait.
            let held = tc
                .tuple
                .and_then(|t| table.conn(&t))
                .and_then(|c| c.rx.as_ref())
                .is_some_and(|rx| rx.plain_allowance(tc.rx_bytes) == Some(0));
            // New bytes to take, or acknowledged ones to give back.
            let up_ready = (c.writable() > 0 && sendring::untaken(c, r).unwrap_or(0) > 0)
                || c.ring_front().is_some_and(|f| f != r.up.head());
            let down_ready = !held && c.readable() > 0 && r.down.space().unwrap_or(0) > 0;
            if up_ready || down_ready {
                r.up.cancel_signal();
                r.down.cancel_signal();
                self.ready.wake(id);
                pending = true;
            }
        }
        pending
    }
}

impl TcpConn {
    /// Grows the connection's queues to what autotuning asks, if the
    /// client's account pays for it; otherwise they stay as they are.
    fn grow(&mut self, c: &mut Conn, (send, recv): (usize, usize)) {
        let more = send.saturating_sub(c.send_buffer()) + recv.saturating_sub(c.recv_buffer());
        let paid = match (&mut self.growth.charge, &self.growth.account) {
            (Some(charge), _) => charge.add_buffer(more).is_ok(),
            (None, Some(account)) => account
                .buffers(more)
                .map(|charge| self.growth.charge = Some(charge))
                .is_ok(),
            // Nobody holds the socket yet (or any more): nobody to pay.
            (None, None) => false,
        };
        if paid {
            // Past the ring's capacity the send queue leaves it; the pump
            // gives the ring its bytes back (`sendring::release_acked`).
            c.grow_buffers(send, recv);
        } else {
            c.stop_growing();
        }
    }

    /// Moves bytes between the rings and the engine. `Err` when the client
    /// broke the ring contract.
    fn pump(&mut self, c: &mut Conn, table: &mut OffloadTable) -> Result<bool, RingError> {
        let chunked = self
            .tuple
            .and_then(|t| table.conn_mut(&t))
            .and_then(|c| c.rx.as_mut());
        let Some(rings) = &mut self.rings else {
            return Ok(false);
        };
        let mut moved = false;
        // Application -> network: in place once the engine's own queue is
        // empty (bytes written by calls before the rings came go first).
        let mut freed = sendring::release_acked(c, rings);
        if sendring::attach(c, rings) {
            let queued = c.send_queued();
            let n = c.take_from_ring(sendring::untaken(c, rings)?);
            if n > 0 {
                if let Some((at, bytes)) = rewrite_over(&mut self.tx_rewrite, self.tx_bytes, n) {
                    c.rewrite_queued(queued + at, &bytes);
                }
                self.tx_bytes += n as u64;
                moved = true;
            }
        } else {
            while c.writable() > 0 {
                let chunk = rings.up.peek()?;
                if chunk.is_empty() {
                    break;
                }
                let n = match rewrite_over(&mut self.tx_rewrite, self.tx_bytes, chunk.len()) {
                    Some((at, bytes)) => {
                        let mut chunk = chunk.to_vec();
                        chunk[at..at + bytes.len()].copy_from_slice(&bytes);
                        c.write(&chunk)
                    }
                    None => c.write(chunk),
                };
                if n == 0 {
                    break;
                }
                rings.up.consume(n);
                self.tx_bytes += n as u64;
                freed = true;
            }
        }
        if freed {
            moved = true;
            if rings.up.signal_wanted() {
                rings.wake_peer.ring();
            }
        }
        // The writer's state before its tail, so that bytes written ahead
        // of the close are seen.
        let writer_done = rings.up.writer_finished();
        if !self.fin_queued && writer_done && sendring::untaken(c, rings)? == 0 && c.may_send() {
            // The abort-on-data limit follows in `pump_connections`.
            c.shutdown_write();
            self.fin_queued = true;
            moved = true;
        }
        // Network -> application.
        let mut received = false;
        // While the NIC makes an RX context, bytes past the binding wait:
        // they may come back marked.
        let limit = chunked
            .as_ref()
            .and_then(|rx| rx.plain_allowance(self.rx_bytes));
        match chunked.filter(|rx| rx.chunks_from.is_some()) {
            None => {
                let mut left = limit.map_or(usize::MAX, |l| l as usize);
                while c.readable() > 0 && left > 0 {
                    let space = rings.down.reserve()?;
                    if space.is_empty() {
                        break;
                    }
                    let want = space.len().min(left);
                    let n = c.read(&mut space[..want]);
                    if n == 0 {
                        break;
                    }
                    rings.down.commit(n);
                    self.rx_bytes += n as u64;
                    self.ring_written += n as u64;
                    left -= n;
                    received = true;
                }
            }
            Some(rx) => {
                received |= pump_chunks(c, rings, rx, &mut self.rx_bytes, &mut self.ring_written)?;
            }
        }
        let ended = c.read_eof() || (c.state() == State::Closed && c.readable() == 0);
        let end_error = self.end_error(c);
        let Some(rings) = &mut self.rings else {
            return Ok(moved);
        };
        if !self.end_delivered && self.established && ended {
            match end_error {
                // The application's writes have nowhere to go either: the
                // connection is closed (below).
                Some(e) => rings.down.set_error(e.code()),
                None => rings.down.close(),
            }
            self.end_delivered = true;
            received = true;
        }
        if c.state() == State::Closed && !self.writes_refused {
            // Nothing written from now on can go anywhere (a reset, or the
            // end of both directions): the application's writes fail, and a
            // writer waiting for room wakes to learn it.
            rings.up.close();
            self.writes_refused = true;
            rings.wake_peer.ring();
        }
        if received {
            moved = true;
            if rings.down.signal_wanted() {
                rings.wake_peer.ring();
            }
        }
        Ok(moved)
    }
}

/// The pending rewrite's bytes over the `len` bytes at stream offset `at`:
/// where they start in that span, and the bytes (`None`: nothing to
/// rewrite there); drops the rewrite once passed.
fn rewrite_over(
    rewrite: &mut Option<(u64, Vec<u8>)>,
    at: u64,
    len: usize,
) -> Option<(usize, Vec<u8>)> {
    let (start, bytes) = rewrite.as_ref()?;
    let end = start + bytes.len() as u64;
    if at >= end {
        *rewrite = None;
        return None;
    }
    let (from, to) = (at.max(*start), (at + len as u64).min(end));
    if from >= to {
        return None;
    }
    let over = bytes[(from - start) as usize..(to - start) as usize].to_vec();
    Some(((from - at) as usize, over))
}

/// Receive path of a connection with TLS RX offload: marked chunks (see
/// net.capnp `RxChunk`), one per run of bytes the NIC did or did not
/// decrypt, as TCP kept the marks with the bytes. Bytes the engine held
/// before the binding are plain.
fn pump_chunks(
    c: &mut Conn,
    rings: &mut ServerEnd,
    rx: &offload::RxBinding,
    rx_bytes: &mut u64,
    ring_written: &mut u64,
) -> Result<bool, RingError> {
    let mut received = false;
    while let Some((mark, run)) = c.front_run() {
        let decrypted = match mark {
            _ if *rx_bytes < rx.start => false,
            Mark::Plain => false,
            Mark::Decrypted => true,
            // Placed bytes are for a placement context's holder; netsrv
            // makes no such marks for a TLS socket.
            Mark::Placed { .. } => break,
        };
        let run = match rx.start.checked_sub(*rx_bytes) {
            Some(before) if before > 0 => run.min(before as usize),
            _ => run,
        };
        let space = rings.down.space()?;
        if space <= chunk::HEADER_LEN {
            break;
        }
        let n = run.min(chunk::MAX_LEN).min(space - chunk::HEADER_LEN);
        tracing::trace!(offset = *rx_bytes, n, decrypted, "rx chunk");
        let header = ChunkHeader {
            len: n as u16, // at most chunk::MAX_LEN
            decrypted,
        };
        rings.down.write(&header.to_bytes())?;
        let mut left = n;
        while left > 0 {
            let dst = rings.down.reserve()?;
            let want = left.min(dst.len());
            let got = c.read(&mut dst[..want]);
            if got == 0 {
                // TCP said the run held `n` bytes.
                return Err(RingError::Layout("receive queue shrank"));
            }
            rings.down.commit(got);
            left -= got;
        }
        *rx_bytes += n as u64;
        *ring_written += (chunk::HEADER_LEN + n) as u64;
        received = true;
    }
    Ok(received)
}
