//! `TcpSocket`: one TCP connection, its socket rings and its NIC offload.

use super::*;
use std::cell::Cell;

/// The longest linger a client may set: Linux's longest FIN-WAIT-2 wait
/// (`TCP_LINGER2`'s bound). A lingering `close` is a call held open that
/// long, counted against the client's calls in flight.
pub const MAX_LINGER: Duration = Duration::from_secs(120);

pub struct TcpSocketServer {
    shared: Rc<Shared>,
    id: SockId,
    account: Rc<Account>,
    /// The socket and its buffers (and rings, once open).
    charge: RefCell<Option<Charge>>,
    /// SO_LINGER: `Some(0)` resets on close, `Some(t)` lets `close` wait
    /// up to `t` for the peer to acknowledge everything.
    linger: Cell<Option<Duration>>,
    /// `close` was called: every later call fails with `closed`.
    closed: Cell<bool>,
    /// The client's pool of ring sets, and the client's side of this
    /// socket's set, for the pool once the stack is done with it.
    rings: Rc<RingPool>,
    kept: RefCell<Option<Kept>>,
    /// An arena slot's hold, until the client lets go of the socket.
    slot_hold: RefCell<Option<capnet_ring::SlotHold>>,
}

impl TcpSocketServer {
    pub(super) fn new(
        shared: Rc<Shared>,
        id: SockId,
        account: Rc<Account>,
        charge: Charge,
        rings: Rc<RingPool>,
    ) -> TcpSocketServer {
        TcpSocketServer {
            shared,
            id,
            account,
            charge: RefCell::new(Some(charge)),
            linger: Cell::new(None),
            closed: Cell::new(false),
            rings,
            kept: RefCell::new(None),
            slot_hold: RefCell::new(None),
        }
    }

    /// Fails with `closed` once the client closed the socket (as a call on
    /// a closed fd fails with EBADF).
    fn check_open(&self, what: &str) -> Result<(), Error> {
        if self.closed.get() {
            return Err(SocketError::Closed.to_capnp(format_args!("{what}: the socket is closed")));
        }
        Ok(())
    }

    /// `openRings` with `arena`: a slot of the client's arena, charged as a
    /// set of rings.
    fn open_arena_slot(
        &self,
        mapped: bool,
        mut results: tcp_socket::OpenRingsResults,
    ) -> Result<(), Error> {
        let slots = self
            .account
            .socket_limit()
            .map_or(u32::MAX, |n| u32::try_from(n).unwrap_or(u32::MAX));
        let opened = self
            .rings
            .arena_slot(&self.shared, slots, self.id, mapped)
            .map_err(|e| SocketError::Busy.to_capnp(format_args!("shared memory: {e}")))?
            .ok_or_else(|| {
                SocketError::Limit.to_capnp("openRings: every slot of the client's arena is held")
            })?;
        // Charged once the slot is had: a refusal costs nothing, and a slot
        // refused the charge goes back as `opened` drops.
        {
            let mut charge = self.charge.borrow_mut();
            let Some(charge) = charge.as_mut() else {
                return Err(SocketError::Closed.to_capnp("openRings"));
            };
            charge.add_buffer(2 * SOCKET_RING_BYTES as usize)?;
        }
        self.attach(opened.end, |c| c.ring_arena_slots += 1)?;
        *self.slot_hold.borrow_mut() = Some(opened.hold);
        let mut r = results.get();
        let mut g = r.reborrow().init_grant();
        self.write_grant(g.reborrow(), opened.offer);
        g.set_region_bytes(opened.layout.bytes() as u64);
        let mut set = r.init_set();
        set.set_in_arena(true);
        set.set_arena_slot(opened.slot);
        set.set_arena_slots(opened.layout.slots);
        Ok(())
    }

    /// Moves the socket's data onto `rings`, counted by `count`.
    fn attach(
        &self,
        rings: capnet_ring::ServerEnd,
        count: impl FnOnce(&mut crate::stack::StackCounters),
    ) -> Result<(), Error> {
        let id = self.id;
        self.shared.now(
            |s| {
                s.tcp_attach_rings(id, rings)?;
                count(&mut s.counters);
                Ok(())
            },
            "openRings",
        )
    }

    /// An `openRings` grant: the rings' capacity, and a token for `offer`'s
    /// descriptors if the client is to get any.
    fn write_grant(
        &self,
        mut g: capnet_schema::common_capnp::ring_grant::Builder<'_>,
        offer: Option<Vec<std::os::fd::OwnedFd>>,
    ) {
        if let Some(fds) = offer {
            g.set_token(&self.shared.handoff.offer(fds).0);
        }
        g.set_ring_bytes(SOCKET_RING_BYTES);
    }

    /// Lets the stack have the socket: a reset with a linger of 0, else the
    /// graceful close in the background.
    fn let_go(&self, stack: &mut Stack) {
        if self.linger.get() == Some(Duration::ZERO) {
            stack.tcp_abort(self.id);
        } else {
            stack.tcp_release(self.id);
        }
    }
}

impl Drop for TcpSocketServer {
    fn drop(&mut self) {
        if let Some(charge) = self.charge.borrow_mut().take() {
            let rings = self.kept.borrow_mut().take();
            self.shared.lingering.borrow_mut().push(Lingering {
                id: self.id,
                charge,
                rings: rings.map(|fds| (self.rings.clone(), fds)),
            });
        }
        if let Ok(mut stack) = self.shared.stack.try_borrow_mut() {
            if !self.closed.get() {
                self.let_go(&mut stack);
            }
        }
        self.shared.kick.notify_one();
    }
}

impl tcp_socket::Server for TcpSocketServer {
    async fn read(
        self: CapRc<Self>,
        params: tcp_socket::ReadParams,
        mut results: tcp_socket::ReadResults,
    ) -> Result<(), Error> {
        self.check_open("read")?;
        let _call = self.account.call()?;
        let max = params.get()?.get_max().min(MAX_IO) as usize;
        let id = self.id;
        let data = self
            .shared
            .wait_for(|s| s.tcp_read(id, max), "read")
            .await?;
        results.get().set_data(&data);
        Ok(())
    }

    async fn write(
        self: CapRc<Self>,
        params: tcp_socket::WriteParams,
        mut results: tcp_socket::WriteResults,
    ) -> Result<(), Error> {
        self.check_open("write")?;
        let _call = self.account.call()?;
        let data = params.get()?.get_data()?;
        if data.is_empty() {
            results.get().set_written(0);
            return Ok(());
        }
        let id = self.id;
        let n = self
            .shared
            .wait_for(|s| s.tcp_write(id, data), "write")
            .await?;
        results.get().set_written(n as u32);
        Ok(())
    }

    async fn shutdown(
        self: CapRc<Self>,
        params: tcp_socket::ShutdownParams,
        _: tcp_socket::ShutdownResults,
    ) -> Result<(), Error> {
        self.check_open("shutdown")?;
        let how = params.get()?.get_how()?;
        let (read, write) = match how {
            Shutdown::Read => (true, false),
            Shutdown::Write => (false, true),
            Shutdown::Both => (true, true),
        };
        let id = self.id;
        self.shared
            .now(|s| s.tcp_shutdown(id, read, write), "shutdown")
    }

    async fn close(
        self: CapRc<Self>,
        _: tcp_socket::CloseParams,
        _: tcp_socket::CloseResults,
    ) -> Result<(), Error> {
        self.check_open("close")?;
        let linger = self.linger.get().filter(|t| !t.is_zero());
        // A lingering close is a call held open: counted as one in flight
        // (and refused with `limit`, the socket still open, past the bound).
        let _call = match linger {
            Some(_) => Some(self.account.call()?),
            None => None,
        };
        self.closed.set(true);
        self.shared.now(
            |s| {
                self.let_go(s);
                Ok(())
            },
            "close",
        )?;
        let Some(linger) = linger else {
            return Ok(());
        };
        // SO_LINGER: wait for the peer to take everything, up to the
        // linger; the close goes on in the background after that (Linux
        // `sk_stream_wait_close`).
        let id = self.id;
        let _ = tokio::time::timeout(
            linger,
            self.shared.wait_for(|s| s.tcp_close_done(id), "close"),
        )
        .await;
        Ok(())
    }

    async fn set_linger(
        self: CapRc<Self>,
        params: tcp_socket::SetLingerParams,
        _: tcp_socket::SetLingerResults,
    ) -> Result<(), Error> {
        self.check_open("setLinger")?;
        let p = params.get()?;
        let timeout = Duration::from_millis(p.get_timeout_ms().into());
        if p.get_on() && timeout > MAX_LINGER {
            return Err(SocketError::Invalid.to_capnp(format_args!(
                "setLinger: {} ms is longer than the longest linger, {} ms",
                timeout.as_millis(),
                MAX_LINGER.as_millis()
            )));
        }
        self.linger.set(p.get_on().then_some(timeout));
        Ok(())
    }

    async fn set_no_delay(
        self: CapRc<Self>,
        params: tcp_socket::SetNoDelayParams,
        _: tcp_socket::SetNoDelayResults,
    ) -> Result<(), Error> {
        self.check_open("setNoDelay")?;
        let on = params.get()?.get_on();
        let id = self.id;
        self.shared
            .now(|s| s.tcp_set_no_delay(id, on), "setNoDelay")
    }

    async fn info(
        self: CapRc<Self>,
        _: tcp_socket::InfoParams,
        mut results: tcp_socket::InfoResults,
    ) -> Result<(), Error> {
        self.check_open("info")?;
        let id = self.id;
        let (local, remote, state) = self.shared.now(|s| s.tcp_info(id), "info")?;
        let mut r = results.get();
        if let Some(a) = local {
            write_socket_addr(r.reborrow().init_local(), a);
        }
        if let Some(a) = remote {
            write_socket_addr(r.reborrow().init_remote(), a);
        }
        r.set_state(&state);
        Ok(())
    }

    async fn open_rings(
        self: CapRc<Self>,
        params: tcp_socket::OpenRingsParams,
        mut results: tcp_socket::OpenRingsResults,
    ) -> Result<(), Error> {
        self.check_open("openRings")?;
        let p = params.get()?;
        if p.get_arena() {
            return self.open_arena_slot(p.get_arena_mapped(), results);
        }
        let held = read_held(p)?;
        let mut slot = self.charge.borrow_mut();
        let Some(charge) = slot.as_mut() else {
            return Err(SocketError::Closed.to_capnp("openRings"));
        };
        let shm_err = |e| SocketError::Busy.to_capnp(format_args!("shared memory: {e}"));
        // A reused set brings its charge; a new one is admitted first.
        let mut opened = match self.rings.take_idle(&held).map_err(shm_err)? {
            Some(opened) => opened,
            None => {
                charge.add_buffer(2 * SOCKET_RING_BYTES as usize)?;
                self.rings.create().map_err(shm_err)?
            }
        };
        let reused = opened.charge.is_some();
        let mapped = opened.offer.is_none();
        let set_id = opened.id();
        if let Some(rings) = opened.charge.take() {
            charge.absorb(rings);
        }
        drop(slot);
        let server_end = opened.end;
        let mut kept = opened.kept;
        kept.hand_to(&self.shared, self.id)
            .map_err(|e| SocketError::Busy.to_capnp(format_args!("doorbell: {e}")))?;
        self.attach(server_end, |c| {
            match reused {
                true => c.ring_sets_reused += 1,
                false => c.ring_sets_made += 1,
            }
            if mapped {
                c.ring_sets_still_mapped += 1;
            }
        })?;
        *self.kept.borrow_mut() = Some(kept);
        let mut r = results.get();
        self.write_grant(r.reborrow().init_grant(), opened.offer);
        let mut set = r.init_set();
        set.set_id(set_id);
        set.set_reused(mapped);
        let gone = self.rings.gone(&held);
        let mut list = set.init_gone(gone.len() as u32);
        for (i, id) in gone.into_iter().enumerate() {
            list.set(i as u32, id);
        }
        Ok(())
    }

    async fn egress(
        self: CapRc<Self>,
        _: tcp_socket::EgressParams,
        mut results: tcp_socket::EgressResults,
    ) -> Result<(), Error> {
        self.check_open("egress")?;
        let id = self.id;
        // Fails with `closed` for a socket that is gone.
        self.shared
            .now(|s| s.egress_of_socket(id).map(|_| ()), "egress")?;
        results.get().set_egress(crate::egress::client(
            &self.shared,
            crate::egress::Target::Socket(id),
            &self.account,
        ));
        Ok(())
    }

    async fn offload(
        self: CapRc<Self>,
        params: tcp_socket::OffloadParams,
        mut results: tcp_socket::OffloadResults,
    ) -> Result<(), Error> {
        self.check_open("offload")?;
        let _call = self.account.call()?;
        let p = params.get()?;
        let request = p.get_request()?;
        let kind = request.get_kind()?;
        let offset = p.get_stream_offset();
        let events = p.get_events()?;
        let id = self.id;
        let tx = match kind {
            OffloadKind::TlsTx => true,
            OffloadKind::TlsRx => false,
            _ => {
                return Err(SocketError::Unsupported.to_capnp(format_args!(
                    "offload: netsrv binds no {} context to a TCP connection",
                    kind_name(kind)
                )))
            }
        };
        let offload_request::params::Tls(tls) = request.get_params().which()? else {
            return Err(SocketError::Invalid.to_capnp(format_args!(
                "offload: a {} context takes TLS parameters",
                kind_name(kind)
            )));
        };
        let tls = tls?;
        tracing::debug!(id, ?kind, offset, "offload");
        let egress = self.shared.now(|s| s.egress_of_socket(id), "offload")?;
        let Some(port) = egress.port else {
            return Err(SocketError::Busy.to_capnp("offload: no egress port now"));
        };
        // A port without the feature is answered here: no call to its
        // driver, no receive-side switch.
        if !self.shared.stack.borrow().port_offers(&port, kind) {
            return Err(SocketError::Unsupported.to_capnp(format_args!(
                "offload: port {port} offers no {} offload",
                kind_name(kind)
            )));
        }
        let nic = self.shared.nic(&port).ok_or_else(|| {
            SocketError::Busy.to_capnp(format_args!("offload: port {port} has no driver now"))
        })?;
        let tuple = self.shared.now(|s| s.tcp_tuple(id), "offload")?;
        let seq = self
            .shared
            .now(|s| s.tcp_seq_at(id, tx, offset), "offload")?;
        let reach = self.shared.now(|s| s.tcp_send_buffer(id), "offload")?;
        // RX: expect marks before the NIC can mark anything.
        if !tx {
            self.shared
                .stack
                .borrow_mut()
                .tcp_bind_rx(id)
                .map_err(|e| SocketError::Invalid.to_capnp(format_args!("offload: {e}")))?;
        }
        let mut req = nic.offload_request();
        {
            let mut r = req.get();
            let mut q = r.reborrow().init_request();
            q.set_kind(kind);
            write_tcp_flow(
                q.reborrow().init_flow().init_tcp(),
                tuple.local,
                tuple.remote,
                reach,
            );
            q.reborrow().get_params().set_tls(tls)?;
            if let offload_request::params::Tls(t) = q.get_params().which()? {
                t?.set_tcp_seq(seq);
            }
            r.set_events(events);
        }
        let answer = crate::driver::deadline("offload", req.send().promise)
            .await
            .map_err(|e| SocketError::Busy.to_capnp(e));
        let resp = match answer {
            Ok(r) => r,
            Err(e) => {
                if !tx {
                    let _ = self.shared.stack.borrow_mut().tcp_cancel_rx(id);
                }
                tracing::debug!(id, ?kind, %e, "the NIC refused an offload context");
                return Err(e);
            }
        };
        let resp = resp.get()?;
        let info = resp.get_info()?;
        let ring_offset = if tx {
            0
        } else {
            self.shared.now(|s| s.tcp_confirm_rx(id), "offload")?
        };
        if tx {
            let binding = TxBinding {
                port: port.clone(),
                epoch: egress.epoch,
                context: info.get_id(),
                start: offset,
            };
            self.shared
                .stack
                .borrow_mut()
                .tcp_bind_tx(id, binding)
                .map_err(|e| SocketError::Invalid.to_capnp(format_args!("offload: {e}")))?;
        }
        tracing::info!(id, %port, ?kind, context = info.get_id(), seq, offset, "connection bound to an offload context");
        let mut r = results.get();
        r.set_context(resp.get_context()?);
        r.set_info(info)?;
        r.set_ring_offset(ring_offset);
        r.set_tcp_seq(seq);
        self.shared.kick.notify_one();
        Ok(())
    }

    async fn offload_stop(
        self: CapRc<Self>,
        params: tcp_socket::OffloadStopParams,
        _: tcp_socket::OffloadStopResults,
    ) -> Result<(), Error> {
        self.check_open("offloadStop")?;
        let _call = self.account.call()?;
        let p = params.get()?;
        let id = self.id;
        if p.get_kind()? == OffloadKind::TlsRx {
            return self.shared.now(|s| s.tcp_unbind_rx(id), "offloadStop");
        }
        let bytes = p.get_replacement()?.to_vec();
        let start = p.get_replacement_offset();
        let old = self
            .shared
            .now(|s| s.tcp_unbind_tx(id, start, bytes), "offloadStop")?;
        let Some(old) = old else {
            return Ok(());
        };
        // The drain: every descriptor sent on the old port before now (some
        // may name the context) must come back before the context goes.
        let began = std::time::Instant::now();
        let mark = self
            .shared
            .stack
            .borrow_mut()
            .port_tx_progress(&old.port, old.epoch)
            .map(|(sent, _)| sent);
        if let Some(mark) = mark {
            loop {
                let progress = self
                    .shared
                    .stack
                    .borrow_mut()
                    .port_tx_progress(&old.port, old.epoch);
                match progress {
                    Some((_, returned)) if returned < mark => {}
                    // Returned, or the driver instance is gone.
                    _ => break,
                }
                if began.elapsed() > Duration::from_secs(5) {
                    return Err(SocketError::Busy.to_capnp(format_args!(
                        "offloadStop: port {} kept descriptors of context {} for 5 s",
                        old.port, old.context
                    )));
                }
                self.shared.kick.notify_one();
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
        tracing::info!(
            id,
            port = %old.port,
            context = old.context,
            drain_us = began.elapsed().as_micros() as u64,
            "connection unbound from its TX context; drained"
        );
        Ok(())
    }

    async fn send_unacked(
        self: CapRc<Self>,
        _: tcp_socket::SendUnackedParams,
        mut results: tcp_socket::SendUnackedResults,
    ) -> Result<(), Error> {
        self.check_open("sendUnacked")?;
        let id = self.id;
        let offset = self.shared.now(|s| s.tcp_send_unacked(id), "sendUnacked")?;
        results.get().set_offset(offset);
        Ok(())
    }
}
