//! One TLS connection after the handshake: tlsd's own record layer.
//!
//! A state machine with no I/O of its own (rustls's style): the caller
//! feeds it bytes received from TCP ([`TlsConn::received`]), takes the
//! plaintext it opened ([`TlsConn::plaintext`]), hands it plaintext to send
//! ([`TlsConn::seal`]) and sends what [`TlsConn::outgoing`] holds.
//!
//! Besides application data it handles what follows a handshake: alerts
//! (close_notify is end of stream, anything fatal ends the connection),
//! TLS 1.3 KeyUpdate in both directions (asked by the peer, or ours when a
//! key nears its confidentiality limit) and NewSessionTicket (stored by
//! rustls for resumption).

use crate::alert::{Alert, AlertDescription, AlertLevel};
use crate::handshake::{Established, Kernel};
use crate::record::{
    Cipher, Decryption, RecordError, RecordOpener, RecordReader, RecordSealer, TrafficKeys,
};
use crate::stats::Stats;
use capnet_wire::tls::{ContentType, Version, MAX_PLAINTEXT};
use rustls::{ConnectionTrafficSecrets, ProtocolVersion};
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

/// Post-handshake messages larger than this are refused (a ticket is a few
/// hundred bytes; a KeyUpdate one).
const MAX_HANDSHAKE_MESSAGE: usize = 64 * 1024;

const HS_HELLO_REQUEST: u8 = 0;
const HS_NEW_SESSION_TICKET: u8 = 4;
const HS_KEY_UPDATE: u8 = 24;

mod device;

pub use device::DeviceStart;
use device::{DeviceTx, FramedRecord};

/// Why a connection ended badly. Every variant maps to the alert sent (or
/// received) and to a socket error for the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnError {
    /// We found the peer at fault; `alert` went to the peer.
    Local {
        alert: AlertDescription,
        what: String,
    },
    /// The peer sent a fatal alert.
    PeerAlert(AlertDescription),
    /// The TCP stream ended without close_notify (truncation): `buffered`
    /// bytes of an unfinished record at stream offset `at`.
    Truncated { at: u64, buffered: usize },
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::Local { alert, what } => write!(f, "{what} (sent alert {alert:?})"),
            ConnError::PeerAlert(a) => write!(f, "the peer sent fatal alert {a:?}"),
            ConnError::Truncated { at, buffered } => write!(
                f,
                "the TCP stream ended without close_notify \
                 ({buffered} bytes of an unfinished record at stream offset {at})"
            ),
        }
    }
}

impl std::error::Error for ConnError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RxState {
    Open,
    /// close_notify received: end of stream.
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TxState {
    Open,
    /// close_notify queued: nothing more may be sealed.
    Closed,
}

/// The record-layer protocol version of a negotiated connection.
pub fn record_version(v: ProtocolVersion) -> Option<Version> {
    match v {
        ProtocolVersion::TLSv1_2 => Some(Version::Tls12),
        ProtocolVersion::TLSv1_3 => Some(Version::Tls13),
        _ => None,
    }
}

/// rustls's extracted secrets as the record layer's keys; `None` for an
/// AEAD the record layer lacks (the ring provider has only these three).
pub fn traffic_keys(version: Version, secrets: ConnectionTrafficSecrets) -> Option<TrafficKeys> {
    let (cipher, key, iv) = match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (Cipher::Aes128Gcm, key, iv),
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (Cipher::Aes256Gcm, key, iv),
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
            (Cipher::Chacha20Poly1305, key, iv)
        }
        _ => return None,
    };
    let iv12: [u8; 12] = iv.as_ref().try_into().ok()?;
    Some(TrafficKeys::new(version, cipher, key.as_ref(), iv12))
}

/// The keys after a KeyUpdate, from what rustls derived.
fn next_keys(
    version: Version,
    secrets: Result<ConnectionTrafficSecrets, rustls::Error>,
) -> Result<TrafficKeys, ConnError> {
    let secrets = secrets.map_err(|e| ConnError::Local {
        alert: AlertDescription::InternalError,
        what: format!("KeyUpdate: {e}"),
    })?;
    traffic_keys(version, secrets).ok_or_else(unknown_cipher)
}

fn record_error(e: RecordError) -> ConnError {
    ConnError::Local {
        alert: e.alert(),
        what: e.to_string(),
    }
}

fn unknown_cipher() -> ConnError {
    ConnError::Local {
        alert: AlertDescription::InternalError,
        what: "a cipher tlsd's record layer lacks".into(),
    }
}

pub struct TlsConn {
    version: Version,
    sealer: RecordSealer,
    opener: RecordOpener,
    reader: RecordReader,
    kernel: Kernel,
    /// Opened application data not yet taken.
    plain: Vec<u8>,
    plain_start: usize,
    /// Handshake-type plaintext (messages may span records).
    handshake: Vec<u8>,
    /// Wire bytes waiting to be sent.
    out: Vec<u8>,
    out_start: usize,
    rx: RxState,
    tx: TxState,
    /// The TCP stream ended: once the records buffered before it are
    /// opened, a missing close_notify is a truncation.
    transport_ended: bool,
    failed: Option<ConnError>,
    stats: Arc<Stats>,
    /// Current keys each way (a NIC context gets a copy).
    tx_keys: TrafficKeys,
    rx_keys: TrafficKeys,
    /// Stream offset of the next byte appended to `out`.
    tx_next: u64,
    /// Stream offset of the first record not yet taken from the reader.
    rx_next_record: u64,
    device_tx: Option<DeviceTx>,
    device_rx: bool,
    /// The receive keys changed while a NIC opened records: it must stop.
    rx_rekeyed_on_device: bool,
    /// Stream offsets a NIC asked about (resync), and the answers found.
    resync_watch: Vec<u64>,
    resync_answers: Vec<(u64, Option<u64>)>,
}

impl fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConn")
            .field("version", &self.version)
            .field("rx", &self.rx)
            .field("tx", &self.tx)
            .field("failed", &self.failed)
            .finish()
    }
}

impl TlsConn {
    pub fn new(est: Established, stats: Arc<Stats>) -> Result<TlsConn, ConnError> {
        let version = record_version(est.version).ok_or_else(|| ConnError::Local {
            alert: AlertDescription::ProtocolVersion,
            what: format!(
                "negotiated {:?}, which tlsd's record layer lacks",
                est.version
            ),
        })?;
        let local = record_error;
        let tx_keys = traffic_keys(version, est.tx.1).ok_or_else(unknown_cipher)?;
        let rx_keys = traffic_keys(version, est.rx.1).ok_or_else(unknown_cipher)?;
        let sealer = RecordSealer::new(tx_keys.clone(), est.tx.0).map_err(local)?;
        let opener = RecordOpener::new(rx_keys.clone(), est.rx.0).map_err(local)?;
        let mut reader = RecordReader::new();
        reader.push(&est.leftover, false);
        Stats::inc(&stats.tx_sw);
        Stats::inc(&stats.rx_sw);
        Stats::inc(&stats.curr_tx_sw);
        Stats::inc(&stats.curr_rx_sw);
        let mut conn = TlsConn {
            version,
            sealer,
            opener,
            reader,
            kernel: est.kernel,
            plain: est.early_plaintext,
            plain_start: 0,
            handshake: Vec::new(),
            out: Vec::new(),
            out_start: 0,
            rx: RxState::Open,
            tx: TxState::Open,
            transport_ended: false,
            failed: None,
            stats,
            tx_keys,
            rx_keys,
            tx_next: est.tx_offset,
            rx_next_record: est.rx_offset,
            device_tx: None,
            device_rx: false,
            rx_rekeyed_on_device: false,
            resync_watch: Vec::new(),
            resync_answers: Vec::new(),
        };
        conn.process();
        Ok(conn)
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// Bytes received from the TCP stream, in order. `decrypted`: the NIC
    /// opened them (offload); software receive passes false.
    pub fn received(&mut self, bytes: &[u8], decrypted: bool) {
        if self.failed.is_none() && self.rx == RxState::Open {
            self.reader.push(bytes, decrypted);
            self.process();
        }
    }

    /// Opens every whole record buffered.
    fn process(&mut self) {
        while self.failed.is_none() && self.rx == RxState::Open {
            // Keeps memory bounded: stop opening while the application has
            // not taken a record's worth of plaintext.
            if self.plain.len() - self.plain_start > 4 * MAX_PLAINTEXT {
                return;
            }
            let mut rec = match self.reader.next_record() {
                Ok(Some(rec)) => rec,
                Ok(None) => {
                    if self.transport_ended {
                        self.failed = Some(ConnError::Truncated {
                            at: self.reader.position(),
                            buffered: self.reader.buffered(),
                        });
                    }
                    return;
                }
                Err(e) => {
                    self.fail_local(e.alert(), e.to_string());
                    return;
                }
            };
            let partial = matches!(rec.decryption, Decryption::Partial(_));
            let record_start = self.rx_next_record;
            let record_len = rec.bytes.len() as u64;
            self.rx_next_record += record_len;
            if !self.resync_watch.is_empty() {
                let rec_seq = self.opener.seq();
                let answers = &mut self.resync_answers;
                self.resync_watch.retain(|&w| {
                    if w == record_start {
                        answers.push((w, Some(rec_seq)));
                        false
                    } else if w < record_start + record_len {
                        // Inside a record (or passed): not a record start.
                        answers.push((w, None));
                        false
                    } else {
                        true
                    }
                });
            }
            let opened = match self.opener.open_in(&mut rec) {
                Ok(o) => o,
                Err(e) => {
                    if e == RecordError::BadRecordMac {
                        Stats::inc(&self.stats.decrypt_error);
                    }
                    let how = match &rec.decryption {
                        Decryption::None => "not decrypted by a NIC".to_string(),
                        Decryption::Full => "decrypted by a NIC".to_string(),
                        Decryption::Partial(r) => format!("partly decrypted by a NIC: {r:?}"),
                    };
                    self.fail_local(
                        e.alert(),
                        format!("{e} (record {} at stream offset {record_start}, {record_len} bytes, {how})", self.opener.seq()),
                    );
                    return;
                }
            };
            if partial {
                Stats::inc(&self.stats.decrypt_retry);
            }
            let data = &rec.bytes[opened.plaintext];
            Stats::inc(&self.stats.records_opened);
            Stats::add(&self.stats.bytes_opened, data.len() as u64);
            if opened.content_type == ContentType::ApplicationData {
                if self.plain_start == self.plain.len() {
                    self.plain.clear();
                    self.plain_start = 0;
                }
                self.plain.extend_from_slice(data);
            } else {
                // Alerts and handshake messages are small.
                let data = data.to_vec();
                self.dispatch(opened.content_type, &data);
            }
        }
    }

    fn dispatch(&mut self, ty: ContentType, data: &[u8]) {
        match ty {
            ContentType::Alert => self.on_alert(data),
            ContentType::Handshake => {
                if self.handshake.len() + data.len() > MAX_HANDSHAKE_MESSAGE {
                    self.fail_local(
                        AlertDescription::UnexpectedMessage,
                        "post-handshake message too large".into(),
                    );
                    return;
                }
                self.handshake.extend_from_slice(data);
                self.on_handshake();
            }
            other => self.fail_local(
                AlertDescription::UnexpectedMessage,
                format!("unexpected {other:?} record after the handshake"),
            ),
        }
    }

    fn on_alert(&mut self, data: &[u8]) {
        let alert = match Alert::parse(data) {
            Ok(a) => a,
            Err(_) => {
                self.fail_local(AlertDescription::DecodeError, "malformed alert".into());
                return;
            }
        };
        Stats::inc(&self.stats.alerts_received);
        match alert.description {
            AlertDescription::CloseNotify => self.rx = RxState::Closed,
            // TLS 1.2 warnings (e.g. no_renegotiation) do not end the
            // connection; in TLS 1.3 every other alert is fatal.
            _ if alert.level == AlertLevel::Warning && self.version == Version::Tls12 => {}
            AlertDescription::UserCanceled if self.version == Version::Tls13 => {}
            d => {
                self.failed = Some(ConnError::PeerAlert(d));
            }
        }
    }

    fn on_handshake(&mut self) {
        let mut at = 0;
        while self.failed.is_none() {
            let rest = &self.handshake[at..];
            if rest.len() < 4 {
                break;
            }
            let len = u32::from_be_bytes([0, rest[1], rest[2], rest[3]]) as usize;
            if rest.len() < 4 + len {
                break;
            }
            let ty = rest[0];
            let body = rest[4..4 + len].to_vec();
            at += 4 + len;
            self.on_handshake_message(ty, &body);
        }
        self.handshake.drain(..at);
    }

    fn on_handshake_message(&mut self, ty: u8, body: &[u8]) {
        match (self.version, ty) {
            (Version::Tls13, HS_NEW_SESSION_TICKET) => match self.kernel.session_ticket(body) {
                Ok(()) => Stats::inc(&self.stats.session_tickets),
                Err(e) => self.fail_local(
                    AlertDescription::DecodeError,
                    format!("NewSessionTicket: {e}"),
                ),
            },
            (Version::Tls13, HS_KEY_UPDATE) => self.on_key_update(body),
            // A TLS 1.2 server asking to renegotiate: refused politely, as
            // rustls does.
            (Version::Tls12, HS_HELLO_REQUEST) => {
                self.queue_alert(AlertLevel::Warning, AlertDescription::NoRenegotiation)
            }
            (_, ty) => self.fail_local(
                AlertDescription::UnexpectedMessage,
                format!("handshake message {ty} after the handshake"),
            ),
        }
    }

    fn on_key_update(&mut self, body: &[u8]) {
        Stats::inc(&self.stats.rx_rekey_received);
        let requested = match body {
            [0] => false,
            [1] => true,
            _ => {
                self.fail_local(AlertDescription::DecodeError, "malformed KeyUpdate".into());
                return;
            }
        };
        // A KeyUpdate must end its record (RFC 8446 5.1).
        if !self.handshake_is_last_in_record() {
            self.fail_local(
                AlertDescription::UnexpectedMessage,
                "KeyUpdate not at a record boundary".into(),
            );
            return;
        }
        let keys = next_keys(self.version, self.kernel.update_rx());
        match keys.and_then(|k| {
            self.rx_keys = k.clone();
            self.opener.update_keys(k).map_err(record_error)
        }) {
            Ok(()) => {
                Stats::inc(&self.stats.rx_rekey_ok);
                if self.device_rx {
                    self.rx_rekeyed_on_device = true;
                }
            }
            Err(e) => self.fail(e),
        }
        if requested && self.tx == TxState::Open {
            self.update_tx_keys(false);
        }
    }

    fn handshake_is_last_in_record(&self) -> bool {
        // `on_handshake` copies the message out before calling us; what
        // remains after it in the buffer would be a second message of the
        // same record.
        let mut at = 0;
        let h = &self.handshake;
        while h.len() >= at + 4 {
            let len = u32::from_be_bytes([0, h[at + 1], h[at + 2], h[at + 3]]) as usize;
            if h[at] == HS_KEY_UPDATE {
                return h.len() == at + 4 + len;
            }
            at += 4 + len;
        }
        true
    }

    /// Sends a KeyUpdate under the old key, then seals with the new one.
    fn update_tx_keys(&mut self, request_peer: bool) {
        let msg = [HS_KEY_UPDATE, 0, 0, 1, u8::from(request_peer)];
        self.seal_record(ContentType::Handshake, &msg);
        let keys = next_keys(self.version, self.kernel.update_tx());
        match keys.and_then(|k| {
            self.tx_keys = k.clone();
            self.sealer.update_keys(k).map_err(record_error)
        }) {
            Ok(()) => {
                Stats::inc(&self.stats.tx_rekey_ok);
                // The NIC's context has the old key: records from now on
                // are sealed here until it is replaced.
                if let Some(d) = &mut self.device_tx {
                    d.active = false;
                }
            }
            Err(e) => self.fail(e),
        }
    }

    fn seal_record(&mut self, ty: ContentType, data: &[u8]) {
        if self.out_start == self.out.len() {
            // Sent whole. Records the log still needs keep their buffer.
            let base = self.tx_next - self.out.len() as u64;
            match self.device_tx.as_mut().filter(|d| d.logs_from(base)) {
                Some(d) => self.out = d.keep(base, std::mem::take(&mut self.out)),
                None => self.out.clear(),
            }
            self.out_start = 0;
        }
        let before = self.out.len();
        let rec_seq = self.sealer.seq();
        let device = self.device_tx.as_mut().filter(|d| d.active);
        let sealed = match device {
            Some(_) => self.sealer.frame_for_device(ty, data, &mut self.out),
            None => self.sealer.seal(ty, data, &mut self.out),
        };
        if let Err(e) = sealed {
            self.failed = Some(ConnError::Local {
                alert: e.alert(),
                what: e.to_string(),
            });
            return;
        }
        let len = (self.out.len() - before) as u64;
        if let Some(d) = self.device_tx.as_mut().filter(|d| d.active) {
            d.log.push_back(FramedRecord {
                offset: self.tx_next,
                rec_seq,
                len: len as usize,
            });
        }
        self.tx_next += len;
        Stats::inc(&self.stats.records_sealed);
    }

    fn queue_alert(&mut self, level: AlertLevel, description: AlertDescription) {
        let alert = Alert { level, description }.encode();
        self.seal_record(ContentType::Alert, &alert);
        Stats::inc(&self.stats.alerts_sent);
    }

    fn fail_local(&mut self, alert: AlertDescription, what: String) {
        self.fail(ConnError::Local { alert, what });
    }

    /// Ends the connection; a local fault is told to the peer first.
    fn fail(&mut self, e: ConnError) {
        if self.failed.is_some() {
            return;
        }
        if let ConnError::Local { alert, .. } = &e {
            if self.tx == TxState::Open {
                self.queue_alert(AlertLevel::Fatal, *alert);
                self.tx = TxState::Closed;
            }
        }
        self.failed = Some(e);
    }

    /// Sends a KeyUpdate that also asks the peer to update (TLS 1.3; a
    /// no-op on TLS 1.2, which has no key update).
    pub fn request_key_update(&mut self) {
        if self.version == Version::Tls13 && self.tx == TxState::Open && self.failed.is_none() {
            self.update_tx_keys(true);
        }
    }

    /// Opened application data, in order.
    pub fn plaintext(&self) -> &[u8] {
        &self.plain[self.plain_start..]
    }

    pub fn consume_plaintext(&mut self, n: usize) {
        self.plain_start = (self.plain_start + n).min(self.plain.len());
        if self.plain_start == self.plain.len() {
            self.plain.clear();
            self.plain_start = 0;
            // Records held back for memory may now be opened.
            self.process();
        }
    }

    /// Seals up to one record of `data` into the outgoing bytes; returns how
    /// much it took (0 once closed or failed).
    pub fn seal(&mut self, data: &[u8]) -> usize {
        if self.tx != TxState::Open || self.failed.is_some() || data.is_empty() {
            return 0;
        }
        if self.version == Version::Tls13 && self.sealer.needs_key_update() {
            self.update_tx_keys(false);
        }
        let n = data.len().min(MAX_PLAINTEXT);
        self.seal_record(ContentType::ApplicationData, &data[..n]);
        if self.failed.is_some() {
            return 0;
        }
        Stats::add(&self.stats.bytes_sealed, n as u64);
        n
    }

    /// Queues close_notify: the application closed its side.
    pub fn close(&mut self) {
        if self.tx == TxState::Open && self.failed.is_none() {
            self.queue_alert(AlertLevel::Warning, AlertDescription::CloseNotify);
            self.tx = TxState::Closed;
        }
    }

    /// Wire bytes to send.
    pub fn outgoing(&self) -> &[u8] {
        &self.out[self.out_start..]
    }

    pub fn sent(&mut self, n: usize) {
        self.out_start = (self.out_start + n).min(self.out.len());
    }

    /// The peer's close_notify arrived (and its plaintext was all taken or
    /// is in `plaintext`).
    pub fn peer_closed(&self) -> bool {
        self.rx == RxState::Closed
    }

    pub fn tx_closed(&self) -> bool {
        self.tx == TxState::Closed
    }

    /// The TCP stream ended. Without close_notify first that is a
    /// truncation attack or a crash; either way the application must not
    /// take it for a clean end.
    ///
    /// Whole records received before the end may still wait unopened (held
    /// back while the application has plaintext to take); the close_notify
    /// may be among them, so the verdict waits until they are opened.
    pub fn transport_eof(&mut self) {
        self.transport_ended = true;
        self.process();
    }

    pub fn error(&self) -> Option<&ConnError> {
        self.failed.as_ref()
    }
}

impl Drop for TlsConn {
    fn drop(&mut self) {
        if self.device_tx.is_some() {
            Stats::dec(&self.stats.curr_tx_device);
        } else {
            Stats::dec(&self.stats.curr_tx_sw);
        }
        if self.device_rx {
            Stats::dec(&self.stats.curr_rx_device);
        } else {
            Stats::dec(&self.stats.curr_rx_sw);
        }
    }
}
