//! netsrv: the network server of capnet.
//!
//! It owns TCP/IP (smoltcp) over the rings of one or more NIC ports, and
//! serves sockets to applications as capabilities. `main.rs` only wires
//! processes; the logic lives in these modules.

pub mod addr;
pub mod admin;
pub mod args;
pub mod device;
pub mod driver;
pub mod egress;
pub mod limits;
pub mod link;
pub mod offload;
pub mod rpc;
pub mod service;
pub mod stack;
#[cfg(test)]
mod test_frames;
pub mod test_hooks;
