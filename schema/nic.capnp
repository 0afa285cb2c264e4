@0xfacd7018aa8288e5;
# The capability a NIC driver (nicdrv, one process per port) offers upward.

using Common = import "common.capnp";
using Offload = import "offload.capnp";

interface Nic {
  info @0 () -> (info :PortInfo);
  # Static facts and current link state.

  openRings @1 () -> (grant :Common.RingGrant);
  # The port's RX and TX queue pairs over one buffer pool. Only one session at
  # a time holds the rings; a second call fails with `busy`.

  counters @2 () -> (counters :PortCounters);

  setFaults @3 (faults :WireFaults) -> ();
  # Change the fault injection of a `sim` port at run time.

  setCarrier @4 (up :Bool) -> ();
  # Carrier from our side (sim: the wire; tap: TUNSETCARRIER).

  watchLink @5 (watcher :LinkWatcher) -> ();
  # `watcher` is told of every link change until it is dropped.

  offload @6 (request :Offload.OffloadRequest, events :Offload.OffloadEvents)
      -> (context :Offload.OffloadContext, info :Offload.OffloadInfo);
  # Mints an offload context of `request.kind` for one flow. Fails with
  # `unsupported` if this port does not offer that kind (`PortInfo.offloads`)
  # or the parameters ask for what it cannot do (a cipher, a version),
  # `invalid` for parameters that do not suit the kind or a flow that
  # already has a context of that kind, `busy` while no ring session holds
  # the port.

  offloadContexts @7 () -> (contexts :List(Offload.OffloadInfo));
  # Every context this driver instance holds, active or not yet released.
}

interface LinkWatcher {
  linkChanged @0 (up :Bool) -> ();
}

struct PortInfo {
  name @0 :Text;
  backend @1 :Text;          # "sim" or "tap"
  mac @2 :Data;              # 6 bytes
  mtu @3 :UInt32;            # IP MTU; frames are mtu + 14 bytes
  linkUp @4 :Bool;
  checksumOffload @5 :Bool;  # RX verification and TX filling in the driver
  capturePath @6 :Text;      # pcap file, empty when not capturing
  offloads @7 :List(Offload.OffloadKind);
  # The offload context kinds this port offers (`Nic.offload`).
  confinement @8 :Text;
  # How the driver confined itself, as NetStatus.confinement in net.capnp.
  segmentation @9 :Bool;
  # TCP segmentation offload both ways (needs checksumOffload): the stack
  # may send a TCP frame merged from segments, up to the ring buffer size,
  # flagged TSO with its segment size, and the driver cuts it into frames
  # of the MTU (TSO); the driver coalesces received in-order segments of a
  # flow into one frame flagged GRO (GRO). See capnet_wire::gso.
}

struct PortCounters {
  rxFrames @0 :UInt64;
  rxBytes @1 :UInt64;
  txFrames @2 :UInt64;
  txBytes @3 :UInt64;
  rxDropped @4 :UInt64;       # no RX buffer from the stack
  rxBadChecksum @5 :UInt64;
  rxMalformed @6 :UInt64;     # runt, oversize or unparsable frames
  txDropped @7 :UInt64;       # carrier down or device error
  txChecksumFilled @8 :UInt64;
  rxChecksumVerified @9 :UInt64;
  wireLost @10 :UInt64;       # faults injected on our transmit side
  wireReordered @11 :UInt64;
  wireDuplicated @12 :UInt64;
  wireCorrupted @13 :UInt64;
  linkChanges @14 :UInt64;
  badDescriptors @15 :UInt64; # descriptors from the stack that failed checks
  offloadContexts @16 :UInt64;  # contexts minted, of every kind
  offloadReleased @17 :UInt64;  # contexts deleted (released, revoked, session end)
  offloadTxDropped @18 :UInt64;
  # TX frames naming a context dropped rather than sent unprocessed
  # (including those naming no context or a context of another flow).
  offloads @19 :List(Offload.OffloadCounters);
  # Per kind, for every kind the port offers, in `PortInfo.offloads` order.
  txSegmented @20 :UInt64;     # TSO frames from the stack cut (by the driver or the device)
  txSegments @21 :UInt64;      # the frames they became
  txSegmentErrors @22 :UInt64; # TSO frames that could not be cut (dropped)
  rxCoalesced @23 :UInt64;     # frames handed to the stack coalesced (GRO)
  rxCoalescedSegments @24 :UInt64; # the received frames they held
  txSegmentedByDevice @25 :UInt64;
  # Of txSegmented, those handed to the device whole for it to cut (a TAP:
  # Linux cuts them).
  rxCoalescedByDevice @26 :UInt64;
  # Of rxCoalesced, those the device handed up merged (a TAP: Linux's GSO).
}

struct WireFaults {
  # Probabilities in parts per million, applied to frames this port transmits.
  lossPpm @0 :UInt32;
  reorderPpm @1 :UInt32;
  duplicatePpm @2 :UInt32;
  corruptPpm @3 :UInt32;
  carrierUp @4 :Bool = true;
}
