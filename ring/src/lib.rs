//! capnet-ring: the data plane of capnet.
//!
//! Processes exchange frames and socket bytes through shared memory, in the style of seL4 sDDF:
//!
//! - [`queue`]: a single-producer single-consumer queue of [`Desc`]riptors with notification
//!   suppression. The queue logic is generic over where its memory lives ([`queue::QueueMem`]):
//!   a heap instance for tests, benchmarks and loom, a shared-memory instance for peers.
//! - [`channel`]: one direction of frames over a buffer pool (a free queue and an active queue),
//!   with every descriptor from the peer checked against private shadow state.
//! - [`duplex`]: two channels, a link-state word and two doorbells in one region; both a NIC port
//!   (nicdrv <-> netsrv) and the simulated wire (nicdrv <-> nicdrv) are made of it.
//! - [`bytering`]: an SPSC byte stream for socket data; [`sockets`]: [`SocketRings`], one per
//!   direction of a socket, with its doorbells; [`arena`]: many sockets' rings in one region
//!   with one doorbell and one [`ready`] list per direction, so descriptors stay bounded.
//! - [`idle`]: polling a little before sleeping on a doorbell, while that pays.
//! - [`platform`]: the OS seam (memfd regions, socketpair doorbells, SCM_RIGHTS); [`handoff`] moves
//!   fds beside Cap'n Proto, which cannot carry them.
//!
//! Peers are untrusted: an impossible index or descriptor is [`RingError::Corrupt`], never a panic
//! and never an out-of-bounds access. Under `--cfg loom` only the protocol core (queue and byte ring
//! over heap memory, with loom atomics) is compiled, so that loom can model-check it.

mod sync;

mod bytemem;
pub mod bytering;
pub mod desc;
pub mod error;
pub mod queue;
pub mod ready;

#[cfg(not(loom))]
pub mod arena;
#[cfg(not(loom))]
pub mod channel;
#[cfg(not(loom))]
pub mod duplex;
#[cfg(not(loom))]
pub mod handoff;
#[cfg(not(loom))]
pub mod idle;
#[cfg(not(loom))]
pub mod platform;
#[cfg(not(loom))]
mod shm;
#[cfg(not(loom))]
pub mod sockets;

pub use bytering::{byte_ring_bytes, ByteReader, ByteWriter};
pub use desc::{flags, Desc};
pub use error::RingError;
pub use queue::{Consumer, Producer};

#[cfg(not(loom))]
pub use arena::{ArenaLayout, ClientArena, ServerArena, SlotHold};
#[cfg(not(loom))]
pub use channel::{ChannelLayout, ChannelReceiver, ChannelSender, RxBuf, TxBuf};
#[cfg(not(loom))]
pub use duplex::{Duplex, Side};
#[cfg(not(loom))]
pub use handoff::{redeem, HandoffTable, Token, CONNECT_HANDOFF, CONNECT_RPC};
#[cfg(not(loom))]
pub use idle::IdlePoll;
#[cfg(not(loom))]
pub use platform::{clear_cloexec, random_bytes, recv_fds, send_fds, Doorbell, End, SharedRegion};
#[cfg(not(loom))]
pub use sockets::{ClientEnd, ServerEnd, SlotNews, SocketMapping, SocketRings, Waker};
