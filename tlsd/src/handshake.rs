//! The TLS handshake, done by rustls over a blocking byte stream, after
//! which the connection's traffic secrets move to tlsd's own record layer.
//!
//! rustls's unbuffered API is driven until the handshake is complete and
//! nothing is left to send; then `dangerous_into_kernel_connection` hands
//! over the secrets and record sequence numbers, and a `KernelConnection`
//! that still derives new secrets on KeyUpdate and stores session tickets.
//! Bytes that arrived behind the last handshake message (a session ticket,
//! early application data) belong to the record layer and are handed over
//! too.

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

/// Counts the bytes a handshake moves, so that records after it have
/// stream offsets (what offload contexts are placed by).
struct Counting<'a, T> {
    io: &'a mut T,
    read: u64,
    written: u64,
}

impl<T: Read> Read for Counting<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.io.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

impl<T: Write> Write for Counting<'_, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.io.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.io.flush()
    }
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

/// Runs the client handshake over `io`.
pub fn client(
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    io: &mut (impl Read + Write),
) -> Result<Established, HandshakeError> {
    let conn = UnbufferedClientConnection::new(config, name.clone())?;
    let server_name = match name {
        ServerName::DnsName(d) => d.as_ref().to_owned(),
        other => other.to_str().into_owned(),
    };
    run(conn, io, || Some(server_name))
}

/// Runs the server handshake over `io`.
pub fn server(
    config: Arc<ServerConfig>,
    sni: &crate::identity::Sni,
    io: &mut (impl Read + Write),
) -> Result<Established, HandshakeError> {
    let conn = UnbufferedServerConnection::new(config)?;
    run(conn, io, || sni.name())
}

/// Drives the handshake, then hands the connection over (`server_name` is
/// asked once the handshake saw it).
fn run<C: Unbuffered>(
    mut conn: C,
    io: &mut (impl Read + Write),
    server_name: impl FnOnce() -> Option<String>,
) -> Result<Established, HandshakeError> {
    let mut io = Counting {
        io,
        read: 0,
        written: 0,
    };
    let driven = drive(&mut conn, &mut io)?;
    let (alpn, version, suite) = conn.negotiated();
    let (secrets, kernel) = conn.into_kernel()?;
    Ok(Established {
        tx: secrets.tx,
        rx: secrets.rx,
        kernel,
        rx_offset: io.read - driven.leftover.len() as u64,
        tx_offset: io.written,
        leftover: driven.leftover,
        early_plaintext: driven.plaintext,
        version: version.unwrap_or(ProtocolVersion::Unknown(0)),
        suite: suite_name(suite),
        alpn,
        server_name: server_name(),
    })
}

fn suite_name(suite: Option<rustls::SupportedCipherSuite>) -> String {
    suite
        .and_then(|s| s.suite().as_str())
        .unwrap_or("unknown")
        .to_owned()
}

struct Driven {
    leftover: Vec<u8>,
    plaintext: Vec<u8>,
}

fn drive<C: Unbuffered>(
    conn: &mut C,
    io: &mut (impl Read + Write),
) -> Result<Driven, HandshakeError> {
    let mut incoming = vec![0u8; 16 * 1024];
    let mut filled = 0;
    let mut outgoing = vec![0u8; 4096];
    let mut encoded = 0;
    let mut plaintext = Vec::new();
    loop {
        let UnbufferedStatus { discard, state } = conn.process(&mut incoming[..filled]);
        let state = match state {
            Ok(s) => s,
            Err(e) => {
                // rustls queued a fatal alert for the peer; send it if we
                // can. It expects the buffer it saw, less what it consumed.
                incoming.copy_within(discard..filled, 0);
                filled -= discard;
                flush_alert(conn, &mut incoming[..filled], io);
                return Err(e.into());
            }
        };
        let mut need_read = false;
        let mut done = false;
        match state {
            ConnectionState::EncodeTlsData(mut enc) => loop {
                match enc.encode(&mut outgoing[encoded..]) {
                    Ok(n) => {
                        encoded += n;
                        break;
                    }
                    Err(EncodeError::InsufficientSize(e)) => {
                        outgoing.resize(encoded + e.required_size, 0);
                    }
                    Err(e) => {
                        return Err(HandshakeError::Tls(rustls::Error::General(e.to_string())))
                    }
                }
            },
            ConnectionState::TransmitTlsData(t) => {
                io.write_all(&outgoing[..encoded])?;
                io.flush()?;
                encoded = 0;
                t.done();
            }
            ConnectionState::BlockedHandshake => need_read = true,
            ConnectionState::ReadTraffic(mut r) => {
                while let Some(rec) = r.next_record() {
                    plaintext.extend_from_slice(rec?.payload);
                }
            }
            ConnectionState::WriteTraffic(_) => {
                // A TLS 1.3 server may send before the client's Finished;
                // the handover waits for the end of the handshake.
                if conn.handshaking() {
                    need_read = true;
                } else {
                    done = true;
                }
            }
            ConnectionState::PeerClosed | ConnectionState::Closed => {
                return Err(HandshakeError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            // Early data is not enabled; anything else is new in rustls.
            _ => need_read = true,
        }
        incoming.copy_within(discard..filled, 0);
        filled -= discard;
        if done {
            incoming.truncate(filled);
            return Ok(Driven {
                leftover: incoming,
                plaintext,
            });
        }
        if need_read {
            if filled == incoming.len() {
                if incoming.len() >= MAX_INCOMING {
                    return Err(HandshakeError::Oversized);
                }
                incoming.resize(incoming.len() * 2, 0);
            }
            let n = io.read(&mut incoming[filled..])?;
            if n == 0 {
                return Err(HandshakeError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            filled += n;
        }
    }
}

/// After a failed step rustls has a fatal alert ready; deliver it so that
/// the peer learns why (best effort: the connection is ending anyway).
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
