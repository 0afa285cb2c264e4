@0x8ee2f6275602e3d7;
# The socket service of netsrv.
#
# Errors: a failed call's description starts with one of these words and a
# colon, which clients map to their socket error kinds:
#   refused, reset, aborted, timedout, addrinuse, addrnotavail, unreachable,
#   notconnected, invalid, closed, busy, denied, wouldblock, unsupported,
#   revoked.

using Common = import "common.capnp";
using Offload = import "offload.capnp";

interface Net {
  tcpConnect @0 (remote :Common.SocketAddr, options :SocketOptions)
      -> (socket :TcpSocket);
  # Returns once the handshake completed, or fails with refused, timedout or
  # unreachable.

  tcpListen @1 (local :Common.SocketAddr, backlog :UInt32, options :SocketOptions)
      -> (listener :TcpListener);

  udpBind @2 (local :Common.SocketAddr) -> (socket :UdpSocket);

  status @3 () -> (status :NetStatus);

  egress @4 (flow :Flow) -> (egress :Egress);
  # Which port carries packets of `flow` now (route lookup, then the bond's
  # leg choice for the flow's hash). Fails with `invalid` for a bad flow.
}

struct Flow {
  # A flow as a route and a bond see it. `local` may be unspecified (ip
  # empty, port 0): the route's source address is then assumed.
  protocol @0 :Protocol;
  local @1 :Common.SocketAddr;
  remote @2 :Common.SocketAddr;
}

enum Protocol {
  tcp @0;
  udp @1;
  other @2;    # e.g. ESP: the hash then covers addresses only
}

interface Egress {
  # The egress of one flow or socket: the analogue of Linux
  # `sk_get_xmit_dev_lowest`, with change notification. Offload holders
  # follow it.

  current @0 () -> (info :EgressInfo);

  subscribe @1 (watcher :EgressWatcher) -> (subscription :Subscription);
  # `watcher.changed` is called once per real change of the egress, in
  # order, never for an unchanged one. Dropping `subscription` ends it.
}

interface EgressWatcher {
  changed @0 (info :EgressInfo) -> ();
}

interface Subscription {}

struct EgressInfo {
  port @0 :Text;          # the NIC port carrying the flow; empty: none usable
  interface @1 :Text;     # the interface (bond or port) the route chose
  driverEpoch @2 :UInt32; # which instance of the port's driver (+1 per restart)
  generation @3 :UInt64;  # changes of this egress so far
  reason @4 :EgressReason;
}

enum EgressReason {
  initial @0;
  failover @1;       # the bond chose another leg
  linkDown @2;
  linkUp @3;
  routeChange @4;
  driverRestart @5;
  bondChange @6;     # mode, primary or legs changed at run time
}

struct SocketOptions {
  noDelay @0 :Bool;
  sendBuffer @1 :UInt32;     # bytes, 0 = default
  recvBuffer @2 :UInt32;
  connectTimeoutMs @3 :UInt32;  # 0 = default (20 s)
  keepAliveMs @4 :UInt32;    # 0 = off
}

enum Shutdown {
  read @0;
  write @1;
  both @2;
}

interface TcpSocket {
  # Calls on a socket after `close` fail with `closed`. After a reset the
  # first read or write fails with `reset`; later reads answer EOF and later
  # writes `closed` (as Linux reports a socket error once).

  read @0 (max :UInt32) -> (data :Data);
  # Waits until data is there. Empty data means the peer closed (EOF), or
  # `max` was 0 (answered at once).

  write @1 (data :Data) -> (written :UInt32);
  # Waits until at least one byte was queued. Fails with `closed` after
  # shutdown(write).

  shutdown @2 (how :Shutdown) -> ();
  # write: a FIN follows the bytes written. read: reads no longer wait, they
  # answer what is queued or empty data at once; as on Linux, bytes the peer
  # sends later are still received and read. Both ways shut: new data from
  # the peer resets the connection (nobody will read it).

  close @3 () -> ();
  # Lets go of the socket. By default the bytes written still go out, then a
  # FIN, in the background. With a linger of 0 (setLinger) the connection is
  # reset instead (RST; unsent bytes are dropped). With a linger of T, close
  # returns once the peer acknowledged every byte and the FIN, or after T;
  # the graceful close goes on in the background. Dropping the capability
  # closes as `close` does, without waiting.

  setNoDelay @4 (on :Bool) -> ();
  info @5 () -> (local :Common.SocketAddr, remote :Common.SocketAddr, state :Text);

  openRings @6 (held :List(UInt64), arena :Bool, arenaMapped :Bool) -> (grant :Common.RingGrant, set :RingSet);
  # Moves the socket's data to two shared byte rings (to and from netsrv) with
  # a doorbell each. Afterwards read and write fail with `invalid`.
  # `held` names ring sets of this connection's earlier sockets that the
  # caller released and still has mapped (at most 64, else `limit`): if
  # netsrv has one of them idle, it resets it and answers `set.reused`, with
  # no token to redeem (the caller starts both rings afresh over its
  # mapping). Otherwise the grant's token brings a set's descriptors.
  # With `arena`, the rings are instead a slot of the client's arena: one
  # region and one doorbell each way for all its sockets, so a client with
  # thousands of sockets holds a few descriptors. The grant's token brings
  # the arena's descriptors unless the caller says it has the arena mapped
  # (`arenaMapped`). An arena has as many slots as the client may have
  # sockets; with every slot held, `limit`.

  egress @7 () -> (egress :Egress);
  # The port this connection leaves from. A connection stays on the
  # interface it was opened on; within a bond its leg follows the bond.

  offload @8 (request :Offload.OffloadRequest, streamOffset :UInt64,
              events :Offload.OffloadEvents)
      -> (context :Offload.OffloadContext, info :Offload.OffloadInfo,
          ringOffset :UInt64, tcpSeq :UInt32);
  # Mints an offload context of a kind that works on a TCP stream (tlsTx,
  # tlsRx) on this connection's current egress port (the port's own driver
  # makes it; netsrv passes it through) and binds the connection to it.
  # netsrv fills in `request.flow` (this connection) and the TCP sequence
  # number of the parameters (`TlsParams.tcpSeq`) from `streamOffset`, the
  # position of record `params.tls.recordSeq` in the bytes written to this
  # socket (tlsTx) or received on it (tlsRx); what the caller set there is
  # ignored.
  #   tlsTx: frames carrying bytes from `streamOffset` on leave tagged with
  #          the context.
  #   tlsRx: the receive ring switches to marked chunks (see `RxChunk`) at
  #          `ringOffset`, the receive-ring position at the time of the call.
  # `tcpSeq` is the TCP sequence number of `streamOffset`: the holder maps
  # the NIC's resync requests (sequence numbers) to stream offsets with it.
  # Fails with `unsupported` (no such offload on the egress port, or a kind
  # netsrv does not bind to a connection), `busy` (no egress now), `invalid`
  # (bad parameters, already bound).

  offloadStop @9 (kind :Offload.OffloadKind, replacement :Data,
                  replacementOffset :UInt64) -> ();
  # Unbinds the connection from its context of `kind`, for revocation.
  #   tlsTx: framed bytes from `replacementOffset` on may still be sent or
  #          sent again; `replacement` is their software-sealed form (the
  #          same length at the same offsets), which netsrv sends instead.
  #          Returns after the drain: no TX descriptor naming the context is
  #          still in flight on its port. Then release the context.
  #   tlsRx: frames are no longer expected to be marked; the ring stays in
  #          marked-chunk mode (unmarked chunks from now on).

  sendUnacked @10 () -> (offset :UInt64);
  # Offset, in the bytes written to this socket, of the first byte the peer
  # has not acknowledged: nothing before it will be sent again.

  setLinger @11 (on :Bool, timeoutMs :UInt32) -> ();
  # SO_LINGER: what `close` does (see there). `timeoutMs` is at most 120000
  # (Linux's longest FIN-WAIT-2 wait), else `invalid`; `on` false is the
  # default close.
}

struct RxChunk {
  # Documentation only: the receive ring of a connection with TLS RX offload
  # carries, from `ringOffset` on, chunks of [u32 little-endian header][data].
  # Header: bits 0..23 data length (1..65535), bit 31 set when the NIC opened
  # (decrypted) every TLS byte of the chunk. capnet_wire::chunk owns it.
  placeholder @0 :Void;
}

interface TcpListener {
  accept @0 () -> (socket :TcpSocket, remote :Common.SocketAddr);
  localAddr @1 () -> (addr :Common.SocketAddr);
  close @2 () -> ();
}

interface UdpSocket {
  sendTo @0 (data :Data, to :Common.SocketAddr) -> ();
  recvFrom @1 (max :UInt32) -> (data :Data, from :Common.SocketAddr);
  localAddr @2 () -> (addr :Common.SocketAddr);
  close @3 () -> ();
}

struct NetStatus {
  ports @0 :List(PortStatus);
  addresses @1 :List(Text);   # "10.0.0.1/24 on sim0"
  routes @2 :List(Text);      # "default via 10.0.0.254", "10.9.0.0/16 via 10.0.0.254"
  sockets @3 :List(SocketStatus);
  counters @4 :StackCounters;
  bonds @5 :List(BondStatus);
  confinement @6 :Text;
  # How netsrv confined itself, in its own words: "no_new_privs on, landlock
  # enforced, seccomp on". Landlock shows nowhere in /proc; empty: unknown.
}

enum BondMode {
  activeBackup @0;
  balanceXor @1;     # layer3+4 hash, as Linux xmit_hash_policy=layer3+4
}

struct BondConfig {
  name @0 :Text;
  mode @1 :BondMode;
  legs @2 :List(Text);       # port names; each must be free (no addresses, no bond)
  primary @3 :Text;          # active-backup: preferred leg, empty for none
  addresses @4 :List(Text);  # CIDRs, e.g. "10.0.0.1/24"
}

struct BondStatus {
  name @0 :Text;
  mode @1 :BondMode;
  legs @2 :List(Text);
  active @3 :Text;           # active-backup: the leg in use; empty if none
  primary @4 :Text;
  failovers @5 :UInt64;      # changes of the active leg (or of the live set, balance-xor)
  announcements @6 :UInt64;  # gratuitous ARPs and unsolicited neighbour adverts sent
  txFrames @7 :UInt64;
  rxFrames @8 :UInt64;
  txNoLeg @9 :UInt64;        # frames dropped because no leg was up
}

interface NetAdmin {
  # netsrv's administration, held by the supervisor only.
  status @0 () -> (status :NetStatus);
  net @1 () -> (net :Net);   # the socket service, with root's rights
  bondAdd @2 (bond :BondConfig) -> ();
  bondSetMode @3 (name :Text, mode :BondMode) -> ();
  bondSetPrimary @4 (name :Text, primary :Text) -> ();   # empty: none
  routeAdd @5 (to :Text, via :Text) -> ();      # to: CIDR or "default"
  routeRemove @6 (to :Text, via :Text) -> ();
}

struct PortStatus {
  name @0 :Text;
  backend @1 :Text;
  mac @2 :Text;
  mtu @3 :UInt32;
  linkUp @4 :Bool;
  counters @5 :import "nic.capnp".PortCounters;
  interface @6 :Text;       # the bond or port interface it serves; empty: free
  state @7 :Text;           # up, down, detached (driver gone), failed (ring contract)
  driverEpoch @8 :UInt32;   # driver instances attached so far, minus one
  txFrames @9 :UInt64;      # frames the stack sent and received on this port
  rxFrames @10 :UInt64;
}

struct SocketStatus {
  kind @0 :Text;       # tcp, tcp-listen, udp
  local @1 :Text;
  remote @2 :Text;
  state @3 :Text;
  rxBytes @4 :UInt64;
  txBytes @5 :UInt64;
  ringMode @6 :Bool;
}

struct StackCounters {
  sessions @0 :UInt64;         # client connections ever accepted
  sessionsKilled @1 :UInt64;   # ended because the client broke a ring contract
  badRingIndices @2 :UInt64;
  tcpConnects @3 :UInt64;
  tcpAccepts @4 :UInt64;
  tcpResets @5 :UInt64;
  udpSent @6 :UInt64;
  udpReceived @7 :UInt64;
  portBadDescriptors @8 :UInt64;  # ports disabled: their driver broke the ring contract
  rxBadChecksum @9 :UInt64;       # frames dropped for a bad checksum (driver's verdict or ours)
  txNoBuffer @10 :UInt64;         # frames dropped because every TX buffer was in flight
  driverAttaches @11 :UInt64;     # driver instances attached (initial + restarts)
  driverDetaches @12 :UInt64;     # driver instances whose rings were released
  ringsMapped @13 :UInt64;        # port ring regions mapped now
  egressWatchers @14 :UInt64;     # live egress subscriptions
  egressEvents @15 :UInt64;       # egress change notifications sent
  salvageResent @16 :UInt64;      # frames a dead driver never gave back, sent again
  salvageDropped @17 :UInt64;     # such frames given up (too old, or no checksum offload)
  offload @18 :OffloadPathCounters;
  limits @19 :LimitCounters;
  sessionsRefused @20 :UInt64;    # connections refused by [access] network
  driversRefused @21 :UInt64;     # drivers refused: what they reported did not hold, or they did not answer
  tcpRetransmits @22 :UInt64;     # TCP segments sent again, by connections open now or since closed
  tcpTimeouts @23 :UInt64;        # TCP retransmission timeouts, likewise
  tcp @24 :TcpCounters;           # the TCP engine's own counters
  tcpClosedUnread @25 :UInt64;    # closes with received bytes unread: reset, not closed (RFC 2525 2.17)
  ringSetsMade @26 :UInt64;       # socket ring sets made (openRings)
  ringSetsReused @27 :UInt64;     # socket ring sets a client let go of, taken up again by its next openRings
  ringSetsStillMapped @28 :UInt64; # of those, ones the client still had mapped (no descriptors sent)
  ringArenaSlots @29 :UInt64;     # socket rings given as slots of a client's arena (openRings with arena)
}

struct RingSet {
  # Which socket ring set an `openRings` answered with.
  id @0 :UInt64;
  # This connection's number for the set (never 0; never used for another).
  reused @1 :Bool;
  # The set is one of `held`: the grant has no token.
  gone @2 :List(UInt64);
  # Of `held`, the sets netsrv let go of: they will never come back, unmap
  # them.
  arenaSlot @3 :UInt32;
  # With `inArena`: the slot of the client's arena that holds the rings.
  arenaSlots @4 :UInt32;
  # With `inArena`: how many slots the arena has (its layout, with the
  # grant's `ringBytes`).
  inArena @5 :Bool;
  # The rings are a slot of the client's arena (asked for with `arena`).
}

struct TcpCounters {
  # TCP since netsrv started, as `netstat -s` counts it: the engine's
  # counters, and every connection's (open now or since freed) summed.
  activeOpens @0 :UInt64;
  passiveOpens @1 :UInt64;
  resetsSent @2 :UInt64;
  resetsReceived @3 :UInt64;
  noSocket @4 :UInt64;            # segments for no connection or listener (answered with RST)
  synCookiesSent @5 :UInt64;      # SYN-ACKs sent as cookies (a listener's half-open queue was full)
  synCookiesAccepted @6 :UInt64;
  synCookiesRejected @7 :UInt64;  # ACKs that carried no valid cookie
  listenOverflows @8 :UInt64;     # connections refused: the accept queue was full
  timeWaitSkipped @9 :UInt64;     # closes that skipped TIME-WAIT: too many in it
  timeWaitReopened @10 :UInt64;   # TIME-WAITs ended by a new SYN for the flow (RFC 6191)
  segmentsIn @11 :UInt64;
  segmentsOut @12 :UInt64;
  retransmits @13 :UInt64;        # segments sent again
  fastRecoveries @14 :UInt64;     # loss recovery episodes (SACK / RACK), not timeouts
  timeouts @15 :UInt64;           # retransmission timeouts
  tailLossProbes @16 :UInt64;
  dsacks @17 :UInt64;             # duplicate-SACKs received (spurious retransmissions seen)
  challengeAcks @18 :UInt64;      # RFC 5961 challenge ACKs sent
  pawsDrops @19 :UInt64;          # segments dropped by PAWS (old timestamps)
  outOfWindow @20 :UInt64;        # segments outside the receive window
  outOfOrder @21 :UInt64;         # segments that waited for a hole before them
  outOfOrderDropped @22 :UInt64;  # out-of-order segments dropped (reassembly full)
  zeroWindowProbes @23 :UInt64;
}

struct LimitCounters {
  # What clients were refused at their limits ([limits] in the
  # configuration) and what the service socket survived.
  sockets @0 :UInt64;             # sockets refused with `limit`
  bufferBytes @1 :UInt64;         # sockets or rings refused: buffer bytes over the limit
  subscriptions @2 :UInt64;       # egress subscriptions refused
  calls @3 :UInt64;               # calls refused: too many waiting
  connections @4 :UInt64;         # connections refused: their user held too many
  acceptErrors @5 :UInt64;        # failed accepts (out of descriptors) survived
  stalls @6 :UInt64;              # times a connection's reading paused: it held too much
  oversize @7 :UInt64;            # connections ended for a message over the size limit
}

struct OffloadPathCounters {
  # netsrv's part of NIC offload (TLS): what it did with the frames of
  # connections bound to offload contexts.
  txTagged @0 :UInt64;           # frames tagged for a context's engine
  txReplaced @1 :UInt64;         # framed bytes rewritten software-sealed in TCP's send queue after the holder left its context
  txHeld @2 :UInt64;             # frames kept back (their context's port was not their egress, or no buffer)
  txHeldSent @3 :UInt64;
  txHeldDropped @4 :UInt64;      # given up (too many held); TCP retransmits them
  rxDecrypted @5 :UInt64;        # segments of RX-bound connections the NIC had decrypted
  rxOutOfOrder @6 :UInt64;       # segments of RX-bound connections that waited in TCP's reassembly
  rxOutOfOrderDropped @7 :UInt64;  # always 0: TCP keeps marks with the bytes (was: plaintext over budget)
  rxMarkErrors @8 :UInt64;       # always 0: TCP keeps marks with the bytes (was: marks lost track)
  rxOutOfOrderDecrypted @9 :UInt64;  # of rxOutOfOrder, decrypted by the NIC
}
