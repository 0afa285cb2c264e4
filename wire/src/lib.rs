//! Frame-level logic that the NIC driver and the stack share, so that a
//! frame is judged the same way on both sides of a port's rings: checksum
//! verification (what a NIC's RX offload does, and what netsrv does in
//! software for frames no driver verified) and checksum filling.
//!
//! Pure functions over smoltcp's typed `wire` views; builds for Redox.
//!
//! `tcp`: where a frame's TCP payload is, and whose it is.
//!
//! `tls`: the TLS record format and per-record AEAD inputs (nonce, AAD) that
//! tlsd's software engine and the NIC's TLS engine share.
//!
//! `chunk`: the marked receive chunk's header, which netsrv writes into a
//! client's receive ring and libclient reads.

pub mod chunk;
pub mod csum;
pub mod tcp;
pub mod tls;
