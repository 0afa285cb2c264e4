//! A ring-mode socket's up ring as its connection's send queue: the engine
//! reads the bytes it has not had acknowledged where the application wrote
//! them, and copies each into a frame (DESIGN: the socket ring is the TCP
//! buffer). The pump hands the engine new bytes by count, and gives the
//! application its space back as the peer acknowledges.

use capnet_ring::bytering::HeldBytes;
use capnet_ring::{RingError, ServerEnd};
use capnet_tcpip::tcp::{Conn, SendRing};

struct UpRing(HeldBytes);

impl SendRing for UpRing {
    fn copy_out(&self, at: u32, dst: &mut [u8]) -> bool {
        self.0.copy_out(at, dst).is_ok()
    }
}

/// Puts the connection's send queue in the socket's up ring, if its own
/// queue is empty (bytes queued before the rings came are sent first) and
/// its bound fits in the ring (a path that needs more keeps its own).
pub(super) fn attach(c: &mut Conn, rings: &ServerEnd) -> bool {
    if c.sends_from_ring() {
        return true;
    }
    let up = &rings.up;
    // SAFETY: the stack and its `ServerEnd`s live on the one thread of its
    // loop (`Stack` holds `Rc`s, so it cannot leave it); the queue reads
    // only from `snd.una` on, which the pump consumes only once the peer
    // acknowledged it (`release_acked`); and every path that takes
    // the rings from a connection first calls `detach`, before they are
    // dropped, retired or reset.
    let held = unsafe { up.held() };
    c.send_from_ring(Box::new(UpRing(held)), up.head(), up.capacity() as usize)
}

/// The rings are leaving the connection: its send queue copies the bytes
/// it still holds in them.
pub(super) fn detach(c: &mut Conn) {
    c.send_from_own_queue();
}

/// Gives the application back the ring space of bytes the peer
/// acknowledged, or, once the queue left the ring, of every byte it took
/// there; true if there was any.
pub(super) fn release_acked(c: &mut Conn, rings: &mut ServerEnd) -> bool {
    let Some(upto) = c.ring_front().or_else(|| c.take_left_ring()) else {
        return false;
    };
    let released = upto.wrapping_sub(rings.up.head()) as usize;
    rings.up.consume(released);
    released > 0
}

/// Bytes in the up ring the engine has not taken yet. `Err` when the
/// application moved its tail back over bytes the engine holds.
pub(super) fn untaken(c: &Conn, rings: &ServerEnd) -> Result<usize, RingError> {
    let available = rings.up.available()?;
    let Some(front) = c.ring_front() else {
        return Ok(available);
    };
    let held = front.wrapping_sub(rings.up.head()) as usize + c.send_queued();
    available.checked_sub(held).ok_or(RingError::Corrupt(
        "up ring tail moved back over queued bytes",
    ))
}
