//! What the control plane sees of the data plane: the command queue
//! ([`Handle`], [`Cmd`]), the [`Event`]s back, the [`Shared`] atomics, and
//! what a data plane starts with ([`Config`], [`DeviceConfig`]).

use super::*;

/// State both planes read; only the data plane writes the counters.
#[derive(Debug, Default)]
pub struct Shared {
    pub counters: Counters,
    pub link_up: AtomicBool,
    /// The id of the ring session that holds the port, 0 when none.
    pub session: AtomicU64,
}

// A handful of commands per session, never per frame: the size of `Attach`
// (a whole `Duplex`) costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Cmd {
    /// A new ring session (nicdrv is side A of `duplex`).
    Attach {
        session: u64,
        duplex: Duplex,
        done: Option<Ack>,
    },
    /// End a session (its capnp connection went away).
    Detach {
        session: u64,
    },
    SetFaults {
        faults: FaultConfig,
        carrier: Option<bool>,
        done: Option<Ack>,
    },
    SetCarrier {
        up: bool,
        done: Option<Ack>,
    },
    /// Install an offload context in ring session `session` (refused if
    /// that session is no longer attached).
    OffloadInstall {
        session: u64,
        ctx: Box<NewContext>,
        done: tokio::sync::oneshot::Sender<Result<(), InstallError>>,
    },
    /// Delete an offload context and what it held. Without `done`, the
    /// data plane answers with [`Event::OffloadDeleted`].
    OffloadDelete {
        id: u32,
        done: Option<Ack>,
    },
    /// The holder's answer to a TLS RX resync request: `Some(record
    /// number)` confirms the candidate at `tcp_seq`, `None` rejects it.
    OffloadResync {
        id: u32,
        tcp_seq: u32,
        rec_seq: Option<u64>,
        done: tokio::sync::oneshot::Sender<Result<(), CmdError>>,
    },
    /// Delete every offload context (they are revoked).
    OffloadRevokeAll {
        reason: &'static str,
        done: Option<Ack>,
    },
    Shutdown,
}

/// What the data plane tells the control plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Link(bool),
    /// The data plane ended a session (bad descriptor from the stack).
    SessionEnded(u64),
    /// These offload contexts were deleted by the driver (the ring session
    /// ended): their holders must hear that they are revoked.
    OffloadRevoked {
        ids: Vec<u32>,
        reason: &'static str,
    },
    /// A TLS RX context lost sync and found a record header candidate.
    ResyncRequest {
        id: u32,
        tcp_seq: u32,
    },
    /// An `OffloadDelete` without `done` was carried out.
    OffloadDeleted(u32),
}

/// The control plane's end of the command queue.
#[derive(Clone)]
pub struct Handle {
    pub(super) tx: mpsc::Sender<Cmd>,
    pub(super) bell: Arc<Doorbell>,
}

impl Handle {
    /// Queues a command and wakes the data plane. False if it has exited.
    pub fn send(&self, cmd: Cmd) -> bool {
        let ok = self.tx.send(cmd).is_ok();
        self.bell.ring();
        ok
    }

    /// Wakes the data plane without a command: a device's helper thread
    /// (the sim wire's rendezvous) left it something to take in.
    pub(super) fn wake(&self) {
        self.bell.ring();
    }
}

/// The device behind the port, as handed to [`spawn`].
pub enum DeviceConfig {
    Sim {
        wire: PathBuf,
    },
    #[cfg(target_os = "linux")]
    Tap(Tap),
}

pub struct Config {
    pub name: String,
    pub mtu: u32,
    /// Layout of a wire we create (buffers of one MTU frame).
    pub layout: ChannelLayout,
    pub csum_offload: bool,
    /// TSO and GRO toward the port's stack (its rings' buffers hold
    /// [`capnet_wire::gso::MAX_FRAME`]).
    pub segmentation: bool,
    pub faults: FaultConfig,
    pub seed: Option<u64>,
    pub pcap: Option<PcapWriter<BufWriter<File>>>,
}

/// Buffer size for an IP MTU: the frame (mtu + 14) rounded up to a cache
/// line. The port's rings with segmentation offload hold merged frames.
pub fn layout_for(mtu: u32, buffers: u32) -> ChannelLayout {
    ChannelLayout::for_frames(mtu + 14, buffers)
}

/// The port rings' layout: merged frames with segmentation offload.
pub fn port_layout(mtu: u32, buffers: u32, segmentation: bool) -> ChannelLayout {
    if segmentation {
        ChannelLayout::for_frames(
            capnet_wire::gso::MAX_FRAME.max(mtu as usize + 14) as u32,
            buffers,
        )
    } else {
        layout_for(mtu, buffers)
    }
}
