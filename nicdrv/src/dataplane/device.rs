//! What the loop needs of the device behind a port, in two small traits:
//! [`Device`] moves frames and keeps the medium, [`Readiness`] lets the
//! loop sleep on it. The sim wire (`sim_dev`) and the TAP (`tap_dev`) are
//! the two implementations; the loop is generic over them, so the per-frame
//! calls are static and the loop never asks which device it drives.

use super::*;

/// What went wrong with a device, found by [`Device::check`] or
/// [`Readiness::woken`].
pub(super) enum Fault {
    /// The medium went away (the sim wire's peer left or broke the
    /// protocol). The loop first delivers what is still on it
    /// ([`Device::receive`] keeps working), then calls [`Device::reset`].
    Lost(String),
    /// The device is gone for good: the data plane stops.
    // Of today's devices only the TAP (Linux only) can vanish.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    Gone(String),
}

pub(super) trait Device: Readiness {
    /// Begins bringing the medium up (the sim wire: meeting its peer).
    /// Called once, on the data-plane thread, before anything else.
    fn start(&mut self);

    /// Whether the link is up. Cheap, except after an event that made the
    /// last reading stale: then it reads the device again (one syscall).
    fn link(&mut self) -> bool;

    /// The administrator's wish for carrier; [`Device::link`] shows the effect.
    fn set_carrier(&mut self, up: bool);

    /// Called before each frame is taken from the stack while the link is
    /// up: makes room for one frame. False: no room (the loop stops taking
    /// frames and waits for [`Readiness::has_work`] with `room`).
    fn reserve(&mut self) -> bool;

    /// Whether the device takes a merged TCP frame whole and cuts it
    /// itself (a TAP whose Linux does the segmentation).
    fn cuts_merged(&self) -> bool;

    /// Puts one frame on the device, or counts it in `tx_dropped`: a frame
    /// of at most the MTU, or, with `cut`, a merged frame readied for a
    /// device that [`cuts_merged`](Device::cuts_merged).
    fn send(&mut self, frame: &[u8], cut: Option<&DeviceCut>, c: &Counters);

    /// Puts one frame of `len` bytes (at most the MTU) on the device,
    /// filled by `write` straight in the device's own buffer where it has
    /// one (the sim wire), so that a segment cut from a merged frame is
    /// written once; or counts it in `tx_dropped` (then `write` is not
    /// called).
    fn send_with(&mut self, len: usize, c: &Counters, write: impl FnOnce(&mut [u8]));

    /// Hands up to `max` received frames to `deliver`, each in private
    /// memory (no peer can change it while it is checked) with what the
    /// device said of it (the sim wire says nothing; a TAP may say its
    /// checksums are good, or that it is a merged frame); returns how
    /// many. A frame the device describes wrongly is counted in
    /// `rx_malformed` and not delivered. Without a stack `attached`, a
    /// device that can queue frames leaves them queued.
    fn receive(
        &mut self,
        attached: bool,
        max: usize,
        c: &Counters,
        deliver: impl FnMut(&mut [u8], Received),
    ) -> usize;

    /// Publishes what `send` and `receive` did; wakes the peer if it asked.
    fn flush(&mut self);

    /// Takes in what happened to the medium since the last call (a peer
    /// met, a protocol error, a hang-up); returns what the loop must act
    /// on. Called once per loop pass and again after each fault it returns.
    fn check(&mut self, now: Instant, c: &Counters) -> Option<Fault>;

    /// After [`Fault::Lost`]: drops the medium, keeping what its peer never
    /// took for the next one, and begins meeting the next peer.
    fn reset(&mut self, why: &str);
}

/// How the loop sleeps on a device: the sDDF signal protocol (request a
/// signal, check again, sleep, cancel) plus the descriptors and the timer
/// the device needs polled.
pub(super) trait Readiness {
    /// Whether the device has what the loop waits for: received frames
    /// (if `frames`), room given back (if `room`), or a link other than
    /// [`Device::link`] last said. Atomic loads only.
    fn has_work(&self, frames: bool, room: bool) -> bool;

    /// While the loop polls before sleeping: whether frames wait that
    /// [`Readiness::has_work`] cannot see without a syscall (a TAP's).
    fn readable_now(&self) -> bool {
        false
    }

    /// Asks the device's peer to ring us when frames arrive, and when
    /// room is given back if `room`.
    fn request_signal(&self, room: bool);

    /// The loop is busy again: the peer need not ring.
    fn cancel_signal(&self);

    /// Adds the descriptors to sleep on to `set`.
    fn watch(&mut self, set: &mut PollSet);

    /// After poll(2) on the set `watch` filled: takes in what rang.
    fn woken(&mut self, set: &PollSet) -> Option<Fault>;

    /// When [`Readiness::on_timer`] is next due, if ever.
    fn deadline(&self) -> Option<Instant>;

    /// The deadline passed.
    fn on_timer(&mut self, now: Instant);
}
