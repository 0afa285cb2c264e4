//! TLS streams and listeners through tlsd.
//!
//! tlsd makes the TCP connection, runs the handshake and keeps the record
//! layer (in software, or on the NIC); the application sees plaintext on the
//! same kind of shared rings a [`TcpStream`](crate::TcpStream) uses.
//! Certificates, private keys and traffic keys never leave tlsd.

use crate::accept::Acceptor;
use crate::conn::{Conn, Object, Service};
use crate::stream::{granted, ring_stream_api, Grant, ReadShut, RingStream, CONTROL_TIMEOUT};
use crate::tcp::resolve;
use capnet_schema::errors::SocketError;
use capnet_schema::tls_capnp::{self as wire, tls_info, tls_options, tls_stat};
use std::io;
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::{Mutex, OnceLock};

/// How tlsd's failed calls say what went wrong beyond the socket words
/// (the first word of the description; see schema/tls.capnp).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlsError {
    /// The handshake failed (an alert, a certificate that did not verify,
    /// no common version or suite). `InvalidData`.
    Handshake,
    /// tlsd has no server identity (certificate and key). `NotFound`.
    Identity,
    /// The peer sent a fatal alert after the handshake. `InvalidData`.
    Alert,
}

impl TlsError {
    pub const ALL: [TlsError; 3] = [TlsError::Handshake, TlsError::Identity, TlsError::Alert];

    /// The word that starts a failed call's description.
    pub fn word(self) -> &'static str {
        match self {
            TlsError::Handshake => "handshake",
            TlsError::Identity => "identity",
            TlsError::Alert => "alert",
        }
    }

    pub fn io_kind(self) -> io::ErrorKind {
        match self {
            TlsError::Handshake | TlsError::Alert => io::ErrorKind::InvalidData,
            TlsError::Identity => io::ErrorKind::NotFound,
        }
    }

    fn from_word(word: &str) -> Option<TlsError> {
        Self::ALL.into_iter().find(|e| e.word() == word)
    }

    /// The TLS word of an error libclient returned for a tlsd call (its
    /// message keeps tlsd's description), if it has one.
    pub fn of(err: &io::Error) -> Option<TlsError> {
        let description = err.to_string();
        match first_word(&description)? {
            Word::Tls(e) => Some(e),
            Word::Socket(_) => None,
        }
    }
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

enum Word {
    Tls(TlsError),
    Socket(SocketError),
}

/// The first error word in `description`. capnp-rpc may put its own prefix
/// ("remote exception: ") before the word tlsd wrote.
fn first_word(description: &str) -> Option<Word> {
    description.split(':').map(str::trim).find_map(|w| {
        TlsError::from_word(w).map(Word::Tls).or_else(|| {
            SocketError::ALL
                .into_iter()
                .find(|e| e.word() == w)
                .map(Word::Socket)
        })
    })
}

/// Maps a failed tlsd call inside a job; the message is tlsd's
/// description, without what capnp puts around it ("Failed: remote
/// exception: "). A broken connection is the service going away.
pub(crate) fn tls_err(e: capnp::Error) -> io::Error {
    if e.kind == capnp::ErrorKind::Disconnected {
        return Service::Tls.gone();
    }
    let kind = match first_word(&e.extra) {
        Some(Word::Tls(t)) => t.io_kind(),
        Some(Word::Socket(s)) => s.io_kind(),
        None => io::ErrorKind::Other,
    };
    io::Error::new(kind, capnet_schema::errors::describe(&e))
}

fn read_addr(r: capnet_schema::common_capnp::socket_addr::Reader<'_>) -> io::Result<SocketAddr> {
    capnet_schema::addr::read_socket_addr(r).map_err(tls_err)
}

/// A TLS protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    fn to_wire(v: Option<TlsVersion>) -> wire::TlsVersion {
        match v {
            None => wire::TlsVersion::Unset,
            Some(TlsVersion::Tls12) => wire::TlsVersion::Tls12,
            Some(TlsVersion::Tls13) => wire::TlsVersion::Tls13,
        }
    }

    fn from_wire(v: Result<wire::TlsVersion, capnp::NotInSchema>) -> io::Result<TlsVersion> {
        match v {
            Ok(wire::TlsVersion::Tls12) => Ok(TlsVersion::Tls12),
            Ok(wire::TlsVersion::Tls13) => Ok(TlsVersion::Tls13),
            Ok(wire::TlsVersion::Unset) => Err(bad_info("no TLS version")),
            Err(capnp::NotInSchema(n)) => Err(bad_info(&format!("unknown TLS version {n}"))),
        }
    }
}

/// Whether tlsd may put a connection's records on the NIC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OffloadPolicy {
    /// Use the egress port's TLS offload where it offers one.
    #[default]
    Auto,
    /// Always seal and open records in software.
    Off,
}

/// Where one direction's records are sealed or opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordMode {
    /// In tlsd, in software.
    Software,
    /// On the NIC (an offload context).
    Device,
}

impl RecordMode {
    fn from_wire(m: Result<wire::RecordMode, capnp::NotInSchema>) -> io::Result<RecordMode> {
        match m {
            Ok(wire::RecordMode::Software) => Ok(RecordMode::Software),
            Ok(wire::RecordMode::Device) => Ok(RecordMode::Device),
            Err(capnp::NotInSchema(n)) => Err(bad_info(&format!("unknown record mode {n}"))),
        }
    }
}

fn bad_info(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("tlsd: {what}"))
}

/// Options for a TLS connection or listener. The default offers no ALPN,
/// allows TLS 1.2 and 1.3 with every suite tlsd has, and lets tlsd offload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// ALPN protocols offered (client) or accepted (server), in order of
    /// preference, e.g. `b"h2".to_vec()`.
    pub alpn: Vec<Vec<u8>>,
    /// `None`: TLS 1.2.
    pub min_version: Option<TlsVersion>,
    /// `None`: TLS 1.3.
    pub max_version: Option<TlsVersion>,
    /// IANA names, e.g. `TLS_AES_256_GCM_SHA384` or
    /// `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`; empty: every suite tlsd has.
    pub cipher_suites: Vec<String>,
    pub offload: OffloadPolicy,
}

impl TlsOptions {
    fn write(&self, mut b: tls_options::Builder<'_>) {
        let mut alpn = b.reborrow().init_alpn(self.alpn.len() as u32);
        for (i, p) in self.alpn.iter().enumerate() {
            alpn.set(i as u32, capnp::text::Reader::from(&p[..]));
        }
        b.set_min_version(TlsVersion::to_wire(self.min_version));
        b.set_max_version(TlsVersion::to_wire(self.max_version));
        let mut suites = b
            .reborrow()
            .init_cipher_suites(self.cipher_suites.len() as u32);
        for (i, s) in self.cipher_suites.iter().enumerate() {
            suites.set(i as u32, s.as_str());
        }
        b.set_offload(match self.offload {
            OffloadPolicy::Auto => wire::OffloadPolicy::Auto,
            OffloadPolicy::Off => wire::OffloadPolicy::Off,
        });
    }
}

/// What a TLS connection agreed on, and where its records are processed
/// now (tlsd may move them between the NIC and software, e.g. after the
/// egress port changed).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TlsInfo {
    pub version: TlsVersion,
    /// The IANA name, e.g. `TLS13_AES_128_GCM_SHA256`.
    pub cipher_suite: String,
    /// The ALPN protocol agreed, if any.
    pub alpn: Option<Vec<u8>>,
    /// The SNI the client sent, if any.
    pub server_name: Option<String>,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// Where records this side sends are sealed.
    pub tx: RecordMode,
    /// Where records this side receives are opened.
    pub rx: RecordMode,
}

impl TlsInfo {
    fn read(r: tls_info::Reader<'_>) -> io::Result<TlsInfo> {
        let alpn = r.get_alpn().map_err(tls_err)?.as_bytes().to_vec();
        let server_name = r
            .get_server_name()
            .map_err(tls_err)?
            .to_string()
            .map_err(|_| bad_info("server name is not UTF-8"))?;
        Ok(TlsInfo {
            version: TlsVersion::from_wire(r.get_version())?,
            cipher_suite: r
                .get_cipher_suite()
                .map_err(tls_err)?
                .to_string()
                .map_err(|_| bad_info("cipher suite is not UTF-8"))?,
            alpn: (!alpn.is_empty()).then_some(alpn),
            server_name: (!server_name.is_empty()).then_some(server_name),
            local: read_addr(r.get_local().map_err(tls_err)?)?,
            peer: read_addr(r.get_remote().map_err(tls_err)?)?,
            tx: RecordMode::from_wire(r.get_tx())?,
            rx: RecordMode::from_wire(r.get_rx())?,
        })
    }
}

/// `TlsStat` with every counter of the schema's `TlsStat`, read field by
/// field.
macro_rules! tls_stat {
    ($($(#[$doc:meta])* $field:ident: $get:ident,)*) => {
        /// tlsd's counters: those of Linux's `/proc/net/tls_stat`, plus
        /// capnet's own. `curr_*` are connections open now; the rest count
        /// since tlsd started.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        pub struct TlsStat {
            $($(#[$doc])* pub $field: u64,)*
        }

        impl TlsStat {
            fn read(r: tls_stat::Reader<'_>) -> TlsStat {
                TlsStat { $($field: r.$get(),)* }
            }
        }
    };
}

tls_stat! {
    /// Connections whose sending side is in software.
    curr_tx_sw: get_curr_tx_sw,
    /// Connections whose receiving side is in software.
    curr_rx_sw: get_curr_rx_sw,
    /// Connections whose sending side is on the NIC.
    curr_tx_device: get_curr_tx_device,
    /// Connections whose receiving side is on the NIC.
    curr_rx_device: get_curr_rx_device,
    tx_sw: get_tx_sw,
    rx_sw: get_rx_sw,
    tx_device: get_tx_device,
    rx_device: get_rx_device,
    /// Records that failed to authenticate.
    decrypt_error: get_decrypt_error,
    /// Resync requests from a NIC answered.
    rx_device_resync: get_rx_device_resync,
    /// Records the NIC decrypted in part.
    decrypt_retry: get_decrypt_retry,
    tx_rekey_ok: get_tx_rekey_ok,
    rx_rekey_ok: get_rx_rekey_ok,
    rx_rekey_received: get_rx_rekey_received,
    /// Offload contexts created again after an egress change.
    reoffloads: get_reoffloads,
    handshakes: get_handshakes,
    handshake_failures: get_handshake_failures,
    alerts_sent: get_alerts_sent,
    alerts_received: get_alerts_received,
    records_sealed: get_records_sealed,
    records_opened: get_records_opened,
    /// Plaintext bytes.
    bytes_sealed: get_bytes_sealed,
    /// Plaintext bytes.
    bytes_opened: get_bytes_opened,
    /// NewSessionTicket messages received.
    session_tickets: get_session_tickets,
    /// Connections closed because their handshake passed its deadline.
    handshake_timeouts: get_handshake_timeouts,
    /// Handshakes in progress now.
    curr_handshakes: get_curr_handshakes,
    /// TLS sockets tlsd holds now (connections and listeners).
    curr_sockets: get_curr_sockets,
    /// Sockets and incoming connections refused for a limit.
    limit_refused: get_limit_refused,
    /// Failed accepts tlsd survived (e.g. out of file descriptors).
    accept_errors: get_accept_errors,
}

/// A connection to a service set's TLS service (tlsd, `tls.sock`). Cheap to
/// clone; the connection ends when the last clone and every socket made
/// from it are gone.
///
/// If tlsd goes away, every operation on this connection and its sockets
/// fails with `ConnectionReset` ("capnet: the TLS service went away"), as
/// with [`Net`](crate::Net); [`Tls::default_tls`] connects anew on its next
/// use.
#[derive(Clone)]
pub struct Tls {
    conn: Conn,
}

impl Tls {
    /// Connects to tlsd's socket at `path`.
    pub fn connect(path: impl AsRef<Path>) -> io::Result<Tls> {
        Ok(Tls {
            conn: Conn::connect(path.as_ref(), Service::Tls)?,
        })
    }

    /// The process-wide connection to `$CAPNET_TLS_SOCKET` (see
    /// [`default_tls_socket_path`](crate::default_tls_socket_path)), made on
    /// first use, and made again on the next use after tlsd went away.
    /// Sockets of the old connection stay dead.
    pub fn default_tls() -> io::Result<Tls> {
        static DEFAULT: Mutex<Option<Conn>> = Mutex::new(None);
        Ok(Tls {
            conn: Conn::shared(
                &DEFAULT,
                crate::paths::default_tls_socket_path,
                Service::Tls,
            )?,
        })
    }

    /// False once tlsd has gone away.
    pub fn is_connected(&self) -> bool {
        self.conn.is_connected()
    }

    /// tlsd's counters.
    pub fn stat(&self) -> io::Result<TlsStat> {
        self.conn.call(Some(CONTROL_TIMEOUT), |ctx| async move {
            let resp = ctx
                .tls()
                .stat_request()
                .send()
                .promise
                .await
                .map_err(tls_err)?;
            let stat = resp.get().map_err(tls_err)?.get_stat().map_err(tls_err)?;
            Ok(TlsStat::read(stat))
        })
    }

    /// Connects to `addr` and completes a handshake; the peer's certificate
    /// must be valid for `server_name` (a DNS name or an IP address), which
    /// is also sent as SNI. A failed handshake is `InvalidData` (see
    /// [`TlsError`]).
    pub fn connect_stream(
        &self,
        addr: SocketAddr,
        server_name: &str,
        options: &TlsOptions,
    ) -> io::Result<TlsStream> {
        let options = options.clone();
        let server_name = server_name.to_owned();
        let (id, grant) = self.conn.call(None, move |ctx| async move {
            let mut req = ctx.tls().connect_request();
            crate::udp::write_addr(req.get().init_remote(), addr);
            req.get().set_server_name(server_name.as_str());
            options.write(req.get().init_options());
            let call = req.send();
            let rings = call.pipeline.get_socket().open_rings_request().send();
            let resp = call.promise.await.map_err(tls_err)?;
            let sock = resp.get().map_err(tls_err)?.get_socket().map_err(tls_err)?;
            let id = ctx.insert(Object::TlsSocket(sock));
            let grant = granted(
                &ctx,
                id,
                async move { Grant::read(rings.promise.await?.get()?.get_grant()?) },
                tls_err,
            );
            Ok((id, grant.await?))
        })?;
        TlsStream::from_object(self.conn.clone(), id, addr, grant)
    }

    /// Listens on `addr` and serves tlsd's configured identity (`NotFound`
    /// if it has none).
    pub fn listen(
        &self,
        addr: SocketAddr,
        backlog: u32,
        options: &TlsOptions,
    ) -> io::Result<TlsListener> {
        let options = options.clone();
        let (id, local) = self
            .conn
            .call(Some(CONTROL_TIMEOUT), move |ctx| async move {
                let mut req = ctx.tls().listen_request();
                crate::udp::write_addr(req.get().init_local(), addr);
                req.get().set_backlog(backlog);
                options.write(req.get().init_options());
                let resp = req.send().promise.await.map_err(tls_err)?;
                let l = resp
                    .get()
                    .map_err(tls_err)?
                    .get_listener()
                    .map_err(tls_err)?;
                let la = l
                    .local_addr_request()
                    .send()
                    .promise
                    .await
                    .map_err(tls_err)?;
                let local = read_addr(la.get().map_err(tls_err)?.get_addr().map_err(tls_err)?)?;
                Ok((ctx.insert(Object::TlsListener(l)), local))
            })?;
        Ok(TlsListener {
            conn: self.conn.clone(),
            id,
            local,
            acceptor: Acceptor::new(self.conn.clone()),
        })
    }
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("connected", &self.is_connected())
            .finish()
    }
}

/// A TLS connection whose handshake has completed; reads and writes
/// plaintext, like a [`TcpStream`](crate::TcpStream).
///
/// The peer's `close_notify` is end of stream (`read` answers 0); a fatal
/// alert or a connection reset fails the read. `shutdown(Write)` makes tlsd
/// send `close_notify` after the bytes written so far; so does dropping the
/// stream.
///
/// If tlsd goes away, sleepers in `read` and `write` wake at once and every
/// operation from then on fails with `ConnectionReset`; plaintext tlsd had
/// already put in the receive ring is still delivered first.
pub struct TlsStream {
    ring: RingStream,
    peer: SocketAddr,
    local: OnceLock<SocketAddr>,
}

impl TlsStream {
    /// Connects through the default TLS service
    /// ([`Tls::default_tls`]) with the default [`TlsOptions`].
    pub fn connect(addr: impl ToSocketAddrs, server_name: &str) -> io::Result<TlsStream> {
        Tls::default_tls()?.connect_stream(resolve(addr)?, server_name, &TlsOptions::default())
    }

    /// Takes a TLS socket (already in the connection's table) to ring mode
    /// with its `openRings` answer.
    fn from_object(conn: Conn, id: u64, peer: SocketAddr, grant: Grant) -> io::Result<TlsStream> {
        let ring = RingStream::open(conn, id, grant)?;
        Ok(TlsStream {
            ring,
            peer,
            local: OnceLock::new(),
        })
    }

    /// What the handshake agreed on, and where records are processed now
    /// (asked of tlsd on each call).
    pub fn info(&self) -> io::Result<TlsInfo> {
        let id = self.ring.id();
        let info = self
            .ring
            .conn()
            .call(Some(CONTROL_TIMEOUT), move |ctx| async move {
                let resp = ctx
                    .tls_socket(id)?
                    .info_request()
                    .send()
                    .promise
                    .await
                    .map_err(tls_err)?;
                TlsInfo::read(resp.get().map_err(tls_err)?.get_info().map_err(tls_err)?)
            })?;
        let _ = self.local.set(info.local);
        Ok(info)
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer)
    }

    /// Asked of tlsd on first use.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self.local.get() {
            Some(a) => Ok(*a),
            None => Ok(self.info()?.local),
        }
    }

    /// `Write`: tlsd sends `close_notify` after the bytes written so far.
    /// `Read`: reads answer end of stream from now on (nothing is sent;
    /// TLS has no way to say it).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.ring.conn().check()?;
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            self.ring.shutdown_read(ReadShut::Eof);
        }
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            self.ring.shutdown_write()?;
        }
        Ok(())
    }
}

ring_stream_api!(TlsStream, ring);

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("local", &self.local.get())
            .field("peer", &self.peer)
            .finish()
    }
}

/// A TLS listener: accepts connections whose handshake completed (a client
/// whose handshake fails is counted in [`TlsStat::handshake_failures`] and
/// `accept` waits for the next one). Dropping it closes the listening
/// socket. If tlsd goes away, a blocked `accept` returns at once and every
/// call from then on fails with `ConnectionReset`.
pub struct TlsListener {
    conn: Conn,
    id: u64,
    local: SocketAddr,
    acceptor: Acceptor,
}

impl TlsListener {
    /// Listens through the default TLS service with the default
    /// [`TlsOptions`] and a backlog of 128.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<TlsListener> {
        Tls::default_tls()?.listen(resolve(addr)?, 128, &TlsOptions::default())
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    /// In non-blocking mode, `accept` answers `WouldBlock` after 1 ms
    /// without a connection (the call stays in flight: a connection it
    /// brings later is the next `accept`'s).
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.acceptor.set_nonblocking(on);
        Ok(())
    }

    /// Stops listening and waits for tlsd to release the port; connections
    /// not yet accepted are closed. Dropping the listener does the same
    /// without waiting.
    pub fn close(self) -> io::Result<()> {
        let id = self.id;
        self.conn
            .call(Some(CONTROL_TIMEOUT), move |ctx| async move {
                let l = ctx.tls_listener(id)?;
                l.close_request().send().promise.await.map_err(tls_err)?;
                Ok(())
            })
    }

    pub fn accept(&self) -> io::Result<(TlsStream, SocketAddr)> {
        let id = self.id;
        let (sock, remote) = self.acceptor.accept(move |ctx| async move {
            let resp = ctx
                .tls_listener(id)?
                .accept_request()
                .send()
                .promise
                .await
                .map_err(tls_err)?;
            let r = resp.get().map_err(tls_err)?;
            let remote = read_addr(r.get_remote().map_err(tls_err)?)?;
            let sock = r.get_socket().map_err(tls_err)?;
            Ok((ctx.insert(Object::TlsSocket(sock)), remote))
        })?;
        // Asked only now (see `TcpListener::accept`).
        let grant = self
            .conn
            .call(None, move |ctx| async move {
                let rings = ctx.tls_socket(sock)?.open_rings_request().send();
                granted(
                    &ctx,
                    sock,
                    async move { Grant::read(rings.promise.await?.get()?.get_grant()?) },
                    tls_err,
                )
                .await
            })
            .inspect_err(|_| self.conn.release(sock))?;
        Ok((
            TlsStream::from_object(self.conn.clone(), sock, remote, grant)?,
            remote,
        ))
    }

    pub fn incoming(&self) -> impl Iterator<Item = io::Result<TlsStream>> + '_ {
        std::iter::repeat_with(move || self.accept().map(|(s, _)| s))
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        let id = self.id;
        self.conn.spawn(move |ctx| async move {
            if let Some(Object::TlsListener(l)) = ctx.remove(id) {
                let _ = l.close_request().send().promise.await;
            }
        });
    }
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("local", &self.local)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(description: &str) -> capnp::Error {
        capnp::Error::failed(description.to_owned())
    }

    #[test]
    fn tls_words_map_to_io_kinds_and_keep_the_description() {
        let cases = [
            ("handshake: certificate expired", io::ErrorKind::InvalidData),
            (
                "identity: no certificate configured",
                io::ErrorKind::NotFound,
            ),
            ("alert: peer sent decrypt_error", io::ErrorKind::InvalidData),
            (
                "remote exception: handshake: received fatal alert: HandshakeFailure",
                io::ErrorKind::InvalidData,
            ),
            (
                "limit: uid 1000 holds 256 TLS sockets",
                io::ErrorKind::QuotaExceeded,
            ),
        ];
        for (description, kind) in cases {
            let e = tls_err(failed(description));
            assert_eq!(e.kind(), kind, "{description}");
            let plain = description.trim_start_matches("remote exception: ");
            assert_eq!(e.to_string(), plain);
        }
        let e = tls_err(failed("handshake: x"));
        assert_eq!(TlsError::of(&e), Some(TlsError::Handshake));
        assert_eq!(
            TlsError::of(&tls_err(failed("identity: none"))),
            Some(TlsError::Identity)
        );
        assert_eq!(
            TlsError::of(&tls_err(failed("alert: bad_record_mac"))),
            Some(TlsError::Alert)
        );
    }

    #[test]
    fn socket_words_still_map_like_netsrv() {
        for s in SocketError::ALL {
            let e = tls_err(s.to_capnp("10.0.0.2:443"));
            assert_eq!(e.kind(), s.io_kind(), "{s}");
            assert_eq!(TlsError::of(&e), None);
        }
        // The first word decides: a socket word before a TLS word.
        let e = tls_err(failed("refused: handshake never started"));
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(tls_err(failed("nonsense")).kind(), io::ErrorKind::Other);
    }

    #[test]
    fn a_broken_connection_is_tlsd_gone() {
        let e = tls_err(capnp::Error::disconnected("eof".into()));
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        assert!(e.to_string().contains("TLS service went away"), "{e}");
    }

    #[test]
    fn options_on_the_wire() {
        let options = TlsOptions {
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            min_version: Some(TlsVersion::Tls13),
            max_version: None,
            cipher_suites: vec!["TLS_AES_256_GCM_SHA384".into()],
            offload: OffloadPolicy::Off,
        };
        let mut msg = capnp::message::Builder::new_default();
        options.write(msg.init_root());
        let r = msg.get_root_as_reader::<tls_options::Reader>().unwrap();
        let alpn: Vec<&[u8]> = r
            .get_alpn()
            .unwrap()
            .iter()
            .map(|t| t.unwrap().as_bytes())
            .collect();
        assert_eq!(alpn, [&b"h2"[..], b"http/1.1"]);
        assert_eq!(r.get_min_version().unwrap(), wire::TlsVersion::Tls13);
        assert_eq!(r.get_max_version().unwrap(), wire::TlsVersion::Unset);
        let suites = r.get_cipher_suites().unwrap();
        assert_eq!(suites.len(), 1);
        assert_eq!(
            suites.get(0).unwrap().to_str().unwrap(),
            "TLS_AES_256_GCM_SHA384"
        );
        assert_eq!(r.get_offload().unwrap(), wire::OffloadPolicy::Off);

        let mut msg = capnp::message::Builder::new_default();
        TlsOptions::default().write(msg.init_root());
        let r = msg.get_root_as_reader::<tls_options::Reader>().unwrap();
        assert_eq!(r.get_alpn().unwrap().len(), 0);
        assert_eq!(r.get_min_version().unwrap(), wire::TlsVersion::Unset);
        assert_eq!(r.get_offload().unwrap(), wire::OffloadPolicy::Auto);
    }

    fn info_message(
        fill: impl FnOnce(tls_info::Builder<'_>),
    ) -> capnp::message::Builder<capnp::message::HeapAllocator> {
        let mut msg = capnp::message::Builder::new_default();
        fill(msg.init_root());
        msg
    }

    fn full_info(mut b: tls_info::Builder<'_>) {
        b.set_version(wire::TlsVersion::Tls13);
        b.set_cipher_suite("TLS13_AES_128_GCM_SHA256");
        b.set_alpn("h2");
        b.set_server_name("example.test");
        crate::udp::write_addr(b.reborrow().init_local(), "10.0.0.1:40000".parse().unwrap());
        crate::udp::write_addr(b.reborrow().init_remote(), "10.0.0.2:443".parse().unwrap());
        b.set_tx(wire::RecordMode::Device);
        b.set_rx(wire::RecordMode::Software);
    }

    #[test]
    fn info_read() {
        let msg = info_message(full_info);
        let info = TlsInfo::read(msg.get_root_as_reader().unwrap()).unwrap();
        assert_eq!(
            info,
            TlsInfo {
                version: TlsVersion::Tls13,
                cipher_suite: "TLS13_AES_128_GCM_SHA256".into(),
                alpn: Some(b"h2".to_vec()),
                server_name: Some("example.test".into()),
                local: "10.0.0.1:40000".parse().unwrap(),
                peer: "10.0.0.2:443".parse().unwrap(),
                tx: RecordMode::Device,
                rx: RecordMode::Software,
            }
        );
    }

    #[test]
    fn info_without_alpn_or_sni_and_with_an_unset_version() {
        let msg = info_message(|mut b| {
            full_info(b.reborrow());
            b.set_alpn("");
            b.set_server_name("");
        });
        let info = TlsInfo::read(msg.get_root_as_reader().unwrap()).unwrap();
        assert_eq!((info.alpn, info.server_name), (None, None));

        let msg = info_message(|mut b| {
            full_info(b.reborrow());
            b.set_version(wire::TlsVersion::Unset);
        });
        let e = TlsInfo::read(msg.get_root_as_reader().unwrap()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn stat_reads_every_counter() {
        let mut msg = capnp::message::Builder::new_default();
        let mut b = msg.init_root::<tls_stat::Builder>();
        // Every field a different value: a counter read from the wrong
        // field shows.
        b.set_curr_tx_sw(1);
        b.set_curr_rx_sw(2);
        b.set_curr_tx_device(3);
        b.set_curr_rx_device(4);
        b.set_tx_sw(5);
        b.set_rx_sw(6);
        b.set_tx_device(7);
        b.set_rx_device(8);
        b.set_decrypt_error(9);
        b.set_rx_device_resync(10);
        b.set_decrypt_retry(11);
        b.set_tx_rekey_ok(12);
        b.set_rx_rekey_ok(13);
        b.set_rx_rekey_received(14);
        b.set_reoffloads(15);
        b.set_handshakes(16);
        b.set_handshake_failures(17);
        b.set_alerts_sent(18);
        b.set_alerts_received(19);
        b.set_records_sealed(20);
        b.set_records_opened(21);
        b.set_bytes_sealed(22);
        b.set_bytes_opened(23);
        b.set_session_tickets(24);
        b.set_handshake_timeouts(25);
        b.set_curr_handshakes(26);
        b.set_curr_sockets(27);
        b.set_limit_refused(28);
        b.set_accept_errors(29);
        let stat = TlsStat::read(msg.get_root_as_reader().unwrap());
        assert_eq!(
            stat,
            TlsStat {
                curr_tx_sw: 1,
                curr_rx_sw: 2,
                curr_tx_device: 3,
                curr_rx_device: 4,
                tx_sw: 5,
                rx_sw: 6,
                tx_device: 7,
                rx_device: 8,
                decrypt_error: 9,
                rx_device_resync: 10,
                decrypt_retry: 11,
                tx_rekey_ok: 12,
                rx_rekey_ok: 13,
                rx_rekey_received: 14,
                reoffloads: 15,
                handshakes: 16,
                handshake_failures: 17,
                alerts_sent: 18,
                alerts_received: 19,
                records_sealed: 20,
                records_opened: 21,
                bytes_sealed: 22,
                bytes_opened: 23,
                session_tickets: 24,
                handshake_timeouts: 25,
                curr_handshakes: 26,
                curr_sockets: 27,
                limit_refused: 28,
                accept_errors: 29,
            }
        );
    }
}
