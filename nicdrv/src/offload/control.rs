//! The control plane's half of the offload contexts: `Nic.offload`,
//! `Nic.offloadContexts`, and the `OffloadContext` capability served
//! through a revocable proxy.
//!
//! The proxy is a [`Context`] shared (`Rc<RefCell<..>>`) by the capnp server
//! object and the driver's context table: the driver marks it revoked, the
//! server object answers `revoked` from then on. Dropping the server object
//! (the holder let go, or its connection died) deletes the context.

use super::{tls, CmdError, ContextStats, Engine, Flow, InstallError, Matches, NewContext};
use crate::dataplane::{Cmd, Handle, Shared};
use capnet_schema::errors::SocketError;
use capnet_schema::nic_capnp::nic;
use capnet_schema::offload::{kind_name, read_flow, write_flow, OffloadFlow};
use capnet_schema::offload_capnp::{
    offload_context, offload_events, offload_info, offload_request, OffloadKind,
};
use capnet_schema::transport::{within, NOTICE_DEADLINE};
use capnp::capability::Rc as CapRc;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// How long a shutting-down driver waits for holders to take their
/// `revoked` calls.
const SHUTDOWN_NOTICE: Duration = Duration::from_secs(1);

/// What the port offers (from the command line).
#[derive(Clone, Debug)]
pub struct OffloadConfig {
    pub port: String,
    pub epoch: u32,
    /// The kinds it offers, in `PortInfo.offloads` order.
    pub offered: Vec<OffloadKind>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Life {
    Active,
    /// Taken away by the driver (the reason).
    Revoked(String),
    /// Released or dropped by the holder.
    Released,
}

/// The proxy state of one context.
pub struct Context {
    id: u32,
    kind: OffloadKind,
    flow: Flow,
    /// `TcpFlow.txReach`, as the holder gave it.
    tx_reach: u32,
    life: Life,
    /// The holder's callbacks; dropped when the context ends.
    events: Option<offload_events::Client>,
    stats: Arc<ContextStats>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("flow", &self.flow)
            .field("life", &self.life)
            .finish()
    }
}

impl Context {
    fn state(&self) -> &'static str {
        match self.life {
            Life::Active => "active",
            Life::Revoked(_) => "revoked",
            Life::Released => "released",
        }
    }

    /// Ok while active; the `revoked` error after.
    fn check_active(&self) -> Result<(), capnp::Error> {
        match &self.life {
            Life::Active => Ok(()),
            Life::Revoked(why) => Err(SocketError::Revoked.to_capnp(format_args!(
                "offload context {} was revoked: {why}",
                self.id
            ))),
            Life::Released => Err(SocketError::Revoked
                .to_capnp(format_args!("offload context {} was released", self.id))),
        }
    }
}

/// An `OffloadRequest`, read and checked, with the engine it asks for.
pub struct Request {
    flow: Flow,
    kind: OffloadKind,
    tx_reach: u32,
    engine: Box<dyn Engine>,
}

/// Reads and checks a request for a port of `cfg`: `unsupported` for a
/// kind it does not offer or what its engines cannot do, `invalid` for a
/// flow or parameters that do not suit the kind.
pub fn read_request(
    cfg: &OffloadConfig,
    r: offload_request::Reader<'_>,
) -> Result<Request, capnp::Error> {
    let invalid = |m: String| SocketError::Invalid.to_capnp(m);
    let kind = r
        .get_kind()
        .map_err(|e| invalid(format!("offload kind {}", e.0)))?;
    if !cfg.offered.contains(&kind) {
        return Err(SocketError::Unsupported.to_capnp(format_args!(
            "port {} offers no {} offload",
            cfg.port,
            kind_name(kind)
        )));
    }
    let (flow, tx_reach) = match read_flow(r.get_flow()?)? {
        OffloadFlow::Tcp {
            local,
            remote,
            tx_reach,
        } => (Flow { local, remote }, tx_reach),
        OffloadFlow::Esp(_) => {
            return Err(invalid(format!(
                "a {} context is for a TCP flow, not an ESP SA",
                kind_name(kind)
            )))
        }
    };
    flow.check().map_err(invalid)?;
    use offload_request::params::Which as P;
    let engine = match (kind, r.get_params().which()?) {
        (OffloadKind::TlsTx | OffloadKind::TlsRx, P::Tls(t)) => {
            tls::engine(kind, tls::read_params(t?)?, tx_reach)
        }
        _ => {
            return Err(invalid(format!(
                "the parameters do not suit a {} context",
                kind_name(kind)
            )))
        }
    };
    Ok(Request {
        flow,
        kind,
        tx_reach,
        engine,
    })
}

type Notice = Pin<Box<dyn Future<Output = ()>>>;

/// Every context of the driver instance, and what makes new ones.
pub struct Offloads {
    cfg: OffloadConfig,
    dp: Handle,
    shared: Arc<Shared>,
    /// The next context id: non-zero, never reused.
    next_id: Cell<u32>,
    contexts: RefCell<BTreeMap<u32, Rc<RefCell<Context>>>>,
}

impl fmt::Debug for Offloads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Offloads")
            .field("cfg", &self.cfg)
            .field(
                "contexts",
                &self.contexts.borrow().values().collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Offloads {
    pub fn new(cfg: OffloadConfig, dp: Handle, shared: Arc<Shared>) -> Rc<Offloads> {
        Rc::new(Offloads {
            cfg,
            dp,
            shared,
            next_id: Cell::new(1),
            contexts: RefCell::new(BTreeMap::new()),
        })
    }

    pub fn config(&self) -> &OffloadConfig {
        &self.cfg
    }

    fn alloc_id(&self) -> Result<u32, capnp::Error> {
        let id = self.next_id.get();
        if id == 0 {
            return Err(
                SocketError::Busy.to_capnp("this driver instance has used every context id")
            );
        }
        self.next_id.set(id.wrapping_add(1));
        Ok(id)
    }

    /// `Nic.offload`.
    pub async fn offload(
        self: Rc<Self>,
        params: nic::OffloadParams,
        mut results: nic::OffloadResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let req = read_request(&self.cfg, p.get_request()?)?;
        let events = p.get_events()?;
        let session = self.shared.session.load(Ordering::SeqCst);
        if session == 0 {
            return Err(SocketError::Busy.to_capnp(format_args!(
                "no ring session holds port {}: a context lives in one",
                self.cfg.port
            )));
        }
        let taken = self.contexts.borrow().values().any(|c| {
            let c = c.borrow();
            c.life == Life::Active && c.kind == req.kind && c.flow == req.flow
        });
        if taken {
            return Err(SocketError::Invalid.to_capnp(format_args!(
                "flow {} already has a {} context",
                req.flow,
                kind_name(req.kind)
            )));
        }
        let id = self.alloc_id()?;
        let stats = Arc::new(ContextStats::default());
        let ctx = Rc::new(RefCell::new(Context {
            id,
            kind: req.kind,
            flow: req.flow,
            tx_reach: req.tx_reach,
            life: Life::Active,
            events: Some(events),
            stats: stats.clone(),
        }));
        // In the table before the data plane has it: a revocation that
        // comes between the two finds it.
        self.contexts.borrow_mut().insert(id, ctx.clone());
        let (tx, rx) = oneshot::channel();
        let sent = self.dp.send(Cmd::OffloadInstall {
            session,
            ctx: Box::new(NewContext {
                id,
                flow: Matches::Tcp(req.flow),
                engine: req.engine,
                stats,
            }),
            done: tx,
        });
        let installed = if sent { rx.await.ok() } else { None };
        let failure = match installed {
            Some(Ok(())) => ctx.borrow().check_active().err(),
            None => Some(capnp::Error::failed("the data plane has stopped".into())),
            Some(Err(InstallError::NoSession)) => Some(SocketError::Busy.to_capnp(format_args!(
                "the ring session of port {} ended",
                self.cfg.port
            ))),
            Some(Err(InstallError::Duplicate)) => {
                Some(SocketError::Invalid.to_capnp(format_args!(
                    "flow {} already has a {} context",
                    req.flow,
                    kind_name(req.kind)
                )))
            }
        };
        if let Some(e) = failure {
            self.contexts.borrow_mut().remove(&id);
            let mut c = ctx.borrow_mut();
            c.events = None;
            if c.life == Life::Active {
                c.life = Life::Released;
            }
            return Err(e);
        }
        tracing::info!(
            id,
            kind = kind_name(req.kind),
            flow = %req.flow,
            port = %self.cfg.port,
            "offload context created"
        );
        let client: offload_context::Client = capnp_rpc::new_client(ContextServer {
            offloads: self.clone(),
            ctx: ctx.clone(),
        });
        let mut r = results.get();
        r.set_context(client);
        self.fill_info(&ctx.borrow(), r.init_info());
        Ok(())
    }

    /// `Nic.offloadContexts`.
    pub fn offload_contexts(&self, mut results: nic::OffloadContextsResults) {
        let table = self.contexts.borrow();
        let mut list = results.get().init_contexts(table.len() as u32);
        for (i, c) in table.values().enumerate() {
            self.fill_info(&c.borrow(), list.reborrow().get(i as u32));
        }
    }

    fn fill_info(&self, c: &Context, mut b: offload_info::Builder<'_>) {
        b.set_id(c.id);
        b.set_port(self.cfg.port.as_str());
        b.set_driver_epoch(self.cfg.epoch);
        b.set_kind(c.kind);
        write_flow(
            b.reborrow().init_flow(),
            &OffloadFlow::Tcp {
                local: c.flow.local,
                remote: c.flow.remote,
                tx_reach: c.tx_reach,
            },
        );
        b.set_state(c.state());
        let s = c.stats.snapshot();
        b.set_records(s.records);
        b.set_bytes(s.bytes);
        b.set_resync_requests(s.resync_requests);
        b.set_resyncs(s.resyncs);
        b.set_auth_failures(s.auth_failures);
        b.set_dropped(s.dropped);
    }

    /// The driver takes contexts away (their engines are gone already, or
    /// go with a command queued after this): each active one is marked
    /// revoked and its holder told once. The returned calls are on their way;
    /// await them to know the holders got them.
    fn revoke(&self, ids: &[u32], reason: &str) -> Vec<Notice> {
        let found: Vec<Rc<RefCell<Context>>> = {
            let table = self.contexts.borrow();
            ids.iter().filter_map(|id| table.get(id).cloned()).collect()
        };
        let mut notices = Vec::new();
        for ctx in found {
            let events = {
                let mut c = ctx.borrow_mut();
                if c.life != Life::Active {
                    continue;
                }
                c.life = Life::Revoked(reason.to_string());
                tracing::info!(
                    id = c.id,
                    kind = kind_name(c.kind),
                    flow = %c.flow,
                    port = %self.cfg.port,
                    reason,
                    "offload context revoked"
                );
                c.events.take()
            };
            let Some(events) = events else { continue };
            let id = ctx.borrow().id;
            let mut req = events.revoked_request();
            req.get().set_reason(reason);
            let promise = req.send().promise;
            notices.push(Box::pin(async move {
                if let Err(e) = within(NOTICE_DEADLINE, "revoked", promise).await {
                    tracing::warn!(id, %e, "telling the holder of a revoked offload context failed");
                }
                drop(events);
            }) as Notice);
        }
        notices
    }

    /// The data plane deleted these contexts (the ring session ended).
    pub fn revoked_by_data_plane(&self, ids: &[u32], reason: &str) {
        for n in self.revoke(ids, reason) {
            tokio::task::spawn_local(n);
        }
    }

    /// The RX engine of context `id` asks its holder about a record header
    /// candidate at `tcp_seq` (fire and forget).
    pub fn resync_requested(&self, id: u32, tcp_seq: u32) {
        let events = {
            let table = self.contexts.borrow();
            let Some(ctx) = table.get(&id) else { return };
            let c = ctx.borrow();
            if c.life != Life::Active {
                return;
            }
            c.events.clone()
        };
        let Some(events) = events else { return };
        tracing::debug!(id, tcp_seq, "resync request");
        let mut req = events.resync_request_request();
        req.get().set_tcp_seq(tcp_seq);
        let promise = req.send().promise;
        tokio::task::spawn_local(async move {
            if let Err(e) = within(NOTICE_DEADLINE, "resyncRequest", promise).await {
                tracing::warn!(id, tcp_seq, %e, "resyncRequest to the holder failed");
            }
        });
    }

    /// The driver is stopping: every context is revoked, the data plane
    /// deletes their engines, and the holders get a bounded time to hear it.
    pub async fn shutdown(&self) {
        let ids: Vec<u32> = self.contexts.borrow().keys().copied().collect();
        let reason = "the driver is shutting down";
        let notices = self.revoke(&ids, reason);
        let (tx, rx) = oneshot::channel();
        if self.dp.send(Cmd::OffloadRevokeAll {
            reason,
            done: Some(tx),
        }) {
            let _ = rx.await;
        }
        if !notices.is_empty() {
            let all = futures::future::join_all(notices);
            if tokio::time::timeout(SHUTDOWN_NOTICE, all).await.is_err() {
                tracing::warn!("some offload holders did not take their revocation in time");
            }
        }
    }

    /// The data plane deleted a context the holder dropped: it leaves the
    /// table (a revoked one already left the data plane, and left the table
    /// when dropped).
    pub fn deleted(&self, id: u32) {
        let mut table = self.contexts.borrow_mut();
        if table
            .get(&id)
            .is_some_and(|c| c.borrow().life == Life::Released)
        {
            table.remove(&id);
        }
    }

    fn forget(&self, id: u32) {
        self.contexts.borrow_mut().remove(&id);
    }

    /// The holder ended a context (release or drop): everything it held is
    /// let go. An active one stays in the table (state `released`) until
    /// the data plane has deleted it; an inactive one leaves at once.
    /// Returns whether it was active.
    fn end(&self, ctx: &Rc<RefCell<Context>>, how: &str) -> bool {
        let (id, was_active) = {
            let mut c = ctx.borrow_mut();
            let was_active = c.life == Life::Active;
            if was_active {
                c.life = Life::Released;
                tracing::info!(
                    id = c.id,
                    kind = kind_name(c.kind),
                    flow = %c.flow,
                    port = %self.cfg.port,
                    how,
                    "offload context released"
                );
            }
            c.events = None;
            (c.id, was_active)
        };
        if !was_active {
            self.forget(id);
        }
        was_active
    }

    async fn data_plane<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Cmd,
    ) -> Result<T, capnp::Error> {
        let (tx, rx) = oneshot::channel();
        if !self.dp.send(make(tx)) {
            return Err(capnp::Error::failed("the data plane has stopped".into()));
        }
        rx.await
            .map_err(|_| capnp::Error::failed("the data plane has stopped".into()))
    }
}

/// The kinds that track records (PDUs) in a received TCP stream and resync.
const STREAM_RX: [OffloadKind; 2] = [OffloadKind::TlsRx, OffloadKind::NvmeTcpRx];

/// The `OffloadContext` capability of one context.
struct ContextServer {
    offloads: Rc<Offloads>,
    ctx: Rc<RefCell<Context>>,
}

impl ContextServer {
    /// The context's id while it is active and of one of `kinds`: a call
    /// of those kinds only is `invalid` on another.
    fn active_of(&self, call: &str, kinds: &[OffloadKind]) -> Result<u32, capnp::Error> {
        let c = self.ctx.borrow();
        c.check_active()?;
        if !kinds.contains(&c.kind) {
            let names: Vec<&str> = kinds.iter().map(|k| kind_name(*k)).collect();
            return Err(SocketError::Invalid.to_capnp(format_args!(
                "offload context {} is {}: {call} is for {} contexts",
                c.id,
                kind_name(c.kind),
                names.join(" and ")
            )));
        }
        Ok(c.id)
    }

    async fn resync(&self, tcp_seq: u32, rec_seq: Option<u64>) -> Result<(), capnp::Error> {
        let call = if rec_seq.is_some() {
            "resync"
        } else {
            "resyncReject"
        };
        let id = self.active_of(call, &STREAM_RX)?;
        let r = self
            .offloads
            .data_plane(|done| Cmd::OffloadResync {
                id,
                tcp_seq,
                rec_seq,
                done,
            })
            .await?;
        match r {
            Ok(()) => Ok(()),
            Err(CmdError::Engine(m)) => Err(SocketError::Invalid.to_capnp(m)),
            Err(CmdError::WrongKind(kind)) => Err(SocketError::Invalid.to_capnp(format_args!(
                "offload context {id} is {}: {call} is for a stream's receive side",
                kind_name(kind)
            ))),
            Err(CmdError::Unknown) => {
                // Revoked while the command was queued.
                self.ctx.borrow().check_active()?;
                Err(SocketError::Revoked.to_capnp(format_args!("offload context {id} is gone")))
            }
        }
    }
}

impl offload_context::Server for ContextServer {
    fn info(
        self: CapRc<Self>,
        _: offload_context::InfoParams,
        mut results: offload_context::InfoResults,
    ) -> impl Future<Output = Result<(), capnp::Error>> + 'static {
        let c = self.ctx.borrow();
        let r = c
            .check_active()
            .map(|()| self.offloads.fill_info(&c, results.get().init_info()));
        std::future::ready(r)
    }

    async fn resync(
        self: CapRc<Self>,
        params: offload_context::ResyncParams,
        _: offload_context::ResyncResults,
    ) -> Result<(), capnp::Error> {
        let (tcp_seq, rec_seq) = {
            let p = params.get()?;
            (p.get_tcp_seq(), p.get_record_seq())
        };
        ContextServer::resync(&self, tcp_seq, Some(rec_seq)).await
    }

    async fn resync_reject(
        self: CapRc<Self>,
        params: offload_context::ResyncRejectParams,
        _: offload_context::ResyncRejectResults,
    ) -> Result<(), capnp::Error> {
        let tcp_seq = params.get()?.get_tcp_seq();
        ContextServer::resync(&self, tcp_seq, None).await
    }

    async fn grant_sequence(
        self: CapRc<Self>,
        _: offload_context::GrantSequenceParams,
        _: offload_context::GrantSequenceResults,
    ) -> Result<(), capnp::Error> {
        let id = self.active_of("grantSequence", &[OffloadKind::EspPacketTx])?;
        Err(no_engine(id))
    }

    async fn set_lifetime(
        self: CapRc<Self>,
        _: offload_context::SetLifetimeParams,
        _: offload_context::SetLifetimeResults,
    ) -> Result<(), capnp::Error> {
        let kinds = [OffloadKind::EspPacketTx, OffloadKind::EspPacketRx];
        let id = self.active_of("setLifetime", &kinds)?;
        Err(no_engine(id))
    }

    async fn place_buffer(
        self: CapRc<Self>,
        _: offload_context::PlaceBufferParams,
        _: offload_context::PlaceBufferResults,
    ) -> Result<(), capnp::Error> {
        let id = self.active_of("placeBuffer", &[OffloadKind::NvmeTcpRx])?;
        Err(no_engine(id))
    }

    async fn release_buffer(
        self: CapRc<Self>,
        _: offload_context::ReleaseBufferParams,
        _: offload_context::ReleaseBufferResults,
    ) -> Result<(), capnp::Error> {
        let id = self.active_of("releaseBuffer", &[OffloadKind::NvmeTcpRx])?;
        Err(no_engine(id))
    }

    async fn release(
        self: CapRc<Self>,
        _: offload_context::ReleaseParams,
        _: offload_context::ReleaseResults,
    ) -> Result<(), capnp::Error> {
        let id = {
            let c = self.ctx.borrow();
            c.check_active()?;
            c.id
        };
        self.offloads.end(&self.ctx, "release");
        let r = self
            .offloads
            .data_plane(|done| Cmd::OffloadDelete {
                id,
                done: Some(done),
            })
            .await;
        self.offloads.forget(id);
        r
    }
}

/// A call of a kind this driver has no engine for: unreachable while no port
/// offers such a kind (the context could not have been made).
fn no_engine(id: u32) -> capnp::Error {
    SocketError::Unsupported.to_capnp(format_args!(
        "offload context {id}: this driver has no engine for that call"
    ))
}

impl Drop for ContextServer {
    fn drop(&mut self) {
        // The holder let go (or its connection died).
        if self.offloads.end(&self.ctx, "capability dropped") {
            // Leaves the table with `Event::OffloadDeleted`.
            let id = self.ctx.borrow().id;
            if !self.offloads.dp.send(Cmd::OffloadDelete { id, done: None }) {
                self.offloads.forget(id);
            }
        }
    }
}
