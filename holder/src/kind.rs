//! What differs between offload kinds, as far as the holder is concerned.
//!
//! Very little: where a context or the software path stands in the flow,
//! and whether the NIC may ask the holder to resynchronise. Parameters,
//! keys and the calls themselves stay with the service that performs the
//! actions.

use std::fmt::Debug;

/// One kind of offload context (TLS TX, TLS RX; later ESP and NVMe/TCP).
pub trait Kind {
    /// Where a context or the software path stands in the flow: the stream
    /// offset of the next record (TLS) or PDU (NVMe/TCP), the next sequence
    /// number (ESP). It only grows: a context that started behind where
    /// the software path last resumed would reuse nonces.
    type Position: Copy + Ord + Debug;
    /// The NIC may lose its place and ask where a record or PDU starts
    /// (TLS RX, NVMe/TCP DDP).
    const RESYNCS: bool;
    /// For logs and errors.
    const NAME: &'static str;
}

/// TLS transmit: the NIC seals records the holder framed, from a stream
/// offset on.
#[derive(Clone, Copy, Debug)]
pub enum TlsTx {}

impl Kind for TlsTx {
    type Position = u64;
    const RESYNCS: bool = false;
    const NAME: &'static str = "TLS TX";
}

/// TLS receive: the NIC opens records from a stream offset on, and asks for
/// a resync when it lost track of where they start.
#[derive(Clone, Copy, Debug)]
pub enum TlsRx {}

impl Kind for TlsRx {
    type Position = u64;
    const RESYNCS: bool = true;
    const NAME: &'static str = "TLS RX";
}
