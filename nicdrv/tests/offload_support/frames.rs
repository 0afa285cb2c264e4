//! Ethernet + IPv4 + TCP frames as the offload tests put them on the port
//! rings, and the few fields the tests read back.

use std::net::SocketAddr;

pub const ACK: u8 = 0x10;
pub const PSH: u8 = 0x08;

/// Ethernet + IPv4 + TCP. Checksums: filled when `csum`, else left zero.
pub fn tcp_frame(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    tcp_flags: u8,
    payload: &[u8],
    csum: bool,
) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else {
        panic!("IPv4 only")
    };
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let tcp_len = 20 + payload.len();
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&s.ip().octets());
    ip[16..20].copy_from_slice(&d.ip().octets());
    f.extend_from_slice(&ip);
    let mut t = [0u8; 20];
    t[0..2].copy_from_slice(&src.port().to_be_bytes());
    t[2..4].copy_from_slice(&dst.port().to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = tcp_flags;
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    f.extend_from_slice(&t);
    f.extend_from_slice(payload);
    if csum {
        capnet_wire::csum::fill_tx(&mut f).unwrap();
    }
    f
}

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
