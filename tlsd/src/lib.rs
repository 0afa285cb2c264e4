//! tlsd: the TLS service.

pub mod alert;
pub mod record;
