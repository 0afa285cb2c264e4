//! NIC offload contexts on a TCP connection: what a record-layer holder
//! (tlsd) asks of netsrv to let the NIC seal or open its TLS records.
//!
//! [`TcpStream::offload_tls`] mints a context on the connection's egress
//! port and binds the connection to it. The NIC's callbacks
//! (`OffloadEvents`: resync requests, revocation) are served on the
//! connection thread and queued in the returned [`OffloadContext`], whose
//! fd turns readable whenever an event is queued, so that an event loop
//! can wait for them beside its sockets.
//!
//! With TLS RX offload the connection's receive side switches to marked
//! chunks (see net.capnp `RxChunk`); [`TcpStream::read_marked`] hands out
//! their data with the NIC's decrypted flag.
//!
//! Revoking a context, as schema/offload.capnp orders it: switch the flow
//! to software, [`TcpStream::offload_stop`] (for TX it returns after the
//! drain), then [`OffloadContext::release`] (or drop it).

use crate::chunks::SwitchEnd;
use crate::conn::{cap_err, Conn, Object};
use crate::stream::{lock, CONTROL_TIMEOUT};
use crate::tcp::TcpStream;
use capnet_ring::Doorbell;
use capnet_schema::errors::{capnp_to_io, SocketError};
use capnet_schema::offload_capnp::{
    offload_events, offload_info, tls_params, OffloadKind as WireKind, TlsCipher as WireCipher,
};
use capnet_wire::tcp::{SeqNumber, StreamBase};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use zeroize::Zeroize;

/// Which direction of a TLS connection the NIC takes over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OffloadKind {
    /// The NIC seals records the holder framed (kTLS device TX).
    TlsTx,
    /// The NIC opens records in place and marks what it opened.
    TlsRx,
}

impl OffloadKind {
    fn to_wire(self) -> WireKind {
        match self {
            OffloadKind::TlsTx => WireKind::TlsTx,
            OffloadKind::TlsRx => WireKind::TlsRx,
        }
    }

    /// A TCP connection's contexts are TLS; any other kind is an error.
    fn from_wire(k: WireKind) -> capnp::Result<OffloadKind> {
        match k {
            WireKind::TlsTx => Ok(OffloadKind::TlsTx),
            WireKind::TlsRx => Ok(OffloadKind::TlsRx),
            other => Err(capnp::Error::failed(format!(
                "a {} context on a TCP connection",
                capnet_schema::offload::kind_name(other)
            ))),
        }
    }
}

/// The AEAD of an offloaded TLS direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlsCipher {
    Aes128Gcm,
    Aes256Gcm,
}

impl TlsCipher {
    /// The key length it takes.
    pub fn key_len(self) -> usize {
        match self {
            TlsCipher::Aes128Gcm => 16,
            TlsCipher::Aes256Gcm => 32,
        }
    }

    fn to_wire(self) -> WireCipher {
        match self {
            TlsCipher::Aes128Gcm => WireCipher::Aes128Gcm,
            TlsCipher::Aes256Gcm => WireCipher::Aes256Gcm,
        }
    }
}

/// The traffic secrets of one TLS direction, for the NIC. `Debug` shows
/// the key's length, never the key; every copy is wiped when dropped
/// (`offload_tls` makes one for its call).
#[derive(Clone, PartialEq, Eq)]
pub struct TlsOffloadParams {
    /// 0x0303 (TLS 1.2) or 0x0304 (TLS 1.3).
    pub version: u16,
    pub cipher: TlsCipher,
    /// 16 bytes for AES-128-GCM, 32 for AES-256-GCM.
    pub key: Vec<u8>,
    /// The IV as rustls extracts it.
    pub iv: [u8; 12],
    /// The sequence number of the record that starts at the call's
    /// `stream_offset`.
    pub record_seq: u64,
}

impl std::fmt::Debug for TlsOffloadParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOffloadParams")
            .field("version", &format_args!("{:#06x}", self.version))
            .field("cipher", &self.cipher)
            .field("key", &format_args!("<{} bytes>", self.key.len()))
            .field("iv", &format_args!("<12 bytes>"))
            .field("record_seq", &self.record_seq)
            .finish()
    }
}

impl Drop for TlsOffloadParams {
    fn drop(&mut self) {
        // Key material outlives nothing that used it: freed memory is
        // not cleared, and it is read by whatever reuses it.
        self.key.zeroize();
        self.iv.zeroize();
    }
}

impl TlsOffloadParams {
    /// `InvalidInput` for a version or key length the NIC cannot take.
    fn check(&self) -> io::Result<()> {
        if !matches!(self.version, 0x0303 | 0x0304) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "TLS offload: version {:#06x} is neither 1.2 nor 1.3",
                    self.version
                ),
            ));
        }
        if self.key.len() != self.cipher.key_len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "TLS offload: a {:?} key is {} bytes, not {}",
                    self.cipher,
                    self.cipher.key_len(),
                    self.key.len()
                ),
            ));
        }
        Ok(())
    }

    fn write(&self, mut b: tls_params::Builder<'_>) {
        b.set_version(self.version);
        b.set_cipher(self.cipher.to_wire());
        b.set_key(&self.key);
        b.set_iv(&self.iv);
        // netsrv computes it from the stream offset.
        b.set_tcp_seq(0);
        b.set_record_seq(self.record_seq);
    }
}

/// An offload context as the NIC reports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OffloadInfo {
    /// What the port's TX descriptors name (unique per driver instance).
    pub id: u32,
    pub port: String,
    /// The instance of the port's driver that made it.
    pub driver_epoch: u32,
    pub kind: OffloadKind,
    /// The connection, as this host sees it (`None` if the NIC did not
    /// say).
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    /// `active`, `revoked` or `released`.
    pub state: String,
    /// Records sealed (TX) or opened and authenticated (RX).
    pub records: u64,
    /// TLS payload bytes processed.
    pub bytes: u64,
    pub resync_requests: u64,
    pub resyncs: u64,
    pub auth_failures: u64,
    /// Frames dropped rather than sent unsealed.
    pub dropped: u64,
}

impl OffloadInfo {
    fn read(r: offload_info::Reader<'_>) -> capnp::Result<OffloadInfo> {
        use capnet_schema::offload_capnp::offload_flow;
        let tcp = r
            .has_flow()
            .then(|| match r.get_flow().and_then(|f| Ok(f.which()?)) {
                Ok(offload_flow::Tcp(Ok(t))) => Some(t),
                _ => None,
            })
            .flatten();
        // Each end as far as the NIC said it.
        let (local, remote) = match tcp {
            Some(t) => {
                let addr = |has: bool, a: capnp::Result<_>| {
                    has.then(|| a.and_then(capnet_schema::addr::read_socket_addr).ok())
                        .flatten()
                };
                (
                    addr(t.has_local(), t.get_local()),
                    addr(t.has_remote(), t.get_remote()),
                )
            }
            None => (None, None),
        };
        Ok(OffloadInfo {
            id: r.get_id(),
            port: r.get_port()?.to_string()?,
            driver_epoch: r.get_driver_epoch(),
            kind: OffloadKind::from_wire(r.get_kind()?)?,
            local,
            remote,
            state: r.get_state()?.to_string()?,
            records: r.get_records(),
            bytes: r.get_bytes(),
            resync_requests: r.get_resync_requests(),
            resyncs: r.get_resyncs(),
            auth_failures: r.get_auth_failures(),
            dropped: r.get_dropped(),
        })
    }
}

/// What the NIC tells the holder of a context.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum OffloadEvent {
    /// TLS RX lost sync and found what looks like a record header at
    /// `tcp_seq`: answer with [`OffloadContext::resync`] or
    /// [`OffloadContext::resync_reject`].
    ResyncRequest { tcp_seq: u32 },
    /// The NIC took the context away (its port is going away, or its
    /// driver went away: then the reason says so). Move the flow to
    /// software; calls on the context fail with `NotConnected` from now on.
    Revoked { reason: String },
}

/// Why a context whose callbacks were dropped without a `revoked` call
/// went away.
const GONE: &str = "the offload context went away (its NIC driver or the network service stopped)";

/// The events of one context: queued on the connection thread, taken by
/// the application.
struct Events {
    queue: Mutex<VecDeque<OffloadEvent>>,
    /// Rung once per event queued.
    doorbell: Doorbell,
    /// A `Revoked` event was queued.
    revoked: AtomicBool,
    /// The holder released or dropped the context: its callbacks going
    /// away is no news.
    released: AtomicBool,
}

impl Events {
    fn push(&self, event: OffloadEvent) {
        lock(&self.queue).push_back(event);
        self.doorbell.ring();
    }

    fn revoke(&self, reason: String) {
        if !self.revoked.swap(true, Ordering::SeqCst) {
            self.push(OffloadEvent::Revoked { reason });
        }
    }
}

/// The holder's `OffloadEvents`, served on the connection thread.
struct EventSink {
    events: Arc<Events>,
}

impl offload_events::Server for EventSink {
    async fn resync_request(
        self: capnp::capability::Rc<Self>,
        params: offload_events::ResyncRequestParams,
        _: offload_events::ResyncRequestResults,
    ) -> Result<(), capnp::Error> {
        let tcp_seq = params.get()?.get_tcp_seq();
        self.events.push(OffloadEvent::ResyncRequest { tcp_seq });
        Ok(())
    }

    async fn revoked(
        self: capnp::capability::Rc<Self>,
        params: offload_events::RevokedParams,
        _: offload_events::RevokedResults,
    ) -> Result<(), capnp::Error> {
        let reason = params.get()?.get_reason()?.to_string()?;
        self.events.revoke(reason);
        Ok(())
    }
}

impl Drop for EventSink {
    /// The NIC keeps the callbacks as long as the context lives: dropped
    /// without a `revoked` call and without a release, the context is gone
    /// with its driver (or netsrv), which its holder treats as revocation.
    fn drop(&mut self) {
        if !self.events.released.load(Ordering::SeqCst) {
            self.events.revoke(GONE.into());
        }
    }
}

/// Maps a failed call on a context. A disconnected context (its driver
/// died) counts as revoked.
fn context_err(e: capnp::Error) -> io::Error {
    if e.kind == capnp::ErrorKind::Disconnected {
        return io::Error::new(
            SocketError::Revoked.io_kind(),
            format!("revoked: {GONE} ({e})"),
        );
    }
    capnp_to_io(e)
}

/// A NIC offload context bound to a connection, made by
/// [`TcpStream::offload_tls`]. It may be used from any thread.
///
/// Events (resync requests, revocation) queue up in it;
/// [`try_event`](Self::try_event) takes them. Its fd (`as_raw_fd`, an
/// eventfd) turns readable whenever one is queued: an event loop waits on
/// it, then calls [`clear_wakeup`](Self::clear_wakeup) and takes events
/// until `try_event` answers `None` (in that order, so that none is
/// missed).
///
/// Once the context is released or revoked, its calls fail with
/// `NotConnected` (the `revoked` word; a context whose driver died counts
/// as revoked too). Dropping it drops the capability: the NIC then deletes
/// the context.
pub struct OffloadContext {
    conn: Conn,
    id: u64,
    initial: OffloadInfo,
    /// The call's stream offset and its TCP sequence number.
    stream_offset: u64,
    tcp_seq: u32,
    events: Arc<Events>,
}

impl OffloadContext {
    /// The context as the NIC reports it now.
    pub fn info(&self) -> io::Result<OffloadInfo> {
        self.call(|ctx| async move {
            let resp = ctx.info_request().send().promise.await?;
            OffloadInfo::read(resp.get()?.get_info()?)
        })
    }

    /// The context as `offload_tls` answered it, without a call.
    pub fn initial_info(&self) -> &OffloadInfo {
        &self.initial
    }

    pub fn kind(&self) -> OffloadKind {
        self.initial.kind
    }

    /// The `stream_offset` it was made with.
    pub fn stream_offset(&self) -> u64 {
        self.stream_offset
    }

    /// The TCP sequence number of [`stream_offset`](Self::stream_offset),
    /// as netsrv answered it.
    pub fn tcp_seq(&self) -> u32 {
        self.tcp_seq
    }

    /// The stream offset of TCP sequence number `tcp_seq` (of a resync
    /// request): of the offsets it may stand for (one per 4 GiB), the
    /// nearest to `near` (e.g. how far the stream has been read).
    pub fn stream_offset_of(&self, tcp_seq: u32, near: u64) -> u64 {
        seq_to_offset(self.stream_offset, self.tcp_seq, tcp_seq, near)
    }

    /// TLS RX: confirms that record `record_seq` starts at `tcp_seq`,
    /// answering [`OffloadEvent::ResyncRequest`]. `InvalidInput` for a
    /// position the NIC did not ask about.
    pub fn resync(&self, tcp_seq: u32, record_seq: u64) -> io::Result<()> {
        self.call(move |ctx| async move {
            let mut req = ctx.resync_request();
            req.get().set_tcp_seq(tcp_seq);
            req.get().set_record_seq(record_seq);
            req.send().promise.await?;
            Ok(())
        })
    }

    /// TLS RX: no record starts at `tcp_seq`; the NIC searches again.
    pub fn resync_reject(&self, tcp_seq: u32) -> io::Result<()> {
        self.call(move |ctx| async move {
            let mut req = ctx.resync_reject_request();
            req.get().set_tcp_seq(tcp_seq);
            req.send().promise.await?;
            Ok(())
        })
    }

    /// Deletes the context in the NIC (after `offload_stop`). Every later
    /// call fails with `NotConnected`.
    pub fn release(&self) -> io::Result<()> {
        self.events.released.store(true, Ordering::SeqCst);
        self.call(|ctx| async move {
            ctx.release_request().send().promise.await?;
            Ok(())
        })
    }

    /// The next event queued, without waiting.
    pub fn try_event(&self) -> Option<OffloadEvent> {
        lock(&self.events.queue).pop_front()
    }

    /// Drains the fd's wakeups (call before taking events with
    /// [`try_event`](Self::try_event)).
    pub fn clear_wakeup(&self) {
        self.events.doorbell.drain();
    }

    /// A [`OffloadEvent::Revoked`] has been queued (taken or not).
    pub fn is_revoked(&self) -> bool {
        self.events.revoked.load(Ordering::SeqCst)
    }

    fn call<T, F, Fut>(&self, job: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(capnet_schema::offload_capnp::offload_context::Client) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = capnp::Result<T>> + 'static,
    {
        let id = self.id;
        let result = self
            .conn
            .call(Some(CONTROL_TIMEOUT), move |ctx| async move {
                let c = ctx.offload_context(id)?;
                job(c).await.map_err(context_err)
            });
        // A context disconnected because the service went away.
        match result {
            Err(e) if e.kind() == io::ErrorKind::NotConnected && !self.conn.is_connected() => {
                Err(self.conn.gone())
            }
            other => other,
        }
    }
}

impl AsRawFd for OffloadContext {
    /// An eventfd that turns readable whenever an event is queued.
    fn as_raw_fd(&self) -> RawFd {
        self.events.doorbell.as_raw_fd()
    }
}

impl Drop for OffloadContext {
    fn drop(&mut self) {
        self.events.released.store(true, Ordering::SeqCst);
        self.conn.release(self.id);
    }
}

impl std::fmt::Debug for OffloadContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffloadContext")
            .field("id", &self.initial.id)
            .field("port", &self.initial.port)
            .field("kind", &self.initial.kind)
            .field("revoked", &self.is_revoked())
            .finish()
    }
}

/// The stream offset of sequence number `seq`, given that `base_offset`
/// is at `base_seq`: of the offsets it may stand for (one per 4 GiB), the
/// nearest to `near`.
fn seq_to_offset(base_offset: u64, base_seq: u32, seq: u32, near: u64) -> u64 {
    StreamBase::new(SeqNumber(base_seq), base_offset).offset_of(SeqNumber(seq), near)
}

/// What an `offload` call came to.
enum Minted {
    /// netsrv answered: the context (in the connection's table), its info,
    /// where marked chunks begin and the TCP sequence number of the stream
    /// offset.
    Context(u64, OffloadInfo, u64, u32),
    /// netsrv answered an error: nothing changed.
    Refused(io::Error),
}

impl TcpStream {
    /// Mints a TLS offload context on this connection's current egress port
    /// and binds the connection to it (`TcpSocket.offload`).
    /// `stream_offset` is where record `params.record_seq` starts: in the
    /// bytes written to this socket (TX; see
    /// [`write_offset`](Self::write_offset)) or received on it (RX).
    ///
    /// TLS TX: bytes from `stream_offset` on leave the port sealed by the
    /// NIC. TLS RX: the receive side switches to marked chunks from the
    /// receive-ring position netsrv answers; read with
    /// [`read_marked`](Self::read_marked). While this call is on its way,
    /// reads of this stream wait (non-blocking ones answer `WouldBlock`,
    /// and the fd turns readable when it returned).
    ///
    /// Fails with `Unsupported` (the egress port has no such offload),
    /// `ResourceBusy` (no egress now) or `InvalidInput` (bad parameters,
    /// already bound). A timed-out RX call leaves the receive side's
    /// framing unknown: reads fail from then on.
    pub fn offload_tls(
        &self,
        kind: OffloadKind,
        params: &TlsOffloadParams,
        stream_offset: u64,
    ) -> io::Result<OffloadContext> {
        params.check()?;
        let conn = self.ring_conn().clone();
        conn.check()?;
        let events = Arc::new(Events {
            queue: Mutex::new(VecDeque::new()),
            doorbell: Doorbell::new()?,
            revoked: AtomicBool::new(false),
            released: AtomicBool::new(false),
        });
        let sink = events.clone();
        let params = params.clone();
        let id = self.object();
        let rx = kind == OffloadKind::TlsRx;
        if rx {
            self.begin_rx_switch();
        }
        let minted = conn.call(Some(CONTROL_TIMEOUT), move |ctx| async move {
            let callbacks: offload_events::Client =
                capnp_rpc::new_client(EventSink { events: sink });
            let mut req = ctx.tcp(id)?.offload_request();
            {
                let mut r = req.get();
                let mut q = r.reborrow().init_request();
                q.set_kind(kind.to_wire());
                // netsrv fills in the flow: the connection.
                params.write(q.get_params().init_tls());
                r.set_stream_offset(stream_offset);
                r.set_events(callbacks);
            }
            let resp = match req.send().promise.await {
                Ok(resp) => resp,
                Err(e) => return Ok(Minted::Refused(cap_err(e))),
            };
            let r = resp.get().map_err(cap_err)?;
            let context = r.get_context().map_err(cap_err)?;
            let info = OffloadInfo::read(r.get_info().map_err(cap_err)?).map_err(cap_err)?;
            Ok(Minted::Context(
                ctx.insert(Object::OffloadContext(context)),
                info,
                r.get_ring_offset(),
                r.get_tcp_seq(),
            ))
        });
        let (object, info, ring_offset, tcp_seq) = match minted {
            Ok(Minted::Context(object, info, ring_offset, tcp_seq)) => {
                (object, info, ring_offset, tcp_seq)
            }
            Ok(Minted::Refused(e)) => {
                if rx {
                    self.end_rx_switch(SwitchEnd::Unchanged)?;
                }
                return Err(e);
            }
            Err(e) => {
                if rx {
                    // Answered or not, nobody knows where chunks begin.
                    let _ = self.end_rx_switch(SwitchEnd::Unknown);
                }
                return Err(e);
            }
        };
        let context = OffloadContext {
            conn,
            id: object,
            initial: info,
            stream_offset,
            tcp_seq,
            events,
        };
        if rx {
            // On failure, dropping the context releases it.
            self.end_rx_switch(SwitchEnd::Chunks(ring_offset))?;
        }
        Ok(context)
    }

    /// Unbinds the connection from its context of `kind`, for revocation
    /// (`TcpSocket.offloadStop`). TLS TX: framed bytes from
    /// `replacement_offset` on may still be sent or sent again;
    /// `replacement` is their software-sealed form (the same length at the
    /// same offsets), which netsrv sends instead; it returns after the
    /// drain, when no TX descriptor naming the context is in flight. Then
    /// release the context. TLS RX: frames are no longer marked; the
    /// receive side stays in marked-chunk mode (unmarked chunks).
    pub fn offload_stop(
        &self,
        kind: OffloadKind,
        replacement_offset: u64,
        replacement: &[u8],
    ) -> io::Result<()> {
        let id = self.object();
        let replacement = replacement.to_vec();
        self.ring_conn()
            .call(Some(CONTROL_TIMEOUT), move |ctx| async move {
                let mut req = ctx.tcp(id)?.offload_stop_request();
                {
                    let mut r = req.get();
                    r.set_kind(kind.to_wire());
                    r.set_replacement(&replacement);
                    r.set_replacement_offset(replacement_offset);
                }
                req.send().promise.await.map_err(cap_err)?;
                Ok(())
            })
    }

    /// The offset, in the bytes written to this socket, of the first byte
    /// the peer has not acknowledged: nothing before it will be sent again
    /// (`TcpSocket.sendUnacked`).
    pub fn send_unacked(&self) -> io::Result<u64> {
        let id = self.object();
        self.ring_conn()
            .call(Some(CONTROL_TIMEOUT), move |ctx| async move {
                let resp = ctx
                    .tcp(id)?
                    .send_unacked_request()
                    .send()
                    .promise
                    .await
                    .map_err(cap_err)?;
                Ok(resp.get().map_err(cap_err)?.get_offset())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> TlsOffloadParams {
        TlsOffloadParams {
            version: 0x0304,
            cipher: TlsCipher::Aes128Gcm,
            key: vec![0xAB; 16],
            iv: [0xCD; 12],
            record_seq: 7,
        }
    }

    #[test]
    fn debug_hides_the_key() {
        let shown = format!("{:?}", params());
        assert!(!shown.contains("171") && !shown.contains("205"), "{shown}");
        assert!(shown.contains("<16 bytes>"), "{shown}");
        assert!(shown.contains("0x0304"), "{shown}");
    }

    #[test]
    fn params_are_checked() {
        params().check().unwrap();
        // Field by field: a type that wipes itself on drop cannot be taken
        // apart with `..`.
        let mut p = params();
        p.version = 0x0302;
        assert_eq!(p.check().unwrap_err().kind(), io::ErrorKind::InvalidInput);
        let mut p = params();
        p.cipher = TlsCipher::Aes256Gcm;
        assert_eq!(p.check().unwrap_err().kind(), io::ErrorKind::InvalidInput);
        p.key = vec![1; 32];
        p.check().unwrap();
    }

    #[test]
    fn params_on_the_wire() {
        let mut msg = capnp::message::Builder::new_default();
        params().write(msg.init_root());
        let r = msg.get_root_as_reader::<tls_params::Reader>().unwrap();
        assert_eq!(r.get_version(), 0x0304);
        assert_eq!(r.get_cipher().unwrap(), WireCipher::Aes128Gcm);
        assert_eq!(r.get_key().unwrap(), &[0xAB; 16]);
        assert_eq!(r.get_iv().unwrap(), &[0xCD; 12]);
        assert_eq!(r.get_record_seq(), 7);
    }

    #[test]
    fn info_read() {
        let mut msg = capnp::message::Builder::new_default();
        let mut b = msg.init_root::<offload_info::Builder>();
        b.set_id(3);
        b.set_port("sim0");
        b.set_driver_epoch(1);
        b.set_kind(WireKind::TlsRx);
        {
            let mut flow = b.reborrow().init_flow().init_tcp();
            capnet_schema::addr::write_socket_addr(
                flow.reborrow().init_local(),
                "10.0.0.1:40000".parse().unwrap(),
            );
        }
        b.set_state("active");
        b.set_records(10);
        b.set_bytes(11);
        b.set_resync_requests(12);
        b.set_resyncs(13);
        b.set_auth_failures(14);
        b.set_dropped(15);
        let info = OffloadInfo::read(msg.get_root_as_reader().unwrap()).unwrap();
        assert_eq!(
            info,
            OffloadInfo {
                id: 3,
                port: "sim0".into(),
                driver_epoch: 1,
                kind: OffloadKind::TlsRx,
                local: Some("10.0.0.1:40000".parse().unwrap()),
                remote: None,
                state: "active".into(),
                records: 10,
                bytes: 11,
                resync_requests: 12,
                resyncs: 13,
                auth_failures: 14,
                dropped: 15,
            }
        );
    }

    #[test]
    fn disconnected_is_revoked() {
        let e = context_err(capnp::Error::disconnected("driver died".into()));
        assert_eq!(e.kind(), io::ErrorKind::NotConnected);
        assert!(e.to_string().starts_with("revoked:"), "{e}");
        let e = context_err(SocketError::Revoked.to_capnp("offload context 3 was released"));
        assert_eq!(e.kind(), io::ErrorKind::NotConnected);
        let e = context_err(SocketError::Invalid.to_capnp("not asked"));
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn sequence_numbers_to_offsets() {
        // Offset 1000 is at sequence number 0xffff_fff0.
        let at = |seq: u32, near: u64| seq_to_offset(1000, 0xffff_fff0, seq, near);
        assert_eq!(at(0xffff_fff0, 1000), 1000);
        assert_eq!(at(0x10, 1000), 1032);
        assert_eq!(at(0x10, 5000), 1032);
        assert_eq!(at(0xffff_ff00, 1000), 1000 - 0xf0);
        // Far into the stream: the nearest of the 4 GiB aliases.
        let four = 1u64 << 32;
        assert_eq!(at(0x10, 3 * four), 3 * four + 1032);
        assert_eq!(at(0x10, 3 * four + 2000), 3 * four + 1032);
        assert_eq!(at(0xffff_fff0, 3 * four + 900), 3 * four + 1000);
        // Never negative.
        assert_eq!(seq_to_offset(0, 100, 50, 0), four - 50);
    }

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn context_is_send_and_sync() {
        assert_send_sync::<OffloadContext>();
        assert_send_sync::<TcpStream>();
    }
}
