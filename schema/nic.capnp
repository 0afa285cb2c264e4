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

  offloadTls @6 (flow :Offload.OffloadFlow, kind :Offload.OffloadKind,
                 params :Offload.TlsParams, events :Offload.OffloadEvents)
      -> (context :Offload.OffloadContext, info :Offload.OffloadInfo);
  # Mints a TLS offload context for one direction of one flow. Fails with
  # `unsupported` if this port offers no TLS offload of that kind, and with
  # `invalid` for bad parameters or a flow that already has one.

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
  tlsTxOffload @7 :Bool;     # the port seals TLS records (kTLS device TX)
  tlsRxOffload @8 :Bool;     # the port opens TLS records (kTLS device RX)
  confinement @9 :Text;
  # How the driver confined itself, as NetStatus.confinement in net.capnp.
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
  offloadContexts @16 :UInt64;  # contexts minted
  offloadReleased @17 :UInt64;  # contexts deleted (released, revoked, session end)
  tlsTxRecords @18 :UInt64;     # records sealed by the TLS engine
  tlsRxRecords @19 :UInt64;     # records opened and authenticated
  tlsRxAuthFailures @20 :UInt64;
  tlsRxResyncRequests @21 :UInt64;
  offloadTxDropped @22 :UInt64; # frames dropped rather than sent unsealed
}

struct WireFaults {
  # Probabilities in parts per million, applied to frames this port transmits.
  lossPpm @0 :UInt32;
  reorderPpm @1 :UInt32;
  duplicatePpm @2 :UInt32;
  corruptPpm @3 :UInt32;
  carrierUp @4 :Bool = true;
}
