//! A test hook that turns this driver into a hostile one, so that tests can
//! show what netsrv does with a driver that lies or hangs.
//!
//! `CAPNET_TEST_NICDRV_MISBEHAVE=KIND`, read once from the environment at
//! start: only whoever starts nicdrv controls it (the supervisor, and
//! whoever started that); nothing netsrv, a client or the wire sends can
//! turn it on. Unset (always, outside tests), the driver behaves.

use std::sync::OnceLock;

pub const VAR: &str = "CAPNET_TEST_NICDRV_MISBEHAVE";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehave {
    /// Behave.
    No,
    /// `info` reports an MTU far larger than the ring buffers.
    Mtu,
    /// `info` never answers.
    Silent,
    /// The ring handoff takes the token and never answers.
    Handoff,
}

/// The hook's setting (read once).
pub fn get() -> Misbehave {
    static KIND: OnceLock<Misbehave> = OnceLock::new();
    *KIND.get_or_init(|| {
        let kind = match std::env::var(VAR).as_deref() {
            Err(_) => return Misbehave::No,
            Ok("mtu") => Misbehave::Mtu,
            Ok("silent") => Misbehave::Silent,
            Ok("handoff") => Misbehave::Handoff,
            Ok(other) => {
                tracing::error!(kind = other, "unknown {VAR}; behaving");
                return Misbehave::No;
            }
        };
        tracing::warn!(?kind, "test hook: this driver misbehaves on purpose");
        kind
    })
}

/// The MTU `info` reports for a port whose real MTU is `mtu`.
pub fn reported_mtu(mtu: u32) -> u32 {
    match get() {
        Misbehave::Mtu => 65000,
        _ => mtu,
    }
}
