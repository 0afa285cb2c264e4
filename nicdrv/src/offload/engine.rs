//! What the data plane asks of an offload engine, whatever its kind. The
//! context table ([`super::Engines`]) owns ids, lookup, drops and counters;
//! an engine only processes frames of its flow and answers the calls of its
//! kind.

use super::{StatsSnapshot, TcpSegment};
use capnet_schema::offload_capnp::OffloadKind;
use capnet_wire::esp::EspPacket;
use std::fmt;

/// A frame as the table parsed it for an engine: the parse its flow needs,
/// done once.
#[derive(Clone, Copy, Debug)]
pub enum Packet<'a> {
    Tcp(&'a TcpSegment),
    Esp(&'a EspPacket),
}

/// What an engine did to a frame the stack tagged `OFFLOAD_TX` for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxAction {
    /// Send it; `changed`: the payload changed (fill the checksums).
    Send { changed: bool },
    /// Drop it (counted): it may hold cleartext.
    Drop,
}

/// What an engine did to a received frame of its flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxOutcome {
    /// Descriptor flags for the stack (`OFFLOADED`, `OFFLOAD_FAILED`); 0:
    /// the engine did nothing to it.
    pub flags: u32,
    /// The TCP sequence number of a resync request for the holder.
    pub resync_request: Option<u32>,
}

/// Why an engine refused a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CmdError {
    /// No such context in the data plane (deleted or revoked meanwhile).
    Unknown,
    /// The call is not one of the context's kind.
    WrongKind(OffloadKind),
    /// The engine refused (its message).
    Engine(String),
}

/// One context's engine in the data plane. The table hands it only frames
/// of its flow ([`super::Matches`]): TX frames the stack tagged for it, and
/// received frames found by what it matches (a TCP connection's inbound
/// 4-tuple, whether it transmits, to learn the peer's ACKs, or receives;
/// an inbound SA's SPI).
pub trait Engine: Send {
    fn kind(&self) -> OffloadKind;

    /// A frame of its flow the stack tagged for this context: processed in
    /// place, or refused.
    fn transmit(&mut self, frame: &mut [u8], packet: Packet<'_>) -> Result<TxAction, String>;

    /// A received frame of its flow whose checksums the driver verified,
    /// in the buffer that goes to the stack.
    fn receive(&mut self, frame: &mut [u8], packet: Packet<'_>) -> RxOutcome;

    /// The holder's answer to a resync request: `Some(record)` confirms the
    /// candidate at `seq`, `None` rejects it. Stream receive kinds only.
    fn resync(&mut self, seq: u32, record: Option<u64>) -> Result<(), CmdError> {
        let _ = (seq, record);
        Err(CmdError::WrongKind(self.kind()))
    }

    /// Its counters now.
    fn stats(&self) -> StatsSnapshot;
}

// Never the engines' state (it holds the key schedule and the IV).
impl fmt::Debug for dyn Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Engine({})",
            capnet_schema::offload::kind_name(self.kind())
        )
    }
}
