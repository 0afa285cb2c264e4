//! The fake's service socket: the handoff channel and the capnp connection
//! bootstrapping `Net`, whose TCP socket, offload context and egress
//! capabilities record what they are asked and answer as netsrv would. The
//! test drives the callbacks (`OffloadEvents`, `EgressWatcher`) with [`Cmd`]s.

use super::{addr, Cmd, Pump, Shared, LOCAL, REMOTE, RING_BYTES, SEQ_BASE, UNSUPPORTED_SEQ};
use capnet_ring::bytering::socket_region_bytes;
use capnet_ring::handoff::{read_token, CONNECT_HANDOFF, CONNECT_RPC};
use capnet_ring::SocketRings;
use capnet_schema::errors::SocketError;
use capnet_schema::net_capnp::{
    egress, egress_watcher, net, subscription, tcp_socket, EgressReason,
};
use capnet_schema::offload_capnp::{offload_context, offload_events, OffloadKind as WireKind};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub fn serve_connection(shared: Arc<Shared>, mut stream: UnixStream) {
    let mut first = [0u8; 1];
    if stream.read_exact(&mut first).is_err() {
        return;
    }
    match first[0] {
        CONNECT_HANDOFF => {
            while let Ok(Some(token)) = read_token(stream.as_fd()) {
                if shared.handoff.answer(stream.as_fd(), &token).is_err() {
                    return;
                }
            }
        }
        CONNECT_RPC => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, async move {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                *shared.commands.lock().unwrap() = Some(tx);
                let state = Rc::new(RpcState::default());
                tokio::task::spawn_local(run_commands(state.clone(), rx));
                stream.set_nonblocking(true).unwrap();
                let stream = tokio::net::UnixStream::from_std(stream).unwrap();
                let bootstrap: net::Client = capnp_rpc::new_client(FakeNet { shared, state });
                let _ = capnet_schema::transport::serve(stream, bootstrap.client).await;
            });
        }
        _ => {}
    }
}

/// What the RPC thread keeps for the commands.
#[derive(Default)]
struct RpcState {
    context: RefCell<Option<Rc<ContextState>>>,
    watcher: RefCell<Option<egress_watcher::Client>>,
    egress_generation: Cell<u64>,
}

async fn run_commands(state: Rc<RpcState>, mut rx: tokio::sync::mpsc::UnboundedReceiver<Cmd>) {
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Cmd::ResyncRequest(seq) => {
                let events = state
                    .context
                    .borrow()
                    .as_ref()
                    .and_then(|c| c.events.borrow().clone());
                if let Some(events) = events {
                    let mut req = events.resync_request_request();
                    req.get().set_tcp_seq(seq);
                    req.send().promise.await.unwrap();
                }
            }
            Cmd::Revoke(reason) => {
                let ctx = state.context.borrow().clone();
                if let Some(ctx) = ctx {
                    *ctx.ended.borrow_mut() = Some(reason.clone());
                    let events = ctx.events.borrow_mut().take();
                    if let Some(events) = events {
                        let mut req = events.revoked_request();
                        req.get().set_reason(&reason);
                        req.send().promise.await.unwrap();
                    }
                }
            }
            Cmd::DriverDies => {
                let ctx = state.context.borrow().clone();
                if let Some(ctx) = ctx {
                    ctx.disconnected.set(true);
                    ctx.events.borrow_mut().take();
                }
            }
            Cmd::EgressChange(port) => {
                let watcher = state.watcher.borrow().clone();
                if let Some(w) = watcher {
                    state
                        .egress_generation
                        .set(state.egress_generation.get() + 1);
                    let mut req = w.changed_request();
                    let mut info = req.get().init_info();
                    info.set_port(port);
                    info.set_interface("bond0");
                    info.set_driver_epoch(1);
                    info.set_generation(state.egress_generation.get());
                    info.set_reason(EgressReason::Failover);
                    req.send().promise.await.unwrap();
                }
            }
            Cmd::EndSubscription => {
                state.watcher.borrow_mut().take();
            }
        }
    }
}

/// One offload context as the fake NIC keeps it (on the RPC thread).
struct ContextState {
    kind: WireKind,
    /// None: active; Some: revoked or released (the reason).
    ended: RefCell<Option<String>>,
    /// The driver "died": calls answer disconnected.
    disconnected: Cell<bool>,
    events: RefCell<Option<offload_events::Client>>,
}

struct FakeNet {
    shared: Arc<Shared>,
    state: Rc<RpcState>,
}

impl net::Server for FakeNet {
    async fn tcp_connect(
        self: capnp::capability::Rc<Self>,
        _: net::TcpConnectParams,
        mut results: net::TcpConnectResults,
    ) -> Result<(), capnp::Error> {
        let (end, wake_me, fds) = SocketRings::create(RING_BYTES).unwrap();
        *self.shared.pump.lock().unwrap() = Some(Pump {
            end,
            wake_me,
            written: 0,
            chunks_from: None,
            pending: VecDeque::new(),
            split_headers: false,
            bytes_up: 0,
            up_closed: false,
        });
        results.get().set_socket(capnp_rpc::new_client(FakeSocket {
            shared: self.shared.clone(),
            state: self.state.clone(),
            fds: Cell::new(Some(fds)),
        }));
        Ok(())
    }
}

struct FakeSocket {
    shared: Arc<Shared>,
    state: Rc<RpcState>,
    fds: Cell<Option<Vec<OwnedFd>>>,
}

fn write_info(mut b: capnet_schema::offload_capnp::offload_info::Builder<'_>, ctx: &ContextState) {
    b.set_id(7);
    b.set_port("sim0");
    b.set_driver_epoch(2);
    b.set_kind(ctx.kind);
    capnet_schema::offload::write_tcp_flow(
        b.reborrow().init_flow().init_tcp(),
        addr(LOCAL),
        addr(REMOTE),
        0,
    );
    b.set_state(if ctx.ended.borrow().is_some() {
        "revoked"
    } else {
        "active"
    });
}

impl tcp_socket::Server for FakeSocket {
    async fn open_rings(
        self: capnp::capability::Rc<Self>,
        _: tcp_socket::OpenRingsParams,
        mut results: tcp_socket::OpenRingsResults,
    ) -> Result<(), capnp::Error> {
        let fds = self
            .fds
            .take()
            .ok_or_else(|| SocketError::Invalid.to_capnp("rings already open"))?;
        let token = self.shared.handoff.offer(fds);
        let mut g = results.get().init_grant();
        g.set_token(&token.0);
        g.set_region_bytes(socket_region_bytes(RING_BYTES) as u64);
        g.set_ring_bytes(RING_BYTES);
        Ok(())
    }

    async fn offload(
        self: capnp::capability::Rc<Self>,
        params: tcp_socket::OffloadParams,
        mut results: tcp_socket::OffloadResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let request = p.get_request()?;
        let kind = request.get_kind()?;
        let capnet_schema::offload_capnp::offload_request::params::Tls(tls) =
            request.get_params().which()?
        else {
            return Err(SocketError::Invalid.to_capnp("offload: not TLS parameters"));
        };
        let tls = tls?;
        let offset = p.get_stream_offset();
        self.shared.seen.offloads.lock().unwrap().push((
            kind,
            offset,
            tls.get_record_seq(),
            tls.get_key()?.to_vec(),
        ));
        if tls.get_record_seq() == UNSUPPORTED_SEQ {
            return Err(SocketError::Unsupported.to_capnp("offload: sim0 has no TLS offload"));
        }
        // RX: the ring switches at once, the answer may come later.
        let ring_offset = if kind == WireKind::TlsRx {
            let mut pump = self.shared.pump.lock().unwrap();
            let pump = pump.as_mut().unwrap();
            *pump.chunks_from.get_or_insert(pump.written)
        } else {
            0
        };
        let delay = self.shared.offload_delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let ctx = Rc::new(ContextState {
            kind,
            ended: RefCell::new(None),
            disconnected: Cell::new(false),
            events: RefCell::new(Some(p.get_events()?)),
        });
        *self.state.context.borrow_mut() = Some(ctx.clone());
        let mut r = results.get();
        write_info(r.reborrow().init_info(), &ctx);
        r.set_context(capnp_rpc::new_client(FakeContext {
            shared: self.shared.clone(),
            state: ctx,
        }));
        r.set_ring_offset(ring_offset);
        r.set_tcp_seq(SEQ_BASE.wrapping_add(offset as u32));
        Ok(())
    }

    async fn offload_stop(
        self: capnp::capability::Rc<Self>,
        params: tcp_socket::OffloadStopParams,
        _: tcp_socket::OffloadStopResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        self.shared.seen.stops.lock().unwrap().push((
            p.get_kind()?,
            p.get_replacement_offset(),
            p.get_replacement()?.to_vec(),
        ));
        Ok(())
    }

    async fn send_unacked(
        self: capnp::capability::Rc<Self>,
        _: tcp_socket::SendUnackedParams,
        mut results: tcp_socket::SendUnackedResults,
    ) -> Result<(), capnp::Error> {
        // Everything read from the send ring, but the last 10 bytes.
        let up = self.shared.pump.lock().unwrap().as_ref().unwrap().bytes_up;
        results.get().set_offset(up.saturating_sub(10));
        Ok(())
    }

    async fn egress(
        self: capnp::capability::Rc<Self>,
        _: tcp_socket::EgressParams,
        mut results: tcp_socket::EgressResults,
    ) -> Result<(), capnp::Error> {
        results.get().set_egress(capnp_rpc::new_client(FakeEgress {
            state: self.state.clone(),
        }));
        Ok(())
    }
}

struct FakeContext {
    shared: Arc<Shared>,
    state: Rc<ContextState>,
}

impl FakeContext {
    fn check(&self) -> Result<(), capnp::Error> {
        if self.state.disconnected.get() {
            return Err(capnp::Error::disconnected("the driver went away".into()));
        }
        match &*self.state.ended.borrow() {
            None => Ok(()),
            Some(why) => {
                Err(SocketError::Revoked.to_capnp(format_args!("offload context 7: {why}")))
            }
        }
    }
}

impl Drop for FakeContext {
    fn drop(&mut self) {
        self.shared
            .seen
            .contexts_dropped
            .fetch_add(1, Ordering::Relaxed);
    }
}

impl offload_context::Server for FakeContext {
    async fn info(
        self: capnp::capability::Rc<Self>,
        _: offload_context::InfoParams,
        mut results: offload_context::InfoResults,
    ) -> Result<(), capnp::Error> {
        if self.state.disconnected.get() {
            self.check()?;
        }
        let mut info = results.get().init_info();
        write_info(info.reborrow(), &self.state);
        let seen = &self.shared.seen;
        info.set_resyncs(seen.resyncs.lock().unwrap().len() as u64);
        info.set_resync_requests(3);
        info.set_records(100);
        info.set_bytes(1_600_000);
        info.set_auth_failures(1);
        info.set_dropped(2);
        Ok(())
    }

    async fn resync(
        self: capnp::capability::Rc<Self>,
        params: offload_context::ResyncParams,
        _: offload_context::ResyncResults,
    ) -> Result<(), capnp::Error> {
        self.check()?;
        let p = params.get()?;
        if p.get_tcp_seq() == 0 {
            return Err(SocketError::Invalid.to_capnp("resync: not asked about 0"));
        }
        self.shared
            .seen
            .resyncs
            .lock()
            .unwrap()
            .push((p.get_tcp_seq(), p.get_record_seq()));
        Ok(())
    }

    async fn resync_reject(
        self: capnp::capability::Rc<Self>,
        params: offload_context::ResyncRejectParams,
        _: offload_context::ResyncRejectResults,
    ) -> Result<(), capnp::Error> {
        self.check()?;
        self.shared
            .seen
            .rejects
            .lock()
            .unwrap()
            .push(params.get()?.get_tcp_seq());
        Ok(())
    }

    async fn release(
        self: capnp::capability::Rc<Self>,
        _: offload_context::ReleaseParams,
        _: offload_context::ReleaseResults,
    ) -> Result<(), capnp::Error> {
        self.check()?;
        *self.state.ended.borrow_mut() = Some("released".into());
        self.state.events.borrow_mut().take();
        self.shared.seen.releases.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

struct FakeEgress {
    state: Rc<RpcState>,
}

struct FakeSubscription;

impl subscription::Server for FakeSubscription {}

impl egress::Server for FakeEgress {
    async fn subscribe(
        self: capnp::capability::Rc<Self>,
        params: egress::SubscribeParams,
        mut results: egress::SubscribeResults,
    ) -> Result<(), capnp::Error> {
        *self.state.watcher.borrow_mut() = Some(params.get()?.get_watcher()?);
        results
            .get()
            .set_subscription(capnp_rpc::new_client(FakeSubscription));
        Ok(())
    }
}
