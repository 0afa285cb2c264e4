//! TCP sockets: connections and listeners by private id, and their calls
//! (the pump between a connection and its shared rings is `pump.rs`).

use super::{Links, SockId, SocketSummary, Stack};
use crate::limits::{Account, Charge};
use capnet_ring::ServerEnd;
use capnet_schema::errors::SocketError;
use capnet_tcpip::tcp::{Conn, ConnError, ListenerId, Options, State, TcpError, TcpId};
use capnet_tcpip::ConnectError;
use capnet_wire::tcp::Flow;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

const MAX_BACKLOG: usize = 256;

/// Options a client sets on a TCP socket.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpOptions {
    pub no_delay: bool,
    pub send_buffer: usize,
    pub recv_buffer: usize,
    pub keep_alive: Option<Duration>,
}

pub(super) struct TcpConn {
    pub id: TcpId,
    pub rings: Option<ServerEnd>,
    pub established: bool,
    pub saw_fin: bool,
    /// The application closed or dropped its capability.
    pub released: bool,
    /// We sent FIN on the application's behalf.
    pub fin_queued: bool,
    /// EOF or error already passed to the down ring.
    pub end_delivered: bool,
    /// The up ring's reading end is closed: the application's writes fail.
    pub writes_refused: bool,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Bytes written to the receive ring (with chunk headers once chunked).
    pub ring_written: u64,
    /// The connection as (local, remote): its offload key.
    pub tuple: Option<Flow>,
    /// Software-sealed bytes to write instead of framed ones still in the
    /// socket ring when the holder left its TX context: (stream offset,
    /// bytes).
    pub tx_rewrite: Option<(u64, Vec<u8>)>,
    /// The application shut the receiving side: plain reads answer at once
    /// (bytes still arrive and are read, as on Linux).
    pub read_shut: bool,
    /// Plain calls reported how the connection ended (once, as Linux
    /// reports a socket error once).
    pub error_reported: bool,
    /// Shut both ways: received bytes (read and queued) past which new data
    /// resets the connection.
    pub abort_on_data: Option<u64>,
    /// Who pays when autotuning grows the queues, and what it paid so far.
    pub growth: Growth,
}

/// Autotuning's account: the client's, once a client holds the socket.
#[derive(Default)]
pub(super) struct Growth {
    pub account: Option<Rc<Account>>,
    pub charge: Option<Charge>,
}

pub(super) struct Listener {
    pub id: ListenerId,
    pub local: SocketAddr,
    pub backlog: usize,
}

impl TcpConn {
    fn new(id: TcpId, tuple: Flow, established: bool) -> TcpConn {
        TcpConn {
            id,
            rings: None,
            established,
            saw_fin: false,
            released: false,
            fin_queued: false,
            end_delivered: false,
            writes_refused: false,
            rx_bytes: 0,
            tx_bytes: 0,
            ring_written: 0,
            tuple: Some(tuple),
            tx_rewrite: None,
            read_shut: false,
            growth: Growth::default(),
            error_reported: false,
            abort_on_data: None,
        }
    }

    /// Tracks what happened to the connection between polls.
    pub(super) fn observe(&mut self, c: &Conn) {
        if c.is_established() {
            self.established = true;
        }
        if c.peer_closed() {
            self.saw_fin = true;
        }
    }

    /// Bytes received so far: read, and queued to read.
    fn received(&self, c: &Conn) -> u64 {
        self.rx_bytes + c.readable() as u64
    }

    /// With both directions shut and our FIN queued, data from the peer can
    /// never be read: from now on it resets the connection (Linux
    /// tcp_rcv_state_process, TCPAbortOnData; RFC 1122 4.2.2.13). True when
    /// it came.
    pub(super) fn data_after_shutdown(&mut self, c: &Conn) -> bool {
        self.abort_on_data
            .is_some_and(|limit| self.received(c) > limit)
    }

    /// Queues our FIN.
    pub(super) fn queue_fin(&mut self, c: &mut Conn) {
        c.shutdown_write();
        self.fin_queued = true;
        self.arm_abort_on_data(c);
    }

    /// Once both directions are shut and our FIN is queued, what has been
    /// received is all the application may get: set then, at that moment
    /// (the pump looks at a socket only when it has news, and the data
    /// that should reset the connection may be that news).
    pub(super) fn arm_abort_on_data(&mut self, c: &Conn) {
        if self.read_shut && self.fin_queued && self.abort_on_data.is_none() {
            self.abort_on_data = Some(self.received(c));
        }
    }

    /// Bytes in the down ring the application has not read; `None` if the
    /// ring's indices are broken.
    fn unread_in_ring(&self) -> Option<bool> {
        let Some(r) = &self.rings else {
            return Some(false);
        };
        let free = r.down.space().ok()?;
        Some(free < r.down.capacity() as usize)
    }

    /// Bytes the application was given and never read: still in the engine,
    /// or in the down ring (a broken ring counts as unread).
    pub(super) fn unread(&self, c: &Conn) -> bool {
        c.readable() > 0 || self.unread_in_ring().unwrap_or(true)
    }

    /// The application closed its end of the rings with bytes unread: the
    /// connection is reset, not closed (`Stack::tcp_release`). A broken
    /// ring is not this: the pump finds it and ends the socket for it.
    ///
    /// Asked of every ring-mode connection on every pump: the one flag
    /// first, the indices only once the application has closed.
    pub(super) fn dropped_with_unread(&self, c: &Conn) -> bool {
        if !self.rings.as_ref().is_some_and(|r| r.down.reader_closed()) {
            return false;
        }
        self.unread_in_ring()
            .is_some_and(|in_ring| in_ring || c.readable() > 0)
    }

    /// How a plain call learns that the connection ended with `e`: the first
    /// call gets the error, later ones see the end (Linux's `sock_error`).
    fn report(&mut self, e: SocketError) -> Option<SocketError> {
        (!std::mem::replace(&mut self.error_reported, true)).then_some(e)
    }

    /// Why the connection ended, if not by an orderly FIN.
    pub(super) fn end_error(&self, c: &Conn) -> Option<SocketError> {
        if c.state() != State::Closed || self.saw_fin {
            return None;
        }
        Some(match c.error() {
            Some(ConnError::TimedOut) => SocketError::TimedOut,
            Some(ConnError::Aborted) => SocketError::Aborted,
            Some(ConnError::Refused) => SocketError::Refused,
            _ if self.established => SocketError::Reset,
            _ => SocketError::Refused,
        })
    }
}

fn tcp_error(e: TcpError) -> SocketError {
    match e {
        TcpError::NotFound => SocketError::Closed,
        TcpError::InUse => SocketError::AddrInUse,
        TcpError::Limit => SocketError::Limit,
        TcpError::Ended(_) => SocketError::Closed,
    }
}

impl Stack {
    fn engine_options(&self, options: &TcpOptions) -> Options {
        let buffer = |b: usize| if b > 0 { b } else { self.default_buffer }.clamp(1024, 16 << 20);
        // A size the client chose stays that size (as SO_SNDBUF and
        // SO_RCVBUF turn Linux's autotuning off).
        let ceiling = self.autotune_ceiling();
        let max = |b: usize| if b > 0 { 0 } else { ceiling };
        Options {
            no_delay: options.no_delay,
            keep_alive: options.keep_alive,
            send_buffer: buffer(options.send_buffer),
            recv_buffer: buffer(options.recv_buffer),
            send_buffer_max: max(options.send_buffer),
            recv_buffer_max: max(options.recv_buffer),
            congestion: self.congestion,
            ..Options::default()
        }
    }

    /// The socket and its connection, for a call that may change them:
    /// the next pump looks at it.
    pub(super) fn conn(&mut self, id: SockId) -> Result<(&mut TcpConn, &mut Conn), SocketError> {
        if self.tcp.contains_key(&id) {
            self.ready.wake(id);
        }
        let tc = self.tcp.get_mut(&id).ok_or(SocketError::Closed)?;
        let c = self
            .engine
            .tcp
            .conn_mut(tc.id)
            .map_err(|_| SocketError::Closed)?;
        Ok((tc, c))
    }

    /// Files what a socket call changed on a connection (output, timers).
    fn settle(&mut self, id: SockId) {
        let now = self.now();
        if let Some(tc) = self.tcp.get(&id) {
            let _ = self.engine.tcp(now, tc.id, |_| ());
        }
    }

    /// Starts a connection; `tcp_connected` tells when it is up.
    pub fn tcp_connect(
        &mut self,
        remote: SocketAddr,
        options: &TcpOptions,
    ) -> Result<SockId, SocketError> {
        if remote.port() == 0 || remote.ip().is_unspecified() {
            return Err(SocketError::Invalid);
        }
        let iface = self.route(remote.ip()).ok_or(SocketError::Unreachable)?;
        let src = self
            .source_address(iface, remote.ip())
            .ok_or(SocketError::AddrNotAvailable)?;
        let opts = self.engine_options(options);
        let now = self.now();
        let local = SocketAddr::new(src, 0);
        let tid = self
            .engine
            .tcp_connect(now, Some(local), remote, opts)
            .map_err(|e| match e {
                ConnectError::NoRoute => SocketError::Unreachable,
                ConnectError::AddressNotAvailable | ConnectError::NoPorts => {
                    SocketError::AddrNotAvailable
                }
                ConnectError::Invalid => SocketError::Invalid,
                ConnectError::Tcp(e) => tcp_error(e),
            })?;
        let flow = self
            .engine
            .tcp
            .conn(tid)
            .map(|c| c.flow)
            .map_err(tcp_error)?;
        let id = self.next_id();
        self.insert_tcp(id, TcpConn::new(tid, flow, false));
        self.counters.tcp_connects += 1;
        Ok(id)
    }

    /// `Ok(true)` once established; `refused` if the peer reset the attempt.
    pub fn tcp_connected(&mut self, id: SockId) -> Result<bool, SocketError> {
        let (tc, c) = self.conn(id)?;
        tc.observe(c);
        match c.state() {
            State::SynSent | State::SynReceived => Ok(false),
            State::Closed if !tc.established => {
                Err(tc.end_error(c).unwrap_or(SocketError::Refused))
            }
            State::Closed => Err(tc.end_error(c).unwrap_or(SocketError::Reset)),
            _ => Ok(true),
        }
    }

    /// Reads up to `max` bytes; `Ok(Some(empty))` is EOF (or `max` 0).
    pub fn tcp_read(&mut self, id: SockId, max: usize) -> Result<Option<Vec<u8>>, SocketError> {
        let (tc, c) = self.conn(id)?;
        if tc.rings.is_some() {
            return Err(SocketError::Invalid);
        }
        tc.observe(c);
        if max == 0 {
            // As read(2) with a zero length: nothing, at once.
            return Ok(Some(Vec::new()));
        }
        if c.readable() > 0 {
            let mut buf = vec![0u8; max.min(1 << 20).min(c.readable())];
            let n = c.read(&mut buf);
            buf.truncate(n);
            tc.rx_bytes += n as u64;
            self.settle(id);
            return Ok(Some(buf));
        }
        if c.read_eof() {
            return Ok(Some(Vec::new()));
        }
        if let Some(e) = tc.end_error(c) {
            return match tc.report(e) {
                Some(e) => Err(e),
                None => Ok(Some(Vec::new())),
            };
        }
        if c.state() == State::Closed || tc.read_shut {
            // Shut for reading: nothing queued is answered at once.
            return Ok(Some(Vec::new()));
        }
        Ok(None)
    }

    /// Queues what fits of `data`; `Ok(None)` while the send buffer is full.
    pub fn tcp_write(&mut self, id: SockId, data: &[u8]) -> Result<Option<usize>, SocketError> {
        let (tc, c) = self.conn(id)?;
        if tc.rings.is_some() {
            return Err(SocketError::Invalid);
        }
        tc.observe(c);
        if matches!(c.state(), State::SynSent | State::SynReceived) {
            return Ok(None);
        }
        if !c.may_send() {
            let e = tc.end_error(c).and_then(|e| tc.report(e));
            return Err(e.unwrap_or(SocketError::Closed));
        }
        let n = c.write(data);
        if n == 0 {
            return Ok(None);
        }
        tc.tx_bytes += n as u64;
        self.settle(id);
        Ok(Some(n))
    }

    /// Half-closes: `write` sends FIN once queued data is out; `read` makes
    /// reads answer at once. As on Linux, bytes still arrive and are read
    /// after a shutdown of the receiving side alone; once both sides are
    /// shut, new data resets the connection (see `data_after_shutdown`).
    pub fn tcp_shutdown(&mut self, id: SockId, read: bool, write: bool) -> Result<(), SocketError> {
        let (tc, c) = self.conn(id)?;
        if write && !tc.fin_queued {
            match &mut tc.rings {
                // The application closes its ring; FIN follows the bytes in it.
                Some(r) => r.up.close(),
                None => tc.queue_fin(c),
            }
        }
        if read {
            tc.read_shut = true;
            tc.arm_abort_on_data(c);
        }
        self.settle(id);
        Ok(())
    }

    pub fn tcp_set_no_delay(&mut self, id: SockId, on: bool) -> Result<(), SocketError> {
        let (_, c) = self.conn(id)?;
        c.set_no_delay(on);
        self.settle(id);
        Ok(())
    }

    /// The application is done with the socket: send what it queued, then
    /// FIN; the connection finishes on its own. The engine owns it from now
    /// on as an orphan, as Linux's `close()` leaves it: new data from the
    /// peer resets it (nobody will read it), and FIN-WAIT-2 times out.
    ///
    /// Bytes received and never read make it a reset instead, at once and
    /// with what was queued to send dropped (RFC 2525 2.17, RFC 9293
    /// 3.10.4; Linux `tcp_close`): the peer learns that its data was lost.
    pub fn tcp_release(&mut self, id: SockId) {
        let now = self.now();
        let Some(tc) = self.tcp.get_mut(&id) else {
            return;
        };
        let unread = self.engine.tcp.conn(tc.id).is_ok_and(|c| tc.unread(c));
        if unread {
            self.reset_unread(id);
            return;
        }
        tc.released = true;
        self.engine.tcp.release(now, tc.id);
        self.ready.release(id);
    }

    fn insert_tcp(&mut self, id: SockId, tc: TcpConn) {
        self.ready.add(id, tc.id, tc.tuple);
        self.tcp.insert(id, tc);
    }

    /// Takes the socket out of the stack's tables.
    pub(super) fn forget_tcp(&mut self, id: SockId) -> Option<TcpConn> {
        let tc = self.tcp.remove(&id)?;
        self.ready.remove(id, tc.id, tc.tuple);
        // The rings go with the socket; the engine may still send.
        if let Ok(c) = self.engine.tcp.conn_mut(tc.id) {
            super::sendring::detach(c);
        }
        Some(tc)
    }

    /// Closed with data unread: a reset (see [`Stack::tcp_release`]).
    pub(super) fn reset_unread(&mut self, id: SockId) {
        if let Some(tc) = self.tcp.get(&id) {
            let engine = self
                .engine
                .tcp
                .conn(tc.id)
                .map(|c| (c.readable(), c.state()));
            let ring = tc
                .rings
                .as_ref()
                .map(|r| (r.down.capacity() as usize).saturating_sub(r.down.space().unwrap_or(0)));
            tracing::debug!(
                id,
                ?engine,
                ?ring,
                rx_bytes = tc.rx_bytes,
                "closed with data unread; resetting"
            );
        }
        self.counters.tcp_resets += 1;
        self.counters.tcp_closed_unread += 1;
        self.tcp_abort(id);
    }

    /// Autotuning of the socket's queues is paid from `account` (the
    /// client's that holds it); set where a client gets the socket, in the
    /// same borrow that made or accepted it, so no poll sees it unpaid.
    pub fn tcp_set_account(&mut self, id: SockId, account: Rc<Account>) {
        if let Some(tc) = self.tcp.get_mut(&id) {
            tc.growth.account = Some(account);
            self.ready.wake(id);
        }
    }

    /// For a lingering close: `Some` once the peer acknowledged every byte
    /// and our FIN (or the connection is gone).
    pub fn tcp_close_done(&mut self, id: SockId) -> Result<Option<()>, SocketError> {
        let Some(tc) = self.tcp.get(&id) else {
            return Ok(Some(()));
        };
        let Ok(c) = self.engine.tcp.conn(tc.id) else {
            return Ok(Some(()));
        };
        let done = match c.state() {
            State::Closed => true,
            State::FinWait2 | State::TimeWait => tc.fin_queued,
            _ => false,
        };
        Ok(done.then_some(()))
    }

    /// Ends a socket at once (RST), e.g. when its connect timed out.
    pub fn tcp_abort(&mut self, id: SockId) {
        let Some(tc) = self.forget_tcp(id) else {
            return;
        };
        if let Some(t) = &tc.tuple {
            self.offload.borrow_mut().forget(t);
        }
        let now = self.now();
        let mut links = Links {
            ifaces: &mut self.ifaces,
        };
        self.engine.tcp_abort(now, tc.id, &mut links);
    }

    /// Data came after both directions were shut: reset the connection
    /// (RST to the peer) and tell the application, as Linux does
    /// (`ECONNRESET`).
    pub(super) fn tcp_reset_on_data(&mut self, id: SockId) {
        let Some(tc) = self.tcp.get_mut(&id) else {
            return;
        };
        tracing::debug!(id, "data after shutdown of both directions; resetting");
        if let Some(r) = &mut tc.rings {
            if !tc.end_delivered {
                r.down.set_error(SocketError::Reset.code());
                tc.end_delivered = true;
            }
            r.up.close();
            tc.writes_refused = true;
            r.wake_peer.ring();
        }
        self.counters.tcp_resets += 1;
        self.tcp_abort(id);
    }

    pub fn tcp_info(
        &mut self,
        id: SockId,
    ) -> Result<(Option<SocketAddr>, Option<SocketAddr>, String), SocketError> {
        let (_, c) = self.conn(id)?;
        Ok((
            Some(c.flow.local),
            Some(c.flow.remote),
            c.state().name().to_uppercase(),
        ))
    }

    /// Moves the socket's data onto shared byte rings.
    pub fn tcp_attach_rings(&mut self, id: SockId, rings: ServerEnd) -> Result<(), SocketError> {
        let tc = self.tcp.get_mut(&id).ok_or(SocketError::Closed)?;
        if tc.rings.is_some() {
            return Err(SocketError::Busy);
        }
        tc.rings = Some(rings);
        self.ready.wake(id);
        Ok(())
    }

    // ---- TCP listeners ----

    pub fn tcp_listen(
        &mut self,
        local: SocketAddr,
        backlog: usize,
        options: TcpOptions,
    ) -> Result<SockId, SocketError> {
        if !local.ip().is_unspecified() && self.iface_owning(local.ip()).is_none() {
            return Err(SocketError::AddrNotAvailable);
        }
        let port = if local.port() == 0 {
            self.ephemeral_port()?
        } else if self
            .listeners
            .values()
            .any(|l| l.local.port() == local.port())
        {
            return Err(SocketError::AddrInUse);
        } else {
            local.port()
        };
        let local = SocketAddr::new(local.ip(), port);
        let backlog = backlog.clamp(1, MAX_BACKLOG);
        let opts = self.engine_options(&options);
        let lid = self
            .engine
            .tcp_listen(local, backlog, opts)
            .map_err(tcp_error)?;
        if local.ip().is_unspecified() {
            // One listener serves both families, as a dual-stack socket.
            let other: IpAddr = if local.is_ipv4() {
                std::net::Ipv6Addr::UNSPECIFIED.into()
            } else {
                std::net::Ipv4Addr::UNSPECIFIED.into()
            };
            let _ = self
                .engine
                .tcp
                .alias_listener(lid, SocketAddr::new(other, port));
        }
        let id = self.next_id();
        self.listeners.insert(
            id,
            Listener {
                id: lid,
                local,
                backlog,
            },
        );
        Ok(id)
    }

    pub fn tcp_listener_addr(&self, id: SockId) -> Result<SocketAddr, SocketError> {
        let l = self.listeners.get(&id).ok_or(SocketError::Closed)?;
        Ok(l.local)
    }

    /// Whether an accept on listener `id` would take a connection now.
    pub fn tcp_accept_ready(&self, id: SockId) -> Result<bool, SocketError> {
        let l = self.listeners.get(&id).ok_or(SocketError::Closed)?;
        self.engine.tcp.accept_ready(l.id).map_err(tcp_error)
    }

    /// Takes an established connection off the accept queue.
    pub fn tcp_accept(&mut self, id: SockId) -> Result<Option<(SockId, SocketAddr)>, SocketError> {
        let l = self.listeners.get(&id).ok_or(SocketError::Closed)?;
        let Some((tid, flow)) = self.engine.tcp.accept(l.id).map_err(tcp_error)? else {
            return Ok(None);
        };
        let conn_id = self.next_id();
        self.insert_tcp(conn_id, TcpConn::new(tid, flow, true));
        self.counters.tcp_accepts += 1;
        Ok(Some((conn_id, flow.remote)))
    }

    pub fn tcp_listener_close(&mut self, id: SockId) {
        if let Some(l) = self.listeners.remove(&id) {
            let now = self.now();
            let mut links = Links {
                ifaces: &mut self.ifaces,
            };
            self.engine.tcp_close_listener(now, l.id, &mut links);
        }
    }

    pub(super) fn tcp_summaries(&self) -> Vec<SocketSummary> {
        let mut out = Vec::new();
        for tc in self.tcp.values() {
            let Ok(c) = self.engine.tcp.conn(tc.id) else {
                continue;
            };
            let mut state = c.state().name().to_uppercase();
            if let Some((srtt, min)) = c.rtt() {
                state += &format!(
                    " rtt {}/{}us cwnd {}",
                    srtt.as_micros(),
                    min.as_micros(),
                    c.cwnd()
                );
            }
            out.push(SocketSummary {
                kind: "tcp",
                local: c.flow.local.to_string(),
                remote: c.flow.remote.to_string(),
                // Queues as held/bound (autotuning moves the bounds); a
                // send queue in the up ring is "(ring)".
                state: match &tc.rings {
                    Some(r) => format!(
                        "{state} sendq {}/{}{} recvq {}/{} up {} down-space {}",
                        c.send_queued(),
                        c.send_buffer(),
                        if c.sends_from_ring() { " (ring)" } else { "" },
                        c.readable(),
                        c.recv_buffer(),
                        r.up.available().unwrap_or(0),
                        r.down.space().unwrap_or(0)
                    ),
                    None => format!(
                        "{state} sendq {}/{} recvq {}/{}",
                        c.send_queued(),
                        c.send_buffer(),
                        c.readable(),
                        c.recv_buffer()
                    ),
                },
                rx_bytes: tc.rx_bytes,
                tx_bytes: tc.tx_bytes,
                ring_mode: tc.rings.is_some(),
            });
        }
        for l in self.listeners.values() {
            let ready = self.engine.tcp.accept_queue_len(l.id);
            out.push(SocketSummary {
                kind: "tcp-listen",
                local: l.local.to_string(),
                remote: String::new(),
                state: format!("backlog {} ready {ready}", l.backlog),
                rx_bytes: 0,
                tx_bytes: 0,
                ring_mode: false,
            });
        }
        out
    }
}
