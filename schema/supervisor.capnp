@0x89107e384ad24285;
# The admin interface of the capnet supervisor, served on admin.sock in the
# run directory (mode 0600).

using Nic = import "nic.capnp";
using Net = import "net.capnp";

interface Supervisor {
  status @0 () -> (processes :List(Process), net :Net.NetStatus);
  setFaults @1 (port :Text, faults :Nic.WireFaults) -> ();
  setCarrier @2 (port :Text, up :Bool) -> ();
  shutdown @3 () -> ();
}

struct Process {
  name @0 :Text;     # "nicdrv sim0", "netsrv"
  pid @1 :UInt32;
  running @2 :Bool;
  restarts @3 :UInt32;
}
