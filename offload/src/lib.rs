//! The simulated NIC offload engines.
//!
//! The "hardware" of a capnet NIC is code that runs on nicdrv's data path,
//! inline, the way a SmartNIC runs beside the host. It lives here, apart from
//! the driver's plumbing, so that it is testable alone and so that a service's
//! software fallback can run the very same code.
//!
//! - `gcm`: AES-GCM applied piece by piece, as a record's segments pass.
//! - `stream`: where the records of a received byte stream are, in TCP
//!   sequence space, with the search and resync after a loss; for any
//!   framing (TLS records, NVMe/TCP PDUs).
//! - `tls`: the TLS engines, one per direction.

pub mod gcm;
pub mod stream;
pub mod tls;
