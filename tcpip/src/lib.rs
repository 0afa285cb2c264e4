//! capnet's TCP/IP engine: a sans-IO core in the shape of Fuchsia's
//! netstack3. Frames, the time and socket calls go in; frames, socket
//! events and timer deadlines come out. The core has no clock, no RNG and
//! no I/O of its own, so every behaviour runs in one process in a test;
//! netsrv is its bindings (port rings, socket rings, capnp).

pub mod frag;
pub mod icmp;
pub mod ip;
pub mod neighbor;
pub mod stack;
pub mod tcp;
pub mod time;
pub mod timer;
pub mod udp;

pub use ip::iface::{Cidr, IfaceId};
pub use ip::Device;
pub use stack::{Config, ConnectError, RxMeta, Stack};
pub use time::Instant;
