//! netsrv's part of NIC offload: what the offload table needs to know of a
//! connection (its 4-tuple, sequence numbers, how far its queues go), the
//! frames it held back, and the egress of a socket.

use super::{Egress, SockId, Stack, OFFLOAD_SWEEP};
use crate::link::FlowKey;
use crate::offload::{self, TxBinding};
use capnet_schema::errors::SocketError;
use capnet_schema::offload_capnp::OffloadKind;
use capnet_wire::tcp::Flow;

impl Stack {
    /// The egress of a TCP connection: its interface, and the leg of its
    /// flow there.
    pub fn egress_of_socket(&self, id: SockId) -> Result<Egress, SocketError> {
        let tc = self.tcp.get(&id).ok_or(SocketError::Closed)?;
        let t = tc.tuple.ok_or(SocketError::Closed)?;
        let Some(i) = self
            .iface_owning(t.local.ip())
            .or_else(|| self.route(t.remote.ip()))
        else {
            return Ok(Egress::default());
        };
        let key = FlowKey {
            src: t.local.ip(),
            dst: t.remote.ip(),
            src_port: t.local.port(),
            dst_port: t.remote.port(),
        };
        Ok(self.egress_on(i, Some(&key)))
    }

    /// Forgets, once a second, the offload entries of connections no socket
    /// holds any more (handshakes that never completed).
    pub(super) fn sweep_offload(&mut self) {
        let now = std::time::Instant::now();
        if now < self.next_offload_sweep {
            return;
        }
        self.next_offload_sweep = now + OFFLOAD_SWEEP;
        let mut table = self.offload.borrow_mut();
        if table.is_empty() {
            return;
        }
        let live: std::collections::HashSet<Flow> =
            self.engine.tcp.conns().map(|(_, c)| c.flow).collect();
        table.retain(|t| live.contains(t));
    }

    /// Frames of offload-bound connections kept back while their context
    /// was on another port: judged again now that something changed.
    pub(super) fn send_held(&mut self) -> bool {
        let frames = self.offload.borrow_mut().take_releasable();
        if frames.is_empty() {
            return false;
        }
        for frame in &frames {
            let Some(v) = offload::parse_tcp(frame) else {
                continue;
            };
            let sent = match self.iface_owning(v.src.ip()) {
                Some(i) => {
                    let link = &mut self.ifaces[i].link;
                    let sent = link.send_frame(frame);
                    link.flush();
                    sent
                }
                None => false,
            };
            let mut table = self.offload.borrow_mut();
            if sent {
                table.counters.tx_held_sent += 1;
            } else {
                // No buffer (or no leg) yet: back in line, in order.
                table.on_tx_no_buffer(frame);
            }
        }
        true
    }

    /// The connection's (local, remote).
    pub fn tcp_tuple(&mut self, id: SockId) -> Result<Flow, SocketError> {
        let tc = self.tcp.get(&id).ok_or(SocketError::Closed)?;
        tc.tuple.ok_or(SocketError::NotConnected)
    }

    /// The TCP sequence number of stream offset `offset`, sent (`tx`) or
    /// received: from the engine's own state, never from frames.
    pub fn tcp_seq_at(&mut self, id: SockId, tx: bool, offset: u64) -> Result<u32, SocketError> {
        let (tx_first, rx_first) = self.first_seqs(id)?;
        let first = if tx { tx_first } else { rx_first };
        Ok(offload::seq_of(first, offset))
    }

    /// The first data byte's sequence number each way.
    fn first_seqs(&mut self, id: SockId) -> Result<(u32, u32), SocketError> {
        let (_, c) = self.conn(id)?;
        let (tx, rx) = c.first_data_seqs().ok_or(SocketError::NotConnected)?;
        Ok((tx.0, rx.0))
    }

    /// Gives the offload table the connection's first sent sequence number.
    fn learn_bases(&mut self, id: SockId) -> Result<Flow, SocketError> {
        let t = self.tcp_tuple(id)?;
        let (tx, _) = self.first_seqs(id)?;
        self.offload.borrow_mut().learn_bases(t, tx);
        Ok(t)
    }

    /// The socket's send buffer: TCP never retransmits further behind the
    /// newest byte it sent.
    pub fn tcp_send_buffer(&mut self, id: SockId) -> Result<u32, SocketError> {
        let (_, c) = self.conn(id)?;
        Ok(u32::try_from(c.send_buffer()).unwrap_or(u32::MAX))
    }

    /// Offset of the first byte written to the socket that the peer has not
    /// acknowledged.
    pub fn tcp_send_unacked(&mut self, id: SockId) -> Result<u64, SocketError> {
        let (tc, c) = self.conn(id)?;
        Ok(tc.tx_bytes - c.send_queued() as u64)
    }

    pub fn tcp_bind_tx(&mut self, id: SockId, b: TxBinding) -> Result<(), String> {
        let t = self.learn_bases(id).map_err(|e| e.to_string())?;
        self.offload
            .borrow_mut()
            .bind_tx(t, b)
            .map_err(str::to_owned)
    }

    /// The holder left its TX context: the framed bytes from stream offset
    /// `start` on are `bytes` (sealed in software) from now on. TCP's queue
    /// gets them over what it holds; bytes still in the socket ring get
    /// them on their way in.
    pub fn tcp_unbind_tx(
        &mut self,
        id: SockId,
        start: u64,
        bytes: Vec<u8>,
    ) -> Result<Option<TxBinding>, SocketError> {
        let t = self.tcp_tuple(id)?;
        let old = self.offload.borrow_mut().unbind_tx(&t);
        let (tc, c) = self.conn(id)?;
        let una = tc.tx_bytes - c.send_queued() as u64;
        // Bytes the peer acknowledged are never sent again.
        let skip = una.saturating_sub(start).min(bytes.len() as u64) as usize;
        let from = start + skip as u64;
        let queued = usize::try_from(tc.tx_bytes.saturating_sub(from)).unwrap_or(usize::MAX);
        let rest = &bytes[skip..];
        let n = c.rewrite_queued((from - una) as usize, &rest[..queued.min(rest.len())]);
        let mut replaced = n as u64;
        let tail = &rest[n..];
        if !tail.is_empty() {
            // A later rewrite covers an earlier one's tail: keep the union
            // contiguous from whichever starts first.
            let at = from + n as u64;
            match &mut tc.tx_rewrite {
                Some((s, b)) if *s <= at && *s + b.len() as u64 >= at => {
                    b.truncate((at - *s) as usize);
                    b.extend_from_slice(tail);
                }
                pending => *pending = Some((at, tail.to_vec())),
            }
            replaced += tail.len() as u64;
        }
        self.offload.borrow_mut().counters.tx_replaced += replaced;
        Ok(old)
    }

    /// Expects NIC marks from the current receive point on (before the NIC
    /// makes the RX context, so that nothing it opens goes unmarked).
    pub fn tcp_bind_rx(&mut self, id: SockId) -> Result<(), String> {
        let t = self.learn_bases(id).map_err(|e| e.to_string())?;
        let (tc, c) = self.conn(id).map_err(|e| e.to_string())?;
        let enqueued = tc.rx_bytes + c.readable() as u64;
        let ooo = (c.counters.out_of_order, c.counters.marked_out_of_order);
        self.offload
            .borrow_mut()
            .bind_rx(t, enqueued, ooo)
            .map_err(str::to_owned)
    }

    /// The NIC made the RX context: the receive ring carries marked chunks
    /// from its current position; returns that position.
    pub fn tcp_confirm_rx(&mut self, id: SockId) -> Result<u64, SocketError> {
        let t = self.tcp_tuple(id)?;
        let at = self.tcp.get(&id).ok_or(SocketError::Closed)?.ring_written;
        self.offload
            .borrow_mut()
            .confirm_rx(&t, at)
            .ok_or(SocketError::Closed)
    }

    /// The NIC refused the RX context.
    pub fn tcp_cancel_rx(&mut self, id: SockId) -> Result<(), SocketError> {
        let t = self.tcp_tuple(id)?;
        self.offload.borrow_mut().cancel_rx(&t);
        Ok(())
    }

    pub fn tcp_unbind_rx(&mut self, id: SockId) -> Result<(), SocketError> {
        let t = self.tcp_tuple(id)?;
        self.offload.borrow_mut().unbind_rx(&t);
        Ok(())
    }

    pub fn offload_counters(&self) -> offload::OffloadCounters {
        self.offload.borrow().counters
    }

    /// Whether `port`'s driver offers offload contexts of `kind`.
    pub fn port_offers(&self, port: &str, kind: OffloadKind) -> bool {
        match self.port_location(port) {
            Some(Some((i, l))) => self.ifaces[i].link.legs[l].meta.offloads.contains(&kind),
            _ => false,
        }
    }

    /// (descriptors sent, descriptors returned) on `port` while its driver
    /// instance is `epoch`; `None` once that instance is gone (nothing of
    /// it is in flight any more).
    pub fn port_tx_progress(&mut self, port: &str, epoch: u32) -> Option<(u64, u64)> {
        let loc = self.port_location(port)??;
        let leg = &mut self.ifaces[loc.0].link.legs[loc.1];
        if leg.epoch != epoch {
            return None;
        }
        leg.device.as_mut().map(|d| d.tx_progress())
    }
}
