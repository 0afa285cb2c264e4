//! A TAP device as a [`Device`]: Linux is the peer. Reads and writes are
//! syscalls, so there is no back-pressure and no cheap readiness; the link
//! is the interface's flags, read again whenever an event (netlink, a
//! failed read or write, a carrier change, the flag poll timer) may have
//! changed them.

use super::device::{Device, Fault, Readiness};
use super::*;

/// Interface flag poll period when there is no netlink socket.
const LINK_POLL: Duration = Duration::from_millis(200);

pub(super) struct TapDev {
    tap: Tap,
    scratch: Vec<u8>,
    /// A frame built by `send_with`.
    out: Vec<u8>,
    link: bool,
    /// The flags may have changed: `link` reads them again.
    recheck: bool,
    next_poll: Instant,
    /// The device was deleted: `check` reports it.
    gone: Option<String>,
    /// Where `watch` put the TAP fd and the netlink socket.
    netlink_at: Option<usize>,
}

impl TapDev {
    pub(super) fn new(tap: Tap) -> TapDev {
        let link = tap.link_up().unwrap_or(false);
        TapDev {
            tap,
            // A virtio-net header and the largest merged frame.
            scratch: vec![0u8; vnet::LEN + capnet_wire::gso::MAX_FRAME],
            out: Vec::new(),
            link,
            recheck: false,
            next_poll: Instant::now() + LINK_POLL,
            gone: None,
            netlink_at: None,
        }
    }
}

impl Device for TapDev {
    fn start(&mut self) {}

    fn link(&mut self) -> bool {
        if self.recheck {
            self.recheck = false;
            match self.tap.link_up() {
                Ok(up) => self.link = up,
                Err(e) => tracing::debug!(%e, "SIOCGIFFLAGS"),
            }
        }
        self.link
    }

    fn set_carrier(&mut self, up: bool) {
        if let Err(e) = self.tap.set_carrier(up) {
            tracing::warn!(%e, "TUNSETCARRIER failed");
        }
        self.recheck = true;
    }

    fn reserve(&mut self) -> bool {
        true
    }

    fn cuts_merged(&self) -> bool {
        self.tap.vnet()
    }

    fn send(&mut self, f: &[u8], cut: Option<&DeviceCut>, c: &Counters) {
        let mut header = [0u8; vnet::LEN];
        let header: &[u8] = if self.tap.vnet() {
            cut.map(vnet::Header::tso)
                .unwrap_or_default()
                .emit(&mut header);
            &header
        } else {
            &[]
        };
        if let Err(e) = self.tap.write_frame(header, f) {
            inc(&c.tx_dropped);
            if e.raw_os_error() == Some(libc::EIO) {
                // The interface is down.
                self.link = false;
                self.recheck = true;
            } else if e.kind() != io::ErrorKind::WouldBlock {
                tracing::debug!(%e, "tap write failed");
            }
        }
    }

    fn send_with(&mut self, len: usize, c: &Counters, write: impl FnOnce(&mut [u8])) {
        // A write(2) copies anyway: the frame is built in the spare buffer.
        let mut frame = std::mem::take(&mut self.out);
        frame.resize(len, 0);
        write(&mut frame);
        self.send(&frame, None, c);
        self.out = frame;
    }

    fn receive(
        &mut self,
        _attached: bool,
        max: usize,
        c: &Counters,
        mut deliver: impl FnMut(&mut [u8], Received),
    ) -> usize {
        let mut n = 0;
        while n < max {
            match self.tap.read_frame(&mut self.scratch) {
                Ok(len) if !self.tap.vnet() => {
                    deliver(&mut self.scratch[..len], Received::default());
                    n += 1;
                }
                Ok(len) => {
                    let (header, frame) = self.scratch[..len].split_at_mut(len.min(vnet::LEN));
                    match vnet::Header::parse(header).and_then(|h| h.receive(frame)) {
                        Ok(what) => deliver(frame, what),
                        Err(e) => {
                            tracing::trace!(%e, len, "frame from the tap refused");
                            inc(&c.rx_malformed);
                        }
                    }
                    n += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::EBADFD) => {
                    // The device was deleted under us: the fd is dead
                    // for good (and polls as an error forever).
                    self.gone = Some(format!("tap {}: the device was deleted", self.tap.name()));
                    break;
                }
                Err(e) => {
                    tracing::debug!(%e, "tap read failed");
                    self.recheck = true;
                    break;
                }
            }
        }
        n
    }

    fn flush(&mut self) {}

    fn check(&mut self, _now: Instant, _c: &Counters) -> Option<Fault> {
        self.gone.take().map(Fault::Gone)
    }

    fn reset(&mut self, _why: &str) {}
}

impl Readiness for TapDev {
    fn has_work(&self, _frames: bool, _room: bool) -> bool {
        self.recheck
    }

    fn readable_now(&self) -> bool {
        let mut set = PollSet::default();
        let tap = set.add(self.tap.fd());
        set.poll(Some(Duration::ZERO)).is_ok_and(|n| n > 0) && set.ready(tap)
    }

    fn request_signal(&self, _room: bool) {}

    fn cancel_signal(&self) {}

    fn watch(&mut self, set: &mut PollSet) {
        set.add(self.tap.fd());
        self.netlink_at = self.tap.netlink_fd().map(|fd| set.add(fd));
    }

    fn woken(&mut self, set: &PollSet) -> Option<Fault> {
        if self.netlink_at.take().is_some_and(|i| set.ready(i)) && self.tap.drain_netlink() {
            self.recheck = true;
        }
        None
    }

    fn deadline(&self) -> Option<Instant> {
        self.tap.netlink_fd().is_none().then_some(self.next_poll)
    }

    fn on_timer(&mut self, now: Instant) {
        self.recheck = true;
        self.next_poll = now + LINK_POLL;
    }
}
