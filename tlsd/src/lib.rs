//! tlsd: the TLS service.
//!
//! rustls runs the handshake ([`handshake`]); certificates, keys and trust
//! roots are loaded only here ([`identity`]). After the handshake the record
//! layer is tlsd's own ([`record`]), so that records can be sealed and
//! opened in software or by a NIC offload context ([`holder`]).

pub mod alert;
pub mod args;
pub mod conn;
pub mod handshake;
pub mod handshaker;
pub mod holder;
pub mod identity;
pub mod limits;
pub mod listener;
pub mod record;
pub mod service;
pub mod session;
pub mod stats;
pub mod supervisor;
