//! TCP (RFC 9293), with the extensions Linux runs by default.

pub mod cc;
pub mod conn;
pub mod cookie;
pub mod isn;
pub mod layer;
pub mod mark;
pub mod recvq;
pub mod rtt;
pub mod scoreboard;
pub mod sendq;

pub use conn::{limits, Conn, ConnCounters, ConnError, Options, State};
pub use layer::{Event, ListenerId, Tcp, TcpCounters, TcpError, TcpId, TcpLimits};
pub use mark::Mark;
pub use sendq::SendRing;
