@0x89107e384ad24285;
# The admin interface of the capnet supervisor, served on admin.sock in the
# run directory (mode 0600).

using Nic = import "nic.capnp";
using Net = import "net.capnp";
using Offload = import "offload.capnp";

interface Supervisor {
  status @0 () -> (processes :List(Process), net :Net.NetStatus);
  setFaults @1 (port :Text, faults :Nic.WireFaults) -> ();
  setCarrier @2 (port :Text, up :Bool) -> ();
  shutdown @3 () -> ();
  netAdmin @4 () -> (admin :Net.NetAdmin);
  # netsrv's administration (bonds, routes); fails with `busy` while
  # netsrv restarts.
  portCounters @5 (port :Text) -> (counters :Nic.PortCounters, info :Nic.PortInfo);
  # Straight from the port's driver.

  offloadContexts @6 (port :Text) -> (contexts :List(Offload.OffloadInfo));
  # The offload contexts the port's driver holds, straight from it.
}

struct Process {
  name @0 :Text;     # "nicdrv sim0", "netsrv"
  pid @1 :UInt32;    # 0 while not running
  running @2 :Bool;
  restarts @3 :UInt32;
  state @4 :Text;    # running, restarting, failed (crash loop: given up), stopped
  lastExit @5 :Text; # how the last instance ended, e.g. "killed by signal 9"
  confinement @6 :Text;
  # How the running instance says it confined itself (its status, info or
  # stat answer); empty when it did not answer.
}
