//! The devices behind a port: the sim wire (a ring shared with another
//! driver) and a TAP device, and sending one frame to either.

use super::*;

pub(super) struct SimDev {
    pub(super) path: PathBuf,
    pub(super) wire: Option<Wire>,
    pub(super) connecting: bool,
    /// A wire buffer taken before a frame is taken from the stack.
    pub(super) spare: Option<TxBuf>,
    /// The wire had no free buffer: wait for the peer to return some.
    pub(super) blocked: bool,
    /// Our wish for the wire carrier (setCarrier / setFaults).
    pub(super) admin_carrier: bool,
    /// The wire's peer broke the protocol or left: drop the wire.
    pub(super) broken: Option<String>,
    /// Frames a peer that died never gave back: sent again to the peer
    /// that takes its place (a restarted driver of the same port), so that
    /// TCP over the wire need not wait out a retransmission timeout.
    pub(super) unsent: Vec<Vec<u8>>,
    pub(super) unsent_at: Option<Instant>,
}

/// How long frames of a dead wire peer stay worth sending to its successor.
pub(super) const UNSENT_TTL: Duration = Duration::from_secs(1);

#[cfg(target_os = "linux")]
pub(super) struct TapDev {
    pub(super) tap: Tap,
    pub(super) scratch: Vec<u8>,
    pub(super) link: bool,
    pub(super) recheck: bool,
    pub(super) next_poll: Instant,
}

pub(super) enum Device {
    Sim(Box<SimDev>),
    #[cfg(target_os = "linux")]
    Tap(TapDev),
}

/// Puts one frame on the device (after fault injection).
pub(super) fn device_send(device: &mut Device, c: &Counters, f: &[u8]) {
    match device {
        Device::Sim(s) => {
            let Some(wire) = s.wire.as_mut() else {
                inc(&c.tx_dropped);
                return;
            };
            let buf = match s.spare.take() {
                Some(b) => Some(b),
                None => match wire.duplex.tx.alloc() {
                    Ok(b) => b,
                    Err(e) => {
                        s.broken = Some(format!("wire free queue: {e}"));
                        None
                    }
                },
            };
            let Some(mut b) = buf else {
                inc(&c.tx_dropped);
                return;
            };
            let dst = wire.duplex.tx.buf_mut(&mut b);
            if f.len() > dst.len() {
                // The peer made the wire with smaller buffers than our MTU.
                wire.duplex.tx.free(b);
                inc(&c.tx_dropped);
                return;
            }
            dst[..f.len()].copy_from_slice(f);
            wire.duplex.tx.send(b, f.len() as u32, 0, 0);
        }
        #[cfg(target_os = "linux")]
        Device::Tap(t) => {
            if let Err(e) = t.tap.write_frame(f) {
                inc(&c.tx_dropped);
                if e.raw_os_error() == Some(libc::EIO) {
                    // The interface is down.
                    t.link = false;
                    t.recheck = true;
                } else if e.kind() != io::ErrorKind::WouldBlock {
                    tracing::debug!(%e, "tap write failed");
                }
            }
        }
    }
}
