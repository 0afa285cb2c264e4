@0x8ee2f6275602e3d7;
# The socket service of netsrv.
#
# Errors: a failed call's description starts with one of these words and a
# colon, which clients map to their socket error kinds:
#   refused, reset, aborted, timedout, addrinuse, addrnotavail, unreachable,
#   notconnected, invalid, closed, busy, denied, wouldblock.

using Common = import "common.capnp";

interface Net {
  tcpConnect @0 (remote :Common.SocketAddr, options :SocketOptions)
      -> (socket :TcpSocket);
  # Returns once the handshake completed, or fails with refused, timedout or
  # unreachable.

  tcpListen @1 (local :Common.SocketAddr, backlog :UInt32, options :SocketOptions)
      -> (listener :TcpListener);

  udpBind @2 (local :Common.SocketAddr) -> (socket :UdpSocket);

  status @3 () -> (status :NetStatus);
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
  read @0 (max :UInt32) -> (data :Data);
  # Waits until data is there. Empty data means the peer closed (EOF).

  write @1 (data :Data) -> (written :UInt32);
  # Waits until at least one byte was queued.

  shutdown @2 (how :Shutdown) -> ();
  close @3 () -> ();
  setNoDelay @4 (on :Bool) -> ();
  info @5 () -> (local :Common.SocketAddr, remote :Common.SocketAddr, state :Text);

  openRings @6 () -> (grant :Common.RingGrant);
  # Moves the socket's data to two shared byte rings (to and from netsrv) with
  # a doorbell each. Afterwards read and write fail with `invalid`.
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
  routes @2 :List(Text);      # "default via 10.0.0.254"
  sockets @3 :List(SocketStatus);
  counters @4 :StackCounters;
}

struct PortStatus {
  name @0 :Text;
  backend @1 :Text;
  mac @2 :Text;
  mtu @3 :UInt32;
  linkUp @4 :Bool;
  counters @5 :import "nic.capnp".PortCounters;
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
}
