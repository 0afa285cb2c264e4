//! Listeners: their queues (half-open and accepted), SYN cookies when the
//! half-open queue is full, a clean refusal when the accept queue is, and
//! closing them.

use super::*;

/// A listener's place: its generation outlives the listener, so that a
/// stale name never reaches the next one.
#[derive(Default)]
pub(super) struct ListenerSlot {
    generation: u32,
    listener: Option<Listener>,
}

pub(super) struct Listener {
    pub(super) local: SocketAddr,
    pub(super) backlog: usize,
    pub(super) opts: Options,
    pub(super) mss: usize,
    /// Half-open connections (SYN-RECEIVED) of this listener.
    pub(super) half_open: usize,
    pub(super) accept: VecDeque<TcpId>,
    /// Cookies sent recently: only then is a bare ACK checked as one.
    pub(super) cookies_until: Option<Instant>,
    pub(super) event: bool,
    /// Other addresses it answers on (see `alias_listener`).
    pub(super) aliases: Vec<SocketAddr>,
}

impl Tcp {
    /// Listens on `local` (the address may be unspecified).
    pub fn listen(
        &mut self,
        local: SocketAddr,
        backlog: usize,
        opts: Options,
        mss: usize,
    ) -> Result<ListenerId, TcpError> {
        if self.listen_demux.contains_key(&local) {
            return Err(TcpError::InUse);
        }
        let slot = match self.listeners.iter().position(|s| s.listener.is_none()) {
            Some(i) => i,
            None => {
                self.listeners.push(ListenerSlot::default());
                self.listeners.len() - 1
            }
        };
        let generation = self.listeners[slot].generation;
        self.listeners[slot].listener = Some(Listener {
            local,
            backlog: backlog.clamp(1, self.limits.max_backlog),
            opts,
            mss,
            half_open: 0,
            accept: VecDeque::new(),
            cookies_until: None,
            event: false,
            aliases: Vec::new(),
        });
        self.listen_demux.insert(local, slot as u32);
        Ok(ListenerId {
            slot: slot as u32,
            generation,
        })
    }

    /// Whether [`Self::accept`] would hand out a connection now.
    pub fn accept_ready(&self, id: ListenerId) -> Result<bool, TcpError> {
        Ok(self
            .listener(id)?
            .accept
            .iter()
            .any(|c| self.conn(*c).is_ok()))
    }

    /// The next established connection, if one waits.
    pub fn accept(&mut self, id: ListenerId) -> Result<Option<(TcpId, Flow)>, TcpError> {
        while let Some(c) = self.listener_mut(id)?.accept.pop_front() {
            if let Ok(conn) = self.conn(c) {
                let flow = conn.flow;
                if let Some(s) = self.slots.get_mut(c.slot as usize) {
                    s.listener = None;
                }
                return Ok(Some((c, flow)));
            }
        }
        Ok(None)
    }

    /// Makes the listener answer on `local` too (a dual-stack listener on
    /// the unspecified addresses of both families).
    pub fn alias_listener(&mut self, id: ListenerId, local: SocketAddr) -> Result<(), TcpError> {
        if self.listen_demux.contains_key(&local) {
            return Err(TcpError::InUse);
        }
        self.listener_mut(id)?.aliases.push(local);
        self.listen_demux.insert(local, id.slot);
        Ok(())
    }

    /// Connections waiting in a listener's accept queue.
    pub fn accept_queue_len(&self, id: ListenerId) -> usize {
        self.listener(id).map_or(0, |l| l.accept.len())
    }

    pub fn listener_addr(&self, id: ListenerId) -> Result<SocketAddr, TcpError> {
        self.listener(id).map(|l| l.local)
    }

    fn listener(&self, id: ListenerId) -> Result<&Listener, TcpError> {
        match self.listeners.get(id.slot as usize) {
            Some(s) if s.generation == id.generation => {
                s.listener.as_ref().ok_or(TcpError::NotFound)
            }
            _ => Err(TcpError::NotFound),
        }
    }

    pub(super) fn listener_mut(&mut self, id: ListenerId) -> Result<&mut Listener, TcpError> {
        match self.listeners.get_mut(id.slot as usize) {
            Some(s) if s.generation == id.generation => {
                s.listener.as_mut().ok_or(TcpError::NotFound)
            }
            _ => Err(TcpError::NotFound),
        }
    }

    /// The name of the listener in `slot` (which `listen_demux` named).
    fn listener_id(&self, slot: u32) -> ListenerId {
        ListenerId {
            slot,
            generation: self.listeners[slot as usize].generation,
        }
    }

    /// Closes a listener: connections not yet accepted are reset.
    pub fn close_listener(&mut self, now: Instant, id: ListenerId, sink: &mut impl Sink) {
        let Ok(l) = self.listener_mut(id) else { return };
        let pending: Vec<TcpId> = l.accept.drain(..).collect();
        let local = l.local;
        let aliases = std::mem::take(&mut l.aliases);
        self.listen_demux.remove(&local);
        for a in aliases {
            self.listen_demux.remove(&a);
        }
        let s = &mut self.listeners[id.slot as usize];
        s.listener = None;
        s.generation = s.generation.wrapping_add(1);
        for c in pending {
            self.abort(now, c, sink);
        }
        // Half-open connections of the listener die with it.
        let orphans: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|i| self.slots[*i as usize].listener == Some(id))
            .collect();
        for i in orphans {
            let id = TcpId {
                slot: i,
                generation: self.slots[i as usize].generation,
            };
            self.abort(now, id, sink);
        }
    }

    pub(super) fn find_listener(&self, local: SocketAddr) -> Option<u32> {
        self.listen_demux
            .get(&local)
            .or_else(|| {
                self.listen_demux
                    .get(&SocketAddr::new(unspecified(local.ip()), local.port()))
            })
            .copied()
    }

    /// A SYN that may open a new incarnation of a flow in TIME-WAIT (see
    /// [`Conn::time_wait_yields_to`]) ends that TIME-WAIT when a listener
    /// will take the SYN, as Linux does: a client reuses its port as soon
    /// as its own end is closed, which for a server that closes first is
    /// long before our TIME-WAIT ends. A connection its application still
    /// holds is left alone.
    pub(super) fn time_wait_yields(&mut self, slot: u32, h: &Header) -> bool {
        let Some(c) = self.slots[slot as usize].conn.as_deref() else {
            return false;
        };
        if !c.orphan || !c.time_wait_yields_to(h) || self.find_listener(c.flow.local).is_none() {
            return false;
        }
        self.counters.time_wait_reopened += 1;
        self.remove(slot);
        true
    }

    /// RFC 9293 3.10.7.2 (LISTEN), with SYN cookies when the half-open
    /// queue is full and a clean refusal (no SYN-ACK) when the accept queue
    /// is.
    pub(super) fn listener_input(
        &mut self,
        now: Instant,
        lslot: u32,
        flow: Flow,
        h: &Header,
        payload: &[u8],
        sink: &mut impl Sink,
    ) {
        let f = h.flags;
        if f.rst() {
            return;
        }
        let lid = self.listener_id(lslot);
        // A field borrow: the cookie and counter fields stay usable.
        let Some(l) = self.listeners[lslot as usize].listener.as_mut() else {
            return;
        };
        if f.ack() && !f.syn() {
            // Only a cookie's answer can complete here.
            if l.cookies_until.is_some_and(|t| now <= t) {
                if let Some(mss) =
                    self.cookies
                        .check(flow.local, flow.remote, h.seq - 1u32, h.ack - 1u32, now)
                {
                    self.counters.syn_cookies_accepted += 1;
                    self.cookie_conn(now, lid, flow, h, payload, mss, sink);
                    return;
                }
                self.counters.syn_cookies_rejected += 1;
            }
            self.reset_for(sink, &flow, h, payload.len());
            return;
        }
        if !f.syn() || f.fin() {
            return;
        }
        if l.accept.len() >= l.backlog {
            // Linux drops the SYN: the peer retries later, and nothing it
            // is told must be taken back.
            self.counters.listen_overflows += 1;
            return;
        }
        if l.half_open >= l.backlog || self.live >= self.limits.max_connections {
            l.cookies_until = Some(now + std::time::Duration::from_secs(128));
            let peer_mss = h.mss.unwrap_or(536);
            let (iss, mss) = self.cookies.encode(
                flow.local,
                flow.remote,
                h.seq,
                peer_mss.min(l.mss as u16),
                now,
            );
            self.counters.syn_cookies_sent += 1;
            let mut r = Header {
                src_port: flow.local.port(),
                dst_port: flow.remote.port(),
                seq: iss,
                ack: h.seq + 1u32,
                flags: Flags::SYN | Flags::ACK,
                window: l.opts.recv_buffer.min(65535) as u16,
                mss: Some(mss),
                ..Header::default()
            };
            if let Some((val, _)) = h.timestamp {
                let ts = self
                    .isn
                    .timestamp_offset(flow.local, flow.remote)
                    .wrapping_add(now.millis() as u32);
                // The cookie keeps the peer's shift (what its windows are
                // scaled by); ours is recomputed from the buffer on the ACK.
                let tsval =
                    crate::tcp::cookie::encode_options(ts, h.window_scale, h.sack_permitted);
                r.timestamp = Some((tsval, val));
                r.sack_permitted = h.sack_permitted;
                if h.window_scale.is_some() {
                    r.window_scale = Some(l.opts.wscale());
                }
            }
            sink.segment(&flow, &r, Payload::empty());
            return;
        }
        let opts = l.opts;
        let mss = l.mss;
        l.half_open += 1;
        let iss = self.isn.isn(flow.local, flow.remote, now);
        let ts = self.isn.timestamp_offset(flow.local, flow.remote);
        let conn = Conn::accept(flow, opts, mss, iss, ts, h, now);
        self.counters.passive_opens += 1;
        let id = self.insert(conn, Some(lid));
        self.settle(now, id.slot);
    }

    /// The ACK that completes a cookie handshake makes the connection.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn cookie_conn(
        &mut self,
        now: Instant,
        lid: ListenerId,
        flow: Flow,
        h: &Header,
        payload: &[u8],
        mss: u16,
        sink: &mut impl Sink,
    ) {
        let Ok(l) = self.listener(lid) else {
            return;
        };
        let opts = l.opts;
        let cookie_opts = h
            .timestamp
            .map(|(_, ecr)| crate::tcp::cookie::decode_options(ecr));
        let ts = self.isn.timestamp_offset(flow.local, flow.remote);
        let conn = Conn::from_cookie(flow, opts, usize::from(mss), h, cookie_opts, ts, now);
        self.counters.passive_opens += 1;
        let id = self.insert(conn, Some(lid));
        // Never half-open here: straight to the accept queue.
        self.enqueue_accepted(lid, id);
        // No offload context can name a flow that had no connection: plain.
        let _ = self.with_conn(now, id, |c| c.on_segment(now, h, payload, Mark::Plain));
        let _ = sink;
    }

    /// A connection of a listener left SYN-RECEIVED: it is half-open no
    /// more (the one place where the count goes down), and waits to be
    /// accepted if it got established.
    pub(super) fn handshake_done(&mut self, slot: u32, established: bool) {
        let s = &self.slots[slot as usize];
        let Some(lid) = s.listener else { return };
        let id = TcpId {
            slot,
            generation: s.generation,
        };
        let Ok(l) = self.listener_mut(lid) else {
            return;
        };
        l.half_open = l.half_open.saturating_sub(1);
        if established {
            self.enqueue_accepted(lid, id);
        }
    }

    /// An established connection joins its listener's accept queue.
    fn enqueue_accepted(&mut self, lid: ListenerId, id: TcpId) {
        let Ok(l) = self.listener_mut(lid) else {
            return;
        };
        l.accept.push_back(id);
        if !l.event {
            l.event = true;
            self.events.push_back(Event::Accept(lid));
        }
    }
}
