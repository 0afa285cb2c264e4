//! The data plane: one thread, one poll(2) loop over the doorbells and the
//! device fds. It moves frames between the port's rings (the stack's side)
//! and the device (the sim wire or a TAP), does the checksum offload, the
//! fault injection and the capture, and watches the link.
//!
//! It polls while there is work, then for a little longer while that pays
//! (`capnet_ring::idle`), then asks each queue for a signal, checks the
//! queues once more, and sleeps in poll(2) on the doorbells (no timeout
//! unless a timer is pending: a held reordered frame, a capture flush, or
//! the TAP flag poll without netlink).
//! An idle port costs no CPU.
//!
//! The control plane talks to it through [`Handle`] (an mpsc command queue
//! and a doorbell); it reports through [`Event`]s and the [`Shared`] atomics
//! (`api`). What the loop needs of a device is the `device` traits, with
//! the sim wire in `sim_dev` and the TAP in `tap_dev`; the per-frame work is
//! in `pipeline`, the poll(2) set in `poll`; this module is the loop.

use crate::counters::{add, inc, Counters};
use crate::csum::{self, RxCheck};
use crate::faults::{FaultConfig, Shaper};
use crate::offload::{CmdError, Engines, InstallError, NewContext, TxAction};
use crate::pcap::{PcapWriter, FLUSH_EVERY};
use crate::sim::{self, Wire};
#[cfg(target_os = "linux")]
use crate::tap::Tap;
use capnet_ring::{
    flags, ChannelLayout, Desc, Doorbell, Duplex, IdlePoll, RingError, RxBuf, TxBuf,
};
use capnet_wire::gso::DeviceCut;
use capnet_wire::vnet::{self, Received};
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
mod sim_dev;
#[cfg(target_os = "linux")]
mod tap_dev;

pub use api::*;
use device::{Device, Fault};
use pipeline::{Cut, RxPath, TxPath};
use poll::PollSet;
use sim_dev::SimDev;
#[cfg(target_os = "linux")]
use tap_dev::TapDev;

/// Frames moved per direction before the batch is published.
const BATCH: usize = 64;

pub type Ack = tokio::sync::oneshot::Sender<()>;

struct Port {
    id: u64,
    duplex: Duplex,
    /// The stack's buffer a merged frame is being cut from in place
    /// ([`Cut::in_ring`]), returned once its last segment has gone.
    cutting: Option<RxBuf>,
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
    let handle = Handle {
        tx,
        bell: bell.clone(),
    };
    let parts = Parts {
        cfg,
        shared,
        events,
        cmds: rx,
        bell,
    };
    let join = match device {
        DeviceConfig::Sim { wire } => {
            let dev = SimDev::new(wire, &parts.cfg, handle.clone());
            parts.launch(dev)?
        }
        #[cfg(target_os = "linux")]
        DeviceConfig::Tap(tap) => parts.launch(TapDev::new(tap))?,
    };
    Ok((handle, join))
}

/// What a data plane is made of besides its device.
struct Parts {
    cfg: Config,
    shared: Arc<Shared>,
    events: tokio::sync::mpsc::UnboundedSender<Event>,
    cmds: mpsc::Receiver<Cmd>,
    bell: Arc<Doorbell>,
}

impl Parts {
    fn launch<D: Device + Send + 'static>(
        self,
        device: D,
    ) -> io::Result<std::thread::JoinHandle<()>> {
        let dp = DataPlane {
            shaper: Shaper::new(self.cfg.faults, self.cfg.seed),
            last_flush: Instant::now(),
            cfg: self.cfg,
            shared: self.shared,
            events: self.events,
            cmds: self.cmds,
            bell: self.bell,
            port: None,
            device,
            tx_blocked: false,
            fatal: None,
            offload: Engines::default(),
            idle: IdlePoll::configured(),
            frame: Vec::with_capacity(65536 + 64),
            cut: None,
            segment: vec![0; capnet_wire::gso::MAX_FRAME],
            merged: vec![0; capnet_wire::gso::MAX_FRAME],
        };
        let name = format!("nicdrv-dp-{}", dp.cfg.name);
        std::thread::Builder::new()
            .name(name)
            .spawn(move || dp.run())
    }
}

struct DataPlane<D> {
    cfg: Config,
    shared: Arc<Shared>,
    events: tokio::sync::mpsc::UnboundedSender<Event>,
    cmds: mpsc::Receiver<Cmd>,
    bell: Arc<Doorbell>,
    port: Option<Port>,
    device: D,
    /// The device had no room for a frame: the stack's frames are not work
    /// until it gives some back.
    tx_blocked: bool,
    shaper: Shaper,
    last_flush: Instant,
    /// The device is gone for good: the data plane stops (nicdrv exits non-zero).
    fatal: Option<String>,
    /// The offload contexts' engines (see [`crate::offload`]).
    offload: Engines,
    /// How long to poll before sleeping (a command waits at most one
    /// round: its bell is heard when the loop sleeps or is busy).
    idle: IdlePoll,
    /// A private copy of the frame in hand: a frame in shared memory (the
    /// stack's rings) can still be written by the peer, so it is copied
    /// out once and only the copy is checked, sealed or opened. A plain
    /// merged frame nothing else must see is cut in place instead
    /// ([`Cut::in_ring`]).
    frame: Vec<u8>,
    /// A merged frame (TSO) being cut, from `frame` or in place: its
    /// segments go one by one as the device has room, before another frame
    /// is taken.
    cut: Option<Cut>,
    /// Where a segment of `frame` is written (and, on receive, a merged
    /// frame from the device is cut for the capture).
    segment: Vec<u8>,
    /// Where received segments are coalesced while RX engines exist.
    merged: Vec<u8>,
}

impl<D: Device> DataPlane<D> {
    fn run(mut self) {
        tracing::debug!(name = %self.cfg.name, "data plane running");
        self.device.start();
        self.check_link();
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
            self.check_device(now);
            self.check_link();
            if work || self.poll_before_sleeping() {
                continue;
            }
            let slept = Instant::now();
            self.sleep();
            self.idle.slept(slept.elapsed());
        }
        self.shutdown();
    }

    /// Applies queued commands. False: shut down.
    fn commands(&mut self) -> bool {
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
                        cutting: None,
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
                        self.device.set_carrier(up);
                    }
                    self.check_link();
                    ack(done);
                }
                Cmd::SetCarrier { up, done } => {
                    self.device.set_carrier(up);
                    self.check_link();
                    ack(done);
                }
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

    /// Acts on what the device found wrong with itself.
    fn check_device(&mut self, now: Instant) {
        while let Some(fault) = self.device.check(now, &self.shared.counters) {
            self.on_fault(fault);
        }
    }

    fn on_fault(&mut self, fault: Fault) {
        match fault {
            Fault::Gone(why) => self.fatal = Some(why),
            Fault::Lost(why) => self.medium_lost(&why),
        }
    }

    fn medium_lost(&mut self, why: &str) {
        // Frames the peer put on the wire before it went are good, like
        // frames on a cable before the cut: deliver them (bounded, in case
        // the peer left a queue it still fakes).
        for _ in 0..64 {
            if !self.pump_rx() {
                break;
            }
        }
        self.device.reset(why);
        self.tx_blocked = false;
        self.shaper.discard_held();
        self.check_link();
    }

    fn check_link(&mut self) {
        let up = self.device.link();
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
            tx_blocked,
            shaper,
            cfg,
            shared,
            offload,
            frame,
            cut,
            segment,
            ..
        } = self;
        let mut tx = TxPath {
            device,
            shaper,
            pcap: &mut cfg.pcap,
            c: &shared.counters,
            mtu: cfg.mtu,
            csum_offload: cfg.csum_offload,
            segmentation: cfg.segmentation,
            link_up,
            offload,
            out: segment,
        };
        *tx_blocked = false;
        let mut n = 0;
        let mut error = None;
        while n < BATCH {
            // Back-pressure: take a frame (or cut a segment) only with room
            // for it on the device.
            if link_up && !tx.device.reserve() {
                *tx_blocked = true;
                break;
            }
            if let Some(c) = cut.as_mut() {
                let done = if !c.in_ring {
                    tx.segment(c, frame, now)
                } else {
                    match port.as_mut().and_then(|p| p.cutting.take().map(|b| (p, b))) {
                        Some((p, b)) => {
                            let done = tx.segment(c, p.duplex.rx.data(&b), now);
                            if done {
                                p.duplex.rx.release(b);
                            } else {
                                p.cutting = Some(b);
                            }
                            done
                        }
                        None => {
                            // The session the buffer belonged to ended mid-cut.
                            inc(&tx.c.tx_dropped);
                            true
                        }
                    }
                };
                if done {
                    *cut = None;
                }
                n += 1;
                continue;
            }
            let Some(p) = port.as_mut() else { break };
            let b = match p.duplex.rx.recv() {
                Ok(Some(b)) => b,
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            };
            let desc = b.desc();
            if tx.cuts_in_place(desc.flags) {
                *cut = tx.transmit_in_place(p.duplex.rx.data(&b), desc.flags);
                match cut {
                    Some(_) => p.cutting = Some(b),
                    None => p.duplex.rx.release(b),
                }
                n += 1;
                continue;
            }
            frame.clear();
            frame.extend_from_slice(p.duplex.rx.data(&b));
            p.duplex.rx.release(b);
            *cut = tx.transmit(frame, desc, now);
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
            offload,
            events,
            segment,
            merged,
            ..
        } = self;
        let attached = port.is_some();
        let mut port_error = None;
        let mut rx = RxPath {
            port,
            pcap: &mut cfg.pcap,
            c: &shared.counters,
            mtu: cfg.mtu,
            csum_offload: cfg.csum_offload,
            segmentation: cfg.segmentation,
            gro: None,
            port_error: &mut port_error,
            offload,
            events,
            segment,
            merged,
        };
        let c = &shared.counters;
        let n = device.receive(attached, BATCH, c, |f, what| rx.deliver(f, what));
        rx.finish();
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
                shaper.on_timer(now, |f| device.send(f, None, c));
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
        if device.deadline().is_some_and(|t| t <= now) {
            device.on_timer(now);
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
        self.device.flush();
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
        if let Some(t) = self.device.deadline() {
            earliest(t);
        }
        d
    }

    /// Polls the queues a little while that pays (`capnet_ring::idle`):
    /// whether work came. The signals are not asked for first: every
    /// producer this loop waits for shows in a queue index or, for a TAP,
    /// in poll(2), which the check reads. (A fixed yield-spin of 20 us once
    /// cost more than the wakeups it saved: on the tax bench 345-354 ->
    /// 400-466 MiB/s without it.)
    fn poll_before_sleeping(&mut self) -> bool {
        let DataPlane {
            idle,
            port,
            device,
            tx_blocked,
            ..
        } = self;
        let attached = port.is_some();
        let blocked = attached && *tx_blocked;
        idle.poll(|| {
            (!blocked && port.as_ref().is_some_and(|p| !p.duplex.rx.is_empty()))
                || device.has_work(attached, blocked)
                || device.readable_now()
        })
    }

    /// Asks for signals, re-checks, and sleeps in poll(2) until a doorbell,
    /// a device fd or a timer needs us.
    fn sleep(&mut self) {
        // 1. Ask to be woken. While the device has no room we wait for it
        //    to give some back, not for the stack's frames (they would wake
        //    us for nothing: we could not take them).
        let attached = self.port.is_some();
        let blocked = attached && self.tx_blocked;
        if let Some(p) = &self.port {
            if !blocked {
                p.duplex.rx.request_signal();
            }
        }
        self.device.request_signal(blocked);
        // 2. Re-check: work that arrived before the request would ring nobody.
        let pending = (!blocked && self.port.as_ref().is_some_and(|p| !p.duplex.rx.is_empty()))
            || self.device.has_work(attached, blocked);
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
            self.device.watch(&mut set);
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
            if let Some(fault) = self.device.woken(&set) {
                self.on_fault(fault);
            }
        }
        // 4. Busy again: the peers need not ring while we poll.
        if let Some(p) = &self.port {
            p.duplex.rx.cancel_signal();
        }
        self.device.cancel_signal();
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
