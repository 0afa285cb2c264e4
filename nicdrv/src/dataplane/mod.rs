//! The data plane: one thread, one poll(2) loop over the doorbells and the
//! device fds. It moves frames between the port's rings (the stack's side)
//! and the device (the sim wire or a TAP), does the checksum offload, the
//! fault injection and the capture, and watches the link.
//!
//! It polls while there is work, spins for a few microseconds, then sleeps:
//! it asks each queue for a signal, checks the queues once more, and sleeps
//! in poll(2) on the doorbells (no timeout unless a timer is pending: a held
//! reordered frame, a capture flush, or the TAP flag poll without netlink).
//! An idle port costs no CPU.
//!
//! The control plane talks to it through [`Handle`] (an mpsc command queue
//! and a doorbell); it reports through [`Event`]s and the [`Shared`] atomics
//! (`api`). The devices are in `device`, the per-frame work in `pipeline`,
//! the poll(2) set in `poll`; this module is the loop.

use crate::counters::{add, inc, Counters};
use crate::csum::{self, RxCheck};
use crate::faults::{FaultConfig, Shaper};
use crate::offload::{CmdError, Engines, InstallError, NewContext, TxAction};
use crate::pcap::{PcapWriter, FLUSH_EVERY};
use crate::sim::{self, Wire};
#[cfg(target_os = "linux")]
use crate::tap::Tap;
use capnet_ring::{flags, ChannelLayout, Desc, Doorbell, Duplex, RingError, TxBuf};
use std::fs::File;
use std::io::{self, BufWriter};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

mod api;
mod device;
mod pipeline;
mod poll;

pub use api::*;
#[cfg(target_os = "linux")]
use device::TapDev;
use device::{device_send, Device, SimDev, UNSENT_TTL};
use pipeline::{RxPath, TxPath};
use poll::PollSet;

/// Frames moved per direction before the batch is published.
const BATCH: usize = 64;
/// How long an idle loop waits for work (yielding the core) before it sleeps.
const SPIN: Duration = Duration::from_micros(20);
/// Queue checks (each followed by a sched_yield) between clock reads while spinning.
const SPIN_YIELDS: usize = 32;
/// Interface flag poll period when there is no netlink socket.
const LINK_POLL: Duration = Duration::from_millis(200);
/// While the loop is busy (and so never polls the wire connection), how often
/// it checks the connection for the peer's hang-up.
const PEER_CHECK: Duration = Duration::from_millis(5);
/// Delay between wire rendezvous attempts after an error.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

pub type Ack = tokio::sync::oneshot::Sender<()>;

struct Port {
    id: u64,
    duplex: Duplex,
}

/// Starts the data plane thread.
pub fn spawn(
    cfg: Config,
    device: DeviceConfig,
    shared: Arc<Shared>,
    events: tokio::sync::mpsc::UnboundedSender<Event>,
) -> io::Result<(Handle, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel();
    let bell = Arc::new(Doorbell::new()?);
    let pending = Arc::new(AtomicBool::new(false));
    let handle = Handle {
        tx,
        bell: bell.clone(),
        pending: pending.clone(),
    };
    let device = match device {
        DeviceConfig::Sim { wire } => Device::Sim(Box::new(SimDev {
            path: wire,
            wire: None,
            connecting: false,
            spare: None,
            blocked: false,
            admin_carrier: true,
            broken: None,
            unsent: Vec::new(),
            unsent_at: None,
        })),
        #[cfg(target_os = "linux")]
        DeviceConfig::Tap(tap) => {
            let link = tap.link_up().unwrap_or(false);
            Device::Tap(TapDev {
                tap,
                scratch: vec![0u8; 65536 + 64],
                link,
                recheck: false,
                next_poll: Instant::now() + LINK_POLL,
            })
        }
    };
    let dp = DataPlane {
        shaper: Shaper::new(cfg.faults, cfg.seed),
        last_flush: Instant::now(),
        cfg,
        shared,
        events,
        cmds: rx,
        bell,
        handle: handle.clone(),
        port: None,
        device,
        next_peer_check: Instant::now(),
        fatal: None,
        pending,
        offload: Engines::default(),
        frame: Vec::with_capacity(65536 + 64),
    };
    let name = format!("nicdrv-dp-{}", dp.cfg.name);
    let join = std::thread::Builder::new()
        .name(name)
        .spawn(move || dp.run())?;
    Ok((handle, join))
}

struct DataPlane {
    cfg: Config,
    shared: Arc<Shared>,
    events: tokio::sync::mpsc::UnboundedSender<Event>,
    cmds: mpsc::Receiver<Cmd>,
    bell: Arc<Doorbell>,
    /// For the rendezvous threads.
    handle: Handle,
    port: Option<Port>,
    device: Device,
    shaper: Shaper,
    last_flush: Instant,
    /// When the busy loop next looks for a hang-up on the wire connection.
    next_peer_check: Instant,
    /// The device is gone for good: the data plane stops (nicdrv exits non-zero).
    fatal: Option<String>,
    /// Commands are queued (see [`Handle`]).
    pending: Arc<AtomicBool>,
    /// The offload contexts' engines (see [`crate::offload`]).
    offload: Engines,
    /// A private copy of the frame in hand: a frame in shared memory (the
    /// stack's rings, the sim wire) can still be written by the peer, so it
    /// is copied out once and only the copy is checked, sealed or opened.
    frame: Vec<u8>,
}

impl DataPlane {
    fn run(mut self) {
        tracing::debug!(name = %self.cfg.name, "data plane running");
        self.start_device();
        let mut idle_since: Option<Instant> = None;
        loop {
            if !self.commands() {
                break;
            }
            if let Some(why) = &self.fatal {
                tracing::error!(why, "the data plane stops");
                break;
            }
            let now = Instant::now();
            let mut work = self.pump_tx(now);
            work |= self.pump_rx();
            self.timers(now);
            self.flush();
            self.after_errors();
            self.check_peer(now);
            self.check_link();
            if work {
                idle_since = None;
                continue;
            }
            let since = *idle_since.get_or_insert(now);
            if self.spin_for_work(since, now) {
                continue;
            }
            self.sleep();
            idle_since = None;
        }
        self.shutdown();
    }

    fn start_device(&mut self) {
        match &mut self.device {
            Device::Sim(_) => self.spawn_connector(),
            #[cfg(target_os = "linux")]
            Device::Tap(_) => {}
        }
        self.check_link();
    }

    /// Starts a thread that meets the wire's peer and sends `WireUp`.
    fn spawn_connector(&mut self) {
        let Device::Sim(s) = &mut self.device else {
            return;
        };
        if s.connecting || s.wire.is_some() {
            return;
        }
        s.connecting = true;
        let path = s.path.clone();
        let layout = self.cfg.layout;
        let handle = self.handle.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("nicdrv-wire-{}", self.cfg.name))
            .spawn(move || {
                let mut failures = 0u32;
                loop {
                    match sim::connect_wire(&path, layout) {
                        Ok(w) => {
                            handle.send(Cmd::WireUp(w));
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
            s.connecting = false;
        }
    }

    /// Applies queued commands. False: shut down.
    fn commands(&mut self) -> bool {
        // Cleared before the queue is drained: a command queued after this
        // point sets it again.
        self.pending.store(false, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::SeqCst);
        loop {
            let cmd = match self.cmds.try_recv() {
                Ok(c) => c,
                Err(mpsc::TryRecvError::Empty) => return true,
                Err(mpsc::TryRecvError::Disconnected) => return false,
            };
            match cmd {
                Cmd::Shutdown => return false,
                Cmd::Attach {
                    session,
                    duplex,
                    done,
                } => {
                    if let Some(old) = self.port.take() {
                        tracing::warn!(old = old.id, "a new ring session replaces the old one");
                        close_port(old);
                        self.revoke_offloads("a new ring session replaced the one it belonged to");
                    }
                    duplex.set_carrier(self.shared.link_up.load(Ordering::Relaxed));
                    tracing::info!(session, "ring session attached");
                    self.port = Some(Port {
                        id: session,
                        duplex,
                    });
                    ack(done);
                }
                Cmd::Detach { session } => {
                    if self.port.as_ref().is_some_and(|p| p.id == session) {
                        tracing::info!(session, "ring session closed");
                        if let Some(p) = self.port.take() {
                            close_port(p);
                        }
                        self.revoke_offloads("the ring session with the stack ended");
                    }
                }
                Cmd::SetFaults {
                    faults,
                    carrier,
                    done,
                } => {
                    tracing::info!(?faults, "wire faults set");
                    self.shaper.set_config(faults);
                    if let Some(up) = carrier {
                        self.set_carrier(up);
                    }
                    self.check_link();
                    ack(done);
                }
                Cmd::SetCarrier { up, done } => {
                    self.set_carrier(up);
                    self.check_link();
                    ack(done);
                }
                Cmd::WireUp(w) => self.wire_up(w),
                Cmd::OffloadInstall { session, ctx, done } => {
                    let r = if self.port.as_ref().is_some_and(|p| p.id == session) {
                        self.offload.install(*ctx, &self.shared.counters)
                    } else {
                        Err(InstallError::NoSession)
                    };
                    let _ = done.send(r);
                }
                Cmd::OffloadDelete { id, done } => {
                    self.offload.delete(id, &self.shared.counters);
                    match done {
                        Some(d) => ack(Some(d)),
                        None => {
                            let _ = self.events.send(Event::OffloadDeleted(id));
                        }
                    }
                }
                Cmd::OffloadResync {
                    id,
                    tcp_seq,
                    rec_seq,
                    done,
                } => {
                    let _ =
                        done.send(
                            self.offload
                                .resync(id, tcp_seq, rec_seq, &self.shared.counters),
                        );
                }
                Cmd::OffloadRevokeAll { reason, done } => {
                    self.revoke_offloads(reason);
                    ack(done);
                }
            }
        }
    }

    fn set_carrier(&mut self, up: bool) {
        match &mut self.device {
            Device::Sim(s) => {
                s.admin_carrier = up;
                if let Some(w) = &s.wire {
                    if w.duplex.carrier() != up {
                        tracing::info!(up, "wire carrier set");
                    }
                    w.duplex.set_carrier(up);
                    // Both ends must notice, even if neither asked for a signal
                    // (we through our own bell: our wire end only waits).
                    w.duplex.wake_peer.ring();
                    self.bell.ring();
                }
            }
            #[cfg(target_os = "linux")]
            Device::Tap(t) => {
                if let Err(e) = t.tap.set_carrier(up) {
                    tracing::warn!(%e, "TUNSETCARRIER failed");
                }
                t.recheck = true;
            }
        }
    }

    fn wire_up(&mut self, w: Wire) {
        let Device::Sim(s) = &mut self.device else {
            return;
        };
        s.connecting = false;
        if let Err(e) = w.conn.set_nonblocking(true) {
            tracing::warn!(%e, "wire connection");
        }
        if !s.admin_carrier {
            w.duplex.set_carrier(false);
            w.duplex.wake_peer.ring();
        }
        tracing::info!(side = ?w.duplex.side(), layout = ?w.layout, "wire connected");
        s.wire = Some(w);
        s.spare = None;
        s.blocked = false;
        s.broken = None;
        let unsent = std::mem::take(&mut s.unsent);
        if s.unsent_at.is_some_and(|t| t.elapsed() < UNSENT_TTL) && !unsent.is_empty() {
            tracing::info!(
                frames = unsent.len(),
                "sending the frames the last peer never took"
            );
            for f in &unsent {
                device_send(&mut self.device, &self.shared.counters, f);
            }
        }
    }

    fn wire_down(&mut self, why: &str) {
        // Frames the peer put on the wire before it went are good, like
        // frames on a cable before the cut: deliver them (bounded, in case
        // the peer left a queue it still fakes).
        if matches!(&self.device, Device::Sim(s) if s.wire.is_some() && s.broken.is_none()) {
            for _ in 0..64 {
                if !self.pump_rx() {
                    break;
                }
            }
        }
        let Device::Sim(s) = &mut self.device else {
            return;
        };
        if let Some(mut w) = s.wire.take() {
            tracing::warn!(why, "wire lost; meeting the next peer");
            if s.broken.is_none() {
                s.unsent = w
                    .duplex
                    .tx
                    .unreturned_frames()
                    .into_iter()
                    .map(|f| f.0)
                    .collect();
                s.unsent_at = Some(Instant::now());
            }
        }
        s.spare = None;
        s.blocked = false;
        s.broken = None;
        self.shaper.discard_held();
        self.check_link();
        self.spawn_connector();
    }

    fn link_now(&self) -> bool {
        match &self.device {
            Device::Sim(s) => s.wire.as_ref().is_some_and(|w| w.duplex.carrier()),
            #[cfg(target_os = "linux")]
            Device::Tap(t) => t.link,
        }
    }

    fn check_link(&mut self) {
        #[cfg(target_os = "linux")]
        if let Device::Tap(t) = &mut self.device {
            if t.recheck {
                t.recheck = false;
                match t.tap.link_up() {
                    Ok(up) => t.link = up,
                    Err(e) => tracing::debug!(%e, "SIOCGIFFLAGS"),
                }
            }
        }
        let up = self.link_now();
        if self.shared.link_up.swap(up, Ordering::Relaxed) == up {
            return;
        }
        tracing::info!(up, "link changed");
        inc(&self.shared.counters.link_changes);
        if let Some(p) = &self.port {
            p.duplex.set_carrier(up);
            p.duplex.wake_peer.ring();
        }
        let _ = self.events.send(Event::Link(up));
    }

    /// Stack -> device.
    fn pump_tx(&mut self, now: Instant) -> bool {
        let link_up = self.shared.link_up.load(Ordering::Relaxed);
        let DataPlane {
            port,
            device,
            shaper,
            cfg,
            shared,
            offload,
            frame,
            ..
        } = self;
        let Some(p) = port.as_mut() else { return false };
        let mut tx = TxPath {
            device,
            shaper,
            pcap: &mut cfg.pcap,
            c: &shared.counters,
            mtu: cfg.mtu,
            csum_offload: cfg.csum_offload,
            link_up,
            offload,
        };
        if let Device::Sim(s) = &mut *tx.device {
            s.blocked = false;
        }
        let mut n = 0;
        let mut error = None;
        while n < BATCH {
            // Back-pressure on the sim wire: take a frame only with a wire buffer ready.
            if let Device::Sim(s) = &mut *tx.device {
                if let (true, Some(w), None) = (link_up, s.wire.as_mut(), s.spare.as_ref()) {
                    match w.duplex.tx.alloc() {
                        Ok(Some(b)) => s.spare = Some(b),
                        Ok(None) => {
                            s.blocked = true;
                            break;
                        }
                        Err(e) => {
                            s.broken = Some(format!("wire free queue: {e}"));
                            break;
                        }
                    }
                }
            }
            let b = match p.duplex.rx.recv() {
                Ok(Some(b)) => b,
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            };
            let desc = b.desc();
            frame.clear();
            frame.extend_from_slice(p.duplex.rx.data(&b));
            p.duplex.rx.release(b);
            tx.transmit(frame, desc, now);
            n += 1;
        }
        if let Some(e) = error {
            self.end_session(e);
        }
        n > 0
    }

    /// Device -> stack.
    fn pump_rx(&mut self) -> bool {
        let DataPlane {
            port,
            device,
            cfg,
            shared,
            fatal,
            offload,
            events,
            frame,
            ..
        } = self;
        let mut port_error = None;
        let mut rx = RxPath {
            port,
            pcap: &mut cfg.pcap,
            c: &shared.counters,
            mtu: cfg.mtu,
            csum_offload: cfg.csum_offload,
            port_error: &mut port_error,
            offload,
            events,
        };
        let mut n = 0;
        match device {
            // Until a stack holds the port, frames wait on the wire (its
            // ring is the NIC's queue) instead of being dropped: a restarted
            // driver gets what arrived while netsrv was attaching it.
            Device::Sim(_) if rx.port.is_none() => {}
            Device::Sim(s) => {
                if let Some(w) = s.wire.as_mut() {
                    while n < BATCH {
                        match w.duplex.rx.recv() {
                            Ok(Some(b)) => {
                                frame.clear();
                                frame.extend_from_slice(w.duplex.rx.data(&b));
                                w.duplex.rx.release(b);
                                rx.deliver(frame);
                                n += 1;
                            }
                            Ok(None) => break,
                            Err(e) => {
                                s.broken = Some(format!("wire active queue: {e}"));
                                break;
                            }
                        }
                    }
                }
            }
            #[cfg(target_os = "linux")]
            Device::Tap(t) => {
                while n < BATCH {
                    match t.tap.read_frame(&mut t.scratch) {
                        Ok(len) => {
                            rx.deliver(&mut t.scratch[..len]);
                            n += 1;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if e.raw_os_error() == Some(libc::EBADFD) => {
                            // The device was deleted under us: the fd is dead
                            // for good (and polls as an error forever).
                            *fatal = Some(format!("tap {}: the device was deleted", t.tap.name()));
                            break;
                        }
                        Err(e) => {
                            tracing::debug!(%e, "tap read failed");
                            t.recheck = true;
                            break;
                        }
                    }
                }
            }
        }
        if let Some(e) = port_error {
            self.end_session(e);
        }
        n > 0
    }

    fn timers(&mut self, now: Instant) {
        let DataPlane {
            device,
            shaper,
            shared,
            cfg,
            last_flush,
            ..
        } = self;
        if shaper.deadline().is_some_and(|t| t <= now) {
            let c = &shared.counters;
            if shared.link_up.load(Ordering::Relaxed) {
                shaper.on_timer(now, |f| device_send(device, c, f));
            } else {
                shaper.discard_held();
            }
        }
        if let Some(p) = cfg.pcap.as_mut() {
            if p.is_dirty() && now.duration_since(*last_flush) >= FLUSH_EVERY {
                if let Err(e) = p.flush() {
                    tracing::warn!(%e, "capture flush failed");
                }
                *last_flush = now;
            }
        }
        #[cfg(target_os = "linux")]
        if let Device::Tap(t) = device {
            if t.tap.netlink_fd().is_none() && now >= t.next_poll {
                t.recheck = true;
                t.next_poll = now + LINK_POLL;
            }
        }
    }

    /// Publishes the batches and rings the peers that asked for it.
    fn flush(&mut self) {
        let mut error = None;
        if let Some(p) = &mut self.port {
            // One doorbell for both queues: one write(2) even if the stack
            // waits for frames and for returned buffers at once.
            let mut ring = false;
            match p.duplex.tx.flush() {
                Ok(r) => ring |= r,
                Err(e) => error = Some(e),
            }
            match p.duplex.rx.flush() {
                Ok(r) => ring |= r,
                Err(e) => error = error.or(Some(e)),
            }
            if ring {
                p.duplex.wake_peer.ring();
            }
        }
        if let Some(e) = error {
            self.end_session(e);
        }
        if let Device::Sim(s) = &mut self.device {
            if let Some(w) = &mut s.wire {
                let mut ring = false;
                match w.duplex.tx.flush() {
                    Ok(r) => ring |= r,
                    Err(e) => s.broken = Some(format!("wire flush: {e}")),
                }
                match w.duplex.rx.flush() {
                    Ok(r) => ring |= r,
                    Err(e) => s.broken = Some(format!("wire flush: {e}")),
                }
                if ring {
                    w.duplex.wake_peer.ring();
                }
            }
        }
    }

    /// The sleeping loop sees the peer's hang-up in poll(2); a loop kept busy
    /// by the stack looks every [`PEER_CHECK`] (one non-blocking read).
    fn check_peer(&mut self, now: Instant) {
        if now < self.next_peer_check {
            return;
        }
        self.next_peer_check = now + PEER_CHECK;
        if let Device::Sim(s) = &self.device {
            if s.wire.as_ref().is_some_and(|w| sim::peer_gone(&w.conn)) {
                self.wire_down("the peer closed the wire");
            }
        }
    }

    fn after_errors(&mut self) {
        if let Device::Sim(s) = &mut self.device {
            if let Some(why) = s.broken.take() {
                self.wire_down(&why);
            }
        }
    }

    /// Ends the ring session after a bad descriptor from the stack.
    fn end_session(&mut self, e: RingError) {
        let Some(p) = self.port.take() else { return };
        tracing::warn!(session = p.id, %e, "bad descriptor from the stack; ring session ended");
        // Free the port before the counter shows why: whoever sees the
        // counter can open the rings again at once.
        let _ = self
            .shared
            .session
            .compare_exchange(p.id, 0, Ordering::SeqCst, Ordering::SeqCst);
        inc(&self.shared.counters.bad_descriptors);
        let _ = self.events.send(Event::SessionEnded(p.id));
        close_port(p);
        self.revoke_offloads("the stack returned a bad descriptor; its ring session ended");
    }

    /// Deletes every offload context (counted) and tells the control plane,
    /// which revokes their capabilities.
    fn revoke_offloads(&mut self, reason: &'static str) {
        if self.offload.is_empty() {
            return;
        }
        let ids = self.offload.delete_all(&self.shared.counters);
        tracing::debug!(?ids, reason, "offload engines deleted");
        let _ = self.events.send(Event::OffloadRevoked { ids, reason });
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut d = self.shaper.deadline();
        let mut earliest = |t: Instant| d = Some(d.map_or(t, |x: Instant| x.min(t)));
        if self.cfg.pcap.as_ref().is_some_and(|p| p.is_dirty()) {
            earliest(self.last_flush + FLUSH_EVERY);
        }
        #[cfg(target_os = "linux")]
        if let Device::Tap(t) = &self.device {
            if t.tap.netlink_fd().is_none() {
                earliest(t.next_poll);
            }
        }
        d
    }

    /// Whether a queue has work for us: frames from the stack (unless the
    /// wire is full), frames from the wire, or wire buffers coming back
    /// while we wait for them; or a command or a wire carrier change.
    /// Atomic loads only, no syscall.
    fn work_ready(&self) -> bool {
        // A command, or the peer changed the wire carrier: not frames, but
        // not worth a whole spin (under CPU load a spin is 32 yields, each
        // possibly a full time slice of another process) either.
        if self.pending.load(Ordering::Acquire) {
            return true;
        }
        if let Device::Sim(s) = &self.device {
            if s.wire.as_ref().is_some_and(|w| w.duplex.carrier())
                != self.shared.link_up.load(Ordering::Relaxed)
            {
                return true;
            }
        }
        let blocked = matches!(&self.device, Device::Sim(s) if s.blocked && s.wire.is_some());
        if !blocked && self.port.as_ref().is_some_and(|p| !p.duplex.rx.is_empty()) {
            return true;
        }
        // Wire frames are work only once a stack holds the port.
        let attached = self.port.is_some();
        match &self.device {
            Device::Sim(s) => s.wire.as_ref().is_some_and(|w| {
                (attached && !w.duplex.rx.is_empty()) || (blocked && w.duplex.tx.has_returns())
            }),
            #[cfg(target_os = "linux")]
            Device::Tap(_) => false,
        }
    }

    /// Waits a little for work before sleeping; true if some arrived.
    ///
    /// It checks only the queue indices, and between checks it yields the
    /// core rather than burning it: on two cores with half a dozen busy
    /// processes, the peer whose frames we wait for may need this very core.
    /// It gives up after [`SPIN`] (the clock is read every [`SPIN_YIELDS`]
    /// yields, so at least that many scheduling rounds go by). Measured on
    /// the tax benchmark against a pure busy spin of 20 us: about half the
    /// driver CPU per GiB and 1.5-2x the throughput.
    ///
    /// A TAP has no cheap readiness check: there the whole loop (a read per
    /// pass) goes round until `SPIN` after `since`.
    fn spin_for_work(&self, since: Instant, now: Instant) -> bool {
        #[cfg(target_os = "linux")]
        if let Device::Tap(_) = self.device {
            std::hint::spin_loop();
            return now.duration_since(since) < SPIN;
        }
        let _ = now;
        loop {
            for _ in 0..SPIN_YIELDS {
                if self.work_ready() {
                    return true;
                }
                std::thread::yield_now();
            }
            if since.elapsed() >= SPIN {
                return false;
            }
        }
    }

    /// Asks for signals, re-checks, and sleeps in poll(2) until a doorbell,
    /// a device fd or a timer needs us.
    fn sleep(&mut self) {
        // 1. Ask to be woken. While the wire has no free buffer we wait for
        //    its returns, not for the stack's frames (they would wake us for
        //    nothing: we could not take them).
        let blocked = self.port.is_some()
            && matches!(&self.device, Device::Sim(s) if s.blocked && s.wire.is_some());
        if let Some(p) = &self.port {
            if !blocked {
                p.duplex.rx.request_signal();
            }
        }
        if let Device::Sim(s) = &self.device {
            if let Some(w) = &s.wire {
                w.duplex.rx.request_signal();
                if blocked {
                    w.duplex.tx.request_signal();
                }
            }
        }
        // 2. Re-check: work that arrived before the request would ring nobody.
        let attached = self.port.is_some();
        let pending = (!blocked && self.port.as_ref().is_some_and(|p| !p.duplex.rx.is_empty()))
            || match &self.device {
                Device::Sim(s) => s.wire.as_ref().is_some_and(|w| {
                    (attached && !w.duplex.rx.is_empty()) || (blocked && w.duplex.tx.has_returns())
                }),
                #[cfg(target_os = "linux")]
                Device::Tap(_) => false,
            };
        if !pending {
            // 3. Sleep.
            let timeout = self
                .next_deadline()
                .map(|t| t.saturating_duration_since(Instant::now()));
            let mut set = PollSet::default();
            let bell = set.add(self.bell.as_fd());
            let port_bell = self
                .port
                .as_ref()
                .map(|p| set.add(p.duplex.wake_me.as_fd()));
            let mut wire_bell = None;
            let mut wire_conn = None;
            #[cfg(target_os = "linux")]
            let mut tap_fds = (None, None);
            match &self.device {
                Device::Sim(s) => {
                    if let Some(w) = &s.wire {
                        wire_bell = Some(set.add(w.duplex.wake_me.as_fd()));
                        wire_conn = Some(set.add(w.conn.as_fd()));
                    }
                }
                #[cfg(target_os = "linux")]
                Device::Tap(t) => {
                    tap_fds.0 = Some(set.add(t.tap.fd()));
                    tap_fds.1 = t.tap.netlink_fd().map(|fd| set.add(fd));
                }
            }
            if let Err(e) = set.poll(timeout) {
                tracing::warn!(%e, "poll failed");
                std::thread::sleep(Duration::from_millis(10));
            }
            if set.ready(bell) {
                self.bell.drain();
            }
            if let (Some(i), Some(p)) = (port_bell, &self.port) {
                if set.ready(i) {
                    p.duplex.wake_me.drain();
                }
            }
            let mut gone = false;
            if let Device::Sim(s) = &self.device {
                if let Some(w) = &s.wire {
                    if wire_bell.is_some_and(|i| set.ready(i)) {
                        w.duplex.wake_me.drain();
                        // Readable for ever after: polling it again would spin.
                        gone |= w.duplex.wake_me.peer_gone();
                    }
                    if wire_conn.is_some_and(|i| set.ready(i)) && sim::peer_gone(&w.conn) {
                        gone = true;
                    }
                }
            }
            if gone {
                self.wire_down("the peer closed the wire");
            }
            #[cfg(target_os = "linux")]
            if let Device::Tap(t) = &mut self.device {
                if tap_fds.1.is_some_and(|i| set.ready(i)) && t.tap.drain_netlink() {
                    t.recheck = true;
                }
            }
        }
        // 4. Busy again: the peers need not ring while we poll.
        if let Some(p) = &self.port {
            p.duplex.rx.cancel_signal();
        }
        if let Device::Sim(s) = &self.device {
            if let Some(w) = &s.wire {
                w.duplex.rx.cancel_signal();
                w.duplex.tx.cancel_signal();
            }
        }
        self.check_link();
    }

    fn shutdown(&mut self) {
        if let Some(p) = self.port.take() {
            close_port(p);
        }
        self.revoke_offloads("the driver is shutting down");
        if let Some(p) = self.cfg.pcap.as_mut() {
            if let Err(e) = p.flush() {
                tracing::warn!(%e, "capture flush failed");
            }
        }
        tracing::debug!(name = %self.cfg.name, "data plane stopped");
    }
}

/// Tells the stack its session is over (carrier off on the port duplex) and drops it.
fn close_port(p: Port) {
    p.duplex.set_carrier(false);
    p.duplex.wake_peer.ring();
}

fn ack(done: Option<Ack>) {
    if let Some(d) = done {
        let _ = d.send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        assert_eq!(
            layout_for(1500, 512),
            ChannelLayout {
                buffers: 512,
                buf_size: 1536
            }
        );
        assert_eq!(layout_for(9000, 8).buf_size, 9024);
        assert_eq!(layout_for(65535, 2).buf_size, 65600);
    }
}
