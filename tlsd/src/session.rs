//! One TLS session's data path: the application's socket rings on one
//! side, the TCP connection (through netsrv) on the other, and the
//! connection's record layer between them.
//!
//! Each session runs on its own thread with a small mio loop over two
//! doorbells: the application's and the TCP stream's. It polls
//! while there is work and sleeps on the doorbells otherwise, like every
//! capnet data path.

use crate::conn::TlsConn;
use crate::holder::Holder;
use capnet_ring::{Doorbell, ServerEnd};
use capnet_schema::errors::SocketError;
use libclient::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WIRE: Token = Token(0);
const APP: Token = Token(1);
/// Holder eventfds: egress, TX context, RX context.
const HOLDER: [Token; 3] = [Token(2), Token(3), Token(4)];

/// Stop reading TCP while this much opened plaintext waits for the
/// application: its ring is full, so the peer must wait too.
const PLAINTEXT_HIGH: usize = 64 * 1024;
/// Stop sealing while this many record bytes wait for TCP.
const OUTGOING_HIGH: usize = 256 * 1024;
/// How long a closed application's last bytes may take to leave.
const LINGER: Duration = Duration::from_secs(10);

/// Told to a session from outside its thread.
#[derive(Debug, Default)]
pub struct Control {
    /// The application dropped its capability (closed, or died).
    pub cancelled: AtomicBool,
    /// Records are sealed / opened by a NIC now (for `info`).
    pub tx_device: AtomicBool,
    pub rx_device: AtomicBool,
}

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Both sides closed with close_notify.
    Clean,
    /// The application went away; what it had closed cleanly was sent.
    Cancelled,
    /// TLS failed (alert either way, truncation) or TCP failed.
    Failed(String),
}

/// The application's rings, as the service hands them to the session:
/// tlsd's end and the doorbell the application rings.
pub struct AppRings {
    pub end: ServerEnd,
    pub wake_me: Doorbell,
}

/// Runs the session until both directions are done, the application goes
/// away, or something fails. Consumes the TCP stream (dropping it closes
/// the connection). `holder` moves records to and from NIC offload
/// contexts along the connection's egress.
pub fn run(
    mut conn: TlsConn,
    tcp: TcpStream,
    mut app: ServerEnd,
    wake: Doorbell,
    control: &Control,
    mut holder: Holder,
) -> Ended {
    holder.start(&mut conn, &tcp);
    let ended = match Pump::new(&tcp, wake) {
        Ok(mut pump) => pump.run(&mut conn, &tcp, &mut app, control, &mut holder),
        Err(e) => Ended::Failed(format!("poll: {e}")),
    };
    holder.finish(&mut conn, &tcp);
    ended
}

struct Pump {
    poll: Poll,
    events: Events,
    /// The application's rings' doorbell (our wait end).
    wake: Doorbell,
    buf: Vec<u8>,
    tcp_eof: bool,
    tcp_shut: bool,
    down_closed: bool,
    /// Holder eventfds registered with the poll, per `HOLDER` token, as of
    /// the holder's generation `registered_for`.
    registered: [Option<std::os::fd::RawFd>; 3],
    registered_for: Option<u64>,
}

fn app_error(code: SocketError, app: &mut ServerEnd) {
    app.down.set_error(code.code());
    app.down.close();
    // The application's writes have nowhere to go either.
    app.up.close();
    app.wake_peer.ring();
}

impl Pump {
    fn new(tcp: &TcpStream, wake: Doorbell) -> io::Result<Pump> {
        tcp.set_nonblocking(true)?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut SourceFd(&tcp.as_raw_fd()), WIRE, Interest::READABLE)?;
        poll.registry()
            .register(&mut SourceFd(&wake.as_raw_fd()), APP, Interest::READABLE)?;
        Ok(Pump {
            poll,
            events: Events::with_capacity(4),
            wake,
            buf: vec![0u8; 64 * 1024],
            tcp_eof: false,
            tcp_shut: false,
            down_closed: false,
            registered: [None; 3],
            registered_for: None,
        })
    }

    fn run(
        &mut self,
        conn: &mut TlsConn,
        mut tcp: &TcpStream,
        app: &mut ServerEnd,
        control: &Control,
        holder: &mut Holder,
    ) -> Ended {
        let mut linger_until: Option<Instant> = None;
        loop {
            let mut progress = false;
            if holder.enabled() {
                holder.poll(conn, tcp);
                control
                    .tx_device
                    .store(conn.device_tx_active(), Ordering::Relaxed);
                control.rx_device.store(conn.device_rx(), Ordering::Relaxed);
            }

            // TCP -> record layer; the NIC may have opened records already.
            if conn.plaintext().len() < PLAINTEXT_HIGH && !self.tcp_eof && conn.error().is_none() {
                match tcp.read_marked(&mut self.buf) {
                    Ok((0, _)) => {
                        self.tcp_eof = true;
                        conn.transport_eof();
                        progress = true;
                    }
                    Ok((n, decrypted)) => {
                        conn.received(&self.buf[..n], decrypted);
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        app_error(SocketError::Reset, app);
                        return Ended::Failed(format!("tcp: {e}"));
                    }
                }
            }

            // Record layer -> application.
            match self.deliver(conn, app) {
                Ok(p) => progress |= p,
                Err(e) => return Ended::Failed(format!("application ring: {e}")),
            }

            // Application -> record layer.
            if conn.outgoing().len() < OUTGOING_HIGH && !conn.tx_closed() {
                match self.take_app_data(conn, app) {
                    Ok(p) => progress |= p,
                    Err(e) => {
                        return Ended::Failed(format!("application ring: {e}"));
                    }
                }
            }

            // Record layer -> TCP.
            while !conn.outgoing().is_empty() {
                match tcp.write(conn.outgoing()) {
                    Ok(n) => {
                        conn.sent(n);
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        app_error(SocketError::Reset, app);
                        return Ended::Failed(format!("tcp: {e}"));
                    }
                }
            }
            if conn.tx_closed() && conn.outgoing().is_empty() && !self.tcp_shut {
                let _ = tcp.shutdown(Shutdown::Write);
                self.tcp_shut = true;
            }

            // Endings.
            if let Some(e) = conn.error() {
                // The alert (if any) has been written above.
                if conn.plaintext().is_empty() {
                    let code = match e {
                        crate::conn::ConnError::Truncated { .. } => SocketError::Reset,
                        _ => SocketError::Aborted,
                    };
                    if !self.down_closed {
                        app_error(code, app);
                        self.down_closed = true;
                    }
                    if conn.outgoing().is_empty() {
                        return Ended::Failed(e.to_string());
                    }
                }
            }
            let rx_done = self.down_closed;
            let tx_done = self.tcp_shut;
            if rx_done && tx_done {
                return Ended::Clean;
            }
            if control.cancelled.load(Ordering::Acquire) {
                // A clean close (the up ring closed, perhaps with bytes
                // still in it) still gets its bytes and close_notify out;
                // an application that died does not.
                let closed_cleanly = app.up.writer_finished();
                if tx_done || !closed_cleanly && !conn.tx_closed() {
                    return Ended::Cancelled;
                }
                let until = *linger_until.get_or_insert_with(|| Instant::now() + LINGER);
                if Instant::now() > until {
                    return Ended::Cancelled;
                }
            }

            if progress {
                continue;
            }
            // Nothing moved: ask for wakeups, look once more, then sleep.
            if !conn.tx_closed() {
                app.up.request_signal();
            }
            if !conn.plaintext().is_empty() {
                app.down.request_signal();
            }
            let app_ready = (app.up.available().unwrap_or(0) > 0
                || app.up.eof() && !conn.tx_closed())
                && conn.outgoing().len() < OUTGOING_HIGH
                || !conn.plaintext().is_empty() && app.down.space().unwrap_or(0) > 0;
            if app_ready {
                app.up.cancel_signal();
                app.down.cancel_signal();
                continue;
            }
            if holder.enabled() {
                holder.clear_wakeups();
                holder.poll(conn, tcp);
                self.register_holder(holder);
            }
            let timeout = if control.cancelled.load(Ordering::Acquire) {
                Duration::from_millis(10)
            } else {
                Duration::from_secs(1)
            };
            if let Err(e) = self.poll.poll(&mut self.events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Ended::Failed(format!("poll: {e}"));
                }
            }
            self.wake.drain();
        }
    }

    /// Keeps the poll's holder registrations in step with its eventfds
    /// (contexts come and go). By generation, not by fd number: a new
    /// context's eventfd may reuse a closed one's number, and the poll
    /// dropped that registration when it closed.
    fn register_holder(&mut self, holder: &Holder) {
        if self.registered_for == Some(holder.generation()) {
            return;
        }
        self.registered_for = Some(holder.generation());
        // All out first: an old number may now be one of the new fds.
        for old in self.registered.iter_mut().filter_map(Option::take) {
            // It may be closed already (its context dropped): no matter.
            let _ = self.poll.registry().deregister(&mut SourceFd(&old));
        }
        for (i, fd) in holder.fds().into_iter().enumerate() {
            if let Some(new) = fd {
                if self
                    .poll
                    .registry()
                    .register(&mut SourceFd(&new), HOLDER[i], Interest::READABLE)
                    .is_ok()
                {
                    self.registered[i] = Some(new);
                }
            }
        }
    }

    /// Opened plaintext into the application's ring; its EOF or error once
    /// the peer closed and everything was taken.
    fn deliver(
        &mut self,
        conn: &mut TlsConn,
        app: &mut ServerEnd,
    ) -> Result<bool, capnet_ring::RingError> {
        let mut progress = false;
        while !conn.plaintext().is_empty() {
            let n = app.down.write(conn.plaintext())?;
            if n == 0 {
                break;
            }
            conn.consume_plaintext(n);
            progress = true;
        }
        if progress && app.down.signal_wanted() {
            app.wake_peer.ring();
        }
        if !self.down_closed && conn.plaintext().is_empty() && conn.peer_closed() {
            app.down.close();
            app.wake_peer.ring();
            self.down_closed = true;
            progress = true;
        }
        Ok(progress)
    }

    /// Seals what the application wrote; close_notify after its EOF.
    fn take_app_data(
        &mut self,
        conn: &mut TlsConn,
        app: &mut ServerEnd,
    ) -> Result<bool, capnet_ring::RingError> {
        let mut progress = false;
        while conn.outgoing().len() < OUTGOING_HIGH {
            let data = app.up.peek()?;
            if data.is_empty() {
                break;
            }
            let n = conn.seal(data);
            if n == 0 {
                break;
            }
            app.up.consume(n);
            progress = true;
        }
        if progress && app.up.signal_wanted() {
            app.wake_peer.ring();
        }
        if app.up.eof() && app.up.available()? == 0 && !conn.tx_closed() {
            conn.close();
            progress = true;
        }
        Ok(progress)
    }
}

/// A session's outside handle: cancel it and wake its thread.
#[derive(Debug)]
pub struct Handle {
    pub control: Arc<Control>,
    pub wake: capnet_ring::Doorbell,
}

impl Handle {
    pub fn cancel(&self) {
        self.control.cancelled.store(true, Ordering::Release);
        self.wake.ring();
    }
}
