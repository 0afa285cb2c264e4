//! The sim wire as a [`Device`]: a ring shared with another driver (see
//! [`crate::sim`]), met by a rendezvous thread and met again when its peer
//! goes. Its free queue gives back-pressure; its doorbell and connection
//! are what the loop sleeps on.

use super::device::{Device, Fault, Readiness};
use super::*;

/// How long frames of a dead wire peer stay worth sending to its successor.
const UNSENT_TTL: Duration = Duration::from_secs(1);
/// While the loop is busy (and so never polls the wire connection), how often
/// it checks the connection for the peer's hang-up.
const PEER_CHECK: Duration = Duration::from_millis(5);
/// Delay between wire rendezvous attempts after an error.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

pub(super) struct SimDev {
    path: PathBuf,
    /// For the rendezvous thread: names it, and the layout of a wire it creates.
    name: String,
    layout: ChannelLayout,
    /// Wakes the loop when the rendezvous thread has met a peer.
    handle: Handle,
    met_tx: mpsc::Sender<Wire>,
    met: mpsc::Receiver<Wire>,
    wire: Option<Wire>,
    connecting: bool,
    /// A wire buffer taken before a frame is taken from the stack.
    spare: Option<TxBuf>,
    /// Our wish for the wire carrier (setCarrier / setFaults).
    admin_carrier: bool,
    /// What [`Device::link`] last said: a carrier the peer changed since is work.
    reported: bool,
    /// The wire's peer broke the protocol or left: drop the wire.
    broken: Option<String>,
    /// Frames a peer that died never gave back: sent again to the peer
    /// that takes its place (a restarted driver of the same port), so that
    /// TCP over the wire need not wait out a retransmission timeout.
    unsent: Vec<Vec<u8>>,
    unsent_at: Option<Instant>,
    /// When the busy loop next looks for a hang-up on the wire connection.
    next_peer_check: Instant,
    /// A private copy of the received frame: the wire's buffer stays
    /// writable by the peer.
    frame: Vec<u8>,
    /// Where `watch` put the wire's doorbell and connection.
    watched: Option<(usize, usize)>,
}

impl SimDev {
    pub(super) fn new(path: PathBuf, cfg: &Config, handle: Handle) -> SimDev {
        let (met_tx, met) = mpsc::channel();
        SimDev {
            path,
            name: cfg.name.clone(),
            layout: cfg.layout,
            handle,
            met_tx,
            met,
            wire: None,
            connecting: false,
            spare: None,
            admin_carrier: true,
            reported: false,
            broken: None,
            unsent: Vec::new(),
            unsent_at: None,
            next_peer_check: Instant::now(),
            frame: Vec::with_capacity(65536 + 64),
            watched: None,
        }
    }

    /// Starts a thread that meets the wire's peer and hands it over.
    fn spawn_connector(&mut self) {
        if self.connecting || self.wire.is_some() {
            return;
        }
        self.connecting = true;
        let path = self.path.clone();
        let layout = self.layout;
        let handle = self.handle.clone();
        let met = self.met_tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("nicdrv-wire-{}", self.name))
            .spawn(move || {
                let mut failures = 0u32;
                loop {
                    match sim::connect_wire(&path, layout) {
                        Ok(w) => {
                            if met.send(w).is_ok() {
                                handle.wake();
                            }
                            return;
                        }
                        Err(e) => {
                            // Say it once loudly, then quietly until it works.
                            if failures == 0 {
                                tracing::warn!(path = %path.display(), %e, "wire rendezvous failed; retrying");
                            } else {
                                tracing::debug!(path = %path.display(), %e, failures, "wire rendezvous failed");
                            }
                            failures += 1;
                            std::thread::sleep(RECONNECT_DELAY);
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(%e, "cannot start the wire rendezvous thread");
            self.connecting = false;
        }
    }

    fn wire_up(&mut self, w: Wire, c: &Counters) {
        self.connecting = false;
        if let Err(e) = w.conn.set_nonblocking(true) {
            tracing::warn!(%e, "wire connection");
        }
        if !self.admin_carrier {
            w.duplex.set_carrier(false);
            w.duplex.wake_peer.ring();
        }
        tracing::info!(side = ?w.duplex.side(), layout = ?w.layout, "wire connected");
        self.wire = Some(w);
        self.spare = None;
        self.broken = None;
        let unsent = std::mem::take(&mut self.unsent);
        if self.unsent_at.is_some_and(|t| t.elapsed() < UNSENT_TTL) && !unsent.is_empty() {
            tracing::info!(
                frames = unsent.len(),
                "sending the frames the last peer never took"
            );
            for f in &unsent {
                self.send(f, None, c);
            }
        }
    }
}

impl Device for SimDev {
    fn start(&mut self) {
        self.spawn_connector();
    }

    fn link(&mut self) -> bool {
        self.reported = self.wire.as_ref().is_some_and(|w| w.duplex.carrier());
        self.reported
    }

    fn set_carrier(&mut self, up: bool) {
        self.admin_carrier = up;
        if let Some(w) = &self.wire {
            if w.duplex.carrier() != up {
                tracing::info!(up, "wire carrier set");
            }
            w.duplex.set_carrier(up);
            // Both ends must notice, even if neither asked for a signal
            // (we through our own bell: our wire end only waits).
            w.duplex.wake_peer.ring();
            self.handle.bell.ring();
        }
    }

    fn reserve(&mut self) -> bool {
        let (Some(w), None) = (self.wire.as_mut(), self.spare.as_ref()) else {
            return true;
        };
        match w.duplex.tx.alloc() {
            Ok(Some(b)) => {
                self.spare = Some(b);
                true
            }
            Ok(None) => false,
            Err(e) => {
                self.broken = Some(format!("wire free queue: {e}"));
                false
            }
        }
    }

    fn cuts_merged(&self) -> bool {
        false
    }

    fn send(&mut self, f: &[u8], _cut: Option<&DeviceCut>, c: &Counters) {
        self.send_with(f.len(), c, |dst| dst.copy_from_slice(f));
    }

    fn send_with(&mut self, len: usize, c: &Counters, write: impl FnOnce(&mut [u8])) {
        let Some(wire) = self.wire.as_mut() else {
            inc(&c.tx_dropped);
            return;
        };
        let buf = match self.spare.take() {
            Some(b) => Some(b),
            None => match wire.duplex.tx.alloc() {
                Ok(b) => b,
                Err(e) => {
                    self.broken = Some(format!("wire free queue: {e}"));
                    None
                }
            },
        };
        let Some(mut b) = buf else {
            inc(&c.tx_dropped);
            return;
        };
        let dst = wire.duplex.tx.buf_mut(&mut b);
        if len > dst.len() {
            // The peer made the wire with smaller buffers than our MTU.
            wire.duplex.tx.free(b);
            inc(&c.tx_dropped);
            return;
        }
        write(&mut dst[..len]);
        wire.duplex.tx.send(b, len as u32, 0, 0);
    }

    fn receive(
        &mut self,
        attached: bool,
        max: usize,
        _c: &Counters,
        mut deliver: impl FnMut(&mut [u8], Received),
    ) -> usize {
        // Until a stack holds the port, frames wait on the wire (its ring is
        // the NIC's queue) instead of being dropped: a restarted driver gets
        // what arrived while netsrv was attaching it.
        let (true, Some(w)) = (attached, self.wire.as_mut()) else {
            return 0;
        };
        let mut n = 0;
        while n < max {
            match w.duplex.rx.recv() {
                Ok(Some(b)) => {
                    self.frame.clear();
                    self.frame.extend_from_slice(w.duplex.rx.data(&b));
                    w.duplex.rx.release(b);
                    deliver(&mut self.frame, Received::default());
                    n += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    self.broken = Some(format!("wire active queue: {e}"));
                    break;
                }
            }
        }
        n
    }

    fn flush(&mut self) {
        let Some(w) = &mut self.wire else { return };
        let mut ring = false;
        match w.duplex.tx.flush() {
            Ok(r) => ring |= r,
            Err(e) => self.broken = Some(format!("wire flush: {e}")),
        }
        match w.duplex.rx.flush() {
            Ok(r) => ring |= r,
            Err(e) => self.broken = Some(format!("wire flush: {e}")),
        }
        if ring {
            w.duplex.wake_peer.ring();
        }
    }

    fn check(&mut self, now: Instant, c: &Counters) -> Option<Fault> {
        if let Ok(w) = self.met.try_recv() {
            self.wire_up(w, c);
        }
        if let Some(why) = self.broken.take() {
            return Some(Fault::Lost(why));
        }
        // The sleeping loop sees the peer's hang-up in poll(2); a loop kept
        // busy by the stack looks every PEER_CHECK (one non-blocking read).
        if now >= self.next_peer_check {
            self.next_peer_check = now + PEER_CHECK;
            if self.wire.as_ref().is_some_and(|w| sim::peer_gone(&w.conn)) {
                return Some(Fault::Lost("the peer closed the wire".into()));
            }
        }
        None
    }

    fn reset(&mut self, why: &str) {
        if let Some(mut w) = self.wire.take() {
            tracing::warn!(why, "wire lost; meeting the next peer");
            if self.broken.is_none() {
                self.unsent = w
                    .duplex
                    .tx
                    .unreturned_frames()
                    .into_iter()
                    .map(|f| f.0)
                    .collect();
                self.unsent_at = Some(Instant::now());
            }
        }
        self.spare = None;
        self.broken = None;
        self.spawn_connector();
    }
}

impl Readiness for SimDev {
    fn has_work(&self, frames: bool, room: bool) -> bool {
        let carrier = self.wire.as_ref().is_some_and(|w| w.duplex.carrier());
        carrier != self.reported
            || self.wire.as_ref().is_some_and(|w| {
                (frames && !w.duplex.rx.is_empty()) || (room && w.duplex.tx.has_returns())
            })
    }

    fn request_signal(&self, room: bool) {
        if let Some(w) = &self.wire {
            w.duplex.rx.request_signal();
            if room {
                w.duplex.tx.request_signal();
            }
        }
    }

    fn cancel_signal(&self) {
        if let Some(w) = &self.wire {
            w.duplex.rx.cancel_signal();
            w.duplex.tx.cancel_signal();
        }
    }

    fn watch(&mut self, set: &mut PollSet) {
        self.watched = self
            .wire
            .as_ref()
            .map(|w| (set.add(w.duplex.wake_me.as_fd()), set.add(w.conn.as_fd())));
    }

    fn woken(&mut self, set: &PollSet) -> Option<Fault> {
        let (bell, conn) = self.watched.take()?;
        let w = self.wire.as_ref()?;
        let mut gone = false;
        if set.ready(bell) {
            w.duplex.wake_me.drain();
            // Readable for ever after: polling it again would spin.
            gone |= w.duplex.wake_me.peer_gone();
        }
        if set.ready(conn) && sim::peer_gone(&w.conn) {
            gone = true;
        }
        gone.then(|| Fault::Lost("the peer closed the wire".into()))
    }

    fn deadline(&self) -> Option<Instant> {
        None
    }

    fn on_timer(&mut self, _now: Instant) {}
}
