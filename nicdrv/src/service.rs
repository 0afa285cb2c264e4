//! The control plane: the `Nic` capability (capnp-rpc, single-threaded tokio).
//!
//! Every capnp connection gets its own `NicServer` naming the connection, so
//! that the ring session a connection opened ends when that connection does.
//! All of them share one [`Control`].

use crate::counters::Snapshot;
use crate::dataplane::{Cmd, Event, Handle, Shared};
use crate::faults::FaultConfig;
use crate::offload::control::{OffloadConfig, Offloads};
use crate::offload::{KindSnapshot, KindStats};
use capnet_ring::{ChannelLayout, Duplex, HandoffTable};
use capnet_schema::errors::SocketError;
use capnet_schema::nic_capnp::{link_watcher, nic, port_counters, wire_faults};
use capnet_schema::offload_capnp::OffloadKind;
use capnet_schema::transport;
use capnp::capability::Rc as CapRc;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::os::fd::AsFd;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// The static facts of `Nic.info`.
#[derive(Clone, Debug)]
pub struct PortInfo {
    pub name: String,
    pub backend: &'static str,
    pub mac: [u8; 6],
    pub mtu: u32,
    pub csum_offload: bool,
    /// TSO and GRO (`PortInfo.segmentation`).
    pub segmentation: bool,
    pub capture_path: String,
    /// The offload kinds the port offers.
    pub offloads: Vec<OffloadKind>,
}

pub struct Control {
    info: PortInfo,
    layout: ChannelLayout,
    shared: Arc<Shared>,
    dp: Handle,
    handoff: Arc<HandoffTable>,
    /// (session, connection) of the ring session's holder.
    owner: RefCell<Option<(u64, u64)>>,
    next_id: Cell<u64>,
    watchers: RefCell<Vec<mpsc::UnboundedSender<bool>>>,
    /// The offload contexts (see [`crate::offload`]).
    pub offloads: Rc<Offloads>,
}

impl Control {
    pub fn new(
        info: PortInfo,
        layout: ChannelLayout,
        shared: Arc<Shared>,
        dp: Handle,
        handoff: Arc<HandoffTable>,
        epoch: u32,
    ) -> Rc<Control> {
        let offloads = Offloads::new(
            OffloadConfig {
                port: info.name.clone(),
                epoch,
                offered: info.offloads.clone(),
            },
            dp.clone(),
            shared.clone(),
        );
        Rc::new(Control {
            offloads,
            info,
            layout,
            shared,
            dp,
            handoff,
            owner: RefCell::new(None),
            next_id: Cell::new(1),
            watchers: RefCell::new(Vec::new()),
        })
    }

    fn new_id(&self) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        id
    }

    /// A `Nic` client for a connection (`conn` from [`Control::new_connection`]).
    pub fn client(self: &Rc<Self>, conn: u64) -> nic::Client {
        capnp_rpc::new_client(NicServer {
            ctl: self.clone(),
            conn,
        })
    }

    pub fn new_connection(&self) -> u64 {
        self.new_id()
    }

    /// Serves `Nic` as the bootstrap capability of one connection, until it ends.
    pub async fn serve(self: Rc<Self>, stream: tokio::net::UnixStream) {
        let conn = self.new_connection();
        let client = self.client(conn);
        tracing::debug!(conn, "control connection");
        if let Err(e) = capnet_schema::transport::serve(stream, client.client).await {
            tracing::debug!(conn, %e, "control connection failed");
        }
        tracing::debug!(conn, "control connection closed");
        self.connection_closed(conn);
    }

    /// Ends the ring session that `conn` opened, if any.
    pub fn connection_closed(&self, conn: u64) {
        let owned = *self.owner.borrow();
        if let Some((session, c)) = owned {
            if c == conn {
                *self.owner.borrow_mut() = None;
                let _ = self.shared.session.compare_exchange(
                    session,
                    0,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
                self.dp.send(Cmd::Detach { session });
            }
        }
    }

    /// Handles the data plane's events until it stops.
    pub async fn run_events(self: Rc<Self>, mut rx: mpsc::UnboundedReceiver<Event>) {
        while let Some(ev) = rx.recv().await {
            match ev {
                Event::Link(up) => self.watchers.borrow_mut().retain(|w| w.send(up).is_ok()),
                Event::SessionEnded(session) => {
                    let mut owner = self.owner.borrow_mut();
                    if owner.is_some_and(|(s, _)| s == session) {
                        *owner = None;
                    }
                }
                Event::OffloadRevoked { ids, reason } => {
                    self.offloads.revoked_by_data_plane(&ids, reason)
                }
                Event::ResyncRequest { id, tcp_seq } => self.offloads.resync_requested(id, tcp_seq),
                Event::OffloadDeleted(id) => self.offloads.deleted(id),
            }
        }
    }

    async fn command(
        &self,
        make: impl FnOnce(oneshot::Sender<()>) -> Cmd,
    ) -> Result<(), capnp::Error> {
        let (tx, rx) = oneshot::channel();
        if !self.dp.send(make(tx)) {
            return Err(capnp::Error::failed("the data plane has stopped".into()));
        }
        rx.await
            .map_err(|_| capnp::Error::failed("the data plane has stopped".into()))
    }

    fn take_rings(&self, conn: u64) -> Result<(u64, capnet_ring::Token, Duplex), capnp::Error> {
        // The atomic is the truth (the data plane clears it when it ends a
        // session); `owner` may lag behind by one event.
        if self.shared.session.load(Ordering::SeqCst) != 0 {
            return Err(SocketError::Busy.to_capnp("another session holds the port's rings"));
        }
        let session = self.new_id();
        let (duplex, fds) = Duplex::create(&format!("nicdrv-{}", self.info.name), self.layout)
            .map_err(|e| capnp::Error::failed(format!("creating the port rings: {e}")))?;
        if crate::misbehave::get() == crate::misbehave::Misbehave::Doorbell {
            // Copies of netsrv's two ends, and our own ring end.
            let jammed = [&fds[1], &fds[2]]
                .into_iter()
                .map(|f| f.try_clone())
                .chain([duplex.wake_peer.as_fd().try_clone_to_owned()])
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(|e| capnp::Error::failed(format!("jam: {e}")))?;
            crate::misbehave::jam_doorbells(jammed);
        }
        let token = self.handoff.offer(fds);
        self.shared.session.store(session, Ordering::SeqCst);
        *self.owner.borrow_mut() = Some((session, conn));
        Ok((session, token, duplex))
    }
}

/// Fills a capnp `PortCounters`, with the kinds in `offered`.
pub fn fill_counters(s: &Snapshot, offered: &[OffloadKind], mut c: port_counters::Builder<'_>) {
    c.set_rx_frames(s.rx_frames);
    c.set_rx_bytes(s.rx_bytes);
    c.set_tx_frames(s.tx_frames);
    c.set_tx_bytes(s.tx_bytes);
    c.set_rx_dropped(s.rx_dropped);
    c.set_rx_bad_checksum(s.rx_bad_checksum);
    c.set_rx_malformed(s.rx_malformed);
    c.set_tx_dropped(s.tx_dropped);
    c.set_tx_checksum_filled(s.tx_checksum_filled);
    c.set_rx_checksum_verified(s.rx_checksum_verified);
    c.set_wire_lost(s.wire_lost);
    c.set_wire_reordered(s.wire_reordered);
    c.set_wire_duplicated(s.wire_duplicated);
    c.set_wire_corrupted(s.wire_corrupted);
    c.set_link_changes(s.link_changes);
    c.set_bad_descriptors(s.bad_descriptors);
    c.set_offload_contexts(s.offload_contexts);
    c.set_offload_released(s.offload_released);
    c.set_offload_tx_dropped(s.offload_tx_dropped);
    c.set_tx_segmented(s.tx_segmented);
    c.set_tx_segments(s.tx_segments);
    c.set_tx_segment_errors(s.tx_segment_errors);
    c.set_rx_coalesced(s.rx_coalesced);
    c.set_rx_coalesced_segments(s.rx_coalesced_segments);
    c.set_tx_segmented_by_device(s.tx_segmented_by_device);
    c.set_rx_coalesced_by_device(s.rx_coalesced_by_device);
    let mut list = c.init_offloads(offered.len() as u32);
    for (i, kind) in offered.iter().enumerate() {
        let k = s.offload.get(*kind);
        let mut b = list.reborrow().get(i as u32);
        b.set_kind(*kind);
        b.set_contexts(k.contexts);
        b.set_released(k.released);
        b.set_records(k.records);
        b.set_auth_failures(k.auth_failures);
        b.set_resync_requests(k.resync_requests);
        b.set_dropped(k.dropped);
        b.set_engine_nanos(k.engine_nanos);
    }
}

/// Reads and checks a capnp `WireFaults` (the carrier is the caller's).
pub fn read_faults(f: wire_faults::Reader<'_>) -> Result<FaultConfig, capnp::Error> {
    let faults = FaultConfig {
        loss_ppm: f.get_loss_ppm(),
        reorder_ppm: f.get_reorder_ppm(),
        duplicate_ppm: f.get_duplicate_ppm(),
        corrupt_ppm: f.get_corrupt_ppm(),
    };
    faults
        .validate()
        .map_err(|e| SocketError::Invalid.to_capnp(e))?;
    Ok(faults)
}

/// Reads a capnp `PortCounters` (for clients and tests); kinds of unknown
/// number are skipped.
pub fn read_counters(c: port_counters::Reader<'_>) -> Snapshot {
    let mut offload = KindSnapshot::default();
    for k in c.get_offloads().into_iter().flatten() {
        if let Ok(kind) = k.get_kind() {
            offload.set(
                kind,
                KindStats {
                    contexts: k.get_contexts(),
                    released: k.get_released(),
                    records: k.get_records(),
                    auth_failures: k.get_auth_failures(),
                    resync_requests: k.get_resync_requests(),
                    dropped: k.get_dropped(),
                    engine_nanos: k.get_engine_nanos(),
                },
            );
        }
    }
    Snapshot {
        offload,
        rx_frames: c.get_rx_frames(),
        rx_bytes: c.get_rx_bytes(),
        tx_frames: c.get_tx_frames(),
        tx_bytes: c.get_tx_bytes(),
        rx_dropped: c.get_rx_dropped(),
        rx_bad_checksum: c.get_rx_bad_checksum(),
        rx_malformed: c.get_rx_malformed(),
        tx_dropped: c.get_tx_dropped(),
        tx_checksum_filled: c.get_tx_checksum_filled(),
        rx_checksum_verified: c.get_rx_checksum_verified(),
        wire_lost: c.get_wire_lost(),
        wire_reordered: c.get_wire_reordered(),
        wire_duplicated: c.get_wire_duplicated(),
        wire_corrupted: c.get_wire_corrupted(),
        link_changes: c.get_link_changes(),
        bad_descriptors: c.get_bad_descriptors(),
        offload_contexts: c.get_offload_contexts(),
        offload_released: c.get_offload_released(),
        offload_tx_dropped: c.get_offload_tx_dropped(),
        tx_segmented: c.get_tx_segmented(),
        tx_segments: c.get_tx_segments(),
        tx_segment_errors: c.get_tx_segment_errors(),
        rx_coalesced: c.get_rx_coalesced(),
        rx_coalesced_segments: c.get_rx_coalesced_segments(),
        tx_segmented_by_device: c.get_tx_segmented_by_device(),
        rx_coalesced_by_device: c.get_rx_coalesced_by_device(),
    }
}

struct NicServer {
    ctl: Rc<Control>,
    conn: u64,
}

impl nic::Server for NicServer {
    fn info(
        self: CapRc<Self>,
        _: nic::InfoParams,
        mut results: nic::InfoResults,
    ) -> impl Future<Output = Result<(), capnp::Error>> + 'static {
        let ctl = &self.ctl;
        let mut i = results.get().init_info();
        i.set_name(ctl.info.name.as_str());
        i.set_backend(ctl.info.backend);
        i.set_mac(&ctl.info.mac[..]);
        i.set_mtu(crate::misbehave::reported_mtu(ctl.info.mtu));
        i.set_link_up(ctl.shared.link_up.load(Ordering::Relaxed));
        i.set_checksum_offload(ctl.info.csum_offload);
        i.set_segmentation(ctl.info.segmentation);
        i.set_capture_path(ctl.info.capture_path.as_str());
        let mut kinds = i.reborrow().init_offloads(ctl.info.offloads.len() as u32);
        for (n, kind) in ctl.info.offloads.iter().enumerate() {
            kinds.set(n as u32, *kind);
        }
        i.set_confinement(capnet_confine::current_text());
        let silent = crate::misbehave::get() == crate::misbehave::Misbehave::Silent;
        async move {
            if silent {
                std::future::pending::<()>().await;
            }
            Ok(())
        }
    }

    async fn open_rings(
        self: CapRc<Self>,
        _: nic::OpenRingsParams,
        mut results: nic::OpenRingsResults,
    ) -> Result<(), capnp::Error> {
        let ctl = self.ctl.clone();
        let (session, token, duplex) = ctl.take_rings(self.conn)?;
        let attached = ctl
            .command(|done| Cmd::Attach {
                session,
                duplex,
                done: Some(done),
            })
            .await;
        if let Err(e) = attached {
            ctl.connection_closed(self.conn);
            return Err(e);
        }
        let layout = ctl.layout;
        let mut g = results.get().init_grant();
        g.set_token(&token.0[..]);
        g.set_region_bytes(Duplex::region_bytes(layout) as u64);
        g.set_ring_bytes(0);
        g.set_buffer_count(layout.buffers);
        g.set_buffer_size(layout.buf_size);
        tracing::info!(session, conn = self.conn, "rings offered");
        Ok(())
    }

    fn counters(
        self: CapRc<Self>,
        _: nic::CountersParams,
        mut results: nic::CountersResults,
    ) -> impl Future<Output = Result<(), capnp::Error>> + 'static {
        let s = self.ctl.shared.counters.snapshot();
        fill_counters(&s, &self.ctl.info.offloads, results.get().init_counters());
        std::future::ready(Ok(()))
    }

    async fn set_faults(
        self: CapRc<Self>,
        params: nic::SetFaultsParams,
        _: nic::SetFaultsResults,
    ) -> Result<(), capnp::Error> {
        let f = params.get()?.get_faults()?;
        let faults = read_faults(f)?;
        let carrier = Some(f.get_carrier_up());
        self.ctl
            .command(|done| Cmd::SetFaults {
                faults,
                carrier,
                done: Some(done),
            })
            .await
    }

    async fn set_carrier(
        self: CapRc<Self>,
        params: nic::SetCarrierParams,
        _: nic::SetCarrierResults,
    ) -> Result<(), capnp::Error> {
        let up = params.get()?.get_up();
        self.ctl
            .command(|done| Cmd::SetCarrier {
                up,
                done: Some(done),
            })
            .await
    }

    fn watch_link(
        self: CapRc<Self>,
        params: nic::WatchLinkParams,
        _: nic::WatchLinkResults,
    ) -> impl Future<Output = Result<(), capnp::Error>> + 'static {
        let r = (|| {
            let watcher: link_watcher::Client = params.get()?.get_watcher()?;
            let (tx, mut rx) = mpsc::unbounded_channel::<bool>();
            // The current state first, so that a change between `info` and
            // `watchLink` is never missed; then every change, in order.
            let _ = tx.send(self.ctl.shared.link_up.load(Ordering::Relaxed));
            self.ctl.watchers.borrow_mut().push(tx);
            tokio::task::spawn_local(async move {
                while let Some(up) = rx.recv().await {
                    let mut req = watcher.link_changed_request();
                    req.get().set_up(up);
                    let call = req.send().promise;
                    match transport::within(transport::NOTICE_DEADLINE, "linkChanged", call).await {
                        Ok(_) => {}
                        Err(e) if e.kind == capnp::ErrorKind::Disconnected => {
                            tracing::debug!(%e, "link watcher gone");
                            break;
                        }
                        // A slow watcher still hears the next change.
                        Err(e) => tracing::warn!(%e, "link watcher"),
                    }
                }
            });
            Ok(())
        })();
        std::future::ready(r)
    }

    fn offload(
        self: CapRc<Self>,
        params: nic::OffloadParams,
        results: nic::OffloadResults,
    ) -> impl Future<Output = Result<(), capnp::Error>> + 'static {
        self.ctl.offloads.clone().offload(params, results)
    }

    fn offload_contexts(
        self: CapRc<Self>,
        _: nic::OffloadContextsParams,
        results: nic::OffloadContextsResults,
    ) -> impl Future<Output = Result<(), capnp::Error>> + 'static {
        self.ctl.offloads.offload_contexts(results);
        std::future::ready(Ok(()))
    }
}
