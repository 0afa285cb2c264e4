@0xfd8d3ab74a1a4413;
# The TLS service of tlsd, served on tls.sock in the run directory.
#
# tlsd makes the TCP connection (through its own Net), runs the handshake
# with rustls, and then keeps the record layer itself: in software, or with
# the NIC sealing and opening records on an offload context. Certificates,
# private keys and traffic keys never leave tlsd; applications see only
# plaintext.
#
# Errors: the socket words of net.capnp, plus
#   handshake   the TLS handshake failed (the description says how: an alert,
#               a certificate that did not verify, no common version)
#   identity    no server identity (certificate and key) is configured
#   alert       the peer sent a fatal alert after the handshake
#   limit       a per-client or global limit of tlsd was reached (the
#               description says which)

using Common = import "common.capnp";

interface Tls {
  connect @0 (remote :Common.SocketAddr, serverName :Text, options :TlsOptions)
      -> (socket :TlsSocket);
  # Returns once the handshake completed. `serverName` is sent as SNI and the
  # peer's certificate must be valid for it (a DNS name or an IP address).

  listen @1 (local :Common.SocketAddr, backlog :UInt32, options :TlsOptions)
      -> (listener :TlsListener);
  # Serves the configured identity.

  stat @2 () -> (stat :TlsStat);
}

struct TlsOptions {
  alpn @0 :List(Text);         # offered (client) or accepted (server), in order
  minVersion @1 :TlsVersion;   # unset: tls12
  maxVersion @2 :TlsVersion;   # unset: tls13
  cipherSuites @3 :List(Text);
  # IANA names, e.g. TLS_AES_256_GCM_SHA384 or
  # TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256; empty: every suite tlsd has.
  offload @4 :OffloadPolicy;
}

enum TlsVersion {
  unset @0;
  tls12 @1;
  tls13 @2;
}

enum OffloadPolicy {
  auto @0;      # use the egress port's TLS offload where it offers one
  off @1;       # always software
}

enum RecordMode {
  software @0;
  device @1;
}

interface TlsListener {
  accept @0 () -> (socket :TlsSocket, remote :Common.SocketAddr);
  # Returns a connection whose handshake completed. A client whose handshake
  # fails is counted and logged, and accept waits for the next one.
  # Each handshake has a deadline; a client whose handshake does not end in
  # time is closed and counted, and never delays another's.
  localAddr @1 () -> (addr :Common.SocketAddr);
  close @2 () -> ();
  # Stops listening: the port is released at once, connections not yet
  # accepted are closed and accepts waiting fail `closed`. Dropping the
  # capability does the same.
}

interface TlsSocket {
  info @0 () -> (info :TlsInfo);

  openRings @1 () -> (grant :Common.RingGrant);
  # Plaintext moves over two shared byte rings with a doorbell each, exactly
  # like a TcpSocket's. Closing the application's ring sends close_notify;
  # the peer's close_notify is end of stream.
}

struct TlsInfo {
  version @0 :TlsVersion;
  cipherSuite @1 :Text;
  alpn @2 :Text;               # empty: none agreed
  serverName @3 :Text;         # SNI (as sent by the client)
  local @4 :Common.SocketAddr;
  remote @5 :Common.SocketAddr;
  tx @6 :RecordMode;
  rx @7 :RecordMode;
}

struct TlsStat {
  # The counters of Linux /proc/net/tls_stat, plus capnet's own.
  currTxSw @0 :UInt64;
  currRxSw @1 :UInt64;
  currTxDevice @2 :UInt64;
  currRxDevice @3 :UInt64;
  txSw @4 :UInt64;
  rxSw @5 :UInt64;
  txDevice @6 :UInt64;
  rxDevice @7 :UInt64;
  decryptError @8 :UInt64;       # records that failed to authenticate
  rxDeviceResync @9 :UInt64;     # resync requests from a NIC answered
  decryptRetry @10 :UInt64;      # records the NIC decrypted in part
  txRekeyOk @11 :UInt64;
  rxRekeyOk @12 :UInt64;
  rxRekeyReceived @13 :UInt64;
  reoffloads @14 :UInt64;        # contexts created again after an egress change
  handshakes @15 :UInt64;
  handshakeFailures @16 :UInt64;
  alertsSent @17 :UInt64;
  alertsReceived @18 :UInt64;
  recordsSealed @19 :UInt64;
  recordsOpened @20 :UInt64;
  bytesSealed @21 :UInt64;       # plaintext bytes
  bytesOpened @22 :UInt64;
  sessionTickets @23 :UInt64;    # NewSessionTicket messages received
  handshakeTimeouts @24 :UInt64; # connections closed at the handshake deadline
  currHandshakes @25 :UInt64;    # handshakes in progress now
  currSockets @26 :UInt64;       # TLS sockets held now (connections and listeners)
  limitRefused @27 :UInt64;      # sockets and connections refused for a limit
  acceptErrors @28 :UInt64;      # failed accepts survived (e.g. out of file descriptors)
  confinement @29 :Text;
  # How tlsd confined itself, as NetStatus.confinement in net.capnp.
}
