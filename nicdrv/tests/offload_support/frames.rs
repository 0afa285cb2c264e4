//! Ethernet + IPv4 + TCP frames as the offload tests put them on the port
//! rings, and the few fields the tests read back.

pub use crate::common::frames::{tcp_frame, ACK, PSH};

/// The TCP payload of a frame built by [`tcp_frame`] (no options).
pub fn payload(f: &[u8]) -> &[u8] {
    &f[14 + 20 + 20..]
}

pub fn tcp_seq_of(f: &[u8]) -> u32 {
    u32::from_be_bytes(f[14 + 20 + 4..14 + 20 + 8].try_into().unwrap())
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
