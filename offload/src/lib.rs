//! The simulated NIC offload engines.
//!
//! The "hardware" of a capnet NIC is code that runs on nicdrv's data path,
//! inline, the way a SmartNIC runs beside the host. It lives here, apart from
//! the driver's plumbing, so that it is testable alone and so that a service's
//! software fallback can run the very same code.

pub mod gcm;
pub mod tls;
