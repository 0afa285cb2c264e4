//! Frames for unit tests: Ethernet and IPv4 around a TCP or UDP packet,
//! checksums filled by the one checksum code (`capnet_wire::csum`).

use capnet_tcpip::ip::write_ip;
use capnet_wire::tcp::Header;
use std::net::{IpAddr, Ipv4Addr};

/// From 02:00:00:00:00:01 to 02:00:00:00:00:02, `src` to `dst`, carrying
/// `l4` (its checksum is filled here).
pub fn ipv4_frame(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, l4: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 14 + 20 + l4.len()];
    buf[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    buf[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    buf[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let body = write_ip(
        &mut buf[14..],
        IpAddr::V4(src),
        IpAddr::V4(dst),
        protocol.into(),
        l4.len(),
        0,
        true,
    );
    body.copy_from_slice(l4);
    capnet_wire::csum::fill_tx(&mut buf).expect("a well-formed frame");
    buf
}

/// A UDP datagram's frame.
pub fn udp_frame(src: Ipv4Addr, dst: Ipv4Addr, ports: (u16, u16), payload: &[u8]) -> Vec<u8> {
    let mut l4 = vec![0u8; 8 + payload.len()];
    l4[0..2].copy_from_slice(&ports.0.to_be_bytes());
    l4[2..4].copy_from_slice(&ports.1.to_be_bytes());
    let len = l4.len() as u16;
    l4[4..6].copy_from_slice(&len.to_be_bytes());
    l4[8..].copy_from_slice(payload);
    ipv4_frame(src, dst, 17, &l4)
}

/// A TCP segment's frame.
pub fn tcp_frame(src: Ipv4Addr, dst: Ipv4Addr, h: &Header, payload: &[u8]) -> Vec<u8> {
    let mut l4 = vec![0u8; h.header_len() + payload.len()];
    let n = h.emit(&mut l4);
    l4[n..].copy_from_slice(payload);
    ipv4_frame(src, dst, 6, &l4)
}
