//! The OS seam: shared memory regions, doorbells, fd passing, randomness.
//!
//! Linux implements it with memfd (sealed against resizing), datagram socketpairs (doorbells
//! between processes), eventfd (doorbells within one) and SCM_RIGHTS. Everything
//! else in the crate only uses these names, so porting to Redox means filling in `redox.rs`
//! (today it compiles and answers `io::ErrorKind::Unsupported`).

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;

#[cfg(not(target_os = "linux"))]
mod redox;
#[cfg(not(target_os = "linux"))]
pub use redox::*;
