//! TCP (RFC 9293), with the extensions Linux runs by default.

pub mod cc;
pub mod cookie;
pub mod isn;
pub mod recvq;
pub mod rtt;
pub mod scoreboard;
pub mod sendq;
