//! The TCP layer: every connection and listener of the engine, found by
//! hash (constant cost per segment whatever their number), their timers in
//! one wheel, a ready list of connections with something to send (so an
//! idle poll visits none), listen queues with SYN cookies, and the events
//! the application side hears.

use super::conn::{self, Conn, ConnCounters, ConnError, Options, Payload, Sink, State};
use super::cookie::SynCookies;
use super::isn::IsnGenerator;
use super::mark::Mark;
use crate::time::Instant;
use crate::timer::TimerWheel;
use capnet_wire::tcp::{Flags, Flow, Header, SeqNumber};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

/// A connection's name: a slot and the generation that filled it, so a
/// stale name never reaches a newer connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpId {
    slot: u32,
    generation: u32,
}

/// A listener's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenerId {
    slot: u32,
    generation: u32,
}

/// What the application side should look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Readable, writable, established or ended: ask the connection.
    Conn(TcpId),
    /// A connection waits in the listener's accept queue.
    Accept(ListenerId),
}

/// Why a socket call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpError {
    /// The name is stale (closed and freed).
    NotFound,
    /// The 4-tuple, or the listening address, is taken.
    InUse,
    /// A configured bound was reached.
    Limit,
    /// The connection ended with this error.
    Ended(ConnError),
}

/// Bounds of the layer.
#[derive(Clone, Copy, Debug)]
pub struct TcpLimits {
    pub max_connections: usize,
    /// TIME-WAIT connections kept (Linux tcp_max_tw_buckets); past it a
    /// closing connection skips TIME-WAIT, and that is counted.
    pub max_time_wait: usize,
    pub max_backlog: usize,
}

impl Default for TcpLimits {
    fn default() -> TcpLimits {
        TcpLimits {
            max_connections: 65536,
            max_time_wait: 16384,
            max_backlog: 4096,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct TcpCounters {
    pub active_opens: u64,
    pub passive_opens: u64,
    pub resets_sent: u64,
    pub resets_received: u64,
    pub no_socket: u64,
    pub syn_cookies_sent: u64,
    pub syn_cookies_accepted: u64,
    pub syn_cookies_rejected: u64,
    pub listen_overflows: u64,
    pub time_wait_skipped: u64,
    /// TIME-WAIT ended early by a new SYN for the same flow (RFC 6191).
    pub time_wait_reopened: u64,
    pub malformed: u64,
    /// The counters of every connection freed so far, summed.
    pub ended: ConnCounters,
}

struct Slot {
    generation: u32,
    conn: Option<Box<Conn>>,
    listener: Option<ListenerId>,
    /// In the ready list.
    ready: bool,
    /// An event is queued for it.
    event: bool,
    /// The deadline in the wheel (stale wheel entries are ignored).
    armed: Option<Instant>,
    /// Counted in `time_wait`.
    in_time_wait: bool,
}

mod listen;

use listen::ListenerSlot;

pub struct Tcp {
    slots: Vec<Slot>,
    free: Vec<u32>,
    demux: HashMap<Flow, u32>,
    listeners: Vec<ListenerSlot>,
    listen_demux: HashMap<SocketAddr, u32>,
    wheel: TimerWheel<(u32, u32)>,
    ready: Vec<u32>,
    events: VecDeque<Event>,
    isn: IsnGenerator,
    cookies: SynCookies,
    time_wait: usize,
    live: usize,
    /// The last flush stopped at a device with no room: output waits for
    /// the bindings to say there is room again (their next poll), rather
    /// than asking for an immediate one.
    stalled: bool,
    limits: TcpLimits,
    pub counters: TcpCounters,
}

impl Tcp {
    /// `secret` keys ISNs and cookies; the bindings draw it at random.
    pub fn new(now: Instant, secret: [u8; 32], limits: TcpLimits) -> Tcp {
        let mut isn_key = [0u8; 16];
        isn_key.copy_from_slice(&secret[..16]);
        let mut cookie_key = [0u8; 16];
        cookie_key.copy_from_slice(&secret[16..]);
        Tcp {
            slots: Vec::new(),
            free: Vec::new(),
            demux: HashMap::new(),
            listeners: Vec::new(),
            listen_demux: HashMap::new(),
            wheel: TimerWheel::new(now),
            ready: Vec::new(),
            events: VecDeque::new(),
            isn: IsnGenerator::new(isn_key),
            cookies: SynCookies::new(cookie_key),
            time_wait: 0,
            live: 0,
            stalled: false,
            limits,
            counters: TcpCounters::default(),
        }
    }

    /// Connections held, TIME-WAIT included.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    pub fn time_wait(&self) -> usize {
        self.time_wait
    }

    /// Whether a flow is taken (for picking an ephemeral port).
    pub fn flow_in_use(&self, flow: &Flow) -> bool {
        self.demux.contains_key(flow)
    }

    /// Whether some listener or connection uses this local port.
    pub fn port_in_use(&self, local: SocketAddr) -> bool {
        self.listen_demux.contains_key(&local)
            || self
                .listen_demux
                .contains_key(&SocketAddr::new(unspecified(local.ip()), local.port()))
    }

    pub fn next_event(&mut self) -> Option<Event> {
        let e = self.events.pop_front()?;
        match e {
            Event::Conn(id) => {
                if let Some(s) = self.slots.get_mut(id.slot as usize) {
                    s.event = false;
                }
            }
            Event::Accept(id) => {
                if let Ok(l) = self.listener_mut(id) {
                    l.event = false;
                }
            }
        }
        Some(e)
    }

    pub fn conn(&self, id: TcpId) -> Result<&Conn, TcpError> {
        match self.slots.get(id.slot as usize) {
            Some(s) if s.generation == id.generation => s.conn.as_deref().ok_or(TcpError::NotFound),
            _ => Err(TcpError::NotFound),
        }
    }

    /// A connection to change directly; the caller files the change with
    /// [`with_conn`](Self::with_conn) (or [`poll`](Self::poll)) after.
    pub fn conn_mut(&mut self, id: TcpId) -> Result<&mut Conn, TcpError> {
        match self.slots.get_mut(id.slot as usize) {
            Some(s) if s.generation == id.generation => {
                s.conn.as_deref_mut().ok_or(TcpError::NotFound)
            }
            _ => Err(TcpError::NotFound),
        }
    }

    /// Runs `f` on a connection, then files what it changed: wake-ups,
    /// output, timers, the end.
    pub fn with_conn<R>(
        &mut self,
        now: Instant,
        id: TcpId,
        f: impl FnOnce(&mut Conn) -> R,
    ) -> Result<R, TcpError> {
        let slot = self
            .slots
            .get_mut(id.slot as usize)
            .ok_or(TcpError::NotFound)?;
        if slot.generation != id.generation {
            return Err(TcpError::NotFound);
        }
        let conn = slot.conn.as_deref_mut().ok_or(TcpError::NotFound)?;
        let r = f(conn);
        self.settle(now, id.slot);
        Ok(r)
    }

    /// Opens a connection from `local` (address and port chosen by the
    /// caller) to `remote`.
    pub fn connect(
        &mut self,
        now: Instant,
        flow: Flow,
        opts: Options,
        mss: usize,
    ) -> Result<TcpId, TcpError> {
        if self.demux.contains_key(&flow) {
            return Err(TcpError::InUse);
        }
        if self.live >= self.limits.max_connections {
            return Err(TcpError::Limit);
        }
        let iss = self.isn.isn(flow.local, flow.remote, now);
        let ts = self.isn.timestamp_offset(flow.local, flow.remote);
        let conn = Conn::connect(flow, opts, mss, iss, ts, now);
        self.counters.active_opens += 1;
        let id = self.insert(conn, None);
        self.settle(now, id.slot);
        Ok(id)
    }

    /// Graceful close: a FIN after the queued data; the connection frees
    /// itself once done. Unread data makes it an abort (RFC 2525 2.17, as
    /// Linux does).
    pub fn close(&mut self, now: Instant, id: TcpId, sink: &mut impl Sink) {
        let unread = self.conn(id).map(|c| c.readable() > 0).unwrap_or(false);
        if unread {
            self.abort(now, id, sink);
            return;
        }
        let _ = self.with_conn(now, id, |c| {
            c.shutdown_write();
            c.orphan(now);
        });
    }

    /// Abortive close: RST if the peer knows the connection; freed now.
    pub fn abort(&mut self, now: Instant, id: TcpId, sink: &mut impl Sink) {
        let Ok(c) = self.conn(id) else { return };
        let flow = c.flow;
        let rst = c.rst_seq();
        let send = self.with_conn(now, id, |c| {
            c.orphan = true;
            c.abort()
        });
        if send == Ok(true) {
            self.send_rst(sink, &flow, rst, None);
        }
        self.settle(now, id.slot);
    }

    /// A segment for `flow` (already checksummed; `h` parsed).
    pub fn input(
        &mut self,
        now: Instant,
        flow: Flow,
        h: &Header,
        payload: &[u8],
        mark: Mark,
        sink: &mut impl Sink,
    ) {
        let known = self
            .demux
            .get(&flow)
            .copied()
            .filter(|&slot| !self.time_wait_yields(slot, h));
        if let Some(slot) = known {
            let s = &mut self.slots[slot as usize];
            let conn = s.conn.as_deref_mut().expect("demux names live slots");
            let was = conn.state();
            if h.flags.rst() {
                self.counters.resets_received += 1;
            }
            let reply = conn.on_segment(now, h, payload, mark);
            conn.send_immediate_ack(now, sink);
            if let conn::Reply::Reset { seq } = reply {
                self.send_rst(sink, &flow, seq, None);
            }
            let now_state = self.slots[slot as usize].conn.as_deref().map(Conn::state);
            if was == State::SynReceived && now_state != Some(State::SynReceived) {
                self.handshake_done(
                    slot,
                    now_state == Some(State::Established) || now_state == Some(State::CloseWait),
                );
            }
            self.settle(now, slot);
            return;
        }
        if let Some(lslot) = self.find_listener(flow.local) {
            self.listener_input(now, lslot, flow, h, payload, sink);
            return;
        }
        self.counters.no_socket += 1;
        self.reset_for(sink, &flow, h, payload.len());
    }

    /// RFC 9293 3.10.7.1: the reset a segment without a connection gets.
    fn reset_for(&mut self, sink: &mut impl Sink, flow: &Flow, h: &Header, payload: usize) {
        if h.flags.rst() {
            return;
        }
        if h.flags.ack() {
            self.send_rst(sink, flow, h.ack, None);
        } else {
            self.send_rst(sink, flow, SeqNumber(0), Some(h.seq + h.seq_len(payload)));
        }
    }

    fn send_rst(
        &mut self,
        sink: &mut impl Sink,
        flow: &Flow,
        seq: SeqNumber,
        ack: Option<SeqNumber>,
    ) {
        let h = Header {
            src_port: flow.local.port(),
            dst_port: flow.remote.port(),
            seq,
            ack: ack.unwrap_or_default(),
            flags: if ack.is_some() {
                Flags::RST | Flags::ACK
            } else {
                Flags::RST
            },
            ..Header::default()
        };
        self.counters.resets_sent += 1;
        sink.segment(flow, &h, Payload::empty());
    }

    fn insert(&mut self, conn: Conn, listener: Option<ListenerId>) -> TcpId {
        let flow = conn.flow;
        let slot = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    conn: None,
                    listener: None,
                    ready: false,
                    event: false,
                    armed: None,
                    in_time_wait: false,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let s = &mut self.slots[slot as usize];
        s.generation = s.generation.wrapping_add(1);
        s.conn = Some(Box::new(conn));
        s.listener = listener;
        s.ready = false;
        s.event = false;
        s.armed = None;
        s.in_time_wait = false;
        self.demux.insert(flow, slot);
        self.live += 1;
        TcpId {
            slot,
            generation: s.generation,
        }
    }

    /// After anything touched a connection: queue its event, put it on the
    /// ready list, re-arm its timer, count TIME-WAIT, and free it when it
    /// is closed and nobody holds it.
    fn settle(&mut self, now: Instant, slot: u32) {
        let s = &mut self.slots[slot as usize];
        let Some(conn) = s.conn.as_deref_mut() else {
            return;
        };
        let id = TcpId {
            slot,
            generation: s.generation,
        };
        let state = conn.state();
        if state == State::TimeWait && !s.in_time_wait {
            if self.time_wait >= self.limits.max_time_wait {
                self.counters.time_wait_skipped += 1;
                conn.skip_time_wait();
            } else {
                s.in_time_wait = true;
                self.time_wait += 1;
            }
        }
        let conn = s.conn.as_deref_mut().expect("checked");
        if conn.wake && !conn.orphan {
            conn.wake = false;
            if !s.event && s.listener.is_none() {
                s.event = true;
                self.events.push_back(Event::Conn(id));
            }
        }
        conn.wake &= !conn.orphan;
        if conn.state() == State::Closed && (conn.orphan || s.listener.is_some()) {
            self.remove(slot);
            return;
        }
        if conn.wants_output() && !s.ready {
            s.ready = true;
            self.ready.push(slot);
        }
        let deadline = conn.next_deadline();
        if deadline != s.armed {
            s.armed = deadline;
            if let Some(t) = deadline {
                self.wheel.insert(t, (slot, s.generation));
            }
        }
        let _ = now;
    }

    fn remove(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        let Some(conn) = s.conn.take() else { return };
        if s.in_time_wait {
            self.time_wait -= 1;
        }
        // Its place among the listener's half-open connections, if it had
        // one, was given back when it left SYN-RECEIVED.
        s.listener = None;
        self.counters.ended.add(&conn.counters);
        self.demux.remove(&conn.flow);
        let s = &mut self.slots[slot as usize];
        s.generation = s.generation.wrapping_add(1);
        s.armed = None;
        self.live -= 1;
        self.free.push(slot);
    }

    /// Whether `seq` lies in the flow's unacknowledged data (RFC 5927 4.1:
    /// an ICMP error about anything else is forged or stale).
    pub fn in_send_window(&self, flow: &Flow, seq: SeqNumber) -> bool {
        self.demux
            .get(flow)
            .and_then(|s| self.slots[*s as usize].conn.as_deref())
            .is_some_and(|c| c.in_flight_contains(seq))
    }

    /// The path toward a flow's peer carries smaller packets now.
    pub fn path_mtu_changed(&mut self, now: Instant, flow: &Flow, mtu: usize) {
        let Some(&slot) = self.demux.get(flow) else {
            return;
        };
        if let Some(c) = self.slots[slot as usize].conn.as_deref_mut() {
            c.set_path_mtu(now, mtu);
        }
        self.settle(now, slot);
    }

    /// The application released a connection that already ended.
    pub fn release(&mut self, now: Instant, id: TcpId) {
        let _ = self.with_conn(now, id, |c| c.orphan(now));
    }

    /// Timers, then output of every connection on the ready list.
    pub fn poll(&mut self, now: Instant, sink: &mut impl Sink) {
        let mut fired = Vec::new();
        self.wheel.expire(now, &mut |item| fired.push(item));
        for (slot, generation) in fired {
            let s = &mut self.slots[slot as usize];
            if s.generation != generation {
                continue;
            }
            let Some(conn) = s.conn.as_deref_mut() else {
                continue;
            };
            match conn.next_deadline() {
                Some(t) if t <= now => {
                    s.armed = None;
                    let was = conn.state();
                    conn.on_timer(now);
                    if was == State::SynReceived && conn.state() == State::Closed {
                        self.handshake_done(slot, false);
                    }
                    self.settle(now, slot);
                }
                Some(t) => {
                    // Early wheel entry: put the real deadline back.
                    s.armed = Some(t);
                    self.wheel.insert(t, (slot, generation));
                }
                None => s.armed = None,
            }
        }
        self.flush(now, sink);
    }

    /// Output of every ready connection, until the device is full.
    pub fn flush(&mut self, now: Instant, sink: &mut impl Sink) {
        let mut sink = Refusals {
            inner: sink,
            refused: false,
        };
        let ready = std::mem::take(&mut self.ready);
        self.stalled = false;
        for (i, &slot) in ready.iter().enumerate() {
            if sink.refused {
                // The device is full: the rest wait, in order.
                self.ready.extend_from_slice(&ready[i..]);
                break;
            }
            let s = &mut self.slots[slot as usize];
            s.ready = false;
            let Some(conn) = s.conn.as_deref_mut() else {
                continue;
            };
            conn.output(now, &mut sink);
            self.settle(now, slot);
        }
        self.stalled = sink.refused;
    }

    /// The earliest timer of any connection; now if output waits (unless
    /// it waits for room on the device: the bindings poll again when the
    /// device has room).
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.ready.is_empty() && !self.stalled {
            return Some(Instant::ZERO);
        }
        self.wheel.next_deadline()
    }

    /// Every connection, for `status`.
    /// Every connection's counters summed, those freed included (what
    /// `netstat -s` shows).
    pub fn conn_totals(&self) -> ConnCounters {
        let mut sum = self.counters.ended;
        for (_, c) in self.conns() {
            sum.add(&c.counters);
        }
        sum
    }

    pub fn conns(&self) -> impl Iterator<Item = (TcpId, &Conn)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.conn.as_deref().map(|c| {
                (
                    TcpId {
                        slot: i as u32,
                        generation: s.generation,
                    },
                    c,
                )
            })
        })
    }
}

/// A sink that remembers whether the device refused a segment.
struct Refusals<'a, S: Sink> {
    inner: &'a mut S,
    refused: bool,
}

impl<S: Sink> Sink for Refusals<'_, S> {
    fn segment(&mut self, flow: &Flow, h: &Header, payload: Payload<'_>) -> bool {
        let ok = !self.refused && self.inner.segment(flow, h, payload);
        self.refused |= !ok;
        ok
    }
}

fn unspecified(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}
