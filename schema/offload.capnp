@0xb677ce94101f90bc;
# Offload contexts: NIC state for one flow (a TLS direction, an ESP SA, an
# NVMe/TCP queue), minted by the nicdrv of one port and held by the service
# that owns the flow's state (tlsd, ipsecd, nvmeddp). docs/offload.md is the
# contract for every kind: when a context is made and freed, which calls are
# legal in which state, what each side promises, what an error means.
#
# One contract serves every kind. A port lists the kinds it offers
# (`Nic.info`, `PortInfo.offloads`) and answers `unsupported` for any other.
# Every context has `info` and `release`; every holder's `OffloadEvents`
# hears `revoked`. The other calls and events belong to some kinds only and
# answer `invalid` on a context of another kind.
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
# capnet-holder (holder/) is that order as a state machine every holder runs.

using Common = import "common.capnp";

enum OffloadKind {
  tlsTx @0;        # the NIC seals records framed by the holder (kTLS device TX)
  tlsRx @1;        # the NIC opens records in place and marks what it opened
  espCryptoTx @2;  # the NIC encrypts ESP packets the holder built (xfrm crypto offload)
  espCryptoRx @3;  # the NIC decrypts ESP packets and checks their ICV
  espPacketTx @4;  # the NIC encapsulates and numbers packets of the SA (xfrm packet offload)
  espPacketRx @5;  # the NIC decapsulates and checks replay and ICV
  nvmeTcpRx @6;    # the NIC places C2HData payload in registered buffers and checks data digests
}

struct OffloadRequest {
  # What `Nic.offload` (and, for TCP flows, netsrv's `TcpSocket.offload`)
  # is asked for. The flow and the parameters must suit the kind: TLS and
  # NVMe/TCP take a TCP flow, ESP an SA.
  kind @0 :OffloadKind;
  flow @1 :OffloadFlow;
  params :union {
    tls @2 :TlsParams;
    esp @3 :EspParams;
    nvmeTcp @4 :NvmeTcpParams;
  }
}

struct OffloadFlow {
  # What a context matches: received frames and transmitted ones it may
  # process belong to this flow only.
  union {
    tcp @0 :TcpFlow;
    esp @1 :EspSa;
  }
}

struct TcpFlow {
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

struct EspSa {
  # An ESP security association. `local` and `remote` are addresses (4 or
  # 16 bytes); the SPI is the one on the wire, so an inbound SA is found by
  # (local, spi) and an outbound one is named by its context id.
  local @0 :Data;
  remote @1 :Data;
  spi @2 :UInt32;
  direction @3 :EspDirection;
}

enum EspDirection {
  inbound @0;
  outbound @1;
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

struct EspParams {
  # RFC 4106 AES-GCM: a 16- or 32-byte key and a 4-byte salt.
  key @0 :Data;
  salt @1 :Data;
  esn @2 :Bool;               # extended (64-bit) sequence numbers, RFC 4304
  # Packet mode only:
  replayWindow @3 :UInt32;    # RX: packets; 0 disables replay checks
  seqStart @4 :UInt64;        # TX: the first sequence number the NIC may use
  seqBlock @5 :UInt32;        # TX: how many it may use before `sequenceNeeded`
  softBytes @6 :UInt64;       # lifetime limits; 0: none
  hardBytes @7 :UInt64;
  softPackets @8 :UInt64;
  hardPackets @9 :UInt64;
}

struct NvmeTcpParams {
  # One NVMe/TCP I/O queue's receive side (the host's C2HData PDUs).
  tcpSeq @0 :UInt32;          # the TCP sequence number where the next PDU starts
  cpda @1 :UInt8;             # controller PDU data alignment, in dwords
  headerDigest @2 :Bool;
  dataDigest @3 :Bool;        # the NIC checks CRC32C of every data PDU
  maxIo @4 :UInt32;           # bytes of the largest buffer the holder registers
}

interface OffloadContext {
  info @0 () -> (info :OffloadInfo);

  release @1 () -> ();
  # Deletes the context in the NIC. Every later call answers `revoked`.

  resync @2 (tcpSeq :UInt32, recordSeq :UInt64) -> ();
  # Streams (tlsRx, nvmeTcpRx): the holder confirms that record (PDU)
  # `recordSeq` starts at `tcpSeq`, answering an
  # `OffloadEvents.resyncRequest`. Fails with `invalid` for a position the
  # NIC did not ask about.

  resyncReject @3 (tcpSeq :UInt32) -> ();
  # Streams: no record (PDU) starts at `tcpSeq`; the NIC searches again.

  grantSequence @4 (next :UInt64, count :UInt32) -> ();
  # espPacketTx: the NIC may number `count` more packets from `next` (the
  # full ESN). A holder never grants a number twice under one key.

  setLifetime @5 (softBytes :UInt64, hardBytes :UInt64,
                  softPackets :UInt64, hardPackets :UInt64) -> ();
  # espPacket*: new lifetime limits (after a rekey is negotiated, say).

  placeBuffer @6 (commandId :UInt16, length :UInt32) -> ();
  # nvmeTcpRx: payload of command `commandId` goes to a registered buffer.

  releaseBuffer @7 (commandId :UInt16) -> ();
  # nvmeTcpRx: stop placing for `commandId`. The NIC may still be writing;
  # the buffer is the holder's again only at `OffloadEvents.bufferReleased`.
}

interface OffloadEvents {
  # Implemented by the holder; the NIC calls it.
  revoked @0 (reason :Text) -> ();
  # The NIC took the context away (its port is going away). Frames naming it
  # are dropped from now on; the holder moves the flow to software.

  resyncRequest @1 (tcpSeq :UInt32) -> ();
  # Streams: the NIC lost sync (loss, reordering) and found what looks like
  # a record (PDU) header at `tcpSeq`. Answer with `resync` or
  # `resyncReject`.

  lifetime @2 (hard :Bool) -> ();
  # espPacket*: a soft limit was reached (rekey), or a hard one (the NIC
  # stopped using the SA).

  sequenceNeeded @3 (next :UInt64) -> ();
  # espPacketTx: the granted block is nearly used; `next` is the first
  # number not yet used.

  bufferReleased @4 (commandId :UInt16) -> ();
  # nvmeTcpRx: the NIC will not touch the buffer of `commandId` again.
}

struct OffloadInfo {
  id @0 :UInt32;          # what TX descriptors name (unique per driver instance)
  port @1 :Text;
  driverEpoch @2 :UInt32;
  kind @3 :OffloadKind;
  flow @4 :OffloadFlow;
  state @5 :Text;         # active, revoked
  records @6 :UInt64;     # units processed: TLS records, ESP packets, PDUs
  bytes @7 :UInt64;       # payload bytes processed
  resyncRequests @8 :UInt64;
  resyncs @9 :UInt64;
  authFailures @10 :UInt64;  # TLS tag, ESP ICV or NVMe data digest failures
  dropped @11 :UInt64;    # frames dropped rather than sent unprocessed
}

struct OffloadCounters {
  # A port's counters for one kind, over every context of that kind.
  kind @0 :OffloadKind;
  contexts @1 :UInt64;       # minted
  released @2 :UInt64;       # deleted (released, revoked, session end)
  records @3 :UInt64;        # as OffloadInfo.records
  authFailures @4 :UInt64;
  resyncRequests @5 :UInt64;
  dropped @6 :UInt64;        # TX frames dropped rather than sent unprocessed
  engineNanos @7 :UInt64;
  # Time the engines ran, in nanoseconds: what a real NIC does in hardware
  # (the simulated one spends the driver's CPU on it).
}
