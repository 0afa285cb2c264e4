//! tlsd: the TLS service.
