//! The Cap'n Proto interfaces of capnet.
//!
//! The `.capnp` files in this crate's folder are the source of truth. The Rust
//! code generated from them is checked in under `src/generated/` so that a
//! fresh machine builds with nothing but the Rust toolchain; the test
//! `generated_code_is_current` regenerates it with the `capnp` tool and fails
//! if the checked-in copy differs (`CAPNET_REGENERATE=1` rewrites it).

#[allow(clippy::all, unused_parens)]
pub mod common_capnp {
    include!("generated/common_capnp.rs");
}
#[allow(clippy::all, unused_parens)]
pub mod offload_capnp {
    include!("generated/offload_capnp.rs");
}
#[allow(clippy::all, unused_parens)]
pub mod nic_capnp {
    include!("generated/nic_capnp.rs");
}
#[allow(clippy::all, unused_parens)]
pub mod net_capnp {
    include!("generated/net_capnp.rs");
}
#[allow(clippy::all, unused_parens)]
pub mod tls_capnp {
    include!("generated/tls_capnp.rs");
}
#[allow(clippy::all, unused_parens)]
pub mod supervisor_capnp {
    include!("generated/supervisor_capnp.rs");
}

pub mod access;
pub mod addr;
pub mod coalesce;
pub mod errors;
pub mod metered;
pub mod offload;
pub mod quiet;
pub mod transport;

/// The schema files, in the order they are compiled.
pub const SCHEMA_FILES: [&str; 6] = [
    "common.capnp",
    "offload.capnp",
    "nic.capnp",
    "net.capnp",
    "tls.capnp",
    "supervisor.capnp",
];
