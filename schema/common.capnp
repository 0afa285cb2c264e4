@0x93125e2d9e916eae;
# Types shared by every capnet service.

struct SocketAddr {
  # An IP endpoint. `ip` is 4 bytes (IPv4) or 16 bytes (IPv6), network order.
  ip @0 :Data;
  port @1 :UInt16;
}

struct RingGrant {
  # Shared memory offered by the callee. The file descriptors travel on the
  # handoff side channel (SCM_RIGHTS), redeemed once with `token`; the token is
  # 16 random bytes and expires after a few seconds.
  token @0 :Data;
  # Size in bytes of the region, and the capacity of each ring inside it.
  regionBytes @1 :UInt64;
  ringBytes @2 :UInt32;
  bufferCount @3 :UInt32;
  bufferSize @4 :UInt32;
}
