@0xb677ce94101f90bc;
# Offload contexts: NIC state for one flow (a TLS direction; later an ESP SA
# or an NVMe/TCP queue), minted by the nicdrv of one port and held by the
# service that owns the flow's state (tlsd, ipsecd, nvmeddp).
#
# A context is served through a revocable proxy: once it is released or
# revoked, every call answers an error starting with `revoked:`. A context
# whose driver died is disconnected; its holder treats that as revocation.
#
# Revoking a context, in this order:
#   1. the holder switches the flow to its software path;
#   2. drain: no TX descriptor naming the context is still in flight on the
#      port (netsrv's `TcpSocket.offloadStop` returns only then);
#   3. the NIC deletes the context (`release`) and everything it held;
#   4. where the flow's new egress offers the offload, the holder creates a
#      context there and resyncs.

using Common = import "common.capnp";

struct OffloadFlow {
  # A TCP connection as this host sees it.
  local @0 :Common.SocketAddr;
  remote @1 :Common.SocketAddr;
  txReach @2 :UInt32;
  # How far behind the newest byte it sent the stack may still retransmit
  # (its send buffer), in bytes. A TX engine keeps what it needs to seal a
  # retransmission that far back, whatever ACKs it saw on the wire: the
  # stack may not have seen them (the stack does, in Linux, tell its NIC
  # driver what it acknowledged). 0: unknown; the engine forgets what the
  # wire acknowledged.
}

enum OffloadKind {
  tlsTx @0;   # the NIC seals records framed by the holder (kTLS device TX)
  tlsRx @1;   # the NIC opens records in place and marks what it opened
}

enum TlsCipher {
  aes128Gcm @0;
  aes256Gcm @1;
}

struct TlsParams {
  version @0 :UInt16;   # 0x0303 TLS 1.2, 0x0304 TLS 1.3
  cipher @1 :TlsCipher;
  key @2 :Data;         # 16 or 32 bytes
  iv @3 :Data;          # 12 bytes, as rustls extracts it
  tcpSeq @4 :UInt32;    # the TCP sequence number where record `recordSeq` starts
  recordSeq @5 :UInt64;
}

interface OffloadContext {
  info @0 () -> (info :OffloadInfo);

  resync @1 (tcpSeq :UInt32, recordSeq :UInt64) -> ();
  # TLS RX: the holder confirms that record `recordSeq` starts at `tcpSeq`,
  # answering an `OffloadEvents.resyncRequest`. Fails with `invalid` for a
  # position the NIC did not ask about.

  resyncReject @2 (tcpSeq :UInt32) -> ();
  # TLS RX: no record starts at `tcpSeq`; the NIC searches again.

  release @3 () -> ();
  # Deletes the context in the NIC. Every later call answers `revoked`.
}

interface OffloadEvents {
  # Implemented by the holder; the NIC calls it.
  resyncRequest @0 (tcpSeq :UInt32) -> ();
  # TLS RX lost sync (loss, reordering) and found what looks like a record
  # header at `tcpSeq`. Answer with `resync` or `resyncReject`.

  revoked @1 (reason :Text) -> ();
  # The NIC took the context away (its port is going away). Frames naming it
  # are dropped from now on; the holder moves the flow to software.
}

struct OffloadInfo {
  id @0 :UInt32;          # what TX descriptors name (unique per driver instance)
  port @1 :Text;
  driverEpoch @2 :UInt32;
  kind @3 :OffloadKind;
  flow @4 :OffloadFlow;
  state @5 :Text;         # active, revoked
  records @6 :UInt64;     # records sealed (TX) or opened and authenticated (RX)
  bytes @7 :UInt64;       # TLS payload bytes processed
  resyncRequests @8 :UInt64;
  resyncs @9 :UInt64;
  authFailures @10 :UInt64;
  dropped @11 :UInt64;    # frames dropped rather than sent unsealed
}
