//! The TLS handshake, done by rustls over a byte stream, after which the
//! connection's traffic secrets move to tlsd's own record layer.
//!
//! A [`Handshake`] is a machine that the caller advances whenever the
//! stream may have moved: over a non-blocking stream it does what the bytes
//! at hand allow and says it is waiting (tlsd's handshake workers run many
//! at once this way, each with a deadline); over a blocking one it runs to
//! the end ([`client`], [`server`]).
//!
//! rustls's unbuffered API is driven until the handshake is complete and
//! nothing is left to send; then `dangerous_into_kernel_connection` hands
//! over the secrets and record sequence numbers, and a `KernelConnection`
//! that still derives new secrets on KeyUpdate and stores session tickets.
//! Bytes that arrived behind the last handshake message (a session ticket,
//! early application data) belong to the record layer and are handed over
//! too.

use crate::identity::Sni;
use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::kernel::KernelConnection;
use rustls::pki_types::ServerName;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, UnbufferedStatus};
use rustls::{ClientConfig, ConnectionTrafficSecrets, ProtocolVersion, ServerConfig};
use std::fmt;
use std::io::{self, Read, Write};
use std::sync::Arc;

/// Largest handshake flight we buffer while waiting for the rest of it.
const MAX_INCOMING: usize = 256 * 1024;

#[derive(Debug)]
pub enum HandshakeError {
    /// rustls refused the peer (the message says why: alert, certificate,
    /// no common version or suite).
    Tls(rustls::Error),
    /// The transport failed or closed mid-handshake.
    Io(io::Error),
    /// The peer sent more handshake data than any flight needs.
    Oversized,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Tls(e) => write!(f, "{e}"),
            HandshakeError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                write!(f, "the peer closed the connection during the handshake")
            }
            HandshakeError::Io(e) => write!(f, "transport: {e}"),
            HandshakeError::Oversized => write!(f, "handshake flight over {MAX_INCOMING} bytes"),
        }
    }
}

impl std::error::Error for HandshakeError {}

impl From<io::Error> for HandshakeError {
    fn from(e: io::Error) -> Self {
        HandshakeError::Io(e)
    }
}

impl From<rustls::Error> for HandshakeError {
    fn from(e: rustls::Error) -> Self {
        HandshakeError::Tls(e)
    }
}

/// What the rest of a connection needs from rustls.
pub enum Kernel {
    Client(KernelConnection<ClientConnectionData>),
    Server(KernelConnection<ServerConnectionData>),
}

impl Kernel {
    /// New secrets for our direction (TLS 1.3 KeyUpdate); sequence restarts at 0.
    pub fn update_tx(&mut self) -> Result<ConnectionTrafficSecrets, rustls::Error> {
        match self {
            Kernel::Client(k) => k.update_tx_secret().map(|(_, s)| s),
            Kernel::Server(k) => k.update_tx_secret().map(|(_, s)| s),
        }
    }

    pub fn update_rx(&mut self) -> Result<ConnectionTrafficSecrets, rustls::Error> {
        match self {
            Kernel::Client(k) => k.update_rx_secret().map(|(_, s)| s),
            Kernel::Server(k) => k.update_rx_secret().map(|(_, s)| s),
        }
    }

    /// A NewSessionTicket body (after the 4-byte handshake header). Only a
    /// client receives them.
    pub fn session_ticket(&mut self, body: &[u8]) -> Result<(), rustls::Error> {
        match self {
            Kernel::Client(k) => k.handle_new_session_ticket(body),
            Kernel::Server(_) => Err(rustls::Error::General(
                "a client sent a NewSessionTicket".into(),
            )),
        }
    }
}

/// A completed handshake.
pub struct Established {
    pub tx: (u64, ConnectionTrafficSecrets),
    pub rx: (u64, ConnectionTrafficSecrets),
    pub kernel: Kernel,
    /// Received bytes behind the handshake: records for the record layer.
    pub leftover: Vec<u8>,
    /// Application data rustls already opened (before the handover).
    pub early_plaintext: Vec<u8>,
    pub version: ProtocolVersion,
    pub suite: String,
    pub alpn: Option<Vec<u8>>,
    pub server_name: Option<String>,
    /// Stream offsets after the handshake: of `leftover[0]` in the bytes
    /// received, and of the next byte to send.
    pub rx_offset: u64,
    pub tx_offset: u64,
}

/// The two unbuffered connection types behind one face.
trait Unbuffered {
    type Data;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
    fn handshaking(&self) -> bool;
    /// ALPN, version and suite agreed.
    fn negotiated(&self) -> Negotiated;
    fn into_kernel(self) -> Result<(rustls::ExtractedSecrets, Kernel), rustls::Error>;
}

type Negotiated = (
    Option<Vec<u8>>,
    Option<ProtocolVersion>,
    Option<rustls::SupportedCipherSuite>,
);

impl Unbuffered for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
    fn handshaking(&self) -> bool {
        self.is_handshaking()
    }
    fn negotiated(&self) -> Negotiated {
        (
            self.alpn_protocol().map(<[u8]>::to_vec),
            self.protocol_version(),
            self.negotiated_cipher_suite(),
        )
    }
    fn into_kernel(self) -> Result<(rustls::ExtractedSecrets, Kernel), rustls::Error> {
        let (secrets, k) = self.dangerous_into_kernel_connection()?;
        Ok((secrets, Kernel::Client(k)))
    }
}

impl Unbuffered for UnbufferedServerConnection {
    type Data = ServerConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
    fn handshaking(&self) -> bool {
        self.is_handshaking()
    }
    fn negotiated(&self) -> Negotiated {
        (
            self.alpn_protocol().map(<[u8]>::to_vec),
            self.protocol_version(),
            self.negotiated_cipher_suite(),
        )
    }
    fn into_kernel(self) -> Result<(rustls::ExtractedSecrets, Kernel), rustls::Error> {
        let (secrets, k) = self.dangerous_into_kernel_connection()?;
        Ok((secrets, Kernel::Server(k)))
    }
}

/// Runs the client handshake over a blocking `io`.
pub fn client(
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    io: &mut (impl Read + Write),
) -> Result<Established, HandshakeError> {
    Handshake::client(config, name)?.run(io)
}

/// Runs the server handshake over a blocking `io`.
pub fn server(
    config: Arc<ServerConfig>,
    sni: &Arc<Sni>,
    io: &mut (impl Read + Write),
) -> Result<Established, HandshakeError> {
    Handshake::server(config, sni.clone())?.run(io)
}

/// One handshake in progress, client or server.
pub struct Handshake(Side);

enum Side {
    Client(Machine<UnbufferedClientConnection>, String),
    Server(Machine<UnbufferedServerConnection>, Arc<Sni>),
}

impl Handshake {
    pub fn client(
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<Handshake, HandshakeError> {
        let conn = UnbufferedClientConnection::new(config, name.clone())?;
        let server_name = match name {
            ServerName::DnsName(d) => d.as_ref().to_owned(),
            other => other.to_str().into_owned(),
        };
        Ok(Handshake(Side::Client(Machine::new(conn), server_name)))
    }

    /// `sni` learns the name the client asks for (see [`Sni`]).
    pub fn server(config: Arc<ServerConfig>, sni: Arc<Sni>) -> Result<Handshake, HandshakeError> {
        let conn = UnbufferedServerConnection::new(config)?;
        Ok(Handshake(Side::Server(Machine::new(conn), sni)))
    }

    /// Moves the handshake as far as `io` allows: `Ok(true)` once it is
    /// complete and everything it wrote has been sent, `Ok(false)` when it
    /// waits for `io` (a read or write answered `WouldBlock`).
    pub fn advance(&mut self, io: &mut (impl Read + Write)) -> Result<bool, HandshakeError> {
        match &mut self.0 {
            Side::Client(m, _) => m.advance(io),
            Side::Server(m, _) => m.advance(io),
        }
    }

    /// The completed handshake, once `advance` said so.
    pub fn established(self) -> Result<Established, HandshakeError> {
        match self.0 {
            Side::Client(m, name) => m.established(Some(name)),
            Side::Server(m, sni) => m.established(sni.name()),
        }
    }

    /// To the end, over a blocking `io`.
    fn run(mut self, io: &mut (impl Read + Write)) -> Result<Established, HandshakeError> {
        while !self.advance(io)? {
            // A blocking stream never answers WouldBlock; one that does is
            // waited for briefly rather than spun on.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        self.established()
    }
}

fn suite_name(suite: Option<rustls::SupportedCipherSuite>) -> String {
    suite
        .and_then(|s| s.suite().as_str())
        .unwrap_or("unknown")
        .to_owned()
}

/// rustls's connection and the bytes around it.
struct Machine<C> {
    conn: C,
    /// Received, not yet taken by rustls: `incoming[..filled]`.
    incoming: Vec<u8>,
    filled: usize,
    /// Encoded by rustls: `outgoing[sent..encoded]` still to send.
    outgoing: Vec<u8>,
    encoded: usize,
    sent: usize,
    /// Application data rustls opened before the handover.
    plaintext: Vec<u8>,
    /// Stream bytes read and written (offload contexts are placed by
    /// stream offset).
    read: u64,
    written: u64,
    /// The handshake is complete; what remains is sending its last bytes.
    complete: bool,
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl<C: Unbuffered> Machine<C> {
    fn new(conn: C) -> Machine<C> {
        Machine {
            conn,
            incoming: vec![0u8; 16 * 1024],
            filled: 0,
            outgoing: vec![0u8; 4096],
            encoded: 0,
            sent: 0,
            plaintext: Vec::new(),
            read: 0,
            written: 0,
            complete: false,
        }
    }

    /// Sends what is encoded; false if the stream took only part of it.
    fn flush(&mut self, io: &mut impl Write) -> Result<bool, HandshakeError> {
        while self.sent < self.encoded {
            match io.write(&self.outgoing[self.sent..self.encoded]) {
                Ok(0) => return Err(HandshakeError::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    self.sent += n;
                    self.written += n as u64;
                }
                Err(e) if would_block(&e) => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.sent = 0;
        self.encoded = 0;
        io.flush()?;
        Ok(true)
    }

    fn advance(&mut self, io: &mut (impl Read + Write)) -> Result<bool, HandshakeError> {
        loop {
            if !self.flush(io)? {
                return Ok(false);
            }
            if self.complete {
                return Ok(true);
            }
            let UnbufferedStatus { discard, state } =
                self.conn.process(&mut self.incoming[..self.filled]);
            let state = match state {
                Ok(s) => s,
                Err(e) => {
                    // rustls queued a fatal alert for the peer; send it if
                    // we can. It expects the buffer it saw, less what it
                    // consumed.
                    self.incoming.copy_within(discard..self.filled, 0);
                    self.filled -= discard;
                    flush_alert(&mut self.conn, &mut self.incoming[..self.filled], io);
                    return Err(e.into());
                }
            };
            let mut need_read = false;
            match state {
                ConnectionState::EncodeTlsData(mut enc) => loop {
                    match enc.encode(&mut self.outgoing[self.encoded..]) {
                        Ok(n) => {
                            self.encoded += n;
                            break;
                        }
                        Err(EncodeError::InsufficientSize(e)) => {
                            self.outgoing.resize(self.encoded + e.required_size, 0);
                        }
                        Err(e) => {
                            return Err(HandshakeError::Tls(rustls::Error::General(e.to_string())))
                        }
                    }
                },
                // Sent by `flush` at the top of the loop, before rustls is
                // asked for anything more.
                ConnectionState::TransmitTlsData(t) => t.done(),
                ConnectionState::BlockedHandshake => need_read = true,
                ConnectionState::ReadTraffic(mut r) => {
                    while let Some(rec) = r.next_record() {
                        self.plaintext.extend_from_slice(rec?.payload);
                    }
                }
                ConnectionState::WriteTraffic(_) => {
                    // A TLS 1.3 server may send before the client's
                    // Finished; the handover waits for the end of the
                    // handshake.
                    if self.conn.handshaking() {
                        need_read = true;
                    } else {
                        self.complete = true;
                    }
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    return Err(HandshakeError::Io(io::ErrorKind::UnexpectedEof.into()));
                }
                // Early data is not enabled; anything else is new in rustls.
                _ => need_read = true,
            }
            self.incoming.copy_within(discard..self.filled, 0);
            self.filled -= discard;
            if need_read {
                // What rustls asked to send goes before we wait for the
                // peer's answer to it.
                if !self.flush(io)? {
                    return Ok(false);
                }
                if self.filled == self.incoming.len() {
                    if self.incoming.len() >= MAX_INCOMING {
                        return Err(HandshakeError::Oversized);
                    }
                    self.incoming.resize(self.incoming.len() * 2, 0);
                }
                match io.read(&mut self.incoming[self.filled..]) {
                    Ok(0) => return Err(HandshakeError::Io(io::ErrorKind::UnexpectedEof.into())),
                    Ok(n) => {
                        self.filled += n;
                        self.read += n as u64;
                    }
                    Err(e) if would_block(&e) => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }

    fn established(mut self, server_name: Option<String>) -> Result<Established, HandshakeError> {
        let (alpn, version, suite) = self.conn.negotiated();
        let (secrets, kernel) = self.conn.into_kernel()?;
        self.incoming.truncate(self.filled);
        Ok(Established {
            tx: secrets.tx,
            rx: secrets.rx,
            kernel,
            rx_offset: self.read - self.filled as u64,
            tx_offset: self.written,
            leftover: self.incoming,
            early_plaintext: self.plaintext,
            version: version.unwrap_or(ProtocolVersion::Unknown(0)),
            suite: suite_name(suite),
            alpn,
            server_name,
        })
    }
}

/// After a failed step rustls has a fatal alert ready; deliver it so that
/// the peer learns why (best effort, one try: the connection is ending
/// anyway).
fn flush_alert<C: Unbuffered>(conn: &mut C, incoming: &mut [u8], io: &mut impl Write) {
    let mut out = vec![0u8; 512];
    let mut len = 0;
    for _ in 0..4 {
        let UnbufferedStatus { state, .. } = conn.process(incoming);
        match state {
            Ok(ConnectionState::EncodeTlsData(mut enc)) => {
                if let Ok(n) = enc.encode(&mut out[len..]) {
                    len += n;
                }
            }
            Ok(ConnectionState::TransmitTlsData(t)) => {
                let _ = io.write_all(&out[..len]);
                let _ = io.flush();
                t.done();
                return;
            }
            _ => break,
        }
    }
    if len > 0 {
        let _ = io.write_all(&out[..len]);
    }
}
