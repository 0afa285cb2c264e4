//! The capnet supervisor and CLI, as a library for the binary, the demo and
//! the integration tests.

pub mod cli;
pub mod config;
pub mod demo;
pub mod host;
pub mod rpc;
pub mod spawn;
pub mod supervisor;
pub mod users;
